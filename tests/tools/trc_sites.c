/* Test workload for tests/prof_trace_record.sh: allocations from call sites with distinctive names, in numbers,
 * sizes and threads known exactly, so a recording of it can be checked record by record against the truth. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <ucontext.h>

/* noinline and noclone keep every site a frame of its own under its own name (no site_small.constprop.0), so the
 * return address of its allocation call lies inside the function nm names. */
#define SITE __attribute__((noinline, noclone))

/* The truth of `trc_sites sites SCALE`, per unit of SCALE (prof_trace_record.sh keeps its own copy of this table):
 *   site_small         main    1000 x malloc(24)               freed by main
 *   site_medium        main     300 x calloc(10, 50)           freed by the freer thread (cross-thread)
 *   site_large         main       4 x malloc(200000)           half freed by main, half by the freer thread
 *   site_grow          main     200 x malloc(100) then realloc(p, 2000); both freed by main (the first by realloc)
 *   site_aligned       main     100 x aligned_alloc(64, 200)   live at exit
 *   site_memalign      main     100 x posix_memalign(4096, 3000) live at exit
 *   site_live          main      77 x malloc(5000)             live at exit
 *   site_remote        producer 400 x malloc(700)              handed to main through a queue, freed by main
 *   site_worker_local  producer 150 x malloc(40)               freed by the producer */
enum {
    SMALL_N = 1000, MEDIUM_N = 300, LARGE_N = 4, GROW_N = 200, ALIGNED_N = 100, LIVE_N = 77, REMOTE_N = 400,
    WLOCAL_N = 150
};

static void die(const char *what)
{
    fprintf(stderr, "trc_sites: %s: %s\n", what, strerror(errno));
    exit(3);
}

static void **table(long n)
{
    /* Before any site runs, so its allocation is not one of theirs. */
    void **t = calloc((size_t)n, sizeof *t);
    if (!t)
        die("calloc");
    return t;
}

/* Keeps a block observably used, so the compiler cannot drop an allocation or pair it with its free. */
static inline void touch(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

SITE void site_small(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(24));
}
SITE void site_medium(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = calloc(10, 50));
}
SITE void site_large(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(200000));
}
SITE void site_grow(void **out, long n)
{
    for (long i = 0; i < n; i++) {
        void *p = malloc(100);
        touch(p);
        touch(out[i] = realloc(p, 2000));
    }
}
SITE void site_aligned(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = aligned_alloc(64, 200));
}
SITE void site_memalign(void **out, long n)
{
    for (long i = 0; i < n; i++) {
        if (posix_memalign(&out[i], 4096, 3000) != 0)
            out[i] = NULL;
        touch(out[i]);
    }
}
SITE void site_live(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(5000));
}
SITE void site_remote(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(700));
}
SITE void site_worker_local(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(40));
}

static void free_all(void **t, long from, long to)
{
    for (long i = from; i < to; i++)
        free(t[i]);
}

/* ---- the producer's hand-over queue: blocks allocated by the producer, freed by main ---- */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static void **q_items;
static long q_put, q_got; /* items [q_got, q_put) are waiting */
static int q_all_freed;   /* main freed everything: the producer may exit (its slabs still owned by it till then) */

struct producer_arg {
    long n_remote, n_local;
};

static void *producer_main(void *varg)
{
    struct producer_arg *a = varg;
    void **local = table(a->n_local);
    /* In batches, so main frees some blocks while the producer still allocates the next ones. */
    const long batch = 50;
    for (long done = 0; done < a->n_remote; done += batch) {
        long k = a->n_remote - done < batch ? a->n_remote - done : batch;
        site_remote(q_items + done, k);
        pthread_mutex_lock(&q_lock);
        q_put = done + k;
        pthread_cond_broadcast(&q_cond);
        pthread_mutex_unlock(&q_lock);
    }
    site_worker_local(local, a->n_local);
    free_all(local, 0, a->n_local);
    free(local);
    pthread_mutex_lock(&q_lock);
    while (!q_all_freed)
        pthread_cond_wait(&q_cond, &q_lock);
    pthread_mutex_unlock(&q_lock);
    return NULL;
}

