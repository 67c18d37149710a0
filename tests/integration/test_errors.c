/* test_errors.c - every error one client can trigger, table-driven where
 * the spec is a table.
 *
 * After each bad frame the test checks that the connection still works
 * (ping gets pong, a publication reaches another client) and that a
 * bystander connected before the errors saw nothing but what it asked
 * for. Every line from the server is parsed strictly: valid JSON, one
 * object, clean UTF-8, nothing after it. */
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
#define SMALL_FRAME 1024
#define SMALL_SUBS 5
#define MAX_CLIENTS 8

/* A server with the defaults, and one with small limits. */
static sbt_server dflt, small;

typedef struct fx {
    sbt_client cl[MAX_CLIENTS];
    int n;
} fx;

/* ---- Fixtures ---------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    const char *args[] = {"--max-frame", "1024", "--max-subs", "5", NULL};
    if (sbt_server_start(&dflt, NULL) < 0)
        return -1;
    if (sbt_server_start(&small, args) < 0) {
        sbt_server_stop(&dflt, SIGTERM, 10000);
        return -1;
    }
    return 0;
}

/* cmocka 1.1.5 does not count a failed group teardown in its result:
 * main() looks at this too. */
static int teardown_failed;

/* Normally test_sigterm_exits_0 has stopped the servers already. */
static int group_teardown(void **state)
{
    (void)state;
    sbt_server *s[2] = {&dflt, &small};
    for (int i = 0; i < 2; i++)
        if (s[i]->pid > 0 && sbt_server_stop(s[i], SIGTERM, 10000) != 0)
            teardown_failed = 1;
    return teardown_failed ? -1 : 0;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    *state = f;
    return f == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    for (int i = 0; i < f->n; i++)
        sbt_close(&f->cl[i]);
    free(f);
    return 0;
}

/* ---- Reading strictly -------------------------------------------------- */

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

/* Print a frame with its bytes outside printable ASCII escaped, at most
 * 200 bytes of it. */
static void print_frame(const char *what, const char *p, size_t n)
{
    fprintf(stderr, "%s (%zu bytes): ", what, n);
    for (size_t i = 0; i < n && i < 200; i++) {
        unsigned char b = (unsigned char)p[i];
        if (b >= 0x20 && b < 0x7f)
            fputc(b, stderr);
        else
            fprintf(stderr, "\\x%02x", b);
    }
    fputs(n > 200 ? "...\n" : "\n", stderr);
}

/* Any id is fine (the spec leaves it open). */
static const char ANY_ID[] = "*";

/* True when `line` is an err with `code`, a msg, and the id: `id` NULL
 * means none, else the raw text that must follow "id": (the string
 * ANY_ID: do not look). */
static bool is_err(const char *line, const char *code, const char *id)
{
    cJSON *j = sbt_parse_frame(line);
    if (j == NULL)
        return false;
    const char *op = sbt_str(j, "op"), *got = sbt_str(j, "code");
    bool has_id = cJSON_GetObjectItemCaseSensitive(j, "id") != NULL;
    bool ok = strcmp(op, "err") == 0 && got != NULL && strcmp(got, code) == 0 &&
              sbt_str(j, "msg") != NULL;
    cJSON_Delete(j);
    if (id == ANY_ID)
        return ok;
    if (id == NULL)
        return ok && !has_id;
    char want[512];
    snprintf(want, sizeof(want), "\"id\":%s", id);
    return ok && has_id && strstr(line, want) != NULL;
}

static void expect_err(sbt_client *c, const char *code, const char *id)
{
    char *line = next_line(c);
    if (!is_err(line, code, id)) {
        fprintf(stderr, "expected err %s, id %s\n     got: %s\n", code,
                id ? id : "(none)", line);
        free(line);
        fail_msg("unexpected frame");
    }
    free(line);
}

/* ---- Clients ----------------------------------------------------------- */

static sbt_client *client(fx *f, int port)
{
    assert_true(f->n < MAX_CLIENTS);
    sbt_client *c = &f->cl[f->n];
    assert_int_equal(sbt_connect(c, port), 0);
    f->n++;
    char *info = next_line(c);
    bool ok = strncmp(info, "{\"op\":\"info\"", 12) == 0;
    free(info);
    assert_true(ok);
    return c;
}

/* A bystander subscribed to "by.check", then the client under test. */
static void pair(fx *f, int port, sbt_client **c, sbt_client **by)
{
    *by = client(f, port);
    SEND(*by, "{\"op\":\"sub\",\"topic\":\"by.check\",\"id\":\"by\"}\n");
    expect_line(*by, "{\"op\":\"ok\",\"id\":\"by\"}");
    *c = client(f, port);
}

/* The connection still works and the bystander saw nothing it did not
 * ask for: its next frame is c's publication. */
static void check_alive(sbt_client *c, sbt_client *by)
{
    static int seq;
    SEND(c, "{\"op\":\"ping\",\"id\":\"alive\"}\n");
    expect_line(c, "{\"op\":\"pong\"}");
    expect_line(c, "{\"op\":\"ok\",\"id\":\"alive\"}");
    int n = ++seq;
    SEND(c, "{\"op\":\"pub\",\"topic\":\"by.check\",\"data\":%d}\n", n);
    char want[128];
    snprintf(want, sizeof(want),
             "{\"op\":\"msg\",\"topic\":\"by.check\",\"data\":%d}", n);
    expect_line(by, want);
    SEND(by, "{\"op\":\"ping\"}\n");
    expect_line(by, "{\"op\":\"pong\"}");
}

/* Skip whatever the server still had to say after a failed row: read up
 * to the ok of a fresh ping. */
