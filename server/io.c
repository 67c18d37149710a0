/* io.c - the plain TCP transport. See io.h. */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t plain_read(sb_io *io, void *buf, size_t n)
{
    for (;;) {
        ssize_t r = recv(io->fd, buf, n, MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        return -errno;
    }
}

static ssize_t plain_writev(sb_io *io, const struct iovec *iov, int cnt)
{
    struct msghdr mh;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = (struct iovec *)(uintptr_t)iov;
    mh.msg_iovlen = (size_t)cnt;
    for (;;) {
        ssize_t r = sendmsg(io->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        return -errno;
    }
}

static void plain_shutdown(sb_io *io)
{
    shutdown(io->fd, SHUT_WR); /* ENOTCONN after a reset is harmless */
}

static void plain_close(sb_io *io)
{
    if (io->fd >= 0) {
        /* close() may report EINTR, but on Linux the descriptor is gone
         * either way: never retry. */
        close(io->fd);
        io->fd = -1;
    }
}

static const sb_io_ops plain_ops = {plain_read, plain_writev, plain_shutdown,
                                    plain_close};

void sb_io_init_plain(sb_io *io, int fd)
{
    io->ops = &plain_ops;
    io->fd = fd;
}
