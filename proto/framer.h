/* framer.h - reassembles newline-delimited frames from a byte stream.
 *
 * Bytes go in as they arrive from the socket, in any split; complete frames
 * come out, each one line without its "\n" (nor a "\r" before it). Lines
 * made only of "\r" are skipped. A frame longer than `max_frame` bytes
 * (newline included) is reported once with SB_FRAMER_TOO_LARGE and its
 * bytes are discarded up to and including the next "\n" without being
 * buffered: memory stays bounded by about `max_frame` plus one read.
 *
 * Usage, one read at a time:
 *     char *p; size_t n;
 *     sb_framer_space(&f, 65536, &p, &n);     then recv() into p, at most n
 *     sb_framer_commit(&f, got);
 *     while ((r = sb_framer_next(&f, &frame, &len)) != SB_FRAMER_NEED_MORE)
 *         ...
 *
 * Threads: a framer belongs to one thread (its connection's worker). */
#ifndef SB_FRAMER_H
#define SB_FRAMER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sb_framer {
    char *buf;        /* NULL while idle and empty */
    size_t cap;       /* bytes allocated */
    size_t start;     /* first byte not yet returned */
    size_t end;       /* end of the bytes received */
    size_t scan;      /* bytes before this offset hold no '\n' */
    size_t max_frame; /* largest frame accepted, newline included */
    bool discarding;  /* inside an oversized frame, dropping to '\n' */
} sb_framer;

typedef enum sb_framer_result {
    SB_FRAMER_NEED_MORE = 0, /* no complete frame buffered */
    SB_FRAMER_FRAME = 1,     /* *frame and *len describe one frame */
    SB_FRAMER_TOO_LARGE = 2, /* one oversized frame was (or is being)
                                discarded */
} sb_framer_result;

/* Set up an empty framer; nothing is allocated until the first read. */
void sb_framer_init(sb_framer *f, size_t max_frame);

/* Free the buffer. The framer may be initialised again. */
void sb_framer_destroy(sb_framer *f);

/* Make room for a read of at least `want` bytes (> 0) and return where to
 * write it. The area stays valid until the next sb_framer_ call.
 * Returns 0, or -ENOMEM (the framer is unchanged). */
int sb_framer_space(sb_framer *f, size_t want, char **p, size_t *n);

/* Record that `n` bytes were written at the area returned by
 * sb_framer_space() (n no larger than the area). */
void sb_framer_commit(sb_framer *f, size_t n);

/* Take the next complete frame. On SB_FRAMER_FRAME, *frame points into the
 * framer's buffer (the caller may modify those bytes, e.g. to decode strings
 * in place) and stays valid until the next sb_framer_space() or
 * sb_framer_release(); frames taken earlier stay valid too. */
sb_framer_result sb_framer_next(sb_framer *f, char **frame, size_t *len);

/* Bytes received but not yet returned as frames. */
size_t sb_framer_pending(const sb_framer *f);

/* Free the buffer when nothing is pending, so that an idle connection holds
 * no read buffer. Invalidates frames returned so far. */
void sb_framer_release(sb_framer *f);

#endif
