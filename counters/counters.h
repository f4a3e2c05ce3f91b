/* counters/: the instrumented build's exact counters. The face of the module: value indices generated from
 * counters.def, the stats segment's layout, the writer side (used by alloc/ in libhakmem_prof.so) and the reader
 * side (used by hakprof and the tests to read a running process). */
#ifndef HKC_COUNTERS_H
#define HKC_COUNTERS_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define HKC_NCLASSES 48
#define HKC_DEPTH_BUCKETS 8
#define HKC_WIDTH_SCALAR 1
#define HKC_WIDTH_CLASS HKC_NCLASSES
#define HKC_WIDTH_DEPTH HKC_DEPTH_BUCKETS
#define HKC_WIDTH_GAUGE 1

/* HKC_<name> is the index of a counter's first value; per-class counters take HKC_NCLASSES consecutive values. */
enum hkc_value {
#define HKC_DEF(name, group, kind, meaning) HKC_##name, HKC_##name##_LAST_ = HKC_##name + HKC_WIDTH_##kind - 1,
#include "counters.def"
#undef HKC_DEF
    HKC_NVALUES
};
/* HKC_W_<name> is a counter's width, so a call site can index a per-class counter and ignore the class otherwise. */
enum hkc_width {
#define HKC_DEF(name, group, kind, meaning) HKC_W_##name = HKC_WIDTH_##kind,
#include "counters.def"
#undef HKC_DEF
};
enum hkc_counter {
#define HKC_DEF(name, group, kind, meaning) HKC_ID_##name,
#include "counters.def"
#undef HKC_DEF
    HKC_NCOUNTERS
};

enum hkc_kind { HKC_SCALAR, HKC_CLASS, HKC_DEPTH, HKC_GAUGE };
struct hkc_def {
    const char *name;    /* as in counters.def, e.g. "REFILL_TLS_SLL_HIT" */
    const char *group;   /* refill, free, cache, alloc, os, thread, gauge */
    enum hkc_kind kind;
    const char *meaning;
    unsigned first;      /* index of its first value */
    unsigned width;      /* number of values */
};
extern const struct hkc_def hkc_defs[HKC_NCOUNTERS];
/* A counter's user-facing name, the definition's name in lower case (e.g. "refill_tls_sll_hit"). */
const char *hkc_name(unsigned counter, char *buf, size_t len);
/* Identifies the definition list: a reader refuses a segment written by a build with another list. */
uint64_t hkc_defs_hash(void);
/* Block size of each size class, for reports (same as the allocator's table). */
extern const uint32_t hkc_class_size[HKC_NCLASSES];

/* ---- The stats segment: a file under $HAKMEM_STATS_DIR (default /dev/shm) named hakmem-<pid>.stats ---- */
#define HKC_SEG_MAGIC "HAKSTAT1"
#define HKC_SEG_VERSION 2
#define HKC_SEG_SLOTS 4096
struct hkc_seg_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;     /* bytes before the first value block */
    uint32_t nvalues;         /* values per block (HKC_NVALUES of the writer) */
    uint32_t nslots;          /* per-thread blocks */
    uint64_t defs_hash;
    int32_t pid;
    uint32_t exited;          /* set at normal exit, just before the file is removed */
    uint64_t start_ticks;     /* process start time, /proc/<pid>/stat field 22: tells a reused pid apart */
    uint64_t created_ns;      /* CLOCK_REALTIME when the segment was made */
    _Atomic uint64_t seq;     /* seqlock: odd while an exiting thread folds its block into the retired block */
    char cmdline[256];        /* the command line, NUL-separated arguments joined by spaces */
    _Atomic uint32_t slot_state[HKC_SEG_SLOTS]; /* 1: the slot's block belongs to a live thread */
};
/* Blocks after the header, each HKC_NVALUES uint64 values:
 *   0: gauges (GAUGE counters only), 1: retired (folded blocks of exited threads),
 *   2: shared (threads without a slot, counted with atomic adds), 3 + i: slot i. */
