#!/usr/bin/env bash
# The benchmark suite behind `make bench`: every workload under every allocator by LD_PRELOAD, runs interleaved
# (A B C D E A B C D E ...), then medians, min-max and ratios into build/bench/results.csv and docs/benchmarks.md.
# Usage: bench/run.sh [--quick] [--runs N] [--only SUBSTRING]   (env BUILD: build directory, default build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$root/build}
BUILD=$(cd "$BUILD" && pwd)
quick=0
runs=5
only=""
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1; runs=3 ;;
    --runs) runs=$2; shift ;;
    --only) only=$2; shift ;;
    -h | --help)
        sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'
        exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

libdir=/usr/lib/x86_64-linux-gnu
declare -A LIB=(
    [hakmem]=$BUILD/libhakmem.so
    [glibc]=
    [mimalloc]=$libdir/libmimalloc.so.2
    [jemalloc]=$libdir/libjemalloc.so.2
    [tcmalloc]=$libdir/libtcmalloc_minimal.so.4
    [hakmem-prof]=$BUILD/libhakmem_prof.so
)
PEERS=(hakmem glibc mimalloc jemalloc tcmalloc)
# The recorder's variants: libhakmem_prof.so writing a recording at the default sampling (rec) or of every
# allocation (rec-all), and heaptrack recording the same run over glibc, for the tracing-cost comparison.
recdir=$(mktemp -d)
declare -A ENVS=(
    [hakmem-rec]="HAKMEM_RECORD=$recdir/rec-%p.hkp"
    [hakmem-rec-all]="HAKMEM_RECORD=$recdir/rec-%p.hkp HAKMEM_SAMPLE=all"
)
LIB[hakmem-rec]=$BUILD/libhakmem_prof.so
LIB[hakmem-rec-all]=$BUILD/libhakmem_prof.so
LIB[heaptrack]=
declare -A PREFIX=([heaptrack]="heaptrack -o $recdir/heaptrack")
for a in "${PEERS[@]}" hakmem-prof; do
    if [ -n "${LIB[$a]}" ] && [ ! -f "${LIB[$a]}" ]; then
        echo "bench/run.sh: ${LIB[$a]} is missing (make bench installs the peers; run make first)" >&2
        exit 2
    fi
done

# Workloads: name | command | metric (the line's label) | unit | better (higher|lower) | allocators (all = peers)
# QUICK shortens the runs, never changes what a workload does.
if [ "$quick" = 1 ]; then L1=1 L2=1 RM=3000000 PC=1000000 CH=4000 FR=200000 RE=60 LG=500; else L1=2 L2=5 RM=10000000 PC=5000000 CH=20000 FR=500000 RE=200 LG=2000; fi
W=(
    "larson-seed-1t|$BUILD/larson $L1 8 128 1024 1 12345 1|Throughput|ops/s|higher|all+prof"
    "larson-seed-2t|$BUILD/larson $L1 8 128 1024 1 12345 2|Throughput|ops/s|higher|all+trace"
    "larson-suite-1t|$BUILD/larson $L2 8 1000 5000 100 4141 1|Throughput|ops/s|higher|all+prof"
    "larson-suite-2t|$BUILD/larson $L2 8 1000 5000 100 4141 2|Throughput|ops/s|higher|all+prof"
    "random-mixed|$BUILD/bench_random_mixed $RM|Throughput|ops/s|higher|all"
    "prodcons-2t|$BUILD/bench_prodcons 1 $PC|Throughput|blocks/s|higher|all"
    "churn-1t|$BUILD/bench_churn 1 $CH|Throughput|threads/s|higher|all"
    "churn-2t|$BUILD/bench_churn 2 $CH|Throughput|threads/s|higher|all"
    "frag|$BUILD/bench_frag $FR|Throughput|ops/s|higher|all"
    "realloc|$BUILD/bench_realloc $RE|Throughput|ops/s|higher|all"
    "large|$BUILD/bench_large $LG|Throughput|ops/s|higher|all"
    "memory-per-block|$BUILD/bench_memory|rss_per_block|bytes|lower|all"
    "memory-after-free|$BUILD/bench_memory|rss_after_free_delta_kb|KiB|lower|all"
)

out=$BUILD/bench
mkdir -p "$out"
csv=$out/results.csv
echo "workload,allocator,run,value,unit" >"$csv"
raw=$(mktemp)
trap 'rm -rf "$raw" "$recdir"' EXIT
# The allocators a workload runs under: the peers, plus the instrumented variants for Larson.
allocators_of() { # $1 = who
    case $1 in
    all) echo "${PEERS[@]}" ;;
    all+prof) echo "${PEERS[@]}" hakmem-prof hakmem-rec ;;
    all+trace) echo "${PEERS[@]}" hakmem-prof hakmem-rec hakmem-rec-all $(command -v heaptrack >/dev/null && echo heaptrack) ;;
    esac
}

value_of() { # $1 = output text, $2 = label; prints the number after "label =" or "label:"
    printf '%s\n' "$1" | awk -v k="$2" '{ for (i = 1; i < NF; i++) if ($i == k) { v = $(i + 2); gsub(/[;,]/, "", v); print v; exit } }'
}

total=0
for w in "${W[@]}"; do
    IFS='|' read -r name _ _ _ _ who <<<"$w"
    [ -n "$only" ] && [[ $name != *"$only"* ]] && continue
    n=$(allocators_of "$who" | wc -w)
    total=$((total + n * runs))
