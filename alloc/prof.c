/* The instrumented build's hooks in the allocator: per-block allocating thread (to tell cross-thread frees), bytes
 * in use, thread and SuperSlab gauges, the stats segment's lifetime, and the in-process counter API of hakmem.h.
 * Compiled only into libhakmem_prof.so: in the optimized build this file is empty. */
#if defined(HAKMEM_PROF) && HAKMEM_PROF
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <sys/mman.h>
#include "../alloc/hakmem.h"
#include "internal.h"

static _Atomic uint32_t next_tid = 1;
static _Atomic int64_t bytes_in_use; /* process total, fed by per-thread deltas at slow paths */

/* mine_bits of a SuperSlab: one bit per 16-byte granule, 16 KiB, touched only for adopted slabs. */
#define MINE_BITS_BYTES (HAK_CHUNK >> 4 >> 3)

void hak_prof_ss_mapped(struct hak_superslab *ss)
{
    void *m = mmap(NULL, MINE_BITS_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ss->mine_bits = m == MAP_FAILED ? NULL : m;
}

static inline uint64_t granule(const void *p)
{
    return ((uintptr_t)p & HAK_CHUNK_MASK) >> 4;
}

/* Only the owner reads and writes a slab's bits (the abandoning owner, then its adopter, ordered by the abandoned
 * list's lock). Below adopt_end a bit is set for a block that was free when the slab was last abandoned, and when
 * the owner takes a block back; blocks at or past adopt_end were carved by the adopter itself. */
static inline void set_mine(uint64_t *bits, const void *p)
{
    uint64_t g = granule(p);
    bits[g >> 6] |= 1ull << (g & 63);
}

/* 1 if p, coming back to its owner of an inherited slab (leftovers > 0), is a leftover of a dead owner: one fewer
 * is out, and at the last the slab stops being watched. p is the owner's from now on. Without a branch on the
 * answer: on Larson whether a free is a leftover is a coin toss the predictor cannot learn (seed Larson, one
 * thread: 4.7% faster than with branches). The bit is set whatever the block's offset: bits past adopt_end are
 * never read, and the next adoption clears them. */
static inline unsigned leftover_take(struct hak_slab *s, const void *p)
{
    uint64_t *bits = hak_ss_of_slab(s)->mine_bits;
    uint64_t g = granule(p), w = bits[g >> 6];
    unsigned left = (((uintptr_t)p & HAK_CHUNK_MASK) < s->adopt_end) & (unsigned)~(w >> (g & 63)) & 1u;
    bits[g >> 6] = w | 1ull << (g & 63);
    s->leftovers = (uint16_t)(s->leftovers - left);
    if (HAK_UNLIKELY(s->leftovers == 0))
        s->inherited = 0; /* every block out from now on was handed out by this owner */
    return left;
}

/* The owner abandons s (its exit, after its cache went back to its slabs): the blocks on the free list are free,
 * every other carved one is out and will be a leftover for the adopter. The bits are set here, by the thread that
 * last wrote most of those blocks (its own frees, its cache just handed back), not by the adopter, to which they
 * are another core's lines: marking them there, at each refill, walked free lists a miss at a time, and kept the
 * prof build from taking a slab's whole free list at once (refill.c's fill_from). Slab bounds are multiples of
 * 1 KiB: whole words. */
void hak_prof_slab_abandoned(struct hak_slab *s)
{
    uint64_t *bits = hak_ss_of_slab(s)->mine_bits;
    if (!bits)
        return;
    uintptr_t from = hak_slab_start_off(s), end = from + (uintptr_t)s->carved * s->bsize;
    memset(&bits[from >> 10], 0, (end - from + 1023) >> 10 << 3);
    for (void *b = s->free; b; b = *(void **)b)
        set_mine(bits, b);
}

/* Called once the adopter has drained the slab's remote list (thread.c), whose blocks that drain marked free
 * (hak_prof_drained): every block still out was handed out by a dead owner. */
void hak_prof_slab_inherited(struct hak_slab *s)
{
    struct hak_superslab *ss = hak_ss_of_slab(s);
    s->leftovers = HAK_USED(s);
    s->inherited = s->leftovers > 0 && ss->mine_bits;
    if (!s->inherited)
        return;
    hak_tls_heap.ctr_classes |= (uint64_t)1 << (s->cls & 63); /* its frees count on the fast adds */
    s->adopt_end = hak_slab_start_off(s) + (uint32_t)s->carved * s->bsize;
}

int hak_prof_free_inherited(struct hak_slab *s, void *p)
{
    return (int)leftover_take(s, p);
}

/* The free fast path's detour for an owner freeing into an adopted slab: classify, then push onto tls_sll.
 * After a thread hands over to the next (Larson's seed parameters), most frees come here, so it is kept as lean
 * as the fast path it left: the heap is live, so its counters take the fast adds, and the slab's class was
 * marked counted when it was adopted (hak_prof_slab_inherited). */
void hak_prof_push_inherited(struct hak_slab *s, void *p, struct hak_tcache *tc)
{
    unsigned left = leftover_take(s, p);
    hak_count_fast(HKC_FREE_TLS_SLL_OWN + s->cls + left * (HKC_FREE_TLS_SLL_LEFTOVER - HKC_FREE_TLS_SLL_OWN));
    *(void **)p = tc->head;
    tc->head = p;
}

/* Blocks drained from the remote list of a slab being adopted: free, marked so. Of an inherited slab: the dead
 * owners' ones among them are back. */
void hak_prof_drained(struct hak_slab *s, void *chain)
{
    if (s->inherited == HAK_ADOPTING) {
        uint64_t *bits = hak_ss_of_slab(s)->mine_bits;
        if (bits)
            for (void *b = chain; b; b = *(void **)b)
                set_mine(bits, b);
        return;
    }
    for (void *b = chain; b && s->inherited; b = *(void **)b)
        leftover_take(s, b);
}

/* Feeds the process's bytes-in-use total from a slow path, in steps of at least 64 KiB so that threads do not
 * fight over its cache line; the peak is therefore exact to 64 KiB per thread. The test of the step is inline
 * (HAK_ON_SLOW_PATH); this is the add. */
void hak_prof_inuse_flush(void)
{
    struct hak_heap *h = &hak_tls_heap;
    int64_t d = h->inuse_delta;
    h->inuse_delta = 0;
    int64_t now = atomic_fetch_add_explicit(&bytes_in_use, d, memory_order_relaxed) + d;
    if (now > 0)
        hkc_gauge_max(HKC_BYTES_IN_USE_PEAK, (uint64_t)now);
}

void hak_prof_alloc_large(struct hak_large *l)
{
    if (hak_tls_heap.state == HAK_HEAP_NEW) /* a thread whose first allocation is large: give it its number */
        hak_heap_init(&hak_tls_heap);
    HAK_COUNT(ALLOC_LARGE, 0);
    HAK_COUNT_N(LARGE_BYTES_ALLOCATED, 0, l->map_size);
    hak_tls_heap.inuse_delta += (int64_t)l->map_size;
    HAK_ON_SLOW_PATH(); /* a large block is at least 128 KiB: into the process total (and its peak) now */
    l->alloc_tid = hak_tls_heap.tid;
}

void hak_prof_free_large(struct hak_large *l)
{
    HAK_COUNT(FREE_LARGE, 0);
    HAK_COUNT_N(LARGE_BYTES_FREED, 0, l->map_size);
    hak_tls_heap.inuse_delta -= (int64_t)l->map_size;
    HAK_ON_SLOW_PATH();
    if (l->alloc_tid != 0 && l->alloc_tid == hak_tls_heap.tid)
        HAK_COUNT(FREE_LARGE_SAME_THREAD, 0);
    else
        HAK_COUNT(FREE_LARGE_CROSS_THREAD, 0);
}

void hak_prof_thread_start(struct hak_heap *h)
{
    h->tid = atomic_fetch_add_explicit(&next_tid, 1, memory_order_relaxed);
    h->ctr = hkc_slot_acquire();
    HAK_COUNT(THREAD_STARTED, 0);
    __atomic_fetch_add(&hkc_gauges[HKC_THREADS_LIVE], 1, __ATOMIC_RELAXED);
    hkt_thread_start(h->tid);
}

void hak_prof_thread_exit(struct hak_heap *h)
{
    hkt_thread_exit(h->tid, hak_prof_trap ? &h->trap_left : &h->sample_left);
    HAK_COUNT(THREAD_EXITED, 0);
    __atomic_fetch_sub(&hkc_gauges[HKC_THREADS_LIVE], 1, __ATOMIC_RELAXED);
    HAK_ON_SLOW_PATH();
    uint64_t *slot = h->ctr;
    h->ctr = NULL; /* from here on this thread counts into the shared block */
    hkc_slot_release(slot, h->ctr_classes);
    h->ctr_classes = 0;
}

void hak_prof_ss_live(int delta)
{
    uint64_t now = __atomic_add_fetch(&hkc_gauges[HKC_SS_LIVE], (uint64_t)(int64_t)delta, __ATOMIC_RELAXED);
    hkc_gauge_max(HKC_SS_PEAK, now);
}

static void checks_init(void);

static void walk_slots(hkt_slot_fn *fn, void *arg); /* the slots below */

void hak_prof_global_init(void)
{
    hkc_config.publish = hak_settings.stats;
    hkc_config.dir = hak_settings.stats_dir;
    hkc_config.print = hak_settings.stats_print;
    hkc_config.print_file = hak_settings.stats_file;
    hkc_init();
    hkt_set_slot_walker(walk_slots);
    struct hkt_config tc = {
        .record = hak_settings.record,
        .root_pid = hak_settings.record_root_pid,
        .sample = hak_settings.sample,
        .sample_seed = hak_settings.sample_seed,
        .stack_depth = hak_settings.stack_depth,
        .snapshot_ms = hak_settings.snapshot_ms,
        .window_signal = hak_settings.record_signal,
        .start_paused = hak_settings.record_paused,
    };
    hkt_configure(&tc);
    checks_init();
}

void hak_prof_constructed(void)
{
    int started_before = hak_tls_heap.state == HAK_HEAP_LIVE;
    hkt_start(hak_prof_trap ? &hak_tls_heap.trap_left : &hak_tls_heap.sample_left);
    /* Every allocation sampled: an offset would move every block to a larger class and change the per-class
     * picture the recording is for. Blocks are handed out as they are, and every free looks in the table. */
    if (hkt_recording && hkt_sample_mode() == HKT_SAMPLE_ALL) {
        hak_prof_sample_plain = 1;
        hak_prof_set_free_checks(1);
    }
    if (started_before) /* the main thread started before the recording; otherwise its start is recorded */
        hkt_thread_start(hak_tls_heap.tid);
}

/* ---- trace/'s record slots: one per SuperSlab block, indexed by unit and block, so that a sampled block's free
 * finds its record without a lookup or a lock. A slab holds at most 4096 blocks: 4096 slots per unit, 5 MiB of
 * address space per SuperSlab, mapped at its first sample (MAP_NORESERVE: only the pages of slots ever written
 * cost memory). SuperSlabs are never unmapped, so neither are their slots. ---- */
#define SLOTS_PER_UNIT 4096
#define SLOTS_BYTES ((size_t)HAK_UNITS * SLOTS_PER_UNIT * sizeof(struct hkt_slot))
static struct hak_superslab *_Atomic slotted; /* the SuperSlabs with slots, through slots_next */

static HAK_NOINLINE struct hkt_slot *ss_slots_map(struct hak_superslab *ss)
{
    struct hkt_slot *sl =
        mmap(NULL, SLOTS_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (sl == MAP_FAILED)
        return NULL; /* no room for its record: the sample is not recorded at all */
    struct hkt_slot *none = NULL;
    if (!atomic_compare_exchange_strong_explicit(&ss->trace_slots, &none, sl, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        munmap(sl, SLOTS_BYTES); /* another thread mapped them first */
        return none;
    }
    struct hak_superslab *head = atomic_load_explicit(&slotted, memory_order_relaxed);
    do
        ss->slots_next = head;
    while (!atomic_compare_exchange_weak_explicit(&slotted, &head, ss, memory_order_release, memory_order_relaxed));
    return sl;
}
static inline struct hkt_slot *ss_slots(struct hak_superslab *ss, int create)
{
    struct hkt_slot *sl = atomic_load_explicit(&ss->trace_slots, memory_order_acquire);
    return HAK_LIKELY(sl) || !create ? sl : ss_slots_map(ss);
}

/* The slot of block b of slab s (its head descriptor); NULL if the SuperSlab has none (and create is 0). */
static inline struct hkt_slot *block_slot(const struct hak_slab *s, uintptr_t b, int create)
{
    struct hak_superslab *ss = hak_ss_of_slab(s);
    struct hkt_slot *sl = ss_slots(ss, create);
    if (!sl)
        return NULL;
    uint64_t idx = ((uint64_t)(b - hak_slab_start(s)) * hak_class_recip[s->cls]) >> 40;
    return &sl[(size_t)(s - ss->slabs) * SLOTS_PER_UNIT + idx];
}

/* The head descriptor of a carved block's start that this thread holds (just handed out, or in its tls_sll): no
 * validation. head_back is 0 but in a multi-unit slab's tail units. */
static struct hak_slab *held_block_slab(const void *p)
{
    struct hak_slab *s = hak_slab_of((uintptr_t)p);
    return s - s->head_back;
}

/* The slot of the block p points into, if it is a carved block of a SuperSlab with slots. */
static struct hkt_slot *slot_of(const void *p)
{
    uintptr_t b;
    struct hak_slab *s = hak_slab_block_of(p, &b);
    return s ? block_slot(s, b, 0) : NULL;
}

/* trace/'s walk for the leaks at the end: every carved block's slot of every live slab (trace/ reads the state). */
static void walk_slots(hkt_slot_fn *fn, void *arg)
{
    for (struct hak_superslab *ss = atomic_load_explicit(&slotted, memory_order_acquire); ss; ss = ss->slots_next) {
        const struct hkt_slot *sl = atomic_load_explicit(&ss->trace_slots, memory_order_relaxed);
        for (unsigned u = 0; u < HAK_UNITS; u++) {
            const struct hak_slab *s = &ss->slabs[u];
            if (HAK_RELAXED_LOAD(s->state) == HAK_SLAB_FREE ||
                atomic_load_explicit(&s->owner, memory_order_relaxed) == HAK_OWNER_TAIL)
                continue;
            unsigned n = HAK_RELAXED_LOAD(s->carved);
            for (unsigned i = 0; i < n && i < SLOTS_PER_UNIT; i++)
                fn(&sl[(size_t)u * SLOTS_PER_UNIT + i], arg);
        }
    }
}

/* ---- sampled allocations and their frees (trace/) ---- */
/* A sampled block in a SuperSlab is handed out past its block's start (hak_prof_sampled_offset). Its free then
 * fails the free fast path's block-boundary test, which every free makes anyway, and the slow path knows it by
 * a header in the bytes skipped: finding the sampled blocks costs the frees of all other blocks nothing.
 * The header: word 0 is hak_sampled_key ^ the pointer handed out (so the offset, 16 or the alignment, is that
 * pointer minus the block's start), word 1 the free mark: the block's own start, which malloc never returned,
 * reads as free to every free, realloc and usable-size check, and is refused.
 * Large blocks, and every block under the debug checks or with every allocation sampled, are handed out as they
 * are; their frees look them up in trace/'s sampled table. */
uint64_t hak_sampled_key = 0x6a09e667f3bcc909ull; /* replaced by a per-process random value at init */
int hak_prof_offsets;                              /* some block was handed out at an offset: realloc looks */
int hak_prof_sample_plain;                         /* debug checks or HAKMEM_SAMPLE=all: no offsets */

void *hak_prof_sampled_offset(void *b, size_t size, size_t off, unsigned cls)
{
    if (!b)
        return NULL;
    if (hak_map_kind(b) != HAK_MAP_SS) { /* an alignment no class serves came from a large mapping */
        hak_prof_sampled_alloc(b, size);
        return b;
    }
    void *p = (char *)b + off;
    ((uint64_t *)b)[0] = hak_sampled_key ^ (uintptr_t)p;
    ((uint64_t *)b)[1] = hak_free_key;
    if (!__atomic_load_n(&hak_prof_offsets, __ATOMIC_RELAXED)) /* other threads read it in realloc */
        __atomic_store_n(&hak_prof_offsets, 1, __ATOMIC_RELAXED);
    struct hkt_slot *slot = block_slot(held_block_slab(b), (uintptr_t)b, 1);
    if (slot) /* else not recorded: its free could not be */
        hkt_record_alloc(p, size, cls, hak_tls_heap.last_stage, hak_tls_heap.tid, slot);
    return p;
}

/* The pointer a live sampled block starting at b was handed out as, or 0 if b holds no sampled header. */
static uintptr_t sampled_pointer_of(uintptr_t b)
{
    uintptr_t q = (uintptr_t)(((const uint64_t *)b)[0] ^ hak_sampled_key);
    return ((const uint64_t *)b)[1] == hak_free_key && q - b >= 16 && q - b <= HAK_PAGE ? q : 0;
}

/* The block p was handed out in, with the header's offset, if p is a live sampled pointer; else 0. */
static uintptr_t sampled_block(const void *p, struct hak_slab **slab, size_t *off)
{
    uintptr_t b;
    struct hak_slab *s = hak_slab_block_of(p, &b);
    if (!s || (uintptr_t)p - b < 16 || (uintptr_t)p - b > HAK_PAGE)
        return 0;
    const uint64_t *h = (const uint64_t *)b;
    if (h[0] != (hak_sampled_key ^ (uintptr_t)p) || h[1] != hak_free_key)
        return 0;
    *slab = s;
    *off = (uintptr_t)p - b;
    return b;
}

size_t hak_prof_sampled_usable(const void *p)
{
    struct hak_slab *s;
    size_t off;
    return sampled_block(p, &s, &off) ? s->bsize - off : 0;
}

/* The path a free of a block of slab s by this thread takes (as hak_free_slow decides it). */
static unsigned free_path(const struct hak_slab *s)
{
    struct hak_heap *h = &hak_tls_heap;
    if (atomic_load_explicit(&s->owner, memory_order_relaxed) != h->id || h->state != HAK_HEAP_LIVE)
        return HKT_PATH_SS_REMOTE;
    return h->tc[s->cls].room > 0 ? HKT_PATH_TLS_SLL : HKT_PATH_SS_LOCAL;
}

int hak_prof_free_sampled(void *p)
{
    struct hak_slab *s;
    size_t off;
    uintptr_t b = sampled_block(p, &s, &off);
    if (!b) {
        /* A sampled pointer freed twice: its block's free mark is where the header was. */
        uintptr_t blk;
        size_t d;
        if (__atomic_load_n(&hak_prof_offsets, __ATOMIC_RELAXED) && hak_slab_block_of(p, &blk) &&
            ((const uint64_t *)blk)[1] == hak_free_key && !sampled_pointer_of(blk) &&
            (d = (uintptr_t)p - blk) >= 16 && d <= HAK_PAGE && !(d & (d - 1))) {
            hak_prof_double_free(p);
            return 1;
        }
        return 0;
    }
    struct hak_heap *h = &hak_tls_heap;
    if (h->state == HAK_HEAP_NEW) /* a thread whose first call is a free: give it its number */
        hak_heap_init(h);
    /* Recorded before the block is freed, so it cannot be reused (and sampled again) while its record is out. */
    hkt_record_free(p, free_path(s), h->tid, block_slot(s, b, 0));
    ((uint64_t *)b)[0] = 0;
    ((uint64_t *)b)[1] = 0; /* the header's free mark: the block is freed now, once */
    hak_free_slow((void *)b);
    return 1;
}

/* A block sampled as it is (large, or under the debug checks), just handed out. */
void hak_prof_sampled_alloc(void *p, size_t size)
{
    if (!p)
        return;
    unsigned cls = 255, stage = HKT_STAGE_LARGE;
    struct hkt_slot *slot = NULL;
    if (hak_map_kind(p) == HAK_MAP_SS) {
        struct hak_slab *s = held_block_slab(p);
        if (!(slot = block_slot(s, (uintptr_t)p, 1)))
            return;
        cls = s->cls;
        stage = hak_tls_heap.last_stage;
    }
    hkt_record_alloc(p, size, cls, stage, hak_tls_heap.tid, slot);
}

/* Before a block that may be sampled as it is goes (freed, or given to realloc): its free is recorded if its slot
 * (or for a large block trace/'s table) holds it live. The path is the one a free would take now. */
void hak_prof_sampled_free(void *p)
{
    struct hak_heap *h = &hak_tls_heap;
    if (h->state == HAK_HEAP_NEW)
        hak_heap_init(h);
    unsigned path = HKT_PATH_LARGE;
    struct hkt_slot *slot = NULL;
    if (hak_map_kind(p) == HAK_MAP_SS) {
        /* Not a carved block, or no slots: never sampled (the free after this one refuses a bad pointer). A slot
         * holds its pointer, so an interior one finds no record. */
        uintptr_t b;
        const struct hak_slab *s = hak_slab_block_of(p, &b);
        if (!s || !(slot = block_slot(s, b, 0)))
            return;
        path = free_path(s);
    }
    hkt_record_free(p, path, h->tid, slot);
}

void hak_prof_fork_child(struct hak_heap *h)
{
    /* trace/ handles its own fork (its handlers run after these, see thread.c). */
    /* The child has the parent's blocks: bytes in use go on from the parent's total (with this thread's part not
     * yet added), and threads_live counts this thread only if its heap is live (one started later adds itself). */
    hkc_fork_child(h->state == HAK_HEAP_LIVE);
    h->ctr = h->state == HAK_HEAP_LIVE ? hkc_slot_acquire() : NULL;
    h->ctr_classes = ~(uint64_t)0; /* its caches already hold blocks of classes it will count on fast paths */
}

/* At normal exit: the table (HAKMEM_STATS_PRINT=1) and removing the segment file. */
__attribute__((destructor)) static void hak_prof_exit(void)
{
    hkt_stop(); /* its last snapshot reads the segment */
    hkc_exit();
}

/* ---- debug checks: double free, invalid free, overflow (HAKMEM_GUARD), write after free (HAKMEM_POISON) ---- */
uint64_t hak_free_key = 0x9e3779b97f4a7c15ull; /* replaced by a per-process random value at init */
int hak_prof_guard;
int hak_prof_poison;
int hak_prof_trap;
int hak_prof_free_checks;
uintptr_t hak_prof_free_reject = HAK_FAST_FREE_REJECT;

void hak_prof_set_free_checks(int on)
{
    hak_prof_free_checks = on;
    hak_prof_free_reject = on ? ~(uintptr_t)0 : HAK_FAST_FREE_REJECT;
}

#define GUARD_BYTE 0xab
#define POISON_BYTE 0xdd

static void checks_init(void)
{
    /* The free mark must not be a value programs store: a random odd value above any user address. */
    uint64_t k = __rdtsc() * 0xbf58476d1ce4e5b9ull ^ (uint64_t)(uintptr_t)&hak_free_key;
    k ^= k >> 31;
    hak_free_key = k | 0x8000000000000001ull;
    k = k * 0x94d049bb133111ebull + 0x2545f4914f6cdd1dull;
    hak_sampled_key = k ^ k >> 29;
    hak_prof_guard = hak_settings.guard != 0;
    hak_prof_poison = hak_settings.poison != 0;
    hak_prof_trap = hak_prof_guard || hak_prof_poison;
    hak_prof_set_free_checks(hak_prof_trap);
    hak_prof_sample_plain = hak_prof_trap;
}

/* "func+0x1c (module)" for each of the first frames of the call that went wrong, into out. */
static void describe_stack(char *out, size_t room)
{
    void *pc[8];
    int n = hkt_backtrace(pc, 8);
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n && i < 4 && len + 96 < room; i++) {
        Dl_info info;
        const char *mod = "?";
        if (!dladdr(pc[i], &info)) {
            len += hak_format(out + len, room - len, "%s%p", i ? " <- " : "", pc[i]);
            continue;
        }
        if (info.dli_fname) {
            const char *slash = strrchr(info.dli_fname, '/');
            mod = slash ? slash + 1 : info.dli_fname;
        }
        /* A named symbol where the dynamic symbol table has one; else the module and offset, for addr2line. */
        if (info.dli_sname)
            len += hak_format(out + len, room - len, "%s%s+%p (%s)", i ? " <- " : "", info.dli_sname,
                              (void *)((uintptr_t)pc[i] - (uintptr_t)info.dli_saddr), mod);
        else
            len += hak_format(out + len, room - len, "%s%s+%p", i ? " <- " : "", mod,
                              (void *)((uintptr_t)pc[i] - (uintptr_t)info.dli_fbase));
    }
}

/* Counted, reported on stderr (HAKMEM_ON_ERROR=report, the first 10), recorded as an ERROR event; abort if asked. */
static void heap_error(unsigned kind, void *p, size_t size, const char *what)
{
    static _Atomic unsigned reported;
    switch (kind) {
    case HKT_ERR_DOUBLE_FREE: HAK_COUNT(CHECK_DOUBLE_FREE, 0); break;
    case HKT_ERR_OVERFLOW: HAK_COUNT(CHECK_OVERFLOW, 0); break;
    case HKT_ERR_USE_AFTER_FREE: HAK_COUNT(CHECK_USE_AFTER_FREE, 0); break;
    default: HAK_COUNT(FREE_INVALID, 0); break;
    }
    if (hak_tls_heap.state == HAK_HEAP_NEW) /* a thread whose first call is a bad free: give it its number */
        hak_heap_init(&hak_tls_heap);
    if (hkt_recording)
        hkt_record_error(kind, p, size, hak_tls_heap.tid,
                         hak_map_kind(p) == HAK_MAP_SS ? slot_of(p) : NULL);
    if (hak_settings.on_error == HAK_ON_ERROR_IGNORE)
        return;
    unsigned n = atomic_fetch_add_explicit(&reported, 1, memory_order_relaxed);
    if (n < 10) {
        char stack[512];
        describe_stack(stack, sizeof stack);
        static const char *const names[HKT_NERRORS] = {"heap error", "double free", "invalid free (foreign pointer)",
                                                       "invalid free (not a block start)", "overflow", "write after free"};
        hak_report("%s of %p: %s; the block is not reused; at %s", names[kind < HKT_NERRORS ? kind : 0], p, what,
                   stack);
    } else if (n == 10) {
        hak_report("more heap errors follow; not reporting them");
    }
    if (hak_settings.on_error == HAK_ON_ERROR_ABORT)
        abort();
}

void hak_prof_double_free(void *p)
{
    struct hak_slab *s = hak_slab_lookup(p);
    /* The start of a live sampled block carries the free mark too, but malloc returned a pointer past it. */
    if (s && sampled_pointer_of((uintptr_t)p)) {
        heap_error(HKT_ERR_INTERIOR, p, s->bsize,
                   "not a pointer malloc returned: the start of a sampled block, handed out past its header");
        return;
    }
    heap_error(HKT_ERR_DOUBLE_FREE, p, s ? s->bsize : 0, "free of a block that is already free");
}

void hak_prof_invalid(void *p, const char *why)
{
    unsigned kind = hak_map_kind(p);
    if (strstr(why, "double free"))
        kind = HKT_ERR_DOUBLE_FREE;
    else
        kind = kind == HAK_MAP_SS || kind == HAK_MAP_LARGE || kind == HAK_MAP_LARGE_FAR ? HKT_ERR_INTERIOR
                                                                                        : HKT_ERR_FOREIGN;
    heap_error(kind, p, 0, why);
}

/* Guard layout of a small block: the caller's size bytes, guard bytes up to the last 4, which hold the size.
 * A large block's guard is the 8 bytes past the caller's size (its header keeps size + 8). */
void *hak_prof_guard_arm(void *p, size_t size)
{
    if (hak_map_kind(p) == HAK_MAP_SS) {
        struct hak_slab *s = hak_slab_lookup(p);
        uint32_t b = s->bsize;
        memset((char *)p + size, GUARD_BYTE, b - 4 - size);
        uint32_t sz = (uint32_t)size;
        memcpy((char *)p + b - 4, &sz, 4);
    } else {
        memset((char *)p + size, GUARD_BYTE, 8);
    }
    return p;
}

static int all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

/* The caller's size of a guarded block; 0 if p is not one or its size word was overwritten. */
size_t hak_prof_guard_usable(const void *p)
{
    unsigned kind = hak_map_kind(p);
    if (kind == HAK_MAP_SS) {
        struct hak_slab *s = hak_slab_lookup(p);
        if (!s)
            return 0;
        uint32_t sz;
        memcpy(&sz, (const char *)p + s->bsize - 4, 4);
        return (size_t)sz + 8 <= s->bsize ? sz : 0; /* in size_t: an overwritten size near 2^32 must not wrap */
    }
    size_t req = hak_large_requested(p);
    return req >= 8 ? req - 8 : 0;
}

/* A free block's bytes from 16 on (the list link and the free mark come first) take the poison pattern. */
void hak_prof_poison_fill(void *b, uint32_t bsize)
{
    if (bsize > 16)
        memset((char *)b + 16, POISON_BYTE, bsize - 16);
}

int hak_prof_debug_free(void *p)
{
    unsigned kind = hak_map_kind(p);
    if (kind == HAK_MAP_SS) {
        struct hak_slab *s = hak_slab_lookup(p);
        if (!s || ((const uint64_t *)p)[1] == hak_free_key)
            return 1; /* the free itself reports it */
        uint32_t b = s->bsize;
        if (hak_prof_guard) {
            uint32_t sz;
            memcpy(&sz, (const char *)p + b - 4, 4);
            int size_ok = (size_t)sz + 8 <= b; /* in size_t: a size word overwritten with 0xff.. must not wrap */
            if (!size_ok || !all_bytes((const unsigned char *)p + sz, b - 4 - sz, GUARD_BYTE)) {
                heap_error(HKT_ERR_OVERFLOW, p, size_ok ? sz : b, "bytes past the requested size were written");
                return 0;
            }
        }
        if (hak_prof_poison)
            hak_prof_poison_fill(p, b);
        return 1;
    }
    if (hak_prof_guard && (kind == HAK_MAP_LARGE || kind == HAK_MAP_LARGE_FAR)) {
        size_t req = hak_large_requested(p);
        if (req >= 8 && !all_bytes((const unsigned char *)p + req - 8, 8, GUARD_BYTE)) {
            heap_error(HKT_ERR_OVERFLOW, p, req - 8, "bytes past the requested size were written");
            return 0;
        }
    }
    return 1;
}

/* A block about to be handed out carries the free mark: with poison on, its bytes from 16 on must still be the
 * pattern. If not, something wrote to it after its free: report, keep it out of use, hand out another. */
void *hak_prof_poison_handout(void *b)
{
    struct hak_slab *s = held_block_slab(b);
    ((uint64_t *)b)[1] = 0;
    if (s->bsize <= 16 || all_bytes((const unsigned char *)b + 16, s->bsize - 16, POISON_BYTE))
        return b;
    heap_error(HKT_ERR_USE_AFTER_FREE, b, s->bsize, "a freed block was written before it was handed out again");
    hkt_tls.busy++; /* the replacement is not sampled here: the caller records what it returns */
    void *r = hak_malloc(s->bsize);
    hkt_tls.busy--;
    return r;
}

/* Poison mode, before an allocation from class cls: the block its tls_sll will hand out is checked (and, if it
 * was written after its free, taken off the list and kept out of use) while it still carries its free mark. */
void hak_prof_poison_peek_class(unsigned cls)
{
    struct hak_tcache *tc = &hak_tls_heap.tc[cls];
    void *b = tc->head;
    while (b && ((const uint64_t *)b)[1] == hak_free_key) {
        struct hak_slab *s = held_block_slab(b);
        if (s->bsize <= 16 || all_bytes((const unsigned char *)b + 16, s->bsize - 16, POISON_BYTE))
            return;
        tc->head = *(void **)b; /* off the list, never handed out */
        tc->room++;
        heap_error(HKT_ERR_USE_AFTER_FREE, b, s->bsize, "a freed block was written before it was handed out again");
        b = tc->head;
    }
}

void hak_prof_poison_peek(size_t size)
{
    if (size <= HAK_SMALL_MAX)
        hak_prof_poison_peek_class(hak_size_class(size));
}

/* ---- hakmem.h's counter API ---- */
size_t hak_stats_counters(const struct hak_counter_desc **descs)
{
    static struct hak_counter_desc table[HKC_NCOUNTERS];
    static char names[HKC_NCOUNTERS][48];
    static const char *const kinds[] = {"scalar", "class", "depth", "gauge"};
    static _Atomic int built;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    if (!atomic_load_explicit(&built, memory_order_acquire)) {
        pthread_mutex_lock(&lock);
        for (unsigned c = 0; c < HKC_NCOUNTERS && !built; c++) {
            table[c].name = hkc_name(c, names[c], sizeof names[c]);
            table[c].group = hkc_defs[c].group;
            table[c].kind = kinds[hkc_defs[c].kind];
            table[c].meaning = hkc_defs[c].meaning;
            table[c].first = hkc_defs[c].first;
            table[c].width = hkc_defs[c].width;
        }
        atomic_store_explicit(&built, 1, memory_order_release);
        pthread_mutex_unlock(&lock);
    }
    if (descs)
        *descs = table;
    return HKC_NCOUNTERS;
}

size_t hak_stats_values(void)
{
    return HKC_NVALUES;
}

int hak_stats_read(uint64_t *values, size_t n, int scope)
{
    if (n < HKC_NVALUES)
        return -1;
    hak_global_init();
    if (scope == HAK_STATS_THREAD) {
        uint64_t *c = hak_tls_heap.ctr;
        for (unsigned j = 0; j < HKC_NVALUES; j++)
            values[j] = c ? __atomic_load_n(&c[j], __ATOMIC_RELAXED) : 0;
        hkc_derive(values);
        return 0;
    }
    if (scope != HAK_STATS_PROCESS)
        return -1;
    hkc_read_process(values);
    return 0;
}
#endif
