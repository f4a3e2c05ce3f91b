#!/usr/bin/env bash
# End-to-end test of hakprof ingest and report: record Larson and a workload with known call sites, ingest, and
# check the database and the report against the exact counters, Larson's own free tracking and the known truth;
# run every query of docs/sqlite-schema.md; parse the JSON and CSV; check the answers to bad input.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so; hakprof record uses the one beside it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
CALLSITES=$BUILD/tests/tools/callsites
cd "$tmp"

# q DB SQL: one value (or rows) from the database.
q() { sqlite3 -bail "$1" "$2"; }
# a failed expect_exit stops the test (set -e): what follows needs what it made
expect_exit_stops=1

for f in "$HAKPROF" "$CALLSITES" "$BUILD/larson" "$PROF_LIB"; do
    [ -e "$f" ] || { echo "prof_report: $f is missing (make first)" >&2; exit 1; }
done
command -v sqlite3 >/dev/null || { echo "prof_report: the sqlite3 shell is missing (make deps)" >&2; exit 1; }

# ---- Larson, every allocation sampled --------------------------------------------------------------------
HAKMEM_STATS_DIR=$tmp HAKMEM_STATS_PRINT=1 HAKMEM_STATS_FILE=$tmp/table LARSON_TRACK_FREES=1 \
    "$HAKPROF" record --sample all -o larson.hkp -- "$BUILD/larson" 1 8 128 1024 1 12345 2 >larson.out 2>record.err
want_same=$(awk '/^same_thread_frees/ {print $3}' larson.out)
want_cross=$(awk '/^cross_thread_frees/ {print $3}' larson.out)
[ -n "$want_same" ] || { echo "prof_report: larson printed no free tracking" >&2; exit 1; }

expect_exit 0 "ingest larson" "$HAKPROF" ingest larson.hkp -o larson.db
grep -q "events" "$tmp/err" || fail "ingest printed no summary line"
[ "$(q larson.db 'SELECT complete FROM runs')" = 1 ] || fail "larson recording not complete: $(q larson.db 'SELECT damage FROM runs')"

# The final counters are the last snapshot's values.
diff_rows=$(q larson.db "SELECT COUNT(*) FROM (
    SELECT name, idx, value FROM counters
    EXCEPT SELECT name, idx, value FROM counter_timeline WHERE snap_id = (SELECT MAX(snap_id) FROM snapshots)
    UNION ALL
    SELECT name, idx, value FROM counter_timeline WHERE snap_id = (SELECT MAX(snap_id) FROM snapshots)
    EXCEPT SELECT name, idx, value FROM counters)")
[ "$diff_rows" = 0 ] && ok "counters = last snapshot" || fail "counters table differs from the last snapshot ($diff_rows rows)"

# The counters equal what the library printed at exit (HAKMEM_STATS_PRINT): every non-zero total.
awk '/^counter / {on = 1; next} /^per size class/ {on = 0} on && NF == 3 {print $1, $3}' table | sort >printed
q larson.db "SELECT name || ' ' || total FROM counter_totals WHERE total > 0" | sort >ingested
# Gauges move after the last snapshot (threads_live drops at exit): compare the counted ones.
grep -v -E '^(ss_live|ss_peak|bytes_in_use_peak|threads_live) ' printed >printed.c || true
grep -v -E '^(ss_live|ss_peak|bytes_in_use_peak|threads_live) ' ingested >ingested.c || true
if [ -s printed.c ] && diff printed.c ingested.c >counters.diff; then
    ok "counter totals = HAKMEM_STATS_PRINT's table ($(wc -l <printed.c) counters)"
else
    fail "counter totals differ from HAKMEM_STATS_PRINT's table: $(head -5 counters.diff | tr '\n' ' ')"
fi

# The report's run totals are those counters.
"$HAKPROF" report larson.db --format json >larson.json
python3 -m json.tool larson.json >/dev/null && ok "report --format json parses" || fail "report JSON does not parse"
read -r r_allocs r_frees r_threads < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
r = d["run"]
print(r["allocations"], r["frees"], r["threads"])' larson.json)
c_allocs=$(q larson.db "SELECT SUM(total) FROM counter_totals WHERE name IN (SELECT counter FROM stages)")
c_frees=$(q larson.db "SELECT SUM(total) FROM counter_totals WHERE name IN ('free_tls_sll','free_ss_local','free_ss_remote','free_large')")
c_threads=$(q larson.db "SELECT total FROM counter_totals WHERE name = 'thread_started'")
if [ "$r_allocs" = "$c_allocs" ] && [ "$r_frees" = "$c_frees" ] && [ "$r_threads" = "$c_threads" ]; then
    ok "report totals = counters (allocs $r_allocs, frees $r_frees, threads $r_threads)"
