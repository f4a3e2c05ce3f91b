/* Test helper: writes a small, fully known recording with every chunk type (and an unknown one) using format.h's
 * encoder, or a variant with one deliberate defect behind a good checksum, to test the reader against. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../trace/format.h"

static uint8_t *out;
static size_t out_len, out_cap;
static uint32_t next_seq;
static uint8_t payload[1 << 20];

static void append(const void *p, size_t n)
{
    if (out_len + n > out_cap) {
        out_cap = (out_len + n) * 2;
        out = realloc(out, out_cap);
        if (!out) {
            perror("hkt_synth");
            exit(2);
        }
    }
    memcpy(out + out_len, p, n);
    out_len += n;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void file_header(uint32_t version)
{
    uint8_t h[16];
    memcpy(h, HKT_MAGIC, 8);
    put_le32(h + 8, version);
    put_le32(h + 12, 16);
    append(h, sizeof h);
}

/* A chunk of the bytes payload..end, with the next seq and a correct checksum unless crc_xor says otherwise. */
static void chunk_crc(uint32_t type, const uint8_t *end, uint32_t crc_xor)
{
    struct hkt_chunk_head h = {type, (uint32_t)(end - payload), next_seq++, 0};
    h.crc = hkt_chunk_crc(&h, payload) ^ crc_xor;
    uint8_t head[16];
    put_le32(head, h.type);
    put_le32(head + 4, h.len);
    put_le32(head + 8, h.seq);
    put_le32(head + 12, h.crc);
    append(head, sizeof head);
    append(payload, h.len);
}

static void chunk(uint32_t type, const uint8_t *end)
{
    chunk_crc(type, end, 0);
}

/* ---- The events: a running tsc and address, as the writer keeps them per chunk ---- */
static unsigned events_version = HKT_VERSION; /* 1 for the version1 variant: the old EVENTS encoding */

struct events {
    uint8_t *p;
    uint32_t tid;
    uint64_t prev_tsc, prev_addr, prev_seq;
    uint8_t *n_at; /* the count is patched in when the chunk is done: one byte wide, so at most 127 events */
    unsigned n;
};

static void events_begin(struct events *e, uint32_t tid, uint64_t base_tsc)
{
    e->p = hkt_put_u(payload, tid);
    e->tid = tid;
    e->n_at = e->p++;
    e->p = hkt_put_u(e->p, base_tsc);
    e->prev_tsc = base_tsc;
    e->prev_addr = 0;
    e->prev_seq = 0;
    e->n = 0;
}

/* An event's first bytes: kind, class and stage or path, as events_version lays them out. */
static uint8_t *put_event_head(uint8_t *p, unsigned kind, unsigned cls, unsigned how)
{
    if (events_version == 1) {
        *p++ = (uint8_t)kind;
        *p++ = (uint8_t)cls;
        *p++ = (uint8_t)how;
    } else {
        *p++ = (uint8_t)(kind | how << 2);
        *p++ = (uint8_t)cls;
    }
    return p;
}

static void ev_common(struct events *e, unsigned kind, unsigned cls, unsigned how, uint64_t tsc, uint64_t addr,
                      uint64_t size, uint32_t stack)
{
    e->p = put_event_head(e->p, kind, cls, how);
    e->p = hkt_put_s(e->p, (int64_t)(tsc - e->prev_tsc));
    e->p = hkt_put_s(e->p, (int64_t)(addr - e->prev_addr));
    e->p = hkt_put_u(e->p, size);
    e->p = hkt_put_u(e->p, stack);
    e->prev_tsc = tsc;
    e->prev_addr = addr;
    e->n++;
}

static void ev_alloc(struct events *e, unsigned cls, unsigned stage, uint64_t tsc, uint64_t addr, uint64_t size,
                     uint32_t stack, uint64_t seq)
{
    ev_common(e, HKT_EV_ALLOC, cls, stage, tsc, addr, size, stack);
    e->p = events_version == 1 ? hkt_put_u(e->p, seq) : hkt_put_s(e->p, (int64_t)(seq - e->prev_seq));
    e->prev_seq = seq;
}