static void resync(sbt_client *c)
{
    SEND(c, "{\"op\":\"ping\",\"id\":\"resync\"}\n");
    for (;;) {
        char *line = next_line(c);
        bool done = strcmp(line, "{\"op\":\"ok\",\"id\":\"resync\"}") == 0;
        free(line);
        if (done)
            return;
    }
}

/* Send one frame (plus "\n"); true when the next frame is one err with
 * `code` and `id` (see is_err). On failure, print the row and resync. */
static bool err_frame_ok(sbt_client *c,
                         const char *frame,
                         size_t len,
                         const char *code,
                         const char *id)
{
    assert_int_equal(sbt_send(c, frame, len), 0);
    assert_int_equal(sbt_sends(c, "\n"), 0);
    char *line = sbt_read_line(c, WAIT_MS);
    bool ok = line != NULL && is_err(line, code, id);
    if (!ok) {
        print_frame("frame", frame, len);
        fprintf(stderr, "  want: err %s, id %s\n   got: %s\n", code,
                id ? id : "(none)", line ? line : "(nothing)");
        if (line != NULL)
            resync(c);
    }
    free(line);
    return ok;
}

/* The same, fatal; then check that all is still well. */
static void assert_err_frame(sbt_client *c,
                             sbt_client *by,
                             const char *frame,
                             size_t len,
                             const char *code,
                             const char *id)
{
    if (!err_frame_ok(c, frame, len, code, id))
        fail_msg("error row failed");
    check_alive(c, by);
}

typedef struct err_row {
    const char *frame;
    const char *code;
    const char *id; /* raw text, NULL for none, ANY_ID */
} err_row;

/* Every row is tried (and each failure printed) before the test fails. */
static void run_rows(fx *f, int port, const err_row *rows, size_t n)
{
    sbt_client *c, *by;
    pair(f, port, &c, &by);
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!err_frame_ok(c, rows[i].frame, strlen(rows[i].frame), rows[i].code,
                          rows[i].id))
            failed++;
        check_alive(c, by);
    }
    if (failed > 0)
        fail_msg("%zu of %zu rows failed", failed, n);
}

#define RUN_ROWS(f, port, rows)                                                \
    run_rows((f), (port), (rows), sizeof(rows) / sizeof((rows)[0]))

/* ---- bad_json ---------------------------------------------------------- */

static const err_row bad_json_rows[] = {
    {"not json", "bad_json", NULL},
    {"{", "bad_json", NULL},
    {"}", "bad_json", NULL},
    {"{\"op\":\"ping\"", "bad_json", NULL},
    {"{\"op\":\"ping\",}", "bad_json", NULL},
    {"{\"op\":\"ping\",\"id\":\"x\",}", "bad_json", NULL},
    {"{\"op\" \"ping\"}", "bad_json", NULL},
    {"{\"op\":'ping'}", "bad_json", NULL},
    {"{op:\"ping\"}", "bad_json", NULL},
    {"{\"op\":\"ping\"}}", "bad_json", NULL},
    /* Trailing garbage. */
    {"{\"op\":\"ping\",\"id\":1} x", "bad_json", NULL},
    {"{\"op\":\"ping\"}{\"op\":\"ping\"}", "bad_json", NULL},
    {"{\"op\":\"ping\"},", "bad_json", NULL},
    {"{\"op\":\"ping\"} 1", "bad_json", NULL},
    {"{\"op\":\"ping\"}\r{\"op\":\"ping\"}", "bad_json", NULL},
    /* Only \\r and \\n make an empty line; blanks are no JSON text. */
    {"   ", "bad_json", NULL},
    {"\t", "bad_json", NULL},
    /* Literals and numbers. */
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":tru}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":nul}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":True}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":01}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":1.}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":.5}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":+1}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":1e}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":-}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":NaN}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":Infinity}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":0x10}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":[1,]}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":[1 2]}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":{\"k\"}}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":{1:2}}", "bad_json", NULL},
    /* Strings: escapes and control characters. */
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\\x\"}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\\u12\"}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\\uZZZZ\"}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"a\tb\"}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"a\x01"
     "b\"}",
     "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"open}", "bad_json", NULL},
    /* Surrogates must pair. */
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\\ud800\"}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\\udc00\\ud800\"}", "bad_json",
     NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\\ud800x\"}", "bad_json",
     NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\\ud800\\u0041\"}", "bad_json",
     NULL},
    /* Invalid UTF-8 in a string: stray continuation, bad lead bytes,
     * truncated sequences, overlongs, encoded surrogates, > U+10FFFF. */
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xff\"}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\x80\"}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xc3\"}", "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xe2\x82\"}", "bad_json",
     NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xc0\xaf\"}", "bad_json",
     NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xe0\x80\xaf\"}", "bad_json",
     NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xf0\x80\x80\xaf\"}",
     "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xed\xa0\x80\"}", "bad_json",
     NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xf4\x90\x80\x80\"}",
     "bad_json", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xf8\x88\x80\x80\x80\"}",
     "bad_json", NULL},
    {"{\"op\":\"ping\",\"\xff\":1}", "bad_json", NULL},
    {"{\"op\":\"p\xc3ng\",\"id\":\"u\"}", "bad_json", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a.\xe9\",\"id\":1}", "bad_json", NULL},
    /* A byte order mark is refused (decisions #6). */
    {"\xef\xbb\xbf{\"op\":\"ping\"}", "bad_json", NULL},
    /* Nesting over the limit of 128 (decisions #5). */
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
     "bad_json", NULL},
};

static void test_bad_json_table(void **state)
{
    RUN_ROWS(*state, dflt.port, bad_json_rows);
}

