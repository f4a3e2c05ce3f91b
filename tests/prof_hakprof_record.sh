#!/usr/bin/env bash
# hakprof's command line and `hakprof record` as a user meets them: usage and unknown verbs, exit statuses passed
# through (codes and signals), output naming and refusal to overwrite, stdin passing through, the recording file.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so; hakprof preloads the one beside it).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
HP=$HAKPROF
if [ ! -x "$HP" ]; then
    echo "prof_hakprof_record: $HP not built" >&2
    exit 1
fi
if [ ! -f "$PROF_LIB" ]; then
    echo "prof_hakprof_record: $PROF_LIB not built" >&2
    exit 1
fi
cd "$tmp" || exit 1

# Every check runs and says ok or FAIL, so one missing piece does not hide the state of the others.
failures=0
# check NAME CONDITION: CONDITION is shell code evaluated here (so it sees rc, out, err).
check() {
    if eval "$2"; then
        echo "ok   $1"
    else
        echo "FAIL $1" >&2
        failures=$((failures + 1))
    fi
}
nlines() { wc -l <"$1" | tr -d ' '; }

# ---- the CLI ------------------------------------------------------------------------------------------------------
"$HP" --help >out 2>err
rc=$?
check "--help exits 0" '[ $rc -eq 0 ]'
check "--help lists the verbs" "grep -q '^  record ' out && grep -q '^  ingest ' out && grep -q '^  report ' out"
check "--help gives the exit statuses" "grep -q 'usage or input error' out && grep -q 'regression' out"
"$HP" -h >out2 2>&1
check "-h is --help" 'cmp -s out out2'

"$HP" frobnicate >out 2>err
rc=$?
check "unknown verb exits 2" '[ $rc -eq 2 ]'
check "unknown verb: one line on stderr, nothing on stdout" '[ "$(nlines err)" = 1 ] && [ ! -s out ]'
want="hakprof: unknown command 'frobnicate' (try hakprof --help)"
check "unknown verb: the message" 'grep -qxF "$want" err'

"$HP" >out 2>err
rc=$?
check "no verb exits 2" '[ $rc -eq 2 ]'
"$HP" --version >out 2>err
rc=$?
check "--version" "[ \$rc -eq 0 ] && grep -q '^hakprof [0-9]' out"
"$HP" help record >out 2>err
rc=$?
check "help record exits 0" '[ $rc -eq 0 ]'
"$HP" record --help >out2 2>&1
check "help record is record --help" 'cmp -s out out2'
check "record --help names the environment it sets" 'grep -q HAKMEM_RECORD_ROOT_PID out && grep -q LD_PRELOAD out'

# ---- record: exit statuses ----------------------------------------------------------------------------------------
"$HP" record -o three.hkp -- sh -c 'exit 3' >out 2>err
rc=$?
check "the program's exit status 3 comes through (got $rc)" '[ $rc -eq 3 ]'

# In a subshell that must wait (the trailing exit stops bash from exec'ing hakprof), so the shell's own
# "Segmentation fault" notice lands in err rather than in the test's output.
(
    "$HP" record -o segv.hkp -- sh -c 'kill -SEGV $$' >out
    exit $?
) 2>err
rc=$?
check "hakprof dies of the program's SIGSEGV: the shell sees 139 (got $rc)" '[ $rc -eq 139 ]'
check "it says the program was killed" "grep -q 'killed by signal 11' err"

"$HP" record -o nf.hkp -- hakprof-no-such-command-xyz >out 2>err
rc=$?
check "command not found exits 127 (got $rc)" '[ $rc -eq 127 ]'
want="hakprof record: cannot run 'hakprof-no-such-command-xyz': No such file or directory"
check "command not found: one line, the message" '[ "$(nlines err)" = 1 ] && grep -qxF "$want" err'

"$HP" record >out 2>err
rc=$?
check "no command: exit 2, one line" '[ $rc -eq 2 ] && [ "$(nlines err)" = 1 ]'
"$HP" record --sample bytes:12q -- true >out 2>err
rc=$?
check "bad --sample: exit 2, one line" "[ \$rc -eq 2 ] && [ \"\$(nlines err)\" = 1 ] && grep -q 'bad --sample' err"
"$HP" record --no-such-option -- true >out 2>err
rc=$?
check "unknown option: exit 2, one line" '[ $rc -eq 2 ] && [ "$(nlines err)" = 1 ]'

