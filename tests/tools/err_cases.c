/* Test workload for the debug checks (tests/prof_hakprof_errors.sh): each heap error, chosen by argv[1], made on
 * purpose from a noinline function with a name of its own, and a leak workload with known call sites and counts. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* noinline and noclone keep each case a frame of its own under its own name (no .constprop clones), so the
 * offending call's return address lies in the function the test looks for. */
#define CASE __attribute__((noinline, noclone))

/* Hides where a pointer came from: the compiler may neither warn about the bug (free of a stack address, a pointer
 * used after free) nor optimize the bad call away (an unused malloc/free pair is removable). */
static inline void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

/* After the bad call: keeps the call from being a tail call, whose return address would be in the caller. */
#define NO_TAIL() __asm__ volatile("" ::: "memory")

/* Leak workload, per unit of scale: leak_a leaks LEAK_A_COUNT blocks of LEAK_A_SIZE bytes, leak_b LEAK_B_COUNT of
 * LEAK_B_SIZE; nothing else the program allocates on purpose stays live. */
enum { LEAK_A_COUNT = 100, LEAK_A_SIZE = 64, LEAK_B_COUNT = 10, LEAK_B_SIZE = 4096, LEAK_MAX_SCALE = 1000 };
/* The leaked blocks stay reachable from here (a leak is a block never freed, reachable or not); a static array, so
 * the only live heap blocks the program makes on purpose are the leaks. */
static void *kept[(LEAK_A_COUNT + LEAK_B_COUNT) * LEAK_MAX_SCALE];

CASE void errcase_double_free(void)
{
    char *p = malloc(48);
    memset(p, 1, 48);
    char *again = launder(p); /* the same pointer, taken before the free: the compiler cannot see the reuse */
    free(p);
    free(again); /* ERROR double_free */
    NO_TAIL();
}

/* The first block of a class nothing else here uses (1200 bytes, and the guard's 8 more, take hakmem's 1280-byte
 * class): its refill carved more, and the next block, 1280 bytes on, sits in the thread cache, never handed out.
 * Freeing it is freeing a free block. */
CASE void errcase_free_cached(void)
{
    char *p = malloc(1200);
    memset(p, 3, 1200);
    free(launder(p + 1280)); /* ERROR free_cached */
    NO_TAIL();
    free(p);
}

CASE void *errcase_double_free_remote(void *p)
{
    free(launder(p)); /* ERROR double_free (another thread than the one that allocated and freed it) */
    NO_TAIL();
    return NULL;
}

static void *free_in_thread(void *p)
{
    return errcase_double_free_remote(p);
}

CASE void errcase_free_foreign(void)
{
    char buf[64];
    memset(buf, 2, sizeof buf);
    free(launder(buf)); /* ERROR foreign */
    NO_TAIL();
    __asm__ volatile("" : : "r"(buf) : "memory");
}

CASE void errcase_free_interior(void)
{
    char *p = malloc(64);
    memset(p, 3, 64);
    free(launder(p + 16)); /* ERROR interior */
    NO_TAIL();
    free(p);
}

CASE void errcase_free_misaligned(void)
{
    char *p = malloc(64);
    memset(p, 4, 64);
    free(launder(p + 1)); /* ERROR interior (misaligned) */
    NO_TAIL();
    free(p);
}

CASE void errcase_overflow(void)
{
    char *p = launder(malloc(24));
    memset(p, 5, 24);
    ((volatile char *)p)[24] = 'x'; /* one byte past the requested size */
    free(p); /* ERROR overflow */
    NO_TAIL();
}

CASE void errcase_overflow_realloc(void)
{
    char *p = launder(malloc(40));
    memset(p, 5, 40);
    ((volatile char *)p)[40] = 'x';
    char *q = realloc(p, 4000); /* ERROR overflow (guards are checked on realloc too) */
    NO_TAIL();
    free(launder(q));
}

CASE void errcase_overflow_large(void)
{
    size_t n = (size_t)1 << 20;
    char *p = launder(malloc(n));
    memset(p, 5, n);
    ((volatile char *)p)[n] = 'x';
    free(p); /* ERROR overflow (a large block) */
    NO_TAIL();
}

CASE void errcase_double_free_large(void)
{
    char *p = malloc((size_t)1 << 20);
    memset(p, 1, 4096);
    char *again = launder(p);
    free(p);
    free(again); /* ERROR double_free (a large block) */
    NO_TAIL();
}

