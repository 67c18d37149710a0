/* test_http.c - the monitoring endpoint (sockbusd --http): every endpoint's
 * status and Content-Type, the Prometheus exposition parsed line by line,
 * /connz sorting and limits, /subz holder counts, /healthz during a drain,
 * 404/405 and bad --http values. HTTP/1.1 is spoken over a plain socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS 5000
#define HTTP_MS 10000

/* ---- A small HTTP/1.1 client ------------------------------------------- */

typedef struct http_resp {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body; /* NUL-terminated */
    size_t body_len;
} http_resp;

static void http_free(http_resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Send one request with "Connection: close" and read the response to EOF.
 * Returns 0, or -1 when nothing well-formed came back in time. */
static int
http_req(int port, const char *method, const char *path, http_resp *r)
{
    memset(r, 0, sizeof(*r));
    sbt_client c;
    if (sbt_connect(&c, port) < 0)
        return -1;
    char req[512];
    snprintf(req, sizeof(req),
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test_http\r\n"
             "Connection: close\r\n\r\n",
             method, path);
    if (sbt_sends(&c, req) < 0) {
        sbt_close(&c);
        return -1;
    }
    size_t n = 0, cap = 65536;
    char *buf = malloc(cap);
    long long deadline = sbt_now_ms() + HTTP_MS;
    for (;;) {
        long long left = deadline - sbt_now_ms();
        struct pollfd pf = {.fd = c.fd, .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            break;
        if (cap - n < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t got = recv(c.fd, buf + n, cap - n - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    sbt_close(&c);
    buf[n] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1) {
        fprintf(stderr, "http_req %s %s: bad response: %.200s\n", method, path,
                buf);
        free(buf);
        return -1;
    }
    size_t hn = (size_t)(end - buf);
    r->head = strndup(buf, hn);
    r->body_len = n - hn - 4;
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, end + 4, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
    return 0;
}

/* The value of header `name` (case-insensitive) in a static buffer, or
 * NULL. */
static const char *http_header(const http_resp *r, const char *name)
{
    static char value[512];
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p != NULL;
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vn = strcspn(v, "\r\n");
            snprintf(value, sizeof(value), "%.*s", (int)vn, v);
            return value;
        }
    }
    return NULL;
}

/* GET (or another method) that must answer `status` with a Content-Type
 * starting with `type`; the body's Content-Length must match. */
static void expect(int port,
                   const char *method,
                   const char *path,
                   int status,
                   const char *type,
                   http_resp *r)
{
    if (http_req(port, method, path, r) < 0)
        fail_msg("%s %s: no response", method, path);
    if (r->status != status)
        fail_msg("%s %s: status %d, want %d (body %.200s)", method, path,
                 r->status, status, r->body);
    const char *ct = http_header(r, "Content-Type");
    if (type != NULL && (ct == NULL || strncmp(ct, type, strlen(type)) != 0))
        fail_msg("%s %s: Content-Type '%s', want '%s...'", method, path,
                 ct ? ct : "(none)", type);
    if (http_header(r, "Transfer-Encoding") != NULL)
        fail_msg("%s %s: unexpected Transfer-Encoding", method, path);
    const char *cl = http_header(r, "Content-Length");
    if (cl == NULL)
        fail_msg("%s %s: no Content-Length", method, path);
    if (strcmp(method, "HEAD") != 0 && (size_t)atol(cl) != r->body_len)
        fail_msg("%s %s: Content-Length %s but %zu bytes", method, path, cl,
                 r->body_len);
}

/* GET a JSON endpoint (200, application/json) and parse it. */
static cJSON *get_json(int port, const char *path)
{
    http_resp r;
    expect(port, "GET", path, 200, "application/json", &r);
    cJSON *j = cJSON_Parse(r.body);
    if (j == NULL)
        fail_msg("GET %s: invalid JSON: %.200s", path, r.body);
    http_free(&r);
    return j;
}

/* ---- Fixtures ---------------------------------------------------------- */

static int setup(void **state)
{
    return sbt_fixture_start_args(
        state, (const char *const[]){"--http", "127.0.0.1:0", NULL});
}

static int setup_drain(void **state)
{
    return sbt_fixture_start_args(
        state, (const char *const[]){"--http", "127.0.0.1:0", "--drain-ms",
                                     "3000", NULL});
}

static int setup_bare_port(void **state)
{
    return sbt_fixture_start_args(state,
                                  (const char *const[]){"--http", "0", NULL});
}

/* Tests that stop the server themselves leave pid 0. */
static int teardown(void **state)
{
    sbt_server *s = *state;
    int st = s->pid > 0 ? sbt_server_stop(s, SIGTERM, 10000) : 0;
    if (st != 0)
        fprintf(stderr, "sockbusd exited %d on SIGTERM (want 0)\n", st);
    free(s);
    return st == 0 ? 0 : -1;
}

/* Connect, name the connection and wait for the ok. */
static void connect_named(sbt_client *c, int port, const char *name)
{
    cJSON *info = sbt_connect_info(c, port);
    assert_non_null(info);
    cJSON_Delete(info);
    char frame[128];
    snprintf(frame, sizeof(frame),
             "{\"op\":\"connect\",\"name\":\"%s\",\"id\":0}", name);
    assert_true(sbt_request_ok(c, frame, WAIT_MS));
}

static void sub(sbt_client *c, const char *pattern, const char *group)
{
    char frame[256];
    if (group != NULL)
        snprintf(frame, sizeof(frame),
                 "{\"op\":\"sub\",\"topic\":\"%s\",\"group\":\"%s\",\"id\":1}",
                 pattern, group);
    else
        snprintf(frame, sizeof(frame),
                 "{\"op\":\"sub\",\"topic\":\"%s\",\"id\":1}", pattern);
    assert_true(sbt_request_ok(c, frame, WAIT_MS));
}

/* Publish `n` messages of about `size` bytes, the last with an id, and
 * wait for its ok: every one has been handed to the bus then. */
static void publish(sbt_client *c, const char *topic, int n, size_t size)
{
    char *pad = malloc(size + 1);
    memset(pad, 'x', size);
    pad[size] = '\0';
    for (int i = 0; i < n; i++) {
        if (i == n - 1)
            assert_int_equal(
                sbt_sendf(c,
                          "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":\"%s\","
                          "\"id\":\"last\"}\n",
                          topic, pad),
                0);
        else
            assert_int_equal(
                sbt_sendf(c,
                          "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":\"%s\"}\n",
                          topic, pad),
                0);
    }
    free(pad);
    cJSON *ok = sbt_expect(c, "ok", WAIT_MS);
    assert_non_null(ok);
    cJSON_Delete(ok);
}

/* ---- Every endpoint ---------------------------------------------------- */

static void test_http_endpoints(void **state)
{
    sbt_server *s = *state;
    int hp = s->http_port;
    http_resp r;

    expect(hp, "GET", "/", 200, "text/html", &r);
    assert_non_null(strstr(r.body, "<canvas"));
    assert_non_null(strstr(r.body, "/connz"));
    /* Self-contained: nothing is loaded from anywhere else. */
    assert_null(strstr(r.body, "http://"));
    assert_null(strstr(r.body, "https://"));
    assert_null(strstr(r.body, "src=\""));
    assert_non_null(http_header(&r, "Content-Security-Policy"));
    http_free(&r);

    expect(hp, "GET", "/metrics", 200, "text/plain; version=0.0.4", &r);
    assert_non_null(strstr(r.body, "sockbus_connections "));
    http_free(&r);

    expect(hp, "GET", "/healthz", 200, "text/plain", &r);
    assert_string_equal(r.body, "ok\n");
    http_free(&r);

    cJSON *st = get_json(hp, "/stats");
    assert_string_equal(sbt_str(st, "op"), "stats");
    assert_true(sbt_num(st, "uptime_ms") >= 0);
    cJSON_Delete(st);

    cJSON *cz = get_json(hp, "/connz");
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(cz, "connections")));
    assert_int_equal((int)sbt_num(cz, "total"), 0);
    cJSON_Delete(cz);

    cJSON *sz = get_json(hp, "/subz");
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(sz, "subscriptions")));
    cJSON_Delete(sz);

    /* HEAD: GET's headers, no body. */
    expect(hp, "HEAD", "/metrics", 200, "text/plain; version=0.0.4", &r);
    assert_int_equal(r.body_len, 0);
    assert_true(atol(http_header(&r, "Content-Length")) > 0);
    http_free(&r);
    expect(hp, "HEAD", "/", 200, "text/html", &r);
    http_free(&r);

    const char *missing[] = {"/nope", "/metrics/", "/stats.json", "/index.html",
                             "/connz/1"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        expect(hp, "GET", missing[i], 404, "text/plain", &r);
        http_free(&r);
    }
    const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        expect(hp, methods[i], "/metrics", 405, "text/plain", &r);
        const char *allow = http_header(&r, "Allow");
        assert_non_null(allow);
        assert_string_equal(allow, "GET, HEAD");
        http_free(&r);
    }
}

