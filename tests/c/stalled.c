/* A program that stalls in memory.high's throttle, then waits to be read from outside, for
 * tests/launcher/pressure.rs. Run under `cgmalloc run` (linked against libcgmalloc.so for
 * the control API) with its main thread attached to GROUP (argv[1]), a group made by
 * --group with a memory.high, and IDLE (argv[2]) another group made by --group.
 *
 * A second thread attaches itself to IDLE, allocates a little there (no limit, so no
 * stall) and sleeps until the process exits: the root then has an attached thread that
 * never stalls. The main thread then allocates STEP_KIB (argv[3]) blocks, every page
 * written and kept, until GROUP's `some` total, read with cgm_group_pressure, reaches
 * TARGET_MS (argv[4]) or MAX_STEPS blocks were allocated, timing each malloc() call. It
 * prints:
 *   pid PID
 *   steps N                  blocks allocated
 *   malloc_us U              wall time spent inside those malloc() calls, in µs
 *   pressure PATH SOME_TOTAL FULL_TOTAL SOME_AVG10 FULL_AVG10
 *                            cgm_group_pressure of /, GROUP and IDLE after the last block
 *                            (totals in µs, averages in percent)
 *   ready
 * then waits on stdin with read(2) (no stdio buffer to allocate in a group over its
 * high) and exits at end of file or on `q`. Setup failures print `error ...` to stderr
 * and exit 2. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cgmalloc.h"

#define MAX_STEPS 1024

static cgm_group_t idle_group;
static int attached[2];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *idle_thread(void *arg) {
    (void)arg;
    char ok = cgm_thread_attach(idle_group) == 0 ? 'y' : 'n';
    char *p = malloc(64 << 10);
    if (p) {
        memset(p, 1, 64 << 10);
    }
    if (write(attached[1], &ok, 1) != 1) {
        abort();
    }
    for (;;) {
        pause();
    }
    return NULL;
}

static struct cgm_pressure pressure_of(cgm_group_t g, const char *path) {
    struct cgm_pressure p;
    int r = cgm_group_pressure(g, &p);
    if (r != 0) {
        fprintf(stderr, "error cgm_group_pressure(%s) returned %d\n", path, r);
        exit(2);
    }
    return p;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: stalled GROUP IDLE STEP_KIB TARGET_MS\n");
        return 2;
    }
    cgm_group_t g;
    if (cgm_group_open(argv[1], &g) != 0 || cgm_group_open(argv[2], &idle_group) != 0) {
        fprintf(stderr, "error %s and %s must be made with --group\n", argv[1], argv[2]);
        return 2;
    }
    if (cgm_thread_group() != g) {
        fprintf(stderr, "error the main thread is not attached to %s\n", argv[1]);
        return 2;
    }
    size_t step = (size_t)atol(argv[3]) << 10;
    uint64_t target_us = (uint64_t)atol(argv[4]) * 1000;
    /* The first output allocates stdout's buffer, before any stall. */
    printf("pid %d\n", (int)getpid());
    fflush(stdout);

    pthread_t t;
    char ok = 0;
    if (pipe(attached) != 0 || pthread_create(&t, NULL, idle_thread, NULL) != 0 ||
        read(attached[0], &ok, 1) != 1 || ok != 'y') {
        fprintf(stderr, "error the idle thread did not attach to %s\n", argv[2]);
        return 2;
    }

    int steps = 0;
    uint64_t in_malloc = 0;
    while (steps < MAX_STEPS && pressure_of(g, argv[1]).some_total_us < target_us) {
        uint64_t t0 = now_ns();
        char *p = malloc(step);
        in_malloc += now_ns() - t0;
        if (!p) {
            fprintf(stderr, "error malloc failed after %d blocks\n", steps);
            return 2;
        }
        memset(p, 1, step);
        steps++;
    }
    printf("steps %d\nmalloc_us %llu\n", steps, (unsigned long long)(in_malloc / 1000));
    const char *paths[3] = {"/", argv[1], argv[2]};
    cgm_group_t groups[3] = {cgm_root(), g, idle_group};
    for (int i = 0; i < 3; i++) {
        struct cgm_pressure p = pressure_of(groups[i], paths[i]);
        printf("pressure %s %llu %llu %.2f %.2f\n", paths[i],
               (unsigned long long)p.some_total_us, (unsigned long long)p.full_total_us,
               p.some_avg10, p.full_avg10);
    }
    printf("ready\n");
    fflush(stdout);

    char c;
    while (read(0, &c, 1) == 1 && c != 'q') {
    }
    return 0;
}
