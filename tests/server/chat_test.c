/*
 * chat_test.c — POST /api/chat end to end, in process: the real HTTP server
 * on an ephemeral port, the real scheduler and a tiny random Llama with a real
 * byte-level tokenizer (tinymodel.h), the retrieval worker pool over the demo
 * store ingested into a temporary SQLite database, and libcurl as the client.
 *
 * A random model does not write markup, so the tests script what it says
 * with srv_opts.chat_mask: at step i the mask leaves only token i of a
 * scripted answer (then <|end|>) — the sampler, the scheduler, detokenizing,
 * the markup parser and hydration all run as in production. The script names
 * a real product of the evidence and two invented ids: the first must become
 * a card whose price and stock equal what shop_offers reads from the store
 * directly, the invented ones must become nothing but a count.
 */
#include <criterion/criterion.h>

#include "assist/chat.h"
#include "core/buf.h"
#include "core/error.h"
#include "model/model.h"
#include "server/http.h"
#include "server/sched.h"
#include "store/answers.h"
#include "store/shop.h"
#include "tok/tok.h"
#include "../testutil.h"
#include "tinymodel.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the scripted model ------------------------------------------------------------- */

struct script {
    int32_t toks[1024];
    int n;
    atomic_int step;
    int32_t end, filler; /* after the script: end (<|end|>), or filler while pacing */
    int pace_ms;         /* sleep per token (a long, slow answer) */
    int soft;            /* 1: only favour the scripted token (+50), so other masks still rule */
};

static struct script script;

static void script_mask(void *ctx, float *logits, int n)
{
    struct script *s = ctx;
    int i = atomic_fetch_add(&s->step, 1);
    int32_t want = i < s->n ? s->toks[i] : s->pace_ms ? s->filler : s->end;
    if (s->pace_ms) {
        struct timespec t = {0, (long)s->pace_ms * 1000000L};
        nanosleep(&t, NULL);
    }
    if (s->soft) {
        logits[want] += 50.0f;
        return;
    }
    for (int v = 0; v < n; v++)
        if (v != want)
            logits[v] = -INFINITY;
}

/* ---- fixture ------------------------------------------------------------------------- */

static char *dir, *db, *adb; /* adb: the answers database (store/answers.h) */
static struct answers *answers;
static struct lm_model *model;
static struct tok *tk;
static struct sched *sch;
static struct chat_pool *pool;
static struct srv *srv;
static int port;

static void setup_with(size_t max_body, int free_ids, const struct shop_http_opts *shop_http)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    dir = tu_tmpdir();
    char *mp = tu_path(dir, "tiny.gguf");
    struct tiny_spec ts = {.dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ff = 128, .vocab = 512,
                           .ctx = 2048, .wtype = GGML_TYPE_F32, .seed = 5, .printable = 1};
    cr_assert_eq(tiny_model_write(mp, &ts), 0);
    char err[512];
    struct lm_model_opts mo = {.nthreads = 1, .max_batch = 256};
    cr_assert_eq(lm_model_load(&model, mp, &mo, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tok_load_gguf(&tk, lm_model_gguf(model), err, sizeof(err)), 0, "%s", err);
    free(mp);

    db = tu_path(dir, "demo.db");
    char *out;
    const char *r = tu_root(), *d = "data/demo-store";
    int st = tu_run(&out,
                    "'%s' ingest -q --no-vectors --db '%s' --products %s/%s/products.jsonl.gz --reviews "
                    "%s/%s/reviews.jsonl.gz --qa %s/%s/qa.jsonl.gz --offers %s/%s/offers.generated.jsonl.gz",
                    tu_aisle(), db, r, d, r, d, r, d, r, d);
    cr_assert_eq(st, 0, "ingest failed: %s", out);
    free(out);

    struct sched_opts so = {.policy = SCHED_CONTINUOUS, .max_running = 4, .step_tokens = 256, .queue_max = 16,
                            .max_ctx = 2048, .prefix_cache = 1};
    cr_assert_eq(sched_new(&sch, model, &so, err, sizeof(err)), 0, "%s", err);
    char router[1024], web[1024];
    snprintf(router, sizeof(router), "%s/models/router.bin", r);
    snprintf(web, sizeof(web), "%s/web", r);
    /* One worker with a merchant API: the last good answer it keeps is per worker. */
    struct chat_pool_opts co = {.db = db, .router = router, .workers = shop_http ? 1 : 2, .tk = tk,
                                .evidence_budget = 600, .shop_http = shop_http};
    cr_assert_eq(chat_pool_new(&pool, &co, err, sizeof(err)), 0, "%s", err);
    memset(&script, 0, sizeof(script));
    script.end = tok_find(tk, TOK_END, strlen(TOK_END));
    script.filler = 'a'; /* the byte token of 'a' ... */
    script.filler = tok_find(tk, "a", 1);
    cr_assert_geq(script.end, 0);
    adb = tu_path(dir, "answers.db");
    cr_assert_eq(answers_open(&answers, adb, 1, 0, err, sizeof(err)), 0, "%s", err);
    struct srv_opts o = {.port = 0, .model_name = "tiny", .chat = pool, .web_dir = web, .chat_max_tokens = 400,
                         .max_body = max_body, .chat_mask = script_mask, .chat_mask_ctx = &script,
                         .chat_free_ids = free_ids, .answers = answers, .model_meta = "{\"file\":\"tiny.gguf\"}"};
    cr_assert_eq(srv_start(&srv, sch, tk, &o, err, sizeof(err)), 0, "%s", err);
    port = srv_port(srv);
}

static void setup(void)
{
    setup_with(0, 0, NULL);
}

/* Tags may name any id (no tag-id constraint): the drop path. */
static void setup_free_ids(void)
{
    setup_with(0, 1, NULL);
}

static void setup_small_body(void)
{
    setup_with(4096, 0, NULL);
}

static void teardown(void)
{
    srv_stop(srv);
    answers_close(answers);
    sched_free(sch);
    chat_pool_free(pool);
    tok_free(tk);
    lm_model_free(model);
    free(db);
    free(adb);
    tu_rmdir(dir);
    curl_global_cleanup();
}

static void set_script(const char *text, int pace_ms)
{
    script.soft = 0;
    struct tok_ids ids;
    tok_ids_init(&ids, 0);
    cr_assert_eq(tok_encode(tk, NULL, text, strlen(text), 0, &ids), 0);
    cr_assert_leq(ids.len, sizeof(script.toks) / sizeof(script.toks[0]));
    memcpy(script.toks, ids.ids, ids.len * sizeof(int32_t));
    script.n = (int)ids.len;
    script.pace_ms = pace_ms;
    atomic_store(&script.step, 0);
    tok_ids_release(&ids);
}

/* ---- an HTTP client (libcurl) ---------------------------------------------------------- */

