/* main.c - sockbusd: parse, validate, start, wait for a signal, stop. */
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
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        SB_LOG(SB_LOG_WARN, "cannot raise open-file limit err=%s",
               strerror(errno));
    else
        SB_LOG(SB_LOG_DEBUG, "open-file limit from=%llu to=%llu",
               (unsigned long long)was, (unsigned long long)rl.rlim_cur);
}

static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

int main(int argc, char **argv)
{
    sb_config cfg;
    char err[512];
    sb_config_defaults(&cfg);
    int rc = sb_config_parse_args(&cfg, argc, argv, err, sizeof(err));
    if (rc > 0)
        return 0;
    if (rc < 0 || sb_config_validate(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "sockbusd: %s\n", err);
        return 2;
    }
    sb_log_set_level((sb_log_level)cfg.log_level);

    /* Before any thread exists: no SIGPIPE, and SIGINT/SIGTERM blocked in
     * every thread so that this one collects them with sigwait(). */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    raise_nofile();

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
    printf("sockbusd listening on %s\n", sb_server_address(srv));
    fflush(stdout);

    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    SB_LOG(SB_LOG_INFO, "signal name=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    sb_server_stop(srv);
    return 0;
}
