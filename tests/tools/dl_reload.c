/* Test workload for tests/prof_trace_record.sh: the stack cache across dlclose. `dl_reload FIXED.so VARIABLE.so N`
 * loads FIXED.so, whose entry(len, cb, v, d) calls cb(v, d) from a frame of fixed size, and allocates through it
 * (the cache learns that frame's layout at that return address); then closes it and opens VARIABLE.so, whose entry
 * has the same code layout but a frame of len bytes more (CFA from rbp), usually at the same address. N times it
 * then recurses 0 or 1 times through entry at random, entry getting a random length, and leaf allocates 1000 + depth
 * bytes. A cache that kept what it learned before the dlclose charges deeper stacks to the shallower one (4,668 of
 * 50,138 did). Tries up to 50 times for VARIABLE.so to come to FIXED.so's address. Prints "depth0 A depth1 B" (the
 * truth) and whether it did. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#define SITE __attribute__((noinline, noclone))
typedef void (*entry_fn)(unsigned long len, void (*cb)(long, long), long v, long d);
static entry_fn entry;
static int depth_now;
static unsigned long long rng = 88172645463325252ull;

static unsigned rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)rng;
}
static inline void touch(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}
SITE void leaf(void)
{
    void *p = malloc(1000 + (size_t)depth_now);
    touch(p);
    free(p);
}
SITE void rec(long v, long d);
SITE void rec_next(long v, long d)
{
    if (d == 0)
        leaf();
    else
        rec(v, d - 1);
    touch(&v);
}
SITE void rec(long v, long d)
{
    entry((rnd() % 8) * 16, rec_next, v, d);
    touch(&v);
}
static entry_fn load(const char *path, void **handle)
{
    *handle = dlopen(path, RTLD_NOW);
    entry_fn e = *handle ? (entry_fn)dlsym(*handle, "entry") : NULL;
    if (!e) {
        fprintf(stderr, "dl_reload: %s: %s\n", path, dlerror());
        exit(3);
    }
    return e;
}
int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: dl_reload FIXED.so VARIABLE.so N\n");
        return 2;
    }
    long n = atol(argv[3]), truth[2] = {0, 0};
    void *h;
    entry_fn first = NULL;
    /* Until the second library lands where the first was (other mappings made meanwhile can take the place). */
    for (int attempt = 0; attempt < 50; attempt++) {
        entry = first = load(argv[1], &h);
        depth_now = 2; /* 1002 bytes: not counted */
        for (int i = 0; i < 1000; i++)
            rec(0, rnd() % 2);
        dlclose(h);
        entry = load(argv[2], &h);
        if (entry == first)
            break;
        dlclose(h);
    }
    if (entry != first)
        entry = load(argv[2], &h);
    for (long i = 0; i < n; i++) {
        depth_now = (int)(rnd() % 2);
        truth[depth_now]++;
        rec(0, depth_now);
    }
    printf("depth0 %ld depth1 %ld\n", truth[0], truth[1]);
    printf("same address: %s\n", entry == first ? "yes" : "no");
    return 0;
}
