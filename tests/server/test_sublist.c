/* test_sublist.c - the subscription index against the topic rules.
 *
 * sb_topic_match() is the reference: every result of sb_sublist_match() is
 * compared with a brute-force match of every stored pattern, in tables, in
 * a randomized run with inserts and removes interleaved, and at scale.
 *
 * On glibc without a sanitizer, this binary also interposes malloc() and
 * friends (counting live blocks, and failing on demand) to check that
 * removal returns memory and that ENOMEM leaves the index intact. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sublist.h"
#include "topic.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#endif
#if defined(__GLIBC__) && !defined(SANITIZED)
#define COUNT_ALLOCS 1
#endif

/* ---------------------------------------------------------------------- */
/* Allocation counting and fault injection (glibc, no sanitizer)           */

#ifdef COUNT_ALLOCS
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static long live_blocks;         /* blocks allocated and not yet freed */
static long fail_countdown = -1; /* fail the allocation when this hits 0 */

static bool should_fail(void)
{
    if (fail_countdown < 0)
        return false;
    return fail_countdown-- == 0;
}

void *malloc(size_t n)
{
    void *p = should_fail() ? NULL : __libc_malloc(n);
    live_blocks += p != NULL;
    return p;
}

void *calloc(size_t n, size_t size)
{
    void *p = should_fail() ? NULL : __libc_calloc(n, size);
    live_blocks += p != NULL;
    return p;
}

void *realloc(void *p, size_t n)
{
    void *np;
    if (p != NULL && n == 0) {
        live_blocks--;
        return __libc_realloc(p, 0);
    }
    np = should_fail() ? NULL : __libc_realloc(p, n);
    live_blocks += np != NULL && p == NULL;
    return np;
}

void free(void *p)
{
    live_blocks -= p != NULL;
    __libc_free(p);
}

/* False when a tool (valgrind) has replaced malloc() ahead of this file. */
static bool interposed(void)
{
    /* Called through a volatile pointer so that the compiler cannot fold
     * the malloc()/free() pair away. */
    void *(*volatile alloc)(size_t) = malloc;
    void *p;
    fail_countdown = 0;
    p = alloc(1);
    fail_countdown = -1;
    free(p);
    return p == NULL;
}
#endif

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

/* Distinct opaque values: addresses into this array. */
static char pool[20000];
#define V(i) ((void *)&pool[(i)])

static int insert(sb_sublist *sl, const char *p, void *v)
{
    return sb_sublist_insert(sl, p, strlen(p), v);
}

static int remove_(sb_sublist *sl, const char *p, void *v)
{
    return sb_sublist_remove(sl, p, strlen(p), v);
}

static const sb_sublist_result *match(sb_sublist *sl, const char *t)
{
    return sb_sublist_match(sl, t, strlen(t));
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a;
    uintptr_t y = (uintptr_t) * (void *const *)b;
    return (x > y) - (x < y);
}

static void print_values(const char *label, void *const *v, size_t n)
{
    print_error("  %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 32; i++) {
        if (v[i] >= V(0) && v[i] < V(sizeof(pool)))
            print_error(" v%td", (char *)v[i] - pool);
        else
            print_error(" %p", v[i]);
    }
    print_error("%s\n", n > 32 ? " ..." : "");
}

/* True when r holds exactly the values want[0..nwant), each once, in any
 * order; otherwise prints both sides under `what`. */
static bool same_values(const sb_sublist_result *r,
                        void *const *want,
                        size_t nwant,
                        const char *what)
{
    void **got, **exp;
    bool ok;

    if (r == NULL) {
        print_error("%s: match returned NULL\n", what);
        return false;
    }
    got = malloc((r->n + 1) * sizeof(*got));
    exp = malloc((nwant + 1) * sizeof(*exp));
    assert_non_null(got);
    assert_non_null(exp);
    if (r->n > 0)
        memcpy(got, r->items, r->n * sizeof(*got));
    if (nwant > 0)
        memcpy(exp, want, nwant * sizeof(*exp));
    qsort(got, r->n, sizeof(*got), cmp_ptr);
    qsort(exp, nwant, sizeof(*exp), cmp_ptr);
    ok = r->n == nwant &&
         (nwant == 0 || memcmp(got, exp, nwant * sizeof(*got)) == 0);
    if (!ok) {
        print_error("%s:\n", what);
        print_values("got", got, r->n);
        print_values("want", exp, nwant);
    }
    free(got);
    free(exp);
    return ok;
}

