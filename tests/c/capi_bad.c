/*
 * Malformed calls of the C control API: each must return its documented negative errno
 * (INTERFACE.md "The C control API", "Precise points") and change nothing.
 *
 * "Nothing" is checked around every call with a full snapshot of a sentinel group (with
 * limits, explicit charges, a child and events), its parent and the root: struct
 * cgm_stat, the text of every readable interface file, the group's path, the handles
 * that a set of paths open to, the calling thread's group, the lowest free file
 * descriptor (no descriptor leaked or closed) and a watched descriptor; and the
 * out-parameters, prefilled with a magic value, must still hold it.
 *
 * Run linked against libcgmalloc.so or built with -DCGM_DLSYM and preloaded (capi_dl.h).
 * Prints "capi_bad: N malformed calls checked" and exits 0, or names every failure on
 * stderr and exits 1. Driven by tests/capi/main.rs.
 */
#define _GNU_SOURCE
#include "cgmalloc.h"
#include "show.h"
#include "capi_dl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KIB ((uint64_t)1 << 10)
#define MIB ((uint64_t)1 << 20)
#define PAGE ((uint64_t)4096)
#define MAGIC 0xa5a5a5a5a5a5a5a5ULL

static unsigned ncalls, failures;
static const char *label = ""; /* what the current loop iterates over */

static void fail(int line, const char *what, const char *detail)
{
    failures++;
    fprintf(stderr, "capi_bad.c:%d: %s%s%s: %s\n", line, label, *label ? ": " : "", what,
            detail);
}

/* Setup steps must succeed. */
static void must(int r, const char *what)
{
    if (r != 0) {
        fprintf(stderr, "capi_bad: setup: %s returned %d (%s)\n", what, r, cgm_strerror(r));
        exit(1);
    }
}

/* ------------------------------------------------------------------------------------ */
/* The groups. */

static cgm_group_t root, parent, sentinel, child, busy, dying, gone, old_x, new_x;
static int other_fd = -1;   /* a threshold eventfd of new_x: must stay open */
static int removed_fd = -1; /* a threshold eventfd of new_x, removed */
static uint64_t removed_id; /* a reclaimer id, removed */

static int never_reclaim_calls, never_oom_calls;

static size_t never_reclaim(void *ctx, cgm_group_t group, size_t wanted)
{
    (void)ctx;
    (void)group;
    (void)wanted;
    never_reclaim_calls++;
    return 0;
}

static int never_oom(void *ctx, const struct cgm_oom_info *info)
{
    (void)ctx;
    (void)info;
    never_oom_calls++;
    return CGM_OOM_FAIL;
}

/* A thread attached to `busy` until released. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int busy_state; /* 0 starting, 1 attached, -1 attach failed, 2 released */

