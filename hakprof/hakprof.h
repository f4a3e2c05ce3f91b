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

/* ---- Ingest (ingest.c): recording to SQLite database ---- */
/* Returns 0 when the whole recording went in, 1 when it was damaged or cut short (what was whole went in and a
 * warning says what was not), 2 on an error (message printed). force: replace an existing database. */
int hp_ingest_file(const char *recording, const char *db_path, int force);

/* The library hakprof record preloads: beside the hakprof binary, else the installed one. NULL if neither. */
const char *hp_prof_lib_path(char *buf, size_t len);

/* ---- Finding and opening a run's database (report.c), for every verb that reads one ---- */
/* input is a recording or a database (told by its first bytes). A recording's database is the one beside it
 * (x.hkp -> x.db), ingested when missing or stale, as hakprof report does; force: replace a database that holds
 * something else (a current one is never re-ingested). Fills db and returns 0, or prints "hakprof VERB: ..."
 * and returns 2. */
int hp_resolve_db(const char *verb, const char *input, int force, char *db, size_t len);
/* Opens db read-only after checking its schema version; NULL after printing why not. */
struct sqlite3 *hp_open_db(const char *verb, const char *db);
/* Writes s as a JSON string: RFC 8259 escapes, bytes that are not UTF-8 as U+FFFD (report.c). */
void hp_json_str(FILE *out, const char *s);
/* The newest *.hkp in the current directory into out; 0 if there is none (report.c). */
int hp_newest_hkp(char *out, size_t len);
#endif
