/* test_cluster.c - several sockbusd nodes sharing one bus through NATS.
 *
 * The group setup starts a three-server NATS cluster (routes between them)
 * on free loopback ports and three sockbusd nodes, node i connected first
 * to NATS server i (each gets all three URLs, its own first). Everything
 * is checked over real sockets.
 *
 * Interest crosses NATS routes asynchronously, so after subscribing, a
 * test publishes probe messages until each subscriber has seen one
 * (bounded); subscribers ignore probes afterwards. To show that something
 * does NOT arrive, the publisher then publishes a marker: one publisher's
 * messages arrive in order, so an unwanted one would come first.
 *
 * The fault tests run last: one kills the NATS server node 1 uses, one
 * starts a node before its NATS server exists, one stops (SIGSTOP) the
 * NATS server of a node of its own while that node's clients publish. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS 10000
#define PROBE_MS 15000 /* interest propagation, reconnects */
#define NNATS 3
#define NNODES 3

/* ---- NATS servers ------------------------------------------------------ */

typedef struct nats_srv {
    pid_t pid;
    int port, cport; /* client and cluster (route) ports */
} nats_srv;

/* Past the shared cluster's: test_node_before_nats, test_stalled_link. */
#define NATS_LATE NNATS
#define NATS_STALL (NNATS + 1)
static nats_srv nats[NNATS + 2];
static sbt_server node[NNODES];
static sbt_server late;  /* test_node_before_nats */
static sbt_server stall; /* test_stalled_link */
static char urls[NNODES][256];

/* A port nobody listens on right now (bound and released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* True once a client connection to `port` reads NATS's INFO line. */
static bool nats_ready(int port)
{
    sbt_client c;
    if (sbt_connect(&c, port) < 0)
        return false;
    char *line = sbt_read_line(&c, 1000);
    bool ok = line != NULL && strncmp(line, "INFO ", 5) == 0;
    free(line);
    sbt_close(&c);
    return ok;
}

/* Start NATS server `i` with routes to the cluster ports in `routes`
 * (comma-separated URLs, may be empty) and wait until it serves. */
