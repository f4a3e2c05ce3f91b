/* Pointers of sampled blocks, which the prof build hands out past their block's start (docs/architecture.md): run
 * under a recording that samples often (HAKMEM_SAMPLE=count:2), every kind of allocation must keep its bytes
 * through realloc, report a usable size that covers the request, honour its alignment, come back zeroed from
 * calloc, and be freed by another thread. Prints one line per check ("ok ..." or "FAIL ..."), exit 1 on a failure.
 * With the argument "double": frees two blocks twice each (the prof build must report both). */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The compiler must not see through the calls: they go through these pointers. */
static void *(*volatile do_malloc)(size_t) = malloc;
static void *(*volatile do_calloc)(size_t, size_t) = calloc;
static void *(*volatile do_realloc)(void *, size_t) = realloc;
static void (*volatile do_free)(void *) = free;

/* One function per call site, so the recording can be checked site by site; the empty asm after each call keeps
 * it from becoming a tail call, which would take the site's frame off the stack. */
#define KEEP_FRAME(p) __asm__ volatile("" : : "r"(p) : "memory")
__attribute__((noinline)) void *site_plain(size_t n)
{
    void *p = do_malloc(n);
    KEEP_FRAME(p);
    return p;
}
__attribute__((noinline)) void *site_grow(void *old, size_t n)
{
    void *p = do_realloc(old, n);
    KEEP_FRAME(p);
    return p;
}
__attribute__((noinline)) void *site_zeroed(size_t n)
{
    void *p = do_calloc(1, n);
    KEEP_FRAME(p);
    return p;
}
__attribute__((noinline)) void *site_cross(size_t n)
{
    void *p = do_malloc(n);
    KEEP_FRAME(p);
    return p;
}
__attribute__((noinline)) void *site_aligned(size_t align, size_t n)
{
    void *p = NULL;
    return posix_memalign(&p, align, n) ? NULL : p;
}

static int failures;
static void check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok" : "FAIL", what);
    failures += !ok;
}

static unsigned char tag(size_t i, size_t k)
{
    return (unsigned char)(i * 31 + k * 7 + 1);
}
static void fill(unsigned char *p, size_t n, size_t i)
{
    for (size_t k = 0; k < n; k++)
        p[k] = tag(i, k);
}
static int intact(const unsigned char *p, size_t n, size_t i)
{
    for (size_t k = 0; k < n; k++)
        if (p[k] != tag(i, k))
            return 0;
    return 1;
}

#define N 3000
static unsigned char *blocks[N];
static size_t sizes[N];

static void *cross_free(void *arg)
{
    (void)arg;
    int ok = 1;
    for (size_t i = 0; i < N; i++) {
        ok &= intact(blocks[i], sizes[i], i);
        do_free(blocks[i]);
    }
    return (void *)(intptr_t)ok;
}

/* A sampled block is handed out 16 bytes into a block of the next class up: malloc(128) sampled sits in a 160-byte
 * block, so its usable size is 144 where an unsampled one has 128. That block's start, behind the pointer malloc
 * returned, must be refused by free, realloc and malloc_usable_size, and never handed out again. */
