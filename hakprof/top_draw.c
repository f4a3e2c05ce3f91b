/* hakprof top's screen: the header, the call-site table, the refill-stage, free-pipeline and thread panels, the
 * stack and help screens, drawn from the model into whatever size the terminal has (80x24 at least). */
#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hakprof.h"
#include "top.h"

enum { HP_PAIR_TITLE = 1, HP_PAIR_BAR_LOCAL, HP_PAIR_BAR_REMOTE, HP_PAIR_WARN, HP_PAIR_DIM };

static int hp_colors_ready = -1;

static void hp_colors(void)
{
    if (hp_colors_ready >= 0)
        return;
    hp_colors_ready = 0;
    if (!has_colors() || start_color() == ERR)
        return;
    use_default_colors();
    init_pair(HP_PAIR_TITLE, COLOR_BLACK, COLOR_CYAN);
    init_pair(HP_PAIR_BAR_LOCAL, COLOR_GREEN, -1);
    init_pair(HP_PAIR_BAR_REMOTE, COLOR_YELLOW, -1);
    init_pair(HP_PAIR_WARN, COLOR_RED, -1);
    init_pair(HP_PAIR_DIM, COLOR_BLUE, -1);
    hp_colors_ready = 1;
}

static attr_t hp_pair(int pair, attr_t fallback)
{
    return hp_colors_ready == 1 ? (attr_t)COLOR_PAIR(pair) : fallback;
}

/* Text at (y, x), cut at the right edge of a field w wide. */
static void hp_put(int y, int x, int w, const char *s)
{
    if (w > 0 && y >= 0 && y < LINES && x < COLS)
        mvaddnstr(y, x, s, w < COLS - x ? w : COLS - x);
}

/* A whole line in an attribute (title, help, column headers), padded to the width; right is kept whole and the
 * left part is cut short to make room for it. */
static void hp_bar_line(int y, attr_t a, const char *left, const char *right)
{
    attron(a);
    mvhline(y, 0, ' ', COLS);
    int n = right ? (int)strlen(right) : 0;
    int x = COLS - n - 1;
    if (n && x > 10) {
        hp_put(y, 0, x - 1, left);
        hp_put(y, x, n, right);
    } else {
        hp_put(y, 0, COLS, left);
    }
    attroff(a);
}

static void hp_right(int y, int x, int w, const char *s)
{
    int n = (int)strlen(s);
    if (n > w)
        n = w;
    hp_put(y, x + w - n, n, s);
}

static double hp_rate(const struct hp_top_model *m, uint64_t now, uint64_t before)
{
    return m->dt > 0 && now >= before ? (double)(now - before) / m->dt : 0;
}

