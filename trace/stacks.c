/* Call stacks of sampled allocations: captured with libunwind, interned into a table so an event carries an id,
 * and written to the recording in STACKS chunks before the events that use them. Lookups take no lock; a new
 * stack is added under the table lock. All memory is reserved with mmap up front and touched as it fills. */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <unwind.h>
#include "writer.h"

#define TABLE_SLOTS (1u << 20)    /* slot: entry index + 1; at most half full */
#define MAX_STACKS (TABLE_SLOTS / 2)
#define IP_POOL ((size_t)1 << 25) /* frames of all stacks, 256 MiB of address space, touched as used */

struct entry {
    uint64_t hash;
    uint32_t ip_off;
    uint32_t depth;
};

static _Atomic uint32_t *table;
static struct entry *entries;
static uint64_t *ips;
static _Atomic uint32_t nstacks; /* entries published; id of entry i is i + 1 */
static uint32_t ips_used;
static uint32_t nwritten;        /* entries already in the file (file lock) */
static pthread_mutex_t stack_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t self_lo, self_hi; /* libhakmem_prof.so: its frames are not part of a call site's stack */

/* libgcc's unwinder, bound by symbol version: libunwind exports _Unwind_Backtrace and _Unwind_GetIP too (in its
 * base version), implemented on unw_step with signals blocked around each step (two sigprocmask system calls),
 * several times slower than libgcc's; a plain reference binds to whichever library comes first, which was
 * libunwind. The versions pin libgcc's even where the program itself loads libunwind first. (The link names
 * libgcc_s before libunwind: GNU ld tries a versioned reference only against the first library defining the name.)
 * The two must come from one library: the context one fills in is the other's to read. */
extern __attribute__((visibility("default"))) _Unwind_Reason_Code gcc_unwind_backtrace(_Unwind_Trace_Fn, void *);
extern __attribute__((visibility("default"))) _Unwind_Ptr gcc_get_ip(struct _Unwind_Context *);
extern __attribute__((visibility("default"))) _Unwind_Word gcc_get_cfa(struct _Unwind_Context *);
extern __attribute__((visibility("default"))) _Unwind_Ptr gcc_get_ip_info(struct _Unwind_Context *, int *);
__asm__(".symver gcc_unwind_backtrace, _Unwind_Backtrace@GCC_3.3");
__asm__(".symver gcc_get_ip, _Unwind_GetIP@GCC_3.0");
__asm__(".symver gcc_get_cfa, _Unwind_GetCFA@GCC_3.3");
__asm__(".symver gcc_get_ip_info, _Unwind_GetIPInfo@GCC_4.2.0");

int hkt_stacks_init(uintptr_t lo, uintptr_t hi)
{
    self_lo = lo;
    self_hi = hi;
    table = hkt_map(TABLE_SLOTS * sizeof *table);
    entries = hkt_map(MAX_STACKS * sizeof *entries);
    ips = hkt_map(IP_POOL * sizeof *ips);
    return table && entries && ips ? 0 : -1;
}

static inline uint64_t hash_ips(void *const *pc, unsigned n)
{
    uint64_t h = 0x243f6a8885a308d3ull ^ n;
    for (unsigned i = 0; i < n; i++) {
        h ^= (uint64_t)(uintptr_t)pc[i];
        h *= 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    return h | 1;
}

static inline int same(const struct entry *e, uint64_t h, void *const *pc, unsigned n)
{
    if (e->hash != h || e->depth != n)
        return 0;
    for (unsigned i = 0; i < n; i++)
        if (ips[e->ip_off + i] != (uint64_t)(uintptr_t)pc[i])
            return 0;
    return 1;
}

/* The id of the stack pc[0..n), adding it if new; 0 if the table is full. */
static uint32_t intern(void *const *pc, unsigned n)
{
    uint64_t h = hash_ips(pc, n);
    uint32_t mask = TABLE_SLOTS - 1, i = (uint32_t)h & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t v = atomic_load_explicit(&table[i], memory_order_acquire);
        if (!v)
            break;
        if (same(&entries[v - 1], h, pc, n))
            return v;
    }
    pthread_mutex_lock(&stack_lock);
    /* Probe again: another thread may have added it, or taken the empty slot found above. */
    for (;; i = (i + 1) & mask) {
        uint32_t v = atomic_load_explicit(&table[i], memory_order_relaxed);
        if (!v)
            break;
        if (same(&entries[v - 1], h, pc, n)) {
            pthread_mutex_unlock(&stack_lock);
            return v;
        }
    }
    uint32_t id = 0, k = atomic_load_explicit(&nstacks, memory_order_relaxed);
    if (k < MAX_STACKS && ips_used + n <= IP_POOL) {
        struct entry *e = &entries[k];
        e->hash = h;
        e->depth = n;
        e->ip_off = ips_used;
        for (unsigned j = 0; j < n; j++)
            ips[ips_used + j] = (uint64_t)(uintptr_t)pc[j];
        ips_used += n;
        id = k + 1;
        /* The entry is complete before its slot or the count shows it. */
        atomic_store_explicit(&nstacks, id, memory_order_release);
        atomic_store_explicit(&table[i], id, memory_order_release);
    }
    pthread_mutex_unlock(&stack_lock);
    return id;
}

