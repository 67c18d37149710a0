/* test_shutdown.c - a graceful stop delivers what was queued, then says
 * shutting_down and closes; bind failures and bad flags exit 2 with one
 * line; --help and --version exit 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* Sanitizer builds run the server several times slower. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WAIT_MS 20000
#else
#define WAIT_MS 5000
#endif
#define DATA_LEN 1000 /* 10 MB queued: more than the kernel buffers */
#define QUEUED 10000  /* well under the default send queue (16384 frames) */
#define INFLIGHT 12000

static int setup(void **state)
{
    return sbt_fixture_start_args(state, NULL);
}

static int setup_long_drain(void **state)
{
    /* Long enough that the test, not the drain timer, decides when the
     * queued messages are read; the server exits as soon as they are. */
    return sbt_fixture_start_args(
        state, (const char *const[]){"--drain-ms", "20000", NULL});
}

static int setup_short_drain(void **state)
{
    return sbt_fixture_start_args(
        state, (const char *const[]){"--drain-ms", "500", NULL});
}

/* Tests that stop the server themselves leave pid 0. */
static int teardown(void **state)
{
    sbt_server *s = *state;
    int st = s->pid > 0 ? sbt_server_stop(s, SIGTERM, 2 * WAIT_MS + 20000) : 0;
    if (st != 0)
        fprintf(stderr, "sockbusd exited %d on SIGTERM (want 0)\n", st);
    free(s);
    return st == 0 ? 0 : -1;
}

/* Wait for a server already signalled to exit; its status or -1. Signal 0
 * only checks the process is there. */
static int wait_exit(sbt_server *s, int timeout_ms)
{
    return sbt_server_stop(s, 0, timeout_ms);
}

/* Connect with a small receive buffer set before the handshake, so what
 * the client does not read stays queued in the server. */
static void connect_small(sbt_client *c, int port)
{
    assert_int_equal(sbt_connect_rcvbuf(c, port, 4096), 0);
    cJSON *info = sbt_expect(c, "info", WAIT_MS);
    assert_non_null(info);
    cJSON_Delete(info);
}

/* Append pub frame `seq` (with id `seq` when `with_id`) to buf. */
static size_t put_pub(char *buf, long seq, bool with_id)
{
    char data[DATA_LEN + 1];
    memset(data, 'd', DATA_LEN);
    data[DATA_LEN] = '\0';
    if (with_id)
        return (size_t)sprintf(buf,
                               "{\"op\":\"pub\",\"topic\":\"sd\",\"data\":"
                               "[%ld,\"%s\"],\"id\":%ld}\n",
                               seq, data, seq);
    return (size_t)sprintf(buf,
                           "{\"op\":\"pub\",\"topic\":\"sd\",\"data\":"
                           "[%ld,\"%s\"]}\n",
                           seq, data);
}

/* The sequence number of a msg from put_pub, or -1. */
static long msg_seq(const cJSON *m)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(m, "data");
    const char *op = sbt_str(m, "op");
    if (op == NULL || strcmp(op, "msg") != 0 || !cJSON_IsArray(d) ||
        cJSON_GetArraySize(d) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(d, 0)))
        return -1;
    const char *pad = cJSON_GetArrayItem(d, 1)->valuestring;
    if (pad == NULL || strlen(pad) != DATA_LEN)
        return -1;
    return (long)cJSON_GetArrayItem(d, 0)->valuedouble;
}

/* Read msgs 0, 1, ... in order until `err shutting_down`, then expect
 * EOF. Returns how many msgs came first. */
static long read_until_shutdown(sbt_client *c, const char *who)
{
    long got = 0;
    for (;;) {
        cJSON *j = sbt_read(c, WAIT_MS);
        if (j == NULL)
            fail_msg("%s: %s after %ld messages, want err shutting_down", who,
                     c->eof ? "EOF" : "nothing", got);
        const char *op = sbt_str(j, "op");
        if (op != NULL && strcmp(op, "err") == 0) {
            const char *code = sbt_str(j, "code");
            if (code == NULL || strcmp(code, "shutting_down") != 0)
                fail_msg("%s: err %s after %ld messages, want shutting_down",
                         who, code ? code : "?", got);
            cJSON_Delete(j);
            break;
        }
        long seq = msg_seq(j);
        if (seq != got) {
            char *t = cJSON_PrintUnformatted(j);
            fail_msg("%s: want message %ld, got %.120s", who, got, t);
        }
        got++;
        cJSON_Delete(j);
    }
    char *more = sbt_read_line(c, WAIT_MS);
    if (more != NULL)
        fail_msg("%s: frame after shutting_down: %.120s", who, more);
    if (!c->eof)
        fail_msg("%s: no EOF within %d ms of shutting_down", who, WAIT_MS);
    return got;
}

/* After a stop signal, new connections are refused: connect fails, or the
 * connection is closed without a greeting. Until the server has seen the
 * signal a connection may still be greeted; it is closed and tried again.
 * A connection left hanging (neither greeted nor closed) is a failure. */
