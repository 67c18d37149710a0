/* sockbus-bench-conn.c - see sockbus-bench-conn.h. */
#define _GNU_SOURCE
#include "sockbus-bench-conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The largest frame the bench accepts: 1 MiB sockbus frames and 16 MiB
 * payloads fit with room. */
#define MAX_BUFFER (64u << 20)

int64_t sbb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Milliseconds to wait for `deadline`, rounded up so that a wait never
 * returns just before it; -1 for none. */
static int ms_until(int64_t deadline)
{
    if (deadline == INT64_MAX)
        return -1;
    int64_t left = deadline - sbb_now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > 3600000 ? 3600000 : (int)ms;
}

int sbb_poll(int fd, short events, int stop_fd, int64_t deadline)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = events},
                              {.fd = stop_fd, .events = POLLIN}};
        int n = poll(p, stop_fd >= 0 ? 2 : 1, ms_until(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (stop_fd >= 0 && (p[1].revents & POLLIN))
            return -ECANCELED;
        if (p[0].revents)
            return p[0].revents;
        if (deadline != INT64_MAX && sbb_now_ns() >= deadline)
            return -ETIMEDOUT;
    }
}

/* The socket's pending error after a non-blocking connect. */
static int connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

static int connect_fd(int fd,
                      const struct sockaddr *addr,
                      socklen_t alen,
                      int64_t deadline,
                      int stop_fd)
{
    if (connect(fd, addr, alen) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -errno;
    int rc = sbb_poll(fd, POLLOUT, stop_fd, deadline);
    return rc < 0 ? rc : connect_result(fd);
}

int sbb_conn_open(sbb_conn *c,
                  sbb_proto p,
                  const struct sockaddr *addr,
                  socklen_t alen,
                  size_t cap,
                  int64_t deadline,
                  int stop_fd)
{
    memset(c, 0, sizeof(*c));
    c->proto = p;
    c->fd =
        socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect_fd(c->fd, addr, alen, deadline, stop_fd);
    if (rc == 0) {
        c->cap = cap;
        c->in = malloc(cap);
        if (c->in == NULL)
            rc = -ENOMEM;
    }
    if (rc < 0)
        sbb_conn_close(c);
    return rc;
}

void sbb_conn_close(sbb_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    c->in = NULL;
    c->off = c->len = c->cap = 0;
}

ssize_t sbb_conn_send_some(sbb_conn *c, const void *buf, size_t n)
{
    for (;;) {
        ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -errno;
    }
}

int sbb_conn_send_all(
    sbb_conn *c, const void *buf, size_t n, int64_t deadline, int stop_fd)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = sbb_conn_send_some(c, p, n);
        if (w < 0)
            return (int)w;
        p += w;
        n -= (size_t)w;
        if (n == 0)
            break;
        int rc = sbb_poll(c->fd, POLLOUT, stop_fd, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Makes room for at least a quarter of the buffer: first by moving the
 * unparsed bytes to the front, then (a frame larger than the buffer) by
 * doubling it. */
static int make_room(sbb_conn *c)
{
    if (c->off > 0 && c->cap - c->len < c->cap / 4) {
        memmove(c->in, c->in + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->cap - c->len >= c->cap / 4)
        return 0;
    if (c->cap >= MAX_BUFFER)
        return -ENOBUFS;
    char *in = realloc(c->in, c->cap * 2);
    if (in == NULL)
        return -ENOMEM;
    c->in = in;
    c->cap *= 2;
    return 0;
}

ssize_t sbb_conn_fill(sbb_conn *c)
{
    if (c->off == c->len)
        c->off = c->len = 0;
    int rc = make_room(c);
    if (rc < 0)
        return rc;
    for (;;) {
        size_t room = c->cap - c->len;
        ssize_t r = recv(c->fd, c->in + c->len, room, MSG_DONTWAIT);
        if (r > 0) {
            c->len += (size_t)r;
            c->drained = (size_t)r < room;
            return r;
        }
        if (r == 0) {
            c->eof = true;
            return -EPIPE;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -EAGAIN;
        return -errno;
    }
}

int sbb_conn_next(sbb_conn *c, sbb_ev *ev)
{
    ssize_t n = sbb_proto_next(c->proto, c->in + c->off, c->len - c->off, ev);
    if (n <= 0)
        return (int)n;
    c->off += (size_t)n;
    return 1;
}

int sbb_conn_wait_event(sbb_conn *c, sbb_ev *ev, int64_t deadline, int stop_fd)
{
    for (;;) {
        int rc = sbb_conn_next(c, ev);
        if (rc != 0)
            return rc > 0 ? 0 : rc;
        ssize_t r = sbb_conn_fill(c);
        if (r > 0)
            continue;
        if (r != -EAGAIN)
            return (int)r;
        rc = sbb_poll(c->fd, POLLIN, stop_fd, deadline);
        if (rc < 0)
            return rc;
    }
}

int sbb_conn_wait_ready(sbb_conn *c,
                        bool greeting,
                        int64_t deadline,
                        int stop_fd,
                        char *why,
                        size_t whylen)
{
    const char *pong = sbb_proto_pong(c->proto);
    for (bool first = true;; first = false) {
        sbb_ev ev;
        int rc = sbb_conn_wait_event(c, &ev, deadline, stop_fd);
        if (rc == -EBADMSG)
            snprintf(why, whylen, "unexpected data from the server: %s",
                     ev.text);
        if (rc < 0)
            return rc;
        if (ev.kind == SBB_EV_ERR) {
            snprintf(why, whylen, "server error: %s", ev.text);
            return -EPROTO;
        }
        if (first && greeting && ev.kind != SBB_EV_INFO) {
            snprintf(why, whylen, "no %s greeting from the server",
                     sbb_proto_name(c->proto));
            return -EPROTO;
        }
        if (ev.kind == SBB_EV_PING && pong != NULL)
            rc = sbb_conn_send_all(c, pong, strlen(pong), deadline, stop_fd);
        if (rc < 0)
            return rc;
        if (ev.kind == SBB_EV_READY)
            return 0;
    }
}

void sbb_conn_strerror(int rc, char *buf, size_t len)
{
    char tmp[128];
    switch (rc) {
    case -EPIPE:
        snprintf(buf, len, "the server closed the connection");
        break;
    case -ETIMEDOUT:
        snprintf(buf, len, "timed out");
        break;
    case -ECANCELED:
        snprintf(buf, len, "stopped");
        break;
    case -ENOBUFS:
        snprintf(buf, len, "a frame from the server is too large");
        break;
    default:
        snprintf(buf, len, "%s", strerror_r(-rc, tmp, sizeof(tmp)));
        break;
    }
}
