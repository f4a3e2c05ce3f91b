#!/usr/bin/env bash
# Edge cases of the debug checks found in review: realloc's own frees under poison (no false report), realloc of a
# freed block (reported and refused), a guard overflow that wipes the stored size (reported, no crash), an
# overflow after many allocations, in main and in a new thread (every allocation stays guarded), a thread whose
# first allocation is malloc(0), allocations after a calloc whose size overflows, a block a library's
# constructor allocates before hakmem's own constructor.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so).
set -uo pipefail
BUILD=${BUILD:-build}
PROF_LIB=${PROF_LIB:-$BUILD/libhakmem_prof.so}
T=$BUILD/tests/tools/chk_edges
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # $1 = case, rest = settings; prints stdout+stderr
    local c=$1
    shift
    env "$@" HAKMEM_STATS=0 LD_PRELOAD="$PROF_LIB" "$T" "$c" 2>&1
}
expect() { # $1 = what, $2 = output, $3 = grep -E pattern that must match, $4 = pattern that must not (or "")
    if ! grep -Eq "$3" <<<"$2" || { [ -n "$4" ] && grep -Eq "$4" <<<"$2"; }; then
        echo "prof_checks_edges: FAIL $1:" >&2
        sed 's/^/    /' <<<"$2" >&2
        fail=1
    else
        echo "ok   $1"
    fi
}
expect "poison: a block realloc moved away from is not reported" "$(run realloc-move HAKMEM_POISON=1)" '^ok 1$' '^hakmem:'
expect "poison: realloc(p, 0) frees like free" "$(run realloc-zero HAKMEM_POISON=1)" '^ok 1$' '^hakmem:'
expect "realloc of a freed block is a double free, refused" "$(run realloc-freed)" \
    '^hakmem: double free of .*realloc returned NULL|realloc returned NULL' 'returned a block'
out=$(run realloc-freed)
expect "... and reported once" "$out" '^hakmem: double free of' ''
out=$(run overflow-ff HAKMEM_GUARD=1)
expect "guards: an overflow that wipes the size word is reported, not a crash" "$out" '^survived$' ''
expect "... as an overflow" "$out" '^hakmem: overflow of' ''
out=$(run overflow-late HAKMEM_GUARD=1)
expect "guards: an overflow after 200,000 allocations is reported, in main and in a new thread" \
    "$(grep -c '^hakmem: overflow of' <<<"$out")" '^2$' ''
expect "guards: a thread's first allocation, malloc(0), is guarded (its free reports nothing)" \
    "$(run zero-first HAKMEM_GUARD=1)" '^ok 1$' '^hakmem:'
out=$(run calloc-overflow HAKMEM_GUARD=1)
expect "guards: after calloc(7, 2^62) is refused, in-bounds writes are not reported" "$out" '^calloc refused$' ''
expect "... and a one-byte overflow is, once" "$(grep -c '^hakmem: overflow of' <<<"$out")" '^1$' ''
# A library whose constructor allocates before hakmem's runs: that first allocation must get its guard bytes too.
cat >"$tmp/early.c" <<'EOF'
#include <stdlib.h>
#include <string.h>
static char *early;
__attribute__((constructor)) static void take(void) { early = malloc(14); memset(early, 'e', 14); }
char *early_block(void) { return early; }
EOF
cat >"$tmp/early_main.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
char *early_block(void);
int main(void) { free(early_block()); puts("freed"); return 0; }
EOF
if gcc -O0 -shared -fPIC -o "$tmp/libearly.so" "$tmp/early.c" 2>"$tmp/cc.err" &&
    gcc -O0 -o "$tmp/early_main" "$tmp/early_main.c" -L"$tmp" -learly -Wl,-rpath,"$tmp" 2>>"$tmp/cc.err"; then
    out=$(env HAKMEM_GUARD=1 HAKMEM_STATS=0 LD_PRELOAD="$PROF_LIB" "$tmp/early_main" 2>&1; echo "exit $?")
    expect "guards: a block allocated by another library's constructor, before hakmem's" "$out" \
        '^freed$' '^hakmem:|exit [^0]'
else
    echo "prof_checks_edges: FAIL cannot build the early-constructor library: $(head -c 300 "$tmp/cc.err")" >&2
    fail=1
fi
exit $fail
