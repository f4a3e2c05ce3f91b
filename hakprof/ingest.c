/* hakprof ingest: reads a recording (docs/format.md) in one pass and writes the SQLite database every view reads
 * (docs/sqlite-schema.md). Speed comes from one transaction, multi-row inserts and aggregates summed in C. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "../counters/counters.h"
#include "../trace/trace.h"
#include "hakprof.h"

/* Tables first (filled during the pass), then views (docs/sqlite-schema.md documents each column). Indexes that
 * only help queries are built after the bulk insert, in hp_index_sql. Every table has run_id so that several
 * processes (fork children, repeated runs) can share one database; ingest writes run 1. */
static const char hp_schema_sql[] =
    "CREATE TABLE runs(run_id INTEGER PRIMARY KEY, recording TEXT, recording_size INTEGER,"
    " recording_mtime_ns INTEGER, cmdline TEXT, exe TEXT, pid INTEGER, ppid INTEGER, start_realtime_ns INTEGER,"
    " start_time TEXT, duration_ns INTEGER, sample_mode TEXT, sample_period INTEGER, sample_seed INTEGER,"
    " stack_depth INTEGER, snapshot_ms INTEGER, build_id TEXT, lib_path TEXT, complete INTEGER, damage TEXT,"
    " end_reason TEXT, end_signal INTEGER, events INTEGER, allocs INTEGER, frees INTEGER, stacks INTEGER,"
    " snapshots INTEGER, lost INTEGER, writer_events INTEGER, start_tsc INTEGER, ns_per_tick REAL,"
    " ingested_at TEXT, ingest_seconds REAL, heap_errors INTEGER, leak_report INTEGER);\n"
    "CREATE TABLE settings(run_id INTEGER, name TEXT, value TEXT);\n"
    "CREATE TABLE threads(run_id INTEGER, tid INTEGER, os_tid INTEGER, name TEXT, start_ns INTEGER,"
    " exit_ns INTEGER, allocs INTEGER, bytes INTEGER, frees INTEGER, cross_thread_frees INTEGER,"
    " est_allocs REAL, est_bytes REAL, est_frees REAL, est_cross_thread_frees REAL,"
    " PRIMARY KEY(run_id, tid)) WITHOUT ROWID;\n"
    "CREATE TABLE lost(run_id INTEGER, tid INTEGER, events INTEGER);\n"
    "CREATE TABLE counter_defs(run_id INTEGER, counter_id INTEGER, name TEXT, grp TEXT, kind TEXT,"
    " first INTEGER, width INTEGER, meaning TEXT, PRIMARY KEY(run_id, counter_id)) WITHOUT ROWID;\n"
    "CREATE TABLE counters(run_id INTEGER, name TEXT, idx INTEGER, value INTEGER,"
    " PRIMARY KEY(run_id, name, idx)) WITHOUT ROWID;\n"
    "CREATE TABLE snapshots(run_id INTEGER, snap_id INTEGER, t_ns INTEGER, PRIMARY KEY(run_id, snap_id))"
    " WITHOUT ROWID;\n"
    "CREATE TABLE snapshot_values(run_id INTEGER, snap_id INTEGER, counter_id INTEGER, idx INTEGER,"
    " value INTEGER, delta INTEGER);\n"
    "CREATE TABLE size_classes(cls INTEGER PRIMARY KEY, size INTEGER);\n"
    "CREATE TABLE stages(stage INTEGER PRIMARY KEY, name TEXT, counter TEXT);\n"
    "CREATE TABLE free_paths(path INTEGER PRIMARY KEY, name TEXT, counter TEXT);\n"
    "CREATE TABLE modules(run_id INTEGER, module_id INTEGER, generation INTEGER, base INTEGER, lo INTEGER,"
    " hi INTEGER, path TEXT, build_id TEXT, is_main INTEGER, PRIMARY KEY(run_id, module_id)) WITHOUT ROWID;\n"
    "CREATE TABLE locations(run_id INTEGER, ip INTEGER, module_id INTEGER, function TEXT, symbolized INTEGER,"
    " offset INTEGER, file TEXT, line INTEGER, PRIMARY KEY(run_id, ip)) WITHOUT ROWID;\n"
    "CREATE TABLE stacks(run_id INTEGER, stack_id INTEGER, depth INTEGER, ip INTEGER,"
    " PRIMARY KEY(run_id, stack_id)) WITHOUT ROWID;\n"
    "CREATE TABLE stack_frames(run_id INTEGER, stack_id INTEGER, frame INTEGER, ip INTEGER);\n"
    "CREATE TABLE call_sites(run_id INTEGER, stack_id INTEGER, allocs INTEGER, bytes INTEGER, frees INTEGER,"
    " same_thread_frees INTEGER, cross_thread_frees INTEGER, frees_tls_sll INTEGER, frees_ss_local INTEGER,"
    " frees_ss_remote INTEGER, frees_large INTEGER, live INTEGER, live_bytes INTEGER, lifetime_ticks INTEGER,"
    " est_allocs REAL, est_bytes REAL, est_frees REAL, est_same_thread_frees REAL,"
    " est_cross_thread_frees REAL, est_live REAL, est_live_bytes REAL, PRIMARY KEY(run_id, stack_id))"
    " WITHOUT ROWID;\n"
    /* One row per sampled block: its allocation and, once freed, its free (NULL free_* while live). Half the rows
     * of an events table, and a block's whole story without a join. */
    "CREATE TABLE blocks(run_id INTEGER, tid INTEGER, seq INTEGER, ticks INTEGER, addr INTEGER, size INTEGER,"
    " cls INTEGER, stage INTEGER, stack_id INTEGER, free_tid INTEGER, free_ticks INTEGER, path INTEGER,"
    " lifetime_ticks INTEGER);\n"
    "CREATE TABLE free_matrix(run_id INTEGER, alloc_tid INTEGER, free_tid INTEGER, frees INTEGER,"
    " est_frees REAL, PRIMARY KEY(run_id, alloc_tid, free_tid)) WITHOUT ROWID;\n"
    /* Heap errors the debug checks caught (ERROR chunks), in the order they were written. The allocation columns
     * are NULL unless the block was sampled; (alloc_tid, alloc_seq) is then its row in blocks. */
    "CREATE TABLE errors(run_id INTEGER, error_id INTEGER, kind TEXT, tid INTEGER, t_ns INTEGER, addr INTEGER,"
    " size INTEGER, stack_id INTEGER, alloc_stack_id INTEGER, alloc_tid INTEGER, alloc_seq INTEGER,"
    " PRIMARY KEY(run_id, error_id)) WITHOUT ROWID;\n"
    "CREATE TABLE error_kinds(kind_no INTEGER PRIMARY KEY, kind TEXT, meaning TEXT);\n"
    /* The LEAKS chunk: sampled blocks still live at the end, by allocation stack (runs.leak_report says whether
     * the recording had one). */
    "CREATE TABLE leaks(run_id INTEGER, stack_id INTEGER, blocks INTEGER, bytes INTEGER, est_blocks INTEGER,"
    " est_bytes INTEGER, PRIMARY KEY(run_id, stack_id)) WITHOUT ROWID;\n"
    "CREATE TABLE windows(run_id INTEGER, t_ns INTEGER, open INTEGER);\n"
    "INSERT INTO stages VALUES (0,'tls_sll','refill_tls_sll_hit'),(1,'slab_free','refill_slab_free'),"
    " (2,'remote_drain','refill_remote_drain'),(3,'partial','refill_partial'),(4,'adopt','refill_adopt'),"
    " (5,'new_slab','refill_new_slab'),(6,'ss_cache','refill_ss_cache'),(7,'ss_os','refill_ss_os'),"
    " (8,'large','alloc_large');\n"
    "INSERT INTO free_paths VALUES (0,'tls_sll','free_tls_sll'),(1,'ss_local','free_ss_local'),"
    " (2,'ss_remote','free_ss_remote'),(3,'large','free_large');\n"
    "INSERT INTO error_kinds VALUES (1,'double_free','a block freed again while free'),"
    " (2,'foreign','free or realloc of a pointer hakmem never returned (not in its memory)'),"
    " (3,'interior','free or realloc of a pointer inside hakmem memory that is not a live block''s start"
    " (interior or misaligned)'),"
    " (4,'overflow','bytes past the requested size were written (guard bytes, HAKMEM_GUARD=1)'),"
    " (5,'use_after_free','a freed block was written before it was handed out again (HAKMEM_POISON=1)');\n"
    /* ---- views: what the documented queries and the report read ---- */
    "CREATE VIEW frames AS SELECT f.run_id, f.stack_id, f.frame, f.ip, m.path AS module, l.function, l.file,"
    " l.line FROM stack_frames f LEFT JOIN locations l ON l.run_id = f.run_id AND l.ip = f.ip"
    " LEFT JOIN modules m ON m.run_id = l.run_id AND m.module_id = l.module_id;\n"
    "CREATE VIEW sites AS SELECT c.*, COALESCE(l.function, '(no stack)') AS function, l.file, l.line,"
    " m.path AS module,"
    " CASE WHEN c.est_frees > 0 THEN c.est_same_thread_frees / c.est_frees END AS same_share,"
    " CASE WHEN c.est_frees > 0 THEN c.est_cross_thread_frees / c.est_frees END AS cross_share"
    " FROM call_sites c LEFT JOIN stacks s ON s.run_id = c.run_id AND s.stack_id = c.stack_id"
    " LEFT JOIN locations l ON l.run_id = s.run_id AND l.ip = s.ip"
    " LEFT JOIN modules m ON m.run_id = l.run_id AND m.module_id = l.module_id;\n"
    "CREATE VIEW site_ips AS SELECT s.run_id, s.ip, COALESCE(l.function, '(no stack)') AS function, l.file,"
    " l.line, m.path AS module, COUNT(*) AS stacks, SUM(c.allocs) AS allocs, SUM(c.bytes) AS bytes,"
    " SUM(c.frees) AS frees, SUM(c.same_thread_frees) AS same_thread_frees,"
    " SUM(c.cross_thread_frees) AS cross_thread_frees, SUM(c.live) AS live, SUM(c.live_bytes) AS live_bytes,"
    " SUM(c.est_allocs) AS est_allocs, SUM(c.est_bytes) AS est_bytes, SUM(c.est_frees) AS est_frees,"
    " SUM(c.est_same_thread_frees) AS est_same_thread_frees,"
    " SUM(c.est_cross_thread_frees) AS est_cross_thread_frees, SUM(c.est_live) AS est_live,"
    " SUM(c.est_live_bytes) AS est_live_bytes,"
    " CASE WHEN SUM(c.est_frees) > 0 THEN SUM(c.est_same_thread_frees) / SUM(c.est_frees) END AS same_share,"
    " CASE WHEN SUM(c.est_frees) > 0 THEN SUM(c.est_cross_thread_frees) / SUM(c.est_frees) END AS cross_share"
    " FROM call_sites c LEFT JOIN stacks s ON s.run_id = c.run_id AND s.stack_id = c.stack_id"
    " LEFT JOIN locations l ON l.run_id = s.run_id AND l.ip = s.ip"
    " LEFT JOIN modules m ON m.run_id = l.run_id AND m.module_id = l.module_id"
    " GROUP BY c.run_id, s.ip;\n"
    "CREATE VIEW site_functions AS SELECT run_id, function, module, COUNT(*) AS stacks, SUM(allocs) AS allocs,"
    " SUM(bytes) AS bytes, SUM(frees) AS frees, SUM(same_thread_frees) AS same_thread_frees,"
    " SUM(cross_thread_frees) AS cross_thread_frees, SUM(live) AS live, SUM(live_bytes) AS live_bytes,"
    " SUM(est_allocs) AS est_allocs, SUM(est_bytes) AS est_bytes, SUM(est_frees) AS est_frees,"
    " SUM(est_same_thread_frees) AS est_same_thread_frees, SUM(est_cross_thread_frees) AS est_cross_thread_frees,"
    " SUM(est_live) AS est_live, SUM(est_live_bytes) AS est_live_bytes,"
    " CASE WHEN SUM(est_frees) > 0 THEN SUM(est_same_thread_frees) / SUM(est_frees) END AS same_share,"
    " CASE WHEN SUM(est_frees) > 0 THEN SUM(est_cross_thread_frees) / SUM(est_frees) END AS cross_share"
    " FROM sites GROUP BY run_id, function, module;\n"
    "CREATE VIEW alloc_events AS SELECT b.run_id, b.tid, b.seq, CAST(b.ticks * r.ns_per_tick AS INTEGER) AS t_ns,"
    " b.addr, b.size, b.cls, z.size AS class_size, g.name AS stage, b.stack_id"
    " FROM blocks b JOIN runs r ON r.run_id = b.run_id LEFT JOIN stages g ON g.stage = b.stage"
    " LEFT JOIN size_classes z ON z.cls = b.cls;\n"
    "CREATE VIEW free_events AS SELECT b.run_id, b.free_tid AS tid, b.tid AS alloc_tid, b.seq AS alloc_seq,"
    " CAST(b.free_ticks * r.ns_per_tick AS INTEGER) AS t_ns, b.addr, b.size, b.cls, z.size AS class_size,"
    " p.name AS path, b.stack_id, CAST(b.lifetime_ticks * r.ns_per_tick AS INTEGER) AS lifetime_ns,"
    " (b.free_tid <> b.tid) AS cross_thread"
    " FROM blocks b JOIN runs r ON r.run_id = b.run_id LEFT JOIN free_paths p ON p.path = b.path"
    " LEFT JOIN size_classes z ON z.cls = b.cls WHERE b.free_tid IS NOT NULL;\n"
    "CREATE VIEW counter_totals AS SELECT d.run_id, d.name, d.grp, d.kind, COALESCE(SUM(c.value), 0) AS total,"
    " d.meaning FROM counter_defs d LEFT JOIN counters c ON c.run_id = d.run_id AND c.name = d.name"
    " GROUP BY d.run_id, d.counter_id;\n"
    "CREATE VIEW counter_timeline AS SELECT v.run_id, v.snap_id, s.t_ns, d.name, v.idx, v.value, v.delta"
    " FROM snapshot_values v JOIN snapshots s ON s.run_id = v.run_id AND s.snap_id = v.snap_id"
    " JOIN counter_defs d ON d.run_id = v.run_id AND d.counter_id = v.counter_id;\n"
    "CREATE VIEW stage_by_class AS SELECT c.run_id, c.idx AS cls, z.size, g.stage AS stage_no, g.name AS stage,"
    " c.value AS count FROM counters c JOIN stages g ON g.counter = c.name AND g.stage < 8"
    " JOIN size_classes z ON z.cls = c.idx"
    " UNION ALL SELECT run_id, 255, NULL, 8, 'large', value FROM counters WHERE name = 'alloc_large';\n"
    "CREATE VIEW path_by_class AS SELECT c.run_id, c.idx AS cls, z.size, p.path AS path_no, p.name AS path,"
    " c.value AS count FROM counters c JOIN free_paths p ON p.counter = c.name AND p.path < 3"
    " JOIN size_classes z ON z.cls = c.idx"
    " UNION ALL SELECT run_id, 255, NULL, 3, 'large', value FROM counters WHERE name = 'free_large';\n"
    "CREATE VIEW class_totals AS SELECT z.cls, z.size, r.run_id,"
    " (SELECT COALESCE(SUM(count), 0) FROM stage_by_class s WHERE s.run_id = r.run_id AND s.cls = z.cls)"
    "  AS allocs,"
    " (SELECT COALESCE(SUM(count), 0) FROM path_by_class p WHERE p.run_id = r.run_id AND p.cls = z.cls)"
    "  AS frees,"
    " (SELECT COALESCE(SUM(value), 0) FROM counters c WHERE c.run_id = r.run_id AND ((z.cls < 255 AND"
    "  c.name = 'free_same_thread' AND c.idx = z.cls) OR (z.cls = 255 AND c.name = 'free_large_same_thread')))"
    "  AS same_thread_frees,"
    " (SELECT COALESCE(SUM(value), 0) FROM counters c WHERE c.run_id = r.run_id AND ((z.cls < 255 AND"
    "  c.name = 'free_cross_thread' AND c.idx = z.cls) OR (z.cls = 255 AND c.name = 'free_large_cross_thread')))"
    "  AS cross_thread_frees"
    " FROM size_classes z CROSS JOIN runs r;\n"
    "CREATE VIEW run_totals AS SELECT r.run_id,"
    " (SELECT COALESCE(SUM(count), 0) FROM stage_by_class s WHERE s.run_id = r.run_id) AS allocs,"
    " (SELECT COALESCE(SUM(count), 0) FROM path_by_class p WHERE p.run_id = r.run_id) AS frees,"
    " (SELECT COALESCE(SUM(count * size), 0) FROM stage_by_class s WHERE s.run_id = r.run_id AND s.cls < 255)"
    " + (SELECT COALESCE(SUM(value), 0) FROM counters c WHERE c.run_id = r.run_id"
    "  AND c.name = 'large_bytes_allocated') AS bytes,"
    " (SELECT COALESCE(SUM(value), 0) FROM counters c WHERE c.run_id = r.run_id AND c.name = 'bytes_in_use_peak')"
    "  AS peak_in_use,"
    " (SELECT COALESCE(SUM(value), 0) FROM counters c WHERE c.run_id = r.run_id AND c.name = 'thread_started')"
    "  AS threads"
    " FROM runs r;\n"
    "CREATE VIEW error_events AS SELECT e.run_id, e.error_id, e.kind, e.tid, e.t_ns, e.addr, e.size, e.stack_id,"
    " COALESCE(l.function, '(no stack)') AS function, l.file, l.line, m.path AS module, e.alloc_stack_id,"
    " e.alloc_tid, e.alloc_seq, la.function AS alloc_function, la.file AS alloc_file, la.line AS alloc_line"
    " FROM errors e LEFT JOIN stacks s ON s.run_id = e.run_id AND s.stack_id = e.stack_id"
    " LEFT JOIN locations l ON l.run_id = s.run_id AND l.ip = s.ip"
    " LEFT JOIN modules m ON m.run_id = l.run_id AND m.module_id = l.module_id"
    " LEFT JOIN stacks sa ON sa.run_id = e.run_id AND sa.stack_id = e.alloc_stack_id"
    " LEFT JOIN locations la ON la.run_id = sa.run_id AND la.ip = sa.ip;\n"
    "CREATE VIEW leak_sites AS SELECT k.*, COALESCE(l.function, '(no stack)') AS function, l.file, l.line,"
    " m.path AS module FROM leaks k LEFT JOIN stacks s ON s.run_id = k.run_id AND s.stack_id = k.stack_id"
    " LEFT JOIN locations l ON l.run_id = s.run_id AND l.ip = s.ip"
    " LEFT JOIN modules m ON m.run_id = l.run_id AND m.module_id = l.module_id;\n"
    "CREATE VIEW remote_depth AS SELECT c.run_id, c.idx AS bucket,"
    " CASE c.idx WHEN 0 THEN '1' WHEN 1 THEN '2-3' WHEN 2 THEN '4-7' WHEN 3 THEN '8-15' WHEN 4 THEN '16-31'"
    " WHEN 5 THEN '32-63' WHEN 6 THEN '64-127' ELSE '128+' END AS depth, c.value AS drains"
    " FROM counters c WHERE c.name = 'remote_depth';\n";

