/* hakprof top's replay source: a recording's SQLite database (ingested first when needed), stepped through its
 * counter snapshots; call sites and threads at a moment are the sampled blocks allocated (and freed) by then. */
#define _GNU_SOURCE
#include <limits.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hakprof.h"
#include "top.h"

struct hp_label {
    uint32_t stack;
    char *function, *file, *module, *caller;
    int line;
};

struct hp_rthread {
    uint32_t tid;
    int32_t os_tid;
    char name[32];
    int64_t start_ns, exit_ns; /* -1: not known */
};

struct hp_replay {
    sqlite3 *db;
    char db_path[PATH_MAX + 8];
    int64_t pid;
    char cmdline[512];
    char recording[PATH_MAX];
    int complete;
    char damage[512];
    char end_reason[32];
    unsigned sample_mode;
    uint64_t sample_period;
    double ns_per_tick;
    int64_t duration_ns;
    uint64_t lost;
    /* snapshots: position i is snapshot snap_ids[i] at t_ns[i] */
    size_t nsnaps;
    int64_t *snap_ids, *t_ns;
    int synthetic;       /* no snapshot: one position holding the final counters */
    int *ctr_first;      /* recording counter_id -> this build's first value, -1 unknown */
    size_t nctr;
    struct hp_label *labels; /* sorted by stack */
    size_t nlabels;
    struct hp_rthread *threads;
    size_t nthreads;
    int interruptible;   /* a key press stops a long block scan (the UI is up) */
    size_t values_pos;   /* the position and window of the model's counters */
    double values_window;
};

static char *hp_rdup(const unsigned char *s)
{
    return s ? hp_xstrdup("top", (const char *)s) : NULL;
}

/* ---- loading ---- */
static sqlite3_stmt *hp_rq(struct hp_replay *r, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK) {
        hp_fail("top", "%s: %s (not a hakprof database of this version?)", r->db_path, sqlite3_errmsg(r->db));
        return NULL;
    }
    return st;
}

static int hp_load_run(struct hp_replay *r)
{
    sqlite3_stmt *st = hp_rq(r, "SELECT pid, cmdline, recording, complete, damage, end_reason, sample_mode,"
                                " sample_period, ns_per_tick, duration_ns, lost FROM runs WHERE run_id = 1");
    if (!st)
        return -1;
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        hp_fail("top", "%s: the database holds no run", r->db_path);
        return -1;
    }
    r->pid = sqlite3_column_int64(st, 0);
    const unsigned char *s;
    snprintf(r->cmdline, sizeof r->cmdline, "%s", (s = sqlite3_column_text(st, 1)) ? (const char *)s : "?");
    snprintf(r->recording, sizeof r->recording, "%s", (s = sqlite3_column_text(st, 2)) ? (const char *)s : "");
    r->complete = sqlite3_column_int(st, 3);
    snprintf(r->damage, sizeof r->damage, "%s", (s = sqlite3_column_text(st, 4)) ? (const char *)s : "");
    snprintf(r->end_reason, sizeof r->end_reason, "%s", (s = sqlite3_column_text(st, 5)) ? (const char *)s : "");
    const char *mode = (s = sqlite3_column_text(st, 6)) ? (const char *)s : "off";
    r->sample_mode = !strcmp(mode, "all") ? HKT_SAMPLE_ALL : !strcmp(mode, "count") ? HKT_SAMPLE_COUNT :
                     !strcmp(mode, "bytes") ? HKT_SAMPLE_BYTES : HKT_SAMPLE_OFF;
    r->sample_period = (uint64_t)sqlite3_column_int64(st, 7);
    r->ns_per_tick = sqlite3_column_double(st, 8);
    if (!(r->ns_per_tick > 0))
        r->ns_per_tick = 1;
    r->duration_ns = sqlite3_column_int64(st, 9);
    r->lost = (uint64_t)sqlite3_column_int64(st, 10);
    sqlite3_finalize(st);
    return 0;
}

static int hp_load_defs(struct hp_replay *r)
{
    sqlite3_stmt *st = hp_rq(r, "SELECT counter_id, name, width FROM counter_defs WHERE run_id = 1");
    if (!st)
        return -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (id < 0 || id > 100000)
            continue;
        if ((size_t)id >= r->nctr) {
            r->ctr_first = hp_xrealloc("top", r->ctr_first, (size_t)(id + 1) * sizeof *r->ctr_first);
            for (size_t i = r->nctr; i <= (size_t)id; i++)
                r->ctr_first[i] = -1;
            r->nctr = (size_t)id + 1;
        }
        const unsigned char *name = sqlite3_column_text(st, 1);
        r->ctr_first[id] = name ? hp_counter_first((const char *)name, (unsigned)sqlite3_column_int(st, 2)) : -1;
    }
    sqlite3_finalize(st);
    return 0;
}

