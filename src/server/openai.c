/*
 * openai.c — OpenAI request validation and response JSON (see openai.h).
 *
 * Every field reader names the field (with its index for messages) in the
 * error message and in `param`, and says what it got, so a client sees
 * "messages[2].content: expected a string or an array of text parts, got a
 * number" rather than a bare 400.
 */
#include "server/openai.h"

#include "core/error.h"
#include "core/utf8.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void oai_error_set(struct oai_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    e->type = type ? type : "invalid_request_error";
    e->code = code;
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

static const char *kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static int bad_type(struct oai_error *e, const char *param, const char *want, const json_t *got)
{
    oai_error_set(e, 400, NULL, "invalid_type", param, "%s: expected %s, got %s", param, want, kind_of(got));
    return AISLE_EFORMAT;
}

static int nomem(struct oai_error *e)
{
    oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return AISLE_ENOMEM;
}

/* A number field in [lo, hi]; absent or null leaves *out. */
static int get_num(json_t *o, const char *f, double lo, double hi, double *out, struct oai_error *e)
{
    json_t *v = json_object_get(o, f);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return bad_type(e, f, "a number", v);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        oai_error_set(e, 400, NULL, "invalid_value", f, "%s: %g is outside [%g, %g]", f, d, lo, hi);
        return AISLE_EINVAL;
    }
    *out = d;
    return 0;
}

/* An integer field in [lo, hi]; absent or null leaves *out. */
static int get_int(json_t *o, const char *f, long long lo, long long hi, long long *out, struct oai_error *e)
{
    json_t *v = json_object_get(o, f);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return bad_type(e, f, "an integer", v);
    long long d = json_integer_value(v);
    if (d < lo || d > hi) {
        oai_error_set(e, 400, NULL, "invalid_value", f, "%s: %lld is outside [%lld, %lld]", f, d, lo, hi);
        return AISLE_EINVAL;
    }
    *out = d;
    return 0;
}

static int get_bool(json_t *o, const char *f, int *out, struct oai_error *e)
{
    json_t *v = json_object_get(o, f);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return bad_type(e, f, "a boolean", v);
    *out = json_is_true(v);
    return 0;
}

/* Message content: a string, or an array of {"type":"text","text":...}
 * parts (joined), or null (an assistant turn with no text). */
static int get_content(json_t *v, size_t i, char **out, struct oai_error *e)
{
    char param[64];
    snprintf(param, sizeof(param), "messages[%zu].content", i);
    if (!v || json_is_null(v)) {
        *out = strdup("");
        return *out ? 0 : nomem(e);
    }
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        if (memchr(json_string_value(v), 0, n)) {
            oai_error_set(e, 400, NULL, "invalid_value", param, "%s: contains a NUL character", param);
            return AISLE_EFORMAT;
        }
        *out = strndup(json_string_value(v), n);
        return *out ? 0 : nomem(e);
    }
    if (!json_is_array(v))
        return bad_type(e, param, "a string or an array of text parts", v);
    struct buf b;
    buf_init(&b, 0);
    size_t k;
    json_t *part;
    json_array_foreach(v, k, part) {
        char pp[96];
        snprintf(pp, sizeof(pp), "%s[%zu]", param, k);
        json_t *ty = json_object_get(part, "type"), *tx = json_object_get(part, "text");
        if (!json_is_object(part)) {
            buf_release(&b);
            return bad_type(e, pp, "an object", part);
        }
        if (!json_is_string(ty) || strcmp(json_string_value(ty), "text")) {
            oai_error_set(e, 400, NULL, "invalid_value", pp, "%s.type: only \"text\" parts are supported", pp);
            buf_release(&b);
            return AISLE_EINVAL;
        }
        if (!json_is_string(tx)) {
            snprintf(pp + strlen(pp), sizeof(pp) - strlen(pp), ".text");
            buf_release(&b);
            return bad_type(e, pp, "a string", tx ? tx : json_null());
        }
        if (memchr(json_string_value(tx), 0, json_string_length(tx))) {
            oai_error_set(e, 400, NULL, "invalid_value", pp, "%s.text: contains a NUL character", pp);
            buf_release(&b);
            return AISLE_EFORMAT;
        }
        if (buf_append(&b, json_string_value(tx), json_string_length(tx))) {
            buf_release(&b);
            return nomem(e);
        }
    }
    *out = b.data ? buf_detach(&b) : strdup("");
    return *out ? 0 : nomem(e);
}

