/*
 * store.c — SQLite-backed store; see store.h for the contract.
 *
 * Prepared statements are created lazily and kept for the connection's life, so
 * a bulk load prepares each statement once. All upserts assume the caller holds a
 * transaction; they never BEGIN or COMMIT themselves.
 *
 * Invariant: at commit every passage is in its FTS index. New passages are
 * remembered per index (fts_pending) and indexed in one statement per index by
 * store_fts_flush(), from store_commit() and before a delete that would reach
 * a passage not yet indexed; the schema's AFTER DELETE trigger unindexes.
 */
#include "store/store.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/utf8.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/schema.sql.h"

#define DESC_CHUNK 600 /* bytes: a description is cut into passages of about this size */
#define STORE_OPTIMIZE_MIN 10000 /* rows a commit indexes before it counts as a bulk load */
#define FTS_BULK_HASH (64 << 20) /* bytes of pending terms FTS5 holds in a bulk flush (default 1 MiB) */
#define FTS_HASH (1 << 20)       /* FTS5's default, restored after it */

enum stmt_id {
    S_PRODUCT_EXISTS,
    S_PRODUCT_NEW,
    S_PRODUCT_UPSERT,
    S_PASSAGE_LAST_CATALOG,
    S_PASSAGE_LAST_ONE,
    S_PASSAGE_DEL_CATALOG,
    S_PASSAGE_DEL_ONE,
    S_PASSAGE_INS,
    S_FTS_FILL_CATALOG,
    S_FTS_FILL_REVIEW,
    S_FTS_FILL_QA,
    S_REVIEW_NEW,
    S_REVIEW_UPSERT,
    S_QUESTION_NEW,
    S_QUESTION_UPSERT,
    S_ANSWER_DEL,
    S_ANSWER_INS,
    S_ANSWER_NEXT,
    S_OFFER_UPSERT,
    S_ORDER_UPSERT,
    S_ORDER_LINES_DEL,
    S_ORDER_LINE_INS,
    S_ORDER_EVENTS_DEL,
    S_ORDER_EVENT_INS,
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_COUNT_
};

