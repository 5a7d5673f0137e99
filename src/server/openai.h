/*
 * openai.h — OpenAI-compatible request parsing and response JSON for
 * /v1/chat/completions and /v1/completions.
 *
 * Design: oai_parse validates an untrusted body with jansson (which rejects
 * invalid UTF-8 and duplicate keys) field by field into a struct oai_request
 * that owns copies of its strings, or fills a struct oai_error in OpenAI's
 * schema ({"error":{"message","type","param","code"}}) naming the field and
 * what was wrong. Unknown fields are ignored, as OpenAI does for fields it
 * does not use. The builders make the response bodies and SSE chunks; any text
 * given to them is first made valid UTF-8 (each invalid byte becomes U+FFFD).
 *
 * Ownership: a parsed request owns all its strings (oai_request_release).
 * Builders return heap strings the caller frees.
 *
 * THREAD SAFETY: pure functions over caller-owned data.
 */
#ifndef AISLE_SERVER_OPENAI_H
#define AISLE_SERVER_OPENAI_H

#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>

#define OAI_MAX_MESSAGES 256
#define OAI_MAX_STOPS 4
#define OAI_MAX_STOP_LEN 256

enum oai_kind {
    OAI_CHAT = 0,       /* /v1/chat/completions */
    OAI_COMPLETION = 1, /* /v1/completions */
};

struct oai_msg {
    char *role;    /* "system", "user" or "assistant" ("developer" is read as "system") */
    char *content; /* the text (array content parts joined) */
};

struct oai_request {
    enum oai_kind kind;
    char *model;
    struct oai_msg *msgs; /* (n_msgs) chat only */
    size_t n_msgs;
    char *prompt; /* completion only */
    int stream, include_usage;
    int ignore_eos; /* extension (as vLLM's): generate max_tokens even past end-of-generation tokens; benchmarks */
    long max_tokens; /* -1: not given */
    double temperature, top_p, frequency_penalty, presence_penalty;
    int has_seed;
    uint64_t seed;
    char *stop[OAI_MAX_STOPS];
    int n_stop;
};

struct oai_error {
    int status;        /* HTTP status */
    char message[320];
    const char *type;  /* "invalid_request_error", "rate_limit_exceeded", "server_error", ... */
    char param[64];    /* "" = null */
    const char *code;  /* NULL = null */
};

/* Fill e (status, type, code, param may be NULL) with a formatted message. */
void oai_error_set(struct oai_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Parse and validate a request body (len bytes, not NUL-terminated). 0 with
 * *req filled, or AISLE_EFORMAT / AISLE_EINVAL / AISLE_ETOOBIG / AISLE_ENOMEM
 * with e filled (status 400, or 500 for memory). */
int oai_parse(struct oai_request *req, enum oai_kind kind, const char *body, size_t len, struct oai_error *e);
void oai_request_release(struct oai_request *req);

/* Append s[0..n) to out with each byte that is not part of a valid UTF-8
 * character replaced by U+FFFD (so cleaning pieces one by one gives what
 * cleaning their concatenation gives, when no valid character is split). */
int oai_utf8_clean(struct buf *out, const char *s, size_t n);

/* {"error":{...}} */
char *oai_error_json(const struct oai_error *e);
/* The whole (non-streaming) response. finish: "stop" or "length". */
char *oai_response_json(enum oai_kind kind, const char *id, long created, const char *model, const char *text,
                        size_t len, const char *finish, int prompt_tokens, int completion_tokens);
/* One streaming chunk: text (may be empty), role_first adds "role":"assistant"
 * to a chat delta, finish NULL while running. */
char *oai_chunk_json(enum oai_kind kind, const char *id, long created, const char *model, const char *text,
                     size_t len, int role_first, const char *finish);
/* The last chunk with usage and empty choices (stream_options.include_usage). */
char *oai_usage_chunk_json(enum oai_kind kind, const char *id, long created, const char *model, int prompt_tokens,
                           int completion_tokens);
/* GET /v1/models for one model. */
char *oai_models_json(const char *model, long created);

#endif
