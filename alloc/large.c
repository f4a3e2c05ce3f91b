/* Large blocks (above the biggest size class, or aligned beyond what slabs give): each in its own 2 MiB-aligned
 * mapping with a header at the base, a bounded cache of freed spans reused without purging, and mremap growth. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include "internal.h"

#define LARGE_HEADER 64 /* default offset of the user pointer from the base: keeps 16-byte (and 64) alignment */
#define CACHE_SLOTS 16

static pthread_mutex_t large_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_large *cache[CACHE_SLOTS]; /* freed spans, oldest first */
static unsigned cache_count;
static size_t cache_bytes;

static size_t page_round(size_t n)
{
    return (n + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1);
}

static void map_set(uintptr_t base, uint8_t kind)
{
    atomic_store_explicit(&hak_chunk_map[base >> HAK_CHUNK_SHIFT], kind, memory_order_release);
}

/* The map entry is cleared before the unmap (another thread's new mapping may land here right after), and it is
 * the user pointer's chunk: for a far block that is one chunk above the header. hak_large_free clears it under
 * large_lock, so a concurrent free of the same pointer, which reads the header under that lock, sees a foreign
 * chunk rather than a header being unmapped. */
static void unmap_forget(struct hak_large *l)
{
    map_set((uintptr_t)l + (l->far ? HAK_CHUNK : 0), HAK_MAP_FOREIGN);
}

/* Best-fitting cached span of at least need bytes, removed from the cache; NULL if none. */
static struct hak_large *cache_take(size_t need)
{
    struct hak_large *best = NULL;
    unsigned best_i = 0;
    pthread_mutex_lock(&large_lock);
    for (unsigned i = 0; i < cache_count; i++)
        if (cache[i]->map_size >= need && (!best || cache[i]->map_size < best->map_size)) {
            best = cache[i];
            best_i = i;
        }
    if (best) {
        memmove(&cache[best_i], &cache[best_i + 1], (cache_count - best_i - 1) * sizeof cache[0]);
        cache_count--;
        cache_bytes -= best->map_size;
    }
    pthread_mutex_unlock(&large_lock);
    return best;
}

/* Alignment of 2 MiB or more: the header lives one chunk below the user pointer, which is chunk-aligned itself. */
static void *alloc_far(size_t size, size_t align)
{
    size_t body = page_round(size ? size : 1); /* at least a page: the user pointer's chunk must stay mapped */
    size_t span = HAK_CHUNK + body + align;
    void *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        errno = ENOMEM;
        return NULL;
    }
    HAK_COUNT(LARGE_CACHE_MISS, 0); /* far spans are never cached */
    HAK_COUNT(OS_MMAP, 0);
    HAK_COUNT_N(OS_MMAP_BYTES, 0, span);
    uintptr_t start = (uintptr_t)m;
    uintptr_t user = (start + HAK_CHUNK + align - 1) & ~(uintptr_t)(align - 1);
    uintptr_t base = user - HAK_CHUNK;
    if (base > start)
        hak_os_unmap(m, base - start);
    if (start + span > user + body)
        hak_os_unmap((void *)(user + body), start + span - (user + body));
    struct hak_large *l = (struct hak_large *)base;
    l->magic = HAK_LARGE_MAGIC;
    l->map_size = user + body - base;
    l->user = (void *)user;
    l->far = 1;
    l->fresh = 1;
    l->size = size;
    HAK_ON_ALLOC_LARGE(l);
    map_set(user, HAK_MAP_LARGE_FAR);
    return (void *)user;
}

void *hak_large_alloc(size_t size, size_t align, bool *fresh)
{
    if (size > PTRDIFF_MAX - 2 * HAK_CHUNK || align > ((size_t)1 << 40)) {
        HAK_ON_ABSURD_SIZE();
        errno = ENOMEM;
        return NULL;
    }
    if (align >= HAK_CHUNK) {
        void *p = alloc_far(size, align);
        if (fresh)
            *fresh = true;
        return p;
    }
    size_t off = align > LARGE_HEADER ? align : LARGE_HEADER;
    /* Whole chunks from 2 MiB on: a cached span then serves any request up to its chunk boundary. At least one byte
     * past the user pointer: malloc(0) with a large alignment must still have usable bytes (usable size 0 is what
     * large_header's callers take for "not a live block"). */
    size_t exact = page_round(off + (size ? size : 1));
    size_t need = exact >= HAK_CHUNK ? (exact + HAK_CHUNK_MASK) & ~HAK_CHUNK_MASK : exact;
    struct hak_large *l = cache_take(need);
    if (l) {
        HAK_COUNT(LARGE_CACHE_HIT, 0);
        l->fresh = 0;
    } else {
        HAK_COUNT(LARGE_CACHE_MISS, 0);
        l = hak_os_map_aligned(need, HAK_CHUNK);
        if (!l)
            return NULL;
        hak_os_hugepages(l, exact); /* not the tail of the last chunk: touching it costs 4 KiB, not 2 MiB */
        l->magic = HAK_LARGE_MAGIC;
        l->map_size = need;
        l->far = 0;
        l->fresh = 1;
        map_set((uintptr_t)l, HAK_MAP_LARGE);
    }
    l->user = (char *)l + off;
    l->size = size;
    HAK_ON_ALLOC_LARGE(l);
    if (fresh)
        *fresh = l->fresh;
    return l->user;
}

/* The header of the large span whose chunk holds p (by the chunk map), or NULL. */
static struct hak_large *span_of(const void *p)
{
    unsigned kind = hak_map_kind(p);
    uintptr_t base = (uintptr_t)p & ~HAK_CHUNK_MASK;
    if (kind == HAK_MAP_LARGE_FAR)
        base -= HAK_CHUNK;
    else if (kind != HAK_MAP_LARGE)
        return NULL;
    struct hak_large *l = (struct hak_large *)base;
    return l->magic == HAK_LARGE_MAGIC ? l : NULL;
}

