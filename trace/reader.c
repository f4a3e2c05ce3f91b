/* The recording reader: maps a recording read-only, checks every chunk (length, CRC-32C, sequence number, payload)
 * and hands its records out one at a time. docs/format.md is the layout; trace/trace.h the face. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "format.h"
#include "trace.h"

#define FILE_HEADER_SIZE 16
#define CHUNK_HEAD_SIZE 16
/* Deeper stacks than any writer setting allows (HKT_MAX_STACK_DEPTH) are still read, up to this. */
#define MAX_STACK_DEPTH 1024
/* Stack ids are dense (1, 2, ...); the defined-id bitmap is bounded so a bad id cannot ask for gigabytes. */
#define MAX_STACK_ID (1u << 28)
/* The fewest payload bytes an entry can take: bounds an entry count before anything is allocated for it. */
#define MIN_EVENT_BYTES 7  /* alloc: kind and stage, cls and five one-byte varints (version 2; 8 in 1) */
#define MIN_STACK_BYTES 2  /* id, depth 0 */
#define MIN_MODULE_BYTES 5 /* base, lo, hi, two empty strings */
#define MIN_DEF_BYTES 6    /* first, width, kind, three empty strings */
#define MIN_LEAK_BYTES 5   /* stack, blocks, bytes, est_blocks, est_bytes */

/* An EVENTS entry, decoded: 72 bytes where a struct hkt_record takes 128, so a large chunk touches less memory. */
struct event {
    enum hkt_rec_type type;
    union {
        struct hkt_alloc alloc;
        struct hkt_free free;
    } u;
};

struct hkt_reader {
    uint32_t version; /* the file's format version (EVENTS changed in 2) */
    char *path;
    const uint8_t *map;
    uint64_t size;
    uint64_t off;      /* where the next chunk starts */
    uint32_t next_seq; /* the seq the next chunk must carry: also the number of chunks read */
    int state;         /* 1 while reading, then 0 (end of file) or -1 (damage) for good */
    int complete;      /* END was read */
    int oom;           /* a scratch array could not grow: the reader stops */
    char err[4352];    /* room for a path as long as PATH_MAX */
    char detail[160];  /* what a malformed payload got wrong, for the error line */

    /* The chunk whose records are being handed out: count decoded entries, pos of them returned. */
    uint64_t chunk_off;
    uint32_t chunk_type;
    size_t pos, count;
    struct hkt_record one; /* the record of a chunk that holds exactly one */

    /* Scratch, reused by every chunk of its type, grown with realloc, freed by hkt_close. */
    struct event *events;
    size_t events_cap;
    struct hkt_stack *stacks;
    size_t stacks_cap;
    size_t *ip_start; /* index of each stack's first ip in ips: ips may move while the chunk is decoded */
    size_t ip_start_cap;
    uint64_t *ips;
    size_t ips_cap;
    struct hkt_module *modules;
    size_t modules_cap;
    struct hkt_counter_def *defs;
    size_t defs_cap;
    struct hkt_leak *leaks;
    size_t leaks_cap;
    uint64_t *values;
    size_t values_cap;
    char *strs; /* NUL-terminated copies of a chunk's strings; sized before decoding so it never moves */
    size_t strs_cap;

    struct hkt_header header; /* its strings live in header_strs for the reader's lifetime */
    char *header_strs;
    int have_header;

    /* What later chunks are checked against. */
    int have_defs;
    uint32_t defs_nvalues;
    int have_modules;
    uint32_t modules_generation;
    uint8_t *stack_defined; /* bit per stack id defined so far */
    size_t stack_defined_len;
    int have_leaks;         /* a LEAKS chunk was read (it may hold no entry: nothing was live) */
};

