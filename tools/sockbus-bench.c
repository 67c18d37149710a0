/* sockbus-bench.c - a load generator for sockbusd, nats-server and
 * redis-server: parse the scenario, run it, report it.
 *
 * The same client code drives all three servers (the protocol module
 * differs, nothing else), so that their figures can be compared. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sockbus-bench-report.h"
#include "sockbus-bench-run.h"

#define MAX_SIZE (64u << 20)
#define MAX_CLIENTS 10000u

static const char usage[] =
    "Usage: sockbus-bench [OPTIONS]\n"
    "Publish messages through a pub/sub server and measure throughput,\n"
    "end-to-end latency and loss. Speaks sockbus, NATS and Redis.\n"
    "\n"
    "  --server HOST:PORT  server address (default 127.0.0.1:7878)\n"
    "  --sub-server H:P    subscribers connect here instead (another node\n"
    "                      of a sockbus cluster: a cross-node run)\n"
    "  --proto P           sockbus (default), nats or redis\n"
    "  --pubs N            publishers, one connection and thread each (1)\n"
    "  --subs N            subscribers, one connection and thread each (1)\n"
    "  --msgs N            messages published in total (100000)\n"
    "  --size BYTES        payload size, at least 32 (128)\n"
    "  --rate R            messages per second in total; 0 = flat out (0)\n"
    "  --duration S        publish for S seconds instead of --msgs\n"
    "  --topic T           topic (default bench.<random>)\n"
    "  --group G           subscribers share queue group G: each message\n"
    "                      is delivered once in total (not with redis)\n"
    "  --conns N           extra idle connections, each subscribed to a\n"
    "                      topic of its own, open for the whole run (0)\n"
    "  --timeout S         bound of every wait, and time allowed for\n"
    "                      deliveries after publishing ends (60)\n"
    "  --token TOKEN       authenticate (sockbus connect, NATS auth_token,\n"
    "                      Redis AUTH)\n"
    "  --server-pid PID    sample that local process's VmRSS before and\n"
    "                      after opening the idle connections\n"
    "  --json              print one JSON object on stdout\n"
    "  --help              this text\n"
    "\n"
    "Exit status: 0 when every message was delivered (complete), 1 when\n"
    "not or when the run could not start, 2 for a bad command line.\n";

enum {
    OPT_SERVER = 256,
    OPT_SUB_SERVER,
    OPT_PROTO,
    OPT_PUBS,
    OPT_SUBS,
    OPT_MSGS,
    OPT_SIZE,
    OPT_RATE,
    OPT_DURATION,
    OPT_TOPIC,
    OPT_GROUP,
    OPT_CONNS,
    OPT_TIMEOUT,
    OPT_TOKEN,
    OPT_SERVER_PID,
    OPT_JSON,
    OPT_HELP,
};

static const struct option longopts[] = {
    {"server", required_argument, NULL, OPT_SERVER},
    {"sub-server", required_argument, NULL, OPT_SUB_SERVER},
    {"proto", required_argument, NULL, OPT_PROTO},
    {"pubs", required_argument, NULL, OPT_PUBS},
    {"subs", required_argument, NULL, OPT_SUBS},
    {"msgs", required_argument, NULL, OPT_MSGS},
    {"size", required_argument, NULL, OPT_SIZE},
    {"rate", required_argument, NULL, OPT_RATE},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"topic", required_argument, NULL, OPT_TOPIC},
    {"group", required_argument, NULL, OPT_GROUP},
    {"conns", required_argument, NULL, OPT_CONNS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"server-pid", required_argument, NULL, OPT_SERVER_PID},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static void defaults(sbb_opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    snprintf(o->port, sizeof(o->port), "7878");
    o->proto = SBB_PROTO_SOCKBUS;
    o->pubs = 1;
    o->subs = 1;
    o->msgs = 100000;
    o->size = 128;
    o->timeout_s = 60;
    o->progress = isatty(STDERR_FILENO);
}

/* A fresh topic per run, so that runs never see each other's messages. */
static void random_topic(sbb_opts *o)
{
    uint32_t r;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint32_t)time(NULL) ^ (uint32_t)getpid() << 16;
    snprintf(o->topic, sizeof(o->topic), "bench.%08x", r);
}

/* An unsigned integer in [min, max]. Returns 0 or -1. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || x < min || x > max)
        return -1;
    *v = x;
    return 0;
}

static int parse_double(const char *s, double min, double *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !(x >= min) || x > 1e12)
        return -1;
    *v = x;
    return 0;
}

/* HOST:PORT, or [IPv6]:PORT. */
static int parse_server(const char *s, sbb_opts *o)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon[1] == '\0' ||
        strlen(colon + 1) >= sizeof(o->port))
        return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(o->host))
        return -1;
    memcpy(o->host, h, hl);
    o->host[hl] = '\0';
    snprintf(o->port, sizeof(o->port), "%s", colon + 1);
    return 0;
}

/* A topic or group name the three protocols all carry as it is. */
static int parse_name(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200 || n >= cap || strpbrk(s, " \t\r\n\"\\*>"))
        return -1;
    memcpy(out, s, n + 1);
    return 0;
}

static int parse_count(const char *arg, uint64_t min, uint64_t max, unsigned *v)
{
    uint64_t x;
    if (parse_u64(arg, min, max, &x) < 0)
        return -1;
    *v = (unsigned)x;
    return 0;
}

