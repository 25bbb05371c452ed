/*
 * The C control API (INTERFACE.md "The C control API", "Interface files", "Precise
 * points") exercised from C through include/cgmalloc.h: every cgm_* function, every
 * interface file, the reclaim, OOM and threshold callbacks, pressure, explicit charges, dying
 * groups, thread inheritance through pthread_create and fork, and the cgm_ malloc family.
 *
 * Run linked against libcgmalloc.so (-lcgmalloc), or built without it (-DCGM_DLSYM, see
 * capi_dl.h) and run with it preloaded: both must pass.
 * Prints "capi: N checks passed" and exits 0, or names every failed check on stderr and
 * exits 1. Driven by tests/capi/main.rs; built with -std=c11 -Wall -Wextra -Werror
 * -pthread -fno-builtin (so that every malloc and free really reaches the allocator).
 *
 * The main thread prints nothing while it is attached to a limited group (stdio
 * allocates), except the failure lines on stderr, which is unbuffered.
 */
#define _GNU_SOURCE
#include "cgmalloc.h"
#include "show.h"
#include "capi_dl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KIB ((uint64_t)1 << 10)
#define MIB ((uint64_t)1 << 20)
#define PAGE ((uint64_t)4096)
/* What kv() and file_u64() return for a missing key or an unreadable file. */
#define NOVAL ((uint64_t)0xdead0000dead0000ULL)

static unsigned checks, failures;

static void check_(int ok, const char *file, int line, const char *expr)
{
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expr);
    }
}

static void check_eq_(unsigned long long a, unsigned long long b, const char *file, int line,
                      const char *ea, const char *eb)
{
    checks++;
    if (a != b) {
        failures++;
        fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n", file, line, ea, eb,
                (long long)a, (long long)b);
    }
}

#define CHECK(cond) check_((cond) != 0, __FILE__, __LINE__, #cond)
/* Integers of any type compared as 64-bit values; both printed (signed) on failure. */
#define CHECK_EQ(a, b) \
    check_eq_((unsigned long long)(a), (unsigned long long)(b), __FILE__, __LINE__, #a, #b)

static pid_t tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}


/* Reads an interface file into buf (NUL-terminated); returns cgm_group_read's result. */
static long readf(cgm_group_t g, const char *file, char *buf, size_t len)
{
    memset(buf, 0, len);
    return cgm_group_read(g, file, buf, len);
}

static void check_file_(cgm_group_t g, const char *file, const char *want, const char *src,
                        int line)
{
    char buf[2048];
    long n = readf(g, file, buf, sizeof buf);
    checks++;
    if (n != (long)strlen(want) || strcmp(buf, want) != 0) {
        failures++;
        fprintf(stderr, "%s:%d: CHECK failed: %s reads \"%s\" (%ld), want \"%s\"\n", src, line,
                file, show(buf), n, show(want));
    }
}

/* The whole text of `file` of group g must be `want` (and its length the return value). */
#define CHECK_FILE(g, file, want) check_file_((g), (file), (want), __FILE__, __LINE__)

static int write_ok_(cgm_group_t g, const char *file, const char *value, const char *src,
                     int line)
{
    int r = cgm_group_write(g, file, value);
    checks++;
    if (r != 0) {
        failures++;
        fprintf(stderr, "%s:%d: CHECK failed: writing \"%s\" to %s returned %d (%s)\n", src, line,
                show(value), file, r, cgm_strerror(r));
    }
    return r;
}

#define WRITE_OK(g, file, value) write_ok_((g), (file), (value), __FILE__, __LINE__)

/* A single-number file ("N\n" or "max\n"), or NOVAL. */
static uint64_t file_u64(cgm_group_t g, const char *file)
{
    char buf[256], *end;
    if (readf(g, file, buf, sizeof buf) <= 0)
        return NOVAL;
    if (strcmp(buf, "max\n") == 0)
        return UINT64_MAX;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf || strcmp(end, "\n") != 0)
        return NOVAL;
    return v;
}

/* The value of line "key N" of a key-value file, or NOVAL. */
static uint64_t kv(cgm_group_t g, const char *file, const char *key)
{
    char buf[2048];
    if (readf(g, file, buf, sizeof buf) <= 0)
        return NOVAL;
    size_t klen = strlen(key);
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        if (!nl)
            return NOVAL;
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            char *end;
            unsigned long long v = strtoull(line + klen + 1, &end, 10);
            return end == nl && end != line + klen + 1 ? v : NOVAL;
        }
        line = nl + 1;
    }
    return NOVAL;
}

static struct cgm_stat stat_of(cgm_group_t g)
{
    struct cgm_stat s;
    memset(&s, 0xa5, sizeof s);
    int r = cgm_group_stat(g, &s);
    CHECK_EQ(r, 0);
    return s;
}

static cgm_group_t create(const char *path)
{
    cgm_group_t g = 0;
    int r = cgm_group_create(path, &g);
    checks++;
    if (r != 0 || g == 0) {
        failures++;
        fprintf(stderr, "%s:%d: creating %s: %d (%s)\n", __FILE__, __LINE__, path, r,
                cgm_strerror(r));
    }
    return g;
}

static cgm_group_t root;

/* ------------------------------------------------------------------------------------ */

static void test_version_strerror(void)
{
    const char *v = cgm_version();
    CHECK(v != NULL);
    if (v) {
        CHECK(strlen(v) >= 5);
        CHECK(v[0] >= '0' && v[0] <= '9');
        CHECK(strchr(v, '.') != NULL);
#ifdef CGM_EXPECTED_VERSION
        CHECK(strcmp(v, CGM_EXPECTED_VERSION) == 0);
#endif
    }
    CHECK(cgm_version() == v);

    const int errs[] = {ENOENT, EEXIST, EINVAL, ENOSPC, EBUSY, EPERM, EACCES, ENOMEM, EAGAIN};
    const int n = (int)(sizeof errs / sizeof errs[0]);
    const char *unknown = cgm_strerror(99999);
    CHECK(unknown != NULL && *unknown);
    for (int i = 0; i < n; i++) {
        const char *neg = cgm_strerror(-errs[i]), *pos = cgm_strerror(errs[i]);
        CHECK(neg != NULL && pos != NULL);
        if (!neg || !pos)
            continue;
        CHECK(*neg != 0);
        CHECK(strcmp(neg, pos) == 0);
        CHECK(strcmp(neg, unknown) != 0);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(neg, cgm_strerror(-errs[j])) != 0);
    }
    CHECK(cgm_strerror(0) != NULL);
    CHECK(strcmp(cgm_strerror(-99999), unknown) == 0);
    CHECK(cgm_strerror(INT_MIN) != NULL);
    CHECK(cgm_strerror(INT_MAX) != NULL);
}

static void test_root(void)
{
    char buf[256];
    root = cgm_root();
    CHECK(root != 0);
    CHECK_EQ(cgm_root(), root);
    CHECK_EQ(cgm_thread_group(), root);
    CHECK_EQ(cgm_group_path(root, buf, sizeof buf), 1);
    CHECK(strcmp(buf, "/") == 0);
    cgm_group_t o = 0;
    CHECK_EQ(cgm_group_open("/", &o), 0);
    CHECK_EQ(o, root);
    CHECK_EQ(cgm_group_create("/", &o), -EEXIST);
    CHECK_FILE(root, "memory.max", "max\n");
    CHECK_FILE(root, "memory.high", "max\n");
    CHECK_FILE(root, "memory.oom.policy", "fail\n");
    struct cgm_stat s = stat_of(root);
    CHECK_EQ(s.max, UINT64_MAX);
    CHECK_EQ(s.high, UINT64_MAX);
    CHECK_EQ(s.soft_limit, UINT64_MAX);
    CHECK_EQ(s.low, 0);
    CHECK_EQ(s.min, 0);
    /* This program has allocated (stdio) in the root already. */
    CHECK(s.current >= PAGE);
    CHECK(s.current % PAGE == 0);
    CHECK(s.peak >= s.current);
    CHECK(kv(root, "memory.stat", "allocated") > 0);
    CHECK(kv(root, "memory.stat", "allocated") != NOVAL);
    CHECK(cgm_group_read(root, "cgroup.stat", NULL, 0) > 0);
}

/* ------------------------------------------------------------------------------------ */

static cgm_group_t capi; /* "/capi": the parent of every group this program creates */

