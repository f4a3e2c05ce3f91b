#!/usr/bin/env bash
# Sampled blocks of the prof build are handed out past their block's start, so that their frees leave the free
# fast path by themselves (docs/architecture.md). Under a recording that samples every second allocation:
# tests/tools/sampled_ptrs checks bytes, usable sizes, alignment, calloc and cross-thread frees of such pointers;
# the recording must give each call site its frees, same- or cross-thread as the program made them, and no block
# live; a sampled pointer freed twice is reported as a double free like any other.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
T=$BUILD/tests/tools/sampled_ptrs
for f in "$HAKPROF" "$T" "$PROF_LIB"; do
    [ -e "$f" ] || { echo "$test_name: $f is missing (make first)" >&2; exit 1; }
done
command -v sqlite3 >/dev/null || { echo "$test_name: the sqlite3 shell is missing (make deps)" >&2; exit 1; }
cd "$tmp" || exit 1

run() { env HAKMEM_STATS=0 HAKMEM_SAMPLE=count:2 LD_PRELOAD="$PROF_LIB" "$@"; }

expect_exit 0 "sampled pointers: malloc, realloc, memalign, calloc, cross-thread free" \
    run HAKMEM_RECORD="$tmp/s.hkp" "$T"
grep '^FAIL' "$tmp/out" >&2
grep -q '^hakmem:' "$tmp/err" && fail "the allocator reported an error: $(grep -m1 '^hakmem:' "$tmp/err")"

expect_exit 0 "ingest" "$HAKPROF" ingest s.hkp -o s.db
site() { sqlite3 -bail s.db "SELECT allocs, same_thread_frees, cross_thread_frees, live FROM site_ips WHERE function = '$1'"; }
# Every second allocation is sampled: about half of each site's calls, never none.
check_site() { # $1 = function, $2 = its calls, $3 = same or cross (who frees its blocks)
    local allocs same cross live
    IFS='|' read -r allocs same cross live <<<"$(site "$1")"
    if [ -z "$allocs" ] || [ "$allocs" -lt $(($2 / 3)) ] || [ "$allocs" -gt $(($2 * 2 / 3)) ]; then
        fail "$1: ${allocs:-no} sampled allocations of $2 calls (expected about half)"
    elif [ "$live" != 0 ] || [ $((same + cross)) != "$allocs" ]; then
        fail "$1: $allocs sampled, $same + $cross frees recorded, $live live"
    elif { [ "$3" = same ] && [ "$cross" != 0 ]; } || { [ "$3" = cross ] && [ "$same" != 0 ]; }; then
        fail "$1: frees recorded same=$same cross=$cross, all are $3-thread"
    else
        ok "$1: $allocs of $2 calls sampled, every free recorded as $3-thread"
    fi
}
check_site site_plain 6000 same
check_site site_grow 6000 same
check_site site_zeroed 3000 same
check_site site_aligned 600 same
check_site site_cross 3000 cross

expect_exit 0 "a block freed twice, sampled or not" run "$T" double
n=$(grep -c '^hakmem: double free of' "$tmp/err")
[ "$n" = 2 ] && ok "both double frees reported as such" || fail "$n double-free reports of 2: $(cat "$tmp/err")"
grep -v '^hakmem: double free of' "$tmp/err" | grep -q '^hakmem:' && fail "another report: $(cat "$tmp/err")"
grep -q '^survived$' "$tmp/out" || fail "the program did not go on after the double frees"
# A sampled block's own start (16 bytes before the pointer malloc returned) is no pointer malloc returned: free and
# realloc of it are reported and refused, and the block is never handed out twice.
expect_exit 0 "the start of a sampled block, freed and reallocated" \
    env HAKMEM_STATS=0 HAKMEM_SAMPLE=count:2 HAKMEM_RECORD="$tmp/h.hkp" LD_PRELOAD="$PROF_LIB" "$T" header
grep '^FAIL' "$tmp/out" >&2
n=$(grep -c '^hakmem: .*not a pointer malloc returned: the start of a sampled block' "$tmp/err")
[ "$n" = 2 ] && ok "free and realloc of the block's start both reported" ||
    fail "$n of 2 reports for the block's start: $(cat "$tmp/err")"
grep -q '^survived$' "$tmp/out" || fail "the program did not go on after the bad free"
exit $((failures > 0))
