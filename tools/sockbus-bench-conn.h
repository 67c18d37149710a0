/* sockbus-bench-conn.h - one client connection of the load tool.
 *
 * A non-blocking TCP socket and a receive buffer that the protocol parser
 * reads events from. Every wait is bounded twice: by an absolute deadline
 * (CLOCK_MONOTONIC ns) and by a "stop" eventfd that the main thread writes
 * once to make every wait of every thread return at once.
 *
 * Errors are negative errno values: -ETIMEDOUT (the deadline passed),
 * -ECANCELED (stop was written), -EPIPE (the server closed the connection),
 * -ECONNRESET and the like (it reset it), -EBADMSG (it sent bytes that are
 * not the protocol), -ENOBUFS (a frame larger than the buffer may grow).
 *
 * Threads: a connection belongs to one thread at a time. */
#ifndef SBB_BENCH_CONN_H
#define SBB_BENCH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "sockbus-bench-proto.h"

/* CLOCK_MONOTONIC in nanoseconds (the clock of the payload stamps). */
int64_t sbb_now_ns(void);

/* Waits until `fd` has one of `events` or stop_fd (-1: none) is readable.
 * Returns the revents of fd (> 0), -ETIMEDOUT or -ECANCELED. A deadline of
 * INT64_MAX waits without a time limit. */
int sbb_poll(int fd, short events, int stop_fd, int64_t deadline);

typedef struct sbb_conn {
    int fd;
    sbb_proto proto;
    char *in; /* received bytes not parsed yet are in[off..len) */
    size_t off, len, cap;
    bool eof;     /* the server closed its side */
    bool drained; /* the last fill took less than it had room for: the
                     socket is most likely empty, wait before reading */
} sbb_conn;

/* Connects to `addr` (borrowed) within the deadline, with TCP_NODELAY and
 * a receive buffer of `cap` bytes to start with. Returns 0 or a negative
 * errno (-ECONNREFUSED when no server listens). */
int sbb_conn_open(sbb_conn *c,
                  sbb_proto p,
                  const struct sockaddr *addr,
                  socklen_t alen,
                  size_t cap,
                  int64_t deadline,
                  int stop_fd);

/* Closes the socket and frees the buffer. Safe to call twice. */
void sbb_conn_close(sbb_conn *c);

/* Writes all of buf[0..n). Returns 0 or a negative errno. */
int sbb_conn_send_all(
    sbb_conn *c, const void *buf, size_t n, int64_t deadline, int stop_fd);

/* Writes what the socket takes now. Returns the bytes written (maybe 0)
 * or a negative errno. */
ssize_t sbb_conn_send_some(sbb_conn *c, const void *buf, size_t n);

/* One recv() of what has arrived. Returns the bytes (> 0), -EAGAIN when
 * there are none, -EPIPE at end of stream, or another negative errno. */
ssize_t sbb_conn_fill(sbb_conn *c);

/* The next complete event in the buffer. Returns 1 (*ev set; a MSG's data
 * is valid until the next fill), 0 when more bytes are needed, or
 * -EBADMSG. */
int sbb_conn_next(sbb_conn *c, sbb_ev *ev);

/* The next event, receiving and waiting as needed. Returns 0 or a negative
 * errno. */
int sbb_conn_wait_event(sbb_conn *c, sbb_ev *ev, int64_t deadline, int stop_fd);

/* Reads events until SBB_EV_READY, answering pings and skipping the rest.
 * An error event fails with -EPROTO and its text in `why`; so does a first
 * event that is not the greeting, for protocols that have one. Returns 0
 * or a negative errno. */
int sbb_conn_wait_ready(sbb_conn *c,
                        bool greeting,
                        int64_t deadline,
                        int stop_fd,
                        char *why,
                        size_t whylen);

/* A line saying what went wrong (`rc` from a function above). */
void sbb_conn_strerror(int rc, char *buf, size_t len);

#endif
