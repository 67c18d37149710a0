/* test_cli.c - the command-line client `sockbus`, run as a child process
 * against a real sockbusd (a fresh one per test, so that its
 * `subscriptions` counter starts at 0).
 *
 * A background CLI (sub, reply) is known to be subscribed once the
 * server's stats say so: the test polls them with a deadline instead of
 * sleeping. Every wait for a child is bounded; a child that overstays is
 * killed and its stderr printed. */
#define _GNU_SOURCE
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#ifndef SOCKBUS_PATH
#error "SOCKBUS_PATH must name the sockbus binary"
#endif

#define RUN_MS 15000 /* the longest any CLI run may take */

typedef struct fixture {
    sbt_server srv;
    char addr[64]; /* "127.0.0.1:PORT" */
} fixture;

/* ---- Running the CLI --------------------------------------------------- */

typedef struct cli_proc {
    pid_t pid;
    int fd_in, fd_out, fd_err; /* our ends, -1 once closed */
    const char *input;         /* written to its stdin */
    size_t in_len, in_off;
    char *out, *err; /* what it printed, NUL-terminated */
    size_t out_len, err_len;
    int status; /* exit status, 128+signal, or -1 */
} cli_proc;

static void set_env(const char *const *env)
{
    unsetenv("SOCKBUS_SERVER");
    unsetenv("SOCKBUS_TOKEN");
    for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
        const char *eq = strchr(env[i], '=');
        char *name = strndup(env[i], (size_t)(eq - env[i]));
        setenv(name, eq + 1, 1);
        free(name);
    }
}

/* Start `sockbus args...` with `input` (may be NULL) on its stdin and
 * the "NAME=VALUE" strings of `env` (may be NULL) in its environment. */