CASE void errcase_write_after_free(void)
{
    char *p = launder(malloc(64));
    memset(p, 6, 64);
    volatile char *stale = launder(p);
    free(p);
    stale[40] = 'x'; /* past the free-list link and mark the allocator keeps in a free block */
    void *q = malloc(64); /* ERROR use_after_free: the same class hands the written block out again */
    NO_TAIL();
    free(launder(q));
}

/* The same through aligned_alloc, which takes its block from a class of its own choosing (128 bytes here, with the
 * guard's 8 or without): the written block must be checked before it is handed out there too. */
CASE void errcase_write_after_free_aligned(void)
{
    char *p = launder(malloc(120));
    memset(p, 6, 120);
    volatile char *stale = launder(p);
    free(p);
    stale[40] = 'x';
    void *q = aligned_alloc(32, 120); /* ERROR use_after_free_aligned */
    NO_TAIL();
    free(launder(q));
}

CASE void errcase_leak_a(void **out, long n)
{
    for (long i = 0; i < n; i++) {
        out[i] = malloc(LEAK_A_SIZE);
        __asm__ volatile("" : : "r"(out[i]) : "memory");
    }
}

CASE void errcase_leak_b(void **out, long n)
{
    for (long i = 0; i < n; i++) {
        out[i] = malloc(LEAK_B_SIZE);
        __asm__ volatile("" : : "r"(out[i]) : "memory");
    }
}

/* Blocks allocated and freed alongside the leaks, so the leak report has to tell them apart. */
CASE void errcase_no_leak(long n)
{
    for (long i = 0; i < n; i++)
        free(launder(malloc(64 + (size_t)(i % 4) * 1024)));
}

static void leak(long scale)
{
    long na = LEAK_A_COUNT * scale, nb = LEAK_B_COUNT * scale;
    /* In rounds, so the leaking sites interleave in time with blocks that are freed, as in a real program. */
    for (long r = 0; r < scale; r++) {
        errcase_leak_a(kept + r * LEAK_A_COUNT, LEAK_A_COUNT);
        errcase_leak_b(kept + na + r * LEAK_B_COUNT, LEAK_B_COUNT);
        errcase_no_leak(50);
    }
    printf("leaked %ld x %d B from errcase_leak_a, %ld x %d B from errcase_leak_b\n", na, LEAK_A_SIZE, nb,
           LEAK_B_SIZE);
}

static const char *const cases[] = {"double_free",    "double_free_remote", "double_free_large", "free_cached",
                                    "foreign",        "interior",           "misaligned",        "overflow",
                                    "overflow_realloc", "overflow_large",   "use_after_free",    "use_after_free_aligned",
                                    "leak [SCALE]"};

static int usage(void)
{
    fprintf(stderr, "usage: err_cases CASE\ncases (leak: SCALE 1..%d):", LEAK_MAX_SCALE);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        fprintf(stderr, " %s", cases[i]);
    fputc('\n', stderr);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *c = argv[1];
    if (!strcmp(c, "double_free")) {
        errcase_double_free();
    } else if (!strcmp(c, "double_free_remote")) {
        /* Allocated and freed by this thread, freed again by another one. */
        char *p = malloc(48);
        memset(p, 7, 48);
        char *again = launder(p);
        free(p);
        pthread_t t;
        if (pthread_create(&t, NULL, free_in_thread, again) != 0 || pthread_join(t, NULL) != 0) {
            perror("err_cases: pthread");
            return 1;
        }
    } else if (!strcmp(c, "free_cached")) {
        errcase_free_cached();
    } else if (!strcmp(c, "double_free_large")) {
        errcase_double_free_large();
    } else if (!strcmp(c, "overflow_realloc")) {
        errcase_overflow_realloc();
    } else if (!strcmp(c, "overflow_large")) {
        errcase_overflow_large();
    } else if (!strcmp(c, "foreign")) {
        errcase_free_foreign();
    } else if (!strcmp(c, "interior")) {
        errcase_free_interior();
    } else if (!strcmp(c, "misaligned")) {
        errcase_free_misaligned();
    } else if (!strcmp(c, "overflow")) {
        errcase_overflow();
    } else if (!strcmp(c, "use_after_free")) {
        errcase_write_after_free();
    } else if (!strcmp(c, "use_after_free_aligned")) {
        errcase_write_after_free_aligned();
    } else if (!strcmp(c, "leak")) {
        long scale = argc > 2 ? atol(argv[2]) : 1;
        if (scale < 1 || scale > LEAK_MAX_SCALE)
            return usage();
        leak(scale);
    } else {
        return usage();
    }
    /* Reached only when the error was reported (or ignored) and the program went on. */
    printf("err_cases %s: done\n", c);
    return 0;
}