static int nats_start(int i, const char *routes)
{
    nats_srv *n = &nats[i];
    char port[16], cluster[64], log[64];
    snprintf(port, sizeof(port), "%d", n->port);
    snprintf(cluster, sizeof(cluster), "nats://127.0.0.1:%d", n->cport);
    snprintf(log, sizeof(log), "test_cluster.nats%d.%d.log", i, (int)getpid());
    const char *argv[16] = {
        "nats-server", "-a",    "127.0.0.1",      "-p", port,
        "--cluster",   cluster, "--cluster_name", "sb"};
    int k = 9;
    if (routes[0] != '\0') {
        argv[k++] = "--routes";
        argv[k++] = routes;
    }
    argv[k] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execvp("nats-server", (char *const *)(uintptr_t)argv);
        /* Debian installs it in /usr/sbin, not always in PATH. */
        execv("/usr/sbin/nats-server", (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    n->pid = pid;
    long long deadline = sbt_now_ms() + WAIT_MS;
    while (sbt_now_ms() < deadline) {
        if (nats_ready(n->port))
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            n->pid = 0;
            fprintf(stderr, "nats-server %d exited (log %s)\n", i, log);
            return -1;
        }
        poll(NULL, 0, 20); /* bounded retry: the server is starting */
    }
    fprintf(stderr, "nats-server %d not ready (log %s)\n", i, log);
    return -1;
}

static void nats_kill(int i)
{
    if (nats[i].pid > 0) {
        kill(nats[i].pid, SIGKILL); /* also when stopped (SIGSTOP) */
        waitpid(nats[i].pid, NULL, 0);
        nats[i].pid = 0;
    }
}

/* The route URLs of the shared cluster's servers other than `self`. */
static void routes_except(int self, char *out, size_t n)
{
    out[0] = '\0';
    for (int j = 0; j < NNATS; j++) {
        if (j == self)
            continue;
        size_t len = strlen(out);
        snprintf(out + len, n - len, "%snats://127.0.0.1:%d", len ? "," : "",
                 nats[j].cport);
    }
}

/* ---- Fixtures ---------------------------------------------------------- */

static int start_node(sbt_server *s, const char *url_list, const char *name)
{
    const char *args[] = {"--cluster",   url_list, "--node", name,
                          "--max-frame", "65536",  NULL};
    return sbt_server_start(s, args);
}

static int group_setup(void **state)
{
    (void)state;
    for (int i = 0; i <= NATS_STALL; i++) {
        nats[i].port = free_port();
        nats[i].cport = free_port();
    }
    for (int i = 0; i < NNATS; i++) {
        char routes[256];
        routes_except(i, routes, sizeof(routes));
        if (nats_start(i, routes) < 0)
            return -1;
    }
    for (int i = 0; i < NNODES; i++) {
        /* Its own server first, then the others. */
        snprintf(urls[i], sizeof(urls[i]),
                 "nats://127.0.0.1:%d,nats://127.0.0.1:%d,"
                 "nats://127.0.0.1:%d",
                 nats[i].port, nats[(i + 1) % NNATS].port,
                 nats[(i + 2) % NNATS].port);
        char name[16];
        snprintf(name, sizeof(name), "n%d", i + 1);
        if (start_node(&node[i], urls[i], name) < 0)
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    for (int i = 0; i < NNODES; i++)
        if (node[i].pid > 0 && sbt_server_stop(&node[i], SIGTERM, 10000) != 0)
            rc = -1;
    if (late.pid > 0)
        sbt_server_stop(&late, SIGKILL, 10000);
    if (stall.pid > 0)
        sbt_server_stop(&stall, SIGKILL, 10000);
    for (int i = 0; i <= NATS_STALL; i++)
        nats_kill(i);
    return rc;
}

#define MAX_CLIENTS 16

typedef struct fx {
    sbt_client cl[MAX_CLIENTS];
    int n;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    *state = f;
    return f ? 0 : -1;
}

static int teardown(void **state)
{
    fx *f = *state;
    for (int i = 0; i < f->n; i++)
        sbt_close(&f->cl[i]);
    free(f);
    return 0;
}

/* ---- Helpers ----------------------------------------------------------- */

#define SEND(c, ...) assert_int_equal(sbt_sendf((c), __VA_ARGS__), 0)

/* A new client of node `i` (0-based), greeting read. */
static sbt_client *client(fx *f, int i)
{
    assert_true(f->n < MAX_CLIENTS);
    sbt_client *c = &f->cl[f->n++];
    cJSON *info = sbt_connect_info(c, node[i].port);
    assert_non_null(info);
    cJSON_Delete(info);
    return c;
}

static void sub(sbt_client *c, const char *pattern, const char *group)
{
    char frame[512];
    if (group)
        snprintf(frame, sizeof(frame),
                 "{\"op\":\"sub\",\"topic\":\"%s\",\"group\":\"%s\","
                 "\"id\":\"s\"}",
                 pattern, group);
    else
        snprintf(frame, sizeof(frame),
                 "{\"op\":\"sub\",\"topic\":\"%s\",\"id\":\"s\"}", pattern);
    assert_true(sbt_request_ok(c, frame, WAIT_MS));
}

static void pub(sbt_client *c, const char *topic, const char *data)
{
    SEND(c, "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":%s}\n", topic, data);
}

/* The next msg frame that is not a probe ({"probe":...}), or NULL. */
static cJSON *next_msg(sbt_client *c, int timeout_ms)
{
    long long deadline = sbt_now_ms() + timeout_ms;
    for (;;) {
        long long left = deadline - sbt_now_ms();
        cJSON *j = sbt_read(c, left > 0 ? (int)left : 0);
        if (j == NULL)
            return NULL;
        const char *op = sbt_str(j, "op");
        cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
        if (op && strcmp(op, "msg") == 0 &&
            !cJSON_GetObjectItemCaseSensitive(d, "probe"))
            return j;
        if (op == NULL || strcmp(op, "msg") != 0) {
            char *s = cJSON_PrintUnformatted(j);
            fprintf(stderr, "unexpected frame: %s\n", s);
            free(s);
        }
        cJSON_Delete(j);
    }
}

/* Expect the next real message to be on `topic` with data text `data`. */
static void expect_msg(sbt_client *c, const char *topic, const char *data)
{
    cJSON *j = next_msg(c, WAIT_MS);
    if (j == NULL)
        fail_msg("expected msg %s %s, got nothing", topic, data);
    char *d = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "data"));
    if (strcmp(sbt_str(j, "topic"), topic) != 0 || strcmp(d, data) != 0)
        fail_msg("expected msg %s %s, got %s %s", topic, data,
                 sbt_str(j, "topic"), d);
    free(d);
    cJSON_Delete(j);
}

