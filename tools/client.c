/* client.c - a small blocking client for sockbusd. See client.h.
 *
 * The socket is non-blocking from the start and every wait is one poll()
 * bounded by a deadline, with the caller's cancel descriptor next to the
 * socket: a blocking recv() could not be given a deadline or be cancelled
 * without racing a signal.
 *
 * Input is read into one buffer and cut at newlines, never at recv()
 * boundaries. Output is buffered too, so that `sockbus pub -` sends
 * thousands of frames in a few writes. While a write waits for room, the
 * server's frames are read into the input buffer (up to RBUF_SEND_MAX):
 * otherwise a client writing a long batch and a server whose send queue is
 * full of answers to that batch would wait on each other for ever. */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_CHUNK (64 * 1024)
#define RBUF_SEND_MAX (64 * 1024 * 1024) /* input kept while writing */
#define WBUF_FLUSH (64 * 1024)
#define DEFAULT_MAX_FRAME (1024 * 1024)

struct node {
    sb_client_frame *f;
    struct node *next;
};

struct sb_client {
    int fd;
    int cancel_fd;
    char addr[320];
    char *rbuf; /* unread input is rbuf[rpos, rlen) */
    size_t rpos, rlen, rcap;
    size_t line_max; /* a longer line is a protocol error */
    bool eof;        /* no more input: closed, reset or broken */
    int rerr;        /* why, when not an orderly close */
    char *wbuf;      /* output not yet written */
    size_t wlen, wcap;
    struct node *head, *tail; /* frames kept for sb_client_read */
    cJSON *info;
    long long next_id;
};

/* ---- Time and waiting -------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deadline for `timeout_ms`; -1 (no deadline) for a negative timeout. */
static long long deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

static int ms_left(long long deadline)
{
    if (deadline < 0)
        return -1;
    long long left = deadline - now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Wait for `events` on the socket until the deadline. Returns 0 with
 * *revents, -ETIMEDOUT, -ECANCELED or -errno. */
static int
wait_io(sb_client *c, short events, long long deadline, short *revents)
{
    for (;;) {
        struct pollfd p[2] = {
            {.fd = c->fd, .events = events},
            {.fd = c->cancel_fd, .events = POLLIN},
        };
        int n = poll(p, 2, ms_left(deadline));
        if (n < 0 && errno == EINTR)
            continue; /* the deadline is recomputed */
        if (n < 0)
            return -errno;
        if (p[1].revents != 0)
            return -ECANCELED;
        if (n == 0)
            return -ETIMEDOUT;
        *revents = p[0].revents;
        return 0;
    }
}

/* ---- Input ------------------------------------------------------------- */

/* Make room for `want` more bytes at rbuf + rlen. */
static int rbuf_reserve(sb_client *c, size_t want)
{
    if (c->rpos > 0 && (c->rpos == c->rlen || c->rcap - c->rlen < want)) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rcap - c->rlen >= want)
        return 0;
    size_t cap = c->rcap ? c->rcap : RBUF_CHUNK;
    while (cap - c->rlen < want)
        cap *= 2;
    char *nb = realloc(c->rbuf, cap);
    if (nb == NULL)
        return -ENOMEM;
    c->rbuf = nb;
    c->rcap = cap;
    return 0;
}

/* One non-blocking recv into the input buffer. Returns the byte count,
 * -EAGAIN when nothing is there, or a negative errno; at the end of input
 * (close or error) sets c->eof and returns 0. */
static long recv_some(sb_client *c)
{
    if (rbuf_reserve(c, RBUF_CHUNK) < 0)
        return -ENOMEM;
    for (;;) {
        ssize_t r =
            recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -EAGAIN;
        if (r <= 0) {
            c->eof = true;
            c->rerr = r < 0 ? errno : 0;
            return 0;
        }
        c->rlen += (size_t)r;
        return (long)r;
    }
}

/* The next complete non-empty line, NUL-terminated in place without its
 * "\r\n", or NULL when no complete line is buffered. */
