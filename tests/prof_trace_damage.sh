#!/usr/bin/env bash
# Damage test of the recording reader (trace/reader.c). A synthetic recording with every chunk type (WINDOW, ERROR
# of every kind, LEAKS) must dump exactly as hkt_synth wrote it; defects behind good checksums must be reported at
# their chunk's byte with none of that chunk's records returned; files that are no recording must be refused by
# hkt_open with a one-line message; and
# hkt_fuzz (every truncation; every byte with bit 0 and bit 7 flipped, as is and behind a recomputed checksum; chunks
# dropped, doubled; bytes appended) must pass on the synthetic file and on a real recording of tests/tools/hkt_workload
# made by libhakmem_prof.so with HAKMEM_SAMPLE=all, whose 77-byte blocks must all be there with their frees.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so).
set -euo pipefail
BUILD=${BUILD:-build}
PROF_LIB=${PROF_LIB:-$BUILD/libhakmem_prof.so}
tools=$BUILD/tests/tools
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "prof_trace_damage: $*" >&2
    exit 1
}
for t in hkt_dump hkt_fuzz hkt_synth hkt_workload; do
    [ -x "$tools/$t" ] || fail "$tools/$t is not built (make $tools/$t)"
done
[ -f "$PROF_LIB" ] || fail "$PROF_LIB is not built"