struct freer_arg {
    void **a, **b;
    long an, bn;
};
static void *freer_main(void *varg)
{
    struct freer_arg *f = varg;
    free_all(f->a, 0, f->an);
    free_all(f->b, 0, f->bn);
    return NULL;
}

/* Kept reachable until exit: these blocks are live when the program ends. */
static void **kept_aligned, **kept_memalign, **kept_live;

SITE void run_sites(long scale)
{
    long small_n = SMALL_N * scale, medium_n = MEDIUM_N * scale, large_n = LARGE_N * scale, grow_n = GROW_N * scale,
         aligned_n = ALIGNED_N * scale, live_n = LIVE_N * scale;
    void **small = table(small_n), **medium = table(medium_n), **large = table(large_n), **grow = table(grow_n);
    kept_aligned = table(aligned_n);
    kept_memalign = table(aligned_n);
    kept_live = table(live_n);
    struct producer_arg pa = {REMOTE_N * scale, WLOCAL_N * scale};
    q_items = table(pa.n_remote);

    pthread_t producer;
    if ((errno = pthread_create(&producer, NULL, producer_main, &pa)) != 0)
        die("pthread_create");

    site_small(small, small_n);
    site_medium(medium, medium_n);
    site_large(large, large_n);
    site_grow(grow, grow_n);
    site_aligned(kept_aligned, aligned_n);
    site_memalign(kept_memalign, aligned_n);
    site_live(kept_live, live_n);

    /* The producer's blocks, freed here as they come. */
    for (long got = 0; got < pa.n_remote;) {
        pthread_mutex_lock(&q_lock);
        while (q_put == got)
            pthread_cond_wait(&q_cond, &q_lock);
        long upto = q_put;
        pthread_mutex_unlock(&q_lock);
        free_all(q_items, got, upto);
        got = upto;
    }
    pthread_mutex_lock(&q_lock);
    q_got = pa.n_remote;
    q_all_freed = 1;
    pthread_cond_broadcast(&q_cond);
    pthread_mutex_unlock(&q_lock);

    free_all(small, 0, small_n);
    free_all(grow, 0, grow_n);
    free_all(large, 0, large_n / 2);
    /* The rest of large and all of medium go to another thread, handed over at its creation and joined. */
    struct freer_arg fa = {medium, large + large_n / 2, medium_n, large_n - large_n / 2};
    pthread_t freer;
    if ((errno = pthread_create(&freer, NULL, freer_main, &fa)) != 0)
        die("pthread_create");
    pthread_join(freer, NULL);
    pthread_join(producer, NULL);
    for (long i = 0; i < aligned_n; i++)
        if (!kept_aligned[i] || ((uintptr_t)kept_aligned[i] & 63) || !kept_memalign[i] ||
            ((uintptr_t)kept_memalign[i] & 4095)) {
            fprintf(stderr, "trc_sites: aligned_alloc or posix_memalign failed or misaligned\n");
            exit(3);
        }
    free(small);
    free(medium);
    free(large);
    free(grow);
    free(q_items);
}

/* ---- seed: one thread, a fixed pseudo-random sequence of sizes from two sites ---- */
SITE void *seed_a(size_t size)
{
    void *p = malloc(size);
    touch(p);
    return p;
}
SITE void *seed_b(size_t size)
{
    void *p = malloc(size);
    touch(p);
    return p;
}
/* `trc_sites twins N`: the hard cases of the tracer's stack cache (trace/stacks.c), which knows a stack by its
 * return addresses and where they sit. twin_a and twin_b reach one malloc call site (in cache_leaf) with frames
 * laid out alike and at the same place, alternately: only the second return address tells their stacks apart.
 * recurse reaches it from 1 to TWIN_LEVELS frames of itself: the same innermost frames at other depths.
 * Then on_alt, a signal handler on an alternate stack, allocates ALT_N blocks each of ALT_RAISES times.
 * Truth: N allocations of 48 bytes with caller twin_a, N with caller twin_b, N of 80 bytes at each recursion
 * depth, and 300 of 112 bytes with caller on_alt; all freed by main. noipa keeps the twins two functions
 * (identical code would otherwise be folded). */