static void cli_spawn(cli_proc *p,
                      const char *const *args,
                      const char *input,
                      const char *const *env)
{
    memset(p, 0, sizeof(*p));
    int in[2], out[2], err[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    const char *argv[64] = {SOCKBUS_PATH};
    for (size_t i = 0; args[i] != NULL && i < 62; i++)
        argv[i + 1] = args[i];
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        set_env(env);
        execv(SOCKBUS_PATH, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    p->fd_in = in[1];
    p->fd_out = out[0];
    p->fd_err = err[0];
    fcntl(p->fd_in, F_SETFL, O_NONBLOCK);
    p->input = input;
    p->in_len = input ? strlen(input) : 0;
    if (p->in_len == 0) {
        close(p->fd_in); /* stdin at EOF */
        p->fd_in = -1;
    }
    p->out = calloc(1, 1);
    p->err = calloc(1, 1);
    assert_true(p->out != NULL && p->err != NULL);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Read what `*fd` has into buf; close it at EOF. */
static void take_output(int *fd, char **buf, size_t *len)
{
    char chunk[65536];
    ssize_t r = read(*fd, chunk, sizeof(chunk));
    if (r < 0 && errno == EINTR)
        return;
    if (r <= 0) {
        close_fd(fd);
        return;
    }
    char *nb = realloc(*buf, *len + (size_t)r + 1);
    assert_non_null(nb);
    memcpy(nb + *len, chunk, (size_t)r);
    *len += (size_t)r;
    nb[*len] = '\0';
    *buf = nb;
}

static void give_input(cli_proc *p)
{
    ssize_t w = write(p->fd_in, p->input + p->in_off, p->in_len - p->in_off);
    if (w > 0)
        p->in_off += (size_t)w;
    if (p->in_off == p->in_len || (w < 0 && errno != EAGAIN && errno != EINTR))
        close_fd(&p->fd_in);
}

/* Feed stdin and collect stdout and stderr until both end. Returns false
 * at the deadline. */
static bool cli_pump(cli_proc *p, long long deadline)
{
    while (p->fd_out >= 0 || p->fd_err >= 0) {
        struct pollfd pf[3] = {
            {.fd = p->fd_out, .events = POLLIN},
            {.fd = p->fd_err, .events = POLLIN},
            {.fd = p->fd_in, .events = POLLOUT},
        };
        long long left = deadline - sbt_now_ms();
        if (left <= 0)
            return false;
        int n = poll(pf, 3, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        if (pf[0].revents)
            take_output(&p->fd_out, &p->out, &p->out_len);
        if (pf[1].revents)
            take_output(&p->fd_err, &p->err, &p->err_len);
        if (pf[2].revents)
            give_input(p);
    }
    return true;
}

/* Reap `pid` by the deadline: its status, or -1. */
static int reap(pid_t pid, long long deadline)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int st = -1;
    for (;;) {
        int ws;
        pid_t r = waitpid(pid, &ws, WNOHANG);
        if (r == pid) {
            st = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
            break;
        }
        long long left = deadline - sbt_now_ms();
        if ((r < 0 && errno != EINTR) || left <= 0)
            break;
        struct pollfd pf = {.fd = pfd, .events = POLLIN};
        poll(&pf, pfd >= 0 ? 1 : 0, pfd >= 0 ? (int)left : 5);
    }
    if (pfd >= 0)
        close(pfd);
    return st;
}

/* Wait up to timeout_ms for the CLI to finish; kill it after that.
 * Returns its exit status (also in p->status), or -1. */
static int cli_wait(cli_proc *p, int timeout_ms)
{
    long long deadline = sbt_now_ms() + timeout_ms;
    int st = cli_pump(p, deadline) ? reap(p->pid, deadline) : -1;
    if (st < 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        print_message("sockbus did not finish in %d ms; stderr:\n%s\n",
                      timeout_ms, p->err);
    }
    close_fd(&p->fd_in);
    close_fd(&p->fd_out);
    close_fd(&p->fd_err);
    p->status = st;
    return st;
}

static void cli_free(cli_proc *p)
{
    free(p->out);
    free(p->err);
    p->out = p->err = NULL;
}

static int cli_run(cli_proc *p,
                   const char *const *args,
                   const char *input,
                   const char *const *env)
{
    cli_spawn(p, args, input, env);
    return cli_wait(p, RUN_MS);
}

/* Check the exit status, showing the CLI's output when it is wrong. */
static void expect_status(const cli_proc *p, int status)
{
    if (p->status != status)
        print_message("exit %d, expected %d\nstdout:\n%s\nstderr:\n%s\n",
                      p->status, status, p->out, p->err);
    assert_int_equal(p->status, status);
}

static void expect_has(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        print_message("expected \"%s\" in:\n%s\n", needle, text);
    assert_non_null(strstr(text, needle));
}

/* True once the child has exited (it is not reaped). */
static bool exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           si.si_pid == pid;
}

/* Wait until the server counts `n` subscriptions, which the background
 * CLI `bg` makes. Fails if it exits first or 10 s pass. */
static void wait_subscribed(fixture *f, int n, cli_proc *bg)
{
    sbt_client c;
    cJSON *info = sbt_connect_info(&c, f->srv.port);
    assert_non_null(info);
    cJSON_Delete(info);
    long long deadline = sbt_now_ms() + 10000;
    for (;;) {
        cJSON *st = sbt_stats(&c, 5000);
        assert_non_null(st);
        int subs = (int)sbt_num(st, "subscriptions");
        cJSON_Delete(st);
        if (subs >= n)
            break;
        if (exited(bg->pid) || sbt_now_ms() > deadline) {
            cli_wait(bg, 1000);
            fail_msg("not subscribed (%d of %d); exit %d, stderr:\n%s", subs, n,
                     bg->status, bg->err);
        }
        poll(NULL, 0, 5); /* between two stats requests */
    }
    sbt_close(&c);
}

/* A port nobody listens on: bound once by us, then closed. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- Fixtures ---------------------------------------------------------- */

static int start(void **state, const char *const *args)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL || sbt_server_start(&f->srv, args) < 0) {
        free(f);
        return -1;
    }
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%d", f->srv.port);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return start(state, NULL);
}

