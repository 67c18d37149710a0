/* cluster.c - the NATS link of a clustered node. See cluster.h.
 *
 * Who touches what:
 * - The cluster thread ("cluster") connects both NATS connections, then
 *   applies interest changes: it alone owns `subs` (the NATS
 *   subscriptions) and `retired_dropped`.
 * - The I/O thread ("cluster-io") runs both NATS connections through
 *   libnats' external event loop interface: it polls their sockets, reads
 *   and parses what NATS sends (libnats then hands messages to its
 *   delivery thread), pops frames from `outq`, publishes them and writes
 *   each batch out at once. libnats calls the event callbacks (ev_*) from
 *   whichever thread changes what a socket waits for; they only record it
 *   under `io_lock` and wake the I/O thread through `io_efd`.
 * - The bus thread calls sb_cluster__out() (reads `state` and `closed`,
 *   pushes into `outq`) and the interest observer (appends to `changes`).
 * - libnats threads call the connection callbacks (they update the link
 *   states, `server` and `state`) and the message handler (it pushes into
 *   the bus's receive queue). Every subscription uses the library's
 *   delivery pool, sized to one thread: messages of all subscriptions of
 *   a connection are handled one at a time in the order NATS sent them,
 *   which keeps each publisher's order across a node's patterns.
 * - `lock` guards `changes`, `stopping`, the link states, `server`,
 *   `ever_connected`, `live_subs`, `closed_seen` and `out_drained`; `cond`
 *   signals changes to the cluster thread and completions to
 *   sb_cluster_stop(). No libnats call is made under it or under
 *   `io_lock` (libnats holds its connection lock while it calls ev_*, so
 *   the order is always connection lock, then ours). Counters are atomics.
 *
 * Why an event loop of our own: libnats' own flusher thread waits a
 * millisecond before it writes, to gather publications; here the batch
 * popped from `outq` is the gathering, so it is written as soon as it
 * is published, and the connection needs no reader or flusher thread.
 *
 * Two connections, because of echo: NATS delivers a connection's own
 * publications back to it unless it connects with echo off. Plain
 * interest must not see our own publications (the bus already gave them
 * to local plain subscribers), but queue groups must (NATS picks the
 * member, maybe one here). */
#define _GNU_SOURCE
#include "cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "json.h"
#include "log.h"
#include "server.h"
#include "strmap.h"
#include "thread.h"
#include "topic.h"

#define OUT_BATCH 256
/* Messages from NATS are freed in groups of this many (or this many
 * bytes): libnats hands each freed message to its collector thread and
 * wakes it when idle, which one at a time would be a wake-up per
 * message. Their frames enter the bus in groups too, up to IN_BATCH, for
 * as long as libnats has more queued for the same subscription. */
#define SPENT_MAX 64
#define SPENT_BYTES_MAX (256 * 1024)
#define IN_BATCH 64
/* Bytes libnats may hold for the socket before the I/O thread stops
 * taking frames from `outq` (which then fills and drops). */
#define OUT_BUFFERED_MAX (4 << 20)
#define IN_PUSH_TIMEOUT_MS 1000 /* a message from NATS waits for the bus */
#define RECONNECT_WAIT_MS 250
#define CONNECT_TIMEOUT_MS 1000
#define PING_INTERVAL_MS 5000
#define CLOSE_WAIT_MS 3000
#define LOG_EVERY_MS 1000
#define MAX_URLS 32
/* Marks a publication whose publisher has echo off, so that a copy NATS
 * hands back to this node for a queue group skips that publisher. */
#define ORIGIN_HEADER "Sockbus-Origin"

enum { LINK_PUB = 0, LINK_GROUP = 1 };

enum cluster_state {
    CL_DISCONNECTED = 0, /* never connected yet, or closed */
    CL_CONNECTED = 1,
    CL_RECONNECTING = 2,
};

static const char *const state_names[] = {"disconnected", "connected",
                                          "reconnecting"};

struct link {
    sb_cluster *cl;
    const char *name;           /* "pub" or "group" */
    natsConnection *_Atomic nc; /* set once connected or retrying */
    natsConnStatus status;      /* lock */
    bool closed_seen;           /* lock */
    /* What the event loop polls for this connection (io_lock). */
    natsConnection *ev_nc; /* set by the first attach */
    int fd;                /* -1 while detached */
    bool want_read, want_write;
};

/* A frame in `outq` whose NATS copy must name its publisher (see the
 * bus's hook) carries this bit in its pointer. */
#define OUT_MARK ((uintptr_t)1)

/* One NATS subscription; the message handler's closure. Freed by libnats'
 * completion callback, once no handler can run any more. */
typedef struct csub {
    sb_cluster *cl;
    natsSubscription *sub;
    uint8_t glen;
    char group[SB_GROUP_MAX + 1]; /* "" for plain interest */
} csub;

/* An interest change reported by the bus. */
typedef struct change {
    struct change *next;
    bool added;
    uint16_t plen;
    uint8_t glen;
    char text[]; /* pattern, then group */
} change;

/* A rate-limited log line: at most one per second, with a count. */
typedef struct ratelog {
    atomic_uint_fast64_t last_ms;
    atomic_uint_fast64_t unlogged;
} ratelog;

struct sb_cluster {
    sb_server *srv;
    sb_queue *bus_q;
    size_t max_frame;
    char prefix[128];
    size_t plen;
    char node[256];
    char uid[17];         /* random: this process among all nodes */
    char plain_queue[32]; /* the queue group of our plain interest */
    natsOptions *opts[2];
    struct link link[2];
    sb_queue *outq;
    pthread_t ctl, io;
    bool ctl_started, io_started, stopped;

    pthread_mutex_t io_lock;
    int io_efd;   /* wakes the I/O thread */
    bool io_stop; /* io_lock */
    bool leak;    /* libnats did not finish in time: never free */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    change *changes, *changes_tail;
    bool stopping;
    bool out_drained; /* `outq` closed, emptied and written out */
    int live_subs;
    bool ever_connected;
    char server[256];

