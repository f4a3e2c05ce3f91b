/* The table of counter definitions generated from counters.def, and the hash that identifies the list.
 * Everything that names or describes a counter reads this table. */
#include "counters.h"

/* The table keeps the X-macro spelling (REFILL_TLS_SLL_HIT); users see hkc_name(), the same in lower case. */
const struct hkc_def hkc_defs[HKC_NCOUNTERS] = {
#define HKC_DEF(name, group, kind, meaning) {#name, #group, HKC_##kind, meaning, HKC_##name, HKC_WIDTH_##kind},
#include "counters.def"
#undef HKC_DEF
};

const uint32_t hkc_class_size[HKC_NCLASSES] = {
    16, 32, 48, 64, 80, 96, 112, 128,
    160, 192, 224, 256, 320, 384, 448, 512,
    640, 768, 896, 1024, 1280, 1536, 1792, 2048,
    2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
    10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
    40960, 49152, 57344, 65536, 81920, 98304, 114688, 131072,
};

/* FNV-1a over every name, kind and width, in order. */
uint64_t hkc_defs_hash(void)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned i = 0; i < HKC_NCOUNTERS; i++) {
        for (const char *c = hkc_defs[i].name; *c; c++)
            h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
        h = (h ^ (uint64_t)hkc_defs[i].kind) * 0x100000001b3ull;
        h = (h ^ (uint64_t)hkc_defs[i].width) * 0x100000001b3ull;
    }
    return h;
}

/* Owner frees (tls_sll, ss_local) are same-thread except the leftovers of a dead previous owner; every ss_remote
 * free is cross-thread: a slab changes owner only when its owner exits. See alloc/count.h. Every derived value is
 * a sum of counters the allocator only ever increments, never a difference: a reader summing the threads' blocks
 * while they count (one value after another, not at one instant) then never sees a total go backwards, nor a
 * same-thread count wrap below zero, as own = all - leftover did when a leftover was counted before its path. */
void hkc_derive(uint64_t *v)
{
    for (unsigned c = 0; c < HKC_NCLASSES; c++) {
        uint64_t tls_own = v[HKC_FREE_TLS_SLL_OWN + c], tls_left = v[HKC_FREE_TLS_SLL_LEFTOVER + c];
        uint64_t local_own = v[HKC_FREE_SS_LOCAL_OWN + c], local_left = v[HKC_FREE_SS_LOCAL_LEFTOVER + c];
        v[HKC_FREE_TLS_SLL + c] = tls_own + tls_left;
        v[HKC_FREE_SS_LOCAL + c] = local_own + local_left;
        v[HKC_FREE_OWNER_LEFTOVER + c] = tls_left + local_left;
        v[HKC_FREE_SAME_THREAD + c] = tls_own + local_own;
        v[HKC_FREE_CROSS_THREAD + c] = v[HKC_FREE_SS_REMOTE + c] + tls_left + local_left;
    }
}

const char *hkc_name(unsigned counter, char *buf, size_t len)
{
    const char *n = hkc_defs[counter].name;
    size_t i = 0;
    for (; n[i] && i + 1 < len; i++)
        buf[i] = (n[i] >= 'A' && n[i] <= 'Z') ? (char)(n[i] - 'A' + 'a') : n[i];
    buf[i] = 0;
    return buf;
}
