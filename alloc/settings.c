/* HAKMEM_* settings: defaults and reading them once from the environment, without allocating
 * (the first malloc can come before libc has finished starting, so this reads `environ` by hand). */
#include <string.h>
#include "internal.h"

extern char **environ;

struct hak_settings hak_settings = {
    .tls_sll_cap = 256,
    .partial_scan = 8,
    .ss_cache = 64,
    .large_cache_mb = 16,
    .large_cache_bytes = (size_t)16 << 20,
    .on_error = HAK_ON_ERROR_REPORT,
    .stats = 1,
    .stats_dir = "/dev/shm",
    .stats_print = 0,
    .stats_file = NULL,
    .stack_depth = 32,
    .snapshot_ms = 100,
};

static const char *env_value(const char *name)
{
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

/* A decimal number within [lo, hi] into *out; anything else keeps the default and says so. */
static void env_uint(const char *name, uint32_t lo, uint32_t hi, uint32_t *out)
{
    const char *v = env_value(name);
    if (!v)
        return;
    uint64_t x = 0;
    const char *c = v;
    for (; *c >= '0' && *c <= '9' && x <= hi; c++)
        x = x * 10 + (uint64_t)(*c - '0');
    if (c == v || *c || x < lo || x > hi) {
        hak_report("%s=%s is not a number from %u to %u; using the default", name, v, lo, hi);
        return;
    }
    *out = (uint32_t)x;
}

void hak_settings_load(void)
{
    static const struct {
        const char *name;
        uint32_t lo, hi;
        uint32_t *field;
    } numbers[] = {
        {"HAKMEM_TLS_SLL_CAP", 0, 65536, &hak_settings.tls_sll_cap},
        /* At least 1: the scan is what finds owned slabs emptied by other threads' frees (and rotates the list). */
        {"HAKMEM_PARTIAL_SCAN", 1, 1u << 20, &hak_settings.partial_scan},
        {"HAKMEM_SS_CACHE", 0, 128, &hak_settings.ss_cache},
        {"HAKMEM_LARGE_CACHE_MB", 0, 1u << 20, &hak_settings.large_cache_mb},
        {"HAKMEM_HUGEPAGES", 0, 1, &hak_settings.hugepages},
        {"HAKMEM_STATS", 0, 1, &hak_settings.stats},
        {"HAKMEM_STATS_PRINT", 0, 1, &hak_settings.stats_print},
        {"HAKMEM_SAMPLE_SEED", 0, 0xffffffffu, &hak_settings.sample_seed},
        {"HAKMEM_STACK_DEPTH", 1, 128, &hak_settings.stack_depth},
        {"HAKMEM_SNAPSHOT_MS", 1, 3600000, &hak_settings.snapshot_ms},
        {"HAKMEM_RECORD_PAUSED", 0, 1, &hak_settings.record_paused},
        {"HAKMEM_GUARD", 0, 1, &hak_settings.guard},
        {"HAKMEM_POISON", 0, 1, &hak_settings.poison},
    };
    for (unsigned i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        env_uint(numbers[i].name, numbers[i].lo, numbers[i].hi, numbers[i].field);
    hak_settings.large_cache_bytes = (size_t)hak_settings.large_cache_mb << 20;
    const char *dir = env_value("HAKMEM_STATS_DIR");
    if (dir && *dir)
        hak_settings.stats_dir = dir; /* points into environ, which outlives the allocator's use of it */
    hak_settings.stats_file = env_value("HAKMEM_STATS_FILE");
    hak_settings.record = env_value("HAKMEM_RECORD");
    if (hak_settings.record && !*hak_settings.record)
        hak_settings.record = NULL;
    hak_settings.record_root_pid = env_value("HAKMEM_RECORD_ROOT_PID");
    hak_settings.sample = env_value("HAKMEM_SAMPLE");
    hak_settings.record_signal = env_value("HAKMEM_RECORD_SIGNAL");
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