static int header_case(void)
{
    unsigned char *p = NULL, *skipped[8];
    int nskipped = 0;
    while (nskipped < 8 && (p = site_plain(128)) && malloc_usable_size(p) != 144)
        skipped[nskipped++] = p;
    check(p && malloc_usable_size(p) == 144, "one of the first malloc(128) is sampled (usable size 144)");
    for (int i = 0; i < nskipped; i++)
        do_free(skipped[i]);
    if (!p || malloc_usable_size(p) != 144)
        return 1;
    fill(p, 128, 7);
    unsigned char *start = p - 16;
    do_free(start);
    errno = 0;
    void *r = do_realloc(start, 24);
    check(r == NULL && errno == EINVAL, "realloc(block start) refused with EINVAL");
    check(malloc_usable_size(start) == 0, "malloc_usable_size(block start) is 0");
    void *again[64];
    int overlap = 0;
    for (int i = 0; i < 64; i++) {
        again[i] = site_plain(128);
        overlap |= again[i] && (unsigned char *)again[i] + 128 > start && (unsigned char *)again[i] < p + 128;
        if (again[i])
            memset(again[i], 0x5a, 128);
    }
    check(!overlap, "no later block overlaps the live sampled one");
    check(intact(p, 128, 7), "the sampled block keeps its bytes");
    for (int i = 0; i < 64; i++)
        do_free(again[i]);
    do_free(p);
    printf("survived\n");
    return failures != 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "header"))
        return header_case();
    if (argc > 1 && !strcmp(argv[1], "double")) {
        void *a = site_plain(100), *b = site_plain(100); /* under count:2 one of the two is sampled */
        do_free(a), do_free(b);
        do_free(a), do_free(b);
        printf("survived\n");
        return 0;
    }

    int ok = 1, usable = 1, aligned = 1;
    for (size_t i = 0; i < N; i++) { /* sizes 0 .. 2999, across every small class */
        sizes[i] = (i * 7) % N;
        blocks[i] = site_plain(sizes[i]);
        ok &= blocks[i] != NULL;
        if (!blocks[i])
            return 1;
        aligned &= ((uintptr_t)blocks[i] & 15) == 0;
        usable &= malloc_usable_size(blocks[i]) >= sizes[i];
        fill(blocks[i], sizes[i], i);
    }
    for (size_t i = 0; i < N; i++)
        ok &= intact(blocks[i], sizes[i], i);
    check(ok, "malloc: every block keeps its bytes");
    check(aligned, "malloc: every block is 16-byte aligned");
    check(usable, "malloc_usable_size covers every request");

    ok = usable = 1;
    for (size_t i = 0; i < N; i++) { /* grow to three times, then shrink to a half: bytes kept each time */
        size_t n = sizes[i], big = n * 3 + 5, small = n / 2 + 1;
        unsigned char *q = site_grow(blocks[i], big);
        ok &= q && intact(q, n, i);
        usable &= q && malloc_usable_size(q) >= big;
        if (!q)
            return 1;
        fill(q, big, i);
        blocks[i] = site_grow(q, small);
        ok &= blocks[i] && intact(blocks[i], small, i);
        usable &= blocks[i] && malloc_usable_size(blocks[i]) >= small;
        if (!blocks[i])
            return 1;
    }
    check(ok, "realloc: bytes kept growing and shrinking");
    check(usable, "realloc: usable size covers the new size");
    for (size_t i = 0; i < N; i++)
        do_free(blocks[i]);

    static const size_t aligns[] = {32, 64, 256, 1024, 4096};
    static const size_t asizes[] = {0, 1, 100, 1000, 5000, 70000};
    ok = aligned = usable = 1;
    for (int r = 0; r < 20; r++)
        for (size_t a = 0; a < sizeof aligns / sizeof *aligns; a++)
            for (size_t s = 0; s < sizeof asizes / sizeof *asizes; s++) {
                unsigned char *p = site_aligned(aligns[a], asizes[s]);
                ok &= p != NULL;
                if (!p)
                    return 1;
                aligned &= (uintptr_t)p % aligns[a] == 0;
                usable &= malloc_usable_size(p) >= asizes[s];
                fill(p, asizes[s], a + s);
                ok &= intact(p, asizes[s], a + s);
                do_free(p);
            }
    check(ok, "posix_memalign: blocks keep their bytes");
    check(aligned, "posix_memalign: every alignment honoured");
    check(usable, "posix_memalign: usable size covers every request");

    for (size_t i = 0; i < N; i++) { /* dirty memory first, so calloc has recycled blocks to clear */
        blocks[i] = site_plain(200);
        memset(blocks[i], 0xab, 200);
    }
    for (size_t i = 0; i < N; i++)
        do_free(blocks[i]);
    ok = 1;
    for (size_t i = 0; i < N; i++) {
        blocks[i] = site_zeroed(200);
        for (size_t k = 0; blocks[i] && k < 200; k++)
            ok &= blocks[i][k] == 0;
    }
    check(ok, "calloc: recycled blocks come back zeroed");
    for (size_t i = 0; i < N; i++)
        do_free(blocks[i]);

    for (size_t i = 0; i < N; i++) {
        sizes[i] = 8 + i % 500;
        blocks[i] = site_cross(sizes[i]);
        if (!blocks[i])
            return 1;
        fill(blocks[i], sizes[i], i);
    }
    pthread_t t;
    void *res = NULL;
    if (pthread_create(&t, NULL, cross_free, NULL) || pthread_join(t, &res))
        return 1;
    check(res != NULL, "another thread frees every block, bytes intact");
    return failures ? 1 : 0;
}
