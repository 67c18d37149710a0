/* test_auth.c - the token: greeting, refusals before connect, wrong and
 * right tokens, the three ways to configure it, and that it never reaches
 * the server's log. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define TOKEN "s3cret-Tok3n-f0r-the-flag"
#define FILE_TOKEN "t0ken-fr0m-a-file-9f2c"
#define ENV_TOKEN "t0ken-fr0m-the-env-77d1"
#define WAIT_MS 5000

typedef struct fixture {
    sbt_server srv;
    const char *token;   /* the one the server was given */
    char token_file[64]; /* removed by teardown, when set */
} fixture;

/* Start a server with `args`; `token` is what it should require. */
static int start(void **state, const char *token, const char *const *args)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->token = token;
    /* Debug logging gives the server every chance to leak the token. */
    const char *all[16] = {"--log-level", "debug"};
    size_t n = 2;
    for (size_t i = 0; args != NULL && args[i] != NULL && n < 15; i++)
        all[n++] = args[i];
    all[n] = NULL;
    if (sbt_server_start(&f->srv, all) < 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int setup_token(void **state)
{
    return start(state, TOKEN, (const char *const[]){"--token", TOKEN, NULL});
}

static int setup_token_file(void **state)
{
    char path[] = "/tmp/sbt-token-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    /* Only the first line is the token. */
    const char text[] = FILE_TOKEN "\nnot part of the token\n";
    ssize_t w = write(fd, text, sizeof(text) - 1);
    close(fd);
    if (w != (ssize_t)sizeof(text) - 1 ||
        start(state, FILE_TOKEN,
              (const char *const[]){"--token-file", path, NULL}) < 0) {
        unlink(path);
        return -1;
    }
    fixture *f = *state;
    snprintf(f->token_file, sizeof(f->token_file), "%s", path);
    return 0;
}

static int setup_token_env(void **state)
{
    /* The harness forks sockbusd, which inherits our environment. */
    setenv("SOCKBUS_TOKEN", ENV_TOKEN, 1);
    int rc = start(state, ENV_TOKEN, NULL);
    unsetenv("SOCKBUS_TOKEN");
    return rc;
}

/* True when `needle` occurs anywhere in the file at `path`. */
static bool file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return false;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    bool found = false;
    for (;;) {
        if (buf == NULL)
            break;
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (n < cap)
            break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (nb == NULL)
            break;
        buf = nb;
        cap *= 2;
    }
    if (buf != NULL)
        found = memmem(buf, n, needle, strlen(needle)) != NULL;
    free(buf);
    fclose(fp);
    return found;
}

static int teardown(void **state)
{
    fixture *f = *state;
    int rc = 0;
    if (f->srv.pid > 0) {
        int st = sbt_server_stop(&f->srv, SIGTERM, 10000);
        if (st != 0) {
            fprintf(stderr, "sockbusd exited %d on SIGTERM (want 0)\n", st);
            rc = -1;
        }
    }
    if (file_contains(f->srv.log_path, f->token)) {
        fprintf(stderr, "the token appears in %s\n", f->srv.log_path);
        rc = -1;
    }
    if (f->token_file[0] != '\0')
        unlink(f->token_file);
    free(f);
    return rc;
}

/* Connect and check the greeting announces auth. */
static void connect_checked(sbt_client *c, int port)
{
    cJSON *info = sbt_connect_info(c, port);
    assert_non_null(info);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(info, "auth_required")));
    cJSON_Delete(info);
}

/* Read the next frame: an err `code` carrying numeric id `id`. */
static void expect_err_id(sbt_client *c, const char *code, int id)
{
    cJSON *e = sbt_expect(c, "err", WAIT_MS);
    assert_non_null(e);
    assert_string_equal(sbt_str(e, "code"), code);
    assert_non_null(sbt_str(e, "msg"));
    assert_int_equal((int)sbt_num(e, "id"), id);
    cJSON_Delete(e);
}

static void expect_pong(sbt_client *c)
{
    cJSON *p = sbt_expect(c, "pong", WAIT_MS);
    assert_non_null(p);
    cJSON_Delete(p);
}

/* Connect with the right token: the client can then do anything. */
static void login(sbt_client *c, int port, const char *token)
{
    connect_checked(c, port);
    char frame[256];
    snprintf(frame, sizeof(frame),
             "{\"op\":\"connect\",\"token\":\"%s\",\"id\":\"login\"}", token);
    assert_true(sbt_request_ok(c, frame, WAIT_MS));
}

/* Publish `data` on `topic` from `pub` and check `sub` gets it next. */
static void
check_relay(sbt_client *pub, sbt_client *sub, const char *topic, int data)
{
    assert_int_equal(
        sbt_sendf(pub, "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":%d}\n", topic,
                  data),
        0);
    cJSON *m = sbt_expect(sub, "msg", WAIT_MS);
    assert_non_null(m);
    assert_string_equal(sbt_str(m, "topic"), topic);
    assert_int_equal((int)sbt_num(m, "data"), data);
    cJSON_Delete(m);
}

