/* The recording's lifetime inside libhakmem_prof.so: configuration and sampling decisions, the file and its
 * lock, the header, counter list and module map, the writer thread (drains rings, takes snapshots), and the
 * endings: normal exit, fatal signal, fork. Nothing here calls malloc; buffers come from mmap. */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <math.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>
#include "writer.h"
#include "../counters/counters.h"

__thread struct hkt_tls hkt_tls __attribute__((tls_model("initial-exec")));
int hkt_recording;
_Atomic uint64_t hkt_events_written;
_Atomic uint64_t hkt_events_lost;

extern char **environ;

static struct hkt_config cfg;
static unsigned sample_mode;
static uint64_t sample_period;
static int configured;

static int fd = -1;
static dev_t fd_dev;        /* what fd was opened on: the program may close it and reuse the number */
static ino_t fd_ino;
static off_t fd_off;        /* bytes written so far: a failed write is cut back to here */
static uint32_t chunk_seq;
static pid_t recording_pid; /* the process that opened the file */
static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *scratch;
static uint64_t snapshot_values[HKC_NVALUES];
static char path[4096];
static uint64_t tsc_per_sec;

/* libhakmem_prof.so itself: its address range (frames to skip), path and build id. */
static uintptr_t self_lo, self_hi;
static char self_path[1024];
static char self_build_id[64];

static pthread_mutex_t module_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long seen_adds = ~0ull, seen_subs = ~0ull;
static uint32_t module_generation;
static uint8_t *module_buf; /* module_lock */

static pthread_t writer;
static int writer_running;
static int writer_stop;
static pthread_mutex_t writer_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t writer_cond;

/* ---- small helpers that do not allocate ---- */
void *hkt_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
uint64_t hkt_now_tsc(void)
{
    return __rdtsc();
}
unsigned hkt_stack_depth(void)
{
    return cfg.stack_depth;
}
static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
static char *put_dec(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while (v /= 10);
    while (n)
        *p++ = tmp[--n];
    return p;
}
static char *put_cstr(char *p, const char *end, const char *s)
{
    while (*s && p < end)
        *p++ = *s++;
    return p;
}
/* One line to stderr: "hakmem: " + the parts. */
static void say(const char *a, const char *b, const char *c)
{
    char line[1024], *p = line, *end = line + sizeof line - 1;
    p = put_cstr(p, end, "hakmem: ");
    p = put_cstr(p, end, a);
    p = put_cstr(p, end, b ? b : "");
    p = put_cstr(p, end, c ? c : "");
    *p++ = '\n';
    ssize_t r = write(2, line, (size_t)(p - line));
    (void)r;
}

