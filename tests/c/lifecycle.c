/*
 * The lifecycle matrix (driven by tests/lifecycle/matrix.rs): one cell per run.
 *
 *   lifecycle GROUP BAND EVENT [forks=N] [events=N] [seconds=S]
 *
 * GROUP   where the workers allocate: root | child (/lc) | max (/lc with a memory.max
 *         that their bursts hit now and then: some allocations return NULL)
 * BAND    block sizes: small (<= 32 KiB) | medium (32 KiB - 1 MiB) | large (1 - 4 MiB),
 *         each freed by the thread that allocated it, or mix (all three, handed between
 *         threads through one shared mailbox and freed there)
 * EVENT   what one more thread fires repeatedly while WORKERS threads allocate and free:
 *         fork-exit   fork(), the child _exits at once
 *         fork-alloc  fork(), the child frees what the parent's threads had published,
 *                     allocates and frees blocks of every band, reads its group's
 *                     memory.current through cgm_group_stat and checks it
 *         fork-exec   fork(), the child execs /bin/true
 *         thread-exit a worker exits and a new one starts in its group
 *         trim        malloc_trim(0)
 *         reclaim     memory.reclaim / cgm_group_reclaim on the workers' group and root
 *         lower-max   memory.max of the workers' group lowered below its usage, then
 *                     raised back
 *         destroy     groups the workers allocate in now and then (and leave again) are
 *                     destroyed while their blocks are live, re-created, and re-entered
 *
 * While the event thread fires, worker 0 also calls malloc_trim(0) every 1024 of its
 * allocations during every other run of ten events (as programs trimming their heap do):
 * so each event races both with plain allocation and with trims.
 *
 * forks=N (fork events) and events=N (the others) are how many events the cell fires at
 * least; seconds=S keeps firing them until S seconds have passed (soaks).
 * In destroy cells the counts balance too: a destroyed group's nr_charges and
 * nr_uncharges go to its parent when its slot is freed, so they balance there only if
 * they balanced in the destroyed group.
 *
 * At the end the workers are joined, every block they left is checked and freed, every
 * stock is drained and everything reclaimable reclaimed, and then every group the cell
 * made must read exactly 0 (memory.current, stock, and memory.stat's allocated, small,
 * large and cached; nr_charges == nr_uncharges), the root must read what it read at the
 * cell's start after the same quiesce, and once the cell's groups are destroyed the root
 * must have no live or dying descendant. Every fork child must exit 0.
 *
 * cgm_audit is called in
 * each fork-alloc child right after fork() and after it freed what it allocated, and in
 * the parent after joining the workers, before and after freeing their blocks.
 *
 * Output, one write(2) per line (fork children write to the same pipes):
 *   audit: ok WHERE | audit: FAIL WHERE: TEXT
 *   error: TEXT          (parent), child PID: FAIL TEXT (a fork child, then exits 1)
 *   cell G/B/E: forks F died D failed X hung H allocs A nulls N events E limit_hits L
 *       seconds S        (one line)
 *   result: ok | result: FAIL
 * Exit status 0 only with "result: ok".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgmalloc.h"
#include "capi_dl.h"
#include "reap.h"


#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

enum { WORKERS = 4, MAX_SLOTS = 256, TEMPS = 2, BURST_CAP = 1024, CHILD_TIMEOUT_MS = 20000 };
enum { ROOT, CHILD, MAX };
enum { SMALL, MEDIUM, LARGE, MIX };
enum { FORK_EXIT, FORK_ALLOC, FORK_EXEC, THREAD_EXIT, TRIM, RECLAIM, LOWER_MAX, DESTROY };

static const char *group_names[] = {"root", "child", "max"};
static const char *band_names[] = {"small", "medium", "large", "mix"};
static const char *event_names[] = {"fork-exit", "fork-alloc", "fork-exec", "thread-exit",
                                    "trim",      "reclaim",    "lower-max", "destroy"};

static int setting, band, event;
static long quota;     /* events to fire at least */
static double seconds; /* and keep firing until this much time has passed */
static char cell[64];

/* Per band: mailbox slots per worker, memory.max of the "max" setting, the size of a
 * burst's blocks and how often (in allocations) a worker bursts there. */
