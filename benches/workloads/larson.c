/*
 * larson: a server simulation (Larson & Krishnan, "Memory allocation for long-running
 * server applications", ISMM 1998).
 *
 * Shape: T lanes, each a range of 1000 slots holding blocks of 16..1024 bytes (uniform).
 * main fills every slot before the clock starts. Each lane is worked by a thread that,
 * for 20000 steps, frees the block of a random slot of its lane and allocates a new one
 * of random size into it; then it starts its successor on the same lane and exits. The
 * successor inherits the blocks, so most frees release a block that a thread which no
 * longer exists (or main) allocated. The work (T x generations x 20000 steps) is split
 * into generations per lane.
 *
 * Measures: throughput with blocks outliving their allocating thread: remote frees,
 * orphaned thread caches and heaps being reclaimed or adopted, thread creation and exit
 * inside the allocator.
 *
 * Checks: each block holds its size and a tag at its start (and the tag at its end from
 * 24 bytes), verified before it is freed; at the end main checks and frees every block.
 * With --groups N every thread of lane i is attached to /bench/g<i % N>.
 */
#include "bench.h"

#define CHUNKS 1000       /* slots per lane */
#define GEN_STEPS 20000   /* steps of one thread before it is replaced */
#define MIN_SIZE 16
#define MAX_SIZE 1024

typedef struct {
    uint64_t size;
    uint64_t tag;
} header;

typedef struct {
    int index;
    int gens;            /* generations (threads) of this lane */
    int gen;             /* generation of the current thread */
    unsigned char **slot;
    bench_rng rng;
    uint64_t ops;
    pthread_t *tids;     /* tids[g]: thread of generation g, written by generation g-1 */
} lane;

static void fill(unsigned char *p, const header *h)
{
    memcpy(p, h, sizeof *h);
    if (h->size >= sizeof *h + 8)
        memcpy(p + h->size - 8, &h->tag, 8);
}

static void check(const unsigned char *p, int lane_index)
{
    header h;
    memcpy(&h, p, sizeof h);
    if (h.size < MIN_SIZE || h.size > MAX_SIZE)
        bench_fail("larson lane %d: block %p corrupted: size field %" PRIu64, lane_index,
                   (const void *)p, h.size);
    if ((h.tag >> 56) != (uint64_t)lane_index % 256)
        bench_fail("larson lane %d: block %p has tag %016" PRIx64 " of another lane",
                   lane_index, (const void *)p, h.tag);
    if (h.size >= sizeof h + 8) {
        uint64_t tail;
        memcpy(&tail, p + h.size - 8, 8);
        if (tail != h.tag)
            bench_fail("larson lane %d: block %p of %" PRIu64 " bytes corrupted: tail %016" PRIx64
                       " != tag %016" PRIx64,
                       lane_index, (const void *)p, h.size, tail, h.tag);
    }
}

static header new_header(lane *l)
{
    header h;
    h.size = bench_range(&l->rng, MIN_SIZE, MAX_SIZE);
    h.tag = (bench_next(&l->rng) >> 8) | ((uint64_t)(l->index % 256) << 56);
    return h;
}

static void *run(void *arg)
{
    lane *l = arg;
    bench_group_attach(l->index);
    for (int s = 0; s < GEN_STEPS; s++) {
        uint64_t i = bench_below(&l->rng, CHUNKS);
        check(l->slot[i], l->index);
        free(l->slot[i]);
        header h = new_header(l);
        l->slot[i] = bench_malloc(h.size);
        fill(l->slot[i], &h);
    }
    l->ops += 2 * GEN_STEPS;
    if (++l->gen < l->gens)
        l->tids[l->gen] = bench_thread_start(run, l); /* the successor takes the lane over */
    return NULL;
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "larson",
                               "Server simulation: threads replaced in generations, blocks "
                               "outlive their allocating thread.",
                               1);
    uint64_t total_steps = o.short_run ? 4000000 : 40000000;
    int gens = (int)(total_steps / GEN_STEPS / (uint64_t)o.threads);
    if (gens < 2)
        gens = 2;
    bench_groups_setup(&o);

    lane *lanes = bench_malloc((size_t)o.threads * sizeof *lanes);
    for (int t = 0; t < o.threads; t++) {
        lane *l = &lanes[t];
        *l = (lane){ .index = t, .gens = gens };
        bench_rng_init(&l->rng, (uint64_t)t);
        l->slot = bench_malloc(CHUNKS * sizeof *l->slot);
        l->tids = bench_malloc((size_t)gens * sizeof *l->tids);
        for (int i = 0; i < CHUNKS; i++) {
            header h = new_header(l);
            l->slot[i] = bench_malloc(h.size);
            fill(l->slot[i], &h);
        }
    }

    double t0 = bench_now();
    for (int t = 0; t < o.threads; t++)
        lanes[t].tids[0] = bench_thread_start(run, &lanes[t]);
    /* Generation g writes tids[g + 1] before it returns, so joining g makes it readable. */
    for (int t = 0; t < o.threads; t++)
        for (int g = 0; g < gens; g++)
            bench_thread_join(lanes[t].tids[g]);
    double secs = bench_now() - t0;

    uint64_t ops = 0;
    for (int t = 0; t < o.threads; t++) {
        lane *l = &lanes[t];
        if (l->gen != gens)
            bench_fail("larson lane %d ran %d generations, expected %d", t, l->gen, gens);
        ops += l->ops;
        for (int i = 0; i < CHUNKS; i++) {
            check(l->slot[i], t);
            free(l->slot[i]);
        }
        free(l->slot);
        free(l->tids);
    }
    free(lanes);
    bench_result(&o, secs, ops);
    return 0;
}
