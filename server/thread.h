/* thread.h - the only place sockbus creates and joins threads.
 *
 * Every thread gets a page-rounded stack of the requested size (at least
 * PTHREAD_STACK_MIN) and a name (shown by top -H and in log lines).
 *
 * Threads that end on their own (connection workers, in-process subscriber
 * threads) cannot be joined by anyone waiting for them, so they hand
 * themselves to a reaper as their last act: the reaper thread joins them,
 * and sb_reaper_stop() joins whatever is left. Every thread is joined.
 *
 * Threads wait for each other with condition variables; the two helpers
 * below make every timed wait use the monotonic clock. */
#ifndef SB_THREAD_H
#define SB_THREAD_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>

/* Start `fn(arg)` on a new thread named `name` (at most 15 bytes shown)
 * with a stack of `stack_bytes`. *t is written before the thread runs; a
 * thread that may free the memory holding *t must not be given it (pass a
 * local). Returns 0 or a negative errno (-EAGAIN when the system is out of
 * threads). */
int sb_thread_create(pthread_t *t,
                     const char *name,
                     size_t stack_bytes,
                     void *(*fn)(void *),
                     void *arg);

/* Join `t`. Returns 0 or a negative errno. */
int sb_thread_join(pthread_t t);

/* Initialise `cv` so that its timed waits run on CLOCK_MONOTONIC, which
 * steps of the wall clock do not move. */
void sb_cond_init(pthread_cond_t *cv);

/* The CLOCK_MONOTONIC time `ms` (>= 0) milliseconds from now: a deadline
 * for pthread_cond_timedwait() on a condition from sb_cond_init(). */
void sb_deadline_in(struct timespec *ts, long ms);

typedef struct sb_reaper sb_reaper;

/* Start a reaper and its thread. Returns owned or NULL (errno set). */
sb_reaper *sb_reaper_start(void);

/* Called by a finishing thread about itself, as the last thing it does
 * before returning from its start function. Never fails. Thread-safe. */
void sb_reaper_add_self(sb_reaper *r);

/* Number of threads handed over and not yet joined. Thread-safe. */
size_t sb_reaper_pending(sb_reaper *r);

/* Join every thread handed over so far and the reaper itself, then free
 * it. The caller makes sure no thread will call sb_reaper_add_self() after
 * this. Accepts NULL. */
void sb_reaper_stop(sb_reaper *r);

#endif
