/* hakmem's public header: the allocator's own names for the malloc API.
 * Linking or preloading libhakmem replaces malloc/free themselves; these hak_ names reach hakmem explicitly. */
#ifndef HAKMEM_H
#define HAKMEM_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAKMEM_API __attribute__((visibility("default")))

HAKMEM_API void *hak_malloc(size_t size);
HAKMEM_API void hak_free(void *ptr);
HAKMEM_API void *hak_calloc(size_t nmemb, size_t size);
HAKMEM_API void *hak_realloc(void *ptr, size_t size);
HAKMEM_API void *hak_reallocarray(void *ptr, size_t nmemb, size_t size);
HAKMEM_API int hak_posix_memalign(void **out, size_t alignment, size_t size);
HAKMEM_API void *hak_aligned_alloc(size_t alignment, size_t size);
HAKMEM_API void *hak_memalign(size_t alignment, size_t size);
HAKMEM_API void *hak_valloc(size_t size);
HAKMEM_API void *hak_pvalloc(size_t size);
HAKMEM_API size_t hak_malloc_usable_size(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