/* After the bulk insert: an index costs less built once over sorted data than maintained row by row. */
static const char hp_index_sql[] = "CREATE INDEX stack_frames_stack ON stack_frames(run_id, stack_id, frame);\n"
                                   "CREATE INDEX snapshot_values_snap ON snapshot_values(run_id, snap_id);\n";

/* ---- Bulk inserts. Rows are collected in C arrays and go in with one INSERT ... SELECT from hp_rows, an
 * eponymous virtual table over the array being flushed: that skips binding every value and the per-statement
 * work, which dominate SQLite's cost for narrow integer rows (measured: two thirds of the time of 64-row
 * multi-VALUES statements). The module exists only on ingest's connection; the database never mentions it. ---- */
#define HP_ROWS 4096
#define HP_MAXCOLS 12
#define HP_NULL INT64_MIN /* a value that stands for SQL NULL in a batch */
struct hp_batch {
    sqlite3_stmt *insert;
    int ncols, pending;
    int64_t vals[HP_ROWS * HP_MAXCOLS];
};
/* What hp_rows yields while a batch is flushed. */
struct hp_rows_src {
    const int64_t *vals;
    int ncols, nrows;
};

struct hp_ingest {
    const char *recording, *db_path;
    sqlite3 *db;
    struct hkt_reader *rd;
    char err[512];          /* first SQL or I/O error, reported once */
    /* header */
    int have_header;
    struct {
        int32_t pid, ppid;
        uint64_t start_realtime_ns, start_mono_ns, start_tsc, tsc_per_sec, sample_period, sample_seed;
        uint32_t sample_mode, stack_depth, snapshot_ms;
        char *cmdline, *exe, *settings, *build_id, *lib_path;
    } h;
    /* counters */
    uint32_t ndefs, nvalues;
    size_t capdefs, capvalues, capvalues2;
    int32_t *val_counter;   /* value index -> counter_id */
    uint32_t *val_idx;      /* value index -> position within its counter */
    char **def_names;
    uint64_t *last, *prev;  /* the last snapshot's values, and the one before for deltas */
    size_t caplast;
    int have_snapshot;
    uint64_t nsnapshots;
    uint64_t first_tsc, first_mono, last_tsc, last_mono; /* clock pairs for the tick-to-ns fit */
    /* modules: every entry of every generation, searched newest first */
    struct hp_mod *mods;
    size_t nmods, capmods;
    uint32_t cur_generation;
    /* distinct instruction pointers, symbolized at the end: ip -> location */
    struct hp_loc {
        uint64_t ip;
        int32_t mod;        /* index into mods, -1 if no module covers the ip */
    } *locs;
    size_t nlocs, caplocs;
    uint64_t *ipmap_keys;
    uint32_t *ipmap_vals;
    size_t ipmap_cap;
    /* per stack id, the sampled events' sums; ids are looked up in a map, so a stray huge id costs one entry */
    struct hp_site {
        uint32_t id;
        uint64_t allocs, bytes, frees, same, cross, path[HKT_NPATHS], live_bytes_freed, lifetime;
        double est_allocs, est_bytes, est_frees, est_same, est_cross, est_bytes_freed;
    } *sites;
    size_t nsites, capsites;
    uint64_t *sitemap_keys;
    uint32_t *sitemap_vals;
    size_t sitemap_cap;
    uint64_t nstacks;
    /* Half blocks waiting for their other half: an allocation not freed yet, or a free read before its
     * allocation (threads' batches reach the file in drain order, not in time order). A block's row is written
     * when both halves met, or at the end. (tid, seq) always name the allocation. */
    struct hp_pending {
        uint64_t seq, ticks, addr, size, lifetime; /* ticks: the allocation's, or the free's if is_free */
        uint32_t tid, stack, free_tid;
        uint8_t cls, stage, path, is_free;
    } *pend;
    size_t npend, cappend;      /* entries used (live or on the free list) */
    uint32_t *pend_free;        /* indices of entries to reuse */
    size_t npend_free, cappend_free;
    uint32_t *pmap;             /* open addressing over pend, UINT32_MAX empty */
    size_t pmap_cap, plive;
    /* per thread number */
    struct hp_thread {
        uint32_t tid;
        int started, exited;
        int32_t os_tid;
        uint64_t start_tsc, exit_tsc;
        char *name;
        uint64_t allocs, bytes, frees, cross;
        double est_allocs, est_bytes, est_frees, est_cross;
    } *threads;
    size_t nthreads, capthreads;
    uint64_t *threadmap_keys;
    uint32_t *threadmap_vals;
    size_t threadmap_cap;
    /* (alloc_tid, free_tid) pairs */
    struct hp_pair {
        uint32_t alloc_tid, free_tid;
        uint64_t frees;
        double est;
    } *pairs;
    size_t npairs, cappairs;
    uint64_t *pairmap_keys;
    uint32_t *pairmap_vals;
    size_t pairmap_cap;
    /* heap errors, written at the end when ticks convert to nanoseconds (they are few: the checks report bugs) */
    struct hkt_error *errors;
    size_t nerrors, caperrors;
    int have_leaks;
    /* totals */
    uint64_t nallocs, nfrees, lost;
    int have_end;
    struct hkt_end end;
    /* statements */
    struct hp_rows_src rows_src; /* the module's client data: the batch being flushed */
    struct hp_batch b_blocks, b_frames, b_snapvals;
    sqlite3_stmt *s_snapshot, *s_lost, *s_module, *s_stack, *s_leak, *s_window;
    /* progress */
    double t0, next_progress;
    int tty, progress_shown;
};

