/* queue.c - the bounded FIFO of queue.h: a mutex, two condition variables
 * and a ring buffer that grows with use.
 *
 * Threads and fields:
 * - `max_items`, `max_bytes` and `efd` are written by sb_queue_new() before
 *   any other thread can see the queue and are read-only afterwards, so they
 *   are read without the lock (sb_queue_fd() relies on it).
 * - Every other field (`ring`, `cap`, `head`, `len`, `bytes`, `high_water`,
 *   the waiter counts and `closed`) is read and written only with `lock`
 *   held, by any producer or consumer thread.
 * - sb_queue_free() touches everything without the lock: by contract no
 *   other thread uses the queue then.
 *
 * Lock rules:
 * - `lock` is a leaf: nothing else is locked while it is held and no
 *   function calls back into the caller, so it cannot take part in a
 *   deadlock.
 * - No syscall is made with the lock held, but for the futex calls inside
 *   pthread_cond_signal() and pthread_cond_broadcast(), which are made only
 *   when a thread sleeps on the condition variable. Whether the eventfd must
 *   be written is decided under the lock; the write() happens after
 *   unlocking. Rings made obsolete by growing or shrinking are freed after
 *   unlocking too, since free() of a large block may munmap().
 * - The one exception is malloc() when the ring grows: it happens at most
 *   log2(max_items) times per fill, and the copy into the new ring needs the
 *   lock anyway, so dropping and retaking the lock around it would cost more
 *   than it saves.
 *
 * Wake-ups: a condition variable is signalled only when the waiter count says
 * someone sleeps on it, so an uncontended push or pop costs one lock and
 * unlock. The eventfd is written once per empty to non-empty transition,
 * which is what a consumer needs if it clears the fd before draining: any
 * item it does not see was pushed into a queue it had emptied, and that push
 * writes the fd again. */
#include "queue.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum {
    /* Slots held inside the queue itself: an idle queue needs no ring of its
     * own, whatever its limit (a server holds one per connection). */
    INLINE_SLOTS = 16,
    /* A ring of at least this many slots is given back when the queue drains
     * empty. Smaller rings are kept, so that a queue that swings between
     * empty and a few dozen items does not allocate on every swing. */
    SHRINK_SLOTS = 256,
};

struct slot {
    void *item;
    size_t bytes;
};

struct sb_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty; /* Poppers wait here. */
    pthread_cond_t not_full;  /* Pushers wait here. */
    struct slot *ring;        /* inline_ring or a malloc()ed ring. */
    size_t cap;               /* Slots in ring. */
    size_t head;              /* Index of the oldest item. */
    size_t len;               /* Items queued. */
    size_t bytes;             /* Sum of their sizes. */
    size_t high_water;        /* Largest len ever. */
    size_t push_waiters;      /* Threads asleep on not_full. */
    size_t pop_waiters;       /* Threads asleep on not_empty. */
    bool closed;
    size_t max_items;
    size_t max_bytes; /* 0: no byte limit. */
    int efd;
    struct slot inline_ring[INLINE_SLOTS];
};

/* A default mutex or condition variable fails only when misused (not
 * initialised, already destroyed): memory is corrupt and no caller could
 * recover, so these wrappers abort instead of returning the error. */
static void queue_lock(sb_queue *q)
{
    if (pthread_mutex_lock(&q->lock) != 0) {
        abort();
    }
}

static void queue_unlock(sb_queue *q)
{
    if (pthread_mutex_unlock(&q->lock) != 0) {
        abort();
    }
}

static void cond_signal(pthread_cond_t *cv)
{
    if (pthread_cond_signal(cv) != 0) {
        abort();
    }
}

static void cond_broadcast(pthread_cond_t *cv)
{
    if (pthread_cond_broadcast(cv) != 0) {
        abort();
    }
}

/* Sleep on `cv`, lock held, until woken or past `deadline` (NULL: no limit).
 * Returns 0, or ETIMEDOUT once the deadline has passed. */
static int
cond_wait(sb_queue *q, pthread_cond_t *cv, const struct timespec *deadline)
{
    int rc;
    if (deadline == NULL) {
        rc = pthread_cond_wait(cv, &q->lock);
    } else {
        rc = pthread_cond_timedwait(cv, &q->lock, deadline);
    }
    if (rc != 0 && rc != ETIMEDOUT) {
        abort();
    }
    return rc;
}

/* The CLOCK_MONOTONIC time `ms` (> 0) milliseconds from now: the clock the
 * condition variables were created with, which wall clock steps do not
 * move. */
