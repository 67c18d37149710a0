/* msg.c - parsing client frames and building server frames. See msg.h.
 *
 * Parsing is one scan by sb_json_scan() plus a walk over the top-level
 * members it reports: no tree is built and `data` is never looked at again.
 * Building writes the text by hand into one allocation, escaping strings
 * with sb_json_escape(), so that every frame is valid JSON by construction. */
#include "msg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "topic.h"

/* Top-level members looked at; a frame with more is refused. */
#define MAX_MEMBERS 64

static const char *const err_strs[] = {"ok",
#define SB_ERR_STR(name, str) str,
                                       SB_ERR_MAP(SB_ERR_STR)
#undef SB_ERR_STR
};

static const char *const op_strs[] = {"",
#define SB_OP_STR(name, str) str,
                                      SB_OP_MAP(SB_OP_STR)
#undef SB_OP_STR
};

const char *sb_err_str(sb_err e)
{
    if ((unsigned)e >= SB_ERR__COUNT)
        return "internal";
    return err_strs[e];
}

const char *sb_op_str(sb_op op)
{
    if ((unsigned)op >= SB_OP__COUNT)
        return "";
    return op_strs[op];
}

/* The fields the protocol knows, in a fixed order for the `seen` table. */
enum field {
    F_OP,
    F_ID,
    F_TOPIC,
    F_GROUP,
    F_REPLY,
    F_DATA,
    F_NAME,
    F_TOKEN,
    F_ECHO,
    F__COUNT
};
static const char *const field_names[F__COUNT] = {
    "op", "id", "topic", "group", "reply", "data", "name", "token", "echo"};

static int field_of(const char *k, size_t n)
{
    for (int i = 0; i < F__COUNT; i++)
        if (strlen(field_names[i]) == n && memcmp(field_names[i], k, n) == 0)
            return i;
    return -1;
}

static sb_op op_of(const char *s, size_t n)
{
    for (int i = 1; i < SB_OP__COUNT; i++)
        if (strlen(op_strs[i]) == n && memcmp(op_strs[i], s, n) == 0)
            return (sb_op)i;
    return SB_OP_NONE;
}

static sb_err fail(sb_client_msg *out, sb_err e, const char *msg)
{
    out->err_msg = msg;
    return e;
}

static sb_err fail_duplicate(sb_client_msg *out, const char *field)
{
    snprintf(out->err_buf, sizeof(out->err_buf), "duplicate field \"%s\"",
             field);
    out->err_msg = out->err_buf;
    return SB_ERR_BAD_FRAME;
}

/* Decode a string member in place and return its span. */
static sb_span take_string(char *frame, const sb_json_member *m)
{
    char *body = frame + m->val_off + 1;
    size_t n = m->val_len - 2;
    if (m->val_escaped)
        n = sb_json_unescape(body, body, n);
    return (sb_span){body, n};
}

/* An optional string field: absent or null leave *dst absent. */
static int opt_string(char *frame, const sb_json_member *m, sb_span *dst)
{
    if (m == NULL || m->type == SB_JSON_NULL)
        return 0;
    if (m->type != SB_JSON_STRING)
        return -1;
    *dst = take_string(frame, m);
    return 0;
}

/* True for a group name: 1..max bytes with no space and no control
 * character (C0, DEL, or C1 encoded as 0xC2 0x80..0x9F), as topics. */
static bool plain_label(sb_span s, size_t max)
{
    if (s.n == 0 || s.n > max)
        return false;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c <= 0x20 || c == 0x7f)
            return false;
        if (c == 0xc2 && i + 1 < s.n && (unsigned char)s.p[i + 1] >= 0x80 &&
            (unsigned char)s.p[i + 1] <= 0x9f)
            return false;
    }
    return true;
}