/* Publish probes on `topic` from `p` until each of `subs` has one. */
static void
await_interest(sbt_client *p, const char *topic, sbt_client **subs, int n)
{
    bool seen[MAX_CLIENTS] = {false};
    int left = n;
    long long deadline = sbt_now_ms() + PROBE_MS;
    for (int k = 0; left > 0; k++) {
        if (sbt_now_ms() > deadline)
            fail_msg("interest in %s did not reach every node", topic);
        char data[32];
        snprintf(data, sizeof(data), "{\"probe\":%d}", k);
        pub(p, topic, data);
        for (int i = 0; i < n; i++) {
            if (seen[i])
                continue;
            char *line = sbt_read_line(subs[i], 20);
            if (line == NULL)
                continue;
            bool probe = strstr(line, "\"probe\"") != NULL;
            free(line);
            if (probe) {
                seen[i] = true;
                left--;
            }
        }
    }
}

static cJSON *cluster_stats(sbt_client *c)
{
    /* Probes sent by await_interest() after the one it waited for may
     * still arrive: skip msg frames up to the stats answer. */
    assert_int_equal(sbt_sends(c, "{\"op\":\"stats\"}\n"), 0);
    cJSON *st = NULL;
    long long deadline = sbt_now_ms() + WAIT_MS;
    while (st == NULL && sbt_now_ms() < deadline) {
        cJSON *j = sbt_read(c, WAIT_MS);
        assert_non_null(j);
        const char *op = sbt_str(j, "op");
        assert_non_null(op);
        if (strcmp(op, "stats") == 0) {
            st = j;
            break;
        }
        assert_string_equal(op, "msg");
        cJSON_Delete(j);
    }
    assert_non_null(st);
    cJSON *cl = cJSON_DetachItemFromObject(st, "cluster");
    cJSON_Delete(st);
    assert_non_null(cl);
    return cl;
}

/* ---- A raw NATS client (the text protocol over a socket) --------------- */

static void nats_send(sbt_client *c, const char *s)
{
    assert_int_equal(sbt_sends(c, s), 0);
}

static void nats_connect(sbt_client *c, int port)
{
    assert_int_equal(sbt_connect(c, port), 0);
    char *info = sbt_read_line(c, WAIT_MS);
    assert_non_null(info);
    assert_true(strncmp(info, "INFO ", 5) == 0);
    free(info);
    nats_send(c, "CONNECT {\"verbose\":false,\"pedantic\":false,"
                 "\"headers\":true,\"name\":\"raw\"}\r\nPING\r\n");
    char *pong = sbt_read_line(c, WAIT_MS);
    assert_non_null(pong);
    assert_string_equal(pong, "PONG\r");
    free(pong);
}

static void nats_pub(sbt_client *c, const char *subj, const char *payload)
{
    assert_int_equal(
        sbt_sendf(c, "PUB %s %zu\r\n%s\r\n", subj, strlen(payload), payload),
        0);
}

