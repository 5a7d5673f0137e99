/*
 * evidence.h — the evidence the assistant puts in its prompt for one question:
 * product resolution (resolve.h) + source routing (route.h) + search over the
 * resolved products' passages (or the catalog for a broad question) + live store
 * facts (shop.h), assembled under a token budget.
 *
 * Assembly: candidates are scored by their search score normalised within their
 * source, times the router's score for that source (with a floor, so a strong
 * passage from an unrouted source can still win a place); they are taken
 * greedily under per-source and per-product quotas sized by the route scores
 * and the number of products, skipping exact and near duplicates (word
 * 3-shingle Jaccard >= EVIDENCE_NEAR_DUP) and anything that would pass the
 * budget. Live facts (offers, delivery to a postcode, an order's status) come
 * first when the router sends the question to the store APIs; each carries
 * as_of and is marked stale when the live source failed and the shop's last
 * known value was used. The selected passages are then ordered by a key that
 * depends only on the passages themselves (live facts, then catalog, Q&A,
 * reviews; then passage id), so identical evidence always gets identical [n].
 *
 * Token counts: the caller's counter when given (the model's tokenizer), else
 * EVIDENCE_BYTES_PER_TOKEN bytes per token rounded up, plus
 * EVIDENCE_LINE_OVERHEAD tokens per passage for "[n] (source, product id) ".
 *
 * Ownership: struct evidence owns its passages and their strings
 * (evidence_release). The store, router, hybrid searcher and shop are borrowed
 * for the call. THREAD SAFETY: one call per store connection (and shop) at a
 * time; a route_model may be shared.
 */
#ifndef AISLE_RETRIEVAL_EVIDENCE_H
#define AISLE_RETRIEVAL_EVIDENCE_H

#include <stddef.h>

#include "retrieval/resolve.h"
#include "retrieval/route.h"
#include "store/shop.h"
#include "store/store.h"

#define EVIDENCE_DEFAULT_BUDGET 1024 /* tokens */
#define EVIDENCE_DEFAULT_MAX 12      /* passages */
#define EVIDENCE_MAX_PASSAGES 64
#define EVIDENCE_BYTES_PER_TOKEN 4   /* English text in a byte-level BPE: ~4 bytes a token */
#define EVIDENCE_LINE_OVERHEAD 8     /* tokens of "[n] (source, product id) " */
#define EVIDENCE_MAX_TEXT 1200       /* bytes of one passage kept (cut at a word) */
#define EVIDENCE_NEAR_DUP 0.6        /* shingle Jaccard at or above which a passage is a duplicate */

struct evidence_passage {
    int cite;           /* [n], 1-based, in output order */
    char *id;           /* stable passage id: "PID:bullet:2", "review:RID", "qa:QID:0", "offer:PID" ... */
    const char *source; /* static: product|bullet|attribute|description|review|qa|offer|delivery|order */
    char *product_id;   /* "" for an order */
    char *text;
    double score;       /* assembly score (relevance x route); live facts 1 */
    size_t tokens;      /* counted or estimated, line overhead included */
    char as_of[40];     /* live facts: when the source said so; "" otherwise */
    int stale;          /* live facts: 1 when this is the last known value */
};

/* A function that counts the tokens of text (e.g. the model's tokenizer):
 * >= 0, or negative to fall back to the estimate. */
typedef long (*evidence_count_fn)(const char *text, size_t len, void *ctx);

struct hybrid;

struct evidence_opts {
    const struct route_model *router; /* NULL: the keyword baseline */
    struct hybrid *hybrid; /* BM25 + dense + rerank over the same store (hybrid.h); NULL: BM25 alone */
    int broad_hybrid;      /* 1: a broad question's catalog-wide search is hybrid too (a full
                              vector scan); 0: BM25 there, hybrid for product searches */
    int sources;        /* 0: as routed; else a mask of 1 << ROUTE_* forcing the sources (ablations) */
    struct shop *shop;  /* NULL: no live facts */
    const char *postcode;  /* for a delivery estimate; NULL: none */
    size_t budget;      /* tokens; 0 = EVIDENCE_DEFAULT_BUDGET */
    size_t max_passages; /* 0 = EVIDENCE_DEFAULT_MAX; at most EVIDENCE_MAX_PASSAGES */
    evidence_count_fn count; /* NULL: the estimate */
    void *count_ctx;
};

struct evidence {
    struct resolution res;
    struct route route;
    struct evidence_passage *v; /* (n) owned, in citation order */
    size_t n;
    size_t tokens;              /* sum of v[].tokens, <= budget */
    size_t budget;
    size_t dropped_dup;         /* candidates skipped as duplicates */
};

/* Build the evidence for question (any bytes) asked on page_product (NULL: no
 * page) in conversation conv (NULL: first turn). 0 with *out filled (release
 * it); AISLE_ENOTFOUND for an unknown page product; AISLE_EDB, AISLE_ENOMEM,
 * AISLE_EINVAL; message in err. Store-API failures are not errors: they become
 * stale or "unavailable" passages. */
int evidence_build(struct store *s, const char *question, const char *page_product, const struct resolve_conv *conv,
                   const struct evidence_opts *opts, struct evidence *out, char *err, size_t errlen);
void evidence_release(struct evidence *e);

/* Word 3-shingle Jaccard similarity of two texts (case-folded words), 0..1;
 * texts under 3 words compare their word sets. Negative on allocation failure. */
double evidence_similarity(const char *a, const char *b);

#endif
