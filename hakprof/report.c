/* hakprof report: the one-page summary of a run, read from its SQLite database (ingesting the recording first
 * when needed), as aligned text, one JSON object or CSV blocks. Every number is a query over the schema. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hakprof.h"

enum hp_fmt { HP_FMT_TEXT, HP_FMT_JSON, HP_FMT_CSV };

/* ---- The report model: sections of typed cells, rendered by one of three emitters ---- */
enum hp_cell_type { HP_C_NULL, HP_C_INT, HP_C_REAL, HP_C_PCT, HP_C_TEXT };
struct hp_cell {
    enum hp_cell_type type;
    int64_t i;
    double d;     /* HP_C_REAL; HP_C_PCT holds a fraction 0..1 */
    int prec;     /* HP_C_REAL: digits after the point (1 unless set) */
    int machine;  /* first cell of a key-value row: the row is for JSON and CSV only, the text says it already */
    char *s;
};
#define HP_MAXCOLS 16
struct hp_col {
    const char *name;
    int hide_zero; /* text only: leave the column out when no row has a non-zero value */
    int right;     /* text only: right-align even if the cells are text (size-class labels) */
};
struct hp_section {
    const char *key;   /* JSON member / CSV first column */
    const char *title; /* text heading */
    int kv;            /* two columns, field and value: a JSON object rather than an array */
    struct hp_col cols[HP_MAXCOLS];
    int ncols;
    struct hp_cell *cells;
    int nrows, caprows;
    char note[512];    /* text only: a line under the table */
    int hide_empty_text; /* text only: leave the section out when it has no row (JSON and CSV keep the key) */
    int own_title;     /* title was allocated for this section */
};

struct hp_report {
    struct hp_section *secs;
    int nsecs, capsecs;
};

static struct hp_section *hp_section(struct hp_report *r, const char *key, const char *title, int kv, ...)
{
    if (r->nsecs == r->capsecs) {
        r->capsecs = r->capsecs ? r->capsecs * 2 : 16;
        r->secs = hp_xrealloc("report", r->secs, (size_t)r->capsecs * sizeof *r->secs);
    }
    struct hp_section *s = &r->secs[r->nsecs++];
    memset(s, 0, sizeof *s);
    s->key = key;
    s->title = title;
    s->kv = kv;
    va_list ap;
    va_start(ap, kv);
    const char *name;
    while ((name = va_arg(ap, const char *)) && s->ncols < HP_MAXCOLS)
        s->cols[s->ncols++].name = name;
    va_end(ap);
    return s;
}

static struct hp_cell *hp_row(struct hp_section *s)
{
    if (s->nrows == s->caprows) {
        s->caprows = s->caprows ? s->caprows * 2 : 16;
        s->cells = hp_xrealloc("report", s->cells, (size_t)s->caprows * HP_MAXCOLS * sizeof *s->cells);
    }
    struct hp_cell *row = &s->cells[(size_t)s->nrows++ * HP_MAXCOLS];
    memset(row, 0, HP_MAXCOLS * sizeof *row);
    return row;
}

static void hp_set_int(struct hp_cell *c, int64_t v)
{
    c->type = HP_C_INT;
    c->i = v;
}
static void hp_set_real(struct hp_cell *c, double v)
{
    c->type = isfinite(v) ? HP_C_REAL : HP_C_NULL;
    c->d = v;
    c->prec = 1;
}
/* Seconds from nanoseconds, to the millisecond. */
static void hp_set_secs(struct hp_cell *c, int64_t ns)
{
    hp_set_real(c, (double)ns / 1e9);
    c->prec = 3;
}
/* A share: num / den, or NULL when there is nothing to share. */
static void hp_set_pct(struct hp_cell *c, double num, double den)
{
    if (den > 0) {
        c->type = HP_C_PCT;
        c->d = num / den;
    } else {
        c->type = HP_C_NULL;
    }
}
static void hp_set_text(struct hp_cell *c, const char *s)
{
    if (!s) {
        c->type = HP_C_NULL;
        return;
    }
    c->type = HP_C_TEXT;
    c->s = hp_xstrdup("report", s);
}

/* A key-value row. */
static void hp_kv_int(struct hp_section *s, const char *k, int64_t v)
{
    struct hp_cell *r = hp_row(s);
    hp_set_text(&r[0], k);
    hp_set_int(&r[1], v);
}
static void hp_kv_text(struct hp_section *s, const char *k, const char *v)
{
    struct hp_cell *r = hp_row(s);
    hp_set_text(&r[0], k);
    hp_set_text(&r[1], v);
}
static void hp_report_free(struct hp_report *r)
{
    for (int i = 0; i < r->nsecs; i++) {
        struct hp_section *s = &r->secs[i];
        for (size_t k = 0; k < (size_t)s->nrows * HP_MAXCOLS; k++)
            free(s->cells[k].s);
        free(s->cells);
        if (s->own_title)
            free((char *)s->title);
    }
    free(r->secs);
}

/* ---- Text ---- */
static void hp_cell_text(const struct hp_cell *c, char *buf, size_t len)
{
    switch (c->type) {
    case HP_C_NULL: snprintf(buf, len, "-"); break;
    case HP_C_INT: snprintf(buf, len, "%lld", (long long)c->i); break;
    case HP_C_REAL: snprintf(buf, len, "%.*f", c->prec, c->d); break;
    case HP_C_PCT: snprintf(buf, len, "%.1f%%", 100.0 * c->d); break;
    case HP_C_TEXT: snprintf(buf, len, "%s", c->s); break;
    }
}

static int hp_col_visible(const struct hp_section *s, int col)
{
    if (!s->cols[col].hide_zero)
        return 1;
    for (int r = 0; r < s->nrows; r++) {
        const struct hp_cell *c = &s->cells[(size_t)r * HP_MAXCOLS + col];
        if ((c->type == HP_C_INT && c->i) || ((c->type == HP_C_REAL || c->type == HP_C_PCT) && c->d != 0))
            return 1;
    }
    return 0;
}

static void hp_emit_text(FILE *out, const struct hp_report *rep)
{
    char buf[4096];
    for (int i = 0; i < rep->nsecs; i++) {
        const struct hp_section *s = &rep->secs[i];
        if (s->hide_empty_text && !s->nrows)
            continue;
        if (s->title)
            fprintf(out, "%s== %s ==\n", i ? "\n" : "", s->title);
        if (s->kv) {
            size_t w = 0;
            for (int r = 0; r < s->nrows; r++)
                w = strlen(s->cells[(size_t)r * HP_MAXCOLS].s) > w ? strlen(s->cells[(size_t)r * HP_MAXCOLS].s) : w;
            for (int r = 0; r < s->nrows; r++) {
                const struct hp_cell *row = &s->cells[(size_t)r * HP_MAXCOLS];
                if (row[0].machine)
                    continue;
                hp_cell_text(&row[1], buf, sizeof buf);
                if (s->title)
                    fprintf(out, "  %-*s  %s\n", (int)w, row[0].s, buf);
                else
                    fprintf(out, "%s: %s\n", row[0].s, buf); /* the header lines: "lost events: 0" */
            }
        } else if (s->nrows == 0) {
            fprintf(out, "  (none)\n");
        } else {
            int vis[HP_MAXCOLS], width[HP_MAXCOLS], left[HP_MAXCOLS];
            for (int c = 0; c < s->ncols; c++) {
                vis[c] = hp_col_visible(s, c);
                width[c] = (int)strlen(s->cols[c].name);
                left[c] = 0; /* numbers right-aligned so digits line up; text left-aligned */
                for (int r = 0; r < s->nrows; r++) {
                    const struct hp_cell *cell = &s->cells[(size_t)r * HP_MAXCOLS + c];
                    hp_cell_text(cell, buf, sizeof buf);
                    if ((int)strlen(buf) > width[c])
                        width[c] = (int)strlen(buf);
                    if (cell->type == HP_C_TEXT && !s->cols[c].right)
                        left[c] = 1;
                }
            }
            int last = -1;
            for (int c = 0; c < s->ncols; c++)
                if (vis[c])
                    last = c;
            for (int r = -1; r < s->nrows; r++) {
                fputs(" ", out);
                for (int c = 0; c < s->ncols; c++) {
                    if (!vis[c])
                        continue;
                    const char *t = s->cols[c].name;
                    if (r >= 0) {
                        hp_cell_text(&s->cells[(size_t)r * HP_MAXCOLS + c], buf, sizeof buf);
                        t = buf;
                    }
                    if (c == last && left[c])
                        fprintf(out, " %s", t);
                    else
                        fprintf(out, " %*s", left[c] ? -width[c] : width[c], t);
                }
                fputs("\n", out);
            }
        }
        if (s->note[0])
            fprintf(out, "  %s\n", s->note);
    }
}

