/* fuzz_json.c - libFuzzer target for proto/json.c.
 *
 * Each input is checked four ways:
 * 1. Against a small reference validator written here in the plainest way
 *    (recursive descent, UTF-8 decoded arithmetically rather than through
 *    class tables). Both stop at the first byte that cannot continue a valid
 *    text, so they must agree on the return code, on the error offset (but
 *    for surrogate errors, which json.c reports at the escape that opened
 *    the pair) and on the number of top-level members.
 * 2. When the scanner accepts an object, every member span lies inside the
 *    input, the escaped flags match the bytes, each value scans alone as
 *    the reported type, and each string unescapes into a buffer of exactly
 *    its length (AddressSanitizer catches any overrun).
 * 3. Every accepted string (top level or member) survives unescape, escape,
 *    scan, unescape.
 * 4. The raw input escaped and quoted scans as a string exactly when it is
 *    well-formed UTF-8, and then unescapes back to itself. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "fuzz_check.h"

/* The reference validator. */
struct ref {
    const uint8_t *s;
    size_t n, i;
    int depth;
    size_t members; /* completed members of a top-level object */
    bool top_object;
    bool surrogate; /* the error is a surrogate error */
};

static void ref_ws(struct ref *r)
{
    while (r->i < r->n && (r->s[r->i] == ' ' || r->s[r->i] == '\t' ||
                           r->s[r->i] == '\r' || r->s[r->i] == '\n'))
        r->i++;
}

/* One UTF-8 sequence at r->i; on error r->i is the first bad byte. Bounds
 * are checked on the code point as far as it is known, so the first byte
 * that rules out every valid sequence is the one reported. */
static bool ref_utf8(struct ref *r)
{
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    unsigned lead = r->s[r->i];
    unsigned n = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0;
    if (n == 0 || lead >= 0xF8)
        return false;
    unsigned cp = lead & (0x7Fu >> n);
    /* After each byte, [lo, hi] holds every value the sequence can still
     * take; it must meet the valid range of an n-byte sequence. */
    for (unsigned k = 1;; k++) {
        unsigned rest = 6 * (n - k);
        unsigned lo = cp << rest, hi = lo | ((1u << rest) - 1);
        bool sur = lo >= 0xD800 && hi <= 0xDFFF;
        if (hi < min[n] || lo > 0x10FFFF || sur)
            return false;
        if (k == n)
            break;
        r->i++;
        if (r->i == r->n || (r->s[r->i] & 0xC0) != 0x80)
            return false;
        cp = cp << 6 | (r->s[r->i] & 0x3Fu);
    }
    r->i++;
    return true;
}

static int ref_hex4(struct ref *r)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        if (r->i == r->n)
            return -1;
        uint8_t c = r->s[r->i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
        r->i++;
    }
    return v;
}

/* An escape; r->i is just past the backslash. */
static bool ref_escape(struct ref *r)
{
    if (r->i == r->n)
        return false;
    uint8_t c = r->s[r->i];
    if (c != 'u') {
        if (!strchr("\"\\/bfnrt", c) || c == 0)
            return false;
        r->i++;
        return true;
    }
    r->i++;
    int v = ref_hex4(r);
    if (v < 0)
        return false;
    if (v >= 0xDC00 && v <= 0xDFFF) {
        r->surrogate = true;
        return false;
    }
    if (v < 0xD800 || v > 0xDBFF)
        return true;
    if (r->i + 1 < r->n && r->s[r->i] == '\\' && r->s[r->i + 1] == 'u') {
        r->i += 2;
        int lo = ref_hex4(r);
        if (lo >= 0xDC00 && lo <= 0xDFFF)
            return true;
        r->surrogate = lo >= 0;
        return false;
    }
    /* Running out of input is not a surrogate error. */
    if (r->i == r->n || (r->i + 1 == r->n && r->s[r->i] == '\\')) {
        r->i = r->n;
        return false;
    }
    r->surrogate = true;
    return false;
}

static bool ref_string(struct ref *r)
{
    r->i++; /* the opening quote */
    for (;;) {
        if (r->i == r->n)
            return false;
        uint8_t c = r->s[r->i];
        if (c == '"') {
            r->i++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            r->i++;
            if (!ref_escape(r))
                return false;
        } else if (c >= 0x80) {
            if (!ref_utf8(r))
                return false;
        } else {
            r->i++;
        }
    }
}

