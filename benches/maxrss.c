/* maxrss: runs a program and reports its peak RSS, for benches/run.py.
 *
 *   maxrss REPORT PROGRAM [ARGS...]
 *
 * Forks, execs PROGRAM, waits for it with wait4() and writes `maxrss=<KiB> exit=<code>`
 * (or `signal=<n>`) to the file REPORT; then exits with PROGRAM's status (128 + n for a
 * signal). Why not wait4() from Python directly: Linux counts the memory of the image a
 * process had before exec() in its ru_maxrss, and a child forked (or vforked) by Python
 * starts with Python's resident set (~20 MiB), which would be a floor under every
 * workload's peak. A child forked by this small program starts with this program's. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: maxrss REPORT PROGRAM [ARGS...]\n");
        return 127;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("maxrss: fork");
        return 127;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror("maxrss: exec");
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("maxrss: wait4");
        return 127;
    }
    FILE *report = fopen(argv[1], "w");
    if (report == NULL) {
        perror("maxrss: report");
        return 127;
    }
    if (WIFSIGNALED(status))
        fprintf(report, "maxrss=%ld signal=%d\n", ru.ru_maxrss, WTERMSIG(status));
    else
        fprintf(report, "maxrss=%ld exit=%d\n", ru.ru_maxrss, WEXITSTATUS(status));
    fclose(report);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}