static void test_groups(void)
{
    char buf[256], path[512];
    capi = create("/capi");
    CHECK(capi != root);
    cgm_group_t o = 0;
    CHECK_EQ(cgm_group_open("/capi", &o), 0);
    CHECK_EQ(o, capi);
    CHECK_EQ(cgm_group_create("/capi", &o), -EEXIST);

    cgm_group_t a = create("/capi/a");
    CHECK(a != capi && a != root);
    CHECK_EQ(cgm_group_path(a, buf, sizeof buf), 7);
    CHECK(strcmp(buf, "/capi/a") == 0);
    /* snprintf contract: truncated, NUL-terminated, full length returned. */
    char small[4] = {'x', 'x', 'x', 'x'};
    CHECK_EQ(cgm_group_path(a, small, sizeof small), 7);
    CHECK(memcmp(small, "/ca", 4) == 0);
    small[0] = 'x';
    CHECK_EQ(cgm_group_path(a, small, 1), 7);
    CHECK_EQ(small[0], 0);
    CHECK_EQ(small[1], 'c');
    CHECK_EQ(cgm_group_path(a, NULL, 0), 7);
    CHECK_EQ(cgm_group_path(a, buf, 8), 7);
    CHECK(strcmp(buf, "/capi/a") == 0);

    /* Names: 64 characters, the whole character set, and "..." (not "." or ".."). */
    strcpy(path, "/capi/");
    memset(path + 6, 'n', 64);
    path[70] = 0;
    cgm_group_t longname = create(path);
    CHECK_EQ(cgm_group_path(longname, buf, sizeof buf), 70);
    CHECK(strcmp(buf, path) == 0);
    CHECK_EQ(cgm_group_destroy(longname), 0);
    const char *names[] = {"/capi/AZaz09_.-", "/capi/...", "/capi/.x", "/capi/-"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        cgm_group_t g = create(names[i]);
        CHECK_EQ(cgm_group_open(names[i], &o), 0);
        CHECK_EQ(o, g);
        CHECK_EQ(cgm_group_path(g, buf, sizeof buf), strlen(names[i]));
        CHECK(strcmp(buf, names[i]) == 0);
        CHECK_EQ(cgm_group_destroy(g), 0);
        CHECK_EQ(cgm_group_open(names[i], &o), -ENOENT);
    }

    /* Depth 16: /capi/l2/.../l16. */
    cgm_group_t chain[17];
    strcpy(path, "/capi");
    chain[1] = capi;
    for (int d = 2; d <= 16; d++) {
        size_t n = strlen(path);
        snprintf(path + n, sizeof path - n, "/l%d", d);
        chain[d] = create(path);
    }
    CHECK_EQ(cgm_group_path(chain[16], buf, sizeof buf), strlen(path));
    CHECK(strcmp(buf, path) == 0);
    CHECK_EQ(cgm_group_open(path, &o), 0);
    CHECK_EQ(o, chain[16]);
    /* l2 .. l16, and a. */
    CHECK_FILE(capi, "cgroup.stat", "nr_descendants 16\nnr_dying_descendants 0\n");
    CHECK_FILE(chain[15], "cgroup.stat", "nr_descendants 1\nnr_dying_descendants 0\n");
    /* Depth 17 is refused. */
    char deeper[512];
    snprintf(deeper, sizeof deeper, "%s/l17", path);
    CHECK_EQ(cgm_group_create(deeper, &o), -EINVAL);
    CHECK_EQ(o, chain[16]);
    CHECK_EQ(cgm_group_destroy(chain[2]), -EBUSY);
    for (int d = 16; d >= 2; d--)
        CHECK_EQ(cgm_group_destroy(chain[d]), 0);

    cgm_group_t b = create("/capi/a/b");
    CHECK_FILE(capi, "cgroup.stat", "nr_descendants 2\nnr_dying_descendants 0\n");
    CHECK_FILE(a, "cgroup.stat", "nr_descendants 1\nnr_dying_descendants 0\n");
    CHECK(kv(root, "cgroup.stat", "nr_descendants") >= 3);
    CHECK_EQ(cgm_group_destroy(a), -EBUSY);
    CHECK_EQ(cgm_group_destroy(b), 0);
    CHECK_EQ(cgm_group_open("/capi/a/b", &o), -ENOENT);
    CHECK_EQ(cgm_group_path(b, buf, sizeof buf), -ENOENT);
    /* A group re-created at the same path gets a new handle; the old one stays invalid. */
    cgm_group_t b2 = create("/capi/a/b");
    CHECK(b2 != b);
    CHECK_EQ(cgm_group_open("/capi/a/b", &o), 0);
    CHECK_EQ(o, b2);
    struct cgm_stat s;
    CHECK_EQ(cgm_group_stat(b, &s), -ENOENT);
    CHECK_EQ(cgm_group_destroy(b), -ENOENT);
    CHECK_EQ(cgm_group_destroy(b2), 0);
    CHECK_EQ(cgm_group_destroy(a), 0);
    CHECK_EQ(cgm_group_open("/capi/a", &o), -ENOENT);
    CHECK_FILE(capi, "cgroup.stat", "nr_descendants 0\nnr_dying_descendants 0\n");
    CHECK_EQ(cgm_group_destroy(root), -EPERM);
}

/* ------------------------------------------------------------------------------------ */

static const char *const stat_keys[] = {"allocated",     "small",        "large",
                                        "cached",        "stock",        "nr_charges",
                                        "nr_uncharges",  "reclaim_calls", "reclaimed"};

/* memory.stat: "key N" lines, each ending with a newline, with at least stat_keys. */
static void check_stat_format(cgm_group_t g)
{
    char buf[2048];
    long n = readf(g, "memory.stat", buf, sizeof buf);
    CHECK(n > 0 && (size_t)n < sizeof buf);
    CHECK_EQ(n, strlen(buf));
    CHECK(n > 0 && buf[n - 1] == '\n');
    int lines = 0, bad = 0;
    for (char *line = buf; *line; lines++) {
        char *nl = strchr(line, '\n');
        char *sp = strchr(line, ' ');
        if (!nl || !sp || sp > nl || sp == line)
            bad++;
        else
            for (char *d = sp + 1; d < nl; d++)
                bad += *d < '0' || *d > '9';
        if (!nl)
            break;
        line = nl + 1;
    }
    CHECK_EQ(bad, 0);
    CHECK(lines >= 9);
    for (size_t i = 0; i < sizeof stat_keys / sizeof stat_keys[0]; i++) {
        checks++;
        if (kv(g, "memory.stat", stat_keys[i]) == NOVAL) {
            failures++;
            fprintf(stderr, "%s:%d: memory.stat has no `%s` line: \"%s\"\n", __FILE__, __LINE__,
                    stat_keys[i], show(buf));
        }
    }
}

static const char *const event_keys[] = {"low", "high", "max", "oom", "oom_kill", "warn"};

static void events_of(cgm_group_t g, const char *file, uint64_t ev[6])
{
    for (int i = 0; i < 6; i++)
        ev[i] = kv(g, file, event_keys[i]);
}

/* The text memory.events must have for these counts. */
static void events_text(const uint64_t ev[6], char *buf, size_t len)
{
    snprintf(buf, len, "low %llu\nhigh %llu\nmax %llu\noom %llu\noom_kill %llu\nwarn %llu\n",
             (unsigned long long)ev[0], (unsigned long long)ev[1], (unsigned long long)ev[2],
             (unsigned long long)ev[3], (unsigned long long)ev[4], (unsigned long long)ev[5]);
}

/* struct cgm_stat against the interface files, read at the same quiet moment. */
static void check_stat_matches_files(cgm_group_t g)
{
    struct cgm_stat s = stat_of(g);
    CHECK_EQ(s.current, file_u64(g, "memory.current"));
    CHECK_EQ(s.peak, file_u64(g, "memory.peak"));
    CHECK_EQ(s.max, file_u64(g, "memory.max"));
    CHECK_EQ(s.high, file_u64(g, "memory.high"));
    CHECK_EQ(s.low, file_u64(g, "memory.low"));
    CHECK_EQ(s.min, file_u64(g, "memory.min"));
    CHECK_EQ(s.soft_limit, file_u64(g, "memory.soft_limit_in_bytes"));
    CHECK_EQ(s.failcnt, file_u64(g, "memory.failcnt"));
    CHECK_EQ(s.stock, kv(g, "memory.stat", "stock"));
    uint64_t ev[6];
    char want[256];
    events_of(g, "memory.events", ev);
    CHECK_EQ(s.events_low, ev[0]);
    CHECK_EQ(s.events_high, ev[1]);
    CHECK_EQ(s.events_max, ev[2]);
    CHECK_EQ(s.events_oom, ev[3]);
    CHECK_EQ(s.events_oom_kill, ev[4]);
    events_text(ev, want, sizeof want);
    CHECK_FILE(g, "memory.events", want);
    events_of(g, "memory.events.local", ev);
    events_text(ev, want, sizeof want);
    CHECK_FILE(g, "memory.events.local", want);
}

