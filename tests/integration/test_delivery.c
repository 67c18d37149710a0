/* test_delivery.c - delivery semantics over real sockets: wildcards, one
 * copy per connection, unsub, queue groups, echo, reply, data relayed byte
 * for byte, ordering, id acknowledgements and stats counters.
 *
 * Nothing here waits for silence. To show that a message does NOT arrive,
 * its publisher then publishes a marker that the subscriber does receive:
 * messages from one connection reach a subscriber in the order they were
 * published, so the unwanted one would have come first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define WAIT_MS 5000
#define MAX_CLIENTS 24

/* The server shared by the tests that do not start their own. */
static sbt_server shared;

typedef struct fx {
    sbt_server own; /* started by setup_own, else unused */
    bool has_own;
    int port;
    sbt_client cl[MAX_CLIENTS];
    int n;
} fx;

/* ---- Fixtures ---------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    return sbt_server_start(&shared, NULL);
}

/* cmocka 1.1.5 does not count a failed group teardown in its result:
 * main() looks at this too. */
static int teardown_failed;

/* Normally test_sigterm_exits_0 has stopped the server already. */
static int group_teardown(void **state)
{
    (void)state;
    if (shared.pid > 0 && sbt_server_stop(&shared, SIGTERM, 10000) != 0)
        teardown_failed = 1;
    return teardown_failed ? -1 : 0;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->port = shared.port;
    *state = f;
    return 0;
}

/* For tests that read absolute counters: a server of their own. */
static int setup_own(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    if (f == NULL || sbt_server_start(&f->own, NULL) < 0) {
        free(f);
        return -1;
    }
    f->has_own = true;
    f->port = f->own.port;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    int rc = 0;
    for (int i = 0; i < f->n; i++)
        sbt_close(&f->cl[i]);
    if (f->has_own && sbt_server_stop(&f->own, SIGTERM, 10000) != 0)
        rc = -1;
    free(f);
    return rc;
}

/* ---- Helpers ----------------------------------------------------------- */

#define SEND(c, ...) assert_int_equal(sbt_sendf((c), __VA_ARGS__), 0)

/* The next line, which must be a valid frame. Caller frees. */
static char *next_line(sbt_client *c)
{
    const char *why;
    char *line = sbt_read_frame_line(c, WAIT_MS, &why);
    if (line == NULL)
        fail_msg("no valid frame within %d ms: %s (eof=%d)", WAIT_MS, why,
                 (int)c->eof);
    return line;
}

/* The next frame, parsed. Caller deletes. */
static cJSON *next_frame(sbt_client *c)
{
    char *line = next_line(c);
    if (line == NULL)
        return NULL;
    cJSON *j = sbt_parse_frame(line);
    free(line);
    return j;
}

/* The next line must be exactly `want`. */
static void expect_line(sbt_client *c, const char *want)
{
    char *got = next_line(c);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "expected: %s\n     got: %s\n", want, got);
        free(got);
        fail_msg("unexpected frame");
    }
    free(got);
}

