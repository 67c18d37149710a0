/* sockbus.c - the command-line client: pub, sub, request, reply, ping and
 * stats against a running sockbusd.
 *
 * Exit status: 0 success, 1 runtime failure (no connection, an err for our
 * frame, the server closing, a timeout), 2 usage error. Messages on stdout
 * are data only (one JSON line each, flushed per line, so the output can
 * be piped); everything else goes to stderr, prefixed "sockbus: ".
 *
 * Signals: SIGINT and SIGTERM write to a pipe whose read end is the
 * client's cancel descriptor, so every wait ends at once and the command
 * decides: sub, reply and ping end normally (exit 0), anything else was
 * interrupted (exit 1). A second signal kills the process as usual.
 * SIGPIPE keeps its default for stdout (`sockbus sub x | head` ends
 * quietly); the socket never raises it (MSG_NOSIGNAL). */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define ACK_TIMEOUT_MS 10000 /* for the ok of a sub, pub, stats */
#define REQUEST_TIMEOUT_S 5.0
#define PING_TIMEOUT_S 5.0
#define PING_INTERVAL_S 1.0
#define STDIN_CHUNK (64 * 1024)

/* Commands, as bits so that an option can list where it applies. */
enum {
    C_PUB = 1 << 0,
    C_SUB = 1 << 1,
    C_REQUEST = 1 << 2,
    C_REPLY = 1 << 3,
    C_PING = 1 << 4,
    C_STATS = 1 << 5,
    C_ALL = (1 << 6) - 1,
};

struct opts {
    const char *server, *token, *name; /* common */
    const char *reply, *group;
    double connect_timeout, timeout, interval; /* seconds; 0: unset */
    long count;                                /* 0: unlimited */
    bool data_only, full, json, help, version;
    const char *args[3]; /* positional arguments after the command */
    int nargs;
};

struct ctx {
    struct opts *o;
    sb_client *c;
};

struct command {
    const char *name;
    unsigned bit;
    int min_args, max_args;
    int (*run)(struct ctx *x);
    const char *synopsis;
    const char *help;
};

/* ---- Signals ----------------------------------------------------------- */

static int sig_fds[2] = {-1, -1};
static volatile sig_atomic_t sig_count;

static void on_signal(int sig)
{
    int saved = errno;
    if (++sig_count > 1) {
        signal(sig, SIG_DFL); /* a second Ctrl-C: stop now */
        raise(sig);
    }
    char b = 1;
    ssize_t r = write(sig_fds[1], &b, 1);
    (void)r;
    errno = saved;
}

