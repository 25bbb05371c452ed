/*
 * Shared by the fork tests (forks.c, fork_storm.c, lifecycle.c): monotonic time, sleeps
 * that resume after signals, and waiting for a child with a deadline, counting how the
 * children ended.
 */
#ifndef CGM_TEST_REAP_H
#define CGM_TEST_REAP_H

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* How a child ended, as reap_within tells it. */
enum reaped { REAPED, REAP_HUNG, REAP_ERROR };

/* Waits for `pid` at most `timeout_ms`: REAPED with its wait status in *status; REAP_HUNG
 * after killing (and reaping) a child still running at the deadline; REAP_ERROR with
 * errno set when waitpid fails. */
static enum reaped reap_within(pid_t pid, long timeout_ms, int *status)
{
    double deadline = now_s() + timeout_ms / 1000.0;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return REAPED;
        if (r < 0 && errno != EINTR)
            return REAP_ERROR;
        if (now_s() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            return REAP_HUNG;
        }
        sleep_us(100);
    }
}

/* Children reaped by reap_counted, by how they ended. */
struct reap_counts {
    atomic_long died;   /* killed by a signal */
    atomic_long failed; /* exited non-zero, or could not be waited for */
    atomic_long hung;   /* still running at the deadline: killed */
};

/* Waits for `pid` at most `timeout_ms` and counts how it ended in *c. Returns 1 for an exit
 * with status 0; otherwise 0, with what happened in `why` (one line, no newline). */
static int reap_counted(pid_t pid, long timeout_ms, struct reap_counts *c, char *why,
                        size_t len)
{
    int status;
    switch (reap_within(pid, timeout_ms, &status)) {
    case REAP_ERROR:
        atomic_fetch_add(&c->failed, 1);
        snprintf(why, len, "waitpid(%d): %s", (int)pid, strerror(errno));
        return 0;
    case REAP_HUNG:
        atomic_fetch_add(&c->hung, 1);
        snprintf(why, len, "child %d hung: killed after %ld ms", (int)pid, timeout_ms);
        return 0;
    case REAPED:
        break;
    }
    if (WIFSIGNALED(status)) {
        atomic_fetch_add(&c->died, 1);
        snprintf(why, len, "child %d killed by signal %d (%s)", (int)pid, WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
        return 0;
    }
    if (WEXITSTATUS(status) != 0) {
        atomic_fetch_add(&c->failed, 1);
        snprintf(why, len, "child %d exited with %d", (int)pid, WEXITSTATUS(status));
        return 0;
    }
    return 1;
}

#endif
