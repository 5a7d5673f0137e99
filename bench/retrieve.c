/*
 * bench/retrieve.c — latency of a full retrieval (product resolution, source
 * routing, search, assembly with live store facts) for 1,000 shopper-like
 * questions over a store of 100k products and 1M reviews, against plain
 * lexical search for the same questions measured in the same run.
 *
 * Design: the store is the one bench/ingest generates from the demo store
 * (same generator, same seed); it is built once under --dir and reused by later
 * runs (it takes about a minute and 1 GB). The questions mix what a shopper
 * types: real community questions of the demo store, WebShop shopping
 * instructions, the hand-written store-API questions of the router's fixtures,
 * and questions naming a generated product's model number; 40% are asked on a
 * product page and 10% follow an earlier turn about a product. Each question is
 * timed three ways, interleaved so noise hits all alike: evidence_build (the
 * full retrieval, with hybrid search when the store has vectors), resolve_product
 * alone, and lex_search over all sources (k 10, the baseline). A warm-up pass of 100 questions runs first (untimed).
 *
 * Output: `name value unit` lines on stdout; `#` lines are context.
 * Usage: retrieve [--dir DIR] [--db PATH] [--queries N] [--seed N] [--router MODEL] [--bm25]
 * (--bm25: the full retrieval with BM25 search only, an ablation of the dense half)
 */
#include "bench.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/lineio.h"
#include "retrieval/evidence.h"
#include "retrieval/hybrid.h"
#include "retrieval/lexical.h"
#include "retrieval/resolve.h"
#include "retrieval/route.h"
#include "store/shop.h"
#include "store/store.h"

#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 100
#define TARGET_P99_MS 30.0

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench/retrieve: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* This thread's CPU time: on a shared machine, wall time includes waiting for a core. */
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static uint64_t rng = 0x2545F4914F6CDD1DULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

struct strv {
    char **v;
    size_t n, cap;
};

static void push(struct strv *a, const char *s)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 256;
        a->v = realloc(a->v, a->cap * sizeof(*a->v));
        if (!a->v)
            die("out of memory");
    }
    if (!(a->v[a->n++] = strdup(s)))
        die("out of memory");
}

static void strv_free(struct strv *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

/* The string field `key` of every JSON line of a (gzip) file. */
static void json_lines(const char *path, const char *key, struct strv *out)
{
    struct lineio r;
    if (lineio_open(&r, path, 0))
        die("%s: %s", path, r.err);
    const char *line;
    size_t len;
    int rc;
    while ((rc = lineio_next(&r, &line, &len)) == 0) {
        json_t *o = json_loadb(line, len, 0, NULL);
        json_t *v = o ? json_object_get(o, key) : NULL;
        if (json_is_string(v) && json_string_length(v) < 1000)
            push(out, json_string_value(v));
        json_decref(o);
    }
    if (rc != AISLE_EEOF)
        die("%s: %s", path, r.err);
    lineio_close(&r);
}

static void text_lines(const char *path, struct strv *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("%s: %s", path, strerror(errno));
    char line[2048];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (*line)
            push(out, line);
    }
    fclose(f);
}

static const char *pick(const struct strv *a)
{
    if (!a->n)
        die("an empty question pool");
    return a->v[rnd() % a->n];
}

