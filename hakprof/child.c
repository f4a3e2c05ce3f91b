/* Starting a program under the recording library, for hakprof record and top: the LD_PRELOAD value, the recording
 * environment the child sets, and the pipe on which it reports a set-up or exec that failed. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "hakprof.h"

char *hp_preload(const char *verb)
{
    char lib[PATH_MAX + 64];
    if (!hp_prof_lib_path(lib, sizeof lib)) {
        hp_fail(verb, "libhakmem_prof.so not found (looked for %s; run make, or make install)", lib);
        return NULL;
    }
    /* ld.so splits LD_PRELOAD at spaces and colons and has no quoting. */
    if (strpbrk(lib, " :")) {
        hp_fail(verb, "cannot preload %s: LD_PRELOAD cannot hold a path with a space or colon", lib);
        return NULL;
    }
    const char *old = getenv("LD_PRELOAD");
    char *preload = malloc(strlen(lib) + (old ? strlen(old) : 0) + 2);
    if (!preload) {
        hp_fail(verb, "out of memory");
        return NULL;
    }
    if (old && *old)
        sprintf(preload, "%s:%s", lib, old);
    else
        strcpy(preload, lib);
    return preload;
}

int hp_record_env(const char *preload, const char *recording)
{
    char root[24];
    snprintf(root, sizeof root, "%ld", (long)getpid());
    if (setenv("LD_PRELOAD", preload, 1) || setenv("HAKMEM_RECORD", recording, 1) ||
        setenv("HAKMEM_RECORD_ROOT_PID", root, 1))
        return -1;
    return 0;
}

void hp_child_report(int fd, int what, int err)
{
    struct hp_child_report r = {what, err};
    ssize_t w = write(fd, &r, sizeof r);
    (void)w; /* nothing better to do: the parent sees a child that exited before exec either way */
}

int hp_child_read_report(int fd, struct hp_child_report *rep)
{
    ssize_t got;
    do
        got = read(fd, rep, sizeof *rep);
    while (got < 0 && errno == EINTR);
    close(fd);
    return got == (ssize_t)sizeof *rep;
}
