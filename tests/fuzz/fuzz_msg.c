/* fuzz_msg.c - libFuzzer target for proto/msg.c.
 *
 * Each input is one client frame. sb_msg_parse() decodes strings in place,
 * so it runs on a copy of exactly the input's size (AddressSanitizer catches
 * any overrun), and the checks are:
 * 1. The verdict agrees with the JSON scanner on the input (bad_json exactly
 *    when sb_json_scan() refuses it), and is one of the codes parsing can
 *    return.
 * 2. Every span lies inside the buffer; `id` and `data` are the exact bytes
 *    received, `id` scans as a string or a number and `data` as a value;
 *    decoded spans are well-formed UTF-8 (they escape into a valid string).
 * 3. On SB_OK, the fields match the op: sub/unsub have a valid pattern and
 *    maybe a valid group, pub a valid topic and maybe a valid reply topic,
 *    connect bounded name and token; fields an op does not take are absent.
 *    For pub, the `msg` frame built from the spans is one line of valid
 *    JSON whose members are the op, the topic, the data byte for byte and
 *    the reply, and its recorded parts match. An `ok` frame for the id is
 *    valid JSON.
 * 4. On error, err_msg is non-empty and the `err` frame built with it (and
 *    the id) is one line of valid JSON carrying the code, message and id. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "msg.h"
#include "topic.h"
#include "fuzz_check.h"

/* The input, its working copy, and whether it holds a '\n' (a frame from
 * the framer never does; only then must built frames be one line). */
struct in {
    const uint8_t *orig;
    char *buf;
    size_t size;
    bool has_nl;
};

static bool absent(sb_span s)
{
    return s.p == NULL && s.n == 0;
}

static void check_inside(const struct in *in, sb_span s)
{
    if (s.p == NULL) {
        CHECK(s.n == 0);
        return;
    }
    CHECK(s.p >= in->buf && s.n <= in->size);
    CHECK((size_t)(s.p - in->buf) <= in->size - s.n);
}

/* A raw span (id, data): the bytes received at that place, unchanged by
 * in-place decoding, and one JSON value on its own. */
static sb_json_type check_raw(const struct in *in, sb_span s)
{
    check_inside(in, s);
    CHECK(s.n > 0);
    size_t off = (size_t)(s.p - in->buf);
    CHECK(memcmp(s.p, in->orig + off, s.n) == 0);
    sb_json_result res;
    CHECK(sb_json_scan(s.p, s.n, NULL, 0, &res) == 0);
    return res.type;
}

/* True when the JSON string body `body` decodes to exactly `want`. */
static bool
body_decodes_to(const char *body, size_t blen, const char *want, size_t n)
{
    char *d = malloc(blen ? blen : 1);
    CHECK(d != NULL);
    size_t dn = sb_json_unescape(d, body, blen);
    bool same = dn == n && (n == 0 || memcmp(d, want, n) == 0);
    free(d);
    return same;
}

/* A decoded span: well-formed UTF-8, so it escapes into a valid string. */
static void check_decoded(const struct in *in, sb_span s)
{
    check_inside(in, s);
    if (s.p == NULL)
        return;
    size_t elen = sb_json_escaped_len(s.p, s.n);
    char *q = malloc(elen + 2);
    CHECK(q != NULL);
    q[0] = '"';
    CHECK(sb_json_escape(q + 1, s.p, s.n) == elen);
    q[elen + 1] = '"';
    sb_json_result res;
    CHECK(sb_json_scan(q, elen + 2, NULL, 0, &res) == 0);
    CHECK(res.type == SB_JSON_STRING);
    CHECK(body_decodes_to(q + 1, elen, s.p, s.n));
    free(q);
}

static void check_spans(const struct in *in, const sb_client_msg *m)
{
    if (m->id.p != NULL) {
        sb_json_type t = check_raw(in, m->id);
        CHECK(t == SB_JSON_STRING || t == SB_JSON_NUMBER);
    }
    if (m->data.p != NULL)
        check_raw(in, m->data);
    check_decoded(in, m->topic);
    check_decoded(in, m->group);
    check_decoded(in, m->reply);
    check_decoded(in, m->name);
    check_decoded(in, m->token);
}