/* ---- /metrics, parsed -------------------------------------------------- */

#define MAX_FAMILIES 64

typedef struct family {
    char name[128];
    char type[16];
    bool help;
    bool samples;
    /* histograms */
    double last_le;
    double last_count;
    double inf_count;
    double count;
    bool has_inf, has_sum, has_count;
    int buckets;
} family;

typedef struct exposition {
    family f[MAX_FAMILIES];
    int n;
} exposition;

static family *fam_find(exposition *e, const char *name)
{
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->f[i].name, name) == 0)
            return &e->f[i];
    return NULL;
}

static family *fam_get(exposition *e, const char *name)
{
    family *f = fam_find(e, name);
    if (f != NULL)
        return f;
    assert_true(e->n < MAX_FAMILIES);
    f = &e->f[e->n++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->last_le = -INFINITY;
    return f;
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* ; returns its length (0: not a name). */
static size_t metric_name_len(const char *p)
{
    size_t n = 0;
    if (!(isalpha((unsigned char)p[0]) || p[0] == '_' || p[0] == ':'))
        return 0;
    while (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == ':')
        n++;
    return n;
}

/* [a-zA-Z_][a-zA-Z0-9_]* */
static size_t label_name_len(const char *p)
{
    size_t n = 0;
    if (!(isalpha((unsigned char)p[0]) || p[0] == '_'))
        return 0;
    while (isalnum((unsigned char)p[n]) || p[n] == '_')
        n++;
    return n;
}

/* A sample value: a Go float (strtod's syntax), +Inf, -Inf or NaN. */
static bool parse_value(const char *p, const char **end, double *v)
{
    if (strncmp(p, "+Inf", 4) == 0) {
        *v = INFINITY;
        *end = p + 4;
        return true;
    }
    if (strncmp(p, "-Inf", 4) == 0) {
        *v = -INFINITY;
        *end = p + 4;
        return true;
    }
    if (strncmp(p, "NaN", 3) == 0) {
        *v = NAN;
        *end = p + 3;
        return true;
    }
    if (!(isdigit((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.'))
        return false;
    char *e;
    *v = strtod(p, &e);
    *end = e;
    return e != p;
}

/* Parse one sample line per the text format 0.0.4 grammar:
 *   name [ "{" label="value" { "," label="value" } [ "," ] "}" ] value [ ts ]
 * Fills the name and the `le` label (NAN when absent). */
static void parse_sample(
    const char *line, char *name, size_t namecap, double *le, double *value)
{
    size_t n = metric_name_len(line);
    if (n == 0 || n >= namecap)
        fail_msg("bad metric name in: %s", line);
    memcpy(name, line, n);
    name[n] = '\0';
    const char *p = line + n;
    *le = NAN;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            size_t ln = label_name_len(p);
            if (ln == 0)
                fail_msg("bad label name in: %s", line);
            bool is_le = ln == 2 && strncmp(p, "le", 2) == 0;
            p += ln;
            if (p[0] != '=' || p[1] != '"')
                fail_msg("want =\" after a label name in: %s", line);
            p += 2;
            char val[128];
            size_t vn = 0;
            while (*p != '"') {
                if (*p == '\0' || *p == '\n')
                    fail_msg("unterminated label value in: %s", line);
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        fail_msg("bad escape in a label value: %s", line);
                }
                if (vn < sizeof(val) - 1)
                    val[vn++] = *p;
                p++;
            }
            val[vn] = '\0';
            p++;
            if (is_le) {
                const char *e;
                if (!parse_value(val, &e, le) || *e != '\0')
                    fail_msg("bad le value in: %s", line);
            }
            if (*p == ',')
                p++;
            else if (*p != '}')
                fail_msg("want , or } in: %s", line);
        }
        p++;
    }
    if (*p != ' ')
        fail_msg("want a space before the value in: %s", line);
    while (*p == ' ')
        p++;
    const char *e;
    if (!parse_value(p, &e, value))
        fail_msg("bad value in: %s", line);
    p = e;
    if (*p == ' ') { /* an optional timestamp: an integer */
        p++;
        if (*p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            fail_msg("bad timestamp in: %s", line);
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p != '\0')
        fail_msg("trailing text in: %s", line);
}

/* The family a sample belongs to: histograms own name_bucket, name_sum
 * and name_count. */
static family *
sample_family(exposition *e, const char *name, const char **suffix)
{
    static const char *suffixes[] = {"_bucket", "_sum", "_count"};
    *suffix = "";
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(name), sn = strlen(suffixes[i]);
        if (n > sn && strcmp(name + n - sn, suffixes[i]) == 0) {
            char base[128];
            snprintf(base, sizeof(base), "%.*s", (int)(n - sn), name);
            family *f = fam_find(e, base);
            if (f != NULL && strcmp(f->type, "histogram") == 0) {
                *suffix = suffixes[i];
                return f;
            }
        }
    }
    return fam_find(e, name);
}

static void check_histogram_sample(
    family *f, const char *suffix, double le, double v, const char *line)
{
    if (strcmp(suffix, "_bucket") == 0) {
        if (isnan(le))
            fail_msg("bucket without le: %s", line);
        if (f->has_inf)
            fail_msg("bucket after le=\"+Inf\": %s", line);
        if (!(le > f->last_le))
            fail_msg("le not increasing: %s", line);
        if (v < f->last_count)
            fail_msg("buckets not cumulative: %s", line);
        f->last_le = le;
        f->last_count = v;
        f->buckets++;
        if (isinf(le)) {
            f->has_inf = true;
            f->inf_count = v;
        }
    } else if (strcmp(suffix, "_sum") == 0) {
        f->has_sum = true;
    } else if (strcmp(suffix, "_count") == 0) {
        f->has_count = true;
        f->count = v;
    } else {
        fail_msg("histogram sample without a suffix: %s", line);
    }
}

/* Parse a whole exposition; fail on any line out of the grammar. */
static void parse_exposition(char *text, exposition *e)
{
    memset(e, 0, sizeof(*e));
    size_t len = strlen(text);
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    for (char *line = strtok(text, "\n"); line != NULL;
         line = strtok(NULL, "\n")) {
        if (strncmp(line, "# HELP ", 7) == 0 ||
            strncmp(line, "# TYPE ", 7) == 0) {
            bool help = line[2] == 'H';
            const char *p = line + 7;
            size_t n = metric_name_len(p);
            if (n == 0 || (p[n] != ' ' && p[n] != '\0'))
                fail_msg("bad name in: %s", line);
            char name[128];
            snprintf(name, sizeof(name), "%.*s", (int)n, p);
            family *f = fam_get(e, name);
            if (f->samples)
                fail_msg("%s after the family's samples: %s",
                         help ? "HELP" : "TYPE", line);
            const char *rest = p[n] == ' ' ? p + n + 1 : "";
            if (help) {
                if (f->help)
                    fail_msg("second HELP: %s", line);
                if (*rest == '\0')
                    fail_msg("empty HELP: %s", line);
                f->help = true;
            } else {
                if (f->type[0] != '\0')
                    fail_msg("second TYPE: %s", line);
                if (strcmp(rest, "counter") != 0 &&
                    strcmp(rest, "gauge") != 0 &&
                    strcmp(rest, "histogram") != 0 &&
                    strcmp(rest, "summary") != 0 &&
                    strcmp(rest, "untyped") != 0)
                    fail_msg("bad TYPE: %s", line);
                snprintf(f->type, sizeof(f->type), "%s", rest);
            }
            continue;
        }
        if (line[0] == '#')
            continue; /* a comment */
        char name[128];
        double le, v;
        parse_sample(line, name, sizeof(name), &le, &v);
        const char *suffix;
        family *f = sample_family(e, name, &suffix);
        if (f == NULL || !f->help || f->type[0] == '\0')
            fail_msg("sample before its HELP and TYPE: %s", line);
        f->samples = true;
        if (strcmp(f->type, "counter") == 0) {
            size_t n = strlen(name);
            if (n < 6 || strcmp(name + n - 6, "_total") != 0)
                fail_msg("a counter's name should end in _total: %s", line);
        }
        if (strcmp(f->type, "counter") == 0 && !(v >= 0))
            fail_msg("negative counter: %s", line);
        if (strcmp(f->type, "histogram") == 0)
            check_histogram_sample(f, suffix, le, v, line);
    }
    for (int i = 0; i < e->n; i++) {
        family *f = &e->f[i];
        if (!f->help || f->type[0] == '\0' || !f->samples)
            fail_msg("family %s: HELP %d, TYPE '%s', samples %d", f->name,
                     f->help, f->type, f->samples);
        if (strcmp(f->type, "histogram") == 0 &&
            (!f->has_inf || !f->has_sum || !f->has_count ||
             f->inf_count != f->count || f->buckets < 2))
            fail_msg("histogram %s: +Inf %d (%g), sum %d, count %d (%g), "
                     "%d buckets",
                     f->name, f->has_inf, f->inf_count, f->has_sum,
                     f->has_count, f->count, f->buckets);
    }
}

/* The sample value of a metric without labels, from a fresh text. */
static double metric_value(const char *text, const char *name)
{
    char key[160];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(text, key);
    if (p == NULL)
        fail_msg("no sample %s", name);
    return strtod(p + strlen(key), NULL);
}

/* The stats frame's `cluster` object: off, or each of its numbers as a
 * sockbus_cluster_ metric. */
static void check_cluster_metrics(const cJSON *cl, exposition *e)
{
    const char *state = sbt_str(cl, "state");
    assert_non_null(state);
    if (strcmp(state, "off") == 0) {
        for (int i = 0; i < e->n; i++)
            if (strncmp(e->f[i].name, "sockbus_cluster_", 16) == 0)
                fail_msg("%s while clustering is off", e->f[i].name);
        return;
    }
    assert_non_null(fam_find(e, "sockbus_cluster_state"));
    for (const cJSON *it = cl->child; it != NULL; it = it->next) {
        if (!cJSON_IsNumber(it))
            continue;
        char name[128];
        snprintf(name, sizeof(name), "sockbus_cluster_%s%s", it->string,
                 strcmp(it->string, "subscriptions") == 0 ? "" : "_total");
        if (fam_find(e, name) == NULL)
            fail_msg("no metric %s for cluster.%s", name, it->string);
    }
}

static void test_http_metrics_format(void **state)
{
    sbt_server *s = *state;
    /* Some traffic, and a subscriber that does not read, so that queues
     * and the histogram have something in them. */
    sbt_client pub, rd, idle;
    connect_named(&rd, s->port, "reader");
    sub(&rd, "m.>", NULL);
    connect_named(&idle, s->port, "idle");
    sub(&idle, "m.>", NULL);
    connect_named(&pub, s->port, "pub");
    publish(&pub, "m.a", 50, 100);
    for (int i = 0; i < 50; i++) {
        cJSON *m = sbt_expect(&rd, "msg", WAIT_MS);
        assert_non_null(m);
        cJSON_Delete(m);
    }

    http_resp r;
    expect(s->http_port, "GET", "/metrics", 200, "text/plain; version=0.0.4",
           &r);
    char *copy = strdup(r.body);
    exposition *e = calloc(1, sizeof(*e));
    parse_exposition(r.body, e);

    /* Every field of the stats frame has its metric. */
    static const char *const map[][3] = {
        {"connections", "sockbus_connections", "gauge"},
        {"subscriptions", "sockbus_subscriptions", "gauge"},
        {"msgs_in", "sockbus_msgs_in_total", "counter"},
        {"msgs_out", "sockbus_msgs_out_total", "counter"},
        {"bytes_in", "sockbus_bytes_in_total", "counter"},
        {"bytes_out", "sockbus_bytes_out_total", "counter"},
        {"dropped", "sockbus_dropped_total", "counter"},
        {"slow_consumers", "sockbus_slow_consumers_total", "counter"},
        {"uptime_ms", "sockbus_uptime_seconds", "gauge"},
        {"total_connections", "sockbus_connections_total", "counter"},
        {"recv_queue", "sockbus_recv_queue_depth", "gauge"},
        {"recv_queue_high_water", "sockbus_recv_queue_high_water", "gauge"},
    };
    size_t nmap = sizeof(map) / sizeof(map[0]);
    cJSON *st = get_json(s->http_port, "/stats");
    for (cJSON *it = st->child; it != NULL; it = it->next) {
        if (strcmp(it->string, "op") == 0)
            continue;
        if (strcmp(it->string, "cluster") == 0) {
            check_cluster_metrics(it, e);
            continue;
        }
        size_t k = 0;
        while (k < nmap && strcmp(map[k][0], it->string) != 0)
            k++;
        if (k == nmap)
            fail_msg("stats field %s has no metric in this test's map",
                     it->string);
    }
    cJSON_Delete(st);
    for (size_t k = 0; k < nmap; k++) {
        family *f = fam_find(e, map[k][1]);
        if (f == NULL)
            fail_msg("no metric %s (stats field %s)", map[k][1], map[k][0]);
        assert_string_equal(f->type, map[k][2]);
    }
    /* The queues' figures. */
    static const char *const more[][2] = {
        {"sockbus_send_queue_high_water", "gauge"},
        {"sockbus_send_queue_bytes", "gauge"},
        {"sockbus_send_queue_depth", "histogram"},
        {"sockbus_info", "gauge"},
    };
    for (size_t k = 0; k < sizeof(more) / sizeof(more[0]); k++) {
        family *f = fam_find(e, more[k][0]);
        if (f == NULL)
            fail_msg("no metric %s", more[k][0]);
        assert_string_equal(f->type, more[k][1]);
    }
    /* Three connections: the histogram counts them, the figures agree. */
    assert_int_equal((int)metric_value(copy, "sockbus_connections"), 3);
    assert_int_equal((int)metric_value(copy, "sockbus_send_queue_depth_count"),
                     3);
    assert_int_equal((int)metric_value(copy, "sockbus_subscriptions"), 2);
    assert_true(metric_value(copy, "sockbus_msgs_in_total") >= 50);
    assert_true(metric_value(copy, "sockbus_msgs_out_total") >= 50);
    assert_true(metric_value(copy, "sockbus_send_queue_high_water") >= 1);
    assert_true(metric_value(copy, "sockbus_recv_queue_high_water") >= 1);
    assert_true(metric_value(copy, "sockbus_uptime_seconds") > 0);
    free(copy);
    free(e);
    http_free(&r);
    sbt_close(&pub);
    sbt_close(&rd);
    sbt_close(&idle);
}

/* ---- /connz ------------------------------------------------------------ */

static const char *const numeric_fields[] = {
    "id",
    "age_ms",
    "idle_ms",
    "subscriptions",
    "msgs_in",
    "msgs_out",
    "bytes_in",
    "bytes_out",
    "queued_frames",
    "queued_bytes",
    "queued_high_water",
    "dropped",
};
#define NNUM (sizeof(numeric_fields) / sizeof(numeric_fields[0]))

static const cJSON *conn_named(const cJSON *cz, const char *name)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cz, "connections"))
    {
        const char *n = sbt_str(c, "name");
        if (n != NULL && strcmp(n, name) == 0)
            return c;
    }
    return NULL;
}