static const char *const stmt_sql[S_COUNT_] = {
    [S_PRODUCT_EXISTS] = "SELECT 1 FROM products WHERE id=?1",
    /* Each *_NEW inserts a row whose id is not there yet and does nothing
     * otherwise; the *_UPSERT after it (same parameters) replaces an existing
     * one. A first load so knows, without a lookup, that nothing hangs off
     * the row yet (passages, answers) and skips their deletes. */
    [S_PRODUCT_NEW] = "INSERT INTO products(id,title,brand,category,bullets,description,attributes,updated_at)"
                      " VALUES(?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT(id) DO NOTHING",
    [S_PRODUCT_UPSERT] =
        "INSERT INTO products(id,title,brand,category,bullets,description,attributes,updated_at)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT(id) DO UPDATE SET title=excluded.title,"
        " brand=excluded.brand, category=excluded.category, bullets=excluded.bullets,"
        " description=excluded.description, attributes=excluded.attributes, updated_at=excluded.updated_at",
    /* Constant IN lists and one-source equality: a bound IN list builds a
     * temporary table on every run (measured: 3x slower for nothing). */
    [S_PASSAGE_LAST_CATALOG] =
        "SELECT max(id) FROM passages WHERE ref_id=?1 AND source IN ('product','bullet','attribute','description')",
    [S_PASSAGE_LAST_ONE] = "SELECT max(id) FROM passages WHERE ref_id=?1 AND source=?2",
    [S_PASSAGE_DEL_CATALOG] =
        "DELETE FROM passages WHERE ref_id=?1 AND source IN ('product','bullet','attribute','description')",
    [S_PASSAGE_DEL_ONE] = "DELETE FROM passages WHERE ref_id=?1 AND source=?2",
    [S_PASSAGE_INS] = "INSERT INTO passages(product_id,source,ref_id,ord,text,aux) VALUES(?1,?2,?3,?4,?5,?6)",
    [S_FTS_FILL_CATALOG] =
        "INSERT INTO catalog_fts(rowid, title, bullet, attribute, description, meta)"
        " SELECT id, CASE WHEN source='product' THEN text END, CASE WHEN source='bullet' THEN text END,"
        " CASE WHEN source='attribute' THEN text END, CASE WHEN source='description' THEN text END,"
        " CASE WHEN source='product' THEN aux END"
        " FROM passages WHERE id>=?1 AND source IN ('product','bullet','attribute','description') ORDER BY id",
    [S_FTS_FILL_REVIEW] = "INSERT INTO review_fts(rowid, title, text)"
                          " SELECT id, aux, text FROM passages WHERE id>=?1 AND source='review' ORDER BY id",
    [S_FTS_FILL_QA] = "INSERT INTO qa_fts(rowid, question, answer)"
                      " SELECT id, aux, text FROM passages WHERE id>=?1 AND source='qa' ORDER BY id",
    [S_REVIEW_NEW] = "INSERT INTO reviews(id,product_id,rating,title,helpful_votes,date,author)"
                     " VALUES(?1,?2,?3,?4,?5,?6,?7) ON CONFLICT(id) DO NOTHING",
    [S_REVIEW_UPSERT] =
        "INSERT INTO reviews(id,product_id,rating,title,helpful_votes,date,author)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7) ON CONFLICT(id) DO UPDATE SET product_id=excluded.product_id,"
        " rating=excluded.rating, title=excluded.title,"
        " helpful_votes=excluded.helpful_votes, date=excluded.date, author=excluded.author",
    [S_QUESTION_NEW] = "INSERT INTO questions(id,product_id,question,votes,date) VALUES(?1,?2,?3,?4,?5)"
                       " ON CONFLICT(id) DO NOTHING",
    [S_QUESTION_UPSERT] =
        "INSERT INTO questions(id,product_id,question,votes,date) VALUES(?1,?2,?3,?4,?5)"
        " ON CONFLICT(id) DO UPDATE SET product_id=excluded.product_id, question=excluded.question,"
        " votes=excluded.votes, date=excluded.date",
    [S_ANSWER_DEL] = "DELETE FROM answers WHERE question_id=?1",
    [S_ANSWER_INS] = "INSERT INTO answers(question_id,ord,text,votes) VALUES(?1,?2,?3,?4)",
    [S_ANSWER_NEXT] = "SELECT coalesce(max(ord)+1,0) FROM answers WHERE question_id=?1",
    [S_OFFER_UPSERT] =
        "INSERT INTO offers(product_id,seller,price_minor,currency,stock,delivery_days,updated_at)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7) ON CONFLICT(product_id,seller) DO UPDATE SET"
        " price_minor=excluded.price_minor, currency=excluded.currency, stock=excluded.stock,"
        " delivery_days=excluded.delivery_days, updated_at=excluded.updated_at",
    [S_ORDER_UPSERT] =
        "INSERT INTO orders(id,customer,created_at,currency) VALUES(?1,?2,?3,?4)"
        " ON CONFLICT(id) DO UPDATE SET customer=excluded.customer, created_at=excluded.created_at,"
        " currency=excluded.currency",
    [S_ORDER_LINES_DEL] = "DELETE FROM order_lines WHERE order_id=?1",
    [S_ORDER_LINE_INS] =
        "INSERT INTO order_lines(order_id,line_no,product_id,quantity,unit_price_minor) VALUES(?1,?2,?3,?4,?5)",
    [S_ORDER_EVENTS_DEL] = "DELETE FROM order_events WHERE order_id=?1",
    [S_ORDER_EVENT_INS] = "INSERT INTO order_events(order_id,seq,status,at) VALUES(?1,?2,?3,?4)",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

/* FTS indexes fed in bulk: see store_fts_flush(). */
enum fts_id { FTS_CATALOG, FTS_REVIEW, FTS_QA, FTS_COUNT_ };

struct store {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT_];
    /* Per FTS index, the smallest passage id inserted in this transaction and
     * not yet indexed (0: none). Every passage at or above it is such a passage:
     * a new rowid is always above all existing rows. */
    int64_t fts_pending[FTS_COUNT_];
    char err[512];
};

static int fail(struct store *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct store *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    return code;
}

