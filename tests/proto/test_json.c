/* test_json.c - the strict JSON scanner, escape and unescape.
 *
 * The grammar is a table, so the tests are tables: one row per input with
 * its expected outcome (return code, type, and on error the exact offset and
 * message); one helper checks a row and prints it when it fails. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* The scanner's messages, written once here. */
#define E_EMPTY "empty input"
#define E_CHAR "unexpected character"
#define E_END "unexpected end of input"
#define E_TRAIL "trailing characters"
#define E_BOM "byte order mark"
#define E_KEY "expected string key"
#define E_COLON "expected ':'"
#define E_OBJ "expected ',' or '}'"
#define E_ARR "expected ',' or ']'"
#define E_NUM "invalid number"
#define E_LIT "invalid literal"
#define E_UNTERM "unterminated string"
#define E_CTRL "control character in string"
#define E_ESC "invalid escape"
#define E_SURR "unpaired surrogate"
#define E_UTF8 "invalid UTF-8"
#define E_DEEP "nesting too deep"

struct scan_row {
    const char *in;
    size_t len;
    int rc;
    sb_json_type type; /* when rc is 0 */
    size_t err_off;    /* when rc is not 0 */
    const char *err;
};

/* sizeof keeps embedded NUL bytes in the input. */
#define OK(s, t)                                                               \
    {                                                                          \
        s, sizeof(s) - 1, 0, SB_JSON_##t, 0, NULL                              \
    }
#define BAD(s, off, msg)                                                       \
    {                                                                          \
        s, sizeof(s) - 1, -EINVAL, SB_JSON_NONE, off, msg                      \
    }

/* Prints s[0..len) with C escapes for anything not printable ASCII. */
static void show(const char *label, const char *s, size_t len)
{
    char out[1024];
    size_t n = 0;
    for (size_t i = 0; i < len && n + 8 < sizeof(out); i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\')
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, sizeof(out) - n, "\\x%02X", c);
    }
    out[n] = '\0';
    print_error("%s \"%s\" (%zu bytes)\n", label, out, len);
}

static const char *type_name(sb_json_type t)
{
    static const char *names[] = {"none",   "object", "array", "string",
                                  "number", "true",   "false", "null"};
    return (unsigned)t < 8 ? names[t] : "?";
}

/* Runs the scanner on a copy of the row in a buffer of exactly its length,
 * so that AddressSanitizer catches any read past the end. */
static void
check_scan_row(const struct scan_row *r, const char *table, size_t i)
{
    char *buf = malloc(r->len ? r->len : 1);
    assert_non_null(buf);
    memcpy(buf, r->in, r->len);
    sb_json_member m[4];
    sb_json_result res;
    int rc = sb_json_scan(buf, r->len, m, 4, &res);
    free(buf);

    bool ok = rc == r->rc;
    if (r->rc == 0)
        ok = ok && res.type == r->type && res.err == NULL;
    else
        ok = ok && res.type == SB_JSON_NONE && res.err_off == r->err_off &&
             res.err != NULL && strcmp(res.err, r->err) == 0;
    if (ok)
        return;
    print_error("%s row %zu:\n", table, i);
    show("  input", r->in, r->len);
    print_error("  want rc %d type %s off %zu err \"%s\"\n", r->rc,
                type_name(r->type), r->err_off, r->err ? r->err : "");
    print_error("  got  rc %d type %s off %zu err \"%s\"\n", rc,
                type_name(res.type), res.err_off, res.err ? res.err : "");
    fail();
}

