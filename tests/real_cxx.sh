#!/usr/bin/env bash
# Real C++ program: $BUILD/tests/test_cxx (threads exchanging maps of strings) run with and without
# LD_PRELOAD=$LIB; the printed checksums must be identical. Env: LIB, BUILD (default build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LIB=${LIB-}
BUILD=${BUILD:-$here/../build}
bin=$BUILD/tests/test_cxx
if [ ! -x "$bin" ]; then
    echo "real_cxx: $bin not found; build it first (make)" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { # $1 = output file, $2 = preload
    env LD_PRELOAD="$2" "$bin" >"$1" 2>"$1.err" || {
        echo "real_cxx: test_cxx failed (exit $?) with LD_PRELOAD='$2'; stderr:" >&2
        tail -n 20 "$1.err" >&2
        return 1
    }
}
run "$tmp/ref" ""
run "$tmp/out" "$LIB"
if ! diff -u "$tmp/ref" "$tmp/out"; then
    echo "real_cxx: output differs under LD_PRELOAD=$LIB" >&2
    exit 1
fi
echo "real_cxx: identical output with LD_PRELOAD=${LIB:-<none>}: $(tail -n 1 "$tmp/ref")"
