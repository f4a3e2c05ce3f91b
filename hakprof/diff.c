/* hakprof diff: compares a baseline and a candidate (recordings, databases or sets of repeated runs) metric by
 * metric, judges each change against the threshold and the run-to-run noise, and exits 1 when one regressed. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "compare.h"
#include "hakprof.h"

#define VERB "diff"
enum { BASE = 0, CAND = 1 };
static const char *const hp_side[2] = {"baseline", "candidate"};

/* A change that moves fewer events than this per million operations is too rare to matter, however large it is
 * relative to itself (a counter going from 2 to 4 per million operations is +100%). */
#define HP_MIN_PER_MOP 1000.0

enum hp_group { G_HEADLINE, G_REFILL, G_FREE, G_COUNTER, G_GAUGE, G_MIX, G_CLASS, G_SITE };
static const char *const hp_group_name[] = {"headline", "refill", "free", "counter", "gauge", "class_mix",
                                            "size_class", "call_site"};
enum hp_unit { U_OPS_S, U_SECONDS, U_COUNT, U_PER_MOP, U_SHARE, U_BYTES };
static const char *const hp_unit_name[] = {"ops_per_s", "s", "count", "per_mop", "share", "bytes"};

struct hp_metric {
    char *key, *what;
    enum hp_group group;
    enum hp_unit unit;
    int dir;             /* +1: higher is worse; -1: lower is worse; 0: neither (the workload's shape) */
    int zero_if_missing; /* a run without a value counted none (counters, call sites); else undefined there */
    int cycles;          /* a TSC-cycle counter: its weight is counted in slow-path refills' worth of cycles */
    int bytes;           /* a counter of bytes: its weight is counted in 4 KiB pages */
    double dev;          /* size-class rows: the change minus the change of the same share over every class */
    double floor;        /* relative changes are taken against max(|baseline|, floor) (gauges: a level too small
                          * to matter, so that 1 -> 2 SuperSlabs is not +100%) */
    double *v;           /* per run (baseline runs first): the value, NaN where undefined */
    double *w;           /* per run: events per million operations a share is a share of (its weight) */
    /* the judgement */
    struct hp_sample s[2];
    double delta, rel, lo, hi, impact;
    enum hp_noise noise;
    int defined, material, significant;
    const char *verdict;
};

struct hp_run {
    char *input, *db, *cmdline, *sample, *damage, *build_id;
    int64_t duration_ns, allocs, frees, lost, complete;
    double cycles_per_refill; /* TSC cycles per slow-path refill, NaN without one */
    int nset;
    char **set_name, **set_value;
};

struct hp_diff {
    struct hp_runset set[2];
    int nruns, first[2], count[2]; /* runs of side s are first[s] .. first[s] + count[s] - 1 */
    struct hp_run *run;
    struct hp_metric *m;
    int nm, capm;
    int *slot; /* hash of key -> metric index + 1 */
    size_t nslot;
    double threshold, conf, cycles_per_refill;
    int fail_headline; /* --fail-on headline: only throughput and wall time set the exit status */
    int failed;
};

static void *hp_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        hp_fail(VERB, "out of memory");
        exit(HP_EXIT_USAGE);
    }
    return p;
}

/* ---- Metrics: one row per key, one value per run ---- */
static int hp_find(struct hp_diff *D, const char *key)
{
    if (!D->nslot)
        return -1;
    for (size_t i = hp_hash_str(key) & (D->nslot - 1);; i = (i + 1) & (D->nslot - 1)) {
        if (!D->slot[i])
            return -1;
        if (!strcmp(D->m[D->slot[i] - 1].key, key))
            return D->slot[i] - 1;
    }
}

static void hp_index(struct hp_diff *D, int idx)
{
    if ((size_t)(D->nm + 1) * 2 > D->nslot) {
        /* grow and rehash: the table stays at most half full so probes stay short */
        free(D->slot);
        D->nslot = D->nslot ? D->nslot * 2 : 1024;
        D->slot = hp_xcalloc(D->nslot, sizeof *D->slot);
        for (int k = 0; k < D->nm; k++)
            if (k != idx)
                hp_index(D, k);
    }
    size_t i = hp_hash_str(D->m[idx].key) & (D->nslot - 1);
    while (D->slot[i])
        i = (i + 1) & (D->nslot - 1);
    D->slot[i] = idx + 1;
}

/* The metric of key, made on first sight with the given definition. */
static struct hp_metric *hp_metric(struct hp_diff *D, const char *key, const char *what, enum hp_group g,
                                   enum hp_unit u, int dir, int zero_if_missing, double floor)
{
    int k = hp_find(D, key);
    if (k >= 0)
        return &D->m[k];
    if (D->nm == D->capm) {
        D->capm = D->capm ? D->capm * 2 : 256;
        D->m = realloc(D->m, (size_t)D->capm * sizeof *D->m);
        if (!D->m) {
            hp_fail(VERB, "out of memory");
            exit(HP_EXIT_USAGE);
        }
    }
    struct hp_metric *m = &D->m[D->nm];
    memset(m, 0, sizeof *m);
    m->key = hp_xstrdup(VERB, key);
    m->what = hp_xstrdup(VERB, what);
    m->group = g;
    m->unit = u;
    m->dir = dir;
    m->zero_if_missing = zero_if_missing;
    m->floor = floor;
    m->v = hp_xcalloc((size_t)D->nruns, sizeof *m->v);
    m->w = hp_xcalloc((size_t)D->nruns, sizeof *m->w);
    for (int r = 0; r < D->nruns; r++)
        m->v[r] = m->w[r] = NAN;
    D->nm++;
    hp_index(D, D->nm - 1);
    return &D->m[D->nm - 1];
}

static void hp_put(struct hp_diff *D, int r, const char *key, const char *what, enum hp_group g, enum hp_unit u,
                   int dir, int zero_if_missing, double floor, double value, double weight)
{
    struct hp_metric *m = hp_metric(D, key, what, g, u, dir, zero_if_missing, floor);
    m->v[r] = value;
    m->w[r] = weight;
}

/* ---- Which direction is worse: docs/hakprof.md (## hakprof diff) has the same table ---- */
static int hp_counter_dir(const char *name)
{
    static const struct {
        const char *name;
        int dir;
    } dirs[] = {
        {"refill_tls_sll_hit", -1}, {"refill_slab_free", 1}, {"refill_remote_drain", 1}, {"refill_partial", 1},
        {"refill_adopt", 1},        {"refill_new_slab", 1},  {"refill_ss_cache", 1},     {"refill_ss_os", 1},
        {"free_tls_sll", -1},       {"free_ss_local", 1},    {"free_ss_remote", 1},      {"free_invalid", 1},
        {"tls_sll_spill", 1},       {"tls_sll_spilled", 1},  {"realloc_moved", 1},       {"large_cache_miss", 1},
        {"os_mmap", 1},             {"os_mmap_bytes", 1},    {"os_munmap", 1},           {"os_munmap_bytes", 1},
        {"os_madvise", 1},          {"os_madvise_bytes", 1}, {"os_mremap", 1},           {"ss_peak", 1},
        {"bytes_in_use_peak", 1},
    };
    size_t n = strlen(name);
    if (n > 7 && !strcmp(name + n - 7, "_cycles"))
        return 1; /* time spent in a slow path */
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        if (!strcmp(dirs[i].name, name))
            return dirs[i].dir;
    return 0;
}

static const char *const hp_stages[9] = {"tls_sll", "slab_free", "remote_drain", "partial", "adopt",
                                         "new_slab", "ss_cache", "ss_os", "large"};
static const int hp_stage_dir[9] = {-1, 1, 1, 1, 1, 1, 1, 1, 0};
static const char *const hp_paths[4] = {"tls_sll", "ss_local", "ss_remote", "large"};
static const int hp_path_dir[4] = {-1, 1, 1, 0};

