/* The malloc API: inline fast paths (pop or push the thread's tls_sll) and every entry point, exported under
 * the standard names, the glibc __libc_ names and hakmem's own hak_ names. */
#include <errno.h>
#include <string.h>
#include "../alloc/hakmem.h"
#include "internal.h"

/* Allocation fast path: one TLS access, pop the tls_sll at byte offset tc_off of the heap (class * 16). */
static inline void *malloc_tc_off(unsigned tc_off)
{
    struct hak_tcache *tc = (struct hak_tcache *)((char *)hak_tls_heap.tc + tc_off);
    void *b = tc->head;
    if (HAK_LIKELY(b != NULL)) {
        void *next = *(void **)b;
        tc->head = next;
        tc->room++;
        /* The next allocation of this class reads next's first word: start fetching it now (NULL is harmless). */
        __builtin_prefetch(next);
        HAK_COUNT_FAST(REFILL_TLS_SLL_HIT, tc_off / sizeof(struct hak_tcache));
        HAK_ON_HANDOUT(b);
        return b;
    }
    return hak_malloc_refill(tc);
}
static inline void *malloc_class(unsigned cls)
{
    return malloc_tc_off(cls * (unsigned)sizeof(struct hak_tcache));
}

static inline void *malloc_inline(size_t size)
{
    if (HAK_LIKELY(size <= HAK_TABLE_MAX))
        return malloc_tc_off(hak_tc_off_of_table[(size + 15) >> 4]);
    if (HAK_LIKELY(size <= HAK_SMALL_MAX))
        return malloc_class(hak_size_class(size));
    return hak_large_alloc(size, 0, NULL);
}

/* Free fast path: the pointer is below 2^47 (in the map's range), the chunk map says it is in a SuperSlab, its slab
 * is ours, it is the start of a carved block (so 16-aligned too), and the cache has room. Anything else (large,
 * foreign, interior, misaligned, another thread's slab, a full cache, a tail unit) is the slow path's, which
 * validates it fully. The reject mask, the range test and the slow path are parameters: the prof build's entry
 * point passes a mask that also refuses addresses past the map, and is all ones while every free must be checked
 * (hak_prof_free_reject), so that test costs no instruction of its own. */
static inline __attribute__((always_inline)) void free_inline_with(void *p, uintptr_t reject, bool test_range,
                                                                   void (*slow)(void *))
{
    uintptr_t a = (uintptr_t)p, chunk = a >> HAK_CHUNK_SHIFT;
    if (HAK_LIKELY(!(a & reject) && (!test_range || chunk < HAK_MAP_ENTRIES) &&
                   hak_map_is_ss(chunk))) {
        struct hak_slab *s = hak_slab_of(a);
        if (HAK_LIKELY(atomic_load_explicit(&s->owner, memory_order_relaxed) ==
                           (uintptr_t)__builtin_thread_pointer() &&
                       hak_is_carved_block(s, a))) {
            struct hak_tcache *tc = (struct hak_tcache *)((char *)hak_tls_heap.tc + s->tc_off);
            HAK_FREE_CHECK(p);
            if (HAK_LIKELY(--tc->room >= 0)) {
                HAK_MARK_FREED(p);
                if (HAK_PROF_INHERITED(s)) { /* prof build: out of line, so the common path saves no registers */
                    hak_prof_push_inherited(s, p, tc);
                    return;
                }
                *(void **)p = tc->head;
                tc->head = p;
                HAK_COUNT_FAST(FREE_TLS_SLL_OWN, s->cls);
                return;
            }
            if (HAK_FREE_LOCAL_INLINE && tc->cap == 0) {
                /* Caching is off (a free-dominant phase, see spill): the block goes straight back to its slab
                 * here, without the call (frag's free rounds: 98% of frees). */
                tc->room = 0;
                hak_slab_local_free(&hak_tls_heap, s, p);
                return;
            }
            hak_free_tcache_full(p, s); /* room is -1: the list holds cap blocks */
            return;
        }
    }
    slow(p);
}
static inline __attribute__((always_inline)) void free_inline(void *p)
{
    free_inline_with(p, 0, true, hak_free_slow);
}

/* Classes whose block size is a multiple of the alignment give aligned blocks, since every slab's first block
 * is 4 KiB-aligned; bigger alignments come from a large mapping. */
static void *aligned_inline(size_t align, size_t size)
{
    if (align <= 16)
        return malloc_inline(size);
    if (align <= HAK_PAGE && size <= HAK_SMALL_MAX) {
        size_t req = size < align ? align : size;
        for (unsigned c = hak_size_class(req); c < HAK_NCLASSES; c++)
            if (hak_class_size[c] % align == 0)
                return malloc_class(c);
    }
    return hak_large_alloc(size, align, NULL);
}