static const int slots_per_worker[] = {128, 16, 3, 64};
static const size_t max_bytes[] = {16 * MIB, 40 * MIB, 48 * MIB, 64 * MIB};
static const size_t burst_size[] = {32 * KIB, 1 * MIB, 4 * MIB, 1 * MIB};
static const unsigned burst_every[] = {4096, 256, 64, 512};

static cgm_group_t root, home;
static char home_path[32];
static size_t home_max; /* bytes, or 0 for no limit */

static struct temp {
    pthread_mutex_t mu;
    cgm_group_t h; /* 0 while re-created */
    char path[32];
} temps[TEMPS];

static _Atomic(unsigned char *) slots[WORKERS * MAX_SLOTS];
static int nslots;

static atomic_int stop;
static atomic_int bg_trim; /* worker 0 calls malloc_trim(0) now and then while set */
static atomic_int exit_req[WORKERS];
static pthread_t workers[WORKERS];
static pthread_attr_t attr;

static atomic_long allocs, nulls, errors, events_fired;
static atomic_long forks;
static struct reap_counts kids;

/* ---- output ---- */

static void out_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out_line(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(1, buf + off, (size_t)(n - off));
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return;
        }
        off += w;
    }
}

/* A problem the parent saw: printed (the first 20) and counted. */
static void error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void error(const char *fmt, ...)
{
    if (atomic_fetch_add(&errors, 1) >= 20)
        return;
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    out_line("error: %s: %s", cell, buf);
}

/* Runs the audit, prints its line; returns 0 unless it failed. */
static int audit(const char *where)
{
    char text[256] = "";
    int rc = cgm_audit(text, sizeof text);
    if (rc == 0) {
        out_line("audit: ok %s %s", cell, where);
        return 0;
    }
    text[sizeof text - 1] = 0;
    out_line("audit: FAIL %s %s: %s (%s)", cell, where, text, cgm_strerror(rc));
    return -1;
}

/* ---- blocks ---- */

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t log_range(uint64_t *s, size_t lo, size_t hi)
{
    int lb = 63 - __builtin_clzll(lo), hb = 63 - __builtin_clzll(hi);
    int b = lb + (int)(next(s) % (uint64_t)(hb - lb + 1));
    size_t a = (size_t)1 << b, z = ((size_t)1 << (b + 1)) - 1;
    if (a < lo)
        a = lo;
    if (z > hi)
        z = hi;
    return a + (size_t)(next(s) % (z - a + 1));
}

static size_t pick_size(int b, uint64_t *s)
{
    if (b == MIX) {
        unsigned r = (unsigned)(next(s) % 100);
        b = r < 70 ? SMALL : r < 95 ? MEDIUM : LARGE;
    }
    switch (b) {
    case SMALL:
        return log_range(s, 16, 32 * KIB);
    case MEDIUM:
        return log_range(s, 32 * KIB + 1, 1 * MIB);
    default:
        return 1 * MIB + 1 + (size_t)(next(s) % (3 * MIB));
    }
}

static unsigned char pat(uint64_t key, size_t i)
{
    return (unsigned char)((key >> ((i & 7) * 8)) ^ (i >> 3));
}

/* A block carries its size and key in its first 16 bytes, then the key's pattern over
 * its first 256 and last 64 bytes (the rest stays untouched: big blocks stay cheap). */
static void fill_block(unsigned char *p, size_t n, uint64_t key)
{
    uint64_t h[2] = {n, key};
    memcpy(p, h, sizeof h);
    size_t head = n < 256 ? n : 256;
    for (size_t i = 16; i < head; i++)
        p[i] = pat(key, i);
    for (size_t i = n > 64 + head ? n - 64 : head; i < n; i++)
        p[i] = pat(key, i);
}

static int block_ok(const unsigned char *p)
{
    uint64_t h[2];
    memcpy(h, p, sizeof h);
    size_t n = h[0];
    if (n < 16 || n > 4 * MIB)
        return 0;
    size_t head = n < 256 ? n : 256;
    for (size_t i = 16; i < head; i++)
        if (p[i] != pat(h[1], i))
            return 0;
    for (size_t i = n > 64 + head ? n - 64 : head; i < n; i++)
        if (p[i] != pat(h[1], i))
            return 0;
    return 1;
}