static void ev_free(struct events *e, unsigned cls, unsigned path, uint64_t tsc, uint64_t addr, uint64_t size,
                    uint32_t stack, uint32_t alloc_tid, uint64_t alloc_seq, uint64_t lifetime)
{
    ev_common(e, HKT_EV_FREE, cls, path, tsc, addr, size, stack);
    e->p = events_version == 1 ? hkt_put_u(e->p, alloc_tid) : hkt_put_s(e->p, (int64_t)e->tid - (int64_t)alloc_tid);
    e->p = hkt_put_u(e->p, alloc_seq);
    e->p = hkt_put_u(e->p, lifetime);
}

static void events_end(struct events *e)
{
    *e->n_at = (uint8_t)e->n;
    chunk(HKT_CHUNK_EVENTS, e->p);
}

static void thread_chunk_n(unsigned kind, uint32_t tid, int32_t os_tid, uint64_t tsc, const char *name, size_t n)
{
    uint8_t *p = hkt_put_u(payload, kind);
    p = hkt_put_u(p, tid);
    p = hkt_put_s(p, os_tid);
    p = hkt_put_u(p, tsc);
    p = hkt_put_bytes(p, name, n);
    chunk(HKT_CHUNK_THREAD, p);
}

static void thread_chunk(unsigned kind, uint32_t tid, int32_t os_tid, uint64_t tsc, const char *name)
{
    thread_chunk_n(kind, tid, os_tid, tsc, name, strlen(name));
}

static void snapshot_chunk(uint64_t tsc, uint64_t mono_ns, unsigned n, const uint64_t *v)
{
    uint8_t *p = hkt_put_u(payload, tsc);
    p = hkt_put_u(p, mono_ns);
    p = hkt_put_u(p, n);
    for (unsigned i = 0; i < n; i++)
        p = hkt_put_u(p, v[i]);
    chunk(HKT_CHUNK_SNAPSHOT, p);
}

static void stack_entry(uint8_t **pp, uint32_t id, uint32_t depth, const uint64_t *ips)
{
    uint8_t *p = hkt_put_u(*pp, id);
    p = hkt_put_u(p, depth);
    for (uint32_t i = 0; i < depth; i++)
        p = i ? hkt_put_s(p, (int64_t)(ips[i] - ips[i - 1])) : hkt_put_u(p, ips[0]);
    *pp = p;
}

static void window_chunk(uint64_t tsc, uint64_t mono_ns, unsigned open)
{
    uint8_t *p = hkt_put_u(payload, tsc);
    p = hkt_put_u(p, mono_ns);
    p = hkt_put_u(p, open);
    chunk(HKT_CHUNK_WINDOW, p);
}

static void error_chunk(unsigned kind, uint32_t tid, uint64_t tsc, uint64_t addr, uint64_t size, uint32_t stack,
                        uint32_t alloc_stack, uint32_t alloc_tid, uint64_t alloc_seq)
{
    uint8_t *p = hkt_put_u(payload, kind);
    p = hkt_put_u(p, tid);
    p = hkt_put_u(p, tsc);
    p = hkt_put_u(p, addr);
    p = hkt_put_u(p, size);
    p = hkt_put_u(p, stack);
    p = hkt_put_u(p, alloc_stack);
    p = hkt_put_u(p, alloc_tid);
    p = hkt_put_u(p, alloc_seq);
    chunk(HKT_CHUNK_ERROR, p);
}

/* n entries; a non-zero bad_stack replaces the last entry's stack (an id no STACKS chunk defined). */
static void leaks_chunk(const struct hkt_leak *l, unsigned n, uint32_t bad_stack)
{
    uint8_t *p = hkt_put_u(payload, n);
    for (unsigned i = 0; i < n; i++) {
        p = hkt_put_u(p, bad_stack && i + 1 == n ? bad_stack : l[i].stack);
        p = hkt_put_u(p, l[i].blocks);
        p = hkt_put_u(p, l[i].bytes);
        p = hkt_put_u(p, l[i].est_blocks);
        p = hkt_put_u(p, l[i].est_bytes);
    }
    chunk(HKT_CHUNK_LEAKS, p);
}

