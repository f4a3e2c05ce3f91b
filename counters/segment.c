/* The writer side of the stats segment, inside libhakmem_prof.so: making the segment, per-thread blocks,
 * folding exiting threads into the retired block under a seqlock, gauges, and cleanup at exit or fork. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "counters.h"

struct hkc_config hkc_config = {.publish = 1, .dir = "/dev/shm", .print = 0, .print_file = NULL};

/* Counts made before the segment exists (a foreign free before the first malloc) land here and are carried over. */
static uint64_t boot_block[HKC_NVALUES];
uint64_t *hkc_shared = boot_block;
uint64_t *hkc_gauges = boot_block;

static struct hkc_seg_header *seg;
static uint64_t *blocks;
static size_t seg_size;
static char seg_path[512];
static int seg_is_file;
static pthread_mutex_t fold_lock = PTHREAD_MUTEX_INITIALIZER;

size_t hkc_seg_size(void)
{
    size_t header = (sizeof(struct hkc_seg_header) + 4095) & ~(size_t)4095;
    return header + (size_t)(HKC_BLOCK_SLOTS + HKC_SEG_SLOTS) * HKC_NVALUES * sizeof(uint64_t);
}

static uint64_t *block(unsigned i)
{
    return blocks + (size_t)i * HKC_NVALUES;
}

/* /proc/self/cmdline with its NUL separators turned into spaces. */
static void read_cmdline(char *out, size_t len)
{
    out[0] = 0;
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, len - 1);
    close(fd);
    if (n <= 0)
        return;
    for (ssize_t i = 0; i < n; i++)
        if (out[i] == 0)
            out[i] = ' ';
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = 0;
}

/* Maps a new segment: a file others can read when publishing, else private memory with the same layout. */
/* Segments of processes that are gone: a process that leaves by _exit (dash, a fork child), by exec or by a signal
 * cannot remove its own, and test and benchmark runs left thousands in /dev/shm. A process publishing in a
 * directory keeps the 16 most recent segments there whose process no longer exists (kill(pid, 0) fails with
 * ESRCH: a crashed process's last counters stay readable, as stale) and removes the older ones. Recent is by
 * mtime, which on tmpfs is about when the segment's pages were first written, so roughly its process's start.
 * A directory shared across PID namespaces should not be shared by hakmem's segments (another namespace's live
 * process looks gone from here). Reads the directory with getdents64 into a static buffer: opendir would call
 * malloc during the allocator's own start. Runs once per process, before its threads start. */
#define STALE_KEEP 16
#define STALE_SCAN 1024
struct dent64 {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};
static int segment_pid(const char *name)
{
    static const char prefix[] = "hakmem-", suffix[] = ".stats";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0)
        return 0;
    const char *c = name + sizeof prefix - 1;
    long pid = 0;
    for (; *c >= '0' && *c <= '9' && pid < 100000000; c++)
        pid = pid * 10 + (*c - '0');
    return strcmp(c, suffix) == 0 && pid > 0 && pid < 100000000 ? (int)pid : 0;
}
static int pid_gone(int pid)
{
    return pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH;
}
static void remove_stale_segments(const char *dir)
{
    static struct {
        int64_t mtime;
        int pid;
    } stale[STALE_SCAN];
    static char buf[8192] __attribute__((aligned(8)));
    int saved_errno = errno; /* this runs inside the program's first malloc, which must leave errno alone */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        errno = saved_errno;
        return;
    }
    unsigned n = 0;
    long got;
    while (n < STALE_SCAN && (got = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < got && n < STALE_SCAN;) {
            const struct dent64 *d = (const struct dent64 *)(buf + off);
            off += d->reclen;
            int pid = segment_pid(d->name);
            struct stat st;
            if (pid && pid_gone(pid) && fstatat(dfd, d->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
                stale[n].mtime = (int64_t)st.st_mtime;
                stale[n].pid = pid;
                n++;
            }
        }
    }
    /* The oldest first, until STALE_KEEP are left; the pid is looked at once more right before its file goes. */
    for (unsigned left = n; left > STALE_KEEP; left--) {
        unsigned oldest = 0;
        for (unsigned k = 1; k < n; k++)
            if (stale[k].pid && (!stale[oldest].pid || stale[k].mtime < stale[oldest].mtime))
                oldest = k;
        char name[64];
        snprintf(name, sizeof name, "hakmem-%d.stats", stale[oldest].pid);
        if (pid_gone(stale[oldest].pid))
            unlinkat(dfd, name, 0);
        stale[oldest].pid = 0;
    }
    close(dfd);
    errno = saved_errno;
}

