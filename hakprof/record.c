/* hakprof record: runs a program with libhakmem_prof.so preloaded and the HAKMEM_* settings that make it write a
 * recording, waits for it like time(1) does, then summarizes what was written and exits as the program did. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "hakprof.h"
#include "../trace/trace.h"

/* The same default as util.c's, for the help text (a build that moves the library passes -DHP_LIBDIR to both). */
#ifndef HP_LIBDIR
#define HP_LIBDIR "/usr/local/lib"
#endif

#define VERB "record"
/* Bounds hakprof checks before starting anything (the library's own, trace.h), so a typo fails here with a clear
 * message rather than being replaced by the library's default deep inside the run. */
#define HP_MAX_SNAPSHOT_MS 3600000L /* the range alloc/settings.c accepts */
#define HP_MAX_SAMPLE_PERIOD (UINT64_MAX >> 31) /* hkt_parse_sample's limit on the digits it is given */
#define HP_MAX_DURATION_S 31536000.0 /* a year: beyond that a typo is likelier than intent */
/* Child recordings named on the summary line before it says "and N more". */
#define HP_MAX_CHILDREN_LISTED 8
/* --repeat: a set is for telling change from noise; a few dozen runs already pin a mean down. */
#define HP_MAX_REPEAT 1000L

/* A line of hakprof record's own on stderr that is not an error, in the same "hakprof record: " form, written in
 * one piece so it does not interleave with the program's output. */
static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "hakprof " VERB ": %s\n", line);
}

struct rec_opts {
    const char *output; /* -o as given; NULL: CMD's basename + ".hkp" */
    int force;
    char sample[48];    /* canonical HAKMEM_SAMPLE value; "" leaves the library's default */
    long stack_depth;   /* -1: the library's default */
    long snapshot_ms;   /* -1: the library's default */
    double delay;       /* --delay: seconds before the recording window opens; 0: open from the start */
    double duration;    /* --duration: seconds the window stays open; 0: until the program ends */
    double stop_after;  /* --stop-after: seconds before the program is sent SIGTERM; 0: never */
    long repeat;        /* --repeat N: N runs written as a set into a directory; 0: one run */
    char **cmd;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hakprof record [OPTIONS] [--] CMD [ARGS...]\n"
            "\n"
            "Runs CMD with libhakmem_prof.so preloaded and records its allocations: sampled call-site events\n"
            "with their stacks, counter snapshots and the module map, one recording file per process.\n"
            "CMD keeps hakprof's stdin, stdout and stderr; hakprof's own lines go to stderr.\n"
            "\n"
            "options:\n"
            "  -o, --output FILE    recording of CMD's process (default: CMD's basename + .hkp in the\n"
            "                       current directory, e.g. larson.hkp for ./larson)\n"
            "  -f, --force          replace FILE if it exists (without -f an existing FILE is an error)\n"
            "      --sample SPEC    which allocations to record:\n"
            "                         all        every allocation\n"
            "                         count:N    every Nth allocation\n"
            "                         bytes:N    on average once per N bytes allocated (an allocation of\n"
            "                                    s bytes with probability 1-exp(-s/N))\n"
            "                         off        no events, counter snapshots only\n"
            "                       N may end in k, m or g (times 1024, 1024^2, 1024^3).\n"
            "                       default: the library's, " HKT_DEFAULT_SAMPLE "\n"
            "      --stack-depth N  most frames kept per stack, 1..%d (default: %d)\n"
            "      --snapshot-ms N  milliseconds between counter snapshots, 1..%ld (default: %d)\n"
            "      --delay SEC      open the recording window SEC seconds after the start (decimals allowed):\n"
            "                       until then nothing is sampled and no snapshot taken\n"
            "      --duration SEC   close the recording window SEC seconds after it opened; the program runs\n"
            "                       on (unrecorded) and hakprof waits for it as usual. The window is opened\n"
            "                       and closed with SIGUSR2 (HAKMEM_RECORD_SIGNAL), which you can also send\n"
            "                       yourself: kill -USR2 PID closes an open window and opens a closed one\n"
            "      --stop-after SEC stop the program after SEC seconds: it is sent SIGTERM if still running,\n"
            "                       and hakprof then exits 0\n"
            "      --repeat N       run CMD N times (1..%ld), one after the other, and write the recordings as\n"
            "                       one set: -o names a directory (default: CMD's basename + .runs), created\n"
            "                       if needed, holding 1.hkp .. N.hkp; hakprof diff takes the directory and\n"
            "                       judges changes against the spread of its runs. With -f the recordings\n"
            "                       of an earlier set there (N.hkp, N.hkp.PID, N.db) are removed first.\n"
            "                       A run that fails (non-zero exit or a signal) ends the set.\n"
            "  -h, --help           this text\n"
            "\n"
            "recording files:\n"
            "  CMD's own process writes FILE; every other process it starts (fork, or fork and exec) writes\n"
            "  FILE.<pid> beside it. If FILE contains %%p, every process writes FILE with %%p replaced by its\n"
            "  pid instead. An existing FILE is never overwritten without -f (child files are not checked).\n"
            "  At the end hakprof prints FILE's size, event count and whether it is complete, and lists the\n"
            "  child recordings written during the run. No FILE at all means CMD never loaded the library:\n"
            "  it is statically linked or setuid, or it exec'd such a program.\n"
            "\n"
            "environment set for CMD:\n"
            "  LD_PRELOAD              libhakmem_prof.so, before any value already there; the library beside\n"
            "                          the hakprof binary, else " HP_LIBDIR "/libhakmem_prof.so\n"
            "  HAKMEM_RECORD           FILE as an absolute path (the library expands %%p)\n"
            "  HAKMEM_RECORD_ROOT_PID  CMD's pid: the process that writes FILE itself\n"
            "  HAKMEM_RECORD_SIGNAL    USR2, and HAKMEM_RECORD_PAUSED=1 with --delay: the recording window\n"
            "  HAKMEM_SAMPLE, HAKMEM_STACK_DEPTH, HAKMEM_SNAPSHOT_MS\n"
            "                          from the options above, only when given (otherwise a value already in\n"
            "                          the environment applies)\n"
            "\n"
            "signals:\n"
            "  While CMD runs, hakprof ignores SIGINT and SIGQUIT (CMD receives them from the terminal and\n"
            "  decides) and passes SIGTERM and SIGHUP on to CMD.\n"
            "\n"
            "exit status:\n"
            "  CMD's exit status. If CMD was killed by a signal, hakprof prints its summary and then kills\n"
            "  itself with the same signal (no core dump), so a shell sees 128+N as for CMD itself.\n"
            "  0 if --stop-after stopped CMD. hakprof's own failures: 2 usage error, FILE exists, library not\n"
            "  found; 126 CMD cannot be executed; 127 CMD not found.\n",
            HKT_MAX_STACK_DEPTH, HKT_DEFAULT_STACK_DEPTH, HP_MAX_SNAPSHOT_MS, HKT_DEFAULT_SNAPSHOT_MS, HP_MAX_REPEAT);
}

