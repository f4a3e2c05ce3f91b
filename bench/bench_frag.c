/* bench_frag.c - fragmentation: fill many 16..128-byte blocks, then in each round free every other block and
 * refill the holes with 128..512-byte blocks; reports throughput and the resident set with the final live set. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench_util.h"

#define DEFAULT_BLOCKS 500000ULL
#define DEFAULT_ROUNDS 6ULL
#define SMALL_MIN 16
#define SMALL_MAX 128
#define LARGE_MIN 128
#define LARGE_MAX 512

static unsigned char *alloc_fill(uint64_t *rng, size_t lo, size_t hi)
{
    size_t sz = lo + (size_t)below(rng, hi - lo + 1);
    unsigned char *p = malloc(sz);
    if (!p) {
        fprintf(stderr, "bench_frag: malloc(%zu) failed\n", sz);
        exit(1);
    }
    uint16_t tag = (uint16_t)sz;
    memcpy(p, &tag, sizeof tag);
    p[sz - 1] = (unsigned char)(sz * 7);
    return p;
}

/* Frees a block after checking that its size tag and last byte survived; returns 1 if they did not. */
static int check_free(unsigned char *p)
{
    uint16_t sz;
    memcpy(&sz, p, sizeof sz);
    int bad = sz < SMALL_MIN || sz > LARGE_MAX || p[sz - 1] != (unsigned char)(sz * 7);
    free(p);
    return bad;
}

int main(int argc, char **argv)
{
    uint64_t n = DEFAULT_BLOCKS, rounds = DEFAULT_ROUNDS;
    if (parse_args(argc, argv, (uint64_t *[]){&n, &rounds}, 2) || n < 2 || n > (1ULL << 30)) {
        fprintf(stderr, "usage: bench_frag [BLOCKS [ROUNDS]]   (defaults %llu, %llu)\n", DEFAULT_BLOCKS,
                DEFAULT_ROUNDS);
        return 2;
    }

    /* The pointer array comes from mmap so it is not part of the allocator's heap. */
    unsigned char **blocks = mmap(NULL, n * sizeof *blocks, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                  -1, 0);
    if (blocks == MAP_FAILED) {
        fprintf(stderr, "bench_frag: mmap failed\n");
        return 1;
    }

    uint64_t rng = 0x243f6a8885a308d3ULL;
    uint64_t ops = 0, bad = 0;
    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        blocks[i] = alloc_fill(&rng, SMALL_MIN, SMALL_MAX);
    ops += n;
    /* Alternating parity: round 0 punches holes among the small blocks and the larger refills cannot use
     * them; round 1 frees the surviving small blocks, leaving their pages empty (or reusable only by
     * small requests); later rounds churn the large blocks. */
    for (uint64_t r = 0; r < rounds; r++) {
        uint64_t first = r & 1;
        for (uint64_t i = first; i < n; i += 2)
            bad += check_free(blocks[i]);
        for (uint64_t i = first; i < n; i += 2)
            blocks[i] = alloc_fill(&rng, LARGE_MIN, LARGE_MAX);
        ops += 2 * ((n - first + 1) / 2);   /* one free and one malloc per hole */
    }
    double elapsed = now_sec() - t0;
    long long rss = rss_kb();

    for (uint64_t i = 0; i < n; i++)
        bad += check_free(blocks[i]);
    munmap(blocks, n * sizeof *blocks);
    if (bad) {
        fprintf(stderr, "bench_frag: %" PRIu64 " blocks were corrupted\n", bad);
        return 1;
    }

    print_throughput(ops, elapsed, "operations");
    printf("rss_kb = %lld\n", rss);
    return 0;
}
