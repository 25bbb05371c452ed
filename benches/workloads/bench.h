/*
 * bench.h: what every workload shares.
 *
 *   - the command line: -t THREADS, --short, --groups N, -h;
 *   - timing with clock_gettime(CLOCK_MONOTONIC);
 *   - a xorshift64* PRNG seeded from a fixed seed (runs are reproducible);
 *   - checked allocation helpers and bench_fail() (exit 1 with a message);
 *   - the optional cgmalloc group setup (--groups N), resolved with dlsym so that the
 *     binary runs under any allocator;
 *   - the single RESULT line on stdout.
 *
 * The amount of work of a workload is fixed (it does not grow with -t): threads split it.
 * So a run takes about as long at -t 8 as at -t 2 on a 2-core machine, and ops_per_sec
 * compares allocators (and thread counts) directly.
 */
#ifndef BENCH_H
#define BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Only for the types and prototypes: the functions are looked up with dlsym, never
 * linked, so the same binary runs under glibc, mimalloc, jemalloc, tcmalloc. */
#include "../../include/cgmalloc.h"

#define BENCH_UNUSED __attribute__((unused))

/* ---------------------------------------------------------------- failure, checks */

static void __attribute__((noreturn, format(printf, 1, 2), unused))
bench_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("FAIL: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(1);
}

static BENCH_UNUSED void *bench_malloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL)
        bench_fail("malloc(%zu) returned NULL (errno %d: %s)", size, errno, strerror(errno));
    return p;
}

static BENCH_UNUSED void *bench_realloc(void *old, size_t size)
{
    void *p = realloc(old, size);
    if (p == NULL)
        bench_fail("realloc(%p, %zu) returned NULL (errno %d: %s)", old, size, errno,
                   strerror(errno));
    return p;
}

/* ---------------------------------------------------------------- time */

static BENCH_UNUSED double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- PRNG */

#define BENCH_SEED 0x9e3779b97f4a7c15ULL

typedef struct {
    uint64_t s;
} bench_rng;

/* splitmix64, to turn (seed, stream) into a well-mixed nonzero xorshift state. */
static BENCH_UNUSED uint64_t bench_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A generator for stream `stream` (a thread index, a lane, ...), from the fixed seed. */
static BENCH_UNUSED void bench_rng_init(bench_rng *r, uint64_t stream)
{
    r->s = bench_mix64(BENCH_SEED ^ bench_mix64(stream + 1));
    if (r->s == 0)
        r->s = BENCH_SEED;
}

/* xorshift64* */
static inline BENCH_UNUSED uint64_t bench_next(bench_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, n), n > 0 (multiply-shift; the bias is negligible here). */
static inline BENCH_UNUSED uint64_t bench_below(bench_rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)bench_next(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline BENCH_UNUSED uint64_t bench_range(bench_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + bench_below(r, hi - lo + 1);
}

/* Log-uniform in [lo, hi] (lo >= 1): every power of two of the range is equally likely. */
static inline BENCH_UNUSED uint64_t bench_log_range(bench_rng *r, uint64_t lo, uint64_t hi)
{
    int lb = 63 - __builtin_clzll(lo), hb = 63 - __builtin_clzll(hi);
    int b = (int)bench_range(r, (uint64_t)lb, (uint64_t)hb);
    uint64_t a = (uint64_t)1 << b, z = ((uint64_t)2 << b) - 1;
    if (a < lo)
        a = lo;
    if (z > hi || z < a)
        z = hi;
    return bench_range(r, a, z);
}

/* ---------------------------------------------------------------- command line */

typedef struct {
    const char *name; /* the workload name of the RESULT line */
    int threads;      /* worker threads (1 for single-thread workloads) */
    int short_run;    /* --short: a CI smoke run of a fraction of a second */
    int groups;       /* --groups N; 0 without it */
} bench_opts;

static void bench_usage(FILE *f, const char *name, const char *what, int multi)
{
    fprintf(f,
            "usage: %s [-t THREADS] [--short] [--groups N] [-h]\n"
            "%s\n"
            "%s"
            "  --short      a short run (a fraction of a second), for smoke tests\n"
            "  --groups N   cgmalloc only: create /bench/g0../bench/g<N-1> (memory.max 64G)\n"
            "               and attach %s;\n"
            "               exits 2 under another allocator (N = 0: off, the default)\n"
            "  -h, --help   this text\n"
            "Prints one line: RESULT workload=%s threads= groups= seconds= ops= ops_per_sec=\n",
            name, what,
            multi ? "  -t THREADS   worker threads (default: the online CPUs, at least 2)\n"
                  : "  -t THREADS   ignored: this workload is single-threaded\n",
            multi ? "worker thread i to group i % N"
                  : "to group i for part i of the work split in N parts",
            name);
}

static BENCH_UNUSED int bench_parse_int(const char *name, const char *opt, const char *s,
                                        int min, int max)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (s == NULL || errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "%s: %s wants an integer in [%d, %d], got '%s'\n", name, opt, min,
                max, s ? s : "(nothing)");
        exit(2);
    }
    return (int)v;
}