/* ---- Loading one run's database ---- */
static sqlite3_stmt *hp_prep(struct hp_diff *D, sqlite3 *h, const char *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK) {
        hp_fail(VERB, "%s: %s (not a hakprof database of this version?)", db, sqlite3_errmsg(h));
        D->failed = 1;
        return NULL;
    }
    return st;
}

static int hp_finish(struct hp_diff *D, sqlite3 *h, const char *db, sqlite3_stmt *st, int rc)
{
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        hp_fail(VERB, "%s: %s", db, sqlite3_errmsg(h));
        D->failed = 1;
        return -1;
    }
    return 0;
}

static char *hp_col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? hp_xstrdup(VERB, (const char *)t) : NULL;
}

static void hp_class_label(int cls, int64_t size, char *buf, size_t len)
{
    if (cls == 255)
        snprintf(buf, len, "large");
    else
        snprintf(buf, len, "%lld B", (long long)size);
}

static const char *hp_base(const char *p)
{
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : p ? p : "?";
}

static void hp_load_counters(struct hp_diff *D, int r, sqlite3 *h, const char *db, double mops)
{
    struct hp_run *R = &D->run[r];
    sqlite3_stmt *st = hp_prep(D, h, db, "SELECT name, kind, total FROM counter_totals WHERE run_id = 1");
    if (!st)
        return;
    int rc;
    double cycles = 0, refills = 0;
    char key[160], what[160];
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *kind = (const char *)sqlite3_column_text(st, 1);
        double total = sqlite3_column_double(st, 2);
        if (!name || !kind)
            continue;
        size_t n = strlen(name);
        int is_cycles = n > 7 && !strcmp(name + n - 7, "_cycles");
        if (is_cycles && !strncmp(name, "refill_", 7))
            cycles += total;
        for (int k = 1; k < 8; k++) {
            char c[40];
            snprintf(c, sizeof c, "refill_%s", hp_stages[k]);
            if (!strcmp(name, c))
                refills += total;
        }
        if (!strcmp(kind, "gauge")) {
            int bytes = strstr(name, "bytes") != NULL;
            snprintf(key, sizeof key, "gauge:%s", name);
            snprintf(what, sizeof what, bytes ? "%s (bytes)" : "%s", name);
            hp_put(D, r, key, what, G_GAUGE, bytes ? U_BYTES : U_COUNT, hp_counter_dir(name), 1,
                   bytes ? 1048576.0 : 4.0, total, NAN);
            continue;
        }
        if (!(mops > 0))
            continue;
        snprintf(key, sizeof key, "counter:%s", name);
        snprintf(what, sizeof what, "%s per Mop", name);
        struct hp_metric *m = hp_metric(D, key, what, G_COUNTER, U_PER_MOP, hp_counter_dir(name), 1, 0);
        m->cycles = is_cycles;
        m->bytes = strstr(name, "bytes") != NULL;
        m->v[r] = total / mops;
    }
    hp_finish(D, h, db, st, rc);
    R->cycles_per_refill = refills > 0 ? cycles / refills : NAN;
}

static void hp_load_stages(struct hp_diff *D, int r, sqlite3 *h, const char *db, double mops)
{
    static int64_t cnt[256][9], size[256];
    sqlite3_stmt *st = hp_prep(D, h, db, "SELECT cls, size, stage_no, count FROM stage_by_class WHERE run_id = 1");
    if (!st || hp_finish(D, h, db, st, hp_class_counts(st, 9, &cnt[0][0], size)) || !(mops > 0))
        return;
    double tot[9] = {0}, all = 0, per[256];
    for (int c = 0; c < 256; c++) {
        per[c] = 0;
        for (int k = 0; k < 9; k++) {
            per[c] += cnt[c][k];
            tot[k] += cnt[c][k];
        }
        all += per[c];
    }
    if (!(all > 0))
        return;
    char key[96], what[160], lab[32];
    for (int k = 0; k < 9; k++) {
        snprintf(key, sizeof key, "refill_share:%s", hp_stages[k]);
        snprintf(what, sizeof what, "refill stage %s (share of allocations)", hp_stages[k]);
        hp_put(D, r, key, what, G_REFILL, U_SHARE, hp_stage_dir[k], 0, 0, tot[k] / all, all / mops);
    }
    for (int c = 0; c < 256; c++) {
        if (!(per[c] > 0))
            continue;
        hp_class_label(c, size[c], lab, sizeof lab);
        snprintf(key, sizeof key, "class_share:%s", lab);
        snprintf(what, sizeof what, "class %s: share of allocations", lab);
        hp_put(D, r, key, what, G_MIX, U_SHARE, 0, 1, 0, per[c] / all, all / mops);
        if (c == 255)
            continue;
        for (int k = 0; k < 8; k++) {
            snprintf(key, sizeof key, "class_refill:%s:%s", lab, hp_stages[k]);
            snprintf(what, sizeof what, "class %s: refill stage %s", lab, hp_stages[k]);
            hp_put(D, r, key, what, G_CLASS, U_SHARE, hp_stage_dir[k], 0, 0, cnt[c][k] / per[c], per[c] / mops);
        }
    }
}

static void hp_load_paths(struct hp_diff *D, int r, sqlite3 *h, const char *db, double mops)
{
    static int64_t cnt[256][4], size[256], isame[256], icross[256];
    sqlite3_stmt *st = hp_prep(D, h, db, "SELECT cls, size, path_no, count FROM path_by_class WHERE run_id = 1");
    if (!st || hp_finish(D, h, db, st, hp_class_counts(st, 4, &cnt[0][0], size)))
        return;
    st = hp_prep(D, h, db, "SELECT cls, same_thread_frees, cross_thread_frees FROM class_totals WHERE run_id = 1");
    if (!st || hp_finish(D, h, db, st, hp_class_frees(st, isame, icross)) || !(mops > 0))
        return;
    double tot[4] = {0}, all = 0, tsame = 0, tcross = 0, per[256], same[256], cross[256];
    for (int c = 0; c < 256; c++) {
        per[c] = (double)(cnt[c][0] + cnt[c][1] + cnt[c][2] + cnt[c][3]);
        for (int k = 0; k < 4; k++)
            tot[k] += (double)cnt[c][k];
        same[c] = (double)isame[c];
        cross[c] = (double)icross[c];
        all += per[c];
        tsame += same[c];
        tcross += cross[c];
    }
    char key[96], what[160], lab[32];
    if (all > 0)
        for (int k = 0; k < 4; k++) {
            snprintf(key, sizeof key, "free_share:%s", hp_paths[k]);
            snprintf(what, sizeof what, "free path %s (share of frees)", hp_paths[k]);
            hp_put(D, r, key, what, G_FREE, U_SHARE, hp_path_dir[k], 0, 0, tot[k] / all, all / mops);
        }
    if (tsame + tcross > 0)
        hp_put(D, r, "free_share:cross_thread", "frees by another thread (share of frees)", G_FREE, U_SHARE, 0, 0, 0,
               tcross / (tsame + tcross), (tsame + tcross) / mops);
    for (int c = 0; c < 255; c++) {
        if (!(per[c] > 0))
            continue;
        hp_class_label(c, size[c], lab, sizeof lab);
        for (int k = 0; k < 3; k++) {
            snprintf(key, sizeof key, "class_free:%s:%s", lab, hp_paths[k]);
            snprintf(what, sizeof what, "class %s: free path %s", lab, hp_paths[k]);
            hp_put(D, r, key, what, G_CLASS, U_SHARE, hp_path_dir[k], 0, 0, cnt[c][k] / per[c], per[c] / mops);
        }
        if (same[c] + cross[c] > 0) {
            snprintf(key, sizeof key, "class_free:%s:cross_thread", lab);
            snprintf(what, sizeof what, "class %s: frees by another thread", lab);
            hp_put(D, r, key, what, G_CLASS, U_SHARE, 0, 0, 0, cross[c] / (same[c] + cross[c]),
                   (same[c] + cross[c]) / mops);
        }
    }
}

