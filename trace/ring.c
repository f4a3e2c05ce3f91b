/* Per-thread event rings: the producer appends without a lock (single producer, release on head); the writer
 * thread, a thread whose ring is full, or a thread at exit drains a ring into an EVENTS chunk under the ring's
 * lock. Lossless: a full ring is written out by its own thread before the next event goes in. */
#include <sys/mman.h>
#include "writer.h"

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hkt_ring *rings;     /* registered (list lock) */
static struct hkt_ring *pool;      /* released by exited threads, for reuse (list lock) */

/* The most one event takes encoded (two bytes and eight varints), and a chunk's head (three varints). */
#define EVENT_BYTES_MAX (2 + 8 * HKT_VARINT_MAX)
#define RING_ENCODED_MAX ((size_t)HKT_RING_EVENTS * EVENT_BYTES_MAX + 3 * HKT_VARINT_MAX)

/* Encodes events [tail, head) of evs (indexed modulo mask + 1) of thread tid as an EVENTS chunk's payload into
 * buf (room for RING_ENCODED_MAX); its length. */
static size_t encode_events(uint8_t *buf, uint32_t tid, const struct hkt_ev *evs, uint64_t mask, uint64_t tail,
                            uint64_t head)
{
    uint8_t *p = buf;
    const struct hkt_ev *first = &evs[tail & mask];
    p = hkt_put_u(p, tid);
    p = hkt_put_u(p, head - tail);
    p = hkt_put_u(p, first->tsc);
    uint64_t prev_tsc = first->tsc, prev_addr = 0, prev_seq = 0;
    for (uint64_t i = tail; i != head; i++) {
        const struct hkt_ev *e = &evs[i & mask];
        *p++ = (uint8_t)(e->kind | e->code << 2); /* format version 2 (docs/format.md) */
        *p++ = e->cls;
        p = hkt_put_s(p, (int64_t)(e->tsc - prev_tsc));
        p = hkt_put_s(p, (int64_t)(e->addr - prev_addr));
        p = hkt_put_u(p, e->size);
        p = hkt_put_u(p, e->stack);
        if (e->kind == HKT_EV_ALLOC) {
            p = hkt_put_s(p, (int64_t)(e->seq - prev_seq)); /* a thread's samples are numbered 1, 2, ... */
            prev_seq = e->seq;
        } else {
            p = hkt_put_s(p, (int64_t)tid - (int64_t)e->alloc_tid); /* 0 for a same-thread free */
            p = hkt_put_u(p, e->seq);
            p = hkt_put_u(p, e->lifetime);
        }
        prev_tsc = e->tsc;
        prev_addr = e->addr;
    }
    return (size_t)(p - buf);
}

/* Writes an encoded EVENTS payload of n events; file lock held. The caller flushed the stacks first: every stack
 * these events name was interned before the event was appended, and must precede them in the file. */
static void write_events_chunk_locked(const uint8_t *buf, size_t len, uint64_t n)
{
    hkt_write_chunk_locked(HKT_CHUNK_EVENTS, buf, len);
    atomic_fetch_add_explicit(&hkt_events_written, n, memory_order_relaxed);
}

/* Encodes and writes events [tail, head) of evs in the shared scratch buffer; file lock held. The stacks are
 * flushed before the encoding: they are written through the same scratch buffer. */
static void write_events_locked(uint32_t tid, const struct hkt_ev *evs, uint64_t mask, uint64_t tail, uint64_t head)
{
    hkt_stacks_flush_locked();
    uint8_t *buf = hkt_scratch_locked();
    write_events_chunk_locked(buf, encode_events(buf, tid, evs, mask, tail, head), head - tail);
}

/* Ring lock and file lock held. */
static void drain_locked(struct hkt_ring *r)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (tail == head)
        return;
    write_events_locked(r->tid, r->ev, HKT_RING_EVENTS - 1, tail, head);
    atomic_store_explicit(&r->tail, head, memory_order_release);
}

/* The events are encoded into the ring's own buffer before the file lock is taken: with every allocation
 * recorded, threads fill their rings together, and each held the file lock while it encoded a whole ring. */