static void test_files(void)
{
    char buf[256];
    const char *zero_events = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\nwarn 0\n";
    cgm_group_t f = create("/capi/files");

    /* A new group. */
    CHECK_FILE(f, "memory.current", "0\n");
    CHECK_FILE(f, "memory.peak", "0\n");
    CHECK_FILE(f, "memory.max", "max\n");
    CHECK_FILE(f, "memory.high", "max\n");
    CHECK_FILE(f, "memory.low", "0\n");
    CHECK_FILE(f, "memory.min", "0\n");
    CHECK_FILE(f, "memory.soft_limit_in_bytes", "max\n");
    CHECK_FILE(f, "memory.failcnt", "0\n");
    CHECK_FILE(f, "memory.events", zero_events);
    CHECK_FILE(f, "memory.events.local", zero_events);
    CHECK_FILE(f, "memory.oom.policy", "fail\n");
    CHECK_FILE(f, "cgroup.threads", "");
    CHECK_FILE(f, "cgroup.stat", "nr_descendants 0\nnr_dying_descendants 0\n");
    for (size_t i = 0; i < sizeof stat_keys / sizeof stat_keys[0]; i++)
        CHECK_EQ(kv(f, "memory.stat", stat_keys[i]), 0);
    check_stat_format(f);
    check_stat_matches_files(f);
    CHECK_EQ(cgm_group_read(f, "memory.reclaim", buf, sizeof buf), -EACCES);
    struct cgm_stat s = stat_of(f);
    CHECK_EQ(s.current, 0);
    CHECK_EQ(s.max, UINT64_MAX);
    CHECK_EQ(s.high, UINT64_MAX);
    CHECK_EQ(s.soft_limit, UINT64_MAX);
    CHECK_EQ(s.low, 0);
    CHECK_EQ(s.min, 0);
    CHECK_EQ(s.stock, 0);
    CHECK_EQ(s.events_max + s.events_oom + s.events_oom_kill + s.events_low + s.events_high, 0);

    /* Lengths like snprintf. */
    CHECK_EQ(cgm_group_read(f, "memory.max", NULL, 0), 4);
    char tiny[3] = {'x', 'x', 'x'};
    CHECK_EQ(cgm_group_read(f, "memory.max", tiny, sizeof tiny), 4);
    CHECK(memcmp(tiny, "ma", 3) == 0);
    CHECK_EQ(cgm_group_read(f, "cgroup.threads", NULL, 0), 0);
    tiny[0] = 'x';
    CHECK_EQ(cgm_group_read(f, "cgroup.threads", tiny, sizeof tiny), 0);
    CHECK_EQ(tiny[0], 0);
    CHECK_EQ(cgm_group_read(f, "memory.events", NULL, 0), strlen(zero_events));

    /* memory.max: size strings, rounded down to pages. */
    static const struct {
        const char *value, *reads;
    } sizes[] = {
        {"10000", "8192\n"},
        {"1M", "1048576\n"},
        {"1k", "0\n"},
        {"4097", "4096\n"},
        {"2m", "2097152\n"},
        {"  3G \n", "3221225472\n"},
        {"1T", "1099511627776\n"},
        {"5g\n", "5368709120\n"},
        {"\t64K", "65536\n"},
        {"0", "0\n"},
        {"18446744073709551615", "18446744073709547520\n"},
        {"max", "max\n"},
        {"12K", "12288\n"},
        {"max\n", "max\n"},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        WRITE_OK(f, "memory.max", sizes[i].value);
        CHECK_FILE(f, "memory.max", sizes[i].reads);
        uint64_t want = strcmp(sizes[i].reads, "max\n") == 0
                            ? UINT64_MAX
                            : strtoull(sizes[i].reads, NULL, 10);
        CHECK_EQ(stat_of(f).max, want);
    }

    /* The other limits. */
    WRITE_OK(f, "memory.high", "64K");
    CHECK_FILE(f, "memory.high", "65536\n");
    CHECK_EQ(stat_of(f).high, 65536);
    WRITE_OK(f, "memory.high", "max");
    CHECK_FILE(f, "memory.high", "max\n");
    WRITE_OK(f, "memory.low", "12345");
    CHECK_FILE(f, "memory.low", "12288\n");
    CHECK_EQ(stat_of(f).low, 12288);
    WRITE_OK(f, "memory.min", "8K");
    CHECK_FILE(f, "memory.min", "8192\n");
    CHECK_EQ(stat_of(f).min, 8192);
    WRITE_OK(f, "memory.soft_limit_in_bytes", "5M");
    CHECK_FILE(f, "memory.soft_limit_in_bytes", "5242880\n");
    CHECK_EQ(stat_of(f).soft_limit, 5 * MIB);
    check_stat_matches_files(f);
    WRITE_OK(f, "memory.low", "0");
    WRITE_OK(f, "memory.min", "0\n");
    WRITE_OK(f, "memory.soft_limit_in_bytes", "max");
    CHECK_FILE(f, "memory.low", "0\n");
    CHECK_FILE(f, "memory.min", "0\n");
    CHECK_FILE(f, "memory.soft_limit_in_bytes", "max\n");

    /* memory.oom.policy: inherited until written. */
    cgm_group_t kid = create("/capi/files/kid");
    CHECK_FILE(f, "cgroup.stat", "nr_descendants 1\nnr_dying_descendants 0\n");
    WRITE_OK(f, "memory.oom.policy", "force");
    CHECK_FILE(f, "memory.oom.policy", "force\n");
    CHECK_FILE(kid, "memory.oom.policy", "force\n");
    WRITE_OK(kid, "memory.oom.policy", "abort\n");
    CHECK_FILE(kid, "memory.oom.policy", "abort\n");
    CHECK_FILE(f, "memory.oom.policy", "force\n");
    WRITE_OK(f, "memory.oom.policy", "fail\n");
    CHECK_FILE(f, "memory.oom.policy", "fail\n");
    CHECK_FILE(kid, "memory.oom.policy", "abort\n");
    CHECK_FILE(root, "memory.oom.policy", "fail\n");

    /* An explicit charge: memory.current (stock included), memory.stat, memory.peak. */
    cgm_drain_stocks();
    uint64_t nc = kv(f, "memory.stat", "nr_charges");
    uint64_t nu = kv(f, "memory.stat", "nr_uncharges");
    CHECK_EQ(cgm_charge(f, 64 * KIB, 0), 0);
    s = stat_of(f);
    CHECK(s.current >= 64 * KIB);
    CHECK_EQ(s.current, 64 * KIB + s.stock);
    CHECK(s.peak >= s.current);
    CHECK_EQ(kv(f, "memory.stat", "nr_charges"), nc + 1);
    check_stat_matches_files(f);
    check_stat_format(f);
    CHECK_EQ(cgm_drain_stocks(), 0);
    CHECK_FILE(f, "memory.current", "65536\n");
    CHECK(file_u64(f, "memory.peak") >= 64 * KIB);
    CHECK_EQ(cgm_uncharge(f, 64 * KIB), 0);
    CHECK_EQ(kv(f, "memory.stat", "nr_uncharges"), nu + 1);
    cgm_drain_stocks();
    CHECK_FILE(f, "memory.current", "0\n");
    CHECK(file_u64(f, "memory.peak") >= 64 * KIB);
    /* Any value written to memory.peak resets it to memory.current. */
    WRITE_OK(f, "memory.peak", "0");
    CHECK_FILE(f, "memory.peak", "0\n");
    CHECK_EQ(cgm_charge(f, 8 * KIB, CGM_CHARGE_FORCE), 0);
    cgm_drain_stocks();
    WRITE_OK(f, "memory.peak", "reset");
    CHECK_FILE(f, "memory.peak", "8192\n");
    CHECK_EQ(cgm_uncharge(f, 8 * KIB), 0);
    cgm_drain_stocks();

    /* memory.failcnt and memory.events: a refused charge. */
    WRITE_OK(f, "memory.max", "8K");
    CHECK_EQ(cgm_charge(f, 16 * KIB, CGM_CHARGE_NORETRY), -ENOMEM);
    CHECK(file_u64(f, "memory.failcnt") >= 1);
    CHECK(kv(f, "memory.events", "max") >= 1);
    CHECK_EQ(kv(f, "memory.events.local", "max"), kv(f, "memory.events", "max"));
    CHECK_EQ(kv(f, "memory.events", "oom"), 0);
    CHECK_EQ(kv(f, "memory.events", "oom_kill"), 0);
    /* Hierarchical in the parent, not local there. */
    CHECK(kv(capi, "memory.events", "max") >= kv(f, "memory.events", "max"));
    CHECK_EQ(kv(capi, "memory.events.local", "max"), 0);
    check_stat_matches_files(f);
    WRITE_OK(f, "memory.failcnt", "0");
    CHECK_FILE(f, "memory.failcnt", "0\n");
    CHECK_EQ(stat_of(f).failcnt, 0);
    CHECK_FILE(f, "memory.current", "0\n");

    /* memory.reclaim: write-only; nothing to reclaim is -EAGAIN, nothing asked is 0. */
    CHECK_EQ(cgm_group_write(f, "memory.reclaim", "4K"), -EAGAIN);
    WRITE_OK(f, "memory.reclaim", "0");
    CHECK_EQ(cgm_group_write(f, "memory.reclaim", "max"), -EAGAIN);

    /* Every file of the table, as a file of the child too. */
    WRITE_OK(f, "memory.max", "max");
    const char *readable[] = {"memory.current", "memory.peak", "memory.max",
                              "memory.high", "memory.low", "memory.min",
                              "memory.soft_limit_in_bytes", "memory.failcnt",
                              "memory.events", "memory.events.local", "memory.stat",
                              "memory.oom.policy", "cgroup.stat"};
    for (size_t i = 0; i < sizeof readable / sizeof readable[0]; i++) {
        long n = readf(kid, readable[i], buf, sizeof buf);
        CHECK(n > 0 && buf[n - 1] == '\n');
        CHECK_EQ(n, strlen(buf));
    }
    CHECK_EQ(cgm_group_destroy(kid), 0);
    CHECK_EQ(cgm_group_destroy(f), 0);
}

/* ------------------------------------------------------------------------------------ */

struct child_report {
    cgm_group_t start_group, after_attach;
    pid_t tid;
    uint64_t charged;
    pthread_barrier_t *barrier;
    cgm_group_t attach_to;
};

static void *child_main(void *arg)
{
    struct child_report *r = arg;
    r->start_group = cgm_thread_group();
    r->tid = tid();
    if (r->barrier) {
        /* An allocation in the inherited group. */
        cgm_group_t g = r->start_group;
        uint64_t before = stat_of(g).current;
        void *p = malloc(256 * KIB);
        r->charged = stat_of(g).current - before;
        if (p)
            memset(p, 1, 256 * KIB);
        pthread_barrier_wait(r->barrier); /* main reads cgroup.threads */
        pthread_barrier_wait(r->barrier);
        free(p);
        r->after_attach = cgm_thread_attach(r->attach_to) == 0 ? cgm_thread_group() : 0;
        pthread_barrier_wait(r->barrier); /* main reads cgroup.threads again */
        pthread_barrier_wait(r->barrier);
    }
    return NULL;
}