/* Call sites are matched across runs by what they are (function and file:line, or function and module when there
 * is no line information), never by address: ASLR and relinking move addresses between runs. */
static void hp_load_sites(struct hp_diff *D, int r, sqlite3 *h, const char *db, double mops, double allocs)
{
    sqlite3_stmt *st = hp_prep(D, h, db, "SELECT function, file, line, module, SUM(est_allocs), SUM(est_frees),"
                                         " SUM(est_cross_thread_frees), SUM(SUM(est_allocs)) OVER ()"
                                         " FROM site_ips WHERE run_id = 1"
                                         " GROUP BY function, file, line, CASE WHEN file IS NULL THEN module END");
    if (!st)
        return;
    int rc;
    char name[PATH_MAX + 256], key[PATH_MAX + 300], what[PATH_MAX + 300];
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *fn = (const char *)sqlite3_column_text(st, 0);
        const char *file = (const char *)sqlite3_column_text(st, 1);
        const char *mod = (const char *)sqlite3_column_text(st, 3);
        if (file)
            snprintf(name, sizeof name, "%s %s:%d", fn ? fn : "?", file, sqlite3_column_int(st, 2));
        else if (mod)
            snprintf(name, sizeof name, "%s (%s)", fn ? fn : "?", hp_base(mod));
        else
            snprintf(name, sizeof name, "%s", fn ? fn : "?");
        double a = sqlite3_column_double(st, 4), f = sqlite3_column_double(st, 5);
        double cross = sqlite3_column_double(st, 6), total = sqlite3_column_double(st, 7);
        if (!(mops > 0))
            continue;
        /* Two modules with one base name give one key: their values add up. */
        if (total > 0) {
            snprintf(key, sizeof key, "site:%s", name);
            snprintf(what, sizeof what, "%s: share of allocations", name);
            struct hp_metric *m = hp_metric(D, key, what, G_SITE, U_SHARE, 0, 1, 0);
            m->v[r] = (isnan(m->v[r]) ? 0 : m->v[r]) + a / total;
            m->w[r] = allocs / mops;
        }
        if (f > 0) {
            snprintf(key, sizeof key, "site_cross:%s", name);
            snprintf(what, sizeof what, "%s: frees by another thread", name);
            hp_put(D, r, key, what, G_SITE, U_SHARE, 0, 0, 0, cross / f, f / mops);
        }
    }
    hp_finish(D, h, db, st, rc);
}

static void hp_load_run(struct hp_diff *D, int r)
{
    struct hp_run *R = &D->run[r];
    sqlite3 *h = (sqlite3 *)hp_open_db(VERB, R->db);
    if (!h) {
        D->failed = 1;
        return;
    }
    sqlite3_stmt *st = hp_prep(D, h, R->db, "SELECT r.cmdline, r.sample_mode, r.sample_period, r.lost, r.complete,"
                                            " r.damage, r.duration_ns, r.build_id, t.allocs, t.frees"
                                            " FROM runs r JOIN run_totals t ON t.run_id = r.run_id"
                                            " WHERE r.run_id = 1");
    int rc;
    if (!st)
        goto out;
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
        sqlite3_finalize(st);
        hp_fail(VERB, "%s: the database holds no run", R->db);
        D->failed = 1;
        goto out;
    }
    R->cmdline = hp_col(st, 0);
    const char *mode = (const char *)sqlite3_column_text(st, 1);
    char sample[64];
    if (mode && (!strcmp(mode, "count") || !strcmp(mode, "bytes")))
        snprintf(sample, sizeof sample, "%s:%lld", mode, (long long)sqlite3_column_int64(st, 2));
    else
        snprintf(sample, sizeof sample, "%s", mode ? mode : "?");
    R->sample = hp_xstrdup(VERB, sample);
    R->lost = sqlite3_column_int64(st, 3);
    R->complete = sqlite3_column_int64(st, 4);
    R->damage = hp_col(st, 5);
    R->duration_ns = sqlite3_column_int64(st, 6);
    R->build_id = hp_col(st, 7);
    R->allocs = sqlite3_column_int64(st, 8);
    R->frees = sqlite3_column_int64(st, 9);
    sqlite3_finalize(st);

    st = hp_prep(D, h, R->db, "SELECT name, value FROM settings WHERE run_id = 1 ORDER BY name");
    if (!st)
        goto out;
    int cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (R->nset == cap) {
            cap = cap ? cap * 2 : 16;
            R->set_name = realloc(R->set_name, (size_t)cap * sizeof *R->set_name);
            R->set_value = realloc(R->set_value, (size_t)cap * sizeof *R->set_value);
            if (!R->set_name || !R->set_value) {
                hp_fail(VERB, "out of memory");
                exit(HP_EXIT_USAGE);
            }
        }
        R->set_name[R->nset] = hp_col(st, 0);
        R->set_value[R->nset] = hp_col(st, 1);
        if (R->set_name[R->nset])
            R->nset++;
        else
            free(R->set_value[R->nset]);
    }
    if (hp_finish(D, h, R->db, st, rc))
        goto out;

    /* Throughput from the allocator's own counts: every allocation and free it served, over the recorded time. */
    double ops = (double)(R->allocs + R->frees), secs = (double)R->duration_ns / 1e9;
    double mops = ops / 1e6;
    hp_put(D, r, "throughput", "throughput (ops/s)", G_HEADLINE, U_OPS_S, -1, 0, 0,
           secs > 0 && ops > 0 ? ops / secs : NAN, NAN);
    hp_put(D, r, "wall_time", "wall time (s)", G_HEADLINE, U_SECONDS, 1, 0, 0, secs > 0 ? secs : NAN, NAN);
    hp_put(D, r, "operations", "operations (allocations + frees)", G_HEADLINE, U_COUNT, 0, 1, 0, ops, NAN);
    hp_load_counters(D, r, h, R->db, mops);
    hp_load_stages(D, r, h, R->db, mops);
    hp_load_paths(D, r, h, R->db, mops);
    hp_load_sites(D, r, h, R->db, mops, (double)R->allocs);
out:
    sqlite3_close(h);
}

/* ---- Judging ---- */
static int hp_is_share(const struct hp_metric *m)
{
    return m->unit == U_SHARE;
}

