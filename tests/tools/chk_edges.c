/* Edge cases of the prof build's debug checks, one per argument: realloc's own frees under poison, realloc of a
 * freed block, a guard overflow that also overwrites the stored size with 0xff bytes, an overflow after many
 * allocations in a new thread, a new thread whose first allocation is malloc(0), allocations after a calloc whose
 * size overflows. Prints what it observed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The compiler must not see through malloc/free pairs: the calls go through these pointers. */
static void *(*volatile do_malloc)(size_t) = malloc;
static void *(*volatile do_realloc)(void *, size_t) = realloc;
static void *(*volatile do_calloc)(size_t, size_t) = calloc;
static void (*volatile do_free)(void *) = free;

/* 200,000 allocations first (every one must still be guarded), then one byte past a 40-byte block. */
static void *overflow_late(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200000; i++)
        do_free(do_malloc(16 + (size_t)(i % 64) * 16));
    char *p = do_malloc(40);
    memset(p, 'x', 41);
    do_free(p);
    return NULL;
}

/* A thread's very first allocation is of 0 bytes: under guards it must be guarded like any other. */
static void *zero_first(void *arg)
{
    (void)arg;
    void *p = do_malloc(0);
    do_free(p);
    return p;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "realloc-move")) { /* the moved-from block is freed by realloc: no write-after-free report */
        char *p = do_malloc(40);
        memset(p, 'x', 40);
        p = do_realloc(p, 200);
        void *q = do_malloc(40), *r = do_malloc(40);
        printf("ok %d\n", p && q && r);
        do_free(p), do_free(q), do_free(r);
    } else if (!strcmp(c, "realloc-zero")) {
        char *p = do_malloc(40);
        memset(p, 'x', 40);
        do_realloc(p, 0);
        void *q = do_malloc(40);
        printf("ok %d\n", q != NULL);
        do_free(q);
    } else if (!strcmp(c, "realloc-freed")) { /* must be refused, not resized in place while on a free list */
        char *p = do_malloc(100);
        do_free(p);
        void *q = do_realloc(p, 90);
        printf("realloc returned %s\n", q ? "a block" : "NULL");
    } else if (!strcmp(c, "overflow-ff")) { /* guards: 8 bytes of 0xff past a 40-byte block */
        char *p = do_malloc(40);
        memset(p, 0xff, 48);
        do_free(p);
        printf("survived\n");
    } else if (!strcmp(c, "overflow-late")) {
        overflow_late(NULL);
        pthread_t t;
        if (pthread_create(&t, NULL, overflow_late, NULL) == 0)
            pthread_join(t, NULL);
        printf("survived\n");
    } else if (!strcmp(c, "calloc-overflow")) { /* a refused calloc must leave every later allocation guarded */
        void *q = do_calloc(7, (size_t)1 << 62); /* the product wraps to 3 * 2^62 */
        for (int i = 0; i < 3; i++) {
            char *p = do_malloc(48);
            memset(p, 'z', 48); /* in bounds */
            do_free(p);
        }
        char *o = do_malloc(48);
        memset(o, 'y', 49); /* one byte over */
        do_free(o);
        printf("calloc %s\n", q ? "returned a block" : "refused");
    } else if (!strcmp(c, "zero-first")) {
        pthread_t t;
        void *r = NULL;
        if (pthread_create(&t, NULL, zero_first, NULL) == 0)
            pthread_join(t, &r);
        printf("ok %d\n", r != NULL);
    } else {
        fprintf(stderr, "usage: chk_edges realloc-move | realloc-zero | realloc-freed | overflow-ff | overflow-late | "
                        "zero-first | calloc-overflow\n");
        return 2;
    }
    return 0;
}
