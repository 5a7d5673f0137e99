/*
 * chat.c — the shopper chat without the HTTP (see chat.h): request
 * validation, the retrieval worker pool, card hydration, suggestions, and the
 * markup-to-events stream.
 *
 * Invariant: every number in a card or compare event is copied from a
 * struct chat_card, which is filled only from shop_offers / shop_delivery /
 * store_product_brief; the model's text is only ever parsed for which product
 * a tag names, and a name that is not one of the prepared cards yields
 * nothing but a count.
 */
#include "assist/chat.h"

#include "core/error.h"
#include "core/utf8.h"
#include "retrieval/hybrid.h"
#include "retrieval/resolve.h"
#include "retrieval/route.h"
#include "store/product.h"
#include "store/shop.h"
#include "store/store.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the request ------------------------------------------------------------------ */

static int bad(struct chat_error *e, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(struct chat_error *e, const char *code, const char *param, const char *fmt, ...)
{
    e->code = code;
    snprintf(e->param, sizeof(e->param), "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return AISLE_EINVAL;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* An id: 1..CHAT_MAX_ID bytes of [A-Za-z0-9_.-]. */
static int id_ok(const char *s, size_t n)
{
    if (n == 0 || n > CHAT_MAX_ID)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return 0;
    }
    return 1;
}

/* An optional string field: absent or null leaves *out NULL. */
static int opt_string(json_t *root, const char *key, size_t max, int is_id, char **out, struct chat_error *e)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad(e, "invalid_type", key, "%s: expected a string, got %s", key, json_kind(v));
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > max)
        return bad(e, "invalid_value", key, "%s: expected 1 to %zu bytes, got %zu", key, max, n);
    if (is_id && !id_ok(s, n))
        return bad(e, "invalid_value", key, "%s: only letters, digits, '_', '-' and '.' are allowed", key);
    if (!is_id)
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20)
                return bad(e, "invalid_value", key, "%s: control characters are not allowed", key);
    if (!(*out = strndup(s, n)))
        return AISLE_ENOMEM;
    return 0;
}

/* The body as a JSON object with only the known fields: 0 with *out (decref
 * it), or AISLE_EINVAL with e set (invalid UTF-8, not JSON, duplicate keys,
 * not an object, an unknown field). */
static int load_object(const char *body, size_t len, const char *const *known, size_t n_known, json_t **out,
                       struct chat_error *e)
{
    size_t valid = utf8_valid_prefix(body, len);
    if (valid < len)
        return bad(e, "invalid_json", "", "the request body is not valid UTF-8 (byte %zu, 0x%02x)", valid,
                   (unsigned char)body[valid]);
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return bad(e, "invalid_json", "", "the request body is not valid JSON: %s (line %d, column %d)", je.text,
                   je.line, je.column);
    if (!json_is_object(root)) {
        int rc = bad(e, "invalid_type", "", "the request body: expected a JSON object, got %s", json_kind(root));
        json_decref(root);
        return rc;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        int ok = 0;
        for (size_t i = 0; i < n_known; i++)
            ok |= !strcmp(key, known[i]);
        if (!ok) {
            char p[sizeof(e->param)], list[200] = "";
            snprintf(p, sizeof(p), "%s", key);
            for (size_t i = 0, n = 0; i < n_known && n < sizeof(list); i++)
                n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", known[i]);
            int rc = bad(e, "unknown_parameter", p, "%.40s: unknown field (known: %s)", key, list);
            json_decref(root); /* key is root's */
            return rc;
        }
    }
    *out = root;
    return 0;
}

