/* evidence.c — `aisle evidence`: the evidence the assistant would put in its prompt for a question. */
#include "cli.h"
#include "cmds.h"

#include "core/buf.h"
#include "core/error.h"
#include "retrieval/evidence.h"
#include "retrieval/hybrid.h"
#include "retrieval/resolve.h"
#include "retrieval/route.h"
#include "store/shop.h"
#include "store/store.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: aisle evidence --db PATH [--product ID] [--turn TEXT]... [--json]\n"
    "                      [--router MODEL | --keyword-router] [--sources LIST]\n"
    "                      [--shop-url URL [--shop-key KEY] | --no-shop] [--postcode CODE]\n"
    "                      [--budget TOKENS] [-k N] [--hybrid | --bm25] QUESTION...\n"
    "\n"
    "Print exactly the evidence the assistant would put in its prompt for QUESTION:\n"
    "which product(s) it is about and why, which sources the router chose, and the\n"
    "passages with their citation ids, sources and product ids (docs/EVIDENCE.md).\n"
    "\n"
    "  --db PATH          the store database\n"
    "  --product ID       the product page the shopper is on\n"
    "  --turn TEXT        an earlier question of the conversation, oldest first\n"
    "                     (repeatable); follow-ups resolve against these\n"
    "  --router MODEL     the source router (default $AISLE_ROUTER, else\n"
    "                     models/router.bin when present, else keywords)\n"
    "  --keyword-router   route with the keyword baseline\n"
    "  --sources LIST     force the sources, e.g. catalog,reviews (ablations)\n"
    "  --shop-url URL     live facts from the merchant's HTTP API (docs/STORE_API.md);\n"
    "                     default: the store's own offers and orders\n"
    "  --shop-key KEY     the API's bearer key\n"
    "  --no-shop          no live facts\n"
    "  --postcode CODE    add a delivery estimate to this postcode\n"
    "  --budget TOKENS    evidence token budget (default 1024)\n"
    "  -k N               at most N passages (default 12, at most 64)\n"
    "  --hybrid           search with BM25 + dense vectors + rerank (the default\n"
    "                     when the store has vectors: aisle embed index)\n"
    "  --bm25             search with BM25 alone\n"
    "  --json             JSON Lines: first {\"resolution\", \"route\", \"search\", \"tokens\",\n"
    "                     \"budget\"}, then one {\"citation\", \"id\", \"source\",\n"
    "                     \"product_id\", \"text\", \"score\", \"tokens\"[, \"as_of\",\n"
    "                     \"stale\"]} per passage, in citation order\n"
    "  -h, --help         this help\n";

static void print_json(json_t *o)
{
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    if (!line)
        cli_die("out of memory");
    puts(line);
    free(line);
    json_decref(o);
}

static double round4(double x) { return (double)(long long)(x * 1e4 + (x >= 0 ? 0.5 : -0.5)) / 1e4; }

static void print_evidence(const struct evidence *e, const char *router_name, const char *search, int json)
{
    if (json) {
        json_t *prods = json_array(), *route = json_object();
        for (size_t i = 0; i < e->res.n; i++)
            json_array_append_new(prods, json_string(e->res.products[i]));
        for (int s = 0; s < ROUTE_NSRC; s++)
            json_object_set_new(route, route_src_names[s],
                                json_pack("{s:f, s:b}", "score", round4(e->route.score[s]), "use", e->route.use[s]));
        json_object_set_new(route, "router", json_string(router_name));
        print_json(json_pack("{s:{s:s, s:f, s:o, s:s}, s:o, s:s, s:I, s:I, s:I}", "resolution", "why",
                             resolve_why_name(e->res.why), "confidence", round4(e->res.confidence), "products", prods,
                             "detail", e->res.detail, "route", route, "search", search, "tokens",
                             (json_int_t)e->tokens, "budget", (json_int_t)e->budget, "passages", (json_int_t)e->n));
        for (size_t i = 0; i < e->n; i++) {
            const struct evidence_passage *p = &e->v[i];
            json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:f, s:I}", "citation", p->cite, "id", p->id, "source",
                                  p->source, "product_id", p->product_id, "text", p->text, "score", round4(p->score),
                                  "tokens", (json_int_t)p->tokens);
            if (o && (p->as_of[0] || p->stale)) {
                json_object_set_new(o, "as_of", json_string(p->as_of));
                json_object_set_new(o, "stale", json_boolean(p->stale));
            }
            print_json(o);
        }
        return;
    }
    printf("product:");
    for (size_t i = 0; i < e->res.n; i++)
        printf(" %s", e->res.products[i]);
    printf("%s (%s, confidence %.2f: %s)\n", e->res.n ? "" : " none", resolve_why_name(e->res.why),
           e->res.confidence, e->res.detail);
    printf("route (%s):", router_name);
    for (int s = 0; s < ROUTE_NSRC; s++)
        printf(" %s %.2f%s", route_src_names[s], e->route.score[s], e->route.use[s] ? "*" : "");
    printf("\nevidence (%s): %zu passages, %zu of %zu tokens\n", search, e->n, e->tokens, e->budget);
    for (size_t i = 0; i < e->n; i++) {
        const struct evidence_passage *p = &e->v[i];
        printf("[%d] (%s, %s", p->cite, p->source, *p->product_id ? p->product_id : "-");
        if (p->as_of[0])
            printf(", as of %s", p->as_of);
        if (p->stale)
            printf(", stale");
        printf(") %s\n    id %s  score %.3f\n", p->text, p->id, p->score);
    }
}

