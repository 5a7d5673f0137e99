/*
 * doctext.h — the store's text as whole documents, for building a language
 * model's training corpus: one document per product (catalog), per review,
 * and per question with its answers (Q&A).
 *
 * Design: read-only queries over the store's own tables, ordered by id, so
 * a store gives the same documents in the same order every time. The text
 * layout of each kind is fixed here (and documented in docs/TRAIN.md):
 *   catalog  "TITLE\nBrand: B\nCategory: C\n- bullet\n...\nname: value\n...\nDESCRIPTION"
 *            (lines whose field is absent are left out)
 *   review   "Review of PRODUCT TITLE\nRating: 4/5\nREVIEW TITLE\nTEXT"
 *   qa       "Product: PRODUCT TITLE\nQuestion: Q\nAnswer: A1\nAnswer: A2..."
 *
 * Ownership: the text handed to the callback is valid for the call only.
 *
 * THREAD SAFETY: uses the caller's struct store (one connection per thread).
 */
#ifndef AISLE_STORE_DOCTEXT_H
#define AISLE_STORE_DOCTEXT_H

#include <stddef.h>
#include <stdint.h>

struct store;

enum store_doc_kind { STORE_DOC_CATALOG = 0, STORE_DOC_REVIEW = 1, STORE_DOC_QA = 2 };

/* Documents of kind in the store (products, reviews or questions). 0 or AISLE_EDB with detail in err. */
int store_docs_count(struct store *s, enum store_doc_kind kind, int64_t *out, char *err, size_t errlen);
/* Call fn(ctx, text, len) for every document of kind, in id order (text is
 * NUL-terminated). Stops at fn's first nonzero return and returns it; else 0,
 * AISLE_ENOMEM or AISLE_EDB with detail in err. */
int store_docs_each(struct store *s, enum store_doc_kind kind, int (*fn)(void *ctx, const char *text, size_t len),
                    void *ctx, char *err, size_t errlen);

#endif
