/*
 * simple: single-thread churn of small objects.
 *
 * Shape: glibc's benchtests/bench-malloc-simple. For each size of 16..1024 bytes and each
 * batch length (25, 100, 400, 1600 objects), allocate a batch, then free it (in
 * allocation order, or in reverse order every other batch), many times over.
 *
 * Measures: the fast path of malloc/free for small sizes in one thread: size-class
 * lookup, thread cache or free-list push/pop, with little else going on.
 *
 * Checks: each object holds a tag in its first and last 8 bytes, verified before free.
 * With --groups N the batches are split in N parts, part i charged to /bench/g<i>.
 */
#include "bench.h"

static const size_t sizes[] = { 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024 };
static const unsigned counts[] = { 25, 100, 400, 1600 };
#define NSIZES (sizeof sizes / sizeof sizes[0])
#define NCOUNTS (sizeof counts / sizeof counts[0])
#define MAXCOUNT 1600

static inline void put_tag(unsigned char *p, size_t size, uint64_t tag)
{
    memcpy(p, &tag, 8);
    memcpy(p + size - 8, &tag, 8);
}

static inline void check_tag(const unsigned char *p, size_t size, uint64_t tag)
{
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + size - 8, 8);
    if (a != tag || b != tag)
        bench_fail("simple: object %p of %zu bytes corrupted: tag %016" PRIx64 "/%016" PRIx64
                   ", expected %016" PRIx64,
                   (const void *)p, size, a, b, tag);
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "simple",
                               "Single-thread churn of small objects (16..1024 bytes).", 0);
    /* Calls (malloc + free) per (size, batch length) combination. */
    uint64_t per_combo = o.short_run ? 250000 : 2500000;
    bench_groups_setup(&o);

    unsigned char **objs = bench_malloc(MAXCOUNT * sizeof *objs);
    uint64_t batches[NSIZES][NCOUNTS], total_batches = 0;
    for (size_t s = 0; s < NSIZES; s++)
        for (size_t c = 0; c < NCOUNTS; c++) {
            batches[s][c] = per_combo / (2 * counts[c]);
            total_batches += batches[s][c];
        }

    uint64_t ops = 0, step = 0;
    int part = -1;
    double t0 = bench_now();
    for (size_t s = 0; s < NSIZES; s++) {
        size_t size = sizes[s];
        for (size_t c = 0; c < NCOUNTS; c++) {
            unsigned n = counts[c];
            for (uint64_t b = 0; b < batches[s][c]; b++, step++) {
                bench_group_step(&part, step, total_batches);
                uint64_t base = bench_mix64(step) | 1;
                for (unsigned i = 0; i < n; i++) {
                    objs[i] = bench_malloc(size);
                    put_tag(objs[i], size, base + i);
                }
                if (b & 1) {
                    for (unsigned i = n; i-- > 0;) {
                        check_tag(objs[i], size, base + i);
                        free(objs[i]);
                    }
                } else {
                    for (unsigned i = 0; i < n; i++) {
                        check_tag(objs[i], size, base + i);
                        free(objs[i]);
                    }
                }
                ops += 2 * (uint64_t)n;
            }
        }
    }
    double secs = bench_now() - t0;
    free(objs);
    bench_result(&o, secs, ops);
    return 0;
}