static bool ref_digit(const struct ref *r)
{
    return r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9';
}

static bool ref_number(struct ref *r)
{
    if (r->s[r->i] == '-')
        r->i++;
    if (!ref_digit(r))
        return false;
    if (r->s[r->i] == '0')
        r->i++;
    else
        while (ref_digit(r))
            r->i++;
    if (r->i < r->n && r->s[r->i] == '.') {
        r->i++;
        if (!ref_digit(r))
            return false;
        while (ref_digit(r))
            r->i++;
    }
    if (r->i < r->n && (r->s[r->i] == 'e' || r->s[r->i] == 'E')) {
        r->i++;
        if (r->i < r->n && (r->s[r->i] == '+' || r->s[r->i] == '-'))
            r->i++;
        if (!ref_digit(r))
            return false;
        while (ref_digit(r))
            r->i++;
    }
    return true;
}

static bool ref_literal(struct ref *r, const char *lit)
{
    for (size_t k = 0; lit[k]; k++, r->i++)
        if (r->i == r->n || r->s[r->i] != (uint8_t)lit[k])
            return false;
    return true;
}

static bool ref_value(struct ref *r, int *rc);

/* The members or elements of a container; r->i is on its opening byte. */
static bool ref_container(struct ref *r, int *rc)
{
    bool object = r->s[r->i] == '{';
    char close = object ? '}' : ']';
    if (++r->depth > SB_JSON_MAX_DEPTH) {
        *rc = -E2BIG;
        return false;
    }
    r->i++;
    ref_ws(r);
    if (r->i < r->n && r->s[r->i] == close) {
        r->i++;
        r->depth--;
        return true;
    }
    for (;;) {
        if (object) {
            if (r->i == r->n || r->s[r->i] != '"' || !ref_string(r))
                return false;
            ref_ws(r);
            if (r->i == r->n || r->s[r->i] != ':')
                return false;
            r->i++;
        }
        if (!ref_value(r, rc))
            return false;
        if (object && r->depth == 1 && r->top_object)
            r->members++;
        ref_ws(r);
        if (r->i == r->n)
            return false;
        if (r->s[r->i] == close)
            break;
        if (r->s[r->i] != ',')
            return false;
        r->i++;
        ref_ws(r);
    }
    r->i++;
    r->depth--;
    return true;
}

static bool ref_value(struct ref *r, int *rc)
{
    ref_ws(r);
    if (r->i == r->n)
        return false;
    switch (r->s[r->i]) {
    case '{':
    case '[':
        return ref_container(r, rc);
    case '"':
        return ref_string(r);
    case 't':
        return ref_literal(r, "true");
    case 'f':
        return ref_literal(r, "false");
    case 'n':
        return ref_literal(r, "null");
    default:
        if (r->s[r->i] == '-' || (r->s[r->i] >= '0' && r->s[r->i] <= '9'))
            return ref_number(r);
        return false;
    }
}

/* Returns 0, -EINVAL or -E2BIG; r->i is the error offset. */
static int ref_scan(struct ref *r)
{
    int rc = -EINVAL;
    ref_ws(r);
    if (r->i == r->n)
        return -EINVAL;
    r->top_object = r->s[r->i] == '{';
    if (!ref_value(r, &rc))
        return rc;
    ref_ws(r);
    return r->i == r->n ? 0 : -EINVAL;
}

static bool ref_utf8_valid(const uint8_t *s, size_t n)
{
    struct ref r = {.s = s, .n = n};
    while (r.i < n) {
        if (s[r.i] < 0x80)
            r.i++;
        else if (!ref_utf8(&r))
            return false;
    }
    return true;
}

/* Check 3: a string body that the scanner accepted. */
static void check_string_body(const char *body, size_t len)
{
    char *text = malloc(len ? len : 1);
    CHECK(text != NULL);
    size_t n = sb_json_unescape(text, body, len);
    CHECK(n <= len);
    CHECK(memchr(body, '\\', len) != NULL ||
          (n == len && !memcmp(text, body, n)));

    size_t elen = sb_json_escaped_len(text, n);
    char *q = malloc(elen + 2);
    CHECK(q != NULL);
    q[0] = '"';
    CHECK(sb_json_escape(q + 1, text, n) == elen);
    q[elen + 1] = '"';
    sb_json_result res;
    CHECK(sb_json_scan(q, elen + 2, NULL, 0, &res) == 0);
    CHECK(res.type == SB_JSON_STRING);
    CHECK(sb_json_unescape(q + 1, q + 1, elen) == n);
    CHECK(memcmp(q + 1, text, n) == 0);
    free(q);
    free(text);
}

