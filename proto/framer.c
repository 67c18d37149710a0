/* framer.c - newline framing with bounded memory. See framer.h.
 *
 * The buffer holds at most one partial frame (<= max_frame bytes) plus what
 * one read brought in. When a partial frame reaches max_frame bytes without
 * a newline, it is dropped and the framer switches to discarding, where
 * incoming bytes are scanned for the newline and thrown away. */
#include "framer.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void sb_framer_init(sb_framer *f, size_t max_frame)
{
    memset(f, 0, sizeof(*f));
    f->max_frame = max_frame;
}

void sb_framer_destroy(sb_framer *f)
{
    free(f->buf);
    f->buf = NULL;
    f->cap = f->start = f->end = f->scan = 0;
}

int sb_framer_space(sb_framer *f, size_t want, char **p, size_t *n)
{
    size_t pending = f->end - f->start;

    /* Move the partial frame to the front when the tail is short. */
    if (f->start > 0 && (pending == 0 || f->cap - f->end < want)) {
        if (pending > 0)
            memmove(f->buf, f->buf + f->start, pending);
        f->scan -= f->start;
        f->start = 0;
        f->end = pending;
    }
    if (f->cap - f->end < want) {
        /* Double for amortised growth, but not past one frame plus this
         * read: once drained, less than max_frame bytes are pending. */
        size_t cap = f->cap ? f->cap * 2 : want;
        if (f->max_frame <= SIZE_MAX - want && cap > f->max_frame + want)
            cap = f->max_frame + want;
        if (cap < f->end + want)
            cap = f->end + want;
        char *nb = realloc(f->buf, cap);
        if (nb == NULL)
            return -ENOMEM;
        f->buf = nb;
        f->cap = cap;
    }
    *p = f->buf + f->end;
    *n = f->cap - f->end;
    return 0;
}

void sb_framer_commit(sb_framer *f, size_t n)
{
    f->end += n;
}

static bool only_cr(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '\r')
            return false;
    return true;
}

sb_framer_result sb_framer_next(sb_framer *f, char **frame, size_t *len)
{
    for (;;) {
        if (f->start == f->end) {
            /* Fully consumed: restart at the front of the buffer. */
            f->start = f->end = f->scan = 0;
            return SB_FRAMER_NEED_MORE;
        }
        char *nl = memchr(f->buf + f->scan, '\n', f->end - f->scan);
        if (f->discarding) {
            if (nl == NULL) {
                f->start = f->end = f->scan = 0;
                return SB_FRAMER_NEED_MORE;
            }
            f->discarding = false;
            f->start = f->scan = (size_t)(nl - f->buf) + 1;
            continue;
        }
        if (nl == NULL) {
            f->scan = f->end;
            if (f->end - f->start >= f->max_frame) {
                /* No newline within max_frame bytes: too large whatever
                 * follows. Drop what is buffered, discard up to '\n'. */
                f->discarding = true;
                f->start = f->end = f->scan = 0;
                return SB_FRAMER_TOO_LARGE;
            }
            return SB_FRAMER_NEED_MORE;
        }
        size_t off = f->start;
        size_t raw = (size_t)(nl - f->buf) - off + 1;
        f->start = f->scan = off + raw;
        if (raw > f->max_frame)
            return SB_FRAMER_TOO_LARGE;
        size_t n = raw - 1;
        if (n > 0 && f->buf[off + n - 1] == '\r')
            n--;
        if (only_cr(f->buf + off, n))
            continue;
        *frame = f->buf + off;
        *len = n;
        return SB_FRAMER_FRAME;
    }
}

size_t sb_framer_pending(const sb_framer *f)
{
    return f->end - f->start;
}

void sb_framer_release(sb_framer *f)
{
    if (f->start == f->end) {
        free(f->buf);
        f->buf = NULL;
        f->cap = f->start = f->end = f->scan = 0;
    }
}
