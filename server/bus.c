/* bus.c - the bus thread: subscriptions and routing. See bus.h.
 *
 * Who touches what:
 * - The bus thread alone owns the sublist, the subscription, group and
 *   interest tables, every connection's bus_* fields, and the observer it
 *   was handed through an op.
 * - `pause_lock` guards the pause list (workers add, the bus takes it).
 * - `nsubs` is atomic, read by any thread for stats.
 * - Other threads see the interest table only through copies the bus
 *   makes on request (OP_INTEREST, for /subz); `interest_pending` counts
 *   the requests not yet answered.
 *
 * A publication is routed once: the sublist gives every matching
 * subscription; plain subscribers each get a reference of the frame, and
 * each queue group hit gets one for the next eligible member in round
 * robin. A per-publication stamp on connections and groups makes each
 * connection receive one copy however many of its subscriptions match.
 * Frames for a connection are gathered during a batch and pushed with one
 * sb_queue_try_push_many() call; what does not fit meets the slow-consumer
 * policy. */
#define _GNU_SOURCE
#include "bus.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "server.h"
#include "strmap.h"
#include "sublist.h"
#include "thread.h"

#define BATCH_MAX 256
#define SUBLIST_CACHE 4096

enum op_type {
    OP_SUB,
    OP_UNSUB,
    OP_DETACH,
    OP_REPLY,
    OP_BARRIER,
    OP_OBSERVER,
    OP_INTEREST
};

struct interest_req;

struct barrier {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    bool abandoned; /* the waiter timed out: the bus frees it */
};

typedef struct bus_op {
    enum op_type type;
    sb_conn *conn;
    sb_frame *frame;           /* OP_REPLY */
    struct barrier *bar;       /* OP_BARRIER */
    struct interest_req *ireq; /* OP_INTEREST */
    sb_interest_fn fn;         /* OP_OBSERVER */
    void *ud;
    uint16_t plen, glen, idlen;
    char text[]; /* pattern, group, id */
} bus_op;

typedef struct bus_group {
    char *name;
    size_t nlen;
    size_t members;           /* subscriptions in this group */
    uint64_t rr;              /* round-robin counter */
    uint64_t stamp;           /* last publication that hit it */
    struct bus_sub **matched; /* members matched by that publication */
    size_t nmatched, cap;
    struct bus_group *hit_next;
} bus_group;

typedef struct bus_sub {
    sb_conn *conn;
    bus_group *group;
    struct bus_sub *next, *prev; /* the connection's list */
    char *key;                   /* in the subs table */
    size_t keylen;
    size_t plen;
    char pattern[];
} bus_sub;

struct sb_bus {
    sb_server *srv;
    sb_queue *q;
    pthread_t thread;
    bool started;
    sb_sublist *sl;
    sb_strmap *subs;     /* key(conn, group, pattern) -> bus_sub */
    sb_strmap *groups;   /* name -> bus_group */
    sb_strmap *interest; /* key(group, pattern) -> holder count */
    uint64_t stamp;
    sb_conn *dirty; /* connections with frames in bus_pend */
    sb_interest_fn observer;
    void *observer_ud;
    sb_bus_out_fn cluster_out; /* set before the thread starts */
    void *cluster_ud;
    atomic_uint_fast64_t nsubs;
    atomic_uint interest_pending; /* sb_bus_interest_copy() calls unanswered */

    pthread_mutex_t pause_lock;
    sb_conn *paused;
    atomic_bool any_paused;
};

static void *tag(bus_op *op)
{
    return (void *)((uintptr_t)op | 1u);
}

static bus_op *untag(void *item)
{
    return (bus_op *)((uintptr_t)item & ~(uintptr_t)1u);
}

/* ---- Ops --------------------------------------------------------------- */

static bus_op *op_new(enum op_type type, sb_conn *c, size_t text)
{
    bus_op *op = calloc(1, sizeof(*op) + text + 1);
    if (op == NULL)
        return NULL;
    op->type = type;
    op->conn = c;
    return op;
}

