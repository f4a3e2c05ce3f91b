/* The live sampled blocks: a sampled allocation keeps its record, and the free of a block the allocator says may be
 * sampled takes it back, so a free event can name its allocation (thread, sample, stack). A SuperSlab block's
 * record is in the slot the allocator gives it (struct hkt_slot): no lock, no lookup. A large block's is in a table
 * by address: 1024 shards, each an open-addressing table under its own spin lock, at most 3/4 full, grown by
 * doubling; memory from mmap only (a shard's slots are mapped at its first insert). */
#include <sys/mman.h>
#include "writer.h"

#define SHARDS 1024
#define INITIAL_SLOTS 256

/* A test-and-test-and-set lock: held for a few probes, so spinning beats a futex; fork resets it. */
typedef _Atomic int spin_t;
static inline void spin_lock(spin_t *l)
{
    while (atomic_exchange_explicit(l, 1, memory_order_acquire))
        while (atomic_load_explicit(l, memory_order_relaxed))
            __builtin_ia32_pause();
}
static inline void spin_unlock(spin_t *l)
{
    atomic_store_explicit(l, 0, memory_order_release);
}

struct shard {
    spin_t lock;
    struct hkt_sample *slots; /* addr 0: empty */
    uint64_t mask;            /* slots - 1 */
    uint64_t used;
} __attribute__((aligned(64)));

static struct shard shards[SHARDS];

/* Every bit of the address must reach the low bits that index a shard's slots: block addresses share their low
 * bits (a class's blocks step by its size), so a plain multiply would pile them into a few probe runs. */
static inline uint64_t mix(uint64_t addr)
{
    uint64_t h = addr >> 4;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}
/* A shard holds whole 64 KiB spans of addresses. The allocator gives each thread slabs of its own, so a thread's
 * blocks, and its frees of them, stay on its own few shards: their locks and slots are not passed between cores on
 * every insert and remove, as they were when each block hashed to a shard of its own. */
#define SPAN_SHIFT 16
static inline unsigned shard_index(uint64_t addr)
{
    return (unsigned)(mix(addr >> SPAN_SHIFT << SPAN_SHIFT) >> 54);
}
static inline struct shard *shard_of(uint64_t addr)
{
    return &shards[shard_index(addr)];
}

int hkt_sampled_init(void)
{
    return 0;
}

/* ---- the allocator's slots ---- */
#define SLOT_LIVE 1u
#define SLOT_FREED 2u
/* Which recording a slot's record belongs to: a fork child's starts anew, and what the parent sampled is not its. */
static uint64_t slot_recording = 1;
static void (*slot_walker)(hkt_slot_fn *fn, void *arg);

static inline uint64_t slot_state(uint64_t addr, unsigned how)
{
    return addr << 16 | (slot_recording & 0x3fff) << 2 | how;
}

void hkt_set_slot_walker(void (*walk)(hkt_slot_fn *fn, void *arg))
{
    __atomic_store_n(&slot_walker, walk, __ATOMIC_RELEASE);
}

static void slot_put(struct hkt_slot *sl, const struct hkt_sample *s)
{
    __atomic_store_n(&sl->tsc, s->tsc, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->seq, s->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->size, (uint32_t)s->size, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->stack, s->stack, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->tid, s->tid, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->cls, s->cls, __ATOMIC_RELAXED);
    atomic_store_explicit(&sl->state, slot_state(s->addr, SLOT_LIVE), memory_order_release);
}

static void slot_get(const struct hkt_slot *sl, uint64_t addr, struct hkt_sample *out)
{
    *out = (struct hkt_sample){
        .addr = addr,
        .tsc = __atomic_load_n(&sl->tsc, __ATOMIC_RELAXED),
        .seq = __atomic_load_n(&sl->seq, __ATOMIC_RELAXED),
        .size = __atomic_load_n(&sl->size, __ATOMIC_RELAXED),
        .stack = __atomic_load_n(&sl->stack, __ATOMIC_RELAXED),
        .tid = __atomic_load_n(&sl->tid, __ATOMIC_RELAXED),
        .cls = __atomic_load_n(&sl->cls, __ATOMIC_RELAXED),
    };
}