static void *busy_main(void *arg)
{
    (void)arg;
    int r = cgm_thread_attach(busy);
    pthread_mutex_lock(&mu);
    busy_state = r == 0 ? 1 : -1;
    pthread_cond_broadcast(&cv);
    while (busy_state != 2)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Snapshots. */

static const char *const files[] = {
    "memory.current",      "memory.peak",       "memory.max",
    "memory.high",         "memory.low",        "memory.min",
    "memory.soft_limit_in_bytes", "memory.failcnt", "memory.oom.policy",
    "memory.events",       "memory.events.local", "memory.stat",
    "cgroup.stat",         "cgroup.threads",
};
#define NFILES ((int)(sizeof files / sizeof files[0]))
enum { F_CURRENT = 0, F_PEAK = 1, F_FAILCNT = 7, F_EVENTS = 9, F_EVENTS_LOCAL = 10, F_STAT = 11 };

static const struct {
    const char *name;
    size_t off;
} stat_fields[] = {
#define FIELD(f) {#f, offsetof(struct cgm_stat, f)}
    FIELD(current),    FIELD(peak),       FIELD(max),         FIELD(high),
    FIELD(low),        FIELD(min),        FIELD(soft_limit),  FIELD(failcnt),
    FIELD(stock),      FIELD(events_low), FIELD(events_high), FIELD(events_max),
    FIELD(events_oom), FIELD(events_oom_kill),
#undef FIELD
};
#define NFIELDS ((int)(sizeof stat_fields / sizeof stat_fields[0]))

static uint64_t *field(struct cgm_stat *s, int i)
{
    return (uint64_t *)((char *)s + stat_fields[i].off);
}

struct gsnap {
    int stat_rc;
    struct cgm_stat st;
    long len[NFILES];
    char text[NFILES][1024];
    long path_len;
    char path[256];
};

/* The groups of a snapshot. */
enum { S_SENTINEL, S_PARENT, S_ROOT, NGROUPS };
static const char *const group_names[NGROUPS] = {"sentinel", "parent", "root"};

/*
 * What is left out of the comparison, and why:
 * - the root's memory.current, memory.peak and memory.stat, and the `current`, `peak` and
 *   `stock` fields of its struct cgm_stat: this program's own allocations (stdio, the
 *   helper thread's start) are charged to the root, where the main thread is attached,
 *   and its thread stock moves with them; memory.stat also carries the allocator's live
 *   byte counts (`allocated`, `small`, `large`, `cached`), which move with any malloc.
 * Everything of the sentinel and its parent is compared: no thread of this program
 * allocates in them, they hold explicit charges only, and no stock caches them (drained
 * after setup). The root's limits, failcnt, hierarchical events, cgroup.stat and
 * cgroup.threads are compared too.
 */
static int excluded_file(int g, int f)
{
    return g == S_ROOT && (f == F_CURRENT || f == F_PEAK || f == F_STAT);
}

static int excluded_field(int g, int i)
{
    const char *n = stat_fields[i].name;
    return g == S_ROOT &&
           (strcmp(n, "current") == 0 || strcmp(n, "peak") == 0 || strcmp(n, "stock") == 0);
}

static const char *const watched_paths[] = {
    "/",          "/capi_bad",      "/capi_bad/s",      "/capi_bad/s/c", "/capi_bad/busy",
    "/capi_bad/x", "/capi_bad/dying", "/capi_bad/gone", "/capi_bad/new", "/capi_bad/s/new",
};
#define NPATHS ((int)(sizeof watched_paths / sizeof watched_paths[0]))

struct snapshot {
    struct gsnap g[NGROUPS];
    int open_rc[NPATHS];
    cgm_group_t opened[NPATHS];
    cgm_group_t thread_group;
    int lowest_free_fd;
    int other_fd_flags;
};

static struct snapshot before, after;

static void take_group(struct gsnap *s, cgm_group_t h)
{
    memset(s, 0, sizeof *s);
    s->stat_rc = cgm_group_stat(h, &s->st);
    for (int f = 0; f < NFILES; f++)
        s->len[f] = cgm_group_read(h, files[f], s->text[f], sizeof s->text[f]);
    s->path_len = cgm_group_path(h, s->path, sizeof s->path);
}

static void take(struct snapshot *s)
{
    take_group(&s->g[S_SENTINEL], sentinel);
    take_group(&s->g[S_PARENT], parent);
    take_group(&s->g[S_ROOT], root);
    for (int i = 0; i < NPATHS; i++) {
        s->opened[i] = 0;
        s->open_rc[i] = cgm_group_open(watched_paths[i], &s->opened[i]);
    }
    s->thread_group = cgm_thread_group();
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->lowest_free_fd = fd;
    if (fd >= 0)
        close(fd);
    s->other_fd_flags = fcntl(other_fd, F_GETFD);
}

/* Sanity of a snapshot taken right after setup: everything readable. */
static void check_snapshot_sane(const struct snapshot *s)
{
    for (int g = 0; g < NGROUPS; g++) {
        const struct gsnap *gs = &s->g[g];
        if (gs->stat_rc != 0 || gs->path_len <= 0) {
            fprintf(stderr, "capi_bad: setup: the %s group cannot be read\n", group_names[g]);
            exit(1);
        }
        for (int f = 0; f < NFILES; f++) {
            int empty_ok = f == NFILES - 1; /* cgroup.threads */
            if (gs->len[f] < 0 || (gs->len[f] == 0 && !empty_ok) ||
                gs->len[f] >= (long)sizeof gs->text[f]) {
                fprintf(stderr, "capi_bad: setup: %s of the %s group reads %ld\n", files[f],
                        group_names[g], gs->len[f]);
                exit(1);
            }
        }
    }
    if (s->other_fd_flags < 0 || s->lowest_free_fd < 0) {
        fprintf(stderr, "capi_bad: setup: descriptors\n");
        exit(1);
    }
}

/* Reports every difference between the expected and the actual snapshot. */
static void compare(int line, const char *call, const struct snapshot *want,
                    const struct snapshot *got)
{
    char what[512];
    for (int g = 0; g < NGROUPS; g++) {
        const struct gsnap *a = &want->g[g], *b = &got->g[g];
        const char *gn = group_names[g];
        if (a->stat_rc != b->stat_rc) {
            snprintf(what, sizeof what, "changed: cgm_group_stat of the %s group: %d, then %d",
                     gn, a->stat_rc, b->stat_rc);
            fail(line, call, what);
        }
        for (int i = 0; i < NFIELDS; i++) {
            struct cgm_stat sa = a->st, sb = b->st;
            if (excluded_field(g, i) || *field(&sa, i) == *field(&sb, i))
                continue;
            snprintf(what, sizeof what,
                     "changed struct cgm_stat.%s of the %s group: %llu, then %llu",
                     stat_fields[i].name, gn, (unsigned long long)*field(&sa, i),
                     (unsigned long long)*field(&sb, i));
            fail(line, call, what);
        }
        for (int f = 0; f < NFILES; f++) {
            if (excluded_file(g, f))
                continue;
            if (a->len[f] != b->len[f] || strcmp(a->text[f], b->text[f]) != 0) {
                snprintf(what, sizeof what, "changed %s of the %s group: \"%s\" (%ld), then "
                         "\"%s\" (%ld)", files[f], gn, show(a->text[f]), a->len[f],
                         show(b->text[f]), b->len[f]);
                fail(line, call, what);
            }
        }
        if (a->path_len != b->path_len || strcmp(a->path, b->path) != 0) {
            snprintf(what, sizeof what, "changed the path of the %s group: %s, then %s", gn,
                     a->path, b->path);
            fail(line, call, what);
        }
    }
    for (int i = 0; i < NPATHS; i++) {
        if (want->open_rc[i] != got->open_rc[i] || want->opened[i] != got->opened[i]) {
            snprintf(what, sizeof what, "changed cgm_group_open(\"%s\"): %d %#llx, then %d %#llx",
                     watched_paths[i], want->open_rc[i], (unsigned long long)want->opened[i],
                     got->open_rc[i], (unsigned long long)got->opened[i]);
            fail(line, call, what);
        }
    }
    if (want->thread_group != got->thread_group)
        fail(line, call, "changed the calling thread's group");
    if (want->lowest_free_fd != got->lowest_free_fd) {
        snprintf(what, sizeof what, "leaked or closed a descriptor: the lowest free one was %d, "
                 "then %d", want->lowest_free_fd, got->lowest_free_fd);
        fail(line, call, what);
    }
    if (want->other_fd_flags != got->other_fd_flags)
        fail(line, call, "closed another group's threshold eventfd");
}

/* ------------------------------------------------------------------------------------ */
/* Out-parameters, prefilled with MAGIC before each call. */

static cgm_group_t out_h;
static uint64_t out_id;
static struct cgm_stat out_st;
static struct cgm_pressure out_psi;
static char out_buf[64];

static void prefill(void)
{
    out_h = MAGIC;
    out_id = MAGIC;
    memset(&out_st, 0xa5, sizeof out_st);
    memset(&out_psi, 0xa5, sizeof out_psi);
    memset(out_buf, 0xa5, sizeof out_buf);
}

static void check_outs(int line)
{
    unsigned char magic[sizeof(struct cgm_stat) > sizeof out_buf ? sizeof(struct cgm_stat)
                                                                  : sizeof out_buf];
    memset(magic, 0xa5, sizeof magic);
    if (out_h != MAGIC)
        fail(line, "wrote an out-parameter on failure", "cgm_group_t *out");
    if (out_id != MAGIC)
        fail(line, "wrote an out-parameter on failure", "uint64_t *id_out");
    if (memcmp(&out_st, magic, sizeof out_st) != 0)
        fail(line, "wrote an out-parameter on failure", "struct cgm_stat *out");
    if (memcmp(&out_psi, magic, sizeof out_psi) != 0)
        fail(line, "wrote an out-parameter on failure", "struct cgm_pressure *out");
    if (memcmp(out_buf, magic, sizeof out_buf) != 0)
        fail(line, "wrote an out-parameter on failure", "the text buffer");
}

/* ------------------------------------------------------------------------------------ */
/* One malformed call. */

static void adjust_none(struct snapshot *s)
{
    (void)s;
}

static void after_call(int line, const char *call, long want, long got,
                       void (*expected)(struct snapshot *))
{
    char what[512];
    ncalls++;
    if (got != want) {
        snprintf(what, sizeof what, "returned %ld (%s), want %ld (%s)", got,
                 cgm_strerror((int)got), want, cgm_strerror((int)want));
        fail(line, call, what);
    }
    check_outs(line);
    take(&after);
    struct snapshot exp = before;
    expected(&exp);
    compare(line, call, &exp, &after);
}

/* `call` must return `want` and change nothing (but what `expected` applies). */
#define BAD_EXPECT(want, call, expected)                          \
    do {                                                          \
        prefill();                                                \
        take(&before);                                            \
        long r_ = (long)(call);                                   \
        after_call(__LINE__, #call, (long)(want), r_, expected); \
    } while (0)

#define BAD(want, call) BAD_EXPECT(want, call, adjust_none)

/* Adds 1 to the number on line `key N` of a key-value text. */
static void bump_line(char *text, long *len, const char *key)
{
    size_t klen = strlen(key);
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        if (!nl)
            return;
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            char rest[1024];
            unsigned long long v = strtoull(line + klen + 1, NULL, 10);
            snprintf(rest, sizeof rest, "%s", nl);
            sprintf(line + klen + 1, "%llu%s", v + 1, rest);
            *len = (long)strlen(text);
            return;
        }
        line = nl + 1;
    }
}

