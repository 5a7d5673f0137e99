/*
 * evidence_test.c — evidence assembly: the budget holds, no duplicate or
 * near-duplicate passages, stable citation ids, diversity across sources and
 * products, forced sources for ablations, and live store facts when the
 * question is routed to the store APIs — fresh from the local store, fresh from
 * a merchant's HTTP API, marked stale when that API goes down (issue 6, part 5).
 */
#include "demo_store.h"

#include "core/error.h"
#include "retrieval/evidence.h"
#include "retrieval/hybrid.h"
#include "retrieval/lexical.h"
#include "retrieval/route.h"
#include "store/shop.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>

static struct route_model *router(void)
{
    char path[1024], err[512];
    snprintf(path, sizeof(path), "%s/models/router.bin", tu_root());
    struct route_model *m;
    cr_assert_eq(route_model_load(&m, path, err, sizeof(err)), 0, "%s", err);
    return m;
}

static void build(struct store *s, const char *q, const char *page, const struct evidence_opts *o, struct evidence *e)
{
    char err[512];
    cr_assert_eq(evidence_build(s, q, page, NULL, o, e, err, sizeof(err)), 0, "'%s': %s", q, err);
}

/* The invariants every evidence list keeps. */
static void check_invariants(const struct evidence *e)
{
    size_t sum = 0;
    for (size_t i = 0; i < e->n; i++) {
        const struct evidence_passage *p = &e->v[i];
        cr_assert_eq(p->cite, (int)i + 1);
        cr_assert_not_null(p->id);
        cr_assert_gt(strlen(p->text), 0);
        cr_assert_leq(strlen(p->text), EVIDENCE_MAX_TEXT + 3);
        sum += p->tokens;
        for (size_t k = 0; k < i; k++) {
            cr_assert_str_neq(e->v[k].id, p->id, "passage %s twice", p->id);
            double sim = evidence_similarity(e->v[k].text, p->text);
            cr_assert_lt(sim, EVIDENCE_NEAR_DUP, "[%zu] and [%zu] are near duplicates (%.2f)", k + 1, i + 1, sim);
        }
    }
    cr_assert_eq(sum, e->tokens);
    cr_assert_leq(e->tokens, e->budget, "%zu tokens over a budget of %zu", e->tokens, e->budget);
}

static const struct evidence_passage *find_source(const struct evidence *e, const char *source)
{
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->v[i].source, source))
            return &e->v[i];
    return NULL;
}

Test(evidence, similarity_of_texts)
{
    cr_assert_float_eq(evidence_similarity("Runs small, order half a size up.", "runs small order half a size up"), 1.0,
                       1e-9, "case and punctuation do not matter");
    double near = evidence_similarity("runs small, order half a size up. great on wet rock.",
                                      "runs small, order half a size up. great on wet rock, love them.");
    cr_assert_geq(near, EVIDENCE_NEAR_DUP, "%.2f", near);
    double far = evidence_similarity("runs small, order half a size up", "the steam wand broke after a month");
    cr_assert_lt(far, 0.05, "%.2f", far);
    cr_assert_float_eq(evidence_similarity("", ""), 1.0, 1e-9);
    cr_assert_float_eq(evidence_similarity("one two", "three four"), 0.0, 1e-9);
}

