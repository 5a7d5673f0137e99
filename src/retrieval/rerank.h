/*
 * rerank.h — the reranker of hybrid retrieval: a logistic-regression model over
 * a few features of a (question, passage) pair, and its trainer.
 *
 * Design: features are cheap to compute from what fusion already has — the
 * BM25 score relative to the best in the pool and its rank, the dense cosine
 * and its rank, the fraction of the question's (non-stop) terms the passage
 * holds, the passage length, and a one-hot of its source — so rescoring 50
 * candidates costs microseconds. Learned fusion is the same model restricted
 * to the four score/rank features (RR_FUSION_FEATS). The shipped weights
 * (rr_shipped) use the six core features, not the source one-hot: in the
 * labelled sets a source's prior mostly reflects how big its pools are (all
 * semiPQA candidates are attributes, 1 in 14 relevant), which would not carry
 * over to a store. They were fitted by `aisle eval retrieval --fit` on hetPQA
 * evidence-ranking dev and semiPQA attribute-ranking dev (docs/RETRIEVAL.md);
 * the evaluation itself reports cross-validated numbers (folds by question),
 * and testseen is held out from the shipped fit.
 *
 * Ownership: plain values; nothing allocated except by rr_fit's caller.
 * THREAD SAFETY: all functions are pure; rr_shipped is read-only.
 */
#ifndef AISLE_RETRIEVAL_RERANK_H
#define AISLE_RETRIEVAL_RERANK_H

#include <stddef.h>

enum rr_source { RR_PRODUCT, RR_BULLET, RR_ATTRIBUTE, RR_DESCRIPTION, RR_REVIEW, RR_QA, RR_NSOURCES };

#define RR_FUSION_FEATS 4 /* learned fusion: BM25 and dense scores and ranks */
#define RR_CORE_FEATS 6   /* the shipped reranker: fusion + coverage + length */
#define RR_NFEAT (RR_CORE_FEATS + RR_NSOURCES) /* + a one-hot source prior */

struct rr_input {
    double bm25;     /* the candidate's BM25 score (0 when BM25 did not find it) */
    double bm25_max; /* the best BM25 score among the candidates */
    int bm25_rank;   /* 0-based rank by BM25; -1 when not found */
    double cosine;   /* dense cosine, -1..1 */
    int dense_rank;  /* 0-based rank by cosine; -1 when not among the dense candidates */
    double coverage; /* fraction of the question's non-stop terms in the passage, 0..1 */
    size_t nterms;   /* terms in the passage */
    enum rr_source source;
};

struct rr_model {
    int nfeat;            /* RR_NFEAT, or RR_FUSION_FEATS for learned fusion */
    float w[RR_NFEAT + 1]; /* weights, then the bias */
};

extern const struct rr_model rr_shipped;

/* x (RR_NFEAT) from in. */
void rr_features(const struct rr_input *in, float *x);
/* The model's logit for features x (its first m->nfeat are used). */
double rr_score(const struct rr_model *m, const float *x);
/* Fit m (nfeat features of x (n, RR_NFEAT), labels y 0/1) by full-batch
 * gradient descent on the L2-regularized log loss (iters steps, deterministic).
 * 0, or AISLE_EINVAL for n == 0 or a bad nfeat. */
int rr_fit(struct rr_model *m, int nfeat, const float *x, const int *y, size_t n, int iters, double l2);
/* enum from a store source name (product|bullet|attribute|description|review|qa);
 * RR_DESCRIPTION for anything else. */
enum rr_source rr_source_of(const char *name);

#endif