/*
 * A charge refused at the sentinel's max with CGM_CHARGE_NORETRY, for at least the 32-page
 * batch (so that it is tried once): one failcnt, one `max` event (hierarchical up to the
 * root, local to the sentinel), nothing else.
 */
static void adjust_refused(struct snapshot *s)
{
    struct gsnap *g = &s->g[S_SENTINEL];
    g->st.failcnt++;
    g->len[F_FAILCNT] = sprintf(g->text[F_FAILCNT], "%llu\n", (unsigned long long)g->st.failcnt);
    bump_line(g->text[F_EVENTS_LOCAL], &g->len[F_EVENTS_LOCAL], "max");
    for (int i = 0; i < NGROUPS; i++) {
        s->g[i].st.events_max++;
        bump_line(s->g[i].text[F_EVENTS], &s->g[i].len[F_EVENTS], "max");
    }
}

/* ------------------------------------------------------------------------------------ */

static void setup(void)
{
    root = cgm_root();
    must(cgm_group_create("/capi_bad", &parent), "create /capi_bad");
    must(cgm_group_create("/capi_bad/s", &sentinel), "create /capi_bad/s");
    must(cgm_group_create("/capi_bad/s/c", &child), "create /capi_bad/s/c");
    must(cgm_group_write(parent, "memory.max", "64M"), "parent memory.max");
    must(cgm_group_write(parent, "memory.oom.policy", "force"), "parent memory.oom.policy");
    must(cgm_group_write(sentinel, "memory.max", "1M"), "memory.max");
    must(cgm_group_write(sentinel, "memory.high", "768K"), "memory.high");
    must(cgm_group_write(sentinel, "memory.low", "64K"), "memory.low");
    must(cgm_group_write(sentinel, "memory.min", "32K"), "memory.min");
    must(cgm_group_write(sentinel, "memory.soft_limit_in_bytes", "512K"), "soft limit");
    must(cgm_group_write(sentinel, "memory.oom.policy", "fail"), "memory.oom.policy");
    /* Usage and events: a `high` event, then a refused charge (max, oom, oom_kill). */
    must(cgm_charge(sentinel, 100 * KIB, 0), "charge");
    must(cgm_charge(sentinel, 800 * KIB, CGM_CHARGE_NORETRY), "charge above high");
    must(cgm_uncharge(sentinel, 800 * KIB), "uncharge");
    if (cgm_charge(sentinel, 2 * MIB, 0) != -ENOMEM) {
        fprintf(stderr, "capi_bad: setup: a charge over max was not refused\n");
        exit(1);
    }
    must(cgm_charge(child, 8 * KIB, 0), "charge the child");

    /* A thread attached to /capi_bad/busy. */
    must(cgm_group_create("/capi_bad/busy", &busy), "create /capi_bad/busy");
    pthread_t th;
    if (pthread_create(&th, NULL, busy_main, NULL) != 0) {
        fprintf(stderr, "capi_bad: setup: pthread_create\n");
        exit(1);
    }
    pthread_detach(th);
    pthread_mutex_lock(&mu);
    while (busy_state == 0)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    must(busy_state == 1 ? 0 : -EINVAL, "attach the helper thread");

    /* A dying group (destroyed with a charge), a destroyed one, a path re-created. */
    must(cgm_group_create("/capi_bad/dying", &dying), "create /capi_bad/dying");
    must(cgm_charge(dying, 4096, 0), "charge /capi_bad/dying");
    must(cgm_group_destroy(dying), "destroy /capi_bad/dying");
    must(cgm_group_create("/capi_bad/gone", &gone), "create /capi_bad/gone");
    must(cgm_group_destroy(gone), "destroy /capi_bad/gone");
    must(cgm_group_create("/capi_bad/x", &old_x), "create /capi_bad/x");
    must(cgm_group_destroy(old_x), "destroy /capi_bad/x");
    must(cgm_group_create("/capi_bad/x", &new_x), "re-create /capi_bad/x");
    if (new_x == old_x) {
        fprintf(stderr, "capi_bad: setup: a re-created group got its old handle back\n");
        exit(1);
    }

    /* Registrations that end, and one that stays. */
    other_fd = cgm_threshold_eventfd(new_x, MIB);
    removed_fd = cgm_threshold_eventfd(new_x, 2 * MIB);
    must(other_fd < 0 ? other_fd : 0, "threshold");
    must(removed_fd < 0 ? removed_fd : 0, "threshold");
    must(cgm_threshold_remove(new_x, removed_fd), "threshold_remove");
    must(cgm_reclaimer_add(new_x, never_reclaim, NULL, &removed_id), "reclaimer_add");
    must(cgm_reclaimer_remove(removed_id), "reclaimer_remove");

    /* No stock caches a group of /capi_bad from now on. */
    must(cgm_drain_stocks(), "drain");
}

