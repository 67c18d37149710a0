/* test_bench.c - the load tool against the real sockbusd: its JSON report
 * is complete and consistent, groups, pacing, idle connections, and clear
 * failures when there is no server or the server goes away. Also the queue
 * bench's hand-over mode. */
#define _GNU_SOURCE /* pipe2 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#ifndef SOCKBUS_BENCH_PATH
#error "SOCKBUS_BENCH_PATH must name the sockbus-bench binary"
#endif
#ifndef SOCKBUS_QUEUE_BENCH_PATH
#error "SOCKBUS_QUEUE_BENCH_PATH must name the sockbus-queue-bench binary"
#endif

#define RUN_TIMEOUT_MS 60000

/* What one run of the bench printed and how it ended. */
typedef struct bench_run {
    int status;   /* exit status, or -1 when it had to be killed */
    char *out;    /* stdout, NUL-terminated (owned) */
    char *err;    /* stderr, NUL-terminated (owned) */
    long long ms; /* wall time */
} bench_run;

static void run_free(bench_run *r)
{
    free(r->out);
    free(r->err);
}

static pid_t
spawn(const char *path, const char *const *args, int out[2], int err[2])
{
    const char *argv[40];
    size_t n = 0;
    argv[n++] = path;
    for (size_t i = 0; args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        close(out[0]);
        close(err[0]);
        execv(path, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    return pid;
}

/* Reads both pipes until EOF or the deadline; then reaps the child,
 * killing it first if it is still running. */
static void collect(bench_run *r, pid_t pid, int out, int err, long long start)
{
    size_t olen = 0, elen = 0;
    bool oopen = true, eopen = true;
    long long deadline = start + RUN_TIMEOUT_MS;
    while ((oopen || eopen) && sbt_now_ms() < deadline) {
        struct pollfd p[2] = {{.fd = oopen ? out : -1, .events = POLLIN},
                              {.fd = eopen ? err : -1, .events = POLLIN}};
        if (poll(p, 2, (int)(deadline - sbt_now_ms())) <= 0)
            continue;
        if (p[0].revents)
            oopen = sbt_drain_fd(out, &r->out, &olen);
        if (p[1].revents)
            eopen = sbt_drain_fd(err, &r->err, &elen);
    }
    int st = 0;
    if (oopen || eopen)
        kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    r->status = (!oopen && !eopen && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    r->ms = sbt_now_ms() - start;
}

/* Runs the program at `path` with args (NULL-terminated), bounded in
 * time. */
static void run_prog(bench_run *r, const char *path, const char *const *args)
{
    memset(r, 0, sizeof(*r));
    r->out = calloc(1, 1);
    r->err = calloc(1, 1);
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        r->status = -1;
        return;
    }
    long long start = sbt_now_ms();
    pid_t pid = spawn(path, args, out, err);
    collect(r, pid, out[0], err[0], start);
    close(out[0]);
    close(err[0]);
}

static void run_bench(bench_run *r, const char *const *args)
{
    run_prog(r, SOCKBUS_BENCH_PATH, args);
}

static double num(const cJSON *j, const char *path_a, const char *path_b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, path_a);
    if (path_b != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, path_b);
    if (!cJSON_IsNumber(v)) {
        fprintf(stderr, "missing number %s%s%s\n", path_a, path_b ? "." : "",
                path_b ? path_b : "");
        return -1;
    }
    return v->valuedouble;
}

/* Runs the bench with --json against the test server, checks it exited
 * 0, and returns its report (caller deletes). */
static cJSON *bench_json(const sbt_server *s, const char *const *extra)
{
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%d", s->port);
    const char *args[32] = {"--server", server, "--json", "--timeout", "20"};
    size_t n = 5;
    for (size_t i = 0; extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    bench_run r;
    run_bench(&r, args);
    if (r.status != 0)
        fprintf(stderr, "bench exited %d\nstdout: %s\nstderr: %s\n", r.status,
                r.out, r.err);
    assert_int_equal(r.status, 0);
    cJSON *j = cJSON_Parse(r.out);
    if (j == NULL)
        fprintf(stderr, "not JSON: %s\n", r.out);
    run_free(&r);
    assert_non_null(j);
    return j;
}

/* What every complete report must satisfy. */
static void assert_consistent(const cJSON *j, double expected)
{
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "complete")));
    assert_true(num(j, "expected", NULL) == expected);
    assert_true(num(j, "delivered", NULL) == expected);
    assert_true(num(j, "lost", NULL) == 0);
    assert_true(num(j, "out_of_order", NULL) == 0);
    assert_true(num(j, "dropped", NULL) == 0);
    assert_true(num(j, "pub_rate", NULL) > 0);
    assert_true(num(j, "sub_rate", NULL) > 0);
    assert_true(num(j, "pub_mbps", NULL) > 0);
    assert_true(num(j, "sub_mbps", NULL) > 0);
    assert_true(num(j, "duration_s", NULL) > 0);
    double p50 = num(j, "latency_us", "p50"), p90 = num(j, "latency_us", "p90");
    double p99 = num(j, "latency_us", "p99");
    double p999 = num(j, "latency_us", "p999");
    double max = num(j, "latency_us", "max");
    assert_true(p50 > 0);
    assert_true(p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max);
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(j, "per_client");
    assert_true(num(pc, "pub_rate", "min") > 0);
    assert_true(num(pc, "pub_rate", "min") <= num(pc, "pub_rate", "max"));
    const cJSON *errors = cJSON_GetObjectItemCaseSensitive(j, "errors");
    assert_int_equal(cJSON_GetArraySize(errors), 0);
}

