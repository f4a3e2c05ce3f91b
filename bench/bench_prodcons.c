/* bench_prodcons.c - producer/consumer pairs: each producer allocates 16..512-byte blocks and passes them
 * through a lock-free single-producer single-consumer ring to its consumer, which checks and frees them. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define RING_SIZE 1024   /* power of two */
#define PUBLISH_BATCH 32 /* indices are published every this many blocks: one cache-line transfer per batch */
#define MIN_SIZE 16
#define MAX_SIZE 512
#define DEFAULT_PAIRS 1ULL
#define DEFAULT_BLOCKS 5000000ULL

/* Producer-written and consumer-written indices live on separate cache lines; each side keeps a private
 * copy of the other's index and rereads the shared one only when the ring looks full or empty, so the
 * ring itself costs little next to the allocator's cross-thread free. */
struct pair {
    _Alignas(64) _Atomic uint64_t tail;   /* written by the producer */
    _Alignas(64) _Atomic uint64_t head;   /* written by the consumer */
    _Alignas(64) uint64_t nblocks;
    uint64_t seed;
    uint64_t bad;                         /* blocks whose contents did not survive, counted by the consumer */
    _Alignas(64) void *ring[RING_SIZE];
};

static pthread_barrier_t start_barrier;

static inline void backoff(unsigned *spins)
{
    if (++*spins < 256) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield();   /* more threads than cores: let the other side run */
    }
}

static inline unsigned char tail_mark(uint32_t sz)
{
    return (unsigned char)(sz * 31u + 7u);
}

static void *producer(void *arg)
{
    struct pair *pr = arg;
    uint64_t rng = pr->seed;
    uint64_t tail = 0, published = 0, head_seen = 0;
    pthread_barrier_wait(&start_barrier);
    for (uint64_t i = 0; i < pr->nblocks; i++) {
        uint32_t sz = MIN_SIZE + (uint32_t)below(&rng, MAX_SIZE - MIN_SIZE + 1);
        unsigned char *p = malloc(sz);
        if (!p) {
            fprintf(stderr, "bench_prodcons: malloc(%u) failed\n", sz);
            exit(1);
        }
        memcpy(p, &sz, sizeof sz);
        memcpy(p + 4, &i, sizeof i);
        p[sz - 1] = tail_mark(sz);

        if (tail - head_seen == RING_SIZE) {
            unsigned spins = 0;
            /* Publish what we hold before waiting, or both sides could wait on each other. */
            if (published != tail)
                atomic_store_explicit(&pr->tail, published = tail, memory_order_release);
            while ((head_seen = atomic_load_explicit(&pr->head, memory_order_acquire)) + RING_SIZE == tail)
                backoff(&spins);
        }
        pr->ring[tail & (RING_SIZE - 1)] = p;
        tail++;
        if (tail - published >= PUBLISH_BATCH)
            atomic_store_explicit(&pr->tail, published = tail, memory_order_release);
    }
    if (published != tail)
        atomic_store_explicit(&pr->tail, tail, memory_order_release);
    return NULL;
}

static void *consumer(void *arg)
{
    struct pair *pr = arg;
    uint64_t head = 0, published = 0, tail_seen = 0, bad = 0;
    pthread_barrier_wait(&start_barrier);
    for (uint64_t i = 0; i < pr->nblocks; i++) {
        if (head == tail_seen) {
            unsigned spins = 0;
            if (published != head)
                atomic_store_explicit(&pr->head, published = head, memory_order_release);
            while ((tail_seen = atomic_load_explicit(&pr->tail, memory_order_acquire)) == head)
                backoff(&spins);
        }
        unsigned char *p = pr->ring[head & (RING_SIZE - 1)];
        head++;
        if (head - published >= PUBLISH_BATCH)
            atomic_store_explicit(&pr->head, published = head, memory_order_release);

        uint32_t sz;
        uint64_t seq;
        memcpy(&sz, p, sizeof sz);
        memcpy(&seq, p + 4, sizeof seq);
        if (sz < MIN_SIZE || sz > MAX_SIZE || seq != i || p[sz - 1] != tail_mark(sz))
            bad++;
        free(p);
    }
    pr->bad = bad;
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t pairs = DEFAULT_PAIRS, nblocks = DEFAULT_BLOCKS;
    if (parse_args(argc, argv, (uint64_t *[]){&pairs, &nblocks}, 2) || pairs < 1 || pairs > 1024 || nblocks < 1) {
        fprintf(stderr, "usage: bench_prodcons [PAIRS [BLOCKS_PER_PRODUCER]]   (defaults %llu, %llu; "
                        "PAIRS producer+consumer threads)\n", DEFAULT_PAIRS, DEFAULT_BLOCKS);
        return 2;
    }

    struct pair *prs = aligned_alloc(64, sizeof(struct pair) * pairs);
    pthread_t *tids = malloc(sizeof(pthread_t) * 2 * pairs);
    if (!prs || !tids) {
        fprintf(stderr, "bench_prodcons: out of memory\n");
        return 1;
    }
    memset(prs, 0, sizeof(struct pair) * pairs);
    pthread_barrier_init(&start_barrier, NULL, (unsigned)(2 * pairs + 1));

    uint64_t seeder = 42;
    for (uint64_t i = 0; i < pairs; i++) {
        prs[i].nblocks = nblocks;
        prs[i].seed = splitmix64(&seeder) | 1;
        int err = pthread_create(&tids[2 * i], NULL, consumer, &prs[i]);
        if (!err)
            err = pthread_create(&tids[2 * i + 1], NULL, producer, &prs[i]);
        if (err) {
            fprintf(stderr, "bench_prodcons: pthread_create: %s\n", strerror(err));
            return 1;   /* threads already started wait on the barrier forever; exit ends them */
        }
    }
    pthread_barrier_wait(&start_barrier);
    double t0 = now_sec();
    for (uint64_t i = 0; i < 2 * pairs; i++)
        pthread_join(tids[i], NULL);
    double elapsed = now_sec() - t0;

    uint64_t bad = 0;
    for (uint64_t i = 0; i < pairs; i++)
        bad += prs[i].bad;
    pthread_barrier_destroy(&start_barrier);
    free(tids);
    free(prs);
    if (bad) {
        fprintf(stderr, "bench_prodcons: %" PRIu64 " blocks arrived corrupted\n", bad);
        return 1;
    }
    print_throughput(pairs * nblocks, elapsed, "operations");
    return 0;
}