/* ---- JSON: strings escaped per RFC 8259; bytes that are not UTF-8 become U+FFFD so any parser accepts them ---- */
static size_t hp_utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (c >= 0xf5)
        n = 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

static void hp_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
            p++;
        } else if (c == '\n') {
            fputs("\\n", out);
            p++;
        } else if (c == '\t') {
            fputs("\\t", out);
            p++;
        } else if (c == '\r') {
            fputs("\\r", out);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc(c, out);
            p++;
        } else {
            size_t n = hp_utf8_len(p);
            if (n) {
                fwrite(p, 1, n, out);
                p += n;
            } else {
                fputs("\\ufffd", out);
                p++;
            }
        }
    }
    fputc('"', out);
}

/* A label as a machine key: "bytes allocated (human)" -> "bytes_allocated_human". */
static const char *hp_key(const char *label, char *buf, size_t len)
{
    size_t n = 0;
    int gap = 0;
    for (const char *p = label; *p && n + 2 < len; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            if (gap && n)
                buf[n++] = '_';
            buf[n++] = c;
            gap = 0;
        } else if (c >= 'A' && c <= 'Z') {
            if (gap && n)
                buf[n++] = '_';
            buf[n++] = (char)(c - 'A' + 'a');
            gap = 0;
        } else {
            gap = 1;
        }
    }
    buf[n] = 0;
    return buf;
}

static void hp_json_cell(FILE *out, const struct hp_cell *c)
{
    switch (c->type) {
    case HP_C_NULL: fputs("null", out); break;
    case HP_C_INT: fprintf(out, "%lld", (long long)c->i); break;
    case HP_C_REAL: fprintf(out, "%.*f", c->prec, c->d); break;
    case HP_C_PCT: fprintf(out, "%.1f", 100.0 * c->d); break;
    case HP_C_TEXT: hp_json_string(out, c->s); break;
    }
}

static void hp_emit_json(FILE *out, const struct hp_report *rep)
{
    char key[128];
    fputs("{", out);
    for (int i = 0; i < rep->nsecs; i++) {
        const struct hp_section *s = &rep->secs[i];
        if (s->kv && !s->title) {
            /* the header fields sit at the top level, first, as in the text */
            for (int r = 0; r < s->nrows; r++) {
                const struct hp_cell *row = &s->cells[(size_t)r * HP_MAXCOLS];
                fprintf(out, "%s\n  ", i || r ? "," : "");
                hp_json_string(out, hp_key(row[0].s, key, sizeof key));
                fputs(": ", out);
                hp_json_cell(out, &row[1]);
            }
            continue;
        }
        fprintf(out, "%s\n  ", i ? "," : "");
        hp_json_string(out, s->key);
        if (s->kv) {
            fputs(": {", out);
            for (int r = 0; r < s->nrows; r++) {
                const struct hp_cell *row = &s->cells[(size_t)r * HP_MAXCOLS];
                fprintf(out, "%s\n    ", r ? "," : "");
                hp_json_string(out, hp_key(row[0].s, key, sizeof key));
                fputs(": ", out);
                hp_json_cell(out, &row[1]);
            }
            fputs(s->nrows ? "\n  }" : "}", out);
            continue;
        }
        fputs(": [", out);
        for (int r = 0; r < s->nrows; r++) {
            fprintf(out, "%s\n    {", r ? "," : "");
            for (int c = 0; c < s->ncols; c++) {
                if (c)
                    fputs(", ", out);
                hp_json_string(out, s->cols[c].name);
                fputs(": ", out);
                hp_json_cell(out, &s->cells[(size_t)r * HP_MAXCOLS + c]);
            }
            fputs("}", out);
        }
        fputs(s->nrows ? "\n  ]" : "]", out);
    }
    fputs("\n}\n", out);
}

/* ---- CSV (RFC 4180 quoting): every line starts with its section's key; each section opens with a header line
 * and ends with an empty line. Key-value sections have the columns field,value. ---- */
static void hp_csv_field(FILE *out, const char *s)
{
    if (!strpbrk(s, ",\"\r\n") && s[0] != ' ' && (!s[0] || s[strlen(s) - 1] != ' ')) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static void hp_csv_cell(FILE *out, const struct hp_cell *c)
{
    char buf[64];
    switch (c->type) {
    case HP_C_NULL: break;
    case HP_C_INT: fprintf(out, "%lld", (long long)c->i); break;
    case HP_C_REAL: fprintf(out, "%.*f", c->prec, c->d); break;
    case HP_C_PCT:
        snprintf(buf, sizeof buf, "%.1f", 100.0 * c->d);
        fputs(buf, out);
        break;
    case HP_C_TEXT: hp_csv_field(out, c->s); break;
    }
}

static void hp_emit_csv(FILE *out, const struct hp_report *rep)
{
    char key[128];
    for (int i = 0; i < rep->nsecs; i++) {
        const struct hp_section *s = &rep->secs[i];
        if (i)
            fputs("\n", out);
        hp_csv_field(out, s->key);
        if (s->kv) {
            fputs(",field,value\n", out);
        } else {
            for (int c = 0; c < s->ncols; c++) {
                fputc(',', out);
                hp_csv_field(out, s->cols[c].name);
            }
            fputs("\n", out);
        }
        int n = s->kv ? 2 : s->ncols;
        for (int r = 0; r < s->nrows; r++) {
            hp_csv_field(out, s->key);
            for (int c = 0; c < n; c++) {
                const struct hp_cell *cell = &s->cells[(size_t)r * HP_MAXCOLS + c];
                fputc(',', out);
                if (s->kv && c == 0)
                    hp_csv_field(out, hp_key(cell->s, key, sizeof key));
                else
                    hp_csv_cell(out, cell);
            }
            fputs("\n", out);
        }
    }
}

/* ---- Queries ---- */
struct hp_q {
    sqlite3 *db;
    const char *path;
    int failed;
};

static sqlite3_stmt *hp_query(struct hp_q *q, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK) {
        if (!q->failed)
            hp_fail("report", "%s: %s (not a hakprof database of this version?)", q->path, sqlite3_errmsg(q->db));
        q->failed = 1;
        return NULL;
    }
    return st;
}

static int hp_done(struct hp_q *q, sqlite3_stmt *st, int rc)
{
    if (rc != SQLITE_DONE && rc != SQLITE_ROW && !q->failed) {
        hp_fail("report", "%s: %s", q->path, sqlite3_errmsg(q->db));
        q->failed = 1;
    }
    sqlite3_finalize(st);
    return q->failed ? -1 : 0;
}

static void hp_col_cell(sqlite3_stmt *st, int i, struct hp_cell *c)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: hp_set_int(c, sqlite3_column_int64(st, i)); break;
    case SQLITE_FLOAT: hp_set_real(c, sqlite3_column_double(st, i)); break;
    case SQLITE_NULL: c->type = HP_C_NULL; break;
    default: hp_set_text(c, (const char *)sqlite3_column_text(st, i)); break;
    }
}

static int64_t hp_scalar(struct hp_q *q, const char *sql)
{
    sqlite3_stmt *st = hp_query(q, sql);
    if (!st)
        return 0;
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    hp_done(q, st, rc);
    return v;
}

static const char *hp_human_bytes(double b, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, units[u]);
    return buf;
}

/* What the run row says, kept for the sections after the header. */
struct hp_run {
    char mode[16];
    int64_t period, seed, lost, complete, events, allocs, frees, stacks, snapshots, duration_ns, pid, ppid;
    char *recording, *damage, *cmdline, *exe, *start_time, *end_reason;
    int64_t end_signal, have_end_signal;
};

static char *hp_col_strdup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? hp_xstrdup("report", (const char *)t) : NULL;
}