struct resp {
    long status;
    struct buf body;
    char ctype[128];
    int abort_after_text; /* close the connection once a text event arrived */
    int quiet;            /* on another thread: record the error instead of asserting */
    CURLcode rc;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    struct resp *r = ud;
    buf_append(&r->body, p, sz * n);
    buf_putc(&r->body, '\0');
    r->body.len--;
    if (r->abort_after_text && strstr(r->body.data, "event: text\n"))
        return 0; /* curl closes the connection: the client is gone */
    return sz * n;
}

/* A request to path with body (NULL: GET); the whole response in *r. */
static void request(struct resp *r, const char *path, const char *body, size_t blen)
{
    buf_init(&r->body, 0);
    buf_puts(&r->body, "");
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)blen);
    }
    CURLcode rc = r->rc = curl_easy_perform(c);
    cr_assert(r->quiet || rc == CURLE_OK || (r->abort_after_text && rc == CURLE_WRITE_ERROR), "curl: %s",
              curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

/* The SSE events of a response: names and their JSON, in order. */
struct events {
    char name[1024][16];
    json_t *data[1024];
    int n;
};

static void parse_events(const char *s, struct events *ev)
{
    ev->n = 0;
    for (const char *p = strstr(s, "event: "); p; p = strstr(p, "event: ")) {
        const char *nl = strchr(p, '\n');
        cr_assert_not_null(nl);
        cr_assert(!strncmp(nl, "\ndata: ", 7), "an event without data: %.60s", p);
        const char *end = strstr(nl, "\n\n");
        cr_assert_not_null(end, "an unterminated event");
        cr_assert_lt(ev->n, 1024, "too many events");
        snprintf(ev->name[ev->n], sizeof(ev->name[0]), "%.*s", (int)(nl - p - 7), p + 7);
        json_error_t je;
        ev->data[ev->n] = json_loadb(nl + 7, (size_t)(end - nl - 7), 0, &je);
        cr_assert_not_null(ev->data[ev->n], "event %s: not JSON (%s)", ev->name[ev->n], je.text);
        ev->n++;
        p = end + 2;
    }
}

static void free_events(struct events *ev)
{
    for (int i = 0; i < ev->n; i++)
        json_decref(ev->data[i]);
}

/* POST body to /api/chat; a 200 event stream, its events in *ev. */
static void chat_events(struct resp *r, const char *body, struct events *ev)
{
    request(r, "/api/chat", body, strlen(body));
    cr_assert_eq(r->status, 200, "%s", r->body.data);
    cr_assert(!strncmp(r->ctype, "text/event-stream", 17), "%s", r->ctype);
    parse_events(r->body.data, ev);
}

static const char *first_product(void)
{
    static char id[64];
    struct resp r = {0};
    request(&r, "/api/products", NULL, 0);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loads(r.body.data, 0, NULL);
    cr_assert(json_is_array(j) && json_array_size(j) > 5, "/api/products: %s", r.body.data);
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(json_array_get(j, 0), "id")));
    json_decref(j);
    buf_release(&r.body);
    return id;
}

/* ---- tests ------------------------------------------------------------------------------- */

Test(chat, events_in_order_with_store_prices_and_invented_ids_dropped, .init = setup_free_ids, .fini = teardown,
     .timeout = 120)
{
    const char *pid = first_product();
    char answer[512], body[512];
    snprintf(answer, sizeof(answer),
             "Good choice <product id=\"%s\"/> see [1]. Also <price id=\"B0FAKE0000\"/> and "
             "<compare ids=\"%s,B0FAKE0001\"/> done \xc3\xa9t\xc3\xa9.",
             pid, pid);
    set_script(answer, 0);
    snprintf(body, sizeof(body),
             "{\"messages\":[{\"role\":\"user\",\"content\":\"how much is it and is it in stock?\"}],"
             "\"product_id\":\"%s\",\"conversation_id\":\"t-1\"}",
             pid);
    struct resp r = {0};
    static struct events ev;
    chat_events(&r, body, &ev);

    /* Order: text, card, text, citation, text..., suggestions, done (last). */
    cr_assert_geq(ev.n, 6, "%s", r.body.data);
    cr_assert_str_eq(ev.name[ev.n - 1], "done");
    cr_assert_str_eq(ev.name[ev.n - 2], "suggestions");
    int i_card = -1, i_cite = -1, n_cards = 0;
    struct buf text;
    buf_init(&text, 0);
    buf_puts(&text, "");
    for (int i = 0; i < ev.n - 2; i++) {
        if (!strcmp(ev.name[i], "text"))
            buf_puts(&text, json_string_value(json_object_get(ev.data[i], "text")));
        else if (!strcmp(ev.name[i], "card"))
            i_card = i, n_cards++;
        else if (!strcmp(ev.name[i], "citation"))
            i_cite = i;
        else
            cr_assert_fail("unexpected event %s before suggestions: %s", ev.name[i], r.body.data);
    }
    cr_assert_str_eq(ev.name[0], "text");
    cr_assert_eq(n_cards, 1, "one card (the real product); none for invented ids: %s", r.body.data);
    cr_assert(i_card > 0 && i_cite > i_card, "card then citation in the answer's order: %s", r.body.data);
    cr_assert_str_eq(text.data, "Good choice  see . Also  and  done \xc3\xa9t\xc3\xa9.");
    buf_release(&text);

    /* The card carries the store's numbers, read directly here. */
    json_t *card = ev.data[i_card];
    struct shop *sh;
    char err[256];
    cr_assert_eq(shop_open_local(&sh, db, err, sizeof(err)), 0, "%s", err);
    struct shop_offers so;
    cr_assert_eq(shop_offers(sh, pid, &so, err, sizeof(err)), 0, "%s", err);
    cr_assert_gt(so.n, 0);
    cr_assert_str_eq(json_string_value(json_object_get(card, "product_id")), pid);
    cr_assert_str_eq(json_string_value(json_object_get(card, "tag")), "product");
    cr_assert_eq(json_integer_value(json_object_get(card, "price_minor")), so.v[0].price_minor);
    cr_assert_str_eq(json_string_value(json_object_get(card, "currency")), so.v[0].currency);
    cr_assert_eq(json_integer_value(json_object_get(card, "stock")), so.v[0].stock);
    cr_assert_str_eq(json_string_value(json_object_get(card, "seller")), so.v[0].seller);
    cr_assert_str_eq(json_string_value(json_object_get(card, "as_of")), so.fresh.as_of);
    cr_assert(json_is_false(json_object_get(card, "stale")));
    char price[32];
    snprintf(price, sizeof(price), "%lld.%02lld", (long long)(so.v[0].price_minor / 100),
             (long long)(so.v[0].price_minor % 100));
    if (!strcmp(so.v[0].currency, "USD"))
        cr_assert_str_eq(json_string_value(json_object_get(card, "price")), price);
    cr_assert_gt(strlen(json_string_value(json_object_get(card, "title"))), 5);
    shop_close(sh);

    /* The citation names a passage of the evidence. */
    json_t *c = ev.data[i_cite];
    cr_assert_eq(json_integer_value(json_object_get(c, "n")), 1);
    cr_assert_gt(strlen(json_string_value(json_object_get(c, "id"))), 3);
    cr_assert_gt(strlen(json_string_value(json_object_get(c, "snippet"))), 3);
    cr_assert_not_null(json_string_value(json_object_get(c, "source")));

    json_t *sug = json_object_get(ev.data[ev.n - 2], "suggestions");
    cr_assert(json_is_array(sug) && json_array_size(sug) >= 1, "suggestions derived from the product");
    cr_assert_not_null(strstr(json_string_value(json_object_get(json_array_get(sug, 0), "text")), "Learning"),
                       "a suggestion names the product");

    json_t *done = ev.data[ev.n - 1];
    cr_assert_eq(json_integer_value(json_object_get(done, "dropped_tags")), 2, "the two invented ids");
    cr_assert_eq(json_integer_value(json_object_get(done, "cards")), 1);
    cr_assert_eq(json_integer_value(json_object_get(done, "citations")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(done, "conversation_id")), "t-1");
    json_t *u = json_object_get(done, "usage");
    cr_assert_gt(json_integer_value(json_object_get(u, "prompt_tokens")), 200);
    cr_assert_eq(json_integer_value(json_object_get(u, "completion_tokens")), script.n,
                 "the script (<|end|> not counted)");
    cr_assert(json_is_number(json_object_get(json_object_get(done, "timings"), "retrieval_ms")));
    free_events(&ev);
    buf_release(&r.body);

    /* The same question again: its prompt's prefix comes from the cache. */
    atomic_store(&script.step, 0);
    chat_events(&r, body, &ev);
    cr_assert_gt(json_integer_value(json_object_get(json_object_get(ev.data[ev.n - 1], "usage"), "cached_tokens")),
                 100);
    free_events(&ev);
    buf_release(&r.body);

    request(&r, "/metrics", NULL, 0);
    cr_assert_not_null(strstr(r.body.data, "aisle_chat_dropped_tags_total 4"), "%s", r.body.data);
    cr_assert_not_null(strstr(r.body.data, "aisle_chat_requests_total 2"));
    buf_release(&r.body);

    /* The web chat is served. */
    request(&r, "/", NULL, 0);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.body.data, "/app.js"));
    buf_release(&r.body);
}

