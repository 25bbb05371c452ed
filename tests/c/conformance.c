/*
 * Conformance of cgmalloc's malloc family (INTERFACE.md "The malloc family"): glibc's
 * semantics, 16-byte alignment, errno on failure, overflow checks, realloc rules,
 * alignment requests, usable sizes, zeroing, large blocks, threads and fork.
 *
 * Run with LD_PRELOAD=libcgmalloc.so, or linked against it (-lcgmalloc): both must pass.
 * Prints "N passed, M failed" and exits non-zero on any failure. Driven by
 * tests/preload/conformance.rs (also under valgrind).
 *
 * Sizes go through opaque() so that the compiler can neither fold an impossible request
 * nor warn about it; the test is built with -fno-builtin so that every call really
 * reaches the allocator (GCC otherwise assumes, e.g., that free leaves errno alone).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (cond) {                                                         \
            passed++;                                                       \
        } else {                                                            \
            failed++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

static size_t opaque(size_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x;
}

/* Hides a pointer from the compiler, which would otherwise warn about using a block after
 * a realloc that (by design of the test) failed and left it alone. */
static void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

static int aligned_to(const void *p, size_t a)
{
    return p != NULL && ((uintptr_t)p & (a - 1)) == 0;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 31 + (i >> 8));
}

static int filled(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 31 + (i >> 8)))
            return 0;
    return 1;
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

/* Every page of a big block is written and read back. */
static int touch_pages(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 4096)
        p[i] = (unsigned char)(i >> 12);
    p[n - 1] = 0x5a;
    for (size_t i = 0; i < n; i += 4096)
        if (p[i] != (unsigned char)(i >> 12))
            return 0;
    return p[n - 1] == 0x5a;
}

static const size_t SMALL_SIZES[] = {1,    7,    8,     15,    16,    17,    24,    33,
                                     48,   64,   100,   127,   128,   129,   200,   255,
                                     256,  500,  1000,  1024,  1500,  2048,  4000,  4096,
                                     5000, 8192, 10000, 16384, 20000, 32768, 32769, 40000,
                                     65536, 100000, 200000, 1000000};
#define NSMALL (sizeof SMALL_SIZES / sizeof SMALL_SIZES[0])

static const size_t ALIGNS[] = {32, 64, 128, 256, 4096, 65536, 1 << 20, 2 << 20, 4 << 20};
#define NALIGNS (sizeof ALIGNS / sizeof ALIGNS[0])

static void test_alignment(void)
{
    int bad_malloc = 0, bad_calloc = 0, bad_realloc = 0, bad_usable = 0;
    for (size_t i = 0; i < NSMALL; i++) {
        size_t n = opaque(SMALL_SIZES[i]);
        unsigned char *p = malloc(n);
        if (!aligned_to(p, 16))
            bad_malloc++;
        else if (malloc_usable_size(p) < n)
            bad_usable++;
        if (p)
            fill(p, n, (unsigned)i);
        unsigned char *c = calloc(1, n);
        if (!aligned_to(c, 16) || !all_zero(c, n))
            bad_calloc++;
        unsigned char *r = realloc(p, n * 2 + 1);
        if (!aligned_to(r, 16) || !filled(r, n, (unsigned)i))
            bad_realloc++;
        free(r ? r : p);
        free(c);
    }
    CHECK(bad_malloc == 0, "%d malloc results not 16-aligned", bad_malloc);
    CHECK(bad_usable == 0, "%d malloc_usable_size below the request", bad_usable);
    CHECK(bad_calloc == 0, "%d calloc results not 16-aligned or not zeroed", bad_calloc);
    CHECK(bad_realloc == 0, "%d realloc results not 16-aligned or lost contents", bad_realloc);

    /* Many live blocks at once: alignment must hold across whole spans, not just the first. */
    enum { LIVE = 2000 };
    static void *live[LIVE];
    int bad = 0;
    for (int i = 0; i < LIVE; i++) {
        live[i] = malloc(opaque((size_t)(i % 300) + 1));
        if (!aligned_to(live[i], 16))
            bad++;
    }
    for (int i = 0; i < LIVE; i++)
        free(live[i]);
    CHECK(bad == 0, "%d of %d live small blocks not 16-aligned", bad, LIVE);

    for (size_t a = 0; a < NALIGNS; a++) {
        size_t al = ALIGNS[a];
        size_t sizes[] = {1, 100, al, 100000, (3u << 20) + 5};
        int bad_pm = 0, bad_aa = 0, bad_ma = 0;
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = opaque(sizes[s]);
            void *p = NULL;
            int rc = posix_memalign(&p, al, n);
            if (rc != 0 || !aligned_to(p, al) || malloc_usable_size(p) < n)
                bad_pm++;
            else
                fill(p, n, 3);
            void *q = aligned_alloc(al, n);
            if (!aligned_to(q, al) || malloc_usable_size(q) < n)
                bad_aa++;
            else
                fill(q, n, 4);
            void *m = memalign(al, n);
            if (!aligned_to(m, al) || malloc_usable_size(m) < n)
                bad_ma++;
            else
                fill(m, n, 5);
            if (p && !filled(p, n, 3))
                bad_pm++;
            if (q && !filled(q, n, 4))
                bad_aa++;
            if (m && !filled(m, n, 5))
                bad_ma++;
            free(p);
            free(q);
            free(m);
        }
        CHECK(bad_pm == 0, "posix_memalign(%zu): %d bad results", al, bad_pm);
        CHECK(bad_aa == 0, "aligned_alloc(%zu): %d bad results", al, bad_aa);
        CHECK(bad_ma == 0, "memalign(%zu): %d bad results", al, bad_ma);
    }

    /* Small alignments are at least 16 anyway. */
    void *p = aligned_alloc(opaque(1), 5);
    CHECK(aligned_to(p, 16), "aligned_alloc(1, 5) = %p", p);
    free(p);
    void *q = NULL;
    CHECK(posix_memalign(&q, opaque(8), 5) == 0 && aligned_to(q, 16), "posix_memalign(8) = %p",
          q);
    free(q);

    /* A realloc keeps a big alignment's contents (alignment itself is only 16 then). */
    unsigned char *big = aligned_alloc(opaque(65536), 1000);
    if (big)
        fill(big, 1000, 9);
    unsigned char *grown = realloc(big, opaque(200000));
    CHECK(aligned_to(grown, 16) && filled(grown, 1000, 9), "realloc of aligned block");
    free(grown);
}

