#!/usr/bin/env bash
# hakprof's inputs and outputs that are not plain files, and what -f may replace: a device node or a directory as
# the output is refused (with -f too) and left as it was; a FIFO as the input is refused at once, not waited on;
# -f never turns a recording into a database or a graph, nor a database into a recording; an ingest ended by
# SIGINT or SIGTERM leaves no temporary file; unknown options and missing inputs of ingest and report take one
# line; `--` lets an input start with '-'. Each case runs under timeout: a hang fails it.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
LARSON=$BUILD/larson
cd "$tmp" || exit 1
for f in "$HAKPROF" "$LARSON" "$PROF_LIB"; do
    [ -e "$f" ] || { echo "prof_hakprof_outputs: $f is missing (make first)" >&2; exit 1; }
done

# one WHAT CMD...: exit 2 within 20 s with exactly one line on stderr matching the pattern in $want.
one() {
    local what=$1 got=0
    shift
    timeout 20 "$@" >"$tmp/out" 2>"$tmp/err" || got=$?
    local n
    n=$(wc -l <"$tmp/err")
    if [ "$got" = 2 ] && [ "$n" = 1 ] && grep -q -- "$want" "$tmp/err"; then
        ok "$what: one line, exit 2"
    else
        fail "$what: exit $got (124: timed out), $n stderr lines, want one matching '$want': $(head -c 300 "$tmp/err")"
    fi
}

"$HAKPROF" record -f -o x.hkp "$LARSON" 1 8 128 1024 1 12345 2 >/dev/null 2>&1 || fail "record x.hkp"
"$HAKPROF" ingest x.hkp -o x.db >/dev/null 2>&1 || fail "ingest x.hkp"
cp x.hkp keep.hkp

# ---- outputs that are not regular files ----------------------------------------------------------------------
mkfifo fifo
mkdir adir
if mknod dev c 1 3 2>/dev/null; then # root: a copy of /dev/null's node, the file -f once replaced
    want='not a regular file'
    one "record -f -o DEVICE" "$HAKPROF" record -f -o dev "$LARSON" 1 8 128 1024 1 12345 1
    one "ingest -f -o DEVICE" "$HAKPROF" ingest -f x.hkp -o dev
    one "flame -f -o DEVICE" "$HAKPROF" flame -f -o dev x.hkp
    [ -c dev ] && ok "the device node is still a device node" || fail "the device node was replaced: $(ls -l dev)"
else
    echo "prof_hakprof_outputs: note: not root, device-node outputs not checked"
fi
want='not a regular file (a directory)'
one "ingest -f -o DIRECTORY" "$HAKPROF" ingest -f x.hkp -o adir
want='not a regular file'
one "record -f -o FIFO" "$HAKPROF" record -f -o fifo "$LARSON" 1 8 128 1024 1 12345 1
[ -p fifo ] && [ -d adir ] && ok "the FIFO and the directory are left as they were" || fail "FIFO or directory replaced"

# ---- a FIFO as the input: refused at once (opening it for reading would wait for a writer) ---------------------
want='fifo: not a regular file'
one "ingest FIFO" "$HAKPROF" ingest fifo
one "report FIFO" "$HAKPROF" report fifo
one "flame FIFO" "$HAKPROF" flame fifo
one "diff x.db FIFO" "$HAKPROF" diff x.db fifo

# ---- what -f may replace ---------------------------------------------------------------------------------------
want='is a hakmem recording, which -f does not replace'
one "flame -f -o its own recording" "$HAKPROF" flame -f -o x.hkp x.hkp
one "ingest -f -o another recording" "$HAKPROF" ingest -f x.hkp -o keep.hkp
one "report -f --sqlite another recording" "$HAKPROF" report -f x.hkp --sqlite keep.hkp
cmp -s x.hkp keep.hkp && [ "$(head -c 8 x.hkp)" = HAKTRACE ] && ok "both recordings are intact" ||
    fail "a recording was replaced"
want='is a hakprof database, which -f does not replace'
one "flame -f -o a database" "$HAKPROF" flame -f -o x.db x.hkp
one "record -f -o a database" "$HAKPROF" record -f -o x.db "$LARSON" 1 8 128 1024 1 12345 1
[ "$(head -c 15 x.db)" = "SQLite format 3" ] && ok "the database is intact" || fail "the database was replaced"
# The same kind is replaced, as asked.
"$HAKPROF" ingest -f x.hkp -o x.db >/dev/null 2>&1 && ok "ingest -f replaces a database" ||
    fail "ingest -f did not replace its own kind"