static int db_fail(struct store *s, const char *what)
{
    int ec = sqlite3_extended_errcode(s->db);
    int code = (ec & 0xff) == SQLITE_BUSY || (ec & 0xff) == SQLITE_LOCKED ? AISLE_EBUSY : AISLE_EDB;
    return fail(s, code, "%s: %s", what, sqlite3_errmsg(s->db));
}

const char *store_errmsg(const struct store *s)
{
    return s->err;
}

struct sqlite3 *store_db(struct store *s)
{
    return s->db;
}

static sqlite3_stmt *stmt(struct store *s, enum stmt_id id)
{
    if (!s->stmt[id]) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[id], NULL) != SQLITE_OK) {
            db_fail(s, "prepare");
            return NULL;
        }
    }
    sqlite3_reset(s->stmt[id]);
    sqlite3_clear_bindings(s->stmt[id]);
    return s->stmt[id];
}

/* Run a prepared statement to completion. */
static int step_done(struct store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        int r = db_fail(s, what);
        sqlite3_reset(st);
        return r;
    }
    sqlite3_reset(st);
    return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_opt_int(sqlite3_stmt *st, int i, int64_t v)
{
    if (v >= 0)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static int exec(struct store *s, const char *sql, const char *what)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int r = fail(s, AISLE_EDB, "%s: %s", what, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

static int migrate(struct store *s)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, "read schema version");
    int version = 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);

    int latest = (int)(sizeof(store_migrations) / sizeof(store_migrations[0]));
    if (version > latest)
        return fail(s, AISLE_EFORMAT,
                    "database schema version %d is newer than this program's (%d): upgrade aisle", version,
                    latest);
    for (int v = version; v < latest; v++) {
        int rc = exec(s, "BEGIN IMMEDIATE", "begin migration");
        if (rc)
            return rc;
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d", v + 1);
        if ((rc = exec(s, store_migrations[v], "migrate schema")) || (rc = exec(s, pragma, "set schema version"))) {
            exec(s, "ROLLBACK", "rollback migration");
            return rc;
        }
        if ((rc = exec(s, "COMMIT", "commit migration")))
            return rc;
    }
    /* Pre-release databases made before migration 1 lost its per-row FTS
     * trigger would index new passages twice; drop it (a no-op otherwise).
     * Remove once schema 1 ships. */
    return exec(s, "DROP TRIGGER IF EXISTS passages_ai", "drop old trigger");
}

int store_open(struct store **out, const char *path, int flags, char *errmsg, size_t errlen)
{
    struct store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errmsg, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    int oflags = (flags & STORE_READONLY) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &s->db, oflags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int code = (flags & STORE_READONLY) && rc == SQLITE_CANTOPEN ? AISLE_ENOTFOUND : AISLE_EDB;
        snprintf(errmsg, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        sqlite3_close(s->db);
        free(s);
        return code;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 10000);
    /* WAL: readers never wait for the writer; synchronous=FULL: a commit that
     * returned is on disk. A bulk load commits once per file, so the cost is
     * a few fsyncs. mmap: pages already in the OS cache are read without a
     * copy or a system call (1M-review store: search 50 -> 37 ms p50 on its
     * own). The writer's 256 MiB cache (used only as a load grows) holds the
     * product-keyed indexes that 1M reviews insert into at random (sys time
     * 5.4 -> 4.3 s for that file). */
    const char *setup = (flags & STORE_READONLY)
                            ? "PRAGMA foreign_keys=ON; PRAGMA cache_size=-32768; PRAGMA mmap_size=2147418112;"
                            : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                              " PRAGMA cache_size=-262144; PRAGMA temp_store=MEMORY; PRAGMA mmap_size=2147418112;";
    rc = exec(s, setup, "configure database");
    if (!rc && !(flags & STORE_READONLY))
        rc = migrate(s);
    if (!rc) {
        /* A read-only open of a file that is not an Aisle store gets caught here. */
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_master WHERE name='passages'", -1, &st,
                               NULL) != SQLITE_OK) {
            rc = db_fail(s, "read schema");
        } else {
            if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0) != 1)
                rc = fail(s, AISLE_EFORMAT, "not an Aisle store (no schema); create it with 'aisle ingest'");
            sqlite3_finalize(st);
        }
    }
    if (rc) {
        snprintf(errmsg, errlen, "%s: %s", path, s->err);
        store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    for (int i = 0; i < S_COUNT_; i++)
        sqlite3_finalize(s->stmt[i]);
    if (s->db && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(s->db);
    free(s);
}

static int run_simple(struct store *s, enum stmt_id id, const char *what)
{
    sqlite3_stmt *st = stmt(s, id);
    if (!st)
        return AISLE_EDB;
    return step_done(s, st, what);
}

static int store_fts_flush(struct store *s, int at_commit);

int store_begin(struct store *s)
{
    memset(s->fts_pending, 0, sizeof(s->fts_pending));
    return run_simple(s, S_BEGIN, "begin transaction");
}

int store_commit(struct store *s)
{
    int rc = store_fts_flush(s, 1);
    return rc ? rc : run_simple(s, S_COMMIT, "commit");
}

int store_rollback(struct store *s)
{
    memset(s->fts_pending, 0, sizeof(s->fts_pending));
    if (sqlite3_get_autocommit(s->db))
        return 0;
    return run_simple(s, S_ROLLBACK, "rollback");
}

int store_count(struct store *s, const char *table, int64_t *out)
{
    static const char *const tables[] = {"products", "reviews", "questions", "answers", "offers",
                                         "orders", "order_lines", "order_events", "passages"};
    int ok = 0;
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
        if (!strcmp(table, tables[i]))
            ok = 1;
    if (!ok)
        return fail(s, AISLE_EINVAL, "no table '%s'", table);
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, "count");
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return db_fail(s, "count");
    }
    *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