static double hp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int hp_sql_error(struct hp_ingest *g, const char *what)
{
    if (!g->err[0])
        snprintf(g->err, sizeof g->err, "%s: %s: %s", g->db_path, what, sqlite3_errmsg(g->db));
    return -1;
}

static int hp_exec(struct hp_ingest *g, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(g->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        if (!g->err[0])
            snprintf(g->err, sizeof g->err, "%s: %s", g->db_path, msg ? msg : sqlite3_errmsg(g->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static sqlite3_stmt *hp_prepare(struct hp_ingest *g, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(g->db, sql, -1, &st, NULL) != SQLITE_OK) {
        hp_sql_error(g, "preparing a statement");
        return NULL;
    }
    return st;
}

/* Runs a statement whose parameters are bound, and makes it ready for the next row. */
static int hp_step(struct hp_ingest *g, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return hp_sql_error(g, "inserting");
    return 0;
}

/* hp_rows: a cursor walks the rows of the batch being flushed; columns c0..c11, NULL past the batch's width. */
struct hp_rows_vtab {
    sqlite3_vtab base;
    struct hp_rows_src *src;
};
struct hp_rows_cursor {
    sqlite3_vtab_cursor base;
    int row, nrows, ncols;
    const int64_t *at; /* the current row's values: xColumn runs once per value, so it only indexes */
};

static int hp_rows_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out,
                           char **err)
{
    (void)argc;
    (void)argv;
    (void)err;
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11)");
    if (rc != SQLITE_OK)
        return rc;
    struct hp_rows_vtab *v = sqlite3_malloc(sizeof *v);
    if (!v)
        return SQLITE_NOMEM;
    memset(v, 0, sizeof *v);
    v->src = aux;
    *out = &v->base;
    return SQLITE_OK;
}

static int hp_rows_disconnect(sqlite3_vtab *v)
{
    sqlite3_free(v);
    return SQLITE_OK;
}

static int hp_rows_best_index(sqlite3_vtab *v, sqlite3_index_info *info)
{
    (void)v;
    info->estimatedCost = HP_ROWS;
    return SQLITE_OK;
}

static int hp_rows_open(sqlite3_vtab *v, sqlite3_vtab_cursor **out)
{
    (void)v;
    struct hp_rows_cursor *c = sqlite3_malloc(sizeof *c);
    if (!c)
        return SQLITE_NOMEM;
    memset(c, 0, sizeof *c);
    *out = &c->base;
    return SQLITE_OK;
}

static int hp_rows_close(sqlite3_vtab_cursor *c)
{
    sqlite3_free(c);
    return SQLITE_OK;
}

static int hp_rows_filter(sqlite3_vtab_cursor *vc, int idx, const char *idxs, int argc, sqlite3_value **argv)
{
    (void)idx;
    (void)idxs;
    (void)argc;
    (void)argv;
    struct hp_rows_cursor *c = (struct hp_rows_cursor *)vc;
    const struct hp_rows_src *src = ((struct hp_rows_vtab *)vc->pVtab)->src;
    c->row = 0;
    c->nrows = src->nrows;
    c->ncols = src->ncols;
    c->at = src->vals;
    return SQLITE_OK;
}

static int hp_rows_next(sqlite3_vtab_cursor *vc)
{
    struct hp_rows_cursor *c = (struct hp_rows_cursor *)vc;
    c->row++;
    c->at += c->ncols;
    return SQLITE_OK;
}

static int hp_rows_eof(sqlite3_vtab_cursor *vc)
{
    struct hp_rows_cursor *c = (struct hp_rows_cursor *)vc;
    return c->row >= c->nrows;
}

static int hp_rows_column(sqlite3_vtab_cursor *vc, sqlite3_context *ctx, int col)
{
    const struct hp_rows_cursor *c = (const struct hp_rows_cursor *)vc;
    int64_t v = col < c->ncols ? c->at[col] : HP_NULL;
    if (v == HP_NULL)
        sqlite3_result_null(ctx);
    else
        sqlite3_result_int64(ctx, v);
    return SQLITE_OK;
}

static int hp_rows_rowid(sqlite3_vtab_cursor *c, sqlite3_int64 *rowid)
{
    *rowid = ((struct hp_rows_cursor *)c)->row;
    return SQLITE_OK;
}

/* xCreate NULL and xConnect set: an eponymous-only table, usable without CREATE VIRTUAL TABLE. */
static const sqlite3_module hp_rows_module = {
    .iVersion = 1,
    .xConnect = hp_rows_connect,
    .xBestIndex = hp_rows_best_index,
    .xDisconnect = hp_rows_disconnect,
    .xOpen = hp_rows_open,
    .xClose = hp_rows_close,
    .xFilter = hp_rows_filter,
    .xNext = hp_rows_next,
    .xEof = hp_rows_eof,
    .xColumn = hp_rows_column,
    .xRowid = hp_rows_rowid,
};

static int hp_batch_init(struct hp_ingest *g, struct hp_batch *b, const char *table, int ncols)
{
    /* run_id is a literal; the batch holds the other columns in table order. */
    char sql[512];
    size_t len = (size_t)snprintf(sql, sizeof sql, "INSERT INTO %s SELECT 1", table);
    for (int c = 0; c < ncols && len < sizeof sql - 16; c++)
        len += (size_t)snprintf(sql + len, sizeof sql - len, ", c%d", c);
    snprintf(sql + len, sizeof sql - len, " FROM hp_rows");
    b->insert = hp_prepare(g, sql);
    b->ncols = ncols;
    b->pending = 0;
    return b->insert ? 0 : -1;
}

static int hp_batch_flush(struct hp_ingest *g, struct hp_batch *b)
{
    if (!b->pending)
        return 0;
    g->rows_src.vals = b->vals;
    g->rows_src.ncols = b->ncols;
    g->rows_src.nrows = b->pending;
    b->pending = 0;
    return hp_step(g, b->insert);
}

/* The row's values go straight into the batch; the caller fills exactly ncols of them. */
static inline int64_t *hp_batch_row(struct hp_batch *b)
{
    return b->vals + b->pending * b->ncols;
}

static inline int hp_batch_commit_row(struct hp_ingest *g, struct hp_batch *b)
{
    if (++b->pending == HP_ROWS)
        return hp_batch_flush(g, b);
    return 0;
}

static void hp_batch_free(struct hp_batch *b)
{
    sqlite3_finalize(b->insert);
}

/* ---- growth and small hash maps (open addressing, keys never 0) ---- */
static void *hp_grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(p, n * elem);
    if (!q) {
        fprintf(stderr, "hakprof ingest: out of memory\n");
        exit(HP_EXIT_USAGE);
    }
    memset((char *)q + *cap * elem, 0, (n - *cap) * elem);
    *cap = n;
    return q;
}