/* Allocates a block of `n` bytes (at least 16) and fills it; NULL when refused. */
static unsigned char *new_block(size_t n, uint64_t *s)
{
    if (n < 16)
        n = 16;
    unsigned char *p = malloc(n);
    if (p)
        fill_block(p, n, next(s));
    return p;
}

/* ---- groups ---- */

static void group_stat(cgm_group_t g, struct cgm_stat *st, const char *what)
{
    int rc = cgm_group_stat(g, st);
    if (rc != 0) {
        error("cgm_group_stat(%s): %s", what, cgm_strerror(rc));
        memset(st, 0, sizeof *st);
    }
}

static void attach(cgm_group_t g, const char *what)
{
    int rc = cgm_thread_attach(g);
    if (rc != 0)
        error("cgm_thread_attach(%s): %s", what, cgm_strerror(rc));
}

/* Reclaims everything reclaimable below `g`: 0 or -EAGAIN (less than asked). */
static void reclaim_all(cgm_group_t g)
{
    int rc = cgm_group_reclaim(g, UINT64_MAX);
    if (rc != 0 && rc != -EAGAIN)
        error("cgm_group_reclaim(max): %s", cgm_strerror(rc));
}

/* Every stock drained, every cache reclaimed, the stocks reclaim refilled drained. */
static void quiesce(void)
{
    cgm_drain_stocks();
    reclaim_all(root);
    cgm_drain_stocks();
}

/* A `key value` line of an interface file; -1 when missing. */
static long long file_key(cgm_group_t g, const char *file, const char *key)
{
    char text[2048];
    long n = cgm_group_read(g, file, text, sizeof text);
    if (n < 0) {
        error("read %s: %s", file, cgm_strerror((int)n));
        return -1;
    }
    size_t kl = strlen(key);
    for (char *l = text; *l;) {
        if (strncmp(l, key, kl) == 0 && l[kl] == ' ')
            return atoll(l + kl + 1);
        char *nl = strchr(l, '\n');
        if (!nl)
            break;
        l = nl + 1;
    }
    error("%s has no %s", file, key);
    return -1;
}

/* ---- workers ---- */

/* Publishes `p` in a mailbox slot (the worker's own, or any with the mixed band) and
 * checks and frees the block it replaces. */
static void publish(int w, unsigned char *p, uint64_t *rng)
{
    int per = slots_per_worker[band];
    int i = band == MIX ? (int)(next(rng) % (uint64_t)nslots)
                        : w * per + (int)(next(rng) % (uint64_t)per);
    unsigned char *old = atomic_exchange(&slots[i], p);
    if (old) {
        if (!block_ok(old))
            error("worker %d: corrupted block %p", w, (void *)old);
        free(old);
    }
}

/* Allocates blocks of the burst size until one is refused (or BURST_CAP), then frees
 * them: with the limited group this reaches memory.max. */
static void burst(long *a, long *nl)
{
    unsigned char *held[BURST_CAP];
    int n = 0;
    for (; n < BURST_CAP; n++) {
        (*a)++;
        held[n] = malloc(burst_size[band]);
        if (!held[n]) {
            (*nl)++;
            break;
        }
        held[n][0] = 1;
        held[n][burst_size[band] - 1] = 2;
    }
    for (int i = 0; i < n; i++)
        free(held[i]);
}

/* Enters a temporary group, allocates a few blocks there (left published), goes back. */
static void visit_temp(int w, uint64_t *rng, long *a, long *nl)
{
    struct temp *t = &temps[next(rng) % TEMPS];
    pthread_mutex_lock(&t->mu);
    if (t->h) {
        attach(t->h, t->path);
        for (int k = 0; k < 4; k++) {
            (*a)++;
            unsigned char *p = new_block(pick_size(band, rng), rng);
            if (p)
                publish(w, p, rng);
            else
                (*nl)++;
        }
        attach(home, home_path);
    }
    pthread_mutex_unlock(&t->mu);
}