/* Many valid events for timing the reader: batches of 4096, allocations and their frees from two threads. */
static void bulk_events(uint64_t count)
{
    uint64_t tsc = 2000000, seq = 1000;
    uint64_t rng = 88172645463325252ull;
    while (count) {
        unsigned batch = count < 4096 ? (unsigned)count : 4096;
        uint8_t *p = hkt_put_u(payload, 1);
        p = hkt_put_u(p, batch);
        p = hkt_put_u(p, tsc);
        uint64_t prev_tsc = tsc, prev_addr = 0, prev_seq = 0;
        for (unsigned i = 0; i < batch; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int is_free = i & 1;
            uint64_t addr = 0x7f0000000000ull + ((rng >> 20) & 0xffffff) * 16;
            uint64_t size = 16 + (rng & 255);
            tsc += 1 + (rng >> 56);
            unsigned kind = is_free ? HKT_EV_FREE : HKT_EV_ALLOC;
            unsigned how = (unsigned)(is_free ? rng % HKT_NPATHS : rng % HKT_NSTAGES);
            p = put_event_head(p, kind, (unsigned)(1 + (size >> 4)), how);
            p = hkt_put_s(p, (int64_t)(tsc - prev_tsc));
            p = hkt_put_s(p, (int64_t)(addr - prev_addr));
            p = hkt_put_u(p, size);
            p = hkt_put_u(p, 1 + rng % 4);
            if (is_free) {
                uint32_t alloc_tid = 1 + (unsigned)(rng & 1);
                p = events_version == 1 ? hkt_put_u(p, alloc_tid) : hkt_put_s(p, 1 - (int64_t)alloc_tid);
                p = hkt_put_u(p, seq - 1);
                p = hkt_put_u(p, rng & 0xffff);
            } else {
                p = events_version == 1 ? hkt_put_u(p, seq) : hkt_put_s(p, (int64_t)(seq - prev_seq));
                prev_seq = seq++;
            }
            prev_tsc = tsc;
            prev_addr = addr;
        }
        chunk(HKT_CHUNK_EVENTS, p);
        count -= batch;
    }
}

static int is(const char *variant, const char *name)
{
    return !strcmp(variant, name);
}

