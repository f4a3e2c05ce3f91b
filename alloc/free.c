/* The free slow path: ss_local frees and tls_sll spills when the thread cache is full, cross-thread frees onto
 * the owning slab's remote list (ss_remote), large blocks, and refusing pointers hakmem never returned. */
#include "internal.h"

/* The thread cache is full: keep its newest half (hot in cache) and send the older blocks back to their slabs.
 * A second spill with no refill in between means the thread is freeing far more than it allocates (a free-all):
 * then the whole cache goes back and caching stops until the next refill, so no cached block keeps an otherwise
 * empty slab (and its memory) alive. */
static void spill(struct hak_heap *h, struct hak_tcache *tc, unsigned cls)
{
    uint32_t keep = tc->cap / 2;
    if (++h->spill_streak[cls] >= 2) {
        keep = 0;
        tc->cap = 0;
    }
    void *rest;
    uint32_t kept = 0;
    if (keep == 0 || !tc->head) {
        rest = tc->head;
        tc->head = NULL;
    } else {
        void *cut = tc->head;
        for (kept = 1; kept < keep && *(void **)cut; kept++)
            cut = *(void **)cut;
        rest = *(void **)cut;
        *(void **)cut = NULL;
    }
    uint32_t n = 0;
    while (rest) {
        void *next = *(void **)rest;
        struct hak_slab *s = hak_slab_of((uintptr_t)rest);
        s -= s->head_back;
        hak_slab_local_free(h, s, rest);
        rest = next;
        n++;
    }
    tc->room = (int32_t)tc->cap - (int32_t)kept;
    HAK_COUNT(TLS_SLL_SPILL, cls);
    HAK_COUNT_N(TLS_SLL_SPILLED, cls, n);
}

/* One CAS puts the block at the head and bumps the count. Returns the new word. The CAS is sequentially
 * consistent (free on x86, a locked instruction anyway): the caller then reads the slab's state, and abandonment
 * writes the state then reads this word; one of the two must see the other. */
static uintptr_t remote_push(struct hak_slab *s, void *p)
{
    uintptr_t old = atomic_load_explicit(hak_slab_remote(s), memory_order_relaxed), next;
    do {
        *(void **)p = hak_remote_head(old);
        next = (uintptr_t)p | ((old & ~HAK_REMOTE_PTR_MASK) + ((uintptr_t)1 << HAK_REMOTE_COUNT_SHIFT));
    } while (!atomic_compare_exchange_weak_explicit(hak_slab_remote(s), &old, next, memory_order_seq_cst,
                                                    memory_order_relaxed));
    return next;
}

/* A same-thread free found its class's cache full (room was just taken to -1): the block goes straight back
 * into its slab (ss_local), and the cache spills its older half. */
void hak_free_tcache_full(void *p, struct hak_slab *s)
{
    struct hak_heap *h = &hak_tls_heap;
    unsigned cls = s->cls;
    struct hak_tcache *tc = &h->tc[cls];
    tc->room = 0;
    s -= s->head_back;
    HAK_MARK_FREED(p);
    if (HAK_ON_FREE_OWNER(s, p))
        HAK_COUNT(FREE_SS_LOCAL_LEFTOVER, cls);
    else
        HAK_COUNT(FREE_SS_LOCAL_OWN, cls);
    hak_slab_local_free(h, s, p);
    if (tc->cap) /* 0: caching is off (a free-dominant phase), there is nothing to spill */
        spill(h, tc, cls);
}

void hak_free_slow(void *p)
{
    if (!p)
        return;
    unsigned kind = hak_map_kind(p);
    if (kind == HAK_MAP_LARGE || kind == HAK_MAP_LARGE_FAR) {
        HAK_ON_FREE_LARGE_BLOCK(p);
        hak_large_free(p);
        return;
    }
    if (kind != HAK_MAP_SS) {
        hak_invalid_free(p, "not allocated by hakmem");
        return;
    }
    HAK_ON_SLOW_PATH();
    struct hak_slab *s = hak_slab_lookup(p);
    if (!s) {
        if (HAK_FREE_SAMPLED(p)) /* prof build: a sampled block's pointer is past its block's start */
            return;
        hak_invalid_free(p, "not the start of a live hakmem block");
        return;
    }
    HAK_FREE_CHECK(p);
    struct hak_heap *h = &hak_tls_heap;
    unsigned cls = s->cls;
    uintptr_t owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
    if (owner == h->id && h->state == HAK_HEAP_LIVE) {
        /* Tail-unit blocks of multi-unit slabs come here with room left; the others because the cache is full. */
        struct hak_tcache *tc = &h->tc[cls];
        if (--tc->room < 0) {
            hak_free_tcache_full(p, s);
            return;
        }
        HAK_MARK_FREED(p);
        int leftover = HAK_ON_FREE_OWNER(s, p);
        *(void **)p = tc->head;
        tc->head = p;
        if (leftover)
            HAK_COUNT(FREE_TLS_SLL_LEFTOVER, cls);
        else
            HAK_COUNT(FREE_TLS_SLL_OWN, cls);
        return;
    }
    HAK_MARK_FREED(p);
    HAK_COUNT(FREE_SS_REMOTE, cls);
    HAK_ON_FREE_REMOTE(cls);
    uintptr_t w = remote_push(s, p);
    if (HAK_UNLIKELY(hak_remote_count(w) == HAK_USED(s))) {
        /* This was the slab's last block out. The owner exited: give the slab back now. The owner lives: tell
         * it, and its next refill of another class gives the slab back (it alone may touch its slab list). */
        if (HAK_RELAXED_LOAD(s->state) == HAK_SLAB_ABANDONED)
            hak_slab_release_if_empty(s);
        else if (owner != HAK_OWNER_NONE)
            hak_reclaim_note(owner, cls);
    }
}