/* libunwind's unw_backtrace is fast (about 0.7 us for 5 frames here) once the thread has its trace cache, but
 * building that cache costs about 100 us per thread. libgcc's unwinder needs no per-thread setup (about 1.4 us
 * for 7 frames, finding FDEs through _dl_find_object): a thread's first samples use it, so a short-lived thread
 * with a sample or two never pays for the cache, and a busy one soon switches to the faster path. */
#define FIRST_SAMPLES 32
/* Set from the fork's prepare handler on, in the parent until its fork returns and in the child for good: another
 * thread of the parent may have been inside libunwind when it forked, holding one of libunwind's own locks (seen:
 * its register-state cache's), which then stays locked in the child forever; the child's next unw_backtrace hung
 * with every signal blocked (a one-in-4,000 fork of tests/test_fork under sampling). libunwind has no fork
 * handlers, so a child unwinds with libgcc's unwinder only. Set before the fork, the child has it before any
 * other library's child handler can allocate. */
static _Atomic int unwind_after_fork;
struct gcc_walk {
    void **pc;
    uintptr_t *cfa; /* with each return address, the CFA of the frame it returns from, if wanted */
    int n, max;
    int one_stack;  /* with cfa: no signal frame crossed, and the CFAs rise: the frames lie on one stack */
};
static _Unwind_Reason_Code gcc_frame(struct _Unwind_Context *ctx, void *arg)
{
    struct gcc_walk *w = arg;
    if (w->n >= w->max)
        return _URC_END_OF_STACK;
    uintptr_t ip;
    if (w->cfa) {
        int signal_frame = 0;
        ip = gcc_get_ip_info(ctx, &signal_frame);
        if (!ip)
            return _URC_END_OF_STACK;
        uintptr_t cfa = (uintptr_t)gcc_get_cfa(ctx);
        if (signal_frame || (w->n > 0 && cfa <= w->cfa[w->n - 1]))
            w->one_stack = 0;
        w->cfa[w->n] = cfa;
    } else if (!(ip = gcc_get_ip(ctx))) {
        return _URC_END_OF_STACK;
    }
    w->pc[w->n++] = (void *)ip;
    return _URC_NO_REASON;
}
static int gcc_backtrace(void **pc, uintptr_t *cfa, int max, int *one_stack)
{
    struct gcc_walk w = {pc, cfa, 0, max, 1};
    gcc_unwind_backtrace(gcc_frame, &w);
    if (one_stack)
        *one_stack = w.one_stack;
    return w.n;
}

/* The per-thread stack cache. On x86-64 a call pushes its return address just below the caller's stack pointer,
 * so a frame's return address sits 8 bytes below the CFA of the frame it returns from: a stack is its return
 * addresses and where they sit. Once a full unwind has found them, the next capture whose stack holds the same
 * return addresses at the same places (relative to this function's own CFA: the tracer's frames are of fixed
 * size, so a call site reached at another depth still matches) has the same stack, read back in a few loads and
 * compares instead of an unwind (about 850 instructions with libunwind). The tracer's own frames are checked too,
 * so each entry point keeps its entries. Entries are found by the first return address into the program, at the
 * place it had on the last miss (two places remembered: one per path through the tracer, such as malloc and
 * calloc).
 * Reads stay inside the part of the thread's stack that unwinds have walked: [lo, hi), where hi is just past the
 * outermost return address of a complete unwind and lo the lowest CFA a complete unwind ending there started
 * from; an unwind through a signal frame, or whose CFAs do not rise, proves nothing and is not cached. A capture
 * elsewhere (a signal's alternate stack, a coroutine's) unwinds in full and is not cached. No
 * pthread call gives the bounds without allocating, and the tracer's own allocations would show in the counters.
 * What this cannot tell: a frame of variable size (alloca) could put a stale copy of the same return address
 * where the real one was; the sample is then charged to the earlier stack. */