# ---- record: files ------------------------------------------------------------------------------------------------
printf 'precious\n' >keep.hkp
"$HP" record -o keep.hkp -- true >out 2>err
rc=$?
check "an existing output file is refused with exit 2 (got $rc)" '[ $rc -eq 2 ]'
want='hakprof record: keep.hkp exists (use -f to replace it, or -o to choose another name)'
check "refusal: the message" 'grep -qxF "$want" err'
check "refusal: the file is untouched" '[ "$(cat keep.hkp)" = precious ]'
"$HP" record -f -o keep.hkp -- true >out 2>err
rc=$?
check "-f replaces it (exit $rc)" '[ $rc -eq 0 ] && ! grep -qx precious keep.hkp 2>/dev/null'

out=$(echo hi | "$HP" record -o x.hkp -- cat 2>err)
rc=$?
check "stdin and stdout pass through to the program" '[ "$out" = hi ] && [ $rc -eq 0 ]'

# These need the recording writer in libhakmem_prof.so.
check "a recording was written" '[ -s x.hkp ] && [ "$(head -c 8 x.hkp)" = HAKTRACE ]'
check "the summary line names it" "grep -q '^hakprof record: wrote x\\.hkp (' err"
check "-f left a recording in place of the old file" '[ "$(head -c 8 keep.hkp 2>/dev/null)" = HAKTRACE ]'

# The default name is the command's basename; the processes the program starts write FILE.<pid>.
"$HP" record -- sh -c '/bin/true; exit 0' >out 2>err
check "the default output name is CMD.hkp" '[ -s sh.hkp ]'
check "a child process writes FILE.<pid>, and the summary lists it" \
    'ls sh.hkp.[0-9]* >/dev/null 2>&1 && grep -q "child recording" err'

# With %p, a process that execs writes PATH.N for its new image: listed among the child recordings too.
"$HP" record -o 'pp-%p.hkp' -- bash -c 'ls >/dev/null; true' >out 2>err
check "an exec'd image's recording (pp-PID.hkp.N) is listed" \
    'n=$(ls pp-*.hkp.[0-9]* 2>/dev/null | head -1); [ -n "$n" ] && grep -q "child recordings\?:.*$n" err'

# --stop-after stops the program with SIGTERM and counts as success.
start=$SECONDS
"$HP" record -o dur.hkp --stop-after 0.5 -- sleep 30 >out 2>err
rc=$?
check "--stop-after stops the program and exits 0 (got $rc)" '[ $rc -eq 0 ] && [ $((SECONDS - start)) -lt 10 ]'

# --delay and --duration: a recording window inside a program that allocates all along (trc_crash loop, two
# threads): WINDOW records open then close, and every sampled allocation lies between them; the program itself
# runs on until --stop-after. Times are TSC ticks taken on different CPUs, which a virtual machine may not keep in
# step to the microsecond: the edges get a millisecond (2e6 ticks) of slack, the window itself lasts 300 ms.
"$HP" record -o win.hkp --sample all --delay 0.3 --duration 0.3 --stop-after 1.5 -- \
    "$BUILD/tests/tools/trc_crash" loop >out 2>err
rc=$?
"$BUILD/tests/tools/hkt_dump" win.hkp >dump 2>&1 || true
check "a window run exits 0 (got $rc)" '[ $rc -eq 0 ]'
# Started closed (--delay), opened, closed.
check "the window starts closed, opens, then closes" \
    '[ "$(awk "/^window/ { for (i = 1; i <= NF; i++) if (\$i ~ /^open=/) printf \"%s \", \$i }" dump)" = "open=0 open=1 open=0 " ]'
check "the program stopped by SIGTERM still leaves a complete recording (END, reason signal 15)" \
    'grep -q "^end .*reason=signal signo=15" dump'
check "allocations were recorded inside the window, none outside" '
    awk "/^window/ { for (i = 1; i <= NF; i++) if (\$i ~ /^tsc=/) { sub(/tsc=/, \"\", \$i); w[++n] = \$i } }
         /^alloc / { for (i = 1; i <= NF; i++) if (\$i ~ /^tsc=/) { sub(/tsc=/, \"\", \$i); t[++m] = \$i } }
         END { if (n != 3 || m == 0) exit 1; for (k = 1; k <= m; k++) if (t[k] + 0 < w[2] - 2e6 || t[k] + 0 > w[3] + 2e6) exit 1 }" dump'

if [ $failures -ne 0 ]; then
    echo "prof_hakprof_record: $failures check(s) failed" >&2
    exit 1
fi
echo "prof_hakprof_record: ok"
