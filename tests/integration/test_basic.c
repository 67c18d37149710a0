/* test_basic.c - greeting, the spec's example session, framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void test_greeting_fields(void **state)
{
    sbt_server *s = *state;
    sbt_client c;
    cJSON *info = sbt_connect_info(&c, s->port);
    assert_non_null(info);
    assert_string_equal(sbt_str(info, "server"), "sockbus");
    assert_string_equal(sbt_str(info, "version"), "0.1.0");
    assert_int_equal((int)sbt_num(info, "proto"), 1);
    assert_true(sbt_num(info, "client_id") >= 1);
    assert_int_equal((int)sbt_num(info, "max_frame"), 1048576);
    assert_int_equal((int)sbt_num(info, "heartbeat_ms"), 30000);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(info, "auth_required")));
    cJSON_Delete(info);
    sbt_close(&c);
}

static void test_example_session(void **state)
{
    sbt_server *s = *state;
    sbt_client c;
    cJSON *info = sbt_connect_info(&c, s->port);
    assert_non_null(info);
    cJSON_Delete(info);

    assert_true(sbt_request_ok(&c,
                               "{\"op\":\"sub\",\"topic\":\"orders.>\","
                               "\"id\":1}",
                               5000));
    sbt_sends(&c, "{\"op\":\"pub\",\"topic\":\"orders.eu.created\","
                  "\"data\":{\"order\":42,\"total\":9.5}}\n");
    char *line = sbt_read_line(&c, 5000);
    assert_non_null(line);
    /* data is relayed byte for byte */
    assert_string_equal(line, "{\"op\":\"msg\",\"topic\":\"orders.eu.created\","
                              "\"data\":{\"order\":42,\"total\":9.5}}");
    free(line);
    sbt_sends(&c, "{\"op\":\"pub\",\"topic\":\"orders.*.created\","
                  "\"data\":1}\n");
    assert_true(sbt_expect_err(&c, "bad_topic", 5000));
    sbt_sends(&c, "not json\n");
    assert_true(sbt_expect_err(&c, "bad_json", 5000));
    /* still open and working */
    sbt_sends(&c, "{\"op\":\"ping\"}\n");
    cJSON *pong = sbt_expect(&c, "pong", 5000);
    assert_non_null(pong);
    cJSON_Delete(pong);
    sbt_close(&c);
}

static void test_many_frames_in_one_write(void **state)
{
    sbt_server *s = *state;
    sbt_client c;
    cJSON_Delete(sbt_connect_info(&c, s->port));
    assert_true(
        sbt_request_ok(&c, "{\"op\":\"sub\",\"topic\":\"m\",\"id\":0}", 5000));
    enum { N = 1000 };
    size_t cap = N * 64, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int i = 0; i < N; i++)
        n += (size_t)snprintf(buf + n, cap - n,
                              "{\"op\":\"pub\",\"topic\":\"m\",\"data\":%d}\n",
                              i);
    assert_int_equal(sbt_send(&c, buf, n), 0);
    free(buf);
    for (int i = 0; i < N; i++) {
        cJSON *m = sbt_expect(&c, "msg", 5000);
        assert_non_null(m);
        assert_int_equal((int)sbt_num(m, "data"), i);
        cJSON_Delete(m);
    }
    sbt_close(&c);
}

static void test_frame_split_byte_by_byte(void **state)
{
    sbt_server *s = *state;
    sbt_client c;
    cJSON_Delete(sbt_connect_info(&c, s->port));
    const char *f = "{\"op\":\"sub\",\"topic\":\"split.*\",\"id\":\"s\"}\r\n"
                    "\r\n\n"
                    "{\"op\":\"pub\",\"topic\":\"split.x\",\"data\":[1,{}]}\n";
    for (size_t i = 0; f[i]; i++)
        assert_int_equal(sbt_send(&c, f + i, 1), 0);
    cJSON *ok = sbt_expect(&c, "ok", 5000);
    assert_non_null(ok);
    assert_string_equal(sbt_str(ok, "id"), "s");
    cJSON_Delete(ok);
    char *line = sbt_read_line(&c, 5000);
    assert_non_null(line);
    assert_string_equal(line, "{\"op\":\"msg\",\"topic\":\"split.x\","
                              "\"data\":[1,{}]}");
    free(line);
    sbt_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_fields),
        cmocka_unit_test(test_example_session),
        cmocka_unit_test(test_many_frames_in_one_write),
        cmocka_unit_test(test_frame_split_byte_by_byte),
    };
    return cmocka_run_group_tests_name("basic", tests, sbt_fixture_start,
                                       sbt_fixture_stop);
}
