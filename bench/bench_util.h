/* bench_util.h - helpers shared by the benchmark programs in bench/: random numbers, the clock, argument parsing,
 * the throughput line and the resident-set reader. None of them calls malloc, so they never disturb the allocator. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* splitmix64: turns consecutive seeds into unrelated values; used to seed the per-thread generators. */
static inline uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* xorshift64*: the benchmarks' generator on their hot paths; the state must not be 0. */
static inline uint64_t xorshift64s(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* A 64-bit random value scaled to [0, n) by multiply-shift: no division on the hot path. */
static inline uint64_t scale_below(uint64_t x, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)x * n) >> 64);
}

/* Uniform in [0, n) from an xorshift64* state. */
static inline uint64_t below(uint64_t *s, uint64_t n)
{
    return scale_below(xorshift64s(s), n);
}

/* Seconds on the monotonic clock. */
static inline double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A whole decimal number without sign; -1 if s is anything else or out of range. */
static inline int parse_u64(const char *s, uint64_t *out)
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

/* Parses the optional positional arguments argv[1..] into *vals[0..nvals-1], leaving the defaults of those not
 * given; -1 if there are more than nvals arguments or one of them is not a number for parse_u64. */
static inline int parse_args(int argc, char **argv, uint64_t *const vals[], int nvals)
{
    if (argc - 1 > nvals)
        return -1;
    for (int i = 1; i < argc; i++)
        if (parse_u64(argv[i], vals[i - 1]))
            return -1;
    return 0;
}

/* Prints "Throughput = N <what> per second" for count events in elapsed seconds, rounded. */
static inline void print_throughput(uint64_t count, double elapsed, const char *what)
{
    if (elapsed <= 0)
        elapsed = 1e-9;
    printf("Throughput = %" PRIu64 " %s per second\n", (uint64_t)((double)count / elapsed + 0.5), what);
}

/* Resident set in bytes from /proc/self/statm, read with plain syscalls so stdio does not allocate; -1 on error. */
static inline long long rss_bytes(void)
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
    long long size, resident;
    if (sscanf(buf, "%lld %lld", &size, &resident) != 2)
        return -1;
    return resident * sysconf(_SC_PAGESIZE);
}

/* The same in KiB; -1 on error. */
static inline long long rss_kb(void)
{
    long long b = rss_bytes();
    return b < 0 ? -1 : b / 1024;
}

#endif