static int hp_load_snapshots(struct hp_replay *r)
{
    sqlite3_stmt *st = hp_rq(r, "SELECT snap_id, t_ns FROM snapshots WHERE run_id = 1 ORDER BY snap_id");
    if (!st)
        return -1;
    size_t cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (r->nsnaps == cap) {
            cap = cap ? cap * 2 : 256;
            r->snap_ids = hp_xrealloc("top", r->snap_ids, cap * sizeof *r->snap_ids);
            r->t_ns = hp_xrealloc("top", r->t_ns, cap * sizeof *r->t_ns);
        }
        r->snap_ids[r->nsnaps] = sqlite3_column_int64(st, 0);
        r->t_ns[r->nsnaps] = sqlite3_column_int64(st, 1);
        r->nsnaps++;
    }
    sqlite3_finalize(st);
    if (!r->nsnaps) {
        /* nothing to step through: one position, the final counters (all zero without a snapshot) */
        r->synthetic = 1;
        r->snap_ids = hp_xrealloc("top", r->snap_ids, sizeof *r->snap_ids);
        r->t_ns = hp_xrealloc("top", r->t_ns, sizeof *r->t_ns);
        r->snap_ids[0] = -1;
        r->t_ns[0] = r->duration_ns;
        r->nsnaps = 1;
    }
    return 0;
}

static int hp_label_cmp(const void *a, const void *b)
{
    uint32_t x = ((const struct hp_label *)a)->stack, y = ((const struct hp_label *)b)->stack;
    return (x > y) - (x < y);
}

static int hp_load_labels(struct hp_replay *r)
{
    sqlite3_stmt *st = hp_rq(r, "SELECT s.stack_id, s.function, s.file, s.line, s.module, f.function FROM sites s"
                                " LEFT JOIN frames f ON f.run_id = s.run_id AND f.stack_id = s.stack_id AND"
                                " f.frame = 1 WHERE s.run_id = 1");
    if (!st)
        return -1;
    size_t cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (r->nlabels == cap) {
            cap = cap ? cap * 2 : 64;
            r->labels = hp_xrealloc("top", r->labels, cap * sizeof *r->labels);
        }
        struct hp_label *l = &r->labels[r->nlabels++];
        l->stack = (uint32_t)sqlite3_column_int64(st, 0);
        l->function = hp_rdup(sqlite3_column_text(st, 1));
        l->file = hp_rdup(sqlite3_column_text(st, 2));
        l->line = sqlite3_column_int(st, 3);
        l->module = hp_rdup(sqlite3_column_text(st, 4));
        l->caller = hp_rdup(sqlite3_column_text(st, 5));
    }
    sqlite3_finalize(st);
    if (r->nlabels > 1)
        qsort(r->labels, r->nlabels, sizeof *r->labels, hp_label_cmp);
    return 0;
}

static int hp_load_threads(struct hp_replay *r)
{
    sqlite3_stmt *st = hp_rq(r, "SELECT tid, os_tid, name, start_ns, exit_ns FROM threads WHERE run_id = 1"
                                " ORDER BY tid");
    if (!st)
        return -1;
    size_t cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (r->nthreads == cap) {
            cap = cap ? cap * 2 : 32;
            r->threads = hp_xrealloc("top", r->threads, cap * sizeof *r->threads);
        }
        struct hp_rthread *t = &r->threads[r->nthreads++];
        t->tid = (uint32_t)sqlite3_column_int64(st, 0);
        t->os_tid = sqlite3_column_int(st, 1);
        const unsigned char *n = sqlite3_column_text(st, 2);
        snprintf(t->name, sizeof t->name, "%s", n ? (const char *)n : "");
        t->start_ns = sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3);
        t->exit_ns = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 4);
    }
    sqlite3_finalize(st);
    return 0;
}

