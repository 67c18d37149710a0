/* strmap.c - open-addressing string map. See strmap.h.
 *
 * Slots hold a hash, a copied key and the value. A deleted slot becomes a
 * tombstone (key kept NULL, value == TOMB) so that probing continues past
 * it; the table is rebuilt when live plus dead slots pass 3/4. */
#include "strmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char tomb_marker;
#define TOMB ((void *)&tomb_marker)

struct slot {
    uint64_t hash;
    char *key;
    size_t n;
    void *value; /* NULL: empty; TOMB with key NULL: deleted */
};

struct sb_strmap {
    struct slot *slots;
    size_t cap; /* power of two */
    size_t live;
    size_t used; /* live + tombstones */
};

/* FNV-1a, then a final mix so that the low bits are usable. */
static uint64_t hash_bytes(const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

sb_strmap *sb_strmap_new(void)
{
    sb_strmap *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->cap = 16;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    if (m->slots == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void sb_strmap_free(sb_strmap *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static struct slot *
find(const sb_strmap *m, uint64_t h, const void *key, size_t n)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct slot *s = &m->slots[i];
        if (s->value == NULL)
            return NULL;
        if (s->key != NULL && s->hash == h && s->n == n &&
            memcmp(s->key, key, n) == 0)
            return s;
    }
}

static int grow(sb_strmap *m)
{
    size_t cap = m->live * 2 >= m->cap / 2 ? m->cap * 2 : m->cap;
    struct slot *ns = calloc(cap, sizeof(*ns));
    if (ns == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        struct slot *s = &m->slots[i];
        if (s->key == NULL)
            continue;
        size_t j = s->hash & (cap - 1);
        while (ns[j].value != NULL)
            j = (j + 1) & (cap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = cap;
    m->used = m->live;
    return 0;
}

void *sb_strmap_get(const sb_strmap *m, const void *key, size_t n)
{
    struct slot *s = find(m, hash_bytes(key, n), key, n);
    return s ? s->value : NULL;
}

int sb_strmap_put(sb_strmap *m, const void *key, size_t n, void *value)
{
    uint64_t h = hash_bytes(key, n);
    struct slot *s = find(m, h, key, n);
    if (s != NULL) {
        s->value = value;
        return 0;
    }
    if ((m->used + 1) * 4 > m->cap * 3 && grow(m) < 0)
        return -ENOMEM;
    char *k = malloc(n ? n : 1);
    if (k == NULL)
        return -ENOMEM;
    memcpy(k, key, n);
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->slots[i].key != NULL)
        i = (i + 1) & mask;
    s = &m->slots[i];
    if (s->value == NULL)
        m->used++;
    s->hash = h;
    s->key = k;
    s->n = n;
    s->value = value;
    m->live++;
    return 0;
}

void *sb_strmap_del(sb_strmap *m, const void *key, size_t n)
{
    struct slot *s = find(m, hash_bytes(key, n), key, n);
    if (s == NULL)
        return NULL;
    void *v = s->value;
    free(s->key);
    s->key = NULL;
    s->value = TOMB;
    m->live--;
    return v;
}

void sb_strmap_foreach(
    const sb_strmap *m,
    void (*fn)(const void *key, size_t n, void *value, void *ud),
    void *ud)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != NULL)
            fn(m->slots[i].key, m->slots[i].n, m->slots[i].value, ud);
}

size_t sb_strmap_count(const sb_strmap *m)
{
    return m->live;
}
