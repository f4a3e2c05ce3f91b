/* Multi-threaded stress: producer/consumer hand-offs, churn of short-lived threads, and concurrent realloc.
 * Every block carries a pattern checked by whoever frees it, and totals prove each block was freed exactly once. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "testlib.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Small sizes most of the time, now and then a block from the medium/large paths. */
static size_t pick_size(tl_rng *r)
{
    if ((tl_next(r) & 255) == 0)
        return tl_range(r, 64 * KiB, MiB);
    return tl_range(r, 8, 2048);
}

typedef struct {
    void *p;
    size_t n;
} item;

/* ---- (a) producer/consumer ---------------------------------------------------------------------------------- */

/* A bounded queue under one mutex: the mutex is also what orders the producer's fill before the consumer's check. */
enum { QCAP = 512 };
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    item buf[QCAP];
    unsigned head, count;
} queue;

static void q_init(queue *q)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    q->head = q->count = 0;
}
static void q_destroy(queue *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
}
static void q_push(queue *q, item it)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == QCAP)
        pthread_cond_wait(&q->not_full, &q->mu);
    q->buf[(q->head + q->count) % QCAP] = it;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}
static item q_pop(queue *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == 0)
        pthread_cond_wait(&q->not_empty, &q->mu);
    item it = q->buf[q->head];
    q->head = (q->head + 1) % QCAP;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return it;
}

enum { PRODUCERS = 4, CONSUMERS = 3 };
static queue pc_queues[CONSUMERS];
static size_t pc_per_producer;
static atomic_ulong pc_made, pc_verified, pc_bytes_made, pc_bytes_verified;

static void *producer(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    tl_rng r = tl_rng_new(1000 + id);
    for (size_t i = 0; i < pc_per_producer; i++) {
        size_t n = pick_size(&r);
        void *p = T_MALLOC(n);
        TCHECK(p != NULL, "producer %u: malloc(%zu) NULL", id, n);
        if (!p)
            continue;
        tl_fill(p, n, tl_tag(p, n));
        atomic_fetch_add(&pc_made, 1);
        atomic_fetch_add(&pc_bytes_made, n);
        /* Spread over consumers, and keep a few blocks back to free locally (same-thread path mixed in). */
        if (i % 17 == 0) {
            TCHECK(tl_check(p, n, tl_tag(p, n)) == SIZE_MAX, "producer %u: own block %p/%zu damaged", id, p, n);
            atomic_fetch_add(&pc_verified, 1);
            atomic_fetch_add(&pc_bytes_verified, n);
            T_FREE(p);
            continue;
        }
        q_push(&pc_queues[(i + id) % CONSUMERS], (item){p, n});
    }
    return NULL;
}

static void *consumer(void *arg)
{
    queue *q = arg;
    for (;;) {
        item it = q_pop(q);
        if (!it.p)
            return NULL; /* sentinel: producers are done */
        size_t bad = tl_check(it.p, it.n, tl_tag(it.p, it.n));
        TCHECK(bad == SIZE_MAX, "consumer: block %p size %zu differs at byte %zu", it.p, it.n, bad);
        atomic_fetch_add(&pc_verified, 1);
        atomic_fetch_add(&pc_bytes_verified, it.n);
        T_FREE(it.p);
    }
}

static void test_producer_consumer(void)
{
    pc_per_producer = tl_scaled(60000, 500);
    pthread_t prod[PRODUCERS], cons[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        q_init(&pc_queues[i]);
        CHECK(pthread_create(&cons[i], NULL, consumer, &pc_queues[i]) == 0, "pthread_create consumer");
    }
    for (int i = 0; i < PRODUCERS; i++)
        CHECK(pthread_create(&prod[i], NULL, producer, (void *)(uintptr_t)i) == 0, "pthread_create producer");
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    for (int i = 0; i < CONSUMERS; i++)
        q_push(&pc_queues[i], (item){NULL, 0});
    for (int i = 0; i < CONSUMERS; i++) {
        pthread_join(cons[i], NULL);
        q_destroy(&pc_queues[i]);
    }
    unsigned long made = atomic_load(&pc_made), ver = atomic_load(&pc_verified);
    CHECK(made == PRODUCERS * pc_per_producer, "producer/consumer: %lu blocks made, want %zu", made,
          PRODUCERS * pc_per_producer);
    CHECK(ver == made, "producer/consumer: %lu made but %lu verified+freed", made, ver);
    CHECK(atomic_load(&pc_bytes_made) == atomic_load(&pc_bytes_verified), "producer/consumer: bytes %lu vs %lu",
          atomic_load(&pc_bytes_made), atomic_load(&pc_bytes_verified));
}

