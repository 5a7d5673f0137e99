/*
 * hybrid.c — BM25 + dense candidates per source, reciprocal-rank fusion, then
 * the learned reranker (see hybrid.h).
 *
 * Per source asked for: up to `candidates` BM25 hits (lex_search) and up to
 * `candidates` dense hits (the whole source; the product's own passages with
 * a product filter; for reviews or Q&A bigger than scan_max, the passages of
 * the products the candidates so far come from) are merged by passage id; each candidate's fused
 * score is sum 1/(61 + rank) over the rankers that found it (rank 0-based).
 * The best `rerank_top` fused candidates over all sources are rescored by
 * rr_shipped on their features; the rest keep their fused order below them.
 */
#include "retrieval/hybrid.h"

#include "core/buf.h"
#include "core/error.h"
#include "retrieval/dense.h"
#include "retrieval/encoder.h"
#include "retrieval/rerank.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CANDIDATES 50
#define DEFAULT_RERANK 50
#define DEFAULT_SCAN_MAX 200000 /* review or Q&A vectors: ~2.5 ms of int8 scan here */
#define RRF_K 61.0

struct hybrid {
    struct store *s;
    struct encoder *enc;
    struct dense_index *ix;
    struct hybrid_opts o;
    sqlite3_stmt *get;  /* a passage by rowid, with its product's title */
    sqlite3_stmt *prod; /* a product's passage rowids */
    sqlite3_stmt *prod_src; /* a product's passage rowids of one source */
    float *qv;          /* (D) the query embedding */
    float *cv;          /* (D) a candidate's embedding */
    struct dense_hit *dh; /* (LEX_MAX_K) */
    int64_t *ids;       /* a product's passage ids */
    size_t nids_cap;
};

struct cand {
    struct lex_hit h;
    double bm25;
    int rb; /* BM25 rank in its source, -1: not found */
    double cos;
    int rd; /* dense rank in its source, -1: not found */
    int has_cos;
    double fused, final;
};

static const int src_bits[3] = {LEX_PRODUCTS, LEX_REVIEWS, LEX_QA};

int hybrid_open(struct hybrid **out, struct store *s, const struct hybrid_opts *opts, char *err, size_t errlen)
{
    struct hybrid *h = calloc(1, sizeof(*h));
    int rc = AISLE_ENOMEM;
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    h->s = s;
    if (opts)
        h->o = *opts;
    if (!h->o.candidates)
        h->o.candidates = DEFAULT_CANDIDATES;
    if (h->o.candidates > LEX_MAX_K)
        h->o.candidates = LEX_MAX_K;
    if (!h->o.rerank_top)
        h->o.rerank_top = DEFAULT_RERANK;
    if (!h->o.scan_max)
        h->o.scan_max = DEFAULT_SCAN_MAX;
    if ((rc = dense_get_encoder(s, &h->enc, err, errlen)) || (rc = dense_index_load(&h->ix, s, err, errlen)))
        goto fail;
    sqlite3 *db = store_db(s);
    if (sqlite3_prepare_v2(db,
                           "SELECT p.source, p.product_id, p.ref_id, p.ord, p.text, p.aux, pr.title FROM passages p"
                           " LEFT JOIN products pr ON pr.id = p.product_id WHERE p.id = ?1",
                           -1, &h->get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT id, source FROM passages WHERE product_id = ?1", -1, &h->prod, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT id, source FROM passages WHERE product_id = ?1 AND source = ?2", -1,
                           &h->prod_src, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "hybrid: %s", sqlite3_errmsg(db));
        rc = AISLE_EDB;
        goto fail;
    }
    h->qv = malloc((size_t)h->enc->D * sizeof(float));
    h->cv = malloc((size_t)h->enc->D * sizeof(float));
    h->dh = malloc(LEX_MAX_K * sizeof(*h->dh));
    rc = AISLE_ENOMEM;
    if (!h->qv || !h->cv || !h->dh) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    *out = h;
    return 0;
fail:
    hybrid_free(h);
    return rc;
}

void hybrid_free(struct hybrid *h)
{
    if (!h)
        return;
    sqlite3_finalize(h->get);
    sqlite3_finalize(h->prod);
    sqlite3_finalize(h->prod_src);
    enc_free(h->enc);
    dense_index_free(h->ix);
    free(h->qv);
    free(h->cv);
    free(h->dh);
    free(h->ids);
    free(h);
}

