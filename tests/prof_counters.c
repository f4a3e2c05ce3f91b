/* Truth test of the counter build: workloads whose exact counts are known (same-thread frees, cross-thread frees,
 * threads started and joined, a free-all that empties SuperSlabs) must show exactly those counts, read in-process
 * and, while the workload is paused, from the stats segment by a second process (tests/tools/hkc_dump).
 * Runs under LD_PRELOAD=libhakmem_prof.so; usage: prof_counters PATH_TO_HKC_DUMP */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"
#include "../alloc/hakmem.h"

extern char **environ;

static size_t (*stats_counters)(const struct hak_counter_desc **);
static size_t (*stats_values)(void);
static int (*stats_read)(uint64_t *, size_t, int);
static const struct hak_counter_desc *descs;
static size_t ndescs, nvalues;

static const struct hak_counter_desc *desc(const char *name)
{
    for (size_t i = 0; i < ndescs; i++)
        if (!strcmp(descs[i].name, name))
            return &descs[i];
    fprintf(stderr, "prof_counters: no counter named %s\n", name);
    exit(1);
}

static uint64_t val(const uint64_t *v, const char *name, unsigned idx)
{
    const struct hak_counter_desc *d = desc(name);
    return v[d->first + (d->width > 1 ? idx : 0)];
}

/* Small allocations of a class: tls_sll hits plus every refill stage (each refill hands out one block). */
static uint64_t allocs(const uint64_t *v, unsigned cls)
{
    static const char *const stages[] = {"refill_tls_sll_hit", "refill_slab_free", "refill_remote_drain",
                                         "refill_partial", "refill_adopt", "refill_new_slab", "refill_ss_cache",
                                         "refill_ss_os"};
    uint64_t n = 0;
    for (unsigned i = 0; i < sizeof stages / sizeof stages[0]; i++)
        n += val(v, stages[i], cls);
    return n;
}

