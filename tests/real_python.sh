#!/usr/bin/env bash
# Real program: CPython (every object through malloc, PYTHONMALLOC=malloc) running tests/data/alloc_heavy.py;
# output with LD_PRELOAD=$LIB must equal the output without it. Env: LIB (allocator .so; empty = none).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LIB=${LIB-}
if ! command -v python3 >/dev/null 2>&1; then
    echo "real_python: python3 not found in PATH; install python3 (CI must provide it)" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { # $1 = output file, $2 = preload (may be empty)
    env PYTHONHASHSEED=0 PYTHONMALLOC=malloc LD_PRELOAD="$2" python3 "$here/data/alloc_heavy.py" >"$1" 2>"$1.err" || {
        echo "real_python: python3 failed (exit $?) with LD_PRELOAD='$2'; stderr:" >&2
        tail -n 20 "$1.err" >&2
        return 1
    }
}
run "$tmp/ref" ""
run "$tmp/out" "$LIB"
if ! grep -qx done "$tmp/ref"; then
    echo "real_python: reference run did not finish:" >&2
    cat "$tmp/ref" >&2
    exit 1
fi
if ! diff -u "$tmp/ref" "$tmp/out"; then
    echo "real_python: output differs under LD_PRELOAD=$LIB" >&2
    exit 1
fi
echo "real_python: identical output ($(wc -l <"$tmp/ref") lines) with LD_PRELOAD=${LIB:-<none>}"
