/* Test helper: damages a good recording every way a crash or a bad disk can (every truncation, every single-bit
 * flip of bits 0 and 7 of every byte, a chunk dropped, doubled, bytes appended) and checks how the reader takes it;
 * then flips bits behind a recomputed checksum, so the payload decoders themselves meet garbage. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "../../trace/format.h"
#include "../../trace/trace.h"

/* What each damaged copy must read as. Chunk k is the chunk that the damage hits first. */
enum expect { OPEN_FAILS, CLEAN_END, DAMAGE_AT };

static uint8_t *orig;
static uint64_t orig_size;
static uint64_t *bounds; /* bounds[k]: where chunk k starts; bounds[nchunks] = the file size */
static size_t nchunks;
static uint64_t *hashes; /* of every record of the undamaged file, in order */
static size_t nrecords;
static size_t *before;   /* before[k]: records of chunks 0..k-1 */
static int orig_complete;

static char path[4096];
static int fd;
static unsigned failures;
static uint64_t cases;

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- A hash of everything a record says, to compare records of a damaged copy with the original's ---- */
static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

static uint64_t mix_str(uint64_t h, const char *s)
{
    uint64_t n = 0;
    for (; *s; s++, n++)
        h = mix(h, (unsigned char)*s);
    return mix(h, n);
}

static uint64_t record_hash(const struct hkt_record *r)
{
    uint64_t h = mix(mix(0, r->type), r->offset);
    switch (r->type) {
    case HKT_REC_HEADER: {
        const struct hkt_header *x = &r->u.header;
        uint64_t f[] = {(uint64_t)x->pid, (uint64_t)x->ppid, x->start_realtime_ns, x->start_mono_ns, x->start_tsc,
                        x->tsc_per_sec, x->sample_mode, x->sample_period, x->sample_seed, x->stack_depth,
                        x->snapshot_ms};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            h = mix(h, f[i]);
        h = mix_str(mix_str(mix_str(mix_str(mix_str(h, x->cmdline), x->exe), x->settings), x->build_id),
                    x->lib_path);
        break;
    }
    case HKT_REC_COUNTER_DEF: {
        const struct hkt_counter_def *x = &r->u.counter_def;
        h = mix(mix(mix(mix(h, x->index), x->first), x->width), x->kind);
        h = mix_str(mix_str(mix_str(h, x->name), x->group), x->meaning);
        break;
    }
    case HKT_REC_MODULE: {
        const struct hkt_module *x = &r->u.module;
        h = mix(mix(mix(mix(h, x->generation), x->base), x->lo), x->hi);
        h = mix_str(mix_str(h, x->path), x->build_id);
        break;
    }
    case HKT_REC_STACK:
        h = mix(mix(h, r->u.stack.id), r->u.stack.depth);
        for (uint32_t i = 0; i < r->u.stack.depth; i++)
            h = mix(h, r->u.stack.ips[i]);
        break;
    case HKT_REC_ALLOC: {
        const struct hkt_alloc *x = &r->u.alloc;
        h = mix(mix(mix(mix(mix(mix(mix(mix(h, x->tid), x->seq), x->tsc), x->addr), x->size), x->cls), x->stage),
                x->stack);
        break;
    }
    case HKT_REC_FREE: {
        const struct hkt_free *x = &r->u.free;
        uint64_t f[] = {x->tid, x->alloc_tid, x->alloc_seq, x->tsc, x->lifetime, x->addr, x->size, x->cls,
                        x->path, x->stack};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            h = mix(h, f[i]);
        break;
    }
    case HKT_REC_SNAPSHOT:
        h = mix(mix(mix(h, r->u.snapshot.tsc), r->u.snapshot.mono_ns), r->u.snapshot.nvalues);
        for (uint32_t i = 0; i < r->u.snapshot.nvalues; i++)
            h = mix(h, r->u.snapshot.values[i]);
        break;
    case HKT_REC_THREAD:
        h = mix(mix(mix(mix(h, r->u.thread.kind), r->u.thread.tid), (uint64_t)r->u.thread.os_tid), r->u.thread.tsc);
        h = mix_str(h, r->u.thread.name);
        break;
    case HKT_REC_LOST:
        h = mix(mix(h, r->u.lost.tid), r->u.lost.events);
        break;
    case HKT_REC_END: {
        const struct hkt_end *x = &r->u.end;
        uint64_t f[] = {x->tsc, x->mono_ns, x->realtime_ns, x->events, x->lost, x->reason, x->signo};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            h = mix(h, f[i]);
        break;
    }
    case HKT_REC_WINDOW:
        h = mix(mix(mix(h, r->u.window.tsc), r->u.window.mono_ns), r->u.window.open);
        break;
    case HKT_REC_ERROR: {
        const struct hkt_error *x = &r->u.error;
        uint64_t f[] = {x->kind, x->tid, x->tsc, x->addr, x->size, x->stack, x->alloc_stack, x->alloc_tid,
                        x->alloc_seq};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            h = mix(h, f[i]);
        break;
    }
    case HKT_REC_LEAK: {
        const struct hkt_leak *x = &r->u.leak;
        h = mix(mix(mix(mix(mix(h, x->stack), x->blocks), x->bytes), x->est_blocks), x->est_bytes);
        break;
    }
    }
    return h;
}