int cmd_evidence(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    enum { O_DB = 1000, O_PRODUCT, O_TURN, O_ROUTER, O_KEYWORD, O_SOURCES, O_URL, O_KEY, O_NOSHOP, O_POST, O_BUDGET, O_JSON, O_HYBRID, O_BM25 };
    static const struct option longopts[] = {
        {"db", required_argument, NULL, O_DB},         {"product", required_argument, NULL, O_PRODUCT},
        {"turn", required_argument, NULL, O_TURN},     {"router", required_argument, NULL, O_ROUTER},
        {"keyword-router", no_argument, NULL, O_KEYWORD}, {"sources", required_argument, NULL, O_SOURCES},
        {"shop-url", required_argument, NULL, O_URL},  {"shop-key", required_argument, NULL, O_KEY},
        {"no-shop", no_argument, NULL, O_NOSHOP},      {"postcode", required_argument, NULL, O_POST},
        {"budget", required_argument, NULL, O_BUDGET}, {"json", no_argument, NULL, O_JSON},
        {"hybrid", no_argument, NULL, O_HYBRID},       {"bm25", no_argument, NULL, O_BM25},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *product = NULL, *router = getenv("AISLE_ROUTER"), *url = NULL, *key = NULL;
    const char *turns[RESOLVE_MAX_TURNS];
    size_t nturns = 0;
    int keyword = 0, noshop = 0, json = 0, mode = 0; /* mode 0 auto, 1 hybrid, 2 BM25 */
    struct evidence_opts eo = {0};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+k:", longopts, NULL)) != -1) {
        switch (c) {
        case O_DB: db = optarg; break;
        case O_PRODUCT: product = optarg; break;
        case O_TURN:
            if (nturns == RESOLVE_MAX_TURNS)
                cli_usage_error("evidence", "--turn: at most %d turns", RESOLVE_MAX_TURNS);
            turns[nturns++] = optarg;
            break;
        case O_ROUTER: router = optarg; break;
        case O_KEYWORD: keyword = 1; break;
        case O_SOURCES: {
            char *dup = strdup(optarg), *save = NULL;
            if (!dup)
                cli_die("out of memory");
            for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int s = route_src_parse(t);
                if (s < 0)
                    cli_usage_error("evidence", "--sources: '%s' is not catalog, reviews, qa or api", t);
                eo.sources |= 1 << s;
            }
            free(dup);
            if (!eo.sources)
                cli_usage_error("evidence", "--sources: expected a list such as catalog,reviews");
            break;
        }
        case O_URL: url = optarg; break;
        case O_KEY: key = optarg; break;
        case O_NOSHOP: noshop = 1; break;
        case O_POST: eo.postcode = optarg; break;
        case O_BUDGET:
        case 'k': {
            char *end;
            long v = strtol(optarg, &end, 10);
            long hi = c == 'k' ? EVIDENCE_MAX_PASSAGES : 1000000;
            if (!*optarg || *end || v < 1 || v > hi)
                cli_usage_error("evidence", "%s: expected a number from 1 to %ld", c == 'k' ? "-k" : "--budget", hi);
            if (c == 'k')
                eo.max_passages = (size_t)v;
            else
                eo.budget = (size_t)v;
            break;
        }
        case O_JSON: json = 1; break;
        case O_HYBRID: mode = 1; break;
        case O_BM25: mode = 2; break;
        default: cli_usage_error("evidence", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!db)
        cli_usage_error("evidence", "--db is required");
    if (optind >= argc)
        cli_usage_error("evidence", "no QUESTION given");
    struct buf q;
    buf_init(&q, 0);
    for (int i = optind; i < argc; i++)
        if ((i > optind && buf_putc(&q, ' ')) || buf_puts(&q, argv[i]))
            cli_die("out of memory");

    char err[1024];
    struct route_model *rm = NULL;
    const char *router_name = "keyword";
    if (!keyword && !router && access("models/router.bin", R_OK) == 0)
        router = "models/router.bin";
    if (!keyword && router) {
        if (route_model_load(&rm, router, err, sizeof(err)))
            cli_die("%s", err);
        router_name = router;
    }
    eo.router = rm;
    struct store *s;
    if (store_open(&s, db, STORE_READONLY, err, sizeof(err)))
        cli_die("%s", err);
    struct shop *sh = NULL;
    if (url) {
        struct shop_http_opts ho = {.base_url = url, .api_key = key};
        if (shop_open_http(&sh, &ho, err, sizeof(err)))
            cli_die("%s", err);
    } else if (!noshop && shop_open_local(&sh, db, err, sizeof(err))) {
        cli_die("%s", err);
    }
    eo.shop = sh;
    struct hybrid *hy = NULL;
    if (mode != 2) {
        int rc = hybrid_open(&hy, s, NULL, err, sizeof(err));
        if (rc && (mode == 1 || rc != AISLE_ENOTFOUND))
            cli_die("%s", err);
    }
    eo.hybrid = hy;

    struct resolve_conv conv = {0};
    for (size_t i = 0; i < nturns; i++) {
        struct resolution r;
        if (resolve_product(s, turns[i], product, &conv, &r, err, sizeof(err)))
            cli_die("turn %zu: %s", i + 1, err);
        resolve_conv_push(&conv, &r);
    }
    struct evidence e;
    int status = 0;
    if (evidence_build(s, q.data, product, &conv, &eo, &e, err, sizeof(err))) {
        fprintf(stderr, "aisle evidence: %s\n", err);
        status = 1;
    } else {
        print_evidence(&e, router_name, hy ? "hybrid" : "bm25", json);
        evidence_release(&e);
    }
    shop_close(sh);
    hybrid_free(hy);
    store_close(s);
    route_model_free(rm);
    buf_release(&q);
    return status;
}
