/* The allocator's memory layout: SuperSlabs, slab descriptors, large-block headers, the chunk map, size classes,
 * and the per-thread heap. Shared by every file of alloc/; nothing outside alloc/ includes it. */
#ifndef HAK_LAYOUT_H
#define HAK_LAYOUT_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

#define HAK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* A chunk is the 2 MiB unit of the address space the map describes; SuperSlabs are exactly one chunk. */
#define HAK_CHUNK_SHIFT 21
#define HAK_CHUNK ((uintptr_t)1 << HAK_CHUNK_SHIFT)
#define HAK_CHUNK_MASK (HAK_CHUNK - 1)
/* User space on x86-64 (4-level paging) ends at 2^47; pointers above it are never ours. */
#define HAK_MAP_ENTRIES ((uintptr_t)1 << (47 - HAK_CHUNK_SHIFT))

/* A SuperSlab is cut into 32 units of 64 KiB; a slab is one unit, or an aligned run of units for big classes. */
#define HAK_UNIT_SHIFT 16
#define HAK_UNIT ((uintptr_t)1 << HAK_UNIT_SHIFT)
#define HAK_UNITS 32
/* The first 4 KiB of unit 0 hold the SuperSlab header, so every block start stays 4 KiB-aligned per slab. */
#define HAK_SS_HEADER 4096
#define HAK_PAGE 4096

/* Chunk map values: what the chunk holding a pointer is. */
enum {
    HAK_MAP_FOREIGN = 0,   /* not hakmem's memory */
    HAK_MAP_SS = 1,        /* a SuperSlab starts at the chunk base */
    HAK_MAP_LARGE = 2,     /* a large block's header sits at the chunk base */
    HAK_MAP_LARGE_FAR = 3, /* a large block aligned to >= 2 MiB: its header is one chunk below */
};
/* One byte per chunk of the 47-bit address space: 64 MiB of zero bss, of which only touched pages cost memory.
 * Being a static array, the lookup is one RIP-relative load with no pointer to chase and no lock. */
extern _Atomic uint8_t hak_chunk_map[HAK_MAP_ENTRIES];

/* The prof build's free entry tests a reject mask first: these bits (an address at or above 2^47, beyond the map,
 * or not 16-aligned), or all ones while every free must be checked. The optimized build's entry tests only the
 * map's range, on the map index it computes anyway: a misaligned pointer fails the block test. */
#define HAK_FAST_FREE_REJECT (~(((uintptr_t)1 << 47) - 1) | (uintptr_t)15)

/* What the chunk holding p is (slow paths; the free fast path tests the range itself, or in the prof build's mask). */
static inline unsigned hak_map_kind(const void *p)
{
    uintptr_t chunk = (uintptr_t)p >> HAK_CHUNK_SHIFT;
    if (chunk >= HAK_MAP_ENTRIES)
        return HAK_MAP_FOREIGN;
    return atomic_load_explicit(&hak_chunk_map[chunk], memory_order_acquire);
}

/* The free fast path's test that chunk (< HAK_MAP_ENTRIES) holds a SuperSlab: one compare of the entry in memory.
 * gcc never folds an atomic load (nor a volatile one) into an instruction, so the compare is written out; a byte
 * read cannot tear, and the entry a valid free depends on was written before its block was handed out. Under
 * ThreadSanitizer, the atomic load it understands. */
static inline int hak_map_is_ss(uintptr_t chunk)
{
#if defined(__SANITIZE_THREAD__) || !defined(__x86_64__)
    return atomic_load_explicit(&hak_chunk_map[chunk], memory_order_relaxed) == HAK_MAP_SS;
#else
    int is_ss;
    __asm__("cmpb %[ss], %[entry]" : "=@cce"(is_ss) : [entry] "m"(hak_chunk_map[chunk]), [ss] "i"(HAK_MAP_SS));
    return is_ss;
#endif
}