/*
 * Parses the common options. `multi`: a multi-thread workload (threads default to the
 * online CPUs, at least 2); otherwise -t is accepted and ignored and threads is 1.
 */
static BENCH_UNUSED bench_opts bench_parse(int argc, char **argv, const char *name,
                                           const char *what, int multi)
{
    bench_opts o = { name, 0, 0, 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(stdout, name, what, multi);
            exit(0);
        } else if (!strcmp(a, "--short")) {
            o.short_run = 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            o.threads = bench_parse_int(name, a, i + 1 < argc ? argv[++i] : NULL, 1, 4096);
        } else if (!strncmp(a, "-t", 2) && a[2]) {
            o.threads = bench_parse_int(name, "-t", a + 2, 1, 4096);
        } else if (!strncmp(a, "--threads=", 10)) {
            o.threads = bench_parse_int(name, "--threads", a + 10, 1, 4096);
        } else if (!strcmp(a, "--groups")) {
            o.groups = bench_parse_int(name, a, i + 1 < argc ? argv[++i] : NULL, 0, 8000);
        } else if (!strncmp(a, "--groups=", 9)) {
            o.groups = bench_parse_int(name, "--groups", a + 9, 0, 8000);
        } else {
            fprintf(stderr, "%s: unknown argument '%s'\n", name, a);
            bench_usage(stderr, name, what, multi);
            exit(2);
        }
    }
    if (!multi) {
        o.threads = 1;
    } else if (o.threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = n < 2 ? 2 : n > 4096 ? 4096 : (int)n;
    }
    return o;
}

/* ---------------------------------------------------------------- cgmalloc groups */

typedef __typeof__(cgm_group_create) bench_create_fn;
typedef __typeof__(cgm_group_open) bench_open_fn;
typedef __typeof__(cgm_group_write) bench_write_fn;
typedef __typeof__(cgm_thread_attach) bench_attach_fn;
typedef __typeof__(cgm_strerror) bench_strerror_fn;

static struct {
    int n;                      /* 0: groups off */
    cgm_group_t *handles;       /* /bench/g0 .. /bench/g<n-1> */
    bench_attach_fn *attach;
    bench_strerror_fn *strerr;
} bench_grp;

static const char *bench_cgm_err(int e)
{
    static char buf[32];
    if (bench_grp.strerr)
        return bench_grp.strerr(e);
    snprintf(buf, sizeof buf, "error %d", e);
    return buf;
}

static cgm_group_t bench_group_make(bench_create_fn *create, bench_open_fn *open,
                                    bench_write_fn *write, const char *path)
{
    cgm_group_t g = 0;
    int r = create(path, &g);
    if (r == -EEXIST)
        r = open(path, &g);
    if (r < 0)
        bench_fail("cgm_group_create(\"%s\"): %s", path, bench_cgm_err(r));
    r = write(g, "memory.max", "64G");
    if (r < 0)
        bench_fail("cgm_group_write(\"%s\", \"memory.max\", \"64G\"): %s", path,
                   bench_cgm_err(r));
    return g;
}

