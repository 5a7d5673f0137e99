/*
 * hybrid_test.c — hybrid_search over a real store (the demo data): contract
 * shared with lex_search (k, sources, product filter, any text), what the
 * dense half adds (a word BM25 cannot match), the ablation flags, and
 * `aisle search --hybrid` JSON Lines.
 */
#include "../testutil.h"

#include "core/error.h"
#include "retrieval/dense.h"
#include "retrieval/hybrid.h"
#include "store/ingest.h"
#include "store/store.h"

#include <jansson.h>

static struct store *small_store(char **dir_out, int with_vectors)
{
    char *dir = tu_tmpdir(), *db = tu_path(dir, "s.db"), err[512];
    struct store *s;
    cr_assert_eq(store_open(&s, db, 0, err, sizeof(err)), 0, "%s", err);
    static const char *const files[3] = {
        "{\"id\":\"P1\",\"title\":\"Trail running shoe\",\"bullets\":[\"Waterproof upper\",\"Vibram sole for wet "
        "rock\"],\"attributes\":{\"size\":\"42\"}}\n"
        "{\"id\":\"P2\",\"title\":\"Espresso machine\",\"description\":\"15 bar pump, steam wand, 1.8 l tank.\"}\n"
        "{\"id\":\"P3\",\"title\":\"Rain jacket\",\"bullets\":[\"Seams are taped\",\"Packs into its pocket\"]}\n",
        "{\"id\":\"R1\",\"product_id\":\"P1\",\"title\":\"Great grip\",\"text\":\"Runs small, order half a size "
        "up.\"}\n"
        "{\"id\":\"R2\",\"product_id\":\"P2\",\"text\":\"The steam wand broke after a month.\"}\n",
        "{\"product_id\":\"P1\",\"question\":\"Is it waterproof?\",\"answer\":\"Yes, the upper is.\"}\n"
        "{\"product_id\":\"P3\",\"question\":\"Does it keep rain out?\",\"answer\":\"Yes, waterproof.\"}\n",
    };
    static const enum ingest_kind kinds[3] = {INGEST_PRODUCTS, INGEST_REVIEWS, INGEST_QA};
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%d.jsonl", i);
        char *p = tu_path(dir, name);
        tu_write_str(p, files[i]);
        struct ingest_opts o = {.format_csv = -1};
        struct ingest_stats st;
        cr_assert_eq(ingest_file(s, kinds[i], p, &o, &st, err, sizeof(err)), 0, "%s", err);
        free(p);
    }
    if (with_vectors) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/models/encoder-v1.bin", tu_root());
        struct encoder *e;
        cr_assert_eq(enc_load(&e, path, err, sizeof(err)), 0, "%s", err);
        struct buf b;
        buf_init(&b, 0);
        cr_assert_eq(enc_write(e, &b), 0);
        cr_assert_eq(dense_set_encoder(s, b.data, b.len, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(dense_index_pending(s, e, NULL, NULL, NULL, err, sizeof(err)), 0, "%s", err);
        buf_release(&b);
        enc_free(e);
    }
    free(db);
    *dir_out = dir;
    return s;
}

static int find(struct lex_hit *h, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(h[i].id, id))
            return (int)i;
    return -1;
}

Test(hybrid, needs_vectors)
{
    char *dir, err[512];
    struct store *s = small_store(&dir, 0);
    struct hybrid *h = NULL;
    cr_assert_eq(hybrid_open(&h, s, NULL, err, sizeof(err)), AISLE_ENOTFOUND);
    cr_assert(strstr(err, "aisle embed index"), "%s", err);
    cr_assert_null(h);
    store_close(s);
    tu_rmdir(dir);
}