static void expect_linef(sbt_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void expect_linef(sbt_client *c, const char *fmt, ...)
{
    char want[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    expect_line(c, want);
}

static void expect_msg(sbt_client *c, const char *topic, const char *data)
{
    expect_linef(c, "{\"op\":\"msg\",\"topic\":\"%s\",\"data\":%s}", topic,
                 data);
}

/* The next frame must be an err with `code` and, when `id` is not NULL,
 * that id as raw text; with `id` NULL it must carry none. */
static void expect_err(sbt_client *c, const char *code, const char *id)
{
    char *line = next_line(c);
    cJSON *j = sbt_parse_frame(line);
    const char *op = sbt_str(j, "op"), *got = sbt_str(j, "code");
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(j, "id");
    char want_id[256] = "";
    if (id != NULL)
        snprintf(want_id, sizeof(want_id), "\"id\":%s", id);
    bool ok = op && strcmp(op, "err") == 0 && got && strcmp(got, code) == 0 &&
              sbt_str(j, "msg") != NULL &&
              (id == NULL ? jid == NULL
                          : jid != NULL && strstr(line, want_id) != NULL);
    cJSON_Delete(j);
    if (!ok) {
        fprintf(stderr, "expected err %s with id %s\n     got: %s\n", code,
                id ? id : "(none)", line);
        free(line);
        fail_msg("unexpected frame");
    }
    free(line);
}

/* A new client on the fixture's server, greeting read. */
static sbt_client *client(fx *f)
{
    assert_true(f->n < MAX_CLIENTS);
    sbt_client *c = &f->cl[f->n];
    assert_int_equal(sbt_connect(c, f->port), 0);
    f->n++;
    cJSON *info = next_frame(c);
    assert_string_equal(sbt_str(info, "op"), "info");
    cJSON_Delete(info);
    return c;
}

/* Subscribe and wait for the ok: from then on the subscription is in
 * effect for every publisher (decisions #9). */
static void sub(sbt_client *c, const char *pattern, const char *group)
{
    if (group != NULL)
        SEND(
            c,
            "{\"op\":\"sub\",\"topic\":\"%s\",\"group\":\"%s\",\"id\":\"s\"}\n",
            pattern, group);
    else
        SEND(c, "{\"op\":\"sub\",\"topic\":\"%s\",\"id\":\"s\"}\n", pattern);
    expect_line(c, "{\"op\":\"ok\",\"id\":\"s\"}");
}

static void unsub(sbt_client *c, const char *pattern, const char *group)
{
    if (group != NULL)
        SEND(c,
             "{\"op\":\"unsub\",\"topic\":\"%s\",\"group\":\"%s\",\"id\":\"u\"}"
             "\n",
             pattern, group);
    else
        SEND(c, "{\"op\":\"unsub\",\"topic\":\"%s\",\"id\":\"u\"}\n", pattern);
    expect_line(c, "{\"op\":\"ok\",\"id\":\"u\"}");
}

static void pub(sbt_client *c, const char *topic, const char *data)
{
    SEND(c, "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":%s}\n", topic, data);
}

/* The data of the next frame, which must be a msg on `topic`, as an int. */
static int next_msg_int(sbt_client *c, const char *topic)
{
    cJSON *j = next_frame(c);
    assert_string_equal(sbt_str(j, "op"), "msg");
    assert_string_equal(sbt_str(j, "topic"), topic);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
    assert_true(cJSON_IsNumber(d));
    int v = d->valueint;
    cJSON_Delete(j);
    return v;
}

/* ---- Wildcards --------------------------------------------------------- */

/* Published in this order by one publisher. */
static const char *const wild_topics[] = {
    "orders",        "orders.created",      "orders.eu.created", "orders.eu",
    "other.created", "orders.eu.created.x", "ordersx.created",   "x",
    "order.created",
};
#define N_WILD_TOPICS (sizeof(wild_topics) / sizeof(wild_topics[0]))

/* One row per subscriber: its pattern and, space-separated in publish
 * order, exactly the topics it must receive. The first rows are the
 * examples of the spec's Topics section. */
static const struct wild_row {
    const char *pattern;
    const char *want;
} wild_rows[] = {
    {"orders.*", "orders.created orders.eu"},
    {"orders.>",
     "orders.created orders.eu.created orders.eu orders.eu.created.x"},
    {"orders.*", "orders.created orders.eu"}, /* a second subscriber */
    {"orders", "orders"},
    {"*", "orders x"},
    {">", "orders orders.created orders.eu.created orders.eu other.created "
          "orders.eu.created.x ordersx.created x order.created"},
    {"*.created", "orders.created other.created ordersx.created "
                  "order.created"},
    {"orders.*.created", "orders.eu.created"},
    {"*.*", "orders.created orders.eu other.created ordersx.created "
            "order.created"},
    {"*.>", "orders.created orders.eu.created orders.eu other.created "
            "orders.eu.created.x ordersx.created order.created"},
    {"orders.*.>", "orders.eu.created orders.eu.created.x"},
    {"*.eu.*", "orders.eu.created"},
    {"orders.eu.created", "orders.eu.created"},
    {"nomatch.>", ""},
};
#define N_WILD_ROWS (sizeof(wild_rows) / sizeof(wild_rows[0]))

/* Read `c`'s messages up to the marker "mark" and compare their topics
 * with the row; print the row on failure. */
static void check_wild_row(sbt_client *c, const struct wild_row *row)
{
    char got[1024] = "";
    size_t n = 0;
    for (;;) {
        cJSON *j = next_frame(c);
        const char *op = sbt_str(j, "op");
        const char *topic = sbt_str(j, "topic");
        bool is_mark =
            op && topic && strcmp(op, "msg") == 0 && strcmp(topic, "mark") == 0;
        if (!is_mark)
            n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%s",
                                  n ? " " : "", topic ? topic : "(not msg)");
        cJSON_Delete(j);
        if (is_mark || n >= sizeof(got) - 1)
            break;
    }
    if (strcmp(got, row->want) != 0) {
        fprintf(stderr, "pattern %s\n  want: %s\n   got: %s\n", row->pattern,
                row->want, got);
        fail_msg("wildcard row %s", row->pattern);
    }
}

static void test_wildcards_table(void **state)
{
    fx *f = *state;
    sbt_client *subs[N_WILD_ROWS];
    for (size_t i = 0; i < N_WILD_ROWS; i++) {
        subs[i] = client(f);
        sub(subs[i], wild_rows[i].pattern, NULL);
        sub(subs[i], "mark", NULL);
    }
    sbt_client *p = client(f);
    for (size_t t = 0; t < N_WILD_TOPICS; t++)
        pub(p, wild_topics[t], "0");
    pub(p, "mark", "1");
    for (size_t i = 0; i < N_WILD_ROWS; i++)
        check_wild_row(subs[i], &wild_rows[i]);
}

/* ---- One copy per connection, unsub ------------------------------------ */

static void test_one_copy_per_connection(void **state)
{
    fx *f = *state;
    sbt_client *s = client(f);
    sbt_client *p = client(f);
    const char *pats[] = {"a.b", "a.*", "a.>", ">", "*.b", "*.*"};
    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++)
        sub(s, pats[i], NULL);
    sub(s, "a.b", "solo"); /* a group with one member, this connection */
    sub(s, "mark", NULL);
    for (int i = 0; i < 5; i++)
        SEND(p, "{\"op\":\"pub\",\"topic\":\"a.b\",\"data\":%d}\n", i);
    pub(p, "mark", "\"end\"");
    for (int i = 0; i < 5; i++)
        assert_int_equal(next_msg_int(s, "a.b"), i);
    expect_msg(s, "mark", "\"end\"");
}

