/* test_slow.c - a subscriber that never reads while a publisher floods:
 * under both slow-consumer policies the publisher and a healthy subscriber
 * are not held back, and the stuck one is cut off or told what it missed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define N_MSGS 200000L
#define DATA_LEN 1000 /* the data string; a frame is about 1 KiB */
#define SEND_QUEUE "1000"
#define PUB_DEADLINE_MS 30000
#define WAIT_MS 10000 /* longest wait for progress on any one socket */
#define BATCH 256     /* frames per write of the publisher */
/* Messages the publisher may be ahead of the healthy subscriber. Below
 * SEND_QUEUE, so the healthy one can never be a slow consumer however the
 * threads are scheduled: without it, on two CPUs, a reader thread that
 * misses one time slice falls 1000 messages behind a publisher writing
 * 700k messages a second, and the server rightly cuts it off too. */
#define WINDOW 512

static const char msg_prefix[] =
    "{\"op\":\"msg\",\"topic\":\"flood\",\"data\":\"";

static int start(void **state, const char *policy)
{
    sbt_server *s = calloc(1, sizeof(*s));
    const char *const args[] = {"--slow-policy", policy, "--send-queue",
                                SEND_QUEUE, NULL};
    if (s == NULL || sbt_server_start(s, args) < 0) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static int setup_disconnect(void **state)
{
    return start(state, "disconnect");
}

static int setup_drop(void **state)
{
    return start(state, "drop");
}

static int teardown(void **state)
{
    sbt_server *s = *state;
    int st = sbt_server_stop(s, SIGTERM, 10000);
    if (st != 0)
        fprintf(stderr, "sockbusd exited %d on SIGTERM (want 0)\n", st);
    free(s);
    return st == 0 ? 0 : -1;
}

/* Connect with a small receive buffer set before the handshake (it sets
 * the TCP window), then read the greeting. */
static void connect_small(sbt_client *c, int port)
{
    assert_int_equal(sbt_connect_rcvbuf(c, port, 4096), 0);
    cJSON *info = sbt_expect(c, "info", WAIT_MS);
    assert_non_null(info);
    cJSON_Delete(info);
}

/* The data string of message `seq`: its number, then padding. */
static void fill_data(char *d, long seq)
{
    snprintf(d, 9, "%08ld", seq);
    memset(d + 8, 'x', DATA_LEN - 8);
}

/* The sequence number of a flood msg line, or -1 (with `why` set) when
 * the line is anything else. */
static long parse_msg(const char *line, size_t n, char *why, size_t whylen)
{
    size_t pre = sizeof(msg_prefix) - 1;
    long seq = -1;
    /* Fast path: the relay passes data through byte for byte. */
    if (n == pre + DATA_LEN + 2 && memcmp(line, msg_prefix, pre) == 0 &&
        memcmp(line + n - 2, "\"}", 2) == 0) {
        char d[DATA_LEN + 1];
        seq = strtol(line + pre, NULL, 10);
        fill_data(d, seq);
        if (memcmp(line + pre, d, DATA_LEN) == 0)
            return seq;
    }
    /* Anything else must still mean the same frame. */
    char *text = strndup(line, n);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    const char *op = sbt_str(j, "op"), *topic = sbt_str(j, "topic");
    const char *data = sbt_str(j, "data");
    seq = -1;
    if (op && strcmp(op, "msg") == 0 && topic && strcmp(topic, "flood") == 0 &&
        data && strlen(data) == DATA_LEN) {
        char d[DATA_LEN + 1];
        seq = strtol(data, NULL, 10);
        fill_data(d, seq);
        if (memcmp(data, d, DATA_LEN) != 0)
            seq = -1;
    }
    if (seq < 0)
        snprintf(why, whylen, "not a flood msg: %.120s", text ? text : "?");
    cJSON_Delete(j);
    free(text);
    return seq;
}

/* ---- The healthy subscriber, on its own thread ------------------------- */

typedef struct reader {
    sbt_client *c;
    pthread_mutex_t lock;
    pthread_cond_t moved; /* `got` grew, or the reader stopped */
    long got;             /* messages received in order, under `lock` */
    bool done;            /* under `lock` */
    long long ms;         /* time taken */
    char err[256];        /* the first problem, or empty */
} reader;

/* Scan complete lines of buf[0..n); returns the bytes consumed. */
static size_t scan_lines(reader *r, const char *buf, size_t n)
{
    size_t off = 0;
    for (;;) {
        const char *nl = memchr(buf + off, '\n', n - off);
        if (nl == NULL || r->err[0] != '\0')
            return off;
        size_t len = (size_t)(nl - (buf + off));
        long seq = parse_msg(buf + off, len, r->err, sizeof(r->err));
        if (seq >= 0 && seq != r->got)
            snprintf(r->err, sizeof(r->err),
                     "message %ld arrived as number %ld", seq, r->got);
        if (r->err[0] == '\0') {
            pthread_mutex_lock(&r->lock);
            r->got++;
            pthread_mutex_unlock(&r->lock);
        }
        off += len + 1;
    }
}

static void *read_all(void *arg)
{
    reader *r = arg;
    long long t0 = sbt_now_ms();
    size_t cap = 4 << 20, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        return NULL;
    }
    /* Bytes the harness already buffered come first. */
    if (r->c->len > 0 && r->c->len <= cap) {
        memcpy(buf, r->c->buf, r->c->len);
        n = r->c->len;
        r->c->len = 0;
    }
    while (r->got < N_MSGS && r->err[0] == '\0') {
        size_t used = scan_lines(r, buf, n);
        pthread_cond_broadcast(&r->moved);
        memmove(buf, buf + used, n - used);
        n -= used;
        if (r->got >= N_MSGS || r->err[0] != '\0')
            break;
        struct pollfd p = {.fd = r->c->fd, .events = POLLIN};
        int k = poll(&p, 1, WAIT_MS);
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0) {
            snprintf(r->err, sizeof(r->err),
                     "nothing for %d ms after message %ld", WAIT_MS, r->got);
            break;
        }
        ssize_t got = recv(r->c->fd, buf + n, cap - n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            snprintf(r->err, sizeof(r->err),
                     "connection closed after message %ld (%s)", r->got,
                     got == 0 ? "eof" : strerror(errno));
            break;
        }
        n += (size_t)got;
    }
    if (n > 0 && r->err[0] == '\0')
        snprintf(r->err, sizeof(r->err), "%zu bytes after the last message", n);
    free(buf);
    r->ms = sbt_now_ms() - t0;
    pthread_mutex_lock(&r->lock);
    r->done = true;
    pthread_cond_broadcast(&r->moved);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ---- The publisher ------------------------------------------------------ */

