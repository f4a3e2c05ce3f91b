/* Threads and processes: one-time setup, a thread's heap from first use to exit, abandoning and adopting the
 * slabs of exited threads, the orphan heap that serves a thread after its heap is gone, and fork. */
#include <string.h>
#include "internal.h"

#if defined(HAKMEM_PROF) && HAKMEM_PROF
/* The countdown starts negative, so a thread's first allocation, of any size (0 included), goes to the sampling
 * entry: the one that finds the trap set (guards, poison) keeps every later one going there too. */
__thread struct hak_heap hak_tls_heap __attribute__((tls_model("initial-exec"))) = {.sample_left = -1};
#else
__thread struct hak_heap hak_tls_heap __attribute__((tls_model("initial-exec")));
#endif

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int init_done;
static pthread_key_t heap_key;

/* Slabs left with live blocks by exited threads, a stack per class. */
static pthread_mutex_t abandon_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_slab *_Atomic abandoned[HAK_NCLASSES];

/* Serves allocations made after a thread's heap was torn down (by later TLS or key destructors), under a lock.
 * Its blocks are owned by no thread's heap, so every free of them takes the remote path. */
static pthread_mutex_t orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_heap orphan_heap;

static void heap_teardown(void *arg);

void hak_global_init(void)
{
    if (atomic_load_explicit(&init_done, memory_order_acquire))
        return;
    pthread_mutex_lock(&init_lock);
    if (!atomic_load_explicit(&init_done, memory_order_relaxed)) {
        hak_settings_load();
        HAK_ON_GLOBAL_INIT();
        pthread_key_create(&heap_key, heap_teardown);
        atomic_store_explicit(&init_done, 1, memory_order_release);
    }
    pthread_mutex_unlock(&init_lock);
}

/* The tls_sll capacity of a class: about 64 KiB of blocks, at least two, never above HAKMEM_TLS_SLL_CAP. */
uint32_t hak_tcache_cap(unsigned cls)
{
    uint32_t by_bytes = (uint32_t)(65536u / hak_class_size[cls]);
    if (by_bytes < 2)
        by_bytes = 2;
    return by_bytes < hak_settings.tls_sll_cap ? by_bytes : hak_settings.tls_sll_cap;
}

void hak_heap_init(struct hak_heap *h)
{
    hak_global_init();
    for (unsigned c = 0; c < HAK_NCLASSES; c++) {
        h->tc[c].cap = hak_tcache_cap(c);
        h->tc[c].room = (int32_t)h->tc[c].cap;
    }
    h->id = h == &orphan_heap ? (uintptr_t)h : (uintptr_t)__builtin_thread_pointer();
    h->state = HAK_HEAP_LIVE;
    if (h != &orphan_heap) {
        HAK_ON_THREAD_START(h);
        pthread_setspecific(heap_key, h); /* arms heap_teardown for this thread */
    }
}

/* Thread exit: cached blocks go back to their slabs; empty slabs go back to their SuperSlabs; slabs with live
 * blocks are abandoned for other threads to adopt. Frees into them meanwhile land on their remote lists. */
static void heap_teardown(void *arg)
{
    struct hak_heap *h = arg;
    if (h != &hak_tls_heap || h->state != HAK_HEAP_LIVE)
        return;
    for (unsigned c = 0; c < HAK_NCLASSES; c++) {
        struct hak_tcache *tc = &h->tc[c];
        void *b = tc->head;
        tc->head = NULL;
        tc->room = 0;
        tc->cap = 0;
        while (b) {
            void *next = *(void **)b;
            struct hak_slab *s = hak_slab_of((uintptr_t)b);
            s -= s->head_back;
            hak_slab_local_free(h, s, b);
            b = next;
        }
    }
    for (unsigned c = 0; c < HAK_NCLASSES; c++) {
        struct hak_slab *s;
        while ((s = h->slabs[c]) != NULL) {
            hak_heap_unlink_slab(h, s);
            /* Blocks waiting on the remote list are free: if they are all the slab has out, it is empty. */
            if (HAK_USED(s) == hak_remote_count(atomic_load_explicit(hak_slab_remote(s), memory_order_acquire)))
                hak_slab_release(s);
            else
                hak_slab_abandon(s);
        }
    }
    h->state = HAK_HEAP_DEAD;
    hak_reclaim_forget(h->id); /* its slabs are abandoned now: their last frees release them */
    HAK_ON_THREAD_EXIT(h);
}

