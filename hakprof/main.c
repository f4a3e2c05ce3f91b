/* hakprof's entry point: the table of verbs, the top-level usage and version, and dispatch to the verb named by
 * the first argument (each verb parses its own options and prints its own --help). */
#include <stdio.h>
#include <string.h>
#include "hakprof.h"

/* The project's version, as hakmem.pc.in states it; a build may pass its own with -DHP_VERSION. */
#ifndef HP_VERSION
#define HP_VERSION "0.1.0"
#endif

struct hp_verb {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
};

/* One row per verb that exists; the usage text is generated from this table so it can never list a verb that
 * is not there. */
static const struct hp_verb verbs[] = {
    {"record", hp_record_main, "run a program under libhakmem_prof.so and write a recording (.hkp)"},
    {"ingest", hp_ingest_main, "load a recording into a SQLite database"},
    {"report", hp_report_main, "print a report of a recording or its database"},
    {"top", hp_top_main, "watch a live process (ncurses), or replay a recording"},
    {"diff", hp_diff_main, "compare two recordings or databases: regressions beyond noise (exit 1)"},
    {"flame", hp_flame_main, "flame graph (SVG), folded stacks or pprof profile of allocation call stacks"},
};
#define NVERBS (sizeof verbs / sizeof verbs[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: hakprof VERB [OPTIONS] [ARGS...]\n"
                 "       hakprof help VERB      (same as hakprof VERB --help)\n"
                 "       hakprof --version\n"
                 "\n"
                 "Records how a program uses hakmem's allocator and analyzes the recordings.\n"
                 "\n"
                 "verbs:\n");
    for (size_t i = 0; i < NVERBS; i++)
        fprintf(out, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(out, "\n"
                 "exit status:\n"
                 "  0  ok\n"
                 "  1  regression found (diff)\n"
                 "  2  usage or input error\n"
                 "  hakprof record exits with the recorded program's status (see hakprof record --help).\n"
                 "\n"
                 "Documentation: docs/hakprof.md\n");
}

static const struct hp_verb *find_verb(const char *name)
{
    for (size_t i = 0; i < NVERBS; i++)
        if (strcmp(verbs[i].name, name) == 0)
            return &verbs[i];
    return NULL;
}

static int unknown_verb(const char *name)
{
    return hp_fail(NULL, "unknown command '%s' (try hakprof --help)", name);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        /* No verb is a usage error: the listing goes to stderr so a script that forgot the verb fails loudly. */
        usage(stderr);
        return HP_EXIT_USAGE;
    }
    const char *arg = argv[1];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        usage(stdout);
        return HP_EXIT_OK;
    }
    if (strcmp(arg, "--version") == 0) {
        if (argc > 2)
            return hp_fail(NULL, "--version takes no argument (got '%s')", argv[2]);
        printf("hakprof %s\n", HP_VERSION);
        return HP_EXIT_OK;
    }
    if (strcmp(arg, "help") == 0) {
        if (argc < 3) {
            usage(stdout);
            return HP_EXIT_OK;
        }
        const struct hp_verb *v = find_verb(argv[2]);
        if (!v)
            return unknown_verb(argv[2]);
        char help[] = "--help";
        char *vargv[] = {argv[2], help, NULL};
        return v->main(2, vargv);
    }
    if (arg[0] == '-')
        return hp_fail(NULL, "unknown option '%s' (try hakprof --help)", arg);
    const struct hp_verb *v = find_verb(arg);
    if (!v)
        return unknown_verb(arg);
    return v->main(argc - 1, argv + 1);
}