int store_product_exists(struct store *s, const char *id)
{
    sqlite3_stmt *st = stmt(s, S_PRODUCT_EXISTS);
    if (!st)
        return AISLE_EDB;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return db_fail(s, "look up product");
}

static int unknown_product(struct store *s, const char *id, const char *what)
{
    return fail(s, AISLE_ENOTFOUND, "%s names unknown product \"%s\" (load products first)", what, id);
}

static int require_product(struct store *s, const char *id, const char *what)
{
    int rc = store_product_exists(s, id);
    if (rc < 0)
        return rc;
    return rc ? 0 : unknown_product(s, id, what);
}

/* Step the insert or upsert of a row whose foreign key names product id: the
 * key's check is the lookup (no SELECT of our own per row), and its failure,
 * which undoes the statement, is the unknown product. */
static int step_naming_product(struct store *s, sqlite3_stmt *st, const char *id, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return 0;
    }
    rc = sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_FOREIGNKEY ? unknown_product(s, id, what)
                                                                          : db_fail(s, what);
    sqlite3_reset(st);
    return rc;
}

static void now_iso(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The FTS indexes, in enum fts_id order. */
static const char *const fts_names[FTS_COUNT_] = {"catalog_fts", "review_fts", "qa_fts"};

/* Run "INSERT INTO fts(fts[, rank]) VALUES(cmd[, arg])": FTS5's special commands. */
static int fts_command(struct store *s, int i, const char *cmd, int arg)
{
    char sql[160];
    if (arg < 0)
        snprintf(sql, sizeof(sql), "INSERT INTO %s(%s) VALUES('%s')", fts_names[i], fts_names[i], cmd);
    else
        snprintf(sql, sizeof(sql), "INSERT INTO %s(%s, rank) VALUES('%s', %d)", fts_names[i], fts_names[i], cmd,
                 arg);
    return exec(s, sql, "configure search index");
}

/* Rows in FTS index i. */
static int fts_rows(struct store *s, int i, int64_t *out)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s_docsize", fts_names[i]);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, "count indexed passages");
    *out = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return 0;
}

