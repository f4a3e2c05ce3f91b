/* trace/: sampled call-site traces and the recording file. The face of the module: the record types every reader
 * sees, the reader API (hakprof, tests) and the writer API the instrumented allocator calls (libhakmem_prof.so).
 * The byte layout of a recording is in docs/format.md; encoding details are trace/format.h's. */
#ifndef HKT_TRACE_H
#define HKT_TRACE_H
#include <stddef.h>
#include <stdint.h>

#define HKT_MAGIC "HAKTRACE"
#define HKT_VERSION 2 /* 2: EVENTS packs kind and stage or path in a byte, and deltas seq and alloc_tid */

/* Chunk types (docs/format.md). */
enum hkt_chunk_type {
    HKT_CHUNK_HEADER = 1,       /* once, first: process, command line, clock, settings, build id */
    HKT_CHUNK_COUNTER_DEFS = 2, /* once: the counter list the snapshots' values follow */
    HKT_CHUNK_MODULES = 3,      /* the module map; written again when it changes (dlopen, dlclose) */
    HKT_CHUNK_STACKS = 4,       /* new entries of the stack table */
    HKT_CHUNK_EVENTS = 5,       /* a batch of one thread's sampled allocation and free events */
    HKT_CHUNK_SNAPSHOT = 6,     /* every counter's process total at one moment */
    HKT_CHUNK_THREAD = 7,       /* a thread started, exited or was named */
    HKT_CHUNK_LOST = 8,         /* events that could not be recorded (never written by the lossless writer) */
    HKT_CHUNK_END = 9,          /* last: the recording is complete */
    HKT_CHUNK_WINDOW = 10,      /* the recording window opened or closed (readers that skip it lose nothing) */
    HKT_CHUNK_ERROR = 11,       /* a heap error the debug checks caught (double free, overflow, ...) */
    HKT_CHUNK_LEAKS = 12,       /* at the end: sampled blocks still live, by stack */
    HKT_CHUNK_MAX_TYPE = 12     /* the newest type this reader decodes; higher types are checked and skipped */
};

/* Sampling modes, as HAKMEM_SAMPLE spells them: off, all, count:N (every Nth allocation), bytes:N (on average
 * once per N bytes allocated, Poisson: an allocation of s bytes is sampled with probability 1 - exp(-s/N)). */
enum hkt_sample_mode { HKT_SAMPLE_OFF = 0, HKT_SAMPLE_ALL = 1, HKT_SAMPLE_COUNT = 2, HKT_SAMPLE_BYTES = 3 };

/* Refill stage an allocation was served by (the counters' refill stages, in refill order), or large. */
enum hkt_stage {
    HKT_STAGE_TLS_SLL = 0, HKT_STAGE_SLAB_FREE = 1, HKT_STAGE_REMOTE_DRAIN = 2, HKT_STAGE_PARTIAL = 3,
    HKT_STAGE_ADOPT = 4, HKT_STAGE_NEW_SLAB = 5, HKT_STAGE_SS_CACHE = 6, HKT_STAGE_SS_OS = 7, HKT_STAGE_LARGE = 8,
    HKT_NSTAGES = 9
};
/* Free path a sampled block's free took. */
enum hkt_path { HKT_PATH_TLS_SLL = 0, HKT_PATH_SS_LOCAL = 1, HKT_PATH_SS_REMOTE = 2, HKT_PATH_LARGE = 3,
                HKT_NPATHS = 4 };
const char *hkt_stage_name(unsigned stage);   /* "tls_sll", "slab_free", ... "large"; "?" if out of range */
const char *hkt_path_name(unsigned path);     /* "tls_sll", "ss_local", "ss_remote", "large" */
const char *hkt_sample_mode_name(unsigned m); /* "off", "all", "count", "bytes" */
unsigned hkt_sample_mode(void);               /* the writer's, once configured */