static int setup(void **state)
{
    *state = sb_sublist_new(16);
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    sb_sublist_free(*state);
    return 0;
}

/* xorshift64: a fixed seed makes every run the same run. */
static uint64_t rnd_state;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

/* ---------------------------------------------------------------------- */
/* Insert, remove, count                                                   */

static void test_sublist_new_free(void **state)
{
    sb_sublist *sl = sb_sublist_new(0);
    const sb_sublist_result *r;
    (void)state;

    assert_non_null(sl);
    assert_int_equal(sb_sublist_count(sl), 0);
    r = match(sl, "a.b");
    assert_non_null(r);
    assert_int_equal(r->n, 0);
    sb_sublist_free(sl);
    sb_sublist_free(NULL);
}

static void test_sublist_insert_remove(void **state)
{
    sb_sublist *sl = *state;

    assert_int_equal(insert(sl, "a.b", V(1)), 0);
    assert_int_equal(sb_sublist_count(sl), 1);
    assert_int_equal(insert(sl, "a.b", V(1)), -EEXIST);
    assert_int_equal(sb_sublist_count(sl), 1);
    assert_int_equal(insert(sl, "a.b", V(2)), 0);
    assert_int_equal(insert(sl, "a.*", V(1)), 0);
    assert_int_equal(insert(sl, "a.>", V(1)), 0);
    assert_int_equal(insert(sl, "a", V(1)), 0);
    assert_int_equal(insert(sl, ">", V(1)), 0);
    assert_int_equal(insert(sl, "*", V(1)), 0);
    assert_int_equal(insert(sl, "*", V(1)), -EEXIST);
    assert_int_equal(insert(sl, ">", V(1)), -EEXIST);
    assert_int_equal(insert(sl, "a.>", V(1)), -EEXIST);
    assert_int_equal(sb_sublist_count(sl), 7);

    /* Absent pairs: unknown pattern, known pattern with another value,
     * prefixes and extensions of stored patterns. */
    assert_int_equal(remove_(sl, "x.y", V(1)), -ENOENT);
    assert_int_equal(remove_(sl, "a.b", V(3)), -ENOENT);
    assert_int_equal(remove_(sl, "a.b.c", V(1)), -ENOENT);
    assert_int_equal(remove_(sl, "a.*.c", V(1)), -ENOENT);
    assert_int_equal(remove_(sl, "a.>", V(2)), -ENOENT);
    assert_int_equal(remove_(sl, "*.>", V(1)), -ENOENT);
    assert_int_equal(remove_(sl, "b", V(1)), -ENOENT);
    assert_int_equal(sb_sublist_count(sl), 7);

    assert_int_equal(remove_(sl, "a.b", V(1)), 0);
    assert_int_equal(remove_(sl, "a.b", V(1)), -ENOENT);
    assert_int_equal(sb_sublist_count(sl), 6);
    assert_true(same_values(match(sl, "a.b"), (void *[]){V(1), V(2)}, 2,
                            "a.b after removing (a.b, v1)"));

    assert_int_equal(remove_(sl, "a.b", V(2)), 0);
    assert_int_equal(remove_(sl, "a.*", V(1)), 0);
    assert_int_equal(remove_(sl, "a.>", V(1)), 0);
    assert_int_equal(remove_(sl, "a", V(1)), 0);
    assert_int_equal(remove_(sl, ">", V(1)), 0);
    assert_int_equal(remove_(sl, "*", V(1)), 0);
    assert_int_equal(sb_sublist_count(sl), 0);
    assert_int_equal(match(sl, "a.b")->n, 0);

    /* The same pair can come back after removal. */
    assert_int_equal(insert(sl, "a.b", V(1)), 0);
    assert_int_equal(remove_(sl, "a.b", V(1)), 0);
}

static void test_sublist_invalid_pattern(void **state)
{
    sb_sublist *sl = *state;
    const char *bad[] = {"",     ".",     "a..b", "a.",  ".a",   "a*",
                         "a.b>", "a.>.c", ">.a",  "a b", "a\tb", "**"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(insert(sl, bad[i], V(1)), -EINVAL);
        assert_int_equal(remove_(sl, bad[i], V(1)), -ENOENT);
    }
    assert_int_equal(sb_sublist_count(sl), 0);
}

