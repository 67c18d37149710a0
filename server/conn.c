/* conn.c - the connection worker. See conn.h.
 *
 * Who touches what:
 * - The worker thread owns the socket (only it reads, writes and closes
 *   it), the framer, out[], held[], the heartbeat and auth state.
 * - The bus thread reads `id`, `echo`, `close_reason` and pushes into
 *   `sendq`; its bus_* fields are its own.
 * - Any thread may set `close_reason` (first writer wins) and wake the
 *   worker through the send queue's eventfd; the worker notices on its next
 *   loop.
 * - `cfg` is the settings snapshot taken at creation: immutable, read by
 *   any thread, released with the connection. Reloads affect only newer
 *   connections, except the token, which connect reads from the live one.
 * - Monitoring counters (msgs/bytes in and out, last_rx_ms) are written
 *   by the worker alone, `dropped` and `nsubs` by the bus alone, and read
 *   by the http thread with relaxed loads; the worker writes `name` under
 *   the server lock, which /connz holds while it copies it.
 * - `refs`: the worker holds one and the bus one (dropped when it handles
 *   the detach op the worker pushes last); the pause list holds one per
 *   entry. The last reference frees the connection and its queue.
 *
 * The worker never blocks anywhere but poll(): when the bus's receive queue
 * is full it keeps the outputs it could not queue in held[], stops reading
 * (TCP then pushes back on the client) and is woken by the bus when room
 * frees up. Frames it has not handled yet stay in the framer. */
#define _GNU_SOURCE
#include "conn.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "live.h"
#include "log.h"

#define READ_CHUNK (64 * 1024)
#define READS_PER_WAKE 16 /* then let writes and other work run */
#define WRITES_PER_WAKE 32
#define LINGER_MS 2000 /* time to flush a final err before closing */

const char *sb_conn_reason_str(int reason)
{
    switch (reason) {
    case 0:
        return "open";
    case SB_CLOSE_EOF:
        return "eof";
    case SB_CLOSE_IO:
        return "io_error";
    case SB_CLOSE_NOMEM:
        return "out_of_memory";
    case SB_CLOSE_UNSUB:
        return "unsubscribed";
    default:
        return sb_err_str((sb_err)reason);
    }
}

bool sb_conn__token_equal(const char *a, size_t an, const char *b, size_t bn)
{
    /* Compare every byte of the longer input so that the time taken says
     * nothing about where a guess went wrong. */
    size_t n = an > bn ? an : bn;
    unsigned char diff = (unsigned char)(an != bn);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < an ? (unsigned char)a[i] : 0;
        unsigned char y = i < bn ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    return diff == 0;
}

/* Add to a monitoring counter this thread alone writes: a relaxed load and
 * store, no locked instruction; readers still see whole values. */