static void test_bad_json_raw_nul(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, dflt.port, &c, &by);
    static const char frame[] =
        "{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"a\0b\"}";
    assert_err_frame(c, by, frame, sizeof(frame) - 1, "bad_json", NULL);
    static const char nul_only[] = "\0";
    assert_err_frame(c, by, nul_only, 1, "bad_json", NULL);
}

/* `open` repeated n times, then `middle`, then `close` n times, wrapped in
 * a pub frame with an id. Caller frees. */
static char *nested(
    const char *open, const char *middle, const char *close, int n, size_t *len)
{
    const char *head = "{\"id\":\"deep\",\"op\":\"pub\",\"topic\":\"d\","
                       "\"data\":";
    size_t lo = strlen(open), lc = strlen(close);
    size_t cap = strlen(head) + (size_t)n * (lo + lc) + strlen(middle) + 2;
    char *s = malloc(cap), *p = s;
    assert_non_null(s);
    p += sprintf(p, "%s", head);
    for (int i = 0; i < n; i++, p += lo)
        memcpy(p, open, lo);
    p += sprintf(p, "%s", middle);
    for (int i = 0; i < n; i++, p += lc)
        memcpy(p, close, lc);
    *p++ = '}';
    *len = (size_t)(p - s);
    return s;
}

static void test_bad_json_deep_nesting(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, dflt.port, &c, &by);
    static const struct {
        const char *open, *middle, *close;
        int depth;
    } rows[] = {
        {"[", "", "]", 10000},        {"[", "", "", 10000},
        {"{\"a\":", "1", "}", 10000}, {"[{\"a\":", "1", "}]", 5000},
        {"[", "", "]", 200},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t len;
        char *s = nested(rows[i].open, rows[i].middle, rows[i].close,
                         rows[i].depth, &len);
        assert_err_frame(c, by, s, len, "bad_json", NULL);
        free(s);
    }
    /* Moderate nesting is fine and relayed as is. */
    SEND(by, "{\"op\":\"sub\",\"topic\":\"d\",\"id\":1}\n");
    expect_line(by, "{\"op\":\"ok\",\"id\":1}");
    size_t len;
    char *s = nested("[", "7", "]", 100, &len);
    assert_int_equal(sbt_send(c, s, len), 0);
    assert_int_equal(sbt_sends(c, "\n"), 0);
    expect_line(c, "{\"op\":\"ok\",\"id\":\"deep\"}");
    const char *data = strstr(s, "\"data\":") + 7;
    int dlen = (int)(len - (size_t)(data - s) - 1);
    char *want = malloc(len + 64);
    assert_non_null(want);
    sprintf(want, "{\"op\":\"msg\",\"topic\":\"d\",\"data\":%.*s}", dlen, data);
    char *got = next_line(by);
    bool same = strcmp(got, want) == 0;
    free(want);
    free(got);
    free(s);
    assert_true(same);
}

/* ---- bad_frame --------------------------------------------------------- */

static const err_row bad_frame_rows[] = {
    /* Valid JSON, not an object. */
    {"[]", "bad_frame", NULL},
    {"[{\"op\":\"ping\"}]", "bad_frame", NULL},
    {"1", "bad_frame", NULL},
    {"-2.5e3", "bad_frame", NULL},
    {"\"ping\"", "bad_frame", NULL},
    {"null", "bad_frame", NULL},
    {"true", "bad_frame", NULL},
    {"false", "bad_frame", NULL},
    /* op missing. */
    {"{}", "bad_frame", NULL},
    {"{\"id\":\"m\"}", "bad_frame", "\"m\""},
    {"{\"topic\":\"a\",\"id\":2}", "bad_frame", "2"},
    {"{\"OP\":\"ping\",\"id\":3}", "bad_frame", "3"},
    /* op not a string. */
    {"{\"op\":1}", "bad_frame", NULL},
    {"{\"op\":null}", "bad_frame", NULL},
    {"{\"op\":true}", "bad_frame", NULL},
    {"{\"op\":false,\"id\":\"f\"}", "bad_frame", "\"f\""},
    {"{\"op\":[\"ping\"],\"id\":4}", "bad_frame", "4"},
    {"{\"id\":5,\"op\":{\"op\":\"ping\"}}", "bad_frame", "5"},
    /* A known field twice (decisions #3). */
    {"{\"op\":\"ping\",\"op\":\"ping\"}", "bad_frame", ANY_ID},
    {"{\"op\":\"sub\",\"topic\":\"a\",\"topic\":\"b\",\"id\":6}", "bad_frame",
     "6"},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":1,\"data\":2}", "bad_frame",
     NULL},
    {"{\"op\":\"ping\",\"id\":7,\"id\":7}", "bad_frame", ANY_ID},
    /* Length limits on group (decisions #12), name, token (#23). */
    {"{\"op\":\"sub\",\"topic\":\"a\",\"group\":\"\",\"id\":8}", "bad_frame",
     "8"},
    {"{\"op\":\"sub\",\"topic\":\"a\",\"group\":\"a b\",\"id\":9}", "bad_frame",
     "9"},
    {"{\"op\":\"sub\",\"topic\":\"a\",\"group\":\"a\\tb\"}", "bad_frame", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\",\"group\":\"a\\u0000b\"}", "bad_frame",
     NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\",\"group\":\"a\\u007fb\"}", "bad_frame",
     NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\",\"group\":\"a\\u0085b\",\"id\":10}",
     "bad_frame", "10"},
    {"{\"op\":\"unsub\",\"topic\":\"a\",\"group\":\" \",\"id\":11}",
     "bad_frame", "11"},
};

static void test_bad_frame_table(void **state)
{
    RUN_ROWS(*state, dflt.port, bad_frame_rows);
}