static int has_line(const char *text, long v)
{
    char want[32];
    int n = snprintf(want, sizeof want, "%ld\n", v);
    for (const char *line = text; *line;) {
        if (strncmp(line, want, (size_t)n) == 0)
            return 1;
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    return 0;
}

static int count_lines(const char *text)
{
    int n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

static void test_attach_threads(void)
{
    char buf[512], want[64];
    cgm_group_t t = create("/capi/threads");
    pid_t me = tid();

    CHECK_EQ(cgm_thread_attach(t), 0);
    CHECK_EQ(cgm_thread_group(), t);
    snprintf(want, sizeof want, "%ld\n", (long)me);
    CHECK_FILE(t, "cgroup.threads", want);
    readf(root, "cgroup.threads", buf, sizeof buf);
    CHECK(!has_line(buf, me));
    CHECK_EQ(cgm_group_destroy(t), -EBUSY);
    /* Attaching to the current group again changes nothing. */
    CHECK_EQ(cgm_thread_attach(t), 0);
    CHECK_FILE(t, "cgroup.threads", want);

    /* malloc charges the attached group. */
    uint64_t before = stat_of(t).current;
    void *p = malloc(200000);
    CHECK(p != NULL);
    if (p)
        memset(p, 7, 200000);
    uint64_t during = stat_of(t).current;
    CHECK(during >= before + 200000);
    CHECK(kv(t, "memory.stat", "allocated") >= 200000);
    CHECK(kv(t, "memory.stat", "large") >= 200000);
    free(p);

    /* A thread created by an attached thread starts in its group (pthread_create is
     * interposed by the library, linked or preloaded). */
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    struct child_report r = {0};
    r.barrier = &bar;
    r.attach_to = root;
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, child_main, &r), 0);
    pthread_barrier_wait(&bar);
    CHECK_EQ(r.start_group, t);
    CHECK(r.charged >= 256 * KIB);
    readf(t, "cgroup.threads", buf, sizeof buf);
    CHECK(has_line(buf, me));
    CHECK(has_line(buf, r.tid));
    CHECK_EQ(count_lines(buf), 2);
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    CHECK_EQ(r.after_attach, root);
    CHECK_FILE(t, "cgroup.threads", want);
    readf(root, "cgroup.threads", buf, sizeof buf);
    CHECK(has_line(buf, r.tid));
    pthread_barrier_wait(&bar);
    CHECK_EQ(pthread_join(th, NULL), 0);
    pthread_barrier_destroy(&bar);

    /* Back to the root; a thread created there starts there. */
    CHECK_EQ(cgm_thread_attach(root), 0);
    CHECK_EQ(cgm_thread_group(), root);
    CHECK_FILE(t, "cgroup.threads", "");
    readf(root, "cgroup.threads", buf, sizeof buf);
    CHECK(has_line(buf, me));
    struct child_report r2 = {0};
    CHECK_EQ(pthread_create(&th, NULL, child_main, &r2), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(r2.start_group, root);

    /* Threads created in a group that is then left start where their creator is now. */
    CHECK_EQ(cgm_thread_attach(t), 0);
    CHECK_EQ(cgm_thread_attach(root), 0);
    struct child_report r3 = {0};
    CHECK_EQ(pthread_create(&th, NULL, child_main, &r3), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(r3.start_group, root);

    /* No thread attached any more (the child detached at exit or by attaching): the group
     * can be destroyed; a freed block still charged to it would leave it dying. */
    CHECK_EQ(cgm_group_destroy(t), 0);
    CHECK_EQ(cgm_thread_attach(t), -ENOENT);
    CHECK_EQ(cgm_thread_group(), root);
}

/* ------------------------------------------------------------------------------------ */

static void test_charge(void)
{
    cgm_group_t c = create("/capi/charge");
    WRITE_OK(c, "memory.max", "1M");
    cgm_drain_stocks();

    /* Flags 0: charged and returned; rounded up to pages. */
    uint64_t nc = kv(c, "memory.stat", "nr_charges");
    uint64_t nu = kv(c, "memory.stat", "nr_uncharges");
    CHECK_EQ(cgm_charge(c, 4096, 0), 0);
    CHECK_EQ(kv(c, "memory.stat", "nr_charges"), nc + 1);
    CHECK(stat_of(c).current >= 4096);
    CHECK_EQ(cgm_uncharge(c, 4096), 0);
    CHECK_EQ(kv(c, "memory.stat", "nr_uncharges"), nu + 1);
    cgm_drain_stocks();
    CHECK_EQ(stat_of(c).current, 0);
    CHECK_EQ(cgm_charge(c, 1, 0), 0);
    cgm_drain_stocks();
    CHECK_EQ(stat_of(c).current, 4096);
    /* The audit: an explicit charge is recorded, and so is everything else. */
    char why[256] = "untouched";
    CHECK_EQ(cgm_audit(why, sizeof why), 0);
    CHECK_EQ(why[0], 0);
    CHECK_EQ(cgm_audit(NULL, 0), 0);
    CHECK_EQ(cgm_audit(NULL, 8), -EINVAL);
    CHECK_EQ(cgm_uncharge(c, 4096), 0);
    CHECK_EQ(cgm_uncharge(c, 1), -EINVAL);
    CHECK_EQ(cgm_charge(c, 0, 0), 0);
    CHECK_EQ(cgm_uncharge(c, 0), 0);
    cgm_drain_stocks();
    CHECK_EQ(stat_of(c).current, 0);

    /* Up to the limit exactly. */
    CHECK_EQ(cgm_charge(c, MIB, 0), 0);
    cgm_drain_stocks();
    struct cgm_stat before = stat_of(c);
    CHECK_EQ(before.current, MIB);
    CHECK_EQ(before.max, MIB);

    /* At the limit: NORETRY refused, counters unchanged, no OOM. */
    CHECK_EQ(cgm_charge(c, 4096, CGM_CHARGE_NORETRY), -ENOMEM);
    struct cgm_stat after = stat_of(c);
    CHECK_EQ(after.current, before.current);
    CHECK_EQ(after.peak, before.peak);
    CHECK(after.failcnt > before.failcnt);
    CHECK(after.events_max > before.events_max);
    CHECK_EQ(after.events_oom, before.events_oom);
    CHECK_EQ(after.events_oom_kill, before.events_oom_kill);

    /* Flags 0: refused after the OOM path (policy fail): one oom and one oom_kill. */
    before = after;
    CHECK_EQ(cgm_charge(c, 4096, 0), -ENOMEM);
    after = stat_of(c);
    CHECK_EQ(after.current, before.current);
    CHECK_EQ(after.peak, before.peak);
    CHECK(after.failcnt > before.failcnt);
    CHECK_EQ(after.events_oom, before.events_oom + 1);
    CHECK_EQ(after.events_oom_kill, before.events_oom_kill + 1);
    /* Counted: 4096, 1 and MIB bytes; not the charge of 0 bytes nor the refused ones. */
    CHECK_EQ(kv(c, "memory.stat", "nr_charges"), nc + 3);

    /* FORCE: charged past max and counted. */
    before = after;
    CHECK_EQ(cgm_charge(c, 4096, CGM_CHARGE_FORCE), 0);
    after = stat_of(c);
    CHECK_EQ(after.current, MIB + 4096);
    CHECK(after.peak >= MIB + 4096);
    CHECK(after.events_max > before.events_max);
    CHECK_EQ(after.events_oom, before.events_oom);
    CHECK_EQ(kv(c, "memory.stat", "nr_charges"), nc + 4);
    /* Above max: new charges fail until usage is under it again. */
    CHECK_EQ(cgm_charge(c, 4096, CGM_CHARGE_NORETRY), -ENOMEM);
    CHECK_EQ(stat_of(c).current, MIB + 4096);

    /* Uncharge: more than was charged is -EINVAL and changes nothing. */
    CHECK_EQ(cgm_uncharge(c, MIB + 8192), -EINVAL);
    CHECK_EQ(stat_of(c).current, MIB + 4096);
    CHECK_EQ(cgm_uncharge(c, MIB + 4096), 0);
    cgm_drain_stocks();
    CHECK_EQ(stat_of(c).current, 0);
    CHECK_EQ(cgm_uncharge(c, 4096), -EINVAL);

    /* Refused at an ancestor's limit: the ancestor counts the failure. */
    cgm_group_t k = create("/capi/charge/k");
    struct cgm_stat cb = stat_of(c), kb = stat_of(k);
    CHECK_EQ(cgm_charge(k, 2 * MIB, CGM_CHARGE_NORETRY), -ENOMEM);
    struct cgm_stat ca = stat_of(c), ka = stat_of(k);
    CHECK(ca.failcnt > cb.failcnt);
    CHECK_EQ(ka.failcnt, kb.failcnt);
    CHECK(kv(c, "memory.events.local", "max") >= 1);
    CHECK_EQ(kv(k, "memory.events.local", "max"), 0);
    CHECK_EQ(ka.current, 0);
    CHECK_EQ(cgm_charge(k, 512 * KIB, 0), 0);
    cgm_drain_stocks();
    CHECK_EQ(stat_of(c).current, 512 * KIB);
    CHECK_EQ(stat_of(k).current, 512 * KIB);
    /* Explicit charges are per group: the parent has none of its own. */
    CHECK_EQ(cgm_uncharge(c, 4096), -EINVAL);
    CHECK_EQ(cgm_uncharge(k, 512 * KIB), 0);
    cgm_drain_stocks();
    CHECK_EQ(stat_of(c).current, 0);
    CHECK_EQ(cgm_group_destroy(k), 0);
    CHECK_EQ(cgm_group_destroy(c), 0);
}

struct stock_thread {
    cgm_group_t g;
    int charged;
    pthread_barrier_t *bar;
};

static void *stock_thread_main(void *arg)
{
    struct stock_thread *s = arg;
    s->charged = cgm_charge(s->g, 4096, 0);
    pthread_barrier_wait(s->bar); /* main drains every stock */
    pthread_barrier_wait(s->bar);
    return NULL;
}

static void test_drain_stocks(void)
{
    cgm_group_t g = create("/capi/stock");
    cgm_drain_stocks();
    CHECK_EQ(cgm_charge(g, 4096, 0), 0);
    struct cgm_stat s = stat_of(g);
    /* A batched charge keeps the surplus in this thread's stock. */
    CHECK(s.stock > 0);
    CHECK_EQ(s.current, 4096 + s.stock);
    CHECK_EQ(kv(g, "memory.stat", "stock"), s.stock);
    CHECK(stat_of(root).stock >= s.stock);
    CHECK_EQ(cgm_drain_stocks(), 0);
    s = stat_of(g);
    CHECK_EQ(s.stock, 0);
    CHECK_EQ(s.current, 4096);
    CHECK_EQ(kv(g, "memory.stat", "stock"), 0);

    /* Another thread's stock is drained too. */
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    struct stock_thread st = {g, -1, &bar};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, stock_thread_main, &st), 0);
    pthread_barrier_wait(&bar);
    CHECK_EQ(st.charged, 0);
    s = stat_of(g);
    CHECK(s.stock > 0);
    CHECK_EQ(s.current, 8192 + s.stock);
    CHECK_EQ(cgm_drain_stocks(), 0);
    s = stat_of(g);
    CHECK_EQ(s.stock, 0);
    CHECK_EQ(s.current, 8192);
    pthread_barrier_wait(&bar);
    CHECK_EQ(pthread_join(th, NULL), 0);
    pthread_barrier_destroy(&bar);
    CHECK_EQ(cgm_uncharge(g, 8192), 0);
    cgm_drain_stocks();
    CHECK_EQ(stat_of(g).current, 0);
    CHECK_EQ(cgm_group_destroy(g), 0);
}

