/* Run sets for hakprof diff and flame: one argument names a recording, a database, a directory of recordings (what
 * hakprof record --repeat writes) or a glob pattern; each member is resolved to its database, ingesting if needed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "compare.h"
#include "hakprof.h"

static int hp_has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

/* Natural order, so run 10 comes after run 9 and the set reads in the order it was recorded. */
static int hp_cmp_natural(const void *a, const void *b)
{
    return strverscmp(*(char *const *)a, *(char *const *)b);
}

static int hp_push(char ***v, int *n, int *cap, const char *s)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 8;
        char **g = realloc(*v, (size_t)c * sizeof **v);
        if (!g)
            return -1;
        *v = g;
        *cap = c;
    }
    if (!((*v)[*n] = strdup(s)))
        return -1;
    (*n)++;
    return 0;
}

/* Every regular file of dir whose name ends in suf, as dir/name. */
static int hp_scan_dir(const char *dir, const char *suf, char ***v, int *n, int *cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    char path[PATH_MAX];
    size_t dl = strlen(dir);
    int slash = dl && dir[dl - 1] == '/';
    while ((e = readdir(d))) {
        struct stat st;
        if (!hp_has_suffix(e->d_name, suf))
            continue;
        snprintf(path, sizeof path, "%s%s%s", dir, slash ? "" : "/", e->d_name);
        if (stat(path, &st) || !S_ISREG(st.st_mode))
            continue;
        if (hp_push(v, n, cap, path)) {
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    return 0;
}

void hp_runset_free(struct hp_runset *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->inputs[i]);
        free(s->dbs ? s->dbs[i] : NULL);
    }
    free(s->inputs);
    free(s->dbs);
    free(s->label);
    memset(s, 0, sizeof *s);
}

int hp_runset_load(const char *verb, const char *spec, int force, struct hp_runset *out)
{
    memset(out, 0, sizeof *out);
    int cap = 0;
    struct stat st;
    if (!(out->label = strdup(spec)))
        return hp_fail(verb, "out of memory");
    if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (hp_scan_dir(spec, ".hkp", &out->inputs, &out->n, &cap) ||
            (out->n == 0 && hp_scan_dir(spec, ".db", &out->inputs, &out->n, &cap))) {
            int err = errno;
            hp_runset_free(out);
            return hp_fail(verb, "%s: %s", spec, strerror(err));
        }
        if (out->n == 0) {
            hp_runset_free(out);
            return hp_fail(verb, "%s: no recording (*.hkp) or database (*.db) in this directory", spec);
        }
    } else if (strpbrk(spec, "*?[") && stat(spec, &st) != 0) {
        glob_t g;
        int rc = glob(spec, 0, NULL, &g);
        if (rc == GLOB_NOMATCH) {
            hp_runset_free(out);
            return hp_fail(verb, "%s: no file matches", spec);
        }
        if (rc != 0) {
            hp_runset_free(out);
            return hp_fail(verb, "%s: cannot expand the pattern", spec);
        }
        for (size_t i = 0; i < g.gl_pathc; i++) {
            /* A pattern like 'base-*' also matches the databases ingested beside the recordings: a recording's
             * database stands for it already. */
            char db[PATH_MAX + 8];
            const char *p = g.gl_pathv[i];
            if (hp_has_suffix(p, ".db")) {
                snprintf(db, sizeof db, "%.*s.hkp", (int)(strlen(p) - 3), p);
                int dup = 0;
                for (size_t j = 0; j < g.gl_pathc; j++)
                    dup |= !strcmp(g.gl_pathv[j], db);
                if (dup)
                    continue;
            }
            if (stat(p, &st) || !S_ISREG(st.st_mode))
                continue;
            if (hp_push(&out->inputs, &out->n, &cap, p)) {
                globfree(&g);
                hp_runset_free(out);
                return hp_fail(verb, "out of memory");
            }
        }
        globfree(&g);
        if (out->n == 0) {
            hp_runset_free(out);
            return hp_fail(verb, "%s: no regular file matches", spec);
        }
    } else {
        if (hp_push(&out->inputs, &out->n, &cap, spec)) {
            hp_runset_free(out);
            return hp_fail(verb, "out of memory");
        }
    }
    qsort(out->inputs, (size_t)out->n, sizeof *out->inputs, hp_cmp_natural);
    if (!(out->dbs = calloc((size_t)out->n, sizeof *out->dbs))) {
        hp_runset_free(out);
        return hp_fail(verb, "out of memory");
    }
    for (int i = 0; i < out->n; i++) {
        char db[PATH_MAX + 8];
        if (hp_resolve_db(verb, out->inputs[i], force, db, sizeof db) != HP_EXIT_OK ||
            !(out->dbs[i] = strdup(db))) {
            hp_runset_free(out);
            return HP_EXIT_USAGE;
        }
    }
    return HP_EXIT_OK;
}
