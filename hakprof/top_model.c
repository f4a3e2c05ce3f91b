/* hakprof top's model: the call-site and thread tables both sources fill, the numbers derived from the exact
 * counters, fixed-width number formatting and the sort of the call-site table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hakprof.h"
#include "top.h"

static char *hp_top_strdup(const char *s)
{
    return s ? hp_xstrdup("top", s) : NULL;
}

void hp_model_init(struct hp_top_model *m, enum hp_top_mode mode)
{
    memset(m, 0, sizeof *m);
    m->mode = mode;
}

void hp_model_clear_sites(struct hp_top_model *m)
{
    for (size_t i = 0; i < m->nsites; i++) {
        free(m->sites[i].function);
        free(m->sites[i].file);
        free(m->sites[i].module);
        free(m->sites[i].caller);
    }
    m->nsites = 0;
    if (m->site_index)
        memset(m->site_index, 0, m->site_index_cap * sizeof *m->site_index);
}

void hp_model_clear_threads(struct hp_top_model *m)
{
    m->nthreads = 0;
    if (m->thread_index)
        memset(m->thread_index, 0, m->thread_index_cap * sizeof *m->thread_index);
}

void hp_model_free(struct hp_top_model *m)
{
    hp_model_clear_sites(m);
    free(m->sites);
    free(m->site_index);
    free(m->threads);
    free(m->thread_index);
    memset(m, 0, sizeof *m);
}

static size_t hp_site_hash(uint32_t stack, size_t cap)
{
    return (size_t)(((uint64_t)stack + 1) * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
}

/* The index is rebuilt whenever the table is sorted (sorting moves rows), so it maps to the current order. */
static void hp_site_reindex(struct hp_top_model *m)
{
    size_t cap = m->site_index_cap ? m->site_index_cap : 64;
    while (cap < 2 * (m->nsites + 1))
        cap *= 2;
    if (cap != m->site_index_cap) {
        free(m->site_index);
        m->site_index = hp_xrealloc("top", NULL, cap * sizeof *m->site_index);
        m->site_index_cap = cap;
    }
    memset(m->site_index, 0, cap * sizeof *m->site_index);
    for (size_t i = 0; i < m->nsites; i++) {
        size_t h = hp_site_hash(m->sites[i].stack, cap);
        while (m->site_index[h])
            h = (h + 1) & (cap - 1);
        m->site_index[h] = (uint32_t)i + 1;
    }
}

struct hp_top_site *hp_model_site(struct hp_top_model *m, uint32_t stack)
{
    if (m->site_index_cap) {
        size_t h = hp_site_hash(stack, m->site_index_cap);
        for (uint32_t k; (k = m->site_index[h]); h = (h + 1) & (m->site_index_cap - 1))
            if (m->sites[k - 1].stack == stack)
                return &m->sites[k - 1];
    }
    if (m->nsites == m->capsites) {
        m->capsites = m->capsites ? m->capsites * 2 : 64;
        m->sites = hp_xrealloc("top", m->sites, m->capsites * sizeof *m->sites);
    }
    struct hp_top_site *s = &m->sites[m->nsites++];
    memset(s, 0, sizeof *s);
    s->stack = stack;
    if (2 * (m->nsites + 1) > m->site_index_cap) {
        hp_site_reindex(m);
    } else {
        size_t h = hp_site_hash(stack, m->site_index_cap);
        while (m->site_index[h])
            h = (h + 1) & (m->site_index_cap - 1);
        m->site_index[h] = (uint32_t)m->nsites;
    }
    return s;
}

/* Beyond this an id is looked up by a linear search rather than given a slot of the direct index. */
#define HP_THREAD_INDEX_MAX (1u << 22)

struct hp_top_thread *hp_model_thread(struct hp_top_model *m, uint32_t id)
{
    /* Every sampled event asks for its thread, and a program may have started tens of thousands of them. */
    if (id < m->thread_index_cap && m->thread_index[id])
        return &m->threads[m->thread_index[id] - 1];
    if (id >= HP_THREAD_INDEX_MAX) {
        for (size_t i = 0; i < m->nthreads; i++)
            if (m->threads[i].id == id)
                return &m->threads[i];
    } else if (id >= m->thread_index_cap) {
        size_t cap = m->thread_index_cap ? m->thread_index_cap : 256;
        while (cap <= id)
            cap *= 2;
        m->thread_index = hp_xrealloc("top", m->thread_index, cap * sizeof *m->thread_index);
        memset(m->thread_index + m->thread_index_cap, 0, (cap - m->thread_index_cap) * sizeof *m->thread_index);
        m->thread_index_cap = cap;
    }
    if (m->nthreads == m->capthreads) {
        m->capthreads = m->capthreads ? m->capthreads * 2 : 32;
        m->threads = hp_xrealloc("top", m->threads, m->capthreads * sizeof *m->threads);
    }
    struct hp_top_thread *t = &m->threads[m->nthreads++];
    memset(t, 0, sizeof *t);
    t->id = id;
    if (id < m->thread_index_cap)
        m->thread_index[id] = (uint32_t)m->nthreads;
    return t;
}