#define CHECK_ROWS(rows)                                                       \
    do {                                                                       \
        for (size_t i_ = 0; i_ < sizeof(rows) / sizeof(rows[0]); i_++)         \
            check_scan_row(&rows[i_], #rows, i_);                              \
    } while (0)

static const struct scan_row types_rows[] = {
    OK("{}", OBJECT),
    OK("[]", ARRAY),
    OK("\"\"", STRING),
    OK("\"abc\"", STRING),
    OK("0", NUMBER),
    OK("-12.5e3", NUMBER),
    OK("true", TRUE),
    OK("false", FALSE),
    OK("null", NULL),
    OK("{\"a\":1}", OBJECT),
    OK("{\"\":\"\"}", OBJECT),
    OK("{\"a\":1,\"a\":2}", OBJECT), /* duplicate keys are the caller's */
    OK("[1,\"a\",true,false,null,{},[]]", ARRAY),
    OK("{\"a\":{\"b\":{\"c\":[[]]}}}", OBJECT),
    OK("[[[[]]]]", ARRAY),
    OK("[{\"a\":[{\"b\":null}]},{}]", ARRAY),
    OK("{\"a\":[],\"b\":{},\"c\":[{}],\"d\":\"\"}", OBJECT),
    OK("[\"\\\"\",\"]\",\"}\",\"[\",\"{\",\",\",\":\"]", ARRAY),
};

static const struct scan_row space_rows[] = {
    OK(" \t\r\n{}\n\r\t ", OBJECT),
    OK("{ \"a\" : 1 , \"b\" : [ 1 , 2 ] }", OBJECT),
    OK("[ ]", ARRAY),
    OK("{ }", OBJECT),
    OK("\n1\n", NUMBER),
    OK("\r\n\"x\"\r\n", STRING),
    OK("[\ttrue\t,\nnull\r]", ARRAY),
    BAD("", 0, E_EMPTY),
    BAD("   ", 3, E_EMPTY),
    BAD("\r\n\t ", 4, E_EMPTY),
    BAD("\v{}", 0, E_CHAR),
    BAD("\f{}", 0, E_CHAR),
    BAD("{}\f", 2, E_TRAIL),
    BAD("\xC2\xA0{}", 0, E_CHAR), /* no-break space */
    BAD("\x00", 0, E_CHAR),
    BAD("{}\x00", 2, E_TRAIL),
    BAD("[1,\v2]", 3, E_CHAR),
    BAD("{\"a\"\v:1}", 4, E_COLON),
};

static const struct scan_row trailing_rows[] = {
    BAD("{}}", 2, E_TRAIL),
    BAD("{} {}", 3, E_TRAIL),
    BAD("1 2", 2, E_TRAIL),
    BAD("\"a\"\"b\"", 3, E_TRAIL),
    BAD("[]]", 2, E_TRAIL),
    BAD("null,", 4, E_TRAIL),
    BAD("{}x", 2, E_TRAIL),
    BAD("{} \n x", 5, E_TRAIL),
    BAD("[1,2]garbage", 5, E_TRAIL),
    BAD("{} // comment", 3, E_TRAIL),
    BAD("true\"", 4, E_TRAIL),
    BAD("\xEF\xBB\xBF{}", 0, E_BOM),
    BAD("\xEF\xBB\xBF", 0, E_BOM),
    BAD(" \xEF\xBB\xBF{}", 1, E_BOM),
    BAD("{}\xEF\xBB\xBF", 2, E_TRAIL),
    BAD("\xEF\xBB", 0, E_CHAR),
};

static const struct scan_row structure_rows[] = {
    BAD("{", 1, E_END),
    BAD("[", 1, E_END),
    BAD("[1", 2, E_END),
    BAD("[1,", 3, E_END),
    BAD("{\"a\"", 4, E_END),
    BAD("{\"a\":", 5, E_END),
    BAD("{\"a\":1", 6, E_END),
    BAD("{\"a\":1,", 7, E_END),
    BAD("{\"a\":{}", 7, E_END),
    BAD("[[]", 3, E_END),
    BAD("[1,]", 3, E_CHAR),
    BAD("[,1]", 1, E_CHAR),
    BAD("[1,,2]", 3, E_CHAR),
    BAD("{,}", 1, E_KEY),
    BAD("{\"a\":1,}", 7, E_KEY),
    BAD("{\"a\"}", 4, E_COLON),
    BAD("{\"a\" 1}", 5, E_COLON),
    BAD("{\"a\",1}", 4, E_COLON),
    BAD("{\"a\"::1}", 5, E_CHAR),
    BAD("{\"a\":}", 5, E_CHAR),
    BAD("{1:2}", 1, E_KEY),
    BAD("{a:1}", 1, E_KEY),
    BAD("{'a':1}", 1, E_KEY),
    BAD("{{}}", 1, E_KEY),
    BAD("{[]:1}", 1, E_KEY),
    BAD("{null:1}", 1, E_KEY),
    BAD("[1 2]", 3, E_ARR),
    BAD("[1:2]", 2, E_ARR),
    BAD("[1}", 2, E_ARR),
    BAD("[{]", 2, E_KEY),
    BAD("{\"a\":1 \"b\":2}", 7, E_OBJ),
    BAD("{\"a\":1]", 6, E_OBJ),
    BAD("{\"a\":1;\"b\":2}", 6, E_OBJ),
    BAD("]", 0, E_CHAR),
    BAD("}", 0, E_CHAR),
    BAD(":", 0, E_CHAR),
    BAD(",", 0, E_CHAR),
    BAD("/* c */ {}", 0, E_CHAR),
    BAD("'a'", 0, E_CHAR),
    BAD("NaN", 0, E_CHAR),
    BAD("Infinity", 0, E_CHAR),
    BAD("undefined", 0, E_CHAR),
    BAD("\xC3\xA9", 0, E_CHAR),
    BAD("[\xC3\xA9]", 1, E_CHAR),
};

static const struct scan_row number_rows[] = {
    OK("0", NUMBER),
    OK("-0", NUMBER),
    OK("1", NUMBER),
    OK("-1", NUMBER),
    OK("10", NUMBER),
    OK("1234567890", NUMBER),
    OK("0.0", NUMBER),
    OK("-0.0", NUMBER),
    OK("0.5", NUMBER),
    OK("1.25", NUMBER),
    OK("1e5", NUMBER),
    OK("1E5", NUMBER),
    OK("1e+5", NUMBER),
    OK("1e-5", NUMBER),
    OK("1E+05", NUMBER),
    OK("0e0", NUMBER),
    OK("-0e-0", NUMBER),
    OK("1.5e10", NUMBER),
    OK("123.456E-789", NUMBER),
    OK("99999999999999999999999999999999", NUMBER), /* range is not ours */
    OK("[0,-0,1.5,-2e-3]", ARRAY),
    OK("{\"a\":0}", OBJECT),
    OK("{\"a\":-1.5e3}", OBJECT),
    OK("0 ", NUMBER),
    BAD("01", 1, E_NUM),
    BAD("00", 1, E_NUM),
    BAD("-01", 2, E_NUM),
    BAD("+1", 0, E_CHAR),
    BAD(".5", 0, E_CHAR),
    BAD("-.5", 1, E_NUM),
    BAD("-Infinity", 1, E_NUM),
    BAD("1.", 2, E_NUM),
    BAD("0.", 2, E_NUM),
    BAD("-0.", 3, E_NUM),
    BAD("1.e5", 2, E_NUM),
    BAD("2.e3", 2, E_NUM),
    BAD("1e", 2, E_NUM),
    BAD("1E", 2, E_NUM),
    BAD("1e+", 3, E_NUM),
    BAD("1e-", 3, E_NUM),
    BAD("1E+a", 3, E_NUM),
    BAD("1ee5", 2, E_NUM),
    BAD("-", 1, E_NUM),
    BAD("--1", 1, E_NUM),
    BAD("-a", 1, E_NUM),
    BAD("- 1", 1, E_NUM),
    BAD("1.2.3", 3, E_NUM),
    BAD("1e5e5", 3, E_NUM),
    BAD("1e5.5", 3, E_NUM),
    BAD("1e1.", 3, E_NUM),
    BAD("0x10", 1, E_NUM),
    BAD("1a", 1, E_NUM),
    BAD("1_000", 1, E_NUM),
    BAD("1-2", 1, E_NUM),
    BAD("1+2", 1, E_NUM),
    BAD("[01]", 2, E_NUM),
    BAD("[1.]", 3, E_NUM),
    BAD("{\"a\":01}", 6, E_NUM),
    BAD("{\"a\":-}", 6, E_NUM),
    BAD("1,", 1, E_TRAIL),
    BAD("\xD9\xA1", 0, E_CHAR), /* ARABIC-INDIC DIGIT ONE */
};

static const struct scan_row literal_rows[] = {
    OK("true", TRUE),
    OK("false", FALSE),
    OK("null", NULL),
    OK("[true,false,null]", ARRAY),
    OK("{\"t\":true,\"f\":false,\"n\":null}", OBJECT),
    BAD("t", 1, E_LIT),
    BAD("tru", 3, E_LIT),
    BAD("fals", 4, E_LIT),
    BAD("nul", 3, E_LIT),
    BAD("True", 0, E_CHAR),
    BAD("TRUE", 0, E_CHAR),
    BAD("Null", 0, E_CHAR),
    BAD("nil", 1, E_LIT),
    BAD("trUe", 2, E_LIT),
    BAD("falsy", 4, E_LIT),
    BAD("nulll", 4, E_LIT),
    BAD("trues", 4, E_LIT),
    BAD("true1", 4, E_LIT),
    BAD("[truefalse]", 5, E_LIT),
    BAD("[tru]", 4, E_LIT),
    BAD("{\"a\":nul}", 8, E_LIT),
};

static const struct scan_row string_rows[] = {
    OK("\"hello\"", STRING),
    OK("\"a b\"", STRING),
    OK("\"\x7F\"", STRING), /* DEL needs no escape */
    OK("\"'\"", STRING),
    OK("\"/\"", STRING),
    OK("\"0123456789abcdefghijklmnopqrstuvwxyz\"", STRING),
    BAD("\"", 1, E_UNTERM),
    BAD("\"abc", 4, E_UNTERM),
    BAD("\"abcdefghijklmnop", 17, E_UNTERM),
    BAD("\"a\\\"", 4, E_UNTERM),
    BAD("[\"a]", 4, E_UNTERM),
    BAD("{\"a", 3, E_UNTERM),
    BAD("\"\x00\"", 1, E_CTRL),
    BAD("\"\x01\"", 1, E_CTRL),
    BAD("\"\x1F\"", 1, E_CTRL),
    BAD("\"a\tb\"", 2, E_CTRL),
    BAD("\"\n\"", 1, E_CTRL),
    BAD("\"\r\"", 1, E_CTRL),
    BAD("\"abcdefgh\x1F\"", 9, E_CTRL),
    BAD("\"abcdefghijklmnopq\x00rst\"", 18, E_CTRL),
    BAD("{\"a\x0A\":1}", 3, E_CTRL),
    BAD("{\"a\":\"\x1B[0m\"}", 6, E_CTRL),
};

static const struct scan_row escape_rows[] = {
    OK("\"\\\"\"", STRING),
    OK("\"\\\\\"", STRING),
    OK("\"\\/\"", STRING),
    OK("\"\\b\"", STRING),
    OK("\"\\f\"", STRING),
    OK("\"\\n\"", STRING),
    OK("\"\\r\"", STRING),
    OK("\"\\t\"", STRING),
    OK("\"\\u0000\"", STRING),
    OK("\"\\u0041\"", STRING),
    OK("\"\\uabcd\"", STRING),
    OK("\"\\uABCD\"", STRING),
    OK("\"\\uAbCd\"", STRING),
    OK("\"\\u00e9\"", STRING),
    OK("\"\\uffff\"", STRING),
    OK("\"\\uFFFE\"", STRING),
    OK("\"\\uD7FF\\uE000\"", STRING),
    OK("\"\\\\\\\\\"", STRING),
    OK("\"\\\\u\"", STRING),
    OK("\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\\u0001j\"", STRING),
    BAD("\"\\a\"", 2, E_ESC),
    BAD("\"\\x41\"", 2, E_ESC),
    BAD("\"\\'\"", 2, E_ESC),
    BAD("\"\\0\"", 2, E_ESC),
    BAD("\"\\e\"", 2, E_ESC),
    BAD("\"\\v\"", 2, E_ESC),
    BAD("\"\\ \"", 2, E_ESC),
    BAD("\"\\\n\"", 2, E_ESC),
    BAD("\"\\U0041\"", 2, E_ESC),
    BAD("\"\\N\"", 2, E_ESC),
    BAD("\"\\u\"", 3, E_ESC),
    BAD("\"\\u12\"", 5, E_ESC),
    BAD("\"\\u12G4\"", 5, E_ESC),
    BAD("\"\\u 123\"", 3, E_ESC),
    BAD("\"\\u-123\"", 3, E_ESC),
    BAD("\"\\\xC3\xA9\"", 2, E_ESC),
    BAD("\"\\", 2, E_UNTERM),
    BAD("\"\\u", 3, E_UNTERM),
    BAD("\"\\u12", 5, E_UNTERM),
    BAD("\"\\u123", 6, E_UNTERM),
    BAD("{\"\\q\":1}", 3, E_ESC),
};

static const struct scan_row surrogate_rows[] = {
    OK("\"\\ud83d\\ude00\"", STRING),
    OK("\"\\uD83D\\uDE00\"", STRING),
    OK("\"\\uD800\\uDC00\"", STRING),
    OK("\"\\uDBFF\\uDFFF\"", STRING),
    OK("\"a\\uD834\\uDD1Eb\"", STRING),
    OK("\"\\uD834\\uDD1E\\uD834\\uDD1E\"", STRING),
    OK("{\"\\ud83d\\ude00\":1}", OBJECT),
    BAD("\"\\uD800\"", 1, E_SURR),
    BAD("\"\\uDBFF\"", 1, E_SURR),
    BAD("\"\\uDC00\"", 1, E_SURR),
    BAD("\"\\uDFFF\"", 1, E_SURR),
    BAD("\"a\\uDE00b\"", 2, E_SURR),
    BAD("\"\\uD800x\"", 1, E_SURR),
    BAD("\"\\uD800 \\uDC00\"", 1, E_SURR),
    BAD("\"\\uD800\\n\"", 1, E_SURR),
    BAD("\"\\uD800\\\\uDC00\"", 1, E_SURR),
    BAD("\"\\uD800\\u0041\"", 1, E_SURR),
    BAD("\"\\uD800\\uD800\"", 1, E_SURR),
    BAD("\"\\uD800\\uDBFF\"", 1, E_SURR),
    BAD("\"\\uD800\\uE000\"", 1, E_SURR),
    BAD("\"\\uDC00\\uD800\"", 1, E_SURR),
    BAD("\"\\ud800\\udc00\\udc00\"", 13, E_SURR),
    BAD("\"\\uD800\\uDCxx\"", 11, E_ESC),
    BAD("\"\\uD800", 7, E_UNTERM),
    BAD("\"\\uD800\\", 8, E_UNTERM),
    BAD("\"\\uD800\\u", 9, E_UNTERM),
    BAD("\"\\uD800\\uDC", 11, E_UNTERM),
    BAD("\"\\uD800\xED\xB0\x80\"", 1, E_SURR),
    BAD("{\"\\uDC00\":1}", 2, E_SURR),
};

static const struct scan_row utf8_rows[] = {
    OK("\"\xC2\x80\"", STRING),         /* U+0080 */
    OK("\"\xC3\xA9\"", STRING),         /* U+00E9 */
    OK("\"\xDF\xBF\"", STRING),         /* U+07FF */
    OK("\"\xE0\xA0\x80\"", STRING),     /* U+0800 */
    OK("\"\xE2\x82\xAC\"", STRING),     /* U+20AC */
    OK("\"\xED\x9F\xBF\"", STRING),     /* U+D7FF */
    OK("\"\xEE\x80\x80\"", STRING),     /* U+E000 */
    OK("\"\xEF\xBB\xBF\"", STRING),     /* U+FEFF in a string */
    OK("\"\xEF\xBF\xBF\"", STRING),     /* U+FFFF */
    OK("\"\xF0\x90\x80\x80\"", STRING), /* U+10000 */
    OK("\"\xF0\x9F\x98\x80\"", STRING), /* U+1F600 */
    OK("\"\xF1\x80\x80\x80\"", STRING), /* U+40000 */
    OK("\"\xF3\xBF\xBF\xBF\"", STRING), /* U+FFFFF */
    OK("\"\xF4\x8F\xBF\xBF\"", STRING), /* U+10FFFF */
    OK("{\"cl\xC3\xA9\":\"v\xE2\x82\xAC\"}", OBJECT),
    OK("\"abcdefg\xC3\xA9hijklmn\xF0\x9F\x98\x80op\"", STRING),
    BAD("\"\x80\"", 1, E_UTF8), /* lone continuation bytes */
    BAD("\"\xBF\"", 1, E_UTF8),
    BAD("\"a\x80\"", 2, E_UTF8),
    BAD("\"\xC3\xA9\xA9\"", 3, E_UTF8),
    BAD("\"\xC0\x80\"", 1, E_UTF8), /* overlong, C0 and C1 leads */
    BAD("\"\xC0\xAF\"", 1, E_UTF8),
    BAD("\"\xC1\xBF\"", 1, E_UTF8),
    BAD("\"\xE0\x80\x80\"", 2, E_UTF8),
    BAD("\"\xE0\x9F\xBF\"", 2, E_UTF8),
    BAD("\"\xF0\x80\x80\x80\"", 2, E_UTF8),
    BAD("\"\xF0\x8F\xBF\xBF\"", 2, E_UTF8),
    BAD("\"\xED\xA0\x80\"", 2, E_UTF8), /* encoded surrogates */
    BAD("\"\xED\xBF\xBF\"", 2, E_UTF8),
    BAD("\"\xED\xA0\xBD\xED\xB8\x80\"", 2, E_UTF8),
    BAD("\"\xF4\x90\x80\x80\"", 2, E_UTF8), /* above U+10FFFF */
    BAD("\"\xF5\x80\x80\x80\"", 1, E_UTF8),
    BAD("\"\xF7\xBF\xBF\xBF\"", 1, E_UTF8),
    BAD("\"\xF8\x88\x80\x80\x80\"", 1, E_UTF8),
    BAD("\"\xFC\x84\x80\x80\x80\x80\"", 1, E_UTF8),
    BAD("\"\xFE\"", 1, E_UTF8),
    BAD("\"\xFF\"", 1, E_UTF8),
    BAD("\"\xC3\"", 2, E_UTF8), /* truncated sequences */
    BAD("\"\xE2\"", 2, E_UTF8),
    BAD("\"\xE2\x82\"", 3, E_UTF8),
    BAD("\"\xF0\x9F\"", 3, E_UTF8),
    BAD("\"\xF0\x9F\x98\"", 4, E_UTF8),
    BAD("\"\xC3x\"", 2, E_UTF8),
    BAD("\"\xE2\x82x\"", 3, E_UTF8),
    BAD("\"\xF0\x9F\x98x\"", 4, E_UTF8),
    BAD("\"\xC3\xC3\xA9\"", 2, E_UTF8), /* a lead byte for a continuation */
    BAD("\"\xE2\xC0\x80\"", 2, E_UTF8),
    BAD("\"\xE2\x82\xC0\"", 3, E_UTF8),
    BAD("\"\xF0\x9F\x98\xFF\"", 4, E_UTF8),
    BAD("\"\xF1\x7F\x80\x80\"", 2, E_UTF8),
    BAD("\"\xC3", 2, E_UNTERM), /* input ends inside the sequence */
    BAD("\"\xE2\x82", 3, E_UNTERM),
    BAD("\"\xF0\x9F\x98", 4, E_UNTERM),
    BAD("{\"\xFF\":1}", 2, E_UTF8),
    BAD("{\"a\":\"b\xC0\"}", 7, E_UTF8),
};

/* Special bytes at every alignment inside a long string, so that they are
 * met by the eight-byte scan as well as by the byte loop: the row's bytes
 * go after k plain bytes (k = 0..16) and before 24 more; off is relative
 * to the first inserted byte. */
struct sweep_row {
    const char *ins;
    size_t len;
    int rc;
    size_t off;
    const char *err;
};

#define SW_OK(s)                                                               \
    {                                                                          \
        s, sizeof(s) - 1, 0, 0, NULL                                           \
    }
#define SW_BAD(s, off, msg)                                                    \
    {                                                                          \
        s, sizeof(s) - 1, -EINVAL, off, msg                                    \
    }

static const struct sweep_row sweep_rows[] = {
    SW_OK(""),
    SW_OK("\\n"),
    SW_OK("\\\\"),
    SW_OK("\\\""),
    SW_OK("\\u00e9"),
    SW_OK("\\uD83D\\uDE00"),
    SW_OK("\x7F"),
    SW_OK("\xC3\xA9"),
    SW_OK("\xE2\x82\xAC"),
    SW_OK("\xF0\x9F\x98\x80"),
    SW_BAD("\"", 1, E_TRAIL), /* closes the string early */
    SW_BAD("\x00", 0, E_CTRL),
    SW_BAD("\x01", 0, E_CTRL),
    SW_BAD("\x1F", 0, E_CTRL),
    SW_BAD("\n", 0, E_CTRL),
    SW_BAD("\x80", 0, E_UTF8),
    SW_BAD("\xBF", 0, E_UTF8),
    SW_BAD("\xFF", 0, E_UTF8),
    SW_BAD("\xC0\x80", 0, E_UTF8),
    SW_BAD("\xC3(", 1, E_UTF8),
    SW_BAD("\xE0\x80\x80", 1, E_UTF8),
    SW_BAD("\xED\xA0\x80", 1, E_UTF8),
    SW_BAD("\xF4\x90\x80\x80", 1, E_UTF8),
    SW_BAD("\xF0\x9F\x98(", 3, E_UTF8),
    SW_BAD("\\x", 1, E_ESC),
    SW_BAD("\\uD800", 0, E_SURR),
    SW_BAD("\\uDC00", 0, E_SURR),
};

static void test_json_scan_string_sweep(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sweep_rows) / sizeof(sweep_rows[0]); i++) {
        const struct sweep_row *w = &sweep_rows[i];
        for (size_t k = 0; k <= 16; k++) {
            char in[64];
            size_t n = 0;
            in[n++] = '"';
            memset(in + n, 'a', k);
            n += k;
            memcpy(in + n, w->ins, w->len);
            n += w->len;
            memset(in + n, 'b', 24);
            n += 24;
            in[n++] = '"';
            struct scan_row r = {
                in, n, w->rc, SB_JSON_STRING, 1 + k + w->off, w->err};
            if (w->rc != 0)
                r.type = SB_JSON_NONE;
            check_scan_row(&r, "sweep_rows", i);
        }
    }
}