static sb_err
check_topic(char *frame, const sb_json_member *m, sb_op op, sb_client_msg *out)
{
    if (m == NULL || m->type == SB_JSON_NULL)
        return fail(out, SB_ERR_BAD_FRAME, "missing field \"topic\"");
    if (m->type != SB_JSON_STRING)
        return fail(out, SB_ERR_BAD_FRAME, "\"topic\" must be a string");
    out->topic = take_string(frame, m);
    if (op == SB_OP_PUB) {
        if (sb_topic_valid(out->topic.p, out->topic.n))
            return SB_OK;
        if (sb_topic_valid_pattern(out->topic.p, out->topic.n))
            return fail(out, SB_ERR_BAD_TOPIC,
                        "wildcards are not allowed in a pub topic");
        return fail(out, SB_ERR_BAD_TOPIC,
                    "invalid topic: 1-255 bytes of non-empty dot-separated "
                    "tokens without spaces or control characters");
    }
    if (!sb_topic_valid_pattern(out->topic.p, out->topic.n))
        return fail(out, SB_ERR_BAD_TOPIC,
                    "invalid pattern: '*' must be a whole token and '>' the "
                    "whole last token");
    return SB_OK;
}

static sb_err
check_fields(char *frame, const sb_json_member *const *f, sb_client_msg *out)
{
    sb_err e;
    switch (out->op) {
    case SB_OP_SUB:
    case SB_OP_UNSUB:
        if ((e = check_topic(frame, f[F_TOPIC], out->op, out)) != SB_OK)
            return e;
        if (opt_string(frame, f[F_GROUP], &out->group) < 0)
            return fail(out, SB_ERR_BAD_FRAME, "\"group\" must be a string");
        if (out->group.p && !plain_label(out->group, SB_GROUP_MAX))
            return fail(out, SB_ERR_BAD_FRAME,
                        "invalid group: 1-255 bytes without spaces or "
                        "control characters");
        return SB_OK;
    case SB_OP_PUB:
        if ((e = check_topic(frame, f[F_TOPIC], out->op, out)) != SB_OK)
            return e;
        if (opt_string(frame, f[F_REPLY], &out->reply) < 0)
            return fail(out, SB_ERR_BAD_FRAME, "\"reply\" must be a string");
        if (out->reply.p && !sb_topic_valid(out->reply.p, out->reply.n))
            return fail(out, SB_ERR_BAD_TOPIC,
                        sb_topic_valid_pattern(out->reply.p, out->reply.n)
                            ? "wildcards are not allowed in a reply topic"
                            : "invalid reply topic");
        if (f[F_DATA] != NULL)
            out->data =
                (sb_span){frame + f[F_DATA]->val_off, f[F_DATA]->val_len};
        return SB_OK;
    case SB_OP_CONNECT:
        if (opt_string(frame, f[F_NAME], &out->name) < 0)
            return fail(out, SB_ERR_BAD_FRAME, "\"name\" must be a string");
        if (out->name.p && out->name.n > SB_NAME_MAX)
            return fail(out, SB_ERR_BAD_FRAME,
                        "\"name\" is longer than 255 bytes");
        if (opt_string(frame, f[F_TOKEN], &out->token) < 0)
            return fail(out, SB_ERR_BAD_FRAME, "\"token\" must be a string");
        if (out->token.p && out->token.n > SB_TOKEN_MAX)
            return fail(out, SB_ERR_BAD_FRAME,
                        "\"token\" is longer than 4096 bytes");
        if (f[F_ECHO] != NULL && f[F_ECHO]->type != SB_JSON_NULL) {
            if (f[F_ECHO]->type == SB_JSON_TRUE)
                out->echo = 1;
            else if (f[F_ECHO]->type == SB_JSON_FALSE)
                out->echo = 0;
            else
                return fail(out, SB_ERR_BAD_FRAME,
                            "\"echo\" must be true or false");
        }
        return SB_OK;
    default:
        return SB_OK;
    }
}

/* Map the members to known fields. Returns the first field given twice,
 * or -1; the first occurrence is kept, so an `id` can still be reported. */