/* The values: NULL is as opaque as any other pointer. */
static void test_sublist_null_value(void **state)
{
    sb_sublist *sl = *state;

    assert_int_equal(insert(sl, "a.b", NULL), 0);
    assert_int_equal(insert(sl, "a.b", NULL), -EEXIST);
    assert_int_equal(insert(sl, "a.*", NULL), 0);
    assert_true(same_values(match(sl, "a.b"), (void *[]){NULL}, 1,
                            "NULL under two patterns, few values"));
    /* Enough other values to take the pointer-set path. */
    for (size_t i = 1; i <= 40; i++)
        assert_int_equal(insert(sl, "a.>", V(i)), 0);
    const sb_sublist_result *r = match(sl, "a.b");
    size_t nulls = 0;
    assert_int_equal(r->n, 41);
    for (size_t i = 0; i < r->n; i++)
        nulls += r->items[i] == NULL;
    assert_int_equal(nulls, 1);
    assert_int_equal(remove_(sl, "a.b", NULL), 0);
    assert_int_equal(remove_(sl, "a.*", NULL), 0);
    assert_int_equal(match(sl, "a.b")->n, 40);
}

/* ---------------------------------------------------------------------- */
/* Wildcards                                                               */

struct match_row {
    const char *pattern;
    const char *topic;
    bool match;
};

static const struct match_row match_rows[] = {
    /* protocol.md, section Topics. */
    {"orders.*", "orders.created", true},
    {"orders.*", "orders", false},
    {"orders.*", "orders.eu.created", false},
    {"orders.>", "orders.created", true},
    {"orders.>", "orders.eu.created", true},
    {"orders.>", "orders", false},
    /* Literals. */
    {"a", "a", true},
    {"a", "b", false},
    {"a", "a.b", false},
    {"a.b", "a", false},
    {"a.b", "a.b", true},
    {"a.b", "ab", false},
    {"ab", "a", false},
    {"a", "ab", false},
    /* Wildcards alone. */
    {">", "a", true},
    {">", "a.b.c", true},
    {"*", "a", true},
    {"*", "a.b", false},
    /* '*' in each position. */
    {"*.b", "a.b", true},
    {"*.b", "b", false},
    {"*.b", "a.b.c", false},
    {"a.*.c", "a.b.c", true},
    {"a.*.c", "a.c", false},
    {"a.*.c", "a.b.d", false},
    {"a.*.c", "a.b.b.c", false},
    {"*.*", "a.b", true},
    {"*.*", "a", false},
    {"*.*", "a.b.c", false},
    /* '>' after literals and stars. */
    {"a.>", "a.b", true},
    {"a.>", "a.b.c.d", true},
    {"a.>", "a", false},
    {"a.>", "b.a", false},
    {"*.>", "a", false},
    {"*.>", "a.b", true},
    {"a.*.>", "a.b", false},
    {"a.*.>", "a.b.c", true},
    {"a.b.>", "a.bc.d", false},
    /* UTF-8 tokens. */
    {"ord\xc3\xa9rs.*", "ord\xc3\xa9rs.cr\xc3\xa9\xc3\xa9", true},
    {"ord\xc3\xa9rs.*", "orders.x", false},
};

#define N_MATCH_ROWS (sizeof(match_rows) / sizeof(match_rows[0]))

/* One pattern alone in an index (with and without cache) against one
 * topic, matched twice so that the cached answer is checked too. */
static bool check_match_row(const struct match_row *r)
{
    bool ok = true;
    for (size_t cache = 0; cache <= 16; cache += 16) {
        sb_sublist *sl = sb_sublist_new(cache);
        char what[600];
        assert_non_null(sl);
        assert_int_equal(insert(sl, r->pattern, V(7)), 0);
        snprintf(what, sizeof(what), "row \"%s\" ~ \"%s\" (cache %zu)",
                 r->pattern, r->topic, cache);
        for (int round = 0; round < 2; round++)
            ok &= same_values(match(sl, r->topic), (void *[]){V(7)},
                              r->match ? 1 : 0, what);
        sb_sublist_free(sl);
    }
    return ok;
}

static void test_sublist_match_table(void **state)
{
    size_t bad = 0;
    (void)state;
    for (size_t i = 0; i < N_MATCH_ROWS; i++)
        bad += !check_match_row(&match_rows[i]);
    assert_int_equal(bad, 0);
}