size_t hybrid_nvectors(const struct hybrid *h)
{
    return dense_index_size(h->ix);
}

static const char *source_name(const char *s)
{
    static const char *const names[] = {"product", "bullet", "description", "attribute", "review", "qa"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(s, names[i]))
            return names[i];
    return "product";
}

/* The strings of one hit (lex_hits_free also frees the array). */
static void hit_strings_free(struct lex_hit *h)
{
    free(h->id);
    free(h->product_id);
    free(h->title);
    free(h->text);
}

static char *col_dup(sqlite3_stmt *st, int c)
{
    const unsigned char *t = sqlite3_column_text(st, c);
    return strdup(t ? (const char *)t : "");
}

/* A hit for passage rowid, formatted as lex_search formats its hits (public
 * id, "Q: ... A: ..." for Q&A, "title. text" for a titled review). */
static int fetch_hit(struct hybrid *h, int64_t rowid, struct lex_hit *out)
{
    sqlite3_stmt *st = h->get;
    sqlite3_bind_int64(st, 1, rowid);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? AISLE_ENOTFOUND : AISLE_EDB;
    }
    memset(out, 0, sizeof(*out));
    const char *src = (const char *)sqlite3_column_text(st, 0);
    out->source = source_name(src ? src : "");
    const char *pid = (const char *)sqlite3_column_text(st, 1), *ref = (const char *)sqlite3_column_text(st, 2);
    int ord = sqlite3_column_int(st, 3);
    const char *text = (const char *)sqlite3_column_text(st, 4), *aux = (const char *)sqlite3_column_text(st, 5);
    pid = pid ? pid : "";
    ref = ref ? ref : "";
    text = text ? text : "";
    struct buf b;
    buf_init(&b, 0);
    if (!strcmp(out->source, "review"))
        buf_printf(&b, "review:%s", ref);
    else if (!strcmp(out->source, "qa"))
        buf_printf(&b, "qa:%s:%d", ref, ord);
    else
        buf_printf(&b, "%s:%s:%d", pid, out->source, ord);
    out->id = buf_detach(&b);
    if (!strcmp(out->source, "qa"))
        buf_printf(&b, "Q: %s A: %s", aux ? aux : "", text);
    else if (!strcmp(out->source, "review") && aux && *aux)
        buf_printf(&b, "%s. %s", aux, text);
    else
        buf_puts(&b, text);
    out->text = buf_detach(&b);
    out->product_id = strdup(pid);
    out->title = col_dup(st, 6);
    sqlite3_reset(st);
    if (!out->id || !out->text || !out->product_id || !out->title) {
        hit_strings_free(out);
        return AISLE_ENOMEM;
    }
    return 0;
}

static void free_cands(struct cand *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hit_strings_free(&c[i].h);
    free(c);
}

static int push_cand(struct cand **c, size_t *n, size_t *cap, const struct lex_hit *hit)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        struct cand *x = realloc(*c, nc * sizeof(**c));
        if (!x)
            return AISLE_ENOMEM;
        *c = x;
        *cap = nc;
    }
    struct cand *k = &(*c)[(*n)++];
    memset(k, 0, sizeof(*k));
    k->h = *hit;
    k->rb = k->rd = -1;
    return 0;
}

/* The dense hits of one source group: the whole group, or the product's own
 * passages. */
/* Append the passage ids of product pid in group g to h->ids[*m..]. Reviews
 * and Q&A are read by (product, source) on the passages_product index, so a
 * product with thousands of reviews costs nothing when only its answers are
 * wanted. */
