/* server.c - listening, accepting, the connection registry, shutdown, and
 * the embedding API (sockbus.h).
 *
 * Threads:
 * - The acceptor thread alone accepts. It owns each new socket until the
 *   connection's worker starts (or it refuses the client and closes it).
 * - sb_server_stop() runs on the caller's thread and drives the shutdown
 *   through `state`, the registry and bus barriers.
 * - In-process subscriptions each have a thread that calls the user's
 *   callback; the list of them (`subs`) is guarded by the server lock.
 * Lock order: server lock before any queue lock; no lock is held across a
 * socket call or a join. */
#define _GNU_SOURCE
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "cluster.h"
#include "conn.h"
#include "http.h"
#include "json.h"
#include "live.h"
#include "log.h"
#include "thread.h"
#include "topic.h"

#define ACCEPTS_PER_WAKE 64
#define STARVED_RETRY_MS 1000 /* also retry accept() this often */

struct sb_subscription {
    sb_server *srv;
    sb_conn *conn;
    sb_message_fn fn;
    sb_notice_fn notice;
    void *ud;
    pthread_t thread;
    atomic_bool stopping;                /* unsubscribe: call nothing more */
    struct sb_subscription *next, *prev; /* server list (server lock) */
};

uint64_t sb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- Registry ---------------------------------------------------------- */

void sb_server__register(sb_server *s, sb_conn *c)
{
    pthread_mutex_lock(&s->lock);
    c->reg_prev = NULL;
    c->reg_next = s->conns;
    if (s->conns)
        s->conns->reg_prev = c;
    s->conns = c;
    s->nconns++;
    pthread_mutex_unlock(&s->lock);
}

