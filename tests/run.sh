#!/usr/bin/env bash
# Test runner: every built test program ($BUILD/tests/test_*) under LD_PRELOAD of the allocator, the unit
# programs ($BUILD/tests/unit_*, which link the allocator), every tests/real_*.sh, the counter-build tests
# ($BUILD/tests/prof_* and tests/prof_*.sh, under libhakmem_prof.so), and the sanitizer builds found in
# $BUILD/tests/{asan,tsan}/{test,unit}_*. Usage: tests/run.sh [SUBSTRING...]  (runs matching cases)
#
# Env:  BUILD           build directory (default: <repo>/build)
#       HAK_TEST_LIB    preload this allocator instead of $BUILD/libhakmem.so; empty = no preload (glibc).
#                       Used to validate the tests themselves; unit and sanitizer cases are skipped then.
#       HAK_TEST_SCALE  work size in percent (default 100; sanitizer cases default to 20)
#       HAK_TEST_TIMEOUT per-case timeout in seconds (default 300)
# Knobs the test programs read (run.sh sets the first two itself):
#       HAK_EXPECT_SAFE_FREE=1  test_invalid_free runs (set for hakmem; other allocators crash on bad frees)
#       HAK_RSS_BOUND_MB        test_rss bound (default 8; run.sh passes 8 + the large-span cache hakmem keeps
#                               resident by design (HAKMEM_LARGE_CACHE_MB, 16), and -1 = report only for other libs)
#       HAK_CHURN_BOUND_MB      test_churn_memory bound on RSS growth (default 32)
#       HAK_TEST_WEAK_ALIGN=1   accept C's minimum alignment for sizes < 16 (validating against jemalloc)
#       HAK_TEST_SKIP=a,b       skip named sections (pvalloc: jemalloc lacks it; aligned_alloc_odd: ASan's
#                               aligned_alloc rejects sizes that are not a multiple of the alignment)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$root/build}
if [ ! -d "$BUILD" ]; then
    echo "run.sh: build directory $BUILD does not exist (run make first)" >&2
    exit 2
fi
BUILD=$(cd "$BUILD" && pwd)
cd "$root" # tests that read files of the tree (docs/counters.md) find them from here
timeout_s=${HAK_TEST_TIMEOUT:-300}

if [ "${HAK_TEST_LIB+set}" = set ]; then
    lib=$HAK_TEST_LIB
    validating=1
else
    lib=$BUILD/libhakmem.so
    validating=0
    if [ ! -f "$lib" ]; then
        echo "run.sh: $lib not found (run make first, or set HAK_TEST_LIB)" >&2
        exit 2
    fi
fi
if [ -n "$lib" ]; then
    lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")
fi
# hakmem-only promises (refusing invalid frees, returning RSS) are enforced only when hakmem is under test.
case $(basename "${lib:-none}") in
libhakmem*.so) is_hakmem=1 ;;
*) is_hakmem=0 ;;
esac

# ---- the case list: "name<TAB>kind<TAB>path" -----------------------------------------------------------------
cases=()
for f in "$BUILD"/tests/test_*; do
    [ -f "$f" ] && [ -x "$f" ] && cases+=("$(basename "$f")	preload	$f")
done
# unit_* programs link the allocator's internals themselves: run without preload (not when validating).
if [ "$validating" = 0 ]; then
    for f in "$BUILD"/tests/unit_*; do
        [ -f "$f" ] && [ -x "$f" ] && cases+=("$(basename "$f")	unit	$f")
    done
fi
for f in "$root"/tests/real_*.sh; do
    [ -f "$f" ] && cases+=("$(basename "$f" .sh)	real	$f")
done
# prof_* test the counter build: they run under libhakmem_prof.so whatever allocator the others use.
if [ "$validating" = 0 ]; then
    for f in "$BUILD"/tests/prof_*; do
        [ -f "$f" ] && [ -x "$f" ] && cases+=("$(basename "$f")	prof	$f")
    done
    for f in "$root"/tests/prof_*.sh; do
        [ -f "$f" ] && cases+=("$(basename "$f" .sh)	profsh	$f")
    done
fi
# The same programs under the prof build's debug checks (guards and poison): they must pass, within the same memory
# bounds, and the allocator must report nothing (no false positive). Not the test that frees invalid pointers on
# purpose.
if [ "$validating" = 0 ]; then
    for f in "$BUILD"/tests/test_*; do
        case $(basename "$f") in test_invalid_free | *.d) continue ;; esac
        [ -f "$f" ] && [ -x "$f" ] && cases+=("checks:$(basename "$f")	checks	$f")
    done