static void hp_judge(struct hp_diff *D, struct hp_metric *m)
{
    double *tmp = hp_xcalloc((size_t)D->nruns, sizeof *tmp);
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < D->count[s]; i++) {
            double x = m->v[D->first[s] + i];
            tmp[i] = isnan(x) && m->zero_if_missing ? 0 : x;
        }
        hp_sample_of(tmp, D->count[s], &m->s[s]);
    }
    free(tmp);
    m->defined = m->s[BASE].n > 0 && m->s[CAND].n > 0;
    m->rel = m->lo = m->hi = m->impact = NAN;
    m->noise = HP_NOISE_UNKNOWN;
    if (!m->defined) {
        m->verdict = "undefined";
        return;
    }
    m->delta = m->s[CAND].mean - m->s[BASE].mean;
    m->noise = hp_diff_ci(&m->s[BASE], &m->s[CAND], D->conf, &m->lo, &m->hi);
    m->significant = m->noise == HP_NOISE_UNKNOWN || m->lo > 0 || m->hi < 0;

    /* How much of the difference it explains: the events per million operations that the change moved. */
    if (hp_is_share(m)) {
        double wsum = 0;
        int wn = 0;
        for (int r = 0; r < D->nruns; r++)
            if (!isnan(m->w[r])) {
                wsum += m->w[r];
                wn++;
            }
        m->impact = wn ? fabs(m->delta) * wsum / wn : 0;
        m->material = fabs(m->delta) * 100 >= D->threshold && m->impact >= HP_MIN_PER_MOP;
    } else {
        /* Counters of cycles weigh in slow-path refills' worth of cycles, counters of bytes in 4 KiB pages, so
         * that every counter's weight is a number of events. */
        double per_event = m->cycles ? D->cycles_per_refill : m->bytes ? 4096 : 1;
        m->impact = m->group == G_COUNTER ? fabs(m->delta) / per_event : NAN;
        /* A counter's relative change is taken against at least the smallest change that matters, so one that
         * appears from zero is a large change, not an infinite one that no threshold could hold back. */
        double floor = m->group == G_COUNTER ? HP_MIN_PER_MOP * per_event : m->floor;
        double scale = fmax(fabs(m->s[BASE].mean), floor);
        m->rel = scale > 0 ? m->delta / scale : m->delta != 0 ? copysign(INFINITY, m->delta) : 0;
        m->material = fabs(m->rel) * 100 >= D->threshold && (m->group != G_COUNTER || m->impact >= HP_MIN_PER_MOP);
    }
    if (m->delta == 0)
        m->verdict = "unchanged";
    else if (!m->significant)
        m->verdict = "within noise";
    else if (!m->material)
        m->verdict = "below threshold";
    else if (m->dir == 0)
        m->verdict = "changed";
    else
        m->verdict = (m->delta > 0) == (m->dir > 0) ? "regression" : "improvement";
}

static int hp_is(const struct hp_metric *m, const char *verdict)
{
    return !strcmp(m->verdict, verdict);
}

/* A change, or what would have been one but for the noise. */
static int hp_notable(const struct hp_metric *m)
{
    return m->defined && (hp_is(m, "regression") || hp_is(m, "improvement") || hp_is(m, "changed") ||
                          (hp_is(m, "within noise") && m->material));
}

/* A size class that moved like every class together says nothing the overall share has not said. */
static int hp_like_whole(const struct hp_diff *D, const struct hp_metric *m)
{
    return m->group == G_CLASS && !isnan(m->dev) && fabs(m->dev) * 100 < D->threshold;
}

/* Shown in the text: notable rows (size classes only where they moved unlike the whole); with all, every row that
 * is not zero on both sides. */
static int hp_shown(const struct hp_diff *D, const struct hp_metric *m, int all)
{
    if (!m->defined)
        return 0;
    if (all)
        return !(m->s[BASE].mean == 0 && m->s[CAND].mean == 0 && m->s[BASE].sd == 0 && m->s[CAND].sd == 0);
    return hp_notable(m) && !hp_like_whole(D, m);
}

/* For each size-class share, how its change differs from the change of the same share over every class. */
static void hp_class_dev(struct hp_diff *D)
{
    char key[128];
    for (int i = 0; i < D->nm; i++) {
        struct hp_metric *m = &D->m[i];
        m->dev = NAN;
        if (m->group != G_CLASS || !m->defined)
            continue;
        const char *leaf = strrchr(m->key, ':');
        if (!leaf)
            continue;
        snprintf(key, sizeof key, "%s_share%s", !strncmp(m->key, "class_refill:", 13) ? "refill" : "free", leaf);
        int k = hp_find(D, key);
        if (k >= 0 && D->m[k].defined)
            m->dev = m->delta - D->m[k].delta;
    }
}

static int hp_by_impact(const void *a, const void *b)
{
    const struct hp_metric *x = *(const struct hp_metric *const *)a, *y = *(const struct hp_metric *const *)b;
    double ix = isnan(x->impact) ? 0 : x->impact, iy = isnan(y->impact) ? 0 : y->impact;
    if (ix != iy)
        return ix < iy ? 1 : -1;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return strcmp(x->key, y->key);
}

/* ---- Formatting ---- */
static void hp_si(double v, char *buf, size_t len)
{
    double a = fabs(v);
    if (a >= 1e9)
        snprintf(buf, len, "%.2fG", v / 1e9);
    else if (a >= 1e6)
        snprintf(buf, len, "%.2fM", v / 1e6);
    else if (a >= 1e4)
        snprintf(buf, len, "%.1fk", v / 1e3);
    else if (a >= 100 || v == 0)
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "%.3g", v);
}

