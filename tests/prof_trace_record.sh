#!/usr/bin/env bash
# End-to-end test of the recordings libhakmem_prof.so writes for real processes: call sites counted exactly when
# everything is sampled, sampled estimates within derived bounds, seeds, crashes and kills, fork and exec children.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so), TRC_SEED (seed of the random choices).
set -euo pipefail
BUILD=${BUILD:-build}
BUILD=$(cd "$BUILD" && pwd)
PROF_LIB=${PROF_LIB:-$BUILD/libhakmem_prof.so}
PROF_LIB=$(cd "$(dirname "$PROF_LIB")" && pwd)/$(basename "$PROF_LIB")
tools=$BUILD/tests/tools
root=$(cd "$(dirname "$0")/.." && pwd) # the tree: tests/tools/*.S are built here
SITES=$tools/trc_sites
CRASH=$tools/trc_crash
SYM=$tools/trc_sym
DUMP=$tools/hkt_dump
for f in "$SITES" "$CRASH" "$SYM" "$DUMP" "$PROF_LIB"; do
    [ -e "$f" ] || { echo "prof_trace_record: $f is missing (make $f)" >&2; exit 1; }
done
for t in nm addr2line; do
    command -v $t >/dev/null || { echo "prof_trace_record: $t (binutils) is missing" >&2; exit 1; }
done