static inline void *calloc_inline(size_t nmemb, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (total <= HAK_SMALL_MAX) {
        void *p = malloc_class(hak_size_class(total));
        if (p)
            memset(p, 0, total); /* recycled blocks hold old data */
        return p;
    }
    bool fresh;
    void *p = hak_large_alloc(total, 0, &fresh);
    if (p && !fresh)
        memset(p, 0, total);
    return p;
}

/* The prof build samples at the entry points. When an allocation's countdown runs out (HAK_SAMPLE_TICK), one of
 * these out-of-line functions asks whether to record it and makes it; in the optimized build the test is a
 * constant 0 and they are not compiled. */
#if defined(HAKMEM_PROF) && HAKMEM_PROF
/* The countdown ran out: is this allocation to be recorded? With guards or poison on, every allocation comes here
 * (sample_left is kept at -1, negative after any tick of a size below 2^63) and the sampler counts down trap_left. */
static inline int sample_now(size_t size)
{
    struct hak_heap *h = &hak_tls_heap;
    /* An allocation before hakmem's constructor (another library's) may come here first: the setup sets the trap
     * and the guard flag that this function and its callers (GUARD_EXTRA) read next. */
    hak_global_init();
    if (HAK_UNLIKELY(hak_prof_trap)) {
        h->sample_left = -1;
        h->trap_left = (int64_t)((uint64_t)h->trap_left - size);
        return h->trap_left < 0 && hkt_sample_decide(size, h->tid, &h->trap_left);
    }
    return h->sample_left < 0 && hkt_sample_decide(size, h->tid, &h->sample_left);
}
/* With HAKMEM_GUARD=1 every allocation comes here and asks for 8 more bytes: guard bytes and the requested
 * size follow the caller's bytes (hak_prof_guard_arm). */
#define GUARD_EXTRA(size) (hak_prof_guard ? (size) + 8 : (size))
static inline void *guarded(void *r, size_t size) /* a function: r is an allocation, evaluated once */
{
    return hak_prof_guard && r ? hak_prof_guard_arm(r, size) : r;
}
#define GUARDED(r, size) guarded((r), (size))
/* The class an allocation of size bytes (align: 0, or a power of two above 16) gets when it is not sampled. */
static unsigned nominal_class(size_t size, size_t align)
{
    if (align <= 16)
        return hak_size_class(size);
    for (unsigned c = hak_size_class(size < align ? align : size); c < HAK_NCLASSES; c++)
        if (hak_class_size[c] % align == 0)
            return c;
    return 255; /* served by a large mapping */
}
/* Poison mode: the block an allocation of size bytes (align: 0 or a power of two) will take from its class's
 * tls_sll, with the guard's extra bytes, is checked first; none for one a large mapping serves. */
static void poison_peek(size_t size, size_t align)
{
    if (!hak_prof_poison || GUARD_EXTRA(size) > HAK_SMALL_MAX)
        return;
    unsigned c = nominal_class(GUARD_EXTRA(size), align);
    if (c < HAK_NCLASSES)
        hak_prof_poison_peek_class(c);
}
/* A sampled allocation of size bytes (align: 0 or a power of two above 16; zero: calloc's). A small one is made
 * `off` bytes larger and handed out that far into its block, behind a header (hak_prof_sampled_offset), so its
 * free leaves the free fast path by itself. Its record gives the class it would have had unsampled; the refill
 * stage is that of the larger class it took its block from (a tls_sll hit unless a refill says otherwise).
 * Under the debug checks, with every allocation sampled, and for large blocks, it is made as any other and found
 * in the sampled table at its free. */
