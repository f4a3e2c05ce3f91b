/* hakprof flame: flame graphs of allocation call stacks from a run's database, as a self-contained interactive SVG
 * or as folded stacks for other flame graph tools; --diff colours a candidate's growth and shrinkage. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "compare.h"
#include "hakprof.h"

#define VERB "flame"

enum hp_by { BY_ALLOCS, BY_BYTES, BY_CROSS, BY_LIVE };
static const char *const hp_by_name[] = {"allocs", "bytes", "cross-thread", "live"};
/* call_sites columns: the sampled count, then the estimate for the whole program. */
static const char *const hp_by_col[][2] = {{"allocs", "est_allocs"},
                                           {"bytes", "est_bytes"},
                                           {"cross_thread_frees", "est_cross_thread_frees"},
                                           {"live_bytes", "est_live_bytes"}};
static const char *const hp_by_title[] = {"Allocations", "Bytes allocated", "Frees by another thread",
                                          "Bytes still live at the end"};
static const char *const hp_by_unit[] = {"allocations", "bytes", "cross-thread frees", "live bytes"};

struct hp_opts {
    enum hp_by by;
    int samples, lines, folded, pprof, force, diff, from_base;
    const char *out, *title;
    int width;
};

/* ---- Folded stacks: "outer;...;inner" -> value per side, summed over the stacks that fold to the same line ---- */
struct hp_stack {
    char *line;
    double v[2];
};
struct hp_folded {
    struct hp_stack *s;
    size_t n, cap;
    size_t *slot; /* hash of line -> index + 1 */
    size_t nslot;
};

static void hp_folded_slot(struct hp_folded *F, size_t idx)
{
    size_t i = hp_hash_str(F->s[idx].line) & (F->nslot - 1);
    while (F->slot[i])
        i = (i + 1) & (F->nslot - 1);
    F->slot[i] = idx + 1;
}

static void hp_folded_add(struct hp_folded *F, const char *line, int side, double v)
{
    if (F->nslot) {
        for (size_t i = hp_hash_str(line) & (F->nslot - 1); F->slot[i]; i = (i + 1) & (F->nslot - 1))
            if (!strcmp(F->s[F->slot[i] - 1].line, line)) {
                F->s[F->slot[i] - 1].v[side] += v;
                return;
            }
    }
    if (F->n == F->cap) {
        F->cap = F->cap ? F->cap * 2 : 256;
        F->s = hp_xrealloc(VERB, F->s, F->cap * sizeof *F->s);
    }
    F->s[F->n].line = hp_xstrdup(VERB, line);
    F->s[F->n].v[0] = F->s[F->n].v[1] = 0;
    F->s[F->n].v[side] = v;
    F->n++;
    if (F->n * 2 > F->nslot) {
        free(F->slot);
        F->nslot = F->nslot ? F->nslot * 2 : 1024;
        F->slot = hp_xrealloc(VERB, NULL, F->nslot * sizeof *F->slot);
        memset(F->slot, 0, F->nslot * sizeof *F->slot);
        for (size_t k = 0; k < F->n; k++)
            hp_folded_slot(F, k);
    } else {
        hp_folded_slot(F, F->n - 1);
    }
}

/* Frame by frame: ';' sorts below every character a name may hold, so the lines under one frame are contiguous
 * ("a;b;c" comes before "a;b!") and the tree is built in one pass, each frame's children in name order. */
static int hp_by_line(const void *a, const void *b)
{
    const unsigned char *x = (const unsigned char *)((const struct hp_stack *)a)->line;
    const unsigned char *y = (const unsigned char *)((const struct hp_stack *)b)->line;
    for (; *x && *x == *y; x++, y++)
        ;
    int cx = *x == ';' ? 1 : *x ? *x + 1 : 0, cy = *y == ';' ? 1 : *y ? *y + 1 : 0;
    return cx - cy;
}

/* A frame's name in a folded line: ';' separates frames and a line ends at a newline, so neither may appear. */
static void hp_frame_name(char *dst, size_t len, const char *fn, const char *file, int line, int with_lines)
{
    if (with_lines && file)
        snprintf(dst, len, "%s %s:%d", fn, file, line);
    else
        snprintf(dst, len, "%s", fn);
    for (char *p = dst; *p; p++)
        if (*p == ';')
            *p = ':';
        else if (*p == '\n' || *p == '\r')
            *p = ' ';
}

struct hp_stackrow {
    int64_t id;
    double v;
};