/* ---- (b) thread churn: each short-lived thread frees its predecessor's batch --------------------------------- */

enum { BATCH = 48, WINDOW = 4 };
typedef struct batch {
    struct batch *next;
    unsigned owner;
    item it[BATCH];
} batch;

static pthread_mutex_t mb_mu = PTHREAD_MUTEX_INITIALIZER;
static batch *mailbox; /* batches left by finished threads, guarded by mb_mu */
static atomic_ulong ch_alloc, ch_freed;

static void free_batch(batch *b, unsigned by)
{
    for (int i = 0; i < BATCH; i++) {
        item it = b->it[i];
        size_t bad = tl_check(it.p, it.n, tl_tag(it.p, it.n));
        TCHECK(bad == SIZE_MAX, "thread %u: block %d (%p/%zu) of thread %u differs at byte %zu", by, i, it.p, it.n,
               b->owner, bad);
        T_FREE(it.p);
        atomic_fetch_add(&ch_freed, 1);
    }
    T_FREE(b);
}

static void *churn_thread(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    tl_rng r = tl_rng_new(50000 + id);
    /* first action: allocate (a fresh thread's first malloc) */
    batch *mine = T_MALLOC(sizeof *mine);
    TCHECK(mine != NULL, "thread %u: batch header NULL", id);
    if (!mine)
        return NULL;
    mine->owner = id;
    for (int i = 0; i < BATCH; i++) {
        size_t n = i == 0 ? tl_range(&r, 16 * KiB, 300 * KiB) : tl_range(&r, 8, 4096);
        void *p = T_MALLOC(n);
        TCHECK(p != NULL, "thread %u: malloc(%zu) NULL", id, n);
        if (!p) { /* keep the batch well-formed */
            n = 0;
            p = T_MALLOC(1);
        }
        tl_fill(p, n, tl_tag(p, n));
        mine->it[i] = (item){p, n};
        atomic_fetch_add(&ch_alloc, 1);
    }
    pthread_mutex_lock(&mb_mu);
    batch *prev = mailbox;
    if (prev)
        mailbox = prev->next;
    mine->next = mailbox;
    mailbox = mine;
    pthread_mutex_unlock(&mb_mu);
    if (prev)
        free_batch(prev, id);
    return NULL;
}

static void test_thread_churn(void)
{
    size_t nthreads = tl_scaled(3000, 50);
    pthread_t win[WINDOW];
    for (size_t i = 0; i < nthreads; i++) {
        /* a sliding window: at most WINDOW threads alive, the oldest joined before the next starts */
        if (i >= WINDOW)
            pthread_join(win[i % WINDOW], NULL);
        int rc = pthread_create(&win[i % WINDOW], NULL, churn_thread, (void *)(uintptr_t)i);
        CHECK(rc == 0, "pthread_create churn thread %zu: %d", i, rc);
        if (rc != 0)
            return;
    }
    for (size_t i = nthreads > WINDOW ? nthreads - WINDOW : 0; i < nthreads; i++)
        pthread_join(win[i % WINDOW], NULL);
    while (mailbox) {
        batch *b = mailbox;
        mailbox = b->next;
        free_batch(b, 0);
    }
    CHECK(atomic_load(&ch_alloc) == nthreads * BATCH, "churn: %lu allocated, want %zu", atomic_load(&ch_alloc),
          nthreads * BATCH);
    CHECK(atomic_load(&ch_freed) == atomic_load(&ch_alloc), "churn: %lu allocated, %lu verified+freed",
          atomic_load(&ch_alloc), atomic_load(&ch_freed));
}

/* ---- (c) realloc from many threads over shared slots --------------------------------------------------------- */