/* Every field of every op with each value of a wrong type. */
static const struct field_row {
    const char *op;
    const char *others; /* the op's other fields, valid */
    const char *field;
    const char *wrong; /* a kind of wrong: "s" strings, "b" booleans */
} field_rows[] = {
    {"connect", "", "name", "s"},
    {"connect", "", "token", "s"},
    {"connect", "", "echo", "b"},
    {"sub", "", "topic", "s"},
    {"sub", ",\"topic\":\"t.x\"", "group", "s"},
    {"unsub", "", "topic", "s"},
    {"unsub", ",\"topic\":\"t.x\"", "group", "s"},
    {"pub", "", "topic", "s"},
    {"pub", ",\"topic\":\"t.x\"", "reply", "s"},
};

static const char *const not_strings[] = {
    "1", "-2.5", "true", "false", "[]", "[\"a\"]", "{}", "{\"a\":\"b\"}",
};
static const char *const not_bools[] = {
    "1", "0", "\"true\"", "\"false\"", "[]", "{}", "[true]",
};
static const char *const not_ids[] = {
    "true", "false", "[]", "[1]", "{}", "{\"id\":1}",
};
static const char *const all_ops[] = {
    "connect", "sub", "unsub", "pub", "ping", "pong", "stats",
};

static void test_bad_frame_field_types(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, dflt.port, &c, &by);
    char frame[512];
    for (size_t r = 0; r < sizeof(field_rows) / sizeof(field_rows[0]); r++) {
        const struct field_row *row = &field_rows[r];
        bool b = row->wrong[0] == 'b';
        const char *const *vals = b ? not_bools : not_strings;
        size_t nv = b ? sizeof(not_bools) / sizeof(not_bools[0])
                      : sizeof(not_strings) / sizeof(not_strings[0]);
        for (size_t v = 0; v < nv; v++) {
            /* The id comes last: the server must read past the bad field
             * to find it. */
            int n = snprintf(frame, sizeof(frame),
                             "{\"op\":\"%s\"%s,\"%s\":%s,\"id\":\"w%zu\"}",
                             row->op, row->others, row->field, vals[v], v);
            char id[16];
            snprintf(id, sizeof(id), "\"w%zu\"", v);
            assert_err_frame(c, by, frame, (size_t)n, "bad_frame", id);
        }
    }
    /* A required topic that is null is missing (decisions #1, #2). */
    const char *req[] = {"sub", "unsub", "pub"};
    for (size_t i = 0; i < 3; i++) {
        int n =
            snprintf(frame, sizeof(frame),
                     "{\"op\":\"%s\",\"topic\":null,\"id\":%zu}", req[i], i);
        char id[16];
        snprintf(id, sizeof(id), "%zu", i);
        assert_err_frame(c, by, frame, (size_t)n, "bad_frame", id);
        n = snprintf(frame, sizeof(frame), "{\"op\":\"%s\",\"id\":%zu}", req[i],
                     i);
        assert_err_frame(c, by, frame, (size_t)n, "bad_frame", id);
    }
    /* An id of a wrong type: bad_frame, and no id in the err (#7). */
    for (size_t o = 0; o < sizeof(all_ops) / sizeof(all_ops[0]); o++)
        for (size_t v = 0; v < sizeof(not_ids) / sizeof(not_ids[0]); v++) {
            int n = snprintf(frame, sizeof(frame),
                             "{\"op\":\"%s\",\"topic\":\"t.x\",\"id\":%s}",
                             all_ops[o], not_ids[v]);
            assert_err_frame(c, by, frame, (size_t)n, "bad_frame", NULL);
        }
}

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

static void test_bad_frame_limits(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, dflt.port, &c, &by);
    char *g255 = repeat('g', 255), *g256 = repeat('g', 256);
    char *n256 = repeat('n', 256), *t4097 = repeat('t', 4097);
    char frame[8192];
    int n;
    n = snprintf(frame, sizeof(frame),
                 "{\"op\":\"sub\",\"topic\":\"a\",\"group\":\"%s\",\"id\":1}",
                 g256);
    assert_err_frame(c, by, frame, (size_t)n, "bad_frame", "1");
    n = snprintf(frame, sizeof(frame),
                 "{\"op\":\"connect\",\"name\":\"%s\",\"id\":2}", n256);
    assert_err_frame(c, by, frame, (size_t)n, "bad_frame", "2");
    n = snprintf(frame, sizeof(frame),
                 "{\"op\":\"connect\",\"token\":\"%s\",\"id\":3}", t4097);
    assert_err_frame(c, by, frame, (size_t)n, "bad_frame", "3");

    /* More than 64 top-level members (decisions #5); 64 is fine. */
    n = snprintf(frame, sizeof(frame), "{\"op\":\"ping\"");
    for (int i = 1; i < 64; i++)
        n +=
            snprintf(frame + n, sizeof(frame) - (size_t)n, ",\"k%d\":%d", i, i);
    assert_int_equal(sbt_send(c, frame, (size_t)n), 0);
    SEND(c, "}\n");
    expect_line(c, "{\"op\":\"pong\"}");
    n += snprintf(frame + n, sizeof(frame) - (size_t)n, ",\"k64\":64}");
    assert_err_frame(c, by, frame, (size_t)n, "bad_frame", ANY_ID);

    /* At the limits: accepted. */
    SEND(c, "{\"op\":\"sub\",\"topic\":\"a\",\"group\":\"%s\",\"id\":4}\n",
         g255);
    expect_line(c, "{\"op\":\"ok\",\"id\":4}");
    SEND(c,
         "{\"op\":\"connect\",\"name\":\"%.255s\",\"token\":\"%.4096s\","
         "\"id\":5}\n",
         n256, t4097);
    expect_line(c, "{\"op\":\"ok\",\"id\":5}");
    free(g255);
    free(g256);
    free(n256);
    free(t4097);
    check_alive(c, by);
}

