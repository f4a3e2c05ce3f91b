/* larson.c - the Larson server benchmark: worker threads replace random blocks of a shared-nothing array,
 * then hand the array to a freshly created thread, so blocks die in threads other than their allocator's. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench_util.h"

/* With LARSON_TRACK_FREES=1 the same/cross counts cover every free() of a benchmark block (sizes MIN..MAX),
 * not of the bookkeeping arrays, so they can be compared with an allocator's counters for the size classes of
 * MIN..MAX; frees done inside libc (e.g. a thread's DTV) are not visible here. */

/* Operations a worker performs between two looks at the stop flag. */
#define STOP_CHECK_BATCH 64

/* One array of blocks and everything that travels with it from thread to thread. Only one thread owns a
 * lane at a time; pthread_create and pthread_join order the hand-over, so the fields need no atomics. */
struct lane {
    void **blocks;
    uint32_t *owner;       /* allocating thread id per slot, only with LARSON_TRACK_FREES=1 */
    uint64_t rng;
    uint64_t ops;          /* mallocs performed by workers */
    uint64_t same_frees;
    uint64_t cross_frees;
    pthread_t prev;        /* the predecessor, joined by its successor; the last one by main */
    int has_prev;
} __attribute__((aligned(64)));

struct params {
    uint64_t min_size, max_size, chunks, rounds;
};

static struct params P;
static int track_frees;
static atomic_int stop_flag;
static atomic_uint_fast32_t next_tid = 1;   /* 0 is main */
static atomic_int spawn_failed;

static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int lanes_done;

/* The benchmark's own arrays come from mmap, not malloc: the allocator under test sees only the blocks, so its
 * counters can be compared exactly with LARSON_TRACK_FREES's numbers. */
static void *bookkeeping_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void bookkeeping_free(void *p, size_t size)
{
    munmap(p, size);
}

static void *alloc_block(uint64_t *rng)
{
    size_t sz = (size_t)(P.min_size + below(rng, P.max_size - P.min_size + 1));
    char *p = malloc(sz);
    if (!p) {
        fprintf(stderr, "larson: malloc(%zu) failed\n", sz);
        exit(1);
    }
    p[0] = (char)sz;
    p[sz - 1] = (char)(sz >> 3);
    return p;
}

static void *worker(void *arg);

static int spawn(struct lane *ln)
{
    pthread_t t;
    int err = 0;
    for (int attempt = 0; attempt < 100; attempt++) {
        err = pthread_create(&t, NULL, worker, ln);
        if (err == 0)
            return 0;
        if (err != EAGAIN)
            break;
        usleep(1000);   /* thread limit reached transiently: exited threads are still being reaped */
    }
    fprintf(stderr, "larson: pthread_create: %s\n", strerror(err));
    return -1;
}

static void lane_finished(void)
{
    pthread_mutex_lock(&done_mu);
    lanes_done++;
    pthread_cond_signal(&done_cv);
    pthread_mutex_unlock(&done_mu);
}

static void *worker(void *arg)
{
    struct lane *ln = arg;
    const uint64_t total = P.rounds * P.chunks;
    const uint64_t n = P.chunks;
    void **blocks = ln->blocks;
    uint64_t rng = ln->rng;
    uint64_t done = 0;
    uint64_t same = 0, cross = 0;
    uint32_t me = 0;

    if (track_frees)
        me = (uint32_t)atomic_fetch_add_explicit(&next_tid, 1, memory_order_relaxed);

    while (done < total) {
        if (atomic_load_explicit(&stop_flag, memory_order_relaxed))
            break;
        uint64_t batch = total - done < STOP_CHECK_BATCH ? total - done : STOP_CHECK_BATCH;
        if (track_frees) {
            uint32_t *owner = ln->owner;
            for (uint64_t i = 0; i < batch; i++) {
                uint64_t v = below(&rng, n);
                if (owner[v] == me)
                    same++;
                else
                    cross++;
                free(blocks[v]);
                blocks[v] = alloc_block(&rng);
                owner[v] = me;
            }
        } else {
            for (uint64_t i = 0; i < batch; i++) {
                uint64_t v = below(&rng, n);
                free(blocks[v]);
                blocks[v] = alloc_block(&rng);
            }
        }
        done += batch;
    }

    ln->rng = rng;
    ln->ops += done;
    ln->same_frees += same;
    ln->cross_frees += cross;

    /* The predecessor returned right after creating us, so this join rarely waits; it reclaims the
     * predecessor's stack, and only the last thread of each lane is left for main to join. */
    if (ln->has_prev)
        pthread_join(ln->prev, NULL);
    ln->prev = pthread_self();
    ln->has_prev = 1;

    int handed_over = 0;
    if (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        if (spawn(ln) == 0)
            handed_over = 1;
        else
            atomic_store(&spawn_failed, 1);
    }
    if (!handed_over)
        lane_finished();   /* main joins ln->prev, i.e. us */
    return NULL;
}

