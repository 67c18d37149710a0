/* test_queue.c - unit tests of queue/queue.h.
 *
 * Tests that need a thread asleep inside the queue (blocked pushers and
 * poppers) start it, then poll /proc/self/task/<tid>/stat with a deadline
 * until the kernel reports it sleeping: once it has announced that it is
 * about to call the queue, the only place it can sleep is the queue's
 * condition variable. No test sleeps and hopes.
 *
 * Threads are made with pthread_create() here rather than server/thread.c:
 * the queue must be testable without the server. cmocka state is per
 * thread, so helper threads only record what happened and the test thread
 * asserts after pthread_join(). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"

/* How long a test waits for a helper thread to get somewhere before it
 * fails: generous, for sanitizers on a loaded machine. */
#define WAIT_MS 10000
#define DEADLINE_MS ((double)WAIT_MS)

/* Items are small integers disguised as pointers: the queue never looks at
 * them. */
static void *item_of(uintptr_t v)
{
    return (void *)v;
}

static uintptr_t value_of(const void *item)
{
    return (uintptr_t)item;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static bool fd_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

/* Read the eventfd counter (resetting it), or 0 when it is not readable. */
static uint64_t fd_take(int fd)
{
    uint64_t v = 0;
    ssize_t n;
    do {
        n = read(fd, &v, sizeof v);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof v ? v : 0;
}

static void push_values(sb_queue *q, uintptr_t from, uintptr_t to)
{
    for (uintptr_t v = from; v < to; v++) {
        assert_int_equal(sb_queue_try_push(q, item_of(v), 1), 0);
    }
}

static void pop_values(sb_queue *q, uintptr_t from, uintptr_t to)
{
    for (uintptr_t v = from; v < to; v++) {
        void *item = NULL;
        assert_int_equal(sb_queue_try_pop(q, &item, NULL), 0);
        assert_int_equal(value_of(item), v);
    }
}

/* Fixtures: the queue under test goes in *state, so that a failed
 * assertion does not leak it. */
static int setup_q(void **state, size_t max_items, size_t max_bytes)
{
    sb_queue *q = sb_queue_new(max_items, max_bytes);
    if (q == NULL) {
        return -1;
    }
    *state = q;
    return 0;
}

static int setup_4_items(void **state)
{
    return setup_q(state, 4, 0);
}

static int setup_8_items_100_bytes(void **state)
{
    return setup_q(state, 8, 100);
}

static int setup_1_item(void **state)
{
    return setup_q(state, 1, 0);
}

static int setup_10_bytes(void **state)
{
    return setup_q(state, 8, 10);
}

static int setup_large(void **state)
{
    return setup_q(state, 100000, 0);
}

static int teardown_q(void **state)
{
    sb_queue_free(*state, NULL);
    return 0;
}

/* ---- Helper threads that block inside the queue. ---- */

enum op { OP_PUSH, OP_POP, OP_POP_BATCH };

struct waiter {
    sb_queue *q;
    enum op op;
    void *item;   /* OP_PUSH: pushed; OP_POP*: popped. */
    size_t bytes; /* OP_PUSH: its size. */
    int timeout_ms;
    atomic_int tid; /* Set just before the call; 0 until then. */
    int rc;
    double elapsed_ms;
    pthread_t thread;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    double start = now_ms();
    atomic_store(&w->tid, (int)gettid());
    switch (w->op) {
    case OP_PUSH:
        w->rc = sb_queue_push(w->q, w->item, w->bytes, w->timeout_ms);
        break;
    case OP_POP:
        w->rc = sb_queue_pop(w->q, &w->item, NULL, w->timeout_ms);
        break;
    case OP_POP_BATCH:
        w->rc = sb_queue_pop_batch(w->q, &w->item, NULL, 1, w->timeout_ms);
        break;
    }
    w->elapsed_ms = now_ms() - start;
    return NULL;
}

/* The scheduler state of thread `tid` ('R', 'S', ...), or 0 if unknown. */
static char thread_state(int tid)
{
    char path[64];
    char buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "tid (comm) S ...": comm may hold spaces and parentheses. */
    const char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' ? p[2] : 0;
}

static void sleep_briefly(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 200000};
    nanosleep(&ts, NULL);
}

/* Start `w` and return once it sleeps inside the queue. */
static void start_blocked(struct waiter *w)
{
    atomic_store(&w->tid, 0);
    assert_int_equal(pthread_create(&w->thread, NULL, waiter_main, w), 0);
    double deadline = now_ms() + DEADLINE_MS;
    int tid;
    while ((tid = atomic_load(&w->tid)) == 0 || thread_state(tid) != 'S') {
        if (now_ms() > deadline) {
            /* Free the thread before failing: teardown frees the queue. */
            sb_queue_close(w->q);
            pthread_join(w->thread, NULL);
            fail_msg("thread %d never slept in the queue", tid);
        }
        sleep_briefly();
    }
}

static void join(struct waiter *w)
{
    assert_int_equal(pthread_join(w->thread, NULL), 0);
}

/* ---- Creation. ---- */

static void test_queue_new_rejects_zero_items(void **state)
{
    (void)state;
    errno = 0;
    assert_null(sb_queue_new(0, 100));
    assert_int_equal(errno, EINVAL);
    sb_queue_free(NULL, NULL);
}

static size_t freed_items;

static void count_freed(void *item)
{
    (void)item;
    freed_items++;
}

static void test_queue_free_passes_items(void **state)
{
    (void)state;
    sb_queue *q = sb_queue_new(100, 0);
    assert_non_null(q);
    push_values(q, 1, 41); /* Past the inline slots: frees a grown ring. */
    freed_items = 0;
    sb_queue_free(q, count_freed);
    assert_int_equal(freed_items, 40);
}

/* ---- Order and limits. ---- */

static void test_queue_fifo_order(void **state)
{
    sb_queue *q = *state;
    push_values(q, 1, 5);
    assert_int_equal(sb_queue_try_push(q, item_of(5), 1), -EAGAIN);
    pop_values(q, 1, 3);
    push_values(q, 5, 7); /* Wraps around the ring. */
    pop_values(q, 3, 7);
    void *item;
    assert_int_equal(sb_queue_try_pop(q, &item, NULL), -EAGAIN);
}

static void test_queue_pop_reports_bytes(void **state)
{
    sb_queue *q = *state;
    assert_int_equal(sb_queue_try_push(q, item_of(1), 17), 0);
    assert_int_equal(sb_queue_try_push(q, NULL, 0), 0);
    void *item = NULL;
    size_t bytes = 0;
    assert_int_equal(sb_queue_try_pop(q, &item, &bytes), 0);
    assert_int_equal(value_of(item), 1);
    assert_int_equal(bytes, 17);
    item = item_of(99);
    assert_int_equal(sb_queue_try_pop(q, &item, &bytes), 0);
    assert_null(item); /* NULL is an item like any other. */
    assert_int_equal(bytes, 0);
}

static void test_queue_item_limit(void **state)
{
    sb_queue *q = *state;
    push_values(q, 1, 5);
    assert_int_equal(sb_queue_try_push(q, item_of(5), 0), -EAGAIN);
    assert_int_equal(sb_queue_push(q, item_of(5), 0, 0), -EAGAIN);
    assert_int_equal(sb_queue_len(q), 4);
    pop_values(q, 1, 2);
    assert_int_equal(sb_queue_try_push(q, item_of(5), 0), 0);
    pop_values(q, 2, 6);
}

static void test_queue_byte_limit(void **state)
{
    sb_queue *q = *state; /* 8 items, 100 bytes. */
    assert_int_equal(sb_queue_try_push(q, item_of(1), 60), 0);
    assert_int_equal(sb_queue_try_push(q, item_of(2), 41), -EAGAIN);
    assert_int_equal(sb_queue_try_push(q, item_of(2), 40), 0);
    assert_int_equal(sb_queue_bytes(q), 100);
    assert_int_equal(sb_queue_try_push(q, item_of(3), 1), -EAGAIN);
    /* A zero-size item always fits the byte limit. */
    assert_int_equal(sb_queue_try_push(q, item_of(3), 0), 0);
    pop_values(q, 1, 4);
    assert_int_equal(sb_queue_bytes(q), 0);
}

static void test_queue_oversize_item_into_empty(void **state)
{
    sb_queue *q = *state; /* 8 items, 100 bytes. */
    assert_int_equal(sb_queue_try_push(q, item_of(1), 500), 0);
    assert_int_equal(sb_queue_bytes(q), 500);
    /* Not beside another item, however small. */
    assert_int_equal(sb_queue_try_push(q, item_of(2), 1), -EAGAIN);
    assert_int_equal(sb_queue_try_push(q, item_of(2), 0), -EAGAIN);
    push_values(q, 1, 1);
    void *item;
    size_t bytes;
    assert_int_equal(sb_queue_try_pop(q, &item, &bytes), 0);
    assert_int_equal(bytes, 500);
    assert_int_equal(sb_queue_try_push(q, item_of(2), 1), 0);
    /* Not beside a full queue either. */
    assert_int_equal(sb_queue_try_push(q, item_of(3), 500), -EAGAIN);
}

static void test_queue_push_many_partial(void **state)
{
    sb_queue *q = *state; /* 8 items, 100 bytes. */
    void *items[10];
    size_t bytes[10];
    for (uintptr_t i = 0; i < 10; i++) {
        items[i] = item_of(i + 1);
        bytes[i] = 10;
    }
    push_values(q, 100, 103); /* 3 items, 3 bytes. */
    /* The item limit stops it after 5. */
    assert_int_equal(sb_queue_try_push_many(q, items, bytes, 10), 5);
    assert_int_equal(sb_queue_try_push_many(q, items + 5, bytes + 5, 5), 0);
    pop_values(q, 100, 103);
    pop_values(q, 1, 6);

    /* The byte limit stops it at the first item that does not fit, even if
     * a later one would. */
    bytes[0] = 40;
    bytes[1] = 50;
    bytes[2] = 20;
    bytes[3] = 5;
    assert_int_equal(sb_queue_try_push_many(q, items, bytes, 4), 2);
    assert_int_equal(sb_queue_bytes(q), 90);
    pop_values(q, 1, 3);

    /* An oversize first item into an empty queue, then nothing more. */
    bytes[0] = 1000;
    assert_int_equal(sb_queue_try_push_many(q, items, bytes, 3), 1);
    pop_values(q, 1, 2);

    /* Without sizes, only the item limit applies. */
    assert_int_equal(sb_queue_try_push_many(q, items, NULL, 10), 8);
    assert_int_equal(sb_queue_bytes(q), 0);
    pop_values(q, 1, 9);

    assert_int_equal(sb_queue_try_push_many(q, items, bytes, 0), 0);
    assert_int_equal(sb_queue_len(q), 0);
}

static void test_queue_push_many_grows(void **state)
{
    sb_queue *q = *state; /* 100000 items. */
    void *items[100];
    for (uintptr_t i = 0; i < 100; i++) {
        items[i] = item_of(i + 10);
    }
    /* One batch that needs a ring several times larger, wrapped. */
    push_values(q, 0, 10);
    pop_values(q, 0, 7);
    assert_int_equal(sb_queue_try_push_many(q, items, NULL, 100), 100);
    assert_int_equal(sb_queue_len(q), 103);
    pop_values(q, 7, 110);
}

static void test_queue_push_force(void **state)
{
    (void)state;
    sb_queue *q = sb_queue_new(2, 10);
    assert_non_null(q);
    assert_int_equal(sb_queue_try_push(q, item_of(1), 5), 0);
    assert_int_equal(sb_queue_try_push(q, item_of(2), 5), 0);
    assert_int_equal(sb_queue_try_push(q, item_of(3), 0), -EAGAIN);
    /* Past both limits and past the inline slots, so the ring grows beyond
     * max_items. */
    for (uintptr_t v = 3; v <= 100; v++) {
        assert_int_equal(sb_queue_push_force(q, item_of(v), 100), 0);
    }
    assert_int_equal(sb_queue_len(q), 100);
    assert_int_equal(sb_queue_bytes(q), 10 + 98 * 100);
    assert_int_equal(sb_queue_high_water(q), 100);
    assert_int_equal(sb_queue_try_push(q, item_of(0), 0), -EAGAIN);
    pop_values(q, 1, 101);
    /* Drained, the limits apply as before. */
    push_values(q, 1, 3);
    assert_int_equal(sb_queue_try_push(q, item_of(3), 0), -EAGAIN);
    sb_queue_close(q);
    assert_int_equal(sb_queue_push_force(q, item_of(3), 0), -EPIPE);
    sb_queue_free(q, NULL);
}

static void test_queue_grows_and_shrinks(void **state)
{
    sb_queue *q = *state; /* 100000 items. */
    /* Grow while the ring is wrapped: the copy must unwrap it. */
    push_values(q, 0, 10);
    pop_values(q, 0, 7);
    push_values(q, 10, 50);
    pop_values(q, 7, 50);
    /* Fill to the limit, which is not a power of two. */
    push_values(q, 0, 100000);
    assert_int_equal(sb_queue_try_push(q, item_of(0), 0), -EAGAIN);
    pop_values(q, 0, 100000);
    /* Shrink with the head far from slot 0. */
    push_values(q, 0, 300);
    pop_values(q, 0, 300);
    /* Drained, it shrank; it must still work, wrapped too. */
    push_values(q, 0, 12);
    pop_values(q, 0, 6);
    push_values(q, 12, 40);
    pop_values(q, 6, 40);
    assert_int_equal(sb_queue_len(q), 0);
    assert_int_equal(sb_queue_high_water(q), 100000);
}

/* ---- Batches and counters. ---- */

static void test_queue_pop_batch(void **state)
{
    sb_queue *q = *state; /* 100000 items. */
    for (uintptr_t v = 0; v < 10; v++) {
        assert_int_equal(sb_queue_try_push(q, item_of(v), v * 10), 0);
    }
    void *items[4];
    size_t bytes[4];
    uintptr_t next = 0;
    const int counts[] = {4, 4, 2};
    for (int b = 0; b < 3; b++) {
        assert_int_equal(sb_queue_pop_batch(q, items, bytes, 4, 0), counts[b]);
        for (int i = 0; i < counts[b]; i++, next++) {
            assert_int_equal(value_of(items[i]), next);
            assert_int_equal(bytes[i], next * 10);
        }
    }
    assert_int_equal(next, 10);
    assert_int_equal(sb_queue_pop_batch(q, items, bytes, 4, 0), -EAGAIN);

    /* Without sizes; max larger than the queue; max of 0 is an error. */
    push_values(q, 20, 23);
    assert_int_equal(sb_queue_pop_batch(q, items, NULL, 1, 0), 1);
    assert_int_equal(value_of(items[0]), 20);
    assert_int_equal(sb_queue_pop_batch(q, items, NULL, 0, 0), -EINVAL);
    assert_int_equal(sb_queue_pop_batch(q, items, NULL, 4, -1), 2);
    assert_int_equal(value_of(items[0]), 21);
    assert_int_equal(value_of(items[1]), 22);
    assert_int_equal(sb_queue_len(q), 0);
}

static void test_queue_counters(void **state)
{
    sb_queue *q = *state; /* 8 items, 100 bytes. */
    assert_int_equal(sb_queue_len(q), 0);
    assert_int_equal(sb_queue_bytes(q), 0);
    assert_int_equal(sb_queue_high_water(q), 0);
    assert_int_equal(sb_queue_try_push(q, item_of(1), 10), 0);
    assert_int_equal(sb_queue_try_push(q, item_of(2), 20), 0);
    assert_int_equal(sb_queue_try_push(q, item_of(3), 30), 0);
    assert_int_equal(sb_queue_len(q), 3);
    assert_int_equal(sb_queue_bytes(q), 60);
    assert_int_equal(sb_queue_high_water(q), 3);
    pop_values(q, 1, 3);
    assert_int_equal(sb_queue_len(q), 1);
    assert_int_equal(sb_queue_bytes(q), 30);
    assert_int_equal(sb_queue_high_water(q), 3);
    assert_int_equal(sb_queue_try_push(q, item_of(4), 5), 0);
    assert_int_equal(sb_queue_high_water(q), 3);
    pop_values(q, 3, 5);
    assert_int_equal(sb_queue_len(q), 0);
    assert_int_equal(sb_queue_bytes(q), 0);
    assert_int_equal(sb_queue_high_water(q), 3);
}

/* ---- Timeouts. ---- */

/* A timed wait lasts at least its timeout, and not much longer: the slack
 * allows for sanitizers on a loaded machine, yet catches a timeout taken in
 * the wrong unit. */
static void assert_waited(double elapsed_ms, int timeout_ms)
{
    assert_true(elapsed_ms >= (double)timeout_ms);
    assert_true(elapsed_ms < (double)timeout_ms + 2000.0);
}

static void test_queue_push_timeout(void **state)
{
    sb_queue *q = *state; /* 4 items. */
    push_values(q, 1, 5);
    double start = now_ms();
    assert_int_equal(sb_queue_push(q, item_of(5), 0, 300), -ETIMEDOUT);
    assert_waited(now_ms() - start, 300);
    assert_int_equal(sb_queue_len(q), 4);
}

static void test_queue_pop_timeout(void **state)
{
    sb_queue *q = *state;
    void *item = item_of(7);
    double start = now_ms();
    assert_int_equal(sb_queue_pop(q, &item, NULL, 300), -ETIMEDOUT);
    assert_waited(now_ms() - start, 300);
    assert_int_equal(value_of(item), 7); /* Untouched. */
    start = now_ms();
    assert_int_equal(sb_queue_pop_batch(q, &item, NULL, 1, 1250), -ETIMEDOUT);
    assert_waited(now_ms() - start, 1250);
    /* A timeout of 0 does not wait. */
    assert_int_equal(sb_queue_pop(q, &item, NULL, 0), -EAGAIN);
    assert_int_equal(sb_queue_pop_batch(q, &item, NULL, 1, 0), -EAGAIN);
}

/* ---- Blocked waiters. ---- */

/* A waiter that should be woken gets WAIT_MS to wait: if it is not woken, it
 * times out, and the test fails on its elapsed time instead of hanging. */
static void assert_woken(const struct waiter *w, int rc)
{
    assert_int_equal(w->rc, rc);
    assert_true(w->elapsed_ms < (double)WAIT_MS);
}

static void test_queue_push_wakes_blocked_poppers(void **state)
{
    sb_queue *q = *state;
    struct waiter w[3] = {
        {.q = q, .op = OP_POP, .timeout_ms = WAIT_MS},
        {.q = q, .op = OP_POP_BATCH, .timeout_ms = WAIT_MS},
        {.q = q, .op = OP_POP, .timeout_ms = WAIT_MS},
    };
    for (int i = 0; i < 3; i++) {
        start_blocked(&w[i]);
    }
    /* One push of three items: every popper must wake, though a push
     * signals only one of them. */
    void *items[3] = {item_of(1), item_of(2), item_of(3)};
    assert_int_equal(sb_queue_try_push_many(q, items, NULL, 3), 3);
    uintptr_t sum = 0;
    for (int i = 0; i < 3; i++) {
        join(&w[i]);
        assert_woken(&w[i], w[i].op == OP_POP_BATCH ? 1 : 0);
        sum += value_of(w[i].item);
    }
    assert_int_equal(sum, 6);
    assert_int_equal(sb_queue_len(q), 0);
}

static void test_queue_pop_wakes_blocked_pushers(void **state)
{
    sb_queue *q = *state; /* 8 items, 10 bytes. */
    assert_int_equal(sb_queue_try_push(q, item_of(1), 10), 0);
    struct waiter w[2] = {
        {.q = q,
         .op = OP_PUSH,
         .item = item_of(2),
         .bytes = 5,
         .timeout_ms = WAIT_MS},
        {.q = q,
         .op = OP_PUSH,
         .item = item_of(3),
         .bytes = 5,
         .timeout_ms = WAIT_MS},
    };
    start_blocked(&w[0]);
    start_blocked(&w[1]);
    /* One pop frees the bytes for both. */
    pop_values(q, 1, 2);
    join(&w[0]);
    join(&w[1]);
    assert_woken(&w[0], 0);
    assert_woken(&w[1], 0);
    assert_int_equal(sb_queue_len(q), 2);
    assert_int_equal(sb_queue_bytes(q), 10);
}

static void test_queue_pop_wakes_one_blocked_pusher(void **state)
{
    sb_queue *q = *state; /* 1 item. */
    push_values(q, 1, 2);
    struct waiter w = {
        .q = q, .op = OP_PUSH, .item = item_of(2), .timeout_ms = WAIT_MS};
    start_blocked(&w);
    pop_values(q, 1, 2);
    join(&w);
    assert_woken(&w, 0);
    pop_values(q, 2, 3);
}

static void test_queue_close_wakes_blocked_poppers(void **state)
{
    sb_queue *q = *state;
    struct waiter w[3] = {
        {.q = q, .op = OP_POP, .item = item_of(9), .timeout_ms = -1},
        {.q = q, .op = OP_POP, .item = item_of(9), .timeout_ms = WAIT_MS},
        {.q = q, .op = OP_POP_BATCH, .item = item_of(9), .timeout_ms = -1},
    };
    for (int i = 0; i < 3; i++) {
        start_blocked(&w[i]);
    }
    sb_queue_close(q);
    for (int i = 0; i < 3; i++) {
        join(&w[i]);
        assert_int_equal(w[i].rc, -EPIPE);
        assert_int_equal(value_of(w[i].item), 9);
        assert_true(w[i].elapsed_ms < DEADLINE_MS);
    }
}

static void test_queue_close_wakes_blocked_pushers(void **state)
{
    sb_queue *q = *state; /* 1 item. */
    push_values(q, 1, 2);
    struct waiter w[2] = {
        {.q = q, .op = OP_PUSH, .item = item_of(2), .timeout_ms = -1},
        {.q = q, .op = OP_PUSH, .item = item_of(3), .timeout_ms = WAIT_MS},
    };
    start_blocked(&w[0]);
    start_blocked(&w[1]);
    sb_queue_close(q);
    join(&w[0]);
    join(&w[1]);
    assert_int_equal(w[0].rc, -EPIPE);
    assert_int_equal(w[1].rc, -EPIPE);
    assert_true(w[1].elapsed_ms < DEADLINE_MS);
    /* The item queued before the close is still there, then nothing. */
    pop_values(q, 1, 2);
    void *item;
    assert_int_equal(sb_queue_pop(q, &item, NULL, -1), -EPIPE);
}

/* ---- Close. ---- */

static void test_queue_close_drains_then_epipe(void **state)
{
    sb_queue *q = *state; /* 4 items. */
    push_values(q, 1, 4);
    assert_false(sb_queue_closed(q));
    sb_queue_close(q);
    assert_true(sb_queue_closed(q));
    void *items[2] = {item_of(8), item_of(9)};
    /* Every push fails at once, even one that would wait. */
    assert_int_equal(sb_queue_try_push(q, items[0], 0), -EPIPE);
    assert_int_equal(sb_queue_push(q, items[0], 0, -1), -EPIPE);
    assert_int_equal(sb_queue_push_force(q, items[0], 0), -EPIPE);
    assert_int_equal(sb_queue_try_push_many(q, items, NULL, 2), -EPIPE);
    /* Pops drain what is left, then fail at once. */
    pop_values(q, 1, 2);
    void *out[4];
    assert_int_equal(sb_queue_pop_batch(q, out, NULL, 4, -1), 2);
    assert_int_equal(value_of(out[0]), 2);
    assert_int_equal(value_of(out[1]), 3);
    assert_int_equal(sb_queue_try_pop(q, out, NULL), -EPIPE);
    assert_int_equal(sb_queue_pop(q, out, NULL, -1), -EPIPE);
    assert_int_equal(sb_queue_pop_batch(q, out, NULL, 4, 100), -EPIPE);
    sb_queue_close(q); /* Idempotent. */
    assert_true(sb_queue_closed(q));
    assert_int_equal(sb_queue_len(q), 0);
}

/* ---- The eventfd. ---- */

static void test_queue_fd_flags(void **state)
{
    sb_queue *q = *state;
    int fd = sb_queue_fd(q);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_false(fd_readable(fd));
}

static void test_queue_fd_one_wake_per_transition(void **state)
{
    sb_queue *q = *state;
    int fd = sb_queue_fd(q);
    push_values(q, 1, 4);
    assert_true(fd_readable(fd));
    assert_int_equal(fd_take(fd), 1); /* One write for three items. */
    assert_false(fd_readable(fd));
    /* Pushes into a non-empty queue do not write. */
    pop_values(q, 1, 2);
    push_values(q, 4, 5);
    assert_false(fd_readable(fd));
    /* Emptied, the next push writes again, once. */
    pop_values(q, 2, 5);
    assert_false(fd_readable(fd));
    push_values(q, 5, 7);
    assert_int_equal(fd_take(fd), 1);
    pop_values(q, 5, 7);
    /* Likewise for a batch push and a forced push. */
    void *items[3] = {item_of(1), item_of(2), item_of(3)};
    assert_int_equal(sb_queue_try_push_many(q, items, NULL, 3), 3);
    assert_int_equal(fd_take(fd), 1);
    pop_values(q, 1, 4);
    assert_int_equal(sb_queue_push_force(q, item_of(1), 0), 0);
    assert_int_equal(fd_take(fd), 1);
    assert_int_equal(sb_queue_push_force(q, item_of(2), 0), 0);
    assert_false(fd_readable(fd));
}

static void test_queue_fd_clear_then_drain(void **state)
{
    sb_queue *q = *state;
    int fd = sb_queue_fd(q);
    push_values(q, 1, 3);
    assert_true(fd_readable(fd));
    sb_queue_clear_fd(q);
    assert_false(fd_readable(fd));
    sb_queue_clear_fd(q); /* Nothing to clear: must not block. */
    void *items[4];
    assert_int_equal(sb_queue_pop_batch(q, items, NULL, 4, 0), 2);
    assert_false(fd_readable(fd));
    /* A push after the drain is seen at the next poll(). */
    push_values(q, 3, 4);
    assert_true(fd_readable(fd));
    sb_queue_clear_fd(q);
    assert_false(fd_readable(fd));
}

static void test_queue_fd_wake_and_close(void **state)
{
    sb_queue *q = *state;
    int fd = sb_queue_fd(q);
    sb_queue_wake(q);
    assert_true(fd_readable(fd));
    assert_int_equal(sb_queue_len(q), 0);
    sb_queue_clear_fd(q);
    assert_false(fd_readable(fd));
    sb_queue_wake(q);
    sb_queue_wake(q);
    sb_queue_clear_fd(q); /* One clear takes every pending wake. */
    assert_false(fd_readable(fd));
    sb_queue_close(q);
    assert_true(fd_readable(fd));
}

/* ---- Stress: many producers and consumers. ---- */

#define STRESS_PRODUCERS 4
#define STRESS_CONSUMERS 4
#define STRESS_PER_PRODUCER 50000
#define STRESS_TOTAL (STRESS_PRODUCERS * STRESS_PER_PRODUCER)
#define STRESS_SEQ_BITS 20

struct stress_thread {
    sb_queue *q;
    int id;
    uintptr_t *got; /* Consumers: items in the order popped. */
    size_t n;
    size_t errors; /* Unexpected return values. */
    pthread_t thread;
};

static uintptr_t stress_item(int producer, uintptr_t seq)
{
    return ((uintptr_t)producer << STRESS_SEQ_BITS) | seq;
}

/* Sizes vary so that the byte limit binds as well as the item limit. */
static size_t stress_bytes(uintptr_t v)
{
    return (size_t)(v % 4);
}

/* Each producer pushes its own way: blocking, with short timeouts, or in
 * batches topped up by a blocking push. */
static void *stress_producer(void *arg)
{
    struct stress_thread *t = arg;
    uintptr_t seq = 0;
    while (seq < STRESS_PER_PRODUCER) {
        uintptr_t v = stress_item(t->id, seq);
        int rc;
        if (t->id == 3) {
            void *items[8];
            size_t bytes[8];
            size_t n = 0;
            for (; n < 8 && seq + n < STRESS_PER_PRODUCER; n++) {
                items[n] = item_of(v + n);
                bytes[n] = stress_bytes(v + n);
            }
            rc = sb_queue_try_push_many(t->q, items, bytes, n);
            if (rc > 0) {
                seq += (uintptr_t)rc;
                continue;
            }
            rc = rc == 0 ? sb_queue_push(t->q, items[0], bytes[0], -1) : rc;
        } else if (t->id == 2) {
            rc = sb_queue_push(t->q, item_of(v), stress_bytes(v), 1);
            if (rc == -ETIMEDOUT) {
                continue;
            }
        } else {
            rc = sb_queue_push(t->q, item_of(v), stress_bytes(v), -1);
        }
        if (rc != 0) {
            t->errors++;
            break;
        }
        seq++;
    }
    return NULL;
}

static int stress_pop(struct stress_thread *t, void **items, size_t *bytes)
{
    switch (t->id) {
    case 0: {
        int rc = sb_queue_pop(t->q, items, bytes, -1);
        return rc == 0 ? 1 : rc;
    }
    case 1:
        return sb_queue_pop_batch(t->q, items, bytes, 16, -1);
    case 2: {
        int rc = sb_queue_pop(t->q, items, bytes, 5);
        return rc == 0 ? 1 : rc;
    }
    default:
        return sb_queue_pop_batch(t->q, items, bytes, 7, 2);
    }
}

static void *stress_consumer(void *arg)
{
    struct stress_thread *t = arg;
    for (;;) {
        void *items[16];
        size_t bytes[16];
        int n = stress_pop(t, items, bytes);
        if (n == -ETIMEDOUT) {
            continue;
        }
        if (n < 0) {
            t->errors += n != -EPIPE;
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            uintptr_t v = value_of(items[i]);
            t->errors += bytes[i] != stress_bytes(v);
            if (t->n < STRESS_TOTAL) {
                t->got[t->n++] = v;
            } else {
                t->errors++;
            }
        }
    }
}

/* Count what went wrong in what the consumers saw: items seen other than
 * exactly once, and items of one producer out of order at one consumer. */
static size_t stress_check(const struct stress_thread *c, unsigned char *seen)
{
    size_t bad = 0;
    for (int i = 0; i < STRESS_CONSUMERS; i++) {
        long last[STRESS_PRODUCERS] = {-1, -1, -1, -1};
        for (size_t k = 0; k < c[i].n; k++) {
            uintptr_t v = c[i].got[k];
            uintptr_t p = v >> STRESS_SEQ_BITS;
            uintptr_t seq = v & (((uintptr_t)1 << STRESS_SEQ_BITS) - 1);
            if (p >= STRESS_PRODUCERS || seq >= STRESS_PER_PRODUCER ||
                (long)seq <= last[p]) {
                bad++;
                continue;
            }
            last[p] = (long)seq;
            seen[p * STRESS_PER_PRODUCER + seq]++;
        }
    }
    for (size_t k = 0; k < STRESS_TOTAL; k++) {
        bad += seen[k] != 1;
    }
    return bad;
}

struct stress {
    sb_queue *q;
    unsigned char *seen; /* How often each item was popped. */
    struct stress_thread prod[STRESS_PRODUCERS];
    struct stress_thread cons[STRESS_CONSUMERS];
};

static int teardown_stress(void **state)
{
    struct stress *s = *state;
    for (int i = 0; i < STRESS_CONSUMERS; i++) {
        free(s->cons[i].got);
    }
    free(s->seen);
    sb_queue_free(s->q, NULL);
    free(s);
    return 0;
}

static int setup_stress(void **state)
{
    struct stress *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return -1;
    }
    *state = s;
    s->q = sb_queue_new(64, 48);
    s->seen = calloc(STRESS_TOTAL, 1);
    bool ok = s->q != NULL && s->seen != NULL;
    for (int i = 0; i < STRESS_CONSUMERS; i++) {
        s->cons[i].got = malloc(STRESS_TOTAL * sizeof *s->cons[i].got);
        ok = ok && s->cons[i].got != NULL;
    }
    return ok ? 0 : -1;
}