done
done_runs=0
start_s=$SECONDS
for r in $(seq 1 "$runs"); do
    for w in "${W[@]}"; do
        IFS='|' read -r name cmd label unit better who <<<"$w"
        [ -n "$only" ] && [[ $name != *"$only"* ]] && continue
        read -r -a allocs <<<"$(allocators_of "$who")"
        for a in "${allocs[@]}"; do
            rm -rf "${recdir:?}"/*
            # shellcheck disable=SC2086 # ENVS and PREFIX hold words to split
            if ! text=$(env ${LIB[$a]:+LD_PRELOAD=${LIB[$a]}} ${ENVS[$a]:-} HAKMEM_STATS=0 timeout 300 ${PREFIX[$a]:-} $cmd 2>&1); then
                echo "bench/run.sh: $name under $a failed:" >&2
                printf '%s\n' "$text" | tail -5 >&2
                exit 1
            fi
            v=$(value_of "$text" "$label")
            if [ -z "$v" ]; then
                echo "bench/run.sh: $name under $a printed no '$label':" >&2
                printf '%s\n' "$text" | tail -5 >&2
                exit 1
            fi
            echo "$name,$a,$r,$v,$unit" >>"$csv"
            if [ "$a" = hakmem-rec-all ] && [ -x "$BUILD/tests/tools/hkt_dump" ]; then
                # The recording's size per million events, from the run just made.
                f=$(ls -S "$recdir"/rec-* | head -1) # the largest: timeout(1) is preloaded too, and its exec image is rec-PID.hkp.1
                ev=$("$BUILD/tests/tools/hkt_dump" --summary "$f" | awk '/^(alloc|free) / { n += $2 } END { print n + 0 }')
                echo "$name,recording-bytes-per-event,$r,$(awk -v b="$(stat -c %s "$f")" -v e="$ev" 'BEGIN { printf "%.2f", e ? b / e : 0 }'),bytes" >>"$csv"
            fi
            done_runs=$((done_runs + 1))
            if [ -t 2 ]; then
                printf '\r[%d/%d] %-18s %-12s run %d  (%ds)   ' "$done_runs" "$total" "$name" "$a" "$r" $((SECONDS - start_s)) >&2
            fi
        done
        [ -t 2 ] || printf '[%d/%d] %s, run %d of %d done (%ds)\n' "$done_runs" "$total" "$name" "$r" "$runs" $((SECONDS - start_s)) >&2
    done
done
echo >&2

# ---- callgrind: instructions per malloc+free pair on the fast path (repeatable on a noisy machine) ----
cg=$out/callgrind.csv
echo "allocator,instructions_per_pair" >"$cg"
if command -v valgrind >/dev/null 2>&1; then
    for a in "${PEERS[@]}"; do
        irs=()
        for n in 100000 200000; do
            f=$(mktemp)
            env ${LIB[$a]:+LD_PRELOAD=${LIB[$a]}} valgrind --tool=callgrind --callgrind-out-file=/dev/null \
                "$BUILD/bench_fastpath" $n 2>"$f" >/dev/null || true
            irs+=("$(awk '/I +refs:/ {gsub(/,/, "", $NF); print $NF}' "$f")")
            rm -f "$f"
        done
        if [ -n "${irs[0]}" ] && [ -n "${irs[1]}" ]; then
            echo "$a,$(awk -v a="${irs[0]}" -v b="${irs[1]}" 'BEGIN { printf "%.1f", (b - a) / 100000 }')" >>"$cg"
        fi
    done
fi

# ---- hakprof ingest and report speed on a recording of every allocation of Larson (over 10 million events) ----
ing=$out/ingest.csv
echo "events,recording_bytes,ingest_s,events_per_s,report_s" >"$ing"
if [ -x "$BUILD/hakprof" ]; then
    hp=$BUILD/hakprof
    secs=$([ "$quick" = 1 ] && echo 1 || echo 6) # over 10 million events: the ingest target is stated for that size
    if "$hp" record -f -o "$recdir/big.hkp" --sample all "$BUILD/larson" "$secs" 8 1000 5000 100 4141 1 >/dev/null 2>"$recdir/record.log"; then
        t0=$EPOCHREALTIME
        "$hp" ingest -f "$recdir/big.hkp" -o "$recdir/big.db" 2>"$recdir/ingest.log"
        t1=$EPOCHREALTIME
        "$hp" report "$recdir/big.db" >/dev/null
        t2=$EPOCHREALTIME
        ev=$("$BUILD/tests/tools/hkt_dump" --summary "$recdir/big.hkp" | awk '/^(alloc|free) / { n += $2 } END { print n + 0 }')
        awk -v e="$ev" -v b="$(stat -c %s "$recdir/big.hkp")" -v t0="$t0" -v t1="$t1" -v t2="$t2" \
            'BEGIN { printf "%d,%d,%.2f,%.0f,%.3f\n", e, b, t1 - t0, e / (t1 - t0), t2 - t1 }' >>"$ing"
    else
        echo "bench/run.sh: hakprof record failed:" >&2
        cat "$recdir/record.log" >&2
    fi
fi

# ---- the report ----
"$root/bench/report.sh" "$csv" "$cg" "$runs" "$quick" "$ing" >"$root/docs/benchmarks.md.new"
mv "$root/docs/benchmarks.md.new" "$root/docs/benchmarks.md"
echo "bench/run.sh: wrote $csv and docs/benchmarks.md ($((SECONDS - start_s)) s)" >&2
