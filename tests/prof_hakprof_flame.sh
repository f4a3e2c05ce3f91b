#!/usr/bin/env bash
# End-to-end test of hakprof flame: the SVG is well-formed XML with the expected frames, counts and script; folded
# stacks (root first) add up to the database's counts for every --by, exactly with every allocation sampled and to
# the rounded estimate otherwise; --diff colours and draws from either side; bad input exits 2.
# Env: BUILD (build directory), PROF_LIB (default $BUILD/libhakmem_prof.so; hakprof record uses the one beside it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
CALLSITES=$BUILD/tests/tools/callsites
LARSON=$BUILD/larson
cd "$tmp"

q() { python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$@"; }
# Sum of the counts of folded lines, each checked against the format flamegraph.pl reads: "frames count".
folded_sum() {
    python3 -c '
import re, sys
total = 0
for n, line in enumerate(open(sys.argv[1]), 1):
    m = re.match(r"^(\S.*) (\d+)$", line.rstrip("\n"))
    assert m, "line %d is not \"stack count\": %r" % (n, line)
    assert ";;" not in m.group(1), line
    total += int(m.group(2))
print(total)' "$1"
}

for f in "$HAKPROF" "$CALLSITES" "$LARSON" "$PROF_LIB"; do
    [ -e "$f" ] || { echo "prof_hakprof_flame: $f is missing (make first)" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "prof_hakprof_flame: python3 is missing (make deps)" >&2; exit 1; }

# callsites at scale 3, every allocation sampled: alloc_a 3000 x 32 B (same-thread frees), alloc_b 1500 x 200 B
# (freed by another thread), alloc_c 300 x 5000 B (live at exit).
"$HAKPROF" record --sample all -o cs.hkp -- "$CALLSITES" 3 >/dev/null 2>record.err ||
    fail "record: $(tail -2 record.err | tr '\n' ' ')"
expect_exit 0 "flame to SVG" "$HAKPROF" flame cs.hkp -o cs.svg
python3 - cs.svg <<'EOF' && ok "SVG parses as XML, with the frames, counts, script and zoom" || fail "SVG check"
import sys, xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == ns + "svg", root.tag
frames = [g for g in root.iter(ns + "g") if g.get("class") == "f"]
titles = {g.find(ns + "title").text.split("\n")[0]: g.find(ns + "title").text for g in frames}
for name in ("all", "main", "alloc_a", "alloc_b", "alloc_c"):
    assert name in titles, (name, sorted(titles))
assert "3000 allocations" in titles["alloc_a"], titles["alloc_a"]
assert "1500 allocations" in titles["alloc_b"], titles["alloc_b"]
assert "300 allocations" in titles["alloc_c"], titles["alloc_c"]
for g in frames:
    r = g.find(ns + "rect")
    assert float(r.get("width")) >= 0 and g.get("data-x") is not None and g.get("data-d") is not None
script = root.find(ns + "script")
assert script is not None and "hpZoom" in script.text and "mouseover" in script.text
assert root.get("onload") == "hpInit(evt)"
assert any(t.get("id") == "reset" for t in root.iter(ns + "text"))
EOF

# Folded stacks add up to the database's counts.
db=cs.db
for by in allocs bytes cross-thread live; do
    case $by in
    allocs) col=allocs ;;
    bytes) col=bytes ;;
    cross-thread) col=cross_thread_frees ;;
    live) col=live_bytes ;;
    esac
    "$HAKPROF" flame cs.hkp --folded --by "$by" >"f-$by.txt" 2>/dev/null
    got=$(folded_sum "f-$by.txt")
    want=$(q "$db" "SELECT SUM($col) FROM call_sites")
    [ "$got" = "$want" ] && ok "folded --by $by sums to the database's $col ($got)" ||
        fail "folded --by $by sums to $got, the database says $want"
done
want_a=$(q "$db" "SELECT SUM(allocs) FROM site_functions WHERE function = 'alloc_a'")
grep -q ";main;alloc_a $want_a\$" f-allocs.txt && ok "a folded line is root first, the call site last" ||
    fail "no line ending ';main;alloc_a $want_a': $(head -3 f-allocs.txt)"
