/*
 * chat.h — the shopper-facing assistant behind POST /api/chat, without the
 * HTTP: the request's validation, a pool of retrieval workers that turn a
 * request into the model's prompt (evidence + prompt.h) and hydrated product
 * cards, and the streaming side that turns the model's text into events
 * (text, citation, card, compare, suggestions, done). docs/CHAT.md.
 *
 * Design: retrieval (resolve, route, hybrid search, live facts, ~25 ms p99)
 * and store reads never run on the HTTP threads: chat_pool_submit queues a
 * job for one of a few worker threads, each with its own read-only store
 * connection, shop and hybrid searcher (one SQLite connection per thread);
 * the job's done callback runs on the worker. A job prepares everything the
 * stream will need: the prompt tokens, the evidence (for citations) and a
 * card for every product of the evidence, read from the store's offers at
 * that moment (shop_offers: price, stock, seller, as_of, stale). The stream
 * side (struct chat_stream) is then pure: it parses the model's markup and
 * answers tags from those cards only, so a tag naming a product that is not
 * in the evidence (the model invents ids) never yields a card — it is dropped
 * and counted — and every number a shopper sees comes from the store, never
 * from the model's text.
 *
 * Ownership: struct chat_request owns copies of its strings; struct
 * chat_prep owns its evidence, prompt, cards and suggestions; the pool owns
 * its threads and their connections and borrows the tokenizer (which must
 * outlive it). A chat_job is the caller's until done is called.
 *
 * THREAD SAFETY: chat_request_* and chat_stream_* are plain data (one thread
 * at a time per object). chat_pool_submit and chat_pool_close may be called
 * from any thread; done(ctx) runs on a worker thread.
 */
#ifndef AISLE_ASSIST_CHAT_H
#define AISLE_ASSIST_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "assist/prompt.h"
#include "core/buf.h"
#include "retrieval/evidence.h"
#include "tok/tok.h"

#define CHAT_MAX_MESSAGES 64      /* messages in one request (PROMPT_MAX_TURNS) */
#define CHAT_MAX_CONTENT 4000     /* bytes of one message */
#define CHAT_MAX_ID 64            /* bytes of product_id / conversation_id */
#define CHAT_MAX_POSTCODE 15      /* bytes of postcode */
#define CHAT_MAX_CARDS 16         /* products hydrated per answer */
#define CHAT_MAX_SUGGESTIONS 3
#define CHAT_MAX_QUEUE 64         /* jobs waiting for a worker before submit says AISLE_EBUSY */
#define CHAT_SNIPPET_BYTES 240    /* a citation's snippet */

/* ---- the request ---- */

struct chat_msg {
    enum prompt_role role;
    char *content; /* owned, valid UTF-8 (JSON strings are) */
};

struct chat_request {
    struct chat_msg *msgs; /* (n_msgs) owned; the last one is the user's question */
    size_t n_msgs;
    char *product_id;      /* the product page, or NULL */
    char *postcode;        /* or NULL */
    char *conversation_id; /* or NULL */
};

/* What was wrong with a request, in the server's error schema (400). */
struct chat_error {
    const char *code; /* static: invalid_json, invalid_type, invalid_value, missing_required_parameter,
                         unknown_parameter */
    char param[48];   /* the field: "messages[2].content" ("" for the body as a whole) */
    char message[300];
};

/* Parse and validate a body (len bytes). 0 with *r filled (release it), or
 * AISLE_EINVAL with *e naming the field and what is wrong (unknown fields are
 * refused), or AISLE_ENOMEM. */
int chat_request_parse(struct chat_request *r, const char *body, size_t len, struct chat_error *e);
void chat_request_release(struct chat_request *r);

/* ---- a vote on an answer (POST /api/feedback) ---- */

#define CHAT_ANSWER_ID_LEN 32  /* hex characters of an answer id (store/answers.h) */
#define CHAT_MAX_COMMENT 1000  /* bytes of a vote's comment */

struct chat_feedback {
    char answer_id[CHAT_ANSWER_ID_LEN + 1];
    int rating;    /* +1 up, -1 down */
    char *comment; /* owned, or NULL (absent, null or empty) */
};

/* Parse and validate {"answer_id", "rating": "up"|"down", "comment"} with the
 * same strictness and errors as chat_request_parse. 0 with *r filled
 * (release it), AISLE_EINVAL with *e, or AISLE_ENOMEM. */
int chat_feedback_parse(struct chat_feedback *r, const char *body, size_t len, struct chat_error *e);
void chat_feedback_release(struct chat_feedback *r);

/* ---- what a worker prepares ---- */

struct chat_card {
    char product_id[SHOP_ID_MAX];
    char title[256], brand[96];
    int has_offer;         /* 0: no seller lists it (no price, no stock) */
    int64_t price_minor;   /* the best offer (cheapest in stock, else cheapest) */
    char currency[4];
    int64_t stock;         /* of that offer */
    int64_t stock_total;   /* over every seller */
    int delivery_days;     /* that offer's promise; -1 unknown */
    char seller[SHOP_TEXT_MAX];
    size_t n_offers;
    char as_of[40];        /* when the store said so */
    int stale;             /* the live source failed; this is its last known answer */
    const char *source;    /* static: "local" or "merchant" */
    int has_delivery;      /* an estimate to the request's postcode */
    int delivery_available, days_min, days_max;
    char earliest[11], latest[11];
};

