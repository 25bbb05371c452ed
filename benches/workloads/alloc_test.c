/*
 * alloc_test: random replacement in a large per-thread array of mixed-size blocks.
 *
 * Shape: mimalloc-bench's alloc-test (alloc-test1 is -t 1, alloc-testN is -t N). Every
 * thread owns an array of 100000 slots and fills it with blocks (before the clock
 * starts); then, for its share of the steps, it picks a random slot, frees the block in
 * it and allocates a new one of a random size, writing a few bytes of it. Sizes: a band
 * 2^b..2^(b+1)-1 (b = 3..15, the last one reaching 64 KiB) is picked with a probability
 * proportional to 0.6^(b-3), then a size uniformly inside it: 40% of the blocks are
 * 8..15 bytes, 87% at most 127 B, 97% at most 1 KiB, 0.1% 16..64 KiB; 233 B on average,
 * so each thread keeps about 23 MiB live. The threads share nothing.
 *
 * Measures: malloc/free over the whole small and medium range with a live set far
 * larger than the caches: size-class lookup for many classes at once, free lists that
 * are cold, page and span reuse under random (not LIFO) frees, per-thread scaling.
 *
 * Checks: each block starts with a word encoding (thread, slot, size) and a magic, and,
 * from 9 bytes, ends with a byte derived from them; both are verified before the block
 * is freed. The fill and the final frees are not timed. With --groups N thread i is
 * attached to /bench/g<i % N> (before it fills its array).
 */
#include "bench.h"

#define SLOTS 100000
#define MIN_SHIFT 3  /* 8 bytes */
#define MAX_SHIFT 15 /* the band 32 KiB..64 KiB */
#define NBANDS (MAX_SHIFT - MIN_SHIFT + 1)
#define MAX_SIZE (64u << 10)
#define MAGIC 0x2a5c3ULL /* 18 bits */

typedef struct {
    int index;
    uint64_t steps;
    uint64_t ops;
    pthread_t tid;
} worker;

/* band_cdf[i]: P(band <= MIN_SHIFT + i), scaled to 2^32. */
static uint64_t band_cdf[NBANDS];
static pthread_barrier_t start_bar, stop_bar;

static void init_bands(void)
{
    double w[NBANDS], sum = 0, acc = 0, x = 1;
    for (int i = 0; i < NBANDS; i++, x *= 0.6) {
        w[i] = x;
        sum += x;
    }
    for (int i = 0; i < NBANDS; i++) {
        acc += w[i];
        band_cdf[i] = (uint64_t)(acc / sum * 4294967296.0);
    }
    band_cdf[NBANDS - 1] = (uint64_t)1 << 32;
}

static inline uint64_t draw_size(bench_rng *r)
{
    uint64_t u = bench_next(r) >> 32;
    int b = 0;
    while (u >= band_cdf[b])
        b++;
    uint64_t lo = (uint64_t)1 << (MIN_SHIFT + b);
    uint64_t hi = b == NBANDS - 1 ? MAX_SIZE : 2 * lo - 1;
    return bench_range(r, lo, hi);
}

static inline uint64_t head_word(int thread, uint64_t slot, uint64_t size)
{
    return size | (slot << 17) | ((uint64_t)thread << 34) | (MAGIC << 46);
}

static inline unsigned char tail_byte(uint64_t head)
{
    uint64_t h = head * 0x9e3779b97f4a7c15ULL;
    return (unsigned char)(h >> 56);
}

static inline unsigned char *make(int thread, uint64_t slot, uint64_t size)
{
    unsigned char *p = bench_malloc(size);
    uint64_t h = head_word(thread, slot, size);
    memcpy(p, &h, 8);
    if (size > 8)
        p[size - 1] = tail_byte(h);
    return p;
}

static inline void check(const unsigned char *p, int thread, uint64_t slot)
{
    uint64_t h;
    memcpy(&h, p, 8);
    uint64_t size = h & ((1u << 17) - 1);
    if (h != head_word(thread, slot, size) || size < 8 || size > MAX_SIZE)
        bench_fail("alloc_test thread %d: block %p of slot %" PRIu64
                   " corrupted: head %016" PRIx64,
                   thread, (const void *)p, slot, h);
    if (size > 8 && p[size - 1] != tail_byte(h))
        bench_fail("alloc_test thread %d: block %p of slot %" PRIu64 " (%" PRIu64
                   " bytes) corrupted: last byte %u, expected %u",
                   thread, (const void *)p, slot, size, p[size - 1], tail_byte(h));
}

static void *run(void *arg)
{
    worker *w = arg;
    int t = w->index;
    bench_group_attach(t);
    bench_rng r;
    bench_rng_init(&r, (uint64_t)t);
    unsigned char **slot = bench_malloc(SLOTS * sizeof *slot);
    for (uint64_t i = 0; i < SLOTS; i++)
        slot[i] = make(t, i, draw_size(&r));

    pthread_barrier_wait(&start_bar); /* main starts the clock */
    for (uint64_t s = 0; s < w->steps; s++) {
        uint64_t i = bench_below(&r, SLOTS);
        check(slot[i], t, i);
        free(slot[i]);
        slot[i] = make(t, i, draw_size(&r));
    }
    w->ops = 2 * w->steps;
    pthread_barrier_wait(&stop_bar); /* main stops the clock */

    for (uint64_t i = 0; i < SLOTS; i++) {
        check(slot[i], t, i);
        free(slot[i]);
    }
    free(slot);
    return NULL;
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "alloc_test",
                               "Random replacement in a 100000-slot array per thread, sizes "
                               "8 B..64 KiB (mostly small).",
                               1);
    uint64_t total_steps = o.short_run ? 1600000 : 16000000;
    init_bands();
    bench_groups_setup(&o);

    int r = pthread_barrier_init(&start_bar, NULL, (unsigned)o.threads + 1);
    if (r == 0)
        r = pthread_barrier_init(&stop_bar, NULL, (unsigned)o.threads + 1);
    if (r != 0)
        bench_fail("pthread_barrier_init: %s", strerror(r));

    worker *w = calloc((size_t)o.threads, sizeof *w);
    if (w == NULL)
        bench_fail("calloc of %d workers returned NULL", o.threads);
    for (int i = 0; i < o.threads; i++) {
        w[i].index = i;
        w[i].steps = total_steps / (uint64_t)o.threads;
        w[i].tid = bench_thread_start(run, &w[i]);
    }
    pthread_barrier_wait(&start_bar);
    double t0 = bench_now();
    pthread_barrier_wait(&stop_bar);
    double secs = bench_now() - t0;

    uint64_t ops = 0;
    for (int i = 0; i < o.threads; i++) {
        bench_thread_join(w[i].tid);
        ops += w[i].ops;
    }
    pthread_barrier_destroy(&start_bar);
    pthread_barrier_destroy(&stop_bar);
    free(w);
    bench_result(&o, secs, ops);
    return 0;
}
