/*
 * hybrid.h — hybrid evidence search: BM25 (lexical.h) plus dense vectors
 * (dense.h), fused by reciprocal-rank fusion, then reranked.
 *
 * Design: for each source asked for (products, reviews, Q&A), the BM25
 * candidates and the dense candidates (exact int8 dot over the store's passage
 * vectors, in memory) are fused by reciprocal-rank fusion (score = sum over the
 * two rankers of 1 / (60 + rank)); the best fused candidates are then rescored
 * by a small learned linear reranker over features of each (query, passage)
 * pair (BM25 score, dense cosine, coverage of the query's terms, source) — see
 * rerank.h and docs/RETRIEVAL.md. Hits use lexical.h's struct so a caller
 * switches from lex_search to hybrid_search with one line.
 *
 * The query encoder is the one stored in the store (`aisle embed index` puts
 * it there with the vectors), so queries and passages are always encoded by
 * the same model. A store without vectors cannot be opened for hybrid search
 * (AISLE_ENOTFOUND, "run aisle embed index").
 *
 * Ownership: struct hybrid borrows the store for its lifetime (the caller
 * closes the store after hybrid_free) and owns the encoder and the in-memory
 * vectors (about 132 bytes per passage). Hits belong to the caller
 * (lex_hits_free).
 *
 * THREAD SAFETY: one struct hybrid per thread, like its store connection. The
 * vectors are reloaded in hybrid_search when another connection changed the
 * store (PRAGMA data_version), so a long-lived searcher sees new ingests.
 */
#ifndef AISLE_RETRIEVAL_HYBRID_H
#define AISLE_RETRIEVAL_HYBRID_H

#include <stddef.h>

#include "retrieval/lexical.h"
#include "store/store.h"

struct hybrid;

enum hybrid_flags {
    HYBRID_NO_DENSE = 1 << 0,     /* BM25 candidates only (ablation) */
    HYBRID_NO_LEXICAL = 1 << 1,   /* dense candidates only (ablation) */
    HYBRID_NO_RERANK = 1 << 2,    /* fused order, no reranker */
};

struct hybrid_opts {
    int flags;          /* HYBRID_* */
    size_t candidates;  /* per source and per ranker; 0 = 50 (at most LEX_MAX_K) */
    size_t rerank_top;  /* fused candidates the reranker rescores; 0 = 50 */
    /* Without a product filter, reviews or Q&A with more vectors than this
     * (0 = 200,000) are not scanned whole: their dense candidates come from
     * the passages of the products the candidates so far come from (the
     * catalog's, then the source's own BM25 hits; 20 products at most). The
     * catalog is always scanned whole. SIZE_MAX: scan every source whole. */
    size_t scan_max;
};

/* A searcher over store s (borrowed; must outlive the searcher). opts may be
 * NULL (defaults). Loads the store's encoder and vectors. 0 with *out set;
 * AISLE_ENOTFOUND when the store has no encoder/vectors (message says to run
 * `aisle embed index`), AISLE_EFORMAT for a corrupt stored encoder, AISLE_EDB,
 * AISLE_ENOMEM; the message goes to err. */
int hybrid_open(struct hybrid **out, struct store *s, const struct hybrid_opts *opts, char *err, size_t errlen);
void hybrid_free(struct hybrid *h);

/* Same contract as lex_search (query, sources, product filter, k; hits best
 * first, freed with lex_hits_free; no searchable words and no dense signal
 * gives 0 hits). Scores are the reranker's (or the fused score with
 * HYBRID_NO_RERANK): higher is better, comparable within one call only. */
int hybrid_search(struct hybrid *h, const struct lex_query *q, struct lex_hit **hits, size_t *n, char *err,
                  size_t errlen);

/* Number of passage vectors the searcher holds now (after the last refresh). */
size_t hybrid_nvectors(const struct hybrid *h);

#endif