/* Adds one run's stacks, each weighted by scale (1/n for the runs of a set, so a set gives the mean). */
static int hp_load_db(const char *db, const struct hp_opts *o, int side, double scale, struct hp_folded *F)
{
    sqlite3 *h = (sqlite3 *)hp_open_db(VERB, db);
    if (!h)
        return HP_EXIT_USAGE;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT stack_id, %s FROM call_sites WHERE run_id = 1 ORDER BY stack_id",
             hp_by_col[o->by][o->samples ? 0 : 1]);
    sqlite3_stmt *st = NULL, *fr = NULL;
    struct hp_stackrow *rows = NULL;
    size_t n = 0, cap = 0;
    int rc = HP_EXIT_USAGE;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
        goto sqlerr;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            rows = hp_xrealloc(VERB, rows, cap * sizeof *rows);
        }
        rows[n].id = sqlite3_column_int64(st, 0);
        rows[n].v = sqlite3_column_double(st, 1);
        n++;
    }
    if (step != SQLITE_DONE)
        goto sqlerr;
    /* Frames outermost first: flame graphs and the folded format put the root at the left. */
    if (sqlite3_prepare_v2(h, "SELECT frame, function, file, line FROM frames WHERE run_id = 1 AND stack_id = ?"
                              " ORDER BY frame DESC", -1, &fr, NULL) != SQLITE_OK)
        goto sqlerr;
    size_t lcap = 4096;
    char *line = hp_xrealloc(VERB, NULL, lcap), name[PATH_MAX + 300];
    for (size_t i = 0; i < n; i++) {
        if (rows[i].v == 0)
            continue;
        size_t len = 0;
        line[0] = '\0';
        sqlite3_reset(fr);
        sqlite3_bind_int64(fr, 1, rows[i].id);
        while ((step = sqlite3_step(fr)) == SQLITE_ROW) {
            const char *fn = (const char *)sqlite3_column_text(fr, 1);
            const char *file = (const char *)sqlite3_column_text(fr, 2);
            hp_frame_name(name, sizeof name, fn ? fn : "?", file, sqlite3_column_int(fr, 3), o->lines);
            size_t k = strlen(name);
            if (len + k + 2 > lcap) {
                lcap = (len + k + 2) * 2;
                line = hp_xrealloc(VERB, line, lcap);
            }
            if (len)
                line[len++] = ';';
            memcpy(line + len, name, k + 1);
            len += k;
        }
        if (step != SQLITE_DONE) {
            free(line);
            goto sqlerr;
        }
        hp_folded_add(F, len ? line : "(no stack)", side, rows[i].v * scale);
    }
    free(line);
    rc = HP_EXIT_OK;
    goto out;
sqlerr:
    hp_fail(VERB, "%s: %s (not a hakprof database of this version?)", db, sqlite3_errmsg(h));
out:
    sqlite3_finalize(st);
    sqlite3_finalize(fr);
    sqlite3_close(h);
    free(rows);
    return rc;
}

static int hp_load_set(const char *spec, const struct hp_opts *o, int side, struct hp_folded *F, char **label)
{
    struct hp_runset set;
    if (hp_runset_load(VERB, spec, o->force, &set))
        return HP_EXIT_USAGE;
    int rc = HP_EXIT_OK;
    for (int i = 0; i < set.n && rc == HP_EXIT_OK; i++)
        rc = hp_load_db(set.dbs[i], o, side, 1.0 / set.n, F);
    char buf[PATH_MAX + 64];
    if (set.n > 1)
        snprintf(buf, sizeof buf, "%s (mean of %d runs)", spec, set.n);
    else
        snprintf(buf, sizeof buf, "%s", spec);
    *label = hp_xstrdup(VERB, buf);
    hp_runset_free(&set);
    return rc;
}

/* ---- Folded output. Estimates are rounded so that the lines add up to the rounded total exactly: each line gets
 * the difference of the rounded running sums, never more than 1 away from its own estimate. ---- */
static void hp_emit_folded(FILE *out, struct hp_folded *F, int diff)
{
    double run[2] = {0, 0};
    for (size_t i = 0; i < F->n; i++) {
        long long before[2] = {llround(run[0]), llround(run[1])};
        run[0] += F->s[i].v[0];
        run[1] += F->s[i].v[1];
        long long v0 = llround(run[0]) - before[0], v1 = llround(run[1]) - before[1];
        if (diff ? (v0 || v1) : v0 != 0) {
            if (diff)
                fprintf(out, "%s %lld %lld\n", F->s[i].line, v0, v1);
            else
                fprintf(out, "%s %lld\n", F->s[i].line, v0);
        }
    }
}

/* ---- pprof: the profile.proto of Go's pprof (github.com/google/pprof/proto/profile.proto), written as plain
 * protobuf (pprof reads it gzip-compressed or not). One function and one location per frame name; a sample per
 * folded line, leaf first as pprof wants, with the folded output's rounded counts. ---- */
struct hp_pb {
    unsigned char *p;
    size_t n, cap;
};
static void hp_pb_put(struct hp_pb *b, const void *data, size_t len)
{
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2 + 256;
        b->p = hp_xrealloc(VERB, b->p, b->cap);
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
}
static void hp_pb_varint(struct hp_pb *b, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    hp_pb_put(b, tmp, n);
}
static void hp_pb_uint(struct hp_pb *b, unsigned field, uint64_t v) /* wire type 0 */
{
    hp_pb_varint(b, (uint64_t)field << 3);
    hp_pb_varint(b, v);
}
static void hp_pb_bytes(struct hp_pb *b, unsigned field, const void *data, size_t len) /* wire type 2 */
{
    hp_pb_varint(b, (uint64_t)field << 3 | 2);
    hp_pb_varint(b, len);
    hp_pb_put(b, data, len);
}

