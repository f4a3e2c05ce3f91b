/* hakprof top's internal face: the model every panel draws (filled by the live source or by the replay source),
 * the two sources and the drawing. Only hakprof/top*.c include it. */
#ifndef HP_TOP_H
#define HP_TOP_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include "../counters/counters.h"
#include "../trace/trace.h"

/* Below this the screen asks to be enlarged (and top refuses to start). */
#define HP_TOP_MIN_COLS 80
#define HP_TOP_MIN_LINES 24

/* ---- The model: what the screen shows at one moment ---- */

/* One call site: a recorded stack (the schema's call_sites row). Counts are estimates of the whole program from
 * the samples, exact when every allocation is sampled. */
struct hp_top_site {
    uint32_t stack;
    double allocs, bytes, frees, same, cross, live, live_bytes;
    double rate;        /* allocations per second over the last interval (live mode) */
    double prev_allocs; /* allocs at the previous interval, for rate */
    int labeled;        /* the fields below are filled in */
    char *function, *file, *module;
    int line;
    char *caller;       /* the function of the next frame out, which tells stacks through one call apart */
};

enum hp_thr_state { HP_THR_UNKNOWN, HP_THR_LIVE, HP_THR_EXITED };
/* One thread: a hakmem thread of the recording (sampled counts), or a counter slot of the stats segment (exact
 * counts of the live thread that holds it; slots carry no identity). */
struct hp_top_thread {
    uint32_t id;  /* hakmem thread number, or slot number */
    int32_t os_tid;
    char name[32];
    enum hp_thr_state state;
    double allocs, bytes, frees, cross; /* cross: frees of blocks another thread allocated (remote frees, slots) */
    double alloc_rate, free_rate;
    double prev_allocs, prev_frees;
    int seen;     /* scratch for the sources */
};

struct hp_top_frame {
    uint64_t ip;
    char *function, *file, *module;
    int line;
};

enum hp_top_mode { HP_MODE_LIVE, HP_MODE_REPLAY };

struct hp_top_model {
    enum hp_top_mode mode;
    /* the process */
    int pid;
    char cmdline[512];
    char source[640];    /* where the numbers come from, one short line */
    int ended;           /* the process has exited (live), or the run is over (replay, at the end) */
    char ended_note[160];
    double uptime;       /* seconds since the process started (live) or the position in the run (replay) */
    /* exact counters now and one interval earlier */
    int have_counters;
    uint64_t v[HKC_NVALUES], pv[HKC_NVALUES];
    double dt;           /* seconds between pv and v; 0 until there are two readings */
    /* sampled events */
    int have_events;     /* a recording is read for call sites and threads */
    char events_note[64];  /* short, for the header: exact, estimated, or why there are no call sites */
    char events_why[256];  /* the same at length, where the call sites would be */
    int exact;           /* every allocation sampled: the call-site numbers are exact counts */
    int lost_known;
    uint64_t lost;
    struct hp_top_site *sites;
    size_t nsites, capsites;
    uint32_t *site_index; /* open addressing: stack id + 1 -> index + 1 */
    size_t site_index_cap;
    struct hp_top_thread *threads;
    size_t nthreads, capthreads;
    uint32_t *thread_index; /* thread id -> index + 1 (ids are small and dense: numbers given in order, slots) */
    size_t thread_index_cap;
    int threads_are_slots;
    /* replay */
    size_t pos, npos;
    double duration;
    int playing;
    int incomplete;      /* the recording was cut short or damaged (the source line says where) */
    int scanning;        /* replay: the call sites at pos are being counted (a key interrupted the scan) */
};

void hp_model_init(struct hp_top_model *m, enum hp_top_mode mode);
void hp_model_free(struct hp_top_model *m);
/* The site of a stack, created (zeroed) when new. */
struct hp_top_site *hp_model_site(struct hp_top_model *m, uint32_t stack);
void hp_model_clear_sites(struct hp_top_model *m);
/* The thread with this id, created when new. */
struct hp_top_thread *hp_model_thread(struct hp_top_model *m, uint32_t id);
void hp_model_clear_threads(struct hp_top_model *m);
/* Sets a site's label (copies the strings). */
void hp_site_set_label(struct hp_top_site *s, const char *function, const char *file, int line, const char *module,
                       const char *caller);
void hp_frames_free(struct hp_top_frame *f, size_t n);

/* ---- Numbers computed from the exact counters (the report's definitions, so the two agree) ---- */
uint64_t hp_ctr_class_allocs(const uint64_t *v, unsigned cls);
uint64_t hp_ctr_class_frees(const uint64_t *v, unsigned cls);
uint64_t hp_ctr_allocs(const uint64_t *v);       /* every refill stage of every class, plus large allocations */
uint64_t hp_ctr_frees(const uint64_t *v);        /* tls_sll + ss_local + ss_remote frees, plus large frees */
int64_t hp_ctr_bytes_in_use(const uint64_t *v);  /* class size x blocks out, plus large bytes mapped and not freed */
/* The counter index of a refill stage's per-class counter (enum hkt_stage, below HKT_STAGE_LARGE). */
unsigned hp_stage_counter(unsigned stage);
/* The counter index of a free path's counter (enum hkt_path; large is scalar). */
unsigned hp_path_counter(unsigned path);
/* Maps a recording's counter (name as hkc_name spells it, width) to this build's first value; -1 if unknown. */
int hp_counter_first(const char *name, unsigned width);

