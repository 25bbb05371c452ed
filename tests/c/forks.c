/*
 * fork() robustness under LD_PRELOAD=libcgmalloc.so (driven by tests/preload/forks.rs).
 *
 *   forks busy   fork repeatedly from one thread while 8 others allocate and free
 *                continuously; each child frees blocks the (now vanished) workers left,
 *                allocates, frees, starts a thread, and exits.
 *   forks many   two threads fork 50 times each, at the same time; every child does a few
 *                mallocs and _exit(0).
 *
 * Every child must exit 0; a child that has not exited after CHILD_TIMEOUT_MS is counted
 * as hung (and killed). Prints "forks MODE: N children, F failed, H hung" and exits
 * non-zero unless F == H == 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reap.h"

enum { CHILD_TIMEOUT_MS = 20000 };

static atomic_int failed, children;
static struct reap_counts kids;

static void sleep_ms(long ms)
{
    sleep_us(ms * 1000);
}

/* Waits for `pid` at most CHILD_TIMEOUT_MS; counts the outcome. */
static void reap(pid_t pid)
{
    atomic_fetch_add(&children, 1);
    char why[160];
    if (!reap_counted(pid, CHILD_TIMEOUT_MS, &kids, why, sizeof why))
        fprintf(stderr, "%s\n", why);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 13);
}

static int filled(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 13))
            return 0;
    return 1;
}

/* A block that records its own size and seed in its first 16 bytes. */
static unsigned char *make_block(unsigned *rng)
{
    *rng = *rng * 1103515245u + 12345u;
    unsigned r = *rng >> 8;
    size_t n = r % 50 == 0 ? 33000 + r % 300000 : 16 + r % 1500;
    unsigned char *p = malloc(n);
    if (!p)
        return NULL;
    uint64_t h[2] = {n, r};
    memcpy(p, h, sizeof h);
    fill(p + 16, n - 16, r);
    return p;
}

static int block_ok(const unsigned char *p)
{
    uint64_t h[2];
    memcpy(h, p, sizeof h);
    return h[0] >= 16 && filled(p + 16, h[0] - 16, (unsigned)h[1]);
}

/* Some allocation work; returns the number of problems seen. */
static int churn(unsigned seed, int rounds)
{
    int bad = 0;
    unsigned char *held[32] = {0};
    for (int i = 0; i < rounds; i++) {
        int k = (int)((seed >> 3) % 32);
        if (held[k]) {
            if (!block_ok(held[k]))
                bad++;
            free(held[k]);
        }
        held[k] = make_block(&seed);
        if (!held[k])
            bad++;
    }
    for (int k = 0; k < 32; k++) {
        if (held[k]) {
            if (!block_ok(held[k]))
                bad++;
            free(held[k]);
        }
    }
    void *c = calloc(1000, 10);
    if (!c)
        bad++;
    c = realloc(c, 200000);
    if (!c)
        bad++;
    free(c);
    return bad;
}

/* ---- busy: 8 workers allocate and free while the main thread forks ---- */

enum { WORKERS = 8, SLOTS = 64, BUSY_FORKS = 40 };

static _Atomic(unsigned char *) slot[WORKERS][SLOTS];
static atomic_int stop;
static atomic_long worker_bad;

static void *worker(void *arg)
{
    int w = (int)(intptr_t)arg;
    unsigned rng = (unsigned)w * 2654435761u + 7;
    long bad = 0;
    for (unsigned i = 0; !atomic_load(&stop); i++) {
        if (i % 64 == 0)
            sched_yield(); /* leave the forking thread some CPU on small machines */
        unsigned char *p = make_block(&rng);
        if (!p) {
            bad++;
            continue;
        }
        /* Publish the block; free whatever it replaces (possibly another worker's). */
        int t = (int)((rng >> 5) % WORKERS);
        int s = (int)((rng >> 9) % SLOTS);
        unsigned char *old = atomic_exchange(&slot[t][s], p);
        if (old) {
            if (!block_ok(old))
                bad++;
            free(old);
        }
    }
    atomic_fetch_add(&worker_bad, bad);
    return NULL;
}

static void *child_thread(void *arg)
{
    return (void *)(intptr_t)churn((unsigned)(uintptr_t)arg, 200);
}