static void *long_chat(void *arg)
{
    struct resp *r = arg;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"does it come in blue?\"}]}";
    request(r, "/api/chat", body, strlen(body));
    return NULL;
}

/* POST body to path: an error object with status, param and needle in its message. */
static void expect_error(const char *path, const char *body, size_t len, int status, const char *param,
                         const char *needle)
{
    struct resp r = {0};
    request(&r, path, body, len);
    cr_assert_eq(r.status, status, "%s -> %ld %s", body, r.status, r.body.data);
    json_t *j = json_loads(r.body.data, 0, NULL);
    json_t *e = json_object_get(j, "error");
    cr_assert_not_null(e, "not an error object: %s", r.body.data);
    const char *p = json_string_value(json_object_get(e, "param"));
    if (param)
        cr_assert(p && !strcmp(p, param), "param '%s', want '%s': %s", p ? p : "(null)", param, r.body.data);
    cr_assert_not_null(strstr(json_string_value(json_object_get(e, "message")), needle), "'%s' not in %s", needle,
                       r.body.data);
    json_decref(j);
    buf_release(&r.body);
}

static void expect_400(const char *body, size_t len, int status, const char *param, const char *needle)
{
    expect_error("/api/chat", body, len, status, param, needle);
}

Test(chat, bad_requests_are_400_naming_the_field_while_a_chat_streams, .init = setup_small_body, .fini = teardown,
     .timeout = 120)
{
    set_script("Let me see.", 4); /* then 'a' every 4 ms up to 400 tokens: ~1.6 s */
    struct resp lr = {.quiet = 1};
    pthread_t th;
    pthread_create(&th, NULL, long_chat, &lr);
    struct sched_stats st;
    for (int i = 0; i < 500; i++) { /* until the long answer runs */
        sched_stats_get(sch, &st);
        if (st.running == 1)
            break;
        struct timespec t = {0, 5000000};
        nanosleep(&t, NULL);
    }
    cr_assert_eq(st.running, 1);
    static const struct {
        const char *body, *param, *needle;
    } cases[] = {
        {"{\"messages\": [", NULL, "not valid JSON"},
        {"[1,2]", NULL, "expected a JSON object"},
        {"{}", "messages", "required"},
        {"{\"messages\":\"hi\"}", "messages", "expected an array"},
        {"{\"messages\":[]}", "messages", "1 to 64"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content", "expected a string"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"  \"}]}", "messages[0].content", "empty"},
        {"{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", "messages[0].role", "\"user\" or \"assistant\""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"}]}",
         "messages[1].role", "last message"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"product_id\":7}", "product_id",
         "expected a string"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"product_id\":\"a b\"}", "product_id",
         "only letters"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true}", "stream", "unknown field"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"product_id\":\"B0NOSUCH99\"}", "product_id",
         "no product"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_400(cases[i].body, strlen(cases[i].body), 400, cases[i].param, cases[i].needle);
    const char bad_utf8[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}";
    expect_400(bad_utf8, sizeof(bad_utf8) - 1, 400, NULL, "UTF-8");
    size_t big = 64 * 1024;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    memcpy(huge, "{\"messages\":[", 13);
    huge[big] = '\0';
    expect_400(huge, big, 413, NULL, "larger than 4096 bytes");
    free(huge);

    sched_stats_get(sch, &st);
    cr_assert_eq(st.running, 1, "the long answer still streams after the bad requests");
    pthread_join(th, NULL);
    cr_assert_eq(lr.rc, CURLE_OK, "%s", curl_easy_strerror(lr.rc));
    cr_assert_eq(lr.status, 200);
    static struct events ev;
    parse_events(lr.body.data, &ev);
    cr_assert_str_eq(ev.name[ev.n - 1], "done", "%s", lr.body.data + (lr.body.len > 300 ? lr.body.len - 300 : 0));
    cr_assert_str_eq(json_string_value(json_object_get(ev.data[ev.n - 1], "finish")), "length");
    free_events(&ev);
    buf_release(&lr.body);
}

Test(chat, a_client_that_leaves_frees_its_kv_blocks, .init = setup, .fini = teardown, .timeout = 120)
{
    set_script("Checking", 10); /* 400 tokens at 10 ms: 4 s if nobody left */
    struct sched_stats s0, s1;
    sched_stats_get(sch, &s0);
    struct resp r = {.abort_after_text = 1};
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"is this good for kids?\"}]}";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    request(&r, "/api/chat", body, strlen(body));
    cr_assert_not_null(strstr(r.body.data, "event: text"));
    int freed = 0;
    for (int i = 0; i < 300 && !freed; i++) {
        struct timespec t = {0, 10000000};
        nanosleep(&t, NULL);
        sched_stats_get(sch, &s1);
        freed = s1.cancelled_total > s0.cancelled_total && s1.running == 0 && s1.kv_blocks_used == 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert(freed, "not freed: cancelled %llu -> %llu, running %d, blocks %d",
              (unsigned long long)s0.cancelled_total, (unsigned long long)s1.cancelled_total, s1.running,
              s1.kv_blocks_used);
    cr_assert_lt(atomic_load(&script.step), 300, "the answer ran on after the client left");
    buf_release(&r.body);
}

Test(chat, request_parser_names_fields)
{
    struct chat_request r;
    struct chat_error e;
    const char *ok = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"},"
                     "{\"role\":\"user\",\"content\":\"c\"}],\"postcode\":\"94103\",\"conversation_id\":\"x.1\"}";
    cr_assert_eq(chat_request_parse(&r, ok, strlen(ok), &e), 0, "%s", e.message);
    cr_assert_eq(r.n_msgs, 3);
    cr_assert_eq(r.msgs[1].role, PROMPT_ASSISTANT);
    cr_assert_str_eq(r.postcode, "94103");
    cr_assert_null(r.product_id);
    chat_request_release(&r);
    const char *dup = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"postcode\":\"1\",\"postcode\":\"2\"}";
    cr_assert_eq(chat_request_parse(&r, dup, strlen(dup), &e), AISLE_EINVAL);
    cr_assert_str_eq(e.code, "invalid_json");
    const char *ctl = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"postcode\":\"1\\n2\"}";
    cr_assert_eq(chat_request_parse(&r, ctl, strlen(ctl), &e), AISLE_EINVAL);
    cr_assert_str_eq(e.param, "postcode");
}

/* The vote recorded for answer id in the answers database at path (read
 * with its own read-only connection, as aisle feedback does): want +1/-1,
 * or 0 for none. */
static void expect_vote(const char *path, const char *id, int want)
{
    struct answers *a;
    char err[512];
    cr_assert_eq(answers_open(&a, path, 0, 1, err, sizeof(err)), 0, "%s", err);
    int got = 99;
    cr_assert_eq(answers_get_vote(a, id, &got), 0, "answer %s is not in %s", id, path);
    cr_assert_eq(got, want, "answer %s: vote %d, want %d", id, got, want);
    answers_close(a);
}

/* ---- the web chat in a browser (tests/e2e/chat_ui.mjs: Chromium + playwright-core) ---- */

static void need_playwright(void)
{
    char *out, nm[1024];
    cr_assert_eq(tu_run(&out, "node --version"), 0, "node is needed: %s", out);
    free(out);
    snprintf(nm, sizeof(nm), "%s/tests/e2e/node_modules/playwright-core/package.json", tu_root());
    if (access(nm, R_OK) != 0) {
        /* Under the lock e2e_test.c takes too (tests run in parallel), and with npm install,
         * which adds what is missing without removing what another test may be running. */
        int rc = tu_run(&out,
                        "cd '%s' && flock /tmp/aisle-e2e-npm.lock sh -c 'test -f "
                        "tests/e2e/node_modules/playwright-core/package.json || npm install --prefix tests/e2e "
                        "--no-audit --no-fund'",
                        tu_root());
        cr_assert_eq(rc, 0, "npm install failed: %s", out);
        free(out);
    }
}

/* Run the browser script against the server on p; the screenshot goes to the
 * test's temporary directory and must be a real image. */
static void browse(int p, const char *product, const char *price, char answer_id[ANSWERS_ID_LEN + 1])
{
    need_playwright();
    char *shot = tu_path(dir, "chat.png"), *out;
    int rc = tu_run(&out, "cd '%s' && timeout 120 node tests/e2e/chat_ui.mjs http://127.0.0.1:%d '%s' '%s' '%s'",
                    tu_root(), p, product, price, shot);
    cr_assert_eq(rc, 0, "the browser test failed:\n%s", out);
    cr_assert_not_null(strstr(out, "ok ui"), "%s", out);
    const char *a = strstr(out, "answer=");
    cr_assert(a && strspn(a + 7, "0123456789abcdef") == ANSWERS_ID_LEN, "no answer id voted on: %s", out);
    memcpy(answer_id, a + 7, ANSWERS_ID_LEN);
    answer_id[ANSWERS_ID_LEN] = 0;
    free(out);
    FILE *f = fopen(shot, "rb");
    cr_assert_not_null(f, "no screenshot");
    unsigned char sig[8];
    cr_assert_eq(fread(sig, 1, 8, f), 8);
    fseek(f, 0, SEEK_END);
    cr_assert_gt(ftell(f), 10000, "the screenshot is too small to show the page");
    fclose(f);
    cr_assert(!memcmp(sig, "\x89PNG", 4), "the screenshot is not a PNG");
    free(shot);
}

Test(chat, web_chat_shows_the_store_price_in_a_browser, .init = setup, .fini = teardown, .timeout = 300)
{
    const char *pid = first_product();
    char answer[256];
    snprintf(answer, sizeof(answer), "Here it is: <product id=\"%s\"/> as the listing says [1].", pid);
    set_script(answer, 0);
    struct shop *sh;
    struct shop_offers so;
    char err[256], price[64];
    cr_assert_eq(shop_open_local(&sh, db, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(shop_offers(sh, pid, &so, err, sizeof(err)), 0, "%s", err);
    shop_close(sh);
    cr_assert_str_eq(so.v[0].currency, "USD", "the demo store sells in dollars");
    snprintf(price, sizeof(price), "%lld.%02lld USD", (long long)(so.v[0].price_minor / 100),
             (long long)(so.v[0].price_minor % 100));
    char aid[ANSWERS_ID_LEN + 1];
    browse(port, pid, price, aid);
    expect_vote(adb, aid, 1); /* the 👍 the browser clicked */
}

/* `make run`'s server: the aisle program with the default model over the
 * demo store; the page loads, the answer streams and ends (the v0 model
 * rarely writes a product tag, so no card is required here). */
/* A free TCP port on the loopback: bind 0, read it, close. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

/* Start the aisle program (`make run`'s server: the default model over the
 * demo store) on port p, stderr to dir/serve.log, extra arguments (at most 2)
 * after the usual ones; returns once /health answers. */
static pid_t spawn_serve(int p, const char *extra1, const char *extra2)
{
    char mpath[1024], logp[1024], ps[16];
    snprintf(mpath, sizeof(mpath), "%s/models/aisle-shopping-small.gguf", tu_root());
    snprintf(logp, sizeof(logp), "%s/serve.log", dir);
    snprintf(ps, sizeof(ps), "%d", p);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        FILE *f = freopen(logp, "w", stderr);
        (void)f;
        setenv("AISLE_ROOT", tu_root(), 1);
        execl(tu_aisle(), tu_aisle(), "serve", "--db", db, "--model", mpath, "--port", ps, "--threads", "1",
              "--chat-tokens", "64", extra1, extra2, (char *)NULL);
        _exit(127);
    }
    int up = 0;
    for (int i = 0; i < 500 && !up; i++) {
        struct timespec t = {0, 20000000};
        nanosleep(&t, NULL);
        CURL *c = curl_easy_init();
        char url[128];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", p);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        up = curl_easy_perform(c) == CURLE_OK;
        curl_easy_cleanup(c);
    }
    cr_assert(up, "aisle serve did not start on port %d", p);
    return child;
}

/* `make run`'s server: the aisle program with the default model over the
 * demo store; the page loads, the answer streams and ends (the v0 model
 * rarely writes a product tag, so no card is required here), and the 👍
 * lands in the answers database beside the store (demo-answers.db). */
Test(chat, aisle_serve_with_the_default_model_in_a_browser, .init = setup, .fini = teardown, .timeout = 300)
{
    const char *pid = first_product();
    int p = free_port();
    pid_t child = spawn_serve(p, NULL, NULL);
    char aid[ANSWERS_ID_LEN + 1];
    browse(p, pid, "-", aid);
    kill(child, SIGTERM);
    int st;
    cr_assert_eq(waitpid(child, &st, 0), child);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "aisle serve did not stop cleanly (status %d)", st);
    char *def = tu_path(dir, "demo-answers.db");
    expect_vote(def, aid, 1);
    free(def);
}

/* With the tag-id constraint (the default), a model that starts an invented
 * id is steered into one of the evidence's products: the scripted id is only
 * favoured, the constraint forbids it, and the tag still ends as a card. */
Test(chat, tag_ids_are_constrained_to_the_evidence_products, .init = setup, .fini = teardown, .timeout = 120)
{
    const char *pid = first_product();
    set_script("See <product id=\"B0FAKE0000\"/> ok.", 0);
    script.soft = 1;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"messages\":[{\"role\":\"user\",\"content\":\"what is this?\"}],\"product_id\":\"%s\"}", pid);
    struct resp r = {0};
    static struct events ev;
    chat_events(&r, body, &ev);
    cr_assert_str_eq(ev.name[ev.n - 1], "done", "%s", r.body.data);
    json_t *done = ev.data[ev.n - 1];
    cr_assert_eq(json_integer_value(json_object_get(done, "dropped_tags")), 0, "%s", r.body.data);
    cr_assert_geq(json_integer_value(json_object_get(done, "cards")), 1, "the tag still became a card: %s",
                  r.body.data);
    int cards = 0;
    for (int i = 0; i < ev.n; i++)
        if (!strcmp(ev.name[i], "card")) {
            const char *id = json_string_value(json_object_get(ev.data[i], "product_id"));
            cr_assert(id && strlen(id) == 10, "a card for a real product: %s", r.body.data);
            cr_assert(json_is_integer(json_object_get(ev.data[i], "price_minor")) ||
                          json_is_null(json_object_get(ev.data[i], "price")),
                      "%s", r.body.data);
            cards++;
        }
    cr_assert_eq(cards, 1);
    cr_assert_null(strstr(r.body.data, "FAKE"), "the invented id appears nowhere: %s", r.body.data);
    free_events(&ev);
    buf_release(&r.body);
}

/* A follow-up without a product page finds the product of the earlier turn:
 * the favoured tag can only name a product of the evidence (the mask), and
 * it names the one the first question asked about. */
Test(chat, a_follow_up_resolves_the_earlier_product, .init = setup, .fini = teardown, .timeout = 120)
{
    const char *pid = first_product();
    char answer[128], body[512];
    snprintf(answer, sizeof(answer), "It is <price id=\"%s\"/> now.", pid);
    set_script(answer, 0);
    script.soft = 1;
    snprintf(body, sizeof(body),
             "{\"messages\":[{\"role\":\"user\",\"content\":\"tell me about %s\"},"
             "{\"role\":\"assistant\",\"content\":\"It is a toy cash register.\"},"
             "{\"role\":\"user\",\"content\":\"how much is it?\"}]}",
             pid);
    struct resp r = {0};
    static struct events ev;
    chat_events(&r, body, &ev);
    int cards = 0;
    for (int i = 0; i < ev.n; i++)
        if (!strcmp(ev.name[i], "card")) {
            cr_assert_str_eq(json_string_value(json_object_get(ev.data[i], "product_id")), pid, "%s", r.body.data);
            cr_assert_str_eq(json_string_value(json_object_get(ev.data[i], "tag")), "price");
            cards++;
        }
    cr_assert_eq(cards, 1, "%s", r.body.data);
    free_events(&ev);
    buf_release(&r.body);
}

/* ---- cards from a merchant's API (a real local HTTP server), fresh then stale ---- */

static atomic_int merchant_down;
static struct MHD_Daemon *merchant_d;

/* GET /products/ID/offers: one partner offer at 12.34 USD; 500 when down. */
static enum MHD_Result merchant_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                        const char *version, const char *upload, size_t *upload_size, void **state)
{
    (void)cls, (void)method, (void)version, (void)upload, (void)upload_size;
    if (!*state) {
        *state = (void *)1;
        return MHD_YES;
    }
    char body[512], id[64] = "";
    unsigned status = 200;
    if (atomic_load(&merchant_down)) {
        status = 500;
        snprintf(body, sizeof(body), "{\"error\": \"down\"}");
    } else if (sscanf(url, "/products/%63[^/]/offers", id) == 1) {
        snprintf(body, sizeof(body),
                 "{\"product_id\": \"%s\", \"offers\": [{\"product_id\": \"%s\", \"seller\": \"Partner\","
                 " \"price\": \"12.34\", \"currency\": \"USD\", \"stock\": 5, \"delivery_days\": 3,"
                 " \"updated_at\": \"2026-11-20T09:00:00Z\"}]}",
                 id, id);
    } else {
        status = 404;
        snprintf(body, sizeof(body), "{\"error\": \"not found\"}");
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void setup_merchant(void)
{
    atomic_store(&merchant_down, 0);
    merchant_d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                                  merchant_handler, NULL, MHD_OPTION_END);
    cr_assert_not_null(merchant_d);
    static char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/",
             MHD_get_daemon_info(merchant_d, MHD_DAEMON_INFO_BIND_PORT)->port);
    static struct shop_http_opts ho;
    ho = (struct shop_http_opts){.base_url = url, .timeout_ms = 500, .connect_timeout_ms = 200, .retries = 1,
                                 .backoff_ms = 10};
    setup_with(0, 0, &ho);
}