static uint64_t *snap(int scope)
{
    /* The snapshot buffers come from mmap so that taking a snapshot allocates nothing. */
    uint64_t *v = mmap(NULL, nvalues * sizeof *v, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (v == MAP_FAILED || stats_read(v, nvalues, scope) != 0) {
        fprintf(stderr, "prof_counters: hak_stats_read failed\n");
        exit(1);
    }
    return v;
}

static void drop(uint64_t *v)
{
    munmap(v, nvalues * sizeof *v);
}

static void **array(size_t n)
{
    void **a = mmap(NULL, n * sizeof *a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED)
        exit(1);
    return a;
}

/* ---- 1. same-thread: N blocks of one class allocated and freed by this thread ---- */
static void same_thread(void)
{
    const size_t n = 100000, size = 48;
    const unsigned cls = 2; /* 48 bytes */
    void **a = array(n);
    uint64_t *t0 = snap(HAK_STATS_THREAD);
    for (size_t i = 0; i < n; i++)
        a[i] = T_MALLOC(size);
    for (size_t i = 0; i < n; i++)
        T_FREE(a[i]);
    uint64_t *t1 = snap(HAK_STATS_THREAD);
    CHECK(allocs(t1, cls) - allocs(t0, cls) == n, "allocations of class 48: %llu, expected %zu",
          (unsigned long long)(allocs(t1, cls) - allocs(t0, cls)), n);
    uint64_t same = val(t1, "free_same_thread", cls) - val(t0, "free_same_thread", cls);
    uint64_t cross = val(t1, "free_cross_thread", cls) - val(t0, "free_cross_thread", cls);
    uint64_t paths = val(t1, "free_tls_sll", cls) + val(t1, "free_ss_local", cls) - val(t0, "free_tls_sll", cls) -
                     val(t0, "free_ss_local", cls);
    CHECK(same == n, "same-thread frees %llu, expected %zu", (unsigned long long)same, n);
    CHECK(cross == 0, "cross-thread frees %llu, expected 0", (unsigned long long)cross);
    CHECK(paths == n, "tls_sll + ss_local frees %llu, expected %zu", (unsigned long long)paths, n);
    CHECK(val(t1, "free_ss_remote", cls) == val(t0, "free_ss_remote", cls), "no remote frees expected");
    drop(t0);
    drop(t1);
    munmap(a, n * sizeof *a);
}

/* ---- 2. cross-thread: M blocks allocated by a thread that stays alive, freed by this one ---- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase;
static void **cross_blocks;
static const size_t cross_n = 50000;

static void *cross_owner(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < cross_n; i++)
        cross_blocks[i] = T_MALLOC(96);
    pthread_mutex_lock(&mu);
    phase = 1;
    pthread_cond_broadcast(&cv);
    while (phase != 2) /* stay alive (owning its slabs) until the frees are done and checked */
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* Runs hkc_dump on this process and returns the value of one "name[idx]" line, or UINT64_MAX. */
static int dump_self(const char *dump, char *out, size_t outlen)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    char *argv[] = {(char *)dump, pid, NULL};
    /* The reader must not run under the prof library itself: drop LD_PRELOAD from its environment. */
    char *env[256];
    size_t ne = 0;
    for (char **e = environ; *e && ne < 255; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) != 0)
            env[ne++] = *e;
    env[ne] = NULL;
    pid_t child;
    int rc = posix_spawn(&child, dump, &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return -1;
    }
    size_t len = 0;
    ssize_t r;
    while (len < outlen - 1 && (r = read(fds[0], out + len, outlen - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = 0;
    close(fds[0]);
    int status;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static uint64_t dumped(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, key, klen) && p[klen] == ' ')
            return strtoull(p + klen + 1, NULL, 10);
    return UINT64_MAX;
}

static void cross_thread(const char *dump)
{
    const unsigned cls = 5; /* 96 bytes */
    cross_blocks = array(cross_n);
    uint64_t *p0 = snap(HAK_STATS_PROCESS);
    pthread_t t;
    pthread_create(&t, NULL, cross_owner, NULL);
    pthread_mutex_lock(&mu);
    while (phase != 1)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < cross_n; i++)
        T_FREE(cross_blocks[i]);
    uint64_t *p1 = snap(HAK_STATS_PROCESS);
    CHECK(allocs(p1, cls) - allocs(p0, cls) == cross_n, "allocations of class 96: %llu, expected %zu",
          (unsigned long long)(allocs(p1, cls) - allocs(p0, cls)), cross_n);
    uint64_t cross = val(p1, "free_cross_thread", cls) - val(p0, "free_cross_thread", cls);
    uint64_t remote = val(p1, "free_ss_remote", cls) - val(p0, "free_ss_remote", cls);
    uint64_t same = val(p1, "free_same_thread", cls) - val(p0, "free_same_thread", cls);
    CHECK(cross == cross_n, "cross-thread frees %llu, expected %zu", (unsigned long long)cross, cross_n);
    CHECK(remote == cross_n, "ss_remote frees %llu, expected %zu", (unsigned long long)remote, cross_n);
    CHECK(same == 0, "same-thread frees %llu, expected 0", (unsigned long long)same);

    /* The workload is paused (the owner waits, this thread waits for the reader): the segment read by another
     * process must show exactly what this process reads of itself. */
    static char text[1 << 20];
    int rc = dump_self(dump, text, sizeof text);
    CHECK(rc == 0, "hkc_dump exited with %d", rc);
    if (rc == 0) {
        static const char *const keys[] = {"free_cross_thread", "free_ss_remote", "free_same_thread",
                                           "refill_tls_sll_hit", "free_tls_sll"};
        for (unsigned k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            char key[80];
            snprintf(key, sizeof key, "%s[%u]", keys[k], cls);
            uint64_t there = dumped(text, key), here = val(p1, keys[k], cls);
            CHECK(there == here, "%s: segment says %llu, in-process %llu", key, (unsigned long long)there,
                  (unsigned long long)here);
        }
        uint64_t there = dumped(text, "thread_started"), here = val(p1, "thread_started", 0);
        CHECK(there == here, "thread_started: segment says %llu, in-process %llu", (unsigned long long)there,
              (unsigned long long)here);
    }
    pthread_mutex_lock(&mu);
    phase = 2;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(t, NULL);
    drop(p0);
    drop(p1);
}

