/* sockbus-bench-report.c - see sockbus-bench-report.h.
 *
 * Both reports are printed from one `summary`, so that the text and the
 * JSON can never disagree. */
#include "sockbus-bench-report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define MAX_LISTED 16 /* clients listed one by one in the text report */

typedef struct spread {
    double min, avg, max;
} spread;

typedef struct summary {
    double pub_s, sub_s, total_s; /* windows */
    double pub_rate, sub_rate, pub_mbps, sub_mbps;
    uint64_t lost, out_of_order, dropped, bad;
    double lat_us[5]; /* p50 p90 p99 p99.9 max */
    spread pub_spread, sub_spread;
    bool complete;
} summary;

static const double percentiles[] = {50, 90, 99, 99.9};

static double secs(int64_t from, int64_t to)
{
    return to > from ? (double)(to - from) / 1e9 : 0.0;
}

static double per_s(double n, double s)
{
    return s > 0 ? n / s : 0.0;
}

static double client_rate(const sbb_client_stats *c, int64_t t0)
{
    return per_s((double)c->msgs, secs(t0, c->end_ns));
}

static spread spread_of(const sbb_client_stats *c, unsigned n, int64_t t0)
{
    spread s = {0, 0, 0};
    for (unsigned i = 0; i < n; i++) {
        double r = client_rate(&c[i], t0);
        if (i == 0 || r < s.min)
            s.min = r;
        if (r > s.max)
            s.max = r;
        s.avg += r / n;
    }
    return s;
}

bool sbb_report_complete(const sbb_opts *o, const sbb_result *r)
{
    uint64_t bad = 0;
    for (unsigned i = 0; i < r->nsubs; i++)
        bad += r->subs[i].bad;
    bool all_published = o->duration_s > 0 || r->published == o->msgs;
    return !r->interrupted && all_published && bad == 0 &&
           r->delivered == r->expected;
}

static void summarize(const sbb_opts *o, const sbb_result *r, summary *s)
{
    memset(s, 0, sizeof(*s));
    s->pub_s = secs(r->t0, r->pub_end);
    s->sub_s = secs(r->t0, r->sub_end);
    s->total_s = secs(r->t0, r->pub_end > r->sub_end ? r->pub_end : r->sub_end);
    s->pub_rate = per_s((double)r->published, s->pub_s);
    s->sub_rate = per_s((double)r->delivered, s->sub_s);
    s->pub_mbps = s->pub_rate * (double)o->size / 1e6;
    s->sub_mbps = s->sub_rate * (double)o->size / 1e6;
    s->lost = r->expected > r->delivered ? r->expected - r->delivered : 0;
    for (unsigned i = 0; i < r->nsubs; i++) {
        s->out_of_order += r->subs[i].out_of_order;
        s->dropped += r->subs[i].dropped;
        s->bad += r->subs[i].bad;
    }
    for (int i = 0; i < 4; i++)
        s->lat_us[i] =
            (double)sbb_hist_percentile(r->latency, percentiles[i]) / 1e3;
    s->lat_us[4] = (double)sbb_hist_max(r->latency) / 1e3;
    s->pub_spread = spread_of(r->pubs, r->npubs, r->t0);
    s->sub_spread = spread_of(r->subs, r->nsubs, r->t0);
    s->complete = sbb_report_complete(o, r);
}

/* ---- text -------------------------------------------------------------- */

/* n with thousands separators, into buf (at least 32 bytes). */
static const char *grouped(double v, char *buf)
{
    char digits[32];
    snprintf(digits, sizeof(digits), "%.0f", v);
    size_t n = strlen(digits), j = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[j++] = ',';
        buf[j++] = digits[i];
    }
    buf[j] = '\0';
    return buf;
}

static void print_clients(FILE *f,
                          const char *role,
                          const sbb_client_stats *c,
                          unsigned n,
                          const sbb_opts *o,
                          int64_t t0)
{
    char a[32], b[32];
    for (unsigned i = 0; n <= MAX_LISTED && i < n; i++) {
        double rate = client_rate(&c[i], t0);
        fprintf(f, "  [%u] %s msgs/s ~ %.2f MB/s (%s msgs)\n", i,
                grouped(rate, a), rate * (double)o->size / 1e6,
                grouped((double)c[i].msgs, b));
    }
    spread s = spread_of(c, n, t0);
    char m[32];
    if (n > 0)
        fprintf(f, "  %s min %s | avg %s | max %s msgs/s\n", role,
                grouped(s.min, a), grouped(s.avg, b), grouped(s.max, m));
}

