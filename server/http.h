/* http.h - the monitoring endpoint, served over HTTP by libmicrohttpd.
 *
 * `sockbusd --http [HOST:]PORT` (sb_config.http_listen) starts it with the
 * server and stops it last, after the drain, so that /healthz can say 503
 * while the server drains. Endpoints (GET and HEAD only):
 *   /metrics  Prometheus text format 0.0.4
 *   /healthz  200 "ok" while accepting, 503 while draining
 *   /stats    the `stats` frame, as JSON
 *   /connz    one JSON object per connection; ?sort=FIELD&limit=N
 *   /subz     subscriptions by pattern and group, with holder counts
 *   /         a self-contained status page (HTML, CSS and JavaScript
 *             embedded in the binary) that polls /stats and /connz
 * docs/OPERATIONS.md describes each one and every metric.
 *
 * Threads: libmicrohttpd runs one thread of its own (its internal polling
 * thread, created by the library rather than by thread.c), which answers
 * every request. It never blocks the bus: counters are atomics read
 * without locks, the connection registry is held only while each
 * connection is referenced, and /subz asks the bus thread for a copy of
 * its interest table with a bounded wait. */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "sockbus.h"

typedef struct sb_http sb_http;

/* Parse `spec`, "[HOST:]PORT" ("9090", "0.0.0.0:9090", "[::1]:9090"); a
 * bare port means 127.0.0.1. Writes the host (NUL-terminated) into
 * host[0..hostlen) and the port into *port.
 * Returns 0 or -EINVAL. Thread-safe. */
int sb_http_parse_listen(const char *spec,
                         char *host,
                         size_t hostlen,
                         uint16_t *port);

/* Bind `s->cfg.http_listen` and start serving the server `s` (borrowed:
 * it must outlive the http server). Returns 0 and *out (owned: stop it
 * with sb_http_stop()), or a negative errno with a one-line reason naming
 * --http in `err`. Call before the acceptor starts. */
int sb_http_start(sb_server *s, sb_http **out, char *err, size_t errlen);

/* Stop serving: waits for the request in progress, closes every HTTP
 * connection and the listening socket, joins the thread and frees `h`.
 * Accepts NULL. */
void sb_http_stop(sb_http *h);

/* The address actually bound, "HOST:PORT" ("[HOST]:PORT" for IPv6), with
 * the real port when the configured one was 0. Valid until
 * sb_http_stop(). */
const char *sb_http_address(const sb_http *h);

#endif
