/* The exec family, interposed in libhakmem_prof.so: the recording of the image being replaced is ended (its
 * rings drained, an END chunk saying exec) before the real call, since no destructor runs across an exec. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <unistd.h>
#include "writer.h"

#define EXPORT __attribute__((visibility("default")))
typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execvpe_fn)(const char *, char *const[], char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);

static void *next(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    execve_fn real = (execve_fn)next("execve");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    hkt_before_exec();
    int r = real(path, argv, envp);
    hkt_exec_failed();
    return r;
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    execvpe_fn real = (execvpe_fn)next("execvpe");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    hkt_before_exec();
    int r = real(file, argv, envp);
    hkt_exec_failed();
    return r;
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    fexecve_fn real = (fexecve_fn)next("fexecve");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    hkt_before_exec();
    int r = real(fd, argv, envp);
    hkt_exec_failed();
    return r;
}

EXPORT int execv(const char *path, char *const argv[])
{
    return execve(path, argv, environ);
}

EXPORT int execvp(const char *file, char *const argv[])
{
    return execvpe(file, argv, environ);
}

/* The list forms: the arguments gathered into an array on the stack (as glibc does), then the vector form. */
#define GATHER(first, ap, argv, extra)                                  \
    size_t n_ = 1;                                                      \
    va_start(ap, first);                                                \
    while (va_arg(ap, char *))                                          \
        n_++;                                                           \
    va_end(ap);                                                         \
    char *argv[n_ + 1];                                                 \
    va_start(ap, first);                                                \
    argv[0] = (char *)(first);                                          \
    for (size_t i_ = 1; i_ <= n_; i_++)                                 \
        argv[i_] = va_arg(ap, char *);                                  \
    extra;                                                              \
    va_end(ap)

EXPORT int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    GATHER(arg, ap, argv, (void)0);
    return execve(path, argv, environ);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    GATHER(arg, ap, argv, (void)0);
    return execvpe(file, argv, environ);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    char **envp;
    GATHER(arg, ap, argv, envp = va_arg(ap, char **));
    return execve(path, argv, envp);
}
