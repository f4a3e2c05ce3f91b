/* Checks the size-class tables against their rule, and the reciprocal division used to validate pointers.
 * Links the allocator's internals (hak_ names), so it also runs under AddressSanitizer+UBSan. */
#include "check.h"
#include "layout.h"
#include "../counters/counters.h"

int main(void)
{
    /* The rule: 16..128 by 16, then four classes per power of two up to 128 KiB. */
    uint32_t expect[HAK_NCLASSES];
    unsigned n = 0;
    for (uint32_t s = 16; s <= 128; s += 16)
        expect[n++] = s;
    for (uint32_t p = 128; p < 131072; p *= 2)
        for (uint32_t q = 1; q <= 4; q++)
            expect[n++] = p + q * (p / 4);
    CHECK(n == HAK_NCLASSES, "rule gives %u classes", n);
    for (unsigned c = 0; c < HAK_NCLASSES; c++) {
        CHECK(hak_class_size[c] == expect[c], "class %u size %u, rule says %u", c, hak_class_size[c], expect[c]);
        CHECK(hak_class_size[c] % 16 == 0, "class %u size %u keeps 16-byte alignment", c, hak_class_size[c]);
    }
    CHECK(hak_class_size[HAK_NCLASSES - 1] == HAK_SMALL_MAX, "largest class is HAK_SMALL_MAX");
    /* counters/ keeps its own copy for reports (it may not include alloc's headers): it must agree. */
    CHECK(HKC_NCLASSES == HAK_NCLASSES, "counters know %d classes, the allocator %d", HKC_NCLASSES, HAK_NCLASSES);
    for (unsigned c = 0; c < HAK_NCLASSES; c++)
        CHECK(hkc_class_size[c] == hak_class_size[c], "class %u: counters say %u bytes, the allocator %u", c,
              hkc_class_size[c], hak_class_size[c]);
    /* Every size maps to the smallest class that holds it. */
    for (size_t size = 0; size <= HAK_SMALL_MAX; size++) {
        unsigned c = hak_size_class(size);
        if (c >= HAK_NCLASSES || hak_class_size[c] < size || (c > 0 && hak_class_size[c - 1] >= size)) {
            CHECK(0, "size %zu maps to class %u", size, c);
            break;
        }
    }
    /* (offset * recip) >> 40 is offset / size for every block offset inside a SuperSlab. */
    for (unsigned c = 0; c < HAK_NCLASSES; c++) {
        for (uint64_t off = 0; off < HAK_CHUNK; off += 16) {
            uint64_t idx = (off * hak_class_recip[c]) >> 40;
            if (idx != off / hak_class_size[c]) {
                CHECK(0, "class %u offset %llu: reciprocal gives %llu", c, (unsigned long long)off,
                      (unsigned long long)idx);
                break;
            }
        }
    }
    /* The free fast path's block test (multiply and rotate, no division) against plain division: a start of a
     * carved block, and nothing else (interior, misaligned, below the first block, not carved yet, the unit's
     * tail). Two SuperSlab bases: a low one, and the last chunk below a 4 GiB boundary, whose addresses have the
     * largest low 32 bits the test subtracts (the optimized free no longer refuses misaligned pointers first). */
    const uintptr_t bases[] = {(uintptr_t)64 << 21, ((uintptr_t)0x7f01 << 32) - HAK_CHUNK};
    for (unsigned bi = 0; bi < sizeof bases / sizeof bases[0]; bi++)
        for (unsigned c = 0; c < HAK_NCLASSES; c++) {
            uint32_t size = hak_class_size[c];
            uint32_t capacity = (uint32_t)((HAK_CHUNK - HAK_SS_HEADER) / size);
            if (capacity > 65535)
                capacity = 65535;
            uint32_t carveds[] = {0, 1, 8, capacity / 2, capacity};
            for (unsigned k = 0; k < sizeof carveds / sizeof carveds[0]; k++) {
                struct hak_slab s = {0};
                s.first_lo = (uint32_t)(bases[bi] + HAK_SS_HEADER);
                s.div_mul = hak_class_div[c].mul;
                s.div_shift = (uint8_t)hak_class_div[c].shift;
                s.carved = (uint16_t)carveds[k];
                for (uintptr_t in = 0; in < HAK_CHUNK; in += 16) {
                    uintptr_t a = bases[bi] + in;
                    int want = in >= HAK_SS_HEADER && (in - HAK_SS_HEADER) % size == 0 &&
                               (in - HAK_SS_HEADER) / size < carveds[k];
                    if (hak_is_carved_block(&s, a) != want) {
                        CHECK(0, "class %u, %u carved: offset %lu judged %s", c, carveds[k], (unsigned long)in,
                              want ? "not a block" : "a carved block");
                        break;
                    }
                    uintptr_t mis = a + 1 + (in >> 4) % 15; /* 1 to 15 bytes past: never a block start */
                    if (hak_is_carved_block(&s, mis)) {
                        CHECK(0, "class %u, %u carved: misaligned offset %lu judged a carved block", c, carveds[k],
                              (unsigned long)(mis - bases[bi]));
                        break;
                    }
                }
            }
        }
    /* A round trip through the allocator for every class. */
    for (unsigned c = 0; c < HAK_NCLASSES; c++) {
        size_t size = hak_class_size[c];
        unsigned char *p = T_MALLOC(size);
        CHECK(p && ((uintptr_t)p & 15) == 0, "class %u block %p", c, (void *)p);
        CHECK(T_USABLE_SIZE(p) == size, "usable size of a class %u block is %zu", c, T_USABLE_SIZE(p));
        for (size_t i = 0; i < size; i++)
            p[i] = (unsigned char)i;
        T_FREE(p);
    }
    return CHECK_DONE();
}
