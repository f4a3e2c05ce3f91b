/* HAKMEM_* settings: defaults and reading them once from the environment, without allocating
 * (the first malloc can come before libc has finished starting, so this reads `environ` by hand). */
#include <string.h>
#include "internal.h"

extern char **environ;

struct hak_settings hak_settings = {
    .tls_sll_cap = 256,
    .partial_scan = 8,
    .ss_cache = 4,
    .purge_units = 8,
    .large_cache_bytes = (size_t)16 << 20,
    .on_error = HAK_ON_ERROR_REPORT,
    .stats = 1,
    .stats_dir = "/dev/shm",
    .stats_print = 0,
    .stats_file = NULL,
};

static const char *env_value(const char *name)
{
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

/* A decimal number within [lo, hi]; anything else keeps the default and says so. */
static void env_uint(const char *name, uint64_t lo, uint64_t hi, uint64_t *out)
{
    const char *v = env_value(name);
    if (!v)
        return;
    uint64_t x = 0;
    const char *c = v;
    for (; *c >= '0' && *c <= '9' && x <= hi; c++)
        x = x * 10 + (uint64_t)(*c - '0');
    if (c == v || *c || x < lo || x > hi) {
        hak_report("%s=%s is not a number from %zu to %zu; using the default", name, v, (size_t)lo, (size_t)hi);
        return;
    }
    *out = x;
}

void hak_settings_load(void)
{
    uint64_t v;
    v = hak_settings.tls_sll_cap;
    env_uint("HAKMEM_TLS_SLL_CAP", 0, 65536, &v);
    hak_settings.tls_sll_cap = (uint32_t)v;
    v = hak_settings.partial_scan;
    env_uint("HAKMEM_PARTIAL_SCAN", 0, 1u << 20, &v);
    hak_settings.partial_scan = (uint32_t)v;
    v = hak_settings.ss_cache;
    env_uint("HAKMEM_SS_CACHE", 0, 64, &v);
    hak_settings.ss_cache = (uint32_t)v;
    v = hak_settings.purge_units;
    env_uint("HAKMEM_PURGE_UNITS", 1, 32, &v);
    hak_settings.purge_units = (uint32_t)v;
    v = hak_settings.large_cache_bytes >> 20;
    env_uint("HAKMEM_LARGE_CACHE_MB", 0, 1u << 20, &v);
    hak_settings.large_cache_bytes = (size_t)v << 20;
    v = hak_settings.stats;
    env_uint("HAKMEM_STATS", 0, 1, &v);
    hak_settings.stats = (uint32_t)v;
    v = hak_settings.stats_print;
    env_uint("HAKMEM_STATS_PRINT", 0, 1, &v);
    hak_settings.stats_print = (uint32_t)v;
    const char *dir = env_value("HAKMEM_STATS_DIR");
    if (dir && *dir)
        hak_settings.stats_dir = dir; /* points into environ, which outlives the allocator's use of it */
    hak_settings.stats_file = env_value("HAKMEM_STATS_FILE");
    const char *e = env_value("HAKMEM_ON_ERROR");
    if (e) {
        if (!strcmp(e, "report"))
            hak_settings.on_error = HAK_ON_ERROR_REPORT;
        else if (!strcmp(e, "abort"))
            hak_settings.on_error = HAK_ON_ERROR_ABORT;
        else if (!strcmp(e, "ignore"))
            hak_settings.on_error = HAK_ON_ERROR_IGNORE;
        else
            hak_report("HAKMEM_ON_ERROR=%s is not report, abort or ignore; using report", e);
    }
}