static void teardown_merchant(void)
{
    teardown();
    MHD_stop_daemon(merchant_d);
}

/* The card of the answer to a question on page pid. */
static json_t *ask_for_card(const char *pid)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"messages\":[{\"role\":\"user\",\"content\":\"what does it cost?\"}],\"product_id\":\"%s\"}", pid);
    atomic_store(&script.step, 0);
    struct resp r = {0};
    static struct events ev;
    chat_events(&r, body, &ev);
    json_t *card = NULL;
    for (int i = 0; i < ev.n; i++)
        if (!strcmp(ev.name[i], "card"))
            card = json_incref(ev.data[i]);
    cr_assert_not_null(card, "no card: %s", r.body.data);
    free_events(&ev);
    buf_release(&r.body);
    return card;
}

Test(chat, merchant_api_cards_fresh_then_marked_stale, .init = setup_merchant, .fini = teardown_merchant,
     .timeout = 120)
{
    const char *pid = first_product();
    char answer[128];
    snprintf(answer, sizeof(answer), "Here: <product id=\"%s\"/>.", pid);
    set_script(answer, 0);
    json_t *c = ask_for_card(pid);
    cr_assert_str_eq(json_string_value(json_object_get(c, "price")), "12.34", "the merchant's price, not the store's");
    cr_assert_str_eq(json_string_value(json_object_get(c, "seller")), "Partner");
    cr_assert_str_eq(json_string_value(json_object_get(c, "source")), "merchant");
    cr_assert(json_is_false(json_object_get(c, "stale")));
    char as_of[64];
    snprintf(as_of, sizeof(as_of), "%s", json_string_value(json_object_get(c, "as_of")));
    json_decref(c);

    atomic_store(&merchant_down, 1); /* the API fails: the last good answer, marked stale */
    c = ask_for_card(pid);
    cr_assert_str_eq(json_string_value(json_object_get(c, "price")), "12.34");
    cr_assert(json_is_true(json_object_get(c, "stale")), "a card from the last good answer is stale");
    const char *stale_as_of = json_string_value(json_object_get(c, "as_of"));
    cr_assert(stale_as_of && strlen(stale_as_of) == 20 && stale_as_of[10] == 'T',
              "when the last good answer was fetched (fresh: %s)", as_of);
    json_decref(c);
}

