/*
 * lexical_test.c — query terms, BM25 ranking with column weights, filters, and
 * shoppers' text that must never break the FTS5 query (issue 2, item 6).
 */
#include "../testutil.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/utf8.h"
#include "retrieval/lexical.h"
#include "store/ingest.h"
#include "store/store.h"

#include <jansson.h>

Test(lex_terms, folds_splits_and_drops_stop_words)
{
    char **t;
    const char *q = "Will this CRISPER drawer fit my Frigidaire FRT18-DRH? Café, crème & 240337103 it's";
    int n = lex_terms(q, strlen(q), 1, &t, LEX_MAX_TERMS);
    const char *want[] = {"crisper", "drawer", "fit", "frigidaire", "frt18", "drh", "cafe", "creme", "240337103"};
    cr_assert_eq(n, 9, "got %d terms", n);
    for (int i = 0; i < n; i++)
        cr_assert_str_eq(t[i], want[i]);
    free(t);
    n = lex_terms(q, strlen(q), 0, &t, 3);
    cr_assert_eq(n, 3, "capped at max");
    cr_assert_str_eq(t[0], "will");
    free(t);
}

Test(lex_terms, any_bytes_give_safe_terms)
{
    const char *qs[] = {"\"unbalanced", "a\" OR \"b", "-color *", "NEAR(a b)", "col:val ^x", "\xff\xfe\xc3",
                        "emoji \xf0\x9f\x9b\x92 cart", "", "   ", "AND OR NOT"};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        char **t;
        int n = lex_terms(qs[i], strlen(qs[i]), 0, &t, LEX_MAX_TERMS);
        cr_assert_geq(n, 0);
        for (int k = 0; k < n; k++) {
            cr_assert_gt(strlen(t[k]), 0);
            cr_assert(utf8_valid(t[k], strlen(t[k])));
            cr_assert_null(strpbrk(t[k], "\"*():^-+ "), "term '%s' from query %zu has syntax", t[k], i);
        }
        free(t);
    }
}