tmp=$(mktemp -d)
bg_pids=()
cleanup() {
    # Only the process this script started and has not reaped yet (the test stopped between start and kill).
    local p
    for p in "${bg_pids[@]}"; do
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp"
ulimit -c 0 # abort and SIGSEGV below are meant: no core files

# Random choices (kill moments, sampling seeds) are printed with their seed, so a failure can be replayed.
TRC_SEED=${TRC_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$TRC_SEED
echo "prof_trace_record: TRC_SEED=$TRC_SEED"

# Every check runs and says ok or FAIL, so one library bug does not hide the state of the others.
failures=0
fail() {
    echo "prof_trace_record: FAIL: $*" >&2
    failures=$((failures + 1))
}
ok() { echo "prof_trace_record: ok: $*"; }
# check WHAT GOT WANT
check() {
    if [ "$2" = "$3" ]; then ok "$1 ($2)"; else fail "$1: got $2, want $3"; fi
}

# rec OUT SAMPLE CMD...: CMD under the instrumented library, recording to OUT. A private stats directory keeps
# the segments of killed processes out of /dev/shm.
rec() {
    local out=$1 sample=$2
    shift 2
    env HAKMEM_STATS_DIR="$tmp" HAKMEM_RECORD="$out" HAKMEM_SAMPLE="$sample" LD_PRELOAD="$PROF_LIB" "$@"
}

nm -S --defined-only "$SITES" >sites.syms
nm -S --defined-only "$CRASH" >crash.syms

# Checks trc_sym output (the data file) against a table of the truth (the first file): per (site, size) the
# number of allocations (exact, or an estimate within its bound when sampled), their classes, stage, calling
# function, thread, stack count and alignment, and their frees: number, cross-thread number, paths, and that each
# names its allocation exactly. Prints one line per problem, and "# " lines with the estimates and their bounds.
# -v mode=all|count|bytes period=N scale=S
# shellcheck disable=SC2016 # an awk program: its $ are awk's
SITE_CHECK='
function parse(   i, kv) { split("", f); for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } }
function local_path(p) { return p == "tls_sll" || p == "ss_local" }
function path_ok(want, p) { return want == "local" ? local_path(p) : p == want }
FNR == NR {
    if ($0 ~ /^#/ || NF == 0) next
    k = $1 " " $2; rows[k] = 1; size_of[k] = $2
    clo[k] = $3; chi[k] = $4; n[k] = $5 * scale; thr[k] = $6; caller[k] = $7
    nfree[k] = $8 * scale; ncross[k] = $9 * scale; wpath[k] = $10; align[k] = $11
    site_n[$1] += $5 * scale
    next
}
$1 == "header" { parse(); pid = f["pid"] }
$1 == "thread" { parse(); if (f["kind"] == 1 && f["os_tid"] == pid) main_tid = f["tid"] }
$1 == "alloc" {
    parse()
    if (f["site"] !~ /^site_/) next
    k = f["site"] " " f["size"]
    if (!(k in rows)) { print "allocation from " f["site"] " of " f["size"] " bytes, which it never asks for"; next }
    got[k]++; site_got[f["site"]]++
    if (mode == "bytes") est[k] += 1 / (1 - exp(-f["size"] / period))
    if (f["cls"] < clo[k] || f["cls"] > chi[k]) bad[k, "class " f["cls"]]++
    if ((f["cls"] == 255) != (f["stage"] == "large")) bad[k, "stage " f["stage"] " for class " f["cls"]]++
    if (f["caller"] != caller[k]) bad[k, "called from " f["caller"]]++
    if (f["addr"] % align[k] != 0) bad[k, "address not " align[k] "-aligned"]++
    if (!((k, f["stack"]) in stk)) { stk[k, f["stack"]] = 1; nstk[k]++ }
    if (thr[k] == "main" && f["tid"] != main_tid) bad[k, "allocated by thread " f["tid"] ", not main (" main_tid ")"]++
    if (thr[k] == "worker") {
        if (f["tid"] == main_tid) bad[k, "allocated by the main thread"]++
        if (worker_tid == "") worker_tid = f["tid"]
        if (f["tid"] != worker_tid) bad[k, "allocated by thread " f["tid"] ", not the producer (" worker_tid ")"]++
    }
}
$1 == "free" {
    parse()
    if (f["site"] !~ /^site_/) next
    k = f["site"] " " f["size"]
    if (!(k in rows)) { print "free of a block from " f["site"] " of " f["size"] " bytes, never asked for"; next }
    freed[k]++
    cross = f["tid"] != f["alloc_tid"]
    crossed[k] += cross
    if (!path_ok(wpath[k], f["path"])) bad[k, "freed by path " f["path"] (cross ? " (cross-thread)" : " (same thread)")]++
    if (f["match"] != "ok") bad[k, "free that does not match its allocation (" f["match"] ")"]++
    if (wpath[k] == "large" && f["cls"] != 255) bad[k, "large free of class " f["cls"]]++
}
END {
    if (main_tid == "") print "no thread start record for the main thread (os_tid " pid ")"
    for (k in rows) {
        g = got[k] + 0
        if (mode == "all") {
            if (g != n[k]) print k ": " g " allocation records, want " n[k]
            if (freed[k] + 0 != nfree[k]) print k ": " freed[k] + 0 " free records, want " nfree[k]
            if (crossed[k] + 0 != ncross[k]) print k ": " crossed[k] + 0 " cross-thread frees, want " ncross[k]
        } else if (mode == "bytes") {
            # Each allocation of s bytes is sampled with p = 1 - exp(-s/N), independently (Poisson by bytes), so
            # the samples k ~ Binomial(n, p) and k/p estimates n with standard deviation sqrt(n (1 - p) / p).
            p = 1 - exp(-size_of[k] / period)
            bound = 5 * sqrt(n[k] * (1 - p) / p) + 1
            d = est[k] - n[k]; if (d < 0) d = -d
            if (d > bound) printf "%s: estimated %.1f allocations from %d samples, truth %d, bound +-%.1f\n", k, est[k], g, n[k], bound
            else printf "# %s: estimated %.1f from %d samples, truth %d, bound +-%.1f\n", k, est[k], g, n[k], bound
        }
        if (mode != "all") {
            # Every sampled block of a site that frees everything is freed once, and none of the live ones.
            want = nfree[k] ? g : 0
            if (freed[k] + 0 != want) print k ": " freed[k] + 0 " free records for " g " sampled blocks, want " want
            if (ncross[k] == nfree[k] && crossed[k] + 0 != freed[k] + 0) print k ": " freed[k] - crossed[k] " same-thread frees, want none"
            if (ncross[k] == 0 && crossed[k] + 0) print k ": " crossed[k] " cross-thread frees, want none"
        }
        if (g && nstk[k] != 1) print k ": " nstk[k] " distinct stacks, want 1"
    }
    if (mode == "count") {
        # One sample every N-th allocation of a thread, and each site makes its n allocations in one run of one
        # thread: the run holds floor(n/N) or ceil(n/N) samples, so |samples * N - n| < N.
        for (s in site_n) {
            e = site_got[s] * period; d = e - site_n[s]; if (d < 0) d = -d
            if (d >= period) print s ": " site_got[s] " samples * " period " = " e ", truth " site_n[s] ", bound < " period
            else print "# " s ": " site_got[s] " samples * " period " = " e ", truth " site_n[s]
        }
    }
    for (kb in bad) { split(kb, kk, SUBSEP); print kk[1] ": " bad[kb] " records with " kk[2] }
}'

# site size cls_lo cls_hi allocs thread caller frees cross free_path align, per unit of trc_sites' scale (the table
# at the top of trc_sites.c). Classes follow alloc/layout.h (16..128 by 16, then four per power of two): 24 -> 1
# (32), 500 -> 15 (512), 100 -> 6 (112), 5000 -> 28 (5120), 700 -> 17 (768), 40 -> 2 (48); aligned_alloc(64, 200)
# needs a class whose size is a multiple of 64: 11 (256); posix_memalign(4096, 3000): 27 (4096). realloc to 2000
# may leave room to grow (alloc/api.c move_block): a class of 2048 to 3072 bytes, 23 to 25. Large blocks: 255.
cat >sites.truth <<'EOF'
site_small        24     1   1   1000 main   run_sites     1000 0   local     16
site_medium       500    15  15  300  main   run_sites     300  300 ss_remote 16
site_large        200000 255 255 4    main   run_sites     4    2   large     16
site_grow         100    6   6   200  main   run_sites     200  0   local     16
site_grow         2000   23  25  200  main   run_sites     200  0   local     16
site_aligned      200    11  11  100  main   run_sites     0    0   -         64
site_memalign     3000   27  27  100  main   run_sites     0    0   -         4096
site_live         5000   28  28  77   main   run_sites     0    0   -         16
site_remote       700    17  17  400  worker producer_main 400  400 ss_remote 16
site_worker_local 40     2   2   150  worker producer_main 150  0   local     16
EOF

# site_check NAME FILE MODE PERIOD SCALE: runs SITE_CHECK, one ok or FAIL.
site_check() {
    local name=$1 file=$2
    awk -v mode="$3" -v period="$4" -v scale="$5" "$SITE_CHECK" sites.truth "$file" >"$file.check"
    grep '^# ' "$file.check" | sed 's/^# /    /' || true
    if grep -qv '^# ' "$file.check"; then
        grep -v '^# ' "$file.check" | sed 's/^/    /' >&2
        fail "$name: $(grep -cv '^# ' "$file.check") problems (above)"
    else
        ok "$name"
    fi
}
# count_of FILE KIND SITE: records of KIND (alloc, free) from SITE in trc_sym output.
count_of() {
    awk -v kind="$2" -v site="$3" '$1 == kind && index($0, " site=" site " ") { n++ } END { print n + 0 }' "$1"
}
field_of() { # field_of FILE RECORD FIELD: FIELD of the first RECORD line
    awk -v r="$2" -v k="$3" '$1 == r { for (i = 2; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' "$1"
}
# end_events_match FILE: the END's event count is the number of event records read (the writer lost none).
end_events_match() {
    awk '$1 == "end" { for (i = 2; i <= NF; i++) { split($i, kv, "="); e[kv[1]] = kv[2] } }
         $1 == "alloc" || $1 == "free" { n++ }
         END { if (e["events"] != n + 0 || e["lost"] != 0) { print "END says " e["events"] " events, " e["lost"] " lost; " n + 0 " read"; exit 1 } }' "$1"
}

# ==== 1. Known call sites, every allocation sampled: exact =========================================================
rec "$tmp/all.hkp" all "$SITES" sites 1 || fail "trc_sites sites exited $?"
"$SYM" sites.syms all.hkp >all.txt 2>all.err || fail "all.hkp does not read cleanly: $(cat all.err)"
check "sample=all: header" "$(field_of all.txt header sample)/$(field_of all.txt header period)" "all/1"
check "sample=all: complete" "$(grep '^complete=' all.txt)" "complete=1"
check "sample=all: END reason" "$(field_of all.txt end reason)" 0
if msg=$(end_events_match all.txt); then ok "sample=all: END counts every event record"; else fail "sample=all: $msg"; fi
site_check "sample=all: counts, classes, callers, threads, stacks, frees, cross-thread frees and paths per site" \
    all.txt all 1 1
# Every thread that allocated or freed has a start record; the two that ended have an exit record.
if awk '$1 == "thread" { split($2, a, "="); split($3, b, "="); kind[b[2], a[2]] = 1 }
     $1 == "alloc" || $1 == "free" { split($2, b, "="); used[b[2]] = 1 }
     END { for (id in used) if (!((id, 1) in kind)) { print "thread " id " has events but no start record"; bad = 1 }
           for (k in kind) { split(k, x, SUBSEP); if (x[2] == 2) exits++ }
           if (exits != 2) { print exits + 0 " thread exit records, want 2 (producer, freer)"; bad = 1 }
           exit bad }' all.txt >threads.err; then
    ok "sample=all: thread records"
else
    fail "sample=all: $(cat threads.err)"
fi
# The innermost frame of each site's stack, symbolized a second way: addr2line reads DWARF, not the symbol table.
awk '$1 == "alloc" && / site=site_/ { for (i = 2; i <= NF; i++) if ($i ~ /^frames=/) { split(substr($i, 8), fr, ","); print fr[1] } }' all.txt |
    sort -u >frames0
addrs=() names=()
while IFS=+ read -r fn off; do
    start=$(awk -v fn="$fn" '$4 == fn { print $1; exit }' sites.syms)
    [ -n "$start" ] || { fail "no nm symbol for $fn"; continue; }
    # The return address minus one: the call instruction, which lies in the caller whatever follows the call.
    addrs+=("$(printf '0x%x' $((0x$start + off - 1)))")
    names+=("$fn")
done <frames0
# A thread's first stacks come from libgcc's unwinder. libunwind exports the same names, for a slower emulation
# that makes two system calls per frame, and a plain reference bound to it: the library must bind libgcc's.
for sym in _Unwind_Backtrace _Unwind_GetIP; do
    bound=$(LD_DEBUG=bindings LD_PRELOAD="$PROF_LIB" /bin/true 2>&1 |
        grep -c "binding file .*$(basename "$PROF_LIB") .* to .*/libgcc_s\.so[.0-9]* .*normal symbol \`$sym'")
    check "stacks: $sym bound to libgcc_s" "$bound" 1
done
# Nine sites, site_grow with two calls (malloc, realloc).
check "sample=all: distinct innermost frames" "${#names[@]}" 10
i=0
while read -r got; do
    [ "$got" = "${names[$i]}" ] || fail "addr2line names ${addrs[$i]} $got, the symbol table ${names[$i]}"
    i=$((i + 1))
done < <(addr2line -f -e "$SITES" "${addrs[@]}" | awk 'NR % 2 == 1')
check "sample=all: innermost frames addr2line agrees with" "$i" "${#names[@]}"

# The stack cache (trace/stacks.c) knows a stack by its return addresses and where they sit: one call site reached
# alternately from two callers laid out alike, from 1 to 4 levels of recursion, and from a signal handler on an
# alternate stack, must keep every stack apart.
rec "$tmp/twins.hkp" all "$SITES" twins 1000 || fail "trc_sites twins exited $?"
if "$SYM" sites.syms twins.hkp >twins.txt 2>twins.err; then
    got=$(awk '$1 == "alloc" && / site=cache_leaf / {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
            print f["size"] "/" f["caller"] "/" gsub(/recurse\+/, "&", f["frames"]) }' twins.txt | sort | uniq -c |
        awk '{ printf "%s%s:%s", sep, $2, $1; sep = " " }')
    check "stack cache: allocations per stack (size/caller/recursion depth:count)" "$got" \
        "112/on_alt/0:300 48/twin_a/0:1000 48/twin_b/0:1000 80/recurse/1:1000 80/recurse/2:1000 80/recurse/3:1000 80/recurse/4:1000"
else
    fail "twins.hkp does not read cleanly: $(cat twins.err)"
fi

# Frames of variable size (a VLA in a recursive function; then with a realigned frame as well, which gcc
# addresses through a saved stack pointer, DRAP): the cache must not trust the places above them.
for variant in vla vla-aligned; do
    if truth=$(rec "$tmp/$variant.hkp" all "$SITES" "$variant" 100000); then
        if "$SYM" sites.syms "$variant.hkp" >"$variant.txt" 2>"$variant.err"; then
            got=$(awk '$1 == "alloc" && / site=vla_leaf / {
                    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
                    d[gsub(/vla_rec(_aligned)?\+/, "&", f["frames"]) - 1]++ }
                END { printf "depth0 %d depth1 %d", d[0], d[1] }' "$variant.txt")
            check "stack cache past frames of variable size ($variant): allocations per recursion depth" "$got" \
                "$truth"
        else
            fail "$variant.hkp does not read cleanly: $(cat "$variant.err")"
        fi
    else
        fail "trc_sites $variant exited $?"
    fi
done

# Across dlclose: a library whose frame at a return address was of fixed size, closed, and another at the same
# address whose frame there is not. The cache must forget what it learned (dl_reload, two libraries from tests/tools).
if gcc -shared -o "$tmp/dl_fixed.so" "$root/tests/tools/dl_entry_fixed.S" &&
    gcc -shared -o "$tmp/dl_variable.so" "$root/tests/tools/dl_entry_variable.S"; then
    nm -S --defined-only "$tools/dl_reload" >dl_reload.syms
    if out=$(rec "$tmp/dl_reload.hkp" all "$tools/dl_reload" "$tmp/dl_fixed.so" "$tmp/dl_variable.so" 100000) &&
        "$SYM" dl_reload.syms dl_reload.hkp >dl_reload.txt 2>dl_reload.err; then
        got=$(awk '$1 == "alloc" && / site=leaf / {
                for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
                if (f["size"] > 1001) next
                d[gsub(/rec\+/, "&", f["frames"]) - 1]++ }
            END { printf "depth0 %d depth1 %d", d[0], d[1] }' dl_reload.txt)
        check "stack cache across dlclose ($(echo "$out" | sed -n 's/^same address: /same address: /p')): allocations per depth" \
            "$got" "$(echo "$out" | head -1)"
    else
        fail "dl_reload under recording: $(cat dl_reload.err 2>/dev/null)"
    fi
else
    fail "could not build the dl_reload libraries"
fi

# Coroutine stacks whose memory is cut again into smaller stacks with guard pages: no lookup may read past a
# stack's end (the first cache, bounded by what unwinds had walked, faulted here), and each stack is right.
if rec "$tmp/fibers.hkp" all "$SITES" fibers; then
    if "$SYM" sites.syms fibers.hkp >fibers.txt 2>fibers.err; then
        got=$(awk '$1 == "alloc" && / site=fiber_(top|deep) / {
                for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
                print f["site"] "/" f["size"] }' fibers.txt | sort | uniq -c | awk '{ printf "%s%s:%s", sep, $2, $1; sep = " " }')
        check "stack cache on reused fiber stacks: allocations per site/size" "$got" \
            "fiber_deep/24:1 fiber_deep/30:1 fiber_deep/40:1 fiber_deep/80:1 fiber_top/48:1 fiber_top/64:1"
    else
        fail "fibers.hkp does not read cleanly: $(cat fibers.err)"
    fi
else
    fail "trc_sites fibers exited $? (a fault in the stack cache?)"
fi

rec "$tmp/off.hkp" off "$SITES" sites 1 || fail "trc_sites sites exited $? with sampling off"
"$DUMP" --summary off.hkp >off.sum 2>&1 || fail "off.hkp does not read cleanly: $(cat off.sum)"
check "sample=off: alloc and free records, complete" "$(grep -E '^(alloc|free|complete)' off.sum | tr '\n' ' ')" \
    "alloc 0 free 0 complete=1 "

# ==== 2. Sampled: estimates within their bounds, seeds ==========================================================
scale=20
rec "$tmp/count.hkp" count:7 "$SITES" sites $scale || fail "trc_sites exited $? under count:7"
"$SYM" sites.syms count.hkp >count.txt 2>count.err || fail "count.hkp does not read cleanly: $(cat count.err)"
check "count:7: header" "$(field_of count.txt header sample)/$(field_of count.txt header period)" "count/7"
site_check "count:7: per-site samples * 7 within 7 of the truth; every sampled block's free" count.txt count 7 $scale

seed=$((RANDOM * 32768 + RANDOM))
HAKMEM_SAMPLE_SEED=$seed rec "$tmp/bytes.hkp" bytes:4k "$SITES" sites $scale || fail "trc_sites exited $? under bytes:4k"
"$SYM" sites.syms bytes.hkp >bytes.txt 2>bytes.err || fail "bytes.hkp does not read cleanly: $(cat bytes.err)"
check "bytes:4k: header" "$(field_of bytes.txt header sample)/$(field_of bytes.txt header period)/$(field_of bytes.txt header seed)" \
    "bytes/4096/$seed"
site_check "bytes:4k (seed $seed): per-(site, size) estimates within 5 sd + 1; every sampled block's free" \
    bytes.txt bytes 4096 $scale

# The same seed samples the same allocations of a deterministic one-thread program; another seed others.
seq_of() { # seq_of RECORDING: (thread, size, frames) of every sampled allocation, in order
    "$SYM" sites.syms "$1" | awk '$1 == "alloc" { print $2, $4, $11 }'
}
for run in a b c; do
    s=$seed
    [ $run = c ] && s=$((seed + 1))
    HAKMEM_SAMPLE_SEED=$s rec "$tmp/seed-$run.hkp" bytes:16k "$SITES" seed 20000 || fail "trc_sites seed exited $?"
    seq_of seed-$run.hkp >seed-$run.seq
done
na=$(wc -l <seed-a.seq)
# 20000 allocations of s = 8..8199 bytes, uniform: the mean of 1 - e^(-s/16384) is about 0.213, so about 4260
# samples (standard deviation about 60).
if [ "$na" -gt 3000 ] && [ "$na" -lt 6000 ] && ! grep -qv ' frames=seed_[ab]+' seed-a.seq; then
    ok "bytes:16k: $na of 20000 allocations sampled, all from seed_a and seed_b"
else
    fail "bytes:16k: $na of 20000 allocations sampled (want 3000..6000, all from seed_a/seed_b)"
fi
if cmp -s seed-a.seq seed-b.seq; then
    ok "seed $seed twice: the same $na samples"
else
    fail "seed $seed twice: the samples differ ($(diff seed-a.seq seed-b.seq | grep -c '^[<>]') lines)"
fi
if cmp -s seed-a.seq seed-c.seq; then
    fail "seeds $seed and $((seed + 1)) sample the same allocations"
else
    ok "seeds $seed and $((seed + 1)) sample differently"
fi

# ==== 3. Crash safety ==============================================================================================
# readable FILE WHAT: the recording reads (hkt_dump exit 0), or reads up to a chunk cut short and says so (exit 1,
# "FILE: byte N: truncated ...", and the first N bytes read cleanly to exactly the same records). Sets `complete`
# (0, 1, or cut).
readable() {
    local f=$1 what=$2 rc=0
    complete=
    "$DUMP" --offsets "$f" >"$f.dump" 2>"$f.err" || rc=$?
    if [ $rc = 0 ]; then
        complete=$("$DUMP" --summary "$f" | sed -n 's/^complete=//p')
        return 0
    fi
    local msg
    msg=$(cat "$f.err")
    if [ $rc != 1 ] || [[ $msg != "$f: byte "[0-9]*": truncated "* ]]; then
        fail "$what: hkt_dump exit $rc: $msg"
        return 1
    fi
    local at=${msg#"$f: byte "}
    at=${at%%:*}
    head -c "$at" "$f" >"$f.prefix"
    if ! "$DUMP" --offsets "$f.prefix" >"$f.prefix.dump" 2>"$f.prefix.err"; then
        fail "$what: the $at bytes before the damage do not read cleanly: $(cat "$f.prefix.err")"
        return 1
    fi
    if ! cmp -s "$f.dump" "$f.prefix.dump"; then
        fail "$what: the records before byte $at differ from those of the file cut there"
        return 1
    fi
    complete="cut"
    echo "    ($what: cut mid-chunk at byte $at of $(stat -c %s "$f"): $msg)"
    return 0
}
# crash_stats FILE: "ALLOCS CHUNKS UNMATCHED HOLES" of a trc_crash recording: allocations from crash_site, EVENTS
# chunks, frees that do not name their allocation exactly, and threads whose sample numbers are not exactly 1..n
# (a thread's events reach the file in order, so what a cut recording holds of each thread is a prefix).
crash_stats() {
    "$SYM" crash.syms "$1" >"$1.txt" 2>/dev/null || true
    awk '$2 == "alloc" || $2 == "free" { o[$1] = 1 } END { n = 0; for (k in o) n++; print n }' "$1.dump" >"$1.chunks"
    awk -v chunks="$(cat "$1.chunks")" '
        $1 == "alloc" { split($2, t, "="); split($3, q, "="); n[t[2]]++; if (q[2] + 0 > mx[t[2]]) mx[t[2]] = q[2] + 0
                        if (index($0, " site=crash_site ")) a++ }
        $1 == "free" && !/ match=ok/ { bad++ }
        END { for (id in n) if (n[id] != mx[id]) holes++; print a + 0, chunks, bad + 0, holes + 0 }' "$1.txt"
}
# What a process that dies without the recorder's help may lose, by design: each thread's ring (trace/writer.h:
# 256 events) and the write buffer the writer thread empties every cycle (trace/recorder.c: 256 KiB of chunks, at
# least 7 bytes per event: kind and stage, class, and five varints of at least a byte). Two workers allocate.
RING_EVENTS=256
MAY_LOSE=$((2 * RING_EVENTS + 256 * 1024 / 7))
quota=40000 # allocations per worker before an ending: well above MAY_LOSE
tick=20000  # allocations per worker between two ticks

# 3a. SIGKILL at random moments while two threads allocate: the program says "tick K" once each worker made K * tick
# allocations; the test kills it right after the tick it chose (2 to 5, so at least 80000 allocations were made),
# while the workers go on.
mkfifo ticks
for kill_no in 1 2 3 4 5; do
    at=$((2 + RANDOM % 4))
    f=$tmp/kill$kill_no.hkp
    # exec: $! must be the program itself, the process kill -9 is meant for (not a subshell around it).
    (exec env HAKMEM_STATS_DIR="$tmp" HAKMEM_RECORD="$f" HAKMEM_SAMPLE=all LD_PRELOAD="$PROF_LIB" "$CRASH" loop $tick) >ticks &
    pid=$!
    bg_pids+=("$pid")
    exec 3<ticks
    seen=0
    # -t: a safety net against a hung program, not a synchronization (the tick line is what is waited for).
    while read -r -t 30 _ k <&3; do
        seen=$k
        [ "$k" -ge $at ] && break
    done
    kill -9 "$pid" 2>/dev/null || true
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    bg_pids=() # reaped: its pid may be reused, cleanup must not kill it
    exec 3<&-
    if [ "$seen" -lt $at ]; then
        fail "kill $kill_no: the program stopped at tick $seen before tick $at (exit $rc)"
        continue
    fi
    [ $rc = 137 ] || fail "kill $kill_no: exit status $rc, want 137 (SIGKILL)"
    readable "$f" "kill $kill_no" || continue
    [ "$complete" != 1 ] || fail "kill $kill_no: the recording of a killed process says it is complete"
    read -r n chunks nbad holes < <(crash_stats "$f")
    made=$((2 * at * tick))
    want=$((made - MAY_LOSE))
    if [ "$n" -ge $want ] && [ "$chunks" -ge 3 ] && [ "$nbad" = 0 ] && [ "$holes" = 0 ]; then
        ok "kill -9 after tick $at: readable (complete=$complete), $chunks EVENTS chunks, $n allocations (>= $made - $MAY_LOSE), frees matched, no holes"
    else
        fail "kill -9 after tick $at: $chunks EVENTS chunks (want >= 3), $n allocations (want >= $made - $MAY_LOSE), $nbad frees not matched, $holes threads with holes"
    fi
done

# 3b. The other endings. "made A B" is what the workers had allocated when the ending began.
# ending|exit status|END: exit, signal:N, none, or any:signal:N (a fatal-signal handler that may find the file lock
# taken by another thread, and then writes nothing)|what the recording holds at least: made (everything made was
# drained), exact (and no more: the workers stopped), lossy (what a death without the recorder's help may lose)
while IFS='|' read -r ending want_rc want_end floor; do
    f=$tmp/end-$ending.$RANDOM.hkp
    rc=0
    # In a subshell that waits, so the shell's own "Aborted" notice goes to a file, not the test's output.
    (
        rec "$f" all "$CRASH" "$ending" $quota >"$f.made" </dev/null
        exit $?
    ) 2>"$f.stderr" || rc=$?
    [ "$rc" = "$want_rc" ] || fail "$ending: exit status $rc, want $want_rc"
    readable "$f" "$ending" || continue
    read -r n chunks nbad holes < <(crash_stats "$f")
    reason=$(field_of "$f.txt" end reason)
    signo=$(field_of "$f.txt" end signo)
    case $reason in
    0) got_end="exit" ;;
    1) got_end=signal:$signo ;;
    "") got_end=none ;;
    *) got_end=reason$reason ;;
    esac
    case $want_end in
    any:*) [ "$got_end" = none ] || [ "$got_end" = "${want_end#any:}" ] ||
        fail "$ending: END says $got_end, want ${want_end#any:} (or no END)" ;;
    *) [ "$got_end" = "$want_end" ] || fail "$ending: END says $got_end, want $want_end" ;;
    esac
    if [ "$got_end" = none ] && [ "$complete" = 1 ]; then fail "$ending: complete without END"; fi
    if [ "$got_end" != none ]; then
        msg=$(end_events_match "$f.txt") || fail "$ending: $msg"
    fi
    read -r _ m1 m2 <"$f.made" || { fail "$ending: the program did not say what it made"; continue; }
    made=$((m1 + m2))
    case $floor in
    exact | made) want=$made ;;
    # The fatal-signal handler empties the write buffer with END, but not the rings.
    lossy) if [ "$got_end" = none ]; then want=$((made - MAY_LOSE)); else want=$((made - 2 * RING_EVENTS)); fi ;;
    esac
    if [ "$nbad" != 0 ] || [ "$holes" != 0 ]; then
        fail "$ending: $nbad frees do not match their allocation, $holes threads have holes in their samples"
    elif [ "$floor" = exact ] && [ "$n" != "$made" ]; then
        fail "$ending: $n allocations recorded, want $made"
    elif [ "$n" -lt "$want" ]; then
        fail "$ending: $n allocations recorded, want >= $want (made $made)"
    else
        ok "$ending: exit $rc, readable (complete=$complete), END $got_end, $n allocations recorded of $made made when it ended (>= $want)"
    fi
