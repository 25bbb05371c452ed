/*
 * fork() from multithreaded programs whose threads allocate in non-root groups (driven
 * by tests/lifecycle/fork_storm.rs). Every child must exit 0: none may die in cgmalloc's
 * fork-child handler (or anywhere else).
 *
 *   fork_storm repro [trim] [attach] [forks=N]
 *       The reproducer of the fork-child page counter underflow: 4 threads named
 *       worker-0..3 allocate 1..70000 bytes (2 MiB one time in 1024), touch them and
 *       hand them to each other through a 256-slot mailbox; worker-0 calls
 *       malloc_trim(0) now and then with `trim`. The main thread forks N times (200), each
 *       child _exits at once. Run it under
 *       `cgmalloc run --group /w:max=1G --thread 'worker-*=/w'`; with `attach` (a linked
 *       build) it makes /w (max=1G) itself and the workers attach to it. Without either
 *       the workers stay in the root group.
 *
 *   fork_storm storm [trim] [attach] [forks=N]
 *       4 threads alloc-0..3 allocate and hand blocks to each other, each in a group of
 *       its own (/s0../s3, max=1G; with `trim` each calls malloc_trim(0) now and then),
 *       while 2 threads forker-0 (root) and forker-1 (/s1) fork N/2 times each. A child
 *       allocates small, medium and large blocks, reads its group's memory.current with
 *       cgm_group_stat (which must cover the medium and large blocks it holds), then one
 *       time in four execs /bin/true, else frees them and _exits. The groups come from
 *       CGMALLOC_GROUPS and CGMALLOC_THREADS (preloaded), from the C API with `attach`
 *       (linked), or not at all (every thread in the root).
 *
 * Prints one line
 *   MODE trim=T: F forks, D children died (killed by a signal), X failed, H hung;
 *       groups: NAME=PATH ...
 * naming the group each allocating thread (and forker) was in at the end, and exits 0
 * only when D == X == H == 0 and F == N.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
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

enum { ALLOCATORS = 4, FORKERS = 2, CHILD_TIMEOUT_MS = 20000 };

static int trim, attach_groups, storm;
static long nforks = 200;
static atomic_int stop;
static _Atomic(void *) mailbox[256];
static atomic_long forks, failed;
static struct reap_counts kids;
static cgm_group_t groups[ALLOCATORS];
static char where[ALLOCATORS + FORKERS][64];

/* The path of the calling thread's group, into where[i]. */
static void record_group(int i)
{
    char path[64] = "?";
    if (cgm_group_path(cgm_thread_group(), path, sizeof path) < 0)
        strcpy(path, "?");
    snprintf(where[i], sizeof where[i], "%s", path);
}

/* Waits for `pid` (at most CHILD_TIMEOUT_MS) and counts how it ended. */
static void reap(pid_t pid)
{
    atomic_fetch_add(&forks, 1);
    char why[160];
    if (!reap_counted(pid, CHILD_TIMEOUT_MS, &kids, why, sizeof why))
        fprintf(stderr, "%s\n", why);
}

/* ---- repro: the program of the issue, as it was reported ---- */

static void *repro_worker(void *a)
{
    long id = (long)a;
    char n[16];
    snprintf(n, 16, "worker-%ld", id);
    pthread_setname_np(pthread_self(), n);
    if (attach_groups)
        cgm_thread_attach(groups[0]);
    unsigned s = id + 1;
    while (!stop) {
        s = s * 1103515245 + 12345;
        size_t sz = (s >> 8) % 70000 + 1;
        if ((s & 1023) == 0)
            sz = 2 << 20;
        void *p = malloc(sz);
        if (p)
            memset(p, 1, sz < 64 ? sz : 64);
        free(atomic_exchange(&mailbox[(s >> 3) & 255], p));
        if (trim && id == 0 && (s & 4095) == 7)
            malloc_trim(0);
    }
    record_group((int)id);
    return NULL;
}

static void run_repro(void)
{
    pthread_t t[ALLOCATORS];
    for (long i = 0; i < ALLOCATORS; i++)
        pthread_create(&t[i], 0, repro_worker, (void *)i);
    usleep(20000);
    for (long i = 0; i < nforks; i++) {
        pid_t p = fork();
        if (!p)
            _exit(0);
        if (p < 0) {
            perror("fork");
            atomic_fetch_add(&failed, 1);
            continue;
        }
        reap(p);
    }
    stop = 1;
    for (int i = 0; i < ALLOCATORS; i++)
        pthread_join(t[i], 0);
}

/* ---- storm: 2 forking threads, 4 allocating threads in 4 groups ---- */

static void *alloc_main(void *a)
{
    long id = (long)a;
    char n[16];
    snprintf(n, sizeof n, "alloc-%ld", id);
    pthread_setname_np(pthread_self(), n);
    if (attach_groups)
        cgm_thread_attach(groups[id]);
    unsigned s = (unsigned)id * 7919 + 1;
    for (unsigned long i = 1; !stop; i++) {
        s = s * 1103515245 + 12345;
        size_t sz = (s >> 8) % 70000 + 1;
        if ((s & 511) == 0)
            sz = (1 << 20) + (s >> 12) % (3 << 20);
        void *p = malloc(sz);
        if (p)
            memset(p, 1, sz < 64 ? sz : 64);
        free(atomic_exchange(&mailbox[(s >> 3) & 255], p));
        if (trim && i % 4096 == (unsigned long)id * 1024)
            malloc_trim(0);
    }
    record_group((int)id);
    return NULL;
}

