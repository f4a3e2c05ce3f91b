/* Test workload with known call sites, for hakprof's report test: alloc_a, alloc_b and alloc_c each call malloc at
 * one line (marked SITE_A/B/C) a known number of times, and what happens to the blocks is known exactly. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* Per unit of scale (argv[1], default 1):
 *   alloc_a: 1000 blocks of 32 bytes, freed by the thread that allocated them;
 *   alloc_b:  500 blocks of 200 bytes, freed by another thread;
 *   alloc_c:  100 blocks of 5000 bytes, never freed (still live at exit). */
enum { A_COUNT = 1000, A_SIZE = 32, B_COUNT = 500, B_SIZE = 200, C_COUNT = 100, C_SIZE = 5000 };

/* noinline and noclone keep each function a frame of its own with its own name (no alloc_a.constprop.0), so the
 * return address of each malloc call lies in the function the test looks for. */
#define SITE __attribute__((noinline, noclone))

SITE void alloc_a(void **out, long n)
{
    for (long i = 0; i < n; i++) {
        out[i] = malloc(A_SIZE); /* SITE_A */
        __asm__ volatile("" : : "r"(out[i]) : "memory");
    }
}

SITE void alloc_b(void **out, long n)
{
    for (long i = 0; i < n; i++) {
        out[i] = malloc(B_SIZE); /* SITE_B */
        __asm__ volatile("" : : "r"(out[i]) : "memory");
    }
}

SITE void alloc_c(void **out, long n)
{
    for (long i = 0; i < n; i++) {
        out[i] = malloc(C_SIZE); /* SITE_C */
        __asm__ volatile("" : : "r"(out[i]) : "memory");
    }
}

struct batch {
    void **blocks;
    long n;
};

static void *free_elsewhere(void *arg)
{
    struct batch *b = arg;
    for (long i = 0; i < b->n; i++)
        free(b->blocks[i]);
    return NULL;
}

/* Kept reachable until exit so the blocks count as live, not as lost to the optimizer. */
static void **kept;

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) {
        fprintf(stderr, "usage: callsites [SCALE]\n");
        return 2;
    }
    void **a = calloc((size_t)(A_COUNT * scale), sizeof *a);
    void **b = calloc((size_t)(B_COUNT * scale), sizeof *b);
    kept = calloc((size_t)(C_COUNT * scale), sizeof *kept);
    if (!a || !b || !kept) {
        perror("callsites");
        return 1;
    }
    /* In rounds, so the three sites interleave in time as in a real program. */
    for (long r = 0; r < scale; r++) {
        alloc_a(a + r * A_COUNT, A_COUNT);
        alloc_b(b + r * B_COUNT, B_COUNT);
        alloc_c(kept + r * C_COUNT, C_COUNT);
        for (long i = 0; i < A_COUNT; i++)
            free(a[r * A_COUNT + i]);
    }
    struct batch bt = {b, B_COUNT * scale};
    pthread_t t;
    if (pthread_create(&t, NULL, free_elsewhere, &bt) != 0 || pthread_join(t, NULL) != 0) {
        fprintf(stderr, "callsites: cannot start the freeing thread\n");
        return 1;
    }
    printf("alloc_a %ld %ld same\nalloc_b %ld %ld cross\nalloc_c %ld %ld live\n", A_COUNT * scale,
           (long)A_SIZE * A_COUNT * scale, B_COUNT * scale, (long)B_SIZE * B_COUNT * scale, C_COUNT * scale,
           (long)C_SIZE * C_COUNT * scale);
    free(a);
    free(b);
    return kept[0] ? 0 : 1;
}
