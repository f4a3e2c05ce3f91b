/* The allocator's only contact with the kernel's memory calls: aligned mappings, unmapping and purging.
 * Every mapping hakmem makes goes through here. */
#include <errno.h>
#include <sys/mman.h>
#include "internal.h"

/* Maps size bytes aligned to align (a power of two >= page) by over-mapping and trimming both ends. */
void *hak_os_map_aligned(size_t size, size_t align)
{
    if (size > SIZE_MAX / 2 - align) {
        errno = ENOMEM;
        return NULL;
    }
    size_t span = size + align - HAK_PAGE;
    void *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        errno = ENOMEM;
        return NULL;
    }
    HAK_COUNT(OS_MMAP, 0);
    HAK_COUNT_N(OS_MMAP_BYTES, 0, span);
    uintptr_t start = (uintptr_t)m;
    uintptr_t aligned = (start + align - 1) & ~(uintptr_t)(align - 1);
    if (aligned > start)
        hak_os_unmap(m, aligned - start);
    uintptr_t end = start + span, want_end = aligned + size;
    if (end > want_end)
        hak_os_unmap((void *)want_end, end - want_end);
    return (void *)aligned;
}

/* With HAKMEM_HUGEPAGES=1, the whole chunks of a large span ask for transparent huge pages (THP in "madvise"
 * mode): one page fault and one TLB entry per 2 MiB instead of 512. Off by default, as in glibc, jemalloc, mimalloc
 * and tcmalloc: where THP's defrag setting is "madvise" (Debian's default), such a fault compacts memory first when
 * no huge page is free, and on a machine whose memory has been churned bench_large swung between 30k and 76k
 * operations per second from run to run (59k-67k without). Best effort; failure is harmless. */
void hak_os_hugepages(void *p, size_t size)
{
    if (hak_settings.hugepages && size >= HAK_CHUNK)
        madvise(p, size & ~HAK_CHUNK_MASK, MADV_HUGEPAGE);
}

void hak_os_unmap(void *p, size_t size)
{
    HAK_COUNT(OS_MUNMAP, 0);
    HAK_COUNT_N(OS_MUNMAP_BYTES, 0, size);
    munmap(p, size);
}

/* MADV_DONTNEED drops the pages at once (RSS falls now, and they read back as zero), unlike the lazy MADV_FREE. */
void hak_os_purge(void *p, size_t size)
{
    HAK_COUNT(OS_MADVISE, 0);
    HAK_COUNT_N(OS_MADVISE_BYTES, 0, size);
    madvise(p, size, MADV_DONTNEED);
}