void *sb_bus_op_sub(
    sb_conn *c, bool unsub, sb_span pattern, sb_span group, sb_span id)
{
    size_t gl = group.p ? group.n : 0, il = id.p ? id.n : 0;
    bus_op *op = op_new(unsub ? OP_UNSUB : OP_SUB, c, pattern.n + gl + il);
    if (op == NULL)
        return NULL;
    op->plen = (uint16_t)pattern.n;
    op->glen = (uint16_t)gl;
    op->idlen = (uint16_t)il;
    memcpy(op->text, pattern.p, pattern.n);
    if (gl)
        memcpy(op->text + pattern.n, group.p, gl);
    if (il)
        memcpy(op->text + pattern.n + gl, id.p, il);
    return tag(op);
}

void *sb_bus_op_detach(sb_conn *c)
{
    bus_op *op = op_new(OP_DETACH, c, 0);
    return op ? tag(op) : NULL;
}

void *sb_bus_op_reply(sb_conn *c, sb_frame *frame)
{
    bus_op *op = op_new(OP_REPLY, c, 0);
    if (op == NULL)
        return NULL;
    op->frame = frame;
    return tag(op);
}

static void barrier_done(struct barrier *bar);
static void interest_done(struct interest_req *r, int err);
static void handle_interest(sb_bus *b, struct interest_req *r);

void sb_bus_item_free(void *item)
{
    if (sb_bus_item_is_frame(item)) {
        sb_frame_release(item);
        return;
    }
    bus_op *op = untag(item);
    if (op->bar != NULL)
        barrier_done(op->bar); /* never routed: release its waiter */
    if (op->ireq != NULL)
        interest_done(op->ireq, -EPIPE);
    sb_frame_unref(&op->frame);
    free(op);
}

/* ---- Delivery ---------------------------------------------------------- */

static void overflow(sb_bus *b, sb_conn *c, size_t lost)
{
    sb_server *s = b->srv;
    if (s->cfg.slow_policy == SB_SLOW_DROP) {
        atomic_fetch_add_explicit(&s->ctr.dropped, lost, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->dropped, lost, memory_order_relaxed);
        if (atomic_fetch_add(&c->dropped_pending, lost) == 0) {
            atomic_fetch_add(&s->ctr.slow_consumers, 1);
            SB_LOG(SB_LOG_WARN,
                   "slow_consumer id=%" PRIu64 " policy=drop dropping=yes",
                   c->id);
            /* The worker may have emptied its queue since our push
             * failed; wake it so that the notice goes out once there is
             * room, not with the next message. */
            sb_conn_wake(c);
        }
        return;
    }
    if (sb_conn_request_close(c, SB_ERR_SLOW_CONSUMER)) {
        atomic_fetch_add(&s->ctr.slow_consumers, 1);
        atomic_fetch_add_explicit(&s->ctr.dropped, lost, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->dropped, lost, memory_order_relaxed);
        SB_LOG(SB_LOG_WARN, "slow_consumer id=%" PRIu64 " policy=disconnect",
               c->id);
    }
}

/* Push the frames gathered for `c`; what does not fit is lost to it. */
static void flush_conn(sb_bus *b, sb_conn *c)
{
    size_t n = c->bus_npend;
    if (n == 0)
        return;
    size_t sizes[SB_CONN_PEND_MAX];
    for (size_t i = 0; i < n; i++)
        sizes[i] = c->bus_pend[i]->len;
    int r =
        sb_queue_try_push_many(c->sendq, (void *const *)c->bus_pend, sizes, n);
    size_t pushed = r < 0 ? 0 : (size_t)r;
    size_t lost = 0;
    for (size_t i = pushed; i < n; i++) {
        /* The policy is for messages: answers to the client's own
         * requests (ok, err, pong) are queued whatever the limit. The
         * worker stops reading requests while its queue is over the
         * limit, so these stay few. */
        if (r >= 0 && c->bus_pend[i]->kind != SB_FRAME_MSG &&
            sb_queue_push_force(c->sendq, c->bus_pend[i],
                                c->bus_pend[i]->len) == 0) {
            c->bus_pend[i] = NULL;
            continue;
        }
        lost += c->bus_pend[i]->kind == SB_FRAME_MSG;
        sb_frame_unref(&c->bus_pend[i]);
    }
    if (lost > 0 && r >= 0 && atomic_load(&c->close_reason) == 0)
        overflow(b, c, lost);
    c->bus_npend = 0;
}

