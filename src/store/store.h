/*
 * store.h — the store: one SQLite database holding a shop's catalog, reviews,
 * community Q&A, live offers and orders, plus the evidence passages that search
 * and retrieval rank.
 *
 * Design: every write goes through the upsert functions below inside a caller's
 * transaction (store_begin/store_commit), so a file loads all-or-nothing; the
 * passages table and its FTS5 indexes are kept in step by triggers declared in
 * the schema, so no code path can update one without the other. The database runs
 * in WAL mode with a busy timeout; the schema carries a version (PRAGMA
 * user_version) and is migrated forward on open.
 *
 * Passages are the unit of evidence: one per product title, bullet, attribute
 * ("name: value"), description chunk, review, and Q&A answer (with its question).
 * Their public id is stable across re-ingests: see store_passage_id().
 *
 * Ownership: struct store owns its sqlite3 handle and prepared statements.
 * Record structs passed to upserts are borrowed for the call only.
 *
 * THREAD SAFETY: one struct store (one SQLite connection) per thread. Many
 * threads and processes may open the same file; WAL lets readers run while one
 * writer writes.
 */
#ifndef AISLE_STORE_STORE_H
#define AISLE_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

struct sqlite3;
struct store;

#define STORE_SCHEMA_VERSION 3

enum store_open_flags {
    STORE_READONLY = 1 << 0, /* open an existing database read-only */
};

/* Open (creating and migrating when writable) the database at path.
 * 0 with *out set, or AISLE_EDB / AISLE_ENOMEM / AISLE_ENOTFOUND (read-only and
 * missing) with a message in *errmsg (static buffer of the failed open, copy it). */
int store_open(struct store **out, const char *path, int flags, char *errmsg, size_t errlen);
/* Close; NULL is a no-op. An open transaction is rolled back. */
void store_close(struct store *s);
/* Last error text of this store (never NULL). */
const char *store_errmsg(const struct store *s);
/* The underlying connection, for retrieval's read-only queries. Owned by s. */
struct sqlite3 *store_db(struct store *s);

/* Transactions: BEGIN IMMEDIATE (takes the write lock up front), COMMIT, ROLLBACK. */
int store_begin(struct store *s);
int store_commit(struct store *s);
int store_rollback(struct store *s);

/* Row count of one of the public tables (products, reviews, questions, answers,
 * offers, orders, order_lines, order_events, passages). AISLE_EINVAL for others. */
int store_count(struct store *s, const char *table, int64_t *out);
/* 1 if a product with this id exists, 0 if not, negative on error. */
int store_product_exists(struct store *s, const char *id);

struct store_attr {
    const char *name;
    const char *value;
};

struct store_product {
    const char *id, *title;       /* required */
    const char *brand, *category; /* optional (NULL); category is a path "A > B > C" */
    const char *description;      /* optional */
    const char **bullets;         /* (nbullets) */
    size_t nbullets;
    const struct store_attr *attrs; /* (nattrs) */
    size_t nattrs;
};

struct store_review {
    const char *id, *product_id, *text; /* required */
    const char *title, *date, *author;  /* optional (NULL) */
    double rating;                      /* 0 when absent */
    int has_rating;
    int64_t helpful_votes;              /* -1 when absent */
};

struct store_answer {
    const char *text;
    int64_t votes; /* -1 when absent */
};

struct store_question {
    const char *id, *product_id, *question; /* required */
    const char *date;                       /* optional */
    int64_t votes;                          /* -1 when absent */
    const struct store_answer *answers;     /* (nanswers) */
    size_t nanswers;
};

struct store_offer {
    const char *product_id, *seller, *currency, *updated_at; /* required */
    int64_t price_minor;   /* price in the currency's minor unit (cents) */
    int64_t stock;         /* units available, >= 0 */
    int64_t delivery_days; /* promised days to deliver; -1 when absent */
};

struct store_order_line {
    const char *product_id;
    int64_t quantity;
    int64_t unit_price_minor; /* -1 when absent */
};

struct store_order_event {
    const char *status, *at;
};

struct store_order {
    const char *id, *customer, *created_at; /* required */
    const char *currency;                   /* optional */
    const struct store_order_line *lines;   /* (nlines) */
    size_t nlines;
    const struct store_order_event *events; /* (nevents), oldest first */
    size_t nevents;
};

/* Insert or replace by id (offers by product_id + seller). The product's (or
 * review's, question's) passages are replaced with it. Reviews, questions, offers
 * and order lines must name an existing product: AISLE_ENOTFOUND otherwise.
 * 0 or a negative code with store_errmsg set. */
int store_upsert_product(struct store *s, const struct store_product *p);
int store_upsert_review(struct store *s, const struct store_review *r);
int store_upsert_question(struct store *s, const struct store_question *q);
/* Add one more answer to question q_id (already upserted in this transaction). */
int store_append_answer(struct store *s, const char *q_id, const char *product_id,
                        const char *question, const struct store_answer *a);
int store_upsert_offer(struct store *s, const struct store_offer *o);
int store_upsert_order(struct store *s, const struct store_order *o);

/* Number of minor units in one major unit for an ISO 4217 code (100 for USD,
 * 1 for JPY, 1000 for KWD). */
int64_t store_currency_scale(const char *currency);

#endif
