/* free() of pointers the allocator never returned (stack, globals, mmap, look-alike SuperSlabs, interior and
 * misaligned pointers) must be refused: the process survives, the foreign memory is not written, the heap works. */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include "testlib.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static unsigned char global_buf[4096];
static unsigned char zero_global[4096];

/* The refused pointer's surroundings must be left exactly as they were (no free-list link written into them). */
static void free_foreign(const char *what, unsigned char *region, size_t len, size_t off, uint64_t tag)
{
    tl_fill(region, len, tag);
    T_FREE(tl_launder(region + off));
    size_t bad = tl_check(region, len, tag);
    CHECK(bad == SIZE_MAX, "free(%s + %zu) wrote into memory it does not own (byte %zu changed)", what, off, bad);
}

/* free(p + off) for live blocks p of one size: refused, so p keeps its contents and is never handed out again
 * (a wrongly accepted pointer would come back from malloc overlapping p). 0 < off < size: always interior. */
static void interior_frees(size_t size, const size_t *offs, int noffs)
{
    enum { N = 16, AGAIN = 64 };
    unsigned char *p[N];
    void *again[AGAIN];
    for (int i = 0; i < N; i++) {
        p[i] = T_MALLOC(size);
        CHECK(p[i] != NULL, "malloc(%zu)", size);
        if (p[i])
            tl_fill(p[i], size, 100 + (uint64_t)i);
    }
    for (int i = 0; i < N; i++)
        for (int k = 0; p[i] && k < noffs; k++)
            T_FREE(tl_launder(p[i] + offs[k]));
    for (int i = 0; i < AGAIN; i++) {
        again[i] = T_MALLOC(size);
        if (again[i])
            tl_fill(again[i], size, 200 + (uint64_t)i);
    }
    for (int i = 0; i < N; i++)
        if (p[i])
            CHECK(tl_check(p[i], size, 100 + (uint64_t)i) == SIZE_MAX,
                  "malloc(%zu) block %p damaged after free(p+%zu): the interior pointer was accepted", size,
                  (void *)p[i], offs[0]);
    for (int i = 0; i < AGAIN; i++) {
        if (again[i])
            CHECK(tl_check(again[i], size, 200 + (uint64_t)i) == SIZE_MAX,
                  "malloc(%zu) = %p overlaps another block after free(p+%zu)", size, again[i], offs[0]);
        T_FREE(again[i]);
    }
    for (int i = 0; i < N; i++)
        T_FREE(p[i]);
}

/* 16-byte aligned pointers into a slab that are no block's start even though they pass a divisibility test, in
 * hakmem's layout (64 KiB units; a unit other than its SuperSlab's first holds its slab's blocks from its start):
 * the tail of a unit past its last whole block (48-byte blocks: 1365 of them, then 16 bytes), and a block slot
 * the slab has not carved yet (a fresh slab of a class carves 8 blocks at its first refill). Refused: malloc never
 * hands them out (a wrongly accepted tail would overlap the next unit's first block). */
static void not_a_block_frees(void)
{
    enum { N = 3000, AFTER = 64 };
    static void *p[N];
    unsigned char *tail = NULL;
    for (int i = 0; i < N; i++) {
        p[i] = T_MALLOC(48);
        CHECK(p[i] != NULL, "malloc(48)");
        uintptr_t a = (uintptr_t)p[i];
        if (!tail && a % (2 * MiB) >= 64 * KiB)
            tail = (unsigned char *)(a & ~(uintptr_t)(64 * KiB - 1)) + 1365 * 48;
    }
    CHECK(tail != NULL, "no 48-byte block outside its SuperSlab's first unit");
    if (tail) {
        T_FREE(tl_launder(tail));
        for (int i = 0; i < AFTER; i++) {
            void *q = T_MALLOC(48);
            CHECK(q != tail, "malloc(48) returned %p, the tail of a unit past its last block, after a free of it", q);
            T_FREE(q);
        }
    }
    for (int i = 0; i < N; i++)
        T_FREE(p[i]);

    /* A class nothing in this test used before (1280-byte blocks): its first refill carves 8 blocks. */
    enum { FIRST = 8 };
    unsigned char *b[FIRST], *low = NULL;
    for (int i = 0; i < FIRST; i++) {
        b[i] = T_MALLOC(1200);
        CHECK(b[i] != NULL, "malloc(1200)");
        if (b[i] && (!low || b[i] < low))
            low = b[i];
    }
    size_t bs = low ? T_USABLE_SIZE(low) : 0;
    unsigned char *uncarved = low ? low + 12 * bs : NULL;
    if (uncarved && (uintptr_t)uncarved / (64 * KiB) == (uintptr_t)low / (64 * KiB)) {
        T_FREE(tl_launder(uncarved));
        for (int i = 0; i < AFTER; i++) {
            void *q = T_MALLOC(1200);
            CHECK(q != uncarved, "malloc(1200) returned %p, a slot not carved before its free", q);
            T_FREE(q);
        }
    } else {
        CHECK(0, "the 1280-byte class's first blocks are not where a fresh slab puts them (%p)", (void *)low);
    }
    for (int i = 0; i < FIRST; i++)
        T_FREE(b[i]);
}