/* Index every passage of this transaction not yet in its FTS index: one
 * INSERT ... SELECT per index, in rowid order. Why not a trigger per row: FTS5
 * (SQLite 3.40) writes its pending terms to disk at every statement savepoint,
 * and every write statement after the first FTS write opens one, so indexing
 * row by row wrote a tiny segment per passage and merged them again (full
 * scale in bench/ingest: products 1,627/s, reviews 4,280/s).
 *
 * At commit, a bulk load (STORE_OPTIMIZE_MIN rows or more, and at least a
 * quarter of the index) is indexed with FTS5's incremental merging off and
 * the index then merged once into one segment ('optimize'): a term lookup seeks
 * once per segment, and a bulk load otherwise leaves dozens (1M reviews: 0.2 ms
 * a lookup before, 0.04 ms after), and merging once instead of level by level
 * saves 15-20 % of the load's CPU. Smaller loads leave merging to automerge.
 * A bulk flush also lets FTS5 hold 64 MiB of pending terms instead of 1 MiB
 * before it writes a segment: each segment repeats the common terms, so 1M
 * reviews were ~100 segments to write and merge and are now a few (full
 * scale: indexing 14.9 -> 9.1 s CPU, the merge 3.3 -> 2.0 s; +33 MiB RSS). */
static int store_fts_flush(struct store *s, int at_commit)
{
    static const enum stmt_id fill[FTS_COUNT_] = {S_FTS_FILL_CATALOG, S_FTS_FILL_REVIEW, S_FTS_FILL_QA};
    for (int i = 0; i < FTS_COUNT_; i++) {
        if (!s->fts_pending[i])
            continue;
        int rc, bulk = 0;
        /* New rowids are consecutive, so this bounds the rows to index. */
        int64_t pending = sqlite3_last_insert_rowid(s->db) - s->fts_pending[i] + 1, total = 0;
        if (at_commit && pending >= STORE_OPTIMIZE_MIN) {
            if ((rc = fts_rows(s, i, &total)))
                return rc;
            bulk = pending * 4 >= total + pending;
        }
        if (bulk && ((rc = fts_command(s, i, "automerge", 0)) || (rc = fts_command(s, i, "crisismerge", 1999)) ||
                     (rc = fts_command(s, i, "hashsize", FTS_BULK_HASH))))
            return rc;
        sqlite3_stmt *st = stmt(s, fill[i]);
        if (!st)
            return AISLE_EDB;
        sqlite3_bind_int64(st, 1, s->fts_pending[i]);
        if ((rc = step_done(s, st, "index passages")))
            return rc;
        s->fts_pending[i] = 0;
        /* Back to FTS5's defaults, then one merge of everything. */
        if (bulk && ((rc = fts_command(s, i, "automerge", 4)) || (rc = fts_command(s, i, "crisismerge", 16)) ||
                     (rc = fts_command(s, i, "hashsize", FTS_HASH)) || (rc = fts_command(s, i, "optimize", -1))))
            return rc;
    }
    return 0;
}

/* Delete the passages of ref_id from one source (or, with source NULL, its
 * catalog passages). The AFTER DELETE trigger takes them out of the FTS index,
 * which is only right for indexed passages, so pending ones are indexed first.
 * Called only for rows that were already there (see the *_NEW statements). */
static int del_passages(struct store *s, const char *ref_id, const char *source, enum fts_id fts)
{
    sqlite3_stmt *st = stmt(s, source ? S_PASSAGE_LAST_ONE : S_PASSAGE_LAST_CATALOG);
    if (!st)
        return AISLE_EDB;
    bind_text(st, 1, ref_id);
    if (source)
        bind_text(st, 2, source);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = db_fail(s, "find passages");
        sqlite3_reset(st);
        return rc;
    }
    int found = sqlite3_column_type(st, 0) != SQLITE_NULL;
    int64_t last = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (!found)
        return 0;
    if (s->fts_pending[fts] && last >= s->fts_pending[fts] && (rc = store_fts_flush(s, 0)))
        return rc;
    if (!(st = stmt(s, source ? S_PASSAGE_DEL_ONE : S_PASSAGE_DEL_CATALOG)))
        return AISLE_EDB;
    bind_text(st, 1, ref_id);
    if (source)
        bind_text(st, 2, source);
    return step_done(s, st, "delete passages");
}