/* Start `n` threads; returns how many started. */
static int
start_threads(struct stress_thread *t, int n, sb_queue *q, void *(*fn)(void *))
{
    for (int i = 0; i < n; i++) {
        t[i].q = q;
        t[i].id = i;
        if (pthread_create(&t[i].thread, NULL, fn, &t[i]) != 0) {
            return i;
        }
    }
    return n;
}

static void test_queue_stress(void **state)
{
    struct stress *s = *state;
    int consumers =
        start_threads(s->cons, STRESS_CONSUMERS, s->q, stress_consumer);
    int producers =
        start_threads(s->prod, STRESS_PRODUCERS, s->q, stress_producer);
    if (consumers < STRESS_CONSUMERS) {
        sb_queue_close(s->q); /* Lest the producers block for ever. */
    }
    size_t errors = 0;
    for (int i = 0; i < producers; i++) {
        errors += pthread_join(s->prod[i].thread, NULL) != 0;
        errors += s->prod[i].errors;
    }
    /* Every item is queued: the consumers drain them, then see -EPIPE. */
    sb_queue_close(s->q);
    for (int i = 0; i < consumers; i++) {
        errors += pthread_join(s->cons[i].thread, NULL) != 0;
        errors += s->cons[i].errors;
    }
    assert_int_equal(consumers, STRESS_CONSUMERS);
    assert_int_equal(producers, STRESS_PRODUCERS);
    assert_int_equal(errors, 0);
    assert_int_equal(stress_check(s->cons, s->seen), 0);
    assert_int_equal(sb_queue_len(s->q), 0);
    assert_int_equal(sb_queue_bytes(s->q), 0);
    assert_true(sb_queue_high_water(s->q) <= 64);
}