static int hp_load_run(struct hp_q *q, struct hp_run *run)
{
    sqlite3_stmt *st = hp_query(q, "SELECT sample_mode, sample_period, sample_seed, lost, complete, damage,"
                                   " recording, cmdline, exe, start_time, duration_ns, events, allocs, frees, stacks,"
                                   " snapshots, pid, ppid, end_reason, end_signal FROM runs WHERE run_id = 1");
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (!q->failed)
            hp_fail("report", "%s: the database holds no run", q->path);
        q->failed = 1;
        sqlite3_finalize(st);
        return -1;
    }
    const unsigned char *m = sqlite3_column_text(st, 0);
    snprintf(run->mode, sizeof run->mode, "%s", m ? (const char *)m : "?");
    run->period = sqlite3_column_int64(st, 1);
    run->seed = sqlite3_column_int64(st, 2);
    run->lost = sqlite3_column_int64(st, 3);
    run->complete = sqlite3_column_int64(st, 4);
    run->damage = hp_col_strdup(st, 5);
    run->recording = hp_col_strdup(st, 6);
    run->cmdline = hp_col_strdup(st, 7);
    run->exe = hp_col_strdup(st, 8);
    run->start_time = hp_col_strdup(st, 9);
    run->duration_ns = sqlite3_column_int64(st, 10);
    run->events = sqlite3_column_int64(st, 11);
    run->allocs = sqlite3_column_int64(st, 12);
    run->frees = sqlite3_column_int64(st, 13);
    run->stacks = sqlite3_column_int64(st, 14);
    run->snapshots = sqlite3_column_int64(st, 15);
    run->pid = sqlite3_column_int64(st, 16);
    run->ppid = sqlite3_column_int64(st, 17);
    run->end_reason = hp_col_strdup(st, 18);
    run->have_end_signal = sqlite3_column_type(st, 19) != SQLITE_NULL;
    run->end_signal = sqlite3_column_int64(st, 19);
    return hp_done(q, st, SQLITE_DONE);
}

static void hp_run_free(struct hp_run *run)
{
    free(run->recording);
    free(run->damage);
    free(run->cmdline);
    free(run->exe);
    free(run->start_time);
    free(run->end_reason);
}

struct hp_heap;
static void hp_build_heap_header(struct hp_section *s, const struct hp_heap *h, const struct hp_run *run);
static void hp_heap_machine(struct hp_section *s, const struct hp_heap *h);

static void hp_build_header(struct hp_report *rep, const struct hp_run *run, const char *db_path,
                            const struct hp_heap *heap)
{
    /* First, before anything else: what could make every later number wrong or partial. */
    struct hp_section *s = hp_section(rep, "header", NULL, 1, "field", "value", (const char *)NULL);
    char buf[1024];
    hp_kv_int(s, "lost events", run->lost);
    if (!strcmp(run->mode, "all"))
        snprintf(buf, sizeof buf, "all (every allocation; seed %lld)", (long long)run->seed);
    else if (!strcmp(run->mode, "count"))
        snprintf(buf, sizeof buf, "count:%lld (every %lldth allocation, estimates x%lld; seed %lld)",
                 (long long)run->period, (long long)run->period, (long long)run->period, (long long)run->seed);
    else if (!strcmp(run->mode, "bytes"))
        snprintf(buf, sizeof buf, "bytes:%lld (one sample per %lld bytes on average, estimates weighted "
                 "1/(1-exp(-size/%lld)); seed %lld)", (long long)run->period, (long long)run->period,
                 (long long)run->period, (long long)run->seed);
    else
        snprintf(buf, sizeof buf, "%s (no events: counters only)", run->mode);
    hp_kv_text(s, "sampling", buf);
    if (run->complete)
        snprintf(buf, sizeof buf, "complete");
    else
        snprintf(buf, sizeof buf, "INCOMPLETE: %s", run->damage ? run->damage : "no END chunk");
    hp_kv_text(s, "recording", buf);
    hp_kv_text(s, "database", db_path);
    hp_build_heap_header(s, heap, run);
    /* The same facts as fields a program can use without parsing the sentences above. */
    struct hp_section *m = s;
    int first = m->nrows;
    hp_kv_text(m, "sample mode", run->mode);
    hp_kv_int(m, "sample period", run->period);
    hp_kv_int(m, "sample seed", run->seed);
    hp_kv_int(m, "complete", run->complete);
    hp_kv_text(m, "damage", run->damage);
    hp_kv_text(m, "recording path", run->recording);
    hp_heap_machine(m, heap);
    for (int r = first; r < m->nrows; r++)
        m->cells[(size_t)r * HP_MAXCOLS].machine = 1;
}

static void hp_build_run(struct hp_report *rep, struct hp_q *q, const struct hp_run *run)
{
    struct hp_section *s = hp_section(rep, "run", "run", 1, "field", "value", (const char *)NULL);
    char buf[256], hb[64];
    hp_kv_text(s, "command", run->cmdline);
    hp_kv_text(s, "executable", run->exe);
    hp_kv_int(s, "pid", run->pid);
    hp_kv_int(s, "parent pid", run->ppid);
    hp_kv_text(s, "started", run->start_time);
    struct hp_cell *dur = hp_row(s);
    hp_set_text(&dur[0], "duration s");
    hp_set_secs(&dur[1], run->duration_ns);
    if (run->end_reason) {
        if (!strcmp(run->end_reason, "signal") && run->have_end_signal)
            snprintf(buf, sizeof buf, "signal %lld", (long long)run->end_signal);
        else
            snprintf(buf, sizeof buf, "%s", run->end_reason);
        hp_kv_text(s, "ended by", buf);
    } else {
        hp_kv_text(s, "ended by", "unknown (recording cut short)");
    }
    sqlite3_stmt *st = hp_query(q, "SELECT allocs, frees, bytes, peak_in_use, threads,"
                                   " (SELECT COUNT(*) FROM counters WHERE run_id = 1) FROM run_totals"
                                   " WHERE run_id = 1");
    if (!st)
        return;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        hp_kv_int(s, "threads", sqlite3_column_int64(st, 4));
        hp_kv_int(s, "allocations", sqlite3_column_int64(st, 0));
        hp_kv_int(s, "frees", sqlite3_column_int64(st, 1));
        hp_kv_int(s, "bytes allocated", sqlite3_column_int64(st, 2));
        hp_kv_text(s, "bytes allocated (human)", hp_human_bytes((double)sqlite3_column_int64(st, 2), hb, sizeof hb));
        hp_kv_int(s, "peak in use", sqlite3_column_int64(st, 3));
        hp_kv_text(s, "peak in use (human)", hp_human_bytes((double)sqlite3_column_int64(st, 3), hb, sizeof hb));
        if (sqlite3_column_int64(st, 5) == 0)
            snprintf(s->note, sizeof s->note, "no counter snapshot in the recording: the totals above are 0");
    }
    hp_done(q, st, rc);
    hp_kv_int(s, "sampled allocations", run->allocs);
    hp_kv_int(s, "sampled frees", run->frees);
    hp_kv_int(s, "stacks", run->stacks);
    hp_kv_int(s, "snapshots", run->snapshots);
    if (!s->note[0])
        snprintf(s->note, sizeof s->note, "totals are the exact counters of the last snapshot; bytes are block "
                 "sizes (class size, or the mapped size of a large block)");
}