static void conn_count(atomic_uint_fast64_t *ctr, uint64_t n)
{
    atomic_store_explicit(ctr,
                          atomic_load_explicit(ctr, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static uint64_t last_rx(sb_conn *c)
{
    return atomic_load_explicit(&c->last_rx_ms, memory_order_relaxed);
}

static sb_conn *conn_alloc(sb_server *srv)
{
    sb_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->cfg = sb_live_get(srv->live);
    c->sendq = sb_queue_new(c->cfg->send_queue, c->cfg->send_queue_bytes);
    if (c->sendq == NULL) {
        sb_live_put(c->cfg);
        free(c);
        return NULL;
    }
    /* One reference for the worker, one for the bus (see above). */
    atomic_init(&c->refs, 2);
    atomic_init(&c->echo, true);
    c->srv = srv;
    c->id = atomic_fetch_add(&srv->next_id, 1);
    c->created_ms = sb_now_ms();
    atomic_init(&c->last_rx_ms, c->created_ms);
    c->io.fd = -1;
    sb_framer_init(&c->framer, c->cfg->max_frame);
    return c;
}

sb_conn *sb_conn_new(sb_server *srv, int fd, const char *peer)
{
    sb_conn *c = conn_alloc(srv);
    if (c == NULL)
        return NULL;
    sb_io_init_plain(&c->io, fd);
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->authed = !c->cfg->has_token;
    return c;
}

sb_conn *sb_conn_new_inproc(sb_server *srv, struct sb_subscription *sub)
{
    sb_conn *c = conn_alloc(srv);
    if (c == NULL)
        return NULL;
    c->inproc = true;
    c->sub = sub;
    snprintf(c->peer, sizeof(c->peer), "in-process");
    return c;
}

sb_conn *sb_conn_ref(sb_conn *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void sb_conn_unref(sb_conn *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    sb_queue_free(c->sendq, sb_frame_release);
    sb_live_put(c->cfg);
    free(c);
}

bool sb_conn_request_close(sb_conn *c, int reason)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&c->close_reason, &expected, reason))
        return false;
    if (c->inproc)
        sb_queue_close(c->sendq); /* wakes its thread out of pop */
    else
        sb_queue_wake(c->sendq);
    return true;
}

void sb_conn_wake(sb_conn *c)
{
    sb_queue_wake(c->sendq);
}

/* ---- Outputs ----------------------------------------------------------- */

static void hold(sb_conn *c, void *item, size_t bytes, bool to_bus)
{
    unsigned i = (c->held_head + c->held_n) % SB_CONN_HELD_MAX;
    c->held[i] = (sb_held){item, (uint32_t)bytes, to_bus};
    c->held_n++;
}

static void hold_reply(sb_conn *c, sb_frame *f)
{
    if (f != NULL)
        hold(c, f, f->len, false);
}

static void reply_err(sb_conn *c, sb_err code, const char *msg, sb_span id)
{
    hold_reply(c, sb_msg_build_err(code, msg, id));
}

static void reply_ok(sb_conn *c, sb_span id)
{
    if (id.p != NULL)
        hold_reply(c, sb_msg_build_ok(id));
}

static void held_pop(sb_conn *c, unsigned n)
{
    c->held_head = (c->held_head + n) % SB_CONN_HELD_MAX;
    c->held_n -= n;
}

/* Queue what handled frames produced, in order: replies into our send
 * queue, the rest into the bus's. Returns true when nothing is left. */
static bool flush_held(sb_conn *c)
{
    sb_server *s = c->srv;
    sb_queue *rq = sb_bus_queue(s->bus);
    bool registered = false;

    while (c->held_n > 0) {
        sb_held *h = &c->held[c->held_head];
        if (!h->to_bus) {
            sb_frame *f = h->item;
            if (atomic_load(&c->outstanding) > 0) {
                /* The bus still owes an answer to an earlier sub/unsub:
                 * let it queue this reply after that answer. */
                void *op = sb_bus_op_reply(c, f);
                if (op == NULL) {
                    sb_frame_unref(&f);
                    held_pop(c, 1);
                    continue;
                }
                /* Until the bus has queued it, later replies follow it
                 * through the bus too. */
                atomic_fetch_add(&c->outstanding, 1);
                *h = (sb_held){op, 0, true};
            } else {
                if (sb_queue_push_force(c->sendq, f, f->len) < 0)
                    sb_frame_unref(&f);
                held_pop(c, 1);
                continue;
            }
        }
        void *items[SB_CONN_HELD_MAX];
        size_t sizes[SB_CONN_HELD_MAX];
        unsigned k = 0;
        while (k < c->held_n) {
            sb_held *x = &c->held[(c->held_head + k) % SB_CONN_HELD_MAX];
            if (!x->to_bus)
                break;
            items[k] = x->item;
            sizes[k] = x->bytes;
            k++;
        }
        int r = sb_queue_try_push_many(rq, items, sizes, k);
        if (r < 0) {
            /* The bus is gone (the server is stopping): nothing to do. */
            for (unsigned i = 0; i < k; i++)
                sb_bus_item_free(items[i]);
            held_pop(c, k);
            continue;
        }
        uint64_t pubs = 0;
        for (int i = 0; i < r; i++)
            pubs += sb_bus_item_is_frame(items[i]);
        if (pubs > 0) {
            atomic_fetch_add_explicit(&s->ctr.msgs_in, pubs,
                                      memory_order_relaxed);
            conn_count(&c->msgs_in, pubs);
        }
        held_pop(c, (unsigned)r);
        if ((unsigned)r < k) {
            if (registered)
                break;
            /* Ask the bus for a wake-up, then try once more: it may have
             * made room before it could see the request. */
            sb_bus_pause(s->bus, c);
            registered = true;
        }
    }
    c->paused = c->held_n > 0;
    return !c->paused;
}

/* ---- Handling client frames -------------------------------------------- */

static void handle_connect(sb_conn *c, const sb_client_msg *m)
{
    /* The token is the current one, not the one at accept: a reload
     * applies to every connect from then on. */
    const sb_config *cfg = sb_live_get(c->srv->live);
    bool ok = !cfg->has_token ||
              (m->token.p != NULL &&
               sb_conn__token_equal(m->token.p, m->token.n, cfg->token,
                                    strlen(cfg->token)));
    sb_live_put(cfg);
    if (!ok) {
        reply_err(c, SB_ERR_AUTH_FAILED, "authentication failed", m->id);
        sb_conn_request_close(c, SB_ERR_AUTH_FAILED);
        return;
    }
    c->authed = true;
    if (m->name.p != NULL) {
        /* Under the server lock: /connz copies it from another thread. */
        pthread_mutex_lock(&c->srv->lock);
        memcpy(c->name, m->name.p, m->name.n);
        c->name[m->name.n] = '\0';
        pthread_mutex_unlock(&c->srv->lock);
    }
    if (m->echo >= 0)
        atomic_store(&c->echo, m->echo == 1);
    reply_ok(c, m->id);
}

static void handle_stats(sb_conn *c)
{
    sb_stats st;
    sb_server_stats(c->srv, &st);
    hold_reply(c, sb_msg_build_stats(&st));
}

static void handle_frame(sb_conn *c, char *frame, size_t len)
{
    sb_client_msg m;
    sb_err e = sb_msg_parse(frame, len, &m);

    if (e != SB_OK) {
        reply_err(c, e, m.err_msg, m.id);
        return;
    }
    if (!c->authed && m.op != SB_OP_CONNECT && m.op != SB_OP_PING) {
        reply_err(c, SB_ERR_AUTH_REQUIRED,
                  "authentication required: send connect with a token", m.id);
        if (++c->auth_strikes >= 3)
            sb_conn_request_close(c, SB_ERR_AUTH_REQUIRED);
        return;
    }
    switch (m.op) {
    case SB_OP_CONNECT:
        handle_connect(c, &m);
        return;
    case SB_OP_SUB:
    case SB_OP_UNSUB: {
        void *op =
            sb_bus_op_sub(c, m.op == SB_OP_UNSUB, m.topic, m.group, m.id);
        if (op == NULL) {
            sb_conn_request_close(c, SB_CLOSE_NOMEM);
            return;
        }
        atomic_fetch_add(&c->outstanding, 1);
        hold(c, op, 0, true);
        return;
    }
    case SB_OP_PUB: {
        sb_frame *f = sb_msg_build_msg(m.topic, m.data, m.reply, c->id);
        if (f == NULL) {
            sb_conn_request_close(c, SB_CLOSE_NOMEM);
            return;
        }
        /* Known before the frame leaves: the cluster marks such frames so
         * that a copy NATS hands back to this node skips the publisher. */
        f->no_echo = !atomic_load_explicit(&c->echo, memory_order_relaxed);
        hold(c, f, f->len, true);
        reply_ok(c, m.id);
        return;
    }
    case SB_OP_PING:
        hold_reply(c, sb_msg_build_pong());
        reply_ok(c, m.id);
        return;
    case SB_OP_PONG:
        reply_ok(c, m.id);
        return;
    case SB_OP_STATS:
        handle_stats(c);
        reply_ok(c, m.id);
        return;
    default:
        return;
    }
}

/* Handle complete frames from the framer while outputs have room; `*got`
 * is set when at least one line came in (a sign of life). Returns true when
 * every complete frame was handled. */
static bool handle_frames(sb_conn *c, bool *got)
{
    for (;;) {
        if (atomic_load_explicit(&c->close_reason, memory_order_relaxed))
            return true; /* closing: the rest is not read */
        if (c->held_n + 3 > SB_CONN_HELD_MAX && !flush_held(c))
            return false;
        char *frame;
        size_t len;
        sb_framer_result r = sb_framer_next(&c->framer, &frame, &len);
        if (r == SB_FRAMER_NEED_MORE)
            return true;
        *got = true;
        if (r == SB_FRAMER_TOO_LARGE) {
            char msg[96];
            snprintf(msg, sizeof(msg),
                     "frame longer than max_frame (%zu bytes)",
                     c->cfg->max_frame);
            reply_err(c, SB_ERR_FRAME_TOO_LARGE, msg, (sb_span){0});
            continue;
        }
        handle_frame(c, frame, len);
    }
}

/* As handle_frames(), then note the sign of life once per batch rather
 * than reading the clock per frame. */
static bool process_frames(sb_conn *c)
{
    bool got = false;
    bool done = handle_frames(c, &got);
    if (got) {
        atomic_store_explicit(&c->last_rx_ms, sb_now_ms(),
                              memory_order_relaxed);
        c->pinged = false;
    }
    return done;
}

/* ---- Socket I/O -------------------------------------------------------- */

/* Hand over held outputs and handle the complete frames still buffered,
 * as far as the bus has room. Afterwards either the worker is paused with
 * outputs held (the bus will wake it), or every complete frame in the
 * framer was handled and handed over: frames never wait for more input,
 * which may never come. */
static void pump(sb_conn *c)
{
    if (flush_held(c) && process_frames(c))
        flush_held(c);
}

static bool can_read(sb_conn *c)
{
    return !c->rd_closed && c->held_n == 0 &&
           sb_queue_len(c->sendq) < c->cfg->send_queue;
}

/* Read until EAGAIN (or the budget), handling frames as they complete. */
static void conn_read(sb_conn *c)
{
    sb_server *s = c->srv;
    for (int i = 0; i < READS_PER_WAKE && can_read(c); i++) {
        char *p;
        size_t n;
        if (sb_framer_space(&c->framer, READ_CHUNK, &p, &n) < 0) {
            sb_conn_request_close(c, SB_CLOSE_NOMEM);
            return;
        }
        ssize_t r = sb_io_read(&c->io, p, n);
        if (r == -EAGAIN)
            break;
        if (r <= 0) {
            c->io_errno = (int)-r;
            c->rd_closed = true;
            sb_conn_request_close(c, r == 0 ? SB_CLOSE_EOF : SB_CLOSE_IO);
            return;
        }
        sb_framer_commit(&c->framer, (size_t)r);
        atomic_fetch_add_explicit(&s->ctr.bytes_in, (uint64_t)r,
                                  memory_order_relaxed);
        conn_count(&c->bytes_in, (uint64_t)r);
        if (!process_frames(c) || (size_t)r < n)
            break;
    }
    pump(c);
    if (sb_framer_pending(&c->framer) == 0)
        sb_framer_release(&c->framer);
}

/* Refill out[] from the send queue. */
static void fill_out(sb_conn *c)
{
    if (c->out_n >= SB_CONN_OUT_MAX)
        return;
    int k = sb_queue_pop_batch(c->sendq, (void **)(c->out + c->out_n), NULL,
                               SB_CONN_OUT_MAX - c->out_n, 0);
    if (k > 0)
        c->out_n += (unsigned)k;
}

/* Retire `n` written bytes from out[]. */
static void retire(sb_conn *c, size_t n)
{
    uint64_t msgs = 0;
    unsigned done = 0;
    while (done < c->out_n) {
        sb_frame *f = c->out[done];
        size_t left = f->len - c->out_off;
        if (n < left) {
            c->out_off += n;
            break;
        }
        n -= left;
        c->out_off = 0;
        msgs += f->kind == SB_FRAME_MSG;
        sb_frame_unref(&c->out[done]);
        done++;
    }
    if (done > 0) {
        memmove(c->out, c->out + done, (c->out_n - done) * sizeof(c->out[0]));
        c->out_n -= done;
    }
    if (msgs > 0) {
        atomic_fetch_add_explicit(&c->srv->ctr.msgs_out, msgs,
                                  memory_order_relaxed);
        conn_count(&c->msgs_out, msgs);
    }
}

/* Tell a drop-policy subscriber how much it missed, once there is room. */
static void notice_drops(sb_conn *c)
{
    if (atomic_load_explicit(&c->dropped_pending, memory_order_relaxed) == 0)
        return;
    const sb_config *cfg = c->cfg;
    if (sb_queue_len(c->sendq) >= cfg->send_queue ||
        sb_queue_bytes(c->sendq) >= cfg->send_queue_bytes)
        return;
    uint64_t n = atomic_exchange(&c->dropped_pending, 0);
    char msg[64];
    snprintf(msg, sizeof(msg), "dropped %" PRIu64 " messages", n);
    sb_frame *f = sb_msg_build_err(SB_ERR_SLOW_CONSUMER, msg, (sb_span){0});
    if (f != NULL && sb_queue_push_force(c->sendq, f, f->len) < 0)
        sb_frame_unref(&f);
}

/* Send what is queued until the socket would block. Returns false on a
 * socket error. */
static bool conn_write(sb_conn *c)
{
    struct iovec iov[SB_CONN_OUT_MAX];
    for (int round = 0; round < WRITES_PER_WAKE; round++) {
        fill_out(c);
        if (c->out_n == 0)
            break;
        for (unsigned i = 0; i < c->out_n; i++) {
            iov[i].iov_base = c->out[i]->text;
            iov[i].iov_len = c->out[i]->len;
        }
        iov[0].iov_base = c->out[0]->text + c->out_off;
        iov[0].iov_len -= c->out_off;
        ssize_t r = sb_io_writev(&c->io, iov, (int)c->out_n);
        if (r == -EAGAIN)
            break;
        if (r < 0) {
            c->io_errno = (int)-r;
            c->rd_closed = true;
            sb_conn_request_close(c, SB_CLOSE_IO);
            return false;
        }
        atomic_fetch_add_explicit(&c->srv->ctr.bytes_out, (uint64_t)r,
                                  memory_order_relaxed);
        conn_count(&c->bytes_out, (uint64_t)r);
        retire(c, (size_t)r);
    }
    fill_out(c); /* out_n > 0 keeps POLLOUT armed while frames wait */
    notice_drops(c);
    return true;
}

static bool send_queue_empty(sb_conn *c)
{
    return c->out_n == 0 && sb_queue_len(c->sendq) == 0;
}

/* ---- The worker loop --------------------------------------------------- */

/* Drop what is queued for the peer and count the messages among it as
 * dropped. A frame already partly sent is kept, so the stream stays
 * whole. */
static void drop_queued(sb_conn *c)
{
    uint64_t msgs = 0;
    unsigned keep = c->out_off > 0 ? 1 : 0;
    for (unsigned i = keep; i < c->out_n; i++) {
        msgs += c->out[i]->kind == SB_FRAME_MSG;
        sb_frame_unref(&c->out[i]);
    }
    c->out_n = keep;
    void *item;
    while (sb_queue_try_pop(c->sendq, &item, NULL) == 0) {
        sb_frame *f = item;
        msgs += f->kind == SB_FRAME_MSG;
        sb_frame_unref(&f);
    }
    atomic_fetch_add_explicit(&c->srv->ctr.dropped, msgs, memory_order_relaxed);
}

/* Give up on what the peer has not read: drop it, queue a final err and
 * write it once if the socket takes it. */
static void last_word(sb_conn *c, sb_err code, const char *msg)
{
    drop_queued(c);
    sb_frame *f = sb_msg_build_err(code, msg, (sb_span){0});
    if (f != NULL && sb_queue_push_force(c->sendq, f, f->len) < 0)
        sb_frame_unref(&f);
    conn_write(c);
}

/* React to a close reason. Returns true when the worker should stop now. */
static bool begin_close(sb_conn *c, int reason, uint64_t now)
{
    if (c->linger_deadline_ms != 0)
        return false; /* already lingering */
    c->rd_closed = true;
    c->linger_deadline_ms = now + LINGER_MS;
    switch (reason) {
    case SB_CLOSE_EOF:
    case SB_CLOSE_IO:
    case SB_CLOSE_NOMEM:
        return false; /* finish handing over what was read, then stop */
    case SB_ERR_SLOW_CONSUMER: {
        /* The queue is full of what the peer would not read. */
        last_word(c, SB_ERR_SLOW_CONSUMER, "slow consumer: send queue full");
        return true;
    }
    default:
        return false; /* an err frame is queued: flush it, then stop */
    }
}

/* The next time something must happen without I/O, as a poll timeout. */
static int next_timeout(sb_conn *c, uint64_t now)
{
    uint64_t when = UINT64_MAX;
    uint32_t hb = c->cfg->heartbeat_ms;
    if (hb > 0 && !c->rd_closed)
        when = last_rx(c) + (uint64_t)hb * (c->pinged ? 2 : 1);
    if (c->linger_deadline_ms != 0 && c->linger_deadline_ms < when)
        when = c->linger_deadline_ms;
    if (atomic_load(&c->srv->state) != SB_RUNNING &&
        c->srv->drain_deadline_ms < when)
        when = c->srv->drain_deadline_ms;
    if (when == UINT64_MAX)
        return -1;
    if (when <= now)
        return 0;
    return when - now > 60000 ? 60000 : (int)(when - now);
}

static void check_heartbeat(sb_conn *c, uint64_t now)
{
    uint32_t hb = c->cfg->heartbeat_ms;
    if (hb == 0 || c->rd_closed)
        return;
    if (now >= last_rx(c) + 2 * (uint64_t)hb && c->pinged) {
        sb_frame *f = sb_msg_build_err(SB_ERR_HEARTBEAT_TIMEOUT,
                                       "no answer to ping", (sb_span){0});
        if (f != NULL && sb_queue_push_force(c->sendq, f, f->len) < 0)
            sb_frame_unref(&f);
        sb_conn_request_close(c, SB_ERR_HEARTBEAT_TIMEOUT);
    } else if (now >= last_rx(c) + hb && !c->pinged) {
        sb_frame *f = sb_msg_build_ping();
        if (f != NULL && sb_queue_push_force(c->sendq, f, f->len) < 0)
            sb_frame_unref(&f);
        c->pinged = true;
    }
}

/* Shutdown steps for this connection. Returns true to stop now. */
static bool check_drain(sb_conn *c, uint64_t now, bool *quiesced)
{
    int st = atomic_load(&c->srv->state);
    if (st == SB_RUNNING)
        return false;
    if (st == SB_CLOSING || now >= c->srv->drain_deadline_ms) {
        /* Drain time is over: what is still queued is lost, but the
         * client is told why if its socket has room. */
        if (sb_conn_request_close(c, SB_ERR_SHUTTING_DOWN))
            last_word(c, SB_ERR_SHUTTING_DOWN,
                      "server shutting down: drain time over");
        return true;
    }
    c->rd_closed = true; /* stop reading; finish what was read */
    if (!*quiesced && c->held_n == 0 && process_frames(c) && flush_held(c)) {
        *quiesced = true;
        sb_server__quiesced(c->srv, c);
    }
    if (st == SB_DRAINED && *quiesced && send_queue_empty(c) &&
        atomic_load(&c->close_reason) == 0) {
        sb_frame *f = sb_msg_build_err(SB_ERR_SHUTTING_DOWN,
                                       "server shutting down", (sb_span){0});
        if (f != NULL && sb_queue_push_force(c->sendq, f, f->len) < 0)
            sb_frame_unref(&f);
        sb_conn_request_close(c, SB_ERR_SHUTTING_DOWN);
    }
    return false;
}

static void conn_loop(sb_conn *c)
{
    bool quiesced = false;
    for (;;) {
        uint64_t now = sb_now_ms();
        int reason = atomic_load(&c->close_reason);
        if (reason != 0 && begin_close(c, reason, now))
            return;
        if (check_drain(c, now, &quiesced))
            return;
        if (reason != 0 && c->held_n == 0) {
            bool flushed = reason == SB_CLOSE_EOF || reason == SB_CLOSE_IO ||
                           reason == SB_CLOSE_NOMEM || send_queue_empty(c);
            if (flushed || now >= c->linger_deadline_ms)
                return;
        }
        check_heartbeat(c, now);

        short ev =
            (short)((can_read(c) ? POLLIN : 0) | (c->out_n > 0 ? POLLOUT : 0));
        /* With nothing to wait for on the socket, leave it out: a closed
         * peer would otherwise report POLLHUP on every call. */
        struct pollfd p[2] = {
            {.fd = ev != 0 ? c->io.fd : -1, .events = ev},
            {.fd = sb_queue_fd(c->sendq), .events = POLLIN},
        };
        int n = poll(p, 2, next_timeout(c, now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            SB_LOG(SB_LOG_ERROR, "poll failed id=%" PRIu64 " err=%s", c->id,
                   strerror(errno));
            sb_conn_request_close(c, SB_CLOSE_IO);
            return;
        }
        if (p[1].revents & POLLIN)
            sb_queue_clear_fd(c->sendq); /* clear first, then drain */
        if (c->held_n > 0)
            pump(c); /* room again? */
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR) && can_read(c))
            conn_read(c);
        if (atomic_load(&c->close_reason) != SB_CLOSE_IO)
            conn_write(c);
    }
}