/* ---- Decoded records, as the reader returns them. Strings and arrays stay valid until the next hkt_next. ---- */
enum hkt_rec_type {
    HKT_REC_HEADER = 1, HKT_REC_COUNTER_DEF, HKT_REC_MODULE, HKT_REC_STACK, HKT_REC_ALLOC, HKT_REC_FREE,
    HKT_REC_SNAPSHOT, HKT_REC_THREAD, HKT_REC_LOST, HKT_REC_END, HKT_REC_WINDOW, HKT_REC_ERROR, HKT_REC_LEAK
};
/* Kinds of heap errors (ERROR chunks). */
enum hkt_error_kind {
    HKT_ERR_DOUBLE_FREE = 1,  /* a block freed again while free */
    HKT_ERR_FOREIGN = 2,      /* a pointer hakmem never returned (not in its memory) */
    HKT_ERR_INTERIOR = 3,     /* inside hakmem's memory but not the start of a live block (interior, misaligned) */
    HKT_ERR_OVERFLOW = 4,     /* bytes past the requested size were written (HAKMEM_GUARD=1) */
    HKT_ERR_USE_AFTER_FREE = 5, /* a freed block was written before it was handed out again (HAKMEM_POISON=1) */
    HKT_NERRORS = 6
};
const char *hkt_error_name(unsigned kind); /* "double_free", "foreign", "interior", "overflow", "use_after_free" */
struct hkt_header {
    int32_t pid, ppid;
    uint64_t start_realtime_ns; /* CLOCK_REALTIME when recording began */
    uint64_t start_mono_ns;     /* CLOCK_MONOTONIC at the same moment */
    uint64_t start_tsc;         /* the TSC at the same moment: event times are TSC ticks */
    uint64_t tsc_per_sec;       /* the writer's calibration (0: unknown; readers fit it from snapshots) */
    uint32_t sample_mode;       /* enum hkt_sample_mode */
    uint64_t sample_period;     /* N of count:N or bytes:N; 1 for all */
    uint64_t sample_seed;
    uint32_t stack_depth;
    uint32_t snapshot_ms;
    const char *cmdline;        /* arguments joined by spaces */
    const char *exe;            /* /proc/self/exe */
    const char *settings;       /* the HAKMEM_* environment, "NAME=value" lines */
    const char *build_id;       /* libhakmem_prof.so's GNU build id, hex */
    const char *lib_path;
};
struct hkt_counter_def {
    uint32_t index;             /* order in the list */
    uint32_t first, width;      /* position and number of the counter's values in a snapshot */
    uint32_t kind;              /* 0 scalar, 1 per size class, 2 depth buckets, 3 gauge */
    const char *name, *group, *meaning;
};
struct hkt_module {
    uint32_t generation;        /* module maps are numbered; a later one replaces an earlier one */
    uint64_t base;              /* load bias (dlpi_addr) */
    uint64_t lo, hi;            /* lowest and highest address of its loaded segments */
    const char *path;           /* "" for the main program means /proc/self/exe (header exe) */
    const char *build_id;       /* hex, "" if none */
};
struct hkt_stack {
    uint32_t id;                /* 1, 2, ...; 0 means no stack */
    uint32_t depth;
    const uint64_t *ips;        /* innermost first: ips[0] is the allocation call's return address */
};
struct hkt_alloc {
    uint32_t tid;               /* hakmem thread number of the allocating thread */
    uint64_t seq;               /* the thread's sample number: (tid, seq) names the sampled block */
    uint64_t tsc;
    uint64_t addr, size;
    uint32_t cls;               /* size class, or 255 for large */
    uint32_t stage;             /* enum hkt_stage */
    uint32_t stack;             /* stack id */
};
struct hkt_free {
    uint32_t tid;               /* the freeing thread */
    uint32_t alloc_tid;         /* the allocating thread (the block's owner when it was handed out) */
    uint64_t alloc_seq;         /* with alloc_tid: which sampled allocation this frees */
    uint64_t tsc, lifetime;     /* lifetime in TSC ticks */
    uint64_t addr, size;
    uint32_t cls, path, stack;
};
struct hkt_snapshot {
    uint64_t tsc, mono_ns;
    uint32_t nvalues;
    const uint64_t *values;
};
enum { HKT_THREAD_START = 1, HKT_THREAD_EXIT = 2, HKT_THREAD_NAME = 3 };
struct hkt_thread {
    uint32_t kind, tid;
    int32_t os_tid;
    uint64_t tsc;
    const char *name;
};
struct hkt_lost {
    uint32_t tid;
    uint64_t events;
};
enum { HKT_END_EXIT = 0, HKT_END_SIGNAL = 1, HKT_END_FORK_EXEC = 2 };
struct hkt_end {
    uint64_t tsc, mono_ns, realtime_ns;
    uint64_t events;            /* events written */
    uint64_t lost;              /* events lost */
    uint32_t reason, signo;
};
struct hkt_window {
    uint64_t tsc, mono_ns;
    uint32_t open;              /* 1 opened, 0 closed */
};
struct hkt_error {
    uint32_t kind;              /* enum hkt_error_kind */
    uint32_t tid;               /* the thread whose call was wrong */
    uint64_t tsc, addr;
    uint64_t size;              /* the block's size (requested size with guards), 0 if unknown */
    uint32_t stack;             /* the offending call's stack, 0 if none */
    uint32_t alloc_stack;       /* for a sampled block, its allocation's stack; else 0 */
    uint32_t alloc_tid;         /* for a sampled block, its allocating thread; else 0 */
    uint64_t alloc_seq;
};
struct hkt_leak {
    uint32_t stack;             /* the allocation stack */
    uint64_t blocks, bytes;     /* sampled blocks still live at the end, and their bytes */
    uint64_t est_blocks, est_bytes; /* scaled by the sampling weight: estimates for the whole program */
};
struct hkt_record {
    enum hkt_rec_type type;
    uint64_t offset;            /* byte offset of the chunk it came from */
    union {
        struct hkt_header header;
        struct hkt_counter_def counter_def;
        struct hkt_module module;
        struct hkt_stack stack;
        struct hkt_alloc alloc;
        struct hkt_free free;
        struct hkt_snapshot snapshot;
        struct hkt_thread thread;
        struct hkt_lost lost;
        struct hkt_end end;
        struct hkt_window window;
        struct hkt_error error;
        struct hkt_leak leak;
    } u;
};