static int product_ids(struct hybrid *h, const char *pid, enum dense_group g, size_t *m)
{
    sqlite3_stmt *st = g == DENSE_CATALOG ? h->prod : h->prod_src;
    sqlite3_bind_text(st, 1, pid, -1, SQLITE_TRANSIENT);
    if (g != DENSE_CATALOG)
        sqlite3_bind_text(st, 2, g == DENSE_REVIEWS ? "review" : "qa", -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *src = (const char *)sqlite3_column_text(st, 1);
        if (dense_group_of(src ? src : "") != g)
            continue;
        if (*m == h->nids_cap) {
            size_t nc = h->nids_cap ? h->nids_cap * 2 : 256;
            int64_t *x = realloc(h->ids, nc * sizeof(int64_t));
            if (!x) {
                sqlite3_reset(st);
                return AISLE_ENOMEM;
            }
            h->ids = x;
            h->nids_cap = nc;
        }
        h->ids[(*m)++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : AISLE_EDB;
}

/* The dense hits of one source group: the product's own passages with a
 * product filter; else the whole group for the catalog, or for reviews and
 * Q&A when they hold at most scan_max vectors; else only the passages of the
 * products the candidates so far (c[0..n)) come from, at most CAND_PRODUCTS
 * of them — so a catalog-wide question reads the reviews and answers of the
 * products it is about, not all of them. */
#define CAND_PRODUCTS 20
static int dense_group(struct hybrid *h, const struct lex_query *q, enum dense_group g, size_t k,
                       const struct cand *c, size_t nc, size_t *n)
{
    size_t m = 0;
    int rc;
    if (q->product_id) {
        if ((rc = product_ids(h, q->product_id, g, &m)))
            return rc;
        return dense_search_ids(h->ix, h->qv, h->ids, m, k, h->dh, n);
    }
    if (g == DENSE_CATALOG || dense_index_group_size(h->ix, g) <= h->o.scan_max)
        return dense_search(h->ix, h->qv, 1u << g, k, h->dh, n);
    const char *seen[CAND_PRODUCTS];
    size_t ns = 0;
    for (size_t i = 0; i < nc && ns < CAND_PRODUCTS; i++) {
        size_t j = 0;
        while (j < ns && strcmp(seen[j], c[i].h.product_id))
            j++;
        if (j < ns)
            continue;
        seen[ns++] = c[i].h.product_id;
        if ((rc = product_ids(h, c[i].h.product_id, g, &m)))
            return rc;
    }
    return dense_search_ids(h->ix, h->qv, h->ids, m, k, h->dh, n);
}

static int cmp_fused(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->fused != y->fused)
        return x->fused > y->fused ? -1 : 1;
    return strcmp(x->h.id, y->h.id);
}

static int cmp_final(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->final != y->final)
        return x->final > y->final ? -1 : 1;
    return strcmp(x->h.id, y->h.id);
}

/* Fraction of the query's terms qt[0..nq) among the text's terms. */
static double coverage(char **qt, int nq, const char *text, size_t *nterms)
{
    char **t;
    int n = lex_terms(text, strlen(text), 1, &t, ENC_MAX_TERMS);
    if (n < 0) {
        *nterms = 0;
        return 0;
    }
    int hit = 0;
    for (int i = 0; i < nq; i++)
        for (int j = 0; j < n; j++)
            if (!strcmp(qt[i], t[j])) {
                hit++;
                break;
            }
    free(t);
    *nterms = (size_t)n;
    return nq ? (double)hit / nq : 0.0;
}