static char *take_line(sb_client *c, size_t *n)
{
    while (c->rpos < c->rlen) {
        char *start = c->rbuf + c->rpos;
        char *nl = memchr(start, '\n', c->rlen - c->rpos);
        if (nl == NULL)
            return NULL;
        size_t len = (size_t)(nl - start);
        c->rpos += len + 1;
        if (len > 0 && start[len - 1] == '\r')
            len--;
        if (len == 0)
            continue;
        start[len] = '\0';
        *n = len;
        return start;
    }
    return NULL;
}

static int make_frame(const char *line, size_t n, sb_client_frame **out)
{
    cJSON *j;
    if (sb_client_parse_json(line, n, SB_CLIENT_MAX_DEPTH, &j, NULL, 0) < 0)
        return -EPROTO;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return -EPROTO;
    }
    sb_client_frame *f = calloc(1, sizeof(*f));
    char *text = malloc(n + 1);
    if (f == NULL || text == NULL) {
        free(f);
        free(text);
        cJSON_Delete(j);
        return -ENOMEM;
    }
    memcpy(text, line, n);
    text[n] = '\0';
    *f = (sb_client_frame){.text = text, .len = n, .json = j, .op = ""};
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
    if (cJSON_IsString(op))
        f->op = op->valuestring;
    *out = f;
    return 0;
}

/* The next frame from the socket (not from the kept ones), answering
 * pings on the way. */
static int read_frame(sb_client *c, long long deadline, sb_client_frame **out)
{
    static const char pong[] = "{\"op\":\"pong\"}";
    for (;;) {
        size_t n;
        char *line = take_line(c, &n);
        if (line != NULL) {
            int rc = make_frame(line, n, out);
            if (rc < 0 || strcmp((*out)->op, "ping") != 0)
                return rc;
            sb_client_frame_free(out);
            /* A failed pong shows up as the end of input soon enough. */
            (void)sb_client_send_text(c, pong, sizeof(pong) - 1, false);
            continue;
        }
        if (c->eof)
            return c->rerr ? -c->rerr : -EPIPE;
        if (c->rlen - c->rpos > c->line_max) {
            c->eof = true;
            c->rerr = EPROTO;
            continue;
        }
        long r = recv_some(c);
        if (r >= 0)
            continue;
        if (r != -EAGAIN)
            return (int)r;
        short rev;
        int rc = wait_io(c, POLLIN, deadline, &rev);
        if (rc < 0)
            return rc;
    }
}

/* ---- Kept frames ------------------------------------------------------- */

static int keep(sb_client *c, sb_client_frame *f)
{
    struct node *n = malloc(sizeof(*n));
    if (n == NULL) {
        sb_client_frame_free(&f);
        return -ENOMEM;
    }
    *n = (struct node){.f = f, .next = NULL};
    if (c->tail != NULL)
        c->tail->next = n;
    else
        c->head = n;
    c->tail = n;
    return 0;
}

/* Unlink the kept frame after `prev` (the first when prev is NULL). */
static sb_client_frame *unkeep(sb_client *c, struct node *prev)
{
    struct node *n = prev ? prev->next : c->head;
    if (prev != NULL)
        prev->next = n->next;
    else
        c->head = n->next;
    if (c->tail == n)
        c->tail = prev;
    sb_client_frame *f = n->f;
    free(n);
    return f;
}

/* True when f is the ok or err answering frame `id`. */
static bool answers(const sb_client_frame *f, long long id)
{
    if (strcmp(f->op, "ok") != 0 && strcmp(f->op, "err") != 0)
        return false;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->json, "id");
    return cJSON_IsNumber(v) && v->valuedouble == (double)id;
}

/* True for an err sent without an id because the server could not read
 * the frame (and so not its id either). */
static bool unreadable_err(const sb_client_frame *f)
{
    if (strcmp(f->op, "err") != 0 ||
        cJSON_GetObjectItemCaseSensitive(f->json, "id") != NULL)
        return false;
    const char *code = sb_client_frame_str(f, "code");
    return code != NULL &&
           (strcmp(code, "bad_json") == 0 || strcmp(code, "bad_frame") == 0 ||
            strcmp(code, "frame_too_large") == 0);
}

/* The answer to `id` if it is among the kept frames (it was read while
 * waiting for something else), else NULL. */
static sb_client_frame *kept_answer(sb_client *c, long long id)
{
    struct node *prev = NULL;
    for (struct node *n = c->head; n != NULL; prev = n, n = n->next)
        if (answers(n->f, id))
            return unkeep(c, prev);
    return NULL;
}

