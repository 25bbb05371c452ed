/*
 * larson_sized: Larson-style thread churn, blocks freed by other threads, with sized
 * frees.
 *
 * Shape: mimalloc-bench's larson-sized (the Larson & Krishnan server simulation freeing
 * with the size). T lanes, each an array of 5000 slots holding blocks of 8..1000 bytes,
 * log-uniform (every power-of-two band equally likely: 3 in 7 blocks are at most 63
 * bytes, 215 B on average, about 1 MiB per lane). main fills every slot before the clock
 * starts. The work runs in rounds: each round main starts T worker threads and joins
 * them; worker i of round r takes over lane (i + r) % T, which the previous round's
 * worker i - 1 (or main) filled, and for 10000 steps frees the block of a random slot
 * with free_sized(p, size) and allocates a new one of random size into it; then it
 * exits. So nearly every free releases a block that another, exited, thread allocated,
 * and with -t 2 and more the lanes also move between thread indices (and groups) from
 * round to round. free_sized (C23) is looked up with dlsym; where the C library lacks it
 * (glibc before 2.43) plain free is called instead.
 *
 * Differs from larson: sized frees; smaller, skewed sizes (8..1000 log-uniform instead
 * of 16..1024 uniform) and five times the slots; rounds joined by main (every thread
 * lives for one round) with the lanes rotating between thread indices instead of a
 * thread handing its own lane to its successor.
 *
 * Measures: the sized-free path (free without a size lookup where the allocator uses
 * the size), frees of blocks owned by dead threads' heaps or caches, thread creation and
 * exit inside the allocator.
 *
 * Checks: every slot records its block's size and tag; the block holds the tag at its
 * start and, from 16 bytes, at its end, verified before it is freed; at the end main
 * checks and frees every block. With --groups N worker i of every round is attached to
 * /bench/g<i % N>, so blocks are freed by threads of other groups than their own.
 */
#include "bench.h"

#define SLOTS 5000         /* slots per lane */
#define ROUND_STEPS 10000  /* steps of one worker in one round */
#define MIN_SIZE 8
#define MAX_SIZE 1000

typedef struct {
    unsigned char *p;
    uint64_t tag;
    uint64_t size;
} slot;

typedef struct {
    int index;   /* worker index in its round */
    int lane;    /* the lane it works on */
    bench_rng rng;
    uint64_t ops;
    pthread_t tid;
} worker;

typedef void free_sized_fn(void *, size_t);

static free_sized_fn *sized_free;
static slot **lanes;

static void plain_free(void *p, size_t size)
{
    (void)size;
    free(p);
}

static inline void fill(slot *s, bench_rng *r)
{
    s->size = bench_log_range(r, MIN_SIZE, MAX_SIZE);
    s->tag = bench_next(r);
    s->p = bench_malloc(s->size);
    memcpy(s->p, &s->tag, 8);
    if (s->size >= 16)
        memcpy(s->p + s->size - 8, &s->tag, 8);
}

static inline void check(const slot *s, int lane, uint64_t i)
{
    uint64_t head, tail;
    memcpy(&head, s->p, 8);
    if (head != s->tag)
        bench_fail("larson_sized lane %d slot %" PRIu64 ": block %p of %" PRIu64
                   " bytes corrupted: head %016" PRIx64 " != tag %016" PRIx64,
                   lane, i, (const void *)s->p, s->size, head, s->tag);
    if (s->size >= 16) {
        memcpy(&tail, s->p + s->size - 8, 8);
        if (tail != s->tag)
            bench_fail("larson_sized lane %d slot %" PRIu64 ": block %p of %" PRIu64
                       " bytes corrupted: tail %016" PRIx64 " != tag %016" PRIx64,
                       lane, i, (const void *)s->p, s->size, tail, s->tag);
    }
}

static void *run(void *arg)
{
    worker *w = arg;
    bench_group_attach(w->index);
    slot *l = lanes[w->lane];
    /* A local generator: the workers' records share cache lines. */
    bench_rng r = w->rng;
    for (int s = 0; s < ROUND_STEPS; s++) {
        uint64_t i = bench_below(&r, SLOTS);
        check(&l[i], w->lane, i);
        sized_free(l[i].p, l[i].size);
        fill(&l[i], &r);
    }
    w->ops = 2 * ROUND_STEPS;
    return NULL;
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "larson_sized",
                               "Larson-style rounds of threads taking over other threads' "
                               "blocks, freed with free_sized, 8..1000 bytes.",
                               1);
    uint64_t total_steps = o.short_run ? 4000000 : 40000000;
    int rounds = (int)(total_steps / ROUND_STEPS / (uint64_t)o.threads);
    if (rounds < 2)
        rounds = 2;
    bench_groups_setup(&o);

    sized_free = (free_sized_fn *)dlsym(RTLD_DEFAULT, "free_sized");
    if (sized_free == NULL)
        sized_free = plain_free;

    int T = o.threads;
    lanes = bench_malloc((size_t)T * sizeof *lanes);
    worker *w = bench_malloc((size_t)T * sizeof *w);
    bench_rng r;
    bench_rng_init(&r, UINT64_C(1) << 40);
    for (int t = 0; t < T; t++) {
        lanes[t] = bench_malloc(SLOTS * sizeof *lanes[t]);
        for (int i = 0; i < SLOTS; i++)
            fill(&lanes[t][i], &r);
    }

    uint64_t ops = 0;
    double t0 = bench_now();
    for (int rd = 0; rd < rounds; rd++) {
        for (int i = 0; i < T; i++) {
            w[i] = (worker){ .index = i, .lane = (i + rd) % T };
            bench_rng_init(&w[i].rng, (uint64_t)rd * 4096 + (uint64_t)i);
            w[i].tid = bench_thread_start(run, &w[i]);
        }
        for (int i = 0; i < T; i++) {
            bench_thread_join(w[i].tid);
            ops += w[i].ops;
        }
    }
    double secs = bench_now() - t0;

    if (ops != (uint64_t)rounds * (uint64_t)T * 2 * ROUND_STEPS)
        bench_fail("larson_sized: %" PRIu64 " calls, expected %" PRIu64, ops,
                   (uint64_t)rounds * (uint64_t)T * 2 * ROUND_STEPS);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < SLOTS; i++) {
            check(&lanes[t][i], t, (uint64_t)i);
            sized_free(lanes[t][i].p, lanes[t][i].size);
        }
        free(lanes[t]);
    }
    free(lanes);
    free(w);
    bench_result(&o, secs, ops);
    return 0;
}
