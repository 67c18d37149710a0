/* test_log.c - the JSON log line derived from a text message.
 *
 * A table of messages and the exact line each gives, then the properties
 * that must hold for any message: every line, cut at any size, is one
 * valid JSON object (checked with the strict scanner, UTF-8 included) and
 * ends with a newline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "log.h"

#define HEAD "{\"time\":\"T\",\"level\":\"INFO\",\"thread\":\"conn-1\","

typedef struct row {
    const char *msg;
    const char *want; /* after HEAD */
} row;

static void check_row(const row *r)
{
    char out[4096];
    size_t n =
        sb_log__json_line(out, sizeof(out), SB_LOG_INFO, "T", "conn-1", r->msg);
    char want[4096];
    snprintf(want, sizeof(want), "%s%s\n", HEAD, r->want);
    if (n != strlen(want) || memcmp(out, want, n) != 0)
        fail_msg("message \"%s\"\n got: %.*s want: %s", r->msg, (int)n, out,
                 want);
}

static void test_log_json_rows(void **state)
{
    (void)state;
    static const row rows[] = {
        {"close id=17 reason=eof",
         "\"msg\":\"close\",\"id\":\"17\",\"reason\":\"eof\"}"},
        /* Words before the first pair are "text". */
        {"listening on 1.2.3.4 without a token",
         "\"msg\":\"listening\",\"text\":\"on 1.2.3.4 without a token\"}"},
        {"cannot raise limit err=Too many open files",
         "\"msg\":\"cannot\",\"text\":\"raise limit\","
         "\"err\":\"Too many open files\"}"},
        /* A value runs to the next new key; a key seen before stays. */
        {"close id=1 name=a b id=2 reason=x",
         "\"msg\":\"close\",\"id\":\"1\",\"name\":\"a b id=2\","
         "\"reason\":\"x\"}"},
        /* Reserved names never become members. */
        {"ev level=1 msg=2 time=3 thread=4 text=5",
         "\"msg\":\"ev\",\"text\":\"level=1 msg=2 time=3 thread=4 text=5\"}"},
        {"", "\"msg\":\"\"}"},
        {"ev", "\"msg\":\"ev\"}"},
        {"ev k=", "\"msg\":\"ev\",\"k\":\"\"}"},
        {"ev  k=v  ", "\"msg\":\"ev\",\"k\":\"v\"}"},
        {"ev 9x=1 a.b-c=2 _u=3",
         "\"msg\":\"ev\",\"text\":\"9x=1\",\"a.b-c\":\"2\",\"_u\":\"3\"}"},
        {"ev a=x=y", "\"msg\":\"ev\",\"a\":\"x=y\"}"},
        /* Escapes. */
        {"ev q=\"\\\n\r\t\x01\x1f\x7f",
         "\"msg\":\"ev\",\"q\":\"\\\"\\\\\\n\\r\\t\\u0001\\u001f\x7f\"}"},
        {"e\"v x=1", "\"msg\":\"e\\\"v\",\"x\":\"1\"}"},
        /* UTF-8 passes; what is not UTF-8 becomes U+FFFD, byte by byte. */
        {"ev u=\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
         "\"msg\":\"ev\",\"u\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}"},
        {"ev u=\xff", "\"msg\":\"ev\",\"u\":\"\\ufffd\"}"},
        {"ev u=\xc0\x80", "\"msg\":\"ev\",\"u\":\"\\ufffd\\ufffd\"}"},
        {"ev u=\xed\xa0\x80",
         "\"msg\":\"ev\",\"u\":\"\\ufffd\\ufffd\\ufffd\"}"},
        {"ev u=\xf4\x90\x80\x80",
         "\"msg\":\"ev\",\"u\":\"\\ufffd\\ufffd\\ufffd\\ufffd\"}"},
        {"ev u=a\xe2\x82", "\"msg\":\"ev\",\"u\":\"a\\ufffd\\ufffd\"}"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        check_row(&rows[i]);
}

/* out[0..n) is one JSON object and a newline. */
static void check_valid(const char *out, size_t n, const char *what)
{
    sb_json_result res;
    if (n < 3 || out[n - 1] != '\n' || out[n - 2] != '}' ||
        sb_json_scan(out, n - 1, NULL, 0, &res) < 0 ||
        res.type != SB_JSON_OBJECT)
        fail_msg("%s: not one JSON object: %.*s", what, (int)n, out);
}

static void test_log_json_cut_anywhere(void **state)
{
    (void)state;
    char msg[1024];
    size_t m = 0;
    m += (size_t)snprintf(msg, sizeof(msg), "close id=3 name=");
    /* Multi-byte characters, escapes and bad bytes, repeated. */
    while (m + 16 < sizeof(msg)) {
        memcpy(msg + m, "\xc3\xa9\"\\\x01\xff \xf0\x9f\x98\x80 k=v", 15);
        m += 15;
    }
    msg[m] = '\0';
    char out[8192];
    for (size_t cap = 64; cap <= sizeof(out); cap += cap < 600 ? 1 : 97) {
        size_t n = sb_log__json_line(
            out, cap, SB_LOG_WARN, "2026-01-01T00:00:00.000Z", "acceptor", msg);
        char what[32];
        snprintf(what, sizeof(what), "cap %zu", cap);
        assert_true(n <= cap);
        check_valid(out, n, what);
    }
}

static void test_log_json_many_pairs(void **state)
{
    (void)state;
    char msg[1024] = "ev";
    for (int i = 0; i < 60; i++)
        snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), " k%d=%d", i, i);
    char out[8192];
    size_t n = sb_log__json_line(out, sizeof(out), SB_LOG_DEBUG, "T", "t", msg);
    check_valid(out, n, "60 pairs");
    /* Past the limit, pairs stay in the last value. */
    assert_non_null(strstr(out, "\"k31\":\"31 k32=32"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_json_rows),
        cmocka_unit_test(test_log_json_cut_anywhere),
        cmocka_unit_test(test_log_json_many_pairs),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
