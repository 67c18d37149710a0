/* conn.h - one client connection and its worker thread.
 *
 * Each accepted socket gets an sb_conn and a thread of its own (the
 * worker). The worker alone reads and writes the socket and closes it. It
 * receives with MSG_DONTWAIT into the framer, turns publications into msg
 * frames and pushes them, with subscription changes, into the bus's
 * receive queue; and it sends whatever its bounded send queue holds, many
 * frames per sendmsg. It sleeps in poll() on the socket and the send
 * queue's eventfd. In-process subscriptions are connections without a
 * socket, whose thread calls a callback instead of sending.
 *
 * Threads: see the comment at the top of conn.c for which thread touches
 * which field. */
#ifndef SB_CONN_H
#define SB_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "framer.h"
#include "frame.h"
#include "io.h"
#include "msg.h"
#include "queue.h"
#include "server.h"

/* Reasons a connection closes, beyond the protocol's error codes. */
enum {
    SB_CLOSE_EOF = 100, /* the peer closed */
    SB_CLOSE_IO,        /* a socket error (reset, ...) */
    SB_CLOSE_NOMEM,     /* out of memory for this connection */
    SB_CLOSE_UNSUB,     /* an in-process subscription ended */
};

#define SB_CONN_OUT_MAX 256 /* frames gathered into one sendmsg */
#define SB_CONN_HELD_MAX 64 /* outputs waiting for queue room */
#define SB_CONN_PEND_MAX 64 /* frames the bus batches per connection */

/* One output of a handled frame, waiting to be queued in order. */
typedef struct sb_held {
    void *item; /* a bus item (tagged op or msg frame) or a reply frame */
    uint32_t bytes;
    bool to_bus; /* true: the bus's queue; false: our send queue */
} sb_held;

typedef struct sb_conn {
    atomic_uint refs;
    uint64_t id;
    sb_server *srv;
    const sb_config *cfg; /* limits taken at creation (live.h), read-only */
    sb_queue *sendq;
    bool inproc;
    char peer[64];

    /* Written by any thread. */
    atomic_int close_reason;              /* 0 while open */
    atomic_bool echo;                     /* worker writes, bus reads */
    atomic_uint_fast64_t dropped_pending; /* drop policy: not yet told */
    atomic_uint outstanding;              /* sub/unsub the bus has not done */

    /* Monitoring (/connz, /metrics): each counter has one writer (the
     * worker; the bus for `dropped` and `nsubs`) and is read by any thread
     * with relaxed loads. `created_ms` is written before the connection is
     * registered and never again. */
    uint64_t created_ms;
    atomic_uint_fast64_t last_rx_ms; /* when the last frame arrived */
    atomic_uint_fast64_t msgs_in;    /* publications handed to the bus */
    atomic_uint_fast64_t msgs_out;   /* msg frames written */
    atomic_uint_fast64_t bytes_in;
    atomic_uint_fast64_t bytes_out;
    atomic_uint_fast64_t dropped; /* frames lost to a full send queue */
    atomic_size_t nsubs;          /* copy of bus_nsubs */

    /* Server registry (server lock). */
    struct sb_conn *reg_prev, *reg_next;
    bool quiesced;

    /* Bus thread only. */
    uint64_t bus_stamp; /* last publication delivered here */
    size_t bus_nsubs;
    struct bus_sub *bus_subs; /* this connection's subscriptions */
    sb_frame *bus_pend[SB_CONN_PEND_MAX];
    size_t bus_npend;
    struct sb_conn *bus_dirty_next;
    bool bus_dirty;
    bool bus_detached;
    struct sb_conn *pause_next;    /* bus pause list (bus pause lock) */
    struct sb_conn *bus_wake_next; /* being woken (bus thread only) */
    bool pause_listed;             /* bus pause lock */

    /* Worker only. */
    sb_io io;
    sb_framer framer;
    sb_frame *out[SB_CONN_OUT_MAX];
    unsigned out_n;
    size_t out_off; /* bytes of out[0] already sent */
    sb_held held[SB_CONN_HELD_MAX];
    unsigned held_head, held_n;
    uint64_t linger_deadline_ms; /* closing: give up flushing then */
    bool pinged;
    bool authed;
    bool rd_closed; /* no more reading: EOF, error, closing or draining */
    bool paused;    /* waiting for room in the bus's queue */
    unsigned auth_strikes;
    int io_errno;
    char name[SB_NAME_MAX + 1]; /* written and read elsewhere under the
                                   server lock */

    /* In-process subscriptions only. */
    struct sb_subscription *sub;
} sb_conn;

/* Create a connection for the accepted non-blocking socket `fd` (taken on
 * success). Returns owned (one reference, the worker's once started), or
 * NULL on ENOMEM. */
sb_conn *sb_conn_new(sb_server *srv, int fd, const char *peer);

/* Register `c` and start its worker thread. On failure (-EAGAIN: no thread)
 * the connection is unregistered and freed and the caller still owns the
 * socket's fate: it is left open for the caller to refuse and close. */
int sb_conn_start(sb_conn *c);

/* Create an in-process connection (no socket) for a subscription. */
sb_conn *sb_conn_new_inproc(sb_server *srv, struct sb_subscription *sub);

sb_conn *sb_conn_ref(sb_conn *c);
/* Drop a reference; the last frees the connection and its queue. */
void sb_conn_unref(sb_conn *c);

/* Ask the worker to close with `reason` (the first reason wins) and wake
 * it. Any thread. Returns true when this call set the reason. */
bool sb_conn_request_close(sb_conn *c, int reason);

/* Wake the worker (any thread). */
void sb_conn_wake(sb_conn *c);

/* A short name for a close reason, for logs. */
const char *sb_conn_reason_str(int reason);

/* True when `a` and `b` hold the same token, in time independent of where
 * they differ. */
bool sb_conn__token_equal(const char *a, size_t an, const char *b, size_t bn);

#endif