/* A string of 4,097 non-NUL bytes that ends where readable memory ends: a library that
 * reads more than MAX_STRING + 1 bytes faults. */
static const char *unterminated(char first, char fill)
{
    long pg = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, (size_t)(3 * pg), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (m == MAP_FAILED || mprotect(m + 2 * pg, (size_t)pg, PROT_NONE) != 0) {
        perror("capi_bad: mmap");
        exit(1);
    }
    char *s = m + 2 * pg - 4097;
    memset(s, fill, 4097);
    s[0] = first;
    return s;
}

static char *repeat(char first, char fill, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        exit(1);
    memset(s, fill, n);
    s[0] = first;
    s[n] = 0;
    return s;
}

int main(void)
{
    cgm_resolve_api();
    setup();
    take(&before);
    check_snapshot_sane(&before);

    /* Prepared strings (allocated before the checks start). */
    const char *unterm_path = unterminated('/', 'a');
    const char *unterm_file = unterminated('m', 'x');
    const char *unterm_value = unterminated('1', '0');
    char *long5000 = repeat('/', 'a', 5000);
    char *exactly4096 = repeat('/', 'a', 4096); /* a string the library reads, not a path */
    char *name65 = repeat('/', 'n', 1 + 65);
    char deep17[256] = "";
    for (int d = 1; d <= 17; d++)
        sprintf(deep17 + strlen(deep17), "/d%d", d);
    char deep16_missing[256] = "/capi_bad";
    for (int d = 2; d <= 16; d++)
        sprintf(deep16_missing + strlen(deep16_missing), "/d%d", d);

    /* ---- -ENOENT: handles that name no live group, for every function taking one. ---- */
    const struct {
        const char *name;
        cgm_group_t h;
    } bad_handles[] = {
        {"handle 0", 0},
        {"handle 0xdeadbeef", 0xdeadbeef},
        {"handle UINT64_MAX", UINT64_MAX},
        {"handle 0xa5a5a5a5a5a5a5a5", MAGIC},
        {"a destroyed group's handle", gone},
        {"a dying group's handle", dying},
        {"the old handle of a re-created path", old_x},
        {"the sentinel's handle with the top bit flipped", sentinel ^ (1ULL << 63)},
        {"the root's handle inverted", ~root},
    };
    for (size_t i = 0; i < sizeof bad_handles / sizeof bad_handles[0]; i++) {
        cgm_group_t h = bad_handles[i].h;
        label = bad_handles[i].name;
        BAD(-ENOENT, cgm_group_destroy(h));
        BAD(-ENOENT, cgm_group_path(h, out_buf, sizeof out_buf));
        BAD(-ENOENT, cgm_group_path(h, NULL, 0));
        BAD(-ENOENT, cgm_thread_attach(h));
        BAD(-ENOENT, cgm_group_read(h, "memory.current", out_buf, sizeof out_buf));
        BAD(-ENOENT, cgm_group_read(h, "memory.max", NULL, 0));
        BAD(-ENOENT, cgm_group_write(h, "memory.max", "1M"));
        BAD(-ENOENT, cgm_group_write(h, "memory.reclaim", "4K"));
        BAD(-ENOENT, cgm_group_stat(h, &out_st));
        BAD(-ENOENT, cgm_reclaimer_add(h, never_reclaim, NULL, &out_id));
        BAD(-ENOENT, cgm_oom_handler_set(h, never_oom, NULL));
        BAD(-ENOENT, cgm_oom_handler_set(h, NULL, NULL));
        BAD(-ENOENT, cgm_threshold_eventfd(h, 4096));
        BAD(-ENOENT, cgm_threshold_remove(h, other_fd));
        BAD(-ENOENT, cgm_group_pressure(h, &out_psi));
        BAD(-ENOENT, cgm_pressure_eventfd(h, "some", 100000, 1000000));
        BAD(-ENOENT, cgm_pressure_remove(h, other_fd));
        BAD(-ENOENT, cgm_charge(h, 4096, 0));
        BAD(-ENOENT, cgm_charge(h, 4096, CGM_CHARGE_FORCE));
        BAD(-ENOENT, cgm_charge(h, 4096, CGM_CHARGE_NORETRY));
        if (h != dying) /* cgm_uncharge works on a dying group (below) */
            BAD(-ENOENT, cgm_uncharge(h, 4096));
        BAD(-ENOENT, cgm_group_reclaim(h, 4096));
    }
    label = "";

    /* ---- -EINVAL: NULL strings and out-parameters. ---- */
    BAD(-EINVAL, cgm_group_create(NULL, &out_h));
    BAD(-EINVAL, cgm_group_create("/capi_bad/new", NULL));
    BAD(-EINVAL, cgm_group_create("/capi_bad/s/new", NULL));
    BAD(-EINVAL, cgm_group_open(NULL, &out_h));
    BAD(-EINVAL, cgm_group_open("/capi_bad/s", NULL));
    BAD(-EINVAL, cgm_group_read(sentinel, NULL, out_buf, sizeof out_buf));
    BAD(-EINVAL, cgm_group_read(sentinel, NULL, NULL, 0));
    BAD(-EINVAL, cgm_group_write(sentinel, NULL, "1M"));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.max", NULL));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.peak", NULL));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.oom.policy", NULL));
    BAD(-EINVAL, cgm_group_write(sentinel, NULL, NULL));
    BAD(-EINVAL, cgm_group_stat(sentinel, NULL));
    BAD(-EINVAL, cgm_group_stat(root, NULL));
    BAD(-EINVAL, cgm_reclaimer_add(sentinel, NULL, NULL, &out_id));
    BAD(-EINVAL, cgm_reclaimer_add(sentinel, never_reclaim, NULL, NULL));
    BAD(-EINVAL, cgm_reclaimer_add(sentinel, NULL, NULL, NULL));
    BAD(-EINVAL, cgm_group_pressure(sentinel, NULL));
    BAD(-EINVAL, cgm_pressure_eventfd(sentinel, NULL, 100000, 1000000));
    /* Pressure triggers: a kind, a window of 500 ms..10 s, a stall of 1 us..the window. */
    BAD(-EINVAL, cgm_pressure_eventfd(sentinel, "", 100000, 1000000));
    BAD(-EINVAL, cgm_pressure_eventfd(sentinel, "Some", 100000, 1000000));
    BAD(-EINVAL, cgm_pressure_eventfd(sentinel, "some ", 100000, 1000000));
    BAD(-EINVAL, cgm_pressure_eventfd(sentinel, "some", 100000, 0));
    BAD(-EINVAL, cgm_pressure_eventfd(sentinel, "some", 100000, 499999));
    BAD(-EINVAL, cgm_pressure_eventfd(sentinel, "full", 100000, 10000001));
    BAD(-EINVAL, cgm_pressure_eventfd(sentinel, "full", 100000, UINT64_MAX));
    BAD(-EINVAL, cgm_pressure_eventfd(sentinel, "some", 0, 1000000));
    BAD(-EINVAL, cgm_pressure_eventfd(sentinel, "some", 1000001, 1000000));
    BAD(-EINVAL, cgm_pressure_eventfd(root, "full", UINT64_MAX, 1000000));
    /* A NULL buffer with len > 0. */
    BAD(-EINVAL, cgm_group_read(sentinel, "memory.max", NULL, 1));
    BAD(-EINVAL, cgm_group_read(sentinel, "memory.stat", NULL, 4096));
    BAD(-EINVAL, cgm_group_path(sentinel, NULL, 1));
    BAD(-EINVAL, cgm_group_path(root, NULL, 64));

    /* ---- -EINVAL: malformed paths, for create and open. ---- */
    const char *bad_paths[] = {
        "", "a", "capi_bad", "capi_bad/s", "/a/", "//", "/.", "/..", "/capi_bad/.",
        "/capi_bad/..", "/capi_bad/../capi_bad", "/capi_bad//s", "/capi_bad/s/", "///",
        "/a b", "/a*", "/a?", "/caf\xc3\xa9", "/a\n", "/a\t", " /capi_bad", "/capi_bad ",
        "/capi_bad\\s", "/capi_bad/s:c", name65, deep17, long5000, exactly4096, unterm_path,
    };
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "path #%zu \"%.20s\"", i, bad_paths[i]);
        label = name;
        BAD(-EINVAL, cgm_group_create(bad_paths[i], &out_h));
        BAD(-EINVAL, cgm_group_open(bad_paths[i], &out_h));
    }
    label = "";

    /* ---- -EINVAL: unknown interface files, read and write. ---- */
    const char *bad_files[] = {
        "", "memory", "memory.", "memory.nope", "MEMORY.MAX", "memory.max ", " memory.max",
        "memory.max\n", "memory.maxx", "memory.events.locall", "cgroup.procs", "cgroup.events",
        "memory.swap.max", "/memory.max", "../memory.max", "memory.max/", unterm_file,
    };
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "file #%zu \"%.20s\"", i, bad_files[i]);
        label = name;
        BAD(-EINVAL, cgm_group_read(sentinel, bad_files[i], out_buf, sizeof out_buf));
        BAD(-EINVAL, cgm_group_read(sentinel, bad_files[i], NULL, 0));
        BAD(-EINVAL, cgm_group_write(sentinel, bad_files[i], "1M"));
        BAD(-EINVAL, cgm_group_write(root, bad_files[i], "0"));
    }
    label = "";

    /* ---- -EINVAL: malformed size strings, for every file that takes one. ---- */
    const char *bad_sizes[] = {
        "12Q", "-1", "1.5G", "", " ", "\n", "\n\n\n x", "99999999999999999999",
        "18446744073709551616", "17179869184G", "16777216T", "1 K", "0x10", "max max",
        "MAX", "maxx", "1KB", "+5", "1e3", "K", "%", "101%", "-5%", "1,000", "1_000",
        unterm_value,
    };
    const char *size_files[] = {"memory.max", "memory.high", "memory.low", "memory.min",
                                "memory.soft_limit_in_bytes", "memory.reclaim"};
    for (size_t f = 0; f < sizeof size_files / sizeof size_files[0]; f++) {
        for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
            char name[96];
            snprintf(name, sizeof name, "%s = \"%.20s\"", size_files[f], bad_sizes[i]);
            label = name;
            BAD(-EINVAL, cgm_group_write(sentinel, size_files[f], bad_sizes[i]));
        }
    }
    label = "";
    BAD(-EINVAL, cgm_group_write(parent, "memory.max", "12Q"));
    BAD(-EINVAL, cgm_group_write(root, "memory.max", "-1"));
    BAD(-EINVAL, cgm_group_write(root, "memory.high", "1.5G"));
    /* memory.failcnt takes 0 only; memory.oom.policy one of three words. */
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.failcnt", "5"));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.failcnt", "max"));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.failcnt", "abc"));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.failcnt", ""));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.oom.policy", "kill"));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.oom.policy", ""));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.oom.policy", "FAIL"));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.oom.policy", "fail fail"));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.oom.policy", "failx"));
    BAD(-EINVAL, cgm_group_write(sentinel, "memory.oom.policy", "inherit"));
    BAD(-EINVAL, cgm_group_write(root, "memory.oom.policy", "none"));

    /* ---- -EINVAL: unknown charge flags. ---- */
    const int bad_flags[] = {4, 8, 0x100, -1, INT_MIN, INT_MAX, CGM_CHARGE_FORCE | 4};
    for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "flags %d", bad_flags[i]);
        label = name;
        BAD(-EINVAL, cgm_charge(sentinel, 4096, bad_flags[i]));
        BAD(-EINVAL, cgm_charge(root, 4096, bad_flags[i]));
    }
    label = "";

    /* ---- -EINVAL: cgm_uncharge of more than was charged explicitly to that group. ---- */
    BAD(-EINVAL, cgm_uncharge(sentinel, 100 * KIB + PAGE)); /* 25 pages are charged */
    BAD(-EINVAL, cgm_uncharge(sentinel, 26 * PAGE));
    BAD(-EINVAL, cgm_uncharge(sentinel, UINT64_MAX));
    BAD(-EINVAL, cgm_uncharge(child, 8 * KIB + 1));
    BAD(-EINVAL, cgm_uncharge(parent, PAGE)); /* its children's charges are not its own */
    BAD(-EINVAL, cgm_uncharge(root, PAGE));
    BAD(-EINVAL, cgm_uncharge(new_x, 1));
    BAD(-EINVAL, cgm_uncharge(busy, PAGE));
    BAD(-EINVAL, cgm_uncharge(dying, 2 * PAGE)); /* dying with one page */

    /* ---- -EACCES: writing a read-only file, reading a write-only one. ---- */
    const char *read_only[] = {"memory.current", "memory.events", "memory.events.local",
                               "memory.stat", "cgroup.threads", "cgroup.stat"};
    for (size_t i = 0; i < sizeof read_only / sizeof read_only[0]; i++) {
        label = read_only[i];
        BAD(-EACCES, cgm_group_write(sentinel, read_only[i], "0"));
        BAD(-EACCES, cgm_group_write(sentinel, read_only[i], "max"));
        BAD(-EACCES, cgm_group_write(root, read_only[i], "0"));
    }
    label = "";
    BAD(-EACCES, cgm_group_read(sentinel, "memory.reclaim", out_buf, sizeof out_buf));
    BAD(-EACCES, cgm_group_read(sentinel, "memory.reclaim", NULL, 0));
    BAD(-EACCES, cgm_group_read(root, "memory.reclaim", out_buf, sizeof out_buf));

    /* ---- -EEXIST. ---- */
    BAD(-EEXIST, cgm_group_create("/", &out_h));
    BAD(-EEXIST, cgm_group_create("/capi_bad", &out_h));
    BAD(-EEXIST, cgm_group_create("/capi_bad/s", &out_h));
    BAD(-EEXIST, cgm_group_create("/capi_bad/s/c", &out_h));
    BAD(-EEXIST, cgm_group_create("/capi_bad/busy", &out_h));
    BAD(-EEXIST, cgm_group_create("/capi_bad/x", &out_h));

    /* ---- -ENOENT: missing parents and paths. ---- */
    BAD(-ENOENT, cgm_group_create("/capi_bad_nope/child", &out_h));
    BAD(-ENOENT, cgm_group_create("/capi_bad/nope/child", &out_h));
    BAD(-ENOENT, cgm_group_create("/capi_bad/dying/child", &out_h)); /* a dying parent */
    BAD(-ENOENT, cgm_group_create("/capi_bad/gone/child", &out_h));
    BAD(-ENOENT, cgm_group_create(deep16_missing, &out_h));
    BAD(-ENOENT, cgm_group_open("/capi_bad/nope", &out_h));
    BAD(-ENOENT, cgm_group_open("/capi_bad/dying", &out_h));
    BAD(-ENOENT, cgm_group_open("/capi_bad/gone", &out_h));
    BAD(-ENOENT, cgm_group_open("/capi_bad/s/c/nope", &out_h));
    BAD(-ENOENT, cgm_group_open("/nope/s", &out_h));
    BAD(-ENOENT, cgm_group_open("/S", &out_h));

    /* ---- -EBUSY and -EPERM. ---- */
    BAD(-EBUSY, cgm_group_destroy(sentinel)); /* a child */
    BAD(-EBUSY, cgm_group_destroy(parent));   /* children */
    BAD(-EBUSY, cgm_group_destroy(busy));     /* an attached thread */
    BAD(-EPERM, cgm_group_destroy(root));

    /* ---- -ENOENT: reclaimer ids and threshold descriptors that are not registered. ---- */
    BAD(-ENOENT, cgm_reclaimer_remove(0));
    BAD(-ENOENT, cgm_reclaimer_remove(UINT64_MAX));
    BAD(-ENOENT, cgm_reclaimer_remove(1ULL << 40));
    BAD(-ENOENT, cgm_reclaimer_remove(removed_id)); /* removed already */
    BAD(-ENOENT, cgm_reclaimer_remove(removed_id + 1000000));
    BAD(-ENOENT, cgm_threshold_remove(sentinel, 0)); /* stdin: must stay open */
    BAD(-ENOENT, cgm_threshold_remove(sentinel, -1));
    BAD(-ENOENT, cgm_threshold_remove(sentinel, 1000));
    BAD(-ENOENT, cgm_threshold_remove(sentinel, other_fd)); /* another group's */
    BAD(-ENOENT, cgm_threshold_remove(parent, other_fd));
    BAD(-ENOENT, cgm_threshold_remove(new_x, removed_fd)); /* removed already */
    BAD(-ENOENT, cgm_threshold_remove(root, INT_MAX));
    BAD(-ENOENT, cgm_pressure_remove(sentinel, 0)); /* stdin: must stay open */
    BAD(-ENOENT, cgm_pressure_remove(sentinel, -1));
    BAD(-ENOENT, cgm_pressure_remove(new_x, other_fd)); /* a threshold's, not a trigger */
    BAD(-ENOENT, cgm_pressure_remove(root, INT_MAX));

    /* ---- -ENOMEM: refused charges. ---- */
    /* Beyond any memory: refused before anything is counted. */
    BAD(-ENOMEM, cgm_charge(sentinel, UINT64_MAX, 0));
    BAD(-ENOMEM, cgm_charge(sentinel, UINT64_MAX, CGM_CHARGE_NORETRY));
    BAD(-ENOMEM, cgm_charge(sentinel, 1ULL << 60, 0));
    BAD(-ENOMEM, cgm_charge(root, UINT64_MAX, 0));
    /* Over the sentinel's max, fail fast: counters unchanged; failcnt and `max` count. */
    BAD_EXPECT(-ENOMEM, cgm_charge(sentinel, 2 * MIB, CGM_CHARGE_NORETRY), adjust_refused);
    BAD_EXPECT(-ENOMEM, cgm_charge(sentinel, MIB, CGM_CHARGE_NORETRY), adjust_refused);
    BAD_EXPECT(-ENOMEM, cgm_charge(child, 2 * MIB, CGM_CHARGE_NORETRY), adjust_refused);

    /* ---- -ENOSPC: full tables (groups, callbacks, thresholds). ---- */
    /* Fill the group table under /capi_bad_fill (INTERFACE.md: at least 4,096 groups). */
    cgm_group_t fill_parent;
    must(cgm_group_create("/capi_bad_fill", &fill_parent), "create /capi_bad_fill");
    static cgm_group_t filled[1 << 16];
    int nfilled = 0, r;
    for (;;) {
        char path[64];
        cgm_group_t h;
        snprintf(path, sizeof path, "/capi_bad_fill/g%d", nfilled);
        r = cgm_group_create(path, &h);
        if (r != 0 || nfilled + 1 == (int)(sizeof filled / sizeof filled[0]))
            break;
        filled[nfilled++] = h;
    }
    /* The root, /capi_bad_fill, the 7 live groups of /capi_bad and the dying one. */
    if (r != -ENOSPC || nfilled + 10 < 4096) {
        char what[128];
        snprintf(what, sizeof what, "stopped at %d groups with %d (%s)", nfilled + 10, r,
                 cgm_strerror(r));
        fail(__LINE__, "filling the group table", what);
    }
    BAD(-ENOSPC, cgm_group_create("/capi_bad/new", &out_h));
    BAD(-ENOSPC, cgm_group_create("/capi_bad/s/new", &out_h));
    BAD(-EEXIST, cgm_group_create("/capi_bad/s", &out_h));
    BAD(-EINVAL, cgm_group_create("/capi_bad/s/", &out_h));
    /* The callback table, shared by reclaim callbacks and OOM handlers. */
    static uint64_t ids[1 << 12];
    int nids = 0;
    for (;;) {
        r = cgm_reclaimer_add(fill_parent, never_reclaim, NULL, &ids[nids]);
        if (r != 0 || nids + 1 == (int)(sizeof ids / sizeof ids[0]))
            break;
        nids++;
    }
    if (r != -ENOSPC)
        fail(__LINE__, "filling the callback table", "did not end with -ENOSPC");
    BAD(-ENOSPC, cgm_reclaimer_add(sentinel, never_reclaim, NULL, &out_id));
    BAD(-ENOSPC, cgm_oom_handler_set(sentinel, never_oom, NULL));
    BAD(-ENOSPC, cgm_oom_handler_set(parent, never_oom, NULL));
    BAD(-EINVAL, cgm_reclaimer_add(sentinel, NULL, NULL, &out_id));
    for (int i = 0; i < nids; i++)
        must(cgm_reclaimer_remove(ids[i]), "reclaimer_remove");
    /* The threshold table: a refused registration closes both its descriptors. */
    static int fds[1 << 12];
    int nfds = 0;
    for (;;) {
        r = cgm_threshold_eventfd(fill_parent, MIB);
        if (r < 0 || nfds + 1 == (int)(sizeof fds / sizeof fds[0]))
            break;
        fds[nfds++] = r;
    }
    if (r != -ENOSPC)
        fail(__LINE__, "filling the threshold table", "did not end with -ENOSPC");
    BAD(-ENOSPC, cgm_threshold_eventfd(sentinel, 4096));
    BAD(-ENOSPC, cgm_threshold_eventfd(parent, 0));
    for (int i = 0; i < nfds; i++)
        must(cgm_threshold_remove(fill_parent, fds[i]), "threshold_remove");
    for (int i = nfilled - 1; i >= 0; i--)
        must(cgm_group_destroy(filled[i]), "destroy a /capi_bad_fill group");
    must(cgm_group_destroy(fill_parent), "destroy /capi_bad_fill");

    /* Nothing registered by the refused registrations: a reclaim of the subtree calls no
     * callback, an OOM in the sentinel calls no handler. */
    r = cgm_group_reclaim(parent, MIB);
    if (r != -EAGAIN)
        fail(__LINE__, "cgm_group_reclaim(parent, 1M)", "did not return -EAGAIN");
    if (cgm_charge(sentinel, 4 * MIB, 0) != -ENOMEM)
        fail(__LINE__, "cgm_charge(sentinel, 4M, 0)", "was not refused");
    if (never_reclaim_calls != 0)
        fail(__LINE__, "a refused cgm_reclaimer_add", "registered its callback");
    if (never_oom_calls != 0)
        fail(__LINE__, "a refused cgm_oom_handler_set", "installed its handler");
    if (fcntl(other_fd, F_GETFD) < 0)
        fail(__LINE__, "a refused cgm_threshold_remove", "closed the descriptor");

    /* Teardown: the setup was sound, everything can go. */
    pthread_mutex_lock(&mu);
    busy_state = 2;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    must(cgm_threshold_remove(new_x, other_fd), "threshold_remove");
    must(cgm_uncharge(sentinel, 100 * KIB), "uncharge the sentinel");
    must(cgm_uncharge(child, 8 * KIB), "uncharge the child");
    must(cgm_uncharge(dying, PAGE), "uncharge the dying group");
    must(cgm_group_destroy(child), "destroy the child");
    must(cgm_group_destroy(sentinel), "destroy the sentinel");
    must(cgm_group_destroy(new_x), "destroy /capi_bad/x");
    for (int i = 0; i < 1000 && (r = cgm_group_destroy(busy)) == -EBUSY; i++)
        usleep(1000); /* until the helper thread has exited */
    must(r, "destroy /capi_bad/busy");
    must(cgm_drain_stocks(), "drain");
    char stat[128];
    if (cgm_group_read(parent, "cgroup.stat", stat, sizeof stat) < 0 ||
        strcmp(stat, "nr_descendants 0\nnr_dying_descendants 0\n") != 0)
        fail(__LINE__, "teardown", "groups left under /capi_bad");
    if (cgm_group_read(parent, "memory.current", stat, sizeof stat) < 0 ||
        strcmp(stat, "0\n") != 0)
        fail(__LINE__, "teardown", "charges left in /capi_bad");
    must(cgm_group_destroy(parent), "destroy /capi_bad");

    free(long5000);
    free(exactly4096);
    free(name65);
    if (failures) {
        printf("capi_bad: %u failures in %u malformed calls\n", failures, ncalls);
        return 1;
    }
    printf("capi_bad: %u malformed calls checked\n", ncalls);
    return 0;
}
