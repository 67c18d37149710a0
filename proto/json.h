/* json.h - a strict one-pass JSON validator that returns spans.
 *
 * The hot path of the relay: every client frame is checked against the
 * RFC 8259 grammar and RFC 3629 UTF-8 in a single scan, with no allocation
 * and no recursion. The scanner does not build a tree: for a top-level
 * object it reports where each member's key and value are (offsets into the
 * caller's buffer), so the caller can take fields as byte spans and relay
 * values exactly as received.
 *
 * Strictness, beyond the grammar:
 * - bytes must be well-formed UTF-8: no overlong forms, no surrogates
 *   (U+D800..U+DFFF encoded directly), nothing above U+10FFFF;
 * - a \u escape of a high surrogate must be followed by a \u escape of a low
 *   surrogate, and a low surrogate escape must follow a high one;
 * - no byte order mark, no NUL or other control byte outside what the grammar
 *   allows (a raw control byte inside a string is an error);
 * - nesting deeper than SB_JSON_MAX_DEPTH arrays/objects is an error.
 *
 * Threads: all functions are pure and thread-safe. */
#ifndef SB_JSON_H
#define SB_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting of arrays and objects accepted (the top level is 1). */
#define SB_JSON_MAX_DEPTH 128

typedef enum sb_json_type {
    SB_JSON_NONE = 0,
    SB_JSON_OBJECT,
    SB_JSON_ARRAY,
    SB_JSON_STRING,
    SB_JSON_NUMBER,
    SB_JSON_TRUE,
    SB_JSON_FALSE,
    SB_JSON_NULL,
} sb_json_type;

/* One member of the top-level object. */
typedef struct sb_json_member {
    uint32_t key_off; /* the key's text between its quotes, still escaped */
    uint32_t key_len;
    uint32_t val_off; /* the value's whole text; a string includes quotes */
    uint32_t val_len;
    sb_json_type type; /* the value's type */
    bool key_escaped;  /* the key contains a backslash escape */
    bool val_escaped;  /* a string value contains a backslash escape */
} sb_json_member;

typedef struct sb_json_result {
    sb_json_type type; /* type of the top-level value */
    size_t n_members;  /* members of a top-level object, all of them, even
                          past `max_members` */
    size_t err_off;    /* on error: offset of the offending byte (or len) */
    const char *err;   /* on error: static English text, e.g.
                          "invalid UTF-8 in string" */
} sb_json_result;

/* Check that buf[0..len) is exactly one JSON value, with optional JSON
 * whitespace (space, tab, CR, LF) before and after and nothing else. When
 * the value is an object, its first `max_members` members are written to
 * `members` in order (`members` may be NULL when `max_members` is 0).
 * Borrows `buf`; writes `res` in every case.
 * Returns 0 when valid, -EINVAL on a grammar or UTF-8 error, -E2BIG when
 * nesting exceeds SB_JSON_MAX_DEPTH (res->err and res->err_off say where). */
int sb_json_scan(const char *buf,
                 size_t len,
                 sb_json_member *members,
                 size_t max_members,
                 sb_json_result *res);

/* Decode the body of a JSON string that sb_json_scan() accepted (the bytes
 * between the quotes, escapes included) into `dst`, resolving every escape
 * and surrogate pair into UTF-8. `dst` needs `len` bytes at most and may be
 * equal to `src` (decoding in place is safe: output never outruns input).
 * No terminating NUL is written.
 * Returns the decoded length. The input must have been validated: the result
 * is unspecified for text the scanner would reject. */
size_t sb_json_unescape(char *dst, const char *src, size_t len);

/* Write `src[0..len)` as a JSON string body (no quotes) into `dst`, escaping
 * '"', '\\', bytes below 0x20 (as \n, \t, ... or \u00XX) and 0x7F (as
 * \u007f); other bytes are copied, so the output is valid JSON only when
 * the input is valid UTF-8. `dst` needs sb_json_escaped_len() bytes.
 * Returns the bytes written. */
size_t sb_json_escape(char *dst, const char *src, size_t len);

/* Bytes that sb_json_escape() would write for `src[0..len)`. */
size_t sb_json_escaped_len(const char *src, size_t len);

#endif
