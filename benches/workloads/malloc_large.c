/*
 * malloc_large: large blocks, 64 KiB to 32 MiB.
 *
 * Shape: mimalloc-bench's malloc-large. One thread keeps 16 large blocks alive; each step
 * frees a random one and allocates a new block in its place, of a size log-uniform in
 * 64 KiB..32 MiB, and writes one word in every 4 KiB page of it.
 *
 * Measures: the large-block path: whether the allocator maps and unmaps each block (page
 * faults, zeroing, munmap and TLB shootdowns) or reuses address space and memory it
 * already has; how much it keeps resident (peak RSS) while doing so.
 *
 * Checks: every page's word (a tag mixed with the page index) is verified before free.
 * Single-threaded: -t is ignored. With --groups N the steps are split in N parts, part i
 * charged to /bench/g<i>.
 */
#include "bench.h"

#define LIVE 16
#define PAGE 4096
#define MIN_SIZE (64u << 10)
#define MAX_SIZE (32u << 20)

typedef struct {
    uint64_t *p;
    uint64_t size;
    uint64_t tag;
} block;

static void touch(block *b)
{
    uint64_t words_per_page = PAGE / sizeof(uint64_t);
    uint64_t pages = (b->size + PAGE - 1) / PAGE;
    for (uint64_t i = 0; i < pages; i++)
        b->p[i * words_per_page] = b->tag ^ i;
    /* The last word too, in case the size is not a page multiple. */
    b->p[b->size / sizeof(uint64_t) - 1] = ~b->tag;
}

static void verify(const block *b)
{
    uint64_t words_per_page = PAGE / sizeof(uint64_t);
    uint64_t pages = (b->size + PAGE - 1) / PAGE;
    for (uint64_t i = 0; i < pages; i++)
        if (i * words_per_page != b->size / sizeof(uint64_t) - 1 &&
            b->p[i * words_per_page] != (b->tag ^ i))
            bench_fail("malloc_large: block %p of %" PRIu64 " bytes: page %" PRIu64
                       " holds %016" PRIx64 ", expected %016" PRIx64,
                       (void *)b->p, b->size, i, b->p[i * words_per_page], b->tag ^ i);
    if (b->p[b->size / sizeof(uint64_t) - 1] != ~b->tag)
        bench_fail("malloc_large: block %p of %" PRIu64 " bytes: last word corrupted",
                   (void *)b->p, b->size);
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "malloc_large",
                               "Large blocks of 64 KiB..32 MiB allocated, touched and freed.",
                               0);
    uint64_t steps = o.short_run ? 50 : 600;
    bench_groups_setup(&o);

    bench_rng r;
    bench_rng_init(&r, 0);
    block live[LIVE];
    memset(live, 0, sizeof live);
    uint64_t ops = 0;
    int part = -1;

    double t0 = bench_now();
    for (uint64_t s = 0; s < steps; s++) {
        bench_group_step(&part, s, steps);
        block *b = &live[bench_below(&r, LIVE)];
        if (b->p) {
            verify(b);
            free(b->p);
            ops++;
        }
        b->size = bench_log_range(&r, MIN_SIZE, MAX_SIZE) & ~(uint64_t)7;
        b->tag = bench_next(&r);
        b->p = bench_malloc(b->size);
        ops++;
        touch(b);
    }
    for (int i = 0; i < LIVE; i++)
        if (live[i].p) {
            verify(&live[i]);
            free(live[i].p);
            ops++;
        }
    double secs = bench_now() - t0;
    bench_result(&o, secs, ops);
    return 0;
}
