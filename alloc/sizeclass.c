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

/* hak_class_of_table[(size + 15) / 16] is the class of size, for size <= HAK_TABLE_MAX. */
const uint8_t hak_class_of_table[HAK_TABLE_MAX / 16 + 1] = {
    0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 11,
    11, 12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15,
    15, 16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17,
    17, 18, 18, 18, 18, 18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19,
    19,
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