Test(hybrid, same_contract_as_lex_search)
{
    char *dir, err[512];
    struct store *s = small_store(&dir, 1);
    struct hybrid *h;
    cr_assert_eq(hybrid_open(&h, s, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(hybrid_nvectors(h), (size_t)13, "4 + 2 + 3 catalog passages, 2 reviews, 2 answers");
    struct lex_query q = {.text = "is the upper waterproof", .k = 5};
    struct lex_hit *hits;
    size_t n;
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 5);
    for (size_t i = 0; i < n; i++) {
        cr_assert(hits[i].id && hits[i].source && hits[i].product_id && hits[i].title && hits[i].text);
        cr_assert(i == 0 || hits[i - 1].score >= hits[i].score, "best first");
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(hits[i].id, hits[j].id, "no passage twice");
    }
    int a = find(hits, n, "P1:bullet:0");
    cr_assert_geq(a, 0, "the 'Waterproof upper' bullet is found");
    cr_assert_lt(a, 3);
    lex_hits_free(hits, n);

    /* sources and the product filter */
    q = (struct lex_query){.text = "waterproof", .sources = LEX_QA, .k = 10};
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 2);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(hits[i].source, "qa");
    cr_assert(strstr(hits[0].text, "Q: ") == hits[0].text, "Q&A hits read 'Q: ... A: ...': %s", hits[0].text);
    lex_hits_free(hits, n);
    q = (struct lex_query){.text = "waterproof", .product_id = "P3", .k = 10};
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 4, "P3: title, two bullets, one answer");
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(hits[i].product_id, "P3");
    lex_hits_free(hits, n);
    q = (struct lex_query){.text = "anything", .product_id = "NOPE", .k = 10};
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 0);
    lex_hits_free(hits, n);

    /* any text; k bounds */
    const char *odd[] = {"", "\"", "\xff\xfe", "NEAR( AND", "-*-"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        q = (struct lex_query){.text = odd[i], .k = 3};
        cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "'%s': %s", odd[i], err);
        cr_assert_leq(n, 3);
        lex_hits_free(hits, n);
    }
    q = (struct lex_query){.text = "x", .k = 0};
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), AISLE_EINVAL);
    hybrid_free(h);
    store_close(s);
    tu_rmdir(dir);
}

/* "jackets" shares no word with any passage (no stemming in BM25), so BM25
 * finds nothing; its character trigrams bring the dense half to the jacket. */