static HAK_NOINLINE void *make_sampled(size_t size, size_t align, int zero)
{
    hak_tls_heap.last_stage = HKT_STAGE_TLS_SLL;
    size_t off = align > 16 ? align : 16;
    size_t want = (size ? size : 1) + off; /* past off, so the pointer handed out is never a block's start */
    /* (An alignment above a page comes from a large mapping anyway: no offset there.) */
    if (!hak_prof_sample_plain && off <= HAK_PAGE && size <= HAK_SMALL_MAX && want <= HAK_SMALL_MAX) {
        void *p = hak_prof_sampled_offset(align > 16 ? aligned_inline(align, want) : malloc_inline(want), size, off,
                                          nominal_class(size, align));
        if (p && zero)
            memset(p, 0, size);
        return p;
    }
    void *r;
    poison_peek(size, align); /* a sampled realloc comes here directly */
    if (align > 16)
        r = GUARDED(aligned_inline(align, GUARD_EXTRA(size)), size);
    else if (zero)
        r = GUARDED(calloc_inline(1, GUARD_EXTRA(size)), size);
    else
        r = GUARDED(malloc_inline(GUARD_EXTRA(size)), size);
    hak_prof_sampled_alloc(r, size);
    return r;
}
static HAK_NOINLINE void *malloc_sampled(size_t size)
{
    if (HAK_UNLIKELY(size > SIZE_MAX - 8))
        return malloc_inline(size); /* fails with ENOMEM */
    poison_peek(size, 0);
    if (sample_now(size))
        return make_sampled(size, 0, 0);
    return GUARDED(malloc_inline(GUARD_EXTRA(size)), size);
}
static HAK_NOINLINE void *aligned_sampled(size_t align, size_t size)
{
    if (HAK_UNLIKELY(size > SIZE_MAX - 8))
        return aligned_inline(align, size);
    poison_peek(size, align);
    if (sample_now(size))
        return make_sampled(size, align > 16 ? align : 0, 0);
    return GUARDED(aligned_inline(align, GUARD_EXTRA(size)), size);
}
/* Guards, poison, or every allocation sampled: the checks come before the free itself (a block found overflowed is
 * kept out of use), then the free of a block sampled as it is gets recorded (a large one's by the large free). */
static HAK_NOINLINE void free_checked(void *p)
{
    if (!p)
        return;
    /* The free below reads the block (its free mark): start fetching it now, so that the miss overlaps the one on
     * the block's record (hak_prof_sampled_free) instead of following it. A prefetch of a bad pointer is harmless. */
    __builtin_prefetch(p, 1);
    if ((hak_prof_guard || hak_prof_poison) && !hak_prof_debug_free(p))
        return;
    if (hkt_recording && hak_map_kind(p) == HAK_MAP_SS)
        hak_prof_sampled_free(p);
    free_inline(p);
}
#define SAMPLED(call) call
#else
#define SAMPLED(call) NULL
#endif

static void *aligned_entry(size_t align, size_t size)
{
    if (HAK_SAMPLE_TICK(size))
        return SAMPLED(aligned_sampled(align, size));
    return aligned_inline(align, size);
}

void *hak_malloc(size_t size)
{
    if (HAK_SAMPLE_TICK(size))
        return SAMPLED(malloc_sampled(size));
    return malloc_inline(size);
}

#if defined(HAKMEM_PROF) && HAKMEM_PROF
/* Every free the fast path refuses comes here; with the checks on, that is every free (hak_prof_free_reject). */
static HAK_NOINLINE void free_refused(void *p)
{
    if (HAK_UNLIKELY(hak_prof_free_checks))
        free_checked(p);
    else
        hak_free_slow(p);
}
void hak_free(void *p)
{
    free_inline_with(p, hak_prof_free_reject, false, free_refused); /* the mask refuses addresses past the map */
}
#else
void hak_free(void *p)
{
    free_inline(p);
}
#endif

#if defined(HAKMEM_PROF) && HAKMEM_PROF
static HAK_NOINLINE void *calloc_sampled(size_t nmemb, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(nmemb, size, &total) || total > ((size_t)1 << 62)) {
        errno = ENOMEM;
        return NULL;
    }
    if (hak_prof_poison)
        hak_prof_poison_peek(GUARD_EXTRA(total));
    if (sample_now(total))
        return make_sampled(total, 0, 1);
    return GUARDED(calloc_inline(1, GUARD_EXTRA(total)), total);
}
#endif

void *hak_calloc(size_t nmemb, size_t size)
{
    size_t total;
    /* Refused before the countdown: a wrapped product would count it down by 2^63 or more, past the -1 that keeps
     * every allocation going out of line under guards and poison. */
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (HAK_SAMPLE_TICK(total))
        return SAMPLED(calloc_sampled(nmemb, size));
    return calloc_inline(nmemb, size);
}

/* realloc's own frees: in the prof build through hak_free, so poison, guards and sampled-block records see them. */
#if defined(HAKMEM_PROF) && HAKMEM_PROF
#define REALLOC_FREE(p) hak_free(p)
#else
#define REALLOC_FREE(p) free_inline(p)
#endif