/* The names of the listed connections, in order, comma-separated. */
static void names_in_order(const cJSON *cz, char *out, size_t cap)
{
    out[0] = '\0';
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cz, "connections"))
    {
        const char *n = sbt_str(c, "name");
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%s", used ? "," : "", n ? n : "-");
    }
}

static void test_http_connz_sort_and_limit(void **state)
{
    sbt_server *s = *state;
    int hp = s->http_port;
    sbt_client light, medium, heavy, reader;
    connect_named(&reader, s->port, "reader");
    sub(&reader, "t.>", NULL);
    sub(&reader, "u.>", NULL);
    connect_named(&light, s->port, "light");
    connect_named(&medium, s->port, "medium");
    connect_named(&heavy, s->port, "heavy");
    publish(&light, "t.light", 2, 10);
    publish(&medium, "t.medium", 5, 500);
    publish(&heavy, "t.heavy", 20, 50);

    /* The reader's counters move once its worker has written: wait. */
    cJSON *cz = NULL;
    long long deadline = sbt_now_ms() + WAIT_MS;
    for (;;) {
        cz = get_json(hp, "/connz?sort=msgs_out");
        const cJSON *rd = conn_named(cz, "reader");
        if (rd != NULL && sbt_num(rd, "msgs_out") == 27)
            break;
        cJSON_Delete(cz);
        if (sbt_now_ms() > deadline)
            fail_msg("reader's msgs_out never reached 27");
        poll(NULL, 0, 20);
    }
    cJSON_Delete(cz);

    /* Every field of every connection. */
    cz = get_json(hp, "/connz");
    assert_int_equal((int)sbt_num(cz, "total"), 4);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cz, "connections"))
    {
        for (size_t k = 0; k < NNUM; k++)
            if (!cJSON_IsNumber(cJSON_GetObjectItem(c, numeric_fields[k])))
                fail_msg("connection without numeric %s", numeric_fields[k]);
        const char *remote = sbt_str(c, "remote");
        assert_non_null(remote);
        assert_true(strncmp(remote, "127.0.0.1:", 10) == 0);
        assert_non_null(sbt_str(c, "name"));
        assert_true(sbt_num(c, "idle_ms") <= sbt_num(c, "age_ms"));
    }
    /* Without ?sort: by id, oldest first. */
    char order[256];
    names_in_order(cz, order, sizeof(order));
    assert_string_equal(order, "reader,light,medium,heavy");
    const cJSON *rd = conn_named(cz, "reader");
    assert_int_equal((int)sbt_num(rd, "subscriptions"), 2);
    assert_int_equal((int)sbt_num(rd, "msgs_in"), 0);
    assert_int_equal((int)sbt_num(conn_named(cz, "heavy"), "msgs_in"), 20);
    assert_int_equal((int)sbt_num(conn_named(cz, "medium"), "msgs_in"), 5);
    assert_int_equal((int)sbt_num(conn_named(cz, "light"), "msgs_in"), 2);
    assert_true(sbt_num(rd, "bytes_out") > 27 * 10);
    cJSON_Delete(cz);

    /* Sorted, descending. */
    cz = get_json(hp, "/connz?sort=msgs_in");
    names_in_order(cz, order, sizeof(order));
    assert_string_equal(order, "heavy,medium,light,reader");
    cJSON_Delete(cz);
    cz = get_json(hp, "/connz?sort=bytes_in");
    names_in_order(cz, order, sizeof(order));
    assert_true(strncmp(order, "medium,heavy,light", 18) == 0);
    cJSON_Delete(cz);
    cz = get_json(hp, "/connz?sort=id");
    names_in_order(cz, order, sizeof(order));
    assert_string_equal(order, "heavy,medium,light,reader");
    cJSON_Delete(cz);
    for (size_t k = 0; k < NNUM; k++) {
        char path[96];
        snprintf(path, sizeof(path), "/connz?sort=%s", numeric_fields[k]);
        cz = get_json(hp, path);
        double last = INFINITY;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(cz, "connections"))
        {
            double v = sbt_num(c, numeric_fields[k]);
            if (v > last)
                fail_msg("%s: not descending", path);
            last = v;
        }
        cJSON_Delete(cz);
    }

    /* Limits; total stays the number of connections. */
    cz = get_json(hp, "/connz?sort=msgs_in&limit=2");
    names_in_order(cz, order, sizeof(order));
    assert_string_equal(order, "heavy,medium");
    assert_int_equal((int)sbt_num(cz, "total"), 4);
    cJSON_Delete(cz);
    cz = get_json(hp, "/connz?limit=1&sort=subscriptions");
    names_in_order(cz, order, sizeof(order));
    assert_string_equal(order, "reader");
    cJSON_Delete(cz);
    cz = get_json(hp, "/connz?limit=0");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cz, "connections")),
                     0);
    assert_int_equal((int)sbt_num(cz, "total"), 4);
    cJSON_Delete(cz);
    cz = get_json(hp, "/connz?limit=100000");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cz, "connections")),
                     4);
    cJSON_Delete(cz);

    /* Bad parameters: 400 with a JSON error. */
    const char *bad[] = {
        "/connz?sort=nope", "/connz?sort=name", "/connz?sort=remote",
        "/connz?sort=",     "/connz?limit=abc", "/connz?limit=-1",
        "/connz?limit=",    "/connz?limit=1e3", "/connz?limit=99999999999",
        "/connz?limit=2x",  "/connz?order=asc", "/connz?sort=id&x=1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_resp r;
        expect(hp, "GET", bad[i], 400, "application/json", &r);
        cJSON *j = cJSON_Parse(r.body);
        if (j == NULL || sbt_str(j, "error") == NULL)
            fail_msg("%s: want a JSON error, got %s", bad[i], r.body);
        cJSON_Delete(j);
        http_free(&r);
    }

    /* A connection that leaves is no longer listed. */
    sbt_close(&light);
    deadline = sbt_now_ms() + WAIT_MS;
    for (;;) {
        cz = get_json(hp, "/connz");
        bool gone =
            sbt_num(cz, "total") == 3 && conn_named(cz, "light") == NULL;
        cJSON_Delete(cz);
        if (gone)
            break;
        if (sbt_now_ms() > deadline)
            fail_msg("a closed connection is still listed");
        poll(NULL, 0, 20);
    }
    sbt_close(&medium);
    sbt_close(&heavy);
    sbt_close(&reader);
}

