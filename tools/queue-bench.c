/* queue-bench.c - items per second through one sb_queue, and what one
 * hand-over between threads costs.
 *
 * Throughput (the default): for 1, 2 and 4 producer threads and one
 * consumer, moves a fixed number of items through one queue and prints one
 * line per configuration. Producers push one item at a time with
 * sb_queue_push() and no timeout, so they sleep while the queue is full; the
 * consumer (the main thread) takes up to BATCH items at a time with
 * sb_queue_pop_batch(), as a connection's worker drains its send queue. The
 * clock starts when every thread is ready (a barrier) and stops when the
 * consumer has the last item.
 *
 * Hand-over (--handover): a chain of 1, 2, 3, 4 and 7 threads, each asleep
 * in poll() on its own queue's eventfd as a connection's worker is. The main
 * thread stamps an item every `gap_us` microseconds and pushes it into the
 * first queue; each thread passes it on to the next queue; the last one
 * records how long it took. Nothing else is done with the item, so the
 * figures are the cost of the wake-ups alone on this machine: what every
 * thread a message crosses adds to its latency. One line per chain length
 * with the median and tail.
 *
 * Usage: sockbus-queue-bench [items [max_items]]
 *        sockbus-queue-bench --handover [items [gap_us]]
 *
 * Not a test: it checks only that every item arrived once (by their sum, or
 * their count in order). Threads are made here with pthread_create(), not
 * server/thread.c, so the bench needs nothing but the queue. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue.h"

enum {
    BATCH = 64,
    MAX_PRODUCERS = 4,
    MAX_STAGES = 7,
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

/* ---- Hand-over latency ------------------------------------------------ */

struct chain {
    sb_queue *q[MAX_STAGES + 1]; /* stage i pops q[i], pushes q[i + 1] */
    int stages;
    size_t items;
    uint64_t *stamp; /* ns, by item number; written before its push */
    uint64_t *lat;   /* ns, by item number; written by the last stage */
    size_t done;     /* items the last stage got, in order; its own */
    atomic_bool bad; /* an item came out of order, or a call failed */
};

struct stage {
    struct chain *c;
    int i;
    pthread_t thread;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One thread of the chain: sleep in poll() on the queue's eventfd, clear
 * it, drain the queue, pass each item on (or time it, when last). Ends
 * when its queue is closed and empty, and closes the next one. */
static void *stage_main(void *arg)
{
    struct stage *st = arg;
    struct chain *c = st->c;
    sb_queue *in = c->q[st->i];
    bool last = st->i == c->stages - 1;
    for (;;) {
        struct pollfd p = {.fd = sb_queue_fd(in), .events = POLLIN};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            c->bad = true;
            break;
        }
        sb_queue_clear_fd(in);
        void *items[BATCH];
        int n;
        while ((n = sb_queue_pop_batch(in, items, NULL, BATCH, 0)) > 0) {
            for (int k = 0; k < n; k++) {
                size_t id = (uintptr_t)items[k] - 1;
                if (!last) {
                    if (sb_queue_try_push(c->q[st->i + 1], items[k], 1) < 0) {
                        c->bad = true;
                    }
                    continue;
                }
                c->lat[id] = now_ns() - c->stamp[id];
                if (id != c->done) {
                    c->bad = true;
                }
                c->done++;
            }
        }
        if (n == -EPIPE) {
            break;
        }
    }
    if (!last) {
        sb_queue_close(c->q[st->i + 1]);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Pass `items` items through a chain of `stages` threads, one every
 * `gap_us`, and print the latency line. Returns 0 or -1. */
static int handover(int stages, size_t items, unsigned gap_us)
{
    struct chain c = {.stages = stages, .items = items};
    struct stage st[MAX_STAGES];
    c.stamp = calloc(items, sizeof(*c.stamp));
    c.lat = calloc(items, sizeof(*c.lat));
    if (c.stamp == NULL || c.lat == NULL) {
        perror("calloc");
        exit(1);
    }
    for (int i = 0; i < stages; i++) {
        /* Deep enough never to refuse: at most `items` are in flight. */
        c.q[i] = sb_queue_new(items, 0);
        if (c.q[i] == NULL) {
            perror("sb_queue_new");
            exit(1);
        }
    }
    for (int i = 0; i < stages; i++) {
        st[i] = (struct stage){.c = &c, .i = i};
        int rc = pthread_create(&st[i].thread, NULL, stage_main, &st[i]);
        if (rc != 0) {
            fprintf(stderr, "pthread_create: %s\n", strerror(rc));
            exit(1);
        }
    }
    uint64_t t0 = now_ns() + 10000000; /* let the threads fall asleep */
    for (size_t k = 0; k < items; k++) {
        uint64_t due = t0 + (uint64_t)k * gap_us * 1000u;
        struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
                              .tv_nsec = (long)(due % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
               EINTR) {
        }
        c.stamp[k] = now_ns();
        if (sb_queue_try_push(c.q[0], (void *)(uintptr_t)(k + 1), 1) < 0) {
            c.bad = true;
        }
    }
    sb_queue_close(c.q[0]);
    for (int i = 0; i < stages; i++) {
        pthread_join(st[i].thread, NULL);
    }
    bool bad = c.bad || c.done != items;
    qsort(c.lat, items, sizeof(*c.lat), cmp_u64);
    printf("handover threads=%d items=%zu gap_us=%u p50_us=%.1f p90_us=%.1f "
           "p99_us=%.1f per_thread_p50_us=%.1f%s\n",
           stages, items, gap_us, (double)c.lat[items / 2] / 1e3,
           (double)c.lat[items * 9 / 10] / 1e3,
           (double)c.lat[items * 99 / 100] / 1e3,
           (double)c.lat[items / 2] / 1e3 / stages, bad ? " ERROR" : "");
    for (int i = 0; i < stages; i++) {
        sb_queue_free(c.q[i], NULL);
    }
    free(c.stamp);
    free(c.lat);
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
        fprintf(stderr, "usage: sockbus-queue-bench [items [max_items]]\n"
                        "       sockbus-queue-bench --handover "
                        "[items [gap_us]]\n");
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--handover") == 0) {
        size_t items = arg_size(argc > 2 ? argv[2] : NULL, 20000);
        size_t gap = arg_size(argc > 3 ? argv[3] : NULL, 50);
        if (gap > 1000000) {
            fprintf(stderr, "gap_us: at most 1000000\n");
            return 2;
        }
        const int chains[] = {1, 2, 3, 4, MAX_STAGES};
        int rc = 0;
        for (size_t i = 0; i < sizeof chains / sizeof chains[0]; i++) {
            if (handover(chains[i], items, (unsigned)gap) != 0) {
                rc = 1;
            }
        }
        return rc;
    }
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
