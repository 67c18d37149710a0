/* fuzz_framer.c - libFuzzer target for proto/framer.c.
 *
 * The input is a header and a byte stream:
 *   byte 0, 1  max_frame: with bit 7 of byte 0 set, 1 + ((b0 & 0x0F) << 8 |
 *              b1), so 1..4096; otherwise 1 + (b1 & 0x3F), so 1..64 (small
 *              limits are where the too-large paths are);
 *   byte 2     bits 0-3: k, the number of chunk-size bytes that follow;
 *              bit 4: chunk sizes are (b + 1) * 16 instead of b + 1;
 *              bit 5: each read fills the whole area sb_framer_space()
 *              returned, as recv() does in the server, not just one chunk;
 *              bit 6: call sb_framer_release() when nothing is pending;
 *              bit 7: overwrite each frame with '\n' as soon as it is taken;
 *   k bytes    chunk sizes, used in turn (k == 0: the stream in one read);
 *   the rest   the stream.
 *
 * The stream goes to sb_framer one read at a time, draining
 * sb_framer_next() after each read, and every event is checked against a
 * reference framer written here in the plainest way: split the whole stream
 * on '\n'; a line whose raw length (newline included) exceeds max_frame is
 * one TOO_LARGE event; otherwise one trailing '\r' is stripped and the line
 * is a FRAME unless it is made only of '\r' (or empty). A trailing line
 * without newline is one TOO_LARGE event when it is at least max_frame long
 * (no newline can make it fit), and nothing otherwise.
 *
 * The sequence of events does not depend on how the stream is split. When
 * each event is reported does, and is checked too: every event is known at
 * a stream offset (a frame at its newline, a too-large line once max_frame
 * of its bytes are in without a newline, or at its newline if sooner), and
 * after each drain exactly the events known by then have been reported.
 *
 * After each drain: the pending count and the discarding flag match the
 * stream seen so far; frames taken in the drain are still intact (unless
 * overwritten on purpose); and the buffer never holds more than max_frame
 * plus the largest read asked for. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framer.h"
#include "fuzz_check.h"

enum {
    F_BIG_CHUNKS = 0x10,
    F_FILL_AREA = 0x20,
    F_RELEASE = 0x40,
    F_SCRIBBLE = 0x80,
};

/* One event of the reference framer. */
struct ev {
    sb_framer_result kind; /* SB_FRAMER_FRAME or SB_FRAMER_TOO_LARGE */
    size_t off, len;       /* a frame's bytes in the stream */
    size_t at;             /* stream bytes needed to know the event */
};

static bool only_cr(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '\r')
            return false;
    return true;
}

/* Every event of the whole stream, in order; returns how many. `ev` has
 * room for n + 1 events (at most one per byte, plus a trailing one). */
static size_t
ref_frame(const uint8_t *s, size_t n, size_t max_frame, struct ev *ev)
{
    size_t nev = 0, pos = 0;
    while (pos < n) {
        const uint8_t *nl = memchr(s + pos, '\n', n - pos);
        if (nl == NULL) {
            if (n - pos >= max_frame)
                ev[nev++] =
                    (struct ev){SB_FRAMER_TOO_LARGE, 0, 0, pos + max_frame};
            break;
        }
        size_t raw = (size_t)(nl - s) - pos + 1;
        size_t end = pos + raw;
        if (raw > max_frame) {
            size_t at = pos + max_frame < end ? pos + max_frame : end;
            ev[nev++] = (struct ev){SB_FRAMER_TOO_LARGE, 0, 0, at};
        } else {
            size_t len = raw - 1;
            if (len > 0 && s[pos + len - 1] == '\r')
                len--;
            if (!only_cr(s + pos, len))
                ev[nev++] = (struct ev){SB_FRAMER_FRAME, pos, len, end};
        }
        pos = end;
    }
    return nev;
}

/* The run: the stream, its reference events and how far both have got. */
struct run {
    const uint8_t *s;
    size_t n;
    size_t max_frame;
    uint8_t flags;
    const struct ev *ev;
    size_t nev;
    size_t next_ev; /* reference events reported so far */
    size_t fed;     /* stream bytes committed so far */
    size_t line;    /* stream offset just past the last '\n' fed */
    /* Frames taken in the current drain: pointer and reference event. */
    char **taken;
    size_t *taken_ev;
};

/* Take frames until the framer needs more, checking each against the
 * reference, then the framer's state against the stream fed so far. */
