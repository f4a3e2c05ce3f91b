/* Printable names of the trace enums (refill stage, free path, sampling mode, heap error kind), as docs, SQL and
 * HAKMEM_SAMPLE spell them. Linked into libhakmem_prof.so too, so nothing here allocates or keeps state. */
#include "trace.h"

static const char *const stage_names[HKT_NSTAGES] = {
    [HKT_STAGE_TLS_SLL] = "tls_sll",   [HKT_STAGE_SLAB_FREE] = "slab_free", [HKT_STAGE_REMOTE_DRAIN] = "remote_drain",
    [HKT_STAGE_PARTIAL] = "partial",   [HKT_STAGE_ADOPT] = "adopt",         [HKT_STAGE_NEW_SLAB] = "new_slab",
    [HKT_STAGE_SS_CACHE] = "ss_cache", [HKT_STAGE_SS_OS] = "ss_os",         [HKT_STAGE_LARGE] = "large",
};
static const char *const path_names[HKT_NPATHS] = {
    [HKT_PATH_TLS_SLL] = "tls_sll", [HKT_PATH_SS_LOCAL] = "ss_local", [HKT_PATH_SS_REMOTE] = "ss_remote",
    [HKT_PATH_LARGE] = "large",
};
static const char *const sample_mode_names[] = {
    [HKT_SAMPLE_OFF] = "off", [HKT_SAMPLE_ALL] = "all", [HKT_SAMPLE_COUNT] = "count", [HKT_SAMPLE_BYTES] = "bytes",
};
/* One word each, as the errors table, the report and the allocator's stderr line spell the kinds. */
static const char *const error_names[HKT_NERRORS] = {
    [HKT_ERR_DOUBLE_FREE] = "double_free", [HKT_ERR_FOREIGN] = "foreign", [HKT_ERR_INTERIOR] = "interior",
    [HKT_ERR_OVERFLOW] = "overflow",       [HKT_ERR_USE_AFTER_FREE] = "use_after_free",
};

const char *hkt_stage_name(unsigned stage)
{
    return stage < HKT_NSTAGES ? stage_names[stage] : "?";
}

const char *hkt_path_name(unsigned path)
{
    return path < HKT_NPATHS ? path_names[path] : "?";
}

const char *hkt_sample_mode_name(unsigned m)
{
    return m < sizeof sample_mode_names / sizeof sample_mode_names[0] ? sample_mode_names[m] : "?";
}

const char *hkt_error_name(unsigned kind)
{
    return kind < HKT_NERRORS && error_names[kind] ? error_names[kind] : "?";
}