/* A child of the storm: one thread, in its forker's group. */
static void storm_child(long n)
{
    cgm_group_t g = cgm_thread_group();
    static const size_t sizes[] = {24, 512, 4000, 30000, 100000, 700000, 2 << 20};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    unsigned char *held[NS];
    uint64_t least = 0;
    for (int i = 0; i < NS; i++) {
        held[i] = malloc(sizes[i]);
        if (!held[i]) {
            fprintf(stderr, "child: malloc(%zu) failed\n", sizes[i]);
            _exit(3);
        }
        memset(held[i], (int)n, sizes[i] < 4096 ? sizes[i] : 4096);
        held[i][sizes[i] - 1] = 7;
        if (sizes[i] > 32 * 1024)
            least += (sizes[i] + 4095) / 4096 * 4096;
    }
    struct cgm_stat st;
    int rc = cgm_group_stat(g, &st);
    if (rc != 0) {
        fprintf(stderr, "child: cgm_group_stat: %s\n", cgm_strerror(rc));
        _exit(4);
    }
    if (st.current < least) {
        fprintf(stderr, "child: memory.current %llu with %llu bytes of blocks charged to the page\n",
                (unsigned long long)st.current, (unsigned long long)least);
        _exit(5);
    }
    if (n % 4 == 3) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < NS; i++)
        free(held[i]);
    _exit(0);
}

static void *forker_main(void *a)
{
    long id = (long)a;
    char n[16];
    snprintf(n, sizeof n, "forker-%ld", id);
    pthread_setname_np(pthread_self(), n);
    if (attach_groups && id == 1)
        cgm_thread_attach(groups[1]);
    /* Something of this thread's own to leave live across the forks. */
    void *mine = malloc(5000);
    for (long i = 0; i < nforks / FORKERS; i++) {
        pid_t p = fork();
        if (p == 0)
            storm_child(i * FORKERS + id);
        if (p < 0) {
            perror("fork");
            atomic_fetch_add(&failed, 1);
            continue;
        }
        reap(p);
    }
    free(mine);
    record_group(ALLOCATORS + (int)id);
    return NULL;
}

static void run_storm(void)
{
    pthread_t a[ALLOCATORS], f[FORKERS];
    for (long i = 0; i < ALLOCATORS; i++)
        pthread_create(&a[i], 0, alloc_main, (void *)i);
    usleep(20000);
    for (long i = 0; i < FORKERS; i++)
        pthread_create(&f[i], 0, forker_main, (void *)i);
    for (int i = 0; i < FORKERS; i++)
        pthread_join(f[i], 0);
    stop = 1;
    for (int i = 0; i < ALLOCATORS; i++)
        pthread_join(a[i], 0);
}

int main(int argc, char **argv)
{
    cgm_resolve_api();
    if (argc < 2 || (strcmp(argv[1], "repro") != 0 && strcmp(argv[1], "storm") != 0)) {
        fprintf(stderr, "usage: fork_storm repro|storm [trim] [attach] [forks=N]\n");
        return 2;
    }
    storm = strcmp(argv[1], "storm") == 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "trim") == 0)
            trim = 1;
        else if (strcmp(argv[i], "attach") == 0)
            attach_groups = 1;
        else if (strncmp(argv[i], "forks=", 6) == 0)
            nforks = atol(argv[i] + 6);
        else {
            fprintf(stderr, "fork_storm: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    if (attach_groups) {
        for (int i = 0; i < (storm ? ALLOCATORS : 1); i++) {
            char path[16];
            snprintf(path, sizeof path, storm ? "/s%d" : "/w", i);
            int rc = cgm_group_create(path, &groups[i]);
            if (rc == 0)
                rc = cgm_group_write(groups[i], "memory.max", "1G");
            if (rc != 0) {
                fprintf(stderr, "fork_storm: group %s: %s\n", path, cgm_strerror(rc));
                return 1;
            }
        }
    }
    if (storm)
        run_storm();
    else
        run_repro();
    long f = atomic_load(&forks), d = atomic_load(&kids.died),
         x = atomic_load(&failed) + atomic_load(&kids.failed), h = atomic_load(&kids.hung);
    char names[512] = "";
    size_t off = 0;
    for (int i = 0; i < ALLOCATORS + (storm ? FORKERS : 0); i++)
        off += (size_t)snprintf(names + off, sizeof names - off, " %s-%d=%s",
                                i < ALLOCATORS ? (storm ? "alloc" : "worker") : "forker",
                                i < ALLOCATORS ? i : i - ALLOCATORS, where[i]);
    printf("%s trim=%d: %ld forks, %ld children died, %ld failed, %ld hung; groups:%s\n",
           argv[1], trim, f, d, x, h, names);
    return f == (nforks / (storm ? FORKERS : 1)) * (storm ? FORKERS : 1) && d == 0 && x == 0 &&
                   h == 0
               ? 0
               : 1;
}
