#!/usr/bin/env bash
# The README's main job, as written there (less `make deps all`, which the test run has done): record Larson with
# hakprof, ingest and report; the report must open with the loss and sampling lines and answer the main questions.
# Env: BUILD (build directory).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${BUILD:-$root/build}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The line of the README's first fenced block that runs the main job.
line=$(awk '/^```sh/ { inside = 1; next } /^```/ { inside = 0 } inside && /hakprof record/ { print; exit }' "$root/README.md")
if [ -z "$line" ]; then
    echo "prof_readme: README.md has no main-job line with 'hakprof record'" >&2
    exit 1
fi
cmd=${line#make deps all && }
if [ "$cmd" = "$line" ]; then
    echo "prof_readme: the main-job line does not start with 'make deps all && ': $line" >&2
    exit 1
fi
# Run it from a scratch directory, with the paths it names pointing at this build.
mkdir -p "$tmp/build"
for f in hakprof libhakmem_prof.so libhakmem.so larson; do
    ln -s "$BUILD/$f" "$tmp/build/$f"
done
(cd "$tmp" && eval "$cmd") >"$tmp/out" 2>"$tmp/err" || {
    echo "prof_readme: the README's main job failed: $cmd" >&2
    tail -5 "$tmp/err" >&2
    exit 1
}
fail=0
expect() { # $1 = what, $2 = extended regex the report must contain
    if ! grep -Eq "$2" "$tmp/out"; then
        echo "prof_readme: the report lacks $1 (/$2/)" >&2
        fail=1
    fi
}
first=$(awk '!/^Throughput/ { print; exit }' "$tmp/out") # awk, not grep | head: no SIGPIPE under pipefail
case $first in
"lost events: 0"*) ;;
*) echo "prof_readme: the report does not open with the lost-events line: '$first'" >&2; fail=1 ;;
esac
expect "the sampling line" '^sampling: bytes:524288'
expect "a complete recording" '^recording: complete'
expect "the call site of Larson's allocations" 'alloc_block'
expect "the refill stages" '== refill stages per size class'
expect "the free pipeline" '^  ss_remote +[0-9]+'
expect "same- and cross-thread frees" '^  cross_thread +[0-9]+'
[ -s "$tmp/larson.db" ] || { echo "prof_readme: larson.db was not written" >&2; fail=1; }
sqlite3 "$tmp/larson.db" 'SELECT count(*) FROM runs' >/dev/null || fail=1
[ $fail = 0 ] && echo "prof_readme: the README's main job works: $cmd"
exit $fail