static int index_fields(char *frame,
                        const sb_json_member *m,
                        size_t n,
                        const sb_json_member **f)
{
    int dup = -1;
    for (size_t i = 0; i < n; i++) {
        const char *k = frame + m[i].key_off;
        size_t kn = m[i].key_len;
        char kbuf[16];
        if (m[i].key_escaped) {
            /* Escaped keys are rare; only short ones can be ours. */
            if (kn > 6 * sizeof(kbuf))
                continue;
            char tmp[6 * sizeof(kbuf)];
            memcpy(tmp, k, kn);
            kn = sb_json_unescape(tmp, tmp, kn);
            if (kn > sizeof(kbuf))
                continue;
            memcpy(kbuf, tmp, kn);
            k = kbuf;
        }
        int id = field_of(k, kn);
        if (id < 0)
            continue;
        if (f[id] != NULL) {
            if (dup < 0)
                dup = id;
            continue;
        }
        f[id] = &m[i];
    }
    return dup;
}

sb_err sb_msg_parse(char *frame, size_t len, sb_client_msg *out)
{
    memset(out, 0, sizeof(*out));
    out->echo = -1;

    sb_json_member m[MAX_MEMBERS];
    sb_json_result r;
    int rc = sb_json_scan(frame, len, m, MAX_MEMBERS, &r);
    if (rc == -E2BIG)
        return fail(out, SB_ERR_BAD_JSON, "JSON nested too deeply");
    if (rc < 0) {
        snprintf(out->err_buf, sizeof(out->err_buf),
                 "invalid JSON at byte %zu: %s", r.err_off,
                 r.err ? r.err : "syntax error");
        out->err_msg = out->err_buf;
        return SB_ERR_BAD_JSON;
    }
    if (r.type != SB_JSON_OBJECT)
        return fail(out, SB_ERR_BAD_FRAME, "a frame must be a JSON object");
    if (r.n_members > MAX_MEMBERS)
        return fail(out, SB_ERR_BAD_FRAME, "too many fields (at most 64)");

    const sb_json_member *f[F__COUNT] = {0};
    int dup = index_fields(frame, m, r.n_members, f);

    if (f[F_ID] != NULL && f[F_ID]->type != SB_JSON_NULL) {
        if (f[F_ID]->type != SB_JSON_STRING && f[F_ID]->type != SB_JSON_NUMBER)
            return fail(out, SB_ERR_BAD_FRAME,
                        "\"id\" must be a string or a number");
        if (dup != F_ID)
            out->id = (sb_span){frame + f[F_ID]->val_off, f[F_ID]->val_len};
    }
    if (dup >= 0)
        return fail_duplicate(out, field_names[dup]);
    if (f[F_OP] == NULL)
        return fail(out, SB_ERR_BAD_FRAME, "missing field \"op\"");
    if (f[F_OP]->type != SB_JSON_STRING)
        return fail(out, SB_ERR_BAD_FRAME, "\"op\" must be a string");
    sb_span op = take_string(frame, f[F_OP]);
    out->op = op_of(op.p, op.n);
    if (out->op == SB_OP_NONE)
        return fail(out, SB_ERR_UNKNOWN_OP,
                    "unknown op: expected connect, sub, unsub, pub, ping, "
                    "pong or stats");
    return check_fields(frame, f, out);
}

/* ---- Builders ---------------------------------------------------------- */

/* Append helpers over a cursor; the caller sized the buffer. */
static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static sb_frame *finish(sb_frame *f, char *end, sb_frame_kind kind)
{
    *end++ = '\n';
    *end = '\0';
    f->len = (uint32_t)(end - f->text);
    f->kind = (uint8_t)kind;
    return f;
}

sb_frame *
sb_msg_build_msg(sb_span topic, sb_span data, sb_span reply, uint64_t origin)
{
    return sb_msg_build_msg_routed(topic, data, reply, origin, SB_ROUTE_LOCAL,
                                   (sb_span){0});
}

