/* hakprof top's live source: starts a program under libhakmem_prof.so or attaches to one, reads its stats segment
 * (exact counters, per-thread counter blocks) and tails its recording for call sites, stacks and thread names. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "hakprof.h"
#include "top.h"

/* How long top waits for a started program's stats segment or recording before giving up on it. */
#define HP_SPAWN_WAIT_S 10.0
/* After SIGTERM at quit, how long a started program gets before SIGKILL. */
#define HP_STOP_GRACE_S 3.0

struct hp_stack {
    uint32_t depth;
    uint64_t *ips;
};

/* The recording, read as it grows: one reader, kept open, takes up the new chunks at every poll (hkt_refresh). */
struct hp_tail {
    char path[PATH_MAX + 16];
    struct hkt_reader *r;   /* NULL until the file has its header */
    off_t size_seen;
    double next_read;       /* monotonic seconds: polls back off when reading gets slow */
    double last_read, read_cost;
    int have_header, complete;
    char error[512];        /* the reader's complaint where it stopped, other than a chunk cut short */
    char cmdline[512], exe[PATH_MAX];
    unsigned sample_mode;
    uint64_t sample_period;
    uint64_t start_mono_ns;
    int *val_map;           /* recording value index -> this build's value index, -1 unknown */
    size_t nval_map;
    int have_snap;
    uint64_t snap[HKC_NVALUES];
    uint64_t snap_mono_ns;
    struct hp_mod *mods;
    size_t nmods;
    struct hp_stack *stacks; /* by stack id */
    size_t nstacks;
    uint64_t lost;
    uint64_t end_mono_ns;   /* when the END chunk says the process ended; 0 before */
    int exec_ended;         /* the END chunk says the image exec'd another program: its recording is another file */
};

struct hp_live {
    int pid;
    pid_t child;            /* a started program; 0 when attached */
    int child_done, child_status;
    int child_unknown;      /* gone, but its status could not be had */
    char cmd0[256];
    struct hkc_reader seg;
    int seg_open;
    dev_t seg_dev;          /* the segment file mapped: an exec'd image of the pid makes a new one at that name */
    ino_t seg_ino;
    char tmpdir[PATH_MAX];  /* the temporary directory of the recording, removed at close; "" if -o */
    struct hp_tail tail;
    struct hp_sym *sym;
    double last_update;
    uint64_t end_realtime_ns; /* when the process was seen gone: the uptime stops there */
    /* per-slot values at the last update, for per-thread rates */
    double slot_prev_allocs[HKC_SEG_SLOTS], slot_prev_frees[HKC_SEG_SLOTS];
    uint8_t slot_prev_valid[HKC_SEG_SLOTS];
};

static uint64_t hp_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the recording ---- */
static void hp_tail_free(struct hp_tail *t)
{
    if (t->r)
        hkt_close(t->r);
    for (size_t i = 0; i < t->nmods; i++)
        free(t->mods[i].path);
    free(t->mods);
    for (size_t i = 0; i < t->nstacks; i++)
        free(t->stacks[i].ips);
    free(t->stacks);
    free(t->val_map);
    memset(t, 0, sizeof *t);
}

static void hp_tail_header(struct hp_tail *t, const struct hkt_header *h, struct hp_top_model *m)
{
    t->have_header = 1;
    snprintf(t->cmdline, sizeof t->cmdline, "%s", h->cmdline);
    snprintf(t->exe, sizeof t->exe, "%s", h->exe);
    t->sample_mode = h->sample_mode;
    t->sample_period = h->sample_period;
    t->start_mono_ns = h->start_mono_ns;
    if (h->sample_mode == HKT_SAMPLE_OFF) {
        snprintf(m->events_note, sizeof m->events_note, "sampling off: no call sites");
        snprintf(m->events_why, sizeof m->events_why,
                 "the recording samples nothing (HAKMEM_SAMPLE=off): no call sites; HAKMEM_SAMPLE=all or bytes:N");
        return;
    }
    m->have_events = 1;
    m->exact = h->sample_mode == HKT_SAMPLE_ALL;
    if (m->exact)
        snprintf(m->events_note, sizeof m->events_note, "sites exact (all sampled)");
    else
        snprintf(m->events_note, sizeof m->events_note, "sites estimated (%s:%llu)",
                 hkt_sample_mode_name(h->sample_mode), (unsigned long long)h->sample_period);
    snprintf(m->events_why, sizeof m->events_why, "(no call site sampled yet)");
    /* Threads of the recording have numbers, names and sampled counts: they replace the counter slots. */
    if (m->threads_are_slots) {
        hp_model_clear_threads(m);
        m->threads_are_slots = 0;
    }
}