/* Call sites: the innermost frame's instruction, summed over the stacks that pass through it. */
static void hp_build_sites(struct hp_report *rep, struct hp_q *q, const struct hp_run *run, int top, int by_bytes)
{
    int exact = !strcmp(run->mode, "all");
    struct hp_section *s =
        hp_section(rep, by_bytes ? "call_sites_by_bytes" : "call_sites_by_allocs",
                   by_bytes ? "hottest call sites by bytes" : "hottest call sites by allocations", 0, "rank",
                   exact ? "allocs" : "est_allocs", "allocs_pct", exact ? "bytes" : "est_bytes", "bytes_pct",
                   "samples", exact ? "frees" : "est_frees", "same_thread_pct", "cross_thread_pct",
                   exact ? "live" : "est_live", "function", "location", "module", (const char *)NULL);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT est_allocs, est_allocs / NULLIF((SELECT SUM(est_allocs) FROM call_sites WHERE run_id = 1), 0),"
             " est_bytes, est_bytes / NULLIF((SELECT SUM(est_bytes) FROM call_sites WHERE run_id = 1), 0),"
             " allocs, est_frees, same_share, cross_share, est_live, function, file, line, module"
             " FROM site_ips WHERE run_id = 1 ORDER BY %s DESC, allocs DESC LIMIT %d",
             by_bytes ? "est_bytes" : "est_allocs", top);
    sqlite3_stmt *st = hp_query(q, sql);
    if (!st)
        return;
    int rc, rank = 0;
    char loc[PATH_MAX + 32];
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct hp_cell *r = hp_row(s);
        hp_set_int(&r[0], ++rank);
        if (exact)
            hp_set_int(&r[1], sqlite3_column_int64(st, 0));
        else
            hp_set_real(&r[1], sqlite3_column_double(st, 0));
        hp_set_pct(&r[2], sqlite3_column_double(st, 1), sqlite3_column_type(st, 1) == SQLITE_NULL ? 0 : 1);
        if (exact)
            hp_set_int(&r[3], sqlite3_column_int64(st, 2));
        else
            hp_set_real(&r[3], sqlite3_column_double(st, 2));
        hp_set_pct(&r[4], sqlite3_column_double(st, 3), sqlite3_column_type(st, 3) == SQLITE_NULL ? 0 : 1);
        hp_set_int(&r[5], sqlite3_column_int64(st, 4));
        if (exact)
            hp_set_int(&r[6], sqlite3_column_int64(st, 5));
        else
            hp_set_real(&r[6], sqlite3_column_double(st, 5));
        hp_set_pct(&r[7], sqlite3_column_double(st, 6), sqlite3_column_type(st, 6) == SQLITE_NULL ? 0 : 1);
        hp_set_pct(&r[8], sqlite3_column_double(st, 7), sqlite3_column_type(st, 7) == SQLITE_NULL ? 0 : 1);
        if (exact)
            hp_set_int(&r[9], sqlite3_column_int64(st, 8));
        else
            hp_set_real(&r[9], sqlite3_column_double(st, 8));
        hp_set_text(&r[10], (const char *)sqlite3_column_text(st, 9));
        const unsigned char *file = sqlite3_column_text(st, 10);
        if (file) {
            const char *f = (const char *)file;
            snprintf(loc, sizeof loc, "%s:%d", f, sqlite3_column_int(st, 11));
            hp_set_text(&r[11], loc);
        }
        const unsigned char *mod = sqlite3_column_text(st, 12);
        if (mod) {
            const char *m = strrchr((const char *)mod, '/');
            hp_set_text(&r[12], m ? m + 1 : (const char *)mod);
        }
    }
    hp_done(q, st, rc);
    snprintf(s->note, sizeof s->note, "%s; same/cross: share of the site's frees done by the allocating thread / by "
             "another thread; live: blocks not freed by the end",
             exact ? "every allocation sampled: exact counts" :
                     "est_*: estimates for the whole program from the samples (samples: allocations recorded)");
}

static const char *const hp_stage_cols[9] = {"tls_sll", "slab_free", "remote_drain", "partial", "adopt",
                                             "new_slab", "ss_cache", "ss_os", "large"};
static const char *const hp_stage_pct_cols[9] = {"tls_sll_pct", "slab_free_pct", "remote_drain_pct", "partial_pct",
                                                 "adopt_pct", "new_slab_pct", "ss_cache_pct", "ss_os_pct",
                                                 "large_pct"};

static void hp_class_label(int cls, int64_t size, struct hp_cell *c)
{
    char buf[32];
    if (cls == 255)
        snprintf(buf, sizeof buf, "large");
    else
        snprintf(buf, sizeof buf, "%lld", (long long)size);
    hp_set_text(c, buf);
}

static void hp_build_stages(struct hp_report *rep, struct hp_q *q)
{
    static int64_t counts[256][9];
    static int64_t sizes[256];
    sqlite3_stmt *st = hp_query(q, "SELECT cls, size, stage_no, count FROM stage_by_class WHERE run_id = 1");
    if (!st || hp_done(q, st, hp_class_counts(st, 9, &counts[0][0], sizes)))
        return;
    struct hp_section *c = hp_section(rep, "refill_stage_counts", "refill stages per size class: counts", 0,
                                      "class", "allocs", (const char *)NULL);
    struct hp_section *p = hp_section(rep, "refill_stage_shares", "refill stages per size class: shares", 0,
                                      "class", "allocs", (const char *)NULL);
    c->cols[0].right = p->cols[0].right = 1;
    for (int k = 0; k < 9; k++) {
        c->cols[c->ncols].name = hp_stage_cols[k];
        c->cols[c->ncols++].hide_zero = 1;
        p->cols[p->ncols].name = hp_stage_pct_cols[k];
        p->cols[p->ncols++].hide_zero = 1;
    }
    int64_t tot[9] = {0}, all = 0;
    for (int cls = 0; cls < 256; cls++) {
        int64_t sum = 0;
        for (int k = 0; k < 9; k++)
            sum += counts[cls][k];
        if (!sum)
            continue;
        struct hp_cell *rc_ = hp_row(c), *rp = hp_row(p);
        hp_class_label(cls, sizes[cls], &rc_[0]);
        hp_class_label(cls, sizes[cls], &rp[0]);
        hp_set_int(&rc_[1], sum);
        hp_set_int(&rp[1], sum);
        for (int k = 0; k < 9; k++) {
            hp_set_int(&rc_[2 + k], counts[cls][k]);
            hp_set_pct(&rp[2 + k], (double)counts[cls][k], (double)sum);
            tot[k] += counts[cls][k];
        }
        all += sum;
    }
    if (all) {
        struct hp_cell *rc_ = hp_row(c), *rp = hp_row(p);
        hp_set_text(&rc_[0], "all");
        hp_set_text(&rp[0], "all");
        hp_set_int(&rc_[1], all);
        hp_set_int(&rp[1], all);
        for (int k = 0; k < 9; k++) {
            hp_set_int(&rc_[2 + k], tot[k]);
            hp_set_pct(&rp[2 + k], (double)tot[k], (double)all);
        }
    }
    snprintf(p->note, sizeof p->note, "share of the class's allocations served by each stage (exact counters); "
             "stages that served nothing are left out of the text");
}

static void hp_build_free_paths(struct hp_report *rep, struct hp_q *q)
{
    static int64_t paths[256][4];
    static int64_t sizes[256], same[256], cross[256];
    sqlite3_stmt *st = hp_query(q, "SELECT cls, size, path_no, count FROM path_by_class WHERE run_id = 1");
    if (!st || hp_done(q, st, hp_class_counts(st, 4, &paths[0][0], sizes)))
        return;
    st = hp_query(q, "SELECT cls, same_thread_frees, cross_thread_frees FROM class_totals WHERE run_id = 1");
    if (!st || hp_done(q, st, hp_class_frees(st, same, cross)))
        return;

    int64_t tot[4] = {0}, all = 0, tsame = 0, tcross = 0;
    for (int cls = 0; cls < 256; cls++) {
        for (int k = 0; k < 4; k++)
            tot[k] += paths[cls][k];
        tsame += same[cls];
        tcross += cross[cls];
    }
    all = tot[0] + tot[1] + tot[2] + tot[3];
    struct hp_section *o = hp_section(rep, "free_paths", "free pipeline", 0, "path", "frees", "share_pct",
                                      (const char *)NULL);
    static const char *const names[4] = {"tls_sll", "ss_local", "ss_remote", "large"};
    for (int k = 0; k < 4; k++) {
        struct hp_cell *r = hp_row(o);
        hp_set_text(&r[0], names[k]);
        hp_set_int(&r[1], tot[k]);
        hp_set_pct(&r[2], (double)tot[k], (double)all);
    }
    struct hp_cell *r = hp_row(o);
    hp_set_text(&r[0], "all");
    hp_set_int(&r[1], all);
    hp_set_pct(&r[2], (double)all, (double)all);
    r = hp_row(o);
    hp_set_text(&r[0], "same_thread");
    hp_set_int(&r[1], tsame);
    hp_set_pct(&r[2], (double)tsame, (double)(tsame + tcross));
    r = hp_row(o);
    hp_set_text(&r[0], "cross_thread");
    hp_set_int(&r[1], tcross);
    hp_set_pct(&r[2], (double)tcross, (double)(tsame + tcross));
    snprintf(o->note, sizeof o->note, "exact counters; same/cross_thread: frees by the allocating thread or by "
             "another one, any path");

    struct hp_section *pc = hp_section(rep, "free_paths_by_class", "free pipeline per size class", 0, "class",
                                       "frees", "tls_sll_pct", "ss_local_pct", "ss_remote_pct", "large_pct",
                                       "same_thread_pct", "cross_thread_pct", (const char *)NULL);
    pc->cols[5].hide_zero = 1;
    pc->cols[0].right = 1;
    for (int cls = 0; cls < 256; cls++) {
        int64_t sum = paths[cls][0] + paths[cls][1] + paths[cls][2] + paths[cls][3];
        if (!sum)
            continue;
        r = hp_row(pc);
        hp_class_label(cls, sizes[cls], &r[0]);
        hp_set_int(&r[1], sum);
        for (int k = 0; k < 4; k++)
            hp_set_pct(&r[2 + k], (double)paths[cls][k], (double)sum);
        hp_set_pct(&r[6], (double)same[cls], (double)(same[cls] + cross[cls]));
        hp_set_pct(&r[7], (double)cross[cls], (double)(same[cls] + cross[cls]));
    }
}