/* Check 2: one member of an accepted top-level object. */
static void
check_member(const uint8_t *data, size_t size, const sb_json_member *m)
{
    CHECK(m->key_off >= 1 && (size_t)m->key_off + m->key_len < size);
    CHECK(data[m->key_off - 1] == '"' && data[m->key_off + m->key_len] == '"');
    CHECK(m->val_off > m->key_off + m->key_len && m->val_len > 0);
    CHECK((size_t)m->val_off + m->val_len <= size);
    const char *key = (const char *)data + m->key_off;
    const char *val = (const char *)data + m->val_off;
    CHECK(m->key_escaped == (memchr(key, '\\', m->key_len) != NULL));

    sb_json_result res;
    CHECK(sb_json_scan(val, m->val_len, NULL, 0, &res) == 0);
    CHECK(res.type == m->type);
    bool val_bs = memchr(val, '\\', m->val_len) != NULL;
    CHECK(m->val_escaped == (m->type == SB_JSON_STRING && val_bs));

    /* Unescape into buffers of exactly the span's size. */
    check_string_body(key, m->key_len);
    if (m->type == SB_JSON_STRING) {
        CHECK(val[0] == '"' && val[m->val_len - 1] == '"');
        check_string_body(val + 1, m->val_len - 2);
    }
}

/* Check 4: escaping arbitrary bytes. */
static void check_escape_raw(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    size_t elen = sb_json_escaped_len(src, size);
    char *q = malloc(elen + 2);
    CHECK(q != NULL);
    q[0] = '"';
    CHECK(sb_json_escape(q + 1, src, size) == elen);
    q[elen + 1] = '"';
    sb_json_result res;
    int rc = sb_json_scan(q, elen + 2, NULL, 0, &res);
    CHECK((rc == 0) == ref_utf8_valid(data, size));
    if (rc == 0) {
        CHECK(sb_json_unescape(q + 1, q + 1, elen) == size);
        CHECK(size == 0 || memcmp(q + 1, data, size) == 0);
    }
    free(q);

    /* Unescaping unchecked text is unspecified, but must stay in bounds. */
    char *d = malloc(size ? size : 1);
    CHECK(d != NULL);
    CHECK(sb_json_unescape(d, src, size) <= size);
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAX_M = 8 };
    sb_json_member m[MAX_M];
    sb_json_result res, res0;
    int rc = sb_json_scan((const char *)data, size, m, MAX_M, &res);

    /* The members array never changes the verdict. */
    CHECK(sb_json_scan((const char *)data, size, NULL, 0, &res0) == rc);
    CHECK(res0.err_off == res.err_off && res0.n_members == res.n_members);

    struct ref r = {.s = data, .n = size};
    int want = ref_scan(&r);
    CHECK(rc == want);
    if (rc != 0) {
        /* After an error json.c counts the members it finished; the
         * reference may also count one whose value was cut short ("01"). */
        CHECK(res.n_members <= r.members && res.n_members + 1 >= r.members);
        CHECK(res.err != NULL && res.type == SB_JSON_NONE);
        CHECK(res.err_off <= size);
        if (!r.surrogate)
            CHECK(res.err_off == r.i);
    } else {
        CHECK(res.err == NULL && res.type != SB_JSON_NONE);
        CHECK(res.n_members == r.members);
        size_t k = res.n_members < MAX_M ? res.n_members : MAX_M;
        for (size_t i = 0; i < k; i++)
            check_member(data, size, &m[i]);
        if (res.type == SB_JSON_STRING) {
            const uint8_t *b = memchr(data, '"', size);
            const uint8_t *e = data + size;
            while (e[-1] != '"')
                e--;
            check_string_body((const char *)b + 1, (size_t)(e - b) - 2);
        }
    }
    check_escape_raw(data, size);
    return 0;
}