fi
# And under a recording that samples every third allocation: sampled blocks are handed out past their block's
# start (docs/architecture.md), so realloc, usable sizes, alignment and cross-thread frees of such pointers are
# exercised everywhere. Same rules, and every recording must read back (a last chunk cut short by a process that
# died is allowed).
if [ "$validating" = 0 ]; then
    for f in "$BUILD"/tests/test_*; do
        case $(basename "$f") in test_invalid_free | *.d) continue ;; esac
        [ -f "$f" ] && [ -x "$f" ] && cases+=("sampled:$(basename "$f")	sampled	$f")
    done
fi
# The stress test with thread caches of 1 and 3 blocks: refills then cut a batch off most slab free lists instead
# of taking them whole, and nearly every free spills; both paths, and their room accounting, under cross-thread
# frees.
if [ "$validating" = 0 ] && [ -x "$BUILD/tests/test_stress" ]; then
    for cap in 1 3; do
        cases+=("cap$cap:test_stress	cap$cap	$BUILD/tests/test_stress")
    done
fi
if [ "$validating" = 0 ]; then
    for san in asan-prof tsan-prof; do
        for f in "$BUILD/tests/$san"/test_*; do
            [ -f "$f" ] && [ -x "$f" ] && cases+=("$san:$(basename "$f")	$san	$f")
        done
    done
    # With every allocation sampled, no block is handed out at an offset and every free looks at its block's
    # record slot, which another thread may have written: that path under ThreadSanitizer too.
    [ -x "$BUILD/tests/tsan-prof/test_stress" ] &&
        cases+=("tsan-prof-all:test_stress	tsan-prof-all	$BUILD/tests/tsan-prof/test_stress")
    for san in asan tsan; do
        for f in "$BUILD/tests/$san"/test_* "$BUILD/tests/$san"/unit_*; do
            [ -f "$f" ] && [ -x "$f" ] && cases+=("$san:$(basename "$f")	$san	$f")
        done
    done
fi