/* Decisions #2 and #4: null optional fields are absent; fields that do not
 * belong to the op are ignored, whatever their type. */
static void test_ignored_fields_are_not_errors(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, dflt.port, &c, &by);
    static const struct {
        const char *frame;
        const char *answer; /* the frame before the ok, if any */
        const char *ok;     /* the ok, NULL when no id */
    } rows[] = {
        {"{\"op\":\"ping\",\"topic\":5,\"data\":[],\"echo\":\"x\",\"id\":1}",
         "{\"op\":\"pong\"}", "{\"op\":\"ok\",\"id\":1}"},
        {"{\"op\":\"pong\",\"group\":{},\"name\":1,\"id\":2}", NULL,
         "{\"op\":\"ok\",\"id\":2}"},
        {"{\"op\":\"stats\",\"topic\":[],\"reply\":true,\"id\":3}",
         "{\"op\":\"stats\"", "{\"op\":\"ok\",\"id\":3}"},
        {"{\"op\":\"connect\",\"topic\":5,\"group\":{},\"name\":null,"
         "\"echo\":null,\"token\":null,\"id\":4}",
         NULL, "{\"op\":\"ok\",\"id\":4}"},
        {"{\"op\":\"sub\",\"topic\":\"ig.x\",\"echo\":\"x\",\"reply\":1,"
         "\"name\":5,\"group\":null,\"id\":5}",
         NULL, "{\"op\":\"ok\",\"id\":5}"},
        {"{\"op\":\"unsub\",\"topic\":\"ig.x\",\"data\":{},\"token\":1,"
         "\"id\":6}",
         NULL, "{\"op\":\"ok\",\"id\":6}"},
        {"{\"op\":\"pub\",\"topic\":\"ig.y\",\"group\":5,\"name\":[],"
         "\"echo\":1,\"reply\":null,\"id\":7}",
         NULL, "{\"op\":\"ok\",\"id\":7}"},
        {"{\"op\":\"ping\",\"unknown\":{\"op\":1},\"id\":null}",
         "{\"op\":\"pong\"}", NULL},
        /* JSON equality: escapes and whitespace do not matter. */
        {"{\"op\":\"p\\u0069ng\",\"id\":9}", "{\"op\":\"pong\"}",
         "{\"op\":\"ok\",\"id\":9}"},
        {"{\"\\u006fp\":\"pong\",\"id\":10}", NULL,
         "{\"op\":\"ok\",\"id\":10}"},
        {" \t{ \"op\" : \"stats\" , \"id\" : 11 } \t", "{\"op\":\"stats\"",
         "{\"op\":\"ok\",\"id\":11}"},
    };
    /* Lines of only \\r and \\n are ignored: the pong comes next. */
    SEND(c, "\r\n\n\r\r\n\r\n{\"op\":\"ping\"}\n");
    expect_line(c, "{\"op\":\"pong\"}");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        SEND(c, "%s\n", rows[i].frame);
        const char *want[2] = {rows[i].answer, rows[i].ok};
        for (int k = 0; k < 2; k++) {
            if (want[k] == NULL)
                continue;
            char *line = next_line(c);
            bool ok = strncmp(line, want[k], strlen(want[k])) == 0 &&
                      (want[k][strlen(want[k]) - 1] != '}' ||
                       strlen(line) == strlen(want[k]));
            if (!ok)
                fprintf(stderr, "frame %s\n  want %s\n   got %s\n",
                        rows[i].frame, want[k], line);
            free(line);
            assert_true(ok);
        }
    }
    check_alive(c, by);
}

/* ---- unknown_op -------------------------------------------------------- */

static const err_row unknown_op_rows[] = {
    {"{\"op\":\"PING\"}", "unknown_op", NULL},
    {"{\"op\":\"Ping\",\"id\":\"P\"}", "unknown_op", "\"P\""},
    {"{\"op\":\"ping \",\"id\":1}", "unknown_op", "1"},
    {"{\"op\":\"\",\"id\":1.50}", "unknown_op", "1.50"},
    {"{\"op\":\"publish\",\"topic\":\"a\"}", "unknown_op", NULL},
    {"{\"op\":\"subscribe\",\"topic\":\"a\"}", "unknown_op", NULL},
    {"{\"op\":\"msg\",\"topic\":\"a\",\"data\":1}", "unknown_op", NULL},
    {"{\"op\":\"info\"}", "unknown_op", NULL},
    {"{\"op\":\"ok\",\"id\":\"k\"}", "unknown_op", "\"k\""},
    {"{\"op\":\"err\",\"code\":\"bad_json\"}", "unknown_op", NULL},
    /* Fields of a frame with an unknown op are not looked at. */
    {"{\"op\":\"nope\",\"topic\":5,\"group\":[],\"id\":\"n\"}", "unknown_op",
     "\"n\""},
    {"{\"op\":\"\\u0000\\\"},\\n\\ud83d\\ude00<\",\"id\":-0}", "unknown_op",
     "-0"},
    {"{\"op\":\"\xc3\xa9\xe2\x82\xac\",\"id\":\"\\u00e9\"}", "unknown_op",
     "\"\\u00e9\""},
};

static void test_unknown_op_table(void **state)
{
    RUN_ROWS(*state, dflt.port, unknown_op_rows);
}

/* ---- bad_topic --------------------------------------------------------- */

