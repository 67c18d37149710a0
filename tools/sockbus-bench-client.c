/* sockbus-bench-client.c - publisher, subscriber and idle-connection
 * threads. See sockbus-bench-client.h for who touches what.
 *
 * A publisher keeps `per_batch` copies of its publication frame in one
 * buffer of about 64 KiB; for each batch it only rewrites the 32-byte
 * payload headers and writes the buffer at once, reading whatever the
 * server sends between writes (pings, errors, Redis's PUBLISH replies), so
 * neither side can block the other. A subscriber reads up to 1 MiB per
 * recv(), stamps the arrival once per read and parses every message in
 * it. */
#define _GNU_SOURCE
#include "sockbus-bench-client.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define OUT_BYTES (64 * 1024) /* a publisher's batch */
#define PUB_IN_CAP (64 * 1024)
#define SUB_IN_CAP (1024 * 1024)
#define MAX_SLEEP_NS 100000000 /* re-check for stop at least this often */

void sbb__signal(int fd)
{
    uint64_t one = 1;
    ssize_t w;
    do {
        w = write(fd, &one, sizeof(one));
    } while (w < 0 && errno == EINTR);
}

int sbb__client_open(sbb_shared *sh,
                     sbb_conn *c,
                     const char *role,
                     unsigned id,
                     const char *topic,
                     const char *group,
                     size_t cap,
                     char *err,
                     size_t errlen)
{
    const sbb_opts *o = sh->o;
    char name[64], req[8192], why[300] = "";
    snprintf(name, sizeof(name), "sockbus-bench %s %u", role, id);
    sbb_setup s = {.name = name,
                   .token = o->token[0] ? o->token : NULL,
                   .topic = topic,
                   .group = group};
    ssize_t n = sbb_proto_setup(o->proto, &s, req, sizeof(req));
    if (n < 0) {
        snprintf(err, errlen, "cannot build the setup request");
        return -1;
    }
    int64_t deadline = sbb_now_ns() + sh->timeout_ns;
    bool sub = strcmp(role, "subscriber") == 0;
    int rc = sbb_conn_open(
        c, o->proto, (const struct sockaddr *)(sub ? &sh->sub_addr : &sh->addr),
        sub ? sh->sub_alen : sh->alen, cap, deadline, sh->stop_fd);
    if (rc < 0) {
        sbb_conn_strerror(rc, why, sizeof(why));
        snprintf(err, errlen, "cannot connect to %s:%s: %s", o->host, o->port,
                 why);
        return -1;
    }
    rc = sbb_conn_send_all(c, req, (size_t)n, deadline, sh->stop_fd);
    if (rc == 0)
        rc = sbb_conn_wait_ready(c, o->proto != SBB_PROTO_REDIS, deadline,
                                 sh->stop_fd, why, sizeof(why));
    if (rc == 0)
        return 0;
    if (why[0] == '\0')
        sbb_conn_strerror(rc, why, sizeof(why));
    snprintf(err, errlen, "setting up: %s", why);
    sbb_conn_close(c);
    return -1;
}

/* Records why a client ended early (the first reason wins). */
static void set_error(sbb_worker *w, int rc, const char *what)
{
    if (w->st.error[0] != '\0' || rc == -ECANCELED)
        return;
    char why[128];
    sbb_conn_strerror(rc, why, sizeof(why));
    snprintf(w->st.error, sizeof(w->st.error), "%s: %s", what, why);
}

/* ---- publisher --------------------------------------------------------- */

typedef struct publisher {
    sbb_worker *w;
    sbb_shared *sh;
    sbb_conn *c;
    char *out; /* per_batch copies of the publication frame */
    size_t frame_len, payload_off, per_batch;
    size_t pend_off, pend_len; /* out[pend_off..pend_len) to write */
    uint64_t quota, sent;      /* sent: stamped into out */
    double rate;               /* this publisher's msgs/s; 0: flat out */
    int64_t t0, stop_at;       /* stop_at: --duration's end */
    int64_t stall;             /* no byte taken by then: give up */
    int64_t next_read;         /* paced: look for server data then */
    bool pong_due;
} publisher;

