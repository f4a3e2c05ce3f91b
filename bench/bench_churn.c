/* bench_churn.c - thread churn: short-lived threads each allocate a batch of small blocks, swap it into a
 * shared slot, free the batch of the thread before them and exit; measures thread start/exit in the allocator. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define BATCH 64
#define MIN_SIZE 16
#define MAX_SIZE 256
#define DEFAULT_CONCURRENT 2ULL
#define DEFAULT_TOTAL 20000ULL

struct batch {
    uint64_t owner;   /* index of the thread that allocated it */
    unsigned char *blocks[BATCH];
    uint32_t sizes[BATCH];
};

static _Atomic(struct batch *) shared_slot;
static atomic_uint_fast64_t bad_blocks;

static void free_batch(struct batch *b)
{
    uint64_t bad = 0;
    for (int i = 0; i < BATCH; i++) {
        unsigned char *p = b->blocks[i];
        if (p[0] != (unsigned char)b->owner || p[b->sizes[i] - 1] != (unsigned char)i)
            bad++;
        free(p);
    }
    free(b);
    if (bad)
        atomic_fetch_add(&bad_blocks, bad);
}

static void *churn_thread(void *arg)
{
    uint64_t idx = (uint64_t)(uintptr_t)arg;
    uint64_t rng = idx * 0x2545f4914f6cdd1dULL + 1;
    struct batch *b = malloc(sizeof *b);
    if (!b) {
        fprintf(stderr, "bench_churn: malloc failed\n");
        exit(1);
    }
    b->owner = idx;
    for (int i = 0; i < BATCH; i++) {
        uint32_t sz = MIN_SIZE + (uint32_t)scale_below(splitmix64(&rng), MAX_SIZE - MIN_SIZE + 1);
        unsigned char *p = malloc(sz);
        if (!p) {
            fprintf(stderr, "bench_churn: malloc(%u) failed\n", sz);
            exit(1);
        }
        p[0] = (unsigned char)idx;
        p[sz - 1] = (unsigned char)i;
        b->blocks[i] = p;
        b->sizes[i] = sz;
    }
    struct batch *prev = atomic_exchange(&shared_slot, b);
    if (prev)
        free_batch(prev);
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t conc = DEFAULT_CONCURRENT, total = DEFAULT_TOTAL;
    if (parse_args(argc, argv, (uint64_t *[]){&conc, &total}, 2) || conc < 1 || conc > 4096 || total < 1) {
        fprintf(stderr, "usage: bench_churn [THREADS [TOTAL_THREADS]]   (defaults %llu concurrent, %llu in all)\n",
                DEFAULT_CONCURRENT, DEFAULT_TOTAL);
        return 2;
    }

    /* A window of at most `conc` live threads: before starting thread i, join thread i - conc. */
    pthread_t *win = calloc(conc, sizeof(pthread_t));
    if (!win) {
        fprintf(stderr, "bench_churn: out of memory\n");
        return 1;
    }
    double t0 = now_sec();
    for (uint64_t i = 0; i < total; i++) {
        pthread_t *slot = &win[i % conc];
        if (i >= conc)
            pthread_join(*slot, NULL);
        int err = pthread_create(slot, NULL, churn_thread, (void *)(uintptr_t)i);
        if (err) {
            fprintf(stderr, "bench_churn: pthread_create: %s\n", strerror(err));
            return 1;
        }
    }
    for (uint64_t i = total > conc ? total - conc : 0; i < total; i++)
        pthread_join(win[i % conc], NULL);
    double elapsed = now_sec() - t0;

    struct batch *last = atomic_exchange(&shared_slot, NULL);
    if (last)
        free_batch(last);
    free(win);
    if (atomic_load(&bad_blocks)) {
        fprintf(stderr, "bench_churn: %" PRIuFAST64 " blocks arrived corrupted\n", (uint_fast64_t)atomic_load(&bad_blocks));
        return 1;
    }
    print_throughput(total, elapsed, "threads");
    return 0;
}
