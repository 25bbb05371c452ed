/*
 * Misuse that cgmalloc must detect: run as `misuse MODE` under LD_PRELOAD=libcgmalloc.so.
 * Every mode must end in SIGABRT after exactly one stderr line "cgmalloc: fatal: ...".
 * If the misuse goes unnoticed the program prints "undetected" and exits 0.
 *
 * Modes: double-free, double-free-large, double-free-medium, double-free-medium-remote,
 * double-free-medium-racing,
 * double-free-owner-then-remote, double-free-remote-then-owner, double-free-remote-twice,
 * double-free-remote-pending, double-free-owner-while-remote-pending,
 * double-free-unchecked-owner, double-free-unchecked-remote,
 * double-free-unchecked-owner-{1k,8k}, double-free-unchecked-remote-{1k,8k},
 * double-free-abandoned, foreign-stack, foreign-static, foreign-mmap, interior,
 * interior-large, interior-medium, realloc-foreign, usable-size-interior,
 * realloc-after-free-{small,medium,large}, usable-size-after-free-{small,medium},
 * double-free-never-handed-out, double-free-never-handed-out-remote,
 * realloc-after-free-unchecked, usable-size-after-free-unchecked.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

static char static_buf[256] __attribute__((aligned(64)));

/* Hides the pointer's provenance from the compiler, so it neither warns nor optimizes. */
static void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

static void *free_it(void *p)
{
    free(launder(p));
    return NULL;
}

/* Leaves in out[0] a live block and in out[1] a freed one of the same span, then exits:
 * the span (kept alive by out[0]) is abandoned. */
static void *alloc_free_exit(void *arg)
{
    void **out = arg;
    out[0] = malloc(64);
    out[1] = malloc(64);
    memset(out[1], 2, 64);
    free(out[1]);
    return NULL;
}

/* Frees `p` on a new thread and waits for it. */
/* Two threads that free one block at the same moment (racing_free). */
static atomic_int race_ready;
static void *race_block;

static void *race_free(void *arg)
{
    (void)arg;
    atomic_fetch_add(&race_ready, 1);
    while (atomic_load(&race_ready) < 2)
        ;
    free(launder(race_block));
    return NULL;
}

static void racing_free(void *p)
{
    pthread_t a, b;
    race_block = p;
    pthread_create(&a, NULL, race_free, NULL);
    pthread_create(&b, NULL, race_free, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
}

static void *free_it_twice(void *p)
{
    free(launder(p));
    free(launder(p));
    return NULL;
}

/* The blocks of the span the unchecked modes set up: another thread frees the first
 * UNCHECKED_FREED of them. */
#define UNCHECKED_BLOCKS 3000
#define UNCHECKED_FREED 900
static void *unchecked_v[UNCHECKED_BLOCKS];
static int unchecked_freed = UNCHECKED_FREED;

static void *free_first(void *arg)
{
    (void)arg;
    for (int i = 0; i < unchecked_freed; i++)
        free(launder(unchecked_v[i]));
    return NULL;
}

/* unchecked_block for blocks of `size` bytes (a span holds 64 KiB / size of them):
 * three spans' worth, most of the first span freed by another thread, a few handed
 * out again; returns the block freed first (last in the list taken back). */
static void *unchecked_block_sized(size_t size)
{
    int per_span = (int)(65536 / size);
    unchecked_freed = per_span * 9 / 10;
    for (int i = 0; i < 3 * per_span; i++) {
        unchecked_v[i] = malloc(size);
        memset(unchecked_v[i], 1, 64);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, free_first, NULL) != 0)
        exit(3);
    pthread_join(t, NULL);
    for (int i = 0; i < unchecked_freed / 2; i++)
        (void)launder(malloc(size));
    return unchecked_v[0];
}

/* Fills spans of 64-byte blocks; another thread frees most of the first span's blocks
 * and exits, which pushes its chains; the owner's next slow paths take them back whole,
 * unchecked (their live bits still set), and hand out fewer than were freed, the
 * blocks freed first (last in the list) not among them. Returns one of those. */
static void *unchecked_block(void)
{
    for (int i = 0; i < UNCHECKED_BLOCKS; i++) {
        unchecked_v[i] = malloc(64);
        memset(unchecked_v[i], 1, 64);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, free_first, NULL) != 0)
        exit(3);
    pthread_join(t, NULL);
    for (int i = 0; i < 600; i++)
        (void)launder(malloc(64));
    return unchecked_v[5];
}

/* Frees `pending_block` and waits, its free still on this thread's chain, until told to
 * exit (which pushes the chain). */
static void *pending_block;
static atomic_int pending_freed, pending_go;