/* After the bad frees: a pattern-checked malloc/free workload, many blocks alive at once. */
static void heap_still_works(void)
{
    enum { LIVE = 2048 };
    static void *p[LIVE];
    static size_t n[LIVE];
    tl_rng r = tl_rng_new(77);
    size_t ops = tl_scaled(400000, 20000);
    for (size_t op = 0; op < ops; op++) {
        int i = (int)(tl_next(&r) % LIVE);
        if (p[i]) {
            size_t bad = tl_check(p[i], n[i], tl_tag(p[i], n[i]));
            CHECK(bad == SIZE_MAX, "op %zu: live block %p/%zu overwritten at byte %zu", op, p[i], n[i], bad);
            T_FREE(p[i]);
            p[i] = NULL;
        } else {
            unsigned k = (unsigned)(tl_next(&r) % 1000);
            n[i] = k == 0 ? tl_range(&r, 256 * KiB, 3 * MiB) : k < 20 ? tl_range(&r, 4 * KiB, 128 * KiB)
                                                                        : tl_range(&r, 1, 1024);
            p[i] = T_MALLOC(n[i]);
            CHECK(p[i] != NULL, "malloc(%zu) NULL", n[i]);
            if (p[i])
                tl_fill(p[i], n[i], tl_tag(p[i], n[i]));
        }
    }
    for (int i = 0; i < LIVE; i++) {
        if (p[i]) {
            size_t bad = tl_check(p[i], n[i], tl_tag(p[i], n[i]));
            CHECK(bad == SIZE_MAX, "live block %p/%zu overwritten at byte %zu", p[i], n[i], bad);
            T_FREE(p[i]);
        }
    }
}

