/* API conformance of the whole malloc family: sizes, alignment, errno on failure, calloc zeroing, realloc contents.
 * Every check looks at real values returned by the allocator under test; nothing here knows hakmem's size classes. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

#define MiB ((size_t)1 << 20)

static int aligned(const void *p, size_t a)
{
    return ((uintptr_t)p & (a - 1)) == 0;
}

/* Each size 0..4096 then larger sizes, all alive at once with distinct patterns: catches overlap too. */
static void test_malloc_sizes(void)
{
    enum { N = 4097 + 400 };
    static void *ptr[N];
    static size_t sz[N];
    int n = 0;
    for (size_t s = 0; s <= 4096; s++)
        sz[n++] = s;
    for (size_t s = 4097; s <= MiB && n < N - 3; s += s / 16 + 13)
        sz[n++] = s;
    sz[n++] = 1 * MiB - 1;
    sz[n++] = 1 * MiB;
    sz[n++] = 1 * MiB + 1;
    for (int i = 0; i < n; i++) {
        ptr[i] = T_MALLOC(sz[i]);
        CHECK(ptr[i] != NULL, "malloc(%zu) returned NULL", sz[i]);
        if (!ptr[i])
            continue;
        CHECK(aligned(ptr[i], tl_min_align(sz[i])), "malloc(%zu) = %p not 16-byte aligned", sz[i], ptr[i]);
        tl_fill(ptr[i], sz[i], tl_tag(ptr[i], sz[i]));
    }
    for (int i = 0; i < n; i++) {
        if (!ptr[i])
            continue;
        size_t bad = tl_check(ptr[i], sz[i], tl_tag(ptr[i], sz[i]));
        CHECK(bad == SIZE_MAX, "malloc(%zu) = %p: byte %zu overwritten while all blocks alive", sz[i], ptr[i], bad);
        size_t us = T_USABLE_SIZE(ptr[i]);
        CHECK(us >= sz[i], "malloc_usable_size(malloc(%zu)) = %zu", sz[i], us);
    }
    /* Free in an interleaved order so neighbours are released out of sequence. */
    for (int i = 0; i < n; i += 2)
        T_FREE(ptr[i]);
    for (int i = 1; i < n; i += 2)
        T_FREE(ptr[i]);
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static void test_malloc_zero(void)
{
    enum { N = 1000 };
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = T_MALLOC(0);
        CHECK(p[i] != NULL, "malloc(0) #%d returned NULL", i);
        CHECK(aligned(p[i], tl_min_align(0)), "malloc(0) = %p misaligned", p[i]);
    }
    void *sorted[N];
    memcpy(sorted, p, sizeof sorted);
    qsort(sorted, N, sizeof sorted[0], cmp_ptr);
    for (int i = 1; i < N; i++)
        CHECK(sorted[i] == NULL || sorted[i] != sorted[i - 1], "malloc(0) returned %p twice", sorted[i]);
    for (int i = 0; i < N; i++)
        T_FREE(p[i]);
}

static const size_t memalign_sizes[] = {0, 1, 15, 16, 17, 100, 4095, 4096, 65536, 300000, 3 * MiB};
#define NSIZES (sizeof memalign_sizes / sizeof memalign_sizes[0])

/* A size-0 request may yield NULL (POSIX), anything else must be a usable, aligned block. */
static void check_aligned_block(const char *fn, void *p, size_t align, size_t size)
{
    if (size == 0 && p == NULL)
        return;
    CHECK(p != NULL, "%s(align %zu, size %zu) returned NULL", fn, align, size);
    if (!p)
        return;
    size_t want = align > tl_min_align(size) ? align : tl_min_align(size);
    CHECK(aligned(p, want), "%s(align %zu, size %zu) = %p not %zu-aligned", fn, align, size, p, want);
    CHECK(T_USABLE_SIZE(p) >= size, "%s(align %zu, size %zu): usable size %zu", fn, align, size, T_USABLE_SIZE(p));
    uint64_t tag = tl_tag(p, size);
    tl_fill(p, size, tag);
    size_t bad = tl_check(p, size, tag);
    CHECK(bad == SIZE_MAX, "%s(align %zu, size %zu): byte %zu did not hold its value", fn, align, size, bad);
}