static void synth(const char *v, uint64_t extra_events)
{
    uint8_t *p;
    events_version = is(v, "version1") ? 1 : HKT_VERSION;
    file_header(is(v, "version7") ? 7 : events_version);

    /* HEADER */
    p = hkt_put_s(payload, 4242);
    p = hkt_put_s(p, -1);
    p = hkt_put_u(p, 1700000000123456789ull);
    p = hkt_put_u(p, 5000000000ull);
    p = hkt_put_u(p, 1000000);
    p = hkt_put_u(p, 3000000000ull);
    p = hkt_put_u(p, HKT_SAMPLE_ALL);
    p = hkt_put_u(p, 1);
    p = hkt_put_u(p, 7);
    p = hkt_put_u(p, 32);
    p = hkt_put_u(p, 100);
    p = hkt_put_str(p, "synth --all \"quoted\" \\ \x01");
    p = hkt_put_str(p, "/usr/bin/synth");
    p = hkt_put_str(p, "HAKMEM_RECORD=x.hkp\nHAKMEM_SAMPLE=all\n");
    p = hkt_put_str(p, "0123abcd");
    p = hkt_put_str(p, "/opt/hakmem/lib/libhakmem_prof.so");
    chunk(HKT_CHUNK_HEADER, p);
    if (is(v, "second-header"))
        chunk(HKT_CHUNK_HEADER, p);

    /* COUNTER_DEFS: 3 counters over 6 values */
    p = hkt_put_u(payload, 3);
    p = hkt_put_u(p, 6);
    p = hkt_put_u(p, 0), p = hkt_put_u(p, 1), p = hkt_put_u(p, 0);
    p = hkt_put_str(p, "alloc_calls"), p = hkt_put_str(p, "api"), p = hkt_put_str(p, "calls of malloc");
    p = hkt_put_u(p, 1), p = hkt_put_u(p, 4), p = hkt_put_u(p, 1);
    p = hkt_put_str(p, "refill_tls_sll"), p = hkt_put_str(p, "refill"), p = hkt_put_str(p, "tls_sll hits");
    p = hkt_put_u(p, 5), p = hkt_put_u(p, 1), p = hkt_put_u(p, 3);
    p = hkt_put_str(p, "threads_live"), p = hkt_put_str(p, "thread"), p = hkt_put_str(p, "");
    chunk(HKT_CHUNK_COUNTER_DEFS, p);

    /* MODULES generation 1: the main program and libc */
    p = hkt_put_u(payload, 1);
    p = hkt_put_u(p, 2);
    p = hkt_put_u(p, 0x555555554000ull), p = hkt_put_u(p, 0x555555554000ull), p = hkt_put_u(p, 0x555555559fffull);
    p = hkt_put_str(p, ""), p = hkt_put_str(p, "feedbeef");
    p = hkt_put_u(p, 0x7ffff7c00000ull), p = hkt_put_u(p, 0x7ffff7c28000ull), p = hkt_put_u(p, 0x7ffff7e1ffffull);
    p = hkt_put_str(p, "/lib/x86_64-linux-gnu/libc.so.6"), p = hkt_put_str(p, "");
    chunk(HKT_CHUNK_MODULES, p);

    /* STACKS 1..3: deltas both ways, and an empty stack */
    static const uint64_t s1[] = {0x555555555123ull, 0x555555555f00ull, 0x7ffff7c29d90ull};
    static const uint64_t s3[] = {0x7ffff7c30000ull, 0x555555555000ull};
    p = hkt_put_u(payload, 3);
    stack_entry(&p, 1, 3, s1);
    stack_entry(&p, 2, 0, NULL);
    stack_entry(&p, 3, 2, s3);
    chunk(HKT_CHUNK_STACKS, p);
    if (is(v, "deep-stack") || is(v, "dup-stack")) {
        static uint64_t deep[1025];
        for (int i = 0; i < 1025; i++)
            deep[i] = 0x555555555000ull + 16u * (unsigned)i;
        p = hkt_put_u(payload, 1);
        if (is(v, "deep-stack"))
            stack_entry(&p, 9, 1025, deep);
        else
            stack_entry(&p, 1, 1, deep);
        chunk(HKT_CHUNK_STACKS, p);
    }

    thread_chunk(HKT_THREAD_START, 1, 4242, 1000100, "main");

    /* EVENTS of thread 1: an allocation from every refill stage, then a same-thread free */
    struct events e;
    events_begin(&e, 1, 1000200);
    uint64_t addr = 0x7f0000001000ull;
    for (unsigned stage = 0; stage < HKT_NSTAGES; stage++) {
        int large = stage == HKT_STAGE_LARGE;
        uint64_t a = large ? 0x7e0000000000ull : addr + 32u * stage;
        ev_alloc(&e, large ? 255 : 1 + stage, stage, 1000210 + 5u * stage, a, large ? 1048576 : 24 + stage,
                 stage % 4, 1 + stage);
    }
    ev_free(&e, 1, HKT_PATH_TLS_SLL, 1000300, addr, 24, 0, 1, 1, 90);
    if (is(v, "bad-kind"))
        ev_common(&e, 3, 1, 0, 1000301, addr, 24, 0), e.p = hkt_put_u(e.p, 11);
    if (is(v, "bad-stage"))
        ev_alloc(&e, 1, HKT_NSTAGES, 1000301, addr, 24, 1, 11);
    if (is(v, "undefined-stack"))
        ev_alloc(&e, 1, 0, 1000301, addr, 24, 99, 11);
    events_end(&e);
    if (is(v, "huge-count")) {
        p = hkt_put_u(payload, 1);
        p = hkt_put_u(p, 1ull << 40);
        p = hkt_put_u(p, 0);
        chunk(HKT_CHUNK_EVENTS, p);
    }

    thread_chunk(HKT_THREAD_START, 2, 4243, 1000400, "");
    static const uint64_t s4[] = {0x555555555200ull};
    p = hkt_put_u(payload, 1);
    stack_entry(&p, 4, 1, s4);
    chunk(HKT_CHUNK_STACKS, p);
    if (is(v, "seq-gap"))
        next_seq++;

    /* EVENTS of thread 2: its own allocation, then cross-thread frees of thread 1's blocks */
    events_begin(&e, 2, 1000500);
    ev_alloc(&e, 2, HKT_STAGE_REMOTE_DRAIN, 1000500, 0x7f0000200000ull, 40, 4, 1);
    ev_free(&e, 2, HKT_PATH_SS_REMOTE, 1000600, addr + 32, 25, 1, 1, 2, 385);
    ev_free(&e, 255, HKT_PATH_LARGE, 1000610, 0x7e0000000000ull, 1048576, 0, 1, 9, 360);
    ev_free(&e, 2, HKT_PATH_SS_LOCAL, 1000620, 0x7f0000200000ull, 40, 4, 2, 1, 120);
    events_end(&e);

    static const uint64_t values1[] = {10, 1, 2, 3, 4, 2};
    snapshot_chunk(1000700, 5000233333ull, is(v, "snapshot-width") ? 5 : 6, values1);

    /* A chunk type from a newer writer: skipped; its checksum still counts */
    memcpy(payload, "future", 6);
    chunk_crc(42, payload + 6, is(v, "unknown-bad-crc") ? 1 : 0);
    if (is(v, "type0")) {
        chunk(0, payload);
    }

    events_begin(&e, 1, 0);
    events_end(&e);

    p = hkt_put_u(payload, 2);
    p = hkt_put_u(p, 7);
    chunk(HKT_CHUNK_LOST, p);

    if (is(v, "nul-string"))
        thread_chunk_n(HKT_THREAD_NAME, 2, 4243, 1000800, "wo\0k", 4);
    else
        thread_chunk(HKT_THREAD_NAME, 2, 4243, 1000800, "worker-1");
    if (is(v, "trailing-bytes")) {
        p = hkt_put_u(payload, 2);
        p = hkt_put_u(p, 1);
        *p++ = 0;
        chunk(HKT_CHUNK_LOST, p);
    }

    p = hkt_put_u(payload, 2);
    p = hkt_put_u(p, 2);
    p = hkt_put_u(p, 0x7ffff7a00000ull), p = hkt_put_u(p, 0x7ffff7a01000ull), p = hkt_put_u(p, 0x7ffff7a04fffull);
    p = hkt_put_str(p, "/usr/lib/libfoo.so.1"), p = hkt_put_str(p, "");
    p = hkt_put_u(p, 0), p = hkt_put_u(p, 0x10000), p = hkt_put_u(p, 0x10000);
    p = hkt_put_str(p, "[vdso]"), p = hkt_put_str(p, "aa");
    chunk(HKT_CHUNK_MODULES, p);

    thread_chunk(HKT_THREAD_EXIT, 2, 4243, 1000900, "");

    /* The window closed and opened again (HAKMEM_RECORD_SIGNAL) */
    window_chunk(1000910, 5000300000ull, 0);
    window_chunk(1000920, 5000310000ull, is(v, "bad-window") ? 2 : 1);

    /* Heap errors: the free call's stack 5 is new; every kind once, with and without a sampled allocation */
    static const uint64_t s5[] = {0x555555555300ull, 0x555555555f00ull};
    p = hkt_put_u(payload, 1);
    stack_entry(&p, 5, 2, s5);
    chunk(HKT_CHUNK_STACKS, p);
    error_chunk(HKT_ERR_DOUBLE_FREE, 2, 1000930, addr + 32, 25, 5, 1, 1, 2);
    error_chunk(HKT_ERR_FOREIGN, 1, 1000931, 0x7ffffffde000ull, 0, 5, 0, 0, 0);
    error_chunk(HKT_ERR_INTERIOR, 1, 1000932, addr + 0x68, 0, 4, 0, 0, 0);
    error_chunk(HKT_ERR_OVERFLOW, 1, 1000933, addr + 0x80, 28, 5, 0, 1, 5);
    error_chunk(HKT_ERR_USE_AFTER_FREE, 2, 1000934, 0x7f0000200000ull, 40, 0, 4, 2, 1);
    if (is(v, "bad-error-kind"))
        error_chunk(HKT_NERRORS, 1, 1000935, addr, 24, 5, 0, 0, 0);
    if (is(v, "error-undefined-stack"))
        error_chunk(HKT_ERR_DOUBLE_FREE, 1, 1000935, addr, 24, 5, 99, 1, 1);
    if (extra_events)
        bulk_events(extra_events);
    static const uint64_t values2[] = {20, 5, 6, 7, 8, 1};
    snapshot_chunk(1001000, 5000333333ull, 6, values2);
    if (is(v, "no-end"))
        return;

    /* LEAKS just before END: the blocks of stacks 0 and 3 never freed, and one entry with large values */
    static const struct hkt_leak leaks[] = {
        {3, 2, 54, 2, 54}, {0, 1, 28, 1, 28}, {4, 1000000, 1ull << 40, 1000000, 1ull << 41},
    };
    leaks_chunk(leaks, 3, is(v, "leak-undefined-stack") ? 98 : 0);
    if (is(v, "second-leaks"))
        leaks_chunk(leaks, 1, 0);

    p = hkt_put_u(payload, 1001100);
    p = hkt_put_u(p, 5000366666ull);
    p = hkt_put_u(p, 1700000000123456789ull + 366666);
    p = hkt_put_u(p, 14 + extra_events);
    p = hkt_put_u(p, 7);
    p = hkt_put_u(p, HKT_END_EXIT);
    p = hkt_put_u(p, 0);
    chunk(HKT_CHUNK_END, p);
    if (is(v, "after-end")) {
        thread_chunk(HKT_THREAD_EXIT, 1, 4242, 1001200, "");
    }
    if (is(v, "garbage-after-end"))
        append("\0\0\0", 3);
}