    /* in_lock: messages handled but not yet freed (see SPENT_MAX), frames not
     * yet pushed into the bus (IN_BATCH), with their payload sizes. */
    pthread_mutex_t in_lock;
    pthread_mutex_t push_lock; /* taken before in_lock is let go: groups
                                  enter the bus in the order taken */
    natsMsg *spent[SPENT_MAX];
    int nspent;
    size_t spent_bytes;
    sb_frame *in[IN_BATCH];
    size_t in_len[IN_BATCH];
    int in_data[IN_BATCH];
    int nin;

    sb_strmap *subs; /* cluster thread: key(group, pattern) -> csub */
    uint64_t retired_dropped;

    atomic_int state; /* enum cluster_state */
    atomic_bool closed;
    atomic_uint_fast64_t msgs_sent, bytes_sent, msgs_received, bytes_received,
        dropped, invalid, nsubs, nats_dropped;
    ratelog invalid_log, drop_log, error_log;
};

/* ---- Small helpers ----------------------------------------------------- */

/* True (and the count to report) when a rate-limited event may log now. */
static bool ratelog_hit(ratelog *r, uint64_t *count)
{
    atomic_fetch_add(&r->unlogged, 1);
    uint64_t now = sb_now_ms();
    uint64_t last = atomic_load(&r->last_ms);
    if (last != 0 && now - last < LOG_EVERY_MS)
        return false;
    if (!atomic_compare_exchange_strong(&r->last_ms, &last, now))
        return false;
    *count = atomic_exchange(&r->unlogged, 0);
    return true;
}

/* `url` without the user information (credentials) it may carry. */
static void strip_credentials(char *out, size_t n, const char *url)
{
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    const char *at = strchr(host, '@');
    const char *slash = strchr(host, '/');
    if (at != NULL && (slash == NULL || at < slash))
        snprintf(out, n, "%.*s%s", (int)(host - url), url, at + 1);
    else
        snprintf(out, n, "%s", url);
}

/* "PREFIX.name" into out[0..n). Returns false when it does not fit. */
static bool
subject(const sb_cluster *cl, char *out, size_t n, const char *name, size_t len)
{
    if (cl->plen + 1 + len + 1 > n)
        return false;
    memcpy(out, cl->prefix, cl->plen);
    out[cl->plen] = '.';
    memcpy(out + cl->plen + 1, name, len);
    out[cl->plen + 1 + len] = '\0';
    return true;
}

/* The part of `subj` after "PREFIX.", or NULL when it is not under it. */
static const char *strip_prefix(const sb_cluster *cl, const char *subj)
{
    if (strncmp(subj, cl->prefix, cl->plen) != 0 || subj[cl->plen] != '.')
        return NULL;
    return subj + cl->plen + 1;
}

/* ---- Connection state -------------------------------------------------- */

/* Connected while both connections are; reconnecting after a loss, until
 * both are back; disconnected before the first connection and once
 * closed. Lock held. */
static enum cluster_state combined_state(sb_cluster *cl)
{
    bool up = true, closed = false;
    for (int i = 0; i < 2; i++) {
        up = up && cl->link[i].status == NATS_CONN_STATUS_CONNECTED;
        closed = closed || cl->link[i].status == NATS_CONN_STATUS_CLOSED;
    }
    if (up)
        cl->ever_connected = true;
    if (closed)
        return CL_DISCONNECTED;
    return up                   ? CL_CONNECTED
           : cl->ever_connected ? CL_RECONNECTING
                                : CL_DISCONNECTED;
}

/* Every connection event: record the connection's status as it is now
 * (callbacks may run late; the last one always sees the last status),
 * and log when the node's state changes. */
static void conn_event(natsConnection *nc, void *closure)
{
    struct link *l = closure;
    sb_cluster *cl = l->cl;
    natsConnStatus st = natsConnection_Status(nc);
    char url[256] = "", shown[256] = "";
    if (st == NATS_CONN_STATUS_CONNECTED && l == &cl->link[LINK_PUB] &&
        natsConnection_GetConnectedUrl(nc, url, sizeof(url)) == NATS_OK)
        strip_credentials(shown, sizeof(shown), url);

    pthread_mutex_lock(&cl->lock);
    l->status = st;
    if (l == &cl->link[LINK_PUB])
        snprintf(cl->server, sizeof(cl->server), "%s", shown);
    enum cluster_state was = (enum cluster_state)atomic_load(&cl->state);
    enum cluster_state now = combined_state(cl);
    atomic_store(&cl->state, (int)now);
    char server[256];
    snprintf(server, sizeof(server), "%s", cl->server);
    pthread_mutex_unlock(&cl->lock);

    if (now != was)
        SB_LOG(now == CL_CONNECTED ? SB_LOG_INFO : SB_LOG_WARN,
               "cluster state=%s node=%s server=%s conn=%s", state_names[now],
               cl->node, server[0] ? server : "-", l->name);
    else
        SB_LOG(SB_LOG_DEBUG, "cluster conn=%s status=%d", l->name, (int)st);
}

static void on_conn_event(natsConnection *nc, void *closure)
{
    conn_event(nc, closure);
}

/* The connection's last callback (other events seen late may already
 * read the closed status, so only this one counts): once the flag is
 * seen, sb_cluster_stop() may free `cl`, so nothing touches it after. */
static void on_conn_closed(natsConnection *nc, void *closure)
{
    struct link *l = closure;
    sb_cluster *cl = l->cl;
    conn_event(nc, closure);
    pthread_mutex_lock(&cl->lock);
    l->closed_seen = true;
    pthread_cond_broadcast(&cl->cond);
    pthread_mutex_unlock(&cl->lock);
}

static void on_nats_error(natsConnection *nc,
                          natsSubscription *sub,
                          natsStatus err,
                          void *closure)
{
    (void)nc;
    (void)sub;
    struct link *l = closure;
    uint64_t n;
    if (ratelog_hit(&l->cl->error_log, &n))
        SB_LOG(SB_LOG_WARN, "cluster nats_error conn=%s err=%s count=%" PRIu64,
               l->name, natsStatus_GetText(err), n);
}