/* Brute force: every value whose pattern matches t, each once. */
static size_t brute_force(const char *const *patterns,
                          void *const *values,
                          size_t n,
                          const char *t,
                          void **out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!sb_topic_match(patterns[i], strlen(patterns[i]), t, strlen(t)))
            continue;
        size_t j = 0;
        while (j < k && out[j] != values[i])
            j++;
        if (j == k)
            out[k++] = values[i];
    }
    return k;
}

/* All the patterns of the table in one index, one value each, against all
 * the topics: the branches must not leak into each other. */
static void test_sublist_match_table_together(void **state)
{
    sb_sublist *sl = *state;
    const char *pats[N_MATCH_ROWS];
    void *vals[N_MATCH_ROWS], *want[N_MATCH_ROWS];
    size_t np = 0, bad = 0;

    for (size_t i = 0; i < N_MATCH_ROWS; i++) {
        int rc = insert(sl, match_rows[i].pattern, V(i));
        assert_true(rc == 0 || rc == -EEXIST);
        if (rc == 0) {
            pats[np] = match_rows[i].pattern;
            vals[np++] = V(i);
        }
    }
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < N_MATCH_ROWS; i++) {
            const char *t = match_rows[i].topic;
            size_t nw = brute_force(pats, vals, np, t, want);
            bad += !same_values(match(sl, t), want, nw, t);
        }
    }
    assert_int_equal(bad, 0);
}

/* ---------------------------------------------------------------------- */
/* Each value once                                                         */

static void test_sublist_value_once(void **state)
{
    sb_sublist *sl = *state;

    /* v1 under every pattern that matches "a.b", v2 under one. */
    const char *pats[] = {"a.b", "a.*", "a.>", ">", "*.b", "*.*", "*.>"};
    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++)
        assert_int_equal(insert(sl, pats[i], V(1)), 0);
    assert_int_equal(insert(sl, "a.b", V(2)), 0);
    for (int round = 0; round < 2; round++) {
        assert_true(same_values(match(sl, "a.b"), (void *[]){V(1), V(2)}, 2,
                                "a.b: v1 under 7 patterns, v2 under 1"));
        assert_true(same_values(match(sl, "a.c"), (void *[]){V(1)}, 1,
                                "a.c: v1 under 5 matching patterns"));
        assert_true(same_values(match(sl, "x"), (void *[]){V(1)}, 1,
                                "x: v1 under '>'"));
    }
}

/* Many values under several patterns each, past the linear dedupe. */
static void test_sublist_value_once_many(void **state)
{
    sb_sublist *sl = *state;
    void *want[300];

    for (size_t i = 0; i < 300; i++) {
        assert_int_equal(insert(sl, "x.y", V(i)), 0);
        if (i % 2 == 0)
            assert_int_equal(insert(sl, "x.*", V(i)), 0);
        if (i % 3 == 0)
            assert_int_equal(insert(sl, "x.>", V(i)), 0);
        if (i % 5 == 0)
            assert_int_equal(insert(sl, ">", V(i)), 0);
        want[i] = V(i);
    }
    assert_int_equal(insert(sl, "*.y", V(1000)), 0);
    /* v299 is under "x.y" only; v1000 takes its place. */
    assert_int_equal(remove_(sl, "x.y", V(299)), 0);
    want[299] = V(1000);
    assert_true(same_values(match(sl, "x.y"), want, 300,
                            "x.y, 300 values, 4 patterns each at most"));
}

/* ---------------------------------------------------------------------- */
/* The cache                                                               */

