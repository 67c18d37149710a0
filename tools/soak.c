/* soak.c - sockbus-soak: a long, mixed, churning workload against a running
 * sockbusd that checks every delivery it is owed, and that the server
 * gives its threads and memory back afterwards.
 *
 * The workload
 * ------------
 * --conns N connections, each driven by a thread of its own (an "actor"),
 * in roles fixed from --seed. With F topic families (N/100, 1 to 16) and a
 * per-run tag TAG:
 *   publisher (N/5)    publishes to soak.TAG.tF.pI at --rate per second;
 *                      reconnects now and then (after its last publication
 *                      was acknowledged, closing with FIN or RST);
 *   literal (the rest) subscribes to one publisher's topic, switching
 *                      publishers, unsubscribing and reconnecting at random;
 *   family (N/10)      subscribes to soak.TAG.tF.* (a wildcard);
 *   overlap (N/10)     holds soak.TAG.tF.* and one literal topic of that
 *                      family at once and toggles either: the server must
 *                      send one copy per connection, never two;
 *   full (1 + N/1000)  subscribes to soak.TAG.>;
 *   group (N/5)        queue-group members on soak.TAG.tF.* in group
 *                      soak-TAG-gF: two per family stay for the whole run
 *                      ("static"), the others join, leave and reconnect.
 * With --burst N, each publisher also writes N publications at once every
 * 5 s on average and waits for their acknowledgement, sending nothing
 * meanwhile; this fills the server's receive queue, makes it pause
 * publishers (back-pressure), and requires it to resume them unprompted.
 * Every sub and unsub carries an id and waits for its ok (subscribe
 * churn); subscribers act every 1.5 s on average, one action in five being
 * a reconnect (FIN or RST, sometimes without waiting for anything).
 *
 * What is checked, and why it never reports a false loss
 * -------------------------------------------------------
 * Each publication carries (publisher, sequence) in its data. Sequences
 * start at 1 and continue across the publisher's reconnections. Each
 * publisher keeps two counters, read by every thread:
 *   sent   the highest sequence it has started to write. It is stored
 *          *before* the write() that carries the frame.
 *   acked  the highest sequence the server acknowledged (every pub carries
 *          "id": sequence, and ok frames come in the order of the frames).
 * A subscriber keeps, per publisher P and per connection, `last` (the
 * highest sequence received) and, while one of its subscriptions matches
 * P's topic, a window starting at `lo`:
 *   - lo is P.sent read just after the sub's ok was handled. Any sequence
 *     above lo was not yet being written when the ok arrived, so it was
 *     published after the ok and the spec (decisions.md 9) says it is
 *     matched against the new subscription. Reading `sent` any later only
 *     raises lo, which requires less: the bound is conservative.
 *   - Per-publisher order (protocol.md, delivery guarantees) means the
 *     sequences seen on one connection strictly increase. One lower than
 *     or equal to `last` is counted as reordered (or duplicated when
 *     equal, e.g. two copies through overlapping subscriptions). A jump
 *     from max(last, lo) to s loses the sequences in between: all were
 *     owed, and order rules out their arriving later.
 *   - Before an unsub (or a reconnect) ends a window, the subscriber reads
 *     hi = P.acked, and waits (bounded) until last >= hi. Those
 *     publications were accepted while the subscription was in effect and
 *     before the unsub was even sent, so they are owed; whatever of
 *     (max(last, lo), hi] has not come by the deadline is counted lost.
 *     Publications accepted later, up to the unsub's ok, may or may not
 *     come: neither is counted.
 *   - A window ended without waiting (an RST reconnect "abruptly", or the
 *     connection failing) is closed at hi = last: only gaps count.
 *   - At the end the publishers stop, wait for their last ok and publish
 *     final = acked; every open window is then closed at hi = final.
 *   - A message for a publisher that no subscription of the connection
 *     matches, while no sub or unsub is in flight, is "stray": it arrived
 *     after the unsub's ok, which the spec rules out.
 * Publishers reconnect only once acked == sent, so every publication of
 * the old connection is in the server before the new one publishes, and
 * sequences stay in order across connections.
 * Queue groups: each message goes to exactly one member, so the check is
 * per group. Static members subscribe before publishing starts and never
 * leave: the group's window for P starts at P.sent read after the first
 * static member's ok. Dynamic members leave with an unsub and read until
 * its ok before closing, so nothing routed to them is lost by design.
 * Every member marks each (P, sequence) it receives in the group's bitmap:
 * a second mark is a duplicate; at the end every sequence of (lo, final]
 * must be marked, or it is lost. Members still check per-connection order
 * and strays.
 * The check needs the run's publishers to be the only ones on its topics:
 * TAG (random per run) makes them private.
 *
 * The server's resources (--server-pid)
 * -------------------------------------
 * VmRSS and Threads of /proc/PID/status are read before any connection
 * opens, every 500 ms during the run (the peak), and after the last soak
 * connection closed, waiting up to 30 s for the thread count to come back
 * to its baseline (the server reaps worker threads asynchronously) and
 * then for RSS to stop falling (no drop over 1% for 2 s). The
 * run passes only when after <= before for threads, and RSS after is at
 * most before + max(--rss-slack-kib (16 MiB), RSS_PEAK_SHARE (50%) of
 * peak - before): glibc keeps freed memory in its arenas and a few thread
 * stacks in its cache, so RSS does not fall all the way back; growth
 * beyond that slack is what a leak looks like. (A sanitized server keeps
 * freed memory on purpose: give it a large --rss-slack-kib.) A stats frame
 * before and after (from a separate connection) must also show the same number
 * of connections and subscriptions.
 *
 * Threads: the main thread plans, starts the actors, samples /proc, moves
 * the phase on and reports. Each actor thread owns its connection and its
 * per-publisher state. Shared between threads: the phase (atomic, with an
 * eventfd per phase so that sleeping actors wake at once), the publishers'
 * counters (atomics), the groups (a mutex each), the totals (atomics) and
 * the error samples (a mutex). Threads come from sb_thread_create
 * (server/thread.h) like the bench's, and are all joined. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "thread.h"

#define ACTOR_STACK (128 * 1024)
#define MIN_CONNS 10
#define MAX_CONNS 100000
#define MAX_FAMILIES 16
#define IN_CAP_START 16384
#define IN_CAP_MAX (8u << 20)
#define PAD_MAX 200              /* filler bytes in a publication's data */
#define CONNECT_MS 10000         /* one connection attempt, greeting read */
#define OP_MS 10000              /* a sub or unsub waiting for its ok */
#define SEND_MS 10000            /* one write waiting for socket room */
#define SUB_ACT_MEAN_S 1.5       /* a subscriber acts this often */
#define PUB_RECONNECT_MEAN_S 8.0 /* a publisher reconnects this often */
#define BURST_MEAN_S 5.0         /* with --burst, it bursts this often */
#define MAX_BURST 100000
#define SAMPLE_MS 500
#define SETTLE_MS 30000    /* the server's threads and stats coming back */
#define RSS_STABLE_MS 2000 /* RSS after: no fall of over 1% for this long */
#define RSS_SLACK_KIB (16 * 1024) /* --rss-slack-kib's default */
#define RSS_PEAK_SHARE 0.5
#define MAX_SAMPLES 20

static const char usage[] =
    "Usage: sockbus-soak --server HOST:PORT --conns N --duration S [OPTIONS]\n"
    "Run N connections with mixed roles (publishers; literal, wildcard and\n"
    "overlapping subscribers; queue-group members), subscribe churn and\n"
    "reconnect churn against sockbusd for S seconds, and check that no\n"
    "message owed to a subscriber was lost, duplicated or reordered.\n"
    "\n"
    "  --server HOST:PORT  server address (default 127.0.0.1:7878)\n"
    "  --conns N           connections, at least 10 (200)\n"
    "  --duration S        seconds of publishing and churn (10)\n"
    "  --rate R            publications per second per publisher (2)\n"
    "  --burst N           also publish N at once in one write, every 5 s\n"
    "                      on average per publisher, and wait for their\n"
    "                      ok (0: never)\n"
    "  --timeout S         bound of every wait for deliveries owed (30)\n"
    "  --server-pid PID    sample that local process's VmRSS and thread\n"
    "                      count before, during and after; after must come\n"
    "                      back to before (threads exactly; RSS within\n"
    "                      max(slack, 50% of peak - before))\n"
    "  --rss-slack-kib KIB RSS growth always allowed (16384)\n"
    "  --seed N            roles and churn come from this seed (random)\n"
    "  --json              print one JSON object on stdout\n"
    "  --help              this text\n"
    "\n"
    "Exit status: 0 when nothing was lost, duplicated, reordered or stray,\n"
    "no error occurred and the server came back to its baseline; 1\n"
    "otherwise; 2 for a bad command line.\n";

/* ---- Options and shared state ------------------------------------------ */

typedef struct opts {
    char host[256];
    char port[16];
    unsigned conns;
    double duration_s;
    double rate;
    double burst;
    double timeout_s;
    long server_pid;
    long rss_slack_kib;
    uint64_t seed;
    bool json;
    bool progress;
} opts;

enum phase { PH_START, PH_RUN, PH_FINISH, PH_DRAIN, PH_STOP, PH_COUNT };

enum role {
    R_PUB,
    R_LITERAL,
    R_FAMILY,
    R_OVERLAP,
    R_FULL,
    R_GROUP_STATIC,
    R_GROUP_DYNAMIC,
    R_COUNT
};