struct chat_prep {
    int rc;            /* 0, or what went wrong (then only err/err_param are set) */
    char err[512];
    const char *err_param; /* static: the request field at fault ("product_id"), or NULL (server side) */
    struct evidence ev;
    struct prompt prompt;  /* ids: the model's prompt, ending in "<|assistant|>\n" */
    struct chat_card cards[CHAT_MAX_CARDS];
    size_t n_cards;
    char *suggestions[CHAT_MAX_SUGGESTIONS]; /* owned */
    size_t n_suggestions;
    double retrieval_s, hydrate_s; /* worker time for evidence + prompt, and for the cards */
    int have_ev;
};

void chat_prep_init(struct chat_prep *p);
void chat_prep_release(struct chat_prep *p);
/* The card of product id, or NULL when it is not one of the evidence's products. */
const struct chat_card *chat_prep_card(const struct chat_prep *p, const char *id, size_t len);

struct chat_pool_opts {
    const char *db;         /* the store (opened read-only by every worker) */
    const char *router;     /* models/router.bin, or NULL: the keyword router */
    int workers;            /* <= 0: 2 */
    const struct tok *tk;   /* the model's tokenizer (counts evidence tokens, builds the prompt) */
    size_t evidence_budget; /* tokens; 0: EVIDENCE_DEFAULT_BUDGET */
    size_t max_passages;    /* 0: EVIDENCE_DEFAULT_MAX */
    const struct shop_http_opts *shop_http; /* live facts and cards from the merchant's API
                                               (docs/STORE_API.md); NULL: the store's own tables */
};

struct chat_job {
    const struct chat_request *req; /* borrowed until done */
    struct chat_prep *out;          /* filled before done (out->rc says how it went) */
    void (*done)(void *ctx);        /* on the worker thread */
    void *ctx;
    struct chat_job *next;          /* the pool's */
};

struct chat_pool;

/* Open the store once to check it, load the router, start the workers. 0,
 * or AISLE_EDB / AISLE_EIO / AISLE_EFORMAT / AISLE_ENOMEM with detail in err. */
int chat_pool_new(struct chat_pool **out, const struct chat_pool_opts *o, char *err, size_t errlen);
/* Queue a job: 0, AISLE_EBUSY (queue full, or the pool is closed). */
int chat_pool_submit(struct chat_pool *p, struct chat_job *j);
/* Refuse new jobs and wait until every queued and running job is done. */
void chat_pool_close(struct chat_pool *p);
/* Close, join the workers, free. NULL is a no-op. */
void chat_pool_free(struct chat_pool *p);
/* JSON array [{"id","title"}...] of demo products for the web chat's selector
 * (read once at start). Borrowed. */
const char *chat_pool_products_json(const struct chat_pool *p);

/* ---- the stream: model text -> events ---- */

struct chat_stream_stats {
    int n_text, n_citations, n_cards, n_compare;
    int dropped_tags; /* tag ids naming products that are not in the evidence (no card) */
    char dropped_ids[4][MARKUP_MAX_ID_LEN + 1]; /* the first of them, for the done event */
    int bad_markup;   /* malformed tags and citations out of range, shown as text */
};

struct chat_stream {
    const struct chat_prep *prep; /* borrowed */
    struct buf *out;              /* borrowed: SSE bytes are appended here */
    struct markup mk;
    struct buf text;              /* text not yet sent as an event */
    struct chat_stream_stats st;
    unsigned cited[(MARKUP_MAX_CITE + 32) / 32]; /* a bit per citation already sent */
};

void chat_stream_init(struct chat_stream *cs, const struct chat_prep *prep, struct buf *out);
void chat_stream_release(struct chat_stream *cs);
/* Feed detokenized bytes (any split); events go to out. 0 or AISLE_ENOMEM. */
int chat_stream_feed(struct chat_stream *cs, const char *s, size_t n);
/* Text gathered so far becomes one `text` event (called once per batch of
 * tokens, so events are not one per token). 0 or AISLE_ENOMEM. */
int chat_stream_flush(struct chat_stream *cs);
/* End of the answer: the rest of the markup, `suggestions`. 0 or AISLE_ENOMEM. */
int chat_stream_finish(struct chat_stream *cs);

/* The done event's JSON (freed by the caller): finish ("stop"/"length"),
 * usage, timings in ms, the stream's counts and the dropped ids;
 * conversation_id may be NULL. NULL on allocation failure. */
struct chat_done {
    const char *finish;
    int prompt_tokens, completion_tokens, cached_tokens;
    double retrieval_ms, hydrate_ms, ttft_ms, total_ms;
    const char *conversation_id;
    const char *answer_id; /* the stored answer's id, or NULL (not stored) */
};
char *chat_done_json(const struct chat_stream *cs, const struct chat_done *d);

/* Append one SSE event "event: NAME\ndata: JSON\n\n" (json freed; NULL is
 * AISLE_ENOMEM). */
int chat_sse(struct buf *out, const char *name, char *json);

#endif