static void test_unsub_stops_delivery(void **state)
{
    fx *f = *state;
    sbt_client *s = client(f);
    sbt_client *p = client(f);
    sub(s, "u.x", NULL);
    sub(s, "u.mark", NULL);
    pub(p, "u.x", "1");
    expect_msg(s, "u.x", "1");

    unsub(s, "u.x", NULL);
    pub(p, "u.x", "2");
    pub(p, "u.mark", "3");
    expect_msg(s, "u.mark", "3");

    /* Gone now, and never held: not_subscribed, with the frame's id. */
    SEND(s, "{\"op\":\"unsub\",\"topic\":\"u.x\",\"id\":\"again\"}\n");
    expect_err(s, "not_subscribed", "\"again\"");
    SEND(s, "{\"op\":\"unsub\",\"topic\":\"u.never\",\"id\":\"n\"}\n");
    expect_err(s, "not_subscribed", "\"n\"");
    SEND(s, "{\"op\":\"unsub\",\"topic\":\"u.never\"}\n");
    expect_err(s, "not_subscribed", NULL);

    /* A subscription is (pattern, group): the plain one is not it. */
    sub(s, "u.g", "grp");
    SEND(s, "{\"op\":\"unsub\",\"topic\":\"u.g\",\"id\":\"plain\"}\n");
    expect_err(s, "not_subscribed", "\"plain\"");
    SEND(s, "{\"op\":\"unsub\",\"topic\":\"u.g\",\"group\":\"other\","
            "\"id\":\"other\"}\n");
    expect_err(s, "not_subscribed", "\"other\"");
    pub(p, "u.g", "4");
    expect_msg(s, "u.g", "4");
    unsub(s, "u.g", "grp");
    pub(p, "u.g", "5");
    pub(p, "u.mark", "6");
    expect_msg(s, "u.mark", "6");
}

static void test_sub_twice_is_one_subscription(void **state)
{
    fx *f = *state;
    sbt_client *s = client(f);
    sbt_client *p = client(f);
    sub(s, "d.mark", NULL);
    SEND(s, "{\"op\":\"sub\",\"topic\":\"d.x\",\"id\":1}\n");
    expect_line(s, "{\"op\":\"ok\",\"id\":1}");
    SEND(s, "{\"op\":\"sub\",\"topic\":\"d.x\",\"id\":2}\n");
    expect_line(s, "{\"op\":\"ok\",\"id\":2}");
    pub(p, "d.x", "1");
    pub(p, "d.mark", "2");
    expect_msg(s, "d.x", "1");
    expect_msg(s, "d.mark", "2");

    /* One unsub removes it. */
    unsub(s, "d.x", NULL);
    pub(p, "d.x", "3");
    pub(p, "d.mark", "4");
    expect_msg(s, "d.mark", "4");
    SEND(s, "{\"op\":\"unsub\",\"topic\":\"d.x\",\"id\":3}\n");
    expect_err(s, "not_subscribed", "3");
}