static void *move_block(void *p, size_t old_usable, size_t size)
{
    /* A block that outgrows its class is likely to keep growing (buffers, vectors): move it with half again as
     * much room, so the next steps are answered in place instead of copying at every class boundary. */
    size_t room = size;
    if (size > old_usable && size <= HAK_SMALL_MAX && size + size / 2 <= HAK_SMALL_MAX)
        room = size + size / 2;
    HAK_POISON_PEEK(room);
    void *n = malloc_inline(room);
    if (!n)
        return NULL; /* the old block stays valid, as the standard requires */
    memcpy(n, p, old_usable < size ? old_usable : size);
    REALLOC_FREE(p);
    return n;
}

static inline void *realloc_inline(void *p, size_t size)
{
    if (!p)
        return malloc_inline(size);
    if (size == 0) { /* glibc's behaviour, which programs expect from a preloaded malloc */
        REALLOC_FREE(p);
        return NULL;
    }
    unsigned kind = hak_map_kind(p);
    if (kind == HAK_MAP_SS) {
        struct hak_slab *s = hak_slab_lookup(p);
        if (!s) {
            hak_invalid_free(p, "passed to realloc, not the start of a live hakmem block");
            errno = EINVAL;
            return NULL;
        }
        if (HAK_IS_FREED(p)) { /* prof build: a block already freed must not be resized in place or moved */
            hak_prof_double_free(p);
            errno = EINVAL;
            return NULL;
        }
        /* Shrink or grow within the block in place, unless that would strand most of it. */
        if (size <= s->bsize && (size_t)s->bsize <= 4 * size + 64) {
            HAK_COUNT(REALLOC_IN_PLACE, s->cls);
            return p;
        }
        HAK_COUNT(REALLOC_MOVED, s->cls);
        return move_block(p, s->bsize, size);
    }
    if (kind == HAK_MAP_LARGE || kind == HAK_MAP_LARGE_FAR) {
        size_t usable = hak_large_usable(p);
        if (!usable) {
            hak_invalid_free(p, "passed to realloc, not a live hakmem large block");
            errno = EINVAL;
            return NULL;
        }
        if (size > HAK_SMALL_MAX && kind == HAK_MAP_LARGE) {
            int saved_errno = errno;
            void *r = hak_large_realloc(p, size);
            if (r) {
                HAK_COUNT(REALLOC_IN_PLACE, 0);
                return r;
            }
            errno = saved_errno; /* the move may still succeed: a successful realloc leaves errno alone */
        }
        HAK_COUNT(REALLOC_MOVED, 0);
        return move_block(p, usable, size);
    }
    hak_invalid_free(p, "passed to realloc, not allocated by hakmem");
    errno = EINVAL;
    return NULL;
}

/* A sampled block given to realloc counts as freed there; the result is sampled like any allocation. */
#if defined(HAKMEM_PROF) && HAKMEM_PROF
/* With guards, realloc is malloc, copy and free: the old block's guard is checked by the free. */
static void *realloc_guarded(void *p, size_t size)
{
    if (!p)
        return hak_malloc(size);
    if (size == 0) {
        hak_free(p);
        return NULL;
    }
    unsigned kind = hak_map_kind(p);
    int live = kind == HAK_MAP_SS ? hak_slab_lookup(p) != NULL
                                  : (kind == HAK_MAP_LARGE || kind == HAK_MAP_LARGE_FAR) && hak_large_requested(p);
    if (!live) {
        hak_prof_invalid(p, kind == HAK_MAP_FOREIGN ? "passed to realloc, not allocated by hakmem"
                                                    : "passed to realloc, not the start of a live hakmem block");
        errno = EINVAL;
        return NULL;
    }
    size_t old = hak_prof_guard_usable(p);
    void *n = hak_malloc(size);
    if (!n)
        return NULL;
    memcpy(n, p, old < size ? old : size);
    hak_free(p);
    return n;
}

/* realloc by malloc, copy and free, for a block handed out at an offset (its header stays at its block's start)
 * and for a result that is to be sampled. */
static void *realloc_moving(void *p, size_t old, size_t size, int sample)
{
    if (size == 0) {
        hak_free(p);
        return NULL;
    }
    void *n = sample ? make_sampled(size, 0, 0) : malloc_inline(size);
    if (!n)
        return NULL; /* the old block stays valid */
    memcpy(n, p, old < size ? old : size);
    hak_free(p);
    return n;
}

static HAK_NOINLINE void *realloc_sampled(void *p, size_t size, int ticked)
{
    if (hak_prof_guard)
        return realloc_guarded(p, size);
    if (!p)
        return ticked ? malloc_sampled(size) : malloc_inline(size);
    size_t old = hak_prof_sampled_usable(p);
    int sample = ticked && sample_now(size);
    if (old) /* its free is recorded by hak_free */
        return realloc_moving(p, old, size, sample);
    /* A large block, or any under the debug checks or with every allocation sampled, may be sampled as it is. */
    if (hkt_recording && (hak_prof_sample_plain || hak_map_kind(p) != HAK_MAP_SS))
        hak_prof_sampled_free(p);
    if (!sample)
        return realloc_inline(p, size);
    old = hak_malloc_usable_size(p);
    if (!old)
        return realloc_inline(p, size); /* not a live block: reported there */
    return realloc_moving(p, old, size, 1);
}
#endif

