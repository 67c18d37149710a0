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
           "  --log-format FORMAT      text (default) or json (one object "
           "per line)\n"
           "  --http [HOST:]PORT       serve monitoring over HTTP: /metrics, "
           "/healthz,\n"
           "                           /stats, /connz, /subz and a status "
           "page at /\n"
           "                           (default off; a bare port binds "
           "127.0.0.1)\n"
           "  --cluster URL[,URL...]   join the bus shared through this NATS "
           "cluster\n"
           "                           (nats://[CREDENTIALS@]HOST:PORT; "
           "default off)\n"
           "  --cluster-prefix P       NATS subject prefix of the bus "
           "(default sockbus)\n"
           "  --node NAME              this node's name in logs, greeting "
           "and stats\n"
           "                           (default HOSTNAME:PORT)\n"
           "  --config FILE            read settings from FILE (see below)\n"
           "  --help                   print this help\n"
           "  --version                print the version\n"
           "\n"
           "On start it prints one line to stdout once it accepts "
           "connections:\n"
           "  sockbusd listening on HOST:PORT\n"
           "and with --http a second one once that serves too:\n"
           "  sockbusd http on HOST:PORT\n"
           "\n"
           "Configuration file: one 'key = value' per line, where the key is "
           "a flag\n"
           "above without its dashes (max-conns = 1000, listen = "
           "127.0.0.1:7878,\n"
           "token-file = /etc/sockbus/token). Blank lines and lines starting "
           "with #\n"
           "are skipped; a value in double quotes may hold spaces (\\\" and "
           "\\\\ inside).\n"
           "Flags on the command line win over the file, wherever they "
           "stand.\n"
           "SIGHUP reads the file again and applies log-level, log-format, "
           "token,\n"
           "token-file, and for new connections max-conns, max-frame, "
           "max-subs,\n"
           "send-queue, send-queue-bytes and heartbeat-ms; the rest needs a "
           "restart.\n";
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

static int read_token_file(
    sb_config *c, const char *path, const char *name, char *err, size_t errlen)
{
    char buf[sizeof(c->token) + 2], ebuf[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: %s", name, path,
                 strerror_r(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    size_t n = 0;
    while (n < sizeof(buf) - 1) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s %s: %s", name, path,
                     strerror_r(errno, ebuf, sizeof(ebuf)));
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
    return set_token(c, buf, len, err, errlen, name);
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

/* Set the value of flag `f` from `v`; errors name `name` (the flag, or its
 * key in a configuration file). */
static int apply(sb_config *c,
                 const struct flag *f,
                 const char *name,
                 const char *v,
                 char *err,
                 size_t errlen)
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
        return set_token(c, v, strlen(v), err, errlen, name);
    case K_TOKEN_FILE:
        return read_token_file(c, v, name, err, errlen);
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
            snprintf(err, errlen, "%s: value longer than %zu bytes", name,
                     cap - 1);
            return -1;
        }
        memcpy((char *)c + f->off, v, vn + 1);
        return 0;
    }
    }