/* ---- Output ------------------------------------------------------------ */

/* Wait until the socket takes more, reading what the server sends
 * meanwhile. */
static int wait_writable(sb_client *c)
{
    for (;;) {
        bool room = !c->eof && c->rlen - c->rpos < RBUF_SEND_MAX;
        short rev = 0;
        int rc = wait_io(c, (short)(POLLOUT | (room ? POLLIN : 0)), -1, &rev);
        if (rc < 0)
            return rc;
        if (rev & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))
            return 0; /* the next send says which */
        long r = recv_some(c);
        if (r < 0 && r != -EAGAIN)
            return (int)r;
    }
}

int sb_client_flush(sb_client *c)
{
    size_t off = 0;
    int rc = 0;
    while (off < c->wlen) {
        ssize_t w = send(c->fd, c->wbuf + off, c->wlen - off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rc = wait_writable(c);
            if (rc < 0)
                break;
            continue;
        }
        rc = w < 0 ? -errno : -EPIPE;
        break;
    }
    memmove(c->wbuf, c->wbuf + off, c->wlen - off);
    c->wlen -= off;
    return rc;
}

int sb_client_send_text(sb_client *c, const char *text, size_t n, bool more)
{
    if (memchr(text, '\n', n) != NULL)
        return -EINVAL;
    if (c->wcap - c->wlen < n + 1) {
        size_t cap = c->wcap ? c->wcap : WBUF_FLUSH * 2;
        while (cap - c->wlen < n + 1)
            cap *= 2;
        char *nb = realloc(c->wbuf, cap);
        if (nb == NULL)
            return -ENOMEM;
        c->wbuf = nb;
        c->wcap = cap;
    }
    memcpy(c->wbuf + c->wlen, text, n);
    c->wbuf[c->wlen + n] = '\n';
    c->wlen += n + 1;
    if (more && c->wlen < WBUF_FLUSH)
        return 0;
    return sb_client_flush(c);
}

int sb_client_send_json(sb_client *c, const cJSON *frame, bool more)
{
    char *s = cJSON_PrintUnformatted(frame);
    if (s == NULL)
        return -ENOMEM;
    int rc = sb_client_send_text(c, s, strlen(s), more);
    free(s);
    return rc;
}

/* ---- Reading and calls ------------------------------------------------- */

int sb_client_read(sb_client *c, int timeout_ms, sb_client_frame **out)
{
    *out = NULL;
    if (c->head != NULL) {
        *out = unkeep(c, NULL);
        return 0;
    }
    return read_frame(c, deadline_of(timeout_ms), out);
}

long long sb_client_next_id(sb_client *c)
{
    return ++c->next_id;
}

/* An answer to our frame: 0 for ok, -EREMOTEIO for err (handed over). */
static int take_answer(sb_client_frame *f, sb_client_frame **err_out)
{
    if (strcmp(f->op, "ok") == 0) {
        sb_client_frame_free(&f);
        return 0;
    }
    if (err_out != NULL)
        *err_out = f;
    else
        sb_client_frame_free(&f);
    return -EREMOTEIO;
}

int sb_client_wait_ok(sb_client *c,
                      long long id,
                      int timeout_ms,
                      sb_client_frame **err_out)
{
    long long deadline = deadline_of(timeout_ms);
    if (err_out != NULL)
        *err_out = NULL;
    sb_client_frame *f = kept_answer(c, id);
    if (f != NULL)
        return take_answer(f, err_out);
    int rc = sb_client_flush(c);
    while (rc == 0) {
        rc = read_frame(c, deadline, &f);
        if (rc == 0 && (answers(f, id) || unreadable_err(f)))
            return take_answer(f, err_out);
        if (rc == 0)
            rc = keep(c, f);
    }
    return rc;
}

int sb_client_call(sb_client *c,
                   cJSON *frame,
                   int timeout_ms,
                   sb_client_frame **err_out)
{
    long long id = sb_client_next_id(c);
    cJSON_DeleteItemFromObjectCaseSensitive(frame, "id");
    if (cJSON_AddNumberToObject(frame, "id", (double)id) == NULL)
        return -ENOMEM;
    int rc = sb_client_send_json(c, frame, false);
    if (rc < 0)
        return rc;
    return sb_client_wait_ok(c, id, timeout_ms, err_out);
}