/* The string table: index of s, added at the end when new (index 0 is ""). */
struct hp_strtab {
    char **s;
    size_t n, cap;
    size_t *slot, nslot; /* hash -> index + 1 */
};
static uint64_t hp_str_index(struct hp_strtab *t, const char *s)
{
    if (t->n * 2 >= t->nslot) {
        free(t->slot);
        t->nslot = t->nslot ? t->nslot * 2 : 1024;
        t->slot = hp_xrealloc(VERB, NULL, t->nslot * sizeof *t->slot);
        memset(t->slot, 0, t->nslot * sizeof *t->slot);
        for (size_t k = 0; k < t->n; k++) {
            size_t i = hp_hash_str(t->s[k]) & (t->nslot - 1);
            while (t->slot[i])
                i = (i + 1) & (t->nslot - 1);
            t->slot[i] = k + 1;
        }
    }
    size_t i = hp_hash_str(s) & (t->nslot - 1);
    for (; t->slot[i]; i = (i + 1) & (t->nslot - 1))
        if (!strcmp(t->s[t->slot[i] - 1], s))
            return t->slot[i] - 1;
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->s = hp_xrealloc(VERB, t->s, t->cap * sizeof *t->s);
    }
    t->s[t->n] = hp_xstrdup(VERB, s);
    t->slot[i] = ++t->n;
    return t->n - 1;
}

static int hp_emit_pprof(FILE *out, const struct hp_opts *o, struct hp_folded *F)
{
    static const char *const type[] = {"allocations", "bytes", "cross_thread_frees", "live_bytes"};
    static const char *const unit[] = {"count", "bytes", "count", "bytes"};
    struct hp_strtab T = {0};
    struct hp_pb prof = {0}, msg = {0}, sub = {0};
    hp_str_index(&T, "");
    uint64_t t_type = hp_str_index(&T, type[o->by]), t_unit = hp_str_index(&T, unit[o->by]);
    /* sample_type and period_type: the one value each sample carries */
    hp_pb_uint(&msg, 1, t_type);
    hp_pb_uint(&msg, 2, t_unit);
    hp_pb_bytes(&prof, 1, msg.p, msg.n);
    hp_pb_bytes(&prof, 11, msg.p, msg.n);
    hp_pb_uint(&prof, 12, 1);
    /* Functions are numbered by their name's string index (never 0: "" is no frame name). */
    size_t nfun = 0, capfun = 0, capseen = 0;
    uint64_t *fun = NULL, *locs = NULL;
    unsigned char *seen = NULL; /* by string index: a function already */
    size_t caplocs = 0;
    double run = 0;
    for (size_t i = 0; i < F->n; i++) {
        long long before = llround(run);
        run += F->s[i].v[0];
        long long v = llround(run) - before;
        if (v == 0)
            continue;
        /* the frames of "root;...;leaf", leaf first */
        size_t nloc = 0;
        char *line = hp_xstrdup(VERB, F->s[i].line);
        for (char *save = NULL, *fr = strtok_r(line, ";", &save); fr; fr = strtok_r(NULL, ";", &save)) {
            uint64_t id = hp_str_index(&T, fr);
            if (nloc == caplocs) {
                caplocs = caplocs ? caplocs * 2 : 64;
                locs = hp_xrealloc(VERB, locs, caplocs * sizeof *locs);
            }
            locs[nloc++] = id;
            if (id >= capseen) {
                size_t cap = (id + 1) * 2;
                seen = hp_xrealloc(VERB, seen, cap);
                memset(seen + capseen, 0, cap - capseen);
                capseen = cap;
            }
            if (!seen[id]) {
                seen[id] = 1;
                if (nfun == capfun) {
                    capfun = capfun ? capfun * 2 : 256;
                    fun = hp_xrealloc(VERB, fun, capfun * sizeof *fun);
                }
                fun[nfun++] = id;
            }
        }
        free(line);
        msg.n = sub.n = 0;
        for (size_t k = nloc; k-- > 0;)
            hp_pb_varint(&sub, locs[k]);
        hp_pb_bytes(&msg, 1, sub.p, sub.n); /* location_id, packed */
        sub.n = 0;
        hp_pb_varint(&sub, (uint64_t)v);
        hp_pb_bytes(&msg, 2, sub.p, sub.n); /* value, packed */
        hp_pb_bytes(&prof, 2, msg.p, msg.n);
    }
    for (size_t k = 0; k < nfun; k++) {
        msg.n = sub.n = 0;
        hp_pb_uint(&sub, 1, fun[k]); /* Line.function_id */
        hp_pb_uint(&msg, 1, fun[k]); /* Location.id */
        hp_pb_bytes(&msg, 4, sub.p, sub.n);
        hp_pb_bytes(&prof, 4, msg.p, msg.n);
        msg.n = 0;
        hp_pb_uint(&msg, 1, fun[k]); /* Function.id */
        hp_pb_uint(&msg, 2, fun[k]); /* name */
        hp_pb_uint(&msg, 3, fun[k]); /* system_name */
        hp_pb_bytes(&prof, 5, msg.p, msg.n);
    }
    for (size_t k = 0; k < T.n; k++)
        hp_pb_bytes(&prof, 6, T.s[k], strlen(T.s[k]));
    hp_pb_uint(&prof, 14, t_type); /* default_sample_type */
    int rc = fwrite(prof.p, 1, prof.n, out) == prof.n ? HP_EXIT_OK : hp_fail(VERB, "writing the profile failed");
    for (size_t k = 0; k < T.n; k++)
        free(T.s[k]);
    free(T.s);
    free(T.slot);
    free(prof.p);
    free(msg.p);
    free(sub.p);
    free(fun);
    free(locs);
    free(seen);
    return rc;
}

