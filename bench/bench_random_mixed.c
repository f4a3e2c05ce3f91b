/* bench_random_mixed.c - single-thread random malloc/free mix: 16..1024-byte blocks in 8192 slots, each
 * operation frees an occupied slot or fills an empty one; measures the allocator's same-thread fast paths. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

#define SLOTS 8192
#define MIN_SIZE 16
#define MAX_SIZE 1024
#define DEFAULT_OPS 10000000ULL

static void *slots[SLOTS];

int main(int argc, char **argv)
{
    uint64_t ops = DEFAULT_OPS;
    if (parse_args(argc, argv, (uint64_t *[]){&ops}, 1) || ops == 0) {
        fprintf(stderr, "usage: bench_random_mixed [OPS]   (default %llu)\n", DEFAULT_OPS);
        return 2;
    }

    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    double t0 = now_sec();
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t k = below(&rng, SLOTS);
        if (slots[k]) {
            free(slots[k]);
            slots[k] = NULL;
        } else {
            size_t sz = MIN_SIZE + (size_t)below(&rng, MAX_SIZE - MIN_SIZE + 1);
            unsigned char *p = malloc(sz);
            if (!p) {
                fprintf(stderr, "bench_random_mixed: malloc(%zu) failed\n", sz);
                return 1;
            }
            p[0] = (unsigned char)sz;
            p[sz - 1] = (unsigned char)i;
            slots[k] = p;
        }
    }
    double elapsed = now_sec() - t0;

    for (int k = 0; k < SLOTS; k++)
        free(slots[k]);
    print_throughput(ops, elapsed, "operations");
    return 0;
}
