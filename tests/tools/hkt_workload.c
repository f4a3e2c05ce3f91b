/* Test helper: a small, known allocation pattern to record under libhakmem_prof.so. N blocks of 77 bytes from the
 * main thread, the odd ones freed by a second thread (cross-thread), the even ones by main; one 1 MiB block. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Global, so the compiler cannot pair a malloc with its free and drop both. */
static char **blocks;
static long nblocks;

static void *free_odd(void *arg)
{
    (void)arg;
    for (long i = 1; i < nblocks; i += 2)
        free(blocks[i]);
    return NULL;
}

int main(int argc, char **argv)
{
    nblocks = argc > 1 ? atol(argv[1]) : 100;
    if (nblocks < 1) {
        fprintf(stderr, "usage: hkt_workload [N]\n");
        return 2;
    }
    blocks = calloc((size_t)nblocks, sizeof *blocks);
    if (!blocks)
        return 1;
    for (long i = 0; i < nblocks; i++) {
        blocks[i] = malloc(77);
        if (!blocks[i])
            return 1;
        memset(blocks[i], (int)i, 77);
    }
    char *large = malloc(1 << 20);
    if (!large)
        return 1;
    memset(large, 1, 1 << 20);
    pthread_t t;
    if (pthread_create(&t, NULL, free_odd, NULL) != 0)
        return 1;
    pthread_join(t, NULL);
    for (long i = 0; i < nblocks; i += 2)
        free(blocks[i]);
    free(large);
    free(blocks);
    return 0;
}
