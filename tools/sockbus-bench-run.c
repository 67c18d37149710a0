/* sockbus-bench-run.c - see sockbus-bench-run.h.
 *
 * The main thread sets everything up, then sleeps in poll() on the wake
 * eventfd (workers write it when something changed) and a signalfd, until
 * the run is over, the next progress line is due, or the drain deadline.
 * See sockbus-bench-client.h for which thread touches what. SIGINT and
 * SIGTERM are blocked before any thread starts, so that only the main
 * thread sees them, through the signalfd. */
#define _GNU_SOURCE
#include "sockbus-bench-run.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "sockbus-bench-client.h"
#include "thread.h"

#define WORKER_STACK (256 * 1024)
#define IDLE_IN_CAP 2048 /* NATS's INFO is the largest thing they read */
#define NS_PER_S 1000000000

typedef struct run {
    sbb_shared sh;
    const sbb_opts *o;
    sbb_worker *pubs, *subs;
    sbb_idle idle;
    int sig_fd;
    sigset_t old_mask;
    bool pubs_finished;
    int64_t drain_deadline; /* once the publishers have finished */
    int64_t next_tick;      /* the next progress line */
    uint64_t tick_pub, tick_sub;
} run;

/* Resident set of the server in KiB, from /proc; -1 when unknown. */
static long server_rss(pid_t pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atol(line + 6);
    fclose(f);
    return kib;
}

/* CPU seconds (user and system) that `pid` has used, from fields 14 and
 * 15 of /proc/PID/stat; -1 when unknown. */