static inline uint64_t hp_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

/* Returns the slot of key: its value is UINT32_MAX if the key is not there yet. */
static uint32_t *hp_map_slot(uint64_t **keys, uint32_t **vals, size_t *cap, size_t count, uint64_t key)
{
    if ((count + 1) * 2 > *cap) {
        size_t ncap = *cap ? *cap * 2 : 1024;
        uint64_t *nk = calloc(ncap, sizeof *nk);
        uint32_t *nv = malloc(ncap * sizeof *nv);
        if (!nk || !nv) {
            fprintf(stderr, "hakprof ingest: out of memory\n");
            exit(HP_EXIT_USAGE);
        }
        for (size_t i = 0; i < *cap; i++) {
            if (!(*keys)[i])
                continue;
            size_t j = hp_hash((*keys)[i]) & (ncap - 1);
            while (nk[j])
                j = (j + 1) & (ncap - 1);
            nk[j] = (*keys)[i];
            nv[j] = (*vals)[i];
        }
        free(*keys);
        free(*vals);
        *keys = nk;
        *vals = nv;
        *cap = ncap;
    }
    size_t j = hp_hash(key) & (*cap - 1);
    while ((*keys)[j] && (*keys)[j] != key)
        j = (j + 1) & (*cap - 1);
    if (!(*keys)[j]) {
        (*keys)[j] = key;
        (*vals)[j] = UINT32_MAX;
    }
    return &(*vals)[j];
}

double hp_sample_weight(unsigned mode, uint64_t period, uint64_t size)
{
    if (mode == HKT_SAMPLE_COUNT)
        return (double)(period ? period : 1);
    if (mode != HKT_SAMPLE_BYTES || !period)
        return 1.0;
    double p = -expm1(-(double)(size ? size : 1) / (double)period);
    return p > 0 ? 1.0 / p : 1.0;
}

static struct hp_site *hp_site(struct hp_ingest *g, uint32_t stack)
{
    uint32_t *slot = hp_map_slot(&g->sitemap_keys, &g->sitemap_vals, &g->sitemap_cap, g->nsites, (uint64_t)stack + 1);
    if (*slot == UINT32_MAX) {
        g->sites = hp_grow(g->sites, &g->capsites, g->nsites + 1, sizeof *g->sites);
        g->sites[g->nsites].id = stack;
        *slot = (uint32_t)g->nsites++;
    }
    return &g->sites[*slot];
}

static struct hp_thread *hp_thread(struct hp_ingest *g, uint32_t tid)
{
    uint32_t *slot =
        hp_map_slot(&g->threadmap_keys, &g->threadmap_vals, &g->threadmap_cap, g->nthreads, (uint64_t)tid + 1);
    if (*slot == UINT32_MAX) {
        g->threads = hp_grow(g->threads, &g->capthreads, g->nthreads + 1, sizeof *g->threads);
        g->threads[g->nthreads].tid = tid;
        *slot = (uint32_t)g->nthreads++;
    }
    return &g->threads[*slot];
}

/* ---- records ---- */
static int hp_on_header(struct hp_ingest *g, const struct hkt_header *h)
{
    if (g->have_header)
        return 0;
    g->have_header = 1;
    g->h.pid = h->pid;
    g->h.ppid = h->ppid;
    g->h.start_realtime_ns = h->start_realtime_ns;
    g->h.start_mono_ns = h->start_mono_ns;
    g->h.start_tsc = h->start_tsc;
    g->h.tsc_per_sec = h->tsc_per_sec;
    g->h.sample_mode = h->sample_mode;
    g->h.sample_period = h->sample_period;
    g->h.sample_seed = h->sample_seed;
    g->h.stack_depth = h->stack_depth;
    g->h.snapshot_ms = h->snapshot_ms;
    g->h.cmdline = hp_xstrdup("ingest", h->cmdline);
    g->h.exe = hp_xstrdup("ingest", h->exe);
    g->h.settings = hp_xstrdup("ingest", h->settings);
    g->h.build_id = hp_xstrdup("ingest", h->build_id);
    g->h.lib_path = hp_xstrdup("ingest", h->lib_path);
    g->first_tsc = g->last_tsc = h->start_tsc;
    g->first_mono = g->last_mono = h->start_mono_ns;

    sqlite3_stmt *st = hp_prepare(g, "INSERT INTO settings VALUES (1, ?, ?)");
    if (!st)
        return -1;
    for (const char *p = g->h.settings; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (len) {
            size_t nlen = eq ? (size_t)(eq - p) : len;
            sqlite3_bind_text(st, 1, p, (int)nlen, SQLITE_TRANSIENT);
            if (eq)
                sqlite3_bind_text(st, 2, eq + 1, (int)(len - nlen - 1), SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(st, 2);
            if (hp_step(g, st)) {
                sqlite3_finalize(st);
                return -1;
            }
        }
        p += len + (nl ? 1 : 0);
    }
    sqlite3_finalize(st);
    return 0;
}

static const char *hp_kind_name(uint32_t kind)
{
    static const char *const names[] = {"scalar", "class", "depth", "gauge"};
    return kind < 4 ? names[kind] : "unknown";
}

static int hp_on_counter_def(struct hp_ingest *g, const struct hkt_counter_def *d)
{
    sqlite3_stmt *st = hp_prepare(g, "INSERT INTO counter_defs VALUES (1, ?, ?, ?, ?, ?, ?, ?)");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, d->index);
    sqlite3_bind_text(st, 2, d->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, d->group, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, hp_kind_name(d->kind), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, d->first);
    sqlite3_bind_int64(st, 6, d->width);
    sqlite3_bind_text(st, 7, d->meaning, -1, SQLITE_STATIC);
    int rc = hp_step(g, st);
    sqlite3_finalize(st);
    if (rc)
        return -1;
    /* Map each value of the snapshots to its counter. A definition that points past what we can hold is not
     * trusted: its values are ignored rather than guessed. */
    uint64_t end = (uint64_t)d->first + d->width;
    if (d->width == 0 || end > (1u << 20) || d->index >= (1u << 16))
        return 0;
    if (end > g->nvalues) {
        g->val_counter = hp_grow(g->val_counter, &g->capvalues, end, sizeof *g->val_counter);
        g->val_idx = hp_grow(g->val_idx, &g->capvalues2, end, sizeof *g->val_idx);
        for (size_t i = g->nvalues; i < end; i++)
            g->val_counter[i] = -1;
        g->nvalues = (uint32_t)end;
    }
    for (uint32_t i = 0; i < d->width; i++) {
        g->val_counter[d->first + i] = (int32_t)d->index;
        g->val_idx[d->first + i] = i;
    }
    if (d->index >= g->ndefs) {
        g->def_names = hp_grow(g->def_names, &g->capdefs, (size_t)d->index + 1, sizeof *g->def_names);
        g->ndefs = d->index + 1;
    }
    free(g->def_names[d->index]);
    g->def_names[d->index] = hp_xstrdup("ingest", d->name);
    return 0;
}

static int hp_on_module(struct hp_ingest *g, const struct hkt_module *m)
{
    g->mods = hp_grow(g->mods, &g->capmods, g->nmods + 1, sizeof *g->mods);
    struct hp_mod *e = &g->mods[g->nmods];
    e->generation = m->generation;
    e->base = m->base;
    e->lo = m->lo;
    e->hi = m->hi;
    int is_main = !m->path[0];
    e->path = hp_xstrdup("ingest", is_main ? g->h.exe : m->path);
    e->build_id = hp_xstrdup("ingest", m->build_id);
    if (m->generation > g->cur_generation)
        g->cur_generation = m->generation;
    sqlite3_stmt *st = g->s_module;
    sqlite3_bind_int64(st, 1, (int64_t)g->nmods);
    sqlite3_bind_int64(st, 2, m->generation);
    sqlite3_bind_int64(st, 3, (int64_t)m->base);
    sqlite3_bind_int64(st, 4, (int64_t)m->lo);
    sqlite3_bind_int64(st, 5, (int64_t)m->hi);
    sqlite3_bind_text(st, 6, e->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, e->build_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 8, is_main);
    g->nmods++;
    return hp_step(g, st);
}

static int hp_on_stack(struct hp_ingest *g, const struct hkt_stack *s)
{
    g->nstacks++;
    sqlite3_stmt *st = g->s_stack;
    sqlite3_bind_int64(st, 1, s->id);
    sqlite3_bind_int64(st, 2, s->depth);
    if (s->depth)
        sqlite3_bind_int64(st, 3, (int64_t)s->ips[0]);
    else
        sqlite3_bind_null(st, 3);
    if (hp_step(g, st))
        return -1;
    for (uint32_t i = 0; i < s->depth; i++) {
        uint64_t ip = s->ips[i];
        uint32_t *slot = hp_map_slot(&g->ipmap_keys, &g->ipmap_vals, &g->ipmap_cap, g->nlocs, ip ? ip : ~0ull);
        if (*slot == UINT32_MAX) {
            g->locs = hp_grow(g->locs, &g->caplocs, g->nlocs + 1, sizeof *g->locs);
            g->locs[g->nlocs].ip = ip;
            g->locs[g->nlocs].mod = hp_module_of(g->mods, g->nmods, ip);
            *slot = (uint32_t)g->nlocs++;
        }
        int64_t *row = hp_batch_row(&g->b_frames);
        row[0] = s->id;
        row[1] = i;
        row[2] = (int64_t)ip;
        if (hp_batch_commit_row(g, &g->b_frames))
            return -1;
    }
    return 0;
}