/* ---- answers and votes (store/answers.h, POST /api/feedback) ------------------------------ */

/* The done event's answer_id (32 hex characters) of a parsed answer; id
 * NULL: done must have none (nothing stored). */
static void done_answer_id(const struct events *ev, char id[ANSWERS_ID_LEN + 1])
{
    cr_assert_gt(ev->n, 0);
    cr_assert_str_eq(ev->name[ev->n - 1], "done");
    const char *a = json_string_value(json_object_get(ev->data[ev->n - 1], "answer_id"));
    if (!id) {
        cr_assert_null(json_object_get(ev->data[ev->n - 1], "answer_id"), "an answer id although nothing is stored");
        return;
    }
    cr_assert(a && strlen(a) == ANSWERS_ID_LEN && strspn(a, "0123456789abcdef") == ANSWERS_ID_LEN,
              "done has no answer id: %s", a ? a : "(none)");
    memcpy(id, a, ANSWERS_ID_LEN + 1);
}

/* Ask question on product pid in conversation conv; the stored answer's id. */
static void ask_for_id(const char *pid, const char *question, const char *conv, char id[ANSWERS_ID_LEN + 1])
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"product_id\":\"%s\",\"conversation_id\":\"%s\"}",
             question, pid, conv);
    struct resp r = {0};
    static struct events ev;
    chat_events(&r, body, &ev);
    done_answer_id(&ev, id);
    free_events(&ev);
    buf_release(&r.body);
}