#define TWIN __attribute__((noinline, noclone, noipa))
#define TWIN_LEVELS 4
TWIN void *cache_leaf(size_t n)
{
    void *p = malloc(n);
    touch(p); /* not a tail call: the return address into cache_leaf is on the stack */
    return p;
}
TWIN void twin_a(void **out)
{
    *out = cache_leaf(48);
    touch(out);
}
TWIN void twin_b(void **out)
{
    *out = cache_leaf(48);
    touch(out);
}
TWIN void recurse(void **out, int level)
{
    out[level] = cache_leaf(80);
    if (level > 0)
        recurse(out, level - 1);
    touch(out);
}
/* A handler on an alternate stack: its stacks run through a signal frame onto the main stack. */
#define ALT_N 100
#define ALT_RAISES 3
static void *alt_blocks[ALT_N * ALT_RAISES];
static int alt_at;
static char alt_stack[256 << 10];
TWIN void on_alt(int sig)
{
    (void)sig;
    for (int i = 0; i < ALT_N; i++)
        alt_blocks[alt_at++] = cache_leaf(112);
}
static void run_twins(long n)
{
    void **a = table(n), **b = table(n), **r = table(n * TWIN_LEVELS);
    for (long i = 0; i < n; i++) {
        twin_a(&a[i]);
        twin_b(&b[i]);
    }
    for (long i = 0; i < n; i++)
        recurse(&r[i * TWIN_LEVELS], TWIN_LEVELS - 1);
    for (long i = 0; i < n; i++) {
        free(a[i]);
        free(b[i]);
    }
    for (long i = 0; i < n * TWIN_LEVELS; i++)
        free(r[i]);
    stack_t alt = {.ss_sp = alt_stack, .ss_size = sizeof alt_stack};
    struct sigaction sa = {.sa_handler = on_alt, .sa_flags = SA_ONSTACK};
    if (sigaltstack(&alt, NULL) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0)
        die("sigaltstack");
    for (int k = 0; k < ALT_RAISES; k++)
        raise(SIGUSR1); /* synchronous: the handler's mallocs never interrupt one of main's */
    for (int i = 0; i < alt_at; i++)
        free(alt_blocks[i]);
    free(a);
    free(b);
    free(r);
}

/* `trc_sites fibers`: the stack cache on coroutine stacks whose memory is used again in another layout (a pool
 * of fiber stacks with guard pages). A thread's first samples come from a fiber on a 1 MiB mapping: a deep call,
 * then realloc, malloc and calloc from fiber_deep (each entry point its own path through the tracer). The mapping
 * is then cut into 256 KiB stacks, each with a guard page at its low end, and a fiber on the lowest piece calls
 * malloc and calloc from its entry function, a few words below the top of its stack: a lookup that read the
 * places of the first fiber's paths there would fault. Truth: fiber_top allocates 48 and 64 bytes, once each;
 * fiber_deep 40 (grown to 80), 24 and 30. The process exits 0. */