/* ---- /subz ------------------------------------------------------------- */

/* Holders of (pattern, group) in a /subz answer; 0 when absent. */
static int holders(const cJSON *sz, const char *pattern, const char *group)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(sz, "subscriptions"))
    {
        const cJSON *g = cJSON_GetObjectItem(e, "group");
        const char *p = sbt_str(e, "pattern");
        bool gmatch = group == NULL ? cJSON_IsNull(g)
                                    : (cJSON_IsString(g) &&
                                       strcmp(g->valuestring, group) == 0);
        if (p != NULL && strcmp(p, pattern) == 0 && gmatch)
            return (int)sbt_num(e, "holders");
    }
    return 0;
}

/* Wait until /subz lists `n` entries and (pattern, group) has `want`. */
static cJSON *
subz_wait(int hp, int n, const char *pattern, const char *group, int want)
{
    long long deadline = sbt_now_ms() + WAIT_MS;
    for (;;) {
        cJSON *sz = get_json(hp, "/subz");
        if ((int)sbt_num(sz, "total") == n &&
            cJSON_GetArraySize(cJSON_GetObjectItem(sz, "subscriptions")) == n &&
            holders(sz, pattern, group) == want)
            return sz;
        if (sbt_now_ms() > deadline) {
            char *t = cJSON_PrintUnformatted(sz);
            fail_msg("/subz: want %d entries and %s/%s held by %d: %s", n,
                     pattern, group ? group : "-", want, t);
        }
        cJSON_Delete(sz);
        poll(NULL, 0, 20);
    }
}

