/* sublist.h - the subscription index: which subscriptions match a topic.
 *
 * A trie keyed by topic token, with a child map of literal tokens and
 * separate '*' and '>' branches per node (the shape of nats-server's
 * sublist), plus a bounded cache of recent match results, so that a topic
 * published over and over is matched by one hash lookup.
 *
 * Values are opaque pointers owned by the caller; the index stores each
 * (pattern, value) pair once.
 *
 * Threads: not thread-safe. The bus thread owns its sublist and is the only
 * thread that touches it. */
#ifndef SB_SUBLIST_H
#define SB_SUBLIST_H

#include <stddef.h>

typedef struct sb_sublist sb_sublist;

/* The values that match one topic, in no particular order, each once. */
typedef struct sb_sublist_result {
    void **items;
    size_t n;
} sb_sublist_result;

/* Create an empty index whose cache holds up to `cache_max` topics
 * (0 turns the cache off). Returns owned (sb_sublist_free()), or NULL on
 * ENOMEM. */
sb_sublist *sb_sublist_new(size_t cache_max);

/* Free the index; the values are not touched. Accepts NULL. */
void sb_sublist_free(sb_sublist *sl);

/* Add `value` under the valid pattern p[0..len) (copied).
 * Returns 0, -EEXIST when that exact pair is already present, -EINVAL when
 * p is not a valid pattern, or -ENOMEM. */
int sb_sublist_insert(sb_sublist *sl, const char *p, size_t len, void *value);

/* Remove the pair (p, value). Returns 0 or -ENOENT. */
int sb_sublist_remove(sb_sublist *sl, const char *p, size_t len, void *value);

/* Every value whose pattern matches the valid literal topic t[0..len).
 * Returns a result owned by the index, valid until the next call of any
 * sb_sublist_ function on `sl` (`items` may be NULL when n is 0). A result
 * is always complete; failing to cache it is silent. Returns NULL only on
 * ENOMEM for the match's own working memory. */
const sb_sublist_result *
sb_sublist_match(sb_sublist *sl, const char *t, size_t len);

/* Number of (pattern, value) pairs held. */
size_t sb_sublist_count(const sb_sublist *sl);

#endif
