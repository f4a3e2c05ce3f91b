/* hakprof top: an ncurses view of a live process (its stats segment and recording) or a replay of a recording.
 * This file holds the verb: options, the terminal's setup and restoration, signals, the main loop and the keys. */
#define _GNU_SOURCE
#include <curses.h>
#include <term.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "hakprof.h"
#include "top.h"

#define HP_TOP_MIN_INTERVAL 0.05
#define HP_TOP_MAX_INTERVAL 3600.0

/* Set by SIGINT, SIGTERM and SIGHUP; the loop ends, the terminal is restored, then top dies by the signal. */
volatile sig_atomic_t hp_top_signal;
static int hp_curses_on;

static void hp_top_on_signal(int sig)
{
    hp_top_signal = sig;
}

/* Every way out passes here (atexit too): the terminal must never be left in curses mode. */
static void hp_top_restore(void)
{
    if (hp_curses_on) {
        hp_curses_on = 0;
        endwin();
    }
}

/* After a signal: everything is restored; die by it, as the caller would have seen without top's handler. */
static int hp_top_die(void)
{
    int sig = hp_top_signal;
    signal(sig, SIG_DFL);
    raise(sig);
    return 128 + sig; /* if it was blocked */
}

static void hp_top_usage(FILE *f)
{
    fprintf(f,
            "usage: hakprof top [-d SEC] -p PID\n"
            "       hakprof top [-d SEC] [-o FILE] [-f] [--log FILE] -- CMD [ARGS...]\n"
            "       hakprof top [-d SEC] [-f] RECORDING|DB\n"
            "  A full-screen view of hakmem's allocator in a program: a header (process, uptime, allocations\n"
            "  and frees per second, bytes in use, threads, dropped events), the call sites (allocations,\n"
            "  bytes, live blocks, same- and cross-thread free shares; sortable by any column), refill stages\n"
            "  per size class, the free pipeline (tls_sll / ss_local / ss_remote shares as bars) and threads.\n"
            "  Enter shows a call site's whole stack with file:line.\n"
            "\n"
            "  -p PID          attach to a running program that uses libhakmem_prof.so (its stats segment in\n"
            "                  $HAKMEM_STATS_DIR, default /dev/shm); call sites too if it is recording\n"
            "  -- CMD ARGS     start CMD under libhakmem_prof.so, recording (as hakprof record does), and watch\n"
            "                  it; CMD's stdin is /dev/null and its output goes to --log. Quitting stops CMD\n"
            "                  (SIGTERM to its process group, SIGKILL after 3 s)\n"
            "  RECORDING|DB    replay a recording (ingested first into the database beside it, x.hkp -> x.db,\n"
            "                  as hakprof report does) or a database, one counter snapshot at a time; it\n"
            "                  opens at the end of the run\n"
            "  -d SEC          refresh interval in seconds (default 1; decimals allowed, %g to %g); in a\n"
            "                  replay, the time over which rates are taken and the frame interval of play\n"
            "  -o FILE         with CMD: keep the recording in FILE (default: a temporary file removed at exit)\n"
            "  -f              replace FILE (-o) when it exists; replace the database beside RECORDING when\n"
            "                  it holds something else\n"
            "  --log FILE      with CMD: CMD's stdout and stderr (default /dev/null)\n"
            "\n"
            "keys: q quit; Up/Down select a call site (g G: the first, the last); Enter its stack; < > sort\n"
            "  column, r reverse; a t b l f s x n sort by allocs, allocs/s, bytes, live, frees, same%%, cross%%,\n"
            "  name; Tab or 1 2 3 the lower panel; v counts / per second / shares; + - refresh interval;\n"
            "  replay: Left/Right a snapshot, [ ] ten, Home/End, Space play/pause; ? help.\n"
            "live: the header and the refill and free panels are the exact counters of the stats segment, the\n"
            "  thread panel its per-thread counter slots; call sites, stacks and thread names need a recording,\n"
            "  read as it grows (top -- CMD records; -p finds the recording of a program that records, such as\n"
            "  one under hakprof record). Call sites are exact with HAKMEM_SAMPLE=all, estimates otherwise.\n"
            "The terminal must be at least %dx%d (smaller at start: exit 2; made smaller while running: the\n"
            "screen asks to enlarge it). Exit status: 0 (q), 2 usage or input error; on SIGINT, SIGTERM or\n"
            "SIGHUP top restores the terminal and then dies by that signal. -- CMD: 127 CMD not found, 126 not\n"
            "executable.\n",
            HP_TOP_MIN_INTERVAL, HP_TOP_MAX_INTERVAL, HP_TOP_MIN_COLS, HP_TOP_MIN_LINES);
}