/* ---- The frame tree ---- */
struct hp_node {
    char *name;
    double v[2];
    int depth;
    struct hp_node **kid;
    int nkid, capkid;
};

static struct hp_node *hp_node_new(const char *name, size_t len, int depth)
{
    struct hp_node *n = hp_xrealloc(VERB, NULL, sizeof *n);
    memset(n, 0, sizeof *n);
    n->name = hp_xrealloc(VERB, NULL, len + 1);
    memcpy(n->name, name, len);
    n->name[len] = '\0';
    n->depth = depth;
    return n;
}

static void hp_tree_add(struct hp_node *root, const char *line, const double v[2], int *maxdepth)
{
    struct hp_node *cur = root;
    cur->v[0] += v[0];
    cur->v[1] += v[1];
    for (const char *p = line; *p;) {
        const char *e = strchr(p, ';');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        struct hp_node *next = NULL;
        /* the lines come sorted, so a frame's child of the same name is its most recent one */
        if (cur->nkid && strlen(cur->kid[cur->nkid - 1]->name) == len &&
            !memcmp(cur->kid[cur->nkid - 1]->name, p, len))
            next = cur->kid[cur->nkid - 1];
        if (!next) {
            if (cur->nkid == cur->capkid) {
                cur->capkid = cur->capkid ? cur->capkid * 2 : 4;
                cur->kid = hp_xrealloc(VERB, cur->kid, (size_t)cur->capkid * sizeof *cur->kid);
            }
            next = cur->kid[cur->nkid++] = hp_node_new(p, len, cur->depth + 1);
            if (next->depth > *maxdepth)
                *maxdepth = next->depth;
        }
        next->v[0] += v[0];
        next->v[1] += v[1];
        cur = next;
        p = e ? e + 1 : p + len;
    }
}

static void hp_tree_free(struct hp_node *n)
{
    for (int i = 0; i < n->nkid; i++)
        hp_tree_free(n->kid[i]);
    free(n->kid);
    free(n->name);
    free(n);
}

/* ---- SVG ---- */
#define HP_FRAME_H 16
#define HP_PAD_TOP 44
#define HP_PAD_BOTTOM 28
#define HP_PAD_SIDE 10
#define HP_CHAR_W 7.0 /* average width of a 12 px sans-serif character, for fitting labels */

/* Text for XML: markup characters escaped; control characters and bytes that are not UTF-8 become '?' so that any
 * XML parser accepts the file whatever a symbol table held. */
static void hp_xml(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned c = *p;
        if (c == '&')
            fputs("&amp;", out);
        else if (c == '<')
            fputs("&lt;", out);
        else if (c == '>')
            fputs("&gt;", out);
        else if (c == '"')
            fputs("&quot;", out);
        else if (c < 0x20 || c == 0x7f)
            fputc('?', out);
        if (c == '&' || c == '<' || c == '>' || c == '"' || c < 0x20 || c == 0x7f) {
            p++;
            continue;
        }
        if (c < 0x80) {
            fputc((int)c, out);
            p++;
            continue;
        }
        size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        for (size_t i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                n = 0;
        if (n) {
            fwrite(p, 1, n, out);
            p += n;
        } else {
            fputc('?', out);
            p++;
        }
    }
}

static void hp_amount(double v, enum hp_by by, char *buf, size_t len)
{
    if (by == BY_BYTES || by == BY_LIVE) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        int u = 0;
        double a = v;
        while (fabs(a) >= 1024 && u < 4) {
            a /= 1024;
            u++;
        }
        snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", a, units[u]);
    } else {
        snprintf(buf, len, "%.0f", v);
    }
}

/* Warm colours for a plain graph, from a hash of the name so a function keeps its colour across graphs. */
static void hp_colour_plain(const char *name, char *buf, size_t len)
{
    if (!strcmp(name, "(no stack)") || !strcmp(name, "all")) {
        snprintf(buf, len, "rgb(200,200,200)");
        return;
    }
    size_t h = hp_hash_str(name);
    snprintf(buf, len, "rgb(%d,%d,%d)", 215 + (int)(h % 40), 90 + (int)((h >> 8) % 120), 40 + (int)((h >> 16) % 50));
}

/* Diff colours: red for a frame whose share grew, blue for one that shrank, white for no change; the deepest
 * colour is the largest change of the graph, but never less than one percentage point, so that two runs of the
 * same stacks do not paint rounding-sized changes in full colour. */
static void hp_colour_diff(double d, double maxabs, char *buf, size_t len)
{
    double t = fmin(1, fabs(d) / fmax(maxabs, 0.01));
    int fade = (int)lround(255 - 190 * t);
    if (d > 0)
        snprintf(buf, len, "rgb(255,%d,%d)", fade, fade);
    else if (d < 0)
        snprintf(buf, len, "rgb(%d,%d,255)", fade, fade);
    else
        snprintf(buf, len, "rgb(250,250,250)");
}

