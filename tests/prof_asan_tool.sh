#!/usr/bin/env bash
# hakprof and the recording reader built with AddressSanitizer and UBSan (build/asan-tool/bin, LeakSanitizer on):
# every verb over real recordings, damaged recordings, files that are no recording and bad arguments, and the
# reader's torture test (hkt_fuzz: every cut, bit flip and growth) over a synthetic and a real recording. Each
# must end as the plain build does, and the sanitizers must report nothing.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
SAN=$BUILD/asan-tool/bin
tools=$BUILD/tests/tools
for f in "$SAN/hakprof" "$SAN/hkt_fuzz" "$SAN/hkt_dump" "$tools/hkt_synth" "$tools/hkt_workload" "$BUILD/larson" "$PROF_LIB"; do
    [ -e "$f" ] || { echo "$test_name: $f is missing (make first)" >&2; exit 1; }
done
cd "$tmp" || exit 1
# hakprof record preloads the libhakmem_prof.so beside it: put the two side by side.
mkdir bin && cp "$SAN/hakprof" bin/ && ln -s "$PROF_LIB" bin/libhakmem_prof.so || exit 1
HP=$tmp/bin/hakprof
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# san WANT WHAT CMD...: expect_exit, and no sanitizer report on stderr.
san() {
    local want=$1 what=$2
    shift 2
    expect_exit "$want" "$what" "$@"
    if grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error' "$tmp/err"; then
        fail "$what: the sanitizers reported:"
        grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error' "$tmp/err" | head -30 >&2
    fi
}

# Recordings: Larson at 2 threads with every allocation sampled (recorded by the ASan hakprof itself), and the
# reader test's workload.
san 0 "record Larson" "$HP" record --sample all -o larson.hkp -- "$BUILD/larson" 1 8 128 1024 1 12345 2
san 0 "record it again" "$HP" record --sample all -o larson2.hkp -- "$BUILD/larson" 1 8 128 1024 1 12345 2
HAKMEM_RECORD=$tmp/work.hkp HAKMEM_SAMPLE=all HAKMEM_STATS=0 LD_PRELOAD=$PROF_LIB "$tools/hkt_workload" 200 >/dev/null ||
    fail "hkt_workload failed under $PROF_LIB"
"$tools/hkt_synth" synth.hkp

san 0 "ingest" "$HP" ingest larson.hkp -o larson.db
san 0 "report (text)" "$HP" report larson.db
san 0 "report (json)" "$HP" report --format json larson.db
san 0 "report (csv)" "$HP" report --format csv larson.db
san 0 "report --leaks" "$HP" report --leaks larson.db
san 0 "report --sqlite of the recording" "$HP" report --sqlite again.db larson.hkp
san 0 "flame (svg)" "$HP" flame -o larson.svg larson.hkp
san 0 "flame --folded --by cross-thread" "$HP" flame --folded --by cross-thread larson.hkp
san 0 "flame --diff" "$HP" flame --diff larson.hkp larson2.hkp -o d.svg
san 0 "flame --pprof" "$HP" flame --pprof -o larson.pb larson.hkp
# diff exits 1 when it finds a regression; two runs of one program may or may not differ beyond noise
expect_diff() {
    "$HP" diff larson.hkp larson2.hkp >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -gt 1 ] || grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error' "$tmp/err"; then
        fail "diff: exit $rc: $(head -c 400 "$tmp/err")"
    else
        ok "diff: exit $rc, no sanitizer report"
    fi
}
expect_diff

# Damage: cut short in a chunk, a byte flipped, a file that is no recording, a missing one, a bad flag.
size=$(stat -c %s larson.hkp)
head -c $((size * 2 / 3)) larson.hkp >cut.hkp
san 0 "report of a recording cut short" "$HP" report cut.hkp
cp larson.hkp flipped.hkp
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))' flipped.hkp $((size / 2))
san 0 "report of a recording with a flipped byte" "$HP" report flipped.hkp
head -c 5000 /dev/urandom >noise.hkp
san 2 "report of random bytes" "$HP" report noise.hkp
san 2 "report of a missing file" "$HP" report missing.hkp
san 2 "report with a bad flag" "$HP" report --no-such-flag larson.db
san 2 "top with no terminal" "$HP" top larson.hkp

# The reader's torture test under the sanitizers.
san 0 "hkt_fuzz: the CRC-32C against its reference" "$SAN/hkt_fuzz" --crc
san 0 "hkt_fuzz: synthetic recording" "$SAN/hkt_fuzz" synth.hkp
san 0 "hkt_fuzz: real recording" "$SAN/hkt_fuzz" work.hkp
san 0 "hkt_dump of the Larson recording" "$SAN/hkt_dump" larson.hkp
exit $((failures > 0))