#define FIBER_BIG (1u << 20)
#define FIBER_SMALL (256u << 10)
static ucontext_t fiber_main, fiber_uc;
static char *fiber_region;
TWIN void fiber_down(int n)
{
    volatile char pad[15000];
    pad[0] = (char)n;
    pad[14999] = 0;
    if (n)
        fiber_down(n - 1);
    else
        free(cache_leaf(32));
    touch((void *)pad);
}
TWIN void fiber_deep(void)
{
    fiber_down(60);
    void *p = malloc(40);
    touch(p);
    p = realloc(p, 80);
    touch(p);
    free(p);
    p = malloc(24);
    touch(p);
    free(p);
    p = calloc(1, 30);
    touch(p);
    free(p);
}
TWIN void fiber_top(void)
{
    void *p = malloc(48);
    touch(p);
    free(p);
    p = calloc(1, 64);
    touch(p);
    free(p);
}
static void fiber_run(void (*fn)(void), size_t size)
{
    if (getcontext(&fiber_uc) != 0)
        die("getcontext");
    fiber_uc.uc_stack.ss_sp = fiber_region;
    fiber_uc.uc_stack.ss_size = size;
    fiber_uc.uc_link = &fiber_main;
    makecontext(&fiber_uc, fn, 0);
    if (swapcontext(&fiber_main, &fiber_uc) != 0)
        die("swapcontext");
}
static void *fiber_thread(void *arg)
{
    (void)arg;
    fiber_run(fiber_deep, FIBER_BIG);
    for (size_t off = FIBER_SMALL; off + FIBER_SMALL <= FIBER_BIG; off += FIBER_SMALL)
        if (mprotect(fiber_region + off, 4096, PROT_NONE) != 0)
            die("mprotect");
    fiber_run(fiber_top, FIBER_SMALL);
    return NULL;
}
static void run_fibers(void)
{
    fiber_region = mmap(NULL, FIBER_BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fiber_region == MAP_FAILED)
        die("mmap");
    pthread_t t;
    if (pthread_create(&t, NULL, fiber_thread, NULL) != 0 || pthread_join(t, NULL) != 0)
        die("pthread");
}

/* `trc_sites vla N`: frames of variable size (a VLA) on the stack cache's path: vla_rec recurses 0 or 1 times at
 * random, each level with a VLA of a random size, and vla_leaf allocates at the bottom. A deeper call whose VLAs
 * add up to a shallower one's puts the capture at the same CFA, with the outermost vla_rec's return address at the
 * same place: a cache that trusted the places above a variable frame charged the deeper stack to the shallower
 * (23% of them). Prints the truth, "depth0 A depth1 B" (allocations per recursion depth), on stdout. */
static uint64_t vla_rng = 88172645463325252ull;
static unsigned vla_random(void)
{
    vla_rng ^= vla_rng << 13;
    vla_rng ^= vla_rng >> 7;
    vla_rng ^= vla_rng << 17;
    return (unsigned)vla_rng;
}
TWIN void vla_leaf(void)
{
    void *p = malloc(16);
    touch(p);
    free(p);
}
TWIN void vla_rec(int d, unsigned len)
{
    char b[len + 1];
    b[0] = 0;
    touch(b);
    if (d == 0)
        vla_leaf();
    else
        vla_rec(d - 1, (vla_random() % 8) * 16);
    touch(b);
}
/* The same with a 32-byte aligned local as well: gcc then realigns the frame through a saved stack pointer in
 * another register (DRAP), with rbp not at the CFA - 16 of a plain frame pointer. */
TWIN void vla_rec_aligned(int d, unsigned len)
{
    char b[len + 1];
    _Alignas(32) char a[32];
    b[0] = 0;
    a[0] = 0;
    touch(b);
    touch(a);
    if (d == 0)
        vla_leaf();
    else
        vla_rec_aligned(d - 1, (vla_random() % 8) * 16);
    touch(b);
}
static void run_vla(long n, void (*rec)(int, unsigned))
{
    long truth[2] = {0, 0};
    for (long i = 0; i < n; i++) {
        int d = (int)(vla_random() % 2);
        truth[d]++;
        rec(d, (vla_random() % 8) * 16);
    }
    printf("depth0 %ld depth1 %ld\n", truth[0], truth[1]);
}

static void run_seed(long n)
{
    enum { SLOTS = 256 };
    static void *slot[SLOTS];
    uint64_t x = 88172645463325252ull; /* fixed: every run makes the same allocations in the same order */
    for (long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t size = 8 + (size_t)(x % 8192);
        unsigned k = (unsigned)(x >> 40) % SLOTS;
        free(slot[k]);
        slot[k] = (x >> 63) ? seed_a(size) : seed_b(size);
    }
    for (unsigned k = 0; k < SLOTS; k++)
        free(slot[k]);
}

