/* fork() while other threads are inside malloc/free: the child must find a consistent, unlocked heap
 * (pthread_atfork handlers), allocate, free inherited blocks, start threads, and exit cleanly. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testlib.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

enum { BUSY_THREADS = 3, INHERITED = 64, CHILD_ALARM_S = 10 };
static atomic_int stop;
static atomic_ulong busy_ops;

/* Hammer every path (small, medium, large, realloc, cross-size) so fork lands inside the allocator often. */
static void *busy(void *arg)
{
    tl_rng r = tl_rng_new((uint64_t)(uintptr_t)arg);
    enum { K = 64 };
    void *p[K] = {0};
    size_t n[K] = {0};
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        int i = (int)(tl_next(&r) % K);
        if (p[i]) {
            TCHECK(tl_check(p[i], n[i], tl_tag(p[i], n[i])) == SIZE_MAX, "busy thread: block %p/%zu damaged", p[i],
                   n[i]);
            T_FREE(p[i]);
            p[i] = NULL;
        } else {
            unsigned k = (unsigned)(tl_next(&r) % 100);
            n[i] = k == 0 ? tl_range(&r, 256 * KiB, 3 * MiB) : k < 10 ? tl_range(&r, 4 * KiB, 64 * KiB)
                                                                        : tl_range(&r, 1, 1024);
            p[i] = T_MALLOC(n[i]);
            TCHECK(p[i] != NULL, "busy thread: malloc(%zu) NULL", n[i]);
            if (p[i]) {
                /* big blocks: pattern the first 4 KiB only; the point here is lock traffic, not bandwidth */
                n[i] = n[i] > 4 * KiB ? 4 * KiB : n[i];
                tl_fill(p[i], n[i], tl_tag(p[i], n[i]));
            }
        }
        atomic_fetch_add_explicit(&busy_ops, 1, memory_order_relaxed);
    }
    for (int i = 0; i < K; i++)
        T_FREE(p[i]);
    return NULL;
}

/* The child may only use async-signal-safe output; write(2) it is. */
static void child_fail(const char *what)
{
    char buf[160];
    size_t n = 0;
    const char *pre = "test_fork child: ";
    for (const char *s = pre; *s && n < sizeof buf - 2; s++)
        buf[n++] = *s;
    for (const char *s = what; *s && n < sizeof buf - 2; s++)
        buf[n++] = *s;
    buf[n++] = '\n';
    ssize_t w = write(2, buf, n);
    (void)w;
    _exit(3);
}

/* Work done in the child, and by a thread started in the child. Returns 0 if every check held. */
static int child_work(uint64_t seed)
{
    tl_rng r = tl_rng_new(seed);
    enum { N = 2000 };
    void *p[N];
    size_t n[N];
    for (int i = 0; i < N; i++) {
        unsigned k = (unsigned)(tl_next(&r) % 200);
        n[i] = k == 0 ? tl_range(&r, 1 * MiB, 4 * MiB) : k < 10 ? tl_range(&r, 2 * KiB, 100 * KiB)
                                                                  : tl_range(&r, 0, 512);
        p[i] = T_MALLOC(n[i]);
        if (!p[i])
            return 1;
        if (n[i] > 64 * KiB) { /* large: write both ends, check only the head (keeps 50 forks fast) */
            memset((char *)p[i] + n[i] - 4096, 0x77, 4096);
            n[i] = 64 * KiB;
        }
        tl_fill(p[i], n[i], tl_tag(p[i], n[i]));
        if (i % 3 == 0) { /* free some early so blocks get reused */
            int j = (int)(tl_next(&r) % (unsigned)(i + 1));
            if (p[j]) {
                if (tl_check(p[j], n[j], tl_tag(p[j], n[j])) != SIZE_MAX)
                    return 1;
                T_FREE(p[j]);
                p[j] = NULL;
            }
        }
    }
    for (int i = 0; i < N; i++) {
        if (p[i] && tl_check(p[i], n[i], tl_tag(p[i], n[i])) != SIZE_MAX)
            return 1;
        T_FREE(p[i]);
    }
    void *c = T_CALLOC(1000, 100);
    if (!c)
        return 1;
    for (size_t i = 0; i < 100000; i++)
        if (((unsigned char *)c)[i])
            return 1;
    T_FREE(c);
    return 0;
}