static const err_row bad_topic_rows[] = {
    /* Empty tokens. */
    {"{\"op\":\"sub\",\"topic\":\"\",\"id\":1}", "bad_topic", "1"},
    {"{\"op\":\"sub\",\"topic\":\".\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a.\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\".a\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a..b\",\"id\":\"e\"}", "bad_topic", "\"e\""},
    /* Spaces and control characters (decisions #13). */
    {"{\"op\":\"sub\",\"topic\":\"a b\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\" a\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a.b \"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\\tb\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\\nb\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\\u0000b\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\\u001fb\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\\u007fb\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\x7f"
     "b\"}",
     "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\\u0080b\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\\u009fb\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a\xc2\x85"
     "b\",\"id\":2}",
     "bad_topic", "2"},
    /* Wildcards that are not whole tokens, '>' not last. */
    {"{\"op\":\"sub\",\"topic\":\"a*\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"*a\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a.*b\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"**\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a>\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\">a\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a.>>\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\">.a\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a.>.b\",\"id\":3}", "bad_topic", "3"},
    {"{\"op\":\"sub\",\"topic\":\">.>\"}", "bad_topic", NULL},
    {"{\"op\":\"sub\",\"topic\":\"a.\\u003e.b\"}", "bad_topic", NULL},
    /* Same rules for unsub (bad_topic, not not_subscribed). */
    {"{\"op\":\"unsub\",\"topic\":\"\",\"id\":4}", "bad_topic", "4"},
    {"{\"op\":\"unsub\",\"topic\":\"a..b\"}", "bad_topic", NULL},
    {"{\"op\":\"unsub\",\"topic\":\"a.>.b\"}", "bad_topic", NULL},
    {"{\"op\":\"unsub\",\"topic\":\"a b\",\"group\":\"g\"}", "bad_topic", NULL},
    /* pub: a literal topic, no wildcards. */
    {"{\"op\":\"pub\",\"topic\":\"a.*\",\"id\":5}", "bad_topic", "5"},
    {"{\"op\":\"pub\",\"topic\":\"*\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\">\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a.>\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"orders.*.created\",\"data\":1}", "bad_topic",
     NULL},
    {"{\"op\":\"pub\",\"topic\":\"a*\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"\",\"data\":1}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a..b\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\".\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a b\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\\u0001\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\\u0085\",\"id\":\"c1\"}", "bad_topic",
     "\"c1\""},
    /* reply: the pub topic rules (decisions #13). */
    {"{\"op\":\"pub\",\"topic\":\"a\",\"reply\":\"r.*\",\"id\":6}", "bad_topic",
     "6"},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"reply\":\">\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"reply\":\"\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"reply\":\"r..s\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"reply\":\"r s\"}", "bad_topic", NULL},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"reply\":\"r.\"}", "bad_topic", NULL},
};

static void test_bad_topic_table(void **state)
{
    RUN_ROWS(*state, dflt.port, bad_topic_rows);
}

/* 1 to 255 bytes, counted after escapes are resolved. */
static void test_bad_topic_length(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, dflt.port, &c, &by);
    char *a255 = repeat('a', 255), *a256 = repeat('a', 256);
    /* 128 x U+00E9 as \u escapes: 768 bytes of text, 256 decoded. */
    char e128[128 * 6 + 1] = "", e127a[127 * 6 + 2] = "";
    for (int i = 0; i < 128; i++)
        strcat(e128, "\\u00e9");
    for (int i = 0; i < 127; i++)
        strcat(e127a, "\\u00e9");
    strcat(e127a, "a");
    char frame[2048];
    const char *ops[] = {"sub", "pub", "unsub"};
    for (int o = 0; o < 3; o++) {
        int n = snprintf(frame, sizeof(frame),
                         "{\"op\":\"%s\",\"topic\":\"%s\",\"id\":%d}", ops[o],
                         a256, o);
        char id[8];
        snprintf(id, sizeof(id), "%d", o);
        assert_err_frame(c, by, frame, (size_t)n, "bad_topic", id);
        n = snprintf(frame, sizeof(frame),
                     "{\"op\":\"%s\",\"topic\":\"%s\",\"id\":%d}", ops[o], e128,
                     o);
        assert_err_frame(c, by, frame, (size_t)n, "bad_topic", id);
    }
    /* At the limit, and UTF-8 tokens: accepted. */
    const char *good[] = {a255, e127a, "ord\xc3\xa9rs.cr\xc3\xa9\xc3\xa9\x65s",
                          "a-b_c:d/e#f+g$h@i!", "x.y.z.1.2.3"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        SEND(c, "{\"op\":\"sub\",\"topic\":\"%s\",\"id\":\"s%zu\"}\n", good[i],
             i);
        SEND(c, "{\"op\":\"pub\",\"topic\":\"%s\",\"id\":\"p%zu\"}\n", good[i],
             i);
        char want[64];
        snprintf(want, sizeof(want), "{\"op\":\"ok\",\"id\":\"s%zu\"}", i);
        expect_line(c, want);
        snprintf(want, sizeof(want), "{\"op\":\"ok\",\"id\":\"p%zu\"}", i);
        /* Own publication, echo on: the msg and the ok, in either order. */
        char *a = next_line(c), *b = next_line(c);
        bool ok =
            (strcmp(a, want) == 0 && strncmp(b, "{\"op\":\"msg\"", 11) == 0) ||
            (strcmp(b, want) == 0 && strncmp(a, "{\"op\":\"msg\"", 11) == 0);
        if (!ok)
            fprintf(stderr, "topic %s:\n  %s\n  %s\n", good[i], a, b);
        free(a);
        free(b);
        assert_true(ok);
        SEND(c, "{\"op\":\"unsub\",\"topic\":\"%s\",\"id\":\"u\"}\n", good[i]);
        expect_line(c, "{\"op\":\"ok\",\"id\":\"u\"}");
    }
    free(a255);
    free(a256);
    check_alive(c, by);
}

/* ---- frame_too_large --------------------------------------------------- */

