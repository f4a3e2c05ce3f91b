/* sigaction and signal, interposed in libhakmem_prof.so: where the recorder put its own handler (termination and
 * fatal signals the program had left at their default), the program still sees the default. A program that decides
 * what to do by looking first (Python installs its KeyboardInterrupt handler only where SIGINT is at SIG_DFL) then
 * behaves as without the recorder; one that installs a handler of its own replaces the recorder's, as before. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include "writer.h"

#define EXPORT __attribute__((visibility("default")))
typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static _Atomic uint64_t hooked; /* bit sig: the handler installed is the recorder's */

static int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    static _Atomic(sigaction_fn) real;
    sigaction_fn f = atomic_load_explicit(&real, memory_order_relaxed);
    if (!f) {
        f = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
        if (!f) {
            errno = ENOSYS;
            return -1;
        }
        atomic_store_explicit(&real, f, memory_order_relaxed);
    }
    return f(sig, act, old);
}

static int is_hooked(int sig)
{
    return sig > 0 && sig < 64 && (atomic_load_explicit(&hooked, memory_order_acquire) >> sig & 1);
}

int hkt_sig_install(int sig, void (*handler)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (real_sigaction(sig, &sa, NULL) != 0)
        return -1;
    if (sig > 0 && sig < 64)
        atomic_fetch_or_explicit(&hooked, (uint64_t)1 << sig, memory_order_release);
    return 0;
}

int hkt_sig_query(int sig, struct sigaction *old)
{
    return real_sigaction(sig, NULL, old);
}

void hkt_sig_default(int sig)
{
    if (sig > 0 && sig < 64)
        atomic_fetch_and_explicit(&hooked, ~((uint64_t)1 << sig), memory_order_release);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    real_sigaction(sig, &sa, NULL);
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (!is_hooked(sig))
        return real_sigaction(sig, act, old);
    struct sigaction want; /* read the request before answering (a program passing one struct for both works too) */
    if (act) {
        want = *act;
        act = &want;
    }
    if (old) { /* the program's view: the default it left there */
        if (real_sigaction(sig, NULL, old) != 0)
            return -1;
        old->sa_handler = SIG_DFL;
        old->sa_flags = 0; /* as a never-touched signal reads (a program copying them would inherit SA_RESTART) */
        sigemptyset(&old->sa_mask);
    }
    if (!act)
        return 0;
    if (!(act->sa_flags & SA_SIGINFO) && act->sa_handler == SIG_DFL)
        return 0; /* the default again: the recorder's handler ends the recording, then does just that */
    /* A handler of the program's, or SIG_IGN: it takes over, and the recorder no longer sees this signal. */
    atomic_fetch_and_explicit(&hooked, ~((uint64_t)1 << sig), memory_order_release);
    return real_sigaction(sig, act, NULL);
}

EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
    if (handler == SIG_ERR) {
        errno = EINVAL;
        return SIG_ERR;
    }
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART; /* glibc's signal() has BSD semantics */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, sig);
    if (sigaction(sig, &sa, &old) != 0)
        return SIG_ERR;
    return old.sa_handler;
}