static void test_zero_size(void)
{
    enum { N = 64 };
    void *p[N];
    int nulls = 0, dups = 0, misaligned = 0;
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque(0));
        if (!p[i])
            nulls++;
        else if (!aligned_to(p[i], 16))
            misaligned++;
        for (int j = 0; j < i; j++)
            if (p[i] && p[i] == p[j])
                dups++;
    }
    CHECK(nulls == 0, "malloc(0) returned NULL %d times", nulls);
    CHECK(dups == 0, "malloc(0) returned %d duplicate pointers", dups);
    CHECK(misaligned == 0, "malloc(0) misaligned %d times", misaligned);
    for (int i = 0; i < N; i++)
        free(p[i]);

    void *c = calloc(opaque(0), 16);
    void *c2 = calloc(16, opaque(0));
    CHECK(c != NULL && c2 != NULL && c != c2, "calloc with a zero count/size: %p %p", c, c2);
    free(c);
    free(c2);

    void *a = aligned_alloc(opaque(64), 0);
    CHECK(aligned_to(a, 64), "aligned_alloc(64, 0) = %p", a);
    free(a);
    void *m = memalign(opaque(4096), 0);
    CHECK(aligned_to(m, 4096), "memalign(4096, 0) = %p", m);
    free(m);
}

static void test_impossible_sizes(void)
{
    const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, SIZE_MAX / 2,
                           (size_t)1 << 62};
    const size_t nhuge = sizeof huge / sizeof huge[0];
    int bad[10] = {0};
    void *keep = malloc(100);
    fill(keep, 100, 77);
    for (size_t i = 0; i < nhuge; i++) {
        size_t n = opaque(huge[i]);
        void *p;
        errno = 0;
        p = malloc(n);
        if (p != NULL || errno != ENOMEM)
            bad[0]++;
        errno = 0;
        p = calloc(1, n);
        if (p != NULL || errno != ENOMEM)
            bad[1]++;
        errno = 0;
        p = calloc(n, 1);
        if (p != NULL || errno != ENOMEM)
            bad[1]++;
        errno = 0;
        p = realloc(launder(keep), n);
        if (p != NULL || errno != ENOMEM)
            bad[2]++;
        errno = 0;
        p = realloc(NULL, n);
        if (p != NULL || errno != ENOMEM)
            bad[2]++;
        errno = 0;
        p = reallocarray(launder(keep), 1, n);
        if (p != NULL || errno != ENOMEM)
            bad[3]++;
        void *out = (void *)0x1234;
        int rc = posix_memalign(&out, 64, n);
        if (rc != ENOMEM || out != (void *)0x1234)
            bad[4]++;
        errno = 0;
        p = aligned_alloc(64, n);
        if (p != NULL || errno != ENOMEM)
            bad[5]++;
        errno = 0;
        p = aligned_alloc(1 << 20, n);
        if (p != NULL || errno != ENOMEM)
            bad[5]++;
        errno = 0;
        p = memalign(64, n);
        if (p != NULL || errno != ENOMEM)
            bad[6]++;
        errno = 0;
        p = valloc(n);
        if (p != NULL || errno != ENOMEM)
            bad[7]++;
        errno = 0;
        p = pvalloc(n);
        if (p != NULL || errno != ENOMEM)
            bad[8]++;
    }
    CHECK(bad[0] == 0, "malloc(huge): %d not NULL/ENOMEM", bad[0]);
    CHECK(bad[1] == 0, "calloc(huge): %d not NULL/ENOMEM", bad[1]);
    CHECK(bad[2] == 0, "realloc(huge): %d not NULL/ENOMEM", bad[2]);
    CHECK(bad[3] == 0, "reallocarray(huge): %d not NULL/ENOMEM", bad[3]);
    CHECK(bad[4] == 0, "posix_memalign(huge): %d not ENOMEM or *out touched", bad[4]);
    CHECK(bad[5] == 0, "aligned_alloc(huge): %d not NULL/ENOMEM", bad[5]);
    CHECK(bad[6] == 0, "memalign(huge): %d not NULL/ENOMEM", bad[6]);
    CHECK(bad[7] == 0, "valloc(huge): %d not NULL/ENOMEM", bad[7]);
    CHECK(bad[8] == 0, "pvalloc(huge): %d not NULL/ENOMEM", bad[8]);
    /* The old block survived every failed realloc, intact and usable. */
    CHECK(filled(keep, 100, 77), "failed realloc damaged the old block");
    unsigned char *k2 = realloc(keep, 5000);
    CHECK(k2 != NULL && filled(k2, 100, 77), "old block not reallocatable after failures");
    free(k2 ? k2 : keep);

    /* A large old block survives a failed realloc too (in a child: a broken allocator may
     * crash here, which is then one failed check rather than the end of the run). */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        unsigned char *big = malloc(opaque(3 << 20));
        if (!big)
            _exit(2);
        fill(big, 3 << 20, 12);
        for (size_t i = 0; i < nhuge; i++) {
            errno = 0;
            void *r = realloc(launder(big), opaque(huge[i]));
            if (r != NULL || errno != ENOMEM) {
                fprintf(stderr, "realloc(3 MiB block, %zu) = %p, errno %d\n", huge[i], r, errno);
                _exit(3);
            }
            if (!filled(big, 3 << 20, 12)) {
                fprintf(stderr, "realloc(3 MiB block, %zu) damaged it\n", huge[i]);
                _exit(4);
            }
        }
        big = realloc(big, opaque(5 << 20));
        _exit(big != NULL && filled(big, 3 << 20, 12) ? 0 : 5);
    }
    int status = -1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "realloc(large block, huge) not NULL/ENOMEM or old block damaged (child status 0x%x)",
          status);

    /* The allocator still works after all those failures. */
    void *after = malloc(64);
    CHECK(aligned_to(after, 16), "malloc after failures = %p", after);
    free(after);
}

