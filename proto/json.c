/* json.c - strict one-pass JSON validator (see json.h for the contract).
 *
 * Why it looks like this:
 * - Every client frame goes through sb_json_scan(), so the common case is
 *   kept short: plain ASCII string bytes are skipped eight at a time with
 *   word-wide bit tests, whitespace is looked up in a table while the next
 *   byte is fetched, and everything rarer (escapes, UTF-8 sequences,
 *   errors) lives in helpers off that path.
 * - No recursion: nesting is a bit stack (1 = object, 0 = array) of
 *   SB_JSON_MAX_DEPTH bits on the C stack, so a hostile frame of a million
 *   '[' costs 16 bytes of stack and stops at depth 129.
 * - The grammar is a small state machine written with labels (value, key,
 *   after a value) like picohttpparser, rather than a switch on a state
 *   variable as in jsmn: each state knows what may come next, and a jump
 *   costs nothing.
 * - Errors report the first byte that cannot be part of a valid text, so a
 *   client can find its mistake; running out of input reports `len`. The
 *   one exception is an unpaired surrogate, reported at the backslash of
 *   the escape that is left unpaired. */
#include "json.h"

#include <errno.h>
#include <string.h>

/* String byte classes. C_PLAIN is 0 so the hot loop tests for nonzero. */
enum {
    C_PLAIN = 0, /* printable ASCII other than '"' and '\\', and DEL */
    C_QUOTE,
    C_BSLASH,
    C_CTRL, /* 0x00..0x1F: must be escaped */
    C_BAD,  /* 0x80..0xC1 and 0xF5..0xFF: never start a UTF-8 sequence */
    C_U2,   /* 0xC2..0xDF: one continuation byte */
    C_E0,   /* second byte 0xA0..0xBF (no overlong) */
    C_U3,   /* 0xE1..0xEC, 0xEE, 0xEF */
    C_ED,   /* second byte 0x80..0x9F (no surrogates) */
    C_F0,   /* second byte 0x90..0xBF (no overlong) */
    C_U4,   /* 0xF1..0xF3 */
    C_F4,   /* second byte 0x80..0x8F (nothing above U+10FFFF) */
};

#define R16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
#define P C_PLAIN
#define Q C_QUOTE
#define S C_BSLASH
#define X C_BAD
#define U2 C_U2
#define U3 C_U3
#define U4 C_U4

/* clang-format off */
static const uint8_t str_class[] = {
    R16(C_CTRL),                                             /* 0x00 */
    R16(C_CTRL),                                             /* 0x10 */
    P, P, Q, P, P, P, P, P, P, P, P, P, P, P, P, P,          /* 0x20 */
    R16(P),                                                  /* 0x30 */
    R16(P),                                                  /* 0x40 */
    P, P, P, P, P, P, P, P, P, P, P, P, S, P, P, P,          /* 0x50 */
    R16(P),                                                  /* 0x60 */
    R16(P),                      /* 0x70: RFC 8259 allows a raw DEL */
    R16(X), R16(X), R16(X), R16(X),  /* 0x80..0xBF: continuations */
    X, X, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2,
    R16(U2),                                                 /* 0xD0 */
    C_E0, U3, U3, U3, U3, U3, U3, U3, U3, U3, U3, U3, U3, C_ED, U3, U3,
    C_F0, U4, U4, U4, C_F4, X, X, X, X, X, X, X, X, X, X, X,
};
/* clang-format on */
_Static_assert(sizeof(str_class) == 256, "one class per byte value");

#undef U4
#undef U3
#undef U2
#undef X
#undef S
#undef Q
#undef P

/* Indexed by class: sequence length and the range of its second byte (the
 * only one whose range depends on the lead byte, RFC 3629 section 4). */
static const uint8_t utf8_len[C_F4 + 1] = {
    [C_U2] = 2, [C_E0] = 3, [C_U3] = 3, [C_ED] = 3,
    [C_F0] = 4, [C_U4] = 4, [C_F4] = 4,
};
static const uint8_t utf8_lo[C_F4 + 1] = {
    [C_U2] = 0x80, [C_E0] = 0xA0, [C_U3] = 0x80, [C_ED] = 0x80,
    [C_F0] = 0x90, [C_U4] = 0x80, [C_F4] = 0x80,
};
static const uint8_t utf8_hi[C_F4 + 1] = {
    [C_U2] = 0xBF, [C_E0] = 0xBF, [C_U3] = 0xBF, [C_ED] = 0x9F,
    [C_F0] = 0xBF, [C_U4] = 0xBF, [C_F4] = 0x8F,
};

