/*
 * ingest.h — load a merchant's files into the store: JSON Lines (plain or gzip)
 * for every kind of record, CSV (RFC 4180, header mapping) for products.
 *
 * Design: one file is one transaction. Every record is parsed and validated in
 * full before anything is written for it; the first bad record rolls the whole
 * file back and reports `file:line: field: what is wrong`, unless skip_bad is set,
 * in which case bad records are reported through on_skip, counted and left out.
 * Upserts are by id, so loading the same file twice leaves the same database.
 * The input format is documented in docs/DATA.md.
 *
 * ingest_file() reads and parses in a thread of its own while the calling
 * thread writes, so a load uses two cores; callbacks (progress, on_skip) run
 * in the calling thread.
 *
 * THREAD SAFETY: uses the caller's store, from the calling thread only; one
 * ingest per store at a time.
 */
#ifndef AISLE_STORE_INGEST_H
#define AISLE_STORE_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#include <jansson.h>

enum ingest_kind {
    INGEST_PRODUCTS,
    INGEST_REVIEWS,
    INGEST_QA,
    INGEST_OFFERS,
    INGEST_ORDERS,
};

/* Field size limits (bytes unless said otherwise); records past them are rejected. */
#define INGEST_MAX_ID 256
#define INGEST_MAX_TITLE 4096
#define INGEST_MAX_SHORT 1024        /* brand, category, seller, author, attribute names */
#define INGEST_MAX_TEXT (256 * 1024) /* description, review and answer text, bullets */
#define INGEST_MAX_ITEMS 1000        /* bullets, attributes, answers, order lines, events */

struct ingest_opts {
    int skip_bad;           /* skip and count bad records instead of failing the file */
    size_t max_line;        /* record size cap; 0 = LINEIO_MAX_LINE_DEFAULT */
    const char *csv_map;    /* products CSV: "field=Column[>Column...],..." (may be NULL) */
    int format_csv;         /* 1: CSV, 0: JSONL, -1: by file name (.csv, .csv.gz) */
    /* Called every few hundred records and at the end; may be NULL. */
    void (*progress)(void *ctx, uint64_t records, uint64_t done_bytes, uint64_t total_bytes);
    /* Called with "file:line: field: what" for each skipped record; may be NULL. */
    void (*on_skip)(void *ctx, const char *msg);
    void *ctx;
};

struct ingest_stats {
    uint64_t loaded;  /* records written */
    uint64_t skipped; /* bad records left out (skip_bad) */
};

/* "products", "reviews", "qa", "offers", "orders". */
const char *ingest_kind_name(enum ingest_kind k);

/* Load one file in one transaction. 0 with *stats set, or a negative code with
 * "file:line: field: what" in err (the database is then exactly as before). */
int ingest_file(struct store *s, enum ingest_kind kind, const char *path, const struct ingest_opts *opts,
                struct ingest_stats *stats, char *err, size_t errlen);

/* Validation of single records that arrive from elsewhere (a merchant's HTTP
 * API), with exactly the checks ingest_file applies. The checker owns scratch
 * for order lines and events; a checked record borrows strings from obj and
 * that scratch until the next check. 0 or AISLE_EFORMAT with "field: what" in
 * ingest_checker_msg(). THREAD SAFETY: one checker per thread. */
struct ingest_checker;
int ingest_checker_new(struct ingest_checker **out);
void ingest_checker_free(struct ingest_checker *k);
const char *ingest_checker_msg(const struct ingest_checker *k);
int ingest_check_offer(struct ingest_checker *k, json_t *obj, struct store_offer *out);
int ingest_check_order(struct ingest_checker *k, json_t *obj, struct store_order *out);

/* 1 when s is a valid ISO 8601 date (YYYY-MM-DD) or date-time
 * (YYYY-MM-DDTHH:MM[:SS[.fff]][Z|+HH:MM]); date-time required when need_time. */
int ingest_iso8601_ok(const char *s, int need_time);

#endif
