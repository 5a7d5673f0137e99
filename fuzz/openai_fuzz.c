/*
 * openai_fuzz.c — libFuzzer target for the HTTP request bodies of the
 * OpenAI-compatible API: oai_parse (src/server/openai.c) on
 * /v1/chat/completions and /v1/completions bodies, and the response builders
 * over whatever text was parsed.
 *
 * Input: byte 0 bit 0 selects the endpoint (0 chat, 1 completions); the rest
 * is the body, any bytes.
 *
 * Invariants checked (abort on violation):
 *   - on error: the status is 400 (or 500 for memory), the message is
 *     non-empty, and oai_error_json gives JSON that parses back with
 *     error.message/type/param/code present;
 *   - on success: model is set; chat has 1..OAI_MAX_MESSAGES messages whose
 *     roles are system/user/assistant and whose contents are NUL-free; a
 *     completion has a non-empty prompt; 0..OAI_MAX_STOPS non-empty stops;
 *     max_tokens is -1 or 1..2^24; temperature in [0,2], top_p in [0,1];
 *   - the builders accept every parsed text (and the raw input) and produce
 *     JSON that parses back, with the text intact when it was valid UTF-8;
 *   - oai_utf8_clean's output is valid UTF-8, and cleaning two halves
 *     separately equals cleaning the whole when the cut is between characters.
 * ASan/UBSan and LeakSanitizer catch the rest.
 */
#include "core/buf.h"
#include "core/utf8.h"
#include "server/openai.h"

#include "fuzz.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_json(char *s, const char *what, const char *text, size_t len, int valid_text)
{
    FUZZ_CHECK(s != NULL, "%s: builder returned NULL", what);
    json_error_t je;
    json_t *j = json_loads(s, JSON_ALLOW_NUL, &je);
    FUZZ_CHECK(j != NULL, "%s: not JSON (%s): %s", what, je.text, s);
    if (valid_text && text) {
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        json_t *t = json_object_get(ch, "text");
        if (!t)
            t = json_object_get(json_object_get(ch, "message"), "content");
        if (!t)
            t = json_object_get(json_object_get(ch, "delta"), "content");
        FUZZ_CHECK(json_is_string(t) && json_string_length(t) == len && !memcmp(json_string_value(t), text, len),
                   "%s: text changed", what);
    }
    json_decref(j);
    free(s);
}

static void builders(enum oai_kind k, const char *text, size_t len)
{
    int valid = utf8_valid(text, len);
    check_json(oai_response_json(k, "id", 1, "m", text, len, "stop", 3, 4), "response", text, len, valid);
    check_json(oai_chunk_json(k, "id", 1, "m", text, len, 1, NULL), "chunk", text, len, valid);
    check_json(oai_usage_chunk_json(k, "id", 1, "m", 1, 2), "usage", NULL, 0, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum oai_kind k = (data[0] & 1) ? OAI_COMPLETION : OAI_CHAT;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    struct oai_request r;
    struct oai_error e;
    int rc = oai_parse(&r, k, body, n, &e);
    if (rc) {
        FUZZ_CHECK(e.status == 400 || e.status == 500, "status %d", e.status);
        FUZZ_CHECK(e.message[0] != '\0', "empty message");
        char *j = oai_error_json(&e);
        FUZZ_CHECK(j != NULL, "error JSON failed for: %s", e.message);
        json_t *root = json_loads(j, 0, NULL);
        json_t *err = json_object_get(root, "error");
        FUZZ_CHECK(json_is_string(json_object_get(err, "message")) && json_is_string(json_object_get(err, "type")) &&
                       json_object_get(err, "param") && json_object_get(err, "code"),
                   "bad error object %s", j);
        json_decref(root);
        free(j);
    } else {
        FUZZ_CHECK(r.model != NULL, "no model");
        if (k == OAI_CHAT) {
            FUZZ_CHECK(r.n_msgs >= 1 && r.n_msgs <= OAI_MAX_MESSAGES, "%zu messages", r.n_msgs);
            for (size_t i = 0; i < r.n_msgs; i++) {
                const char *role = r.msgs[i].role;
                FUZZ_CHECK(!strcmp(role, "system") || !strcmp(role, "user") || !strcmp(role, "assistant"),
                           "role %s", role);
                FUZZ_CHECK(r.msgs[i].content != NULL, "no content");
                builders(k, r.msgs[i].content, strlen(r.msgs[i].content));
            }
        } else {
            FUZZ_CHECK(r.prompt && r.prompt[0], "empty prompt");
            builders(k, r.prompt, strlen(r.prompt));
        }
        FUZZ_CHECK(r.n_stop >= 0 && r.n_stop <= OAI_MAX_STOPS, "%d stops", r.n_stop);
        for (int i = 0; i < r.n_stop; i++)
            FUZZ_CHECK(r.stop[i] && r.stop[i][0], "empty stop");
        FUZZ_CHECK(r.max_tokens == -1 || (r.max_tokens >= 1 && r.max_tokens <= (1 << 24)), "max_tokens %ld",
                   r.max_tokens);
        FUZZ_CHECK(r.temperature >= 0 && r.temperature <= 2 && r.top_p >= 0 && r.top_p <= 1, "ranges");
        oai_request_release(&r);
    }
    /* The raw bytes as model output. */
    builders(k, body, n);
    struct buf whole, parts;
    buf_init(&whole, 0);
    buf_init(&parts, 0);
    FUZZ_CHECK(oai_utf8_clean(&whole, body, n) == 0, "clean failed");
    FUZZ_CHECK(utf8_valid(whole.data ? whole.data : "", whole.len), "cleaned text is not UTF-8");
    size_t cut = utf8_trim(body, n, n / 2);
    FUZZ_CHECK(oai_utf8_clean(&parts, body, cut) == 0 && oai_utf8_clean(&parts, body + cut, n - cut) == 0, "clean");
    if (utf8_valid_prefix(body, n) >= cut)
        FUZZ_CHECK(parts.len == whole.len && (!parts.len || !memcmp(parts.data, whole.data, whole.len)),
                   "cleaning in two parts differs");
    buf_release(&whole);
    buf_release(&parts);
    return 0;
}