/* Bytes outside strings: JSON whitespace, and the characters that may not
 * directly follow a number or a literal (so "01", "1.2.3" and "truex" get
 * a precise message instead of "unexpected character"). */
enum { T_WS = 1, T_WORD = 2 };
#define S T_WS
#define W T_WORD

/* clang-format off */
static const uint8_t out_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, S, S, 0, 0, S, 0, 0,          /* 0x00 */
    R16(0),                                                  /* 0x10 */
    S, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, W, 0, W, W, 0,          /* 0x20 */
    W, W, W, W, W, W, W, W, W, W, 0, 0, 0, 0, 0, 0,          /* 0x30 */
    0, W, W, W, W, W, W, W, W, W, W, W, W, W, W, W,          /* 0x40 */
    W, W, W, W, W, W, W, W, W, W, W, 0, 0, 0, 0, W,          /* 0x50 */
    0, W, W, W, W, W, W, W, W, W, W, W, W, W, W, W,          /* 0x60 */
    W, W, W, W, W, W, W, W, W, W, W, 0, 0, 0, 0, 0,          /* 0x70 */
};
/* clang-format on */

#undef W
#undef S

/* Hex digit value plus one; 0 means not a hex digit. */
static const uint8_t hex_val[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
    ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12,
    ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

/* For the few helpers of the hot loop that the compiler would otherwise
 * call: a call costs more than scanning a short string. */
#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* Where and why the scan stopped. */
struct scan_err {
    const char *msg;
    const uint8_t *at;
    int rc;
};

static const uint8_t *
fail(struct scan_err *e, const uint8_t *at, const char *msg)
{
    e->msg = msg;
    e->at = at;
    e->rc = -EINVAL;
    return NULL;
}

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end)
{
    while (p < end && (out_class[*p] & T_WS))
        p++;
    return p;
}

/* Reads the four hex digits of a \u escape at p (the backslash). */
static const uint8_t *read_u_escape(const uint8_t *p,
                                    const uint8_t *end,
                                    unsigned *cp,
                                    struct scan_err *e)
{
    unsigned v = 0;
    for (int i = 2; i < 6; i++) {
        if (end - p <= i)
            return fail(e, end, "unterminated string");
        unsigned h = hex_val[p[i]];
        if (h == 0)
            return fail(e, p + i, "invalid escape");
        v = v << 4 | (h - 1);
    }
    *cp = v;
    return p + 6;
}

/* A \u escape at p. A high surrogate must be followed at once by a \u
 * escape of a low surrogate; a low surrogate may not stand alone. Both
 * report the offending escape's backslash. */
static const uint8_t *
scan_u_escape(const uint8_t *p, const uint8_t *end, struct scan_err *e)
{
    unsigned hi, lo;
    const uint8_t *q = read_u_escape(p, end, &hi, e);
    if (q == NULL || (hi & 0xF800) != 0xD800)
        return q;
    if (hi >= 0xDC00)
        return fail(e, p, "unpaired surrogate");
    if (q == end || (q[0] == '\\' && end - q == 1))
        return fail(e, end, "unterminated string");
    if (q[0] != '\\' || q[1] != 'u')
        return fail(e, p, "unpaired surrogate");
    const uint8_t *r = read_u_escape(q, end, &lo, e);
    if (r != NULL && (lo < 0xDC00 || lo > 0xDFFF))
        return fail(e, p, "unpaired surrogate");
    return r;
}

/* One multi-byte UTF-8 sequence whose lead byte at p has class `c`. */
static const uint8_t *
scan_utf8(const uint8_t *p, const uint8_t *end, unsigned c, struct scan_err *e)
{
    size_t n = utf8_len[c];
    for (size_t i = 1; i < n; i++) {
        if (p + i == end)
            return fail(e, end, "unterminated string");
        uint8_t lo = i == 1 ? utf8_lo[c] : 0x80;
        uint8_t hi = i == 1 ? utf8_hi[c] : 0xBF;
        if (p[i] < lo || p[i] > hi)
            return fail(e, p + i, "invalid UTF-8");
    }
    return p + n;
}

