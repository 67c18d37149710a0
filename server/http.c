/* http.c - the monitoring endpoint. See http.h.
 *
 * Who touches what:
 * - libmicrohttpd's internal thread runs handle() for every request, one at
 *   a time; sb_http_start() and sb_http_stop() run on the server's caller.
 *   `srv`, `daemon` and `address` are written before the thread starts.
 * - Server counters and per-connection counters are atomics, read here
 *   with relaxed loads: a scrape sees each number whole, not all of them
 *   at one instant, which is what a monitoring sample is anyway.
 * - The registry is walked under the server lock only to take a reference
 *   on each connection and copy its name (the worker writes the name under
 *   the same lock); everything else is read after unlocking, and no JSON or
 *   text is built under any lock.
 * - The bus's tables belong to the bus thread: /subz asks it for a copy
 *   (sb_bus_interest_copy()) and waits a bounded time.
 *
 * Responses are built into a growable buffer that libmicrohttpd frees
 * once sent. */
#define _GNU_SOURCE
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "bus.h"
#include "conn.h"
#include "json.h"
#include "log.h"
#include "server.h"

#define HTTP_CONN_LIMIT 64      /* monitoring clients at once */
#define HTTP_TIMEOUT_S 10       /* idle HTTP connections are closed */
#define CONNZ_LIMIT_DEFAULT 100 /* connections listed without ?limit */
#define CONNZ_LIMIT_MAX 1000000 /* largest ?limit accepted */
#define SUBZ_MAX 100000         /* entries copied from the bus at most */
#define SUBZ_WAIT_MS 2000       /* how long /subz waits for the bus */

/* The status page, generated from http_page.html at build time. */
extern const unsigned char sb_http__page[];
extern const size_t sb_http__page_len;

struct sb_http {
    sb_server *srv;
    struct MHD_Daemon *daemon;
    char address[300];
};

/* ---- A growable response buffer ---------------------------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
    bool failed; /* out of memory: the response becomes a 500 */
} buf;