#define CACHE_ENTRIES 64    /* direct-mapped */
#define CACHE_SLOTS 40      /* the tracer's frames and the program's; a deeper stack is unwound every time */
#define CACHE_UNSET INT32_MIN
struct cached_stack {
    uint32_t id;            /* 0: empty */
    uint32_t gen;           /* the cache's generation it was stored in: older ones are empty */
    uint16_t n;             /* return addresses checked */
    uint16_t depth;         /* the depth asked for when it was captured */
    int32_t top;            /* just past the highest place read, from the CFA */
    int32_t off[CACHE_SLOTS];
    uint64_t ip[CACHE_SLOTS];
};
struct hkt_stack_cache {
    uintptr_t lo, hi;       /* the walked part of the thread's stack */
    int32_t key_off[2];     /* where the first return address into the program sat on the last misses */
    uint32_t lookups, hits; /* over the current window: a thread whose stacks seldom repeat stops looking */
    uint32_t bypass;        /* captures left to unwind without looking */
    uint32_t gen;           /* bumped when the cache passes to a thread on another stack */
    struct hkt_stack_cache *next; /* the pool */
    struct cached_stack e[CACHE_ENTRIES];
};
static struct hkt_stack_cache *cache_pool; /* stack lock */
#define CACHE_WINDOW 1024
#define CACHE_BYPASS 65536

/* A cache for a thread whose outermost return address sits just below hi, from the pool. glibc gives a new
 * thread the stack of one that exited: a cache left on that stack is taken first, entries and all (an entry says
 * what a stack holds, not whose it is); lo starts over either way, for the caller to set. Any other cache starts
 * empty: its places may lie past this stack's end. */
static struct hkt_stack_cache *cache_acquire(uintptr_t hi)
{
    pthread_mutex_lock(&stack_lock);
    struct hkt_stack_cache **pp = &cache_pool;
    while (*pp && (*pp)->hi != hi)
        pp = &(*pp)->next;
    if (!*pp)
        pp = &cache_pool;
    struct hkt_stack_cache *c = *pp;
    if (c)
        *pp = c->next;
    pthread_mutex_unlock(&stack_lock);
    if (!c && !(c = hkt_map(sizeof *c))) /* zero-filled: generation 0, every entry empty */
        return NULL;
    if (c->hi != hi) {
        c->gen++;
        c->hi = hi;
        c->key_off[0] = c->key_off[1] = CACHE_UNSET;
    }
    c->lo = hi;
    c->lookups = c->hits = c->bypass = 0;
    return c;
}

void hkt_stacks_thread_exit(void)
{
    struct hkt_stack_cache *c = hkt_tls.stack_cache;
    if (!c)
        return;
    hkt_tls.stack_cache = NULL;
    pthread_mutex_lock(&stack_lock);
    c->next = cache_pool;
    cache_pool = c;
    pthread_mutex_unlock(&stack_lock);
}

static inline struct cached_stack *cache_slot(struct hkt_stack_cache *c, uint64_t ret, int32_t off)
{
    uint64_t h = (ret ^ (uint32_t)off) * 0x9e3779b97f4a7c15ull;
    return &c->e[h >> 58];
}

/* Reads words of the callers' frames that are not this code's: AddressSanitizer would call a read of a
 * redzone an overflow. */
__attribute__((no_sanitize_address)) static uint32_t cache_lookup(struct hkt_stack_cache *c, uintptr_t cfa,
                                                                  unsigned depth)
{
    for (int k = 0; k < 2; k++) {
        int32_t ko = c->key_off[k];
        if (ko == CACHE_UNSET || cfa + (intptr_t)ko + 8 > c->hi)
            continue;
        const struct cached_stack *e = cache_slot(c, *(const uint64_t *)(cfa + (intptr_t)ko), ko);
        if (!e->id || e->gen != c->gen || e->depth != depth || cfa + (intptr_t)e->top > c->hi)
            continue;
        unsigned i = 0;
        while (i < e->n && *(const uint64_t *)(cfa + (intptr_t)e->off[i]) == e->ip[i])
            i++;
        if (i == e->n)
            return e->id;
    }
    return 0;
}