selected() { # $1 = case name; no filter args = everything
    [ $# -gt 0 ] || return 1
    local name=$1
    shift
    [ $# -eq 0 ] && return 0
    local pat
    for pat in "$@"; do
        [[ "$name" == *"$pat"* ]] && return 0
    done
    return 1
}

# The recordings a case left in $recdir must read back ($dump is hkt_dump). A process that ended by _exit or a
# signal may have its last chunk half written (the kernel cuts a write short when the process dies): that reads as
# cut short, which the format allows; any other damage fails the case.
readback='
n=0
for r in "$recdir"/rec.*; do
    n=$((n + 1))
    "$dump" --summary "$r" >/dev/null 2>"$recdir/err" || grep -q "truncated" "$recdir/err" ||
        { echo "recording $r does not read back: $(cat "$recdir/err")"; exit 1; }
done
[ "$n" -gt 0 ] || { echo "no recording was written"; exit 1; }'

passed=0
failed=0
log=$(mktemp)
statsdir=$(mktemp -d)
trap 'rm -rf "$log" "$statsdir"' EXIT
for c in "${cases[@]}"; do
    IFS=$'\t' read -r name kind path <<<"$c"
    selected "$name" "$@" || continue
    start=$EPOCHREALTIME
    case $kind in
    preload)
        envs=(LD_PRELOAD="$lib")
        [ "$is_hakmem" = 1 ] && envs+=(HAK_EXPECT_SAFE_FREE=1)
        # RSS return is a hakmem promise: against other allocators the numbers are only reported.
        if [ "$is_hakmem" = 0 ]; then
            envs+=(HAK_RSS_BOUND_MB="${HAK_RSS_BOUND_MB:--1}")
        else
            envs+=(HAK_RSS_BOUND_MB="${HAK_RSS_BOUND_MB:-$((8 + ${HAKMEM_LARGE_CACHE_MB:-16}))}")
        fi
        cmd=(env "${envs[@]}" "$path")
        ;;
    real)
        cmd=(env LIB="$lib" BUILD="$BUILD" bash "$path")
        ;;
    cap1 | cap3)
        cmd=(env LD_PRELOAD="$lib" HAKMEM_TLS_SLL_CAP="${kind#cap}" HAK_EXPECT_SAFE_FREE=1
            HAK_RSS_BOUND_MB="${HAK_RSS_BOUND_MB:-$((8 + ${HAKMEM_LARGE_CACHE_MB:-16}))}" "$path")
        ;;
    unit)
        cmd=(env LD_PRELOAD= "$path")
        ;;
    prof)
        # A private stats directory: the test reads its own segment back through another process.
        cmd=(env LD_PRELOAD="$BUILD/libhakmem_prof.so" HAKMEM_STATS_DIR="$statsdir" "$path" "$BUILD/tests/tools/hkc_dump")
        ;;
    profsh)
        cmd=(env BUILD="$BUILD" PROF_LIB="$BUILD/libhakmem_prof.so" bash "$path")
        ;;
    checks)
        cmd=(bash -c '"$@" 2>&1 | tee /dev/stderr | { ! grep -q "^hakmem:"; } || { echo "the debug checks reported an error (above)"; exit 1; }; exit "${PIPESTATUS[0]}"' checks
            env LD_PRELOAD="$BUILD/libhakmem_prof.so" HAKMEM_STATS=0 HAKMEM_GUARD=1 HAKMEM_POISON=1 HAK_EXPECT_SAFE_FREE=1
            HAK_RSS_BOUND_MB="${HAK_RSS_BOUND_MB:-$((8 + ${HAKMEM_LARGE_CACHE_MB:-16}))}" "$path")
        ;;
    sampled)
        recdir=$(mktemp -d)
        cmd=(bash -c 'recdir=$1 dump=$2; shift 2
            "$@" 2>&1 | tee /dev/stderr | { ! grep -q "^hakmem:"; } || { echo "the allocator reported an error (above)"; exit 1; }
            rc=${PIPESTATUS[0]}; [ "$rc" = 0 ] || exit "$rc"
            '"$readback" sampled "$recdir" "$BUILD/tests/tools/hkt_dump"
            env LD_PRELOAD="$BUILD/libhakmem_prof.so" HAKMEM_STATS=0 HAKMEM_RECORD="$recdir/rec.%p" HAKMEM_SAMPLE=count:3
            HAK_EXPECT_SAFE_FREE=1 HAK_RSS_BOUND_MB="${HAK_RSS_BOUND_MB:-$((8 + ${HAKMEM_LARGE_CACHE_MB:-16}))}" "$path")
        ;;
    asan)
        cmd=(env LD_PRELOAD= HAK_TEST_SCALE="${HAK_TEST_SCALE:-20}" HAK_EXPECT_SAFE_FREE=1
            ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}halt_on_error=1:abort_on_error=0"
            UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1" "$path")
        ;;
    tsan)
        cmd=(env LD_PRELOAD= HAK_TEST_SCALE="${HAK_TEST_SCALE:-20}" HAK_EXPECT_SAFE_FREE=1
            TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}halt_on_error=1" "$path")
        ;;
    asan-prof | tsan-prof | tsan-prof-all)
        # the prof build with a recording sampling every third allocation (or every one); the recordings must
        # read back
        recdir=$(mktemp -d)
        cmd=(bash -c 'recdir=$1 dump=$2; shift 2; "$@" || exit
            '"$readback" "$kind" "$recdir" "$BUILD/tests/tools/hkt_dump"
            env LD_PRELOAD= HAK_TEST_SCALE="${HAK_TEST_SCALE:-20}" HAK_EXPECT_SAFE_FREE=1 HAKMEM_STATS=0
            HAKMEM_RECORD="$recdir/rec.%p" HAKMEM_SAMPLE="$([ "$kind" = tsan-prof-all ] && echo all || echo count:3)"
            ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}halt_on_error=1:abort_on_error=0"
            UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1"
            TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}halt_on_error=1" "$path")
        ;;
    esac
    # In a subshell that must wait (the trailing exit stops bash from exec'ing timeout), so the shell's own
    # "Segmentation fault" notice lands in the log rather than between the result lines.
    (
        timeout -k 10 "$timeout_s" "${cmd[@]}"
        exit $?
    ) >"$log" 2>&1 </dev/null
    rc=$?
    case $kind in sampled | asan-prof | tsan-prof | tsan-prof-all) rm -rf "$recdir" ;; esac
    secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    if [ $rc -eq 0 ]; then
        echo "PASS $name (${secs}s)"
        passed=$((passed + 1))
    else
        if [ $rc -eq 124 ] || { [ $rc -eq 137 ] && [ "${secs%.*}" -ge "$timeout_s" ]; }; then
            why="timed out after ${timeout_s}s"
        elif [ $rc -gt 128 ]; then
            why="killed by signal $((rc - 128))"
        else
            why="exit status $rc"
        fi
        echo "FAIL $name (${secs}s)"
        echo "    [$why]"
        tail -n 20 "$log" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done
if [ $((passed + failed)) -eq 0 ]; then
    echo "run.sh: no test case found${*:+ matching: $*} (looked in $BUILD/tests and $root/tests)" >&2
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ] && [ $((passed + failed)) -gt 0 ]