/* Size classes: 16..128 in steps of 16, then four classes per power of two up to 128 KiB. */
#define HAK_NCLASSES 48
#define HAK_SMALL_MAX ((size_t)131072)
#define HAK_TABLE_MAX 1024 /* sizes up to this are classed by table lookup */
/* hak_tc_off_of_table[(size + 15) >> 4]: the byte offset in the heap of the class's tls_sll (class * 16), so the
 * allocation fast path indexes the heap with it directly (no shift); the class is that offset / 16. */
extern const uint16_t hak_tc_off_of_table[HAK_TABLE_MAX / 16 + 1];
extern const uint32_t hak_class_size[HAK_NCLASSES];
/* ceil(2^40 / class size): block index = (offset * recip) >> 40, exact for offsets below 2 MiB. */
extern const uint64_t hak_class_recip[HAK_NCLASSES];

struct hak_class_div {
    uint32_t mul;
    uint32_t shift;
};
extern const struct hak_class_div hak_class_div[HAK_NCLASSES];

static inline unsigned hak_size_class(size_t size) /* size <= HAK_SMALL_MAX */
{
    if (HAK_LIKELY(size <= HAK_TABLE_MAX))
        return hak_tc_off_of_table[(size + 15) >> 4] / 16u;
    size_t s = size - 1;
    unsigned k = 63u - (unsigned)__builtin_clzll(s);
    return 8u + (k - 7u) * 4u + (unsigned)((s >> (k - 2u)) & 3u);
}

/* The remote list word: head in the low 48 bits (user addresses are below 2^47), block count in the top 16
 * (a slab holds at most 4096 blocks). Head and count change together in one CAS. */
#define HAK_REMOTE_COUNT_SHIFT 48
#define HAK_REMOTE_PTR_MASK (((uintptr_t)1 << HAK_REMOTE_COUNT_SHIFT) - 1)
static inline void *hak_remote_head(uintptr_t w)
{
    return (void *)(w & HAK_REMOTE_PTR_MASK);
}
static inline uint32_t hak_remote_count(uintptr_t w)
{
    return (uint32_t)(w >> HAK_REMOTE_COUNT_SHIFT);
}
/* `used` is the owner's, but a thread freeing into an abandoned slab reads it: relaxed atomics throughout. */
#define HAK_USED(s) __atomic_load_n(&(s)->used, __ATOMIC_RELAXED)
#define HAK_SET_USED(s, v) __atomic_store_n(&(s)->used, (uint16_t)(v), __ATOMIC_RELAXED)

/* A slab's owner word holds its heap's id: for a thread's heap the thread pointer (%fs:0, one load on the free
 * fast path), for the orphan heap its own address. Other values: */
#define HAK_OWNER_NONE ((uintptr_t)0) /* free unit, or an abandoned slab waiting for adoption */
#define HAK_OWNER_TAIL ((uintptr_t)1) /* a non-first unit of a multi-unit slab: look back head_back descriptors */
#define HAK_OWNER_GONE ((uintptr_t)2) /* fork child: owned by a thread that does not exist here; never reused */

enum { HAK_SLAB_FREE = 0, HAK_SLAB_LIVE = 1, HAK_SLAB_ABANDONED = 2 };

/* One descriptor per unit, one cache line each. Invariants: blocks [0, carved) have been handed out once;
 * used counts blocks outside `free` (live, in a tls_sll, or on `remote`); carved - used blocks are on `free`.
 * Only the owner thread touches the plain fields; other threads only push onto `remote`. */
