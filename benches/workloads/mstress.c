/*
 * mstress: a mix of object lifetimes and sizes, with objects moving between threads.
 *
 * Shape: mimalloc-bench's mstress and rptest (rpmalloc's benchmark): each thread keeps a
 * pool of live objects whose lifetimes and sizes are drawn from skewed distributions.
 * Time advances in ticks; every tick a thread frees the objects whose lifetime ended
 * (a timer wheel of 16384 ticks) and allocates one new object. Lifetimes: 60% 1-16
 * ticks, 25% up to 256, 12% up to 4096, 3% up to 16383. Sizes (log-uniform inside each
 * band): 70% 32-256 B, 20% up to 4 KiB, 9% up to 64 KiB, 0.9% up to 512 KiB and 0.1% up
 * to 4 MiB (those live 256 ticks at most). One object in 32 is swapped into a random
 * slot of a shared exchange array instead, and the object that was there (allocated by
 * any thread) joins this thread's pool: it will be freed here.
 *
 * Measures: general-purpose behaviour: size classes across the range, a live set of
 * mixed ages (fragmentation, page reuse), large blocks and the OS calls behind them,
 * and remote frees at a moderate rate. Peak RSS is worth looking at here.
 *
 * Checks: each object holds its size and a tag at its start, the tag at its end and a
 * tag byte in every 4 KiB page, verified before free; the tags allocated and freed add
 * up to the same checksum over all threads.
 * With --groups N thread i is attached to /bench/g<i % N>.
 */
#include "bench.h"

#define WHEEL 16384
#define XCHG 1024 /* slots of the shared exchange array */
#define PAGE 4096

typedef struct obj {
    struct obj *next;
    uint64_t size;
    uint64_t tag;
} obj;

typedef struct {
    int index;
    uint64_t ticks;
    uint64_t ops;
    uint64_t sum_alloc, sum_free; /* tags, mod 2^64 */
    pthread_t tid;
} worker;

static _Atomic(obj *) xchg[XCHG];

static uint64_t draw_size(bench_rng *r)
{
    uint64_t u = bench_below(r, 1000);
    if (u < 700)
        return bench_log_range(r, 32, 256);
    if (u < 900)
        return bench_log_range(r, 257, 4096);
    if (u < 990)
        return bench_log_range(r, 4097, 64 << 10);
    if (u < 999)
        return bench_log_range(r, (64 << 10) + 1, 512 << 10);
    return bench_log_range(r, (512 << 10) + 1, 4 << 20);
}

static uint64_t draw_lifetime(bench_rng *r, uint64_t size)
{
    uint64_t u = bench_below(r, 100), l;
    if (u < 60)
        l = bench_range(r, 1, 16);
    else if (u < 85)
        l = bench_range(r, 17, 256);
    else if (u < 97)
        l = bench_range(r, 257, 4096);
    else
        l = bench_range(r, 4097, WHEEL - 1);
    if (size > (512 << 10) && l > 256)
        l = 1 + l % 256;
    return l;
}

static obj *make(bench_rng *r)
{
    uint64_t size = draw_size(r);
    obj *o = bench_malloc(size);
    o->next = NULL;
    o->size = size;
    o->tag = bench_next(r);
    unsigned char *p = (unsigned char *)o;
    if (size <= PAGE) {
        memset(p + sizeof *o, (int)(o->tag & 0xff), size - sizeof *o - 8);
    } else {
        for (uint64_t off = PAGE; off < size - 8; off += PAGE)
            p[off] = (unsigned char)(o->tag >> 8);
    }
    memcpy(p + size - 8, &o->tag, 8);
    return o;
}

