/* live.h - the settings a running server may change, as immutable
 * snapshots.
 *
 * The server copies its configuration at start and never writes a copy
 * that anyone reads. A reload makes a new snapshot and swaps it in; each
 * new connection takes a reference to the snapshot current when it was
 * accepted and keeps reading it, unlocked, until it is freed. A snapshot
 * is freed when its last reference goes, so memory stays bounded however
 * often the server reloads.
 *
 * Threads: every function may be called from any thread. */
#ifndef SB_LIVE_H
#define SB_LIVE_H

#include "config.h"

typedef struct sb_live sb_live;

/* A holder whose current snapshot is a copy of `cfg` (borrowed).
 * Returns owned (free with sb_live_free()), or NULL on ENOMEM. */
sb_live *sb_live_new(const sb_config *cfg);

/* Drop the holder's reference to its current snapshot and free it;
 * snapshots still referenced live on until sb_live_put(). NULL is fine. */
void sb_live_free(sb_live *l);

/* A reference to the current snapshot: read-only, valid until
 * sb_live_put() (not tied to the holder's lifetime). */
const sb_config *sb_live_get(sb_live *l);

/* Drop a reference from sb_live_get(); the last one frees the snapshot.
 * NULL is fine. */
void sb_live_put(const sb_config *cfg);

/* Make a copy of `cfg` (borrowed) the current snapshot: later
 * sb_live_get() calls return it. Returns 0 or -ENOMEM (nothing changed). */
int sb_live_set(sb_live *l, const sb_config *cfg);

#endif
