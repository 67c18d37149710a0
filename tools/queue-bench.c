/* queue-bench.c - items per second through one sb_queue.
 *
 * For 1, 2 and 4 producer threads and one consumer, moves a fixed number of
 * items through one queue and prints one line per configuration. Producers
 * push one item at a time with sb_queue_push() and no timeout, so they sleep
 * while the queue is full; the consumer (the main thread) takes up to BATCH
 * items at a time with sb_queue_pop_batch(), as a connection's worker drains
 * its send queue. The clock starts when every thread is ready (a barrier) and
 * stops when the consumer has the last item.
 *
 * Usage: sockbus-queue-bench [items [max_items]]
 *
 * Not a test: it checks only that every item arrived once (by their sum).
 * Threads are made here with pthread_create(), not server/thread.c, so the
 * bench needs nothing but the queue. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue.h"

enum {
    BATCH = 64,
    MAX_PRODUCERS = 4,
};

struct producer {
    sb_queue *q;
    pthread_barrier_t *start;
    uintptr_t first; /* Items first + 1 .. first + count: never NULL. */
    size_t count;
    int rc;
    pthread_t thread;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    pthread_barrier_wait(p->start);
    for (size_t i = 1; i <= p->count; i++) {
        p->rc = sb_queue_push(p->q, (void *)(p->first + i), 1, -1);
        if (p->rc != 0) {
            break;
        }
    }
    return NULL;
}

/* Take `total` items; returns the sum of their values, or 0 on error. */
static uint64_t consume(sb_queue *q, size_t total)
{
    void *items[BATCH];
    uint64_t sum = 0;
    size_t got = 0;
    while (got < total) {
        int n = sb_queue_pop_batch(q, items, NULL, BATCH, -1);
        if (n < 0) {
            fprintf(stderr, "pop_batch: %s\n", strerror(-n));
            return 0;
        }
        for (int i = 0; i < n; i++) {
            sum += (uintptr_t)items[i];
        }
        got += (size_t)n;
    }
    return sum;
}

/* Move `total` items from `np` producers to one consumer and print a line.
 * Returns 0 or -1. */
static int run(int np, size_t total, size_t max_items)
{
    struct producer prod[MAX_PRODUCERS];
    pthread_barrier_t start;
    sb_queue *q = sb_queue_new(max_items, 0);
    if (q == NULL) {
        perror("sb_queue_new");
        return -1;
    }
    pthread_barrier_init(&start, NULL, (unsigned)np + 1);
    uint64_t want = 0;
    for (int i = 0; i < np; i++) {
        prod[i].q = q;
        prod[i].start = &start;
        prod[i].first = (uintptr_t)i * total;
        prod[i].count = total / (size_t)np + (i == 0 ? total % (size_t)np : 0);
        prod[i].rc = 0;
        /* The sum of first + 1 .. first + count. */
        want += (uint64_t)prod[i].count * prod[i].first +
                (uint64_t)prod[i].count * (prod[i].count + 1) / 2;
        int rc = pthread_create(&prod[i].thread, NULL, producer_main, &prod[i]);
        if (rc != 0) {
            fprintf(stderr, "pthread_create: %s\n", strerror(rc));
            exit(1); /* Started producers wait on the barrier for ever. */
        }
    }
    pthread_barrier_wait(&start);
    double t0 = now_s();
    uint64_t sum = consume(q, total);
    double secs = now_s() - t0;
    int bad = sum != want;
    for (int i = 0; i < np; i++) {
        pthread_join(prod[i].thread, NULL);
        bad |= prod[i].rc != 0;
    }
    printf("queue producers=%d consumers=1 items=%zu batch=%d max_items=%zu "
           "seconds=%.3f items_per_sec=%.0f high_water=%zu%s\n",
           np, total, BATCH, max_items, secs, (double)total / secs,
           sb_queue_high_water(q), bad ? " ERROR" : "");
    pthread_barrier_destroy(&start);
    sb_queue_free(q, NULL);
    return bad ? -1 : 0;
}

static size_t arg_size(const char *s, size_t dflt)
{
    if (s == NULL) {
        return dflt;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > SIZE_MAX / 8) {
        fprintf(stderr, "usage: sockbus-queue-bench [items [max_items]]\n");
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    size_t total = arg_size(argc > 1 ? argv[1] : NULL, 2000000);
    size_t max_items = arg_size(argc > 2 ? argv[2] : NULL, 1024);
    const int producers[] = {1, 2, 4};
    int rc = 0;
    for (size_t i = 0; i < sizeof producers / sizeof producers[0]; i++) {
        if (run(producers[i], total, max_items) != 0) {
            rc = 1;
        }
    }
    return rc;
}