static int pub_init(publisher *p, sbb_worker *w)
{
    const sbb_opts *o = w->sh->o;
    p->w = w;
    p->sh = w->sh;
    p->c = &w->conn;
    char *f = sbb_proto_pub_frame(o->proto, o->topic, o->size, &p->frame_len,
                                  &p->payload_off);
    if (f == NULL)
        return -ENOMEM;
    p->per_batch = p->frame_len >= OUT_BYTES ? 1 : OUT_BYTES / p->frame_len;
    p->out = malloc(p->per_batch * p->frame_len);
    if (p->out == NULL) {
        free(f);
        return -ENOMEM;
    }
    for (size_t i = 0; i < p->per_batch; i++)
        memcpy(p->out + i * p->frame_len, f, p->frame_len);
    free(f);
    uint64_t share = o->msgs / o->pubs + (w->id < o->msgs % o->pubs ? 1 : 0);
    p->quota = o->duration_s > 0 ? UINT64_MAX : share;
    p->rate = o->rate / o->pubs;
    return 0;
}

static void pub_event(publisher *p, const sbb_ev *ev)
{
    if (ev->kind == SBB_EV_PING) {
        p->pong_due = sbb_proto_pong(p->c->proto) != NULL;
    } else if (ev->kind == SBB_EV_ERR) {
        p->w->st.errors++;
        if (p->w->st.error[0] == '\0')
            snprintf(p->w->st.error, sizeof(p->w->st.error), "server error: %s",
                     ev->text);
    }
}

/* Handles everything the server has sent so far, without waiting. */
static int pub_read(publisher *p)
{
    for (;;) {
        sbb_ev ev;
        int rc;
        while ((rc = sbb_conn_next(p->c, &ev)) > 0)
            pub_event(p, &ev);
        if (rc < 0)
            return rc;
        ssize_t r = sbb_conn_fill(p->c);
        if (r == -EAGAIN)
            return 0;
        if (r < 0)
            return (int)r;
    }
}