#define QUEUE_TEST(name, setup)                                                \
    cmocka_unit_test_setup_teardown(name, setup, teardown_q)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_new_rejects_zero_items),
        cmocka_unit_test(test_queue_free_passes_items),
        QUEUE_TEST(test_queue_fifo_order, setup_4_items),
        QUEUE_TEST(test_queue_pop_reports_bytes, setup_4_items),
        QUEUE_TEST(test_queue_item_limit, setup_4_items),
        QUEUE_TEST(test_queue_byte_limit, setup_8_items_100_bytes),
        QUEUE_TEST(test_queue_oversize_item_into_empty,
                   setup_8_items_100_bytes),
        QUEUE_TEST(test_queue_push_many_partial, setup_8_items_100_bytes),
        QUEUE_TEST(test_queue_push_many_grows, setup_large),
        cmocka_unit_test(test_queue_push_force),
        QUEUE_TEST(test_queue_grows_and_shrinks, setup_large),
        QUEUE_TEST(test_queue_pop_batch, setup_large),
        QUEUE_TEST(test_queue_counters, setup_8_items_100_bytes),
        QUEUE_TEST(test_queue_push_timeout, setup_4_items),
        QUEUE_TEST(test_queue_pop_timeout, setup_4_items),
        QUEUE_TEST(test_queue_push_wakes_blocked_poppers, setup_4_items),
        QUEUE_TEST(test_queue_pop_wakes_blocked_pushers, setup_10_bytes),
        QUEUE_TEST(test_queue_pop_wakes_one_blocked_pusher, setup_1_item),
        QUEUE_TEST(test_queue_close_wakes_blocked_poppers, setup_4_items),
        QUEUE_TEST(test_queue_close_wakes_blocked_pushers, setup_1_item),
        QUEUE_TEST(test_queue_close_drains_then_epipe, setup_4_items),
        QUEUE_TEST(test_queue_fd_flags, setup_4_items),
        QUEUE_TEST(test_queue_fd_one_wake_per_transition, setup_large),
        QUEUE_TEST(test_queue_fd_clear_then_drain, setup_4_items),
        QUEUE_TEST(test_queue_fd_wake_and_close, setup_4_items),
        cmocka_unit_test_setup_teardown(test_queue_stress, setup_stress,
                                        teardown_stress),
    };
    return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
