/*
 * ingest_fuzz_test.c — regressions found by fuzz/records_fuzz.c (and reading
 * the code it covers), each with its input also in fuzz/corpus/records/ so the
 * corpus replay keeps exercising it under the sanitizers.
 */
#include "../testutil.h"

#include "core/error.h"
#include "store/ingest.h"
#include "store/store.h"

static const char *PRODUCTS = "{\"id\": \"P1\", \"title\": \"Trail shoe\"}\n";

/* Load products, then content as kind (products: CSV when csv) with skip_bad
 * off and a line cap of max_line (0: default); returns the error text (caller
 * frees) and checks the load failed. */
static char *load_failing(enum ingest_kind kind, const char *content, int csv, size_t max_line)
{
    char *dir = tu_tmpdir(), *db = tu_path(dir, "shop.db"), *p = tu_path(dir, "products.jsonl");
    char *f = tu_path(dir, "input.jsonl");
    char err[1024] = "";
    struct store *s;
    struct ingest_opts o = {.format_csv = -1};
    struct ingest_stats st;
    cr_assert_eq(store_open(&s, db, 0, err, sizeof(err)), 0, "%s", err);
    tu_write_str(p, PRODUCTS);
    cr_assert_eq(ingest_file(s, INGEST_PRODUCTS, p, &o, &st, err, sizeof(err)), 0, "%s", err);
    tu_write_str(f, content);
    o.format_csv = csv;
    o.max_line = max_line;
    cr_assert_lt(ingest_file(s, kind, f, &o, &st, err, sizeof(err)), 0, "%s should be rejected", content);
    store_close(s);
    free(db);
    free(p);
    free(f);
    tu_rmdir(dir);
    return strdup(err);
}

/* bad() was called with its own message buffer as an argument
 * ("lines[%zu].%s", c->msg): vsnprintf into the buffer it reads is undefined,
 * and glibc produced "lines[0].lines[0].d: missing (required)". */
Test(ingest_fuzz, order_line_error_names_the_field)
{
    char *err = load_failing(INGEST_ORDERS,
                             "{\"id\": \"O1\", \"customer\": \"c\", \"lines\": [{\"quantity\": 1}],"
                             " \"status_history\": [{\"status\": \"placed\", \"at\": \"2026-10-01T09:00:00Z\"}]}\n",
                             0, 0);
    cr_assert(strstr(err, ":1: lines[0].product_id: missing (required)") != NULL, "got: %s", err);
    free(err);
}

/* csv_next kept the previous record's line number when the next line was over
 * the cap, so the over-long line 3 was reported as line 2. */
Test(ingest_fuzz, csv_over_long_line_names_its_own_line)
{
    char *err = load_failing(INGEST_PRODUCTS,
                             "id,title\nA,short\nB,this title is longer than the thirty-two byte cap\nC,ok\n", 1, 32);
    cr_assert(strstr(err, ":3: record: line longer than the 32-byte limit") != NULL, "got: %s", err);
    free(err);
}

/* An empty CSV file was reported at "file:0:", a line that does not exist. */
Test(ingest_fuzz, empty_csv_has_no_line_number)
{
    char *err = load_failing(INGEST_PRODUCTS, "", 1, 0);
    cr_assert(strstr(err, ":0:") == NULL && strstr(err, ": header: empty file") != NULL, "got: %s", err);
    free(err);
}
