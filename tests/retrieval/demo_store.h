/*
 * demo_store.h — the demo store (data/demo-store: products, reviews, Q&A and
 * the generated offers and orders) ingested into a fresh database in a temp
 * directory, for the resolution and evidence tests. Header-only, like testutil.h.
 */
#ifndef AISLE_TESTS_DEMO_STORE_H
#define AISLE_TESTS_DEMO_STORE_H

#include "../testutil.h"

#include "store/ingest.h"
#include "store/store.h"

/* Opens (writable) and returns the store; *dir_out (tu_rmdir it) and *db_out (free) are set. */
static inline struct store *demo_store_open(char **dir_out, char **db_out)
{
    char *dir = tu_tmpdir();
    char *db = tu_path(dir, "demo.db");
    char err[512];
    struct store *s;
    cr_assert_eq(store_open(&s, db, 0, err, sizeof(err)), 0, "%s", err);
    static const struct {
        enum ingest_kind k;
        const char *f;
    } files[] = {{INGEST_PRODUCTS, "products.jsonl.gz"}, {INGEST_REVIEWS, "reviews.jsonl.gz"},
                 {INGEST_QA, "qa.jsonl.gz"}, {INGEST_OFFERS, "offers.generated.jsonl.gz"},
                 {INGEST_ORDERS, "orders.generated.jsonl.gz"}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
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

#endif