static void hp_tail_counter_def(struct hp_tail *t, const struct hkt_counter_def *d)
{
    size_t need = (size_t)d->first + d->width;
    if (need > t->nval_map) {
        t->val_map = hp_xrealloc("top", t->val_map, need * sizeof *t->val_map);
        for (size_t i = t->nval_map; i < need; i++)
            t->val_map[i] = -1;
        t->nval_map = need;
    }
    int first = hp_counter_first(d->name, d->width);
    for (uint32_t i = 0; i < d->width; i++)
        t->val_map[d->first + i] = first < 0 ? -1 : first + (int)i;
}

static void hp_tail_snapshot(struct hp_tail *t, const struct hkt_snapshot *s)
{
    memset(t->snap, 0, sizeof t->snap);
    for (uint32_t i = 0; i < s->nvalues && i < t->nval_map; i++)
        if (t->val_map[i] >= 0)
            t->snap[t->val_map[i]] = s->values[i];
    t->have_snap = 1;
    t->snap_mono_ns = s->mono_ns;
}

static void hp_tail_module(struct hp_tail *t, const struct hkt_module *mo)
{
    t->mods = hp_xrealloc("top", t->mods, (t->nmods + 1) * sizeof *t->mods);
    struct hp_mod *e = &t->mods[t->nmods++];
    e->generation = mo->generation;
    e->base = mo->base;
    e->lo = mo->lo;
    e->hi = mo->hi;
    /* "" is the main program: the header's executable */
    e->path = hp_xstrdup("top", mo->path[0] ? mo->path : t->exe);
    e->build_id = NULL;
}

static void hp_tail_stack(struct hp_tail *t, const struct hkt_stack *s)
{
    if (s->id >= t->nstacks) {
        size_t n = t->nstacks ? t->nstacks : 64;
        while (n <= s->id)
            n *= 2;
        t->stacks = hp_xrealloc("top", t->stacks, n * sizeof *t->stacks);
        memset(t->stacks + t->nstacks, 0, (n - t->nstacks) * sizeof *t->stacks);
        t->nstacks = n;
    }
    struct hp_stack *e = &t->stacks[s->id];
    free(e->ips);
    e->depth = s->depth;
    e->ips = hp_xrealloc("top", NULL, (s->depth ? s->depth : 1) * sizeof *e->ips);
    memcpy(e->ips, s->ips, s->depth * sizeof *e->ips);
}

static void hp_tail_alloc(struct hp_tail *t, const struct hkt_alloc *a, struct hp_top_model *m)
{
    double w = hp_sample_weight(t->sample_mode, t->sample_period, a->size);
    struct hp_top_site *s = hp_model_site(m, a->stack);
    s->allocs += w;
    s->bytes += w * (double)a->size;
    s->live += w;
    s->live_bytes += w * (double)a->size;
    if (!m->threads_are_slots) {
        struct hp_top_thread *th = hp_model_thread(m, a->tid);
        th->allocs += w;
        th->bytes += w * (double)a->size;
        if (th->state == HP_THR_UNKNOWN)
            th->state = HP_THR_LIVE;
    }
}

static void hp_tail_free_ev(struct hp_tail *t, const struct hkt_free *f, struct hp_top_model *m)
{
    double w = hp_sample_weight(t->sample_mode, t->sample_period, f->size);
    int cross = f->tid != f->alloc_tid;
    struct hp_top_site *s = hp_model_site(m, f->stack);
    s->frees += w;
    if (cross)
        s->cross += w;
    else
        s->same += w;
    s->live -= w;
    s->live_bytes -= w * (double)f->size;
    if (!m->threads_are_slots) {
        struct hp_top_thread *th = hp_model_thread(m, f->tid);
        th->frees += w;
        if (cross)
            th->cross += w;
    }
}

static void hp_tail_thread(const struct hkt_thread *th, struct hp_top_model *m)
{
    if (m->threads_are_slots)
        return;
    struct hp_top_thread *e = hp_model_thread(m, th->tid);
    if (th->os_tid)
        e->os_tid = th->os_tid;
    if (th->kind == HKT_THREAD_START && e->state != HP_THR_EXITED)
        e->state = HP_THR_LIVE;
    else if (th->kind == HKT_THREAD_EXIT)
        e->state = HP_THR_EXITED;
    if (th->name && th->name[0])
        snprintf(e->name, sizeof e->name, "%s", th->name);
}

/* Reads what was appended since the last poll: the cost is that of the new chunks only. Should a burst of them
 * take longer than a fifth of the refresh interval, the polls back off to keep reading under a fifth of the time. */