static void test_memalign_family(void)
{
    int skip_odd_aligned_alloc = tl_skip("aligned_alloc_odd");
    for (size_t a = 1; a <= MiB; a *= 2) {
        for (size_t i = 0; i < NSIZES; i++) {
            size_t s = memalign_sizes[i];
            if (a >= sizeof(void *)) {
                void *p = (void *)0x1;
                int rc = T_POSIX_MEMALIGN(&p, a, s);
                CHECK(rc == 0, "posix_memalign(align %zu, size %zu) = %d", a, s, rc);
                if (rc == 0) {
                    check_aligned_block("posix_memalign", p, a, s);
                    T_FREE(p);
                }
            }
            /* glibc (and hakmem) accept any size; ASan's aligned_alloc enforces C11's size % alignment == 0 */
            if (s % a == 0 || !skip_odd_aligned_alloc) {
                void *q = T_ALIGNED_ALLOC(a, s);
                check_aligned_block("aligned_alloc", q, a, s);
                T_FREE(q);
            }
            void *r = T_MEMALIGN(a, s);
            check_aligned_block("memalign", r, a, s);
            T_FREE(r);
        }
    }
    /* Many live aligned blocks at once, mixed with plain ones: their patterns must not overlap. */
    enum { N = 300 };
    void *p[N];
    size_t sz[N];
    tl_rng rng = tl_rng_new(7);
    for (int i = 0; i < N; i++) {
        size_t a = (size_t)1 << tl_range(&rng, 3, 13);
        sz[i] = tl_range(&rng, 1, 20000);
        if (i % 3 == 0)
            p[i] = T_MALLOC(sz[i]);
        else if (T_POSIX_MEMALIGN(&p[i], a, sz[i]) != 0)
            p[i] = NULL;
        CHECK(p[i] != NULL, "aligned block %d (size %zu) is NULL", i, sz[i]);
        if (p[i])
            tl_fill(p[i], sz[i], tl_tag(p[i], sz[i]));
    }
    for (int i = 0; i < N; i++) {
        if (!p[i])
            continue;
        size_t bad = tl_check(p[i], sz[i], tl_tag(p[i], sz[i]));
        CHECK(bad == SIZE_MAX, "live aligned block %p size %zu overwritten at %zu", p[i], sz[i], bad);
        T_FREE(p[i]);
    }
    /* Once: an alignment beyond the usual 2 MiB SuperSlab size. */
    static const size_t big[] = {100, 5 * MiB};
    for (size_t i = 0; i < 2; i++) {
        void *q = NULL;
        int rc = T_POSIX_MEMALIGN(&q, 4 * MiB, big[i]);
        CHECK(rc == 0, "posix_memalign(4 MiB, %zu) = %d", big[i], rc);
        if (rc == 0)
            check_aligned_block("posix_memalign", q, 4 * MiB, big[i]);
        T_FREE(q);
        if (!skip_odd_aligned_alloc) {
            q = T_ALIGNED_ALLOC(4 * MiB, big[i]);
            check_aligned_block("aligned_alloc", q, 4 * MiB, big[i]);
            T_FREE(q);
        }
    }
}

/* A zero-byte block with an alignment no size class serves (a large mapping, also one aligned to 2 MiB and more)
 * is a live block: realloc grows it and free takes it, with no report (it once had usable size 0 and realloc
 * refused it as foreign). */
static void test_aligned_zero(void)
{
    static const size_t aligns[] = {8192, 65536, 2 * MiB, 4 * MiB};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        void *p = NULL;
        int rc = T_POSIX_MEMALIGN(&p, aligns[i], 0);
        CHECK(rc == 0 && p && ((uintptr_t)p & (aligns[i] - 1)) == 0, "posix_memalign(%zu, 0) = %d, %p", aligns[i],
              rc, p);
        if (rc != 0 || !p)
            continue;
        errno = 0;
        unsigned char *q = T_REALLOC(p, 100);
        CHECK(q != NULL, "realloc of posix_memalign(%zu, 0) to 100 bytes: NULL (errno %d)", aligns[i], errno);
        if (q) {
            memset(q, 0x42, 100);
            CHECK(T_USABLE_SIZE(q) >= 100, "usable size %zu after realloc to 100", T_USABLE_SIZE(q));
            T_FREE(q);
        } else {
            T_FREE(p);
        }
    }
}

