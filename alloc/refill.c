/* The allocation slow path: the refill stages that fill a thread's tls_sll when it runs dry, in order, and the
 * owner-side slab operations (local free, remote drain, list links) that free and thread exit share with it. */
#include <errno.h>
#include "internal.h"

/* Takes every block other threads freed into s and puts them on its local free list. Returns how many.
 * The list carries its own count, so nothing is walked when the local list is empty (the usual case in a refill);
 * otherwise the shorter of the two lists is walked to splice them. */
uint32_t hak_slab_drain_remote(struct hak_slab *s)
{
    if (!atomic_load_explicit(hak_slab_remote(s), memory_order_relaxed))
        return 0;
    uintptr_t w = atomic_exchange_explicit(hak_slab_remote(s), 0, memory_order_acquire);
    void *chain = hak_remote_head(w);
    uint32_t n = hak_remote_count(w);
    uint32_t used = HAK_USED(s);
    if (!chain)
        return 0;
    if (n == 0 || n > used) {
        hak_report("slab %p: its remote free list claims %u blocks with %u in use (double free?); the list is "
                   "dropped",
                   (void *)s, n, used);
        return 0;
    }
    HAK_ON_DRAINED(s, chain);
    if (s->free) {
        uint32_t nlocal = s->carved - used;
        void *tail;
        if (nlocal <= n) {
            for (tail = s->free; --nlocal && *(void **)tail;)
                tail = *(void **)tail;
            *(void **)tail = chain;
        } else {
            for (tail = chain; --n && *(void **)tail;)
                tail = *(void **)tail;
            *(void **)tail = s->free;
            s->free = chain;
        }
        n = hak_remote_count(w);
    } else {
        s->free = chain;
    }
    HAK_SET_USED(s, used - n);
    HAK_COUNT(REMOTE_DRAINS, s->cls);
    HAK_COUNT_N(REMOTE_DRAINED, s->cls, n);
    HAK_COUNT(REMOTE_DEPTH, n >= 128 ? 7u : 31u - (unsigned)__builtin_clz(n)); /* log2 bucket */
    return n;
}

/* Makes s the current slab of its class (as_current) or adds it at the back of the owner's circular list. */
void hak_heap_link_slab(struct hak_heap *h, struct hak_slab *s, bool as_current)
{
    struct hak_slab *head = h->slabs[s->cls];
    if (!head) {
        s->next = s->prev = s;
        h->slabs[s->cls] = s;
        return;
    }
    s->next = head;
    s->prev = head->prev;
    head->prev->next = s;
    head->prev = s;
    if (as_current)
        h->slabs[s->cls] = s;
}

void hak_heap_unlink_slab(struct hak_heap *h, struct hak_slab *s)
{
    if (s->next == s) {
        h->slabs[s->cls] = NULL;
    } else {
        s->prev->next = s->next;
        s->next->prev = s->prev;
        if (h->slabs[s->cls] == s)
            h->slabs[s->cls] = s->next;
    }
    s->next = s->prev = NULL;
}

/* A slab left empty goes back to its SuperSlab unless it is the class's current slab (keeping that one avoids
 * carve/release ping-pong at a slab boundary). */
void hak_slab_emptied(struct hak_heap *h, struct hak_slab *s)
{
    if (s != h->slabs[s->cls]) {
        hak_heap_unlink_slab(h, s);
        hak_slab_release(s);
    }
}

static inline bool slab_has_room(const struct hak_slab *s)
{
    return s->carved > HAK_USED(s) || s->carved < s->capacity;
}

/* Moves blocks from s into the (empty) tls_sll and returns one more for the caller. The local free list is spliced
 * whole when the cache can hold it (O(1)), else a batch is cut off it; a fresh slab is carved a batch at a time.
 * Cutting walks the list, one dependent load per block: blocks other threads freed (drained remote frees, a dead
 * owner's cache) are in other cores' caches, and that walk was 18% of seed Larson at 2 threads. Spliced whole,
 * each block is first read when malloc pops it, which prefetches the next, so the misses overlap the program's
 * work. */