static int add_passage(struct store *s, const char *product_id, const char *source, const char *ref_id, int ord,
                       const char *text, int textlen, const char *aux)
{
    sqlite3_stmt *st = stmt(s, S_PASSAGE_INS);
    if (!st)
        return AISLE_EDB;
    bind_text(st, 1, product_id);
    bind_text(st, 2, source);
    bind_text(st, 3, ref_id);
    sqlite3_bind_int(st, 4, ord);
    sqlite3_bind_text(st, 5, text, textlen, SQLITE_STATIC);
    bind_text(st, 6, aux);
    int rc = step_done(s, st, "insert passage");
    if (rc)
        return rc;
    enum fts_id fts = !strcmp(source, "review") ? FTS_REVIEW : !strcmp(source, "qa") ? FTS_QA : FTS_CATALOG;
    if (!s->fts_pending[fts])
        s->fts_pending[fts] = sqlite3_last_insert_rowid(s->db);
    return 0;
}

/* Append the JSON string literal of str (UTF-8 already validated by the caller). */
static int json_quote(struct buf *b, const char *str)
{
    int rc = buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)str; !rc && *p; p++) {
        switch (*p) {
        case '"': rc = buf_puts(b, "\\\""); break;
        case '\\': rc = buf_puts(b, "\\\\"); break;
        case '\n': rc = buf_puts(b, "\\n"); break;
        case '\r': rc = buf_puts(b, "\\r"); break;
        case '\t': rc = buf_puts(b, "\\t"); break;
        default:
            if (*p < 0x20)
                rc = buf_printf(b, "\\u%04x", *p);
            else
                rc = buf_putc(b, (char)*p);
        }
    }
    return rc ? rc : buf_putc(b, '"');
}

/* Cut a description into passages of about DESC_CHUNK bytes, ending at a
 * sentence end (". ", "! ", "? ") or, failing that, a space. */
static int add_description(struct store *s, const char *pid, const char *desc)
{
    size_t n = strlen(desc), at = 0;
    int ord = 0;
    while (at < n) {
        while (at < n && (desc[at] == ' ' || desc[at] == '\n'))
            at++;
        if (at >= n)
            break;
        size_t end = n;
        if (n - at > DESC_CHUNK) {
            size_t lim = at + DESC_CHUNK, cut = 0;
            for (size_t i = at + DESC_CHUNK / 3; i < lim; i++)
                if ((desc[i] == '.' || desc[i] == '!' || desc[i] == '?') && desc[i + 1] == ' ')
                    cut = i + 1;
            if (!cut)
                for (size_t i = lim; i > at + DESC_CHUNK / 3; i--)
                    if (desc[i] == ' ') {
                        cut = i;
                        break;
                    }
            end = cut ? cut : at + utf8_trim(desc + at, n - at, DESC_CHUNK);
            if (end <= at)
                end = n;
        }
        int rc = add_passage(s, pid, "description", pid, ord++, desc + at, (int)(end - at), NULL);
        if (rc)
            return rc;
        at = end;
    }
    return 0;
}