static void test_http_subz_holders(void **state)
{
    sbt_server *s = *state;
    int hp = s->http_port;
    sbt_client a, b, c, d;
    connect_named(&a, s->port, "a");
    connect_named(&b, s->port, "b");
    connect_named(&c, s->port, "c");
    connect_named(&d, s->port, "d");
    sub(&a, "orders.>", NULL);
    sub(&a, "x.*", NULL);
    sub(&b, "orders.>", NULL);
    sub(&c, "orders.>", "g");
    sub(&d, "orders.>", "g");
    sub(&d, "orders.>", "h");
    sub(&d, "orders.>", "h"); /* twice is one subscription */

    cJSON *sz = subz_wait(hp, 4, "orders.>", NULL, 2);
    assert_int_equal(holders(sz, "orders.>", "g"), 2);
    assert_int_equal(holders(sz, "orders.>", "h"), 1);
    assert_int_equal(holders(sz, "x.*", NULL), 1);
    /* Sorted by pattern, then group (none first). */
    const cJSON *first =
        cJSON_GetArrayItem(cJSON_GetObjectItem(sz, "subscriptions"), 0);
    assert_string_equal(sbt_str(first, "pattern"), "orders.>");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(first, "group")));
    cJSON_Delete(sz);

    assert_true(sbt_request_ok(
        &a, "{\"op\":\"unsub\",\"topic\":\"x.*\",\"id\":2}", WAIT_MS));
    cJSON_Delete(subz_wait(hp, 3, "x.*", NULL, 0));
    sbt_close(&d); /* its subscriptions go with it */
    sz = subz_wait(hp, 2, "orders.>", "g", 1);
    assert_int_equal(holders(sz, "orders.>", "h"), 0);
    assert_int_equal(holders(sz, "orders.>", NULL), 2);
    cJSON_Delete(sz);
    sbt_close(&a);
    sbt_close(&b);
    sbt_close(&c);
    cJSON_Delete(subz_wait(hp, 0, "orders.>", NULL, 0));
}