static void *worker_main(void *arg)
{
    int w = (int)((intptr_t)arg & 0xff);
    int inherited = (int)((intptr_t)arg >> 8);
    char name[16];
    snprintf(name, sizeof name, "worker-%d", w);
    pthread_setname_np(pthread_self(), name);
    /* A thread starts in its creator's group. */
    if (inherited && cgm_thread_group() != home)
        error("a new worker did not start in its creator's group %s", home_path);
    attach(home, home_path);
    uint64_t rng = (uint64_t)w * 7919 + (uint64_t)inherited * 104729 + (uint64_t)getpid();
    long a = 0, nl = 0;
    for (unsigned long i = 1; !atomic_load_explicit(&stop, memory_order_relaxed) &&
                              !atomic_load_explicit(&exit_req[w], memory_order_relaxed);
         i++) {
        if (i % 64 == 0)
            sched_yield(); /* leave the event thread some CPU on small machines */
        a++;
        unsigned char *p = new_block(pick_size(band, &rng), &rng);
        if (p)
            publish(w, p, &rng);
        else
            nl++;
        if (w == 0 && i % 1024 == 0 && atomic_load_explicit(&bg_trim, memory_order_relaxed))
            malloc_trim(0);
        /* At the start (so the limit is surely reached) and now and then. */
        if (setting == MAX && (i == 1 || i % burst_every[band] == 0))
            burst(&a, &nl);
        if (event == DESTROY && i % 97 == 0)
            visit_temp(w, &rng, &a, &nl);
    }
    atomic_fetch_add(&allocs, a);
    atomic_fetch_add(&nulls, nl);
    return NULL;
}

static void start_worker(int w, int inherited)
{
    int rc = pthread_create(&workers[w], &attr, worker_main, (void *)(intptr_t)(w | inherited << 8));
    if (rc != 0) {
        out_line("error: %s: pthread_create: %s", cell, strerror(rc));
        exit(1);
    }
}

/* ---- fork children ---- */

static void child_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void child_fail(const char *fmt, ...)
{
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    out_line("child %d: FAIL %s: %s", (int)getpid(), cell, buf);
    _exit(1);
}

static uint64_t pages_of(size_t n)
{
    return ((uint64_t)n + 4095) / 4096 * 4096;
}

/* The child of a fork-alloc event: one thread, the forking one. */
static void fork_alloc_child(unsigned n)
{
    long errors_before = atomic_load(&errors);
    if (audit("child-after-fork") != 0)
        _exit(1);
    /* The workers are gone: free what they had published (their segments are
     * abandoned here), checking the contents first. */
    for (int i = 0; i < nslots; i++) {
        unsigned char *p = atomic_exchange(&slots[i], NULL);
        if (p) {
            if (!block_ok(p))
                child_fail("corrupted inherited block %p", (void *)p);
            free(p);
        }
    }
    cgm_group_t g = cgm_thread_group();
    struct cgm_stat st;
    quiesce();
    if (cgm_group_stat(g, &st) != 0)
        child_fail("cgm_group_stat of its group failed");
    uint64_t c0 = st.current;
    long long small0 = file_key(g, "memory.stat", "small");
    /* Every band: small, medium and large blocks. */
    static const size_t sizes[] = {16,       100,      1000,     4096,     16 * KIB,
                                   32 * KIB, 40 * KIB, 200 * KIB, 1 * MIB, 1 * MIB + 1,
                                   3 * MIB,  4 * MIB};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    unsigned char *held[2 * NS];
    uint64_t charged_at_least = 0;
    uint64_t rng = n * 31ull + 7;
    for (int i = 0; i < 2 * NS; i++) {
        size_t sz = sizes[i % NS];
        held[i] = new_block(sz, &rng);
        if (held[i] && sz > 32 * KIB)
            charged_at_least += pages_of(sz);
    }
    if (cgm_group_stat(g, &st) != 0)
        child_fail("cgm_group_stat of its group failed");
    uint64_t c1 = st.current;
    if (c1 < c0 + charged_at_least)
        child_fail("memory.current %llu after allocating blocks of %llu bytes (charged to the "
                   "page) on top of %llu",
                   (unsigned long long)c1, (unsigned long long)charged_at_least,
                   (unsigned long long)c0);
    for (int i = 0; i < 2 * NS; i++)
        if (held[i]) {
            if (!block_ok(held[i]))
                child_fail("corrupted block of %zu bytes", sizes[i % NS]);
            free(held[i]);
        }
    quiesce();
    if (cgm_group_stat(g, &st) != 0)
        child_fail("cgm_group_stat of its group failed");
    /* Everything goes back but the pages the new blocks reached in small-block spans
     * that still hold blocks of the parent's (a span is charged as far as its blocks
     * reached, and those pages stay resident while it lives): exactly the growth of
     * `small`, at most a few pages a size class. */
    long long grown = file_key(g, "memory.stat", "small") - small0;
    if (grown < 0 || grown > 64 * 1024 || (long long)(st.current - c0) != grown)
        child_fail("memory.current %llu after freeing and reclaiming, %llu before allocating "
                   "(small grew by %lld)",
                   (unsigned long long)st.current, (unsigned long long)c0, grown);
    if (audit("child-after-free") != 0)
        _exit(1);
    if (atomic_load(&errors) != errors_before)
        child_fail("a cgm_* call failed (see the error lines)");
    _exit(0);
}