/* The same with the (tiny) model's answer scripted. */
static void ask_scripted(const char *pid, const char *question, const char *conv, const char *answer,
                         char id[ANSWERS_ID_LEN + 1])
{
    set_script(answer, 0);
    ask_for_id(pid, question, conv, id);
}

/* POST a vote; the status, and the body checked to be {"ok":true,...} on 200. */
static long vote(const char *id, const char *rating, const char *comment)
{
    char body[2048];
    if (comment)
        snprintf(body, sizeof(body), "{\"answer_id\":\"%s\",\"rating\":\"%s\",\"comment\":\"%s\"}", id, rating,
                 comment);
    else
        snprintf(body, sizeof(body), "{\"answer_id\":\"%s\",\"rating\":\"%s\"}", id, rating);
    struct resp r = {0};
    request(&r, "/api/feedback", body, strlen(body));
    if (r.status == 200)
        cr_assert(!strncmp(r.body.data, "{\"ok\":true", 10), "%s", r.body.data);
    long st = r.status;
    buf_release(&r.body);
    return st;
}

/* One text column of the answers row with id (owned by the caller). */
static char *answer_col(const char *id, const char *colname)
{
    sqlite3 *d;
    cr_assert_eq(sqlite3_open_v2(adb, &d, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT %s FROM answers WHERE id = ?", colname);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(d, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(d));
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "answer %s is not stored", id);
    const char *v = (const char *)sqlite3_column_text(st, 0);
    char *out = strdup(v ? v : "");
    sqlite3_finalize(st);
    sqlite3_close(d);
    return out;
}

static long count_rows(const char *sql)
{
    sqlite3 *d;
    cr_assert_eq(sqlite3_open_v2(adb, &d, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(d, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(d));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    long n = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(d);
    return n;
}

Test(feedback, a_chat_stores_its_answer_with_prompt_evidence_and_output, .init = setup, .fini = teardown,
     .timeout = 120)
{
    const char *pid = first_product();
    char answer[256], id[ANSWERS_ID_LEN + 1];
    snprintf(answer, sizeof(answer), "It is <product id=\"%s\"/> and costs what the card says [1].", pid);
    ask_scripted(pid, "how much is it?", "conv-store", answer, id);

    char *out = answer_col(id, "output"), *prompt = answer_col(id, "prompt"), *ev = answer_col(id, "evidence"),
         *msgs = answer_col(id, "messages"), *events = answer_col(id, "events"), *samp = answer_col(id, "sampling"),
         *usage = answer_col(id, "usage"), *conv = answer_col(id, "conversation_id"),
         *prod = answer_col(id, "product_id"), *model_name = answer_col(id, "model");
    cr_assert_str_eq(out, answer, "the raw model output, markup included");
    cr_assert_str_eq(conv, "conv-store");
    cr_assert_str_eq(prod, pid);
    cr_assert_str_eq(model_name, "tiny");
    /* The exact prompt: its question, the first evidence passage's text, ending in the assistant's turn. */
    cr_assert_not_null(strstr(prompt, "how much is it?"), "%s", prompt);
    size_t pl = strlen(prompt);
    cr_assert(pl > 14 && !strcmp(prompt + pl - 14, "<|assistant|>\n"), "%s", prompt + (pl > 40 ? pl - 40 : 0));
    json_t *e = json_loads(ev, 0, NULL);
    cr_assert(json_is_array(e) && json_array_size(e) > 0, "evidence: %s", ev);
    json_t *p1 = json_array_get(e, 0);
    cr_assert_eq(json_integer_value(json_object_get(p1, "n")), 1);
    cr_assert_not_null(json_string_value(json_object_get(p1, "id")));
    cr_assert_not_null(strstr(prompt, "[1]"), "citation ids in the prompt");
    json_decref(e);
    json_t *m = json_loads(msgs, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "content")), "how much is it?");
    json_decref(m);
    cr_assert_not_null(strstr(events, "event: card\n"), "the card shown: %s", events);
    cr_assert_not_null(strstr(events, "event: citation\n"), "%s", events);
    json_t *sj = json_loads(samp, 0, NULL);
    const char *seed = json_string_value(json_object_get(sj, "seed"));
    cr_assert(seed && seed[0] && strspn(seed, "0123456789") == strlen(seed), "the seed as unsigned decimal: %s", samp);
    cr_assert_float_eq(json_real_value(json_object_get(sj, "temperature")), 0.3, 1e-6); /* the defaults */
    cr_assert_float_eq(json_real_value(json_object_get(sj, "top_p")), 0.9, 1e-6);
    cr_assert_float_eq(json_real_value(json_object_get(sj, "repeat_penalty")), 1.1, 1e-6);
    cr_assert_eq(json_integer_value(json_object_get(sj, "penalty_last_n")), 64);
    json_decref(sj);
    json_t *uj = json_loads(usage, 0, NULL);
    cr_assert_gt(json_integer_value(json_object_get(json_object_get(uj, "usage"), "completion_tokens")), 0);
    json_decref(uj);
    free(out), free(prompt), free(ev), free(msgs), free(events), free(samp), free(usage), free(conv), free(prod);
    free(model_name);
    expect_vote(adb, id, 0); /* no vote yet */

    struct resp r = {0};
    request(&r, "/metrics", NULL, 0);
    cr_assert_not_null(strstr(r.body.data, "aisle_answers_stored_total 1\n"), "%s", r.body.data);
    buf_release(&r.body);
}

Test(feedback, a_later_vote_replaces_the_earlier_one, .init = setup, .fini = teardown, .timeout = 120)
{
    const char *pid = first_product();
    char id[ANSWERS_ID_LEN + 1];
    ask_scripted(pid, "is it any good?", "conv-vote", "Reviewers like it [1].", id);
    cr_assert_eq(vote(id, "up", NULL), 200);
    expect_vote(adb, id, 1);
    cr_assert_eq(vote(id, "down", "the price was wrong \\u00e9"), 200);
    expect_vote(adb, id, -1);
    cr_assert_eq(count_rows("SELECT count(*) FROM feedback"), 1, "one vote per answer");
    cr_assert_eq(count_rows("SELECT count(*) FROM feedback WHERE comment = 'the price was wrong \xc3\xa9' AND "
                            "updated_at >= created_at"),
                 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM feedback_log"), 2, "both votes in the audit log");
    struct resp r = {0};
    request(&r, "/metrics", NULL, 0);
    cr_assert_not_null(strstr(r.body.data, "aisle_feedback_votes_total{rating=\"up\"} 1\n"), "%s", r.body.data);
    cr_assert_not_null(strstr(r.body.data, "aisle_feedback_votes_total{rating=\"down\"} 1\n"), "%s", r.body.data);
    cr_assert_not_null(strstr(r.body.data, "aisle_answers_storage_errors_total 0\n"), "%s", r.body.data);
    buf_release(&r.body);
}

Test(feedback, bad_votes_are_4xx_naming_the_field, .init = setup_small_body, .fini = teardown, .timeout = 120)
{
    const char *pid = first_product();
    char id[ANSWERS_ID_LEN + 1], b[8192];
    ask_scripted(pid, "does it work?", "conv-bad", "Yes [1].", id);
    const char *fb = "/api/feedback";
    expect_error(fb, "{\"answer_id\":", 13, 400, NULL, "not valid JSON");
    expect_error(fb, "[1]", 3, 400, NULL, "expected a JSON object");
    expect_error(fb, "{\"rating\":\"up\"}", 15, 400, "answer_id", "required");
    snprintf(b, sizeof(b), "{\"answer_id\":\"%s\"}", id);
    expect_error(fb, b, strlen(b), 400, "rating", "required");
    expect_error(fb, "{\"answer_id\":7,\"rating\":\"up\"}", 29, 400, "answer_id", "expected a string, got a number");
    expect_error(fb, "{\"answer_id\":\"../etc\",\"rating\":\"up\"}", 36, 400, "answer_id", "hex");
    snprintf(b, sizeof(b), "{\"answer_id\":\"%s\",\"rating\":true}", id);
    expect_error(fb, b, strlen(b), 400, "rating", "got a boolean");
    snprintf(b, sizeof(b), "{\"answer_id\":\"%s\",\"rating\":\"meh\"}", id);
    expect_error(fb, b, strlen(b), 400, "rating", "\"meh\"");
    snprintf(b, sizeof(b), "{\"answer_id\":\"%s\",\"rating\":\"up\",\"stars\":5}", id);
    expect_error(fb, b, strlen(b), 400, "stars", "unknown field");
    snprintf(b, sizeof(b), "{\"answer_id\":\"%s\",\"rating\":\"up\",\"comment\":[]}", id);
    expect_error(fb, b, strlen(b), 400, "comment", "expected a string");
    int n = snprintf(b, sizeof(b), "{\"answer_id\":\"%s\",\"rating\":\"down\",\"comment\":\"", id);
    memset(b + n, 'x', 1001);
    snprintf(b + n + 1001, sizeof(b) - (size_t)n - 1001, "\"}");
    expect_error(fb, b, strlen(b), 400, "comment", "at most 1000 bytes");
    snprintf(b, sizeof(b), "{\"answer_id\":\"%s\",\"rating\":\"up\",\"comment\":\"ok \xff\"}", id);
    expect_error(fb, b, strlen(b), 400, NULL, "not valid UTF-8");
    snprintf(b, sizeof(b), "{\"answer_id\":\"%s\",\"rating\":\"up\",\"rating\":\"down\"}", id);
    expect_error(fb, b, strlen(b), 400, NULL, "duplicate");
    const char *unknown = "{\"answer_id\":\"0123456789abcdef0123456789abcdef\",\"rating\":\"up\"}";
    expect_error(fb, unknown, strlen(unknown), 404, "answer_id", "no answer has id");
    memset(b, ' ', 5000); /* over this server's 4096-byte --max-body */
    b[0] = '{', b[4998] = '}', b[4999] = 0;
    expect_error(fb, b, 4999, 413, NULL, "larger than");
    expect_vote(adb, id, 0); /* none of them voted */
    struct resp m = {0};
    request(&m, "/metrics", NULL, 0);
    cr_assert_not_null(strstr(m.body.data, "aisle_answers_storage_errors_total 0\n"), "a 404 is not a storage error");
    buf_release(&m.body);
    cr_assert_eq(vote(id, "up", ""), 200, "an empty comment is no comment");
    expect_vote(adb, id, 1);
}

/* Parse JSON Lines from path into an array. */
static json_t *load_jsonl(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    json_t *arr = json_array();
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        cr_assert_not_null(o, "not JSON: %s (%s)", line, je.text);
        json_array_append_new(arr, o);
    }
    free(line);
    fclose(f);
    return arr;
}

Test(feedback, export_writes_kto_rows_and_dpo_pairs, .init = setup, .fini = teardown, .timeout = 120)
{
    const char *pid = first_product();
    char good[ANSWERS_ID_LEN + 1], bad[ANSWERS_ID_LEN + 1], other[ANSWERS_ID_LEN + 1], unvoted[ANSWERS_ID_LEN + 1];
    /* The same conversation, question and page twice: the same prompt text, two answers. */
    ask_scripted(pid, "is it sturdy?", "conv-x", "Yes, reviewers say it is sturdy [1].", good);
    ask_scripted(pid, "is it sturdy?", "conv-x", "Bananas.", bad);
    ask_scripted(pid, "what colour is it?", "conv-y", "Black [1].", other);
    ask_scripted(pid, "what colour is it?", "conv-z", "Blue.", unvoted);
    char *p1 = answer_col(good, "prompt"), *p2 = answer_col(bad, "prompt"), *p3 = answer_col(other, "prompt");
    cr_assert_str_eq(p1, p2, "identical conversation and evidence give an identical prompt");
    cr_assert(strcmp(p1, p3), "another question, another prompt");
    cr_assert_eq(vote(good, "up", NULL), 200);
    cr_assert_eq(vote(bad, "down", "nonsense"), 200);
    cr_assert_eq(vote(other, "down", NULL), 200);

    char *kto = tu_path(dir, "kto.jsonl"), *dpo = tu_path(dir, "dpo.jsonl"), *out;
    int st = tu_run(&out, "'%s' feedback export --db '%s' --out '%s'", tu_aisle(), adb, kto);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    st = tu_run(&out, "'%s' feedback export --db '%s' --format dpo --out '%s'", tu_aisle(), adb, dpo);
    cr_assert_eq(st, 0, "%s", out);
    free(out);

    json_t *k = load_jsonl(kto);
    cr_assert_eq(json_array_size(k), 3, "one KTO row per voted answer (the unvoted one is not there)");
    size_t i;
    json_t *row;
    int seen = 0;
    json_array_foreach(k, i, row)
    {
        const char *aid = json_string_value(json_object_get(row, "answer_id"));
        int label = json_is_true(json_object_get(row, "label"));
        const char *prompt = json_string_value(json_object_get(row, "prompt")),
                   *comp = json_string_value(json_object_get(row, "completion"));
        cr_assert(json_is_boolean(json_object_get(row, "label")));
        cr_assert_not_null(json_string_value(json_object_get(row, "created_at")));
        if (!strcmp(aid, good)) {
            seen |= 1;
            cr_assert(label);
            cr_assert_str_eq(comp, "Yes, reviewers say it is sturdy [1].");
            cr_assert_str_eq(prompt, p1);
        } else if (!strcmp(aid, bad)) {
            seen |= 2;
            cr_assert(!label);
            cr_assert_str_eq(comp, "Bananas.");
        } else if (!strcmp(aid, other)) {
            seen |= 4;
            cr_assert(!label);
            cr_assert_str_eq(prompt, p3);
        }
    }
    cr_assert_eq(seen, 7);
    json_t *d = load_jsonl(dpo);
    cr_assert_eq(json_array_size(d), 1, "one prompt has both an up and a down answer");
    row = json_array_get(d, 0);
    cr_assert_str_eq(json_string_value(json_object_get(row, "prompt")), p1);
    cr_assert_str_eq(json_string_value(json_object_get(row, "chosen")), "Yes, reviewers say it is sturdy [1].");
    cr_assert_str_eq(json_string_value(json_object_get(row, "rejected")), "Bananas.");
    json_decref(k);
    json_decref(d);

    st = tu_run(&out, "'%s' feedback stats --db '%s'", tu_aisle(), adb);
    cr_assert_eq(st, 0, "%s", out);
    json_t *s = json_loads(out, 0, NULL);
    cr_assert_not_null(s, "%s", out);
    cr_assert_eq(json_integer_value(json_object_get(s, "answers")), 4);
    cr_assert_eq(json_integer_value(json_object_get(s, "up")), 1);
    cr_assert_eq(json_integer_value(json_object_get(s, "down")), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(json_object_get(s, "by_model"), "tiny"), "voted")),
                 3);
    json_decref(s);
    free(out);
    st = tu_run(&out, "'%s' feedback export --db '%s' --format csv", tu_aisle(), adb);
    cr_assert_eq(st, 2, "a bad --format is a usage error: %s", out);
    free(out);
    free(p1), free(p2), free(p3), free(kto), free(dpo);
}

