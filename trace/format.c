/* CRC-32C for the recording's chunks, shared by the writer and the reader. Slicing by 8: about a byte per
 * cycle, so checking a recording costs little next to parsing it. */
#include <cpuid.h>
#include "format.h"

static uint32_t crc_table[8][256];
static int crc_ready;

/* Idempotent: two threads racing here write the same values. */
static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

/* SSE4.2's crc32 instruction computes the same CRC-32C about eight times faster; used when the CPU has it. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = ~crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}

static int hw_state; /* 0 unknown, 1 yes, 2 no */
static int have_sse42(void)
{
    int s = __atomic_load_n(&hw_state, __ATOMIC_RELAXED);
    if (!s) {
        unsigned a, b, c, d;
        s = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2) ? 1 : 2;
        __atomic_store_n(&hw_state, s, __ATOMIC_RELAXED);
    }
    return s == 1;
}

uint32_t hkt_crc32c(uint32_t crc, const void *data, size_t len)
{
    if (have_sse42())
        return crc32c_hw(crc, data, len);
    if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE))
        crc_init();
    const uint8_t *p = data;
    crc = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^ crc_table[5][(w >> 16) & 0xff] ^
              crc_table[4][(w >> 24) & 0xff] ^ crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

uint32_t hkt_chunk_crc(const struct hkt_chunk_head *h, const void *payload)
{
    uint32_t head[3] = {h->type, h->len, h->seq};
    return hkt_crc32c(hkt_crc32c(0, head, sizeof head), payload, h->len);
}