done <<'EOF'
return-joined|0|exit|exact
return-running|0|exit|made
exit-thread|0|exit|made
_exit|0|none|lossy
abort|134|any:signal:6|lossy
segv|139|any:signal:11|lossy
abort|134|any:signal:6|lossy
segv|139|any:signal:11|lossy
EOF

# ==== 4. Fork and exec children ====================================================================================
# fork_check PARENT_FILE CHILD_FILE PARENT_PID CHILD_PID WHAT
fork_check() {
    local pf=$1 cf=$2 ppid=$3 cpid=$4 what=$5
    for f in "$pf" "$cf"; do
        "$SYM" sites.syms "$f" >"$f.txt" 2>"$f.err" || { fail "$what: $f does not read cleanly: $(cat "$f.err")"; return; }
    done
    check "$what: parent's header pid, child's pid and ppid" \
        "$(field_of "$pf.txt" header pid) $(field_of "$cf.txt" header pid) $(field_of "$cf.txt" header ppid)" \
        "$ppid $cpid $ppid"
    check "$what: both complete" "$(grep -h '^complete=' "$pf.txt" "$cf.txt" | tr '\n' ' ')" "complete=1 complete=1 "
    local s got want=""
    got=""
    for s in site_parent_before site_parent_thread site_parent_after site_child_only; do
        got+="$s=$(count_of "$pf.txt" alloc $s)/$(count_of "$pf.txt" free $s) "
    done
    check "$what: parent's allocations/frees per site" "$got" \
        "site_parent_before=300/300 site_parent_thread=3000/3000 site_parent_after=200/200 site_child_only=0/0 "
    got=""
    for s in site_parent_before site_parent_thread site_parent_after site_child_only; do
        got+="$s=$(count_of "$cf.txt" alloc $s)/$(count_of "$cf.txt" free $s) "
    done
    check "$what: child's allocations/frees per site" "$got" \
        "site_parent_before=0/0 site_parent_thread=0/0 site_parent_after=0/0 site_child_only=250/250 "
    check "$what: frees not matching their allocation (parent, child)" \
        "$(awk '$1 == "free" && !/ match=ok/' "$pf.txt" | wc -l) $(awk '$1 == "free" && !/ match=ok/' "$cf.txt" | wc -l)" "0 0"
}
# exec_check BEFORE_FILE AFTER_FILE PID WHAT
exec_check() {
    local bf=$1 af=$2 pid=$3 what=$4
    for f in "$bf" "$af"; do
        "$SYM" sites.syms "$f" >"$f.txt" 2>"$f.err" || { fail "$what: $f does not read cleanly: $(cat "$f.err")"; return; }
    done
    check "$what: header pids (before, after exec)" "$(field_of "$bf.txt" header pid) $(field_of "$af.txt" header pid)" "$pid $pid"
    check "$what: same ppid before and after exec" "$(field_of "$af.txt" header ppid)" "$(field_of "$bf.txt" header ppid)"
    check "$what: image before exec: allocations of site_before_exec, site_exec_child" \
        "$(count_of "$bf.txt" alloc site_before_exec) $(count_of "$bf.txt" alloc site_exec_child)" "500 0"
    check "$what: image before exec: END (docs/format.md: reason 2, exec)" "$(field_of "$bf.txt" end reason)" 2
    check "$what: image after exec: allocations/frees of site_exec_child, allocations of site_before_exec" \
        "$(count_of "$af.txt" alloc site_exec_child)/$(count_of "$af.txt" free site_exec_child) $(count_of "$af.txt" alloc site_before_exec)" \
        "350/350 0"
    check "$what: image after exec: complete" "$(grep '^complete=' "$af.txt")" complete=1
}
only_files() { # only_files DIR: the file names in DIR, sorted, on one line
    (cd "$1" && printf '%s\n' * | sort | tr '\n' ' ')
}