struct hp_replay *hp_replay_open(const struct hp_replay_opts *o, struct hp_top_model *m, int *status)
{
    struct hp_replay *r = calloc(1, sizeof *r);
    if (!r) {
        *status = hp_fail("top", "out of memory");
        return NULL;
    }
    /* the rules of hakprof report: a recording's database beside it, ingested when missing or stale */
    *status = hp_resolve_db("top", o->input, o->force, r->db_path, sizeof r->db_path);
    if (*status) {
        free(r);
        return NULL;
    }
    r->db = hp_open_db("top", r->db_path);
    if (!r->db) {
        *status = HP_EXIT_USAGE;
        hp_replay_close(r);
        return NULL;
    }
    if (hp_load_run(r) || hp_load_defs(r) || hp_load_snapshots(r) || hp_load_labels(r) || hp_load_threads(r)) {
        *status = HP_EXIT_USAGE;
        hp_replay_close(r);
        return NULL;
    }
    m->pid = (int)r->pid;
    snprintf(m->cmdline, sizeof m->cmdline, "%s", r->cmdline);
    m->npos = r->nsnaps;
    m->duration = (double)(r->duration_ns > r->t_ns[r->nsnaps - 1] ? r->duration_ns : r->t_ns[r->nsnaps - 1]) / 1e9;
    m->lost_known = 1;
    m->lost = r->lost;
    m->incomplete = !r->complete;
    m->have_events = r->sample_mode != HKT_SAMPLE_OFF;
    m->exact = r->sample_mode == HKT_SAMPLE_ALL;
    if (!m->have_events)
        snprintf(m->events_note, sizeof m->events_note, "sampling off: no call sites");
    else if (m->exact)
        snprintf(m->events_note, sizeof m->events_note, "sites exact (all sampled)");
    else
        snprintf(m->events_note, sizeof m->events_note, "sites estimated (%s:%llu)",
                 hkt_sample_mode_name(r->sample_mode), (unsigned long long)r->sample_period);
    snprintf(m->events_why, sizeof m->events_why, "%s", m->have_events ? "(no call site sampled by then)" :
             "(recorded with sampling off, HAKMEM_SAMPLE=off: no call sites)");
    snprintf(m->source, sizeof m->source, "replay of %.400s (%s%s%.200s)", r->db_path,
             r->complete ? "complete" : "INCOMPLETE", r->damage[0] ? ": " : "", r->damage);
    *status = HP_EXIT_OK;
    return r;
}

void hp_replay_close(struct hp_replay *r)
{
    if (!r)
        return;
    sqlite3_close(r->db);
    for (size_t i = 0; i < r->nlabels; i++) {
        free(r->labels[i].function);
        free(r->labels[i].file);
        free(r->labels[i].module);
        free(r->labels[i].caller);
    }
    free(r->labels);
    free(r->threads);
    free(r->snap_ids);
    free(r->t_ns);
    free(r->ctr_first);
    free(r);
}

/* ---- positions ---- */
double hp_replay_time(const struct hp_replay *r, size_t pos)
{
    if (pos >= r->nsnaps)
        pos = r->nsnaps - 1;
    return (double)r->t_ns[pos] / 1e9;
}