/* CPU use over the run, in percent of one core (200 = two cores). */
static double cpu_pct(double cpu_s, const sbb_result *r)
{
    return r->cpu_window_s > 0 ? 100.0 * cpu_s / r->cpu_window_s : 0.0;
}

static void print_cpu(FILE *f, const sbb_result *r)
{
    fprintf(f, "CPU (%% of a core): bench %.0f", cpu_pct(r->bench_cpu_s, r));
    if (r->server_cpu_s >= 0)
        fprintf(f, ", server %.0f", cpu_pct(r->server_cpu_s, r));
    if (r->machine_cpu_s >= 0)
        fprintf(f, ", whole machine %.0f", cpu_pct(r->machine_cpu_s, r));
    fprintf(f, "\n");
}

static void print_errors(FILE *f, const sbb_result *r)
{
    for (unsigned i = 0; i < r->npubs; i++)
        if (r->pubs[i].error[0])
            fprintf(f, "publisher %u: %s\n", i, r->pubs[i].error);
    for (unsigned i = 0; i < r->nsubs; i++)
        if (r->subs[i].error[0])
            fprintf(f, "subscriber %u: %s\n", i, r->subs[i].error);
    if (r->timed_out)
        fprintf(f, "timed out waiting for deliveries\n");
    if (r->interrupted)
        fprintf(f, "interrupted\n");
}

static void print_rss(FILE *f, const sbb_opts *o, const sbb_result *r)
{
    if (o->conns > 0)
        fprintf(f, "Idle connections: %u open, %u closed by the server\n",
                r->idle_open, r->idle_closed);
    if (o->server_pid <= 0)
        return;
    fprintf(f, "Server RSS: before %ld KiB", r->rss_before_kib);
    if (r->idle_open > 0)
        fprintf(f, ", with %u idle connections %ld KiB", r->idle_open,
                r->rss_conns_kib);
    if (r->idle_open > 0 && r->rss_before_kib >= 0 && r->rss_conns_kib >= 0)
        fprintf(f, " (%.1f KiB each)",
                (double)(r->rss_conns_kib - r->rss_before_kib) / r->idle_open);
    fprintf(f, ", after the run %ld KiB\n", r->rss_after_kib);
}

void sbb_report_text(FILE *f, const sbb_opts *o, const sbb_result *r)
{
    summary s;
    char a[32], b[32], c[32];
    summarize(o, r, &s);
    fprintf(f, "%s at %s:%s, topic %s%s%s: %u pubs, %u subs, %zu B payloads, ",
            sbb_proto_name(o->proto), o->host, o->port, o->topic,
            o->group[0] ? ", group " : "", o->group, o->pubs, o->subs, o->size);
    if (o->rate > 0)
        fprintf(f, "%s msgs/s\n", grouped(o->rate, a));
    else
        fprintf(f, "flat out\n");
    fprintf(f, "Pub stats: %s msgs/s ~ %.2f MB/s (%s msgs in %.3f s)\n",
            grouped(s.pub_rate, a), s.pub_mbps,
            grouped((double)r->published, b), s.pub_s);
    print_clients(f, "pubs", r->pubs, r->npubs, o, r->t0);
    fprintf(f, "Sub stats: %s msgs/s ~ %.2f MB/s (%s msgs in %.3f s)\n",
            grouped(s.sub_rate, a), s.sub_mbps,
            grouped((double)r->delivered, b), s.sub_s);
    print_clients(f, "subs", r->subs, r->nsubs, o, r->t0);
    fprintf(f,
            "Latency (us): p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  "
            "max %.1f\n",
            s.lat_us[0], s.lat_us[1], s.lat_us[2], s.lat_us[3], s.lat_us[4]);
    fprintf(f,
            "Messages: published %s, expected %s, delivered %s, lost %llu, "
            "out of order %llu, dropped %llu",
            grouped((double)r->published, a), grouped((double)r->expected, b),
            grouped((double)r->delivered, c), (unsigned long long)s.lost,
            (unsigned long long)s.out_of_order, (unsigned long long)s.dropped);
    if (s.bad)
        fprintf(f, ", corrupt %llu", (unsigned long long)s.bad);
    fprintf(f, "\n");
    print_cpu(f, r);
    print_rss(f, o, r);
    print_errors(f, r);
    fprintf(f, "Complete: %s\n", s.complete ? "yes" : "no");
}

