/* `memory.enforce` from a program's side, for tests/launcher/enforce.rs. Run under
 * `cgmalloc run` with the group named in argv[1] made by --group and attached. It adds a
 * reclaim callback to that group (counting its calls), allocates argv[2] MiB in 1 MiB
 * blocks (every page written) until done or refused (pausing argv[3] seconds, if given,
 * half way), and prints:
 *   allocated N          MiB it got
 *   callbacks K          calls of its reclaim callback
 *   events KEY V         the group's memory.events, a line each
 *   current B / peak B   the group's memory.current and memory.peak
 *   enforce MODE         the group's memory.enforce */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cgmalloc.h"

static int calls;

static size_t count_calls(void *ctx, cgm_group_t g, size_t want) {
    (void)ctx, (void)g, (void)want;
    calls++;
    return 0;
}

static void print_file(cgm_group_t g, const char *file, const char *prefix) {
    char buf[512];
    long n = cgm_group_read(g, file, buf, sizeof buf);
    if (n < 0) {
        printf("%s error %ld\n", file, n);
        return;
    }
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        printf("%s%s\n", prefix, line);
    }
}

int main(int argc, char **argv) {
    cgm_group_t g;
    if (argc < 3 || cgm_group_open(argv[1], &g) != 0) {
        fprintf(stderr, "usage: enforce GROUP MIB (GROUP made with --group)\n");
        return 2;
    }
    uint64_t id;
    if (cgm_reclaimer_add(g, count_calls, NULL, &id) != 0) {
        fprintf(stderr, "cgm_reclaimer_add failed\n");
        return 2;
    }
    int want = atoi(argv[2]), got = 0;
    int pause = argc > 3 ? atoi(argv[3]) : 0;
    for (; got < want; got++) {
        if (pause && got == want / 2) {
            sleep(pause);
        }
        char *p = malloc(1 << 20);
        if (!p) {
            break;
        }
        memset(p, 1, 1 << 20);
    }
    printf("allocated %d\ncallbacks %d\n", got, calls);
    print_file(g, "memory.events", "events ");
    print_file(g, "memory.current", "current ");
    print_file(g, "memory.peak", "peak ");
    print_file(g, "memory.enforce", "enforce ");
    return 0;
}