static void test_auth_greeting_says_required(void **state)
{
    fixture *f = *state;
    sbt_client c;
    cJSON *info = sbt_connect_info(&c, f->srv.port);
    assert_non_null(info);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(info, "auth_required")));
    assert_int_equal((int)sbt_num(info, "proto"), 1);
    cJSON_Delete(info);
    sbt_close(&c);
}

static void test_auth_ops_before_connect_refused(void **state)
{
    fixture *f = *state;
    sbt_client watch, pub, c;
    /* An authenticated subscriber sees whether the refused pub leaks. */
    login(&watch, f->srv.port, f->token);
    assert_true(sbt_request_ok(
        &watch, "{\"op\":\"sub\",\"topic\":\"auth.>\",\"id\":1}", WAIT_MS));
    login(&pub, f->srv.port, f->token);

    connect_checked(&c, f->srv.port);
    /* ping is allowed before connect and does not count. */
    assert_int_equal(sbt_sends(&c, "{\"op\":\"ping\",\"id\":10}\n"), 0);
    expect_pong(&c);
    cJSON *ok = sbt_expect(&c, "ok", WAIT_MS);
    assert_non_null(ok);
    cJSON_Delete(ok);
    /* Strike one. */
    assert_int_equal(
        sbt_sends(&c, "{\"op\":\"sub\",\"topic\":\"auth.x\",\"id\":11}\n"), 0);
    expect_err_id(&c, "auth_required", 11);
    /* Strike two: the pub must not be relayed. */
    assert_int_equal(sbt_sends(&c, "{\"op\":\"pub\",\"topic\":\"auth.x\","
                                   "\"data\":\"leak\",\"id\":12}\n"),
                     0);
    expect_err_id(&c, "auth_required", 12);
    /* A frame that does not parse gets its own error and does not count. */
    assert_int_equal(sbt_sends(&c, "not json\n"), 0);
    assert_true(sbt_expect_err(&c, "bad_json", WAIT_MS));
    assert_int_equal(sbt_sends(&c, "{\"op\":\"ping\"}\n"), 0);
    expect_pong(&c);
    /* Strike three (stats counts too): the error, then the close. */
    assert_int_equal(sbt_sends(&c, "{\"op\":\"stats\",\"id\":13}\n"), 0);
    expect_err_id(&c, "auth_required", 13);
    assert_true(sbt_wait_closed(&c, WAIT_MS));
    sbt_close(&c);

    /* Per-publisher order: had the refused pub been relayed, it would
     * have reached `watch` before this marker published afterwards. */
    check_relay(&pub, &watch, "auth.x", 1);
    sbt_close(&pub);
    sbt_close(&watch);
}

static void test_auth_pong_before_connect_counts(void **state)
{
    fixture *f = *state;
    sbt_client c;
    connect_checked(&c, f->srv.port);
    const char *ops[] = {"pong", "unsub", "pub"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sbt_sendf(&c,
                                   "{\"op\":\"%s\",\"topic\":\"a\","
                                   "\"id\":%d}\n",
                                   ops[i], i),
                         0);
        expect_err_id(&c, "auth_required", i);
    }
    assert_true(sbt_wait_closed(&c, WAIT_MS));
    sbt_close(&c);
}

static void test_auth_wrong_token_closes(void **state)
{
    fixture *f = *state;
    /* Wrong, missing, a prefix, one byte longer, and empty. */
    char prefix[64], longer[64];
    snprintf(prefix, sizeof(prefix), "\"%.*s\"", (int)strlen(f->token) - 1,
             f->token);
    snprintf(longer, sizeof(longer), "\"%sx\"", f->token);
    const char *tokens[] = {"\"wrong\"", NULL, prefix, longer, "\"\""};
    for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++) {
        sbt_client c;
        connect_checked(&c, f->srv.port);
        if (tokens[i] != NULL)
            assert_int_equal(sbt_sendf(&c,
                                       "{\"op\":\"connect\",\"token\":%s,"
                                       "\"id\":%zu}\n",
                                       tokens[i], i),
                             0);
        else
            assert_int_equal(
                sbt_sendf(&c, "{\"op\":\"connect\",\"id\":%zu}\n", i), 0);
        expect_err_id(&c, "auth_failed", (int)i);
        if (!sbt_wait_closed(&c, WAIT_MS))
            fail_msg("token %s: connection not closed after auth_failed",
                     tokens[i] ? tokens[i] : "(missing)");
        sbt_close(&c);
    }
}