# 4a. %p: every process names its own file.
mkdir fork-p
rec "$tmp/fork-p/r.%p" all "$SITES" fork >fork-p.out || fail "trc_sites fork exited $?"
read -r _ P _ C <fork-p.out
check "fork, %p: files" "$(only_files fork-p)" "$(printf '%s\n' "r.$P" "r.$C" | sort | tr '\n' ' ')"
fork_check "fork-p/r.$P" "fork-p/r.$C" "$P" "$C" "fork, %p"

# 4b. HAKMEM_RECORD_ROOT_PID: the root writes the name itself, its child the name with .<pid>. The root's pid is
# known before it starts by exec'ing it from a shell that exports its own pid ($$) first.
mkdir fork-r
HAKMEM_STATS_DIR=$tmp HAKMEM_RECORD=$tmp/fork-r/r.hkp HAKMEM_SAMPLE=all PROF_LIB=$PROF_LIB \
    sh -c 'export HAKMEM_RECORD_ROOT_PID=$$ LD_PRELOAD="$PROF_LIB"; exec "$0" fork' "$SITES" >fork-r.out ||
    fail "trc_sites fork exited $? (root pid)"
read -r _ P _ C <fork-r.out
check "fork, root pid: files" "$(only_files fork-r)" "r.hkp r.hkp.$C "
fork_check "fork-r/r.hkp" "fork-r/r.hkp.$C" "$P" "$C" "fork, root pid"