/* The next MSG's subject and payload (caller frees both), answering PINGs.
 * Returns false on timeout. */
static bool
nats_next(sbt_client *c, int timeout_ms, char **subject, char **payload)
{
    long long deadline = sbt_now_ms() + timeout_ms;
    for (;;) {
        long long left = deadline - sbt_now_ms();
        char *line = sbt_read_line(c, left > 0 ? (int)left : 0);
        if (line == NULL)
            return false;
        if (strncmp(line, "PING", 4) == 0) {
            free(line);
            nats_send(c, "PONG\r\n");
            continue;
        }
        if (strncmp(line, "MSG ", 4) != 0) {
            free(line);
            continue;
        }
        /* MSG <subject> <sid> [reply] <size> */
        char subj[512];
        assert_int_equal(sscanf(line, "MSG %511s", subj), 1);
        free(line);
        char *body = sbt_read_line(c, WAIT_MS);
        assert_non_null(body);
        size_t bl = strlen(body);
        if (bl > 0 && body[bl - 1] == '\r')
            body[bl - 1] = '\0';
        *subject = strdup(subj);
        *payload = body;
        return true;
    }
}

/* ---- Tests ------------------------------------------------------------- */

static void test_cross_node_wildcards(void **state)
{
    fx *f = *state;
    sbt_client *p = client(f, 0);
    sbt_client *star = client(f, 1), *gt = client(f, 2);
    sub(star, "w.*.x", NULL);
    sub(gt, "w.>", NULL);
    sbt_client *both[] = {star, gt};
    await_interest(p, "w.a.x", both, 2);

    pub(p, "w.a.x", "{\"n\":1}");
    pub(p, "w.a.b.c", "{\"n\":2}");
    pub(p, "w.b.x", "{\"n\":3}");
    expect_msg(star, "w.a.x", "{\"n\":1}");
    expect_msg(star, "w.b.x", "{\"n\":3}"); /* not w.a.b.c */
    expect_msg(gt, "w.a.x", "{\"n\":1}");
    expect_msg(gt, "w.a.b.c", "{\"n\":2}");
    expect_msg(gt, "w.b.x", "{\"n\":3}");
}

static void test_order_10000(void **state)
{
    fx *f = *state;
    sbt_client *p = client(f, 0), *s = client(f, 1);
    sub(s, "ord.>", NULL);
    sbt_client *subs[] = {s};
    await_interest(p, "ord.x", subs, 1);

    enum { N = 10000 };
    char *batch = malloc((size_t)N * 64);
    assert_non_null(batch);
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t)sprintf(
            batch + len, "{\"op\":\"pub\",\"topic\":\"ord.%c\",\"data\":%d}\n",
            'a' + i % 3, i);
    assert_int_equal(sbt_send(p, batch, len), 0);
    free(batch);
    for (int i = 0; i < N; i++) {
        cJSON *j = next_msg(s, WAIT_MS);
        if (j == NULL)
            fail_msg("message %d of %d did not arrive", i, N);
        int got = (int)cJSON_GetObjectItem(j, "data")->valuedouble;
        cJSON_Delete(j);
        if (got != i)
            fail_msg("message %d arrived as number %d", got, i);
    }
}

