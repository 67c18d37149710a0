/* msg.h - client frames in, server frames out.
 *
 * Parsing: a client frame (one line, as the framer returns it) is validated
 * in one scan by the strict JSON scanner, and its fields are taken as spans:
 * string fields are decoded in place in the caller's buffer, `data` and `id`
 * stay the exact bytes received. Every failure maps to the protocol's error
 * code and a short human message.
 *
 * Building: every server frame comes out as one sb_frame of valid JSON
 * ending in "\n", with every string escaped.
 *
 * Threads: every function is thread-safe (no shared state). */
#ifndef SB_MSG_H
#define SB_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* The protocol's error codes, each written once: enum name, wire string. */
#define SB_ERR_MAP(X)                                                          \
    X(BAD_JSON, "bad_json")                                                    \
    X(BAD_FRAME, "bad_frame")                                                  \
    X(UNKNOWN_OP, "unknown_op")                                                \
    X(BAD_TOPIC, "bad_topic")                                                  \
    X(FRAME_TOO_LARGE, "frame_too_large")                                      \
    X(NOT_SUBSCRIBED, "not_subscribed")                                        \
    X(TOO_MANY_SUBS, "too_many_subs")                                          \
    X(AUTH_REQUIRED, "auth_required")                                          \
    X(AUTH_FAILED, "auth_failed")                                              \
    X(SERVER_BUSY, "server_busy")                                              \
    X(SLOW_CONSUMER, "slow_consumer")                                          \
    X(HEARTBEAT_TIMEOUT, "heartbeat_timeout")                                  \
    X(SHUTTING_DOWN, "shutting_down")

typedef enum sb_err {
    SB_OK = 0,
#define SB_ERR_ENUM(name, str) SB_ERR_##name,
    SB_ERR_MAP(SB_ERR_ENUM)
#undef SB_ERR_ENUM
        SB_ERR__COUNT
} sb_err;

/* The wire string of an error code ("bad_json"), or "ok" for SB_OK. */
const char *sb_err_str(sb_err e);

/* Client operations. */
#define SB_OP_MAP(X)                                                           \
    X(CONNECT, "connect")                                                      \
    X(SUB, "sub")                                                              \
    X(UNSUB, "unsub")                                                          \
    X(PUB, "pub")                                                              \
    X(PING, "ping")                                                            \
    X(PONG, "pong")                                                            \
    X(STATS, "stats")

typedef enum sb_op {
    SB_OP_NONE = 0,
#define SB_OP_ENUM(name, str) SB_OP_##name,
    SB_OP_MAP(SB_OP_ENUM)
#undef SB_OP_ENUM
        SB_OP__COUNT
} sb_op;

const char *sb_op_str(sb_op op);

/* A byte span; `p` is NULL when the field was absent. */
typedef struct sb_span {
    const char *p;
    size_t n;
} sb_span;

/* Longest `group`, `name` and `token` accepted, in decoded bytes. */
#define SB_GROUP_MAX 255
#define SB_NAME_MAX 255
#define SB_TOKEN_MAX 4096

/* A parsed client frame. Spans point into the frame buffer given to
 * sb_msg_parse() and live as long as it does. */
typedef struct sb_client_msg {
    sb_op op;
    sb_span id;    /* raw JSON text of `id` (a string with its quotes, or a
                      number), or absent */
    sb_span topic; /* decoded: sub/unsub pattern, pub topic */
    sb_span group; /* decoded */
    sb_span reply; /* decoded */
    sb_span data;  /* raw JSON text of `data`; absent means null */
    sb_span name;  /* decoded */
    sb_span token; /* decoded */
    int echo;      /* -1 absent, else 0 or 1 */
    const char *err_msg; /* on failure: static human text */
    char err_buf[96];    /* on failure, when err_msg needs details */
} sb_client_msg;

/* Parse and validate one client frame: JSON and UTF-8 (bad_json), an object
 * with a string `op` and fields of the right types (bad_frame), a known op
 * (unknown_op), topics and patterns (bad_topic). Unknown fields are
 * ignored; a known field given twice is bad_frame. String fields are decoded
 * in place, so `frame` is modified. `id` is reported even when a later check
 * fails, so that the error can carry it.
 * Returns SB_OK, or the error code with out->err_msg set. */
sb_err sb_msg_parse(char *frame, size_t len, sb_client_msg *out);

/* Greeting fields. */
typedef struct sb_info {
    uint64_t client_id;
    uint64_t max_frame;
    uint64_t heartbeat_ms;
    bool auth_required;
    const char *node; /* extra field "node" when not NULL */
} sb_info;

/* The `cluster` object of the `stats` frame. */
typedef struct sb_cluster_stats {
    const char *state; /* "connected", "reconnecting", "disconnected";
                          NULL (written "off") when not clustered */
    char node[256];    /* this node's name */
    char server[256];  /* the NATS server in use, empty when none */
    uint64_t msgs_sent;
    uint64_t bytes_sent;
    uint64_t msgs_received;
    uint64_t bytes_received;
    uint64_t dropped; /* publications that did not reach the cluster, or
                         messages from it that found no room here */
    uint64_t invalid; /* messages from the cluster that were not relayable */
    uint64_t subscriptions; /* (pattern, group) pairs subscribed on NATS */
} sb_cluster_stats;

/* Counters of the `stats` frame. */
typedef struct sb_stats {
    uint64_t connections;
    uint64_t subscriptions;
    uint64_t msgs_in;
    uint64_t msgs_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t dropped;
    uint64_t slow_consumers;
    uint64_t uptime_ms;
    uint64_t total_connections;
    uint64_t recv_queue;
    uint64_t recv_queue_high_water;
    sb_cluster_stats cluster;
} sb_stats;

#define SB_VERSION "0.1.0"
#define SB_PROTO 1

/* Builders. Each returns an owned frame with one reference (drop it with
 * sb_frame_unref()), or NULL on ENOMEM. Spans are borrowed. */

/* A `msg` frame. topic and reply are decoded bytes (escaped here); data is
 * the raw JSON text relayed as is (absent: null); reply may be absent. */
sb_frame *
sb_msg_build_msg(sb_span topic, sb_span data, sb_span reply, uint64_t origin);
/* A `msg` frame for a message that arrived from the cluster: as
 * sb_msg_build_msg(), routed `route` (sb_frame_route); for SB_ROUTE_GROUP,
 * `group` (decoded, 1..255 bytes) is stored after the text like the topic
 * and reply. */
sb_frame *sb_msg_build_msg_routed(sb_span topic,
                                  sb_span data,
                                  sb_span reply,
                                  uint64_t origin,
                                  sb_frame_route route,
                                  sb_span group);
sb_frame *sb_msg_build_info(const sb_info *info);
/* `id` is raw JSON text as parsed. */
sb_frame *sb_msg_build_ok(sb_span id);
/* `id` may be absent; `msg` is human text (escaped here). */
sb_frame *sb_msg_build_err(sb_err code, const char *msg, sb_span id);
sb_frame *sb_msg_build_ping(void);
sb_frame *sb_msg_build_pong(void);
/* A `stats` frame with every counter of `s`, and a `cluster` object
 * ({"state":"off"} when s->cluster.state is NULL). */
sb_frame *sb_msg_build_stats(const sb_stats *s);

#endif