static void *child_thread(void *arg)
{
    return (void *)(uintptr_t)child_work((uint64_t)(uintptr_t)arg);
}

static void *inherited[INHERITED];
static size_t inherited_n[INHERITED];

static void run_child(int iter)
{
    alarm(CHILD_ALARM_S); /* a deadlocked child dies of SIGALRM and the parent reports it */
    /* blocks the parent allocated before fork must still hold their data and be freeable here */
    for (int i = 0; i < INHERITED; i++)
        if (tl_check(inherited[i], inherited_n[i], tl_tag(inherited[i], inherited_n[i])) != SIZE_MAX)
            child_fail("inherited block damaged");
    for (int i = 0; i < INHERITED; i += 2)
        T_FREE(inherited[i]);
    if (child_work(7000 + (uint64_t)iter))
        child_fail("allocation or pattern check failed in child main thread");
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(9000 + iter)) != 0)
        child_fail("pthread_create in child failed");
    void *res;
    pthread_join(t, &res);
    if (res)
        child_fail("allocation or pattern check failed in child thread");
    /* the other half of the inherited blocks, freed after the child's thread existed */
    for (int i = 1; i < INHERITED; i += 2)
        T_FREE(inherited[i]);
    _exit(0);
}

int main(void)
{
    if (TL_TSAN) {
        /* TSan does not support starting threads in the child of a multi-threaded fork. */
        printf("test_fork: skipped under TSan\n");
        return 0;
    }
    if (TL_SANITIZER) {
        /* The sanitizer runtime's own allocator (which libc and pthread_create use even in the prefixed build)
         * takes no atfork locks: a child can inherit it locked. Seen with gcc 12's ASan: the child hangs in
         * __sanitizer::SizeClassAllocator64::GetFromAllocator inside pthread_create's calloc. Fork is covered by
         * the plain run under LD_PRELOAD. */
        printf("test_fork: skipped (the sanitizer's own malloc is not fork-safe)\n");
        return 0;
    }
    int forks = (int)tl_scaled(50, 5);
    alarm(240); /* a parent stuck behind a deadlocked allocator fails rather than waiting for the runner */
    for (int i = 0; i < INHERITED; i++) {
        inherited_n[i] = i % 8 == 7 ? (size_t)(i + 1) * 10 * KiB : (size_t)i * 24 + 1;
        inherited[i] = T_MALLOC(inherited_n[i]);
        CHECK(inherited[i] != NULL, "malloc(%zu) NULL", inherited_n[i]);
        if (!inherited[i])
            return 1;
        tl_fill(inherited[i], inherited_n[i], tl_tag(inherited[i], inherited_n[i]));
    }
    pthread_t t[BUSY_THREADS];
    for (int i = 0; i < BUSY_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, busy, (void *)(uintptr_t)(i + 1)) == 0, "pthread_create");

    int ok = 0;
    for (int i = 0; i < forks; i++) {
        /* let the busy threads get going between forks without sleeping: wait for a few hundred more ops */
        unsigned long target = atomic_load(&busy_ops) + 300;
        while (atomic_load(&busy_ops) < target)
            sched_yield();
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid < 0)
            break;
        if (pid == 0)
            run_child(i);
        int st;
        pid_t w;
        while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
            ;
        CHECK(w == pid, "waitpid: %s", strerror(errno));
        if (w != pid)
            continue;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            ok++;
            continue;
        }
        if (WIFSIGNALED(st))
            CHECK(0, "fork #%d: child killed by signal %d%s", i, WTERMSIG(st),
                  WTERMSIG(st) == SIGALRM ? " (alarm: child deadlocked or hung)" : "");
        else
            CHECK(0, "fork #%d: child exited with status %d", i, WEXITSTATUS(st));
        forks = i + 1; /* one broken child is enough: don't wait out an alarm per fork */
        break;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < BUSY_THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < INHERITED; i++) {
        CHECK(tl_check(inherited[i], inherited_n[i], tl_tag(inherited[i], inherited_n[i])) == SIZE_MAX,
              "parent's block %d damaged by a child", i);
        T_FREE(inherited[i]);
    }
    CHECK(ok == forks, "%d of %d children succeeded", ok, forks);
    int rc = TL_DONE();
    if (rc == 0)
        printf("test_fork: ok (%d forks, %lu ops in busy threads)\n", forks, atomic_load(&busy_ops));
    return rc;
}
