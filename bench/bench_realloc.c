/* bench_realloc.c - realloc growth: repeatedly grows a buffer from 16 bytes to 4 MiB in steps of size/8
 * (at least 16 bytes), writing each new tail and checking that older bytes survived; measures realloc. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define DEFAULT_ROUNDS 200ULL
#define START_SIZE 16
#define DEFAULT_MAX_SIZE (4ULL << 20)
#define MIN_STEP 16

/* Byte expected at offset i of a buffer in round r. */
static inline unsigned char pattern(uint64_t r, size_t i)
{
    return (unsigned char)(i * 131 + (i >> 12) + r);
}

int main(int argc, char **argv)
{
    uint64_t rounds = DEFAULT_ROUNDS, max_size = DEFAULT_MAX_SIZE;
    if (parse_args(argc, argv, (uint64_t *[]){&rounds, &max_size}, 2) || rounds < 1 || max_size < START_SIZE ||
        max_size > (1ULL << 34)) {
        fprintf(stderr, "usage: bench_realloc [ROUNDS [MAX_BYTES]]   (defaults %llu, %llu)\n", DEFAULT_ROUNDS,
                DEFAULT_MAX_SIZE);
        return 2;
    }

    uint64_t reallocs = 0, bad = 0;
    double t0 = now_sec();
    for (uint64_t r = 0; r < rounds; r++) {
        size_t size = START_SIZE;
        unsigned char *buf = malloc(size);
        if (!buf) {
            fprintf(stderr, "bench_realloc: malloc(%zu) failed\n", size);
            return 1;
        }
        for (size_t i = 0; i < size; i++)
            buf[i] = pattern(r, i);
        while (size < max_size) {
            size_t step = size / 8 < MIN_STEP ? MIN_STEP : size / 8;
            size_t nsize = size + step > max_size ? (size_t)max_size : size + step;
            unsigned char *nb = realloc(buf, nsize);
            if (!nb) {
                fprintf(stderr, "bench_realloc: realloc(%zu) failed\n", nsize);
                free(buf);
                return 1;
            }
            reallocs++;
            buf = nb;
            /* The head and the last byte of the old size must have moved along with the block. */
            for (size_t i = 0; i < START_SIZE; i++)
                bad += buf[i] != pattern(r, i);
            bad += buf[size - 1] != pattern(r, size - 1);
            for (size_t i = size; i < nsize; i++)
                buf[i] = pattern(r, i);
            size = nsize;
        }
        for (size_t i = 0; i < size; i += 4096)
            bad += buf[i] != pattern(r, i);
        free(buf);
    }
    double elapsed = now_sec() - t0;

    if (bad) {
        fprintf(stderr, "bench_realloc: %" PRIu64 " bytes did not survive realloc\n", bad);
        return 1;
    }
    print_throughput(reallocs, elapsed, "operations");
    return 0;
}
