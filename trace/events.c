/* Sampled allocation and free events: what the allocator's prof hooks call. An allocation gets a stack id, a
 * record (in its slot, or the sampled-block table) and an event in the thread's ring; the free of such a block an
 * event naming it. */
#include <errno.h>
#include <sys/mman.h>
#include <x86intrin.h>
#include "writer.h"

void hkt_record_alloc(void *p, size_t size, unsigned cls, unsigned stage, uint32_t tid, struct hkt_slot *slot)
{
    struct hkt_tls *t = &hkt_tls;
    if (!p || !hkt_recording)
        return;
    /* The time first, then the window: a sample taken as the window closed counts only if it came before. */
    uint64_t tsc = __rdtsc();
    if (atomic_load_explicit(&hkt_window_closed, memory_order_acquire))
        return;
    t->busy++; /* libunwind may allocate on first use: served untraced */
    /* libunwind probes addresses with syscalls that fail on purpose (EAGAIN), and a full ring is written out
     * here: the program's malloc must leave errno as it found it. */
    int saved_errno = errno;
    uint32_t stack = hkt_stack_capture(hkt_stack_depth());
    struct hkt_sample s = {.addr = (uint64_t)(uintptr_t)p, .tsc = tsc, .size = size, .seq = ++t->seq,
                           .stack = stack, .tid = tid, .cls = cls};
    hkt_sampled_insert(&s, slot);
    struct hkt_ev *ev = hkt_ev_begin(tid); /* in place: every field is set */
    ev->kind = HKT_EV_ALLOC;
    ev->cls = (uint8_t)cls;
    ev->code = (uint8_t)stage;
    ev->stack = stack;
    ev->tsc = tsc;
    ev->addr = s.addr;
    ev->size = size;
    ev->seq = s.seq;
    hkt_ev_commit(ev, tid);
    errno = saved_errno;
    t->busy--;
}

int hkt_record_free(void *p, unsigned path, uint32_t tid, struct hkt_slot *slot)
{
    /* Inside the recorder from here on: the table's lock (large blocks), then a ring written out when full (a
     * signal handler that exits meanwhile must not wait for either, see finish); errno is the program's.
     * A free made by a signal handler that interrupted the recorder in this thread (which may be filling the
     * ring's next event in place, or hold the ring's lock) is nested: the record is taken, the event dropped and
     * counted (a LOST chunk at the end). The writer thread's busy is 1 for good, and it runs the program's exit
     * handlers when it calls exit for a main thread that left with pthread_exit: its frees are not nested. */
    int nested = hkt_tls.busy > 0 && (hkt_tls.busy > 1 || !hkt_in_writer_thread());
    hkt_tls.busy++;
    int saved_errno = errno;
    struct hkt_sample s;
    int known = hkt_sampled_remove((uint64_t)(uintptr_t)p, slot, &s, hkt_recording);
    if (known && hkt_recording && nested) {
        atomic_fetch_add_explicit(&hkt_events_lost, 1, memory_order_relaxed);
    } else if (known && hkt_recording) {
        uint64_t now = __rdtsc();
        struct hkt_ev *ev = hkt_ev_begin(tid);
        ev->kind = HKT_EV_FREE;
        ev->cls = (uint8_t)s.cls;
        ev->code = (uint8_t)path;
        ev->stack = s.stack;
        ev->tsc = now;
        ev->addr = s.addr;
        ev->size = s.size;
        ev->seq = s.seq;
        ev->alloc_tid = s.tid;
        ev->lifetime = now > s.tsc ? now - s.tsc : 0;
        hkt_ev_commit(ev, tid);
    }
    errno = saved_errno;
    hkt_tls.busy--;
    return known;
}