/* ---- Option values ----------------------------------------------------------------------------------------------- */

/* Digits only (no sign, no spaces: strtoull would accept both), optionally one k/m/g multiplier when allowed. */
static int parse_u64(const char *s, int allow_suffix, uint64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return 0;
    uint64_t v = 0;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (*s && allow_suffix) {
        unsigned shift = 0;
        switch (*s) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return 0;
        }
        if (v > (UINT64_MAX >> shift))
            return 0;
        v <<= shift;
        s++;
    }
    if (*s)
        return 0;
    *out = v;
    return 1;
}

/* The spec is handed to the library in canonical form (bytes:65536, never bytes:64k), so the library's parser
 * needs no suffix rules and the recording's settings show the number that was used. */
static int parse_sample(const char *spec, char *out, size_t outlen)
{
    if (strcmp(spec, "all") == 0 || strcmp(spec, "off") == 0) {
        snprintf(out, outlen, "%s", spec);
        return 1;
    }
    int bytes = strncmp(spec, "bytes:", 6) == 0;
    int count = strncmp(spec, "count:", 6) == 0;
    uint64_t n;
    if (!bytes && !count) {
        hp_fail(VERB, "bad --sample '%s': expected all, off, count:N or bytes:N (N may end in k, m or g)", spec);
        return 0;
    }
    if (!parse_u64(spec + 6, 1, &n)) {
        hp_fail(VERB, "bad --sample '%s': N must be a whole number, optionally ending in k, m or g", spec);
        return 0;
    }
    if (n == 0) {
        hp_fail(VERB, "bad --sample '%s': N must be at least 1 (use --sample off to record no events)", spec);
        return 0;
    }
    if (n > HP_MAX_SAMPLE_PERIOD) {
        hp_fail(VERB, "bad --sample '%s': N must be at most %" PRIu64, spec, (uint64_t)HP_MAX_SAMPLE_PERIOD);
        return 0;
    }
    snprintf(out, outlen, "%s:%" PRIu64, bytes ? "bytes" : "count", n);
    return 1;
}

static int parse_ranged(const char *opt, const char *s, long lo, long hi, long *out)
{
    uint64_t v;
    if (!parse_u64(s, 0, &v) || v < (uint64_t)lo || v > (uint64_t)hi) {
        hp_fail(VERB, "bad %s '%s': expected a whole number from %ld to %ld", opt, s, lo, hi);
        return 0;
    }
    *out = (long)v;
    return 1;
}

static int parse_duration(const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    /* strtod also takes hex, inf and nan; a duration is plain decimal. */
    int plain = isdigit((unsigned char)s[0]) || (s[0] == '.' && isdigit((unsigned char)s[1]));
    for (const char *p = s; plain && p < end; p++)
        if (!isdigit((unsigned char)*p) && *p != '.')
            plain = 0;
    if (!plain || *end || errno || !(v > 0) || v > HP_MAX_DURATION_S) {
        hp_fail(VERB, "bad %s '%s': expected seconds greater than 0, like 10 or 2.5", opt, s);
        return 0;
    }
    *out = v;
    return 1;
}

