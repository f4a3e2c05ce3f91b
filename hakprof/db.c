/* Finding and opening a run's database, for every verb that reads one: a recording's database beside it (ingested
 * when missing or stale), the schema check, and the per-size-class counts report and diff both load. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hakprof.h"

enum hp_kind hp_file_kind(const char *path, char *err, size_t errlen)
{
    /* Non-blocking: opening a FIFO for reading would otherwise wait for a writer forever. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return HP_K_MISSING;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return HP_K_MISSING;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: %s", path,
                 S_ISDIR(st.st_mode) ? "a directory, neither a hakmem recording nor a hakprof database"
                                     : "not a regular file, so neither a hakmem recording nor a hakprof database");
        close(fd);
        return HP_K_NOT_FILE;
    }
    char head[16] = {0};
    ssize_t got = read(fd, head, sizeof head);
    close(fd);
    size_t n = got > 0 ? (size_t)got : 0;
    if (n >= 8 && !memcmp(head, "HAKTRACE", 8))
        return HP_K_RECORDING;
    if (n == 16 && !memcmp(head, "SQLite format 3", 16))
        return HP_K_DATABASE;
    snprintf(err, errlen, "%s: neither a hakmem recording nor a hakprof database", path);
    return HP_K_OTHER;
}

/* x.hkp -> x.db beside it; anything else gets .db appended (also hakprof ingest's default). */
void hp_default_db(const char *recording, char *out, size_t len)
{
    size_t n = strlen(recording);
    if (n > 4 && !strcmp(recording + n - 4, ".hkp"))
        snprintf(out, len, "%.*s.db", (int)(n - 4), recording);
    else
        snprintf(out, len, "%s.db", recording);
}

/* The newest *.hkp in the current directory, for `hakprof report` and the verbs that default to it as report does. */
int hp_newest_hkp(char *out, size_t len)
{
    DIR *d = opendir(".");
    if (!d)
        return 0;
    struct dirent *e;
    struct timespec best = {0, 0};
    int found = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        struct stat st;
        if (n <= 4 || strcmp(e->d_name + n - 4, ".hkp") || stat(e->d_name, &st) || !S_ISREG(st.st_mode))
            continue;
        if (!found || st.st_mtim.tv_sec > best.tv_sec ||
            (st.st_mtim.tv_sec == best.tv_sec && st.st_mtim.tv_nsec > best.tv_nsec)) {
            best = st.st_mtim;
            snprintf(out, len, "%s", e->d_name);
            found = 1;
        }
    }
    closedir(d);
    return found;
}

/* Whether db is the ingest of this very recording as it is now: 1 yes, 0 of this recording but older, -1 of
 * something else (or not a hakprof database). */
int hp_db_matches(const char *db, const char *recording)
{
    sqlite3 *h = NULL;
    int verdict = -1;
    char abs[PATH_MAX];
    struct stat st;
    if (!realpath(recording, abs) || stat(recording, &st))
        return -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(h);
        return -1;
    }
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(h, "SELECT recording, recording_size, recording_mtime_ns FROM runs WHERE run_id = 1",
                           -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(q, 0);
        if (path && !strcmp(path, abs)) {
            int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            verdict = sqlite3_column_int64(q, 1) == (int64_t)st.st_size && sqlite3_column_int64(q, 2) == mt;
        }
    }
    sqlite3_finalize(q);
    q = NULL;
    /* Made by an ingest that did not know heap errors and leaks yet: stale, like a database of an older file. */
    if (verdict == 1 && (sqlite3_prepare_v2(h, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name"
                                               " IN ('errors', 'leaks')", -1, &q, NULL) != SQLITE_OK ||
                         sqlite3_step(q) != SQLITE_ROW || sqlite3_column_int(q, 0) != 2))
        verdict = 0;
    sqlite3_finalize(q);
    sqlite3_close(h);
    return verdict;
}

/* ---- For the other verbs (diff, flame): the same rule as hakprof report for finding a recording's database ---- */
int hp_resolve_db(const char *verb, const char *input, int force, char *db, size_t len)
{
    char err[PATH_MAX + 128];
    switch (hp_file_kind(input, err, sizeof err)) {
    case HP_K_DATABASE:
        snprintf(db, len, "%s", input);
        return HP_EXIT_OK;
    case HP_K_RECORDING: break;
    default: return hp_fail(verb, "%s", err);
    }
    hp_default_db(input, db, len);
    struct stat st;
    int rc = HP_EXIT_OK;
    if (stat(db, &st) != 0) {
        rc = hp_ingest_file(verb, input, db, 0);
    } else {
        /* unlike report's -f, force never re-ingests a database that is already this recording's, current */
        int m = hp_db_matches(db, input);
        if (m == 0 || (m < 0 && force))
            rc = hp_ingest_file(verb, input, db, 1);
        else if (m < 0)
            return hp_fail(verb, "%s exists and is not the database of %s (use -f to replace it)", db, input);
    }
    return rc == HP_EXIT_USAGE ? HP_EXIT_USAGE : HP_EXIT_OK;
}

struct sqlite3 *hp_open_db(const char *verb, const char *db)
{
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        hp_fail(verb, "%s: %s", db, h ? sqlite3_errmsg(h) : "cannot open");
        sqlite3_close(h);
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    int64_t version = -1;
    if (sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (version < 0) { /* the version could not even be read: the file is damaged (cut short, overwritten) */
        hp_fail(verb, "%s: %s (a damaged database: ingest its recording again)", db, sqlite3_errmsg(h));
        sqlite3_close(h);
        return NULL;
    }
    if (version == 0) {
        hp_fail(verb, "%s: a SQLite database, but not one hakprof wrote (no schema version)", db);
        sqlite3_close(h);
        return NULL;
    }
    if (version != HP_DB_SCHEMA_VERSION) {
        hp_fail(verb, "%s: not a hakprof database of this version (schema %lld, expected %d): ingest its "
                "recording again", db, (long long)version, HP_DB_SCHEMA_VERSION);
        sqlite3_close(h);
        return NULL;
    }
    return h;
}

/* ---- Per-size-class counts (stage_by_class, path_by_class, class_totals) ---- */
int hp_class_counts(sqlite3_stmt *st, int nk, int64_t *counts, int64_t *sizes)
{
    memset(counts, 0, 256 * (size_t)nk * sizeof *counts);
    memset(sizes, 0, 256 * sizeof *sizes);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int cls = sqlite3_column_int(st, 0), k = sqlite3_column_int(st, 2);
        if (cls < 0 || cls > 255 || k < 0 || k >= nk)
            continue;
        sizes[cls] = sqlite3_column_int64(st, 1);
        counts[(size_t)cls * (size_t)nk + (size_t)k] += sqlite3_column_int64(st, 3);
    }
    return rc;
}

int hp_class_frees(sqlite3_stmt *st, int64_t *same, int64_t *cross)
{
    memset(same, 0, 256 * sizeof *same);
    memset(cross, 0, 256 * sizeof *cross);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int cls = sqlite3_column_int(st, 0);
        if (cls < 0 || cls > 255)
            continue;
        same[cls] = sqlite3_column_int64(st, 1);
        cross[cls] = sqlite3_column_int64(st, 2);
    }
    return rc;
}