# ---- an output that cannot be created is said before the program runs --------------------------------------------
want='cannot create /proc/hakprof-test.hkp'
one "record -o under /proc" "$HAKPROF" record -f -o /proc/hakprof-test.hkp "$LARSON" 1 8 128 1024 1 12345 1

# A regular file where the output's directory should be.
touch plain
want='cannot write a recording in .*plain: Not a directory'
one "record -o FILE/x.hkp" "$HAKPROF" record -f -o plain/x.hkp "$LARSON" 1 8 128 1024 1 12345 1

# The verb that ingested on the way names the error, not "ingest".
head -c 100 x.hkp >cut.hkp
want='^hakprof report: cut.hkp: byte 16: truncated chunk'
one "report of a recording cut inside its header" "$HAKPROF" report cut.hkp

# ---- databases that are not hakprof's, or damaged -------------------------------------------------------------------
head -c 5000 x.db >cut.db
want='cut.db: .*a damaged database: ingest its recording again'
one "diff against a database cut short" "$HAKPROF" diff x.hkp cut.db
python3 -c 'import sqlite3; c = sqlite3.connect("foreign.db"); c.execute("CREATE TABLE t(a)"); c.commit()'
want='foreign.db: a SQLite database, but not one hakprof wrote'
one "diff against a foreign database" "$HAKPROF" diff x.hkp foreign.db

# ---- an interrupted ingest leaves no temporary file ----------------------------------------------------------------
# The signal is sent once the temporary database exists (polled), so it always lands mid-ingest of this recording,
# which takes about a second to ingest.
"$HAKPROF" record -f -o big.hkp --sample all "$LARSON" 1 8 1000 5000 100 4141 1 >/dev/null 2>&1 ||
    fail "record big.hkp"
for sig in INT TERM; do
    rm -f big.db big.db.tmp-*
    # Job control on for the launch: a non-interactive shell starts background jobs with SIGINT ignored.
    set -m
    "$HAKPROF" ingest -f big.hkp -o big.db >/dev/null 2>&1 &
    pid=$!
    set +m
    for _ in $(seq 2000); do
        compgen -G 'big.db.tmp-*' >/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.005
    done
    had_tmp=$(compgen -G 'big.db.tmp-*' | tr '\n' ' ')
    kill -s "$sig" "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    left=$(ls big.db* 2>/dev/null | tr '\n' ' ')
    if [ -n "$had_tmp" ] && [ "$rc" -gt 128 ] && [ -z "$left" ]; then
        ok "ingest ended by SIG$sig mid-way ($had_tmp): nothing left behind"
    else
        fail "ingest and SIG$sig: temporary file seen '${had_tmp}', exit $rc, left '${left}'"
    fi
done

# ---- one-line usage errors, and '--' -------------------------------------------------------------------------------
want='unknown option --bogus (try hakprof ingest --help)'
one "ingest --bogus" "$HAKPROF" ingest --bogus x.hkp
want='unknown option -x (try hakprof report --help)'
one "report -x" "$HAKPROF" report -x x.hkp
want='no recording given'
one "ingest with no recording" "$HAKPROF" ingest
want='needs two inputs'
one "diff with one input" "$HAKPROF" diff x.hkp
want='--version takes no argument'
one "--version with an argument" "$HAKPROF" --version x
want='-o needs a file name'
one "ingest -o ''" "$HAKPROF" ingest x.hkp -o ""
cp x.hkp ./-dash.hkp
expect_exit 0 "report -- -dash.hkp" "$HAKPROF" report -- -dash.hkp
expect_exit 0 "ingest -f -- -dash.hkp" "$HAKPROF" ingest -f -- -dash.hkp
expect_exit 0 "flame -f -o d.svg -- -dash.hkp" "$HAKPROF" flame -f -o d.svg -- -dash.hkp
expect_exit 0 "diff -- -dash.hkp x.hkp" "$HAKPROF" diff -- -dash.hkp x.hkp

if [ "$failures" -ne 0 ]; then
    echo "prof_hakprof_outputs: $failures failure(s)" >&2
    exit 1
fi
echo "prof_hakprof_outputs: all passed"