# 4c. exec of itself, %p: one pid, two images; the second finds the first's file and takes .1.
mkdir exec-p
rec "$tmp/exec-p/r.%p" all "$SITES" exec >exec-p.out || fail "trc_sites exec exited $?"
read -r _ P <exec-p.out
check "exec, %p: both images say the same pid" "$(awk '{ print $2 }' exec-p.out | sort -u | wc -l)" 1
check "exec, %p: files" "$(only_files exec-p)" "r.$P r.$P.1 "
exec_check "exec-p/r.$P" "exec-p/r.$P.1" "$P" "exec, %p"

# 4d. exec, root pid: the image before exec writes the name, the one after (same pid, the name taken) .<pid>.
mkdir exec-r
HAKMEM_STATS_DIR=$tmp HAKMEM_RECORD=$tmp/exec-r/r.hkp HAKMEM_SAMPLE=all PROF_LIB=$PROF_LIB \
    sh -c 'export HAKMEM_RECORD_ROOT_PID=$$ LD_PRELOAD="$PROF_LIB"; exec "$0" exec' "$SITES" >exec-r.out ||
    fail "trc_sites exec exited $? (root pid)"
read -r _ P <exec-r.out
check "exec, root pid: files" "$(only_files exec-r)" "r.hkp r.hkp.$P "
exec_check "exec-r/r.hkp" "exec-r/r.hkp.$P" "$P" "exec, root pid"

if [ $failures -gt 0 ]; then
    echo "prof_trace_record: $failures checks failed (TRC_SEED=$TRC_SEED)" >&2
    exit 1
fi
echo "prof_trace_record: ok"