/* ---- Messages from NATS ------------------------------------------------ */

static void invalid(sb_cluster *cl, const char *why, const char *subj)
{
    atomic_fetch_add(&cl->invalid, 1);
    uint64_t n;
    if (ratelog_hit(&cl->invalid_log, &n))
        SB_LOG(SB_LOG_WARN,
               "cluster invalid reason=%s subject=%.200s count=%" PRIu64, why,
               subj, n);
}

static void dropped_in(sb_cluster *cl, const char *why)
{
    atomic_fetch_add(&cl->dropped, 1);
    uint64_t n;
    if (ratelog_hit(&cl->drop_log, &n))
        SB_LOG(SB_LOG_WARN,
               "cluster dropped direction=in reason=%s count=%" PRIu64, why, n);
}

/* The publisher's connection id when the message is one of ours from a
 * publisher with echo off, else SB_ORIGIN_CLUSTER. */
static uint64_t origin_of(sb_cluster *cl, natsMsg *msg)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(msg, ORIGIN_HEADER, &v) != NATS_OK || v == NULL)
        return SB_ORIGIN_CLUSTER;
    size_t ul = strlen(cl->uid);
    if (strncmp(v, cl->uid, ul) != 0 || v[ul] != '.')
        return SB_ORIGIN_CLUSTER;
    char *end;
    unsigned long long id = strtoull(v + ul + 1, &end, 10);
    return *end == '\0' && id != 0 ? (uint64_t)id : SB_ORIGIN_CLUSTER;
}

/* Check a message from NATS and build its msg frame. Returns owned, or
 * NULL when it is invalid (counted) or memory ran out (counted). */
static sb_frame *take_in(sb_cluster *cl, const csub *cs, natsMsg *msg)
{
    const char *subj = natsMsg_GetSubject(msg);
    const char *topic = strip_prefix(cl, subj);
    if (topic == NULL || !sb_topic_valid(topic, strlen(topic))) {
        invalid(cl, "topic", subj);
        return NULL;
    }
    const char *data = natsMsg_GetData(msg);
    int dl = natsMsg_GetDataLength(msg);
    sb_json_result jr;
    if (data == NULL || dl <= 0 ||
        sb_json_scan(data, (size_t)dl, NULL, 0, &jr) < 0) {
        invalid(cl, "json", subj);
        return NULL;
    }
    /* Whitespace between JSON tokens may hold newlines, which would end
     * the frame early: they become spaces (strings cannot hold one). */
    char *copy = NULL;
    if (memchr(data, '\n', (size_t)dl) != NULL) {
        copy = malloc((size_t)dl);
        if (copy == NULL) {
            dropped_in(cl, "out_of_memory");
            return NULL;
        }
        for (int i = 0; i < dl; i++)
            copy[i] = data[i] == '\n' ? ' ' : data[i];
        data = copy;
    }
    /* A reply subject outside the bus's prefix cannot be answered through
     * sockbus: the message is delivered without it. */
    const char *reply = natsMsg_GetReply(msg);
    sb_span rs = {0};
    if (reply != NULL && (reply = strip_prefix(cl, reply)) != NULL &&
        sb_topic_valid(reply, strlen(reply)))
        rs = (sb_span){reply, strlen(reply)};

    bool group = cs->glen > 0;
    sb_frame *f = sb_msg_build_msg_routed(
        (sb_span){topic, strlen(topic)}, (sb_span){data, (size_t)dl}, rs,
        group ? origin_of(cl, msg) : SB_ORIGIN_CLUSTER,
        group ? SB_ROUTE_GROUP : SB_ROUTE_PLAIN_ONLY,
        (sb_span){cs->group, cs->glen});
    free(copy);
    if (f == NULL) {
        dropped_in(cl, "out_of_memory");
        return NULL;
    }
    if (f->len > cl->max_frame) {
        sb_frame_unref(&f);
        invalid(cl, "too_large", subj);
        return NULL;
    }
    return f;
}

/* Hand frames to the bus, in order: the same bounded queue as socket
 * input. What does not fit waits a little for room (libnats buffers
 * meanwhile, up to its pending limits); once one wait times out, the
 * rest of the group is dropped without waiting again. */
static void
push_in(sb_cluster *cl, sb_frame **f, const size_t *len, const int *data, int n)
{
    int done =
        sb_queue_try_push_many(cl->bus_q, (void *const *)f, len, (size_t)n);
    bool gave_up = done < 0; /* closed: shutting down */
    if (done < 0)
        done = 0;
    for (int i = 0; i < n; i++) {
        if (i >= done) {
            int rc = gave_up ? -EPIPE
                             : sb_queue_push(cl->bus_q, f[i], len[i],
                                             IN_PUSH_TIMEOUT_MS);
            if (rc < 0) {
                gave_up = true;
                sb_frame_unref(&f[i]);
                if (rc != -EPIPE)
                    dropped_in(cl, "bus_full");
                continue;
            }
        }
        atomic_fetch_add_explicit(&cl->msgs_received, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&cl->bytes_received, (uint64_t)data[i],
                                  memory_order_relaxed);
    }
}

/* Keep `add` (when not NULL) among the messages to free; once there are
 * enough, or at once with `all`, move them all to `batch` (to be freed
 * without the lock). in_lock held. Returns how many were moved. */
static int
take_spent_locked(sb_cluster *cl, natsMsg *add, bool all, natsMsg **batch)
{
    if (add != NULL) {
        cl->spent[cl->nspent++] = add;
        cl->spent_bytes += (size_t)natsMsg_GetDataLength(add);
    }
    if (!all && cl->nspent < SPENT_MAX && cl->spent_bytes < SPENT_BYTES_MAX)
        return 0;
    int n = cl->nspent;
    memcpy(batch, cl->spent, (size_t)n * sizeof(*batch));
    cl->nspent = 0;
    cl->spent_bytes = 0;
    return n;
}

static void free_msgs(natsMsg **m, int n)
{
    for (int i = 0; i < n; i++)
        natsMsg_Destroy(m[i]);
}