static void test_sublist_cache_follows_changes(void **state)
{
    sb_sublist *sl = *state;

    assert_int_equal(match(sl, "a.b")->n, 0);
    assert_int_equal(match(sl, "a.b")->n, 0);
    assert_int_equal(insert(sl, "a.*", V(1)), 0);
    assert_true(
        same_values(match(sl, "a.b"), (void *[]){V(1)}, 1, "after insert a.*"));
    assert_true(same_values(match(sl, "a.b"), (void *[]){V(1)}, 1,
                            "after insert a.*, again"));
    assert_int_equal(insert(sl, "a.b", V(2)), 0);
    assert_true(same_values(match(sl, "a.b"), (void *[]){V(1), V(2)}, 2,
                            "after insert a.b"));
    /* A failed insert or remove changes nothing. */
    assert_int_equal(insert(sl, "a.b", V(2)), -EEXIST);
    assert_int_equal(remove_(sl, "a.c", V(2)), -ENOENT);
    assert_true(same_values(match(sl, "a.b"), (void *[]){V(1), V(2)}, 2,
                            "after a failed insert and remove"));
    assert_int_equal(insert(sl, "x.y", V(3)), 0); /* unrelated pattern */
    assert_true(same_values(match(sl, "a.b"), (void *[]){V(1), V(2)}, 2,
                            "after an unrelated insert"));
    assert_int_equal(remove_(sl, "a.*", V(1)), 0);
    assert_true(
        same_values(match(sl, "a.b"), (void *[]){V(2)}, 1, "after remove a.*"));
    assert_int_equal(remove_(sl, "a.b", V(2)), 0);
    assert_int_equal(match(sl, "a.b")->n, 0);
    assert_int_equal(insert(sl, ">", V(4)), 0);
    assert_true(
        same_values(match(sl, "a.b"), (void *[]){V(4)}, 1, "after insert >"));
}

/* Far more topics than cache entries: evictions must not lose or mix up
 * results, and changes must reach evicted and resident topics alike. */
static void test_sublist_cache_eviction(void **state)
{
    sb_sublist *sl = sb_sublist_new(4);
    char t[32];
    (void)state;

    assert_non_null(sl);
    assert_int_equal(insert(sl, "t.*", V(1)), 0);
    assert_int_equal(insert(sl, "t.7", V(2)), 0);
    for (int round = 0; round < 6; round++) {
        if (round == 3)
            assert_int_equal(insert(sl, "t.>", V(3)), 0);
        if (round == 5)
            assert_int_equal(remove_(sl, "t.*", V(1)), 0);
        for (int i = 0; i < 50; i++) {
            void *want[3];
            size_t n = 0;
            snprintf(t, sizeof(t), "t.%d", i);
            if (round < 5)
                want[n++] = V(1);
            if (i == 7)
                want[n++] = V(2);
            if (round >= 3)
                want[n++] = V(3);
            assert_true(same_values(match(sl, t), want, n, t));
            assert_true(same_values(match(sl, t), want, n, t)); /* a hit */
        }
    }
    sb_sublist_free(sl);
}

/* Results grow past what the cache keeps (1024 values) and shrink back:
 * every answer stays exact, cached or not. */
static void test_sublist_cache_large_results(void **state)
{
    sb_sublist *sl = *state;
    static const size_t targets[] = {1000, 1100, 1500, 900, 1024, 1025, 0};
    static void *want[1500];
    size_t n = 0;

    for (size_t k = 0; k < sizeof(targets) / sizeof(targets[0]); k++) {
        while (n < targets[k]) {
            assert_int_equal(insert(sl, "big.>", V(n)), 0);
            want[n] = V(n);
            n++;
        }
        while (n > targets[k]) {
            n--;
            assert_int_equal(remove_(sl, "big.>", V(n)), 0);
        }
        for (int round = 0; round < 3; round++)
            assert_true(same_values(match(sl, "big.x"), want, n, "big.x"));
    }
}

/* ---------------------------------------------------------------------- */
/* Pruning and memory                                                      */

/* Pattern number i of shape s, for the pruning test. */
static void shape(char *p, size_t size, size_t s, int i)
{
    switch (s) {
    case 0:
        snprintf(p, size, "a.%d.c.d.e", i);
        break;
    case 1:
        snprintf(p, size, "%d", i);
        break;
    case 2:
        snprintf(p, size, "x.*.%d.>", i);
        break;
    case 3:
        snprintf(p, size, "*.%d", i);
        break;
    default:
        snprintf(p, size, "q.%d.>", i);
        break;
    }
}

static void test_sublist_prune(void **state)
{
    sb_sublist *sl = sb_sublist_new(0); /* no cache: nothing else allocates */
    char p[64];
    (void)state;

    assert_non_null(sl);
#ifdef COUNT_ALLOCS
    long before = live_blocks;
#endif
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 1000; i++) {
            for (size_t s = 0; s < 5; s++) {
                shape(p, sizeof(p), s, i);
                assert_int_equal(insert(sl, p, V(i % 7)), 0);
                assert_int_equal(insert(sl, p, V(100)), 0);
            }
        }
        assert_int_equal(sb_sublist_count(sl), 10000);
        /* Remove in another order than inserted. */
        for (int i = 999; i >= 0; i--) {
            for (size_t s = 0; s < 5; s++) {
                shape(p, sizeof(p), s, i);
                assert_int_equal(remove_(sl, p, V(100)), 0);
                assert_int_equal(remove_(sl, p, V(i % 7)), 0);
                assert_int_equal(remove_(sl, p, V(i % 7)), -ENOENT);
            }
        }
        assert_int_equal(sb_sublist_count(sl), 0);
