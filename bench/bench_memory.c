/* bench_memory.c - memory footprint: resident bytes per 16-byte block with 1,000,000 blocks live, and how
 * much of it the allocator keeps resident after they are all freed. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench_util.h"

#define DEFAULT_BLOCKS 1000000ULL
#define DEFAULT_SIZE 16ULL

int main(int argc, char **argv)
{
    uint64_t n = DEFAULT_BLOCKS, size = DEFAULT_SIZE;
    if (parse_args(argc, argv, (uint64_t *[]){&n, &size}, 2) || n < 1 || n > (1ULL << 32) || size < 1 ||
        size > (1ULL << 20)) {
        fprintf(stderr, "usage: bench_memory [BLOCKS [SIZE]]   (defaults %llu blocks of %llu bytes)\n",
                DEFAULT_BLOCKS, DEFAULT_SIZE);
        return 2;
    }

    /* The pointer array is mmapped and touched before the baseline, so it is in rss_before and cancels out. */
    size_t array_bytes = n * sizeof(void *);
    unsigned char **blocks = mmap(NULL, array_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (blocks == MAP_FAILED) {
        fprintf(stderr, "bench_memory: mmap failed\n");
        return 1;
    }
    memset(blocks, 0, array_bytes);

    /* Let the allocator initialize before the baseline: its one-time setup is not a per-block cost. */
    void *warm = malloc((size_t)size);
    if (!warm) {
        fprintf(stderr, "bench_memory: malloc failed\n");
        return 1;
    }
    __asm__ volatile("" : : "r"(warm) : "memory");
    free(warm);

    long long before = rss_bytes();
    for (uint64_t i = 0; i < n; i++) {
        unsigned char *p = malloc((size_t)size);
        if (!p) {
            fprintf(stderr, "bench_memory: malloc(%" PRIu64 ") failed after %" PRIu64 " blocks\n", size, i);
            return 1;
        }
        memset(p, (int)(i & 0xff), (size_t)size);
        blocks[i] = p;
    }
    long long after_alloc = rss_bytes();
    uint64_t bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        bad += blocks[i][size - 1] != (unsigned char)(i & 0xff);
        free(blocks[i]);
    }
    long long after_free = rss_bytes();
    munmap(blocks, array_bytes);

    if (before < 0 || after_alloc < 0 || after_free < 0) {
        fprintf(stderr, "bench_memory: cannot read /proc/self/statm\n");
        return 1;
    }
    if (bad) {
        fprintf(stderr, "bench_memory: %" PRIu64 " blocks were corrupted\n", bad);
        return 1;
    }
    printf("rss_per_block = %.2f bytes; rss_after_free_delta_kb = %lld\n", (double)(after_alloc - before) / (double)n,
           (after_free - before) / 1024);
    return 0;
}