static const char *const variants[] = {
    "ok",          "version7",       "second-header", "deep-stack",     "dup-stack",  "bad-kind",
    "bad-stage",   "undefined-stack", "huge-count",   "seq-gap",        "snapshot-width", "unknown-bad-crc",
    "type0",       "nul-string",     "trailing-bytes", "no-end",        "after-end",  "garbage-after-end",
    "bad-window",  "bad-error-kind", "error-undefined-stack", "leak-undefined-stack", "second-leaks",
    "version1",
};

int main(int argc, char **argv)
{
    const char *variant = "ok", *path = NULL;
    uint64_t extra = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--variant") && i + 1 < argc)
            variant = argv[++i];
        else if (!strcmp(argv[i], "--events") && i + 1 < argc)
            extra = strtoull(argv[++i], NULL, 0);
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else
            path = NULL, i = argc;
    }
    int known = 0;
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        known |= is(variant, variants[i]);
    if (!path || !known) {
        fprintf(stderr, "usage: hkt_synth [--variant V] [--events N] OUT\nvariants:");
        for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
            fprintf(stderr, " %s", variants[i]);
        fputc('\n', stderr);
        return 2;
    }
    synth(variant, extra);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(out, 1, out_len, f) != out_len || fclose(f) != 0) {
        perror(path);
        return 2;
    }
    free(out);
    return 0;
}
