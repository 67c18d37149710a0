/* test_embed.c - the embedding API (sockbus.h) with real TCP clients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "sockbus.h"

/* What a callback saw, guarded by `lock`; the test thread waits on `cond`
 * with a deadline. */
typedef struct seen {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n;
    char last_topic[64];
    char last_data[256];
    char last_reply[64];
    int notices;
    char last_notice[64];
    pthread_mutex_t *gate; /* when set, callbacks block on it */
} seen;

static void seen_init(seen *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void on_msg(const sb_message *m, void *ud)
{
    seen *s = ud;
    if (s->gate) {
        pthread_mutex_lock(s->gate);
        pthread_mutex_unlock(s->gate);
    }
    pthread_mutex_lock(&s->lock);
    s->n++;
    snprintf(s->last_topic, sizeof(s->last_topic), "%s", m->topic);
    snprintf(s->last_data, sizeof(s->last_data), "%.*s", (int)m->data_len,
             m->data);
    snprintf(s->last_reply, sizeof(s->last_reply), "%s",
             m->reply ? m->reply : "");
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void on_notice(sb_err code, const char *msg, void *ud)
{
    seen *s = ud;
    pthread_mutex_lock(&s->lock);
    s->notices++;
    snprintf(s->last_notice, sizeof(s->last_notice), "%s %s", sb_err_str(code),
             msg);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Wait until the callback count reaches `n` (bounded). */
static bool wait_seen(seen *s, int n, int timeout_ms)
{
    long long deadline = sbt_now_ms() + timeout_ms;
    pthread_mutex_lock(&s->lock);
    while (s->n < n && sbt_now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
    bool ok = s->n >= n;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static sb_server *start(sb_slow_policy policy, size_t send_queue)
{
    sb_config cfg;
    sb_config_defaults(&cfg);
    snprintf(cfg.listen_host, sizeof(cfg.listen_host), "127.0.0.1");
    cfg.listen_port = 0;
    cfg.log_level = 1;
    cfg.slow_policy = policy;
    cfg.send_queue = send_queue;
    sb_server *srv = NULL;
    char err[256];
    int rc = sb_server_start(&cfg, &srv, err, sizeof(err));
    if (rc < 0)
        fail_msg("start: %s", err);
    return srv;
}

static void test_embed_publish_and_subscribe(void **state)
{
    (void)state;
    sb_server *srv = start(SB_SLOW_DISCONNECT, 1024);
    seen s;
    seen_init(&s);
    sb_subscription *sub;
    assert_int_equal(
        sb_server_subscribe(srv, "orders.*", NULL, on_msg, on_notice, &s, &sub),
        0);
    /* From C. */
    const char *d = "{\"id\":1}";
    assert_int_equal(
        sb_server_publish(srv, "orders.new", d, strlen(d), "inbox.9", 1000), 0);
    assert_true(wait_seen(&s, 1, 5000));
    assert_string_equal(s.last_topic, "orders.new");
    assert_string_equal(s.last_data, d);
    assert_string_equal(s.last_reply, "inbox.9");

    /* From a TCP client, and to a TCP subscriber. */
    sbt_client c;
    cJSON_Delete(sbt_connect_info(&c, sb_server_port(srv)));
    assert_true(sbt_request_ok(&c,
                               "{\"op\":\"sub\",\"topic\":\"orders.>\","
                               "\"id\":1}",
                               5000));
    sbt_sends(&c, "{\"op\":\"pub\",\"topic\":\"orders.tcp\",\"data\":[1]}\n");
    assert_true(wait_seen(&s, 2, 5000));
    assert_string_equal(s.last_data, "[1]");
    cJSON *m = sbt_expect(&c, "msg", 5000); /* its own, echo on */
    assert_non_null(m);
    cJSON_Delete(m);
    assert_int_equal(sb_server_publish(srv, "orders.c", NULL, 0, NULL, 1000),
                     0);
    assert_true(wait_seen(&s, 3, 5000)); /* orders.* matches too */
    m = sbt_expect(&c, "msg", 5000);
    assert_non_null(m);
    assert_string_equal(sbt_str(m, "topic"), "orders.c");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(m, "data")));
    cJSON_Delete(m);

    /* Stats count the in-process subscription. */
    cJSON *st = sbt_stats(&c, 5000);
    assert_non_null(st);
    assert_int_equal((int)sbt_num(st, "subscriptions"), 2);
    cJSON_Delete(st);

    /* After unsubscribe, no more callbacks. */
    assert_int_equal(sb_server_unsubscribe(sub), 0);
    assert_int_equal(sb_server_publish(srv, "orders.after", "1", 1, NULL, 1000),
                     0);
    m = sbt_expect(&c, "msg", 5000); /* the TCP subscriber still gets it */
    assert_non_null(m);
    cJSON_Delete(m);
    pthread_mutex_lock(&s.lock);
    assert_int_equal(s.n, 3);
    pthread_mutex_unlock(&s.lock);
    sbt_close(&c);
    sb_server_stop(srv);
}

static void test_embed_rejects_bad_input(void **state)
{
    (void)state;
    sb_server *srv = start(SB_SLOW_DISCONNECT, 1024);
    seen s;
    seen_init(&s);
    sb_subscription *sub;
    assert_int_equal(sb_server_publish(srv, "a.*", "1", 1, NULL, 0), -EINVAL);
    assert_int_equal(sb_server_publish(srv, "a", "{", 1, NULL, 0), -EINVAL);
    assert_int_equal(sb_server_publish(srv, "a", "1", 1, "r.>", 0), -EINVAL);
    assert_int_equal(
        sb_server_subscribe(srv, "a.>.b", NULL, on_msg, NULL, &s, &sub),
        -EINVAL);
    assert_int_equal(
        sb_server_subscribe(srv, "a", "bad group", on_msg, NULL, &s, &sub),
        -EINVAL);
    sb_server_stop(srv);
}

/* A callback that blocks must not stall a TCP subscriber or the publisher;
 * under the drop policy it is told how much it lost. */
static void test_embed_slow_callback_isolated(void **state)
{
    (void)state;
    sb_server *srv = start(SB_SLOW_DROP, 100);
    pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    seen s;
    seen_init(&s);
    s.gate = &gate;
    pthread_mutex_lock(&gate);
    sb_subscription *sub;
    assert_int_equal(
        sb_server_subscribe(srv, "flood", NULL, on_msg, on_notice, &s, &sub),
        0);
    sbt_client c;
    cJSON_Delete(sbt_connect_info(&c, sb_server_port(srv)));
    assert_true(sbt_request_ok(&c,
                               "{\"op\":\"sub\",\"topic\":\"flood\","
                               "\"id\":1}",
                               5000));
    enum { N = 1000 };
    for (int i = 0; i < N; i++) {
        char d[16];
        int n = snprintf(d, sizeof(d), "%d", i);
        assert_int_equal(
            sb_server_publish(srv, "flood", d, (size_t)n, NULL, 5000), 0);
        /* Keep the TCP subscriber's queue (also 100) from filling. */
        cJSON *m = sbt_expect(&c, "msg", 5000);
        assert_non_null(m);
        assert_int_equal((int)sbt_num(m, "data"), i);
        cJSON_Delete(m);
    }
    pthread_mutex_unlock(&gate);
    /* The blocked subscriber got at most its queue plus the batch its
     * thread had popped, and a notice for the rest once it caught up. */
    long long deadline = sbt_now_ms() + 5000;
    pthread_mutex_lock(&s.lock);
    while (s.notices == 0 && sbt_now_ms() < deadline) {
        pthread_mutex_unlock(&s.lock);
        wait_seen(&s, s.n + 1, 50);
        pthread_mutex_lock(&s.lock);
    }
    assert_int_equal(s.notices, 1);
    assert_true(s.n <= 100 + 64 + 1);
    assert_non_null(strstr(s.last_notice, "slow_consumer dropped"));
    pthread_mutex_unlock(&s.lock);
    cJSON *st = sbt_stats(&c, 5000);
    assert_non_null(st);
    assert_true(sbt_num(st, "dropped") >= N - (100 + 64 + 1));
    cJSON_Delete(st);
    sbt_close(&c);
    assert_int_equal(sb_server_unsubscribe(sub), 0);
    sb_server_stop(srv);
}

/* Interest changes reach the observer: first holder adds, last removes. */
typedef struct interest {
    pthread_mutex_t lock;
    char log[1024];
} interest;

static void on_interest(
    const char *p, size_t pl, const char *g, size_t gl, int added, void *ud)
{
    interest *it = ud;
    pthread_mutex_lock(&it->lock);
    size_t n = strlen(it->log);
    snprintf(it->log + n, sizeof(it->log) - n, "%c%.*s/%.*s ",
             added ? '+' : '-', (int)pl, p, (int)gl, g ? g : "");
    pthread_mutex_unlock(&it->lock);
}

static void test_embed_interest_observer(void **state)
{
    (void)state;
    sb_server *srv = start(SB_SLOW_DISCONNECT, 1024);
    interest it = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sbt_client a, b;
    cJSON_Delete(sbt_connect_info(&a, sb_server_port(srv)));
    cJSON_Delete(sbt_connect_info(&b, sb_server_port(srv)));
    assert_true(sbt_request_ok(&a,
                               "{\"op\":\"sub\",\"topic\":\"x.>\","
                               "\"id\":1}",
                               5000));
    sb_server_set_observer(srv, on_interest, &it);
    assert_true(sbt_request_ok(&b,
                               "{\"op\":\"sub\",\"topic\":\"x.>\","
                               "\"id\":1}",
                               5000));
    assert_true(sbt_request_ok(&b,
                               "{\"op\":\"sub\",\"topic\":\"y\","
                               "\"group\":\"g\",\"id\":2}",
                               5000));
    assert_true(sbt_request_ok(&a,
                               "{\"op\":\"unsub\",\"topic\":\"x.>\","
                               "\"id\":3}",
                               5000));
    sbt_close(&b); /* drops x.> (last holder) and y/g */
    /* A barrier through the bus: a sub/ok on another connection is handled
     * after b's detach only if b's close was seen first, so wait for the
     * stats to show no subscriptions instead. */
    long long deadline = sbt_now_ms() + 5000;
    for (;;) {
        cJSON *st = sbt_stats(&a, 5000);
        assert_non_null(st);
        int subs = (int)sbt_num(st, "subscriptions");
        cJSON_Delete(st);
        if (subs == 0 || sbt_now_ms() > deadline)
            break;
    }
    sb_server_set_observer(srv, NULL, NULL);
    assert_true(sbt_request_ok(&a,
                               "{\"op\":\"sub\",\"topic\":\"z\","
                               "\"id\":4}",
                               5000));
    pthread_mutex_lock(&it.lock);
    const char *want = "+x.>/ +y/g -x.>/ -y/g ";
    const char *alt = "+x.>/ +y/g -y/g -x.>/ ";
    if (strcmp(it.log, want) != 0 && strcmp(it.log, alt) != 0)
        fail_msg("observer saw \"%s\"", it.log);
    pthread_mutex_unlock(&it.lock);
    sbt_close(&a);
    sb_server_stop(srv);
}

#ifdef SOCKBUS_EMBED_EXAMPLE_PATH
/* The example program prints every message matching its pattern. */
static void test_embed_example_program(void **state)
{
    (void)state;
    int out[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl(SOCKBUS_EMBED_EXAMPLE_PATH, "sockbus-embed-example", "ex.>",
              "--listen", "127.0.0.1:0", "--log-level", "error", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    sbt_client r = {.fd = out[0]};
    char *ready = sbt_read_line(&r, 10000);
    assert_non_null(ready);
    const char *colon = strrchr(ready, ':');
    assert_non_null(colon);
    int port = atoi(colon + 1);
    free(ready);
    sbt_client c;
    cJSON_Delete(sbt_connect_info(&c, port));
    sbt_sends(&c, "{\"op\":\"pub\",\"topic\":\"other\",\"data\":0}\n"
                  "{\"op\":\"pub\",\"topic\":\"ex.a\",\"data\":{\"k\":1}}\n");
    char *line = sbt_read_line(&r, 5000);
    assert_non_null(line);
    assert_string_equal(line, "ex.a {\"k\":1}");
    free(line);
    sbt_close(&c);
    kill(pid, SIGTERM);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    sbt_close(&r);
}
#endif

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_publish_and_subscribe),
        cmocka_unit_test(test_embed_rejects_bad_input),
        cmocka_unit_test(test_embed_slow_callback_isolated),
        cmocka_unit_test(test_embed_interest_observer),
#ifdef SOCKBUS_EMBED_EXAMPLE_PATH
        cmocka_unit_test(test_embed_example_program),
#endif
    };
    return cmocka_run_group_tests_name("embed", tests, NULL, NULL);
}