/* The header of a live large block, or NULL when p is not exactly the pointer a large allocation returned. */
static struct hak_large *large_header(const void *p)
{
    struct hak_large *l = span_of(p);
    return l && l->user == p ? l : NULL;
}

void hak_large_free(void *p)
{
    pthread_mutex_lock(&large_lock);
    struct hak_large *l = large_header(p);
    if (!l) {
        struct hak_large *span = span_of(p); /* a span that is free now (cached): its block was freed before */
        int freed = span && !span->user;
        pthread_mutex_unlock(&large_lock);
        hak_invalid_free(p, freed ? "a large block freed before (double free)" : "not the start of a live hakmem large block");
        return;
    }
    HAK_ON_FREE_LARGE(l);
    l->user = NULL;
    if (l->far || l->map_size > hak_settings.large_cache_bytes) {
        unmap_forget(l);
        pthread_mutex_unlock(&large_lock);
        hak_os_unmap(l, l->map_size);
        return;
    }
    /* Spans stay resident in the cache: reusing them costs no page faults, unlike purge-and-refault. */
    struct hak_large *evict[CACHE_SLOTS + 1];
    unsigned nevict = 0;
    while (cache_count > 0 && (cache_count == CACHE_SLOTS || cache_bytes + l->map_size > hak_settings.large_cache_bytes)) {
        unmap_forget(cache[0]);
        evict[nevict++] = cache[0];
        cache_bytes -= cache[0]->map_size;
        memmove(&cache[0], &cache[1], (cache_count - 1) * sizeof cache[0]);
        cache_count--;
    }
    cache[cache_count++] = l;
    cache_bytes += l->map_size;
    pthread_mutex_unlock(&large_lock);
    for (unsigned i = 0; i < nevict; i++)
        hak_os_unmap(evict[i], evict[i]->map_size);
}

/* The size last asked for (malloc or realloc), 0 if p is not a live large block. */
size_t hak_large_requested(const void *p)
{
    struct hak_large *l = large_header(p);
    return l ? l->size : 0;
}

size_t hak_large_usable(const void *p)
{
    struct hak_large *l = large_header(p);
    if (!l)
        return 0;
    return (uintptr_t)l + l->map_size - (uintptr_t)p;
}

/* Grows or shrinks in place where the mapping allows, else moves the pages with mremap (no copy) to a new
 * 2 MiB-aligned address. Returns NULL (errno set, block untouched) if p is not a live large block or memory ran out. */
void *hak_large_realloc(void *p, size_t size)
{
    struct hak_large *l = large_header(p);
    if (!l || l->far)
        return NULL;
    size_t off = (uintptr_t)p - (uintptr_t)l;
    if (size > PTRDIFF_MAX - 2 * HAK_CHUNK) {
        errno = ENOMEM;
        return NULL;
    }
    size_t need = page_round(off + size);
    size_t old_size = l->size;
    l->size = size;
    if (need <= l->map_size) {
        /* A real shrink to under half the span gives the tail back; growing inside a roomy span (one reused from
         * the cache) keeps it, so the next steps need no mremap and no page faults. */
        if (size < old_size && need < l->map_size / 2) {
            hak_os_unmap((char *)l + need, l->map_size - need);
            HAK_ON_BYTES(-(int64_t)(l->map_size - need));
            HAK_COUNT_N(LARGE_BYTES_FREED, 0, l->map_size - need);
            l->map_size = need;
        }
        return p;
    }
    /* Grow with half again as much room so a buffer grown step by step seldom remaps; pages of the headroom
     * cost nothing until they are touched. */
    size_t want = page_round(need + need / 2);
    int saved_errno = errno;
    if (mremap(l, l->map_size, want, 0) != MAP_FAILED) {
        HAK_COUNT(OS_MREMAP, 0);
        HAK_ON_BYTES((int64_t)(want - l->map_size));
        HAK_COUNT_N(LARGE_BYTES_ALLOCATED, 0, want - l->map_size);
        l->map_size = want;
        return p;
    }
    errno = saved_errno; /* growing in place failed; moving may not, and a successful realloc leaves errno alone */
    void *dest = hak_os_map_aligned(want, HAK_CHUNK);
    if (!dest) {
        l->size = old_size;
        return NULL;
    }
    /* The old range is unmapped by the move itself: clear its map entry first, so a mapping another thread makes
     * there right after is not marked foreign by a late clear. The block is the caller's: nobody frees it now. */
    map_set((uintptr_t)l, HAK_MAP_FOREIGN);
    void *moved = mremap(l, l->map_size, want, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
    if (moved == MAP_FAILED) {
        map_set((uintptr_t)l, HAK_MAP_LARGE);
        hak_os_unmap(dest, want);
        l->size = old_size;
        errno = ENOMEM;
        return NULL;
    }
    struct hak_large *nl = moved;
    map_set((uintptr_t)nl, HAK_MAP_LARGE);
    HAK_COUNT(OS_MREMAP, 0);
    HAK_ON_BYTES((int64_t)(want - nl->map_size));
    HAK_COUNT_N(LARGE_BYTES_ALLOCATED, 0, want - nl->map_size);
    nl->map_size = want;
    nl->user = (char *)nl + off;
    return nl->user;
}

void hak_large_fork_prepare(void)
{
    pthread_mutex_lock(&large_lock);
}

void hak_large_fork_parent(void)
{
    pthread_mutex_unlock(&large_lock);
}

void hak_large_fork_child(void)
{
    pthread_mutex_init(&large_lock, NULL);
}