int store_upsert_product(struct store *s, const struct store_product *p)
{
    struct buf bullets, attrs, line, meta;
    buf_init(&bullets, 0);
    buf_init(&attrs, 0);
    buf_init(&line, 0);
    buf_init(&meta, 0);
    int rc = buf_putc(&bullets, '[');
    for (size_t i = 0; !rc && i < p->nbullets; i++) {
        if (i)
            rc = buf_putc(&bullets, ',');
        if (!rc)
            rc = json_quote(&bullets, p->bullets[i]);
    }
    if (!rc)
        rc = buf_putc(&bullets, ']');
    if (!rc)
        rc = buf_putc(&attrs, '{');
    for (size_t i = 0; !rc && i < p->nattrs; i++) {
        if (i)
            rc = buf_putc(&attrs, ',');
        if (!rc)
            rc = json_quote(&attrs, p->attrs[i].name);
        if (!rc)
            rc = buf_putc(&attrs, ':');
        if (!rc)
            rc = json_quote(&attrs, p->attrs[i].value);
    }
    if (!rc)
        rc = buf_putc(&attrs, '}');
    if (rc) {
        rc = fail(s, rc, "out of memory");
        goto out;
    }

    char now[32];
    now_iso(now);
    int pass;
    for (pass = 0; pass < 2; pass++) {
        sqlite3_stmt *st = stmt(s, pass ? S_PRODUCT_UPSERT : S_PRODUCT_NEW);
        if (!st) {
            rc = AISLE_EDB;
            goto out;
        }
        bind_text(st, 1, p->id);
        bind_text(st, 2, p->title);
        bind_text(st, 3, p->brand);
        bind_text(st, 4, p->category);
        bind_text(st, 5, bullets.data);
        bind_text(st, 6, p->description);
        bind_text(st, 7, attrs.data);
        bind_text(st, 8, now);
        if ((rc = step_done(s, st, "upsert product")))
            goto out;
        if (!pass && sqlite3_changes(s->db))
            break; /* a new product: no passages to replace */
    }
    if (pass && (rc = del_passages(s, p->id, NULL, FTS_CATALOG)))
        goto out;
    if (p->brand)
        buf_puts(&meta, p->brand);
    if (p->category) {
        if (meta.len)
            buf_puts(&meta, " | ");
        buf_puts(&meta, p->category);
    }
    if ((rc = add_passage(s, p->id, "product", p->id, 0, p->title, -1, meta.len ? meta.data : NULL)))
        goto out;
    for (size_t i = 0; i < p->nbullets; i++)
        if (p->bullets[i][0] && (rc = add_passage(s, p->id, "bullet", p->id, (int)i, p->bullets[i], -1, NULL)))
            goto out;
    for (size_t i = 0; i < p->nattrs; i++) {
        buf_reset(&line);
        if (buf_printf(&line, "%s: %s", p->attrs[i].name, p->attrs[i].value)) {
            rc = fail(s, AISLE_ENOMEM, "out of memory");
            goto out;
        }
        if ((rc = add_passage(s, p->id, "attribute", p->id, (int)i, line.data, (int)line.len, NULL)))
            goto out;
    }
    if (p->description && (rc = add_description(s, p->id, p->description)))
        goto out;
out:
    buf_release(&bullets);
    buf_release(&attrs);
    buf_release(&line);
    buf_release(&meta);
    return rc;
}

int store_upsert_review(struct store *s, const struct store_review *r)
{
    int rc, pass;
    for (pass = 0; pass < 2; pass++) {
        sqlite3_stmt *st = stmt(s, pass ? S_REVIEW_UPSERT : S_REVIEW_NEW);
        if (!st)
            return AISLE_EDB;
        bind_text(st, 1, r->id);
        bind_text(st, 2, r->product_id);
        if (r->has_rating)
            sqlite3_bind_double(st, 3, r->rating);
        else
            sqlite3_bind_null(st, 3);
        bind_text(st, 4, r->title);
        bind_opt_int(st, 5, r->helpful_votes);
        bind_text(st, 6, r->date);
        bind_text(st, 7, r->author);
        if ((rc = step_naming_product(s, st, r->product_id, "review")))
            return rc;
        if (!pass && sqlite3_changes(s->db))
            break; /* a new review: no passage to replace */
    }
    if (pass && (rc = del_passages(s, r->id, "review", FTS_REVIEW)))
        return rc;
    /* The text is stored here only (the reviews row has none). */
    return add_passage(s, r->product_id, "review", r->id, 0, r->text, -1, r->title);
}

static int insert_answer(struct store *s, const char *q_id, const char *product_id, const char *question, int ord,
                         const struct store_answer *a)
{
    sqlite3_stmt *st = stmt(s, S_ANSWER_INS);
    if (!st)
        return AISLE_EDB;
    bind_text(st, 1, q_id);
    sqlite3_bind_int(st, 2, ord);
    bind_text(st, 3, a->text);
    bind_opt_int(st, 4, a->votes);
    int rc = step_done(s, st, "insert answer");
    if (rc)
        return rc;
    return add_passage(s, product_id, "qa", q_id, ord, a->text, -1, question);
}