static void test_dying(void)
{
    cgm_group_t p = create("/capi/dyingp"), o = 0;
    cgm_group_t d = create("/capi/dyingp/d");
    CHECK_EQ(cgm_charge(d, 8192, 0), 0);
    CHECK_EQ(cgm_group_destroy(d), 0);
    /* Dying: its charges stay (stocks were drained), its handle stops working. */
    CHECK_FILE(p, "cgroup.stat", "nr_descendants 0\nnr_dying_descendants 1\n");
    CHECK_FILE(p, "memory.current", "8192\n");
    CHECK_EQ(cgm_group_open("/capi/dyingp/d", &o), -ENOENT);
    struct cgm_stat s;
    char buf[64];
    CHECK_EQ(cgm_group_stat(d, &s), -ENOENT);
    CHECK_EQ(cgm_group_read(d, "memory.current", buf, sizeof buf), -ENOENT);
    CHECK_EQ(cgm_group_write(d, "memory.max", "1M"), -ENOENT);
    CHECK_EQ(cgm_charge(d, 4096, 0), -ENOENT);
    CHECK_EQ(cgm_thread_attach(d), -ENOENT);
    CHECK_EQ(cgm_group_destroy(d), -ENOENT);
    CHECK_EQ(cgm_group_path(d, buf, sizeof buf), -ENOENT);
    /* Its path can be reused at once. */
    cgm_group_t d2 = create("/capi/dyingp/d");
    CHECK(d2 != d);
    CHECK_FILE(p, "cgroup.stat", "nr_descendants 1\nnr_dying_descendants 1\n");
    CHECK_EQ(cgm_group_destroy(d2), 0);
    CHECK_FILE(p, "cgroup.stat", "nr_descendants 0\nnr_dying_descendants 1\n");
    /* cgm_uncharge keeps working until the last charge is gone. */
    CHECK_EQ(cgm_uncharge(d, 4096), 0);
    CHECK_FILE(p, "memory.current", "4096\n");
    CHECK_EQ(cgm_uncharge(d, 8192), -EINVAL);
    CHECK_FILE(p, "memory.current", "4096\n");
    CHECK_EQ(cgm_uncharge(d, 4096), 0);
    CHECK_FILE(p, "memory.current", "0\n");
    CHECK_FILE(p, "cgroup.stat", "nr_descendants 0\nnr_dying_descendants 0\n");
    CHECK_EQ(cgm_uncharge(d, 4096), -ENOENT);

    /* A parent destroyed while its child is dying; both go with the last charge. (Earlier
     * tests may have left dying groups of their own under /capi.) */
    uint64_t dying = kv(capi, "cgroup.stat", "nr_dying_descendants");
    cgm_group_t q = create("/capi/dyingp/q");
    CHECK_EQ(cgm_charge(q, 4096, 0), 0);
    CHECK_EQ(cgm_group_destroy(q), 0);
    CHECK_EQ(cgm_group_destroy(p), 0);
    CHECK_EQ(kv(capi, "cgroup.stat", "nr_descendants"), 0);
    CHECK_EQ(kv(capi, "cgroup.stat", "nr_dying_descendants"), dying + 2);
    CHECK_EQ(cgm_uncharge(q, 4096), 0);
    CHECK_EQ(kv(capi, "cgroup.stat", "nr_dying_descendants"), dying);
    CHECK_EQ(cgm_uncharge(p, 4096), -ENOENT);
}

/* ------------------------------------------------------------------------------------ */

#define CACHE_BLOCKS 64
#define CACHE_BLOCK (64 * 1024)

/* A cache of malloc'd blocks that a reclaim callback frees. */
struct cache {
    void *blocks[CACHE_BLOCKS];
    int n;
    int calls, zero_wanted;
    cgm_group_t group_seen, other_group_seen;
    cgm_group_t expect;
    size_t first_wanted;
    uint64_t freed;
};

static size_t free_cache(void *ctx, cgm_group_t group, size_t wanted)
{
    struct cache *c = ctx;
    c->calls++;
    if (c->calls == 1)
        c->first_wanted = wanted;
    if (group == c->expect)
        c->group_seen = group;
    else
        c->other_group_seen = group;
    c->zero_wanted += wanted == 0;
    size_t freed = 0;
    while (freed < wanted && c->n > 0) {
        free(c->blocks[--c->n]);
        freed += CACHE_BLOCK;
    }
    c->freed += freed;
    return freed;
}

static int fill_cache(struct cache *c, int n)
{
    int ok = 1;
    while (c->n < n) {
        void *p = malloc(CACHE_BLOCK);
        if (!p) {
            ok = 0;
            break;
        }
        memset(p, 0x5a, CACHE_BLOCK);
        c->blocks[c->n++] = p;
    }
    return ok;
}

static void empty_cache(struct cache *c)
{
    while (c->n > 0)
        free(c->blocks[--c->n]);
}

/* A callback that gives back explicit charges of its group. */
struct charges {
    cgm_group_t group;
    uint64_t held;
    int calls;
    cgm_group_t seen;
    size_t wanted;
    int lie; /* report nothing freed */
};

static size_t return_charges(void *ctx, cgm_group_t group, size_t wanted)
{
    struct charges *c = ctx;
    c->calls++;
    c->seen = group;
    c->wanted = wanted;
    if (c->lie)
        return 0;
    uint64_t give = (wanted + PAGE - 1) / PAGE * PAGE;
    if (give > c->held)
        give = c->held;
    if (give == 0 || cgm_uncharge(c->group, give) != 0)
        return 0;
    c->held -= give;
    return (size_t)give;
}

static size_t never_called(void *ctx, cgm_group_t group, size_t wanted)
{
    (void)group;
    (void)wanted;
    ++*(int *)ctx;
    return 0;
}

