/* Test helper for tests/prof_trace_record.sh: a recording's allocations and frees with their stacks symbolized
 * against the main program's symbol table (`nm -S` output) and every free checked against the allocation it names. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../trace/trace.h"

/* Output, one record per line, fields NAME=value (awk splits them):
 *   header pid= ppid= sample= period= seed= depth=
 *   thread kind= tid= os_tid=
 *   alloc tid= seq= size= cls= stage= addr= stack= site= caller= frames=F,F,...
 *   free tid= alloc_tid= alloc_seq= size= cls= path= stack= site= match=
 *   end reason= signo= events= lost=
 *   complete=0|1
 * site is the innermost frame's function (the caller of malloc), caller the next one; a frame is FUNC+0xOFF in the
 * main program, MODULE+0xOFF (basename, offset from its load bias) elsewhere, ?0xADDR outside every module; site
 * and caller are the bare function names ("-": no such frame). match is ok when the free names an allocation of
 * the recording with the same address, size, class and stack and its lifetime is the difference of their times;
 * else the first thing that differs (none: no such allocation; again: freed twice). Damage: what was read, the
 * reader's message on stderr, exit status 1. */

struct sym {
    uint64_t addr, size;
    char *name;
};
static struct sym *syms;
static size_t nsyms;

static int by_addr(const void *a, const void *b)
{
    const struct sym *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void load_syms(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        perror(file);
        exit(2);
    }
    char line[4096];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long addr, size;
        char type, name[2048];
        /* Only symbols with a size (nm -S prints it) in a text section: functions. */
        if (sscanf(line, "%llx %llx %c %2047s", &addr, &size, &type, name) != 4)
            continue;
        if (type != 'T' && type != 't' && type != 'W' && type != 'w')
            continue;
        if (nsyms == cap) {
            cap = cap ? cap * 2 : 256;
            syms = realloc(syms, cap * sizeof *syms);
            if (!syms)
                exit(3);
        }
        syms[nsyms++] = (struct sym){addr, size, strdup(name)};
    }
    fclose(f);
    qsort(syms, nsyms, sizeof *syms, by_addr);
}

