#!/usr/bin/env bash
# Recording through process lifecycles that once broke it (tests/tools/lifecycle.c): a program that closes every
# descriptor and opens a file of its own (the recorder must never write into it), stdout closed, main ending
# with pthread_exit (the process must still exit), a _Fork child (no fork handlers: it must not write into the
# parent's file), RLIMIT_FSIZE (no SIGXFSZ for the program), umask 0777 (recordings stay readable by their owner),
# signals (the program sees SIG_DFL where the recorder put its handler; Python's Ctrl-C is a KeyboardInterrupt;
# SIGTERM in pause() still ends the program), a full disk (the recording is cut at its last whole chunk). Every recording is read back with hakprof report.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so; hakprof preloads the one beside it).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
LIFE=$BUILD/tests/tools/lifecycle
[ -x "$LIFE" ] || { echo "prof_record_lifecycle: $LIFE is missing (make first)" >&2; exit 1; }
cd "$tmp" || exit 1
export HAKMEM_SAMPLE=all HAKMEM_STATS_DIR=$tmp

# readable NAME FILE WANT: hakprof report reads FILE without damage; WANT is complete or cut (short).
readable() {
    local got=0
    "$HAKPROF" report --format json -f --sqlite "$tmp/r.db" "$2" >"$tmp/rep.json" 2>"$tmp/rep.err" || got=$?
    if [ "$got" != 0 ]; then
        fail "$1: hakprof report exit $got: $(head -c 300 "$tmp/rep.err")"
        return
    fi
    local complete damage
    complete=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["complete"])' "$tmp/rep.json")
    damage=$(sqlite3 "$tmp/r.db" "SELECT COALESCE(damage, '') FROM runs")
    case "$3" in
    complete) [ "$complete" = 1 ] && ok "$1: recording complete" || fail "$1: recording not complete ($damage)" ;;
    cut) { [ "$complete" = 0 ] && ! grep -q 'damaged\|checksum\|length' <<<"$damage"; } &&
        ok "$1: recording cut short at a chunk boundary ($damage)" || fail "$1: complete=$complete damage '$damage'" ;;
    esac
}

# ---- the program closes every descriptor, then opens its own file -------------------------------------------------
expect_exit 0 "closefds: the program runs to its end" "$HAKPROF" record -o cf.hkp -- "$LIFE" closefds "$tmp/own.txt"
if [ "$(cat own.txt)" = "the program's own data" ]; then
    ok "closefds: the program's file holds its data only"
else
    fail "closefds: the program's file holds $(wc -c <own.txt) bytes: $(head -c 80 own.txt | od -c | head -2)"
fi
grep -q 'the program closed or replaced its file descriptor; recording stopped' err &&
    ok "closefds: the recorder says why it stopped" || fail "closefds: no message: $(head -c 300 err)"
readable closefds cf.hkp cut

# ---- stdout closed: the recording must not take descriptor 1 ----------------------------------------------------
timeout 60 "$HAKPROF" record -o so.hkp -- "$LIFE" ptexit >&- 2>err
rc=$?
[ "$rc" = 0 ] && ok "stdout closed: exit 0" || fail "stdout closed: exit $rc ($(head -c 200 err))"
readable "stdout closed" so.hkp complete

# ---- main ends with pthread_exit -----------------------------------------------------------------------------------
expect_exit 0 "pthread_exit from main: the process exits (exit 0)" timeout 60 "$HAKPROF" record -o pe.hkp -- \
    "$LIFE" ptexit
readable "pthread_exit" pe.hkp complete
allocs=$(sqlite3 r.db "SELECT COUNT(*) FROM blocks WHERE size = 64")
[ "$allocs" = 1100 ] && ok "pthread_exit: 1100 allocations of 64 bytes recorded" ||
    fail "pthread_exit: $allocs allocations of 64 bytes recorded, expected 1100"

# ---- a _Fork child --------------------------------------------------------------------------------------------------
expect_exit 0 "_Fork child: both run to their end" timeout 60 "$HAKPROF" record -o rf.hkp -- "$LIFE" rawfork 100000
readable "_Fork" rf.hkp complete
allocs=$(sqlite3 r.db "SELECT COUNT(*) FROM blocks WHERE size = 64")
[ "$allocs" = 2000 ] && ok "_Fork: the parent's recording holds its own 2000 allocations, none of the child's" ||
    fail "_Fork: $allocs allocations of 64 bytes in the parent's recording, expected 2000"

# ---- fork while another thread unwinds: the child must not inherit libunwind's locks ----------------------------
# libunwind has no fork handlers: a fork while a thread held one of its locks left the child hung in unw_backtrace,
# every signal blocked (once in about 4,000 forks of test_fork under sampling). Every allocation sampled, one
# thread allocating and one starting short-lived threads (fresh unwinder caches) while main forks 100 children:
# each child allocates 200 blocks and must end within 10 s. (This catches the hang only some of the time.)
expect_exit 0 "fork while threads unwind: every child ends" timeout 120 "$HAKPROF" record -o fu.hkp --sample all -- \
    "$LIFE" forkunwind 100