static bool buf_reserve(buf *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->n + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void buf_put(buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void buf_puts(buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void
buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

/* A JSON string, quotes included; NULL becomes null. */
static void buf_json_str(buf *b, const char *s)
{
    if (s == NULL) {
        buf_puts(b, "null");
        return;
    }
    size_t n = strlen(s), e = sb_json_escaped_len(s, n);
    if (!buf_reserve(b, e + 2))
        return;
    b->p[b->n++] = '"';
    b->n += sb_json_escape(b->p + b->n, s, n);
    b->p[b->n++] = '"';
    b->p[b->n] = '\0';
}

/* ---- Responses --------------------------------------------------------- */

static enum MHD_Result respond(struct MHD_Connection *mc,
                               unsigned status,
                               const char *type,
                               void *body,
                               size_t len,
                               enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(mc, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* A constant body. */
static enum MHD_Result respond_static(struct MHD_Connection *mc,
                                      unsigned status,
                                      const char *type,
                                      const char *text)
{
    return respond(mc, status, type, (void *)(uintptr_t)text, strlen(text),
                   MHD_RESPMEM_PERSISTENT);
}

/* A built body: handed over to libmicrohttpd, or a 500 when building ran
 * out of memory. */
static enum MHD_Result respond_buf(struct MHD_Connection *mc,
                                   unsigned status,
                                   const char *type,
                                   buf *b)
{
    if (b->failed || b->p == NULL) {
        free(b->p);
        return respond_static(mc, MHD_HTTP_INTERNAL_SERVER_ERROR,
                              "application/json",
                              "{\"error\":\"out of memory\"}\n");
    }
    return respond(mc, status, type, b->p, b->n, MHD_RESPMEM_MUST_FREE);
}

/* A JSON error object {"error": msg}. */
static enum MHD_Result
respond_error(struct MHD_Connection *mc, unsigned status, const char *msg)
{
    buf b = {0};
    buf_puts(&b, "{\"error\":");
    buf_json_str(&b, msg);
    buf_puts(&b, "}\n");
    return respond_buf(mc, status, "application/json", &b);
}

/* ---- Connections ------------------------------------------------------- */

/* One connection's numbers, copied for /connz and /metrics. */
typedef struct conn_row {
    uint64_t id;
    uint64_t age_ms;
    uint64_t idle_ms;
    uint64_t subscriptions;
    uint64_t msgs_in;
    uint64_t msgs_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t queued_frames;
    uint64_t queued_bytes;
    uint64_t queued_high_water;
    uint64_t dropped;
    sb_conn *conn; /* referenced while the row is being filled */
    char peer[64];
    char name[SB_NAME_MAX + 1];
} conn_row;

/* The numeric fields, in /connz order; each may be a sort key. */
static const struct {
    const char *name;
    size_t off;
} row_fields[] = {
    {"id", offsetof(conn_row, id)},
    {"age_ms", offsetof(conn_row, age_ms)},
    {"idle_ms", offsetof(conn_row, idle_ms)},
    {"subscriptions", offsetof(conn_row, subscriptions)},
    {"msgs_in", offsetof(conn_row, msgs_in)},
    {"msgs_out", offsetof(conn_row, msgs_out)},
    {"bytes_in", offsetof(conn_row, bytes_in)},
    {"bytes_out", offsetof(conn_row, bytes_out)},
    {"queued_frames", offsetof(conn_row, queued_frames)},
    {"queued_bytes", offsetof(conn_row, queued_bytes)},
    {"queued_high_water", offsetof(conn_row, queued_high_water)},
    {"dropped", offsetof(conn_row, dropped)},
};
#define NFIELDS (sizeof(row_fields) / sizeof(row_fields[0]))

static uint64_t row_get(const conn_row *r, size_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)r + off, sizeof(v));
    return v;
}

static uint64_t load(atomic_uint_fast64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* Fill what can be read without the server lock, then drop the row's
 * reference. */
static void row_fill(conn_row *r, uint64_t now)
{
    sb_conn *c = r->conn;
    uint64_t rx = load(&c->last_rx_ms);
    r->id = c->id;
    r->age_ms = now > c->created_ms ? now - c->created_ms : 0;
    r->idle_ms = now > rx ? now - rx : 0;
    r->subscriptions = atomic_load_explicit(&c->nsubs, memory_order_relaxed);
    r->msgs_in = load(&c->msgs_in);
    r->msgs_out = load(&c->msgs_out);
    r->bytes_in = load(&c->bytes_in);
    r->bytes_out = load(&c->bytes_out);
    r->dropped = load(&c->dropped);
    r->queued_frames = sb_queue_len(c->sendq);
    r->queued_bytes = sb_queue_bytes(c->sendq);
    r->queued_high_water = sb_queue_high_water(c->sendq);
    sb_conn_unref(c);
    r->conn = NULL;
}

/* Copy every registered connection's numbers (names too when `names`).
 * The server lock is held only to reference each connection and copy its
 * name; the array is sized beforehand, unlocked, and sized again if the
 * registry grew in between. Returns 0 with *out (owned, free(); NULL when
 * there is no connection) and *n, or -ENOMEM. */
static int gather(sb_server *s, bool names, conn_row **out, size_t *n)
{
    conn_row *rows = NULL;
    size_t cap = 0, k = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (s->nconns <= cap)
            break;
        size_t want = s->nconns + s->nconns / 8 + 16;
        pthread_mutex_unlock(&s->lock);
        free(rows);
        rows = malloc(want * sizeof(*rows));
        if (rows == NULL)
            return -ENOMEM;
        cap = want;
    }
    for (sb_conn *c = s->conns; c != NULL; c = c->reg_next) {
        conn_row *r = &rows[k++];
        r->conn = sb_conn_ref(c);
        memcpy(r->peer, c->peer, sizeof(r->peer));
        if (names)
            memcpy(r->name, c->name, sizeof(r->name));
        else
            r->name[0] = '\0';
    }
    pthread_mutex_unlock(&s->lock);

    uint64_t now = sb_now_ms();
    for (size_t i = 0; i < k; i++)
        row_fill(&rows[i], now);
    *out = rows;
    *n = k;
    return 0;
}

/* qsort_r comparator: descending by the field at offset *arg, then by id
 * ascending so that the order is stable from one request to the next. */
static int row_cmp_desc(const void *a, const void *b, void *arg)
{
    size_t off = *(const size_t *)arg;
    uint64_t x = row_get(a, off), y = row_get(b, off);
    if (x != y)
        return x < y ? 1 : -1;
    uint64_t ia = ((const conn_row *)a)->id, ib = ((const conn_row *)b)->id;
    return ia < ib ? -1 : ia > ib;
}

static int row_cmp_id(const void *a, const void *b)
{
    uint64_t ia = ((const conn_row *)a)->id, ib = ((const conn_row *)b)->id;
    return ia < ib ? -1 : ia > ib;
}

/* ---- /metrics ---------------------------------------------------------- */

/* Bucket bounds of sockbus_send_queue_depth, in frames. */
static const uint64_t depth_bounds[] = {0,    1,    4,     16,    64,    256,
                                        1024, 4096, 16384, 65536, 262144};
#define NBOUNDS (sizeof(depth_bounds) / sizeof(depth_bounds[0]))

static void
metric_head(buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metric(buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    metric_head(b, name, type, help);
    buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

/* The send-queue figures across connections: the histogram of depths, the
 * bytes queued in all, and the largest high-water mark. */
static void metrics_send_queues(buf *b, const conn_row *rows, size_t n)
{
    uint64_t counts[NBOUNDS] = {0}, sum = 0, bytes = 0, hw = 0;
    for (size_t i = 0; i < n; i++) {
        const conn_row *r = &rows[i];
        for (size_t k = 0; k < NBOUNDS; k++)
            if (r->queued_frames <= depth_bounds[k])
                counts[k]++;
        sum += r->queued_frames;
        bytes += r->queued_bytes;
        if (r->queued_high_water > hw)
            hw = r->queued_high_water;
    }
    metric(b, "sockbus_send_queue_high_water", "gauge",
           "Most frames ever queued at once for one connection, the largest "
           "among connections open now.",
           hw);
    metric(b, "sockbus_send_queue_bytes", "gauge",
           "Bytes queued for all connections now, not yet written.", bytes);
    metric_head(b, "sockbus_send_queue_depth", "histogram",
                "Frames queued per connection now, across connections.");
    for (size_t k = 0; k < NBOUNDS; k++)
        buf_printf(b,
                   "sockbus_send_queue_depth_bucket{le=\"%" PRIu64
                   "\"} %" PRIu64 "\n",
                   depth_bounds[k], counts[k]);
    buf_printf(b,
               "sockbus_send_queue_depth_bucket{le=\"+Inf\"} %zu\n"
               "sockbus_send_queue_depth_sum %" PRIu64 "\n"
               "sockbus_send_queue_depth_count %zu\n",
               n, sum, n);
}

/* The bridge to a NATS cluster, when the server is clustered. */
static void metrics_cluster(buf *b, const sb_cluster_stats *c)
{
    static const char *const states[] = {"connected", "reconnecting",
                                         "disconnected"};
    if (c->state == NULL)
        return;
    metric_head(b, "sockbus_cluster_state", "gauge",
                "State of the link to the cluster: 1 for the current one.");
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
        buf_printf(b, "sockbus_cluster_state{state=\"%s\"} %d\n", states[i],
                   strcmp(c->state, states[i]) == 0);
    metric(b, "sockbus_cluster_msgs_sent_total", "counter",
           "Publications sent to the cluster.", c->msgs_sent);
    metric(b, "sockbus_cluster_bytes_sent_total", "counter",
           "Bytes sent to the cluster.", c->bytes_sent);
    metric(b, "sockbus_cluster_msgs_received_total", "counter",
           "Messages received from the cluster.", c->msgs_received);
    metric(b, "sockbus_cluster_bytes_received_total", "counter",
           "Bytes received from the cluster.", c->bytes_received);
    metric(b, "sockbus_cluster_dropped_total", "counter",
           "Publications that did not reach the cluster, or messages from it "
           "that found no room here.",
           c->dropped);
    metric(b, "sockbus_cluster_invalid_total", "counter",
           "Messages from the cluster that could not be relayed.", c->invalid);
    metric(b, "sockbus_cluster_subscriptions", "gauge",
           "(pattern, group) pairs subscribed on the cluster now.",
           c->subscriptions);
}

static enum MHD_Result get_metrics(sb_http *h, struct MHD_Connection *mc)
{
    sb_stats st;
    sb_server_stats(h->srv, &st);
    conn_row *rows;
    size_t n;
    if (gather(h->srv, false, &rows, &n) < 0)
        return respond_error(mc, MHD_HTTP_INTERNAL_SERVER_ERROR,
                             "out of memory");
    buf b = {0};
    metric_head(&b, "sockbus_info", "gauge",
                "Version of this server and of its protocol; always 1.");
    buf_printf(&b, "sockbus_info{version=\"%s\",proto=\"%d\"} 1\n", SB_VERSION,
               SB_PROTO);
    metric(&b, "sockbus_connections", "gauge", "Client connections open now.",
           st.connections);
    metric(&b, "sockbus_subscriptions", "gauge",
           "Subscriptions held now, all connections together.",
           st.subscriptions);
    metric(&b, "sockbus_msgs_in_total", "counter",
           "Publications received and handed to the bus.", st.msgs_in);
    metric(&b, "sockbus_msgs_out_total", "counter",
           "Messages delivered to subscribers.", st.msgs_out);
    metric(&b, "sockbus_bytes_in_total", "counter",
           "Bytes read from client sockets.", st.bytes_in);
    metric(&b, "sockbus_bytes_out_total", "counter",
           "Bytes written to client sockets.", st.bytes_out);
    metric(&b, "sockbus_dropped_total", "counter",
           "Messages not delivered because a subscriber's send queue was "
           "full.",
           st.dropped);
    metric(&b, "sockbus_slow_consumers_total", "counter",
           "Times a subscriber fell behind: messages dropped for it, or it "
           "was disconnected.",
           st.slow_consumers);
    metric(&b, "sockbus_connections_total", "counter",
           "Connections accepted since start, refused ones included.",
           st.total_connections);
    metric_head(&b, "sockbus_uptime_seconds", "gauge",
                "Seconds since the server started.");
    buf_printf(&b, "sockbus_uptime_seconds %" PRIu64 ".%03" PRIu64 "\n",
               st.uptime_ms / 1000, st.uptime_ms % 1000);
    metric(&b, "sockbus_recv_queue_depth", "gauge",
           "Publications and subscription changes waiting for the bus now.",
           st.recv_queue);
    metric(&b, "sockbus_recv_queue_high_water", "gauge",
           "Most items ever waiting for the bus at once.",
           st.recv_queue_high_water);
    metrics_send_queues(&b, rows, n);
    metrics_cluster(&b, &st.cluster);
    free(rows);
    return respond_buf(mc, MHD_HTTP_OK,
                       "text/plain; version=0.0.4; charset=utf-8", &b);
}

/* ---- /stats, /healthz -------------------------------------------------- */

static enum MHD_Result get_stats(sb_http *h, struct MHD_Connection *mc)
{
    sb_stats st;
    sb_server_stats(h->srv, &st);
    sb_frame *f = sb_msg_build_stats(&st);
    if (f == NULL)
        return respond_error(mc, MHD_HTTP_INTERNAL_SERVER_ERROR,
                             "out of memory");
    buf b = {0};
    buf_put(&b, f->text, f->len);
    sb_frame_unref(&f);
    return respond_buf(mc, MHD_HTTP_OK, "application/json", &b);
}

static enum MHD_Result get_healthz(sb_http *h, struct MHD_Connection *mc)
{
    if (atomic_load(&h->srv->state) == SB_RUNNING)
        return respond_static(mc, MHD_HTTP_OK, "text/plain; charset=utf-8",
                              "ok\n");
    return respond_static(mc, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "text/plain; charset=utf-8", "draining\n");
}

/* ---- /connz ------------------------------------------------------------ */

typedef struct connz_args {
    const char *bad; /* first unknown parameter, if any */
} connz_args;

static enum MHD_Result connz_check_arg(void *cls,
                                       enum MHD_ValueKind kind,
                                       const char *key,
                                       const char *value)
{
    (void)kind;
    (void)value;
    connz_args *a = cls;
    if (strcmp(key, "sort") != 0 && strcmp(key, "limit") != 0) {
        a->bad = key;
        return MHD_NO;
    }
    return MHD_YES;
}

/* Parse ?limit: a decimal from 0 to CONNZ_LIMIT_MAX. */
static int parse_limit(const char *s, size_t *out)
{
    if (s == NULL) {
        *out = CONNZ_LIMIT_DEFAULT;
        return 0;
    }
    size_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (size_t)(*s - '0');
        if (v > CONNZ_LIMIT_MAX)
            return -1;
    }
    *out = v;
    return 0;
}

static void connz_row(buf *b, const conn_row *r)
{
    buf_printf(b, "{\"id\":%" PRIu64 ",\"name\":", r->id);
    buf_json_str(b, r->name[0] ? r->name : NULL);
    buf_puts(b, ",\"remote\":");
    buf_json_str(b, r->peer);
    for (size_t k = 1; k < NFIELDS; k++)
        buf_printf(b, ",\"%s\":%" PRIu64, row_fields[k].name,
                   row_get(r, row_fields[k].off));
    buf_puts(b, "}");
}

static enum MHD_Result get_connz(sb_http *h, struct MHD_Connection *mc)
{
    connz_args a = {0};
    MHD_get_connection_values(mc, MHD_GET_ARGUMENT_KIND, connz_check_arg, &a);
    char msg[160];
    if (a.bad != NULL) {
        snprintf(msg, sizeof(msg),
                 "unknown parameter '%.40s' (known: sort, limit)", a.bad);
        return respond_error(mc, MHD_HTTP_BAD_REQUEST, msg);
    }
    const char *sort =
        MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "sort");
    const char *lim =
        MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "limit");
    size_t limit, off = SIZE_MAX;
    if (parse_limit(lim, &limit) < 0) {
        snprintf(msg, sizeof(msg), "limit must be a number from 0 to %d",
                 CONNZ_LIMIT_MAX);
        return respond_error(mc, MHD_HTTP_BAD_REQUEST, msg);
    }
    for (size_t k = 0; sort != NULL && k < NFIELDS; k++)
        if (strcmp(sort, row_fields[k].name) == 0)
            off = row_fields[k].off;
    if (sort != NULL && off == SIZE_MAX) {
        snprintf(msg, sizeof(msg),
                 "cannot sort by '%.40s': sort by a numeric field (id, "
                 "msgs_in, queued_bytes, ...)",
                 sort);
        return respond_error(mc, MHD_HTTP_BAD_REQUEST, msg);
    }

    conn_row *rows;
    size_t n;
    if (gather(h->srv, true, &rows, &n) < 0)
        return respond_error(mc, MHD_HTTP_INTERNAL_SERVER_ERROR,
                             "out of memory");
    if (n > 1 && sort != NULL)
        qsort_r(rows, n, sizeof(*rows), row_cmp_desc, &off);
    else if (n > 1)
        qsort(rows, n, sizeof(*rows), row_cmp_id);
    buf b = {0};
    buf_puts(&b, "{\"connections\":[");
    for (size_t i = 0; i < n && i < limit; i++) {
        if (i > 0)
            buf_puts(&b, ",");
        connz_row(&b, &rows[i]);
    }
    buf_printf(&b, "],\"total\":%zu}\n", n);
    free(rows);
    return respond_buf(mc, MHD_HTTP_OK, "application/json", &b);
}

/* ---- /subz ------------------------------------------------------------- */

static int interest_cmp(const void *a, const void *b)
{
    const sb_bus_interest *x = a, *y = b;
    int c = strcmp(x->pattern, y->pattern);
    if (c != 0)
        return c;
    if (x->group == NULL || y->group == NULL)
        return (x->group != NULL) - (y->group != NULL);
    return strcmp(x->group, y->group);
}

static enum MHD_Result get_subz(sb_http *h, struct MHD_Connection *mc)
{
    sb_bus_interest *list = NULL;
    size_t total = 0;
    int n = sb_bus_interest_copy(h->srv->bus, SUBZ_MAX, SUBZ_WAIT_MS, &list,
                                 &total);
    if (n == -ETIMEDOUT || n == -EBUSY)
        return respond_error(mc, MHD_HTTP_SERVICE_UNAVAILABLE,
                             "the bus did not answer in time; try again");
    if (n < 0)
        return respond_error(mc, MHD_HTTP_INTERNAL_SERVER_ERROR, strerror(-n));
    qsort(list, (size_t)n, sizeof(*list), interest_cmp);
    buf b = {0};
    buf_puts(&b, "{\"subscriptions\":[");
    for (int i = 0; i < n; i++) {
        buf_puts(&b, i > 0 ? ",{\"pattern\":" : "{\"pattern\":");
        buf_json_str(&b, list[i].pattern);
        buf_puts(&b, ",\"group\":");
        buf_json_str(&b, list[i].group);
        buf_printf(&b, ",\"holders\":%" PRIu64 "}", list[i].holders);
    }
    buf_printf(&b, "],\"total\":%zu}\n", total);
    free(list);
    return respond_buf(mc, MHD_HTTP_OK, "application/json", &b);
}

/* ---- Routing ----------------------------------------------------------- */

static enum MHD_Result get_page(struct MHD_Connection *mc)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        sb_http__page_len, (void *)(uintptr_t)sb_http__page,
        MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/html; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    /* The page is self-contained: let the browser enforce that it loads
     * nothing and talks to nobody but this server. */
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; connect-src 'self'; "
                            "script-src 'unsafe-inline'; "
                            "style-src 'unsafe-inline'; img-src data:");
    enum MHD_Result rc = MHD_queue_response(mc, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result handle(void *cls,
                              struct MHD_Connection *mc,
                              const char *url,
                              const char *method,
                              const char *version,
                              const char *upload_data,
                              size_t *upload_data_size,
                              void **req_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    sb_http *h = cls;
    SB_LOG(SB_LOG_DEBUG, "http method=%s path=%s", method, url);
    /* HEAD gets GET's headers; libmicrohttpd leaves the body out. */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_static(mc, MHD_HTTP_METHOD_NOT_ALLOWED,
                              "text/plain; charset=utf-8",
                              "method not allowed: use GET or HEAD\n");
    if (strcmp(url, "/metrics") == 0)
        return get_metrics(h, mc);
    if (strcmp(url, "/healthz") == 0)
        return get_healthz(h, mc);
    if (strcmp(url, "/stats") == 0)
        return get_stats(h, mc);
    if (strcmp(url, "/connz") == 0)
        return get_connz(h, mc);
    if (strcmp(url, "/subz") == 0)
        return get_subz(h, mc);
    if (strcmp(url, "/") == 0)
        return get_page(mc);
    return respond_static(mc, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
                          "not found: try /, /metrics, /healthz, /stats, "
                          "/connz or /subz\n");
}

/* libmicrohttpd's messages, as our log lines. */
__attribute__((format(printf, 2, 0))) static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\r\n")] = '\0';
    SB_LOG(SB_LOG_WARN, "http error msg=\"%s\"", msg);
}

/* ---- Life cycle -------------------------------------------------------- */

int sb_http_parse_listen(const char *spec,
                         char *host,
                         size_t hostlen,
                         uint16_t *port)
{
    const char *colon = strrchr(spec, ':');
    const char *h = "127.0.0.1", *p = spec;
    size_t hn = strlen(h);
    if (colon != NULL) {
        h = spec;
        hn = (size_t)(colon - spec);
        p = colon + 1;
        if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
            h++;
            hn -= 2;
        } else if (memchr(h, ':', hn) != NULL) {
            return -EINVAL; /* an IPv6 address needs its brackets */
        }
    }
    if (hn == 0 || hn >= hostlen || *p == '\0')
        return -EINVAL;
    unsigned long v = 0;
    for (const char *d = p; *d; d++) {
        if (*d < '0' || *d > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*d - '0');
        if (v > 65535)
            return -EINVAL;
    }
    memcpy(host, h, hn);
    host[hn] = '\0';
    *port = (uint16_t)v;
    return 0;
}