/* ---- header: process, uptime, rates, bytes in use, threads, dropped events ---- */
static void hp_draw_header(const struct hp_top_model *m, const struct hp_top_view *v)
{
    char left[1024], right[256], a[32], b[32], c[32], d[32];
    snprintf(left, sizeof left, " hakprof top  pid %d  %s", m->pid, m->cmdline[0] ? m->cmdline : "?");
    if (m->mode == HP_MODE_REPLAY) {
        char t1[32], t2[32];
        snprintf(right, sizeof right, "%sREPLAY %zu/%zu  %s of %s  %s", m->incomplete ? "INCOMPLETE " : "",
                 m->pos + 1, m->npos, hp_fmt_secs(m->uptime, t1, sizeof t1), hp_fmt_secs(m->duration, t2, sizeof t2),
                 m->playing ? "PLAYING" : "PAUSED");
    } else if (m->ended) {
        snprintf(right, sizeof right, "ENDED: %s", m->ended_note);
    } else {
        snprintf(right, sizeof right, "LIVE every %gs", v->interval);
    }
    hp_bar_line(0, hp_pair(HP_PAIR_TITLE, A_REVERSE) | A_BOLD, left, right);

    const uint64_t *cv = m->v, *pv = m->pv;
    uint64_t allocs = hp_ctr_allocs(cv), frees = hp_ctr_frees(cv);
    char line[512], started[48] = "", lost[48] = "";
    if (cv[HKC_THREAD_STARTED] != cv[HKC_THREADS_LIVE])
        snprintf(started, sizeof started, " (%llu started)", (unsigned long long)cv[HKC_THREAD_STARTED]);
    if (m->lost_known)
        snprintf(lost, sizeof lost, "dropped %llu", (unsigned long long)m->lost);
    hp_fmt_secs(m->uptime, a, sizeof a);
    hp_fmt_count(hp_rate(m, allocs, hp_ctr_allocs(pv)), 6, b, sizeof b);
    hp_fmt_count(hp_rate(m, frees, hp_ctr_frees(pv)), 6, c, sizeof c);
    hp_fmt_bytes((double)hp_ctr_bytes_in_use(cv), 7, d, sizeof d);
    /* the thread detail goes first when the line does not fit, then the spacing */
    int n = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        const char *gap = attempt < 2 ? "  " : " ";
        n = snprintf(line, sizeof line, " up %s%sallocs/s %s%sfrees/s %s%sin use %s%sthreads %llu%s%s", a, gap, b, gap,
                     c, gap, d, gap, (unsigned long long)cv[HKC_THREADS_LIVE], attempt ? "" : started, gap);
        if (n < 0 || n + (int)strlen(lost) < COLS)
            break;
    }
    mvhline(1, 0, ' ', COLS);
    if (!m->have_counters) {
        hp_put(1, 0, COLS, " waiting for counters...");
    } else {
        hp_put(1, 0, COLS, line);
        attr_t at = m->lost ? hp_pair(HP_PAIR_WARN, A_BOLD) | A_BOLD : 0;
        attron(at);
        if (n > 0 && n < COLS)
            hp_put(1, n, COLS - n, lost);
        attroff(at);
    }

    snprintf(line, sizeof line, " allocs %llu  frees %llu  sort %s%s  %s", (unsigned long long)allocs,
             (unsigned long long)frees, hp_col_names[v->sort], v->reverse ? " (reversed)" : "", m->events_note);
    mvhline(2, 0, ' ', COLS);
    hp_put(2, 0, COLS, line);
}

/* ---- the call-site table ---- */
struct hp_col_layout {
    int show[HP_NCOLS];
    int x[HP_NCOLS];
    int w[HP_NCOLS];
};

static void hp_site_layout(const struct hp_top_model *m, enum hp_sort_col sort, struct hp_col_layout *L)
{
    static const int width[HP_NCOLS] = {10, 8, 8, 9, 9, 6, 7, 0};
    memset(L, 0, sizeof *L);
    int x = 0;
    for (int c = 0; c < HP_COL_SITE; c++) {
        L->show[c] = 1;
        L->w[c] = width[c];
    }
    /* rates of call sites exist only while a recording is being read */
    if (m->mode == HP_MODE_REPLAY)
        L->show[HP_COL_RATE] = 0;
    /* a narrow screen drops a column, never the one the table is sorted by */
    if (COLS < 100)
        L->show[sort == HP_COL_FREES ? HP_COL_BYTES : HP_COL_FREES] = 0;
    for (int c = 0; c < HP_COL_SITE; c++)
        if (L->show[c]) {
            L->x[c] = x;
            x += L->w[c];
        }
    L->show[HP_COL_SITE] = 1;
    L->x[HP_COL_SITE] = x + 2;
    L->w[HP_COL_SITE] = COLS - x - 2;
}

static void hp_site_label(const struct hp_top_site *s, char *buf, size_t len)
{
    const char *f = s->file ? strrchr(s->file, '/') : NULL;
    f = f ? f + 1 : s->file;
    int n;
    if (f)
        n = snprintf(buf, len, "%s  %s:%d", s->function ? s->function : "?", f, s->line);
    else if (s->module)
        n = snprintf(buf, len, "%s  (%s)", s->function ? s->function : "?",
                     strrchr(s->module, '/') ? strrchr(s->module, '/') + 1 : s->module);
    else
        n = snprintf(buf, len, "%s", s->function ? s->function : "?");
    if (s->caller && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, "  < %s", s->caller);
}

static void hp_site_cell(const struct hp_top_site *s, int col, int w, char *buf, size_t len)
{
    switch (col) {
    case HP_COL_ALLOCS: hp_fmt_count(s->allocs, w - 1, buf, len); break;
    case HP_COL_RATE: hp_fmt_count(s->rate, w - 1, buf, len); break;
    case HP_COL_BYTES: hp_fmt_bytes(s->bytes, w - 1, buf, len); break;
    case HP_COL_LIVE: hp_fmt_count(s->live, w - 1, buf, len); break;
    case HP_COL_FREES: hp_fmt_count(s->frees, w - 1, buf, len); break;
    case HP_COL_SAME:
    case HP_COL_CROSS:
        if (s->frees > 0)
            snprintf(buf, len, "%.1f", 100.0 * (col == HP_COL_SAME ? s->same : s->cross) / s->frees);
        else
            snprintf(buf, len, "-");
        break;
    default: hp_site_label(s, buf, len); break;
    }
}