static void hp_build_threads(struct hp_report *rep, struct hp_q *q, const struct hp_run *run, int top)
{
    /* Sampled runs show estimates in every count column (a sampled free weighs what its block's allocation
     * weighed), so allocations, frees and cross-thread frees are in the same unit and the order is by their sum. */
    int exact = !strcmp(run->mode, "all");
    int64_t nthreads = hp_scalar(q, "SELECT COUNT(*) FROM threads WHERE run_id = 1");
    struct hp_section *s = hp_section(rep, "threads", "threads", 0, "tid", "os_tid", "name", "start_s", "exit_s",
                                      exact ? "allocs" : "est_allocs", exact ? "frees" : "est_frees",
                                      exact ? "cross_thread_frees" : "est_cross_thread_frees", (const char *)NULL);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT t.tid, t.os_tid, t.name, t.start_ns, t.exit_ns, t.est_allocs, t.est_frees,"
             " t.est_cross_thread_frees, t.allocs, t.frees, t.cross_thread_frees"
             " FROM threads t WHERE t.run_id = 1 ORDER BY t.est_allocs + t.est_frees DESC, t.tid LIMIT %d",
             top);
    sqlite3_stmt *st = hp_query(q, sql);
    if (!st)
        return;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct hp_cell *r = hp_row(s);
        hp_col_cell(st, 0, &r[0]);
        hp_col_cell(st, 1, &r[1]);
        hp_col_cell(st, 2, &r[2]);
        for (int k = 3; k <= 4; k++) {
            if (sqlite3_column_type(st, k) == SQLITE_NULL)
                r[k].type = HP_C_NULL;
            else
                hp_set_secs(&r[k], sqlite3_column_int64(st, k));
        }
        for (int k = 5; k <= 7; k++) {
            if (exact)
                hp_set_int(&r[k], sqlite3_column_int64(st, k + 3));
            else
                hp_set_real(&r[k], sqlite3_column_double(st, k));
        }
    }
    hp_done(q, st, rc);
    snprintf(s->note, sizeof s->note, "%lld thread%s%s; %s from sampled events (the threads table has them all); "
             "times in seconds from the start",
             (long long)nthreads, nthreads == 1 ? "" : "s", nthreads > top ? ", the busiest shown" : "",
             exact ? "allocs and frees" : "estimates");
}

static void hp_build_matrix(struct hp_report *rep, struct hp_q *q, const struct hp_run *run, int top)
{
    int exact = !strcmp(run->mode, "all");
    int64_t npairs = hp_scalar(q, "SELECT COUNT(*) FROM free_matrix WHERE run_id = 1");
    struct hp_section *s = hp_section(rep, "free_matrix", "who allocated, who freed (thread pairs)", 0,
                                      "alloc_tid", "free_tid", exact ? "frees" : "est_frees", "share_pct",
                                      "cross", (const char *)NULL);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT alloc_tid, free_tid, frees, est_frees,"
             " est_frees / (SELECT SUM(est_frees) FROM free_matrix WHERE run_id = 1)"
             " FROM free_matrix WHERE run_id = 1 ORDER BY est_frees DESC, alloc_tid, free_tid LIMIT %d",
             top);
    sqlite3_stmt *st = hp_query(q, sql);
    if (!st)
        return;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct hp_cell *r = hp_row(s);
        hp_col_cell(st, 0, &r[0]);
        hp_col_cell(st, 1, &r[1]);
        if (exact)
            hp_set_int(&r[2], sqlite3_column_int64(st, 2));
        else
            hp_set_real(&r[2], sqlite3_column_double(st, 3));
        hp_set_pct(&r[3], sqlite3_column_double(st, 4), 1);
        hp_set_text(&r[4], sqlite3_column_int64(st, 0) != sqlite3_column_int64(st, 1) ? "yes" : "no");
    }
    hp_done(q, st, rc);
    snprintf(s->note, sizeof s->note, "%lld pair%s%s, from sampled frees (table free_matrix)", (long long)npairs,
             npairs == 1 ? "" : "s", npairs > top ? ", the largest shown" : "");
}

static void hp_build_depth(struct hp_report *rep, struct hp_q *q)
{
    struct hp_section *s = hp_section(rep, "remote_depth", "remote-list depth at drain", 0, "depth", "drains",
                                      "share_pct", (const char *)NULL);
    s->cols[0].right = 1;
    static const char *const labels[8] = {"1", "2-3", "4-7", "8-15", "16-31", "32-63", "64-127", "128+"};
    int64_t v[8] = {0}, all = 0;
    sqlite3_stmt *st = hp_query(q, "SELECT bucket, drains FROM remote_depth WHERE run_id = 1");
    if (!st)
        return;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int b = sqlite3_column_int(st, 0);
        if (b >= 0 && b < 8) {
            v[b] += sqlite3_column_int64(st, 1);
            all += sqlite3_column_int64(st, 1);
        }
    }
    hp_done(q, st, rc);
    for (int b = 0; b < 8; b++) {
        struct hp_cell *r = hp_row(s);
        hp_set_text(&r[0], labels[b]);
        hp_set_int(&r[1], v[b]);
        hp_set_pct(&r[2], (double)v[b], (double)all);
    }
    snprintf(s->note, sizeof s->note, "remote lists drained, by how many blocks they held (exact counter "
             "remote_depth)");
}

/* ---- Heap errors and leaks (ERROR and LEAKS chunks of the debug checks) ---- */
/* What the heap checks left in the database. A database made before ingest knew those chunks has no errors or
 * leaks table: then have_tables is 0 and the report says so instead of guessing. */
struct hp_heap {
    int have_tables;
    int64_t errors, leak_report;
    int64_t leak_sites, leak_blocks, leak_bytes, leak_est_blocks, leak_est_bytes;
    char guard[64], poison[64];
};

/* A HAKMEM_* setting of the run as recorded in its header; "" when the variable was not set. */
static void hp_setting(struct hp_q *q, const char *name, char *buf, size_t len)
{
    buf[0] = 0;
    sqlite3_stmt *st = hp_query(q, "SELECT value FROM settings WHERE run_id = 1 AND name = ?");
    if (!st)
        return;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
    hp_done(q, st, rc);
}

static int hp_setting_on(const char *v)
{
    return v[0] && strcmp(v, "0") != 0;
}

static void hp_load_heap(struct hp_q *q, struct hp_heap *h)
{
    memset(h, 0, sizeof *h);
    h->have_tables = hp_scalar(q, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
                                  " AND name IN ('errors', 'leaks')") == 2;
    hp_setting(q, "HAKMEM_GUARD", h->guard, sizeof h->guard);
    hp_setting(q, "HAKMEM_POISON", h->poison, sizeof h->poison);
    if (!h->have_tables)
        return;
    h->errors = hp_scalar(q, "SELECT COUNT(*) FROM errors WHERE run_id = 1");
    h->leak_report = hp_scalar(q, "SELECT leak_report FROM runs WHERE run_id = 1");
    sqlite3_stmt *st = hp_query(q, "SELECT COUNT(*), TOTAL(blocks), TOTAL(bytes), TOTAL(est_blocks),"
                                   " TOTAL(est_bytes) FROM leaks WHERE run_id = 1");
    if (!st)
        return;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        h->leak_sites = sqlite3_column_int64(st, 0);
        h->leak_blocks = (int64_t)sqlite3_column_double(st, 1);
        h->leak_bytes = (int64_t)sqlite3_column_double(st, 2);
        h->leak_est_blocks = (int64_t)sqlite3_column_double(st, 3);
        h->leak_est_bytes = (int64_t)sqlite3_column_double(st, 4);
    }
    hp_done(q, st, rc);
}

