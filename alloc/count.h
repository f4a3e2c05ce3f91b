/* Counting hooks in the allocator. The optimized build defines them to nothing, so no counter code is compiled in;
 * the prof build (HAKMEM_PROF=1) maps them onto counters/. */
#ifndef HAK_COUNT_H
#define HAK_COUNT_H
#define HAK_COUNT(name, cls) ((void)(cls))
#define HAK_COUNT_N(name, cls, n) ((void)(cls), (void)(n))
#endif