/* Wait until the healthy reader has `want` messages, or stopped, or the
 * deadline passed. Returns true when it has them. */
static bool wait_reader(reader *r, long want, long long deadline)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long left = deadline - sbt_now_ms();
    if (left < 0)
        left = 0;
    ts.tv_sec += (time_t)(left / 1000);
    ts.tv_nsec += (long)(left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&r->lock);
    int rc = 0;
    while (r->got < want && !r->done && rc == 0)
        rc = pthread_cond_timedwait(&r->moved, &r->lock, &ts);
    bool ok = r->got >= want;
    pthread_mutex_unlock(&r->lock);
    return ok;
}

/* Publish messages 0..N_MSGS-1, pipelined, at most WINDOW ahead of the
 * healthy reader `r`. Returns the time taken, or -1 with `why` set when
 * the writes did not finish by the deadline. */
static long long flood(sbt_client *pub, reader *r, char *why, size_t whylen)
{
    size_t frame =
        sizeof("{\"op\":\"pub\",\"topic\":\"flood\",\"data\":\"\"}\n") - 1 +
        DATA_LEN;
    char *buf = malloc(frame * BATCH + 1);
    assert_non_null(buf);
    long long t0 = sbt_now_ms(), deadline = t0 + PUB_DEADLINE_MS;
    for (long seq = 0; seq < N_MSGS;) {
        if (!wait_reader(r, seq + BATCH - WINDOW, deadline)) {
            snprintf(why, whylen,
                     "healthy subscriber stalled: %ld of %ld messages "
                     "published",
                     seq, N_MSGS);
            free(buf);
            return -1;
        }
        size_t n = 0;
        for (int i = 0; i < BATCH && seq < N_MSGS; i++, seq++) {
            n += (size_t)sprintf(buf + n, "{\"op\":\"pub\",\"topic\":\"flood\","
                                          "\"data\":\"");
            fill_data(buf + n, seq);
            n += DATA_LEN;
            n += (size_t)sprintf(buf + n, "\"}\n");
        }
        if (sbt_send_by(pub->fd, buf, n, deadline) < 0) {
            snprintf(why, whylen,
                     "publisher blocked: %ld of %ld messages written in %d ms",
                     seq - BATCH, N_MSGS, PUB_DEADLINE_MS);
            free(buf);
            return -1;
        }
    }
    free(buf);
    return sbt_now_ms() - t0;
}

/* ---- The scenario ------------------------------------------------------- */

