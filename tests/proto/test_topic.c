/* test_topic.c - the topic and pattern rules of protocol.md, as tables.
 *
 * Each table has one row per input and its expected outcome; one helper
 * checks a row and prints it when it fails (the shape of Mosquitto's
 * util_topic_test.c). Every row is checked even after a failure, so a run
 * lists all broken rows at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "topic.h"

/* Length -1: use strlen() (rows with an embedded NUL give theirs). */
#define STR -1

/* Print s[0..len) with non-printable and non-ASCII bytes as \xNN. */
static void escape(char *out, size_t outsz, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < outsz; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
    }
    out[o] = '\0';
}

static size_t row_len(const char *s, int len)
{
    return len < 0 ? strlen(s) : (size_t)len;
}

/* ---------------------------------------------------------------------- */
/* Validity of topics and patterns                                         */

struct valid_row {
    const char *s;
    int len;
    bool topic;   /* expected sb_topic_valid() */
    bool pattern; /* expected sb_topic_valid_pattern() */
};

static const struct valid_row valid_rows[] = {
    /* Plain topics are also valid patterns. */
    {"a", STR, true, true},
    {"orders", STR, true, true},
    {"orders.created", STR, true, true},
    {"orders.eu.created", STR, true, true},
    {"a.b.c.d.e.f.g.h", STR, true, true},
    {"123.456", STR, true, true},
    {"Orders.EU", STR, true, true},
    {"a-b_c:d/e", STR, true, true},
    {"a#b+c", STR, true, true}, /* MQTT's wildcards are plain bytes here */
    {"$SYS.x", STR, true, true},
    {"a,b;c=d", STR, true, true},
    {"\"q\"", STR, true, true},
    {"~!@%^&()[]{}|\\?", STR, true, true},

    /* Empty text and empty tokens. */
    {"", STR, false, false},
    {".", STR, false, false},
    {"..", STR, false, false},
    {".a", STR, false, false},
    {"a.", STR, false, false},
    {"a..b", STR, false, false},
    {"a.b.", STR, false, false},
    {".a.b", STR, false, false},

    /* Space and C0 controls, anywhere. */
    {" ", STR, false, false},
    {"a b", STR, false, false},
    {" a", STR, false, false},
    {"a ", STR, false, false},
    {"a. b", STR, false, false},
    {"a\tb", STR, false, false},
    {"a\nb", STR, false, false},
    {"a\rb", STR, false, false},
    {"\x01", STR, false, false},
    {"a\x1f", STR, false, false},
    {"\x1b[31m", STR, false, false},
    {"a\0b", 3, false, false},
    {"\0", 1, false, false},
    {"a.\0", 3, false, false},

    /* DEL. */
    {"\x7f", STR, false, false},
    {"a\x7f"
     "b",
     STR, false, false},
    {"a.\x7f", STR, false, false},

    /* C1 controls U+0080..U+009F (0xC2 0x80..0xC2 0x9F). */
    {"\xc2\x80", STR, false, false},
    {"a\xc2\x85"
     "b",
     STR, false, false}, /* NEL */
    {"a.\xc2\x9f", STR, false, false},
    {"\xc2\x9b"
     "31m",
     STR, false, false}, /* CSI */

    /* Other UTF-8, including neighbours of the C1 range, is valid. */
    {"ord\xc3\xa9rs", STR, true, true},                    /* ordérs */
    {"ord\xc3\xa9rs.cr\xc3\xa9\xc3\xa9", STR, true, true}, /* ordérs.créé */
    {"\xc2\xa0", STR, true, true},     /* U+00A0 no-break space */
    {"a\xc2\xa9", STR, true, true},    /* U+00A9 copyright sign */
    {"\xc2\xbf", STR, true, true},     /* U+00BF */
    {"\xc3\x80", STR, true, true},     /* U+00C0: 0x80 after 0xC3 */
    {"\xc3\x9f", STR, true, true},     /* U+00DF: 0x9F after 0xC3 */
    {"\xe2\x80\x80", STR, true, true}, /* U+2000: 0x80 after 0xE2 */
    {"\xe8\xa8\x82\xe5\x96\xae.\xe6\x96\xb0", STR, true, true}, /* CJK */
    {"\xf0\x9f\x93\xa6.box", STR, true, true},                  /* U+1F4E6 */
    {"\xd0\xb7\xd0\xb0\xd0\xba\xd0\xb0\xd0\xb7", STR, true, true},

    /* Wildcards as whole tokens: patterns only. */
    {"*", STR, false, true},
    {">", STR, false, true},
    {"a.*", STR, false, true},
    {"a.>", STR, false, true},
    {"*.b", STR, false, true},
    {"a.*.c", STR, false, true},
    {"*.*", STR, false, true},
    {"*.*.*", STR, false, true},
    {"*.>", STR, false, true},
    {"a.*.>", STR, false, true},
    {"orders.*", STR, false, true},
    {"orders.>", STR, false, true},

    /* '>' anywhere but the whole last token. */
    {">.a", STR, false, false},
    {"a.>.c", STR, false, false},
    {">.>", STR, false, false},
    {">.*", STR, false, false},
    {"a.>.>", STR, false, false},
    {"a.b>", STR, false, false},
    {"a.>b", STR, false, false},
    {"a>b", STR, false, false},
    {">>", STR, false, false},
    {">.", STR, false, false},
    {".>", STR, false, false},
    {"> ", STR, false, false},

    /* '*' inside a token. */
    {"a*", STR, false, false},
    {"*a", STR, false, false},
    {"a*b", STR, false, false},
    {"a.b*", STR, false, false},
    {"**", STR, false, false},
    {"a.**", STR, false, false},
    {"a.*>", STR, false, false},
    {"*>", STR, false, false},
    {"*.", STR, false, false},
    {".*", STR, false, false},
    {"* .a", STR, false, false},
    {"orders.*.created", STR, false, true},
};