/* ---- configuration and sampling ---- */
int hkt_parse_sample(const char *spec, unsigned *mode, uint64_t *period)
{
    if (!spec || !*spec || !strcmp(spec, "off")) {
        *mode = HKT_SAMPLE_OFF;
        *period = 0;
        return 0;
    }
    if (!strcmp(spec, "all")) {
        *mode = HKT_SAMPLE_ALL;
        *period = 1;
        return 0;
    }
    unsigned m;
    const char *v;
    if (!strncmp(spec, "count:", 6)) {
        m = HKT_SAMPLE_COUNT;
        v = spec + 6;
    } else if (!strncmp(spec, "bytes:", 6)) {
        m = HKT_SAMPLE_BYTES;
        v = spec + 6;
    } else {
        return -1;
    }
    uint64_t x = 0;
    const char *c = v;
    for (; *c >= '0' && *c <= '9'; c++) {
        if (x > (UINT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (uint64_t)(*c - '0');
    }
    if (c == v)
        return -1;
    unsigned shift = 0;
    if (*c == 'k' || *c == 'K')
        shift = 10;
    else if (*c == 'm' || *c == 'M')
        shift = 20;
    else if (*c == 'g' || *c == 'G')
        shift = 30;
    if (shift)
        c++;
    if (*c || x == 0 || x > (UINT64_MAX >> 31))
        return -1;
    x <<= shift;
    *mode = m == HKT_SAMPLE_COUNT && x == 1 ? HKT_SAMPLE_ALL : m;
    *period = x;
    return 0;
}

unsigned hkt_sample_mode(void)
{
    return sample_mode;
}

void hkt_configure(const struct hkt_config *c)
{
    cfg = *c;
    if (!cfg.stack_depth || cfg.stack_depth > HKT_MAX_STACK_DEPTH)
        cfg.stack_depth = HKT_DEFAULT_STACK_DEPTH;
    if (!cfg.snapshot_ms)
        cfg.snapshot_ms = HKT_DEFAULT_SNAPSHOT_MS;
    const char *spec = cfg.sample ? cfg.sample : HKT_DEFAULT_SAMPLE;
    if (hkt_parse_sample(spec, &sample_mode, &sample_period) < 0) {
        say("HAKMEM_SAMPLE=", spec, " is not off, all, count:N or bytes:N[k|m|g]; using " HKT_DEFAULT_SAMPLE);
        hkt_parse_sample(HKT_DEFAULT_SAMPLE, &sample_mode, &sample_period);
    }
    configured = 1;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* How many blocks of the program one sample of size bytes stands for: N for count:N, 1/(1 - exp(-size/N)) for
 * bytes:N (the probability it was sampled), 1 for all. */
double hkt_sample_weight(uint64_t size)
{
    if (sample_mode == HKT_SAMPLE_COUNT)
        return (double)sample_period;
    if (sample_mode == HKT_SAMPLE_BYTES) {
        double p = -expm1(-(double)size / (double)sample_period);
        return p > 0 ? 1.0 / p : 1.0;
    }
    return 1.0;
}

/* Bytes to the next sample of a Poisson process with one sample per sample_period bytes on average. */
static int64_t next_interval(struct hkt_tls *t)
{
    switch (sample_mode) {
    case HKT_SAMPLE_COUNT:
        return (int64_t)sample_period - 1;
    case HKT_SAMPLE_BYTES: {
        double u = (double)((rng_next(&t->rng) >> 11) + 1) * 0x1p-53; /* (0, 1] */
        double v = -log(u) * (double)sample_period;
        return v >= 0x1p62 ? INT64_MAX / 2 : (int64_t)v;
    }
    default:
        return 0;
    }
}

/* The recording window: HAKMEM_RECORD_SIGNAL flips it (the handler only flips this flag); the writer thread
 * notices and writes a WINDOW chunk. While closed, nothing is sampled and no snapshot is taken; frees of blocks
 * sampled while it was open are still recorded. */
_Atomic int hkt_window_closed;
static int window_closed_written;

int hkt_sample_decide(size_t size, uint32_t tid, int64_t *left)
{
    struct hkt_tls *t = &hkt_tls;
    if (!hkt_recording || sample_mode == HKT_SAMPLE_OFF || t->dead) {
        *left = INT64_MAX / 2;
        return 0;
    }
    switch (sample_mode) {
    case HKT_SAMPLE_ALL:
        *left = 0;
        break;
    case HKT_SAMPLE_COUNT:
        /* Every Nth allocation of the thread, its first included. */
        *left = 0;
        if (t->count++ % sample_period)
            return 0;
        break;
    default:
        if (!t->rng) {
            /* The sampler is seeded by HAKMEM_SAMPLE_SEED and the thread's number, so two runs of one program
             * sample the same allocations of each thread. Until the thread has a number, decide next time. */
            if (!tid) {
                *left = 0;
                return 0;
            }
            uint64_t z = (cfg.sample_seed + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)tid * 0xbf58476d1ce4e5b9ull;
            z ^= z >> 31;
            t->rng = z ? z : 1;
            *left = next_interval(t) - (int64_t)size;
            if (*left >= 0)
                return 0;
        }
        *left = next_interval(t);
        break;
    }
    /* A closed window samples nothing, but the countdown runs on, so its edges stay unbiased. */
    if (atomic_load_explicit(&hkt_window_closed, memory_order_relaxed))
        return 0;
    return !t->busy; /* the tracer's own allocations are never sampled */
}

/* ---- the file ---- */
void hkt_file_lock(void)
{
    pthread_mutex_lock(&file_lock);
}
void hkt_file_unlock(void)
{
    pthread_mutex_unlock(&file_lock);
}
uint8_t *hkt_scratch_locked(void)
{
    return scratch;
}

/* Stops the recording after a failed or refused write; the descriptor is closed only if it is still ours. */
static void stop_writing(const char *why, int ours)
{
    say("cannot write the recording ", path, why);
    if (ours)
        close(fd);
    fd = -1;
    hkt_recording = 0;
}

/* Head and payload in one writev, so a chunk is never split by another process's write and a crash cuts at
 * most the chunk being written. Before writing: the descriptor must still be the recording (a program that closes
 * every descriptor and opens a file of its own gets that number; a daemon's close loop, dup2 over it), this must
 * be the process that opened it (a child made by _Fork or clone, without the fork handlers, shares it), and the
 * chunk must fit under RLIMIT_FSIZE (past it the kernel would kill the program with SIGXFSZ). A failed write
 * (disk full) is cut back to the last whole chunk, so what is in the file stays valid. */
static uint8_t *pending; /* chunks gathered for one write (below) */

/* Of the first `written` bytes of a run of whole chunks, how many form whole chunks. */
static size_t whole_chunks(const uint8_t *b, size_t written)
{
    size_t off = 0;
    while (off + sizeof(struct hkt_chunk_head) <= written) {
        struct hkt_chunk_head h;
        memcpy(&h, b + off, sizeof h);
        size_t next = off + sizeof h + h.len;
        if (next > written)
            break;
        off = next;
    }
    return off;
}

static void write_chunk_bytes(const void *head, size_t hl, const void *payload, size_t len)
{
    if (fd < 0)
        return;
    struct stat st;
    if (getpid() != recording_pid) {
        fd = -1; /* the parent's: not closed, not written */
        hkt_recording = 0;
        return;
    }
    if (fstat(fd, &st) != 0 || st.st_dev != fd_dev || st.st_ino != fd_ino) {
        stop_writing(": the program closed or replaced its file descriptor; recording stopped", 0);
        return;
    }
    struct rlimit fsize;
    if (getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY &&
        (uint64_t)fd_off + hl + len > (uint64_t)fsize.rlim_cur) {
        stop_writing(": the file size limit (ulimit -f) is reached; recording stopped", 1);
        return;
    }
    off_t start = fd_off;
    struct iovec iov[2] = {{(void *)head, hl}, {(void *)payload, len}};
    int i = 0;
    while (i < 2) {
        ssize_t n = writev(fd, &iov[i], 2 - i);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : ENOSPC;
            /* keep the whole chunks of a gathered run that made it; cut the one half written */
            off_t keep = start;
            if (head == pending && !payload)
                keep += (off_t)whole_chunks(head, (size_t)(fd_off - start));
            if (ftruncate(fd, keep) == 0)
                fd_off = keep;
            stop_writing(e == ENOSPC   ? ": no space left on the device; recording stopped"
                         : e == EDQUOT ? ": disk quota exceeded; recording stopped"
                         : e == EFBIG  ? ": file too large; recording stopped"
                                       : ": write failed; recording stopped",
                         1);
            return;
        }
        fd_off += n;
        size_t left = (size_t)n;
        while (i < 2 && left >= iov[i].iov_len)
            left -= iov[i++].iov_len;
        if (i < 2) {
            iov[i].iov_base = (char *)iov[i].iov_base + left;
            iov[i].iov_len -= left;
        }
    }
}

/* Chunks are gathered in a buffer and written together: a thread's start and exit, or a short-lived thread's
 * events, then cost a memcpy instead of a system call each. The writer thread empties it every cycle, so a
 * killed process loses at most that much more; a chunk that does not fit goes out directly, after the buffer. */
#define PENDING_BYTES (256u << 10)
static size_t pending_len;

static void flush_pending_locked(void)
{
    if (pending_len && fd >= 0)
        write_chunk_bytes(pending, pending_len, NULL, 0);
    pending_len = 0;
}

void hkt_write_chunk_locked(uint32_t type, const void *payload, size_t len)
{
    if (fd < 0)
        return;
    struct hkt_chunk_head h = {.type = type, .len = (uint32_t)len, .seq = chunk_seq++};
    h.crc = hkt_chunk_crc(&h, payload);
    if (pending && sizeof h + len <= PENDING_BYTES) {
        if (pending_len + sizeof h + len > PENDING_BYTES)
            flush_pending_locked();
        memcpy(pending + pending_len, &h, sizeof h);
        memcpy(pending + pending_len + sizeof h, payload, len);
        pending_len += sizeof h + len;
        return;
    }
    flush_pending_locked();
    write_chunk_bytes(&h, sizeof h, payload, len);
}

static void flush_pending(void)
{
    hkt_file_lock();
    flush_pending_locked();
    hkt_file_unlock();
}

/* ---- the module map ---- */
static void hex(char *out, const uint8_t *b, size_t n, size_t room)
{
    static const char digits[] = "0123456789abcdef";
    size_t i = 0;
    for (; i < n && 2 * i + 2 < room; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * i] = 0;
}

static void build_id_of(const struct dl_phdr_info *info, char *out, size_t room)
{
    out[0] = 0;
    for (unsigned i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
            const uint8_t *name = p + sizeof *n, *desc = name + ((n->n_namesz + 3) & ~3u);
            if (desc + n->n_descsz > end)
                break;
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && !memcmp(name, "GNU", 4)) {
                hex(out, desc, n->n_descsz, room);
                return;
            }
            p = desc + ((n->n_descsz + 3) & ~3u);
        }
    }
}