/* ---- JSON -------------------------------------------------------------- */

static void add_spread(cJSON *j, const char *name, spread s)
{
    cJSON *o = cJSON_AddObjectToObject(j, name);
    cJSON_AddNumberToObject(o, "min", s.min);
    cJSON_AddNumberToObject(o, "avg", s.avg);
    cJSON_AddNumberToObject(o, "max", s.max);
}

static cJSON *client_json(const sbb_client_stats *c,
                          unsigned id,
                          const sbb_opts *o,
                          int64_t t0,
                          bool sub)
{
    cJSON *j = cJSON_CreateObject();
    double rate = client_rate(c, t0);
    cJSON_AddNumberToObject(j, "id", id);
    cJSON_AddNumberToObject(j, "msgs", (double)c->msgs);
    cJSON_AddNumberToObject(j, "rate", rate);
    cJSON_AddNumberToObject(j, "mbps", rate * (double)o->size / 1e6);
    if (sub) {
        cJSON_AddNumberToObject(j, "out_of_order", (double)c->out_of_order);
        cJSON_AddNumberToObject(j, "dropped", (double)c->dropped);
        cJSON_AddNumberToObject(j, "corrupt", (double)c->bad);
    }
    if (c->error[0])
        cJSON_AddStringToObject(j, "error", c->error);
    return j;
}

static void add_clients(cJSON *j, const sbb_opts *o, const sbb_result *r)
{
    cJSON *pc = cJSON_AddObjectToObject(j, "per_client");
    summary s;
    summarize(o, r, &s);
    add_spread(pc, "pub_rate", s.pub_spread);
    add_spread(pc, "sub_rate", s.sub_spread);
    cJSON *pubs = cJSON_AddArrayToObject(pc, "pubs");
    for (unsigned i = 0; i < r->npubs; i++)
        cJSON_AddItemToArray(pubs,
                             client_json(&r->pubs[i], i, o, r->t0, false));
    cJSON *subs = cJSON_AddArrayToObject(pc, "subs");
    for (unsigned i = 0; i < r->nsubs; i++)
        cJSON_AddItemToArray(subs, client_json(&r->subs[i], i, o, r->t0, true));
}

static void add_latency(cJSON *j, const summary *s, const sbb_hist *h)
{
    static const char *const keys[] = {"p50", "p90", "p99", "p999", "max"};
    cJSON *l = cJSON_AddObjectToObject(j, "latency_us");
    for (int i = 0; i < 5; i++)
        cJSON_AddNumberToObject(l, keys[i], s->lat_us[i]);
    cJSON_AddNumberToObject(l, "min", (double)sbb_hist_min(h) / 1e3);
    cJSON_AddNumberToObject(l, "mean", sbb_hist_mean(h) / 1e3);
    cJSON_AddNumberToObject(l, "samples", (double)sbb_hist_count(h));
}

static void add_server(cJSON *j, const sbb_opts *o, const sbb_result *r)
{
    if (o->conns > 0) {
        cJSON *i = cJSON_AddObjectToObject(j, "idle");
        cJSON_AddNumberToObject(i, "open", r->idle_open);
        cJSON_AddNumberToObject(i, "closed", r->idle_closed);
    }
    cJSON *cpu = cJSON_AddObjectToObject(j, "cpu_pct");
    cJSON_AddNumberToObject(cpu, "bench", cpu_pct(r->bench_cpu_s, r));
    if (r->server_cpu_s >= 0)
        cJSON_AddNumberToObject(cpu, "server", cpu_pct(r->server_cpu_s, r));
    if (r->machine_cpu_s >= 0)
        cJSON_AddNumberToObject(cpu, "machine", cpu_pct(r->machine_cpu_s, r));
    if (o->server_pid <= 0)
        return;
    cJSON *m = cJSON_AddObjectToObject(j, "server_rss_kib");
    cJSON_AddNumberToObject(m, "before", (double)r->rss_before_kib);
    cJSON_AddNumberToObject(m, "with_conns", (double)r->rss_conns_kib);
    cJSON_AddNumberToObject(m, "after", (double)r->rss_after_kib);
    if (r->idle_open > 0)
        cJSON_AddNumberToObject(m, "per_conn",
                                (double)(r->rss_conns_kib - r->rss_before_kib) /
                                    r->idle_open);
}

