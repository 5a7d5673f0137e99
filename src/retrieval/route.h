/*
 * route.h — source routing: which evidence sources a shopper's question needs.
 *
 * Four sources: the catalog (title, bullets, attributes, description), reviews
 * (experience and opinion), community Q&A (compatibility and usage) and the
 * store APIs (price, stock, delivery, orders). The router is a multi-label
 * logistic regression over hashed features of the question — words, bigrams,
 * the question word, digits and units — trained in C from labelled questions
 * (hetPQA, semiPQA, a hand-written store-API set; docs/EVIDENCE.md) and shipped
 * as a small binary file (models/router.bin). Training is deterministic: same
 * data and options, same bytes. A keyword baseline (route_keyword) is kept for
 * comparison and as the fallback when no model is given.
 *
 * Model file (little-endian): "AISLERTR", u32 version (1), u32 nsrc (4),
 * u32 nbuckets (power of two, ROUTE_MIN..ROUTE_MAX_BUCKETS), u32 reserved (0),
 * f32 threshold[nsrc], f32 bias[nsrc], f32 w[nsrc][nbuckets], u64 FNV-1a of
 * every byte before it. The reader checks every field, the exact size, that
 * every float is finite and bounded, and the checksum.
 *
 * Ownership: a route_model is owned by its creator (route_model_free); a
 * route_set owns its question strings. THREAD SAFETY: a loaded model is
 * read-only and may be shared by any number of threads; route_train and
 * route_set_* use only their arguments.
 */
#ifndef AISLE_RETRIEVAL_ROUTE_H
#define AISLE_RETRIEVAL_ROUTE_H

#include <stddef.h>
#include <stdint.h>

enum route_src { ROUTE_CATALOG, ROUTE_REVIEWS, ROUTE_QA, ROUTE_API, ROUTE_NSRC };

#define ROUTE_MIN_BUCKETS 16u
#define ROUTE_MAX_BUCKETS (1u << 20)
#define ROUTE_MAX_FEATURES 128 /* features taken from one question */
#define ROUTE_MAX_EXAMPLES 1000000
#define ROUTE_MAX_LINE 65536

/* "catalog", "reviews", "qa", "api". */
extern const char *const route_src_names[ROUTE_NSRC];
/* The source index of a name, or -1. */
int route_src_parse(const char *name);

struct route {
    double score[ROUTE_NSRC]; /* usefulness in [0, 1] (a probability for the model) */
    int use[ROUTE_NSRC];      /* 1: route here (score >= the source's threshold) */
};

struct route_model;

/* Read and validate a model file. 0; AISLE_EIO (cannot read), AISLE_EFORMAT
 * (bad magic, version, sizes, values or checksum), AISLE_ETOOBIG, AISLE_ENOMEM;
 * detail with the path in err. */
int route_model_load(struct route_model **out, const char *path, char *err, size_t errlen);
/* The same checks over bytes in memory (the fuzz target's entry). */
int route_model_parse(struct route_model **out, const void *data, size_t len, char *err, size_t errlen);
/* Write the model (to path.tmp, then renamed). 0 or AISLE_EIO. */
int route_model_save(const struct route_model *m, const char *path, char *err, size_t errlen);
void route_model_free(struct route_model *m); /* NULL ok */
uint32_t route_model_buckets(const struct route_model *m);

/* Route a question: the model's scores, or route_keyword's when m is NULL.
 * Any bytes are a valid question. 0, or AISLE_ENOMEM. */
int route_question(const struct route_model *m, const char *text, struct route *out);
/* The keyword baseline: fixed word lists per source; catalog when none fires. */
int route_keyword(const char *text, struct route *out);

/* The features of a question, each passed to fn as a NUL-terminated string
 * ("w:fit", "b:fit_my", "q:does", "u:v", "d:num", ...). 0 or AISLE_ENOMEM. */
int route_each_feature(const char *text, void (*fn)(const char *feat, void *ctx), void *ctx);
/* The model's weight for one feature string and source (hash collisions
 * included), for reports of what it learned. */
double route_feature_weight(const struct route_model *m, int src, const char *feat);

/* ---- labelled data ---- */

struct route_example {
    char *q;         /* owned */
    unsigned labels; /* bit s set: source s answers it */
};

struct route_set {
    struct route_example *v; /* (n) owned */
    size_t n, cap;
};

void route_set_init(struct route_set *s);
void route_set_release(struct route_set *s);
/* Append the examples of a JSON Lines file (gzip or plain): one object per line
 * {"q": TEXT, "sources": ["catalog"|"reviews"|"qa"|"api", ...]}; objects with a
 * "_comment" key and blank lines are skipped. A bad line fails with
 * "path:line: what" in err (AISLE_EFORMAT). */
int route_set_read(struct route_set *s, const char *path, char *err, size_t errlen);
/* Split deterministically: 1 when the question is in the held-out pct percent
 * (FNV-1a 64 of its bytes mod 100 < pct). */
int route_heldout(const char *q, int pct);

struct route_train_opts {
    uint32_t nbuckets; /* default 16384 */
    int epochs;        /* default 12 */
    double lr;         /* default 0.3, decayed as lr / (1 + epoch) */
    double l2;         /* default 1e-4 */
    uint64_t seed;     /* example order; default 1 */
};

/* Train on the examples of set for which keep(q) is 1 (keep NULL: all).
 * Deterministic. 0 or AISLE_EINVAL (no examples, bad options) / AISLE_ENOMEM. */
int route_train(struct route_model **out, const struct route_set *set, int (*keep)(const char *q, void *ctx),
                void *ctx, const struct route_train_opts *opts, char *err, size_t errlen);

/* Evaluation counts, per source. */
struct route_eval {
    size_t n, exact;                         /* examples, all four decisions right */
    size_t tp[ROUTE_NSRC], fp[ROUTE_NSRC], fn[ROUTE_NSRC], tn[ROUTE_NSRC];
};
void route_eval_add(struct route_eval *e, unsigned gold, const struct route *pred);
/* F1 of one source (0 when undefined); micro-F1 over all sources; macro-F1 over
 * the sources that have a gold positive. */
double route_eval_f1(const struct route_eval *e, int src);
double route_eval_micro_f1(const struct route_eval *e);
double route_eval_macro_f1(const struct route_eval *e);

#endif