static void *free_and_wait(void *arg)
{
    (void)arg;
    free(launder(pending_block));
    atomic_store(&pending_freed, 1);
    while (!atomic_load(&pending_go))
        ;
    return NULL;
}

static void free_on_thread(void *p)
{
    pthread_t t;
    if (pthread_create(&t, NULL, free_it, p) != 0)
        exit(3);
    pthread_join(t, NULL);
}

/* Frees a block of `size` bytes, then reallocates it to `to` bytes. */
static void realloc_after_free(size_t size, size_t to)
{
    void *p = malloc(size);
    memset(p, 1, size);
    free(p);
    void *q = realloc(launder(p), to);
    printf("realloc(freed) = %p\n", q);
}

/* Frees a block of `size` bytes, then asks its usable size. */
static void usable_size_after_free(size_t size)
{
    void *p = malloc(size);
    free(p);
    size_t n = malloc_usable_size(launder(p));
    printf("malloc_usable_size(freed) = %zu\n", n);
}

int main(int argc, char **argv)
{
    /* No core dumps from the expected aborts. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    if (argc != 2) {
        fprintf(stderr, "usage: misuse MODE\n");
        return 2;
    }
    const char *mode = argv[1];
    /* Some ordinary allocations first, so that the allocator is fully set up. */
    void *warm[8];
    for (int i = 0; i < 8; i++)
        warm[i] = malloc((size_t)(i + 1) * 24);

    if (strcmp(mode, "double-free") == 0) {
        void *p = malloc(64);
        memset(p, 1, 64);
        free(p);
        free(launder(p));
    } else if (strcmp(mode, "double-free-large") == 0) {
        void *p = malloc(2 << 20);
        memset(p, 1, 2 << 20);
        free(p);
        free(launder(p));
    } else if (strcmp(mode, "double-free-medium") == 0) {
        void *p = malloc(200000);
        memset(p, 1, 200000);
        free(p);
        free(launder(p));
    } else if (strcmp(mode, "double-free-medium-remote") == 0) {
        void *p = malloc(200000);
        memset(p, 1, 200000);
        free_on_thread(p);
        free_on_thread(p);
    } else if (strcmp(mode, "double-free-medium-racing") == 0) {
        /* Two other threads free it at once: both may pass the check that the block is
         * live before either pushes it; one push wins. */
        void *p = malloc(200000);
        memset(p, 1, 200000);
        racing_free(p);
    } else if (strcmp(mode, "double-free-owner-then-remote") == 0) {
        /* The allocating thread frees it, then another thread frees it again. */
        void *p = malloc(64);
        memset(p, 1, 64);
        free(p);
        free_on_thread(p);
        /* Undetected, the block is now on two free lists: show the consequence. */
        static void *v[5000];
        int dup = 0;
        for (int i = 0; i < 5000; i++)
            if ((v[i] = malloc(64)) == p)
                dup++;
        printf("block handed out %d times\n", dup);
    } else if (strcmp(mode, "double-free-remote-then-owner") == 0) {
        void *p = malloc(64);
        memset(p, 1, 64);
        free_on_thread(p);
        free(launder(p));
    } else if (strcmp(mode, "double-free-remote-twice") == 0) {
        void *p = malloc(64);
        memset(p, 1, 64);
        free_on_thread(p);
        free_on_thread(p);
    } else if (strcmp(mode, "double-free-remote-pending") == 0) {
        /* Another thread frees it twice in a row: the first free waits on that thread's
         * chain, so the second finds it neither free nor pushed; the owner meets the
         * block twice when it collects the span, after the thread's exit pushed it. */
        void *p = malloc(64);
        memset(p, 1, 64);
        pthread_t t;
        if (pthread_create(&t, NULL, free_it_twice, p) != 0)
            return 3;
        pthread_join(t, NULL);
        static void *v[5000];
        for (int i = 0; i < 5000; i++)
            v[i] = malloc(64);
        printf("%p\n", v[4999]);
    } else if (strcmp(mode, "double-free-owner-while-remote-pending") == 0) {
        /* Another thread frees a live block of a span holding unchecked blocks and waits,
         * its free on its chain; the owner frees it again (onto `local_free`, the live
         * bit still set); the thread's exit pushes the chain, and the owner's collect
         * must not take the list whole while `local_free` may hold one of its blocks. */
        (void)unchecked_block();
        pending_block = unchecked_v[1000];
        pthread_t t;
        if (pthread_create(&t, NULL, free_and_wait, NULL) != 0)
            return 3;
        while (!atomic_load(&pending_freed))
            ;
        free(launder(pending_block));
        atomic_store(&pending_go, 1);
        pthread_join(t, NULL);
        /* Undetected, the block is on two free lists: show the consequence. */
        int dup = 0;
        for (int i = 0; i < 2000; i++)
            if (malloc(64) == pending_block)
                dup++;
        printf("block handed out %d times\n", dup);
    } else if (strcmp(mode, "double-free-unchecked-owner") == 0) {
        /* Freed by another thread, taken back unchecked, freed again by its owner. */
        free(launder(unchecked_block()));
    } else if (strcmp(mode, "double-free-unchecked-remote") == 0) {
        /* Freed by another thread, taken back unchecked, freed again by a third. */
        free_on_thread(unchecked_block());
    } else if (strcmp(mode, "double-free-unchecked-owner-1k") == 0) {
        free(launder(unchecked_block_sized(1024)));
    } else if (strcmp(mode, "double-free-unchecked-owner-8k") == 0) {
        free(launder(unchecked_block_sized(8192)));
    } else if (strcmp(mode, "double-free-unchecked-remote-1k") == 0) {
        free_on_thread(unchecked_block_sized(1024));
    } else if (strcmp(mode, "double-free-unchecked-remote-8k") == 0) {
        free_on_thread(unchecked_block_sized(8192));
    } else if (strcmp(mode, "double-free-abandoned") == 0) {
        /* Allocated and freed by a thread that has exited since. */
        pthread_t t;
        void *blocks[2] = {NULL, NULL};
        if (pthread_create(&t, NULL, alloc_free_exit, blocks) != 0)
            return 3;
        pthread_join(t, NULL);
        free(launder(blocks[1]));
    } else if (strcmp(mode, "foreign-stack") == 0) {
        char buf[256] __attribute__((aligned(64)));
        memset(buf, 0, sizeof buf);
        free(launder(buf + 64));
    } else if (strcmp(mode, "foreign-static") == 0) {
        free(launder(static_buf + 64));
    } else if (strcmp(mode, "foreign-mmap") == 0) {
        void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return 3;
        free(launder((char *)m + 4096));
    } else if (strcmp(mode, "interior") == 0) {
        char *p = malloc(64);
        memset(p, 1, 64);
        free(launder(p + 16));
    } else if (strcmp(mode, "interior-large") == 0) {
        char *p = malloc(2 << 20);
        memset(p, 1, 2 << 20);
        free(launder(p + 4096));
    } else if (strcmp(mode, "interior-medium") == 0) {
        /* In the block's third 64 KiB slice. */
        char *p = malloc(200000);
        memset(p, 1, 200000);
        free(launder(p + 150000));
    } else if (strcmp(mode, "realloc-foreign") == 0) {
        void *q = realloc(launder(static_buf), 100);
        printf("realloc(foreign) = %p\n", q);
    } else if (strcmp(mode, "realloc-after-free-small") == 0) {
        realloc_after_free(64, 32);
    } else if (strcmp(mode, "realloc-after-free-medium") == 0) {
        /* The freed block's span is kept for reuse: growing it would charge a free span. */
        realloc_after_free(200000, 300000);
    } else if (strcmp(mode, "realloc-after-free-large") == 0) {
        realloc_after_free(3 << 20, 5 << 20);
    } else if (strcmp(mode, "usable-size-after-free-small") == 0) {
        usable_size_after_free(64);
    } else if (strcmp(mode, "usable-size-after-free-medium") == 0) {
        usable_size_after_free(200000);
    } else if (strcmp(mode, "double-free-never-handed-out") == 0) {
        /* A block start of a fresh span that was never handed out: the first 8000-byte
         * block of a new span, and the fourth after it (a span carves 16 KiB at first). */
        char *p = malloc(8000);
        char *q = p + 4 * malloc_usable_size(p);
        free(launder(q));
    } else if (strcmp(mode, "double-free-never-handed-out-remote") == 0) {
        /* As above, freed by another thread: its owner would take it unchecked. */
        char *p = malloc(8000);
        char *q = p + 4 * malloc_usable_size(p);
        free_on_thread(q);
    } else if (strcmp(mode, "realloc-after-free-unchecked") == 0) {
        /* Freed by another thread and taken back unchecked (its live bit still set). */
        void *q = realloc(launder(unchecked_block()), 32);
        printf("realloc(freed) = %p\n", q);
    } else if (strcmp(mode, "usable-size-after-free-unchecked") == 0) {
        size_t n = malloc_usable_size(launder(unchecked_block()));
        printf("malloc_usable_size(freed) = %zu\n", n);
    } else if (strcmp(mode, "usable-size-interior") == 0) {
        char *p = malloc(64);
        size_t n = malloc_usable_size(launder(p + 16));
        printf("malloc_usable_size(interior) = %zu\n", n);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    for (int i = 0; i < 8; i++)
        free(warm[i]);
    printf("undetected\n");
    return 0;
}
