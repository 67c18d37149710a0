/* sockbus-bench-run.h - one benchmark run: set up, publish, collect.
 *
 * sbb_run() opens the idle connections, starts one thread per subscriber
 * and waits until every subscription is acknowledged, then one thread per
 * publisher, starts them together, waits until every expected message has
 * arrived or --timeout has passed since the last publisher finished, stops
 * every thread and returns what each client measured.
 *
 * Threads: call from the main thread only (it collects signals). */
#ifndef SBB_BENCH_RUN_H
#define SBB_BENCH_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sockbus-bench-hist.h"
#include "sockbus-bench-proto.h"

typedef struct sbb_opts {
    char host[256];
    char port[16];
    char sub_host[256]; /* --sub-server: the subscribers' server (another */
    char sub_port[16];  /* node of a cluster); empty: the same server */
    sbb_proto proto;
    unsigned pubs, subs;
    uint64_t msgs; /* in total, over all publishers */
    size_t size;   /* payload bytes, at least SBB_HEADER_LEN */
    double rate;   /* messages per second in total; 0: flat out */
    char topic[256];
    char group[256];   /* empty: no queue group */
    unsigned conns;    /* idle connections held open during the run */
    double duration_s; /* > 0: publish for this long instead of msgs */
    double timeout_s;  /* bound of every wait */
    bool json;
    char token[4097]; /* empty: none */
    pid_t server_pid; /* > 0: sample this process's VmRSS */
    bool progress;    /* a live line on stderr each second */
} sbb_opts;

/* What one publisher or subscriber measured. */
typedef struct sbb_client_stats {
    uint64_t msgs;         /* published (written), or received intact */
    int64_t end_ns;        /* publisher: flush answered; subscriber: last
                              message received (0: none) */
    uint64_t out_of_order; /* subscriber: seq not above the last of its
                              publisher */
    uint64_t dropped;      /* subscriber: sockbus drop notices' N */
    uint64_t bad;          /* subscriber: payloads that failed checks */
    uint64_t errors;       /* error frames from the server */
    char error[256];       /* what ended it early; empty when nothing did */
} sbb_client_stats;

typedef struct sbb_result {
    unsigned npubs, nsubs;
    sbb_client_stats *pubs; /* owned, npubs of them */
    sbb_client_stats *subs; /* owned, nsubs of them */
    sbb_hist *latency;      /* owned: every subscriber's, in ns */
    uint64_t published;     /* messages written by all publishers */
    uint64_t expected;      /* deliveries due in total */
    uint64_t delivered;     /* messages received by all subscribers */
    int64_t t0;             /* publishers started */
    int64_t pub_end;        /* the last publisher finished (flushed) */
    int64_t sub_end;        /* the last message arrived (t0: none) */
    unsigned idle_open;     /* idle connections set up */
    unsigned idle_closed;   /* of them, closed by the server during the run */
    long rss_before_kib;    /* server VmRSS before the idle connections */
    long rss_conns_kib;     /* once they are open */
    long rss_after_kib;     /* after the run, still open (-1: not sampled) */
    double cpu_window_s;    /* from the start to the end of the wait */
    double server_cpu_s;    /* CPU the server used in it (-1: unknown) */
    double bench_cpu_s;     /* CPU this process used in it */
    double machine_cpu_s;   /* CPU every process used in it (-1: unknown) */
    bool interrupted;       /* SIGINT/SIGTERM cut the run short */
    bool timed_out;         /* --timeout passed before every delivery */
    char error[512];        /* why the run could not start (sbb_run -1) */
} sbb_result;

/* Runs the benchmark `o` (borrowed). Returns 0 with *r filled in (free
 * with sbb_result_free) even when clients failed during the run, or -1
 * when it could not start, with the reason in r->error. */
int sbb_run(const sbb_opts *o, sbb_result *r);

/* Frees what sbb_run allocated in `r`. */
void sbb_result_free(sbb_result *r);

#endif