/* Topics are compared after their escapes are resolved (decisions #13). */
static void test_escaped_topics(void **state)
{
    fx *f = *state;
    sbt_client *s = client(f), *p = client(f);
    sub(s, "esc.\\u0074", NULL);
    sub(s, "\\u00e9t\\u00e9.*", NULL);
    sub(s, "esc.mark", NULL);
    const char *topics[] = {"esc.t", "esc.\\u0074", "\xc3\xa9t\xc3\xa9.x",
                            "\\u00e9t\\u00e9.y"};
    const char *decoded[] = {"esc.t", "esc.t", "\xc3\xa9t\xc3\xa9.x",
                             "\xc3\xa9t\xc3\xa9.y"};
    for (int i = 0; i < 4; i++) {
        SEND(p, "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":%d}\n", topics[i],
             i);
        assert_int_equal(next_msg_int(s, decoded[i]), i);
    }
    /* unsub names the same pattern, however it is spelled. */
    unsub(s, "esc.t", NULL);
    unsub(s, "\xc3\xa9t\xc3\xa9.*", NULL);
    pub(p, "esc.t", "4");
    pub(p, "\xc3\xa9t\xc3\xa9.x", "5");
    pub(p, "esc.mark", "6");
    expect_msg(s, "esc.mark", "6");
}

/* ---- Queue groups ------------------------------------------------------ */

/* Read up to the marker `mark` on `c`, counting each int payload of
 * `topic` in seen[] and checking they come in increasing order. Returns
 * how many arrived. */
static int
collect(sbt_client *c, const char *topic, const char *mark, int *seen, int n)
{
    int count = 0, last = -1;
    for (;;) {
        cJSON *j = next_frame(c);
        assert_string_equal(sbt_str(j, "op"), "msg");
        const char *t = sbt_str(j, "topic");
        assert_non_null(t);
        if (strcmp(t, mark) == 0) {
            cJSON_Delete(j);
            return count;
        }
        assert_string_equal(t, topic);
        int v = (int)sbt_num(j, "data");
        cJSON_Delete(j);
        assert_in_range(v, 0, n - 1);
        assert_true(v > last);
        last = v;
        seen[v]++;
        count++;
    }
}

static void publish_ints(sbt_client *p, const char *topic, int n)
{
    for (int i = 0; i < n; i++)
        SEND(p, "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":%d}\n", topic, i);
}

static void group_round_robin(fx *f, int members, int n)
{
    sbt_client *m[3], *plain = client(f), *p = client(f);
    /* A name of its own: members of earlier tests may not be gone yet. */
    char group[16];
    snprintf(group, sizeof(group), "workers%d", members);
    for (int i = 0; i < members; i++) {
        m[i] = client(f);
        sub(m[i], "q.work", group);
        sub(m[i], "q.mark", NULL);
    }
    sub(plain, "q.work", NULL);
    sub(plain, "q.mark", NULL);
    publish_ints(p, "q.work", n);
    pub(p, "q.mark", "null");

    int seen[64] = {0}, all[64] = {0};
    assert_true(n <= 64);
    for (int i = 0; i < members; i++) {
        int got = collect(m[i], "q.work", "q.mark", seen, n);
        /* Round robin: every member gets the same share. */
        if (got != n / members)
            fail_msg("member %d of %d got %d of %d messages", i, members, got,
                     n);
    }
    for (int i = 0; i < n; i++)
        if (seen[i] != 1)
            fail_msg("message %d reached %d group members", i, seen[i]);
    /* A plain subscriber on the same topic still gets every message. */
    assert_int_equal(collect(plain, "q.work", "q.mark", all, n), n);
}

static void test_group_two_members(void **state)
{
    group_round_robin(*state, 2, 20);
}

static void test_group_three_members(void **state)
{
    group_round_robin(*state, 3, 30);
}