sb_frame *sb_msg_build_msg_routed(sb_span topic,
                                  sb_span data,
                                  sb_span reply,
                                  uint64_t origin,
                                  sb_frame_route route,
                                  sb_span group)
{
    static const char head[] = "{\"op\":\"msg\",\"topic\":\"";
    static const char mid[] = "\",\"data\":";
    static const char rep[] = ",\"reply\":\"";
    size_t et = sb_json_escaped_len(topic.p, topic.n);
    size_t er = reply.p ? sb_json_escaped_len(reply.p, reply.n) : 0;
    size_t dn = data.p ? data.n : 4;
    size_t gn = route == SB_ROUTE_GROUP && group.p ? group.n : 0;
    size_t cap = sizeof(head) + et + sizeof(mid) + dn + sizeof(rep) + er + 4;
    size_t extra = topic.n + 1 + (reply.p ? reply.n + 1 : 0) + gn + 1;

    if (gn > UINT8_MAX)
        return NULL;
    sb_frame *f = sb_frame_alloc(cap, extra);
    if (f == NULL)
        return NULL;
    char *p = PUT_LIT(f->text, head);
    p += sb_json_escape(p, topic.p, topic.n);
    p = PUT_LIT(p, mid);
    f->data_off = (uint32_t)(p - f->text);
    f->data_len = (uint32_t)dn;
    p = data.p ? put(p, data.p, data.n) : PUT_LIT(p, "null");
    if (reply.p) {
        p = PUT_LIT(p, rep);
        p += sb_json_escape(p, reply.p, reply.n);
        *p++ = '"';
    }
    *p++ = '}';
    finish(f, p, SB_FRAME_MSG);

    /* Decoded copies after the text, for the bus and in-process users. */
    char *x = f->text + f->len + 1;
    memcpy(x, topic.p, topic.n);
    x[topic.n] = '\0';
    f->topic = x;
    f->topic_len = (uint16_t)topic.n;
    x += topic.n + 1;
    if (reply.p) {
        memcpy(x, reply.p, reply.n);
        x[reply.n] = '\0';
        f->reply = x;
        f->reply_len = (uint16_t)reply.n;
        x += reply.n + 1;
    }
    if (gn > 0) {
        memcpy(x, group.p, gn);
        x[gn] = '\0';
        f->group = x;
        f->group_len = (uint8_t)gn;
    }
    f->route = (uint8_t)route;
    f->origin = origin;
    return f;
}