void sb_server__unregister(sb_server *s, sb_conn *c)
{
    pthread_mutex_lock(&s->lock);
    if (c->reg_prev)
        c->reg_prev->reg_next = c->reg_next;
    else
        s->conns = c->reg_next;
    if (c->reg_next)
        c->reg_next->reg_prev = c->reg_prev;
    s->nconns--;
    if (c->quiesced)
        s->nquiesced--;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void sb_server__quiesced(sb_server *s, sb_conn *c)
{
    pthread_mutex_lock(&s->lock);
    if (!c->quiesced) {
        c->quiesced = true;
        s->nquiesced++;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

static void wake_fd(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

void sb_server__fd_released(sb_server *s)
{
    if (atomic_exchange(&s->accept_starved, false))
        wake_fd(s->accept_wake);
}

/* Wake every registered worker, without holding the lock while writing
 * their eventfds. */
static void wake_all(sb_server *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->nconns, i = 0;
    sb_conn **list = malloc((n ? n : 1) * sizeof(*list));
    if (list == NULL) {
        /* Rare: wake under the lock rather than not at all. */
        for (sb_conn *c = s->conns; c; c = c->reg_next)
            sb_conn_wake(c);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    for (sb_conn *c = s->conns; c; c = c->reg_next)
        list[i++] = sb_conn_ref(c);
    pthread_mutex_unlock(&s->lock);
    for (size_t k = 0; k < i; k++) {
        sb_conn_wake(list[k]);
        sb_conn_unref(list[k]);
    }
    free(list);
}

/* Wait on the server cond until `done(s)` or the deadline; server lock
 * held by the caller. Returns true when done. */
static bool
wait_until(sb_server *s, bool (*done)(sb_server *), uint64_t deadline_ms)
{
    while (!done(s)) {
        uint64_t now = sb_now_ms();
        if (deadline_ms != UINT64_MAX && now >= deadline_ms)
            return false;
        uint64_t wait = deadline_ms == UINT64_MAX ? 1000 : deadline_ms - now;
        struct timespec ts;
        sb_deadline_in(&ts, wait > 1000 ? 1000 : (long)wait);
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
    return true;
}

static bool all_quiesced(sb_server *s)
{
    return s->nquiesced >= s->nconns;
}

static bool all_gone(sb_server *s)
{
    return s->nconns == 0;
}

/* ---- Accepting --------------------------------------------------------- */

/* Tell a client we cannot serve it, without blocking, and close it. */
static void refuse(int fd, const char *why)
{
    sb_frame *f = sb_msg_build_err(SB_ERR_SERVER_BUSY, why, (sb_span){0});
    if (f != NULL) {
        ssize_t r;
        do
            r = send(fd, f->text, f->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (r < 0 && errno == EINTR);
        sb_frame_unref(&f);
    }
    close(fd);
}

static void peer_name(const struct sockaddr_storage *sa, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    }
    snprintf(out, n, "%s:%u", host, port);
}

static void admit(sb_server *s, int fd, const struct sockaddr_storage *sa)
{
    char peer[64];
    peer_name(sa, peer, sizeof(peer));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    atomic_fetch_add(&s->ctr.total_conns, 1);

    const sb_config *live = sb_live_get(s->live);
    size_t max_conns = live->max_conns;
    sb_live_put(live);
    pthread_mutex_lock(&s->lock);
    bool full = s->nconns >= max_conns;
    pthread_mutex_unlock(&s->lock);
    if (full) {
        SB_LOG(SB_LOG_WARN, "refuse peer=%s reason=max_conns limit=%zu", peer,
               max_conns);
        refuse(fd, "connection limit reached");
        return;
    }
    sb_conn *c = sb_conn_new(s, fd, peer);
    if (c == NULL) {
        /* The queue's eventfd (EMFILE) or memory (ENOMEM). */
        bool nofd = errno == EMFILE || errno == ENFILE;
        SB_LOG(SB_LOG_WARN, "refuse peer=%s reason=%s", peer,
               nofd ? "no_descriptor" : "out_of_memory");
        refuse(fd, nofd ? "out of file descriptors" : "out of memory");
        return;
    }
    int rc = sb_conn_start(c);
    if (rc < 0) {
        SB_LOG(SB_LOG_WARN, "refuse peer=%s reason=no_thread err=%s", peer,
               strerror(-rc));
        refuse(fd, "cannot start a thread for this connection");
    }
}

/* Out of descriptors: free the reserve one, accept a pending client and
 * refuse it with server_busy, and so on for what is waiting; then take the
 * reserve back. */
static void refuse_pending(sb_server *s)
{
    for (int i = 0; i < ACCEPTS_PER_WAKE && s->reserve_fd >= 0; i++) {
        close(s->reserve_fd);
        int fd =
            accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            break;
        refuse(fd, "out of file descriptors");
    }
}

/* Accept what is pending. Returns false when out of descriptors. */
static bool accept_some(sb_server *s)
{
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        int fd = accept4(s->listen_fd, (struct sockaddr *)&sa, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            admit(s, fd, &sa);
            continue;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case EPERM:
            continue;
        case EAGAIN:
            return true;
        case EMFILE:
        case ENFILE:
            /* Answer the waiting clients rather than leave them hanging
             * in the backlog, with the descriptor kept in reserve. */
            SB_LOG(SB_LOG_WARN, "accept paused err=%s", strerror(errno));
            refuse_pending(s);
            return false;
        case ENOBUFS:
        case ENOMEM:
            /* Stop polling the listener (it would report ready at once,
             * forever) until a connection closes or a while has passed. */
            SB_LOG(SB_LOG_WARN, "accept paused err=%s", strerror(errno));
            return false;
        default:
            SB_LOG(SB_LOG_ERROR, "accept failed err=%s", strerror(errno));
            return true;
        }
    }
    return true;
}

static void *acceptor_main(void *arg)
{
    sb_server *s = arg;
    bool starved = false;
    for (;;) {
        if (atomic_load(&s->state) != SB_RUNNING)
            break;
        struct pollfd p[2] = {
            {.fd = starved ? -1 : s->listen_fd, .events = POLLIN},
            {.fd = s->accept_wake, .events = POLLIN},
        };
        int n = poll(p, 2, starved ? STARVED_RETRY_MS : -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            SB_LOG(SB_LOG_ERROR, "acceptor poll failed err=%s",
                   strerror(errno));
            break;
        }
        if (p[1].revents & POLLIN) {
            uint64_t v;
            while (read(s->accept_wake, &v, sizeof(v)) < 0 && errno == EINTR)
                ;
        }
        if (atomic_load(&s->state) != SB_RUNNING)
            break;
        starved = !accept_some(s);
        atomic_store(&s->accept_starved, starved);
    }
    return NULL;
}

static int bind_listen(sb_server *s, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[8];
    snprintf(port, sizeof(port), "%u", s->cfg.listen_port);
    int rc = getaddrinfo(s->cfg.listen_host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s",
                 s->cfg.listen_host, gai_strerror(rc));
        return -EINVAL;
    }
    int fd =
        socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return rc;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot listen on %s:%u: %s", s->cfg.listen_host,
                 s->cfg.listen_port, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return rc;
    }
    freeaddrinfo(res);
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        rc = -errno;
        snprintf(err, errlen, "getsockname: %s", strerror(errno));
        close(fd);
        return rc;
    }
    char host[64];
    peer_name(&sa, host, sizeof(host));
    const char *colon = strrchr(host, ':');
    s->port = (uint16_t)atoi(colon + 1);
    if (sa.ss_family == AF_INET6)
        snprintf(s->address, sizeof(s->address), "[%.*s]:%u",
                 (int)(colon - host), host, s->port);
    else
        snprintf(s->address, sizeof(s->address), "%s", host);
    s->listen_fd = fd;
    return 0;
}

/* ---- Life cycle -------------------------------------------------------- */

/* The node's name: --node, else "HOST:PORT" when clustered (else none:
 * a single server names no node). */
static void node_name(sb_server *s)
{
    if (s->cfg.node[0] != '\0') {
        snprintf(s->node, sizeof(s->node), "%s", s->cfg.node);
    } else if (s->cfg.cluster[0] != '\0') {
        char host[200];
        if (gethostname(host, sizeof(host)) < 0)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(s->node, sizeof(s->node), "%s:%u", host, s->port);
    }
}

static void server_free(sb_server *s)
{
    /* The http server goes first: it reads the registry and the bus, and
     * it kept answering (/healthz 503) through the whole drain. */
    sb_http_stop(s->http);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->accept_wake >= 0)
        close(s->accept_wake);
    if (s->reserve_fd >= 0)
        close(s->reserve_fd);
    sb_cluster_stop(s->cluster, 0); /* nothing more from NATS */
    sb_bus_stop(s->bus);
    sb_cluster_free(s->cluster); /* the bus no longer calls it */
    sb_reaper_stop(s->reaper);
    sb_live_free(s->live);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int sb_server_start(const sb_config *cfg,
                    sb_server **out,
                    char *err,
                    size_t errlen)
{
    if (sb_config_validate(cfg, err, errlen) < 0)
        return -EINVAL;
    sb_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->cfg = *cfg;
    s->listen_fd = -1;
    s->reserve_fd = -1;
    sb_log_set_level((sb_log_level)cfg->log_level);
    sb_log_set_json(cfg->log_json);
    s->start_ms = sb_now_ms();
    atomic_init(&s->next_id, 1);
    pthread_mutex_init(&s->lock, NULL);
    sb_cond_init(&s->cond);
    int rc;

    /* One descriptor kept in reserve, to answer clients when out of them. */
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->accept_wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->accept_wake < 0) {
        rc = -errno;
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    if ((rc = bind_listen(s, err, errlen)) < 0)
        goto fail;
    node_name(s);
    s->reaper = sb_reaper_start();
    s->bus = sb_bus_new(s);
    s->live = sb_live_new(cfg);
    if (s->reaper == NULL || s->bus == NULL || s->live == NULL) {
        rc = -ENOMEM;
        snprintf(err, errlen, "cannot start the bus: out of memory");
        goto fail;
    }
    if (cfg->cluster[0] != '\0') {
        s->cluster = sb_cluster_new(s, err, errlen);
        if (s->cluster == NULL) {
            rc = -EINVAL;
            goto fail;
        }
        sb_bus_set_cluster_out(s->bus, sb_cluster__out, s->cluster);
    }
    if ((rc = sb_bus_start(s->bus)) < 0) {
        snprintf(err, errlen, "cannot start the bus thread: %s", strerror(-rc));
        goto fail;
    }
    if (s->cluster != NULL && (rc = sb_cluster_start(s->cluster)) < 0) {
        snprintf(err, errlen, "cannot start the cluster threads: %s",
                 strerror(-rc));
        goto fail;
    }
    if (cfg->http_listen[0] != '\0' &&
        (rc = sb_http_start(s, &s->http, err, errlen)) < 0)
        goto fail;
    rc = sb_thread_create(&s->acceptor, "acceptor", 256 * 1024, acceptor_main,
                          s);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start the acceptor: %s", strerror(-rc));
        goto fail;
    }
    s->acceptor_started = true;
    SB_LOG(SB_LOG_INFO, "listening address=%s max_conns=%zu auth=%s node=%s",
           s->address, cfg->max_conns, cfg->has_token ? "token" : "none",
           s->node[0] ? s->node : "-");
    *out = s;
    return 0;
fail:
    server_free(s);
    return rc;
}

const char *sb_server_address(const sb_server *s)
{
    return s->address;
}

uint16_t sb_server_port(const sb_server *s)
{
    return s->port;
}

const char *sb_server_http_address(const sb_server *s)
{
    return s->http != NULL ? sb_http_address(s->http) : NULL;
}

static void end_subscription(struct sb_subscription *sub, int reason);

void sb_server_stop(sb_server *s)
{
    uint64_t t0 = sb_now_ms();
    s->drain_deadline_ms = t0 + s->cfg.drain_ms;
    atomic_store(&s->state, SB_DRAINING);
    SB_LOG(SB_LOG_INFO, "shutdown draining=yes drain_ms=%u", s->cfg.drain_ms);

    /* 1. Stop accepting. */
    wake_fd(s->accept_wake);
    if (s->acceptor_started)
        sb_thread_join(s->acceptor);
    close(s->listen_fd);
    s->listen_fd = -1;

    /* 2. Every worker stops reading and hands over what it has read. */
    wake_all(s);
    pthread_mutex_lock(&s->lock);
    wait_until(s, all_quiesced, s->drain_deadline_ms);
    pthread_mutex_unlock(&s->lock);

    /* 3. The bus routes everything handed over into the send queues. */
    uint64_t now = sb_now_ms();
    int left =
        now < s->drain_deadline_ms ? (int)(s->drain_deadline_ms - now) : 0;
    sb_bus_barrier(s->bus, left);

    /* The cluster sends what the bus handed it, then leaves NATS: no
     * message arrives from other nodes while local clients drain. A
     * stalled NATS server gets at most half of the drain time left, so
     * that local clients keep the rest. */
    now = sb_now_ms();
    sb_cluster_stop(s->cluster, now < s->drain_deadline_ms
                                    ? (int)(s->drain_deadline_ms - now) / 2
                                    : 0);

    /* 4. Workers flush their queues, say shutting_down and close;
     *    in-process subscribers finish what is queued for them. */
    atomic_store(&s->state, SB_DRAINED);
    wake_all(s);
    for (;;) {
        pthread_mutex_lock(&s->lock);
        struct sb_subscription *sub = s->subs;
        pthread_mutex_unlock(&s->lock);
        if (sub == NULL)
            break;
        end_subscription(sub, SB_ERR_SHUTTING_DOWN);
    }
    pthread_mutex_lock(&s->lock);
    bool clean = wait_until(s, all_gone, s->drain_deadline_ms);
    pthread_mutex_unlock(&s->lock);

    /* 5. Past the drain time: close whatever is left at once. */
    if (!clean) {
        atomic_store(&s->state, SB_CLOSING);
        wake_all(s);
        pthread_mutex_lock(&s->lock);
        wait_until(s, all_gone, UINT64_MAX);
        pthread_mutex_unlock(&s->lock);
    }
    SB_LOG(SB_LOG_INFO, "shutdown done=yes clean=%s ms=%" PRIu64,
           clean ? "yes" : "no", sb_now_ms() - t0);
    server_free(s);
}

void sb_server_stats(sb_server *s, sb_stats *o)
{
    memset(o, 0, sizeof(*o));
    pthread_mutex_lock(&s->lock);
    o->connections = s->nconns;
    pthread_mutex_unlock(&s->lock);
    o->subscriptions = sb_bus_subscriptions(s->bus);
    o->msgs_in = atomic_load(&s->ctr.msgs_in);
    o->msgs_out = atomic_load(&s->ctr.msgs_out);
    o->bytes_in = atomic_load(&s->ctr.bytes_in);
    o->bytes_out = atomic_load(&s->ctr.bytes_out);
    o->dropped = atomic_load(&s->ctr.dropped);
    o->slow_consumers = atomic_load(&s->ctr.slow_consumers);
    o->uptime_ms = sb_now_ms() - s->start_ms;
    o->total_connections = atomic_load(&s->ctr.total_conns);
    o->recv_queue = sb_queue_len(sb_bus_queue(s->bus));
    o->recv_queue_high_water = sb_queue_high_water(sb_bus_queue(s->bus));
    if (s->cluster != NULL)
        sb_cluster_get_stats(s->cluster, &o->cluster);
}

void sb_server_set_observer(sb_server *s, sb_interest_fn fn, void *ud)
{
    sb_bus_set_observer(s->bus, fn, ud);
}

/* ---- In-process publish and subscribe ---------------------------------- */

int sb_server_publish(sb_server *s,
                      const char *topic,
                      const char *data,
                      size_t data_len,
                      const char *reply,
                      int timeout_ms)
{
    if (topic == NULL || !sb_topic_valid(topic, strlen(topic)))
        return -EINVAL;
    if (reply != NULL && !sb_topic_valid(reply, strlen(reply)))
        return -EINVAL;
    sb_span d = {0};
    if (data != NULL && data_len > 0) {
        sb_json_result r;
        if (data_len + 64 > s->cfg.max_frame ||
            sb_json_scan(data, data_len, NULL, 0, &r) < 0)
            return -EINVAL;
        d = (sb_span){data, data_len};
    }
    if (atomic_load(&s->state) != SB_RUNNING)
        return -EPIPE;
    sb_span t = {topic, strlen(topic)};
    sb_span rp = {reply, reply ? strlen(reply) : 0};
    sb_frame *f = sb_msg_build_msg(t, d, rp, 0);
    if (f == NULL)
        return -ENOMEM;
    int rc = sb_queue_push(sb_bus_queue(s->bus), f, f->len, timeout_ms);
    if (rc < 0) {
        sb_frame_unref(&f);
        return rc;
    }
    atomic_fetch_add(&s->ctr.msgs_in, 1);
    return 0;
}

static void deliver_inproc(struct sb_subscription *sub, sb_frame *f)
{
    if (atomic_load(&sub->stopping))
        return;
    if (f->kind == SB_FRAME_MSG) {
        sb_message m = {
            .topic = f->topic,
            .topic_len = f->topic_len,
            .data = f->text + f->data_off,
            .data_len = f->data_len,
            .reply = f->reply,
            .reply_len = f->reply_len,
        };
        sub->fn(&m, sub->ud);
    }
}

static void notice(struct sb_subscription *sub, sb_err code, const char *msg)
{
    if (sub->notice != NULL && !atomic_load(&sub->stopping))
        sub->notice(code, msg, sub->ud);
}

static void *inproc_main(void *arg)
{
    struct sb_subscription *sub = arg;
    sb_conn *c = sub->conn;
    sb_server *s = sub->srv;
    void *items[SB_CONN_OUT_MAX];
    for (;;) {
        int n = sb_queue_pop_batch(c->sendq, items, NULL, SB_CONN_OUT_MAX, -1);
        if (n == -EPIPE)
            break;
        uint64_t msgs = 0;
        for (int i = 0; i < n; i++) {
            sb_frame *f = items[i];
            msgs += f->kind == SB_FRAME_MSG;
            deliver_inproc(sub, f);
            sb_frame_unref(&f);
        }
        atomic_fetch_add(&s->ctr.msgs_out, msgs);
        uint64_t dropped = atomic_exchange(&c->dropped_pending, 0);
        if (dropped > 0) {
            char msg[64];
            snprintf(msg, sizeof(msg), "dropped %" PRIu64 " messages", dropped);
            notice(sub, SB_ERR_SLOW_CONSUMER, msg);
        }
    }
    int reason = atomic_load(&c->close_reason);
    if (reason == SB_ERR_SLOW_CONSUMER)
        notice(sub, SB_ERR_SLOW_CONSUMER,
               "slow consumer: queue full, subscription ended");
    else if (reason == SB_ERR_SHUTTING_DOWN)
        notice(sub, SB_ERR_SHUTTING_DOWN, "server shutting down");
    return NULL;
}

static bool valid_group(const char *g)
{
    size_t n = strlen(g);
    if (n == 0 || n > SB_GROUP_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)g[i] <= 0x20 || g[i] == 0x7f)
            return false;
    return true;
}

