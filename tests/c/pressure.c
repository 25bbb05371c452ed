/*
 * memory.pressure through the C API (include/cgmalloc.h: struct cgm_pressure,
 * cgm_group_pressure, cgm_pressure_eventfd, cgm_pressure_remove, and the interface file):
 *
 *  1. malformed calls (NULL out, stale handles, bad kinds, windows and stalls, unknown
 *     fds, writes to the read-only file) return their negative errno and change nothing:
 *     the group's numbers and text, the lowest free descriptor, the live trigger and
 *     threshold descriptors, the out-parameters;
 *  2. a group that never stalled reads all zeros and exactly the kernel's zero text,
 *     fresh and while its sibling stalls;
 *  3. 1 MiB explicit charges that land 2% over a memory.high of 100 MiB sleep in the
 *     throttle (about 205 ms each): some_total_us is the time measured around them
 *     (within 20%), full_total_us is 0 while the charging thread is attached elsewhere
 *     and the stall itself while it is the group's only thread, never more than some;
 *     the parent and the root saw the stall; the text's totals match the numbers;
 *  4. a "some" trigger of 100 ms per 1 s becomes readable while a second thread sleeps
 *     in a 2 s throttle (before its charge returns), is quiet again after, and a trigger
 *     on a sibling group never becomes readable.
 *
 * Run linked against libcgmalloc.so (-lcgmalloc), or built without it (-DCGM_DLSYM, see
 * capi_dl.h) and run with it preloaded: both must pass, in about 6 s.
 * Prints "pressure: N checks passed" and exits 0, or names every failed check on stderr
 * and exits 1. Driven by tests/capi/main.rs; built with -std=c11 -Wall -Wextra -Werror
 * -pthread -fno-builtin.
 *
 * Only the main thread prints, and only while attached to the root (stdio allocates);
 * failure lines go to stderr, which is unbuffered.
 */
#define _GNU_SOURCE
#include "cgmalloc.h"
#include "show.h"
#include "capi_dl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB ((uint64_t)1 << 20)
#define MS ((uint64_t)1000) /* in microseconds */
#define MAGIC 0xa5

static const char ZERO_TEXT[] = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
                                "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";

static unsigned checks, failures;

static void checkf_(int ok, const char *file, int line, const char *expr, const char *fmt, ...)
{
    checks++;
    if (ok)
        return;
    failures++;
    fprintf(stderr, "%s:%d: CHECK failed: %s", file, line, expr);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
}

#define CHECK(cond) checkf_((cond) != 0, __FILE__, __LINE__, #cond, NULL)
/* The condition, and on failure a printf-style explanation. */
#define CHECKF(cond, ...) checkf_((cond) != 0, __FILE__, __LINE__, #cond, __VA_ARGS__)

/* Setup steps must succeed. */
static void must(int r, const char *what)
{
    if (r != 0) {
        fprintf(stderr, "pressure: setup: %s returned %d (%s)\n", what, r, cgm_strerror(r));
        exit(1);
    }
}

static cgm_group_t create(const char *path)
{
    cgm_group_t g = 0;
    must(cgm_group_create(path, &g), path);
    return g;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}


static struct cgm_pressure pressure(cgm_group_t g)
{
    struct cgm_pressure p;
    memset(&p, 0, sizeof p);
    int r = cgm_group_pressure(g, &p);
    CHECKF(r == 0, "cgm_group_pressure returned %d (%s)", r, cgm_strerror(r));
    return p;
}

static int is_zero(const struct cgm_pressure *p)
{
    return p->some_avg10 == 0.0 && p->some_avg60 == 0.0 && p->some_avg300 == 0.0 &&
           p->some_total_us == 0 && p->full_avg10 == 0.0 && p->full_avg60 == 0.0 &&
           p->full_avg300 == 0.0 && p->full_total_us == 0;
}

static const char *describe(const struct cgm_pressure *p)
{
    static char bufs[2][256];
    static int which;
    char *out = bufs[which ^= 1];
    snprintf(out, sizeof bufs[0],
             "some %.2f/%.2f/%.2f total=%llu, full %.2f/%.2f/%.2f total=%llu", p->some_avg10,
             p->some_avg60, p->some_avg300, (unsigned long long)p->some_total_us, p->full_avg10,
             p->full_avg60, p->full_avg300, (unsigned long long)p->full_total_us);
    return out;
}