/* The real program, killed with SIGKILL right after it acknowledged an
 * answer (its id in done) and a vote (200): both are in the database. */
Test(feedback, an_acknowledged_answer_and_vote_survive_kill_9, .init = setup, .fini = teardown, .timeout = 300)
{
    const char *pid = first_product();
    char *kdb = tu_path(dir, "killed-answers.db");
    int p = free_port();
    pid_t child = spawn_serve(p, "--feedback-db", kdb);
    int old = port;
    port = p;
    char id[ANSWERS_ID_LEN + 1];
    ask_for_id(pid, "is it in stock?", "conv-kill", id);
    cr_assert_eq(vote(id, "down", "killed right after"), 200);
    port = old;
    cr_assert_eq(kill(child, SIGKILL), 0);
    int st;
    cr_assert_eq(waitpid(child, &st, 0), child);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    expect_vote(kdb, id, -1);
    free(kdb);
}

/* --no-store-answers: done has no answer_id and votes are refused. */
Test(feedback, no_store_answers_keeps_nothing, .init = setup, .fini = teardown, .timeout = 300)
{
    const char *pid = first_product();
    int p = free_port();
    pid_t child = spawn_serve(p, "--no-store-answers", NULL);
    int old = port;
    port = p;
    ask_for_id(pid, "is it in stock?", "conv-off", NULL);
    const char *v = "{\"answer_id\":\"0123456789abcdef0123456789abcdef\",\"rating\":\"up\"}";
    expect_error("/api/feedback", v, strlen(v), 503, NULL, "does not store answers");
    port = old;
    kill(child, SIGTERM);
    int st;
    cr_assert_eq(waitpid(child, &st, 0), child);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *def = tu_path(dir, "demo-answers.db");
    cr_assert_neq(access(def, F_OK), 0, "no answers database was created");
    free(def);
}

/* A file that another version of the answers schema made is refused with a
 * message, not written half-compatibly. */
Test(feedback, an_answers_file_of_another_schema_is_refused)
{
    char *d = tu_tmpdir(), *path = tu_path(d, "old.db");
    sqlite3 *s;
    cr_assert_eq(sqlite3_open(path, &s), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(s, "CREATE TABLE answers(id TEXT PRIMARY KEY, prompt TEXT); PRAGMA user_version = 1;",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(s);
    struct answers *a = NULL;
    char err[512];
    cr_assert_eq(answers_open(&a, path, 1, 0, err, sizeof(err)), AISLE_EDB);
    cr_assert_not_null(strstr(err, "another schema version"), "%s", err);
    char *fresh = tu_path(d, "new.db");
    cr_assert_eq(answers_open(&a, fresh, 1, 0, err, sizeof(err)), 0, "%s", err);
    answers_close(a);
    cr_assert_eq(answers_open(&a, fresh, 0, 0, err, sizeof(err)), 0, "reopening its own file: %s", err);
    answers_close(a);
    free(fresh);
    free(path);
    tu_rmdir(d);
}
