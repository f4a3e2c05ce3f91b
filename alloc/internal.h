/* What the files of alloc/ share beyond the layout: settings, slow-path entry points, locks and reports.
 * Nothing outside alloc/ includes it; the module's face is hakmem.h. */
#ifndef HAK_INTERNAL_H
#define HAK_INTERNAL_H
#include <pthread.h>
#include <stdbool.h>
#include "layout.h"
#include "count.h"

#pragma GCC visibility push(hidden)

#define HAK_NOINLINE __attribute__((noinline))
#define HAK_COLD __attribute__((cold, noinline))
/* Slab fields an owner writes while other threads may read them (state, carved) use relaxed atomics. */
#define HAK_RELAXED_LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define HAK_RELAXED_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* HAKMEM_* settings, read once from the environment when the allocator first initializes (docs/settings.md). */
enum { HAK_ON_ERROR_REPORT = 0, HAK_ON_ERROR_ABORT = 1, HAK_ON_ERROR_IGNORE = 2 };
struct hak_settings {
    uint32_t tls_sll_cap;     /* HAKMEM_TLS_SLL_CAP: most blocks a thread caches per class */
    uint32_t partial_scan;    /* HAKMEM_PARTIAL_SCAN: owned slabs examined per refill before taking a new one */
    uint32_t ss_cache;        /* HAKMEM_SS_CACHE: empty SuperSlabs kept mapped (purged) for reuse */
    uint32_t large_cache_mb;  /* HAKMEM_LARGE_CACHE_MB: freed large spans kept mapped for reuse */
    size_t large_cache_bytes; /* the same in bytes */
    uint32_t hugepages;       /* HAKMEM_HUGEPAGES: ask for transparent huge pages on large spans */
    uint32_t on_error;        /* HAKMEM_ON_ERROR: report, abort or ignore an invalid free */
    /* Instrumented build only (read in both, used only by libhakmem_prof.so): */
    uint32_t stats;           /* HAKMEM_STATS: publish counters in a stats segment */
    const char *stats_dir;    /* HAKMEM_STATS_DIR */
    uint32_t stats_print;     /* HAKMEM_STATS_PRINT: print the table at exit */
    const char *stats_file;   /* HAKMEM_STATS_FILE: where that table goes instead of stderr */
    const char *record;       /* HAKMEM_RECORD: the recording's path (trace/) */
    const char *record_root_pid; /* HAKMEM_RECORD_ROOT_PID: the process hakprof started */
    const char *sample;       /* HAKMEM_SAMPLE: sampling spec */
    uint32_t sample_seed;     /* HAKMEM_SAMPLE_SEED */
    uint32_t stack_depth;     /* HAKMEM_STACK_DEPTH */
    uint32_t snapshot_ms;     /* HAKMEM_SNAPSHOT_MS */
    const char *record_signal; /* HAKMEM_RECORD_SIGNAL */
    uint32_t guard;           /* HAKMEM_GUARD: guard bytes past the requested size, checked on free and realloc */
    uint32_t poison;          /* HAKMEM_POISON: freed blocks filled with a pattern checked when handed out */
    uint32_t record_paused;   /* HAKMEM_RECORD_PAUSED */
};
extern struct hak_settings hak_settings;
void hak_settings_load(void);

/* One-time process setup; cheap to call again. */
void hak_global_init(void);

/* Slow paths called from the inline fast paths in api.c. */
void *hak_malloc_refill(struct hak_tcache *tc); /* tc: the calling thread's tls_sll of the class, found empty */
void hak_free_slow(void *p);
void hak_free_tcache_full(void *p, struct hak_slab *s);
void *hak_large_alloc(size_t size, size_t align, bool *fresh);
void hak_large_free(void *p);
void *hak_large_realloc(void *p, size_t size);
size_t hak_large_usable(const void *p);
size_t hak_large_requested(const void *p);
void hak_large_fork_prepare(void);
void hak_large_fork_parent(void);
void hak_large_fork_child(void);