static void expect_refused(int port)
{
    long long deadline = sbt_now_ms() + WAIT_MS;
    for (int tries = 1;; tries++) {
        sbt_client c;
        if (sbt_connect(&c, port) < 0)
            return;
        char *line = sbt_read_line(&c, WAIT_MS);
        bool closed = c.eof;
        sbt_close(&c);
        if (line == NULL && closed)
            return;
        if (line == NULL)
            fail_msg("after SIGTERM: a connection was neither refused nor "
                     "greeted within %d ms",
                     WAIT_MS);
        free(line);
        if (sbt_now_ms() >= deadline)
            fail_msg("new connections still greeted %d ms after SIGTERM "
                     "(%d tries)",
                     WAIT_MS, tries);
    }
}

/* ---- Graceful stop ------------------------------------------------------ */

static void test_shutdown_delivers_queued_messages(void **state)
{
    sbt_server *s = *state;
    sbt_client sub, pub;
    connect_small(&sub, s->port);
    assert_true(sbt_request_ok(
        &sub, "{\"op\":\"sub\",\"topic\":\"sd\",\"id\":1}", WAIT_MS));
    cJSON_Delete(sbt_connect_info(&pub, s->port));

    char *buf = malloc((size_t)QUEUED * (DATA_LEN + 64));
    assert_non_null(buf);
    size_t n = 0;
    for (long i = 0; i < QUEUED; i++)
        n += put_pub(buf + n, i, false);
    assert_int_equal(sbt_send(&pub, buf, n), 0);
    free(buf);
    /* Replies come in order: once this is answered, the server has read
     * every publication before it. */
    assert_int_equal(sbt_sends(&pub, "{\"op\":\"ping\",\"id\":\"p\"}\n"), 0);
    cJSON *pong = sbt_expect(&pub, "pong", WAIT_MS);
    assert_non_null(pong);
    cJSON_Delete(pong);
    cJSON *ok = sbt_expect(&pub, "ok", WAIT_MS);
    assert_non_null(ok);
    cJSON_Delete(ok);

    /* The subscriber has read nothing since its sub. */
    assert_int_equal(kill(s->pid, SIGTERM), 0);
    expect_refused(s->port);
    long got = read_until_shutdown(&sub, "subscriber");
    assert_int_equal(got, QUEUED);
    assert_int_equal(read_until_shutdown(&pub, "publisher"), 0);
    assert_int_equal(wait_exit(s, 10000), 0);
    sbt_close(&sub);
    sbt_close(&pub);
}

static void test_shutdown_inflight_publications(void **state)
{
    sbt_server *s = *state;
    sbt_client sub, pub;
    cJSON_Delete(sbt_connect_info(&sub, s->port));
    assert_true(sbt_request_ok(
        &sub, "{\"op\":\"sub\",\"topic\":\"sd\",\"id\":1}", WAIT_MS));
    cJSON_Delete(sbt_connect_info(&pub, s->port));

    /* Half before the signal, half after (writes may fail once the server
     * stops reading and closes). */
    char *buf = malloc((size_t)INFLIGHT * (DATA_LEN + 64));
    assert_non_null(buf);
    size_t n = 0, half = 0;
    for (long i = 0; i < INFLIGHT; i++) {
        n += put_pub(buf + n, i, true);
        if (i == INFLIGHT / 2 - 1)
            half = n;
    }
    assert_int_equal(sbt_send(&pub, buf, half), 0);
    assert_int_equal(kill(s->pid, SIGTERM), 0);
    (void)send(pub.fd, buf + half, n - half, MSG_NOSIGNAL | MSG_DONTWAIT);
    free(buf);

    /* Every ok proves the server read that publication, so it must be
     * routed: the subscriber gets a gap-free prefix covering every ok. */
    long acked = -1;
    for (;;) {
        cJSON *j = sbt_read(&pub, WAIT_MS);
        if (j == NULL)
            fail_msg("publisher: %s after ok %ld, want err shutting_down",
                     pub.eof ? "EOF" : "nothing", acked);
        const char *op = sbt_str(j, "op");
        assert_non_null(op);
        if (strcmp(op, "err") == 0) {
            assert_string_equal(sbt_str(j, "code"), "shutting_down");
            cJSON_Delete(j);
            break;
        }
        assert_string_equal(op, "ok");
        long id = (long)sbt_num(j, "id");
        assert_int_equal(id, acked + 1);
        acked = id;
        cJSON_Delete(j);
    }
    assert_true(sbt_wait_closed(&pub, WAIT_MS));
    long got = read_until_shutdown(&sub, "subscriber");
    fprintf(stderr, "in flight: %ld acknowledged, %ld delivered of %d\n",
            acked + 1, got, INFLIGHT);
    if (got < acked + 1)
        fail_msg("publication %ld was acknowledged but not delivered", got);
    assert_int_equal(wait_exit(s, 10000), 0);
    sbt_close(&sub);
    sbt_close(&pub);
}

