/* test_msg.c - client frame parsing (every error code) and server frame
 * building (always valid JSON). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "msg.h"

struct row {
    const char *in;
    sb_err want;
    sb_op op; /* when SB_OK */
};

static const struct row rows[] = {
    /* The spec's example session. */
    {"{\"op\":\"sub\",\"topic\":\"orders.>\",\"id\":1}", SB_OK, SB_OP_SUB},
    {"{\"op\":\"pub\",\"topic\":\"orders.eu.created\",\"data\":{\"order\":42,"
     "\"total\":9.5}}",
     SB_OK, SB_OP_PUB},
    {"{\"op\":\"pub\",\"topic\":\"orders.*.created\",\"data\":1}",
     SB_ERR_BAD_TOPIC, 0},
    {"not json", SB_ERR_BAD_JSON, 0},
    /* Every op. */
    {"{\"op\":\"connect\",\"name\":\"n\",\"token\":\"t\",\"echo\":false}",
     SB_OK, SB_OP_CONNECT},
    {"{\"op\":\"unsub\",\"topic\":\"a.*\",\"group\":\"g\"}", SB_OK,
     SB_OP_UNSUB},
    {"{\"op\":\"ping\"}", SB_OK, SB_OP_PING},
    {"{\"op\":\"pong\"}", SB_OK, SB_OP_PONG},
    {"{\"op\":\"stats\",\"id\":\"x\"}", SB_OK, SB_OP_STATS},
    {"{\"op\":\"pub\",\"topic\":\"a\"}", SB_OK, SB_OP_PUB},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"reply\":\"inbox.1\",\"data\":[]}",
     SB_OK, SB_OP_PUB},
    {" {\"op\" : \"ping\" , \"extra\":{\"deep\":[1,2,3]}} ", SB_OK, SB_OP_PING},
    {"{\"op\":\"p\\u0069ng\"}", SB_OK, SB_OP_PING}, /* escaped op */
    {"{\"\\u006fp\":\"ping\"}", SB_OK, SB_OP_PING}, /* escaped key */
    /* bad_json */
    {"", SB_ERR_BAD_JSON, 0},
    {"{", SB_ERR_BAD_JSON, 0},
    {"{\"op\":\"ping\"", SB_ERR_BAD_JSON, 0},
    {"{\"op\":\"ping\"}x", SB_ERR_BAD_JSON, 0},
    {"{'op':'ping'}", SB_ERR_BAD_JSON, 0},
    {"{\"op\":\"ping\",}", SB_ERR_BAD_JSON, 0},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xff\"}", SB_ERR_BAD_JSON, 0},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\xc0\xaf\"}", SB_ERR_BAD_JSON,
     0},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":01}", SB_ERR_BAD_JSON, 0},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"data\":NaN}", SB_ERR_BAD_JSON, 0},
    /* bad_frame */
    {"[]", SB_ERR_BAD_FRAME, 0},
    {"\"op\"", SB_ERR_BAD_FRAME, 0},
    {"42", SB_ERR_BAD_FRAME, 0},
    {"{}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":1}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":null}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"sub\"}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"sub\",\"topic\":5}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"sub\",\"topic\":\"a\",\"group\":5}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"sub\",\"topic\":\"a\",\"group\":\"\"}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"sub\",\"topic\":\"a\",\"group\":\"a b\"}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"pub\",\"topic\":[\"a\"]}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"reply\":1}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"connect\",\"echo\":\"no\"}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"connect\",\"name\":{}}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"connect\",\"token\":1}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"ping\",\"id\":true}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"ping\",\"id\":[1]}", SB_ERR_BAD_FRAME, 0},
    {"{\"op\":\"ping\",\"op\":\"ping\"}", SB_ERR_BAD_FRAME, 0},
    /* unknown_op */
    {"{\"op\":\"PING\"}", SB_ERR_UNKNOWN_OP, 0},
    {"{\"op\":\"\"}", SB_ERR_UNKNOWN_OP, 0},
    {"{\"op\":\"msg\"}", SB_ERR_UNKNOWN_OP, 0},
    /* bad_topic */
    {"{\"op\":\"sub\",\"topic\":\"\"}", SB_ERR_BAD_TOPIC, 0},
    {"{\"op\":\"sub\",\"topic\":\"a..b\"}", SB_ERR_BAD_TOPIC, 0},
    {"{\"op\":\"sub\",\"topic\":\"a.>.b\"}", SB_ERR_BAD_TOPIC, 0},
    {"{\"op\":\"sub\",\"topic\":\"a b\"}", SB_ERR_BAD_TOPIC, 0},
    {"{\"op\":\"sub\",\"topic\":\"a\\nb\"}", SB_ERR_BAD_TOPIC, 0},
    {"{\"op\":\"pub\",\"topic\":\"a.>\"}", SB_ERR_BAD_TOPIC, 0},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"reply\":\"r.*\"}", SB_ERR_BAD_TOPIC, 0},
    {"{\"op\":\"pub\",\"topic\":\"a\",\"reply\":\"\"}", SB_ERR_BAD_TOPIC, 0},
};