static void log_close(sb_conn *c)
{
    int reason = atomic_load(&c->close_reason);
    if (reason == SB_CLOSE_IO)
        SB_LOG(SB_LOG_INFO,
               "close id=%" PRIu64 " peer=%s name=%s reason=%s err=%s", c->id,
               c->peer, c->name[0] ? c->name : "-", sb_conn_reason_str(reason),
               strerror(c->io_errno));
    else
        SB_LOG(SB_LOG_INFO, "close id=%" PRIu64 " peer=%s name=%s reason=%s",
               c->id, c->peer, c->name[0] ? c->name : "-",
               sb_conn_reason_str(reason));
}

/* After a final err frame, close gently: send FIN, then read and discard
 * what the peer still sends until it closes or a short deadline. Closing
 * with unread input would make the kernel send a reset, which can destroy
 * the err frame before the peer reads it. */
static void lingering_close(sb_conn *c)
{
    int reason = atomic_load(&c->close_reason);
    if (reason == SB_CLOSE_EOF || reason == SB_CLOSE_IO ||
        reason == SB_CLOSE_NOMEM || atomic_load(&c->srv->state) == SB_CLOSING)
        return;
    sb_io_shutdown(&c->io);
    uint64_t deadline = sb_now_ms() + LINGER_MS / 2;
    char buf[4096];
    for (;;) {
        uint64_t now = sb_now_ms();
        if (now >= deadline)
            return;
        struct pollfd p = {.fd = c->io.fd, .events = POLLIN};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        ssize_t r = sb_io_read(&c->io, buf, sizeof(buf));
        if (r == 0 || (r < 0 && r != -EAGAIN))
            return;
    }
}