static void test_overflow(void)
{
    size_t half = opaque(SIZE_MAX / 2 + 1);
    errno = 0;
    CHECK(calloc(half, 2) == NULL && errno == ENOMEM, "calloc(SIZE_MAX/2+1, 2)");
    errno = 0;
    CHECK(calloc(2, half) == NULL && errno == ENOMEM, "calloc(2, SIZE_MAX/2+1)");
    errno = 0;
    CHECK(calloc(opaque((size_t)1 << 32), (size_t)1 << 32) == NULL && errno == ENOMEM,
          "calloc(2^32, 2^32)");
    errno = 0;
    CHECK(calloc(opaque(SIZE_MAX), opaque(SIZE_MAX)) == NULL && errno == ENOMEM,
          "calloc(SIZE_MAX, SIZE_MAX)");
    errno = 0;
    CHECK(calloc(opaque(SIZE_MAX / 3 + 1), 3) == NULL && errno == ENOMEM,
          "calloc(SIZE_MAX/3+1, 3)");

    unsigned char *p = malloc(64);
    fill(p, 64, 21);
    errno = 0;
    CHECK(reallocarray(launder(p), half, 2) == NULL && errno == ENOMEM, "reallocarray(p, half, 2)");
    CHECK(filled(p, 64, 21), "reallocarray overflow damaged the block");
    errno = 0;
    CHECK(reallocarray(NULL, 2, half) == NULL && errno == ENOMEM,
          "reallocarray(NULL, 2, half)");
    unsigned char *q = reallocarray(p, 100, 10);
    CHECK(q != NULL && aligned_to(q, 16) && filled(q, 64, 21) && malloc_usable_size(q) >= 1000,
          "reallocarray(p, 100, 10)");
    free(q ? q : p);
    int *arr = reallocarray(NULL, opaque(1000), sizeof(int));
    CHECK(arr != NULL && malloc_usable_size(arr) >= 1000 * sizeof(int),
          "reallocarray(NULL, 1000, 4)");
    free(arr);
}

