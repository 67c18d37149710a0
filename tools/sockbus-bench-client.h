/* sockbus-bench-client.h - the publisher, subscriber and idle-connection
 * threads, and the state they share with the main thread (internal to
 * sockbus-bench-run.c and sockbus-bench-client.c).
 *
 * Who touches what:
 * - The main thread writes `sbb_shared` before any worker starts, except
 *   the atomics, and writes `stop_fd` (once, at the end) and `go_fd`
 *   (once, to start the publishers).
 * - A worker owns its `sbb_worker` but for `count`, which the main thread
 *   reads for the progress line; the main thread reads `st` and `hist`
 *   only after joining it.
 * - Workers write `wake_fd` whenever the main thread has something to look
 *   at (a client ready, failed or finished, every delivery in).
 * No locks: counters are atomics, and every hand-over is a thread join. */
#ifndef SBB_BENCH_CLIENT_H
#define SBB_BENCH_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sockbus-bench-conn.h"
#include "sockbus-bench-hist.h"
#include "sockbus-bench-run.h"

typedef struct sbb_shared {
    const sbb_opts *o;
    struct sockaddr_storage addr;
    socklen_t alen;
    struct sockaddr_storage sub_addr; /* subscribers connect here */
    socklen_t sub_alen;
    int stop_fd; /* eventfd: readable once every wait must end */
    int go_fd;   /* eventfd: readable once the publishers may start */
    int wake_fd; /* eventfd: workers wake the main thread */
    int64_t timeout_ns;
    _Atomic int64_t t0;         /* publishers' start, set before go_fd */
    _Atomic bool stopping;      /* set just before stop_fd is written */
    _Atomic unsigned ready;     /* clients set up */
    _Atomic unsigned failed;    /* clients that failed to set up */
    _Atomic unsigned pubs_done; /* publishers finished, well or not */
    _Atomic unsigned subs_done; /* subscribers finished, well or not */
    _Atomic uint64_t delivered; /* received by all subscribers so far */
    _Atomic uint64_t accounted; /* delivered, or reported dropped by the
                                   server: nothing more to wait for */
    _Atomic uint64_t expected;  /* due in total; UINT64_MAX until known */
    _Atomic uint64_t per_sub;   /* due to each subscriber outside a group;
                                   UINT64_MAX until known */
} sbb_shared;

typedef struct sbb_worker {
    sbb_shared *sh;
    unsigned id;
    pthread_t thread;
    bool started;
    _Atomic uint64_t count; /* published or received so far */
    sbb_client_stats st;
    sbb_hist *hist;     /* subscriber: latency in ns */
    uint32_t *next_seq; /* subscriber: per publisher, last seq + 1 */
    sbb_conn conn;
} sbb_worker;

typedef struct sbb_idle {
    sbb_shared *sh;
    sbb_conn *conns; /* n of them, set up by the main thread */
    unsigned n;
    _Atomic unsigned closed; /* closed by the server */
    pthread_t thread;
    bool started;
} sbb_idle;

/* Connects `c` and sets it up as client `role` `id`: authenticated, and
 * subscribed to `topic` in `group` when not NULL. Waits until the server
 * has acknowledged all of it, within --timeout. Returns 0, or -1 with a
 * line in `err`. Any thread. */
int sbb__client_open(sbb_shared *sh,
                     sbb_conn *c,
                     const char *role,
                     unsigned id,
                     const char *topic,
                     const char *group,
                     size_t cap,
                     char *err,
                     size_t errlen);

/* Thread bodies; `arg` is an sbb_worker (sbb_idle for the last one). */
void *sbb__pub_main(void *arg);
void *sbb__sub_main(void *arg);
void *sbb__idle_main(void *arg);

/* Makes `fd` (an eventfd) readable; wakes every poll on it. */
void sbb__signal(int fd);

#endif