static void pend_add(sb_bus *b, sb_conn *c, sb_frame *f)
{
    if (c->bus_npend == SB_CONN_PEND_MAX)
        flush_conn(b, c);
    if (!c->bus_dirty) {
        c->bus_dirty = true;
        c->bus_dirty_next = b->dirty;
        b->dirty = sb_conn_ref(c);
    }
    c->bus_pend[c->bus_npend++] = f;
}

static void flush_dirty(sb_bus *b)
{
    while (b->dirty != NULL) {
        sb_conn *c = b->dirty;
        b->dirty = c->bus_dirty_next;
        c->bus_dirty = false;
        c->bus_dirty_next = NULL;
        flush_conn(b, c);
        sb_conn_unref(c);
    }
}

static bool eligible(const sb_conn *c, const sb_frame *f)
{
    if (atomic_load_explicit(&c->close_reason, memory_order_relaxed) != 0)
        return false;
    return f->origin != c->id ||
           atomic_load_explicit(&c->echo, memory_order_relaxed);
}

static void deliver(sb_bus *b, sb_conn *c, sb_frame *f)
{
    if (c->bus_stamp == b->stamp)
        return; /* one copy per connection */
    c->bus_stamp = b->stamp;
    pend_add(b, c, sb_frame_ref(f));
}

static void pick_member(sb_bus *b, bus_group *g, sb_frame *f)
{
    size_t n = g->nmatched;
    size_t start = (size_t)(g->rr++ % n);
    for (size_t k = 0; k < n; k++) {
        bus_sub *s = g->matched[(start + k) % n];
        if (!eligible(s->conn, f))
            continue;
        deliver(b, s->conn, f);
        return;
    }
}

/* True when `g` is the group a SB_ROUTE_GROUP frame is for. */
static bool frame_group_is(const sb_frame *f, const bus_group *g)
{
    return g->nlen == f->group_len && memcmp(g->name, f->group, g->nlen) == 0;
}

/* True when a subscription in `r` belongs to a queue group. */
static bool any_group(const sb_sublist_result *r)
{
    for (size_t i = 0; r != NULL && i < r->n; i++)
        if (((const bus_sub *)r->items[i])->group != NULL)
            return true;
    return false;
}

static void route(sb_bus *b, sb_frame *f)
{
    const sb_sublist_result *r =
        sb_sublist_match(b->sl, f->topic, f->topic_len);
    /* Clustering (cluster.c): a publication made here goes to NATS once,
     * when the cluster hook takes it; NATS then picks one member of each
     * queue group cluster-wide and hands it back as a SB_ROUTE_GROUP
     * frame, so here it only reaches plain subscribers. Frames from NATS
     * are never handed back to the hook: no loops. The hook is told when
     * a local group member may get the publication back from NATS while
     * its publisher has echo off: only then must the copy name its
     * publisher. */
    int mode = f->route;
    if (mode == SB_ROUTE_LOCAL && b->cluster_out != NULL &&
        b->cluster_out(f, f->no_echo && any_group(r), b->cluster_ud))
        mode = SB_ROUTE_PLAIN_ONLY;
    if (r != NULL && r->n > 0) {
        uint64_t stamp = ++b->stamp;
        bus_group *hit = NULL;
        for (size_t i = 0; i < r->n; i++) {
            bus_sub *s = r->items[i];
            bus_group *g = s->group;
            if (g == NULL) {
                if (!eligible(s->conn, f))
                    continue;
                if (mode != SB_ROUTE_GROUP)
                    deliver(b, s->conn, f);
                else /* had it as a plain subscriber: one copy, as here */
                    s->conn->bus_stamp = stamp;
                continue;
            }
            if (mode == SB_ROUTE_PLAIN_ONLY ||
                (mode == SB_ROUTE_GROUP && !frame_group_is(f, g)))
                continue;
            if (g->stamp != stamp) {
                g->stamp = stamp;
                g->nmatched = 0;
                g->hit_next = hit;
                hit = g;
            }
            g->matched[g->nmatched++] = s;
        }
        for (bus_group *g = hit; g != NULL; g = g->hit_next)
            pick_member(b, g, f);
    }
    sb_frame_unref(&f);
}