static const char *const role_names[R_COUNT] = {
    "publisher", "literal",      "family",       "overlap",
    "full",      "group_static", "group_dynamic"};

enum kind { K_ALL, K_FAMILY, K_LITERAL };

/* One subscription an actor may hold. */
typedef struct spec {
    enum kind kind;
    int fam; /* K_FAMILY; K_LITERAL: the publisher's family */
    int pub; /* K_LITERAL */
    bool group;
} spec;

typedef struct publisher {
    atomic_uint_fast64_t sent;  /* highest sequence being written */
    atomic_uint_fast64_t acked; /* highest sequence acknowledged */
    atomic_uint_fast64_t final; /* acked at the end (PH_DRAIN on) */
    atomic_bool done;
    int fam;
    char topic[64];
} publisher;

typedef struct group {
    pthread_mutex_t lock;
    bool lo_set;
    uint64_t *lo;    /* per publisher index */
    uint64_t **bits; /* per publisher index: sequences received */
    size_t *words;
    uint64_t dup;
} group;

/* Per connection and publisher: the window of the check. */
typedef struct pstate {
    uint64_t lo, last;
    bool covered;
} pstate;

typedef struct totals {
    atomic_uint_fast64_t delivered, required, lost, reordered, duplicated;
    atomic_uint_fast64_t stray, errors, subs, unsubs, reconnects, resets;
    atomic_uint_fast64_t abrupt, pub_reconnects;
} totals;

typedef struct wire {
    int fd;
    bool watch; /* waits end when the phase moves on (actors) */
    char *in;
    size_t off, len, cap;
} wire;

typedef struct actor {
    int idx;
    enum role role;
    uint64_t rng;
    pthread_t thread;
    bool started;
    wire w;
    unsigned gen; /* connections opened so far */
    atomic_bool ready, checked, finished;
    enum phase seen;    /* phase when the current pump started */
    uint64_t unackable; /* publisher: sent before a failed connection */
    /* Subscriber state. */
    spec want[2];
    bool active[2];
    int nwant;
    int pending; /* want[] with a sub/unsub in flight, or -1 */
    pstate *ps;  /* per publisher index */
    uint64_t next_id, wait_id;
    bool got, op_failed;
    int *dset; /* a drain: publishers and their targets */
    uint64_t *dtarget;
    size_t dn;
    uint64_t delivered, required, lost, reordered, duplicated, stray;
} actor;

static opts o;
static struct sockaddr_storage srv_addr;
static socklen_t srv_alen;
static char tag[16];
static int nfam;
static int npub;
static publisher *pubs;
static group groups[MAX_FAMILIES];
static actor *actors;
static int nactors;
static int role_count[R_COUNT];
static totals tot;
static atomic_int phase;
static int phase_fd[PH_COUNT];
static int main_wake = -1; /* actors write it when something finished */

static pthread_mutex_t samples_lock = PTHREAD_MUTEX_INITIALIZER;
static char *samples[MAX_SAMPLES];
static size_t nsamples;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t ms_ns(double ms)
{
    return (int64_t)(ms * 1e6);
}

static void wake(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

/* Keep the first MAX_SAMPLES problems, with who saw them, for the report;
 * count every error. */
static void problem(bool is_error, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(bool is_error, const char *fmt, ...)
{
    if (is_error)
        atomic_fetch_add(&tot.errors, 1);
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&samples_lock);
    if (nsamples < MAX_SAMPLES)
        samples[nsamples++] = strdup(buf);
    pthread_mutex_unlock(&samples_lock);
}

/* xorshift64*: cheap, and reproducible from --seed. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static double rnd_unit(uint64_t *s)
{
    return (double)(rnd(s) >> 11) / 9007199254740992.0; /* [0, 1) */
}

/* An exponentially distributed delay with the given mean, in ns. */
static int64_t rnd_exp_ns(uint64_t *s, double mean_s)
{
    double u = rnd_unit(s);
    double d = -mean_s * log(1.0 - u);
    if (d > 20 * mean_s)
        d = 20 * mean_s;
    return (int64_t)(d * 1e9);
}

static enum phase cur_phase(void)
{
    return (enum phase)atomic_load(&phase);
}

/* Move to phase `p`; every eventfd up to it is written so that an actor
 * that missed a phase wakes too. */
static void enter_phase(enum phase p)
{
    enum phase old = cur_phase();
    atomic_store(&phase, (int)p);
    for (int i = (int)old + 1; i <= (int)p; i++)
        wake(phase_fd[i]);
}

/* ---- The wire: one non-blocking socket and its input ------------------- */

/* Wait for `events` on w's socket or the deadline; with w->watch also
 * for the next phase. Returns the socket's revents (> 0), 0 when the phase
 * moved on (at once once stopping), or -ETIMEDOUT. */