/* ---- 3. K threads started and joined ---- */
static void *one_alloc(void *arg)
{
    (void)arg;
    void *volatile p = T_MALLOC(32); /* volatile: the compiler may not drop the pair */
    T_FREE(p);
    return NULL;
}

static void threads(void)
{
    const unsigned k = 64;
    uint64_t *p0 = snap(HAK_STATS_PROCESS);
    for (unsigned i = 0; i < k; i++) {
        pthread_t t;
        pthread_create(&t, NULL, one_alloc, NULL);
        pthread_join(t, NULL);
    }
    uint64_t *p1 = snap(HAK_STATS_PROCESS);
    uint64_t started = val(p1, "thread_started", 0) - val(p0, "thread_started", 0);
    uint64_t exited = val(p1, "thread_exited", 0) - val(p0, "thread_exited", 0);
    CHECK(started == k, "threads started %llu, expected %u", (unsigned long long)started, k);
    CHECK(exited == k, "threads exited %llu, expected %u", (unsigned long long)exited, k);
    CHECK(val(p1, "threads_live", 0) == val(p0, "threads_live", 0), "live threads %llu, before %llu",
          (unsigned long long)val(p1, "threads_live", 0), (unsigned long long)val(p0, "threads_live", 0));
    drop(p0);
    drop(p1);
}

/* ---- 3b. many threads alive at once: every one's counts are visible while they all live ---- */
static pthread_barrier_t many_ready;
static pthread_mutex_t many_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t many_cv = PTHREAD_COND_INITIALIZER;
static int many_go;
enum { MANY_THREADS = 700, MANY_EACH = 5 }; /* 700: more than the 512 counter slots the segment once had */

static void *many_alloc(void *arg)
{
    (void)arg;
    void *volatile b[MANY_EACH];
    for (int i = 0; i < MANY_EACH; i++)
        b[i] = T_MALLOC(208);
    pthread_barrier_wait(&many_ready);
    pthread_mutex_lock(&many_mu);
    while (!many_go)
        pthread_cond_wait(&many_cv, &many_mu);
    pthread_mutex_unlock(&many_mu);
    for (int i = 0; i < MANY_EACH; i++)
        T_FREE(b[i]);
    return NULL;
}

