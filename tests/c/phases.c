/*
 * Phases of one block size each: T threads allocate MIB MiB in all in blocks of the
 * phase's size (writing every byte), then free them all, then the next size. At start,
 * and at the quiescent points after each allocation half and each free half (every
 * thread waiting at a barrier), it prints the process's RSS and, when cgmalloc is
 * loaded, the root's memory.current:
 *
 *   base rss=KIB
 *   point phase=SIZE what=alloc|free rss=KIB current=BYTES
 *   end hwm=KIB failed=N
 *
 * Usage: phases MIB THREADS [SIZES...]   (sizes default to 48 500 3000 20000 70000 300000)
 * Runs under glibc too (no current then: current=-1).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':')
            v = atol(line + n + 1);
    fclose(f);
    return v;
}

typedef uint64_t (*root_fn)(void);
typedef long (*read_fn)(uint64_t, const char *, char *, size_t);
static root_fn cgm_root_p;
static read_fn cgm_read_p;

static long long root_current(void)
{
    if (!cgm_root_p || !cgm_read_p)
        return -1;
    char buf[64];
    if (cgm_read_p(cgm_root_p(), "memory.current", buf, sizeof buf) < 0)
        return -1;
    return atoll(buf);
}

static size_t total, size;
static int nthreads;
static pthread_barrier_t barrier;
static long failed;
static pthread_mutex_t failed_lock = PTHREAD_MUTEX_INITIALIZER;

static void point(const char *what)
{
    printf("point phase=%zu what=%s rss=%ld current=%lld\n", size, what, status_kib("VmRSS"),
           root_current());
    fflush(stdout);
}

static void *worker(void *arg)
{
    long id = (long)arg;
    size_t n = total / size / nthreads;
    void **v = malloc(n * sizeof *v);
    size_t got = 0;
    for (size_t i = 0; v && i < n; i++) {
        v[i] = malloc(size);
        if (!v[i])
            break;
        memset(v[i], (int)(i + id), size);
        got++;
    }
    if (got < n) {
        pthread_mutex_lock(&failed_lock);
        failed += (long)(n - got);
        pthread_mutex_unlock(&failed_lock);
    }
    pthread_barrier_wait(&barrier); /* allocated */
    pthread_barrier_wait(&barrier); /* measured */
    for (size_t i = 0; i < got; i++)
        free(v[i]);
    free(v);
    pthread_barrier_wait(&barrier); /* freed */
    pthread_barrier_wait(&barrier); /* measured */
    return NULL;
}

int main(int argc, char **argv)
{
    long base = status_kib("VmRSS");
    if (argc < 3) {
        fprintf(stderr, "usage: phases MIB THREADS [SIZES...]\n");
        return 2;
    }
    cgm_root_p = (root_fn)dlsym(RTLD_DEFAULT, "cgm_root");
    cgm_read_p = (read_fn)dlsym(RTLD_DEFAULT, "cgm_group_read");
    total = (size_t)atol(argv[1]) << 20;
    nthreads = atoi(argv[2]);
    static const size_t defaults[] = {48, 500, 3000, 20000, 70000, 300000};
    size_t sizes[32];
    int nsizes = 0;
    for (int i = 3; i < argc && nsizes < 32; i++)
        sizes[nsizes++] = (size_t)atol(argv[i]);
    if (nsizes == 0)
        for (; nsizes < 6; nsizes++)
            sizes[nsizes] = defaults[nsizes];
    printf("base rss=%ld\n", base);
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads + 1);
    for (int k = 0; k < nsizes; k++) {
        size = sizes[k];
        pthread_t t[64];
        for (long i = 0; i < nthreads; i++)
            pthread_create(&t[i], NULL, worker, (void *)i);
        pthread_barrier_wait(&barrier);
        point("alloc");
        pthread_barrier_wait(&barrier);
        pthread_barrier_wait(&barrier);
        point("free");
        pthread_barrier_wait(&barrier);
        for (int i = 0; i < nthreads; i++)
            pthread_join(t[i], NULL);
    }
    printf("end hwm=%ld failed=%ld\n", status_kib("VmHWM"), failed);
    return 0;
}