/* Push the frames waiting in `cl->in` when `now`; in_lock held, and
 * released here. */
static void flush_in_locked(sb_cluster *cl, bool now)
{
    sb_frame *batch[IN_BATCH];
    size_t len[IN_BATCH];
    int dl[IN_BATCH], n = 0;
    if (now && cl->nin > 0) {
        n = cl->nin;
        memcpy(batch, cl->in, (size_t)n * sizeof(*batch));
        memcpy(len, cl->in_len, (size_t)n * sizeof(*len));
        memcpy(dl, cl->in_data, (size_t)n * sizeof(*dl));
        cl->nin = 0;
    }
    if (n == 0) {
        pthread_mutex_unlock(&cl->in_lock);
        return;
    }
    pthread_mutex_lock(&cl->push_lock);
    pthread_mutex_unlock(&cl->in_lock);
    push_in(cl, batch, len, dl, n);
    pthread_mutex_unlock(&cl->push_lock);
}

/* Push whatever waits in `cl->in`: the cluster thread does it after
 * interest changes and every second, for frames whose subscription was
 * closed before libnats delivered the messages that were to follow. */
static void flush_in(sb_cluster *cl)
{
    pthread_mutex_lock(&cl->in_lock);
    flush_in_locked(cl, true);
}

/* libnats' delivery thread, one message at a time in the order NATS sent
 * them. The frame waits in `cl->in` while libnats already holds the next
 * message for this subscription (it follows at once), so that a burst
 * enters the bus with one lock and one wake-up per group. */
static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    csub *cs = closure;
    sb_cluster *cl = cs->cl;
    int data = natsMsg_GetDataLength(msg);
    sb_frame *f = take_in(cl, cs, msg);
    int pending = 0;
    if (natsSubscription_GetPending(sub, &pending, NULL) != NATS_OK)
        pending = 0;
    pthread_mutex_lock(&cl->in_lock);
    if (f != NULL) {
        cl->in[cl->nin] = f;
        cl->in_len[cl->nin] = f->len;
        cl->in_data[cl->nin] = data;
        cl->nin++;
    }
    natsMsg *spent[SPENT_MAX];
    int nspent = take_spent_locked(cl, msg, false, spent);
    flush_in_locked(cl, pending <= 0 || cl->nin == IN_BATCH);
    free_msgs(spent, nspent);
}

/* libnats: the subscription is closed and its handler has returned. */
static void on_sub_complete(void *closure)
{
    csub *cs = closure;
    sb_cluster *cl = cs->cl;
    free(cs);
    pthread_mutex_lock(&cl->lock);
    cl->live_subs--;
    pthread_cond_broadcast(&cl->cond); /* under the lock: see above */
    pthread_mutex_unlock(&cl->lock);
}

/* ---- Interest ---------------------------------------------------------- */

/* The bus's interest observer: queue the change for the cluster thread.
 * Bus thread; never blocks on NATS. */
static void on_interest(const char *pattern,
                        size_t plen,
                        const char *group,
                        size_t glen,
                        int added,
                        void *ud)
{
    sb_cluster *cl = ud;
    change *c = malloc(sizeof(*c) + plen + glen);
    if (c == NULL) {
        SB_LOG(SB_LOG_ERROR, "cluster interest_lost pattern=%.*s err=ENOMEM",
               (int)plen, pattern);
        return;
    }
    c->next = NULL;
    c->added = added != 0;
    c->plen = (uint16_t)plen;
    c->glen = (uint8_t)glen;
    memcpy(c->text, pattern, plen);
    if (glen > 0)
        memcpy(c->text + plen, group, glen);
    pthread_mutex_lock(&cl->lock);
    if (cl->changes_tail != NULL)
        cl->changes_tail->next = c;
    else
        cl->changes = c;
    cl->changes_tail = c;
    pthread_mutex_unlock(&cl->lock);
    pthread_cond_broadcast(&cl->cond);
}

static csub *nats_subscribe(sb_cluster *cl, const change *c)
{
    bool group = c->glen > 0;
    natsConnection *nc = atomic_load(&cl->link[group].nc);
    char subj[512];
    if (nc == NULL || !subject(cl, subj, sizeof(subj), c->text, c->plen))
        return NULL;
    csub *cs = calloc(1, sizeof(*cs));
    if (cs == NULL)
        return NULL;
    cs->cl = cl;
    cs->glen = c->glen;
    memcpy(cs->group, c->text + c->plen, c->glen);
    natsStatus s = natsConnection_QueueSubscribe(
        &cs->sub, nc, subj, group ? cs->group : cl->plain_queue, on_msg, cs);
    if (s == NATS_OK) {
        pthread_mutex_lock(&cl->lock);
        cl->live_subs++;
        pthread_mutex_unlock(&cl->lock);
        s = natsSubscription_SetOnCompleteCB(cs->sub, on_sub_complete, cs);
        if (s != NATS_OK) {
            /* Cannot happen for a fresh asynchronous subscription; if it
             * did, never free `cs`, which a handler may still use. */
            natsSubscription_Unsubscribe(cs->sub);
            natsSubscription_Destroy(cs->sub);
            return NULL;
        }
        return cs;
    }
    SB_LOG(SB_LOG_WARN, "cluster subscribe_failed subject=%s group=%s err=%s",
           subj, group ? cs->group : "-", natsStatus_GetText(s));
    free(cs);
    return NULL;
}

static void nats_unsubscribe(sb_cluster *cl, csub *cs)
{
    int64_t d = 0;
    if (natsSubscription_GetDropped(cs->sub, &d) == NATS_OK && d > 0)
        cl->retired_dropped += (uint64_t)d;
    natsSubscription *sub = cs->sub;
    natsSubscription_Unsubscribe(sub); /* completion frees `cs` */
    natsSubscription_Destroy(sub);
}

static size_t
interest_key(char *k, const char *g, size_t gl, const char *p, size_t pl)
{
    k[0] = (char)gl;
    memcpy(k + 1, g, gl);
    memcpy(k + 1 + gl, p, pl);
    return 1 + gl + pl;
}

