/* dlclose, interposed in libhakmem_prof.so: code it unmaps can be replaced by other code at the same addresses, so
 * the stack caches (stacks.c) forget the frame layouts and stacks they learned, before the real call and after it
 * (a thread may learn from the closing library meanwhile). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include "writer.h"

typedef int (*dlclose_fn)(void *);

__attribute__((visibility("default"))) int dlclose(void *handle)
{
    dlclose_fn real = (dlclose_fn)dlsym(RTLD_NEXT, "dlclose");
    if (!real)
        return -1;
    hkt_stacks_unloading();
    int r = real(handle);
    hkt_stacks_unloading();
    return r;
}