static void test_reclaimer(void)
{
    static struct cache cache; /* static: 64 pointers, zeroed */
    cgm_group_t rg = create("/capi/reclaim");
    WRITE_OK(rg, "memory.max", "2M");
    cache.expect = rg;
    uint64_t id = 0xa5a5a5a5a5a5a5a5ULL, id2 = id;
    CHECK_EQ(cgm_reclaimer_add(rg, free_cache, &cache, &id), 0);
    CHECK(id != 0xa5a5a5a5a5a5a5a5ULL);
    /* A second registration has another id. */
    int never = 0;
    CHECK_EQ(cgm_reclaimer_add(rg, never_called, &never, &id2), 0);
    CHECK(id2 != id);
    CHECK_EQ(cgm_reclaimer_remove(id2), 0);
    CHECK_EQ(cgm_reclaimer_remove(id2), -ENOENT);

    CHECK_EQ(cgm_thread_attach(rg), 0);
    CHECK(fill_cache(&cache, 20)); /* 1.25 MiB of 64 KiB blocks */
    uint64_t usage = stat_of(rg).current;
    CHECK(usage >= 20 * CACHE_BLOCK);
    CHECK(usage + MIB > 2 * MIB);
    CHECK_EQ(cache.calls, 0);
    /* 1 MiB more does not fit under 2 MiB: the callback frees cached blocks. */
    void *big = malloc(MIB);
    int calls = cache.calls;
    CHECK(big != NULL);
    CHECK(calls >= 1);
    CHECK_EQ(cache.group_seen, rg);
    CHECK_EQ(cache.other_group_seen, 0);
    CHECK(cache.first_wanted > 0);
    CHECK(cache.first_wanted >= usage + MIB - 2 * MIB);
    CHECK_EQ(cache.zero_wanted, 0);
    CHECK(cache.n < 20);
    CHECK(stat_of(rg).current <= 2 * MIB);
    if (big)
        memset(big, 1, MIB);
    free(big);
    CHECK_EQ(never, 0);
    CHECK_EQ(cgm_thread_attach(root), 0);
    CHECK_EQ(kv(rg, "memory.stat", "reclaim_calls"), (uint64_t)cache.calls);
    CHECK_EQ(kv(rg, "memory.stat", "reclaimed"), cache.freed);
    CHECK(cache.freed > 0);
    CHECK(kv(capi, "memory.stat", "reclaim_calls") >= (uint64_t)cache.calls);

    /* Removed: no longer called; an allocation that cannot fit fails. */
    CHECK_EQ(cgm_reclaimer_remove(id), 0);
    CHECK_EQ(cgm_reclaimer_remove(id), -ENOENT);
    CHECK_EQ(cgm_thread_attach(rg), 0);
    CHECK(fill_cache(&cache, 20));
    errno = 0;
    void *huge = malloc(3 * MIB);
    int err = errno;
    CHECK_EQ(cgm_thread_attach(root), 0);
    CHECK(huge == NULL);
    CHECK_EQ(err, ENOMEM);
    free(huge);
    CHECK_EQ(cache.calls, calls);
    CHECK(kv(rg, "memory.events", "oom_kill") >= 1);
    CHECK_EQ(cgm_thread_attach(rg), 0);
    empty_cache(&cache);
    CHECK_EQ(cgm_thread_attach(root), 0);

    /* Hierarchy: a callback registered on a child is called, with the child, when the
     * parent hits its limit; one registered outside the over-limit subtree is not. */
    cgm_group_t hp = create("/capi/reclaimp");
    cgm_group_t hc = create("/capi/reclaimp/c");
    cgm_group_t out = create("/capi/reclaim-outside");
    WRITE_OK(hp, "memory.max", "1M");
    static struct charges ch;
    ch.group = hc;
    CHECK_EQ(cgm_charge(hc, MIB, 0), 0);
    ch.held = MIB;
    cgm_drain_stocks();
    uint64_t rid = 0, oid = 0;
    int outside = 0;
    CHECK_EQ(cgm_reclaimer_add(hc, return_charges, &ch, &rid), 0);
    CHECK_EQ(cgm_reclaimer_add(out, never_called, &outside, &oid), 0);
    CHECK_EQ(cgm_charge(hp, 64 * KIB, 0), 0);
    CHECK(ch.calls >= 1);
    CHECK_EQ(ch.seen, hc);
    CHECK(ch.wanted >= 64 * KIB);
    CHECK_EQ(outside, 0);
    CHECK(ch.held <= MIB - 64 * KIB);
    CHECK_EQ(kv(hc, "memory.stat", "reclaim_calls"), (uint64_t)ch.calls);
    CHECK_EQ(kv(hp, "memory.stat", "reclaim_calls"), (uint64_t)ch.calls);
    CHECK_EQ(kv(hp, "memory.events.local", "max"), 1);

    /* cgm_group_reclaim: success when the callback frees, -EAGAIN when nothing can. */
    cgm_drain_stocks();
    uint64_t cur = stat_of(hp).current;
    int before = ch.calls;
    CHECK_EQ(cgm_group_reclaim(hp, 256 * KIB), 0);
    CHECK(ch.calls > before);
    CHECK(stat_of(hp).current <= cur - 256 * KIB);
    before = ch.calls;
    WRITE_OK(hp, "memory.reclaim", "128K");
    CHECK(ch.calls > before);
    CHECK_EQ(cgm_group_reclaim(hp, 0), 0);
    ch.lie = 1;
    before = ch.calls;
    CHECK_EQ(cgm_group_reclaim(hp, 64 * KIB), -EAGAIN);
    CHECK(ch.calls > before);
    CHECK_EQ(cgm_group_write(hp, "memory.reclaim", "64K"), -EAGAIN);
    ch.lie = 0;
    CHECK_EQ(outside, 0);
    /* A group whose subtree has nothing to give. */
    CHECK_EQ(cgm_group_reclaim(out, 4096), -EAGAIN);
    CHECK(outside >= 1); /* called (reported nothing), so still -EAGAIN */
    CHECK_EQ(cgm_reclaimer_remove(oid), 0);
    cgm_group_t empty = create("/capi/reclaim-empty");
    CHECK_EQ(cgm_group_reclaim(empty, 4096), -EAGAIN);
    CHECK_EQ(cgm_group_reclaim(empty, 0), 0);

    CHECK_EQ(cgm_reclaimer_remove(rid), 0);
    CHECK_EQ(cgm_uncharge(hc, ch.held), 0);
    cgm_drain_stocks();
    CHECK_EQ(stat_of(hc).current, 0);
    CHECK_EQ(stat_of(hp).current, 64 * KIB);
    CHECK_EQ(cgm_uncharge(hp, 64 * KIB), 0);
    cgm_drain_stocks();
    CHECK_EQ(stat_of(hp).current, 0);
    CHECK_EQ(cgm_group_destroy(hc), 0);
    CHECK_EQ(cgm_group_destroy(hp), 0);
    CHECK_EQ(cgm_group_destroy(out), 0);
    CHECK_EQ(cgm_group_destroy(empty), 0);
    CHECK_EQ(cgm_group_destroy(rg), 0);
}

/* ------------------------------------------------------------------------------------ */

struct oomctx {
    int calls;
    int action;
    struct cgm_oom_info last;
    void *to_free;
};

static int on_oom(void *ctx, const struct cgm_oom_info *info)
{
    struct oomctx *c = ctx;
    c->calls++;
    c->last = *info;
    if (c->to_free) {
        free(c->to_free);
        c->to_free = NULL;
    }
    return c->action;
}

/* Returns the cached pages of freed blocks of group g (and its stock) to the counters. */
static void settle(cgm_group_t g)
{
    cgm_group_reclaim(g, 64 * MIB);
    cgm_drain_stocks();
}