int chat_request_parse(struct chat_request *r, const char *body, size_t len, struct chat_error *e)
{
    memset(r, 0, sizeof(*r));
    static const char *const known[] = {"messages", "product_id", "postcode", "conversation_id"};
    json_t *root = NULL;
    int rc = load_object(body, len, known, sizeof(known) / sizeof(known[0]), &root, e);
    if (rc)
        return rc;
    json_t *msgs = json_object_get(root, "messages");
    if (!msgs) {
        rc = bad(e, "missing_required_parameter", "messages", "messages: required");
        goto out;
    }
    if (!json_is_array(msgs)) {
        rc = bad(e, "invalid_type", "messages", "messages: expected an array, got %s", json_kind(msgs));
        goto out;
    }
    size_t nm = json_array_size(msgs);
    if (nm == 0 || nm > CHAT_MAX_MESSAGES) {
        rc = bad(e, "invalid_value", "messages", "messages: expected 1 to %d messages, got %zu", CHAT_MAX_MESSAGES,
                 nm);
        goto out;
    }
    if (!(r->msgs = calloc(nm, sizeof(*r->msgs)))) {
        rc = AISLE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(msgs, i);
        char p[48];
        snprintf(p, sizeof(p), "messages[%zu]", i);
        if (!json_is_object(m)) {
            rc = bad(e, "invalid_type", p, "%s: expected an object, got %s", p, json_kind(m));
            goto out;
        }
        const char *key;
        json_t *val;
        json_object_foreach(m, key, val)
        {
            if (strcmp(key, "role") && strcmp(key, "content")) {
                char q[sizeof(e->param) + 32];
                snprintf(q, sizeof(q), "%s.%.20s", p, key);
                rc = bad(e, "unknown_parameter", q, "%s: unknown field (a message has role and content)", q);
                goto out;
            }
        }
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        snprintf(p, sizeof(p), "messages[%zu].role", i);
        if (!role) {
            rc = bad(e, "missing_required_parameter", p, "%s: required", p);
            goto out;
        }
        if (!json_is_string(role)) {
            rc = bad(e, "invalid_type", p, "%s: expected a string, got %s", p, json_kind(role));
            goto out;
        }
        const char *rs = json_string_value(role);
        if (strcmp(rs, "user") && strcmp(rs, "assistant")) {
            rc = bad(e, "invalid_value", p, "%s: expected \"user\" or \"assistant\", got \"%.30s\"", p, rs);
            goto out;
        }
        snprintf(p, sizeof(p), "messages[%zu].content", i);
        if (!content) {
            rc = bad(e, "missing_required_parameter", p, "%s: required", p);
            goto out;
        }
        if (!json_is_string(content)) {
            rc = bad(e, "invalid_type", p, "%s: expected a string, got %s", p, json_kind(content));
            goto out;
        }
        size_t cl = json_string_length(content);
        const char *cs = json_string_value(content);
        size_t blank = 0;
        while (blank < cl && (cs[blank] == ' ' || cs[blank] == '\t' || cs[blank] == '\n' || cs[blank] == '\r'))
            blank++;
        if (blank == cl || cl > CHAT_MAX_CONTENT) {
            rc = bad(e, "invalid_value", p, "%s: expected 1 to %d bytes of text, got %s", p, CHAT_MAX_CONTENT,
                     cl ? "more" : "none");
            if (blank == cl)
                snprintf(e->message, sizeof(e->message), "%s: empty (no text)", p);
            goto out;
        }
        r->msgs[i].role = strcmp(rs, "user") ? PROMPT_ASSISTANT : PROMPT_USER;
        if (!(r->msgs[i].content = strndup(cs, cl))) {
            rc = AISLE_ENOMEM;
            goto out;
        }
        r->n_msgs++;
    }
    if (r->msgs[nm - 1].role != PROMPT_USER) {
        char p[48];
        snprintf(p, sizeof(p), "messages[%zu].role", nm - 1);
        rc = bad(e, "invalid_value", p, "%s: the last message must be the user's question", p);
        goto out;
    }
    if ((rc = opt_string(root, "product_id", CHAT_MAX_ID, 1, &r->product_id, e)) ||
        (rc = opt_string(root, "postcode", CHAT_MAX_POSTCODE, 0, &r->postcode, e)) ||
        (rc = opt_string(root, "conversation_id", CHAT_MAX_ID, 1, &r->conversation_id, e)))
        goto out;
out:
    json_decref(root);
    if (rc)
        chat_request_release(r);
    if (rc == AISLE_ENOMEM)
        bad(e, "server_error", "", "out of memory");
    return rc;
}

void chat_request_release(struct chat_request *r)
{
    for (size_t i = 0; i < r->n_msgs; i++)
        free(r->msgs[i].content);
    free(r->msgs);
    free(r->product_id);
    free(r->postcode);
    free(r->conversation_id);
    memset(r, 0, sizeof(*r));
}

