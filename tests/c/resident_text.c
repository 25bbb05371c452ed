/*
 * Which pages of libcgmalloc.so's text a process maps (driven by tests/preload/layout.rs).
 *
 * Runs what every process may run: allocations of every band (small, medium, large),
 * calloc, realloc growth, aligned blocks, frees from another thread, a thread that
 * allocates and exits, fork (the child allocates and exits), malloc_trim. Then prints,
 * for each page of the library's executable mapping that is resident, "resident OFFSET"
 * (the page's offset in the file, in hex), read from /proc/self/pagemap.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const size_t SIZES[] = {8, 24, 100, 1000, 3000, 20000, 100000, 600000, 5u << 20};
enum { NSIZES = sizeof SIZES / sizeof SIZES[0] };

static void *blocks[NSIZES];

static void churn(void) {
    for (int round = 0; round < 50; round++) {
        void *p[NSIZES];
        for (int i = 0; i < NSIZES; i++) {
            p[i] = malloc(SIZES[i]);
            memset(p[i], round, SIZES[i] < 4096 ? SIZES[i] : 4096);
        }
        for (int i = 0; i < NSIZES; i++) free(p[i]);
    }
    void *z = calloc(100, 40);
    void *r = malloc(16);
    for (size_t n = 32; n <= (1u << 20); n *= 2) r = realloc(r, n);
    void *a = NULL;
    if (posix_memalign(&a, 4096, 5000) != 0) abort();
    free(aligned_alloc(64, 640));
    free(a);
    free(r);
    free(z);
}

/* Allocates, and frees the blocks the main thread left for it. */
static void *worker(void *arg) {
    (void)arg;
    churn();
    for (int i = 0; i < NSIZES; i++) free(blocks[i]);
    return NULL;
}

/* Prints the resident pages of the library's text (see the top); 0 if it found them. */
static int report(const char *who) {
    FILE *maps = fopen("/proc/self/maps", "r");
    int pagemap = open("/proc/self/pagemap", O_RDONLY);
    if (!maps || pagemap < 0) return 4;
    char line[4096];
    int found = 0;
    long page = sysconf(_SC_PAGESIZE);
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi, off;
        char perm[8];
        if (!strstr(line, "libcgmalloc") || sscanf(line, "%lx-%lx %7s %lx", &lo, &hi, perm, &off) != 4
            || perm[2] != 'x')
            continue;
        found = 1;
        for (unsigned long a = lo; a < hi; a += page) {
            uint64_t e;
            if (pread(pagemap, &e, sizeof e, (off_t)(a / page) * sizeof e) != sizeof e) return 5;
            if (e >> 63) printf("resident %s %lx\n", who, off + (a - lo));
        }
    }
    fclose(maps);
    close(pagemap);
    fflush(stdout);
    return found ? 0 : 6;
}

int main(void) {
    churn();
    for (int i = 0; i < NSIZES; i++) blocks[i] = malloc(SIZES[i]);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0) return 2;
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        churn();
        _exit(report("child"));
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 3;
    churn();
    malloc_trim(0);
    return report("parent");
}