static void drain(sb_framer *f, struct run *r)
{
    size_t ntaken = 0;
    char *fr;
    size_t fl;
    sb_framer_result res;
    while ((res = sb_framer_next(f, &fr, &fl)) != SB_FRAMER_NEED_MORE) {
        CHECK(r->next_ev < r->nev);
        const struct ev *e = &r->ev[r->next_ev];
        CHECK(res == e->kind);
        CHECK(e->at <= r->fed);
        if (res == SB_FRAMER_FRAME) {
            CHECK(fl == e->len);
            CHECK(fl == 0 || memcmp(fr, r->s + e->off, fl) == 0);
            /* The caller may write into a frame; '\n' is the byte most
             * likely to confuse a framer that looks back. */
            if (r->flags & F_SCRIBBLE) {
                memset(fr, '\n', fl);
            } else {
                r->taken[ntaken] = fr;
                r->taken_ev[ntaken++] = r->next_ev;
            }
        }
        r->next_ev++;
    }
    /* Exactly the events known from the bytes fed have been reported. */
    CHECK(r->next_ev == r->nev || r->ev[r->next_ev].at > r->fed);

    /* Frames taken earlier in this drain are still valid and unchanged. */
    for (size_t i = 0; i < ntaken; i++) {
        const struct ev *e = &r->ev[r->taken_ev[i]];
        CHECK(e->len == 0 || memcmp(r->taken[i], r->s + e->off, e->len) == 0);
        memset(r->taken[i], '\n', e->len);
    }

    /* What is pending is the unterminated line, unless it is already too
     * large, in which case it is being discarded and nothing is kept. */
    size_t tail = r->fed - r->line;
    bool oversized = tail >= r->max_frame;
    CHECK(f->discarding == oversized);
    CHECK(sb_framer_pending(f) == (oversized ? 0 : tail));
}

/* Feed the stream in reads whose sizes come from `chunks` in turn. */
static void feed(struct run *r, const uint8_t *chunks, size_t nchunks)
{
    sb_framer f;
    sb_framer_init(&f, r->max_frame);
    size_t ci = 0, max_want = 0;
    while (r->fed < r->n) {
        size_t c = r->n - r->fed;
        if (nchunks > 0) {
            c = (size_t)chunks[ci++ % nchunks] + 1;
            if (r->flags & F_BIG_CHUNKS)
                c *= 16;
        }
        char *p;
        size_t room;
        CHECK(sb_framer_space(&f, c, &p, &room) == 0);
        CHECK(room >= c && f.buf != NULL && p == f.buf + f.end);
        if (c > max_want)
            max_want = c;
        /* Bounded memory: one partial frame (below max_frame once drained)
         * plus one read. The bound is exact for the framer's growth rule. */
        CHECK(f.cap <= r->max_frame + max_want);

        size_t k = (r->flags & F_FILL_AREA) ? room : c;
        if (k > r->n - r->fed)
            k = r->n - r->fed;
        memcpy(p, r->s + r->fed, k);
        sb_framer_commit(&f, k);
        const uint8_t *nl = NULL;
        for (size_t i = k; i > 0 && nl == NULL; i--)
            if (r->s[r->fed + i - 1] == '\n')
                nl = r->s + r->fed + i - 1;
        if (nl != NULL)
            r->line = (size_t)(nl - r->s) + 1;
        r->fed += k;

        drain(&f, r);
        if ((r->flags & F_RELEASE) && sb_framer_pending(&f) == 0) {
            sb_framer_release(&f);
            CHECK(f.buf == NULL && f.cap == 0);
        }
    }
    CHECK(r->next_ev == r->nev);
    sb_framer_destroy(&f);
    CHECK(f.buf == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t max_frame = (data[0] & 0x80)
                           ? 1 + ((size_t)(data[0] & 0x0F) << 8 | data[1])
                           : 1 + (size_t)(data[1] & 0x3F);
    uint8_t flags = data[2];
    size_t nchunks = flags & 0x0F;
    if (size < 3 + nchunks)
        return 0;
    const uint8_t *chunks = data + 3;

    struct run r = {
        .s = data + 3 + nchunks,
        .n = size - 3 - nchunks,
        .max_frame = max_frame,
        .flags = flags,
    };
    struct ev *ev = malloc((r.n + 1) * sizeof(*ev));
    r.taken = malloc((r.n + 1) * sizeof(*r.taken));
    r.taken_ev = malloc((r.n + 1) * sizeof(*r.taken_ev));
    CHECK(ev != NULL && r.taken != NULL && r.taken_ev != NULL);
    r.nev = ref_frame(r.s, r.n, max_frame, ev);
    r.ev = ev;

    feed(&r, chunks, nchunks);

    free(r.taken_ev);
    free(r.taken);
    free(ev);
    return 0;
}