/* ---- Reader (trace/reader.c) ---- */
struct hkt_reader;
/* Opens and checks the file header. NULL on failure with a one-line message in err (names the file). */
struct hkt_reader *hkt_open(const char *path, char *err, size_t errlen);
/* 1: a record; 0: the end of the file; -1: damage (bad checksum, truncated or malformed chunk): hkt_error says
 * where, and every record before it was returned. After 0 or -1, further calls return the same. */
int hkt_next(struct hkt_reader *r, struct hkt_record *rec);
/* The header (valid after the first hkt_next returned it; NULL before or if the file had none). */
const struct hkt_header *hkt_header_of(const struct hkt_reader *r);
/* One line: "FILE: byte N: what is wrong"; "" if nothing is. */
const char *hkt_error(const struct hkt_reader *r);
/* 1 if an END chunk was read (the recording is complete); 0 if it was cut short (so far). */
int hkt_complete(const struct hkt_reader *r);
/* 1 if a LEAKS chunk was read (it may have had no entry: no sampled block was live at the end); 0 if the
 * recording has none (a writer without leak reports, or cut short before its end). */
int hkt_has_leaks(const struct hkt_reader *r);
uint64_t hkt_file_size(const struct hkt_reader *r);
/* For a recording still being written: maps the file again if it grew, and if the reader had stopped (at the end,
 * or at damage, which may be a chunk still being written) it goes on from the chunk where it stopped, with every
 * record before it already returned. 1: it grew; 0: it did not (or the recording is complete); -1: the file
 * cannot be read any more (hkt_error says why). Call it once hkt_next has returned 0 or -1. */
int hkt_refresh(struct hkt_reader *r);
uint64_t hkt_offset(const struct hkt_reader *r); /* bytes consumed so far, for progress */
void hkt_close(struct hkt_reader *r);

/* ---- Writer: compiled only into libhakmem_prof.so (recorder.c, ring.c, stacks.c, sampled.c) ----
 * The allocator calls these from its prof hooks (alloc/prof.c, alloc/api.c); none of them allocates. */
struct hkt_config {
    const char *record;      /* HAKMEM_RECORD: output path (%p: the pid); NULL: no recording */
    const char *root_pid;    /* HAKMEM_RECORD_ROOT_PID: the process that writes the path itself */
    const char *sample;      /* HAKMEM_SAMPLE: off | all | count:N | bytes:N[k|m|g] */
    uint64_t sample_seed;    /* HAKMEM_SAMPLE_SEED */
    uint32_t stack_depth;    /* HAKMEM_STACK_DEPTH */
    uint32_t snapshot_ms;    /* HAKMEM_SNAPSHOT_MS */
    const char *window_signal; /* HAKMEM_RECORD_SIGNAL: toggles the recording window (default USR2; off) */
    uint32_t start_paused;   /* HAKMEM_RECORD_PAUSED: the window opens at the first signal */
};
#define HKT_DEFAULT_SAMPLE "bytes:524288"
#define HKT_DEFAULT_STACK_DEPTH 32
#define HKT_MAX_STACK_DEPTH 128
#define HKT_DEFAULT_SNAPSHOT_MS 100
/* Parses a sampling spec; 0 on success, -1 if malformed. */
int hkt_parse_sample(const char *spec, unsigned *mode, uint64_t *period);