static void test_realloc(void)
{
    /* realloc(NULL, n) is malloc(n). */
    unsigned char *p = realloc(NULL, opaque(40));
    CHECK(aligned_to(p, 16) && malloc_usable_size(p) >= 40, "realloc(NULL, 40) = %p", p);
    fill(p, 40, 1);

    /* Growing keeps the contents, through small classes and into large blocks. */
    size_t steps[] = {40, 100, 1000, 30000, 40000, 500000, 3 << 20, 9 << 20};
    int bad_grow = 0;
    for (size_t i = 1; i < sizeof steps / sizeof steps[0]; i++) {
        unsigned char *q = realloc(p, opaque(steps[i]));
        if (!aligned_to(q, 16) || !filled(q, 40, 1) || malloc_usable_size(q) < steps[i]) {
            bad_grow++;
            if (!q)
                break;
        }
        p = q;
        fill(p, steps[i], 1);
    }
    CHECK(bad_grow == 0, "%d growing reallocs lost contents or alignment", bad_grow);

    /* Shrinking keeps the (remaining) contents. */
    size_t down[] = {8 << 20, 2 << 20, 600000, 50000, 20000, 500, 17, 1};
    int bad_shrink = 0;
    for (size_t i = 0; i < sizeof down / sizeof down[0]; i++) {
        unsigned char *q = realloc(p, opaque(down[i]));
        if (!aligned_to(q, 16) || !filled(q, down[i], 1) || malloc_usable_size(q) < down[i]) {
            bad_shrink++;
            if (!q)
                break;
        }
        p = q;
    }
    CHECK(bad_shrink == 0, "%d shrinking reallocs lost contents or alignment", bad_shrink);

    /* realloc(p, 0) frees p and returns NULL. */
    errno = 0;
    void *z = realloc(p, opaque(0));
    CHECK(z == NULL, "realloc(p, 0) = %p, want NULL", z);

    /* Large in place: the pointer and contents survive grow and shrink. */
    unsigned char *l = malloc(opaque(1 << 20));
    fill(l, 1 << 20, 44);
    unsigned char *l2 = realloc(l, opaque((1 << 20) + 4096));
    CHECK(l2 != NULL && filled(l2, 1 << 20, 44), "realloc(1 MiB -> 1 MiB + 4 KiB)");
    unsigned char *l3 = realloc(l2, opaque(300000));
    CHECK(l3 != NULL && filled(l3, 300000, 44), "realloc(1 MiB -> 300000)");
    unsigned char *l4 = realloc(l3, opaque(64));
    CHECK(l4 != NULL && filled(l4, 64, 44) && aligned_to(l4, 16), "realloc(300000 -> 64)");
    free(l4);

    /* Many interleaved reallocs of blocks of different sizes. */
    enum { K = 64 };
    unsigned char *blk[K];
    size_t len[K];
    int bad = 0;
    for (int i = 0; i < K; i++) {
        len[i] = (size_t)(i * 37 % 500) + 1;
        blk[i] = malloc(len[i]);
        fill(blk[i], len[i], (unsigned)i);
    }
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < K; i++) {
            size_t n = (size_t)((i * 7919 + round * 104729) % 70000) + 1;
            unsigned char *q = realloc(blk[i], n);
            size_t keep = n < len[i] ? n : len[i];
            if (!q || !aligned_to(q, 16) || !filled(q, keep, (unsigned)i)) {
                bad++;
                if (!q)
                    continue;
            }
            blk[i] = q;
            len[i] = n;
            fill(q, n, (unsigned)i);
        }
    }
    for (int i = 0; i < K; i++)
        free(blk[i]);
    CHECK(bad == 0, "%d interleaved reallocs lost contents", bad);
}