struct hp_top_opts {
    double interval;
    int pid;
    char **cmd;
    const char *input, *output, *log;
    int force;
};

static int hp_parse_pid(const char *s, int *pid)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v <= 0 || v > 0x3fffffff)
        return 0;
    *pid = (int)v;
    return 1;
}

static int hp_parse_interval(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < HP_TOP_MIN_INTERVAL || v > HP_TOP_MAX_INTERVAL)
        return 0;
    *out = v;
    return 1;
}

/* 1: go on; 0: return *rc (an error, or --help printed). */
static int hp_top_args(int argc, char **argv, struct hp_top_opts *o, int *rc)
{
    memset(o, 0, sizeof *o);
    o->interval = 1.0;
    int have_pid = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            if (i + 1 >= argc) {
                *rc = hp_fail("top", "-- must be followed by a command to run");
                return 0;
            }
            o->cmd = argv + i + 1;
            break;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            hp_top_usage(stdout);
            *rc = HP_EXIT_OK;
            return 0;
        }
        if (!strcmp(a, "-f") || !strcmp(a, "--force")) {
            o->force = 1;
            continue;
        }
        const char *val = NULL;
        const char *name = a;
        char optbuf[16];
        if (!strcmp(a, "-p") || !strcmp(a, "-d") || !strcmp(a, "-o") || !strcmp(a, "--pid") ||
            !strcmp(a, "--delay") || !strcmp(a, "--output") || !strcmp(a, "--log")) {
            if (i + 1 >= argc) {
                *rc = hp_fail("top", "%s needs a value%s", a, a[1] == 'p' || !strcmp(a, "--pid") ?
                              " (the process id of a program running under libhakmem_prof.so)" : "");
                return 0;
            }
            val = argv[++i];
        } else if ((a[0] == '-' && strchr("pdo", a[1]) && a[1] && a[2])) {
            /* -p1234, -d0.5 */
            snprintf(optbuf, sizeof optbuf, "-%c", a[1]);
            name = optbuf;
            val = a + 2;
        } else if (!strncmp(a, "--", 2) && strchr(a, '=')) {
            size_t n = (size_t)(strchr(a, '=') - a);
            static char longname[32];
            snprintf(longname, sizeof longname, "%.*s", (int)(n < 31 ? n : 31), a);
            name = longname;
            val = a + n + 1;
        } else if (a[0] == '-' && a[1]) {
            *rc = hp_fail("top", "unknown option %s (try hakprof top --help)", a);
            return 0;
        } else {
            if (o->input) {
                *rc = hp_fail("top", "one recording or database at a time (got %s and %s); to run a program: "
                              "hakprof top -- CMD ARGS", o->input, a);
                return 0;
            }
            o->input = a;
            continue;
        }
        if (!strcmp(name, "-p") || !strcmp(name, "--pid")) {
            if (!hp_parse_pid(val, &o->pid)) {
                *rc = hp_fail("top", "bad -p '%s': expected a process id", val);
                return 0;
            }
            have_pid = 1;
        } else if (!strcmp(name, "-d") || !strcmp(name, "--delay")) {
            if (!hp_parse_interval(val, &o->interval)) {
                *rc = hp_fail("top", "bad -d '%s': expected seconds from %g to %g, like 1 or 0.5", val,
                              HP_TOP_MIN_INTERVAL, HP_TOP_MAX_INTERVAL);
                return 0;
            }
        } else if (!strcmp(name, "-o") || !strcmp(name, "--output")) {
            o->output = val;
        } else if (!strcmp(name, "--log")) {
            o->log = val;
        } else {
            *rc = hp_fail("top", "unknown option %s (try hakprof top --help)", name);
            return 0;
        }
    }
    int modes = have_pid + (o->cmd != NULL) + (o->input != NULL);
    if (modes == 0) {
        *rc = hp_fail("top", "nothing to watch: give -p PID, -- CMD ARGS, or a recording or database (try hakprof "
                      "top --help)");
        return 0;
    }
    if (modes > 1) {
        *rc = hp_fail("top", "choose one of -p PID, -- CMD ARGS, or a recording or database");
        return 0;
    }
    if ((o->output || o->log) && !o->cmd) {
        *rc = hp_fail("top", "%s is for a program top starts (-- CMD ARGS)", o->output ? "-o" : "--log");
        return 0;
    }
    return 1;
}

/* ---- the loop ---- */
struct hp_top {
    struct hp_top_opts *o;
    struct hp_live *live;
    struct hp_replay *replay;
    struct hp_top_model m;
    struct hp_top_view v;
    int pending;         /* replay: the call sites of the position are still to be computed */
    double play_t0, play_wall0;
};