static void apply_change(sb_cluster *cl, const change *c)
{
    char key[1 + SB_GROUP_MAX + SB_TOPIC_MAX];
    size_t kn = interest_key(key, c->text + c->plen, c->glen, c->text, c->plen);
    csub *cs = sb_strmap_get(cl->subs, key, kn);
    if (c->added && cs == NULL) {
        cs = nats_subscribe(cl, c);
        if (cs == NULL)
            return;
        if (sb_strmap_put(cl->subs, key, kn, cs) < 0) {
            nats_unsubscribe(cl, cs);
            return;
        }
        atomic_fetch_add(&cl->nsubs, 1);
        SB_LOG(SB_LOG_DEBUG, "cluster sub pattern=%.*s group=%.*s",
               (int)c->plen, c->text, (int)c->glen,
               c->glen ? c->text + c->plen : "-");
    } else if (!c->added && cs != NULL) {
        sb_strmap_del(cl->subs, key, kn);
        nats_unsubscribe(cl, cs);
        atomic_fetch_sub(&cl->nsubs, 1);
        SB_LOG(SB_LOG_DEBUG, "cluster unsub pattern=%.*s group=%.*s",
               (int)c->plen, c->text, (int)c->glen,
               c->glen ? c->text + c->plen : "-");
    }
}

static void add_dropped(const void *key, size_t n, void *value, void *ud)
{
    (void)key;
    (void)n;
    csub *cs = value;
    int64_t d = 0;
    if (natsSubscription_GetDropped(cs->sub, &d) == NATS_OK && d > 0)
        *(uint64_t *)ud += (uint64_t)d;
}

static void unsubscribe_entry(const void *key, size_t n, void *value, void *ud)
{
    (void)key;
    (void)n;
    nats_unsubscribe(ud, value);
}

/* ---- The threads ------------------------------------------------------- */

static void connect_link(sb_cluster *cl, int i)
{
    struct link *l = &cl->link[i];
    natsConnection *nc = NULL;
    natsStatus s = natsConnection_Connect(&nc, cl->opts[i]);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        SB_LOG(SB_LOG_ERROR, "cluster connect_failed conn=%s err=%s", l->name,
               natsStatus_GetText(s));
        return;
    }
    atomic_store(&l->nc, nc);
    on_conn_event(nc, l); /* a connect that succeeded at once has no cb */
}

static void *ctl_main(void *arg)
{
    sb_cluster *cl = arg;
    connect_link(cl, LINK_PUB);
    connect_link(cl, LINK_GROUP);
    for (;;) {
        pthread_mutex_lock(&cl->lock);
        if (cl->changes == NULL && !cl->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1; /* refresh the dropped counter now and then */
            pthread_cond_timedwait(&cl->cond, &cl->lock, &ts);
        }
        change *list = cl->changes;
        cl->changes = cl->changes_tail = NULL;
        bool stop = cl->stopping;
        pthread_mutex_unlock(&cl->lock);

        while (list != NULL) {
            change *c = list;
            list = c->next;
            apply_change(cl, c);
            free(c);
        }
        flush_in(cl);
        uint64_t d = cl->retired_dropped;
        sb_strmap_foreach(cl->subs, add_dropped, &d);
        atomic_store(&cl->nats_dropped, d);
        if (stop)
            break;
    }
    sb_strmap_foreach(cl->subs, unsubscribe_entry, cl);
    sb_strmap_free(cl->subs);
    cl->subs = NULL;
    return NULL;
}

/* ---- The event loop ---------------------------------------------------- */

static _Thread_local bool on_io_thread;