static void test_posix_memalign_einval(void)
{
    const size_t bad[] = {0, 3, 24, sizeof(void *) / 2, 1, 48, sizeof(void *) + 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *sentinel = (void *)(uintptr_t)0xdeadbeef0;
        void *p = sentinel;
        int rc = T_POSIX_MEMALIGN(&p, bad[i], 64);
        CHECK(rc == EINVAL, "posix_memalign(align %zu) returned %d, want EINVAL", bad[i], rc);
        CHECK(p == sentinel, "posix_memalign(align %zu) changed *out to %p", bad[i], p);
        if (rc == 0 && p != sentinel)
            T_FREE(p);
    }
    /* Alignment fine, size impossible: ENOMEM, *out untouched. */
    void *sentinel = (void *)(uintptr_t)0xdeadbeef0;
    void *p = sentinel;
    int rc = T_POSIX_MEMALIGN(&p, 64, tl_opaque(SIZE_MAX - 4096));
    CHECK(rc == ENOMEM, "posix_memalign(64, SIZE_MAX-4096) returned %d, want ENOMEM", rc);
    CHECK(p == sentinel, "failed posix_memalign changed *out to %p", p);
    errno = 0;
    p = T_MEMALIGN(64, tl_opaque(SIZE_MAX - 4096));
    CHECK(p == NULL && errno == ENOMEM, "memalign(64, SIZE_MAX-4096) = %p errno %d", p, errno);
}

static void test_valloc_pvalloc(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int skip_pvalloc = tl_skip("pvalloc");
    static const size_t sizes[] = {1, 100, 4095, 4096, 4097, 10000, 65536, MiB + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t s = sizes[i];
        void *p = T_VALLOC(s);
        CHECK(p != NULL && aligned(p, page), "valloc(%zu) = %p not page-aligned", s, p);
        if (p) {
            CHECK(T_USABLE_SIZE(p) >= s, "valloc(%zu): usable %zu", s, T_USABLE_SIZE(p));
            tl_fill(p, s, 11);
            CHECK(tl_check(p, s, 11) == SIZE_MAX, "valloc(%zu) not writable", s);
        }
        T_FREE(p);
        if (skip_pvalloc)
            continue;
        size_t rounded = (s + page - 1) / page * page;
        p = T_PVALLOC(s);
        CHECK(p != NULL && aligned(p, page), "pvalloc(%zu) = %p not page-aligned", s, p);
        if (p) {
            CHECK(T_USABLE_SIZE(p) >= rounded, "pvalloc(%zu): usable %zu < %zu", s, T_USABLE_SIZE(p), rounded);
            tl_fill(p, rounded, 12); /* pvalloc promises the whole rounded-up size */
            CHECK(tl_check(p, rounded, 12) == SIZE_MAX, "pvalloc(%zu) not writable to %zu", s, rounded);
        }
        T_FREE(p);
    }
}

static size_t first_nonzero(const unsigned char *q, size_t n)
{
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        uint64_t acc = 0, w;
        for (int k = 0; k < 8; k++) {
            memcpy(&w, q + i + 8 * k, 8);
            acc |= w;
        }
        if (acc)
            break;
    }
    for (; i < n; i++)
        if (q[i])
            return i;
    return SIZE_MAX;
}