/* The table is sorted after every refresh; the selection stays on the same call site. */
static void hp_top_resort(struct hp_top *t)
{
    hp_sort_sites(&t->m, t->v.sort, t->v.reverse);
    for (size_t i = 0; i < t->m.nsites; i++)
        if (t->m.sites[i].stack == t->v.sel_stack) {
            t->v.sel = i;
            return;
        }
    if (t->v.sel >= t->m.nsites)
        t->v.sel = t->m.nsites ? t->m.nsites - 1 : 0;
    if (t->m.nsites)
        t->v.sel_stack = t->m.sites[t->v.sel].stack;
}

static void hp_top_seek(struct hp_top *t, size_t pos)
{
    t->pending = hp_replay_seek(t->replay, &t->m, pos, t->v.interval, 1);
    if (!t->pending)
        hp_top_resort(t);
}

static void hp_top_select(struct hp_top *t, long delta)
{
    if (!t->m.nsites)
        return;
    long sel = (long)t->v.sel + delta;
    if (sel < 0)
        sel = 0;
    if (sel >= (long)t->m.nsites)
        sel = (long)t->m.nsites - 1;
    t->v.sel = (size_t)sel;
    t->v.sel_stack = t->m.sites[sel].stack;
}

static void hp_top_close_stack(struct hp_top *t)
{
    hp_frames_free(t->v.frames, t->v.nframes);
    t->v.frames = NULL;
    t->v.nframes = 0;
    t->v.stack_open = 0;
}

static void hp_top_open_stack(struct hp_top *t)
{
    if (!t->m.nsites)
        return;
    hp_top_close_stack(t);
    t->v.stack_id = t->m.sites[t->v.sel].stack;
    t->v.stack_scroll = 0;
    int rc = t->live ? hp_live_stack(t->live, t->v.stack_id, &t->v.frames, &t->v.nframes) :
                       hp_replay_stack(t->replay, t->v.stack_id, &t->v.frames, &t->v.nframes);
    t->v.stack_known = rc == 0;
    t->v.stack_open = 1;
}

static void hp_top_sort_by(struct hp_top *t, enum hp_sort_col c)
{
    t->v.sort = c;
    t->v.reverse = 0;
    hp_top_resort(t);
}