static bool check_valid_row(const struct valid_row *r)
{
    size_t len = row_len(r->s, r->len);
    bool topic = sb_topic_valid(r->s, len);
    bool pattern = sb_topic_valid_pattern(r->s, len);
    char buf[1200];

    if (topic == r->topic && pattern == r->pattern)
        return true;
    escape(buf, sizeof(buf), r->s, len);
    print_error("row \"%s\" (%zu bytes): valid topic %d (want %d), "
                "valid pattern %d (want %d)\n",
                buf, len, topic, r->topic, pattern, r->pattern);
    return false;
}

static void test_topic_valid_table(void **state)
{
    size_t bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(valid_rows) / sizeof(valid_rows[0]); i++)
        bad += !check_valid_row(&valid_rows[i]);
    assert_int_equal(bad, 0);
}

/* Fill buf with a text of exactly len bytes: `unit` repeated, then cut. */
static void fill(char *buf, size_t len, const char *unit)
{
    size_t ul = strlen(unit);
    for (size_t i = 0; i < len; i++)
        buf[i] = unit[i % ul];
}

static void test_topic_valid_length(void **state)
{
    char buf[SB_TOPIC_MAX + 2];
    size_t bad = 0;
    (void)state;

    /* One long token: 255 bytes are fine, 256 are not. */
    fill(buf, 255, "a");
    bad += !check_valid_row(&(struct valid_row){buf, 255, true, true});
    fill(buf, 256, "a");
    bad += !check_valid_row(&(struct valid_row){buf, 256, false, false});

    /* The most tokens a topic can have: 128 one-byte tokens in 255 bytes. */
    fill(buf, 255, "a.");
    bad += !check_valid_row(&(struct valid_row){buf, 255, true, true});
    assert_int_equal(sb_topic_tokens(buf, 255, NULL, NULL, 0), 128);
    fill(buf, 257, "a.");
    bad += !check_valid_row(&(struct valid_row){buf, 257, false, false});

    /* Patterns at the limit. */
    fill(buf, 255, "*.");
    bad += !check_valid_row(&(struct valid_row){buf, 255, false, true});
    fill(buf, 253, "a");
    memcpy(buf + 253, ".>", 2);
    bad += !check_valid_row(&(struct valid_row){buf, 255, false, true});
    fill(buf, 254, "a");
    memcpy(buf + 254, ".>", 2);
    bad += !check_valid_row(&(struct valid_row){buf, 256, false, false});

    /* Multi-byte characters count as bytes: 127 x 2 bytes + 1 = 255. */
    fill(buf, 254, "\xc3\xa9");
    buf[254] = 'x';
    bad += !check_valid_row(&(struct valid_row){buf, 255, true, true});
    fill(buf, 256, "\xc3\xa9");
    bad += !check_valid_row(&(struct valid_row){buf, 256, false, false});

    /* A lone 0xC2 at the very end is not read past (malformed UTF-8 is a
     * caller error, but must stay memory-safe). */
    bad += !check_valid_row(&(struct valid_row){"ab\xc2", 3, true, true});
    assert_int_equal(bad, 0);
}

