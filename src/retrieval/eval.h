/*
 * eval.h — retrieval evaluation over candidate-ranking sets (hetPQA evidence
 * ranking, semiPQA attribute ranking): the tab-separated file reader, the
 * rankers' scores on each question's candidate pool, and the metrics.
 *
 * Design: a set is read whole into questions, each with its pool of labelled
 * candidates (rows grouped by qid in file order). BM25 for a pool uses the
 * collection statistics of the whole file (every candidate row is a document:
 * N, document frequencies, average length; k1 = 1.2, b = 0.75; terms from
 * lex_terms with stop words dropped), so a candidate's score does not depend
 * on which pool it is in. Metrics use binary gains: nDCG@k with the ideal
 * ranking of the pool's own positives, MRR of the first positive, Recall@k =
 * positives in the top k / positives in the pool. Questions whose pool has no
 * positive are skipped (counted in skipped).
 *
 * Files are untrusted: tab-separated with RFC 4180 quoting (a quoted field may
 * hold tabs, doubled quotes and newlines); a header names the columns. Errors
 * name file:line and the column. Caps: EVAL_MAX_RECORD bytes per record,
 * EVAL_MAX_FIELDS fields, EVAL_MAX_ROWS rows.
 *
 * Ownership: a set owns all its strings (eval_set_release).
 * THREAD SAFETY: none shared; one set per thread.
 */
#ifndef AISLE_RETRIEVAL_EVAL_H
#define AISLE_RETRIEVAL_EVAL_H

#include <stddef.h>

#include "core/buf.h"
#include "retrieval/encoder.h"
#include "retrieval/rerank.h"

#define EVAL_MAX_RECORD (1u << 20)
#define EVAL_MAX_FIELDS 64
#define EVAL_MAX_ROWS 2000000

/* Split one record (the bytes of one or more joined lines, no final newline)
 * into fields: unquoted, NUL-terminated, appended to out; offs[i] is field i's
 * start in out. 0 with *nf set; 1 when a quoted field is still open at the end
 * (the record continues on the next line); AISLE_EFORMAT for a quote inside an
 * unquoted field or text after a closing quote (*bad = byte offset);
 * AISLE_ETOOBIG past max fields. */
int eval_tsv_split(const char *s, size_t len, struct buf *out, size_t *offs, size_t max, size_t *nf,
                   size_t *bad);

/* Rows of a file as records, by column name. */
struct eval_table {
    char **cols;      /* (ncols) header names, owned */
    size_t ncols;
    char **cells;     /* (nrows, ncols) owned strings */
    size_t *line;     /* (nrows) first line of each row */
    size_t nrows;
};
/* Read a whole file (gzip or plain). 0, or AISLE_EIO / AISLE_EFORMAT /
 * AISLE_ETOOBIG / AISLE_ENOMEM with "path:line: what" in err. Every row must
 * have as many fields as the header. */
int eval_table_read(struct eval_table *t, const char *path, char *err, size_t errlen);
/* Same, over bytes in memory (name used in messages). */
int eval_table_parse(struct eval_table *t, const char *name, const char *data, size_t len, char *err,
                     size_t errlen);
void eval_table_release(struct eval_table *t);
/* Index of column name, or -1. */
int eval_table_col(const struct eval_table *t, const char *name);

struct eval_cand {
    const char *text;   /* points into the table */
    int label;          /* 0 or 1 */
    enum rr_source source;
};
struct eval_question {
    const char *qid, *question;
    size_t first, n;    /* candidates c[first .. first+n) */
};
struct eval_set {
    struct eval_table t;
    struct eval_question *q; /* (nq) in order of first appearance */
    size_t nq;
    struct eval_cand *c;     /* (nc) grouped by question */
    size_t nc;
};
/* Build a set from a table with columns qid, question, candidate, label (0/1)
 * and optionally source (hetPQA: CQA, Desc, bullet, review, OSP, attribute;
 * none: attribute). Takes over t. 0 or AISLE_EFORMAT naming the row. */
int eval_set_from_table(struct eval_set *s, struct eval_table *t, const char *name, char *err, size_t errlen);
int eval_set_read(struct eval_set *s, const char *path, char *err, size_t errlen);
void eval_set_release(struct eval_set *s);

/* Scores (nc) of every candidate by BM25 (see above). 0 or AISLE_ENOMEM. */
int eval_bm25(const struct eval_set *s, double *score);
/* Cosine (nc) of every candidate with its question under encoder e. */
int eval_dense(const struct eval_set *s, const struct encoder *e, double *score);
/* Fraction of the question's non-stop terms present in each candidate (nc),
 * and each candidate's term count. */
int eval_coverage(const struct eval_set *s, double *coverage, size_t *nterms);

struct eval_metrics {
    double ndcg1, ndcg5, ndcg10, mrr, recall1, recall5; /* means over counted questions */
    size_t questions, skipped;
};
/* Metrics of ranking each pool by score (nc), higher first; ties broken by
 * file order. */
void eval_metrics(const struct eval_set *s, const double *score, struct eval_metrics *m);
/* Metrics of one ranked list of labels (labels[0] is the top), with npos
 * positives in the pool; adds to the sums in m (questions counted). */
void eval_metrics_add(const int *labels, size_t n, size_t npos, struct eval_metrics *m);
/* Divide the sums by the question count. */
void eval_metrics_finish(struct eval_metrics *m);

/* Rank of each candidate within its pool by score (0 = best; ties by file
 * order). 0 or AISLE_ENOMEM. */
int eval_ranks(const struct eval_set *s, const double *score, int *rank);

#endif