static void hp_bytes(double b, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    double a = fabs(b);
    while (a >= 1024 && u < 4) {
        a /= 1024;
        b /= 1024;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static void hp_value(const struct hp_metric *m, double v, char *buf, size_t len)
{
    char t[48];
    if (isnan(v)) {
        snprintf(buf, len, "-");
        return;
    }
    switch (m->unit) {
    case U_OPS_S: snprintf(buf, len, "%.2fM/s", v / 1e6); break;
    case U_SECONDS: snprintf(buf, len, "%.3f s", v); break;
    case U_BYTES: hp_bytes(v, buf, len); break;
    case U_SHARE: snprintf(buf, len, v > 0 && v < 0.001 ? "%.2f%%" : "%.1f%%", 100 * v); break;
    default:
        hp_si(v, t, sizeof t);
        snprintf(buf, len, "%s", t);
        break;
    }
}

/* mean, and the spread of the runs (sample standard deviation) when there are several */
static void hp_side_cell(const struct hp_metric *m, int s, char *buf, size_t len)
{
    char v[48], sd[48];
    hp_value(m, m->s[s].mean, v, sizeof v);
    if (m->s[s].n < 2) {
        snprintf(buf, len, "%s", v);
        return;
    }
    /* A spread that is only the rounding of equal values (1e-12 of the mean) is none. */
    double spread = fabs(m->s[s].sd) <= 1e-9 * fabs(m->s[s].mean) ? 0 : m->s[s].sd;
    if (hp_is_share(m))
        snprintf(sd, sizeof sd, "%.1f", 100 * spread);
    else if (spread == 0)
        snprintf(sd, sizeof sd, "0");
    else
        hp_value(m, spread, sd, sizeof sd);
    snprintf(buf, len, "%s ±%s", v, sd);
}

static void hp_change_cell(const struct hp_metric *m, char *buf, size_t len)
{
    char t[48];
    if (hp_is_share(m)) {
        snprintf(buf, len, "%+.1f pp", 100 * m->delta);
    } else if (m->s[BASE].mean != 0) {
        snprintf(buf, len, "%+.1f%%", 100 * m->delta / fabs(m->s[BASE].mean));
    } else {
        hp_value(m, m->delta, t, sizeof t);
        snprintf(buf, len, "%s%s", m->delta > 0 ? "+" : "", t);
    }
}

static void hp_ci_cell(const struct hp_metric *m, char *buf, size_t len)
{
    char a[48], b[48];
    if (m->noise == HP_NOISE_UNKNOWN) {
        snprintf(buf, len, "noise unknown");
    } else if (hp_is_share(m)) {
        snprintf(buf, len, "[%+.1f, %+.1f] pp", 100 * m->lo, 100 * m->hi);
    } else if (m->s[BASE].mean != 0) {
        double s = fabs(m->s[BASE].mean);
        snprintf(buf, len, "[%+.1f%%, %+.1f%%]", 100 * m->lo / s, 100 * m->hi / s);
    } else {
        hp_value(m, m->lo, a, sizeof a);
        hp_value(m, m->hi, b, sizeof b);
        snprintf(buf, len, "[%s, %s]", a, b);
    }
}

/* ---- Text ---- */
#define HP_TCOLS 7
struct hp_table {
    const char *head[HP_TCOLS];
    char (*cell)[HP_TCOLS][320];
    int n, cap, ncols;
};

static char *hp_trow(struct hp_table *t, int col)
{
    if (col == 0) {
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 32;
            t->cell = realloc(t->cell, (size_t)t->cap * sizeof *t->cell);
            if (!t->cell) {
                hp_fail(VERB, "out of memory");
                exit(HP_EXIT_USAGE);
            }
        }
        memset(t->cell[t->n], 0, sizeof t->cell[t->n]);
        t->n++;
    }
    return t->cell[t->n - 1][col];
}

static void hp_tprint(FILE *out, struct hp_table *t)
{
    int w[HP_TCOLS];
    for (int c = 0; c < t->ncols; c++) {
        w[c] = (int)strlen(t->head[c]);
        for (int r = 0; r < t->n; r++) {
            /* width in characters: "±" is two bytes of UTF-8 */
            int len = 0;
            for (const unsigned char *p = (const unsigned char *)t->cell[r][c]; *p; p++)
                len += (*p & 0xc0) != 0x80;
            w[c] = len > w[c] ? len : w[c];
        }
    }
    for (int r = -1; r < t->n; r++) {
        fputs(" ", out);
        for (int c = 0; c < t->ncols; c++) {
            const char *s = r < 0 ? t->head[c] : t->cell[r][c];
            int len = 0;
            for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                len += (*p & 0xc0) != 0x80;
            /* the label left-aligned, numbers right-aligned so digits line up, the verdict last */
            if (c == 0 || c == t->ncols - 1)
                fprintf(out, " %s%*s", s, c == t->ncols - 1 ? 0 : w[c] - len, "");
            else
                fprintf(out, " %*s%s", w[c] - len, "", s);
        }
        fputs("\n", out);
    }
    free(t->cell);
    t->cell = NULL;
    t->n = t->cap = 0;
}

static void hp_metric_row(struct hp_table *t, const struct hp_metric *m, int with_impact)
{
    int c = 0;
    snprintf(hp_trow(t, c++), 320, "%s", m->what);
    hp_side_cell(m, BASE, hp_trow(t, c++), 320);
    hp_side_cell(m, CAND, hp_trow(t, c++), 320);
    hp_change_cell(m, hp_trow(t, c++), 320);
    hp_ci_cell(m, hp_trow(t, c++), 320);
    if (with_impact) {
        if (isnan(m->impact))
            snprintf(hp_trow(t, c++), 320, "-");
        else
            hp_si(m->impact, hp_trow(t, c++), 320);
    }
    snprintf(hp_trow(t, c++), 320, "%s", m->verdict);
}

static const char *hp_ci_name(const struct hp_diff *D, char *buf, size_t len)
{
    snprintf(buf, len, "%g%% CI", 100 * D->conf);
    return buf;
}

/* One list section: the rows given (largest first) that hp_shown admits, at most top unless all. */
static void hp_text_list(FILE *out, struct hp_diff *D, struct hp_metric **rows, int n, const char *title, int top,
                         int all, const char *empty)
{
    char ci[32];
    struct hp_table t = {{"", "baseline", "candidate", "change", hp_ci_name(D, ci, sizeof ci), "moved/Mop",
                          "verdict"},
                         NULL, 0, 0, 7};
    t.head[0] = title;
    int shown = 0, more = 0, alike = 0;
    for (int i = 0; i < n; i++) {
        alike += !all && hp_notable(rows[i]) && hp_like_whole(D, rows[i]);
        if (!hp_shown(D, rows[i], all))
            continue;
        if (shown >= top && !all) {
            more++;
            continue;
        }
        hp_metric_row(&t, rows[i], 1);
        shown++;
    }
    if (shown)
        hp_tprint(out, &t);
    else if (!alike)
        fprintf(out, "  %s\n", empty);
    if (more)
        fprintf(out, "  %d more (--top N or --all shows them)\n", more);
    if (alike)
        fprintf(out, "  %d size-class row%s moved like every class together (within %g points of the overall "
                     "share's change): not repeated (--all shows them)\n",
                alike, alike == 1 ? "" : "s", D->threshold);
}

/* A side's value of a setting: the same in every run, "(unset)" in none, else "(differs between runs)". */
static const char *hp_setting(const struct hp_diff *D, int s, const char *name)
{
    const char *val = NULL;
    int seen = 0;
    for (int i = 0; i < D->count[s]; i++) {
        const struct hp_run *R = &D->run[D->first[s] + i];
        const char *v = NULL;
        for (int k = 0; k < R->nset; k++)
            if (!strcmp(R->set_name[k], name))
                v = R->set_value[k] ? R->set_value[k] : "";
        if (i == 0) {
            val = v;
            seen = 1;
        } else if ((v == NULL) != (val == NULL) || (v && strcmp(v, val))) {
            return "(differs between runs)";
        }
    }
    return seen && val ? val : "(unset)";
}

/* Whether a setting is worth listing: its sides differ, or it varies among the runs of a side (two sides that both
 * vary read alike, "(differs between runs)", but are not the same setting). */
static int hp_setting_differs(const char *a, const char *b)
{
    return strcmp(a, b) != 0 || !strcmp(a, "(differs between runs)");
}

/* Settings that tell runs apart by nature (where each recording went, which pid wrote it) are not differences. */
static int hp_setting_ignored(const char *name)
{
    return !strcmp(name, "HAKMEM_RECORD") || !strcmp(name, "HAKMEM_RECORD_ROOT_PID");
}

/* Every setting name of every run, once. */
static int hp_setting_names(const struct hp_diff *D, const char ***out)
{
    const char **v = NULL;
    int n = 0;
    for (int r = 0; r < D->nruns; r++)
        for (int k = 0; k < D->run[r].nset; k++) {
            const char *name = D->run[r].set_name[k];
            int dup = hp_setting_ignored(name);
            for (int j = 0; j < n && !dup; j++)
                dup = !strcmp(v[j], name);
            if (dup)
                continue;
            v = realloc(v, (size_t)(n + 1) * sizeof *v);
            if (!v) {
                hp_fail(VERB, "out of memory");
                exit(HP_EXIT_USAGE);
            }
            v[n++] = name;
        }
    *out = v;
    return n;
}

/* What a side is: its sampling (or "mixed"), lost events, incomplete runs, its command. */
static const char *hp_side_same(const struct hp_diff *D, int s, size_t off)
{
    const char *first = NULL;
    for (int i = 0; i < D->count[s]; i++) {
        const char *v = *(char *const *)((const char *)&D->run[D->first[s] + i] + off);
        v = v ? v : "";
        if (!first)
            first = v;
        else if (strcmp(first, v))
            return NULL;
    }
    return first ? first : "";
}

static int64_t hp_side_lost(const struct hp_diff *D, int s)
{
    int64_t lost = 0;
    for (int i = 0; i < D->count[s]; i++)
        lost += D->run[D->first[s] + i].lost;
    return lost;
}

/* The warnings and notes, one line each, shared by text and JSON. */
struct hp_notes {
    char line[64][600];
    int warn[64];
    int n;
};

static void hp_note(struct hp_notes *N, int warn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void hp_note(struct hp_notes *N, int warn, const char *fmt, ...)
{
    if (N->n >= 64)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(N->line[N->n], sizeof N->line[N->n], fmt, ap);
    va_end(ap);
    N->warn[N->n++] = warn;
}

static void hp_collect_notes(const struct hp_diff *D, struct hp_notes *N)
{
    const char *samp[2];
    for (int s = 0; s < 2; s++) {
        samp[s] = hp_side_same(D, s, offsetof(struct hp_run, sample));
        if (!samp[s])
            hp_note(N, 1, "the %s's runs used different sampling: its call-site shares mix estimates", hp_side[s]);
    }
    if (samp[0] && samp[1] && strcmp(samp[0], samp[1]))
        hp_note(N, 1, "different sampling: baseline %s, candidate %s (call-site shares are estimates of "
                      "different precision; counters are exact either way)", samp[0], samp[1]);
    int64_t lost[2] = {hp_side_lost(D, BASE), hp_side_lost(D, CAND)};
    if (lost[0] != lost[1])
        hp_note(N, 1, "the sides lost different numbers of events: baseline %lld, candidate %lld (call-site "
                      "shares of the side that lost more are incomplete; counters are exact either way)",
                (long long)lost[0], (long long)lost[1]);
    else if (lost[0])
        hp_note(N, 1, "both sides lost events (%lld each): call-site shares are incomplete", (long long)lost[0]);
    for (int r = 0; r < D->nruns; r++)
        if (!D->run[r].complete)
            hp_note(N, 1, "%s run %s is incomplete (%s): its counters are those of its last snapshot",
                    hp_side[r >= D->first[CAND]], D->run[r].input,
                    D->run[r].damage ? D->run[r].damage : "no end mark");
    for (int r = 0; r < D->nruns; r++)
        if (D->run[r].allocs + D->run[r].frees == 0)
            hp_note(N, 1, "%s run %s counted no allocation or free (no counter snapshot?)",
                    hp_side[r >= D->first[CAND]], D->run[r].input);
    const char *cmd[2] = {hp_side_same(D, BASE, offsetof(struct hp_run, cmdline)),
                          hp_side_same(D, CAND, offsetof(struct hp_run, cmdline))};
    for (int s = 0; s < 2; s++)
        if (!cmd[s])
            hp_note(N, 1, "the %s's runs ran different commands", hp_side[s]);
    if (cmd[0] && cmd[1] && strcmp(cmd[0], cmd[1]))
        hp_note(N, 0, "the commands differ: baseline `%s`, candidate `%s`", cmd[0], cmd[1]);
    const char *bid[2] = {hp_side_same(D, BASE, offsetof(struct hp_run, build_id)),
                          hp_side_same(D, CAND, offsetof(struct hp_run, build_id))};
    if (bid[0] && bid[1] && strcmp(bid[0], bid[1]))
        hp_note(N, 0, "different builds of libhakmem_prof.so: baseline build id %.12s, candidate %.12s", bid[0],
                bid[1]);
    if (D->count[BASE] < 2 && D->count[CAND] < 2)
        hp_note(N, 0, "one run on each side: the noise is unknown and the threshold alone judges (record sets "
                      "with hakprof record --repeat N to know it)");
}

static void hp_emit_text(FILE *out, struct hp_diff *D, struct hp_metric **rank, int top, int all)
{
    char ci[32];
    for (int s = 0; s < 2; s++) {
        const char *cmd = hp_side_same(D, s, offsetof(struct hp_run, cmdline));
        fprintf(out, "%-10s %s: %d run%s", s == BASE ? "baseline:" : "candidate:", D->set[s].label, D->count[s],
                D->count[s] == 1 ? "" : "s");
        if (cmd)
            fprintf(out, " of %s", cmd);
        fputs("\n", out);
    }
    const char **names;
    int nn = hp_setting_names(D, &names), ndiff = 0;
    for (int k = 0; k < nn; k++) {
        const char *a = hp_setting(D, BASE, names[k]), *b = hp_setting(D, CAND, names[k]);
        if (!hp_setting_differs(a, b))
            continue;
        fprintf(out, "%s  %s: baseline %s, candidate %s\n", ndiff++ ? "" : "settings that differ:\n", names[k], a,
                b);
    }
    if (!ndiff)
        fprintf(out, "settings that differ: none\n");
    free(names);
    struct hp_notes N = {.n = 0};
    hp_collect_notes(D, &N);
    for (int i = 0; i < N.n; i++)
        fprintf(out, "%s: %s\n", N.warn[i] ? "warning" : "note", N.line[i]);
    fprintf(out, "judged: a change counts when it is at least %g%% (shares: %g percentage points), moves at least "
                 "%g events per million operations, and the %s of the runs' spread excludes zero\n",
            D->threshold, D->threshold, HP_MIN_PER_MOP, hp_ci_name(D, ci, sizeof ci));

    fprintf(out, "\n== headline ==\n");
    struct hp_table t = {{"", "baseline", "candidate", "change", hp_ci_name(D, ci, sizeof ci), "verdict"}, NULL, 0,
                         0, 6};
    t.head[0] = "metric";
    static const char *const heads[] = {"throughput", "wall_time", "operations"};
    for (size_t i = 0; i < 3; i++) {
        int k = hp_find(D, heads[i]);
        if (k >= 0 && D->m[k].defined)
            hp_metric_row(&t, &D->m[k], 0);
    }
    hp_tprint(out, &t);

    int n = D->nm;
    struct hp_metric **sel = hp_xcalloc((size_t)n, sizeof *sel);
    static const struct {
        const char *title, *heading, *empty;
        int groups; /* bit mask of enum hp_group */
    } sections[] = {
        {"changes, by how much of the difference they explain", "what",
         "no change beyond the threshold and the noise", 1 << G_REFILL | 1 << G_FREE | 1 << G_COUNTER | 1 << G_GAUGE |
                                                             1 << G_MIX},
        {"per size class", "class", "no class shifted beyond the threshold and the noise", 1 << G_CLASS},
        {"call sites (matched by function and file:line)", "call site",
         "no call site appeared, vanished or changed share beyond the threshold and the noise", 1 << G_SITE},
    };
    for (size_t sec = 0; sec < 3; sec++) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (sections[sec].groups & (1 << rank[i]->group))
                sel[k++] = rank[i];
        fprintf(out, "\n== %s ==\n", sections[sec].title);
        hp_text_list(out, D, sel, k, sections[sec].heading, top, all, sections[sec].empty);
    }
    /* Call sites that are only on one side, said in words: the table shows them as 0.0% on the other side. */
    int k = 0;
    for (int i = 0; i < n; i++) {
        struct hp_metric *m = rank[i];
        if (m->group != G_SITE || strncmp(m->key, "site:", 5) || !m->defined || !hp_shown(D, m, 0))
            continue;
        int appeared = m->s[BASE].max == 0 && m->s[CAND].mean > 0;
        int vanished = m->s[CAND].max == 0 && m->s[BASE].mean > 0;
        if ((appeared || vanished) && k++ < top)
            fprintf(out, "  %s: %s\n", appeared ? "appeared" : "vanished", m->key + 5);
    }
    free(sel);

    int reg = 0, imp = 0;
    const struct hp_metric *top_reg = NULL;
    for (int i = 0; i < n; i++) {
        if (hp_is(rank[i], "regression")) {
            reg++;
            if (!top_reg && rank[i]->group != G_HEADLINE)
                top_reg = rank[i];
        }
        imp += hp_is(rank[i], "improvement");
    }
    int head_reg = 0;
    for (int i = 0; i < n; i++)
        head_reg += rank[i]->group == G_HEADLINE && hp_is(rank[i], "regression");
    fprintf(out, "\nresult: ");
    if (reg && (!D->fail_headline || head_reg))
        fprintf(out, "REGRESSION (exit 1): %d regression%s", reg, reg == 1 ? "" : "s");
    else if (reg)
        fprintf(out, "no regression of the headline (exit 0, --fail-on headline), %d of other metrics", reg);
    else
        fprintf(out, "no regression");
    fprintf(out, " and %d improvement%s beyond the threshold and the noise\n", imp, imp == 1 ? "" : "s");
    /* The verdict in one line each: the throughput, and the change that moved the most operations. */
    int k0 = hp_find(D, "throughput");
    char c[64], ci2[64];
    if (k0 >= 0 && D->m[k0].defined) {
        hp_change_cell(&D->m[k0], c, sizeof c);
        hp_ci_cell(&D->m[k0], ci2, sizeof ci2);
        fprintf(out, "  throughput %s (%s): %s\n", c, ci2, D->m[k0].verdict);
    }
    if (top_reg) {
        hp_change_cell(top_reg, c, sizeof c);
        fprintf(out, "  largest regression: %s %s\n", top_reg->what, c);
    }
}

/* ---- JSON ---- */
static void hp_jnum(FILE *out, double v)
{
    if (isfinite(v))
        fprintf(out, "%.10g", v);
    else
        fputs("null", out);
}

static void hp_jside(FILE *out, const struct hp_sample *s)
{
    fprintf(out, "{\"n\": %d, \"mean\": ", s->n);
    hp_jnum(out, s->mean);
    fputs(", \"sd\": ", out);
    hp_jnum(out, s->n >= 2 ? s->sd : NAN);
    fputs(", \"min\": ", out);
    hp_jnum(out, s->min);
    fputs(", \"max\": ", out);
    hp_jnum(out, s->max);
    fputs("}", out);
}

static void hp_jmetric(FILE *out, const struct hp_metric *m)
{
    static const char *const noise[] = {"unknown", "welch", "pooled"};
    fputs("{\"key\": ", out);
    hp_json_str(out, m->key);
    fputs(", \"what\": ", out);
    hp_json_str(out, m->what);
    fprintf(out, ", \"group\": \"%s\", \"unit\": \"%s\", \"worse_when\": \"%s\", \"baseline\": ",
            hp_group_name[m->group], hp_unit_name[m->unit],
            m->dir > 0 ? "higher" : m->dir < 0 ? "lower" : "neither");
    hp_jside(out, &m->s[BASE]);
    fputs(", \"candidate\": ", out);
    hp_jside(out, &m->s[CAND]);
    fputs(", \"change\": ", out);
    hp_jnum(out, m->delta);
    fputs(", \"change_pct\": ", out);
    hp_jnum(out, hp_is_share(m) ? NAN : m->s[BASE].mean != 0 ? 100 * m->delta / fabs(m->s[BASE].mean) : NAN);
    fputs(", \"change_pp\": ", out);
    hp_jnum(out, hp_is_share(m) ? 100 * m->delta : NAN);
    fprintf(out, ", \"noise\": \"%s\", \"ci_low\": ", noise[m->noise]);
    hp_jnum(out, m->noise == HP_NOISE_UNKNOWN ? NAN : m->lo);
    fputs(", \"ci_high\": ", out);
    hp_jnum(out, m->noise == HP_NOISE_UNKNOWN ? NAN : m->hi);
    fputs(", \"moved_per_mop\": ", out);
    hp_jnum(out, m->impact);
    if (m->group == G_CLASS) {
        fputs(", \"change_vs_all_classes_pp\": ", out);
        hp_jnum(out, 100 * m->dev);
    }
    fprintf(out, ", \"material\": %s, \"significant\": %s, \"verdict\": \"%s\"}", m->material ? "true" : "false",
            m->noise == HP_NOISE_UNKNOWN ? "null" : m->significant ? "true" : "false", m->verdict);
}

static void hp_emit_json(FILE *out, struct hp_diff *D, struct hp_metric **rank, int status)
{
    fputs("{", out);
    for (int s = 0; s < 2; s++) {
        fprintf(out, "%s\n  \"%s\": {\"label\": ", s ? "," : "", hp_side[s]);
        hp_json_str(out, D->set[s].label);
        fputs(", \"runs\": [", out);
        for (int i = 0; i < D->count[s]; i++) {
            const struct hp_run *R = &D->run[D->first[s] + i];
            fprintf(out, "%s\n    {\"input\": ", i ? "," : "");
            hp_json_str(out, R->input);
            fputs(", \"database\": ", out);
            hp_json_str(out, R->db);
            fputs(", \"command\": ", out);
            hp_json_str(out, R->cmdline ? R->cmdline : "");
            fputs(", \"sampling\": ", out);
            hp_json_str(out, R->sample);
            fprintf(out, ", \"lost_events\": %lld, \"complete\": %s, \"duration_s\": ", (long long)R->lost,
                    R->complete ? "true" : "false");
            hp_jnum(out, (double)R->duration_ns / 1e9);
            fprintf(out, ", \"allocations\": %lld, \"frees\": %lld}", (long long)R->allocs, (long long)R->frees);
        }
        fprintf(out, "\n  ], \"lost_events\": %lld}", (long long)hp_side_lost(D, s));
    }
    fputs(",\n  \"threshold_pct\": ", out);
    hp_jnum(out, D->threshold);
    fputs(", \"confidence\": ", out);
    hp_jnum(out, D->conf);
    fputs(", \"min_moved_per_mop\": ", out);
    hp_jnum(out, HP_MIN_PER_MOP);
    fputs(",\n  \"settings_differ\": [", out);
    const char **names;
    int nn = hp_setting_names(D, &names), nd = 0;
    for (int k = 0; k < nn; k++) {
        const char *a = hp_setting(D, BASE, names[k]), *b = hp_setting(D, CAND, names[k]);
        if (!hp_setting_differs(a, b))
            continue;
        fprintf(out, "%s\n    {\"name\": ", nd++ ? "," : "");
        hp_json_str(out, names[k]);
        fputs(", \"baseline\": ", out);
        hp_json_str(out, a);
        fputs(", \"candidate\": ", out);
        hp_json_str(out, b);
        fputs("}", out);
    }
    free(names);
    fputs(nd ? "\n  ]" : "]", out);
    struct hp_notes N = {.n = 0};
    hp_collect_notes(D, &N);
    for (int w = 1; w >= 0; w--) {
        fprintf(out, ",\n  \"%s\": [", w ? "warnings" : "notes");
        int k = 0;
        for (int i = 0; i < N.n; i++)
            if (N.warn[i] == w) {
                fputs(k++ ? ",\n    " : "\n    ", out);
                hp_json_str(out, N.line[i]);
            }
        fputs(k ? "\n  ]" : "]", out);
    }
    static const struct {
        const char *key;
        int groups;
    } sections[] = {
        {"headline", 1 << G_HEADLINE},
        {"changes", 1 << G_REFILL | 1 << G_FREE | 1 << G_COUNTER | 1 << G_GAUGE | 1 << G_MIX},
        {"size_classes", 1 << G_CLASS},
        {"call_sites", 1 << G_SITE},
    };
    int reg = 0, imp = 0;
    for (size_t sec = 0; sec < 4; sec++) {
        fprintf(out, ",\n  \"%s\": [", sections[sec].key);
        int k = 0;
        for (int i = 0; i < D->nm; i++) {
            /* the headline in its fixed order, the rest largest first */
            const struct hp_metric *m = sec == 0 ? &D->m[i] : rank[i];
            if (!(sections[sec].groups & (1 << m->group)) || !hp_shown(D, m, 1))
                continue;
            fputs(k++ ? ",\n    " : "\n    ", out);
            hp_jmetric(out, m);
            reg += hp_is(m, "regression");
            imp += hp_is(m, "improvement");
        }
        fputs(k ? "\n  ]" : "]", out);
    }
    fprintf(out, ",\n  \"regressions\": %d, \"improvements\": %d, \"exit_status\": %d\n}\n", reg, imp, status);
}

/* ---- The verb ---- */
static void hp_diff_usage(FILE *f)
{
    fprintf(f,
            "usage: hakprof diff BASE NEW [--threshold PCT] [--confidence PCT] [--format text|json] [--top N]\n"
            "                    [--all] [--fail-on any|headline] [-f]\n"
            "  Compares a baseline (BASE) with a candidate (NEW) and says, metric by metric, whether the change is a\n"
            "  regression, an improvement or within the run-to-run noise, largest first.\n"
            "  BASE and NEW are each a recording (.hkp, ingested beside itself when needed), a database, a directory\n"
            "  of repeated runs (every *.hkp in it, as hakprof record --repeat N -o DIR writes; else every *.db), or\n"
            "  a quoted glob pattern ('base-*.hkp'). A set's runs give each metric its spread.\n"
            "  Metrics: throughput (allocations + frees per second, from the allocator's counters) and wall time;\n"
            "  every counter per million operations; refill-stage and free-path shares, overall and per size\n"
            "  class; each call site's share of allocations and of cross-thread frees (matched by function and\n"
            "  file:line, never by address).\n"
            "  A change is a regression or improvement when it reaches the threshold and, with two or more runs on\n"
            "  a side, the confidence interval of the change (Welch's t) excludes zero.\n"
            "  --threshold PCT   smallest change that counts: PCT percent for rates, PCT percentage points for\n"
            "                    shares (default 5)\n"
            "  --confidence PCT  level of the confidence intervals, 50 to 99.9 (default 95)\n"
            "  --format F        text (default) or json (one object, every metric)\n"
            "  --top N           rows per section in text (default 20)\n"
            "  --all             every metric that is not zero on both sides, in text\n"
            "  --fail-on WHAT    what makes the exit status 1: any (default), a regression of any metric that\n"
            "                    has a worse direction; headline, of throughput or wall time only\n"
            "  -f                re-ingest recordings whose database holds something else\n"
            "  --                ends the options (inputs whose names start with '-')\n"
            "  Exit status: 0 no regression beyond the threshold and the noise, 1 at least one, 2 usage or input\n"
            "  error. Documentation: docs/hakprof.md (## hakprof diff), docs/triage.md.\n");
}

static int hp_parse_num(const char *opt, const char *val, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (end == val || *end || errno || !(v >= lo && v <= hi))
        return hp_fail(VERB, "%s %s: expected a number from %g to %g", opt, val, lo, hi);
    *out = v;
    return HP_EXIT_OK;
}

int hp_diff_main(int argc, char **argv)
{
    const char *in[2] = {NULL, NULL};
    int json = 0, all = 0, force = 0, top = 20;
    struct hp_diff D;
    memset(&D, 0, sizeof D);
    D.threshold = 5;
    D.conf = 0.95;
    static const char *const with_value[] = {"--threshold", "--confidence", "--format", "--top", "--fail-on", NULL};
    int dashdash = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        char opt[32] = "";
        int got;
        if (dashdash) { /* after --: inputs only */
            if (in[0] && in[1])
                return hp_fail(VERB, "two inputs, BASE and NEW (got a third: %s)", a);
            in[in[0] ? 1 : 0] = a;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            hp_diff_usage(stdout);
            return HP_EXIT_OK;
        } else if (!strcmp(a, "--all")) {
            all = 1;
            continue;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--force")) {
            force = 1;
            continue;
        } else if ((got = hp_opt_value(VERB, argc, argv, &i, with_value, opt, sizeof opt, &val))) {
            if (got < 0)
                return HP_EXIT_USAGE;
        } else if (!strcmp(a, "--")) {
            dashdash = 1; /* what follows are inputs, even names starting with '-' */
            continue;
        } else if (a[0] == '-' && a[1]) {
            return hp_fail(VERB, "unknown option %s (try hakprof diff --help)", a);
        } else if (!in[0]) {
            in[0] = a;
            continue;
        } else if (!in[1]) {
            in[1] = a;
            continue;
        } else {
            return hp_fail(VERB, "two inputs, BASE and NEW (got a third: %s)", a);
        }
        double v;
        if (!strcmp(opt, "--threshold")) {
            if (hp_parse_num(opt, val, 0, 1e6, &D.threshold))
                return HP_EXIT_USAGE;
        } else if (!strcmp(opt, "--confidence")) {
            if (hp_parse_num(opt, val, 50, 99.9, &v))
                return HP_EXIT_USAGE;
            D.conf = v / 100;
        } else if (!strcmp(opt, "--top")) {
            if (hp_parse_num(opt, val, 1, 1e6, &v))
                return HP_EXIT_USAGE;
            top = (int)v;
        } else if (!strcmp(opt, "--fail-on")) {
            if (!strcmp(val, "headline"))
                D.fail_headline = 1;
            else if (strcmp(val, "any"))
                return hp_fail(VERB, "--fail-on %s: expected any or headline", val);
        } else if (!strcmp(opt, "--format")) {
            if (!strcmp(val, "json"))
                json = 1;
            else if (strcmp(val, "text"))
                return hp_fail(VERB, "--format %s: expected text or json", val);
        } else {
            return hp_fail(VERB, "unknown option %s (try hakprof diff --help)", opt);
        }
    }
    if (!in[1])
        return hp_fail(VERB, "needs two inputs: BASE (the baseline) and NEW (the candidate) (try hakprof diff --help)");
    for (int s = 0; s < 2; s++)
        if (hp_runset_load(VERB, in[s], force, &D.set[s])) {
            if (s)
                hp_runset_free(&D.set[0]);
            return HP_EXIT_USAGE;
        }
    D.count[BASE] = D.set[BASE].n;
    D.count[CAND] = D.set[CAND].n;
    D.first[CAND] = D.count[BASE];
    D.nruns = D.count[BASE] + D.count[CAND];
    D.run = hp_xcalloc((size_t)D.nruns, sizeof *D.run);
    for (int r = 0; r < D.nruns && !D.failed; r++) {
        int s = r >= D.first[CAND];
        D.run[r].input = hp_xstrdup(VERB, D.set[s].inputs[r - D.first[s]]);
        D.run[r].db = hp_xstrdup(VERB, D.set[s].dbs[r - D.first[s]]);
        hp_load_run(&D, r);
    }
    int status = HP_EXIT_USAGE;
    if (!D.failed) {
        /* cycles are weighed in refills' worth: the pooled cycles per slow-path refill of every run */
        double c = 0;
        int k = 0;
        for (int r = 0; r < D.nruns; r++)
            if (!isnan(D.run[r].cycles_per_refill)) {
                c += D.run[r].cycles_per_refill;
                k++;
            }
        D.cycles_per_refill = k && c > 0 ? c / k : 1000;
        for (int i = 0; i < D.nm; i++)
            hp_judge(&D, &D.m[i]);
        hp_class_dev(&D);
        struct hp_metric **rank = hp_xcalloc((size_t)D.nm, sizeof *rank);
        for (int i = 0; i < D.nm; i++)
            rank[i] = &D.m[i];
        qsort(rank, (size_t)D.nm, sizeof *rank, hp_by_impact);
        status = HP_EXIT_OK;
        for (int i = 0; i < D.nm; i++)
            if (hp_is(&D.m[i], "regression") && (!D.fail_headline || D.m[i].group == G_HEADLINE))
                status = HP_EXIT_REGRESSION;
        if (json)
            hp_emit_json(stdout, &D, rank, status);
        else
            hp_emit_text(stdout, &D, rank, top, all);
        free(rank);
        if (fflush(stdout) != 0 || ferror(stdout))
            status = hp_fail(VERB, "writing the output failed: %s", strerror(errno));
    }
    for (int i = 0; i < D.nm; i++) {
        free(D.m[i].key);
        free(D.m[i].what);
        free(D.m[i].v);
        free(D.m[i].w);
    }
    free(D.m);
    free(D.slot);
    for (int r = 0; r < D.nruns; r++) {
        struct hp_run *R = &D.run[r];
        free(R->input);
        free(R->db);
        free(R->cmdline);
        free(R->sample);
        free(R->damage);
        free(R->build_id);
        for (int k = 0; k < R->nset; k++) {
            free(R->set_name[k]);
            free(R->set_value[k]);
        }
        free(R->set_name);
        free(R->set_value);
    }
    free(D.run);
    hp_runset_free(&D.set[0]);
    hp_runset_free(&D.set[1]);
    return status;
}
