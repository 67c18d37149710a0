/* config.c - defaults, flag parsing and validation. See config.h. */
#define _GNU_SOURCE
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "msg.h"

void sb_config_defaults(sb_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen_host, sizeof(c->listen_host), "127.0.0.1");
    c->listen_port = 7878;
    c->max_conns = 16384;
    c->max_frame = 1024 * 1024; /* 1 MiB */
    c->max_subs = 4096;
    /* As deep as nats-server's max_pending (64 MiB): a subscriber that
     * reads as fast as publishers write on average rides out bursts; the
     * ring grows only as far as it is used. */
    c->send_queue = 262144;                 /* frames */
    c->send_queue_bytes = 64 * 1024 * 1024; /* 64 MiB */
    c->recv_queue = 16384;                  /* publications */
    c->recv_queue_bytes = 64 * 1024 * 1024; /* 64 MiB */
    c->slow_policy = SB_SLOW_DISCONNECT;
    c->heartbeat_ms = 30000;
    c->drain_ms = 5000;
    c->thread_stack_kib = 256;
    c->log_level = SB_LOG_INFO;
    c->log_json = false;
    snprintf(c->cluster_prefix, sizeof(c->cluster_prefix), "sockbus");
}

const char *sb_config_usage(void)
{
    return "Usage: sockbusd [OPTIONS]\n"
           "A publish/subscribe relay speaking newline-delimited JSON over "
           "TCP.\n"
           "\n"
           "  --listen HOST:PORT       address to listen on "
           "(default 127.0.0.1:7878;\n"
           "                           port 0 picks a free port)\n"
           "  --max-conns N            connections at once (default 16384)\n"
           "  --max-frame BYTES        largest frame, newline included "
           "(default 1048576)\n"
           "  --max-subs N             subscriptions per connection "
           "(default 4096)\n"
           "  --send-queue N           frames queued per connection "
           "(default 262144)\n"
           "  --send-queue-bytes BYTES bytes queued per connection "
           "(default 64m; k, m, g suffixes work for every BYTES)\n"
           "  --recv-queue N           publications waiting for the bus "
           "(default 16384)\n"
           "  --recv-queue-bytes BYTES their bytes (default 67108864)\n"
           "  --slow-policy P          disconnect (default) or drop\n"
           "  --heartbeat-ms MS        ping idle clients after MS, drop "
           "after 2*MS\n"
           "                           (default 30000; 0 turns it off)\n"
           "  --token TOKEN            require connect with this token\n"
           "  --token-file FILE        read the token from FILE (first "
           "line)\n"
           "                           SOCKBUS_TOKEN in the environment "
           "works too\n"
           "  --drain-ms MS            time to deliver queued messages at "
           "shutdown\n"
           "                           (default 5000)\n"
           "  --thread-stack-kib KIB   stack of each connection thread "
           "(default 256)\n"
           "  --log-level LEVEL        error, warn, info (default) or debug\n"
           "  --help                   print this help\n"
           "  --version                print the version\n"
           "\n"
           "On start it prints one line to stdout once it accepts "
           "connections:\n"
           "  sockbusd listening on HOST:PORT\n";
}

/* Parse an unsigned decimal with an optional k/m/g suffix (powers of 1024)
 * when `suffixes` is set. */
static int parse_size(const char *s, bool suffixes, size_t *out)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    unsigned long long mul = 1;
    if (suffixes && *end != '\0' && end[1] == '\0') {
        switch (tolower((unsigned char)*end)) {
        case 'k':
            mul = 1024ULL;
            break;
        case 'm':
            mul = 1024ULL * 1024;
            break;
        case 'g':
            mul = 1024ULL * 1024 * 1024;
            break;
        default:
            return -1;
        }
        end++;
    }
    if (*end != '\0' || v > SIZE_MAX / mul)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

