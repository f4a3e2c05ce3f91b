/* RSS comes back after a free-all: ~64 MiB of small blocks plus medium and large ones, touched, freed, and the
 * resident set must return to near where it started. Phase 2 repeats it with blocks of an exited thread. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include "testlib.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

typedef struct {
    void **p;
    size_t *n;
    size_t count, cap;
} blockset;

/* The bookkeeping lives in mmap'd memory, outside the allocator under test, and is unmapped before measuring. */
static void bs_init(blockset *b, size_t cap)
{
    b->p = mmap(NULL, cap * sizeof(void *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    b->n = mmap(NULL, cap * sizeof(size_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->p == MAP_FAILED || b->n == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    b->count = 0;
    b->cap = cap;
}
static void bs_release(blockset *b)
{
    munmap(b->p, b->cap * sizeof(void *));
    munmap(b->n, b->cap * sizeof(size_t));
}

/* Fill `b` with ~`total` bytes: small blocks 16..512 B, plus medium (64..512 KiB) and large (2..6 MiB) ones. */
static void allocate_all(blockset *b, size_t total, uint64_t seed)
{
    tl_rng r = tl_rng_new(seed);
    size_t small_total = total * 3 / 4, big_total = total - small_total, sum = 0;
    while (sum < small_total && b->count < b->cap) {
        size_t n = tl_range(&r, 16, 512);
        void *p = T_MALLOC(n);
        TCHECK(p != NULL, "malloc(%zu) NULL", n);
        if (!p)
            return;
        memset(p, 0xC3, n); /* touch every byte */
        b->p[b->count] = p;
        b->n[b->count++] = n;
        sum += n;
    }
    for (size_t big = 0; big < big_total && b->count < b->cap;) {
        size_t n = b->count % 3 == 0 ? tl_range(&r, 2 * MiB, 6 * MiB) : tl_range(&r, 64 * KiB, 512 * KiB);
        void *p = T_MALLOC(n);
        TCHECK(p != NULL, "malloc(%zu) NULL", n);
        if (!p)
            return;
        memset(p, 0x3C, n);
        b->p[b->count] = p;
        b->n[b->count++] = n;
        big += n;
    }
}

/* Free in a shuffled order: slabs empty out in no particular sequence, as in real programs. */
static void free_all(blockset *b, uint64_t seed)
{
    tl_rng r = tl_rng_new(seed);
    for (size_t i = b->count; i > 1; i--) {
        size_t j = (size_t)(tl_next(&r) % i);
        void *tp = b->p[i - 1];
        size_t tn = b->n[i - 1];
        b->p[i - 1] = b->p[j];
        b->n[i - 1] = b->n[j];
        b->p[j] = tp;
        b->n[j] = tn;
    }
    for (size_t i = 0; i < b->count; i++) {
        unsigned char *p = b->p[i];
        TCHECK(p[0] == p[b->n[i] - 1] && (p[0] == 0xC3 || p[0] == 0x3C), "block %p/%zu lost its contents",
               (void *)p, b->n[i]);
        T_FREE(p);
    }
    b->count = 0;
}

static size_t total_bytes;
static blockset thread_set;

static void *alloc_thread(void *arg)
{
    (void)arg;
    allocate_all(&thread_set, total_bytes / 2, 2);
    return NULL;
}

/* Phase 3's blocks: one class, allocated by main (which lives on) and freed by another thread. */
static void **remote_blocks;
static size_t remote_n;
static void *free_remote(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < remote_n; i++)
        T_FREE(remote_blocks[i]);
    return NULL;
}

/* Phase 4: many owners at once, each with its own blocks freed by one other thread, then each refills another
 * class: every owner must get its own slabs back (none may take another's note). */
enum { OWNERS = 32 };
static pthread_barrier_t owners_allocated, owners_freed, owners_done;
static void **owner_blocks[OWNERS];
static size_t owner_n;
static void *owner_thread(void *arg)
{
    void **b = owner_blocks[(uintptr_t)arg];
    for (size_t i = 0; i < owner_n; i++) {
        b[i] = T_MALLOC(1000);
        if (b[i])
            memset(b[i], 0x5A, 1000);
    }
    pthread_barrier_wait(&owners_allocated);
    pthread_barrier_wait(&owners_freed); /* main freed them all meanwhile */
    for (int i = 0; i < 4096; i++) {
        void *p = T_MALLOC(48);
        tl_escape(p);
        T_FREE(p);
    }
    pthread_barrier_wait(&owners_done); /* still alive while main looks at the RSS */
    pthread_barrier_wait(&owners_done);
    return NULL;
}

static void report(const char *phase, long before, long peak, long after, long bound_mb, size_t bytes)
{
    printf("%s: rss before %.1f MiB, with blocks %.1f MiB, after free %.1f MiB (bound +%ld MiB)\n", phase,
           before / 1048576.0, peak / 1048576.0, after / 1048576.0, bound_mb);
    fflush(stdout); /* keep the numbers ahead of a failed CHECK's stderr line in the runner's log */
    if (TL_SANITIZER) {
        printf("%s: sanitizer build, RSS not checked\n", phase);
        return;
    }
    CHECK(peak - before > (long)(bytes / 2), "%s: RSS only rose by %.1f MiB for %zu MiB of blocks; measurement broken?",
          phase, (peak - before) / 1048576.0, bytes / MiB);
    if (bound_mb < 0) {
        printf("%s: negative bound, RSS reported only\n", phase);
        return;
    }
    CHECK(after - before <= bound_mb * (long)MiB, "%s: RSS after free-all is %.1f MiB above the start (bound %ld MiB)",
          phase, (after - before) / 1048576.0, bound_mb);
}

int main(int argc, char **argv)
{
    /* How much RSS a free-all may leave behind: the allocator's small caches. Explicit on purpose:
     * argv[1] or HAK_RSS_BOUND_MB, default 8 MiB; negative = report only (run.sh uses that for allocators
     * other than hakmem: glibc keeps freed fastbin chunks, jemalloc purges after a 10 s decay). */
    long bound_mb = argc > 1 ? strtol(argv[1], NULL, 10) : tl_env_long("HAK_RSS_BOUND_MB", 8);
    total_bytes = tl_scaled(64 * MiB, 4 * MiB);
    size_t cap = total_bytes / 16 + 1024;

    /* warm up the allocator and stdio so their one-time setup is in the baseline */
    void *w = T_MALLOC(100);
    tl_escape(w);
    T_FREE(w);
    printf("test_rss: %zu MiB per phase\n", total_bytes / MiB);
    fflush(stdout);

    /* Phase 1: one thread allocates and frees everything. */
    blockset b;
    long before = tl_rss();
    bs_init(&b, cap);
    allocate_all(&b, total_bytes, 1);
    long peak = tl_rss();
    free_all(&b, 11);
    bs_release(&b);
    long after = tl_rss();
    report("same-thread", before, peak, after, bound_mb, total_bytes);

    /* Phase 2: a thread allocates and exits; main frees its blocks (frees into abandoned slabs). */
    before = tl_rss();
    bs_init(&thread_set, cap);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, alloc_thread, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    peak = tl_rss();
    free_all(&thread_set, 12);
    bs_release(&thread_set);
    after = tl_rss();
    report("exited-thread", before, peak, after, bound_mb, total_bytes / 2);

    /* Phase 3: main allocates one class, another thread frees it all, main lives on and allocates another class:
     * the slabs the other thread emptied go back (before, they stayed with main as long as it lived). */
    before = tl_rss();
    remote_n = total_bytes / 1000;
    remote_blocks = mmap(NULL, remote_n * sizeof(void *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(remote_blocks != MAP_FAILED, "mmap");
    if (remote_blocks == MAP_FAILED)
        return TL_DONE();
    for (size_t i = 0; i < remote_n; i++) {
        remote_blocks[i] = T_MALLOC(1000);
        TCHECK(remote_blocks[i] != NULL, "malloc(1000) NULL");
        memset(remote_blocks[i], 0x5A, 1000);
    }
    peak = tl_rss();
    CHECK(pthread_create(&t, NULL, free_remote, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    for (int i = 0; i < 4096; i++) { /* main goes on with another class: its refills give the emptied slabs back */
        void *p = T_MALLOC(48);
        tl_escape(p);
        T_FREE(p);
    }
    after = tl_rss();
    munmap(remote_blocks, remote_n * sizeof(void *));
    report("freed-by-another-thread", before, peak, after, bound_mb, remote_n * 1000);

    before = tl_rss();
    owner_n = total_bytes * 4 / OWNERS / 1000; /* 8 MiB each: an owner that kept its slabs shows */
    pthread_barrier_init(&owners_allocated, NULL, OWNERS + 1);
    pthread_barrier_init(&owners_freed, NULL, OWNERS + 1);
    pthread_barrier_init(&owners_done, NULL, OWNERS + 1);
    pthread_t owners[OWNERS];
    for (uintptr_t i = 0; i < OWNERS; i++) {
        owner_blocks[i] = mmap(NULL, owner_n * sizeof(void *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                               -1, 0);
        CHECK(owner_blocks[i] != MAP_FAILED, "mmap");
        CHECK(pthread_create(&owners[i], NULL, owner_thread, (void *)i) == 0, "pthread_create");
    }
    pthread_barrier_wait(&owners_allocated);
    peak = tl_rss();
    for (int i = 0; i < OWNERS; i++)
        for (size_t k = 0; k < owner_n; k++)
            T_FREE(owner_blocks[i][k]);
    pthread_barrier_wait(&owners_freed);
    pthread_barrier_wait(&owners_done);
    after = tl_rss();
    pthread_barrier_wait(&owners_done);
    for (int i = 0; i < OWNERS; i++) {
        pthread_join(owners[i], NULL);
        munmap(owner_blocks[i], owner_n * sizeof(void *));
    }
    /* Each live owner keeps a little by design (a current slab per class it used, its thread cache): 512 KiB
     * each on top of the bound. */
    report("32-owners-freed-by-another-thread", before, peak, after, bound_mb < 0 ? bound_mb : bound_mb + OWNERS / 2,
           OWNERS * owner_n * 1000);
    return TL_DONE();
}
