/* sockbus-bench-proto.c - see sockbus-bench-proto.h.
 *
 * The parsers look for the one frame that matters (a delivered message)
 * with a few memchr/memcmp calls and no allocation; the rare control
 * frames of sockbus go through cJSON, where speed does not matter. */
#define _GNU_SOURCE
#include "sockbus-bench-proto.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define MAX_JSON_DEPTH 32 /* server frames are flat; deeper is garbage */
#define FILLER 'x'

static const char *const names[] = {"sockbus", "nats", "redis"};

const char *sbb_proto_name(sbb_proto p)
{
    return names[p];
}

int sbb_proto_parse(const char *name, sbb_proto *p)
{
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i]) == 0) {
            *p = (sbb_proto)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- requests ---------------------------------------------------------- */

/* Appends s to out[*n..cap). Returns 0 or -ENOSPC. */
static int put(char *out, size_t cap, size_t *n, const char *s, size_t len)
{
    if (cap - *n < len)
        return -ENOSPC;
    memcpy(out + *n, s, len);
    *n += len;
    return 0;
}

static int puts_(char *out, size_t cap, size_t *n, const char *s)
{
    return put(out, cap, n, s, strlen(s));
}

/* Appends cJSON object j, compact, then `end`; deletes j. cJSON escapes
 * names and tokens correctly, which is why the setup frames use it. */
static int put_json(char *out, size_t cap, size_t *n, cJSON *j, const char *end)
{
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (s == NULL)
        return -ENOMEM;
    int rc = puts_(out, cap, n, s);
    free(s);
    return rc ? rc : puts_(out, cap, n, end);
}

/* Appends a Redis command as a RESP array of bulk strings (binary safe). */
static int
put_resp(char *out, size_t cap, size_t *n, int argc, const char **argv)
{
    char head[32];
    snprintf(head, sizeof(head), "*%d\r\n", argc);
    int rc = puts_(out, cap, n, head);
    for (int i = 0; rc == 0 && i < argc; i++) {
        snprintf(head, sizeof(head), "$%zu\r\n", strlen(argv[i]));
        rc = puts_(out, cap, n, head);
        if (rc == 0)
            rc = puts_(out, cap, n, argv[i]);
        if (rc == 0)
            rc = puts_(out, cap, n, "\r\n");
    }
    return rc;
}

static int setup_sockbus(const sbb_setup *s, char *out, size_t cap, size_t *n)
{
    int rc = 0;
    if (s->name || s->token) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "op", "connect");
        if (s->name)
            cJSON_AddStringToObject(c, "name", s->name);
        if (s->token)
            cJSON_AddStringToObject(c, "token", s->token);
        /* Publishers are never subscribed, but say so anyway. */
        cJSON_AddFalseToObject(c, "echo");
        rc = put_json(out, cap, n, c, "\n");
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "op", s->topic ? "sub" : "ping");
    if (s->topic)
        cJSON_AddStringToObject(f, "topic", s->topic);
    if (s->group)
        cJSON_AddStringToObject(f, "group", s->group);
    cJSON_AddStringToObject(f, "id", "ready");
    if (rc == 0)
        return put_json(out, cap, n, f, "\n");
    cJSON_Delete(f);
    return rc;
}

static int setup_nats(const sbb_setup *s, char *out, size_t cap, size_t *n)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddFalseToObject(c, "verbose");
    cJSON_AddFalseToObject(c, "pedantic");
    if (s->name)
        cJSON_AddStringToObject(c, "name", s->name);
    if (s->token)
        cJSON_AddStringToObject(c, "auth_token", s->token);
    int rc = puts_(out, cap, n, "CONNECT ");
    if (rc == 0)
        rc = put_json(out, cap, n, c, "\r\n");
    else
        cJSON_Delete(c);
    if (rc == 0 && s->topic) {
        char line[600];
        snprintf(line, sizeof(line), "SUB %s%s%s 1\r\n", s->topic,
                 s->group ? " " : "", s->group ? s->group : "");
        rc = puts_(out, cap, n, line);
    }
    return rc ? rc : puts_(out, cap, n, "PING\r\n");
}

static int setup_redis(const sbb_setup *s, char *out, size_t cap, size_t *n)
{
    if (s->group)
        return -EINVAL;
    int rc = 0;
    if (s->token) {
        const char *auth[] = {"AUTH", s->token};
        rc = put_resp(out, cap, n, 2, auth);
    }
    if (rc)
        return rc;
    if (s->topic) {
        const char *sub[] = {"SUBSCRIBE", s->topic};
        return put_resp(out, cap, n, 2, sub);
    }
    const char *ping[] = {"PING"};
    return put_resp(out, cap, n, 1, ping);
}