void hp_site_set_label(struct hp_top_site *s, const char *function, const char *file, int line, const char *module,
                       const char *caller)
{
    free(s->function);
    free(s->file);
    free(s->module);
    free(s->caller);
    s->caller = hp_top_strdup(caller);
    s->function = hp_top_strdup(function ? function : "?");
    s->file = hp_top_strdup(file);
    s->module = hp_top_strdup(module);
    s->line = line;
    s->labeled = 1;
}

void hp_frames_free(struct hp_top_frame *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].function);
        free(f[i].file);
        free(f[i].module);
    }
    free(f);
}

/* ---- counters ---- */
unsigned hp_stage_counter(unsigned stage)
{
    static const unsigned first[HKT_STAGE_LARGE] = {
        [HKT_STAGE_TLS_SLL] = HKC_REFILL_TLS_SLL_HIT, [HKT_STAGE_SLAB_FREE] = HKC_REFILL_SLAB_FREE,
        [HKT_STAGE_REMOTE_DRAIN] = HKC_REFILL_REMOTE_DRAIN, [HKT_STAGE_PARTIAL] = HKC_REFILL_PARTIAL,
        [HKT_STAGE_ADOPT] = HKC_REFILL_ADOPT, [HKT_STAGE_NEW_SLAB] = HKC_REFILL_NEW_SLAB,
        [HKT_STAGE_SS_CACHE] = HKC_REFILL_SS_CACHE, [HKT_STAGE_SS_OS] = HKC_REFILL_SS_OS,
    };
    return stage < HKT_STAGE_LARGE ? first[stage] : HKC_ALLOC_LARGE;
}

unsigned hp_path_counter(unsigned path)
{
    switch (path) {
    case HKT_PATH_TLS_SLL: return HKC_FREE_TLS_SLL;
    case HKT_PATH_SS_LOCAL: return HKC_FREE_SS_LOCAL;
    case HKT_PATH_SS_REMOTE: return HKC_FREE_SS_REMOTE;
    default: return HKC_FREE_LARGE;
    }
}

uint64_t hp_ctr_class_allocs(const uint64_t *v, unsigned cls)
{
    uint64_t n = 0;
    for (unsigned s = 0; s < HKT_STAGE_LARGE; s++)
        n += v[hp_stage_counter(s) + cls];
    return n;
}

uint64_t hp_ctr_class_frees(const uint64_t *v, unsigned cls)
{
    return v[HKC_FREE_TLS_SLL + cls] + v[HKC_FREE_SS_LOCAL + cls] + v[HKC_FREE_SS_REMOTE + cls];
}

uint64_t hp_ctr_allocs(const uint64_t *v)
{
    uint64_t n = v[HKC_ALLOC_LARGE];
    for (unsigned c = 0; c < HKC_NCLASSES; c++)
        n += hp_ctr_class_allocs(v, c);
    return n;
}

uint64_t hp_ctr_frees(const uint64_t *v)
{
    uint64_t n = v[HKC_FREE_LARGE];
    for (unsigned c = 0; c < HKC_NCLASSES; c++)
        n += hp_ctr_class_frees(v, c);
    return n;
}

int64_t hp_ctr_bytes_in_use(const uint64_t *v)
{
    /* Threads' blocks are summed at slightly different moments, so a free can be seen before its allocation:
     * each class is clamped at zero rather than letting the total go negative. */
    int64_t b = 0;
    for (unsigned c = 0; c < HKC_NCLASSES; c++) {
        int64_t out = (int64_t)(hp_ctr_class_allocs(v, c) - hp_ctr_class_frees(v, c));
        if (out > 0)
            b += out * (int64_t)hkc_class_size[c];
    }
    int64_t large = (int64_t)(v[HKC_LARGE_BYTES_ALLOCATED] - v[HKC_LARGE_BYTES_FREED]);
    return b + (large > 0 ? large : 0);
}