static void io_wake(sb_cluster *cl)
{
    if (on_io_thread)
        return; /* it looks at the links again before it polls */
    uint64_t one = 1;
    while (write(cl->io_efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    /* EAGAIN: the counter is full, so the thread is being woken anyway. */
}

/* libnats: `nc` is connected (again) on `fd`; poll it for reading.
 * `loop` is the link, given to natsOptions_SetEventLoop(). */
static natsStatus
ev_attach(void **ud, void *loop, natsConnection *nc, natsSock fd)
{
    struct link *l = loop;
    pthread_mutex_lock(&l->cl->io_lock);
    l->ev_nc = nc;
    l->fd = fd;
    l->want_read = true;
    l->want_write = false;
    pthread_mutex_unlock(&l->cl->io_lock);
    *ud = l;
    io_wake(l->cl);
    return NATS_OK;
}

/* Record that the link's socket is (add) or is no longer (!add) to be
 * polled for *what, and have the I/O thread look again. */
static natsStatus want(struct link *l, bool *what, bool add)
{
    pthread_mutex_lock(&l->cl->io_lock);
    *what = add;
    pthread_mutex_unlock(&l->cl->io_lock);
    io_wake(l->cl);
    return NATS_OK;
}

static natsStatus ev_read(void *ud, bool add)
{
    struct link *l = ud;
    return want(l, &l->want_read, add);
}

static natsStatus ev_write(void *ud, bool add)
{
    struct link *l = ud;
    return want(l, &l->want_write, add);
}

/* libnats: the connection is closed; its socket is no longer ours. */
static natsStatus ev_detach(void *ud)
{
    struct link *l = ud;
    pthread_mutex_lock(&l->cl->io_lock);
    l->fd = -1;
    l->want_read = l->want_write = false;
    pthread_mutex_unlock(&l->cl->io_lock);
    io_wake(l->cl);
    return NATS_OK;
}

static void
publish_one(sb_cluster *cl, natsConnection *nc, const sb_frame *f, bool mark)
{
    char subj[512], rep[512];
    const char *data = f->text + f->data_off;
    int dl = (int)f->data_len;
    natsStatus s = NATS_INVALID_ARG;
    if (nc == NULL ||
        !subject(cl, subj, sizeof(subj), f->topic, f->topic_len) ||
        (f->reply && !subject(cl, rep, sizeof(rep), f->reply, f->reply_len))) {
        /* dropped below */
    } else if (mark) {
        natsMsg *m = NULL;
        s = natsMsg_Create(&m, subj, f->reply ? rep : NULL, data, dl);
        char v[64];
        snprintf(v, sizeof(v), "%s.%" PRIu64, cl->uid, f->origin);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, ORIGIN_HEADER, v);
        if (s == NATS_OK)
            s = natsConnection_PublishMsg(nc, m);
        natsMsg_Destroy(m);
    } else if (f->reply) {
        s = natsConnection_PublishRequest(nc, subj, rep, data, dl);
    } else {
        s = natsConnection_Publish(nc, subj, data, dl);
    }
    if (s != NATS_OK) {
        atomic_fetch_add(&cl->dropped, 1);
        uint64_t n;
        if (ratelog_hit(&cl->drop_log, &n))
            SB_LOG(SB_LOG_WARN,
                   "cluster dropped direction=out reason=%s count=%" PRIu64,
                   natsStatus_GetText(s), n);
        return;
    }
    atomic_fetch_add_explicit(&cl->msgs_sent, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&cl->bytes_sent, (uint64_t)dl,
                              memory_order_relaxed);
}

/* True while libnats holds few enough bytes for the socket to take more. */
static bool out_room(natsConnection *nc)
{
    return nc == NULL || natsConnection_Buffered(nc) < OUT_BUFFERED_MAX;
}

/* Publish what the bus queued, batch by batch, while there is room.
 * Returns -EPIPE once `outq` is closed and empty, 1 when frames are left
 * (no room), else 0. */
static int pump_out(sb_cluster *cl, natsConnection *nc)
{
    void *items[OUT_BATCH];
    sb_queue_clear_fd(cl->outq);
    for (;;) {
        if (!out_room(nc))
            return 1;
        int n = sb_queue_pop_batch(cl->outq, items, NULL, OUT_BATCH, 0);
        if (n == -EPIPE)
            return -EPIPE;
        if (n <= 0)
            return 0;
        for (int i = 0; i < n; i++) {
            uintptr_t v = (uintptr_t)items[i];
            sb_frame *f = (sb_frame *)(v & ~OUT_MARK);
            publish_one(cl, nc, f, (v & OUT_MARK) != 0);
            sb_frame_unref(&f);
        }
    }
}

/* Tell sb_cluster_stop() that what the bus handed over is written out
 * (or cannot be: the connection is down). */
static void out_drained(sb_cluster *cl)
{
    pthread_mutex_lock(&cl->lock);
    cl->out_drained = true;
    pthread_cond_broadcast(&cl->cond);
    pthread_mutex_unlock(&cl->lock);
}

static void *io_main(void *arg)
{
    sb_cluster *cl = arg;
    on_io_thread = true;
    bool out_open = true, out_more = false, drained = false;
    for (;;) {
        struct pollfd p[4];
        int n = 0, at[2] = {-1, -1};
        natsConnection *nc[2];
        p[n++] = (struct pollfd){.fd = cl->io_efd, .events = POLLIN};
        pthread_mutex_lock(&cl->io_lock);
        bool stop = cl->io_stop;
        for (int i = 0; i < 2; i++) {
            struct link *l = &cl->link[i];
            nc[i] = l->ev_nc;
            if (l->fd >= 0 && (l->want_read || l->want_write)) {
                at[i] = n;
                p[n++] = (struct pollfd){
                    .fd = l->fd,
                    .events = (short)((l->want_read ? POLLIN : 0) |
                                      (l->want_write ? POLLOUT : 0))};
            }
        }
        bool pub_writing = cl->link[LINK_PUB].want_write;
        pthread_mutex_unlock(&cl->io_lock);
        if (stop)
            break;
        if (!out_open && !drained &&
            (!pub_writing || atomic_load(&cl->state) != CL_CONNECTED)) {
            drained = true;
            out_drained(cl);
        }
        /* Frames left over wait for room (POLLOUT), not for the queue's
         * eventfd, which stays quiet while the queue is not empty. */
        int out_at = -1;
        bool out_ready = out_more && out_room(nc[LINK_PUB]);
        if (out_open && !out_more) {
            out_at = n;
            p[n++] =
                (struct pollfd){.fd = sb_queue_fd(cl->outq), .events = POLLIN};
        }
        if (poll(p, (nfds_t)n, out_ready ? 0 : -1) < 0) {
            if (errno != EINTR) {
                SB_LOG(SB_LOG_ERROR, "cluster poll_failed err=%s",
                       strerror(errno));
                poll(NULL, 0, 100); /* ENOMEM: breathe, then retry */
            }
            continue;
        }
        if (p[0].revents & POLLIN) {
            uint64_t v;
            if (read(cl->io_efd, &v, sizeof(v)) < 0 && errno != EAGAIN &&
                errno != EINTR)
                SB_LOG(SB_LOG_ERROR, "cluster wake_failed err=%s",
                       strerror(errno));
        }
        for (int i = 0; i < 2; i++) {
            short re = at[i] >= 0 ? p[at[i]].revents : 0;
            if (re & (POLLIN | POLLHUP | POLLERR))
                natsConnection_ProcessReadEvent(nc[i]);
            if (re & POLLOUT)
                natsConnection_ProcessWriteEvent(nc[i]);
            if (re & POLLNVAL) { /* closed under us: wait for libnats */
                pthread_mutex_lock(&cl->io_lock);
                if (cl->link[i].fd == p[at[i]].fd)
                    cl->link[i].fd = -1;
                pthread_mutex_unlock(&cl->io_lock);
            }
        }
        if (out_open && ((out_more && out_room(nc[LINK_PUB])) ||
                         (out_at >= 0 && p[out_at].revents))) {
            int rc = pump_out(cl, nc[LINK_PUB]);
            out_open = rc != -EPIPE;
            out_more = rc == 1;
            /* Write the batch now rather than on the next POLLOUT. */
            pthread_mutex_lock(&cl->io_lock);
            bool w =
                cl->link[LINK_PUB].want_write && cl->link[LINK_PUB].fd >= 0;
            pthread_mutex_unlock(&cl->io_lock);
            if (w)
                natsConnection_ProcessWriteEvent(nc[LINK_PUB]);
        }
    }
    if (!drained)
        out_drained(cl);
    return NULL;
}

/* ---- Life cycle -------------------------------------------------------- */

static natsStatus make_opts(sb_cluster *cl, int i, const char **urls, int nurls)
{
    struct link *l = &cl->link[i];
    natsOptions *o = NULL;
    char name[300];
    snprintf(name, sizeof(name), "sockbus %s %s", cl->node, l->name);
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetServers(o, urls, nurls);
    if (s == NATS_OK) /* the first URL first: a node's own NATS server */
        s = natsOptions_SetNoRandomize(o, true);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, RECONNECT_WAIT_MS);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, CONNECT_TIMEOUT_MS);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(o, PING_INTERVAL_MS);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(o, true, on_conn_event, l);
    /* Publications fail at once while disconnected instead of piling up
     * for a replay: 0 would mean libnats' 8 MiB default, so one byte (at
     * most one publication waits). */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(o, 1);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, on_conn_event, l);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, on_conn_event, l);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(o, on_conn_closed, l);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(o, on_nats_error, l);
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(o, true);
    if (s == NATS_OK)
        s = natsOptions_SetNoEcho(o, i == LINK_PUB);
    /* The I/O thread drives the socket (see the top); with SendAsap a
     * publication asks for a write at once instead of waking libnats'
     * flusher, and the I/O thread writes after each batch. */
    if (s == NATS_OK)
        s = natsOptions_SetEventLoop(o, l, ev_attach, ev_read, ev_write,
                                     ev_detach);
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(o, true);
    cl->opts[i] = o;
    return s;
}

