/* The reader side of the stats segment: map another process's segment read-only, check it is a segment of this
 * build's counter list and of a live process, and sum it consistently. Also used in-process by the prof build. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "counters.h"

const char *hkc_proc_stat(int pid, char *buf, size_t len)
{
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = 0;
    /* The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'. */
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p + 2 : NULL;
}

const char *hkc_stat_field(const char *p, int field)
{
    for (int f = 3; p && f < field; f++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    return p;
}

uint64_t hkc_proc_start_ticks(int pid)
{
    char buf[1024];
    const char *p = hkc_stat_field(hkc_proc_stat(pid, buf, sizeof buf), 22);
    return p ? strtoull(p, NULL, 10) : 0;
}

int hkc_sum_blocks(const struct hkc_seg_header *hdr, const uint64_t *blocks, uint64_t *out)
{
    const uint64_t *gauges = blocks + (size_t)HKC_BLOCK_GAUGES * HKC_NVALUES;
    const uint64_t *retired = blocks + (size_t)HKC_BLOCK_RETIRED * HKC_NVALUES;
    const uint64_t *shared = blocks + (size_t)HKC_BLOCK_SHARED * HKC_NVALUES;
    for (int attempt = 0; attempt < 10000; attempt++) {
        uint64_t s1 = atomic_load_explicit(&((struct hkc_seg_header *)hdr)->seq, memory_order_acquire);
        if (s1 & 1) {
            sched_yield();
            continue;
        }
        for (unsigned j = 0; j < HKC_NVALUES; j++)
            out[j] = __atomic_load_n(&retired[j], __ATOMIC_RELAXED) + __atomic_load_n(&shared[j], __ATOMIC_RELAXED);
        for (unsigned i = 0; i < hdr->nslots && i < HKC_SEG_SLOTS; i++) {
            if (!atomic_load_explicit(&((struct hkc_seg_header *)hdr)->slot_state[i], memory_order_relaxed))
                continue;
            const uint64_t *slot = blocks + (size_t)(HKC_BLOCK_SLOTS + i) * HKC_NVALUES;
            for (unsigned j = 0; j < HKC_NVALUES; j++)
                out[j] += __atomic_load_n(&slot[j], __ATOMIC_RELAXED);
        }
        for (unsigned c = 0; c < HKC_NCOUNTERS; c++)
            if (hkc_defs[c].kind == HKC_GAUGE)
                out[hkc_defs[c].first] = __atomic_load_n(&gauges[hkc_defs[c].first], __ATOMIC_RELAXED);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&((struct hkc_seg_header *)hdr)->seq, memory_order_relaxed) == s1) {
            hkc_derive(out);
            return 0;
        }
    }
    return -1;
}

enum hkc_open_status hkc_open(struct hkc_reader *r, int pid, const char *dir, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->pid = pid;
    if (!dir)
        dir = getenv("HAKMEM_STATS_DIR");
    if (!dir || !*dir)
        dir = "/dev/shm";
    snprintf(r->path, sizeof r->path, "%s/hakmem-%d.stats", dir, pid);
    int fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (kill(pid, 0) != 0 && errno == ESRCH)
            snprintf(err, errlen, "no process %d", pid);
        else
            snprintf(err, errlen,
                     "process %d publishes no hakmem counters (%s not found): is it running under "
                     "libhakmem_prof.so with HAKMEM_STATS on?",
                     pid, r->path);
        return HKC_NO_SEGMENT;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(struct hkc_seg_header)) {
        close(fd);
        snprintf(err, errlen, "%s: too small to be a hakmem stats segment", r->path);
        return HKC_BAD_SEGMENT;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "%s: cannot map: %s", r->path, strerror(errno));
        return HKC_BAD_SEGMENT;
    }
    r->hdr = m;
    r->map_size = (size_t)st.st_size;
    const struct hkc_seg_header *h = r->hdr;
    if (memcmp(h->magic, HKC_SEG_MAGIC, 8) != 0 || h->version != HKC_SEG_VERSION) {
        snprintf(err, errlen, "%s: not a hakmem stats segment of version %d", r->path, HKC_SEG_VERSION);
        hkc_close(r);
        return HKC_BAD_SEGMENT;
    }
    if (h->nvalues != HKC_NVALUES || h->defs_hash != hkc_defs_hash() ||
        h->header_size + (size_t)(HKC_BLOCK_SLOTS + h->nslots) * h->nvalues * 8 > r->map_size ||
        h->nslots > HKC_SEG_SLOTS) {
        snprintf(err, errlen, "%s: written by a hakmem build with other counters; use the matching hakprof",
                 r->path);
        hkc_close(r);
        return HKC_BAD_SEGMENT;
    }
    r->blocks = (const uint64_t *)((const char *)m + h->header_size);
    if (hkc_is_stale(r)) {
        snprintf(err, errlen, "%s: stale segment: process %d has exited", r->path, pid);
        return HKC_STALE;
    }
    return HKC_OK;
}

int hkc_is_stale(const struct hkc_reader *r)
{
    if (!r->hdr)
        return 1;
    if (r->hdr->exited)
        return 1;
    if (kill(r->pid, 0) != 0 && errno == ESRCH)
        return 1;
    uint64_t ticks = hkc_proc_start_ticks(r->pid);
    return ticks != 0 && r->hdr->start_ticks != 0 && ticks != r->hdr->start_ticks;
}

int hkc_read(const struct hkc_reader *r, uint64_t *out)
{
    return hkc_sum_blocks(r->hdr, r->blocks, out);
}

void hkc_close(struct hkc_reader *r)
{
    if (r->hdr)
        munmap((void *)r->hdr, r->map_size);
    r->hdr = NULL;
    r->blocks = NULL;
}
