/* harness.c - see harness.h. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SOCKBUSD_PATH
#error "SOCKBUSD_PATH must name the sockbusd binary"
#endif

long long sbt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ms_left(long long deadline)
{
    long long left = deadline - sbt_now_ms();
    return left < 0 ? 0 : (int)left;
}

static void build_argv(const char **argv,
                       size_t max,
                       const char *first,
                       const char *const *args,
                       bool listen)
{
    size_t n = 0;
    argv[n++] = first;
    if (listen) {
        argv[n++] = "--listen";
        argv[n++] = "127.0.0.1:0";
    }
    for (size_t i = 0; args && args[i] && n < max - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
}

/* sbt_server_start() with an optional limit (`limit_on`). */
static int start_server(sbt_server *s,
                        const char *const *args,
                        bool limit_on,
                        sbt_limit kind,
                        unsigned long long limit)
{
    memset(s, 0, sizeof(*s));
    static int seq;
    snprintf(s->log_path, sizeof(s->log_path), "%s.%d.%d.log",
             program_invocation_short_name, (int)getpid(), seq++);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    const char *argv[64];
    build_argv(argv, 64, SOCKBUSD_PATH, args, true);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        int log = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (log >= 0)
            dup2(log, STDERR_FILENO);
        dup2(p[1], STDOUT_FILENO);
        if (limit_on) {
            struct rlimit rl = {.rlim_cur = (rlim_t)limit,
                                .rlim_max = (rlim_t)limit};
            close_range(3, ~0U, 0);
            if (setrlimit(kind == SBT_LIMIT_NOFILE ? RLIMIT_NOFILE : RLIMIT_AS,
                          &rl) < 0)
                _exit(126);
        }
        execv(SOCKBUSD_PATH, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(p[1]);
    s->pid = pid;
    /* With --http, a second ready line follows the first. */
    int want = 1;
    for (size_t i = 0; args && args[i]; i++)
        if (strcmp(args[i], "--http") == 0 ||
            strncmp(args[i], "--http=", 7) == 0)
            want = 2;
    char line[512];
    size_t n = 0;
    long long deadline = sbt_now_ms() + 10000;
    while (n < sizeof(line) - 1) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int r = poll(&pf, 1, ms_left(deadline));
        if (r <= 0)
            break;
        ssize_t got = read(p[0], line + n, sizeof(line) - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
        line[n] = '\0';
        const char *nl = strchr(line, '\n');
        if (nl != NULL && (want == 1 || strchr(nl + 1, '\n') != NULL))
            break;
    }
    close(p[0]);
    line[n] = '\0';
    char *second = strchr(line, '\n');
    if (second != NULL)
        *second++ = '\0';
    if (want == 2) {
        const char *hp = "sockbusd http on ";
        size_t hn = strlen(hp);
        if (second != NULL && strncmp(second, hp, hn) == 0) {
            second[strcspn(second, "\n")] = '\0';
            snprintf(s->http_addr, sizeof(s->http_addr), "%s", second + hn);
            const char *hc = strrchr(s->http_addr, ':');
            s->http_port = hc ? atoi(hc + 1) : 0;
        }
        if (s->http_port <= 0)
            line[0] = '\0'; /* fails below */
    }
    const char *colon = strrchr(line, ':');
    if (strncmp(line, "sockbusd listening on ", 22) != 0 || colon == NULL) {
        fprintf(stderr, "harness: sockbusd did not start (log %s)\n",
                s->log_path);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        s->pid = 0;
        return -1;
    }
    s->port = atoi(colon + 1);
    return 0;
}

int sbt_server_start(sbt_server *s, const char *const *args)
{
    return start_server(s, args, false, SBT_LIMIT_NOFILE, 0);
}

int sbt_server_start_limited(sbt_server *s,
                             const char *const *args,
                             sbt_limit kind,
                             unsigned long long limit)
{
    return start_server(s, args, true, kind, limit);
}

int sbt_fixture_start_args(void **state, const char *const *args)
{
    sbt_server *s = calloc(1, sizeof(*s));
    if (s == NULL || sbt_server_start(s, args) < 0) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

int sbt_fixture_start(void **state)
{
    return sbt_fixture_start_args(state, NULL);
}

int sbt_fixture_stop(void **state)
{
    sbt_server *s = *state;
    int st = sbt_server_stop(s, SIGTERM, 10000);
    if (st != 0)
        fprintf(stderr, "sockbusd exited %d on SIGTERM (want 0)\n", st);
    free(s);
    return st == 0 ? 0 : -1;
}

/* Wait for `pid` to exit within `timeout_ms`; its status or -1. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    long long deadline = sbt_now_ms() + timeout_ms;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (pfd >= 0)
                close(pfd);
            if (WIFEXITED(st))
                return WEXITSTATUS(st);
            return 128 + WTERMSIG(st);
        }
        if (r < 0 && errno != EINTR)
            break;
        int left = ms_left(deadline);
        if (left == 0)
            break;
        if (pfd >= 0) {
            struct pollfd pf = {.fd = pfd, .events = POLLIN};
            poll(&pf, 1, left);
        } else {
            poll(NULL, 0, left < 5 ? left : 5);
        }
    }
    if (pfd >= 0)
        close(pfd);
    return -1;
}

int sbt_server_stop(sbt_server *s, int sig, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    int st = wait_exit(s->pid, timeout_ms);
    if (st < 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
    return st;
}

int sbt_run_sockbusd(const char *const *args,
                     char *err,
                     size_t errlen,
                     int timeout_ms)
{
    char path[] = "/tmp/sbt-run-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unlink(path);
    const char *argv[64];
    build_argv(argv, 64, SOCKBUSD_PATH, args, false);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, STDERR_FILENO);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execv(SOCKBUSD_PATH, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    int st = pid > 0 ? wait_exit(pid, timeout_ms) : -1;
    if (pid > 0 && st < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    ssize_t n = pread(fd, err, errlen - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(fd);
    return st;
}

static long proc_status_field(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = atol(line + n + 1);
    fclose(f);
    return v;
}

long sbt_rss_kib(pid_t pid)
{
    return proc_status_field(pid, "VmRSS");
}

long sbt_threads(pid_t pid)
{
    return proc_status_field(pid, "Threads");
}

int sbt_connect(sbt_client *c, int port)
{
    return sbt_connect_rcvbuf(c, port, 0);
}

int sbt_connect_rcvbuf(sbt_client *c, int port, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

bool sbt_drain_fd(int fd, char **buf, size_t *len)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR)
        return true;
    if (n <= 0)
        return false;
    char *nb = realloc(*buf, *len + (size_t)n + 1);
    if (nb == NULL)
        return false;
    memcpy(nb + *len, chunk, (size_t)n);
    *len += (size_t)n;
    nb[*len] = '\0';
    *buf = nb;
    return true;
}

cJSON *sbt_connect_info(sbt_client *c, int port)
{
    if (sbt_connect(c, port) < 0)
        return NULL;
    return sbt_expect(c, "info", 5000);
}

void sbt_close(sbt_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

void sbt_reset(sbt_client *c)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    if (c->fd >= 0)
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    sbt_close(c);
}

int sbt_send(sbt_client *c, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int sbt_send_by(int fd, const void *buf, size_t n, long long deadline_ms)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        long long left = deadline_ms - sbt_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        poll(&pf, 1, (int)left);
    }
    return 0;
}

int sbt_sends(sbt_client *c, const char *s)
{
    return sbt_send(c, s, strlen(s));
}

int sbt_sendf(sbt_client *c, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    int rc = sbt_send(c, s, (size_t)n);
    free(s);
    return rc;
}

char *sbt_read_line(sbt_client *c, int timeout_ms)
{
    long long deadline = sbt_now_ms() + timeout_ms;
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf);
            char *line = malloc(n + 1);
            if (line == NULL)
                return NULL;
            memcpy(line, c->buf, n);
            line[n] = '\0';
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return line;
        }
        if (c->fd < 0 || c->eof)
            return NULL;
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        int r = poll(&pf, 1, ms_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return NULL;
        if (c->cap - c->len < 65536) {
            size_t cap = c->cap ? c->cap * 2 : 131072;
            char *nb = realloc(c->buf, cap);
            if (nb == NULL)
                return NULL;
            c->buf = nb;
            c->cap = cap;
        }
        ssize_t got = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            c->eof = true;
            return NULL;
        }
        c->len += (size_t)got;
    }
}

/* True when s[0..n) is UTF-8 as RFC 3629 has it (no overlongs, no
 * surrogates, nothing above U+10FFFF) and holds no raw control byte. */
static bool utf8_clean(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        if (b < 0x20 || b == 0x7f)
            return false;
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;
        if (b >= 0xc2 && b <= 0xdf) {
            len = 2;
        } else if (b >= 0xe0 && b <= 0xef) {
            len = 3;
            lo = b == 0xe0 ? 0xa0 : 0x80;
            hi = b == 0xed ? 0x9f : 0xbf;
        } else if (b >= 0xf0 && b <= 0xf4) {
            len = 4;
            lo = b == 0xf0 ? 0x90 : 0x80;
            hi = b == 0xf4 ? 0x8f : 0xbf;
        } else {
            return false;
        }
        if (i + len > n || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += len;
    }
    return true;
}

/* Parse a server line strictly: one JSON object with a string "op",
 * nothing after it, clean UTF-8. NULL (after printing the line) if not. */
cJSON *sbt_parse_frame(const char *line)
{
    const char *end = NULL;
    cJSON *j = NULL;
    if (utf8_clean((const unsigned char *)line, strlen(line)))
        j = cJSON_ParseWithOpts(line, &end, 1);
    if (j == NULL || !cJSON_IsObject(j) || sbt_str(j, "op") == NULL) {
        fprintf(stderr, "invalid frame from server: %s\n", line);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

char *sbt_read_frame_line(sbt_client *c, int timeout_ms, const char **why)
{
    char *line = sbt_read_line(c, timeout_ms);
    if (line == NULL) {
        *why = "none";
        return NULL;
    }
    cJSON *j = sbt_parse_frame(line);
    if (j == NULL) {
        free(line);
        *why = "invalid JSON";
        return NULL;
    }
    cJSON_Delete(j);
    return line;
}

cJSON *sbt_read(sbt_client *c, int timeout_ms)
{
    char *line = sbt_read_line(c, timeout_ms);
    if (line == NULL)
        return NULL;
    cJSON *j = sbt_parse_frame(line);
    free(line);
    return j;
}

const char *sbt_str(const cJSON *j, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, field);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

double sbt_num(const cJSON *j, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, field);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

cJSON *sbt_expect(sbt_client *c, const char *op, int timeout_ms)
{
    cJSON *j = sbt_read(c, timeout_ms);
    if (j == NULL) {
        fprintf(stderr, "harness: expected %s, got nothing\n", op);
        return NULL;
    }
    const char *got = sbt_str(j, "op");
    if (got == NULL || strcmp(got, op) != 0) {
        char *s = cJSON_PrintUnformatted(j);
        fprintf(stderr, "harness: expected %s, got %s\n", op, s);
        free(s);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

bool sbt_expect_err(sbt_client *c, const char *code, int timeout_ms)
{
    cJSON *j = sbt_expect(c, "err", timeout_ms);
    if (j == NULL)
        return false;
    const char *got = sbt_str(j, "code");
    bool ok =
        got != NULL && strcmp(got, code) == 0 && sbt_str(j, "msg") != NULL;
    if (!ok)
        fprintf(stderr, "harness: expected err %s, got %s\n", code,
                got ? got : "(none)");
    cJSON_Delete(j);
    return ok;
}

bool sbt_request_ok(sbt_client *c, const char *frame, int timeout_ms)
{
    if (sbt_sends(c, frame) < 0 || sbt_sends(c, "\n") < 0)
        return false;
    cJSON *j = sbt_expect(c, "ok", timeout_ms);
    bool ok = j != NULL;
    cJSON_Delete(j);
    return ok;
}

bool sbt_wait_closed(sbt_client *c, int timeout_ms)
{
    long long deadline = sbt_now_ms() + timeout_ms;
    for (;;) {
        char *line = sbt_read_line(c, ms_left(deadline));
        if (line == NULL)
            break;
        free(line);
    }
    return c->eof;
}

bool sbt_quiet(sbt_client *c, int ms)
{
    char *line = sbt_read_line(c, ms);
    if (line != NULL) {
        fprintf(stderr, "harness: expected silence, got %s\n", line);
        free(line);
        return false;
    }
    return true;
}

cJSON *sbt_stats(sbt_client *c, int timeout_ms)
{
    if (sbt_sends(c, "{\"op\":\"stats\"}\n") < 0)
        return NULL;
    return sbt_expect(c, "stats", timeout_ms);
}