static void make_segment(void)
{
    seg_size = hkc_seg_size();
    void *m = MAP_FAILED;
    seg_is_file = 0;
    if (hkc_config.publish) {
        snprintf(seg_path, sizeof seg_path, "%s/hakmem-%d.stats", hkc_config.dir, (int)getpid());
        unlink(seg_path); /* a stale file of an earlier process with this pid */
        /* A file size limit below the segment's size (ulimit -f, set before a fork) would make ftruncate raise
         * SIGXFSZ and kill the program: count privately instead. */
        struct rlimit fsize;
        int fits = getrlimit(RLIMIT_FSIZE, &fsize) != 0 || fsize.rlim_cur == RLIM_INFINITY ||
                   fsize.rlim_cur >= seg_size;
        int fd = fits ? open(seg_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
        if (fd >= 0 && ftruncate(fd, (off_t)seg_size) == 0)
            m = mmap(NULL, seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (fd >= 0)
            close(fd);
        if (m == MAP_FAILED) {
            char msg[700];
            int n = snprintf(msg, sizeof msg,
                             fits ? "hakmem: cannot publish counters in %s (set HAKMEM_STATS_DIR to a writable "
                                    "directory); counting privately\n"
                                  : "hakmem: cannot publish counters in %s: the file size limit (ulimit -f) is "
                                    "below the segment's size; counting privately\n",
                             seg_path);
            ssize_t w = write(2, msg, (size_t)n);
            (void)w;
            unlink(seg_path);
        } else {
            seg_is_file = 1;
            remove_stale_segments(hkc_config.dir);
        }
    }
    if (m == MAP_FAILED)
        m = mmap(NULL, seg_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        seg = NULL;
        return;
    }
    seg = m;
    blocks = (uint64_t *)((char *)m + ((sizeof(struct hkc_seg_header) + 4095) & ~(size_t)4095));
    seg->version = HKC_SEG_VERSION;
    seg->header_size = (uint32_t)((char *)blocks - (char *)m);
    seg->nvalues = HKC_NVALUES;
    seg->nslots = HKC_SEG_SLOTS;
    seg->defs_hash = hkc_defs_hash();
    seg->pid = (int32_t)getpid();
    seg->start_ticks = hkc_proc_start_ticks(seg->pid);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seg->created_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    read_cmdline(seg->cmdline, sizeof seg->cmdline);
    /* The magic goes last: a reader that sees it sees a complete header. */
    atomic_thread_fence(memory_order_release);
    memcpy(seg->magic, HKC_SEG_MAGIC, 8);
}

/* Where the one-value counters and the per-class (or depth) counters start, for folding by class. */
static unsigned scalar_at[HKC_NCOUNTERS], nscalar;
static unsigned wide_at[HKC_NCOUNTERS], wide_width[HKC_NCOUNTERS], nwide;

static void index_counters(void)
{
    nscalar = nwide = 0;
    for (unsigned c = 0; c < HKC_NCOUNTERS; c++) {
        if (hkc_defs[c].width == 1) {
            scalar_at[nscalar++] = hkc_defs[c].first;
        } else {
            wide_at[nwide] = hkc_defs[c].first;
            wide_width[nwide++] = hkc_defs[c].width;
        }
    }
}

void hkc_init(void)
{
    if (seg)
        return;
    index_counters();
    make_segment();
    if (!seg)
        return;
    for (unsigned j = 0; j < HKC_NVALUES; j++) {
        block(HKC_BLOCK_SHARED)[j] = boot_block[j];
        block(HKC_BLOCK_GAUGES)[j] = boot_block[j];
    }
    hkc_gauges = block(HKC_BLOCK_GAUGES);
    hkc_shared = block(HKC_BLOCK_SHARED);
}

static int in_segment(const uint64_t *b)
{
    return seg && b >= block(HKC_BLOCK_SLOTS) && b < block(HKC_BLOCK_SLOTS + HKC_SEG_SLOTS);
}

/* Past the segment's slots a thread counts into a private block: readers see its counts when it exits.
 * If even that cannot be mapped (memory exhausted), threads share a last-resort block without atomics. */
static uint64_t overflow_block[HKC_NVALUES];

uint64_t *hkc_slot_acquire(void)
{
    for (unsigned i = 0; seg && i < HKC_SEG_SLOTS; i++) {
        uint32_t expect = 0;
        if (atomic_load_explicit(&seg->slot_state[i], memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong_explicit(&seg->slot_state[i], &expect, 1, memory_order_acq_rel,
                                                    memory_order_relaxed))
            return block(HKC_BLOCK_SLOTS + i); /* released slots were zeroed */
    }
    void *m = mmap(NULL, HKC_NVALUES * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? overflow_block : m;
}

static void fold_value(uint64_t *retired, uint64_t *slot, unsigned j)
{
    uint64_t v = slot[j];
    if (!v)
        return;
    __atomic_store_n(&retired[j], retired[j] + v, __ATOMIC_RELAXED);
    __atomic_store_n(&slot[j], 0, __ATOMIC_RELAXED);
}

void hkc_slot_release(uint64_t *slot, uint64_t classes)
{
    if (!slot || slot == overflow_block || !seg)
        return;
    int own = in_segment(slot);
    unsigned i = own ? (unsigned)((slot - block(HKC_BLOCK_SLOTS)) / HKC_NVALUES) : 0;
    uint64_t *retired = block(HKC_BLOCK_RETIRED);
    pthread_mutex_lock(&fold_lock);
    uint64_t s = atomic_load_explicit(&seg->seq, memory_order_relaxed);
    atomic_store_explicit(&seg->seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    /* Only the classes the thread counted in: a short-lived thread touches a few of the 48. */
    for (unsigned i = 0; i < nscalar; i++)
        fold_value(retired, slot, scalar_at[i]);
    for (uint64_t m = classes; m; m &= m - 1) {
        unsigned k = (unsigned)__builtin_ctzll(m);
        for (unsigned i = 0; i < nwide; i++)
            if (k < wide_width[i])
                fold_value(retired, slot, wide_at[i] + k);
    }
    if (own) /* release: the thread that takes the slot next must see it zeroed (its CAS acquires) */
        atomic_store_explicit(&seg->slot_state[i], 0, memory_order_release);
    atomic_store_explicit(&seg->seq, s + 2, memory_order_release);
    pthread_mutex_unlock(&fold_lock);
    if (!own)
        munmap(slot, HKC_NVALUES * sizeof(uint64_t));
}

void hkc_gauge_max(unsigned idx, uint64_t v)
{
    uint64_t cur = __atomic_load_n(&hkc_gauges[idx], __ATOMIC_RELAXED);
    while (v > cur && !__atomic_compare_exchange_n(&hkc_gauges[idx], &cur, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

void hkc_read_process(uint64_t *out)
{
    if (!seg) {
        memset(out, 0, HKC_NVALUES * sizeof *out);
        return;
    }
    /* In-process, exiting threads fold under fold_lock: holding it makes the first attempt consistent. */
    pthread_mutex_lock(&fold_lock);
    hkc_sum_blocks(seg, blocks, out);
    pthread_mutex_unlock(&fold_lock);
}

void hkc_fork_child(unsigned threads_live)
{
    pthread_mutex_init(&fold_lock, NULL);
    /* The child counts from zero, but its gauges describe what it has: the parent's SuperSlabs, still mapped in
     * it, the peaks so far, and its one thread if that has a live heap (a gauge restarted at 0 went below zero at
     * the child's first release). */
    uint64_t ss_live = hkc_gauges[HKC_SS_LIVE], ss_peak = hkc_gauges[HKC_SS_PEAK];
    uint64_t bytes_peak = hkc_gauges[HKC_BYTES_IN_USE_PEAK];
    int had_segment = seg != NULL;
    if (seg) /* the inherited mapping may be the parent's shared file: the child must not write into it */
        munmap(seg, seg_size);
    seg = NULL;
    hkc_shared = boot_block;
    hkc_gauges = boot_block;
    memset(boot_block, 0, sizeof boot_block);
    if (had_segment)
        hkc_init();
    hkc_gauges[HKC_SS_LIVE] = ss_live;
    hkc_gauges[HKC_SS_PEAK] = ss_peak;
    hkc_gauges[HKC_BYTES_IN_USE_PEAK] = bytes_peak;
    hkc_gauges[HKC_THREADS_LIVE] = threads_live;
}

void hkc_exit(void)
{
    if (!seg)
        return;
    if (hkc_config.print) {
        uint64_t values[HKC_NVALUES];
        hkc_read_process(values);
        int fd = 2, own = 0;
        if (hkc_config.print_file && hkc_config.print_file[0]) {
            fd = open(hkc_config.print_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            own = fd >= 0;
            if (fd < 0) {
                char msg[700];
                int n = snprintf(msg, sizeof msg, "hakmem: cannot write HAKMEM_STATS_FILE=%s: %s; the table goes to "
                                 "stderr\n", hkc_config.print_file, strerror(errno));
                ssize_t w = write(2, msg, n > 0 && (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
                (void)w;
                fd = 2;
            }
        }
        hkc_print_table(fd, values);
        if (own)
            close(fd);
    }
    if (seg_is_file) {
        seg->exited = 1;
        unlink(seg_path);
        seg_is_file = 0;
    }
}
