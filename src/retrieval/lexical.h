/*
 * lexical.h — BM25 search over the store's evidence passages (SQLite FTS5).
 *
 * Design: the shopper's text never reaches FTS5's query parser. It is cut into
 * terms the way the index cuts text (Unicode letters and digits, case and
 * diacritics folded), English stop words are dropped, and each term is quoted,
 * so quotes, '-', '*', 'AND', 'NEAR(' in a question are just words. To keep
 * latency bounded on big stores, each term's document frequency is probed once,
 * the rarest terms are OR-ed while their documents fit a row budget, and when
 * every term is common their AND (rarest first) is used instead; at most that
 * budget of rows is scored per source (see lexical.c).
 *
 * Column weights (bm25): catalog title 4 > bullet 2 > attribute 1.5 >
 * description 1 (brand/category 1.5); review title 1.5, text 1; Q&A question 1,
 * answer 1.
 *
 * Ownership: hits and their strings belong to the caller (lex_hits_free).
 * THREAD SAFETY: uses the caller's store connection; one thread per store.
 */
#ifndef AISLE_RETRIEVAL_LEXICAL_H
#define AISLE_RETRIEVAL_LEXICAL_H

#include <stddef.h>

#include "store/store.h"

enum lex_source {
    LEX_PRODUCTS = 1 << 0, /* title, bullets, attributes, description */
    LEX_REVIEWS = 1 << 1,
    LEX_QA = 1 << 2,
    LEX_ALL = LEX_PRODUCTS | LEX_REVIEWS | LEX_QA,
};

#define LEX_MAX_K 1000
#define LEX_MAX_TERMS 32      /* query terms kept (longer questions are cut) */
#define LEX_MAX_QUERY 4096    /* bytes of query text read */

struct lex_hit {
    char *id;         /* stable passage id: "PID:bullet:2", "review:RID", "qa:QID:0" */
    const char *source; /* static: product|bullet|description|attribute|review|qa */
    char *product_id;
    char *title;      /* the product's title, for display */
    char *text;       /* the passage: one bullet, "name: value", one review,
                         "Q: question A: answer" */
    double score;     /* higher is better (negated bm25) */
};

struct lex_query {
    const char *text;       /* the shopper's words, any bytes */
    int sources;            /* LEX_* mask; 0 = all */
    const char *product_id; /* restrict to one product; NULL = whole catalog */
    size_t k;               /* results wanted (1..LEX_MAX_K) */
};

/* Search. 0 with *hits (caller frees with lex_hits_free) and *n set, best first;
 * a negative code with the message in store_errmsg-like err. A query with no
 * searchable words yields 0 hits, not an error. */
int lex_search(struct store *s, const struct lex_query *q, struct lex_hit **hits, size_t *n, char *err,
               size_t errlen);
void lex_hits_free(struct lex_hit *hits, size_t n);

/* Cut text into search terms as described above (exposed for tests and for
 * retrieval's other rankers). Writes up to max NUL-terminated terms into a
 * single allocation *out (free it), returns the count or a negative code. */
int lex_terms(const char *text, size_t len, int drop_stopwords, char ***out, size_t max);
/* 1 if the (folded) word is an English stop word. */
int lex_is_stopword(const char *w);

#endif
