/*
 * xmalloc: producer/consumer, every block freed by a thread other than its allocator.
 *
 * Shape: xmalloc-test (Lever & Boreham, "malloc() performance in a multithreaded Linux
 * environment", USENIX 2000). Half the threads (rounded up) produce: they allocate
 * batches of 512 blocks (16..1024 bytes, log-uniform), write them and push each batch on
 * a shared queue. The other half consume: they pop batches, check and free every block.
 * Batch records come from a fixed pool (4 per producer), so producers wait when the
 * consumers fall behind and the memory in flight stays bounded.
 *
 * Measures: remote (cross-thread) free throughput: how an allocator returns blocks to the
 * heap or page that owns them, and how producer threads get memory back.
 *
 * Checks: each block holds a tag derived from (producer, batch, index) at its start and
 * its end, verified by the consumer; the number of blocks consumed must equal the number
 * produced. With --groups N thread i (producers first) is attached to /bench/g<i % N>.
 * Needs 2 threads at least: -t 1 runs with 2 (and says so on stderr).
 */
#include "bench.h"

#define BATCH 512
#define MIN_SIZE 16
#define MAX_SIZE 1024

typedef struct batch {
    struct batch *next;
    int producer;
    uint64_t seq;
    unsigned n;
    uint32_t size[BATCH];
    unsigned char *ptr[BATCH];
} batch;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch *head, *tail;
} queue;

static queue full_q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL };
static queue empty_q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL };
static int producers_left; /* under full_q.mu */

typedef struct {
    int index;
    int producer; /* producer number, or -1 for a consumer */
    uint64_t batches;
    uint64_t ops, blocks;
    pthread_t tid;
} worker;

static void push(queue *q, batch *b)
{
    b->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        q->tail->next = b;
    else
        q->head = b;
    q->tail = b;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* Pops a batch; NULL when `finish_check` says no more will come (full queue only). */
static batch *pop(queue *q, int full)
{
    pthread_mutex_lock(&q->mu);
    while (q->head == NULL && !(full && producers_left == 0))
        pthread_cond_wait(&q->cv, &q->mu);
    batch *b = q->head;
    if (b) {
        q->head = b->next;
        if (q->head == NULL)
            q->tail = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    return b;
}

static inline uint64_t tag_of(int producer, uint64_t seq, unsigned i)
{
    return bench_mix64(((uint64_t)producer << 48) ^ (seq << 8) ^ i);
}

static void *produce(void *arg)
{
    worker *w = arg;
    bench_group_attach(w->index);
    bench_rng r;
    bench_rng_init(&r, (uint64_t)w->index);
    for (uint64_t s = 0; s < w->batches; s++) {
        batch *b = pop(&empty_q, 0);
        b->producer = w->producer;
        b->seq = s;
        b->n = BATCH;
        for (unsigned i = 0; i < BATCH; i++) {
            uint32_t size = (uint32_t)bench_log_range(&r, MIN_SIZE, MAX_SIZE);
            uint64_t tag = tag_of(w->producer, s, i);
            unsigned char *p = bench_malloc(size);
            memcpy(p, &tag, 8);
            memcpy(p + size - 8, &tag, 8);
            b->ptr[i] = p;
            b->size[i] = size;
        }
        w->ops += BATCH;
        w->blocks += BATCH;
        push(&full_q, b);
    }
    pthread_mutex_lock(&full_q.mu);
    if (--producers_left == 0)
        pthread_cond_broadcast(&full_q.cv);
    pthread_mutex_unlock(&full_q.mu);
    return NULL;
}

static void *consume(void *arg)
{
    worker *w = arg;
    bench_group_attach(w->index);
    batch *b;
    while ((b = pop(&full_q, 1)) != NULL) {
        for (unsigned i = 0; i < b->n; i++) {
            uint64_t want = tag_of(b->producer, b->seq, i), head, tail;
            memcpy(&head, b->ptr[i], 8);
            memcpy(&tail, b->ptr[i] + b->size[i] - 8, 8);
            if (head != want || tail != want)
                bench_fail("xmalloc: block %p (producer %d, batch %" PRIu64 ", #%u, %u bytes) "
                           "corrupted: %016" PRIx64 "/%016" PRIx64 ", expected %016" PRIx64,
                           (void *)b->ptr[i], b->producer, b->seq, i, b->size[i], head, tail,
                           want);
            free(b->ptr[i]);
        }
        w->ops += b->n;
        w->blocks += b->n;
        push(&empty_q, b);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "xmalloc",
                               "Producer/consumer: producers allocate batches, consumers free "
                               "them.",
                               1);
    if (o.threads < 2) {
        fprintf(stderr, "xmalloc: needs a producer and a consumer; running with 2 threads\n");
        o.threads = 2;
    }
    uint64_t total_batches = o.short_run ? 5000 : 30000;
    int np = (o.threads + 1) / 2, nc = o.threads / 2;
    bench_groups_setup(&o);

    batch *pool = bench_malloc((size_t)np * 4 * sizeof *pool);
    for (int i = 0; i < np * 4; i++)
        push(&empty_q, &pool[i]);
    producers_left = np;

    worker *w = calloc((size_t)o.threads, sizeof *w);
    if (w == NULL)
        bench_fail("calloc of %d workers returned NULL", o.threads);
    double t0 = bench_now();
    for (int i = 0; i < o.threads; i++) {
        w[i].index = i;
        if (i < np) {
            w[i].producer = i;
            w[i].batches = total_batches / (uint64_t)np + ((uint64_t)i < total_batches % (uint64_t)np);
            w[i].tid = bench_thread_start(produce, &w[i]);
        } else {
            w[i].producer = -1;
            w[i].tid = bench_thread_start(consume, &w[i]);
        }
    }
    uint64_t ops = 0, made = 0, freed = 0;
    for (int i = 0; i < o.threads; i++) {
        bench_thread_join(w[i].tid);
        ops += w[i].ops;
        if (i < np)
            made += w[i].blocks;
        else
            freed += w[i].blocks;
    }
    double secs = bench_now() - t0;
    if (made != freed || made != total_batches * BATCH)
        bench_fail("xmalloc: %" PRIu64 " blocks produced, %" PRIu64 " consumed, %" PRIu64
                   " expected",
                   made, freed, total_batches * BATCH);
    (void)nc;
    free(w);
    free(pool);
    bench_result(&o, secs, ops);
    return 0;
}