Test(evidence, budget_duplicates_and_stable_ids)
{
    char *dir, *db;
    struct store *s = demo_store_open(&dir, &db);
    struct route_model *m = router();
    struct evidence_opts o = {.router = m};
    struct evidence a, b;
    const char *q = "does the whirlpool dishwasher latch come in black or white?";
    build(s, q, NULL, &o, &a);
    check_invariants(&a);
    cr_assert_geq(a.n, 3);
    build(s, q, NULL, &o, &b);
    cr_assert_eq(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        cr_assert_str_eq(a.v[i].id, b.v[i].id, "identical evidence, identical [n]");
        cr_assert_str_eq(a.v[i].text, b.v[i].text);
    }
    /* the order is the passages' own: live facts, catalog, Q&A, reviews; then id */
    for (size_t i = 1; i < a.n; i++)
        if (!strcmp(a.v[i - 1].source, a.v[i].source))
            cr_assert_lt(strcmp(a.v[i - 1].id, a.v[i].id), 0);

    /* A small budget is respected, with fewer passages. */
    struct evidence_opts small = o;
    small.budget = 60;
    struct evidence c;
    build(s, q, NULL, &small, &c);
    check_invariants(&c);
    cr_assert_lt(c.n, a.n);
    cr_assert_gt(c.n, 0);
    evidence_release(&c);
    evidence_release(&a);
    evidence_release(&b);
    route_model_free(m);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

static long count_bytes(const char *text, size_t len, void *ctx)
{
    (void)text;
    ++*(int *)ctx;
    return (long)len;
}

/* A fresh store at db loaded from the products file pf and the reviews file rf (JSON Lines). */
static struct store *small_store(const char *db, const char *pf, const char *rf)
{
    char err[512];
    struct store *s;
    cr_assert_eq(store_open(&s, db, 0, err, sizeof(err)), 0, "%s", err);
    struct ingest_opts io = {.format_csv = -1};
    struct ingest_stats st;
    cr_assert_eq(ingest_file(s, INGEST_PRODUCTS, pf, &io, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ingest_file(s, INGEST_REVIEWS, rf, &io, &st, err, sizeof(err)), 0, "%s", err);
    return s;
}

Test(evidence, near_duplicates_dropped_and_tokenizer_counts)
{
    char *dir = tu_tmpdir(), *db = tu_path(dir, "s.db"), *pf = tu_path(dir, "p.jsonl"), *rf = tu_path(dir, "r.jsonl");
    tu_write_str(pf, "{\"id\":\"P1\",\"title\":\"Trail running shoe\",\"bullets\":[\"Waterproof upper\"]}\n");
    tu_write_str(rf, "{\"id\":\"R1\",\"product_id\":\"P1\",\"text\":\"Runs small, order half a size up. Great grip on wet rock.\"}\n"
                     "{\"id\":\"R2\",\"product_id\":\"P1\",\"text\":\"Runs small, order half a size up. Great grip on wet rock.\"}\n"
                     "{\"id\":\"R3\",\"product_id\":\"P1\",\"text\":\"Runs small, order half a size up! Great grip on wet rock!!\"}\n"
                     "{\"id\":\"R4\",\"product_id\":\"P1\",\"text\":\"Comfortable from the first run, and the size is true.\"}\n");
    struct store *s = small_store(db, pf, rf);
    int calls = 0;
    struct evidence_opts o = {.sources = 1 << ROUTE_REVIEWS | 1 << ROUTE_CATALOG, .count = count_bytes,
                              .count_ctx = &calls};
    struct evidence e;
    build(s, "does the size run small?", "P1", &o, &e);
    check_invariants(&e);
    size_t reviews = 0;
    for (size_t i = 0; i < e.n; i++)
        reviews += !strcmp(e.v[i].source, "review");
    cr_assert_eq(reviews, 2, "one of R1/R2/R3 and R4 (got %zu)", reviews);
    cr_assert_geq(e.dropped_dup, 2);
    cr_assert_gt(calls, 0, "the tokenizer counted");
    for (size_t i = 0; i < e.n; i++)
        cr_assert_eq(e.v[i].tokens, strlen(e.v[i].text) + EVIDENCE_LINE_OVERHEAD);
    evidence_release(&e);
    store_close(s);
    free(db);
    free(pf);
    free(rf);
    tu_rmdir(dir);
}

Test(evidence, diversity_across_sources_and_products)
{
    char *dir, *db;
    struct store *s = demo_store_open(&dir, &db);
    struct route_model *m = router();
    struct evidence_opts o = {.router = m};
    struct evidence e;

    /* A broad question: several products, none taking more than its share. */
    build(s, "lightweight tactical pants for men", NULL, &o, &e);
    check_invariants(&e);
    cr_assert_eq(e.res.why, RESOLVE_CATALOG);
    char seen[EVIDENCE_MAX_PASSAGES][RESOLVE_ID_MAX];
    size_t nseen = 0, most = 0;
    for (size_t i = 0; i < e.n; i++) {
        size_t same = 0, k;
        for (size_t j = 0; j < e.n; j++)
            same += !strcmp(e.v[j].product_id, e.v[i].product_id);
        most = same > most ? same : most;
        for (k = 0; k < nseen && strcmp(seen[k], e.v[i].product_id); k++)
            ;
        if (k == nseen)
            snprintf(seen[nseen++], RESOLVE_ID_MAX, "%s", e.v[i].product_id);
    }
    cr_assert_geq(nseen, 3, "%zu products", nseen);
    cr_assert_leq(most, (EVIDENCE_DEFAULT_MAX + e.res.n - 1) / e.res.n + 1);
    evidence_release(&e);

    /* Catalog and reviews both routed: both present. */
    struct evidence_opts both = {.sources = 1 << ROUTE_CATALOG | 1 << ROUTE_REVIEWS | 1 << ROUTE_QA};
    build(s, "is the latch black or white", "B005AR75A6", &both, &e);
    check_invariants(&e);
    cr_assert_not_null(find_source(&e, "review"), "reviews say it comes in black");
    cr_assert_not_null(find_source(&e, "description"));
    evidence_release(&e);

    /* Ablation: catalog only means no reviews or Q&A at all. */
    struct evidence_opts cat = {.sources = 1 << ROUTE_CATALOG};
    build(s, "is the latch black or white", "B005AR75A6", &cat, &e);
    for (size_t i = 0; i < e.n; i++) {
        cr_assert_str_neq(e.v[i].source, "review");
        cr_assert_str_neq(e.v[i].source, "qa");
    }
    evidence_release(&e);
    route_model_free(m);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

Test(evidence, hybrid_search_when_the_store_has_vectors)
{
    char *dir, *db, err[512], *out;
    struct store *s = demo_store_open(&dir, &db);
    int st = tu_run(&out, "cd '%s' && '%s' embed index --db '%s'", tu_root(), tu_aisle(), db);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    struct hybrid *hy;
    cr_assert_eq(hybrid_open(&hy, s, NULL, err, sizeof(err)), 0, "%s", err);
    struct route_model *m = router();
    struct evidence_opts o = {.router = m, .hybrid = hy};
    struct evidence e;
    build(s, "does it come in black?", "B005AR75A6", &o, &e);
    check_invariants(&e);
    int black = 0;
    for (size_t i = 0; i < e.n; i++) {
        cr_assert_str_eq(e.v[i].product_id, "B005AR75A6", "only the page's product");
        black |= strstr(e.v[i].text, "only available in black") != NULL;
    }
    cr_assert(black, "the description that answers it");
    evidence_release(&e);
    build(s, "lightweight tactical pants for men", NULL, &o, &e);
    check_invariants(&e);
    cr_assert_eq(e.res.why, RESOLVE_CATALOG);
    cr_assert_geq(e.n, 3);
    evidence_release(&e);
    hybrid_free(hy);
    route_model_free(m);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

Test(evidence, live_facts_from_the_local_store_when_routed)
{
    char *dir, *db, err[512];
    struct store *s = demo_store_open(&dir, &db);
    struct route_model *m = router();
    struct shop *sh;
    cr_assert_eq(shop_open_local(&sh, db, err, sizeof(err)), 0, "%s", err);
    struct evidence_opts o = {.router = m, .shop = sh, .postcode = "10115"};
    struct evidence e;
    build(s, "how much is it?", "B00545ATZW", &o, &e);
    check_invariants(&e);
    cr_assert(e.route.use[ROUTE_API]);
    const struct evidence_passage *p = find_source(&e, "offer");
    cr_assert_not_null(p, "an offer passage");
    cr_assert_leq(p->cite, 2, "live facts first (delivery, offer)");
    cr_assert_str_eq(p->id, "offer:B00545ATZW");
    cr_assert(strstr(p->text, "USD 56.99") != NULL, "%s", p->text);
    cr_assert_gt(strlen(p->as_of), 0);
    cr_assert_eq(p->stale, 0);
    cr_assert_not_null(find_source(&e, "delivery"));
    evidence_release(&e);

    /* An order number in the question: its status. */
    build(s, "where is my order DEMO-10001?", NULL, &o, &e);
    p = find_source(&e, "order");
    cr_assert_not_null(p, "an order passage");
    cr_assert(strstr(p->text, "Order DEMO-10001: placed since 2026-10-01T09:00:00Z") != NULL, "%s", p->text);
    cr_assert_str_eq(p->id, "order:DEMO-10001");
    evidence_release(&e);
    build(s, "has order number 99999 shipped?", NULL, &o, &e);
    p = find_source(&e, "order");
    cr_assert_not_null(p, "an order passage");
    cr_assert(strstr(p->text, "No order") != NULL, "%s", p->text);
    cr_assert_eq(p->stale, 0, "the store answered");
    evidence_release(&e);

    /* Not a store question: no live facts. */
    build(s, "what are the crisper pan's dimensions?", "B00545ATZW", &o, &e);
    cr_assert_not(e.route.use[ROUTE_API]);
    cr_assert_null(find_source(&e, "offer"));
    evidence_release(&e);
    shop_close(sh);
    route_model_free(m);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

/* ---- a merchant API that goes down (the pattern of tests/store/shop_test.c) ---- */

static atomic_int api_up;

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **state)
{
    (void)cls, (void)method, (void)version, (void)upload, (void)upload_size;
    if (!*state) {
        *state = (void *)1;
        return MHD_YES;
    }
    static const char offers[] =
        "{\"product_id\": \"B00545ATZW\", \"offers\": [{\"product_id\": \"B00545ATZW\", \"seller\": \"Partner\","
        " \"price\": \"51.25\", \"currency\": \"USD\", \"stock\": 3, \"delivery_days\": 4,"
        " \"updated_at\": \"2026-11-20T09:00:00Z\"}]}";
    const char *body = "{\"error\": \"not found\"}";
    unsigned status = 404;
    if (!atomic_load(&api_up)) {
        body = "{\"error\": \"down\"}";
        status = 503;
    } else if (!strcmp(url, "/api/products/B00545ATZW/offers")) {
        body = offers;
        status = 200;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

Test(evidence, merchant_api_down_gives_stale_or_unavailable_facts, .timeout = 60)
{
    char *dir, *db, err[512], url[64];
    struct store *s = demo_store_open(&dir, &db);
    struct route_model *m = router();
    atomic_store(&api_up, 1);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                                            NULL, handler, NULL, MHD_OPTION_END);
    cr_assert_not_null(d);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/", MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
    struct shop_http_opts ho = {.base_url = url, .timeout_ms = 300, .connect_timeout_ms = 200, .retries = 1,
                                .backoff_ms = 10};
    struct shop *sh;
    cr_assert_eq(shop_open_http(&sh, &ho, err, sizeof(err)), 0, "%s", err);
    struct evidence_opts o = {.router = m, .shop = sh};
    struct evidence e;

    build(s, "how much is it?", "B00545ATZW", &o, &e);
    const struct evidence_passage *p = find_source(&e, "offer");
    cr_assert_not_null(p);
    cr_assert(strstr(p->text, "USD 51.25 from Partner") != NULL, "%s", p->text);
    cr_assert_eq(p->stale, 0);
    evidence_release(&e);

    atomic_store(&api_up, 0);
    build(s, "how much is it?", "B00545ATZW", &o, &e);
    check_invariants(&e);
    p = find_source(&e, "offer");
    cr_assert_not_null(p, "the last known price, still given");
    cr_assert(strstr(p->text, "USD 51.25") != NULL, "%s", p->text);
    cr_assert_eq(p->stale, 1, "and marked stale");
    cr_assert_gt(strlen(p->as_of), 0);
    evidence_release(&e);

    /* Never fetched while up: says it is unavailable, never a made-up price. */
    build(s, "how much is it?", "B005AR75A6", &o, &e);
    p = find_source(&e, "offer");
    cr_assert_not_null(p);
    cr_assert(strstr(p->text, "unavailable") != NULL, "%s", p->text);
    cr_assert_eq(p->stale, 1);
    evidence_release(&e);

    shop_close(sh);
    MHD_stop_daemon(d);
    route_model_free(m);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

Test(evidence_cli, json_lines_and_errors)
{
    char *dir, *db, *out;
    struct store *s = demo_store_open(&dir, &db);
    store_close(s);
    int st = tu_run(&out, "cd '%s' && '%s' evidence --db '%s' --bm25 --json --turn 'is the w10130695 latch white?' "
                          "'how much is it?'", tu_root(), tu_aisle(), db);
    cr_assert_eq(st, 0, "%s", out);
    json_error_t je;
    char *line = strtok(out, "\n");
    cr_assert_not_null(line);
    json_t *head = json_loads(line, 0, &je);
    cr_assert_not_null(head, "first line is JSON: %s", line);
    json_t *res = json_object_get(head, "resolution");
    cr_assert_str_eq(json_string_value(json_object_get(res, "why")), "previous_turn");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(res, "products"), 0)), "B005AR75A6");
    cr_assert(json_is_true(json_object_get(json_object_get(json_object_get(head, "route"), "api"), "use")));
    cr_assert_str_eq(json_string_value(json_object_get(head, "search")), "bm25");
    json_int_t npass = json_integer_value(json_object_get(head, "passages"));
    json_decref(head);
    json_int_t n = 0;
    int offer = 0;
    while ((line = strtok(NULL, "\n"))) {
        json_t *p = json_loads(line, 0, &je);
        cr_assert_not_null(p, "passage line is JSON: %s", line);
        cr_assert_eq(json_integer_value(json_object_get(p, "citation")), ++n);
        cr_assert(json_is_string(json_object_get(p, "id")) && json_is_string(json_object_get(p, "text")));
        offer |= !strcmp(json_string_value(json_object_get(p, "source")), "offer") &&
                 json_is_false(json_object_get(p, "stale")) && json_is_string(json_object_get(p, "as_of"));
        json_decref(p);
    }
    cr_assert_eq(n, npass);
    cr_assert(offer, "a fresh offer passage with as_of");
    free(out);

    cr_assert_eq(tu_run(&out, "'%s' evidence --db '%s' --product NOPE 'hi'", tu_aisle(), db), 1);
    cr_assert(strstr(out, "no product 'NOPE'") != NULL, "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "'%s' evidence --db '%s' --sources catalog,shipping 'hi'", tu_aisle(), db), 2);
    cr_assert(strstr(out, "'shipping'") != NULL, "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "'%s' evidence --help", tu_aisle()), 0);
    cr_assert(strstr(out, "usage: aisle evidence") != NULL);
    free(out);
    free(db);
    tu_rmdir(dir);
}

/* A best seller (more passages than PRODUCT_INDEX_MAX) is scored by a direct
 * scan: the right review is found, ids and texts are those lex_search gives,
 * and a small product of the same store still goes through the index. */
Test(evidence, best_seller_scanned_directly)
{
    char *dir = tu_tmpdir(), *db = tu_path(dir, "s.db"), *pf = tu_path(dir, "p.jsonl"), *rf = tu_path(dir, "r.jsonl");
    tu_write_str(pf, "{\"id\":\"BIG\",\"title\":\"Espresso machine\",\"bullets\":[\"15 bar pump\",\"steam wand\"]}\n"
                     "{\"id\":\"SMALL\",\"title\":\"Milk jug\",\"bullets\":[\"stainless steel\"]}\n");
    FILE *f = fopen(rf, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 450; i++)
        fprintf(f, "{\"id\":\"R%d\",\"product_id\":\"BIG\",\"title\":\"ok\",\"text\":\"coffee number %d tastes fine every morning\"}\n", i, i);
    fprintf(f, "{\"id\":\"RX\",\"product_id\":\"BIG\",\"title\":\"Loud\",\"text\":\"the grinder is very loud, wakes the whole house\"}\n");
    fprintf(f, "{\"id\":\"RS\",\"product_id\":\"SMALL\",\"text\":\"the jug is loud when it hits the counter\"}\n");
    cr_assert_eq(fclose(f), 0);
    char err[512];
    struct store *s = small_store(db, pf, rf);
    struct evidence_opts o = {.sources = 1 << ROUTE_REVIEWS | 1 << ROUTE_CATALOG};
    struct evidence e;
    build(s, "is the grinder loud?", "BIG", &o, &e);
    check_invariants(&e);
    const struct evidence_passage *p = find_source(&e, "review");
    cr_assert_not_null(p);
    cr_assert_str_eq(p->id, "review:RX", "the review about noise, got %s", p->id);
    cr_assert_str_eq(p->text, "Loud. the grinder is very loud, wakes the whole house", "as lex_search formats it");
    cr_assert_not_null(find_source(&e, "product"));
    evidence_release(&e);
    build(s, "does it have a steam wand", "BIG", &o, &e);
    cr_assert_not_null(find_source(&e, "bullet"), "catalog passages of a best seller are scored too");
    evidence_release(&e);
    /* the same answer through the index for a small product */
    struct lex_query lq = {.text = "loud", .sources = LEX_REVIEWS, .product_id = "SMALL", .k = 5};
    struct lex_hit *h;
    size_t nh;
    cr_assert_eq(lex_search(s, &lq, &h, &nh, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(nh, 1);
    build(s, "is it loud?", "SMALL", &o, &e);
    p = find_source(&e, "review");
    cr_assert_not_null(p);
    cr_assert_str_eq(p->id, h[0].id);
    cr_assert_str_eq(p->text, h[0].text);
    lex_hits_free(h, nh);
    evidence_release(&e);
    store_close(s);
    free(db);
    free(pf);
    free(rf);
    tu_rmdir(dir);
}
