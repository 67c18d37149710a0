/* sublist.c - the subscription index.
 *
 * Threads: none of its own. Everything here belongs to the bus thread, which
 * is the only caller (see sublist.h), so there are no locks.
 *
 * Shape. A trie with one level per pattern token. Each node has:
 * - `kids`, an open-addressing hash table (linear probing, power-of-two size,
 *   at most 3/4 full) of literal-token children. Nodes keep their token and
 *   its hash, so a probe compares a 64-bit hash before touching a node;
 * - `star` and `gt`, the children for the wildcard tokens '*' and '>';
 * - `vals`, the values of the patterns that end at this node. A pattern
 *   ending in '>' keeps its values on its '>' node, which is always a leaf.
 * A match walks the topic tokens, following the literal child and the '*'
 * child, and at each level collecting the '>' child's values; the '*' branch
 * is the only recursion, so the depth is bounded by the number of tokens
 * (128 in a valid topic). The topic is trusted to be valid, as the header
 * says; only its length is checked, because the token arrays are sized by
 * it, so an unchecked topic can give a wrong answer but never a crash.
 *
 * Pairs. Every (node, value) pair is also in one table, `pairs`, which maps
 * it to the value's position in node->vals. Duplicate checks and removal are
 * O(1) then, even when thousands of subscribers share one pattern; removal
 * fills the hole with the last value (order within a node does not matter).
 *
 * Results. A match collects the nodes whose values it wants (`hits`), then
 * copies their values into one scratch array. When more than one node
 * contributed, a value may appear twice (one client, two patterns), so the
 * copy is deduplicated: by comparing each to each for a few values, through
 * a pointer set reused from call to call for more. Scratch arrays only grow,
 * so a steady workload stops allocating.
 *
 * Cache. Topic -> result, in an open-addressing table of at most cache_max
 * entries. Each entry is one allocation: header, topic bytes, result items.
 * An entry records the generation it was computed in; any insert or remove
 * bumps the generation, which invalidates every entry at once in O(1). A
 * stale entry is recomputed in place when its topic comes again, reusing its
 * memory; when the table is full a random entry is evicted and its memory
 * reused. The steady-state hit path is one hash of the topic, one probe and
 * one memcmp, with no allocation. Very large results are not cached (see
 * CACHE_ITEMS_MAX), so that the cache is bounded in bytes as well.
 *
 * Pruning. A node with no values and no children is freed as soon as it
 * becomes so, bottom-up, and emptied tables and arrays are freed or shrunk,
 * so memory follows the number of subscriptions down. The cache and the match
 * scratch arrays are bounded and stay.
 *
 * Hashing. Topics come from clients, so hashes are seeded per index (from
 * getrandom()) to make collision floods of a node's children or of the
 * cache hard to plan. */
#include "sublist.h"

#include "topic.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

enum node_kind { KIND_ROOT, KIND_LITERAL, KIND_STAR, KIND_GT };

/* A slot of the kids and cache tables; `p` NULL marks an empty slot. */
typedef struct hslot {
    uint64_t hash;
    void *p;
} hslot;

typedef struct node {
    struct node *parent;
    hslot *kids; /* literal children (node *), NULL when there are none */
    uint32_t nkids;
    uint32_t kcap;
    struct node *star;
    struct node *gt;
    void **vals; /* values of the patterns ending here */
    uint32_t nvals;
    uint32_t vcap;
    uint64_t hash; /* hash of tok */
    uint8_t kind;
    uint8_t toklen;
    char tok[]; /* the literal token, not NUL-terminated */
} node;

typedef struct pair_slot {
    node *node; /* NULL marks an empty slot */
    void *value;
    uint32_t idx; /* position of value in node->vals */
} pair_slot;

/* One cached result. The block continues with the topic (tlen bytes, padded
 * to a pointer) and then the res.n items, which res.items points at. */
typedef struct centry {
    sb_sublist_result res;
    uint64_t gen;
    size_t size; /* bytes in the block */
    uint32_t tlen;
} centry;