enum { OPT_SAMPLE = 256, OPT_STACK_DEPTH, OPT_SNAPSHOT_MS, OPT_DURATION, OPT_REPEAT, OPT_DELAY, OPT_STOP_AFTER };

/* 1 ok; 0 the caller exits with *rc (a usage error, or --help printed). */
static int parse_args(int argc, char **argv, struct rec_opts *o, int *rc)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        {"sample", required_argument, NULL, OPT_SAMPLE},
        {"stack-depth", required_argument, NULL, OPT_STACK_DEPTH},
        {"snapshot-ms", required_argument, NULL, OPT_SNAPSHOT_MS},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"delay", required_argument, NULL, OPT_DELAY},
        {"stop-after", required_argument, NULL, OPT_STOP_AFTER},
        {"repeat", required_argument, NULL, OPT_REPEAT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->stack_depth = -1;
    o->snapshot_ms = -1;
    *rc = HP_EXIT_USAGE;
    /* '+': stop at CMD, so CMD's own options are never taken for ours; ':': tell a missing argument apart.
     * getopt's own messages are off: ours follow the one-line "hakprof record: ..." convention. */
    opterr = 0;
    optind = 1;
    int c, at = optind;
    /* at: the argument getopt is looking at (it stays on a cluster like -fo until its last letter), which names
     * a long option in an error message; optopt only holds a long option's code. */
    while ((c = getopt_long(argc, argv, "+:o:fh", longopts, NULL)) != -1) {
        const char *cur = at < argc ? argv[at] : "";
        int is_long = strncmp(cur, "--", 2) == 0;
        int namelen = (int)strcspn(cur, "=");
        at = optind;
        switch (c) {
        case 'o':
            if (!*optarg) {
                hp_fail(VERB, "-o needs a file name");
                return 0;
            }
            o->output = optarg;
            break;
        case 'f':
            o->force = 1;
            break;
        case OPT_SAMPLE:
            if (!parse_sample(optarg, o->sample, sizeof o->sample))
                return 0;
            break;
        case OPT_STACK_DEPTH:
            if (!parse_ranged("--stack-depth", optarg, 1, HKT_MAX_STACK_DEPTH, &o->stack_depth))
                return 0;
            break;
        case OPT_SNAPSHOT_MS:
            if (!parse_ranged("--snapshot-ms", optarg, 1, HP_MAX_SNAPSHOT_MS, &o->snapshot_ms))
                return 0;
            break;
        case OPT_DURATION:
            if (!parse_duration("--duration", optarg, &o->duration))
                return 0;
            break;
        case OPT_DELAY:
            if (!parse_duration("--delay", optarg, &o->delay))
                return 0;
            break;
        case OPT_STOP_AFTER:
            if (!parse_duration("--stop-after", optarg, &o->stop_after))
                return 0;
            break;
        case OPT_REPEAT:
            if (!parse_ranged("--repeat", optarg, 1, HP_MAX_REPEAT, &o->repeat))
                return 0;
            break;
        case 'h':
            usage(stdout);
            *rc = HP_EXIT_OK;
            return 0;
        case ':':
            if (is_long)
                hp_fail(VERB, "option %s needs a value (try hakprof record --help)", cur);
            else
                hp_fail(VERB, "option -%c needs a value (try hakprof record --help)", optopt);
            return 0;
        default:
            if (is_long && optopt) /* known, but given a value it does not take */
                hp_fail(VERB, "option %.*s takes no value (try hakprof record --help)", namelen, cur);
            else if (is_long)
                hp_fail(VERB, "unknown or ambiguous option '%.*s' (try hakprof record --help)", namelen, cur);
            else
                hp_fail(VERB, "unknown option -%c (try hakprof record --help)", optopt);
            return 0;
        }
    }
    if (optind >= argc) {
        hp_fail(VERB, "no command to run (usage: hakprof record [OPTIONS] [--] CMD [ARGS...])");
        return 0;
    }
    o->cmd = argv + optind;
    if (o->repeat && o->output && strstr(o->output, "%p")) {
        hp_fail(VERB, "--repeat writes a directory of runs: -o names the directory, without %%p");
        return 0;
    }
    return 1;
}

/* ---- Names ------------------------------------------------------------------------------------------------------- */

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* pattern with every "%p" replaced by pid. */
static char *expand_pid(const char *pattern, long pid)
{
    char num[24];
    int nlen = snprintf(num, sizeof num, "%ld", pid);
    size_t n = 0;
    for (const char *p = pattern; *p; p++)
        n += (p[0] == '%' && p[1] == 'p') ? (p++, (size_t)nlen) : 1;
    char *out = malloc(n + 1), *q = out;
    if (!out)
        return NULL;
    for (const char *p = pattern; *p; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            memcpy(q, num, (size_t)nlen);
            q += nlen;
            p++;
        } else {
            *q++ = *p;
        }
    }
    *q = '\0';
    return out;
}