/* 1 when q was pressed. */
static int hp_top_key(struct hp_top *t, int ch)
{
    struct hp_top_view *v = &t->v;
    int replay = t->replay != NULL;
    if (ch == 'q' || ch == 'Q')
        return 1;
    if (ch == KEY_RESIZE)
        return 0;
    if (ch == 12) { /* Ctrl-L */
        clearok(curscr, TRUE);
        return 0;
    }
    if (v->help) {
        v->help = 0;
        return 0;
    }
    if (v->stack_open) {
        switch (ch) {
        case 27: case '\n': case '\r': case KEY_ENTER: case KEY_BACKSPACE: case 127: case KEY_LEFT:
            hp_top_close_stack(t);
            break;
        case KEY_UP: case 'k':
            if (v->stack_scroll)
                v->stack_scroll--;
            break;
        case KEY_DOWN: case 'j':
            if (v->stack_scroll + 1 < v->nframes)
                v->stack_scroll++;
            break;
        default: break;
        }
        return 0;
    }
    switch (ch) {
    case KEY_UP: case 'k': hp_top_select(t, -1); break;
    case KEY_DOWN: case 'j': hp_top_select(t, 1); break;
    case 'g': hp_top_select(t, -(long)t->m.nsites); break;
    case 'G': hp_top_select(t, (long)t->m.nsites); break;
    case KEY_PPAGE: hp_top_select(t, -(long)(v->site_rows > 1 ? v->site_rows - 1 : 1)); break;
    case KEY_NPAGE: hp_top_select(t, v->site_rows > 1 ? v->site_rows - 1 : 1); break;
    case '\n': case '\r': case KEY_ENTER: hp_top_open_stack(t); break;
    case '?': case 'h': v->help = 1; break;
    case '<': case ',': {
        int c = (int)v->sort;
        do
            c = (c + HP_NCOLS - 1) % HP_NCOLS;
        while (replay && c == HP_COL_RATE);
        hp_top_sort_by(t, (enum hp_sort_col)c);
        break;
    }
    case '>': case '.': {
        int c = (int)v->sort;
        do
            c = (c + 1) % HP_NCOLS;
        while (replay && c == HP_COL_RATE);
        hp_top_sort_by(t, (enum hp_sort_col)c);
        break;
    }
    case 'r': case 'I':
        v->reverse = !v->reverse;
        hp_top_resort(t);
        break;
    case 'a': hp_top_sort_by(t, HP_COL_ALLOCS); break;
    case 't':
        if (!replay)
            hp_top_sort_by(t, HP_COL_RATE);
        break;
    case 'b': hp_top_sort_by(t, HP_COL_BYTES); break;
    case 'l': hp_top_sort_by(t, HP_COL_LIVE); break;
    case 'f': hp_top_sort_by(t, HP_COL_FREES); break;
    case 's': hp_top_sort_by(t, HP_COL_SAME); break;
    case 'x': hp_top_sort_by(t, HP_COL_CROSS); break;
    case 'n': hp_top_sort_by(t, HP_COL_SITE); break;
    case '\t': v->panel = (enum hp_panel)((v->panel + 1) % HP_NPANELS); break;
    case KEY_BTAB: v->panel = (enum hp_panel)((v->panel + HP_NPANELS - 1) % HP_NPANELS); break;
    case '1': case '2': case '3': v->panel = (enum hp_panel)(ch - '1'); break;
    case 'v': v->values = (enum hp_values)((v->values + 1) % HP_NVALS); break;
    case '+': case '=':
        v->interval = v->interval * 2 > HP_TOP_MAX_INTERVAL ? HP_TOP_MAX_INTERVAL : v->interval * 2;
        if (replay)
            hp_top_seek(t, t->m.pos);
        break;
    case '-':
        v->interval = v->interval / 2 < HP_TOP_MIN_INTERVAL ? HP_TOP_MIN_INTERVAL : v->interval / 2;
        if (replay)
            hp_top_seek(t, t->m.pos);
        break;
    default: break;
    }
    if (!replay)
        return 0;
    /* the timeline */
    size_t pos = t->m.pos, last = t->m.npos ? t->m.npos - 1 : 0;
    int moved = 1;
    switch (ch) {
    case KEY_LEFT: pos = pos ? pos - 1 : 0; break;
    case KEY_RIGHT: pos = pos < last ? pos + 1 : last; break;
    case '[': pos = pos > 10 ? pos - 10 : 0; break;
    case ']': pos = pos + 10 < last ? pos + 10 : last; break;
    case KEY_HOME: pos = 0; break;
    case KEY_END: pos = last; break;
    case ' ':
        t->m.playing = !t->m.playing;
        if (t->m.playing) {
            if (pos == last) /* play from the start again */
                pos = 0;
            t->play_t0 = hp_replay_time(t->replay, pos);
            t->play_wall0 = hp_now();
        }
        break;
    default: moved = 0; break;
    }
    if (moved && ch != ' ')
        t->m.playing = 0;
    if (moved)
        hp_top_seek(t, pos);
    return 0;
}

/* One refresh: live, new counters and events; replay while playing, the position time has reached. */
static void hp_top_tick(struct hp_top *t)
{
    if (t->live) {
        hp_live_update(t->live, &t->m, t->v.interval);
        hp_top_resort(t);
        return;
    }
    if (!t->m.playing)
        return;
    double at = t->play_t0 + (hp_now() - t->play_wall0);
    size_t pos = hp_replay_pos_at(t->replay, at);
    if (pos + 1 >= t->m.npos) {
        pos = t->m.npos - 1;
        t->m.playing = 0;
    }
    if (pos != t->m.pos || t->pending)
        hp_top_seek(t, pos);
}

static int hp_top_loop(struct hp_top *t)
{
    double last = -1e300; /* the last refresh: the next one is an interval later, as the interval is now ('-') */
    for (;;) {
        if (hp_top_signal)
            return 0;
        double now = hp_now();
        double next = last + t->v.interval;
        if (now >= next) {
            hp_top_tick(t);
            last = now;
            next = now + t->v.interval;
            hp_draw(&t->m, &t->v);
        }
        if (t->pending) {
            /* a key stopped the call-site scan: once the keys are handled, finish it */
            timeout(0);
            int ch = getch();
            if (ch == ERR) {
                hp_top_seek(t, t->m.pos);
                hp_draw(&t->m, &t->v);
                continue;
            }
            if (hp_top_key(t, ch))
                return 1;
            hp_draw(&t->m, &t->v);
            continue;
        }
        double wait = next - hp_now();
        int ms = wait > 0 ? (int)(wait * 1000) + 1 : 0;
        timeout(ms > 250 ? 250 : ms); /* a signal is noticed within a quarter second at worst */
        int ch = getch();
        if (ch == ERR)
            continue;
        if (hp_top_key(t, ch))
            return 1;
        hp_draw(&t->m, &t->v);
    }
}