static int install_signals(void)
{
    if (pipe2(sig_fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        return -1;
    return 0;
}

/* ---- Small helpers ----------------------------------------------------- */

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int secs_to_ms(double s)
{
    double ms = s * 1000.0 + 0.5;
    return ms >= (double)INT_MAX ? INT_MAX : (int)ms;
}

/* Milliseconds left until `deadline_us` (never negative). */
static int ms_until(long long deadline_us)
{
    long long left = (deadline_us - now_us() + 999) / 1000;
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Sleep `ms` unless a signal comes first. Returns 0 or -ECANCELED. */
static int nap(int ms)
{
    struct pollfd p = {.fd = sig_fds[0], .events = POLLIN};
    long long end = now_us() + (long long)ms * 1000;
    for (int left = ms; left > 0; left = ms_until(end)) {
        int n = poll(&p, 1, left);
        if (n > 0)
            return -ECANCELED;
        if (n < 0 && errno != EINTR)
            return 0;
    }
    return 0;
}

static void report_err(const sb_client_frame *f)
{
    char buf[1200];
    sb_client_frame_err_text(f, buf, sizeof(buf));
    fprintf(stderr, "sockbus: %s\n", buf);
    const char *code = sb_client_frame_str(f, "code");
    if (code != NULL && strcmp(code, "auth_required") == 0)
        fprintf(stderr, "sockbus: the server requires a token: pass --token "
                        "or set SOCKBUS_TOKEN\n");
}

/* Print the err frames the server sent before closing (the reason). */
static void report_kept_errors(struct ctx *x)
{
    sb_client_frame *f;
    while (sb_client_read(x->c, 0, &f) == 0) {
        if (strcmp(f->op, "err") == 0)
            report_err(f);
        sb_client_frame_free(&f);
    }
}

/* Say why a wait for the server failed. Takes `ef`. Returns EXIT_FAIL. */
static int failed(struct ctx *x, int rc, sb_client_frame *ef, const char *what)
{
    const char *addr = sb_client_addr(x->c);
    if (rc == -EREMOTEIO && ef != NULL) {
        report_err(ef);
    } else if (rc == -ETIMEDOUT) {
        fprintf(stderr, "sockbus: %s: no answer from %s in time\n", what, addr);
    } else if (rc == -EPIPE || rc == -ECONNRESET) {
        report_kept_errors(x);
        fprintf(stderr, "sockbus: %s closed the connection\n", addr);
    } else if (rc == -ECANCELED) {
        fprintf(stderr, "sockbus: interrupted\n");
    } else if (rc == -EPROTO) {
        fprintf(stderr, "sockbus: %s sent a line that is not a JSON object\n",
                addr);
    } else {
        fprintf(stderr, "sockbus: %s: %s\n", what, strerror(-rc));
    }
    sb_client_frame_free(&ef);
    return EXIT_FAIL;
}

/* Send `frame` (taken) with an id and wait up to timeout_ms for its ok.
 * Returns EXIT_OK, or EXIT_FAIL after saying why. */
static int ack(struct ctx *x, cJSON *frame, int timeout_ms, const char *what)
{
    if (frame == NULL) {
        fprintf(stderr, "sockbus: out of memory\n");
        return EXIT_FAIL;
    }
    sb_client_frame *ef = NULL;
    int rc = sb_client_call(x->c, frame, timeout_ms, &ef);
    cJSON_Delete(frame);
    return rc == 0 ? EXIT_OK : failed(x, rc, ef, what);
}

/* A frame {"op":op} with an optional topic and group. Returns owned. */
static cJSON *op_frame(const char *op, const char *topic, const char *group)
{
    cJSON *j = cJSON_CreateObject();
    if (j == NULL || cJSON_AddStringToObject(j, "op", op) == NULL ||
        (topic && cJSON_AddStringToObject(j, "topic", topic) == NULL) ||
        (group && cJSON_AddStringToObject(j, "group", group) == NULL)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static int subscribe(struct ctx *x, const char *pattern, int timeout_ms)
{
    return ack(x, op_frame("sub", pattern, x->o->group), timeout_ms,
               "subscribe");
}

static size_t max_frame(struct ctx *x)
{
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(sb_client_info(x->c), "max_frame");
    if (cJSON_IsNumber(v) && v->valuedouble >= 64 && v->valuedouble < 1e15)
        return (size_t)v->valuedouble;
    return 1024 * 1024;
}

/* Check the JSON given for data. Returns 0, or -1 after saying why. */
static int check_data(const char *what, const char *s, size_t n, long line)
{
    char err[160];
    /* The frame around the data is one level of nesting already. */
    if (sb_client_parse_json(s, n, SB_CLIENT_MAX_DEPTH - 1, NULL, err,
                             sizeof(err)) == 0)
        return 0;
    if (line > 0) {
        fprintf(stderr, "sockbus: line %ld: invalid JSON: %s\n", line, err);
        return -1;
    }
    fprintf(stderr, "sockbus: %s is not valid JSON: %s\n", what ? what : "data",
            err);
    if (n > 0 && isalpha((unsigned char)s[0])) /* a bare word */
        fprintf(stderr,
                "sockbus: a string needs its quotes: "
                "'\"%.40s\"'\n",
                s);
    return -1;
}

/* Print a msg frame (or its data alone) as one line and flush. */
static int print_msg(const sb_client_frame *f, bool data_only)
{
    const char *p = f->text;
    size_t n = f->len;
    if (data_only && sb_client_frame_member(f, "data", &p, &n) < 0) {
        p = "null";
        n = 4;
    }
    fwrite(p, 1, n, stdout);
    putchar('\n');
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "sockbus: cannot write to stdout: %s\n",
                strerror(errno));
        return -1;
    }
    return 0;
}

static int open_client(struct ctx *x)
{
    sb_client_opts co;
    sb_client_opts_init(&co);
    co.name = x->o->name;
    co.token = x->o->token;
    co.cancel_fd = sig_fds[0];
    if (x->o->connect_timeout > 0)
        co.connect_timeout_ms = secs_to_ms(x->o->connect_timeout);
    char err[1200];
    int rc = sb_client_connect(&x->c, x->o->server, &co, err, sizeof(err));
    if (rc == 0)
        return EXIT_OK;
    if (rc == -ECANCELED) {
        fprintf(stderr, "sockbus: interrupted\n");
        return EXIT_FAIL;
    }
    fprintf(stderr, "sockbus: %s\n", err);
    return rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL;
}

/* ---- pub --------------------------------------------------------------- */

/* Publish one message and wait for its ok. */
static int pub_one(struct ctx *x, const char *topic, const char *data)
{
    long long id = sb_client_next_id(x->c);
    char *text = sb_client_pub_text(topic, data, x->o->reply, id);
    if (text == NULL) {
        fprintf(stderr, "sockbus: out of memory\n");
        return EXIT_FAIL;
    }
    size_t n = strlen(text);
    if (n + 1 > max_frame(x)) {
        fprintf(stderr,
                "sockbus: message too large: %zu bytes, the server takes "
                "at most %zu\n",
                n + 1, max_frame(x));
        free(text);
        return EXIT_FAIL;
    }
    int rc = sb_client_send_text(x->c, text, n, false);
    free(text);
    sb_client_frame *ef = NULL;
    if (rc == 0)
        rc = sb_client_wait_ok(x->c, id, ACK_TIMEOUT_MS, &ef);
    return rc == 0 ? EXIT_OK : failed(x, rc, ef, "publish");
}

/* State of `sockbus pub TOPIC -`. */
struct pub_stdin {
    const char *topic;
    char *buf; /* stdin not yet cut into lines: buf[0, len) */
    size_t len, cap;
    bool skipping; /* inside a line too long to publish */
    bool eof;
    long line;     /* number of the last line cut */
    long sent;     /* frames written */
    long bad;      /* lines refused here */
    long rejected; /* frames the server answered with err */
    bool synced;   /* one message was acknowledged: topic and auth work */
    int fatal;     /* an exit status once something fatal happened */
};

/* Count and print what the server sent about pipelined frames. */
static void pub_drain(struct ctx *x, struct pub_stdin *st)
{
    sb_client_frame *f;
    int rc;
    while ((rc = sb_client_read(x->c, 0, &f)) == 0) {
        if (strcmp(f->op, "err") == 0) {
            report_err(f);
            st->rejected++;
        }
        sb_client_frame_free(&f);
    }
    if (rc != -ETIMEDOUT && !st->fatal)
        st->fatal = failed(x, rc, NULL, "publish");
}

/* Until one message got its ok, publish synchronously: a bad topic or a
 * missing token is then reported once, not once per line. */
static void
pub_sync(struct ctx *x, struct pub_stdin *st, const char *text, long long id)
{
    sb_client_frame *ef = NULL;
    int rc = sb_client_send_text(x->c, text, strlen(text), false);
    if (rc == 0)
        rc = sb_client_wait_ok(x->c, id, ACK_TIMEOUT_MS, &ef);
    const char *code = ef ? sb_client_frame_str(ef, "code") : NULL;
    if (rc == -EREMOTEIO && code && strcmp(code, "bad_json") == 0) {
        /* This line only: the server is stricter than this client. */
        fprintf(stderr, "sockbus: line %ld: ", st->line);
        report_err(ef);
        sb_client_frame_free(&ef);
        st->rejected++;
        st->sent++;
        return;
    }
    if (rc < 0) {
        st->fatal = failed(x, rc, ef, "publish");
        return;
    }
    st->sent++;
    st->synced = true;
}

static void line_too_long(struct pub_stdin *st, size_t limit)
{
    fprintf(stderr,
            "sockbus: line %ld: longer than the server's max_frame (%zu "
            "bytes)\n",
            st->line, limit);
    st->bad++;
}

/* Trim a line in place; returns its start and sets *n. */
static char *trim(char *s, size_t *n)
{
    while (*n > 0 && strchr(" \t\r", s[*n - 1]) != NULL)
        s[--*n] = '\0';
    while (*n > 0 && strchr(" \t", s[0]) != NULL) {
        s++;
        --*n;
    }
    return s;
}

/* One line of stdin (NUL-terminated, newline removed). */
static void pub_line(struct ctx *x, struct pub_stdin *st, char *s, size_t n)
{
    st->line++;
    s = trim(s, &n);
    if (n == 0 || st->fatal)
        return;
    if (check_data(NULL, s, n, st->line) < 0) {
        st->bad++;
        return;
    }
    long long id = st->synced ? 0 : sb_client_next_id(x->c);
    char *text = sb_client_pub_text(st->topic, s, x->o->reply, id);
    if (text == NULL) {
        st->fatal = failed(x, -ENOMEM, NULL, "publish");
        return;
    }
    size_t len = strlen(text);
    if (len + 1 > max_frame(x)) {
        line_too_long(st, max_frame(x));
    } else if (id > 0) {
        pub_sync(x, st, text, id);
    } else {
        int rc = sb_client_send_text(x->c, text, len, true);
        if (rc < 0)
            st->fatal = failed(x, rc, NULL, "publish");
        else
            st->sent++;
    }
    free(text);
}

/* Say a line is too long for the server and skip to its end. */
static void pub_too_long(struct pub_stdin *st, size_t limit)
{
    st->line++;
    line_too_long(st, limit);
    st->skipping = true;
    st->len = 0;
}

/* Cut and publish the complete lines in st->buf. */
static void pub_lines(struct ctx *x, struct pub_stdin *st)
{
    size_t limit = max_frame(x);
    size_t off = 0;
    while (off < st->len && !st->fatal) {
        char *start = st->buf + off;
        char *nl = memchr(start, '\n', st->len - off);
        if (nl == NULL)
            break;
        *nl = '\0';
        if (!st->skipping)
            pub_line(x, st, start, (size_t)(nl - start));
        st->skipping = false;
        off = (size_t)(nl - st->buf) + 1;
    }
    memmove(st->buf, st->buf + off, st->len - off);
    st->len -= off;
    if (st->eof && st->len > 0 && !st->skipping && !st->fatal) {
        st->buf[st->len] = '\0'; /* a last line without newline */
        pub_line(x, st, st->buf, st->len);
        st->len = 0;
    }
    if (!st->skipping && st->len > limit)
        pub_too_long(st, limit);
}

/* Read what stdin has. */
static void pub_read(struct ctx *x, struct pub_stdin *st)
{
    if (st->cap - st->len < STDIN_CHUNK + 1) {
        size_t cap = st->cap ? st->cap * 2 : 4 * STDIN_CHUNK;
        char *nb = realloc(st->buf, cap);
        if (nb == NULL) {
            st->fatal = failed(x, -ENOMEM, NULL, "read stdin");
            return;
        }
        st->buf = nb;
        st->cap = cap;
    }
    ssize_t r = read(STDIN_FILENO, st->buf + st->len, STDIN_CHUNK);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (r < 0) {
        fprintf(stderr, "sockbus: read stdin: %s\n", strerror(errno));
        st->fatal = EXIT_FAIL;
        return;
    }
    if (r == 0)
        st->eof = true;
    if (st->skipping) {
        char *nl = memchr(st->buf, '\n', (size_t)r);
        if (nl == NULL)
            return; /* still inside the long line */
        r -= nl + 1 - st->buf;
        memmove(st->buf, nl + 1, (size_t)r);
        st->skipping = false;
    }
    st->len += (size_t)r;
    pub_lines(x, st);
}

/* Wait for stdin, the server or a signal. */
static void pub_wait(struct ctx *x, struct pub_stdin *st)
{
    struct pollfd p[3] = {
        {.fd = STDIN_FILENO, .events = POLLIN},
        {.fd = sb_client_fd(x->c), .events = POLLIN},
        {.fd = sig_fds[0], .events = POLLIN},
    };
    int n = poll(p, 3, -1);
    if (n < 0 && errno == EINTR)
        return;
    if (p[2].revents) {
        st->fatal = failed(x, -ECANCELED, NULL, "publish");
        return;
    }
    if (p[1].revents)
        pub_drain(x, st); /* errors, and pings to answer */
    if (p[0].revents & POLLNVAL)
        st->eof = true;
    else if (p[0].revents && !st->fatal)
        pub_read(x, st);
}

/* Wait until the server has handled every frame: a ping with an id is
 * answered after all of them. */
static void pub_barrier(struct ctx *x, struct pub_stdin *st)
{
    long long id = sb_client_next_id(x->c);
    char ping[64];
    int n = snprintf(ping, sizeof(ping), "{\"op\":\"ping\",\"id\":%lld}", id);
    sb_client_frame *ef = NULL;
    int rc = sb_client_send_text(x->c, ping, (size_t)n, false);
    while (rc == 0) {
        rc = sb_client_wait_ok(x->c, id, ACK_TIMEOUT_MS, &ef);
        if (rc != -EREMOTEIO ||
            cJSON_GetObjectItemCaseSensitive(ef->json, "id") != NULL)
            break;
        /* About a pipelined line, not the ping: count it, wait on. */
        report_err(ef);
        sb_client_frame_free(&ef);
        st->rejected++;
        rc = 0;
    }
    if (rc < 0) {
        st->fatal = failed(x, rc, ef, "publish");
        return;
    }
    pub_drain(x, st);
}

static int pub_stdin(struct ctx *x, const char *topic)
{
    struct pub_stdin st = {.topic = topic};
    while (!st.eof && !st.fatal) {
        pub_wait(x, &st);
        /* Send what this chunk of stdin gave before waiting again. */
        int rc = st.fatal ? 0 : sb_client_flush(x->c);
        if (rc < 0)
            st.fatal = failed(x, rc, NULL, "publish");
    }
    if (!st.fatal)
        pub_lines(x, &st); /* the last line, when it has no newline */
    if (!st.fatal && st.sent > 0)
        pub_barrier(x, &st);
    free(st.buf);
    long ok = st.sent - st.rejected;
    fprintf(stderr, "sockbus: published %ld message%s to %s", ok,
            ok == 1 ? "" : "s", topic);
    if (st.bad > 0)
        fprintf(stderr, ", %ld bad line%s skipped", st.bad,
                st.bad == 1 ? "" : "s");
    if (st.rejected > 0)
        fprintf(stderr, ", %ld rejected by the server", st.rejected);
    fprintf(stderr, "\n");
    if (st.fatal)
        return st.fatal;
    return st.bad > 0 || st.rejected > 0 ? EXIT_FAIL : EXIT_OK;
}

static int cmd_pub(struct ctx *x)
{
    const char *topic = x->o->args[0], *data = x->o->args[1];
    bool from_stdin = strcmp(data, "-") == 0;
    if (!from_stdin && check_data("the message", data, strlen(data), 0) < 0)
        return EXIT_USAGE;
    int rc = open_client(x);
    if (rc != EXIT_OK)
        return rc;
    return from_stdin ? pub_stdin(x, topic) : pub_one(x, topic, data);
}

/* ---- sub --------------------------------------------------------------- */

static int cmd_sub(struct ctx *x)
{
    const struct opts *o = x->o;
    int rc = open_client(x);
    if (rc == EXIT_OK)
        rc = subscribe(x, o->args[0], ACK_TIMEOUT_MS);
    if (rc != EXIT_OK)
        return rc;
    long long deadline =
        o->timeout > 0 ? now_us() + (long long)(o->timeout * 1e6) : -1;
    for (long got = 0; o->count == 0 || got < o->count;) {
        sb_client_frame *f;
        rc = sb_client_read(x->c, deadline < 0 ? -1 : ms_until(deadline), &f);
        if (rc == -ECANCELED)
            return EXIT_OK;
        if (rc == -ETIMEDOUT && o->count == 0)
            return EXIT_OK;
        if (rc == -ETIMEDOUT) {
            fprintf(stderr,
                    "sockbus: timed out after %g s with %ld of %ld "
                    "messages\n",
                    o->timeout, got, o->count);
            return EXIT_FAIL;
        }
        if (rc < 0)
            return failed(x, rc, NULL, "subscribe");
        if (strcmp(f->op, "msg") == 0) {
            got++;
            rc = print_msg(f, o->data_only);
        } else if (strcmp(f->op, "err") == 0) {
            report_err(f);
        }
        sb_client_frame_free(&f);
        if (rc < 0)
            return EXIT_FAIL;
    }
    return EXIT_OK;
}

/* ---- request and reply ------------------------------------------------- */

static void make_inbox(char *buf, size_t n)
{
    unsigned char r[8];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* Unique enough without the entropy pool: time and pid. */
        uint64_t v = (uint64_t)now_us() ^ ((uint64_t)getpid() << 40);
        memcpy(r, &v, sizeof(r));
    }
    int k = snprintf(buf, n, "_INBOX.");
    for (size_t i = 0; i < sizeof(r) && (size_t)k + 2 < n; i++)
        k += snprintf(buf + k, n - (size_t)k, "%02x", r[i]);
}

/* Wait for the first msg on the inbox and print it. */
static int await_reply(struct ctx *x, long long deadline, const char *topic)
{
    for (;;) {
        sb_client_frame *f;
        int rc = sb_client_read(x->c, ms_until(deadline), &f);
        if (rc == -ETIMEDOUT) {
            fprintf(stderr, "sockbus: no reply to %s within %g s\n", topic,
                    x->o->timeout);
            return EXIT_FAIL;
        }
        if (rc < 0)
            return failed(x, rc, NULL, "request");
        if (strcmp(f->op, "msg") == 0) {
            rc = print_msg(f, !x->o->full);
            sb_client_frame_free(&f);
            return rc < 0 ? EXIT_FAIL : EXIT_OK;
        }
        if (strcmp(f->op, "err") == 0)
            report_err(f);
        sb_client_frame_free(&f);
    }
}

static int cmd_request(struct ctx *x)
{
    const char *topic = x->o->args[0], *data = x->o->args[1];
    if (check_data("the request", data, strlen(data), 0) < 0)
        return EXIT_USAGE;
    if (x->o->timeout <= 0)
        x->o->timeout = REQUEST_TIMEOUT_S;
    int rc = open_client(x);
    if (rc != EXIT_OK)
        return rc;
    long long deadline = now_us() + (long long)(x->o->timeout * 1e6);
    char inbox[64];
    make_inbox(inbox, sizeof(inbox));
    rc = subscribe(x, inbox, ms_until(deadline));
    if (rc != EXIT_OK)
        return rc;
    long long id = sb_client_next_id(x->c);
    char *text = sb_client_pub_text(topic, data, inbox, id);
    rc = text ? sb_client_send_text(x->c, text, strlen(text), false) : -ENOMEM;
    free(text);
    sb_client_frame *ef = NULL;
    if (rc == 0)
        rc = sb_client_wait_ok(x->c, id, ms_until(deadline), &ef);
    if (rc < 0)
        return failed(x, rc, ef, "request");
    return await_reply(x, deadline, topic);
}

/* Answer one request. Returns 1 when answered, 0 when not a request,
 * -1 on a fatal error (already reported). */
static int answer(struct ctx *x, const sb_client_frame *f, long seq)
{
    const char *topic = sb_client_frame_str(f, "topic");
    const char *to = sb_client_frame_str(f, "reply");
    const char *data = "null";
    size_t n = 4;
    sb_client_frame_member(f, "data", &data, &n);
    int shown = n > 100 ? 100 : (int)n;
    if (to == NULL) {
        fprintf(stderr, "sockbus: [%ld] %s %.*s%s: no reply topic, ignored\n",
                seq, topic ? topic : "?", shown, data, n > 100 ? "..." : "");
        return 0;
    }
    long long id = sb_client_next_id(x->c);
    char *text = sb_client_pub_text(to, x->o->args[1], NULL, id);
    int rc =
        text ? sb_client_send_text(x->c, text, strlen(text), false) : -ENOMEM;
    free(text);
    sb_client_frame *ef = NULL;
    if (rc == 0)
        rc = sb_client_wait_ok(x->c, id, ACK_TIMEOUT_MS, &ef);
    if (rc == -EREMOTEIO) {
        report_err(ef); /* that reply topic only: go on */
        sb_client_frame_free(&ef);
        return 0;
    }
    if (rc < 0) {
        failed(x, rc, ef, "reply");
        return -1;
    }
    fprintf(stderr, "sockbus: [%ld] %s %.*s%s -> replied on %s\n", seq,
            topic ? topic : "?", shown, data, n > 100 ? "..." : "", to);
    return 1;
}

static int cmd_reply(struct ctx *x)
{
    const struct opts *o = x->o;
    if (check_data("the reply", o->args[1], strlen(o->args[1]), 0) < 0)
        return EXIT_USAGE;
    int rc = open_client(x);
    if (rc == EXIT_OK)
        rc = subscribe(x, o->args[0], ACK_TIMEOUT_MS);
    if (rc != EXIT_OK)
        return rc;
    long seq = 0;
    for (long done = 0; o->count == 0 || done < o->count;) {
        sb_client_frame *f;
        rc = sb_client_read(x->c, -1, &f);
        if (rc == -ECANCELED)
            return EXIT_OK;
        if (rc < 0)
            return failed(x, rc, NULL, "reply");
        int r = 0;
        if (strcmp(f->op, "msg") == 0)
            r = answer(x, f, ++seq);
        else if (strcmp(f->op, "err") == 0)
            report_err(f);
        sb_client_frame_free(&f);
        if (r < 0)
            return EXIT_FAIL;
        done += r;
    }
    return EXIT_OK;
}

/* ---- ping -------------------------------------------------------------- */

struct ping_stats {
    long sent, received;
    long long min_us, max_us, sum_us;
    long long start_us;
};

/* Drop the pongs kept while waiting for oks; report errors. */
static void drop_kept(struct ctx *x)
{
    sb_client_frame *f;
    while (sb_client_read(x->c, 0, &f) == 0) {
        if (strcmp(f->op, "err") == 0)
            report_err(f);
        sb_client_frame_free(&f);
    }
}

/* One ping. Returns 0, 1 when it got no answer in time, or a negative
 * errno. The answer is timed at the ok that follows the pong (the pong
 * carries no id to match; the ok does, and comes in the same write). */
static int ping_once(struct ctx *x, struct ping_stats *ps, long seq)
{
    char frame[64];
    long long id = sb_client_next_id(x->c);
    int n = snprintf(frame, sizeof(frame), "{\"op\":\"ping\",\"id\":%lld}", id);
    long long t0 = now_us();
    ps->sent++;
    int rc = sb_client_send_text(x->c, frame, (size_t)n, false);
    sb_client_frame *ef = NULL;
    if (rc == 0)
        rc = sb_client_wait_ok(x->c, id, secs_to_ms(x->o->timeout), &ef);
    long long us = now_us() - t0;
    sb_client_frame_free(&ef);
    drop_kept(x);
    if (rc == -ETIMEDOUT) {
        printf("no pong from %s: seq=%ld (after %g s)\n", sb_client_addr(x->c),
               seq, x->o->timeout);
        return 1;
    }
    if (rc < 0) {
        ps->sent -= rc == -ECANCELED; /* not answered, not lost either */
        return rc;
    }
    ps->received++;
    ps->sum_us += us;
    ps->min_us = ps->received == 1 || us < ps->min_us ? us : ps->min_us;
    ps->max_us = us > ps->max_us ? us : ps->max_us;
    printf("pong from %s: seq=%ld time=%.3f ms\n", sb_client_addr(x->c), seq,
           (double)us / 1000.0);
    fflush(stdout);
    return 0;
}

static void ping_summary(struct ctx *x, const struct ping_stats *ps)
{
    long lost = ps->sent - ps->received;
    printf("\n--- %s ping statistics ---\n", sb_client_addr(x->c));
    printf("%ld pings sent, %ld pongs received, %ld%% lost, time %lld ms\n",
           ps->sent, ps->received, ps->sent ? lost * 100 / ps->sent : 0,
           (now_us() - ps->start_us) / 1000);
    if (ps->received > 0)
        printf("rtt min/avg/max = %.3f/%.3f/%.3f ms\n",
               (double)ps->min_us / 1000.0,
               (double)ps->sum_us / (double)ps->received / 1000.0,
               (double)ps->max_us / 1000.0);
    fflush(stdout);
}

static int cmd_ping(struct ctx *x)
{
    struct opts *o = x->o;
    if (o->timeout <= 0)
        o->timeout = PING_TIMEOUT_S;
    if (o->interval <= 0)
        o->interval = PING_INTERVAL_S;
    int rc = open_client(x);
    if (rc != EXIT_OK)
        return rc;
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(sb_client_info(x->c), "version");
    printf("PING %s (sockbus %s)\n", sb_client_addr(x->c),
           cJSON_IsString(v) ? v->valuestring : "?");
    struct ping_stats ps = {.start_us = now_us()};
    for (long seq = 1; o->count == 0 || seq <= o->count; seq++) {
        rc = ping_once(x, &ps, seq);
        if (rc < 0)
            break;
        if ((o->count == 0 || seq < o->count) &&
            nap(secs_to_ms(o->interval)) < 0) {
            rc = -ECANCELED;
            break;
        }
    }
    ping_summary(x, &ps);
    if (rc < 0 && rc != -ECANCELED)
        return failed(x, rc, NULL, "ping");
    return ps.received == ps.sent && ps.received > 0 ? EXIT_OK : EXIT_FAIL;
}

/* ---- stats ------------------------------------------------------------- */

/* "3d 04h 05m 06s", "5m 06s" or "6.2s". */
static void human_duration(char *buf, size_t n, double ms)
{
    unsigned long long s = (unsigned long long)(ms / 1000.0);
    unsigned long long d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
    if (d > 0)
        snprintf(buf, n, "%llud %02lluh %02llum %02llus", d, h, m, s % 60);
    else if (h > 0)
        snprintf(buf, n, "%lluh %02llum %02llus", h, m, s % 60);
    else if (m > 0)
        snprintf(buf, n, "%llum %02llus", m, s % 60);
    else
        snprintf(buf, n, "%.1fs", ms / 1000.0);
}

/* "1048576 (1.0 MiB)" for byte counters, the number for the rest. */
static void stat_value(char *buf, size_t n, const char *key, const cJSON *v)
{
    if (!cJSON_IsNumber(v)) {
        char *s = cJSON_PrintUnformatted(v);
        snprintf(buf, n, "%s", s ? s : "?");
        free(s);
        return;
    }
    double d = v->valuedouble;
    if (strcmp(key, "uptime_ms") == 0) {
        human_duration(buf, n, d);
        return;
    }
    int k = snprintf(buf, n, "%.0f", d);
    if (strncmp(key, "bytes_", 6) != 0 || d < 1024 || k < 0)
        return;
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    for (d /= 1024; d >= 1024 && u < 3; u++)
        d /= 1024;
    snprintf(buf + k, n - (size_t)k, " (%.1f %s)", d, units[u]);
}

static void print_stats_table(struct ctx *x, const cJSON *st)
{
    int width = 6; /* "server" */
    for (const cJSON *v = st->child; v != NULL; v = v->next) {
        int len =
            strcmp(v->string, "uptime_ms") == 0 ? 6 : (int)strlen(v->string);
        width = len > width ? len : width;
    }
    const cJSON *ver =
        cJSON_GetObjectItemCaseSensitive(sb_client_info(x->c), "version");
    printf("%-*s  %s (sockbus %s)\n", width, "server", sb_client_addr(x->c),
           cJSON_IsString(ver) ? ver->valuestring : "?");
    for (const cJSON *v = st->child; v != NULL; v = v->next) {
        if (strcmp(v->string, "op") == 0)
            continue;
        char val[128];
        stat_value(val, sizeof(val), v->string, v);
        bool up = strcmp(v->string, "uptime_ms") == 0;
        printf("%-*s  %s\n", width, up ? "uptime" : v->string, val);
    }
    fflush(stdout);
}

static int cmd_stats(struct ctx *x)
{
    int rc = open_client(x);
    if (rc == EXIT_OK)
        rc = ack(x, op_frame("stats", NULL, NULL), ACK_TIMEOUT_MS, "stats");
    if (rc != EXIT_OK)
        return rc;
    /* The stats frame came before the ok and was kept. */
    sb_client_frame *f = NULL;
    while (sb_client_read(x->c, 0, &f) == 0 && strcmp(f->op, "stats") != 0)
        sb_client_frame_free(&f);
    if (f == NULL) {
        fprintf(stderr, "sockbus: the server acknowledged stats without "
                        "sending them\n");
        return EXIT_FAIL;
    }
    if (x->o->json) {
        printf("%s\n", f->text);
        fflush(stdout);
    } else {
        print_stats_table(x, f->json);
    }
    sb_client_frame_free(&f);
    return EXIT_OK;
}

/* ---- Command line ------------------------------------------------------ */

static const char common_help[] =
    "Common options (before or after the command):\n"
    "  --server HOST:PORT     server address (default $SOCKBUS_SERVER or\n"
    "                         " SB_CLIENT_DEFAULT_SERVER
    "; [IPV6]:PORT and host names work)\n"
    "  --token TOKEN          token for a server started with --token\n"
    "                         (default $SOCKBUS_TOKEN)\n"
    "  --name NAME            client name, shown in the server's log\n"
    "  --connect-timeout S    seconds to connect and be greeted (default 5)\n"
    "  -h, --help             help (sockbus COMMAND --help for a command)\n"
    "  --version              print the version\n"
    "\n"
    "Durations are seconds (1.5) or carry a unit (1.5s, 250ms).\n"
    "Exit status: 0 success, 1 failure (cannot connect, server error,\n"
    "connection closed, timeout), 2 usage error.\n";

static const struct command commands[] = {
    {"pub", C_PUB, 2, 2, cmd_pub, "pub TOPIC JSON|- [--reply TOPIC]",
     "Publish JSON to TOPIC and wait for the server's ok.\n"
     "\n"
     "With - instead of JSON, publish one message per line of stdin (empty\n"
     "lines are skipped) without waiting for each: a bad line is reported\n"
     "with its number and skipped, and the count published goes to stderr.\n"
     "The exit status is then 1 if any line was not published.\n"
     "\n"
     "  --reply TOPIC          ask subscribers to answer on TOPIC\n"
     "\n"
     "JSON is checked before sending: a string needs its quotes.\n"
     "  sockbus pub orders.eu.created '{\"order\":42,\"total\":9.5}'\n"
     "  sockbus pub greetings '\"hello\"'\n"
     "  jq -c '.[]' orders.json | sockbus pub orders.import -\n"},
    {"sub", C_SUB, 1, 1, cmd_sub,
     "sub PATTERN [--group G] [--count N] [--timeout S] [--data-only]",
     "Print each message on PATTERN as one JSON line (the msg frame as the\n"
     "server sent it) until Ctrl-C, N messages, or the timeout.\n"
     "\n"
     "  --group G              join queue group G: each message goes to one\n"
     "                         member of the group\n"
     "  --count N              exit after N messages\n"
     "  --timeout S            stop after S seconds; exit 0, or 1 when\n"
     "                         --count was given and fewer came\n"
     "  --data-only            print only each message's data\n"
     "\n"
     "PATTERN may use * for one token and > for the rest:\n"
     "  sockbus sub 'orders.>'\n"
     "  sockbus sub 'orders.*.created' --data-only | jq .total\n"},
    {"request", C_REQUEST, 2, 2, cmd_request,
     "request TOPIC JSON [--timeout S] [--full]",
     "Publish JSON to TOPIC with a fresh reply topic (_INBOX.<random>) and\n"
     "print the data of the first reply. Exit 1 if none comes in time.\n"
     "\n"
     "  --timeout S            how long to wait (default 5)\n"
     "  --full                 print the whole msg frame, not only its data\n"
     "\n"
     "  sockbus request prices.get '{\"sku\":\"A-1\"}'\n"},
    {"reply", C_REPLY, 2, 2, cmd_reply,
     "reply PATTERN JSON [--group G] [--count N]",
     "Answer every request on PATTERN by publishing JSON to its reply\n"
     "topic, with one line per request on stderr, until Ctrl-C or N\n"
     "answers. Messages without a reply topic are ignored.\n"
     "\n"
     "  --group G              share the requests with other members of G\n"
     "  --count N              exit after answering N requests\n"
     "\n"
     "  sockbus reply prices.get '{\"price\":9.5}' --group pricing\n"},
    {"ping", C_PING, 0, 0, cmd_ping,
     "ping [--count N] [--interval S] [--timeout S]",
     "Send pings and print each round-trip time, then min/avg/max. Runs\n"
     "until Ctrl-C unless --count is given. Exit 1 if any ping went\n"
     "unanswered.\n"
     "\n"
     "  --count N              send N pings\n"
     "  --interval S           time between pings (default 1)\n"
     "  --timeout S            time to wait for each answer (default 5)\n"
     "\n"
     "  sockbus ping --count 3\n"},
    {"stats", C_STATS, 0, 0, cmd_stats, "stats [--json]",
     "Print the server's counters as a table.\n"
     "\n"
     "  --json                 print the stats frame as the server sent it\n"
     "\n"
     "  sockbus stats --server 10.0.0.5:7878\n"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

enum kind { K_STR, K_COUNT, K_SECS, K_FLAG };

struct optdef {
    const char *name;
    enum kind kind;
    size_t off;
    unsigned cmds;
};

#define OFF(f) offsetof(struct opts, f)
static const struct optdef optdefs[] = {
    {"server", K_STR, OFF(server), C_ALL},
    {"token", K_STR, OFF(token), C_ALL},
    {"name", K_STR, OFF(name), C_ALL},
    {"connect-timeout", K_SECS, OFF(connect_timeout), C_ALL},
    {"help", K_FLAG, OFF(help), C_ALL},
    {"version", K_FLAG, OFF(version), C_ALL},
    {"reply", K_STR, OFF(reply), C_PUB},
    {"group", K_STR, OFF(group), C_SUB | C_REPLY},
    {"count", K_COUNT, OFF(count), C_SUB | C_REPLY | C_PING},
    {"timeout", K_SECS, OFF(timeout), C_SUB | C_REQUEST | C_PING},
    {"interval", K_SECS, OFF(interval), C_PING},
    {"data-only", K_FLAG, OFF(data_only), C_SUB},
    {"full", K_FLAG, OFF(full), C_REQUEST},
    {"json", K_FLAG, OFF(json), C_STATS},
};
#define N_OPTDEFS (sizeof(optdefs) / sizeof(optdefs[0]))

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: sockbus [OPTIONS] COMMAND [ARGS]\n"
                 "Command-line client for sockbusd, the JSON pub/sub "
                 "relay.\n\nCommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  sockbus %s\n", commands[i].synopsis);
    fprintf(out, "\n%s", common_help);
}

static void print_command_help(const struct command *cmd)
{
    printf("Usage: sockbus %s\n\n%s\n%s", cmd->synopsis, cmd->help,
           common_help);
}

static int usage_error(const struct command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const struct command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sockbus: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd != NULL)
        fprintf(stderr, "\nUsage: sockbus %s (see sockbus %s --help)\n",
                cmd->synopsis, cmd->name);
    else
        fprintf(stderr, "\nRun sockbus --help for the commands.\n");
    return -1;
}

/* Seconds: "1.5", "1.5s" or "250ms", more than 0. */
static int parse_secs(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || !(v > 0) || v > 1e7)
        return -1;
    if (strcmp(end, "ms") == 0)
        v /= 1000.0;
    else if (strcmp(end, "s") != 0 && *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int parse_count(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v <= 0)
        return -1;
    *out = v;
    return 0;
}

static const struct optdef *find_option(const char *name, size_t n)
{
    for (size_t i = 0; i < N_OPTDEFS; i++)
        if (strlen(optdefs[i].name) == n &&
            memcmp(optdefs[i].name, name, n) == 0)
            return &optdefs[i];
    return NULL;
}

/* Store an option's value. Returns 0 or -1 (reported). */
static int set_option(struct opts *o, const struct optdef *d, const char *v)
{
    char *field = (char *)o + d->off;
    switch (d->kind) {
    case K_STR:
        memcpy(field, &v, sizeof(v));
        return 0;
    case K_COUNT:
        if (parse_count(v, (long *)(void *)field) == 0)
            return 0;
        return usage_error(NULL, "--%s needs a positive integer, not \"%s\"",
                           d->name, v);
    case K_SECS:
        if (parse_secs(v, (double *)(void *)field) == 0)
            return 0;
        return usage_error(NULL,
                           "--%s needs a duration in seconds (1.5, 250ms), "
                           "not \"%s\"",
                           d->name, v);
    case K_FLAG:
        *(bool *)(void *)field = true;
        return 0;
    }
    return -1;
}

/* Parse the option at argv[*i] ("--name", "--name=value" or "--name
 * value"). Returns its index in optdefs, or -1 (reported). */
static int parse_option(int argc, char **argv, int *i, struct opts *o)
{
    const char *a = argv[*i] + 2;
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    const struct optdef *d = find_option(a, n);
    if (d == NULL)
        return usage_error(NULL, "unknown option --%.*s", (int)n, a);
    const char *v = eq ? eq + 1 : NULL;
    if (d->kind == K_FLAG && v != NULL)
        return usage_error(NULL, "--%s takes no value", d->name);
    if (d->kind != K_FLAG && v == NULL) {
        if (*i + 1 >= argc)
            return usage_error(NULL, "--%s needs a value", d->name);
        v = argv[++*i];
    }
    if (set_option(o, d, v) < 0)
        return -1;
    return (int)(d - optdefs);
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* Options may come anywhere; the first other word is the command, the
 * rest are its arguments. Single-dash words are arguments (-5 is JSON),
 * except -h. */
static int scan_args(int argc,
                     char **argv,
                     struct opts *o,
                     const struct command **cmd,
                     unsigned long *seen)
{
    bool only_args = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_args && strcmp(a, "--") == 0) {
            only_args = true;
        } else if (!only_args && strcmp(a, "-h") == 0) {
            o->help = true;
        } else if (!only_args && strncmp(a, "--", 2) == 0) {
            int k = parse_option(argc, argv, &i, o);
            if (k < 0)
                return -1;
            *seen |= 1ul << k;
        } else if (*cmd == NULL) {
            *cmd = find_command(a);
            if (*cmd == NULL)
                return usage_error(NULL, "unknown command \"%s\"", a);
        } else if (o->nargs == 3) {
            return usage_error(*cmd, "too many arguments");
        } else {
            o->args[o->nargs++] = a;
        }
    }
    return 0;
}

