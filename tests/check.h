/* Shared helpers for hakmem's test programs: failure reporting and the allocator entry points.
 * Built plain (run under LD_PRELOAD) or with -DHAK_TEST_PREFIXED (linked to sanitizer builds of alloc/). */
#ifndef HAK_TESTS_CHECK_H
#define HAK_TESTS_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#ifdef HAK_TEST_PREFIXED
/* Sanitizers intercept malloc themselves, so the sanitizer builds call hakmem by its prefixed names. */
#include "../alloc/hakmem.h"
#define T_MALLOC hak_malloc
#define T_FREE hak_free
#define T_CALLOC hak_calloc
#define T_REALLOC hak_realloc
#define T_REALLOCARRAY hak_reallocarray
#define T_POSIX_MEMALIGN hak_posix_memalign
#define T_ALIGNED_ALLOC hak_aligned_alloc
#define T_MEMALIGN hak_memalign
#define T_VALLOC hak_valloc
#define T_PVALLOC hak_pvalloc
#define T_USABLE_SIZE hak_malloc_usable_size
#else
#include <malloc.h>
#define T_MALLOC malloc
#define T_FREE free
#define T_CALLOC calloc
#define T_REALLOC realloc
#define T_REALLOCARRAY reallocarray
#define T_POSIX_MEMALIGN posix_memalign
#define T_ALIGNED_ALLOC aligned_alloc
#define T_MEMALIGN memalign
#define T_VALLOC valloc
#define T_PVALLOC pvalloc
#define T_USABLE_SIZE malloc_usable_size
#endif

/* Every failed check is counted and printed with its location; a test exits non-zero if any failed. */
static int check_failures;
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            check_failures++;                                                   \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)
#define CHECK_DONE() (check_failures ? (fprintf(stderr, "%d checks failed\n", check_failures), 1) : 0)
#endif