Test(lex_terms, stop_word_list_is_searchable)
{
    /* The list is binary-searched: if it were unsorted some of these would be missed. */
    const char *sw[] = {"a", "about", "and", "because", "does", "for", "how", "i", "is", "it", "my", "of",
                        "please", "than", "the", "through", "was", "what", "which", "will", "yours"};
    for (size_t i = 0; i < sizeof(sw) / sizeof(sw[0]); i++)
        cr_assert(lex_is_stopword(sw[i]), "%s", sw[i]);
    const char *keep[] = {"not", "no", "without", "fit", "black", "frigidaire"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        cr_assert_not(lex_is_stopword(keep[i]), "%s is meaningful to shoppers", keep[i]);
}

/* A store with the real demo data. */
static struct store *demo_store(char **dir_out, char **db_out)
{
    char *dir = tu_tmpdir();
    char *db = tu_path(dir, "demo.db");
    char err[512];
    struct store *s;
    cr_assert_eq(store_open(&s, db, 0, err, sizeof(err)), 0, "%s", err);
    static const struct {
        enum ingest_kind k;
        const char *f;
    } files[] = {{INGEST_PRODUCTS, "products.jsonl.gz"}, {INGEST_REVIEWS, "reviews.jsonl.gz"}, {INGEST_QA, "qa.jsonl.gz"}};
    for (size_t i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/data/demo-store/%s", tu_root(), files[i].f);
        struct ingest_opts o = {.format_csv = -1};
        struct ingest_stats st;
        cr_assert_eq(ingest_file(s, files[i].k, path, &o, &st, err, sizeof(err)), 0, "%s", err);
    }
    *dir_out = dir;
    *db_out = db;
    return s;
}

static int has_hit(struct lex_hit *h, size_t n, const char *pid, size_t within)
{
    for (size_t i = 0; i < n && i < within; i++)
        if (!strcmp(h[i].product_id, pid))
            return 1;
    return 0;
}

Test(lex_search, finds_the_right_product_in_the_demo_store)
{
    char *dir, *db, err[512];
    struct store *s = demo_store(&dir, &db);
    struct lex_hit *h;
    size_t n;
    struct lex_query q = {.text = "will this crisper drawer fit my frigidaire?", .k = 10};
    cr_assert_eq(lex_search(s, &q, &h, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_geq(n, 3);
    cr_assert_str_eq(h[0].product_id, "B00545ATZW", "the Frigidaire crisper pan first");
    for (size_t i = 1; i < n; i++)
        cr_assert_geq(h[i - 1].score, h[i].score, "best first");
    lex_hits_free(h, n);

    /* A part number finds its product (the dishwasher latch). */
    q.text = "w10130695";
    cr_assert_eq(lex_search(s, &q, &h, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert(has_hit(h, n, "B005AR75A6", 1), "part number -> latch");
    lex_hits_free(h, n);

    /* Source and product filters. */
    q.text = "easy to install";
    q.sources = LEX_REVIEWS;
    cr_assert_eq(lex_search(s, &q, &h, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_gt(n, 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(h[i].source, "review");
    lex_hits_free(h, n);
    q.sources = 0;
    q.text = "color black white";
    q.product_id = "B005AR75A6";
    cr_assert_eq(lex_search(s, &q, &h, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_gt(n, 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(h[i].product_id, "B005AR75A6");
    lex_hits_free(h, n);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

Test(lex_search, passages_and_ids_are_evidence_units)
{
    char *dir, *db, err[512];
    struct store *s = demo_store(&dir, &db);
    struct lex_hit *h;
    size_t n;
    struct lex_query q = {.text = "kenmore refrigerator crisper drawer fit", .k = 50, .product_id = "B00545ATZW"};
    cr_assert_eq(lex_search(s, &q, &h, &n, err, sizeof(err)), 0, "%s", err);
    int saw_qa = 0, saw_bullet = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(h[i].source, "qa")) {
            saw_qa = 1;
            cr_assert_eq(strncmp(h[i].text, "Q: ", 3), 0, "a Q&A passage is the answer with its question");
            cr_assert(strstr(h[i].text, " A: ") != NULL);
            cr_assert_eq(strncmp(h[i].id, "qa:", 3), 0);
        }
        if (!strcmp(h[i].source, "bullet")) {
            saw_bullet = 1;
            cr_assert_eq(strncmp(h[i].id, "B00545ATZW:bullet:", 18), 0, "%s", h[i].id);
            cr_assert_null(strchr(h[i].text, '['), "one bullet, not the list");
        }
    }
    cr_assert(saw_qa && saw_bullet);
    lex_hits_free(h, n);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

Test(lex_search, column_weights_rank_title_above_bullet_above_attribute_above_description)
{
    char *dir = tu_tmpdir();
    char *db = tu_path(dir, "w.db"), *p = tu_path(dir, "p.jsonl");
    /* The same rare word in a different field of four otherwise alike products. */
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "{\"id\": \"D\", \"title\": \"plain thing one\", \"description\": \"zephyr\"}\n"
                 "{\"id\": \"A\", \"title\": \"plain thing two\", \"attributes\": {\"style\": \"zephyr\"}}\n"
                 "{\"id\": \"B\", \"title\": \"plain thing six\", \"bullets\": [\"zephyr\"]}\n"
                 "{\"id\": \"T\", \"title\": \"plain zephyr thing\"}\n");
    /* Other products without the word, so it is rare (BM25's IDF) and every
     * column has realistic average lengths. */
    for (int i = 0; i < 40; i++)
        buf_printf(&b, "{\"id\": \"F%d\", \"title\": \"filler item %d\", \"bullets\": [\"a bullet about item %d\","
                       " \"another line\"], \"description\": \"some longer description text of item %d here\","
                       " \"attributes\": {\"size\": \"%d cm\", \"color\": \"red\"}}\n", i, i, i, i, i);
    tu_write_str(p, b.data);
    buf_release(&b);
    char err[512];
    struct store *s;
    cr_assert_eq(store_open(&s, db, 0, err, sizeof(err)), 0, "%s", err);
    struct ingest_opts o = {.format_csv = -1};
    struct ingest_stats st;
    cr_assert_eq(ingest_file(s, INGEST_PRODUCTS, p, &o, &st, err, sizeof(err)), 0, "%s", err);
    struct lex_hit *h;
    size_t n;
    struct lex_query q = {.text = "zephyr", .k = 10};
    cr_assert_eq(lex_search(s, &q, &h, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 4);
    const char *order[] = {"T", "B", "A", "D"};
    const char *src[] = {"product", "bullet", "attribute", "description"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(h[i].product_id, order[i], "rank %zu", i);
        cr_assert_str_eq(h[i].source, src[i]);
    }
    cr_assert_str_eq(h[2].text, "style: zephyr", "an attribute passage is 'name: value'");
    lex_hits_free(h, n);
    store_close(s);
    free(db);
    free(p);
    tu_rmdir(dir);
}

Test(lex_search, shoppers_text_never_breaks_the_query)
{
    char *dir, *db, err[512];
    struct store *s = demo_store(&dir, &db);
    const char *qs[] = {"\"crisper drawer", "does it fit? \"yes\" - or not *", "ice maker AND -\"white\"",
                        "NEAR(latch color) OR", "what is it?", "", "!!!", "\xff\xfe broken bytes", "a:b ^c {d}",
                        "w10130695*", "'single quotes' and (parens)"};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        struct lex_hit *h;
        size_t n;
        struct lex_query q = {.text = qs[i], .k = 5};
        cr_assert_eq(lex_search(s, &q, &h, &n, err, sizeof(err)), 0, "query %zu (%s): %s", i, qs[i], err);
        lex_hits_free(h, n);
    }
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

Test(search_cli, json_lines_best_first)
{
    char *dir = tu_tmpdir();
    char *out;
    const char *r = tu_root();
    int st = tu_run(&out, "%s ingest -q --db %s/d.db --products %s/data/demo-store/products.jsonl.gz"
                          " --qa %s/data/demo-store/qa.jsonl.gz && %s search --db %s/d.db -k 7 --json"
                          " 'will \"this\" fit a kenmore -refrigerator?'",
                    tu_aisle(), dir, r, r, tu_aisle(), dir);
    cr_assert_eq(st, 0, "%s", out);
    int lines = 0;
    double last = 1e300;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        cr_assert_not_null(o, "not JSON: %s", line);
        cr_assert(json_is_string(json_object_get(o, "id")));
        const char *src = json_string_value(json_object_get(o, "source"));
        cr_assert(src && strstr("product bullet description attribute review qa", src), "%s", line);
        cr_assert(json_is_string(json_object_get(o, "product_id")));
        cr_assert(json_is_string(json_object_get(o, "text")));
        double sc = json_number_value(json_object_get(o, "score"));
        cr_assert(json_is_number(json_object_get(o, "score")));
        cr_assert_leq(sc, last, "best first");
        last = sc;
        json_decref(o);
        lines++;
    }
    cr_assert_eq(lines, 7);
    free(out);
    /* Reading queries from standard input, one per line. */
    st = tu_run(&out, "printf 'crisper drawer\\nice maker\\n' | %s search --db %s/d.db -k 1 --json", tu_aisle(), dir);
    cr_assert_eq(st, 0, "%s", out);
    int n = 0;
    for (char *p = out; *p; p++)
        n += *p == '\n';
    cr_assert_eq(n, 2, "one result per query: %s", out);
    free(out);
    st = tu_run(&out, "%s search --db %s/missing.db x", tu_aisle(), dir);
    cr_assert_eq(st, 1, "a missing store is an error, not a new empty one: %s", out);
    free(out);
    tu_rmdir(dir);
}
