/*
 * ingest_test.c — loading merchant files: formats, upserts, every class of bad
 * input (clear error with location, non-zero exit, database unchanged), --skip-bad,
 * and a kill -9 in the middle of a load.
 */
#include "../testutil.h"

#include "core/buf.h"
#include "core/error.h"
#include "store/ingest.h"
#include "store/store.h"

#include <signal.h>
#include <time.h>

static const char *PRODUCTS =
    "{\"id\": \"P1\", \"title\": \"Frigidaire 240337103 Crisper Pan\", \"brand\": \"Frigidaire\","
    " \"category\": [\"Appliances\", \"Refrigerator Parts\"], \"bullets\": [\"replaces 240337107\","
    " \"stores fruits and vegetables\"], \"description\": \"a crisper drawer.\","
    " \"attributes\": {\"color\": \"clear\", \"number_of_items\": 1}}\n"
    "{\"id\": \"P2\", \"title\": \"Whirlpool W10130695 Latch Assembly\", \"bullets\": [],"
    " \"attributes\": {\"color\": \"white\"}}\n"
    "{\"id\": 3, \"title\": \"Avalon Bay Ice Maker\"}\n";

struct fx {
    char *dir, *db;
    struct store *s;
};

static void fx_init(struct fx *f)
{
    f->dir = tu_tmpdir();
    f->db = tu_path(f->dir, "shop.db");
    char err[512];
    cr_assert_eq(store_open(&f->s, f->db, 0, err, sizeof(err)), 0, "%s", err);
    char *p = tu_path(f->dir, "products.jsonl");
    tu_write_str(p, PRODUCTS);
    struct ingest_opts o = {.format_csv = -1};
    struct ingest_stats st;
    cr_assert_eq(ingest_file(f->s, INGEST_PRODUCTS, p, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(st.loaded, 3);
    free(p);
}

static void fx_release(struct fx *f)
{
    store_close(f->s);
    free(f->db);
    tu_rmdir(f->dir);
}

/* Load content as kind; expect failure whose message contains want, and the
 * database exactly as before. */
static void expect_rejected(struct fx *f, enum ingest_kind kind, const char *name, const void *content, size_t len,
                            const char *want)
{
    char *p = tu_path(f->dir, name);
    tu_write(p, content, len);
    uint64_t before = tu_db_digest(f->db);
    struct ingest_opts o = {.format_csv = -1};
    struct ingest_stats st = {99, 99};
    char err[1024] = "";
    int rc = ingest_file(f->s, kind, p, &o, &st, err, sizeof(err));
    cr_assert_lt(rc, 0, "%s should be rejected", name);
    cr_assert(strstr(err, want) != NULL, "error for %s names the problem:\n  got:  %s\n  want: %s", name, err, want);
    cr_assert_eq(strncmp(err, p, strlen(p)), 0, "error starts with the file name: %s", err);
    cr_assert_eq(st.loaded, 99, "stats untouched on failure");
    cr_assert_eq(tu_db_digest(f->db), before, "database unchanged after rejecting %s", name);
    free(p);
}

Test(ingest, loads_products_and_their_passages)
{
    struct fx f;
    fx_init(&f);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM products"), 3);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM products WHERE id='3'"), 1, "integer ids kept as text");
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM products WHERE category='Appliances > Refrigerator Parts'"),
                 1);
    /* P1: title + 2 bullets + 2 attributes + 1 description chunk */
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM passages WHERE product_id='P1'"), 6);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM passages WHERE text='number_of_items: 1'"), 1,
                 "numeric attribute values become 'name: value'");
    fx_release(&f);
}

Test(ingest, reload_is_idempotent_and_upserts)
{
    struct fx f;
    fx_init(&f);
    char *p = tu_path(f.dir, "products.jsonl");
    uint64_t d1 = tu_db_digest(f.db);
    struct ingest_opts o = {.format_csv = -1};
    struct ingest_stats st;
    char err[512];
    cr_assert_eq(ingest_file(f.s, INGEST_PRODUCTS, p, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tu_db_digest(f.db), d1, "loading the same file twice gives the same database");

    char *p2 = tu_path(f.dir, "update.jsonl");
    tu_write_str(p2, "{\"id\": \"P2\", \"title\": \"Whirlpool Latch, Black\", \"bullets\": [\"only black\"]}\n");
    cr_assert_eq(ingest_file(f.s, INGEST_PRODUCTS, p2, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM products"), 3);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM products WHERE title='Whirlpool Latch, Black'"), 1);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM passages WHERE product_id='P2'"), 2,
                 "old passages (the white attribute) replaced: title + one bullet");
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM catalog_fts WHERE catalog_fts MATCH 'white'"), 0,
                 "the FTS index forgot the old text");
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM catalog_fts WHERE catalog_fts MATCH 'black'"), 2);
    free(p);
    free(p2);
    fx_release(&f);
}