/* Resolve host:port into *sa. Returns 0 or -EINVAL with `err` set. */
static int resolve(const char *host,
                   uint16_t port,
                   struct sockaddr_storage *sa,
                   char *err,
                   size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "--http: cannot resolve '%s': %s", host,
                 gai_strerror(rc));
        return -EINVAL;
    }
    memset(sa, 0, sizeof(*sa));
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* "HOST:PORT" or "[HOST]:PORT" of what was bound. */
static void
format_address(sb_http *h, const struct sockaddr_storage *sa, uint16_t port)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(h->address, sizeof(h->address), "[%s]:%u", ip, port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(h->address, sizeof(h->address), "%s:%u", ip, port);
    }
}

int sb_http_start(sb_server *s, sb_http **out, char *err, size_t errlen)
{
    char host[256];
    uint16_t port;
    if (sb_http_parse_listen(s->cfg.http_listen, host, sizeof(host), &port) <
        0) {
        snprintf(err, errlen, "--http: invalid value '%s' (want [HOST:]PORT)",
                 s->cfg.http_listen);
        return -EINVAL;
    }
    struct sockaddr_storage sa;
    if (resolve(host, port, &sa, err, errlen) < 0)
        return -EINVAL;
    sb_http *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "--http: out of memory");
        return -ENOMEM;
    }
    h->srv = s;
    /* AUTO picks epoll on Linux: select() would fail on descriptors past
     * FD_SETSIZE, which a server with many clients reaches. */
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    errno = 0;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, handle, h, MHD_OPTION_EXTERNAL_LOGGER,
        (MHD_LogCallback)mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
        (const struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)HTTP_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_END);
    if (h->daemon == NULL) {
        int e = errno ? errno : EADDRNOTAVAIL;
        snprintf(err, errlen, "--http: cannot listen on %s: %s",
                 s->cfg.http_listen, strerror(e));
        free(h);
        return -e;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    format_address(h, &sa, info != NULL ? info->port : port);
    SB_LOG(SB_LOG_INFO, "http listening address=%s", h->address);
    *out = h;
    return 0;
}

void sb_http_stop(sb_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}

const char *sb_http_address(const sb_http *h)
{
    return h->address;
}