static void range_of(const struct dl_phdr_info *info, uint64_t *lo, uint64_t *hi)
{
    *lo = UINT64_MAX;
    *hi = 0;
    for (unsigned i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uint64_t a = info->dlpi_addr + ph->p_vaddr, b = a + ph->p_memsz;
        if (a < *lo)
            *lo = a;
        if (b > *hi)
            *hi = b;
    }
}

static int find_self(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    uint64_t lo, hi, me = (uint64_t)(uintptr_t)data;
    range_of(info, &lo, &hi);
    if (me < lo || me >= hi)
        return 0;
    self_lo = lo;
    self_hi = hi;
    size_t n = strlen(info->dlpi_name);
    if (n >= sizeof self_path)
        n = sizeof self_path - 1;
    memcpy(self_path, info->dlpi_name, n);
    self_path[n] = 0;
    build_id_of(info, self_build_id, sizeof self_build_id);
    return 1;
}

struct module_walk {
    uint8_t *p, *end;
    uint32_t count;
    unsigned long long adds, subs;
};
static int add_module(struct dl_phdr_info *info, size_t size, void *data)
{
    struct module_walk *w = data;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        w->adds = info->dlpi_adds;
        w->subs = info->dlpi_subs;
    }
    uint64_t lo, hi;
    range_of(info, &lo, &hi);
    if (lo >= hi)
        return 0;
    size_t n = strlen(info->dlpi_name);
    if ((size_t)(w->end - w->p) < n + 200)
        return 1; /* out of room: the map is cut here (thousands of modules) */
    char id[64];
    build_id_of(info, id, sizeof id);
    w->p = hkt_put_u(w->p, info->dlpi_addr);
    w->p = hkt_put_u(w->p, lo);
    w->p = hkt_put_u(w->p, hi);
    w->p = hkt_put_bytes(w->p, info->dlpi_name, n);
    w->p = hkt_put_str(w->p, id);
    w->count++;
    return 0;
}