int main(void)
{
    const char *e = getenv("HAK_EXPECT_SAFE_FREE");
    if (!e || strcmp(e, "1") != 0) {
        /* Freeing these pointers is undefined behaviour for other allocators; only hakmem promises to refuse. */
        printf("test_invalid_free: skipped (HAK_EXPECT_SAFE_FREE is not 1)\n");
        return 0;
    }
    /* Live blocks from before the bad frees must come out intact. */
    enum { KEEP = 64 };
    void *keep[KEEP];
    size_t keep_n[KEEP];
    for (int i = 0; i < KEEP; i++) {
        keep_n[i] = i % 8 == 0 ? (size_t)i * 10 * KiB + 100 : (size_t)i * 16 + 8;
        keep[i] = T_MALLOC(keep_n[i]);
        CHECK(keep[i] != NULL, "malloc NULL");
        if (keep[i])
            tl_fill(keep[i], keep_n[i], tl_tag(keep[i], keep_n[i]));
    }

    /* stack */
    unsigned char stack_buf[512];
    free_foreign("stack buffer", stack_buf, sizeof stack_buf, 0, 1);
    free_foreign("stack buffer", stack_buf, sizeof stack_buf, 16, 2);
    free_foreign("stack buffer", stack_buf, sizeof stack_buf, 256, 3);

    /* globals (one patterned, one all zero: a zeroed "header" must not look valid either) */
    free_foreign("global", global_buf, sizeof global_buf, 0, 4);
    free_foreign("global", global_buf, sizeof global_buf, 2048, 5);
    T_FREE(tl_launder(zero_global + 64));
    for (size_t i = 0; i < sizeof zero_global; i++)
        CHECK(zero_global[i] == 0, "free(zero global) wrote byte %zu", i);

    /* a plain mmap region, page start and inside */
    unsigned char *m = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED, "mmap");
    if (m != MAP_FAILED) {
        free_foreign("mmap region", m, 64 * KiB, 0, 6);
        free_foreign("mmap region", m, 64 * KiB, 4096, 7);
        free_foreign("mmap region", m, 64 * KiB, 16, 8);
    }

    /* A 2 MiB-aligned region that is not a SuperSlab: masking the pointer lands on memory that must be
     * recognised as foreign by the global map, whatever it contains (pattern, zeros, all ones). */
    unsigned char *big = mmap(NULL, 6 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(big != MAP_FAILED, "mmap 6 MiB");
    if (big != MAP_FAILED) {
        unsigned char *a = (unsigned char *)(((uintptr_t)big + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
        free_foreign("2MiB-aligned mmap", a, 2 * MiB, 0, 9);
        free_foreign("2MiB-aligned mmap", a, 2 * MiB, 64, 10);
        free_foreign("2MiB-aligned mmap", a, 2 * MiB, 128 * KiB, 11);
        memset(a, 0, 2 * MiB);
        T_FREE(tl_launder(a + 4096));
        T_FREE(tl_launder(a + 16));
        for (size_t i = 0; i < 2 * MiB; i++)
            if (a[i]) {
                CHECK(0, "free into a zeroed 2 MiB-aligned region wrote byte %zu", i);
                break;
            }
        memset(a, 0xFF, 2 * MiB);
        T_FREE(tl_launder(a + 4096));
        for (size_t i = 0; i < 2 * MiB; i++)
            if (a[i] != 0xFF) {
                CHECK(0, "free into an all-ones 2 MiB-aligned region wrote byte %zu", i);
                break;
            }
    }

    /* interior pointers into a large block: refused, block intact */
    size_t ln = 1 * MiB;
    unsigned char *large = T_MALLOC(ln);
    CHECK(large != NULL, "malloc(1 MiB)");
    if (large) {
        tl_fill(large, ln, 12);
        T_FREE(tl_launder(large + 4096));
        T_FREE(tl_launder(large + 16));
        T_FREE(tl_launder(large + ln / 2));
        CHECK(tl_check(large, ln, 12) == SIZE_MAX, "interior frees damaged a large block");
    }
    /* misaligned pointers into small blocks (cannot be any block's start), then 16-byte aligned interior ones */
    static const size_t misaligned[] = {1, 8}, interior[] = {16, 32}, medium[] = {4096, 16};
    interior_frees(64, misaligned, 2);
    interior_frees(64, interior, 2);
    interior_frees(48, interior, 2);
    interior_frees(160, interior, 2);
    interior_frees(20000, medium, 2);
    T_FREE(large);
    not_a_block_frees();

    /* Memory where a freed block aligned to 2 MiB used to be, now the program's own mapping: hakmem must have
     * forgotten it (a stale map entry made this free read an unmapped header and crash). */
    void *far = NULL;
    CHECK(T_POSIX_MEMALIGN(&far, 2 * MiB, 4 * MiB) == 0 && far, "posix_memalign(2 MiB, 4 MiB)");
    if (far) {
        T_FREE(tl_launder(far)); /* laundered: only the address is used after the free */
        void *mine = mmap(far, 2 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                          -1, 0);
        if (mine != MAP_FAILED) {
            memset(mine, 0x5A, 64);
            T_FREE(tl_launder(mine));
            CHECK(((unsigned char *)mine)[0] == 0x5A, "a refused free wrote into the program's own mapping");
            munmap(mine, 2 * MiB);
        }
    }

    heap_still_works();
    for (int i = 0; i < KEEP; i++) {
        if (!keep[i])
            continue;
        CHECK(tl_check(keep[i], keep_n[i], tl_tag(keep[i], keep_n[i])) == SIZE_MAX,
              "block allocated before the bad frees damaged (%zu bytes)", keep_n[i]);
        T_FREE(keep[i]);
    }
    if (m != MAP_FAILED)
        munmap(m, 64 * KiB);
    if (big != MAP_FAILED)
        munmap(big, 6 * MiB);
    int rc = CHECK_DONE();
    if (rc == 0)
        printf("test_invalid_free: ok\n");
    return rc;
}