static int wait_fd(const wire *w, short events, int64_t deadline)
{
    for (;;) {
        enum phase ph = w->watch ? cur_phase() : PH_START;
        if (ph == PH_STOP)
            return 0;
        int64_t left = deadline - now_ns();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p[2] = {
            {.fd = w->fd, .events = events},
            {.fd = w->watch ? phase_fd[ph + 1] : -1, .events = POLLIN},
        };
        int ms = (int)((left + 999999) / 1000000);
        int n = poll(p, 2, ms > 60000 ? 60000 : ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (p[0].revents)
            return p[0].revents;
        if (p[1].revents)
            return 0;
    }
}

static int wire_open(wire *w, int64_t deadline, bool watch)
{
    memset(w, 0, sizeof(*w));
    w->watch = watch;
    w->fd = socket(srv_addr.ss_family,
                   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (w->fd < 0)
        return -errno;
    int one = 1;
    setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = 0;
    if (connect(w->fd, (struct sockaddr *)&srv_addr, srv_alen) < 0) {
        rc = -errno;
        while (rc == -EINPROGRESS) {
            int r = wait_fd(w, POLLOUT, deadline);
            if (r == 0 && cur_phase() != PH_STOP)
                continue;
            if (r <= 0) {
                rc = r == 0 ? -ECANCELED : r;
                break;
            }
            int err = 0;
            socklen_t len = sizeof(err);
            getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            rc = -err;
        }
    }
    if (rc == 0) {
        w->cap = IN_CAP_START;
        w->in = malloc(w->cap);
        if (w->in == NULL)
            rc = -ENOMEM;
    }
    if (rc < 0) {
        close(w->fd);
        w->fd = -1;
    }
    return rc;
}

/* Close; `reset` sends an RST instead of a FIN. */
static void wire_close(wire *w, bool reset)
{
    if (w->fd >= 0) {
        if (reset) {
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(w->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        }
        close(w->fd);
    }
    free(w->in);
    memset(w, 0, sizeof(*w));
    w->fd = -1;
}

static int wire_send(wire *w, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t r = send(w->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno != EAGAIN)
            return -errno;
        int e = wait_fd(w, POLLOUT, deadline);
        if (e == 0 && cur_phase() == PH_STOP)
            return -ECANCELED;
        if (e < 0)
            return e;
    }
    return 0;
}

/* One recv of what has arrived: > 0 bytes, -EAGAIN, -EPIPE at EOF, or
 * another negative errno. */
static int wire_fill(wire *w)
{
    if (w->off > 0 && w->off == w->len)
        w->off = w->len = 0;
    if (w->cap - w->len < 4096 && w->off > 0) {
        memmove(w->in, w->in + w->off, w->len - w->off);
        w->len -= w->off;
        w->off = 0;
    }
    if (w->cap - w->len < 4096) {
        if (w->cap >= IN_CAP_MAX)
            return -ENOBUFS;
        char *nb = realloc(w->in, w->cap * 2);
        if (nb == NULL)
            return -ENOMEM;
        w->in = nb;
        w->cap *= 2;
    }
    ssize_t r = recv(w->fd, w->in + w->len, w->cap - w->len, MSG_DONTWAIT);
    if (r > 0) {
        w->len += (size_t)r;
        return (int)r;
    }
    if (r == 0)
        return -EPIPE;
    return errno == EINTR ? -EAGAIN : -errno;
}

/* The next complete line, NUL-terminated in place, without "\r\n".
 * Returns 1 (line set) or 0 when more bytes are needed. */
static int wire_line(wire *w, char **line, size_t *n)
{
    char *start = w->in + w->off;
    char *nl = memchr(start, '\n', w->len - w->off);
    if (nl == NULL)
        return 0;
    size_t k = (size_t)(nl - start);
    w->off += k + 1;
    if (k > 0 && start[k - 1] == '\r')
        k--;
    start[k] = '\0';
    *line = start;
    *n = k;
    return 1;
}

/* ---- Frames from the server -------------------------------------------- */

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The publisher and sequence of a msg frame we published, checking that
 * its topic is that publisher's. Returns 0 or -1. */
static int parse_msg(const char *line, int *pub, uint64_t *seq)
{
    const char *t = strstr(line, "\"topic\":\"");
    const char *d = strstr(line, "\"data\":{\"p\":");
    if (t == NULL || d == NULL)
        return -1;
    t += 9;
    const char *tend = strchr(t, '"');
    char *end;
    errno = 0;
    long p = strtol(d + 12, &end, 10);
    if (tend == NULL || errno != 0 || p < 0 || p >= npub ||
        !starts_with(end, ",\"s\":"))
        return -1;
    unsigned long long s = strtoull(end + 5, &end, 10);
    if (errno != 0 || s == 0 || *end != ',')
        return -1;
    const char *want = pubs[p].topic;
    if ((size_t)(tend - t) != strlen(want) ||
        strncmp(t, want, strlen(want)) != 0)
        return -1;
    *pub = (int)p;
    *seq = s;
    return 0;
}

static const char *jstr(const cJSON *j, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, field);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- Subscriptions: patterns, coverage, windows ------------------------ */

static bool spec_matches(const spec *s, int p)
{
    switch (s->kind) {
    case K_ALL:
        return true;
    case K_FAMILY:
        return pubs[p].fam == s->fam;
    case K_LITERAL:
        return s->pub == p;
    }
    return false;
}

static void spec_pattern(const spec *s, char *buf, size_t n)
{
    switch (s->kind) {
    case K_ALL:
        snprintf(buf, n, "soak.%s.>", tag);
        return;
    case K_FAMILY:
        snprintf(buf, n, "soak.%s.t%d.*", tag, s->fam);
        return;
    case K_LITERAL:
        snprintf(buf, n, "%s", pubs[s->pub].topic);
        return;
    }
}

/* True when a plain (not group) subscription other than want[except] that
 * is in effect matches publisher p. */
static bool plain_match(const actor *a, int p, int except)
{
    for (int j = 0; j < a->nwant; j++)
        if (j != except && a->active[j] && !a->want[j].group &&
            spec_matches(&a->want[j], p))
            return true;
    return false;
}

/* May a message from p arrive now? Yes under any subscription in effect
 * or in flight (a group's too). */
static bool allowed(const actor *a, int p)
{
    for (int j = 0; j < a->nwant; j++)
        if ((a->active[j] || a->pending == j) && spec_matches(&a->want[j], p))
            return true;
    return false;
}

/* End p's window at hi: (lo, hi] was owed; what is beyond `last` was not
 * delivered. */
static void close_window(actor *a, int p, uint64_t hi, const char *when)
{
    pstate *st = &a->ps[p];
    if (!st->covered)
        return;
    st->covered = false;
    if (hi <= st->lo)
        return;
    a->required += hi - st->lo;
    uint64_t got = st->last > st->lo ? st->last : st->lo;
    if (hi > got) {
        a->lost += hi - got;
        problem(false,
                "actor %d (%s): lost %" PRIu64 " from publisher %d: "
                "received up to %" PRIu64 ", owed (%" PRIu64 ", %" PRIu64
                "] (%s)",
                a->idx, role_names[a->role], hi - got, p, st->last, st->lo, hi,
                when);
    }
}

static void group_activate(int fam)
{
    group *g = &groups[fam];
    pthread_mutex_lock(&g->lock);
    if (!g->lo_set) {
        for (int p = 0; p < npub; p++)
            if (pubs[p].fam == fam)
                g->lo[p] = atomic_load(&pubs[p].sent);
        g->lo_set = true;
    }
    pthread_mutex_unlock(&g->lock);
}

/* Mark (p, s) received by a member of group `fam`. False when it was
 * already (a duplicate) or memory ran out. */
static bool group_mark(int fam, int p, uint64_t s)
{
    group *g = &groups[fam];
    size_t word = (size_t)(s / 64);
    uint64_t bit = 1ULL << (s % 64);
    bool fresh = false;
    pthread_mutex_lock(&g->lock);
    if (word >= g->words[p]) {
        size_t nw = (word + 1) * 2;
        uint64_t *nb = realloc(g->bits[p], nw * sizeof(*nb));
        if (nb != NULL) {
            memset(nb + g->words[p], 0, (nw - g->words[p]) * sizeof(*nb));
            g->bits[p] = nb;
            g->words[p] = nw;
        }
    }
    if (word < g->words[p]) {
        fresh = (g->bits[p][word] & bit) == 0;
        g->bits[p][word] |= bit;
        if (!fresh)
            g->dup++;
    }
    pthread_mutex_unlock(&g->lock);
    return fresh;
}

/* Sequences of (lo, final] that no member of group `fam` received, and
 * how many were owed. */
static uint64_t group_missing(int fam, uint64_t *owed)
{
    group *g = &groups[fam];
    uint64_t missing = 0;
    *owed = 0;
    pthread_mutex_lock(&g->lock);
    for (int p = 0; g->lo_set && p < npub; p++) {
        if (pubs[p].fam != fam)
            continue;
        uint64_t fin = atomic_load(&pubs[p].final);
        for (uint64_t s = g->lo[p] + 1; s <= fin; s++) {
            size_t word = (size_t)(s / 64);
            (*owed)++;
            if (word >= g->words[p] ||
                (g->bits[p][word] & (1ULL << (s % 64))) == 0)
                missing++;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return missing;
}

/* ---- Handling what the server sends ------------------------------------ */

static int send_text(actor *a, const char *s)
{
    return wire_send(&a->w, s, strlen(s), now_ns() + ms_ns(SEND_MS));
}

static void on_msg(actor *a, int p, uint64_t s)
{
    pstate *st = &a->ps[p];
    a->delivered++;
    if (a->want[0].group && !group_mark(a->want[0].fam, p, s))
        problem(false,
                "actor %d (%s): publisher %d seq %" PRIu64
                " delivered twice to group %d",
                a->idx, role_names[a->role], p, s, a->want[0].fam);
    if (s <= st->last) {
        if (s == st->last)
            a->duplicated++;
        else
            a->reordered++;
        problem(false,
                "actor %d (%s): publisher %d seq %" PRIu64 " after %" PRIu64
                " (%s)",
                a->idx, role_names[a->role], p, s, st->last,
                s == st->last ? "duplicate" : "reordered");
        return;
    }
    if (!allowed(a, p)) {
        a->stray++;
        problem(false,
                "actor %d (%s): publisher %d seq %" PRIu64
                " with no subscription in effect",
                a->idx, role_names[a->role], p, s);
    }
    if (st->covered) {
        uint64_t expect = (st->last > st->lo ? st->last : st->lo) + 1;
        if (s > expect) {
            a->lost += s - expect;
            problem(false,
                    "actor %d (%s): publisher %d jumped from %" PRIu64
                    " to %" PRIu64 " (window from %" PRIu64 ")",
                    a->idx, role_names[a->role], p, expect - 1, s, st->lo);
        }
    }
    st->last = s;
}

/* The answer to our sub or unsub: the subscription changes state at once,
 * before any later frame is handled. */
static void on_op_done(actor *a, bool ok)
{
    int j = a->pending;
    a->got = true;
    a->op_failed = !ok;
    if (!ok || j < 0)
        return;
    a->active[j] = !a->active[j];
    if (!a->active[j])
        return;
    const spec *s = &a->want[j];
    if (s->group) {
        if (a->role == R_GROUP_STATIC)
            group_activate(s->fam);
        return;
    }
    for (int p = 0; p < npub; p++) {
        pstate *st = &a->ps[p];
        if (spec_matches(s, p) && !st->covered) {
            st->covered = true;
            st->lo = atomic_load(&pubs[p].sent);
        }
    }
}

static void on_ok(actor *a, uint64_t id)
{
    if (a->role == R_PUB) {
        publisher *p = &pubs[a->idx];
        if (id <= atomic_load(&p->acked) || id > atomic_load(&p->sent))
            problem(true, "publisher %d: ok for id %" PRIu64 " unexpected",
                    a->idx, id);
        else
            atomic_store(&p->acked, id);
        return;
    }
    if (a->wait_id != 0 && id == a->wait_id) {
        on_op_done(a, true);
        return;
    }
    problem(true, "actor %d (%s): unexpected ok id %" PRIu64, a->idx,
            role_names[a->role], id);
}

static int on_other(actor *a, const char *line, size_t n)
{
    cJSON *j = cJSON_ParseWithLength(line, n);
    const char *op = jstr(j, "op");
    int rc = 0;
    if (op == NULL) {
        problem(true, "actor %d (%s): not a frame: %.200s", a->idx,
                role_names[a->role], line);
    } else if (strcmp(op, "ping") == 0) {
        rc = send_text(a, "{\"op\":\"pong\"}\n");
    } else if (strcmp(op, "err") == 0) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
        problem(true, "actor %d (%s): server error %s: %s", a->idx,
                role_names[a->role], jstr(j, "code") ? jstr(j, "code") : "?",
                jstr(j, "msg") ? jstr(j, "msg") : "?");
        if (cJSON_IsNumber(id) && a->wait_id != 0 &&
            (uint64_t)id->valuedouble == a->wait_id)
            on_op_done(a, false);
    } else if (strcmp(op, "ok") == 0 || strcmp(op, "msg") == 0) {
        problem(true, "actor %d (%s): unexpected frame: %.200s", a->idx,
                role_names[a->role], line);
    } /* pong and info need nothing */
    cJSON_Delete(j);
    return rc;
}

static int handle_line(actor *a, char *line, size_t n)
{
    if (n == 0)
        return 0;
    if (starts_with(line, "{\"op\":\"msg\",")) {
        int p;
        uint64_t s;
        if (a->role == R_PUB || parse_msg(line, &p, &s) < 0)
            return on_other(a, line, n);
        on_msg(a, p, s);
        return 0;
    }
    if (starts_with(line, "{\"op\":\"ok\",\"id\":")) {
        char *end;
        errno = 0;
        unsigned long long id = strtoull(line + 16, &end, 10);
        if (errno == 0 && strcmp(end, "}") == 0) {
            on_ok(a, id);
            return 0;
        }
    }
    return on_other(a, line, n);
}

/* Handle frames until done(a), the deadline, or (with done NULL) a phase
 * change. Returns 0, -ETIMEDOUT (done not reached in time), -ECANCELED
 * (stopping), or the connection's error (-EPIPE: the server closed it). */
static int pump(actor *a, int64_t deadline, bool (*done)(const actor *))
{
    enum phase entry = cur_phase();
    for (;;) {
        char *line;
        size_t n;
        while (wire_line(&a->w, &line, &n) > 0) {
            int rc = handle_line(a, line, n);
            if (rc < 0)
                return rc;
        }
        if (done != NULL && done(a))
            return 0;
        enum phase ph = cur_phase();
        if (ph == PH_STOP)
            return -ECANCELED;
        if (done == NULL && ph != entry)
            return 0;
        int r = wait_fd(&a->w, POLLIN, deadline);
        if (r == -ETIMEDOUT)
            return done != NULL ? -ETIMEDOUT : 0;
        if (r < 0)
            return r;
        if (r == 0)
            continue;
        int f = wire_fill(&a->w);
        if (f < 0 && f != -EAGAIN)
            return f;
    }
}

/* Until the deadline or a phase change. */
static int idle_until(actor *a, int64_t deadline)
{
    return pump(a, deadline, NULL);
}

static bool got_answer(const actor *a)
{
    return a->got;
}

/* ---- Subscriber actions ------------------------------------------------ */

static int open_conn(actor *a)
{
    int rc = wire_open(&a->w, now_ns() + ms_ns(CONNECT_MS), true);
    if (rc < 0)
        return rc;
    a->gen++;
    char buf[128];
    snprintf(buf, sizeof(buf), "{\"op\":\"connect\",\"name\":\"soak-%s-%d\"}\n",
             role_names[a->role], a->idx);
    return send_text(a, buf);
}

/* Send sub or unsub for want[j] and wait for the answer. */
static int sub_op(actor *a, int j, bool unsub)
{
    char pat[128], frame[320], grp[64] = "";
    spec_pattern(&a->want[j], pat, sizeof(pat));
    if (a->want[j].group)
        snprintf(grp, sizeof(grp), ",\"group\":\"soak-%s-g%d\"", tag,
                 a->want[j].fam);
    a->wait_id = ++a->next_id;
    snprintf(frame, sizeof(frame),
             "{\"op\":\"%s\",\"topic\":\"%s\"%s,\"id\":%" PRIu64 "}\n",
             unsub ? "unsub" : "sub", pat, grp, a->wait_id);
    a->pending = j;
    a->got = a->op_failed = false;
    int rc = send_text(a, frame);
    if (rc == 0)
        rc = pump(a, now_ns() + ms_ns(OP_MS), got_answer);
    a->pending = -1;
    a->wait_id = 0;
    if (rc == -ETIMEDOUT)
        problem(true, "actor %d (%s): no answer to %s %s within %d ms", a->idx,
                role_names[a->role], unsub ? "unsub" : "sub", pat, OP_MS);
    if (rc == 0 && a->op_failed)
        rc = -EPROTO;
    if (rc == 0)
        atomic_fetch_add(unsub ? &tot.unsubs : &tot.subs, 1);
    return rc;
}

static bool drained(const actor *a)
{
    for (size_t k = 0; k < a->dn; k++)
        if (a->ps[a->dset[k]].last < a->dtarget[k])
            return false;
    return true;
}

/* Close the windows of the publishers that lose coverage when want[except]
 * goes (every window with except -1), after waiting (bounded) for what the
 * server owes them: hi = acked now, or the final sequence at the end
 * (use_final). When the connection fails meanwhile, the windows end at
 * what arrived: the failure is reported as an error instead. */
static int drain_windows(actor *a, int except, bool use_final)
{
    a->dn = 0;
    for (int p = 0; p < npub; p++) {
        pstate *st = &a->ps[p];
        if (!st->covered || (except >= 0 && plain_match(a, p, except)))
            continue;
        if (except >= 0 && !spec_matches(&a->want[except], p))
            continue;
        uint64_t hi = use_final ? atomic_load(&pubs[p].final)
                                : atomic_load(&pubs[p].acked);
        a->dset[a->dn] = p;
        a->dtarget[a->dn++] = hi > st->lo ? hi : 0;
    }
    int64_t deadline = now_ns() + (int64_t)(o.timeout_s * 1e9);
    int rc = pump(a, deadline, drained);
    for (size_t k = 0; k < a->dn; k++) {
        int p = a->dset[k];
        uint64_t hi = a->dtarget[k] ? a->dtarget[k] : a->ps[p].lo;
        if (rc == 0 || rc == -ETIMEDOUT)
            close_window(a, p, hi, "not delivered in time");
        else
            close_window(a, p, a->ps[p].last, "abandoned");
    }
    a->dn = 0;
    return rc == -ETIMEDOUT ? 0 : rc;
}

/* End every window at what has arrived (no wait): nothing more is owed. */
static void abandon_windows(actor *a)
{
    for (int p = 0; a->ps != NULL && p < npub; p++)
        close_window(a, p, a->ps[p].last, "abandoned");
}

static void forget_conn(actor *a)
{
    abandon_windows(a);
    if (a->ps != NULL)
        memset(a->ps, 0, (size_t)npub * sizeof(*a->ps));
    if (a->role == R_PUB) /* what was not acked may never be */
        a->unackable = atomic_load(&pubs[a->idx].sent);
    a->active[0] = a->active[1] = false;
    a->pending = -1;
    a->wait_id = 0;
}

static int subscribe_all(actor *a)
{
    for (int j = 0; j < a->nwant; j++) {
        int rc = sub_op(a, j, false);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int sub_toggle(actor *a)
{
    int j = a->nwant == 2 ? (int)(rnd(&a->rng) % 2) : 0;
    if (a->active[j]) {
        int rc = a->want[j].group ? 0 : drain_windows(a, j, false);
        return rc < 0 ? rc : sub_op(a, j, true);
    }
    if (a->role == R_LITERAL)
        a->want[j].pub = (int)(rnd(&a->rng) % (uint64_t)npub);
    return sub_op(a, j, false);
}

/* Close the connection (FIN or RST; sometimes without waiting for what is
 * owed) and open a new one with the same subscriptions. */
static int sub_reconnect(actor *a)
{
    bool reset = rnd(&a->rng) % 2 == 0;
    bool abrupt = reset && rnd(&a->rng) % 4 == 0;
    int rc = 0;
    if (a->role == R_GROUP_DYNAMIC && a->active[0])
        rc = sub_op(a, 0, true); /* leave first: nothing is lost */
    else if (!abrupt)
        rc = drain_windows(a, -1, false);
    if (rc < 0)
        return rc;
    abandon_windows(a);
    atomic_fetch_add(&tot.abrupt, abrupt);
    wire_close(&a->w, reset);
    forget_conn(a);
    atomic_fetch_add(&tot.reconnects, 1);
    atomic_fetch_add(&tot.resets, reset);
    if (a->role == R_LITERAL)
        a->want[0].pub = (int)(rnd(&a->rng) % (uint64_t)npub);
    rc = open_conn(a);
    return rc < 0 ? rc : subscribe_all(a);
}

/* After an unexpected failure: note it, forget the connection, and try to
 * get back to work. Returns 0 or the error of the last attempt. */
static int recover(actor *a, int err, const char *during)
{
    char buf[128];
    /* _GNU_SOURCE: the GNU strerror_r, which returns the text. */
    const char *why = err == -EPIPE       ? "the server closed it"
                      : err == -ETIMEDOUT ? "timed out"
                                          : strerror_r(-err, buf, sizeof(buf));
    problem(true, "actor %d (%s): connection failed during %s: %s", a->idx,
            role_names[a->role], during, why);
    forget_conn(a);
    wire_close(&a->w, false);
    int rc = -EIO;
    for (int tries = 0; tries < 3 && cur_phase() < PH_STOP; tries++) {
        rc = open_conn(a);
        if (rc == 0)
            rc = subscribe_all(a);
        if (rc == 0)
            return 0;
        forget_conn(a);
        wire_close(&a->w, false);
        if (rc == -ECANCELED)
            break;
        poll(NULL, 0, 200);
    }
    return rc;
}

static void sub_run(actor *a)
{
    while (cur_phase() == PH_RUN) {
        int64_t next = now_ns() + rnd_exp_ns(&a->rng, SUB_ACT_MEAN_S);
        int rc = idle_until(a, next);
        const char *what = "idle";
        if (rc == 0 && cur_phase() == PH_RUN && a->role != R_GROUP_STATIC) {
            bool re = rnd(&a->rng) % 5 == 0;
            rc = re ? sub_reconnect(a) : sub_toggle(a);
            what = re ? "reconnect" : "sub/unsub";
        }
        if (rc == -ECANCELED)
            return;
        if (rc < 0 && recover(a, rc, what) < 0)
            return;
    }
}

static void sub_main(actor *a)
{
    int rc = open_conn(a);
    if (rc == 0)
        rc = subscribe_all(a);
    atomic_store(&a->ready, true);
    wake(main_wake);
    if (rc < 0 && rc != -ECANCELED && recover(a, rc, "start") < 0)
        goto done;
    while (cur_phase() == PH_START)
        if (idle_until(a, INT64_MAX) < 0)
            break;
    sub_run(a);
    while (cur_phase() == PH_FINISH && a->w.fd >= 0)
        if (idle_until(a, INT64_MAX) < 0)
            break;
    if (cur_phase() == PH_DRAIN && a->w.fd >= 0) {
        rc = drain_windows(a, -1, true);
        if (rc < 0 && rc != -ECANCELED)
            problem(true, "actor %d (%s): connection failed at the end", a->idx,
                    role_names[a->role]);
    }
done:
    abandon_windows(a);
    atomic_store(&a->checked, true);
    wake(main_wake);
    while (a->w.fd >= 0 && cur_phase() < PH_STOP)
        if (idle_until(a, INT64_MAX) < 0)
            break;
}

/* ---- Publishers -------------------------------------------------------- */

static bool all_acked(const actor *a)
{
    const publisher *p = &pubs[a->idx];
    uint64_t sent = atomic_load(&p->sent);
    return atomic_load(&p->acked) == sent || a->unackable == sent;
}

/* Publish the next `k` sequences in one write. `sent` moves before the
 * write: see the top of the file. */
static int publish(actor *a, int k)
{
    publisher *p = &pubs[a->idx];
    size_t cap = (size_t)k * (PAD_MAX + 256);
    char *buf = malloc(cap);
    char pad[PAD_MAX + 1];
    size_t n = 0;
    uint64_t seq = atomic_load(&p->sent);
    if (buf == NULL)
        return -ENOMEM;
    for (int i = 0; i < k; i++) {
        size_t padn = (size_t)(rnd(&a->rng) % (PAD_MAX + 1));
        memset(pad, 'x', padn);
        pad[padn] = '\0';
        seq++;
        int w = snprintf(buf + n, cap - n,
                         "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":{\"p\":%d,"
                         "\"s\":%" PRIu64
                         ",\"g\":%u,\"x\":\"%s\"},\"id\":%" PRIu64 "}\n",
                         p->topic, a->idx, seq, a->gen, pad, seq);
        n += (size_t)w;
    }
    atomic_store(&p->sent, seq);
    int rc = wire_send(&a->w, buf, n, now_ns() + ms_ns(SEND_MS));
    free(buf);
    return rc;
}

static int pub_flush(actor *a)
{
    int rc = pump(a, now_ns() + (int64_t)(o.timeout_s * 1e9), all_acked);
    if (rc == -ETIMEDOUT)
        problem(true, "publisher %d: publications not acknowledged in %.0f s",
                a->idx, o.timeout_s);
    return rc;
}

static int pub_reconnect(actor *a)
{
    int rc = pub_flush(a);
    if (rc < 0)
        return rc;
    wire_close(&a->w, rnd(&a->rng) % 2 == 0);
    atomic_fetch_add(&tot.pub_reconnects, 1);
    return open_conn(a);
}

static void pub_run(actor *a)
{
    int64_t interval = (int64_t)(1e9 / o.rate);
    int64_t next_send =
        now_ns() + (int64_t)(rnd_unit(&a->rng) * (double)interval);
    int64_t next_re = now_ns() + rnd_exp_ns(&a->rng, PUB_RECONNECT_MEAN_S);
    int64_t next_burst =
        o.burst > 0 ? now_ns() + rnd_exp_ns(&a->rng, BURST_MEAN_S) : INT64_MAX;
    while (cur_phase() == PH_RUN) {
        int64_t now = now_ns();
        int rc = 0;
        const char *what = "publishing";
        if (now >= next_burst) {
            /* A batch, then wait for its last ok, as batching clients
             * do: sending nothing meanwhile, the publisher depends on
             * the server to finish the batch by itself. */
            rc = publish(a, (int)o.burst);
            if (rc == 0)
                rc = pub_flush(a);
            what = "a burst";
            next_burst = now_ns() + rnd_exp_ns(&a->rng, BURST_MEAN_S);
        } else if (now >= next_send) {
            int k = (int)((now - next_send) / interval) + 1;
            k = k > 8 ? 8 : k;
            next_send += k * interval;
            if (next_send < now - 1000000000)
                next_send = now; /* far behind: do not burst */
            rc = publish(a, k);
        } else if (now >= next_re) {
            rc = pub_reconnect(a);
            what = "reconnect";
            next_re = now_ns() + rnd_exp_ns(&a->rng, PUB_RECONNECT_MEAN_S);
        } else {
            int64_t next = next_send < next_re ? next_send : next_re;
            rc = idle_until(a, next < next_burst ? next : next_burst);
        }
        if (rc == -ECANCELED)
            return;
        if (rc < 0 && recover(a, rc, what) < 0)
            return;
    }
}

static void pub_main(actor *a)
{
    publisher *p = &pubs[a->idx];
    int rc = open_conn(a);
    atomic_store(&a->ready, true);
    wake(main_wake);
    if (rc < 0 && rc != -ECANCELED && recover(a, rc, "start") < 0)
        goto done;
    while (cur_phase() == PH_START)
        if (idle_until(a, INT64_MAX) < 0)
            break;
    pub_run(a);
    if (cur_phase() < PH_STOP && a->w.fd >= 0)
        pub_flush(a);
done:
    atomic_store(&p->final, atomic_load(&p->acked));
    atomic_store(&p->done, true);
    wake(main_wake);
    while (a->w.fd >= 0 && cur_phase() < PH_STOP)
        if (idle_until(a, INT64_MAX) < 0)
            break;
}

static void *actor_main(void *arg)
{
    actor *a = arg;
    if (a->role == R_PUB)
        pub_main(a);
    else
        sub_main(a);
    wire_close(&a->w, false);
    atomic_fetch_add(&tot.delivered, a->delivered);
    atomic_fetch_add(&tot.required, a->required);
    atomic_fetch_add(&tot.lost, a->lost);
    atomic_fetch_add(&tot.reordered, a->reordered);
    atomic_fetch_add(&tot.duplicated, a->duplicated);
    atomic_fetch_add(&tot.stray, a->stray);
    atomic_store(&a->finished, true);
    wake(main_wake);
    return NULL;
}

/* ---- Planning ---------------------------------------------------------- */

static enum role
role_of(int i, int nfamily, int noverlap, int nfull, int ngroup)
{
    int edges[] = {npub, nfamily, noverlap, nfull, 2 * nfam, ngroup - 2 * nfam};
    enum role roles[] = {R_PUB,  R_FAMILY,       R_OVERLAP,
                         R_FULL, R_GROUP_STATIC, R_GROUP_DYNAMIC};
    for (int k = 0; k < 6; k++) {
        if (i < edges[k])
            return roles[k];
        i -= edges[k];
    }
    return R_LITERAL;
}

static int plan_actor(actor *a, int i, enum role r)
{
    a->idx = i;
    a->role = r;
    a->rng = o.seed ^ (UINT64_C(0x9E3779B97F4A7C15) * (uint64_t)(i + 1));
    rnd(&a->rng);
    a->w.fd = -1;
    a->pending = -1;
    int fam = (int)(rnd(&a->rng) % (uint64_t)nfam);
    int pub = (int)(rnd(&a->rng) % (uint64_t)npub);
    switch (r) {
    case R_PUB:
        a->idx = i; /* publisher index == actor index for the first npub */
        return 0;
    case R_LITERAL:
        a->want[0] = (spec){K_LITERAL, pubs[pub].fam, pub, false};
        a->nwant = 1;
        break;
    case R_FAMILY:
        a->want[0] = (spec){K_FAMILY, fam, 0, false};
        a->nwant = 1;
        break;
    case R_OVERLAP: {
        /* Publishers of family f are f, f + nfam, f + 2 nfam, ... */
        uint64_t members = (uint64_t)((npub - fam + nfam - 1) / nfam);
        pub = fam + nfam * (int)(rnd(&a->rng) % members);
        a->want[0] = (spec){K_FAMILY, fam, 0, false};
        a->want[1] = (spec){K_LITERAL, fam, pub, false};
        a->nwant = 2;
        break;
    }
    case R_FULL:
        a->want[0] = (spec){K_ALL, 0, 0, false};
        a->nwant = 1;
        break;
    case R_GROUP_STATIC:
    case R_GROUP_DYNAMIC:
        a->want[0] = (spec){K_FAMILY, i % nfam, 0, true};
        a->nwant = 1;
        break;
    default:
        break;
    }
    a->ps = calloc((size_t)npub, sizeof(*a->ps));
    a->dset = calloc((size_t)npub, sizeof(*a->dset));
    a->dtarget = calloc((size_t)npub, sizeof(*a->dtarget));
    return a->ps && a->dset && a->dtarget ? 0 : -ENOMEM;
}

static int plan(void)
{
    int n = (int)o.conns;
    nfam = n / 100 < 1 ? 1 : n / 100 > MAX_FAMILIES ? MAX_FAMILIES : n / 100;
    npub = n / 5;
    int nfamily = n / 10, noverlap = n / 10, nfull = 1 + n / 1000;
    int ngroup = n / 5 > 2 * nfam ? n / 5 : 2 * nfam;
    if (npub + nfamily + noverlap + nfull + ngroup > n)
        return -EINVAL;
    pubs = calloc((size_t)npub, sizeof(*pubs));
    actors = calloc((size_t)n, sizeof(*actors));
    if (pubs == NULL || actors == NULL)
        return -ENOMEM;
    for (int p = 0; p < npub; p++) {
        pubs[p].fam = p % nfam;
        snprintf(pubs[p].topic, sizeof(pubs[p].topic), "soak.%s.t%d.p%d", tag,
                 p % nfam, p);
    }
    for (int f = 0; f < nfam; f++) {
        group *g = &groups[f];
        pthread_mutex_init(&g->lock, NULL);
        g->lo = calloc((size_t)npub, sizeof(*g->lo));
        g->bits = calloc((size_t)npub, sizeof(*g->bits));
        g->words = calloc((size_t)npub, sizeof(*g->words));
        if (!g->lo || !g->bits || !g->words)
            return -ENOMEM;
    }
    nactors = n;
    for (int i = 0; i < n; i++) {
        enum role r = role_of(i, nfamily, noverlap, nfull, ngroup);
        role_count[r]++;
        if (plan_actor(&actors[i], i, r) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* ---- The server's side: /proc and stats -------------------------------- */

typedef struct proc_sample {
    long rss_kib, threads;
} proc_sample;

typedef struct resources {
    proc_sample before, peak, after;
    bool threads_back;
    long rss_limit_kib;
} resources;

static proc_sample proc_read(void)
{
    proc_sample s = {-1, -1};
    if (o.server_pid <= 0)
        return s;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", o.server_pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return s;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            s.rss_kib = atol(line + 6);
        else if (strncmp(line, "Threads:", 8) == 0)
            s.threads = atol(line + 8);
    }
    fclose(f);
    return s;
}

static void proc_peak(resources *r)
{
    proc_sample s = proc_read();
    if (s.rss_kib > r->peak.rss_kib)
        r->peak.rss_kib = s.rss_kib;
    if (s.threads > r->peak.threads)
        r->peak.threads = s.threads;
}

typedef struct server_stats {
    long long connections, subscriptions, slow_consumers, dropped, msgs_in;
    long long msgs_out;
    bool ok;
} server_stats;

static long long jnum(const cJSON *j, const char *f)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, f);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : -1;
}

/* One stats frame from a connection of its own (which it counts). */
static server_stats fetch_stats(void)
{
    server_stats st = {0};
    wire ww, *w = &ww;
    int64_t deadline = now_ns() + ms_ns(CONNECT_MS);
    if (wire_open(w, deadline, false) < 0)
        return st;
    if (wire_send(w, "{\"op\":\"stats\"}\n", 15, deadline) == 0) {
        char *line;
        size_t n;
        while (!st.ok) {
            if (wire_line(w, &line, &n) > 0) {
                if (!starts_with(line, "{\"op\":\"stats\""))
                    continue;
                cJSON *j = cJSON_ParseWithLength(line, n);
                st = (server_stats){jnum(j, "connections"),
                                    jnum(j, "subscriptions"),
                                    jnum(j, "slow_consumers"),
                                    jnum(j, "dropped"),
                                    jnum(j, "msgs_in"),
                                    jnum(j, "msgs_out"),
                                    j != NULL};
                cJSON_Delete(j);
                continue;
            }
            if (wait_fd(w, POLLIN, deadline) <= 0)
                break;
            int f = wire_fill(w);
            if (f < 0 && f != -EAGAIN)
                break;
        }
    }
    wire_close(w, false);
    return st;
}

/* ---- The main thread --------------------------------------------------- */

static int sig_fd = -1;
static bool interrupted;

/* Sleep until `deadline` (ns) or until an actor writes main_wake,
 * sampling the server. Returns false once SIGINT/SIGTERM arrived. */
static bool main_wait(resources *r, int64_t deadline)
{
    int64_t left = deadline - now_ns();
    if (left < 0)
        left = 0;
    int ms = (int)(left / 1000000);
    struct pollfd p[2] = {{.fd = sig_fd, .events = POLLIN},
                          {.fd = main_wake, .events = POLLIN}};
    int n = poll(p, 2, ms > SAMPLE_MS ? SAMPLE_MS : ms);
    if (n > 0 && (p[1].revents & POLLIN)) {
        uint64_t v;
        if (read(main_wake, &v, sizeof(v)) < 0) {
            /* nothing: the counter is only a doorbell */
        }
    }
    proc_peak(r);
    if (n > 0 && (p[0].revents & POLLIN))
        interrupted = true;
    return !interrupted;
}

static int count_flag(size_t off, bool pubs_only, bool subs_only)
{
    int n = 0;
    for (int i = 0; i < nactors; i++) {
        actor *a = &actors[i];
        if ((pubs_only && a->role != R_PUB) || (subs_only && a->role == R_PUB))
            continue;
        n += atomic_load((atomic_bool *)(void *)((char *)a + off));
    }
    return n;
}

static int pubs_done(void)
{
    int n = 0;
    for (int p = 0; p < npub; p++)
        n += atomic_load(&pubs[p].done);
    return n;
}

static uint64_t groups_missing(uint64_t *owed)
{
    uint64_t missing = 0, total = 0;
    for (int f = 0; f < nfam; f++) {
        uint64_t ow;
        missing += group_missing(f, &ow);
        total += ow;
    }
    *owed = total;
    return missing;
}

static uint64_t published(void)
{
    uint64_t n = 0;
    for (int p = 0; p < npub; p++)
        n += atomic_load(&pubs[p].sent);
    return n;
}

static void progress(int64_t t0, resources *r)
{
    if (!o.progress)
        return;
    proc_sample s = proc_read();
    fprintf(stderr,
            "soak: %5.0f s published=%" PRIu64 " subs=%" PRIu64
            " unsubs=%" PRIu64 " reconnects=%" PRIu64 " errors=%" PRIu64
            " rss_kib=%ld threads=%ld (peak %ld)\n",
            (double)(now_ns() - t0) / 1e9, published(),
            (uint64_t)atomic_load(&tot.subs),
            (uint64_t)atomic_load(&tot.unsubs),
            (uint64_t)atomic_load(&tot.reconnects),
            (uint64_t)atomic_load(&tot.errors), s.rss_kib, s.threads,
            r->peak.threads);
}

static int start_actors(void)
{
    for (int i = 0; i < nactors; i++) {
        char name[16];
        snprintf(name, sizeof(name), "soak-%d", i);
        int rc = sb_thread_create(&actors[i].thread, name, ACTOR_STACK,
                                  actor_main, &actors[i]);
        if (rc < 0) {
            problem(true, "cannot start thread %d: %s", i, strerror(-rc));
            return rc;
        }
        actors[i].started = true;
    }
    return 0;
}

/* Wait until `cond()` or the deadline. Returns cond(). */
static bool wait_for(resources *r, bool (*cond)(void), int64_t deadline)
{
    while (!cond() && now_ns() < deadline && main_wait(r, deadline))
        ;
    return cond();
}

static bool all_ready(void)
{
    return count_flag(offsetof(actor, ready), false, false) == nactors;
}

static bool all_pubs_done(void)
{
    return pubs_done() == npub;
}

static bool all_checked(void)
{
    uint64_t owed;
    return count_flag(offsetof(actor, checked), false, true) ==
               nactors - npub &&
           groups_missing(&owed) == 0;
}

static bool all_finished(void)
{
    return count_flag(offsetof(actor, finished), false, false) == nactors;
}

/* The whole run, phase by phase. Returns false if it had to stop early. */
static bool run(resources *r)
{
    int64_t t = now_ns();
    int64_t bound = (int64_t)(o.timeout_s * 1e9);
    if (start_actors() < 0)
        return false;
    if (!wait_for(r, all_ready, t + bound + ms_ns(CONNECT_MS))) {
        problem(true, "only %d of %d connections ready in time",
                count_flag(offsetof(actor, ready), false, false), nactors);
        return false;
    }
    int64_t t0 = now_ns(), end = t0 + (int64_t)(o.duration_s * 1e9);
    int64_t next_progress = t0 + 10 * (int64_t)1000000000;
    enter_phase(PH_RUN);
    while (now_ns() < end && main_wait(r, end)) {
        if (now_ns() >= next_progress) {
            progress(t0, r);
            next_progress += 10 * (int64_t)1000000000;
        }
    }
    if (interrupted)
        return false;
    enter_phase(PH_FINISH);
    if (!wait_for(r, all_pubs_done, now_ns() + bound + ms_ns(SEND_MS)))
        problem(true, "only %d of %d publishers finished in time", pubs_done(),
                npub);
    enter_phase(PH_DRAIN);
    if (!wait_for(r, all_checked, now_ns() + bound + ms_ns(OP_MS)))
        problem(true, "deliveries owed did not all arrive within %.0f s",
                o.timeout_s);
    return !interrupted;
}

/* Stop every actor and join them, bounded: a thread that does not finish
 * is reported and left (the process exits anyway). */
static bool stop_actors(resources *r)
{
    enter_phase(PH_STOP);
    bool all = wait_for(r, all_finished, now_ns() + ms_ns(SETTLE_MS));
    if (!all) {
        problem(true, "%d actor threads did not stop in time",
                nactors - count_flag(offsetof(actor, finished), 0, 0));
        return false;
    }
    for (int i = 0; i < nactors; i++)
        if (actors[i].started)
            sb_thread_join(actors[i].thread);
    return true;
}

/* Once the threads are back, RSS still falls for a while (the server's
 * reaper unmaps stacks and its bus frees connections after the threads
 * have exited): sample it until it has not fallen for RSS_STABLE_MS, and
 * keep the lowest value. Bounded by `deadline`. */
static void settle_rss(resources *r, int64_t deadline)
{
    int64_t stable_since = now_ns();
    while (now_ns() - stable_since < ms_ns(RSS_STABLE_MS) &&
           now_ns() < deadline && !interrupted) {
        poll(NULL, 0, 250);
        proc_sample s = proc_read();
        if (s.rss_kib >= 0 && s.rss_kib < r->after.rss_kib) {
            if (s.rss_kib < r->after.rss_kib - r->after.rss_kib / 100)
                stable_since = now_ns(); /* fell by more than 1% */
            r->after.rss_kib = s.rss_kib;
        }
    }
}

/* After the connections closed: wait for the server's thread count to
 * come back, for its stats to show our connections and subscriptions
 * gone, and for its RSS to stop falling. */
static void
settle(resources *r, const server_stats *before, server_stats *after)
{
    int64_t deadline = now_ns() + ms_ns(SETTLE_MS);
    for (;;) {
        /* Sampled before this round's stats connection opens. */
        proc_sample s = proc_read();
        r->after = s;
        r->threads_back = s.threads >= 0 && s.threads <= r->before.threads;
        *after = fetch_stats();
        bool stats_back = after->ok && before->ok &&
                          after->connections <= before->connections &&
                          after->subscriptions <= before->subscriptions;
        if ((o.server_pid <= 0 || r->threads_back) &&
            (!before->ok || stats_back))
            break;
        if (now_ns() >= deadline || interrupted)
            break;
        poll(NULL, 0, 200);
    }
    if (o.server_pid > 0)
        settle_rss(r, deadline);
    if (r->before.rss_kib >= 0) {
        long grow = r->peak.rss_kib - r->before.rss_kib;
        long share = (long)(RSS_PEAK_SHARE * (double)(grow > 0 ? grow : 0));
        r->rss_limit_kib = r->before.rss_kib +
                           (share > o.rss_slack_kib ? share : o.rss_slack_kib);
    }
}

/* ---- Report ------------------------------------------------------------ */

typedef struct verdict {
    uint64_t group_owed, group_lost, group_dup;
    bool pass;
    char why[512];
} verdict;

static void add_why(verdict *v, const char *what)
{
    size_t n = strlen(v->why);
    snprintf(v->why + n, sizeof(v->why) - n, "%s%s", n ? "; " : "", what);
    v->pass = false;
}

static void judge(verdict *v,
                  const resources *r,
                  const server_stats *b,
                  const server_stats *a,
                  bool completed)
{
    memset(v, 0, sizeof(*v));
    v->pass = true;
    v->group_lost = groups_missing(&v->group_owed);
    for (int f = 0; f < nfam; f++)
        v->group_dup += groups[f].dup;
    if (!completed)
        add_why(v, interrupted ? "interrupted" : "the run did not complete");
    if (atomic_load(&tot.lost) + v->group_lost > 0)
        add_why(v, "messages lost");
    if (atomic_load(&tot.reordered) > 0)
        add_why(v, "messages reordered");
    if (atomic_load(&tot.duplicated) + v->group_dup > 0)
        add_why(v, "messages duplicated");
    if (atomic_load(&tot.stray) > 0)
        add_why(v, "messages after unsub");
    if (atomic_load(&tot.errors) > 0)
        add_why(v, "errors");
    if (o.server_pid > 0 && !r->threads_back)
        add_why(v, "server threads did not return to baseline");
    if (o.server_pid > 0 &&
        (r->after.rss_kib < 0 || r->after.rss_kib > r->rss_limit_kib))
        add_why(v, "server RSS did not return to baseline");
    if (b->ok && (!a->ok || a->connections > b->connections ||
                  a->subscriptions > b->subscriptions))
        add_why(v, "server stats did not return to baseline");
}

static cJSON *json_report(const verdict *v,
                          const resources *r,
                          const server_stats *b,
                          const server_stats *a,
                          double secs)
{
    cJSON *j = cJSON_CreateObject();
    char server[300];
    snprintf(server, sizeof(server), "%s:%s", o.host, o.port);
    cJSON_AddStringToObject(j, "server", server);
    cJSON_AddNumberToObject(j, "conns", o.conns);
    cJSON_AddNumberToObject(j, "duration_s", o.duration_s);
    cJSON_AddNumberToObject(j, "wall_s", secs);
    cJSON_AddNumberToObject(j, "rate_per_publisher", o.rate);
    cJSON_AddNumberToObject(j, "burst", o.burst);
    cJSON_AddNumberToObject(j, "seed", (double)o.seed);
    cJSON_AddNumberToObject(j, "families", nfam);
    cJSON *roles = cJSON_AddObjectToObject(j, "roles");
    for (int k = 0; k < R_COUNT; k++)
        cJSON_AddNumberToObject(roles, role_names[k], role_count[k]);
    cJSON_AddNumberToObject(j, "published", (double)published());
    cJSON_AddNumberToObject(j, "delivered",
                            (double)atomic_load(&tot.delivered));
    cJSON_AddNumberToObject(
        j, "required", (double)(atomic_load(&tot.required) + v->group_owed));
    cJSON_AddNumberToObject(j, "lost",
                            (double)(atomic_load(&tot.lost) + v->group_lost));
    cJSON_AddNumberToObject(j, "reordered",
                            (double)atomic_load(&tot.reordered));
    cJSON_AddNumberToObject(
        j, "duplicated", (double)(atomic_load(&tot.duplicated) + v->group_dup));
    cJSON_AddNumberToObject(j, "stray", (double)atomic_load(&tot.stray));
    cJSON_AddNumberToObject(j, "errors", (double)atomic_load(&tot.errors));
    cJSON *c = cJSON_AddObjectToObject(j, "churn");
    cJSON_AddNumberToObject(c, "subs", (double)atomic_load(&tot.subs));
    cJSON_AddNumberToObject(c, "unsubs", (double)atomic_load(&tot.unsubs));
    cJSON_AddNumberToObject(c, "reconnects",
                            (double)atomic_load(&tot.reconnects));
    cJSON_AddNumberToObject(c, "resets", (double)atomic_load(&tot.resets));
    cJSON_AddNumberToObject(c, "abrupt", (double)atomic_load(&tot.abrupt));
    cJSON_AddNumberToObject(c, "publisher_reconnects",
                            (double)atomic_load(&tot.pub_reconnects));
    cJSON *s = cJSON_AddObjectToObject(j, "server_stats");
    cJSON_AddNumberToObject(s, "msgs_in", (double)(a->msgs_in - b->msgs_in));
    cJSON_AddNumberToObject(s, "msgs_out", (double)(a->msgs_out - b->msgs_out));
    cJSON_AddNumberToObject(s, "slow_consumers",
                            (double)(a->slow_consumers - b->slow_consumers));
    cJSON_AddNumberToObject(s, "dropped", (double)(a->dropped - b->dropped));
    cJSON_AddNumberToObject(s, "connections_before", (double)b->connections);
    cJSON_AddNumberToObject(s, "connections_after", (double)a->connections);
    cJSON_AddNumberToObject(s, "subscriptions_before",
                            (double)b->subscriptions);
    cJSON_AddNumberToObject(s, "subscriptions_after", (double)a->subscriptions);
    if (o.server_pid > 0) {
        cJSON *m = cJSON_AddObjectToObject(j, "rss_kib");
        cJSON_AddNumberToObject(m, "before", (double)r->before.rss_kib);
        cJSON_AddNumberToObject(m, "peak", (double)r->peak.rss_kib);
        cJSON_AddNumberToObject(m, "after", (double)r->after.rss_kib);
        cJSON_AddNumberToObject(m, "limit", (double)r->rss_limit_kib);
        cJSON *t = cJSON_AddObjectToObject(j, "threads");
        cJSON_AddNumberToObject(t, "before", (double)r->before.threads);
        cJSON_AddNumberToObject(t, "peak", (double)r->peak.threads);
        cJSON_AddNumberToObject(t, "after", (double)r->after.threads);
    }
    cJSON *p = cJSON_AddArrayToObject(j, "problems");
    for (size_t i = 0; i < nsamples; i++)
        cJSON_AddItemToArray(p, cJSON_CreateString(samples[i]));
    cJSON_AddBoolToObject(j, "pass", v->pass);
    cJSON_AddStringToObject(j, "why", v->why);
    return j;
}

static void text_report(const verdict *v,
                        const resources *r,
                        const server_stats *b,
                        const server_stats *a,
                        double secs)
{
    printf("sockbus-soak: %u connections, %.0f s against %s:%s "
           "(seed %" PRIu64 ", %.1f s in all)\n",
           o.conns, o.duration_s, o.host, o.port, o.seed, secs);
    printf("roles        %d publishers, %d literal, %d family, %d overlap, "
           "%d full, %d+%d group members in %d groups\n",
           role_count[R_PUB], role_count[R_LITERAL], role_count[R_FAMILY],
           role_count[R_OVERLAP], role_count[R_FULL],
           role_count[R_GROUP_STATIC], role_count[R_GROUP_DYNAMIC], nfam);
    printf("published    %" PRIu64 " (%.1f/s per publisher)\n", published(),
           o.rate);
    printf("delivered    %" PRIu64 "\n", (uint64_t)atomic_load(&tot.delivered));
    printf("required     %" PRIu64 " (owed by subscription windows)\n",
           (uint64_t)(atomic_load(&tot.required) + v->group_owed));
    printf("lost         %" PRIu64 "\n",
           (uint64_t)(atomic_load(&tot.lost) + v->group_lost));
    printf("reordered    %" PRIu64 "\n", (uint64_t)atomic_load(&tot.reordered));
    printf("duplicated   %" PRIu64 "\n",
           (uint64_t)(atomic_load(&tot.duplicated) + v->group_dup));
    printf("stray        %" PRIu64 " (after unsub)\n",
           (uint64_t)atomic_load(&tot.stray));
    printf("errors       %" PRIu64 "\n", (uint64_t)atomic_load(&tot.errors));
    printf("churn        %" PRIu64 " subs, %" PRIu64 " unsubs, %" PRIu64
           " reconnects (%" PRIu64 " RST, %" PRIu64 " abrupt), %" PRIu64
           " publisher reconnects\n",
           (uint64_t)atomic_load(&tot.subs), (uint64_t)atomic_load(&tot.unsubs),
           (uint64_t)atomic_load(&tot.reconnects),
           (uint64_t)atomic_load(&tot.resets),
           (uint64_t)atomic_load(&tot.abrupt),
           (uint64_t)atomic_load(&tot.pub_reconnects));
    printf("server       msgs_in %lld, msgs_out %lld, slow_consumers %lld, "
           "dropped %lld; connections %lld -> %lld, subscriptions %lld -> "
           "%lld\n",
           a->msgs_in - b->msgs_in, a->msgs_out - b->msgs_out,
           a->slow_consumers - b->slow_consumers, a->dropped - b->dropped,
           b->connections, a->connections, b->subscriptions, a->subscriptions);
    if (o.server_pid > 0) {
        printf("rss_kib      before %ld, peak %ld, after %ld (limit %ld)\n",
               r->before.rss_kib, r->peak.rss_kib, r->after.rss_kib,
               r->rss_limit_kib);
        printf("threads      before %ld, peak %ld, after %ld\n",
               r->before.threads, r->peak.threads, r->after.threads);
    }
    for (size_t i = 0; i < nsamples; i++)
        printf("problem      %s\n", samples[i]);
    printf("result       %s%s%s\n", v->pass ? "PASS" : "FAIL",
           v->pass ? "" : ": ", v->why);
}

/* ---- Command line ------------------------------------------------------ */

enum {
    OPT_SERVER = 256,
    OPT_CONNS,
    OPT_DURATION,
    OPT_RATE,
    OPT_BURST,
    OPT_TIMEOUT,
    OPT_SERVER_PID,
    OPT_RSS_SLACK,
    OPT_SEED,
    OPT_JSON,
    OPT_HELP,
};

static const struct option longopts[] = {
    {"server", required_argument, NULL, OPT_SERVER},
    {"conns", required_argument, NULL, OPT_CONNS},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"rate", required_argument, NULL, OPT_RATE},
    {"burst", required_argument, NULL, OPT_BURST},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"server-pid", required_argument, NULL, OPT_SERVER_PID},
    {"rss-slack-kib", required_argument, NULL, OPT_RSS_SLACK},
    {"seed", required_argument, NULL, OPT_SEED},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int parse_num(const char *s, double lo, double hi, double *v)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(d >= lo && d <= hi))
        return -1;
    *v = d;
    return 0;
}

static int parse_server(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0')
        return -1;
    size_t hn = (size_t)(colon - s);
    if (s[0] == '[' && hn >= 2 && s[hn - 1] == ']') {
        s++;
        hn -= 2;
    }
    if (hn >= sizeof(o.host) || strlen(colon + 1) >= sizeof(o.port))
        return -1;
    memcpy(o.host, s, hn);
    o.host[hn] = '\0';
    snprintf(o.port, sizeof(o.port), "%s", colon + 1);
    return 0;
}

static int bad(const char *flag, const char *v)
{
    fprintf(stderr, "sockbus-soak: %s: invalid value '%s' (see --help)\n", flag,
            v ? v : "");
    return 2;
}

static int parse_one(int c, const char *v)
{
    double d;
    switch (c) {
    case OPT_SERVER:
        return parse_server(v) < 0 ? bad("--server", v) : 0;
    case OPT_CONNS:
        if (parse_num(v, MIN_CONNS, MAX_CONNS, &d) < 0 || d != (unsigned)d)
            return bad("--conns", v);
        o.conns = (unsigned)d;
        return 0;
    case OPT_DURATION:
        return parse_num(v, 0.1, 86400, &o.duration_s) < 0
                   ? bad("--duration", v)
                   : 0;
    case OPT_RATE:
        return parse_num(v, 0.01, 100000, &o.rate) < 0 ? bad("--rate", v) : 0;
    case OPT_BURST:
        if (parse_num(v, 0, MAX_BURST, &o.burst) < 0 || o.burst != (int)o.burst)
            return bad("--burst", v);
        return 0;
    case OPT_TIMEOUT:
        return parse_num(v, 1, 3600, &o.timeout_s) < 0 ? bad("--timeout", v)
                                                       : 0;
    case OPT_SERVER_PID:
        if (parse_num(v, 1, 4194304, &d) < 0)
            return bad("--server-pid", v);
        o.server_pid = (long)d;
        return 0;
    case OPT_RSS_SLACK:
        if (parse_num(v, 0, 1e12, &d) < 0)
            return bad("--rss-slack-kib", v);
        o.rss_slack_kib = (long)d;
        return 0;
    case OPT_SEED:
        if (parse_num(v, 0, 9007199254740992.0, &d) < 0)
            return bad("--seed", v);
        o.seed = (uint64_t)d;
        return 0;
    case OPT_JSON:
        o.json = true;
        return 0;
    case OPT_HELP:
        fputs(usage, stdout);
        return 1;
    default:
        fputs(usage, stderr);
        return 2;
    }
}

/* Returns 0 to run, 1 after --help, 2 for a bad command line. */
static int parse_args(int argc, char **argv)
{
    snprintf(o.host, sizeof(o.host), "127.0.0.1");
    snprintf(o.port, sizeof(o.port), "7878");
    o.conns = 200;
    o.duration_s = 10;
    o.rate = 2;
    o.timeout_s = 30;
    o.rss_slack_kib = RSS_SLACK_KIB;
    o.progress = isatty(STDERR_FILENO);
    if (getrandom(&o.seed, sizeof(o.seed), 0) != (ssize_t)sizeof(o.seed))
        o.seed = (uint64_t)time(NULL) ^ (uint64_t)getpid();
    o.seed &= (1ULL << 53) - 1; /* printable exactly in JSON */
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int rc = parse_one(c, optarg);
        if (rc != 0)
            return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "sockbus-soak: unexpected argument '%s'\n",
                argv[optind]);
        return 2;
    }
    return 0;
}

static int resolve(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(o.host, o.port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "sockbus-soak: cannot resolve %s:%s: %s\n", o.host,
                o.port, gai_strerror(rc));
        return -1;
    }
    memcpy(&srv_addr, res->ai_addr, res->ai_addrlen);
    srv_alen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Descriptors: one per connection, plus a few. */
static void raise_nofile(void)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)o.conns + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int setup(void)
{
    snprintf(tag, sizeof(tag), "%06" PRIx64,
             (o.seed ^ (uint64_t)getpid() * 2654435761u) & 0xffffff);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread */
    signal(SIGPIPE, SIG_IGN);
    sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    main_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    for (int i = 0; i < PH_COUNT; i++)
        phase_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sig_fd < 0 || main_wake < 0 || phase_fd[PH_COUNT - 1] < 0)
        return -1;
    raise_nofile();
    int rc = plan();
    if (rc < 0)
        fprintf(stderr, "sockbus-soak: cannot plan the run: %s\n",
                strerror(-rc));
    return rc;
}

