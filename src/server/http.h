/*
 * http.h — the HTTP front of the server (libmicrohttpd): the OpenAI-compatible
 * endpoints, streaming with Server-Sent Events, /v1/models, /health, /metrics.
 *
 * Design: MHD runs its own epoll threads (a small pool); handlers never block.
 * A completion request is parsed (openai.h), tokenized, and submitted to the
 * scheduler (sched.h); when it has no tokens to send, its connection is
 * suspended from inside sched_req_take's arm callback and resumed by the
 * scheduler's notify, so a wakeup can never be lost. Tokens are detokenized
 * here (whole UTF-8 characters only), checked against stop strings, and sent
 * as one SSE event per piece of text, or gathered for a non-streaming answer.
 * Because a suspended MHD connection neither times out nor notices its client
 * leaving, every resume (tokens, or the scheduler's heartbeat) first peeks at
 * the socket: a closed one cancels the request, freeing its KV blocks within a
 * step. Limits: request body (Content-Length and bytes received: 413), total
 * time to receive a request (slow clients are dropped), idle connection
 * timeout, connection count, queue depth (429 with Retry-After), max_tokens
 * and context length (400), per-request generation timeout.
 *
 * The shopper chat (POST /api/chat, docs/CHAT.md) goes through the same
 * phases with one more before them: the parsed request is handed to the
 * retrieval pool (assist/chat.h) with the connection suspended, the worker's
 * done callback resumes it, and the prepared prompt is submitted to the
 * scheduler; tokens then pass through the markup parser into text, citation,
 * card and compare events (chat_stream), then suggestions and done. GET /
 * serves the web chat (web/index.html, app.js, style.css, read at start from
 * srv_opts.web_dir) and GET /api/products its product-page selector. With
 * srv_opts.answers, a finished answer is handed to the answers writer thread
 * with its context and the connection suspended; the done event (with
 * answer_id) is sent once the commit is reported. POST /api/feedback records a
 * vote the same way, answering 200 after the commit.
 *
 * Ownership: struct srv borrows the scheduler, the tokenizer and the chat
 * pool (all must outlive it; srv_stop closes the pool) and owns the daemon,
 * the web files and every connection's state.
 *
 * THREAD SAFETY: srv_start/srv_stop from one thread; handlers run on MHD's
 * threads and the scheduler's notify on the scheduler thread.
 */
#ifndef AISLE_SERVER_HTTP_H
#define AISLE_SERVER_HTTP_H

#include "model/sample.h"
#include "server/sched.h"

#include <stddef.h>

struct tok;
struct chat_pool;
struct answers;

struct srv_opts {
    const char *host;          /* IPv4 or IPv6 literal; NULL: 127.0.0.1 */
    int port;                  /* 0: an ephemeral port (srv_port tells which) */
    const char *model_name;    /* the id /v1/models lists and requests must name */
    size_t max_body;           /* bytes; 0: 1 MiB */
    int max_conns;             /* 0: 2048 */
    int conn_timeout_s;        /* idle connection timeout; 0: 15 */
    double read_timeout_s;     /* whole request (headers + body) must arrive within; 0: 10 */
    double request_timeout_s;  /* generation deadline per request; 0: 300 */
    int default_max_tokens;    /* when a request gives none (capped by the context); 0: 512 */
    int threads;               /* MHD threads; 0: 2 */
    int retry_after_s;         /* Retry-After on 429; 0: 1 */
    struct chat_pool *chat;    /* the shopper chat's retrieval pool; NULL: /api/chat answers 503 */
    const char *web_dir;       /* index.html, app.js, style.css; NULL: GET / answers 404 */
    int chat_max_tokens;       /* answer length of /api/chat (capped by the context); 0: 256 */
    float chat_temperature;    /* /api/chat sampling; 0: 0.3, < 0: greedy (docs/CHAT.md: measured) */
    float chat_top_p;          /* 0: 0.9 */
    float chat_repeat_penalty; /* over the answer's last 64 tokens; 0: 1.1, 1: off */
    lm_mask_fn chat_mask;      /* tests: a mask hook on every /api/chat sampler (scripts the
                                  model's output); NULL in aisle serve */
    void *chat_mask_ctx;
    struct answers *answers;   /* the answers database with its writer (store/answers.h), borrowed: every
                                  finished chat answer is stored and POST /api/feedback records votes;
                                  NULL: nothing is stored (done has no answer_id; feedback answers 503) */
    const char *model_meta;    /* JSON stored with each answer (the model file's path, size, ...); NULL: none */
    int chat_free_ids;         /* 1: no tag-id constraint (assist/tagmask.h), so tags may name any id
                                  and unknown ones are dropped (tests of that path) */
};

struct srv;

/* Bind and start serving. 0 with *out, or AISLE_EIO (also: a web file
 * missing from web_dir) / AISLE_EINVAL / AISLE_ENOMEM with detail in err. */
int srv_start(struct srv **out, struct sched *s, const struct tok *tk, const struct srv_opts *o, char *err,
              size_t errlen);
/* The port bound. */
int srv_port(const struct srv *v);
/* Wake and end every request, wait for the answers and votes being
 * written, stop the daemon, free. NULL is a no-op. */
void srv_stop(struct srv *v);

#endif
