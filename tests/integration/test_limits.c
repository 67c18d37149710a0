/* test_limits.c - heartbeat, the connection limit, and a thousand
 * connections at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "harness.h"

#define STR_(x) #x
#define STR(x) STR_(x)

#define HB_MS 300
#define WAIT_MS 5000
/* Scheduling slack added to every heartbeat deadline. */
#define SLACK_MS 1500
/* How early a timer may fire: the server counts whole milliseconds. */
#define EARLY_MS 20
#define MAX_CONNS 3
#define MANY 1000

static int setup_heartbeat(void **state)
{
    return sbt_fixture_start_args(
        state, (const char *const[]){"--heartbeat-ms", STR(HB_MS), NULL});
}

static int setup_heartbeat_off(void **state)
{
    return sbt_fixture_start_args(
        state, (const char *const[]){"--heartbeat-ms", "0", NULL});
}

static int setup_max_conns(void **state)
{
    return sbt_fixture_start_args(
        state, (const char *const[]){"--max-conns", STR(MAX_CONNS), NULL});
}

static int setup_many(void **state)
{
    /* Both this process and sockbusd (which inherits the limit) need a
     * descriptor per connection. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < 2 * MANY + 64) {
        fprintf(stderr, "RLIMIT_NOFILE %llu is too low for %d connections\n",
                (unsigned long long)rl.rlim_cur, MANY);
        return -1;
    }
    return sbt_fixture_start_args(state, NULL);
}

/* Pace a client's frames: this sleep sets a rate, it waits for nothing. */
static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0)
        ;
}

static void expect_op(sbt_client *c, const char *op, int timeout_ms)
{
    cJSON *j = sbt_expect(c, op, timeout_ms);
    if (j == NULL)
        fail_msg("expected %s within %d ms", op, timeout_ms);
    cJSON_Delete(j);
}

static void ping_pong(sbt_client *c)
{
    assert_int_equal(sbt_sends(c, "{\"op\":\"ping\"}\n"), 0);
    expect_op(c, "pong", WAIT_MS);
}

/* ---- Heartbeat ---------------------------------------------------------- */

static void test_heartbeat_ping_when_idle(void **state)
{
    sbt_server *s = *state;
    sbt_client c;
    long long t0 = sbt_now_ms();
    cJSON *info = sbt_connect_info(&c, s->port);
    assert_non_null(info);
    assert_int_equal((int)sbt_num(info, "heartbeat_ms"), HB_MS);
    cJSON_Delete(info);
    expect_op(&c, "ping", HB_MS + SLACK_MS);
    long long waited = sbt_now_ms() - t0;
    if (waited < HB_MS - EARLY_MS)
        fail_msg("ping after %lld ms of silence, want >= %d", waited, HB_MS);
    /* The answer keeps the connection usable. */
    assert_int_equal(sbt_sends(&c, "{\"op\":\"pong\"}\n"), 0);
    ping_pong(&c);
    sbt_close(&c);
}

static void test_heartbeat_pong_keeps_alive(void **state)
{
    sbt_server *s = *state;
    sbt_client c;
    cJSON_Delete(sbt_connect_info(&c, s->port));
    assert_true(sbt_request_ok(&c, "{\"op\":\"sub\",\"topic\":\"hb\",\"id\":1}",
                               WAIT_MS));
    /* Several periods: each ping is answered, so the next frame is always
     * the next ping and never heartbeat_timeout. */
    long long t0 = sbt_now_ms();
    for (int i = 0; i < 5; i++) {
        expect_op(&c, "ping", HB_MS + SLACK_MS);
        assert_int_equal(sbt_sends(&c, "{\"op\":\"pong\"}\n"), 0);
    }
    assert_true(sbt_now_ms() - t0 >= 4 * (HB_MS - EARLY_MS));
    /* Still subscribed and open. */
    assert_int_equal(sbt_sends(&c, "{\"op\":\"pub\",\"topic\":\"hb\","
                                   "\"data\":7}\n"),
                     0);
    cJSON *m = sbt_expect(&c, "msg", WAIT_MS);
    assert_non_null(m);
    assert_int_equal((int)sbt_num(m, "data"), 7);
    cJSON_Delete(m);
    sbt_close(&c);
}

