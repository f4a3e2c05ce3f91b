/* bench_frag.c - fragmentation: fill many 16..128-byte blocks, then in each round free every other block and
 * refill the holes with 128..512-byte blocks; reports throughput and the resident set with the final live set. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_BLOCKS 500000ULL
#define DEFAULT_ROUNDS 6ULL
#define SMALL_MIN 16
#define SMALL_MAX 128
#define LARGE_MIN 128
#define LARGE_MAX 512

static inline uint64_t xorshift64s(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

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

/* Resident set in KiB from /proc/self/statm, read with plain syscalls so stdio does not allocate. */
static long rss_kb(void)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    long size, resident;
    if (sscanf(buf, "%ld %ld", &size, &resident) != 2)
        return -1;
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
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
    if (argc > 3 || (argc >= 2 && parse_u64(argv[1], &n)) || (argc >= 3 && parse_u64(argv[2], &rounds)) ||
        n < 2 || n > (1ULL << 30)) {
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
    long rss = rss_kb();

    for (uint64_t i = 0; i < n; i++)
        bad += check_free(blocks[i]);
    munmap(blocks, n * sizeof *blocks);
    if (bad) {
        fprintf(stderr, "bench_frag: %" PRIu64 " blocks were corrupted\n", bad);
        return 1;
    }

    if (elapsed <= 0)
        elapsed = 1e-9;
    printf("Throughput = %" PRIu64 " operations per second\n", (uint64_t)((double)ops / elapsed + 0.5));
    printf("rss_kb = %ld\n", rss);
    return 0;
}