struct hp_svg {
    FILE *out;
    const struct hp_opts *o;
    double total[2], maxabs;
    int side, height;
    double width;
};

static double hp_share(const struct hp_svg *G, const struct hp_node *n, int side)
{
    return G->total[side] > 0 ? n->v[side] / G->total[side] : 0;
}

static void hp_max_change(struct hp_svg *G, const struct hp_node *n)
{
    double d = fabs(hp_share(G, n, 1) - hp_share(G, n, 0));
    if (n->depth > 0 && d > G->maxabs)
        G->maxabs = d;
    for (int i = 0; i < n->nkid; i++)
        hp_max_change(G, n->kid[i]);
}

/* One frame, at x (fraction of the whole width) and its children to its right in name order. */
static void hp_svg_node(struct hp_svg *G, const struct hp_node *n, double x)
{
    double w = G->total[G->side] > 0 ? n->v[G->side] / G->total[G->side] : 0;
    double px = w * G->width;
    /* Frames too narrow to see are kept (hidden) down to what a 100x zoom shows; narrower ones are left out, as
     * they would only make the file large. */
    if (px < 0.001)
        return;
    double rx = HP_PAD_SIDE + x * G->width;
    int y = G->height - HP_PAD_BOTTOM - (n->depth + 1) * HP_FRAME_H;
    char fill[48], a[64], b[64], label[512];
    FILE *out = G->out;
    fprintf(out, "<g class=\"f\" data-x=\"%.12g\" data-w=\"%.12g\" data-d=\"%d\"%s><title>", x, w, n->depth,
            px < 0.1 ? " style=\"display:none\"" : "");
    hp_xml(out, n->name);
    const char *unit = G->o->samples ? "samples" : hp_by_unit[G->o->by];
    if (G->o->diff) {
        hp_amount(n->v[0], G->o->by, a, sizeof a);
        hp_amount(n->v[1], G->o->by, b, sizeof b);
        double d = hp_share(G, n, 1) - hp_share(G, n, 0);
        fprintf(out, "\nbaseline: %s %s (%.2f%%)\ncandidate: %s %s (%.2f%%)\nchange: %+.2f percentage points", a,
                unit, 100 * hp_share(G, n, 0), b, unit, 100 * hp_share(G, n, 1), 100 * d);
        hp_colour_diff(d, G->maxabs, fill, sizeof fill);
    } else {
        hp_amount(n->v[0], G->o->by, a, sizeof a);
        fprintf(out, "\n%s %s (%.2f%%)", a, unit, 100 * w);
        hp_colour_plain(n->name, fill, sizeof fill);
    }
    fprintf(out, "</title><rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\"/>", rx, y, px,
            HP_FRAME_H - 1, fill);
    /* the same fitting rule as the script's, so the file reads right before any script runs */
    int fit = (int)((px - 6) / HP_CHAR_W);
    size_t nl = strlen(n->name);
    if (fit >= 3) {
        if ((int)nl <= fit)
            snprintf(label, sizeof label, "%s", n->name);
        else
            snprintf(label, sizeof label, "%.*s..", fit - 2 < 500 ? fit - 2 : 500, n->name);
    } else {
        label[0] = '\0';
    }
    fprintf(out, "<text x=\"%.2f\" y=\"%d\">", rx + 3, y + HP_FRAME_H - 4);
    hp_xml(out, label);
    fputs("</text></g>\n", out);
    double cx = x;
    for (int i = 0; i < n->nkid; i++) {
        hp_svg_node(G, n->kid[i], cx);
        cx += G->total[G->side] > 0 ? n->kid[i]->v[G->side] / G->total[G->side] : 0;
    }
}

/* The script: hover shows a frame's counts in the line at the bottom (its <title> is the tooltip too), a click
 * zooms so the frame fills the width, its ancestors stay below it at full width, and "Reset zoom" or a click on
 * the root undoes it. */
