/* Early and unusual callers: a constructor that allocates before main, a thread whose first call is malloc,
 * thread-exit destructors that allocate, the dynamic loader allocating inside dlopen, libc's own allocations. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

/* ---- before main --------------------------------------------------------------------------------------------- */

static int ctor_ran;
static const char *ctor_error; /* the first thing that went wrong before main */
static void *ctor_keep[8]; /* allocated in the constructor, checked and freed in main */
static const size_t ctor_sizes[8] = {1, 24, 200, 4096, 70000, 1 << 20, 3 << 20, 0};

__attribute__((constructor(101))) static void early_ctor(void)
{
    ctor_ran = 1;
    for (int i = 0; i < 8; i++) {
        ctor_keep[i] = T_MALLOC(ctor_sizes[i]);
        if (!ctor_keep[i]) {
            ctor_error = "malloc returned NULL";
            continue;
        }
        if ((uintptr_t)ctor_keep[i] & (tl_min_align(ctor_sizes[i]) - 1))
            ctor_error = "malloc returned a misaligned block";
        tl_fill(ctor_keep[i], ctor_sizes[i], tl_tag(ctor_keep[i], ctor_sizes[i]));
    }
    /* the rest of the API, allocated and released before main */
    unsigned char *c = T_CALLOC(100, 10);
    if (!c)
        ctor_error = "calloc returned NULL";
    for (int i = 0; c && i < 1000; i++)
        if (c[i])
            ctor_error = "calloc memory not zero";
    void *r = T_REALLOC(c, 5000);
    if (!r)
        ctor_error = "realloc returned NULL";
    T_FREE(r);
    void *a = NULL;
    if (T_POSIX_MEMALIGN(&a, 4096, 100) != 0 || ((uintptr_t)a & 4095))
        ctor_error = "posix_memalign failed";
    T_FREE(a);
}

/* After main returns and every default-priority destructor (the allocator's, if it has one) ran:
 * allocation must still work. A failure here can only be reported through the exit status. */
__attribute__((destructor(101))) static void late_dtor(void)
{
    for (size_t n = 1; n <= (1 << 22); n *= 8) {
        void *p = T_MALLOC(n);
        if (!p) {
            static const char msg[] = "test_early: malloc failed in a late destructor\n";
            ssize_t w = write(2, msg, sizeof msg - 1);
            (void)w;
            _exit(1);
        }
        tl_fill(p, n, 5);
        if (tl_check(p, n, 5) != SIZE_MAX)
            _exit(1);
        T_FREE(p);
    }
}

/* ---- a thread whose first act is malloc, and a TSD destructor that allocates ----------------------------------- */

static pthread_key_t key;
static _Atomic(void *) from_dtor; /* a block allocated in a thread-exit destructor, freed by main */
static atomic_int dtor_runs;

static void tsd_dtor(void *v)
{
    /* runs during thread exit, possibly after the allocator's own per-thread teardown */
    T_FREE(v);
    void *p = T_MALLOC(333);
    if (p)
        tl_fill(p, 333, 333);
    void *old = NULL;
    if (!atomic_compare_exchange_strong(&from_dtor, &old, p))
        T_FREE(p);
    void *q = T_MALLOC(50);
    tl_escape(q);
    T_FREE(q);
    atomic_fetch_add(&dtor_runs, 1);
}

static void *first_malloc_thread(void *arg)
{
    (void)arg;
    void *p = T_MALLOC(48); /* the very first thing this thread does */
    if (!p)
        return NULL;
    tl_fill(p, 48, 48);
    void *tsd = T_MALLOC(64);
    pthread_setspecific(key, tsd);
    return p; /* main checks and frees it: freed by a thread other than its (by then dead) owner */
}