static void test_posix_memalign_einval(void)
{
    const size_t badal[] = {0, 1, 2, 3, 4, 12, 24, 48, 100, 4097, SIZE_MAX};
    int bad = 0;
    for (size_t i = 0; i < sizeof badal / sizeof badal[0]; i++) {
        void *out = (void *)0xdeadbeef;
        int rc = posix_memalign(&out, opaque(badal[i]), 16);
        if (rc != EINVAL || out != (void *)0xdeadbeef) {
            bad++;
            fprintf(stderr, "posix_memalign(align=%zu): rc=%d out=%p\n", badal[i], rc, out);
        }
    }
    CHECK(bad == 0, "%d bad alignments not refused with EINVAL and *out untouched", bad);
    void *out = (void *)0xdeadbeef;
    CHECK(posix_memalign(&out, opaque(0), 16) == EINVAL && out == (void *)0xdeadbeef,
          "posix_memalign(0)");
    CHECK(posix_memalign(&out, opaque(3), 16) == EINVAL && out == (void *)0xdeadbeef,
          "posix_memalign(3)");
    CHECK(posix_memalign(&out, opaque(4), 16) == EINVAL && out == (void *)0xdeadbeef,
          "posix_memalign(4): 4 is not a multiple of sizeof(void *)");
    CHECK(posix_memalign(&out, opaque(24), 16) == EINVAL && out == (void *)0xdeadbeef,
          "posix_memalign(24)");
    /* Valid ones, including size 0. */
    void *a = NULL, *b = NULL, *c = NULL;
    CHECK(posix_memalign(&a, opaque(sizeof(void *)), 1) == 0 && aligned_to(a, 16),
          "posix_memalign(sizeof(void *))");
    CHECK(posix_memalign(&b, opaque(16), 0) == 0 && b != NULL, "posix_memalign(16, 0)");
    CHECK(posix_memalign(&c, opaque(8192), 10) == 0 && aligned_to(c, 8192),
          "posix_memalign(8192, 10)");
    free(a);
    free(b);
    free(c);
}

static void test_aligned_alloc_memalign(void)
{
    const size_t badal[] = {0, 3, 24, 48, 100, 4097, SIZE_MAX};
    int bad = 0;
    for (size_t i = 0; i < sizeof badal / sizeof badal[0]; i++) {
        errno = 0;
        void *p = aligned_alloc(opaque(badal[i]), 64);
        if (p != NULL || errno != EINVAL) {
            bad++;
            fprintf(stderr, "aligned_alloc(%zu) = %p errno %d\n", badal[i], p, errno);
            free(p);
        }
    }
    CHECK(bad == 0, "%d non-power-of-two aligned_alloc not NULL/EINVAL", bad);
    errno = 0;
    CHECK(aligned_alloc(opaque(24), 64) == NULL && errno == EINVAL, "aligned_alloc(24)");

    /* memalign rounds a non-power-of-two alignment up. */
    struct {
        size_t req, want;
    } round[] = {{48, 64}, {24, 32}, {100, 128}, {3000, 4096}, {5000, 8192}, {65535, 65536}};
    int bad_round = 0;
    for (size_t i = 0; i < sizeof round / sizeof round[0]; i++) {
        void *p = memalign(opaque(round[i].req), 100);
        if (!aligned_to(p, round[i].want)) {
            bad_round++;
            fprintf(stderr, "memalign(%zu) = %p\n", round[i].req, p);
        }
        free(p);
    }
    CHECK(bad_round == 0, "%d memalign results not rounded up", bad_round);
    void *m = memalign(opaque(48), 48);
    CHECK(aligned_to(m, 64), "memalign(48, 48) = %p not 64-aligned", m);
    free(m);
    void *m0 = memalign(opaque(0), 10);
    CHECK(aligned_to(m0, 16), "memalign(0, 10) = %p", m0);
    free(m0);
}

static void test_valloc_pvalloc(void)
{
    size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 10000, 100000, 2 << 20};
    int bad_v = 0, bad_pv = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = opaque(sizes[i]);
        unsigned char *v = valloc(n);
        if (!aligned_to(v, 4096) || malloc_usable_size(v) < n)
            bad_v++;
        else if (n)
            fill(v, n, 8);
        unsigned char *pv = pvalloc(n);
        size_t want = n == 0 ? 4096 : (n + 4095) & ~(size_t)4095;
        if (!aligned_to(pv, 4096) || malloc_usable_size(pv) < want)
            bad_pv++;
        else
            fill(pv, want, 9); /* the whole rounded size is usable */
        if (v && n && !filled(v, n, 8))
            bad_v++;
        free(v);
        free(pv);
    }
    CHECK(bad_v == 0, "%d valloc results not page-aligned/too small", bad_v);
    CHECK(bad_pv == 0, "%d pvalloc results not page-aligned/not rounded", bad_pv);
    void *pv = pvalloc(opaque(1));
    CHECK(aligned_to(pv, 4096) && malloc_usable_size(pv) >= 4096, "pvalloc(1): usable %zu",
          pv ? malloc_usable_size(pv) : 0);
    free(pv);
    void *pv2 = pvalloc(opaque(4097));
    CHECK(aligned_to(pv2, 4096) && malloc_usable_size(pv2) >= 8192, "pvalloc(4097)");
    free(pv2);
}