/* A random product (id and title) of the store. */
static void random_product(sqlite3 *db, int64_t maxrow, char *id, size_t idn, char *title, size_t tn)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT id, title FROM products WHERE rowid >= ?1 ORDER BY rowid LIMIT 1", -1, &st,
                           NULL) != SQLITE_OK)
        die("%s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, 1 + (int64_t)(rnd() % (uint64_t)maxrow));
    if (sqlite3_step(st) != SQLITE_ROW)
        die("no product: %s", sqlite3_errmsg(db));
    snprintf(id, idn, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(title, tn, "%s", (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
}

/* The model number a generated title ends with ("... KX-4821B"), if any. */
static int model_in_title(const char *title, char *out, size_t n)
{
    const char *sp = strrchr(title, ' ');
    const char *w = sp ? sp + 1 : title;
    size_t len = strlen(w);
    if (len < 5 || len >= n || w[2] != '-' || w[0] < 'A' || w[0] > 'Z')
        return 0;
    memcpy(out, w, len + 1);
    return 1;
}

struct question {
    char *text;
    char page[64];      /* "" or a product page */
    char previous[64];  /* "" or the product of an earlier turn */
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

static void report(const char *name, double *t, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += t[i];
    qsort(t, n, sizeof(*t), cmp_double);
    printf("%s_p50 %.2f ms\n", name, pct(t, n, 0.50));
    printf("%s_p90 %.2f ms\n", name, pct(t, n, 0.90));
    printf("%s_p99 %.2f ms\n", name, pct(t, n, 0.99));
    printf("%s_max %.2f ms\n", name, t[n - 1]);
    printf("%s_mean %.2f ms\n", name, sum / (double)n);
}

static void machine(void)
{
    char model[256];
    bench_cpu_model(model, sizeof(model));
    FILE *f;
    double load = 0;
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = -1;
        fclose(f);
    }
    printf("# machine: %s, %ld cores online, load average %.2f (shared machine)\n", model,
           sysconf(_SC_NPROCESSORS_ONLN), load);
}

int main(int argc, char **argv)
{
    const char *dir = "/tmp/aisle-bench-retrieve", *dbarg = NULL, *router_path = NULL;
    size_t nq = 1000;
    int bm25 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dir") && v)
            dir = argv[++i];
        else if (!strcmp(a, "--db") && v)
            dbarg = argv[++i];
        else if (!strcmp(a, "--queries") && v)
            nq = (size_t)atol(argv[++i]);
        else if (!strcmp(a, "--seed") && v)
            rng = strtoull(argv[++i], NULL, 10) * 0x9e3779b97f4a7c15ULL | 1;
        else if (!strcmp(a, "--bm25"))
            bm25 = 1;
        else if (!strcmp(a, "--router") && v)
            router_path = argv[++i];
        else
            die("usage: retrieve [--dir DIR] [--db PATH] [--queries N] [--seed N] [--router MODEL] [--bm25]");
    }
    if (nq < 10 || nq > 100000)
        die("--queries must be in [10, 100000]");
    const char *root = getenv("AISLE_ROOT") ? getenv("AISLE_ROOT") : ".";
    char db[4096], path[4096];
    if (dbarg) {
        snprintf(db, sizeof(db), "%s", dbarg);
    } else {
        snprintf(db, sizeof(db), "%s/store.db", dir);
        struct stat sb;
        if (stat(db, &sb)) {
            /* Build the scaled store with bench/ingest's generator (next to this program). */
            char self[4096];
            snprintf(self, sizeof(self), "%s", argv[0]);
            char cmd[8400];
            snprintf(cmd, sizeof(cmd), "'%s/ingest' --dir '%s' --keep --no-baselines --queries 10 --naive 10",
                     dirname(self), dir);
            printf("# building the scaled store once: %s\n", cmd);
            fflush(stdout);
            if (system(cmd) != 0 || stat(db, &sb))
                die("could not build %s with bench/ingest", db);
        }
    }
    machine();
    char err[1024];
    struct store *s;
    if (store_open(&s, db, STORE_READONLY, err, sizeof(err)))
        die("%s", err);
    int64_t np = 0, nr = 0, npass = 0;
    if (store_count(s, "products", &np) || store_count(s, "reviews", &nr) || store_count(s, "passages", &npass))
        die("%s", store_errmsg(s));
    printf("# store: %s: %lld products, %lld reviews, %lld passages\n", db, (long long)np, (long long)nr,
           (long long)npass);
    struct shop *sh;
    if (shop_open_local(&sh, db, err, sizeof(err)))
        die("%s", err);
    if (!router_path) {
        snprintf(path, sizeof(path), "%s/models/router.bin", root);
        router_path = path;
    }
    struct route_model *rm;
    if (route_model_load(&rm, router_path, err, sizeof(err)))
        die("%s", err);
    /* Hybrid search when the store has vectors (bench/ingest's load through
     * aisle ingest embeds each file), else BM25: said on the context line. */
    struct hybrid *hy = NULL;
    int hrc = bm25 ? AISLE_ENOTFOUND : hybrid_open(&hy, s, NULL, err, sizeof(err));
    if (hrc && hrc != AISLE_ENOTFOUND)
        die("%s", err);
    printf("# search inside the full retrieval: %s\n", hy ? "hybrid (BM25 + dense + rerank)" : bm25 ? "BM25 (--bm25)" : "BM25 (no vectors)");
    sqlite3 *sq = store_db(s);
    int64_t maxrow = 0;
    {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(sq, "SELECT max(rowid) FROM products", -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW)
            die("%s", sqlite3_errmsg(sq));
        maxrow = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }

    /* The question pools. */
    struct strv community = {0}, goals = {0}, api = {0};
    snprintf(path, sizeof(path), "%s/data/demo-store/qa.jsonl.gz", root);
    json_lines(path, "question", &community);
    snprintf(path, sizeof(path), "%s/bench/data/webshop-goals-300.txt", root);
    text_lines(path, &goals);
    snprintf(path, sizeof(path), "%s/tests/fixtures/route/api_questions.jsonl", root);
    json_lines(path, "q", &api);
    static const char *const model_q[] = {"does the %s come in black?", "is the %s in stock?",
                                          "what is the warranty on the %s", "%s dimensions"};
    struct question *qs = calloc(nq + WARMUP, sizeof(*qs));
    if (!qs)
        die("out of memory");
    size_t kinds[4] = {0};
    for (size_t i = 0; i < nq + WARMUP; i++) {
        struct question *q = &qs[i];
        unsigned r = (unsigned)(rnd() % 100);
        char id[64], title[1024], model[64], text[1200];
        kinds[r < 55 ? 0 : r < 75 ? 1 : r < 88 ? 2 : 3] += i >= WARMUP;
        if (r < 55) {
            snprintf(text, sizeof(text), "%s", pick(&community));
        } else if (r < 75) {
            snprintf(text, sizeof(text), "%s", pick(&goals));
        } else if (r < 88) {
            snprintf(text, sizeof(text), "%s", pick(&api));
        } else {
            int tries = 0;
            do
                random_product(sq, maxrow, id, sizeof(id), title, sizeof(title));
            while (!model_in_title(title, model, sizeof(model)) && ++tries < 50);
            snprintf(text, sizeof(text), model_q[rnd() % 4], tries < 50 ? model : "ab-1234");
        }
        if (!(q->text = strdup(text)))
            die("out of memory");
        unsigned c = (unsigned)(rnd() % 100);
        if (c < 40 && r < 88) {
            random_product(sq, maxrow, id, sizeof(id), title, sizeof(title));
            snprintf(q->page, sizeof(q->page), "%s", id);
        } else if (c < 50 && r < 88) {
            random_product(sq, maxrow, id, sizeof(id), title, sizeof(title));
            snprintf(q->previous, sizeof(q->previous), "%s", id);
        }
    }
    printf("# %zu timed questions (after %d warm-up): %zu community, %zu WebShop instructions, %zu store-API, %zu model numbers; "
           "~40%% on a product page, ~10%% after a turn about a product\n",
           nq, WARMUP, kinds[0], kinds[1], kinds[2], kinds[3]);

    double *t_full = malloc(nq * sizeof(double)), *t_res = malloc(nq * sizeof(double)),
           *t_lex = malloc(nq * sizeof(double)), *c_full = malloc(nq * sizeof(double)),
           *c_lex = malloc(nq * sizeof(double));
    if (!t_full || !t_res || !t_lex || !c_full || !c_lex)
        die("out of memory");
    size_t why[6] = {0}, passages = 0, tokens = 0, live = 0;
    int *qwhy = malloc(nq * sizeof(int));
    if (!qwhy)
        die("out of memory");
    struct evidence_opts eo = {.router = rm, .shop = sh, .hybrid = hy};
    for (size_t i = 0; i < nq + WARMUP; i++) {
        const struct question *q = &qs[i];
        struct resolve_conv conv = {0};
        if (q->previous[0]) {
            struct resolution pr = {.why = RESOLVE_TITLE, .n = 1};
            snprintf(pr.products[0], RESOLVE_ID_MAX, "%s", q->previous);
            resolve_conv_push(&conv, &pr);
        }
        const char *page = q->page[0] ? q->page : NULL;
        size_t k = i - WARMUP;
        double c0 = cpu_ms(), t0 = now_ms();
        struct evidence e;
        if (evidence_build(s, q->text, page, &conv, &eo, &e, err, sizeof(err)))
            die("evidence for '%s': %s", q->text, err);
        double t1 = now_ms(), c1 = cpu_ms();
        struct resolution res;
        if (resolve_product(s, q->text, page, &conv, &res, err, sizeof(err)))
            die("resolve '%s': %s", q->text, err);
        double c2 = cpu_ms(), t2 = now_ms();
        struct lex_query lq = {.text = q->text, .sources = LEX_ALL, .k = 10};
        struct lex_hit *h;
        size_t nh;
        if (lex_search(s, &lq, &h, &nh, err, sizeof(err)))
            die("lex_search '%s': %s", q->text, err);
        double t3 = now_ms(), c3 = cpu_ms();
        lex_hits_free(h, nh);
        if (i >= WARMUP) {
            t_full[k] = t1 - t0;
            t_res[k] = t2 - t1;
            t_lex[k] = t3 - t2;
            c_full[k] = c1 - c0;
            c_lex[k] = c3 - c2;
            why[e.res.why]++;
            qwhy[k] = (int)e.res.why;
            passages += e.n;
            tokens += e.tokens;
            for (size_t j = 0; j < e.n; j++)
                live += !strcmp(e.v[j].source, "offer") || !strcmp(e.v[j].source, "order") ||
                        !strcmp(e.v[j].source, "delivery");
        }
        evidence_release(&e);
    }
    printf("# resolved by: page %zu, part number %zu, title %zu, previous turn %zu, catalog %zu, none %zu\n",
           why[RESOLVE_PAGE], why[RESOLVE_PART_NUMBER], why[RESOLVE_TITLE], why[RESOLVE_PREVIOUS],
           why[RESOLVE_CATALOG], why[RESOLVE_NONE]);
    printf("evidence_passages_mean %.2f passages\n", (double)passages / (double)nq);
    printf("evidence_tokens_mean %.1f tokens\n", (double)tokens / (double)nq);
    printf("evidence_live_facts %zu passages\n", live);
    /* CPU time by how the product was resolved (before the arrays are sorted). */
    for (int w = 0; w < 6; w++) {
        double *sub = malloc(nq * sizeof(double));
        size_t ns = 0;
        if (!sub)
            die("out of memory");
        for (size_t i = 0; i < nq; i++)
            if (qwhy[i] == w)
                sub[ns++] = c_full[i];
        if (ns >= 5) {
            qsort(sub, ns, sizeof(*sub), cmp_double);
            printf("# cpu by resolution %-13s n %4zu  p50 %6.2f ms  p99 %7.2f ms\n", resolve_why_name((enum resolve_why)w),
                   ns, pct(sub, ns, 0.5), pct(sub, ns, 0.99));
        }
        free(sub);
    }
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < nq; i++)
        if (c_full[i] > worst)
            worst = c_full[i], wi = i;
    printf("# slowest (cpu %.1f ms, %s): %s\n", worst, resolve_why_name((enum resolve_why)qwhy[wi]), qs[wi + WARMUP].text);
    free(qwhy);
    report("retrieve_full", t_full, nq);
    double full_p99 = pct(t_full, nq, 0.99), full_p50 = pct(t_full, nq, 0.50);
    report("retrieve_resolve", t_res, nq);
    report("baseline_lexical", t_lex, nq);
    double lex_p99 = pct(t_lex, nq, 0.99), lex_p50 = pct(t_lex, nq, 0.50);
    report("retrieve_full_cpu", c_full, nq);
    report("baseline_lexical_cpu", c_lex, nq);
    printf("ratio_full_to_lexical_cpu_p99 %.2f x\n", pct(c_full, nq, 0.99) / pct(c_lex, nq, 0.99));
    printf("ratio_full_to_lexical_p50 %.2f x\n", full_p50 / lex_p50);
    printf("ratio_full_to_lexical_p99 %.2f x\n", full_p99 / lex_p99);
    printf("retrieve_target_p99_30ms %s pass\n", full_p99 < TARGET_P99_MS ? "yes" : "no");
    printf("retrieve_target_p99_30ms_cpu %s pass\n", pct(c_full, nq, 0.99) < TARGET_P99_MS ? "yes" : "no");

    for (size_t i = 0; i < nq + WARMUP; i++)
        free(qs[i].text);
    free(qs);
    free(t_full);
    free(t_res);
    free(t_lex);
    free(c_full);
    free(c_lex);
    strv_free(&community);
    strv_free(&goals);
    strv_free(&api);
    route_model_free(rm);
    hybrid_free(hy);
    shop_close(sh);
    store_close(s);
    return 0;
}
