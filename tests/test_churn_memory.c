/* Memory must stay bounded while thousands of short-lived threads free each other's blocks (Larson's pattern):
 * a dead thread's slabs have to be reused or returned, never leaked one generation after another. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include "testlib.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

enum { BATCH = 96, WINDOW = 4 };
typedef struct batch {
    struct batch *next;
    void *p[BATCH];
    size_t n[BATCH];
} batch;

static pthread_mutex_t mb_mu = PTHREAD_MUTEX_INITIALIZER;
static batch *mailbox; /* guarded by mb_mu */
static atomic_ulong allocated, freed;

static void free_batch(batch *b)
{
    for (int i = 0; i < BATCH; i++) {
        size_t bad = tl_check(b->p[i], b->n[i], tl_tag(b->p[i], b->n[i]));
        TCHECK(bad == SIZE_MAX, "block %p/%zu differs at byte %zu", b->p[i], b->n[i], bad);
        T_FREE(b->p[i]);
    }
    atomic_fetch_add(&freed, BATCH);
    T_FREE(b);
}

/* Many size classes per thread, so a leaking allocator strands a slab per class per thread. */
static void *churn_thread(void *arg)
{
    tl_rng r = tl_rng_new((uint64_t)(uintptr_t)arg);
    batch *mine = T_MALLOC(sizeof *mine);
    TCHECK(mine != NULL, "batch NULL");
    if (!mine)
        return NULL;
    for (int i = 0; i < BATCH; i++) {
        size_t n = i % 32 == 0 ? tl_range(&r, 8 * KiB, 128 * KiB) : tl_range(&r, 8, 1024);
        void *p = T_MALLOC(n);
        TCHECK(p != NULL, "malloc(%zu) NULL", n);
        if (!p) {
            n = 0;
            p = T_MALLOC(1);
        }
        tl_fill(p, n, tl_tag(p, n));
        mine->p[i] = p;
        mine->n[i] = n;
    }
    /* some same-thread traffic too, freed before exit */
    for (int i = 0; i < 64; i++) {
        void *t = T_MALLOC(tl_range(&r, 16, 512));
        tl_escape(t);
        T_FREE(t);
    }
    atomic_fetch_add(&allocated, BATCH);
    pthread_mutex_lock(&mb_mu);
    batch *prev = mailbox;
    if (prev)
        mailbox = prev->next;
    mine->next = mailbox;
    mailbox = mine;
    pthread_mutex_unlock(&mb_mu);
    if (prev)
        free_batch(prev);
    return NULL;
}

static unsigned long next_id;

/* One round: `threads` threads through a window of WINDOW, then every remaining batch freed by main. */
static void round_of(size_t threads)
{
    pthread_t win[WINDOW];
    for (size_t i = 0; i < threads; i++) {
        if (i >= WINDOW)
            pthread_join(win[i % WINDOW], NULL);
        int rc = pthread_create(&win[i % WINDOW], NULL, churn_thread, (void *)(uintptr_t)next_id++);
        CHECK(rc == 0, "pthread_create: %d", rc);
        if (rc != 0)
            exit(1);
    }
    for (size_t i = threads > WINDOW ? threads - WINDOW : 0; i < threads; i++)
        pthread_join(win[i % WINDOW], NULL);
    while (mailbox) {
        batch *b = mailbox;
        mailbox = b->next;
        free_batch(b);
    }
}

int main(int argc, char **argv)
{
    /* Bound on RSS growth between warm-up and the end. Live data never exceeds about WINDOW+1 batches
     * (~ 5 * (3 * 68 KiB + 93 * 516 B) ~ 1.3 MiB), and glibc keeps up to 40 MiB of cached thread stacks but
     * only WINDOW of them are ever in use, all already touched during warm-up. An allocator that strands even
     * one 64 KiB slab per dead thread grows by 64 KiB * threads (>= 250 MiB at scale 100), far past 32 MiB,
     * while a healthy one only wobbles by its caches. Override with argv[1] or HAK_CHURN_BOUND_MB. */
    long bound_mb = argc > 1 ? strtol(argv[1], NULL, 10) : tl_env_long("HAK_CHURN_BOUND_MB", 32);
    size_t per_round = tl_scaled(250, 20);
    size_t rounds = tl_scaled(16, 4);

    round_of(per_round); /* warm-up: thread stacks, allocator caches, stdio */
    round_of(per_round);
    long rss0 = tl_rss();
    long peak = rss0;
    for (size_t r = 0; r < rounds; r++) {
        round_of(per_round);
        long now = tl_rss();
        if (now > peak)
            peak = now;
    }
    long rss1 = tl_rss();
    CHECK(atomic_load(&allocated) == atomic_load(&freed), "%lu blocks allocated, %lu verified+freed",
          atomic_load(&allocated), atomic_load(&freed));
    printf("churn: %lu threads, rss after warm-up %.1f MiB, at end %.1f MiB, peak %.1f MiB (bound +%ld MiB)\n",
           next_id, rss0 / 1048576.0, rss1 / 1048576.0, peak / 1048576.0, bound_mb);
    fflush(stdout);
    if (TL_SANITIZER)
        printf("sanitizer build: shadow memory counts in RSS, bound not checked\n");
    else
        CHECK(peak - rss0 <= bound_mb * (long)MiB, "RSS grew by %.1f MiB over %zu rounds of %zu threads (bound %ld)",
              (peak - rss0) / 1048576.0, rounds, per_round, bound_mb);
    return TL_DONE();
}