/* Two groups on one pattern are independent: each gets every message. */
static void test_groups_independent(void **state)
{
    fx *f = *state;
    sbt_client *a1 = client(f), *a2 = client(f), *b = client(f);
    sbt_client *p = client(f);
    sbt_client *mem[3] = {a1, a2, b};
    for (int i = 0; i < 3; i++) {
        sub(mem[i], "gi.t", i < 2 ? "ga" : "gb");
        sub(mem[i], "gi.mark", NULL);
    }
    publish_ints(p, "gi.t", 10);
    pub(p, "gi.mark", "0");
    int seen_a[10] = {0}, seen_b[10] = {0};
    assert_int_equal(collect(a1, "gi.t", "gi.mark", seen_a, 10), 5);
    assert_int_equal(collect(a2, "gi.t", "gi.mark", seen_a, 10), 5);
    assert_int_equal(collect(b, "gi.t", "gi.mark", seen_b, 10), 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(seen_a[i], 1);
}

/* Decisions #11: a group is its name, across patterns; among the
 * members whose pattern matched, exactly one receives, round robin. */
static void test_group_same_name_different_patterns(void **state)
{
    fx *f = *state;
    sbt_client *a = client(f), *b = client(f), *c = client(f);
    sbt_client *p = client(f);
    sub(a, "x.*", "g");
    sub(b, "x.>", "g");
    sub(c, "y.a", "g");
    sbt_client *mem[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        sub(mem[i], "xm", NULL);

    /* Only b's pattern matches x.a.b, only c's y.a. */
    enum { K = 6 };
    int sa[2 * K] = {0}, sb[2 * K] = {0}, sc[2 * K] = {0};
    publish_ints(p, "x.a.b", K);
    publish_ints(p, "y.a", K);
    pub(p, "xm", "0");
    assert_int_equal(collect(a, "x.a.b", "xm", sa, K), 0);
    assert_int_equal(collect(b, "x.a.b", "xm", sb, K), K);
    assert_int_equal(collect(c, "y.a", "xm", sc, K), K);

    /* Both a's and b's match x.a: each message once, alternating. */
    memset(sa, 0, sizeof(sa));
    memset(sb, 0, sizeof(sb));
    publish_ints(p, "x.a", 2 * K);
    pub(p, "xm", "1");
    int ga = collect(a, "x.a", "xm", sa, 2 * K);
    int gb = collect(b, "x.a", "xm", sb, 2 * K);
    assert_int_equal(collect(c, "x.a", "xm", sc, 2 * K), 0);
    assert_int_equal(ga, K);
    assert_int_equal(gb, K);
    for (int i = 0; i < 2 * K; i++)
        assert_int_equal(sa[i] + sb[i], 1);
}

/* ---- Echo -------------------------------------------------------------- */

static void test_echo_default_on(void **state)
{
    fx *f = *state;
    sbt_client *p = client(f);
    sub(p, "echo.on", NULL);
    pub(p, "echo.on", "{\"self\":true}");
    expect_msg(p, "echo.on", "{\"self\":true}");
}

static void test_echo_false(void **state)
{
    fx *f = *state;
    sbt_client *p = client(f), *q = client(f);
    SEND(p, "{\"op\":\"connect\",\"name\":\"quiet\",\"echo\":false,"
            "\"id\":\"c\"}\n");
    expect_line(p, "{\"op\":\"ok\",\"id\":\"c\"}");
    sub(p, "echo.off", NULL);
    sub(q, "echo.off", NULL);
    pub(p, "echo.off", "1");
    /* q having it means the publication has been routed. */
    expect_msg(q, "echo.off", "1");

    /* Barrier on p's own path: turn echo back on and publish again; had
     * the first publication reached p, it would come first. */
    SEND(p, "{\"op\":\"connect\",\"echo\":true,\"id\":\"c2\"}\n");
    expect_line(p, "{\"op\":\"ok\",\"id\":\"c2\"}");
    pub(p, "echo.off", "2");
    expect_msg(p, "echo.off", "2");
    expect_msg(q, "echo.off", "2");
}

/* Decisions #11: a member that is the publisher with echo:false is
 * skipped for the next member. */
static void test_echo_false_group_member_skipped(void **state)
{
    fx *f = *state;
    sbt_client *p = client(f), *q = client(f);
    SEND(p, "{\"op\":\"connect\",\"echo\":false,\"id\":0}\n");
    expect_line(p, "{\"op\":\"ok\",\"id\":0}");
    sub(p, "echo.g", "eg");
    sub(q, "echo.g", "eg");
    sub(p, "echo.gm", NULL);
    sub(q, "echo.gm", NULL);
    int seen[8] = {0};
    publish_ints(p, "echo.g", 8);
    pub(p, "echo.gm", "0");
    assert_int_equal(collect(q, "echo.g", "echo.gm", seen, 8), 8);

    SEND(p, "{\"op\":\"connect\",\"echo\":true,\"id\":1}\n");
    expect_line(p, "{\"op\":\"ok\",\"id\":1}");
    pub(p, "echo.gm", "1");
    expect_msg(p, "echo.gm", "1");
}

/* ---- Reply ------------------------------------------------------------- */

static void test_pub_with_reply(void **state)
{
    fx *f = *state;
    sbt_client *req = client(f), *svc = client(f);
    sub(req, "_INBOX.r1", NULL);
    sub(svc, "svc.time", NULL);

    SEND(req, "{\"op\":\"pub\",\"topic\":\"svc.time\",\"data\":{\"q\":\"now\"},"
              "\"reply\":\"_INBOX.r1\"}\n");
    cJSON *m = next_frame(svc);
    assert_string_equal(sbt_str(m, "op"), "msg");
    assert_string_equal(sbt_str(m, "topic"), "svc.time");
    assert_string_equal(sbt_str(m, "reply"), "_INBOX.r1");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(m, "data");
    assert_string_equal(sbt_str(q, "q"), "now");

    /* The service answers on the reply topic it was given. */
    SEND(svc, "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":{\"t\":42}}\n",
         sbt_str(m, "reply"));
    cJSON_Delete(m);
    expect_msg(req, "_INBOX.r1", "{\"t\":42}");

    /* reply:null is no reply (decisions #2): the msg has none either. */
    SEND(req, "{\"op\":\"pub\",\"topic\":\"svc.time\",\"reply\":null,"
              "\"data\":1}\n");
    expect_msg(svc, "svc.time", "1");

    /* The raw form of a msg with reply (decisions #18). */
    SEND(req, "{\"op\":\"pub\",\"topic\":\"svc.time\",\"data\":[2],"
              "\"reply\":\"_INBOX.r1.x\"}\n");
    expect_line(svc, "{\"op\":\"msg\",\"topic\":\"svc.time\",\"data\":[2],"
                     "\"reply\":\"_INBOX.r1.x\"}");
}

/* ---- Data relayed byte for byte ---------------------------------------- */

static const char *const data_rows[] = {
    "{}",
    "[]",
    "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\",\"e\":{\"f\":{\"g\":[]}}}",
    "[1,\"two\",3.0,-4e-2,true,false,null,[],{}]",
    "\"\"",
    "\"plain\"",
    "\"q\\\"b\\\\s\\/n\\b\\f\\n\\r\\t\\u0041\\u00e9\\ud83d\\ude00\\u0000\"",
    "\"h\xc3\xa9llo w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\"",
    "0",
    "-0",
    "42",
    "-17",
    "1.50e+3",
    "1.5E-3",
    "-0.000",
    "2e10",
    "12345678901234567890123456789",
    "true",
    "false",
    "null",
    "{ \"spaced\" : [ 1 , 2 ] }",
    "{\"op\":\"pub\",\"topic\":\"not.this\",\"id\":7}",
};

static void test_data_relayed_byte_for_byte(void **state)
{
    fx *f = *state;
    sbt_client *s = client(f), *p = client(f);
    sub(s, "data.t", NULL);
    for (size_t i = 0; i < sizeof(data_rows) / sizeof(data_rows[0]); i++) {
        pub(p, "data.t", data_rows[i]);
        expect_msg(s, "data.t", data_rows[i]);
    }
    /* Absent data is null (decisions #18). */
    SEND(p, "{\"op\":\"pub\",\"topic\":\"data.t\"}\n");
    expect_msg(s, "data.t", "null");
    /* data before topic, unknown fields ignored. */
    SEND(p,
         "{\"data\":[\"x\"],\"zz\":1,\"op\":\"pub\",\"topic\":\"data.t\"}\n");
    expect_msg(s, "data.t", "[\"x\"]");
}

/* ---- Ordering ---------------------------------------------------------- */

static void test_ordering_10000_two_subscribers(void **state)
{
    fx *f = *state;
    enum { N = 10000 };
    sbt_client *s1 = client(f), *s2 = client(f), *p = client(f);
    sub(s1, "seq", NULL);
    sub(s2, "seq", NULL);
    size_t cap = (size_t)N * 48, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int i = 0; i < N; i++)
        n += (size_t)snprintf(
            buf + n, cap - n,
            "{\"op\":\"pub\",\"topic\":\"seq\",\"data\":%d}\n", i);
    int rc = sbt_send(p, buf, n); /* one big write, pipelined */
    free(buf);
    assert_int_equal(rc, 0);
    sbt_client *subs[2] = {s1, s2};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < N; i++) {
            int v = next_msg_int(subs[k], "seq");
            if (v != i)
                fail_msg("subscriber %d: message %d is %d", k, i, v);
        }
}

static void test_ordering_three_publishers(void **state)
{
    fx *f = *state;
    enum { N = 3000, CHUNK = 250, NP = 3 };
    sbt_client *s = client(f), *p[NP];
    sub(s, "mp.>", NULL);
    for (int k = 0; k < NP; k++)
        p[k] = client(f);
    char *buf = malloc(CHUNK * 64);
    assert_non_null(buf);
    for (int base = 0; base < N; base += CHUNK)
        for (int k = 0; k < NP; k++) {
            size_t n = 0;
            for (int i = base; i < base + CHUNK; i++)
                n += (size_t)snprintf(
                    buf + n, CHUNK * 64 - n,
                    "{\"op\":\"pub\",\"topic\":\"mp.%d\",\"data\":%d}\n", k, i);
            if (sbt_send(p[k], buf, n) != 0) {
                free(buf);
                fail_msg("send failed");
            }
        }
    free(buf);
    int next[NP] = {0};
    for (int i = 0; i < N * NP; i++) {
        cJSON *j = next_frame(s);
        const char *t = sbt_str(j, "topic");
        assert_non_null(t);
        assert_true(strncmp(t, "mp.", 3) == 0);
        int k = atoi(t + 3), v = (int)sbt_num(j, "data");
        cJSON_Delete(j);
        assert_in_range(k, 0, NP - 1);
        if (v != next[k])
            fail_msg("publisher %d: expected %d, got %d", k, next[k], v);
        next[k]++;
    }
    for (int k = 0; k < NP; k++)
        assert_int_equal(next[k], N);
}

/* ---- id acknowledgements ----------------------------------------------- */

/* ids as sent, echoed byte for byte (decisions #7). */
static const char *const ids[] = {
    "1",
    "0",
    "-7",
    "1.50",
    "1e3",
    "-0.0",
    "1.5E-7",
    "1e400",
    "-1E-400",
    "123456789012345678901234567890",
    "\"a\"",
    "\"\"",
    "\"x\\\"y\\\\z\"",
    "\"\\u00e9\"",
    "\"\xc3\xa9\"",
};

/* One row per op: the frame without its id (it ends before the closing
 * brace), and the answer that comes before the ok, if any. */
static const struct id_row {
    const char *frame;
    const char *answer_op;
} id_rows[] = {
    {"{\"op\":\"connect\",\"name\":\"ids\"", NULL},
    {"{\"op\":\"sub\",\"topic\":\"ids.t\"", NULL},
    {"{\"op\":\"unsub\",\"topic\":\"ids.t\"", NULL},
    {"{\"op\":\"sub\",\"topic\":\"ids.g\",\"group\":\"g\"", NULL},
    {"{\"op\":\"unsub\",\"topic\":\"ids.g\",\"group\":\"g\"", NULL},
    {"{\"op\":\"pub\",\"topic\":\"ids.none\",\"data\":1", NULL},
    {"{\"op\":\"ping\"", "pong"},
    {"{\"op\":\"pong\"", NULL},
    {"{\"op\":\"stats\"", "stats"},
};

static void test_id_ack_every_op(void **state)
{
    fx *f = *state;
    sbt_client *c = client(f);
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        for (size_t r = 0; r < sizeof(id_rows) / sizeof(id_rows[0]); r++) {
            const struct id_row *row = &id_rows[r];
            SEND(c, "%s,\"id\":%s}\n", row->frame, ids[i]);
            if (row->answer_op != NULL) {
                cJSON *a = next_frame(c);
                if (strcmp(sbt_str(a, "op"), row->answer_op) != 0)
                    fail_msg("%s,\"id\":%s}: expected %s first", row->frame,
                             ids[i], row->answer_op);
                cJSON_Delete(a);
            }
            char want[256];
            snprintf(want, sizeof(want), "{\"op\":\"ok\",\"id\":%s}", ids[i]);
            char *got = next_line(c);
            if (strcmp(got, want) != 0) {
                fprintf(stderr, "frame %s,\"id\":%s}\n  want %s\n   got %s\n",
                        row->frame, ids[i], want, got);
                free(got);
                fail_msg("id not echoed exactly");
            }
            free(got);
        }
    /* Spaces around the id do not become part of it. */
    SEND(c, "{\"op\":\"ping\", \"id\" : 1.50 }\n");
    expect_line(c, "{\"op\":\"pong\"}");
    expect_line(c, "{\"op\":\"ok\",\"id\":1.50}");
    /* Without id, success is silent: the pong is the next frame. */
    SEND(c, "{\"op\":\"sub\",\"topic\":\"ids.silent\"}\n");
    SEND(c, "{\"op\":\"ping\"}\n");
    expect_line(c, "{\"op\":\"pong\"}");
}

/* ---- Stats ------------------------------------------------------------- */

static const char *const stats_fields[] = {
    "connections", "subscriptions",  "msgs_in",   "msgs_out", "bytes_in",
    "bytes_out",   "slow_consumers", "uptime_ms", "dropped",
};
enum { ST_CONN, ST_SUBS, ST_IN, ST_OUT, ST_BIN, ST_BOUT, ST_N = 9 };

static void read_stats(sbt_client *c, double v[ST_N])
{
    SEND(c, "{\"op\":\"stats\"}\n");
    cJSON *j = next_frame(c);
    assert_string_equal(sbt_str(j, "op"), "stats");
    for (int i = 0; i < ST_N; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, stats_fields[i]);
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 ||
            x->valuedouble != (double)(long long)x->valuedouble)
            fail_msg("stats field %s missing or not a count", stats_fields[i]);
        v[i] = x->valuedouble;
    }
    cJSON_Delete(j);
}