static void test_json_scan_types(void **state)
{
    (void)state;
    CHECK_ROWS(types_rows);
}

static void test_json_scan_whitespace(void **state)
{
    (void)state;
    CHECK_ROWS(space_rows);
}

static void test_json_scan_trailing(void **state)
{
    (void)state;
    CHECK_ROWS(trailing_rows);
}

static void test_json_scan_structure(void **state)
{
    (void)state;
    CHECK_ROWS(structure_rows);
}

static void test_json_scan_numbers(void **state)
{
    (void)state;
    CHECK_ROWS(number_rows);
}

static void test_json_scan_literals(void **state)
{
    (void)state;
    CHECK_ROWS(literal_rows);
}

static void test_json_scan_strings(void **state)
{
    (void)state;
    CHECK_ROWS(string_rows);
}

static void test_json_scan_escapes(void **state)
{
    (void)state;
    CHECK_ROWS(escape_rows);
}

static void test_json_scan_surrogates(void **state)
{
    (void)state;
    CHECK_ROWS(surrogate_rows);
}

static void test_json_scan_utf8(void **state)
{
    (void)state;
    CHECK_ROWS(utf8_rows);
}

/* Every byte value where a value must start: only the grammar's first
 * bytes and whitespace are accepted there. */
static void test_json_scan_every_first_byte(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        char in[2] = {(char)b, '1'};
        sb_json_result res;
        int rc = sb_json_scan(in, 2, NULL, 0, &res);
        bool want = (b >= '1' && b <= '9') || b == ' ' || b == '\t' ||
                    b == '\r' || b == '\n' || b == '-';
        if ((rc == 0) != want) {
            print_error("byte 0x%02X: rc %d err %s\n", (unsigned)b, rc,
                        res.err ? res.err : "");
            fail();
        }
    }
}