/* Does name fit pattern, where each "%p" stands for one or more digits? */
static int match_pid_pattern(const char *name, const char *pat)
{
    while (*pat) {
        if (pat[0] == '%' && pat[1] == 'p') {
            for (size_t k = 0; isdigit((unsigned char)name[k]); k++)
                if (match_pid_pattern(name + k + 1, pat + 2))
                    return 1;
            return 0;
        }
        if (*pat++ != *name++)
            return 0;
    }
    if (*name == '.' && isdigit((unsigned char)name[1])) { /* PATH.N: the recording of an exec'd image */
        for (name++; isdigit((unsigned char)*name); name++)
            ;
    }
    return *name == '\0';
}

static char *join_path(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    char *out = malloc(dl + nl + 2);
    if (!out)
        return NULL;
    memcpy(out, dir, dl);
    out[dl] = '/';
    memcpy(out + dl + 1, name, nl + 1);
    return out;
}

/* Everything derived from -o. The library gets an absolute path: the program's children may have changed directory
 * by the time they open their own files. Messages use the name as the user typed it. */
struct names {
    char *shown;          /* the -o value or the default, as typed; may contain %p */
    char *abs;            /* absolute form of shown: HAKMEM_RECORD */
    char *child_pattern;  /* what other processes write, always with %p: shown.%p unless shown has %p */
    char *dir;            /* directory of abs, for the writability check and the child scan */
};

static void free_names(struct names *n)
{
    free(n->shown);
    free(n->abs);
    free(n->child_pattern);
    free(n->dir);
}

static int no_memory(void)
{
    hp_fail(VERB, "out of memory");
    return 0;
}

/* 1 ok; 0 after printing why not. */
static int make_names(const struct rec_opts *o, struct names *n)
{
    memset(n, 0, sizeof *n);
    if (o->output) {
        n->shown = strdup(o->output);
    } else {
        const char *b = base_name(o->cmd[0]);
        n->shown = malloc(strlen(b) + 5);
        if (n->shown)
            sprintf(n->shown, "%s.hkp", b);
    }
    if (!n->shown)
        return no_memory();
    if (n->shown[0] == '/') {
        n->abs = strdup(n->shown);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) {
            hp_fail(VERB, "cannot tell the current directory: %s", strerror(errno));
            return 0;
        }
        n->abs = join_path(cwd, n->shown);
    }
    if (!n->abs)
        return no_memory();
    if (strstr(n->shown, "%p")) {
        n->child_pattern = strdup(n->shown);
    } else {
        n->child_pattern = malloc(strlen(n->shown) + 4);
        if (n->child_pattern)
            sprintf(n->child_pattern, "%s.%%p", n->shown);
    }
    n->dir = strdup(n->abs);
    if (!n->child_pattern || !n->dir)
        return no_memory();
    char *slash = strrchr(n->dir, '/');
    if (slash == n->dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    return 1;
}

/* ---- Running the program ----------------------------------------------------------------------------------------- */

/* What the child tells the parent through a close-on-exec pipe when it fails before or at exec: an exec that
 * works closes the pipe and the parent reads nothing (struct hp_child_report's what). */
enum { CHILD_OK = 0, CHILD_EXISTS, CHILD_UNLINK, CHILD_ENV, CHILD_EXEC, CHILD_REFUSED, CHILD_CREATE };

/* Signal state saved before the fork: the child gets the original back so CMD starts exactly as it would have
 * started without hakprof (an ignored SIGINT under nohup stays ignored, for instance). */
struct sigstate {
    struct sigaction intr, quit, chld;
    sigset_t mask;
};

static int set_env_num(const char *name, long v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%ld", v);
    return setenv(name, buf, 1);
}

