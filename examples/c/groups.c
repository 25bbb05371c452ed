/*
 * groups.c: the C control API of libcgmalloc.so, linked into a program.
 *
 * Linking -lcgmalloc replaces the program's malloc with cgmalloc, and the cgm_* calls
 * control the groups it charges. This program
 *   - creates /app (memory.max 64M) with two children, /app/cache and /app/work;
 *   - fills a cache of 1 MiB blocks while attached to /app/cache (40 MiB), and registers
 *     a reclaimer (cgm_reclaimer_add) on /app/cache that frees its oldest blocks;
 *   - starts a worker thread that attaches itself to /app/work and mallocs 48 MiB in
 *     1 MiB blocks: 88 MiB in all under a 64 MiB limit, so the worker's mallocs hit the
 *     limit, and each time the reclaimer frees cache blocks and the malloc succeeds;
 *   - reads struct cgm_stat, memory.stat and memory.events of /app, and checks that no
 *     malloc failed, the reclaimer was called, and /app's usage never passed its max;
 *   - cleans up: removes the reclaimer, frees everything, destroys the groups.
 * It exits 0 when all of that held, 1 otherwise.
 *
 * Build and run from the repository root, after `cargo build --release`:
 *
 *   cc -std=c11 -Wall -Wextra -Werror -pthread -Iinclude examples/c/groups.c \
 *      -Ltarget/release -lcgmalloc -Wl,-rpath,$PWD/target/release -o /tmp/groups
 *   /tmp/groups
 */
#define _POSIX_C_SOURCE 200809L
#include <cgmalloc.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024u * 1024u)
#define CACHE_BLOCKS 40
#define WORK_BLOCKS 48