static void test_shutdown_sigint_idle_clients(void **state)
{
    sbt_server *s = *state;
    sbt_client c[3];
    for (int i = 0; i < 3; i++) {
        cJSON *info = sbt_connect_info(&c[i], s->port);
        assert_non_null(info);
        cJSON_Delete(info);
    }
    assert_int_equal(kill(s->pid, SIGINT), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(read_until_shutdown(&c[i], "idle client"), 0);
        sbt_close(&c[i]);
    }
    assert_int_equal(wait_exit(s, 10000), 0);
}

static void test_shutdown_drain_limit_stuck_subscriber(void **state)
{
    sbt_server *s = *state;
    sbt_client sub, pub;
    connect_small(&sub, s->port);
    assert_true(sbt_request_ok(
        &sub, "{\"op\":\"sub\",\"topic\":\"sd\",\"id\":1}", WAIT_MS));
    cJSON_Delete(sbt_connect_info(&pub, s->port));
    char *buf = malloc((size_t)QUEUED * (DATA_LEN + 64));
    assert_non_null(buf);
    size_t n = 0;
    for (long i = 0; i < QUEUED; i++)
        n += put_pub(buf + n, i, false);
    assert_int_equal(sbt_send(&pub, buf, n), 0);
    free(buf);
    cJSON *st = sbt_stats(&pub, WAIT_MS);
    assert_non_null(st);
    cJSON_Delete(st);

    /* The subscriber never reads: the server gives up after --drain-ms
     * 500 and still exits 0. */
    long long t0 = sbt_now_ms();
    assert_int_equal(kill(s->pid, SIGTERM), 0);
    assert_int_equal(wait_exit(s, 500 + WAIT_MS), 0);
    fprintf(stderr, "exit %lld ms after SIGTERM with --drain-ms 500\n",
            sbt_now_ms() - t0);
    /* What reached it is a gap-free prefix, and then the connection ends. */
    long got = 0;
    for (;;) {
        cJSON *j = sbt_read(&sub, WAIT_MS);
        if (j == NULL)
            break;
        const char *op = sbt_str(j, "op");
        if (op == NULL || strcmp(op, "msg") != 0) {
            cJSON_Delete(j);
            continue; /* shutting_down, if it fit */
        }
        assert_int_equal(msg_seq(j), got);
        got++;
        cJSON_Delete(j);
    }
    assert_true(sub.eof);
    assert_true(got < QUEUED);
    sbt_close(&sub);
    sbt_close(&pub);
}

/* ---- Start-up failures -------------------------------------------------- */

/* Run sockbusd with `args`: exit status `want` and, when `line_has` is
 * set, exactly one line on stderr containing it. */
static void check_run(const char *const *args, int want, const char *line_has)
{
    char err[4096];
    int st = sbt_run_sockbusd(args, err, sizeof(err), WAIT_MS);
    char cmd[256] = "";
    for (size_t i = 0; args[i] != NULL; i++)
        snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " %s", args[i]);
    if (st != want)
        fail_msg("sockbusd%s: exit %d, want %d (stderr: %s)", cmd, st, want,
                 err);
    if (line_has == NULL)
        return;
    size_t len = strlen(err);
    char *nl = strchr(err, '\n');
    if (len < 2 || nl != err + len - 1)
        fail_msg("sockbusd%s: stderr is not one line: \"%s\"", cmd, err);
    if (strstr(err, line_has) == NULL)
        fail_msg("sockbusd%s: stderr \"%s\" does not name %s", cmd, err,
                 line_has);
}

static void test_shutdown_bind_failure(void **state)
{
    sbt_server *s = *state;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", s->port);
    check_run((const char *const[]){"--listen", addr, NULL}, 2, addr);
    /* The first server is untouched. */
    sbt_client c;
    cJSON *info = sbt_connect_info(&c, s->port);
    assert_non_null(info);
    cJSON_Delete(info);
    sbt_close(&c);
}

static void test_shutdown_bad_flags(void **state)
{
    (void)state;
    static const struct {
        const char *args[4];
        const char *names; /* what the one line must mention */
    } rows[] = {
        {{"--max-frame", "abc"}, "--max-frame"},
        {{"--nope"}, "--nope"},
        {{"--slow-policy", "x"}, "--slow-policy"},
        {{"--listen", "nohost"}, "--listen"},
        {{"--max-conns", "-1"}, "--max-conns"},
        {{"--heartbeat-ms", "1x"}, "--heartbeat-ms"},
        {{"--max-frame"}, "--max-frame"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        check_run(rows[i].args, 2, rows[i].names);
}

static void test_shutdown_help_and_version(void **state)
{
    (void)state;
    check_run((const char *const[]){"--help", NULL}, 0, NULL);
    check_run((const char *const[]){"--version", NULL}, 0, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shutdown_delivers_queued_messages,
                                        setup_long_drain, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_inflight_publications,
                                        setup_long_drain, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_sigint_idle_clients,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_shutdown_drain_limit_stuck_subscriber, setup_short_drain,
            teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_bind_failure, setup,
                                        teardown),
        cmocka_unit_test(test_shutdown_bad_flags),
        cmocka_unit_test(test_shutdown_help_and_version),
    };
    return cmocka_run_group_tests_name("shutdown", tests, NULL, NULL);
}