static void test_heartbeat_busy_client_not_pinged(void **state)
{
    sbt_server *s = *state;
    sbt_client c;
    cJSON_Delete(sbt_connect_info(&c, s->port));
    /* A frame every quarter period for five periods: each is a sign of
     * life, so every frame back is the answer to ours and none a ping. */
    for (int i = 0; i < 20; i++) {
        ping_pong(&c);
        pause_ms(HB_MS / 4);
    }
    sbt_close(&c);
}

static void test_heartbeat_timeout_closes(void **state)
{
    sbt_server *s = *state;
    sbt_client c;
    cJSON_Delete(sbt_connect_info(&c, s->port));
    expect_op(&c, "ping", HB_MS + SLACK_MS);
    long long pinged = sbt_now_ms();
    /* No answer: one more period, then the error and the close. */
    cJSON *e = sbt_expect(&c, "err", HB_MS + SLACK_MS);
    assert_non_null(e);
    assert_string_equal(sbt_str(e, "code"), "heartbeat_timeout");
    assert_non_null(sbt_str(e, "msg"));
    cJSON_Delete(e);
    long long waited = sbt_now_ms() - pinged;
    if (waited < HB_MS - EARLY_MS)
        fail_msg("heartbeat_timeout %lld ms after the ping, want >= %d", waited,
                 HB_MS);
    assert_true(sbt_wait_closed(&c, WAIT_MS));
    sbt_close(&c);
}

static void test_heartbeat_off_sends_no_ping(void **state)
{
    sbt_server *s = *state;
    sbt_client c;
    cJSON *info = sbt_connect_info(&c, s->port);
    assert_non_null(info);
    assert_int_equal((int)sbt_num(info, "heartbeat_ms"), 0);
    cJSON_Delete(info);
    /* The one place a quiet period is the test: three times the period
     * the other tests use would have brought a ping and a timeout. */
    assert_true(sbt_quiet(&c, 3 * HB_MS));
    ping_pong(&c);
    sbt_close(&c);
}

/* ---- Connection limit --------------------------------------------------- */

/* Connect expecting server_busy instead of info, then the close. */
static void expect_busy(int port)
{
    sbt_client c;
    assert_int_equal(sbt_connect(&c, port), 0);
    cJSON *j = sbt_read(&c, WAIT_MS);
    if (j == NULL)
        fail_msg("over the limit: no frame, want err server_busy");
    char *text = cJSON_PrintUnformatted(j);
    if (strcmp(sbt_str(j, "op") ? sbt_str(j, "op") : "", "err") != 0 ||
        strcmp(sbt_str(j, "code") ? sbt_str(j, "code") : "", "server_busy") !=
            0 ||
        sbt_str(j, "msg") == NULL)
        fail_msg("over the limit: got %s, want err server_busy", text);
    free(text);
    cJSON_Delete(j);
    assert_true(sbt_wait_closed(&c, WAIT_MS));
    sbt_close(&c);
}

static void test_max_conns_busy_then_accepts_again(void **state)
{
    sbt_server *s = *state;
    sbt_client c[MAX_CONNS];
    for (int i = 0; i < MAX_CONNS; i++) {
        cJSON *info = sbt_connect_info(&c[i], s->port);
        assert_non_null(info);
        cJSON_Delete(info);
    }
    expect_busy(s->port);
    expect_busy(s->port);
    /* The refused ones did not disturb those admitted. */
    for (int i = 0; i < MAX_CONNS; i++)
        ping_pong(&c[i]);
    cJSON *st = sbt_stats(&c[0], WAIT_MS);
    assert_non_null(st);
    assert_int_equal((int)sbt_num(st, "connections"), MAX_CONNS);
    cJSON_Delete(st);

    /* Once one leaves, the server frees its slot as soon as it notices;
     * until then a try may still be refused, with server_busy. */
    sbt_close(&c[1]);
    long long deadline = sbt_now_ms() + WAIT_MS;
    int tries = 0;
    for (;;) {
        tries++;
        assert_int_equal(sbt_connect(&c[1], s->port), 0);
        cJSON *j = sbt_read(&c[1], WAIT_MS);
        assert_non_null(j);
        const char *op = sbt_str(j, "op");
        assert_non_null(op);
        if (strcmp(op, "info") == 0) {
            cJSON_Delete(j);
            break;
        }
        assert_string_equal(op, "err");
        assert_string_equal(sbt_str(j, "code"), "server_busy");
        cJSON_Delete(j);
        sbt_close(&c[1]);
        if (sbt_now_ms() >= deadline)
            fail_msg("no slot freed %d ms after a close (%d tries)", WAIT_MS,
                     tries);
    }
    ping_pong(&c[1]);
    /* Full again. */
    expect_busy(s->port);
    for (int i = 0; i < MAX_CONNS; i++)
        sbt_close(&c[i]);
}