/* ---- Connecting -------------------------------------------------------- */

/* Write a reason into err (when given) and return rc. */
static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Split "HOST:PORT", "[V6]:PORT", "HOST", ":PORT" or a bare IPv6 address
 * into host and port, with the defaults for missing parts. */
static int split_addr(const char *addr, char *host, size_t hn, char *port)
{
    const char *h = addr, *p = NULL;
    size_t len;
    const char *colon = strchr(addr, ':');
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return -EINVAL;
        h = addr + 1;
        len = (size_t)(close - h);
        p = close[1] == ':' ? close + 2 : NULL;
    } else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
        len = (size_t)(colon - addr);
        p = colon + 1;
    } else {
        len = strlen(addr); /* no port, or a bare IPv6 address */
    }
    if (len >= hn)
        return -EINVAL;
    if (len == 0)
        snprintf(host, hn, "127.0.0.1");
    else
        snprintf(host, hn, "%.*s", (int)len, h);
    if (p == NULL)
        p = SB_CLIENT_DEFAULT_PORT;
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (p[0] < '0' || p[0] > '9' || *end != '\0' || v == 0 || v > 65535)
        return -EINVAL;
    snprintf(port, 6, "%lu", v);
    return 0;
}

/* Try one resolved address. Returns 0 (c->fd connected) or -errno. */
static int dial_one(sb_client *c, const struct addrinfo *ai, long long dl)
{
    c->fd =
        socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        return -errno;
    int rc = 0;
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        /* EINTR: the connection goes on in the background, as with
         * EINPROGRESS. */
        rc = (errno == EINPROGRESS || errno == EINTR) ? 0 : -errno;
        short rev;
        if (rc == 0)
            rc = wait_io(c, POLLOUT, dl, &rev);
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (rc == 0 && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            rc = -errno;
        else if (rc == 0 && soerr != 0)
            rc = -soerr;
    }
    if (rc < 0) {
        close(c->fd);
        c->fd = -1;
        return rc;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

/* Resolve and connect, trying each address until one answers. */
static int
dial(sb_client *c, const char *addr, long long dl, char *err, size_t errlen)
{
    char host[256], port[8];
    if (split_addr(addr, host, sizeof(host), port) < 0)
        return set_err(err, errlen, -EINVAL,
                       "bad server address \"%s\" (expected HOST:PORT)", addr);
    snprintf(c->addr, sizeof(c->addr), strchr(host, ':') ? "[%s]:%s" : "%s:%s",
             host, port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0)
        return set_err(err, errlen, -EHOSTUNREACH, "cannot resolve %s: %s",
                       host, gai_strerror(g));
    int rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        rc = dial_one(c, ai, dl);
        if (rc == 0 || rc == -ECANCELED || ms_left(dl) == 0)
            break;
    }
    freeaddrinfo(res);
    if (rc == -ETIMEDOUT)
        return set_err(err, errlen, rc, "connect to %s: timed out", c->addr);
    if (rc < 0)
        return set_err(err, errlen, rc, "connect to %s: %s", c->addr,
                       strerror(-rc));
    return 0;
}

/* Read the info greeting (or the err the server sends instead). */
static int greeting(sb_client *c, long long dl, char *err, size_t errlen)
{
    sb_client_frame *f = NULL;
    int rc = read_frame(c, dl, &f);
    if (rc == -ETIMEDOUT)
        return set_err(err, errlen, rc, "%s sent no greeting (is it sockbusd?)",
                       c->addr);
    if (rc == -EPROTO)
        return set_err(err, errlen, rc, "%s is not a sockbus server", c->addr);
    if (rc < 0)
        return set_err(err, errlen, rc, "%s: %s before the greeting", c->addr,
                       rc == -EPIPE ? "connection closed" : strerror(-rc));
    if (strcmp(f->op, "err") == 0) {
        sb_client_frame_err_text(f, err, errlen);
        sb_client_frame_free(&f);
        return -EREMOTEIO;
    }
    if (strcmp(f->op, "info") != 0) {
        sb_client_frame_free(&f);
        return set_err(err, errlen, -EPROTO, "%s is not a sockbus server",
                       c->addr);
    }
    c->info = f->json;
    f->json = NULL;
    const cJSON *mf = cJSON_GetObjectItemCaseSensitive(c->info, "max_frame");
    if (cJSON_IsNumber(mf) && mf->valuedouble > 0 && mf->valuedouble < 1e12)
        c->line_max = 2 * (size_t)mf->valuedouble + 4096;
    sb_client_frame_free(&f);
    return 0;
}

static cJSON *connect_frame(const sb_client_opts *o)
{
    cJSON *j = cJSON_CreateObject();
    if (j == NULL || cJSON_AddStringToObject(j, "op", "connect") == NULL)
        goto fail;
    if (o->name && cJSON_AddStringToObject(j, "name", o->name) == NULL)
        goto fail;
    if (o->token && cJSON_AddStringToObject(j, "token", o->token) == NULL)
        goto fail;
    if (o->echo >= 0 && cJSON_AddBoolToObject(j, "echo", o->echo) == NULL)
        goto fail;
    return j;
fail:
    cJSON_Delete(j);
    return NULL;
}

/* Send connect and wait for its ok. */
static int send_connect(sb_client *c,
                        const sb_client_opts *o,
                        long long dl,
                        char *err,
                        size_t errlen)
{
    cJSON *j = connect_frame(o);
    if (j == NULL)
        return set_err(err, errlen, -ENOMEM, "out of memory");
    sb_client_frame *ef = NULL;
    int rc = sb_client_call(c, j, ms_left(dl), &ef);
    cJSON_Delete(j);
    if (rc == -EREMOTEIO) {
        sb_client_frame_err_text(ef, err, errlen);
        sb_client_frame_free(&ef);
        return rc;
    }
    if (rc == -ETIMEDOUT)
        return set_err(err, errlen, rc, "%s: no answer to connect", c->addr);
    if (rc < 0)
        return set_err(err, errlen, rc, "%s: %s during connect", c->addr,
                       rc == -EPIPE ? "connection closed" : strerror(-rc));
    return 0;
}

void sb_client_opts_init(sb_client_opts *o)
{
    *o = (sb_client_opts){.name = NULL,
                          .token = NULL,
                          .echo = -1,
                          .connect_timeout_ms = SB_CLIENT_CONNECT_TIMEOUT_MS,
                          .cancel_fd = -1};
}

int sb_client_connect(sb_client **out,
                      const char *addr,
                      const sb_client_opts *o,
                      char *err,
                      size_t errlen)
{
    sb_client_opts defaults;
    if (o == NULL) {
        sb_client_opts_init(&defaults);
        o = &defaults;
    }
    *out = NULL;
    sb_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return set_err(err, errlen, -ENOMEM, "out of memory");
    c->fd = -1;
    c->cancel_fd = o->cancel_fd;
    c->line_max = 2 * DEFAULT_MAX_FRAME + 4096;
    long long dl = deadline_of(o->connect_timeout_ms);
    int rc = dial(c, addr, dl, err, errlen);
    if (rc == 0)
        rc = greeting(c, dl, err, errlen);
    if (rc == 0 && (o->name || o->token || o->echo >= 0))
        rc = send_connect(c, o, dl, err, errlen);
    if (rc < 0) {
        sb_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void sb_client_close(sb_client *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    while (c->head != NULL) {
        sb_client_frame *f = unkeep(c, NULL);
        sb_client_frame_free(&f);
    }
    cJSON_Delete(c->info);
    free(c->rbuf);
    free(c->wbuf);
    free(c);
}

const cJSON *sb_client_info(const sb_client *c)
{
    return c->info;
}

const char *sb_client_addr(const sb_client *c)
{
    return c->addr;
}

int sb_client_fd(const sb_client *c)
{
    return c->fd;
}

/* ---- JSON helpers ------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : lo;
    hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : hi;
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static const unsigned char *digits(const unsigned char *p,
                                   const unsigned char *end)
{
    while (p < end && is_digit(*p))
        p++;
    return p;
}

/* Length of the RFC 8259 number at p, or 0 when it is not one (cJSON
 * reads numbers with strtod and takes 01, 1. or 1.e5, which the server
 * refuses). */
static size_t number_len(const unsigned char *p, const unsigned char *end)
{
    const unsigned char *q = p < end && *p == '-' ? p + 1 : p;
    if (q < end && *q == '0')
        q++;
    else if (q < end && is_digit(*q))
        q = digits(q, end);
    else
        return 0;
    if (q < end && *q == '.') {
        if (q + 1 >= end || !is_digit(q[1]))
            return 0;
        q = digits(q + 1, end);
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q += q + 1 < end && (q[1] == '+' || q[1] == '-') ? 2 : 1;
        if (q >= end || !is_digit(*q))
            return 0;
        q = digits(q, end);
    }
    if (q < end && (is_digit(*q) || *q == '.' || *q == 'e' || *q == 'E' ||
                    *q == '+' || *q == '-'))
        return 0; /* 01, 1.2.3 */
    return (size_t)(q - p);
}

/* Check the string whose opening quote is at *p: UTF-8, and no raw
 * control characters (cJSON lets both through; escapes are left to it).
 * Returns NULL with *p past the string, or why with *p at the bad byte
 * (the end when the string is not closed). */
static const char *scan_string(const unsigned char **p,
                               const unsigned char *end)
{
    const unsigned char *q = *p + 1;
    while (q < end && *q != '"') {
        size_t k = *q == '\\' ? 2 : utf8_len(q, end);
        *p = q;
        if (*q < 0x20)
            return "control character in a string";
        if (k == 0)
            return "invalid UTF-8";
        q += k;
    }
    *p = q < end ? q + 1 : end;
    return q < end ? NULL : "unexpected end of input";
}

/* What the server checks and cJSON does not: nesting, numbers, strings.
 * Returns the offset of the first problem (*why says what), or -1. */
static long
strict_scan(const char *text, size_t n, int max_depth, const char **why)
{
    const unsigned char *s = (const unsigned char *)text, *end = s + n;
    int depth = 0;
    *why = NULL;
    for (const unsigned char *p = s; p < end;) {
        const unsigned char *next = p + 1;
        if (*p == '"') {
            *why = scan_string(&p, end);
            next = p;
        } else if (*p == '-' || is_digit(*p)) {
            size_t k = number_len(p, end);
            *why = k ? NULL : "invalid number";
            next = p + k;
        } else if ((*p == '{' || *p == '[') && ++depth > max_depth) {
            *why = "nested too deep";
        } else if (*p == '}' || *p == ']') {
            depth--;
        }
        if (*why != NULL)
            return (long)(p - s);
        p = next;
    }
    if (depth > 0)
        *why = "unexpected end of input";
    return depth > 0 ? (long)n : -1;
}

static bool json_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

int sb_client_parse_json(const char *text,
                         size_t n,
                         int max_depth,
                         cJSON **out,
                         char *err,
                         size_t errlen)
{
    if (out != NULL)
        *out = NULL;
    const char *why = NULL;
    long bad = strict_scan(text, n, max_depth, &why);
    if (bad >= 0 && strcmp(why, "nested too deep") == 0)
        return set_err(err, errlen, -EINVAL,
                       "nested deeper than %d levels at byte %ld", max_depth,
                       bad);
    if (bad >= 0)
        return set_err(err, errlen, -EINVAL, "%s at byte %ld", why, bad);
    const char *end = text;
    cJSON *j = cJSON_ParseWithLengthOpts(text, n, &end, false);
    if (j == NULL) {
        size_t at = end ? (size_t)(end - text) : 0;
        if (at >= n)
            return set_err(err, errlen, -EINVAL, "unexpected end of input");
        return set_err(err, errlen, -EINVAL, "invalid JSON at byte %zu", at);
    }
    while (end < text + n && json_space(*end))
        end++;
    if (end < text + n) {
        cJSON_Delete(j);
        return set_err(err, errlen, -EINVAL,
                       "unexpected text after the value at byte %zu",
                       (size_t)(end - text));
    }
    if (out != NULL)
        *out = j;
    else
        cJSON_Delete(j);
    return 0;
}

/* `s` as a JSON string literal, quotes included (owned; NULL when out of
 * memory). cJSON escapes what JSON requires. */
static char *json_string(const char *s)
{
    cJSON *j = cJSON_CreateString(s);
    char *out = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return out;
}

/* Copy valid JSON without the whitespace outside its strings: a pub frame
 * must be one line, and the values keep their exact spelling (printing
 * the parsed value again would turn 1.50 into 1.5, or lose the digits of
 * integers above 2^53). */
static size_t copy_compact(char *dst, const char *src)
{
    size_t k = 0;
    bool in_str = false, esc = false;
    for (const char *p = src; *p != '\0'; p++) {
        char ch = *p;
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
        } else if (json_space(ch)) {
            continue;
        } else if (ch == '"') {
            in_str = true;
        }
        dst[k++] = ch;
    }
    return k;
}

char *sb_client_pub_text(const char *topic,
                         const char *data,
                         const char *reply,
                         long long id)
{
    char *t = json_string(topic);
    char *r = reply ? json_string(reply) : NULL;
    char *s = NULL;
    if (t == NULL || (reply != NULL && r == NULL))
        goto done;
    size_t cap = strlen(t) + (r ? strlen(r) : 0) + strlen(data) + 96;
    s = malloc(cap);
    if (s == NULL)
        goto done;
    int k = snprintf(s, cap, "{\"op\":\"pub\",\"topic\":%s", t);
    if (r != NULL)
        k += snprintf(s + k, cap - (size_t)k, ",\"reply\":%s", r);
    if (id > 0)
        k += snprintf(s + k, cap - (size_t)k, ",\"id\":%lld", id);
    k += snprintf(s + k, cap - (size_t)k, ",\"data\":");
    size_t len = (size_t)k + copy_compact(s + k, data);
    s[len++] = '}';
    s[len] = '\0';
done:
    free(t);
    free(r);
    return s;
}

/* Skip a JSON string whose opening quote is at p; returns the byte after
 * the closing quote. The text was accepted by cJSON, so it is closed. */
static const char *skip_string(const char *p)
{
    for (p++; *p != '\0' && *p != '"'; p++)
        if (*p == '\\' && p[1] != '\0')
            p++;
    return *p ? p + 1 : p;
}

/* Skip one JSON value starting at p (no leading whitespace). */
static const char *skip_value(const char *p)
{
    if (*p == '"')
        return skip_string(p);
    if (*p != '{' && *p != '[') {
        while (*p != '\0' && *p != ',' && *p != '}' && *p != ']' &&
               !json_space(*p))
            p++;
        return p;
    }
    int depth = 0;
    do {
        if (*p == '"') {
            p = skip_string(p);
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if (*p == '}' || *p == ']')
            depth--;
        p++;
    } while (depth > 0 && *p != '\0');
    return p;
}

static const char *skip_space(const char *p)
{
    while (json_space(*p))
        p++;
    return p;
}

int sb_client_frame_member(const sb_client_frame *f,
                           const char *key,
                           const char **val,
                           size_t *n)
{
    size_t klen = strlen(key);
    const char *p = skip_space(f->text);
    if (*p != '{')
        return -ENOENT;
    for (p = skip_space(p + 1); *p == '"'; p = skip_space(p + 1)) {
        const char *k = p + 1;
        p = skip_string(p);
        bool match = (size_t)(p - 1 - k) == klen && memcmp(k, key, klen) == 0;
        p = skip_space(skip_space(p) + 1); /* the ':' */
        const char *v = p;
        p = skip_value(p);
        if (match) {
            *val = v;
            *n = (size_t)(p - v);
            return 0;
        }
        p = skip_space(p);
        if (*p != ',')
            break;
    }
    return -ENOENT;
}

const char *sb_client_frame_str(const sb_client_frame *f, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->json, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void sb_client_frame_err_text(const sb_client_frame *f, char *buf, size_t n)
{
    const char *code = sb_client_frame_str(f, "code");
    const char *msg = sb_client_frame_str(f, "msg");
    snprintf(buf, n, "server error %s: %s", code ? code : "(no code)",
             msg ? msg : "(no message)");
}

void sb_client_frame_free(sb_client_frame **f)
{
    if (f == NULL || *f == NULL)
        return;
    cJSON_Delete((*f)->json);
    free((*f)->text);
    free(*f);
    *f = NULL;
}
