/* io.h - a connection's byte I/O behind one small read/write pair.
 *
 * Workers never call recv()/sendmsg() directly: they go through an sb_io,
 * so that a TLS session (OpenSSL's SSL_read/SSL_write over the same
 * non-blocking socket) can be slotted in by providing another sb_io_ops,
 * without touching the worker loop.
 *
 * Threads: an sb_io belongs to its connection's worker. */
#ifndef SB_IO_H
#define SB_IO_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct sb_io sb_io;

typedef struct sb_io_ops {
    /* Read up to n bytes without blocking. Returns the count (> 0), 0 at
     * end of stream, -EAGAIN when nothing is available, or another negative
     * errno (-ECONNRESET, ...). Retries EINTR itself. */
    ssize_t (*read)(sb_io *io, void *buf, size_t n);
    /* Write from `iov` without blocking and without SIGPIPE. Returns the
     * bytes written (possibly fewer than asked), -EAGAIN when none could be,
     * or another negative errno (-EPIPE, -ECONNRESET, ...). Retries EINTR. */
    ssize_t (*writev)(sb_io *io, const struct iovec *iov, int cnt);
    /* End our direction of the stream (FIN) after everything written;
     * reading goes on. */
    void (*shutdown)(sb_io *io);
    /* Close the transport and its socket. */
    void (*close)(sb_io *io);
} sb_io_ops;

struct sb_io {
    const sb_io_ops *ops;
    int fd;
};

/* A plain TCP transport over the non-blocking socket `fd` (taken: closed
 * by close()). */
void sb_io_init_plain(sb_io *io, int fd);

static inline ssize_t sb_io_read(sb_io *io, void *buf, size_t n)
{
    return io->ops->read(io, buf, n);
}

static inline ssize_t sb_io_writev(sb_io *io, const struct iovec *iov, int cnt)
{
    return io->ops->writev(io, iov, cnt);
}

static inline void sb_io_shutdown(sb_io *io)
{
    io->ops->shutdown(io);
}

static inline void sb_io_close(sb_io *io)
{
    io->ops->close(io);
}

#endif