/* Stop with a message when a cgm_* call fails (they return a negative errno). */
#define CHECK(call)                                                                  \
    do {                                                                             \
        long rc_ = (call);                                                           \
        if (rc_ < 0) {                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,            \
                    cgm_strerror((int)rc_));                                         \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* The cache: a FIFO of malloc'd blocks, oldest first. */
struct cache {
    pthread_mutex_t lock;
    void *blocks[CACHE_BLOCKS];
    size_t head, count;
    /* What the reclaimer did. */
    unsigned long calls;
    size_t freed;
};

/*
 * The reclaimer: called in whichever thread hit the limit, with the bytes its charge
 * still lacks; frees the oldest blocks and returns the bytes it freed. It must not
 * block on a lock that an allocating thread could hold, hence the trylock.
 */
static size_t reclaim_cache(void *ctx, cgm_group_t group, size_t bytes_wanted)
{
    struct cache *c = ctx;
    size_t freed = 0;
    (void)group;
    if (pthread_mutex_trylock(&c->lock) != 0)
        return 0;
    c->calls++;
    while (freed < bytes_wanted && c->count > 0) {
        free(c->blocks[c->head]);
        c->blocks[c->head] = NULL;
        c->head = (c->head + 1) % CACHE_BLOCKS;
        c->count--;
        freed += MIB;
    }
    c->freed += freed;
    pthread_mutex_unlock(&c->lock);
    return freed;
}

struct work {
    cgm_group_t group, app;
    void *blocks[WORK_BLOCKS];
    int failed;
    uint64_t highest; /* the highest memory.current of /app seen after a malloc */
};

static void *worker(void *arg)
{
    struct work *w = arg;
    char path[64];
    /* A thread starts in its creator's group (here /app/cache); move to /app/work. */
    CHECK(cgm_group_path(cgm_thread_group(), path, sizeof path));
    printf("worker: started in %s\n", path);
    CHECK(cgm_thread_attach(w->group));
    CHECK(cgm_group_path(cgm_thread_group(), path, sizeof path));
    printf("worker: attached to %s\n", path);
    for (int i = 0; i < WORK_BLOCKS; i++) {
        w->blocks[i] = malloc(MIB);
        if (w->blocks[i] == NULL) {
            w->failed++;
            continue;
        }
        memset(w->blocks[i], i, MIB);
        struct cgm_stat st;
        CHECK(cgm_group_stat(w->app, &st));
        if (st.current > w->highest)
            w->highest = st.current;
    }
    return NULL;
}

/* The value of `key` in a "key value" per line interface file. */
static unsigned long long field(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (strncmp(l, key, n) == 0 && l[n] == ' ')
            return strtoull(l + n + 1, NULL, 10);
    return 0;
}

int main(void)
{
    int ok = 1;
    cgm_group_t app, cache_group, work_group;
    printf("cgmalloc %s\n", cgm_version());
    CHECK(cgm_group_create("/app", &app));
    CHECK(cgm_group_create("/app/cache", &cache_group));
    CHECK(cgm_group_create("/app/work", &work_group));
    CHECK(cgm_group_write(app, "memory.max", "64M"));

    static struct cache cache = {.lock = PTHREAD_MUTEX_INITIALIZER};
    uint64_t reclaimer;
    CHECK(cgm_reclaimer_add(cache_group, reclaim_cache, &cache, &reclaimer));

    /* Fill the cache, charged to /app/cache. malloc outside the lock: a malloc that
     * hit the limit would call the reclaimer, which must find the lock free. */
    CHECK(cgm_thread_attach(cache_group));
    for (int i = 0; i < CACHE_BLOCKS; i++) {
        void *b = malloc(MIB);
        if (b == NULL) {
            fprintf(stderr, "filling the cache failed\n");
            return 1;
        }
        memset(b, 0xcc, MIB);
        pthread_mutex_lock(&cache.lock);
        cache.blocks[(cache.head + cache.count) % CACHE_BLOCKS] = b;
        cache.count++;
        pthread_mutex_unlock(&cache.lock);
    }
    struct cgm_stat st;
    CHECK(cgm_group_stat(cache_group, &st));
    printf("cache: %zu blocks, /app/cache memory.current %llu MiB\n", cache.count,
           (unsigned long long)(st.current / MIB));
    if (st.current < (uint64_t)CACHE_BLOCKS * MIB) {
        printf("FAIL: the cache's mallocs were not charged to /app/cache "
               "(is malloc cgmalloc's? link with -lcgmalloc)\n");
        return 1;
    }

    /* The worker allocates 48 MiB more under the same 64 MiB limit. */
    struct work w = {.group = work_group, .app = app};
    pthread_t t;
    if (pthread_create(&t, NULL, worker, &w) != 0)
        return 1;
    pthread_join(t, NULL);
    CHECK(cgm_thread_attach(cgm_root()));

    /* The report. */
    char text[1024];
    CHECK(cgm_group_stat(app, &st));
    printf("/app: current %llu MiB, peak %llu MiB, max %llu MiB, failcnt %llu\n",
           (unsigned long long)(st.current / MIB), (unsigned long long)(st.peak / MIB),
           (unsigned long long)(st.max / MIB), (unsigned long long)st.failcnt);
    CHECK(cgm_group_read(app, "memory.stat", text, sizeof text));
    printf("/app memory.stat: reclaim_calls %llu, reclaimed %llu, large %llu\n",
           field(text, "reclaim_calls"), field(text, "reclaimed"), field(text, "large"));
    unsigned long long stat_calls = field(text, "reclaim_calls");
    /* Events count at the group whose limit was hit: /app, not /app/work. */
    CHECK(cgm_group_read(app, "memory.events", text, sizeof text));
    printf("/app memory.events: max %llu, oom %llu, oom_kill %llu\n", field(text, "max"),
           field(text, "oom"), field(text, "oom_kill"));
    printf("worker: %d of %d mallocs failed; highest /app usage seen %llu MiB\n", w.failed,
           WORK_BLOCKS, (unsigned long long)(w.highest / MIB));
    printf("reclaimer: %lu calls, %zu MiB freed, %zu cache blocks left\n", cache.calls,
           cache.freed / MIB, cache.count);

    if (w.failed != 0) {
        printf("FAIL: a worker malloc failed\n");
        ok = 0;
    }
    if (cache.calls == 0 || cache.freed < (WORK_BLOCKS + CACHE_BLOCKS - 64) * (size_t)MIB) {
        printf("FAIL: the reclaimer did not free enough\n");
        ok = 0;
    }
    if (stat_calls != cache.calls) {
        printf("FAIL: memory.stat reclaim_calls %llu != %lu\n", stat_calls, cache.calls);
        ok = 0;
    }
    if (st.peak > st.max || w.highest > st.max || st.events_max == 0 ||
        st.events_oom_kill != 0) {
        printf("FAIL: /app's limit did not hold as expected\n");
        ok = 0;
    }

    /* Clean up: unregister first, so that nothing calls into a cache being torn down. */
    CHECK(cgm_reclaimer_remove(reclaimer));
    for (int i = 0; i < WORK_BLOCKS; i++)
        free(w.blocks[i]);
    while (cache.count > 0) {
        free(cache.blocks[cache.head]);
        cache.head = (cache.head + 1) % CACHE_BLOCKS;
        cache.count--;
    }
    CHECK(cgm_group_destroy(work_group));
    CHECK(cgm_group_destroy(cache_group));
    CHECK(cgm_group_destroy(app));
    if (cgm_group_open("/app", &app) != -ENOENT) {
        printf("FAIL: /app still opens after destroy\n");
        ok = 0;
    }
    printf("groups destroyed\n");
    printf("%s\n", ok ? "groups: ok" : "groups: FAILED");
    return ok ? 0 : 1;
}