static const char *chunk_type_name(uint32_t type)
{
    static const char *const names[] = {
        [HKT_CHUNK_HEADER] = "HEADER", [HKT_CHUNK_COUNTER_DEFS] = "COUNTER_DEFS", [HKT_CHUNK_MODULES] = "MODULES",
        [HKT_CHUNK_STACKS] = "STACKS", [HKT_CHUNK_EVENTS] = "EVENTS",             [HKT_CHUNK_SNAPSHOT] = "SNAPSHOT",
        [HKT_CHUNK_THREAD] = "THREAD", [HKT_CHUNK_LOST] = "LOST",                 [HKT_CHUNK_END] = "END",
        [HKT_CHUNK_WINDOW] = "WINDOW", [HKT_CHUNK_ERROR] = "ERROR",               [HKT_CHUNK_LEAKS] = "LEAKS",
    };
    return type >= 1 && type <= HKT_CHUNK_MAX_TYPE ? names[type] : "unknown type";
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Damage: the reader stops for good, with "FILE: byte N: what" as its error. */
__attribute__((format(printf, 3, 4))) static int fail(struct hkt_reader *r, uint64_t at, const char *fmt, ...)
{
    int n = snprintf(r->err, sizeof r->err, "%s: byte %" PRIu64 ": ", r->path, at);
    if (n >= 0 && (size_t)n < sizeof r->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err + n, sizeof r->err - (size_t)n, fmt, ap);
        va_end(ap);
    }
    r->state = -1;
    r->count = r->pos = 0;
    return -1;
}

__attribute__((format(printf, 2, 3))) static const char *detail(struct hkt_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
    return r->detail;
}

/* The array arr with room for need elements of size elem (doubling, so refills are rare). When memory runs out it
 * returns arr unchanged and sets r->oom. */
static void *grow(struct hkt_reader *r, void *arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return arr;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    void *q = n > SIZE_MAX / elem ? NULL : realloc(arr, n * elem);
    if (!q) {
        r->oom = 1;
        return arr;
    }
    *cap = n;
    return q;
}
/* 0 when arr has room for need elements, -1 when memory ran out. */
#define RESERVE(r, arr, cap, need) ((arr) = grow((r), (arr), &(cap), (need), sizeof *(arr)), (r)->oom ? -1 : 0)

/* ---- Field decoding: on top of format.h's cursor, fields that must fit their record member ---- */
/* hkt_get_u checks the bound at every byte. Far from the end of the payload no varint can run past it, so this
 * takes the same value without those checks (an event has seven varints: this is most of the decoding time). */
static inline uint64_t get_u(struct hkt_cursor *c)
{
    const uint8_t *p = c->p;
    if (__builtin_expect(c->end - p < HKT_VARINT_MAX, 0))
        return hkt_get_u(c);
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            c->p = p;
            return v;
        }
    }
    return hkt_get_u(c); /* too long: hkt_get_u turns the cursor bad */
}

