/* Process lifecycles that once broke a recording (found by review), for tests/prof_record_lifecycle.sh. Each mode
 * allocates N blocks of 64 bytes on the way (freed at once), so a recording with HAKMEM_SAMPLE=all has a known
 * count, and says on stdout what it did.
 *   closefds FILE   close every descriptor from 3 up (close_range), then write FILE through the lowest free one
 *   ptexit          main ends with pthread_exit after a thread of its own has ended: the process must exit 0
 *   rawfork N       a child made by _Fork (no fork handlers) allocates N blocks and _exits
 *   fsize BYTES     RLIMIT_FSIZE set to BYTES, then a fork child: neither may die of SIGXFSZ
 *   umask           umask 0777, then a fork child (whose recording is created under that umask)
 *   sigview         prints how SIGINT, SIGTERM and SIGSEGV look to the program (sigaction, signal): "default"
 *   pause           prints "ready", waits for a signal; if pause() returns, says so and exits 0
 *   busy            three threads and main allocate until a signal ends the process; prints "ready" first
 *   abort           abort() right after start, before the recorder's first snapshot (100 ms)
 *   sigexit         allocates until a SIGALRM handler calls exit(0) (not async-signal-safe, but common): the
 *                   handler may interrupt the recorder itself
 *   forkunwind N    two threads allocate without end while main forks N children that allocate and exit: with
 *                   every allocation sampled, a fork often lands while a thread is unwinding; a child that does
 *                   not end within 10 s is killed and reported ("child K hung") */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void churn(int n)
{
    for (int i = 0; i < n; i++) {
        void *volatile p = malloc(64);
        free(p);
    }
}

static void *worker(void *arg)
{
    (void)arg;
    churn(100);
    return NULL;
}

static void *spin(void *arg)
{
    (void)arg;
    for (unsigned i = 0;; i++) {
        void *volatile p = malloc(32 + (i % 9) * 16);
        free(p);
    }
    return NULL;
}

static void on_alarm_exit(int sig)
{
    (void)sig;
    exit(0);
}

static int wait_child(pid_t p)
{
    int st;
    if (waitpid(p, &st, 0) != p)
        return -1;
    printf("child status %d\n", st);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

/* A fork child that allocates n blocks and exits; the parent waits for it and says how it ended. */
static int fork_churn(int n)
{
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        churn(n);
        exit(0);
    }
    return wait_child(p);
}

/* Waits up to 10 s for child p (polling: its signals may be blocked, so an alarm in it proves nothing). */
static int wait_child_or_kill(pid_t p, int k)
{
    struct timespec start, now, tick = {0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int st;
        pid_t w = waitpid(p, &st, WNOHANG);
        if (w == p)
            return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
        if (w < 0 && errno != EINTR)
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= 10) {
            printf("child %d hung\n", k);
            kill(p, SIGKILL);
            waitpid(p, &st, 0);
            return 1;
        }
        nanosleep(&tick, NULL); /* a poll interval, not a synchronization: the deadline is what is tested */
    }
}

/* Short-lived threads one after another: each new thread's unwinder starts with an empty cache, so unwinding keeps
 * taking libunwind's own locks (a long-lived thread's stacks are soon all cached). */
static void *relay(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0)
            return NULL;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: lifecycle closefds FILE | ptexit | rawfork N | fsize BYTES | umask | sigview | pause | busy | abort | sigexit | forkunwind N\n");
        return 2;
    }
    const char *mode = argv[1];
    churn(1000);
    if (!strcmp(mode, "closefds") && argc == 3) {
        fflush(stdout);
        syscall(SYS_close_range, 3u, ~0u, 0);
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        churn(20000); /* enough events for the recorder to write while the program's file has its number */
        usleep(200000); /* the writer thread's cycles (50 ms) while the file is open: not a synchronization */
        dprintf(fd, "the program's own data\n");
        churn(1000);
        close(fd);
        printf("wrote %s through fd %d\n", argv[2], fd);
        return 0;
    }
    if (!strcmp(mode, "forkunwind") && argc == 3) {
        pthread_t t;
        pthread_create(&t, NULL, spin, NULL);
        pthread_create(&t, NULL, relay, NULL);
        int n = atoi(argv[2]), ok = 0;
        for (int k = 0; k < n; k++) {
            fflush(stdout);
            pid_t p = fork();
            if (p == 0) {
                churn(200);
                _exit(0);
            }
            if (p > 0 && wait_child_or_kill(p, k) == 0)
                ok++;
        }
        printf("forks %d of %d ended\n", ok, n);
        return ok == n ? 0 : 1;
    }
    if (!strcmp(mode, "ptexit")) {
        pthread_t t;
        pthread_create(&t, NULL, worker, NULL);
        pthread_detach(t);
        printf("main thread leaves\n");
        fflush(stdout);
        pthread_exit(NULL);
    }
    if (!strcmp(mode, "rawfork") && argc == 3) {
        fflush(stdout);
        pid_t p = _Fork();
        if (p == 0) {
            churn(atoi(argv[2]));
            _exit(0);
        }
        int rc = wait_child(p);
        churn(1000);
        return rc;
    }
    if (!strcmp(mode, "fsize") && argc == 3) {
        struct rlimit r = {(rlim_t)atol(argv[2]), (rlim_t)atol(argv[2])};
        setrlimit(RLIMIT_FSIZE, &r);
        churn(20000);
        return fork_churn(20000);
    }
    if (!strcmp(mode, "umask")) {
        umask(0777);
        return fork_churn(1000);
    }
    if (!strcmp(mode, "sigview")) {
        static const int sigs[] = {SIGINT, SIGTERM, SIGSEGV};
        for (unsigned i = 0; i < 3; i++) {
            struct sigaction old;
            sigaction(sigs[i], NULL, &old);
            void (*prev)(int) = signal(sigs[i], SIG_DFL); /* setting the default again changes nothing */
            printf("%s: sigaction %s, signal %s\n", strsignal(sigs[i]),
                   old.sa_handler == SIG_DFL ? "default" : "other", prev == SIG_DFL ? "default" : "other");
            /* a program that copies the flags it read into its own handler's must not get SA_RESTART from them */
            printf("%s: flags %#x\n", strsignal(sigs[i]), (unsigned)old.sa_flags);
        }
        return 0;
    }
    if (!strcmp(mode, "busy")) {
        pthread_t t;
        for (int i = 0; i < 3; i++)
            pthread_create(&t, NULL, spin, NULL);
        printf("ready\n");
        fflush(stdout);
        spin(NULL);
    }
    if (!strcmp(mode, "abort"))
        abort();
    if (!strcmp(mode, "sigexit")) {
        signal(SIGALRM, on_alarm_exit);
        ualarm(100000, 0);
        for (unsigned i = 0;; i++) {
            void *volatile p = malloc(64 + (i % 7) * 16);
            free(p);
        }
    }
    if (!strcmp(mode, "pause")) {
        printf("ready\n");
        fflush(stdout);
        pause();
        printf("continued after the signal\n");
        return 0;
    }
    fprintf(stderr, "lifecycle: unknown mode or missing argument: %s\n", mode);
    return 2;
}