grep -q '^forks 100 of 100 ended$' out && ok "fork while threads unwind: 100 of 100 children ended" ||
    fail "fork while threads unwind: $(grep -E 'hung|forks' out | head -3 | tr '\n' ' ')"
rm -f fu.hkp fu.hkp.*

# ---- RLIMIT_FSIZE -------------------------------------------------------------------------------------------------
expect_exit 0 "ulimit -f: neither process dies of SIGXFSZ" "$HAKPROF" record -o fs.hkp -- "$LIFE" fsize 100000
grep -q 'child status 0$' out && ok "ulimit -f: the fork child exits 0" || fail "ulimit -f: $(cat out)"
grep -q 'the file size limit (ulimit -f) is reached; recording stopped' err &&
    ok "ulimit -f: the recorder says why it stopped" || fail "ulimit -f: no message: $(head -c 300 err)"
readable "ulimit -f" fs.hkp cut
[ "$(stat -c %s fs.hkp)" -le 100000 ] && ok "ulimit -f: the recording stays under the limit" ||
    fail "ulimit -f: the recording is $(stat -c %s fs.hkp) bytes"

# ---- umask 0777 ---------------------------------------------------------------------------------------------------
expect_exit 0 "umask 0777: runs" "$HAKPROF" record -o um.hkp -- "$LIFE" umask
child=$(ls um.hkp.* 2>/dev/null | head -1)
if [ -n "$child" ] && [ "$(( 0$(stat -c %a "$child") & 0600 ))" = 384 ]; then
    ok "umask 0777: the child's recording is readable and writable by its owner ($(stat -c %a "$child"))"
else
    fail "umask 0777: child recording '$child' mode $(stat -c %a "$child" 2>/dev/null)"
fi
# The fork child's one thread has its start in the child's recording: number, kernel thread id and name.
readable "fork child" "$child" complete
got=$(sqlite3 r.db "SELECT COUNT(*), MIN(os_tid IS NOT NULL), MIN(name) FROM threads")
[ "$got" = "1|1|lifecycle" ] && ok "fork child: its thread is named in its recording ($got)" ||
    fail "fork child: threads table '$got', expected 1|1|lifecycle"

# ---- a wrapper that execs the program: the summary names the program's own recording ----------------------------
expect_exit 0 "exec chain: env X=1 lifecycle sigview" "$HAKPROF" record -o ex.hkp -- env X=1 "$LIFE" sigview
line=$(grep 'ended at exec' err)
image=$(sed -n 's/.* recorded \(ex\.hkp\.[0-9.]*\) (hakprof report .*/\1/p' <<<"$line")
if [ -n "$image" ] && [ -f "$image" ]; then
    ok "exec chain: the summary names the exec'd program's recording ($image)"
    readable "exec chain" "$image" complete
    [ "$(sqlite3 r.db 'SELECT cmdline FROM runs')" = "$LIFE sigview" ] && ok "exec chain: it is the program's" ||
        fail "exec chain: $image holds $(sqlite3 r.db 'SELECT cmdline FROM runs')"
else
    fail "exec chain: no line names the exec'd image's recording: $(head -c 400 err)"
fi

# ---- signals: the program sees its defaults, and a termination signal still ends it -----------------------------
expect_exit 0 "sigview: runs" "$HAKPROF" record -o sv.hkp -- "$LIFE" sigview
if [ "$(grep -c 'sigaction default, signal default' out)" = 3 ]; then
    ok "sigview: SIGINT, SIGTERM and SIGSEGV look like the default to the program, as without the recorder"
else
    fail "sigview: $(tr '\n' ' ' <out)"
fi
[ "$(grep -c 'flags 0$' out)" = 3 ] && ok "sigview: and with no flags (the recorder's SA_RESTART is not shown)" ||
    fail "sigview: flags read: $(grep flags out | tr '\n' ' ')"
# wait_line FILE TEXT: polls FILE until a line equals TEXT (20 s at most)
wait_line() {
    local end=$((SECONDS + 20))
    until grep -qx -- "$2" "$1" 2>/dev/null; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.05
    done
}
"$HAKPROF" record -o tp.hkp -- "$LIFE" pause >tp.out 2>tp.err &
rec=$!
if wait_line tp.out ready; then
    kill -TERM "$(pgrep -P "$rec" | head -1)"
fi
wait "$rec"
rc=$?
[ "$rc" = 143 ] && ! grep -q continued tp.out && ok "SIGTERM in pause(): the program ends by it (exit 143)" ||
    fail "SIGTERM in pause(): exit $rc, output: $(tr '\n' ' ' <tp.out)"
readable "SIGTERM" tp.hkp complete
[ "$(sqlite3 r.db 'SELECT end_signal FROM runs')" = 15 ] 2>/dev/null && ok "SIGTERM: the recording says signal 15" ||
    fail "SIGTERM: end_signal $(sqlite3 r.db 'SELECT end_signal FROM runs' 2>&1)"