static void test_group_across_nodes(void **state)
{
    fx *f = *state;
    enum { N = 3000 };
    sbt_client *p = client(f, 0);
    sbt_client *m[NNODES];
    for (int i = 0; i < NNODES; i++) {
        m[i] = client(f, i);
        sub(m[i], "jobs.*", "workers");
    }
    await_interest(p, "jobs.x", m, NNODES);

    char *seen = calloc(N, 1);
    assert_non_null(seen);
    for (int i = 0; i < N; i++)
        SEND(p, "{\"op\":\"pub\",\"topic\":\"jobs.run\",\"data\":{\"i\":%d}}\n",
             i);
    int count[NNODES] = {0}, total = 0;
    long long deadline = sbt_now_ms() + 30000;
    while (total < N) {
        if (sbt_now_ms() > deadline)
            fail_msg("the group got %d of %d messages", total, N);
        for (int k = 0; k < NNODES; k++) {
            cJSON *j = next_msg(m[k], 5);
            if (j == NULL)
                continue;
            int i =
                (int)cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "i")
                    ->valuedouble;
            cJSON_Delete(j);
            assert_true(i >= 0 && i < N);
            if (seen[i]++)
                fail_msg("message %d delivered twice to the group", i);
            count[k]++;
            total++;
        }
    }
    free(seen);
    for (int k = 0; k < NNODES; k++) {
        if (count[k] == 0)
            fail_msg("the member on node %d got no share", k + 1);
        assert_true(sbt_quiet(m[k], 200));
    }
}

static void test_request_reply_across_nodes(void **state)
{
    fx *f = *state;
    sbt_client *req = client(f, 0), *resp = client(f, 2);
    sub(resp, "svc.echo", NULL);
    sub(req, "_INBOX.r1", NULL);
    sbt_client *r1[] = {resp}, *r2[] = {req};
    await_interest(req, "svc.echo", r1, 1);
    await_interest(resp, "_INBOX.r1", r2, 1);

    SEND(req, "{\"op\":\"pub\",\"topic\":\"svc.echo\",\"data\":{\"q\":7},"
              "\"reply\":\"_INBOX.r1\"}\n");
    cJSON *j = next_msg(resp, WAIT_MS);
    assert_non_null(j);
    assert_string_equal(sbt_str(j, "reply"), "_INBOX.r1");
    cJSON_Delete(j);
    pub(resp, "_INBOX.r1", "{\"a\":7}");
    expect_msg(req, "_INBOX.r1", "{\"a\":7}");
}

static void test_echo_false_across_nodes(void **state)
{
    fx *f = *state;
    sbt_client *quiet = client(f, 0), *peer = client(f, 1);
    sbt_client *member = client(f, 1);
    assert_true(sbt_request_ok(
        quiet, "{\"op\":\"connect\",\"echo\":false,\"id\":1}", WAIT_MS));
    sub(quiet, "e.t", NULL);
    sub(quiet, "e.t", "eg"); /* and a member of a group, with `member` */
    sub(peer, "e.t", NULL);
    sub(member, "e.t", "eg");
    sbt_client *probe = client(f, 2);
    sbt_client *all[] = {quiet, peer};
    await_interest(probe, "e.t", all, 2);

    for (int i = 0; i < 20; i++) {
        char d[16];
        snprintf(d, sizeof(d), "%d", i);
        pub(quiet, "e.t", d);
    }
    for (int i = 0; i < 20; i++) {
        char d[16];
        snprintf(d, sizeof(d), "%d", i);
        expect_msg(peer, "e.t", d);
    }
    /* `peer` publishes after it got them all: the marker reaches `quiet`
     * after anything of its own could have. */
    pub(peer, "e.t", "\"marker\"");
    expect_msg(quiet, "e.t", "\"marker\"");
    assert_true(sbt_quiet(quiet, 300));
}

static void test_no_duplicates_same_node(void **state)
{
    fx *f = *state;
    sbt_client *p = client(f, 0);
    sbt_client *s1 = client(f, 0), *s2 = client(f, 0), *s3 = client(f, 0);
    sbt_client *r = client(f, 1); /* overlapping patterns on another node */
    sub(s1, "d.*", NULL);
    sub(s2, "d.>", NULL);
    sub(s3, "d.*", NULL);
    sub(s3, "d.>", NULL);
    sub(r, "d.*", NULL);
    sub(r, "d.>", NULL);
    sbt_client *all[] = {s1, s2, s3, r};
    await_interest(p, "d.x", all, 4);
    for (int i = 0; i < 100; i++) {
        char d[16];
        snprintf(d, sizeof(d), "%d", i);
        pub(p, "d.x", d);
    }
    pub(p, "d.end", "\"marker\"");
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 100; i++) {
            char d[16];
            snprintf(d, sizeof(d), "%d", i);
            expect_msg(all[k], "d.x", d);
        }
        expect_msg(all[k], "d.end", "\"marker\"");
    }
}