int main(int argc, char **argv)
{
    int rc = parse_args(argc, argv);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if (resolve() < 0 || setup() < 0)
        return 1;
    resources r = {0};
    r.before = r.peak = proc_read();
    if (o.server_pid > 0 && r.before.rss_kib < 0) {
        fprintf(stderr, "sockbus-soak: cannot read /proc/%ld/status\n",
                o.server_pid);
        return 1;
    }
    server_stats before = fetch_stats(), after = {0};
    if (!before.ok) {
        fprintf(stderr, "sockbus-soak: cannot get stats from %s:%s\n", o.host,
                o.port);
        return 1;
    }
    int64_t t = now_ns();
    bool completed = run(&r);
    bool stopped = stop_actors(&r);
    settle(&r, &before, &after);
    double secs = (double)(now_ns() - t) / 1e9;
    verdict v;
    judge(&v, &r, &before, &after, completed && stopped);
    if (o.json) {
        cJSON *j = json_report(&v, &r, &before, &after, secs);
        char *s = cJSON_PrintUnformatted(j);
        if (s != NULL)
            puts(s);
        free(s);
        cJSON_Delete(j);
    } else {
        text_report(&v, &r, &before, &after, secs);
    }
    fflush(stdout);
    if (!stopped)
        _exit(1); /* threads still running: do not free under them */
    return v.pass ? 0 : 1;
}