static void abandoned_remove(struct hak_slab *s) /* abandon_lock held */
{
    if (s->prev)
        s->prev->next = s->next;
    else
        atomic_store_explicit(&abandoned[s->cls], s->next, memory_order_relaxed);
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

/* Takes an empty abandoned slab off the list for release (abandon_lock held). Its state leaves ABANDONED now, under
 * the lock, so no other path (a remote free that sees the last block come back, the abandoning thread's own
 * re-check, the reclaim before a SuperSlab is mapped) can take and release it a second time. No valid free can
 * reach it any more: every block is free. */
static void abandoned_take_empty(struct hak_slab *s)
{
    abandoned_remove(s);
    HAK_RELAXED_STORE(s->state, HAK_SLAB_FREE);
}

void hak_slab_abandon(struct hak_slab *s)
{
    /* Read now: once the lock is let go another thread may adopt the slab, empty it and carve it again. */
    unsigned cls = s->cls;
    HAK_ON_SLAB_ABANDONED(s); /* before anyone can adopt it */
    pthread_mutex_lock(&abandon_lock);
    HAK_RELAXED_STORE(s->state, HAK_SLAB_ABANDONED);
    atomic_store_explicit(&s->owner, HAK_OWNER_NONE, memory_order_release);
    struct hak_slab *head = atomic_load_explicit(&abandoned[s->cls], memory_order_relaxed);
    s->prev = NULL;
    s->next = head;
    if (head)
        head->prev = s;
    atomic_store_explicit(&abandoned[s->cls], s, memory_order_relaxed);
    /* A remote free may have returned the last block while the slab still looked owned (and so did not try to
     * release it): look once more now that frees see it abandoned. The fence pairs with the push's seq_cst CAS. */
    atomic_thread_fence(memory_order_seq_cst);
    bool empty = HAK_USED(s) == hak_remote_count(atomic_load_explicit(hak_slab_remote(s), memory_order_acquire));
    if (empty)
        abandoned_take_empty(s);
    pthread_mutex_unlock(&abandon_lock);
    HAK_COUNT(SLAB_ABANDONED, cls);
    if (empty)
        hak_slab_release(s);
}

/* Makes h the owner of abandoned slab s (abandon_lock held, s already off the list), with its remote frees. */
static void claim(struct hak_heap *h, struct hak_slab *s)
{
    HAK_ON_SLAB_CLAIMED(s);
    HAK_RELAXED_STORE(s->state, HAK_SLAB_LIVE);
    atomic_store_explicit(&s->owner, h->id, memory_order_release);
}

/* Takes abandoned slabs of this class until one has room; full ones are kept (owned) so their remote frees are
 * found by later refills. Returns the slab with room, already the class's current slab, or NULL. */
struct hak_slab *hak_slab_adopt(struct hak_heap *h, unsigned cls)
{
    for (int tries = 0; tries < 4; tries++) {
        if (!atomic_load_explicit(&abandoned[cls], memory_order_relaxed))
            return NULL;
        pthread_mutex_lock(&abandon_lock);
        struct hak_slab *s = atomic_load_explicit(&abandoned[cls], memory_order_relaxed);
        if (s) {
            abandoned_remove(s);
            claim(h, s);
        }
        pthread_mutex_unlock(&abandon_lock);
        if (!s)
            return NULL;
        hak_slab_drain_remote(s);
        HAK_ON_SLAB_INHERITED(s); /* after the drain, which marked the blocks it brought back free */
        bool room = s->carved > HAK_USED(s) || s->carved < s->capacity;
        hak_heap_link_slab(h, s, room);
        if (room)
            return s;
    }
    return NULL;
}

/* A free into abandoned slab s just made its remote count reach its used count: every block is free, so the
 * slab goes back to its SuperSlab now instead of waiting for an adopter. False if someone else got to it first. */
bool hak_slab_release_if_empty(struct hak_slab *s)
{
    pthread_mutex_lock(&abandon_lock);
    bool empty = HAK_RELAXED_LOAD(s->state) == HAK_SLAB_ABANDONED &&
                 HAK_USED(s) == hak_remote_count(atomic_load_explicit(hak_slab_remote(s), memory_order_acquire));
    if (empty)
        abandoned_take_empty(s);
    pthread_mutex_unlock(&abandon_lock);
    if (!empty)
        return false;
    HAK_COUNT(SLAB_RELEASED_ON_FREE, s->cls);
    hak_slab_release(s);
    return true;
}

/* Before the allocator maps a new SuperSlab: abandoned slabs whose blocks have all been freed are released. */
void hak_abandoned_reclaim(void)
{
    pthread_mutex_lock(&abandon_lock);
    for (unsigned c = 0; c < HAK_NCLASSES; c++) {
        struct hak_slab *s = atomic_load_explicit(&abandoned[c], memory_order_relaxed);
        while (s) {
            struct hak_slab *next = s->next;
            if (HAK_USED(s) == hak_remote_count(atomic_load_explicit(hak_slab_remote(s), memory_order_acquire))) {
                abandoned_take_empty(s);
                hak_slab_release(s);
            }
            s = next;
        }
    }
    pthread_mutex_unlock(&abandon_lock);
}

void *hak_orphan_malloc(unsigned cls)
{
    pthread_mutex_lock(&orphan_lock);
    if (orphan_heap.state != HAK_HEAP_LIVE)
        hak_heap_init(&orphan_heap);
    struct hak_tcache *tc = &orphan_heap.tc[cls];
    void *b = tc->head;
    if (b) {
        tc->head = *(void **)b;
        tc->room++;
        HAK_COUNT(REFILL_TLS_SLL_HIT, cls);
    } else {
        b = hak_heap_refill(&orphan_heap, cls);
    }
    pthread_mutex_unlock(&orphan_lock);
    return b;
}

/* Fork: every lock is held across fork() in one order (orphan, abandon, SuperSlab, large) so the child finds
 * consistent lists; the child then abandons the slabs of threads that do not exist in it. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&init_lock);
    pthread_mutex_lock(&orphan_lock);
    pthread_mutex_lock(&abandon_lock);
    hak_ss_fork_prepare();
    hak_large_fork_prepare();
}

static void fork_parent(void)
{
    hak_large_fork_parent();
    hak_ss_fork_parent();
    pthread_mutex_unlock(&abandon_lock);
    pthread_mutex_unlock(&orphan_lock);
    pthread_mutex_unlock(&init_lock);
}

static void fork_child(void)
{
    hak_large_fork_child();
    hak_ss_fork_child_unlock();
    pthread_mutex_init(&abandon_lock, NULL);
    pthread_mutex_init(&orphan_lock, NULL);
    pthread_mutex_init(&init_lock, NULL);
    hak_ss_fork_child(&hak_tls_heap, &orphan_heap);
    HAK_ON_FORK_CHILD(&hak_tls_heap);
}

/* Registered from a constructor, not from inside malloc: pthread_atfork may itself allocate. */
__attribute__((constructor)) static void hak_register_fork_handlers(void)
{
    hak_global_init();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    /* prof build: the recording opens now that libc is up; its fork handlers, registered after these, prepare
     * before the allocator's and run in the child after them. */
    HAK_ON_CONSTRUCTED();
}