static int parse_listen(sb_config *c, const char *s)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
        return -1;
    const char *host = s;
    size_t hn = (size_t)(colon - s);
    if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
        host++;
        hn -= 2;
    }
    if (hn == 0 || hn >= sizeof(c->listen_host))
        return -1;
    size_t port;
    if (parse_size(colon + 1, false, &port) < 0 || port > 65535)
        return -1;
    memcpy(c->listen_host, host, hn);
    c->listen_host[hn] = '\0';
    c->listen_port = (uint16_t)port;
    return 0;
}

static int set_token(sb_config *c,
                     const char *t,
                     size_t n,
                     char *err,
                     size_t errlen,
                     const char *from)
{
    if (n == 0 || n >= sizeof(c->token)) {
        snprintf(err, errlen, "%s: the token must be 1 to %zu bytes", from,
                 sizeof(c->token) - 1);
        return -1;
    }
    memcpy(c->token, t, n);
    c->token[n] = '\0';
    c->has_token = true;
    return 0;
}

static int
read_token_file(sb_config *c, const char *path, char *err, size_t errlen)
{
    char buf[sizeof(c->token) + 2];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "--token-file %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = 0;
    while (n < sizeof(buf) - 1) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "--token-file %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    size_t len = strcspn(buf, "\r\n");
    return set_token(c, buf, len, err, errlen, "--token-file");
}

/* One flag: name, and where its value goes. */
enum kind {
    K_SIZE,
    K_SIZE_PLAIN,
    K_MS,
    K_LISTEN,
    K_POLICY,
    K_TOKEN,
    K_TOKEN_FILE,
    K_LEVEL,
    K_LOG_FORMAT,
    K_STRING
};
struct flag {
    const char *name;
    enum kind kind;
    size_t off;
};

#define OFF(f) offsetof(sb_config, f)
static const struct flag flags[] = {
    {"--listen", K_LISTEN, 0},
    {"--max-conns", K_SIZE_PLAIN, OFF(max_conns)},
    {"--max-frame", K_SIZE, OFF(max_frame)},
    {"--max-subs", K_SIZE_PLAIN, OFF(max_subs)},
    {"--send-queue", K_SIZE_PLAIN, OFF(send_queue)},
    {"--send-queue-bytes", K_SIZE, OFF(send_queue_bytes)},
    {"--recv-queue", K_SIZE_PLAIN, OFF(recv_queue)},
    {"--recv-queue-bytes", K_SIZE, OFF(recv_queue_bytes)},
    {"--slow-policy", K_POLICY, 0},
    {"--heartbeat-ms", K_MS, OFF(heartbeat_ms)},
    {"--drain-ms", K_MS, OFF(drain_ms)},
    {"--thread-stack-kib", K_SIZE_PLAIN, OFF(thread_stack_kib)},
    {"--token", K_TOKEN, 0},
    {"--token-file", K_TOKEN_FILE, 0},
    {"--log-level", K_LEVEL, 0},
    {"--log-format", K_LOG_FORMAT, 0},
    {"--http", K_STRING, OFF(http_listen)},
    {"--config", K_STRING, OFF(config_file)},
    {"--cluster", K_STRING, OFF(cluster)},
    {"--cluster-prefix", K_STRING, OFF(cluster_prefix)},
    {"--node", K_STRING, OFF(node)},
};

/* Size of each K_STRING field, by offset. */
static size_t string_cap(size_t off)
{
    switch (off) {
    case OFF(http_listen):
        return sizeof(((sb_config *)0)->http_listen);
    case OFF(config_file):
        return sizeof(((sb_config *)0)->config_file);
    case OFF(cluster):
        return sizeof(((sb_config *)0)->cluster);
    case OFF(cluster_prefix):
        return sizeof(((sb_config *)0)->cluster_prefix);
    case OFF(node):
        return sizeof(((sb_config *)0)->node);
    default:
        return 0;
    }
}