/* In the child, between fork and exec. hakprof is single-threaded, so malloc (setenv) is safe here. */
static void run_child(const struct rec_opts *o, const struct names *n, const char *preload,
                      const struct sigstate *saved, int report_fd)
{
    sigaction(SIGINT, &saved->intr, NULL);
    sigaction(SIGQUIT, &saved->quit, NULL);
    sigaction(SIGCHLD, &saved->chld, NULL);
    sigprocmask(SIG_SETMASK, &saved->mask, NULL);

    /* The file check is made here, where the pid that %p stands for is known. */
    char *main_file = expand_pid(n->abs, (long)getpid());
    if (!main_file) {
        hp_child_report(report_fd, CHILD_ENV, ENOMEM);
        _exit(HP_EXIT_USAGE);
    }
    /* -f replaces a recording (or another regular file), never a device, pipe or directory, nor a database: the
     * check every verb makes of its output, which says why in its own line (by the name as given). */
    char *shown = expand_pid(n->shown, (long)getpid());
    if (hp_check_output(VERB, shown ? shown : main_file, o->force, HP_K_RECORDING)) {
        hp_child_report(report_fd, CHILD_REFUSED, 0);
        _exit(HP_EXIT_USAGE);
    }
    struct stat st;
    if (lstat(main_file, &st) == 0) {
        if (!o->force) {
            hp_child_report(report_fd, CHILD_EXISTS, 0);
            _exit(HP_EXIT_USAGE);
        }
        if (unlink(main_file) != 0) {
            hp_child_report(report_fd, CHILD_UNLINK, errno);
            _exit(HP_EXIT_USAGE);
        }
    }
    /* Created once here and removed, so a path that cannot be created (a read-only or special file system) is
     * said before the program runs, not guessed at after. */
    int probe = open(main_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (probe < 0) {
        hp_child_report(report_fd, CHILD_CREATE, errno);
        _exit(HP_EXIT_USAGE);
    }
    close(probe);
    unlink(main_file);

    if (hp_record_env(preload, n->abs) || (o->sample[0] && setenv("HAKMEM_SAMPLE", o->sample, 1)) ||
        (o->stack_depth >= 0 && set_env_num("HAKMEM_STACK_DEPTH", o->stack_depth)) ||
        (o->snapshot_ms >= 0 && set_env_num("HAKMEM_SNAPSHOT_MS", o->snapshot_ms)) ||
        ((o->delay > 0 || o->duration > 0) && setenv("HAKMEM_RECORD_SIGNAL", "USR2", 1)) ||
        (o->delay > 0 && setenv("HAKMEM_RECORD_PAUSED", "1", 1))) {
        hp_child_report(report_fd, CHILD_ENV, errno);
        _exit(HP_EXIT_USAGE);
    }
    execvp(o->cmd[0], o->cmd);
    int err = errno;
    hp_child_report(report_fd, CHILD_EXEC, err);
    _exit(err == ENOENT ? 127 : 126);
}

static void timespec_add(struct timespec *t, double secs)
{
    double whole = floor(secs);
    t->tv_sec += (time_t)whole;
    t->tv_nsec += (long)((secs - whole) * 1e9);
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* Waits for the child with SIGCHLD, SIGTERM and SIGHUP blocked and taken synchronously: no handler, no polling.
 * The timed actions (open the recording window at --delay, close it --duration later, SIGTERM at --stop-after)
 * are the timeouts of sigtimedwait. *stopped is set when the child was sent SIGTERM by --stop-after. */
enum { ACT_OPEN, ACT_CLOSE, ACT_STOP, NACTS };
static int wait_child(pid_t pid, const sigset_t *waitset, const struct rec_opts *o, int *status, int *stopped)
{
    struct timespec start, at[NACTS];
    double when[NACTS] = {o->delay > 0 ? o->delay : -1, o->duration > 0 ? o->delay + o->duration : -1,
                          o->stop_after > 0 ? o->stop_after : -1};
    int done[NACTS];
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < NACTS; i++) {
        at[i] = start;
        if (when[i] >= 0)
            timespec_add(&at[i], when[i]);
        done[i] = when[i] < 0;
    }
    *stopped = 0;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
        struct timespec now, left, *timeout = NULL;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int acted = 0;
        for (int i = 0; i < NACTS; i++) {
            if (done[i])
                continue;
            left.tv_sec = at[i].tv_sec - now.tv_sec;
            left.tv_nsec = at[i].tv_nsec - now.tv_nsec;
            if (left.tv_nsec < 0) {
                left.tv_sec--;
                left.tv_nsec += 1000000000L;
            }
            if (left.tv_sec < 0) {
                kill(pid, i == ACT_STOP ? SIGTERM : SIGUSR2);
                done[i] = 1;
                if (i == ACT_STOP)
                    *stopped = 1;
                acted = 1;
            }
        }
        if (acted)
            continue;
        /* The nearest pending action is the timeout. */
        for (int i = 0; i < NACTS; i++) {
            if (done[i])
                continue;
            struct timespec l = {at[i].tv_sec - now.tv_sec, at[i].tv_nsec - now.tv_nsec};
            if (l.tv_nsec < 0) {
                l.tv_sec--;
                l.tv_nsec += 1000000000L;
            }
            if (!timeout || l.tv_sec < left.tv_sec || (l.tv_sec == left.tv_sec && l.tv_nsec < left.tv_nsec)) {
                left = l;
                timeout = &left;
            }
        }
        int sig = timeout ? sigtimedwait(waitset, NULL, timeout) : sigwaitinfo(waitset, NULL);
        /* A termination request for hakprof is meant for the program it runs; hakprof follows once the program
         * is gone (and re-raises the signal if it killed the program). */
        if (sig == SIGTERM || sig == SIGHUP)
            kill(pid, sig);
        /* SIGCHLD, a timeout (EAGAIN) or EINTR: look at the child again. */
    }
}

/* ---- The summary ------------------------------------------------------------------------------------------------- */

static void fmt_count(uint64_t v, char *buf, size_t len)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    size_t j = 0;
    for (int i = 0; i < n && j + 1 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0 && j + 2 < len)
            buf[j++] = ',';
        buf[j++] = digits[i];
    }
    buf[j] = '\0';
}

static void fmt_size(uint64_t bytes, char *buf, size_t len)
{
    if (bytes < 1000)
        snprintf(buf, len, "%" PRIu64 " bytes", bytes);
    else if (bytes < 1000000)
        snprintf(buf, len, "%.1f kB", (double)bytes / 1e3);
    else if (bytes < 1000000000)
        snprintf(buf, len, "%.1f MB", (double)bytes / 1e6);
    else
        snprintf(buf, len, "%.1f GB", (double)bytes / 1e9);
}