static const struct sym *sym_at(uint64_t rel)
{
    size_t lo = 0, hi = nsyms;
    while (lo < hi) { /* first symbol above rel */
        size_t mid = (lo + hi) / 2;
        if (syms[mid].addr <= rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Symbols may nest (aliases); any one that holds rel will do, the nearest first. */
    for (size_t i = lo; i-- > 0;)
        if (rel - syms[i].addr < syms[i].size)
            return &syms[i];
    return NULL;
}

struct module {
    uint64_t base, lo, hi;
    char *name; /* basename; "" for the main program */
};
static struct module *mods;
static size_t nmods;
static uint32_t mods_gen;

struct stack {
    uint32_t depth;
    uint64_t *ips;
    char *text; /* "site caller frames", made once: many records share a stack */
};
static struct stack *stacks;
static size_t nstacks;

static const struct module *module_of(uint64_t ip)
{
    for (size_t i = nmods; i-- > 0;) /* later generations first: they replace earlier maps where they overlap */
        if (ip >= mods[i].lo && ip < mods[i].hi)
            return &mods[i];
    return NULL;
}

/* One frame as text; func gets the bare function name ("?" if none). */
static void frame(uint64_t ip, char *out, size_t room, char *func, size_t froom)
{
    const struct module *m = module_of(ip);
    snprintf(func, froom, "?");
    if (!m) {
        snprintf(out, room, "?0x%" PRIx64, ip);
        return;
    }
    uint64_t rel = ip - m->base;
    if (!m->name[0]) {
        const struct sym *s = sym_at(rel);
        if (s) {
            snprintf(func, froom, "%s", s->name);
            snprintf(out, room, "%s+0x%" PRIx64, s->name, rel - s->addr);
            return;
        }
        snprintf(out, room, "exe+0x%" PRIx64, rel);
        return;
    }
    snprintf(out, room, "%s+0x%" PRIx64, m->name, rel);
}

struct alloc {
    struct hkt_alloc a;
    int freed;
};
static struct alloc *allocs;
static size_t nallocs, cap_allocs;
static struct hkt_free *frees;
static size_t nfrees, cap_frees;

/* (tid, seq) -> index into allocs, open addressing; built at the end, when every record is in. */
static size_t *slots;
static size_t nslots;
static uint64_t key_hash(uint32_t tid, uint64_t seq)
{
    return (seq * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)tid * 0xbf58476d1ce4e5b9ull);
}
static void index_allocs(void)
{
    nslots = 16;
    while (nslots < 2 * nallocs + 2)
        nslots *= 2;
    slots = malloc(nslots * sizeof *slots);
    if (!slots)
        exit(3);
    for (size_t i = 0; i < nslots; i++)
        slots[i] = SIZE_MAX;
    for (size_t i = 0; i < nallocs; i++) {
        size_t j = key_hash(allocs[i].a.tid, allocs[i].a.seq) & (nslots - 1);
        while (slots[j] != SIZE_MAX)
            j = (j + 1) & (nslots - 1);
        slots[j] = i;
    }
}
static struct alloc *find_alloc(uint32_t tid, uint64_t seq)
{
    for (size_t j = key_hash(tid, seq) & (nslots - 1); slots[j] != SIZE_MAX; j = (j + 1) & (nslots - 1)) {
        struct alloc *a = &allocs[slots[j]];
        if (a->a.tid == tid && a->a.seq == seq)
            return a;
    }
    return NULL;
}

/* site, caller and frames of a stack id. */
static void describe_stack_now(uint32_t id, char *site, char *caller, size_t froom, char *frames, size_t room)
{
    snprintf(site, froom, "-");
    snprintf(caller, froom, "-");
    frames[0] = 0;
    if (id == 0 || id >= nstacks || !stacks[id].ips)
        return;
    size_t used = 0;
    for (uint32_t i = 0; i < stacks[id].depth; i++) {
        char f[512], func[256];
        frame(stacks[id].ips[i], f, sizeof f, func, sizeof func);
        if (i == 0)
            snprintf(site, froom, "%s", func);
        if (i == 1)
            snprintf(caller, froom, "%s", func);
        int n = snprintf(frames + used, room - used, "%s%s", i ? "," : "", f);
        if (n < 0 || (size_t)n >= room - used)
            break;
        used += (size_t)n;
    }
}

/* " site=S caller=C frames=F" of a stack id, from the cache. */
static const char *stack_text(uint32_t id)
{
    static char none[] = " site=- caller=- frames=";
    if (id == 0 || id >= nstacks || !stacks[id].ips)
        return none;
    if (!stacks[id].text) {
        static char frames[16384];
        char site[256], caller[256];
        describe_stack_now(id, site, caller, sizeof site, frames, sizeof frames);
        size_t n = strlen(site) + strlen(caller) + strlen(frames) + 32;
        stacks[id].text = malloc(n);
        if (!stacks[id].text)
            exit(3);
        snprintf(stacks[id].text, n, " site=%s caller=%s frames=%s", site, caller, frames);
    }
    return stacks[id].text;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: trc_sym NM_S_OUTPUT RECORDING\n");
        return 2;
    }
    load_syms(argv[1]);
    char err[1024];
    struct hkt_reader *r = hkt_open(argv[2], err, sizeof err);
    if (!r) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct hkt_record rec;
    int rc;
    while ((rc = hkt_next(r, &rec)) == 1) {
        switch (rec.type) {
        case HKT_REC_HEADER: {
            const struct hkt_header *h = &rec.u.header;
            printf("header pid=%" PRId32 " ppid=%" PRId32 " sample=%s period=%" PRIu64 " seed=%" PRIu64
                   " depth=%" PRIu32 "\n",
                   h->pid, h->ppid, hkt_sample_mode_name(h->sample_mode), h->sample_period, h->sample_seed,
                   h->stack_depth);
            break;
        }
        case HKT_REC_MODULE: {
            const struct hkt_module *m = &rec.u.module;
            if (m->generation != mods_gen) { /* a new map: it replaces the old one */
                nmods = 0;
                mods_gen = m->generation;
            }
            mods = realloc(mods, (nmods + 1) * sizeof *mods);
            if (!mods)
                return 3;
            const char *slash = strrchr(m->path, '/');
            mods[nmods++] = (struct module){m->base, m->lo, m->hi, strdup(slash ? slash + 1 : m->path)};
            break;
        }
        case HKT_REC_STACK: {
            const struct hkt_stack *s = &rec.u.stack;
            if (s->id >= nstacks) {
                size_t n = s->id + 1024;
                stacks = realloc(stacks, n * sizeof *stacks);
                if (!stacks)
                    return 3;
                memset(stacks + nstacks, 0, (n - nstacks) * sizeof *stacks);
                nstacks = n;
            }
            stacks[s->id].depth = s->depth;
            stacks[s->id].ips = malloc((s->depth + 1) * sizeof(uint64_t));
            if (!stacks[s->id].ips)
                return 3;
            memcpy(stacks[s->id].ips, s->ips, s->depth * sizeof(uint64_t));
            break;
        }
        case HKT_REC_ALLOC:
            if (nallocs == cap_allocs) {
                cap_allocs = cap_allocs ? cap_allocs * 2 : 4096;
                allocs = realloc(allocs, cap_allocs * sizeof *allocs);
                if (!allocs)
                    return 3;
            }
            allocs[nallocs++] = (struct alloc){rec.u.alloc, 0};
            break;
        case HKT_REC_FREE:
            if (nfrees == cap_frees) {
                cap_frees = cap_frees ? cap_frees * 2 : 4096;
                frees = realloc(frees, cap_frees * sizeof *frees);
                if (!frees)
                    return 3;
            }
            frees[nfrees++] = rec.u.free;
            break;
        case HKT_REC_THREAD:
            printf("thread kind=%" PRIu32 " tid=%" PRIu32 " os_tid=%" PRId32 "\n", rec.u.thread.kind,
                   rec.u.thread.tid, rec.u.thread.os_tid);
            break;
        case HKT_REC_END:
            printf("end reason=%" PRIu32 " signo=%" PRIu32 " events=%" PRIu64 " lost=%" PRIu64 "\n", rec.u.end.reason,
                   rec.u.end.signo, rec.u.end.events, rec.u.end.lost);
            break;
        default:
            break;
        }
    }
    /* Stacks are symbolized against the last module map: the programs these tests record load no modules late. */
    index_allocs();
    for (size_t i = 0; i < nallocs; i++) {
        const struct hkt_alloc *a = &allocs[i].a;
        printf("alloc tid=%" PRIu32 " seq=%" PRIu64 " size=%" PRIu64 " cls=%" PRIu32 " stage=%s addr=%" PRIu64
               " stack=%" PRIu32 "%s\n",
               a->tid, a->seq, a->size, a->cls, hkt_stage_name(a->stage), a->addr, a->stack, stack_text(a->stack));
    }
    for (size_t i = 0; i < nfrees; i++) {
        const struct hkt_free *f = &frees[i];
        struct alloc *a = find_alloc(f->alloc_tid, f->alloc_seq);
        uint64_t life = a && f->tsc > a->a.tsc ? f->tsc - a->a.tsc : 0;
        const char *match = !a                        ? "none"
                            : a->freed                ? "again"
                            : a->a.addr != f->addr    ? "addr"
                            : a->a.size != f->size    ? "size"
                            : a->a.cls != f->cls      ? "cls"
                            : a->a.stack != f->stack  ? "stack"
                            : life != f->lifetime     ? "lifetime"
                                                      : "ok";
        if (a)
            a->freed = 1;
        const char *t = stack_text(f->stack), *site = strstr(t, " site=") + 6;
        printf("free tid=%" PRIu32 " alloc_tid=%" PRIu32 " alloc_seq=%" PRIu64 " size=%" PRIu64 " cls=%" PRIu32
               " path=%s stack=%" PRIu32 " site=%.*s match=%s\n",
               f->tid, f->alloc_tid, f->alloc_seq, f->size, f->cls, hkt_path_name(f->path), f->stack,
               (int)strcspn(site, " "), site, match);
    }
    printf("complete=%d\n", hkt_complete(r));
    int status = 0;
    if (rc < 0) {
        fprintf(stderr, "%s\n", hkt_error(r));
        status = 1;
    }
    hkt_close(r);
    return status;
}
