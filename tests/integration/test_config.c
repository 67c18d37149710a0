/* test_config.c - the configuration file, its precedence and its errors,
 * reloading with SIGHUP (good file, bad file, token), and JSON logs.
 *
 * Each test writes its own file under /tmp, starts the real sockbusd with
 * `--config FILE`, and checks what a client sees (limits, the greeting,
 * authentication) and what the server logs. After a SIGHUP the test waits
 * for the reload's summary line in the log, with a deadline. */
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
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS 5000

typedef struct fixture {
    sbt_server srv;
    char conf[64];  /* the configuration file, removed by teardown */
    char extra[64]; /* another file (a token file), when set */
} fixture;

/* ---- Helpers ------------------------------------------------------------ */

static void write_file(const char *path, const char *text)
{
    /* Write a new file and rename it over the old one, so that the server
     * never reads half of it. */
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(rename(tmp, path), 0);
}

/* A new empty file under /tmp; its name goes to `path`. */
static void make_temp(char *path, size_t n)
{
    snprintf(path, n, "/tmp/sbt-conf-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
}

/* The whole file at `path`, NUL-terminated (caller frees), or NULL. */
static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, fp);
        if (n < cap)
            break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (nb == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(fp);
    if (buf != NULL) {
        buf[n] = '\0';
        if (len != NULL)
            *len = n;
    }
    return buf;
}

