/* SuperSlabs: 2 MiB-aligned regions cut into slabs, the chunk map that tells them from foreign memory,
 * carving slabs out of them, taking slabs back, and returning empty SuperSlabs to a small cache or the OS. */
#include <errno.h>
#include <string.h>
#include "internal.h"

_Atomic uint8_t hak_chunk_map[HAK_MAP_ENTRIES];

/* One lock for SuperSlab lists and unit bitmaps: it is taken once per slab (64 KiB or more), never per block. */
static pthread_mutex_t ss_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_superslab *ss_avail; /* SuperSlabs with at least one free unit */
static struct hak_superslab *ss_all;   /* every SuperSlab in use */
static struct hak_superslab *ss_cache[128]; /* empty SuperSlabs kept mapped, most recently emptied last */
static unsigned ss_cache_count;
static unsigned ss_live;           /* SuperSlabs in use */
static unsigned units_used;        /* units in slabs, over the SuperSlabs in use */
static unsigned units_dirty;       /* free units not purged yet, over the SuperSlabs in use */
static unsigned ss_cache_resident; /* cached SuperSlabs not purged yet */
static struct hak_superslab *ss_parked; /* beyond the cache: purged but for the header, linked by avail_next */

static void list_push(struct hak_superslab **head, struct hak_superslab *ss, bool all)
{
    struct hak_superslab **next = all ? &ss->all_next : &ss->avail_next;
    struct hak_superslab **prev = all ? &ss->all_prev : &ss->avail_prev;
    *next = *head;
    *prev = NULL;
    if (*head) {
        if (all)
            (*head)->all_prev = ss;
        else
            (*head)->avail_prev = ss;
    }
    *head = ss;
}

static void list_remove(struct hak_superslab **head, struct hak_superslab *ss, bool all)
{
    struct hak_superslab *next = all ? ss->all_next : ss->avail_next;
    struct hak_superslab *prev = all ? ss->all_prev : ss->avail_prev;
    if (prev) {
        if (all)
            prev->all_next = next;
        else
            prev->avail_next = next;
    } else {
        *head = next;
    }
    if (next) {
        if (all)
            next->all_prev = prev;
        else
            next->avail_prev = prev;
    }
}

/* Units a slab of this class spans: one unit up to 8 KiB blocks, else enough for about eight blocks. */
static unsigned class_units(unsigned cls)
{
    uint32_t bs = hak_class_size[cls];
    unsigned units = 1;
    while (units < 16 && (uintptr_t)units * HAK_UNIT < (uintptr_t)bs * 8)
        units <<= 1;
    return units;
}

/* First aligned run of `units` free units in the bitmap, or -1. */
static int find_run(uint32_t free_units, unsigned units)
{
    uint32_t mask = units == 32 ? 0xffffffffu : ((1u << units) - 1u);
    for (unsigned at = 0; at < HAK_UNITS; at += units)
        if (((free_units >> at) & mask) == mask)
            return (int)at;
    return -1;
}

static struct hak_superslab *ss_new(enum hak_carve_source *src)
{
    struct hak_superslab *ss;
    uint32_t dirty = 0;
    if (ss_cache_count > 0) {
        ss = ss_cache[--ss_cache_count];
        *src = HAK_CARVE_SS_CACHE;
        if (ss->resident) { /* its pages are still there: carving them costs no page fault */
            ss_cache_resident--;
            dirty = 0xffffffffu;
        }
    } else if (ss_parked) {
        ss = ss_parked;
        ss_parked = ss->avail_next;
        *src = HAK_CARVE_SS_CACHE;
    } else {
        ss = hak_os_map_aligned(HAK_CHUNK, HAK_CHUNK);
        if (!ss)
            return NULL;
        *src = HAK_CARVE_SS_OS;
        HAK_ON_SS_MAPPED(ss);
        atomic_store_explicit(&hak_chunk_map[(uintptr_t)ss >> HAK_CHUNK_SHIFT], HAK_MAP_SS, memory_order_release);
    }
    HAK_ON_SS_LIVE(1);
    ss_live++;
    ss->magic = HAK_SS_MAGIC;
    ss->free_units = 0xffffffffu;
    ss->dirty_units = dirty;
    units_dirty += (unsigned)__builtin_popcount(dirty);
    ss->resident = 0;
    ss->nslabs = 0;
    list_push(&ss_all, ss, true);
    list_push(&ss_avail, ss, false);
    return ss;
}

