/* log.c - formatted log lines, each one write(2) so that lines from many
 * threads never interleave. See log.h.
 *
 * The JSON format is derived from the text message after formatting it, so
 * call sites stay printf-style; its escaper is local (rather than proto's
 * sb_json_escape) because it must also bound the output and replace invalid
 * UTF-8 (a peer's name, a cut at the line limit) so every line parses. */
#define _GNU_SOURCE
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

atomic_int sb_log__level = SB_LOG_INFO;
static atomic_bool log_json;

#define MSG_MAX 1024  /* a message, formatted; longer ones are cut */
#define JSON_MAX 8192 /* a JSON line: room for MSG_MAX escaped, mostly */
#define KEYS_MAX 32   /* pairs per JSON line; more stay in the last value */

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void sb_log_set_level(sb_log_level lvl)
{
    atomic_store(&sb_log__level, (int)lvl);
}

void sb_log_set_json(bool json)
{
    atomic_store(&log_json, json);
}

int sb_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return SB_LOG_WARN;
    return -1;
}

/* ---- JSON lines ---------------------------------------------------------- */

/* A bounded output buffer that always keeps room to close the line
 * ("\"}\n"): once something does not fit, everything after is dropped. */
struct jbuf {
    char *p;
    size_t n, cap; /* cap excludes the closing reserve */
    bool full, in_string;
};

static void jput(struct jbuf *b, const char *s, size_t n)
{
    if (b->full || n > b->cap - b->n) {
        b->full = true;
        return;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (len > n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Append s[0..n) as a JSON string body. */
static void jescape(struct jbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n && !b->full;) {
        unsigned char c = u[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            jput(b, esc, 2);
        } else if (c == '\n') {
            jput(b, "\\n", 2);
        } else if (c == '\r') {
            jput(b, "\\r", 2);
        } else if (c == '\t') {
            jput(b, "\\t", 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            jput(b, esc, 6);
        } else if (c < 0x80) {
            jput(b, s + i, 1);
        } else {
            size_t len = utf8_len(u + i, n - i);
            if (len == 0) {
                jput(b, "\\ufffd", 6); /* not UTF-8: the replacement */
                i++;
                continue;
            }
            jput(b, s + i, len);
            i += len;
            continue;
        }
        i++;
    }
}

/* Append one member "key":"value" (value cut of trailing blanks). */
static void
jmember(struct jbuf *b, const char *k, size_t kn, const char *v, size_t vn)
{
    while (vn > 0 && v[vn - 1] == ' ')
        vn--;
    if (b->full || kn + 6 > b->cap - b->n) {
        b->full = true;
        return;
    }
    jput(b, ",\"", 2);
    jput(b, k, kn); /* keys are plain: letters, digits, _ . - */
    jput(b, "\":\"", 3);
    b->in_string = true;
    jescape(b, v, vn);
    jput(b, "\"", 1);
    b->in_string = b->full;
}

static bool key_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && ((c >= '0' && c <= '9') || c == '.' || c == '-'));
}

struct keys {
    const char *k[KEYS_MAX];
    size_t n[KEYS_MAX];
    size_t count;
};

static bool key_taken(const struct keys *ks, const char *k, size_t n)
{
    static const char *const reserved[] = {"time", "level", "thread", "msg",
                                           "text"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strlen(reserved[i]) == n && memcmp(reserved[i], k, n) == 0)
            return true;
    for (size_t i = 0; i < ks->count; i++)
        if (ks->n[i] == n && memcmp(ks->k[i], k, n) == 0)
            return true;
    return false;
}

/* Length of a new key starting a `key=` pair at s, or 0. */
static size_t pair_key(const struct keys *ks, const char *s)
{
    size_t n = 0;
    while (key_char(s[n], n == 0))
        n++;
    if (n == 0 || s[n] != '=' || ks->count == KEYS_MAX || key_taken(ks, s, n))
        return 0;
    return n;
}

size_t sb_log__json_line(char *out,
                         size_t cap,
                         sb_log_level lvl,
                         const char *time,
                         const char *thread,
                         const char *msg)
{
    struct jbuf b = {.p = out, .cap = cap - 3, .in_string = true};
    jput(&b, "{\"time\":\"", 9);
    jescape(&b, time, strlen(time));
    jput(&b, "\",\"level\":\"", 11);
    jput(&b, level_names[lvl], strlen(level_names[lvl]));
    jput(&b, "\",\"thread\":\"", 12);
    jescape(&b, thread, strlen(thread));
    jput(&b, "\"", 1);
    b.in_string = b.full; /* a cut above leaves a string open */
    size_t ev = strcspn(msg, " ");
    jmember(&b, "msg", 3, msg, ev);

    /* The rest: words before the first pair are "text"; each value runs
     * to the next " key=". */
    const char *rest = msg + ev + strspn(msg + ev, " ");
    struct keys ks = {.count = 0};
    const char *key = NULL, *val = rest; /* NULL key: "text" */
    size_t kn = 0;
    for (const char *q = rest; *q; q++) {
        size_t n;
        if ((q == rest || q[-1] == ' ') && (n = pair_key(&ks, q)) > 0) {
            if (key != NULL)
                jmember(&b, key, kn, val, (size_t)(q - val));
            else if (q > val)
                jmember(&b, "text", 4, val, (size_t)(q - val));
            ks.k[ks.count] = q;
            ks.n[ks.count++] = n;
            key = q;
            kn = n;
            val = q + n + 1;
            q += n;
        }
    }
    if (key != NULL)
        jmember(&b, key, kn, val, strlen(val));
    else if (*val != '\0')
        jmember(&b, "text", 4, val, strlen(val));
    /* The reserve holds the closing bytes, whatever was dropped. */
    size_t n = b.n;
    if (b.in_string)
        out[n++] = '"';
    out[n++] = '}';
    out[n++] = '\n';
    return n;
}

/* ---- Writing ------------------------------------------------------------- */

static void write_all(const char *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

void sb_log__write(sb_log_level lvl, const char *fmt, ...)
{
    char msg[MSG_MAX], line[JSON_MAX], when[64];
    struct timespec ts;
    struct tm tm;
    char tname[16] = "?";

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    pthread_getname_np(pthread_self(), tname, sizeof(tname));
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    if (atomic_load_explicit(&log_json, memory_order_relaxed)) {
        write_all(line,
                  sb_log__json_line(line, sizeof(line), lvl, when, tname, msg));
        return;
    }
    int n = snprintf(line, MSG_MAX, "%s %-5s [%s] %s", when, level_names[lvl],
                     tname, msg);
    if (n < 0)
        return;
    size_t len = (size_t)n < MSG_MAX - 1 ? (size_t)n : MSG_MAX - 1;
    line[len++] = '\n';
    write_all(line, len);
}