grep -Eq '^(_start|clone3|__libc_start_main);' f-allocs.txt || fail "folded lines do not start at the root"
[ "$(grep -c 'alloc_b' f-cross-thread.txt)" -ge 1 ] && ! grep -q 'alloc_a' f-cross-thread.txt &&
    ok "--by cross-thread holds alloc_b's stacks only" || fail "--by cross-thread: $(cat f-cross-thread.txt)"
"$HAKPROF" flame cs.hkp --folded --lines >f-lines.txt 2>/dev/null
line_a=$(grep -n 'SITE_A \*/' "$root/tests/tools/callsites.c" | cut -d: -f1)
grep -q "alloc_a tests/tools/callsites.c:$line_a $want_a\$" f-lines.txt && ok "--lines names file:line" ||
    fail "--lines: no 'alloc_a tests/tools/callsites.c:$line_a': $(head -2 f-lines.txt)"

# Estimates (Larson at the default sampling): the lines add up to the rounded estimate, and --samples to the samples.
"$HAKPROF" record -o larson.hkp -- "$LARSON" 1 8 128 1024 5 12345 2 >/dev/null 2>>record.err ||
    fail "record: $(tail -2 record.err | tr '\n' ' ')"
"$HAKPROF" flame larson.hkp --folded >f-est.txt 2>/dev/null
got=$(folded_sum f-est.txt)
want=$(q larson.db "SELECT CAST(ROUND(SUM(est_allocs)) AS INTEGER) FROM call_sites")
[ "$got" = "$want" ] && ok "folded estimates add up to the rounded estimate ($got)" ||
    fail "folded estimates sum to $got, the database's estimate is $want"
"$HAKPROF" flame larson.hkp --folded --samples >f-samples.txt 2>/dev/null
got=$(folded_sum f-samples.txt)
want=$(q larson.db "SELECT SUM(allocs) FROM call_sites")
[ "$got" = "$want" ] && ok "--samples adds up to the sampled allocations ($got)" ||
    fail "--samples sums to $got, the database has $want samples"
grep -q "worker;alloc_block " f-est.txt || fail "no worker;alloc_block stack in Larson's folded output"
# flamegraph.pl, where installed, reads the folded output.
if command -v flamegraph.pl >/dev/null; then
    flamegraph.pl f-est.txt >fg.svg &&
        python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' fg.svg &&
        ok "flamegraph.pl reads the folded output" || fail "flamegraph.pl rejected the folded output"
fi

# ---- --diff: two workloads; frames that vanished show when drawn from the baseline ---------------------------------
expect_exit 0 "flame --diff" "$HAKPROF" flame --diff cs.hkp larson.hkp -o d.svg
expect_exit 0 "flame --diff --from baseline" "$HAKPROF" flame --diff cs.hkp larson.hkp --from baseline -o db.svg
python3 - d.svg db.svg <<'EOF' && ok "diff SVGs: the candidate's frames, or the baseline's; red and blue" ||
import sys, xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
def frames(path):
    root = ET.parse(path).getroot()
    out = {}
    for g in root.iter(ns + "g"):
        if g.get("class") == "f" and g.get("style") is None:
            out[g.find(ns + "title").text.split("\n")[0]] = (g.find(ns + "title").text, g.find(ns + "rect").get("fill"))
    return out
cand, base = frames(sys.argv[1]), frames(sys.argv[2])
assert "alloc_block" in cand and "alloc_a" not in cand, sorted(cand)
assert "alloc_a" in base and "alloc_b" in base, sorted(base)
title, fill = base["alloc_a"]
assert "baseline:" in title and "candidate:" in title and "change:" in title, title
r, g, b = (int(v) for v in fill[4:-1].split(","))
assert b == 255 and r < 255, fill  # vanished: shrank, blue
title, fill = cand["alloc_block"]
r, g, b = (int(v) for v in fill[4:-1].split(","))
assert r == 255 and b < 255, fill  # appeared: grew, red
EOF
    fail "diff SVG check"
"$HAKPROF" flame --diff cs.hkp larson.hkp --folded >f-diff.txt 2>/dev/null
python3 - f-diff.txt "$(folded_sum f-allocs.txt)" "$(folded_sum f-est.txt)" <<'EOF' &&
import re, sys
a = b = 0
for line in open(sys.argv[1]):
    m = re.match(r"^(\S.*) (\d+) (\d+)$", line.rstrip("\n"))
    assert m, line
    a += int(m.group(2))
    b += int(m.group(3))
