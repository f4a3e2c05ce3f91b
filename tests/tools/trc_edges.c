/* Test helper: recorder edge cases found in review, each run under libhakmem_prof.so with every allocation
 * recorded (tests/prof_trace_edges.sh).
 *   newstack-segv: a crash while the thread's ring holds events whose stacks are not written yet (the fatal path
 *                  writes stacks and events through the same scratch buffer);
 *   dead-free:     a thread past its exit frees a sampled block while another thread makes new stacks (a dead
 *                  thread's event goes out alone, through that buffer too);
 *   signal-free:   a signal handler frees sampled blocks while the thread it interrupted records events (the
 *                  handler's free may land between the interrupted event's start and its commit). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void *site(int depth, size_t size)
{
    if (depth == 0)
        return malloc(size);
    void *p = site(depth - 1, size);
    __asm__ volatile("" : : "r"(p) : "memory"); /* no tail call: each depth is a stack of its own */
    return p;
}

static volatile int *volatile nowhere;
static int newstack_segv(void)
{
    for (int i = 0; i < 1000; i++)
        free(site(0, 32));
    for (int d = 1; d < 24; d++)
        site(d, 48); /* new stacks, interned, their events in the ring */
    *nowhere = 1;
    return 5; /* not reached */
}

static pthread_key_t key;
static atomic_int in_dtor, stacks_done;
static void dtor(void *v)
{
    atomic_store(&in_dtor, 1);
    while (!atomic_load(&stacks_done))
        ;
    free(v); /* by a thread whose exit the recorder has seen */
}
static void *dead_worker(void *arg)
{
    (void)arg;
    pthread_setspecific(key, site(0, 64));
    return NULL;
}
static int dead_free(void)
{
    free(malloc(1)); /* hakmem's thread-exit key first, so its teardown runs before dtor */
    pthread_key_create(&key, dtor);
    pthread_t t;
    pthread_create(&t, NULL, dead_worker, NULL);
    while (!atomic_load(&in_dtor))
        ;
    void *keep[40];
    for (int d = 1; d < 40; d++)
        keep[d] = site(d, 48); /* new stacks, not written yet */
    atomic_store(&stacks_done, 1);
    pthread_join(t, NULL);
    for (int d = 1; d < 40; d++)
        free(keep[d]);
    printf("dead-free done\n");
    return 0;
}

enum { POOL = 20000 };
static void *pool[POOL];
static volatile sig_atomic_t handler_frees;
static atomic_int stop;
static pthread_t main_thread;
static void on_usr1(int sig)
{
    (void)sig;
    if (handler_frees < POOL)
        free(pool[handler_frees++]);
}
static void *signaller(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        pthread_kill(main_thread, SIGUSR1);
        for (volatile int i = 0; i < 2000; i++)
            ;
    }
    return NULL;
}
static int signal_free(void)
{
    for (int i = 0; i < POOL; i++)
        pool[i] = malloc(1000);
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
    sigaction(SIGUSR1, &sa, NULL);
    main_thread = pthread_self();
    pthread_t t;
    pthread_create(&t, NULL, signaller, NULL);
    for (long i = 0; i < 2000000 && handler_frees < POOL; i++) {
        void *p = malloc(32);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    printf("handler frees %d\n", (int)handler_frees);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "newstack-segv"))
        return newstack_segv();
    if (!strcmp(mode, "dead-free"))
        return dead_free();
    if (!strcmp(mode, "signal-free"))
        return signal_free();
    fprintf(stderr, "usage: trc_edges newstack-segv | dead-free | signal-free\n");
    return 2;
}
