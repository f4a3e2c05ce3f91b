/* The recording's byte-level encoding, shared by the writer (in libhakmem_prof.so) and the reader: the file
 * header, chunk framing with a CRC-32C, and the LEB128 varints chunk payloads are made of. docs/format.md. */
#ifndef HKT_FORMAT_H
#define HKT_FORMAT_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "trace.h"

#pragma GCC visibility push(hidden)

/* File header: 16 bytes at offset 0. */
struct hkt_file_header {
    char magic[8];        /* "HAKTRACE" */
    uint32_t version;     /* HKT_VERSION; a reader refuses a newer one */
    uint32_t header_size; /* 16: chunks start here */
};
/* Each chunk: this head, then len payload bytes. crc covers type, len, seq and the payload. */
struct hkt_chunk_head {
    uint32_t type;
    uint32_t len;
    uint32_t seq;         /* 0, 1, 2, ... in file order: a gap means a chunk is missing */
    uint32_t crc;
};
#define HKT_CHUNK_MAX_LEN (64u << 20) /* a reader treats a longer length as damage */

/* CRC-32C (Castagnoli), table-driven, slicing by 8. */
uint32_t hkt_crc32c(uint32_t crc, const void *data, size_t len);
uint32_t hkt_chunk_crc(const struct hkt_chunk_head *h, const void *payload);

/* ---- Encoding into a buffer the caller sized (the writer reserves the worst case up front) ---- */
#define HKT_VARINT_MAX 10
static inline uint8_t *hkt_put_u(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}
static inline uint64_t hkt_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}
static inline uint8_t *hkt_put_s(uint8_t *p, int64_t v)
{
    return hkt_put_u(p, hkt_zigzag(v));
}
static inline uint8_t *hkt_put_bytes(uint8_t *p, const void *s, size_t n)
{
    p = hkt_put_u(p, n);
    memcpy(p, s, n);
    return p + n;
}
static inline uint8_t *hkt_put_str(uint8_t *p, const char *s)
{
    return hkt_put_bytes(p, s, strlen(s));
}

/* ---- Decoding with bounds: a cursor that turns bad (ok = 0) instead of reading past the end ---- */
struct hkt_cursor {
    const uint8_t *p, *end;
    int ok;
};
static inline uint64_t hkt_get_u(struct hkt_cursor *c)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end) {
            c->ok = 0;
            return 0;
        }
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    c->ok = 0; /* more than 10 bytes: not a varint this writer made */
    return 0;
}
static inline int64_t hkt_get_s(struct hkt_cursor *c)
{
    uint64_t u = hkt_get_u(c);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}
static inline uint8_t hkt_get_byte(struct hkt_cursor *c)
{
    if (c->p >= c->end) {
        c->ok = 0;
        return 0;
    }
    return *c->p++;
}
/* A length-prefixed byte string, pointing into the buffer (not NUL-terminated); NULL when bad. */
static inline const uint8_t *hkt_get_bytes(struct hkt_cursor *c, size_t *len)
{
    uint64_t n = hkt_get_u(c);
    if (!c->ok || n > (uint64_t)(c->end - c->p)) {
        c->ok = 0;
        *len = 0;
        return NULL;
    }
    const uint8_t *s = c->p;
    c->p += n;
    *len = (size_t)n;
    return s;
}

/* Event kinds inside an EVENTS chunk. */
enum { HKT_EV_ALLOC = 1, HKT_EV_FREE = 2 };

#pragma GCC visibility pop
#endif
