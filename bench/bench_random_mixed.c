/* bench_random_mixed.c - single-thread random malloc/free mix: 16..1024-byte blocks in 8192 slots, each
 * operation frees an occupied slot or fills an empty one; measures the allocator's same-thread fast paths. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SLOTS 8192
#define MIN_SIZE 16
#define MAX_SIZE 1024
#define DEFAULT_OPS 10000000ULL

static void *slots[SLOTS];

static inline uint64_t xorshift64s(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, n) by multiply-shift. */
static inline uint64_t below(uint64_t *s, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)xorshift64s(s) * n) >> 64);
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t ops = DEFAULT_OPS;
    if (argc > 2 || (argc == 2 && (parse_u64(argv[1], &ops) || ops == 0))) {
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
    if (elapsed <= 0)
        elapsed = 1e-9;
    printf("Throughput = %" PRIu64 " operations per second\n", (uint64_t)((double)ops / elapsed + 0.5));
    return 0;
}
