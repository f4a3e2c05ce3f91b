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
/* libgcc's FDE lookup (the one its unwinder uses): the frame description entry covering pc, and the bases its
 * pointers are relative to; func is the start of the function it describes. */
struct gcc_eh_bases {
    void *tbase, *dbase, *func;
};
extern __attribute__((visibility("default"))) const void *gcc_find_fde(void *pc, struct gcc_eh_bases *bases);
__asm__(".symver gcc_unwind_backtrace, _Unwind_Backtrace@GCC_3.3");
__asm__(".symver gcc_get_ip, _Unwind_GetIP@GCC_3.0");
__asm__(".symver gcc_get_cfa, _Unwind_GetCFA@GCC_3.3");
__asm__(".symver gcc_get_ip_info, _Unwind_GetIPInfo@GCC_4.2.0");
__asm__(".symver gcc_find_fde, _Unwind_Find_FDE@GCC_3.0");

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
 * addresses and where they sit. libgcc's unwinder reports each frame's CFA with its return address (libunwind's
 * fast path does not), so a capture that misses keeps both, and a later capture from the same CFA whose stack
 * holds the same return addresses at the same places has the same stack: a few loads and compares instead of an
 * unwind (about 850 instructions with libunwind, 210 more interning).
 * Every read is a return address's place, checked in order from this function's own (CFA - 8, always there)
 * outward: a return address that matched fixes the call site its frame is stopped at, so where that frame's own
 * return address sits, and the frame is live (it is waiting for the call to return). So a lookup never reads
 * past the stack it runs on, whatever stack that is (a thread's, a coroutine's, an alternate signal stack); the
 * tracer's own frames come first (each entry point, malloc or calloc or realloc, is a path of its own), then the
 * first return address into the program, which picks the entry.
 * That holds for frames of fixed size. A frame whose size varies between calls from one call site (alloca, a VLA)
 * moves the places above it: a recursion whose VLAs add up alike put a deeper stack's capture at a shallower
 * one's CFA with the outer return address at the same place (a review found 23% of such stacks charged to the
 * shallower one), and a coroutine stack mapped again smaller let a read pass its end. So a stack is kept only
 * if every frame between two of its places has CFA = rsp + constant at its call, read from the same call frame
 * information the unwinder uses (cfa_fixed): a frame pointer, DRAP (how gcc realigns a frame, through a saved
 * stack pointer in another register), an expression or anything not understood counts as variable. That leaves
 * out every stack through code built with frame pointers, which is unwound every time. (A third review showed a
 * test of rbp = CFA - 16 missing DRAP frames, and libgcc's _Unwind_GetGR faulting on unusual rules.) An unwind
 * through a signal frame is never kept. */
#define CACHE_ENTRIES 64    /* direct-mapped */
#define CACHE_SLOTS 32      /* the program's frames; a deeper stack is unwound every time */
#define CACHE_VERDICT_BITS 8 /* 256 frame verdicts, direct-mapped */
#define PATH_SLOTS 12       /* the tracer's frames, up to the program's first return address */
struct cached_path {        /* one way through the tracer: its return addresses, then where the program's starts */
    uint16_t n;             /* 0: none */
    int16_t key_off;        /* the first program return address, from the CFA */
    int16_t off[PATH_SLOTS];
    uint64_t ip[PATH_SLOTS];
};
struct cached_stack {
    uint32_t id;            /* 0: empty */
    uint16_t n;             /* the program's return addresses checked, the first at the path's key_off */
    uint16_t depth;         /* the depth asked for when it was captured */
    uintptr_t cfa;          /* where the capture's CFA was */
    int32_t off[CACHE_SLOTS];
    uint64_t ip[CACHE_SLOTS];
};
struct hkt_stack_cache {
    struct cached_path path[2]; /* the last two paths that missed */
    uint32_t lookups, hits;     /* over the current window: a thread whose stacks seldom repeat stops looking */
    uint32_t bypass;            /* captures left to unwind without looking */
    uint64_t verdict[1 << CACHE_VERDICT_BITS]; /* return address << 1 | its frame is of fixed size (cfa_fixed) */
    uint32_t unloads;           /* code_unloads when it last forgot */
    struct hkt_stack_cache *next; /* the pool */
    struct cached_stack e[CACHE_ENTRIES];
};
static struct hkt_stack_cache *cache_pool; /* stack lock */
/* Bumped around every dlclose (dlclose.c): other code may come to the unmapped addresses, with other frame
 * layouts, so a cache that sees it change forgets its stacks, paths and verdicts. */
static _Atomic uint32_t code_unloads;

void hkt_stacks_unloading(void)
{
    atomic_fetch_add_explicit(&code_unloads, 1, memory_order_release);
}

static void cache_forget(struct hkt_stack_cache *c, uint32_t unloads)
{
    memset(c->path, 0, sizeof c->path);
    memset(c->e, 0, sizeof c->e);
    memset(c->verdict, 0, sizeof c->verdict);
    c->unloads = unloads;
}
#define CACHE_WINDOW 1024
#define CACHE_BYPASS 65536

/* A thread's cache, from the pool of exited threads' (entries and all: an entry says what a stack holds at a
 * place, not whose stack it is), else mapped. */
static struct hkt_stack_cache *cache_acquire(void)
{
    pthread_mutex_lock(&stack_lock);
    struct hkt_stack_cache *c = cache_pool;
    if (c)
        cache_pool = c->next;
    pthread_mutex_unlock(&stack_lock);
    if (!c && !(c = hkt_map(sizeof *c))) /* zero-filled: every entry empty */
        return NULL;
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

static inline struct cached_stack *cache_slot(struct hkt_stack_cache *c, uint64_t ret, uintptr_t cfa)
{
    uint64_t h = (ret ^ (cfa << 16)) * 0x9e3779b97f4a7c15ull;
    return &c->e[h >> 58];
}

/* Reads the callers' frames, which are not this code's: AddressSanitizer would call a read of a redzone an
 * overflow (it reads only return addresses' places, which are none). */
__attribute__((no_sanitize_address)) static uint32_t cache_lookup(struct hkt_stack_cache *c, uintptr_t cfa,
                                                                  unsigned depth)
{
    for (int k = 0; k < 2; k++) {
        const struct cached_path *pa = &c->path[k];
        unsigned i = 0;
        while (i < pa->n && *(const uint64_t *)(cfa + pa->off[i]) == pa->ip[i])
            i++;
        if (pa->n == 0 || i < pa->n)
            continue;
        const struct cached_stack *e = cache_slot(c, *(const uint64_t *)(cfa + pa->key_off), cfa);
        if (!e->id || e->cfa != cfa || e->depth != depth || e->off[0] != pa->key_off)
            continue;
        i = 0;
        while (i < e->n && *(const uint64_t *)(cfa + e->off[i]) == e->ip[i])
            i++;
        if (i == e->n)
            return e->id;
    }
    return 0;
}

/* ---- Whether a frame's size is fixed at a call: its CFA rule there, read from the DWARF call frame information
 * (.eh_frame) that libgcc's unwinder uses. Fixed means CFA = rsp + constant; a frame pointer, DRAP (a realigned
 * frame's saved stack pointer), an expression or anything this reader does not follow counts as variable. ---- */
struct cfi_reader {
    const uint8_t *p, *end;
    int ok;
};
static uint64_t cfi_uleb(struct cfi_reader *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; r->p < r->end && shift < 64; shift += 7) {
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    r->ok = 0;
    return 0;
}
static int64_t cfi_sleb(struct cfi_reader *r)
{
    uint64_t v = 0;
    unsigned shift = 0;
    for (; r->p < r->end && shift < 64; shift += 7) {
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (shift + 7 < 64 && (b & 0x40))
                v |= ~(uint64_t)0 << (shift + 7);
            return (int64_t)v;
        }
    }
    r->ok = 0;
    return 0;
}
static void cfi_skip(struct cfi_reader *r, uint64_t n)
{
    if (n > (uint64_t)(r->end - r->p))
        r->ok = 0;
    else
        r->p += n;
}
/* Bytes of a pointer in DW_EH_PE encoding enc (0: variable length, -1: unknown). */
static int cfi_ptr_size(uint8_t enc)
{
    switch (enc & 0x0f) {
    case 0x00: return 8; /* absptr */
    case 0x02: case 0x0a: return 2;
    case 0x03: case 0x0b: return 4;
    case 0x04: case 0x0c: return 8;
    case 0x01: case 0x09: return 0; /* uleb128, sleb128 */
    default: return -1;
    }
}
static void cfi_skip_ptr(struct cfi_reader *r, uint8_t enc)
{
    int n = cfi_ptr_size(enc);
    if (n < 0)
        r->ok = 0;
    else if (n == 0)
        (void)cfi_uleb(r);
    else
        cfi_skip(r, (uint64_t)n);
}
#define CFI_RSP 7
#define CFI_STATES 8
/* Runs call frame instructions up to location target (offsets from the function's start); the CFA register
 * after them in *reg, -1 for an expression. Returns 0 at the target, 1 at the end of the instructions, -1 on
 * anything not understood. */
static int cfi_run(struct cfi_reader *r, uint64_t caf, uint64_t *loc, uint64_t target, int *reg, int *saved,
                   int *nsaved)
{
    while (r->ok && r->p < r->end) {
        uint8_t op = *r->p++;
        uint64_t adv = 0;
        switch (op >> 6) {
        case 1:
            adv = (uint64_t)(op & 0x3f) * caf;
            break;
        case 2:
            (void)cfi_uleb(r);
            continue;
        case 3:
            continue;
        default:
            switch (op) {
            case 0x00: continue;                                     /* nop */
            case 0x02:
                if (r->p >= r->end)
                    return -1;
                adv = *r->p++ * caf;
                break;
            case 0x03:
                if (r->end - r->p < 2)
                    return -1;
                adv = (uint64_t)(r->p[0] | r->p[1] << 8) * caf;
                r->p += 2;
                break;
            case 0x04:
                if (r->end - r->p < 4)
                    return -1;
                adv = (uint64_t)((uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                                 (uint32_t)r->p[3] << 24) * caf;
                r->p += 4;
                break;
            case 0x05: case 0x09: case 0x14: case 0x2f: (void)cfi_uleb(r); (void)cfi_uleb(r); continue;
            case 0x11: case 0x15: (void)cfi_uleb(r); (void)cfi_sleb(r); continue;
            case 0x06: case 0x07: case 0x08: case 0x2e: (void)cfi_uleb(r); continue;
            case 0x0a:
                if (*nsaved == CFI_STATES)
                    return -1;
                saved[(*nsaved)++] = *reg;
                continue;
            case 0x0b:
                if (*nsaved == 0)
                    return -1;
                *reg = saved[--(*nsaved)];
                continue;
            case 0x0c: *reg = (int)cfi_uleb(r); (void)cfi_uleb(r); continue;  /* def_cfa */
            case 0x12: *reg = (int)cfi_uleb(r); (void)cfi_sleb(r); continue;  /* def_cfa_sf */
            case 0x0d: *reg = (int)cfi_uleb(r); continue;                     /* def_cfa_register */
            case 0x0e: (void)cfi_uleb(r); continue;                           /* def_cfa_offset */
            case 0x13: (void)cfi_sleb(r); continue;                           /* def_cfa_offset_sf */
            case 0x0f: *reg = -1; cfi_skip(r, cfi_uleb(r)); continue;         /* def_cfa_expression */
            case 0x10: case 0x16: (void)cfi_uleb(r); cfi_skip(r, cfi_uleb(r)); continue;
            default: return -1; /* set_loc and anything newer */
            }
        }
        if (*loc + adv > target)
            return 0;
        *loc += adv;
    }
    return r->ok ? 1 : -1;
}
/* 1 if the frame stopped at return address ra has CFA = rsp + constant at its call. */
static int cfa_fixed_at(const void *ra)
{
    struct gcc_eh_bases bases;
    uintptr_t at = (uintptr_t)ra - 1; /* the call instruction: ra may be the start of the next function */
    const uint8_t *fde = gcc_find_fde((void *)at, &bases);
    if (!fde || at < (uintptr_t)bases.func)
        return 0;
    uint32_t flen, clen;
    int32_t cie_delta;
    memcpy(&flen, fde, 4);
    memcpy(&cie_delta, fde + 4, 4);
    if (flen == 0 || flen == 0xffffffffu || cie_delta <= 0)
        return 0;
    const uint8_t *cie = fde + 4 - cie_delta;
    memcpy(&clen, cie, 4);
    if (clen == 0 || clen == 0xffffffffu)
        return 0;
    struct cfi_reader c = {cie + 8, cie + 4 + clen, 1};
    if (c.p >= c.end)
        return 0;
    uint8_t version = *c.p++;
    const char *aug = (const char *)c.p;
    size_t alen = strnlen(aug, (size_t)(c.end - c.p));
    cfi_skip(&c, alen + 1);
    if (strstr(aug, "eh"))
        return 0;
    uint64_t caf = cfi_uleb(&c);
    (void)cfi_sleb(&c); /* data alignment */
    if (version == 1)
        cfi_skip(&c, 1);
    else
        (void)cfi_uleb(&c);
    uint8_t fde_enc = 0x00;
    int has_z = aug[0] == 'z';
    if (has_z) {
        uint64_t n = cfi_uleb(&c);
        struct cfi_reader a = {c.p, c.p + (n < (uint64_t)(c.end - c.p) ? n : 0), c.ok && n <= (uint64_t)(c.end - c.p)};
        for (const char *k = aug + 1; *k && a.ok; k++) {
            if (*k == 'R' && a.p < a.end)
                fde_enc = *a.p++;
            else if (*k == 'L' && a.p < a.end)
                a.p++;
            else if (*k == 'P' && a.p < a.end) {
                uint8_t enc = *a.p++;
                cfi_skip_ptr(&a, enc);
            } else if (*k != 'S' && *k != 'B')
                return 0;
        }
        if (!a.ok)
            return 0;
        cfi_skip(&c, n);
    } else if (aug[0]) {
        return 0;
    }
    if (!c.ok)
        return 0;
    int reg = CFI_RSP, saved[CFI_STATES], nsaved = 0;
    uint64_t loc = 0, target = at - (uintptr_t)bases.func;
    if (cfi_run(&c, caf, &loc, UINT64_MAX, &reg, saved, &nsaved) < 0)
        return 0;
    /* The FDE: length, CIE pointer, the function's start and size (skipped: bases.func has the start), its
     * augmentation data, then its instructions from location 0. */
    struct cfi_reader f = {fde + 8, fde + 4 + flen, 1};
    cfi_skip_ptr(&f, fde_enc);
    cfi_skip_ptr(&f, fde_enc & 0x0f);
    if (has_z)
        cfi_skip(&f, cfi_uleb(&f));
    nsaved = 0;
    loc = 0;
    if (!f.ok || cfi_run(&f, caf, &loc, target, &reg, saved, &nsaved) < 0)
        return 0;
    return reg == CFI_RSP;
}
/* The verdicts, per thread, direct-mapped by return address: a miss looks up each frame it keeps. */
static int cfa_fixed(struct hkt_stack_cache *c, const void *ra)
{
    uint64_t key = (uint64_t)(uintptr_t)ra;
    uint64_t *v = &c->verdict[(key * 0x9e3779b97f4a7c15ull) >> (64 - CACHE_VERDICT_BITS)];
    if (*v && *v >> 1 == key)
        return (int)(*v & 1);
    int fixed = cfa_fixed_at(ra);
    *v = key << 1 | (uint64_t)fixed;
    return fixed;
}

/* After an unwind from this CFA that crossed no signal frame. libgcc reports with each frame's return address
 * pc[k] the CFA of the frame it returns from (the stack pointer of frame k at its call), so pc[k] sits at
 * cfas[k] - 8. Places below this function's own return address (the unwinder's frames) are not kept; each kept
 * place is checked to hold its address. The tracer's frames, pc[..first), make the path; the program's the entry. */
__attribute__((no_sanitize_address)) static void cache_store(struct hkt_stack_cache *c, uintptr_t cfa,
                                                             unsigned depth, void *const *pc,
                                                             const uintptr_t *cfas, int first, unsigned m,
                                                             uint32_t id)
{
    struct cached_path pa = {0};
    struct cached_stack e = {0};
    if (m == 0 || m > CACHE_SLOTS)
        return;
    for (int i = 0; i < first + (int)m; i++) {
        uintptr_t at = cfas[i] - 8;
        if (at < cfa - 8)
            continue; /* a return address into the unwinder or into this function */
        intptr_t d = (intptr_t)(at - cfa); /* from -8 */
        /* The next place is this frame's size above: only a frame whose CFA is the stack pointer plus a constant
         * at this call is of fixed size (alloca, a VLA, a realigned stack put it in another register). */
        if (i + 1 < first + (int)m && !cfa_fixed(c, pc[i]))
            return;
        if (d > (i <= first ? INT16_MAX : INT32_MAX) || *(const uint64_t *)at != (uint64_t)(uintptr_t)pc[i])
            return; /* too far, or not where a return address would be: not kept */
        if (i < first) {
            if (pa.n == PATH_SLOTS)
                return;
            pa.off[pa.n] = (int16_t)d;
            pa.ip[pa.n++] = (uint64_t)(uintptr_t)pc[i];
        } else {
            e.off[e.n] = (int32_t)d;
            e.ip[e.n++] = (uint64_t)(uintptr_t)pc[i];
        }
    }
    if (pa.n == 0 || e.n == 0)
        return;
    pa.key_off = (int16_t)e.off[0];
    e.id = id;
    e.depth = (uint16_t)depth;
    e.cfa = cfa;
    *cache_slot(c, e.ip[0], cfa) = e;
    if (memcmp(&c->path[0], &pa, sizeof pa) != 0) {
        c->path[1] = c->path[0];
        c->path[0] = pa;
    }
}

/* The first frames are the unwinder's (libunwind's) and ours (the tracer, the malloc entry): the program's stack
 * starts past that first run of ours, so its ip[0] is the return address into the program's code that called
 * malloc. Only the first run: a signal handler that allocates while malloc runs below it has ours again under
 * its frames, and the handler is the caller. */
static inline int own_frame(const void *ip)
{
    return (uintptr_t)ip >= self_lo && (uintptr_t)ip < self_hi;
}
static int skip_own(void *const *pc, int n)
{
    int i = 0;
    while (i < n && i < 16 && !own_frame(pc[i]))
        i++;
    if (i == n || i == 16)
        return 0;
    while (i < n && own_frame(pc[i]))
        i++;
    return i;
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

/* A capture the cache could not answer: an unwind with libgcc's unwinder, which reports each frame's CFA, and the
 * stack kept unless the unwind crossed a signal frame (the places would be on two stacks). */
__attribute__((noinline)) static uint32_t capture_miss(struct hkt_stack_cache *c, unsigned depth, uintptr_t cfa)
{
    void *pc[HKT_MAX_STACK_DEPTH + 16];
    uintptr_t cfas[HKT_MAX_STACK_DEPTH + 16];
    int one_stack;
    int n = gcc_backtrace(pc, cfas, (int)depth + 16, &one_stack);
    int first = skip_own(pc, n);
    unsigned m = program_frames(n, first, depth);
    uint32_t id = intern(pc + first, m);
    if (id && first > 0 && one_stack)
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
    if (!c && !hkt_tls.stack_cache_off) {
        c = hkt_tls.stack_cache = cache_acquire();
        hkt_tls.stack_cache_off = !c;
    }
    if (c && c->bypass == 0) {
        uint32_t unloads = atomic_load_explicit(&code_unloads, memory_order_acquire);
        if (__builtin_expect(c->unloads != unloads, 0))
            cache_forget(c, unloads);
        uintptr_t cfa = (uintptr_t)__builtin_dwarf_cfa();
        uint32_t id = cache_lookup(c, cfa, depth);
        if (id)
            c->hits++;
        if (++c->lookups == CACHE_WINDOW) {
            if (c->hits < CACHE_WINDOW / 8)
                c->bypass = CACHE_BYPASS; /* stacks that seldom repeat: the faster unwinder, no looking */
            c->lookups = c->hits = 0;
        }
        if (!id)
            id = capture_miss(c, depth, cfa);
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