typedef struct scene {
    sbt_client stuck, healthy, pub;
    reader r;
    long long pub_ms;
} scene;

static void subscribe(sbt_client *c)
{
    assert_true(sbt_request_ok(
        c, "{\"op\":\"sub\",\"topic\":\"flood\",\"id\":\"flood\"}", WAIT_MS));
}

/* Set up both subscribers, flood, and wait for the healthy one to read
 * everything. The stuck one has not read a byte since its sub. */
static void run_flood(scene *sc, int port)
{
    /* A tiny window on the stuck one fills the server's queue fast. */
    connect_small(&sc->stuck, port);
    subscribe(&sc->stuck);
    cJSON *info = sbt_connect_info(&sc->healthy, port);
    assert_non_null(info);
    cJSON_Delete(info);
    subscribe(&sc->healthy);
    cJSON_Delete(sbt_connect_info(&sc->pub, port));

    pthread_t t;
    sc->r = (reader){.c = &sc->healthy};
    pthread_mutex_init(&sc->r.lock, NULL);
    pthread_cond_init(&sc->r.moved, NULL);
    assert_int_equal(pthread_create(&t, NULL, read_all, &sc->r), 0);
    char why[128] = "";
    sc->pub_ms = flood(&sc->pub, &sc->r, why, sizeof(why));
    if (sc->pub_ms < 0)
        shutdown(sc->healthy.fd, SHUT_RDWR); /* let the reader stop */
    pthread_join(t, NULL);
    pthread_cond_destroy(&sc->r.moved);
    pthread_mutex_destroy(&sc->r.lock);
    fprintf(stderr,
            "flood: published %ld x %d B in %lld ms; healthy read %ld in "
            "%lld ms\n",
            N_MSGS, DATA_LEN, sc->pub_ms, sc->r.got, sc->r.ms);
    if (sc->pub_ms < 0)
        fail_msg("%s", why);
    if (sc->r.err[0] != '\0')
        fail_msg("healthy subscriber: %s", sc->r.err);
    assert_int_equal(sc->r.got, N_MSGS);
}

static cJSON *stats(sbt_client *c)
{
    cJSON *st = sbt_stats(c, WAIT_MS);
    assert_non_null(st);
    return st;
}

/* Publish a marker after the flood: per-publisher order puts anything the
 * flood still owed `c` before it. Check it is the next frame. */
static void expect_marker(sbt_client *c, const char *who)
{
    cJSON *m = sbt_read(c, WAIT_MS);
    const char *data = sbt_str(m, "data");
    if (m == NULL || strcmp(sbt_str(m, "op") ? sbt_str(m, "op") : "", "msg") ||
        data == NULL || strcmp(data, "end") != 0) {
        char *t = m ? cJSON_PrintUnformatted(m) : NULL;
        fail_msg("%s: want the end marker, got %.200s", who, t ? t : "nothing");
    }
    cJSON_Delete(m);
}

static void publish_marker(sbt_client *pub)
{
    assert_true(sbt_request_ok(pub,
                               "{\"op\":\"pub\",\"topic\":\"flood\","
                               "\"data\":\"end\",\"id\":\"end\"}",
                               WAIT_MS));
}

static void test_slow_disconnect(void **state)
{
    sbt_server *s = *state;
    scene *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    run_flood(sc, s->port);

    /* Every publication is routed (the healthy one has them all), so the
     * stuck one has hit its limit by now. */
    cJSON *st = stats(&sc->pub);
    double slow = sbt_num(st, "slow_consumers");
    cJSON_Delete(st);
    if (slow < 1)
        fail_msg("stats slow_consumers %.0f, want >= 1", slow);
    /* It is cut off without having read: the server counts two clients. */
    long long deadline = sbt_now_ms() + WAIT_MS;
    double conns;
    for (;;) {
        st = stats(&sc->pub);
        conns = sbt_num(st, "connections");
        cJSON_Delete(st);
        if (conns == 2 || sbt_now_ms() >= deadline)
            break;
    }
    if (conns != 2)
        fail_msg("stats connections %.0f, want 2 once the stuck one is "
                 "disconnected",
                 conns);

    /* What it gets when it reads at last: the messages that fit in the
     * pipe, in order from the first, then maybe slow_consumer, then EOF. */
    long got = 0;
    bool told = false;
    for (;;) {
        char *line = sbt_read_line(&sc->stuck, WAIT_MS);
        if (line == NULL)
            break;
        if (told)
            fail_msg("stuck: frame after slow_consumer: %.120s", line);
        char why[256] = "";
        long seq = parse_msg(line, strlen(line), why, sizeof(why));
        if (seq < 0) {
            cJSON *j = cJSON_Parse(line);
            const char *code = sbt_str(j, "code");
            const char *op = sbt_str(j, "op");
            told = op && strcmp(op, "err") == 0 && code &&
                   strcmp(code, "slow_consumer") == 0;
            cJSON_Delete(j);
            if (!told)
                fail_msg("stuck: %s", why);
        } else if (seq != got) {
            fail_msg("stuck: message %ld arrived as number %ld", seq, got);
        } else {
            got++;
        }
        free(line);
    }
    if (!sc->stuck.eof)
        fail_msg("stuck: no EOF within %d ms after %ld messages", WAIT_MS, got);
    assert_true(got < N_MSGS);
    fprintf(stderr, "stuck: %ld messages%s, then EOF\n", got,
            told ? ", slow_consumer" : "");

    /* The others carry on. */
    publish_marker(&sc->pub);
    expect_marker(&sc->healthy, "healthy");
    sbt_close(&sc->stuck);
    sbt_close(&sc->healthy);
    sbt_close(&sc->pub);
    free(sc);
}

