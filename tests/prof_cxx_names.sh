#!/usr/bin/env bash
# C++ names in hakprof's output are demangled: a recording of the C++ test program (tests/test_cxx.cc, whose
# allocations come through libstdc++'s operator new) names that frame "operator new(unsigned long)" in the report,
# the database and the folded stacks, never "_Znwm". Env: BUILD (build directory), PROF_LIB.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
PROG=$BUILD/tests/test_cxx
for f in "$HAKPROF" "$PROG" "$PROF_LIB"; do
    [ -e "$f" ] || { echo "$test_name: $f is missing (make first)" >&2; exit 1; }
done
command -v sqlite3 >/dev/null || { echo "$test_name: the sqlite3 shell is missing (make deps)" >&2; exit 1; }
cd "$tmp" || exit 1

expect_exit 0 "record the C++ program" "$HAKPROF" record --sample count:50 -o cxx.hkp -- "$PROG"
expect_exit 0 "report it into a database" "$HAKPROF" report --sqlite cxx.db cxx.hkp
grep -q 'operator new(unsigned long)' "$tmp/out" && ok "the report says operator new(unsigned long)" ||
    fail "the report has no 'operator new(unsigned long)': $(grep -m3 -i 'new' "$tmp/out")"
grep -q '_Znwm' "$tmp/out" && fail "the report still has the mangled _Znwm"
n=$(sqlite3 -bail cxx.db "SELECT COUNT(*) FROM site_ips WHERE function = 'operator new(unsigned long)'")
[ "${n:-0}" -gt 0 ] && ok "the database's call sites name it demangled ($n)" ||
    fail "no call site in the database is 'operator new(unsigned long)'"
n=$(sqlite3 -bail cxx.db "SELECT COUNT(*) FROM site_ips WHERE function LIKE '\_Z%' ESCAPE '\'")
[ "$n" = 0 ] && ok "no mangled name among the call sites" || fail "$n call sites still have a mangled name"
expect_exit 0 "folded stacks" "$HAKPROF" flame --folded cxx.hkp
grep -q 'operator new(unsigned long)' "$tmp/out" && ok "the folded stacks name it demangled" ||
    fail "the folded stacks have no 'operator new(unsigned long)'"
exit $((failures > 0))