# ---- 1. The synthetic recording reads back exactly as written -----------------------------------------------------
"$tools/hkt_synth" "$tmp/ok.hkp"
"$tools/hkt_dump" "$tmp/ok.hkp" >"$tmp/ok.txt" || fail "the synthetic recording does not read cleanly"
cat >"$tmp/ok.want" <<'EOF'
header pid=4242 ppid=-1 realtime_ns=1700000000123456789 mono_ns=5000000000 tsc=1000000 tsc_per_sec=3000000000 sample=all period=1 seed=7 depth=32 snapshot_ms=100 cmdline="synth --all \"quoted\" \\ \x01" exe="/usr/bin/synth" settings="HAKMEM_RECORD=x.hkp\nHAKMEM_SAMPLE=all\n" build_id="0123abcd" lib="/opt/hakmem/lib/libhakmem_prof.so"
counter_def index=0 first=0 width=1 kind=0 name="alloc_calls" group="api" meaning="calls of malloc"
counter_def index=1 first=1 width=4 kind=1 name="refill_tls_sll" group="refill" meaning="tls_sll hits"
counter_def index=2 first=5 width=1 kind=3 name="threads_live" group="thread" meaning=""
module gen=1 base=0x555555554000 lo=0x555555554000 hi=0x555555559fff path="" build_id="feedbeef"
module gen=1 base=0x7ffff7c00000 lo=0x7ffff7c28000 hi=0x7ffff7e1ffff path="/lib/x86_64-linux-gnu/libc.so.6" build_id=""
stack id=1 depth=3 ips=0x555555555123,0x555555555f00,0x7ffff7c29d90
stack id=2 depth=0 ips=
stack id=3 depth=2 ips=0x7ffff7c30000,0x555555555000
thread kind=start tid=1 os_tid=4242 tsc=1000100 name="main"
alloc tid=1 seq=1 tsc=1000210 addr=0x7f0000001000 size=24 cls=1 stage=tls_sll stack=0
alloc tid=1 seq=2 tsc=1000215 addr=0x7f0000001020 size=25 cls=2 stage=slab_free stack=1
alloc tid=1 seq=3 tsc=1000220 addr=0x7f0000001040 size=26 cls=3 stage=remote_drain stack=2
alloc tid=1 seq=4 tsc=1000225 addr=0x7f0000001060 size=27 cls=4 stage=partial stack=3
alloc tid=1 seq=5 tsc=1000230 addr=0x7f0000001080 size=28 cls=5 stage=adopt stack=0
alloc tid=1 seq=6 tsc=1000235 addr=0x7f00000010a0 size=29 cls=6 stage=new_slab stack=1
alloc tid=1 seq=7 tsc=1000240 addr=0x7f00000010c0 size=30 cls=7 stage=ss_cache stack=2
alloc tid=1 seq=8 tsc=1000245 addr=0x7f00000010e0 size=31 cls=8 stage=ss_os stack=3
alloc tid=1 seq=9 tsc=1000250 addr=0x7e0000000000 size=1048576 cls=255 stage=large stack=0
free tid=1 alloc_tid=1 alloc_seq=1 tsc=1000300 lifetime=90 addr=0x7f0000001000 size=24 cls=1 path=tls_sll stack=0
thread kind=start tid=2 os_tid=4243 tsc=1000400 name=""
stack id=4 depth=1 ips=0x555555555200
alloc tid=2 seq=1 tsc=1000500 addr=0x7f0000200000 size=40 cls=2 stage=remote_drain stack=4
free tid=2 alloc_tid=1 alloc_seq=2 tsc=1000600 lifetime=385 addr=0x7f0000001020 size=25 cls=2 path=ss_remote stack=1
free tid=2 alloc_tid=1 alloc_seq=9 tsc=1000610 lifetime=360 addr=0x7e0000000000 size=1048576 cls=255 path=large stack=0
free tid=2 alloc_tid=2 alloc_seq=1 tsc=1000620 lifetime=120 addr=0x7f0000200000 size=40 cls=2 path=ss_local stack=4
snapshot tsc=1000700 mono_ns=5000233333 n=6 values=10,1,2,3,4,2
lost tid=2 events=7
thread kind=name tid=2 os_tid=4243 tsc=1000800 name="worker-1"
module gen=2 base=0x7ffff7a00000 lo=0x7ffff7a01000 hi=0x7ffff7a04fff path="/usr/lib/libfoo.so.1" build_id=""
module gen=2 base=0x0 lo=0x10000 hi=0x10000 path="[vdso]" build_id="aa"
thread kind=exit tid=2 os_tid=4243 tsc=1000900 name=""
window tsc=1000910 mono_ns=5000300000 open=0
window tsc=1000920 mono_ns=5000310000 open=1
stack id=5 depth=2 ips=0x555555555300,0x555555555f00
error kind=double_free tid=2 tsc=1000930 addr=0x7f0000001020 size=25 stack=5 alloc_stack=1 alloc_tid=1 alloc_seq=2
error kind=foreign tid=1 tsc=1000931 addr=0x7ffffffde000 size=0 stack=5 alloc_stack=0 alloc_tid=0 alloc_seq=0
error kind=interior tid=1 tsc=1000932 addr=0x7f0000001068 size=0 stack=4 alloc_stack=0 alloc_tid=0 alloc_seq=0
error kind=overflow tid=1 tsc=1000933 addr=0x7f0000001080 size=28 stack=5 alloc_stack=0 alloc_tid=1 alloc_seq=5
error kind=use_after_free tid=2 tsc=1000934 addr=0x7f0000200000 size=40 stack=0 alloc_stack=4 alloc_tid=2 alloc_seq=1
snapshot tsc=1001000 mono_ns=5000333333 n=6 values=20,5,6,7,8,1
leak stack=3 blocks=2 bytes=54 est_blocks=2 est_bytes=54
leak stack=0 blocks=1 bytes=28 est_blocks=1 est_bytes=28
leak stack=4 blocks=1000000 bytes=1099511627776 est_blocks=1000000 est_bytes=2199023255552
end tsc=1001100 mono_ns=5000366666 realtime_ns=1700000000123823455 events=14 lost=7 reason=exit signo=0
EOF
diff -u "$tmp/ok.want" "$tmp/ok.txt" >&2 || fail "the synthetic recording reads back wrong (diff above: want, got)"
"$tools/hkt_dump" --summary "$tmp/ok.hkp" >"$tmp/ok.sum"
grep -qx 'complete=1' "$tmp/ok.sum" || fail "the synthetic recording is not complete"
grep -qx 'leak_report=1' "$tmp/ok.sum" || fail "the synthetic recording's LEAKS chunk is not reported as read"
"$tools/hkt_dump" --offsets "$tmp/ok.hkp" >"$tmp/ok.off"
echo "synthetic recording: $(wc -l <"$tmp/ok.txt") records as written"
# A recording of format version 1 (the EVENTS encoding before 2) still reads, record for record the same, with the
# bulk events too (both threads' allocations and frees, every stage and path).
"$tools/hkt_synth" --variant version1 --events 3000 "$tmp/v1.hkp"
"$tools/hkt_synth" --events 3000 "$tmp/v2.hkp"
if "$tools/hkt_dump" "$tmp/v1.hkp" >"$tmp/v1.txt" && "$tools/hkt_dump" "$tmp/v2.hkp" >"$tmp/v2.txt" &&
    cmp -s "$tmp/v1.txt" "$tmp/v2.txt" && [ "$(grep -c '^alloc' "$tmp/v1.txt")" -gt 1500 ]; then
    echo "version 1 recording: reads as the same $(wc -l <"$tmp/v1.txt") records as version 2"
