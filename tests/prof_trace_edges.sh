#!/usr/bin/env bash
# Recorder edge cases found in review (tests/tools/trc_edges.c), every allocation recorded: a crash with stacks not
# yet written (the recording must read, events and stacks whole), a free by a thread past its exit while other
# threads make new stacks (same), and frees by a signal handler interrupting the recorder (no hang; the recording
# reads, and the frees it could not record are counted in a LOST chunk, not written as garbage).
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so).
set -uo pipefail
BUILD=${BUILD:-build}
PROF_LIB=${PROF_LIB:-$BUILD/libhakmem_prof.so}
T=$BUILD/tests/tools/trc_edges
DUMP=$BUILD/tests/tools/hkt_dump
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "$T" "$DUMP" "$PROF_LIB"; do
    [ -e "$f" ] || { echo "prof_trace_edges: $f is not built" >&2; exit 1; }
done
ok() { echo "ok   $1"; }
bad() { echo "prof_trace_edges: FAIL $1" >&2; fail=1; }
# run MODE: the program under the recorder (timeout itself runs without it: the recording is the program's)
run() {
    timeout -k 5 60 env HAKMEM_STATS=0 HAKMEM_SAMPLE=all HAKMEM_RECORD="$tmp/$1.hkp" LD_PRELOAD="$PROF_LIB" "$T" "$1" \
        >"$tmp/$1.out" 2>"$tmp/$1.err"
}
summary() { "$DUMP" --summary "$tmp/$1.hkp" 2>"$tmp/$1.dump.err"; }
count() { awk -v k="$2" '$1 == k { print $2 }' <<<"$1"; }

run newstack-segv
rc=$?
[ "$rc" = 139 ] || [ "$rc" = 11 ] || bad "newstack-segv: exit status $rc, want a segmentation fault"
s=$(summary newstack-segv) && [ "$(count "$s" alloc)" -ge 1000 ] &&
    ok "newstack-segv: the crashed recording reads whole ($(count "$s" alloc) allocations, $(count "$s" stack) stacks)" ||
    bad "newstack-segv: $(cat "$tmp/newstack-segv.dump.err") $(tr '\n' ' ' <<<"$s")"

run dead-free || bad "dead-free: exit status $?"
s=$(summary dead-free) && [ "$(count "$s" free)" -ge 40 ] &&
    ok "dead-free: a dead thread's free and the new stacks read back ($(count "$s" free) frees)" ||
    bad "dead-free: $(cat "$tmp/dead-free.dump.err") $(tr '\n' ' ' <<<"$s")"

run signal-free
rc=$?
[ "$rc" = 0 ] || bad "signal-free: exit status $rc (124: hung)"
s=$(summary signal-free)
frees=$(awk '{ print $3 }' "$tmp/signal-free.out")
if [ -n "$s" ] && [ -n "$frees" ] && [ "$frees" -gt 0 ]; then
    ok "signal-free: $frees frees by the handler, the recording reads ($(count "$s" free) frees recorded, $(count "$s" lost) LOST chunk(s))"
else
    bad "signal-free: $(cat "$tmp/signal-free.dump.err") $(tr '\n' ' ' <<<"$s") / $(cat "$tmp/signal-free.out")"
fi

[ "$fail" = 0 ] || exit 1