#ifdef COUNT_ALLOCS
        /* Every node, table and array is gone again. */
        if (interposed())
            assert_int_equal(live_blocks, before);
#endif
    }
    sb_sublist_free(sl);
}

#ifdef COUNT_ALLOCS
/* Fail each allocation of an insert in turn: the insert reports -ENOMEM,
 * the index and its memory are as before, and then the insert succeeds.
 * The patterns cover new branches, wildcard nodes, and (the last one) the
 * first value of an existing inner node while the pair table must grow. */
static void test_sublist_enomem_insert(void **state)
{
    sb_sublist *sl = *state;
    const char *pats[] = {"a.x.y.*.>", "a.b.c", "c.d", "e",
                          "f.>",       "g.*",   "h",   "a"};
    int failures = 0;

    if (!interposed())
        skip();
    assert_int_equal(insert(sl, "a.b", V(1)), 0);
    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
        for (long k = 0;; k++) {
            long before = live_blocks;
            fail_countdown = k;
            int rc = insert(sl, pats[i], V(10 + i));
            fail_countdown = -1;
            if (rc == 0)
                break;
            assert_int_equal(rc, -ENOMEM);
            assert_int_equal(live_blocks, before);
            assert_int_equal(sb_sublist_count(sl), i + 1);
            assert_true(same_values(match(sl, "a.b"), (void *[]){V(1)}, 1,
                                    "a.b after a failed insert"));
            failures++;
        }
        assert_int_equal(sb_sublist_count(sl), i + 2);
    }
    assert_true(failures >= 12);
    assert_true(same_values(match(sl, "a.x.y.z.w"), (void *[]){V(10)}, 1,
                            "after the inserts succeeded"));
    assert_true(
        same_values(match(sl, "a"), (void *[]){V(17)}, 1, "the last insert"));
}

/* Match "m.n" in a fresh index holding `nvals` values under both "m.*" and
 * "m.>", failing its k-th allocation. With `refill`, the topic is cached
 * first and then one more value subscribed, so that the match recomputes
 * the stale entry and must grow it. Returns whether an allocation failed. */
static bool match_failing_at(long k, size_t nvals, bool refill)
{
    sb_sublist *sl = sb_sublist_new(16);
    void *want[64];
    size_t n = 0;

    assert_non_null(sl);
    for (; n < nvals; n++) {
        assert_int_equal(insert(sl, "m.*", V(n)), 0);
        assert_int_equal(insert(sl, "m.>", V(n)), 0);
        want[n] = V(n);
    }
    if (refill) {
        assert_true(same_values(match(sl, "m.n"), want, n, "m.n, cached"));
        assert_int_equal(insert(sl, "m.*", V(n)), 0);
        want[n] = V(n);
        n++;
    }
    fail_countdown = k;
    const sb_sublist_result *r = match(sl, "m.n");
    bool failed = fail_countdown < 0;
    fail_countdown = -1;
    /* NULL or complete, never partial; and the next match is complete. */
    if (r != NULL)
        assert_true(same_values(r, want, n, "m.n under ENOMEM"));
    assert_true(same_values(match(sl, "m.n"), want, n, "m.n afterwards"));
    assert_true(same_values(match(sl, "m.n"), want, n, "m.n, again"));
    sb_sublist_free(sl);
    return failed;
}

/* Fail each allocation of a match in turn (scratch arrays, dedupe set,
 * cache table, cache entry, entry refill). */
static void test_sublist_enomem_match(void **state)
{
    (void)state;
    if (!interposed())
        skip();
    for (size_t nvals = 3; nvals <= 40; nvals += 37) {
        for (int refill = 0; refill <= 1; refill++) {
            long k = 0;
            while (match_failing_at(k, nvals, refill))
                k++;
            assert_true(k >= (refill ? 1 : 4));
        }
    }
}
#else
static void test_sublist_enomem_insert(void **state)
{
    (void)state;
    skip();
}