/* ---- fork: the parent's sites before and after, a parent thread allocating across the fork, the child's own ---- */
enum { FORK_PRE = 300, FORK_POST = 200, FORK_THREAD = 3000, FORK_CHILD = 250 };
SITE void site_parent_before(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(88));
}
SITE void site_parent_after(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(88));
}
SITE void site_parent_thread(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(136));
}
SITE void site_child_only(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(120));
}

static int fork_pipe[2];
static void *parent_thread_main(void *arg)
{
    void **t = arg;
    /* Half before telling main to fork, half while it forks: the thread's ring holds events at the fork. */
    site_parent_thread(t, FORK_THREAD / 2);
    char c = 1;
    if (write(fork_pipe[1], &c, 1) != 1)
        die("write");
    site_parent_thread(t + FORK_THREAD / 2, FORK_THREAD - FORK_THREAD / 2);
    free_all(t, 0, FORK_THREAD);
    return NULL;
}

static int run_fork(void)
{
    void **before = table(FORK_PRE), **after = table(FORK_POST), **thr = table(FORK_THREAD);
    void **child = table(FORK_CHILD);
    if (pipe(fork_pipe) < 0)
        die("pipe");
    site_parent_before(before, FORK_PRE);
    pthread_t t;
    if ((errno = pthread_create(&t, NULL, parent_thread_main, thr)) != 0)
        die("pthread_create");
    char c;
    if (read(fork_pipe[0], &c, 1) != 1)
        die("read");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        site_child_only(child, FORK_CHILD);
        free_all(child, 0, FORK_CHILD);
        free_all(before, 0, FORK_PRE); /* the parent's blocks: sampled in the parent, not in the child */
        exit(0);
    }
    pthread_join(t, NULL);
    int status;
    if (waitpid(pid, &status, 0) != pid)
        die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "trc_sites: the fork child failed (status 0x%x)\n", status);
        return 1;
    }
    site_parent_after(after, FORK_POST);
    free_all(before, 0, FORK_PRE);
    free_all(after, 0, FORK_POST);
    printf("parent %d child %d\n", (int)getpid(), (int)pid);
    return 0;
}

/* ---- exec: the image before exec and the one after, same pid ---- */
enum { EXEC_PRE = 500, EXEC_CHILD = 350 };
SITE void site_before_exec(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(56));
}
SITE void site_exec_child(void **out, long n)
{
    for (long i = 0; i < n; i++)
        touch(out[i] = malloc(72));
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "sites")) {
        long scale = argc > 2 ? atol(argv[2]) : 1;
        if (scale < 1)
            scale = 1;
        run_sites(scale);
        return 0;
    }
    if (!strcmp(mode, "vla") || !strcmp(mode, "vla-aligned")) {
        run_vla(argc > 2 ? atol(argv[2]) : 100000, mode[3] ? vla_rec_aligned : vla_rec);
        return 0;
    }
    if (!strcmp(mode, "fibers")) {
        run_fibers();
        return 0;
    }
    if (!strcmp(mode, "twins")) {
        run_twins(argc > 2 ? atol(argv[2]) : 1000);
        return 0;
    }
    if (!strcmp(mode, "seed")) {
        run_seed(argc > 2 ? atol(argv[2]) : 20000);
        return 0;
    }
    if (!strcmp(mode, "fork"))
        return run_fork();
    if (!strcmp(mode, "exec")) {
        void **t = table(EXEC_PRE);
        site_before_exec(t, EXEC_PRE);
        printf("pid %d\n", (int)getpid());
        fflush(stdout);
        execl("/proc/self/exe", argv[0], "exec-child", (char *)NULL);
        die("execl");
    }
    if (!strcmp(mode, "exec-child")) {
        void **t = table(EXEC_CHILD);
        site_exec_child(t, EXEC_CHILD);
        free_all(t, 0, EXEC_CHILD);
        printf("pid %d\n", (int)getpid());
        return 0;
    }
    fprintf(stderr, "usage: trc_sites sites [SCALE] | twins [N] | fibers | vla [N] | vla-aligned [N] | seed [N] | fork | exec\n");
    return 2;
}