static void drain(struct hkt_ring *r)
{
    pthread_mutex_lock(&r->lock);
    if (!r->encoded)
        r->encoded = hkt_map(RING_ENCODED_MAX);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (tail != head && r->encoded) {
        size_t len = encode_events(r->encoded, r->tid, r->ev, HKT_RING_EVENTS - 1, tail, head);
        hkt_file_lock();
        hkt_stacks_flush_locked();
        write_events_chunk_locked(r->encoded, len, head - tail);
        hkt_file_unlock();
        atomic_store_explicit(&r->tail, head, memory_order_release);
    } else if (tail != head) { /* no memory for the buffer: the shared one, under the file lock */
        hkt_file_lock();
        drain_locked(r);
        hkt_file_unlock();
    }
    pthread_mutex_unlock(&r->lock);
}

static struct hkt_ring *ring_acquire(uint32_t tid)
{
    pthread_mutex_lock(&list_lock);
    struct hkt_ring *r = pool;
    if (r)
        pool = r->next;
    pthread_mutex_unlock(&list_lock);
    if (!r) {
        r = hkt_map(sizeof *r);
        if (!r)
            return NULL;
        pthread_mutex_init(&r->lock, NULL);
    }
    atomic_store_explicit(&r->head, 0, memory_order_relaxed);
    atomic_store_explicit(&r->tail, 0, memory_order_relaxed);
    r->tid = tid;
    pthread_mutex_lock(&list_lock);
    r->next = rings;
    rings = r;
    pthread_mutex_unlock(&list_lock);
    return r;
}

__thread struct hkt_ev hkt_ev_spare __attribute__((tls_model("initial-exec")));

/* hkt_ev_begin's slow path: the thread's first event (its ring is taken), a full ring (drained first), or a
 * thread past its exit or out of memory (its event goes out alone, from the thread's spare, at hkt_ev_commit). */
struct hkt_ev *hkt_ev_begin_slow(uint32_t tid)
{
    struct hkt_ring *r = hkt_tls.ring;
    if (!r) {
        if (hkt_tls.dead || !(r = ring_acquire(tid)))
            return &hkt_ev_spare;
        hkt_tls.ring = r;
    }
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (head - atomic_load_explicit(&r->tail, memory_order_acquire) >= HKT_RING_EVENTS)
        drain(r);
    return &r->ev[head & (HKT_RING_EVENTS - 1)];
}

void hkt_ev_commit_spare(uint32_t tid)
{
    hkt_file_lock();
    write_events_locked(tid, &hkt_ev_spare, 0, 0, 1);
    hkt_file_unlock();
}

void hkt_rings_drain_all(void)
{
    pthread_mutex_lock(&list_lock);
    for (struct hkt_ring *r = rings; r; r = r->next)
        drain(r);
    pthread_mutex_unlock(&list_lock);
}

void hkt_ring_release(void)
{
    struct hkt_ring *r = hkt_tls.ring;
    if (!r)
        return;
    drain(r);
    hkt_tls.ring = NULL;
    /* The writer thread drains only rings on the list, under the list lock: once off it, no one touches r. */
    pthread_mutex_lock(&list_lock);
    for (struct hkt_ring **pp = &rings; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->next = pool;
    pool = r;
    pthread_mutex_unlock(&list_lock);
}

static struct hkt_ring *locked_rings;
void hkt_rings_fork_prepare(void)
{
    pthread_mutex_lock(&list_lock);
    for (struct hkt_ring *r = rings; r; r = r->next)
        pthread_mutex_lock(&r->lock);
    locked_rings = rings;
}
void hkt_rings_fork_parent(void)
{
    for (struct hkt_ring *r = locked_rings; r; r = r->next)
        pthread_mutex_unlock(&r->lock);
    pthread_mutex_unlock(&list_lock);
}
/* In the child only the forking thread exists: its ring is kept, emptied (what it held happened in the parent,
 * which writes it), the other threads' rings are forgotten. */
void hkt_rings_fork_child(void)
{
    pthread_mutex_init(&list_lock, NULL);
    struct hkt_ring *mine = hkt_tls.ring;
    rings = NULL;
    pool = NULL;
    if (mine) {
        pthread_mutex_init(&mine->lock, NULL);
        atomic_store_explicit(&mine->tail, atomic_load_explicit(&mine->head, memory_order_relaxed),
                              memory_order_relaxed);
        mine->next = NULL;
        rings = mine;
    }
}

/* From a fatal signal's handler, file lock held: the crashing thread's own events, if its ring is free. */
void hkt_ring_drain_own_locked(void)
{
    struct hkt_ring *r = hkt_tls.ring;
    if (r && pthread_mutex_trylock(&r->lock) == 0) {
        drain_locked(r);
        pthread_mutex_unlock(&r->lock);
    }
}
