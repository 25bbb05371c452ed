/*
 * thread: multi-thread churn of small objects, every thread on its own.
 *
 * Shape: glibc's benchtests/bench-malloc-thread. Each thread owns a working set of 1024
 * slots; each step picks a random slot, frees the block in it (if any) and allocates a
 * new one there. Sizes are log-uniform in 16..4096 bytes, so small ones dominate. No
 * block ever crosses threads.
 *
 * Measures: thread-local malloc/free throughput and how it scales with threads (per-thread
 * caches or arenas, and any shared lock or counter on the fast path).
 *
 * Checks: each block carries its size and a tag at its start (and the tag at its end
 * from 24 bytes),
 * verified before free; a checksum of the tags freed is compared with the one allocated.
 * With --groups N thread i is attached to /bench/g<i % N>.
 */
#include "bench.h"

#define SLOTS 1024

typedef struct {
    int index;
    uint64_t steps;
    uint64_t ops;
    pthread_t tid;
} worker;

typedef struct {
    uint64_t size;
    uint64_t tag;
} header;

static void check(const unsigned char *p, const header *want)
{
    header h;
    uint64_t tail;
    memcpy(&h, p, sizeof h);
    tail = want->tag;
    if (want->size >= sizeof h + 8) /* blocks of 16..23 bytes hold the header only */
        memcpy(&tail, p + want->size - 8, 8);
    if (h.size != want->size || h.tag != want->tag || tail != want->tag)
        bench_fail("thread: block %p corrupted: size %" PRIu64 " tag %016" PRIx64
                   " tail %016" PRIx64 ", expected size %" PRIu64 " tag %016" PRIx64,
                   (const void *)p, h.size, h.tag, tail, want->size, want->tag);
}

static void *run(void *arg)
{
    worker *w = arg;
    bench_group_attach(w->index);
    bench_rng r;
    bench_rng_init(&r, (uint64_t)w->index);
    unsigned char **slot = bench_malloc(SLOTS * sizeof *slot);
    header *meta = bench_malloc(SLOTS * sizeof *meta);
    memset(slot, 0, SLOTS * sizeof *slot);
    uint64_t ops = 0, sum_in = 0, sum_out = 0;

    for (uint64_t s = 0; s < w->steps; s++) {
        uint64_t i = bench_next(&r) & (SLOTS - 1);
        if (slot[i]) {
            check(slot[i], &meta[i]);
            sum_out += meta[i].tag;
            free(slot[i]);
            ops++;
        }
        header h = { bench_log_range(&r, 16, 4096), bench_next(&r) };
        unsigned char *p = bench_malloc(h.size);
        memcpy(p, &h, sizeof h);
        if (h.size >= sizeof h + 8)
            memcpy(p + h.size - 8, &h.tag, 8);
        slot[i] = p;
        meta[i] = h;
        sum_in += h.tag;
        ops++;
    }
    for (int i = 0; i < SLOTS; i++)
        if (slot[i]) {
            check(slot[i], &meta[i]);
            sum_out += meta[i].tag;
            free(slot[i]);
            ops++;
        }
    if (sum_in != sum_out)
        bench_fail("thread %d: checksum of freed tags %016" PRIx64 " != allocated %016" PRIx64,
                   w->index, sum_out, sum_in);
    free(slot);
    free(meta);
    w->ops = ops;
    return NULL;
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "thread",
                               "Multi-thread churn of small objects, each thread on its own.",
                               1);
    uint64_t total = o.short_run ? 4000000 : 40000000; /* replace steps, all threads */
    bench_groups_setup(&o);

    worker *w = bench_malloc((size_t)o.threads * sizeof *w);
    double t0 = bench_now();
    for (int i = 0; i < o.threads; i++) {
        w[i] = (worker){ .index = i, .steps = total / (uint64_t)o.threads };
        w[i].tid = bench_thread_start(run, &w[i]);
    }
    uint64_t ops = 0;
    for (int i = 0; i < o.threads; i++) {
        bench_thread_join(w[i].tid);
        ops += w[i].ops;
    }
    double secs = bench_now() - t0;
    free(w);
    bench_result(&o, secs, ops);
    return 0;
}