/* ---- half blocks by (tid, seq): linear probing with backward-shift delete ---- */
static inline size_t hp_pend_hash(uint32_t tid, uint64_t seq, size_t cap)
{
    return hp_hash(seq * 0x9e3779b97f4a7c15ull ^ tid) & (cap - 1);
}

static void hp_pmap_grow(struct hp_ingest *g)
{
    size_t ncap = g->pmap_cap ? g->pmap_cap * 2 : 4096;
    uint32_t *nm = malloc(ncap * sizeof *nm);
    if (!nm) {
        fprintf(stderr, "hakprof ingest: out of memory\n");
        exit(HP_EXIT_USAGE);
    }
    memset(nm, 0xff, ncap * sizeof *nm);
    for (size_t i = 0; i < g->pmap_cap; i++) {
        uint32_t e = g->pmap[i];
        if (e == UINT32_MAX)
            continue;
        size_t j = hp_pend_hash(g->pend[e].tid, g->pend[e].seq, ncap);
        while (nm[j] != UINT32_MAX)
            j = (j + 1) & (ncap - 1);
        nm[j] = e;
    }
    free(g->pmap);
    g->pmap = nm;
    g->pmap_cap = ncap;
}

/* The map slot holding (tid, seq), or SIZE_MAX. */
static size_t hp_pend_find(const struct hp_ingest *g, uint32_t tid, uint64_t seq)
{
    if (!g->plive)
        return SIZE_MAX;
    size_t mask = g->pmap_cap - 1;
    for (size_t j = hp_pend_hash(tid, seq, g->pmap_cap);; j = (j + 1) & mask) {
        uint32_t e = g->pmap[j];
        if (e == UINT32_MAX)
            return SIZE_MAX;
        if (g->pend[e].seq == seq && g->pend[e].tid == tid)
            return j;
    }
}

/* A new entry for (tid, seq), which is not in the map. */
static struct hp_pending *hp_pend_insert(struct hp_ingest *g, uint32_t tid, uint64_t seq)
{
    if ((g->plive + 1) * 2 > g->pmap_cap)
        hp_pmap_grow(g);
    uint32_t e;
    if (g->npend_free) {
        e = g->pend_free[--g->npend_free];
    } else {
        g->pend = hp_grow(g->pend, &g->cappend, g->npend + 1, sizeof *g->pend);
        e = (uint32_t)g->npend++;
    }
    size_t mask = g->pmap_cap - 1, j = hp_pend_hash(tid, seq, g->pmap_cap);
    while (g->pmap[j] != UINT32_MAX)
        j = (j + 1) & mask;
    g->pmap[j] = e;
    g->plive++;
    struct hp_pending *p = &g->pend[e];
    memset(p, 0, sizeof *p);
    p->tid = tid;
    p->seq = seq;
    return p;
}

/* Takes the entry in slot j out of the map; its storage stays valid until the next insert. */
static struct hp_pending *hp_pend_remove(struct hp_ingest *g, size_t j)
{
    size_t mask = g->pmap_cap - 1;
    uint32_t found = g->pmap[j];
    /* Backward shift: pull later members of the probe run into the hole so lookups never stop early. An entry
     * may move into the hole unless its home lies cyclically in (hole, k]. */
    size_t hole = j;
    for (size_t k = (j + 1) & mask; g->pmap[k] != UINT32_MAX; k = (k + 1) & mask) {
        uint32_t e = g->pmap[k];
        size_t home = hp_pend_hash(g->pend[e].tid, g->pend[e].seq, g->pmap_cap);
        if (((k - home) & mask) >= ((k - hole) & mask)) {
            g->pmap[hole] = e;
            hole = k;
        }
    }
    g->pmap[hole] = UINT32_MAX;
    g->plive--;
    g->pend_free = hp_grow(g->pend_free, &g->cappend_free, g->npend_free + 1, sizeof *g->pend_free);
    g->pend_free[g->npend_free++] = found;
    return &g->pend[found];
}

/* Row columns 0..7: the allocation. */
static inline void hp_row_alloc(int64_t *row, const struct hkt_alloc *a, uint64_t start_tsc)
{
    row[0] = a->tid;
    row[1] = (int64_t)a->seq;
    row[2] = (int64_t)(a->tsc - start_tsc);
    row[3] = (int64_t)a->addr;
    row[4] = (int64_t)a->size;
    row[5] = a->cls;
    row[6] = a->stage;
    row[7] = a->stack;
}

/* Row columns 8..11: the free. */
static inline void hp_row_free(int64_t *row, const struct hkt_free *f, uint64_t start_tsc)
{
    row[8] = f->tid;
    row[9] = (int64_t)(f->tsc - start_tsc);
    row[10] = f->path;
    row[11] = (int64_t)f->lifetime;
}

/* A whole row from a half block that never met its other half. */
static int hp_write_half(struct hp_ingest *g, const struct hp_pending *p)
{
    int64_t *row = hp_batch_row(&g->b_blocks);
    row[0] = p->tid;
    row[1] = (int64_t)p->seq;
    row[3] = (int64_t)p->addr;
    row[4] = (int64_t)p->size;
    row[5] = p->cls;
    row[7] = p->stack;
    if (p->is_free) {
        /* The allocation is not in the recording (before it started, or lost): the free says almost everything
         * about it; its time follows from the lifetime, its stage is unknown. */
        row[2] = (int64_t)(p->ticks - p->lifetime);
        row[6] = HP_NULL;
        row[8] = p->free_tid;
        row[9] = (int64_t)p->ticks;
        row[10] = p->path;
        row[11] = (int64_t)p->lifetime;
    } else {
        row[2] = (int64_t)p->ticks;
        row[6] = p->stage;
        row[8] = row[9] = row[10] = row[11] = HP_NULL; /* live at the end */
    }
    return hp_batch_commit_row(g, &g->b_blocks);
}

/* At the end: the blocks still live, and frees whose allocation never came. */
static int hp_write_halves(struct hp_ingest *g)
{
    for (size_t i = 0; i < g->pmap_cap; i++)
        if (g->pmap[i] != UINT32_MAX && hp_write_half(g, &g->pend[g->pmap[i]]))
            return -1;
    return hp_batch_flush(g, &g->b_blocks);
}

static int hp_on_alloc(struct hp_ingest *g, const struct hkt_alloc *a)
{
    g->nallocs++;
    double w = hp_sample_weight(g->h.sample_mode, g->h.sample_period, a->size);
    struct hp_site *s = hp_site(g, a->stack);
    s->allocs++;
    s->bytes += a->size;
    s->est_allocs += w;
    s->est_bytes += w * (double)a->size;
    struct hp_thread *t = hp_thread(g, a->tid);
    t->allocs++;
    t->bytes += a->size;
    t->est_allocs += w;
    t->est_bytes += w * (double)a->size;

    size_t j = hp_pend_find(g, a->tid, a->seq);
    if (j != SIZE_MAX) {
        struct hp_pending *p = hp_pend_remove(g, j);
        if (p->is_free) { /* its free came first */
            int64_t *row = hp_batch_row(&g->b_blocks);
            hp_row_alloc(row, a, g->h.start_tsc);
            row[8] = p->free_tid;
            row[9] = (int64_t)p->ticks;
            row[10] = p->path;
            row[11] = (int64_t)p->lifetime;
            return hp_batch_commit_row(g, &g->b_blocks);
        }
        /* The same (tid, seq) allocated twice (a writer bug): the first can never be matched now. */
        if (hp_write_half(g, p))
            return -1;
    }
    struct hp_pending *p = hp_pend_insert(g, a->tid, a->seq);
    p->ticks = a->tsc - g->h.start_tsc;
    p->addr = a->addr;
    p->size = a->size;
    p->stack = a->stack;
    p->cls = (uint8_t)a->cls;
    p->stage = (uint8_t)a->stage;
    return 0;
}

static int hp_on_free(struct hp_ingest *g, const struct hkt_free *f)
{
    g->nfrees++;
    double w = hp_sample_weight(g->h.sample_mode, g->h.sample_period, f->size);
    int cross = f->tid != f->alloc_tid;
    struct hp_site *s = hp_site(g, f->stack);
    s->frees++;
    s->est_frees += w;
    s->live_bytes_freed += f->size;
    s->est_bytes_freed += w * (double)f->size;
    s->lifetime += f->lifetime;
    if (cross) {
        s->cross++;
        s->est_cross += w;
    } else {
        s->same++;
        s->est_same += w;
    }
    if (f->path < HKT_NPATHS)
        s->path[f->path]++;
    struct hp_thread *t = hp_thread(g, f->tid);
    t->frees++;
    t->cross += (uint64_t)cross;
    t->est_frees += w;
    t->est_cross += cross ? w : 0.0;
    uint64_t key = ((uint64_t)f->alloc_tid << 32 | f->tid) + 1;
    uint32_t *slot = hp_map_slot(&g->pairmap_keys, &g->pairmap_vals, &g->pairmap_cap, g->npairs, key);
    if (*slot == UINT32_MAX) {
        g->pairs = hp_grow(g->pairs, &g->cappairs, g->npairs + 1, sizeof *g->pairs);
        g->pairs[g->npairs].alloc_tid = f->alloc_tid;
        g->pairs[g->npairs].free_tid = f->tid;
        *slot = (uint32_t)g->npairs++;
    }
    g->pairs[*slot].frees++;
    g->pairs[*slot].est += w;

    size_t j = hp_pend_find(g, f->alloc_tid, f->alloc_seq);
    if (j != SIZE_MAX) {
        struct hp_pending *p = hp_pend_remove(g, j);
        if (!p->is_free) {
            int64_t *row = hp_batch_row(&g->b_blocks);
            row[0] = p->tid;
            row[1] = (int64_t)p->seq;
            row[2] = (int64_t)p->ticks;
            row[3] = (int64_t)p->addr;
            row[4] = (int64_t)p->size;
            row[5] = p->cls;
            row[6] = p->stage;
            row[7] = p->stack;
            hp_row_free(row, f, g->h.start_tsc);
            return hp_batch_commit_row(g, &g->b_blocks);
        }
        /* The same block freed twice (a writer bug): keep both frees, each without its allocation. */
        if (hp_write_half(g, p))
            return -1;
    }
    /* Its allocation has not been read (yet): wait for it. */
    struct hp_pending *p = hp_pend_insert(g, f->alloc_tid, f->alloc_seq);
    p->is_free = 1;
    p->ticks = f->tsc - g->h.start_tsc;
    p->addr = f->addr;
    p->size = f->size;
    p->lifetime = f->lifetime;
    p->stack = f->stack;
    p->free_tid = f->tid;
    p->cls = (uint8_t)f->cls;
    p->path = (uint8_t)f->path;
    return 0;
}

