/* Prints what the library made of its CGMALLOC_* environment, one `key value` line
 * each, for tests/launcher/env.rs:
 *   root.<file> <text>                      the root's limits, policy, container_limit
 *                                           and mem_total (the base of N%)
 *   main.group <path>                       the group the first thread starts in
 *   group <path> <file> <text> | missing    for each path given as an argument
 *   thread <name> <path>                    threads named through pthread_setname_np:
 *                                           "self-..." by themselves, "other-..." by main
 *   start.<field> <bytes>                   the root's current, peak and max events as
 *                                           main starts (what start-up charged)
 * Linked against libcgmalloc.so; the environment is read before main runs. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cgmalloc.h"

static const char *const FILES[] = {"memory.max", "memory.high", "memory.low", "memory.min",
                                    "memory.soft_limit_in_bytes", "memory.oom.policy"};
#define NFILES (sizeof FILES / sizeof FILES[0])

static void print_file(const char *prefix, cgm_group_t g, const char *file) {
    char buf[512];
    long n = cgm_group_read(g, file, buf, sizeof buf);
    if (n < 0) {
        printf("%s%s error %ld\n", prefix, file, n);
        return;
    }
    buf[strcspn(buf, "\n")] = 0;
    printf("%s%s %s\n", prefix, file, buf);
}

/* `root.KEY N|none` for a key of the root's memory.stat (a line `KEY N`). */
static void print_root_stat(const char *key) {
    char buf[2048], line_key[64];
    long n = cgm_group_read(cgm_root(), "memory.stat", buf, sizeof buf);
    snprintf(line_key, sizeof line_key, "\n%s ", key);
    const char *at = n > 0 ? strstr(buf, line_key) : NULL;
    if (!at) {
        printf("root.%s none\n", key);
        return;
    }
    printf("root.%s %llu\n", key,
           (unsigned long long)strtoull(at + strlen(line_key), NULL, 10));
}

static void print_container_limit(void) {
    print_root_stat("container_limit");
    print_root_stat("mem_total");
}

struct named {
    char name[16];
    pthread_barrier_t *named;
    char path[256];
};

static void *run(void *arg) {
    struct named *t = arg;
    if (strncmp(t->name, "self-", 5) == 0)
        pthread_setname_np(pthread_self(), t->name);
    else
        pthread_barrier_wait(t->named); /* main names us meanwhile */
    /* Allocate enough to reach the allocation slow path, where a request from another
     * thread to change group is applied. */
    for (int i = 0; i < 64; i++)
        free(malloc(40000));
    if (cgm_group_path(cgm_thread_group(), t->path, sizeof t->path) < 0)
        strcpy(t->path, "error");
    return NULL;
}

static void threads(void) {
    static const char *const names[] = {"self-worker", "self-io", "other-worker", "other-x"};
    enum { N = sizeof names / sizeof names[0] };
    pthread_t th[N];
    struct named t[N];
    pthread_barrier_t barrier[N];
    for (int i = 0; i < N; i++) {
        memset(&t[i], 0, sizeof t[i]);
        strcpy(t[i].name, names[i]);
        pthread_barrier_init(&barrier[i], NULL, 2);
        t[i].named = &barrier[i];
        if (pthread_create(&th[i], NULL, run, &t[i]) != 0) {
            printf("thread %s create-failed\n", names[i]);
            exit(1);
        }
        if (strncmp(names[i], "other-", 6) == 0) {
            pthread_setname_np(th[i], names[i]);
            pthread_barrier_wait(&barrier[i]);
        }
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        printf("thread %s %s\n", t[i].name, t[i].path);
    }
}

int main(int argc, char **argv) {
    struct cgm_stat start;
    if (cgm_group_stat(cgm_root(), &start) == 0)
        printf("start.current %llu\nstart.peak %llu\nstart.events_max %llu\n",
               (unsigned long long)start.current, (unsigned long long)start.peak,
               (unsigned long long)start.events_max);
    for (size_t f = 0; f < NFILES; f++)
        print_file("root.", cgm_root(), FILES[f]);
    print_container_limit();
    char main_group[256];
    if (cgm_group_path(cgm_thread_group(), main_group, sizeof main_group) < 0)
        strcpy(main_group, "error");
    printf("main.group %s\n", main_group);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0) {
            threads();
            continue;
        }
        cgm_group_t g;
        if (cgm_group_open(argv[i], &g) != 0) {
            printf("group %s missing\n", argv[i]);
            continue;
        }
        char prefix[300];
        snprintf(prefix, sizeof prefix, "group %s ", argv[i]);
        for (size_t f = 0; f < NFILES; f++)
            print_file(prefix, g, FILES[f]);
    }
    return 0;
}