static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Make the eventfd readable. EAGAIN means the counter is saturated, so the fd
 * is readable already. */
static void fd_wake(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

/* Whether one more item of `bytes` fits beside `len` items of `used` bytes.
 * An empty queue takes any item, so that one larger than max_bytes is not
 * refused forever. */
static bool fits(const sb_queue *q, size_t len, size_t used, size_t bytes)
{
    if (len == 0) {
        return true;
    }
    if (len >= q->max_items) {
        return false;
    }
    if (q->max_bytes == 0) {
        return true;
    }
    return used <= q->max_bytes && bytes <= q->max_bytes - used;
}

/* Make the ring hold at least `want` items, doubling its size, but not past
 * max_items unless `want` itself is (a forced push). The ring it replaces
 * goes to *old (NULL for the inline one) for the caller to free after
 * unlocking. Returns 0 or -ENOMEM. */
static int reserve(sb_queue *q, size_t want, struct slot **old)
{
    if (want <= q->cap) {
        return 0;
    }
    size_t cap = q->cap;
    while (cap < want) {
        if (cap > SIZE_MAX / 2 / sizeof(struct slot)) {
            return -ENOMEM;
        }
        cap *= 2;
    }
    if (want <= q->max_items && cap > q->max_items) {
        cap = q->max_items;
    }
    struct slot *ring = malloc(cap * sizeof *ring);
    if (ring == NULL) {
        return -ENOMEM;
    }
    /* Unwrap: the oldest item moves to slot 0. */
    size_t first = q->cap - q->head;
    if (first > q->len) {
        first = q->len;
    }
    memcpy(ring, q->ring + q->head, first * sizeof *ring);
    memcpy(ring + first, q->ring, (q->len - first) * sizeof *ring);
    *old = q->ring == q->inline_ring ? NULL : q->ring;
    q->ring = ring;
    q->cap = cap;
    q->head = 0;
    return 0;
}

/* Append one item; the ring has room. Returns whether the queue was empty,
 * that is whether the eventfd must be written after unlocking. */
static bool put(sb_queue *q, void *item, size_t bytes)
{
    size_t tail = q->head + q->len;
    if (tail >= q->cap) {
        tail -= q->cap;
    }
    q->ring[tail].item = item;
    q->ring[tail].bytes = bytes;
    q->len++;
    q->bytes += bytes;
    if (q->len > q->high_water) {
        q->high_water = q->len;
    }
    return q->len == 1;
}

/* Remove the oldest item; the queue is not empty. */
static void take(sb_queue *q, void **item, size_t *bytes)
{
    const struct slot *s = &q->ring[q->head];
    *item = s->item;
    if (bytes != NULL) {
        *bytes = s->bytes;
    }
    q->bytes -= s->bytes;
    q->len--;
    q->head = q->head + 1 == q->cap ? 0 : q->head + 1;
}

/* Wake whoever the items just pushed let through: one popper, which passes
 * the signal on if it leaves items behind (see after_pop()). */
static void after_push(sb_queue *q)
{
    if (q->pop_waiters > 0) {
        cond_signal(&q->not_empty);
    }
}

/* Wake whoever the `n` items just popped let through, and give back a large
 * ring once the queue is empty. Returns the ring to free after unlocking, or
 * NULL.
 * One slot freed lets exactly one pusher through, but several items, or
 * bytes that may suit a smaller item than the one woken, may let through
 * more: broadcast then, since only one pusher would otherwise wake. */
static struct slot *after_pop(sb_queue *q, size_t n)
{
    if (q->push_waiters > 0) {
        if (n > 1 || q->max_bytes != 0) {
            cond_broadcast(&q->not_full);
        } else {
            cond_signal(&q->not_full);
        }
    }
    if (q->len > 0) {
        if (q->pop_waiters > 0) {
            cond_signal(&q->not_empty);
        }
        return NULL;
    }
    q->head = 0;
    if (q->ring == q->inline_ring || q->cap < SHRINK_SLOTS) {
        return NULL;
    }
    struct slot *old = q->ring;
    q->ring = q->inline_ring;
    q->cap = INLINE_SLOTS;
    return old;
}

/* Wait, lock held, until one item of `bytes` can be appended, growing the
 * ring if needed (see reserve() for *old). A ring that cannot grow counts as
 * full: a pop will make room, since the ring is never full while empty.
 * Returns 0, -EAGAIN, -ETIMEDOUT or -EPIPE. */
static int
wait_room(sb_queue *q, size_t bytes, int timeout_ms, struct slot **old)
{
    struct timespec deadline;
    bool have_deadline = false;
    bool timed_out = false;
    for (;;) {
        if (q->closed) {
            return -EPIPE;
        }
        if (fits(q, q->len, q->bytes, bytes) &&
            reserve(q, q->len + 1, old) == 0) {
            return 0;
        }
        if (timeout_ms == 0) {
            return -EAGAIN;
        }
        if (timed_out) {
            return -ETIMEDOUT;
        }
        if (timeout_ms > 0 && !have_deadline) {
            deadline_in(&deadline, timeout_ms);
            have_deadline = true;
        }
        q->push_waiters++;
        timed_out = cond_wait(q, &q->not_full,
                              have_deadline ? &deadline : NULL) == ETIMEDOUT;
        q->push_waiters--;
    }
}

/* Wait, lock held, until the queue holds an item. The predicate is checked
 * again after a timeout, so a waiter woken and timed out at once still takes
 * the item it was woken for.
 * Returns 0, -EAGAIN, -ETIMEDOUT or -EPIPE. */
static int wait_item(sb_queue *q, int timeout_ms)
{
    struct timespec deadline;
    bool have_deadline = false;
    bool timed_out = false;
    while (q->len == 0) {
        if (q->closed) {
            return -EPIPE;
        }
        if (timeout_ms == 0) {
            return -EAGAIN;
        }
        if (timed_out) {
            return -ETIMEDOUT;
        }
        if (timeout_ms > 0 && !have_deadline) {
            deadline_in(&deadline, timeout_ms);
            have_deadline = true;
        }
        q->pop_waiters++;
        timed_out = cond_wait(q, &q->not_empty,
                              have_deadline ? &deadline : NULL) == ETIMEDOUT;
        q->pop_waiters--;
    }
    return 0;
}

sb_queue *sb_queue_new(size_t max_items, size_t max_bytes)
{
    if (max_items == 0) {
        errno = EINVAL;
        return NULL;
    }
    sb_queue *q = calloc(1, sizeof *q);
    if (q == NULL) {
        return NULL;
    }
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0) {
        goto fail;
    }
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc != 0) {
        goto fail_attr;
    }
    rc = pthread_cond_init(&q->not_empty, &attr);
    if (rc != 0) {
        goto fail_attr;
    }
    rc = pthread_cond_init(&q->not_full, &attr);
    if (rc != 0) {
        goto fail_not_empty;
    }
    rc = pthread_mutex_init(&q->lock, NULL);
    if (rc != 0) {
        goto fail_not_full;
    }
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        rc = errno;
        goto fail_lock;
    }
    pthread_condattr_destroy(&attr);
    q->ring = q->inline_ring;
    q->cap = INLINE_SLOTS;
    q->max_items = max_items;
    q->max_bytes = max_bytes;
    return q;