else
    fail "report totals allocs=$r_allocs frees=$r_frees threads=$r_threads, counters $c_allocs $c_frees $c_threads"
fi

# Larson's own tracking: same/cross-thread frees of its blocks (8..128 bytes), by the counters and by the events
# of its allocation call site.
read -r k_same k_cross < <(q larson.db "SELECT SUM(same_thread_frees), SUM(cross_thread_frees) FROM class_totals
    WHERE size <= 128" | tr '|' ' ')
read -r e_same e_cross < <(q larson.db "SELECT SUM(same_thread_frees), SUM(cross_thread_frees) FROM site_ips
    WHERE file LIKE '%bench/larson.c'" | tr '|' ' ')
echo "larson: benchmark same=$want_same cross=$want_cross; counters same=$k_same cross=$k_cross;" \
    "call-site events same=$e_same cross=$e_cross"
[ "$k_same $k_cross" = "$want_same $want_cross" ] && ok "counter same/cross = larson's tracking" ||
    fail "counter same/cross frees differ from larson's tracking"
[ "$e_same $e_cross" = "$want_same $want_cross" ] && ok "call-site same/cross = larson's tracking" ||
    fail "call-site same/cross frees (sampled events) differ from larson's tracking"
# The report's free pipeline says the same shares.
python3 - larson.json "$want_same" "$want_cross" <<'EOF' || fail "report's same/cross share disagrees"
import json, sys
d = json.load(open(sys.argv[1]))
same, cross = int(sys.argv[2]), int(sys.argv[3])
rows = {r["path"]: r for r in d["free_paths"]}
assert rows["all"]["frees"] == sum(rows[p]["frees"] for p in ("tls_sll", "ss_local", "ss_remote", "large"))
site = d["call_sites_by_allocs"][0]
assert "larson.c" in (site["location"] or ""), site
want = round(100.0 * cross / (same + cross), 1)
assert abs(site["cross_thread_pct"] - want) <= 0.05, (site["cross_thread_pct"], want)
EOF

# ---- Known call sites, every allocation sampled -------------------------------------------------------------
line_of() { grep -n "SITE_$1 \*/" "$root/tests/tools/callsites.c" | cut -d: -f1; }
"$HAKPROF" record --sample all -o cs.hkp -- "$CALLSITES" 3 >cs.out 2>>record.err
expect_exit 0 "ingest callsites" "$HAKPROF" ingest cs.hkp
check_site() { # NAME ALLOCS BYTES SAME CROSS LIVE
    local got want
    got=$(q cs.db "SELECT allocs, bytes, same_thread_frees, cross_thread_frees, live, file, line FROM site_ips
        WHERE function = '$1'")
    want="$2|$3|$4|$5|$6|tests/tools/callsites.c|$(line_of "$(echo "${1#alloc_}" | tr a-z A-Z)")"
    [ "$got" = "$want" ] && ok "call site $1: $got" || fail "call site $1: got '$got', expected '$want'"
}
check_site alloc_a 3000 96000 3000 0 0
check_site alloc_b 1500 300000 0 1500 0
check_site alloc_c 300 1500000 0 0 300
"$HAKPROF" report cs.db --format json --top 20 >cs.json
python3 - cs.json <<'EOF' || fail "callsites report JSON is wrong"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["lost_events"] == 0 and d["complete"] == 1 and d["sample_mode"] == "all"
sites = {s["function"]: s for s in d["call_sites_by_allocs"]}
a, b, c = sites["alloc_a"], sites["alloc_b"], sites["alloc_c"]
assert (a["allocs"], a["same_thread_pct"], a["cross_thread_pct"]) == (3000, 100.0, 0.0), a
assert (b["allocs"], b["same_thread_pct"], b["cross_thread_pct"]) == (1500, 0.0, 100.0), b
assert (c["allocs"], c["frees"], c["live"], c["cross_thread_pct"]) == (300, 0, 300, None), c
by_bytes = [s["function"] for s in d["call_sites_by_bytes"]]
assert by_bytes.index("alloc_c") < by_bytes.index("alloc_b") < by_bytes.index("alloc_a"), by_bytes
EOF

# ---- Known call sites, sampled by bytes: estimates within 5 standard deviations ----------------------------
HAKMEM_SAMPLE_SEED=7 "$HAKPROF" record --sample bytes:4096 -o csb.hkp -- "$CALLSITES" 40 >csb.out 2>>record.err
expect_exit 0 "ingest callsites (bytes:4096)" "$HAKPROF" ingest csb.hkp
q csb.db "SELECT function, est_allocs, est_bytes, allocs, same_thread_frees, cross_thread_frees FROM site_ips
    WHERE function LIKE 'alloc__'" >csb.rows
python3 - csb.rows <<'EOF' || fail "bytes-sampling estimates out of bounds"
import math, sys
truth = {"alloc_a": (40000, 32), "alloc_b": (20000, 200), "alloc_c": (4000, 5000)}
seen = set()
for line in open(sys.argv[1]):
    f, est, est_bytes, samples, same, cross = line.strip().split("|")
    n, size = truth[f]
    p = -math.expm1(-size / 4096.0)
    sd = math.sqrt(n * (1 - p) / p)  # of the estimate K/p, K ~ Binomial(n, p)
    est = float(est)
    print(f"prof_report: {f}: estimated {est:.0f} allocations of {n} (sd {sd:.0f}), {samples} samples")
    assert abs(est - n) <= 5 * sd, (f, est, n, sd)
    assert abs(float(est_bytes) - n * size) <= 5 * sd * size, (f, est_bytes)
    if f == "alloc_a":
        assert int(cross) == 0 and int(same) > 0, line
    if f == "alloc_b":
        assert int(same) == 0 and int(cross) > 0, line
    seen.add(f)
assert seen == set(truth), seen
EOF
# Per thread, the sampled frees are weighed like the allocations they free: the main thread frees alloc_a's
# blocks itself, a second thread frees all of alloc_b's (cross-thread). Estimates in the table and the report.
q csb.db "SELECT tid, est_frees, est_cross_thread_frees FROM threads ORDER BY tid" >csb.threads
"$HAKPROF" report csb.db --format json >csb.json
python3 - csb.threads csb.json <<'EOF' && ok "bytes sampling: per-thread frees and cross-thread frees are estimates within bounds" || fail "per-thread free estimates wrong: $(tr '\n' ' ' <csb.threads)"
import json, math, sys
def sd(n, size):
    p = -math.expm1(-size / 4096.0)
    return math.sqrt(n * (1 - p) / p)
rows = [l.strip().split("|") for l in open(sys.argv[1])]
t = {int(r[0]): (float(r[1]), float(r[2])) for r in rows}
main_frees, main_cross = t[1]
other_frees, other_cross = t[2]
assert abs(main_frees - 40000) <= 5 * sd(40000, 32) + 50 and main_cross == 0, t
assert abs(other_frees - 20000) <= 5 * sd(20000, 200) and other_cross == other_frees, t
rep = {r["tid"]: r for r in json.load(open(sys.argv[2]))["threads"]}
assert set(rep[2]) >= {"est_frees", "est_cross_thread_frees"} and "frees" not in rep[2], rep[2]
assert abs(rep[2]["est_cross_thread_frees"] - other_cross) < 0.1, (rep[2], other_cross)
EOF

# ---- Every query of docs/sqlite-schema.md runs as written -----------------------------------------------------
awk '/^```sql$/ {on = 1; n++; next} /^```$/ {on = 0; next} on {print > sprintf("doc%02d.sql", n)}' \
    "$root/docs/sqlite-schema.md"
nq=0
for f in doc*.sql; do
    for db in larson.db cs.db csb.db; do
        if ! sqlite3 -bail "$db" <"$f" >/dev/null 2>"$f.err"; then
            fail "docs query $f on $db: $(cat "$f.err") -- $(tr '\n' ' ' <"$f")"
        fi
    done
    nq=$((nq + 1))
done
[ "$nq" -ge 10 ] && ok "$nq documented queries run" || fail "only $nq queries found in docs/sqlite-schema.md"

# ---- Text and CSV ------------------------------------------------------------------------------------------
"$HAKPROF" report cs.db >cs.txt
head -3 cs.txt | grep -q '^lost events: 0$' && sed -n 2p cs.txt | grep -q '^sampling: all' &&
    sed -n 3p cs.txt | grep -q '^recording: complete' && ok "text report starts with lost events, sampling, recording" ||
    fail "text report does not start with lost events / sampling / recording: $(head -3 cs.txt | tr '\n' '|')"
for section in "hottest call sites by allocations" "hottest call sites by bytes" "refill stages per size class" \
    "free pipeline" "threads" "who allocated, who freed" "remote-list depth"; do
    grep -q "== $section" cs.txt || fail "text report lacks section '$section'"
done
"$HAKPROF" report cs.db --format csv >cs.csv
python3 - cs.csv <<'EOF' || fail "CSV report is malformed"
import csv, sys
sections, width = {}, {}
for row in csv.reader(open(sys.argv[1])):
    if not row:
        continue
    key = row[0]
    if key not in width:
        width[key] = len(row)  # the header line
        sections[key] = 0
    else:
        assert len(row) == width[key], (key, row)
        sections[key] += 1
for k in ("header", "run", "call_sites_by_allocs", "refill_stage_counts", "free_paths", "free_paths_by_class",
          "threads", "free_matrix", "remote_depth"):
    assert k in sections, k
assert sections["call_sites_by_allocs"] >= 3
EOF

# ---- Report on a recording: ingests beside it once, then reuses the database --------------------------------
cp cs.hkp again.hkp
expect_exit 0 "report of a recording" "$HAKPROF" report again.hkp
[ -f again.db ] && grep -q "ingest" "$tmp/err" && ok "report ingested again.hkp into again.db" ||
    fail "report did not ingest again.hkp into again.db"
expect_exit 0 "report again" "$HAKPROF" report again.hkp
grep -q "ingest" "$tmp/err" && fail "report ingested again although again.db is current" || true
expect_exit 2 "report into a database of another recording" "$HAKPROF" report again.hkp --sqlite cs.db

# ---- Bad input ---------------------------------------------------------------------------------------------
expect_exit 2 "ingest of a missing file" "$HAKPROF" ingest no-such.hkp
expect_exit 2 "report of a missing file" "$HAKPROF" report no-such.hkp
echo "not a recording" >text.hkp
expect_exit 2 "ingest of a text file" "$HAKPROF" ingest text.hkp
expect_exit 2 "report of a text file" "$HAKPROF" report text.hkp
expect_exit 2 "ingest into an existing database" "$HAKPROF" ingest cs.hkp -o cs.db
expect_exit 0 "ingest -f into an existing database" "$HAKPROF" ingest cs.hkp -o cs.db -f
touch plainfile
expect_exit 2 "ingest into a path that is not a directory" "$HAKPROF" ingest cs.hkp -o plainfile/x.db
if [ "$(id -u)" != 0 ]; then
    mkdir ro && chmod 555 ro
    expect_exit 2 "ingest into a read-only directory" "$HAKPROF" ingest cs.hkp -o ro/x.db
fi
ls ./*.tmp-* >/dev/null 2>&1 && fail "a failed ingest left a temporary file behind" || true

# A recording cut short: what is whole goes in, one warning names the file and offset, the report says so first.
size=$(stat -c %s larson.hkp)
head -c $((size / 2)) larson.hkp >cut.hkp
expect_exit 0 "ingest of a cut-short recording" "$HAKPROF" ingest cut.hkp
grep -q "warning: cut.hkp: byte [0-9]*" "$tmp/err" && ok "warning names the file and offset" ||
    fail "no warning with file and offset: $(cat "$tmp/err")"
[ "$(q cut.db 'SELECT complete, damage IS NOT NULL, allocs > 0 FROM runs')" = "0|1|1" ] &&
    ok "cut-short run marked incomplete, events kept" || fail "cut-short run not marked incomplete"
"$HAKPROF" report cut.db >cut.txt
sed -n 3p cut.txt | grep -q '^recording: INCOMPLETE: cut.hkp: byte' && ok "report says INCOMPLETE at the top" ||
    fail "report of a cut-short recording does not say so at the top: $(sed -n 3p cut.txt)"
# Damage in the middle (a flipped byte): the chunks before it stand.
cp larson.hkp flip.hkp
# every bit of the byte inverted, so the file changes whatever the byte was (writing 0xff did not when it was 0xff)
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))' flip.hkp $((size / 3))
expect_exit 0 "ingest of a damaged recording" "$HAKPROF" ingest flip.hkp
[ "$(q flip.db 'SELECT complete, damage LIKE "flip.hkp: byte %" FROM runs')" = "0|1" ] &&
    ok "damaged run marked incomplete with the offset" || fail "damaged run: $(q flip.db 'SELECT damage FROM runs')"

if [ "$failures" -gt 0 ]; then
    echo "prof_report: $failures check(s) failed" >&2
    exit 1
fi
echo "prof_report: ok"