/* The header lines about the heap checks, after the lines that say how complete the data is. */
static void hp_build_heap_header(struct hp_section *s, const struct hp_heap *h, const struct hp_run *run)
{
    const char *mode = run->mode;
    char buf[512], b1[64], b2[64];
    if (!h->have_tables) {
        hp_kv_text(s, "heap errors", "unknown: the database predates heap checks (ingest the recording again, -f)");
        return;
    }
    /* Which checks ran: an overflow or a write after free cannot be reported by a run that did not look. */
    int guard = hp_setting_on(h->guard), poison = hp_setting_on(h->poison);
    char on[128] = "frees", off[128] = "";
    if (guard)
        strcat(on, ", overflow (HAKMEM_GUARD=1)");
    else
        strcat(off, "overflow (set HAKMEM_GUARD=1)");
    if (poison)
        strcat(on, ", use after free (HAKMEM_POISON=1)");
    else
        strcat(off, guard ? "use after free (set HAKMEM_POISON=1)" : ", use after free (set HAKMEM_POISON=1)");
    snprintf(buf, sizeof buf, "%lld (checked: %s%s%s)", (long long)h->errors, on, off[0] ? "; not checked: " : "",
             off);
    hp_kv_text(s, "heap errors", buf);
    if (!strcmp(mode, "off"))
        snprintf(buf, sizeof buf, "unknown (sampling was off: leaks are found among sampled blocks)");
    else if (!h->leak_report && run->end_reason && strcmp(run->end_reason, "exit"))
        snprintf(buf, sizeof buf, "no leak report in the recording (it is written at exit; the run ended by %s): "
                 "hakprof report --leaks shows sampled blocks never freed instead", run->end_reason);
    else if (!h->leak_report)
        snprintf(buf, sizeof buf, "no leak report in the recording (cut short, or an older library): "
                 "hakprof report --leaks shows sampled blocks never freed instead");
    else if (!h->leak_blocks)
        snprintf(buf, sizeof buf, "none (no sampled block was live at exit)");
    else
        snprintf(buf, sizeof buf, "%lld sampled block%s (%s) live at exit from %lld call site%s; estimated %lld "
                 "blocks, %s (hakprof report --leaks)", (long long)h->leak_blocks, h->leak_blocks == 1 ? "" : "s",
                 hp_human_bytes((double)h->leak_bytes, b1, sizeof b1), (long long)h->leak_sites,
                 h->leak_sites == 1 ? "" : "s", (long long)h->leak_est_blocks,
                 hp_human_bytes((double)h->leak_est_bytes, b2, sizeof b2));
    hp_kv_text(s, "leaks", buf);
}

/* The heap facts as plain values for JSON and CSV: NULL where the database cannot say. */
static void hp_heap_machine(struct hp_section *s, const struct hp_heap *h)
{
    struct hp_cell *r = hp_row(s);
    hp_set_text(&r[0], "heap error count");
    if (h->have_tables)
        hp_set_int(&r[1], h->errors);
    r = hp_row(s);
    hp_set_text(&r[0], "leak report");
    if (h->have_tables)
        hp_set_int(&r[1], h->leak_report);
    r = hp_row(s);
    hp_set_text(&r[0], "leaked blocks");
    if (h->have_tables && h->leak_report)
        hp_set_int(&r[1], h->leak_blocks);
    r = hp_row(s);
    hp_set_text(&r[0], "leaked bytes");
    if (h->have_tables && h->leak_report)
        hp_set_int(&r[1], h->leak_bytes);
}

/* "function file:line" of frames first.. of a stack, innermost first, joined by " < " (callers to the right). The
 * file is its last component: the innermost frame's location column has the whole path, and these lines are long. */
struct hp_framer {
    struct hp_q *q;
    sqlite3_stmt *st;
};

static const char *hp_frames_text(struct hp_framer *f, int64_t stack, int first, int n, char *buf, size_t len)
{
    buf[0] = 0;
    if (!f->st) {
        f->st = hp_query(f->q, "SELECT function, file, line FROM frames WHERE run_id = 1 AND stack_id = ?"
                               " AND frame >= ? ORDER BY frame LIMIT ?");
        if (!f->st)
            return NULL;
    }
    sqlite3_reset(f->st);
    sqlite3_bind_int64(f->st, 1, stack);
    sqlite3_bind_int(f->st, 2, first);
    sqlite3_bind_int(f->st, 3, n);
    size_t used = 0;
    while (sqlite3_step(f->st) == SQLITE_ROW && used + 1 < len) {
        const char *fn = (const char *)sqlite3_column_text(f->st, 0);
        const char *file = (const char *)sqlite3_column_text(f->st, 1);
        if (file && strrchr(file, '/'))
            file = strrchr(file, '/') + 1;
        int w;
        if (file)
            w = snprintf(buf + used, len - used, "%s%s %s:%d", used ? " < " : "", fn ? fn : "?", file,
                         sqlite3_column_int(f->st, 2));
        else
            w = snprintf(buf + used, len - used, "%s%s", used ? " < " : "", fn ? fn : "?");
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf[0] ? buf : NULL;
}

static void hp_framer_done(struct hp_framer *f)
{
    sqlite3_finalize(f->st);
    f->st = NULL;
}

static void hp_location(sqlite3_stmt *st, int file_col, struct hp_cell *c)
{
    const unsigned char *file = sqlite3_column_text(st, file_col);
    char loc[PATH_MAX + 32];
    if (file) {
        snprintf(loc, sizeof loc, "%s:%d", (const char *)file, sqlite3_column_int(st, file_col + 1));
        hp_set_text(c, loc);
    }
}

static void hp_module_cell(sqlite3_stmt *st, int col, struct hp_cell *c)
{
    const unsigned char *mod = sqlite3_column_text(st, col);
    if (mod) {
        const char *m = strrchr((const char *)mod, '/');
        hp_set_text(c, m ? m + 1 : (const char *)mod);
    }
}

static void hp_hex_cell(struct hp_cell *c, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)v);
    hp_set_text(c, buf);
}

/* Count by kind, then the first errors with the offending call's innermost frames and, for a sampled block, where
 * it was allocated. In text both sections are left out when there was no error (the header line says 0). */
static void hp_build_errors(struct hp_report *rep, struct hp_q *q, const struct hp_heap *h, int top)
{
    if (!h->have_tables)
        return;
    struct hp_section *k = hp_section(rep, "heap_errors_by_kind", "heap errors by kind", 0, "kind", "count",
                                      "first_s", "meaning", (const char *)NULL);
    k->hide_empty_text = 1;
    sqlite3_stmt *st = hp_query(q, "SELECT e.kind, COUNT(*), MIN(e.t_ns), k.meaning FROM errors e"
                                   " LEFT JOIN error_kinds k ON k.kind = e.kind WHERE e.run_id = 1"
                                   " GROUP BY e.kind ORDER BY COUNT(*) DESC, MIN(k.kind_no)");
    if (!st)
        return;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct hp_cell *r = hp_row(k);
        hp_col_cell(st, 0, &r[0]);
        hp_col_cell(st, 1, &r[1]);
        hp_set_secs(&r[2], sqlite3_column_int64(st, 2));
        hp_col_cell(st, 3, &r[3]);
    }
    if (hp_done(q, st, rc))
        return;

    char title[96];
    snprintf(title, sizeof title, "heap errors: the first %lld", (long long)(h->errors < top ? h->errors : top));
    struct hp_section *s = hp_section(rep, "heap_error_list", NULL, 0, "n", "kind", "addr", "tid", "size", "t_s",
                                      "function", "location", "callers", "alloc_tid", "alloc_function",
                                      "alloc_location", (const char *)NULL);
    s->title = hp_xstrdup("report", title);
    s->own_title = 1;
    s->hide_empty_text = 1;
    char sql[768];
    snprintf(sql, sizeof sql,
             "SELECT error_id, kind, addr, tid, size, t_ns, stack_id, function, file, line, alloc_tid,"
             " alloc_stack_id, alloc_function, alloc_file, alloc_line FROM error_events WHERE run_id = 1"
             " ORDER BY error_id LIMIT %d", top);
    st = hp_query(q, sql);
    if (!st)
        return;
    struct hp_framer fr = {q, NULL};
    char frames[1024];
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct hp_cell *r = hp_row(s);
        hp_col_cell(st, 0, &r[0]);
        hp_col_cell(st, 1, &r[1]);
        hp_hex_cell(&r[2], sqlite3_column_int64(st, 2));
        hp_col_cell(st, 3, &r[3]);
        hp_col_cell(st, 4, &r[4]);
        hp_set_secs(&r[5], sqlite3_column_int64(st, 5));
        hp_col_cell(st, 7, &r[6]);
        hp_location(st, 8, &r[7]);
        if (sqlite3_column_int64(st, 6))
            hp_set_text(&r[8], hp_frames_text(&fr, sqlite3_column_int64(st, 6), 1, 3, frames, sizeof frames));
        hp_col_cell(st, 10, &r[9]);
        if (sqlite3_column_type(st, 10) != SQLITE_NULL)
            hp_set_text(&r[10], sqlite3_column_text(st, 12) ? (const char *)sqlite3_column_text(st, 12)
                                                            : "(no stack)");
        hp_location(st, 13, &r[11]);
    }
    hp_framer_done(&fr);
    hp_done(q, st, rc);
    snprintf(s->note, sizeof s->note, "%lld error%s in all (table errors, view error_events); function, location: "
             "the offending call (innermost frame), callers: the next frames out; alloc_*: where the block was "
             "allocated, when it was sampled", (long long)h->errors, h->errors == 1 ? "" : "s");
}