Test(hybrid, dense_finds_what_bm25_cannot)
{
    char *dir, err[512];
    struct store *s = small_store(&dir, 1);
    struct lex_query q = {.text = "jackets", .k = 5};
    struct lex_hit *hits;
    size_t n;
    cr_assert_eq(lex_search(s, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 0, "BM25 has no match for the word");
    lex_hits_free(hits, n);
    struct hybrid *h;
    cr_assert_eq(hybrid_open(&h, s, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 5);
    cr_assert_str_eq(hits[0].id, "P3:product:0", "the rain jacket's title first, got '%s'", hits[0].text);
    lex_hits_free(hits, n);
    hybrid_free(h);

    /* ablations: no dense -> BM25's (empty) answer; no lexical -> dense only */
    struct hybrid_opts o = {.flags = HYBRID_NO_DENSE};
    cr_assert_eq(hybrid_open(&h, s, &o, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 0);
    lex_hits_free(hits, n);
    hybrid_free(h);
    o.flags = HYBRID_NO_LEXICAL | HYBRID_NO_RERANK;
    cr_assert_eq(hybrid_open(&h, s, &o, err, sizeof(err)), 0, "%s", err);
    q.k = 100;
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 13, "every passage has a cosine");
    lex_hits_free(hits, n);
    hybrid_free(h);
    store_close(s);
    tu_rmdir(dir);
}

/* Reviews or Q&A bigger than scan_max are searched only within the products
 * the candidates so far come from. */
Test(hybrid, big_sources_are_searched_within_candidate_products)
{
    char *dir, err[512];
    struct store *s = small_store(&dir, 1);
    struct hybrid *h;
    struct hybrid_opts o = {.scan_max = 1, .flags = HYBRID_NO_RERANK};
    cr_assert_eq(hybrid_open(&h, s, &o, err, sizeof(err)), 0, "%s", err);
    /* BM25 finds P2's review; the review block (2 vectors > 1) is then
     * searched among P2's reviews only */
    struct lex_query q = {.text = "the steam wand broke", .sources = LEX_REVIEWS, .k = 20};
    struct lex_hit *hits;
    size_t n;
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    int r1 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        r1 += !strcmp(hits[i].id, "review:R1");
        r2 += !strcmp(hits[i].id, "review:R2");
    }
    cr_assert_eq(r2, 1, "P2's review is found");
    cr_assert_eq(r1, 0, "P1's review is not searched");
    lex_hits_free(hits, n);
    hybrid_free(h);
    o.scan_max = SIZE_MAX; /* whole sources: both reviews get a cosine */
    cr_assert_eq(hybrid_open(&h, s, &o, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    r1 = 0;
    for (size_t i = 0; i < n; i++)
        r1 += !strcmp(hits[i].id, "review:R1");
    cr_assert_eq(r1, 1);
    lex_hits_free(hits, n);
    hybrid_free(h);
    store_close(s);
    tu_rmdir(dir);
}

/* A searcher sees passages ingested after it was opened. */
Test(hybrid, refreshes_after_ingest)
{
    char *dir, err[512];
    struct store *s = small_store(&dir, 1);
    struct hybrid *h;
    struct hybrid_opts o = {.flags = HYBRID_NO_LEXICAL}; /* so a hit proves the vectors were reloaded */
    cr_assert_eq(hybrid_open(&h, s, &o, err, sizeof(err)), 0, "%s", err);
    char *p = tu_path(dir, "more.jsonl");
    tu_write_str(p, "{\"id\":\"P9\",\"title\":\"Cast iron skillet\",\"bullets\":[\"Pre-seasoned\"]}\n");
    struct ingest_opts io = {.format_csv = -1};
    struct ingest_stats st;
    cr_assert_eq(ingest_file(s, INGEST_PRODUCTS, p, &io, &st, err, sizeof(err)), 0, "%s", err);
    struct encoder *e;
    cr_assert_eq(dense_get_encoder(s, &e, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(dense_index_pending(s, e, NULL, NULL, NULL, err, sizeof(err)), 0, "%s", err);
    enc_free(e);
    struct lex_query q = {.text = "cast iron skillet", .k = 1, .sources = LEX_PRODUCTS};
    struct lex_hit *hits;
    size_t n;
    cr_assert_eq(hybrid_search(h, &q, &hits, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(hits[0].product_id, "P9");
    cr_assert_eq(hybrid_nvectors(h), (size_t)15);
    lex_hits_free(hits, n);
    hybrid_free(h);
    free(p);
    store_close(s);
    tu_rmdir(dir);
}

Test(hybrid_cli, search_hybrid_json_lines)
{
    char *dir = tu_tmpdir(), *out;
    const char *r = tu_root();
    int st = tu_run(&out,
                    "%s ingest -q --db %s/d.db --products %s/data/demo-store/products.jsonl.gz"
                    " --qa %s/data/demo-store/qa.jsonl.gz --encoder %s/models/encoder-v1.bin &&"
                    " %s search --db %s/d.db -k 6 --hybrid --json 'will this crisper drawer fit my frigidaire'",
                    tu_aisle(), dir, r, r, r, tu_aisle(), dir);
    cr_assert_eq(st, 0, "%s", out);
    int lines = 0;
    double last = 1e300;
    int drawer = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        cr_assert_not_null(o, "not JSON: %s", line);
        cr_assert_eq(json_object_size(o), 5, "id, source, product_id, text, score: %s", line);
        double sc = json_number_value(json_object_get(o, "score"));
        cr_assert_leq(sc, last);
        last = sc;
        drawer += !strcmp(json_string_value(json_object_get(o, "product_id")), "B00545ATZW");
        json_decref(o);
        lines++;
    }
    cr_assert_eq(lines, 6);
    cr_assert_geq(drawer, 2, "the crisper drawer's passages lead");
    free(out);
    /* --hybrid on a store without vectors is an error that says what to do */
    st = tu_run(&out, "%s ingest -q --no-vectors --db %s/b.db --products %s/data/demo-store/products.jsonl.gz &&"
                      " %s search --db %s/b.db --hybrid drawer", tu_aisle(), dir, r, tu_aisle(), dir);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "embed index"), "%s", out);
    free(out);
    /* without --hybrid such a store is searched with BM25 */
    st = tu_run(&out, "%s search --db %s/b.db -k 1 --json drawer", tu_aisle(), dir);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "\"id\""), "%s", out);
    free(out);
    st = tu_run(&out, "%s embed index --db %s/b.db --encoder %s/models/encoder-v1.bin -q && %s search --db %s/b.db "
                      "--hybrid -k 1 --json drawer", tu_aisle(), dir, r, tu_aisle(), dir);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "%s embed --help && %s embed index --help && %s embed train --help", tu_aisle(),
                        tu_aisle(), tu_aisle()),
                 0, "%s", out);
    cr_assert(strstr(out, "usage: aisle embed"));
    free(out);
    cr_assert_eq(tu_run(&out, "%s embed train --data-dir %s/nonexistent", tu_aisle(), dir), 1);
    cr_assert(strstr(out, "not found"), "%s", out);
    free(out);
    tu_rmdir(dir);
}