/* ---- Subscriptions ----------------------------------------------------- */

/* Key of a subscription: connection id, group length, group, pattern. */
static size_t sub_key(
    char *k, uint64_t id, const char *g, size_t gl, const char *p, size_t pl)
{
    memcpy(k, &id, 8);
    k[8] = (char)(gl & 0xff);
    memcpy(k + 9, g, gl);
    memcpy(k + 9 + gl, p, pl);
    return 9 + gl + pl;
}

static void interest_change(
    sb_bus *b, const char *p, size_t pl, const char *g, size_t gl, int delta)
{
    char key[2 + 2 * 256];
    key[0] = (char)(gl & 0xff);
    memcpy(key + 1, g, gl);
    memcpy(key + 1 + gl, p, pl);
    size_t kn = 1 + gl + pl;
    uintptr_t n = (uintptr_t)sb_strmap_get(b->interest, key, kn);
    if (delta > 0) {
        if (sb_strmap_put(b->interest, key, kn, (void *)(n + 1)) < 0)
            return;
        if (n == 0 && b->observer != NULL)
            b->observer(p, pl, gl ? g : NULL, gl, 1, b->observer_ud);
    } else if (n <= 1) {
        sb_strmap_del(b->interest, key, kn);
        if (n == 1 && b->observer != NULL)
            b->observer(p, pl, gl ? g : NULL, gl, 0, b->observer_ud);
    } else {
        sb_strmap_put(b->interest, key, kn, (void *)(n - 1));
    }
}

static bus_group *group_get(sb_bus *b, const char *name, size_t n)
{
    bus_group *g = sb_strmap_get(b->groups, name, n);
    if (g != NULL)
        return g;
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->name = malloc(n + 1);
    if (g->name == NULL || sb_strmap_put(b->groups, name, n, g) < 0) {
        free(g->name);
        free(g);
        return NULL;
    }
    memcpy(g->name, name, n);
    g->name[n] = '\0';
    g->nlen = n;
    return g;
}

static int group_join(bus_group *g)
{
    if (g->members + 1 > g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 4;
        bus_sub **m = realloc(g->matched, cap * sizeof(*m));
        if (m == NULL)
            return -ENOMEM;
        g->matched = m;
        g->cap = cap;
    }
    g->members++;
    return 0;
}

static void group_free(sb_bus *b, bus_group *g)
{
    sb_strmap_del(b->groups, g->name, g->nlen);
    free(g->matched);
    free(g->name);
    free(g);
}

static void group_leave(sb_bus *b, bus_group *g)
{
    if (--g->members == 0)
        group_free(b, g);
}

static void reply(sb_bus *b, sb_conn *c, sb_frame *f)
{
    if (f != NULL)
        pend_add(b, c, f);
}

static int
sub_add(sb_bus *b, sb_conn *c, const bus_op *op, const char *key, size_t kn)
{
    const char *p = op->text, *g = op->text + op->plen;
    bus_sub *s = calloc(1, sizeof(*s) + op->plen + 1);
    if (s == NULL)
        return -ENOMEM;
    memcpy(s->pattern, p, op->plen);
    s->plen = op->plen;
    s->conn = c;
    s->key = malloc(kn);
    if (s->key == NULL)
        goto fail;
    memcpy(s->key, key, kn);
    s->keylen = kn;
    if (op->glen > 0) {
        bus_group *grp = group_get(b, g, op->glen);
        if (grp == NULL)
            goto fail;
        if (group_join(grp) < 0) {
            if (grp->members == 0)
                group_free(b, grp);
            goto fail;
        }
        s->group = grp;
    }
    if (sb_sublist_insert(b->sl, p, op->plen, s) < 0)
        goto fail_group;
    if (sb_strmap_put(b->subs, key, kn, s) < 0) {
        sb_sublist_remove(b->sl, p, op->plen, s);
        goto fail_group;
    }
    s->next = c->bus_subs;
    if (c->bus_subs)
        c->bus_subs->prev = s;
    c->bus_subs = s;
    c->bus_nsubs++;
    atomic_store_explicit(&c->nsubs, c->bus_nsubs, memory_order_relaxed);
    atomic_fetch_add(&b->nsubs, 1);
    interest_change(b, p, op->plen, g, op->glen, +1);
    return 0;
fail_group:
    if (s->group != NULL)
        group_leave(b, s->group);
fail:
    free(s->key);
    free(s);
    return -ENOMEM;
}