static void test_usable_size_and_free(void)
{
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) != 0");
    int bad = 0;
    for (size_t n = 0; n < 70000; n = n < 256 ? n + 1 : n * 5 / 4) {
        unsigned char *p = malloc(opaque(n));
        size_t u = p ? malloc_usable_size(p) : 0;
        if (!p || u < n)
            bad++;
        else
            memset(p, 0xee, u); /* all of the usable size is ours */
        free(p);
    }
    CHECK(bad == 0, "%d blocks with malloc_usable_size below the request", bad);

    errno = 0;
    free(NULL);
    CHECK(errno == 0, "free(NULL) changed errno to %d", errno);

    /* free preserves errno, small and large, including when it releases memory. */
    void *s = malloc(24), *l = malloc(opaque(5 << 20)), *h = malloc(opaque(100 << 20));
    errno = 1234;
    free(s);
    CHECK(errno == 1234, "free(small) changed errno to %d", errno);
    errno = 1234;
    free(l);
    CHECK(errno == 1234, "free(large) changed errno to %d", errno);
    errno = 1234;
    free(h);
    CHECK(errno == 1234, "free(huge, uncached) changed errno to %d", errno);
    /* Free enough small blocks to release spans. */
    enum { M = 5000 };
    static void *many[M];
    for (int i = 0; i < M; i++)
        many[i] = malloc(1000);
    errno = 1234;
    for (int i = 0; i < M; i++)
        free(many[i]);
    CHECK(errno == 1234, "freeing %d blocks changed errno to %d", M, errno);
    errno = 1234;
    int t = malloc_trim(0);
    (void)t;
    void *after = malloc(10);
    errno = 1234;
    free(after);
    CHECK(errno == 1234, "free after malloc_trim changed errno to %d", errno);

    /* C23 free_sized / free_aligned_sized (not in older glibc headers: found by name). */
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*fas)(void *, size_t, size_t) =
        (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    CHECK(fs != NULL && fas != NULL, "free_sized/free_aligned_sized not exported");
    if (fs && fas) {
        void *a = malloc(100), *b = malloc(opaque(2 << 20));
        errno = 1234;
        fs(a, 100);
        fs(b, 2 << 20);
        fs(NULL, 0);
        CHECK(errno == 1234, "free_sized changed errno");
        void *c = aligned_alloc(64, 128), *d = aligned_alloc(1 << 20, 1 << 20);
        fas(c, 64, 128);
        fas(d, 1 << 20, 1 << 20);
        fas(NULL, 64, 0);
        void *e = malloc(100);
        CHECK(aligned_to(e, 16), "malloc after free_sized");
        free(e);
    }

    int tr = malloc_trim(0);
    CHECK(tr == 0 || tr == 1, "malloc_trim returned %d", tr);
}

static void test_calloc_zeroing(void)
{
    /* Reused memory full of garbage comes back zeroed, for each size class. */
    int bad = 0;
    enum { K = 200 };
    static unsigned char *blk[K];
    for (size_t s = 0; s < NSMALL; s++) {
        size_t n = SMALL_SIZES[s];
        int count = n > 100000 ? 4 : K;
        for (int i = 0; i < count; i++) {
            blk[i] = malloc(n);
            memset(blk[i], 0xa5, malloc_usable_size(blk[i]));
        }
        for (int i = 0; i < count; i++)
            free(blk[i]);
        for (int i = 0; i < count; i++) {
            blk[i] = calloc(opaque(n), 1);
            if (!blk[i] || !all_zero(blk[i], n))
                bad++;
        }
        for (int i = 0; i < count; i++)
            free(blk[i]);
    }
    CHECK(bad == 0, "%d calloc results over reused memory not zeroed", bad);

    /* Large: > 1 MiB, fresh and reused from a garbage-filled cached block. */
    size_t bigs[] = {(1 << 20) + 1, 2 << 20, 3 << 20, 10 << 20};
    int bad_big = 0;
    for (size_t i = 0; i < sizeof bigs / sizeof bigs[0]; i++) {
        size_t n = opaque(bigs[i]);
        unsigned char *p = calloc(1, n);
        if (!p || !all_zero(p, n))
            bad_big++;
        if (p)
            memset(p, 0x5a, malloc_usable_size(p));
        free(p);
        unsigned char *q = calloc(n / 16, 16);
        if (!q || !all_zero(q, n / 16 * 16))
            bad_big++;
        if (q)
            memset(q, 0x6b, malloc_usable_size(q));
        free(q);
        unsigned char *r = malloc(n); /* plain malloc may reuse: garbage is fine */
        if (r)
            memset(r, 0x7c, n);
        free(r);
        unsigned char *z = calloc(n, 1);
        if (!z || !all_zero(z, n))
            bad_big++;
        free(z);
    }
    CHECK(bad_big == 0, "%d large calloc results not zeroed", bad_big);

    /* realloc shrink then calloc of the same size. */
    unsigned char *a = malloc(opaque(4 << 20));
    memset(a, 0x11, 4 << 20);
    a = realloc(a, opaque(2 << 20));
    free(a);
    unsigned char *b = calloc(1, opaque(2 << 20));
    CHECK(b != NULL && all_zero(b, 2 << 20), "calloc after a shrunk large block");
    free(b);
}