static int setup_token(void **state)
{
    const char *const args[] = {"--token", "s3cret", NULL};
    return start(state, args);
}

static int setup_small_frame(void **state)
{
    const char *const args[] = {"--max-frame", "1024", NULL};
    return start(state, args);
}

static int teardown(void **state)
{
    fixture *f = *state;
    int st = sbt_server_stop(&f->srv, SIGTERM, 10000);
    free(f);
    return st == 0 ? 0 : -1;
}

/* ---- pub and sub ------------------------------------------------------- */

static void test_cli_pub_sub(void **state)
{
    fixture *f = *state;
    const char *const sub_args[] = {"sub",      "t.>",       "--count",
                                    "3",        "--timeout", "10",
                                    "--server", f->addr,     NULL};
    cli_proc sub;
    cli_spawn(&sub, sub_args, NULL, NULL);
    wait_subscribed(f, 1, &sub);

    /* Common options go before or after the command. */
    const char *const pubs[][8] = {
        {"--server", f->addr, "pub", "t.a", "{\"n\": 1}", NULL},
        {"pub", "t.b", "[1,2]", "--server", f->addr, NULL},
        {"pub", "t.c", "\"three\"", "--reply", "r.x", "--server", f->addr,
         NULL},
    };
    for (size_t i = 0; i < 3; i++) {
        cli_proc p;
        cli_run(&p, pubs[i], NULL, NULL);
        expect_status(&p, 0);
        assert_string_equal(p.out, "");
        assert_string_equal(p.err, "");
        cli_free(&p);
    }
    cli_wait(&sub, RUN_MS);
    expect_status(&sub, 0);
    assert_string_equal(
        sub.out, "{\"op\":\"msg\",\"topic\":\"t.a\",\"data\":{\"n\":1}}\n"
                 "{\"op\":\"msg\",\"topic\":\"t.b\",\"data\":[1,2]}\n"
                 "{\"op\":\"msg\",\"topic\":\"t.c\",\"data\":\"three\","
                 "\"reply\":\"r.x\"}\n");
    cli_free(&sub);
}

/* 1000 good lines, an empty one (line 11) and a bad one (line 502). */
static char *stdin_lines(char **expected)
{
    size_t cap = 32 * 1024;
    char *in = malloc(cap), *exp = malloc(cap);
    assert_true(in != NULL && exp != NULL);
    size_t n = 0, e = 0;
    for (int i = 0; i < 1000; i++) {
        if (i == 10)
            n += (size_t)snprintf(in + n, cap - n, "\n");
        if (i == 500)
            n += (size_t)snprintf(in + n, cap - n, "{\"oops\":}\n");
        n += (size_t)snprintf(in + n, cap - n, "{\"i\": %d}\n", i);
        e += (size_t)snprintf(exp + e, cap - e, "{\"i\":%d}\n", i);
    }
    *expected = exp;
    return in;
}

static void test_cli_pub_stdin(void **state)
{
    fixture *f = *state;
    const char *const sub_args[] = {
        "sub", "bulk",        "--count",  "1000",  "--timeout",
        "10",  "--data-only", "--server", f->addr, NULL};
    cli_proc sub;
    cli_spawn(&sub, sub_args, NULL, NULL);
    wait_subscribed(f, 1, &sub);

    char *expected, *input = stdin_lines(&expected);
    const char *const pub_args[] = {"pub",      "bulk",  "-",
                                    "--server", f->addr, NULL};
    cli_proc pub;
    cli_run(&pub, pub_args, input, NULL);
    expect_status(&pub, 1); /* one line was not published */
    expect_has(pub.err, "line 502: invalid JSON");
    expect_has(pub.err, "published 1000 messages to bulk, 1 bad line skipped");

    cli_wait(&sub, RUN_MS);
    expect_status(&sub, 0);
    assert_string_equal(sub.out, expected);
    cli_free(&pub);
    cli_free(&sub);
    free(input);
    free(expected);
}