static void many_threads(const char *dump)
{
    const unsigned cls = 10; /* 208 bytes: the 224-byte class */
    static pthread_t t[MANY_THREADS];
    unsigned started = 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_barrier_init(&many_ready, NULL, MANY_THREADS + 1);
    uint64_t *p0 = snap(HAK_STATS_PROCESS);
    for (; started < MANY_THREADS; started++)
        if (pthread_create(&t[started], &attr, many_alloc, NULL) != 0)
            break;
    CHECK(started == MANY_THREADS, "only %u of %d threads could be started", started, MANY_THREADS);
    if (started == MANY_THREADS) {
        pthread_barrier_wait(&many_ready); /* every thread holds its blocks and waits */
        uint64_t *p1 = snap(HAK_STATS_PROCESS);
        uint64_t n = allocs(p1, cls) - allocs(p0, cls);
        CHECK(n == (uint64_t)MANY_THREADS * MANY_EACH, "with %d threads alive: allocations of class 224 %llu, "
              "expected %d", MANY_THREADS, (unsigned long long)n, MANY_THREADS * MANY_EACH);
        static char text[1 << 20];
        int rc = dump_self(dump, text, sizeof text);
        CHECK(rc == 0, "hkc_dump exited with %d", rc);
        char key[64];
        snprintf(key, sizeof key, "refill_tls_sll_hit[%u]", cls);
        uint64_t there = dumped(text, key), here = val(p1, "refill_tls_sll_hit", cls);
        CHECK(rc != 0 || there == here, "%s with %d threads alive: segment says %llu, in-process %llu", key,
              MANY_THREADS, (unsigned long long)there, (unsigned long long)here);
        drop(p1);
    }
    pthread_mutex_lock(&many_mu);
    many_go = 1;
    pthread_cond_broadcast(&many_cv);
    pthread_mutex_unlock(&many_mu);
    for (unsigned i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    pthread_attr_destroy(&attr);
    drop(p0);
}

/* ---- 4. a free-all that empties SuperSlabs ---- */
static size_t fill_n;
static void *fill_and_free(void *arg)
{
    void **a = arg;
    for (size_t i = 0; i < fill_n; i++)
        a[i] = T_MALLOC(16);
    for (size_t i = 0; i < fill_n; i++)
        T_FREE(a[i]);
    return NULL;
}

static void free_all(void)
{
    fill_n = (size_t)64 << 20 >> 4; /* 64 MiB of 16-byte blocks: 32 SuperSlabs */
    void **a = array(fill_n);
    uint64_t *p0 = snap(HAK_STATS_PROCESS);
    pthread_t t;
    pthread_create(&t, NULL, fill_and_free, a);
    pthread_join(t, NULL);
    uint64_t *p1 = snap(HAK_STATS_PROCESS);
    uint64_t live0 = val(p0, "ss_live", 0), live1 = val(p1, "ss_live", 0), peak = val(p1, "ss_peak", 0);
    CHECK(live1 == live0, "SuperSlabs live after the free-all: %llu, before: %llu", (unsigned long long)live1,
          (unsigned long long)live0);
    /* 64 MiB of blocks need 32 SuperSlabs of space at once, wherever they come from. */
    CHECK(peak >= 32, "SuperSlab peak %llu, expected at least 32", (unsigned long long)peak);
    uint64_t given_back = val(p1, "os_munmap_bytes", 0) + val(p1, "os_madvise_bytes", 0) -
                          val(p0, "os_munmap_bytes", 0) - val(p0, "os_madvise_bytes", 0);
    CHECK(given_back >= ((uint64_t)60 << 20), "only %llu bytes went back to the OS", (unsigned long long)given_back);
    uint64_t frees = val(p1, "free_same_thread", 0) - val(p0, "free_same_thread", 0);
    CHECK(frees == fill_n, "same-thread frees of 16-byte blocks %llu, expected %zu", (unsigned long long)frees,
          fill_n);
    drop(p0);
    drop(p1);
    munmap(a, fill_n * sizeof *a);
}

/* ---- 5. totals never go backwards: read while chains of threads hand slabs over (each thread frees the blocks
 * of the thread before it, in the slabs it adopted: leftover frees), and compare every counter with the last read */
enum { CHAINS = 3, CHAIN_BLOCKS = 3000 };
static atomic_int chains_stop;
static void *chain_link(void *arg)
{
    void **prev = arg;
    void **mine = array(CHAIN_BLOCKS);
    for (size_t i = 0; i < CHAIN_BLOCKS; i++)
        mine[i] = T_MALLOC(16 + (i % 8) * 16);
    if (prev) {
        for (size_t i = 0; i < CHAIN_BLOCKS; i++)
            T_FREE(prev[i]);
        munmap(prev, CHAIN_BLOCKS * sizeof *prev);
    }
    return mine;
}
static void *chain(void *arg)
{
    (void)arg;
    void *blocks = NULL;
    while (!atomic_load(&chains_stop)) {
        pthread_t t;
        if (pthread_create(&t, NULL, chain_link, blocks) != 0 || pthread_join(t, &blocks) != 0)
            exit(1);
    }
    void **last = blocks;
    for (size_t i = 0; last && i < CHAIN_BLOCKS; i++)
        T_FREE(last[i]);
    return NULL;
}
static void no_going_back(void)
{
    pthread_t t[CHAINS];
    for (int i = 0; i < CHAINS; i++)
        CHECK(pthread_create(&t[i], NULL, chain, NULL) == 0, "pthread_create");
    uint64_t *last = snap(HAK_STATS_PROCESS);
    unsigned reads = 0, back = 0;
    while (reads < 20000) {
        uint64_t *now = snap(HAK_STATS_PROCESS);
        reads++;
        for (size_t d = 0; d < ndescs; d++) {
            if (!strcmp(descs[d].kind, "gauge")) /* levels go down by design */
                continue;
            for (unsigned k = 0; k < descs[d].width; k++) {
                unsigned j = descs[d].first + k;
                if (now[j] < last[j] && back++ < 5)
                    CHECK(0, "%s[%u] went back from %llu to %llu", descs[d].name, k, (unsigned long long)last[j],
                          (unsigned long long)now[j]);
            }
        }
        drop(last);
        last = now;
    }
    atomic_store(&chains_stop, 1);
    for (int i = 0; i < CHAINS; i++)
        pthread_join(t[i], NULL);
    uint64_t *end = snap(HAK_STATS_PROCESS);
    uint64_t leftover = 0;
    for (unsigned c = 0; c < 48; c++)
        leftover += val(end, "free_owner_leftover", c);
    CHECK(leftover > 0, "the chains made no leftover frees: the test did not exercise adopted slabs");
    CHECK(back == 0, "%u counter values went back over %u reads", back, reads);
    drop(last);
    drop(end);
}

/* ---- 5b. an adopted slab, exactly: thread A allocates 300 blocks of 320 bytes, frees 100 and exits with 200 out;
 * this thread frees 50 of them (into the abandoned slabs: cross-thread); thread B adopts the slabs (the 50 wait on
 * their remote lists, the 100 on the free lists), allocates and frees 400 of its own and frees A's last 150
 * (leftovers: cross-thread although B owns the slabs). Same-thread 500, cross-thread 200, leftovers 150. */
enum { ADOPT_A = 300, ADOPT_A_FREES = 100, ADOPT_MAIN_FREES = 50, ADOPT_B = 400, ADOPT_SIZE = 300 };
static void **adopt_blocks;
static void *adopt_first(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < ADOPT_A; i++)
        adopt_blocks[i] = T_MALLOC(ADOPT_SIZE);
    for (size_t i = 0; i < ADOPT_A_FREES; i++)
        T_FREE(adopt_blocks[i]);
    return NULL;
}
static void *adopt_second(void *arg)
{
    (void)arg;
    void **mine = array(ADOPT_B);
    for (size_t i = 0; i < ADOPT_B; i++)
        mine[i] = T_MALLOC(ADOPT_SIZE);
    for (size_t i = 0; i < ADOPT_B; i++)
        T_FREE(mine[i]);
    for (size_t i = ADOPT_A_FREES + ADOPT_MAIN_FREES; i < ADOPT_A; i++)
        T_FREE(adopt_blocks[i]);
    munmap(mine, ADOPT_B * sizeof *mine);
    return NULL;
}
static void adopted_exactly(void)
{
    const unsigned cls = 12; /* 300 bytes: the 320-byte class */
    adopt_blocks = array(ADOPT_A);
    uint64_t *p0 = snap(HAK_STATS_PROCESS);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, adopt_first, NULL) == 0 && pthread_join(t, NULL) == 0, "thread A");
    for (size_t i = ADOPT_A_FREES; i < ADOPT_A_FREES + ADOPT_MAIN_FREES; i++)
        T_FREE(adopt_blocks[i]);
    CHECK(pthread_create(&t, NULL, adopt_second, NULL) == 0 && pthread_join(t, NULL) == 0, "thread B");
    uint64_t *p1 = snap(HAK_STATS_PROCESS);
