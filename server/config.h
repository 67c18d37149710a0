/* config.h - every setting of sockbusd, its defaults and its checks.
 *
 * sb_config_defaults() is the only place a default is written. The server
 * copies the struct at start and never writes it.
 *
 * Threads: these functions touch only the struct they are given. */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sb_slow_policy {
    SB_SLOW_DISCONNECT = 0,
    SB_SLOW_DROP = 1,
} sb_slow_policy;

typedef struct sb_config {
    char listen_host[256];   /* numeric IPv4/IPv6 address or host name */
    uint16_t listen_port;    /* 0 binds an ephemeral port */
    size_t max_conns;        /* connections at once; more get server_busy */
    size_t max_frame;        /* bytes per frame, newline included */
    size_t max_subs;         /* subscriptions per connection */
    size_t send_queue;       /* frames queued for one connection */
    size_t send_queue_bytes; /* bytes queued for one connection */
    size_t recv_queue;       /* publications waiting for the bus */
    size_t recv_queue_bytes; /* their bytes */
    sb_slow_policy slow_policy;
    uint32_t heartbeat_ms;    /* 0 turns heartbeats off */
    uint32_t drain_ms;        /* time given to deliver queued frames at stop */
    size_t thread_stack_kib;  /* stack of each connection thread */
    int log_level;            /* sb_log_level */
    bool log_json;            /* one JSON object per log line */
    char http_listen[300];    /* monitoring HOST:PORT, empty when off */
    char config_file[4096];   /* --config FILE, empty when none */
    char cluster[4096];       /* NATS URLs, comma-separated; empty: off */
    char cluster_prefix[128]; /* NATS subject prefix of this bus */
    char node[128];           /* node name; empty: host name and port */
    bool has_token;
    char token[4097]; /* required by connect when has_token */
} sb_config;

/* Fill `c` with the defaults. */
void sb_config_defaults(sb_config *c);

/* Apply command-line flags over `c` (argv[0] is skipped). The token may also
 * come from --token-file or the SOCKBUS_TOKEN environment variable (flags
 * win). Returns 0 to run, 1 when --help or --version was printed to stdout,
 * or -1 with a one-line reason in `err`. */
int sb_config_parse_args(
    sb_config *c, int argc, char **argv, char *err, size_t errlen);

/* Check ranges and combinations. Returns 0, or -1 with a one-line reason
 * naming the flag in `err`. */
int sb_config_validate(const sb_config *c, char *err, size_t errlen);

/* Apply the configuration file at `path` over `c`: one `key = value` per
 * line, where a key is a flag's name without its dashes ("max-conns");
 * blank lines and lines starting with '#' are skipped; a value may be
 * double-quoted (with \" and \\ inside); unquoted, a blank then '#'
 * starts a comment. Each value is checked as its flag's would be, ranges
 * included. `config` is not a key. Returns 0, or -1 with one line in `err`
 * naming the file, the line and the key ("f.conf:12: max-conns: invalid
 * value 'x'"), or the file alone when it cannot be read. */
int sb_config_load_file(sb_config *c,
                        const char *path,
                        char *err,
                        size_t errlen);

/* Fill `c` from scratch for sockbusd's command line: the defaults, then the
 * file named by --config if any, then SOCKBUS_TOKEN and every flag, so that
 * the command line wins over the file wherever --config stands in it.
 * Returns as sb_config_parse_args() does. Reading the file again on SIGHUP
 * is calling this again with the same arguments. */
int sb_config_from_args(
    sb_config *c, int argc, char **argv, char *err, size_t errlen);

/* True when a running server applies a new value of `key` (a flag's name
 * without its dashes) on reload: the log level and format, the token, and
 * the limits each new connection takes (max-conns, max-frame, max-subs,
 * send-queue, send-queue-bytes, heartbeat-ms). */
bool sb_config_reloadable(const char *key);

/* Copy every reloadable setting from `src` into `dst`. */
void sb_config_take_reloadable(sb_config *dst, const sb_config *src);

/* Told about one setting that differs: its key, and its values as text
 * (both NULL for the token, which is never shown). */
typedef void sb_config_change_fn(const char *key,
                                 const char *from,
                                 const char *to,
                                 bool reloadable,
                                 void *ud);

/* Call `fn` for each setting that differs between `a` and `b`, in --help
 * order. Returns how many differ. */
int sb_config_diff(const sb_config *a,
                   const sb_config *b,
                   sb_config_change_fn *fn,
                   void *ud);

/* The usage text printed by --help. */
const char *sb_config_usage(void);

#endif
