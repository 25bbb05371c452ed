/*
 * cache_scratch: passive false sharing.
 *
 * Shape: Hoard's cache-scratch (Berger et al., ASPLOS 2000). main allocates one small
 * object (8 bytes) per thread, back to back, so that they likely share cache lines, and
 * hands object i to thread i. Each thread frees the object it was given, then repeatedly
 * allocates an object of the same size, writes every byte of it many times (2000 rounds),
 * checks it and frees it. An allocator that gives a thread back the block it just freed
 * (main's, next to the other threads' blocks) makes the threads write to one cache line.
 *
 * Measures: whether freed blocks of another thread's cache lines are reused by the
 * freeing thread. The time is dominated by the writes; ops (mallocs + frees) are few,
 * compare seconds rather than ops_per_sec.
 *
 * Checks: the object's bytes hold the expected count after the writes.
 * With --groups N thread i is attached to /bench/g<i % N> (main's objects are charged to
 * the root).
 */
#include "bench.h"

#define OBJ_SIZE 8
#define ROUNDS 2000 /* writes of every byte of an object between its malloc and free */

typedef struct {
    int index;
    uint64_t iterations;
    void *given; /* main's object, freed by this thread first */
    uint64_t ops;
    pthread_t tid;
} worker;

static pthread_barrier_t start;

static void *run(void *arg)
{
    worker *w = arg;
    bench_group_attach(w->index);
    pthread_barrier_wait(&start);
    free(w->given);
    for (uint64_t it = 0; it < w->iterations; it++) {
        volatile unsigned char *p = bench_malloc(OBJ_SIZE);
        for (int k = 0; k < OBJ_SIZE; k++)
            p[k] = (unsigned char)k;
        for (int r = 0; r < ROUNDS; r++)
            for (int k = 0; k < OBJ_SIZE; k++)
                p[k]++;
        for (int k = 0; k < OBJ_SIZE; k++)
            if (p[k] != (unsigned char)(k + ROUNDS))
                bench_fail("cache_scratch thread %d: byte %d of %p is %u, expected %u",
                           w->index, k, (void *)p, p[k], (unsigned char)(k + ROUNDS));
        free((void *)p);
    }
    w->ops = 1 + 2 * w->iterations;
    return NULL;
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "cache_scratch",
                               "Passive false sharing: threads free main's adjacent objects, "
                               "then allocate and write their own.",
                               1);
    uint64_t total = o.short_run ? 24000 : 240000; /* iterations, all threads */
    bench_groups_setup(&o);

    worker *w = bench_malloc((size_t)o.threads * sizeof *w);
    int rc = pthread_barrier_init(&start, NULL, (unsigned)o.threads + 1);
    if (rc != 0)
        bench_fail("pthread_barrier_init: %s", strerror(rc));
    for (int i = 0; i < o.threads; i++) {
        w[i] = (worker){ .index = i, .iterations = total / (uint64_t)o.threads };
        w[i].given = bench_malloc(OBJ_SIZE);
        memset(w[i].given, 0, OBJ_SIZE);
    }
    for (int i = 0; i < o.threads; i++)
        w[i].tid = bench_thread_start(run, &w[i]);
    pthread_barrier_wait(&start);
    double t0 = bench_now();
    uint64_t ops = 0;
    for (int i = 0; i < o.threads; i++) {
        bench_thread_join(w[i].tid);
        ops += w[i].ops;
    }
    double secs = bench_now() - t0;
    pthread_barrier_destroy(&start);
    free(w);
    bench_result(&o, secs, ops);
    return 0;
}