int chat_feedback_parse(struct chat_feedback *r, const char *body, size_t len, struct chat_error *e)
{
    memset(r, 0, sizeof(*r));
    static const char *const known[] = {"answer_id", "rating", "comment"};
    json_t *root = NULL;
    int rc = load_object(body, len, known, sizeof(known) / sizeof(known[0]), &root, e);
    if (rc)
        return rc;
    json_t *id = json_object_get(root, "answer_id"), *rating = json_object_get(root, "rating"),
           *comment = json_object_get(root, "comment");
    if (!id)
        rc = bad(e, "missing_required_parameter", "answer_id", "answer_id: required");
    else if (!json_is_string(id))
        rc = bad(e, "invalid_type", "answer_id", "answer_id: expected a string, got %s", json_kind(id));
    else if (json_string_length(id) != CHAT_ANSWER_ID_LEN ||
             strspn(json_string_value(id), "0123456789abcdef") != CHAT_ANSWER_ID_LEN)
        rc = bad(e, "invalid_value", "answer_id", "answer_id: expected %d lowercase hex characters (the done event's)",
                 CHAT_ANSWER_ID_LEN);
    else if (!rating)
        rc = bad(e, "missing_required_parameter", "rating", "rating: required");
    else if (!json_is_string(rating))
        rc = bad(e, "invalid_type", "rating", "rating: expected \"up\" or \"down\", got %s", json_kind(rating));
    else if (strcmp(json_string_value(rating), "up") && strcmp(json_string_value(rating), "down"))
        rc = bad(e, "invalid_value", "rating", "rating: expected \"up\" or \"down\", got \"%.20s\"",
                 json_string_value(rating));
    else if (comment && !json_is_null(comment) && !json_is_string(comment))
        rc = bad(e, "invalid_type", "comment", "comment: expected a string, got %s", json_kind(comment));
    else if (comment && json_is_string(comment) && json_string_length(comment) > CHAT_MAX_COMMENT)
        rc = bad(e, "invalid_value", "comment", "comment: at most %d bytes, got %zu", CHAT_MAX_COMMENT,
                 json_string_length(comment));
    else if (comment && json_is_string(comment) && memchr(json_string_value(comment), 0, json_string_length(comment)))
        rc = bad(e, "invalid_value", "comment", "comment: NUL characters are not allowed");
    if (!rc) {
        memcpy(r->answer_id, json_string_value(id), CHAT_ANSWER_ID_LEN + 1);
        r->rating = strcmp(json_string_value(rating), "up") ? -1 : 1;
        if (comment && json_is_string(comment) && json_string_length(comment) > 0 &&
            !(r->comment = strdup(json_string_value(comment)))) {
            rc = AISLE_ENOMEM;
            bad(e, "server_error", "", "out of memory");
        }
    }
    json_decref(root);
    return rc;
}

void chat_feedback_release(struct chat_feedback *r)
{
    free(r->comment);
    r->comment = NULL;
}

/* ---- prepared answers ---------------------------------------------------------------- */

void chat_prep_init(struct chat_prep *p)
{
    memset(p, 0, sizeof(*p));
    prompt_init(&p->prompt);
}

void chat_prep_release(struct chat_prep *p)
{
    if (p->have_ev)
        evidence_release(&p->ev);
    prompt_release(&p->prompt);
    for (size_t i = 0; i < p->n_suggestions; i++)
        free(p->suggestions[i]);
    memset(p, 0, sizeof(*p));
    prompt_init(&p->prompt);
}

