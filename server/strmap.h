/* strmap.h - a hash map from byte strings to pointers.
 *
 * Open addressing with linear probing and tombstones; keys are copied.
 * Used by the bus for its subscription, group and interest tables.
 *
 * Threads: not thread-safe; one owner thread. */
#ifndef SB_STRMAP_H
#define SB_STRMAP_H

#include <stddef.h>

typedef struct sb_strmap sb_strmap;

/* Returns owned (sb_strmap_free()), or NULL on ENOMEM. */
sb_strmap *sb_strmap_new(void);

/* Free the map and its key copies; values are not touched. Accepts NULL. */
void sb_strmap_free(sb_strmap *m);

/* The value stored under key[0..n), or NULL. */
void *sb_strmap_get(const sb_strmap *m, const void *key, size_t n);

/* Store `value` (not NULL) under key[0..n), replacing any value.
 * Returns 0 or -ENOMEM. */
int sb_strmap_put(sb_strmap *m, const void *key, size_t n, void *value);

/* Remove key[0..n). Returns the value it had, or NULL. */
void *sb_strmap_del(sb_strmap *m, const void *key, size_t n);

/* Call fn(key, n, value, ud) for every key, in no order. fn must not
 * change the map. */
void sb_strmap_foreach(
    const sb_strmap *m,
    void (*fn)(const void *key, size_t n, void *value, void *ud),
    void *ud);

/* Number of keys. */
size_t sb_strmap_count(const sb_strmap *m);

#endif