struct hak_slab {
    _Atomic uintptr_t owner;       /* owning heap's id, HAK_OWNER_NONE or HAK_OWNER_TAIL */
    void *free;                    /* owner's local free list */
    uint32_t div_mul;              /* block test: rotr32(offset * div_mul, div_shift), hak_is_carved_block */
    uint32_t adopt_end;            /* prof build: offset in the SuperSlab of the end of the blocks carved
                                    * when the slab was adopted; blocks from there on are the adopter's */
    struct hak_slab *next, *prev;  /* owner's circular list for the class, or the abandoned list */
    uint16_t used;                 /* a slab holds at most 4096 blocks (16-byte blocks in one unit) */
    uint16_t carved;
    uint16_t capacity;
    uint16_t tc_off;               /* cls * sizeof(struct hak_tcache): the free fast path indexes the heap with it */
    uint32_t bsize;
    uint32_t first_lo;             /* low 32 bits of the first block's address: the block test subtracts it from
                                    * the pointer's, and its low 21 bits are the offset from the SuperSlab base */
    uint8_t cls;
    uint8_t units;                 /* units spanned (head descriptor) */
    uint8_t head_back;             /* tail descriptor: distance to the head descriptor */
    uint8_t state;                 /* HAK_SLAB_* */
    uint8_t inherited;             /* prof build: the owner adopted it, so live blocks may be a dead thread's */
    uint8_t div_shift;
    uint16_t leftovers;            /* prof build: blocks of dead owners still out; inherited ends at 0 */
};
_Static_assert(sizeof(struct hak_slab) == 64, "slab descriptor must be one cache line");

struct hkt_slot;
#define HAK_SS_MAGIC 0x6b616d6b53535353ull
/* The header at the start of every SuperSlab. Lists and bitmap are protected by the global SuperSlab lock. */
struct hak_superslab {
    struct hak_slab slabs[HAK_UNITS];    /* first, so a pointer's descriptor is base | unit * 64 */
    uint64_t magic;
    uint32_t free_units;                 /* bit i set: unit i is not part of any slab */
    uint32_t nslabs;                     /* live or abandoned slabs in it */
    uint32_t dirty_units;                /* free units whose pages were not purged yet */
    uint32_t resident;                   /* in the cache and not purged */
    struct hak_superslab *avail_next, *avail_prev; /* SuperSlabs with a free unit */
    struct hak_superslab *all_next, *all_prev;     /* every SuperSlab in use (fork walks it) */
    uint64_t *mine_bits;                 /* prof build: per 16-byte granule, 1 if the slab's current owner handed
                                          * the block out (or took it back), 0 if it is a dead owner's leftover */
    struct hkt_slot *_Atomic trace_slots; /* prof build: a record slot per block for trace/'s sampled blocks
                                           * (mapped at the first sample in the SuperSlab), 4096 per unit */
    struct hak_superslab *slots_next;     /* prof build: the next SuperSlab with trace_slots */
    /* Frees from other threads into slab i: head pointer | count << 48, pushed with CAS, taken whole with
     * exchange; the count means a drain never walks to count. Kept apart from the descriptors so that other
     * threads' pushes do not keep stealing the cache line the owner's fast paths read, nor the header fields
     * before them (a sampled block's free reads trace_slots). */
    _Alignas(64) _Atomic uintptr_t remote[HAK_UNITS];
};
_Static_assert(offsetof(struct hak_superslab, slabs) == 0, "descriptors start at offset 0");
_Static_assert(sizeof(struct hak_superslab) <= HAK_SS_HEADER, "SuperSlab header fits its page");

/* The descriptor of the unit holding address a: base | unit * 64, with unit * 64 = (a >> 10) & 0x7c0. */
static inline struct hak_slab *hak_slab_of(uintptr_t a)
{
    _Static_assert(sizeof(struct hak_slab) == 64 && HAK_UNIT_SHIFT == 16, "shift below assumes these");
    return (struct hak_slab *)((a & ~HAK_CHUNK_MASK) | ((a >> (HAK_UNIT_SHIFT - 6)) & ((HAK_UNITS - 1) << 6)));
}
/* Whether a (in the slab's SuperSlab) is the start of one of the slab's carved blocks, with a multiply and a
 * rotate on values in the descriptor's cache line, no division. For x = offset from the first block (32 bits, so
 * below the first block it wraps to nearly 2^32), rotr32(x * div_mul, div_shift) is x / bsize when bsize divides x
 * and above 2^32 / bsize otherwise (sizeclass.c): so one comparison with `carved` refuses an interior pointer, a
 * pointer below the first block, a block slot not carved yet and the unit's tail past its last whole block. The
 * owner's own read of carved: the free fast path runs only in the owning thread. */
