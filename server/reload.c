/* reload.c - sb_server_reload(): apply a new configuration to a running
 * server. See sockbus.h.
 *
 * Threads: any thread. Reloads are serialized by `reload_lock`, so two never
 * interleave their swap and their log lines. Nothing else waits for a
 * reload: connections keep the snapshot they took (live.h), new ones take
 * the new one. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "live.h"
#include "log.h"
#include "server.h"

static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

/* One line per changed setting; the token's value is never written.
 * `ud` counts the changes applied. */
static void log_change(const char *key,
                       const char *from,
                       const char *to,
                       bool reloadable,
                       void *ud)
{
    *(int *)ud += reloadable;
    if (!reloadable)
        SB_LOG(SB_LOG_WARN,
               "reload key=%s from=%s to=%s applied=no "
               "reason=restart_required",
               key, from, to);
    else if (from == NULL)
        SB_LOG(SB_LOG_INFO, "reload key=%s changed=yes", key);
    else
        SB_LOG(SB_LOG_INFO, "reload key=%s from=%s to=%s", key, from, to);
}

int sb_server_reload(sb_server *s,
                     const sb_config *next,
                     char *err,
                     size_t errlen)
{
    if (sb_config_validate(next, err, errlen) < 0)
        return -EINVAL;
    sb_config *snap = malloc(sizeof(*snap));
    if (snap == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_lock(&reload_lock);
    const sb_config *cur = sb_live_get(s->live);
    /* What cannot change keeps its running value, so the snapshot always
     * says what is in effect. */
    *snap = *cur;
    sb_config_take_reloadable(snap, next);
    int rc = sb_live_set(s->live, snap);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
    } else {
        /* Logged in the old level and format; the new apply after. */
        int applied = 0;
        int changed = sb_config_diff(cur, next, log_change, &applied);
        sb_log_set_level((sb_log_level)snap->log_level);
        sb_log_set_json(snap->log_json);
        SB_LOG(SB_LOG_INFO, "reload ok=yes changed=%d applied=%d", changed,
               applied);
    }
    sb_live_put(cur);
    pthread_mutex_unlock(&reload_lock);
    free(snap);
    return rc;
}