static void test_oom(void)
{
    cgm_group_t o = create("/capi/oom");
    WRITE_OK(o, "memory.max", "1M");
    static struct oomctx c;
    struct cgm_stat before, after;

    /* FAIL: malloc returns NULL with ENOMEM; the handler saw the charge. */
    c.action = CGM_OOM_FAIL;
    CHECK_EQ(cgm_oom_handler_set(o, on_oom, &c), 0);
    CHECK_EQ(cgm_thread_attach(o), 0);
    before = stat_of(o);
    errno = 0;
    void *p = malloc(2 * MIB);
    int err = errno;
    after = stat_of(o);
    CHECK(p == NULL);
    CHECK_EQ(err, ENOMEM);
    CHECK_EQ(c.calls, 1);
    CHECK_EQ(c.last.group, o);
    CHECK_EQ(c.last.over_limit, o);
    CHECK(c.last.bytes >= 2 * MIB);
    CHECK_EQ(c.last.max, MIB);
    CHECK(c.last.usage <= MIB);
    CHECK(c.last.usage + c.last.bytes > c.last.max);
    CHECK_EQ(after.events_oom, before.events_oom + 1);
    CHECK_EQ(after.events_oom_kill, before.events_oom_kill + 1);
    CHECK(after.events_max > before.events_max);

    /* FORCE: the allocation succeeds past max. */
    c.action = CGM_OOM_FORCE;
    p = malloc(2 * MIB);
    CHECK(p != NULL);
    CHECK_EQ(c.calls, 2);
    CHECK(stat_of(o).current >= 2 * MIB);
    CHECK(stat_of(o).current > stat_of(o).max);
    if (p)
        memset(p, 3, 2 * MIB);
    free(p);
    settle(o);
    CHECK(stat_of(o).current < MIB);

    /* RETRY after the handler freed something. */
    void *hold = malloc(768 * KIB);
    CHECK(hold != NULL);
    c.action = CGM_OOM_RETRY;
    c.to_free = hold;
    int calls = c.calls;
    p = malloc(512 * KIB);
    CHECK(p != NULL);
    CHECK_EQ(c.calls, calls + 1);
    CHECK(c.to_free == NULL);
    CHECK(stat_of(o).current <= MIB);
    free(p);
    settle(o);

    /* RETRY without freeing anything: bounded, then the allocation fails. */
    calls = c.calls;
    errno = 0;
    p = malloc(2 * MIB);
    err = errno;
    CHECK(p == NULL);
    CHECK_EQ(err, ENOMEM);
    CHECK(c.calls > calls + 1);

    /* A second handler replaces the first. */
    static struct oomctx c2;
    c2.action = CGM_OOM_FAIL;
    CHECK_EQ(cgm_oom_handler_set(o, on_oom, &c2), 0);
    calls = c.calls;
    p = malloc(2 * MIB);
    CHECK(p == NULL);
    CHECK_EQ(c.calls, calls);
    CHECK_EQ(c2.calls, 1);

    /* NULL clears: the group's memory.oom.policy decides again. */
    CHECK_EQ(cgm_oom_handler_set(o, NULL, NULL), 0);
    CHECK_EQ(cgm_oom_handler_set(o, NULL, NULL), 0);
    errno = 0;
    p = malloc(2 * MIB);
    err = errno;
    CHECK(p == NULL);
    CHECK_EQ(err, ENOMEM);
    CHECK_EQ(c2.calls, 1);
    WRITE_OK(o, "memory.oom.policy", "force");
    p = malloc(2 * MIB);
    CHECK(p != NULL);
    free(p);
    WRITE_OK(o, "memory.oom.policy", "fail");
    settle(o);

    /* The nearest ancestor's handler, when the group has none. */
    c.action = CGM_OOM_FAIL;
    calls = c.calls;
    CHECK_EQ(cgm_oom_handler_set(capi, on_oom, &c), 0);
    p = malloc(2 * MIB);
    CHECK(p == NULL);
    CHECK_EQ(c.calls, calls + 1);
    CHECK_EQ(c.last.group, o);
    CHECK_EQ(c.last.over_limit, o);
    CHECK_EQ(cgm_oom_handler_set(capi, NULL, NULL), 0);
    CHECK_EQ(cgm_thread_attach(root), 0);

    /* An ancestor's limit: info names the charged group and the over-limit ancestor, and
     * the handler of the over-limit group runs, not the charged group's. */
    cgm_group_t op = create("/capi/oomp");
    cgm_group_t oc = create("/capi/oomp/c");
    WRITE_OK(op, "memory.max", "1M");
    static struct oomctx pc, cc;
    pc.action = CGM_OOM_FAIL;
    cc.action = CGM_OOM_FORCE;
    CHECK_EQ(cgm_oom_handler_set(op, on_oom, &pc), 0);
    CHECK_EQ(cgm_oom_handler_set(oc, on_oom, &cc), 0);
    CHECK_EQ(cgm_thread_attach(oc), 0);
    void *keep = malloc(256 * KIB);
    CHECK(keep != NULL);
    errno = 0;
    p = malloc(2 * MIB);
    err = errno;
    uint64_t op_usage = stat_of(op).current;
    CHECK_EQ(cgm_thread_attach(root), 0);
    CHECK(p == NULL);
    CHECK_EQ(err, ENOMEM);
    CHECK_EQ(pc.calls, 1);
    CHECK_EQ(cc.calls, 0);
    CHECK_EQ(pc.last.group, oc);
    CHECK_EQ(pc.last.over_limit, op);
    CHECK(pc.last.bytes >= 2 * MIB);
    CHECK_EQ(pc.last.max, MIB);
    CHECK(pc.last.usage >= 256 * KIB);
    CHECK(pc.last.usage <= op_usage);
    CHECK(kv(op, "memory.events.local", "oom_kill") >= 1);
    CHECK_EQ(kv(oc, "memory.events.local", "oom_kill"), 0);
    CHECK(kv(oc, "memory.events", "oom_kill") == 0);
    free(keep);

    CHECK_EQ(cgm_oom_handler_set(oc, NULL, NULL), 0);
    CHECK_EQ(cgm_oom_handler_set(op, NULL, NULL), 0);
    CHECK_EQ(cgm_group_destroy(oc), 0);
    CHECK_EQ(cgm_group_destroy(op), 0);
    CHECK_EQ(cgm_group_destroy(o), 0);
}

static int abort_handler(void *ctx, const struct cgm_oom_info *info)
{
    (void)ctx;
    (void)info;
    return CGM_OOM_ABORT;
}

/* In a fork child (which keeps the forking thread's group): CGM_OOM_ABORT from a
 * handler, or memory.oom.policy abort, ends the process with SIGABRT. */
static void expect_abort(cgm_group_t g, int use_handler)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 2);
        if (cgm_thread_group() != g)
            _exit(3);
        if (use_handler ? cgm_oom_handler_set(g, abort_handler, NULL) != 0
                        : cgm_group_write(g, "memory.oom.policy", "abort") != 0)
            _exit(4);
        void *p = malloc(4 * MIB);
        (void)p;
        _exit(5);
    }
    CHECK(pid > 0);
    int status = 0;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status))
        CHECK_EQ(WTERMSIG(status), SIGABRT);
    else
        fprintf(stderr, "capi: fork child exited with %d\n", WEXITSTATUS(status));
}

static void test_oom_abort(void)
{
    cgm_group_t a = create("/capi/abort");
    WRITE_OK(a, "memory.max", "1M");
    CHECK_EQ(cgm_thread_attach(a), 0);
    expect_abort(a, 1);
    expect_abort(a, 0);
    CHECK_EQ(cgm_thread_attach(root), 0);
    /* The children's settings died with them. */
    CHECK_FILE(a, "memory.oom.policy", "fail\n");
    CHECK_EQ(cgm_group_destroy(a), 0);
}

/* ------------------------------------------------------------------------------------ */

/* 1 if the eventfd was signalled (and resets it), 0 if not, -1 on error. */
static int signalled(int fd)
{
    uint64_t v = 0;
    ssize_t n = read(fd, &v, sizeof v);
    if (n == (ssize_t)sizeof v)
        return v > 0;
    return n < 0 && errno == EAGAIN ? 0 : -1;
}

static void test_thresholds(void)
{
    cgm_group_t th = create("/capi/thr");
    cgm_group_t k = create("/capi/thr/k");
    cgm_drain_stocks();
    int fd = cgm_threshold_eventfd(th, MIB);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    CHECK_EQ(signalled(fd), 0);

    /* Up, still up, down, up again: one signal per crossing. */
    CHECK_EQ(cgm_charge(th, 2 * MIB, 0), 0);
    CHECK_EQ(signalled(fd), 1);
    CHECK_EQ(signalled(fd), 0);
    CHECK_EQ(cgm_charge(th, 4096, 0), 0);
    CHECK_EQ(cgm_uncharge(th, 4096), 0);
    CHECK_EQ(signalled(fd), 0);
    CHECK_EQ(cgm_uncharge(th, 2 * MIB), 0);
    CHECK_EQ(signalled(fd), 1);
    CHECK_EQ(cgm_charge(th, 2 * MIB, 0), 0);
    CHECK_EQ(signalled(fd), 1);
    CHECK_EQ(cgm_uncharge(th, 2 * MIB), 0);
    CHECK_EQ(signalled(fd), 1);

    /* Charges of a child move the parent's usage. */
    CHECK_EQ(cgm_charge(k, 2 * MIB, 0), 0);
    CHECK_EQ(signalled(fd), 1);
    CHECK_EQ(cgm_uncharge(k, 2 * MIB), 0);
    CHECK_EQ(signalled(fd), 1);

    /* Page by page: seen within the 32-page stock batch. */
    int fd2 = cgm_threshold_eventfd(th, 256 * KIB);
    CHECK(fd2 >= 0 && fd2 != fd);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(cgm_charge(th, 4096, 0), 0);
    CHECK_EQ(signalled(fd2), 1);
    CHECK_EQ(signalled(fd), 0);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(cgm_uncharge(th, 4096), 0);
    CHECK_EQ(signalled(fd2), 1);
    cgm_drain_stocks();
    CHECK_EQ(stat_of(th).current, 0);
    CHECK_EQ(signalled(fd2), 0);

    /* Registered while above: no signal until it crosses. */
    CHECK_EQ(cgm_charge(th, 2 * MIB, 0), 0);
    CHECK_EQ(signalled(fd), 1);
    int fd3 = cgm_threshold_eventfd(th, 1 * MIB);
    CHECK(fd3 >= 0);
    CHECK_EQ(signalled(fd3), 0);
    CHECK_EQ(cgm_uncharge(th, 2 * MIB), 0);
    CHECK_EQ(signalled(fd3), 1);
    CHECK_EQ(signalled(fd), 1);

    /* By malloc in an attached thread. */
    CHECK_EQ(cgm_thread_attach(th), 0);
    void *p = malloc(2 * MIB);
    CHECK_EQ(cgm_thread_attach(root), 0);
    CHECK(p != NULL);
    CHECK_EQ(signalled(fd), 1);
    free(p);
    settle(th);
    CHECK(stat_of(th).current < MIB);
    CHECK_EQ(signalled(fd), 1);

    /* Removal closes the descriptor. */
    CHECK_EQ(cgm_threshold_remove(th, fd3), 0);
    CHECK_EQ(fcntl(fd3, F_GETFD), -1);
    CHECK_EQ(errno, EBADF);
    CHECK_EQ(cgm_threshold_remove(th, fd3), -ENOENT);
    CHECK_EQ(cgm_threshold_remove(th, fd2), 0);
    CHECK_EQ(cgm_threshold_remove(th, fd), 0);
    CHECK_EQ(fcntl(fd, F_GETFD), -1);
    CHECK_EQ(cgm_group_destroy(k), 0);
    CHECK_EQ(cgm_group_destroy(th), 0);
}

/* ------------------------------------------------------------------------------------ */