static int hp_on_snapshot(struct hp_ingest *g, const struct hkt_snapshot *s)
{
    uint32_t n = s->nvalues < g->nvalues ? s->nvalues : g->nvalues;
    /* Sized by the definitions read so far (they come before the first snapshot; more later would grow it). */
    if (g->nvalues > g->caplast || !g->last) {
        size_t old = g->caplast;
        g->last = hp_grow(g->last, &g->caplast, g->nvalues + 1, sizeof *g->last);
        g->prev = hp_grow(g->prev, &old, g->nvalues + 1, sizeof *g->prev);
    }
    uint64_t snap = ++g->nsnapshots;
    sqlite3_stmt *st = g->s_snapshot;
    sqlite3_bind_int64(st, 1, (int64_t)snap);
    sqlite3_bind_int64(st, 2, (int64_t)(s->mono_ns - g->h.start_mono_ns));
    if (hp_step(g, st))
        return -1;
    memcpy(g->prev, g->last, g->nvalues * sizeof *g->last);
    memset(g->last, 0, g->nvalues * sizeof *g->last);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v = s->values[i];
        g->last[i] = v;
        /* Zeros are the rule (48 classes, few in use): a missing row means 0. */
        if (!v || g->val_counter[i] < 0)
            continue;
        int64_t *row = hp_batch_row(&g->b_snapvals);
        row[0] = (int64_t)snap;
        row[1] = g->val_counter[i];
        row[2] = g->val_idx[i];
        row[3] = (int64_t)v;
        row[4] = (int64_t)(v - g->prev[i]);
        if (hp_batch_commit_row(g, &g->b_snapvals))
            return -1;
    }
    g->have_snapshot = 1;
    if (s->tsc > g->last_tsc) {
        g->last_tsc = s->tsc;
        g->last_mono = s->mono_ns;
    }
    return 0;
}

static void hp_on_thread(struct hp_ingest *g, const struct hkt_thread *th)
{
    struct hp_thread *t = hp_thread(g, th->tid);
    if (th->os_tid)
        t->os_tid = th->os_tid;
    if (th->kind == HKT_THREAD_START) {
        t->started = 1;
        t->start_tsc = th->tsc;
    } else if (th->kind == HKT_THREAD_EXIT) {
        t->exited = 1;
        t->exit_tsc = th->tsc;
    }
    if (th->name && th->name[0]) {
        free(t->name);
        t->name = hp_xstrdup("ingest", th->name);
    }
}

static int hp_on_lost(struct hp_ingest *g, const struct hkt_lost *l)
{
    g->lost += l->events;
    sqlite3_bind_int64(g->s_lost, 1, l->tid);
    sqlite3_bind_int64(g->s_lost, 2, (int64_t)l->events);
    return hp_step(g, g->s_lost);
}

static void hp_on_error(struct hp_ingest *g, const struct hkt_error *e)
{
    g->errors = hp_grow(g->errors, &g->caperrors, g->nerrors + 1, sizeof *g->errors);
    g->errors[g->nerrors++] = *e;
}

static int hp_on_leak(struct hp_ingest *g, const struct hkt_leak *l)
{
    g->have_leaks = 1;
    sqlite3_stmt *st = g->s_leak;
    sqlite3_bind_int64(st, 1, l->stack);
    sqlite3_bind_int64(st, 2, (int64_t)l->blocks);
    sqlite3_bind_int64(st, 3, (int64_t)l->bytes);
    sqlite3_bind_int64(st, 4, (int64_t)l->est_blocks);
    sqlite3_bind_int64(st, 5, (int64_t)l->est_bytes);
    return hp_step(g, st);
}

static int hp_on_window(struct hp_ingest *g, const struct hkt_window *w)
{
    sqlite3_stmt *st = g->s_window;
    sqlite3_bind_int64(st, 1, (int64_t)(w->mono_ns - g->h.start_mono_ns));
    sqlite3_bind_int(st, 2, (int)w->open);
    return hp_step(g, st);
}

