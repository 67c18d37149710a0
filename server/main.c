/* main.c - sockbusd: parse, validate, start, wait for signals (SIGHUP
 * reloads), stop. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "log.h"
#include "sockbus.h"

/* Use every descriptor the hard limit allows: each client needs two (its
 * socket and its queue's eventfd). */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return RLIM_INFINITY;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            SB_LOG(SB_LOG_WARN, "cannot raise open-file limit err=%s",
                   strerror(errno));
            rl.rlim_cur = was;
        } else {
            SB_LOG(SB_LOG_DEBUG, "open-file limit from=%llu to=%llu",
                   (unsigned long long)was, (unsigned long long)rl.rlim_cur);
        }
    }
    return rl.rlim_cur;
}

/* Two descriptors per connection, and a few for the server itself: say so
 * once running when the connection limit cannot be reached, rather than
 * let it be found at EMFILE. */
static void check_nofile(rlim_t limit, size_t max_conns)
{
    rlim_t need = (rlim_t)max_conns * 2 + 32;
    if (limit != RLIM_INFINITY && limit < need)
        SB_LOG(SB_LOG_WARN,
               "open-file limit %llu allows about %llu connections, fewer "
               "than --max-conns %zu (each takes 2 descriptors); raise the "
               "hard limit (LimitNOFILE=, ulimit -Hn) or lower --max-conns",
               (unsigned long long)limit,
               (unsigned long long)(limit > 32 ? (limit - 32) / 2 : 0),
               max_conns);
}

static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* SIGHUP: read the configuration again, as at start (the file under the
 * same command line, which still wins), and apply what may change. A bad
 * file changes nothing. */
static void reload(sb_server *srv, int argc, char **argv)
{
    static sb_config next; /* large; only this thread reloads */
    char err[512];
    int rc = sb_config_from_args(&next, argc, argv, err, sizeof(err));
    if (rc == 0)
        rc = sb_server_reload(srv, &next, err, sizeof(err));
    if (rc != 0)
        SB_LOG(SB_LOG_ERROR, "reload ok=no kept=old err=%s", err);
}

int main(int argc, char **argv)
{
    static sb_config cfg;
    char err[512];
    int rc = sb_config_from_args(&cfg, argc, argv, err, sizeof(err));
    if (rc > 0)
        return 0;
    if (rc < 0 || sb_config_validate(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "sockbusd: %s\n", err);
        return 2;
    }
    sb_log_set_level((sb_log_level)cfg.log_level);
    sb_log_set_json(cfg.log_json);

    /* Before any thread exists: no SIGPIPE, and SIGINT/SIGTERM/SIGHUP
     * blocked in every thread so that this one collects them with
     * sigwait(). */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    rlim_t nofile = raise_nofile();

    if (!is_loopback(cfg.listen_host) && !cfg.has_token)
        SB_LOG(SB_LOG_WARN,
               "listening on %s without a token: anyone who can reach it "
               "may publish and subscribe (see --token)",
               cfg.listen_host);

    sb_server *srv;
    rc = sb_server_start(&cfg, &srv, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "sockbusd: %s\n", err);
        return 2;
    }
    check_nofile(nofile, cfg.max_conns);
    printf("sockbusd listening on %s\n", sb_server_address(srv));
    if (sb_server_http_address(srv) != NULL)
        printf("sockbusd http on %s\n", sb_server_http_address(srv));
    fflush(stdout);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        SB_LOG(SB_LOG_INFO, "signal name=%s",
               sig == SIGHUP ? "SIGHUP"
                             : (sig == SIGINT ? "SIGINT" : "SIGTERM"));
        if (sig != SIGHUP)
            break;
        reload(srv, argc, argv);
    }
    sb_server_stop(srv);
    return 0;
}