int hybrid_search(struct hybrid *h, const struct lex_query *q, struct lex_hit **hits, size_t *nout, char *err,
                  size_t errlen)
{
    if (!q->k || q->k > LEX_MAX_K) {
        snprintf(err, errlen, "k must be 1..%d", LEX_MAX_K);
        return AISLE_EINVAL;
    }
    int rc = dense_index_refresh(h->ix, h->s, NULL, err, errlen);
    if (rc)
        return rc;
    struct cand *c = NULL;
    size_t n = 0, cap = 0;
    char **qt = NULL;
    int nqt = 0;
    size_t k = h->o.candidates > q->k ? h->o.candidates : q->k;
    int mask = q->sources ? q->sources & LEX_ALL : LEX_ALL;
    const char *text = q->text ? q->text : "";
    size_t tlen = strnlen(text, LEX_MAX_QUERY);
    int use_dense = !(h->o.flags & HYBRID_NO_DENSE) && dense_index_dim(h->ix) == h->enc->D;
    if ((rc = enc_embed(h->enc, text, tlen, h->qv)))
        goto nomem;
    for (int si = 0; si < 3; si++) {
        if (!(mask & src_bits[si]))
            continue;
        size_t first = n;
        if (!(h->o.flags & HYBRID_NO_LEXICAL)) {
            struct lex_query lq = {.text = text, .sources = src_bits[si], .product_id = q->product_id, .k = k};
            struct lex_hit *lh;
            size_t nl;
            if ((rc = lex_search(h->s, &lq, &lh, &nl, err, errlen)))
                goto fail;
            for (size_t i = 0; i < nl; i++) {
                if ((rc = push_cand(&c, &n, &cap, &lh[i]))) {
                    for (size_t j = i; j < nl; j++)
                        hit_strings_free(&lh[j]);
                    free(lh);
                    goto nomem;
                }
                c[n - 1].bm25 = lh[i].score;
                c[n - 1].rb = (int)i;
            }
            free(lh); /* the strings now belong to the candidates */
        }
        if (use_dense) {
            size_t nd;
            if ((rc = dense_group(h, q, (enum dense_group)si, k, c, n, &nd)))
                goto nomem_or_db;
            for (size_t i = 0; i < nd; i++) {
                struct lex_hit hit;
                if ((rc = fetch_hit(h, h->dh[i].id, &hit))) {
                    if (rc == AISLE_ENOTFOUND)
                        continue; /* deleted since the vectors were loaded */
                    goto nomem_or_db;
                }
                size_t j;
                for (j = first; j < n; j++)
                    if (!strcmp(c[j].h.id, hit.id))
                        break;
                if (j < n) {
                    hit_strings_free(&hit);
                } else {
                    if ((rc = push_cand(&c, &n, &cap, &hit))) {
                        hit_strings_free(&hit);
                        goto nomem;
                    }
                }
                c[j].cos = h->dh[i].score;
                c[j].has_cos = 1;
                c[j].rd = (int)i;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        c[i].fused = (c[i].rb >= 0 ? 1.0 / (RRF_K + c[i].rb) : 0) + (c[i].rd >= 0 ? 1.0 / (RRF_K + c[i].rd) : 0);
    if (n)
        qsort(c, n, sizeof(*c), cmp_fused);

    size_t nr = h->o.flags & HYBRID_NO_RERANK ? 0 : (n < h->o.rerank_top ? n : h->o.rerank_top);
    if (nr) {
        nqt = lex_terms(text, tlen, 1, &qt, LEX_MAX_TERMS);
        if (nqt < 0) {
            rc = nqt;
            qt = NULL;
            goto nomem;
        }
        double bmax[3] = {0, 0, 0};
        for (size_t i = 0; i < nr; i++) {
            int g = (int)dense_group_of(c[i].h.source);
            bmax[g] = c[i].bm25 > bmax[g] ? c[i].bm25 : bmax[g];
        }
        for (size_t i = 0; i < nr; i++) {
            if (!c[i].has_cos) {
                if ((rc = enc_embed(h->enc, c[i].h.text, strlen(c[i].h.text), h->cv)))
                    goto nomem;
                double d = 0;
                for (int j = 0; j < h->enc->D; j++)
                    d += (double)h->qv[j] * h->cv[j];
                c[i].cos = d;
            }
            struct rr_input in = {.bm25 = c[i].bm25, .bm25_max = bmax[dense_group_of(c[i].h.source)],
                                  .bm25_rank = c[i].rb, .cosine = c[i].cos, .dense_rank = c[i].rd,
                                  .source = rr_source_of(c[i].h.source)};
            in.coverage = coverage(qt, nqt, c[i].h.text, &in.nterms);
            float x[RR_NFEAT];
            rr_features(&in, x);
            c[i].final = rr_score(&rr_shipped, x);
        }
        qsort(c, nr, sizeof(*c), cmp_final);
    }
    /* Scores: the reranker's logit for reranked hits; below them, the fused
     * order continues under the lowest reranked score. */
    double floor = nr ? c[nr - 1].final : 0;
    for (size_t i = nr; i < n; i++)
        c[i].final = nr ? floor - 1.0 - (double)(i - nr) * 1e-3 : c[i].fused;
    size_t m = n < q->k ? n : q->k;
    struct lex_hit *res = malloc((m ? m : 1) * sizeof(*res));
    if (!res)
        goto nomem;
    for (size_t i = 0; i < m; i++) {
        res[i] = c[i].h;
        res[i].score = c[i].final;
        memset(&c[i].h, 0, sizeof(c[i].h));
    }
    free_cands(c, n);
    free(qt);
    *hits = res;
    *nout = m;
    return 0;
nomem_or_db:
    if (rc == AISLE_EDB) {
        snprintf(err, errlen, "hybrid: %s", sqlite3_errmsg(store_db(h->s)));
        goto fail;
    }
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    free_cands(c, n);
    free(qt);
    return rc;
}