static const char hp_script[] =
    "var hpFrames = [], hpDetails, hpWidth, hpPad;\n"
    "function hpInit(evt) {\n"
    "  var svg = evt.target.ownerDocument || document;\n"
    "  hpDetails = svg.getElementById('details');\n"
    "  var root = svg.getElementById('frames');\n"
    "  hpWidth = +root.getAttribute('data-width');\n"
    "  hpPad = +root.getAttribute('data-pad');\n"
    "  var gs = root.getElementsByTagName('g');\n"
    "  for (var i = 0; i < gs.length; i++) {\n"
    "    var g = gs[i];\n"
    "    g.hpName = g.getElementsByTagName('title')[0].textContent.split('\\n')[0];\n"
    "    g.hpInfo = g.getElementsByTagName('title')[0].textContent.replace(/\\n/g, '  |  ');\n"
    "    g.addEventListener('mouseover', function () { hpDetails.textContent = this.hpInfo; });\n"
    "    g.addEventListener('mouseout', function () { hpDetails.textContent = ' '; });\n"
    "    g.addEventListener('click', function () { hpZoom(this); });\n"
    "    hpFrames.push(g);\n"
    "  }\n"
    "  svg.getElementById('reset').addEventListener('click', function () { hpZoom(null); });\n"
    "}\n"
    "function hpZoom(z) {\n"
    "  var zx = 0, zw = 1, zd = 0;\n"
    "  if (z) { zx = +z.getAttribute('data-x'); zw = +z.getAttribute('data-w'); zd = +z.getAttribute('data-d'); }\n"
    "  var eps = zw * 1e-6;\n"
    "  if (zd === 0) z = null;\n"
    "  for (var i = 0; i < hpFrames.length; i++) {\n"
    "    var g = hpFrames[i], x = +g.getAttribute('data-x'), w = +g.getAttribute('data-w');\n"
    "    var d = +g.getAttribute('data-d'), nx, nw, show;\n"
    "    if (d < zd) { show = x <= zx + eps && x + w >= zx + zw - eps; nx = 0; nw = 1; }\n"
    "    else { show = x >= zx - eps && x + w <= zx + zw + eps; nx = (x - zx) / zw; nw = w / zw; }\n"
    "    var px = nw * hpWidth;\n"
    "    if (!show || px < 0.1) { g.style.display = 'none'; continue; }\n"
    "    g.style.display = '';\n"
    "    g.style.opacity = d < zd ? 0.6 : 1;\n"
    "    var r = g.getElementsByTagName('rect')[0], t = g.getElementsByTagName('text')[0];\n"
    "    r.setAttribute('x', hpPad + nx * hpWidth);\n"
    "    r.setAttribute('width', px);\n"
    "    t.setAttribute('x', hpPad + nx * hpWidth + 3);\n"
    "    var fit = Math.floor((px - 6) / 7), name = g.hpName;\n"
    "    t.textContent = fit < 3 ? '' : name.length <= fit ? name : name.slice(0, fit - 2) + '..';\n"
    "  }\n"
    "  document.getElementById('reset').style.opacity = z ? 1 : 0.3;\n"
    "}\n";

static void hp_emit_svg(FILE *out, const struct hp_opts *o, struct hp_node *root, int maxdepth, const char *title,
                        const char *subtitle)
{
    struct hp_svg G;
    memset(&G, 0, sizeof G);
    G.out = out;
    G.o = o;
    G.total[0] = root->v[0];
    G.total[1] = root->v[1];
    G.side = o->diff && !o->from_base ? 1 : 0;
    G.width = o->width - 2 * HP_PAD_SIDE;
    G.height = HP_PAD_TOP + (maxdepth + 1) * HP_FRAME_H + HP_PAD_BOTTOM;
    if (o->diff)
        hp_max_change(&G, root);
    fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\""
                 " viewBox=\"0 0 %d %d\" onload=\"hpInit(evt)\">\n",
            o->width, G.height, o->width, G.height);
    fprintf(out, "<style type=\"text/css\">\n"
                 "text { font-family: Verdana, sans-serif; font-size: 12px; fill: #000; }\n"
                 "#title { font-size: 17px; }\n"
                 "#subtitle, #details { font-size: 12px; fill: #444; }\n"
                 "#reset { cursor: pointer; opacity: 0.3; }\n"
                 "g.f { cursor: pointer; }\n"
                 "g.f:hover rect { stroke: #222; stroke-width: 0.8; }\n"
                 "g.f text { pointer-events: none; }\n"
                 "</style>\n<script type=\"text/ecmascript\"><![CDATA[\n%s]]></script>\n",
            hp_script);
    fprintf(out, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fbfbf6\"/>\n", o->width, G.height);
    fprintf(out, "<text id=\"title\" x=\"%d\" y=\"20\" text-anchor=\"middle\">", o->width / 2);
    hp_xml(out, title);
    fprintf(out, "</text>\n<text id=\"subtitle\" x=\"%d\" y=\"36\" text-anchor=\"middle\">", o->width / 2);
    hp_xml(out, subtitle);
    fprintf(out, "</text>\n<text id=\"reset\" x=\"%d\" y=\"20\">Reset zoom</text>\n", HP_PAD_SIDE);
    fprintf(out, "<text id=\"details\" x=\"%d\" y=\"%d\"> </text>\n", HP_PAD_SIDE, G.height - 10);
    fprintf(out, "<g id=\"frames\" data-width=\"%.2f\" data-pad=\"%d\">\n", G.width, HP_PAD_SIDE);
    hp_svg_node(&G, root, 0);
    fputs("</g>\n</svg>\n", out);
}

