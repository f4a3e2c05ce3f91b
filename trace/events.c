/* Sampled allocation and free events: what the allocator's prof hooks call. An allocation gets a stack id, a
 * place in the sampled-block table and an event in the thread's ring; the free of such a block an event naming it. */
#include <x86intrin.h>
#include "writer.h"

void hkt_record_alloc(void *p, size_t size, unsigned cls, unsigned stage, uint32_t tid)
{
    struct hkt_tls *t = &hkt_tls;
    if (!p || !hkt_recording)
        return;
    t->busy++; /* libunwind may allocate on first use: served untraced */
    struct hkt_ev ev = {
        .kind = HKT_EV_ALLOC,
        .cls = (uint8_t)cls,
        .code = (uint8_t)stage,
        .stack = hkt_stack_capture(hkt_stack_depth()),
        .tsc = __rdtsc(),
        .addr = (uint64_t)(uintptr_t)p,
        .size = size,
        .seq = ++t->seq,
    };
    struct hkt_sample s = {.addr = ev.addr, .tsc = ev.tsc, .size = size, .seq = ev.seq, .stack = ev.stack,
                           .tid = tid, .cls = cls};
    hkt_sampled_insert(&s);
    hkt_emit(&ev, tid);
    t->busy--;
}

int hkt_record_free(void *p, unsigned path, uint32_t tid)
{
    struct hkt_sample s;
    if (!hkt_sampled_remove((uint64_t)(uintptr_t)p, &s))
        return 0;
    if (!hkt_recording)
        return 1;
    uint64_t now = __rdtsc();
    struct hkt_ev ev = {
        .kind = HKT_EV_FREE,
        .cls = (uint8_t)s.cls,
        .code = (uint8_t)path,
        .stack = s.stack,
        .tsc = now,
        .addr = s.addr,
        .size = s.size,
        .seq = s.seq,
        .alloc_tid = s.tid,
        .lifetime = now > s.tsc ? now - s.tsc : 0,
    };
    hkt_tls.busy++;
    hkt_emit(&ev, tid);
    hkt_tls.busy--;
    return 1;
}
