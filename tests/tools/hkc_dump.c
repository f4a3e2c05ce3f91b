/* Test helper: reads a running process's hakmem stats segment, as hakprof does, and prints every value as
 * "name[index] value" lines (index only for per-class and depth counters), or the error and exit status 2. */
#include <stdio.h>
#include <stdlib.h>
#include "../../counters/counters.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: hkc_dump PID\n");
        return 2;
    }
    struct hkc_reader r;
    char err[600];
    enum hkc_open_status st = hkc_open(&r, atoi(argv[1]), NULL, err, sizeof err);
    if (st != HKC_OK) {
        fprintf(stderr, "hkc_dump: %s\n", err);
        return st == HKC_STALE ? 3 : 2;
    }
    static uint64_t v[HKC_NVALUES];
    if (hkc_read(&r, v) != 0) {
        fprintf(stderr, "hkc_dump: no consistent snapshot\n");
        return 2;
    }
    char name[64];
    for (unsigned c = 0; c < HKC_NCOUNTERS; c++) {
        hkc_name(c, name, sizeof name);
        if (hkc_defs[c].width == 1)
            printf("%s %llu\n", name, (unsigned long long)v[hkc_defs[c].first]);
        else
            for (unsigned i = 0; i < hkc_defs[c].width; i++)
                printf("%s[%u] %llu\n", name, i, (unsigned long long)v[hkc_defs[c].first + i]);
    }
    hkc_close(&r);
    return 0;
}