static void test_raw_nats_client(void **state)
{
    fx *f = *state;
    sbt_client *s = client(f, 0), *p = client(f, 2);
    sbt_client raw;
    nats_connect(&raw, nats[1].port);
    sub(s, "raw.in", NULL);
    nats_send(&raw, "SUB sockbus.raw.out 1\r\nPING\r\n");

    /* NATS -> sockbus: probe until the sockbus subscriber has one. */
    long long deadline = sbt_now_ms() + PROBE_MS;
    for (int k = 0;; k++) {
        assert_true(sbt_now_ms() < deadline);
        char probe[32];
        snprintf(probe, sizeof(probe), "{\"probe\":%d}", k);
        nats_pub(&raw, "sockbus.raw.in", probe);
        char *line = sbt_read_line(s, 20);
        bool got = line != NULL && strstr(line, "\"probe\"") != NULL;
        free(line);
        if (got)
            break;
    }
    nats_pub(&raw, "sockbus.raw.in", "{\"id\":1}");
    expect_msg(s, "raw.in", "{\"id\":1}");

    /* sockbus -> NATS: the payload is the data JSON text. */
    char *subj = NULL, *payload = NULL;
    deadline = sbt_now_ms() + PROBE_MS;
    for (int k = 0;; k++) {
        assert_true(sbt_now_ms() < deadline);
        char probe[32];
        snprintf(probe, sizeof(probe), "{\"probe\":%d}", k);
        pub(p, "raw.out", probe);
        if (nats_next(&raw, 20, &subj, &payload)) {
            free(subj);
            free(payload);
            break;
        }
    }
    pub(p, "raw.out", "{\"k\":\"v\",\"n\":[1,2]}");
    for (;;) {
        assert_true(nats_next(&raw, WAIT_MS, &subj, &payload));
        bool probe = strstr(payload, "probe") != NULL;
        if (!probe) {
            assert_string_equal(subj, "sockbus.raw.out");
            assert_string_equal(payload, "{\"k\":\"v\",\"n\":[1,2]}");
        }
        free(subj);
        free(payload);
        if (!probe)
            break;
    }
    sbt_close(&raw);
}

static void test_invalid_from_nats(void **state)
{
    fx *f = *state;
    sbt_client *s = client(f, 1);
    sbt_client raw;
    nats_connect(&raw, nats[0].port);
    sub(s, "bad.>", NULL);
    long long deadline = sbt_now_ms() + PROBE_MS;
    for (int k = 0;; k++) {
        assert_true(sbt_now_ms() < deadline);
        nats_pub(&raw, "sockbus.bad.p", "{\"probe\":1}");
        char *line = sbt_read_line(s, 20);
        bool got = line != NULL;
        free(line);
        if (got)
            break;
    }
    cJSON *before = cluster_stats(s);
    double invalid0 = sbt_num(before, "invalid");
    cJSON_Delete(before);

    /* Not JSON; JSON too large for --max-frame 65536; then valid. */
    nats_pub(&raw, "sockbus.bad.t", "not json");
    nats_pub(&raw, "sockbus.bad.t", "{\"a\":1");
    char *big = malloc(70010);
    assert_non_null(big);
    big[0] = '"';
    memset(big + 1, 'x', 70000);
    strcpy(big + 70001, "\"");
    nats_pub(&raw, "sockbus.bad.t", big);
    free(big);
    nats_pub(&raw, "sockbus.bad.t", "{\"ok\":1}");
    expect_msg(s, "bad.t", "{\"ok\":1}");

    cJSON *after = cluster_stats(s);
    assert_true(sbt_num(after, "invalid") >= invalid0 + 3);
    assert_string_equal(sbt_str(after, "state"), "connected");
    assert_true(sbt_num(after, "subscriptions") >= 1);
    assert_true(sbt_num(after, "msgs_received") >= 1);
    cJSON_Delete(after);
    sbt_close(&raw);
}