/* ---- The verb ---- */
static void hp_flame_usage(FILE *f)
{
    fprintf(f,
            "usage: hakprof flame [INPUT] [--by allocs|bytes|cross-thread|live] [-o FILE] [--folded|--pprof]\n"
            "                     [--samples] [--lines] [--title TEXT] [--width PX] [-f]\n"
            "       hakprof flame --diff BASE NEW [--from baseline|candidate] [same options]\n"
            "  A flame graph of the allocation call stacks of a run: a self-contained SVG (hover a frame for its\n"
            "  counts, click to zoom, \"Reset zoom\" to go back) or, with --folded, one line per stack,\n"
            "  \"root;...;caller count\", the format flamegraph.pl, inferno and speedscope read.\n"
            "  INPUT is a recording (ingested beside itself when needed), a database, or a set (a directory or a\n"
            "  quoted glob pattern, as for hakprof diff: the mean of its runs). Default: the newest *.hkp here.\n"
            "  --by WHAT       allocs (default): allocations; bytes: bytes requested; cross-thread: blocks freed\n"
            "                  by another thread than the allocating one; live: bytes not freed by the end\n"
            "  --samples       count the sampled events themselves instead of the estimates for the whole\n"
            "                  program (the same with --sample all)\n"
            "  --lines         frames are \"function file:line\" (the line of the call), not just the function\n"
            "  -o, --output FILE  where to write (default: the SVG beside INPUT, x.hkp -> x.svg (x-diff.svg with\n"
            "                  --diff); folded stacks to stdout); - is stdout\n"
            "  --folded        folded stacks instead of SVG; with --diff two counts per line, baseline then\n"
            "                  candidate (the input of flamegraph.pl's differential mode)\n"
            "  --pprof         a pprof profile instead of SVG (protobuf, x.hkp -> x.pb): go tool pprof, or any\n"
            "                  viewer that reads pprof; compare two with pprof's own -diff_base\n"
            "  --diff BASE NEW frames coloured by the change of their share of the total: red grew, blue shrank;\n"
            "                  widths are the candidate's, or the baseline's with --from baseline, so frames\n"
            "                  that vanished show too\n"
            "  --title TEXT    the graph's title; --width PX its width (default 1200)\n"
            "  -f, --force     replace FILE if it exists (never a recording, a database, or anything but a\n"
            "                  regular file); re-ingest recordings whose database holds something else\n"
            "  --              ends the options (an INPUT whose name starts with '-')\n"
            "  Estimates in folded output are rounded so the lines add up to the rounded total.\n"
            "  Exit status: 0 ok, 2 usage or input error.\n");
}