/* Live to freed (or to nothing) in one compare-and-swap: of two frees of one block racing, one takes the record. */
static int slot_take(struct hkt_slot *sl, uint64_t addr, struct hkt_sample *out, int remember)
{
    uint64_t live = slot_state(addr, SLOT_LIVE);
    if (!atomic_compare_exchange_strong_explicit(&sl->state, &live, remember ? slot_state(addr, SLOT_FREED) : 0,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return 0;
    slot_get(sl, addr, out);
    return 1;
}

static int slot_find(const struct hkt_slot *sl, uint64_t addr, unsigned how, struct hkt_sample *out)
{
    if (atomic_load_explicit(&sl->state, memory_order_acquire) != slot_state(addr, how))
        return 0;
    slot_get(sl, addr, out);
    return 1;
}

struct slot_visit {
    void (*fn)(const struct hkt_sample *s, void *arg);
    void *arg;
};
static void visit_slot(const struct hkt_slot *sl, void *arg)
{
    const struct slot_visit *v = arg;
    uint64_t st = atomic_load_explicit(&sl->state, memory_order_acquire);
    if ((st & 0xffff) != slot_state(0, SLOT_LIVE))
        return;
    struct hkt_sample s;
    slot_get(sl, st >> 16, &s);
    v->fn(&s, v->arg);
}

/* Linear probing from the hash's low bits; the shard was chosen by its top bits. */
static void put(struct hkt_sample *slots, uint64_t mask, const struct hkt_sample *s)
{
    for (uint64_t i = mix(s->addr) & mask;; i = (i + 1) & mask)
        if (!slots[i].addr) {
            slots[i] = *s;
            return;
        }
}

static int grow(struct shard *sh)
{
    uint64_t n = sh->slots ? (sh->mask + 1) * 2 : INITIAL_SLOTS;
    struct hkt_sample *slots = hkt_map(n * sizeof *slots);
    if (!slots)
        return -1;
    if (sh->slots) {
        for (uint64_t i = 0; i <= sh->mask; i++)
            if (sh->slots[i].addr)
                put(slots, n - 1, &sh->slots[i]);
        munmap(sh->slots, (sh->mask + 1) * sizeof *sh->slots);
    }
    sh->slots = slots;
    sh->mask = n - 1;
    return 0;
}

void hkt_sampled_insert(const struct hkt_sample *s, struct hkt_slot *slot)
{
    if (slot) {
        slot_put(slot, s);
        return;
    }
    struct shard *sh = shard_of(s->addr);
    spin_lock(&sh->lock);
    /* At most 3/4 full, so probes stay short. (Half full measured no faster, and doubles the table's memory, which
     * stays after a free-all.) Without memory the sample is not tracked: its free goes unseen. */
    if ((sh->used + 1) * 4 > (sh->slots ? sh->mask + 1 : 0) * 3 && grow(sh) < 0) {
        spin_unlock(&sh->lock);
        return;
    }
    put(sh->slots, sh->mask, s);
    sh->used++;
    spin_unlock(&sh->lock);
}

/* Recently freed sampled blocks, direct-mapped by address and overwritten: so a double free or a write after
 * free of a sampled block can still name the allocation. Each shard has its own run of slots, written and read
 * under the shard's lock, which the removal that remembers a block holds anyway: no lock of its own, whose cache
 * line every freeing thread would fight over. */
#define FREED_PER_SHARD 64
static struct hkt_sample *freed;

static struct hkt_sample *freed_slot(uint64_t addr, uint64_t h)
{
    struct hkt_sample *f = __atomic_load_n(&freed, __ATOMIC_ACQUIRE);
    return f ? &f[shard_index(addr) * FREED_PER_SHARD + (h & (FREED_PER_SHARD - 1))] : NULL;
}

static void freed_map(void)
{
    if (__atomic_load_n(&freed, __ATOMIC_ACQUIRE))
        return;
    struct hkt_sample *f = hkt_map(SHARDS * FREED_PER_SHARD * sizeof *f), *none = NULL;
    if (f && !__atomic_compare_exchange_n(&freed, &none, f, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        munmap(f, SHARDS * FREED_PER_SHARD * sizeof *f); /* another thread mapped it first */
}

int hkt_sampled_remove(uint64_t addr, struct hkt_slot *slot, struct hkt_sample *out, int remember)
{
    if (slot)
        return slot_take(slot, addr, out, remember);
    uint64_t h = mix(addr);
    struct shard *sh = shard_of(addr);
    int found = 0;
    if (remember)
        freed_map();
    spin_lock(&sh->lock);
    if (sh->slots) {
        uint64_t mask = sh->mask, i = mix(addr) & mask;
        for (; sh->slots[i].addr; i = (i + 1) & mask)
            if (sh->slots[i].addr == addr)
                break;
        if (sh->slots[i].addr == addr) {
            *out = sh->slots[i];
            found = 1;
            sh->used--;
            /* Backward-shift deletion: move later entries of the probe run into the hole, so no tombstones. */
            uint64_t hole = i;
            for (uint64_t j = (i + 1) & mask; sh->slots[j].addr; j = (j + 1) & mask) {
                uint64_t home = mix(sh->slots[j].addr) & mask;
                /* j's entry may move to hole if its home is not cyclically within (hole, j]. */
                if (((j - home) & mask) >= ((j - hole) & mask)) {
                    sh->slots[hole] = sh->slots[j];
                    hole = j;
                }
            }
            sh->slots[hole].addr = 0;
            struct hkt_sample *f = remember ? freed_slot(addr, h) : NULL;
            if (f)
                *f = *out;
        }
    }
    spin_unlock(&sh->lock);
    return found;
}

int hkt_sampled_find_freed(uint64_t addr, const struct hkt_slot *slot, struct hkt_sample *out)
{
    if (slot)
        return slot_find(slot, addr, SLOT_FREED, out);
    uint64_t h = mix(addr);
    struct shard *sh = shard_of(addr);
    int found = 0;
    spin_lock(&sh->lock);
    const struct hkt_sample *e = freed_slot(addr, h);
    if (e && e->addr == addr) {
        *out = *e;
        found = 1;
    }
    spin_unlock(&sh->lock);
    return found;
}

int hkt_sampled_find(uint64_t addr, const struct hkt_slot *slot, struct hkt_sample *out)
{
    if (slot)
        return slot_find(slot, addr, SLOT_LIVE, out);
    struct shard *sh = shard_of(addr);
    int found = 0;
    spin_lock(&sh->lock);
    if (sh->slots)
        for (uint64_t i = mix(addr) & sh->mask; sh->slots[i].addr; i = (i + 1) & sh->mask)
            if (sh->slots[i].addr == addr) {
                *out = sh->slots[i];
                found = 1;
                break;
            }
    spin_unlock(&sh->lock);
    return found;
}

void hkt_sampled_foreach(void (*fn)(const struct hkt_sample *s, void *arg), void *arg)
{
    for (unsigned i = 0; i < SHARDS; i++) {
        struct shard *sh = &shards[i];
        spin_lock(&sh->lock);
        if (sh->slots)
            for (uint64_t j = 0; j <= sh->mask; j++)
                if (sh->slots[j].addr)
                    fn(&sh->slots[j], arg);
        spin_unlock(&sh->lock);
    }
    void (*walk)(hkt_slot_fn *, void *) = __atomic_load_n(&slot_walker, __ATOMIC_ACQUIRE);
    if (walk)
        walk(visit_slot, &(struct slot_visit){fn, arg});
}

void hkt_sampled_fork_prepare(void)
{
    for (unsigned i = 0; i < SHARDS; i++)
        spin_lock(&shards[i].lock);
}
void hkt_sampled_fork_parent(void)
{
    for (unsigned i = 0; i < SHARDS; i++)
        spin_unlock(&shards[i].lock);
}
/* The child's recording starts empty: blocks sampled before the fork are the parent's story. */
void hkt_sampled_fork_child(void)
{
    slot_recording++; /* the slots' records are the parent's */
    for (unsigned i = 0; i < SHARDS; i++) {
        struct shard *sh = &shards[i];
        atomic_store_explicit(&sh->lock, 0, memory_order_relaxed);
        if (sh->slots)
            munmap(sh->slots, (sh->mask + 1) * sizeof *sh->slots);
        sh->slots = NULL;
        sh->mask = 0;
        sh->used = 0;
    }
    /* Unmapped, not cleared: clearing would touch every page of it in each child; the next removal maps it anew. */
    if (freed)
        munmap(freed, SHARDS * FREED_PER_SHARD * sizeof *freed);
    freed = NULL;
}
