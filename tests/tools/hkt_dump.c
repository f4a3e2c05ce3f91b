/* Test helper: prints every record of a recording, one per line in a stable text form (tests compare it), or with
 * --summary the records of each type, complete=0|1, leak_report=0|1. Damage: the error line on stderr, exit 1. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "../../trace/trace.h"

/* Quoted, with everything that is not printable ASCII escaped, so a record stays on one line. */
static void put_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", stdout);
        else if (*p < 0x20 || *p >= 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static const char *thread_kind_name(uint32_t kind)
{
    switch (kind) {
    case HKT_THREAD_START: return "start";
    case HKT_THREAD_EXIT: return "exit";
    case HKT_THREAD_NAME: return "name";
    }
    return "?";
}

static const char *end_reason_name(uint32_t reason)
{
    switch (reason) {
    case HKT_END_EXIT: return "exit";
    case HKT_END_SIGNAL: return "signal";
    case HKT_END_FORK_EXEC: return "exec";
    }
    return "?";
}

static void print_record(const struct hkt_record *rec)
{
    switch (rec->type) {
    case HKT_REC_HEADER: {
        const struct hkt_header *h = &rec->u.header;
        printf("header pid=%" PRId32 " ppid=%" PRId32 " realtime_ns=%" PRIu64 " mono_ns=%" PRIu64 " tsc=%" PRIu64
               " tsc_per_sec=%" PRIu64 " sample=%s period=%" PRIu64 " seed=%" PRIu64 " depth=%" PRIu32
               " snapshot_ms=%" PRIu32 " cmdline=",
               h->pid, h->ppid, h->start_realtime_ns, h->start_mono_ns, h->start_tsc, h->tsc_per_sec,
               hkt_sample_mode_name(h->sample_mode), h->sample_period, h->sample_seed, h->stack_depth,
               h->snapshot_ms);
        put_str(h->cmdline);
        fputs(" exe=", stdout);
        put_str(h->exe);
        fputs(" settings=", stdout);
        put_str(h->settings);
        fputs(" build_id=", stdout);
        put_str(h->build_id);
        fputs(" lib=", stdout);
        put_str(h->lib_path);
        break;
    }
    case HKT_REC_COUNTER_DEF: {
        const struct hkt_counter_def *d = &rec->u.counter_def;
        printf("counter_def index=%" PRIu32 " first=%" PRIu32 " width=%" PRIu32 " kind=%" PRIu32 " name=", d->index,
               d->first, d->width, d->kind);
        put_str(d->name);
        fputs(" group=", stdout);
        put_str(d->group);
        fputs(" meaning=", stdout);
        put_str(d->meaning);
        break;
    }
    case HKT_REC_MODULE: {
        const struct hkt_module *m = &rec->u.module;
        printf("module gen=%" PRIu32 " base=0x%" PRIx64 " lo=0x%" PRIx64 " hi=0x%" PRIx64 " path=", m->generation,
               m->base, m->lo, m->hi);
        put_str(m->path);
        fputs(" build_id=", stdout);
        put_str(m->build_id);
        break;
    }
    case HKT_REC_STACK: {
        const struct hkt_stack *s = &rec->u.stack;
        printf("stack id=%" PRIu32 " depth=%" PRIu32 " ips=", s->id, s->depth);
        for (uint32_t i = 0; i < s->depth; i++)
            printf("%s0x%" PRIx64, i ? "," : "", s->ips[i]);
        break;
    }
    case HKT_REC_ALLOC: {
        const struct hkt_alloc *a = &rec->u.alloc;
        printf("alloc tid=%" PRIu32 " seq=%" PRIu64 " tsc=%" PRIu64 " addr=0x%" PRIx64 " size=%" PRIu64
               " cls=%" PRIu32 " stage=%s stack=%" PRIu32,
               a->tid, a->seq, a->tsc, a->addr, a->size, a->cls, hkt_stage_name(a->stage), a->stack);
        break;
    }
    case HKT_REC_FREE: {
        const struct hkt_free *f = &rec->u.free;
        printf("free tid=%" PRIu32 " alloc_tid=%" PRIu32 " alloc_seq=%" PRIu64 " tsc=%" PRIu64 " lifetime=%" PRIu64
               " addr=0x%" PRIx64 " size=%" PRIu64 " cls=%" PRIu32 " path=%s stack=%" PRIu32,
               f->tid, f->alloc_tid, f->alloc_seq, f->tsc, f->lifetime, f->addr, f->size, f->cls,
               hkt_path_name(f->path), f->stack);
        break;
    }
    case HKT_REC_SNAPSHOT: {
        const struct hkt_snapshot *s = &rec->u.snapshot;
        printf("snapshot tsc=%" PRIu64 " mono_ns=%" PRIu64 " n=%" PRIu32 " values=", s->tsc, s->mono_ns, s->nvalues);
        for (uint32_t i = 0; i < s->nvalues; i++)
            printf("%s%" PRIu64, i ? "," : "", s->values[i]);
        break;
    }
    case HKT_REC_THREAD: {
        const struct hkt_thread *t = &rec->u.thread;
        printf("thread kind=%s tid=%" PRIu32 " os_tid=%" PRId32 " tsc=%" PRIu64 " name=", thread_kind_name(t->kind),
               t->tid, t->os_tid, t->tsc);
        put_str(t->name);
        break;
    }
    case HKT_REC_LOST:
        printf("lost tid=%" PRIu32 " events=%" PRIu64, rec->u.lost.tid, rec->u.lost.events);
        break;
    case HKT_REC_END: {
        const struct hkt_end *e = &rec->u.end;
        printf("end tsc=%" PRIu64 " mono_ns=%" PRIu64 " realtime_ns=%" PRIu64 " events=%" PRIu64 " lost=%" PRIu64
               " reason=%s signo=%" PRIu32,
               e->tsc, e->mono_ns, e->realtime_ns, e->events, e->lost, end_reason_name(e->reason), e->signo);
        break;
    }
    case HKT_REC_WINDOW: {
        const struct hkt_window *w = &rec->u.window;
        printf("window tsc=%" PRIu64 " mono_ns=%" PRIu64 " open=%" PRIu32, w->tsc, w->mono_ns, w->open);
        break;
    }
    case HKT_REC_ERROR: {
        const struct hkt_error *e = &rec->u.error;
        printf("error kind=%s tid=%" PRIu32 " tsc=%" PRIu64 " addr=0x%" PRIx64 " size=%" PRIu64 " stack=%" PRIu32
               " alloc_stack=%" PRIu32 " alloc_tid=%" PRIu32 " alloc_seq=%" PRIu64,
               hkt_error_name(e->kind), e->tid, e->tsc, e->addr, e->size, e->stack, e->alloc_stack, e->alloc_tid,
               e->alloc_seq);
        break;
    }
    case HKT_REC_LEAK: {
        const struct hkt_leak *l = &rec->u.leak;
        printf("leak stack=%" PRIu32 " blocks=%" PRIu64 " bytes=%" PRIu64 " est_blocks=%" PRIu64
               " est_bytes=%" PRIu64,
               l->stack, l->blocks, l->bytes, l->est_blocks, l->est_bytes);
        break;
    }
    default:
        printf("record type=%d", (int)rec->type);
        break;
    }
}

int main(int argc, char **argv)
{
    int summary = 0, offsets = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--summary"))
            summary = 1;
        else if (!strcmp(argv[i], "--offsets"))
            offsets = 1;
        else if (argv[i][0] == '-' || path) {
            path = NULL;
            break;
        } else
            path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: hkt_dump [--summary] [--offsets] FILE\n");
        return 2;
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    char err[1024];
    struct hkt_reader *r = hkt_open(path, err, sizeof err);
    if (!r) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    static const char *const type_names[] = {
        [HKT_REC_HEADER] = "header", [HKT_REC_COUNTER_DEF] = "counter_def", [HKT_REC_MODULE] = "module",
        [HKT_REC_STACK] = "stack",   [HKT_REC_ALLOC] = "alloc",             [HKT_REC_FREE] = "free",
        [HKT_REC_SNAPSHOT] = "snapshot", [HKT_REC_THREAD] = "thread",      [HKT_REC_LOST] = "lost",
        [HKT_REC_END] = "end",       [HKT_REC_WINDOW] = "window",           [HKT_REC_ERROR] = "error",
        [HKT_REC_LEAK] = "leak",
    };
    enum { NTYPES = sizeof type_names / sizeof type_names[0] };
    uint64_t counts[NTYPES] = {0};
    struct hkt_record rec;
    int rc;
    while ((rc = hkt_next(r, &rec)) == 1) {
        if ((unsigned)rec.type < NTYPES)
            counts[rec.type]++;
        if (summary)
            continue;
        if (offsets)
            printf("@%" PRIu64 " ", rec.offset);
        print_record(&rec);
        putchar('\n');
    }
    if (summary) {
        for (unsigned t = 1; t < NTYPES; t++)
            printf("%s %" PRIu64 "\n", type_names[t], counts[t]);
        printf("complete=%d\n", hkt_complete(r));
        printf("leak_report=%d\n", hkt_has_leaks(r));
    }
    fflush(stdout);
    int status = 0;
    if (rc < 0) {
        fprintf(stderr, "%s\n", hkt_error(r));
        status = 1;
    }
    hkt_close(r);
    return status;
}