static void test_slow_drop(void **state)
{
    sbt_server *s = *state;
    scene *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    run_flood(sc, s->port);

    cJSON *st = stats(&sc->pub);
    double slow = sbt_num(st, "slow_consumers");
    double dropped = sbt_num(st, "dropped");
    double conns = sbt_num(st, "connections");
    cJSON_Delete(st);
    if (slow < 1)
        fail_msg("stats slow_consumers %.0f, want >= 1", slow);
    if (dropped < 1)
        fail_msg("stats dropped %.0f, want > 0", dropped);
    if (conns != 3)
        fail_msg("stats connections %.0f, want 3 (the stuck one stays)", conns);

    /* Reading at last: messages in order, and notices (one per time its
     * queue overflowed and then had room) accounting for every message it
     * did not get. */
    long got = 0, last = -1;
    unsigned long long notices = 0, told = 0;
    while (got + (long)told < N_MSGS) {
        char *line = sbt_read_line(&sc->stuck, WAIT_MS);
        if (line == NULL)
            fail_msg("stuck: %s after %ld messages and %llu dropped",
                     sc->stuck.eof ? "closed" : "nothing", got, told);
        char why[256] = "";
        long seq = parse_msg(line, strlen(line), why, sizeof(why));
        if (seq >= 0) {
            /* A notice goes out whenever the queue has room again, so
             * messages may follow one; order must hold throughout. */
            if (seq <= last)
                fail_msg("stuck: message %ld after %ld", seq, last);
            last = seq;
            got++;
            free(line);
            continue;
        }
        cJSON *j = cJSON_Parse(line);
        const char *code = sbt_str(j, "code"), *msg = sbt_str(j, "msg");
        unsigned long long n = 0;
        char want[64] = "";
        if (code && strcmp(code, "slow_consumer") == 0 && msg &&
            sscanf(msg, "dropped %llu", &n) == 1)
            snprintf(want, sizeof(want), "dropped %llu messages", n);
        const char *op = sbt_str(j, "op");
        if (n == 0 || strcmp(msg, want) != 0 || op == NULL ||
            strcmp(op, "err") != 0)
            fail_msg("stuck: want a msg or slow_consumer \"dropped N "
                     "messages\", got %.160s",
                     line);
        notices++;
        told += n;
        cJSON_Delete(j);
        free(line);
    }
    fprintf(stderr, "stuck: %ld messages, then dropped %llu (stats %.0f)\n",
            got, told, dropped);
    assert_true(got > 0);
    assert_true(notices >= 1);
    if ((double)told != dropped)
        fail_msg("notice says %llu dropped, stats dropped %.0f", told, dropped);

    /* Still connected: nothing else was owed to it, the marker is next. */
    publish_marker(&sc->pub);
    expect_marker(&sc->stuck, "stuck");
    expect_marker(&sc->healthy, "healthy");
    assert_int_equal(sbt_sends(&sc->stuck, "{\"op\":\"ping\"}\n"), 0);
    cJSON *pong = sbt_expect(&sc->stuck, "pong", WAIT_MS);
    assert_non_null(pong);
    cJSON_Delete(pong);
    st = stats(&sc->pub);
    assert_true(sbt_num(st, "dropped") == dropped);
    cJSON_Delete(st);
    sbt_close(&sc->stuck);
    sbt_close(&sc->healthy);
    sbt_close(&sc->pub);
    free(sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_slow_disconnect, setup_disconnect,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_slow_drop, setup_drop, teardown),
    };
    return cmocka_run_group_tests_name("slow", tests, NULL, NULL);
}