/* ---- Reading one copy ---- */
struct outcome {
    int opened, rc, complete;
    size_t records;
    size_t first_mismatch; /* index of the first record unlike the original's, or SIZE_MAX */
    char err[1024];
};

/* Reads the file at path to its end. The record guard: every record takes at least one byte of the file, so a
 * reader that returns more records than the file has bytes is not making progress. */
static void read_copy(uint64_t size, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    o->first_mismatch = SIZE_MAX;
    struct hkt_reader *r = hkt_open(path, o->err, sizeof o->err);
    if (!r)
        return;
    o->opened = 1;
    struct hkt_record rec;
    int rc, wrong = 0; /* what the reader did wrong, as the index of why[] in check() */
    while ((rc = hkt_next(r, &rec)) == 1) {
        size_t i = o->records++;
        if (o->first_mismatch == SIZE_MAX && (i >= nrecords || record_hash(&rec) != hashes[i]))
            o->first_mismatch = i;
        if (o->records > size + 1) {
            wrong = 2;
            break;
        }
        if (hkt_offset(r) > hkt_file_size(r))
            wrong = 3;
    }
    o->rc = wrong ? wrong : rc;
    /* An end is for good: the next calls say the same. */
    if (!wrong && (hkt_next(r, &rec) != rc || hkt_next(r, &rec) != rc))
        o->rc = 4;
    if (hkt_file_size(r) != size)
        o->rc = 5;
    o->complete = hkt_complete(r);
    snprintf(o->err, sizeof o->err, "%s", hkt_error(r));
    if (rc == 0 && o->err[0])
        o->rc = 6;
    hkt_close(r);
}