static void test_cli_pub_stdin_all_good(void **state)
{
    fixture *f = *state;
    const char *const args[] = {"pub", "quiet", "-", "--server", f->addr, NULL};
    cli_proc p;
    /* The last line has no newline: it still counts. */
    cli_run(&p, args, "1\n\n\"two\"\n{\"three\":3}", NULL);
    expect_status(&p, 0);
    expect_has(p.err, "published 3 messages to quiet\n");
    cli_free(&p);
}

/* What cJSON accepts but the server would refuse is caught here, with
 * the line number. */
static void test_cli_pub_stdin_strict(void **state)
{
    fixture *f = *state;
    const char *const args[] = {"pub",      "strict", "-",
                                "--server", f->addr,  NULL};
    cli_proc p;
    cli_run(&p, args, "1\n01\n\"tab\there\"\n1.\n\"\xc0\xaf\"\n2\n", NULL);
    expect_status(&p, 1);
    expect_has(p.err, "line 2: invalid JSON: invalid number at byte 0");
    expect_has(p.err, "line 3: invalid JSON: control character in a string "
                      "at byte 4");
    expect_has(p.err, "line 4: invalid JSON: invalid number at byte 0");
    expect_has(p.err, "line 5: invalid JSON: invalid UTF-8 at byte 1");
    expect_has(p.err, "published 2 messages to strict, 4 bad lines skipped");
    assert_null(strstr(p.err, "server error"));
    cli_free(&p);
}

/* A server with --max-frame 1024: too large is said here, not by a
 * server err that carries no id. */
static void test_cli_pub_too_large(void **state)
{
    fixture *f = *state;
    char big[2100], line[4000], input[250000];
    snprintf(big, sizeof(big), "\"%02000d\"", 0);
    snprintf(line, sizeof(line), "\"%03000d\"", 0);
    const char *const one[] = {"pub", "t", big, "--server", f->addr, NULL};
    cli_proc p;
    cli_run(&p, one, NULL, NULL);
    expect_status(&p, 1);
    expect_has(p.err, "message too large: ");
    cli_free(&p);

    /* Line 2 fits in one read, line 4 does not. */
    int n = snprintf(input, sizeof(input), "1\n%s\n2\n\"", line);
    memset(input + n, 'y', 200000);
    snprintf(input + n + 200000, sizeof(input) - (size_t)n - 200000, "\"\n3\n");
    const char *const many[] = {"pub", "t", "-", "--server", f->addr, NULL};
    cli_run(&p, many, input, NULL);
    expect_status(&p, 1);
    expect_has(p.err, "line 2: longer than the server's max_frame (1024");
    expect_has(p.err, "line 4: longer than the server's max_frame (1024");
    expect_has(p.err, "published 3 messages to t, 2 bad lines skipped");
    assert_null(strstr(p.err, "server error"));
    cli_free(&p);
}

static void test_cli_sub_data_only(void **state)
{
    fixture *f = *state;
    const char *const sub_args[] = {
        "sub", "d",           "--count",  "2",     "--timeout",
        "10",  "--data-only", "--server", f->addr, NULL};
    cli_proc sub;
    cli_spawn(&sub, sub_args, NULL, NULL);
    wait_subscribed(f, 1, &sub);
    /* The data keeps its spelling: 2.50 and 20 digits survive. */
    const char *const data[] = {"{ \"x\" : [1, 2.50, \"a b\"] }",
                                "12345678901234567890"};
    for (size_t i = 0; i < 2; i++) {
        const char *const args[] = {"pub",      "d",     data[i],
                                    "--server", f->addr, NULL};
        cli_proc p;
        cli_run(&p, args, NULL, NULL);
        expect_status(&p, 0);
        cli_free(&p);
    }
    cli_wait(&sub, RUN_MS);
    expect_status(&sub, 0);
    assert_string_equal(sub.out, "{\"x\":[1,2.50,\"a b\"]}\n"
                                 "12345678901234567890\n");
    cli_free(&sub);
}