static void conn_finish(sb_conn *c)
{
    sb_server *s = c->srv;
    /* Hand over what was read if the bus has room; what it never takes
     * is freed. A pause-list entry, if any, holds its own reference. */
    if (c->held_n > 0)
        flush_held(c);
    while (c->held_n > 0) {
        sb_held *h = &c->held[c->held_head];
        if (h->to_bus)
            sb_bus_item_free(h->item);
        else
            sb_frame_release(h->item);
        held_pop(c, 1);
    }
    for (unsigned i = 0; i < c->out_n; i++)
        sb_frame_unref(&c->out[i]);
    c->out_n = 0;
    sb_framer_destroy(&c->framer);
    log_close(c);
    lingering_close(c);
    sb_io_close(&c->io);
    sb_server__fd_released(s);
    sb_queue_close(c->sendq);

    void *op = sb_bus_op_detach(c);
    if (op == NULL || sb_queue_push_force(sb_bus_queue(s->bus), op, 0) < 0) {
        /* Without the op the bus cannot drop its reference; it only fails
         * when the bus is gone, and then the bus holds nothing of ours. */
        if (op != NULL)
            sb_bus_item_free(op);
        sb_conn_unref(c);
    }
    sb_reaper_add_self(s->reaper);
    sb_server__unregister(s, c);
    sb_conn_unref(c);
}