static void hp_tail_poll(struct hp_tail *t, struct hp_top_model *m, double interval)
{
    if (!t->path[0] || t->complete)
        return;
    double now = hp_now();
    if (now < t->next_read)
        return;
    struct stat st;
    if (stat(t->path, &st) != 0 || st.st_size == t->size_seen)
        return;
    if (!t->r) {
        char err[PATH_MAX + 256];
        t->r = hkt_open(t->path, err, sizeof err);
        if (!t->r) { /* not a recording yet (its header still being written), or not one at all */
            hp_copy(t->error, sizeof t->error, err);
            return;
        }
    } else if (hkt_refresh(t->r) < 0) {
        hp_copy(t->error, sizeof t->error, hkt_error(t->r));
        return;
    }
    struct hkt_reader *r = t->r;
    t->size_seen = (off_t)hkt_file_size(r);
    struct hkt_record rec;
    int rc;
    while ((rc = hkt_next(r, &rec)) == 1) {
        switch (rec.type) {
        case HKT_REC_HEADER: hp_tail_header(t, &rec.u.header, m); break;
        case HKT_REC_COUNTER_DEF: hp_tail_counter_def(t, &rec.u.counter_def); break;
        case HKT_REC_MODULE: hp_tail_module(t, &rec.u.module); break;
        case HKT_REC_STACK: hp_tail_stack(t, &rec.u.stack); break;
        case HKT_REC_ALLOC:
            if (m->have_events)
                hp_tail_alloc(t, &rec.u.alloc, m);
            break;
        case HKT_REC_FREE:
            if (m->have_events)
                hp_tail_free_ev(t, &rec.u.free, m);
            break;
        case HKT_REC_SNAPSHOT: hp_tail_snapshot(t, &rec.u.snapshot); break;
        case HKT_REC_THREAD: hp_tail_thread(&rec.u.thread, m); break;
        case HKT_REC_LOST: t->lost += rec.u.lost.events; break;
        case HKT_REC_END:
            if (rec.u.end.lost > t->lost)
                t->lost = rec.u.end.lost;
            t->end_mono_ns = rec.u.end.mono_ns;
            t->exec_ended = rec.u.end.reason == HKT_END_FORK_EXEC;
            break;
        default: break; /* records top does not show */
        }
    }
    t->complete = hkt_complete(r);
    /* A chunk cut short at the end is the writer's next one still being written. Other damage may be passing
     * too (a write seen before an earlier one has landed), so the next poll tries again from the same chunk;
     * once the file stops growing it is not read again, and the error stays on the screen. */
    if (rc < 0 && !strstr(hkt_error(r), "truncated"))
        hp_copy(t->error, sizeof t->error, hkt_error(r));
    else
        t->error[0] = 0;
    double end = hp_now();
    t->read_cost = end - now;
    t->last_read = end;
    t->next_read = end + (t->read_cost * 5 > interval ? t->read_cost * 5 : 0);
}

/* One frame's location, the way ingest names it: function and file:line from the symbols, else module+offset. */
static void hp_live_locate(struct hp_live *l, uint64_t ip, struct hp_top_frame *f)
{
    memset(f, 0, sizeof *f);
    f->ip = ip;
    int32_t k = hp_module_of(l->tail.mods, l->tail.nmods, ip);
    const struct hp_mod *mo = k >= 0 ? &l->tail.mods[k] : NULL;
    struct hp_frame_info fi;
    char label[PATH_MAX + 32];
    if (!l->sym)
        l->sym = hp_sym_new();
    if (hp_sym_frame(l->sym, mo, ip, &fi, label, sizeof label)) {
        f->function = hp_xstrdup("top", fi.function);
        if (fi.file && fi.line > 0) {
            f->file = hp_xstrdup("top", fi.file);
            f->line = fi.line;
        }
    } else {
        f->function = hp_xstrdup("top", label);
    }
    if (mo)
        f->module = hp_xstrdup("top", mo->path);
}

int hp_live_stack(struct hp_live *l, uint32_t stack, struct hp_top_frame **frames, size_t *n)
{
    struct hp_tail *t = &l->tail;
    if (stack >= t->nstacks || !t->stacks[stack].ips)
        return -1;
    const struct hp_stack *s = &t->stacks[stack];
    *frames = hp_xrealloc("top", NULL, (s->depth ? s->depth : 1) * sizeof **frames);
    for (uint32_t i = 0; i < s->depth; i++)
        hp_live_locate(l, s->ips[i], &(*frames)[i]);
    *n = s->depth;
    return 0;
}

void hp_live_label_sites(struct hp_live *l, struct hp_top_model *m)
{
    struct hp_tail *t = &l->tail;
    for (size_t i = 0; i < m->nsites; i++) {
        struct hp_top_site *s = &m->sites[i];
        if (s->labeled)
            continue;
        if (s->stack == 0 || s->stack >= t->nstacks || !t->stacks[s->stack].ips || !t->stacks[s->stack].depth) {
            /* the stack table entry comes before the events that use it, so this is a stack-less event */
            hp_site_set_label(s, s->stack ? "(stack not read yet)" : "(no stack)", NULL, 0, NULL, NULL);
            if (s->stack)
                s->labeled = 0;
            continue;
        }
        const struct hp_stack *st = &t->stacks[s->stack];
        struct hp_top_frame f, c = {0, NULL, NULL, NULL, 0};
        hp_live_locate(l, st->ips[0], &f);
        if (st->depth > 1)
            hp_live_locate(l, st->ips[1], &c);
        hp_site_set_label(s, f.function, f.file, f.line, f.module, c.function);
        free(f.function);
        free(f.file);
        free(f.module);
        free(c.function);
        free(c.file);
        free(c.module);
    }
}