size_t hp_replay_pos_at(const struct hp_replay *r, double t)
{
    int64_t ns = (int64_t)(t * 1e9);
    size_t lo = 0, hi = r->nsnaps; /* the last position with t_ns <= ns, or 0 */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (r->t_ns[mid] <= ns)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* The counters of one position (the final ones for the synthetic position). */
static void hp_values_at(struct hp_replay *r, size_t pos, uint64_t *out)
{
    memset(out, 0, HKC_NVALUES * sizeof *out);
    sqlite3_stmt *st = NULL;
    if (r->synthetic) {
        if (sqlite3_prepare_v2(r->db, "SELECT d.counter_id, c.idx, c.value FROM counters c JOIN counter_defs d"
                               " ON d.run_id = c.run_id AND d.name = c.name WHERE c.run_id = 1", -1, &st,
                               NULL) != SQLITE_OK)
            return;
    } else {
        if (sqlite3_prepare_v2(r->db, "SELECT counter_id, idx, value FROM snapshot_values WHERE run_id = 1"
                               " AND snap_id = ?", -1, &st, NULL) != SQLITE_OK)
            return;
        sqlite3_bind_int64(st, 1, r->snap_ids[pos]);
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0), idx = sqlite3_column_int64(st, 1);
        if (id < 0 || (size_t)id >= r->nctr || r->ctr_first[id] < 0 || idx < 0)
            continue;
        int64_t at = r->ctr_first[id] + idx;
        if (at < HKC_NVALUES)
            out[at] = (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
}

static const struct hp_label *hp_label_of(const struct hp_replay *r, uint32_t stack)
{
    struct hp_label key = {.stack = stack};
    return bsearch(&key, r->labels, r->nlabels, sizeof *r->labels, hp_label_cmp);
}

/* A key waiting on the terminal stops a block scan: moving along the timeline must not wait for it. */
static int hp_key_waiting(void *arg)
{
    struct hp_replay *r = arg;
    if (hp_top_signal) /* Ctrl-C ends top within the promised quarter second, even in a long scan */
        return 1;
    if (!r->interruptible)
        return 0;
    struct pollfd p = {0, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

/* Call sites and per-thread counts at tick T (INT64_MAX: the whole run): the sampled blocks allocated by then,
 * freed by then or still live. -1 if a key interrupted it. */
static int hp_scan_blocks(struct hp_replay *r, struct hp_top_model *m, int64_t ticks)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT tid, size, stack_id, free_tid, free_ticks FROM blocks WHERE run_id = 1"
                           " AND ticks <= ?", -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, ticks);
    hp_model_clear_sites(m);
    for (size_t i = 0; i < m->nthreads; i++)
        m->threads[i].allocs = m->threads[i].bytes = m->threads[i].frees = m->threads[i].cross = 0;
    sqlite3_progress_handler(r->db, 20000, hp_key_waiting, r);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t tid = (uint32_t)sqlite3_column_int64(st, 0);
        uint64_t size = (uint64_t)sqlite3_column_int64(st, 1);
        double w = hp_sample_weight(r->sample_mode, r->sample_period, size);
        struct hp_top_site *s = hp_model_site(m, (uint32_t)sqlite3_column_int64(st, 2));
        s->allocs += w;
        s->bytes += w * (double)size;
        struct hp_top_thread *t = hp_model_thread(m, tid);
        t->allocs += w;
        t->bytes += w * (double)size;
        int freed = sqlite3_column_type(st, 4) != SQLITE_NULL && sqlite3_column_int64(st, 4) <= ticks;
        if (!freed) {
            s->live += w;
            s->live_bytes += w * (double)size;
            continue;
        }
        uint32_t ftid = (uint32_t)sqlite3_column_int64(st, 3);
        s->frees += w;
        if (ftid != tid)
            s->cross += w;
        else
            s->same += w;
        t = hp_model_thread(m, ftid);
        t->frees += w;
        if (ftid != tid)
            t->cross += w;
    }
    sqlite3_progress_handler(r->db, 0, NULL, NULL);
    sqlite3_finalize(st);
    return rc == SQLITE_INTERRUPT ? -1 : 0;
}

/* The whole run from the sums ingest made (no scan of the blocks). */
static void hp_totals(struct hp_replay *r, struct hp_top_model *m)
{
    hp_model_clear_sites(m);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT stack_id, est_allocs, est_bytes, est_frees, est_same_thread_frees,"
                           " est_cross_thread_frees, est_live, est_live_bytes FROM call_sites WHERE run_id = 1",
                           -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            struct hp_top_site *s = hp_model_site(m, (uint32_t)sqlite3_column_int64(st, 0));
            s->allocs = sqlite3_column_double(st, 1);
            s->bytes = sqlite3_column_double(st, 2);
            s->frees = sqlite3_column_double(st, 3);
            s->same = sqlite3_column_double(st, 4);
            s->cross = sqlite3_column_double(st, 5);
            s->live = sqlite3_column_double(st, 6);
            s->live_bytes = sqlite3_column_double(st, 7);
        }
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < m->nthreads; i++)
        m->threads[i].allocs = m->threads[i].bytes = m->threads[i].frees = m->threads[i].cross = 0;
    if (sqlite3_prepare_v2(r->db, "SELECT tid, est_allocs, est_bytes FROM threads WHERE run_id = 1", -1, &st,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            struct hp_top_thread *t = hp_model_thread(m, (uint32_t)sqlite3_column_int64(st, 0));
            t->allocs = sqlite3_column_double(st, 1);
            t->bytes = sqlite3_column_double(st, 2);
        }
    }
    sqlite3_finalize(st);
    /* frees estimated like the call sites' (the threads table keeps sampled counts only) */
    if (sqlite3_prepare_v2(r->db, "SELECT free_tid, SUM(est_frees), SUM(CASE WHEN alloc_tid <> free_tid THEN"
                           " est_frees ELSE 0 END) FROM free_matrix WHERE run_id = 1 GROUP BY free_tid", -1, &st,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            struct hp_top_thread *t = hp_model_thread(m, (uint32_t)sqlite3_column_int64(st, 0));
            t->frees = sqlite3_column_double(st, 1);
            t->cross = sqlite3_column_double(st, 2);
        }
    }
    sqlite3_finalize(st);
}