static void *conn_main(void *arg)
{
    sb_conn *c = arg;
    sb_server *s = c->srv;
    sb_info info = {
        .client_id = c->id,
        .max_frame = c->cfg->max_frame,
        .heartbeat_ms = c->cfg->heartbeat_ms,
        .auth_required = c->cfg->has_token,
        .node = s->node[0] ? s->node : NULL,
    };
    sb_frame *f = sb_msg_build_info(&info);
    if (f == NULL || sb_queue_push_force(c->sendq, f, f->len) < 0) {
        sb_frame_unref(&f);
        sb_conn_request_close(c, SB_CLOSE_NOMEM);
    }
    atomic_store_explicit(&c->last_rx_ms, sb_now_ms(), memory_order_relaxed);
    SB_LOG(SB_LOG_DEBUG, "open id=%" PRIu64 " peer=%s", c->id, c->peer);
    conn_loop(c);
    conn_finish(c);
    return NULL;
}

int sb_conn_start(sb_conn *c)
{
    sb_server *s = c->srv;
    char name[16];
    snprintf(name, sizeof(name), "conn-%" PRIu64, c->id);
    sb_server__register(s, c);
    pthread_t t; /* not kept: the worker hands itself to the reaper */
    int rc = sb_thread_create(&t, name, s->cfg.thread_stack_kib * 1024,
                              conn_main, c);
    if (rc < 0) {
        sb_server__unregister(s, c);
        sb_framer_destroy(&c->framer);
        atomic_store(&c->refs, 1);
        sb_conn_unref(c);
    }
    return rc;
}