/* Nesting: `pattern` picks object (1) or array (0) per level. Builds the
 * text of `depth` nested containers with a number in the middle. */
static char *nest(unsigned depth, unsigned pattern_seed, size_t *len)
{
    char *s = malloc((size_t)depth * 6 + 2);
    assert_non_null(s);
    char *stack = malloc(depth + 1);
    assert_non_null(stack);
    size_t n = 0;
    unsigned x = pattern_seed;
    for (unsigned i = 0; i < depth; i++) {
        x = x * 1103515245u + 12345u;
        bool obj = pattern_seed != 0 && (x >> 16) & 1;
        stack[i] = obj ? '}' : ']';
        if (obj) {
            memcpy(s + n, "{\"k\":", 5);
            n += 5;
        } else {
            s[n++] = '[';
        }
    }
    s[n++] = '0';
    for (unsigned i = depth; i-- > 0;)
        s[n++] = stack[i];
    free(stack);
    *len = n;
    return s;
}

static void test_json_scan_depth(void **state)
{
    (void)state;
    static const unsigned seeds[] = {0, 1, 2, 7, 12345};
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        size_t len;
        sb_json_result res;
        char *s = nest(SB_JSON_MAX_DEPTH, seeds[i], &len);
        assert_int_equal(sb_json_scan(s, len, NULL, 0, &res), 0);
        free(s);

        s = nest(SB_JSON_MAX_DEPTH + 1, seeds[i], &len);
        assert_int_equal(sb_json_scan(s, len, NULL, 0, &res), -E2BIG);
        assert_string_equal(res.err, E_DEEP);
        assert_int_equal(s[res.err_off] == '[' || s[res.err_off] == '{', 1);
        free(s);
    }
}