/* A leak row being collected: from the LEAKS chunk, or summed from the blocks never freed. */
struct hp_leak_row {
    int64_t stack, blocks, bytes;
    double est_blocks, est_bytes;
};

static int hp_leak_cmp(const void *a, const void *b)
{
    const struct hp_leak_row *x = a, *y = b;
    if (x->est_bytes != y->est_bytes)
        return x->est_bytes < y->est_bytes ? 1 : -1;
    if (x->blocks != y->blocks)
        return x->blocks < y->blocks ? 1 : -1;
    return x->stack < y->stack ? -1 : x->stack > y->stack;
}

/* Without a LEAKS chunk: the sampled blocks with no free in the recording, by allocation stack, weighted as ingest
 * weighs samples (docs/sqlite-schema.md), so the estimates mean the same as the writer's. */
static struct hp_leak_row *hp_leaks_from_blocks(struct hp_q *q, const struct hp_run *run, size_t *n)
{
    *n = 0;
    double period = (double)run->period;
    int bytes_mode = !strcmp(run->mode, "bytes") && period > 0;
    double fixed = !strcmp(run->mode, "count") && period > 0 ? period : 1.0;
    sqlite3_stmt *st = hp_query(q, "SELECT stack_id, size, COUNT(*) FROM blocks WHERE run_id = 1"
                                   " AND free_tid IS NULL GROUP BY stack_id, size ORDER BY stack_id");
    if (!st)
        return NULL;
    struct hp_leak_row *rows = NULL;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t stack = sqlite3_column_int64(st, 0), size = sqlite3_column_int64(st, 1);
        int64_t count = sqlite3_column_int64(st, 2);
        if (!*n || rows[*n - 1].stack != stack) {
            if (*n == cap) {
                cap = cap ? cap * 2 : 64;
                rows = hp_xrealloc("report", rows, cap * sizeof *rows);
            }
            rows[(*n)++] = (struct hp_leak_row){stack, 0, 0, 0, 0};
        }
        double w = fixed;
        if (bytes_mode) {
            double p = -expm1(-(double)(size > 0 ? size : 1) / period);
            w = p > 0 ? 1.0 / p : 1.0;
        }
        struct hp_leak_row *r = &rows[*n - 1];
        r->blocks += count;
        r->bytes += count * size;
        r->est_blocks += w * (double)count;
        r->est_bytes += w * (double)count * (double)size;
    }
    hp_done(q, st, rc);
    return rows;
}

static struct hp_leak_row *hp_leaks_from_chunk(struct hp_q *q, size_t *n)
{
    *n = 0;
    sqlite3_stmt *st = hp_query(q, "SELECT stack_id, blocks, bytes, est_blocks, est_bytes FROM leaks"
                                   " WHERE run_id = 1");
    if (!st)
        return NULL;
    struct hp_leak_row *rows = NULL;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            rows = hp_xrealloc("report", rows, cap * sizeof *rows);
        }
        rows[(*n)++] = (struct hp_leak_row){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                                            sqlite3_column_int64(st, 2), sqlite3_column_double(st, 3),
                                            sqlite3_column_double(st, 4)};
    }
    hp_done(q, st, rc);
    return rows;
}

/* hakprof report --leaks: the leak report by call site (allocation stack), largest estimated bytes first. */
static void hp_build_leaks(struct hp_report *rep, struct hp_q *q, const struct hp_run *run,
                           const struct hp_heap *h, int top)
{
    int from_chunk = h->have_tables && h->leak_report;
    size_t n = 0;
    struct hp_leak_row *rows = from_chunk ? hp_leaks_from_chunk(q, &n) : hp_leaks_from_blocks(q, run, &n);
    if (q->failed) {
        free(rows);
        return;
    }
    if (n)
        qsort(rows, n, sizeof *rows, hp_leak_cmp);
    int64_t blocks = 0, bytes = 0;
    double est_blocks = 0, est_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        blocks += rows[i].blocks;
        bytes += rows[i].bytes;
        est_blocks += rows[i].est_blocks;
        est_bytes += rows[i].est_bytes;
    }
    char hb[64];
    struct hp_section *t = hp_section(rep, "leak_totals", "leaks at exit", 1, "field", "value", (const char *)NULL);
    hp_kv_text(t, "source", from_chunk ? "leak report (LEAKS chunk)" : "sampled blocks never freed (table blocks)");
    hp_kv_int(t, "call sites", (int64_t)n);
    hp_kv_int(t, "sampled blocks", blocks);
    hp_kv_int(t, "sampled bytes", bytes);
    hp_kv_int(t, "estimated blocks", (int64_t)llround(est_blocks));
    hp_kv_int(t, "estimated bytes", (int64_t)llround(est_bytes));
    hp_kv_text(t, "estimated bytes (human)", hp_human_bytes(est_bytes, hb, sizeof hb));
    if (!from_chunk)
        snprintf(t->note, sizeof t->note, "NOTE: %s; shown instead: sampled blocks with no free in the recording "
                 "(blocks freed after it stopped count too)",
                 h->have_tables ? "the recording has no leak report (cut short, or made by an older library)"
                                : "the database predates leak reports (ingest the recording again with -f)");
    else if (!strcmp(run->mode, "off"))
        snprintf(t->note, sizeof t->note, "sampling was off: no block was sampled, so no leak can be seen");

    struct hp_section *s = hp_section(rep, "leak_sites", "leaks by call site (allocation stack)", 0, "rank",
                                      "blocks", "bytes", "est_blocks", "est_bytes", "est_bytes_pct", "function",
                                      "location", "module", "callers", "stack_id", (const char *)NULL);
    sqlite3_stmt *st = hp_query(q, "SELECT l.function, l.file, l.line, m.path FROM stacks s"
                                   " JOIN locations l ON l.run_id = s.run_id AND l.ip = s.ip"
                                   " LEFT JOIN modules m ON m.run_id = l.run_id AND m.module_id = l.module_id"
                                   " WHERE s.run_id = 1 AND s.stack_id = ?");
    struct hp_framer fr = {q, NULL};
    char frames[1024];
    for (size_t i = 0; st && i < n && i < (size_t)top; i++) {
        const struct hp_leak_row *l = &rows[i];
        struct hp_cell *r = hp_row(s);
        hp_set_int(&r[0], (int64_t)i + 1);
        hp_set_int(&r[1], l->blocks);
        hp_set_int(&r[2], l->bytes);
        hp_set_int(&r[3], (int64_t)llround(l->est_blocks));
        hp_set_int(&r[4], (int64_t)llround(l->est_bytes));
        hp_set_pct(&r[5], l->est_bytes, est_bytes);
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, l->stack);
        if (sqlite3_step(st) == SQLITE_ROW) {
            hp_col_cell(st, 0, &r[6]);
            hp_location(st, 1, &r[7]);
            hp_module_cell(st, 3, &r[8]);
        } else {
            hp_set_text(&r[6], "(no stack)");
        }
        if (l->stack)
            hp_set_text(&r[9], hp_frames_text(&fr, l->stack, 1, 3, frames, sizeof frames));
        hp_set_int(&r[10], l->stack);
    }
    hp_framer_done(&fr);
    sqlite3_finalize(st);
    free(rows);
    snprintf(s->note, sizeof s->note, "%zu call site%s%s; blocks, bytes: sampled blocks %s; "
             "est_*: %s; callers: the allocation stack's next frames out (view frames has them all)", n,
             n == 1 ? "" : "s", n > (size_t)top ? ", the largest shown (--top)" : "",
             from_chunk ? "still live at exit" : "with no free in the recording",
             !strcmp(run->mode, "all") ? "every allocation was sampled, so the same" :
                                         "estimates for the whole program (each sample weighted as it was drawn)");
}