/* A SuperSlab is never unmapped: past the cache it is purged but for its header page and parked for reuse. Its
 * descriptors (all free) thus stay readable, so a thread that pushed a block onto a remote list and then looks at
 * the slab once more, or a late invalid free, never touches unmapped memory; the cost is 4 KiB of RSS and 2 MiB
 * of address space per parked SuperSlab. */

static void ss_park(struct hak_superslab *ss)
{
    if (ss->resident) {
        hak_os_purge((char *)ss + HAK_SS_HEADER, HAK_CHUNK - HAK_SS_HEADER);
        ss->resident = 0;
    }
    ss->avail_next = ss_parked;
    ss_parked = ss;
}

/* An empty SuperSlab goes to the cache (the oldest cached one is parked if the cache is full). Called with
 * ss_lock held. */
static void ss_retire(struct hak_superslab *ss)
{
    list_remove(&ss_avail, ss, false);
    list_remove(&ss_all, ss, true);
    HAK_ON_SS_LIVE(-1);
    ss_live--;
    unsigned cap = hak_settings.ss_cache < 128 ? hak_settings.ss_cache : 128;
    ss->resident = 1;
    if (cap == 0) {
        ss_park(ss);
        return;
    }
    if (ss_cache_count == cap) {
        struct hak_superslab *old = ss_cache[0];
        if (old->resident)
            ss_cache_resident--;
        memmove(&ss_cache[0], &ss_cache[1], (cap - 1) * sizeof ss_cache[0]);
        ss_cache_count--;
        ss_park(old);
    }
    ss_cache_resident++;
    ss_cache[ss_cache_count++] = ss;
}

/* Freed memory keeps its pages while there is no more of it than memory in use, plus 1 MiB: free units inside
 * SuperSlabs (dirty units) and empty SuperSlabs in the cache (resident). A slab released and carved again soon
 * (thread churn, a heap that shrinks and grows) then costs no syscall and no page faults. Past that, the oldest
 * cached SuperSlabs and then dirty units are purged until the resident free memory is half the memory in use, so a
 * program that frees (nearly) everything gets its RSS back. Called with ss_lock held: no one carves meanwhile. */
#define RESIDENT_SLACK_UNITS 16
static unsigned resident_free_units(void)
{
    return units_dirty + ss_cache_resident * HAK_UNITS;
}

static void purge_dirty(struct hak_superslab *ss)
{
    uint32_t d = ss->dirty_units;
    units_dirty -= (unsigned)__builtin_popcount(d);
    while (d) {
        unsigned from = (unsigned)__builtin_ctz(d), to = from;
        while (to < HAK_UNITS && (d >> to & 1))
            to++;
        uintptr_t start = from == 0 ? HAK_SS_HEADER : (uintptr_t)from * HAK_UNIT;
        hak_os_purge((char *)ss + start, (uintptr_t)to * HAK_UNIT - start);
        d &= to == HAK_UNITS ? 0 : ~0u << to;
    }
    ss->dirty_units = 0;
}

static void resident_trim(void)
{
    if (resident_free_units() <= units_used + RESIDENT_SLACK_UNITS)
        return;
    for (unsigned i = 0; i < ss_cache_count && resident_free_units() > units_used / 2; i++) {
        struct hak_superslab *ss = ss_cache[i];
        if (!ss->resident)
            continue;
        /* The header page stays: its slab descriptors are all free and it is rewritten on reuse. */
        hak_os_purge((char *)ss + HAK_SS_HEADER, HAK_CHUNK - HAK_SS_HEADER);
        ss->resident = 0;
        ss_cache_resident--;
    }
    for (struct hak_superslab *ss = ss_all; ss && resident_free_units() > units_used / 2; ss = ss->all_next)
        if (ss->dirty_units)
            purge_dirty(ss);
}

