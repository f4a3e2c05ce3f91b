/* Large spans (hakmem only): a span of 2 MiB or more is mapped in whole 2 MiB chunks, so once freed it serves a
 * later request up to its chunk boundary from the cache; transparent huge pages are asked for only under
 * HAKMEM_HUGEPAGES=1, and then only on the chunks the first request needed (the VmFlags of /proc/self/smaps show
 * the kernel's "hg" advice flag). The opt-in case runs in a child started with the setting. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testlib.h"

#define MiB ((size_t)1 << 20)

extern char **environ;

/* Whether the mapping holding addr carries the MADV_HUGEPAGE flag: 1, 0, or -1 when no mapping holds it. */
static int has_hugepage_advice(const void *addr)
{
    static char buf[1 << 20]; /* static: reading the maps must not allocate from the allocator under test */
    int fd = open("/proc/self/smaps", O_RDONLY);
    if (fd < 0)
        return -1;
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = 0;
    uintptr_t a = (uintptr_t)addr;
    int inside = 0;
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = a >= lo && a < hi;
        else if (inside && strncmp(line, "VmFlags:", 8) == 0)
            return strstr(line, " hg") != NULL;
        line = next;
    }
    return -1;
}

/* The child, under HAKMEM_HUGEPAGES=1: a 3 MiB block gets a 4 MiB span whose first chunk is advised, the second
 * (beyond the whole chunks the request needed) not. */
static int child(void)
{
    unsigned char *p = T_MALLOC(3 * MiB);
    TCHECK(p != NULL, "malloc(3 MiB) NULL");
    if (!p)
        return TL_DONE();
    memset(p, 1, 3 * MiB);
    int first = has_hugepage_advice(p), tail = has_hugepage_advice(p + 2 * MiB + 512 * 1024);
    TCHECK(first == 1, "HAKMEM_HUGEPAGES=1: the span's first chunk has no hugepage advice (%d)", first);
    TCHECK(tail == 0, "HAKMEM_HUGEPAGES=1: the tail chunk beyond the request is advised too (%d)", tail);
    T_FREE(p);
    return TL_DONE();
}

int main(int argc, char **argv)
{
    if (!getenv("HAK_EXPECT_SAFE_FREE")) {
        printf("test_large_spans: hakmem's span layout is not other allocators'; nothing to check\n");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return child();

    /* A freed 3 MiB block's span serves a request of nearly 4 MiB without a new mapping. */
    unsigned char *p = T_MALLOC(3 * MiB);
    TCHECK(p != NULL, "malloc(3 MiB) NULL");
    if (p)
        memset(p, 2, 3 * MiB);
    uintptr_t was = (uintptr_t)p; /* compared as a number: the pointer itself is dead after the free */
    T_FREE(p);
    unsigned char *q = T_MALLOC(4 * MiB - 8192);
    TCHECK((uintptr_t)q == was, "malloc(4 MiB - 8 KiB) after freeing a 3 MiB block got %p, not the cached span at %#lx",
           (void *)q, (unsigned long)was);
    TCHECK(q && T_USABLE_SIZE(q) >= 4 * MiB - 8192, "usable size %zu", q ? T_USABLE_SIZE(q) : (size_t)0);
    if (q)
        memset(q, 3, 4 * MiB - 8192);
    /* Off by default: no chunk of the span is advised. */
    int advice = q ? has_hugepage_advice(q) : -1;
    TCHECK(advice == 0, "hugepage advice without HAKMEM_HUGEPAGES (%d)", advice);
    T_FREE(q);

    struct stat st;
    if (stat("/sys/kernel/mm/transparent_hugepage", &st) != 0) {
        printf("test_large_spans: the kernel has no transparent huge pages; HAKMEM_HUGEPAGES=1 not checked\n");
        return TL_DONE();
    }
    setenv("HAKMEM_HUGEPAGES", "1", 1);
    pid_t pid;
    char *args[] = {argv[0], "child", NULL};
    int err = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, args, environ);
    TCHECK(err == 0, "posix_spawn: %s", strerror(err));
    if (err == 0) {
        int status = 0;
        TCHECK(waitpid(pid, &status, 0) == pid, "waitpid");
        TCHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the HAKMEM_HUGEPAGES=1 child failed (status %#x)",
               status);
    }
    return TL_DONE();
}