bad:
    snprintf(err, errlen, "%s: invalid value '%s'", name, v);
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
        if (apply(c, f, f->name, v, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* The range of each numeric setting that has one. */
static const struct range {
    const char *flag;
    size_t off, lo, hi;
} ranges[] = {
    {"--max-conns", OFF(max_conns), 1, 1000000},
    {"--max-frame", OFF(max_frame), 64, (size_t)256 << 20},
    {"--max-subs", OFF(max_subs), 1, 1000000},
    {"--send-queue", OFF(send_queue), 1, (size_t)1 << 24},
    {"--send-queue-bytes", OFF(send_queue_bytes), 1024, (size_t)1 << 40},
    {"--recv-queue", OFF(recv_queue), 1, (size_t)1 << 24},
    {"--recv-queue-bytes", OFF(recv_queue_bytes), 1024, (size_t)1 << 40},
    {"--thread-stack-kib", OFF(thread_stack_kib), 64, 65536},
};

/* Check the range of `flag` in `c`; the message names `name`. */
static int check_range(const sb_config *c,
                       const char *flag,
                       const char *name,
                       char *err,
                       size_t errlen)
{
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        const struct range *r = &ranges[i];
        if (strcmp(r->flag, flag) != 0)
            continue;
        size_t v = *(const size_t *)(const void *)((const char *)c + r->off);
        if (v < r->lo || v > r->hi) {
            snprintf(err, errlen, "%s: %zu is out of range (%zu to %zu)", name,
                     v, r->lo, r->hi);
            return -1;
        }
    }
    if (strcmp(flag, "--drain-ms") == 0 && c->drain_ms > 3600000) {
        snprintf(err, errlen, "%s: at most 3600000", name);
        return -1;
    }
    return 0;
}

int sb_config_validate(const sb_config *c, char *err, size_t errlen)
{
    for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
        if (check_range(c, flags[k].name, flags[k].name, err, errlen) < 0)
            return -1;
    return 0;
}

/* ---- Configuration files ----------------------------------------------- */

/* The flag whose name without the leading dashes is `key`, or NULL. */
static const struct flag *flag_by_key(const char *key)
{
    for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
        if (strcmp(flags[k].name + 2, key) == 0)
            return &flags[k];
    return NULL;
}

static char *skip_blanks(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Cut trailing blanks (and the line end) from s[0..n). */
static void trim_end(char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    s[n] = '\0';
}

/* Take the value at `s` (blanks after '=' skipped), in place: a
 * double-quoted string (with \" and \\) or the text up to a '#' that
 * follows a blank ("key = # comment" is an empty value). Returns the
 * value, or NULL with the reason in `why`. */
static char *take_value(char *s, const char **why)
{
    if (*s != '"') {
        for (char *p = s; *p; p++) {
            if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
                *p = '\0';
                break;
            }
        }
        trim_end(s, strlen(s));
        return s;
    }
    char *out = s, *p = s + 1;
    while (*p != '"') {
        if (*p == '\0') {
            *why = "unterminated quoted value";
            return NULL;
        }
        if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
            p++;
        *out++ = *p++;
    }
    p = skip_blanks(p + 1);
    if (*p != '\0' && *p != '#') {
        *why = "text after the closing quote";
        return NULL;
    }
    *out = '\0';
    return s;
}

/* Apply one line of a configuration file. Errors are "key: reason". */
static int file_line(sb_config *c, char *line, char *err, size_t errlen)
{
    trim_end(line, strlen(line));
    char *s = skip_blanks(line);
    if (*s == '\0' || *s == '#')
        return 0;
    char *key = s;
    s += strcspn(s, "= \t");
    char *key_end = s;
    s = skip_blanks(s);
    if (*s != '=' || key_end == key) {
        *key_end = '\0';
        snprintf(err, errlen, "%s%sexpected 'key = value'", key,
                 key_end > key ? ": " : "");
        return -1;
    }
    *key_end = '\0';
    const char *why = NULL;
    char *v = take_value(skip_blanks(s + 1), &why);
    if (v == NULL) {
        snprintf(err, errlen, "%s: %s", key, why);
        return -1;
    }
    const struct flag *f = flag_by_key(key);
    if (f == NULL) {
        snprintf(err, errlen, "%s: unknown key", key);
        return -1;
    }
    if (f->kind == K_STRING && f->off == OFF(config_file)) {
        snprintf(err, errlen, "%s: not allowed in a configuration file", key);
        return -1;
    }
    if (apply(c, f, key, v, err, errlen) < 0)
        return -1;
    return check_range(c, f->name, key, err, errlen);
}

int sb_config_load_file(sb_config *c,
                        const char *path,
                        char *err,
                        size_t errlen)
{
    char ebuf[128];
    FILE *fp = fopen(path, "re");
    if (fp == NULL) {
        snprintf(err, errlen, "%s: cannot read: %s", path,
                 strerror_r(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    char *line = NULL, why[512];
    size_t cap = 0;
    unsigned lineno = 0;
    int rc = 0;
    while (getline(&line, &cap, fp) >= 0) {
        lineno++;
        if (file_line(c, line, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(fp)) {
        snprintf(err, errlen, "%s: cannot read: %s", path,
                 strerror_r(errno, ebuf, sizeof(ebuf)));
        rc = -1;
    }
    free(line);
    fclose(fp);
    return rc;
}

int sb_config_from_args(
    sb_config *c, int argc, char **argv, char *err, size_t errlen)
{
    /* First pass: find --config (and fail early on a bad flag). */
    sb_config_defaults(c);
    int rc = sb_config_parse_args(c, argc, argv, err, errlen);
    if (rc != 0 || c->config_file[0] == '\0')
        return rc;
    char path[sizeof(c->config_file)];
    memcpy(path, c->config_file, sizeof(path));
    /* Then defaults, the file, and the command line over it, so that a
     * flag wins wherever it stands on the command line. */
    sb_config_defaults(c);
    if (sb_config_load_file(c, path, err, errlen) < 0)
        return -1;
    return sb_config_parse_args(c, argc, argv, err, errlen);
}

/* ---- Reloading --------------------------------------------------------- */

/* What a running server can change: read per new connection (or per
 * connect, for the token) from the live snapshot, or global to the log.
 * Everything else is bound at start (sockets, threads, the bus's queue). */
static const char *const reloadable[] = {
    "--log-level",        "--log-format",   "--token",    "--token-file",
    "--max-conns",        "--max-frame",    "--max-subs", "--send-queue",
    "--send-queue-bytes", "--heartbeat-ms",
};

static bool flag_reloadable(const struct flag *f)
{
    for (size_t i = 0; i < sizeof(reloadable) / sizeof(reloadable[0]); i++)
        if (strcmp(reloadable[i], f->name) == 0)
            return true;
    return false;
}

bool sb_config_reloadable(const char *key)
{
    const struct flag *f = flag_by_key(key);
    return f != NULL && flag_reloadable(f);
}

void sb_config_take_reloadable(sb_config *dst, const sb_config *src)
{
    for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++) {
        const struct flag *f = &flags[k];
        if (!flag_reloadable(f))
            continue;
        switch (f->kind) {
        case K_SIZE:
        case K_SIZE_PLAIN:
            memcpy((char *)dst + f->off, (const char *)src + f->off,
                   sizeof(size_t));
            break;
        case K_MS:
            memcpy((char *)dst + f->off, (const char *)src + f->off,
                   sizeof(uint32_t));
            break;
        case K_TOKEN:
            dst->has_token = src->has_token;
            memcpy(dst->token, src->token, sizeof(dst->token));
            break;
        case K_LEVEL:
            dst->log_level = src->log_level;
            break;
        case K_LOG_FORMAT:
            dst->log_json = src->log_json;
            break;
        default:
            break; /* --token-file writes the token */
        }
    }
}

/* The value of flag `f` in `c` as text, as the flag would take it. */
static void
format_value(const sb_config *c, const struct flag *f, char *out, size_t n)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    const char *base = (const char *)c + f->off;
    switch (f->kind) {
    case K_SIZE:
    case K_SIZE_PLAIN:
        snprintf(out, n, "%zu", *(const size_t *)(const void *)base);
        return;
    case K_MS:
        snprintf(out, n, "%u", *(const uint32_t *)(const void *)base);
        return;
    case K_LISTEN:
        snprintf(out, n, strchr(c->listen_host, ':') ? "[%s]:%u" : "%s:%u",
                 c->listen_host, c->listen_port);
        return;
    case K_POLICY:
        snprintf(out, n, "%s",
                 c->slow_policy == SB_SLOW_DROP ? "drop" : "disconnect");
        return;
    case K_LEVEL:
        snprintf(out, n, "%s",
                 c->log_level >= 0 && c->log_level <= 3 ? levels[c->log_level]
                                                        : "?");
        return;
    case K_LOG_FORMAT:
        snprintf(out, n, "%s", c->log_json ? "json" : "text");
        return;
    case K_STRING:
        snprintf(out, n, "%s", base);
        return;
    default:
        out[0] = '\0'; /* the token is compared, never shown */
        return;
    }
}

int sb_config_diff(const sb_config *a,
                   const sb_config *b,
                   sb_config_change_fn *fn,
                   void *ud)
{
    int changed = 0;
    for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++) {
        const struct flag *f = &flags[k];
        if (f->kind == K_TOKEN_FILE ||
            (f->kind == K_STRING && f->off == OFF(config_file)))
            continue;
        if (f->kind == K_TOKEN) {
            if (a->has_token != b->has_token ||
                (a->has_token && strcmp(a->token, b->token) != 0)) {
                fn(f->name + 2, NULL, NULL, flag_reloadable(f), ud);
                changed++;
            }
            continue;
        }
        char va[sizeof(a->cluster) + 8], vb[sizeof(b->cluster) + 8];
        format_value(a, f, va, sizeof(va));
        format_value(b, f, vb, sizeof(vb));
        if (strcmp(va, vb) != 0) {
            fn(f->name + 2, va, vb, flag_reloadable(f), ud);
            changed++;
        }
    }
    return changed;
}