static void test_cli_sub_timeout(void **state)
{
    fixture *f = *state;
    const char *const plain[] = {"sub",      "none",  "--timeout", "200ms",
                                 "--server", f->addr, NULL};
    const char *const counted[] = {"sub",      "none",      "--count",
                                   "1",        "--timeout", "0.2",
                                   "--server", f->addr,     NULL};
    cli_proc p;
    cli_run(&p, plain, NULL, NULL);
    expect_status(&p, 0); /* a timeout without --count is the normal end */
    assert_string_equal(p.out, "");
    cli_free(&p);
    cli_run(&p, counted, NULL, NULL);
    expect_status(&p, 1);
    expect_has(p.err, "timed out after 0.2 s with 0 of 1 messages");
    cli_free(&p);
}

static void test_cli_sub_sigint(void **state)
{
    fixture *f = *state;
    const char *const args[] = {"sub", "x", "--server", f->addr, NULL};
    cli_proc sub;
    cli_spawn(&sub, args, NULL, NULL);
    wait_subscribed(f, 1, &sub);
    kill(sub.pid, SIGINT);
    cli_wait(&sub, RUN_MS);
    expect_status(&sub, 0);
    assert_string_equal(sub.err, "");
    cli_free(&sub);
}

static void test_cli_sub_group(void **state)
{
    fixture *f = *state;
    const char *const args[] = {
        "sub",       "jobs", "--group",     "workers",  "--count", "1",
        "--timeout", "10",   "--data-only", "--server", f->addr,   NULL};
    cli_proc a, b;
    cli_spawn(&a, args, NULL, NULL);
    cli_spawn(&b, args, NULL, NULL);
    wait_subscribed(f, 2, &a);
    const char *const pub1[] = {"pub", "jobs", "1", "--server", f->addr, NULL};
    const char *const pub2[] = {"pub", "jobs", "2", "--server", f->addr, NULL};
    cli_proc p;
    cli_run(&p, pub1, NULL, NULL);
    cli_free(&p);
    cli_run(&p, pub2, NULL, NULL);
    cli_free(&p);
    /* Round robin: each member gets exactly one of the two. */
    cli_wait(&a, RUN_MS);
    cli_wait(&b, RUN_MS);
    expect_status(&a, 0);
    expect_status(&b, 0);
    assert_true((strcmp(a.out, "1\n") == 0 && strcmp(b.out, "2\n") == 0) ||
                (strcmp(a.out, "2\n") == 0 && strcmp(b.out, "1\n") == 0));
    cli_free(&a);
    cli_free(&b);
}

static void test_cli_sub_server_stops(void **state)
{
    fixture *f = *state;
    const char *const args[] = {"sub", "x", "--server", f->addr, NULL};
    cli_proc sub;
    cli_spawn(&sub, args, NULL, NULL);
    wait_subscribed(f, 1, &sub);
    assert_int_equal(sbt_server_stop(&f->srv, SIGTERM, 10000), 0);
    cli_wait(&sub, RUN_MS);
    expect_status(&sub, 1);
    expect_has(sub.err, "sockbus: server error shutting_down:");
    expect_has(sub.err, "closed the connection");
    cli_free(&sub);
    /* teardown stops a server */
    assert_int_equal(sbt_server_start(&f->srv, NULL), 0);
}

/* ---- request and reply ------------------------------------------------- */