/* Ask for stats until connections, subscriptions, msgs_in and msgs_out
 * are base + want[0..3], within the usual bound: counters move after the
 * fact (msgs_out once a write returns, connections once the worker has
 * noticed a close), so a subscriber may see a message before its count. */
static void wait_deltas(sbt_client *o,
                        const double base[ST_N],
                        const double want[4],
                        double v[ST_N])
{
    static const char *const names[4] = {"connections", "subscriptions",
                                         "msgs_in", "msgs_out"};
    long long deadline = sbt_now_ms() + WAIT_MS;
    for (;;) {
        read_stats(o, v);
        bool all = true;
        for (int i = 0; i < 4; i++)
            all = all && v[i] - base[i] == want[i];
        if (all)
            return;
        if (sbt_now_ms() > deadline) {
            for (int i = 0; i < 4; i++)
                fprintf(stderr, "%s %+g (want %+g)\n", names[i], v[i] - base[i],
                        want[i]);
            fail_msg("stats did not reach the expected deltas");
        }
    }
}

static void test_stats_counters(void **state)
{
    fx *f = *state;
    sbt_client *o = client(f);
    double b[ST_N], v[ST_N];
    read_stats(o, b);

    sbt_client *s1 = client(f), *s2 = client(f), *p = client(f);
    sub(s1, "st.x", NULL);
    sub(s1, "st.>", NULL); /* overlaps: still one copy */
    sub(s2, "st.x", NULL);
    sub(s2, "st.x", NULL); /* twice is one subscription */
    wait_deltas(o, b, (const double[4]){3, 3, 0, 0}, v);

    enum { K = 10 };
    pub(p, "sx.none", "0"); /* accepted, delivered to nobody */
    publish_ints(p, "st.x", K);
    for (int i = 0; i < K; i++) {
        assert_int_equal(next_msg_int(s1, "st.x"), i);
        assert_int_equal(next_msg_int(s2, "st.x"), i);
    }
    wait_deltas(o, b, (const double[4]){3, 3, K + 1, 2 * K}, v);
    assert_true(v[ST_BIN] > b[ST_BIN]);
    assert_true(v[ST_BOUT] > b[ST_BOUT]);

    unsub(s1, "st.>", NULL);
    wait_deltas(o, b, (const double[4]){3, 2, K + 1, 2 * K}, v);

    /* Closing s2 drops its connection and its subscription. */
    sbt_close(s2);
    wait_deltas(o, b, (const double[4]){2, 1, K + 1, 2 * K}, v);
    sbt_close(s1);
    sbt_close(p);
    wait_deltas(o, b, (const double[4]){0, 0, K + 1, 2 * K}, v);
}

/* After everything above, the server stops cleanly on SIGTERM. */
static void test_sigterm_exits_0(void **state)
{
    (void)state;
    assert_int_equal(sbt_server_stop(&shared, SIGTERM, 10000), 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_wildcards_table),
        T(test_one_copy_per_connection),
        T(test_unsub_stops_delivery),
        T(test_sub_twice_is_one_subscription),
        T(test_escaped_topics),
        T(test_group_two_members),
        T(test_group_three_members),
        T(test_groups_independent),
        T(test_group_same_name_different_patterns),
        T(test_echo_default_on),
        T(test_echo_false),
        T(test_echo_false_group_member_skipped),
        T(test_pub_with_reply),
        T(test_data_relayed_byte_for_byte),
        T(test_ordering_10000_two_subscribers),
        T(test_ordering_three_publishers),
        T(test_id_ack_every_op),
        cmocka_unit_test_setup_teardown(test_stats_counters, setup_own,
                                        teardown),
        T(test_sigterm_exits_0), /* last: it stops the server */
    };
#undef T
    int failed = cmocka_run_group_tests_name("delivery", tests, group_setup,
                                             group_teardown);
    return failed > 0 ? failed : teardown_failed;
}