/* Writes a MODULES chunk if the map changed since the last one (or force). The walk runs without the file lock:
 * dl_iterate_phdr takes the loader's lock, which a thread inside dlopen holds while it may allocate. */
static void modules_refresh(int force)
{
    pthread_mutex_lock(&module_lock);
    struct module_walk w = {.p = module_buf + 2 * HKT_VARINT_MAX, .end = module_buf + HKT_SCRATCH / 2};
    dl_iterate_phdr(add_module, &w);
    if (force || w.adds != seen_adds || w.subs != seen_subs) {
        seen_adds = w.adds;
        seen_subs = w.subs;
        uint8_t head[2 * HKT_VARINT_MAX], *h = head;
        h = hkt_put_u(h, ++module_generation);
        h = hkt_put_u(h, w.count);
        size_t hl = (size_t)(h - head);
        uint8_t *start = module_buf + 2 * HKT_VARINT_MAX - hl;
        memcpy(start, head, hl);
        hkt_file_lock();
        hkt_write_chunk_locked(HKT_CHUNK_MODULES, start, (size_t)(w.p - start));
        hkt_file_unlock();
    }
    pthread_mutex_unlock(&module_lock);
}

/* ---- header, counter list, snapshots, thread events, end ---- */
static uint8_t *put_file(uint8_t *p, const char *file, size_t room, int nul_to_space)
{
    int f = open(file, O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;
    char buf[4096];
    if (f >= 0) {
        n = read(f, buf, sizeof buf < room ? sizeof buf : room);
        close(f);
    }
    if (n < 0)
        n = 0;
    while (n > 0 && buf[n - 1] == 0)
        n--;
    if (nul_to_space)
        for (ssize_t i = 0; i < n; i++)
            if (!buf[i])
                buf[i] = ' ';
    return hkt_put_bytes(p, buf, (size_t)n);
}

static void write_header_locked(void)
{
    uint8_t *p = scratch + 16; /* room for the chunk head */
    uint8_t *start = p;
    p = hkt_put_s(p, getpid());
    p = hkt_put_s(p, getppid());
    p = hkt_put_u(p, clock_ns(CLOCK_REALTIME));
    p = hkt_put_u(p, clock_ns(CLOCK_MONOTONIC));
    p = hkt_put_u(p, __rdtsc());
    p = hkt_put_u(p, tsc_per_sec);
    p = hkt_put_u(p, sample_mode);
    p = hkt_put_u(p, sample_period);
    p = hkt_put_u(p, cfg.sample_seed);
    p = hkt_put_u(p, cfg.stack_depth);
    p = hkt_put_u(p, cfg.snapshot_ms);
    p = put_file(p, "/proc/self/cmdline", 4096, 1);
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    p = hkt_put_bytes(p, exe, n > 0 ? (size_t)n : 0);
    /* The HAKMEM_* environment, one NAME=value per line. */
    uint8_t *len_at = p;
    p += 3; /* a 3-byte varint length, patched below (settings stay under 2 MiB) */
    uint8_t *s0 = p;
    for (char **e = environ; e && *e; e++)
        if (!strncmp(*e, "HAKMEM_", 7) && (size_t)(p - s0) < 65536) {
            size_t l = strlen(*e);
            memcpy(p, *e, l);
            p += l;
            *p++ = '\n';
        }
    size_t sl = (size_t)(p - s0);
    len_at[0] = (uint8_t)(sl | 0x80);
    len_at[1] = (uint8_t)((sl >> 7) | 0x80);
    len_at[2] = (uint8_t)(sl >> 14);
    p = hkt_put_str(p, self_build_id);
    p = hkt_put_str(p, self_path);
    hkt_write_chunk_locked(HKT_CHUNK_HEADER, start, (size_t)(p - start));
}

static void write_counter_defs_locked(void)
{
    uint8_t *p = scratch + 16, *start = p;
    p = hkt_put_u(p, HKC_NCOUNTERS);
    p = hkt_put_u(p, HKC_NVALUES);
    for (unsigned i = 0; i < HKC_NCOUNTERS; i++) {
        const struct hkc_def *d = &hkc_defs[i];
        char name[128];
        p = hkt_put_u(p, d->first);
        p = hkt_put_u(p, d->width);
        p = hkt_put_u(p, (uint64_t)d->kind);
        p = hkt_put_str(p, hkc_name(i, name, sizeof name));
        p = hkt_put_str(p, d->group);
        p = hkt_put_str(p, d->meaning);
    }
    hkt_write_chunk_locked(HKT_CHUNK_COUNTER_DEFS, start, (size_t)(p - start));
}

/* One SNAPSHOT chunk of every counter (file lock held). */
static void snapshot_locked(void)
{
    if (fd >= 0) {
        hkc_read_process(snapshot_values);
        hkc_derive(snapshot_values);
        uint8_t *p = scratch + 16, *start = p;
        p = hkt_put_u(p, __rdtsc());
        p = hkt_put_u(p, clock_ns(CLOCK_MONOTONIC));
        p = hkt_put_u(p, HKC_NVALUES);
        for (unsigned i = 0; i < HKC_NVALUES; i++)
            p = hkt_put_u(p, snapshot_values[i]);
        hkt_write_chunk_locked(HKT_CHUNK_SNAPSHOT, start, (size_t)(p - start));
    }
}

static void snapshot(void)
{
    hkt_file_lock();
    snapshot_locked();
    hkt_file_unlock();
}

static void thread_event(unsigned kind, uint32_t tid)
{
    if (!hkt_recording)
        return;
    /* The calling thread's name, with one cheap syscall (the name at start is its creator's; at exit it is the
     * one the program gave it). */
    char comm[17] = {0};
    prctl(PR_GET_NAME, comm);
    size_t n = strnlen(comm, 16);
    uint8_t buf[160], *p = buf;
    p = hkt_put_u(p, kind);
    p = hkt_put_u(p, tid);
    p = hkt_put_s(p, gettid());
    p = hkt_put_u(p, __rdtsc());
    p = hkt_put_bytes(p, comm, n);
    hkt_file_lock();
    hkt_write_chunk_locked(HKT_CHUNK_THREAD, buf, (size_t)(p - buf));
    hkt_file_unlock();
}

void hkt_thread_start(uint32_t tid)
{
    hkt_tls.tid = tid;
    thread_event(HKT_THREAD_START, tid);
}

/* The thread's events go out before its exit record; the name is read now, after the program had the chance
 * to set it. Later frees of its (a dead thread's) go out one chunk each. */
void hkt_thread_exit(uint32_t tid, int64_t *left)
{
    if (!hkt_recording)
        return;
    hkt_tls.busy++;
    hkt_ring_release();
    hkt_stacks_thread_exit();
    thread_event(HKT_THREAD_EXIT, tid);
    hkt_tls.dead = 1;
    *left = INT64_MAX / 2;
    hkt_tls.busy--;
}

static void write_end_locked(unsigned reason, int signo)
{
    uint8_t buf[96], *p = buf;
    uint64_t lost = atomic_load(&hkt_events_lost);
    if (lost) { /* thread 0: dropped by several threads (hkt_record_free) */
        p = hkt_put_u(p, 0);
        p = hkt_put_u(p, lost);
        hkt_write_chunk_locked(HKT_CHUNK_LOST, buf, (size_t)(p - buf));
        p = buf;
    }
    p = hkt_put_u(p, __rdtsc());
    p = hkt_put_u(p, clock_ns(CLOCK_MONOTONIC));
    p = hkt_put_u(p, clock_ns(CLOCK_REALTIME));
    p = hkt_put_u(p, atomic_load(&hkt_events_written));
    p = hkt_put_u(p, lost);
    p = hkt_put_u(p, reason);
    p = hkt_put_u(p, (uint64_t)signo);
    hkt_write_chunk_locked(HKT_CHUNK_END, buf, (size_t)(p - buf));
    flush_pending_locked();
    int f = fd;
    fd = -1; /* under the file lock: no chunk can follow END, even from a thread still running */
    close(f);
}

static _Atomic uint64_t window_flip_tsc, window_flip_ns; /* when the handler flipped it: the chunk's time */

static void window_note(void)
{
    int closed = atomic_load(&hkt_window_closed);
    if (closed == window_closed_written)
        return;
    window_closed_written = closed;
    uint8_t buf[40], *p = buf;
    uint64_t tsc = atomic_load(&window_flip_tsc), ns = atomic_load(&window_flip_ns);
    p = hkt_put_u(p, tsc ? tsc : __rdtsc());
    p = hkt_put_u(p, tsc ? ns : clock_ns(CLOCK_MONOTONIC));
    p = hkt_put_u(p, closed ? 0 : 1);
    /* The counters at both edges of the window, so rates over it can be computed. */
    if (closed)
        snapshot();
    hkt_file_lock();
    hkt_write_chunk_locked(HKT_CHUNK_WINDOW, buf, (size_t)(p - buf));
    hkt_file_unlock();
    if (!closed)
        snapshot();
}

static void on_window_signal(int sig)
{
    (void)sig;
    atomic_store(&window_flip_tsc, __rdtsc());
    atomic_store(&window_flip_ns, clock_ns(CLOCK_MONOTONIC));
    atomic_fetch_xor(&hkt_window_closed, 1);
}

/* A signal by number (12) or name (USR2, SIGUSR2); 0 for off or unknown. */
static int signal_number(const char *s)
{
    static const struct {
        const char *name;
        int no;
    } names[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
                 {"URG", SIGURG},   {"PWR", SIGPWR},   {"HUP", SIGHUP}};
    if (!s || !*s || !strcmp(s, "off") || !strcmp(s, "0"))
        return 0;
    if (*s >= '0' && *s <= '9') {
        int n = 0;
        for (; *s >= '0' && *s <= '9' && n < 1000; s++)
            n = n * 10 + (*s - '0');
        return *s || n >= 65 ? 0 : n;
    }
    if (!strncmp(s, "SIG", 3))
        s += 3;
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i].name))
            return names[i].no;
    return 0;
}