void hkt_record_error(unsigned kind, const void *p, size_t size, uint32_t tid, struct hkt_slot *slot)
{
    if (!hkt_recording)
        return;
    hkt_tls.busy++;
    struct hkt_sample s = {0};
    /* A block kept out of use after an overflow is no longer live: it leaves the table (and no leak is claimed). */
    int sampled = kind == HKT_ERR_OVERFLOW ? hkt_sampled_remove((uint64_t)(uintptr_t)p, slot, &s, 0)
                                           : hkt_sampled_find((uint64_t)(uintptr_t)p, slot, &s);
    if (!sampled)
        sampled = hkt_sampled_find_freed((uint64_t)(uintptr_t)p, slot, &s);
    uint32_t stack = hkt_stack_capture(hkt_stack_depth());
    uint8_t buf[128], *q = buf;
    q = hkt_put_u(q, kind);
    q = hkt_put_u(q, tid);
    q = hkt_put_u(q, __rdtsc());
    q = hkt_put_u(q, (uint64_t)(uintptr_t)p);
    q = hkt_put_u(q, size);
    q = hkt_put_u(q, stack);
    q = hkt_put_u(q, sampled ? s.stack : 0);
    q = hkt_put_u(q, sampled ? s.tid : 0);
    q = hkt_put_u(q, sampled ? s.seq : 0);
    hkt_file_lock();
    hkt_stacks_flush_locked(); /* the stacks it names go first */
    hkt_write_chunk_locked(HKT_CHUNK_ERROR, buf, (size_t)(q - buf));
    hkt_file_unlock();
    hkt_tls.busy--;
}

/* ---- leaks: the sampled blocks still live when the recording ends, summed by allocation stack ---- */
struct leak {
    uint32_t stack;
    uint64_t blocks, bytes;
    double est_blocks, est_bytes;
};
struct leak_table {
    struct leak *slots;
    uint32_t mask, used;
    int full;
};

static void add_leak(const struct hkt_sample *s, void *arg)
{
    struct leak_table *t = arg;
    uint32_t i = (s->stack * 0x9e3779b1u) & t->mask;
    while (t->slots[i].blocks && t->slots[i].stack != s->stack)
        i = (i + 1) & t->mask;
    if (!t->slots[i].blocks) {
        if (t->used * 2 >= t->mask) { /* keep probes short; the rest are dropped (and the chunk says less) */
            t->full = 1;
            return;
        }
        t->used++;
        t->slots[i].stack = s->stack;
    }
    double w = hkt_sample_weight(s->size);
    t->slots[i].blocks++;
    t->slots[i].bytes += s->size;
    t->slots[i].est_blocks += w;
    t->slots[i].est_bytes += w * (double)s->size;
}

void hkt_write_leaks_locked(void)
{
    struct leak_table t = {.mask = (1u << 16) - 1};
    t.slots = hkt_map(((size_t)t.mask + 1) * sizeof *t.slots);
    if (!t.slots)
        return;
    hkt_sampled_foreach(add_leak, &t);
    uint8_t *buf = hkt_scratch_locked(), *p = buf + HKT_VARINT_MAX;
    uint32_t n = 0;
    for (uint32_t i = 0; i <= t.mask && (size_t)(p - buf) + 64 < HKT_SCRATCH; i++) {
        const struct leak *l = &t.slots[i];
        if (!l->blocks)
            continue;
        p = hkt_put_u(p, l->stack);
        p = hkt_put_u(p, l->blocks);
        p = hkt_put_u(p, l->bytes);
        p = hkt_put_u(p, (uint64_t)(l->est_blocks + 0.5));
        p = hkt_put_u(p, (uint64_t)(l->est_bytes + 0.5));
        n++;
    }
    uint8_t head[HKT_VARINT_MAX];
    size_t hl = (size_t)(hkt_put_u(head, n) - head);
    memcpy(buf + HKT_VARINT_MAX - hl, head, hl);
    hkt_write_chunk_locked(HKT_CHUNK_LEAKS, buf + HKT_VARINT_MAX - hl, (size_t)(p - buf) - HKT_VARINT_MAX + hl);
    munmap(t.slots, ((size_t)t.mask + 1) * sizeof *t.slots);
}