static void test_large_blocks(void)
{
    size_t sizes[] = {1 << 20, 8 << 20, 64 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = opaque(sizes[i]);
        unsigned char *p = malloc(n);
        CHECK(aligned_to(p, 16) && malloc_usable_size(p) >= n, "malloc(%zu) = %p", n, p);
        if (!p)
            continue;
        CHECK(touch_pages(p, n), "malloc(%zu): pages not writable/readable", n);
        memset(p, 0x3c, n);
        int ok = p[0] == 0x3c && p[n / 2] == 0x3c && p[n - 1] == 0x3c;
        CHECK(ok, "malloc(%zu): memset did not stick", n);
        free(p);
    }
    /* Reuse after free (the cache), alternating sizes. */
    int bad = 0;
    for (int round = 0; round < 20; round++) {
        size_t n = opaque(((size_t)(round % 5) + 1) << 20);
        unsigned char *p = malloc(n);
        if (!p || !touch_pages(p, n))
            bad++;
        free(p);
    }
    CHECK(bad == 0, "%d large blocks unusable on reuse", bad);

    /* A block aligned to 4 MiB that must move to grow (a page fenced off right after
       it) is found at its new address by malloc_usable_size, realloc and free. */
    size_t n = opaque(3 << 20);
    unsigned char *p = aligned_alloc(opaque(4 << 20), n);
    CHECK(p && aligned_to(p, 4 << 20), "aligned_alloc(4 MiB, 3 MiB) = %p", (void *)p);
    if (!p)
        return;
    void *fence = mmap(p + malloc_usable_size(p), 4096, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    fill(p, n, 61);
    unsigned char *q = realloc(p, opaque(9 << 20));
    CHECK(q && filled(q, n, 61) && malloc_usable_size(q) >= (9u << 20),
          "realloc(4 MiB-aligned 3 MiB -> 9 MiB) = %p (fence %p)", (void *)q, fence);
    unsigned char *r = q ? realloc(q, opaque(20 << 20)) : NULL;
    CHECK(r && filled(r, n, 61) && malloc_usable_size(r) >= (20u << 20),
          "realloc(moved block -> 20 MiB) = %p", (void *)r);
    free(r ? r : q);
    if (fence != MAP_FAILED)
        munmap(fence, 4096);
}

/* ---- threads: allocate, exchange, cross-thread free ---- */

enum { NTHREADS = 8, SLOTS = 256, ITERS = 20000 };

struct hdr {
    size_t size;
    unsigned seed;
};

static pthread_mutex_t xlock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *xslot[SLOTS];

static unsigned char *make_block(unsigned *rng, int *bad)
{
    *rng = *rng * 1103515245u + 12345u;
    unsigned r = *rng >> 8;
    size_t n;
    if (r % 100 == 0)
        n = 40000 + r % 200000; /* occasionally large */
    else
        n = sizeof(struct hdr) + r % 2000;
    unsigned char *p = malloc(n);
    if (!p || !aligned_to(p, 16)) {
        (*bad)++;
        return NULL;
    }
    struct hdr h = {n, r};
    memcpy(p, &h, sizeof h);
    fill(p + sizeof h, n - sizeof h, r);
    return p;
}

static int check_block(unsigned char *p)
{
    struct hdr h;
    memcpy(&h, p, sizeof h);
    return filled(p + sizeof h, h.size - sizeof h, h.seed);
}

static void *worker(void *arg)
{
    unsigned rng = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    int bad = 0;
    unsigned char *mine[16] = {0};
    for (int i = 0; i < ITERS; i++) {
        unsigned char *p = make_block(&rng, &bad);
        if (!p)
            continue;
        int k = (int)((rng >> 4) % 16);
        if (mine[k]) {
            if (!check_block(mine[k]))
                bad++;
            free(mine[k]);
        }
        mine[k] = p;
        if (i % 3 == 0) {
            /* hand a block to whoever comes next; free the one found there */
            int s = (int)((rng >> 12) % SLOTS);
            pthread_mutex_lock(&xlock);
            unsigned char *old = xslot[s];
            xslot[s] = mine[k];
            pthread_mutex_unlock(&xlock);
            mine[k] = NULL;
            if (old) {
                if (!check_block(old))
                    bad++;
                free(old);
            }
        }
    }
    for (int k = 0; k < 16; k++) {
        if (mine[k]) {
            if (!check_block(mine[k]))
                bad++;
            free(mine[k]);
        }
    }
    return (void *)(intptr_t)bad;
}

static void *free_it(void *p)
{
    free(p);
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[NTHREADS];
    int created = 0, bad = 0;
    for (int i = 0; i < NTHREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)) == 0)
            created++;
    CHECK(created == NTHREADS, "created %d of %d threads", created, NTHREADS);
    for (int i = 0; i < created; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (int)(intptr_t)r;
    }
    CHECK(bad == 0, "%d bad blocks in threads", bad);
    /* Blocks left in the exchange were allocated by exited threads: free them here. */
    int bad_left = 0, left = 0;
    for (int s = 0; s < SLOTS; s++) {
        if (xslot[s]) {
            left++;
            if (!check_block(xslot[s]))
                bad_left++;
            free(xslot[s]);
            xslot[s] = NULL;
        }
    }
    CHECK(left > 0 && bad_left == 0, "%d of %d blocks of exited threads damaged", bad_left,
          left);

    /* A block allocated here and freed by a thread that then exits, and vice versa. */
    unsigned char *p = malloc(300);
    fill(p, 300, 61);
    pthread_t f;
    CHECK(pthread_create(&f, NULL, free_it, p) == 0, "pthread_create(free)");
    pthread_join(f, NULL);
    void *q = malloc(300);
    CHECK(aligned_to(q, 16), "malloc after cross-thread free");
    free(q);
}