static void sub_remove(sb_bus *b, bus_sub *s)
{
    sb_conn *c = s->conn;
    sb_sublist_remove(b->sl, s->pattern, s->plen, s);
    sb_strmap_del(b->subs, s->key, s->keylen);
    if (s->prev)
        s->prev->next = s->next;
    else
        c->bus_subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    c->bus_nsubs--;
    atomic_store_explicit(&c->nsubs, c->bus_nsubs, memory_order_relaxed);
    atomic_fetch_sub(&b->nsubs, 1);
    const char *g = s->group ? s->group->name : "";
    size_t gl = s->group ? s->group->nlen : 0;
    interest_change(b, s->pattern, s->plen, g, gl, -1);
    if (s->group)
        group_leave(b, s->group);
    free(s->key);
    free(s);
}

static void handle_sub(sb_bus *b, bus_op *op)
{
    sb_conn *c = op->conn;
    sb_span id = {op->idlen ? op->text + op->plen + op->glen : NULL, op->idlen};
    char key[9 + 2 * 256];
    size_t kn =
        sub_key(key, c->id, op->text + op->plen, op->glen, op->text, op->plen);
    bus_sub *s = sb_strmap_get(b->subs, key, kn);

    if (c->bus_detached) {
        /* The connection left before this op was routed. */
    } else if (op->type == OP_UNSUB) {
        if (s == NULL) {
            reply(b, c,
                  sb_msg_build_err(SB_ERR_NOT_SUBSCRIBED,
                                   "no such subscription on this connection",
                                   id));
        } else {
            sub_remove(b, s);
            if (id.p)
                reply(b, c, sb_msg_build_ok(id));
        }
    } else if (s != NULL) {
        if (id.p) /* subscribing twice is harmless: one subscription */
            reply(b, c, sb_msg_build_ok(id));
    } else if (c->bus_nsubs >= c->cfg->max_subs) {
        reply(b, c,
              sb_msg_build_err(SB_ERR_TOO_MANY_SUBS,
                               "subscription limit of this connection reached",
                               id));
    } else if (sub_add(b, c, op, key, kn) < 0) {
        SB_LOG(SB_LOG_ERROR, "subscribe failed id=%" PRIu64 " err=ENOMEM",
               c->id);
        sb_conn_request_close(c, SB_CLOSE_NOMEM);
    } else if (id.p) {
        reply(b, c, sb_msg_build_ok(id));
    }
    /* The answer must reach the queue before the worker may queue its own
     * replies directly again (see conn.c flush_held). */
    flush_conn(b, c);
    atomic_fetch_sub(&c->outstanding, 1);
}

static void handle_detach(sb_bus *b, sb_conn *c)
{
    c->bus_detached = true;
    while (c->bus_subs != NULL)
        sub_remove(b, c->bus_subs);
    flush_conn(b, c); /* the queue is closed: this frees what was pending */
    sb_conn_unref(c);
}

static void report_interest(const void *key, size_t n, void *value, void *ud)
{
    (void)value;
    sb_bus *b = ud;
    const char *k = key;
    size_t gl = (unsigned char)k[0];
    b->observer(k + 1 + gl, n - 1 - gl, gl ? k + 1 : NULL, gl, 1,
                b->observer_ud);
}

