/* docs/counters.md is generated from counters/counters.def: this program writes it (--write FILE) or checks that
 * the committed file is what the definition list gives (FILE), so the glossary can never drift from the code. */
#include <string.h>
#include "check.h"
#include "../counters/counters.h"

static const char *kind_text(enum hkc_kind k)
{
    switch (k) {
    case HKC_CLASS:
        return "per size class (48 values)";
    case HKC_DEPTH:
        return "8 depth buckets";
    case HKC_GAUGE:
        return "process-wide gauge";
    default:
        return "one value";
    }
}

static size_t render(char *out, size_t cap)
{
    size_t n = 0;
    n += (size_t)snprintf(out + n, cap - n,
                          "# Counters of the instrumented build\n\n"
                          "Generated from `counters/counters.def` by `make counters-doc`; `make test` fails if this "
                          "file and the definition list disagree.\n"
                          "Every counter is exact: each thread adds to its own slot of the stats segment, exiting "
                          "threads fold into a retired block, and readers take consistent snapshots. Per-class "
                          "counters have one value per size class (16, 32, ... 131072 bytes). Small allocations of "
                          "a class are the sum of its `refill_*` stage counters (a tls_sll hit or one refill per "
                          "allocation); small frees of a class are `free_same_thread + free_cross_thread`.\n\n"
                          "| name | group | kind | meaning |\n| --- | --- | --- | --- |\n");
    char name[64];
    for (unsigned c = 0; c < HKC_NCOUNTERS && n < cap; c++)
        n += (size_t)snprintf(out + n, cap - n, "| `%s` | %s | %s | %s |\n", hkc_name(c, name, sizeof name),
                              hkc_defs[c].group, kind_text(hkc_defs[c].kind), hkc_defs[c].meaning);
    return n;
}

int main(int argc, char **argv)
{
    static char want[1 << 16], have[1 << 16];
    size_t n = render(want, sizeof want);
    if (argc == 3 && !strcmp(argv[1], "--write")) {
        FILE *f = fopen(argv[2], "w");
        if (!f || fwrite(want, 1, n, f) != n || fclose(f) != 0) {
            fprintf(stderr, "unit_counters_doc: cannot write %s\n", argv[2]);
            return 2;
        }
        return 0;
    }
    const char *path = argc == 2 ? argv[1] : "docs/counters.md";
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s (run from the repository root, or pass its path)", path);
    if (!f)
        return CHECK_DONE();
    size_t m = fread(have, 1, sizeof have - 1, f);
    fclose(f);
    CHECK(m == n && memcmp(have, want, n) == 0, "%s differs from counters/counters.def: run `make counters-doc`",
          path);
    return CHECK_DONE();
}