else
    fail "a version 1 recording does not read as its version 2 twin: $(diff "$tmp/v1.txt" "$tmp/v2.txt" | head -3)"
fi

# ---- 2. Defects behind good checksums: reported at their chunk, every earlier record returned, none of theirs -----
# variant|what the message must say ("open:" first: hkt_open refuses the file)
while IFS='|' read -r variant want; do
    f=$tmp/$variant.hkp
    "$tools/hkt_synth" --variant "$variant" "$f"
    if "$tools/hkt_dump" --offsets "$f" >"$tmp/out" 2>"$tmp/err"; then
        fail "$variant: the defect went unnoticed"
    fi
    msg=$(cat "$tmp/err")
    [ "$(wc -l <"$tmp/err")" = 1 ] || fail "$variant: the message is not one line: $msg"
    case $want in
    open:*)
        [[ $msg == "$f: "*"${want#open:}"* ]] || fail "$variant: message \"$msg\" should name the file and say \"${want#open:}\""
        [ ! -s "$tmp/out" ] || fail "$variant: records returned from a file hkt_open should refuse"
        continue
        ;;
    esac
    [[ $msg == "$f: byte "[0-9]*": "*"$want"* ]] || fail "$variant: message \"$msg\" should say \"FILE: byte N: ...$want...\""
    at=${msg#"$f: byte "}
    at=${at%%:*}
    awk -v at="$at" '{ if (substr($1, 2) + 0 < at + 0) print }' "$tmp/ok.off" >"$tmp/before"
    cmp -s "$tmp/before" "$tmp/out" || fail "$variant: the records before byte $at are not exactly those of the good file"
done <<'EOF'
version7|open:recording version 7 is newer than this reader (2)
second-header|malformed HEADER payload (a second HEADER chunk)
deep-stack|malformed STACKS payload (stack 9 is 1025 frames deep
dup-stack|malformed STACKS payload (stack id 1 defined twice)
bad-kind|malformed EVENTS payload (event 10 has kind 3)
bad-stage|malformed EVENTS payload (event 10: refill stage 9)
undefined-stack|malformed EVENTS payload (event 10 refers to stack 99
huge-count|malformed EVENTS payload
seq-gap|chunk seq 9 where 8 was expected
snapshot-width|malformed SNAPSHOT payload (5 values where COUNTER_DEFS has 6)
unknown-bad-crc|chunk 10 (type 42) checksum mismatch
type0|chunk 11 has type 0
nul-string|malformed THREAD payload
trailing-bytes|malformed LOST payload (1 stray bytes after its fields)
after-end|data after the END chunk
garbage-after-end|data after the END chunk
bad-window|malformed WINDOW payload (open is 2 (0 or 1))
bad-error-kind|malformed ERROR payload (error kind 6)
error-undefined-stack|malformed ERROR payload (the error's allocation refers to stack 99, which no earlier STACKS
leak-undefined-stack|malformed LEAKS payload (entry 2 refers to stack 98, which no earlier STACKS
second-leaks|malformed LEAKS payload (a second LEAKS chunk)
EOF
# Cut short at a chunk boundary (a killed process, which writes neither LEAKS nor END): every record, no error,
# not complete, no leak report.
"$tools/hkt_synth" --variant no-end "$tmp/no-end.hkp"
"$tools/hkt_dump" "$tmp/no-end.hkp" >"$tmp/out" || fail "no-end: a recording without END is not damaged"
grep -v -e '^end ' -e '^leak ' "$tmp/ok.txt" | cmp -s - "$tmp/out" || fail "no-end: records differ from the good file's"
"$tools/hkt_dump" --summary "$tmp/no-end.hkp" >"$tmp/no-end.sum"
grep -qx 'complete=0' "$tmp/no-end.sum" || fail "no-end: reported complete"
grep -qx 'leak_report=0' "$tmp/no-end.sum" || fail "no-end: reported a LEAKS chunk it does not have"

# ---- 3. Files that are no recording: hkt_open refuses them with one line naming the file ------------------------
: >"$tmp/empty.hkp"
head -c 10 "$tmp/ok.hkp" >"$tmp/short.hkp"
{ printf 'HAKTRACX'; tail -c +9 "$tmp/ok.hkp"; } >"$tmp/magic.hkp"
{ head -c 8 "$tmp/ok.hkp"; printf '\0\0\0\0'; tail -c +13 "$tmp/ok.hkp"; } >"$tmp/version0.hkp"
{ head -c 12 "$tmp/ok.hkp"; printf '\040\0\0\0'; tail -c +17 "$tmp/ok.hkp"; } >"$tmp/hsize.hkp"
mkdir "$tmp/dir.hkp"
while IFS='|' read -r name want; do
    f=$tmp/$name
    if "$tools/hkt_dump" "$f" >"$tmp/out" 2>"$tmp/err"; then
        fail "$name: read as a recording"
    fi
    msg=$(cat "$tmp/err")
    [ "$(wc -l <"$tmp/err")" = 1 ] && [[ $msg == "$f: "*"$want"* ]] || fail "$name: message \"$msg\" should be one line naming the file and saying \"$want\""
done <<'EOF'
empty.hkp|empty file
short.hkp|not a hakmem recording
magic.hkp|not a hakmem recording (bad magic)
version0.hkp|damaged file header
hsize.hkp|damaged file header
dir.hkp|is a directory
missing.hkp|No such file or directory
EOF

# ---- 4. Every truncation and bit flip of the synthetic recordings ------------------------------------------------
# The checksum itself, interleaved streams and all, against a bit-at-a-time reference.
"$tools/hkt_fuzz" --crc >/dev/null || fail "hkt_fuzz --crc: the CRC-32C differs from the reference"
TMPDIR=$tmp "$tools/hkt_fuzz" "$tmp/ok.hkp" || fail "hkt_fuzz failed on the synthetic recording"
TMPDIR=$tmp "$tools/hkt_fuzz" "$tmp/no-end.hkp" || fail "hkt_fuzz failed on the synthetic recording without END"

# ---- 5. A real recording: libhakmem_prof.so records hkt_workload, every allocation sampled ----------------------
n=200
HAKMEM_RECORD=$tmp/real.hkp HAKMEM_SAMPLE=all HAKMEM_STATS_DIR=$tmp LD_PRELOAD=$PROF_LIB "$tools/hkt_workload" $n ||
    fail "hkt_workload failed under $PROF_LIB"
[ -s "$tmp/real.hkp" ] || fail "HAKMEM_RECORD=$tmp/real.hkp LD_PRELOAD=$PROF_LIB made no recording"
"$tools/hkt_dump" --summary "$tmp/real.hkp" >"$tmp/summary" || fail "the real recording does not read cleanly"
for want in 'header 1' 'end 1' 'complete=1'; do
    grep -qx "$want" "$tmp/summary" || fail "real recording: summary lacks \"$want\": $(tr '\n' ' ' <"$tmp/summary")"
done
for type in counter_def module stack snapshot; do
    grep -qx "$type [1-9][0-9]*" "$tmp/summary" || fail "real recording: no $type record"
done
# The workload's own blocks: n allocations of 77 bytes, each freed once, the odd half by the other thread. Threads'
# events reach the file in batches, so a free may come before its allocation: two passes.
"$tools/hkt_dump" "$tmp/real.hkp" >"$tmp/real.txt"
read -r allocs frees cross < <(awk '
    { split("", f); for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } }
    NR == FNR { if ($1 == "alloc" && f["size"] == 77) { mine[f["tid"] "/" f["seq"]] = 1; allocs++ } next }
    $1 == "free" && ((f["alloc_tid"] "/" f["alloc_seq"]) in mine) { frees++; if (f["tid"] != f["alloc_tid"]) cross++ }
    END { print allocs + 0, frees + 0, cross + 0 }' "$tmp/real.txt" "$tmp/real.txt")
echo "real recording: $(stat -c %s "$tmp/real.hkp") bytes; 77-byte blocks: $allocs allocated, $frees freed, $cross cross-thread"
[ "$allocs" = $n ] && [ "$frees" = $n ] && [ "$cross" = $((n / 2)) ] ||
    fail "real recording: want $n allocations of 77 bytes, $n frees of them, $((n / 2)) cross-thread"
TMPDIR=$tmp "$tools/hkt_fuzz" "$tmp/real.hkp" || fail "hkt_fuzz failed on the real recording"
echo "prof_trace_damage: ok"
