/* Counting hooks in the allocator. The optimized build defines them to nothing, so no counter code is compiled
 * in; the prof build (HAKMEM_PROF=1) maps them onto counters/ and the hooks in prof.c. */
#ifndef HAK_COUNT_H
#define HAK_COUNT_H
#include "layout.h"

#if defined(HAKMEM_PROF) && HAKMEM_PROF
#include <x86intrin.h>
#include "../counters/counters.h"
#include "../trace/trace.h"

#pragma GCC visibility push(hidden)
/* A counter slot is written only by its thread: a relaxed store of value + n, no lock prefix. Threads without a
 * block (not set up yet, already torn down, or beyond the segment's slots) add atomically to the shared block. */
static inline void hak_count_add(unsigned idx, uint64_t n, unsigned cls)
{
    uint64_t *c = hak_tls_heap.ctr;
    if (HAK_LIKELY(c != NULL)) {
        __atomic_store_n(&c[idx], c[idx] + n, __ATOMIC_RELAXED);
        /* Which classes this thread counted in, so its exit folds only those. The fast paths' counts need no
         * bit: a class is counted on a slow path (its first refill) before any fast path can run for it. */
        hak_tls_heap.ctr_classes |= (uint64_t)1 << (cls & 63);
    } else {
        __atomic_fetch_add(&hkc_shared[idx], n, __ATOMIC_RELAXED);
    }
}
#define HAK_COUNT_N(name, cls, n) \
    hak_count_add((unsigned)HKC_##name + (HKC_W_##name > 1 ? (unsigned)(cls) : 0u), (uint64_t)(n), (unsigned)(cls))
#define HAK_COUNT(name, cls) HAK_COUNT_N(name, cls, 1)
/* The fast paths run only on a live heap, whose block is never NULL: one add, no test, no lock prefix. */
static inline void hak_count_fast(unsigned idx)
{
    __asm__ volatile("addq $1, %0" : "+m"(hak_tls_heap.ctr[idx]));
}
#define HAK_COUNT_FAST(name, cls) hak_count_fast((unsigned)HKC_##name + (unsigned)(cls))
int hak_prof_free_inherited(struct hak_slab *s, void *p); /* 1: a dead owner's leftover */
void hak_prof_push_inherited(struct hak_slab *s, void *p, struct hak_tcache *tc);
void hak_prof_drained(struct hak_slab *s, void *chain);
void hak_prof_slab_abandoned(struct hak_slab *s);
void hak_prof_slab_inherited(struct hak_slab *s);
void hak_prof_alloc_large(struct hak_large *l);
void hak_prof_free_large(struct hak_large *l);
void hak_prof_inuse_flush(void);
void hak_prof_thread_start(struct hak_heap *h);
void hak_prof_thread_exit(struct hak_heap *h);
void hak_prof_ss_live(int delta);
void hak_prof_ss_mapped(struct hak_superslab *ss);
void hak_prof_global_init(void);
void hak_prof_fork_child(struct hak_heap *h);
void hak_prof_constructed(void);

/* Same- or cross-thread, exactly, without a per-block thread id: a slab changes owner only when its owner exits,
 * so a free by a thread that does not own the slab (ss_remote) is always cross-thread, and a free by the owner
 * (tls_sll or ss_local) is same-thread unless the block is a leftover of the dead owner the slab was adopted from
 * (tracked by mine_bits). Returns 1 for a leftover: the caller counts the free in its path's _LEFTOVER counter, else
 * in its _OWN one, and readers derive the path totals and the two counts as sums of those (hkc_derive). */
static inline int hak_prof_free_owner(struct hak_slab *s, void *p)
{
    return HAK_UNLIKELY(s->inherited) ? hak_prof_free_inherited(s, p) : 0;
}
/* Sampled blocks (prof.c): a SuperSlab block is handed out `off` bytes past its start, behind a header, so
 * that its free leaves the fast path by itself (hak_prof_free_sampled); others are found in trace/'s table. */
extern uint64_t hak_sampled_key;
extern int hak_prof_offsets;
extern int hak_prof_sample_plain; /* sampled blocks are handed out as they are (debug checks, HAKMEM_SAMPLE=all) */
void *hak_prof_sampled_offset(void *block, size_t size, size_t off, unsigned cls);
int hak_prof_free_sampled(void *p);              /* 1: p was a sampled pointer, and it is freed (or reported) */
size_t hak_prof_sampled_usable(const void *p);   /* usable bytes of a sampled pointer; 0 for any other */
void hak_prof_sampled_alloc(void *p, size_t size);
void hak_prof_sampled_free(void *p);

/* Sampling at the API's entry points: the countdown is one subtract and branch; guards and poison, which take
 * every allocation out of line, keep it negative (api.c's sample_now), and the free path's checks ride on its
 * reject mask (hak_prof_free_reject). Everything else is in out-of-line functions (api.c), so the fast paths keep
 * their registers. A sampled block's free needs no test of its own (hak_prof_free_sampled). */
#define HAK_SAMPLE_TICK(size) HAK_UNLIKELY(hkt_tick(&hak_tls_heap.sample_left, (size)))
/* realloc goes out of line while a block may be sampled (or guarded): its free is recorded, an offset one moved. */
#define HAK_REALLOC_WATCHED() \
    HAK_UNLIKELY(hak_prof_free_checks | hkt_recording | __atomic_load_n(&hak_prof_offsets, __ATOMIC_RELAXED))
/* The slow paths' look for a sampled pointer among the pointers that are not a block's start. */
#define HAK_FREE_SAMPLED(p) hak_prof_free_sampled(p)
#define HAK_SAMPLED_USABLE(p) hak_prof_sampled_usable(p)
#define HAK_ON_FREE_LARGE_BLOCK(p)       \
    do {                                 \
        if (HAK_UNLIKELY(hkt_recording)) \
            hak_prof_sampled_free(p);    \
    } while (0)

/* Debug checks of the prof build. A free block carries a mark in its second word (a per-process random key):
 * a free that finds it is a double free; handing a block out clears it. Carving clears it on the block the refill
 * hands out (memory of an earlier slab must not look freed) and sets it on the blocks that go to the tls_sll,
 * which are free until handed out. With HAKMEM_POISON=1 a freed block's bytes from 16 on are filled with a
 * pattern that handing it out checks. */
/* Hidden like the rest: a flag or the key is then one load (no address from the GOT first) on the fast paths. */
extern uint64_t hak_free_key;
extern int hak_prof_guard;       /* HAKMEM_GUARD=1 */
extern int hak_prof_poison;      /* HAKMEM_POISON=1 */
extern int hak_prof_trap;        /* guards or poison: every allocation takes the checked path */
extern int hak_prof_free_checks; /* guards, poison, or every allocation sampled: every free is checked */
/* The free fast path's reject mask: HAK_FAST_FREE_REJECT's bits (an address above 2^47 or not 16-aligned), or all
 * ones while hak_prof_free_checks is set, so every free goes to the checks. Set with it (hak_prof_set_free_checks). */
extern uintptr_t hak_prof_free_reject;
void hak_prof_set_free_checks(int on);
void hak_prof_double_free(void *p);
int hak_prof_debug_free(void *p); /* guards and poison on free; 0: an error was reported, keep the block */
void *hak_prof_guard_arm(void *p, size_t size);
size_t hak_prof_guard_usable(const void *p);
void hak_prof_invalid(void *p, const char *why);
void *hak_prof_poison_handout(void *b);
void hak_prof_poison_peek(size_t size);
void hak_prof_poison_peek_class(unsigned cls);
#pragma GCC visibility pop
/* realloc's move takes its new block on the inline path: with poison, that block is checked first too. */
#define HAK_POISON_PEEK(size)                    \
    do {                                         \
        if (HAK_UNLIKELY(hak_prof_poison))       \
            hak_prof_poison_peek(size);          \
    } while (0)
#define HAK_FREE_CHECK(p)                                                              \
    do {                                                                               \
        if (HAK_UNLIKELY(((const uint64_t *)(p))[1] == hak_free_key)) {                \
            hak_prof_double_free(p);                                                   \
            return;                                                                    \
        }                                                                              \
    } while (0)
#define HAK_MARK_FREED(p) (((uint64_t *)(p))[1] = hak_free_key)
#define HAK_IS_FREED(p) HAK_UNLIKELY(((const uint64_t *)(p))[1] == hak_free_key)
/* Handing a block out clears its free mark. With poison, the checked allocation path looks at the block the
 * tls_sll is about to hand out before it does (api.c), and a refill checks the block it returns (HAK_ON_REFILLED):
 * a poisoned block found written after its free is kept out of use and another one handed out. */
#define HAK_ON_HANDOUT(b) (((uint64_t *)(b))[1] = 0)
#define HAK_ON_REFILLED(b)                                                             \
    do {                                                                               \
        if (HAK_UNLIKELY(hak_prof_poison) && ((const uint64_t *)(b))[1] == hak_free_key) \
            (b) = hak_prof_poison_handout(b);                                          \
        else                                                                           \
            ((uint64_t *)(b))[1] = 0;                                                  \
    } while (0)
#define HAK_ON_CARVED(b) (((uint64_t *)(b))[1] = 0)
/* A carved block that goes to the tls_sll, not to the caller, is a free block: it carries the free mark (and the
 * poison pattern), so a free of it before it is handed out is reported, not pushed a second time. */
void hak_prof_poison_fill(void *b, uint32_t bsize);
#define HAK_ON_CARVED_CACHED(b, bsize)                 \
    do {                                               \
        ((uint64_t *)(b))[1] = hak_free_key;           \
        if (HAK_UNLIKELY(hak_prof_poison))             \
            hak_prof_poison_fill((b), (bsize));        \
    } while (0)

#define HAK_CYCLES() __rdtsc()
#define HAK_ON_FREE_OWNER(s, p) hak_prof_free_owner((s), (p))
#define HAK_PROF_INHERITED(s) HAK_UNLIKELY((s)->inherited)
#define HAK_ON_FREE_REMOTE(cls) (hak_tls_heap.inuse_delta -= (int64_t)hak_class_size[cls])
/* A slab's bitmap is set up when its owner abandons it (prof.c); an adopter's drain of its remote list marks the
 * blocks it brings back as free (inherited is HAK_ADOPTING meanwhile), later drains look for leftovers among them. */
#define HAK_ADOPTING 2
#define HAK_ON_SLAB_ABANDONED(s) hak_prof_slab_abandoned(s)
#define HAK_ON_SLAB_CLAIMED(s) ((s)->inherited = HAK_ADOPTING)
#define HAK_ON_SLAB_INHERITED(s) hak_prof_slab_inherited(s)
#define HAK_ON_DRAINED(s, chain)             \
    do {                                     \
        if ((s)->inherited)                  \
            hak_prof_drained((s), (chain));  \
    } while (0)
#define HAK_ON_ALLOC_LARGE(l) hak_prof_alloc_large(l)
#define HAK_ON_FREE_LARGE(l) hak_prof_free_large(l)
#define HAK_ON_BYTES(delta) (hak_tls_heap.inuse_delta += (delta))
/* Bytes in use reach the process total in steps of 64 KiB (prof.c): the step is tested inline on slow paths. */
#define HAK_INUSE_STEP ((int64_t)64 << 10)
#define HAK_ON_SLOW_PATH()                                                                \
    do {                                                                                  \
        int64_t d_ = hak_tls_heap.inuse_delta;                                            \
        if (HAK_UNLIKELY(d_ >= HAK_INUSE_STEP || d_ <= -HAK_INUSE_STEP ||                 \
                         hak_tls_heap.state != HAK_HEAP_LIVE))                            \
            hak_prof_inuse_flush();                                                       \
    } while (0)
#define HAK_ON_THREAD_START(h) hak_prof_thread_start(h)
#define HAK_ON_THREAD_EXIT(h) hak_prof_thread_exit(h)
#define HAK_ON_SS_LIVE(delta) hak_prof_ss_live(delta)
#define HAK_ON_SS_MAPPED(ss) hak_prof_ss_mapped(ss)
#define HAK_ON_GLOBAL_INIT() hak_prof_global_init()
#define HAK_ON_FORK_CHILD(h) hak_prof_fork_child(h)
#define HAK_ON_CONSTRUCTED() hak_prof_constructed()
/* A request no allocator can serve: the sampling countdown it may have wrapped (hkt_tick) asks again next time. */
#define HAK_ON_ABSURD_SIZE() (hak_tls_heap.sample_left = -1)
#else
/* The arguments are still evaluated as void so the optimized build sees no unused variables; they are plain
 * values, so nothing is left in the object code. */
#define HAK_COUNT_N(name, cls, n) ((void)(cls), (void)(n))
#define HAK_COUNT_FAST(name, cls) ((void)(cls))
#define HAK_COUNT(name, cls) ((void)(cls))
#define HAK_CYCLES() 0
#define HAK_SAMPLE_TICK(size) ((void)(size), 0)
#define HAK_REALLOC_WATCHED() 0
#define HAK_FREE_SAMPLED(p) ((void)(p), 0)
#define HAK_SAMPLED_USABLE(p) ((void)(p), (size_t)0)
#define HAK_ON_FREE_LARGE_BLOCK(p) ((void)(p))
#define HAK_FREE_CHECK(p) ((void)(p))
#define HAK_MARK_FREED(p) ((void)(p))
#define HAK_POISON_PEEK(size) ((void)(size))
#define HAK_IS_FREED(p) ((void)(p), 0)
#define hak_prof_double_free(p) ((void)(p))
#define HAK_ON_HANDOUT(b) ((void)(b))
#define HAK_ON_REFILLED(b) ((void)(b))
#define HAK_ON_CARVED(b) ((void)(b))
#define HAK_ON_CARVED_CACHED(b, bsize) ((void)(b), (void)(bsize))
#define HAK_ON_FREE_OWNER(s, p) ((void)(s), (void)(p), 0)
#define HAK_PROF_INHERITED(s) 0
#define hak_prof_push_inherited(s, p, tc) ((void)0)
#define HAK_ON_FREE_REMOTE(cls) ((void)0)
#define HAK_ON_SLAB_ABANDONED(s) ((void)0)
#define HAK_ON_SLAB_CLAIMED(s) ((void)0)
#define HAK_ON_SLAB_INHERITED(s) ((void)0)
#define HAK_ON_DRAINED(s, chain) ((void)0)
#define HAK_ON_ALLOC_LARGE(l) ((void)0)
#define HAK_ON_FREE_LARGE(l) ((void)0)
#define HAK_ON_BYTES(delta) ((void)0)
#define HAK_ON_SLOW_PATH() ((void)0)
#define HAK_ON_THREAD_START(h) ((void)0)
#define HAK_ON_THREAD_EXIT(h) ((void)0)
#define HAK_ON_SS_LIVE(delta) ((void)0)
#define HAK_ON_SS_MAPPED(ss) ((void)0)
#define HAK_ON_GLOBAL_INIT() ((void)0)
#define HAK_ON_FORK_CHILD(h) ((void)0)
#define HAK_ON_CONSTRUCTED() ((void)0)
#define HAK_ON_ABSURD_SIZE() ((void)0)
#endif
#endif