static void add_errors(cJSON *j, const sbb_result *r)
{
    cJSON *e = cJSON_AddArrayToObject(j, "errors");
    char line[300];
    for (unsigned i = 0; i < r->npubs; i++) {
        if (r->pubs[i].error[0] == '\0')
            continue;
        snprintf(line, sizeof(line), "publisher %u: %s", i, r->pubs[i].error);
        cJSON_AddItemToArray(e, cJSON_CreateString(line));
    }
    for (unsigned i = 0; i < r->nsubs; i++) {
        if (r->subs[i].error[0] == '\0')
            continue;
        snprintf(line, sizeof(line), "subscriber %u: %s", i, r->subs[i].error);
        cJSON_AddItemToArray(e, cJSON_CreateString(line));
    }
}

static void add_scenario(cJSON *j, const sbb_opts *o)
{
    char server[300];
    snprintf(server, sizeof(server), "%s:%s", o->host, o->port);
    cJSON_AddStringToObject(j, "proto", sbb_proto_name(o->proto));
    cJSON_AddStringToObject(j, "server", server);
    cJSON_AddStringToObject(j, "topic", o->topic);
    if (o->group[0])
        cJSON_AddStringToObject(j, "group", o->group);
    cJSON_AddNumberToObject(j, "pubs", o->pubs);
    cJSON_AddNumberToObject(j, "subs", o->subs);
    cJSON_AddNumberToObject(j, "msgs", (double)o->msgs);
    cJSON_AddNumberToObject(j, "size", (double)o->size);
    cJSON_AddNumberToObject(j, "rate", o->rate);
    cJSON_AddNumberToObject(j, "conns", o->conns);
}

static void add_totals(cJSON *j, const summary *s, const sbb_result *r)
{
    cJSON_AddNumberToObject(j, "published", (double)r->published);
    cJSON_AddNumberToObject(j, "delivered", (double)r->delivered);
    cJSON_AddNumberToObject(j, "expected", (double)r->expected);
    cJSON_AddNumberToObject(j, "lost", (double)s->lost);
    cJSON_AddNumberToObject(j, "out_of_order", (double)s->out_of_order);
    cJSON_AddNumberToObject(j, "dropped", (double)s->dropped);
    cJSON_AddNumberToObject(j, "corrupt", (double)s->bad);
    cJSON_AddNumberToObject(j, "pub_rate", s->pub_rate);
    cJSON_AddNumberToObject(j, "sub_rate", s->sub_rate);
    cJSON_AddNumberToObject(j, "pub_mbps", s->pub_mbps);
    cJSON_AddNumberToObject(j, "sub_mbps", s->sub_mbps);
    cJSON_AddNumberToObject(j, "duration_s", s->total_s);
    cJSON_AddNumberToObject(j, "pub_duration_s", s->pub_s);
    cJSON_AddNumberToObject(j, "sub_duration_s", s->sub_s);
    cJSON_AddBoolToObject(j, "complete", s->complete);
    cJSON_AddBoolToObject(j, "timed_out", r->timed_out);
    cJSON_AddBoolToObject(j, "interrupted", r->interrupted);
}

int sbb_report_json(FILE *f, const sbb_opts *o, const sbb_result *r)
{
    summary s;
    summarize(o, r, &s);
    cJSON *j = cJSON_CreateObject();
    if (j == NULL)
        return -ENOMEM;
    add_scenario(j, o);
    add_totals(j, &s, r);
    add_latency(j, &s, r->latency);
    add_clients(j, o, r);
    add_server(j, o, r);
    add_errors(j, r);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (text == NULL)
        return -ENOMEM;
    fprintf(f, "%s\n", text);
    free(text);
    return 0;
}
