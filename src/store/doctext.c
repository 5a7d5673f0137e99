/*
 * doctext.c — the store's text as documents for a training corpus (contract
 * and text layout in doctext.h). One read-only query per kind, ordered by id;
 * Q&A rows come one per answer and are grouped by question here.
 */
#include "store/doctext.h"

#include "core/buf.h"
#include "core/error.h"
#include "store/store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#define DOC_MAX (16u << 20) /* one document's bytes: far above any real product, review or question */

static const char *const count_sql[] = {
    [STORE_DOC_CATALOG] = "SELECT count(*) FROM products",
    [STORE_DOC_REVIEW] = "SELECT count(*) FROM reviews",
    [STORE_DOC_QA] = "SELECT count(*) FROM questions",
};

static const char *const each_sql[] = {
    [STORE_DOC_CATALOG] =
        "SELECT p.title, p.brand, p.category,"
        " (SELECT group_concat('- ' || value, char(10)) FROM json_each(p.bullets)),"
        " (SELECT group_concat(key || ': ' || value, char(10)) FROM json_each(p.attributes)),"
        " p.description FROM products p ORDER BY p.id",
    [STORE_DOC_REVIEW] =
        "SELECT (SELECT title FROM products WHERE id = r.product_id), r.rating, r.title, ps.text"
        " FROM reviews r JOIN passages ps ON ps.ref_id = r.id AND ps.source = 'review' ORDER BY r.id",
    [STORE_DOC_QA] =
        "SELECT q.id, (SELECT title FROM products WHERE id = q.product_id), q.question, a.text"
        " FROM questions q LEFT JOIN answers a ON a.question_id = q.id ORDER BY q.id, a.ord",
};

static int db_fail(struct store *s, const char *what, char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "store documents (%s): %s", what, sqlite3_errmsg(store_db(s)));
    return AISLE_EDB;
}

int store_docs_count(struct store *s, enum store_doc_kind kind, int64_t *out, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if ((unsigned)kind > STORE_DOC_QA)
        return AISLE_EINVAL;
    if (sqlite3_prepare_v2(store_db(s), count_sql[kind], -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, "count", err, errlen);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return db_fail(s, "count", err, errlen);
    }
    *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

static const char *col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t && *t ? (const char *)t : NULL;
}

/* Append "prefix" + text + "\n" when text is present. */
static int line(struct buf *b, const char *prefix, const char *text)
{
    if (!text)
        return 0;
    int rc = buf_puts(b, prefix);
    if (!rc)
        rc = buf_puts(b, text);
    if (!rc)
        rc = buf_putc(b, '\n');
    return rc;
}

/* The document text without its last newline. */
static int emit(struct buf *b, int (*fn)(void *, const char *, size_t), void *ctx)
{
    if (b->len && b->data[b->len - 1] == '\n')
        b->data[--b->len] = 0;
    return fn(ctx, b->len ? b->data : "", b->len);
}

int store_docs_each(struct store *s, enum store_doc_kind kind, int (*fn)(void *ctx, const char *text, size_t len),
                    void *ctx, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    struct buf b, qid;
    int rc = 0, step, have_q = 0;
    if ((unsigned)kind > STORE_DOC_QA)
        return AISLE_EINVAL;
    buf_init(&b, DOC_MAX);
    buf_init(&qid, 4096);
    if (sqlite3_prepare_v2(store_db(s), each_sql[kind], -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, "prepare", err, errlen);
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        int wr = 0;
        if (kind == STORE_DOC_CATALOG) {
            buf_reset(&b);
            wr = line(&b, "", col(st, 0));
            wr = wr ? wr : line(&b, "Brand: ", col(st, 1));
            wr = wr ? wr : line(&b, "Category: ", col(st, 2));
            wr = wr ? wr : line(&b, "", col(st, 3));
            wr = wr ? wr : line(&b, "", col(st, 4));
            wr = wr ? wr : line(&b, "", col(st, 5));
        } else if (kind == STORE_DOC_REVIEW) {
            buf_reset(&b);
            wr = line(&b, "Review of ", col(st, 0));
            if (!wr && sqlite3_column_type(st, 1) != SQLITE_NULL)
                wr = buf_printf(&b, "Rating: %g/5\n", sqlite3_column_double(st, 1));
            wr = wr ? wr : line(&b, "", col(st, 2));
            wr = wr ? wr : line(&b, "", col(st, 3));
        } else {
            const char *id = col(st, 0);
            id = id ? id : "";
            if (!have_q || strcmp(qid.data ? qid.data : "", id)) {
                if (have_q && (rc = emit(&b, fn, ctx)))
                    goto out;
                have_q = 1;
                buf_reset(&qid);
                buf_reset(&b);
                wr = buf_puts(&qid, id);
                wr = wr ? wr : line(&b, "Product: ", col(st, 1));
                wr = wr ? wr : line(&b, "Question: ", col(st, 2));
            }
            wr = wr ? wr : line(&b, "Answer: ", col(st, 3));
        }
        if (wr) {
            rc = wr;
            if (err && errlen)
                snprintf(err, errlen, "store documents: a document over %u bytes or out of memory", DOC_MAX);
            goto out;
        }
        if (kind != STORE_DOC_QA && (rc = emit(&b, fn, ctx)))
            goto out;
    }
    if (step != SQLITE_DONE) {
        rc = db_fail(s, "read", err, errlen);
        goto out;
    }
    if (have_q)
        rc = emit(&b, fn, ctx);
out:
    sqlite3_finalize(st);
    buf_release(&b);
    buf_release(&qid);
    return rc;
}