static void test_threads(void)
{
    CHECK(pthread_key_create(&key, tsd_dtor) == 0, "pthread_key_create");
    for (int i = 0; i < 8; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, first_malloc_thread, NULL) == 0, "pthread_create");
        void *res = NULL;
        pthread_join(t, &res);
        CHECK(res != NULL, "thread's first malloc returned NULL");
        if (res) {
            CHECK(((uintptr_t)res & 15) == 0, "thread's first malloc(48) misaligned: %p", res);
            CHECK(tl_check(res, 48, 48) == SIZE_MAX, "block of an exited thread damaged");
            T_FREE(res);
        }
        void *d = atomic_exchange(&from_dtor, NULL);
        CHECK(d != NULL, "malloc in a thread-exit destructor returned NULL");
        if (d) {
            CHECK(tl_check(d, 333, 333) == SIZE_MAX, "block from a thread-exit destructor damaged");
            T_FREE(d);
        }
    }
    CHECK(atomic_load(&dtor_runs) == 8, "TSD destructor ran %d times, want 8", atomic_load(&dtor_runs));
    pthread_key_delete(key);
}

/* ---- the loader and libc allocate through malloc too (and must get memory that free() accepts) ---------------- */

static void test_loader_and_libc(void)
{
    void *m = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    CHECK(m != NULL, "dlopen(libm.so.6): %s", dlerror());
    if (m) {
        double (*fcos)(double) = (double (*)(double))dlsym(m, "cos");
        CHECK(fcos != NULL, "dlsym(cos): %s", dlerror());
        if (fcos)
            CHECK(fcos(0.0) == 1.0, "cos(0) = %g", fcos(0.0));
        CHECK(dlclose(m) == 0, "dlclose(libm)");
    }
    /* a library probably not yet loaded, so the loader really maps it and allocates its link map */
    void *z = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    if (z) {
        const char *(*zv)(void) = (const char *(*)(void))dlsym(z, "zlibVersion");
        CHECK(zv != NULL && zv() != NULL && zv()[0] != 0, "zlibVersion via dlsym");
        CHECK(dlclose(z) == 0, "dlclose(libz)");
    }
    /* a failing dlopen allocates its error message */
    void *none = dlopen("libhakmem-test-does-not-exist.so", RTLD_NOW);
    CHECK(none == NULL, "dlopen of a missing library succeeded");
    const char *err = dlerror();
    CHECK(err != NULL && strlen(err) > 10, "dlerror after failed dlopen");

    /* libc's own allocations go to the process's malloc; release them with plain free() (never T_FREE, which in
     * the prefixed sanitizer build is hakmem while libc used the sanitizer's malloc). */
    for (int i = 0; i < 1000; i++) {
        char src[64];
        snprintf(src, sizeof src, "string number %d with some padding", i);
        char *d = strdup(src);
        CHECK(d != NULL && strcmp(d, src) == 0, "strdup");
        free(d);
    }
    char *s = NULL;
    int n = asprintf(&s, "%0*d", 100000, 7);
    CHECK(n == 100000 && s != NULL && s[0] == '0' && s[99999] == '7', "asprintf of 100000 chars");
    free(s);
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL, "fopen: %s", strerror(errno));
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        int lines = 0;
        while (getline(&line, &cap, f) > 0)
            lines++;
        CHECK(lines > 5, "read %d lines of /proc/self/maps", lines);
        free(line);
        fclose(f);
    }
    DIR *dir = opendir("/");
    CHECK(dir != NULL, "opendir(/)");
    if (dir) {
        int entries = 0;
        while (readdir(dir))
            entries++;
        CHECK(entries > 2, "readdir");
        closedir(dir);
    }
    char *cwd = getcwd(NULL, 0); /* glibc mallocs the buffer */
    CHECK(cwd != NULL, "getcwd(NULL, 0)");
    free(cwd);
    printf("test_early: stdout works with a %s\n", "formatted string");
}

int main(void)
{
    CHECK(ctor_ran, "constructor(101) did not run");
    CHECK(ctor_error == NULL, "in constructor(101): %s", ctor_error);
    for (int i = 0; i < 8; i++) {
        if (!ctor_keep[i])
            continue;
        CHECK(tl_check(ctor_keep[i], ctor_sizes[i], tl_tag(ctor_keep[i], ctor_sizes[i])) == SIZE_MAX,
              "block of %zu allocated before main damaged", ctor_sizes[i]);
        T_FREE(ctor_keep[i]);
    }
    test_threads();
    test_loader_and_libc();
    int rc = CHECK_DONE();
    if (rc == 0)
        printf("test_early: ok\n");
    return rc;
}