static void install_window_signal(void)
{
    const char *spec = cfg.window_signal ? cfg.window_signal : "USR2";
    int sig = signal_number(spec);
    if (!sig) {
        if (strcmp(spec, "off") && strcmp(spec, "0"))
            say("HAKMEM_RECORD_SIGNAL=", spec, " is not a signal name or number; no recording window signal");
        return;
    }
    struct sigaction old, sa;
    if (sigaction(sig, NULL, &old) < 0 || old.sa_handler != SIG_DFL) {
        say("HAKMEM_RECORD_SIGNAL: the program handles ", spec, " itself; the recording window stays open");
        return;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_window_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, NULL);
}

/* ---- the writer thread: drains every ring and takes snapshots, so little is lost to a crash ---- */
static void finish(unsigned reason, int signo);
static _Atomic int pending_termination;

/* 1 if the writer is the process's only thread: every thread of the program has ended (main called pthread_exit,
 * then the last thread returned). glibc then ends the process with exit(0); the writer thread, which the program
 * does not know about, must not keep it alive (it would, forever: it blocks every signal, SIGTERM included). */
static int only_writer_left(void)
{
    char buf[512];
    const char *p = hkc_proc_stat(0, buf, sizeof buf);
    if (!p)
        return 0;
    char state = p[0]; /* the main thread's: Z once it called pthread_exit (it is still counted, as a zombie) */
    p = hkc_stat_field(p, 20); /* num_threads */
    if (!p)
        return 0;
    long threads = strtol(p, NULL, 10);
    return threads == 1 || (threads == 2 && state == 'Z');
}