#define ADOPT_DELTA(name) (val(p1, name, cls) - val(p0, name, cls))
    CHECK(ADOPT_DELTA("refill_adopt") > 0, "thread B adopted no slab: the test did not exercise adoption");
    CHECK(ADOPT_DELTA("free_same_thread") == ADOPT_A_FREES + ADOPT_B, "same-thread frees %llu, expected %d",
          (unsigned long long)ADOPT_DELTA("free_same_thread"), ADOPT_A_FREES + ADOPT_B);
    CHECK(ADOPT_DELTA("free_cross_thread") == ADOPT_A - ADOPT_A_FREES, "cross-thread frees %llu, expected %d",
          (unsigned long long)ADOPT_DELTA("free_cross_thread"), ADOPT_A - ADOPT_A_FREES);
    CHECK(ADOPT_DELTA("free_owner_leftover") == ADOPT_A - ADOPT_A_FREES - ADOPT_MAIN_FREES,
          "leftover frees %llu, expected %d", (unsigned long long)ADOPT_DELTA("free_owner_leftover"),
          ADOPT_A - ADOPT_A_FREES - ADOPT_MAIN_FREES);
#undef ADOPT_DELTA
    drop(p0);
    drop(p1);
    munmap(adopt_blocks, ADOPT_A * sizeof *adopt_blocks);
}

