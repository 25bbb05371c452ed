/* Threads created by a thread whose group is at its memory.max: pthread_create
 * (interposed by the library, which allocates a small start record) must create them
 * or fail with EAGAIN (glibc's own allocations for a thread are charged too, and may be
 * refused), never abort the program. The creator first fills its group until malloc
 * returns NULL, so every charge of its own is refused; once it frees its blocks, thread
 * creation works again.
 * Prints `threads at max: N of 200 created (M refused with EAGAIN), K of 10 after`;
 * exits 0 when every call at the limit returned 0 or EAGAIN and all 10 after it
 * succeeded. */
#define _GNU_SOURCE
#include <cgmalloc.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_BLOCKS 200000

static void *run(void *arg) { return arg; }

int main(void) {
    static void *blocks[MAX_BLOCKS];
    cgm_group_t g;
    if (cgm_group_create("/full", &g) != 0 || cgm_group_write(g, "memory.max", "2M") != 0 ||
        cgm_thread_attach(g) != 0) {
        fprintf(stderr, "threads_at_max: cannot set up /full\n");
        return 2;
    }
    int n = 0;
    while (n < MAX_BLOCKS && (blocks[n] = malloc(64)) != NULL)
        n++;
    if (n == MAX_BLOCKS) {
        fprintf(stderr, "threads_at_max: the group never refused a charge\n");
        return 3;
    }
    int made = 0, again = 0, other = 0;
    for (int i = 0; i < 200; i++) {
        pthread_t t;
        int r = pthread_create(&t, NULL, run, NULL);
        if (r == 0) {
            pthread_join(t, NULL);
            made++;
        } else if (r == EAGAIN) {
            again++;
        } else {
            other++;
        }
    }
    for (int i = 0; i < n; i++)
        free(blocks[i]);
    int after = 0;
    for (int i = 0; i < 10; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, run, NULL) == 0) {
            pthread_join(t, NULL);
            after++;
        }
    }
    printf("threads at max: %d of 200 created (%d refused with EAGAIN), %d of 10 after\n",
           made, again, after);
    return other == 0 && after == 10 ? 0 : 1;
}