/* With --groups N: resolves the cgmalloc control API (exit 2 if it is absent) and creates
 * /bench and /bench/g0 .. /bench/g<N-1>. Does nothing without --groups. Call it once,
 * from main, before the measured phase. */
static BENCH_UNUSED void bench_groups_setup(const bench_opts *o)
{
    if (o->groups <= 0)
        return;
    bench_create_fn *create = (bench_create_fn *)dlsym(RTLD_DEFAULT, "cgm_group_create");
    bench_open_fn *open = (bench_open_fn *)dlsym(RTLD_DEFAULT, "cgm_group_open");
    bench_write_fn *write = (bench_write_fn *)dlsym(RTLD_DEFAULT, "cgm_group_write");
    bench_grp.attach = (bench_attach_fn *)dlsym(RTLD_DEFAULT, "cgm_thread_attach");
    bench_grp.strerr = (bench_strerror_fn *)dlsym(RTLD_DEFAULT, "cgm_strerror");
    if (!create || !open || !write || !bench_grp.attach) {
        fprintf(stderr,
                "%s: --groups %d needs cgmalloc (LD_PRELOAD=libcgmalloc.so): "
                "cgm_group_create/cgm_thread_attach are not in this process\n",
                o->name, o->groups);
        exit(2);
    }
    (void)bench_group_make(create, open, write, "/bench");
    bench_grp.handles = bench_malloc(sizeof(cgm_group_t) * (size_t)o->groups);
    for (int i = 0; i < o->groups; i++) {
        char path[64];
        snprintf(path, sizeof path, "/bench/g%d", i);
        bench_grp.handles[i] = bench_group_make(create, open, write, path);
    }
    bench_grp.n = o->groups;
}

/* Attaches the calling thread to group `index % N`; does nothing without --groups. */
static BENCH_UNUSED void bench_group_attach(int index)
{
    if (bench_grp.n <= 0)
        return;
    cgm_group_t g = bench_grp.handles[index % bench_grp.n];
    int r = bench_grp.attach(g);
    if (r < 0)
        bench_fail("cgm_thread_attach(/bench/g%d): %s", index % bench_grp.n, bench_cgm_err(r));
}

/*
 * For single-thread workloads: the work is `total` steps, split into N parts; call this
 * before step `step` and it attaches to group i when step enters part i (N switches in
 * all). `*part` starts at -1. Does nothing without --groups.
 */
static inline BENCH_UNUSED void bench_group_step(int *part, uint64_t step, uint64_t total)
{
    if (bench_grp.n <= 0 || total == 0)
        return;
    int p = (int)((unsigned __int128)step * (unsigned)bench_grp.n / total);
    if (p != *part) {
        *part = p;
        bench_group_attach(p);
    }
}

/* ---------------------------------------------------------------- threads */

static BENCH_UNUSED pthread_t bench_thread_start(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    int r = pthread_create(&t, NULL, fn, arg);
    if (r != 0)
        bench_fail("pthread_create: %s", strerror(r));
    return t;
}

static BENCH_UNUSED void bench_thread_join(pthread_t t)
{
    int r = pthread_join(t, NULL);
    if (r != 0)
        bench_fail("pthread_join: %s", strerror(r));
}

/* ---------------------------------------------------------------- result */

static BENCH_UNUSED void bench_result(const bench_opts *o, double seconds, uint64_t ops)
{
    fflush(stderr);
    printf("RESULT workload=%s threads=%d groups=%d seconds=%.6f ops=%" PRIu64
           " ops_per_sec=%.0f\n",
           o->name, o->threads, o->groups, seconds, ops,
           seconds > 0 ? (double)ops / seconds : 0.0);
    fflush(stdout);
}

#endif /* BENCH_H */
