/* client.h - a small blocking client for sockbusd (protocol version 1).
 *
 * One sb_client is one TCP connection. Every call blocks for at most the
 * time it is given (milliseconds; a negative timeout waits for ever) and
 * returns 0 or a count on success, or a negative errno:
 *   -ETIMEDOUT   nothing came in time;
 *   -ECANCELED   the cancel_fd of the options became readable (a signal
 *                handler writes to it: this is how Ctrl-C stops a wait);
 *   -EPIPE       the server closed the connection (frames it sent before
 *                closing can still be read);
 *   -EREMOTEIO   the server answered our frame with an err frame;
 *   -EPROTO      the server sent something that is not a JSON object line;
 *   -ENOMEM, or the errno of a failed socket call.
 * EINTR is retried everywhere; sends use MSG_NOSIGNAL, so no call raises
 * SIGPIPE.
 *
 * Server pings are answered with a pong inside every call that reads, and
 * are never returned. Frames that arrive while a call waits for something
 * else (an ok, say) are kept, in order, for sb_client_read.
 *
 * Memory: cJSON values and frames returned by these calls are owned by the
 * caller; strings passed in are borrowed (used during the call only).
 *
 * Threads: a client is used by one thread at a time; distinct clients are
 * independent. Nothing here touches global state (cJSON's hooks are left
 * alone and cJSON_GetErrorPtr is never used). */
#ifndef SB_CLIENT_H
#define SB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#define SB_CLIENT_VERSION "0.1.0"
#define SB_CLIENT_DEFAULT_PORT "7878"
#define SB_CLIENT_DEFAULT_SERVER "127.0.0.1:" SB_CLIENT_DEFAULT_PORT
#define SB_CLIENT_CONNECT_TIMEOUT_MS 5000
/* The server refuses frames nested deeper than this (decisions.md, 5);
 * the frame's own object counts, so pub data may nest one level less. */
#define SB_CLIENT_MAX_DEPTH 128

typedef struct sb_client sb_client;

typedef struct sb_client_opts {
    const char *name;       /* sent in connect; NULL: none */
    const char *token;      /* sent in connect; NULL: none */
    int echo;               /* -1: server default (true), 0 or 1 */
    int connect_timeout_ms; /* TCP connect, greeting and connect's ok */
    int cancel_fd;          /* -1, or a descriptor that cancels waits */
} sb_client_opts;

/* One line received from the server. */
typedef struct sb_client_frame {
    char *text;     /* the line without "\r\n", NUL-terminated */
    size_t len;     /* strlen(text) */
    cJSON *json;    /* the parsed line: always an object */
    const char *op; /* its "op" string, or "" (points into json) */
} sb_client_frame;

/* Fill `o` with the defaults: no name, no token, echo -1, connect timeout
 * SB_CLIENT_CONNECT_TIMEOUT_MS, cancel_fd -1. */
void sb_client_opts_init(sb_client_opts *o);

/* Connect to `addr` ("HOST:PORT", "[IPV6]:PORT", "HOST" or ":PORT"; the
 * host may be a name, IPv4 or IPv6; missing parts default to
 * 127.0.0.1 and 7878), read the info greeting, and, when `o` sets a name,
 * a token or echo, send connect and wait for its ok. All of it within
 * o->connect_timeout_ms. `o` may be NULL (defaults).
 * Returns 0 and *out (owned: free with sb_client_close), or a negative
 * errno with a one-line reason in `err` (for example "connect to
 * 127.0.0.1:7878: Connection refused" or "server error auth_failed:
 * authentication failed"): -EINVAL for a malformed address, -EHOSTUNREACH
 * when the name does not resolve, -ECONNREFUSED and the like from
 * connect(), -ETIMEDOUT, -EREMOTEIO when the server answered err (instead
 * of the greeting, or to connect), -EPROTO when it is not sockbusd. */
int sb_client_connect(sb_client **out,
                      const char *addr,
                      const sb_client_opts *o,
                      char *err,
                      size_t errlen);

/* Close the socket and free everything, frames still queued included.
 * Accepts NULL. */
void sb_client_close(sb_client *c);

/* The greeting (borrowed: valid until sb_client_close). */
const cJSON *sb_client_info(const sb_client *c);

/* The address given to sb_client_connect, as resolved ("HOST:PORT"). */
const char *sb_client_addr(const sb_client *c);

/* The socket, to poll for input next to other descriptors; when it is
 * readable, sb_client_read with timeout 0 consumes what came. */