static void hp_draw_sites(const struct hp_top_model *m, struct hp_top_view *v, int y, int h)
{
    struct hp_col_layout L;
    hp_site_layout(m, v->sort, &L);
    attron(A_REVERSE);
    mvhline(y, 0, ' ', COLS);
    for (int c = 0; c < HP_NCOLS; c++) {
        if (!L.show[c])
            continue;
        attr_t at = c == (int)v->sort ? A_BOLD | A_UNDERLINE : 0;
        attron(at);
        if (c == HP_COL_SITE)
            hp_put(y, L.x[c], L.w[c], hp_col_names[c]);
        else
            hp_right(y, L.x[c], L.w[c], hp_col_names[c]);
        attroff(at);
    }
    attroff(A_REVERSE);
    int rows = h - 1;
    v->site_rows = rows > 0 ? rows : 1;
    if (m->scanning) { /* a key stopped the scan halfway: its partial counts are not the position's */
        if (rows > 0)
            hp_put(y + 1, 2, COLS - 2, "(counting the call sites at this position...)");
        return;
    }
    if (m->nsites == 0) {
        if (rows > 0)
            hp_put(y + 1, 2, COLS - 2, m->events_why);
        return;
    }
    if (v->sel >= m->nsites)
        v->sel = m->nsites - 1;
    if (v->sel < v->top)
        v->top = v->sel;
    if (rows > 0 && v->sel >= v->top + (size_t)rows)
        v->top = v->sel - (size_t)rows + 1;
    if (v->top + (size_t)rows > m->nsites)
        v->top = m->nsites > (size_t)rows ? m->nsites - (size_t)rows : 0;
    char buf[1024];
    for (int r = 0; r < rows && v->top + (size_t)r < m->nsites; r++) {
        size_t i = v->top + (size_t)r;
        const struct hp_top_site *s = &m->sites[i];
        int yy = y + 1 + r;
        attr_t at = i == v->sel ? A_REVERSE : 0;
        attron(at);
        if (at)
            mvhline(yy, 0, ' ', COLS);
        for (int c = 0; c < HP_NCOLS; c++) {
            if (!L.show[c])
                continue;
            hp_site_cell(s, c, L.w[c], buf, sizeof buf);
            if (c == HP_COL_SITE)
                hp_put(yy, L.x[c], L.w[c], buf);
            else
                hp_right(yy, L.x[c], L.w[c], buf);
        }
        attroff(at);
    }
}

/* ---- refill stages per size class ---- */
static const char *const hp_stage_label[HKT_NSTAGES] = {"tls_sll", "slab_free", "remote", "partial", "adopt",
                                                        "new_slab", "ss_cache", "ss_os", "large"};

static uint64_t hp_stage_value(const uint64_t *v, int cls, unsigned stage)
{
    if (cls == HKC_NCLASSES) /* the large row */
        return stage == HKT_STAGE_LARGE ? v[HKC_ALLOC_LARGE] : 0;
    if (cls < 0) { /* the all row */
        if (stage == HKT_STAGE_LARGE)
            return v[HKC_ALLOC_LARGE];
        uint64_t n = 0;
        for (unsigned c = 0; c < HKC_NCLASSES; c++)
            n += v[hp_stage_counter(stage) + c];
        return n;
    }
    return stage == HKT_STAGE_LARGE ? 0 : v[hp_stage_counter(stage) + (unsigned)cls];
}

static uint64_t hp_row_allocs(const uint64_t *v, int cls)
{
    uint64_t n = 0;
    for (unsigned s = 0; s < HKT_NSTAGES; s++)
        n += hp_stage_value(v, cls, s);
    return n;
}