static void test_sublist_enomem_match(void **state)
{
    (void)state;
    skip();
}
#endif

/* ---------------------------------------------------------------------- */
/* Randomized against brute force                                          */

#define R_MAX_PAIRS 4000
#define R_VALUES 48

struct model {
    char pat[R_MAX_PAIRS][16];
    const char *pp[R_MAX_PAIRS];
    void *val[R_MAX_PAIRS];
    size_t n;
};

static void random_pattern(char *out)
{
    static const char *const mid[] = {"a", "b", "c", "*"};
    static const char *const last[] = {"a", "b", "c", "*", ">"};
    size_t ntok = 1 + rnd_below(4);
    out[0] = '\0';
    for (size_t i = 0; i < ntok; i++) {
        if (i > 0)
            strcat(out, ".");
        strcat(out, i + 1 < ntok ? mid[rnd_below(4)] : last[rnd_below(5)]);
    }
}

static void random_topic(char *out)
{
    static const char *const tok[] = {"a", "b", "c", "d"};
    size_t ntok = 1 + rnd_below(5);
    out[0] = '\0';
    for (size_t i = 0; i < ntok; i++) {
        if (i > 0)
            strcat(out, ".");
        strcat(out, tok[rnd_below(4)]);
    }
}

static size_t model_find(const struct model *m, const char *p, void *v)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->val[i] == v && strcmp(m->pat[i], p) == 0)
            return i;
    }
    return SIZE_MAX;
}

static void model_del(struct model *m, size_t i)
{
    m->n--;
    memcpy(m->pat[i], m->pat[m->n], sizeof(m->pat[i]));
    m->val[i] = m->val[m->n];
}

static bool check_topic(sb_sublist *sl, struct model *m, const char *t)
{
    static void *want[R_VALUES];
    for (size_t i = 0; i < m->n; i++)
        m->pp[i] = m->pat[i];
    size_t nw = brute_force(m->pp, m->val, m->n, t, want);
    return same_values(match(sl, t), want, nw, t);
}

static void random_run(size_t cache_max)
{
    static const char *const hot[] = {"a", "a.b", "b.c.d", "a.a.a.a.a"};
    static struct model m;
    sb_sublist *sl = sb_sublist_new(cache_max);
    char p[16], t[16];
    size_t inserted = 0, bad = 0;

    assert_non_null(sl);
    rnd_state = 0x9e3779b97f4a7c15ULL;
    m.n = 0;
    /* Grow to 2000 pairs with removes and matches interleaved. */
    while (inserted < 2000) {
        size_t op = rnd_below(100);
        void *v = V(rnd_below(R_VALUES));
        if (op < 55) {
            random_pattern(p);
            size_t at = model_find(&m, p, v);
            int rc = insert(sl, p, v);
            assert_int_equal(rc, at == SIZE_MAX ? 0 : -EEXIST);
            if (rc == 0) {
                strcpy(m.pat[m.n], p);
                m.val[m.n++] = v;
                inserted++;
            }
        } else if (op < 70 && m.n > 0) {
            /* Either a stored pair or a random, probably absent one. */
            size_t at = rnd_below(m.n);
            if (rnd_below(2)) {
                random_pattern(p);
                at = model_find(&m, p, v);
            } else {
                strcpy(p, m.pat[at]);
                v = m.val[at];
            }
            assert_int_equal(remove_(sl, p, v), at == SIZE_MAX ? -ENOENT : 0);
            if (at != SIZE_MAX)
                model_del(&m, at);
        } else {
            random_topic(t);
            bad += !check_topic(sl, &m, t);
            bad += !check_topic(sl, &m, hot[rnd_below(4)]);
        }
        assert_int_equal(sb_sublist_count(sl), m.n);
    }
    /* Then remove everything, still matching along the way. */
    while (m.n > 0) {
        size_t at = rnd_below(m.n);
        assert_int_equal(remove_(sl, m.pat[at], m.val[at]), 0);
        model_del(&m, at);
        assert_int_equal(sb_sublist_count(sl), m.n);
        if (rnd_below(4) == 0) {
            random_topic(t);
            bad += !check_topic(sl, &m, t);
            bad += !check_topic(sl, &m, hot[rnd_below(4)]);
        }
    }
    assert_int_equal(match(sl, "a.b")->n, 0);
    assert_int_equal(bad, 0);
    sb_sublist_free(sl);
}