/* ---- A thousand connections --------------------------------------------- */

static void test_many_connections_all_get_broadcast(void **state)
{
    sbt_server *s = *state;
    sbt_client *c = calloc(MANY, sizeof(*c));
    assert_non_null(c);
    /* Connect all first, then subscribe all, then read the answers: the
     * server has every connection open at once. */
    for (int i = 0; i < MANY; i++)
        if (sbt_connect(&c[i], s->port) < 0)
            fail_msg("connection %d of %d refused", i, MANY);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(sbt_sendf(&c[i],
                                   "{\"op\":\"sub\",\"topic\":\"all.>\","
                                   "\"id\":%d}\n",
                                   i),
                         0);
    for (int i = 0; i < MANY; i++) {
        cJSON *info = sbt_expect(&c[i], "info", WAIT_MS);
        if (info == NULL)
            fail_msg("connection %d: no info", i);
        cJSON_Delete(info);
        cJSON *ok = sbt_expect(&c[i], "ok", WAIT_MS);
        if (ok == NULL || (int)sbt_num(ok, "id") != i)
            fail_msg("connection %d: no ok for its sub", i);
        cJSON_Delete(ok);
    }
    sbt_client pub;
    cJSON_Delete(sbt_connect_info(&pub, s->port));
    cJSON *st = sbt_stats(&pub, WAIT_MS);
    assert_non_null(st);
    assert_int_equal((int)sbt_num(st, "connections"), MANY + 1);
    assert_true(sbt_num(st, "subscriptions") >= MANY);
    cJSON_Delete(st);

    assert_int_equal(sbt_sends(&pub, "{\"op\":\"pub\",\"topic\":\"all.now\","
                                     "\"data\":{\"n\":1}}\n"),
                     0);
    for (int i = 0; i < MANY; i++) {
        cJSON *m = sbt_expect(&c[i], "msg", WAIT_MS);
        if (m == NULL)
            fail_msg("connection %d of %d: no broadcast", i, MANY);
        assert_string_equal(sbt_str(m, "topic"), "all.now");
        cJSON_Delete(m);
    }
    for (int i = 0; i < MANY; i++)
        sbt_close(&c[i]);
    free(c);
    ping_pong(&pub);
    sbt_close(&pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_heartbeat_ping_when_idle,
                                        setup_heartbeat, sbt_fixture_stop),
        cmocka_unit_test_setup_teardown(test_heartbeat_pong_keeps_alive,
                                        setup_heartbeat, sbt_fixture_stop),
        cmocka_unit_test_setup_teardown(test_heartbeat_busy_client_not_pinged,
                                        setup_heartbeat, sbt_fixture_stop),
        cmocka_unit_test_setup_teardown(test_heartbeat_timeout_closes,
                                        setup_heartbeat, sbt_fixture_stop),
        cmocka_unit_test_setup_teardown(test_heartbeat_off_sends_no_ping,
                                        setup_heartbeat_off, sbt_fixture_stop),
        cmocka_unit_test_setup_teardown(test_max_conns_busy_then_accepts_again,
                                        setup_max_conns, sbt_fixture_stop),
        cmocka_unit_test_setup_teardown(test_many_connections_all_get_broadcast,
                                        setup_many, sbt_fixture_stop),
    };
    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
