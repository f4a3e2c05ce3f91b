#!/usr/bin/env bash
# hakprof top driven under tmux (send-keys, capture-pane): a live workload started by top and attached with -p
# (recording or not), and replays of recordings. The screen must show the right process, numbers equal to the
# counters and the known truth, sort when asked, show a stack with file:line, quit cleanly and leave the terminal
# restored (also on SIGTERM); missing, dead and foreign pids, a terminal too small and no terminal get clear errors.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so; top -- CMD uses the one beside hakprof).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
HKC_DUMP=$BUILD/tests/tools/hkc_dump
CALLSITES=$BUILD/tests/tools/callsites
LARSON=$BUILD/larson

for f in "$HAKPROF" "$HKC_DUMP" "$CALLSITES" "$LARSON" "$PROF_LIB"; do
    [ -e "$f" ] || { echo "prof_hakprof_top: $f is missing (make first)" >&2; exit 1; }
done
for c in tmux sqlite3 cc; do
    command -v "$c" >/dev/null || { echo "prof_hakprof_top: $c is missing (make deps)" >&2; exit 1; }
done

stats=$tmp/stats
mkdir -p "$stats" "$tmp/tmpdir"
export HAKMEM_STATS_DIR=$stats
unset TMUX # the test's own tmux server, also when the tests run inside tmux
bg_pids=()
tm() { tmux -S "$tmp/tmux.sock" -f /dev/null "$@"; }
cleanup() {
    tm kill-server 2>/dev/null
    local p
    for p in "${bg_pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT


# ---- tmux helpers -------------------------------------------------------------------------------------------------
# pane NAME COLS LINES: a new session running a plain shell with the test's environment.
pane() {
    tm new-session -d -s "$1" -x "$2" -y "$3" \
        "env HAKMEM_STATS_DIR=$stats TMPDIR=$tmp/tmpdir HAKMEM_SAMPLE=all PS1='$ ' bash --norc --noprofile"
}
screen() { tm capture-pane -p -t "$1"; }
# run NAME CMD: types CMD into the pane's shell; TOP_DONE=<status> follows when it ends.
run() { tm send-keys -t "$1" "$2; echo TOP_DONE=\$?" Enter; }
keys() {
    local s=$1
    shift
    tm send-keys -t "$s" "$@"
}
# wait_for NAME REGEX [SECONDS]: polls the screen until a line matches (0) or the time is up (1, screen saved).
wait_for() {
    local end=$((SECONDS + ${3:-20}))
    while :; do
        screen "$1" >"$tmp/screen.$1"
        grep -Eq -- "$2" "$tmp/screen.$1" && return 0
        [ $SECONDS -ge $end ] && return 1
        sleep 0.1
    done
}
# expect NAME REGEX WHAT: wait_for, failing with the last screen.
expect() {
    if wait_for "$1" "$2" "${4:-20}"; then
        ok "$3"
        return 0
    fi
    fail "$3: no line matches /$2/; the screen was:"
    sed 's/^/    | /' "$tmp/screen.$1" >&2
    return 1
}
# the pid of the program running in the pane's shell (hakprof top)
pane_child() { pgrep -P "$(tm display -p -t "$1" '#{pane_pid}')" | head -1; }
# quit NAME WHAT: q, then the shell's TOP_DONE=0 and the terminal out of the alternate screen.
quit_top() {
    keys "$1" q
    expect "$1" '^TOP_DONE=0' "$2: q quits with status 0"
    [ "$(tm display -p -t "$1" '#{alternate_on}')" = 0 ] && ok "$2: terminal restored (alternate screen off)" ||
        fail "$2: the pane is still in the alternate screen after top exited"
}
# The allocations the counters hold now: every refill stage of every class plus large allocations.
counted_allocs() {
    "$HKC_DUMP" "$1" | awk '/^refill_(tls_sll_hit|slab_free|remote_drain|partial|adopt|new_slab|ss_cache|ss_os)\[/ ||
        /^alloc_large / {s += $2} END {print s + 0}'
}
counter_sum() { # PID REGEX: the sum of the counter lines matching
    "$HKC_DUMP" "$1" | awk -v re="$2" '$1 ~ re {s += $2} END {print s + 0}'
}
# screen_allocs NAME: the header's "allocs N"
screen_allocs() { screen "$1" | sed -n '3s/^ allocs \([0-9]*\) .*/\1/p'; }
# expect_allocs NAME PID WHAT: the header's total equals the counters. The workload is still starting when the
# screen first shows it, so both are read again until they agree (they settle once it waits on its fifo).
expect_allocs() {
    local end=$((SECONDS + 20)) want got
    while :; do
        want=$(counted_allocs "$2")
        got=$(screen_allocs "$1")
        [ -n "$got" ] && [ "$got" = "$want" ] && break
        [ $SECONDS -ge $end ] && break
        sleep 0.1
    done
    if [ "$got" = "$want" ]; then
        ok "$3: header allocs $got = the counters"
    else
        fail "$3: header allocs '$got', the counters say $want"
    fi
    want_allocs=$want
}
# wait_segment PID: until the program's stats segment exists (its library is up).
wait_segment() {
    local end=$((SECONDS + 20))
    until [ -e "$stats/hakmem-$1.stats" ]; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.05
    done
}

# ---- the workload: known call sites, then it waits on a fifo ------------------------------------------------------
cat >"$tmp/top_workload.c" <<'EOF'
/* hakprof top's test workload: three call sites with known counts, then it waits for a line on the fifo argv[1]. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#define SITE __attribute__((noinline, noclone))
enum { MANY = 3000, MID = 700, BIG = 50 };
static void *many[MANY], *mid[MID], *big[BIG];
SITE void site_many(void)
{
    for (int i = 0; i < MANY; i++)
        many[i] = malloc(24); /* SITE_MANY */
}
SITE void site_mid(void)
{
    for (int i = 0; i < MID; i++)
        mid[i] = malloc(300); /* SITE_MID */
}
SITE void site_big(void)
{
    for (int i = 0; i < BIG; i++)
        big[i] = malloc(6000); /* SITE_BIG */
}
static void *free_mid(void *arg) /* every mid block freed by another thread */
{
    (void)arg;
    for (int i = 0; i < MID; i++)
        free(mid[i]);
    return NULL;
}
int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    site_many(); /* MAIN_CALL */
    site_mid();
    site_big();
    for (int i = 0; i < MANY / 2; i++) /* half of many freed by main */
        free(many[i]);
    pthread_t t;
    if (pthread_create(&t, NULL, free_mid, NULL) || pthread_join(t, NULL))
        return 1;
    FILE *f = fopen(argv[1], "r");
    char line[64];
    if (!f || !fgets(line, sizeof line, f))
        return 1;
    fclose(f);
    return big[0] && many[MANY - 1] ? 0 : 1;
}
EOF
cc -g -O1 -pthread "$tmp/top_workload.c" -o "$tmp/top_workload" || { echo "prof_hakprof_top: cannot build the workload" >&2; exit 1; }
WL=$tmp/top_workload
line_of() { grep -n "/\* $1 \*/" "$2" | head -1 | cut -d: -f1; } # the line marked /* NAME */
L_MANY=$(line_of SITE_MANY "$tmp/top_workload.c")
L_MAIN=$(line_of MAIN_CALL "$tmp/top_workload.c")
# start_workload NAME [ENV...]: runs the workload in the background, waiting on $tmp/fifo.NAME; its pid in $wl_pid.
start_workload() {
    local name=$1
    shift
    mkfifo "$tmp/fifo.$name"
    env LD_PRELOAD="$PROF_LIB" HAKMEM_STATS_DIR="$stats" "$@" "$WL" "$tmp/fifo.$name" >/dev/null 2>&1 &
    wl_pid=$!
    bg_pids+=("$wl_pid")
    wait_segment "$wl_pid" || fail "workload $name: no stats segment"
}
release() { echo go >"$tmp/fifo.$1"; } # the workload reads its line and exits