/* Slots are shared so blocks get realloc'd and freed by threads other than the one that made them. */
enum { SLOTS = 1024, RTHREADS = 4 };
typedef struct {
    pthread_mutex_t mu;
    void *p;
    size_t n;
    uint64_t tag; /* position-only pattern key: survives the block moving */
} slot;
static slot slots[SLOTS];
static size_t rs_ops;
static atomic_ulong rs_allocs, rs_frees, rs_reallocs;

static size_t realloc_size(tl_rng *r)
{
    unsigned k = (unsigned)(tl_next(r) % 1000);
    if (k < 2)
        return tl_range(r, 512 * KiB, 2 * MiB);
    if (k < 25)
        return tl_range(r, 4097, 256 * KiB);
    return tl_range(r, 1, 4096);
}

static void *realloc_thread(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    tl_rng r = tl_rng_new(90000 + id);
    for (size_t op = 0; op < rs_ops; op++) {
        slot *s = &slots[tl_next(&r) % SLOTS];
        pthread_mutex_lock(&s->mu);
        if (!s->p) {
            size_t n = realloc_size(&r);
            s->p = T_MALLOC(n);
            TCHECK(s->p != NULL, "malloc(%zu) NULL", n);
            if (s->p) {
                s->n = n;
                s->tag = tl_next(&r);
                tl_fill(s->p, n, s->tag);
                atomic_fetch_add(&rs_allocs, 1);
            }
        } else if (tl_next(&r) % 3 != 0) {
            size_t n = realloc_size(&r);
            size_t keep = n < s->n ? n : s->n;
            void *q = T_REALLOC(s->p, n);
            TCHECK(q != NULL, "realloc(%zu -> %zu) NULL", s->n, n);
            if (q) {
                size_t bad = tl_check(q, keep, s->tag);
                TCHECK(bad == SIZE_MAX, "thread %u: realloc %zu -> %zu lost byte %zu", id, s->n, n, bad);
                tl_fill_range(q, keep, n, s->tag);
                s->p = q;
                s->n = n;
                atomic_fetch_add(&rs_reallocs, 1);
            }
        } else {
            size_t bad = tl_check(s->p, s->n, s->tag);
            TCHECK(bad == SIZE_MAX, "thread %u: block %p/%zu differs at byte %zu before free", id, s->p, s->n, bad);
            T_FREE(s->p);
            s->p = NULL;
            atomic_fetch_add(&rs_frees, 1);
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static void test_realloc_threads(void)
{
    rs_ops = tl_scaled(80000, 2000);
    for (int i = 0; i < SLOTS; i++)
        pthread_mutex_init(&slots[i].mu, NULL);
    pthread_t t[RTHREADS];
    for (int i = 0; i < RTHREADS; i++)
        CHECK(pthread_create(&t[i], NULL, realloc_thread, (void *)(uintptr_t)i) == 0, "pthread_create");
    for (int i = 0; i < RTHREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].p) {
            size_t bad = tl_check(slots[i].p, slots[i].n, slots[i].tag);
            CHECK(bad == SIZE_MAX, "slot %d: block %p/%zu differs at byte %zu", i, slots[i].p, slots[i].n, bad);
            T_FREE(slots[i].p);
            atomic_fetch_add(&rs_frees, 1);
        }
        pthread_mutex_destroy(&slots[i].mu);
    }
    CHECK(atomic_load(&rs_frees) == atomic_load(&rs_allocs), "realloc threads: %lu allocated, %lu freed",
          atomic_load(&rs_allocs), atomic_load(&rs_frees));
    CHECK(atomic_load(&rs_reallocs) > 0, "realloc threads: no realloc happened");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
    double t0 = now_s();
    test_producer_consumer();
    double t1 = now_s();
    test_thread_churn();
    double t2 = now_s();
    test_realloc_threads();
    printf("phases: producer/consumer %.2fs, thread churn %.2fs, realloc threads %.2fs\n", t1 - t0, t2 - t1,
           now_s() - t2);
    int rc = TL_DONE();
    if (rc == 0)
        printf("test_stress: ok (%lu handed off, %lu churn blocks, %lu reallocs)\n", atomic_load(&pc_verified),
               atomic_load(&ch_freed), atomic_load(&rs_reallocs));
    return rc;
}