static struct hak_slab *carve_locked(struct hak_heap *h, unsigned cls, enum hak_carve_source *src)
{
    unsigned units = class_units(cls);
    struct hak_superslab *ss;
    int at = -1;
    *src = HAK_CARVE_EXISTING;
    for (ss = ss_avail; ss; ss = ss->avail_next)
        if ((at = find_run(ss->free_units, units)) >= 0)
            break;
    if (!ss) {
        ss = ss_new(src);
        if (!ss)
            return NULL;
        at = 0;
    }
    uint32_t mask = units == 32 ? 0xffffffffu : ((1u << units) - 1u);
    ss->free_units &= ~(mask << at);
    units_dirty -= (unsigned)__builtin_popcount(ss->dirty_units & (mask << at));
    ss->dirty_units &= ~(mask << at); /* reused while still resident: no page faults */
    units_used += units;
    ss->nslabs++;
    if (ss->free_units == 0)
        list_remove(&ss_avail, ss, false);

    struct hak_slab *s = &ss->slabs[at];
    uint32_t bs = hak_class_size[cls];
    uintptr_t start_off = at == 0 ? HAK_SS_HEADER : (uintptr_t)at * HAK_UNIT;
    uintptr_t end_off = (uintptr_t)(at + (int)units) * HAK_UNIT;
    s->free = NULL;
    atomic_store_explicit(hak_slab_remote(s), 0, memory_order_relaxed);
    s->next = s->prev = NULL;
    HAK_SET_USED(s, 0);
    HAK_RELAXED_STORE(s->carved, 0); /* read by other threads (hak_slab_block_of, the prof build's slot walk) */
    s->capacity = (uint32_t)((end_off - start_off) / bs);
    s->bsize = bs;
    s->first_lo = (uint32_t)((uintptr_t)ss + start_off);
    s->cls = (uint8_t)cls;
    s->units = (uint8_t)units;
    s->head_back = 0;
    s->inherited = 0;
    HAK_RELAXED_STORE(s->state, HAK_SLAB_LIVE);
    for (unsigned i = 1; i < units; i++) {
        struct hak_slab *t = &ss->slabs[at + (int)i];
        t->head_back = (uint8_t)i;
        HAK_RELAXED_STORE(t->state, HAK_SLAB_LIVE);
        t->units = 0;
        atomic_store_explicit(&t->owner, HAK_OWNER_TAIL, memory_order_relaxed);
    }
    s->tc_off = (uint16_t)(cls * sizeof(struct hak_tcache));
    s->div_mul = hak_class_div[cls].mul;
    s->div_shift = (uint8_t)hak_class_div[cls].shift;
    atomic_store_explicit(&s->owner, h->id, memory_order_release);
    return s;
}

struct hak_slab *hak_slab_carve(struct hak_heap *h, unsigned cls, enum hak_carve_source *src)
{
    pthread_mutex_lock(&ss_lock);
    bool need_new = true;
    unsigned units = class_units(cls);
    for (struct hak_superslab *ss = ss_avail; ss; ss = ss->avail_next)
        if (find_run(ss->free_units, units) >= 0) {
            need_new = false;
            break;
        }
    if (need_new && ss_cache_count == 0) {
        /* About to take memory from the OS: first give back slabs that exited threads left fully free. */
        pthread_mutex_unlock(&ss_lock);
        hak_abandoned_reclaim();
        pthread_mutex_lock(&ss_lock);
    }
    struct hak_slab *s = carve_locked(h, cls, src);
    pthread_mutex_unlock(&ss_lock);
    if (!s)
        errno = ENOMEM;
    return s;
}