void *hak_realloc(void *p, size_t size)
{
    /* Either the countdown ran out or a recording is open (the old block may be a sampled one). */
    int ticked = HAK_SAMPLE_TICK(size);
    if (ticked || HAK_REALLOC_WATCHED())
        return SAMPLED(realloc_sampled(p, size, ticked));
    return realloc_inline(p, size);
}

void *hak_reallocarray(void *p, size_t nmemb, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return hak_realloc(p, total);
}

int hak_posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment == 0 || (alignment & (alignment - 1)) || alignment % sizeof(void *))
        return EINVAL;
    void *p = aligned_entry(alignment, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *hak_aligned_alloc(size_t alignment, size_t size)
{
    if (alignment == 0 || (alignment & (alignment - 1))) {
        errno = EINVAL;
        return NULL;
    }
    return aligned_entry(alignment, size);
}

/* glibc's memalign rounds an alignment that is not a power of two up to one. */
void *hak_memalign(size_t alignment, size_t size)
{
    if (alignment & (alignment - 1)) {
        if (alignment > ((size_t)1 << 62)) {
            errno = EINVAL;
            return NULL;
        }
        alignment = (size_t)1 << (64 - __builtin_clzll(alignment));
    }
    return aligned_entry(alignment, size);
}

void *hak_valloc(size_t size)
{
    return aligned_entry(HAK_PAGE, size);
}

void *hak_pvalloc(size_t size)
{
    if (size > SIZE_MAX - HAK_PAGE) {
        errno = ENOMEM;
        return NULL;
    }
    size_t rounded = size ? (size + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1) : HAK_PAGE;
    return aligned_entry(HAK_PAGE, rounded);
}

size_t hak_malloc_usable_size(void *p)
{
#if defined(HAKMEM_PROF) && HAKMEM_PROF
    if (hak_prof_guard) /* the bytes past the requested size are the guard's */
        return hak_prof_guard_usable(p);
#endif
    unsigned kind = hak_map_kind(p);
    if (kind == HAK_MAP_SS) {
        struct hak_slab *s = hak_slab_lookup(p);
        if (s && HAK_IS_FREED(p)) /* prof build: a free block, or a sampled block's start, has no usable bytes */
            return 0;
        return s ? s->bsize : HAK_SAMPLED_USABLE(p);
    }
    if (kind == HAK_MAP_LARGE || kind == HAK_MAP_LARGE_FAR)
        return hak_large_usable(p);
    return 0;
}

#ifndef HAK_NO_OVERRIDE
/* The standard names and glibc's internal ones are aliases, so a call through any of them runs the same code. */
#define HAK_ALIAS(target) __attribute__((alias(#target), visibility("default")))
void *malloc(size_t size) HAK_ALIAS(hak_malloc);
void free(void *p) HAK_ALIAS(hak_free);
void *calloc(size_t nmemb, size_t size) HAK_ALIAS(hak_calloc);
void *realloc(void *p, size_t size) HAK_ALIAS(hak_realloc);
void *reallocarray(void *p, size_t nmemb, size_t size) HAK_ALIAS(hak_reallocarray);
int posix_memalign(void **out, size_t alignment, size_t size) HAK_ALIAS(hak_posix_memalign);
void *aligned_alloc(size_t alignment, size_t size) HAK_ALIAS(hak_aligned_alloc);
void *memalign(size_t alignment, size_t size) HAK_ALIAS(hak_memalign);
void *valloc(size_t size) HAK_ALIAS(hak_valloc);
void *pvalloc(size_t size) HAK_ALIAS(hak_pvalloc);
size_t malloc_usable_size(void *p) HAK_ALIAS(hak_malloc_usable_size);
void *__libc_malloc(size_t size) HAK_ALIAS(hak_malloc);
void __libc_free(void *p) HAK_ALIAS(hak_free);
void *__libc_calloc(size_t nmemb, size_t size) HAK_ALIAS(hak_calloc);
void *__libc_realloc(void *p, size_t size) HAK_ALIAS(hak_realloc);
void *__libc_memalign(size_t alignment, size_t size) HAK_ALIAS(hak_memalign);
void cfree(void *p) HAK_ALIAS(hak_free);
#endif