int store_upsert_question(struct store *s, const struct store_question *q)
{
    int rc, pass;
    for (pass = 0; pass < 2; pass++) {
        sqlite3_stmt *st = stmt(s, pass ? S_QUESTION_UPSERT : S_QUESTION_NEW);
        if (!st)
            return AISLE_EDB;
        bind_text(st, 1, q->id);
        bind_text(st, 2, q->product_id);
        bind_text(st, 3, q->question);
        bind_opt_int(st, 4, q->votes);
        bind_text(st, 5, q->date);
        if ((rc = step_naming_product(s, st, q->product_id, "question")))
            return rc;
        if (!pass && sqlite3_changes(s->db))
            break; /* a new question: no answers or passages to replace */
    }
    if (pass) {
        sqlite3_stmt *st = stmt(s, S_ANSWER_DEL);
        if (!st)
            return AISLE_EDB;
        bind_text(st, 1, q->id);
        if ((rc = step_done(s, st, "delete answers")))
            return rc;
        if ((rc = del_passages(s, q->id, "qa", FTS_QA)))
            return rc;
    }
    for (size_t i = 0; i < q->nanswers; i++)
        if ((rc = insert_answer(s, q->id, q->product_id, q->question, (int)i, &q->answers[i])))
            return rc;
    return 0;
}

int store_append_answer(struct store *s, const char *q_id, const char *product_id, const char *question,
                        const struct store_answer *a)
{
    sqlite3_stmt *st = stmt(s, S_ANSWER_NEXT);
    if (!st)
        return AISLE_EDB;
    bind_text(st, 1, q_id);
    int ord = 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        ord = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return insert_answer(s, q_id, product_id, question, ord, a);
}

int store_upsert_offer(struct store *s, const struct store_offer *o)
{
    sqlite3_stmt *st = stmt(s, S_OFFER_UPSERT);
    if (!st)
        return AISLE_EDB;
    bind_text(st, 1, o->product_id);
    bind_text(st, 2, o->seller);
    sqlite3_bind_int64(st, 3, o->price_minor);
    bind_text(st, 4, o->currency);
    sqlite3_bind_int64(st, 5, o->stock);
    bind_opt_int(st, 6, o->delivery_days);
    bind_text(st, 7, o->updated_at);
    return step_naming_product(s, st, o->product_id, "offer");
}

int store_upsert_order(struct store *s, const struct store_order *o)
{
    int rc;
    for (size_t i = 0; i < o->nlines; i++) {
        char what[48];
        snprintf(what, sizeof(what), "order line %zu", i + 1);
        if ((rc = require_product(s, o->lines[i].product_id, what)))
            return rc;
    }
    sqlite3_stmt *st = stmt(s, S_ORDER_UPSERT);
    if (!st)
        return AISLE_EDB;
    bind_text(st, 1, o->id);
    bind_text(st, 2, o->customer);
    bind_text(st, 3, o->created_at);
    bind_text(st, 4, o->currency);
    if ((rc = step_done(s, st, "upsert order")))
        return rc;
    if (!(st = stmt(s, S_ORDER_LINES_DEL)))
        return AISLE_EDB;
    bind_text(st, 1, o->id);
    if ((rc = step_done(s, st, "delete order lines")))
        return rc;
    if (!(st = stmt(s, S_ORDER_EVENTS_DEL)))
        return AISLE_EDB;
    bind_text(st, 1, o->id);
    if ((rc = step_done(s, st, "delete order events")))
        return rc;
    for (size_t i = 0; i < o->nlines; i++) {
        if (!(st = stmt(s, S_ORDER_LINE_INS)))
            return AISLE_EDB;
        bind_text(st, 1, o->id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)i + 1);
        bind_text(st, 3, o->lines[i].product_id);
        sqlite3_bind_int64(st, 4, o->lines[i].quantity);
        bind_opt_int(st, 5, o->lines[i].unit_price_minor);
        if ((rc = step_done(s, st, "insert order line")))
            return rc;
    }
    for (size_t i = 0; i < o->nevents; i++) {
        if (!(st = stmt(s, S_ORDER_EVENT_INS)))
            return AISLE_EDB;
        bind_text(st, 1, o->id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)i + 1);
        bind_text(st, 3, o->events[i].status);
        bind_text(st, 4, o->events[i].at);
        if ((rc = step_done(s, st, "insert order event")))
            return rc;
    }
    return 0;
}

int64_t store_currency_scale(const char *c)
{
    static const char *const zero[] = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
                                       "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"};
    static const char *const three[] = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"};
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
        if (!strcmp(c, zero[i]))
            return 1;
    for (size_t i = 0; i < sizeof(three) / sizeof(three[0]); i++)
        if (!strcmp(c, three[i]))
            return 1000;
    return 100;
}