static int get_messages(json_t *root, struct oai_request *req, struct oai_error *e)
{
    json_t *v = json_object_get(root, "messages");
    if (!v) {
        oai_error_set(e, 400, NULL, "missing_required_parameter", "messages", "messages: required");
        return AISLE_EINVAL;
    }
    if (!json_is_array(v))
        return bad_type(e, "messages", "an array", v);
    size_t n = json_array_size(v);
    if (n == 0 || n > OAI_MAX_MESSAGES) {
        oai_error_set(e, 400, NULL, "invalid_value", "messages", "messages: %zu messages; 1 to %d are accepted", n,
                      OAI_MAX_MESSAGES);
        return AISLE_EINVAL;
    }
    req->msgs = calloc(n, sizeof(*req->msgs));
    if (!req->msgs)
        return nomem(e);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        char param[64];
        snprintf(param, sizeof(param), "messages[%zu]", i);
        if (!json_is_object(m))
            return bad_type(e, param, "an object", m);
        json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        if (!role || !json_is_string(role))
            return bad_type(e, param, "a string", role ? role : json_null());
        const char *r = json_string_value(role);
        if (!strcmp(r, "developer"))
            r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            oai_error_set(e, 400, NULL, "invalid_value", param,
                          "%s: '%.40s' is not one of 'system', 'developer', 'user', 'assistant'", param, r);
            return AISLE_EINVAL;
        }
        req->n_msgs = i + 1;
        if (!(req->msgs[i].role = strdup(r)))
            return nomem(e);
        int rc = get_content(json_object_get(m, "content"), i, &req->msgs[i].content, e);
        if (rc)
            return rc;
    }
    return 0;
}

static int get_prompt(json_t *root, struct oai_request *req, struct oai_error *e)
{
    json_t *v = json_object_get(root, "prompt");
    if (!v) {
        oai_error_set(e, 400, NULL, "missing_required_parameter", "prompt", "prompt: required");
        return AISLE_EINVAL;
    }
    if (json_is_array(v) && json_array_size(v) == 1)
        v = json_array_get(v, 0);
    if (!json_is_string(v))
        return bad_type(e, "prompt", "a string (or an array of one string)", v);
    if (json_string_length(v) == 0 || memchr(json_string_value(v), 0, json_string_length(v))) {
        oai_error_set(e, 400, NULL, "invalid_value", "prompt", "prompt: must be non-empty text without NUL");
        return AISLE_EINVAL;
    }
    req->prompt = strndup(json_string_value(v), json_string_length(v));
    return req->prompt ? 0 : nomem(e);
}

static int get_stop(json_t *root, struct oai_request *req, struct oai_error *e)
{
    json_t *v = json_object_get(root, "stop");
    if (!v || json_is_null(v))
        return 0;
    size_t n = 1;
    if (json_is_array(v))
        n = json_array_size(v);
    else if (!json_is_string(v))
        return bad_type(e, "stop", "a string or an array of strings", v);
    if (n > OAI_MAX_STOPS) {
        oai_error_set(e, 400, NULL, "invalid_value", "stop", "stop: %zu strings; at most %d", n, OAI_MAX_STOPS);
        return AISLE_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        char param[32];
        snprintf(param, sizeof(param), json_is_array(v) ? "stop[%zu]" : "stop", i);
        if (!json_is_string(s))
            return bad_type(e, param, "a string", s);
        size_t len = json_string_length(s);
        if (len == 0 || len > OAI_MAX_STOP_LEN || memchr(json_string_value(s), 0, len)) {
            oai_error_set(e, 400, NULL, "invalid_value", param, "%s: must be 1 to %d bytes without NUL", param,
                          OAI_MAX_STOP_LEN);
            return AISLE_EINVAL;
        }
        if (!(req->stop[req->n_stop] = strndup(json_string_value(s), len)))
            return nomem(e);
        req->n_stop++;
    }
    return 0;
}

int oai_parse(struct oai_request *req, enum oai_kind kind, const char *body, size_t len, struct oai_error *e)
{
    memset(req, 0, sizeof(*req));
    req->kind = kind;
    req->max_tokens = -1;
    req->temperature = 1.0;
    req->top_p = 1.0;
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    int rc = AISLE_EFORMAT;
    if (!root) {
        oai_error_set(e, 400, NULL, "invalid_json", NULL,
                      "the request body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return AISLE_EFORMAT;
    }
    if (!json_is_object(root)) {
        bad_type(e, "body", "a JSON object", root);
        goto fail;
    }
    json_t *model = json_object_get(root, "model");
    if (!model) {
        oai_error_set(e, 400, NULL, "missing_required_parameter", "model", "model: required");
        goto fail;
    }
    if (!json_is_string(model) || json_string_length(model) > 256) {
        rc = json_is_string(model) ? AISLE_ETOOBIG : bad_type(e, "model", "a string", model);
        if (json_is_string(model))
            oai_error_set(e, 400, NULL, "invalid_value", "model", "model: longer than 256 bytes");
        goto fail;
    }
    if (!(req->model = strndup(json_string_value(model), json_string_length(model)))) {
        rc = nomem(e);
        goto fail;
    }
    if ((rc = kind == OAI_CHAT ? get_messages(root, req, e) : get_prompt(root, req, e)))
        goto fail;
    long long mt = -1, n = 1, seed = -1;
    double penalty_lo = -2, penalty_hi = 2;
    if ((rc = get_int(root, "max_tokens", 1, 1 << 24, &mt, e)) ||
        (rc = get_int(root, "max_completion_tokens", 1, 1 << 24, &mt, e)) ||
        (rc = get_int(root, "n", 1, 1, &n, e)) ||
        (rc = get_int(root, "seed", INT64_MIN, INT64_MAX, &seed, e)) ||
        (rc = get_num(root, "temperature", 0, 2, &req->temperature, e)) ||
        (rc = get_num(root, "top_p", 0, 1, &req->top_p, e)) ||
        (rc = get_num(root, "frequency_penalty", penalty_lo, penalty_hi, &req->frequency_penalty, e)) ||
        (rc = get_num(root, "presence_penalty", penalty_lo, penalty_hi, &req->presence_penalty, e)) ||
        (rc = get_bool(root, "stream", &req->stream, e)) ||
        (rc = get_bool(root, "ignore_eos", &req->ignore_eos, e)) || (rc = get_stop(root, req, e)))
        goto fail;
    req->max_tokens = (long)mt;
    if (json_object_get(root, "seed") && !json_is_null(json_object_get(root, "seed"))) {
        req->has_seed = 1;
        req->seed = (uint64_t)seed;
    }
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            rc = bad_type(e, "stream_options", "an object", so);
            goto fail;
        }
        if ((rc = get_bool(so, "include_usage", &req->include_usage, e)))
            goto fail;
    }
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    oai_request_release(req);
    return rc ? rc : AISLE_EFORMAT;
}

