/* The compact counter table printed at exit (HAKMEM_STATS_PRINT=1) and by hakprof: totals of every counter,
 * then refill stages and free paths per size class. Formats into a stack buffer; never allocates. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "counters.h"

struct line {
    char buf[1024];
    size_t len;
};

static void add(struct line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->buf + l->len, sizeof l->buf - l->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n < sizeof l->buf - l->len ? (size_t)n : sizeof l->buf - l->len - 1;
}

static void emit(int fd, struct line *l)
{
    add(l, "\n");
    ssize_t w = write(fd, l->buf, l->len);
    (void)w;
    l->len = 0;
}

static uint64_t total(const uint64_t *v, unsigned c)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < hkc_defs[c].width; i++)
        t += v[hkc_defs[c].first + i];
    return t;
}

void hkc_print_table(int fd, const uint64_t *v)
{
    struct line l = {.len = 0};
    char name[64];
    add(&l, "hakmem counters (libhakmem_prof.so)");
    emit(fd, &l);
    add(&l, "%-28s %-7s %16s", "counter", "group", "total");
    emit(fd, &l);
    for (unsigned c = 0; c < HKC_NCOUNTERS; c++) {
        uint64_t t = total(v, c);
        if (!t)
            continue;
        add(&l, "%-28s %-7s %16llu", hkc_name(c, name, sizeof name), hkc_defs[c].group, (unsigned long long)t);
        emit(fd, &l);
    }
    static const unsigned cols[] = {HKC_ID_REFILL_TLS_SLL_HIT, HKC_ID_REFILL_SLAB_FREE, HKC_ID_REFILL_REMOTE_DRAIN,
                                    HKC_ID_REFILL_PARTIAL, HKC_ID_REFILL_ADOPT, HKC_ID_REFILL_NEW_SLAB,
                                    HKC_ID_REFILL_SS_CACHE, HKC_ID_REFILL_SS_OS, HKC_ID_FREE_TLS_SLL,
                                    HKC_ID_FREE_SS_LOCAL, HKC_ID_FREE_SS_REMOTE, HKC_ID_FREE_SAME_THREAD,
                                    HKC_ID_FREE_CROSS_THREAD};
    static const char *const heads[] = {"sll_hit", "slab_free", "rem_drain", "partial", "adopt", "new_slab",
                                        "ss_cache", "ss_os", "f_tls_sll", "f_ss_local", "f_ss_remote", "f_same", "f_cross"};
    add(&l, "per size class:");
    emit(fd, &l);
    add(&l, "%7s", "class");
    for (unsigned k = 0; k < sizeof cols / sizeof cols[0]; k++)
        add(&l, " %11s", heads[k]);
    emit(fd, &l);
    for (unsigned cls = 0; cls < HKC_NCLASSES; cls++) {
        uint64_t any = 0;
        for (unsigned k = 0; k < sizeof cols / sizeof cols[0]; k++)
            any |= v[hkc_defs[cols[k]].first + cls];
        if (!any)
            continue;
        add(&l, "%7u", hkc_class_size[cls]);
        for (unsigned k = 0; k < sizeof cols / sizeof cols[0]; k++)
            add(&l, " %11llu", (unsigned long long)v[hkc_defs[cols[k]].first + cls]);
        emit(fd, &l);
    }
}