int sb_client_fd(const sb_client *c);

/* A fresh id for a frame: 1, 2, 3... */
long long sb_client_next_id(sb_client *c);

/* Send one frame: `text` (borrowed) is one JSON object of `n` bytes
 * without a newline; the newline is added. With `more`, the frame may wait
 * in a buffer for the next send (up to 64 KiB) so that a batch goes out in
 * few writes; a send without `more`, or sb_client_flush, writes it all.
 * While the socket is full, what the server sends is buffered, so that
 * neither side can wait for the other for ever.
 * Returns 0, -EINVAL (a newline in text), -ECANCELED, -EPIPE, -errno. */
int sb_client_send_text(sb_client *c, const char *text, size_t n, bool more);

/* Serialize `frame` (borrowed) and send it as sb_client_send_text. */
int sb_client_send_json(sb_client *c, const cJSON *frame, bool more);

/* Write everything buffered. Returns 0 or as sb_client_send_text. */
int sb_client_flush(sb_client *c);

/* The next frame from the server, waiting up to `timeout_ms` (0 polls).
 * Returns 0 and *out (owned: free with sb_client_frame_free), -ETIMEDOUT,
 * -ECANCELED, -EPIPE once the server has closed and every frame it sent
 * was returned (-ECONNRESET after a reset), or -EPROTO for a line that is
 * not a JSON object (dropped; the next call goes on) or one longer than
 * twice the server's max_frame (the end of input: every later call fails
 * the same way). */
int sb_client_read(sb_client *c, int timeout_ms, sb_client_frame **out);

/* Wait for the ok or err that answers frame `id` (sent by the caller).
 * Other frames are kept for sb_client_read. Returns 0 on ok; -EREMOTEIO
 * on err, with the err frame in *err_out when err_out is not NULL (owned);
 * otherwise as sb_client_read.
 * An err without an id whose code says the server could not read a frame
 * (bad_json, bad_frame, frame_too_large) also ends the wait: the server
 * cannot echo an id it could not read, so with one frame in flight it is
 * the answer. A caller that pipelined frames without ids checks whether
 * the err has an "id" and, if not, counts it and waits again. */
int sb_client_wait_ok(sb_client *c,
                      long long id,
                      int timeout_ms,
                      sb_client_frame **err_out);

/* Add a fresh "id" to `frame` (modified, still the caller's), send it and
 * wait for its answer as sb_client_wait_ok. */
int sb_client_call(sb_client *c,
                   cJSON *frame,
                   int timeout_ms,
                   sb_client_frame **err_out);

/* Build a pub frame: `data` (borrowed) must be valid JSON (checked with
 * sb_client_parse_json) and is copied byte for byte, without the
 * whitespace outside its strings; `reply` may be NULL; `id` is added when
 * it is positive. Returns an owned string (free()) or NULL (no memory). */
char *sb_client_pub_text(const char *topic,
                         const char *data,
                         const char *reply,
                         long long id);

/* Parse `n` bytes of JSON that must hold exactly one value (whitespace
 * around it is allowed) with the server's rules: before cJSON sees the
 * text (it recurses, and is lenient), refuse arrays and objects nested
 * deeper than `max_depth`, numbers outside RFC 8259 (01, 1., 1.e5), raw
 * control characters in strings and invalid UTF-8 (RFC 3629). Returns 0 and
 * *out (owned: cJSON_Delete; out may be NULL to only check), or -EINVAL with a
 * reason and byte offset in `err` (err may be NULL). */
int sb_client_parse_json(const char *text,
                         size_t n,
                         int max_depth,
                         cJSON **out,
                         char *err,
                         size_t errlen);

/* Where the value of the top-level member `key` of a frame lies in its
 * text (for example the "data" of a msg, exactly as the server sent it).
 * Keys are compared as written: a key spelled with escapes never matches.
 * Returns 0 with *val and *n (borrowed from f->text), or -ENOENT. */
int sb_client_frame_member(const sb_client_frame *f,
                           const char *key,
                           const char **val,
                           size_t *n);

/* A string member of a frame, or NULL (borrowed from f->json). */
const char *sb_client_frame_str(const sb_client_frame *f, const char *key);

/* "server error CODE: MSG" for an err frame, into buf (NUL-terminated,
 * truncated to n bytes). */
void sb_client_frame_err_text(const sb_client_frame *f, char *buf, size_t n);

/* Free a frame and clear the caller's pointer. Accepts NULL and *f NULL. */
void sb_client_frame_free(sb_client_frame **f);

#endif