static void test_auth_right_token_then_everything_works(void **state)
{
    fixture *f = *state;
    sbt_client c, other;
    login(&c, f->srv.port, f->token);
    login(&other, f->srv.port, f->token);
    assert_true(sbt_request_ok(
        &c, "{\"op\":\"sub\",\"topic\":\"auth.ok.*\",\"id\":2}", WAIT_MS));
    /* Its own publication (echo is on by default) and another's. */
    check_relay(&c, &c, "auth.ok.self", 3);
    check_relay(&other, &c, "auth.ok.other", 4);
    cJSON *st = sbt_stats(&c, WAIT_MS);
    assert_non_null(st);
    assert_true(sbt_num(st, "connections") >= 2);
    cJSON_Delete(st);
    assert_true(sbt_request_ok(
        &c, "{\"op\":\"unsub\",\"topic\":\"auth.ok.*\",\"id\":5}", WAIT_MS));
    assert_true(sbt_request_ok(&c, "{\"op\":\"pong\",\"id\":6}", WAIT_MS));
    /* A second connect may change the name... */
    char frame[256];
    snprintf(frame, sizeof(frame),
             "{\"op\":\"connect\",\"token\":\"%s\",\"name\":\"n2\","
             "\"id\":7}",
             f->token);
    assert_true(sbt_request_ok(&c, frame, WAIT_MS));
    /* ...but a wrong token closes even an authenticated connection. */
    assert_int_equal(
        sbt_sends(&c, "{\"op\":\"connect\",\"token\":\"nope\",\"id\":8}\n"), 0);
    expect_err_id(&c, "auth_failed", 8);
    assert_true(sbt_wait_closed(&c, WAIT_MS));
    sbt_close(&c);
    sbt_close(&other);
}

/* For the servers configured by file and by environment. */
static void test_auth_configured_token_required(void **state)
{
    fixture *f = *state;
    sbt_client c;
    connect_checked(&c, f->srv.port);
    assert_int_equal(sbt_sends(&c, "{\"op\":\"sub\",\"topic\":\"a\","
                                   "\"id\":1}\n"),
                     0);
    expect_err_id(&c, "auth_required", 1);
    /* The flag's token is not this server's. */
    assert_int_equal(sbt_sends(&c, "{\"op\":\"connect\",\"token\":\"" TOKEN
                                   "\",\"id\":2}\n"),
                     0);
    expect_err_id(&c, "auth_failed", 2);
    assert_true(sbt_wait_closed(&c, WAIT_MS));
    sbt_close(&c);

    login(&c, f->srv.port, f->token);
    assert_true(sbt_request_ok(
        &c, "{\"op\":\"sub\",\"topic\":\"cfg\",\"id\":3}", WAIT_MS));
    check_relay(&c, &c, "cfg", 9);
    sbt_close(&c);
}

static void test_auth_token_file_whole_file_is_wrong(void **state)
{
    fixture *f = *state;
    sbt_client c;
    connect_checked(&c, f->srv.port);
    /* Only the first line counts: the line with its newline is wrong. */
    assert_int_equal(sbt_sends(&c, "{\"op\":\"connect\",\"token\":\"" FILE_TOKEN
                                   "\\n\",\"id\":1}\n"),
                     0);
    expect_err_id(&c, "auth_failed", 1);
    assert_true(sbt_wait_closed(&c, WAIT_MS));
    sbt_close(&c);
}

static void test_auth_token_never_logged(void **state)
{
    fixture *f = *state;
    /* Every path that might log a frame or a close: good and bad logins,
     * and strikes on frames that carry the token. */
    sbt_client c;
    login(&c, f->srv.port, f->token);
    sbt_close(&c);
    connect_checked(&c, f->srv.port);
    assert_int_equal(
        sbt_sendf(&c, "{\"op\":\"connect\",\"token\":\"%s-no\"}\n", f->token),
        0);
    assert_true(sbt_expect_err(&c, "auth_failed", WAIT_MS));
    assert_true(sbt_wait_closed(&c, WAIT_MS));
    sbt_close(&c);
    connect_checked(&c, f->srv.port);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sbt_sendf(&c,
                                   "{\"op\":\"pub\",\"topic\":\"t\","
                                   "\"token\":\"%s\"}\n",
                                   f->token),
                         0);
        assert_true(sbt_expect_err(&c, "auth_required", WAIT_MS));
    }
    assert_true(sbt_wait_closed(&c, WAIT_MS));
    sbt_close(&c);

    /* Stop first, so the log holds everything the server will write. */
    assert_int_equal(sbt_server_stop(&f->srv, SIGTERM, 10000), 0);
    if (file_contains(f->srv.log_path, f->token))
        fail_msg("the token appears in %s", f->srv.log_path);
    /* The log is there and was written to (not vacuously clean). */
    assert_true(file_contains(f->srv.log_path, "auth_failed") ||
                file_contains(f->srv.log_path, "close"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth_greeting_says_required,
                                        setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_auth_ops_before_connect_refused,
                                        setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_auth_pong_before_connect_counts,
                                        setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_auth_wrong_token_closes,
                                        setup_token, teardown),
        cmocka_unit_test_setup_teardown(
            test_auth_right_token_then_everything_works, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_auth_token_never_logged,
                                        setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_auth_configured_token_required,
                                        setup_token_file, teardown),
        cmocka_unit_test_setup_teardown(
            test_auth_token_file_whole_file_is_wrong, setup_token_file,
            teardown),
        cmocka_unit_test_setup_teardown(test_auth_token_never_logged,
                                        setup_token_file, teardown),
        cmocka_unit_test_setup_teardown(test_auth_configured_token_required,
                                        setup_token_env, teardown),
        cmocka_unit_test_setup_teardown(test_auth_token_never_logged,
                                        setup_token_env, teardown),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