/* SuperSlabs and slabs (superslab.c). Carving reports which refill stage produced the slab. */
enum hak_carve_source { HAK_CARVE_EXISTING, HAK_CARVE_SS_CACHE, HAK_CARVE_SS_OS };
struct hak_slab *hak_slab_carve(struct hak_heap *h, unsigned cls, enum hak_carve_source *src);
void hak_slab_release(struct hak_slab *s);
struct hak_slab *hak_slab_lookup(const void *p); /* validated; NULL if p is not a block start */
struct hak_slab *hak_slab_block_of(const void *p, uintptr_t *block); /* the carved block p points into */
void hak_ss_fork_prepare(void);
void hak_ss_fork_parent(void);
void hak_ss_fork_child_unlock(void);
void hak_ss_fork_child(const struct hak_heap *keep, const struct hak_heap *keep_too);

/* Abandonment and adoption of slabs whose owner thread exited (thread.c). */
void hak_slab_abandon(struct hak_slab *s);
struct hak_slab *hak_slab_adopt(struct hak_heap *h, unsigned cls);
bool hak_slab_release_if_empty(struct hak_slab *s);
uint32_t hak_tcache_cap(unsigned cls);
void hak_abandoned_reclaim(void);
void hak_heap_init(struct hak_heap *h);
void *hak_orphan_malloc(unsigned cls);

/* A slab whose every block came back by other threads' frees while its owner lives: the last remote free notes
 * the class for that owner in a small table (refill.c), and the owner's next refill of another class gives such
 * slabs back. Without it, a thread that allocates a class once and lets another thread free it all kept that
 * memory as long as it lived. An owner's entry is its own (keyed by its id, found by a short probe), so owners
 * never consume each other's notes; a full neighbourhood drops a note (the slabs then go back at the owner's
 * exit or its next refill of that class). */
void hak_reclaim_note(uintptr_t owner, unsigned cls);
uint64_t hak_reclaim_take(uintptr_t owner); /* the classes noted for owner since it last looked; 0 if none */
void hak_reclaim_forget(uintptr_t owner);   /* at the owner's exit: its entry is free again */

/* Owner-side slab operations shared by refill, free and thread exit (refill.c). */
uint32_t hak_slab_drain_remote(struct hak_slab *s);
/* The owner's slab has no block out: it goes back to its SuperSlab unless it is the class's current slab. */
void hak_slab_emptied(struct hak_heap *h, struct hak_slab *s);
/* A same-thread block goes back into its slab (ss_local). Inline: the optimized free fast path does this itself
 * while caching is off, and the slow paths call it per block. */
static inline void hak_slab_local_free(struct hak_heap *h, struct hak_slab *s, void *p)
{
    *(void **)p = s->free;
    s->free = p;
    HAK_ON_BYTES(-(int64_t)s->bsize);
    uint32_t used = HAK_USED(s) - 1u;
    HAK_SET_USED(s, used);
    if (HAK_UNLIKELY(used == 0))
        hak_slab_emptied(h, s);
}
/* The free fast path does an ss_local free itself while caching is off; the prof build's counts and checks
 * of that path stay in hak_free_tcache_full. */
#if defined(HAKMEM_PROF) && HAKMEM_PROF
#define HAK_FREE_LOCAL_INLINE 0
#else
#define HAK_FREE_LOCAL_INLINE 1
#endif
void hak_heap_link_slab(struct hak_heap *h, struct hak_slab *s, bool as_current);
void hak_heap_unlink_slab(struct hak_heap *h, struct hak_slab *s);
void *hak_heap_refill(struct hak_heap *h, unsigned cls);

/* OS memory (os.c). */
void *hak_os_map_aligned(size_t size, size_t align);
void hak_os_unmap(void *p, size_t size);
void hak_os_hugepages(void *p, size_t size);
void hak_os_purge(void *p, size_t size);

/* Reports go straight to fd 2 with a formatter that never allocates (report.c). */
void hak_report(const char *fmt, ...);
/* The same formatting into dst (NUL-terminated, at most room - 1 bytes); returns the length. */
size_t hak_format(char *dst, size_t room, const char *fmt, ...);
void hak_invalid_free(void *p, const char *why);

#pragma GCC visibility pop
#endif