int sb_server_subscribe(sb_server *s,
                        const char *pattern,
                        const char *group,
                        sb_message_fn fn,
                        sb_notice_fn notice_fn,
                        void *ud,
                        sb_subscription **out)
{
    if (pattern == NULL || fn == NULL ||
        !sb_topic_valid_pattern(pattern, strlen(pattern)) ||
        (group != NULL && !valid_group(group)))
        return -EINVAL;
    if (atomic_load(&s->state) != SB_RUNNING)
        return -EPIPE;
    struct sb_subscription *sub = calloc(1, sizeof(*sub));
    if (sub == NULL)
        return -ENOMEM;
    sub->srv = s;
    sub->fn = fn;
    sub->notice = notice_fn;
    sub->ud = ud;
    sub->conn = sb_conn_new_inproc(s, sub);
    if (sub->conn == NULL) {
        free(sub);
        return -ENOMEM;
    }
    char name[16];
    snprintf(name, sizeof(name), "sub-%" PRIu64, sub->conn->id);
    int rc = sb_thread_create(&sub->thread, name,
                              s->cfg.thread_stack_kib * 1024, inproc_main, sub);
    if (rc < 0) {
        atomic_store(&sub->conn->refs, 1);
        sb_conn_unref(sub->conn);
        free(sub);
        return rc;
    }
    pthread_mutex_lock(&s->lock);
    sub->next = s->subs;
    if (s->subs)
        s->subs->prev = sub;
    s->subs = sub;
    pthread_mutex_unlock(&s->lock);

    sb_span p = {pattern, strlen(pattern)};
    sb_span g = {group, group ? strlen(group) : 0};
    void *op = sb_bus_op_sub(sub->conn, false, p, g, (sb_span){0});
    if (op != NULL) {
        atomic_fetch_add(&sub->conn->outstanding, 1);
        rc = sb_queue_push_force(sb_bus_queue(s->bus), op, 0);
        if (rc < 0)
            sb_bus_item_free(op);
    } else {
        rc = -ENOMEM;
    }
    if (rc == 0)
        rc = sb_bus_barrier(s->bus, -1); /* active once this returns */
    if (rc < 0) {
        end_subscription(sub, SB_CLOSE_UNSUB);
        return rc;
    }
    *out = sub;
    return 0;
}

/* Stop the subscription's thread (after it delivered what is queued, unless
 * `stopping` was set), detach it from the bus and free it. */
static void end_subscription(struct sb_subscription *sub, int reason)
{
    sb_server *s = sub->srv;
    sb_conn *c = sub->conn;
    pthread_mutex_lock(&s->lock);
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        s->subs = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    pthread_mutex_unlock(&s->lock);

    if (!sb_conn_request_close(c, reason))
        sb_queue_close(c->sendq);
    sb_thread_join(sub->thread);
    void *op = sb_bus_op_detach(c);
    if (op == NULL || sb_queue_push_force(sb_bus_queue(s->bus), op, 0) < 0) {
        if (op != NULL)
            sb_bus_item_free(op);
        sb_conn_unref(c); /* the bus's reference */
    }
    sb_conn_unref(c); /* the thread's reference */
    free(sub);
}

int sb_server_unsubscribe(sb_subscription *sub)
{
    if (pthread_equal(pthread_self(), sub->thread))
        return -EDEADLK;
    atomic_store(&sub->stopping, true);
    end_subscription(sub, SB_CLOSE_UNSUB);
    return 0;
}