# ==== 1. top -- CMD: a program top starts, records and watches ========================================================
# 140 columns: the whole command line fits in the title, and the table has its FREES column
mkfifo "$tmp/fifo.live"
pane live 140 30
run live "$HAKPROF top -d 0.2 --log $tmp/live.log -- $WL $tmp/fifo.live"
if expect live ' site_many  top_workload\.c:' "live: call sites appear"; then
    pid=$(screen live | sed -n '1s/.* pid \([0-9]*\) .*/\1/p')
    if [ -n "$pid" ] && [ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" = "$WL $tmp/fifo.live " ]; then
        ok "live: header shows the program's pid $pid"
    else
        fail "live: header pid '$pid' is not the workload ($(head -1 "$tmp/screen.live"))"
    fi
    screen live | head -1 | grep -q "$WL $tmp/fifo.live" && ok "live: header shows the command line" ||
        fail "live: command line missing from the header"
    expect_allocs live "$pid" "live"
    want=$want_allocs
    # every allocation sampled: the call sites are exact (ALLOCS ALLOC/S BYTES LIVE FREES SAME% CROSS% SITE)
    expect live "^ +3000 +[0-9.kM]+ +[0-9.]+K +1500 +1500 +100\.0 +0\.0  site_many  top_workload\.c:$L_MANY " \
        "live: site_many 3000 allocs, 1500 live, 1500 frees all same-thread"
    expect live '^ +700 .* 0 +700 +0\.0 +100\.0  site_mid  top_workload\.c:' "live: site_mid 700 allocs, all freed cross-thread"
    expect live '^ +50 .* 50 +0 +- +-  site_big  top_workload\.c:' "live: site_big 50 allocs, all live"
    # sorting: allocations first, then bytes (big 300000 > mid 210000 > many 72000)
    screen live | grep -E '  site_(many|mid|big) ' | sed 's/.*  \(site_[a-z]*\) .*/\1/' | tr '\n' ' ' >"$tmp/order"
    [ "$(cat "$tmp/order")" = "site_many site_mid site_big " ] && ok "live: sorted by allocs" ||
        fail "live: order by allocs is $(cat "$tmp/order")"
    keys live b
    expect live ' sort BYTES ' "live: b sorts by bytes"
    screen live | grep -E '  site_(many|mid|big) ' | sed 's/.*  \(site_[a-z]*\) .*/\1/' | tr '\n' ' ' >"$tmp/order"
    [ "$(cat "$tmp/order")" = "site_big site_mid site_many " ] && ok "live: order changes by bytes" ||
        fail "live: order by bytes is $(cat "$tmp/order")"
    keys live r
    expect live ' sort BYTES \(reversed\) ' "live: r reverses"
    keys live '<'
    expect live ' sort ALLOC/S ' "live: < moves the sort to the column on the left"
    keys live a g
    # Enter: the selected site (site_many, the first row by allocs) and its whole stack with file:line
    keys live Enter
    expect live "^ #0 +site_many +/.*top_workload\.c:$L_MANY\$" "live: Enter shows frame 0, site_many with file:line"
    expect live "^ #1 +main +/.*top_workload\.c:$L_MAIN\$" "live: the stack goes on to main with file:line"
    keys live Escape
    expect live '^ +ALLOCS ' "live: Esc goes back to the table"
    # the free pipeline panel: its counts are the counters
    keys live 2
    remote=$(counter_sum "$pid" '^free_ss_remote\\[')
    expect live "^ ss_remote +\[\|+ *\] +[0-9.]+% +$remote " "live: free pipeline shows ss_remote = $remote, with a bar"
    expect live "cross-thread [0-9.]+%" "live: free pipeline shows same- and cross-thread shares"
    keys live 1
    tls=$(counter_sum "$pid" '^refill_tls_sll_hit\\[')
    expect live "^ +all +$want +[0-9.kM]+ +$tls " "live: refill panel: all = $want allocs, tls_sll = $tls"
    keys live 3
    expect live "^ +1 +$pid +top_workload +live " "live: thread panel shows thread 1 = the workload's main thread"
    # the program ends: the screen says how, and keeps the last numbers
    release live
    expect live 'ENDED: exited with status 0' "live: the end of the program is shown"
    quit_top live "live"
    expect live "hakprof top: .*top_workload \(pid $pid\) exited with status 0" "live: summary line after exit"
    [ -z "$(ls -A "$tmp/tmpdir")" ] && ok "live: the temporary recording is removed" ||
        fail "live: left in TMPDIR: $(ls "$tmp/tmpdir")"
fi

# ==== 1b. Ctrl-C while watching a started program: the terminal is restored and the program stopped ===============
mkfifo "$tmp/fifo.intr"
pane intr 140 30
run intr "$HAKPROF top -d 0.2 -- $WL $tmp/fifo.intr"
if expect intr ' site_many  top_workload\.c:' "ctrl-c: top is up"; then
    pid=$(screen intr | sed -n '1s/.* pid \([0-9]*\) .*/\1/p')
    keys intr C-c
    # bash drops the rest of a command line whose program died of SIGINT: ask for the status at the prompt
    expect intr '^\$ ?$' "ctrl-c: back at the shell prompt"
    keys intr 'echo STATUS=$?' Enter
    expect intr '^STATUS=130' "ctrl-c: top dies by SIGINT (status 130)"
    [ "$(tm display -p -t intr '#{alternate_on}')" = 0 ] && ok "ctrl-c: terminal restored" ||
        fail "ctrl-c: still in the alternate screen"
    expect intr "hakprof top: stopped .*top_workload \(pid $pid\) with SIGTERM" "ctrl-c: the program is stopped"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        fail "ctrl-c: the program $pid still runs"
    else
        ok "ctrl-c: the program is gone"
    fi
    [ ! -e "$stats/hakmem-$pid.stats" ] && ok "ctrl-c: no stale stats segment left" ||
        fail "ctrl-c: the stopped program's stats segment is left behind"
fi
run intr "$HAKPROF top -- $tmp/no-such-program"
expect intr "^hakprof top: cannot run '$tmp/no-such-program': No such file or directory" "missing program: clear message"
expect intr '^TOP_DONE=127' "missing program: exit status 127"

# ==== 2. top -p PID: a program that records (its HAKMEM_RECORD found in /proc/PID/environ) ==========================
start_workload att HAKMEM_SAMPLE=all HAKMEM_RECORD="$tmp/att.hkp"
att=$wl_pid
pane att 140 30
run att "$HAKPROF top -d 0.2 -p $att"
expect att "^ hakprof top  pid $att  $WL $tmp/fifo\.att " "attach: header shows pid $att and its command"
expect att "^ +3000 .*  site_many  top_workload\.c:$L_MANY" "attach: call sites from its recording"
expect_allocs att "$att" "attach"
quit_top att "attach"
kill -0 "$att" 2>/dev/null && ok "attach: q leaves the program running" || fail "attach: the program died"
release att
wait "$att"

# ==== 3. top -p PID of a program that does not record; SIGTERM restores the terminal ================================
start_workload plain
plain=$wl_pid
pane plain 140 30
run plain "$HAKPROF top -d 0.2 -p $plain"
expect plain "^ hakprof top  pid $plain  $WL $tmp/fifo\.plain " "plain: header shows pid and command"
expect plain "not recording: call sites need a recording" "plain: says call sites need a recording"
expect_allocs plain "$plain" "plain"
plain_allocs=$want_allocs
keys plain 3
expect plain "^ +SLOT +ALLOCS" "plain: thread panel shows the counter slots"
# '+' eight times (51.2 s between refreshes), then '-' eight times: back at 0.2 s at once, not after the 51 s
# already scheduled.
keys plain + + + + + + + +
expect plain "LIVE every 51\.2s" "plain: + doubles the refresh interval"
keys plain - - - - - - - -
expect plain "LIVE every 0\.2s" "plain: - halves it"
up_now() { screen plain | sed -n 's/^ up \([^ ]*\)  .*/\1/p'; }
up0=$(up_now)
moved=0
for _ in $(seq 100); do # polls for up to 10 s
    [ "$(up_now)" != "$up0" ] && { moved=1; break; }
    sleep 0.1
done
[ "$moved" = 1 ] && ok "plain: after -, the screen refreshes again at once (uptime $up0 moved on)" ||
    fail "plain: the uptime stayed at '$up0' for 10 s after the interval went back to 0.2 s"
top_pid=$(pane_child plain)
[ -n "$top_pid" ] && kill -TERM "$top_pid"
expect plain '^TOP_DONE=143' "plain: SIGTERM ends top (dies by the signal)"
[ "$(tm display -p -t plain '#{alternate_on}')" = 0 ] && ok "plain: terminal restored after SIGTERM" ||
    fail "plain: still in the alternate screen after SIGTERM"
kill -0 "$plain" 2>/dev/null && ok "plain: the attached program survives" || fail "plain: the program died"

# ==== 4. terminal too small, not a terminal, bad pids ==================================================================
pane small 60 15
run small "$HAKPROF top -p $plain"
expect small 'the terminal is 60x15: top needs at least 80x24' "small: too small at start: a clear message"
expect small '^TOP_DONE=2' "small: exit status 2"
pane grow 100 30
run grow "$HAKPROF top -d 0.2 -p $plain"
expect grow "^ hakprof top  pid $plain " "resize: top is up"
tm resize-window -t grow -x 60 -y 16
expect grow 'terminal too small \(60x16\)' "resize: made too small, the screen asks to enlarge it"
tm resize-window -t grow -x 90 -y 26
expect grow "^ hakprof top  pid $plain " "resize: enlarged again, the screen comes back"
expect grow "^ allocs $plain_allocs " "resize: numbers back after the resize"
quit_top grow "resize"

expect_error() { # WHAT REGEX CMD...: exit status 2 and a one-line message matching REGEX
    local what=$1 re=$2 rc=0
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err" </dev/null || rc=$?
    if [ "$rc" = 2 ] && [ "$(wc -l <"$tmp/err")" = 1 ] && grep -Eq -- "$re" "$tmp/err"; then
        ok "$what: $(cat "$tmp/err")"
    else
        fail "$what: exit $rc, stderr: $(head -c 300 "$tmp/err")"
    fi
}
expect_error "missing pid" '^hakprof top: -p needs a value' "$HAKPROF" top -p
expect_error "bad pid" "^hakprof top: bad -p 'x1'" "$HAKPROF" top -p x1
true &
dead=$!
wait "$dead"
expect_error "dead pid" "^hakprof top: no process $dead\$" "$HAKPROF" top -p "$dead"
mkfifo "$tmp/fifo.foreign"
cat "$tmp/fifo.foreign" >/dev/null &
foreign=$!
bg_pids+=("$foreign")
expect_error "no prof library" "^hakprof top: process $foreign publishes no hakmem counters" "$HAKPROF" top -p "$foreign"
echo bye >"$tmp/fifo.foreign"
wait "$foreign"
expect_error "not a terminal" '^hakprof top: stdin is not a terminal' "$HAKPROF" top -p "$plain"
expect_error "nothing to watch" '^hakprof top: nothing to watch' "$HAKPROF" top
expect_error "missing recording" "^hakprof top: $tmp/none.hkp: No such file" "$HAKPROF" top "$tmp/none.hkp"
release plain
wait "$plain"

# ==== 5. replay of a recording with known call sites ==================================================================
(cd "$tmp" && "$HAKPROF" record --sample all -o cs.hkp -- "$CALLSITES" >/dev/null 2>"$tmp/record.err") ||
    fail "record callsites: $(cat "$tmp/record.err")"
pane cs 140 30
run cs "$HAKPROF top $tmp/cs.hkp"
expect cs 'REPLAY 1/1 ' "replay: the recording is ingested and shown"
db=$tmp/cs.db
cs_pid=$(sqlite3 "$db" 'SELECT pid FROM runs')
cs_allocs=$(sqlite3 "$db" 'SELECT allocs FROM run_totals')
expect cs "^ hakprof top  pid $cs_pid  $CALLSITES .*REPLAY" "replay: header shows the recorded pid and command"
expect cs "^ allocs $cs_allocs " "replay: header allocs = the database's total ($cs_allocs)"
L_A=$(line_of SITE_A "$root/tests/tools/callsites.c")
expect cs "^ +1000 .*  alloc_a  callsites\.c:$L_A" "replay: alloc_a 1000 allocations"
expect cs '^ +500 .* 0 +500 +0\.0 +100\.0  alloc_b  callsites\.c:' "replay: alloc_b 500, freed cross-thread"
expect cs '^ +100 .* 100 +0 +- +-  alloc_c  callsites\.c:' "replay: alloc_c 100, live"
keys cs g Enter
expect cs "^ #0 +alloc_a +tests/tools/callsites\.c:$L_A\$" "replay: Enter shows alloc_a's stack with file:line"
keys cs Escape l
expect cs ' sort LIVE ' "replay: l sorts by live blocks"
first=$(screen cs | grep -m1 -E '  alloc_[abc]  ' | sed 's/.*  \(alloc_[abc]\)  .*/\1/')
[ "$first" = alloc_c ] && ok "replay: alloc_c first by live blocks" || fail "replay: first by live is '$first'"
quit_top cs "replay"

# ==== 6. replay along a timeline: Larson's snapshots =====================================================================
(cd "$tmp" && "$HAKPROF" record -o larson.hkp -- "$LARSON" 1 8 128 1024 1 12345 1 >/dev/null 2>"$tmp/record.err") ||
    fail "record larson: $(cat "$tmp/record.err")"
"$HAKPROF" ingest "$tmp/larson.hkp" -o "$tmp/larson.db" 2>/dev/null || fail "ingest larson"
ldb=$tmp/larson.db
nsnap=$(sqlite3 "$ldb" 'SELECT COUNT(*) FROM snapshots')
snap_allocs() { # the allocations counted at snapshot N
    sqlite3 "$ldb" "SELECT COALESCE(SUM(value), 0) FROM counter_timeline WHERE snap_id = $1 AND
        name IN (SELECT counter FROM stages)"
}
pane tl 80 24 # the smallest screen top supports
run tl "$HAKPROF top -d 0.3 $tmp/larson.db"
expect tl "REPLAY $nsnap/$nsnap " "timeline: opens at the end ($nsnap snapshots)"
expect tl "^ allocs $(sqlite3 "$ldb" 'SELECT allocs FROM run_totals') " "timeline: the end shows the run's total"
keys tl Home
expect tl "REPLAY 1/$nsnap " "timeline: Home goes to the first snapshot"
expect tl "^ allocs $(snap_allocs 1) " "timeline: allocs at snapshot 1 = its counters"
keys tl Right Right
expect tl "REPLAY 3/$nsnap " "timeline: Right steps on"
expect tl "^ allocs $(snap_allocs 3) " "timeline: allocs at snapshot 3 = its counters"
keys tl Left
expect tl "REPLAY 2/$nsnap " "timeline: Left steps back"
keys tl Space
expect tl "REPLAY [0-9]+/$nsnap .*PLAYING" "timeline: Space plays"
expect tl "REPLAY $nsnap/$nsnap .*PAUSED" "timeline: play stops at the end"
keys tl End
keys tl f # at 80 columns the FREES column is dropped, unless the table is sorted by it
expect tl ' sort FREES ' "narrow: f sorts by frees"
expect tl '^ +ALLOCS .* FREES .* CALL SITE' "narrow: the sorted-by FREES column is shown"
keys tl '?'
expect tl "each live thread's counter slot" "narrow: the whole help fits 80x24"
keys tl a
quit_top tl "timeline"

# ==== 7. a terminal that cannot position the cursor; a program that execs another ====================================
pane dumb 100 30
run dumb "TERM=dumb $HAKPROF top $tmp/cs.hkp"
expect dumb 'cannot use the terminal: TERM=dumb cannot position the cursor' "TERM=dumb: a clear error"
expect dumb '^TOP_DONE=2' "TERM=dumb: exit status 2"
# top -- sh -c '...; exec larson': the shell publishes counters and records first; once it execs, the screen must
# follow the program now running under that pid (its new stats segment and its own recording).
mkfifo "$tmp/fifo.exec"
pane ex 140 30
run ex "$HAKPROF top -d 0.3 -- sh -c 'read go <$tmp/fifo.exec; exec $LARSON 3 8 128 1024 1 12345 1'"
expect ex "^ hakprof top  pid [0-9]+  sh -c read go" "exec: top shows the shell first"
echo go >"$tmp/fifo.exec"
expect ex "^ hakprof top  pid [0-9]+  $LARSON 3 8 128 " "exec: the header follows to the exec'd program"
expect ex "^ +[0-9]+ .*alloc_block  larson\.c:[0-9]+" "exec: call sites come from the exec'd program's recording"
expect ex '^ allocs [0-9]{6,} ' "exec: the counters are the exec'd program's (not the shell's few)"
quit_top ex "exec"
# Counters off (HAKMEM_STATS=0): the recording alone is enough to start on (top waited out its 10 s for a segment).
pane nostats 140 30
run nostats "HAKMEM_STATS=0 $HAKPROF top -d 0.3 -- $LARSON 3 8 128 1024 1 12345 1"
expect nostats "^ hakprof top  pid [0-9]+  $LARSON 3 8 128 " "HAKMEM_STATS=0: the screen comes up from the recording alone" 6
expect nostats "^ +[0-9]+ .*alloc_block  larson\.c:[0-9]+" "HAKMEM_STATS=0: call sites from the recording"
quit_top nostats "HAKMEM_STATS=0"

if [ "$failures" -gt 0 ]; then
    echo "prof_hakprof_top: $failures failure(s)" >&2
    exit 1
fi
echo "prof_hakprof_top: all passed"
