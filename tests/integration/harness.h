/* harness.h - start the real sockbusd and talk to it over real sockets.
 *
 * Every wait is bounded by a deadline; nothing sleeps and hopes. The
 * server binds 127.0.0.1:0 and the harness reads the port from its ready
 * line ("sockbusd listening on 127.0.0.1:PORT"). Its log goes to a file
 * named after the test in the working directory.
 *
 * Threads: one sbt_server or sbt_client per thread at a time. */
#ifndef SBT_HARNESS_H
#define SBT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

/* cmocka's fail() and fail_msg() never return (they jump out of the test),
 * but are not declared so: say it, so that an optimising compiler does not
 * warn about paths that continue past them. Needs <cmocka.h> first. */
#ifdef fail_msg
#undef fail
#define fail()                                                                 \
    do {                                                                       \
        _fail(__FILE__, __LINE__);                                             \
        __builtin_unreachable();                                               \
    } while (0)
#undef fail_msg
#define fail_msg(msg, ...)                                                     \
    do {                                                                       \
        print_error("ERROR: " msg "\n", ##__VA_ARGS__);                        \
        fail();                                                                \
    } while (0)
#endif

typedef struct sbt_server {
    pid_t pid;
    int port;
    int http_port;       /* with --http in args; else 0 */
    char http_addr[128]; /* "HOST:PORT" of the http line; else "" */
    char log_path[256];
} sbt_server;

/* Start sockbusd with `--listen 127.0.0.1:0` plus `args` (NULL-terminated,
 * may be NULL), and wait up to 10 s for its ready line. When `args` has
 * --http, wait for the second ready line too ("sockbusd http on
 * HOST:PORT") and fill http_port and http_addr.
 * Returns 0, or -1 (the server's log says why). */
int sbt_server_start(sbt_server *s, const char *const *args);

/* A resource limit for sbt_server_start_limited(). (A flag, not an int
 * resource: glibc's setrlimit() takes an enum under _GNU_SOURCE.) */
typedef enum sbt_limit {
    SBT_LIMIT_NOFILE, /* RLIMIT_NOFILE */
    SBT_LIMIT_AS,     /* RLIMIT_AS */
} sbt_limit;

/* As sbt_server_start(), but the child sets `kind` (soft and hard: sockbusd
 * raises its soft limit to the hard one) to `limit` before exec, and closes
 * every inherited descriptor but 0-2, so that the server's descriptor table
 * is the same wherever the test runs. */
int sbt_server_start_limited(sbt_server *s,
                             const char *const *args,
                             sbt_limit kind,
                             unsigned long long limit);

/* cmocka group or test fixtures: start a server with `args` (NULL: the
 * defaults) into *state (an sbt_server), and stop it gracefully (failing
 * when the exit status is not 0) and free it. */
int sbt_fixture_start_args(void **state, const char *const *args);
int sbt_fixture_start(void **state);
int sbt_fixture_stop(void **state);

/* Send `sig` (SIGTERM for a graceful stop) and wait up to `timeout_ms` for
 * the exit. Returns the exit status (0..255), 128+signal when killed by a
 * signal, or -1 on timeout (the server is then killed with SIGKILL). */
int sbt_server_stop(sbt_server *s, int sig, int timeout_ms);

/* Run sockbusd with `args` (NULL-terminated) and no --listen of ours,
 * waiting up to `timeout_ms` for it to exit; its stderr goes to `err`
 * (NUL-terminated, truncated). Returns the exit status or -1. */
int sbt_run_sockbusd(const char *const *args,
                     char *err,
                     size_t errlen,
                     int timeout_ms);

/* Resident memory of a process in KiB (from /proc), or -1. */
long sbt_rss_kib(pid_t pid);

/* Threads of a process (from /proc), or -1. */
long sbt_threads(pid_t pid);

typedef struct sbt_client {
    int fd;
    char *buf; /* received, not yet returned */
    size_t len, cap;
    bool eof; /* the server closed (or reset) the connection */
} sbt_client;

/* Connect to 127.0.0.1:port. Returns 0 or -1. Does not read the
 * greeting. */
int sbt_connect(sbt_client *c, int port);

/* As sbt_connect(), with the socket's receive buffer set to `rcvbuf` bytes
 * before the handshake (so that it also sets the TCP window): a client
 * that stops reading fills up fast. Returns 0 or -1. */
int sbt_connect_rcvbuf(sbt_client *c, int port, int rcvbuf);

/* Append what is readable on `fd` to the NUL-terminated *buf of *len bytes
 * (one read). Returns false at EOF or on error. */
bool sbt_drain_fd(int fd, char **buf, size_t *len);

/* Connect and read the `info` greeting. Returns it (caller deletes with
 * cJSON_Delete) or NULL. */
cJSON *sbt_connect_info(sbt_client *c, int port);

void sbt_close(sbt_client *c);

/* Close with an RST (SO_LINGER 0). */
void sbt_reset(sbt_client *c);

/* Write all of buf[0..n). Returns 0 or -1. */
int sbt_send(sbt_client *c, const void *buf, size_t n);

/* Write all of buf[0..n) to `fd` without blocking past `deadline_ms`
 * (sbt_now_ms() clock): for a peer that may stop reading. Returns 0, or -1
 * on error or when the deadline passed. */
int sbt_send_by(int fd, const void *buf, size_t n, long long deadline_ms);

/* Write a string. Returns 0 or -1. */
int sbt_sends(sbt_client *c, const char *s);

/* printf-style frame writer (the caller writes the "\n"). */
int sbt_sendf(sbt_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The next line from the server without its "\n", waiting up to
 * `timeout_ms`. Returns a malloc'd string (caller frees), or NULL on
 * timeout, EOF or error. */
char *sbt_read_line(sbt_client *c, int timeout_ms);

/* Parse one line from the server strictly: a single JSON object with a
 * string "op", nothing after it, well-formed UTF-8 without raw control
 * bytes. Returns it (cJSON_Delete) or NULL after printing the line. */
cJSON *sbt_parse_frame(const char *line);

/* The next line, which must be a valid frame (sbt_parse_frame), waiting up
 * to `timeout_ms`. Returns it (caller frees), or NULL with *why set to
 * "none" (timeout or EOF) or "invalid JSON". */
char *sbt_read_frame_line(sbt_client *c, int timeout_ms, const char **why);

/* The next frame, parsed strictly (sbt_parse_frame). NULL on timeout, EOF
 * or an invalid frame (which is a failure in itself: the server never sends
 * invalid JSON). */
cJSON *sbt_read(sbt_client *c, int timeout_ms);

/* Read frames until one has "op" == `op` (skipping none: the next frame
 * must be it). Returns it or NULL. */
cJSON *sbt_expect(sbt_client *c, const char *op, int timeout_ms);

/* Read the next frame and check it is an err with `code`. */
bool sbt_expect_err(sbt_client *c, const char *code, int timeout_ms);

/* Send `frame` (with "\n" appended) carrying an id and wait for the
 * matching ok. Returns true on ok. */
bool sbt_request_ok(sbt_client *c, const char *frame, int timeout_ms);

/* True when the server closes the connection within `timeout_ms`
 * (frames before the close are skipped). */
bool sbt_wait_closed(sbt_client *c, int timeout_ms);

/* True when nothing arrives within `ms`. */
bool sbt_quiet(sbt_client *c, int ms);

/* A string field of a frame, or NULL. */
const char *sbt_str(const cJSON *j, const char *field);

/* A number field of a frame, or -1. */
double sbt_num(const cJSON *j, const char *field);

/* Ask for stats on a fresh frame and return the stats object. */
cJSON *sbt_stats(sbt_client *c, int timeout_ms);

/* Milliseconds of CLOCK_MONOTONIC. */
long long sbt_now_ms(void);

#endif