/* Everything in a string but plain ASCII and the closing quote: an escape,
 * a UTF-8 sequence or an error, at p. */
static const uint8_t *string_special(const uint8_t *p,
                                     const uint8_t *end,
                                     bool *escaped,
                                     struct scan_err *e)
{
    unsigned c = str_class[*p];
    if (c == C_BSLASH) {
        *escaped = true;
        if (end - p < 2)
            return fail(e, end, "unterminated string");
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            return p + 2;
        case 'u':
            return scan_u_escape(p, end, e);
        default:
            return fail(e, p + 1, "invalid escape");
        }
    }
    if (c == C_CTRL)
        return fail(e, p, "control character in string");
    if (c == C_BAD)
        return fail(e, p, "invalid UTF-8");
    return scan_utf8(p, end, c, e);
}

#if defined(__GNUC__) && defined(__BYTE_ORDER__) &&                            \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Where the first byte that is not plain string text lies among the eight
 * at p (8 if none): the usual SWAR tests for a zero byte (after XOR with
 * '"' and '\\'), a byte below 0x20 and a byte with its top bit set. A test
 * can flag a byte falsely only above a byte it flags rightly, so the lowest
 * flag is exact; little-endian puts the first byte lowest. */
static inline unsigned plain_run8(const uint8_t *p)
{
    const uint64_t ones = 0x0101010101010101u;
    uint64_t v;
    memcpy(&v, p, 8);
    uint64_t q = v ^ (ones * '"');
    uint64_t b = v ^ (ones * '\\');
    uint64_t m = ((q - ones) & ~q) | ((b - ones) & ~b) | (v - ones * 0x20) | v;
    m &= ones * 0x80;
    return m ? (unsigned)__builtin_ctzll(m) >> 3 : 8;
}
#else
static inline unsigned plain_run8(const uint8_t *p)
{
    unsigned i = 0;
    while (i < 8 && str_class[p[i]] == C_PLAIN)
        i++;
    return i;
}
#endif

/* A string whose opening quote is just before p. Returns the byte after the
 * closing quote; sets *escaped when the string holds an escape. */
static ALWAYS_INLINE const uint8_t *scan_string(const uint8_t *p,
                                                const uint8_t *end,
                                                bool *escaped,
                                                struct scan_err *e)
{
    *escaped = false;
    for (;;) {
        /* The hot loop: most string bytes are plain ASCII. */
        while (end - p >= 8) {
            unsigned n = plain_run8(p);
            p += n;
            if (n < 8)
                goto special;
        }
        while (p < end && str_class[*p] == C_PLAIN)
            p++;
        if (p == end)
            return fail(e, end, "unterminated string");
    special:
        if (*p == '"')
            return p + 1;
        p = string_special(p, end, escaped, e);
        if (p == NULL)
            return NULL;
    }
}

static inline bool is_digit(uint8_t c)
{
    return (unsigned)(c - '0') < 10;
}

static const uint8_t *skip_digits(const uint8_t *p, const uint8_t *end)
{
    while (p < end && is_digit(*p))
        p++;
    return p;
}

