/* queue.h - a bounded FIFO of pointers for many producers and consumers.
 *
 * Every part of sockbus moves work through this queue: a connection's send
 * queue (the bus produces, the connection's worker consumes) and the bus's
 * receive queue (every worker produces, the bus consumes).
 *
 * Limits: a queue holds at most `max_items` items and, when `max_bytes` is
 * not 0, at most `max_bytes` bytes, where each push states the size of its
 * item. An item larger than `max_bytes` can still be pushed into an empty
 * queue, so that no item is refused forever.
 *
 * Wake-ups: every queue owns an eventfd that becomes readable when the queue
 * goes from empty to non-empty (one write per transition, not one per item),
 * so that a consumer can poll() it beside a socket. The consumer clears it
 * with sb_queue_clear_fd() *before* draining, and drains until -EAGAIN; a
 * consumer that stops early (say after one batch) must come back without
 * waiting for the eventfd, which stays quiet while the queue is not empty.
 * Anyone may make it readable with sb_queue_wake() to wake the consumer for
 * another reason.
 *
 * Storage grows on demand; a push that cannot grow it (ENOMEM) behaves as
 * if the queue were full. Only sb_queue_push_force() reports -ENOMEM.
 *
 * Ownership: the queue stores pointers and never looks at the items. A
 * successful push hands the item to the queue; a pop hands it to the caller.
 *
 * Threads: every function but sb_queue_new() and sb_queue_free() is
 * thread-safe. No function calls back into the caller. */
#ifndef SB_QUEUE_H
#define SB_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sb_queue sb_queue;

/* Create a queue of at most `max_items` items (>= 1) and, when `max_bytes` is
 * not 0, at most `max_bytes` bytes. Storage grows with use, so an idle queue
 * with a large limit is small.
 * Returns owned (free with sb_queue_free()), or NULL with errno set to
 * EINVAL, ENOMEM or the eventfd() error. */
sb_queue *sb_queue_new(size_t max_items, size_t max_bytes);

/* Free the queue and its eventfd. Items still queued are passed to
 * `free_item` when it is not NULL. No other thread may use the queue during
 * or after this call. Accepts NULL. */
void sb_queue_free(sb_queue *q, void (*free_item)(void *item));

/* Push one item without blocking.
 * Returns 0: the queue now owns `item`. Returns -EAGAIN when full (items or
 * bytes) or -EPIPE once closed: the caller still owns `item`. */
int sb_queue_try_push(sb_queue *q, void *item, size_t bytes);

/* Push up to `n` items in order without blocking, under one lock and with at
 * most one eventfd write. `bytes` may be NULL (all sizes 0).
 * Returns how many were pushed (0..n, the first ones; the queue owns those and
 * the caller still owns the rest), or -EPIPE once closed (none pushed). */
int sb_queue_try_push_many(sb_queue *q,
                           void *const *items,
                           const size_t *bytes,
                           size_t n);

/* Push one item, waiting while the queue is full: `timeout_ms` < 0 waits
 * without limit, 0 does not wait.
 * Returns 0 (the queue owns `item`), -ETIMEDOUT (or -EAGAIN when
 * `timeout_ms` is 0), or -EPIPE when the queue is or becomes closed; on
 * failure the caller still owns `item`. */
int sb_queue_push(sb_queue *q, void *item, size_t bytes, int timeout_ms);

/* Push one item whatever the limits: for control items whose number is
 * bounded elsewhere (one per connection, say) and that must never be lost.
 * Returns 0, -ENOMEM, or -EPIPE once closed. */
int sb_queue_push_force(sb_queue *q, void *item, size_t bytes);

/* Pop the oldest item without blocking; `bytes` may be NULL.
 * Returns 0 (the caller owns *item), -EAGAIN when empty, or -EPIPE when
 * closed and empty. */
int sb_queue_try_pop(sb_queue *q, void **item, size_t *bytes);

/* Pop the oldest item, waiting while the queue is empty: `timeout_ms` < 0
 * waits without limit, 0 does not wait.
 * Returns 0, -ETIMEDOUT (or -EAGAIN when `timeout_ms` is 0), or -EPIPE when
 * closed and empty. */
int sb_queue_pop(sb_queue *q, void **item, size_t *bytes, int timeout_ms);

/* Pop up to `max` of the oldest items in order under one lock, waiting as
 * sb_queue_pop() does while the queue is empty. `bytes` may be NULL; else it
 * receives each item's size.
 * Returns the count popped (1..max), -EAGAIN, -ETIMEDOUT or -EPIPE as
 * sb_queue_pop(). */
int sb_queue_pop_batch(
    sb_queue *q, void **items, size_t *bytes, size_t max, int timeout_ms);

/* Close the queue: pushes fail with -EPIPE from now on, every waiting pusher
 * and popper wakes, pops drain what is left and then return -EPIPE. The
 * eventfd is made readable. Idempotent. */
void sb_queue_close(sb_queue *q);

/* True once sb_queue_close() was called. */
bool sb_queue_closed(sb_queue *q);

/* The eventfd to poll() for POLLIN. Owned by the queue. */
int sb_queue_fd(const sb_queue *q);

/* Consume any pending wake-up on the eventfd. Call it before draining the
 * queue, never after, or a push in between could go unnoticed. */
void sb_queue_clear_fd(sb_queue *q);

/* Make the eventfd readable, to wake the consumer for a reason of the
 * caller's own. */
void sb_queue_wake(sb_queue *q);

/* Counters, each read under the lock: items queued now, their bytes, and the
 * most items ever queued at once. */
size_t sb_queue_len(sb_queue *q);
size_t sb_queue_bytes(sb_queue *q);
size_t sb_queue_high_water(sb_queue *q);

#endif