Test(ingest, reviews_qa_offers_orders)
{
    struct fx f;
    fx_init(&f);
    struct ingest_opts o = {.format_csv = -1};
    struct ingest_stats st;
    char err[512];
    char *r = tu_path(f.dir, "reviews.jsonl.gz");
    tu_write_str(r, "{\"product_id\": \"P1\", \"text\": \"came cracked\"}\n"
                    "{\"id\": \"R9\", \"product_id\": \"P1\", \"rating\": 4, \"title\": \"fits\", \"text\": \"fits my "
                    "frigidaire\", \"helpful_votes\": 3, \"date\": \"2024-05-01\", \"author\": \"kim\"}\n");
    cr_assert_eq(ingest_file(f.s, INGEST_REVIEWS, r, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(st.loaded, 2);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM reviews WHERE rating=4 AND helpful_votes=3"), 1);

    char *q = tu_path(f.dir, "qa.jsonl");
    /* one line per answer (the demo store's shape) and the grouped shape */
    tu_write_str(q, "{\"product_id\": \"P1\", \"question\": \"fits frt18?\", \"answer\": \"yes\"}\n"
                    "{\"product_id\": \"P1\", \"question\": \"fits frt18?\", \"answer\": \"mine did\"}\n"
                    "{\"id\": \"Q7\", \"product_id\": \"P2\", \"question\": \"color?\", \"votes\": 2,"
                    " \"answers\": [\"black\", {\"text\": \"only black now\", \"votes\": 5}]}\n");
    cr_assert_eq(ingest_file(f.s, INGEST_QA, q, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM questions"), 2);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM answers"), 4);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM passages WHERE source='qa'"), 4, "one passage per answer");
    cr_assert_eq(ingest_file(f.s, INGEST_QA, q, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM answers"), 4, "reloading Q&A adds nothing");

    char *of = tu_path(f.dir, "offers.jsonl");
    tu_write_str(of, "{\"product_id\": \"P1\", \"price\": 56.99, \"currency\": \"USD\", \"stock\": 6,"
                     " \"delivery_days\": 2, \"updated_at\": \"2026-11-01T09:00:00Z\"}\n"
                     "{\"product_id\": \"P1\", \"seller\": \"Partner\", \"price\": \"1200\", \"currency\": \"JPY\","
                     " \"stock\": 0}\n");
    cr_assert_eq(ingest_file(f.s, INGEST_OFFERS, of, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tu_count(f.db, "SELECT price_minor FROM offers WHERE seller='default'"), 5699, "exact cents");
    cr_assert_eq(tu_count(f.db, "SELECT price_minor FROM offers WHERE seller='Partner'"), 1200, "JPY has no minor unit");
    /* the live feed alone: a new price replaces the old one */
    tu_write_str(of, "{\"product_id\": \"P1\", \"price\": 49.5, \"currency\": \"USD\", \"stock\": 2}\n");
    cr_assert_eq(ingest_file(f.s, INGEST_OFFERS, of, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tu_count(f.db, "SELECT price_minor FROM offers WHERE seller='default'"), 4950);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM offers"), 2);

    char *od = tu_path(f.dir, "orders.jsonl");
    tu_write_str(od, "{\"id\": \"O1\", \"customer\": \"c1\", \"currency\": \"USD\", \"lines\": [{\"product_id\":"
                     " \"P1\", \"quantity\": 2, \"unit_price\": 56.99}], \"status_history\": [{\"status\":"
                     " \"placed\", \"at\": \"2026-10-01T09:00:00Z\"}, {\"status\": \"shipped\", \"at\":"
                     " \"2026-10-02T10:00:00+02:00\"}]}\n");
    cr_assert_eq(ingest_file(f.s, INGEST_ORDERS, od, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM order_events WHERE order_id='O1'"), 2);
    cr_assert_eq(tu_count(f.db, "SELECT unit_price_minor FROM order_lines"), 5699);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM orders WHERE created_at='2026-10-01T09:00:00Z'"), 1,
                 "created_at defaults to the first event");
    free(r);
    free(q);
    free(of);
    free(od);
    fx_release(&f);
}

/* ---- bad input: each class rejected with location, database unchanged ---- */

Test(ingest_bad, malformed_json)
{
    struct fx f;
    fx_init(&f);
    const char *s = "{\"id\": \"P9\", \"title\": \"ok\"}\n{\"id\": \"P10\", \"title\": \"broken\",\n";
    expect_rejected(&f, INGEST_PRODUCTS, "bad.jsonl", s, strlen(s), "bad.jsonl:2: json: ");
    fx_release(&f);
}

Test(ingest_bad, truncated_gzip)
{
    struct fx f;
    fx_init(&f);
    /* A real gzip stream of many records, cut in half. */
    char *lines = malloc(200000);
    size_t len = 0;
    for (int i = 0; i < 2000; i++)
        len += (size_t)sprintf(lines + len, "{\"id\": \"T%d\", \"title\": \"product %d %x\"}\n", i, i, i * 2654435761u);
    char *full = tu_path(f.dir, "full.jsonl.gz");
    tu_write(full, lines, len);
    FILE *in = fopen(full, "rb");
    char *gz = malloc(400000);
    size_t gzlen = fread(gz, 1, 400000, in);
    fclose(in);
    expect_rejected(&f, INGEST_PRODUCTS, "cut.jsonl.gz.raw", gz, gzlen / 2, "gzip");
    free(lines);
    free(gz);
    free(full);
    fx_release(&f);
}

Test(ingest_bad, invalid_utf8)
{
    struct fx f;
    fx_init(&f);
    const char *s = "{\"id\": \"P9\", \"title\": \"caf\xc3\xa9 ok\"}\n{\"id\": \"P10\", \"title\": \"bad \xff\xfe byte\"}\n";
    expect_rejected(&f, INGEST_PRODUCTS, "utf8.jsonl", s, strlen(s), "utf8.jsonl:2: record: invalid UTF-8 at byte 28 (column 29)");
    fx_release(&f);
}

Test(ingest_bad, ten_megabyte_field)
{
    struct fx f;
    fx_init(&f);
    size_t big = 10u << 20;
    char *s = malloc(big + 100);
    size_t n = (size_t)sprintf(s, "{\"id\": \"P9\", \"title\": \"huge\", \"description\": \"");
    memset(s + n, 'a', big);
    n += big;
    n += (size_t)sprintf(s + n, "\"}\n");
    expect_rejected(&f, INGEST_PRODUCTS, "huge.jsonl", s, n, "huge.jsonl:1: record: line longer than the 1048576-byte limit");
    free(s);
    fx_release(&f);
}

Test(ingest_bad, missing_id)
{
    struct fx f;
    fx_init(&f);
    const char *s = "{\"title\": \"no id here\"}\n";
    expect_rejected(&f, INGEST_PRODUCTS, "noid.jsonl", s, strlen(s), "noid.jsonl:1: id: missing (required)");
    const char *r = "{\"text\": \"nice\"}\n";
    expect_rejected(&f, INGEST_REVIEWS, "noprod.jsonl", r, strlen(r), "noprod.jsonl:1: product_id: missing (required)");
    fx_release(&f);
}

Test(ingest_bad, duplicate_ids_in_one_file)
{
    struct fx f;
    fx_init(&f);
    const char *s = "{\"id\": \"P9\", \"title\": \"a\"}\n{\"id\": \"P8\", \"title\": \"b\"}\n{\"id\": \"P9\", \"title\": \"c\"}\n";
    expect_rejected(&f, INGEST_PRODUCTS, "dup.jsonl", s, strlen(s), "dup.jsonl:3: id: duplicate id \"P9\" (first at line 1)");
    const char *r = "{\"product_id\": \"P1\", \"text\": \"same\"}\n{\"product_id\": \"P1\", \"text\": \"same\"}\n";
    expect_rejected(&f, INGEST_REVIEWS, "dupr.jsonl", r, strlen(r), "dupr.jsonl:2: text: duplicate review");
    fx_release(&f);
}

Test(ingest_bad, wrong_types)
{
    struct fx f;
    fx_init(&f);
    const struct {
        enum ingest_kind kind;
        const char *rec, *want;
    } cases[] = {
        {INGEST_PRODUCTS, "{\"id\": \"P9\", \"title\": 42}", "title: expected a string, got an integer"},
        {INGEST_PRODUCTS, "{\"id\": \"P9\", \"title\": \"t\", \"bullets\": \"one\"}", "bullets: expected an array of strings, got a string"},
        {INGEST_PRODUCTS, "{\"id\": \"P9\", \"title\": \"t\", \"bullets\": [\"a\", 2]}", "bullets[1]: expected a string, got an integer"},
        {INGEST_PRODUCTS, "{\"id\": \"P9\", \"title\": \"t\", \"attributes\": [1]}", "attributes: expected an object, got an array"},
        {INGEST_PRODUCTS, "[1, 2]", "record: expected a JSON object, got an array"},
        {INGEST_PRODUCTS, "{\"id\": true, \"title\": \"t\"}", "id: expected a string, got a boolean"},
        {INGEST_REVIEWS, "{\"product_id\": \"P1\", \"text\": \"x\", \"rating\": 9}", "rating: 9 is out of range [1, 5]"},
        {INGEST_REVIEWS, "{\"product_id\": \"P1\", \"text\": \"x\", \"date\": \"May 1st\"}", "date: \"May 1st\" is not an ISO 8601 date"},
        {INGEST_REVIEWS, "{\"product_id\": \"NOPE\", \"text\": \"x\"}", "unknown product \"NOPE\""},
        {INGEST_OFFERS, "{\"product_id\": \"P1\", \"price\": -1, \"currency\": \"USD\", \"stock\": 1}", "price: -1 is out of range"},
        {INGEST_OFFERS, "{\"product_id\": \"P1\", \"price\": 1.999, \"currency\": \"USD\", \"stock\": 1}", "price: 1.999 has more decimals than USD allows"},
        {INGEST_OFFERS, "{\"product_id\": \"P1\", \"price\": 1, \"currency\": \"usd\", \"stock\": 1}", "currency: \"usd\" is not an ISO 4217 code"},
        {INGEST_OFFERS, "{\"product_id\": \"P1\", \"price\": 1, \"currency\": \"USD\", \"stock\": \"many\"}", "stock: expected an integer, got a string"},
        {INGEST_ORDERS, "{\"id\": \"O1\", \"customer\": \"c\", \"lines\": [], \"status_history\": []}", "lines: expected a non-empty array"},
        {INGEST_ORDERS, "{\"id\": \"O1\", \"customer\": \"c\", \"lines\": [{\"product_id\": \"P1\", \"quantity\": 0}], \"status_history\": [{\"status\": \"placed\", \"at\": \"2026-01-01T00:00:00Z\"}]}", "lines[0].quantity: 0 is out of range"},
        {INGEST_ORDERS, "{\"id\": \"O1\", \"customer\": \"c\", \"lines\": [{\"product_id\": \"P1\", \"quantity\": 1}], \"status_history\": [{\"status\": \"placed\", \"at\": \"2026-02-01T00:00:00Z\"}, {\"status\": \"paid\", \"at\": \"2026-01-01T00:00:00Z\"}]}", "status_history[1].at: 2026-01-01T00:00:00Z is before the previous event"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[32], rec[1024];
        snprintf(name, sizeof(name), "types%zu.jsonl", i);
        snprintf(rec, sizeof(rec), "%s\n", cases[i].rec);
        char want[512];
        snprintf(want, sizeof(want), "%s:1: %s", name, cases[i].want);
        if (strstr(cases[i].want, "unknown product"))
            snprintf(want, sizeof(want), "%s", cases[i].want);
        expect_rejected(&f, cases[i].kind, name, rec, strlen(rec), want);
    }
    fx_release(&f);
}

Test(ingest_bad, empty_file)
{
    struct fx f;
    fx_init(&f);
    expect_rejected(&f, INGEST_PRODUCTS, "empty.jsonl", "", 0, "empty file");
    expect_rejected(&f, INGEST_PRODUCTS, "blank.jsonl", "\n  \n", 4, "empty file");
    expect_rejected(&f, INGEST_PRODUCTS, "empty.csv", "", 0, "empty file");
    expect_rejected(&f, INGEST_PRODUCTS, "header-only.csv", "id,title\n", 9, "empty file");
    fx_release(&f);
}

Test(ingest_bad, csv_unbalanced_quotes)
{
    struct fx f;
    fx_init(&f);
    const char *s = "id,title,brand\nC1,\"Mug, blue\",Acme\nC2,\"Plate,Acme\nC3,Bowl,Acme\n";
    expect_rejected(&f, INGEST_PRODUCTS, "quotes.csv", s, strlen(s), "quotes.csv:3: record: field 2: unbalanced quotes");
    const char *t = "id,title\nC1,Mu\"g\n";
    expect_rejected(&f, INGEST_PRODUCTS, "stray.csv", t, strlen(t), "stray.csv:2: record: field 2: quote inside an unquoted field");
    const char *u = "id,title\nC1,Mug,extra\n";
    expect_rejected(&f, INGEST_PRODUCTS, "width.csv", u, strlen(u), "width.csv:2: record: 3 fields, but the header has 2");
    const char *v = "id,title\nC1,bad \xc3\x28 utf8\n";
    expect_rejected(&f, INGEST_PRODUCTS, "utf8.csv", v, strlen(v), "utf8.csv:2: title: invalid UTF-8 at byte 4");
    const char *w = "sku,color\nC1,red\n";
    expect_rejected(&f, INGEST_PRODUCTS, "nohead.csv", w, strlen(w), "nohead.csv:1: header: no column for \"title\"");
    fx_release(&f);
}

Test(ingest, csv_with_header_mapping)
{
    struct fx f;
    fx_init(&f);
    /* The shape of a real export (BigBasket's columns), with a quoted comma,
     * a trailing space and a byte order mark. */
    const char *s = "\xEF\xBB\xBFindex,product,category,sub_category,brand,sale_price,type,rating\n"
                    "1,Garlic Oil - Vegetarian Capsule 500 mg,Beauty & Hygiene,Hair Care,Sri Sri Ayurveda ,220,Hair Oil & Serum,4.1\n"
                    "2,Water Bottle - Orange,\"Kitchen, Garden & Pets\",Storage & Accessories,Mastercook,180,Water & Fridge Bottles,2.3\n";
    char *p = tu_path(f.dir, "bigbasket.csv");
    tu_write_str(p, s);
    struct ingest_opts o = {.format_csv = -1, .csv_map = "id=index,category=category>sub_category>type,skip=rating"};
    struct ingest_stats st;
    char err[512];
    cr_assert_eq(ingest_file(f.s, INGEST_PRODUCTS, p, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(st.loaded, 2);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM products WHERE id='2' AND title='Water Bottle - Orange'"
                                " AND category='Kitchen, Garden & Pets > Storage & Accessories > Water & Fridge Bottles'"),
                 1);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM products WHERE brand='Sri Sri Ayurveda'"), 1, "trimmed");
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM passages WHERE text='sale_price: 220'"), 1,
                 "unmapped columns become attributes");
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM passages WHERE text LIKE 'rating:%'"), 0, "skipped column");
    free(p);
    fx_release(&f);
}

Test(ingest, skip_bad_loads_the_rest_and_counts)
{
    struct fx f;
    fx_init(&f);
    const char *s = "{\"id\": \"S1\", \"title\": \"good one\"}\n"
                    "{\"id\": \"S2\", \"title\": 5}\n"
                    "not json\n"
                    "{\"id\": \"S3\", \"title\": \"good two\"}\n"
                    "{\"id\": \"S1\", \"title\": \"dup\"}\n";
    char *p = tu_path(f.dir, "mixed.jsonl");
    tu_write_str(p, s);
    struct ingest_opts o = {.format_csv = -1, .skip_bad = 1};
    struct ingest_stats st;
    char err[512];
    cr_assert_eq(ingest_file(f.s, INGEST_PRODUCTS, p, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(st.loaded, 2);
    cr_assert_eq(st.skipped, 3);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM products WHERE id IN ('S1','S3')"), 2);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM products WHERE title='dup'"), 0, "the duplicate was skipped");
    free(p);
    fx_release(&f);
}

/* The parser thread hands records over in batches of 128 (8 in flight) and
 * closes a batch early when its item pools could overflow: files longer than
 * the queue, records with 1,000 items, and errors from either thread must
 * still come out in file order with the right lines. */
struct skips {
    char lines[256];
};

static void note_skip(void *ctx, const char *msg)
{
    struct skips *k = ctx;
    const char *colon = strchr(msg, ':');
    size_t n = strlen(k->lines);
    snprintf(k->lines + n, sizeof(k->lines) - n, "%s%ld", n ? "," : "", colon ? strtol(colon + 1, NULL, 10) : -1L);
}

Test(ingest, many_batches_keep_file_order, .timeout = 120)
{
    struct fx f;
    fx_init(&f);
    struct buf b;
    buf_init(&b, 0);
    for (int i = 0; i < 12; i++) { /* 12,000 bullets: a batch's bullet pool is full after 4 products */
        buf_printf(&b, "{\"id\": \"B%d\", \"title\": \"bulky %d\", \"bullets\": [", i, i);
        for (int j = 0; j < INGEST_MAX_ITEMS; j++)
            buf_printf(&b, "%s\"bullet %d\"", j ? ", " : "", j);
        buf_puts(&b, "]}\n");
    }
    char *p = tu_path(f.dir, "bulky.jsonl");
    tu_write(p, b.data, b.len);
    struct ingest_opts o = {.format_csv = -1};
    struct ingest_stats st;
    char err[1024];
    cr_assert_eq(ingest_file(f.s, INGEST_PRODUCTS, p, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(st.loaded, 12);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM passages WHERE source='bullet' AND ref_id LIKE 'B%'"), 12000);
    free(p);

    /* 3,000 reviews: bad JSON at line 5, an unknown product (the writer's error) at 700, a
     * parse error at 2999; Q&A lines 1 and 2500 share a question, so 2500 adds an answer to a
     * question written 19 batches earlier. */
    buf_reset(&b);
    for (int i = 1; i <= 3000; i++) {
        if (i == 5)
            buf_puts(&b, "{not json\n");
        else if (i == 700)
            buf_puts(&b, "{\"product_id\": \"NOPE\", \"text\": \"x\"}\n");
        else if (i == 2999)
            buf_puts(&b, "{\"product_id\": \"P1\", \"text\": \"x\", \"rating\": 9}\n");
        else
            buf_printf(&b, "{\"id\": \"R%d\", \"product_id\": \"P%d\", \"text\": \"review %d\"}\n", i, 1 + i % 2, i);
    }
    p = tu_path(f.dir, "reviews.jsonl");
    tu_write(p, b.data, b.len);
    uint64_t before = tu_db_digest(f.db);
    st.loaded = 99;
    cr_assert_lt(ingest_file(f.s, INGEST_REVIEWS, p, &o, &st, err, sizeof(err)), 0);
    cr_assert(strstr(err, "reviews.jsonl:5: json:") != NULL, "first bad line named: %s", err);
    cr_assert_eq(st.loaded, 99, "stats untouched on failure");
    cr_assert_eq(tu_db_digest(f.db), before, "database unchanged");

    struct skips k = {{0}};
    struct ingest_opts ko = {.format_csv = -1, .skip_bad = 1, .on_skip = note_skip, .ctx = &k};
    cr_assert_eq(ingest_file(f.s, INGEST_REVIEWS, p, &ko, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(st.loaded, 2997);
    cr_assert_eq(st.skipped, 3);
    cr_assert_str_eq(k.lines, "5,700,2999", "skips reported in file order");
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM reviews WHERE id LIKE 'R%'"), 2997);
    free(p);

    buf_reset(&b);
    for (int i = 1; i <= 3000; i++)
        buf_printf(&b, "{\"product_id\": \"P1\", \"question\": \"question %d?\", \"answer\": \"a%d\"}\n",
                   i == 2500 ? 1 : i, i);
    p = tu_path(f.dir, "qa.jsonl");
    tu_write(p, b.data, b.len);
    cr_assert_eq(ingest_file(f.s, INGEST_QA, p, &o, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(st.loaded, 3000);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM questions"), 2999);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM answers a JOIN questions q ON q.id = a.question_id"
                                " WHERE q.question = 'question 1?'"),
                 2, "line 2500 added its answer to line 1's question");
    free(p);
    buf_release(&b);
    fx_release(&f);
}

/* ---- the program: exit codes and messages ---- */

Test(ingest_cli, bad_file_exits_nonzero_with_location)
{
    char *dir = tu_tmpdir();
    char *out;
    int st = tu_run(&out, "cd %s && printf '{\"id\":\"A\",\"title\":\"t\"}\\n{\"id\":\"B\"}\\n' > p.jsonl &&"
                          " %s ingest --db s.db --products p.jsonl", dir, tu_aisle());
    cr_assert_eq(st, 1, "exit status: %s", out);
    cr_assert(strstr(out, "p.jsonl:2: title: missing (required)") != NULL, "%s", out);
    free(out);
    char *db = tu_path(dir, "s.db");
    cr_assert_eq(tu_count(db, "SELECT count(*) FROM products"), 0, "nothing from the bad file");
    free(db);
    st = tu_run(&out, "%s ingest --db %s/x.db --bogus", tu_aisle(), dir);
    cr_assert_eq(st, 2, "usage errors exit 2: %s", out);
    free(out);
    tu_rmdir(dir);
}

Test(ingest_cli, help_and_version)
{
    char *out;
    cr_assert_eq(tu_run(&out, "%s --help", tu_aisle()), 0);
    cr_assert(strstr(out, "ingest") && strstr(out, "search"), "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "%s ingest --help", tu_aisle()), 0);
    cr_assert(strstr(out, "usage: aisle ingest") != NULL, "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "%s help search", tu_aisle()), 0);
    cr_assert(strstr(out, "usage: aisle search") != NULL, "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "%s --version", tu_aisle()), 0);
    cr_assert(strncmp(out, "aisle ", 6) == 0, "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "%s frobnicate", tu_aisle()), 2);
    free(out);
}

/* ---- crash safety ---- */

Test(ingest_cli, kill_9_mid_load_leaves_database_as_before, .timeout = 400)
{
    char *dir = tu_tmpdir();
    char *db = tu_path(dir, "s.db"), *prod = tu_path(dir, "p.jsonl"), *rev = tu_path(dir, "r.jsonl");
    tu_write_str(prod, PRODUCTS);
    char *out;
    cr_assert_eq(tu_run(&out, "%s ingest -q --db %s --products %s", tu_aisle(), db, prod), 0, "%s", out);
    free(out);
    uint64_t before = tu_db_digest(db);

    /* Enough text that the load spills pages to the WAL long before it ends
     * (SQLite keeps a transaction's pages in its cache until the cache fills):
     * long reviews make that happen after few records even under ASan. */
    FILE *f = fopen(rev, "w");
    for (int i = 0; i < 60000; i++) {
        fprintf(f, "{\"id\": \"R%d\", \"product_id\": \"P%d\", \"text\": \"review %d:", i, 1 + i % 2, i);
        for (int w = 0; w < 160; w++)
            fprintf(f, " w%x", (unsigned)(i * 2654435761u + w * 40503u) % 50000u);
        fprintf(f, "\"}\n");
    }
    fclose(f);

    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        execl(tu_aisle(), "aisle", "ingest", "-q", "--db", db, "--reviews", rev, (char *)NULL);
        _exit(127);
    }
    /* Wait until the load is writing (the WAL grows past a few pages), then kill. */
    char wal[512];
    snprintf(wal, sizeof(wal), "%s-wal", db);
    struct stat sb;
    int waited = 0;
    while (waited < 300000 && (stat(wal, &sb) != 0 || sb.st_size < 256 * 1024)) {
        usleep(5000);
        waited += 5;
    }
    cr_assert_lt(waited, 300000, "the load never started writing");
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "killed mid-load (not finished already)");

    cr_assert_eq(tu_db_digest(db), before, "the database is as it was before the killed load");
    cr_assert_eq(tu_count(db, "SELECT count(*) FROM reviews"), 0);
    /* And it is healthy: integrity checks pass, and the same load now succeeds. */
    cr_assert_eq(tu_run(&out, "sqlite3 %s 'PRAGMA integrity_check' | grep -qx ok", db), 0);
    free(out);
    tu_write_str(rev, "{\"id\": \"R1\", \"product_id\": \"P1\", \"text\": \"loads after recovery\"}\n");
    cr_assert_eq(tu_run(&out, "%s ingest -q --db %s --reviews %s", tu_aisle(), db, rev), 0, "%s", out);
    free(out);
    cr_assert_eq(tu_count(db, "SELECT count(*) FROM reviews"), 1);
    cr_assert_eq(tu_count(db, "SELECT count(*) FROM review_fts WHERE review_fts MATCH 'recovery'"), 1);
    free(db);
    free(prod);
    free(rev);
    tu_rmdir(dir);
}

Test(demo_cli, generated_files_are_reproducible, .timeout = 60)
{
    char *dir = tu_tmpdir();
    char *out;
    const char *r = tu_root();
    int st = tu_run(&out, "%s demo generate --products %s/data/demo-store/products.jsonl.gz --out %s",
                    tu_aisle(), r, dir);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    /* The committed files are exactly what the generator makes (same seed, same bytes). */
    st = tu_run(&out, "cmp %s/offers.generated.jsonl.gz %s/data/demo-store/offers.generated.jsonl.gz &&"
                      " cmp %s/orders.generated.jsonl.gz %s/data/demo-store/orders.generated.jsonl.gz",
                dir, r, dir, r);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    /* ...and they load. */
    st = tu_run(&out, "cd %s/data/demo-store && %s ingest -q --db %s/d.db --products products.jsonl.gz"
                      " --offers offers.generated.jsonl.gz --orders orders.generated.jsonl.gz",
                r, tu_aisle(), dir);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    char *db = tu_path(dir, "d.db");
    cr_assert_eq(tu_count(db, "SELECT count(*) FROM orders"), 12);
    cr_assert_geq(tu_count(db, "SELECT count(*) FROM offers"), 888);
    cr_assert_gt(tu_count(db, "SELECT count(*) FROM offers WHERE stock = 0"), 0, "some products out of stock");
    free(db);
    tu_rmdir(dir);
}

/* The FTS indexes are fed in bulk at commit and trimmed by a trigger on delete:
 * after loads, reloads and replacements inside one file, each index must agree
 * exactly with the passages it is built from (FTS5's own integrity-check
 * compares the index with its external content). */
Test(ingest, fts_indexes_match_passages_after_upserts)
{
    struct fx f;
    fx_init(&f);
    struct ingest_opts o = {.format_csv = -1};
    struct ingest_stats st;
    char err[512];
    /* The same product twice in two files, and its reviews and Q&A replaced. */
    char *p = tu_path(f.dir, "p2.jsonl"), *r = tu_path(f.dir, "r.jsonl"), *q = tu_path(f.dir, "q.jsonl");
    tu_write_str(p, "{\"id\": \"P1\", \"title\": \"Crisper Pan Mk2\", \"bullets\": [\"new bullet\"]}\n"
                    "{\"id\": \"P4\", \"title\": \"Fresh product\", \"description\": \"brand new text\"}\n");
    tu_write_str(r, "{\"id\": \"R1\", \"product_id\": \"P1\", \"text\": \"first words\"}\n"
                    "{\"id\": \"R2\", \"product_id\": \"P4\", \"text\": \"other words\"}\n");
    tu_write_str(q, "{\"id\": \"Q1\", \"product_id\": \"P1\", \"question\": \"fits?\", \"answers\": [\"yes\", \"no\"]}\n");
    for (int round = 0; round < 2; round++) {
        cr_assert_eq(ingest_file(f.s, INGEST_PRODUCTS, p, &o, &st, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(ingest_file(f.s, INGEST_REVIEWS, r, &o, &st, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(ingest_file(f.s, INGEST_QA, q, &o, &st, err, sizeof(err)), 0, "%s", err);
        tu_write_str(r, "{\"id\": \"R1\", \"product_id\": \"P1\", \"text\": \"replaced words\"}\n");
        tu_write_str(q, "{\"id\": \"Q1\", \"product_id\": \"P1\", \"question\": \"fits frt18?\", \"answer\": \"maybe\"}\n");
    }
    /* A failed file in between must not leave half an index behind. */
    tu_write_str(p, "{\"id\": \"P5\", \"title\": \"will roll back\"}\n{\"id\": \"P6\"}\n");
    cr_assert_neq(ingest_file(f.s, INGEST_PRODUCTS, p, &o, &st, err, sizeof(err)), 0);
    store_close(f.s);
    f.s = NULL;

    sqlite3 *db;
    cr_assert_eq(sqlite3_open(f.db, &db), SQLITE_OK);
    const char *checks[] = {"INSERT INTO catalog_fts(catalog_fts) VALUES('integrity-check')",
                            "INSERT INTO review_fts(review_fts) VALUES('integrity-check')",
                            "INSERT INTO qa_fts(qa_fts) VALUES('integrity-check')"};
    for (size_t i = 0; i < 3; i++) {
        char *msg = NULL;
        cr_assert_eq(sqlite3_exec(db, checks[i], NULL, NULL, &msg), SQLITE_OK, "%s: %s", checks[i], msg ? msg : "");
    }
    sqlite3_close(db);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM review_fts WHERE review_fts MATCH 'replaced'"), 1);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM review_fts WHERE review_fts MATCH 'first'"), 0);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM qa_fts WHERE qa_fts MATCH 'maybe'"), 1);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM qa_fts WHERE qa_fts MATCH 'yes'"), 0);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM catalog_fts WHERE catalog_fts MATCH 'roll'"), 0);
    cr_assert_eq(tu_count(f.db, "SELECT count(*) FROM catalog_fts WHERE catalog_fts MATCH 'mk2'"), 1);
    free(p);
    free(r);
    free(q);
    fx_release(&f);
}