static void check(const obj *o)
{
    const unsigned char *p = (const unsigned char *)o;
    uint64_t tail;
    if (o->size < 32 || o->size > (4 << 20))
        bench_fail("mstress: object %p corrupted: size field %" PRIu64, (const void *)o, o->size);
    memcpy(&tail, p + o->size - 8, 8);
    if (tail != o->tag)
        bench_fail("mstress: object %p of %" PRIu64 " bytes corrupted: tail %016" PRIx64
                   " != tag %016" PRIx64,
                   (const void *)o, o->size, tail, o->tag);
    if (o->size <= PAGE) {
        unsigned char b = (unsigned char)(o->tag & 0xff);
        for (uint64_t i = sizeof *o; i < o->size - 8; i += 8)
            if (p[i] != b)
                bench_fail("mstress: object %p byte %" PRIu64 " is %u, expected %u",
                           (const void *)o, i, p[i], b);
    } else {
        for (uint64_t off = PAGE; off < o->size - 8; off += PAGE)
            if (p[off] != (unsigned char)(o->tag >> 8))
                bench_fail("mstress: object %p of %" PRIu64 " bytes: page byte at %" PRIu64
                           " corrupted",
                           (const void *)o, o->size, off);
    }
}

static void *run(void *arg)
{
    worker *w = arg;
    bench_group_attach(w->index);
    bench_rng r;
    bench_rng_init(&r, (uint64_t)w->index);
    obj **wheel = calloc(WHEEL, sizeof *wheel);
    if (wheel == NULL)
        bench_fail("mstress: calloc of the timer wheel returned NULL");
    uint64_t ops = 1;

    for (uint64_t t = 0; t < w->ticks; t++) {
        obj **slot = &wheel[t % WHEEL];
        for (obj *o = *slot, *next; o; o = next) {
            next = o->next;
            check(o);
            w->sum_free += o->tag;
            free(o);
            ops++;
        }
        *slot = NULL;

        obj *o = make(&r);
        w->sum_alloc += o->tag;
        ops++;
        if ((bench_next(&r) & 31) == 0) {
            /* Publish the new object; adopt whatever was in the slot. */
            o = atomic_exchange_explicit(&xchg[bench_below(&r, XCHG)], o, memory_order_acq_rel);
            if (o == NULL)
                continue;
            check(o);
        }
        obj **dst = &wheel[(t + draw_lifetime(&r, o->size)) % WHEEL];
        o->next = *dst;
        *dst = o;
    }
    for (int i = 0; i < WHEEL; i++)
        for (obj *o = wheel[i], *next; o; o = next) {
            next = o->next;
            check(o);
            w->sum_free += o->tag;
            free(o);
            ops++;
        }
    free(wheel);
    w->ops = ops + 1; /* the wheel's calloc and free */
    return NULL;
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "mstress",
                               "Mixed lifetimes and sizes (up to 4 MiB), objects moving "
                               "between threads.",
                               1);
    uint64_t total_ticks = o.short_run ? 800000 : 8000000;
    bench_groups_setup(&o);

    worker *w = calloc((size_t)o.threads, sizeof *w);
    if (w == NULL)
        bench_fail("calloc of %d workers returned NULL", o.threads);
    double t0 = bench_now();
    for (int i = 0; i < o.threads; i++) {
        w[i].index = i;
        w[i].ticks = total_ticks / (uint64_t)o.threads;
        w[i].tid = bench_thread_start(run, &w[i]);
    }
    uint64_t ops = 0, sum_alloc = 0, sum_free = 0;
    for (int i = 0; i < o.threads; i++) {
        bench_thread_join(w[i].tid);
        ops += w[i].ops;
        sum_alloc += w[i].sum_alloc;
        sum_free += w[i].sum_free;
    }
    double secs = bench_now() - t0;
    for (int i = 0; i < XCHG; i++) {
        obj *x = atomic_exchange(&xchg[i], NULL);
        if (x) {
            check(x);
            sum_free += x->tag;
            free(x);
        }
    }
    if (sum_alloc != sum_free)
        bench_fail("mstress: checksum of freed tags %016" PRIx64 " != allocated %016" PRIx64,
                   sum_free, sum_alloc);
    free(w);
    bench_result(&o, secs, ops);
    return 0;
}