/* The threads started by t_ns (all of them at the end); the counts come after. */
static void hp_fill_threads(struct hp_replay *r, struct hp_top_model *m, int64_t t_ns, int at_end)
{
    hp_model_clear_threads(m);
    for (size_t i = 0; i < r->nthreads; i++) {
        const struct hp_rthread *rt = &r->threads[i];
        if (!at_end && rt->start_ns > t_ns)
            continue;
        struct hp_top_thread *t = hp_model_thread(m, rt->tid);
        t->os_tid = rt->os_tid;
        snprintf(t->name, sizeof t->name, "%s", rt->name);
        t->state = rt->exit_ns >= 0 && (at_end || rt->exit_ns <= t_ns) ? HP_THR_EXITED : HP_THR_LIVE;
    }
}

static void hp_fill_labels(struct hp_replay *r, struct hp_top_model *m)
{
    for (size_t i = 0; i < m->nsites; i++) {
        struct hp_top_site *s = &m->sites[i];
        const struct hp_label *l = hp_label_of(r, s->stack);
        if (l)
            hp_site_set_label(s, l->function, l->file, l->line, l->module, l->caller);
        else
            hp_site_set_label(s, s->stack ? "?" : "(no stack)", NULL, 0, NULL, NULL);
    }
}

int hp_replay_seek(struct hp_replay *r, struct hp_top_model *m, size_t pos, double window, int interruptible)
{
    if (pos >= r->nsnaps)
        pos = r->nsnaps - 1;
    int moved = pos != r->values_pos || window != r->values_window || !m->have_counters;
    m->pos = pos;
    int64_t t = r->t_ns[pos];
    m->uptime = (double)t / 1e9;
    int at_end = pos == r->nsnaps - 1;
    if (moved) {
        hp_values_at(r, pos, m->v);
        /* rates over the window before the position (at least one snapshot back; from zero at the first) */
        size_t prev = hp_replay_pos_at(r, m->uptime - window);
        if (prev >= pos)
            prev = pos ? pos - 1 : pos;
        if (prev == pos) {
            memset(m->pv, 0, sizeof m->pv);
            m->dt = (double)t / 1e9;
        } else {
            hp_values_at(r, prev, m->pv);
            m->dt = (double)(t - r->t_ns[prev]) / 1e9;
        }
        m->have_counters = 1;
        r->values_pos = pos;
        r->values_window = window;
    }
    m->ended = at_end;
    if (at_end)
        snprintf(m->ended_note, sizeof m->ended_note, "end of the run%s%s", r->end_reason[0] ? ": " : "",
                 r->end_reason[0] ? r->end_reason : " (recording cut short)");
    hp_fill_threads(r, m, t, at_end);
    if (!m->have_events)
        return 0;
    r->interruptible = interruptible;
    if (at_end) {
        hp_totals(r, m);
    } else if (hp_scan_blocks(r, m, (int64_t)((double)t / r->ns_per_tick)) < 0) {
        r->interruptible = 0;
        m->scanning = 1;
        return 1; /* the caller asks again once the keys are handled */
    }
    r->interruptible = 0;
    m->scanning = 0;
    hp_fill_labels(r, m);
    return 0;
}

int hp_replay_stack(struct hp_replay *r, uint32_t stack, struct hp_top_frame **frames, size_t *n)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT ip, function, file, line, module FROM frames WHERE run_id = 1 AND"
                           " stack_id = ? ORDER BY frame", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, stack);
    size_t cap = 0;
    *frames = NULL;
    *n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *frames = hp_xrealloc("top", *frames, cap * sizeof **frames);
        }
        struct hp_top_frame *f = &(*frames)[(*n)++];
        f->ip = (uint64_t)sqlite3_column_int64(st, 0);
        f->function = hp_rdup(sqlite3_column_text(st, 1));
        f->file = hp_rdup(sqlite3_column_text(st, 2));
        f->line = sqlite3_column_int(st, 3);
        f->module = hp_rdup(sqlite3_column_text(st, 4));
    }
    sqlite3_finalize(st);
    return *n ? 0 : -1;
}