static size_t count_in(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static bool log_has(const fixture *f, const char *needle)
{
    char *log = slurp(f->srv.log_path, NULL);
    bool found = log != NULL && strstr(log, needle) != NULL;
    free(log);
    return found;
}

/* Wait until the log holds `needle` at least `n` times. */
static void wait_log(const fixture *f, const char *needle, size_t n)
{
    long long deadline = sbt_now_ms() + WAIT_MS;
    for (;;) {
        char *log = slurp(f->srv.log_path, NULL);
        size_t got = log != NULL ? count_in(log, needle) : 0;
        free(log);
        if (got >= n)
            return;
        if (sbt_now_ms() >= deadline)
            fail_msg("log %s: \"%s\" %zu times after %d ms, want %zu",
                     f->srv.log_path, needle, got, WAIT_MS, n);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* SIGHUP the server and wait for the reload's summary, the `nth` one
 * (counting from 1 over the server's life). */
static void reload(fixture *f, const char *summary, size_t nth)
{
    assert_int_equal(kill(f->srv.pid, SIGHUP), 0);
    wait_log(f, summary, nth);
}

static void start(fixture *f, const char *const *args)
{
    const char *all[24];
    size_t n = 0;
    if (f->conf[0] != '\0') {
        all[n++] = "--config";
        all[n++] = f->conf;
    }
    for (size_t i = 0; args != NULL && args[i] != NULL && n < 23; i++)
        all[n++] = args[i];
    all[n] = NULL;
    assert_int_equal(sbt_server_start(&f->srv, all), 0);
}

/* Start with a configuration file holding `text`, then `args`. */
static void start_with(fixture *f, const char *text, const char *const *args)
{
    make_temp(f->conf, sizeof(f->conf));
    write_file(f->conf, text);
    start(f, args);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    *state = f;
    return f == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    int rc = 0;
    if (f->srv.pid > 0 && sbt_server_stop(&f->srv, SIGTERM, 10000) != 0)
        rc = -1;
    if (f->conf[0] != '\0')
        unlink(f->conf);
    if (f->extra[0] != '\0')
        unlink(f->extra);
    free(f);
    return rc;
}

/* Connect, read the greeting and return it (caller deletes). */
static cJSON *open_client(sbt_client *c, const fixture *f)
{
    cJSON *info = sbt_connect_info(c, f->srv.port);
    assert_non_null(info);
    return info;
}

static void open_plain(sbt_client *c, const fixture *f)
{
    cJSON_Delete(open_client(c, f));
}

/* Subscribe `c` to `n` topics (ok each), then check one more is refused
 * with too_many_subs: the connection's limit is exactly `n`. */
static void check_sub_limit(sbt_client *c, const char *tag, int n)
{
    char frame[128];
    for (int i = 0; i < n; i++) {
        snprintf(frame, sizeof(frame),
                 "{\"op\":\"sub\",\"topic\":\"%s.%d\",\"id\":%d}", tag, i, i);
        if (!sbt_request_ok(c, frame, WAIT_MS))
            fail_msg("%s: subscription %d of %d refused", tag, i + 1, n);
    }
    assert_int_equal(sbt_sendf(c,
                               "{\"op\":\"sub\",\"topic\":\"%s.over\","
                               "\"id\":\"over\"}\n",
                               tag),
                     0);
    assert_true(sbt_expect_err(c, "too_many_subs", WAIT_MS));
}

/* Log in with `token`: true on ok, false on auth_failed. */
static bool login(sbt_client *c, const char *token)
{
    assert_int_equal(sbt_sendf(c,
                               "{\"op\":\"connect\",\"token\":\"%s\","
                               "\"id\":\"in\"}\n",
                               token),
                     0);
    cJSON *j = sbt_read(c, WAIT_MS);
    assert_non_null(j);
    const char *op = sbt_str(j, "op");
    bool ok = op != NULL && strcmp(op, "ok") == 0;
    if (!ok) {
        assert_string_equal(op, "err");
        assert_string_equal(sbt_str(j, "code"), "auth_failed");
    }
    cJSON_Delete(j);
    return ok;
}

/* Publish on `topic` from `pub`; `sub` (subscribed) must get it. */
static void check_relay(sbt_client *pub, sbt_client *sub, const char *topic)
{
    assert_int_equal(
        sbt_sendf(pub, "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":42}\n",
                  topic),
        0);
    cJSON *m = sbt_expect(sub, "msg", WAIT_MS);
    assert_non_null(m);
    assert_string_equal(sbt_str(m, "topic"), topic);
    cJSON_Delete(m);
}

/* ---- The file at start -------------------------------------------------- */

static void test_config_file_applied(void **state)
{
    fixture *f = *state;
    start_with(f,
               "# sockbusd test configuration\n"
               "\n"
               "max-subs = 3\n"
               "   max-frame=4096   # a trailing comment\n"
               "node = \"test node # not a comment\"\n"
               "http =    # empty: off\n"
               "cluster-prefix = a#b\n"
               "heartbeat-ms = 0\n",
               NULL);
    sbt_client c;
    cJSON *info = open_client(&c, f);
    assert_int_equal((int)sbt_num(info, "max_frame"), 4096);
    assert_int_equal((int)sbt_num(info, "heartbeat_ms"), 0);
    cJSON_Delete(info);
    check_sub_limit(&c, "file", 3);
    sbt_close(&c);
}

static void test_config_flags_win(void **state)
{
    fixture *f = *state;
    /* Flags before and after --config both win over the file (and the
     * harness's --listen over the file's listen). */
    make_temp(f->conf, sizeof(f->conf));
    write_file(f->conf, "max-subs = 3\n"
                        "max-frame = 4096\n"
                        "listen = 127.0.0.1:1\n");
    const char *args[] = {"--max-frame", "2048", "--config", f->conf,
                          "--max-subs",  "5",    NULL};
    assert_int_equal(sbt_server_start(&f->srv, args), 0);
    sbt_client c;
    cJSON *info = open_client(&c, f);
    assert_int_equal((int)sbt_num(info, "max_frame"), 2048);
    cJSON_Delete(info);
    check_sub_limit(&c, "flag", 5);
    sbt_close(&c);

    /* And after a reload too: the file changes, the flags still win. */
    write_file(f->conf, "max-subs = 1\n"
                        "max-frame = 1024\n"
                        "max-conns = 500\n");
    reload(f, "reload ok=yes", 1);
    assert_true(log_has(f, "reload key=max-conns from=16384 to=500"));
    assert_false(log_has(f, "reload key=max-subs"));
    assert_false(log_has(f, "reload key=max-frame"));
    info = open_client(&c, f);
    assert_int_equal((int)sbt_num(info, "max_frame"), 2048);
    cJSON_Delete(info);
    check_sub_limit(&c, "again", 5);
    sbt_close(&c);
}

/* One row: a file's text and what the one line on stderr must say after
 * the file's name. */
typedef struct bad_row {
    const char *text;
    const char *where; /* ":LINE: KEY: ..." */
} bad_row;

static void check_bad_file(const bad_row *row)
{
    char path[64], err[4096], want[256];
    make_temp(path, sizeof(path));
    write_file(path, row->text);
    const char *args[] = {"--config", path, NULL};
    int st = sbt_run_sockbusd(args, err, sizeof(err), WAIT_MS);
    unlink(path);
    snprintf(want, sizeof(want), "sockbusd: %s%s", path, row->where);
    size_t len = strlen(err);
    if (st != 2 || len < 2 || strchr(err, '\n') != err + len - 1 ||
        strstr(err, want) != err)
        fail_msg("file \"%s\": exit %d, stderr \"%s\"; want exit 2 and one "
                 "line starting \"%s\"",
                 row->text, st, err, want);
}

static void test_config_file_errors(void **state)
{
    (void)state;
    static const bad_row rows[] = {
        {"max-conns = x\n", ":1: max-conns: invalid value 'x'"},
        {"# comment\n\nmax-conns = 10\nmax-frame = big\n",
         ":4: max-frame: invalid value 'big'"},
        {"bogus = 1\n", ":1: bogus: unknown key"},
        {"--max-subs = 5\n", ":1: --max-subs: unknown key"},
        {"max-subs = 3\nconfig = /etc/other.conf\n",
         ":2: config: not allowed in a configuration file"},
        {"max-subs 100\n", ":1: max-subs: expected 'key = value'"},
        {"= 5\n", ":1: expected 'key = value'"},
        {"max-subs = 0\n", ":1: max-subs: 0 is out of range"},
        {"max-frame = 16\n", ":1: max-frame: 16 is out of range"},
        {"drain-ms = 99999999\n", ":1: drain-ms: at most"},
        {"node = \"unterminated\n", ":1: node: unterminated quoted value"},
        {"node = \"a\" b\n", ":1: node: text after the closing quote"},
        {"slow-policy = maybe\n", ":1: slow-policy: invalid value 'maybe'"},
        {"log-level = loud\n", ":1: log-level: invalid value 'loud'"},
        {"log-format = xml\n", ":1: log-format: invalid value 'xml'"},
        {"listen = nowhere\n", ":1: listen: invalid value 'nowhere'"},
        {"token =\n", ":1: token: the token must be"},
        {"token-file = /nonexistent/sbt-token\n",
         ":1: token-file /nonexistent/sbt-token: No such file"},
        {"heartbeat-ms = -1\n", ":1: heartbeat-ms: invalid value '-1'"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        check_bad_file(&rows[i]);

    /* A file that cannot be read is named, with the reason. */
    char err[4096];
    const char *missing[] = {"--config", "/nonexistent/sbt.conf", NULL};
    assert_int_equal(sbt_run_sockbusd(missing, err, sizeof(err), WAIT_MS), 2);
    assert_non_null(strstr(err, "sockbusd: /nonexistent/sbt.conf: cannot "
                                "read: No such file or directory\n"));
    assert_int_equal(count_in(err, "\n"), 1);
    const char *no_value[] = {"--config", NULL};
    assert_int_equal(sbt_run_sockbusd(no_value, err, sizeof(err), WAIT_MS), 2);
    assert_non_null(strstr(err, "--config needs a value"));
}

/* ---- SIGHUP ------------------------------------------------------------- */

static void test_config_sighup_good(void **state)
{
    fixture *f = *state;
    start_with(f, "max-subs = 3\nlog-level = info\n", NULL);
    sbt_client before, after;
    open_plain(&before, f); /* accepted under the old limits */
    assert_false(log_has(f, "open id="));

    write_file(f->conf, "max-subs = 2\n"
                        "log-level = debug\n"
                        "max-frame = 4096\n"
                        "recv-queue = 100\n");
    reload(f, "reload ok=yes", 1);
    assert_true(log_has(f, "reload key=max-subs from=3 to=2"));
    assert_true(log_has(f, "reload key=log-level from=info to=debug"));
    assert_true(log_has(f, "reload key=max-frame from=1048576 to=4096"));
    /* What needs a restart is named, and left alone. */
    assert_true(log_has(f, "reload key=recv-queue from=16384 to=100 "
                           "applied=no reason=restart_required"));
    assert_true(log_has(f, "reload ok=yes changed=4 applied=3"));

    /* A new connection takes the new limits, and the new level logs its
     * open (a debug line). */
    cJSON *info = open_client(&after, f);
    assert_int_equal((int)sbt_num(info, "max_frame"), 4096);
    cJSON_Delete(info);
    wait_log(f, "open id=", 1);
    check_sub_limit(&after, "after", 2);
    /* The one accepted before keeps what it was given. */
    check_sub_limit(&before, "before", 3);
    sbt_close(&before);
    sbt_close(&after);
}

static void test_config_sighup_bad(void **state)
{
    fixture *f = *state;
    start_with(f, "max-subs = 2\n", NULL);
    write_file(f->conf, "max-subs = 4\nmax-conns = x\n");
    reload(f, "reload ok=no", 1);
    char want[160];
    snprintf(want, sizeof(want),
             "reload ok=no kept=old err=%s:2: max-conns: invalid value 'x'",
             f->conf);
    assert_true(log_has(f, want));
    assert_false(log_has(f, "reload key="));

    /* The old configuration stands, and the server works. */
    sbt_client sub, pub;
    open_plain(&sub, f);
    open_plain(&pub, f);
    check_sub_limit(&sub, "kept", 2);
    check_relay(&pub, &sub, "kept.0");

    /* An unknown key is refused the same way. */
    write_file(f->conf, "max-subs = 4\n\n# then\nmax-sub = 5\n");
    reload(f, "reload ok=no", 2);
    snprintf(want, sizeof(want), "err=%s:4: max-sub: unknown key", f->conf);
    assert_true(log_has(f, want));

    /* A good file afterwards applies. */
    write_file(f->conf, "max-subs = 4\n");
    reload(f, "reload ok=yes", 1);
    assert_true(log_has(f, "reload key=max-subs from=2 to=4"));
    sbt_client later;
    open_plain(&later, f);
    check_sub_limit(&later, "later", 4);
    sbt_close(&later);
    sbt_close(&sub);
    sbt_close(&pub);
}

#define OLD_TOKEN "0ld-t0ken-c0nfig-4a1b"
#define NEW_TOKEN "n3w-t0ken-c0nfig-9e7d"

static void test_config_sighup_token(void **state)
{
    fixture *f = *state;
    start_with(f, "token = \"" OLD_TOKEN "\"\n", NULL);
    sbt_client in, waiting, c;
    open_plain(&in, f);
    assert_true(login(&in, OLD_TOKEN));
    assert_true(sbt_request_ok(
        &in, "{\"op\":\"sub\",\"topic\":\"tok\",\"id\":1}", WAIT_MS));
    open_plain(&waiting, f); /* connected, not yet logged in */

    write_file(f->conf, "token = " NEW_TOKEN "\n");
    reload(f, "reload ok=yes", 1);
    assert_true(log_has(f, "reload key=token changed=yes"));

    /* New connections, and connects on older ones, need the new token. */
    open_plain(&c, f);
    assert_false(login(&c, OLD_TOKEN));
    sbt_close(&c);
    open_plain(&c, f);
    assert_true(login(&c, NEW_TOKEN));
    assert_true(login(&waiting, NEW_TOKEN));
    /* A client logged in before stays in. */
    check_relay(&c, &in, "tok");
    sbt_close(&c);
    sbt_close(&in);
    sbt_close(&waiting);

    assert_false(log_has(f, OLD_TOKEN));
    assert_false(log_has(f, NEW_TOKEN));
}

static void test_config_sighup_token_file(void **state)
{
    fixture *f = *state;
    /* No configuration file: SIGHUP reads --token-file again. */
    make_temp(f->extra, sizeof(f->extra));
    write_file(f->extra, OLD_TOKEN "\n");
    const char *args[] = {"--token-file", f->extra, NULL};
    start(f, args);
    write_file(f->extra, NEW_TOKEN "\n");
    reload(f, "reload ok=yes", 1);
    assert_true(log_has(f, "reload key=token changed=yes"));
    sbt_client c;
    open_plain(&c, f);
    assert_false(login(&c, OLD_TOKEN));
    sbt_close(&c);
    open_plain(&c, f);
    assert_true(login(&c, NEW_TOKEN));
    sbt_close(&c);
    assert_false(log_has(f, NEW_TOKEN));
}

/* ---- JSON logs ---------------------------------------------------------- */

/* Parse every line of the log at `path` as a JSON object with string
 * members time, level, thread and msg. Returns them all as an array
 * (caller deletes). */
static cJSON *parse_json_log(const char *path)
{
    size_t len = 0;
    char *log = slurp(path, &len);
    assert_non_null(log);
    assert_true(len > 0);
    assert_int_equal(log[len - 1], '\n');
    cJSON *all = cJSON_CreateArray();
    size_t lineno = 0;
    for (char *p = log; *p;) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        lineno++;
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(p, (size_t)(nl - p), &end, 0);
        if (j == NULL || end != nl || !cJSON_IsObject(j))
            fail_msg("%s:%zu is not one JSON object: %.*s", path, lineno,
                     (int)(nl - p), p);
        static const char *const fields[] = {"time", "level", "thread", "msg"};
        for (size_t i = 0; i < 4; i++)
            if (!cJSON_IsString(cJSON_GetObjectItem(j, fields[i])))
                fail_msg("%s:%zu has no string \"%s\": %.*s", path, lineno,
                         fields[i], (int)(nl - p), p);
        /* Every value is a string. */
        for (cJSON *m = j->child; m != NULL; m = m->next)
            if (!cJSON_IsString(m))
                fail_msg("%s:%zu: \"%s\" is not a string", path, lineno,
                         m->string);
        const char *lvl = sbt_str(j, "level");
        assert_true(strcmp(lvl, "ERROR") == 0 || strcmp(lvl, "WARN") == 0 ||
                    strcmp(lvl, "INFO") == 0 || strcmp(lvl, "DEBUG") == 0);
        cJSON_AddItemToArray(all, j);
        p = nl + 1;
    }
    free(log);
    return all;
}

/* The first entry with msg `msg` whose `key` is `value`, or NULL. */
static const cJSON *
find_entry(const cJSON *all, const char *msg, const char *key, const char *v)
{
    const cJSON *j;
    cJSON_ArrayForEach(j, all)
    {
        const char *m = sbt_str(j, "msg"), *x = sbt_str(j, key);
        if (m != NULL && strcmp(m, msg) == 0 && x != NULL && strcmp(x, v) == 0)
            return j;
    }
    return NULL;
}

static void test_config_log_json(void **state)
{
    fixture *f = *state;
    make_temp(f->extra, sizeof(f->extra));
    write_file(f->extra, OLD_TOKEN "\n");
    static const char conf[] = "log-format = json\nlog-level = debug\n"
                               "max-subs = 2\nmax-conns = 100\n";
    start_with(f, conf, (const char *const[]){"--token-file", f->extra, NULL});

    /* A session with opens, closes of every kind, errors and a reload. */
    sbt_client a, b, c, d;
    open_plain(&a, f);
    assert_true(login(&a, OLD_TOKEN));
    assert_int_equal(
        sbt_sends(&a, "{\"op\":\"connect\",\"token\":\"" OLD_TOKEN "\","
                      "\"name\":\"two words id=7 \\\"quoted\\\" back\\\\slash "
                      "tab\\t ctl\\u0001 \\u00e9t\\u00e9\"}\n"),
        0);
    sbt_close(&a);
    open_plain(&b, f);
    assert_false(login(&b, "wrong"));
    assert_true(sbt_wait_closed(&b, WAIT_MS));
    sbt_close(&b);
    open_plain(&c, f);
    assert_true(login(&c, OLD_TOKEN));
    check_sub_limit(&c, "json", 2);
    assert_int_equal(sbt_sends(&c, "{not json\n"), 0);
    assert_true(sbt_expect_err(&c, "bad_json", WAIT_MS));
    sbt_reset(&c);
    open_plain(&d, f);
    /* A reload that leaves room for one connection: d's. */
    write_file(f->conf, "log-format = json\nlog-level = debug\n"
                        "max-subs = 2\nmax-conns = 1\n");
    reload(f, "\"msg\":\"reload\",\"ok\":\"yes\"", 1);
    sbt_client e;
    assert_int_equal(sbt_connect(&e, f->srv.port), 0);
    assert_true(sbt_expect_err(&e, "server_busy", WAIT_MS));
    sbt_close(&e);
    sbt_close(&d);
    wait_log(f, "\"msg\":\"close\"", 4);
    assert_int_equal(sbt_server_stop(&f->srv, SIGTERM, 10000), 0);

    cJSON *all = parse_json_log(f->srv.log_path);
    assert_true(cJSON_GetArraySize(all) >= 10);
    /* The pairs of the text message are members. */
    const cJSON *listen = find_entry(all, "listening", "auth", "token");
    assert_non_null(listen);
    assert_non_null(sbt_str(listen, "address"));
    assert_non_null(find_entry(all, "close", "reason", "auth_failed"));
    assert_non_null(find_entry(all, "shutdown", "done", "yes"));
    assert_non_null(find_entry(all, "signal", "name", "SIGHUP"));
    const cJSON *rl = find_entry(all, "reload", "key", "max-conns");
    assert_non_null(rl);
    assert_string_equal(sbt_str(rl, "from"), "100");
    assert_string_equal(sbt_str(rl, "to"), "1");
    const cJSON *busy = find_entry(all, "refuse", "reason", "max_conns");
    assert_non_null(busy);
    assert_string_equal(sbt_str(busy, "level"), "WARN");
    assert_string_equal(sbt_str(busy, "limit"), "1");
    const cJSON *cl = find_entry(all, "close", "reason", "eof");
    assert_non_null(cl);
    assert_non_null(sbt_str(cl, "id"));
    assert_non_null(sbt_str(cl, "peer"));
    /* A value with spaces stays whole; a key seen before (id) does not
     * start a pair. */
    const char *name = sbt_str(cl, "name");
    assert_non_null(name);
    assert_non_null(strstr(name, "two words id=7 "));
    assert_int_equal(strncmp(sbt_str(cl, "thread"), "conn-", 5), 0);
    assert_false(log_has(f, OLD_TOKEN));
    cJSON_Delete(all);
}

static void test_config_log_format_reload(void **state)
{
    fixture *f = *state;
    start_with(f, "log-format = text\n", NULL);
    write_file(f->conf, "log-format = json\n");
    reload(f, "reload key=log-format from=text to=json", 1);
    sbt_client c;
    open_plain(&c, f);
    sbt_close(&c);
    wait_log(f, "\"msg\":\"close\"", 1);
    /* The summary comes after the switch: in JSON. */
    assert_true(log_has(f, "\"msg\":\"reload\",\"ok\":\"yes\""));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_config_file_applied),      T(test_config_flags_win),
        T(test_config_file_errors),       T(test_config_sighup_good),
        T(test_config_sighup_bad),        T(test_config_sighup_token),
        T(test_config_sighup_token_file), T(test_config_log_json),
        T(test_config_log_format_reload),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
