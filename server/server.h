/* server.h - the server's shared state, for the modules inside server/.
 *
 * Programs embedding sockbus use sockbus.h; this header is internal to the
 * acceptor (server.c), the connection workers (conn.c) and the bus (bus.c).
 *
 * Threads and locks:
 * - `cfg`, `listen_fd`, `address`, `bus`, `cluster`, `node`, `http`,
 *   `reaper`, `start_ms` are written before any thread starts and only
 *   read afterwards.
 * - `lock` guards the connection registry (`conns`, `nconns`, `nquiesced`)
 *   and the in-process subscriptions (`subs`); `cond` signals registry
 *   changes to sb_server_stop().
 * - `state` and the counters are atomics, written by any thread.
 * - `cfg` is the configuration at start. What a reload may change (see
 *   sb_config_reloadable()) is read instead from `live`, whose snapshots
 *   are immutable: each connection keeps the one it took (sb_conn.cfg).
 * Lock order: server lock, then a queue's lock (never the reverse). */
#ifndef SB_SERVER_H
#define SB_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "sockbus.h"
#include "thread.h"

struct sb_bus;
struct sb_cluster;
struct sb_conn;
struct sb_http;
struct sb_live;

typedef enum sb_server_state {
    SB_RUNNING = 0,
    SB_DRAINING = 1, /* not accepting, not reading; routing what was read */
    SB_DRAINED = 2,  /* everything read was routed; flush and close */
    SB_CLOSING = 3,  /* drain time is over: close at once */
} sb_server_state;

typedef struct sb_counters {
    atomic_uint_fast64_t msgs_in;
    atomic_uint_fast64_t msgs_out;
    atomic_uint_fast64_t bytes_in;
    atomic_uint_fast64_t bytes_out;
    atomic_uint_fast64_t dropped;
    atomic_uint_fast64_t slow_consumers;
    atomic_uint_fast64_t total_conns;
} sb_counters;

struct sb_server {
    sb_config cfg;
    struct sb_live *live; /* reloadable settings for new connections */
    int listen_fd;
    int accept_wake; /* eventfd: wakes the acceptor */
    int reserve_fd;  /* /dev/null, given up to refuse clients at EMFILE */
    char address[300];
    uint16_t port;
    pthread_t acceptor;
    bool acceptor_started;
    struct sb_bus *bus;
    struct sb_cluster *cluster; /* NULL without --cluster */
    char node[256];             /* node name, empty when none */
    struct sb_http *http;       /* monitoring endpoint, NULL when off */
    sb_reaper *reaper;
    uint64_t start_ms;
    uint64_t drain_deadline_ms; /* written before state leaves RUNNING */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct sb_conn *conns;        /* registry, a doubly linked list */
    size_t nconns;                /* socket connections registered */
    size_t nquiesced;             /* of those, done reading at shutdown */
    struct sb_subscription *subs; /* in-process subscriptions */

    atomic_int state;           /* sb_server_state */
    atomic_bool accept_starved; /* out of descriptors: wake on a close */
    atomic_uint_fast64_t next_id;
    sb_counters ctr;
};

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t sb_now_ms(void);

/* Registry, called by connection threads. */
void sb_server__register(sb_server *s, struct sb_conn *c);
void sb_server__unregister(sb_server *s, struct sb_conn *c);
void sb_server__quiesced(sb_server *s, struct sb_conn *c);
/* A socket was closed: wake the acceptor if it waits for descriptors. */
void sb_server__fd_released(sb_server *s);

#endif