static void test_json_scan_depth_edges(void **state)
{
    (void)state;
    enum { D = SB_JSON_MAX_DEPTH };
    char s[4 * D + 16];
    sb_json_result res;

    /* D opening brackets, then a second sibling at the deepest level. */
    size_t n = 0;
    for (int i = 0; i < D - 1; i++)
        s[n++] = '[';
    memcpy(s + n, "[],{}", 5);
    n += 5;
    for (int i = 0; i < D - 1; i++)
        s[n++] = ']';
    assert_int_equal(sb_json_scan(s, n, NULL, 0, &res), 0);

    /* Too deep wins over the missing closers: it comes first. */
    memset(s, '[', D + 1);
    assert_int_equal(sb_json_scan(s, D + 1, NULL, 0, &res), -E2BIG);
    assert_int_equal(res.err_off, D);
    assert_int_equal(sb_json_scan(s, D, NULL, 0, &res), -EINVAL);
    assert_string_equal(res.err, E_END);

    /* A million '[' must not touch the C stack. */
    size_t big = 1000000;
    char *b = malloc(big);
    assert_non_null(b);
    memset(b, '[', big);
    assert_int_equal(sb_json_scan(b, big, NULL, 0, &res), -E2BIG);
    assert_int_equal(res.err_off, D);
    free(b);

    /* The wrong closer at the deepest level of a mixed nesting. */
    size_t len;
    char *m = nest(D, 99, &len);
    char want = m[len - D];
    m[len - D] = want == '}' ? ']' : '}';
    assert_int_equal(sb_json_scan(m, len, NULL, 0, &res), -EINVAL);
    assert_int_equal(res.err_off, len - D);
    free(m);
}