__attribute__((format(printf, 1, 2))) static void failed(const char *fmt, ...)
{
    if (++failures > 20)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hkt_fuzz: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Reads the copy now at path (size bytes) and checks it reads as expected: for CLEAN_END and DAMAGE_AT, exactly
 * the records of chunks 0..k-1 of the original, then a clean end short of complete, or damage reported at the
 * start of chunk k (at, when k is past the last chunk). */
static void check(const char *what, uint64_t size, enum expect want, size_t k, uint64_t at, const char *msg)
{
    struct outcome o;
    cases++;
    read_copy(size, &o);
    if (want == OPEN_FAILS) {
        if (o.opened)
            failed("%s: the file header is damaged, yet hkt_open took it", what);
        else if (!o.err[0] || !strstr(o.err, path) || strchr(o.err, '\n'))
            failed("%s: hkt_open's message does not name the file on one line: \"%s\"", what, o.err);
        return;
    }
    if (!o.opened) {
        failed("%s: hkt_open failed: %s", what, o.err);
        return;
    }
    if (o.rc > 1 || o.rc < -1) {
        static const char *const why[] = {"", "", "more records than the file has bytes (no progress)",
                                          "hkt_offset past the end of the file", "did not keep returning its end",
                                          "hkt_file_size is wrong", "a clean end with an error message"};
        failed("%s: %s", what, why[o.rc]);
        return;
    }
    size_t want_records = before[k];
    if (o.records != want_records || o.first_mismatch < o.records)
        failed("%s: %zu records (%zu expected, first differing: %zd)", what, o.records, want_records,
               o.first_mismatch == SIZE_MAX ? (ssize_t)-1 : (ssize_t)o.first_mismatch);
    if (o.complete && size < orig_size)
        failed("%s: reported complete", what);
    if (want == CLEAN_END) {
        if (o.rc != 0)
            failed("%s: damage reported at a chunk boundary: %s", what, o.err);
        return;
    }
    char where[4200];
    snprintf(where, sizeof where, "%s: byte %" PRIu64 ": ", path, at);
    if (o.rc != -1)
        failed("%s: damage went unnoticed (rc %d)", what, o.rc);
    else if (strncmp(o.err, where, strlen(where)) != 0 || strchr(o.err, '\n'))
        failed("%s: message \"%s\" should start \"%s\"", what, o.err, where);
    else if (msg && !strstr(o.err, msg))
        failed("%s: message \"%s\" should say \"%s\"", what, o.err, msg);
}

/* A chunk changed behind a good checksum may decode to other records, or be refused, perhaps only at a later chunk
 * it throws off. Held: every record before it as in the original; a clean end or damage reported no earlier than
 * the chunk; and when the damage is reported at the chunk itself, none of its records returned. */
static void check_disguised(const char *what, size_t k)
{
    struct outcome o;
    cases++;
    read_copy(orig_size, &o);
    if (!o.opened) {
        failed("%s: hkt_open failed: %s", what, o.err);
        return;
    }
    if (o.rc > 1 || o.rc < -1) {
        failed("%s: the read went wrong (hkt_fuzz check %d)", what, o.rc);
        return;
    }
    if (o.first_mismatch < before[k] || o.records < before[k])
        failed("%s: %zu records, first differing %zd: the %zu records before the chunk are not all kept", what,
               o.records, o.first_mismatch == SIZE_MAX ? (ssize_t)-1 : (ssize_t)o.first_mismatch, before[k]);
    if (o.rc == 0)
        return;
    char prefix[4200];
    int n = snprintf(prefix, sizeof prefix, "%s: byte ", path);
    uint64_t at = 0;
    if (strncmp(o.err, prefix, (size_t)n) != 0 || sscanf(o.err + n, "%" SCNu64 ":", &at) != 1 ||
        strchr(o.err, '\n'))
        failed("%s: message \"%s\" is not \"FILE: byte N: ...\"", what, o.err);
    else if (at < bounds[k])
        failed("%s: damage reported at byte %" PRIu64 ", before the changed chunk (%" PRIu64 ")", what, at, bounds[k]);
    else if (at == bounds[k] && o.records != before[k])
        failed("%s: %zu records returned from the chunk refused (%s)", what, o.records - before[k], o.err);
}

static void write_all(const void *p, uint64_t n)
{
    if (ftruncate(fd, 0) != 0 || pwrite(fd, p, n, 0) != (ssize_t)n) {
        fprintf(stderr, "hkt_fuzz: %s: %s\n", path, strerror(errno));
        exit(2);
    }
}

/* A recording read while it is written (hakprof top): the file holds its first cuts[0] bytes when opened, grows
 * to each next cut (hkt_refresh after the reader stopped), and at last to the whole original. Every record must
 * come exactly once and in order, and the reader must end as it ends on the whole file. */
static void check_growth(const char *what, const uint64_t *cuts, int ncuts)
{
    cases++;
    if (ftruncate(fd, 0) != 0 || pwrite(fd, orig, cuts[0], 0) != (ssize_t)cuts[0]) {
        fprintf(stderr, "hkt_fuzz: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    char err[1024];
    struct hkt_reader *r = hkt_open(path, err, sizeof err);
    if (!r) {
        failed("%s: open failed: %s", what, err);
        return;
    }
    struct hkt_record rec;
    size_t i = 0;
    int rc = 0;
    for (int step = 0; step <= ncuts; step++) {
        if (step > 0) {
            uint64_t from = cuts[step - 1], to = step < ncuts ? cuts[step] : orig_size;
            if (pwrite(fd, orig + from, to - from, (off_t)from) != (ssize_t)(to - from)) {
                fprintf(stderr, "hkt_fuzz: %s: %s\n", path, strerror(errno));
                exit(2);
            }
            int g = hkt_refresh(r);
            if (g != (to > from ? 1 : 0)) {
                failed("%s: refresh to %" PRIu64 " bytes returned %d (%s)", what, to, g, hkt_error(r));
                break;
            }
        }
        while ((rc = hkt_next(r, &rec)) == 1) {
            if (i >= nrecords || record_hash(&rec) != hashes[i]) {
                failed("%s: record %zu is not the original's", what, i);
                hkt_close(r);
                return;
            }
            i++;
        }
    }
    if (i != nrecords || rc != 0 || hkt_complete(r) != orig_complete)
        failed("%s: %zu of %zu records, end %d, complete %d (%s)", what, i, nrecords, rc, hkt_complete(r),
               hkt_error(r));
    hkt_close(r);
}

/* The chunk holding byte off (nchunks for the file header's bytes, which belong to none). */
static size_t chunk_of(uint64_t off)
{
    size_t lo = 0, hi = nchunks;
    if (off < bounds[0])
        return nchunks;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (bounds[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Reads the original through the reader: it must read to a clean end; its records are what copies are held to. */
static int load_original(const char *file)
{
    FILE *f = fopen(file, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "hkt_fuzz: %s: %s\n", file, strerror(errno));
        return -1;
    }
    orig_size = (uint64_t)st.st_size;
    orig = malloc(orig_size + 1);
    if (!orig || fread(orig, 1, orig_size, f) != orig_size) {
        fprintf(stderr, "hkt_fuzz: %s: cannot read\n", file);
        return -1;
    }
    fclose(f);
    if (orig_size < 16) {
        fprintf(stderr, "hkt_fuzz: %s: too short to be a recording\n", file);
        return -1;
    }
    /* Chunk bounds, walked here independently of the reader. */
    bounds = malloc((orig_size / 16 + 2) * sizeof *bounds);
    uint64_t off = 16;
    while (off + 16 <= orig_size) {
        bounds[nchunks++] = off;
        off += 16 + (uint64_t)le32(orig + off + 4);
    }
    bounds[nchunks] = off;
    if (off != orig_size) {
        fprintf(stderr, "hkt_fuzz: %s: chunks do not end at the end of the file (%" PRIu64 " vs %" PRIu64 ")\n",
                file, off, orig_size);
        return -1;
    }
    char err[1024];
    struct hkt_reader *r = hkt_open(file, err, sizeof err);
    if (!r) {
        fprintf(stderr, "hkt_fuzz: %s\n", err);
        return -1;
    }
    hashes = malloc((orig_size + 1) * sizeof *hashes);
    before = calloc(nchunks + 2, sizeof *before);
    struct hkt_record rec;
    int rc = 2, have_header_record = 0; /* 2: the record guard stopped the loop */
    while (nrecords <= orig_size && (rc = hkt_next(r, &rec)) == 1) {
        hashes[nrecords++] = record_hash(&rec);
        have_header_record |= rec.type == HKT_REC_HEADER;
        size_t k = chunk_of(rec.offset);
        if (k >= nchunks || bounds[k] != rec.offset) {
            fprintf(stderr, "hkt_fuzz: %s: a record's offset %" PRIu64 " is no chunk's start\n", file, rec.offset);
            return -1;
        }
        before[k + 1] = nrecords;
    }
    for (size_t k = 1; k <= nchunks; k++) /* chunks without records (unknown types, empty batches) */
        if (before[k] < before[k - 1])
            before[k] = before[k - 1];
    if (rc != 0) {
        fprintf(stderr, "hkt_fuzz: %s: the original does not read cleanly: %s\n", file, hkt_error(r));
        return -1;
    }
    if (!hkt_header_of(r) != !have_header_record) {
        fprintf(stderr, "hkt_fuzz: %s: hkt_header_of disagrees with the records\n", file);
        return -1;
    }
    orig_complete = hkt_complete(r);
    hkt_close(r);
    return 0;
}

/* ---- hkt_fuzz --crc: the reader's and writer's CRC-32C against a bit-at-a-time reference ---- */
static uint32_t crc_reference(uint32_t crc, const uint8_t *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return ~crc;
}

/* Every length up to past several interleaved stripes, at every alignment of the start, whole and split in two
 * (a chunk's CRC is taken over its head, then its payload), and the standard check value. */
static int crc_check(void)
{
    enum { MAX = 4 * 768 + 40 };
    static uint8_t buf[MAX + 8];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof buf; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    unsigned bad = 0;
    if (hkt_crc32c(0, "123456789", 9) != 0xe3069283u) {
        fprintf(stderr, "hkt_fuzz --crc: CRC-32C of \"123456789\" is %08x, not e3069283\n",
                hkt_crc32c(0, "123456789", 9));
        bad++;
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len <= MAX; len += off ? 37 : 1) {
            uint32_t want = crc_reference(0, buf + off, len), got = hkt_crc32c(0, buf + off, len);
            uint32_t split = hkt_crc32c(hkt_crc32c(0, buf + off, len / 3), buf + off + len / 3, len - len / 3);
            if (got != want || split != want) {
                if (bad++ < 5)
                    fprintf(stderr, "hkt_fuzz --crc: %zu bytes at offset %zu: %08x (split %08x), want %08x\n", len, off,
                            got, split, want);
            }
        }
    printf("hkt_fuzz --crc: %s\n", bad ? "MISMATCH" : "every length and alignment matches the reference");
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--crc"))
        return crc_check();
    if (argc != 2) {
        fprintf(stderr, "usage: hkt_fuzz RECORDING | hkt_fuzz --crc\n");
        return 2;
    }
    if (load_original(argv[1]) != 0)
        return 1;
    const char *tmp = getenv("TMPDIR");
    char dir[4000];
    snprintf(dir, sizeof dir, "%s/hkt_fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "hkt_fuzz: mkdtemp: %s\n", strerror(errno));
        return 2;
    }
    snprintf(path, sizeof path, "%s/copy.hkp", dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "hkt_fuzz: %s: %s\n", path, strerror(errno));
        return 2;
    }
    double t0 = now();
    char what[128];

    /* Every truncation, longest first, cutting the one copy shorter each time. */
    write_all(orig, orig_size);
    for (uint64_t len = orig_size; len-- > 0;) {
        if (ftruncate(fd, (off_t)len) != 0) {
            perror("ftruncate");
            return 2;
        }
        snprintf(what, sizeof what, "cut to %" PRIu64 " bytes", len);
        if (len < 16) {
            check(what, len, OPEN_FAILS, 0, 0, NULL);
            continue;
        }
        size_t k = chunk_of(len); /* the first chunk not wholly kept */
        if (bounds[k] == len)
            check(what, len, CLEAN_END, k, 0, NULL);
        else
            check(what, len, DAMAGE_AT, k, bounds[k], "truncated");
    }
    double t1 = now();

    /* Every byte with its lowest and its highest bit flipped: the file header's flips are refused outright, a
     * chunk's are caught by its checksum (or its length check) before any of its records. */
    write_all(orig, orig_size);
    for (uint64_t off = 0; off < orig_size; off++) {
        for (int bit = 0; bit < 8; bit += 7) {
            uint8_t b = orig[off] ^ (uint8_t)(1u << bit);
            if (pwrite(fd, &b, 1, (off_t)off) != 1) {
                perror("pwrite");
                return 2;
            }
            snprintf(what, sizeof what, "bit %d of byte %" PRIu64 " flipped", bit, off);
            size_t k = chunk_of(off);
            if (k == nchunks)
                check(what, orig_size, OPEN_FAILS, 0, 0, NULL);
            else
                check(what, orig_size, DAMAGE_AT, k, bounds[k], NULL);
        }
        if (pwrite(fd, &orig[off], 1, (off_t)off) != 1) {
            perror("pwrite");
            return 2;
        }
    }
    double t2 = now();

    /* The same flips in the chunks' type, len, seq and payload, with the checksum made right again: the decoders
     * see garbage that passed the CRC (what a writer bug would produce). */
    uint8_t *work = malloc(orig_size);
    memcpy(work, orig, orig_size);
    for (size_t k = 0; k < nchunks; k++) {
        uint64_t start = bounds[k], end = bounds[k + 1];
        for (uint64_t off = start; off < end; off++) {
            if (off >= start + 12 && off < start + 16)
                continue; /* the checksum itself */
            for (int bit = 0; bit < 8; bit += 7) {
                work[off] ^= (uint8_t)(1u << bit);
                struct hkt_chunk_head h = {le32(work + start), le32(work + start + 4), le32(work + start + 8), 0};
                /* A length now past the end of the file cannot be summed: that copy is just cut short. */
                if (h.len <= orig_size - start - 16) {
                    uint32_t crc = hkt_chunk_crc(&h, work + start + 16);
                    for (int i = 0; i < 4; i++)
                        work[start + 12 + i] = (uint8_t)(crc >> (8 * i));
                }
                if (pwrite(fd, work + start, 16, (off_t)start) != 16 ||
                    pwrite(fd, work + off, 1, (off_t)off) != 1) {
                    perror("pwrite");
                    return 2;
                }
                snprintf(what, sizeof what, "bit %d of byte %" PRIu64 " flipped behind a good checksum", bit, off);
                check_disguised(what, k);
                memcpy(work + start, orig + start, 16);
                work[off] = orig[off];
                if (pwrite(fd, orig + start, 16, (off_t)start) != 16 ||
                    pwrite(fd, orig + off, 1, (off_t)off) != 1) {
                    perror("pwrite");
                    return 2;
                }
            }
        }
    }
    free(work);
    double t3 = now();

    /* Chunks lost or written twice: the sequence numbers say so at the chunk after the gap. */
    uint8_t *copy = malloc(orig_size * 2 + 64);
    for (size_t k = 0; k < nchunks; k++) {
        uint64_t a = bounds[k], b = bounds[k + 1];
        memcpy(copy, orig, a);
        memcpy(copy + a, orig + b, orig_size - b);
        write_all(copy, orig_size - (b - a));
        snprintf(what, sizeof what, "chunk %zu dropped", k);
        if (k + 1 == nchunks)
            check(what, orig_size - (b - a), CLEAN_END, k, 0, NULL);
        else
            check(what, orig_size - (b - a), DAMAGE_AT, k, a, "chunk seq");
        memcpy(copy, orig, b);
        memcpy(copy + b, orig + a, orig_size - a);
        write_all(copy, orig_size + (b - a));
        snprintf(what, sizeof what, "chunk %zu doubled", k);
        int end_doubled = orig_complete && k + 1 == nchunks;
        check(what, orig_size + (b - a), DAMAGE_AT, k + 1, b, end_doubled ? "data after the END chunk" : "chunk seq");
    }
    /* Bytes after the end: after an END they are damage of their own; else a chunk cut short. */
    memcpy(copy, orig, orig_size);
    memset(copy + orig_size, 0, 64);
    for (uint64_t extra = 1; extra <= 32; extra += 31) {
        write_all(copy, orig_size + extra);
        snprintf(what, sizeof what, "%" PRIu64 " zero bytes appended", extra);
        /* before[nchunks] is every record: nothing of the original is lost. */
        check(what, orig_size + extra, DAMAGE_AT, nchunks, orig_size,
              orig_complete ? "data after the END chunk" : extra < 16 ? "truncated chunk head" : NULL);
    }
    double t4 = now();

    /* Growing: from every cut in the first 2 KiB (the header and the first chunks), then from 2000 cuts spread
     * over the rest, in one step and in two. */
    uint64_t stride = orig_size / 2000 + 1;
    for (uint64_t cut = 16; cut < orig_size; cut += cut < 2048 ? 1 : stride) {
        uint64_t one[1] = {cut}, two[2] = {cut, cut + (orig_size - cut) / 2};
        snprintf(what, sizeof what, "grown from %" PRIu64 " bytes", cut);
        check_growth(what, one, 1);
        snprintf(what, sizeof what, "grown from %" PRIu64 " bytes in two steps", cut);
        check_growth(what, two, 2);
    }
    double t5 = now();

    close(fd);
    unlink(path);
    rmdir(dir);
    printf("hkt_fuzz: %s: %" PRIu64 " bytes, %zu chunks, %zu records%s; %" PRIu64
           " damaged or growing copies read (cuts %.2fs, bit flips %.2fs, behind good checksums %.2fs, chunk order "
           "%.2fs, growth %.2fs); %u failed\n",
           argv[1], orig_size, nchunks, nrecords, orig_complete ? ", complete" : "", cases, t1 - t0, t2 - t1,
           t3 - t2, t4 - t3, t5 - t4, failures);
    free(copy);
    free(orig);
    free(bounds);
    free(hashes);
    free(before);
    return failures ? 1 : 0;
}
