/* bench_large.c - large blocks: malloc 1..8 MiB, touch one byte per 4 KiB page, free, repeated; measures the
 * allocator's large path (mmap/munmap, caching of large regions, page-fault cost of fresh memory). */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

#define DEFAULT_ITERS 2000ULL
#define MIN_SIZE (1ULL << 20)
#define MAX_SIZE (8ULL << 20)
#define PAGE 4096

int main(int argc, char **argv)
{
    uint64_t iters = DEFAULT_ITERS;
    if (parse_args(argc, argv, (uint64_t *[]){&iters}, 1) || iters == 0) {
        fprintf(stderr, "usage: bench_large [ITERATIONS]   (default %llu)\n", DEFAULT_ITERS);
        return 2;
    }

    uint64_t rng = 0x13198a2e03707344ULL;
    unsigned sum = 0;
    double t0 = now_sec();
    for (uint64_t it = 0; it < iters; it++) {
        size_t sz = (size_t)(MIN_SIZE + below(&rng, MAX_SIZE - MIN_SIZE + 1));
        volatile unsigned char *p = malloc(sz);
        if (!p) {
            fprintf(stderr, "bench_large: malloc(%zu) failed\n", sz);
            return 1;
        }
        /* volatile: the compiler may not drop the stores, nor the malloc/free pair with them. */
        for (size_t off = 0; off < sz; off += PAGE)
            p[off] = (unsigned char)off;
        p[sz - 1] = 1;
        sum += p[0] + p[sz - 1];
        free((void *)p);
    }
    double elapsed = now_sec() - t0;

    if (sum != iters) {
        fprintf(stderr, "bench_large: blocks lost their contents\n");
        return 1;
    }
    print_throughput(iters, elapsed, "operations");
    return 0;
}