static void barrier_done(struct barrier *bar)
{
    pthread_mutex_lock(&bar->lock);
    bool abandoned = bar->abandoned;
    bar->done = true;
    pthread_cond_signal(&bar->cond);
    pthread_mutex_unlock(&bar->lock);
    if (abandoned) {
        pthread_cond_destroy(&bar->cond);
        pthread_mutex_destroy(&bar->lock);
        free(bar);
    }
}

static void handle_op(sb_bus *b, bus_op *op)
{
    switch (op->type) {
    case OP_SUB:
    case OP_UNSUB:
        handle_sub(b, op);
        break;
    case OP_DETACH:
        handle_detach(b, op->conn);
        break;
    case OP_REPLY:
        if (!op->conn->bus_detached) {
            pend_add(b, op->conn, op->frame);
            op->frame = NULL;
            flush_conn(b, op->conn);
        }
        atomic_fetch_sub(&op->conn->outstanding, 1);
        break;
    case OP_BARRIER:
        flush_dirty(b);
        barrier_done(op->bar);
        break;
    case OP_OBSERVER:
        b->observer = op->fn;
        b->observer_ud = op->ud;
        if (b->observer != NULL)
            sb_strmap_foreach(b->interest, report_interest, b);
        break;
    case OP_INTEREST:
        handle_interest(b, op->ireq);
        break;
    }
    sb_frame_unref(&op->frame);
    free(op);
}

/* ---- The thread -------------------------------------------------------- */

static void wake_paused(sb_bus *b)
{
    if (!atomic_load_explicit(&b->any_paused, memory_order_acquire))
        return;
    /* Move the list to bus-only links under the lock: once pause_listed is
     * false a worker may register again and rewrite pause_next, so the
     * walk after unlocking must not follow it. */
    pthread_mutex_lock(&b->pause_lock);
    sb_conn *list = NULL;
    for (sb_conn *c = b->paused; c != NULL; c = c->pause_next) {
        c->pause_listed = false;
        c->bus_wake_next = list;
        list = c;
    }
    b->paused = NULL;
    atomic_store(&b->any_paused, false);
    pthread_mutex_unlock(&b->pause_lock);
    while (list != NULL) {
        sb_conn *c = list;
        list = c->bus_wake_next;
        c->bus_wake_next = NULL;
        sb_conn_wake(c);
        sb_conn_unref(c); /* the pause list's reference */
    }
}

static void *bus_main(void *arg)
{
    sb_bus *b = arg;
    void *items[BATCH_MAX];
    for (;;) {
        int n = sb_queue_pop_batch(b->q, items, NULL, BATCH_MAX, -1);
        if (n == -EPIPE)
            break;
        if (n <= 0)
            continue;
        wake_paused(b);
        for (int i = 0; i < n; i++) {
            if (sb_bus_item_is_frame(items[i]))
                route(b, items[i]);
            else
                handle_op(b, untag(items[i]));
        }
        flush_dirty(b);
    }
    wake_paused(b);
    return NULL;
}

sb_bus *sb_bus_new(sb_server *srv)
{
    sb_bus *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->srv = srv;
    b->q = sb_queue_new(srv->cfg.recv_queue, srv->cfg.recv_queue_bytes);
    b->sl = sb_sublist_new(SUBLIST_CACHE);
    b->subs = sb_strmap_new();
    b->groups = sb_strmap_new();
    b->interest = sb_strmap_new();
    pthread_mutex_init(&b->pause_lock, NULL);
    if (b->q == NULL || b->sl == NULL || b->subs == NULL || b->groups == NULL ||
        b->interest == NULL) {
        sb_bus_stop(b);
        errno = ENOMEM;
        return NULL;
    }
    return b;
}

int sb_bus_start(sb_bus *b)
{
    int rc = sb_thread_create(&b->thread, "bus", 256 * 1024, bus_main, b);
    if (rc == 0)
        b->started = true;
    return rc;
}

static void free_sub_entry(const void *key, size_t n, void *value, void *ud)
{
    (void)key;
    (void)n;
    (void)ud;
    bus_sub *s = value;
    free(s->key);
    free(s);
}