static void test_stats_and_greeting(void **state)
{
    fx *f = *state;
    sbt_client c;
    cJSON *info = sbt_connect_info(&c, node[1].port);
    assert_non_null(info);
    assert_string_equal(sbt_str(info, "node"), "n2");
    cJSON_Delete(info);
    cJSON *cl = cluster_stats(&c);
    assert_string_equal(sbt_str(cl, "node"), "n2");
    char want[64];
    snprintf(want, sizeof(want), "nats://127.0.0.1:%d", nats[1].port);
    assert_string_equal(sbt_str(cl, "server"), want);
    const char *counters[] = {"msgs_sent",      "bytes_sent", "msgs_received",
                              "bytes_received", "dropped",    "invalid",
                              "subscriptions"};
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        assert_true(sbt_num(cl, counters[i]) >= 0);
    cJSON_Delete(cl);
    sbt_close(&c);
    (void)f;
}

/* Wait until node `i` reports cluster state `want`. */
static void await_state(sbt_client *c, const char *want)
{
    long long deadline = sbt_now_ms() + PROBE_MS;
    for (;;) {
        cJSON *cl = cluster_stats(c);
        bool ok = strcmp(sbt_str(cl, "state"), want) == 0;
        cJSON_Delete(cl);
        if (ok)
            return;
        if (sbt_now_ms() > deadline)
            fail_msg("cluster state never became %s", want);
        poll(NULL, 0, 50); /* bounded retry: reconnects take a moment */
    }
}

static void test_nats_server_dies(void **state)
{
    fx *f = *state;
    sbt_client *p = client(f, 0), *local = client(f, 0), *far = client(f, 1);
    sbt_client *back = client(f, 0), *from = client(f, 2);
    sub(local, "f.t", NULL);
    sub(far, "f.t", NULL);
    sub(back, "f.back", NULL);
    sbt_client *both[] = {local, far}, *b[] = {back};
    await_interest(p, "f.t", both, 2);
    await_interest(from, "f.back", b, 1);

    nats_kill(0); /* node 1's NATS server */

    /* Local delivery never stops. */
    pub(p, "f.t", "\"local\"");
    expect_msg(local, "f.t", "\"local\"");

    /* Node 1 reconnects to another server; cross-node delivery resumes
     * both ways (its interest is sent again on reconnect). */
    await_state(p, "connected");
    await_interest(p, "f.t", &far, 1);
    await_interest(from, "f.back", b, 1);
    pub(p, "f.t", "\"after\"");
    expect_msg(far, "f.t", "\"after\"");

    cJSON *cl = cluster_stats(p);
    char dead[64];
    snprintf(dead, sizeof(dead), "nats://127.0.0.1:%d", nats[0].port);
    assert_string_not_equal(sbt_str(cl, "server"), dead);
    cJSON_Delete(cl);
}

static void test_node_before_nats(void **state)
{
    fx *f = *state;
    (void)f;
    sbt_server *n4 = &late;
    char url[64];
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", nats[NATS_LATE].port);
    assert_int_equal(start_node(n4, url, "n4"), 0);

    /* It serves local clients while NATS is missing. */
    sbt_client a, b;
    cJSON *info = sbt_connect_info(&a, n4->port);
    assert_non_null(info);
    cJSON_Delete(info);
    info = sbt_connect_info(&b, n4->port);
    assert_non_null(info);
    cJSON_Delete(info);
    sub(&b, "late.t", NULL);
    sub(&b, "late.back", NULL);
    pub(&a, "late.t", "1");
    expect_msg(&b, "late.t", "1");
    cJSON *cl = cluster_stats(&a);
    assert_string_equal(sbt_str(cl, "state"), "disconnected");
    cJSON_Delete(cl);

    /* Its NATS server starts (routed to the others): it joins. */
    char routes[256];
    routes_except(0, routes, sizeof(routes)); /* server 1 is dead */
    assert_int_equal(nats_start(NATS_LATE, routes), 0);
    await_state(&a, "connected");
    sbt_client *far = client(f, 2);
    sub(far, "late.t", NULL);
    sbt_client *fa[] = {far}, *bb[] = {&b};
    await_interest(&a, "late.t", fa, 1);
    sbt_client *p3 = client(f, 2);
    await_interest(p3, "late.back", bb, 1);
    sbt_close(&a);
    sbt_close(&b);
    assert_int_equal(sbt_server_stop(n4, SIGTERM, 10000), 0);
}