ssize_t sbb_proto_setup(sbb_proto p, const sbb_setup *s, char *out, size_t cap)
{
    size_t n = 0;
    int rc;
    if (p == SBB_PROTO_SOCKBUS)
        rc = setup_sockbus(s, out, cap, &n);
    else if (p == SBB_PROTO_NATS)
        rc = setup_nats(s, out, cap, &n);
    else
        rc = setup_redis(s, out, cap, &n);
    return rc ? rc : (ssize_t)n;
}

const char *sbb_proto_barrier(sbb_proto p)
{
    if (p == SBB_PROTO_SOCKBUS)
        return "{\"op\":\"ping\",\"id\":\"ready\"}\n";
    if (p == SBB_PROTO_NATS)
        return "PING\r\n";
    return "*1\r\n$4\r\nPING\r\n";
}

const char *sbb_proto_pong(sbb_proto p)
{
    if (p == SBB_PROTO_SOCKBUS)
        return "{\"op\":\"pong\"}\n";
    if (p == SBB_PROTO_NATS)
        return "PONG\r\n";
    return NULL;
}

char *sbb_proto_pub_frame(sbb_proto p,
                          const char *topic,
                          size_t size,
                          size_t *len,
                          size_t *payload_off)
{
    char head[600];
    const char *tail;
    if (p == SBB_PROTO_SOCKBUS) {
        snprintf(head, sizeof(head),
                 "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":\"", topic);
        tail = "\"}\n";
    } else if (p == SBB_PROTO_NATS) {
        snprintf(head, sizeof(head), "PUB %s %zu\r\n", topic, size);
        tail = "\r\n";
    } else {
        snprintf(head, sizeof(head),
                 "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%zu\r\n", strlen(topic),
                 topic, size);
        tail = "\r\n";
    }
    size_t hl = strlen(head), tl = strlen(tail);
    char *f = malloc(hl + size + tl);
    if (f == NULL)
        return NULL;
    memcpy(f, head, hl);
    memset(f + hl, FILLER, size);
    memcpy(f + hl + size, tail, tl);
    *len = hl + size + tl;
    *payload_off = hl;
    return f;
}

/* ---- payload header ---------------------------------------------------- */

static void put_hex(char *out, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = hex[v & 15];
        v >>= 4;
    }
}

/* Returns the value of `digits` hex digits, or -1 on a bad digit. */
static int get_hex(const char *in, int digits, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < digits; i++) {
        unsigned c = (unsigned char)in[i], d;
        if (c - '0' < 10)
            d = c - '0';
        else if (c - 'a' < 6)
            d = c - 'a' + 10;
        else
            return -1;
        x = x << 4 | d;
    }
    *v = x;
    return 0;
}

void sbb_payload_stamp(char *payload,
                       uint64_t send_ns,
                       uint32_t pub,
                       uint32_t seq)
{
    put_hex(payload, send_ns, 16);
    put_hex(payload + 16, pub, 8);
    put_hex(payload + 24, seq, 8);
}

int sbb_payload_read(const char *payload,
                     size_t len,
                     uint64_t *send_ns,
                     uint32_t *pub,
                     uint32_t *seq)
{
    uint64_t p, s;
    if (len < SBB_HEADER_LEN || get_hex(payload, 16, send_ns) < 0 ||
        get_hex(payload + 16, 8, &p) < 0 || get_hex(payload + 24, 8, &s) < 0)
        return -EBADMSG;
    *pub = (uint32_t)p;
    *seq = (uint32_t)s;
    return 0;
}

/* ---- parsing ----------------------------------------------------------- */

/* Copies the start of unexpected bytes into ev->text, printable only. */
static ssize_t bad(const char *b, size_t len, sbb_ev *ev)
{
    size_t n = len < 60 ? len : 60, i;
    for (i = 0; i < n; i++)
        ev->text[i] = isprint((unsigned char)b[i]) ? b[i] : '.';
    ev->text[i] = '\0';
    return -EBADMSG;
}

static void set_text(sbb_ev *ev, const char *s, size_t len)
{
    if (len >= sizeof(ev->text))
        len = sizeof(ev->text) - 1;
    memcpy(ev->text, s, len);
    ev->text[len] = '\0';
}

/* True when brackets outside strings nest deeper than MAX_JSON_DEPTH:
 * cJSON recurses, and the bench's threads have small stacks. */
