/* cluster.h - several sockbusd nodes share one bus through a NATS cluster.
 *
 * With --cluster, each node connects to NATS with the NATS C client
 * (libnats) and NATS carries publications between nodes. sockbus topic T
 * is NATS subject PREFIX.T, the NATS payload is the `data` JSON text, and
 * a reply topic maps the same way (see docs/CLUSTER.md).
 *
 * - Interest: the bus's interest observer reports each (pattern, group)
 *   that local subscriptions start or stop holding; the cluster thread
 *   mirrors exactly those on NATS. Plain patterns are queue subscriptions
 *   in a queue group of this node alone, on a connection without echo:
 *   NATS then sends the node one copy of a message however many of its
 *   patterns match, and never one of its own publications. Group
 *   patterns are queue subscriptions in the group itself, on a second
 *   connection with echo, so NATS picks one member cluster-wide, this
 *   node's included.
 * - Out: while both connections are up, the bus hands each local
 *   publication to sb_cluster__out(), which queues a reference in a
 *   bounded queue (full: dropped and counted); the I/O thread sends
 *   them (the NATS copy names its publisher only when the bus says a
 *   local queue group may get it back while the publisher has echo off).
 *   Otherwise the bus routes the publication locally in full.
 * - In: messages from NATS are checked (topic, JSON, size), built into
 *   msg frames routed to plain subscribers only, or to one member of one
 *   group, and pushed into the bus's receive queue like socket input.
 *
 * Threads: sb_cluster_new/start/stop/free on the server's thread;
 * sb_cluster__out() on the bus thread; sb_cluster_stats() on any thread.
 * The module's own threads are described at the top of cluster.c. */
#ifndef SB_CLUSTER_H
#define SB_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "frame.h"
#include "msg.h"

struct sb_server;
typedef struct sb_cluster sb_cluster;

/* Create the cluster link of `srv` (srv->cfg.cluster is not empty, and
 * srv->bus exists): options for both NATS connections, the out queue.
 * Nothing connects yet. Returns owned (sb_cluster_free()), or NULL with a
 * one-line reason in `err`. */
sb_cluster *sb_cluster_new(struct sb_server *srv, char *err, size_t errlen);

/* Start the cluster threads and register the interest observer. The
 * threads connect in the background and retry forever, so this does not
 * fail when NATS is down. Returns 0 or a negative errno. */
int sb_cluster_start(sb_cluster *cl);

/* The bus's hook (sb_bus_out_fn): take `f` for NATS when connected.
 * Bus thread only. */
bool sb_cluster__out(sb_frame *f, bool mark_origin, void *ud);

/* Send what is queued for NATS (waiting at most `timeout_ms`), then close
 * both NATS connections and join the threads: no message arrives from
 * NATS after this, and sb_cluster__out() refuses every frame. Idempotent;
 * accepts NULL. */
void sb_cluster_stop(sb_cluster *cl, int timeout_ms);

/* Free the cluster, once the bus (which calls the hook and the observer)
 * has stopped. Accepts NULL. */
void sb_cluster_free(sb_cluster *cl);

/* A snapshot of the state and counters. Any thread. */
void sb_cluster_get_stats(sb_cluster *cl, sb_cluster_stats *out);

#endif
