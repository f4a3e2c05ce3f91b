/* hakmem's public header: the allocator's own names for the malloc API.
 * Linking or preloading libhakmem replaces malloc/free themselves; these hak_ names reach hakmem explicitly. */
#ifndef HAKMEM_H
#define HAKMEM_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAKMEM_API __attribute__((visibility("default")))

HAKMEM_API void *hak_malloc(size_t size);
HAKMEM_API void hak_free(void *ptr);
HAKMEM_API void *hak_calloc(size_t nmemb, size_t size);
HAKMEM_API void *hak_realloc(void *ptr, size_t size);
HAKMEM_API void *hak_reallocarray(void *ptr, size_t nmemb, size_t size);
HAKMEM_API int hak_posix_memalign(void **out, size_t alignment, size_t size);
HAKMEM_API void *hak_aligned_alloc(size_t alignment, size_t size);
HAKMEM_API void *hak_memalign(size_t alignment, size_t size);
HAKMEM_API void *hak_valloc(size_t size);
HAKMEM_API void *hak_pvalloc(size_t size);
HAKMEM_API size_t hak_malloc_usable_size(void *ptr);

/* ---- Counters: only in the instrumented build, libhakmem_prof.so ----
 * The optimized libhakmem.so has none of these symbols; a program that may run under either can look them up
 * with dlsym(RTLD_DEFAULT, "hak_stats_read"). docs/counters.md lists every counter. */
struct hak_counter_desc {
    const char *name;    /* e.g. "refill_tls_sll_hit" */
    const char *group;   /* refill, free, cache, alloc, os, thread, gauge */
    const char *kind;    /* "scalar", "class" (one value per size class), "depth" (8 buckets), "gauge" */
    const char *meaning;
    unsigned first;      /* index of the counter's first value in the array hak_stats_read fills */
    unsigned width;      /* number of values: 1, 48 (size classes) or 8 (depth buckets) */
};
#define HAK_STATS_PROCESS 0 /* every thread of the process, live and exited */
#define HAK_STATS_THREAD 1  /* the calling thread only */
/* The counter table; returns the number of counters. */
HAKMEM_API size_t hak_stats_counters(const struct hak_counter_desc **descs);
/* The number of values hak_stats_read fills. */
HAKMEM_API size_t hak_stats_values(void);
/* Reads the counters into values[0 .. hak_stats_values()-1]; 0 on success, -1 if n is too small or scope bad. */
HAKMEM_API int hak_stats_read(uint64_t *values, size_t n, int scope);

#ifdef __cplusplus
}
#endif
#endif