static void test_msg_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *buf = strdup(rows[i].in);
        assert_non_null(buf);
        sb_client_msg m;
        sb_err e = sb_msg_parse(buf, strlen(buf), &m);
        if (e != rows[i].want)
            fail_msg("row %zu: %s: got %s want %s (%s)", i, rows[i].in,
                     sb_err_str(e), sb_err_str(rows[i].want),
                     e ? m.err_msg : "");
        if (e == SB_OK && m.op != rows[i].op)
            fail_msg("row %zu: %s: op %d want %d", i, rows[i].in, m.op,
                     rows[i].op);
        if (e != SB_OK && (m.err_msg == NULL || m.err_msg[0] == '\0'))
            fail_msg("row %zu: no error message", i);
        free(buf);
    }
}

static void test_msg_parse_spans(void **state)
{
    (void)state;
    char buf[] = "{\"id\":\"a\\\"b\",\"op\":\"pub\",\"topic\":\"t.\\u00e9\","
                 "\"data\":{\"k\": [1, 2.5e3, \"x\"]},\"reply\":\"r.1\"}";
    sb_client_msg m;
    assert_int_equal(sb_msg_parse(buf, strlen(buf), &m), SB_OK);
    assert_int_equal(m.op, SB_OP_PUB);
    /* id and data are the raw bytes; strings are decoded */
    assert_int_equal(m.id.n, 6);
    assert_memory_equal(m.id.p, "\"a\\\"b\"", 6);
    assert_int_equal(m.topic.n, 4);
    assert_memory_equal(m.topic.p, "t.\xc3\xa9", 4);
    assert_int_equal(m.data.n, strlen("{\"k\": [1, 2.5e3, \"x\"]}"));
    assert_memory_equal(m.data.p, "{\"k\": [1, 2.5e3, \"x\"]}", m.data.n);
    assert_int_equal(m.reply.n, 3);
    assert_memory_equal(m.reply.p, "r.1", 3);
}

static void test_msg_id_kept_on_error(void **state)
{
    (void)state;
    char buf[] = "{\"op\":\"sub\",\"topic\":\"a..b\",\"id\":17}";
    sb_client_msg m;
    assert_int_equal(sb_msg_parse(buf, strlen(buf), &m), SB_ERR_BAD_TOPIC);
    assert_int_equal(m.id.n, 2);
    assert_memory_equal(m.id.p, "17", 2);
    char buf2[] = "{\"op\":\"nope\",\"id\":\"q\"}";
    assert_int_equal(sb_msg_parse(buf2, strlen(buf2), &m), SB_ERR_UNKNOWN_OP);
    assert_memory_equal(m.id.p, "\"q\"", 3);
}

static void test_msg_deep_nesting_fails_cleanly(void **state)
{
    (void)state;
    size_t depth = 100000;
    char *buf = malloc(depth * 2 + 64);
    assert_non_null(buf);
    size_t n =
        (size_t)sprintf(buf, "{\"op\":\"pub\",\"topic\":\"a\",\"data\":");
    memset(buf + n, '[', depth);
    memset(buf + n + depth, ']', depth);
    buf[n + 2 * depth] = '}';
    sb_client_msg m;
    assert_int_equal(sb_msg_parse(buf, n + 2 * depth + 1, &m), SB_ERR_BAD_JSON);
    free(buf);
}

/* Every built frame is one line of valid JSON with the expected fields. */
static cJSON *parse_frame(sb_frame *f)
{
    assert_non_null(f);
    assert_true(f->len > 1);
    assert_int_equal(f->text[f->len - 1], '\n');
    assert_null(memchr(f->text, '\n', f->len - 1));
    cJSON *j = cJSON_ParseWithLength(f->text, f->len - 1);
    assert_non_null(j);
    return j;
}