fail_lock:
    pthread_mutex_destroy(&q->lock);
fail_not_full:
    pthread_cond_destroy(&q->not_full);
fail_not_empty:
    pthread_cond_destroy(&q->not_empty);
fail_attr:
    pthread_condattr_destroy(&attr);
fail:
    free(q);
    errno = rc;
    return NULL;
}

void sb_queue_free(sb_queue *q, void (*free_item)(void *item))
{
    if (q == NULL) {
        return;
    }
    while (free_item != NULL && q->len > 0) {
        void *item;
        take(q, &item, NULL);
        free_item(item);
    }
    if (q->ring != q->inline_ring) {
        free(q->ring);
    }
    close(q->efd);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    free(q);
}

int sb_queue_try_push(sb_queue *q, void *item, size_t bytes)
{
    return sb_queue_push(q, item, bytes, 0);
}

int sb_queue_push(sb_queue *q, void *item, size_t bytes, int timeout_ms)
{
    struct slot *old = NULL;
    bool wake = false;
    queue_lock(q);
    int rc = wait_room(q, bytes, timeout_ms, &old);
    if (rc == 0) {
        wake = put(q, item, bytes);
        after_push(q);
    }
    queue_unlock(q);
    free(old);
    if (wake) {
        fd_wake(q->efd);
    }
    return rc;
}

/* The first items of `items` that fit the limits, in order: pushing stops at
 * the first that does not fit, even if a later, smaller one would. */