/* Writes the pending batch, reading while the socket is full. */
static int pub_write(publisher *p)
{
    while (p->pend_off < p->pend_len) {
        ssize_t w = sbb_conn_send_some(p->c, p->out + p->pend_off,
                                       p->pend_len - p->pend_off);
        if (w < 0)
            return (int)w;
        if (w > 0) {
            p->pend_off += (size_t)w;
            p->stall = sbb_now_ns() + p->sh->timeout_ns;
            continue;
        }
        int rc = sbb_poll(p->c->fd, POLLIN | POLLOUT, p->sh->stop_fd, p->stall);
        if (rc < 0)
            return rc;
        if (rc & (POLLIN | POLLHUP | POLLERR))
            rc = pub_read(p);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int pub_pong(publisher *p)
{
    const char *pong = sbb_proto_pong(p->c->proto);
    p->pong_due = false;
    return sbb_conn_send_all(p->c, pong, strlen(pong),
                             sbb_now_ns() + p->sh->timeout_ns, p->sh->stop_fd);
}

/* How many messages to stamp now: a full batch flat out; with --rate,
 * those whose time has come (at most a batch). */
static size_t pub_due(const publisher *p, int64_t now)
{
    uint64_t left = p->quota - p->sent;
    if (p->rate <= 0)
        return left < p->per_batch ? (size_t)left : p->per_batch;
    double due = floor((double)(now - p->t0) * p->rate / 1e9) + 1;
    if (due <= (double)p->sent)
        return 0;
    double n = due - (double)p->sent;
    if (n > (double)left)
        n = (double)left;
    return n > (double)p->per_batch ? p->per_batch : (size_t)n;
}

/* Sleeps until the next message is due: clock_nanosleep to an absolute
 * deadline, so that oversleeping one batch does not shift the ones after
 * it (they are simply sent sooner). */
static void pub_sleep(const publisher *p, int64_t now)
{
    int64_t next = p->t0 + (int64_t)ceil((double)p->sent * 1e9 / p->rate);
    if (next > now + MAX_SLEEP_NS)
        next = now + MAX_SLEEP_NS;
    if (next > p->stop_at)
        next = p->stop_at;
    struct timespec ts = {.tv_sec = next / 1000000000,
                          .tv_nsec = next % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Stamps n messages into the batch buffer, all with the same time: they
 * leave in one write. */
static void pub_stamp(publisher *p, size_t n)
{
    uint64_t now = (uint64_t)sbb_now_ns();
    for (size_t i = 0; i < n; i++)
        sbb_payload_stamp(p->out + i * p->frame_len + p->payload_off, now,
                          p->w->id, (uint32_t)(p->sent + i));
    p->pend_off = 0;
    p->pend_len = n * p->frame_len;
    p->sent += n;
    atomic_store_explicit(&p->w->count, p->sent, memory_order_relaxed);
}

static int pub_loop(publisher *p)
{
    for (;;) {
        int rc = pub_write(p);
        if (rc == 0 && p->pong_due)
            rc = pub_pong(p);
        int64_t now = sbb_now_ns();
        /* Flat out, one recv() per 64 KiB batch is nothing; paced, one per
         * message would be most of the tool's CPU: then look at most once
         * a millisecond (pings and Redis replies can wait that long). */
        if (rc == 0 && now >= p->next_read) {
            rc = pub_read(p);
            p->next_read = p->rate > 0 ? now + 1000000 : 0;
        }
        if (rc < 0)
            return rc;
        if (p->sent >= p->quota || now >= p->stop_at)
            return 0;
        if (atomic_load_explicit(&p->sh->stopping, memory_order_relaxed))
            return -ECANCELED;
        size_t n = pub_due(p, now);
        if (n == 0)
            pub_sleep(p, now);
        else
            pub_stamp(p, n);
    }
}

/* Sends the barrier and waits for its answer: then the server has read
 * (sockbus, NATS) or executed (Redis) every publication. */
static int pub_flush(publisher *p)
{
    const char *b = sbb_proto_barrier(p->c->proto);
    int64_t deadline = sbb_now_ns() + p->sh->timeout_ns;
    int rc = sbb_conn_send_all(p->c, b, strlen(b), deadline, p->sh->stop_fd);
    while (rc == 0) {
        sbb_ev ev;
        rc = sbb_conn_wait_event(p->c, &ev, deadline, p->sh->stop_fd);
        if (rc == 0 && ev.kind == SBB_EV_READY)
            return 0;
        if (rc == 0)
            pub_event(p, &ev);
        if (rc == 0 && p->pong_due)
            rc = pub_pong(p);
    }
    return rc;
}

/* Waits for the main thread's go (or stop). */
static int pub_wait_go(publisher *p)
{
    /* A safety net only: the main thread writes go or stop within
     * --timeout of every client being set up. */
    int64_t deadline = sbb_now_ns() + 4 * p->sh->timeout_ns;
    int rc = sbb_poll(p->sh->go_fd, POLLIN, p->sh->stop_fd, deadline);
    if (rc < 0)
        return rc;
    p->t0 = atomic_load(&p->sh->t0);
    const sbb_opts *o = p->sh->o;
    p->stop_at =
        o->duration_s > 0 ? p->t0 + (int64_t)(o->duration_s * 1e9) : INT64_MAX;
    p->stall = p->t0 + p->sh->timeout_ns;
    return 0;
}

static void pub_run(publisher *p)
{
    sbb_worker *w = p->w;
    int rc = pub_wait_go(p);
    if (rc == 0)
        rc = pub_loop(p);
    /* Frames stamped but not written were not published. */
    uint64_t unsent =
        (p->pend_len - p->pend_off + p->frame_len - 1) / p->frame_len;
    w->st.msgs = p->sent - unsent;
    if (rc < 0) {
        set_error(w, rc,
                  rc == -ETIMEDOUT ? "publishing (no data taken)"
                                   : "publishing");
        return;
    }
    rc = pub_flush(p);
    if (rc < 0)
        set_error(w, rc, "waiting for the flush");
}

void *sbb__pub_main(void *arg)
{
    sbb_worker *w = arg;
    sbb_shared *sh = w->sh;
    publisher p = {0};
    if (sh->o->rate > 0)
        prctl(PR_SET_TIMERSLACK, 1000UL); /* pace to within a microsecond */
    if (pub_init(&p, w) < 0 ||
        sbb__client_open(sh, &w->conn, "publisher", w->id, NULL, NULL,
                         PUB_IN_CAP, w->st.error, sizeof(w->st.error)) < 0) {
        if (w->st.error[0] == '\0')
            snprintf(w->st.error, sizeof(w->st.error), "out of memory");
        atomic_fetch_add(&sh->failed, 1);
    } else {
        atomic_fetch_add(&sh->ready, 1);
        sbb__signal(sh->wake_fd);
        pub_run(&p);
    }
    w->st.end_ns = sbb_now_ns();
    sbb_conn_close(&w->conn);
    free(p.out);
    atomic_fetch_add(&sh->pubs_done, 1);
    sbb__signal(sh->wake_fd);
    return NULL;
}

/* ---- subscriber -------------------------------------------------------- */

static void sub_msg(sbb_worker *w, const sbb_ev *ev, int64_t now)
{
    const sbb_opts *o = w->sh->o;
    uint64_t sent;
    uint32_t pub, seq;
    if (ev->len != o->size ||
        sbb_payload_read(ev->data, ev->len, &sent, &pub, &seq) < 0 ||
        pub >= o->pubs) {
        w->st.bad++;
        return;
    }
    sbb_hist_record(w->hist, (uint64_t)now > sent ? (uint64_t)now - sent : 0);
    /* One publisher's messages reach a subscriber in order, so a sequence
     * number not above the last one seen is a reordering (or duplicate);
     * one further ahead only means that some were lost or went to another
     * member of the group. */
    if (seq < w->next_seq[pub])
        w->st.out_of_order++;
    else
        w->next_seq[pub] = seq + 1;
    w->st.msgs++;
}

static int sub_event(sbb_worker *w, const sbb_ev *ev, int64_t now)
{
    const char *pong = sbb_proto_pong(w->conn.proto);
    switch (ev->kind) {
    case SBB_EV_MSG:
        sub_msg(w, ev, now);
        return 0;
    case SBB_EV_PING:
        if (pong == NULL)
            return 0;
        return sbb_conn_send_all(&w->conn, pong, strlen(pong),
                                 now + w->sh->timeout_ns, w->sh->stop_fd);
    case SBB_EV_ERR:
        w->st.dropped += ev->dropped;
        if (ev->dropped == 0) {
            w->st.errors++;
            snprintf(w->st.error, sizeof(w->st.error), "server error: %s",
                     ev->text);
        }
        return 0;
    default:
        return 0;
    }
}

/* Parses every complete event received, then publishes the count. */
static int sub_drain(sbb_worker *w, int64_t now, bool *total_reached)
{
    uint64_t before = w->st.msgs, dropped = w->st.dropped;
    sbb_ev ev;
    int rc;
    while ((rc = sbb_conn_next(&w->conn, &ev)) > 0)
        if ((rc = sub_event(w, &ev, now)) < 0)
            return rc;
    uint64_t got = w->st.msgs - before;
    uint64_t done = got + w->st.dropped - dropped;
    if (got > 0) {
        w->st.end_ns = now;
        atomic_store_explicit(&w->count, w->st.msgs, memory_order_relaxed);
        atomic_fetch_add(&w->sh->delivered, got);
    }
    if (done > 0) {
        uint64_t total = atomic_fetch_add(&w->sh->accounted, done) + done;
        *total_reached = total >= atomic_load(&w->sh->expected);
    }
    return rc;
}

static int sub_loop(sbb_worker *w)
{
    sbb_shared *sh = w->sh;
    for (;;) {
        /* After a short read, wait first: a recv() that would only say
         * EAGAIN costs a system call per message at low rates. Bounded by
         * stop_fd: the main thread writes it within --timeout of the last
         * publisher finishing. */
        if (w->conn.drained) {
            int rc = sbb_poll(w->conn.fd, POLLIN, sh->stop_fd, INT64_MAX);
            if (rc < 0)
                return rc;
        }
        ssize_t r = sbb_conn_fill(&w->conn);
        if (r == -EAGAIN) {
            w->conn.drained = true;
            continue;
        }
        if (r < 0)
            return (int)r;
        bool reached = false;
        int rc = sub_drain(w, sbb_now_ns(), &reached);
        if (rc < 0)
            return rc;
        /* Messages the server said it dropped will not come either. */
        if (w->st.msgs + w->st.dropped >= atomic_load(&sh->per_sub))
            return 0;
        if (reached) /* a queue group got everything: tell the main thread */
            sbb__signal(sh->wake_fd);
    }
}

/* Records how the subscriber ended: after an error frame (a slow
 * consumer under the disconnect policy), the close that follows it. */
static void sub_end(sbb_worker *w, int rc)
{
    if (rc == 0 || rc == -ECANCELED)
        return;
    if (w->st.error[0] == '\0') {
        set_error(w, rc, "receiving");
        return;
    }
    char why[128];
    size_t n = strlen(w->st.error);
    sbb_conn_strerror(rc, why, sizeof(why));
    snprintf(w->st.error + n, sizeof(w->st.error) - n, "; then %s", why);
}

void *sbb__sub_main(void *arg)
{
    sbb_worker *w = arg;
    sbb_shared *sh = w->sh;
    const sbb_opts *o = sh->o;
    if (sbb__client_open(sh, &w->conn, "subscriber", w->id, o->topic,
                         o->group[0] ? o->group : NULL, SUB_IN_CAP, w->st.error,
                         sizeof(w->st.error)) < 0) {
        atomic_fetch_add(&sh->failed, 1);
    } else {
        atomic_fetch_add(&sh->ready, 1);
        sbb__signal(sh->wake_fd);
        sub_end(w, sub_loop(w));
    }
    sbb_conn_close(&w->conn);
    atomic_fetch_add(&sh->subs_done, 1);
    sbb__signal(sh->wake_fd);
    return NULL;
}

/* ---- idle connections -------------------------------------------------- */

/* Answers pings; anything else an idle connection receives is ignored.
 * Returns 0, or a negative errno once the connection is gone. */
static int idle_read(sbb_shared *sh, sbb_conn *c)
{
    const char *pong = sbb_proto_pong(c->proto);
    for (;;) {
        sbb_ev ev;
        int rc;
        while ((rc = sbb_conn_next(c, &ev)) > 0)
            if (ev.kind == SBB_EV_PING && pong != NULL &&
                (rc = sbb_conn_send_all(c, pong, strlen(pong),
                                        sbb_now_ns() + sh->timeout_ns,
                                        sh->stop_fd)) < 0)
                return rc;
        if (rc < 0)
            return rc;
        ssize_t r = sbb_conn_fill(c);
        if (r == -EAGAIN)
            return 0;
        if (r < 0)
            return (int)r;
    }
}

void *sbb__idle_main(void *arg)
{
    sbb_idle *idle = arg;
    sbb_shared *sh = idle->sh;
    struct pollfd *p = calloc(idle->n + 1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p[0] = (struct pollfd){.fd = sh->stop_fd, .events = POLLIN};
    for (unsigned i = 0; i < idle->n; i++)
        p[i + 1] = (struct pollfd){.fd = idle->conns[i].fd, .events = POLLIN};
    for (;;) {
        /* Bounded by stop_fd, which the main thread writes at the end. */
        int n = poll(p, idle->n + 1, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (p[0].revents & POLLIN))
            break;
        for (unsigned i = 0; i < idle->n; i++) {
            if (p[i + 1].revents == 0)
                continue;
            if (idle_read(sh, &idle->conns[i]) < 0) {
                p[i + 1].fd = -1; /* poll skips it from now on */
                atomic_fetch_add(&idle->closed, 1);
            }
        }
    }
    free(p);
    return NULL;
}
