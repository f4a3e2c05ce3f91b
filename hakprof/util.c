/* Helpers every hakprof verb shares: the one-line error convention, allocation that ends the verb when memory runs
 * out, string hashing, options with values, and finding libhakmem_prof.so, the library hakprof record preloads. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "hakprof.h"

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