struct member_want {
    uint32_t key_off, key_len, val_off, val_len;
    sb_json_type type;
    bool key_escaped, val_escaped;
};

static void check_members(const char *in,
                          const sb_json_member *got,
                          const struct member_want *want,
                          size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const sb_json_member *g = &got[i];
        const struct member_want *w = &want[i];
        if (g->key_off == w->key_off && g->key_len == w->key_len &&
            g->val_off == w->val_off && g->val_len == w->val_len &&
            g->type == w->type && g->key_escaped == w->key_escaped &&
            g->val_escaped == w->val_escaped)
            continue;
        show("input", in, strlen(in));
        print_error("member %zu: want key %u+%u val %u+%u %s esc %d/%d\n", i,
                    w->key_off, w->key_len, w->val_off, w->val_len,
                    type_name(w->type), w->key_escaped, w->val_escaped);
        print_error("member %zu: got  key %u+%u val %u+%u %s esc %d/%d\n", i,
                    g->key_off, g->key_len, g->val_off, g->val_len,
                    type_name(g->type), g->key_escaped, g->val_escaped);
        fail();
    }
}

static void test_json_scan_members_frame(void **state)
{
    (void)state;
    const char *in = "{\"op\":\"pub\",\"topic\":\"a.b\","
                     "\"data\":{\"x\":[1,2]},\"id\":7}";
    static const struct member_want want[] = {
        {2, 2, 6, 5, SB_JSON_STRING, false, false},
        {13, 5, 20, 5, SB_JSON_STRING, false, false},
        {27, 4, 33, 11, SB_JSON_OBJECT, false, false},
        {46, 2, 50, 1, SB_JSON_NUMBER, false, false},
    };
    sb_json_member m[8];
    sb_json_result res;
    assert_int_equal(sb_json_scan(in, strlen(in), m, 8, &res), 0);
    assert_int_equal(res.type, SB_JSON_OBJECT);
    assert_int_equal(res.n_members, 4);
    check_members(in, m, want, 4);
    assert_memory_equal(in + m[0].key_off, "op", 2);
    assert_memory_equal(in + m[2].val_off, "{\"x\":[1,2]}", 11);
}

static void test_json_scan_members_spaced(void **state)
{
    (void)state;
    const char *in = "{ \"op\" : \"p\\\"ub\" , \"k\\u0041\" : [ 1 ] , "
                     "\"n\" : null , \"t\" : true , \"f\" : false , "
                     "\"s\":\"\" , \"num\": -1.5e3 , \"o\":{\"e\":\"\\n\"} }";
    static const struct member_want want[] = {
        {3, 2, 9, 7, SB_JSON_STRING, false, true},
        {20, 7, 31, 5, SB_JSON_ARRAY, true, false},
        {40, 1, 45, 4, SB_JSON_NULL, false, false},
        {53, 1, 58, 4, SB_JSON_TRUE, false, false},
        {66, 1, 71, 5, SB_JSON_FALSE, false, false},
        {80, 1, 83, 2, SB_JSON_STRING, false, false},
        {89, 3, 95, 6, SB_JSON_NUMBER, false, false},
        /* An escape inside a nested value does not mark the member. */
        {105, 1, 108, 10, SB_JSON_OBJECT, false, false},
    };
    sb_json_member m[8];
    sb_json_result res;
    assert_int_equal(sb_json_scan(in, strlen(in), m, 8, &res), 0);
    assert_int_equal(res.n_members, 8);
    check_members(in, m, want, 8);
}

static void test_json_scan_members_limit(void **state)
{
    (void)state;
    const char *in = "{\"a\":1,\"b\":[2],\"c\":{\"d\":3},\"e\":\"\\t\"}";
    sb_json_member m[4];
    sb_json_result res;

    memset(m, 0xAB, sizeof(m));
    assert_int_equal(sb_json_scan(in, strlen(in), m, 2, &res), 0);
    assert_int_equal(res.n_members, 4);
    assert_int_equal(m[0].key_off, 2);
    assert_int_equal(m[1].val_off, 11);
    assert_int_equal(m[1].val_len, 3);
    /* Entries past max_members are not written. */
    for (size_t i = 2 * sizeof(m[0]); i < sizeof(m); i++)
        assert_int_equal(((unsigned char *)m)[i], 0xAB);

    assert_int_equal(sb_json_scan(in, strlen(in), NULL, 0, &res), 0);
    assert_int_equal(res.n_members, 4);
    assert_int_equal(sb_json_scan(in, strlen(in), m, 4, &res), 0);
    assert_int_equal(m[3].type, SB_JSON_STRING);
    assert_true(m[3].val_escaped);
}

static void test_json_scan_members_other_tops(void **state)
{
    (void)state;
    static const char *const ins[] = {"[{\"a\":1}]", "{}",  "\"a\"",
                                      "1",           "{ }", "[]"};
    for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
        sb_json_member m[2];
        sb_json_result res;
        memset(m, 0xAB, sizeof(m));
        assert_int_equal(sb_json_scan(ins[i], strlen(ins[i]), m, 2, &res), 0);
        assert_int_equal(res.n_members, 0);
        assert_int_equal(((unsigned char *)m)[0], 0xAB);
    }
}

/* Not promised by json.h, but relied on by nothing else either: after an
 * error, n_members counts the members scanned completely before it. */
static void test_json_scan_members_on_error(void **state)
{
    (void)state;
    const char *in = "{\"id\":7,\"b\":[1,}";
    sb_json_member m[4];
    sb_json_result res;
    assert_int_equal(sb_json_scan(in, strlen(in), m, 4, &res), -EINVAL);
    assert_int_equal(res.type, SB_JSON_NONE);
    assert_int_equal(res.n_members, 1);
    assert_int_equal(m[0].val_off, 6);
    assert_int_equal(m[0].val_len, 1);
}