static sb_frame *build_printf(size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static sb_frame *build_printf(size_t cap, const char *fmt, ...)
{
    sb_frame *f = sb_frame_alloc(cap, 0);
    if (f == NULL)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(f->text, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - 1) {
        sb_frame_unref(&f);
        return NULL;
    }
    return finish(f, f->text + n, SB_FRAME_CTRL);
}

sb_frame *sb_msg_build_info(const sb_info *in)
{
    char node[3 * 256 * 2] = "";
    if (in->node != NULL) {
        size_t n = strnlen(in->node, 255);
        char *p = PUT_LIT(node, ",\"node\":\"");
        p += sb_json_escape(p, in->node, n);
        *p++ = '"';
        *p = '\0';
    }
    return build_printf(
        256 + sizeof(node),
        "{\"op\":\"info\",\"server\":\"sockbus\",\"version\":\"%s\","
        "\"proto\":%d,\"client_id\":%" PRIu64 ",\"max_frame\":%" PRIu64
        ",\"heartbeat_ms\":%" PRIu64 ",\"auth_required\":%s%s}",
        SB_VERSION, SB_PROTO, in->client_id, in->max_frame, in->heartbeat_ms,
        in->auth_required ? "true" : "false", node);
}

sb_frame *sb_msg_build_ok(sb_span id)
{
    static const char head[] = "{\"op\":\"ok\",\"id\":";
    sb_frame *f = sb_frame_alloc(sizeof(head) + (id.p ? id.n : 4) + 2, 0);
    if (f == NULL)
        return NULL;
    char *p = PUT_LIT(f->text, head);
    p = id.p ? put(p, id.p, id.n) : PUT_LIT(p, "null");
    *p++ = '}';
    return finish(f, p, SB_FRAME_CTRL);
}

sb_frame *sb_msg_build_err(sb_err code, const char *msg, sb_span id)
{
    static const char head[] = "{\"op\":\"err\",\"code\":\"";
    const char *cs = sb_err_str(code);
    size_t cn = strlen(cs), mn = msg ? strlen(msg) : 0;
    size_t em = sb_json_escaped_len(msg ? msg : "", mn);
    sb_frame *f = sb_frame_alloc(sizeof(head) + cn + em + id.n + 32, 0);
    if (f == NULL)
        return NULL;
    char *p = PUT_LIT(f->text, head);
    p = put(p, cs, cn);
    p = PUT_LIT(p, "\",\"msg\":\"");
    p += sb_json_escape(p, msg ? msg : "", mn);
    *p++ = '"';
    if (id.p) {
        p = PUT_LIT(p, ",\"id\":");
        p = put(p, id.p, id.n);
    }
    *p++ = '}';
    return finish(f, p, SB_FRAME_CTRL);
}

static sb_frame *build_lit(const char *s, size_t n)
{
    sb_frame *f = sb_frame_alloc(n + 1, 0);
    if (f == NULL)
        return NULL;
    return finish(f, put(f->text, s, n), SB_FRAME_CTRL);
}

sb_frame *sb_msg_build_ping(void)
{
    static const char s[] = "{\"op\":\"ping\"}";
    return build_lit(s, sizeof(s) - 1);
}

sb_frame *sb_msg_build_pong(void)
{
    static const char s[] = "{\"op\":\"pong\"}";
    return build_lit(s, sizeof(s) - 1);
}

/* The stats frame's `cluster` object into out[0..cap). Returns its
 * length, or 0 when it does not fit. */
static size_t cluster_json(char *out, size_t cap, const sb_cluster_stats *c)
{
    if (c->state == NULL)
        return (size_t)snprintf(out, cap, "{\"state\":\"off\"}");
    char node[6 * sizeof(c->node) + 1], server[6 * sizeof(c->server) + 1];
    node[sb_json_escape(node, c->node, strnlen(c->node, sizeof(c->node)))] =
        '\0';
    server[sb_json_escape(server, c->server,
                          strnlen(c->server, sizeof(c->server)))] = '\0';
    int n = snprintf(out, cap,
                     "{\"state\":\"%s\",\"node\":\"%s\",\"server\":\"%s\","
                     "\"msgs_sent\":%" PRIu64 ",\"bytes_sent\":%" PRIu64
                     ",\"msgs_received\":%" PRIu64
                     ",\"bytes_received\":%" PRIu64 ",\"dropped\":%" PRIu64
                     ",\"invalid\":%" PRIu64 ",\"subscriptions\":%" PRIu64 "}",
                     c->state, node, server, c->msgs_sent, c->bytes_sent,
                     c->msgs_received, c->bytes_received, c->dropped,
                     c->invalid, c->subscriptions);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

sb_frame *sb_msg_build_stats(const sb_stats *s)
{
    char cluster[6 * 512 + 512];
    if (cluster_json(cluster, sizeof(cluster), &s->cluster) == 0)
        return NULL;
    return build_printf(
        640 + sizeof(cluster),
        "{\"op\":\"stats\",\"connections\":%" PRIu64
        ",\"subscriptions\":%" PRIu64 ",\"msgs_in\":%" PRIu64
        ",\"msgs_out\":%" PRIu64 ",\"bytes_in\":%" PRIu64
        ",\"bytes_out\":%" PRIu64 ",\"dropped\":%" PRIu64
        ",\"slow_consumers\":%" PRIu64 ",\"uptime_ms\":%" PRIu64
        ",\"total_connections\":%" PRIu64 ",\"recv_queue\":%" PRIu64
        ",\"recv_queue_high_water\":%" PRIu64 ",\"cluster\":%s}",
        s->connections, s->subscriptions, s->msgs_in, s->msgs_out, s->bytes_in,
        s->bytes_out, s->dropped, s->slow_consumers, s->uptime_ms,
        s->total_connections, s->recv_queue, s->recv_queue_high_water, cluster);
}