/* ---- /healthz during a drain ------------------------------------------- */

/* Connect with a small receive buffer, so that what it does not read stays
 * queued in the server. */
static void connect_small(sbt_client *c, int port)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    int bytes = 4096;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cJSON *info = sbt_expect(c, "info", WAIT_MS);
    assert_non_null(info);
    cJSON_Delete(info);
}

static void test_http_healthz_drain(void **state)
{
    sbt_server *s = *state;
    int hp = s->http_port;
    http_resp r;
    expect(hp, "GET", "/healthz", 200, "text/plain", &r);
    http_free(&r);

    /* A subscriber that does not read, with messages queued for it. */
    sbt_client sl, pub;
    connect_small(&sl, s->port);
    assert_true(sbt_request_ok(
        &sl, "{\"op\":\"sub\",\"topic\":\"drain\",\"id\":1}", WAIT_MS));
    connect_named(&pub, s->port, "pub");
    publish(&pub, "drain", 10000, 1000); /* more than kernel buffers */
    long long deadline = sbt_now_ms() + WAIT_MS;
    for (;;) {
        cJSON *cz = get_json(hp, "/connz?sort=queued_frames&limit=1");
        double q = sbt_num(
            cJSON_GetArrayItem(cJSON_GetObjectItem(cz, "connections"), 0),
            "queued_frames");
        cJSON_Delete(cz);
        if (q > 0)
            break;
        if (sbt_now_ms() > deadline)
            fail_msg("nothing queued for the subscriber that does not read");
        poll(NULL, 0, 20);
    }

    /* SIGTERM: the server drains for up to 3 s (the subscriber never
     * reads), and /healthz says 503 meanwhile. */
    long long t0 = sbt_now_ms();
    assert_int_equal(kill(s->pid, SIGTERM), 0);
    int status = 0;
    deadline = t0 + 2500;
    while (sbt_now_ms() < deadline) {
        if (http_req(hp, "GET", "/healthz", &r) == 0) {
            status = r.status;
            if (status == 503) {
                const char *ct = http_header(&r, "Content-Type");
                assert_non_null(ct);
                assert_true(strncmp(ct, "text/plain", 10) == 0);
                http_free(&r);
                break;
            }
            http_free(&r);
        }
        poll(NULL, 0, 10);
    }
    if (status != 503)
        fail_msg("/healthz said %d, not 503, within 2.5 s of SIGTERM", status);
    /* The rest keeps answering while it drains. */
    if (sbt_now_ms() - t0 < 2500) {
        expect(hp, "GET", "/metrics", 200, "text/plain; version=0.0.4", &r);
        http_free(&r);
        cJSON_Delete(get_json(hp, "/connz"));
    }
    /* Then it exits 0 once the drain time is over. */
    int st = sbt_server_stop(s, 0, 15000);
    assert_int_equal(st, 0);
    assert_true(sbt_now_ms() - t0 >= 2500);
    sbt_close(&sl);
    sbt_close(&pub);
}

