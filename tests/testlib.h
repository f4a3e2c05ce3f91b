/* Helpers shared by hakmem's test programs: size scaling, random numbers, fill patterns, RSS, thread-safe checks.
 * Header-only (everything static inline) so each test stays a single source file built by the Makefile's rule. */
#ifndef HAK_TESTS_TESTLIB_H
#define HAK_TESTS_TESTLIB_H
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"

/* Sanitizer builds still run every workload, but RSS bounds are meaningless there (shadow memory counts in RSS). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TL_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TL_SANITIZER 1
#endif
#endif
#ifndef TL_SANITIZER
#define TL_SANITIZER 0
#endif
#if defined(__SANITIZE_THREAD__)
#define TL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TL_TSAN 1
#endif
#endif
#ifndef TL_TSAN
#define TL_TSAN 0
#endif

/* HAK_TEST_SCALE (percent, default 100) shrinks the work so sanitizer and valgrind runs stay under 20 s.
 * Read it from main before starting threads (getenv is not safe against a concurrent setenv). */
static inline int tl_scale(void)
{
    const char *s = getenv("HAK_TEST_SCALE");
    int v = s && *s ? atoi(s) : 100;
    return v < 1 ? 1 : v;
}
static inline size_t tl_scaled(size_t n, size_t min)
{
    size_t v = (size_t)((unsigned long long)n * (unsigned)tl_scale() / 100u);
    return v < min ? min : v;
}
static inline long tl_env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtol(s, NULL, 0) : dflt;
}
/* HAK_TEST_SKIP=a,b,c names sections a test may skip: only for validating the tests against allocators that
 * lack a function (jemalloc has no pvalloc); never set when testing hakmem. */
static inline int tl_skip(const char *section)
{
    const char *s = getenv("HAK_TEST_SKIP");
    size_t n = strlen(section);
    while (s && *s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == n && memcmp(s, section, n) == 0) {
            fprintf(stderr, "section %s skipped (HAK_TEST_SKIP)\n", section);
            return 1;
        }
        s = e ? e + 1 : NULL;
    }
    return 0;
}

/* glibc's promise (and hakmem's decision): 16-byte alignment for every size. HAK_TEST_WEAK_ALIGN=1 relaxes it
 * to C's rule (the largest power of two <= size, at most 16), for validating the tests against jemalloc. */
static inline size_t tl_min_align(size_t size)
{
    if (size >= 16 || tl_env_long("HAK_TEST_WEAK_ALIGN", 0) == 0)
        return 16;
    size_t a = 1;
    while (a * 2 <= size)
        a *= 2;
    return a;
}

/* xorshift64*: each thread owns its generator, so runs are reproducible per seed. */
typedef struct {
    uint64_t s;
} tl_rng;
static inline uint64_t tl_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}
static inline tl_rng tl_rng_new(uint64_t seed)
{
    tl_rng r = {tl_mix(seed) | 1};
    return r;
}
static inline uint64_t tl_next(tl_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}
/* Uniform-ish in [lo, hi]. */
static inline size_t tl_range(tl_rng *r, size_t lo, size_t hi)
{
    return lo + (size_t)(tl_next(r) % (uint64_t)(hi - lo + 1));
}

/* Fill patterns: byte i of a block tagged T is byte (i % 8) of tl_word(T, i / 8), so a prefix stays valid when
 * a block moves (realloc) and a block written by one owner cannot pass for another's. */
static inline uint64_t tl_word(uint64_t tag, size_t k)
{
    uint64_t w = tl_mix(tag ^ ((uint64_t)k * 0xD1B54A32D192ED03ULL));
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}
static inline unsigned char tl_byte(uint64_t tag, size_t i)
{
    uint64_t w = tl_mix(tag ^ ((uint64_t)(i >> 3) * 0xD1B54A32D192ED03ULL));
    return (unsigned char)(w >> ((i & 7) * 8));
}
/* A tag that ties the pattern to a block's address and size. */
static inline uint64_t tl_tag(const void *p, size_t n)
{
    return tl_mix((uint64_t)(uintptr_t)p ^ ((uint64_t)n << 40) ^ n);
}
static inline void tl_fill_range(void *p, size_t from, size_t to, uint64_t tag)
{
    unsigned char *b = p;
    size_t i = from;
    for (; i < to && (i & 7); i++)
        b[i] = tl_byte(tag, i);
    for (; i + 8 <= to; i += 8) {
        uint64_t w = tl_word(tag, i >> 3);
        memcpy(b + i, &w, 8);
    }
    for (; i < to; i++)
        b[i] = tl_byte(tag, i);
}
static inline void tl_fill(void *p, size_t n, uint64_t tag)
{
    tl_fill_range(p, 0, n, tag);
}
/* Offset of the first byte in [from, to) that differs from the pattern, or SIZE_MAX if all match. */
static inline size_t tl_check_range(const void *p, size_t from, size_t to, uint64_t tag)
{
    const unsigned char *b = p;
    size_t i = from;
    for (; i < to && (i & 7); i++)
        if (b[i] != tl_byte(tag, i))
            return i;
    for (; i + 8 <= to; i += 8) {
        uint64_t w = tl_word(tag, i >> 3), got;
        memcpy(&got, b + i, 8);
        if (got != w)
            break;
    }
    for (; i < to; i++)
        if (b[i] != tl_byte(tag, i))
            return i;
    return SIZE_MAX;
}
static inline size_t tl_check(const void *p, size_t n, uint64_t tag)
{
    return tl_check_range(p, 0, n, tag);
}

/* Keep the compiler from deleting stores to, or the allocation of, a block it can prove is freed unread. */
static inline void tl_escape(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}
/* Hide where a pointer came from (so free() of a stack address compiles under -Werror). */
static inline void *tl_launder(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}
/* A size the compiler cannot see, so huge requests don't trip -Walloc-size-larger-than. */
static inline size_t tl_opaque(size_t n)
{
    __asm__ volatile("" : "+r"(n));
    return n;
}

/* Resident set size in bytes from /proc/self/statm, read without stdio so the measurement does not allocate. */
static inline long tl_rss(void)
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
    char *sp = strchr(buf, ' ');
    if (!sp)
        return -1;
    return strtol(sp + 1, NULL, 10) * sysconf(_SC_PAGESIZE);
}

/* CHECK for worker threads: check.h's counter is a plain int, so threads count here and main folds it in. */
static atomic_long tl_failures __attribute__((unused));
#define TCHECK(cond, ...)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            if (atomic_fetch_add(&tl_failures, 1) < 20) {                                  \
                flockfile(stderr);                                                         \
                fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
                fprintf(stderr, __VA_ARGS__);                                              \
                fputc('\n', stderr);                                                       \
                funlockfile(stderr);                                                       \
            }                                                                              \
        }                                                                                  \
    } while (0)
/* CHECK_DONE() that also counts the threads' failures. */
static inline int tl_done(void)
{
    long n = atomic_load(&tl_failures);
    CHECK(n == 0, "%ld checks failed in threads", n);
    return CHECK_DONE();
}
#define TL_DONE() tl_done()
#endif
