/* A program watched from outside, for tests/launcher/inspect.rs. Run under `cgmalloc run`
 * (linked against libcgmalloc.so for the control API). For each line on stdin:
 *   N      allocate N MiB more (every page written), then print, for the root and each
 *          group named in argv, `current PATH BYTES` (its own memory.current), then `ready`;
 *   q      exit.
 * It prints `pid PID` and `ready` first. Between lines it waits on stdin, so what an
 * outside reader sees is what the program read last. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cgmalloc.h"

static void report(int argc, char **argv) {
    for (int i = 0; i <= argc - 1; i++) {
        const char *path = i == 0 ? "/" : argv[i];
        cgm_group_t g;
        if (i == 0) {
            g = cgm_root();
        } else if (cgm_group_open(path, &g) != 0) {
            printf("current %s missing\n", path);
            continue;
        }
        char buf[64];
        long n = cgm_group_read(g, "memory.current", buf, sizeof buf);
        printf("current %s %s", path, n > 0 ? buf : "error\n");
    }
    printf("ready\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    char line[64];
    printf("pid %d\n", (int)getpid());
    report(argc, argv);
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'q') {
            break;
        }
        size_t n = (size_t)atol(line) << 20;
        char *p = malloc(n);
        if (!p) {
            printf("malloc failed\n");
        } else {
            memset(p, 1, n);
        }
        report(argc, argv);
    }
    return 0;
}
