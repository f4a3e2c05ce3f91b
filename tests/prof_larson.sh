#!/usr/bin/env bash
# Truth test of the counter build on Larson: the benchmark tracks, for every block it frees, whether the freeing
# thread allocated it (LARSON_TRACK_FREES=1); hakmem's same-thread and cross-thread free counters for the size
# classes of Larson's blocks (8..128 bytes) must equal those numbers exactly, at 1 and 2 threads.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so).
set -euo pipefail
BUILD=${BUILD:-build}
PROF_LIB=${PROF_LIB:-$BUILD/libhakmem_prof.so}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for threads in 1 2; do
    for params in "1 8 128 1024 1 12345" "1 8 128 5000 5 4141"; do
        HAKMEM_STATS_DIR=$tmp HAKMEM_STATS_PRINT=1 HAKMEM_STATS_FILE=$tmp/table LARSON_TRACK_FREES=1 \
            LD_PRELOAD=$PROF_LIB "$BUILD/larson" $params "$threads" >"$tmp/out"
        want_same=$(awk '/^same_thread_frees/ {print $3}' "$tmp/out")
        want_cross=$(awk '/^cross_thread_frees/ {print $3}' "$tmp/out")
        # The per-class table: sum the f_same and f_cross columns over classes of at most 128 bytes.
        read -r got_same got_cross < <(awk '
            /^ *class / { for (i = 1; i <= NF; i++) col[$i] = i; inside = 1; next }
            inside && $1 ~ /^[0-9]+$/ && $1 <= 128 { s += $col["f_same"]; c += $col["f_cross"] }
            END { print s + 0, c + 0 }' "$tmp/table")
        echo "larson $params $threads: benchmark same=$want_same cross=$want_cross; counters same=$got_same cross=$got_cross"
        if [ -z "$want_same" ] || [ "$want_same" != "$got_same" ] || [ "$want_cross" != "$got_cross" ]; then
            echo "prof_larson: counters disagree with the benchmark's own tracking" >&2
            exit 1
        fi
        if ls "$tmp"/hakmem-*.stats >/dev/null 2>&1; then
            echo "prof_larson: the stats segment was not removed at exit" >&2
            exit 1
        fi
    done
done
echo "prof_larson: ok"