/* ---------------------------------------------------------------------- */
/* sb_topic_has_wildcard() on valid patterns                              */

struct wild_row {
    const char *p;
    bool wild;
};

static const struct wild_row wild_rows[] = {
    {"a", false},
    {"orders.created", false},
    {"ord\xc3\xa9rs", false},
    {"*", true},
    {">", true},
    {"a.*", true},
    {"a.>", true},
    {"*.b", true},
    {"a.*.c", true},
    {"a.b.c.d.>", true},
    {"*.*", true},
    {"a#b+c", false},
};

static void test_topic_has_wildcard_table(void **state)
{
    size_t bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(wild_rows) / sizeof(wild_rows[0]); i++) {
        const struct wild_row *r = &wild_rows[i];
        size_t len = strlen(r->p);
        bool got = sb_topic_has_wildcard(r->p, len);
        assert_true(sb_topic_valid_pattern(r->p, len)); /* table sanity */
        if (got != r->wild) {
            print_error("row \"%s\": has wildcard %d (want %d)\n", r->p, got,
                        r->wild);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* ---------------------------------------------------------------------- */
/* Matching                                                                */

struct match_row {
    const char *pattern;
    const char *topic;
    bool match;
};

static const struct match_row match_rows[] = {
    /* Every example of protocol.md, section Topics and the example session. */
    {"orders.*", "orders.created", true},
    {"orders.*", "orders", false},
    {"orders.*", "orders.eu.created", false},
    {"orders.>", "orders.created", true},
    {"orders.>", "orders.eu.created", true},
    {"orders.>", "orders", false},

    /* Literal patterns: equal token by token. */
    {"a", "a", true},
    {"a", "b", false},
    {"a", "A", false},
    {"a", "a.b", false},
    {"a.b", "a", false},
    {"a.b", "a.b", true},
    {"a.b", "a.c", false},
    {"a.b", "b.a", false},
    {"a.b", "ab", false},
    {"ab", "a.b", false},
    {"ab", "a", false},
    {"a", "ab", false},
    {"a.b.c", "a.b.c", true},
    {"a.b.c", "a.b.cd", false},
    {"a.b.cd", "a.b.c", false},
    {"orders.created", "orders.created", true},
    {"orders.created", "orders.create", false},
    {"orders.created", "orders.createdx", false},

    /* '>' alone matches everything, '*' alone any one token. */
    {">", "a", true},
    {">", "a.b", true},
    {">", "a.b.c.d.e", true},
    {">", "ord\xc3\xa9rs.x", true},
    {"*", "a", true},
    {"*", "orders", true},
    {"*", "a.b", false},
    {"*", "a.b.c", false},

    /* '*' is exactly one token, in any position. */
    {"*.b", "a.b", true},
    {"*.b", "x.b", true},
    {"*.b", "a.c", false},
    {"*.b", "b", false},
    {"*.b", "a.b.c", false},
    {"*.b", "a.a.b", false},
    {"a.*.c", "a.b.c", true},
    {"a.*.c", "a.xyz.c", true},
    {"a.*.c", "a.b.d", false},
    {"a.*.c", "a.c", false},
    {"a.*.c", "a.b.b.c", false},
    {"a.*.c", "b.b.c", false},
    {"*.*", "a.b", true},
    {"*.*", "a", false},
    {"*.*", "a.b.c", false},
    {"*.*.*", "a.b.c", true},
    {"*.*.*", "a.b", false},
    {"orders.*.created", "orders.eu.created", true},
    {"orders.*.created", "orders.eu.deleted", false},
    {"orders.*.created", "orders.created", false},

    /* '>' is one or more trailing tokens. */
    {"a.>", "a.b", true},
    {"a.>", "a.b.c.d.e", true},
    {"a.>", "a", false},
    {"a.>", "b.a", false},
    {"a.>", "ab.c", false},
    {"a.b.>", "a.b", false},
    {"a.b.>", "a.b.c", true},
    {"a.b.>", "a.bc.d", false},
    {"*.>", "a", false},
    {"*.>", "a.b", true},
    {"*.>", "a.b.c", true},
    {"a.*.>", "a.b", false},
    {"a.*.>", "a.b.c", true},
    {"a.*.>", "a.b.c.d", true},
    {"a.*.>", "b.b.c", false},

    /* Prefixes are whole tokens, never bytes. */
    {"orders.*", "ordersx.created", false},
    {"orders.>", "ordersx.y", false},
    {"order.>", "orders.x", false},
    {"orders.>", "order.x", false},

    /* UTF-8 tokens compare as bytes. */
    {"ord\xc3\xa9rs.*", "ord\xc3\xa9rs.cr\xc3\xa9\xc3\xa9", true},
    {"ord\xc3\xa9rs.*", "orders.x", false},
    {"ord\xc3\xa9rs.>", "ord\xc3\xa9rs.a.b", true},
    {"*.cr\xc3\xa9\xc3\xa9", "ord\xc3\xa9rs.cr\xc3\xa9\xc3\xa9", true},
    {"*.cr\xc3\xa9\xc3\xa9", "ord\xc3\xa9rs.cree", false},
};

static bool check_match_row(const char *p, const char *t, bool want)
{
    size_t plen = strlen(p), tlen = strlen(t);
    char pb[1200], tb[1200];
    bool got;

    escape(pb, sizeof(pb), p, plen);
    escape(tb, sizeof(tb), t, tlen);
    /* A row whose inputs break the preconditions is a broken table. */
    if (!sb_topic_valid_pattern(p, plen) || !sb_topic_valid(t, tlen)) {
        print_error("row \"%s\" ~ \"%s\": invalid input in the table\n", pb,
                    tb);
        return false;
    }
    got = sb_topic_match(p, plen, t, tlen);
    if (got == want)
        return true;
    print_error("row \"%s\" ~ \"%s\": match %d (want %d)\n", pb, tb, got, want);
    return false;
}

static void test_topic_match_table(void **state)
{
    size_t bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(match_rows) / sizeof(match_rows[0]); i++) {
        const struct match_row *r = &match_rows[i];
        bad += !check_match_row(r->pattern, r->topic, r->match);
    }
    assert_int_equal(bad, 0);
}

/* A literal pattern matches exactly itself: every valid literal topic of
 * the validity table against every other. */
static void test_topic_match_literal_is_equality(void **state)
{
    size_t n = sizeof(valid_rows) / sizeof(valid_rows[0]);
    size_t bad = 0;
    (void)state;
    for (size_t i = 0; i < n; i++) {
        if (!valid_rows[i].topic || valid_rows[i].len != STR)
            continue;
        for (size_t j = 0; j < n; j++) {
            if (!valid_rows[j].topic || valid_rows[j].len != STR)
                continue;
            bool same = strcmp(valid_rows[i].s, valid_rows[j].s) == 0;
            bad += !check_match_row(valid_rows[i].s, valid_rows[j].s, same);
        }
    }
    assert_int_equal(bad, 0);
}

static void test_topic_match_long(void **state)
{
    char t[SB_TOPIC_MAX + 1];
    (void)state;

    /* 128 tokens: '>' and "a.>" take them all, '*' takes only one. */
    fill(t, 255, "a.");
    t[255] = '\0';
    assert_true(check_match_row(">", t, true));
    assert_true(check_match_row("a.>", t, true));
    assert_true(check_match_row("*.>", t, true));
    assert_true(check_match_row("*", t, false));
    assert_true(check_match_row(t, t, true));

    /* The same 128 tokens as a pattern of '*'. */
    char p[SB_TOPIC_MAX + 1];
    fill(p, 255, "*.");
    p[255] = '\0';
    assert_true(check_match_row(p, t, true));
    t[253] = '\0'; /* 127 tokens are one too few */
    assert_true(check_match_row(p, t, false));
}

/* ---------------------------------------------------------------------- */
/* Tokens                                                                  */

struct token_row {
    const char *t;
    size_t n;
    size_t offs[4];
    size_t lens[4];
};

static const struct token_row token_rows[] = {
    {"", 0, {0}, {0}},
    {"a", 1, {0}, {1}},
    {"orders", 1, {0}, {6}},
    {"a.bc.def", 3, {0, 2, 5}, {1, 2, 3}},
    {"orders.*.>", 3, {0, 7, 9}, {6, 1, 1}},
    {"ord\xc3\xa9rs.x", 2, {0, 8}, {7, 1}},
    /* Not valid topics, but the split is still well defined. */
    {"a..b", 3, {0, 2, 3}, {1, 0, 1}},
    {".", 2, {0, 1}, {0, 0}},
};

static void test_topic_tokens_table(void **state)
{
    size_t bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(token_rows) / sizeof(token_rows[0]); i++) {
        const struct token_row *r = &token_rows[i];
        size_t offs[4] = {99, 99, 99, 99}, lens[4] = {99, 99, 99, 99};
        size_t n = sb_topic_tokens(r->t, strlen(r->t), offs, lens, 4);
        bool ok = n == r->n;
        for (size_t k = 0; ok && k < n; k++)
            ok = offs[k] == r->offs[k] && lens[k] == r->lens[k];
        for (size_t k = n; ok && k < 4; k++)
            ok = offs[k] == 99 && lens[k] == 99; /* nothing written past n */
        if (!ok) {
            print_error("row \"%s\": %zu tokens (want %zu), spans "
                        "(%zu,%zu) (%zu,%zu) (%zu,%zu)\n",
                        r->t, n, r->n, offs[0], lens[0], offs[1], lens[1],
                        offs[2], lens[2]);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void test_topic_tokens_max(void **state)
{
    size_t offs[2] = {99, 99}, lens[2] = {99, 99};
    size_t spare_off = 99, spare_len = 99;
    (void)state;

    /* The count is the full count; only `max` spans are written. */
    assert_int_equal(sb_topic_tokens("a.bb.ccc.d", 10, offs, lens, 2), 4);
    assert_int_equal(offs[0], 0);
    assert_int_equal(lens[0], 1);
    assert_int_equal(offs[1], 2);
    assert_int_equal(lens[1], 2);
    assert_int_equal(sb_topic_tokens("a.b", 3, NULL, NULL, 0), 2);
    assert_int_equal(sb_topic_tokens("x.yz", 4, &spare_off, &spare_len, 1), 2);
    assert_int_equal(spare_off, 0);
    assert_int_equal(spare_len, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_valid_table),
        cmocka_unit_test(test_topic_valid_length),
        cmocka_unit_test(test_topic_has_wildcard_table),
        cmocka_unit_test(test_topic_match_table),
        cmocka_unit_test(test_topic_match_literal_is_equality),
        cmocka_unit_test(test_topic_match_long),
        cmocka_unit_test(test_topic_tokens_table),
        cmocka_unit_test(test_topic_tokens_max),
    };
    return cmocka_run_group_tests_name("topic", tests, NULL, NULL);
}