static bool json_too_deep(const char *b, size_t len)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = b[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > MAX_JSON_DEPTH)
                return true;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return false;
}

static void sockbus_err(const cJSON *j, sbb_ev *ev)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "msg");
    const char *c = cJSON_IsString(code) ? code->valuestring : "?";
    const char *m = cJSON_IsString(msg) ? msg->valuestring : "";
    ev->kind = SBB_EV_ERR;
    snprintf(ev->text, sizeof(ev->text), "%s: %s", c, m);
    ev->slow = strcmp(c, "slow_consumer") == 0;
    unsigned long long n;
    if (ev->slow && sscanf(m, "dropped %llu messages", &n) == 1)
        ev->dropped = n;
}

/* A frame other than msg: the greeting, acknowledgements, pings, errors. */
static int sockbus_control(const char *b, size_t len, sbb_ev *ev)
{
    if (json_too_deep(b, len))
        return -1;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(b, len, &end, false);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
    if (!cJSON_IsString(op)) {
        cJSON_Delete(j);
        return -1;
    }
    const char *o = op->valuestring;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    ev->kind = SBB_EV_OTHER;
    if (strcmp(o, "info") == 0)
        ev->kind = SBB_EV_INFO;
    else if (strcmp(o, "ping") == 0)
        ev->kind = SBB_EV_PING;
    else if (strcmp(o, "ok") == 0 && cJSON_IsString(id) &&
             strcmp(id->valuestring, "ready") == 0)
        ev->kind = SBB_EV_READY;
    else if (strcmp(o, "err") == 0)
        sockbus_err(j, ev);
    cJSON_Delete(j);
    return 0;
}

/* A msg frame, as the server writes it (decision 18: op, topic, data):
 * the payload is the data string. Returns false for any other frame. */
static bool sockbus_msg(const char *b, size_t len, sbb_ev *ev)
{
    static const char pre[] = "{\"op\":\"msg\",";
    static const char key[] = "\"data\":\"";
    if (len < sizeof(pre) - 1 || memcmp(b, pre, sizeof(pre) - 1) != 0)
        return false;
    const char *d = memmem(b, len, key, sizeof(key) - 1);
    ev->kind = SBB_EV_MSG;
    ev->data = b; /* not ours: the header check will fail on it */
    ev->len = 0;
    if (d == NULL)
        return true;
    d += sizeof(key) - 1;
    const char *q = memchr(d, '"', len - (size_t)(d - b));
    if (q != NULL) {
        ev->data = d;
        ev->len = (size_t)(q - d);
    }
    return true;
}

static ssize_t sockbus_next(const char *b, size_t n, sbb_ev *ev)
{
    const char *nl = memchr(b, '\n', n);
    if (nl == NULL)
        return 0;
    size_t len = (size_t)(nl - b), used = len + 1;
    if (len > 0 && b[len - 1] == '\r')
        len--;
    if (len == 0) {
        ev->kind = SBB_EV_OTHER;
        return (ssize_t)used;
    }
    if (sockbus_msg(b, len, ev))
        return (ssize_t)used;
    if (sockbus_control(b, len, ev) < 0)
        return bad(b, len, ev);
    return (ssize_t)used;
}

static bool starts(const char *b, size_t len, const char *word)
{
    size_t w = strlen(word);
    return len >= w && memcmp(b, word, w) == 0;
}

/* "MSG <subject> <sid> [reply-to] <#bytes>\r\n<payload>\r\n": the byte
 * count is the last word of the line. */
static ssize_t
nats_msg(const char *b, size_t n, size_t line, size_t used, sbb_ev *ev)
{
    size_t i = line;
    while (i > 4 && b[i - 1] != ' ')
        i--;
    size_t count = 0;
    if (i == line || i <= 4)
        return bad(b, line, ev);
    for (size_t k = i; k < line; k++) {
        if (!isdigit((unsigned char)b[k]) || count > (SIZE_MAX - 9) / 10)
            return bad(b, line, ev);
        count = count * 10 + (size_t)(b[k] - '0');
    }
    if (n - used < count + 2)
        return 0;
    if (b[used + count] != '\r' || b[used + count + 1] != '\n')
        return bad(b, line, ev);
    ev->kind = SBB_EV_MSG;
    ev->data = b + used;
    ev->len = count;
    return (ssize_t)(used + count + 2);
}