/* A freed dirty block comes back through calloc: it must read as zero, whatever the recycling path. */
static void test_calloc_zero(void)
{
    static const size_t sizes[] = {1,    8,    16,   24,    48,    100,    128,    200,    256,     500,
                                   1000, 1024, 2000, 2048,  3000,  4096,   8192,   20000,  65536,   100000,
                                   262144, MiB, 2 * MiB + 5, 4 * MiB + 3, 9 * MiB};
    enum { NS = sizeof sizes / sizeof sizes[0], COPIES = 8 };
    void *p[NS * COPIES];
    int rounds = (int)tl_scaled(20, 3);
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < NS * COPIES; i++) {
            size_t s = sizes[i % NS];
            if (s > MiB && i >= NS) /* one copy of the huge ones is plenty */
            {
                p[i] = NULL;
                continue;
            }
            p[i] = T_MALLOC(s);
            CHECK(p[i] != NULL, "malloc(%zu) NULL", s);
            if (p[i])
                memset(p[i], 0xA5, T_USABLE_SIZE(p[i]));
            tl_escape(p[i]);
        }
        for (size_t i = 0; i < NS * COPIES; i++)
            T_FREE(p[i]);
        for (size_t i = 0; i < NS * COPIES; i++) {
            size_t s = sizes[i % NS];
            if (s > MiB && i >= NS) {
                p[i] = NULL;
                continue;
            }
            /* vary the nmemb/size split; calloc must multiply them */
            size_t nmemb = (s % 4 == 0 && (i & 1)) ? s / 4 : s, esz = (s % 4 == 0 && (i & 1)) ? 4 : 1;
            unsigned char *q = T_CALLOC(nmemb, esz);
            p[i] = q;
            CHECK(q != NULL, "calloc(%zu, %zu) NULL", nmemb, esz);
            if (!q)
                continue;
            size_t first = first_nonzero(q, s);
            CHECK(first == SIZE_MAX, "round %d: calloc(%zu, %zu) = %p: byte %zu is 0x%02x, not zero", r, nmemb, esz,
                  (void *)q, first, first == SIZE_MAX ? 0 : q[first]);
            memset(q, 0x5A, s);
            tl_escape(q);
        }
        for (size_t i = 0; i < NS * COPIES; i++)
            T_FREE(p[i]);
    }
    /* Degenerate products are valid requests. */
    void *a = T_CALLOC(0, 16), *b = T_CALLOC(16, 0), *c = T_CALLOC(0, 0);
    tl_escape(a);
    tl_escape(b);
    tl_escape(c);
    T_FREE(a);
    T_FREE(b);
    T_FREE(c);
}

static void test_calloc_overflow(void)
{
    const size_t cases[][2] = {
        {SIZE_MAX / 2 + 2, 2}, {SIZE_MAX, SIZE_MAX}, {(size_t)1 << 32, (size_t)1 << 32}, {2, SIZE_MAX / 2 + 1},
        {SIZE_MAX / 16 + 1, 16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        errno = 0;
        void *p = T_CALLOC(tl_opaque(cases[i][0]), tl_opaque(cases[i][1]));
        CHECK(p == NULL, "calloc(%zu, %zu) overflow returned %p", cases[i][0], cases[i][1], p);
        CHECK(errno == ENOMEM, "calloc(%zu, %zu) overflow: errno %d, want ENOMEM", cases[i][0], cases[i][1], errno);
        if (p)
            T_FREE(p);
    }
}

static void test_huge_malloc(void)
{
    const size_t cases[] = {SIZE_MAX, PTRDIFF_MAX, (size_t)PTRDIFF_MAX + 1, SIZE_MAX - 15, SIZE_MAX - 4096};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        errno = 0;
        void *p = T_MALLOC(tl_opaque(cases[i]));
        CHECK(p == NULL && errno == ENOMEM, "malloc(%zu) = %p errno %d, want NULL/ENOMEM", cases[i], p, errno);
        if (p)
            T_FREE(p);
    }
    T_FREE(NULL);
    T_FREE(tl_launder(NULL));
}