static void test_sublist_random_no_cache(void **state)
{
    (void)state;
    random_run(0);
}

static void test_sublist_random_small_cache(void **state)
{
    (void)state;
    random_run(32);
}

static void test_sublist_random_large_cache(void **state)
{
    (void)state;
    random_run(100000);
}

/* ---------------------------------------------------------------------- */
/* Scale                                                                   */

/* 10,000 subscriptions and 100,000 distinct topics, each result known:
 * "svc.<i>.>" holds v<i> and "*.<j>.evt" holds v<5000 + j>. */
static void test_sublist_scale(void **state)
{
    sb_sublist *sl = sb_sublist_new(4096);
    char s[64];
    size_t bad = 0;
    (void)state;

    assert_non_null(sl);
    for (int i = 0; i < 5000; i++) {
        snprintf(s, sizeof(s), "svc.%d.>", i);
        assert_int_equal(insert(sl, s, V(i)), 0);
        snprintf(s, sizeof(s), "*.%d.evt", i);
        assert_int_equal(insert(sl, s, V(5000 + i)), 0);
    }
    assert_int_equal(sb_sublist_count(sl), 10000);
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 100000; k++) {
            int i = k % 7919, j = k / 7919;
            void *want[2];
            size_t n = 0;
            snprintf(s, sizeof(s), "svc.%d.evt.%d", i, j);
            if (i < 5000)
                want[n++] = V(i);
            bad += !same_values(match(sl, s), want, n, s);
            if (k % 10 == 0) {
                snprintf(s, sizeof(s), "svc.%d.evt", i);
                n = 0;
                if (i < 5000)
                    want[n++] = V(i);
                if (i < 5000)
                    want[n++] = V(5000 + i);
                bad += !same_values(match(sl, s), want, n, s);
            }
        }
    }
    assert_int_equal(bad, 0);
    for (int i = 0; i < 5000; i++) {
        snprintf(s, sizeof(s), "svc.%d.>", i);
        assert_int_equal(remove_(sl, s, V(i)), 0);
        snprintf(s, sizeof(s), "*.%d.evt", i);
        assert_int_equal(remove_(sl, s, V(5000 + i)), 0);
    }
    assert_int_equal(sb_sublist_count(sl), 0);
    sb_sublist_free(sl);
}

/* 10,000 subscribers of one pattern: inserts and removes stay cheap, and
 * results stay exact as they leave in random order. */
static void test_sublist_one_pattern_many_values(void **state)
{
    sb_sublist *sl = *state;
    static void *vals[10000];
    size_t n = 10000;

    rnd_state = 42;
    for (size_t i = 0; i < n; i++) {
        vals[i] = V(i);
        assert_int_equal(insert(sl, "news.>", vals[i]), 0);
    }
    assert_int_equal(insert(sl, "news.>", V(77)), -EEXIST);
    while (n > 0) {
        size_t at = rnd_below(n);
        assert_int_equal(remove_(sl, "news.>", vals[at]), 0);
        vals[at] = vals[--n];
        if (n % 1000 == 0)
            assert_true(
                same_values(match(sl, "news.today"), vals, n, "news.today"));
    }
    assert_int_equal(sb_sublist_count(sl), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sublist_new_free),
        cmocka_unit_test_setup_teardown(test_sublist_insert_remove, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sublist_invalid_pattern, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sublist_null_value, setup,
                                        teardown),
        cmocka_unit_test(test_sublist_match_table),
        cmocka_unit_test_setup_teardown(test_sublist_match_table_together,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sublist_value_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sublist_value_once_many, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sublist_cache_follows_changes,
                                        setup, teardown),
        cmocka_unit_test(test_sublist_cache_eviction),
        cmocka_unit_test_setup_teardown(test_sublist_cache_large_results, setup,
                                        teardown),
        cmocka_unit_test(test_sublist_prune),
        cmocka_unit_test_setup_teardown(test_sublist_enomem_insert, setup,
                                        teardown),
        cmocka_unit_test(test_sublist_enomem_match),
        cmocka_unit_test(test_sublist_random_no_cache),
        cmocka_unit_test(test_sublist_random_small_cache),
        cmocka_unit_test(test_sublist_random_large_cache),
        cmocka_unit_test(test_sublist_scale),
        cmocka_unit_test_setup_teardown(test_sublist_one_pattern_many_values,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("sublist", tests, NULL, NULL);
}
