#!/usr/bin/env bash
# Stats segments left by processes that could not remove their own (killed, or ended by _exit or exec): a process
# of the prof build that publishes in a directory keeps the 16 most recent segments there of processes that no
# longer exist (still readable as stale) and removes older ones; every segment of a live process, and files that
# are not segments, stay. Also: a fork child's gauges describe what it has (the parent's
# SuperSlabs, one thread), not a count restarted at zero that goes below it; an unwritable HAKMEM_STATS_FILE is said.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
DUMP=$BUILD/tests/tools/hkc_dump
cd "$tmp" || exit 1
for f in "$PROF_LIB" "$DUMP"; do
    [ -e "$f" ] || { echo "prof_stats_segment: $f is missing (make first)" >&2; exit 1; }
done
mkdir stats

# Twenty pids that are gone (children that have been waited for: their pids could be reused, not within this test),
# each with a segment of a different age (only names and ages are looked at), one of a live process (this shell,
# the oldest of all) and an old file that is not a segment.
dead=()
for i in $(seq 20); do
    sleep 0 &
    dead+=($!)
    wait $!
done
for i in "${!dead[@]}"; do
    printf x >"stats/hakmem-${dead[$i]}.stats"
    touch -d "$((i + 1)) minutes ago" "stats/hakmem-${dead[$i]}.stats"
done
printf x >"stats/hakmem-$$.stats"
touch -d '1 hour ago' "stats/hakmem-$$.stats"
printf x >"stats/hakmem-notes.txt"
touch -d '1 hour ago' "stats/hakmem-notes.txt"

env HAKMEM_STATS_DIR="$tmp/stats" LD_PRELOAD="$PROF_LIB" /bin/true || fail "/bin/true under the prof build"
kept=0 removed_ok=1
for i in "${!dead[@]}"; do
    if [ -e "stats/hakmem-${dead[$i]}.stats" ]; then
        kept=$((kept + 1))
        [ "$i" -lt 16 ] || removed_ok=0
    fi
done
[ "$kept" = 16 ] && [ "$removed_ok" = 1 ] && ok "the 16 most recent segments of dead processes are kept, the 4 older removed" ||
    fail "$kept of 20 dead processes' segments kept (want the 16 most recent): $(ls stats | tr '\n' ' ')"
[ -e "stats/hakmem-$$.stats" ] && ok "a live process's segment is kept, however old" || fail "a live process's segment was removed"
[ -e "stats/hakmem-notes.txt" ] && ok "a file that is not a segment is kept" || fail "hakmem-notes.txt was removed"

# HAKMEM_STATS_FILE that cannot be written: said in one line, and the table still printed (on stderr).
env HAKMEM_STATS_DIR="$tmp/stats" HAKMEM_STATS_PRINT=1 HAKMEM_STATS_FILE="$tmp/missing/table" LD_PRELOAD="$PROF_LIB" \
    /bin/true 2>table.err
[ "$(grep -c '^hakmem: cannot write HAKMEM_STATS_FILE=.*missing/table' table.err)" = 1 ] &&
    grep -q '^hakmem counters' table.err && ok "an unwritable HAKMEM_STATS_FILE: one line, the table on stderr" ||
    fail "unwritable HAKMEM_STATS_FILE: $(head -c 300 table.err)"

# A fork child's gauges: run a program that forks after allocating, and read the child's counters in the child.
cat >forkgauge.c <<'EOF'
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "hakmem.h"
static long long value(const char *want)
{
    size_t (*counters)(const struct hak_counter_desc **) = (size_t (*)(const struct hak_counter_desc **))dlsym(RTLD_DEFAULT, "hak_stats_counters");
    size_t (*nvalues)(void) = (size_t (*)(void))dlsym(RTLD_DEFAULT, "hak_stats_values");
    int (*rd)(uint64_t *, size_t, int) = (int (*)(uint64_t *, size_t, int))dlsym(RTLD_DEFAULT, "hak_stats_read");
    if (!counters || !nvalues || !rd)
        return -2;
    const struct hak_counter_desc *d;
    size_t n = counters(&d), nv = nvalues();
    static uint64_t v[1 << 16];
    if (nv > sizeof v / sizeof v[0] || rd(v, nv, HAK_STATS_PROCESS) != 0)
        return -3;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(d[i].name, want))
            return (long long)v[d[i].first];
    return -4;
}
int main(void)
{
    enum { N = 5000 };
    static void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = malloc(1000);
    long long parent_ss = value("ss_live");
    pid_t c = fork();
    if (c == 0) {
        for (int i = 0; i < N; i++) /* the child frees what the parent allocated: SuperSlabs empty out */
            free(p[i]);
        printf("parent_ss=%lld child_ss=%lld child_threads=%lld\n", parent_ss, value("ss_live"), value("threads_live"));
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
EOF
if gcc -O1 -fno-builtin -I"$root/alloc" -o forkgauge forkgauge.c -ldl 2>cc.err; then
    out=$(env HAKMEM_STATS_DIR="$tmp/stats" LD_PRELOAD="$PROF_LIB" ./forkgauge)
    read -r ps cs ct <<<"$(sed 's/[a-z_]*=//g' <<<"$out")"
    if [ -n "$ps" ] && [ "$ps" -ge 1 ] && [ "$cs" -le "$ps" ] && [ "$cs" -lt 1000000 ] && [ "$ct" = 1 ]; then
        ok "fork child's gauges: $out"
    else
        fail "fork child's gauges: '$out' (want 0 <= child_ss <= parent_ss, threads 1)"
    fi
else
    fail "cannot build forkgauge.c: $(head -c 300 cc.err)"
fi

if [ "$failures" -ne 0 ]; then
    echo "prof_stats_segment: $failures failure(s)" >&2
    exit 1
fi
echo "prof_stats_segment: all passed"