static double server_cpu(pid_t pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces: count fields after its ')'. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (p == NULL || sscanf(p + 1,
                            " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                            "%llu %llu",
                            &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds every process has used since boot (the busy fields of
 * /proc/stat's first line); -1 when unknown. With the server's and our
 * own, it tells how much else ran during a measurement. */
static double machine_cpu(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return -1;
    unsigned long long user, nice, sys, idle, iowait, irq, softirq, steal;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user,
                   &nice, &sys, &idle, &iowait, &irq, &softirq, &steal);
    fclose(f);
    if (n != 8)
        return -1;
    return (double)(user + nice + sys + irq + softirq + steal) /
           (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int resolve_one(const char *host,
                       const char *port,
                       struct sockaddr_storage *addr,
                       socklen_t *alen,
                       char *err,
                       size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s:%s: %s", host, port,
                 gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *alen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int resolve(run *x, char *err, size_t errlen)
{
    const sbb_opts *o = x->o;
    if (resolve_one(o->host, o->port, &x->sh.addr, &x->sh.alen, err, errlen) <
        0)
        return -1;
    if (o->sub_host[0] != '\0')
        return resolve_one(o->sub_host, o->sub_port, &x->sh.sub_addr,
                           &x->sh.sub_alen, err, errlen);
    x->sh.sub_addr = x->sh.addr;
    x->sh.sub_alen = x->sh.alen;
    return 0;
}

static int alloc_workers(run *x)
{
    const sbb_opts *o = x->o;
    x->pubs = calloc(o->pubs, sizeof(sbb_worker));
    x->subs = calloc(o->subs ? o->subs : 1, sizeof(sbb_worker));
    x->idle.conns = calloc(o->conns ? o->conns : 1, sizeof(sbb_conn));
    if (!x->pubs || !x->subs || !x->idle.conns)
        return -1;
    for (unsigned i = 0; i < o->pubs; i++)
        x->pubs[i] = (sbb_worker){.sh = &x->sh, .id = i};
    for (unsigned i = 0; i < o->subs; i++) {
        sbb_worker *w = &x->subs[i];
        *w = (sbb_worker){.sh = &x->sh, .id = i};
        w->hist = sbb_hist_new();
        w->next_seq = calloc(o->pubs, sizeof(uint32_t));
        if (!w->hist || !w->next_seq)
            return -1;
    }
    x->idle.sh = &x->sh;
    return 0;
}

static int run_init(run *x, const sbb_opts *o, char *err, size_t errlen)
{
    x->o = o;
    x->sh.o = o;
    x->sh.timeout_ns = (int64_t)(o->timeout_s * NS_PER_S);
    x->sh.stop_fd = x->sh.go_fd = x->sh.wake_fd = x->sig_fd = -1;
    atomic_store(&x->sh.expected, UINT64_MAX);
    atomic_store(&x->sh.per_sub, UINT64_MAX);
    if (resolve(x, err, errlen) < 0)
        return -1;
    x->sh.stop_fd = eventfd(0, EFD_CLOEXEC);
    x->sh.go_fd = eventfd(0, EFD_CLOEXEC);
    x->sh.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &x->old_mask);
    x->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (x->sh.stop_fd < 0 || x->sh.go_fd < 0 || x->sh.wake_fd < 0 ||
        x->sig_fd < 0 || alloc_workers(x) < 0) {
        snprintf(err, errlen, "cannot set up: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Opens the idle connections one after the other: each is set up and
 * subscribed to a topic of its own that nobody publishes to. */
static int open_idle(run *x, char *err, size_t errlen)
{
    char topic[300], why[400];
    for (unsigned i = 0; i < x->o->conns; i++) {
        snprintf(topic, sizeof(topic), "%s.idle.%u", x->o->topic, i);
        if (sbb__client_open(&x->sh, &x->idle.conns[i], "idle", i, topic, NULL,
                             IDLE_IN_CAP, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "idle connection %u of %u: %s", i + 1,
                     x->o->conns, why);
            return -1;
        }
        x->idle.n = i + 1;
        if (x->o->progress && (i + 1) % 1000 == 0)
            fprintf(stderr, "\ropened %u idle connections", i + 1);
    }
    if (x->o->progress && x->o->conns >= 1000)
        fprintf(stderr, "\r\033[K");
    return 0;
}

/* True once SIGINT or SIGTERM has arrived. */
static bool interrupted(run *x)
{
    struct signalfd_siginfo si;
    return read(x->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si);
}

/* Sleeps until a worker writes wake_fd, a signal arrives or `deadline`;
 * returns true on a signal. */
static bool wait_wake(run *x, int64_t deadline)
{
    int64_t left = deadline - sbb_now_ns();
    int ms = deadline == INT64_MAX ? -1
             : left <= 0           ? 0
                                   : (int)((left + 999999) / 1000000);
    struct pollfd p[2] = {{.fd = x->sh.wake_fd, .events = POLLIN},
                          {.fd = x->sig_fd, .events = POLLIN}};
    if (poll(p, 2, ms) > 0 && (p[0].revents & POLLIN)) {
        uint64_t v;
        ssize_t n = read(x->sh.wake_fd, &v, sizeof(v));
        (void)n; /* only clears it; a wake-up can never be lost */
    }
    return interrupted(x);
}

static int
start_workers(sbb_worker *w, unsigned n, const char *role, void *(*fn)(void *))
{
    for (unsigned i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "%s-%u", role, i);
        if (sb_thread_create(&w[i].thread, name, WORKER_STACK, fn, &w[i]) < 0)
            return -1;
        w[i].started = true;
    }
    return 0;
}

/* Waits until `target` clients are set up. Returns 0, or -1 when one
 * failed (its error says why), a signal came, or --timeout passed. */
static int wait_ready(run *x, unsigned target, char *err, size_t errlen)
{
    int64_t deadline = sbb_now_ns() + x->sh.timeout_ns + NS_PER_S;
    for (;;) {
        if (atomic_load(&x->sh.failed) > 0)
            return -1; /* the worker's own error is reported */
        if (atomic_load(&x->sh.ready) >= target)
            return 0;
        if (sbb_now_ns() >= deadline) {
            snprintf(err, errlen, "clients not set up within %g s",
                     x->o->timeout_s);
            return -1;
        }
        if (wait_wake(x, deadline)) {
            snprintf(err, errlen, "interrupted while setting up");
            return -1;
        }
    }
}

static int start_clients(run *x, char *err, size_t errlen)
{
    const sbb_opts *o = x->o;
    if (o->conns > 0) {
        int rc = sb_thread_create(&x->idle.thread, "idle", WORKER_STACK,
                                  sbb__idle_main, &x->idle);
        if (rc < 0) {
            snprintf(err, errlen, "cannot start a thread: %s", strerror(-rc));
            return -1;
        }
        x->idle.started = true;
    }
    /* Subscribers first: every subscription is acknowledged before the
     * first publication. */
    if (start_workers(x->subs, o->subs, "sub", sbb__sub_main) < 0 ||
        wait_ready(x, o->subs, err, errlen) < 0 ||
        start_workers(x->pubs, o->pubs, "pub", sbb__pub_main) < 0 ||
        wait_ready(x, o->subs + o->pubs, err, errlen) < 0) {
        if (err[0] == '\0' && atomic_load(&x->sh.failed) == 0)
            snprintf(err, errlen, "cannot start a thread");
        return -1;
    }
    return 0;
}

static uint64_t sum_counts(sbb_worker *w, unsigned n)
{
    uint64_t s = 0;
    for (unsigned i = 0; i < n; i++)
        s += atomic_load_explicit(&w[i].count, memory_order_relaxed);
    return s;
}

/* The live line: totals and the rates of the last second. */
static void progress(run *x, int64_t now)
{
    uint64_t pub = sum_counts(x->pubs, x->o->pubs);
    uint64_t sub = atomic_load(&x->sh.delivered);
    double secs = (double)(now - atomic_load(&x->sh.t0)) / NS_PER_S;
    fprintf(stderr,
            "\r\033[K%6.1fs  published %llu (%llu msgs/s)  delivered %llu "
            "(%llu msgs/s)",
            secs, (unsigned long long)pub,
            (unsigned long long)(pub - x->tick_pub), (unsigned long long)sub,
            (unsigned long long)(sub - x->tick_sub));
    x->tick_pub = pub;
    x->tick_sub = sub;
    x->next_tick += NS_PER_S;
}

/* The publishers are all done: now the deliveries due are known. */
static void publishers_finished(run *x, int64_t now)
{
    const sbb_opts *o = x->o;
    uint64_t published = 0;
    for (unsigned i = 0; i < o->pubs; i++)
        published += x->pubs[i].st.msgs; /* final: pubs_done was counted */
    uint64_t each = o->duration_s > 0 ? published : o->msgs;
    atomic_store(&x->sh.per_sub, o->group[0] ? UINT64_MAX : each);
    atomic_store(&x->sh.expected,
                 o->group[0] ? (o->subs ? each : 0) : each * o->subs);
    x->pubs_finished = true;
    x->drain_deadline = now + x->sh.timeout_ns;
}

/* True when every delivery is in (or reported dropped), or every
 * subscriber has ended. */
static bool deliveries_done(run *x)
{
    return atomic_load(&x->sh.subs_done) >= x->o->subs ||
           atomic_load(&x->sh.accounted) >= atomic_load(&x->sh.expected);
}

static void monitor(run *x, sbb_result *r)
{
    const sbb_opts *o = x->o;
    if (o->duration_s <= 0) {
        atomic_store(&x->sh.per_sub, o->group[0] ? UINT64_MAX : o->msgs);
        atomic_store(&x->sh.expected,
                     o->group[0] ? (o->subs ? o->msgs : 0) : o->msgs * o->subs);
    }
    double server0 = server_cpu(o->server_pid), self0 = self_cpu();
    double machine0 = machine_cpu();
    int64_t t0 = sbb_now_ns();
    atomic_store(&x->sh.t0, t0);
    x->next_tick = t0 + NS_PER_S;
    sbb__signal(x->sh.go_fd);
    for (;;) {
        int64_t now = sbb_now_ns();
        if (!x->pubs_finished && atomic_load(&x->sh.pubs_done) >= o->pubs)
            publishers_finished(x, now);
        if (x->pubs_finished && deliveries_done(x))
            break;
        if (x->pubs_finished && now >= x->drain_deadline) {
            r->timed_out = true;
            break;
        }
        if (o->progress && now >= x->next_tick)
            progress(x, now);
        int64_t until = x->pubs_finished ? x->drain_deadline : INT64_MAX;
        if (o->progress && x->next_tick < until)
            until = x->next_tick;
        if (wait_wake(x, until)) {
            r->interrupted = true;
            break;
        }
    }
    double server1 = server_cpu(o->server_pid), machine1 = machine_cpu();
    r->cpu_window_s = (double)(sbb_now_ns() - t0) / NS_PER_S;
    r->server_cpu_s = server0 >= 0 && server1 >= 0 ? server1 - server0 : -1;
    r->bench_cpu_s = self_cpu() - self0;
    r->machine_cpu_s =
        machine0 >= 0 && machine1 >= 0 ? machine1 - machine0 : -1;
    if (o->progress)
        fprintf(stderr, "\r\033[K");
}

static void join_workers(sbb_worker *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (w[i].started)
            sb_thread_join(w[i].thread);
}

/* Ends every wait of every thread, and joins them. */
static void stop_all(run *x)
{
    atomic_store(&x->sh.stopping, true);
    if (x->sh.stop_fd >= 0)
        sbb__signal(x->sh.stop_fd);
    if (x->subs)
        join_workers(x->subs, x->o->subs);
    if (x->pubs)
        join_workers(x->pubs, x->o->pubs);
    if (x->idle.started)
        sb_thread_join(x->idle.thread);
}

/* The first client error, for a run that could not start. */
static void client_error(run *x, char *err, size_t errlen)
{
    for (unsigned i = 0; i < x->o->subs; i++)
        if (x->subs[i].st.error[0]) {
            snprintf(err, errlen, "subscriber %u: %s", i, x->subs[i].st.error);
            return;
        }
    for (unsigned i = 0; i < x->o->pubs; i++)
        if (x->pubs[i].st.error[0]) {
            snprintf(err, errlen, "publisher %u: %s", i, x->pubs[i].st.error);
            return;
        }
}

static int collect(run *x, sbb_result *r)
{
    const sbb_opts *o = x->o;
    r->npubs = o->pubs;
    r->nsubs = o->subs;
    r->pubs = calloc(o->pubs, sizeof(sbb_client_stats));
    r->subs = calloc(o->subs ? o->subs : 1, sizeof(sbb_client_stats));
    r->latency = sbb_hist_new();
    if (!r->pubs || !r->subs || !r->latency)
        return -1;
    r->t0 = atomic_load(&x->sh.t0);
    r->pub_end = r->sub_end = r->t0;
    for (unsigned i = 0; i < o->pubs; i++) {
        r->pubs[i] = x->pubs[i].st;
        r->published += r->pubs[i].msgs;
        if (r->pubs[i].end_ns > r->pub_end)
            r->pub_end = r->pubs[i].end_ns;
    }
    for (unsigned i = 0; i < o->subs; i++) {
        r->subs[i] = x->subs[i].st;
        r->delivered += r->subs[i].msgs;
        if (r->subs[i].end_ns > r->sub_end)
            r->sub_end = r->subs[i].end_ns;
        sbb_hist_merge(r->latency, x->subs[i].hist);
    }
    uint64_t each = o->duration_s > 0 ? r->published : o->msgs;
    r->expected = o->group[0] ? (o->subs ? each : 0) : each * o->subs;
    r->idle_open = x->idle.n;
    r->idle_closed = atomic_load(&x->idle.closed);
    return 0;
}

static void run_free(run *x)
{
    for (unsigned i = 0; x->subs && i < x->o->subs; i++) {
        sbb_hist_free(x->subs[i].hist);
        free(x->subs[i].next_seq);
    }
    for (unsigned i = 0; i < x->idle.n; i++)
        sbb_conn_close(&x->idle.conns[i]);
    free(x->idle.conns);
    free(x->pubs);
    free(x->subs);
    int fds[] = {x->sh.stop_fd, x->sh.go_fd, x->sh.wake_fd, x->sig_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    pthread_sigmask(SIG_SETMASK, &x->old_mask, NULL);
    free(x);
}

int sbb_run(const sbb_opts *o, sbb_result *r)
{
    memset(r, 0, sizeof(*r));
    r->rss_before_kib = r->rss_conns_kib = r->rss_after_kib = -1;
    r->server_cpu_s = r->machine_cpu_s = -1;
    run *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        snprintf(r->error, sizeof(r->error), "out of memory");
        return -1;
    }
    r->rss_before_kib = server_rss(o->server_pid);
    int rc = run_init(x, o, r->error, sizeof(r->error));
    if (rc == 0)
        rc = open_idle(x, r->error, sizeof(r->error));
    r->rss_conns_kib = server_rss(o->server_pid);
    if (rc == 0)
        rc = start_clients(x, r->error, sizeof(r->error));
    if (rc == 0)
        monitor(x, r);
    r->rss_after_kib = server_rss(o->server_pid);
    stop_all(x);
    if (rc < 0 && r->error[0] == '\0')
        client_error(x, r->error, sizeof(r->error));
    if (rc == 0 && collect(x, r) < 0) {
        snprintf(r->error, sizeof(r->error), "out of memory");
        rc = -1;
    }
    run_free(x);
    return rc;
}

void sbb_result_free(sbb_result *r)
{
    free(r->pubs);
    free(r->subs);
    sbb_hist_free(r->latency);
    r->pubs = r->subs = NULL;
    r->latency = NULL;
}