/* One line about the main recording: read through with the trace reader, since only reading it proves it whole. */
static void summarize_main(const char *shown, const char *path, const char *cmd, double delay, int status, long pid)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (WIFSIGNALED(status)) /* ended before the library's constructor could make the file */
            hp_fail(VERB, "no recording was written: %s ended by signal %d before the recording started", cmd,
                    WTERMSIG(status));
        else
            hp_fail(VERB, "no recording was written: %s did not load libhakmem_prof.so (statically linked or "
                    "setuid?)", cmd);
        return;
    }
    char size[32];
    fmt_size((uint64_t)st.st_size, size, sizeof size);
    char err[512];
    struct hkt_reader *r = hkt_open(path, err, sizeof err);
    if (!r) {
        hp_fail(VERB, "wrote %s (%s) but it cannot be read: %s", shown, size, err);
        return;
    }
    struct hkt_record rec;
    uint64_t events = 0, lost = 0;
    int rc, exec_ended = 0;
    while ((rc = hkt_next(r, &rec)) == 1) {
        if (rec.type == HKT_REC_ALLOC || rec.type == HKT_REC_FREE)
            events++;
        else if (rec.type == HKT_REC_LOST)
            lost += rec.u.lost.events;
        else if (rec.type == HKT_REC_END)
            exec_ended = rec.u.end.reason == HKT_END_FORK_EXEC;
    }
    char nev[32], nlost[64] = "";
    fmt_count(events, nev, sizeof nev);
    if (lost) {
        char l[32];
        fmt_count(lost, l, sizeof l);
        snprintf(nlost, sizeof nlost, ", %s lost", l);
    }
    if (rc < 0) {
        /* The reader's message starts with the file name, which this line has already given. */
        const char *why = hkt_error(r);
        size_t pl = strlen(path);
        if (strncmp(why, path, pl) == 0 && strncmp(why + pl, ": ", 2) == 0)
            why += pl + 2;
        note("wrote %s (%s, %s events%s, damaged: %s; the events before it are usable)", shown, size,
                nev, nlost, why);
    } else if (!hkt_complete(r)) {
        /* No END chunk: the process was killed (SIGKILL), left through _exit (dash does), or is still running. */
        note("wrote %s (%s, %s events%s, cut short: the process did not end normally, so the recording has no "
             "end mark)", shown, size, nev, nlost);
    } else if (!events && delay > 0) {
        note("wrote %s (%s, no events, complete: %s ended before --delay %g s opened the recording window)", shown,
             size, cmd, delay);
    } else {
        note("wrote %s (%s, %s events%s, complete)", shown, size, nev, nlost);
    }
    hkt_close(r);
    /* env X=1 prog, sh -c 'exec prog', a wrapper script: the program the user means is the one exec'd last */
    /* the images after the first are PATH.<pid>, PATH.<pid>.1, ...: the one that began last */
    char image[PATH_MAX + 48];
    if (exec_ended && hp_latest_recording(path, 0, 0, pid, image, sizeof image)) {
        const char *suffix = image + strlen(path); /* ".<pid>" or ".<pid>.N", shown as the user named the file */
        note("%s ended at exec: the program it became recorded %s%s (hakprof report %s%s)", shown, shown, suffix,
             shown, suffix);
    } else if (exec_ended) {
        note("%s ended at exec; the program it became left no recording (statically linked, or an exec that "
             "failed)", shown);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One line naming the other processes' recordings written during this run (files of earlier runs that match the
 * pattern are left out by their age). */
static void summarize_children(const struct names *n, const char *main_path, const struct timespec *start)
{
    char *dir_slash = strrchr(n->child_pattern, '/');
    const char *pat = dir_slash ? dir_slash + 1 : n->child_pattern;
    if (strstr(n->dir, "%p") || (dir_slash && memmem(n->child_pattern, (size_t)(dir_slash - n->child_pattern),
                                                     "%p", 2)))
        return; /* a %p in the directory part: no single directory to look in */
    DIR *d = opendir(n->dir);
    if (!d)
        return;
    const char *main_base = base_name(main_path);
    char **found = NULL;
    size_t nfound = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, main_base) == 0 || !match_pid_pattern(e->d_name, pat))
            continue;
        struct stat st;
        int dfd = dirfd(d);
        /* File timestamps lag the clock by up to a tick: a second of slack keeps this run's files in. */
        if (fstatat(dfd, e->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode) || st.st_mtim.tv_sec < start->tv_sec - 1)
            continue;
        if (nfound == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(found, cap * sizeof *found);
            if (!grown)
                break;
            found = grown;
        }
        if (!(found[nfound] = strdup(e->d_name)))
            break;
        nfound++;
    }
    closedir(d);
    if (nfound) {
        qsort(found, nfound, sizeof *found, cmp_str);
        char line[1024];
        size_t len = 0;
        size_t dirlen = dir_slash ? (size_t)(dir_slash - n->child_pattern) + 1 : 0;
        for (size_t i = 0; i < nfound && i < HP_MAX_CHILDREN_LISTED; i++) {
            int w = snprintf(line + len, sizeof line - len, "%s%.*s%s", i ? ", " : "", (int)dirlen,
                             n->child_pattern, found[i]);
            if (w < 0 || (size_t)w >= sizeof line - len)
                break;
            len += (size_t)w;
        }
        if (nfound > HP_MAX_CHILDREN_LISTED && len < sizeof line)
            snprintf(line + len, sizeof line - len, " and %zu more", nfound - HP_MAX_CHILDREN_LISTED);
        note("%zu child recording%s: %s", nfound, nfound == 1 ? "" : "s", line);
    }
    for (size_t i = 0; i < nfound; i++)
        free(found[i]);
    free(found);
}