static inline int64_t get_s(struct hkt_cursor *c)
{
    uint64_t u = get_u(c);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static uint32_t get_u32(struct hkt_cursor *c)
{
    uint64_t v = get_u(c);
    if (v > UINT32_MAX)
        c->ok = 0;
    return (uint32_t)v;
}

static int32_t get_s32(struct hkt_cursor *c)
{
    int64_t v = get_s(c);
    if (v < INT32_MIN || v > INT32_MAX)
        c->ok = 0;
    return (int32_t)v;
}

static uint64_t left(const struct hkt_cursor *c)
{
    return (uint64_t)(c->end - c->p);
}

/* A string copied NUL-terminated to *dst, which the caller sized: a string never takes more bytes there than it
 * took in the payload (its length prefix pays for the NUL). An embedded NUL is damage: C strings would cut it. */
static const char *get_str(struct hkt_cursor *c, char **dst)
{
    size_t n;
    const uint8_t *s = hkt_get_bytes(c, &n);
    if (!s || memchr(s, 0, n)) {
        c->ok = 0;
        return "";
    }
    char *d = *dst;
    memcpy(d, s, n);
    d[n] = 0;
    *dst = d + n + 1;
    return d;
}

/* Room for every string of a payload of len bytes, in the chunk string arena. */
static int reserve_strs(struct hkt_reader *r, size_t len)
{
    return RESERVE(r, r->strs, r->strs_cap, (size_t)len + 1);
}

static int stack_is_defined(const struct hkt_reader *r, uint32_t id)
{
    return (size_t)(id >> 3) < r->stack_defined_len && (r->stack_defined[id >> 3] >> (id & 7) & 1);
}

/* ---- Payload decoders: NULL when the payload is good, else what is wrong with it ---- */
#define OOM ((const char *)1) /* not the payload's fault */
static const char FIELD_BAD[] = "a field is cut short, too large, or a string holds a NUL byte";

static const char *decode_header(struct hkt_reader *r, struct hkt_cursor *c, uint32_t len)
{
    if (r->have_header)
        return "a second HEADER chunk";
    if (r->next_seq != 0)
        return "HEADER is not the first chunk";
    char *strs = malloc((size_t)len + 1);
    if (!strs)
        return OOM;
    char *dst = strs;
    struct hkt_header *h = &r->header;
    h->pid = get_s32(c);
    h->ppid = get_s32(c);
    h->start_realtime_ns = get_u(c);
    h->start_mono_ns = get_u(c);
    h->start_tsc = get_u(c);
    h->tsc_per_sec = get_u(c);
    h->sample_mode = get_u32(c);
    h->sample_period = get_u(c);
    h->sample_seed = get_u(c);
    h->stack_depth = get_u32(c);
    h->snapshot_ms = get_u32(c);
    h->cmdline = get_str(c, &dst);
    h->exe = get_str(c, &dst);
    h->settings = get_str(c, &dst);
    h->build_id = get_str(c, &dst);
    h->lib_path = get_str(c, &dst);
    if (!c->ok || h->sample_mode > HKT_SAMPLE_BYTES) {
        free(strs);
        memset(h, 0, sizeof *h);
        return !c->ok ? FIELD_BAD : detail(r, "sample mode %u", h->sample_mode);
    }
    r->header_strs = strs;
    r->have_header = 1;
    r->one.type = HKT_REC_HEADER;
    r->one.u.header = *h;
    r->count = 1;
    return NULL;
}

static const char *decode_counter_defs(struct hkt_reader *r, struct hkt_cursor *c, uint32_t len)
{
    if (r->have_defs)
        return "a second COUNTER_DEFS chunk";
    uint64_t n = get_u(c);
    uint32_t nvalues = get_u32(c);
    if (!c->ok)
        return "the counts are cut short";
    if (n > left(c) / MIN_DEF_BYTES)
        return detail(r, "%" PRIu64 " counters cannot fit in %" PRIu64 " bytes", n, left(c));
    if (RESERVE(r, r->defs, r->defs_cap, n) || reserve_strs(r, len))
        return OOM;
    char *dst = r->strs;
    for (uint64_t i = 0; i < n; i++) {
        struct hkt_counter_def *d = &r->defs[i];
        d->index = (uint32_t)i;
        d->first = get_u32(c);
        d->width = get_u32(c);
        d->kind = get_u32(c);
        d->name = get_str(c, &dst);
        d->group = get_str(c, &dst);
        d->meaning = get_str(c, &dst);
        if (!c->ok)
            return detail(r, "counter %" PRIu64 " is cut short or has a bad field", i);
        if (d->kind > 3)
            return detail(r, "counter %" PRIu64 " has kind %u", i, d->kind);
        if ((uint64_t)d->first + d->width > nvalues)
            return detail(r, "counter %" PRIu64 " (values %u..+%u) lies outside the %u values", i, d->first,
                          d->width, nvalues);
    }
    r->have_defs = 1;
    r->defs_nvalues = nvalues;
    r->count = (size_t)n;
    return NULL;
}

static const char *decode_modules(struct hkt_reader *r, struct hkt_cursor *c, uint32_t len)
{
    uint32_t generation = get_u32(c);
    uint64_t n = get_u(c);
    if (!c->ok)
        return "the generation or count is cut short";
    if (r->have_modules && generation <= r->modules_generation)
        return detail(r, "generation %u after generation %u", generation, r->modules_generation);
    if (n > left(c) / MIN_MODULE_BYTES)
        return detail(r, "%" PRIu64 " modules cannot fit in %" PRIu64 " bytes", n, left(c));
    if (RESERVE(r, r->modules, r->modules_cap, n) || reserve_strs(r, len))
        return OOM;
    char *dst = r->strs;
    for (uint64_t i = 0; i < n; i++) {
        struct hkt_module *m = &r->modules[i];
        m->generation = generation;
        m->base = get_u(c);
        m->lo = get_u(c);
        m->hi = get_u(c);
        m->path = get_str(c, &dst);
        m->build_id = get_str(c, &dst);
        if (!c->ok)
            return detail(r, "module %" PRIu64 " is cut short or has a bad field", i);
        if (m->lo > m->hi)
            return detail(r, "module %" PRIu64 " ends before it starts", i);
    }
    r->have_modules = 1;
    r->modules_generation = generation;
    r->count = (size_t)n;
    return NULL;
}

static const char *decode_stacks(struct hkt_reader *r, struct hkt_cursor *c)
{
    uint64_t n = get_u(c);
    if (!c->ok)
        return "the count is cut short";
    if (n > left(c) / MIN_STACK_BYTES)
        return detail(r, "%" PRIu64 " stacks cannot fit in %" PRIu64 " bytes", n, left(c));
    if (RESERVE(r, r->stacks, r->stacks_cap, n) ||
        RESERVE(r, r->ip_start, r->ip_start_cap, n))
        return OOM;
    size_t nips = 0;
    for (uint64_t i = 0; i < n; i++) {
        struct hkt_stack *s = &r->stacks[i];
        s->id = get_u32(c);
        s->depth = get_u32(c);
        if (!c->ok)
            return detail(r, "stack %" PRIu64 " is cut short", i);
        if (s->id == 0 || s->id >= MAX_STACK_ID)
            return detail(r, "stack id %u", s->id);
        if (stack_is_defined(r, s->id))
            return detail(r, "stack id %u defined twice", s->id);
        if (s->depth > MAX_STACK_DEPTH)
            return detail(r, "stack %u is %u frames deep (at most %u)", s->id, s->depth, MAX_STACK_DEPTH);
        /* Every ip takes at least a byte: a depth the payload cannot hold is refused before room is made. */
        if (s->depth > left(c))
            return detail(r, "stack %u is cut short", s->id);
        if (RESERVE(r, r->ips, r->ips_cap, nips + s->depth))
            return OOM;
        r->ip_start[i] = nips;
        if (s->depth) {
            uint64_t ip = get_u(c);
            r->ips[nips++] = ip;
            for (uint32_t k = 1; k < s->depth; k++) {
                ip += (uint64_t)get_s(c);
                r->ips[nips++] = ip;
            }
            if (!c->ok)
                return detail(r, "stack %u is cut short", s->id);
        }
        size_t byte = s->id >> 3;
        if (byte >= r->stack_defined_len) {
            size_t old = r->stack_defined_len;
            if (RESERVE(r, r->stack_defined, r->stack_defined_len, byte + 1))
                return OOM;
            memset(r->stack_defined + old, 0, r->stack_defined_len - old);
        }
        r->stack_defined[byte] |= (uint8_t)(1u << (s->id & 7));
    }
    for (uint64_t i = 0; i < n; i++)
        r->stacks[i].ips = r->ips + r->ip_start[i];
    r->count = (size_t)n;
    return NULL;
}

static const char *decode_events(struct hkt_reader *r, struct hkt_cursor *c)
{
    uint32_t tid = get_u32(c);
    uint64_t n = get_u(c);
    uint64_t tsc = get_u(c), addr = 0, seq = 0;
    int v1 = r->version < 2;
    if (!c->ok)
        return "the tid, count or base tsc is cut short";
    if (n > left(c) / MIN_EVENT_BYTES)
        return detail(r, "%" PRIu64 " events cannot fit in %" PRIu64 " bytes", n, left(c));
    if (RESERVE(r, r->events, r->events_cap, n))
        return OOM;
    for (uint64_t i = 0; i < n; i++) {
        struct event *e = &r->events[i];
        /* Version 1: kind, cls, stage or path, a byte each; 2: kind | stage or path << 2, then cls. */
        unsigned kind = hkt_get_byte(c), cls = hkt_get_byte(c), how;
        if (v1) {
            how = hkt_get_byte(c);
        } else {
            how = kind >> 2;
            kind &= 3;
        }
        /* Deltas wrap: an address or tsc below the previous one is stored as a negative delta. */
        tsc += (uint64_t)get_s(c);
        addr += (uint64_t)get_s(c);
        uint64_t size = get_u(c);
        uint32_t stack = get_u32(c);
        if (kind == HKT_EV_ALLOC) {
            e->type = HKT_REC_ALLOC;
            seq = v1 ? get_u(c) : seq + (uint64_t)get_s(c);
            e->u.alloc = (struct hkt_alloc){.tid = tid, .seq = seq, .tsc = tsc, .addr = addr, .size = size,
                                            .cls = cls, .stage = how, .stack = stack};
            if (how >= HKT_NSTAGES && c->ok)
                return detail(r, "event %" PRIu64 ": refill stage %u", i, how);
        } else if (kind == HKT_EV_FREE) {
            e->type = HKT_REC_FREE;
            struct hkt_free *f = &e->u.free;
            f->tid = tid;
            if (v1) {
                f->alloc_tid = get_u32(c);
            } else { /* stored as the chunk's tid minus it */
                uint64_t at = (uint64_t)tid - (uint64_t)get_s(c);
                if (at > UINT32_MAX && c->ok)
                    return detail(r, "event %" PRIu64 ": allocating thread %" PRIu64 " out of range", i, at);
                f->alloc_tid = (uint32_t)at;
            }
            f->alloc_seq = get_u(c);
            f->lifetime = get_u(c);
            f->tsc = tsc;
            f->addr = addr;
            f->size = size;
            f->cls = cls;
            f->path = how;
            f->stack = stack;
            if (how >= HKT_NPATHS && c->ok)
                return detail(r, "event %" PRIu64 ": free path %u", i, how);
        } else if (c->ok) {
            return detail(r, "event %" PRIu64 " has kind %u", i, kind);
        }
        if (!c->ok)
            return detail(r, "event %" PRIu64 " is cut short", i);
        if (stack && !stack_is_defined(r, stack))
            return detail(r, "event %" PRIu64 " refers to stack %u, which no earlier STACKS chunk defined", i,
                          stack);
    }
    r->count = (size_t)n;
    return NULL;
}

static const char *decode_snapshot(struct hkt_reader *r, struct hkt_cursor *c)
{
    struct hkt_snapshot *s = &r->one.u.snapshot;
    s->tsc = get_u(c);
    s->mono_ns = get_u(c);
    s->nvalues = get_u32(c);
    if (!c->ok)
        return "the tsc, time or count is cut short";
    if (!r->have_defs)
        return "a SNAPSHOT before the COUNTER_DEFS chunk";
    if (s->nvalues != r->defs_nvalues)
        return detail(r, "%u values where COUNTER_DEFS has %u", s->nvalues, r->defs_nvalues);
    if (s->nvalues > left(c))
        return detail(r, "%u values cannot fit in %" PRIu64 " bytes", s->nvalues, left(c));
    if (RESERVE(r, r->values, r->values_cap, s->nvalues))
        return OOM;
    for (uint32_t i = 0; i < s->nvalues; i++)
        r->values[i] = get_u(c);
    if (!c->ok)
        return "the values are cut short";
    s->values = r->values;
    r->one.type = HKT_REC_SNAPSHOT;
    r->count = 1;
    return NULL;
}

static const char *decode_thread(struct hkt_reader *r, struct hkt_cursor *c, uint32_t len)
{
    if (reserve_strs(r, len))
        return OOM;
    char *dst = r->strs;
    struct hkt_thread *t = &r->one.u.thread;
    t->kind = get_u32(c);
    t->tid = get_u32(c);
    t->os_tid = get_s32(c);
    t->tsc = get_u(c);
    t->name = get_str(c, &dst);
    if (!c->ok)
        return FIELD_BAD;
    if (t->kind < HKT_THREAD_START || t->kind > HKT_THREAD_NAME)
        return detail(r, "thread event kind %u", t->kind);
    r->one.type = HKT_REC_THREAD;
    r->count = 1;
    return NULL;
}

static const char *decode_lost(struct hkt_reader *r, struct hkt_cursor *c)
{
    struct hkt_lost *l = &r->one.u.lost;
    l->tid = get_u32(c);
    l->events = get_u(c);
    if (!c->ok)
        return FIELD_BAD;
    r->one.type = HKT_REC_LOST;
    r->count = 1;
    return NULL;
}

static const char *decode_end(struct hkt_reader *r, struct hkt_cursor *c)
{
    struct hkt_end *e = &r->one.u.end;
    e->tsc = get_u(c);
    e->mono_ns = get_u(c);
    e->realtime_ns = get_u(c);
    e->events = get_u(c);
    e->lost = get_u(c);
    e->reason = get_u32(c);
    e->signo = get_u32(c);
    if (!c->ok)
        return FIELD_BAD;
    if (e->reason > HKT_END_FORK_EXEC)
        return detail(r, "end reason %u", e->reason);
    r->one.type = HKT_REC_END;
    r->count = 1;
    return NULL;
}

static const char *decode_window(struct hkt_reader *r, struct hkt_cursor *c)
{
    struct hkt_window *w = &r->one.u.window;
    w->tsc = get_u(c);
    w->mono_ns = get_u(c);
    w->open = get_u32(c);
    if (!c->ok)
        return FIELD_BAD;
    if (w->open > 1)
        return detail(r, "open is %u (0 or 1)", w->open);
    r->one.type = HKT_REC_WINDOW;
    r->count = 1;
    return NULL;
}

static const char *decode_error(struct hkt_reader *r, struct hkt_cursor *c)
{
    struct hkt_error *e = &r->one.u.error;
    e->kind = get_u32(c);
    e->tid = get_u32(c);
    e->tsc = get_u(c);
    e->addr = get_u(c);
    e->size = get_u(c);
    e->stack = get_u32(c);
    e->alloc_stack = get_u32(c);
    e->alloc_tid = get_u32(c);
    e->alloc_seq = get_u(c);
    if (!c->ok)
        return FIELD_BAD;
    /* A kind this reader has no name for is refused like an unknown event kind: a newer writer that adds kinds
     * bumps the format version. */
    if (e->kind < HKT_ERR_DOUBLE_FREE || e->kind >= HKT_NERRORS)
        return detail(r, "error kind %u", e->kind);
    if (e->stack && !stack_is_defined(r, e->stack))
        return detail(r, "the error refers to stack %u, which no earlier STACKS chunk defined", e->stack);
    if (e->alloc_stack && !stack_is_defined(r, e->alloc_stack))
        return detail(r, "the error's allocation refers to stack %u, which no earlier STACKS chunk defined",
                      e->alloc_stack);
    r->one.type = HKT_REC_ERROR;
    r->count = 1;
    return NULL;
}

static const char *decode_leaks(struct hkt_reader *r, struct hkt_cursor *c)
{
    if (r->have_leaks)
        return "a second LEAKS chunk";
    uint64_t n = get_u(c);
    if (!c->ok)
        return "the count is cut short";
    if (n > left(c) / MIN_LEAK_BYTES)
        return detail(r, "%" PRIu64 " leak entries cannot fit in %" PRIu64 " bytes", n, left(c));
    if (RESERVE(r, r->leaks, r->leaks_cap, n))
        return OOM;
    for (uint64_t i = 0; i < n; i++) {
        struct hkt_leak *l = &r->leaks[i];
        l->stack = get_u32(c);
        l->blocks = get_u(c);
        l->bytes = get_u(c);
        l->est_blocks = get_u(c);
        l->est_bytes = get_u(c);
        if (!c->ok)
            return detail(r, "entry %" PRIu64 " is cut short or has a bad field", i);
        if (l->stack && !stack_is_defined(r, l->stack))
            return detail(r, "entry %" PRIu64 " refers to stack %u, which no earlier STACKS chunk defined", i,
                          l->stack);
    }
    r->have_leaks = 1;
    r->count = (size_t)n;
    return NULL;
}

/* Reads, checks and decodes the next chunk: 1 when its records are ready (perhaps none), 0 at the end of the file,
 * -1 on damage. Nothing of a chunk is handed out before all of it was found good. */
static int load_chunk(struct hkt_reader *r)
{
    uint64_t at = r->off;
    r->pos = r->count = 0;
    if (at == r->size) {
        r->state = 0;
        return 0;
    }
    if (r->complete)
        return fail(r, at, "data after the END chunk");
    uint64_t rest = r->size - at;
    if (rest < CHUNK_HEAD_SIZE)
        return fail(r, at, "truncated chunk head (needs %d bytes, %" PRIu64 " left)", CHUNK_HEAD_SIZE, rest);
    const uint8_t *p = r->map + at;
    struct hkt_chunk_head h = {le32(p), le32(p + 4), le32(p + 8), le32(p + 12)};
    uint32_t chunk = r->next_seq;
    if (h.len > HKT_CHUNK_MAX_LEN)
        return fail(r, at, "chunk %u: length %u is over the %u byte limit", chunk, h.len, HKT_CHUNK_MAX_LEN);
    if (h.len > rest - CHUNK_HEAD_SIZE)
        return fail(r, at, "truncated chunk (needs %" PRIu64 " bytes, %" PRIu64 " left)",
                    (uint64_t)CHUNK_HEAD_SIZE + h.len, rest);
    const uint8_t *payload = p + CHUNK_HEAD_SIZE;
    if (hkt_chunk_crc(&h, payload) != h.crc) {
        if (h.type >= 1 && h.type <= HKT_CHUNK_MAX_TYPE)
            return fail(r, at, "chunk %u (%s) checksum mismatch", chunk, chunk_type_name(h.type));
        return fail(r, at, "chunk %u (type %u) checksum mismatch", chunk, h.type);
    }
    if (h.seq != chunk)
        return fail(r, at, "chunk seq %u where %u was expected", h.seq, chunk);

    struct hkt_cursor c = {payload, payload + h.len, 1};
    const char *bad;
    switch (h.type) {
    case HKT_CHUNK_HEADER: bad = decode_header(r, &c, h.len); break;
    case HKT_CHUNK_COUNTER_DEFS: bad = decode_counter_defs(r, &c, h.len); break;
    case HKT_CHUNK_MODULES: bad = decode_modules(r, &c, h.len); break;
    case HKT_CHUNK_STACKS: bad = decode_stacks(r, &c); break;
    case HKT_CHUNK_EVENTS: bad = decode_events(r, &c); break;
    case HKT_CHUNK_SNAPSHOT: bad = decode_snapshot(r, &c); break;
    case HKT_CHUNK_THREAD: bad = decode_thread(r, &c, h.len); break;
    case HKT_CHUNK_LOST: bad = decode_lost(r, &c); break;
    case HKT_CHUNK_END: bad = decode_end(r, &c); break;
    case HKT_CHUNK_WINDOW: bad = decode_window(r, &c); break;
    case HKT_CHUNK_ERROR: bad = decode_error(r, &c); break;
    case HKT_CHUNK_LEAKS: bad = decode_leaks(r, &c); break;
    case 0: return fail(r, at, "chunk %u has type 0", chunk);
    default: bad = NULL; c.p = c.end; break; /* a newer writer's chunk: checked, skipped */
    }
    if (bad == OOM)
        return fail(r, at, "chunk %u (%s): out of memory", chunk, chunk_type_name(h.type));
    if (!bad && c.p != c.end)
        bad = detail(r, "%" PRIu64 " stray bytes after its fields", left(&c));
    if (bad)
        return fail(r, at, "chunk %u: malformed %s payload (%s)", chunk, chunk_type_name(h.type), bad);
    if (h.type == HKT_CHUNK_END)
        r->complete = 1;
    r->chunk_off = at;
    r->chunk_type = h.type;
    r->off = at + CHUNK_HEAD_SIZE + h.len;
    r->next_seq++;
    return 1;
}

int hkt_next(struct hkt_reader *r, struct hkt_record *rec)
{
    while (r->pos >= r->count) {
        if (r->state != 1)
            return r->state;
        if (load_chunk(r) != 1)
            return r->state;
    }
    size_t i = r->pos++;
    rec->offset = r->chunk_off;
    switch (r->chunk_type) {
    case HKT_CHUNK_EVENTS: {
        const struct event *e = &r->events[i];
        rec->type = e->type;
        if (e->type == HKT_REC_ALLOC)
            rec->u.alloc = e->u.alloc;
        else
            rec->u.free = e->u.free;
        break;
    }
    case HKT_CHUNK_STACKS:
        rec->type = HKT_REC_STACK;
        rec->u.stack = r->stacks[i];
        break;
    case HKT_CHUNK_MODULES:
        rec->type = HKT_REC_MODULE;
        rec->u.module = r->modules[i];
        break;
    case HKT_CHUNK_COUNTER_DEFS:
        rec->type = HKT_REC_COUNTER_DEF;
        rec->u.counter_def = r->defs[i];
        break;
    case HKT_CHUNK_LEAKS:
        rec->type = HKT_REC_LEAK;
        rec->u.leak = r->leaks[i];
        break;
    default:
        rec->type = r->one.type;
        rec->u = r->one.u;
        break;
    }
    return 1;
}

/* ---- Opening ---- */
__attribute__((format(printf, 4, 5))) static void open_error(char *err, size_t errlen, const char *path,
                                                             const char *fmt, ...)
{
    if (!errlen)
        return;
    int n = snprintf(err, errlen, "%s: ", path);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
}

/* The file header is not covered by a checksum, so every field must be exactly what this reader knows. */
static int check_file_header(const uint8_t *p, uint64_t size, const char *path, char *err, size_t errlen)
{
    if (size == 0) {
        open_error(err, errlen, path, "empty file (not a hakmem recording)");
        return -1;
    }
    if (size < FILE_HEADER_SIZE) {
        open_error(err, errlen, path, "not a hakmem recording (%" PRIu64 " bytes, shorter than its header)", size);
        return -1;
    }
    if (memcmp(p, HKT_MAGIC, 8) != 0) {
        open_error(err, errlen, path, "not a hakmem recording (bad magic)");
        return -1;
    }
    uint32_t version = le32(p + 8), header_size = le32(p + 12);
    if (version > HKT_VERSION) {
        open_error(err, errlen, path, "recording version %u is newer than this reader (%u)", version, HKT_VERSION);
        return -1;
    }
    if (version == 0) {
        open_error(err, errlen, path, "damaged file header (version 0)");
        return -1;
    }
    if (header_size != FILE_HEADER_SIZE) {
        open_error(err, errlen, path, "damaged file header (header size %u, not %d)", header_size,
                   FILE_HEADER_SIZE);
        return -1;
    }
    return 0;
}

struct hkt_reader *hkt_open(const char *path, char *err, size_t errlen)
{
    if (errlen)
        err[0] = 0;
    /* Non-blocking: opening a FIFO would otherwise wait for a writer; anything but a regular file is refused below. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        open_error(err, errlen, path, "%s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        open_error(err, errlen, path, "%s", strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        open_error(err, errlen, path, S_ISDIR(st.st_mode) ? "is a directory, not a recording"
                                                          : "not a regular file, so not a recording");
        close(fd);
        return NULL;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size > SIZE_MAX) {
        open_error(err, errlen, path, "too large to map (%" PRIu64 " bytes)", size);
        close(fd);
        return NULL;
    }
    const uint8_t *map = NULL;
    if (size > 0) {
        void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            open_error(err, errlen, path, "cannot map: %s", strerror(errno));
            close(fd);
            return NULL;
        }
        map = m;
    }
    close(fd); /* the mapping keeps the file */
    if (check_file_header(map, size, path, err, errlen) != 0) {
        if (map)
            munmap((void *)map, (size_t)size);
        return NULL;
    }
    madvise((void *)map, (size_t)size, MADV_SEQUENTIAL);
    struct hkt_reader *r = calloc(1, sizeof *r);
    char *name = strdup(path);
    if (!r || !name) {
        free(r);
        free(name);
        munmap((void *)map, (size_t)size);
        open_error(err, errlen, path, "out of memory");
        return NULL;
    }
    r->version = le32(map + 8);
    r->path = name;
    r->map = map;
    r->size = size;
    r->off = FILE_HEADER_SIZE;
    r->state = 1;
    return r;
}

const struct hkt_header *hkt_header_of(const struct hkt_reader *r)
{
    return r->have_header ? &r->header : NULL;
}

const char *hkt_error(const struct hkt_reader *r)
{
    return r->err;
}

int hkt_complete(const struct hkt_reader *r)
{
    return r->complete;
}

int hkt_has_leaks(const struct hkt_reader *r)
{
    return r->have_leaks;
}

uint64_t hkt_file_size(const struct hkt_reader *r)
{
    return r->size;
}

int hkt_refresh(struct hkt_reader *r)
{
    if (r->complete || r->oom)
        return 0;
    int fd = open(r->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(r->err, sizeof r->err, "%s: %s", r->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        r->state = -1;
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size <= r->size || size > SIZE_MAX) { /* not grown (a file that shrank is not this recording any more) */
        close(fd);
        return 0;
    }
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        snprintf(r->err, sizeof r->err, "%s: cannot map: %s", r->path, strerror(errno));
        r->state = -1;
        return -1;
    }
    /* Records already returned point into the reader's own arrays, never into the old mapping. */
    if (r->map)
        munmap((void *)r->map, (size_t)r->size);
    r->map = m;
    r->size = size;
    if (r->state != 1) { /* go on from the chunk it stopped at: r->off moves only past a good chunk */
        r->state = 1;
        r->err[0] = 0;
        r->detail[0] = 0;
    }
    return 1;
}

uint64_t hkt_offset(const struct hkt_reader *r)
{
    return r->off;
}

void hkt_close(struct hkt_reader *r)
{
    if (!r)
        return;
    munmap((void *)r->map, (size_t)r->size);
    free(r->path);
    free(r->events);
    free(r->stacks);
    free(r->ip_start);
    free(r->ips);
    free(r->modules);
    free(r->defs);
    free(r->leaks);
    free(r->values);
    free(r->strs);
    free(r->header_strs);
    free(r->stack_defined);
    free(r);
}
