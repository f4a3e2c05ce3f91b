/* The allocation slow path: the refill stages that fill a thread's tls_sll when it runs dry, in order, and the
 * owner-side slab operations (local free, remote drain, list links) that free and thread exit share with it. */
#include <errno.h>
#include "internal.h"

/* Takes every block other threads freed into s and puts them on its local free list. Returns how many.
 * The walk is bounded by `used` (remote blocks are counted there), so a corrupted list cannot loop forever. */
uint32_t hak_slab_drain_remote(struct hak_slab *s)
{
    if (!atomic_load_explicit(&s->remote, memory_order_relaxed))
        return 0;
    void *chain = atomic_exchange_explicit(&s->remote, NULL, memory_order_acquire);
    if (!chain)
        return 0;
    uint32_t n = 1;
    void *tail = chain;
    while (*(void **)tail) {
        tail = *(void **)tail;
        if (++n > s->used) {
            hak_report("slab %p: its remote free list holds more blocks than are in use (double free?); "
                       "the list is dropped",
                       (void *)s);
            return 0;
        }
    }
    *(void **)tail = s->free;
    s->free = chain;
    s->used -= n;
    HAK_COUNT_N(REMOTE_DRAINED, s->cls, n);
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

/* A same-thread block goes back into its slab; a slab left empty goes back to its SuperSlab unless it is the
 * class's current slab (keeping that one avoids carve/release ping-pong at a slab boundary). */
void hak_slab_local_free(struct hak_heap *h, struct hak_slab *s, void *p)
{
    *(void **)p = s->free;
    s->free = p;
    if (--s->used == 0 && s != h->slabs[s->cls]) {
        hak_heap_unlink_slab(h, s);
        hak_slab_release(s);
    }
}

static inline bool slab_has_room(const struct hak_slab *s)
{
    return s->carved > s->used || s->carved < s->capacity;
}

/* Moves a batch of blocks from s into the (empty) tls_sll and returns one more for the caller.
 * The local free list is spliced whole when it fits, else a batch is cut; a fresh slab is carved lazily. */
static void *fill_from(struct hak_tcache *tc, struct hak_slab *s)
{
    uint32_t batch = tc->cap / 2 + 1;
    uint32_t nfree = s->carved - s->used;
    void *first;
    uint32_t n;
    if (nfree) {
        first = s->free;
        if (nfree <= tc->cap + 1) {
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
        for (uint32_t i = 1; i < n; i++, b += s->bsize)
            *(void **)b = b + s->bsize;
        *(void **)b = NULL;
        HAK_RELAXED_STORE(s->carved, s->carved + n);
    }
    s->used += n;
    tc->head = *(void **)first;
    tc->count = n - 1;
    return first;
}

/* The refill stages, in order: the current slab's free list (or uncarved space), its remote frees, another
 * owned slab with room (bounded scan), an abandoned slab, a new slab carved from a SuperSlab (which may itself
 * come from the cache or the OS). Adoption comes before carving so thread churn reuses memory instead of growing. */
void *hak_heap_refill(struct hak_heap *h, unsigned cls)
{
    struct hak_tcache *tc = &h->tc[cls];
    struct hak_slab *s = h->slabs[cls];
    h->spill_streak[cls] = 0;
    tc->cap = hak_tcache_cap(cls); /* caching resumes after a free-dominant phase turned it off */
    if (s) {
        if (slab_has_room(s)) {
            HAK_COUNT(REFILL_SLAB_FREE, cls);
            return fill_from(tc, s);
        }
        if (hak_slab_drain_remote(s)) {
            HAK_COUNT(REFILL_REMOTE_DRAIN, cls);
            return fill_from(tc, s);
        }
        struct hak_slab *c = s->next;
        for (uint32_t scanned = 0; c != s && scanned < hak_settings.partial_scan; scanned++, c = c->next) {
            if (slab_has_room(c) || hak_slab_drain_remote(c)) {
                h->slabs[cls] = c;
                HAK_COUNT(REFILL_PARTIAL, cls);
                return fill_from(tc, c);
            }
        }
        /* Full slabs scanned here rotate to the back, so the next refill looks at others first. */
        h->slabs[cls] = c;
    }
    s = hak_slab_adopt(h, cls);
    if (s) {
        HAK_COUNT(REFILL_ADOPT, cls);
        return fill_from(tc, s);
    }
    enum hak_carve_source src;
    s = hak_slab_carve(h, cls, &src);
    if (!s)
        return NULL;
    if (src == HAK_CARVE_SS_OS)
        HAK_COUNT(REFILL_SS_OS, cls);
    else if (src == HAK_CARVE_SS_CACHE)
        HAK_COUNT(REFILL_SS_CACHE, cls);
    else
        HAK_COUNT(REFILL_NEW_SLAB, cls);
    hak_heap_link_slab(h, s, true);
    return fill_from(tc, s);
}

void *hak_malloc_refill(unsigned cls)
{
    struct hak_heap *h = &hak_tls_heap;
    if (HAK_UNLIKELY(h->state != HAK_HEAP_LIVE)) {
        if (h->state == HAK_HEAP_DEAD)
            return hak_orphan_malloc(cls);
        hak_heap_init(h);
    }
    void *b = hak_heap_refill(h, cls);
    if (HAK_UNLIKELY(!b))
        errno = ENOMEM;
    return b;
}