/* Up to this many values are deduplicated by comparing each to each; more
 * go through the pointer set. */
#define DEDUPE_LINEAR_MAX 16

/* Results with more values than this are not cached. cache_max bounds the
 * entries, this bounds each one, so the cache stays under cache_max * 8 KiB
 * of items even when thousands of clients subscribe to '>'. Little is lost:
 * a match costs a few ns per value, and delivering each value costs more. */
#define CACHE_ITEMS_MAX 1024

struct sb_sublist {
    node *root;
    size_t count; /* (pattern, value) pairs */
    uint64_t seed;
    uint64_t gen;
    uint64_t rng;

    pair_slot *pairs;
    size_t pcap;

    hslot *cache; /* centry *, at most cache_max of them */
    size_t ccap;
    size_t cn;
    size_t cache_max;
    size_t cache_cap_max; /* table size that keeps cache_max at load 1/2 */

    const node **hits; /* scratch of a match: nodes that contribute */
    size_t nhits;
    size_t hcap;
    void **buf; /* scratch of a match: the result items */
    size_t bcap;
    void **set; /* scratch of a match: the dedupe set */
    size_t scap;
    sb_sublist_result res; /* the result when it is not cached */
};

/* Tokens of a topic being matched, with their hashes computed once. */
typedef struct toks {
    const char *base;
    size_t n;
    uint8_t off[SB_TOPIC_MAX + 1];
    uint8_t len[SB_TOPIC_MAX + 1];
    uint64_t hash[SB_TOPIC_MAX + 1];
} toks;

/* ---------------------------------------------------------------------- */
/* Hashing                                                                 */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_step(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9fb21c651e98df25ULL;
    return h ^ (h >> 29);
}

/* Eight bytes at a time; topics are short, so this stays a few dozen
 * cycles, and the final mix spreads every input bit to the low bits used
 * as table indexes. The last partial word is read with whole loads that
 * overlap bytes already read (the length is in the seed, so this is still
 * a function of every byte): copying it byte by byte into a word would
 * cost a store-forwarding stall on every call. */
static uint64_t hash_bytes(uint64_t seed, const char *s, size_t len)
{
    const char *end = s + len;
    uint64_t h = seed ^ ((uint64_t)len * 0x9e3779b97f4a7c15ULL);
    uint64_t w = 0;

    if (len >= 8) {
        for (; end - s > 8; s += 8) {
            memcpy(&w, s, 8);
            h = hash_step(h, w);
        }
        memcpy(&w, end - 8, 8);
    } else if (len >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, end - 4, 4);
        w = (uint64_t)a << 32 | b;
    } else if (len > 0) {
        w = (uint64_t)(unsigned char)s[0] << 16 |
            (uint64_t)(unsigned char)s[len / 2] << 8 | (unsigned char)end[-1];
    }
    return mix64(hash_step(h, w));
}

static uint64_t hash_pair(const node *n, const void *value)
{
    return mix64((uint64_t)(uintptr_t)n * 0x9e3779b97f4a7c15ULL ^
                 (uint64_t)(uintptr_t)value);
}

static uint64_t next_random(sb_sublist *sl)
{
    /* xorshift64: enough to pick cache victims. */
    sl->rng ^= sl->rng << 13;
    sl->rng ^= sl->rng >> 7;
    sl->rng ^= sl->rng << 17;
    return sl->rng;
}

