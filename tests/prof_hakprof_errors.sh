#!/usr/bin/env bash
# The debug checks of libhakmem_prof.so end to end: every heap error made on purpose by tests/tools/err_cases is
# reported on stderr (one line naming the kind; the program goes on), recorded as an ERROR of the right kind whose
# stack's innermost frame is the right function (ingest + hakprof report), kills the process with SIGABRT under
# HAKMEM_ON_ERROR=abort and is silent under ignore; leaks from known call sites match exactly with every allocation
# sampled and within statistical bounds when sampled by bytes; real programs run with guards and poison on report
# nothing. Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
CASES=$BUILD/tests/tools/err_cases
DUMP=$BUILD/tests/tools/hkt_dump
SRC=tests/tools/err_cases.c
cd "$tmp" || exit 1

q() { sqlite3 -bail "$1" "$2"; }

for f in "$HAKPROF" "$CASES" "$DUMP" "$PROF_LIB"; do
    [ -e "$f" ] || { echo "prof_hakprof_errors: $f is missing (make first)" >&2; exit 1; }
done
command -v sqlite3 >/dev/null || { echo "prof_hakprof_errors: the sqlite3 shell is missing (make deps)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "prof_hakprof_errors: python3 is missing (make deps)" >&2; exit 1; }
# The library must have the checks at all: otherwise every case below fails for one reason, said once here. (The
# symbol list is read whole first: grep -q leaving early would fail nm with SIGPIPE under pipefail.)
syms=$(nm "$PROF_LIB" 2>/dev/null)
if ! grep -q ' hkt_record_error$' <<<"$syms"; then
    echo "prof_hakprof_errors: $PROF_LIB has no heap error recording (hkt_record_error): the debug checks are not built" >&2
    exit 1
fi

# run NAME ON_ERROR CASE [ARGS...]: err_cases under the prof library with every check on and every allocation
# sampled; NAME.hkp, NAME.out, NAME.err, NAME.rc. In a subshell whose stderr is discarded: the shell's own
# "Aborted" notice for the abort cases is not the program's stderr.
run() {
    local name=$1 mode=$2
    shift 2
    (
        env HAKMEM_GUARD=1 HAKMEM_POISON=1 HAKMEM_ON_ERROR="$mode" HAKMEM_SAMPLE=all HAKMEM_STATS_DIR="$tmp" \
            HAKMEM_RECORD="$tmp/$name.hkp" LD_PRELOAD="$PROF_LIB" "$CASES" "$@" >"$name.out" 2>"$name.err"
        echo $? >"$name.rc"
    ) 2>/dev/null
}
# The line of SRC holding "ERROR <marker>" (the offending call).
line_of() { grep -nF "/* ERROR $1" "$root/$SRC" | head -1 | cut -d: -f1; }

# case|kind in the recording|what the stderr line must say|function of the offending call|marker
cases='double_free|double_free|double free|errcase_double_free|double_free */
double_free_remote|double_free|double free|errcase_double_free_remote|double_free (another
double_free_large|double_free|double free|errcase_double_free_large|double_free (a large
free_cached|double_free|double free|errcase_free_cached|free_cached
foreign|foreign|foreign pointer|errcase_free_foreign|foreign
interior|interior|not a block start|errcase_free_interior|interior */
misaligned|interior|not a block start|errcase_free_misaligned|interior (misaligned
overflow|overflow|overflow|errcase_overflow|overflow */
overflow_realloc|overflow|overflow|errcase_overflow_realloc|overflow (guards
overflow_large|overflow|overflow|errcase_overflow_large|overflow (a large
use_after_free|use_after_free|write after free|errcase_write_after_free|use_after_free:
use_after_free_aligned|use_after_free|write after free|errcase_write_after_free_aligned|use_after_free_aligned'

# ---- 1. Each error, reported: one stderr line, the program goes on, the recording and the report name it --------
while IFS='|' read -r c kind said func marker; do
    run "$c" report "$c"
    rc=$(cat "$c.rc")
    [ "$rc" = 0 ] && grep -qx "err_cases $c: done" "$c.out" ||
        { fail "$c: exit $rc, or the program did not go on after the report: $(head -c 300 "$c.err")"; continue; }
    nlines=$(grep -c '^hakmem:' "$c.err")
    if [ "$nlines" = 1 ] && grep '^hakmem:' "$c.err" | grep -q "$said"; then
        ok "$c: one stderr line saying '$said'"
    else
        fail "$c: want one 'hakmem:' line saying '$said', got $nlines: $(head -c 400 "$c.err")"
    fi
    got=$("$DUMP" "$c.hkp" 2>&1 | grep '^error ' | sed 's/ tid=.*//')
    [ "$got" = "error kind=$kind" ] && ok "$c: one ERROR record of kind $kind" ||
        fail "$c: recording has ERROR records '$(echo "$got" | tr '\n' ';')', want one of kind $kind"
    "$HAKPROF" ingest "$c.hkp" >/dev/null 2>"$c.ingest" || { fail "$c: ingest failed: $(cat "$c.ingest")"; continue; }
    want_line=$(line_of "$marker")
    got=$(q "$c.db" "SELECT kind, function, file, line FROM error_events")
    want="$kind|$func|$SRC|$want_line"
    [ "$got" = "$want" ] && ok "$c: the error's innermost frame is $func ($SRC:$want_line)" ||
        fail "$c: error_events says '$got', want '$want'"
    # The report: the header line counts it, the list shows kind and function.
    "$HAKPROF" report "$c.db" >"$c.txt" 2>&1
    if grep -q '^heap errors: 1 ' "$c.txt" && grep -q '^== heap errors by kind ==' "$c.txt" &&
        grep -A3 '^== heap errors: the first 1 ==' "$c.txt" | grep -q " $kind .* $func "; then
        ok "$c: hakprof report lists it with $func"
    else
        fail "$c: hakprof report does not list a $kind error in $func: $(sed -n '1,20p' "$c.txt" | tr '\n' '|')"
    fi
done <<<"$cases"

# Thread and allocation details the cases pin down.
t=$(q double_free_remote.db "SELECT tid FROM errors")
[ -n "$t" ] && [ "$t" != 1 ] && ok "double_free_remote: charged to the freeing thread (tid $t), not the main thread" ||
    fail "double_free_remote: error tid '$t', want the second thread's (not 1)"
# A double free or a write after free hits a block that was freed, and so left the writer's table of live sampled
# blocks: its allocation is not known to the writer even with every allocation sampled (said, not required).
for c in double_free use_after_free; do
    [ -n "$(q "$c.db" "SELECT alloc_tid FROM errors WHERE alloc_tid IS NOT NULL")" ] ||
        echo "prof_hakprof_errors: note: $c: the error carries no allocation stack (the block was already freed)"
done
for c in overflow overflow_realloc overflow_large; do
    got=$(q "$c.db" "SELECT alloc_tid, alloc_function, alloc_file FROM error_events")
    want="1|errcase_$c|$SRC"
    [ "$got" = "$want" ] && ok "$c: the sampled block's allocation stack is shown ($got)" ||
        fail "$c: allocation of the overflowed block '$got', want '$want'"
done
"$HAKPROF" report overflow.db --format json >overflow.json
python3 - overflow.json <<'EOF' || fail "overflow: the JSON report's heap error fields are wrong"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["heap_error_count"] == 1, d["heap_error_count"]
assert [k["kind"] for k in d["heap_errors_by_kind"]] == ["overflow"], d["heap_errors_by_kind"]
e = d["heap_error_list"][0]
assert e["kind"] == "overflow" and e["function"] == "errcase_overflow" and e["alloc_function"] == "errcase_overflow", e
assert e["location"].startswith("tests/tools/err_cases.c:") and e["addr"].startswith("0x") and e["size"] == 24, e
EOF
# A run without errors says 0 and shows no error section in text (JSON keeps the keys, empty).
run clean report leak 1
"$HAKPROF" report clean.hkp >clean.txt 2>/dev/null
grep -q '^heap errors: 0 (checked: frees, overflow (HAKMEM_GUARD=1), use after free (HAKMEM_POISON=1))$' clean.txt &&
    ! grep -q '^== heap errors' clean.txt && ok "a clean run: 'heap errors: 0', the checks that ran, no error section" ||
    fail "a clean run's report: $(sed -n 5,6p clean.txt | tr '\n' '|') / $(grep -c '^== heap errors' clean.txt) error sections"

# ---- 2. HAKMEM_ON_ERROR=abort kills with SIGABRT (after the report); ignore says nothing and goes on -------------
while IFS='|' read -r c kind said func marker; do
    run "$c.abort" abort "$c"
    rc=$(cat "$c.abort.rc")
    if [ "$rc" -gt 128 ] && [ "$(kill -l $((rc - 128)))" = ABRT ] && grep -q "^hakmem:.*$said" "$c.abort.err" &&
        ! grep -q "done" "$c.abort.out"; then
        ok "$c: ON_ERROR=abort: reported, then SIGABRT"
    else
        fail "$c: ON_ERROR=abort: exit status $rc, stderr $(head -c 200 "$c.abort.err")"
    fi
    [ "$("$DUMP" "$c.abort.hkp" 2>/dev/null | grep -c "^error kind=$kind ")" = 1 ] ||
        fail "$c: ON_ERROR=abort: the recording lacks the ERROR record written before the abort"
    run "$c.ignore" ignore "$c"
    rc=$(cat "$c.ignore.rc")
    if [ "$rc" = 0 ] && ! grep -q 'hakmem:' "$c.ignore.err" && grep -qx "err_cases $c: done" "$c.ignore.out"; then
        ok "$c: ON_ERROR=ignore: silent, the program goes on"
    else
        fail "$c: ON_ERROR=ignore: exit $rc, stderr '$(head -c 200 "$c.ignore.err")'"
    fi
done <<<"$cases"

# ---- 3. Leaks: exact with every allocation sampled --------------------------------------------------------------
scale=3
run leak report leak $scale
[ "$(cat leak.rc)" = 0 ] || fail "leak workload failed: $(cat leak.err)"
grep -q 'hakmem:' leak.err && fail "leak workload: a heap error was reported: $(cat leak.err)"
"$HAKPROF" ingest leak.hkp >/dev/null 2>&1 || fail "leak: ingest failed"
[ "$(q leak.db 'SELECT leak_report, heap_errors FROM runs')" = "1|0" ] && ok "leak: the recording has its leak report" ||
    fail "leak: runs.leak_report, heap_errors = $(q leak.db 'SELECT leak_report, heap_errors FROM runs')"
got=$(q leak.db "SELECT function, blocks, bytes, est_blocks, est_bytes FROM leak_sites
    WHERE function LIKE 'errcase_%' ORDER BY function")
want="errcase_leak_a|$((100 * scale))|$((6400 * scale))|$((100 * scale))|$((6400 * scale))
errcase_leak_b|$((10 * scale))|$((40960 * scale))|$((10 * scale))|$((40960 * scale))"
[ "$got" = "$want" ] && ok "leak: exact per call site with every allocation sampled" ||
    fail "leak: leak_sites '$(echo "$got" | tr '\n' ';')', want '$(echo "$want" | tr '\n' ';')'"
"$HAKPROF" report leak.db --leaks >leak.txt 2>&1
if grep -q '^== leaks by call site' leak.txt && ! grep -q '^== run ==' leak.txt &&
    awk '$1 == 1 && $7 == "errcase_leak_b" {a = 1} $1 == 2 && $7 == "errcase_leak_a" {b = 1} END {exit !(a && b)}' leak.txt; then
    ok "report --leaks: only the leak report, errcase_leak_b (most bytes) first"
else
    fail "report --leaks text: $(sed -n '1,30p' leak.txt | tr '\n' '|')"
fi
"$HAKPROF" report leak.db --leaks --format json >leak.json
"$HAKPROF" report leak.db --leaks --format csv >leak.csv
python3 - leak.json leak.csv "$scale" <<'EOF' || fail "report --leaks JSON/CSV are wrong"
import csv, json, sys
d = json.load(open(sys.argv[1]))
s = int(sys.argv[3])
assert d["leak_report"] == 1 and "run" not in d, sorted(d)
sites = {r["function"]: r for r in d["leak_sites"]}
a, b = sites["errcase_leak_a"], sites["errcase_leak_b"]
assert (a["blocks"], a["bytes"], a["est_blocks"], a["est_bytes"]) == (100 * s, 6400 * s, 100 * s, 6400 * s), a
assert (b["blocks"], b["bytes"]) == (10 * s, 40960 * s), b
assert a["location"].startswith("tests/tools/err_cases.c:") and a["callers"].startswith("main "), a
assert d["leak_totals"]["source"].startswith("leak report"), d["leak_totals"]
rows = [r for r in csv.reader(open(sys.argv[2])) if r]
head = next(r for r in rows if r[0] == "leak_sites")
body = [dict(zip(head, r)) for r in rows if r[0] == "leak_sites" and r is not head]
assert any(r["function"] == "errcase_leak_a" and r["blocks"] == str(100 * s) for r in body), body
EOF
# Cut short before its LEAKS chunk: the report says so and falls back to the blocks never freed (the same here).
leaks_at=$("$DUMP" --offsets leak.hkp | awk '$2 == "leak" {print substr($1, 2); exit}')
head -c "$leaks_at" leak.hkp >cut.hkp
"$HAKPROF" report cut.hkp --leaks >cut.txt 2>/dev/null
if grep -q 'NOTE: the recording has no leak report' cut.txt && grep -q 'sampled blocks never freed (table blocks)' cut.txt &&
    awk '$7 == "errcase_leak_a" && $2 == '$((100 * scale))' {a = 1} $7 == "errcase_leak_b" && $2 == '$((10 * scale))' {b = 1}
        END {exit !(a && b)}' cut.txt; then
    ok "report --leaks on a recording without LEAKS: says so, falls back to blocks never freed"
else
    fail "report --leaks on a cut recording: $(sed -n '1,30p' cut.txt | tr '\n' '|')"
fi

# ---- 4. Leaks sampled by bytes: estimates within 5 standard deviations ------------------------------------------
bscale=100
env HAKMEM_SAMPLE=bytes:4096 HAKMEM_SAMPLE_SEED=7 HAKMEM_STATS_DIR="$tmp" HAKMEM_RECORD="$tmp/leakb.hkp" \
    LD_PRELOAD="$PROF_LIB" "$CASES" leak $bscale >leakb.out 2>leakb.err || fail "leak (bytes:4096) failed"
"$HAKPROF" ingest leakb.hkp >/dev/null 2>&1 || fail "leak (bytes:4096): ingest failed"
q leakb.db "SELECT function, blocks, est_blocks, est_bytes FROM leak_sites WHERE function LIKE 'errcase_%'" >leakb.rows
if python3 - leakb.rows "$bscale" <<'EOF'; then
import math, sys
s = int(sys.argv[2])
truth = {"errcase_leak_a": (100 * s, 64), "errcase_leak_b": (10 * s, 4096)}
seen = set()
for line in open(sys.argv[1]):
    f, samples, est, est_bytes = line.strip().split("|")
    n, size = truth[f]
    p = -math.expm1(-size / 4096.0)
    sd = math.sqrt(n * (1 - p) / p)  # of the estimate K/p, K ~ Binomial(n, p)
    print(f"prof_hakprof_errors: {f}: estimated {est} leaked blocks of {n} (sd {sd:.0f}), {samples} samples,"
          f" {est_bytes} bytes of {n * size}")
    assert 0 < int(samples) <= n, line
    assert abs(float(est) - n) <= 5 * sd + 1, (f, est, n, sd)
    assert abs(float(est_bytes) - n * size) <= 5 * sd * size + size, (f, est_bytes)
    seen.add(f)
assert seen == set(truth), seen
EOF
    ok "leak (bytes:4096): estimates within 5 standard deviations"
else
    fail "leak (bytes:4096): estimates out of bounds"
fi

# ---- 5. No false report: real programs with guards and poison on ------------------------------------------------
# real NAME CMD...: runs CMD under the prof library with every check on; no "hakmem:" line, no ERROR record.
real() {
    local name=$1
    shift
    env HAKMEM_GUARD=1 HAKMEM_POISON=1 HAKMEM_STATS_DIR="$tmp" HAKMEM_RECORD="$tmp/real_$name.hkp" \
        LD_PRELOAD="$PROF_LIB" "$@" >"real_$name.out" 2>"real_$name.err"
    local rc=$?
    local errs
    errs=$("$DUMP" --summary "real_$name.hkp" 2>&1 | sed -n 's/^error //p')
    if [ "$rc" = 0 ] && ! grep -q 'hakmem:' "real_$name.err" && [ "$errs" = 0 ]; then
        ok "no false report: $name"
    else
        fail "$name with HAKMEM_GUARD=1 HAKMEM_POISON=1: exit $rc, ERROR records '$errs', stderr: $(grep -m3 'hakmem:' "real_$name.err" | tr '\n' '|')"
    fi
}
real python env PYTHONHASHSEED=0 PYTHONMALLOC=malloc python3 "$root/tests/data/alloc_heavy.py"
real python_dicts python3 -c '
import random
random.seed(1)
d = {}
for i in range(200000):
    d[str(random.random())] = [i] * (i % 17)
    if i % 3 == 0:
        d.pop(next(iter(d)))
print(len(d), sum(len(v) for v in d.values()))'
real sqlite3 sqlite3 -batch -bail :memory: "
CREATE TABLE t(a INTEGER, b TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000)
INSERT INTO t SELECT x, printf('%.*c', x % 300, 'v') FROM c;
CREATE INDEX t_b ON t(b);
SELECT COUNT(*), SUM(length(b)) FROM t;
SELECT a FROM t ORDER BY b DESC, a LIMIT 5;
DELETE FROM t WHERE a % 2 = 0;
VACUUM;
SELECT COUNT(*) FROM t;"
seq 1 200000 | awk '{print ($1 * 7919) % 100003, $1}' >sort.in
real sort sort -n -k1,1 -k2,2 sort.in -o sort.sorted
real larson "$BUILD/larson" 1 8 128 1024 1 12345 2

if [ "$failures" -gt 0 ]; then
    echo "prof_hakprof_errors: $failures check(s) failed" >&2
    exit 1
fi
echo "prof_hakprof_errors: ok"