void oai_request_release(struct oai_request *req)
{
    for (size_t i = 0; i < req->n_msgs; i++) {
        free(req->msgs[i].role);
        free(req->msgs[i].content);
    }
    free(req->msgs);
    for (int i = 0; i < req->n_stop; i++)
        free(req->stop[i]);
    free(req->model);
    free(req->prompt);
    memset(req, 0, sizeof(*req));
}

int oai_utf8_clean(struct buf *out, const char *s, size_t n)
{
    while (n > 0) {
        size_t ok = utf8_valid_prefix(s, n);
        if (buf_append(out, s, ok))
            return AISLE_ENOMEM;
        s += ok;
        n -= ok;
        if (n > 0) {
            if (buf_append(out, "\xef\xbf\xbd", 3))
                return AISLE_ENOMEM;
            /* One U+FFFD per invalid byte: the same output however the bytes
             * were split between calls (streamed pieces vs the whole answer). */
            s++, n--;
        }
    }
    return 0;
}

/* A JSON string from arbitrary bytes. */
static json_t *jtext(const char *text, size_t len)
{
    struct buf b;
    buf_init(&b, 0);
    json_t *j = NULL;
    if (oai_utf8_clean(&b, text ? text : "", text ? len : 0) == 0)
        j = json_stringn(b.data ? b.data : "", b.len);
    buf_release(&b);
    return j;
}

static char *dump(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

char *oai_error_json(const struct oai_error *e)
{
    json_t *err = json_pack("{s:o, s:s, s:o, s:o}", "message", jtext(e->message, strlen(e->message)), "type",
                            e->type ? e->type : "invalid_request_error", "param",
                            e->param[0] ? json_string(e->param) : json_null(), "code",
                            e->code ? json_string(e->code) : json_null());
    return dump(json_pack("{s:o}", "error", err));
}

static json_t *usage(int p, int c)
{
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", p, "completion_tokens", c, "total_tokens", p + c);
}

char *oai_response_json(enum oai_kind kind, const char *id, long created, const char *model, const char *text,
                        size_t len, const char *finish, int prompt_tokens, int completion_tokens)
{
    json_t *choice;
    if (kind == OAI_CHAT)
        choice = json_pack("{s:i, s:{s:s, s:o}, s:n, s:s}", "index", 0, "message", "role", "assistant", "content",
                           jtext(text, len), "logprobs", "finish_reason", finish);
    else
        choice = json_pack("{s:o, s:i, s:n, s:s}", "text", jtext(text, len), "index", 0, "logprobs",
                           "finish_reason", finish);
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", id, "object",
                          kind == OAI_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)created,
                          "model", model, "choices", choice, "usage", usage(prompt_tokens, completion_tokens)));
}

char *oai_chunk_json(enum oai_kind kind, const char *id, long created, const char *model, const char *text,
                     size_t len, int role_first, const char *finish)
{
    json_t *choice;
    if (kind == OAI_CHAT) {
        json_t *delta = json_object();
        if (role_first)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (len || role_first)
            json_object_set_new(delta, "content", jtext(text, len));
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs", "finish_reason",
                           finish ? json_string(finish) : json_null());
    } else
        choice = json_pack("{s:o, s:i, s:n, s:o}", "text", jtext(text, len), "index", 0, "logprobs",
                           "finish_reason", finish ? json_string(finish) : json_null());
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object",
                          kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)created, "model", model, "choices", choice));
}

char *oai_usage_chunk_json(enum oai_kind kind, const char *id, long created, const char *model, int prompt_tokens,
                           int completion_tokens)
{
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", id, "object",
                          kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)created, "model", model, "choices", "usage",
                          usage(prompt_tokens, completion_tokens)));
}

char *oai_models_json(const char *model, long created)
{
    return dump(json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id", model, "object",
                          "model", "created", (json_int_t)created, "owned_by", "aisle"));
}