static int hp_write_errors(struct hp_ingest *g, double ns_per_tick)
{
    sqlite3_stmt *st = hp_prepare(g, "INSERT INTO errors VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < g->nerrors && !rc; i++) {
        const struct hkt_error *e = &g->errors[i];
        sqlite3_bind_int64(st, 1, (int64_t)i + 1);
        sqlite3_bind_text(st, 2, hkt_error_name(e->kind), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, e->tid);
        sqlite3_bind_int64(st, 4, (int64_t)((double)(int64_t)(e->tsc - g->h.start_tsc) * ns_per_tick));
        sqlite3_bind_int64(st, 5, (int64_t)e->addr);
        sqlite3_bind_int64(st, 6, (int64_t)e->size);
        sqlite3_bind_int64(st, 7, e->stack);
        /* A sampled block's sample number is never 0 (writers count from 1): 0 says it was not sampled. */
        if (e->alloc_seq) {
            sqlite3_bind_int64(st, 8, e->alloc_stack);
            sqlite3_bind_int64(st, 9, e->alloc_tid);
            sqlite3_bind_int64(st, 10, (int64_t)e->alloc_seq);
        } else {
            sqlite3_bind_null(st, 8);
            sqlite3_bind_null(st, 9);
            sqlite3_bind_null(st, 10);
        }
        rc = hp_step(g, st);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- the end: symbols, aggregates, the run row ---- */
static double hp_ns_per_tick(const struct hp_ingest *g)
{
    /* The slope between the first and last clock pairs; it needs some distance to be better than the writer's
     * own calibration. */
    if (g->last_tsc > g->first_tsc && g->last_mono > g->first_mono + 10000000)
        return (double)(g->last_mono - g->first_mono) / (double)(g->last_tsc - g->first_tsc);
    if (g->h.tsc_per_sec)
        return 1e9 / (double)g->h.tsc_per_sec;
    if (g->last_tsc > g->first_tsc && g->last_mono > g->first_mono)
        return (double)(g->last_mono - g->first_mono) / (double)(g->last_tsc - g->first_tsc);
    return 1.0;
}

static int hp_write_locations(struct hp_ingest *g)
{
    sqlite3_stmt *st = hp_prepare(g, "INSERT INTO locations VALUES (1, ?, ?, ?, ?, ?, ?, ?)");
    if (!st)
        return -1;
    struct hp_sym *sym = hp_sym_new();
    int rc = 0;
    char label[512];
    for (size_t i = 0; i < g->nlocs && !rc; i++) {
        const struct hp_loc *l = &g->locs[i];
        const struct hp_mod *m = l->mod >= 0 ? &g->mods[l->mod] : NULL;
        struct hp_frame_info fi;
        int found = hp_sym_frame(sym, m, l->ip, &fi, label, sizeof label);
        sqlite3_bind_int64(st, 1, (int64_t)l->ip);
        if (m)
            sqlite3_bind_int64(st, 2, l->mod);
        else
            sqlite3_bind_null(st, 2);
        if (found) {
            sqlite3_bind_text(st, 3, fi.function, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(st, 4, 1);
            sqlite3_bind_int64(st, 5, (int64_t)fi.offset + 1);
        } else {
            sqlite3_bind_text(st, 3, label, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(st, 4, 0);
            sqlite3_bind_null(st, 5);
        }
        if (found && fi.file && fi.line > 0) {
            sqlite3_bind_text(st, 6, fi.file, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(st, 7, fi.line);
        } else {
            sqlite3_bind_null(st, 6);
            sqlite3_bind_null(st, 7);
        }
        rc = hp_step(g, st);
    }
    if (sym)
        hp_sym_free(sym);
    sqlite3_finalize(st);
    return rc;
}

static int hp_write_aggregates(struct hp_ingest *g, double ns_per_tick)
{
    sqlite3_stmt *st = hp_prepare(g, "INSERT INTO call_sites VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                                     " ?, ?, ?, ?, ?, ?, ?)");
    if (!st)
        return -1;
    for (size_t i = 0; i < g->nsites; i++) {
        const struct hp_site *s = &g->sites[i];
        if (!s->allocs && !s->frees)
            continue;
        int64_t v[] = {(int64_t)s->id, (int64_t)s->allocs, (int64_t)s->bytes, (int64_t)s->frees, (int64_t)s->same,
                       (int64_t)s->cross, (int64_t)s->path[0], (int64_t)s->path[1], (int64_t)s->path[2],
                       (int64_t)s->path[3], (int64_t)s->allocs - (int64_t)s->frees,
                       (int64_t)s->bytes - (int64_t)s->live_bytes_freed, (int64_t)s->lifetime};
        int k = 1;
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
            sqlite3_bind_int64(st, k++, v[i]);
        double e[] = {s->est_allocs, s->est_bytes, s->est_frees, s->est_same, s->est_cross,
                      s->est_allocs - s->est_frees, s->est_bytes - s->est_bytes_freed};
        for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
            sqlite3_bind_double(st, k++, e[i]);
        if (hp_step(g, st)) {
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);

    st = hp_prepare(g, "INSERT INTO threads VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st)
        return -1;
    for (size_t i = 0; i < g->nthreads; i++) {
        const struct hp_thread *t = &g->threads[i];
        sqlite3_bind_int64(st, 1, t->tid);
        if (t->os_tid)
            sqlite3_bind_int64(st, 2, t->os_tid);
        else
            sqlite3_bind_null(st, 2);
        if (t->name)
            sqlite3_bind_text(st, 3, t->name, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 3);
        if (t->started)
            sqlite3_bind_int64(st, 4, (int64_t)((double)(int64_t)(t->start_tsc - g->h.start_tsc) * ns_per_tick));
        else
            sqlite3_bind_null(st, 4);
        if (t->exited)
            sqlite3_bind_int64(st, 5, (int64_t)((double)(int64_t)(t->exit_tsc - g->h.start_tsc) * ns_per_tick));
        else
            sqlite3_bind_null(st, 5);
        sqlite3_bind_int64(st, 6, (int64_t)t->allocs);
        sqlite3_bind_int64(st, 7, (int64_t)t->bytes);
        sqlite3_bind_int64(st, 8, (int64_t)t->frees);
        sqlite3_bind_int64(st, 9, (int64_t)t->cross);
        sqlite3_bind_double(st, 10, t->est_allocs);
        sqlite3_bind_double(st, 11, t->est_bytes);
        sqlite3_bind_double(st, 12, t->est_frees);
        sqlite3_bind_double(st, 13, t->est_cross);
        if (hp_step(g, st)) {
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);

    st = hp_prepare(g, "INSERT INTO free_matrix VALUES (1, ?, ?, ?, ?)");
    if (!st)
        return -1;
    for (size_t i = 0; i < g->npairs; i++) {
        sqlite3_bind_int64(st, 1, g->pairs[i].alloc_tid);
        sqlite3_bind_int64(st, 2, g->pairs[i].free_tid);
        sqlite3_bind_int64(st, 3, (int64_t)g->pairs[i].frees);
        sqlite3_bind_double(st, 4, g->pairs[i].est);
        if (hp_step(g, st)) {
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);

    /* Final counter totals: the last snapshot (the writer takes one at exit), non-zero values only. */
    st = hp_prepare(g, "INSERT INTO counters VALUES (1, ?, ?, ?)");
    if (!st)
        return -1;
    for (uint32_t i = 0; g->have_snapshot && i < g->nvalues; i++) {
        int32_t c = g->val_counter[i];
        if (!g->last[i] || c < 0 || (uint32_t)c >= g->ndefs || !g->def_names[c])
            continue;
        sqlite3_bind_text(st, 1, g->def_names[c], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, g->val_idx[i]);
        sqlite3_bind_int64(st, 3, (int64_t)g->last[i]);
        if (hp_step(g, st)) {
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);

    st = hp_prepare(g, "INSERT INTO size_classes VALUES (?, ?)");
    if (!st)
        return -1;
    for (unsigned c = 0; c <= HKC_NCLASSES; c++) {
        /* The recording does not carry the class table; this build's is the writer's (same source tree). */
        sqlite3_bind_int(st, 1, c < HKC_NCLASSES ? (int)c : 255);
        if (c < HKC_NCLASSES)
            sqlite3_bind_int64(st, 2, hkc_class_size[c]);
        else
            sqlite3_bind_null(st, 2);
        if (hp_step(g, st)) {
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);
    return 0;
}

static void hp_iso_time(uint64_t realtime_ns, char *buf, size_t len)
{
    time_t sec = (time_t)(realtime_ns / 1000000000u);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03uZ", (unsigned)(realtime_ns / 1000000u % 1000u));
}

static int hp_write_run(struct hp_ingest *g, double ns_per_tick, const char *damage, int complete,
                        const struct stat *rst, double seconds)
{
    sqlite3_stmt *st = hp_prepare(g, "INSERT INTO runs VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                                     " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st)
        return -1;
    char abs[PATH_MAX], started[64], now_s[64], mode[64];
    const char *rec = realpath(g->recording, abs) ? abs : g->recording;
    hp_iso_time(g->h.start_realtime_ns, started, sizeof started);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    hp_iso_time((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, now_s, sizeof now_s);
    snprintf(mode, sizeof mode, "%s", hkt_sample_mode_name(g->h.sample_mode));
    uint64_t end_mono = g->have_end ? g->end.mono_ns : g->last_mono;
    static const char *const reasons[] = {"exit", "signal", "exec"};
    int k = 1;
    sqlite3_bind_text(st, k++, rec, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, k++, (int64_t)rst->st_size);
    sqlite3_bind_int64(st, k++, (int64_t)rst->st_mtim.tv_sec * 1000000000 + rst->st_mtim.tv_nsec);
    sqlite3_bind_text(st, k++, g->h.cmdline, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, k++, g->h.exe, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, k++, g->h.pid);
    sqlite3_bind_int64(st, k++, g->h.ppid);
    sqlite3_bind_int64(st, k++, (int64_t)g->h.start_realtime_ns);
    sqlite3_bind_text(st, k++, started, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, k++, end_mono > g->h.start_mono_ns ? (int64_t)(end_mono - g->h.start_mono_ns) : 0);
    sqlite3_bind_text(st, k++, mode, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, k++, (int64_t)g->h.sample_period);
    sqlite3_bind_int64(st, k++, (int64_t)g->h.sample_seed);
    sqlite3_bind_int64(st, k++, g->h.stack_depth);
    sqlite3_bind_int64(st, k++, g->h.snapshot_ms);
    sqlite3_bind_text(st, k++, g->h.build_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, k++, g->h.lib_path, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, k++, complete);
    if (damage)
        sqlite3_bind_text(st, k++, damage, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, k++);
    if (g->have_end) {
        sqlite3_bind_text(st, k++, g->end.reason < 3 ? reasons[g->end.reason] : "unknown", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, k++, g->end.signo);
    } else {
        sqlite3_bind_null(st, k++);
        sqlite3_bind_null(st, k++);
    }
    sqlite3_bind_int64(st, k++, (int64_t)(g->nallocs + g->nfrees));
    sqlite3_bind_int64(st, k++, (int64_t)g->nallocs);
    sqlite3_bind_int64(st, k++, (int64_t)g->nfrees);
    sqlite3_bind_int64(st, k++, (int64_t)g->nstacks);
    sqlite3_bind_int64(st, k++, (int64_t)g->nsnapshots);
    sqlite3_bind_int64(st, k++, (int64_t)(g->lost > (g->have_end ? g->end.lost : 0) ? g->lost : g->end.lost));
    if (g->have_end)
        sqlite3_bind_int64(st, k++, (int64_t)g->end.events);
    else
        sqlite3_bind_null(st, k++);
    sqlite3_bind_int64(st, k++, (int64_t)g->h.start_tsc);
    sqlite3_bind_double(st, k++, ns_per_tick);
    sqlite3_bind_text(st, k++, now_s, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, k++, seconds);
    sqlite3_bind_int64(st, k++, (int64_t)g->nerrors);
    sqlite3_bind_int(st, k++, g->have_leaks);
    int rc = hp_step(g, st);
    sqlite3_finalize(st);
    return rc;
}

/* ---- progress ---- */
static void hp_progress(struct hp_ingest *g, int final)
{
    double t = hp_now() - g->t0;
    uint64_t ev = g->nallocs + g->nfrees;
    if (!final) {
        if (t < 1.0 || t < g->next_progress)
            return;
        /* A terminal gets one line rewritten four times a second; a log (not a tty) a new line every 5 s. */
        g->next_progress = t + (g->tty ? 0.25 : 5.0);
        uint64_t off = hkt_offset(g->rd), size = hkt_file_size(g->rd);
        fprintf(stderr, "%shakprof ingest: %.1f / %.1f MiB (%3.0f%%), %llu events, %.2f M events/s%s",
                g->tty ? "\r" : "", (double)off / 1048576.0, (double)size / 1048576.0,
                size ? 100.0 * (double)off / (double)size : 0.0, (unsigned long long)ev, (double)ev / t / 1e6,
                g->tty ? "   " : "\n");
        g->progress_shown = g->tty;
        return;
    }
    if (g->progress_shown)
        fprintf(stderr, "\r\033[K");
}

static void hp_free_state(struct hp_ingest *g)
{
    free(g->h.cmdline);
    free(g->h.exe);
    free(g->h.settings);
    free(g->h.build_id);
    free(g->h.lib_path);
    free(g->val_counter);
    free(g->val_idx);
    for (uint32_t i = 0; i < g->ndefs; i++)
        free(g->def_names[i]);
    free(g->def_names);
    free(g->last);
    free(g->prev);
    for (size_t i = 0; i < g->nmods; i++) {
        free(g->mods[i].path);
        free(g->mods[i].build_id);
    }
    free(g->mods);
    free(g->locs);
    free(g->ipmap_keys);
    free(g->ipmap_vals);
    free(g->sites);
    free(g->sitemap_keys);
    free(g->sitemap_vals);
    for (size_t i = 0; i < g->nthreads; i++)
        free(g->threads[i].name);
    free(g->threads);
    free(g->threadmap_keys);
    free(g->threadmap_vals);
    free(g->pairs);
    free(g->pairmap_keys);
    free(g->pairmap_vals);
    free(g->pend);
    free(g->pend_free);
    free(g->pmap);
    free(g->errors);
}

static int hp_prepare_all(struct hp_ingest *g)
{
    if (hp_batch_init(g, &g->b_blocks, "blocks", 12) || hp_batch_init(g, &g->b_frames, "stack_frames", 3) ||
        hp_batch_init(g, &g->b_snapvals, "snapshot_values", 5))
        return -1;
    g->s_snapshot = hp_prepare(g, "INSERT INTO snapshots VALUES (1, ?, ?)");
    g->s_lost = hp_prepare(g, "INSERT INTO lost VALUES (1, ?, ?)");
    g->s_module = hp_prepare(g, "INSERT INTO modules VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)");
    g->s_stack = hp_prepare(g, "INSERT INTO stacks VALUES (1, ?, ?, ?)");
    g->s_leak = hp_prepare(g, "INSERT INTO leaks VALUES (1, ?, ?, ?, ?, ?)");
    g->s_window = hp_prepare(g, "INSERT INTO windows VALUES (1, ?, ?)");
    return g->s_snapshot && g->s_lost && g->s_module && g->s_stack && g->s_leak && g->s_window ? 0 : -1;
}

static void hp_finalize_all(struct hp_ingest *g)
{
    hp_batch_free(&g->b_blocks);
    hp_batch_free(&g->b_frames);
    hp_batch_free(&g->b_snapvals);
    sqlite3_finalize(g->s_snapshot);
    sqlite3_finalize(g->s_lost);
    sqlite3_finalize(g->s_module);
    sqlite3_finalize(g->s_stack);
    sqlite3_finalize(g->s_leak);
    sqlite3_finalize(g->s_window);
}

/* The pass over the records. Returns 0 when the reader stopped (end or damage), -1 on a database error. */
static int hp_read_all(struct hp_ingest *g)
{
    struct hkt_record rec;
    uint64_t n = 0;
    int rc;
    while ((rc = hkt_next(g->rd, &rec)) == 1) {
        int bad = 0;
        if (!g->have_header && rec.type != HKT_REC_HEADER)
            continue; /* nothing means anything before the header; the reader should not yield this */
        switch (rec.type) {
        case HKT_REC_HEADER: bad = hp_on_header(g, &rec.u.header); break;
        case HKT_REC_COUNTER_DEF: bad = hp_on_counter_def(g, &rec.u.counter_def); break;
        case HKT_REC_MODULE: bad = hp_on_module(g, &rec.u.module); break;
        case HKT_REC_STACK: bad = hp_on_stack(g, &rec.u.stack); break;
        case HKT_REC_ALLOC: bad = hp_on_alloc(g, &rec.u.alloc); break;
        case HKT_REC_FREE: bad = hp_on_free(g, &rec.u.free); break;
        case HKT_REC_SNAPSHOT: bad = hp_on_snapshot(g, &rec.u.snapshot); break;
        case HKT_REC_THREAD: hp_on_thread(g, &rec.u.thread); break;
        case HKT_REC_LOST: bad = hp_on_lost(g, &rec.u.lost); break;
        case HKT_REC_WINDOW: bad = hp_on_window(g, &rec.u.window); break;
        case HKT_REC_ERROR: hp_on_error(g, &rec.u.error); break;
        case HKT_REC_LEAK: bad = hp_on_leak(g, &rec.u.leak); break;
        case HKT_REC_END:
            g->have_end = 1;
            g->end = rec.u.end;
            if (rec.u.end.tsc > g->last_tsc && rec.u.end.mono_ns) {
                g->last_tsc = rec.u.end.tsc;
                g->last_mono = rec.u.end.mono_ns;
            }
            break;
        }
        if (bad)
            return -1;
        if ((++n & 0x3fff) == 0)
            hp_progress(g, 0);
    }
    if (hp_batch_flush(g, &g->b_blocks) || hp_batch_flush(g, &g->b_frames) || hp_batch_flush(g, &g->b_snapvals) ||
        hp_write_halves(g))
        return -1;
    return 0;
}

int hp_ingest_file(const char *verb, const char *recording, const char *db_path, int force)
{
    struct hp_ingest *g = calloc(1, sizeof *g);
    if (!g)
        return hp_fail(verb, "out of memory");
    g->recording = recording;
    g->db_path = db_path;
    g->t0 = hp_now();
    g->tty = isatty(2);
    int status = HP_EXIT_USAGE;
    char tmp[PATH_MAX + 64];
    tmp[0] = 0;

    struct stat rst, dst;
    g->rd = hkt_open(recording, g->err, sizeof g->err);
    if (!g->rd) {
        hp_fail(verb, "%s", g->err[0] ? g->err : recording);
        goto out;
    }
    if (stat(recording, &rst) != 0) {
        hp_fail(verb, "%s: %s", recording, strerror(errno));
        goto out;
    }
    if (hp_check_output(verb, db_path, force, HP_K_DATABASE))
        goto out;
    if (stat(db_path, &dst) == 0) {
        if (dst.st_dev == rst.st_dev && dst.st_ino == rst.st_ino) {
            hp_fail(verb, "%s: the database would overwrite the recording", db_path);
            goto out;
        }
        if (!force) {
            hp_fail(verb, "%s exists (use -f to replace it)", db_path);
            goto out;
        }
    }
    /* Built under a temporary name and renamed at the end: an interrupted ingest never leaves a database that
     * looks whole, and -f replaces the old one only once the new one is complete. */
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", db_path, (int)getpid());
    hp_tmp_guard(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        hp_fail(verb, "cannot write %s: %s (give another database path: -o, or --sqlite under hakprof report)",
                db_path, strerror(errno));
        tmp[0] = 0;
        goto out;
    }
    close(fd);
    if (sqlite3_open_v2(tmp, &g->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        hp_fail(verb, "%s: %s", tmp, g->db ? sqlite3_errmsg(g->db) : "cannot open");
        goto out;
    }
    if (sqlite3_create_module(g->db, "hp_rows", &hp_rows_module, &g->rows_src) != SQLITE_OK) {
        hp_sql_error(g, "registering hp_rows");
        goto db_error;
    }
    /* The database is rebuilt from the recording if anything goes wrong, so durability is not worth a journal
     * or a single fsync; the big page cache keeps the B-tree tops in memory during the bulk insert. */
    if (hp_exec(g, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA locking_mode=EXCLUSIVE;"
                   " PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY; BEGIN;") ||
        hp_exec(g, hp_schema_sql) || hp_prepare_all(g))
        goto db_error;

    if (hp_read_all(g))
        goto db_error;
    if (!g->have_header) {
        const char *e = hkt_error(g->rd);
        if (e && e[0])
            hp_fail(verb, "%s", e);
        else
            hp_fail(verb, "%s: no header chunk: not a hakmem recording (or cut before its header)", recording);
        goto out;
    }
    int complete = hkt_complete(g->rd);
    const char *rerr = hkt_error(g->rd);
    char damage[600];
    damage[0] = 0;
    if (rerr && rerr[0])
        snprintf(damage, sizeof damage, "%s", rerr);
    else if (!complete)
        snprintf(damage, sizeof damage, "%s: byte %llu: cut short (no END chunk: the program was killed or is "
                 "still running)", recording, (unsigned long long)hkt_offset(g->rd));

    double ns_per_tick = hp_ns_per_tick(g);
    /* An empty LEAKS chunk yields no record: the reader says whether there was one. */
    g->have_leaks |= hkt_has_leaks(g->rd);
    if (hp_write_locations(g) || hp_write_aggregates(g, ns_per_tick) || hp_write_errors(g, ns_per_tick) ||
        hp_write_run(g, ns_per_tick, damage[0] ? damage : NULL, complete && !damage[0], &rst, hp_now() - g->t0))
        goto db_error;
    char ver[64];
    snprintf(ver, sizeof ver, "PRAGMA user_version=%d;", HP_DB_SCHEMA_VERSION);
    if (hp_exec(g, hp_index_sql) || hp_exec(g, ver) || hp_exec(g, "COMMIT;"))
        goto db_error;
    hp_finalize_all(g);
    if (sqlite3_close(g->db) != SQLITE_OK) {
        hp_fail(verb, "%s: closing the database failed", tmp);
        g->db = NULL;
        goto out;
    }
    g->db = NULL;
    if (rename(tmp, db_path) != 0) {
        hp_fail(verb, "cannot rename %s to %s: %s", tmp, db_path, strerror(errno));
        goto out;
    }
    tmp[0] = 0;

    hp_progress(g, 1);
    double secs = hp_now() - g->t0;
    uint64_t ev = g->nallocs + g->nfrees;
    fprintf(stderr, "hakprof ingest: %s -> %s: %llu events (%llu allocs, %llu frees), %llu stacks, %llu snapshots"
                    " in %.2f s (%.2f M events/s)%s\n",
            recording, db_path, (unsigned long long)ev, (unsigned long long)g->nallocs,
            (unsigned long long)g->nfrees, (unsigned long long)g->nstacks, (unsigned long long)g->nsnapshots, secs,
            secs > 0 ? (double)ev / secs / 1e6 : 0.0, complete && !damage[0] ? "" : ", INCOMPLETE");
    if (g->nerrors)
        fprintf(stderr, "hakprof ingest: %s: %llu heap error%s recorded (hakprof report lists them; table errors)\n",
                recording, (unsigned long long)g->nerrors, g->nerrors == 1 ? "" : "s");
    if (damage[0]) {
        fprintf(stderr, "hakprof ingest: warning: %s; ingested what came before it (runs.complete = 0)\n", damage);
        status = 1;
    } else {
        status = HP_EXIT_OK;
    }
    goto out;

db_error:
    hp_progress(g, 1);
    hp_fail(verb, "%s", g->err[0] ? g->err : "database error");
out:
    if (g->db) {
        hp_finalize_all(g);
        sqlite3_close(g->db);
    }
    if (tmp[0])
        unlink(tmp);
    hp_tmp_guard(NULL);
    if (g->rd)
        hkt_close(g->rd);
    hp_free_state(g);
    free(g);
    return status;
}

static void hp_ingest_usage(FILE *f)
{
    fprintf(f, "usage: hakprof ingest RECORDING [-o DB] [-f]\n"
               "  Reads a recording (hakprof record, HAKMEM_RECORD) into a SQLite database: the run, threads,\n"
               "  counters and their snapshots, stacks symbolized from the recorded module map, per-call-site\n"
               "  aggregates, every sampled event, the heap errors the debug checks caught (table errors) and the\n"
               "  leak report (table leaks). Tables and example queries: docs/sqlite-schema.md.\n"
               "  -o, --output DB  the database to write (default: RECORDING without .hkp, plus .db)\n"
               "  -f, --force      replace DB if it exists (otherwise an existing DB is an error); a recording or\n"
               "                   anything but a regular file is never replaced\n"
               "  --               ends the options (a RECORDING whose name starts with '-')\n"
               "  A damaged or cut-short recording is ingested up to the damage, with a warning naming the file\n"
               "  and byte offset, and the run marked incomplete (runs.complete = 0); the exit status is still 0.\n"
               "  Exit status: 0 ok (also partial), 2 usage or input error.\n");
}

int hp_ingest_main(int argc, char **argv)
{
    const char *rec = NULL, *db = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            hp_ingest_usage(stdout);
            return HP_EXIT_OK;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (++i >= argc)
                return hp_fail("ingest", "%s needs a file name", a);
            db = argv[i];
        } else if (!strncmp(a, "-o", 2) && a[2]) {
            db = a + 2;
        } else if (!strncmp(a, "--output=", 9)) {
            db = a + 9;
        } else if (!strcmp(a, "--") && i + 1 < argc && !rec) {
            rec = argv[++i]; /* a recording whose name starts with '-' */
        } else if (a[0] == '-' && a[1]) {
            return hp_fail("ingest", "unknown option %s (try hakprof ingest --help)", a);
        } else if (!rec) {
            rec = a;
        } else {
            return hp_fail("ingest", "one recording at a time (got %s and %s)", rec, a);
        }
    }
    if (!rec)
        return hp_fail("ingest", "no recording given (usage: hakprof ingest RECORDING [-o DB] [-f]; try --help)");
    if (db && !*db)
        return hp_fail("ingest", "-o needs a file name, not an empty one");
    char buf[PATH_MAX + 8];
    if (!db) {
        hp_default_db(rec, buf, sizeof buf);
        db = buf;
    }
    int rc = hp_ingest_file("ingest", rec, db, force);
    return rc == 1 ? HP_EXIT_OK : rc;
}