static void test_cli_request_reply(void **state)
{
    fixture *f = *state;
    const char *const rep_args[] = {"reply",   "svc.>", "{\"answer\": 42}",
                                    "--count", "2",     "--server",
                                    f->addr,   NULL};
    cli_proc rep;
    cli_spawn(&rep, rep_args, NULL, NULL);
    wait_subscribed(f, 1, &rep);

    const char *const req[] = {"request",  "svc.echo", "{\"q\":1}",
                               "--server", f->addr,    NULL};
    cli_proc p;
    cli_run(&p, req, NULL, NULL);
    expect_status(&p, 0);
    assert_string_equal(p.out, "{\"answer\":42}\n");
    cli_free(&p);

    const char *const full[] = {"request",  "svc.full", "2", "--full",
                                "--server", f->addr,    NULL};
    cli_run(&p, full, NULL, NULL);
    expect_status(&p, 0);
    expect_has(p.out, "{\"op\":\"msg\",\"topic\":\"_INBOX.");
    expect_has(p.out, "\"data\":{\"answer\":42}}\n");
    cli_free(&p);

    cli_wait(&rep, RUN_MS);
    expect_status(&rep, 0);
    expect_has(rep.err, "[1] svc.echo {\"q\":1} -> replied on _INBOX.");
    expect_has(rep.err, "[2] svc.full 2 -> replied on _INBOX.");
    cli_free(&rep);
}

static void test_cli_request_timeout(void **state)
{
    fixture *f = *state;
    const char *const args[] = {"request", "nobody.home", "1",     "--timeout",
                                "0.3",     "--server",    f->addr, NULL};
    long long t0 = sbt_now_ms();
    cli_proc p;
    cli_run(&p, args, NULL, NULL);
    long long took = sbt_now_ms() - t0;
    expect_status(&p, 1);
    expect_has(p.err, "no reply to nobody.home within 0.3 s");
    assert_string_equal(p.out, "");
    assert_true(took >= 250 && took < 5000);
    cli_free(&p);
}

/* ---- ping and stats ---------------------------------------------------- */

static void test_cli_ping(void **state)
{
    fixture *f = *state;
    const char *const args[] = {"ping", "--count",  "3",     "--interval",
                                "0.05", "--server", f->addr, NULL};
    cli_proc p;
    cli_run(&p, args, NULL, NULL);
    expect_status(&p, 0);
    expect_has(p.out, "seq=1 time=");
    expect_has(p.out, "seq=2 time=");
    expect_has(p.out, "seq=3 time=");
    assert_null(strstr(p.out, "seq=4"));
    expect_has(p.out, "3 pings sent, 3 pongs received, 0% lost");
    expect_has(p.out, "rtt min/avg/max = ");
    cli_free(&p);
}

static const char *const counters[] = {
    "connections", "subscriptions",  "msgs_in",   "msgs_out", "bytes_in",
    "bytes_out",   "slow_consumers", "uptime_ms", "dropped",
};

/* The column where the value of row `name` starts, or -1. */
static int value_column(const char *table, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = table; l != NULL && *l; l = strchr(l, '\n')) {
        l += *l == '\n';
        if (strncmp(l, name, n) == 0 && l[n] == ' ')
            return (int)(n + strspn(l + n, " "));
    }
    return -1;
}

static void test_cli_stats_table(void **state)
{
    fixture *f = *state;
    const char *const args[] = {"stats", "--server", f->addr, NULL};
    cli_proc p;
    cli_run(&p, args, NULL, NULL);
    expect_status(&p, 0);
    /* One row per counter (uptime_ms shown as "uptime"), values aligned. */
    int col = value_column(p.out, "server");
    assert_true(col > 0);
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        const char *name =
            strcmp(counters[i], "uptime_ms") == 0 ? "uptime" : counters[i];
        if (value_column(p.out, name) != col)
            fail_msg("row %s missing or not aligned:\n%s", name, p.out);
    }
    expect_has(p.out, "(sockbus 0.1.0)\n");
    const char *conn = strstr(p.out, "\nconnections ");
    assert_non_null(conn);
    assert_int_equal(atoi(conn + 1 + col), 1); /* the CLI itself */
    cli_free(&p);
}

