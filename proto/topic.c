/* topic.c - topic and pattern rules of the wire protocol.
 *
 * Validation is one pass over the bytes with a 256-entry class table: the
 * common case (printable ASCII) costs one load and one compare per byte, and
 * a token is judged when its '.' (or the end) is reached, so nothing is
 * scanned twice. Matching walks pattern and topic token by token with no
 * allocation and no recursion: '>' ends the walk as soon as it is reached,
 * which is why it may only be the last token.
 *
 * The C1 controls U+0080..U+009F are the only multi-byte sequences that are
 * refused. In well-formed UTF-8 (a precondition, see topic.h) they are
 * exactly the pairs 0xC2 0x80..0xC2 0x9F, and 0xC2 is always a lead byte, so
 * looking at the byte after each 0xC2 is enough; other sequences are opaque
 * token bytes. */
#include "topic.h"

#include <stdint.h>
#include <string.h>

enum byte_class {
    C_OK = 0, /* allowed inside any token */
    C_BAD,    /* space, C0 controls and DEL: never allowed */
    C_DOT,    /* the token separator */
    C_WILD,   /* '*' and '>': only as a whole pattern token */
    C_C2,     /* lead byte of U+0080..U+00BF: the next byte decides */
};

/* Class of every byte value: rows are the high nibble, columns the low. */
static const uint8_t byte_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 C0 controls */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 C0 controls */
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, 0, /* 0x20 ' ' '*' '.' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, /* 0x30 '>' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x50 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* 0x70 DEL */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x90 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xA0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xB0 */
    0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xC0 0xC2 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xD0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xE0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xF0 */
};

/* A token holding '*' or '>' is a wildcard only when it is that single
 * byte, and '>' only as the last token. */
static bool wild_token_ok(const unsigned char *tok, size_t n, bool last)
{
    return n == 1 && (tok[0] == '*' || last);
}

static bool scan(const char *s, size_t len, bool pattern)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0;  /* offset of the current token */
    bool wild = false; /* the current token holds '*' or '>' */

    if (len == 0 || len > SB_TOPIC_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        switch (byte_class[u[i]]) {
        case C_OK:
            break;
        case C_DOT:
            if (i == start)
                return false;
            if (wild && !wild_token_ok(u + start, i - start, false))
                return false;
            start = i + 1;
            wild = false;
            break;
        case C_WILD:
            if (!pattern)
                return false;
            wild = true;
            break;
        case C_C2:
            if (i + 1 < len && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f)
                return false;
            break;
        default:
            return false;
        }
    }
    if (start == len)
        return false; /* empty last token: a trailing '.' */
    return !wild || wild_token_ok(u + start, len - start, true);
}

bool sb_topic_valid(const char *t, size_t len)
{
    return scan(t, len, false);
}

bool sb_topic_valid_pattern(const char *p, size_t len)
{
    return scan(p, len, true);
}

bool sb_topic_has_wildcard(const char *p, size_t len)
{
    /* In a valid pattern these bytes only ever appear as wildcard tokens. */
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '*' || p[i] == '>')
            return true;
    }
    return false;
}

/* Length of the token starting at s, which ends at '.' or at end. */
static size_t token_len(const char *s, const char *end)
{
    const char *dot = memchr(s, '.', (size_t)(end - s));
    return (size_t)((dot ? dot : end) - s);
}

/* Start of the token after the one at s of length n, or end. Never steps
 * past end, even when the text ends with a '.'. */
static const char *next_token(const char *s, size_t n, const char *end)
{
    return s + n < end ? s + n + 1 : end;
}

bool sb_topic_match(const char *p, size_t plen, const char *t, size_t tlen)
{
    const char *pend = p + plen;
    const char *tend = t + tlen;

    while (p < pend) {
        if (t >= tend)
            return false; /* the pattern has tokens left, the topic not */
        size_t pl = token_len(p, pend);
        size_t tl = token_len(t, tend);
        if (pl == 1 && p[0] == '>')
            return true; /* at least one topic token is left: t < tend */
        if (!(pl == 1 && p[0] == '*') && (pl != tl || memcmp(p, t, pl) != 0))
            return false;
        p = next_token(p, pl, pend);
        t = next_token(t, tl, tend);
    }
    return t >= tend;
}

size_t sb_topic_tokens(
    const char *t, size_t len, size_t *offs, size_t *lens, size_t max)
{
    const char *end = t + len;
    size_t n = 0;

    /* An empty text has no tokens; otherwise there is one more token than
     * there are dots, empty ones included. */
    if (len == 0)
        return 0;
    for (const char *s = t;; n++) {
        size_t tl = token_len(s, end);
        if (n < max) {
            offs[n] = (size_t)(s - t);
            lens[n] = tl;
        }
        if (s + tl == end)
            return n + 1;
        s += tl + 1;
    }
}