# SIGTERM while four threads allocate, every allocation sampled: the signal often lands inside the recorder (a
# ring being written out), whose lock the writer then needs: the recording must still end properly.
bad=0
for i in 1 2 3 4; do
    rm -f tb.out
    "$HAKPROF" record -f -o tb.hkp -- "$LIFE" busy >tb.out 2>tb.err &
    rec=$!
    wait_line tb.out ready && kill -TERM "$(pgrep -P "$rec" | head -1)"
    wait "$rec"
    rc=$?
    "$HAKPROF" report -f --sqlite tb.db tb.hkp >tb.txt 2>&1
    { [ "$rc" = 143 ] && grep -q '^recording: complete' tb.txt && ! grep -q '^leaks: no leak report' tb.txt; } ||
        { bad=$((bad + 1)); echo "run $i: exit $rc; $(grep -E '^(recording|leaks):' tb.txt | tr '\n' ' ')" >&2; }
done
[ "$bad" = 0 ] && ok "SIGTERM amid four allocating threads: 4 runs exit 143 with complete recordings and leak reports" ||
    fail "SIGTERM amid four allocating threads: $bad of 4 runs ended badly"
if command -v python3 >/dev/null; then
    cat >ki.py <<'PY'
import signal, sys, time
print("handler", "default_int_handler" in repr(signal.getsignal(signal.SIGINT)), flush=True)
try:
    time.sleep(30)
except KeyboardInterrupt:
    print("caught KeyboardInterrupt", flush=True)
    sys.exit(0)
PY
    # The interpreter itself (not a wrapper script that execs it); SIGINT back to its default, since a shell
    # without job control starts background commands with it ignored (and Python then leaves it so).
    py=$(python3 -c 'import sys; print(sys.executable)')
    env --default-signal=INT "$HAKPROF" record -o ki.hkp -- "$py" ki.py >ki.out 2>ki.err &
    rec=$!
    if wait_line ki.out "handler True"; then
        kill -INT "$(pgrep -P "$rec" | head -1)"
    fi
    wait "$rec"
    rc=$?
    [ "$rc" = 0 ] && grep -qx 'caught KeyboardInterrupt' ki.out &&
        ok "python3: Ctrl-C is a KeyboardInterrupt under the recorder too" ||
        fail "python3: exit $rc, output: $(tr '\n' ' ' <ki.out) $(head -c 200 ki.err)"
fi

# A crash before the first snapshot: the crash path writes one, so the totals are the counters', not 0.
expect_exit 134 "abort at start: the program dies of SIGABRT (134)" "$HAKPROF" record -o ab.hkp -- "$LIFE" abort
readable "abort at start" ab.hkp complete
allocs=$(sqlite3 r.db "SELECT allocs FROM run_totals")
[ "${allocs:-0}" -ge 1000 ] && ok "abort at start: the totals hold the counters ($allocs allocations)" ||
    fail "abort at start: run_totals.allocs '$allocs', expected at least 1000"
"$HAKPROF" report r.db >ab.txt 2>&1
grep -q 'no leak report in the recording (it is written at exit; the run ended by signal)' ab.txt &&
    ok "abort at start: the report says why there is no leak report" ||
    fail "abort at start: $(grep '^leaks' ab.txt)"

# exit() from a signal handler while the program allocates: the handler often interrupts the recorder itself
# (every allocation sampled), whose locks it then must not wait for (it spun for ever in about one run in five).
hangs=0 unreadable=0
for i in 1 2 3 4 5 6 7 8; do
    timeout 30 "$HAKPROF" record -f -o se.hkp -- "$LIFE" sigexit >/dev/null 2>se.err
    rc=$?
    [ "$rc" = 124 ] && hangs=$((hangs + 1))
    "$HAKPROF" report -f --sqlite se.db se.hkp >/dev/null 2>&1 || unreadable=$((unreadable + 1))
done
[ "$hangs" = 0 ] && [ "$unreadable" = 0 ] && ok "exit() from a signal handler: 8 runs end, every recording reads" ||
    fail "exit() from a signal handler: $hangs of 8 runs hung, $unreadable recordings unreadable"
pkill -KILL -f "$LIFE sigexit" 2>/dev/null

# ---- a full file system -----------------------------------------------------------------------------------------
mkdir -p small
if mount -t tmpfs -o size=64k tmpfs small 2>/dev/null; then
    "$HAKPROF" record -o small/df.hkp -- "$LIFE" fsize 1000000000 >out 2>err
    grep -q 'no space left on the device; recording stopped' err && ok "disk full: the recorder says why" ||
        fail "disk full: no message: $(head -c 300 err)"
    readable "disk full" small/df.hkp cut
    [ "$(stat -c %s small/df.hkp)" -gt 20000 ] && ok "disk full: the whole chunks that fit are kept" ||
        fail "disk full: only $(stat -c %s small/df.hkp) bytes kept of 64 KiB"
    umount small
else
    ok "disk full: not checked (cannot mount a tmpfs here)"
fi

if [ "$failures" -gt 0 ]; then
    echo "prof_record_lifecycle: $failures failure(s)" >&2
    exit 1
fi
echo "prof_record_lifecycle: all passed"