/* ---- Churn --------------------------------------------------------------- */

/* Connections come and go while /connz, /metrics and /subz walk them: every
 * answer stays well-formed (and, under ThreadSanitizer, race-free). */
static void test_http_churn(void **state)
{
    sbt_server *s = *state;
    int hp = s->http_port;
    enum { N = 24, ROUNDS = 4 };
    for (int round = 0; round < ROUNDS; round++) {
        sbt_client c[N];
        for (int i = 0; i < N; i++) {
            char name[32];
            snprintf(name, sizeof(name), "churn-%d-%d", round, i);
            connect_named(&c[i], s->port, name);
            assert_int_equal(
                sbt_sendf(&c[i],
                          "{\"op\":\"sub\",\"topic\":\"churn.%d\"}\n"
                          "{\"op\":\"pub\",\"topic\":\"churn.%d\","
                          "\"data\":%d}\n",
                          i % 3, (i + 1) % 3, i),
                0);
        }
        /* Close them all without waiting, and look at once. */
        for (int i = 0; i < N; i++) {
            if (i % 2)
                sbt_reset(&c[i]);
            else
                sbt_close(&c[i]);
        }
        for (int k = 0; k < 5; k++) {
            cJSON_Delete(get_json(hp, "/connz?sort=bytes_in"));
            cJSON_Delete(get_json(hp, "/subz"));
            http_resp r;
            expect(hp, "GET", "/metrics", 200, "text/plain; version=0.0.4", &r);
            exposition *e = calloc(1, sizeof(*e));
            parse_exposition(r.body, e);
            free(e);
            http_free(&r);
        }
    }
    /* Everything is gone in the end. */
    long long deadline = sbt_now_ms() + WAIT_MS;
    for (;;) {
        cJSON *cz = get_json(hp, "/connz");
        cJSON *sz = get_json(hp, "/subz");
        bool empty = sbt_num(cz, "total") == 0 && sbt_num(sz, "total") == 0;
        cJSON_Delete(cz);
        cJSON_Delete(sz);
        if (empty)
            break;
        if (sbt_now_ms() > deadline)
            fail_msg("connections or subscriptions left after churn");
        poll(NULL, 0, 20);
    }
}

