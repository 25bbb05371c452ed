/*
 * Shared by the fork tests (forks.c, fork_storm.c, lifecycle.c): monotonic time, sleeps
 * that resume after signals, and waiting for a child with a deadline.
 */
#ifndef CGM_TEST_REAP_H
#define CGM_TEST_REAP_H

#include <errno.h>
#include <signal.h>
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

#endif