/* A NATS server that stops reading (SIGSTOP) fills the node's path to
 * NATS: the kernel's socket buffers, libnats' buffer (capped), then the
 * bounded out queue, past which publications are dropped for the cluster
 * and counted. Local subscribers get every message, in order, meanwhile:
 * the bus never waits for NATS. The node's send queues are 64 frames, so
 * the test reads each chunk before it publishes the next. */
static void test_stalled_link(void **state)
{
    (void)state;
    assert_int_equal(nats_start(NATS_STALL, ""), 0);
    char url[64];
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", nats[NATS_STALL].port);
    const char *args[] = {"--cluster",    url,  "--node", "stall",
                          "--send-queue", "64", NULL};
    assert_int_equal(sbt_server_start(&stall, args), 0);
    sbt_client p, loc;
    cJSON *info = sbt_connect_info(&p, stall.port);
    assert_non_null(info);
    cJSON_Delete(info);
    info = sbt_connect_info(&loc, stall.port);
    assert_non_null(info);
    cJSON_Delete(info);
    sub(&loc, "st.t", NULL);
    await_state(&p, "connected");

    assert_int_equal(kill(nats[NATS_STALL].pid, SIGSTOP), 0);
    /* 40,000 messages of 1 KiB: more than loopback socket buffers and
     * libnats' 4 MiB can hold. */
    enum { TOTAL = 40000, CHUNK = 32 };
    char pad[1001];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    long long deadline = sbt_now_ms() + 60000;
    for (int i = 0; i < TOTAL; i += CHUNK) {
        for (int k = i; k < i + CHUNK; k++)
            SEND(&p,
                 "{\"op\":\"pub\",\"topic\":\"st.t\",\"data\":[%d,\"%s\"]}\n",
                 k, pad);
        for (int k = i; k < i + CHUNK; k++) {
            cJSON *j = next_msg(&loc, WAIT_MS);
            if (j == NULL)
                fail_msg("local message %d did not arrive", k);
            cJSON *d = cJSON_GetObjectItem(j, "data");
            int got = cJSON_GetArrayItem(d, 0)->valueint;
            cJSON_Delete(j);
            if (got != k)
                fail_msg("local message %d arrived as %d", k, got);
        }
        if (sbt_now_ms() > deadline)
            fail_msg("local delivery slowed down while NATS was stopped");
    }
    cJSON *cl = cluster_stats(&p);
    cJSON *dropped = cJSON_GetObjectItem(cl, "dropped");
    assert_non_null(dropped);
    assert_true(dropped->valuedouble > 0);
    cJSON_Delete(cl);
    /* A graceful stop does not wait for NATS beyond the drain time. */
    sbt_close(&p);
    sbt_close(&loc);
    assert_int_equal(sbt_server_stop(&stall, SIGTERM, 20000), 0);
    nats_kill(NATS_STALL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stats_and_greeting, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cross_node_wildcards, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_order_10000, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_across_nodes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_request_reply_across_nodes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_echo_false_across_nodes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_duplicates_same_node, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_raw_nats_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_from_nats, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nats_server_dies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_before_nats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_link, setup, teardown),
    };
    return cmocka_run_group_tests_name("cluster", tests, group_setup,
                                       group_teardown);
}
