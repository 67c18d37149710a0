/* embed-example.c - a program that embeds sockbus.
 *
 * It runs the whole relay in-process (TCP clients can connect to it as to
 * sockbusd), subscribes a callback to the pattern given on its command line
 * and prints every matching message, whoever published it.
 *
 *     sockbus-embed-example 'orders.>' [--listen 127.0.0.1:7878]
 *
 * Built against an installed libsockbus (README.md, "Embedding"):
 *
 *     cc embed-example.c $(pkg-config --cflags --libs sockbus)
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <sockbus/sockbus.h>

static void on_message(const sb_message *m, void *ud)
{
    unsigned long *count = ud;
    (*count)++;
    /* One line per message; the data is the JSON text as published. */
    printf("%s %.*s\n", m->topic, (int)m->data_len, m->data);
    fflush(stdout);
}

static void on_notice(sb_err code, const char *msg, void *ud)
{
    (void)ud;
    fprintf(stderr, "embed-example: %s: %s\n", sb_err_str(code), msg);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: %s PATTERN [sockbusd options]\n", argv[0]);
        return 2;
    }
    const char *pattern = argv[1];
    sb_config cfg;
    char err[256];
    sb_config_defaults(&cfg);
    /* Every sockbusd option works here too; argv[1] is the pattern. */
    argv[1] = argv[0];
    int rc = sb_config_parse_args(&cfg, argc - 1, argv + 1, err, sizeof(err));
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "embed-example: %s\n", err);
        return rc < 0 ? 2 : 0;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    sb_server *srv;
    if (sb_server_start(&cfg, &srv, err, sizeof(err)) < 0) {
        fprintf(stderr, "embed-example: %s\n", err);
        return 2;
    }
    unsigned long count = 0;
    sb_subscription *sub;
    rc = sb_server_subscribe(srv, pattern, NULL, on_message, on_notice, &count,
                             &sub);
    if (rc < 0) {
        fprintf(stderr, "embed-example: cannot subscribe to '%s': %s\n",
                pattern, strerror(-rc));
        sb_server_stop(srv);
        return 2;
    }
    printf("sockbusd listening on %s\n", sb_server_address(srv));
    fflush(stdout);

    int sig;
    sigwait(&set, &sig);
    sb_server_unsubscribe(sub);
    sb_server_stop(srv);
    fprintf(stderr, "embed-example: %lu messages\n", count);
    return 0;
}