static void free_group_entry(const void *key, size_t n, void *value, void *ud)
{
    (void)key;
    (void)n;
    (void)ud;
    bus_group *g = value;
    free(g->matched);
    free(g->name);
    free(g);
}

void sb_bus_stop(sb_bus *b)
{
    if (b == NULL)
        return;
    if (b->q != NULL)
        sb_queue_close(b->q);
    if (b->started)
        sb_thread_join(b->thread);
    if (b->subs != NULL)
        sb_strmap_foreach(b->subs, free_sub_entry, NULL);
    if (b->groups != NULL)
        sb_strmap_foreach(b->groups, free_group_entry, NULL);
    sb_strmap_free(b->subs);
    sb_strmap_free(b->groups);
    sb_strmap_free(b->interest);
    sb_sublist_free(b->sl);
    sb_queue_free(b->q, sb_bus_item_free);
    pthread_mutex_destroy(&b->pause_lock);
    free(b);
}

sb_queue *sb_bus_queue(sb_bus *b)
{
    return b->q;
}

void sb_bus_pause(sb_bus *b, sb_conn *c)
{
    pthread_mutex_lock(&b->pause_lock);
    if (!c->pause_listed) {
        c->pause_listed = true;
        c->pause_next = b->paused;
        b->paused = sb_conn_ref(c);
        atomic_store_explicit(&b->any_paused, true, memory_order_release);
    }
    pthread_mutex_unlock(&b->pause_lock);
}

int sb_bus_barrier(sb_bus *b, int timeout_ms)
{
    struct barrier *bar = calloc(1, sizeof(*bar));
    if (bar == NULL)
        return -ENOMEM;
    pthread_mutex_init(&bar->lock, NULL);
    sb_cond_init(&bar->cond);
    bus_op *op = op_new(OP_BARRIER, NULL, 0);
    if (op != NULL)
        op->bar = bar;
    int rc = op ? sb_queue_push_force(b->q, tag(op), 0) : -ENOMEM;
    if (rc < 0) {
        free(op);
        pthread_cond_destroy(&bar->cond);
        pthread_mutex_destroy(&bar->lock);
        free(bar);
        return rc;
    }
    struct timespec ts;
    sb_deadline_in(&ts, timeout_ms >= 0 ? timeout_ms : 0);
    pthread_mutex_lock(&bar->lock);
    rc = 0;
    while (!bar->done && rc == 0)
        rc = timeout_ms < 0
                 ? pthread_cond_wait(&bar->cond, &bar->lock)
                 : pthread_cond_timedwait(&bar->cond, &bar->lock, &ts);
    bool done = bar->done;
    if (!done)
        bar->abandoned = true;
    pthread_mutex_unlock(&bar->lock);
    if (!done)
        return -ETIMEDOUT;
    pthread_cond_destroy(&bar->cond);
    pthread_mutex_destroy(&bar->lock);
    free(bar);
    return 0;
}

uint64_t sb_bus_subscriptions(sb_bus *b)
{
    return atomic_load(&b->nsubs);
}

void sb_bus_set_cluster_out(sb_bus *b, sb_bus_out_fn fn, void *ud)
{
    b->cluster_out = fn;
    b->cluster_ud = ud;
}

void sb_bus_set_observer(sb_bus *b, sb_interest_fn fn, void *ud)
{
    bus_op *op = op_new(OP_OBSERVER, NULL, 0);
    if (op == NULL)
        return;
    op->fn = fn;
    op->ud = ud;
    if (sb_queue_push_force(b->q, tag(op), 0) < 0)
        free(op);
}

/* ---- Interest copies (/subz) ------------------------------------------- */

#define INTEREST_PENDING_MAX 4

/* One sb_bus_interest_copy() call. The waiter and the bus share it; whoever
 * finishes last frees it (the bus, when the waiter gave up). */