/* ---- finding an attached process's recording ---- */

/* The value of NAME in /proc/PID/environ (the environment the process started with), or "" */
static int hp_proc_env(int pid, const char *name, char *out, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    out[0] = 0;
    if (fd < 0)
        return 0;
    size_t cap = 1 << 16, n = 0;
    char *buf = hp_xrealloc("top", NULL, cap + 1);
    ssize_t got;
    while ((got = read(fd, buf + n, cap - n)) > 0) {
        n += (size_t)got;
        if (n == cap) {
            cap *= 2;
            buf = hp_xrealloc("top", buf, cap + 1);
        }
    }
    close(fd);
    buf[n] = 0;
    size_t nl = strlen(name);
    int found = 0;
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
        if (!strncmp(buf + i, name, nl) && buf[i + nl] == '=') {
            snprintf(out, len, "%s", buf + i + nl + 1);
            found = 1;
            break;
        }
    }
    free(buf);
    return found;
}

/* The recording pid writes, if it records: its HAKMEM_RECORD under the library's naming rule (the name itself for
 * the root process, .<pid> for others, a further .N for exec'd images; %p expanded), the candidate whose header
 * names pid and began last. */
static int hp_find_recording(int pid, char *out, size_t len)
{
    char rec[PATH_MAX], root[32], cwd[PATH_MAX], base[PATH_MAX * 2];
    if (!hp_proc_env(pid, "HAKMEM_RECORD", rec, sizeof rec) || !rec[0])
        return 0;
    hp_proc_env(pid, "HAKMEM_RECORD_ROOT_PID", root, sizeof root);
    if (rec[0] != '/') {
        char link[64];
        snprintf(link, sizeof link, "/proc/%d/cwd", pid);
        ssize_t n = readlink(link, cwd, sizeof cwd - 1);
        if (n <= 0)
            return 0;
        cwd[n] = 0;
        snprintf(base, sizeof base, "%s/", cwd);
    } else {
        base[0] = 0;
    }
    /* %p expanded */
    size_t b = strlen(base);
    int has_pid = 0;
    for (const char *s = rec; *s && b + 16 < sizeof base; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            b += (size_t)snprintf(base + b, sizeof base - b, "%d", pid);
            s++;
            has_pid = 1;
        } else {
            base[b++] = *s;
        }
    }
    base[b] = 0;
    /* The name itself is a candidate for the process that owns it: the root pid, or any with %p. */
    int mine = has_pid || !root[0] || atoi(root) == pid;
    return hp_latest_recording(base, has_pid, mine, pid, out, len);
}

/* Which file the segment reader maps (an exec'd image unlinks the name and makes a new file there). */
static void hp_seg_identity(struct hp_live *l)
{
    struct stat st;
    if (stat(l->seg.path, &st) == 0) {
        l->seg_dev = st.st_dev;
        l->seg_ino = st.st_ino;
    }
}

/* An exec keeps the pid but runs another program, whose library makes a stats segment of its own under the same
 * name and a recording of its own (the library's next name for the pid). Follow both: the screen is about the
 * program running now, not the one it replaced (top -- env X=1 prog, sh -c 'exec prog'). */
static void hp_follow_exec(struct hp_live *l, struct hp_top_model *m)
{
    struct stat st;
    if (l->seg_open && stat(l->seg.path, &st) == 0 && (st.st_dev != l->seg_dev || st.st_ino != l->seg_ino)) {
        struct hkc_reader fresh;
        char err[1024];
        memset(&fresh, 0, sizeof fresh);
        if (hkc_open(&fresh, l->pid, NULL, err, sizeof err) == HKC_OK) {
            hkc_close(&l->seg);
            l->seg = fresh;
            hp_seg_identity(l);
            m->have_counters = 0; /* the new image counts from zero: no rate spans the two */
            m->cmdline[0] = 0;
            memset(l->slot_prev_valid, 0, sizeof l->slot_prev_valid);
        } else {
            hkc_close(&fresh);
        }
    }
    if (!l->tail.exec_ended)
        return;
    char next[sizeof l->tail.path];
    if (!hp_find_recording(l->pid, next, sizeof next) || !strcmp(next, l->tail.path))
        return; /* not made yet: look again at the next update */
    hp_tail_free(&l->tail);
    snprintf(l->tail.path, sizeof l->tail.path, "%s", next);
    hp_model_clear_sites(m);
    hp_model_clear_threads(m);
    m->have_events = m->exact = m->threads_are_slots = 0;
    m->events_note[0] = m->events_why[0] = 0;
}