int hp_counter_first(const char *name, unsigned width)
{
    char buf[64];
    for (unsigned c = 0; c < HKC_NCOUNTERS; c++)
        if (hkc_defs[c].width == width && !strcmp(hkc_name(c, buf, sizeof buf), name))
            return (int)hkc_defs[c].first;
    return -1;
}

/* ---- formatting ---- */
const char *hp_fmt_count(double v, int width, char *buf, size_t len)
{
    if (!isfinite(v) || v < 0)
        v = 0;
    snprintf(buf, len, "%.0f", v);
    if ((int)strlen(buf) <= width)
        return buf;
    /* the unit that leaves 1 to 999, one decimal when it fits */
    static const char units[] = "kMGTP";
    for (int u = 0; u < 5; u++) {
        v /= 1000;
        if (v >= 999.5 && u < 4)
            continue;
        snprintf(buf, len, "%.1f%c", v, units[u]);
        if ((int)strlen(buf) <= width)
            return buf;
        snprintf(buf, len, "%.0f%c", v, units[u]);
        return buf;
    }
    return buf;
}

const char *hp_fmt_bytes(double v, int width, char *buf, size_t len)
{
    (void)width; /* at most 6 characters: 1023B, 999.9K, 12.3M */
    if (!isfinite(v) || v < 0)
        v = 0;
    if (v < 1024) {
        snprintf(buf, len, "%.0fB", v);
        return buf;
    }
    static const char units[] = "KMGTP";
    int u = 0;
    for (v /= 1024; v >= 999.95 && u < 4; u++)
        v /= 1024;
    snprintf(buf, len, v < 100 ? "%.1f%c" : "%.0f%c", v, units[u]);
    return buf;
}

const char *hp_fmt_secs(double s, char *buf, size_t len)
{
    if (!isfinite(s) || s < 0)
        s = 0;
    if (s < 60)
        snprintf(buf, len, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)s / 60 % 60);
    return buf;
}

double hp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void hp_copy(char *dst, size_t len, const char *src)
{
    if (!len)
        return;
    size_t n = strlen(src);
    if (n >= len)
        n = len - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* ---- sorting ---- */
const char *const hp_col_names[HP_NCOLS] = {"ALLOCS", "ALLOC/S", "BYTES", "LIVE", "FREES", "SAME%", "CROSS%",
                                            "CALL SITE"};

static enum hp_sort_col hp_cmp_col;
static int hp_cmp_reverse;

static double hp_site_share(const struct hp_top_site *s, int cross)
{
    /* A site without frees sorts below every site with some. */
    return s->frees > 0 ? (cross ? s->cross : s->same) / s->frees : -1;
}

static int hp_cmp_sites(const void *pa, const void *pb)
{
    const struct hp_top_site *a = pa, *b = pb;
    int r = 0;
    double x = 0, y = 0;
    switch (hp_cmp_col) {
    case HP_COL_ALLOCS: x = a->allocs, y = b->allocs; break;
    case HP_COL_RATE: x = a->rate, y = b->rate; break;
    case HP_COL_BYTES: x = a->bytes, y = b->bytes; break;
    case HP_COL_LIVE: x = a->live, y = b->live; break;
    case HP_COL_FREES: x = a->frees, y = b->frees; break;
    case HP_COL_SAME: x = hp_site_share(a, 0), y = hp_site_share(b, 0); break;
    case HP_COL_CROSS: x = hp_site_share(a, 1), y = hp_site_share(b, 1); break;
    case HP_COL_SITE:
        r = strcmp(a->function ? a->function : "", b->function ? b->function : "");
        if (!r)
            r = a->line - b->line;
        break;
    default: break;
    }
    if (hp_cmp_col != HP_COL_SITE)
        r = x < y ? 1 : x > y ? -1 : 0; /* numbers: largest first */
    if (hp_cmp_reverse)
        r = -r;
    if (!r) /* ties keep a stable order between refreshes */
        r = a->allocs < b->allocs ? 1 : a->allocs > b->allocs ? -1 : (a->stack > b->stack) - (a->stack < b->stack);
    return r;
}

void hp_sort_sites(struct hp_top_model *m, enum hp_sort_col col, int reverse)
{
    hp_cmp_col = col;
    hp_cmp_reverse = reverse;
    if (m->nsites > 1)
        qsort(m->sites, m->nsites, sizeof *m->sites, hp_cmp_sites);
    hp_site_reindex(m);
}