/* Ends hakprof the way the program ended, so whoever waits for hakprof (a shell, make, a CI runner) sees the same
 * death. The core limit goes to 0 first: the program may have dumped core, a second core from hakprof would only
 * hide it. */
static void die_by_signal(int sig)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_CORE, &rl) == 0) {
        rl.rlim_cur = 0;
        setrlimit(RLIMIT_CORE, &rl);
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    fflush(NULL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    raise(sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    /* Only reached for a signal whose default action does not terminate: report it the shell's way. */
    exit(128 + sig);
}

/* One run of CMD writing o->output: its summary, and the exit status hakprof returns for it (a program killed
 * by a signal takes hakprof with it, after the summary). */
static int record_once(const struct rec_opts *o, const char *preload)
{
    struct names n;
    if (!make_names(o, &n)) {
        free_names(&n);
        return HP_EXIT_USAGE;
    }
    struct stat dst;
    if (!strstr(n.dir, "%p") && stat(n.dir, &dst) == 0 && !S_ISDIR(dst.st_mode)) {
        hp_fail(VERB, "cannot write a recording in %s: %s", n.dir, strerror(ENOTDIR));
        free_names(&n);
        return HP_EXIT_USAGE;
    }
    if (!strstr(n.dir, "%p") && access(n.dir, W_OK | X_OK) != 0) {
        hp_fail(VERB, "cannot write a recording in %s: %s", n.dir, strerror(errno));
        free_names(&n);
        return HP_EXIT_USAGE;
    }

    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        free_names(&n);
        return hp_fail(VERB, "pipe: %s", strerror(errno));
    }

    /* Like time(1): the terminal's SIGINT and SIGQUIT reach the program too, and the program decides; hakprof
     * must outlive it to summarize. SIGCHLD, SIGTERM and SIGHUP are taken with sigwaitinfo. */
    struct sigstate saved;
    struct sigaction ign, dfl;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    dfl = ign;
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &ign, &saved.intr);
    sigaction(SIGQUIT, &ign, &saved.quit);
    /* An inherited SIG_IGN for SIGCHLD would make the kernel reap the child and lose its status. */
    sigaction(SIGCHLD, &dfl, &saved.chld);
    sigset_t waitset;
    sigemptyset(&waitset);
    sigaddset(&waitset, SIGCHLD);
    sigaddset(&waitset, SIGTERM);
    sigaddset(&waitset, SIGHUP);
    sigprocmask(SIG_BLOCK, &waitset, &saved.mask);

    struct timespec start;
    clock_gettime(CLOCK_REALTIME, &start);
    fflush(NULL); /* nothing of hakprof's buffered output may be written twice by the child */
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        free_names(&n);
        return hp_fail(VERB, "fork: %s", strerror(err));
    }
    if (pid == 0) {
        close(pfd[0]);
        run_child(o, &n, preload, &saved, pfd[1]);
    }
    close(pfd[1]);
    struct hp_child_report rep = {CHILD_OK, 0};
    if (!hp_child_read_report(pfd[0], &rep))
        rep.what = CHILD_OK;

    int status = 0, stopped = 0;
    if (wait_child(pid, &waitset, o, &status, &stopped) != 0) {
        int err = errno;
        free_names(&n);
        return hp_fail(VERB, "waiting for %s: %s", o->cmd[0], strerror(err));
    }
    char *main_abs = expand_pid(n.abs, (long)pid);
    char *main_shown = expand_pid(n.shown, (long)pid);
    int result = HP_EXIT_USAGE;
    switch (rep.what) {
    case CHILD_EXISTS:
        hp_fail(VERB, "%s exists (use -f to replace it, or -o to choose another name)", main_shown);
        break;
    case CHILD_UNLINK:
        hp_fail(VERB, "cannot remove %s: %s", main_shown, strerror(rep.err));
        break;
    case CHILD_REFUSED: /* the child said why */
        break;
    case CHILD_CREATE:
        hp_fail(VERB, "cannot create %s: %s", main_shown, strerror(rep.err));
        break;
    case CHILD_ENV:
        hp_fail(VERB, "cannot set up the environment of %s: %s", o->cmd[0], strerror(rep.err));
        break;
    case CHILD_EXEC:
        hp_fail(VERB, "cannot run '%s': %s", o->cmd[0], strerror(rep.err));
        result = rep.err == ENOENT ? 127 : 126;
        break;
    default:
        if (main_abs && main_shown) {
            summarize_main(main_shown, main_abs, o->cmd[0], o->delay, status, (long)pid);
            summarize_children(&n, main_abs, &start);
        }
        if (WIFSIGNALED(status)) {
            int sig = WTERMSIG(status);
            if (stopped && sig == SIGTERM) {
                note("stopped %s after %g s (--stop-after)", o->cmd[0], o->stop_after);
                result = HP_EXIT_OK;
                break;
            }
            note("%s was killed by signal %d (%s)", o->cmd[0], sig, strsignal(sig));
            free(main_abs);
            free(main_shown);
            free_names(&n);
            die_by_signal(sig);
        }
        result = WIFEXITED(status) ? WEXITSTATUS(status) : HP_EXIT_USAGE;
        if (stopped)
            note("stopped %s after %g s (--stop-after)", o->cmd[0], o->stop_after);
        break;
    }
    free(main_abs);
    free(main_shown);
    free_names(&n);
    /* Nothing waits any more: restore the signal state for whoever called the verb. */
    sigaction(SIGINT, &saved.intr, NULL);
    sigaction(SIGQUIT, &saved.quit, NULL);
    sigaction(SIGCHLD, &saved.chld, NULL);
    sigprocmask(SIG_SETMASK, &saved.mask, NULL);
    return result;
}