/* A built frame: text ends in "\n" and NUL, is one line when the input
 * was, and scans as an object; its members go to `mem`. */
static void check_built(const struct in *in,
                        const sb_frame *f,
                        sb_json_member *mem,
                        size_t max_mem,
                        size_t want_members)
{
    CHECK(f != NULL && f->len >= 1);
    CHECK(f->text[f->len - 1] == '\n' && f->text[f->len] == '\0');
    if (!in->has_nl)
        CHECK(memchr(f->text, '\n', f->len - 1) == NULL);
    sb_json_result res;
    CHECK(sb_json_scan(f->text, f->len, mem, max_mem, &res) == 0);
    CHECK(res.type == SB_JSON_OBJECT);
    CHECK(res.n_members == want_members);
}

static bool key_is(const sb_frame *f, const sb_json_member *m, const char *k)
{
    return m->key_len == strlen(k) && !m->key_escaped &&
           memcmp(f->text + m->key_off, k, m->key_len) == 0;
}

static bool
val_is(const sb_frame *f, const sb_json_member *m, const char *v, size_t n)
{
    return m->val_len == n && memcmp(f->text + m->val_off, v, n) == 0;
}

/* A string member that decodes to s[0..n). */
static bool
str_is(const sb_frame *f, const sb_json_member *m, const char *s, size_t n)
{
    return m->type == SB_JSON_STRING &&
           body_decodes_to(f->text + m->val_off + 1, m->val_len - 2, s, n);
}

static void check_msg_frame(const struct in *in, const sb_client_msg *m)
{
    uint64_t origin = in->size * 2654435761u;
    sb_frame *f = sb_msg_build_msg(m->topic, m->data, m->reply, origin);
    sb_json_member mem[4];
    check_built(in, f, mem, 4, m->reply.p ? 4 : 3);
    CHECK(f->kind == SB_FRAME_MSG);
    CHECK(key_is(f, &mem[0], "op") && val_is(f, &mem[0], "\"msg\"", 5));
    CHECK(key_is(f, &mem[1], "topic"));
    CHECK(str_is(f, &mem[1], m->topic.p, m->topic.n));
    CHECK(key_is(f, &mem[2], "data"));
    if (m->data.p != NULL)
        CHECK(val_is(f, &mem[2], m->data.p, m->data.n));
    else
        CHECK(val_is(f, &mem[2], "null", 4));
    CHECK(f->data_off == mem[2].val_off && f->data_len == mem[2].val_len);
    CHECK(f->topic_len == m->topic.n && f->topic[f->topic_len] == '\0');
    CHECK(memcmp(f->topic, m->topic.p, m->topic.n) == 0);
    if (m->reply.p != NULL) {
        CHECK(key_is(f, &mem[3], "reply"));
        CHECK(str_is(f, &mem[3], m->reply.p, m->reply.n));
        CHECK(f->reply != NULL && f->reply_len == m->reply.n);
        CHECK(f->reply[f->reply_len] == '\0');
        CHECK(memcmp(f->reply, m->reply.p, m->reply.n) == 0);
    } else {
        CHECK(f->reply == NULL && f->reply_len == 0);
    }
    CHECK(f->origin == origin);
    sb_frame_unref(&f);
    CHECK(f == NULL);
}

/* A group: 1..255 bytes, no space, C0, DEL or C1 (0xC2 0x80..0x9F). */
static bool group_ok(sb_span g)
{
    if (g.n == 0 || g.n > SB_GROUP_MAX)
        return false;
    const unsigned char *u = (const unsigned char *)g.p;
    for (size_t i = 0; i < g.n; i++) {
        if (u[i] <= ' ' || u[i] == 0x7F)
            return false;
        if (u[i] == 0xC2 && i + 1 < g.n && u[i + 1] >= 0x80 && u[i + 1] <= 0x9F)
            return false;
    }
    return true;
}

