/* What the writer's files share inside libhakmem_prof.so: the ring event, the file and its lock, the stack
 * table, the sampled-block table. Nothing outside trace/ includes it. */
#ifndef HKT_WRITER_H
#define HKT_WRITER_H
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include "format.h"

#pragma GCC visibility push(hidden)

/* One event as the producer thread leaves it in its ring: fixed size, so a slot is one cache line and the hot
 * path is a copy. The writer encodes events compactly (varints, deltas) when it writes them out. */
struct hkt_ev {
    uint8_t kind;  /* HKT_EV_ALLOC or HKT_EV_FREE */
    uint8_t cls;
    uint8_t code;  /* refill stage (alloc) or free path (free) */
    uint8_t pad;
    uint32_t stack;
    uint64_t tsc, addr, size, seq;
    uint64_t alloc_tid, lifetime;
    uint64_t pad2;
};
_Static_assert(sizeof(struct hkt_ev) == 64, "one event per cache line");

/* Power of two: 16 KiB per thread. The events are encoded soon after they are written, while still in the core's
 * caches: with every allocation recorded, 256 measured 4% faster than 1024 on seed Larson at 2 threads (4096: 17%
 * slower; 64 and 128 in between), and no different on the suite parameters. */
#define HKT_RING_EVENTS 256
struct hkt_ring {
    _Atomic uint64_t head;   /* written by the producer only (release) */
    char pad1[56];
    _Atomic uint64_t tail;   /* written by whoever drains, under lock */
    pthread_mutex_t lock;
    uint32_t tid;
    struct hkt_ring *next;   /* registered rings (list lock) or the free pool */
    uint8_t *encoded;        /* the ring's events encoded, before the file lock is taken (ring lock) */
    struct hkt_ev ev[HKT_RING_EVENTS] __attribute__((aligned(64)));
};

/* recorder.c: the file. Chunks are written whole with the file lock held. */
void hkt_file_lock(void);
void hkt_file_unlock(void);
void hkt_write_chunk_locked(uint32_t type, const void *payload, size_t len);
/* A buffer for encoding one chunk (file lock held): HKT_SCRATCH bytes. */
#define HKT_SCRATCH (8u << 20)
uint8_t *hkt_scratch_locked(void);
extern _Atomic uint64_t hkt_events_written;
extern _Atomic uint64_t hkt_events_lost; /* frees of sampled blocks by a handler inside the recorder */
int hkt_in_writer_thread(void); /* recorder.c */
void *hkt_map(size_t bytes); /* zeroed anonymous memory, NULL on failure */
uint64_t hkt_now_tsc(void);
unsigned hkt_stack_depth(void); /* HAKMEM_STACK_DEPTH */
extern _Atomic int hkt_window_closed; /* the recording window (HAKMEM_RECORD_SIGNAL) */
void hkt_find_self(uintptr_t *lo, uintptr_t *hi);

/* Signal handlers of the recorder's own, which the program sees as the default (trace/signals.c). */
int hkt_sig_install(int sig, void (*handler)(int), int flags);
int hkt_sig_query(int sig, struct sigaction *old);
void hkt_sig_default(int sig); /* back to SIG_DFL, the recorder's no longer */
void hkt_before_exec(void);
void hkt_exec_failed(void);

/* stacks.c */
int hkt_stacks_init(uintptr_t self_lo, uintptr_t self_hi);
uint32_t hkt_stack_capture(unsigned depth);
void hkt_stacks_flush_locked(void);    /* writes the entries not yet in the file */
void hkt_stacks_fork_prepare(void);
void hkt_stacks_fork_parent(void);
void hkt_stacks_fork_child(void);      /* the child's new file needs every entry again */
void hkt_stacks_thread_exit(void);    /* gives the thread's stack cache back to the pool */
void hkt_stacks_unloading(void);      /* code may be unmapped: every stack cache forgets what it learned */

/* ring.c */
/* An event is written in place: hkt_ev_begin gives the ring's next slot (every field is to be set), and
 * hkt_ev_commit publishes it to the drainers. */
struct hkt_ev *hkt_ev_begin_slow(uint32_t tid);
void hkt_ev_commit_spare(uint32_t tid);
extern __thread struct hkt_ev hkt_ev_spare __attribute__((tls_model("initial-exec"))); /* a ringless thread's */
static inline struct hkt_ev *hkt_ev_begin(uint32_t tid)
{
    struct hkt_ring *r = hkt_tls.ring;
    if (__builtin_expect(r != NULL, 1)) {
        uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
        if (__builtin_expect(head - atomic_load_explicit(&r->tail, memory_order_acquire) < HKT_RING_EVENTS, 1))
            return &r->ev[head & (HKT_RING_EVENTS - 1)];
    }
    return hkt_ev_begin_slow(tid);
}
static inline void hkt_ev_commit(const struct hkt_ev *ev, uint32_t tid)
{
    struct hkt_ring *r = hkt_tls.ring;
    if (__builtin_expect(ev == &hkt_ev_spare, 0)) {
        hkt_ev_commit_spare(tid);
        return;
    }
    atomic_store_explicit(&r->head, atomic_load_explicit(&r->head, memory_order_relaxed) + 1, memory_order_release);
}
void hkt_rings_drain_all(void);
void hkt_ring_release(void);           /* the calling thread's ring, at its exit */
void hkt_ring_drain_own_locked(void);  /* a fatal signal's last act */
void hkt_rings_fork_prepare(void);
void hkt_rings_fork_parent(void);
void hkt_rings_fork_child(void);

/* sampled.c: live sampled blocks, in the allocator's slots or (without one: large blocks) a table by address. */
struct hkt_sample {
    uint64_t addr, tsc, size, seq;
    uint32_t stack, tid;
    uint32_t cls;
};
int hkt_sampled_init(void);
void hkt_sampled_insert(const struct hkt_sample *s, struct hkt_slot *slot);
/* Takes addr's block out (of slot, or the table) into out; with remember, keeps it as recently freed (for reports
 * of a double free or a write after free of it). 1 if it was there. */
int hkt_sampled_remove(uint64_t addr, struct hkt_slot *slot, struct hkt_sample *out, int remember);
int hkt_sampled_find(uint64_t addr, const struct hkt_slot *slot, struct hkt_sample *out);
int hkt_sampled_find_freed(uint64_t addr, const struct hkt_slot *slot, struct hkt_sample *out);
void hkt_sampled_foreach(void (*fn)(const struct hkt_sample *s, void *arg), void *arg); /* the live ones */
void hkt_write_leaks_locked(void); /* events.c: the LEAKS chunk, before END */
double hkt_sample_weight(uint64_t size); /* recorder.c: blocks of the program one sample stands for */
void hkt_sampled_fork_prepare(void);
void hkt_sampled_fork_parent(void);
void hkt_sampled_fork_child(void);

#pragma GCC visibility pop
#endif