static void test_json_scan_result_fields(void **state)
{
    (void)state;
    sb_json_result res;
    memset(&res, 0xAB, sizeof(res));
    assert_int_equal(sb_json_scan("[1]", 3, NULL, 0, &res), 0);
    assert_null(res.err);
    assert_int_equal(res.err_off, 0);
    assert_int_equal(res.n_members, 0);
    assert_int_equal(sb_json_scan(NULL, 0, NULL, 0, &res), -EINVAL);
    assert_string_equal(res.err, E_EMPTY);
    assert_int_equal(res.type, SB_JSON_NONE);
#if SIZE_MAX > UINT32_MAX
    /* Refused before a byte is read. */
    assert_int_equal(sb_json_scan("{}", (size_t)UINT32_MAX + 1, NULL, 0, &res),
                     -EINVAL);
    assert_string_equal(res.err, "input too large");
#endif
}

struct unescape_row {
    const char *in;
    size_t in_len;
    const char *out;
    size_t out_len;
};

#define UN(i, o)                                                               \
    {                                                                          \
        i, sizeof(i) - 1, o, sizeof(o) - 1                                     \
    }

static const struct unescape_row unescape_rows[] = {
    UN("", ""),
    UN("abc", "abc"),
    UN("\\\"", "\""),
    UN("\\\\", "\\"),
    UN("\\/", "/"),
    UN("\\b", "\b"),
    UN("\\f", "\f"),
    UN("\\n", "\n"),
    UN("\\r", "\r"),
    UN("\\t", "\t"),
    UN("\\u0041", "A"),
    UN("\\u0000", "\0"),
    UN("\\u007f", "\x7F"),
    UN("\\u0080", "\xC2\x80"),
    UN("\\u00e9", "\xC3\xA9"),
    UN("\\u00E9", "\xC3\xA9"),
    UN("\\u07FF", "\xDF\xBF"),
    UN("\\u0800", "\xE0\xA0\x80"),
    UN("\\u20ac", "\xE2\x82\xAC"),
    UN("\\uD7FF", "\xED\x9F\xBF"),
    UN("\\uE000", "\xEE\x80\x80"),
    UN("\\uFFFF", "\xEF\xBF\xBF"),
    UN("\\uD800\\uDC00", "\xF0\x90\x80\x80"),
    UN("\\ud83d\\ude00", "\xF0\x9F\x98\x80"),
    UN("\\uDBFF\\uDFFF", "\xF4\x8F\xBF\xBF"),
    UN("\\\\u0041", "\\u0041"),
    UN("a\\nb\\tc", "a\nb\tc"),
    UN("\xC3\xA9\\u00e9\xF0\x9F\x98\x80", "\xC3\xA9\xC3\xA9\xF0\x9F\x98\x80"),
    UN("x\\u00e9y\\uD834\\uDD1Ez\\\"", "x\xC3\xA9y\xF0\x9D\x84\x9Ez\""),
    UN("plain text, then \\\"quoted\\\"", "plain text, then \"quoted\""),
};

static void check_unescape_row(const struct unescape_row *r, size_t i)
{
    /* The body must be something the scanner accepts. */
    char *quoted = malloc(r->in_len + 2);
    assert_non_null(quoted);
    quoted[0] = '"';
    memcpy(quoted + 1, r->in, r->in_len);
    quoted[r->in_len + 1] = '"';
    sb_json_result res;
    int rc = sb_json_scan(quoted, r->in_len + 2, NULL, 0, &res);
    free(quoted);

    /* Out of place into exactly in_len bytes, then in place. */
    char *dst = malloc(r->in_len ? r->in_len : 1);
    char *buf = malloc(r->in_len ? r->in_len : 1);
    assert_non_null(dst);
    assert_non_null(buf);
    memcpy(buf, r->in, r->in_len);
    size_t n1 = sb_json_unescape(dst, r->in, r->in_len);
    size_t n2 = sb_json_unescape(buf, buf, r->in_len);
    bool ok = rc == 0 && n1 == r->out_len && n2 == r->out_len &&
              memcmp(dst, r->out, n1) == 0 && memcmp(buf, r->out, n2) == 0;
    free(dst);
    free(buf);
    if (ok)
        return;
    print_error("unescape row %zu: scan rc %d, lengths %zu %zu\n", i, rc, n1,
                n2);
    show("  input", r->in, r->in_len);
    show("  want ", r->out, r->out_len);
    fail();
}

static void test_json_unescape_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(unescape_rows) / sizeof(unescape_rows[0]);
         i++)
        check_unescape_row(&unescape_rows[i], i);
}

/* Text the scanner rejects decodes to something unspecified, but never
 * more than `len` bytes and never read past the end. */
static void test_json_unescape_rejected_text(void **state)
{
    (void)state;
    static const char *const ins[] = {"\\",      "a\\",          "\\u",
                                      "\\u12",   "\\uZZZZ",      "\\x",
                                      "\\uD800", "\\uD800\\u12", "\\uDC00"};
    for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
        size_t len = strlen(ins[i]);
        char *src = malloc(len);
        char *dst = malloc(len);
        assert_non_null(src);
        assert_non_null(dst);
        memcpy(src, ins[i], len);
        assert_true(sb_json_unescape(dst, src, len) <= len);
        assert_true(sb_json_unescape(src, src, len) <= len);
        free(src);
        free(dst);
    }
}

struct escape_row {
    const char *in;
    size_t in_len;
    const char *out;
};

#define ES(i, o)                                                               \
    {                                                                          \
        i, sizeof(i) - 1, o                                                    \
    }

static const struct escape_row escape_out_rows[] = {
    ES("", ""),
    ES("abc", "abc"),
    ES("\"", "\\\""),
    ES("\\", "\\\\"),
    ES("/", "/"),
    ES("\b", "\\b"),
    ES("\f", "\\f"),
    ES("\n", "\\n"),
    ES("\r", "\\r"),
    ES("\t", "\\t"),
    ES("\0", "\\u0000"),
    ES("\x01", "\\u0001"),
    ES("\x0B", "\\u000b"),
    ES("\x1F", "\\u001f"),
    ES("\x7F", "\\u007f"),
    ES("\xC3\xA9", "\xC3\xA9"),
    ES("\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"),
    ES("a\"b\\c\nd\x1B[0m", "a\\\"b\\\\c\\nd\\u001b[0m"),
};