static void busy_child(int n)
{
    int bad = 0;
    /* The workers are gone: free what they left published (their segments are now
     * abandoned), checking the contents first. */
    for (int t = 0; t < WORKERS; t++) {
        for (int s = 0; s < SLOTS; s++) {
            unsigned char *p = atomic_exchange(&slot[t][s], NULL);
            if (p) {
                if (!block_ok(p))
                    bad++;
                free(p);
            }
        }
    }
    bad += churn((unsigned)n * 31 + 1, 500);
    /* A thread in the child. */
    pthread_t th;
    void *r = (void *)1;
    if (pthread_create(&th, NULL, child_thread, (void *)(uintptr_t)n) != 0 ||
        pthread_join(th, &r) != 0)
        bad++;
    bad += (int)(intptr_t)r;
    bad += churn((unsigned)n * 17 + 3, 200);
    _exit(bad == 0 ? 0 : 1);
}

static int run_busy(void)
{
    pthread_t w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&w[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    sleep_ms(20);
    for (int n = 0; n < BUSY_FORKS; n++) {
        pid_t pid = fork();
        if (pid == 0)
            busy_child(n);
        if (pid < 0) {
            perror("fork");
            atomic_fetch_add(&failed, 1);
            continue;
        }
        reap(pid);
        /* The parent's allocator still works between forks. */
        if (churn((unsigned)n, 50) != 0)
            atomic_fetch_add(&failed, 1);
        sleep_ms(n % 4);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(w[i], NULL);
    int left_bad = 0;
    for (int t = 0; t < WORKERS; t++)
        for (int s = 0; s < SLOTS; s++) {
            unsigned char *p = atomic_exchange(&slot[t][s], NULL);
            if (p) {
                if (!block_ok(p))
                    left_bad++;
                free(p);
            }
        }
    if (atomic_load(&worker_bad) != 0 || left_bad != 0) {
        fprintf(stderr, "parent: %ld bad blocks in workers, %d left over\n",
                atomic_load(&worker_bad), left_bad);
        atomic_fetch_add(&failed, 1);
    }
    return 0;
}

/* ---- many: two threads fork 50 times each, at once ---- */

enum { FORKERS = 2, FORKS_EACH = 50 };

static pthread_barrier_t start;

static void *forker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    pthread_barrier_wait(&start);
    for (int n = 0; n < FORKS_EACH; n++) {
        void *mine = malloc(100 + n);
        pid_t pid = fork();
        if (pid == 0) {
            int bad = 0;
            for (int i = 0; i < 8; i++) {
                unsigned char *p = malloc((size_t)(i * 100 + 1));
                if (!p) {
                    bad++;
                    continue;
                }
                fill(p, (size_t)(i * 100 + 1), seed);
                if (!filled(p, (size_t)(i * 100 + 1), seed))
                    bad++;
                free(p);
            }
            free(mine);
            void *big = malloc(1 << 20);
            if (!big)
                bad++;
            free(big);
            _exit(bad == 0 ? 0 : 1);
        }
        free(mine);
        if (pid < 0) {
            perror("fork");
            atomic_fetch_add(&failed, 1);
            continue;
        }
        reap(pid);
        if (churn(seed + (unsigned)n, 20) != 0)
            atomic_fetch_add(&failed, 1);
    }
    return NULL;
}

static int run_many(void)
{
    pthread_t t[FORKERS];
    pthread_barrier_init(&start, NULL, FORKERS);
    for (int i = 0; i < FORKERS; i++)
        if (pthread_create(&t[i], NULL, forker, (void *)(uintptr_t)(i + 1)) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < FORKERS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "busy") != 0 && strcmp(argv[1], "many") != 0)) {
        fprintf(stderr, "usage: forks busy|many\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    int setup = strcmp(argv[1], "busy") == 0 ? run_busy() : run_many();
    int f = atomic_load(&failed) + (int)atomic_load(&kids.failed) + (int)atomic_load(&kids.died),
        h = (int)atomic_load(&kids.hung), c = atomic_load(&children);
    printf("forks %s: %d children, %d failed, %d hung\n", argv[1], c, f, h);
    return setup == 0 && f == 0 && h == 0 ? 0 : 1;
}