/* Per-thread sampling state. The countdown itself lives in the allocator's thread heap (next to what the fast
 * path touches anyway): bytes to the next sample; in the all and count:N modes it stays at 0, so every
 * allocation asks hkt_sample_decide (which counts allocations for count:N). */
struct hkt_tls {
    uint64_t count;          /* count:N: allocations since the last sample */
    uint32_t busy;           /* inside the tracer: what it allocates is never sampled (recursion guard) */
    uint32_t dead;           /* the thread's exit was recorded: no more events of its own */
    uint64_t seq;            /* samples taken by the thread */
    uint64_t rng;
    struct hkt_ring *ring;
    uint32_t tid;            /* hakmem's thread number, once its start is recorded (a fork child records it again) */
    struct hkt_stack_cache *stack_cache; /* stacks.c: recent stacks by the return addresses on the stack */
    uint32_t stack_cache_off;  /* 1: this thread does without (no memory for one) */
};
extern __thread struct hkt_tls hkt_tls __attribute__((tls_model("initial-exec")));
extern int hkt_recording;       /* 1 while a recording is open */
static inline int hkt_tick(int64_t *left, size_t size)
{
    /* In unsigned arithmetic: a request of 2^63 bytes or more must not overflow (undefined) the signed count. It
     * can wrap it to a huge positive value instead; such requests fail, and their refusal re-arms the countdown
     * (HAK_ON_ABSURD_SIZE). */
    *left = (int64_t)((uint64_t)*left - size);
    return *left < 0;
}
/* 1 if the allocation now being made is to be recorded (then hkt_record_alloc must follow); re-arms *left. */
int hkt_sample_decide(size_t size, uint32_t tid, int64_t *left);
/* A sampled block's record in a slot the allocator keeps for each SuperSlab block (alloc/prof.c): the free of a
 * sampled block finds its record there, with no lookup and no lock, whichever thread frees it. Large blocks have
 * no slot (NULL below): theirs go in trace/'s table by address. state says whose record the slot holds, if
 * anyone's: the pointer, the recording it belongs to (a fork child's starts anew) and whether it is live or was
 * freed (kept for a report of a double free of it). The other fields are written before state (release) and read
 * after it (acquire), as relaxed atomics, since the leak walk at the end may read a slot another thread rewrites. */
struct hkt_slot {
    _Atomic uint64_t state; /* pointer << 16 | recording << 2 | 1 live or 2 freed (trace/sampled.c); 0: unused */
    uint64_t tsc, seq;
    uint32_t size, stack, tid, cls; /* a SuperSlab block is at most 128 KiB */
};
/* Records a sampled allocation: stack, its record (in slot, or for a large block the table), event. */
void hkt_record_alloc(void *p, size_t size, unsigned cls, unsigned stage, uint32_t tid, struct hkt_slot *slot);
/* If p is a live sampled block (its record in slot, or with no slot in the table): marks it freed, records its
 * free and returns 1; else 0. */
int hkt_record_free(void *p, unsigned path, uint32_t tid, struct hkt_slot *slot);
/* Records a heap error (enum hkt_error_kind) with the calling thread's stack and, for a sampled block (the record
 * in slot, or the table), its allocation's. */
void hkt_record_error(unsigned kind, const void *p, size_t size, uint32_t tid, struct hkt_slot *slot);
/* The allocator's walk over every slot that may hold a live record: at the end, the leaks are read from them. */
typedef void hkt_slot_fn(const struct hkt_slot *slot, void *arg);
void hkt_set_slot_walker(void (*walk)(hkt_slot_fn *fn, void *arg));
/* The calling thread's return addresses outside libhakmem_prof.so, innermost first; how many. */
int hkt_backtrace(void **pc, int max);
void hkt_configure(const struct hkt_config *c);
/* Opens the recording (from a constructor, once libc is up): header, counter list, module map, writer thread. */
void hkt_start(int64_t *left); /* left: the calling thread's countdown */
/* Ends the recording at normal exit: every ring, a last snapshot, END. Before the stats segment goes away. */
void hkt_stop(void);
void hkt_thread_start(uint32_t tid);
void hkt_thread_exit(uint32_t tid, int64_t *left);
void hkt_fork_prepare(void);
void hkt_fork_parent(void);
void hkt_fork_child(void);
#endif