/* ---- Sets of runs (--repeat) --------------------------------------------------------------------------------- */

/* The files a set writes in its directory: N.hkp, the children's N.hkp.PID, and the databases N.db hakprof ingests
 * beside them. Other files there are not the set's and are left alone. */
static int set_file(const char *name)
{
    const char *p = name;
    if (!isdigit((unsigned char)*p))
        return 0;
    while (isdigit((unsigned char)*p))
        p++;
    if (!strcmp(p, ".db"))
        return 1;
    if (strncmp(p, ".hkp", 4))
        return 0;
    p += 4;
    if (!*p)
        return 1;
    if (*p++ != '.' || !isdigit((unsigned char)*p))
        return 0;
    while (isdigit((unsigned char)*p))
        p++;
    return *p == '\0';
}

/* Runs CMD o->repeat times, recording run k into DIR/k.hkp. The runs are one after the other, never at once, so
 * they do not compete for the machine and their spread is the program's own run-to-run noise. */
static int record_set(struct rec_opts *o, const char *preload)
{
    char dir[PATH_MAX];
    if (o->output)
        snprintf(dir, sizeof dir, "%s", o->output);
    else
        snprintf(dir, sizeof dir, "%s.runs", base_name(o->cmd[0]));
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
        dir[n - 1] = '\0';
    struct stat st;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return hp_fail(VERB, "cannot create the directory %s: %s", dir, strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return hp_fail(VERB, "%s exists and is not a directory (--repeat writes a directory of runs)", dir);
    DIR *d = opendir(dir);
    if (!d)
        return hp_fail(VERB, "cannot read the directory %s: %s", dir, strerror(errno));
    struct dirent *e;
    int found = 0, rc = HP_EXIT_OK;
    char first[256] = "";
    while ((e = readdir(d)) && rc == HP_EXIT_OK) {
        if (!set_file(e->d_name))
            continue;
        if (!found++)
            snprintf(first, sizeof first, "%s", e->d_name);
        if (o->force && unlinkat(dirfd(d), e->d_name, 0) != 0)
            rc = hp_fail(VERB, "cannot remove %s/%s: %s", dir, e->d_name, strerror(errno));
    }
    closedir(d);
    if (rc != HP_EXIT_OK)
        return rc;
    if (found && !o->force)
        return hp_fail(VERB, "%s holds an earlier set (%s%s) (use -f to replace it, or -o another directory)", dir,
                       first, found > 1 ? " and more" : "");

    char path[PATH_MAX + 32];
    const char *set_output = o->output;
    for (long k = 1; k <= o->repeat; k++) {
        snprintf(path, sizeof path, "%s/%ld.hkp", dir, k);
        o->output = path;
        note("run %ld of %ld: %s", k, o->repeat, path);
        int status = record_once(o, preload);
        if (status != HP_EXIT_OK) {
            note("run %ld of %ld ended with status %d: the set in %s stops at %ld run%s", k, o->repeat, status, dir,
                 k - 1, k - 1 == 1 ? "" : "s");
            o->output = set_output;
            return status;
        }
    }
    o->output = set_output;
    note("wrote a set of %ld run%s in %s/ (compare two sets: hakprof diff BASE_DIR NEW_DIR)", o->repeat,
         o->repeat == 1 ? "" : "s", dir);
    return HP_EXIT_OK;
}

int hp_record_main(int argc, char **argv)
{
    struct rec_opts o;
    int rc;
    if (!parse_args(argc, argv, &o, &rc))
        return rc;

    char *preload = hp_preload(VERB);
    if (!preload)
        return HP_EXIT_USAGE;

    int result = o.repeat ? record_set(&o, preload) : record_once(&o, preload);
    free(preload);
    return result;
}
