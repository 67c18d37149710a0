/* log.h - one line per event, written with one write(2).
 *
 * Lines go to stderr: time, level, thread name, then the message, which by
 * convention is an event name followed by key=value pairs:
 *     2026-11-23T03:30:18.123Z INFO  [conn-17] close id=17 reason=eof
 * In the JSON format the same event is one object per line, every value a
 * string:
 *     {"time":"2026-11-23T03:30:18.123Z","level":"INFO","thread":"conn-17",
 *      "msg":"close","id":"17","reason":"eof"}
 * The first word is "msg"; each key=value pair becomes a member, a value
 * running until the next " key=" (so it may hold spaces); words before the
 * first pair go to "text". A key already used, or one of time, level,
 * thread, msg and text, does not start a pair: it stays in the value.
 * SB_LOG() tests the level before evaluating its arguments.
 *
 * Threads: every function may be called from any thread, never from a
 * signal handler. */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum sb_log_level {
    SB_LOG_ERROR = 0,
    SB_LOG_WARN = 1,
    SB_LOG_INFO = 2,
    SB_LOG_DEBUG = 3,
} sb_log_level;

extern atomic_int sb_log__level;

#define SB_LOG(lvl, ...)                                                       \
    do {                                                                       \
        if ((int)(lvl) <=                                                      \
            atomic_load_explicit(&sb_log__level, memory_order_relaxed))        \
            sb_log__write((lvl), __VA_ARGS__);                                 \
    } while (0)

void sb_log__write(sb_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Set the most verbose level written. */
void sb_log_set_level(sb_log_level lvl);

/* Write JSON lines (true) or text lines (false, the default). */
void sb_log_set_json(bool json);

/* Format one line of level `lvl` for message `msg` (time `ts`, thread
 * `thread`) as JSON into out[0..cap), newline included; cap must be at
 * least 64. Returns the length: a message too long for `cap` is cut, the
 * line stays valid JSON. Pure; exposed for tests. */
size_t sb_log__json_line(char *out,
                         size_t cap,
                         sb_log_level lvl,
                         const char *time,
                         const char *thread,
                         const char *msg);

/* Parse "error", "warn", "info" or "debug". Returns the level or -1. */
int sb_log_parse_level(const char *s);

#endif
