/*
 * realloc_growth: many buffers growing by realloc, interleaved.
 *
 * Shape: growing strings and vectors (string builders, std::vector / Vec, readers that
 * append to a buffer), as in the realloc-heavy parts of mimalloc-bench's workloads.
 * 1000 buffers take turns; each turn appends a chunk of 1..(len/4 + 16) bytes to one
 * buffer. Half the buffers are "strings", reallocated to the exact new length on every
 * append; the other half are "vectors" that double their capacity when full. A buffer
 * starts at 16 bytes (malloc) and grows until it reaches its target size, log-uniform in
 * 64 B..1 MiB; then its whole content is checked, it is freed and starts over.
 *
 * Measures: realloc: growing in place (into free neighbours, or mremap for large
 * blocks) against allocate-copy-free, across all size classes up to 1 MiB, with the
 * buffers' growth interleaved so that neighbours are often live.
 *
 * Checks: the content is a function of (buffer seed, offset); after every realloc the
 * first and last bytes of the old content are checked; before free, one byte in 64, the
 * first and last 64 bytes and a random 256-byte window.
 * Single-threaded: -t is ignored. With --groups N the turns are split in N parts, part i
 * charged to /bench/g<i>.
 */
#include "bench.h"

#define NBUF 1000
#define MIN_TARGET 64
#define MAX_TARGET (1u << 20)

typedef struct {
    unsigned char *p;
    uint64_t len, cap, target;
    uint8_t seed;
    int vector; /* 0: exact realloc on every append; 1: capacity doubling */
} buffer;

/* Content: every byte is the buffer's seed, except one marker byte in every 64, which
 * depends on its offset (so a realloc that loses, shifts or truncates data is caught). */
static inline unsigned char marker(uint8_t seed, uint64_t i)
{
    return (unsigned char)(seed ^ 0x5a ^ (i >> 6) ^ (i >> 14));
}

static inline unsigned char content(uint8_t seed, uint64_t i)
{
    return (i & 63) ? seed : marker(seed, i);
}

static void fill(buffer *b, uint64_t from, uint64_t to)
{
    memset(b->p + from, b->seed, to - from);
    for (uint64_t i = (from + 63) & ~(uint64_t)63; i < to; i += 64)
        b->p[i] = marker(b->seed, i);
}

static void check_byte(const buffer *b, uint64_t i)
{
    if (b->p[i] != content(b->seed, i))
        bench_fail("realloc_growth: buffer %p (len %" PRIu64 ", cap %" PRIu64 ") byte %" PRIu64
                   " is %u, expected %u",
                   (void *)b->p, b->len, b->cap, i, b->p[i], content(b->seed, i));
}

/* Every byte of [from, to). */
static void check_range(const buffer *b, uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i < to; i++)
        check_byte(b, i);
}

/* The whole content, sampled: every marker, the first and last 64 bytes and every byte
 * of one 256-byte window chosen at random. */
static void check_all(const buffer *b, bench_rng *r)
{
    uint64_t n = b->len;
    for (uint64_t i = 0; i < n; i += 64)
        check_byte(b, i);
    check_range(b, 0, n < 64 ? n : 64);
    check_range(b, n > 64 ? n - 64 : 0, n);
    if (n > 256) {
        uint64_t at = bench_below(r, n - 256);
        check_range(b, at, at + 256);
    }
}

static void start(buffer *b, bench_rng *r)
{
    b->len = 0;
    b->cap = 16;
    b->target = bench_log_range(r, MIN_TARGET, MAX_TARGET);
    b->seed = (uint8_t)bench_next(r);
    b->vector = (int)(bench_next(r) & 1);
    b->p = bench_malloc(b->cap);
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "realloc_growth",
                               "realloc growth of 1000 interleaved buffers, 16 B to 1 MiB.", 0);
    uint64_t turns = o.short_run ? 80000 : 400000;
    bench_groups_setup(&o);

    bench_rng r;
    bench_rng_init(&r, 0);
    buffer *bufs = bench_malloc(NBUF * sizeof *bufs);
    uint64_t ops = 0, done = 0;
    int part = -1;

    double t0 = bench_now();
    for (int i = 0; i < NBUF; i++) {
        start(&bufs[i], &r);
        ops++;
    }
    for (uint64_t t = 0; t < turns; t++) {
        bench_group_step(&part, t, turns);
        buffer *b = &bufs[t % NBUF];
        uint64_t add = bench_range(&r, 1, b->len / 4 + 16);
        uint64_t len = b->len + add;
        if (len > b->cap || !b->vector) {
            uint64_t cap = len;
            if (b->vector)
                cap = len > 2 * b->cap ? len : 2 * b->cap;
            b->p = bench_realloc(b->p, cap);
            b->cap = cap;
            ops++;
            if (b->len) {
                check_range(b, 0, b->len < 8 ? b->len : 8);
                check_byte(b, b->len - 1);
            }
        }
        fill(b, b->len, len);
        b->len = len;
        if (len >= b->target) {
            check_all(b, &r);
            free(b->p);
            ops++;
            done++;
            start(b, &r);
            ops++;
        }
    }
    for (int i = 0; i < NBUF; i++) {
        check_all(&bufs[i], &r);
        free(bufs[i].p);
        ops++;
    }
    double secs = bench_now() - t0;
    free(bufs);
    fprintf(stderr, "realloc_growth: %" PRIu64 " buffers reached their target\n", done);
    bench_result(&o, secs, ops);
    return 0;
}