static uint64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void test_pressure(void)
{
    cgm_group_t ps = create("/capi/psi");
    cgm_group_t idle = create("/capi/psi_idle");
    struct cgm_pressure p;
    memset(&p, 0xff, sizeof p);

    /* Never stalled: zero, in numbers and in the kernel's text; the file is read-only. */
    CHECK_EQ(cgm_group_pressure(idle, &p), 0);
    CHECK(p.some_avg10 == 0 && p.some_avg60 == 0 && p.some_avg300 == 0);
    CHECK(p.full_avg10 == 0 && p.full_avg60 == 0 && p.full_avg300 == 0);
    CHECK_EQ(p.some_total_us, 0);
    CHECK_EQ(p.full_total_us, 0);
    CHECK_FILE(idle, "memory.pressure",
               "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
               "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    CHECK_EQ(cgm_group_write(idle, "memory.pressure", "0"), -EACCES);
    CHECK_EQ(cgm_group_pressure(idle, NULL), -EINVAL);

    /* Triggers: a window of 500 ms..10 s, a stall of 1 us..the window, some or full. */
    CHECK_EQ(cgm_pressure_eventfd(ps, "some", 100000, 499999), -EINVAL);
    CHECK_EQ(cgm_pressure_eventfd(ps, "some", 100000, 10000001), -EINVAL);
    CHECK_EQ(cgm_pressure_eventfd(ps, "some", 0, 1000000), -EINVAL);
    CHECK_EQ(cgm_pressure_eventfd(ps, "some", 1000001, 1000000), -EINVAL);
    CHECK_EQ(cgm_pressure_eventfd(ps, "half", 100000, 1000000), -EINVAL);
    CHECK_EQ(cgm_pressure_eventfd(ps, "", 100000, 1000000), -EINVAL);
    CHECK_EQ(cgm_pressure_eventfd(ps, NULL, 100000, 1000000), -EINVAL);
    int fd = cgm_pressure_eventfd(ps, "some", 100000, 1000000);
    int fd_idle = cgm_pressure_eventfd(idle, "some", 100000, 1000000);
    CHECK(fd >= 0 && fd_idle >= 0);
    if (fd < 0 || fd_idle < 0)
        return;
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    CHECK_EQ(signalled(fd), 0);

    /* A stall: 1 MiB that lands 2% over a `high` of 100M sleeps about 205 ms in the
       throttle. The charging thread is in the root: `full` of the group stays 0. */
    CHECK_EQ(cgm_charge(ps, 101 * MIB, 0), 0);
    WRITE_OK(ps, "memory.high", "100M");
    uint64_t t0 = now_us();
    CHECK_EQ(cgm_charge(ps, MIB, 0), 0);
    uint64_t took = now_us() - t0;
    CHECK(took >= 150000);
    CHECK_EQ(cgm_group_pressure(ps, &p), 0);
    CHECK(p.some_total_us >= took * 8 / 10 && p.some_total_us <= took);
    CHECK_EQ(p.full_total_us, 0);
    char text[256];
    CHECK(readf(ps, "memory.pressure", text, sizeof text) > 0);
    const char *total = strstr(text, "total=");
    CHECK(total != NULL && strtoull(total + 6, NULL, 10) >= p.some_total_us);
    struct cgm_pressure parent;
    CHECK_EQ(cgm_group_pressure(capi, &parent), 0);
    CHECK(parent.some_total_us >= p.some_total_us);
    CHECK_EQ(signalled(fd), 1);
    CHECK_EQ(signalled(fd_idle), 0);
    CHECK_EQ(cgm_uncharge(ps, 102 * MIB), 0);
    WRITE_OK(ps, "memory.high", "max");

    /* Removal closes the descriptor; a destroyed group is gone for these calls too. */
    CHECK_EQ(cgm_pressure_remove(ps, fd), 0);
    CHECK_EQ(fcntl(fd, F_GETFD), -1);
    CHECK_EQ(errno, EBADF);
    CHECK_EQ(cgm_pressure_remove(ps, fd), -ENOENT);
    CHECK_EQ(cgm_pressure_remove(idle, fd_idle), 0);
    CHECK_EQ(cgm_group_destroy(idle), 0);
    CHECK_EQ(cgm_group_pressure(idle, &p), -ENOENT);
    CHECK_EQ(cgm_pressure_eventfd(idle, "some", 100000, 1000000), -ENOENT);
    cgm_drain_stocks();
    CHECK_EQ(cgm_group_destroy(ps), 0);
}

/* ------------------------------------------------------------------------------------ */

static int aligned(const void *p, size_t a)
{
    return p != NULL && ((uintptr_t)p & (a - 1)) == 0;
}

/* A size the compiler cannot see through. */
static size_t opaque(size_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x;
}

static void test_malloc_family(void)
{
    char *p = cgm_malloc(100);
    CHECK(aligned(p, 16));
    CHECK(cgm_malloc_usable_size(p) >= 100);
    if (p)
        memset(p, 'a', 100);
    p = cgm_realloc(p, 100000);
    CHECK(p != NULL);
    CHECK(p && p[0] == 'a' && p[99] == 'a');
    CHECK(cgm_malloc_usable_size(p) >= 100000);
    cgm_free(p);

    void *z = cgm_malloc(0);
    CHECK(z != NULL);
    cgm_free(z);
    cgm_free(NULL);

    unsigned char *c = cgm_calloc(100, 10);
    CHECK(aligned(c, 16));
    int zero = 1;
    for (int i = 0; c && i < 1000; i++)
        zero &= c[i] == 0;
    CHECK(zero);
    cgm_free(c);
    errno = 0;
    CHECK(cgm_calloc(opaque(SIZE_MAX / 2), 4) == NULL);
    CHECK_EQ(errno, ENOMEM);

    int *a = cgm_reallocarray(NULL, 10, sizeof(int));
    CHECK(a != NULL);
    for (int i = 0; a && i < 10; i++)
        a[i] = i;
    int *a2 = cgm_reallocarray(a, 1000, sizeof(int));
    CHECK(a2 != NULL);
    CHECK(a2 && a2[9] == 9);
    if (a2)
        a = a2;
    errno = 0;
    CHECK(cgm_reallocarray(a, opaque(SIZE_MAX / 2), 8) == NULL);
    CHECK_EQ(errno, ENOMEM);
    cgm_free(a);
    CHECK(cgm_realloc(cgm_malloc(10), 0) == NULL);

    void *m = (void *)0x1;
    CHECK_EQ(cgm_posix_memalign(&m, 64, 100), 0);
    CHECK(aligned(m, 64));
    cgm_free(m);
    m = (void *)0x1;
    CHECK_EQ(cgm_posix_memalign(&m, 24, 100), EINVAL);
    CHECK(m == (void *)0x1);

    void *al = cgm_aligned_alloc(256, 512);
    CHECK(aligned(al, 256));
    cgm_free_aligned_sized(al, 256, 512);
    errno = 0;
    CHECK(cgm_aligned_alloc(opaque(48), 96) == NULL);
    CHECK_EQ(errno, EINVAL);

    void *me = cgm_memalign(128, 100);
    CHECK(aligned(me, 128));
    cgm_free(me);
    void *me3 = cgm_memalign(opaque(96), 100); /* rounded up to 128 */
    CHECK(aligned(me3, 128));
    cgm_free(me3);

    void *v = cgm_valloc(100);
    CHECK(aligned(v, 4096));
    cgm_free(v);
    void *pv = cgm_pvalloc(100);
    CHECK(aligned(pv, 4096));
    CHECK(cgm_malloc_usable_size(pv) >= 4096);
    cgm_free(pv);

    void *s = cgm_malloc(300);
    CHECK(s != NULL);
    cgm_free_sized(s, 300);

    errno = 0;
    CHECK(cgm_malloc(opaque(SIZE_MAX - 4096)) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 12345;
    cgm_free(cgm_malloc(10));
    CHECK_EQ(errno, 12345);
    int t = cgm_malloc_trim(0);
    CHECK(t == 0 || t == 1);

    /* The cgm_ functions charge the calling thread's group like malloc. */
    cgm_group_t g = create("/capi/cgm-malloc");
    CHECK_EQ(cgm_thread_attach(g), 0);
    void *big = cgm_malloc(MIB);
    uint64_t cur = stat_of(g).current;
    void *big2 = cgm_calloc(1, MIB);
    uint64_t cur2 = stat_of(g).current;
    CHECK_EQ(cgm_thread_attach(root), 0);
    CHECK(big != NULL && big2 != NULL);
    CHECK(cur >= MIB);
    CHECK(cur2 >= cur + MIB);
    CHECK(kv(g, "memory.stat", "allocated") >= 2 * MIB);
    cgm_free(big);
    cgm_free(big2);
    settle(g);
    CHECK(stat_of(g).current < MIB);
    CHECK_EQ(cgm_group_destroy(g), 0);
}

int main(void)
{
    cgm_resolve_api();
    printf("capi: start\n");
    fflush(stdout);

    test_version_strerror();
    test_root();
    test_groups();
    test_files();
    test_attach_threads();
    test_charge();
    test_drain_stocks();
    test_dying();
    test_reclaimer();
    test_oom();
    test_oom_abort();
    test_thresholds();
    test_pressure();
    test_malloc_family();

    /* Everything this program created is gone or dying; /capi itself can go. */
    CHECK_EQ(cgm_thread_group(), root);
    CHECK_EQ(kv(capi, "cgroup.stat", "nr_descendants"), 0);
    CHECK_EQ(cgm_group_destroy(capi), 0);
    cgm_group_t o;
    CHECK_EQ(cgm_group_open("/capi", &o), -ENOENT);

    if (failures) {
        printf("capi: %u of %u checks failed\n", failures, checks);
        return 1;
    }
    printf("capi: %u checks passed\n", checks);
    return 0;
}
