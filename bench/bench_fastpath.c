/* bench_fastpath.c - the fast-path loop measured with callgrind: N times malloc(32..95) then free, one thread.
 * Instructions per pair = (Ir(2N) - Ir(N)) / N, which cancels start-up and exit costs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_fastpath N\n");
        return 2;
    }
    uint64_t n = strtoull(argv[1], NULL, 10);
    void *volatile sink;
    for (uint64_t i = 0; i < n; i++) {
        void *p = malloc(32 + (i & 63));
        sink = p;
        free(p);
    }
    (void)sink;
    return 0;
}