/* ---- starting a program ---- */
/* what: 1 setting up failed, 2 exec failed */
static void hp_child_fail(int fd, int what, int err)
{
    hp_child_report(fd, what, err);
    _exit(what == 2 ? (err == ENOENT ? 127 : 126) : HP_EXIT_USAGE);
}

static int hp_spawn(struct hp_live *l, const struct hp_live_opts *o, const char *preload, const char *recording)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return hp_fail("top", "pipe: %s", strerror(errno));
    const char *log = o->log ? o->log : "/dev/null";
    int logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return hp_fail("top", "cannot write %s: %s", log, strerror(errno));
    }
    /* An inherited SIG_IGN would have the kernel reap the program, and top would never learn how it ended. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, NULL);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(pfd[0]);
        close(pfd[1]);
        close(logfd);
        return hp_fail("top", "fork: %s", strerror(err));
    }
    if (pid == 0) {
        close(pfd[0]);
        /* Its own process group: the terminal's keys are top's, and at quit the whole group is stopped. Its
         * output would tear the screen, so it goes to the log; its stdin is empty. */
        setpgid(0, 0);
        int in = open("/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
            hp_child_fail(pfd[1], 1, errno);
        if (hp_record_env(preload, recording))
            hp_child_fail(pfd[1], 1, errno);
        execvp(o->cmd[0], o->cmd);
        hp_child_fail(pfd[1], 2, errno);
    }
    close(pfd[1]);
    close(logfd);
    setpgid(pid, pid); /* also from here, so it holds before either side goes on */
    struct hp_child_report rep = {0, 0};
    if (hp_child_read_report(pfd[0], &rep)) {
        int status;
        waitpid(pid, &status, 0);
        if (rep.what == 2) {
            hp_fail("top", "cannot run '%s': %s", o->cmd[0], strerror(rep.err));
            return rep.err == ENOENT ? 127 : 126;
        }
        return hp_fail("top", "cannot set up %s: %s", o->cmd[0], strerror(rep.err));
    }
    l->child = pid;
    l->pid = pid;
    return 0;
}

static void hp_reap(struct hp_live *l)
{
    if (!l->child || l->child_done)
        return;
    int status;
    pid_t w = waitpid(l->child, &status, WNOHANG);
    if (w == l->child) {
        l->child_done = 1;
        l->child_status = status;
    } else if (w < 0 && errno == ECHILD) { /* reaped by someone else: gone, how is unknown */
        l->child_done = 1;
        l->child_unknown = 1;
    }
}