const struct chat_card *chat_prep_card(const struct chat_prep *p, const char *id, size_t len)
{
    for (size_t i = 0; i < p->n_cards; i++)
        if (strlen(p->cards[i].product_id) == len && !memcmp(p->cards[i].product_id, id, len))
            return &p->cards[i];
    return NULL;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the worker pool ------------------------------------------------------------------ */

struct worker {
    struct chat_pool *pool;
    pthread_t th;
    int started;
    struct store *st;
    struct shop *shop;
    struct hybrid *hy;
    struct tok_cache *tc;
    struct tok_ids scratch; /* token counting */
};

struct chat_pool {
    struct chat_pool_opts o;
    struct route_model *router;
    struct worker *w;
    int nw;
    pthread_mutex_t mu;
    pthread_cond_t cv, idle;
    struct chat_job *head, *tail;
    int queued, running, closed, quit;
    char *products_json;
};

static long count_tokens(const char *text, size_t len, void *ctx)
{
    struct worker *w = ctx;
    w->scratch.len = 0;
    if (tok_encode(w->pool->o.tk, w->tc, text, len, 0, &w->scratch))
        return -1; /* the estimate */
    return (long)w->scratch.len;
}

/* A card for product id (skipped silently when the catalog lacks it). */
static int add_card(struct worker *w, struct chat_prep *p, const char *id, const char *postcode)
{
    if (p->n_cards == CHAT_MAX_CARDS || !*id || chat_prep_card(p, id, strlen(id)))
        return 0;
    struct chat_card *c = &p->cards[p->n_cards];
    memset(c, 0, sizeof(*c));
    struct store_brief b;
    int rc = store_product_brief(w->st, id, &b);
    if (rc == AISLE_ENOTFOUND)
        return 0;
    if (rc) {
        snprintf(p->err, sizeof(p->err), "reading product %s: %s", id, store_errmsg(w->st));
        return rc;
    }
    snprintf(c->product_id, sizeof(c->product_id), "%s", id);
    memcpy(c->title, b.title, sizeof(c->title));
    memcpy(c->brand, b.brand, sizeof(c->brand));
    c->delivery_days = -1;
    c->source = "local";
    char err[256];
    struct shop_offers *so = malloc(sizeof(*so));
    if (!so)
        return AISLE_ENOMEM;
    rc = shop_offers(w->shop, id, so, err, sizeof(err));
    if (rc == 0) {
        c->n_offers = so->n;
        snprintf(c->as_of, sizeof(c->as_of), "%s", so->fresh.as_of);
        c->stale = so->fresh.stale;
        c->source = so->fresh.source;
        for (size_t i = 0; i < so->n; i++)
            c->stock_total += so->v[i].stock;
        if (so->n) {
            const struct shop_offer *o = &so->v[0]; /* cheapest in stock first */
            c->has_offer = 1;
            c->price_minor = o->price_minor;
            memcpy(c->currency, o->currency, sizeof(c->currency));
            c->stock = o->stock;
            c->delivery_days = o->delivery_days;
            memcpy(c->seller, o->seller, sizeof(c->seller));
        }
    } else if (rc == AISLE_EUNAVAIL) {
        c->stale = 1; /* nothing known: a card without price, marked */
    } else if (rc != AISLE_ENOTFOUND) {
        free(so);
        snprintf(p->err, sizeof(p->err), "offers of %s: %s", id, err);
        return rc;
    }
    free(so);
    if (postcode) {
        struct shop_delivery d;
        if (shop_delivery(w->shop, id, postcode, &d, err, sizeof(err)) == 0) {
            c->has_delivery = 1;
            c->delivery_available = d.available;
            c->days_min = d.days_min;
            c->days_max = d.days_max;
            memcpy(c->earliest, d.earliest, sizeof(c->earliest));
            memcpy(c->latest, d.latest, sizeof(c->latest));
        }
    }
    p->n_cards++;
    return 0;
}

/* A title cut to its first words, for a suggestion. */
static void short_title(char *out, size_t cap, const char *title)
{
    size_t n = 0, words = 0, last_space = 0;
    const char *s = title;
    for (; *s && n + 1 < cap && n < 48; s++) {
        if (*s == ' ' && ++words == 6)
            break;
        if (*s == ',' || *s == '(' || *s == '|')
            break;
        if (*s == ' ')
            last_space = n;
        out[n++] = *s;
    }
    if (*s && *s != ' ' && *s != ',' && *s != '(' && *s != '|' && last_space > 0)
        n = last_space; /* cut by length: end at a whole word */
    while (n > 0 && ((unsigned char)out[n - 1] & 0xc0) == 0x80) /* never end inside a character */
        n--;
    if (n > 0 && (unsigned char)out[n - 1] >= 0xc0)
        n--;
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static int suggest(struct chat_prep *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int suggest(struct chat_prep *p, const char *fmt, ...)
{
    if (p->n_suggestions == CHAT_MAX_SUGGESTIONS)
        return 0;
    char s[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, sizeof(s), fmt, ap);
    va_end(ap);
    if (!(p->suggestions[p->n_suggestions] = strdup(s)))
        return AISLE_ENOMEM;
    p->n_suggestions++;
    return 0;
}

/* Follow-up questions derived from what this answer had: for one product, the
 * sources the router did not use for this question (so the shopper can ask
 * for what the answer could not draw on); for several, a comparison. */
static int make_suggestions(struct chat_prep *p)
{
    const struct resolution *r = &p->ev.res;
    const struct route *rt = &p->ev.route;
    int rc = 0;
    if (r->n == 0)
        return 0;
    const struct chat_card *a = chat_prep_card(p, r->products[0], strlen(r->products[0]));
    if (!a)
        return 0;
    char ta[64], tb[64];
    short_title(ta, sizeof(ta), a->title);
    if (r->n >= 2 && r->why == RESOLVE_CATALOG) {
        const struct chat_card *b = chat_prep_card(p, r->products[1], strlen(r->products[1]));
        if (b) {
            short_title(tb, sizeof(tb), b->title);
            rc = suggest(p, "How does the %s compare with the %s?", ta, tb);
        }
    }
    if (!rc && !rt->use[ROUTE_REVIEWS])
        rc = suggest(p, "What do reviewers say about the %s?", ta);
    if (!rc && !rt->use[ROUTE_QA])
        rc = suggest(p, "What have other shoppers asked about the %s?", ta);
    if (!rc && !rt->use[ROUTE_API] && a->has_offer)
        rc = suggest(p, "Is the %s in stock, and how soon can it arrive?", ta);
    if (!rc && !rt->use[ROUTE_CATALOG])
        rc = suggest(p, "What are the main features of the %s?", ta);
    return rc;
}

static void prepare(struct worker *w, const struct chat_request *req, struct chat_prep *p)
{
    double t0 = mono_s();
    const char *question = req->msgs[req->n_msgs - 1].content;
    char err[512] = "";
    /* Earlier user turns, resolved again, are the conversation (resolve.h). */
    struct resolve_conv *conv = calloc(1, sizeof(*conv));
    struct prompt_passage *ps = NULL;
    struct prompt_turn *turns = NULL;
    int rc = conv ? 0 : AISLE_ENOMEM;
    for (size_t i = 0; i + 1 < req->n_msgs && !rc; i++) {
        if (req->msgs[i].role != PROMPT_USER)
            continue;
        struct resolution r;
        if (!(rc = resolve_product(w->st, req->msgs[i].content, req->product_id, conv, &r, err, sizeof(err))))
            resolve_conv_push(conv, &r);
    }
    struct evidence_opts eo = {.router = w->pool->router, .hybrid = w->hy, .shop = w->shop,
                               .postcode = req->postcode, .budget = w->pool->o.evidence_budget,
                               .max_passages = w->pool->o.max_passages, .count = count_tokens, .count_ctx = w};
    if (!rc) {
        rc = evidence_build(w->st, question, req->product_id, conv, &eo, &p->ev, err, sizeof(err));
        p->have_ev = rc == 0;
    }
    if (rc == AISLE_ENOTFOUND)
        p->err_param = "product_id";
    if (!rc && !(ps = calloc(p->ev.n ? p->ev.n : 1, sizeof(*ps))))
        rc = AISLE_ENOMEM;
    if (!rc && !(turns = calloc(req->n_msgs, sizeof(*turns))))
        rc = AISLE_ENOMEM;
    if (!rc) {
        for (size_t i = 0; i < p->ev.n; i++) {
            const struct evidence_passage *e = &p->ev.v[i];
            ps[i] = (struct prompt_passage){.source = e->source, .product_id = e->product_id,
                                            .as_of = e->as_of[0] ? e->as_of : NULL, .stale = e->stale,
                                            .text = e->text};
        }
        for (size_t i = 0; i < req->n_msgs; i++)
            turns[i] = (struct prompt_turn){.role = req->msgs[i].role, .text = req->msgs[i].content};
        struct prompt_input in = {.evidence = ps, .n_evidence = p->ev.n, .turns = turns, .n_turns = req->n_msgs};
        struct prompt_opts po = {.add_generation_prompt = 1};
        if ((rc = prompt_build(&p->prompt, &in, &po, w->pool->o.tk, w->tc)))
            snprintf(err, sizeof(err), "building the prompt: %s", p->prompt.err);
    }
    double t1 = mono_s();
    /* Cards: the resolved products first, then every product the evidence names. */
    for (size_t i = 0; !rc && i < p->ev.res.n; i++)
        rc = add_card(w, p, p->ev.res.products[i], req->postcode);
    for (size_t i = 0; !rc && i < p->ev.n; i++)
        rc = add_card(w, p, p->ev.v[i].product_id, req->postcode);
    if (!rc)
        rc = make_suggestions(p);
    if (rc && !p->err[0])
        snprintf(p->err, sizeof(p->err), "%s", err[0] ? err : aisle_strerror(rc));
    p->retrieval_s = t1 - t0;
    p->hydrate_s = mono_s() - t1;
    p->rc = rc;
    free(conv);
    free(ps);
    free(turns);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct chat_pool *pl = w->pool;
    pthread_mutex_lock(&pl->mu);
    for (;;) {
        while (!pl->head && !pl->quit)
            pthread_cond_wait(&pl->cv, &pl->mu);
        if (!pl->head)
            break;
        struct chat_job *j = pl->head;
        pl->head = j->next;
        if (!pl->head)
            pl->tail = NULL;
        pl->queued--;
        pl->running++;
        pthread_mutex_unlock(&pl->mu);
        prepare(w, j->req, j->out);
        j->done(j->ctx); /* j may be gone after this */
        pthread_mutex_lock(&pl->mu);
        pl->running--;
        if (!pl->head && !pl->running)
            pthread_cond_broadcast(&pl->idle);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

static int add_product(void *ud, const char *id, const char *title)
{
    json_t *o = json_pack("{s:s, s:s}", "id", id, "title", title);
    return o && !json_array_append_new(ud, o) ? 0 : AISLE_ENOMEM;
}

int chat_pool_new(struct chat_pool **out, const struct chat_pool_opts *o, char *err, size_t errlen)
{
    struct chat_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    p->o = *o;
    p->nw = o->workers > 0 ? o->workers : 2;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->idle, NULL);
    int rc = AISLE_ENOMEM;
    json_t *list = NULL;
    if (!(p->w = calloc((size_t)p->nw, sizeof(*p->w)))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (o->router && (rc = route_model_load(&p->router, o->router, err, errlen)))
        goto fail;
    for (int i = 0; i < p->nw; i++) {
        struct worker *w = &p->w[i];
        w->pool = p;
        tok_ids_init(&w->scratch, 0);
        if ((rc = store_open(&w->st, o->db, STORE_READONLY, err, errlen)) ||
            (rc = o->shop_http ? shop_open_http(&w->shop, o->shop_http, err, errlen)
                               : shop_open_local(&w->shop, o->db, err, errlen)))
            goto fail;
        rc = hybrid_open(&w->hy, w->st, NULL, err, errlen);
        if (rc && rc != AISLE_ENOTFOUND) /* no vectors: BM25 alone */
            goto fail;
        if (!(w->tc = tok_cache_new(o->tk))) {
            rc = AISLE_ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    rc = AISLE_ENOMEM;
    if (!(list = json_array()))
        goto fail;
    if ((rc = store_products_in_stock(p->w[0].st, 40, add_product, list))) {
        snprintf(err, errlen, "%s: listing products: %s", o->db, store_errmsg(p->w[0].st));
        goto fail;
    }
    if (!(p->products_json = json_dumps(list, JSON_COMPACT))) {
        rc = AISLE_ENOMEM;
        goto fail;
    }
    json_decref(list);
    list = NULL;
    for (int i = 0; i < p->nw; i++) {
        if (pthread_create(&p->w[i].th, NULL, worker_main, &p->w[i])) {
            snprintf(err, errlen, "cannot start a retrieval worker thread");
            rc = AISLE_EIO;
            goto fail;
        }
        p->w[i].started = 1;
    }
    *out = p;
    return 0;
fail:
    json_decref(list);
    chat_pool_free(p);
    return rc;
}

int chat_pool_submit(struct chat_pool *p, struct chat_job *j)
{
    pthread_mutex_lock(&p->mu);
    if (p->closed || p->queued >= CHAT_MAX_QUEUE) {
        pthread_mutex_unlock(&p->mu);
        return AISLE_EBUSY;
    }
    j->next = NULL;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void chat_pool_close(struct chat_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->closed = 1;
    while (p->head || p->running)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void chat_pool_free(struct chat_pool *p)
{
    if (!p)
        return;
    chat_pool_close(p);
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; p->w && i < p->nw; i++) {
        struct worker *w = &p->w[i];
        if (w->started)
            pthread_join(w->th, NULL);
        hybrid_free(w->hy);
        shop_close(w->shop);
        store_close(w->st);
        tok_cache_free(w->tc);
        tok_ids_release(&w->scratch);
    }
    free(p->w);
    route_model_free(p->router);
    free(p->products_json);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->idle);
    free(p);
}

const char *chat_pool_products_json(const struct chat_pool *p)
{
    return p->products_json;
}

/* ---- events ------------------------------------------------------------------------------ */

int chat_sse(struct buf *out, const char *name, char *json)
{
    if (!json)
        return AISLE_ENOMEM;
    int rc = buf_printf(out, "event: %s\ndata: %s\n\n", name, json);
    free(json);
    return rc;
}

static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(o);
    return s;
}

/* "12.99" from 1299 minor units of currency. */
static void price_text(char *out, size_t cap, int64_t minor, const char *currency)
{
    int64_t scale = store_currency_scale(currency);
    if (scale <= 1) {
        snprintf(out, cap, "%lld", (long long)minor);
        return;
    }
    char frac[24];
    snprintf(frac, sizeof(frac), "%lld", (long long)(scale + minor % scale)); /* "1" then the digits */
    snprintf(out, cap, "%lld.%s", (long long)(minor / scale), frac + 1);
}

static json_t *card_json(const struct chat_card *c)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "product_id", c->product_id, "title", c->title, "brand", c->brand);
    if (!o)
        return NULL;
    if (c->has_offer) {
        char pt[64];
        price_text(pt, sizeof(pt), c->price_minor, c->currency);
        json_object_set_new(o, "price", json_string(pt));
        json_object_set_new(o, "price_minor", json_integer(c->price_minor));
        json_object_set_new(o, "currency", json_string(c->currency));
        json_object_set_new(o, "stock", json_integer(c->stock));
        json_object_set_new(o, "in_stock", json_boolean(c->stock > 0));
        json_object_set_new(o, "delivery_days", c->delivery_days >= 0 ? json_integer(c->delivery_days) : json_null());
        json_object_set_new(o, "seller", json_string(c->seller));
    } else {
        json_object_set_new(o, "price", json_null());
        json_object_set_new(o, "in_stock", json_false());
    }
    json_object_set_new(o, "offers", json_integer((json_int_t)c->n_offers));
    if (c->has_delivery) {
        json_t *d = json_pack("{s:b}", "available", c->delivery_available);
        if (d && c->delivery_available) {
            json_object_set_new(d, "days_min", json_integer(c->days_min));
            json_object_set_new(d, "days_max", json_integer(c->days_max));
            json_object_set_new(d, "earliest", json_string(c->earliest));
            json_object_set_new(d, "latest", json_string(c->latest));
        }
        json_object_set_new(o, "delivery", d);
    }
    json_object_set_new(o, "as_of", c->as_of[0] ? json_string(c->as_of) : json_null());
    json_object_set_new(o, "stale", json_boolean(c->stale));
    json_object_set_new(o, "source", json_string(c->source));
    return o;
}

void chat_stream_init(struct chat_stream *cs, const struct chat_prep *prep, struct buf *out)
{
    memset(cs, 0, sizeof(*cs));
    cs->prep = prep;
    cs->out = out;
    buf_init(&cs->text, 0);
    markup_init(&cs->mk, prep->ev.n ? (unsigned)prep->ev.n : 1);
}

void chat_stream_release(struct chat_stream *cs)
{
    buf_release(&cs->text);
}

int chat_stream_flush(struct chat_stream *cs)
{
    if (!cs->text.len)
        return 0;
    /* The model may write bytes that are not UTF-8 (tok_stream passes them
     * through): each becomes U+FFFD, as JSON needs, and so do control
     * characters other than tab and newlines (NUL included). */
    struct buf clean;
    buf_init(&clean, 0);
    int rc = 0;
    for (size_t at = 0; at < cs->text.len && !rc;) {
        size_t ok = utf8_valid_prefix(cs->text.data + at, cs->text.len - at);
        for (size_t i = 0; i < ok && !rc; i++) {
            unsigned char c = (unsigned char)cs->text.data[at + i];
            if (c >= 0x20 || c == '\t' || c == '\n' || c == '\r')
                rc = buf_putc(&clean, (char)c);
            else
                rc = buf_append(&clean, "\xef\xbf\xbd", 3);
        }
        at += ok;
        if (!rc && at < cs->text.len) {
            rc = buf_append(&clean, "\xef\xbf\xbd", 3);
            at++;
        }
    }
    rc = rc ? rc
            : chat_sse(cs->out, "text", dump(json_pack("{s:s%}", "text", clean.data ? clean.data : "", clean.len)));
    buf_release(&clean);
    buf_reset(&cs->text);
    cs->st.n_text += rc == 0;
    return rc;
}

static int on_cite(struct chat_stream *cs, unsigned n)
{
    const struct evidence_passage *e = &cs->prep->ev.v[n - 1]; /* the parser checked 1..ev.n */
    struct buf snip;
    buf_init(&snip, 0);
    int rc = prompt_clean_line(&snip, e->text, strlen(e->text), CHAT_SNIPPET_BYTES);
    json_t *o = rc ? NULL
                   : json_pack("{s:i, s:s, s:s, s:s, s:s%, s:b}", "n", (int)n, "id", e->id, "source", e->source,
                               "product_id", e->product_id, "snippet", snip.data ? snip.data : "", snip.len,
                               "first", !(cs->cited[n / 32] >> (n % 32) & 1u));
    buf_release(&snip);
    if (o && e->as_of[0]) {
        json_object_set_new(o, "as_of", json_string(e->as_of));
        json_object_set_new(o, "stale", json_boolean(e->stale));
    }
    cs->cited[n / 32] |= 1u << (n % 32);
    cs->st.n_citations++;
    return chat_sse(cs->out, "citation", dump(o));
}

static int on_tag(struct chat_stream *cs, const struct markup_piece *pc)
{
    const struct chat_card *cards[MARKUP_MAX_IDS];
    size_t nc = 0;
    for (size_t i = 0; i < pc->n_ids; i++) {
        const struct chat_card *c = chat_prep_card(cs->prep, pc->ids[i], pc->id_lens[i]);
        if (c)
            cards[nc++] = c;
        else if (cs->st.dropped_tags++ < 4) /* an id that is not one of the evidence's products */
            snprintf(cs->st.dropped_ids[cs->st.dropped_tags - 1], sizeof(cs->st.dropped_ids[0]), "%.*s",
                     (int)pc->id_lens[i], pc->ids[i]);
    }
    if (pc->tag == MARKUP_COMPARE) {
        if (nc < 2)
            return 0; /* nothing left to compare; its known card (if any) is not worth a table */
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < nc; i++)
            json_array_append_new(arr, card_json(cards[i]));
        cs->st.n_compare++;
        return chat_sse(cs->out, "compare", dump(arr ? json_pack("{s:o}", "products", arr) : NULL));
    }
    if (nc == 0)
        return 0;
    json_t *o = card_json(cards[0]);
    if (o)
        json_object_set_new(o, "tag", json_string(markup_tag_name(pc->tag)));
    cs->st.n_cards++;
    return chat_sse(cs->out, "card", dump(o));
}

static int on_piece(void *ud, const struct markup_piece *pc)
{
    struct chat_stream *cs = ud;
    if (pc->kind == MARKUP_TEXT)
        return buf_append(&cs->text, pc->raw, pc->len);
    if (pc->kind == MARKUP_ERROR && pc->cite) {
        cs->st.bad_markup++; /* [n] past the evidence: not a citation, and not worth showing */
        return 0;
    }
    if (pc->kind == MARKUP_ERROR) {
        cs->st.bad_markup++; /* shown as the text it is ("a < b" must stay readable) */
        return buf_append(&cs->text, pc->raw, pc->len);
    }
    /* Text before a citation or a card goes first, so the order is the answer's. */
    int rc = chat_stream_flush(cs);
    if (rc)
        return rc;
    if (pc->kind == MARKUP_CITE && (pc->cite < 1 || pc->cite > cs->prep->ev.n)) {
        cs->st.bad_markup++; /* no evidence at all: markup_init's max_cite cannot be 0 */
        return 0;
    }
    if (pc->kind == MARKUP_CITE)
        return on_cite(cs, pc->cite);
    return on_tag(cs, pc);
}

int chat_stream_feed(struct chat_stream *cs, const char *s, size_t n)
{
    return markup_feed(&cs->mk, s, n, on_piece, cs);
}

int chat_stream_finish(struct chat_stream *cs)
{
    int rc = markup_finish(&cs->mk, on_piece, cs);
    rc = rc ? rc : chat_stream_flush(cs);
    if (rc)
        return rc;
    json_t *arr = json_array();
    const struct chat_prep *p = cs->prep;
    const char *pid = p->ev.res.n ? p->ev.res.products[0] : NULL;
    for (size_t i = 0; arr && i < p->n_suggestions; i++)
        json_array_append_new(arr, pid ? json_pack("{s:s, s:s}", "text", p->suggestions[i], "product_id", pid)
                                       : json_pack("{s:s}", "text", p->suggestions[i]));
    return chat_sse(cs->out, "suggestions", dump(arr ? json_pack("{s:o}", "suggestions", arr) : NULL));
}

static double round1(double x)
{
    return floor(x * 10 + 0.5) / 10; /* 0.1 ms is plenty */
}

char *chat_done_json(const struct chat_stream *cs, const struct chat_done *d)
{
    const struct chat_stream_stats *st = &cs->st;
    json_t *ids = json_array();
    for (int i = 0; ids && i < st->dropped_tags && i < 4; i++)
        json_array_append_new(ids, json_string(st->dropped_ids[i]));
    json_t *o = ids ? json_pack("{s:s, s:{s:i, s:i, s:i, s:I}, s:{s:f, s:f, s:f, s:f}, s:i, s:i, s:i, s:i, s:o, s:i}",
                                "finish", d->finish, "usage", "prompt_tokens", d->prompt_tokens, "completion_tokens",
                                d->completion_tokens, "cached_tokens", d->cached_tokens, "evidence_passages",
                                (json_int_t)cs->prep->ev.n, "timings", "retrieval_ms", round1(d->retrieval_ms),
                                "hydrate_ms", round1(d->hydrate_ms), "ttft_ms", round1(d->ttft_ms), "total_ms",
                                round1(d->total_ms), "citations",
                                st->n_citations, "cards", st->n_cards, "compare", st->n_compare, "dropped_tags",
                                st->dropped_tags, "dropped_ids", ids, "bad_markup", st->bad_markup)
                : NULL;
    if (o && d->conversation_id)
        json_object_set_new(o, "conversation_id", json_string(d->conversation_id));
    if (o && d->answer_id)
        json_object_set_new(o, "answer_id", json_string(d->answer_id));
    return dump(o);
}