static void *writer_main(void *arg)
{
    (void)arg;
    hkt_tls.busy = 1; /* what it allocates (nothing, normally) is never sampled */
    prctl(PR_SET_NAME, "hakmem-writer");
    uint64_t interval_ms = cfg.snapshot_ms < 50 ? cfg.snapshot_ms : 50;
    uint64_t next_snapshot = clock_ns(CLOCK_MONOTONIC) + (uint64_t)cfg.snapshot_ms * 1000000u;
    pthread_mutex_lock(&writer_lock);
    while (!writer_stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)(interval_ms * 1000000u);
        while (until.tv_nsec >= 1000000000L) {
            until.tv_nsec -= 1000000000L;
            until.tv_sec++;
        }
        pthread_cond_timedwait(&writer_cond, &writer_lock, &until);
        if (writer_stop)
            break;
        pthread_mutex_unlock(&writer_lock);
        int term = atomic_exchange(&pending_termination, 0);
        if (term) {
            /* A termination signal arrived (on_termination): end the recording properly, then let the signal
             * do what it would have done. */
            finish(HKT_END_SIGNAL, term);
            hkt_sig_default(term);
            sigset_t one;
            sigemptyset(&one);
            sigaddset(&one, term);
            pthread_sigmask(SIG_UNBLOCK, &one, NULL);
            raise(term);
            return NULL;
        }
        if (only_writer_left())
            exit(0); /* as glibc does when the last thread exits; atexit handlers end the recording */
        hkt_rings_drain_all();
        modules_refresh(0);
        window_note();
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        if (now >= next_snapshot && !atomic_load(&hkt_window_closed)) {
            snapshot();
            next_snapshot = now + (uint64_t)cfg.snapshot_ms * 1000000u;
        }
        flush_pending();
        pthread_mutex_lock(&writer_lock);
    }
    pthread_mutex_unlock(&writer_lock);
    return NULL;
}

static void writer_start(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&writer_cond, &ca);
    writer_stop = 0;
    /* The writer must not hold up exit or take signals meant for the program. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    writer_running = pthread_create(&writer, NULL, writer_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void writer_join(void)
{
    if (!writer_running)
        return;
    pthread_mutex_lock(&writer_lock);
    writer_stop = 1;
    pthread_cond_signal(&writer_cond);
    pthread_mutex_unlock(&writer_lock);
    if (!pthread_equal(pthread_self(), writer))
        pthread_join(writer, NULL);
    writer_running = 0;
}

/* ---- opening, ending ---- */
static int open_recording(void)
{
    /* %p is the pid; otherwise the process hakprof started writes the name itself, any other process (a fork or
     * exec child) the name with .<pid> appended. Never an existing file: O_EXCL, then a .<pid> name. */
    char *p = path, *end = path + sizeof path - 32;
    int has_pid = 0;
    for (const char *s = cfg.record; *s && p < end; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            p = put_dec(p, (uint64_t)getpid());
            s++;
            has_pid = 1;
        } else {
            *p++ = *s;
        }
    }
    *p = 0;
    int mine = has_pid;
    if (!has_pid && cfg.root_pid) {
        uint64_t root = 0;
        for (const char *s = cfg.root_pid; *s >= '0' && *s <= '9'; s++)
            root = root * 10 + (uint64_t)(*s - '0');
        mine = root == (uint64_t)getpid();
    } else if (!has_pid) {
        mine = 1;
    }
    /* Candidates: the name itself (if this process owns it), then .<pid>, then .<pid>.1 ... (an exec'd image
     * has the pid of the image before it, whose recording already took .<pid>). */
    char *base_end = p;
    int f = -1;
    for (int attempt = mine ? 0 : 1; attempt < 12 && f < 0; attempt++) {
        p = base_end;
        if (attempt >= 1 && !has_pid) {
            *p++ = '.';
            p = put_dec(p, (uint64_t)getpid());
        }
        if (attempt >= 2) {
            *p++ = '.';
            p = put_dec(p, (uint64_t)attempt - 1);
        }
        *p = 0;
        f = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (f < 0 && errno != EEXIST)
            break;
    }
    if (f < 0) {
        say("cannot create the recording ", path, errno == EEXIST ? ": it and the next 11 names exist" :
            errno == EACCES ? ": permission denied" : errno == ENOSPC ? ": no space left on the device" :
            errno == EMFILE ? ": too many open files" : ": open failed");
        return -1;
    }
    /* Out of the way of the descriptors a program reuses (0-2 closed, dup2 onto 3, 4, ...): a high number. */
    struct rlimit nofile;
    int want = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur > 256 && nofile.rlim_cur != RLIM_INFINITY
                   ? (int)(nofile.rlim_cur > 1024 ? 1024 : nofile.rlim_cur) - 64
                   : 10;
    int high = fcntl(f, F_DUPFD_CLOEXEC, want);
    if (high >= 0) {
        close(f);
        f = high;
    }
    struct stat st;
    if (fstat(f, &st) != 0) {
        close(f);
        say("cannot create the recording ", path, ": fstat failed");
        return -1;
    }
    /* Readable by its owner whatever the program's umask (umask 0777 made files nobody but root could read). */
    if ((st.st_mode & 0600) != 0600)
        fchmod(f, (st.st_mode & 07777) | 0600);
    fd = f;
    fd_dev = st.st_dev;
    fd_ino = st.st_ino;
    fd_off = 0;
    recording_pid = getpid();
    chunk_seq = 0;
    atomic_store(&hkt_events_written, 0);
    struct hkt_file_header fh;
    memcpy(fh.magic, HKT_MAGIC, 8);
    fh.version = HKT_VERSION;
    fh.header_size = sizeof fh;
    write_chunk_bytes(&fh, sizeof fh, NULL, 0);
    write_header_locked();
    write_counter_defs_locked();
    return 0;
}