/* Waits for `pid` at most CHILD_TIMEOUT_MS and counts how it ended. */
static void reap(pid_t pid)
{
    char why[160];
    if (!reap_counted(pid, CHILD_TIMEOUT_MS, &kids, why, sizeof why))
        error("%s", why);
}

static void fire_fork(unsigned n)
{
    /* Fork from the workers' group and from the root by turns. */
    if (setting != ROOT)
        attach(n % 2 ? root : home, n % 2 ? "/" : home_path);
    pid_t pid = fork();
    if (pid == 0) {
        if (event == FORK_EXIT)
            _exit(0);
        if (event == FORK_EXEC) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        fork_alloc_child(n);
    }
    if (pid < 0) {
        error("fork: %s", strerror(errno));
        return;
    }
    atomic_fetch_add(&forks, 1);
    reap(pid);
}

/* ---- the other events ---- */

static void fire_thread_exit(unsigned n)
{
    int w = (int)(n % WORKERS);
    atomic_store(&exit_req[w], 1);
    pthread_join(workers[w], NULL);
    atomic_store(&exit_req[w], 0);
    start_worker(w, 1); /* created from the workers' group (this thread is in it) */
    sleep_us(1000);
}

static void fire_reclaim(unsigned n)
{
    int rc;
    switch (n % 3) {
    case 0:
        rc = cgm_group_write(home, "memory.reclaim", "2M");
        break;
    case 1:
        rc = cgm_group_reclaim(home, UINT64_MAX);
        break;
    default:
        rc = cgm_group_reclaim(root, 8 * MIB);
        break;
    }
    if (rc != 0 && rc != -EAGAIN)
        error("reclaim: %s", cgm_strerror(rc));
    sleep_us(500);
}

static void fire_lower_max(unsigned n)
{
    struct cgm_stat st;
    group_stat(home, &st, home_path);
    /* Half the usage (at least 1 MiB), then back to what it was. */
    char low[32];
    snprintf(low, sizeof low, "%llu", (unsigned long long)(st.current / 2 > MIB ? st.current / 2 : MIB));
    int rc = cgm_group_write(home, "memory.max", low);
    if (rc != 0)
        error("memory.max=%s: %s", low, cgm_strerror(rc));
    sleep_us(300 + (n % 4) * 500);
    char back[32] = "max";
    if (home_max)
        snprintf(back, sizeof back, "%zu", home_max);
    rc = cgm_group_write(home, "memory.max", back);
    if (rc != 0)
        error("memory.max=%s: %s", back, cgm_strerror(rc));
    sleep_us(1000);
}

static void fire_destroy(unsigned n)
{
    struct temp *t = &temps[n % TEMPS];
    pthread_mutex_lock(&t->mu);
    cgm_group_t old = t->h;
    /* No worker is in it now (they enter and leave it under the lock). */
    int rc = cgm_group_destroy(old);
    if (rc != 0)
        error("cgm_group_destroy(%s): %s", t->path, cgm_strerror(rc));
    struct cgm_stat st;
    rc = cgm_group_stat(old, &st);
    if (rc != -ENOENT)
        error("the destroyed %s still answers cgm_group_stat: %d", t->path, rc);
    t->h = 0;
    rc = cgm_group_create(t->path, &t->h);
    if (rc != 0)
        error("cgm_group_create(%s) after destroy: %s", t->path, cgm_strerror(rc));
    pthread_mutex_unlock(&t->mu);
    sleep_us(1000);
}