static void test_bench_fan_out_complete(void **state)
{
    const char *args[] = {"--pubs", "2", "--subs", "2", "--msgs", "2000", NULL};
    cJSON *j = bench_json(*state, args);
    assert_string_equal(sbt_str(j, "proto"), "sockbus");
    assert_true(num(j, "published", NULL) == 2000);
    assert_consistent(j, 2 * 2000);
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(j, "per_client");
    const cJSON *subs = cJSON_GetObjectItemCaseSensitive(pc, "subs");
    assert_int_equal(cJSON_GetArraySize(subs), 2);
    const cJSON *sub;
    cJSON_ArrayForEach(sub, subs)
    {
        assert_true(num(sub, "msgs", NULL) == 2000);
    }
    cJSON_Delete(j);
}

static void test_bench_group_delivers_once(void **state)
{
    const char *args[] = {"--pubs", "2",       "--subs",  "3", "--msgs",
                          "3000",   "--group", "workers", NULL};
    cJSON *j = bench_json(*state, args);
    assert_consistent(j, 3000);
    assert_string_equal(sbt_str(j, "group"), "workers");
    cJSON_Delete(j);
}

static void test_bench_rate_is_paced(void **state)
{
    /* 1000 messages at 2000/s take about half a second. */
    const char *args[] = {"--msgs", "1000", "--rate", "2000", NULL};
    cJSON *j = bench_json(*state, args);
    assert_consistent(j, 1000);
    double secs = num(j, "pub_duration_s", NULL);
    assert_true(secs >= 0.45);
    assert_true(num(j, "pub_rate", NULL) <= 2000 * 1.1);
    cJSON_Delete(j);
}

static void test_bench_idle_connections(void **state)
{
    const char *args[] = {"--conns", "50", "--msgs", "500", NULL};
    cJSON *j = bench_json(*state, args);
    assert_consistent(j, 500);
    assert_true(num(j, "idle", "open") == 50);
    assert_true(num(j, "idle", "closed") == 0);
    cJSON_Delete(j);
}

static void test_bench_duration(void **state)
{
    const char *args[] = {"--duration", "0.5", "--rate", "1000", NULL};
    cJSON *j = bench_json(*state, args);
    double published = num(j, "published", NULL);
    assert_true(published >= 400 && published <= 600);
    assert_consistent(j, published);
    cJSON_Delete(j);
}