static const uint64_t *hp_cmp_vals;
static int hp_cmp_rows(const void *a, const void *b)
{
    uint64_t x = hp_row_allocs(hp_cmp_vals, *(const int *)a), y = hp_row_allocs(hp_cmp_vals, *(const int *)b);
    return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

static const char *const hp_values_name[HP_NVALS] = {"counts", "per second", "shares"};

static void hp_draw_refill(const struct hp_top_model *m, const struct hp_top_view *v, int y, int h)
{
    if (h < 2)
        return;
    /* stage columns that never counted anything are left out, as in hakprof report */
    int show[HKT_NSTAGES], x = 28, shown = 0;
    for (unsigned s = 0; s < HKT_NSTAGES; s++) {
        show[s] = hp_stage_value(m->v, -1, s) != 0;
        if (show[s] && x + 10 <= COLS) {
            x += 10;
            shown++;
        } else if (show[s]) {
            show[s] = -1; /* no room */
        }
    }
    char buf[128];
    attron(A_BOLD);
    mvhline(y, 0, ' ', COLS);
    hp_right(y, 0, 7, "CLASS");
    hp_right(y, 7, 11, "ALLOCS");
    hp_right(y, 18, 10, "ALLOC/S");
    x = 28;
    int cut = 0;
    for (unsigned s = 0; s < HKT_NSTAGES; s++) {
        if (show[s] == 1) {
            hp_right(y, x, 10, hp_stage_label[s]);
            x += 10;
        } else if (show[s] < 0) {
            cut = 1;
        }
    }
    if (cut && COLS > x)
        hp_put(y, COLS - 1, 1, ">");
    attroff(A_BOLD);
    /* rows: all, then the busiest classes (large as one of them) */
    int order[HKC_NCLASSES + 1], n = 0;
    for (int c = 0; c <= HKC_NCLASSES; c++)
        if (hp_row_allocs(m->v, c))
            order[n++] = c;
    hp_cmp_vals = m->v;
    qsort(order, (size_t)n, sizeof *order, hp_cmp_rows);
    for (int r = 0; r < h - 1 && r <= n; r++) {
        int cls = r == 0 ? -1 : order[r - 1];
        int yy = y + 1 + r;
        if (cls < 0)
            snprintf(buf, sizeof buf, "all");
        else if (cls == HKC_NCLASSES)
            snprintf(buf, sizeof buf, "large");
        else
            snprintf(buf, sizeof buf, "%u", hkc_class_size[cls]);
        hp_right(yy, 0, 7, buf);
        uint64_t total = hp_row_allocs(m->v, cls);
        hp_right(yy, 7, 11, hp_fmt_count((double)total, 10, buf, sizeof buf));
        hp_right(yy, 18, 10, hp_fmt_count(hp_rate(m, total, hp_row_allocs(m->pv, cls)), 9, buf, sizeof buf));
        x = 28;
        for (unsigned s = 0; s < HKT_NSTAGES; s++) {
            if (show[s] != 1)
                continue;
            uint64_t now = hp_stage_value(m->v, cls, s), before = hp_stage_value(m->pv, cls, s);
            if (v->values == HP_VAL_COUNTS)
                hp_fmt_count((double)now, 9, buf, sizeof buf);
            else if (v->values == HP_VAL_RATES)
                hp_fmt_count(hp_rate(m, now, before), 9, buf, sizeof buf);
            else if (total)
                snprintf(buf, sizeof buf, "%.1f%%", 100.0 * (double)now / (double)total);
            else
                snprintf(buf, sizeof buf, "-");
            hp_right(yy, x, 10, buf);
            x += 10;
        }
    }
    if (n == 0 && h > 2)
        hp_put(y + 2, 2, COLS - 2, "(no allocation counted yet)");
}

/* ---- free pipeline: tls_sll / ss_local / ss_remote / large shares as bars ---- */
static uint64_t hp_path_total(const uint64_t *v, unsigned path)
{
    if (path == HKT_PATH_LARGE)
        return v[HKC_FREE_LARGE];
    uint64_t n = 0;
    for (unsigned c = 0; c < HKC_NCLASSES; c++)
        n += v[hp_path_counter(path) + c];
    return n;
}

static void hp_draw_free(const struct hp_top_model *m, const struct hp_top_view *v, int y, int h)
{
    /* shares of everything so far, or of the last interval when rates are asked for */
    int interval = v->values == HP_VAL_RATES;
    uint64_t cnt[HKT_NPATHS], all = 0;
    for (unsigned p = 0; p < HKT_NPATHS; p++) {
        cnt[p] = hp_path_total(m->v, p);
        if (interval)
            cnt[p] -= cnt[p] >= hp_path_total(m->pv, p) ? hp_path_total(m->pv, p) : cnt[p];
        all += cnt[p];
    }
    char buf[256], nb[32], rb[32];
    int barw = COLS - 44;
    if (barw < 10)
        barw = 10;
    for (unsigned p = 0; p < HKT_NPATHS && (int)p < h; p++) {
        int yy = y + (int)p;
        double share = all ? (double)cnt[p] / (double)all : 0;
        hp_put(yy, 1, 10, hkt_path_name(p));
        int fill = (int)lround(share * barw);
        attr_t at = hp_pair(p == HKT_PATH_SS_REMOTE ? HP_PAIR_BAR_REMOTE : HP_PAIR_BAR_LOCAL, A_BOLD);
        mvaddch(yy, 11, '[');
        attron(at);
        for (int i = 0; i < fill; i++)
            mvaddch(yy, 12 + i, '|');
        attroff(at);
        mvaddch(yy, 12 + barw, ']');
        uint64_t total = hp_path_total(m->v, p);
        snprintf(buf, sizeof buf, "%5.1f%% %10s %8s/s", 100.0 * share, hp_fmt_count((double)total, 10, nb, sizeof nb),
                 hp_fmt_count(hp_rate(m, total, hp_path_total(m->pv, p)), 7, rb, sizeof rb));
        hp_put(yy, 14 + barw, COLS - 14 - barw, buf);
    }
    if (h <= HKT_NPATHS)
        return;
    /* same- versus cross-thread, over every path (derived counters) */
    uint64_t same = m->v[HKC_FREE_LARGE_SAME_THREAD], cross = m->v[HKC_FREE_LARGE_CROSS_THREAD];
    uint64_t psame = m->pv[HKC_FREE_LARGE_SAME_THREAD], pcross = m->pv[HKC_FREE_LARGE_CROSS_THREAD];
    for (unsigned c = 0; c < HKC_NCLASSES; c++) {
        same += m->v[HKC_FREE_SAME_THREAD + c];
        cross += m->v[HKC_FREE_CROSS_THREAD + c];
        psame += m->pv[HKC_FREE_SAME_THREAD + c];
        pcross += m->pv[HKC_FREE_CROSS_THREAD + c];
    }
    if (interval) {
        same = same >= psame ? same - psame : 0;
        cross = cross >= pcross ? cross - pcross : 0;
    }
    double sc = (double)(same + cross);
    snprintf(buf, sizeof buf, " %s: same-thread %.1f%%  cross-thread %.1f%%   invalid frees %llu",
             interval ? "last interval" : "so far", sc > 0 ? 100.0 * (double)same / sc : 0.0,
             sc > 0 ? 100.0 * (double)cross / sc : 0.0, (unsigned long long)m->v[HKC_FREE_INVALID]);
    hp_put(y + HKT_NPATHS, 0, COLS, buf);
    if (h <= HKT_NPATHS + 2)
        return;
    /* per size class, the busiest first, as far as there is room */
    int yy = y + HKT_NPATHS + 1;
    attron(A_BOLD);
    hp_right(yy, 0, 7, "CLASS");
    hp_right(yy, 7, 11, "FREES");
    hp_right(yy, 18, 10, "FREES/S");
    hp_right(yy, 28, 10, "tls_sll");
    hp_right(yy, 38, 10, "ss_local");
    hp_right(yy, 48, 10, "ss_remote");
    hp_right(yy, 58, 10, "same");
    if (COLS >= 78)
        hp_right(yy, 68, 10, "cross");
    attroff(A_BOLD);
    int order[HKC_NCLASSES], n = 0;
    for (int c = 0; c < HKC_NCLASSES; c++)
        if (hp_ctr_class_frees(m->v, (unsigned)c))
            order[n++] = c;
    /* busiest first: a small insertion sort (48 classes at most) */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && hp_ctr_class_frees(m->v, (unsigned)order[j]) >
                                     hp_ctr_class_frees(m->v, (unsigned)order[j - 1]); j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int r = 0; r < n && yy + 1 + r < y + h; r++) {
        unsigned c = (unsigned)order[r];
        int ry = yy + 1 + r;
        uint64_t f = hp_ctr_class_frees(m->v, c);
        snprintf(buf, sizeof buf, "%u", hkc_class_size[c]);
        hp_right(ry, 0, 7, buf);
        hp_right(ry, 7, 11, hp_fmt_count((double)f, 10, buf, sizeof buf));
        hp_right(ry, 18, 10, hp_fmt_count(hp_rate(m, f, hp_ctr_class_frees(m->pv, c)), 9, buf, sizeof buf));
        const unsigned cols[5] = {HKC_FREE_TLS_SLL, HKC_FREE_SS_LOCAL, HKC_FREE_SS_REMOTE, HKC_FREE_SAME_THREAD,
                                  HKC_FREE_CROSS_THREAD};
        for (int k = 0; k < 5 && 28 + 10 * k + 10 <= COLS; k++) {
            snprintf(buf, sizeof buf, "%.1f%%", 100.0 * (double)m->v[cols[k] + c] / (double)f);
            hp_right(ry, 28 + 10 * k, 10, buf);
        }
    }
}