/* After a full unwind from this CFA. libgcc reports with each frame's return address pc[k] the CFA of the frame
 * it returns from (the stack pointer of frame k at its call), so pc[k] sits at cfas[k] - 8. Places below this
 * function's own return address (the unwinder's frames) are not part of the entry; every place is checked to hold
 * its address before it is kept. */
__attribute__((no_sanitize_address)) static void cache_store(struct hkt_stack_cache *c, uintptr_t cfa,
                                                             unsigned depth, void *const *pc,
                                                             const uintptr_t *cfas, int first, unsigned m,
                                                             uint32_t id)
{
    struct cached_stack tmp;
    unsigned k = 0;
    int32_t key = CACHE_UNSET;
    for (int i = 0; i < first + (int)m; i++) {
        uintptr_t at = cfas[i] - 8;
        if (at < cfa - 8)
            continue; /* a return address into the unwinder or into this function */
        if (k == CACHE_SLOTS || at + 8 > c->hi || at - (cfa - 8) > INT32_MAX ||
            *(const uint64_t *)at != (uint64_t)(uintptr_t)pc[i])
            return; /* too deep, off the walked stack, or not where a return address would be: not cached */
        tmp.off[k] = (int32_t)(intptr_t)(at - cfa);
        tmp.ip[k] = (uint64_t)(uintptr_t)pc[i];
        if (i == first)
            key = tmp.off[k];
        k++;
    }
    if (key == CACHE_UNSET)
        return;
    tmp.id = id;
    tmp.gen = c->gen;
    tmp.n = (uint16_t)k;
    tmp.depth = (uint16_t)depth;
    tmp.top = tmp.off[k - 1] + 8;
    *cache_slot(c, (uint64_t)(uintptr_t)pc[first], key) = tmp;
    if (c->key_off[0] != key) {
        c->key_off[1] = c->key_off[0];
        c->key_off[0] = key;
    }
}

/* The first frames are libunwind's and ours (the tracer, the malloc entry): the program's stack starts past the
 * last of ours among them, so its ip[0] is the return address into the program's code that called malloc. */
static int skip_own(void *const *pc, int n)
{
    int first = 0;
    for (int i = 0; i < n && i < 16; i++)
        if ((uintptr_t)pc[i] >= self_lo && (uintptr_t)pc[i] < self_hi)
            first = i + 1;
    return first;
}

int hkt_backtrace(void **out, int max)
{
    void *pc[HKT_MAX_STACK_DEPTH + 16];
    if (max > HKT_MAX_STACK_DEPTH)
        max = HKT_MAX_STACK_DEPTH;
    int n = gcc_backtrace(pc, NULL, max + 16, NULL);
    if (!self_hi)
        hkt_find_self(&self_lo, &self_hi);
    int first = skip_own(pc, n);
    int m = n - first < max ? n - first : max;
    for (int i = 0; i < m; i++)
        out[i] = pc[first + i];
    return m > 0 ? m : 0;
}

static inline unsigned program_frames(int n, int first, unsigned depth)
{
    unsigned m = n > first ? (unsigned)(n - first) : 0;
    return m > depth ? depth : m;
}

/* A capture the cache could not answer: an unwind with libgcc's unwinder, which reports each frame's CFA
 * (libunwind's fast path does not), and the stack kept. Off the walked stack (known = 0) the unwind goes to the
 * stack's end, to learn its bounds. */
__attribute__((noinline)) static uint32_t capture_miss(unsigned depth, uintptr_t cfa, int known)
{
    void *pc[HKT_MAX_STACK_DEPTH + 16];
    uintptr_t cfas[HKT_MAX_STACK_DEPTH + 16];
    struct hkt_stack_cache *c = hkt_tls.stack_cache;
    int max = known ? (int)depth + 16 : HKT_MAX_STACK_DEPTH + 16;
    int one_stack;
    int n = gcc_backtrace(pc, cfas, max, &one_stack);
    int first = skip_own(pc, n);
    unsigned m = program_frames(n, first, depth);
    uint32_t id = intern(pc + first, m);
    /* Through a signal frame (a handler on its alternate stack) the places are on two stacks: not kept. */
    if (!id || first == 0 || n == 0 || !one_stack)
        return id;
    if (!known) {
        if (n == max)
            return id; /* cut short: the stack's end is not known */
        uintptr_t hi = cfas[n - 1];
        if (!c) {
            c = hkt_tls.stack_cache = cache_acquire(hi);
            hkt_tls.stack_cache_off = !c;
            if (!c)
                return id;
        }
        if (hi != c->hi)
            return id; /* another stack than the one the cache knows */
        if (cfa < c->lo)
            c->lo = cfa;
    }
    cache_store(c, cfa, depth, pc, cfas, first, m, id);
    return id;
}

