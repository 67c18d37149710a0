/* live.c - reference-counted configuration snapshots. See live.h.
 *
 * Locks: `lock` guards `cur` only. sb_live_get() takes a reference under
 * it, so a snapshot can never be freed between reading `cur` and counting
 * the reference (the holder's own reference keeps `cur` alive while it is
 * current). References are dropped with an atomic decrement, unlocked; the
 * acq_rel order makes every read of a snapshot happen before its free. */
#include "live.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* cfg first: a `const sb_config *` handed out is the snapshot's address. */
struct snap {
    sb_config cfg;
    atomic_uint refs;
};

struct sb_live {
    pthread_mutex_t lock;
    struct snap *cur; /* holds one reference */
};

static struct snap *snap_new(const sb_config *cfg)
{
    struct snap *s = malloc(sizeof(*s));
    if (s == NULL)
        return NULL;
    s->cfg = *cfg;
    atomic_init(&s->refs, 1);
    return s;
}

sb_live *sb_live_new(const sb_config *cfg)
{
    sb_live *l = malloc(sizeof(*l));
    if (l == NULL)
        return NULL;
    l->cur = snap_new(cfg);
    if (l->cur == NULL) {
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

void sb_live_free(sb_live *l)
{
    if (l == NULL)
        return;
    sb_live_put(&l->cur->cfg);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

const sb_config *sb_live_get(sb_live *l)
{
    pthread_mutex_lock(&l->lock);
    struct snap *s = l->cur;
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&l->lock);
    return &s->cfg;
}

void sb_live_put(const sb_config *cfg)
{
    if (cfg == NULL)
        return;
    /* The snapshot is read-only to its users, not to its owner: drop the
     * const to reach the count. */
    struct snap *s = (struct snap *)(uintptr_t)cfg;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        free(s);
}

int sb_live_set(sb_live *l, const sb_config *cfg)
{
    struct snap *s = snap_new(cfg);
    if (s == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&l->lock);
    struct snap *old = l->cur;
    l->cur = s;
    pthread_mutex_unlock(&l->lock);
    sb_live_put(&old->cfg);
    return 0;
}