static void calibrate_tsc(void)
{
    uint64_t n0 = clock_ns(CLOCK_MONOTONIC), t0 = __rdtsc(), n1;
    do
        n1 = clock_ns(CLOCK_MONOTONIC);
    while (n1 - n0 < 2000000);
    uint64_t t1 = __rdtsc();
    tsc_per_sec = (uint64_t)((double)(t1 - t0) * 1e9 / (double)(n1 - n0));
}

/* The writer thread runs with busy at 1 for good (what it allocates is not sampled): so is it the caller? */
int hkt_in_writer_thread(void)
{
    return writer_running && pthread_equal(pthread_self(), writer);
}

static _Atomic int finishing; /* one finish at a time: exit in one thread and exec or SIGTERM in another */

static void finish(unsigned reason, int signo)
{
    if (!hkt_recording || getpid() != recording_pid) { /* a child made without the fork handlers: not its file */
        hkt_recording = 0;
        return;
    }
    /* exit() from a signal handler that interrupted this thread inside the recorder (a sampled-table insert, a
     * ring being written): the locks may be this thread's own, and taking them would spin for ever. The recording
     * then stays cut short at its last whole chunk. (The writer thread is always "inside": it may finish.) */
    if (hkt_tls.busy > (hkt_in_writer_thread() ? 1u : 0u)) {
        hkt_recording = 0;
        return;
    }
    if (atomic_exchange(&finishing, 1))
        return;
    hkt_tls.busy++;
    writer_join();
    hkt_rings_drain_all();
    modules_refresh(0);
    snapshot();
    hkt_file_lock();
    hkt_recording = 0;
    hkt_stacks_flush_locked();
    if (fd >= 0) {
        hkt_write_leaks_locked();
        write_end_locked(reason, signo);
    }
    hkt_file_unlock();
    hkt_tls.busy--;
    /* A termination signal that came while the writer was being stopped: it is not lost. */
    int term = atomic_exchange(&pending_termination, 0);
    if (term && reason == HKT_END_EXIT) {
        hkt_sig_default(term);
        raise(term);
    }
}

void hkt_stop(void)
{
    finish(HKT_END_EXIT, 0);
}

/* exec replaces the process without running destructors: end the recording first (END, reason exec). If the
 * exec fails the program goes on unrecorded, and says so. */
void hkt_before_exec(void)
{
    /* A vfork child shares the parent's memory and recording: only the process that opened it may end it. */
    if (getpid() == recording_pid)
        finish(HKT_END_FORK_EXEC, 0);
}
void hkt_exec_failed(void)
{
    if (fd < 0 && cfg.record && configured)
        say("exec failed after the recording ", path, " was ended; the rest of this process is not recorded");
}

/* A fatal signal: the thread's own events and an END saying why, if the locks are free, then the default action.
 * Best effort only: the locks may be held by the thread that crashed. */
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
static void on_fatal(int sig)
{
    /* Another thread may be in the middle of a write: wait for it a little (about 10 ms), not forever. */
    int locked = 0;
    for (int i = 0; hkt_recording && i < 1000 && !(locked = pthread_mutex_trylock(&file_lock) == 0); i++) {
        struct timespec ts = {0, 10000};
        nanosleep(&ts, NULL);
    }
    if (locked) {
        hkt_recording = 0;
        if (fd >= 0) {
            hkt_ring_drain_own_locked();
            snapshot_locked(); /* the counters as they were: a crash before the first snapshot had totals of 0 */
            write_end_locked(HKT_END_SIGNAL, sig);
        }
        pthread_mutex_unlock(&file_lock);
    }
    hkt_sig_default(sig);
    raise(sig);
}
/* A termination request (SIGTERM, SIGINT, SIGHUP, SIGQUIT with no handler of the program's): the writer thread
 * ends the recording with every ring drained, within one cycle, and re-raises it. Without a writer thread, the
 * crash path. */
