# Allocation-heavy Python workload for tests/real_python.sh: dicts, lists, strings, big ints, json, threads.
# Prints a deterministic digest per phase, so output with and without LD_PRELOAD can be compared byte for byte.
import gc
import hashlib
import json
import os
import queue
import sys
import threading

SCALE = max(1, int(os.environ.get("HAK_TEST_SCALE", "100") or 100))


def n(x):
    return max(1, x * SCALE // 100)


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def lcg(seed):
    while True:
        seed = (seed * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        yield seed


def phase_dicts():
    rnd = lcg(1)
    d = {}
    for i in range(n(200000)):
        k = "key-%d-%x" % (i % 50000, next(rnd) % 997)
        d.setdefault(k, []).append(i)
        if i % 5 == 0:
            d.pop("key-%d-%x" % ((i * 7) % 50000, next(rnd) % 997), None)
    summary = sorted((k, len(v), sum(v)) for k, v in d.items())
    return digest(summary[:1000]) + " " + str(len(summary))


def phase_strings():
    parts = []
    for i in range(n(100000)):
        s = ("abc" * (i % 50)) + str(i) + "é" * (i % 3)
        parts.append(s.upper() if i % 2 else s[::-1])
    text = "|".join(parts)
    words = text.split("|")
    counts = {}
    for w in words:
        counts[len(w)] = counts.get(len(w), 0) + 1
    b = bytearray()
    for i in range(n(20000)):
        b += i.to_bytes(4, "little") * (i % 9)
    return digest(sorted(counts.items())) + " " + hashlib.sha256(text.encode() + bytes(b)).hexdigest()[:16]


def phase_bigints():
    f = 1
    for i in range(1, n(3000)):
        f *= i
    p = pow(3, n(50000), (1 << 4099) - 1)
    fib = [0, 1]
    for _ in range(n(5000)):
        fib.append(fib[-1] + fib[-2])
    return "%x %x %d" % (f % ((1 << 61) - 1), p % ((1 << 61) - 1), fib[-1] % 1000000007)


def phase_json():
    rnd = lcg(7)
    docs = []
    for i in range(n(3000)):
        doc = {
            "id": i,
            "name": "item%d" % i,
            "tags": ["t%d" % (next(rnd) % 50) for _ in range(i % 10)],
            "nested": {"a": [i, i * 2, {"b": str(i) * (i % 20)}], "f": i / 7.0},
        }
        docs.append(doc)
    s = json.dumps(docs, sort_keys=True)
    back = json.loads(s)
    s2 = json.dumps(back, sort_keys=True, indent=1)
    return digest(len(s)) + " " + hashlib.sha256(s2.encode()).hexdigest()[:16] + " " + str(back == docs)


def worker(tid, out):
    rnd = lcg(100 + tid)
    local = {}
    lst = []
    for i in range(n(40000)):
        v = next(rnd)
        local[v % 4096] = str(v) * (1 + v % 4)
        lst.append((v % 1000, str(v % 77)))
        if len(lst) > 5000:
            lst = sorted(lst)[::2]
    out.put((tid, digest(sorted(local.items())[:500]), len(local), digest(lst[:100])))


def phase_threads():
    out = queue.Queue()
    ts = [threading.Thread(target=worker, args=(t, out)) for t in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    res = sorted(out.get() for _ in ts)
    return digest(res)


def phase_cycles():
    class Node:
        __slots__ = ("next", "payload", "__weakref__")

    for r in range(n(20)):
        nodes = [Node() for _ in range(5000)]
        for i, nd in enumerate(nodes):
            nd.next = nodes[(i * 31 + r) % len(nodes)]
            nd.payload = [i] * (i % 16)
        del nodes
        gc.collect()
    return str(gc.collect() >= 0)


def main():
    for name, fn in [("dicts", phase_dicts), ("strings", phase_strings), ("bigints", phase_bigints),
                     ("json", phase_json), ("threads", phase_threads), ("cycles", phase_cycles)]:
        print(name, fn(), flush=True)
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
