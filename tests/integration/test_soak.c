/* test_soak.c - a short soak against the real sockbusd: 200 connections
 * with mixed roles, subscribe and reconnect churn for 10 s; nothing owed
 * is lost, duplicated or reordered, and the server's threads, memory and
 * stats come back to their baseline (sockbus-soak decides, see
 * tools/soak.c; this test checks its report). */
#define _GNU_SOURCE /* pipe2 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#ifndef SOCKBUS_SOAK_PATH
#error "SOCKBUS_SOAK_PATH must name the sockbus-soak binary"
#endif

/* A sanitized server keeps freed memory (ASan's quarantine, TSan's shadow):
 * its RSS says nothing about leaks, so only threads and stats are held to
 * their baseline there. The sanitizer flags reach this file too. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
#define RSS_SLACK_KIB "4194304"
#else
#define RSS_SLACK_KIB "16384"
#endif

/* 10 s of churn, up to 30 s of draining and 30 s of settling are the
 * soak's own bounds; past this the run is killed. */
#define RUN_TIMEOUT_MS 100000

typedef struct soak_run {
    int status; /* exit status, or -1 when it had to be killed */
    char *out;  /* stdout (owned) */
    char *err;  /* stderr (owned) */
} soak_run;

/* Runs sockbus-soak with args (NULL-terminated), bounded in time. */
static void run_soak(soak_run *r, const char *const *args)
{
    memset(r, 0, sizeof(*r));
    r->out = calloc(1, 1);
    r->err = calloc(1, 1);
    r->status = -1;
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
        return;
    const char *argv[32] = {SOCKBUS_SOAK_PATH};
    for (size_t i = 0; args[i] && i < 30; i++)
        argv[i + 1] = args[i];
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        execv(SOCKBUS_SOAK_PATH, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    size_t olen = 0, elen = 0;
    bool oopen = pid > 0, eopen = pid > 0;
    long long deadline = sbt_now_ms() + RUN_TIMEOUT_MS;
    while ((oopen || eopen) && sbt_now_ms() < deadline) {
        struct pollfd p[2] = {{.fd = oopen ? out[0] : -1, .events = POLLIN},
                              {.fd = eopen ? err[0] : -1, .events = POLLIN}};
        if (poll(p, 2, (int)(deadline - sbt_now_ms())) <= 0)
            continue;
        if (p[0].revents)
            oopen = sbt_drain_fd(out[0], &r->out, &olen);
        if (p[1].revents)
            eopen = sbt_drain_fd(err[0], &r->err, &elen);
    }
    if (pid > 0) {
        int st = 0;
        if (oopen || eopen)
            kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        if (!oopen && !eopen && WIFEXITED(st))
            r->status = WEXITSTATUS(st);
    }
    close(out[0]);
    close(err[0]);
}

static double num(const cJSON *j, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, b);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void test_soak_200_connections(void **state)
{
    (void)state;
    sbt_server s;
    assert_int_equal(sbt_server_start(&s, NULL), 0);
    char server[64], pid[32];
    snprintf(server, sizeof(server), "127.0.0.1:%d", s.port);
    snprintf(pid, sizeof(pid), "%d", (int)s.pid);
    const char *args[] = {"--server",     server,       "--conns",
                          "200",          "--duration", "10",
                          "--server-pid", pid,          "--rss-slack-kib",
                          RSS_SLACK_KIB,  "--json",     NULL};
    soak_run r;
    run_soak(&r, args);
    int stop = sbt_server_stop(&s, SIGTERM, 10000);
    if (r.status != 0)
        fprintf(stderr,
                "soak exited %d (server log %s)\nstdout: %s\n"
                "stderr: %s\n",
                r.status, s.log_path, r.out, r.err);
    cJSON *j = cJSON_Parse(r.out);
    free(r.out);
    free(r.err);
    assert_int_equal(r.status, 0);
    assert_int_equal(stop, 0);
    assert_non_null(j);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "pass")));
    /* The report is consistent with a pass, and the run did real work. */
    assert_true(num(j, "lost", NULL) == 0);
    assert_true(num(j, "reordered", NULL) == 0);
    assert_true(num(j, "duplicated", NULL) == 0);
    assert_true(num(j, "stray", NULL) == 0);
    assert_true(num(j, "errors", NULL) == 0);
    assert_true(num(j, "published", NULL) > 0);
    assert_true(num(j, "required", NULL) > 0);
    assert_true(num(j, "delivered", NULL) >= num(j, "required", NULL));
    assert_true(num(j, "churn", "subs") > 0);
    assert_true(num(j, "churn", "unsubs") > 0);
    assert_true(num(j, "churn", "reconnects") > 0);
    assert_true(num(j, "churn", "publisher_reconnects") > 0);
    assert_true(num(j, "threads", "peak") >= num(j, "threads", "before") + 200);
    assert_true(num(j, "threads", "after") <= num(j, "threads", "before"));
    assert_true(num(j, "rss_kib", "after") <= num(j, "rss_kib", "limit"));
    assert_true(num(j, "server_stats", "subscriptions_after") ==
                num(j, "server_stats", "subscriptions_before"));
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_soak_200_connections),
    };
    return cmocka_run_group_tests_name("soak", tests, NULL, NULL);
}
