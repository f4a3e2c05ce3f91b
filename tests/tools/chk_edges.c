/* Edge cases of the prof build's debug checks, one per argument: realloc's own frees under poison, realloc of a
 * freed block, a guard overflow that also overwrites the stored size with 0xff bytes. Prints what it observed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The compiler must not see through malloc/free pairs: the calls go through these pointers. */
static void *(*volatile do_malloc)(size_t) = malloc;
static void *(*volatile do_realloc)(void *, size_t) = realloc;
static void (*volatile do_free)(void *) = free;

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
    } else {
        fprintf(stderr, "usage: chk_edges realloc-move | realloc-zero | realloc-freed | overflow-ff\n");
        return 2;
    }
    return 0;
}