/* A pub frame of exactly `total` bytes, newline (and `cr`) included. */
static char *frame_of_size(size_t total, bool cr, const char *id)
{
    char head[128];
    int h =
        snprintf(head, sizeof(head),
                 "{\"op\":\"pub\",\"topic\":\"big\",\"id\":%s,\"data\":\"", id);
    size_t tail = 3 + (cr ? 1 : 0); /* "}\n */
    assert_true(total > (size_t)h + tail);
    char *s = malloc(total + 1);
    assert_non_null(s);
    memcpy(s, head, (size_t)h);
    memset(s + h, 'x', total - (size_t)h - tail);
    memcpy(s + total - tail, cr ? "\"}\r\n" : "\"}\n", tail);
    s[total] = '\0';
    return s;
}

/* Decisions #14: a frame of exactly max_frame bytes is accepted; one more
 * byte is refused, with no id. */
static void test_frame_too_large_boundary(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, small.port, &c, &by);
    for (int cr = 0; cr < 2; cr++) {
        char *s = frame_of_size(SMALL_FRAME, cr, "\"fit\"");
        assert_int_equal(sbt_sends(c, s), 0);
        free(s);
        expect_line(c, "{\"op\":\"ok\",\"id\":\"fit\"}");
        s = frame_of_size(SMALL_FRAME + 1, cr, "\"over\"");
        assert_int_equal(sbt_sends(c, s), 0);
        free(s);
        expect_err(c, "frame_too_large", NULL);
        check_alive(c, by);
    }
}

/* Oversized, then a valid frame in the same write. */
static void test_frame_too_large_then_valid(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, small.port, &c, &by);
    char *s = frame_of_size(5 * SMALL_FRAME, false, "1");
    size_t n = strlen(s);
    const char *next = "{\"op\":\"ping\",\"id\":\"next\"}\n";
    s = realloc(s, n + strlen(next) + 1);
    assert_non_null(s);
    strcpy(s + n, next);
    assert_int_equal(sbt_sends(c, s), 0);
    free(s);
    expect_err(c, "frame_too_large", NULL);
    expect_line(c, "{\"op\":\"pong\"}");
    expect_line(c, "{\"op\":\"ok\",\"id\":\"next\"}");
    check_alive(c, by);
}

/* Oversized, sent in many small pieces: one error only. */
static void test_frame_too_large_in_pieces(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, small.port, &c, &by);
    char *s = frame_of_size(8 * SMALL_FRAME, false, "2");
    size_t n = strlen(s);
    for (size_t off = 0; off < n; off += 37) {
        size_t k = n - off < 37 ? n - off : 37;
        assert_int_equal(sbt_send(c, s + off, k), 0);
    }
    free(s);
    SEND(c, "{\"op\":\"ping\",\"id\":\"next\"}\n");
    expect_err(c, "frame_too_large", NULL);
    expect_line(c, "{\"op\":\"pong\"}");
    expect_line(c, "{\"op\":\"ok\",\"id\":\"next\"}");
    check_alive(c, by);
}

/* AddressSanitizer keeps freed memory in quarantine (256 MB by default),
 * so a server built with it grows by what it freed, not what it kept. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_SLACK_KIB (300 * 1024)
#else
#define RSS_SLACK_KIB (8 * 1024)
#endif

/* 20 MB without a newline, then its newline: one error, nothing buffered,
 * and the next frame works. */
static void test_frame_too_large_20mb(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, small.port, &c, &by);
    enum { CHUNK = 1 << 16, TOTAL = 20 * 1000 * 1000 };
    char *chunk = repeat('x', CHUNK);
    long rss0 = sbt_rss_kib(small.pid);
    SEND(c, "{\"op\":\"pub\",\"topic\":\"big\",\"id\":3,\"data\":\"");
    for (size_t sent = 0; sent < TOTAL; sent += CHUNK)
        if (sbt_send(c, chunk, CHUNK) != 0) {
            free(chunk);
            fail_msg("send failed after %zu bytes", sent);
        }
    free(chunk);
    /* The socket buffers hold a few MB at most; the server has read the
     * rest, and must not have kept it. */
    long rss1 = sbt_rss_kib(small.pid);
    assert_true(rss0 > 0 && rss1 > 0);
    if (rss1 - rss0 > RSS_SLACK_KIB)
        fail_msg("server RSS grew by %ld KiB during a discarded frame",
                 rss1 - rss0);
    SEND(c, "\"}\n{\"op\":\"ping\",\"id\":\"next\"}\n");
    expect_err(c, "frame_too_large", NULL);
    expect_line(c, "{\"op\":\"pong\"}");
    expect_line(c, "{\"op\":\"ok\",\"id\":\"next\"}");
    check_alive(c, by);
}

/* The default limit is 1 MiB. */
static void test_frame_too_large_default(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, dflt.port, &c, &by);
    char *s = frame_of_size(1048576, false, "\"fit\"");
    assert_int_equal(sbt_sends(c, s), 0);
    free(s);
    expect_line(c, "{\"op\":\"ok\",\"id\":\"fit\"}");
    s = frame_of_size(1048577, false, "\"over\"");
    assert_int_equal(sbt_sends(c, s), 0);
    free(s);
    expect_err(c, "frame_too_large", NULL);
    check_alive(c, by);
}

/* ---- not_subscribed, too_many_subs ------------------------------------- */

