/*
 * threshold.c: a usage threshold as an eventfd, watched with poll(2).
 *
 * cgm_threshold_eventfd(group, bytes) returns an eventfd that cgmalloc signals (adds 1
 * to its counter) each time the group's usage crosses `bytes`, upwards or downwards.
 * A watcher thread polls it and reads the counter with read(2); since the group starts
 * below the threshold, odd crossings are upward and even ones downward.
 *
 * The main thread, attached to /burst (threshold 16 MiB), allocates 24 MiB in 1 MiB
 * blocks (crossing upwards), then frees them and trims (cgm_malloc_trim, crossing back
 * down), three times. After each burst and each release it waits (at most 10 s) until
 * the watcher has seen the crossing; the watcher prints each one. Finally
 * cgm_threshold_remove unregisters and closes the eventfd. Exits 0 when the watcher
 * saw every crossing (three up, three down), 1 otherwise.
 *
 * Build and run from the repository root, after `cargo build --release`:
 *
 *   cc -std=c11 -Wall -Wextra -Werror -pthread -Iinclude examples/c/threshold.c \
 *      -Ltarget/release -lcgmalloc -Wl,-rpath,$PWD/target/release -o /tmp/threshold
 *   /tmp/threshold
 */
#define _POSIX_C_SOURCE 200809L
#include <cgmalloc.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024u * 1024u)
#define THRESHOLD (16 * (uint64_t)MIB)
#define BLOCKS 24
#define ROUNDS 3

#define CHECK(call)                                                                  \
    do {                                                                             \
        long rc_ = (call);                                                           \
        if (rc_ < 0) {                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,            \
                    cgm_strerror((int)rc_));                                         \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* Shared between the main thread and the watcher. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static uint64_t crossings, ups, downs;
static int stop;

struct watch {
    int fd;
    cgm_group_t group;
};

static void *watcher(void *arg)
{
    struct watch *w = arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        int done = stop;
        pthread_mutex_unlock(&lock);
        if (done)
            return NULL;
        struct pollfd p = {.fd = w->fd, .events = POLLIN};
        int n = poll(&p, 1, 100); /* wake up now and then to see `stop` */
        if (n < 0 && errno != EINTR) {
            perror("poll");
            exit(1);
        }
        if (n <= 0 || !(p.revents & POLLIN))
            continue;
        uint64_t count;
        if (read(w->fd, &count, sizeof count) != (ssize_t)sizeof count)
            continue; /* EAGAIN: someone else read it (not here) */
        struct cgm_stat st;
        CHECK(cgm_group_stat(w->group, &st));
        pthread_mutex_lock(&lock);
        for (uint64_t i = 0; i < count; i++) {
            crossings++;
            int up = crossings % 2 == 1;
            if (up)
                ups++;
            else
                downs++;
            printf("watcher: crossing %llu: %s 16 MiB (eventfd read %llu; usage now %llu KiB)\n",
                   (unsigned long long)crossings, up ? "above" : "below",
                   (unsigned long long)count, (unsigned long long)(st.current / 1024));
        }
        fflush(stdout);
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
    }
}

/* Waits until the watcher has counted `want` crossings; 0 after 10 s without. */
static int wait_for(uint64_t want)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&lock);
    int r = 0;
    while (crossings < want && r == 0)
        r = pthread_cond_timedwait(&changed, &lock, &deadline);
    int ok = crossings >= want;
    pthread_mutex_unlock(&lock);
    return ok;
}

int main(void)
{
    int ok = 1;
    cgm_group_t burst;
    CHECK(cgm_group_create("/burst", &burst));
    int fd = cgm_threshold_eventfd(burst, THRESHOLD);
    CHECK(fd);

    /* The watcher is created before the main thread moves to /burst, so it stays in
     * the root group (threads start in their creator's group). */
    struct watch w = {.fd = fd, .group = burst};
    pthread_t t;
    if (pthread_create(&t, NULL, watcher, &w) != 0)
        return 1;

    CHECK(cgm_thread_attach(burst));
    void *blocks[BLOCKS];
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < BLOCKS; i++) {
            blocks[i] = malloc(MIB);
            if (blocks[i] == NULL) {
                fprintf(stderr, "malloc failed\n");
                return 1;
            }
            memset(blocks[i], i, MIB);
        }
        struct cgm_stat st;
        CHECK(cgm_group_stat(burst, &st));
        printf("main: round %d: allocated %d MiB, usage %llu KiB\n", round + 1, BLOCKS,
               (unsigned long long)(st.current / 1024));
        if (!wait_for(2 * (uint64_t)round + 1)) {
            printf("FAIL: no upward crossing seen within 10 s\n");
            ok = 0;
            break;
        }
        for (int i = 0; i < BLOCKS; i++)
            free(blocks[i]);
        /* Freed large blocks may stay cached (and charged) for reuse; trimming returns
         * them, and their charges, at once. */
        cgm_malloc_trim(0);
        CHECK(cgm_group_stat(burst, &st));
        printf("main: round %d: freed and trimmed, usage %llu KiB\n", round + 1,
               (unsigned long long)(st.current / 1024));
        if (!wait_for(2 * (uint64_t)round + 2)) {
            printf("FAIL: no downward crossing seen within 10 s\n");
            ok = 0;
            break;
        }
    }
    CHECK(cgm_thread_attach(cgm_root()));

    pthread_mutex_lock(&lock);
    stop = 1;
    pthread_mutex_unlock(&lock);
    pthread_join(t, NULL);
    /* Unregisters and closes the eventfd (do not close it yourself). */
    CHECK(cgm_threshold_remove(burst, fd));
    CHECK(cgm_group_destroy(burst));

    printf("crossings: %llu up, %llu down\n", (unsigned long long)ups,
           (unsigned long long)downs);
    if (ups != ROUNDS || downs != ROUNDS) {
        printf("FAIL: expected %d crossings each way\n", ROUNDS);
        ok = 0;
    }
    printf("%s\n", ok ? "threshold: ok" : "threshold: FAILED");
    return ok ? 0 : 1;
}