static size_t count_fitting(const sb_queue *q, const size_t *bytes, size_t n)
{
    size_t len = q->len;
    size_t used = q->bytes;
    size_t k = 0;
    while (k < n) {
        size_t b = bytes != NULL ? bytes[k] : 0;
        if (!fits(q, len, used, b)) {
            break;
        }
        len++;
        used += b;
        k++;
    }
    return k;
}

int sb_queue_try_push_many(sb_queue *q,
                           void *const *items,
                           const size_t *bytes,
                           size_t n)
{
    struct slot *old = NULL;
    bool wake = false;
    /* The count is returned as an int: push at most INT_MAX, which the caller
     * sees as a partial push. */
    if (n > INT_MAX) {
        n = INT_MAX;
    }
    queue_lock(q);
    if (q->closed) {
        queue_unlock(q);
        return -EPIPE;
    }
    size_t k = count_fitting(q, bytes, n);
    if (k > 0 && reserve(q, q->len + k, &old) != 0) {
        /* No memory to grow: push what the ring holds now, as if full. */
        k = q->cap - q->len;
    }
    for (size_t i = 0; i < k; i++) {
        wake |= put(q, items[i], bytes != NULL ? bytes[i] : 0);
    }
    if (k > 0) {
        after_push(q);
    }
    queue_unlock(q);
    free(old);
    if (wake) {
        fd_wake(q->efd);
    }
    return (int)k;
}

int sb_queue_push_force(sb_queue *q, void *item, size_t bytes)
{
    struct slot *old = NULL;
    bool wake = false;
    int rc = 0;
    queue_lock(q);
    if (q->closed) {
        rc = -EPIPE;
    } else if (reserve(q, q->len + 1, &old) != 0) {
        rc = -ENOMEM;
    } else {
        wake = put(q, item, bytes);
        after_push(q);
    }
    queue_unlock(q);
    free(old);
    if (wake) {
        fd_wake(q->efd);
    }
    return rc;
}

int sb_queue_try_pop(sb_queue *q, void **item, size_t *bytes)
{
    return sb_queue_pop(q, item, bytes, 0);
}

int sb_queue_pop(sb_queue *q, void **item, size_t *bytes, int timeout_ms)
{
    int rc = sb_queue_pop_batch(q, item, bytes, 1, timeout_ms);
    return rc < 0 ? rc : 0;
}

int sb_queue_pop_batch(
    sb_queue *q, void **items, size_t *bytes, size_t max, int timeout_ms)
{
    struct slot *old = NULL;
    if (max == 0) {
        return -EINVAL;
    }
    if (max > INT_MAX) {
        max = INT_MAX;
    }
    queue_lock(q);
    int rc = wait_item(q, timeout_ms);
    if (rc == 0) {
        size_t n = q->len < max ? q->len : max;
        for (size_t i = 0; i < n; i++) {
            take(q, &items[i], bytes != NULL ? &bytes[i] : NULL);
        }
        old = after_pop(q, n);
        rc = (int)n;
    }
    queue_unlock(q);
    free(old);
    return rc;
}

void sb_queue_close(sb_queue *q)
{
    queue_lock(q);
    bool first = !q->closed;
    q->closed = true;
    if (first && q->push_waiters > 0) {
        cond_broadcast(&q->not_full);
    }
    if (first && q->pop_waiters > 0) {
        cond_broadcast(&q->not_empty);
    }
    queue_unlock(q);
    if (first) {
        fd_wake(q->efd);
    }
}

bool sb_queue_closed(sb_queue *q)
{
    queue_lock(q);
    bool closed = q->closed;
    queue_unlock(q);
    return closed;
}

int sb_queue_fd(const sb_queue *q)
{
    return q->efd;
}

void sb_queue_clear_fd(sb_queue *q)
{
    /* Without EFD_SEMAPHORE one read() takes the whole counter back to 0;
     * EAGAIN means there was nothing to clear. */
    uint64_t count;
    while (read(q->efd, &count, sizeof count) < 0 && errno == EINTR) {
    }
}

void sb_queue_wake(sb_queue *q)
{
    fd_wake(q->efd);
}

size_t sb_queue_len(sb_queue *q)
{
    queue_lock(q);
    size_t n = q->len;
    queue_unlock(q);
    return n;
}

size_t sb_queue_bytes(sb_queue *q)
{
    queue_lock(q);
    size_t n = q->bytes;
    queue_unlock(q);
    return n;
}

size_t sb_queue_high_water(sb_queue *q)
{
    queue_lock(q);
    size_t n = q->high_water;
    queue_unlock(q);
    return n;
}
