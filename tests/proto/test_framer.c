/* test_framer.c - newline framing: splits, CR/LF, empty lines, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framer.h"

/* Feed `in` in chunks of `chunk` bytes and collect what comes out, one
 * "[frame]" per frame and "!" per too-large report. */
static void run(size_t max_frame,
                const char *in,
                size_t len,
                size_t chunk,
                char *out,
                size_t outcap)
{
    sb_framer f;
    sb_framer_init(&f, max_frame);
    size_t o = 0, off = 0;
    out[0] = '\0';
    while (off < len) {
        char *p;
        size_t n;
        assert_int_equal(sb_framer_space(&f, 16, &p, &n), 0);
        size_t k = len - off < chunk ? len - off : chunk;
        if (k > n)
            k = n;
        memcpy(p, in + off, k);
        sb_framer_commit(&f, k);
        off += k;
        char *fr;
        size_t fl;
        sb_framer_result r;
        while ((r = sb_framer_next(&f, &fr, &fl)) != SB_FRAMER_NEED_MORE) {
            if (r == SB_FRAMER_TOO_LARGE)
                o += (size_t)snprintf(out + o, outcap - o, "!");
            else
                o += (size_t)snprintf(out + o, outcap - o, "[%.*s]", (int)fl,
                                      fr);
        }
    }
    sb_framer_destroy(&f);
}

struct row {
    size_t max;
    const char *in;
    const char *want;
};

static const struct row rows[] = {
    {100, "a\n", "[a]"},
    {100, "a\nb\nc\n", "[a][b][c]"},
    {100, "a\r\nb\r\n", "[a][b]"},
    {100, "\n\r\n\r\r\n", ""}, /* empty lines ignored */
    {100, "a\rb\n", "[a\rb]"}, /* inner CR is data */
    {100, "partial", ""},      /* no newline yet */
    {100, "x\npartial", "[x]"},
    {5, "abcd\n", "[abcd]"},          /* exactly max_frame */
    {5, "abcde\n", "!"},              /* one over */
    {5, "abcdefghij\nok\n", "![ok]"}, /* reported once */
    {5, "abcdefghijklmnopqrstuvwxyz\nok\n", "![ok]"},
    {5, "ok\nabcdefgh\nok2\n", "[ok]![ok2]"},
    {5, "abc\r\n", "[abc]"}, /* CR counts in the size */
    {4, "abc\r\n", "!"},
};

static void test_framer_table(void **state)
{
    (void)state;
    size_t chunks[] = {1, 2, 3, 7, 1000};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
            char out[512];
            run(rows[i].max, rows[i].in, strlen(rows[i].in), chunks[k], out,
                sizeof(out));
            if (strcmp(out, rows[i].want) != 0)
                fail_msg("row %zu chunk %zu: in \"%s\" max %zu: got \"%s\" "
                         "want \"%s\"",
                         i, chunks[k], rows[i].in, rows[i].max, out,
                         rows[i].want);
        }
    }
}

static void test_framer_thousand_frames_one_chunk(void **state)
{
    (void)state;
    size_t cap = 1000 * 16, n = 0;
    char *in = malloc(cap);
    assert_non_null(in);
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(in + n, cap - n, "f%d\n", i);
    sb_framer f;
    sb_framer_init(&f, 1024);
    char *p;
    size_t room;
    assert_int_equal(sb_framer_space(&f, n, &p, &room), 0);
    assert_true(room >= n);
    memcpy(p, in, n);
    sb_framer_commit(&f, n);
    char *fr;
    size_t fl;
    for (int i = 0; i < 1000; i++) {
        char want[16];
        snprintf(want, sizeof(want), "f%d", i);
        assert_int_equal(sb_framer_next(&f, &fr, &fl), SB_FRAMER_FRAME);
        assert_int_equal(fl, strlen(want));
        assert_memory_equal(fr, want, fl);
    }
    assert_int_equal(sb_framer_next(&f, &fr, &fl), SB_FRAMER_NEED_MORE);
    assert_int_equal(sb_framer_pending(&f), 0);
    sb_framer_release(&f);
    assert_null(f.buf);
    sb_framer_destroy(&f);
    free(in);
}

/* A huge frame without newline never grows the buffer past about
 * max_frame plus one read. */
static void test_framer_oversized_is_not_buffered(void **state)
{
    (void)state;
    sb_framer f;
    sb_framer_init(&f, 1000);
    char *p, *fr;
    size_t n, fl;
    int reports = 0;
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(sb_framer_space(&f, 512, &p, &n), 0);
        memset(p, 'x', 512);
        sb_framer_commit(&f, 512);
        while (sb_framer_next(&f, &fr, &fl) == SB_FRAMER_TOO_LARGE)
            reports++;
        assert_true(f.cap <= 4096);
    }
    assert_int_equal(reports, 1);
    assert_int_equal(sb_framer_space(&f, 16, &p, &n), 0);
    memcpy(p, "tail\nnext\n", 10);
    sb_framer_commit(&f, 10);
    assert_int_equal(sb_framer_next(&f, &fr, &fl), SB_FRAMER_FRAME);
    assert_int_equal(fl, 4);
    assert_memory_equal(fr, "next", 4);
    sb_framer_destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framer_table),
        cmocka_unit_test(test_framer_thousand_frames_one_chunk),
        cmocka_unit_test(test_framer_oversized_is_not_buffered),
    };
    return cmocka_run_group_tests_name("framer", tests, NULL, NULL);
}