/* Position-only pattern (tag fixed), so it survives the block moving. */
#define RTAG 0x5EEDULL
static void test_realloc_contents(void)
{
    void *p = T_REALLOC(NULL, 16); /* realloc(NULL, n) is malloc(n) */
    CHECK(p != NULL && aligned(p, 16), "realloc(NULL, 16) = %p", p);
    if (!p)
        return;
    tl_fill(p, 16, RTAG);
    size_t cur = 16;
    /* growth: every size up to 4096 (crosses every small class boundary), then ~6% steps to 8 MiB */
    size_t steps = 0;
    for (size_t next = 17; next <= 8 * MiB; next = next < 4096 ? next + 1 : next + next / 16 + 7) {
        /* laundered: the old address is only printed, gcc's use-after-free warning need not see it */
        void *q = T_REALLOC(tl_launder(p), next);
        CHECK(q != NULL, "realloc(%zu -> %zu) NULL", cur, next);
        if (!q)
            break;
        CHECK(aligned(q, 16), "realloc(%zu -> %zu) = %p misaligned", cur, next, q);
        size_t bad = tl_check(q, cur, RTAG);
        CHECK(bad == SIZE_MAX, "realloc %zu -> %zu lost contents at byte %zu (old %p new %p)", cur, next, bad, p, q);
        tl_fill_range(q, cur, next, RTAG);
        p = q;
        cur = next;
        steps++;
    }
    /* and back down, shrinking through the same boundaries */
    for (size_t next = cur; next >= 1;) {
        next = next > 4096 ? next - next / 16 - 5 : next - 1;
        if (next == 0)
            break;
        void *q = T_REALLOC(p, next);
        CHECK(q != NULL, "realloc shrink %zu -> %zu NULL", cur, next);
        if (!q)
            break;
        size_t bad = tl_check(q, next, RTAG);
        CHECK(bad == SIZE_MAX, "realloc shrink %zu -> %zu lost contents at byte %zu", cur, next, bad);
        p = q;
        cur = next;
    }
    /* a failed realloc leaves the block intact */
    errno = 0;
    void *q = T_REALLOC(tl_launder(p), tl_opaque(SIZE_MAX - 4096)); /* p stays valid: gcc can't know */
    CHECK(q == NULL && errno == ENOMEM, "realloc(p, huge) = %p errno %d", q, errno);
    CHECK(tl_check(p, cur, RTAG) == SIZE_MAX, "failed realloc damaged the block");
    T_FREE(p);

    /* jumps straight between small, medium and large, both ways */
    static const size_t jumps[] = {8, 3 * MiB, 24, 70000, 5, 9 * MiB, 1000, 600000, 4096, 2 * MiB, 1};
    p = T_MALLOC(1);
    cur = 1;
    tl_fill(p, 1, RTAG);
    for (size_t i = 0; i < sizeof jumps / sizeof jumps[0]; i++) {
        q = T_REALLOC(p, jumps[i]);
        CHECK(q != NULL, "realloc jump %zu -> %zu NULL", cur, jumps[i]);
        if (!q)
            break;
        size_t keep = cur < jumps[i] ? cur : jumps[i];
        size_t bad = tl_check(q, keep, RTAG);
        CHECK(bad == SIZE_MAX, "realloc jump %zu -> %zu lost byte %zu", cur, jumps[i], bad);
        tl_fill_range(q, keep, jumps[i], RTAG);
        p = q;
        cur = jumps[i];
    }
    T_FREE(p);

    /* realloc(p, 0) frees p and returns NULL (glibc's behaviour, chosen by the design) */
    for (size_t s = 1; s <= 4 * MiB; s *= 4) {
        p = T_MALLOC(s);
        tl_escape(p);
        q = T_REALLOC(p, tl_opaque(0));
        CHECK(q == NULL, "realloc(malloc(%zu), 0) returned %p, want NULL", s, q);
        if (q)
            T_FREE(q);
    }
}

static void test_usable_size(void)
{
    CHECK(T_USABLE_SIZE(NULL) == 0, "malloc_usable_size(NULL) = %zu", T_USABLE_SIZE(NULL));
    enum { N = 512 };
    void *p[N];
    size_t us[N];
    tl_rng rng = tl_rng_new(3);
    for (int i = 0; i < N; i++) {
        size_t s = i < 300 ? (size_t)i * 7 : tl_range(&rng, 1, i % 10 == 0 ? 3 * MiB : 40000);
        p[i] = T_MALLOC(s);
        CHECK(p[i] != NULL, "malloc(%zu) NULL", s);
        us[i] = p[i] ? T_USABLE_SIZE(p[i]) : 0;
        CHECK(!p[i] || us[i] >= s, "malloc_usable_size(malloc(%zu)) = %zu", s, us[i]);
        if (p[i])
            tl_fill(p[i], us[i], tl_tag(p[i], us[i])); /* the whole usable size belongs to the caller */
    }
    for (int i = 0; i < N; i++) {
        if (!p[i])
            continue;
        size_t bad = tl_check(p[i], us[i], tl_tag(p[i], us[i]));
        CHECK(bad == SIZE_MAX, "usable tail of %p (usable %zu) overwritten at %zu", p[i], us[i], bad);
        CHECK(T_USABLE_SIZE(p[i]) == us[i], "malloc_usable_size changed for %p", p[i]);
        T_FREE(p[i]);
    }
}