/* memory.pressure as text, NUL-terminated; returns cgm_group_read's result. */
static long read_text(cgm_group_t g, char *buf, size_t len)
{
    memset(buf, 0, len);
    return cgm_group_read(g, "memory.pressure", buf, len);
}

/* One line "<kind> avg10=A avg60=B avg300=C total=N\n" at *s; advances *s past it. */
static int parse_line(const char **s, const char *kind, double avg[3], uint64_t *total)
{
    char fmt[80];
    unsigned long long t = 0;
    int n = -1;
    snprintf(fmt, sizeof fmt, "%s avg10=%%lf avg60=%%lf avg300=%%lf total=%%llu%%n", kind);
    if (sscanf(*s, fmt, &avg[0], &avg[1], &avg[2], &t, &n) != 4 || n < 0 || (*s)[n] != '\n')
        return 0;
    *total = t;
    *s += n + 1;
    return 1;
}

/* The text of memory.pressure parsed: 1 if it is the two lines and nothing else. */
static int parse_text(const char *text, double some[3], uint64_t *some_total, double full[3],
                      uint64_t *full_total)
{
    const char *s = text;
    return parse_line(&s, "some", some, some_total) && parse_line(&s, "full", full, full_total) &&
           *s == 0;
}

/* The lowest free descriptor (what the next open would return). */
static int lowest_free_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
    return fd;
}

static int fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

/* The eventfd's count (and resets it), 0 if it was not signalled, -1 on another error. */
static long long read_eventfd(int fd)
{
    uint64_t v = 0;
    ssize_t n = read(fd, &v, sizeof v);
    if (n == (ssize_t)sizeof v)
        return (long long)v;
    return n < 0 && errno == EAGAIN ? 0 : -1;
}

/* 1 if fd became readable within timeout_ms, 0 if not, -1 on error. */
static int wait_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    do {
        n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : n == 1 && (p.revents & POLLIN) != 0;
}

/* ------------------------------------------------------------------------------------ */
/* 1. Malformed calls. */

/* What a malformed call must leave as it was. */
struct snapshot {
    struct cgm_pressure p;
    char text[512];
    long len;
    int lowest_fd;
    int watched_open[2];
};

static cgm_group_t watched_group;
static int watched_fds[2];

static void snap(struct snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->p = pressure(watched_group);
    s->len = read_text(watched_group, s->text, sizeof s->text);
    s->lowest_fd = lowest_free_fd();
    for (int i = 0; i < 2; i++)
        s->watched_open[i] = fd_open(watched_fds[i]);
}

static void same(const struct snapshot *a, const struct snapshot *b, const char *call, int line)
{
    checkf_(memcmp(&a->p, &b->p, sizeof a->p) == 0, __FILE__, line, "numbers unchanged",
            "%s: %s -> %s", call, describe(&a->p), describe(&b->p));
    checkf_(a->len == b->len && strcmp(a->text, b->text) == 0, __FILE__, line, "text unchanged",
            "%s: \"%s\" -> \"%s\"", call, show(a->text), show(b->text));
    checkf_(a->lowest_fd == b->lowest_fd, __FILE__, line, "no descriptor opened or closed",
            "%s: lowest free fd %d -> %d", call, a->lowest_fd, b->lowest_fd);
    for (int i = 0; i < 2; i++)
        checkf_(b->watched_open[i], __FILE__, line, "watched descriptor still open",
                "%s: fd %d", call, watched_fds[i]);
}

static unsigned bad_calls;

