/* Helpers every hakprof verb shares: the one-line error convention, allocation that ends the verb when memory runs
 * out, string hashing, options with values, output paths (what -f may replace, temporary files removed on a
 * signal), and finding libhakmem_prof.so, the library hakprof record preloads. */
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hakprof.h"
#include "../trace/trace.h"

/* Where `make install` puts the library; a build tree's hakprof finds its own copy beside it first. */
#ifndef HP_LIBDIR
#define HP_LIBDIR "/usr/local/lib"
#endif

#define HP_PROF_LIB "libhakmem_prof.so"

int hp_fail(const char *verb, const char *fmt, ...)
{
    va_list ap;
    /* Assembled first so the line reaches stderr in one write, not interleaved with the program's own output. */
    char line[1024];
    int n = verb ? snprintf(line, sizeof line, "hakprof %s: ", verb) : snprintf(line, sizeof line, "hakprof: ");
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
    return HP_EXIT_USAGE;
}

void *hp_xrealloc(const char *verb, void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        hp_fail(verb, "out of memory");
        exit(HP_EXIT_USAGE);
    }
    return q;
}

char *hp_xstrdup(const char *verb, const char *s)
{
    if (!s)
        s = "";
    size_t n = strlen(s) + 1;
    return memcpy(hp_xrealloc(verb, NULL, n), s, n);
}

size_t hp_hash_str(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int hp_opt_value(const char *verb, int argc, char **argv, int *i, const char *const *with_value, char *opt,
                 size_t len, const char **val)
{
    const char *a = argv[*i], *eq = strchr(a, '=');
    int takes_value = 0;
    for (; *with_value && !takes_value; with_value++)
        takes_value = !strcmp(a, *with_value);
    if (takes_value) {
        if (++*i >= argc) {
            hp_fail(verb, "%s needs a value", a);
            return -1;
        }
        snprintf(opt, len, "%s", a);
        *val = argv[*i];
        return 1;
    }
    if (!strncmp(a, "--", 2) && eq) {
        snprintf(opt, len, "%.*s", (int)(eq - a), a);
        *val = eq + 1;
        return 1;
    }
    return 0;
}

/* The directory of the running hakprof binary, so a build tree's hakprof pairs with the library built with it
 * rather than an older installed one. */
static int self_dir(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0 || (size_t)n >= len - 1)
        return 0;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    return 1;
}

/* When neither candidate exists the function returns NULL and leaves in buf the places it looked ("A or B"), so
 * the caller's error message can name them without knowing the search rule. */
const char *hp_prof_lib_path(char *buf, size_t len)
{
    char dir[PATH_MAX], beside[PATH_MAX + sizeof HP_PROF_LIB + 1];
    int have_dir = self_dir(dir, sizeof dir);
    if (have_dir) {
        snprintf(beside, sizeof beside, "%s/%s", dir, HP_PROF_LIB);
        if (access(beside, R_OK) == 0) {
            if (strlen(beside) >= len)
                return NULL;
            memcpy(buf, beside, strlen(beside) + 1);
            return buf;
        }
    }
    const char *installed = HP_LIBDIR "/" HP_PROF_LIB;
    if (access(installed, R_OK) == 0 && strlen(installed) < len) {
        memcpy(buf, installed, strlen(installed) + 1);
        return buf;
    }
    if (len > 0) {
        if (have_dir)
            snprintf(buf, len, "%s or %s", beside, installed);
        else
            snprintf(buf, len, "%s", installed);
    }
    return NULL;
}

/* An output path a verb is about to write: a path that exists must be a regular file (-f once replaced a device
 * node), and -f replaces a recording or a database only with a file of the same kind (writes: HP_K_RECORDING,
 * HP_K_DATABASE, or HP_K_OTHER for anything else), so no verb turns a recording into a database or a graph.
 * Whether an existing file may be replaced at all (without -f) is the caller's to say. */
