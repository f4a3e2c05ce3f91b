/* Messages from inside the allocator: a small formatter that never allocates, written to fd 2 with one write(),
 * and the policy for pointers that free() must refuse. */
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>
#include "internal.h"

struct out {
    char buf[512];
    size_t len;
};

static void put(struct out *o, const char *s, size_t n)
{
    while (n-- && o->len < sizeof o->buf - 1)
        o->buf[o->len++] = *s++;
}

static void put_uint(struct out *o, uint64_t v, unsigned base)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (i--)
        put(o, &tmp[i], 1);
}

/* Supports %s %p %d %u %zu and %%: all the allocator needs. */
static void vformat(struct out *o, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(o, fmt, 1);
            continue;
        }
        fmt++;
        if (*fmt == 'z')
            fmt++;
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            const char *e = s;
            while (*e)
                e++;
            put(o, s, (size_t)(e - s));
            break;
        }
        case 'p':
            put(o, "0x", 2);
            put_uint(o, (uintptr_t)va_arg(ap, void *), 16);
            break;
        case 'd': {
            int v = va_arg(ap, int);
            if (v < 0) {
                put(o, "-", 1);
                v = -v;
            }
            put_uint(o, (uint64_t)v, 10);
            break;
        }
        case 'u':
            put_uint(o, fmt[-1] == 'z' ? va_arg(ap, size_t) : va_arg(ap, unsigned), 10);
            break;
        case '%':
            put(o, "%", 1);
            break;
        default:
            return;
        }
    }
}

size_t hak_format(char *dst, size_t room, const char *fmt, ...)
{
    struct out o = {.len = 0};
    va_list ap;
    va_start(ap, fmt);
    vformat(&o, fmt, ap);
    va_end(ap);
    size_t n = o.len < room ? o.len : (room ? room - 1 : 0);
    for (size_t i = 0; i < n; i++)
        dst[i] = o.buf[i];
    if (room)
        dst[n] = 0;
    return n;
}

void hak_report(const char *fmt, ...)
{
    struct out o = {.len = 0};
    put(&o, "hakmem: ", 8);
    va_list ap;
    va_start(ap, fmt);
    vformat(&o, fmt, ap);
    va_end(ap);
    put(&o, "\n", 1);
    ssize_t r = write(2, o.buf, o.len);
    (void)r;
}

/* The pointer is left alone (never pushed on any list), so the heap stays intact whatever it was. */
void hak_invalid_free(void *p, const char *why)
{
#if defined(HAKMEM_PROF) && HAKMEM_PROF
    hak_prof_invalid(p, why); /* with the call's stack, counted and recorded */
    return;
#endif
    static _Atomic unsigned reported;
    if (hak_settings.on_error == HAK_ON_ERROR_IGNORE)
        return;
    unsigned n = atomic_fetch_add_explicit(&reported, 1, memory_order_relaxed);
    if (n < 10)
        hak_report("free(%p): %s; the pointer is ignored", p, why);
    else if (n == 10)
        hak_report("more invalid frees follow; not reporting them");
    if (hak_settings.on_error == HAK_ON_ERROR_ABORT)
        abort();
}