static void check_ok(const struct in *in, const sb_client_msg *m)
{
    CHECK(m->op > SB_OP_NONE && m->op < SB_OP__COUNT);
    CHECK(m->err_msg == NULL);
    bool topic = false, group = false, reply = false, data = false;
    bool connect = false;
    switch (m->op) {
    case SB_OP_SUB:
    case SB_OP_UNSUB:
        topic = group = true;
        CHECK(sb_topic_valid_pattern(m->topic.p, m->topic.n));
        CHECK(m->group.p == NULL || group_ok(m->group));
        break;
    case SB_OP_PUB:
        topic = reply = data = true;
        CHECK(sb_topic_valid(m->topic.p, m->topic.n));
        CHECK(m->reply.p == NULL || sb_topic_valid(m->reply.p, m->reply.n));
        check_msg_frame(in, m);
        break;
    case SB_OP_CONNECT:
        connect = true;
        CHECK(m->name.n <= SB_NAME_MAX && m->token.n <= SB_TOKEN_MAX);
        CHECK(m->echo >= -1 && m->echo <= 1);
        break;
    default:
        break;
    }
    CHECK(topic == (m->topic.p != NULL));
    CHECK(group || absent(m->group));
    CHECK(reply || absent(m->reply));
    CHECK(data || absent(m->data));
    CHECK(connect || (absent(m->name) && absent(m->token) && m->echo == -1));

    sb_frame *f = sb_msg_build_ok(m->id);
    sb_json_member mem[2];
    check_built(in, f, mem, 2, 2);
    CHECK(key_is(f, &mem[0], "op") && val_is(f, &mem[0], "\"ok\"", 4));
    CHECK(key_is(f, &mem[1], "id"));
    if (m->id.p != NULL)
        CHECK(val_is(f, &mem[1], m->id.p, m->id.n));
    else
        CHECK(val_is(f, &mem[1], "null", 4));
    sb_frame_unref(&f);
}

static void check_err(const struct in *in, sb_err e, const sb_client_msg *m)
{
    CHECK(e == SB_ERR_BAD_JSON || e == SB_ERR_BAD_FRAME ||
          e == SB_ERR_UNKNOWN_OP || e == SB_ERR_BAD_TOPIC);
    CHECK(m->err_msg != NULL && m->err_msg[0] != '\0');
    size_t mn = strlen(m->err_msg);

    sb_frame *f = sb_msg_build_err(e, m->err_msg, m->id);
    sb_json_member mem[4];
    check_built(in, f, mem, 4, m->id.p ? 4 : 3);
    CHECK(f->kind == SB_FRAME_CTRL);
    CHECK(key_is(f, &mem[0], "op") && val_is(f, &mem[0], "\"err\"", 5));
    const char *code = sb_err_str(e);
    CHECK(key_is(f, &mem[1], "code") && str_is(f, &mem[1], code, strlen(code)));
    CHECK(key_is(f, &mem[2], "msg") && str_is(f, &mem[2], m->err_msg, mn));
    if (m->id.p != NULL)
        CHECK(key_is(f, &mem[3], "id") && val_is(f, &mem[3], m->id.p, m->id.n));
    sb_frame_unref(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {
        .orig = data,
        .buf = malloc(size ? size : 1),
        .size = size,
        .has_nl = memchr(data, '\n', size) != NULL,
    };
    CHECK(in.buf != NULL);
    if (size > 0)
        memcpy(in.buf, data, size);

    sb_client_msg m;
    sb_err e = sb_msg_parse(in.buf, size, &m);

    sb_json_result res;
    int rc = sb_json_scan((const char *)data, size, NULL, 0, &res);
    CHECK((e == SB_ERR_BAD_JSON) == (rc != 0));

    check_spans(&in, &m);
    if (e == SB_OK)
        check_ok(&in, &m);
    else
        check_err(&in, e, &m);
    free(in.buf);
    return 0;
}