static int apply(
    sb_config *c, const struct flag *f, const char *v, char *err, size_t errlen)
{
    size_t n;
    switch (f->kind) {
    case K_SIZE:
    case K_SIZE_PLAIN:
        if (parse_size(v, f->kind == K_SIZE, &n) < 0)
            goto bad;
        *(size_t *)(void *)((char *)c + f->off) = n;
        return 0;
    case K_MS:
        if (parse_size(v, false, &n) < 0 || n > UINT32_MAX / 2)
            goto bad;
        *(uint32_t *)(void *)((char *)c + f->off) = (uint32_t)n;
        return 0;
    case K_LISTEN:
        if (parse_listen(c, v) < 0)
            goto bad;
        return 0;
    case K_POLICY:
        if (strcmp(v, "disconnect") == 0)
            c->slow_policy = SB_SLOW_DISCONNECT;
        else if (strcmp(v, "drop") == 0)
            c->slow_policy = SB_SLOW_DROP;
        else
            goto bad;
        return 0;
    case K_TOKEN:
        return set_token(c, v, strlen(v), err, errlen, "--token");
    case K_TOKEN_FILE:
        return read_token_file(c, v, err, errlen);
    case K_LEVEL: {
        int l = sb_log_parse_level(v);
        if (l < 0)
            goto bad;
        c->log_level = l;
        return 0;
    }
    case K_LOG_FORMAT:
        if (strcmp(v, "text") == 0)
            c->log_json = false;
        else if (strcmp(v, "json") == 0)
            c->log_json = true;
        else
            goto bad;
        return 0;
    case K_STRING: {
        size_t cap = string_cap(f->off), vn = strlen(v);
        if (vn >= cap) {
            snprintf(err, errlen, "%s: value longer than %zu bytes", f->name,
                     cap - 1);
            return -1;
        }
        memcpy((char *)c + f->off, v, vn + 1);
        return 0;
    }
    }
bad:
    snprintf(err, errlen, "%s: invalid value '%s'", f->name, v);
    return -1;
}

int sb_config_parse_args(
    sb_config *c, int argc, char **argv, char *err, size_t errlen)
{
    const char *env = getenv("SOCKBUS_TOKEN");
    if (env != NULL && *env != '\0' &&
        set_token(c, env, strlen(env), err, errlen, "SOCKBUS_TOKEN") < 0)
        return -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(sb_config_usage(), stdout);
            return 1;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            printf("sockbusd %s (protocol %d)\n", SB_VERSION, SB_PROTO);
            return 1;
        }
        const char *eq = strchr(a, '=');
        size_t an = eq ? (size_t)(eq - a) : strlen(a);
        const struct flag *f = NULL;
        for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
            if (strlen(flags[k].name) == an &&
                strncmp(flags[k].name, a, an) == 0)
                f = &flags[k];
        if (f == NULL) {
            snprintf(err, errlen, "unknown option '%s' (see --help)", a);
            return -1;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (v == NULL) {
            snprintf(err, errlen, "%s needs a value", f->name);
            return -1;
        }
        if (apply(c, f, v, err, errlen) < 0)
            return -1;
    }
    return 0;
}

int sb_config_validate(const sb_config *c, char *err, size_t errlen)
{
    struct {
        const char *name;
        size_t v, lo, hi;
    } r[] = {
        {"--max-conns", c->max_conns, 1, 1000000},
        {"--max-frame", c->max_frame, 64, (size_t)256 << 20},
        {"--max-subs", c->max_subs, 1, 1000000},
        {"--send-queue", c->send_queue, 1, (size_t)1 << 24},
        {"--send-queue-bytes", c->send_queue_bytes, 1024, (size_t)1 << 40},
        {"--recv-queue", c->recv_queue, 1, (size_t)1 << 24},
        {"--recv-queue-bytes", c->recv_queue_bytes, 1024, (size_t)1 << 40},
        {"--thread-stack-kib", c->thread_stack_kib, 64, 65536},
    };
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        if (r[i].v < r[i].lo || r[i].v > r[i].hi) {
            snprintf(err, errlen, "%s: %zu is out of range (%zu to %zu)",
                     r[i].name, r[i].v, r[i].lo, r[i].hi);
            return -1;
        }
    }
    if (c->drain_ms > 3600000) {
        snprintf(err, errlen, "--drain-ms: at most 3600000");
        return -1;
    }
    return 0;
}