int hp_check_output(const char *verb, const char *path, int force, enum hp_kind writes)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    if (!S_ISREG(st.st_mode))
        return hp_fail(verb, "%s exists and is not a regular file (%s): give the path of a file", path,
                       S_ISDIR(st.st_mode) ? "a directory" : "a device, pipe or socket");
    if (!force)
        return 0;
    char err[PATH_MAX + 64];
    enum hp_kind k = hp_file_kind(path, err, sizeof err);
    if ((k == HP_K_RECORDING || k == HP_K_DATABASE) && k != writes)
        return hp_fail(verb, "%s is a %s, which -f does not replace with %s: choose another output path", path,
                       k == HP_K_RECORDING ? "hakmem recording" : "hakprof database",
                       writes == HP_K_RECORDING ? "a recording" : writes == HP_K_DATABASE ? "a database" : "this output");
    return 0;
}

/* The temporary file being written, removed if SIGINT, SIGTERM or SIGHUP ends hakprof before it is renamed into
 * place (an interrupted ingest of a large recording left hundreds of MB behind). */
static char tmp_path[PATH_MAX + 64];
static volatile sig_atomic_t tmp_armed;
static const int tmp_sigs[] = {SIGINT, SIGTERM, SIGHUP};
static struct sigaction tmp_saved[3];
static int tmp_installed;

static void tmp_on_signal(int sig)
{
    if (tmp_armed)
        unlink(tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Arms the removal (path) or disarms it (NULL), putting back the handlers that were there before. */
void hp_tmp_guard(const char *path)
{
    tmp_armed = 0;
    if (tmp_installed) {
        for (unsigned i = 0; i < 3; i++)
            sigaction(tmp_sigs[i], &tmp_saved[i], NULL);
        tmp_installed = 0;
    }
    if (!path)
        return;
    snprintf(tmp_path, sizeof tmp_path, "%s", path);
    tmp_armed = 1;
    for (unsigned i = 0; i < 3; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = tmp_on_signal;
        sigemptyset(&sa.sa_mask);
        if (sigaction(tmp_sigs[i], NULL, &tmp_saved[i]) != 0)
            tmp_saved[i].sa_handler = SIG_DFL;
        /* A signal the caller ignores (nohup) stays ignored. */
        if (tmp_saved[i].sa_handler != SIG_IGN)
            sigaction(tmp_sigs[i], &sa, NULL);
    }
    tmp_installed = 1;
}

static int recording_of_pid(const char *path, long pid, uint64_t *start)
{
    char err[256];
    struct hkt_reader *r = hkt_open(path, err, sizeof err);
    if (!r)
        return 0;
    struct hkt_record rec;
    int ok = hkt_next(r, &rec) == 1 && rec.type == HKT_REC_HEADER && rec.u.header.pid == pid;
    if (ok)
        *start = rec.u.header.start_realtime_ns;
    hkt_close(r);
    return ok;
}

int hp_latest_recording(const char *base, int has_pid, int from_name, long pid, char *out, size_t len)
{
    uint64_t best_start = 0;
    int found = 0;
    for (int attempt = from_name ? 0 : 1; attempt < 12; attempt++) { /* the library's 12 attempts */
        if (has_pid && attempt == 1) /* the same name as attempt 0 */
            continue;
        char cand[PATH_MAX * 2 + 48];
        int n = snprintf(cand, sizeof cand, "%s", base);
        if (attempt >= 1 && !has_pid)
            n += snprintf(cand + n, sizeof cand - (size_t)n, ".%ld", pid);
        if (attempt >= 2)
            snprintf(cand + n, sizeof cand - (size_t)n, ".%d", attempt - 1);
        uint64_t start;
        if (strlen(cand) < len && recording_of_pid(cand, pid, &start) && (!found || start >= best_start)) {
            best_start = start;
            snprintf(out, len, "%s", cand);
            found = 1;
        }
    }
    return found;
}