int hp_top_main(int argc, char **argv)
{
    struct hp_top_opts o;
    int rc;
    if (!hp_top_args(argc, argv, &o, &rc))
        return rc;

    struct hp_top t;
    memset(&t, 0, sizeof t);
    t.o = &o;
    hp_model_init(&t.m, o.input ? HP_MODE_REPLAY : HP_MODE_LIVE);
    t.v.interval = o.interval;

    /* Attaching has no side effect: a wrong pid is reported before anything about the terminal. */
    if (o.pid) {
        struct hp_live_opts lo = {.pid = o.pid};
        t.live = hp_live_open(&lo, &rc);
        if (!t.live)
            return rc;
    }
    if (o.input) { /* a missing file is the error to report, not the terminal */
        char err[PATH_MAX + 128];
        enum hp_kind k = hp_file_kind(o.input, err, sizeof err); /* non-blocking: a FIFO would hang an open */
        if (k == HP_K_MISSING || k == HP_K_NOT_FILE)
            return hp_fail("top", "%s", err);
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        hp_live_close(t.live, NULL, 0);
        return hp_fail("top", "%s is not a terminal: top is interactive (hakprof report prints text)",
                       isatty(STDIN_FILENO) ? "stdout" : "stdin");
    }
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row &&
        (ws.ws_col < HP_TOP_MIN_COLS || ws.ws_row < HP_TOP_MIN_LINES)) {
        hp_live_close(t.live, NULL, 0);
        return hp_fail("top", "the terminal is %ux%u: top needs at least %dx%d (enlarge it)", ws.ws_col, ws.ws_row,
                       HP_TOP_MIN_COLS, HP_TOP_MIN_LINES);
    }
    if (o.input) {
        struct hp_replay_opts ro = {.input = o.input, .force = o.force};
        t.replay = hp_replay_open(&ro, &t.m, &rc);
        if (!t.replay)
            return rc;
        /* open at the end: the whole run, as hakprof report shows it */
        hp_replay_seek(t.replay, &t.m, t.m.npos - 1, t.v.interval, 0);
        hp_top_resort(&t);
    }

    /* From here on a signal must not leave the terminal in curses mode or a started program running. Before
     * newterm: ncurses installs its own handlers only where none is set. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = hp_top_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    atexit(hp_top_restore);
    if (o.cmd) {
        struct hp_live_opts lo = {.cmd = o.cmd, .output = o.output, .force = o.force, .log = o.log};
        t.live = hp_live_open(&lo, &rc);
        if (!t.live)
            return hp_top_signal ? hp_top_die() : rc;
    }
    if (hp_top_signal) {
        hp_live_close(t.live, NULL, 0);
        hp_replay_close(t.replay);
        return hp_top_die();
    }
    /* the character set only: numbers keep the C locale's decimal point */
    setlocale(LC_CTYPE, "");
    /* newterm, not initscr: an unknown TERM is an error message here, not an exit inside ncurses */
    SCREEN *screen = newterm(NULL, stdout, stdin);
    if (!screen) {
        hp_live_close(t.live, NULL, 0);
        hp_replay_close(t.replay);
        return hp_fail("top", "cannot use the terminal: TERM=%s is unknown to ncurses",
                       getenv("TERM") ? getenv("TERM") : "");
    }
    /* A terminal that cannot move the cursor (TERM=dumb) would show a blank screen: say so instead. */
    const char *cup = tigetstr("cup");
    if (!cup || cup == (const char *)-1) {
        endwin();
        delscreen(screen);
        hp_live_close(t.live, NULL, 0);
        hp_replay_close(t.replay);
        return hp_fail("top", "cannot use the terminal: TERM=%s cannot position the cursor (try TERM=xterm)",
                       getenv("TERM") ? getenv("TERM") : "");
    }
    hp_curses_on = 1;
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    curs_set(0);
    set_escdelay(100); /* an arrow key split over a slow link must not read as Esc, [ and a letter */
    if (t.live)
        hp_live_update(t.live, &t.m, t.v.interval);

    int quit = hp_top_loop(&t);
    (void)quit;
    hp_top_restore();

    char summary[512];
    hp_top_close_stack(&t);
    hp_live_close(t.live, summary, sizeof summary);
    hp_replay_close(t.replay);
    hp_model_free(&t.m);
    if (summary[0] && t.live)
        fprintf(stderr, "hakprof top: %s\n", summary);
    if (hp_top_signal)
        return hp_top_die();
    return HP_EXIT_OK;
}