/* ---- 6. one count per event: an invalid free counts once, a large block shows in the bytes-in-use peak at once,
 * and an allocation aligned to 2 MiB counts as a large-cache miss (alloc_large = hits + misses) ---- */
static void one_count_each(void)
{
    uint64_t *a = snap(HAK_STATS_PROCESS);
    char on_stack[64];
    char *volatile bad = on_stack; /* volatile: the compiler may not see that it frees a stack address */
    T_FREE(bad);                   /* reported on stderr, and refused */
    void *big = T_MALLOC(24u << 20);
    uint64_t *b = snap(HAK_STATS_PROCESS);
    CHECK(val(b, "free_invalid", 0) - val(a, "free_invalid", 0) == 1, "an invalid free counted %llu times",
          (unsigned long long)(val(b, "free_invalid", 0) - val(a, "free_invalid", 0)));
    CHECK(val(b, "bytes_in_use_peak", 0) >= (24u << 20), "bytes_in_use_peak %llu with a 24 MiB block live",
          (unsigned long long)val(b, "bytes_in_use_peak", 0));
    T_FREE(big);
    void *far = NULL;
    CHECK(T_POSIX_MEMALIGN(&far, 2u << 20, 100) == 0, "posix_memalign(2 MiB)");
    T_FREE(far);
    uint64_t *c = snap(HAK_STATS_PROCESS);
    CHECK(val(c, "alloc_large", 0) == val(c, "large_cache_hit", 0) + val(c, "large_cache_miss", 0),
          "alloc_large %llu, cache hits %llu + misses %llu", (unsigned long long)val(c, "alloc_large", 0),
          (unsigned long long)val(c, "large_cache_hit", 0), (unsigned long long)val(c, "large_cache_miss", 0));
    drop(a);
    drop(b);
    drop(c);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: prof_counters PATH_TO_HKC_DUMP (run under LD_PRELOAD=libhakmem_prof.so)\n");
        return 2;
    }
    stats_counters = (size_t(*)(const struct hak_counter_desc **))dlsym(RTLD_DEFAULT, "hak_stats_counters");
    stats_values = (size_t(*)(void))dlsym(RTLD_DEFAULT, "hak_stats_values");
    stats_read = (int (*)(uint64_t *, size_t, int))dlsym(RTLD_DEFAULT, "hak_stats_read");
    if (!stats_counters || !stats_values || !stats_read) {
        fprintf(stderr, "prof_counters: hak_stats_* not found: run under LD_PRELOAD=libhakmem_prof.so\n");
        return 1;
    }
    ndescs = stats_counters(&descs);
    nvalues = stats_values();
    same_thread();
    cross_thread(argv[1]);
    threads();
    many_threads(argv[1]);
    free_all();
    no_going_back();
    adopted_exactly();
    one_count_each();
    if (!check_failures)
        printf("prof_counters: ok\n");
    return CHECK_DONE();
}
