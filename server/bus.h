/* bus.h - the message bus: routes publications to subscribers.
 *
 * One bus thread owns the subscription index and every routing decision.
 * Workers push publications (msg frames, built once in the worker) and
 * subscription changes into the bus's bounded receive queue, in the order
 * their client sent them; the bus pops them in batches, matches each
 * publication (wildcards, queue groups round robin, echo), and puts one
 * reference of the shared frame into each matching connection's send
 * queue, batched per connection. A full send queue applies the
 * slow-consumer policy; the bus never waits for anyone.
 *
 * When the receive queue is full, workers stop reading their sockets (TCP
 * pushes back on publishers) and register with sb_bus_pause(); the bus
 * wakes them when it has made room.
 *
 * Threads: functions marked "any thread" are thread-safe; the bus's own
 * state is touched by the bus thread only. */
#ifndef SB_BUS_H
#define SB_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "msg.h"
#include "queue.h"
#include "sockbus.h"

struct sb_conn;
typedef struct sb_bus sb_bus;

/* Create the bus and its receive queue (not started). Returns owned, or
 * NULL with errno set. */
sb_bus *sb_bus_new(sb_server *srv);

/* Start the bus thread. Returns 0 or a negative errno. */
int sb_bus_start(sb_bus *b);

/* Close the receive queue, route what is left, join the thread and free
 * the bus. Every connection must have been detached. Accepts NULL. */
void sb_bus_stop(sb_bus *b);

/* The receive queue (items: msg frames, or ops from sb_bus_op_*()). Any
 * thread may push. */
sb_queue *sb_bus_queue(sb_bus *b);

/* Ops, each returned owned as a queue item (push it, or free it with
 * sb_bus_item_free()). NULL on ENOMEM. Any thread. */
void *sb_bus_op_sub(
    struct sb_conn *c, bool unsub, sb_span pattern, sb_span group, sb_span id);
/* The connection is gone: drop its subscriptions and the bus's reference. */
void *sb_bus_op_detach(struct sb_conn *c);
/* Queue `frame` (taken) to `c` in order after what the bus queued before. */
void *sb_bus_op_reply(struct sb_conn *c, sb_frame *frame);

/* True when a receive-queue item is a msg frame (a publication) rather
 * than an op: ops are tagged in their lowest pointer bit. */
static inline bool sb_bus_item_is_frame(const void *item)
{
    return ((uintptr_t)item & 1u) == 0;
}

/* Free an item that was not pushed (frames are unreferenced). */
void sb_bus_item_free(void *item);

/* Register `c` to be woken (sb_conn_wake) once the bus has popped from its
 * queue. Any thread; idempotent until the wake. */
void sb_bus_pause(sb_bus *b, struct sb_conn *c);

/* Wait until the bus has routed everything pushed before this call, or
 * `timeout_ms` passed. Returns 0, -ETIMEDOUT, -ENOMEM or -EPIPE. */
int sb_bus_barrier(sb_bus *b, int timeout_ms);

/* Subscriptions held, all connections together. Any thread. */
uint64_t sb_bus_subscriptions(sb_bus *b);

/* Install the interest observer (see sockbus.h). Any thread. */
void sb_bus_set_observer(sb_bus *b, sb_interest_fn fn, void *ud);

/* The cluster's hook (cluster.h), called on the bus thread for each msg
 * frame published on this node (SB_ROUTE_LOCAL) before it is routed.
 * Returns true when it took a reference to send the frame to the cluster,
 * which then delivers it to queue groups (the bus gives it to plain
 * subscribers only); false to route it here in full. `mark_origin` is
 * true when the publisher has echo off and a local queue group matches:
 * the copy NATS may hand back must then say who published it. Must not
 * block. */
typedef bool (*sb_bus_out_fn)(sb_frame *f, bool mark_origin, void *ud);

/* Install the hook before sb_bus_start(); `ud` must outlive the bus. */
void sb_bus_set_cluster_out(sb_bus *b, sb_bus_out_fn fn, void *ud);

/* One (pattern, group) that subscriptions hold, and how many hold it. */
typedef struct sb_bus_interest {
    const char *pattern; /* NUL-terminated */
    const char *group;   /* NULL for subscriptions outside any group */
    uint64_t holders;
} sb_bus_interest;

/* Ask the bus thread for a copy of its interest table (at most `max`
 * entries, in no order) and wait up to `timeout_ms` for it. The bus makes
 * the copy between two batches and never waits for the caller; a caller
 * that gave up leaves the copy for the bus to free.
 * Returns the number of entries copied, with *out (owned: one free()
 * releases the entries and their strings) and *total (entries in the
 * table); or -ETIMEDOUT, -EBUSY (several requests still unanswered),
 * -ENOMEM or -EPIPE (the bus is stopping). Any thread but the bus's. */
int sb_bus_interest_copy(sb_bus *b,
                         size_t max,
                         int timeout_ms,
                         sb_bus_interest **out,
                         size_t *total);

#endif