/* A number at p, exactly as RFC 8259 section 6 writes it. */
static const uint8_t *
scan_number(const uint8_t *p, const uint8_t *end, struct scan_err *e)
{
    if (*p == '-')
        p++;
    if (p == end)
        return fail(e, end, "invalid number");
    if (*p == '0')
        p++;
    else if (is_digit(*p))
        p = skip_digits(p + 1, end);
    else
        return fail(e, p, "invalid number");
    if (p < end && *p == '.') {
        if (++p == end || !is_digit(*p))
            return fail(e, p, "invalid number");
        p = skip_digits(p + 1, end);
    }
    if (p < end && (*p | 0x20) == 'e') {
        if (++p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return fail(e, p, "invalid number");
        p = skip_digits(p + 1, end);
    }
    if (p < end && (out_class[*p] & T_WORD))
        return fail(e, p, "invalid number");
    return p;
}

/* The literal `lit` of `n` bytes, whose first byte matched at p. */
static const uint8_t *scan_literal(const uint8_t *p,
                                   const uint8_t *end,
                                   const char *lit,
                                   size_t n,
                                   struct scan_err *e)
{
    for (size_t i = 1; i < n; i++) {
        if (p + i == end)
            return fail(e, end, "invalid literal");
        if (p[i] != (uint8_t)lit[i])
            return fail(e, p + i, "invalid literal");
    }
    p += n;
    if (p < end && (out_class[*p] & T_WORD))
        return fail(e, p, "invalid literal");
    return p;
}

static sb_json_type type_of(uint8_t first)
{
    switch (first) {
    case '{':
        return SB_JSON_OBJECT;
    case '[':
        return SB_JSON_ARRAY;
    case '"':
        return SB_JSON_STRING;
    case 't':
        return SB_JSON_TRUE;
    case 'f':
        return SB_JSON_FALSE;
    case 'n':
        return SB_JSON_NULL;
    default:
        return SB_JSON_NUMBER;
    }
}

/* A byte where a value should start. */
static const uint8_t *
bad_value(const uint8_t *p, const uint8_t *end, struct scan_err *e)
{
    if (p == end)
        return fail(e, end, "unexpected end of input");
    if (end - p >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
        return fail(e, p, "byte order mark");
    return fail(e, p, "unexpected character");
}

/* A scalar value at p (its first byte is not '{' or '['). */
static inline const uint8_t *scan_scalar(const uint8_t *p,
                                         const uint8_t *end,
                                         bool *escaped,
                                         struct scan_err *e)
{
    switch (*p) {
    case '"':
        return scan_string(p + 1, end, escaped, e);
    case 't':
        return scan_literal(p, end, "true", 4, e);
    case 'f':
        return scan_literal(p, end, "false", 5, e);
    case 'n':
        return scan_literal(p, end, "null", 4, e);
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return scan_number(p, end, e);
    default:
        return bad_value(p, end, e);
    }
}

/* The members of the top-level object, as the grammar finds them. */
struct members {
    const uint8_t *buf;
    sb_json_member *m;
    size_t max;
    size_t n; /* members whose value has been scanned */
};

/* A key has just been scanned (quotes excluded). */
static inline void member_key(struct members *ms,
                              const uint8_t *key,
                              const uint8_t *key_end,
                              bool escaped)
{
    if (ms->n < ms->max) {
        sb_json_member *m = &ms->m[ms->n];
        m->key_off = (uint32_t)(key - ms->buf);
        m->key_len = (uint32_t)(key_end - key);
        m->key_escaped = escaped;
    }
}

/* The member's value starts at p. */
static inline void member_value(struct members *ms, const uint8_t *p)
{
    if (ms->n < ms->max)
        ms->m[ms->n].val_off = (uint32_t)(p - ms->buf);
}

/* The member's value ends just before p. */
static inline void
member_end(struct members *ms, const uint8_t *p, bool escaped)
{
    if (ms->n < ms->max) {
        sb_json_member *m = &ms->m[ms->n];
        m->val_len = (uint32_t)(p - ms->buf) - m->val_off;
        m->type = type_of(ms->buf[m->val_off]);
        m->val_escaped = m->type == SB_JSON_STRING && escaped;
    }
    ms->n++;
}

/* Skips whitespace at *pp and returns the byte there, or -1 at the end: one
 * test where a skip, an end check and a load would be three. */
static ALWAYS_INLINE int peek(const uint8_t **pp, const uint8_t *end)
{
    const uint8_t *p = *pp;
    while (p < end) {
        if (!(out_class[*p] & T_WS)) {
            *pp = p;
            return *p;
        }
        p++;
    }
    *pp = p;
    return -1;
}

/* The grammar itself: the value at p (not whitespace), up to end. Returns
 * the byte after it, or NULL with *e set. Longer than most functions here
 * because it is one state machine: the labels are its states, and the
 * state that matters (depth, the kind of the innermost container, the byte
 * at p) stays in locals, which the compiler keeps in registers. */
static const uint8_t *scan_value(struct members *ms,
                                 const uint8_t *p,
                                 const uint8_t *end,
                                 struct scan_err *e)
{
    /* One bit per open container, set for an object. */
    uint64_t stack[(SB_JSON_MAX_DEPTH + 63) / 64] = {0};
    unsigned depth = 0;
    bool in_object = false; /* the innermost container is an object */
    bool escaped = false;
    int c = *p;
    /* The depth at which values are top-level members; 0 never matches,
     * as depth is at least 1 wherever it is compared. */
    const unsigned member_depth = (unsigned)(c == '{');

value: /* c = *p is the first byte of a value, or -1 at the end */
    if (c == '{' || c == '[') {
        if (depth == SB_JSON_MAX_DEPTH) {
            fail(e, p, "nesting too deep");
            e->rc = -E2BIG;
            return NULL;
        }
        in_object = c == '{';
        if (in_object)
            stack[depth >> 6] |= (uint64_t)1 << (depth & 63);
        else
            stack[depth >> 6] &= ~((uint64_t)1 << (depth & 63));
        depth++;
        p++;
        c = peek(&p, end);
        if (c == (in_object ? '}' : ']'))
            goto close;
        if (in_object)
            goto key;
        goto value;
    }
    if (c < 0)
        return bad_value(p, end, e);
    p = scan_scalar(p, end, &escaped, e);
    if (p == NULL)
        return NULL;

after: /* just after a value */
    if (depth == 0)
        return p;
    if (depth == member_depth)
        member_end(ms, p, escaped);
    c = peek(&p, end);
    if (c == ',') {
        p++;
        c = peek(&p, end);
        if (in_object)
            goto key;
        goto value;
    }
    if (c != (in_object ? '}' : ']')) {
        if (c < 0)
            return fail(e, end, "unexpected end of input");
        return fail(e, p,
                    in_object ? "expected ',' or '}'" : "expected ',' or ']'");
    }

close: /* at the closing byte of the innermost container */
    p++;
    if (--depth > 0)
        in_object = (stack[(depth - 1) >> 6] >> ((depth - 1) & 63)) & 1;
    goto after;

key: /* c = *p is where a key is due in an object, or -1 at the end */
    if (c != '"') {
        if (c < 0)
            return fail(e, end, "unexpected end of input");
        return fail(e, p, "expected string key");
    }
    const uint8_t *k = p + 1;
    p = scan_string(k, end, &escaped, e);
    if (p == NULL)
        return NULL;
    if (depth == member_depth)
        member_key(ms, k, p - 1, escaped);
    c = peek(&p, end);
    if (c != ':') {
        if (c < 0)
            return fail(e, end, "unexpected end of input");
        return fail(e, p, "expected ':'");
    }
    p++;
    c = peek(&p, end);
    if (depth == member_depth)
        member_value(ms, p);
    goto value;
}

int sb_json_scan(const char *buf,
                 size_t len,
                 sb_json_member *members,
                 size_t max_members,
                 sb_json_result *res)
{
    *res = (sb_json_result){.type = SB_JSON_NONE};
#if SIZE_MAX > UINT32_MAX
    if (len > UINT32_MAX) {
        /* Member offsets are 32-bit; frames are far smaller anyway. */
        res->err = "input too large";
        return -EINVAL;
    }
#endif
    /* Tested before any pointer arithmetic: `buf` may be NULL here. */
    if (len == 0) {
        res->err = "empty input";
        return -EINVAL;
    }
    const uint8_t *start = (const uint8_t *)buf;
    const uint8_t *end = start + len;
    const uint8_t *first = skip_ws(start, end);
    if (first == end) {
        res->err = "empty input";
        res->err_off = len;
        return -EINVAL;
    }
    struct members ms = {.buf = start, .m = members, .max = max_members};
    struct scan_err e = {.msg = NULL, .at = NULL, .rc = 0};
    const uint8_t *p = scan_value(&ms, first, end, &e);
    if (p != NULL && (p = skip_ws(p, end)) != end)
        p = fail(&e, p, "trailing characters");
    res->n_members = ms.n;
    if (p == NULL) {
        res->err = e.msg;
        res->err_off = (size_t)(e.at - start);
        return e.rc;
    }
    res->type = type_of(*first);
    return 0;
}

/* Appends code point cp (at most U+10FFFF) as UTF-8. */
static char *put_utf8(char *d, unsigned cp)
{
    if (cp < 0x80) {
        *d++ = (char)cp;
    } else if (cp < 0x800) {
        *d++ = (char)(0xC0 | cp >> 6);
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *d++ = (char)(0xE0 | cp >> 12);
        *d++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *d++ = (char)(0xF0 | cp >> 18);
        *d++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *d++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    }
    return d;
}

/* The value of the \uXXXX escape at s[0..n), or -1 if it is not one.
 * Checking here costs little and keeps unescape memory-safe even on text
 * the scanner never saw. */
static long hex4(const char *s, size_t n)
{
    if (n < 6 || s[0] != '\\' || s[1] != 'u')
        return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        unsigned h = hex_val[(uint8_t)s[i]];
        if (h == 0)
            return -1;
        v = v << 4 | (long)(h - 1);
    }
    return v;
}

/* Decodes the escape at s (a backslash, with n bytes left) into d. Sets
 * *used to the input bytes consumed; the output is never longer. */
static char *unescape_one(char *d, const char *s, size_t n, size_t *used)
{
    static const char simple[256] = {
        ['"'] = '"',  ['\\'] = '\\', ['/'] = '/',  ['b'] = '\b',
        ['f'] = '\f', ['n'] = '\n',  ['r'] = '\r', ['t'] = '\t',
    };
    char c = n >= 2 ? simple[(uint8_t)s[1]] : 0;
    if (c != 0) {
        *used = 2;
        *d++ = c;
        return d;
    }
    long cp = hex4(s, n);
    if (cp < 0) {
        /* Text the scanner rejects: the result is unspecified, but this
         * keeps it in bounds. Copy the backslash as it is. */
        *used = 1;
        *d++ = '\\';
        return d;
    }
    *used = 6;
    long lo = cp >= 0xD800 && cp < 0xDC00 ? hex4(s + 6, n - 6) : -1;
    if (lo >= 0xDC00 && lo <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        *used = 12;
    }
    return put_utf8(d, (unsigned)cp);
}

size_t sb_json_unescape(char *dst, const char *src, size_t len)
{
    if (len == 0)
        return 0; /* before `src + len`: src may be NULL */
    char *d = dst;
    const char *end = src + len;
    while (src < end) {
        const char *bs = memchr(src, '\\', (size_t)(end - src));
        size_t run = (size_t)((bs ? bs : end) - src);
        /* Until the first escape, decoding in place copies nothing. */
        if (d != src)
            memmove(d, src, run);
        d += run;
        src += run;
        if (bs == NULL)
            break;
        size_t used;
        d = unescape_one(d, src, (size_t)(end - src), &used);
        src += used;
    }
    return (size_t)(d - dst);
}

/* For each byte: 0 to copy it, else the letter of its short escape, or 'u'
 * for \u00XX. DEL is escaped too, so output is plain printable ASCII
 * wherever the input was ASCII. */
/* clang-format off */
static const char escape_as[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',              /* 0x00 */
    'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',              /* 0x08 */
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',              /* 0x10 */
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',              /* 0x18 */
    ['"'] = '"', ['\\'] = '\\', [0x7F] = 'u',
};
/* clang-format on */

size_t sb_json_escaped_len(const char *src, size_t len)
{
    size_t n = len;
    for (size_t i = 0; i < len; i++) {
        char c = escape_as[(uint8_t)src[i]];
        if (c != 0)
            n += c == 'u' ? 5 : 1;
    }
    return n;
}

size_t sb_json_escape(char *dst, const char *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *d = dst;
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && escape_as[(uint8_t)src[run]] == 0)
            run++;
        memcpy(d, src + i, run - i);
        d += run - i;
        if (run == len)
            break;
        uint8_t b = (uint8_t)src[run];
        char c = escape_as[b];
        *d++ = '\\';
        *d++ = c;
        if (c == 'u') {
            *d++ = '0';
            *d++ = '0';
            *d++ = hex[b >> 4];
            *d++ = hex[b & 15];
        }
        i = run + 1;
    }
    return (size_t)(d - dst);
}