static ssize_t nats_next(const char *b, size_t n, sbb_ev *ev)
{
    const char *nl = memchr(b, '\n', n);
    if (nl == NULL)
        return 0;
    size_t line = (size_t)(nl - b), used = line + 1;
    if (line > 0 && b[line - 1] == '\r')
        line--;
    ev->kind = SBB_EV_OTHER;
    if (starts(b, line, "MSG "))
        return nats_msg(b, n, line, used, ev);
    if (starts(b, line, "PING"))
        ev->kind = SBB_EV_PING;
    else if (starts(b, line, "PONG"))
        ev->kind = SBB_EV_READY;
    else if (starts(b, line, "INFO "))
        ev->kind = SBB_EV_INFO;
    else if (starts(b, line, "-ERR")) {
        ev->kind = SBB_EV_ERR;
        set_text(ev, b + 1, line - 1);
        ev->slow = strstr(ev->text, "Slow Consumer") != NULL;
    } else if (!starts(b, line, "+OK"))
        return bad(b, line, ev);
    return (ssize_t)used;
}

/* One RESP item (no nested arrays: pub/sub never sends them). */
struct resp_item {
    char type;
    const char *data;
    size_t len;
    long long num;
};

/* Parses the item at b[at..n). Returns the offset after it, 0 when more
 * bytes are needed, or -1 when it is not RESP. */
static ssize_t
resp_item(const char *b, size_t n, size_t at, struct resp_item *it)
{
    const char *nl = memchr(b + at, '\n', n - at);
    if (nl == NULL)
        return 0;
    size_t end = (size_t)(nl - b); /* the '\n' */
    if (end < at + 2 || b[end - 1] != '\r')
        return -1;
    it->type = b[at];
    it->data = b + at + 1;
    it->len = end - 1 - (at + 1);
    if (it->type == '+' || it->type == '-')
        return (ssize_t)(end + 1);
    char *stop;
    it->num = strtoll(b + at + 1, &stop, 10);
    if (stop != b + end - 1)
        return -1;
    if (it->type == ':' || it->type == '*')
        return (ssize_t)(end + 1);
    if (it->type != '$')
        return -1;
    if (it->num < 0) { /* the null bulk string */
        it->len = 0;
        return (ssize_t)(end + 1);
    }
    size_t len = (size_t)it->num;
    if (n - (end + 1) < len + 2)
        return 0;
    if (b[end + 1 + len] != '\r' || b[end + 2 + len] != '\n')
        return -1;
    it->data = b + end + 1;
    it->len = len;
    return (ssize_t)(end + 3 + len);
}

static bool item_is(const struct resp_item *it, const char *word)
{
    return it->type == '$' && it->len == strlen(word) &&
           memcmp(it->data, word, it->len) == 0;
}

/* An array: a push ("message", "subscribe", "pong") of up to 3 items. */
static ssize_t
redis_array(const char *b, size_t n, ssize_t at, long long count, sbb_ev *ev)
{
    struct resp_item it[3];
    if (count < 1 || count > 3)
        return bad(b, n, ev);
    for (long long i = 0; i < count; i++) {
        at = resp_item(b, n, (size_t)at, &it[i]);
        if (at <= 0)
            return at == 0 ? 0 : bad(b, n, ev);
    }
    ev->kind = SBB_EV_OTHER;
    if (count == 3 && item_is(&it[0], "message") && it[2].type == '$') {
        ev->kind = SBB_EV_MSG;
        ev->data = it[2].data;
        ev->len = it[2].len;
    } else if (item_is(&it[0], "subscribe")) {
        ev->kind = SBB_EV_READY;
    }
    return at;
}

static ssize_t redis_next(const char *b, size_t n, sbb_ev *ev)
{
    struct resp_item it;
    ssize_t at = resp_item(b, n, 0, &it);
    if (at <= 0)
        return at == 0 ? 0 : bad(b, n, ev);
    ev->kind = SBB_EV_OTHER;
    if (it.type == '*')
        return redis_array(b, n, at, it.num, ev);
    if (it.type == ':')
        ev->kind = SBB_EV_INT;
    else if (it.type == '+' && it.len == 4 && memcmp(it.data, "PONG", 4) == 0)
        ev->kind = SBB_EV_READY;
    else if (it.type == '-') {
        ev->kind = SBB_EV_ERR;
        set_text(ev, it.data, it.len);
    }
    return at;
}

ssize_t sbb_proto_next(sbb_proto p, const char *buf, size_t len, sbb_ev *ev)
{
    ev->dropped = 0;
    ev->slow = false;
    if (len == 0)
        return 0;
    if (p == SBB_PROTO_SOCKBUS)
        return sockbus_next(buf, len, ev);
    if (p == SBB_PROTO_NATS)
        return nats_next(buf, len, ev);
    return redis_next(buf, len, ev);
}