/* Split the comma-separated URL list in place. Returns the count, or -1. */
static int split_urls(char *list, const char **urls, int max)
{
    int n = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t len = strlen(t);
        while (len > 0 && t[len - 1] == ' ')
            t[--len] = '\0';
        if (len == 0)
            continue;
        if (n == max)
            return -1;
        urls[n++] = t;
    }
    return n > 0 ? n : -1;
}

static void make_uid(char *out)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint64_t)getpid() ^ (sb_now_ms() << 20) ^ (uintptr_t)out;
    snprintf(out, 17, "%016" PRIx64, r);
}

sb_cluster *sb_cluster_new(sb_server *srv, char *err, size_t errlen)
{
    const sb_config *cfg = &srv->cfg;
    size_t pl = strlen(cfg->cluster_prefix);
    if (!sb_topic_valid(cfg->cluster_prefix, pl) || pl >= 128) {
        snprintf(err, errlen,
                 "--cluster-prefix: '%s' is not a valid topic (no wildcards)",
                 cfg->cluster_prefix);
        return NULL;
    }
    sb_cluster *cl = calloc(1, sizeof(*cl));
    char *list = strdup(cfg->cluster);
    const char *urls[MAX_URLS];
    int nurls = list ? split_urls(list, urls, MAX_URLS) : -1;
    if (cl == NULL || list == NULL || nurls < 0) {
        if (cl == NULL || list == NULL)
            snprintf(err, errlen, "cluster: out of memory");
        else
            snprintf(err, errlen,
                     "--cluster: expected 1 to %d comma-separated NATS URLs",
                     MAX_URLS);
        free(list);
        free(cl);
        return NULL;
    }
    cl->srv = srv;
    cl->bus_q = sb_bus_queue(srv->bus);
    cl->max_frame = cfg->max_frame;
    memcpy(cl->prefix, cfg->cluster_prefix, pl + 1);
    cl->plen = pl;
    snprintf(cl->node, sizeof(cl->node), "%s", srv->node);
    make_uid(cl->uid);
    snprintf(cl->plain_queue, sizeof(cl->plain_queue), "_sb_%s", cl->uid);
    pthread_mutex_init(&cl->lock, NULL);
    pthread_mutex_init(&cl->io_lock, NULL);
    pthread_mutex_init(&cl->in_lock, NULL);
    pthread_mutex_init(&cl->push_lock, NULL);
    cl->io_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sb_cond_init(&cl->cond);
    for (int i = 0; i < 2; i++) {
        cl->link[i].cl = cl;
        cl->link[i].name = i == LINK_PUB ? "pub" : "group";
        cl->link[i].status = NATS_CONN_STATUS_DISCONNECTED;
        cl->link[i].fd = -1;
    }
    cl->subs = sb_strmap_new();
    /* The path to NATS is a send queue with one consumer: as deep as a
     * connection's (--send-queue, --send-queue-bytes), so that bursts
     * ride through and only a link slower than the publishers on
     * average loses messages. */
    cl->outq = sb_queue_new(cfg->send_queue, cfg->send_queue_bytes);
    /* One delivery thread for every subscription: see the top. */
    natsStatus s = nats_SetMessageDeliveryPoolSize(1);
    for (int i = 0; i < 2 && s == NATS_OK; i++)
        s = make_opts(cl, i, urls, nurls);
    free(list);
    if (cl->subs == NULL || cl->outq == NULL || cl->io_efd < 0 ||
        s != NATS_OK) {
        snprintf(err, errlen, "cluster: cannot set up the NATS client: %s",
                 s != NATS_OK     ? natsStatus_GetText(s)
                 : cl->io_efd < 0 ? strerror(errno)
                                  : "out of memory");
        sb_cluster_free(cl);
        return NULL;
    }
    return cl;
}

int sb_cluster_start(sb_cluster *cl)
{
    int rc = sb_thread_create(&cl->io, "cluster-io", 256 * 1024, io_main, cl);
    if (rc < 0)
        return rc;
    cl->io_started = true;
    rc = sb_thread_create(&cl->ctl, "cluster", 256 * 1024, ctl_main, cl);
    if (rc < 0)
        return rc;
    cl->ctl_started = true;
    sb_bus_set_observer(cl->srv->bus, on_interest, cl);
    SB_LOG(SB_LOG_INFO, "cluster start node=%s prefix=%s uid=%s", cl->node,
           cl->prefix, cl->uid);
    return 0;
}

