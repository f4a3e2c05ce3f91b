# The preamble the hakprof tests share, sourced with `. "$(dirname "$0")/lib.sh"` (not a test: tests/run.sh runs
# prof_*.sh): BUILD and PROF_LIB as absolute paths, the source tree (root), the hakprof binary, a temporary
# directory (tmp) removed at exit unless the test sets its own trap, fail/ok counting failures under the test's name
# and expect_exit. Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so).
BUILD=${BUILD:-build}
PROF_LIB=${PROF_LIB:-$BUILD/libhakmem_prof.so}
root=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
PROF_LIB=$(cd "$(dirname "$PROF_LIB")" && pwd)/$(basename "$PROF_LIB")
HAKPROF=$BUILD/hakprof
tmp=$(mktemp -d)
# u+w first: a test may leave read-only directories behind (prof_report's unwritable one)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

test_name=$(basename "$0" .sh)
failures=0
fail() {
    echo "$test_name: FAIL: $*" >&2
    failures=$((failures + 1))
}
ok() { echo "$test_name: ok: $*"; }

# expect_exit WANT WHAT CMD...: runs CMD with stdout in $tmp/out and stderr in $tmp/err, checks the exit status;
# a failure is counted and the test goes on, unless the test set expect_exit_stops=1 (then it returns 1).
expect_exit() {
    local want=$1 what=$2 got=0
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err" || got=$?
    if [ "$got" != "$want" ]; then
        fail "$what: exit status $got, expected $want ($(head -c 300 "$tmp/err"))"
        sed 's/^/    /' "$tmp/out" | head -40 >&2
        return "${expect_exit_stops:-0}"
    fi
    ok "$what: exit $got"
}