static void test_msg_builders_valid_json(void **state)
{
    (void)state;
    const char weird[] = "q\"uo\\te\n\t\x01\x7f caf\xc3\xa9";
    sb_span topic = {"a.b", 3};
    sb_span data = {"{\"x\":[1,2]}", 11};
    sb_span reply = {weird, sizeof(weird) - 1};
    sb_frame *f = sb_msg_build_msg(topic, data, reply, 9);
    cJSON *j = parse_frame(f);
    assert_string_equal(cJSON_GetObjectItem(j, "op")->valuestring, "msg");
    assert_string_equal(cJSON_GetObjectItem(j, "reply")->valuestring, weird);
    assert_int_equal(f->kind, SB_FRAME_MSG);
    assert_string_equal(f->topic, "a.b");
    assert_memory_equal(f->text + f->data_off, "{\"x\":[1,2]}", 11);
    assert_int_equal(f->origin, 9);
    cJSON_Delete(j);
    sb_frame_unref(&f);
    assert_null(f);

    f = sb_msg_build_msg(topic, (sb_span){0}, (sb_span){0}, 0);
    j = parse_frame(f);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "data")));
    assert_null(cJSON_GetObjectItem(j, "reply"));
    assert_null(f->reply);
    cJSON_Delete(j);
    sb_frame_unref(&f);

    f = sb_msg_build_err(SB_ERR_BAD_JSON, weird, (sb_span){"\"i\"", 3});
    j = parse_frame(f);
    assert_string_equal(cJSON_GetObjectItem(j, "code")->valuestring,
                        "bad_json");
    assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring, weird);
    assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "i");
    cJSON_Delete(j);
    sb_frame_unref(&f);

    f = sb_msg_build_ok((sb_span){"12.5e1", 6});
    j = parse_frame(f);
    assert_true(cJSON_GetObjectItem(j, "id")->valuedouble == 125.0);
    cJSON_Delete(j);
    sb_frame_unref(&f);

    sb_info info = {.client_id = 7,
                    .max_frame = 100,
                    .heartbeat_ms = 5,
                    .auth_required = true,
                    .node = "n\"1"};
    f = sb_msg_build_info(&info);
    j = parse_frame(f);
    assert_string_equal(cJSON_GetObjectItem(j, "server")->valuestring,
                        "sockbus");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "auth_required")));
    assert_string_equal(cJSON_GetObjectItem(j, "node")->valuestring, "n\"1");
    cJSON_Delete(j);
    sb_frame_unref(&f);

    sb_stats st = {.connections = 1, .msgs_in = UINT64_MAX};
    f = sb_msg_build_stats(&st);
    j = parse_frame(f);
    const char *need[] = {"connections", "subscriptions",  "msgs_in",
                          "msgs_out",    "bytes_in",       "bytes_out",
                          "dropped",     "slow_consumers", "uptime_ms"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, need[i])));
    cJSON_Delete(j);
    sb_frame_unref(&f);

    f = sb_msg_build_ping();
    cJSON_Delete(parse_frame(f));
    sb_frame_unref(&f);
    f = sb_msg_build_pong();
    cJSON_Delete(parse_frame(f));
    sb_frame_unref(&f);
}

/* A message from the cluster: same text as a local one, its route and
 * group recorded after it; and the stats frame's cluster object. */
static void test_msg_cluster_frames(void **state)
{
    (void)state;
    sb_span t = {"a.b", 3}, d = {"{\"x\":1}", 7}, r = {"_INBOX.1", 8};
    sb_frame *local = sb_msg_build_msg(t, d, r, 5);
    sb_frame *f = sb_msg_build_msg_routed(t, d, r, SB_ORIGIN_CLUSTER,
                                          SB_ROUTE_GROUP, (sb_span){"g1", 2});
    assert_non_null(local);
    assert_non_null(f);
    assert_string_equal(f->text, local->text);
    assert_int_equal(local->route, SB_ROUTE_LOCAL);
    assert_null(local->group);
    assert_int_equal(f->route, SB_ROUTE_GROUP);
    assert_int_equal(f->group_len, 2);
    assert_string_equal(f->group, "g1");
    assert_string_equal(f->topic, "a.b");
    assert_string_equal(f->reply, "_INBOX.1");
    assert_true(f->origin == SB_ORIGIN_CLUSTER);
    sb_frame_unref(&f);
    sb_frame_unref(&local);

    sb_stats st = {0};
    f = sb_msg_build_stats(&st);
    cJSON *j = parse_frame(f);
    cJSON *cl = cJSON_GetObjectItem(j, "cluster");
    assert_string_equal(cJSON_GetObjectItem(cl, "state")->valuestring, "off");
    cJSON_Delete(j);
    sb_frame_unref(&f);

    st.cluster.state = "connected";
    snprintf(st.cluster.node, sizeof(st.cluster.node), "n\"1");
    snprintf(st.cluster.server, sizeof(st.cluster.server), "nats://h:4222");
    st.cluster.msgs_sent = UINT64_MAX;
    f = sb_msg_build_stats(&st);
    j = parse_frame(f);
    cl = cJSON_GetObjectItem(j, "cluster");
    assert_string_equal(cJSON_GetObjectItem(cl, "node")->valuestring, "n\"1");
    assert_string_equal(cJSON_GetObjectItem(cl, "server")->valuestring,
                        "nats://h:4222");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(cl, "msgs_sent")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(cl, "subscriptions")));
    cJSON_Delete(j);
    sb_frame_unref(&f);
}

static void test_msg_err_strings(void **state)
{
    (void)state;
    assert_string_equal(sb_err_str(SB_ERR_BAD_JSON), "bad_json");
    assert_string_equal(sb_err_str(SB_ERR_SHUTTING_DOWN), "shutting_down");
    assert_string_equal(sb_err_str(SB_ERR_SERVER_BUSY), "server_busy");
    assert_string_equal(sb_op_str(SB_OP_STATS), "stats");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_parse_table),
        cmocka_unit_test(test_msg_parse_spans),
        cmocka_unit_test(test_msg_id_kept_on_error),
        cmocka_unit_test(test_msg_deep_nesting_fails_cleanly),
        cmocka_unit_test(test_msg_builders_valid_json),
        cmocka_unit_test(test_msg_cluster_frames),
        cmocka_unit_test(test_msg_err_strings),
    };
    return cmocka_run_group_tests_name("msg", tests, NULL, NULL);
}