static void test_fork(void)
{
    void *before = malloc(1000);
    fill(before, 1000, 33);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int ok = filled(before, 1000, 33);
        free(before);
        for (int i = 0; i < 1000; i++) {
            unsigned char *p = malloc((size_t)(i % 700) + 1);
            if (!p)
                _exit(2);
            fill(p, (size_t)(i % 700) + 1, 1);
            if (!filled(p, (size_t)(i % 700) + 1, 1))
                _exit(3);
            free(p);
        }
        void *big = malloc(3 << 20);
        if (!big)
            _exit(4);
        free(big);
        _exit(ok ? 0 : 5);
    }
    CHECK(pid > 0, "fork failed");
    int status = -1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child status 0x%x", status);
    CHECK(filled(before, 1000, 33), "parent block damaged by the fork");
    free(before);
}

static void test_symbols(void)
{
    Dl_info info;
    memset(&info, 0, sizeof info);
    void *(*volatile m)(size_t) = malloc;
    int ok = dladdr((void *)m, &info) != 0;
    CHECK(ok && info.dli_fname && strstr(info.dli_fname, "libcgmalloc"),
          "malloc resolves to %s, not libcgmalloc", info.dli_fname ? info.dli_fname : "?");
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    memset(&info, 0, sizeof info);
    ok = sym && dladdr(sym, &info) != 0;
    CHECK(ok && info.dli_fname && strstr(info.dli_fname, "libcgmalloc"),
          "dlsym(malloc) in %s", info.dli_fname ? info.dli_fname : "?");
    void *fsym = dlsym(RTLD_DEFAULT, "free");
    memset(&info, 0, sizeof info);
    ok = fsym && dladdr(fsym, &info) != 0;
    CHECK(ok && info.dli_fname && strstr(info.dli_fname, "libcgmalloc"), "dlsym(free) in %s",
          info.dli_fname ? info.dli_fname : "?");

    void *(*cm)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "cgm_malloc");
    void (*cf)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cgm_free");
    void *(*cc)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "cgm_calloc");
    CHECK(cm != NULL && cf != NULL && cc != NULL, "cgm_malloc/cgm_free/cgm_calloc not found");
    if (cm && cf && cc) {
        unsigned char *p = cm(100);
        CHECK(aligned_to(p, 16), "cgm_malloc(100) = %p", (void *)p);
        if (p) {
            fill(p, 100, 2);
            CHECK(filled(p, 100, 2) && malloc_usable_size(p) >= 100, "cgm_malloc block");
        }
        cf(p);
        unsigned char *z = cc(10, 10);
        CHECK(z && all_zero(z, 100), "cgm_calloc");
        free(z); /* the same allocator under both names */
        void *q = malloc(50);
        cf(q);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_symbols();
    test_alignment();
    test_zero_size();
    test_impossible_sizes();
    test_overflow();
    test_realloc();
    test_posix_memalign_einval();
    test_aligned_alloc_memalign();
    test_valloc_pvalloc();
    test_usable_size_and_free();
    test_calloc_zeroing();
    test_large_blocks();
    test_threads();
    test_fork();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