/* ---- Flags ------------------------------------------------------------- */

static void test_http_bad_flags(void **state)
{
    (void)state;
    const char *bad[] = {"nope",     "70000", "[::1",           "::1:80",
                         "1.2.3.4:", ":80",   "127.0.0.1:http", "0.0.0.0:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[512];
        int st =
            sbt_run_sockbusd((const char *const[]){"--listen", "127.0.0.1:0",
                                                   "--http", bad[i], NULL},
                             err, sizeof(err), 10000);
        if (st != 2 || strstr(err, "--http") == NULL)
            fail_msg("--http '%s': exit %d, stderr %s", bad[i], st, err);
    }
}

static void test_http_port_in_use(void **state)
{
    sbt_server *s = *state;
    char addr[64], err[512];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", s->http_port);
    int st = sbt_run_sockbusd(
        (const char *const[]){"--listen", "127.0.0.1:0", "--http", addr, NULL},
        err, sizeof(err), 10000);
    if (st != 2 || strstr(err, "--http") == NULL ||
        strstr(err, "in use") == NULL)
        fail_msg("--http %s (taken): exit %d, stderr %s", addr, st, err);
}

static void test_http_bare_port_is_loopback(void **state)
{
    sbt_server *s = *state;
    assert_true(strncmp(s->http_addr, "127.0.0.1:", 10) == 0);
    assert_true(s->http_port > 0);
    http_resp r;
    expect(s->http_port, "GET", "/healthz", 200, "text/plain", &r);
    http_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_metrics_format, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_connz_sort_and_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_subz_holders, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_churn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_healthz_drain, setup_drain,
                                        teardown),
        cmocka_unit_test(test_http_bad_flags),
        cmocka_unit_test_setup_teardown(test_http_port_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_bare_port_is_loopback,
                                        setup_bare_port, teardown),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