static const int termination_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
static void on_termination(int sig)
{
    if (!writer_running) {
        on_fatal(sig);
        return;
    }
    atomic_store(&pending_termination, sig);
    /* Inside the recorder (a ring being written out, the sampled table), this thread may hold a lock the writer
     * needs to end the recording: return, and the writer's raise ends the process within a cycle. */
    if (hkt_tls.busy)
        return;
    /* The program must not go on as if the signal had not come (its default action ends the process; returning
     * would turn it into an EINTR the program does not expect): wait here while the writer ends the recording and
     * raises the signal again. If the writer cannot within a second, end the crash way. */
    for (int i = 0; i < 100; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    on_fatal(sig);
}

static void install_fatal_handlers(void)
{
    for (unsigned i = 0; i < sizeof termination_signals / sizeof termination_signals[0]; i++) {
        struct sigaction old;
        if (hkt_sig_query(termination_signals[i], &old) < 0 || old.sa_handler != SIG_DFL)
            continue;
        hkt_sig_install(termination_signals[i], on_termination, SA_RESTART);
    }
    for (unsigned i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++) {
        struct sigaction old;
        /* Only where the program has none: its own handler stays in charge. */
        if (hkt_sig_query(fatal_signals[i], &old) < 0 || old.sa_handler != SIG_DFL)
            continue;
        hkt_sig_install(fatal_signals[i], on_fatal, SA_RESETHAND | SA_NODEFER);
    }
}

void hkt_fork_prepare(void)
{
    if (!hkt_recording)
        return;
    pthread_mutex_lock(&module_lock);
    hkt_rings_fork_prepare();
    hkt_stacks_fork_prepare();
    /* The file lock before the sampled table's: finish() holds the file lock while it walks the table. */
    pthread_mutex_lock(&file_lock);
    hkt_sampled_fork_prepare();
}
void hkt_fork_parent(void)
{
    if (!hkt_recording)
        return;
    hkt_sampled_fork_parent();
    pthread_mutex_unlock(&file_lock);
    hkt_stacks_fork_parent();
    hkt_rings_fork_parent();
    pthread_mutex_unlock(&module_lock);
}
/* The child gets its own recording, with the whole stack table again and its own writer thread. */
void hkt_fork_child(void)
{
    if (!hkt_recording)
        return;
    pthread_mutex_init(&file_lock, NULL);
    pthread_mutex_init(&module_lock, NULL);
    pthread_mutex_init(&writer_lock, NULL);
    hkt_sampled_fork_child();
    hkt_stacks_fork_child();
    hkt_rings_fork_child();
    writer_running = 0;
    pending_len = 0; /* the parent writes what it had gathered */
    window_closed_written = 0;             /* the child's file says again whether the window is closed */
    atomic_store(&finishing, 0);
    atomic_store(&pending_termination, 0); /* a termination under way is the parent's */
    close(fd);
    fd = -1;
    hkt_recording = 0;
    if (open_recording() < 0)
        return;
    seen_adds = seen_subs = ~0ull;
    hkt_recording = 1;
    modules_refresh(1);
    if (hkt_tls.tid) /* the child's one thread: the start its recording would otherwise lack (no name, no os tid) */
        thread_event(HKT_THREAD_START, hkt_tls.tid);
    flush_pending(); /* header, counter list and modules on disk at once */
    writer_start();
}

/* libhakmem_prof.so's own address range, for cutting its frames off stacks (also when not recording). */
void hkt_find_self(uintptr_t *lo, uintptr_t *hi)
{
    if (!self_hi)
        dl_iterate_phdr(find_self, (void *)(uintptr_t)hkt_find_self);
    *lo = self_lo;
    *hi = self_hi;
}

void hkt_start(int64_t *left)
{
    if (!configured || !cfg.record || hkt_recording || fd >= 0)
        return;
    hkt_tls.busy++;
    dl_iterate_phdr(find_self, (void *)(uintptr_t)hkt_start);
    scratch = hkt_map(HKT_SCRATCH);
    module_buf = hkt_map(HKT_SCRATCH / 2);
    pending = hkt_map(PENDING_BYTES);
    if (!scratch || !module_buf || !pending || hkt_stacks_init(self_lo, self_hi) < 0 || hkt_sampled_init() < 0) {
        say("no memory for the recording ", cfg.record, "");
        hkt_tls.busy--;
        return;
    }
    calibrate_tsc();
    if (open_recording() < 0) {
        hkt_tls.busy--;
        return;
    }
    hkt_recording = 1;
    modules_refresh(1);
    flush_pending(); /* header, counter list and modules on disk at once */
    install_window_signal(); /* first: a window signal that is also a termination signal (HUP) stays the window's */
    install_fatal_handlers();
    if (cfg.start_paused) {
        atomic_store(&hkt_window_closed, 1);
        window_note();
    }
    pthread_atfork(hkt_fork_prepare, hkt_fork_parent, hkt_fork_child);
    writer_start();
    *left = 0; /* allocations before now were not sampled: start sampling this thread afresh */
    hkt_tls.busy--;
}