struct interest_req {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    bool abandoned;
    int err;
    size_t max;             /* entries wanted at most */
    size_t n, total;        /* copied, and held in the table */
    size_t bytes;           /* string bytes of the copied entries */
    char *strings;          /* next free byte after the entries */
    sb_bus_interest *items; /* one allocation: entries, then strings */
    atomic_uint *pending;   /* the bus's count of unanswered calls */
};

static void interest_req_free(struct interest_req *r)
{
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r->items);
    free(r);
}

static void interest_done(struct interest_req *r, int err)
{
    atomic_fetch_sub(r->pending, 1);
    pthread_mutex_lock(&r->lock);
    bool abandoned = r->abandoned;
    r->err = err;
    r->done = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (abandoned)
        interest_req_free(r);
}

/* Interest keys are: group length (one byte), group, pattern. */
static void interest_size(const void *key, size_t n, void *value, void *ud)
{
    (void)key;
    (void)value;
    struct interest_req *r = ud;
    r->total++;
    if (r->n < r->max) {
        r->n++;
        r->bytes += n + 1; /* both strings with their NULs */
    }
}

static void interest_copy(const void *key, size_t n, void *value, void *ud)
{
    struct interest_req *r = ud;
    if (r->n == r->max)
        return;
    const char *k = key;
    size_t gl = (unsigned char)k[0], pl = n - 1 - gl;
    sb_bus_interest *e = &r->items[r->n++];
    e->holders = (uint64_t)(uintptr_t)value;
    e->pattern = memcpy(r->strings, k + 1 + gl, pl);
    r->strings[pl] = '\0';
    r->strings += pl + 1;
    e->group = NULL;
    if (gl > 0) {
        e->group = memcpy(r->strings, k + 1, gl);
        r->strings[gl] = '\0';
        r->strings += gl + 1;
    }
}

/* On the bus thread: two passes over the table (size, then copy) into
 * one allocation, so the waiter has nothing of the bus's to touch. */
static void handle_interest(sb_bus *b, struct interest_req *r)
{
    r->n = r->total = r->bytes = 0;
    sb_strmap_foreach(b->interest, interest_size, r);
    r->max = r->n;
    r->items = malloc(r->n * sizeof(*r->items) + r->bytes + 1);
    if (r->items == NULL) {
        interest_done(r, -ENOMEM);
        return;
    }
    r->strings = (char *)(r->items + r->n);
    r->n = 0;
    sb_strmap_foreach(b->interest, interest_copy, r);
    interest_done(r, 0);
}

int sb_bus_interest_copy(
    sb_bus *b, size_t max, int timeout_ms, sb_bus_interest **out, size_t *total)
{
    if (max > INT_MAX)
        max = INT_MAX;
    /* A bus too busy to answer must not pile up requests in its queue. */
    if (atomic_fetch_add(&b->interest_pending, 1) >= INTEREST_PENDING_MAX) {
        atomic_fetch_sub(&b->interest_pending, 1);
        return -EBUSY;
    }
    struct interest_req *r = calloc(1, sizeof(*r));
    bus_op *op = op_new(OP_INTEREST, NULL, 0);
    if (r == NULL || op == NULL) {
        free(r);
        free(op);
        atomic_fetch_sub(&b->interest_pending, 1);
        return -ENOMEM;
    }
    pthread_mutex_init(&r->lock, NULL);
    sb_cond_init(&r->cond);
    r->max = max;
    r->pending = &b->interest_pending;
    op->ireq = r;
    int rc = sb_queue_push_force(b->q, tag(op), 0);
    if (rc < 0) {
        free(op);
        atomic_fetch_sub(&b->interest_pending, 1);
        interest_req_free(r);
        return rc;
    }
    struct timespec ts;
    sb_deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&r->lock);
    rc = 0;
    while (!r->done && rc == 0)
        rc = pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    bool done = r->done;
    if (!done)
        r->abandoned = true; /* the bus frees it when it gets there */
    pthread_mutex_unlock(&r->lock);
    if (!done)
        return -ETIMEDOUT;
    rc = r->err;
    if (rc == 0) {
        *out = r->items;
        *total = r->total;
        r->items = NULL;
        rc = (int)r->n;
    }
    interest_req_free(r);
    return rc;
}