static void *fill_from(struct hak_tcache *tc, struct hak_slab *s, uint32_t batch)
{
    uint32_t nfree = s->carved - HAK_USED(s);
    void *first;
    uint32_t n;
    if (nfree) {
        first = s->free;
        if (nfree <= tc->cap + 1) { /* whole list */
            n = nfree;
            s->free = NULL;
        } else {
            void *last = first;
            for (n = 1; n < batch; n++)
                last = *(void **)last;
            s->free = *(void **)last;
            *(void **)last = NULL;
        }
    } else {
        uint32_t left = s->capacity - s->carved;
        n = left < batch ? left : batch;
        char *b = (char *)hak_slab_start(s) + (size_t)s->carved * s->bsize;
        first = b;
        HAK_ON_CARVED(first); /* handed out by this refill */
        for (uint32_t i = 1; i < n; i++, b += s->bsize) {
            *(void **)b = b + s->bsize;
            HAK_ON_CARVED_CACHED(b + s->bsize, s->bsize); /* into the tls_sll: free until handed out */
        }
        *(void **)b = NULL;
        HAK_RELAXED_STORE(s->carved, s->carved + n);
    }
    HAK_SET_USED(s, HAK_USED(s) + n);
    HAK_ON_BYTES((int64_t)n * s->bsize); /* bytes in use: blocks out of their slabs (live or in a tls_sll) */
    tc->head = *(void **)first;
    tc->room = (int32_t)tc->cap - (int32_t)(n - 1);
    return first;
}

/* The reclaim notes (internal.h): 256 entries of {owner, classes}, probed from a hash of the owner. */
#define RECLAIM_SLOTS 256
#define RECLAIM_PROBE 8
static struct {
    _Atomic uintptr_t owner; /* 0: free */
    _Atomic uint64_t classes;
} reclaim_slots[RECLAIM_SLOTS];
static _Atomic unsigned reclaim_used; /* entries taken: the owners' refills skip the probe while it is 0 */

static unsigned reclaim_home(uintptr_t owner)
{
    return (unsigned)((uint64_t)(owner >> 12) * 0x9E3779B97F4A7C15ull >> 56);
}

void hak_reclaim_note(uintptr_t owner, unsigned cls)
{
    unsigned home = reclaim_home(owner);
    for (unsigned i = 0; i < RECLAIM_PROBE; i++) {
        unsigned at = (home + i) % RECLAIM_SLOTS;
        uintptr_t o = atomic_load_explicit(&reclaim_slots[at].owner, memory_order_acquire);
        if (o == 0) {
            if (atomic_compare_exchange_strong_explicit(&reclaim_slots[at].owner, &o, owner, memory_order_acq_rel,
                                                        memory_order_acquire)) {
                atomic_fetch_add_explicit(&reclaim_used, 1, memory_order_relaxed);
                o = owner;
            }
        }
        if (o == owner) {
            atomic_fetch_or_explicit(&reclaim_slots[at].classes, 1ull << cls, memory_order_release);
            return;
        }
    }
}

uint64_t hak_reclaim_take(uintptr_t owner)
{
    if (!atomic_load_explicit(&reclaim_used, memory_order_relaxed))
        return 0;
    unsigned home = reclaim_home(owner);
    uint64_t classes = 0;
    for (unsigned i = 0; i < RECLAIM_PROBE; i++) {
        unsigned at = (home + i) % RECLAIM_SLOTS;
        if (atomic_load_explicit(&reclaim_slots[at].owner, memory_order_relaxed) == owner &&
            atomic_load_explicit(&reclaim_slots[at].classes, memory_order_relaxed))
            classes |= atomic_exchange_explicit(&reclaim_slots[at].classes, 0, memory_order_acquire);
    }
    return classes;
}

void hak_reclaim_forget(uintptr_t owner)
{
    unsigned home = reclaim_home(owner);
    for (unsigned i = 0; i < RECLAIM_PROBE; i++) {
        unsigned at = (home + i) % RECLAIM_SLOTS;
        if (atomic_load_explicit(&reclaim_slots[at].owner, memory_order_relaxed) == owner) {
            atomic_store_explicit(&reclaim_slots[at].classes, 0, memory_order_relaxed);
            atomic_store_explicit(&reclaim_slots[at].owner, 0, memory_order_release);
            atomic_fetch_sub_explicit(&reclaim_used, 1, memory_order_relaxed);
        }
    }
}

/* Gives back the slabs of the classes in mask whose blocks all came back by other threads' frees (see
 * hak_reclaim_note). The current slab of a class stays, as an empty current slab does everywhere. */
static void reclaim_remote_emptied(struct hak_heap *h, uint64_t mask)
{
    for (; mask; mask &= mask - 1) {
        unsigned k = (unsigned)__builtin_ctzll(mask);
        struct hak_slab *cur = k < HAK_NCLASSES ? h->slabs[k] : NULL;
        if (!cur)
            continue;
        for (struct hak_slab *s = cur->next, *next; s != cur; s = next) {
            next = s->next;
            uintptr_t w = atomic_load_explicit(hak_slab_remote(s), memory_order_relaxed);
            if (!w || hak_remote_count(w) != HAK_USED(s))
                continue;
            hak_slab_drain_remote(s);
            if (HAK_USED(s) == 0) {
                hak_heap_unlink_slab(h, s);
                hak_slab_release(s);
            }
        }
    }
}

