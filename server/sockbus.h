/* sockbus.h - embed the sockbus relay in a program.
 *
 * A program can run the whole server inside itself (it accepts TCP clients
 * as sockbusd does), publish from C, and subscribe callbacks to patterns.
 * Each in-process subscription has its own bounded queue and thread, under
 * the server's slow-consumer policy, so a slow callback never stalls the
 * bus, a publisher or any other subscriber.
 *
 * Threads: every function is thread-safe unless it says otherwise. Callbacks
 * run on the subscription's own thread, one message at a time, in order. */
#ifndef SOCKBUS_H
#define SOCKBUS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "msg.h"

typedef struct sb_server sb_server;
typedef struct sb_subscription sb_subscription;

/* Start a server with a copy of `cfg` (see config.h; sb_config_defaults()
 * then change what you need): bind, listen, start the acceptor and bus
 * threads. Returns 0 and *out (owned: sb_server_stop()), or a negative
 * errno with a one-line reason in `err`. */
int sb_server_start(const sb_config *cfg,
                    sb_server **out,
                    char *err,
                    size_t errlen);

/* The address actually bound, e.g. "127.0.0.1:41234" (the real port when
 * the configured port was 0). Valid until sb_server_stop(). */
const char *sb_server_address(const sb_server *s);
uint16_t sb_server_port(const sb_server *s);

/* The monitoring endpoint's address ("127.0.0.1:9090", with the real port
 * when the configured one was 0), or NULL when cfg.http_listen was empty.
 * Valid until sb_server_stop(). */
const char *sb_server_http_address(const sb_server *s);

/* Apply `next` (borrowed; a whole configuration, as for start) to the
 * running server: the log level and format at once, the token for every
 * later connect, and the per-connection limits (sb_config_reloadable()) for
 * connections accepted from now on. Other settings keep their running
 * values. Logs one line per setting that differs ("reload key=max-subs
 * from=4096 to=100"; the token only as "changed=yes"). Returns 0, or
 * -EINVAL (invalid: nothing changed, the reason in `err`) or -ENOMEM. */
int sb_server_reload(sb_server *s,
                     const sb_config *next,
                     char *err,
                     size_t errlen);

/* Stop gracefully: stop accepting, stop reading, deliver everything already
 * accepted to connected subscribers within the configured drain time, send
 * every client `shutting_down`, close everything, join every thread and
 * free the server. In-process subscriptions still open are ended and their
 * handles become invalid. Must not be called from a callback. */
void sb_server_stop(sb_server *s);

/* Publish `data` (JSON text of data_len bytes; NULL or empty means null) on
 * the literal `topic`, with an optional `reply` topic (NULL for none).
 * Waits up to `timeout_ms` for room in the bus's queue (< 0: no limit).
 * Returns 0, -EINVAL (bad topic, reply or JSON), -ETIMEDOUT / -EAGAIN (the
 * bus stayed full), -ENOMEM, or -EPIPE (the server is stopping). */
int sb_server_publish(sb_server *s,
                      const char *topic,
                      const char *data,
                      size_t data_len,
                      const char *reply,
                      int timeout_ms);

/* One delivered message; every pointer is valid during the callback only.
 * topic and reply are NUL-terminated; data is the JSON text as published. */
typedef struct sb_message {
    const char *topic;
    size_t topic_len;
    const char *data;
    size_t data_len;
    const char *reply; /* NULL when the publisher set none */
    size_t reply_len;
} sb_message;

typedef void (*sb_message_fn)(const sb_message *m, void *ud);

/* Told when the subscription is dropped from or ends: SB_ERR_SLOW_CONSUMER
 * (messages dropped under the drop policy, or the subscription ended under
 * disconnect) or SB_ERR_SHUTTING_DOWN. May be NULL. */
typedef void (*sb_notice_fn)(sb_err code, const char *msg, void *ud);

/* Subscribe `fn` to `pattern` (with `*` and `>`), optionally as a member of
 * queue group `group` (NULL for none). The subscription is active when this
 * returns. Returns 0 and *out, -EINVAL (bad pattern or group), -ENOMEM,
 * -EAGAIN (no thread could be started) or -EPIPE (stopping). */
int sb_server_subscribe(sb_server *s,
                        const char *pattern,
                        const char *group,
                        sb_message_fn fn,
                        sb_notice_fn notice,
                        void *ud,
                        sb_subscription **out);

/* End a subscription: after this returns, its callbacks are never called
 * again and the handle is freed. Returns 0, or -EDEADLK when called from
 * the subscription's own callback. */
int sb_server_unsubscribe(sb_subscription *sub);

/* A snapshot of the server's counters (the `stats` frame). */
void sb_server_stats(sb_server *s, sb_stats *out);

/* Told by the bus thread when local interest in (pattern, group) appears
 * (added = 1: the first subscription) or goes (added = 0: the last one
 * ended). group is NULL for plain subscriptions. Runs on the bus thread:
 * it must be quick and must not call back into the server. */
typedef void (*sb_interest_fn)(const char *pattern,
                               size_t plen,
                               const char *group,
                               size_t glen,
                               int added,
                               void *ud);

/* Install the interest observer (NULL to remove). Patterns already held are
 * reported as added at once, from the bus thread. */
void sb_server_set_observer(sb_server *s, sb_interest_fn fn, void *ud);

#endif
