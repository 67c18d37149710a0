/* topic.h - topic and pattern rules of the wire protocol.
 *
 * A topic is 1 to 255 bytes of tokens separated by '.'. Tokens are non-empty
 * and contain no space, no control character (bytes 0x00-0x1F and 0x7F, and
 * the UTF-8 encodings of U+0080..U+009F), no '*' and no '>'. A pattern may
 * also use '*' as a whole token (exactly one token) and '>' as its last
 * token (one or more tokens).
 *
 * Topics are taken as decoded UTF-8 bytes; the caller has already checked
 * that they are well-formed UTF-8 (the JSON scanner does).
 *
 * Threads: all functions are pure and thread-safe. */
#ifndef SB_TOPIC_H
#define SB_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#define SB_TOPIC_MAX 255

/* True when t[0..len) is a valid literal topic (no wildcards). Borrows t. */
bool sb_topic_valid(const char *t, size_t len);

/* True when p[0..len) is a valid subscription pattern. Borrows p. */
bool sb_topic_valid_pattern(const char *p, size_t len);

/* True when p[0..len) contains a wildcard token ('*' or '>'). Assumes a
 * valid pattern. */
bool sb_topic_has_wildcard(const char *p, size_t len);

/* True when the valid pattern p matches the valid topic t. Borrows both. */
bool sb_topic_match(const char *p, size_t plen, const char *t, size_t tlen);

/* Split t[0..len) at dots: writes up to `max` token spans (offset, length)
 * and returns the number of tokens (which may exceed `max`). */
size_t sb_topic_tokens(
    const char *t, size_t len, size_t *offs, size_t *lens, size_t max);

#endif
