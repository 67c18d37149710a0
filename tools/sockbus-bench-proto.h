/* sockbus-bench-proto.h - the three wire protocols the load tool speaks.
 *
 * The bench runs the same client code against sockbus (newline-delimited
 * JSON), NATS (its text protocol) and Redis (RESP pub/sub); this module is
 * everything that differs between them: the requests a client writes and
 * one parser that turns what a server sends into events.
 *
 * Every payload starts with a 32-byte header of lowercase hex digits: the
 * send time (CLOCK_MONOTONIC ns, 16 digits), the publisher id (8) and its
 * sequence number (8); the rest is filler. All of it is plain ASCII, so it
 * travels unescaped inside a JSON string.
 *
 * Threads: every function is pure or touches only what it is given. */
#ifndef SBB_BENCH_PROTO_H
#define SBB_BENCH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum sbb_proto {
    SBB_PROTO_SOCKBUS = 0,
    SBB_PROTO_NATS = 1,
    SBB_PROTO_REDIS = 2,
} sbb_proto;

#define SBB_HEADER_LEN 32 /* the smallest payload */

/* "sockbus", "nats" or "redis". */
const char *sbb_proto_name(sbb_proto p);

/* Parses a protocol name. Returns 0 or -EINVAL. */
int sbb_proto_parse(const char *name, sbb_proto *p);

/* What a client asks of the server while it sets up. */
typedef struct sbb_setup {
    const char *name;  /* client name, or NULL (sockbus and NATS only) */
    const char *token; /* or NULL */
    const char *topic; /* subscribe to it, or NULL for a publisher */
    const char *group; /* queue group of the subscription, or NULL */
} sbb_setup;

/* Writes into out[0..cap) the requests that authenticate, subscribe if
 * asked, and end with a request whose answer is SBB_EV_READY (sockbus: an
 * `id` of "ready"; NATS: PING; Redis: SUBSCRIBE's confirmation or PING).
 * Returns the length, or -ENOSPC, or -EINVAL (Redis has no groups). */
ssize_t sbb_proto_setup(sbb_proto p, const sbb_setup *s, char *out, size_t cap);

/* The request that a server answers with SBB_EV_READY once it has read
 * everything sent before it (a flush barrier). */
const char *sbb_proto_barrier(sbb_proto p);

/* The answer to a server's ping (NULL: Redis never pings). */
const char *sbb_proto_pong(sbb_proto p);

/* A publication of a `size`-byte payload to `topic`, filler only. Returns
 * owned (free) or NULL; *len is the frame length and *payload_off where
 * the payload starts in it. */
char *sbb_proto_pub_frame(sbb_proto p,
                          const char *topic,
                          size_t size,
                          size_t *len,
                          size_t *payload_off);

/* Writes the payload header at `payload` (32 bytes). */
void sbb_payload_stamp(char *payload,
                       uint64_t send_ns,
                       uint32_t pub,
                       uint32_t seq);

/* Reads a payload header. Returns 0, or -EBADMSG when `len` is too short
 * or a digit is not lowercase hex. */
int sbb_payload_read(const char *payload,
                     size_t len,
                     uint64_t *send_ns,
                     uint32_t *pub,
                     uint32_t *seq);

typedef enum sbb_ev_kind {
    SBB_EV_MSG,   /* a delivered message: data/len is its payload */
    SBB_EV_READY, /* the answer to the setup or barrier request */
    SBB_EV_INFO,  /* the greeting (sockbus info, NATS INFO) */
    SBB_EV_PING,  /* the server asks for a pong */
    SBB_EV_INT,   /* a Redis integer reply (PUBLISH's receiver count) */
    SBB_EV_ERR,   /* an error: text; dropped > 0 for a drop notice */
    SBB_EV_OTHER, /* anything else, ignored (ok, pong, +OK) */
} sbb_ev_kind;

typedef struct sbb_ev {
    sbb_ev_kind kind;
    const char *data; /* SBB_EV_MSG: the payload, in the parsed buffer */
    size_t len;
    uint64_t dropped; /* sockbus slow_consumer "dropped N messages" */
    bool slow;        /* the error says the client is a slow consumer */
    char text[200];   /* SBB_EV_ERR: the server's words */
} sbb_ev;

/* Parses the event at the start of buf[0..len) (borrowed; a MSG's data
 * points into it). Returns the bytes it takes (> 0), 0 when more bytes are
 * needed, or -EBADMSG when the bytes are not this protocol (ev->text then
 * shows the start of them). */
ssize_t sbb_proto_next(sbb_proto p, const char *buf, size_t len, sbb_ev *ev);

#endif
