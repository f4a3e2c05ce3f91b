/* Call stacks of sampled allocations: captured with libunwind, interned into a table so an event carries an id,
 * and written to the recording in STACKS chunks before the events that use them. Lookups take no lock; a new
 * stack is added under the table lock. All memory is reserved with mmap up front and touched as it fills. */
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
__asm__(".symver gcc_unwind_backtrace, _Unwind_Backtrace@GCC_3.3");
__asm__(".symver gcc_get_ip, _Unwind_GetIP@GCC_3.0");

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
    int n, max;
};
static _Unwind_Reason_Code gcc_frame(struct _Unwind_Context *ctx, void *arg)
{
    struct gcc_walk *w = arg;
    if (w->n >= w->max)
        return _URC_END_OF_STACK;
    uintptr_t ip = gcc_get_ip(ctx);
    if (!ip)
        return _URC_END_OF_STACK;
    w->pc[w->n++] = (void *)ip;
    return _URC_NO_REASON;
}
static int gcc_backtrace(void **pc, int max)
{
    struct gcc_walk w = {pc, 0, max};
    gcc_unwind_backtrace(gcc_frame, &w);
    return w.n;
}

int hkt_backtrace(void **out, int max)
{
    void *pc[HKT_MAX_STACK_DEPTH + 16];
    if (max > HKT_MAX_STACK_DEPTH)
        max = HKT_MAX_STACK_DEPTH;
    int n = gcc_backtrace(pc, max + 16);
    if (!self_hi)
        hkt_find_self(&self_lo, &self_hi);
    int first = 0;
    for (int i = 0; i < n && i < 16; i++)
        if ((uintptr_t)pc[i] >= self_lo && (uintptr_t)pc[i] < self_hi)
            first = i + 1;
    int m = n - first < max ? n - first : max;
    for (int i = 0; i < m; i++)
        out[i] = pc[first + i];
    return m > 0 ? m : 0;
}

uint32_t hkt_stack_capture(unsigned depth)
{
    if (!table)
        return 0;
    void *pc[HKT_MAX_STACK_DEPTH + 16];
#ifdef HKT_LIBGCC_UNWIND_ONLY
    /* The ThreadSanitizer build of the tests: TSan's runtime and libunwind's per-thread cache do not get along
     * (the cache's destructor locks a mutex after TSan has let go of the exiting thread, and crashes). */
    int n = gcc_backtrace(pc, (int)depth + 16);
#else
    int n = hkt_tls.seq < FIRST_SAMPLES || atomic_load_explicit(&unwind_after_fork, memory_order_relaxed)
                ? gcc_backtrace(pc, (int)depth + 16)
                : unw_backtrace(pc, (int)depth + 16);
#endif
    /* The first frames are libunwind's and ours (the tracer, the malloc entry): skip through the last of ours
     * among them, so ip[0] is the return address into the program's code that called malloc. */
    int first = 0;
    for (int i = 0; i < n && i < 16; i++)
        if ((uintptr_t)pc[i] >= self_lo && (uintptr_t)pc[i] < self_hi)
            first = i + 1;
    unsigned m = n > first ? (unsigned)(n - first) : 0;
    if (m > depth)
        m = depth;
    return intern(pc + first, m);
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