bool sb_cluster__out(sb_frame *f, bool mark_origin, void *ud)
{
    sb_cluster *cl = ud;
    if (atomic_load_explicit(&cl->closed, memory_order_relaxed))
        return false;
    if (atomic_load_explicit(&cl->state, memory_order_acquire) !=
        CL_CONNECTED) {
        /* Local subscribers get it in full; the rest of the cluster not. */
        atomic_fetch_add_explicit(&cl->dropped, 1, memory_order_relaxed);
        return false;
    }
    sb_frame *ref = sb_frame_ref(f);
    void *item = (void *)((uintptr_t)ref | (mark_origin ? OUT_MARK : 0));
    if (sb_queue_try_push(cl->outq, item, ref->len) < 0) {
        sb_frame_unref(&ref);
        atomic_fetch_add_explicit(&cl->dropped, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

/* Wait on the cluster cond until `done` or `ms` pass; lock held. */
static bool wait_for(sb_cluster *cl, bool (*done)(sb_cluster *), int ms)
{
    struct timespec ts;
    sb_deadline_in(&ts, ms);
    while (!done(cl))
        if (pthread_cond_timedwait(&cl->cond, &cl->lock, &ts) == ETIMEDOUT)
            return done(cl);
    return true;
}

static bool out_done(sb_cluster *cl)
{
    return cl->out_drained;
}

static bool subs_done(sb_cluster *cl)
{
    return cl->live_subs == 0;
}

static bool links_closed(sb_cluster *cl)
{
    for (int i = 0; i < 2; i++)
        if (atomic_load(&cl->link[i].nc) != NULL && !cl->link[i].closed_seen)
            return false;
    return true;
}

void sb_cluster_stop(sb_cluster *cl, int timeout_ms)
{
    if (cl == NULL || cl->stopped)
        return;
    cl->stopped = true;
    atomic_store(&cl->closed, true);
    /* What the bus handed over goes out first: the I/O thread empties the
     * queue and writes everything out (or gives up when NATS is down). */
    if (cl->outq != NULL)
        sb_queue_close(cl->outq);
    pthread_mutex_lock(&cl->lock);
    if (cl->io_started)
        wait_for(cl, out_done, timeout_ms > 0 ? timeout_ms : 1);
    cl->stopping = true;
    pthread_mutex_unlock(&cl->lock);
    pthread_cond_broadcast(&cl->cond);
    if (cl->ctl_started)
        sb_thread_join(cl->ctl); /* it unsubscribed everything */
    if (cl->io_started) {
        pthread_mutex_lock(&cl->io_lock);
        cl->io_stop = true;
        pthread_mutex_unlock(&cl->io_lock);
        io_wake(cl);
        sb_thread_join(cl->io);
    }
    for (int i = 0; i < 2; i++) {
        natsConnection *nc = atomic_load(&cl->link[i].nc);
        if (nc != NULL)
            natsConnection_Close(nc);
    }
    pthread_mutex_lock(&cl->lock);
    bool done = wait_for(cl, subs_done, CLOSE_WAIT_MS) &&
                wait_for(cl, links_closed, CLOSE_WAIT_MS);
    pthread_mutex_unlock(&cl->lock);
    if (done) { /* no handler runs any more */
        natsMsg *spent[SPENT_MAX];
        pthread_mutex_lock(&cl->in_lock);
        int n = take_spent_locked(cl, NULL, true, spent);
        pthread_mutex_unlock(&cl->in_lock);
        free_msgs(spent, n);
        for (int i = 0; i < cl->nin; i++)
            sb_frame_unref(&cl->in[i]);
        cl->nin = 0;
    }
    if (!done) {
        SB_LOG(SB_LOG_WARN, "cluster stop_incomplete node=%s", cl->node);
        cl->leak = true; /* a libnats callback may still use it */
        return;
    }
    for (int i = 0; i < 2; i++) {
        natsConnection *nc = atomic_exchange(&cl->link[i].nc, NULL);
        natsConnection_Destroy(nc);
    }
    SB_LOG(SB_LOG_INFO,
           "cluster stopped node=%s msgs_sent=%" PRIu64
           " msgs_received=%" PRIu64 " dropped=%" PRIu64 " invalid=%" PRIu64,
           cl->node, atomic_load(&cl->msgs_sent),
           atomic_load(&cl->msgs_received), atomic_load(&cl->dropped),
           atomic_load(&cl->invalid));
}

void sb_cluster_free(sb_cluster *cl)
{
    if (cl == NULL || cl->leak)
        return;
    sb_cluster_stop(cl, 0);
    if (cl->leak)
        return;
    while (cl->changes != NULL) {
        change *c = cl->changes;
        cl->changes = c->next;
        free(c);
    }
    sb_strmap_free(cl->subs);
    sb_queue_free(cl->outq, sb_frame_release);
    for (int i = 0; i < 2; i++)
        natsOptions_Destroy(cl->opts[i]);
    if (cl->io_efd >= 0)
        close(cl->io_efd);
    pthread_mutex_destroy(&cl->io_lock);
    pthread_mutex_destroy(&cl->in_lock);
    pthread_mutex_destroy(&cl->push_lock);
    pthread_cond_destroy(&cl->cond);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}

void sb_cluster_get_stats(sb_cluster *cl, sb_cluster_stats *o)
{
    o->state = state_names[atomic_load(&cl->state)];
    snprintf(o->node, sizeof(o->node), "%s", cl->node);
    pthread_mutex_lock(&cl->lock);
    snprintf(o->server, sizeof(o->server), "%s", cl->server);
    pthread_mutex_unlock(&cl->lock);
    o->msgs_sent = atomic_load(&cl->msgs_sent);
    o->bytes_sent = atomic_load(&cl->bytes_sent);
    o->msgs_received = atomic_load(&cl->msgs_received);
    o->bytes_received = atomic_load(&cl->bytes_received);
    o->dropped = atomic_load(&cl->dropped) + atomic_load(&cl->nats_dropped);
    o->invalid = atomic_load(&cl->invalid);
    o->subscriptions = atomic_load(&cl->nsubs);
}