/* Gives a slab's units back to its SuperSlab; the slab must hold no live block. */
void hak_slab_release(struct hak_slab *s)
{
    struct hak_superslab *ss = hak_ss_of_slab(s);
    unsigned at = (unsigned)(s - ss->slabs), units = s->units;
    pthread_mutex_lock(&ss_lock);
    for (unsigned i = 0; i < units; i++) {
        struct hak_slab *t = &ss->slabs[at + i];
        atomic_store_explicit(&t->owner, HAK_OWNER_NONE, memory_order_relaxed);
        HAK_RELAXED_STORE(t->state, HAK_SLAB_FREE);
        t->units = 0;
    }
    uint32_t mask = units == 32 ? 0xffffffffu : ((1u << units) - 1u);
    if (ss->free_units == 0)
        list_push(&ss_avail, ss, false);
    ss->free_units |= mask << at;
    ss->dirty_units |= mask << at;
    units_dirty += units;
    units_used -= units;
    if (--ss->nslabs == 0) {
        units_dirty -= (unsigned)__builtin_popcount(ss->dirty_units); /* the cache accounts for it from now on */
        ss_retire(ss);
    }
    resident_trim();
    pthread_mutex_unlock(&ss_lock);
}

/* The slab of a pointer into a SuperSlab, checking everything the fast path does not:
 * a live slab, a pointer inside its carved blocks, and at a block boundary. */
struct hak_slab *hak_slab_block_of(const void *p, uintptr_t *block)
{
    uintptr_t a = (uintptr_t)p;
    if (hak_map_kind(p) != HAK_MAP_SS)
        return NULL;
    struct hak_slab *s = hak_slab_of(a);
    if (HAK_RELAXED_LOAD(s->state) == HAK_SLAB_FREE)
        return NULL;
    if (atomic_load_explicit(&s->owner, memory_order_relaxed) == HAK_OWNER_TAIL)
        s -= s->head_back;
    if (HAK_RELAXED_LOAD(s->state) == HAK_SLAB_FREE || s->units == 0)
        return NULL;
    uintptr_t start = hak_slab_start(s);
    if (a < start)
        return NULL;
    uintptr_t off = a - start;
    /* The reciprocal is rounded up; for offsets below 2^21 the quotient is exact (sizeclass.c). */
    uint64_t idx = ((uint64_t)off * hak_class_recip[s->cls]) >> 40;
    if (idx >= HAK_RELAXED_LOAD(s->carved))
        return NULL;
    *block = start + idx * s->bsize;
    return s;
}

struct hak_slab *hak_slab_lookup(const void *p)
{
    uintptr_t b;
    struct hak_slab *s = hak_slab_block_of(p, &b);
    return s && b == (uintptr_t)p ? s : NULL;
}

void hak_ss_fork_prepare(void)
{
    pthread_mutex_lock(&ss_lock);
}

void hak_ss_fork_parent(void)
{
    pthread_mutex_unlock(&ss_lock);
}

void hak_ss_fork_child_unlock(void)
{
    pthread_mutex_init(&ss_lock, NULL);
}

/* In a fork child only the forking thread survives. The other threads' slabs may have been caught half-way
 * through an unlocked update (fork copies memory while those threads run), so they are never reused: their owner
 * becomes HAK_OWNER_GONE, which no heap matches and nothing adopts. Frees into them land on their remote lists.
 * That memory is lost to the child, which usually execs or exits soon; it also means no new thread of the child
 * can mistake them for its own when it gets a dead thread's thread pointer. */
void hak_ss_fork_child(const struct hak_heap *keep, const struct hak_heap *keep_too)
{
    for (struct hak_superslab *ss = ss_all; ss; ss = ss->all_next) {
        for (unsigned i = 0; i < HAK_UNITS; i++) {
            struct hak_slab *s = &ss->slabs[i];
            uintptr_t owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
            if (s->state != HAK_SLAB_LIVE || s->units == 0 || owner == HAK_OWNER_TAIL || owner == HAK_OWNER_NONE ||
                owner == keep->id || owner == keep_too->id)
                continue;
            atomic_store_explicit(&s->owner, HAK_OWNER_GONE, memory_order_relaxed);
        }
    }
}