static void hp_remove_tmpdir(struct hp_live *l)
{
    if (!l->tmpdir[0])
        return;
    /* The recording, and those of any process the program started (rec.hkp.<pid>) */
    DIR *d = opendir(l->tmpdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char p[PATH_MAX * 2];
            snprintf(p, sizeof p, "%s/%s", l->tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(l->tmpdir);
    l->tmpdir[0] = 0;
}

/* The absolute name of a -o path, so the program finds it whatever directory it changes to. */
static int hp_abs_path(const char *p, char *out, size_t len)
{
    if (p[0] == '/')
        return snprintf(out, len, "%s", p) < (int)len;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return 0;
    return snprintf(out, len, "%s/%s", cwd, p) < (int)len;
}

struct hp_live *hp_live_open(const struct hp_live_opts *o, int *status)
{
    struct hp_live *l = calloc(1, sizeof *l);
    if (!l) {
        *status = hp_fail("top", "out of memory");
        return NULL;
    }
    char err[1024];
    if (!o->cmd) {
        l->pid = o->pid;
        enum hkc_open_status st = hkc_open(&l->seg, o->pid, NULL, err, sizeof err);
        if (st != HKC_OK) {
            if (st == HKC_STALE)
                hkc_close(&l->seg);
            *status = hp_fail("top", "%s", err);
            free(l);
            return NULL;
        }
        l->seg_open = 1;
        hp_seg_identity(l);
        if (hp_find_recording(o->pid, l->tail.path, sizeof l->tail.path) == 0)
            l->tail.path[0] = 0;
        *status = HP_EXIT_OK;
        return l;
    }

    snprintf(l->cmd0, sizeof l->cmd0, "%s", o->cmd[0]);
    char *preload = hp_preload("top");
    if (!preload) {
        *status = HP_EXIT_USAGE;
        free(l);
        return NULL;
    }
    char recording[PATH_MAX + 16];
    if (o->output) {
        if (!hp_abs_path(o->output, recording, sizeof recording)) {
            *status = hp_fail("top", "%s: path too long", o->output);
            free(preload);
            free(l);
            return NULL;
        }
        struct stat st;
        if (lstat(recording, &st) == 0) {
            if (!o->force) {
                *status = hp_fail("top", "%s exists (use -f to replace it, or -o to choose another name)",
                                  o->output);
                free(preload);
                free(l);
                return NULL;
            }
            if (unlink(recording) != 0) {
                *status = hp_fail("top", "cannot remove %s: %s", o->output, strerror(errno));
                free(preload);
                free(l);
                return NULL;
            }
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(l->tmpdir, sizeof l->tmpdir, "%s/hakprof-top-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(l->tmpdir)) {
            *status = hp_fail("top", "cannot make a temporary directory for the recording: %s", strerror(errno));
            free(preload);
            free(l);
            return NULL;
        }
        snprintf(recording, sizeof recording, "%s/top.hkp", l->tmpdir);
    }
    int rc = hp_spawn(l, o, preload, recording);
    free(preload);
    if (rc) {
        hp_remove_tmpdir(l);
        *status = rc;
        free(l);
        return NULL;
    }
    snprintf(l->tail.path, sizeof l->tail.path, "%s", recording);
    /* The library makes its segment and recording in a constructor: wait for either, or for the program to end. */
    double until = hp_now() + HP_SPAWN_WAIT_S;
    struct stat st;
    for (;;) {
        if (hkc_open(&l->seg, l->pid, NULL, err, sizeof err) == HKC_OK) {
            l->seg_open = 1;
            hp_seg_identity(l);
            break;
        }
        hkc_close(&l->seg);
        hp_reap(l);
        if (l->child_done || hp_now() > until || hp_top_signal)
            break;
        if (stat(recording, &st) == 0 && st.st_size > 0) /* recording without counters (HAKMEM_STATS=0) */
            break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    if (hp_top_signal) { /* the caller dies by the signal; the program must not outlive it */
        hp_live_close(l, NULL, 0);
        *status = HP_EXIT_USAGE;
        return NULL;
    }
    if (!l->seg_open && stat(recording, &st) != 0) {
        char summary[256];
        int ended = l->child_done;
        hp_live_close(l, summary, sizeof summary);
        if (ended)
            *status = hp_fail("top", "%s ended without publishing counters or a recording: did it load "
                              "libhakmem_prof.so (statically linked or setuid?)", o->cmd[0]);
        else
            *status = hp_fail("top", "%s published no counters within %.0f s: did it load libhakmem_prof.so "
                              "(statically linked or setuid?); stopped it", o->cmd[0], HP_SPAWN_WAIT_S);
        return NULL;
    }
    *status = HP_EXIT_OK;
    return l;
}

int hp_live_child(const struct hp_live *l)
{
    return l && l->child && !l->child_done ? l->child : 0;
}

/* ---- one refresh ---- */
static void hp_read_cmdline(const struct hkc_seg_header *h, char *out, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof h->cmdline && h->cmdline[i] && n + 1 < len; i++)
        out[n++] = h->cmdline[i];
    out[n] = 0;
}

/* Per-thread counter blocks (the segment's slots): exact counts per live thread, without its identity. */
static void hp_read_slots(struct hp_live *l, struct hp_top_model *m, double dt)
{
    const struct hkc_seg_header *h = l->seg.hdr;
    static uint64_t vals[HKC_NVALUES];
    hp_model_clear_threads(m);
    m->threads_are_slots = 1;
    for (unsigned i = 0; i < h->nslots && i < HKC_SEG_SLOTS; i++) {
        if (!__atomic_load_n(&h->slot_state[i], __ATOMIC_RELAXED)) {
            l->slot_prev_valid[i] = 0;
            continue;
        }
        const uint64_t *slot = l->seg.blocks + (size_t)(HKC_BLOCK_SLOTS + i) * HKC_NVALUES;
        for (unsigned j = 0; j < HKC_NVALUES; j++)
            vals[j] = __atomic_load_n(&slot[j], __ATOMIC_RELAXED);
        hkc_derive(vals);
        struct hp_top_thread *t = hp_model_thread(m, i);
        t->state = HP_THR_LIVE;
        t->allocs = (double)hp_ctr_allocs(vals);
        t->frees = (double)hp_ctr_frees(vals);
        double cross = (double)vals[HKC_FREE_LARGE_CROSS_THREAD];
        for (unsigned c = 0; c < HKC_NCLASSES; c++)
            cross += (double)vals[HKC_FREE_CROSS_THREAD + c];
        t->cross = cross;
        /* a slot given to a new thread starts again from zero */
        if (l->slot_prev_valid[i] && dt > 0 && t->allocs >= l->slot_prev_allocs[i]) {
            t->alloc_rate = (t->allocs - l->slot_prev_allocs[i]) / dt;
            t->free_rate = t->frees >= l->slot_prev_frees[i] ? (t->frees - l->slot_prev_frees[i]) / dt : 0;
        }
        l->slot_prev_allocs[i] = t->allocs;
        l->slot_prev_frees[i] = t->frees;
        l->slot_prev_valid[i] = 1;
    }
}

/* Names of live threads the recording did not name, from /proc (what the kernel calls them now). */
static void hp_name_threads(struct hp_live *l, struct hp_top_model *m)
{
    for (size_t i = 0; i < m->nthreads; i++) {
        struct hp_top_thread *t = &m->threads[i];
        if (t->name[0] || !t->os_tid || t->state == HP_THR_EXITED)
            continue;
        char path[96], buf[64];
        snprintf(path, sizeof path, "/proc/%d/task/%d/comm", l->pid, t->os_tid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        hp_copy(t->name, sizeof t->name, buf);
    }
}

void hp_live_update(struct hp_live *l, struct hp_top_model *m, double interval)
{
    double now = hp_now();
    double dt = l->last_update ? now - l->last_update : 0;
    l->last_update = now;
    m->pid = l->pid;

    /* Is it still there? */
    int gone = 0;
    if (l->child) {
        hp_reap(l);
        gone = l->child_done;
    } else {
        gone = hkc_is_stale(&l->seg);
    }
    if (!l->seg_open && !gone) {
        char err[1024];
        if (hkc_open(&l->seg, l->pid, NULL, err, sizeof err) == HKC_OK) {
            l->seg_open = 1;
            hp_seg_identity(l);
        } else {
            hkc_close(&l->seg);
        }
    }
    if (!gone)
        hp_follow_exec(l, m);
    if (gone && !m->ended) {
        m->ended = 1;
        l->end_realtime_ns = hp_realtime_ns();
        if (l->child && l->child_unknown)
            snprintf(m->ended_note, sizeof m->ended_note, "ended");
        else if (l->child && WIFEXITED(l->child_status))
            snprintf(m->ended_note, sizeof m->ended_note, "exited with status %d", WEXITSTATUS(l->child_status));
        else if (l->child && WIFSIGNALED(l->child_status))
            snprintf(m->ended_note, sizeof m->ended_note, "killed by signal %d (%s)", WTERMSIG(l->child_status),
                     strsignal(WTERMSIG(l->child_status)));
        else /* attached: gone, how is unknown (exit, a signal, SIGKILL) */
            snprintf(m->ended_note, sizeof m->ended_note, "ended");
    }

    /* Events first: a recording's last snapshot stands in for the counters when there is no segment. */
    double before = l->tail.last_read;
    hp_tail_poll(&l->tail, m, interval);
    int tail_read = l->tail.last_read != before;

    /* Counters. Once the process is gone the segment's mapping still holds its last values. */
    static uint64_t fresh[HKC_NVALUES];
    int have = 0;
    if (l->seg_open && hkc_read(&l->seg, fresh) == 0) {
        have = 1;
        hp_read_cmdline(l->seg.hdr, m->cmdline, sizeof m->cmdline);
        uint64_t end = m->ended ? l->end_realtime_ns : hp_realtime_ns();
        m->uptime = end > l->seg.hdr->created_ns ? (double)(end - l->seg.hdr->created_ns) / 1e9 : 0;
    } else if (l->tail.have_snap) {
        have = 1;
        memcpy(fresh, l->tail.snap, sizeof fresh);
        m->uptime = (double)(l->tail.snap_mono_ns - l->tail.start_mono_ns) / 1e9;
    }
    /* the recording knows when the process ended better than the moment top noticed */
    if (m->ended && l->tail.end_mono_ns > l->tail.start_mono_ns)
        m->uptime = (double)(l->tail.end_mono_ns - l->tail.start_mono_ns) / 1e9;
    if (!m->cmdline[0] && l->tail.have_header)
        snprintf(m->cmdline, sizeof m->cmdline, "%s", l->tail.cmdline);
    if (have) {
        if (m->have_counters && dt > 0) {
            memcpy(m->pv, m->v, sizeof m->v);
            m->dt = dt;
        } else {
            memcpy(m->pv, fresh, sizeof m->pv);
            m->dt = 0;
        }
        memcpy(m->v, fresh, sizeof m->v);
        m->have_counters = 1;
    }

    /* Threads: the recording's (numbered, named) when it samples events, else the counter slots. */
    if (!m->have_events && l->seg_open && !m->ended)
        hp_read_slots(l, m, dt);
    if (m->have_events) {
        if (!m->ended)
            hp_name_threads(l, m);
        if (tail_read) {
            double tdt = l->tail.read_cost >= 0 && before > 0 ? l->tail.last_read - before : 0;
            for (size_t i = 0; i < m->nthreads; i++) {
                struct hp_top_thread *t = &m->threads[i];
                t->alloc_rate = tdt > 0 ? (t->allocs - t->prev_allocs) / tdt : 0;
                t->free_rate = tdt > 0 ? (t->frees - t->prev_frees) / tdt : 0;
                t->prev_allocs = t->allocs;
                t->prev_frees = t->frees;
            }
            for (size_t i = 0; i < m->nsites; i++) {
                struct hp_top_site *s = &m->sites[i];
                s->rate = tdt > 0 ? (s->allocs - s->prev_allocs) / tdt : 0;
                s->prev_allocs = s->allocs;
            }
        } else if (l->tail.complete || m->ended) {
            for (size_t i = 0; i < m->nthreads; i++)
                m->threads[i].alloc_rate = m->threads[i].free_rate = 0;
            for (size_t i = 0; i < m->nsites; i++)
                m->sites[i].rate = 0;
        }
        hp_live_label_sites(l, m);
    }
    m->lost_known = l->tail.have_header;
    m->lost = l->tail.lost;
    if (l->tail.error[0] && m->ended) /* the file will not grow past the damage now */
        snprintf(m->events_note, sizeof m->events_note, "recording damaged: sites partial");

    /* What the screen is reading, and what it is missing. */
    char extra[320] = "";
    if (l->tail.path[0] && l->tail.error[0])
        snprintf(extra, sizeof extra, "; recording: %.290s", l->tail.error);
    else if (l->tail.path[0] && l->tail.read_cost * 5 > interval && !l->tail.complete)
        snprintf(extra, sizeof extra, "; call sites every %.1fs (recording grows fast: %lld MB)",
                 l->tail.read_cost * 5, (long long)(l->tail.size_seen >> 20));
    if (l->tail.path[0])
        snprintf(m->source, sizeof m->source, "live%s, recording %.300s%.300s", l->child ? "" : " (attached)",
                 l->tmpdir[0] ? "(temporary)" : l->tail.path, extra);
    else
        snprintf(m->source, sizeof m->source, "live (attached), stats segment %s", l->seg.path);
    if (!l->tail.path[0]) {
        snprintf(m->events_note, sizeof m->events_note, "not recording: no call sites");
        snprintf(m->events_why, sizeof m->events_why,
                 "(not recording: call sites need a recording; start it with hakprof top -- CMD or hakprof record)");
    } else if (!l->tail.have_header) {
        snprintf(m->events_note, sizeof m->events_note, "waiting for the recording");
        snprintf(m->events_why, sizeof m->events_why, "(waiting for the recording %.200s)", l->tail.path);
    }
}

void hp_live_close(struct hp_live *l, char *summary, size_t len)
{
    if (len)
        summary[0] = 0;
    if (!l)
        return;
    if (l->child) {
        hp_reap(l);
        int stopped = 0;
        if (!l->child_done) {
            /* the whole group: what the program started goes too */
            kill(-l->child, SIGTERM);
            kill(l->child, SIGTERM);
            stopped = 1;
            double until = hp_now() + HP_STOP_GRACE_S;
            while (!l->child_done && hp_now() < until) {
                struct timespec ts = {0, 10000000};
                nanosleep(&ts, NULL);
                hp_reap(l);
            }
            if (!l->child_done) {
                kill(-l->child, SIGKILL);
                kill(l->child, SIGKILL);
                int status;
                if (waitpid(l->child, &status, 0) == l->child) {
                    l->child_done = 1;
                    l->child_status = status;
                }
            }
        }
        if (len) {
            int st = l->child_status;
            if (l->child_unknown)
                snprintf(summary, len, "%s (pid %d) ended", l->cmd0, l->child);
            else if (stopped && WIFSIGNALED(st))
                snprintf(summary, len, "stopped %s (pid %d) with %s", l->cmd0, l->child,
                         WTERMSIG(st) == SIGKILL ? "SIGKILL" : "SIGTERM");
            else if (WIFEXITED(st))
                snprintf(summary, len, "%s (pid %d) exited with status %d", l->cmd0, l->child, WEXITSTATUS(st));
            else if (WIFSIGNALED(st))
                snprintf(summary, len, "%s (pid %d) was killed by signal %d (%s)", l->cmd0, l->child, WTERMSIG(st),
                         strsignal(WTERMSIG(st)));
        }
        /* A program stopped by a signal leaves its segment behind (the library removes it only at exit): top
         * started it and saw it die, so the file is known to be stale. */
        if (l->child_done && l->seg.hdr && l->seg.hdr->pid == l->child && !l->seg.hdr->exited)
            unlink(l->seg.path);
        if (!l->tmpdir[0] && len && l->tail.path[0]) {
            size_t n = strlen(summary);
            snprintf(summary + n, len - n, "; recording: %s", l->tail.path);
        }
    }
    hp_remove_tmpdir(l);
    if (l->seg.hdr)
        hkc_close(&l->seg);
    if (l->sym)
        hp_sym_free(l->sym);
    hp_tail_free(&l->tail);
    free(l);
}