/* ---- Formatting into a fixed width ---- */
/* A count in at most width characters: exact when it fits, else scaled (12.3k, 4.5M, 6.7G). */
const char *hp_fmt_count(double v, int width, char *buf, size_t len);
/* Bytes in at most width characters: 512, 12.3K, 4.5M (binary units). */
const char *hp_fmt_bytes(double v, int width, char *buf, size_t len);
/* Seconds as 12.3s, 4m05s, 2h03m. */
const char *hp_fmt_secs(double s, char *buf, size_t len);
double hp_now(void); /* CLOCK_MONOTONIC seconds */
/* src into dst[len], cut to fit (a name or a message shown in a field of fixed width). */
void hp_copy(char *dst, size_t len, const char *src);

/* ---- Sorting the call-site table ---- */
enum hp_sort_col { HP_COL_ALLOCS, HP_COL_RATE, HP_COL_BYTES, HP_COL_LIVE, HP_COL_FREES, HP_COL_SAME, HP_COL_CROSS,
                   HP_COL_SITE, HP_NCOLS };
extern const char *const hp_col_names[HP_NCOLS];
/* Sorts sites by col (descending for numbers, ascending for the site name; reverse flips it). */
void hp_sort_sites(struct hp_top_model *m, enum hp_sort_col col, int reverse);

/* The signal (SIGINT, SIGTERM, SIGHUP) that asked top to end, 0 if none; waits check it (top.c). */
extern volatile sig_atomic_t hp_top_signal;

/* ---- The live source (top_live.c): a running process's stats segment and, if it records, its recording ---- */
struct hp_live;
struct hp_live_opts {
    char **cmd;          /* start this (top -- CMD ARGS); NULL: attach to pid */
    int pid;
    const char *output;  /* -o: keep the recording here; NULL: a temporary file removed at exit */
    int force;
    const char *log;     /* the program's stdout and stderr; NULL: /dev/null */
    const char *stats_dir; /* NULL: $HAKMEM_STATS_DIR or /dev/shm */
};
/* Starts or attaches; on failure prints the one-line error and returns NULL with *status the exit status. */
struct hp_live *hp_live_open(const struct hp_live_opts *o, int *status);
/* Reads the counters (and the recording's new events) into the model. interval: the refresh interval. */
void hp_live_update(struct hp_live *l, struct hp_top_model *m, double interval);
/* The frames of a recorded stack, symbolized. 0 ok, -1 unknown. */
int hp_live_stack(struct hp_live *l, uint32_t stack, struct hp_top_frame **frames, size_t *n);
/* Fills in missing site labels (innermost frame). */
void hp_live_label_sites(struct hp_live *l, struct hp_top_model *m);
/* Stops a started program (SIGTERM to its process group, then SIGKILL) and frees everything; for a started
 * program *summary gets one line about how it ended ("" otherwise). */
void hp_live_close(struct hp_live *l, char *summary, size_t len);
/* The process id of a started program (0 when attached), for the signal path. */
int hp_live_child(const struct hp_live *l);

/* ---- The replay source (top_replay.c): a recording's database, stepped through its snapshots ---- */
struct hp_replay;
struct hp_replay_opts {
    const char *input;   /* a recording (.hkp) or a database */
    int force;           /* replace a database beside the recording that holds something else */
};
struct hp_replay *hp_replay_open(const struct hp_replay_opts *o, struct hp_top_model *m, int *status);
/* Moves to snapshot pos (clamped) and fills the model; window: seconds over which rates are taken. Returns 1 when
 * interruptible and a key press stopped the call-site scan (the counters are there, the call sites not yet). */
int hp_replay_seek(struct hp_replay *r, struct hp_top_model *m, size_t pos, double window, int interruptible);
/* The snapshot at or before t seconds from the start. */
size_t hp_replay_pos_at(const struct hp_replay *r, double t);
double hp_replay_time(const struct hp_replay *r, size_t pos);
int hp_replay_stack(struct hp_replay *r, uint32_t stack, struct hp_top_frame **frames, size_t *n);
void hp_replay_close(struct hp_replay *r);

/* ---- Drawing (top_draw.c) ---- */
enum hp_panel { HP_PANEL_REFILL, HP_PANEL_FREE, HP_PANEL_THREADS, HP_NPANELS };
enum hp_values { HP_VAL_COUNTS, HP_VAL_RATES, HP_VAL_SHARES, HP_NVALS };
struct hp_top_view {
    enum hp_sort_col sort;
    int reverse;
    size_t sel;          /* selected site (index into the sorted table) */
    uint32_t sel_stack;  /* its stack, so the selection follows the site when the order changes */
    size_t top;          /* first site shown */
    enum hp_panel panel;
    enum hp_values values;
    int help;            /* the help screen is up */
    int stack_open;      /* the stack screen is up */
    uint32_t stack_id;
    struct hp_top_frame *frames;
    size_t nframes;
    size_t stack_scroll;
    int stack_known;
    double interval;
    int site_rows;       /* rows of the site table in the last drawing (page up/down) */
};
void hp_draw(const struct hp_top_model *m, struct hp_top_view *v);
#endif