static void test_cli_stats_json(void **state)
{
    fixture *f = *state;
    const char *const args[] = {"stats", "--json", "--server", f->addr, NULL};
    cli_proc p;
    cli_run(&p, args, NULL, NULL);
    expect_status(&p, 0);
    cJSON *j = cJSON_Parse(p.out);
    assert_non_null(j);
    assert_string_equal(sbt_str(j, "op"), "stats");
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, counters[i]);
        if (!cJSON_IsNumber(v))
            fail_msg("stats --json has no number %s", counters[i]);
    }
    assert_int_equal((int)sbt_num(j, "connections"), 1);
    cJSON_Delete(j);
    cli_free(&p);
}

/* ---- Usage and failures ------------------------------------------------ */

struct usage_row {
    const char *args[6];
    int status;
    bool on_stdout; /* where `has` must appear */
    const char *has;
};

static const struct usage_row usage_rows[] = {
    {{NULL}, 2, false, "missing command"},
    {{"frobnicate"}, 2, false, "unknown command \"frobnicate\""},
    {{"pub", "t"}, 2, false, "missing arguments"},
    {{"pub", "t", "{bad"}, 2, false, "not valid JSON"},
    {{"pub", "t", "hello"}, 2, false, "a string needs its quotes"},
    {{"request", "t", "[1,"}, 2, false, "not valid JSON"},
    {{"reply", "t", "}"}, 2, false, "not valid JSON"},
    {{"pub", "t", "01"}, 2, false, "invalid number at byte 0"},
    {{"pub", "t", "[1,2"}, 2, false, "unexpected end of input"},
    {{"pub", "t", "1 2"}, 2, false, "unexpected text after the value"},
    {{"sub", "t", "--bogus"}, 2, false, "unknown option --bogus"},
    {{"sub", "t", "--count", "abc"}, 2, false, "positive integer"},
    {{"sub", "t", "--count", "0"}, 2, false, "positive integer"},
    {{"sub", "t", "--timeout"}, 2, false, "--timeout needs a value"},
    {{"sub", "t", "--timeout", "soon"}, 2, false, "duration"},
    {{"sub", "t", "--reply", "x"}, 2, false, "--reply does not apply to sub"},
    {{"sub", "t", "--data-only=yes"}, 2, false, "takes no value"},
    {{"ping", "extra"}, 2, false, "unexpected argument \"extra\""},
    {{"sub", "a", "b"}, 2, false, "unexpected argument \"b\""},
    {{"stats", "--server", "host:port"}, 2, false, "bad server address"},
    {{"--help"}, 0, true, "Usage: sockbus [OPTIONS] COMMAND"},
    {{"-h"}, 0, true, "sockbus request TOPIC JSON"},
    {{"pub", "--help"}, 0, true, "Usage: sockbus pub TOPIC JSON|-"},
    {{"--help", "sub"}, 0, true, "--data-only"},
    {{"--version"}, 0, true, "sockbus 0.1.0"},
};

static void assert_usage_row(fixture *f, const struct usage_row *row)
{
    /* Our --server first: a row's own comes later and wins. */
    const char *args[10] = {"--server", f->addr};
    for (size_t i = 0; row->args[i] != NULL; i++)
        args[2 + i] = row->args[i];
    cli_proc p;
    cli_run(&p, args, NULL, NULL);
    const char *text = row->on_stdout ? p.out : p.err;
    if (p.status != row->status || strstr(text, row->has) == NULL)
        fail_msg("sockbus %s %s %s %s: exit %d (want %d), expected \"%s\" "
                 "in:\n%s",
                 args[2] ? args[2] : "", args[3] ? args[3] : "",
                 args[4] ? args[4] : "", args[5] ? args[5] : "", p.status,
                 row->status, row->has, text);
    cli_free(&p);
}

static void test_cli_usage(void **state)
{
    for (size_t i = 0; i < sizeof(usage_rows) / sizeof(usage_rows[0]); i++)
        assert_usage_row(*state, &usage_rows[i]);
}

