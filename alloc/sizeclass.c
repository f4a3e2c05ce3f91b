/* Size-class tables: block sizes, the small-size lookup table and the reciprocals used to find a block's index.
 * Values follow the rule in layout.h (16..128 by 16, then four classes per power of two); tests/test_sizeclass checks them. */
#include "layout.h"

const uint32_t hak_class_size[HAK_NCLASSES] = {
    16, 32, 48, 64, 80, 96, 112, 128,
    160, 192, 224, 256, 320, 384, 448, 512,
    640, 768, 896, 1024, 1280, 1536, 1792, 2048,
    2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
    10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
    40960, 49152, 57344, 65536, 81920, 98304, 114688, 131072,
};

/* hak_tc_off_of_table[(size + 15) / 16] is 16 times the class of size (its tls_sll's offset in the heap), for
 * size <= HAK_TABLE_MAX. */
const uint16_t hak_tc_off_of_table[HAK_TABLE_MAX / 16 + 1] = {
    0, 0, 16, 32, 48, 64, 80, 96, 112, 128, 128, 144, 144, 160, 160, 176,
    176, 192, 192, 192, 192, 208, 208, 208, 208, 224, 224, 224, 224, 240, 240, 240,
    240, 256, 256, 256, 256, 256, 256, 256, 256, 272, 272, 272, 272, 272, 272, 272,
    272, 288, 288, 288, 288, 288, 288, 288, 288, 304, 304, 304, 304, 304, 304, 304,
    304,
};

const uint64_t hak_class_recip[HAK_NCLASSES] = {
    68719476736ull, 34359738368ull, 22906492246ull, 17179869184ull,
    13743895348ull, 11453246123ull, 9817068106ull, 8589934592ull,
    6871947674ull, 5726623062ull, 4908534053ull, 4294967296ull,
    3435973837ull, 2863311531ull, 2454267027ull, 2147483648ull,
    1717986919ull, 1431655766ull, 1227133514ull, 1073741824ull,
    858993460ull, 715827883ull, 613566757ull, 536870912ull,
    429496730ull, 357913942ull, 306783379ull, 268435456ull,
    214748365ull, 178956971ull, 153391690ull, 134217728ull,
    107374183ull, 89478486ull, 76695845ull, 67108864ull,
    53687092ull, 44739243ull, 38347923ull, 33554432ull,
    26843546ull, 22369622ull, 19173962ull, 16777216ull,
    13421773ull, 11184811ull, 9586981ull, 8388608ull,
};

/* Block indexes without dividing: for an offset x below 2^32, rotr32(x * mul, shift) is x / size when size
 * divides x, and above (2^32 - 1) / size otherwise (mul: inverse of size's odd part mod 2^32, shift: its power
 * of two). Copied into each slab descriptor when the slab is carved. */
const struct hak_class_div hak_class_div[HAK_NCLASSES] = {
    {1u, 4},
    {1u, 5},
    {2863311531u, 4},
    {1u, 6},
    {3435973837u, 4},
    {2863311531u, 5},
    {3067833783u, 4},
    {1u, 7},
    {3435973837u, 5},
    {2863311531u, 6},
    {3067833783u, 5},
    {1u, 8},
    {3435973837u, 6},
    {2863311531u, 7},
    {3067833783u, 6},
    {1u, 9},
    {3435973837u, 7},
    {2863311531u, 8},
    {3067833783u, 7},
    {1u, 10},
    {3435973837u, 8},
    {2863311531u, 9},
    {3067833783u, 8},
    {1u, 11},
    {3435973837u, 9},
    {2863311531u, 10},
    {3067833783u, 9},
    {1u, 12},
    {3435973837u, 10},
    {2863311531u, 11},
    {3067833783u, 10},
    {1u, 13},
    {3435973837u, 11},
    {2863311531u, 12},
    {3067833783u, 11},
    {1u, 14},
    {3435973837u, 12},
    {2863311531u, 13},
    {3067833783u, 12},
    {1u, 15},
    {3435973837u, 13},
    {2863311531u, 14},
    {3067833783u, 13},
    {1u, 16},
    {3435973837u, 14},
    {2863311531u, 15},
    {3067833783u, 14},
    {1u, 17},
};