static inline int hak_is_carved_block(const struct hak_slab *s, uintptr_t a)
{
    /* a and the first block share their chunk, so the low 32 bits of their difference are its offset. */
    uint32_t t = ((uint32_t)a - s->first_lo) * s->div_mul;
    t = (t >> s->div_shift) | (t << ((32 - s->div_shift) & 31));
    return t < s->carved;
}

static inline struct hak_superslab *hak_ss_of_slab(const struct hak_slab *s)
{
    return (struct hak_superslab *)((uintptr_t)s & ~HAK_CHUNK_MASK);
}
static inline _Atomic uintptr_t *hak_slab_remote(const struct hak_slab *s)
{
    struct hak_superslab *ss = hak_ss_of_slab(s);
    return &ss->remote[s - ss->slabs];
}
/* The first block's offset from the SuperSlab base, and its address. */
static inline uint32_t hak_slab_start_off(const struct hak_slab *s)
{
    return s->first_lo & (uint32_t)HAK_CHUNK_MASK;
}
static inline uintptr_t hak_slab_start(const struct hak_slab *s)
{
    return ((uintptr_t)s & ~HAK_CHUNK_MASK) + hak_slab_start_off(s);
}

#define HAK_LARGE_MAGIC 0x6b616d6b4c524745ull
/* Header of a large block, at the 2 MiB-aligned base of its own mapping. */
struct hak_large {
    uint64_t magic;
    size_t map_size;   /* bytes mapped from the base */
    size_t size;       /* bytes the caller asked for (last malloc or realloc) */
    void *user;        /* the pointer handed out; NULL while the span sits in the cache */
    uint32_t far;      /* 1: the user pointer is one chunk above the header (alignment >= 2 MiB) */
    uint32_t fresh;    /* 1: pages straight from mmap, still zero */
    uint32_t alloc_tid; /* prof build: the allocating thread's number */
};

/* The thread-local free list of one class (tls_sll). Invariant: room == cap - (blocks on the list). A free
 * decrements room and goes slow when it turns negative (one sub and one branch); an allocation increments it.
 * room and cap are 0 until the heap is set up, so a heap that was never initialized frees slowly. */
struct hak_tcache {
    void *head;
    int32_t room;
    uint32_t cap;
};
_Static_assert(sizeof(struct hak_tcache) == 16, "hak_tc_off_of_table holds class * 16");

enum { HAK_HEAP_NEW = 0, HAK_HEAP_LIVE = 1, HAK_HEAP_DEAD = 2 };

struct hak_heap {
    struct hak_tcache tc[HAK_NCLASSES];
    struct hak_slab *slabs[HAK_NCLASSES]; /* current slab of each class, head of a circular list */
    uint8_t spill_streak[HAK_NCLASSES];   /* spills since the class last refilled: a free-dominant phase */
    uint16_t batch[HAK_NCLASSES];         /* blocks the next refill moves: starts small, doubles up to cap/2+1 */
    uintptr_t id;                         /* what owner words of its slabs hold */
    uint32_t state;
#if defined(HAKMEM_PROF) && HAKMEM_PROF
    uint64_t *ctr;        /* this thread's counter block in the stats segment; NULL: count into the shared block */
    uint64_t ctr_classes; /* bit c: something was counted for size class c (or depth bucket c) in ctr */
    uint32_t tid;         /* hakmem's thread number (1, 2, ...), recorded per block to tell cross-thread frees */
    int64_t inuse_delta;  /* bytes taken out of slabs minus bytes returned, not yet added to the process total */
    uint32_t last_stage;  /* the refill stage of the last refill (trace/'s enum hkt_stage), for sampled events */
    int64_t sample_left;  /* trace/'s countdown to the next sampled allocation (bytes) */
    int64_t trap_left;    /* that countdown while every allocation is trapped (HAKMEM_GUARD, HAKMEM_POISON): then
                           * sample_left stays negative, so the entry's one test sends every allocation out */
#endif
};

/* Initial-exec TLS: the fast path reaches the heap with one %fs-relative access, never __tls_get_addr. */
extern __thread struct hak_heap hak_tls_heap __attribute__((tls_model("initial-exec")));

#pragma GCC visibility pop
#endif