/* A port nobody listens on: bound but never listening, so no other
 * process can take it during the test. */
static void test_bench_no_server_fails_fast(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%d", ntohs(a.sin_port));
    const char *args[] = {"--server", server, "--msgs", "10", NULL};
    bench_run r;
    run_bench(&r, args);
    close(fd);
    assert_int_equal(r.status, 1);
    assert_true(r.ms < 5000);
    assert_non_null(strstr(r.err, "cannot connect"));
    assert_non_null(strstr(r.err, "refused"));
    run_free(&r);
}

/* The server dies in the middle of a paced run: the bench ends at once
 * with exit 1 and says the server went away. */
static void test_bench_server_gone(void **state)
{
    (void)state;
    sbt_server s;
    assert_int_equal(sbt_server_start(&s, NULL), 0);
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%d", s.port);
    const char *args[] = {"--server", server,      "--msgs", "100000", "--rate",
                          "2000",     "--timeout", "30",     NULL};
    pid_t killer = fork();
    if (killer == 0) {
        usleep(700 * 1000);
        kill(s.pid, SIGKILL);
        _exit(0);
    }
    bench_run r;
    run_bench(&r, args);
    waitpid(killer, NULL, 0);
    sbt_server_stop(&s, SIGKILL, 5000);
    assert_int_equal(r.status, 1);
    assert_true(r.ms < 10000);
    assert_non_null(strstr(r.out, "Complete: no"));
    assert_true(strstr(r.out, "closed the connection") ||
                strstr(r.out, "reset"));
    run_free(&r);
}

static void test_bench_bad_flag(void **state)
{
    (void)state;
    const char *args[] = {"--size", "8", NULL};
    bench_run r;
    run_bench(&r, args);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--size"));
    run_free(&r);
}

/* The hand-over mode passes every item along chains of 1, 2, 3, 4 and 7
 * threads and prints one line per chain with ordered percentiles. */
static void test_queue_bench_handover(void **state)
{
    (void)state;
    const char *args[] = {"--handover", "300", "20", NULL};
    bench_run r;
    run_prog(&r, SOCKBUS_QUEUE_BENCH_PATH, args);
    assert_int_equal(r.status, 0);
    assert_null(strstr(r.out, "ERROR"));
    const int chains[] = {1, 2, 3, 4, 7};
    const char *line = r.out;
    for (size_t i = 0; i < sizeof chains / sizeof chains[0]; i++) {
        int threads = 0, n = 0;
        unsigned items = 0, gap = 0;
        double p50 = -1, p90 = -1, p99 = -1;
        assert_non_null(line);
        int got = sscanf(line,
                         "handover threads=%d items=%u gap_us=%u p50_us=%lf "
                         "p90_us=%lf p99_us=%lf%n",
                         &threads, &items, &gap, &p50, &p90, &p99, &n);
        assert_int_equal(got, 6);
        assert_int_equal(threads, chains[i]);
        assert_int_equal(items, 300);
        assert_int_equal(gap, 20);
        assert_true(p50 > 0 && p50 <= p90 && p90 <= p99);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    assert_true(line == NULL || *line == '\0');
    run_free(&r);

    const char *bad[] = {"--handover", "0", NULL};
    run_prog(&r, SOCKBUS_QUEUE_BENCH_PATH, bad);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--handover"));
    run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_fan_out_complete),
        cmocka_unit_test(test_bench_group_delivers_once),
        cmocka_unit_test(test_bench_rate_is_paced),
        cmocka_unit_test(test_bench_idle_connections),
        cmocka_unit_test(test_bench_duration),
        cmocka_unit_test(test_bench_no_server_fails_fast),
        cmocka_unit_test(test_bench_server_gone),
        cmocka_unit_test(test_bench_bad_flag),
        cmocka_unit_test(test_queue_bench_handover),
    };
    return cmocka_run_group_tests_name("bench", tests, sbt_fixture_start,
                                       sbt_fixture_stop);
}
