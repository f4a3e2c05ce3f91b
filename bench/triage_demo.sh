#!/usr/bin/env bash
# The worked example of docs/triage.md (make triage-demo): Larson at 1 and 2 threads under two configurations that
# differ in one setting, recorded as interleaved sets of runs, compared by hakprof diff, which must name the cause.
#
# Env: BUILD           build directory (default: <repo>/build)
#      TRIAGE_RUNS     runs per configuration and thread count (default 5)
#      TRIAGE_SETTING  the candidate's one change (default HAKMEM_TLS_SLL_CAP=16; the baseline has the defaults)
#      TRIAGE_DIR      where the recordings, diffs and flame graphs go (default $BUILD/triage-demo, replaced)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${BUILD:-$root/build}" && pwd)
RUNS=${TRIAGE_RUNS:-5}
SETTING=${TRIAGE_SETTING:-HAKMEM_TLS_SLL_CAP=16}
OUT=${TRIAGE_DIR:-$BUILD/triage-demo}
HAKPROF=$BUILD/hakprof
for f in "$HAKPROF" "$BUILD/libhakmem_prof.so" "$BUILD/larson"; do
    [ -e "$f" ] || { echo "triage_demo: $f is missing (make first)" >&2; exit 2; }
done
case $SETTING in
HAKMEM_*=*) ;;
*) echo "triage_demo: TRIAGE_SETTING must be HAKMEM_NAME=VALUE (got '$SETTING')" >&2; exit 2 ;;
esac
rm -rf "$OUT"
mkdir -p "$OUT"

# Each worker thread replaces blocks of 8..128 bytes 50 rounds of 1024 before handing its array on: long enough
# per thread that the thread cache, not thread creation, sets the pace.
status=0
for threads in 1 2; do
    dir=$OUT/t$threads
    mkdir -p "$dir/baseline" "$dir/candidate"
    echo "== Larson at $threads thread(s): $RUNS runs of each configuration, interleaved ==" >&2
    for k in $(seq 1 "$RUNS"); do
        # Interleaved, so a change in the machine's load during the demo falls on both sides alike.
        "$HAKPROF" record -o "$dir/baseline/$k.hkp" -- "$BUILD/larson" 1 8 128 1024 50 12345 "$threads" \
            >/dev/null 2>>"$dir/record.log"
        env "$SETTING" "$HAKPROF" record -o "$dir/candidate/$k.hkp" -- "$BUILD/larson" 1 8 128 1024 50 12345 \
            "$threads" >/dev/null 2>>"$dir/record.log"
    done
    echo
    echo "######## Larson at $threads thread(s): baseline = defaults, candidate = $SETTING ########"
    echo "\$ hakprof diff $dir/baseline $dir/candidate"
    rc=0
    "$HAKPROF" diff "$dir/baseline" "$dir/candidate" 2>>"$dir/record.log" | tee "$dir/diff.txt" || rc=${PIPESTATUS[0]}
    "$HAKPROF" diff --format json "$dir/baseline" "$dir/candidate" >"$dir/diff.json" 2>>"$dir/record.log" || true
    "$HAKPROF" flame --diff "$dir/baseline" "$dir/candidate" -o "$dir/flame-diff.svg" 2>>"$dir/record.log"
    echo "(hakprof diff exited $rc; its JSON: $dir/diff.json; flame graph: $dir/flame-diff.svg)"
    [ "$rc" -le 1 ] || status=2
done

# What the diff names as the cause, both thread counts side by side: the setting that differs, the throughput, and
# the changes that moved the most operations.
echo
echo "######## summary ########"
python3 - "$OUT" "$SETTING" <<'EOF' || status=1
import json, sys
out, setting = sys.argv[1], sys.argv[2]
name = setting.split("=", 1)[0]
ok = True
for t in (1, 2):
    d = json.load(open(f"{out}/t{t}/diff.json"))
    thr = next(r for r in d["headline"] if r["key"] == "throughput")
    ci = "noise unknown" if thr["ci_low"] is None else \
        f"{100 * thr['ci_low'] / thr['baseline']['mean']:+.1f}%..{100 * thr['ci_high'] / thr['baseline']['mean']:+.1f}%"
    print(f"Larson, {t} thread(s): throughput {thr['baseline']['mean'] / 1e6:.1f} -> "
          f"{thr['candidate']['mean'] / 1e6:.1f} M ops/s ({thr['change_pct']:+.1f}%, {d['confidence']:.0%} CI {ci}): "
          f"{thr['verdict']}")
    diffs = [s for s in d["settings_differ"]]
    print("  settings that differ: " + ", ".join(f"{s['name']} {s['baseline']} -> {s['candidate']}" for s in diffs))
    named = [r for r in d["changes"] if r["verdict"] in ("regression", "improvement", "changed")]
    for r in named[:5]:
        if r["unit"] == "share":
            chg = f"{r['change_pp']:+.1f} pp"
        elif r["change_pct"] is not None:
            chg = f"{r['change_pct']:+.0f}%"
        else:
            chg = f"{r['change']:+.0f} (from zero)"
        print(f"  {r['verdict']:<11} {r['what']}: {chg}")
    # The demo's point: the diff names the setting and the mechanism (the thread cache spilling and refilling).
    if [s["name"] for s in diffs] != [name]:
        ok = False
        print(f"  NOT NAMED: the settings that differ are {diffs}, expected {name} alone")
    if name == "HAKMEM_TLS_SLL_CAP" and not any(r["key"] in ("counter:tls_sll_spilled", "counter:tls_sll_spill",
            "counter:refill_slab_free", "refill_share:tls_sll", "free_share:ss_local") and r["verdict"] == "regression"
            for r in named):
        ok = False
        print("  NOT NAMED: no thread-cache counter among the regressions")
print("the diff names the cause" if ok else "the diff did not name the cause")
sys.exit(0 if ok else 1)
EOF
exit $status
