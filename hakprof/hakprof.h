/* hakprof's internal face: the verbs (one file each), the symbolizer and the helpers they share. Nothing outside
 * hakprof/ includes it. Exit status of every verb: 0 ok, 1 regression found (diff), 2 usage or input error. */
#ifndef HP_HAKPROF_H
#define HP_HAKPROF_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { HP_EXIT_OK = 0, HP_EXIT_REGRESSION = 1, HP_EXIT_USAGE = 2 };

/* Verbs: argv[0] is the verb's name; each parses its own options and prints its own --help. */
int hp_record_main(int argc, char **argv);
int hp_ingest_main(int argc, char **argv);
int hp_report_main(int argc, char **argv);
int hp_top_main(int argc, char **argv);
int hp_diff_main(int argc, char **argv);
int hp_flame_main(int argc, char **argv);

/* One-line error to stderr, "hakprof VERB: message", and the usage exit status to return. */
int hp_fail(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* realloc and a copy of s (NULL copies as ""); when memory runs out they say so as "hakprof VERB: out of memory"
 * and exit with the usage status, the verb having nothing sensible left to do. */
void *hp_xrealloc(const char *verb, void *p, size_t n);
char *hp_xstrdup(const char *verb, const char *s);
/* The latest recording of process pid among the names the library gives (trace/recorder.c: PATH itself for the
 * process that owns it, then PATH.<pid> unless a %p made PATH unique, then a further .N per exec'd image or taken
 * name): base is PATH with %p expanded (has_pid: it had one); from_name: PATH itself is a candidate. The one whose
 * header names pid and began last goes to out. 1 if found. */
int hp_latest_recording(const char *base, int has_pid, int from_name, long pid, char *out, size_t len);
/* FNV-1a of a string, for the verbs' hash tables. */
size_t hp_hash_str(const char *s);
/* The value of argv[*i]: when it is one of with_value (the verb's options that take one; NULL ends the list), the
 * next argument, *i moving past it; else from a "--name=VALUE" argument. The option's name goes to opt. Returns 1
 * when there is a value, 0 when argv[*i] is not an option with one, -1 after saying that the value is missing. */
int hp_opt_value(const char *verb, int argc, char **argv, int *i, const char *const *with_value, char *opt,
                 size_t len, const char **val);

/* ---- Symbolization from the recorded module map (symbols.c) ---- */
struct hp_sym;
struct hp_frame_info {
    const char *function; /* NULL if no symbol covers the address */
    const char *file;     /* NULL without debug info */
    int line;             /* 0 without debug info */
    uint64_t offset;      /* ip - symbol start, when function is set */
};
struct hp_sym *hp_sym_new(void);
/* ip is an absolute address in a module loaded from path with load bias base. A return address points after the
 * call: pass ip - 1 for every frame but a signal frame. Strings stay valid until hp_sym_free. 1 found, 0 not. */
int hp_sym_lookup(struct hp_sym *s, const char *path, uint64_t base, uint64_t ip, struct hp_frame_info *out);
void hp_sym_free(struct hp_sym *s);
/* An entry of a recording's module map: path loaded with load bias base, covering lo..hi, from map generation
 * generation (a library unloaded and another loaded at the same place make a newer one). */
struct hp_mod {
    uint32_t generation;
    uint64_t base, lo, hi;
    char *path, *build_id; /* build_id: ingest keeps it for the modules table; top leaves it NULL */
};
/* The entry ip belonged to when its stack was recorded: of those covering it, the newest generation. Its index in
 * mods, or -1. */
int32_t hp_module_of(const struct hp_mod *mods, size_t n, uint64_t ip);
/* A recorded frame (return address ip, in module m or NULL) named as ingest stores it and top shows it: 1 with fi
 * from the symbol covering ip - 1 (the call instruction); else 0 with label "module+0xOFFSET" (from the module's
 * load bias), or "0xIP" without a module. s NULL: no symbols. */
int hp_sym_frame(struct hp_sym *s, const struct hp_mod *m, uint64_t ip, struct hp_frame_info *fi, char *label,
                 size_t len);

/* ---- Ingest (ingest.c): recording to SQLite database ---- */
/* Returns 0 when the whole recording went in, 1 when it was damaged or cut short (what was whole went in and a
 * warning says what was not), 2 on an error (message printed). force: replace an existing database. */
/* verb: the hakprof verb whose errors these are (report, diff, ... ingest a recording on the way). */
int hp_ingest_file(const char *verb, const char *recording, const char *db_path, int force);
/* The weight that turns a sample into an estimate of the allocations it stands for, for the recording's sampling
 * mode (enum hkt_sample_mode) and period (docs/sqlite-schema.md's rule; top estimates the same way). */
double hp_sample_weight(unsigned mode, uint64_t period, uint64_t size);

/* The library hakprof record preloads: beside the hakprof binary, else the installed one. NULL if neither. */
const char *hp_prof_lib_path(char *buf, size_t len);

/* ---- Starting a program to record (child.c) ---- */
/* LD_PRELOAD for the program: the library, before any value already there. NULL after saying why not. Free it. */
char *hp_preload(const char *verb);
/* In the child before exec: LD_PRELOAD, HAKMEM_RECORD (recording) and HAKMEM_RECORD_ROOT_PID (this process).
 * 0, or -1 with errno set. */
int hp_record_env(const char *preload, const char *recording);
/* What the child writes on a pipe whose write end closes at exec, when it gives up before; what: the caller's
 * code. */
struct hp_child_report {
    int what;
    int err;
};
void hp_child_report(int fd, int what, int err);
/* In the parent: reads the child's report and closes fd. 1 if there was one, 0 if the exec went through. */
int hp_child_read_report(int fd, struct hp_child_report *rep);

/* ---- Finding and opening a run's database (db.c), for every verb that reads one ---- */
/* ingest writes it as PRAGMA user_version, bumped whenever a table or view changes meaning; the readers refuse a
 * database of another version rather than misread it. */
#define HP_DB_SCHEMA_VERSION 2
struct sqlite3;
struct sqlite3_stmt;
/* What a file is, told by its first bytes; err says why when it is missing or neither. */
/* HP_K_NOT_FILE: it exists but is not a regular file (a directory, FIFO, device); HP_K_OTHER: a file of another kind */
enum hp_kind { HP_K_MISSING, HP_K_RECORDING, HP_K_DATABASE, HP_K_NOT_FILE, HP_K_OTHER };
enum hp_kind hp_file_kind(const char *path, char *err, size_t errlen);
/* 0 if the verb may write path (see util.c), else the one-line error was printed and HP_EXIT_USAGE returned. */
int hp_check_output(const char *verb, const char *path, int force, enum hp_kind writes);
/* Arms removal of the temporary file path if a signal ends hakprof; NULL disarms it. */
void hp_tmp_guard(const char *path);
/* A recording's default database: x.hkp -> x.db beside it, anything else gets .db appended. */
void hp_default_db(const char *recording, char *out, size_t len);
/* Whether db is the ingest of this very recording as it is now: 1 yes, 0 of this recording but older, -1 of
 * something else (or not a hakprof database). */
int hp_db_matches(const char *db, const char *recording);
/* input is a recording or a database (told by its first bytes). A recording's database is the one beside it
 * (x.hkp -> x.db), ingested when missing or stale, as hakprof report does; force: replace a database that holds
 * something else (a current one is never re-ingested). Fills db and returns 0, or prints "hakprof VERB: ..."
 * and returns 2. */
int hp_resolve_db(const char *verb, const char *input, int force, char *db, size_t len);
/* Opens db read-only after checking its schema version; NULL after printing why not. */
struct sqlite3 *hp_open_db(const char *verb, const char *db);
/* The newest *.hkp in the current directory into out; 0 if there is none. */
int hp_newest_hkp(char *out, size_t len);
/* Sums the rows (cls, size, k, count) of st, a query of a per-class table, into counts[cls * nk + k] (256 * nk
 * of them, zeroed first) and sizes[cls] (256); rows out of range are skipped. Returns the last sqlite3_step code. */
int hp_class_counts(struct sqlite3_stmt *st, int nk, int64_t *counts, int64_t *sizes);
/* The same for the rows (cls, same_thread_frees, cross_thread_frees) of class_totals, into same and cross (256). */
int hp_class_frees(struct sqlite3_stmt *st, int64_t *same, int64_t *cross);
/* Writes s as a JSON string: RFC 8259 escapes, bytes that are not UTF-8 as U+FFFD (report.c). */
void hp_json_str(FILE *out, const char *s);
#endif