static void *event_main(void *arg)
{
    (void)arg;
    /* Thread exits and new workers happen in the workers' group. */
    if (event == THREAD_EXIT)
        attach(home, home_path);
    double start = now_s();
    for (unsigned n = 0; n < (unsigned)quota || now_s() - start < seconds; n++) {
        /* Ten events with worker 0 trimming now and then, ten without, and so on. */
        atomic_store(&bg_trim, (n / 10) % 2);
        switch (event) {
        case FORK_EXIT:
        case FORK_ALLOC:
        case FORK_EXEC:
            fire_fork(n);
            break;
        case THREAD_EXIT:
            fire_thread_exit(n);
            break;
        case TRIM:
            malloc_trim(0);
            sleep_us(500);
            break;
        case RECLAIM:
            fire_reclaim(n);
            break;
        case LOWER_MAX:
            fire_lower_max(n);
            break;
        case DESTROY:
            fire_destroy(n);
            break;
        }
        atomic_fetch_add(&events_fired, 1);
    }
    attach(root, "/");
    atomic_store(&stop, 1);
    return NULL;
}

/* Creates (and joins) as many threads as the cell ever has at once, so that the stacks
 * (and glibc's DTV, allocated with calloc by the creator) of the threads the cell starts
 * come from glibc's stack cache: the root's usage does not change through them. */
static void *idle(void *arg)
{
    return arg;
}

static void warm_thread_cache(void)
{
    pthread_t t[WORKERS + 2];
    for (int i = 0; i < WORKERS + 2; i++)
        if (pthread_create(&t[i], &attr, idle, NULL) != 0) {
            out_line("error: %s: pthread_create failed", cell);
            exit(1);
        }
    for (int i = 0; i < WORKERS + 2; i++)
        pthread_join(t[i], NULL);
}