static void hp_report_usage(FILE *f)
{
    fprintf(f, "usage: hakprof report [RECORDING|DB] [--sqlite DB] [--format text|json|csv] [--top N] [--leaks] [-f]\n"
               "  Prints the report of a run: lost events, sampling and completeness first, then the heap errors\n"
               "  and leaks in one line each; the heap errors the debug checks caught (count by kind, then the\n"
               "  first N with the offending call's frames and, for a sampled block, where it was allocated); the\n"
               "  run's totals, the hottest call sites by allocations and by bytes (with same- vs cross-thread\n"
               "  free shares), refill stages and the free pipeline per size class, threads, the thread-by-thread\n"
               "  free matrix and the remote-list depth at drain.\n"
               "  RECORDING (.hkp) is ingested into DB first (default: beside it, x.hkp -> x.db), unless DB is\n"
               "  already the ingest of that recording as it is now; a DB holding another recording is refused\n"
               "  unless -f. DB (a database made by hakprof ingest) is read as it is.\n"
               "  With neither: --sqlite DB if it exists, else the newest *.hkp in the current directory.\n"
               "  --sqlite DB      the database to read, or to ingest the recording into\n"
               "  --format F       text (default), json (one object) or csv (one block per section)\n"
               "  --top N          call sites, heap errors, threads, thread pairs and leak sites shown (default 10)\n"
               "  --leaks          print only the leak report: sampled blocks still live at exit by allocation\n"
               "                   stack (blocks, bytes, estimates for the whole program), largest estimated bytes\n"
               "                   first, with the stack's frames. From the recording's leak report (LEAKS chunk);\n"
               "                   a recording without one (cut short, older library) falls back to the sampled\n"
               "                   blocks that have no free, and says so.\n"
               "  -f               replace DB when it holds something else than RECORDING\n"
               "  Exit status: 0 ok (also for a damaged recording: the report says so at the top), 2 usage or\n"
               "  input error.\n");
}

int hp_report_main(int argc, char **argv)
{
    const char *input = NULL, *db_opt = NULL;
    enum hp_fmt fmt = HP_FMT_TEXT;
    int top = 10, force = 0, leaks = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            hp_report_usage(stdout);
            return HP_EXIT_OK;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--leaks")) {
            leaks = 1;
        } else if (!strcmp(a, "--sqlite") || !strcmp(a, "--format") || !strcmp(a, "--top")) {
            if (++i >= argc)
                return hp_fail("report", "%s needs a value", a);
            val = argv[i];
        } else if (!strncmp(a, "--sqlite=", 9) || !strncmp(a, "--format=", 9) || !strncmp(a, "--top=", 6)) {
            val = strchr(a, '=') + 1;
        } else if (!strcmp(a, "--") && i + 1 < argc && !input) {
            input = argv[++i]; /* a file whose name starts with '-' */
            continue;
        } else if (a[0] == '-' && a[1]) {
            return hp_fail("report", "unknown option %s (try hakprof report --help)", a);
        } else if (!input) {
            input = a;
            continue;
        } else {
            return hp_fail("report", "one recording or database at a time (got %s and %s)", input, a);
        }
        if (!val)
            continue;
        if (!strncmp(a, "--sqlite", 8)) {
            db_opt = val;
        } else if (!strncmp(a, "--format", 8)) {
            if (!strcmp(val, "text"))
                fmt = HP_FMT_TEXT;
            else if (!strcmp(val, "json"))
                fmt = HP_FMT_JSON;
            else if (!strcmp(val, "csv"))
                fmt = HP_FMT_CSV;
            else
                return hp_fail("report", "--format %s: expected text, json or csv", val);
        } else {
            char *end;
            long n = strtol(val, &end, 10);
            if (*end || n < 1 || n > 1000000)
                return hp_fail("report", "--top %s: expected a count from 1", val);
            top = (int)n;
        }
    }

    char err[PATH_MAX + 128], dbbuf[PATH_MAX + 8], pick[PATH_MAX];
    const char *db = NULL, *recording = NULL;
    if (!input) {
        struct stat st;
        if (db_opt && stat(db_opt, &st) == 0) {
            db = db_opt;
        } else if (hp_newest_hkp(pick, sizeof pick)) {
            recording = pick;
            fprintf(stderr, "hakprof report: using the newest recording here, %s\n", pick);
        } else {
            return hp_fail("report", "%s", db_opt ? "no such database, and no *.hkp recording here" :
                                      "no recording or database given, and no *.hkp recording here");
        }
    } else {
        switch (hp_file_kind(input, err, sizeof err)) {
        case HP_K_RECORDING: recording = input; break;
        case HP_K_DATABASE:
            if (db_opt)
                return hp_fail("report", "%s is a database: --sqlite is for a recording's database", input);
            db = input;
            break;
        default: return hp_fail("report", "%s", err);
        }
    }
    if (recording) {
        if (db_opt) {
            db = db_opt;
        } else {
            hp_default_db(recording, dbbuf, sizeof dbbuf);
            db = dbbuf;
        }
        struct stat st;
        int rc = -2;
        if (stat(db, &st) != 0) {
            rc = hp_ingest_file("report", recording, db, 0);
        } else if (force) {
            rc = hp_ingest_file("report", recording, db, 1);
        } else {
            int m = hp_db_matches(db, recording);
            if (m == 0)
                rc = hp_ingest_file("report", recording, db, 1); /* the same recording, grown or rewritten since */
            else if (m < 0)
                return hp_fail("report", "%s exists and is not the database of %s (use -f to replace it)", db,
                               recording);
        }
        if (rc == HP_EXIT_USAGE)
            return HP_EXIT_USAGE;
    }

    struct hp_q q = {NULL, db, 0};
    if (sqlite3_open_v2(db, &q.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        hp_fail("report", "%s: %s", db, q.db ? sqlite3_errmsg(q.db) : "cannot open");
        sqlite3_close(q.db);
        return HP_EXIT_USAGE;
    }
    int64_t version = hp_scalar(&q, "PRAGMA user_version");
    if (!q.failed && version != HP_DB_SCHEMA_VERSION) {
        hp_fail("report", "%s: not a hakprof database of this version (schema %lld, expected %d): ingest its "
                "recording again", db, (long long)version, HP_DB_SCHEMA_VERSION);
        sqlite3_close(q.db);
        return HP_EXIT_USAGE;
    }
    struct hp_run run;
    memset(&run, 0, sizeof run);
    struct hp_report rep = {NULL, 0, 0};
    int status = HP_EXIT_USAGE;
    struct hp_heap heap;
    if (!q.failed && hp_load_run(&q, &run) == 0) {
        hp_load_heap(&q, &heap);
        hp_build_header(&rep, &run, db, &heap);
    }
    if (!q.failed && leaks) {
        hp_build_leaks(&rep, &q, &run, &heap, top);
    } else if (!q.failed) {
        hp_build_errors(&rep, &q, &heap, top);
        hp_build_run(&rep, &q, &run);
        hp_build_sites(&rep, &q, &run, top, 0);
        hp_build_sites(&rep, &q, &run, top, 1);
        hp_build_stages(&rep, &q);
        hp_build_free_paths(&rep, &q);
        hp_build_threads(&rep, &q, &run, top);
        hp_build_matrix(&rep, &q, &run, top);
        hp_build_depth(&rep, &q);
    }
    if (!q.failed) {
        if (fmt == HP_FMT_JSON)
            hp_emit_json(stdout, &rep);
        else if (fmt == HP_FMT_CSV)
            hp_emit_csv(stdout, &rep);
        else
            hp_emit_text(stdout, &rep);
        status = fflush(stdout) == 0 && !ferror(stdout) ? HP_EXIT_OK : HP_EXIT_USAGE;
        if (status != HP_EXIT_OK)
            hp_fail("report", "writing the report failed: %s", strerror(errno));
    }
    hp_report_free(&rep);
    hp_run_free(&run);
    sqlite3_close(q.db);
    return status;
}

/* A JSON string (RFC 8259 escapes, bytes that are not UTF-8 as U+FFFD), for the other verbs' JSON output. */
void hp_json_str(FILE *out, const char *s)
{
    hp_json_string(out, s);
}
