/* Test workload for tests/prof_trace_record.sh: threads that allocate without end from one call site, and the ways
 * a process can stop under them (SIGKILL from outside, return, exit from a thread, _exit, abort, SIGSEGV). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SITE __attribute__((noinline, noclone))
enum { WORKERS = 2, SLOTS = 64 };

/* Allocations made by each worker so far, published after the allocation returned: an event for each of them
 * is in the worker's ring, the recorder's write buffer or the file by the time another thread reads the count. */
static _Atomic long made[WORKERS];
static long limit; /* 0: forever */
static long quota = 20000; /* allocations per worker before the ending (argv[2]), or between two ticks */

SITE void *crash_site(size_t size)
{
    void *p = malloc(size);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

static void *worker_main(void *arg)
{
    long w = (long)(intptr_t)arg;
    void *slot[SLOTS] = {0};
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(w + 1);
    for (long i = 0; !limit || i < limit; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned k = (unsigned)(x >> 32) % SLOTS;
        free(slot[k]); /* its own earlier block: the ring carries frees as well as allocations */
        slot[k] = crash_site(16 + (size_t)(x % 2000));
        atomic_store_explicit(&made[w], i + 1, memory_order_seq_cst);
    }
    for (unsigned k = 0; k < SLOTS; k++)
        free(slot[k]);
    return NULL;
}

/* Blocks (yielding, no timed sleep) until every worker made at least n allocations. */
static void wait_made(long n)
{
    for (int w = 0; w < WORKERS; w++)
        while (atomic_load(&made[w]) < n)
            sched_yield();
}

/* "made A B": what the workers had allocated when the ending began (the recording holds at least that much,
 * minus what waited in rings if nothing drained them). */
static void say_made(void)
{
    char line[64];
    int n = snprintf(line, sizeof line, "made %ld %ld\n", atomic_load(&made[0]), atomic_load(&made[1]));
    if (write(1, line, (size_t)n) != n)
        _exit(4);
}

static const char *ending;
static volatile int *volatile nowhere; /* NULL, through a volatile the compiler cannot see through */
static void end_now(void)
{
    say_made();
    if (!strcmp(ending, "exit-thread"))
        exit(0);
    if (!strcmp(ending, "_exit"))
        _exit(0);
    if (!strcmp(ending, "abort"))
        abort();
    if (!strcmp(ending, "segv")) {
        *nowhere = 1; /* a real fault, not raise(): the handler must cope with a signal from a faulting store */
    }
    _exit(5); /* not reached */
}

static void *ender_main(void *arg)
{
    (void)arg;
    wait_made(quota);
    end_now();
    return NULL;
}

int main(int argc, char **argv)
{
    ending = argc > 1 ? argv[1] : "";
    if (argc > 2 && atol(argv[2]) > 0)
        quota = atol(argv[2]);
    static const char *const endings[] = {"loop", "return-joined", "return-running", "exit-thread", "_exit",
                                          "abort", "segv"};
    int known = 0;
    for (unsigned i = 0; i < sizeof endings / sizeof endings[0]; i++)
        known |= !strcmp(ending, endings[i]);
    if (!known) {
        fprintf(stderr, "usage: trc_crash loop | return-joined | return-running | exit-thread | _exit | abort | "
                        "segv [N]\n");
        return 2;
    }
    if (!strcmp(ending, "return-joined"))
        limit = quota;
    pthread_t t[WORKERS];
    for (long w = 0; w < WORKERS; w++)
        if ((errno = pthread_create(&t[w], NULL, worker_main, (void *)(intptr_t)w)) != 0) {
            perror("trc_crash: pthread_create");
            return 3;
        }
    if (!strcmp(ending, "loop")) {
        /* "tick K" once both workers made K * N allocations, for as long as someone reads: the test kills the
         * process after the tick it chose. */
        for (long k = 1;; k++) {
            wait_made(k * quota);
            char line[32];
            int n = snprintf(line, sizeof line, "tick %ld\n", k);
            if (write(1, line, (size_t)n) != n)
                return 4;
        }
    }
    if (!strcmp(ending, "return-joined")) {
        for (int w = 0; w < WORKERS; w++)
            pthread_join(t[w], NULL);
        say_made();
        return 0;
    }
    if (!strcmp(ending, "return-running")) {
        wait_made(quota);
        say_made();
        return 0; /* the workers are still allocating while exit runs */
    }
    if (!strcmp(ending, "exit-thread")) {
        pthread_t e;
        if ((errno = pthread_create(&e, NULL, ender_main, NULL)) != 0) {
            perror("trc_crash: pthread_create");
            return 3;
        }
        pthread_join(e, NULL); /* not reached: the ender exits the process */
        return 6;
    }
    wait_made(quota);
    end_now();
    return 6;
}