assert (a, b) == (int(sys.argv[2]), int(sys.argv[3])), (a, b, sys.argv[2:])
EOF
    ok "folded --diff: two counts per line, each side adding up" || fail "folded --diff"

# The script runs: zoom on a frame with a small DOM stand-in, where node is installed.
if command -v node >/dev/null; then
    cat >zoom.js <<'EOF'
const src = require('fs').readFileSync(process.argv[2], 'utf8');
const script = src.match(/<!\[CDATA\[([\s\S]*?)\]\]>/)[1];
const mk = (tag, attrs, kids, text) => ({ tag, attrs, kids: kids || [], textContent: text || '', style: {},
    on: {}, getAttribute(k) { return this.attrs[k]; }, setAttribute(k, v) { this.attrs[k] = String(v); },
    getElementsByTagName(t) { return this.kids.filter(k => k.tag === t); },
    addEventListener(e, f) { this.on[e] = f; } });
const gs = [];
const re = /<g class="f" data-x="([^"]+)" data-w="([^"]+)" data-d="([^"]+)"[^>]*><title>([\s\S]*?)<\/title><rect x="([^"]+)"[^>]*width="([^"]+)"[^>]*\/><text x="([^"]+)"[^>]*>([\s\S]*?)<\/text><\/g>/g;
for (let m; (m = re.exec(src));)
    gs.push(mk('g', { 'data-x': m[1], 'data-w': m[2], 'data-d': m[3] }, [mk('title', {}, [], m[4]),
        mk('rect', { x: m[5], width: m[6] }), mk('text', { x: m[7] }, [], m[8])]));
const fm = src.match(/<g id="frames" data-width="([^"]+)" data-pad="([^"]+)">/);
const els = { frames: mk('g', { 'data-width': fm[1], 'data-pad': fm[2] }, gs), details: mk('text', {}),
    reset: mk('text', {}) };
const document = { getElementById: id => els[id] };
eval(script);
hpInit({ target: { ownerDocument: document } });
const z = gs.find(g => g.hpName === process.argv[3]);
z.on.click.call(z);
const w = +z.kids[1].attrs.width, full = +fm[1];
if (Math.abs(w - full) > 0.01) throw new Error('zoomed frame is ' + w + ' wide, not ' + full);
const hidden = gs.filter(g => g.style.display === 'none').map(g => g.hpName);
if (!hidden.includes('alloc_a')) throw new Error('a frame outside the zoom is shown');
z.on.mouseover.call(z);
if (!els.details.textContent.includes('allocations')) throw new Error('hover shows ' + els.details.textContent);
els.reset.on.click();
if (gs.some(g => g.style.display === 'none' && +g.attrs['data-w'] * full >= 0.1)) throw new Error('reset');
EOF
    node zoom.js cs.svg alloc_b && ok "the script zooms, hovers and resets" || fail "the SVG's script"
fi

# ---- output files and bad input -----------------------------------------------------------------------------------
rm -f cs.svg
expect_exit 0 "flame with no -o writes beside the recording" "$HAKPROF" flame cs.hkp
[ -f cs.svg ] && grep -q "wrote cs.svg" "$tmp/err" || fail "no cs.svg beside cs.hkp"
expect_exit 2 "flame refuses to replace an existing SVG without -f" "$HAKPROF" flame cs.hkp -o cs.svg
expect_exit 0 "flame -f replaces it" "$HAKPROF" flame cs.hkp -o cs.svg -f
expect_exit 2 "flame of a missing file" "$HAKPROF" flame missing.hkp -o x.svg
expect_exit 2 "flame --by nonsense" "$HAKPROF" flame cs.hkp --by nonsense --folded
expect_exit 2 "flame --diff with one input" "$HAKPROF" flame --diff cs.hkp --folded
expect_exit 2 "flame with two inputs and no --diff" "$HAKPROF" flame cs.hkp larson.hkp --folded
expect_exit 2 "flame with an unknown option" "$HAKPROF" flame cs.hkp --bogus
grep -q "^hakprof flame: " "$tmp/err" || fail "error is not one 'hakprof flame: ...' line: $(cat "$tmp/err")"
expect_exit 0 "flame --help" "$HAKPROF" flame --help

# ---- pprof: the profile decoded from its protobuf wire format must hold exactly the folded stacks ----------------
cat >"$tmp/pprof_check.py" <<'PYEOF'
import sys
def fields(b):
    """(field, wire type, value) of a protobuf message: varints as ints, length-delimited as bytes."""
    i, out = 0, []
    def varint():
        nonlocal i
        v = s = 0
        while True:
            c = b[i]; i += 1
            v |= (c & 0x7f) << s; s += 7
            if c < 0x80:
                return v
    while i < len(b):
        key = varint(); f, w = key >> 3, key & 7
        if w == 0:
            out.append((f, w, varint()))
        elif w == 2:
            n = varint(); out.append((f, w, b[i:i + n])); i += n
        else:
            sys.exit("unexpected wire type %d" % w)
    return out
def unpack(b):
    """The values of a packed repeated varint field."""
    vals, i = [], 0
    while i < len(b):
        v = s = 0
        while True:
            c = b[i]; i += 1
            v |= (c & 0x7f) << s; s += 7
            if c < 0x80: break
        vals.append(v)
    return vals
prof = fields(open(sys.argv[1], "rb").read())
strings = [v.decode() for f, w, v in prof if f == 6]
assert strings and strings[0] == "", "string_table[0] must be empty"
stype = [dict((f, v) for f, w, v in fields(m)) for f, w, m in prof if f == 1]
assert len(stype) == 1 and strings[stype[0][1]] == sys.argv[3], "sample type %r" % (stype and strings[stype[0][1]])
funcs = {}
for f, w, m in prof:
    if f == 5:
        d = dict((g, v) for g, _, v in fields(m)); funcs[d[1]] = strings[d[2]]
locs = {}
for f, w, m in prof:
    if f == 4:
        d = fields(m); lid = [v for g, _, v in d if g == 1][0]
        line = [fields(v) for g, _, v in d if g == 4][0]
        locs[lid] = funcs[[v for g, _, v in line if g == 1][0]]
got = {}
for f, w, m in prof:
    if f == 2:
        d = fields(m)
        ids = unpack([v for g, _, v in d if g == 1][0]); vals = unpack([v for g, _, v in d if g == 2][0])
        key = ";".join(locs[x] for x in reversed(ids))
        got[key] = got.get(key, 0) + vals[0]
want = {}
for line in open(sys.argv[2]):
    k, v = line.rstrip("\n").rsplit(" ", 1); want[k] = want.get(k, 0) + int(v)
if got != want:
    sys.exit("pprof stacks differ from the folded ones: %d vs %d stacks" % (len(got), len(want)))
print("%d stacks, %d total" % (len(got), sum(got.values())))
PYEOF
for by in allocs bytes; do
    case $by in allocs) st=allocations ;; bytes) st=bytes ;; esac
    expect_exit 0 "flame --pprof --by $by" "$HAKPROF" flame --pprof --by $by -f -o "cs-$by.pb" cs.hkp
    "$HAKPROF" flame --folded --by $by cs.hkp >"cs-$by.folded"
    if out=$(python3 "$tmp/pprof_check.py" "cs-$by.pb" "cs-$by.folded" "$st" 2>&1); then
        ok "pprof --by $by decodes to exactly the folded stacks ($out)"
    else
        fail "pprof --by $by: $out"
    fi
done
expect_exit 0 "flame --pprof with no -o writes x.pb beside the recording" "$HAKPROF" flame --pprof -f cs.hkp
[ -s cs.pb ] && ok "cs.pb written" || fail "no cs.pb beside cs.hkp"
expect_exit 2 "flame --pprof --folded" "$HAKPROF" flame --pprof --folded cs.hkp
expect_exit 2 "flame --pprof --diff" "$HAKPROF" flame --pprof --diff cs.hkp larson.hkp -o d.pb

if [ "$failures" -ne 0 ]; then
    echo "prof_hakprof_flame: $failures failure(s)" >&2
    exit 1
fi
echo "prof_hakprof_flame: all passed"