static void test_json_escape_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(escape_out_rows) / sizeof(escape_out_rows[0]);
         i++) {
        const struct escape_row *r = &escape_out_rows[i];
        size_t want = strlen(r->out);
        size_t len = sb_json_escaped_len(r->in, r->in_len);
        char *dst = malloc(len ? len : 1);
        assert_non_null(dst);
        size_t n = sb_json_escape(dst, r->in, r->in_len);
        bool ok = len == want && n == want && memcmp(dst, r->out, n) == 0;
        if (!ok) {
            print_error("escape row %zu: len %zu written %zu want %zu\n", i,
                        len, n, want);
            show("  input", r->in, r->in_len);
            show("  got  ", dst, n);
            show("  want ", r->out, want);
        }
        free(dst);
        if (!ok)
            fail();
    }
}

/* Puts byte b into the shortest well-formed UTF-8 text that holds it.
 * Returns 0 for the bytes that never appear in UTF-8. */
static size_t utf8_context(unsigned b, char *out)
{
    static const unsigned char second[] = {0xA0, 0x80, 0x80}; /* E0, E1.. */
    size_t n = 0;
    if (b < 0x80) {
        out[n++] = (char)b;
    } else if (b < 0xC0) {
        out[n++] = '\xC2';
        out[n++] = (char)b;
    } else if (b >= 0xC2 && b <= 0xDF) {
        out[n++] = (char)b;
        out[n++] = '\x80';
    } else if (b >= 0xE0 && b <= 0xEF) {
        out[n++] = (char)b;
        out[n++] = (char)second[b == 0xE0 ? 0 : 1];
        out[n++] = '\x80';
    } else if (b >= 0xF0 && b <= 0xF4) {
        out[n++] = (char)b;
        out[n++] = b == 0xF0 ? '\x90' : '\x80';
        out[n++] = '\x80';
        out[n++] = '\x80';
    }
    return n;
}

/* Escaping any well-formed UTF-8 text gives a string body that the scanner
 * accepts and that unescapes back to the text. */
static void check_escape_round_trip(const char *text, size_t len)
{
    size_t elen = sb_json_escaped_len(text, len);
    char *q = malloc(elen + 2);
    assert_non_null(q);
    q[0] = '"';
    assert_int_equal(sb_json_escape(q + 1, text, len), elen);
    q[elen + 1] = '"';
    sb_json_result res;
    int rc = sb_json_scan(q, elen + 2, NULL, 0, &res);
    if (rc != 0 || res.type != SB_JSON_STRING) {
        show("text", text, len);
        show("escaped", q, elen + 2);
        print_error("scan: %d %s at %zu\n", rc, res.err, res.err_off);
        free(q);
        fail();
    }
    size_t n = sb_json_unescape(q + 1, q + 1, elen);
    assert_int_equal(n, len);
    assert_memory_equal(q + 1, text, len);
    free(q);
}

static void test_json_escape_every_byte(void **state)
{
    (void)state;
    char all[128];
    for (unsigned b = 0; b < 256; b++) {
        char text[8];
        size_t n = utf8_context(b, text);
        if (n > 0) {
            check_escape_round_trip(text, n);
            continue;
        }
        /* C0, C1, F5..FF: copied as they are, so the result is no JSON. */
        char c = (char)b, out[8];
        assert_int_equal(sb_json_escaped_len(&c, 1), 1);
        assert_int_equal(sb_json_escape(out, &c, 1), 1);
        assert_int_equal(out[0], c);
        char q[3] = {'"', c, '"'};
        sb_json_result res;
        assert_int_equal(sb_json_scan(q, 3, NULL, 0, &res), -EINVAL);
        assert_string_equal(res.err, E_UTF8);
    }
    for (unsigned b = 0; b < 128; b++)
        all[b] = (char)b;
    check_escape_round_trip(all, sizeof(all));

    /* Escaped ASCII is printable ASCII only. */
    char out[128 * 6];
    size_t n = sb_json_escape(out, all, sizeof(all));
    for (size_t i = 0; i < n; i++)
        assert_true(out[i] >= 0x20 && out[i] < 0x7F);
}

/* Every accepted string row survives unescape, escape, scan, unescape. */
static void test_json_string_rows_round_trip(void **state)
{
    (void)state;
    static const struct {
        const struct scan_row *rows;
        size_t n;
    } tables[] = {
        {string_rows, sizeof(string_rows) / sizeof(string_rows[0])},
        {escape_rows, sizeof(escape_rows) / sizeof(escape_rows[0])},
        {surrogate_rows, sizeof(surrogate_rows) / sizeof(surrogate_rows[0])},
        {utf8_rows, sizeof(utf8_rows) / sizeof(utf8_rows[0])},
    };
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        for (size_t i = 0; i < tables[t].n; i++) {
            const struct scan_row *r = &tables[t].rows[i];
            if (r->rc != 0 || r->type != SB_JSON_STRING)
                continue;
            size_t body = r->len - 2;
            char *text = malloc(body ? body : 1);
            assert_non_null(text);
            size_t n = sb_json_unescape(text, r->in + 1, body);
            assert_true(n <= body);
            check_escape_round_trip(text, n);
            free(text);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_scan_types),
        cmocka_unit_test(test_json_scan_whitespace),
        cmocka_unit_test(test_json_scan_trailing),
        cmocka_unit_test(test_json_scan_structure),
        cmocka_unit_test(test_json_scan_numbers),
        cmocka_unit_test(test_json_scan_literals),
        cmocka_unit_test(test_json_scan_strings),
        cmocka_unit_test(test_json_scan_escapes),
        cmocka_unit_test(test_json_scan_surrogates),
        cmocka_unit_test(test_json_scan_utf8),
        cmocka_unit_test(test_json_scan_string_sweep),
        cmocka_unit_test(test_json_scan_every_first_byte),
        cmocka_unit_test(test_json_scan_depth),
        cmocka_unit_test(test_json_scan_depth_edges),
        cmocka_unit_test(test_json_scan_members_frame),
        cmocka_unit_test(test_json_scan_members_spaced),
        cmocka_unit_test(test_json_scan_members_limit),
        cmocka_unit_test(test_json_scan_members_other_tops),
        cmocka_unit_test(test_json_scan_members_on_error),
        cmocka_unit_test(test_json_scan_result_fields),
        cmocka_unit_test(test_json_unescape_rows),
        cmocka_unit_test(test_json_unescape_rejected_text),
        cmocka_unit_test(test_json_escape_rows),
        cmocka_unit_test(test_json_escape_every_byte),
        cmocka_unit_test(test_json_string_rows_round_trip),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