__attribute__((noreturn)) static void usage(void)
{
    fprintf(stderr, "usage: larson SLEEP_SEC MIN_SIZE MAX_SIZE CHUNKS_PER_THREAD ROUNDS SEED THREADS\n"
                    "  e.g. larson 5 8 1000 5000 100 4141 2; LARSON_TRACK_FREES=1 also prints\n"
                    "  same_thread_frees and cross_thread_frees\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t sleep_sec = 0, seed = 0, threads = 0;
    uint64_t *const args[] = {&sleep_sec, &P.min_size, &P.max_size, &P.chunks, &P.rounds, &seed, &threads};
    if (argc != 8 || parse_args(argc, argv, args, 7))
        usage();
    if (sleep_sec < 1 || sleep_sec > 86400 || P.min_size < 1 || P.max_size < P.min_size ||
        P.max_size > (1ULL << 30) || P.chunks < 1 || P.chunks > (1ULL << 28) || P.rounds < 1 ||
        P.rounds > (1ULL << 32) || threads < 1 || threads > 4096)
        usage();

    const char *tf = getenv("LARSON_TRACK_FREES");
    track_frees = tf && strcmp(tf, "1") == 0;

    struct lane *lanes = bookkeeping_alloc(sizeof(struct lane) * threads);
    if (!lanes) {
        fprintf(stderr, "larson: out of memory\n");
        return 1;
    }
    memset(lanes, 0, sizeof(struct lane) * threads);

    uint64_t seeder = seed;
    for (uint64_t t = 0; t < threads; t++) {
        struct lane *ln = &lanes[t];
        ln->rng = splitmix64(&seeder) | 1;
        ln->blocks = bookkeeping_alloc(sizeof(void *) * P.chunks);
        if (track_frees)
            ln->owner = bookkeeping_alloc(P.chunks * sizeof(uint32_t));   /* zeroed: 0 = prefilled by main */
        if (!ln->blocks || (track_frees && !ln->owner)) {
            fprintf(stderr, "larson: out of memory\n");
            return 1;
        }
        for (uint64_t i = 0; i < P.chunks; i++)
            ln->blocks[i] = alloc_block(&ln->rng);
    }

    double t0 = now_sec();
    for (uint64_t t = 0; t < threads; t++) {
        if (spawn(&lanes[t]) != 0) {
            atomic_store(&stop_flag, 1);
            atomic_store(&spawn_failed, 1);
            pthread_mutex_lock(&done_mu);
            lanes_done += (int)(threads - t);   /* lanes that never started */
            pthread_mutex_unlock(&done_mu);
            break;
        }
    }

    /* Sleep in steps so a failed spawn ends the run early. */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)sleep_sec;
    while (!atomic_load(&stop_flag)) {
        struct timespec cur;
        clock_gettime(CLOCK_MONOTONIC, &cur);
        if (cur.tv_sec > until.tv_sec || (cur.tv_sec == until.tv_sec && cur.tv_nsec >= until.tv_nsec))
            break;
        if (atomic_load(&spawn_failed))
            break;
        struct timespec step = {0, 50 * 1000 * 1000};
        nanosleep(&step, NULL);
    }
    atomic_store(&stop_flag, 1);

    pthread_mutex_lock(&done_mu);
    while (lanes_done < (int)threads)
        pthread_cond_wait(&done_cv, &done_mu);
    pthread_mutex_unlock(&done_mu);
    double elapsed = now_sec() - t0;

    uint64_t ops = 0, same = 0, cross = 0;
    for (uint64_t t = 0; t < threads; t++) {
        struct lane *ln = &lanes[t];
        if (ln->has_prev)
            pthread_join(ln->prev, NULL);
        ops += ln->ops;
        same += ln->same_frees;
        cross += ln->cross_frees;
        for (uint64_t i = 0; i < P.chunks; i++) {
            if (track_frees) {
                if (ln->owner[i] == 0)
                    same++;
                else
                    cross++;
            }
            free(ln->blocks[i]);
        }
        bookkeeping_free(ln->blocks, sizeof(void *) * P.chunks);
        if (ln->owner)
            bookkeeping_free(ln->owner, P.chunks * sizeof(uint32_t));
    }
    bookkeeping_free(lanes, sizeof(struct lane) * threads);

    if (atomic_load(&spawn_failed)) {
        fprintf(stderr, "larson: could not create worker threads\n");
        return 1;
    }
    print_throughput(ops, elapsed, "operations");
    if (track_frees) {
        printf("same_thread_frees = %" PRIu64 "\n", same);
        printf("cross_thread_frees = %" PRIu64 "\n", cross);
    }
    return 0;
}