/* Which refill stage served a refill: the counter build counts each, with its cost in TSC cycles. */
#if defined(HAKMEM_PROF) && HAKMEM_PROF
#define STAGE_DONE(stage, cls, t0, tc)                                                \
    do {                                                                             \
        HAK_COUNT(REFILL_##stage, cls);                                              \
        hak_tls_heap.last_stage = HKT_STAGE_##stage;                                      \
        HAK_COUNT_N(REFILL_##stage##_CYCLES, cls, HAK_CYCLES() - (t0));              \
        HAK_COUNT_N(REFILL_BLOCKS, cls, (uint64_t)((int64_t)(tc)->cap - (tc)->room + 1)); \
    } while (0)
#else
#define STAGE_DONE(stage, cls, t0, tc) ((void)(t0))
#endif

/* The refill stages, in order: the current slab's free list (or uncarved space), its remote frees, another
 * owned slab with room (bounded scan), an abandoned slab, a new slab carved from a SuperSlab (which may itself
 * come from the cache or the OS). Adoption comes before carving so thread churn reuses memory instead of growing. */
void *hak_heap_refill(struct hak_heap *h, unsigned cls)
{
    uint64_t t0 = HAK_CYCLES();
    struct hak_tcache *tc = &h->tc[cls];
    struct hak_slab *s = h->slabs[cls];
    void *b;
    h->spill_streak[cls] = 0;
    /* Slabs other threads emptied, in classes this thread no longer refills (its own class's refill finds them). */
    uint64_t noted = hak_reclaim_take(h->id) & ~(1ull << cls);
    if (HAK_UNLIKELY(noted))
        reclaim_remote_emptied(h, noted);
    tc->cap = hak_tcache_cap(cls); /* caching resumes after a free-dominant phase turned it off */
    /* Slow start: a short-lived thread moves few blocks per refill (so its exit has little to give back), a busy
     * one soon moves half its cache's capacity per refill. */
    uint32_t batch = h->batch[cls] ? h->batch[cls] : 8;
    uint32_t most = tc->cap / 2 + 1;
    if (batch > most)
        batch = most;
    h->batch[cls] = (uint16_t)(batch * 2 < most ? batch * 2 : most);
    if (s) {
        if (slab_has_room(s)) {
            b = fill_from(tc, s, batch);
            STAGE_DONE(SLAB_FREE, cls, t0, tc);
            return b;
        }
        if (hak_slab_drain_remote(s)) {
            b = fill_from(tc, s, batch);
            STAGE_DONE(REMOTE_DRAIN, cls, t0, tc);
            return b;
        }
        struct hak_slab *c = s->next;
        for (uint32_t scanned = 0; c != s && scanned < hak_settings.partial_scan; scanned++, c = c->next) {
            if (slab_has_room(c) || hak_slab_drain_remote(c)) {
                h->slabs[cls] = c;
                b = fill_from(tc, c, batch);
                STAGE_DONE(PARTIAL, cls, t0, tc);
                return b;
            }
        }
        /* Full slabs scanned here rotate to the back, so the next refill looks at others first. */
        h->slabs[cls] = c;
    }
    s = hak_slab_adopt(h, cls);
    if (s) {
        b = fill_from(tc, s, batch);
        STAGE_DONE(ADOPT, cls, t0, tc);
        return b;
    }
    enum hak_carve_source src;
    s = hak_slab_carve(h, cls, &src);
    if (!s)
        return NULL;
    hak_heap_link_slab(h, s, true);
    b = fill_from(tc, s, batch);
    if (src == HAK_CARVE_SS_OS)
        STAGE_DONE(SS_OS, cls, t0, tc);
    else if (src == HAK_CARVE_SS_CACHE)
        STAGE_DONE(SS_CACHE, cls, t0, tc);
    else
        STAGE_DONE(NEW_SLAB, cls, t0, tc);
    return b;
}

void *hak_malloc_refill(struct hak_tcache *tc)
{
    struct hak_heap *h = &hak_tls_heap;
    unsigned cls = (unsigned)(tc - h->tc);
    void *b;
    if (HAK_UNLIKELY(h->state != HAK_HEAP_LIVE)) {
        if (h->state == HAK_HEAP_DEAD) {
            b = hak_orphan_malloc(cls);
            goto out;
        }
        hak_heap_init(h);
    }
    b = hak_heap_refill(h, cls);
out:
    if (HAK_UNLIKELY(!b)) {
        errno = ENOMEM;
        return NULL;
    }
    HAK_ON_SLOW_PATH();
    HAK_ON_REFILLED(b);
    return b;
}