/* `call` returns `want` and changes nothing. */
#define BAD(call, want)                                                                       \
    do {                                                                                      \
        struct snapshot b_, a_;                                                               \
        snap(&b_);                                                                            \
        long r_ = (long)(call);                                                               \
        snap(&a_);                                                                            \
        bad_calls++;                                                                          \
        checkf_(r_ == (long)(want), __FILE__, __LINE__, #call, "returned %ld, want %ld", r_, \
                (long)(want));                                                                \
        same(&b_, &a_, #call, __LINE__);                                                      \
    } while (0)

static void bad_input(void)
{
    cgm_group_t g = create("/bad_psi");
    cgm_group_t other = create("/bad_psi_other");
    cgm_group_t gone = create("/bad_psi_gone");
    must(cgm_group_destroy(gone), "destroying /bad_psi_gone");

    /* The descriptors that must stay open: a live trigger of g, a threshold of g. */
    int trig = cgm_pressure_eventfd(g, "some", 100 * MS, 1000 * MS);
    CHECKF(trig >= 0, "%d (%s)", trig, cgm_strerror(trig));
    int th = cgm_threshold_eventfd(g, MIB);
    CHECKF(th >= 0, "%d (%s)", th, cgm_strerror(th));
    if (trig < 0 || th < 0)
        exit(1);
    CHECK(fcntl(trig, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(trig, F_GETFD) & FD_CLOEXEC);
    watched_group = g;
    watched_fds[0] = trig;
    watched_fds[1] = th;

    /* A removed trigger's number: unknown from then on (and free again). */
    int removed = cgm_pressure_eventfd(g, "full", 100 * MS, 1000 * MS);
    CHECKF(removed >= 0, "%d", removed);
    CHECK(cgm_pressure_remove(g, removed) == 0);
    CHECK(!fd_open(removed));

    /* NULL out, stale handles; out-parameters untouched. */
    BAD(cgm_group_pressure(g, NULL), -EINVAL);
    cgm_group_t stale[] = {gone, 0, gone ^ ((uint64_t)1 << 40)};
    for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
        struct cgm_pressure out, magic;
        memset(&out, MAGIC, sizeof out);
        memset(&magic, MAGIC, sizeof magic);
        BAD(cgm_group_pressure(stale[i], &out), -ENOENT);
        CHECKF(memcmp(&out, &magic, sizeof out) == 0, "handle %#llx: out written",
               (unsigned long long)stale[i]);
        BAD(cgm_pressure_eventfd(stale[i], "some", 100 * MS, 1000 * MS), -ENOENT);
        BAD(cgm_pressure_remove(stale[i], trig), -ENOENT);
        char buf[256];
        memset(buf, MAGIC, sizeof buf);
        BAD(cgm_group_read(stale[i], "memory.pressure", buf, sizeof buf), -ENOENT);
    }

    /* Kinds. */
    const char *kinds[] = {"half", NULL, "", "Some", "SOME", "some ", " some", "full\n",
                           "somefull", "some\tfull", "memory.pressure"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        BAD(cgm_pressure_eventfd(g, kinds[i], 100 * MS, 1000 * MS), -EINVAL);

    /* Windows outside 500 ms..10 s, stalls of 0 or longer than the window, either kind. */
    const char *both[] = {"some", "full"};
    for (int k = 0; k < 2; k++) {
        BAD(cgm_pressure_eventfd(g, both[k], 100 * MS, 499999), -EINVAL);
        BAD(cgm_pressure_eventfd(g, both[k], 100 * MS, 10000001), -EINVAL);
        BAD(cgm_pressure_eventfd(g, both[k], 100 * MS, 0), -EINVAL);
        BAD(cgm_pressure_eventfd(g, both[k], 100 * MS, UINT64_MAX), -EINVAL);
        BAD(cgm_pressure_eventfd(g, both[k], 0, 1000 * MS), -EINVAL);
        BAD(cgm_pressure_eventfd(g, both[k], 1000 * MS + 1, 1000 * MS), -EINVAL);
        BAD(cgm_pressure_eventfd(g, both[k], 500001, 500000), -EINVAL);
        BAD(cgm_pressure_eventfd(g, both[k], UINT64_MAX, 10000000), -EINVAL);
        BAD(cgm_pressure_eventfd(g, both[k], 0, 0), -EINVAL);
    }

    /* Unknown descriptors: none of them is closed. */
    BAD(cgm_pressure_remove(g, -1), -ENOENT);
    BAD(cgm_pressure_remove(g, 0), -ENOENT);
    BAD(cgm_pressure_remove(g, 2), -ENOENT);
    BAD(cgm_pressure_remove(g, 4095), -ENOENT);
    BAD(cgm_pressure_remove(g, th), -ENOENT);   /* a threshold eventfd */
    BAD(cgm_pressure_remove(other, trig), -ENOENT); /* another group's trigger */
    BAD(cgm_pressure_remove(g, removed), -ENOENT);  /* removed already */
    CHECK(fd_open(0) && fd_open(2));

    /* The file is read-only, whatever is written. */
    const char *values[] = {"some 150000 1000000", "full 1 500000", "0", "", "max", "\n"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        BAD(cgm_group_write(g, "memory.pressure", values[i]), -EACCES);

    /* The bounds themselves are valid; the descriptors are the caller's until removed. */
    int lo = cgm_pressure_eventfd(g, "some", 500 * MS, 500 * MS);
    int hi = cgm_pressure_eventfd(g, "full", 1, 10000 * MS);
    CHECKF(lo >= 0 && hi >= 0 && lo != hi, "%d %d", lo, hi);
    CHECK(cgm_pressure_remove(g, lo) == 0);
    CHECK(cgm_pressure_remove(g, hi) == 0);
    CHECK(!fd_open(lo) && !fd_open(hi));
    CHECK(cgm_pressure_remove(g, lo) == -ENOENT);

    /* The watched ones were registered all along: removing them works once. */
    CHECK(read_eventfd(trig) == 0);
    CHECK(cgm_pressure_remove(g, trig) == 0);
    CHECK(!fd_open(trig));
    CHECK(cgm_pressure_remove(g, trig) == -ENOENT);
    CHECK(cgm_threshold_remove(g, th) == 0);

    struct cgm_pressure p = pressure(g);
    CHECKF(is_zero(&p), "%s", describe(&p));
    must(cgm_group_destroy(g), "destroying /bad_psi");
    must(cgm_group_destroy(other), "destroying /bad_psi_other");
}

/* ------------------------------------------------------------------------------------ */
/* 2. A group without stalls. */

static void check_idle(cgm_group_t g, const char *when)
{
    struct cgm_pressure p = pressure(g);
    CHECKF(is_zero(&p), "%s: %s", when, describe(&p));
    char text[512];
    long n = read_text(g, text, sizeof text);
    CHECKF(n == (long)strlen(ZERO_TEXT) && strcmp(text, ZERO_TEXT) == 0,
           "%s: \"%s\" (%ld), want \"%s\"", when, show(text), n, show(ZERO_TEXT));
    /* The length alone, as snprintf would give it. */
    CHECKF(cgm_group_read(g, "memory.pressure", NULL, 0) == (long)strlen(ZERO_TEXT), "%s", when);
}

/* ------------------------------------------------------------------------------------ */
/* 3. Stalls in the memory.high throttle. */

/*
 * Charges g to (100 + pct)% of a memory.high of 100 MiB, less 1 MiB, so that each
 * further 1 MiB charge lands pct% over high and sleeps in the throttle.
 */
static uint64_t over_high_by(cgm_group_t g, uint64_t pct)
{
    uint64_t base = 100 * MIB * (100 + pct) / 100 - MIB;
    must(cgm_group_write(g, "memory.high", "max"), "memory.high max");
    must(cgm_charge(g, base, 0), "the base charge");
    must(cgm_group_write(g, "memory.high", "100M"), "memory.high 100M");
    must(cgm_drain_stocks(), "cgm_drain_stocks");
    return base;
}

/* One throttled 1 MiB charge of g, given back at once: its wall time in microseconds. */
static uint64_t stall_once(cgm_group_t g)
{
    uint64_t t0 = now_us();
    int r = cgm_charge(g, MIB, 0);
    uint64_t took = now_us() - t0;
    CHECKF(r == 0, "cgm_charge returned %d (%s)", r, cgm_strerror(r));
    if (r == 0)
        CHECK(cgm_uncharge(g, MIB) == 0);
    cgm_drain_stocks();
    return took;
}

/* The totals of g's text agree with g's numbers read just before (nothing stalls now). */
static void check_text_matches(cgm_group_t g, const struct cgm_pressure *p, const char *what)
{
    char text[512];
    double some[3], full[3];
    uint64_t some_total = 0, full_total = 0;
    long n = read_text(g, text, sizeof text);
    CHECKF(n > 0 && n == (long)strlen(text), "%s: %ld", what, n);
    int ok = parse_text(text, some, &some_total, full, &full_total);
    CHECKF(ok, "%s: not the two lines of memory.pressure: \"%s\"", what, show(text));
    if (!ok)
        return;
    CHECKF(some_total >= p->some_total_us && some_total <= p->some_total_us + 1000,
           "%s: text \"%s\" vs %s", what, show(text), describe(p));
    CHECKF(full_total >= p->full_total_us && full_total <= p->full_total_us + 1000,
           "%s: text \"%s\" vs %s", what, show(text), describe(p));
    for (int i = 0; i < 3; i++)
        CHECKF(some[i] >= 0.0 && some[i] <= 100.0 && full[i] >= 0.0 && full[i] <= some[i] + 0.01,
               "%s: \"%s\"", what, show(text));
}

static int near(uint64_t shown, uint64_t measured)
{
    return shown * 10 >= measured * 8 && shown * 10 <= measured * 12;
}

static void throttle_stalls(void)
{
    cgm_group_t root = cgm_root();
    cgm_group_t parent = create("/psi_c");
    cgm_group_t g = create("/psi_c/a");
    cgm_group_t idle = create("/psi_c/idle");
    check_idle(idle, "fresh");

    uint64_t base = over_high_by(g, 2);
    struct cgm_pressure p0 = pressure(g);
    struct cgm_pressure root0 = pressure(root);
    CHECKF(is_zero(&p0), "a memory.high below the usage is no stall: %s", describe(&p0));

    /* The charging thread is attached to the root: some, but no full, in g. */
    uint64_t asleep = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t took = stall_once(g);
        CHECKF(took >= 150 * MS && took <= 1000 * MS,
               "a charge 2%% over high took %llu us, want about 205 ms", (unsigned long long)took);
        asleep += took;
    }
    struct cgm_pressure p1 = pressure(g);
    check_text_matches(g, &p1, "after 3 stalls");
    CHECKF(near(p1.some_total_us, asleep), "%s after %llu us asleep", describe(&p1),
           (unsigned long long)asleep);
    CHECKF(p1.some_total_us <= asleep + 1000, "%s after %llu us asleep", describe(&p1),
           (unsigned long long)asleep);
    CHECKF(p1.full_total_us == 0, "no thread attached to g: %s", describe(&p1));
    CHECK(p1.full_total_us <= p1.some_total_us);
    CHECK(p1.some_avg10 >= 0.0 && p1.some_avg10 <= 100.0);

    /* The only thread attached to g stalls: full is the stall too, never more than some. */
    must(cgm_thread_attach(g), "attaching to /psi_c/a");
    uint64_t asleep2 = 0;
    for (int i = 0; i < 2; i++)
        asleep2 += stall_once(g);
    must(cgm_thread_attach(root), "attaching to the root");
    struct cgm_pressure p2 = pressure(g);
    check_text_matches(g, &p2, "after 2 stalls attached");
    CHECKF(asleep2 >= 2 * 150 * MS, "%llu us", (unsigned long long)asleep2);
    uint64_t some2 = p2.some_total_us - p1.some_total_us;
    uint64_t full2 = p2.full_total_us - p1.full_total_us;
    CHECKF(near(some2, asleep2), "some grew %llu us in %llu us asleep: %s",
           (unsigned long long)some2, (unsigned long long)asleep2, describe(&p2));
    CHECKF(near(full2, asleep2), "full grew %llu us in %llu us asleep: %s",
           (unsigned long long)full2, (unsigned long long)asleep2, describe(&p2));
    CHECKF(p2.full_total_us <= p2.some_total_us, "%s", describe(&p2));

    /* The parent and the root saw the same stalls; the sibling none. */
    struct cgm_pressure pp = pressure(parent);
    CHECKF(pp.some_total_us >= p2.some_total_us, "parent %s, child %s", describe(&pp),
           describe(&p2));
    check_text_matches(parent, &pp, "the parent");
    struct cgm_pressure root1 = pressure(root);
    CHECKF(root1.some_total_us - root0.some_total_us >= p2.some_total_us - p0.some_total_us,
           "root %s -> %s, group %s", describe(&root0), describe(&root1), describe(&p2));
    check_idle(idle, "while the sibling stalled");

    /* Quiet now: the totals stay. */
    sleep_ms(50);
    struct cgm_pressure p3 = pressure(g);
    CHECKF(p3.some_total_us == p2.some_total_us && p3.full_total_us == p2.full_total_us,
           "%s -> %s without a stall", describe(&p2), describe(&p3));

    printf("throttle: %llu us asleep unattached, some %llu us, full %llu us; "
           "%llu us asleep attached, some +%llu us, full +%llu us\n",
           (unsigned long long)asleep, (unsigned long long)p1.some_total_us,
           (unsigned long long)p1.full_total_us, (unsigned long long)asleep2,
           (unsigned long long)some2, (unsigned long long)full2);
    CHECK(cgm_uncharge(g, base) == 0);
}

/* ------------------------------------------------------------------------------------ */
/* 4. Triggers. */

struct staller {
    cgm_group_t g;
    uint64_t took_us;
    _Atomic uint64_t returned_at; /* now_us() when the charge returned; 0 before */
    int result;
};

static void *stall_thread(void *arg)
{
    struct staller *s = arg;
    uint64_t t0 = now_us();
    s->result = cgm_charge(s->g, MIB, 0);
    uint64_t t1 = now_us();
    atomic_store(&s->returned_at, t1);
    s->took_us = t1 - t0;
    if (s->result == 0)
        cgm_uncharge(s->g, MIB);
    return NULL;
}

static void triggers(void)
{
    cgm_group_t g = create("/trig_c");
    cgm_group_t other = create("/trig_c_other");
    int fd = cgm_pressure_eventfd(g, "some", 100 * MS, 1000 * MS);
    int fd_other = cgm_pressure_eventfd(other, "some", 100 * MS, 1000 * MS);
    CHECKF(fd >= 0 && fd_other >= 0, "%d %d", fd, fd_other);
    if (fd < 0 || fd_other < 0)
        exit(1);

    /* No stall yet: a read (which checks the triggers) signals nothing. */
    pressure(g);
    CHECK(read_eventfd(fd) == 0);

    /* 50% over high: the 1 MiB charge sleeps the 2 s cap, in a second thread. */
    uint64_t base = over_high_by(g, 50);
    struct staller s = {.g = g};
    uint64_t start = now_us();
    pthread_t t;
    must(pthread_create(&t, NULL, stall_thread, &s), "pthread_create");
    int ready = wait_readable(fd, 3000);
    uint64_t fired = now_us();
    uint64_t returned = atomic_load(&s.returned_at);
    CHECKF(ready == 1, "no event within 3 s of a 2 s throttle (%d)", ready);
    CHECKF(returned == 0, "the trigger fired only after the throttled charge returned "
                          "(%llu us after the start, the charge returned after %llu us)",
           (unsigned long long)(fired - start),
           (unsigned long long)(returned ? returned - start : 0));
    CHECKF(fired - start >= 100 * MS, "fired %llu us after the start, before 100 ms of stall",
           (unsigned long long)(fired - start));
    CHECK(wait_readable(fd_other, 0) == 0);
    pthread_join(t, NULL);
    CHECKF(s.result == 0, "%d (%s)", s.result, cgm_strerror(s.result));
    CHECKF(s.took_us >= 1900 * MS && s.took_us <= 3000 * MS, "the throttle took %llu us",
           (unsigned long long)s.took_us);
    long long count = read_eventfd(fd);
    CHECKF(count >= 1, "%lld", count);
    struct cgm_pressure p = pressure(g);
    CHECKF(near(p.some_total_us, s.took_us), "%s after a %llu us charge", describe(&p),
           (unsigned long long)s.took_us);
    CHECKF(p.full_total_us == 0, "the stalled thread is not attached to g: %s", describe(&p));

    /* Settled: an event held back by the once-a-window rule may follow at the next check
     * (this read), and then nothing. */
    sleep_ms(1100);
    pressure(g);
    CHECK(read_eventfd(fd) >= 0);
    sleep_ms(1100);
    pressure(g);
    count = read_eventfd(fd);
    CHECKF(count == 0, "an event without a stall (%lld)", count);
    pressure(other);
    count = read_eventfd(fd_other);
    CHECKF(count == 0, "the other group's trigger fired (%lld)", count);
    struct cgm_pressure q = pressure(other);
    CHECKF(is_zero(&q), "%s", describe(&q));

    printf("trigger: fired %llu ms into a %llu ms throttle\n",
           (unsigned long long)(fired - start) / 1000, (unsigned long long)s.took_us / 1000);
    CHECK(cgm_pressure_remove(g, fd) == 0);
    CHECK(cgm_pressure_remove(other, fd_other) == 0);
    CHECK(!fd_open(fd) && !fd_open(fd_other));
    CHECK(cgm_uncharge(g, base) == 0);
}

int main(void)
{
    cgm_resolve_api();
    uint64_t t0 = now_us();
    bad_input();
    printf("bad input: %u malformed calls\n", bad_calls);
    throttle_stalls();
    triggers();
    char buf[256];
    int audit = cgm_audit(buf, sizeof buf);
    CHECKF(audit == 0, "%d: %s", audit, audit ? buf : "");
    printf("took %llu ms\n", (unsigned long long)(now_us() - t0) / 1000);
    if (failures) {
        fprintf(stderr, "pressure: %u of %u checks failed\n", failures, checks);
        return 1;
    }
    printf("pressure: %u checks passed\n", checks);
    return 0;
}