static int lookup(const char *s, const char **names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static int check_empty(cgm_group_t g, const char *path)
{
    int bad = 0;
    struct cgm_stat st;
    group_stat(g, &st, path);
    if (st.current != 0 || st.stock != 0) {
        error("%s: memory.current %llu, stock %llu after free, drain and reclaim", path,
              (unsigned long long)st.current, (unsigned long long)st.stock);
        bad = 1;
    }
    static const char *keys[] = {"allocated", "small", "large", "cached", "stock"};
    for (int i = 0; i < 5; i++) {
        long long v = file_key(g, "memory.stat", keys[i]);
        if (v != 0) {
            error("%s: memory.stat %s %lld after free, drain and reclaim", path, keys[i], v);
            bad = 1;
        }
    }
    long long c = file_key(g, "memory.stat", "nr_charges");
    long long u = file_key(g, "memory.stat", "nr_uncharges");
    if (c != u) {
        error("%s: memory.stat nr_charges %lld != nr_uncharges %lld", path, c, u);
        bad = 1;
    }
    return bad;
}

int main(int argc, char **argv)
{
    cgm_resolve_api();
    if (argc < 4 || (setting = lookup(argv[1], group_names, 3)) < 0 ||
        (band = lookup(argv[2], band_names, 4)) < 0 ||
        (event = lookup(argv[3], event_names, 8)) < 0) {
        fprintf(stderr, "usage: lifecycle root|child|max small|medium|large|mix EVENT "
                        "[forks=N] [events=N] [seconds=S]\n");
        return 2;
    }
    int is_fork = event <= FORK_EXEC;
    quota = is_fork ? 60 : 100;
    for (int i = 4; i < argc; i++) {
        if (strncmp(argv[i], "forks=", 6) == 0 && is_fork)
            quota = atol(argv[i] + 6);
        else if (strncmp(argv[i], "events=", 7) == 0 && !is_fork)
            quota = atol(argv[i] + 7);
        else if (strncmp(argv[i], "seconds=", 8) == 0)
            seconds = atof(argv[i] + 8);
        else if (strncmp(argv[i], "forks=", 6) != 0 && strncmp(argv[i], "events=", 7) != 0) {
            fprintf(stderr, "lifecycle: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    snprintf(cell, sizeof cell, "%s/%s/%s", argv[1], argv[2], argv[3]);
    /* No stdio buffer is allocated (the root's usage is compared across the cell). */
    setvbuf(stdout, NULL, _IONBF, 0);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * KIB);
    double t0 = now_s();

    root = cgm_root();
    home = root;
    strcpy(home_path, "/");
    if (setting != ROOT) {
        strcpy(home_path, "/lc");
        int rc = cgm_group_create(home_path, &home);
        if (rc != 0) {
            out_line("error: %s: cgm_group_create(/lc): %s", cell, cgm_strerror(rc));
            return 1;
        }
    }
    if (setting == MAX) {
        home_max = max_bytes[band];
        char v[32];
        snprintf(v, sizeof v, "%zu", home_max);
        int rc = cgm_group_write(home, "memory.max", v);
        if (rc != 0) {
            out_line("error: %s: memory.max=%s: %s", cell, v, cgm_strerror(rc));
            return 1;
        }
    }
    if (event == DESTROY) {
        for (int i = 0; i < TEMPS; i++) {
            pthread_mutex_init(&temps[i].mu, NULL);
            snprintf(temps[i].path, sizeof temps[i].path, "%s%st%d",
                     setting == ROOT ? "/lc-" : home_path, setting == ROOT ? "" : "/", i);
            int rc = cgm_group_create(temps[i].path, &temps[i].h);
            if (rc != 0) {
                out_line("error: %s: cgm_group_create(%s): %s", cell, temps[i].path,
                         cgm_strerror(rc));
                return 1;
            }
        }
    }
    nslots = WORKERS * slots_per_worker[band];

    warm_thread_cache();
    quiesce();
    struct cgm_stat st;
    group_stat(root, &st, "/");
    uint64_t root_base = st.current;

    for (int w = 0; w < WORKERS; w++)
        start_worker(w, 0);
    sleep_us(5000);
    pthread_t ev;
    if (pthread_create(&ev, &attr, event_main, NULL) != 0) {
        out_line("error: %s: pthread_create failed", cell);
        return 1;
    }
    pthread_join(ev, NULL);
    for (int w = 0; w < WORKERS; w++)
        pthread_join(workers[w], NULL);

    /* Only this thread runs now. */
    int audit_failed = audit("parent-live") != 0;
    for (int i = 0; i < nslots; i++) {
        unsigned char *p = atomic_exchange(&slots[i], NULL);
        if (p) {
            if (!block_ok(p))
                error("corrupted block %p left in the mailbox", (void *)p);
            free(p);
        }
    }
    audit_failed |= audit("parent-freed") != 0;
    quiesce();

    long long limit_hits = file_key(home, "memory.events", "max");
    if (setting != ROOT)
        check_empty(home, home_path);
    for (int i = 0; event == DESTROY && i < TEMPS; i++)
        if (temps[i].h)
            check_empty(temps[i].h, temps[i].path);
    group_stat(root, &st, "/");
    if (st.current != root_base || st.stock != 0)
        error("/: memory.current %llu (stock %llu) after free, drain and reclaim, %llu at the "
              "start",
              (unsigned long long)st.current, (unsigned long long)st.stock,
              (unsigned long long)root_base);
    if (setting == MAX && limit_hits <= 0)
        error("%s: memory.max was never hit (memory.events max %lld)", home_path, limit_hits);

    /* Destroyed, the cell's groups must all be freed: nothing holds a charge on them. */
    for (int i = 0; event == DESTROY && i < TEMPS; i++) {
        int rc = cgm_group_destroy(temps[i].h);
        if (rc != 0)
            error("cgm_group_destroy(%s) at the end: %s", temps[i].path, cgm_strerror(rc));
    }
    if (setting != ROOT) {
        int rc = cgm_group_destroy(home);
        if (rc != 0)
            error("cgm_group_destroy(%s) at the end: %s", home_path, cgm_strerror(rc));
    }
    long long live = file_key(root, "cgroup.stat", "nr_descendants");
    long long dying = file_key(root, "cgroup.stat", "nr_dying_descendants");
    if (live != 0 || dying != 0)
        error("/: %lld live and %lld dying descendants after every group was destroyed", live,
              dying);

    long f = atomic_load(&forks), d = atomic_load(&kids.died), x = atomic_load(&kids.failed),
         h = atomic_load(&kids.hung);
    out_line("cell %s: forks %ld died %ld failed %ld hung %ld allocs %ld nulls %ld events %ld "
             "limit_hits %lld seconds %.2f",
             cell, f, d, x, h, atomic_load(&allocs), atomic_load(&nulls),
             atomic_load(&events_fired), limit_hits, now_s() - t0);
    int ok = atomic_load(&errors) == 0 && !audit_failed && d == 0 && x == 0 && h == 0;
    out_line("result: %s", ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}