static int parse_opt(int c, const char *arg, sbb_opts *o)
{
    uint64_t v;
    switch (c) {
    case OPT_SERVER:
        return parse_server(arg, o);
    case OPT_SUB_SERVER: {
        sbb_opts t;
        if (parse_server(arg, &t) < 0)
            return -1;
        memcpy(o->sub_host, t.host, sizeof(o->sub_host));
        memcpy(o->sub_port, t.port, sizeof(o->sub_port));
        return 0;
    }
    case OPT_PROTO:
        return sbb_proto_parse(arg, &o->proto);
    case OPT_PUBS:
        return parse_count(arg, 1, MAX_CLIENTS, &o->pubs);
    case OPT_SUBS:
        return parse_count(arg, 0, MAX_CLIENTS, &o->subs);
    case OPT_MSGS:
        return parse_u64(arg, 1, UINT64_C(1) << 40, &o->msgs);
    case OPT_SIZE:
        if (parse_u64(arg, SBB_HEADER_LEN, MAX_SIZE, &v) < 0)
            return -1;
        o->size = (size_t)v;
        return 0;
    case OPT_RATE:
        return parse_double(arg, 0, &o->rate);
    case OPT_DURATION:
        return parse_double(arg, 0, &o->duration_s);
    case OPT_TOPIC:
        return parse_name(arg, o->topic, sizeof(o->topic));
    case OPT_GROUP:
        return parse_name(arg, o->group, sizeof(o->group));
    case OPT_CONNS:
        return parse_count(arg, 0, 1000000, &o->conns);
    case OPT_TIMEOUT:
        return parse_double(arg, 0.001, &o->timeout_s);
    case OPT_TOKEN:
        if (strlen(arg) >= sizeof(o->token) || strpbrk(arg, "\r\n"))
            return -1;
        snprintf(o->token, sizeof(o->token), "%s", arg);
        return 0;
    case OPT_SERVER_PID:
        if (parse_u64(arg, 1, INT_MAX, &v) < 0)
            return -1;
        o->server_pid = (pid_t)v;
        return 0;
    case OPT_JSON:
        o->json = true;
        return 0;
    default:
        return -1;
    }
}

/* Checks across flags. Returns 0, or -1 after naming the problem. */
static int validate(const sbb_opts *o)
{
    const char *why = NULL;
    if (o->group[0] && o->proto == SBB_PROTO_REDIS)
        why = "--group: Redis pub/sub has no queue groups";
    else if (o->duration_s <= 0 && o->msgs / o->pubs >= UINT32_MAX)
        why = "--msgs: more than 2^32 messages per publisher";
    if (why == NULL)
        return 0;
    fprintf(stderr, "sockbus-bench: %s\n", why);
    return -1;
}

/* Returns 0 to run, 1 after --help, -1 after a usage error. */
static int parse_args(int argc, char **argv, sbb_opts *o)
{
    defaults(o);
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == OPT_HELP) {
            fputs(usage, stdout);
            return 1;
        }
        if (c == '?' || c == ':')
            return -1;
        if (parse_opt(c, optarg, o) < 0) {
            fprintf(stderr, "sockbus-bench: bad value for --%s: '%s'\n",
                    longopts[c - OPT_SERVER].name, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sockbus-bench: unexpected argument '%s'\n",
                argv[optind]);
        return -1;
    }
    if (o->topic[0] == '\0')
        random_topic(o);
    return validate(o);
}

/* Raises the open-file limit to the hard limit: --conns 10000 needs more
 * than the usual 1024. Returns 0, or -1 when the run cannot fit. */
static int raise_nofile(const sbb_opts *o)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    /* One socket per client, and a few for stdio and eventfds. */
    rlim_t need = (rlim_t)o->conns + o->pubs + o->subs + 16;
    if (need <= rl.rlim_cur)
        return 0;
    fprintf(stderr,
            "sockbus-bench: needs %llu open files, the limit is %llu "
            "(raise the hard limit with ulimit -Hn as root)\n",
            (unsigned long long)need, (unsigned long long)rl.rlim_cur);
    return -1;
}

/* With --json, a run that could not start still prints an object. */
static void print_start_error(const sbb_opts *o, const char *error)
{
    fprintf(stderr, "sockbus-bench: %s\n", error);
    if (!o->json)
        return;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "proto", sbb_proto_name(o->proto));
    cJSON_AddBoolToObject(j, "complete", false);
    cJSON_AddStringToObject(j, "error", error);
    char *s = cJSON_PrintUnformatted(j);
    if (s)
        printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

/* With --json the report is on stdout: say on stderr why it failed. */
static void print_failures(const sbb_result *r)
{
    for (unsigned i = 0; i < r->npubs; i++)
        if (r->pubs[i].error[0])
            fprintf(stderr, "sockbus-bench: publisher %u: %s\n", i,
                    r->pubs[i].error);
    for (unsigned i = 0; i < r->nsubs; i++)
        if (r->subs[i].error[0])
            fprintf(stderr, "sockbus-bench: subscriber %u: %s\n", i,
                    r->subs[i].error);
    if (r->timed_out)
        fprintf(stderr, "sockbus-bench: timed out waiting for deliveries\n");
}

int main(int argc, char **argv)
{
    sbb_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (raise_nofile(&o) < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN); /* every send passes MSG_NOSIGNAL too */
    sbb_result r;
    if (sbb_run(&o, &r) < 0) {
        print_start_error(&o, r.error);
        sbb_result_free(&r);
        return 1;
    }
    bool complete = sbb_report_complete(&o, &r);
    if (o.json) {
        sbb_report_json(stdout, &o, &r);
        if (!complete)
            print_failures(&r);
    } else {
        sbb_report_text(stdout, &o, &r);
    }
    sbb_result_free(&r);
    return complete ? 0 : 1;
}