/* ---- threads ---- */
static const struct hp_top_model *hp_cmp_model;
static int hp_cmp_threads(const void *a, const void *b)
{
    const struct hp_top_thread *x = &hp_cmp_model->threads[*(const size_t *)a];
    const struct hp_top_thread *y = &hp_cmp_model->threads[*(const size_t *)b];
    static const int rank[] = {[HP_THR_LIVE] = 0, [HP_THR_EXITED] = 1, [HP_THR_UNKNOWN] = 2};
    if (rank[x->state] != rank[y->state]) /* live threads first */
        return rank[x->state] - rank[y->state];
    if (x->allocs != y->allocs)
        return x->allocs < y->allocs ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static void hp_draw_threads(const struct hp_top_model *m, int y, int h)
{
    if (h < 1)
        return;
    char buf[256], a[32], b[32], c[32], d[32];
    attron(A_BOLD);
    mvhline(y, 0, ' ', COLS);
    if (m->threads_are_slots)
        snprintf(buf, sizeof buf, "%6s %10s %9s %10s %9s %8s   (exact counters of each live thread's slot)", "SLOT",
                 "ALLOCS", "ALLOC/S", "FREES", "FREES/S", "REMOTE%");
    else
        snprintf(buf, sizeof buf, "%6s %7s %-15s %-7s %10s %9s %10s %7s", "TID", "OS_TID", "NAME", "STATE", "ALLOCS",
                 "ALLOC/S", "FREES", "CROSS%");
    hp_put(y, 0, COLS, buf);
    attroff(A_BOLD);
    if (m->nthreads == 0) {
        if (h > 1)
            hp_put(y + 1, 2, COLS - 2, "(no thread seen yet)");
        return;
    }
    size_t *order = malloc(m->nthreads * sizeof *order);
    if (!order)
        return;
    for (size_t i = 0; i < m->nthreads; i++)
        order[i] = i;
    hp_cmp_model = m;
    qsort(order, m->nthreads, sizeof *order, hp_cmp_threads);
    for (int r = 0; r < h - 1 && (size_t)r < m->nthreads; r++) {
        const struct hp_top_thread *t = &m->threads[order[r]];
        char share[16];
        if (t->frees > 0)
            snprintf(share, sizeof share, "%.1f", 100.0 * t->cross / t->frees);
        else
            snprintf(share, sizeof share, "-");
        if (m->threads_are_slots)
            snprintf(buf, sizeof buf, "%6u %10s %9s %10s %9s %8s", t->id, hp_fmt_count(t->allocs, 10, a, sizeof a),
                     hp_fmt_count(t->alloc_rate, 9, b, sizeof b), hp_fmt_count(t->frees, 10, c, sizeof c),
                     hp_fmt_count(t->free_rate, 9, d, sizeof d), share);
        else
            snprintf(buf, sizeof buf, "%6u %7d %-15.15s %-7s %10s %9s %10s %7s", t->id, t->os_tid,
                     t->name[0] ? t->name : "-",
                     /* a thread whose exit was never recorded is not live once the process has ended */
                     t->state == HP_THR_LIVE ? (m->ended ? "ended" : "live") : t->state == HP_THR_EXITED ? "exited" : "-",
                     hp_fmt_count(t->allocs, 10, a, sizeof a), hp_fmt_count(t->alloc_rate, 9, b, sizeof b),
                     hp_fmt_count(t->frees, 10, c, sizeof c), share);
        hp_put(y + 1 + r, 0, COLS, buf);
    }
    free(order);
}

/* ---- panels ---- */
static const char *const hp_panel_name[HP_NPANELS] = {"refill stages", "free pipeline", "threads"};

static void hp_panel_title(const struct hp_top_view *v, int y, int selected_only, enum hp_panel p)
{
    mvhline(y, 0, '-', COLS);
    int x = 1;
    for (int i = 0; i < HP_NPANELS; i++) {
        if (!selected_only && i != (int)p)
            continue;
        char buf[64];
        int on = !selected_only || i == (int)v->panel;
        /* brackets as well as reverse video: the choice shows on a terminal without attributes too */
        snprintf(buf, sizeof buf, "%s%d %s%s", on ? "[" : " ", i + 1, hp_panel_name[i], on ? "]" : " ");
        attr_t at = on ? A_REVERSE | A_BOLD : 0;
        attron(at);
        hp_put(y, x, COLS - x, buf);
        attroff(at);
        x += (int)strlen(buf) + 1;
    }
    char info[64];
    snprintf(info, sizeof info, " values: %s ", hp_values_name[v->values]);
    if (x + (int)strlen(info) + 1 < COLS)
        hp_put(y, COLS - (int)strlen(info) - 1, (int)strlen(info), info);
}

static void hp_draw_panel(const struct hp_top_model *m, const struct hp_top_view *v, enum hp_panel p, int y, int h)
{
    switch (p) {
    case HP_PANEL_REFILL: hp_draw_refill(m, v, y, h); break;
    case HP_PANEL_FREE: hp_draw_free(m, v, y, h); break;
    default: hp_draw_threads(m, y, h); break;
    }
}

/* ---- stack and help screens ---- */
static void hp_draw_stack(const struct hp_top_model *m, struct hp_top_view *v, int y, int h)
{
    const struct hp_top_site *s = NULL;
    for (size_t i = 0; i < m->nsites; i++)
        if (m->sites[i].stack == v->stack_id)
            s = &m->sites[i];
    char buf[2048], a[32], b[32], c[32], sp[16] = "-", cp[16] = "-";
    if (s && s->frees > 0) {
        snprintf(sp, sizeof sp, "%.1f%%", 100.0 * s->same / s->frees);
        snprintf(cp, sizeof cp, "%.1f%%", 100.0 * s->cross / s->frees);
    }
    if (s)
        snprintf(buf, sizeof buf, " stack %u: allocs %s  bytes %s  live %s  same %s  cross %s", v->stack_id,
                 hp_fmt_count(s->allocs, 12, a, sizeof a), hp_fmt_bytes(s->bytes, 8, b, sizeof b),
                 hp_fmt_count(s->live, 12, c, sizeof c), sp, cp);
    else
        snprintf(buf, sizeof buf, " stack %u", v->stack_id);
    hp_bar_line(y, A_REVERSE, buf, "Esc: back");
    if (!v->stack_known) {
        hp_put(y + 2, 2, COLS - 2, "(the frames of this stack are not in the recording)");
        return;
    }
    /* each frame: number and function, then file:line (on the next line when both do not fit) */
    int yy = y + 1;
    size_t skip = v->stack_scroll;
    for (size_t i = 0; i < v->nframes && yy < y + h; i++) {
        const struct hp_top_frame *f = &v->frames[i];
        char loc[2048];
        if (f->file)
            snprintf(loc, sizeof loc, "%s:%d", f->file, f->line);
        else if (f->module)
            snprintf(loc, sizeof loc, "(%s)", f->module);
        else
            snprintf(loc, sizeof loc, "0x%llx", (unsigned long long)f->ip);
        snprintf(buf, sizeof buf, " #%-3zu %s", i, f->function ? f->function : "?");
        int two = (int)(strlen(buf) + strlen(loc) + 4) > COLS;
        if (skip) {
            skip--;
            continue;
        }
        attron(A_BOLD);
        hp_put(yy, 0, COLS, buf);
        attroff(A_BOLD);
        if (two) {
            if (++yy >= y + h)
                break;
            hp_put(yy, 7, COLS - 7, loc);
        } else {
            hp_put(yy, (int)strlen(buf) + 3, COLS - (int)strlen(buf) - 3, loc);
        }
        yy++;
    }
}

static void hp_draw_help(const struct hp_top_model *m, int y, int h)
{
    /* 19 lines with the source line: all of it fits the smallest screen top runs on (80x24) */
    static const char *const lines[] = {
        "keys",
        "  q            quit (a program top started is stopped: SIGTERM, later SIGKILL)",
        "  Up/Down j k  select a call site;  PgUp/PgDn  a page;  g G  first, last",
        "  Enter        the call site's whole stack with file:line (Esc: back)",
        "  < >          sort by the column to the left / right;  r  reverse",
        "  a t b l f    sort by allocs, allocs/s, bytes, live, frees",
        "  s x n        sort by same-thread %, cross-thread %, name",
        "  Tab 1 2 3    lower panel: refill stages, free pipeline, threads",
        "  v            panel values: counts, per second, shares;  + -  refresh x2, /2",
        "  Left Right   replay: a snapshot back / on;  [ ]  ten snapshots",
        "  Home End     replay: the start / the end;  Space  play / pause",
        "  Ctrl-L       redraw;  ? h  this help",
        "numbers",
        "  Header and panels: exact counters; rates over the refresh interval.",
        "  Call sites, threads: the recording's sampled events, exact when every",
        "  allocation is sampled (HAKMEM_SAMPLE=all), else whole-program estimates.",
        "  No recording (top -p of a program that does not record): no call sites,",
        "  and the thread panel shows each live thread's counter slot.",
    };
    char buf[1024];
    int yy = y;
    snprintf(buf, sizeof buf, " source: %s", m->source);
    hp_put(yy++, 0, COLS, buf);
    for (size_t i = 0; i < sizeof lines / sizeof *lines && yy < y + h; i++)
        hp_put(yy++, 0, COLS, lines[i]);
}

static void hp_draw_help_line(const struct hp_top_model *m, const struct hp_top_view *v)
{
    const char *keys;
    if (v->stack_open)
        keys = " Esc/Enter back  Up/Down scroll  q quit";
    else if (v->help)
        keys = " any key: back  q quit";
    else if (m->mode == HP_MODE_REPLAY)
        keys = " q quit  Left/Right step  Space play  Home/End  Enter stack  < > sort  ? help";
    else
        keys = " q quit  Up/Down select  Enter stack  < > sort  r reverse  Tab panel  ? help";
    hp_bar_line(LINES - 1, A_REVERSE, keys, NULL);
}

void hp_draw(const struct hp_top_model *m, struct hp_top_view *v)
{
    hp_colors();
    erase();
    if (COLS < HP_TOP_MIN_COLS || LINES < HP_TOP_MIN_LINES) {
        char buf[160];
        snprintf(buf, sizeof buf, "terminal too small (%dx%d): enlarge it to at least %dx%d, or press q", COLS,
                 LINES, HP_TOP_MIN_COLS, HP_TOP_MIN_LINES);
        int y = LINES / 2, n = (int)strlen(buf);
        /* word by word onto as many lines as it takes */
        int x = 0, row = y > 1 ? y - 1 : 0;
        const char *p = buf;
        while (*p && row < LINES) {
            const char *sp = strchr(p, ' ');
            int wl = sp ? (int)(sp - p) : (int)strlen(p);
            if (x && x + wl > COLS) {
                row++;
                x = 0;
            }
            if (row < LINES)
                mvaddnstr(row, x, p, wl < COLS ? wl : COLS);
            x += wl + 1;
            p += wl + (sp ? 1 : 0);
        }
        (void)n;
        refresh();
        return;
    }
    hp_draw_header(m, v);
    int y = 3, h = LINES - 1 - y;
    if (v->help) {
        hp_draw_help(m, y, h);
    } else if (v->stack_open) {
        hp_draw_stack(m, v, y, h);
    } else if (h >= 44) {
        /* room for everything: sites, then the three panels */
        int sites = h * 2 / 5, rest = h - sites;
        hp_draw_sites(m, v, y, sites);
        int ph[HP_NPANELS] = {rest * 2 / 5, 11, 0};
        ph[HP_PANEL_THREADS] = rest - ph[0] - ph[1];
        int py = y + sites;
        for (int p = 0; p < HP_NPANELS; p++) {
            hp_panel_title(v, py, 0, (enum hp_panel)p);
            hp_draw_panel(m, v, (enum hp_panel)p, py + 1, ph[p] - 1);
            py += ph[p];
        }
    } else {
        int sites = h / 2;
        hp_draw_sites(m, v, y, sites);
        hp_panel_title(v, y + sites, 1, v->panel);
        hp_draw_panel(m, v, v->panel, y + sites + 1, h - sites - 1);
    }
    hp_draw_help_line(m, v);
    refresh();
}