/* A capture without the cache: libunwind's fast path once the thread has taken its first samples. */
__attribute__((noinline)) static uint32_t capture_plain(unsigned depth)
{
    void *pc[HKT_MAX_STACK_DEPTH + 16];
#ifdef HKT_LIBGCC_UNWIND_ONLY
    /* The ThreadSanitizer build of the tests: TSan's runtime and libunwind's per-thread cache do not get along
     * (the cache's destructor locks a mutex after TSan has let go of the exiting thread, and crashes). */
    int n = gcc_backtrace(pc, NULL, (int)depth + 16, NULL);
#else
    int n = hkt_tls.seq < FIRST_SAMPLES || atomic_load_explicit(&unwind_after_fork, memory_order_relaxed)
                ? gcc_backtrace(pc, NULL, (int)depth + 16, NULL)
                : unw_backtrace(pc, (int)depth + 16);
#endif
    int first = skip_own(pc, n);
    return intern(pc + first, program_frames(n, first, depth));
}

/* The CFA that the cache's places are relative to is this function's. A hit is answered here; the unwinds are
 * functions of their own, so their arrays are on the stack (and their frames set up) only while one runs. */
__attribute__((noinline)) uint32_t hkt_stack_capture(unsigned depth)
{
    if (!table)
        return 0;
    struct hkt_stack_cache *c = hkt_tls.stack_cache;
    if (c ? c->bypass == 0 : !hkt_tls.stack_cache_off) {
        uintptr_t cfa = (uintptr_t)__builtin_dwarf_cfa();
        int known = c && cfa >= c->lo && cfa < c->hi;
        uint32_t id = 0;
        if (known && (id = cache_lookup(c, cfa, depth)) != 0)
            c->hits++;
        if (c && ++c->lookups == CACHE_WINDOW) {
            if (c->hits < CACHE_WINDOW / 8)
                c->bypass = CACHE_BYPASS; /* stacks that seldom repeat: the faster unwinder, no looking */
            c->lookups = c->hits = 0;
        }
        if (!id)
            id = capture_miss(depth, cfa, known);
        if (id)
            return id;
    } else if (c) {
        c->bypass--;
    }
    return capture_plain(depth);
}

/* STACKS chunks for the entries published since the last call, in pieces that fit the scratch buffer. */
void hkt_stacks_flush_locked(void)
{
    uint32_t total = atomic_load_explicit(&nstacks, memory_order_acquire);
    while (nwritten < total) {
        uint8_t *buf = hkt_scratch_locked();
        uint8_t *p = buf + HKT_VARINT_MAX; /* room for the count, moved down once known */
        uint32_t k = nwritten, count = 0;
        while (k < total && (size_t)(p - buf) + (size_t)(HKT_MAX_STACK_DEPTH + 3) * HKT_VARINT_MAX < HKT_SCRATCH) {
            const struct entry *e = &entries[k];
            p = hkt_put_u(p, k + 1);
            p = hkt_put_u(p, e->depth);
            const uint64_t *ip = &ips[e->ip_off];
            for (uint32_t j = 0; j < e->depth; j++)
                p = j ? hkt_put_s(p, (int64_t)(ip[j] - ip[j - 1])) : hkt_put_u(p, ip[0]);
            k++;
            count++;
        }
        uint8_t head[HKT_VARINT_MAX];
        size_t hl = (size_t)(hkt_put_u(head, count) - head);
        uint8_t *start = buf + HKT_VARINT_MAX - hl;
        memcpy(start, head, hl);
        hkt_write_chunk_locked(HKT_CHUNK_STACKS, start, (size_t)(p - start));
        nwritten = k;
    }
}

void hkt_stacks_fork_prepare(void)
{
    atomic_store_explicit(&unwind_after_fork, 1, memory_order_relaxed);
    pthread_mutex_lock(&stack_lock);
}
void hkt_stacks_fork_parent(void)
{
    pthread_mutex_unlock(&stack_lock);
    atomic_store_explicit(&unwind_after_fork, 0, memory_order_relaxed);
}
void hkt_stacks_fork_child(void)
{
    pthread_mutex_init(&stack_lock, NULL);
    nwritten = 0;
}