static void test_not_subscribed(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, dflt.port, &c, &by);
    static const err_row rows[] = {
        {"{\"op\":\"unsub\",\"topic\":\"ns.never\"}", "not_subscribed", NULL},
        {"{\"op\":\"unsub\",\"topic\":\"ns.never\",\"id\":\"n1\"}",
         "not_subscribed", "\"n1\""},
        {"{\"op\":\"unsub\",\"topic\":\"ns.*\",\"id\":2}", "not_subscribed",
         "2"},
        {"{\"op\":\"unsub\",\"topic\":\"ns.x\",\"group\":\"g\",\"id\":3}",
         "not_subscribed", "3"},
        {"{\"op\":\"unsub\",\"topic\":\"ns.y\",\"id\":4}", "not_subscribed",
         "4"},
        /* Another client's subscription is not this one's. */
        {"{\"op\":\"unsub\",\"topic\":\"by.check\",\"id\":5}", "not_subscribed",
         "5"},
    };
    SEND(c, "{\"op\":\"sub\",\"topic\":\"ns.x\",\"id\":0}\n");
    expect_line(c, "{\"op\":\"ok\",\"id\":0}");
    SEND(c, "{\"op\":\"sub\",\"topic\":\"ns.y\",\"group\":\"g\",\"id\":0}\n");
    expect_line(c, "{\"op\":\"ok\",\"id\":0}");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        assert_err_frame(c, by, rows[i].frame, strlen(rows[i].frame),
                         rows[i].code, rows[i].id);
    /* Unsub twice: the second is refused. */
    SEND(c, "{\"op\":\"unsub\",\"topic\":\"ns.x\",\"id\":6}\n");
    expect_line(c, "{\"op\":\"ok\",\"id\":6}");
    const char *again = "{\"op\":\"unsub\",\"topic\":\"ns.x\",\"id\":7}";
    assert_err_frame(c, by, again, strlen(again), "not_subscribed", "7");
    /* by's subscription is intact: check_alive relies on it. */
}

static void test_too_many_subs(void **state)
{
    fx *f = *state;
    sbt_client *c, *by;
    pair(f, small.port, &c, &by);
    /* (pattern, group) pairs: five distinct subscriptions. */
    const char *subs[SMALL_SUBS] = {
        "{\"op\":\"sub\",\"topic\":\"m.1\",\"id\":1}",
        "{\"op\":\"sub\",\"topic\":\"m.2\",\"id\":1}",
        "{\"op\":\"sub\",\"topic\":\"m.*\",\"id\":1}",
        "{\"op\":\"sub\",\"topic\":\"m.1\",\"group\":\"g\",\"id\":1}",
        "{\"op\":\"sub\",\"topic\":\"m.>\",\"group\":\"h\",\"id\":1}",
    };
    for (int i = 0; i < SMALL_SUBS; i++) {
        SEND(c, "%s\n", subs[i]);
        expect_line(c, "{\"op\":\"ok\",\"id\":1}");
    }
    const char *sixth = "{\"op\":\"sub\",\"topic\":\"m.3\",\"id\":\"six\"}";
    assert_err_frame(c, by, sixth, strlen(sixth), "too_many_subs", "\"six\"");
    const char *grp = "{\"op\":\"sub\",\"topic\":\"m.2\",\"group\":\"g\"}";
    assert_err_frame(c, by, grp, strlen(grp), "too_many_subs", NULL);
    /* Subscribing again to one it holds is not a new one (#10). */
    SEND(c, "%s\n", subs[2]);
    expect_line(c, "{\"op\":\"ok\",\"id\":1}");
    /* The five still work: m.1 matches four of them, one copy. */
    SEND(by, "{\"op\":\"pub\",\"topic\":\"m.1\",\"data\":1}\n");
    expect_line(c, "{\"op\":\"msg\",\"topic\":\"m.1\",\"data\":1}");
    /* Room again after an unsub. */
    SEND(c, "{\"op\":\"unsub\",\"topic\":\"m.2\",\"id\":2}\n");
    expect_line(c, "{\"op\":\"ok\",\"id\":2}");
    SEND(c, "{\"op\":\"sub\",\"topic\":\"m.3\",\"id\":3}\n");
    expect_line(c, "{\"op\":\"ok\",\"id\":3}");
    const char *seventh = "{\"op\":\"sub\",\"topic\":\"m.4\",\"id\":7}";
    assert_err_frame(c, by, seventh, strlen(seventh), "too_many_subs", "7");
    /* The limit is per connection: the bystander has room. */
    for (int i = 0; i < SMALL_SUBS - 1; i++) {
        SEND(by, "{\"op\":\"sub\",\"topic\":\"b.%d\",\"id\":%d}\n", i, i);
        char want[64];
        snprintf(want, sizeof(want), "{\"op\":\"ok\",\"id\":%d}", i);
        expect_line(by, want);
    }
    check_alive(c, by);
}

/* After everything above, both servers stop cleanly on SIGTERM. */
static void test_sigterm_exits_0(void **state)
{
    (void)state;
    assert_int_equal(sbt_server_stop(&dflt, SIGTERM, 10000), 0);
    assert_int_equal(sbt_server_stop(&small, SIGTERM, 10000), 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_bad_json_table),
        T(test_bad_json_raw_nul),
        T(test_bad_json_deep_nesting),
        T(test_bad_frame_table),
        T(test_bad_frame_field_types),
        T(test_bad_frame_limits),
        T(test_ignored_fields_are_not_errors),
        T(test_unknown_op_table),
        T(test_bad_topic_table),
        T(test_bad_topic_length),
        T(test_frame_too_large_boundary),
        T(test_frame_too_large_then_valid),
        T(test_frame_too_large_in_pieces),
        T(test_frame_too_large_20mb),
        T(test_frame_too_large_default),
        T(test_not_subscribed),
        T(test_too_many_subs),
        T(test_sigterm_exits_0), /* last: it stops the server */
    };
#undef T
    int failed = cmocka_run_group_tests_name("errors", tests, group_setup,
                                             group_teardown);
    return failed > 0 ? failed : teardown_failed;
}