static void test_cli_server_error(void **state)
{
    fixture *f = *state;
    const char *const args[] = {"pub", "a.*", "1", "--server", f->addr, NULL};
    cli_proc p;
    cli_run(&p, args, NULL, NULL);
    expect_status(&p, 1);
    expect_has(p.err, "sockbus: server error bad_topic: ");
    cli_free(&p);
}

static void test_cli_connection_refused(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
    const char *const cmds[][6] = {
        {"ping", "--count", "1", "--server", addr, NULL},
        {"pub", "t", "1", "--server", addr, NULL},
        {"sub", "t", "--server", addr, NULL},
        {"stats", "--server", addr, NULL},
    };
    for (size_t i = 0; i < 4; i++) {
        cli_proc p;
        cli_run(&p, cmds[i], NULL, NULL);
        expect_status(&p, 1);
        expect_has(p.err, "Connection refused");
        cli_free(&p);
    }
}

static void test_cli_env_server(void **state)
{
    fixture *f = *state;
    char env[80];
    snprintf(env, sizeof(env), "SOCKBUS_SERVER=%s", f->addr);
    const char *const envs[] = {env, NULL};
    const char *const args[] = {"ping", "--count", "1", NULL};
    cli_proc p;
    cli_run(&p, args, NULL, envs);
    expect_status(&p, 0);
    cli_free(&p);
}

/* ---- Tokens (a server started with --token s3cret) --------------------- */

static void test_cli_token(void **state)
{
    fixture *f = *state;
    const char *const with[] = {"stats",    "--token", "s3cret",
                                "--server", f->addr,   NULL};
    const char *const without[] = {"stats", "--server", f->addr, NULL};
    const char *const wrong[] = {"stats",    "--token", "nope",
                                 "--server", f->addr,   NULL};
    const char *const pub[] = {"pub",    "t",        "1",     "--token",
                               "s3cret", "--server", f->addr, NULL};
    const char *const envs[] = {"SOCKBUS_TOKEN=s3cret", NULL};
    cli_proc p;

    cli_run(&p, with, NULL, NULL);
    expect_status(&p, 0);
    expect_has(p.out, "connections");
    cli_free(&p);

    cli_run(&p, pub, NULL, NULL);
    expect_status(&p, 0);
    cli_free(&p);

    cli_run(&p, without, NULL, envs); /* the token from the environment */
    expect_status(&p, 0);
    cli_free(&p);

    cli_run(&p, without, NULL, NULL);
    expect_status(&p, 1);
    expect_has(p.err, "sockbus: server error auth_required: ");
    expect_has(p.err, "--token");
    cli_free(&p);

    cli_run(&p, wrong, NULL, NULL);
    expect_status(&p, 1);
    expect_has(p.err, "sockbus: server error auth_failed: ");
    cli_free(&p);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    /* Hermetic: neither the servers nor the CLI see the caller's
     * settings, and a CLI that exits early does not kill us through its
     * stdin pipe. */
    unsetenv("SOCKBUS_TOKEN");
    unsetenv("SOCKBUS_SERVER");
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T(test_cli_pub_sub),
        T(test_cli_pub_stdin),
        T(test_cli_pub_stdin_all_good),
        T(test_cli_pub_stdin_strict),
        cmocka_unit_test_setup_teardown(test_cli_pub_too_large,
                                        setup_small_frame, teardown),
        T(test_cli_sub_data_only),
        T(test_cli_sub_timeout),
        T(test_cli_sub_sigint),
        T(test_cli_sub_group),
        T(test_cli_sub_server_stops),
        T(test_cli_request_reply),
        T(test_cli_request_timeout),
        T(test_cli_ping),
        T(test_cli_stats_table),
        T(test_cli_stats_json),
        T(test_cli_usage),
        T(test_cli_server_error),
        T(test_cli_connection_refused),
        T(test_cli_env_server),
        cmocka_unit_test_setup_teardown(test_cli_token, setup_token, teardown),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