enum { HKC_BLOCK_GAUGES = 0, HKC_BLOCK_RETIRED = 1, HKC_BLOCK_SHARED = 2, HKC_BLOCK_SLOTS = 3 };
size_t hkc_seg_size(void);

/* ---- Writer side, inside libhakmem_prof.so (counters/segment.c) ---- */
/* Set by the allocator from HAKMEM_STATS, HAKMEM_STATS_DIR, HAKMEM_STATS_PRINT, HAKMEM_STATS_FILE before hkc_init. */
struct hkc_config {
    int publish;            /* 0: count privately, publish no file */
    const char *dir;
    int print;              /* print the table at exit */
    const char *print_file; /* NULL: stderr */
};
extern struct hkc_config hkc_config;
/* Creates the segment (or a private anonymous one when HAKMEM_STATS=0 or the file cannot be made). */
void hkc_init(void);
/* A zeroed per-thread block: a slot of the segment, or past the last slot a private block whose counts readers
 * see when the thread exits. Never NULL, so the fast paths count without a test. */
uint64_t *hkc_slot_acquire(void);
/* Folds a thread's block into the retired block and frees the slot; readers never see it counted twice.
 * classes: bit c set if per-class (or depth) value c may be non-zero; the others are known to be zero. */
void hkc_slot_release(uint64_t *slot, uint64_t classes);
extern uint64_t *hkc_shared;   /* the shared block: atomic adds only */
extern uint64_t *hkc_gauges;   /* the gauge block */
void hkc_gauge_max(unsigned idx, uint64_t v);
/* Sums the whole process (consistent snapshot) into out[HKC_NVALUES]. */
void hkc_read_process(uint64_t *out);
/* In a fork child: a segment of its own, so the parent's numbers are not touched. */
void hkc_fork_child(unsigned threads_live); /* threads with a live heap in the child: 0 or 1 */
/* At normal exit: print the table if HAKMEM_STATS_PRINT=1, and remove the segment file. */
void hkc_exit(void);

/* ---- Reader side (counters/reader.c): another process maps a segment read-only ---- */
struct hkc_reader {
    int pid;
    const struct hkc_seg_header *hdr;
    const uint64_t *blocks;
    size_t map_size;
    char path[512];
};
enum hkc_open_status { HKC_OK = 0, HKC_NO_SEGMENT = 1, HKC_STALE = 2, HKC_BAD_SEGMENT = 3 };
/* Opens the segment of pid under dir (NULL: $HAKMEM_STATS_DIR or /dev/shm). On failure, err says why. */
enum hkc_open_status hkc_open(struct hkc_reader *r, int pid, const char *dir, char *err, size_t errlen);
/* A consistent sum of all blocks into out[HKC_NVALUES]; -1 if no consistent snapshot could be taken. */
int hkc_read(const struct hkc_reader *r, uint64_t *out);
/* 1 if the process that wrote the segment is gone (or the pid now belongs to another process). */
int hkc_is_stale(const struct hkc_reader *r);
void hkc_close(struct hkc_reader *r);
/* Fills in the counters computed from others (same- and cross-thread frees) in a set of summed values. */
void hkc_derive(uint64_t *values);
/* Sums a segment's blocks (shared by the reader and the in-process API); -1 if the seqlock never settles. */
int hkc_sum_blocks(const struct hkc_seg_header *hdr, const uint64_t *blocks, uint64_t *out);
/* The start time of a process (field 22 of /proc/<pid>/stat), or 0 if it cannot be read. */
uint64_t hkc_proc_start_ticks(int pid);
/* Reads /proc/<pid>/stat (pid 0: this process) into buf; returns where field 3 (the state) starts, after the
 * command name (which may hold spaces and parentheses), or NULL. Allocates nothing. */
const char *hkc_proc_stat(int pid, char *buf, size_t len);
/* In what hkc_proc_stat returned, where field `field` (numbered as in proc(5), 3 or more) starts; NULL if the
 * line ends first. */
const char *hkc_stat_field(const char *p, int field);

/* Writes the compact table of counters to fd (used by HAKMEM_STATS_PRINT and by hakprof). */
void hkc_print_table(int fd, const uint64_t *values);
#endif