/* Check what scan_args found against the command. */
static int
check_args(const struct command *cmd, const struct opts *o, unsigned long seen)
{
    for (size_t k = 0; k < N_OPTDEFS; k++)
        if ((seen >> k & 1) && !(optdefs[k].cmds & cmd->bit))
            return usage_error(cmd, "--%s does not apply to %s",
                               optdefs[k].name, cmd->name);
    if (o->nargs < cmd->min_args)
        return usage_error(cmd, "missing arguments");
    if (o->nargs > cmd->max_args)
        return usage_error(cmd, "unexpected argument \"%s\"",
                           o->args[cmd->max_args]);
    return 0;
}

/* Fill what the environment and the defaults give. */
static void apply_env(struct opts *o)
{
    const char *s = getenv("SOCKBUS_SERVER");
    if (o->server == NULL)
        o->server = s && *s ? s : SB_CLIENT_DEFAULT_SERVER;
    const char *t = getenv("SOCKBUS_TOKEN");
    if (o->token == NULL && t != NULL && *t != '\0')
        o->token = t;
}

/* Parse the command line. Returns -1 to exit with `*status`, else 0. */
static int parse_command_line(int argc,
                              char **argv,
                              struct opts *o,
                              const struct command **cmd,
                              int *status)
{
    unsigned long seen = 0;
    *status = EXIT_USAGE;
    if (scan_args(argc, argv, o, cmd, &seen) < 0)
        return -1;
    *status = EXIT_OK;
    if (o->version) {
        printf("sockbus %s (protocol 1)\n", SB_CLIENT_VERSION);
        return -1;
    }
    if (*cmd == NULL && o->help) {
        print_usage(stdout);
        return -1;
    }
    if (o->help) {
        print_command_help(*cmd);
        return -1;
    }
    *status = EXIT_USAGE;
    if (*cmd == NULL) {
        fprintf(stderr, "sockbus: missing command\n\n");
        print_usage(stderr);
        return -1;
    }
    if (check_args(*cmd, o, seen) < 0)
        return -1;
    apply_env(o);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    memset(&o, 0, sizeof(o));
    const struct command *cmd = NULL;
    int status;
    if (parse_command_line(argc, argv, &o, &cmd, &status) < 0)
        return status;
    if (install_signals() < 0) {
        fprintf(stderr, "sockbus: cannot set up signals: %s\n",
                strerror(errno));
        return EXIT_FAIL;
    }
    struct ctx x = {.o = &o, .c = NULL};
    status = cmd->run(&x);
    sb_client_close(x.c);
    if (fflush(stdout) != 0 && status == EXIT_OK)
        status = EXIT_FAIL;
    return status;
}