int hp_flame_main(int argc, char **argv)
{
    struct hp_opts o;
    memset(&o, 0, sizeof o);
    o.width = 1200;
    const char *in[2] = {NULL, NULL};
    int nin = 0;
    static const char *const with_value[] = {"-o", "--output", "--by", "--title", "--width", "--from", NULL};
    int dashdash = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        char opt[32] = "";
        int got;
        if (dashdash) { /* after --: inputs only */
            if (nin == 2)
                return hp_fail(VERB, "too many inputs (%s): one, or BASE and NEW with --diff", a);
            in[nin++] = a;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            hp_flame_usage(stdout);
            return HP_EXIT_OK;
        } else if (!strcmp(a, "--folded")) {
            o.folded = 1;
            continue;
        } else if (!strcmp(a, "--pprof")) {
            o.pprof = 1;
            continue;
        } else if (!strcmp(a, "--samples")) {
            o.samples = 1;
            continue;
        } else if (!strcmp(a, "--lines")) {
            o.lines = 1;
            continue;
        } else if (!strcmp(a, "--diff")) {
            o.diff = 1;
            continue;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--force")) {
            o.force = 1;
            continue;
        } else if ((got = hp_opt_value(VERB, argc, argv, &i, with_value, opt, sizeof opt, &val))) {
            if (got < 0)
                return HP_EXIT_USAGE;
        } else if (!strcmp(a, "--")) {
            dashdash = 1; /* what follows are inputs, even names starting with '-' */
            continue;
        } else if (a[0] == '-' && a[1]) {
            return hp_fail(VERB, "unknown option %s (try hakprof flame --help)", a);
        } else {
            if (nin == 2)
                return hp_fail(VERB, "too many inputs (%s): one, or BASE and NEW with --diff", a);
            in[nin++] = a;
            continue;
        }
        if (!strcmp(opt, "-o") || !strcmp(opt, "--output")) {
            o.out = val;
        } else if (!strcmp(opt, "--title")) {
            o.title = val;
        } else if (!strcmp(opt, "--by")) {
            int k;
            for (k = 0; k < 4 && strcmp(val, hp_by_name[k]); k++)
                ;
            if (k == 4)
                return hp_fail(VERB, "--by %s: expected allocs, bytes, cross-thread or live", val);
            o.by = (enum hp_by)k;
        } else if (!strcmp(opt, "--width")) {
            char *end;
            long w = strtol(val, &end, 10);
            if (*end || w < 200 || w > 100000)
                return hp_fail(VERB, "--width %s: expected pixels from 200 to 100000", val);
            o.width = (int)w;
        } else if (!strcmp(opt, "--from")) {
            if (!strcmp(val, "baseline"))
                o.from_base = 1;
            else if (strcmp(val, "candidate"))
                return hp_fail(VERB, "--from %s: expected baseline or candidate", val);
        } else {
            return hp_fail(VERB, "unknown option %s (try hakprof flame --help)", opt);
        }
    }
    if (o.diff && nin != 2)
        return hp_fail(VERB, "--diff needs two inputs: BASE (the baseline) and NEW (the candidate)");
    if (!o.diff && nin == 2)
        return hp_fail(VERB, "two inputs need --diff (one input makes a plain flame graph)");
    if (o.from_base && !o.diff)
        return hp_fail(VERB, "--from is for --diff");
    if (o.pprof && o.folded)
        return hp_fail(VERB, "--pprof and --folded are two outputs: choose one");
    if (o.pprof && o.diff)
        return hp_fail(VERB, "--pprof makes one profile: write one per run and give both to pprof "
                             "(pprof -diff_base=BASE.pb NEW.pb)");
    char pick[PATH_MAX];
    if (!nin) {
        if (!hp_newest_hkp(pick, sizeof pick))
            return hp_fail(VERB, "no input given, and no *.hkp recording here");
        fprintf(stderr, "hakprof flame: using the newest recording here, %s\n", pick);
        in[nin++] = pick;
    }

    /* The output, checked before any work: an existing file is not replaced without -f. */
    char outbuf[PATH_MAX + 16];
    const char *out_path = o.out;
    if (!out_path && !o.folded) {
        const char *src = in[nin - 1];
        size_t n = strlen(src);
        while (n > 1 && src[n - 1] == '/')
            n--;
        if (n > 4 && (!strncmp(src + n - 4, ".hkp", 4)))
            n -= 4;
        else if (n > 3 && !strncmp(src + n - 3, ".db", 3))
            n -= 3;
        snprintf(outbuf, sizeof outbuf, "%.*s%s", (int)n, src, o.pprof ? ".pb" : o.diff ? "-diff.svg" : ".svg");
        for (char *p = outbuf; *p; p++)
            if (*p == '*' || *p == '?' || *p == '[' || *p == ']')
                *p = '_'; /* a glob pattern's name, not a pattern */
        out_path = outbuf;
    }
    if (out_path && !strcmp(out_path, "-"))
        out_path = NULL;
    struct stat st;
    if (out_path && hp_check_output(VERB, out_path, o.force, HP_K_OTHER))
        return HP_EXIT_USAGE;
    if (out_path && !o.force && stat(out_path, &st) == 0)
        return hp_fail(VERB, "%s exists (use -f to replace it, or -o to choose another name)", out_path);

    struct hp_folded F;
    memset(&F, 0, sizeof F);
    char *label[2] = {NULL, NULL};
    int rc = HP_EXIT_OK;
    for (int s = 0; s < nin && rc == HP_EXIT_OK; s++)
        rc = hp_load_set(in[s], &o, s, &F, &label[s]);
    if (rc == HP_EXIT_OK) {
        qsort(F.s, F.n, sizeof *F.s, hp_by_line);
        FILE *out = stdout;
        char tmp[PATH_MAX + 32];
        if (out_path) {
            /* written beside under a temporary name and renamed: a failed run leaves no half graph */
            snprintf(tmp, sizeof tmp, "%s.tmp%ld", out_path, (long)getpid());
            hp_tmp_guard(tmp);
            out = fopen(tmp, "w");
            if (!out)
                rc = hp_fail(VERB, "cannot write %s: %s", out_path, strerror(errno));
        }
        if (out) {
            if (o.folded) {
                hp_emit_folded(out, &F, o.diff);
            } else if (o.pprof) {
                if (!out_path && isatty(fileno(out)))
                    rc = hp_fail(VERB, "the pprof profile is binary: not written to a terminal (use -o FILE)");
                else
                    rc = hp_emit_pprof(out, &o, &F);
            } else {
                int maxdepth = 0;
                struct hp_node *root = hp_node_new("all", 3, 0);
                for (size_t i = 0; i < F.n; i++)
                    hp_tree_add(root, F.s[i].line, F.s[i].v, &maxdepth);
                char title[512], sub[PATH_MAX * 2 + 200];
                snprintf(title, sizeof title, "%s", o.title ? o.title : "");
                if (!o.title)
                    snprintf(title, sizeof title, "%s by call stack%s", hp_by_title[o.by],
                             o.diff ? ": candidate against baseline" : "");
                if (o.diff)
                    snprintf(sub, sizeof sub, "baseline %s, candidate %s; widths: the %s; red grew, blue shrank "
                             "(share of the total)", label[0], label[1], o.from_base ? "baseline" : "candidate");
                else
                    snprintf(sub, sizeof sub, "%s; %s", label[0],
                             o.samples ? "sampled events" : "estimates for the whole program");
                hp_emit_svg(out, &o, root, maxdepth, title, sub);
                hp_tree_free(root);
            }
            if (out_path) {
                int bad = ferror(out);
                bad |= fclose(out) != 0;
                if (bad || rename(tmp, out_path) != 0) {
                    rc = hp_fail(VERB, "cannot write %s: %s", out_path, strerror(errno));
                    unlink(tmp);
                } else if (F.n == 0) {
                    fprintf(stderr, "hakprof flame: wrote %s, empty: the input holds no sampled allocation stack "
                                    "(recorded with --sample off, or the window never opened)\n", out_path);
                } else {
                    fprintf(stderr, "hakprof flame: wrote %s (%zu stacks)\n", out_path, F.n);
                }
                hp_tmp_guard(NULL);
            } else if (fflush(out) != 0 || ferror(out)) {
                rc = hp_fail(VERB, "writing the output failed: %s", strerror(errno));
            }
        }
    }
    for (size_t i = 0; i < F.n; i++)
        free(F.s[i].line);
    free(F.s);
    free(F.slot);
    free(label[0]);
    free(label[1]);
    return rc;
}