static void test_reallocarray(void)
{
    unsigned char *p = T_MALLOC(100);
    CHECK(p != NULL, "malloc(100) NULL");
    if (!p)
        return;
    tl_fill(p, 100, RTAG);
    errno = 0;
    void *q = T_REALLOCARRAY(tl_launder(p), tl_opaque(SIZE_MAX / 2), 4);
    CHECK(q == NULL && errno == ENOMEM, "reallocarray overflow = %p errno %d", q, errno);
    CHECK(tl_check(p, 100, RTAG) == SIZE_MAX, "reallocarray overflow damaged the old block");
    errno = 0;
    q = T_REALLOCARRAY(tl_launder(p), tl_opaque((size_t)1 << 33), tl_opaque((size_t)1 << 33));
    CHECK(q == NULL && errno == ENOMEM, "reallocarray 2^33*2^33 = %p errno %d", q, errno);
    q = T_REALLOCARRAY(p, 10, 20);
    CHECK(q != NULL, "reallocarray(p, 10, 20) NULL");
    if (q) {
        CHECK(tl_check(q, 100, RTAG) == SIZE_MAX, "reallocarray lost contents");
        tl_fill_range(q, 100, 200, RTAG);
        p = q;
    }
    q = T_REALLOCARRAY(p, 1000, 1000);
    CHECK(q != NULL, "reallocarray(p, 1000, 1000) NULL");
    if (q) {
        CHECK(tl_check(q, 200, RTAG) == SIZE_MAX, "reallocarray to 1e6 lost contents");
        p = q;
    }
    T_FREE(p);
    q = T_REALLOCARRAY(NULL, 3, 5);
    CHECK(q != NULL, "reallocarray(NULL, 3, 5) NULL");
    T_FREE(q);
}

/* A successful call leaves errno as it found it (C and POSIX), also when an attempt inside failed: a large
 * realloc that cannot grow in place (a neighbour follows) and moves, or (prof build, recording) a sampled
 * allocation whose stack capture probes memory with system calls that fail on purpose. */
static void test_errno_kept(void)
{
    enum { N = 8 };
    void *big[N];
    for (int i = 0; i < N; i++) {
        big[i] = T_MALLOC(3u << 20); /* neighbours: the first realloc below cannot grow in place */
        CHECK(big[i] != NULL, "malloc(3 MiB) NULL");
        if (!big[i])
            return;
        tl_fill(big[i], 64, RTAG);
    }
    for (int i = 0; i < N; i++) {
        errno = 1234;
        void *q = T_REALLOC(big[i], 20u << 20);
        CHECK(q != NULL, "realloc(3 MiB -> 20 MiB) NULL");
        if (!q)
            continue;
        CHECK(errno == 1234, "a successful realloc(3 MiB -> 20 MiB) changed errno to %d", errno);
        CHECK(tl_check(q, 64, RTAG) == SIZE_MAX, "realloc to 20 MiB lost contents");
        big[i] = q;
    }
    for (int i = 0; i < N; i++)
        T_FREE(big[i]);
    int changed = 0, first = 0;
    for (int i = 0; i < 20000; i++) {
        errno = 1234;
        void *p = T_MALLOC(16 + (size_t)(i % 200));
        if (errno != 1234 && !changed++)
            first = errno;
        tl_escape(p);
        T_FREE(p);
    }
    CHECK(changed == 0, "%d of 20000 successful malloc+free pairs changed errno (first to %d)", changed, first);
}

int main(void)
{
    test_malloc_sizes();
    test_malloc_zero();
    test_memalign_family();
    test_aligned_zero();
    test_posix_memalign_einval();
    test_valloc_pvalloc();
    test_calloc_zero();
    test_calloc_overflow();
    test_huge_malloc();
    test_realloc_contents();
    test_usable_size();
    test_reallocarray();
    test_errno_kept();
    int rc = CHECK_DONE();
    if (rc == 0)
        printf("test_api: ok\n");
    return rc;
}
