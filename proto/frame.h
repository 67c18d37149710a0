/* frame.h - an immutable, reference-counted server frame.
 *
 * Every frame the server sends is built once into one allocation and then
 * shared: a `msg` frame for a publication is pushed into the send queue of
 * every matching subscriber, each holding one reference, and is freed after
 * the last send. Frames never change after they are built, so any thread may
 * read them without locks; only the reference count is atomic.
 *
 * A `msg` frame also records, for the bus and for in-process subscribers,
 * where its parts are: the decoded topic and reply (NUL-terminated copies
 * inside the same allocation) and the span of `data` in the text; for a
 * message from the cluster, also how the bus routes it (sb_frame_route).
 *
 * Threads: sb_frame_ref(), sb_frame_ref_n() and sb_frame_unref() may be
 * called from any thread. */
#ifndef SB_FRAME_H
#define SB_FRAME_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sb_frame_kind {
    SB_FRAME_CTRL = 0, /* info, ok, err, ping, pong, stats */
    SB_FRAME_MSG = 1,  /* a relayed publication */
} sb_frame_kind;

/* Which local subscribers the bus may give a msg frame to. Frames built
 * from a local publication are SB_ROUTE_LOCAL; the bus itself decides
 * whether the cluster takes their queue groups (see bus.c route()). */
typedef enum sb_frame_route {
    SB_ROUTE_LOCAL = 0,      /* plain subscribers and queue groups */
    SB_ROUTE_PLAIN_ONLY = 1, /* from the cluster: plain subscribers only */
    SB_ROUTE_GROUP = 2,      /* from the cluster: one member of `group` */
} sb_frame_route;

/* The origin of frames that arrived from the cluster: no connection has
 * this id (they count up from 1), so echo rules never match it. */
#define SB_ORIGIN_CLUSTER UINT64_MAX

typedef struct sb_frame {
    atomic_uint refs;
    uint32_t len;       /* bytes of text, the final '\n' included */
    uint8_t kind;       /* sb_frame_kind */
    uint8_t route;      /* msg only: sb_frame_route */
    uint8_t no_echo;    /* msg only: its publisher had echo off */
    uint8_t group_len;  /* msg only: SB_ROUTE_GROUP's group name length */
    uint16_t topic_len; /* msg only: decoded topic length */
    uint16_t reply_len; /* msg only: decoded reply length, 0 when none */
    uint32_t data_off;  /* msg only: the data value's span in text */
    uint32_t data_len;
    uint64_t origin;   /* msg only: client id of the publisher, 0 if none */
    const char *topic; /* msg only: decoded topic, NUL-terminated */
    const char *reply; /* msg only: decoded reply, or NULL */
    const char *group; /* msg only: SB_ROUTE_GROUP's group, NUL-terminated */
    char text[];       /* the frame as sent, NUL after the '\n' */
} sb_frame;

/* Allocate a frame with room for `text_cap` bytes of text plus `extra`
 * bytes after it (for the decoded topic and reply of a msg frame), and one
 * reference. Fields other than `refs` are zero; the builder fills them.
 * Returns owned (drop with sb_frame_unref()), or NULL on ENOMEM. */
sb_frame *sb_frame_alloc(size_t text_cap, size_t extra);

/* Take one more reference. Returns `f`. */
sb_frame *sb_frame_ref(sb_frame *f);

/* Take `n` more references at once (one atomic add for a fan-out). */
void sb_frame_ref_n(sb_frame *f, unsigned n);

/* Drop the reference held through *fp and clear *fp; the frame is freed with
 * its last reference. Accepts a NULL *fp. */
void sb_frame_unref(sb_frame **fp);

/* As sb_frame_unref() for a plain pointer, for use as a queue free_item
 * callback. */
void sb_frame_release(void *f);

#endif