static uint64_t make_seed(const void *salt)
{
    uint64_t seed = 0;
    struct timespec ts;

    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
        return seed;
    /* Without entropy yet, fall back to what differs from run to run. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return mix64((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^
                 (uint64_t)(uintptr_t)salt);
}

/* Smallest power of two >= n (n >= 1, and small enough not to overflow). */
static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* ---------------------------------------------------------------------- */
/* Open-addressing slots shared by the kids and cache tables               */

/* Put p in the first free slot of its probe sequence; the table has room. */
static void hslot_put(hslot *t, size_t cap, uint64_t hash, void *p)
{
    size_t mask = cap - 1;
    size_t i = (size_t)hash & mask;
    while (t[i].p != NULL)
        i = (i + 1) & mask;
    t[i].hash = hash;
    t[i].p = p;
}

/* Empty slot i and shift later members of its run back, so that no probe
 * sequence crosses a hole (no tombstones needed). */
static void hslot_del(hslot *t, size_t cap, size_t i)
{
    size_t mask = cap - 1;
    for (size_t j = (i + 1) & mask; t[j].p != NULL; j = (j + 1) & mask) {
        size_t home = (size_t)t[j].hash & mask;
        /* The member at j may move to i when i lies on its probe path. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t[i] = t[j];
            i = j;
        }
    }
    t[i].p = NULL;
}

/* Rehash into a table of newcap slots. Returns 0 or -ENOMEM (t unchanged). */
static int hslot_resize(hslot **t, size_t cap, size_t newcap)
{
    hslot *nt = calloc(newcap, sizeof(*nt));
    if (nt == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++) {
        if ((*t)[i].p != NULL)
            hslot_put(nt, newcap, (*t)[i].hash, (*t)[i].p);
    }
    free(*t);
    *t = nt;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Trie nodes                                                              */

static node *
node_new(node *parent, uint8_t kind, const char *tok, size_t len, uint64_t hash)
{
    node *n = calloc(1, sizeof(*n) + len);
    if (n == NULL)
        return NULL;
    n->parent = parent;
    n->kind = kind;
    n->hash = hash;
    n->toklen = (uint8_t)len;
    if (len > 0)
        memcpy(n->tok, tok, len);
    return n;
}

static void node_free_tree(node *n)
{
    if (n == NULL)
        return;
    for (uint32_t i = 0; i < n->kcap; i++)
        node_free_tree(n->kids[i].p);
    node_free_tree(n->star);
    node_free_tree(n->gt);
    free(n->kids);
    free(n->vals);
    free(n);
}

static node *kid_find(const node *n, const char *tok, size_t len, uint64_t hash)
{
    size_t mask = (size_t)n->kcap - 1;

    if (n->kcap == 0)
        return NULL;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        node *k = n->kids[i].p;
        if (k == NULL)
            return NULL;
        if (n->kids[i].hash == hash && k->toklen == len &&
            memcmp(k->tok, tok, len) == 0)
            return k;
    }
}

/* Add the literal child k, growing the table first when it would pass 3/4
 * full. Returns 0 or -ENOMEM. */
static int kid_add(node *n, node *k)
{
    if ((n->nkids + 1) * 4 > n->kcap * 3) {
        uint32_t newcap = n->kcap ? n->kcap * 2 : 4;
        if (n->kcap >= UINT32_MAX / 2 ||
            hslot_resize(&n->kids, n->kcap, newcap) != 0)
            return -ENOMEM;
        n->kcap = newcap;
    }
    hslot_put(n->kids, n->kcap, k->hash, k);
    n->nkids++;
    return 0;
}

static void kid_del(node *n, const node *k)
{
    size_t mask = (size_t)n->kcap - 1;
    size_t i = (size_t)k->hash & mask;

    while (n->kids[i].p != k)
        i = (i + 1) & mask;
    hslot_del(n->kids, n->kcap, i);
    n->nkids--;
    if (n->nkids == 0) {
        free(n->kids);
        n->kids = NULL;
        n->kcap = 0;
    } else if (n->kcap > 4 && n->nkids * 8 < n->kcap) {
        /* Shrinking is optional: on ENOMEM the larger table stays. */
        if (hslot_resize(&n->kids, n->kcap, n->kcap / 2) == 0)
            n->kcap /= 2;
    }
}

static bool node_empty(const node *n)
{
    return n->nvals == 0 && n->nkids == 0 && n->star == NULL && n->gt == NULL;
}

/* Free n and then each ancestor that is left empty, stopping at the root. */
static void prune(sb_sublist *sl, node *n)
{
    while (n != sl->root && node_empty(n)) {
        node *parent = n->parent;
        if (n->kind == KIND_STAR)
            parent->star = NULL;
        else if (n->kind == KIND_GT)
            parent->gt = NULL;
        else
            kid_del(parent, n);
        node_free_tree(n);
        n = parent;
    }
}

/* The child of n for one pattern token, created when `create` is set.
 * Returns NULL when absent, or on ENOMEM when creating. */
static node *
child(sb_sublist *sl, node *n, const char *tok, size_t len, bool create)
{
    node **wild = NULL;
    node *k;

    if (len == 1 && tok[0] == '*')
        wild = &n->star;
    else if (len == 1 && tok[0] == '>')
        wild = &n->gt;
    if (wild != NULL) {
        if (*wild == NULL && create)
            *wild =
                node_new(n, tok[0] == '*' ? KIND_STAR : KIND_GT, NULL, 0, 0);
        return *wild;
    }
    uint64_t hash = hash_bytes(sl->seed, tok, len);
    k = kid_find(n, tok, len, hash);
    if (k != NULL || !create)
        return k;
    k = node_new(n, KIND_LITERAL, tok, len, hash);
    if (k != NULL && kid_add(n, k) != 0) {
        free(k);
        k = NULL;
    }
    return k;
}

/* The node of a valid pattern, creating the path when `create` is set.
 * Returns NULL when absent; when creating, NULL is ENOMEM, after pruning
 * whatever part of the path this call created. */
static node *
pattern_node(sb_sublist *sl, const char *p, size_t len, bool create)
{
    const char *end = p + len;
    node *n = sl->root;

    for (const char *s = p;;) {
        const char *dot = memchr(s, '.', (size_t)(end - s));
        size_t tl = (size_t)((dot ? dot : end) - s);
        node *k = child(sl, n, s, tl, create);
        if (k == NULL) {
            if (create)
                prune(sl, n);
            return NULL;
        }
        n = k;
        if (dot == NULL)
            return n;
        s = dot + 1;
    }
}

/* ---------------------------------------------------------------------- */
/* The (node, value) pairs                                                 */

/* Slot holding (n, value), or SIZE_MAX. */
static size_t pair_find(const sb_sublist *sl, const node *n, const void *value)
{
    size_t mask = sl->pcap - 1;

    if (sl->pcap == 0)
        return SIZE_MAX;
    for (size_t i = (size_t)hash_pair(n, value) & mask;; i = (i + 1) & mask) {
        const pair_slot *s = &sl->pairs[i];
        if (s->node == NULL)
            return SIZE_MAX;
        if (s->node == n && s->value == value)
            return i;
    }
}

static void pair_put(pair_slot *t, size_t cap, pair_slot s)
{
    size_t mask = cap - 1;
    size_t i = (size_t)hash_pair(s.node, s.value) & mask;
    while (t[i].node != NULL)
        i = (i + 1) & mask;
    t[i] = s;
}

static int pair_resize(sb_sublist *sl, size_t newcap)
{
    pair_slot *nt = NULL;

    if (newcap > 0) {
        nt = calloc(newcap, sizeof(*nt));
        if (nt == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < sl->pcap; i++) {
            if (sl->pairs[i].node != NULL)
                pair_put(nt, newcap, sl->pairs[i]);
        }
    }
    free(sl->pairs);
    sl->pairs = nt;
    sl->pcap = newcap;
    return 0;
}

/* Make room for one more pair (load at most 1/2). Returns 0 or -ENOMEM. */
static int pair_reserve(sb_sublist *sl)
{
    if ((sl->count + 1) * 2 <= sl->pcap)
        return 0;
    return pair_resize(sl, sl->pcap ? sl->pcap * 2 : 16);
}

static void pair_del(sb_sublist *sl, size_t i)
{
    size_t mask = sl->pcap - 1;
    for (size_t j = (i + 1) & mask; sl->pairs[j].node != NULL;
         j = (j + 1) & mask) {
        size_t home =
            (size_t)hash_pair(sl->pairs[j].node, sl->pairs[j].value) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            sl->pairs[i] = sl->pairs[j];
            i = j;
        }
    }
    sl->pairs[i].node = NULL;
}

/* After a removal: free the table once empty, halve it when sparse. */
static void pair_shrink(sb_sublist *sl)
{
    if (sl->count == 0)
        (void)pair_resize(sl, 0);
    else if (sl->pcap > 16 && sl->count * 8 < sl->pcap)
        (void)pair_resize(sl, sl->pcap / 2); /* optional: ENOMEM keeps it */
}

/* Room for one more value in n->vals. Returns 0 or -ENOMEM. */
static int vals_reserve(node *n)
{
    if (n->nvals < n->vcap)
        return 0;
    if (n->vcap >= UINT32_MAX / 2)
        return -ENOMEM;
    uint32_t newcap = n->vcap ? n->vcap * 2 : 2;
    void **nv = realloc(n->vals, newcap * sizeof(*nv));
    if (nv == NULL)
        return -ENOMEM;
    n->vals = nv;
    n->vcap = newcap;
    return 0;
}

static void vals_shrink(node *n)
{
    if (n->nvals == 0) {
        free(n->vals);
        n->vals = NULL;
        n->vcap = 0;
    } else if (n->vcap > 8 && n->nvals * 4 < n->vcap) {
        void **nv = realloc(n->vals, (n->vcap / 2) * sizeof(*nv));
        if (nv != NULL) {
            n->vals = nv;
            n->vcap /= 2;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Create, insert, remove                                                  */

sb_sublist *sb_sublist_new(size_t cache_max)
{
    sb_sublist *sl = calloc(1, sizeof(*sl));
    if (sl == NULL)
        return NULL;
    sl->root = node_new(NULL, KIND_ROOT, NULL, 0, 0);
    if (sl->root == NULL) {
        free(sl);
        return NULL;
    }
    /* Past a billion entries the bound is no bound; keep the sizes sane. */
    if (cache_max > ((size_t)1 << 30))
        cache_max = (size_t)1 << 30;
    sl->cache_max = cache_max;
    sl->cache_cap_max = cache_max ? pow2_at_least(cache_max * 2) : 0;
    sl->seed = make_seed(sl);
    sl->rng = mix64(sl->seed ^ 0x5851f42d4c957f2dULL) | 1;
    return sl;
}

static void cache_clear(sb_sublist *sl)
{
    for (size_t i = 0; i < sl->ccap; i++)
        free(sl->cache[i].p);
    free(sl->cache);
    sl->cache = NULL;
    sl->ccap = 0;
    sl->cn = 0;
}

void sb_sublist_free(sb_sublist *sl)
{
    if (sl == NULL)
        return;
    node_free_tree(sl->root);
    free(sl->pairs);
    cache_clear(sl);
    free(sl->hits);
    free(sl->buf);
    free(sl->set);
    free(sl);
}

int sb_sublist_insert(sb_sublist *sl, const char *p, size_t len, void *value)
{
    node *n;

    /* A broken pattern would build a branch no topic can reach as the
     * rules say (empty tokens, "a*"): refuse it rather than store it. */
    if (!sb_topic_valid_pattern(p, len))
        return -EINVAL;
    n = pattern_node(sl, p, len, true);
    if (n == NULL)
        return -ENOMEM;
    if (pair_find(sl, n, value) != SIZE_MAX)
        return -EEXIST; /* n holds that pair, so it needs no pruning */
    if (vals_reserve(n) != 0 || pair_reserve(sl) != 0)
        goto fail;
    n->vals[n->nvals] = value;
    pair_put(sl->pairs, sl->pcap,
             (pair_slot){.node = n, .value = value, .idx = n->nvals});
    n->nvals++;
    sl->count++;
    sl->gen++; /* every cached result is stale now */
    return 0;
fail:
    vals_shrink(n); /* frees an array reserved for this value alone */
    prune(sl, n);
    return -ENOMEM;
}

int sb_sublist_remove(sb_sublist *sl, const char *p, size_t len, void *value)
{
    node *n;
    size_t slot;
    uint32_t idx;

    if (!sb_topic_valid_pattern(p, len))
        return -ENOENT;
    n = pattern_node(sl, p, len, false);
    if (n == NULL)
        return -ENOENT;
    slot = pair_find(sl, n, value);
    if (slot == SIZE_MAX)
        return -ENOENT;
    idx = sl->pairs[slot].idx;
    pair_del(sl, slot);
    /* Fill the hole with the last value and record where it went. */
    n->nvals--;
    if (idx != n->nvals) {
        void *moved = n->vals[n->nvals];
        n->vals[idx] = moved;
        sl->pairs[pair_find(sl, n, moved)].idx = idx;
    }
    sl->count--;
    sl->gen++;
    pair_shrink(sl);
    vals_shrink(n);
    prune(sl, n);
    return 0;
}

size_t sb_sublist_count(const sb_sublist *sl)
{
    return sl->count;
}

/* ---------------------------------------------------------------------- */
/* Matching                                                                */

/* Split t (1..SB_TOPIC_MAX bytes) into tokens and hash each one. */
static void split(const sb_sublist *sl, const char *t, size_t len, toks *tk)
{
    const char *end = t + len;

    tk->base = t;
    tk->n = 0;
    for (const char *s = t;; tk->n++) {
        const char *dot = memchr(s, '.', (size_t)(end - s));
        size_t tl = (size_t)((dot ? dot : end) - s);
        tk->off[tk->n] = (uint8_t)(s - t);
        tk->len[tk->n] = (uint8_t)tl;
        tk->hash[tk->n] = hash_bytes(sl->seed, s, tl);
        if (dot == NULL) {
            tk->n++;
            return;
        }
        s = dot + 1;
    }
}

/* Capacity for a scratch array that must hold `need` (> cap): doubling, so
 * that a steady workload stops allocating after its first few matches. */
static size_t grown_cap(size_t cap, size_t need)
{
    size_t c = cap ? cap : 16;
    while (c < need)
        c *= 2;
    return c;
}

static int add_hit(sb_sublist *sl, const node *n)
{
    if (sl->nhits == sl->hcap) {
        size_t cap = grown_cap(sl->hcap, sl->nhits + 1);
        const node **nh = realloc(sl->hits, cap * sizeof(*nh));
        if (nh == NULL)
            return -ENOMEM;
        sl->hits = nh;
        sl->hcap = cap;
    }
    sl->hits[sl->nhits++] = n;
    return 0;
}

/* Collect into sl->hits the nodes under n whose values match the tokens
 * from `level` on. Follows the literal branch in a loop and recurses only
 * into '*'. Returns 0 or -ENOMEM. */
static int walk(sb_sublist *sl, const node *n, const toks *tk, size_t level)
{
    for (;;) {
        if (level == tk->n)
            return n->nvals ? add_hit(sl, n) : 0;
        /* '>' takes the one or more tokens that are left. */
        if (n->gt != NULL && n->gt->nvals && add_hit(sl, n->gt) != 0)
            return -ENOMEM;
        if (n->star != NULL && walk(sl, n->star, tk, level + 1) != 0)
            return -ENOMEM;
        n = kid_find(n, tk->base + tk->off[level], tk->len[level],
                     tk->hash[level]);
        if (n == NULL)
            return 0;
        level++;
    }
}

/* Copy the values of the hit nodes into sl->buf (room for `total`), each
 * once, through an open-addressing pointer set at most half full. Sets *np
 * to the number copied. Returns 0 or -ENOMEM. */
static int dedupe_set(sb_sublist *sl, size_t total, size_t *np)
{
    size_t cap = pow2_at_least(total * 2); /* >= 2, so shift < 64 */
    unsigned shift = 64;
    bool have_null = false;
    size_t n = 0;

    if (cap > sl->scap) {
        void **ns = realloc(sl->set, cap * sizeof(*ns));
        if (ns == NULL)
            return -ENOMEM;
        sl->set = ns;
        sl->scap = cap;
    }
    memset(sl->set, 0, cap * sizeof(*sl->set));
    for (size_t c = cap; c > 1; c >>= 1)
        shift--;
    void **set = sl->set, **out = sl->buf;
    for (size_t i = 0; i < sl->nhits; i++) {
        const node *h = sl->hits[i];
        for (uint32_t k = 0; k < h->nvals; k++) {
            void *v = h->vals[k], *s;
            /* Fibonacci hashing: the top bits of one multiply. */
            size_t j =
                (size_t)(((uint64_t)(uintptr_t)v * 0x9e3779b97f4a7c15ULL) >>
                         shift);
            if (v == NULL) {
                /* NULL marks empty slots, so a NULL value is noted aside. */
                if (!have_null)
                    out[n++] = v;
                have_null = true;
                continue;
            }
            /* Probe to v or to a hole; either way v belongs there. Storing
             * and counting v is then branch-free: whether a value is new is
             * a coin toss that a branch predictor would keep losing. */
            while ((s = set[j]) != NULL && s != v)
                j = (j + 1) & (cap - 1);
            set[j] = v;
            out[n] = v;
            n += s == NULL;
        }
    }
    *np = n;
    return 0;
}

/* Copy the values of the hit nodes into sl->buf, each value once. */
static int gather(sb_sublist *sl)
{
    size_t total = 0, n = 0;

    for (size_t i = 0; i < sl->nhits; i++)
        total += sl->hits[i]->nvals;
    if (total > sl->bcap) {
        size_t cap = grown_cap(sl->bcap, total);
        void **nb = realloc(sl->buf, cap * sizeof(*nb));
        if (nb == NULL)
            return -ENOMEM;
        sl->buf = nb;
        sl->bcap = cap;
    }
    if (sl->nhits == 1) {
        /* One pattern: its values are distinct already. */
        memcpy(sl->buf, sl->hits[0]->vals, total * sizeof(*sl->buf));
        n = total;
    } else if (total <= DEDUPE_LINEAR_MAX) {
        for (size_t i = 0; i < sl->nhits; i++) {
            for (uint32_t k = 0; k < sl->hits[i]->nvals; k++) {
                void *v = sl->hits[i]->vals[k];
                size_t j = 0;
                while (j < n && sl->buf[j] != v)
                    j++;
                if (j == n)
                    sl->buf[n++] = v;
            }
        }
    } else if (dedupe_set(sl, total, &n) != 0) {
        return -ENOMEM;
    }
    sl->res.items = sl->buf;
    sl->res.n = n;
    return 0;
}

/* Match without the cache, into the scratch result. NULL on ENOMEM. */
static const sb_sublist_result *
compute(sb_sublist *sl, const char *t, size_t len)
{
    toks tk;

    split(sl, t, len, &tk);
    sl->nhits = 0;
    if (walk(sl, sl->root, &tk, 0) != 0 || gather(sl) != 0)
        return NULL;
    return &sl->res;
}

/* ---------------------------------------------------------------------- */
/* The match cache                                                         */

static size_t align_ptr(size_t n)
{
    return (n + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
}

static char *centry_topic(centry *e)
{
    return (char *)(e + 1);
}

/* Slot of the entry for t, or SIZE_MAX. */
static size_t
cache_find(const sb_sublist *sl, uint64_t hash, const char *t, size_t len)
{
    size_t mask = sl->ccap - 1;

    if (sl->ccap == 0)
        return SIZE_MAX;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        centry *e = sl->cache[i].p;
        if (e == NULL)
            return SIZE_MAX;
        if (sl->cache[i].hash == hash && e->tlen == len &&
            memcmp(centry_topic(e), t, len) == 0)
            return i;
    }
}

/* Store topic t and result r in e, reallocating it (e may be NULL) when its
 * size is wrong. Returns the entry, or NULL on ENOMEM with e untouched. */
static centry *centry_fill(centry *e,
                           const char *t,
                           size_t len,
                           const sb_sublist_result *r,
                           uint64_t gen)
{
    size_t items_off = sizeof(*e) + align_ptr(len);
    size_t need = items_off + r->n * sizeof(void *);

    /* Reuse the block, an evicted entry's too, when it is large enough and
     * not far too large: a cache that churns then stops allocating. */
    if (e == NULL || e->size < need || e->size > 2 * need + 256) {
        centry *ne = realloc(e, need);
        if (ne == NULL)
            return NULL;
        e = ne;
        e->size = need;
    }
    e->tlen = (uint32_t)len;
    memcpy(centry_topic(e), t, len);
    e->res.items = (void **)((char *)e + items_off);
    e->res.n = r->n;
    if (r->n > 0)
        memcpy(e->res.items, r->items, r->n * sizeof(void *));
    e->gen = gen;
    return e;
}

/* Take one entry out of the full table, at random, for reuse. */
static centry *cache_evict(sb_sublist *sl)
{
    size_t mask = sl->ccap - 1;
    size_t i = (size_t)next_random(sl) & mask;
    centry *e;

    while (sl->cache[i].p == NULL)
        i = (i + 1) & mask;
    e = sl->cache[i].p;
    hslot_del(sl->cache, sl->ccap, i);
    sl->cn--;
    return e;
}

/* Cache the fresh result r for t. Returns what the caller should hand out:
 * the cached copy, or r itself when the cache could not take it. */
static const sb_sublist_result *cache_add(sb_sublist *sl,
                                          uint64_t hash,
                                          const char *t,
                                          size_t len,
                                          const sb_sublist_result *r)
{
    centry *e = NULL;

    if (sl->cn >= sl->cache_max) {
        e = cache_evict(sl);
    } else if ((sl->cn + 1) * 2 > sl->ccap) {
        size_t newcap = sl->ccap ? sl->ccap * 2 : 16;
        if (newcap > sl->cache_cap_max)
            newcap = sl->cache_cap_max;
        if (hslot_resize(&sl->cache, sl->ccap, newcap) != 0)
            return r;
        sl->ccap = newcap;
    }
    centry *ne = centry_fill(e, t, len, r, sl->gen);
    if (ne == NULL) {
        free(e);
        return r;
    }
    hslot_put(sl->cache, sl->ccap, hash, ne);
    sl->cn++;
    return &ne->res;
}

/* Free the entry in slot i. */
static void cache_drop(sb_sublist *sl, size_t i)
{
    centry *e = sl->cache[i].p;
    hslot_del(sl->cache, sl->ccap, i);
    sl->cn--;
    free(e);
}

/* Recompute the stale entry in slot i in place. */
static const sb_sublist_result *cache_refill(sb_sublist *sl,
                                             size_t i,
                                             const char *t,
                                             size_t len,
                                             const sb_sublist_result *r)
{
    centry *e = sl->cache[i].p;
    centry *ne = centry_fill(e, t, len, r, sl->gen);

    if (ne == NULL) {
        cache_drop(sl, i);
        return r;
    }
    sl->cache[i].p = ne;
    return &ne->res;
}

const sb_sublist_result *
sb_sublist_match(sb_sublist *sl, const char *t, size_t len)
{
    const sb_sublist_result *r;

    /* Too short or too long is invalid, and no pattern matches it; only
     * these are checked, because the token arrays are sized by them. */
    if (len == 0 || len > SB_TOPIC_MAX) {
        sl->res.items = sl->buf;
        sl->res.n = 0;
        return &sl->res;
    }
    if (sl->cache_max == 0)
        return compute(sl, t, len);

    uint64_t hash = hash_bytes(sl->seed, t, len);
    size_t i = cache_find(sl, hash, t, len);
    if (i != SIZE_MAX) {
        centry *e = sl->cache[i].p;
        if (e->gen == sl->gen)
            return &e->res;
    }
    r = compute(sl, t, len);
    if (r == NULL)
        return NULL;
    if (r->n > CACHE_ITEMS_MAX) {
        if (i != SIZE_MAX)
            cache_drop(sl, i);
        return r;
    }
    if (i != SIZE_MAX)
        return cache_refill(sl, i, t, len, r);
    return cache_add(sl, hash, t, len, r);
}
