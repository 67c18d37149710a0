/* thread.c - thread creation, naming and reaping. See thread.h.
 *
 * The reaper keeps a list of finished threads under `lock`; its thread
 * waits on `cond`, takes the whole list, unlocks, and joins each (a join
 * waits for the few instructions the thread runs after handing itself
 * over). No lock is held while joining. */
#define _GNU_SOURCE
#include "thread.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The thread names itself before running: once pthread_create() returns,
 * the new thread may already have finished and freed what holds `t`. */
struct start {
    void *(*fn)(void *);
    void *arg;
    char name[16];
};

static void *thread_start(void *p)
{
    struct start st = *(struct start *)p;
    free(p);
    pthread_setname_np(pthread_self(), st.name); /* cosmetic */
    return st.fn(st.arg);
}

int sb_thread_create(pthread_t *t,
                     const char *name,
                     size_t stack_bytes,
                     void *(*fn)(void *),
                     void *arg)
{
    struct start *st = malloc(sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    st->fn = fn;
    st->arg = arg;
    snprintf(st->name, sizeof(st->name), "%s", name);
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0) {
        free(st);
        return -rc;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t stack = (stack_bytes + page - 1) / page * page;
    if (stack < (size_t)PTHREAD_STACK_MIN)
        stack = (size_t)PTHREAD_STACK_MIN;
    rc = pthread_attr_setstacksize(&attr, stack);
    if (rc == 0)
        rc = pthread_create(t, &attr, thread_start, st);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(st);
        return -rc;
    }
    return 0;
}

int sb_thread_join(pthread_t t)
{
    int rc = pthread_join(t, NULL);
    return -rc;
}

void sb_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

void sb_deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

struct reap_node {
    struct reap_node *next;
    pthread_t t;
};

struct sb_reaper {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct reap_node *list; /* finished threads not yet joined */
    size_t pending;         /* handed over and not yet joined */
    bool stopping;
    pthread_t thread;
};

static void join_list(sb_reaper *r, struct reap_node *n)
{
    while (n != NULL) {
        struct reap_node *next = n->next;
        pthread_join(n->t, NULL);
        free(n);
        pthread_mutex_lock(&r->lock);
        r->pending--;
        pthread_mutex_unlock(&r->lock);
        n = next;
    }
}

static void *reaper_main(void *arg)
{
    sb_reaper *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (r->list == NULL && !r->stopping)
            pthread_cond_wait(&r->cond, &r->lock);
        struct reap_node *n = r->list;
        r->list = NULL;
        bool stop = r->stopping;
        pthread_mutex_unlock(&r->lock);
        join_list(r, n);
        if (stop)
            break;
        pthread_mutex_lock(&r->lock);
    }
    return NULL;
}

sb_reaper *sb_reaper_start(void)
{
    sb_reaper *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    int rc = sb_thread_create(&r->thread, "reaper", 64 * 1024, reaper_main, r);
    if (rc < 0) {
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
        errno = -rc;
        return NULL;
    }
    return r;
}

void sb_reaper_add_self(sb_reaper *r)
{
    /* A node preallocated per thread would make this allocation-free; on
     * ENOMEM the thread detaches itself instead, which only loses the
     * join. */
    struct reap_node *n = malloc(sizeof(*n));
    if (n == NULL) {
        pthread_detach(pthread_self());
        return;
    }
    n->t = pthread_self();
    pthread_mutex_lock(&r->lock);
    n->next = r->list;
    r->list = n;
    r->pending++;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

size_t sb_reaper_pending(sb_reaper *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->pending;
    pthread_mutex_unlock(&r->lock);
    return n;
}

void sb_reaper_stop(sb_reaper *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    join_list(r, r->list);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
