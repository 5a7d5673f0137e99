/*
 * evidence.c — evidence assembly for one question (see evidence.h for the
 * contract): resolve, route, search, live store facts, then a greedy selection
 * under the token budget with source and product quotas and near-duplicate
 * removal, and a citation order that depends only on the chosen passages.
 *
 * Invariants: the passages returned fit the budget (sum of tokens <= budget),
 * no two have the same id, none is a near duplicate (shingle Jaccard >=
 * EVIDENCE_NEAR_DUP) of another, and cite == index + 1.
 */
#include "retrieval/evidence.h"

#include "core/buf.h"
#include "core/error.h"
#include "retrieval/errfmt.h"
#include "core/hset.h"
#include "retrieval/hybrid.h"
#include "retrieval/lexical.h"

#include <ctype.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEARCH_K 30          /* passages searched per product (or for the catalog) */
#define CATALOG_K 60         /* passages searched for a broad question */
#define FALLBACK_PASSAGES 4  /* a product's bullets/attributes added when the search finds little */
#define ROUTE_FLOOR 0.3      /* share of a passage's relevance kept when its source is not routed */
#define MAX_LIVE_PRODUCTS 3  /* products whose live offers are fetched */
#define MAX_CANDIDATES 512
#define PRODUCT_INDEX_MAX 400 /* a product with more passages is not searched through the index: its
                                 catalog passages and latest 400 reviews/answers are scored directly */

/* Where a passage sits in the citation order, and which route score it uses. */
enum group { G_LIVE, G_TITLE, G_CATALOG, G_QA, G_REVIEWS, G_N };

static enum group group_of(const char *source)
{
    if (!strcmp(source, "offer") || !strcmp(source, "delivery") || !strcmp(source, "order"))
        return G_LIVE;
    if (!strcmp(source, "product"))
        return G_TITLE;
    if (!strcmp(source, "qa"))
        return G_QA;
    if (!strcmp(source, "review"))
        return G_REVIEWS;
    return G_CATALOG;
}

static int route_of(enum group g)
{
    switch (g) {
    case G_LIVE: return ROUTE_API;
    case G_QA: return ROUTE_QA;
    case G_REVIEWS: return ROUTE_REVIEWS;
    default: return ROUTE_CATALOG;
    }
}

/* ---- similarity ---- */

/* Hashes of the word 3-shingles (or of the words, under 3 words), sorted and
 * unique. Returns the count, or -1 on allocation failure. */
static long shingles(const char *t, uint64_t **out)
{
    size_t cap = 64, nw = 0, n = 0;
    uint64_t *w = malloc(cap * sizeof(*w));
    if (!w)
        return -1;
    const unsigned char *p = (const unsigned char *)t;
    char word[64];
    while (*p) {
        while (*p && !(isalnum(*p) || *p >= 0x80))
            p++;
        size_t k = 0;
        while (*p && (isalnum(*p) || *p >= 0x80)) {
            if (k < sizeof(word))
                word[k++] = (char)tolower(*p);
            p++;
        }
        if (!k)
            break;
        if (nw == cap) {
            uint64_t *nwp = realloc(w, 2 * cap * sizeof(*w));
            if (!nwp) {
                free(w);
                return -1;
            }
            w = nwp;
            cap *= 2;
        }
        w[nw++] = hset_hash(HSET_FNV_SEED, word, k);
    }
    if (nw >= 3) {
        for (size_t i = 0; i + 2 < nw; i++)
            w[n++] = (w[i] * 31 + w[i + 1]) * 31 + w[i + 2];
    } else {
        n = nw;
    }
    /* insertion sort is enough for passages (a few hundred words at most) */
    for (size_t i = 1; i < n; i++) {
        uint64_t x = w[i];
        size_t j = i;
        while (j && w[j - 1] > x) {
            w[j] = w[j - 1];
            j--;
        }
        w[j] = x;
    }
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (!u || w[u - 1] != w[i])
            w[u++] = w[i];
    *out = w;
    return (long)u;
}

static double jaccard(const uint64_t *a, long na, const uint64_t *b, long nb)
{
    if (!na && !nb)
        return 1.0;
    long i = 0, j = 0, both = 0;
    while (i < na && j < nb) {
        if (a[i] == b[j])
            both++, i++, j++;
        else if (a[i] < b[j])
            i++;
        else
            j++;
    }
    return (double)both / (double)(na + nb - both);
}

double evidence_similarity(const char *a, const char *b)
{
    uint64_t *sa = NULL, *sb = NULL;
    long na = shingles(a, &sa), nb = na < 0 ? -1 : shingles(b, &sb);
    double r = na < 0 || nb < 0 ? -1.0 : jaccard(sa, na, sb, nb);
    free(sa);
    free(sb);
    return r;
}

/* ---- candidates ---- */

struct cand {
    char *id, *product_id, *text;
    const char *source;
    double rel;   /* search score normalised within its group, 0..1 */
    double score; /* rel x route */
    enum group g;
    char as_of[40];
    int stale;
    int pinned;   /* a resolved product's title: always first among its product's passages */
    uint64_t *sh; /* shingles, computed when first compared */
    long nsh;
};

struct cands {
    struct cand *v;
    size_t n, cap;
    struct hset ids; /* passage ids already present */
};

static void cands_release(struct cands *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].id);
        free(c->v[i].product_id);
        free(c->v[i].text);
        free(c->v[i].sh);
    }
    free(c->v);
    hset_release(&c->ids);
}

/* Cut text to EVIDENCE_MAX_TEXT bytes at a word boundary, never inside a UTF-8
 * character, marking the cut with "...". Returns a new string or NULL. */
static char *cut_text(const char *t)
{
    size_t len = strlen(t);
    if (len <= EVIDENCE_MAX_TEXT)
        return strdup(t);
    size_t k = EVIDENCE_MAX_TEXT;
    while (k > EVIDENCE_MAX_TEXT / 2 && t[k] != ' ')
        k--;
    if (t[k] != ' ') {
        k = EVIDENCE_MAX_TEXT;
        while (k && ((unsigned char)t[k] & 0xc0) == 0x80)
            k--;
    }
    char *r = malloc(k + 4);
    if (!r)
        return NULL;
    memcpy(r, t, k);
    memcpy(r + k, "...", 4);
    return r;
}

/* Add a candidate; 0 (also when its id is already present), AISLE_ENOMEM. */
static int cand_add(struct cands *c, const char *id, const char *source, const char *product_id, const char *text,
                    double rel)
{
    if (c->n >= MAX_CANDIDATES)
        return 0;
    int fresh = hset_put(&c->ids, id, c->n);
    if (fresh < 0)
        return AISLE_ENOMEM;
    if (!fresh)
        return 0;
    if (c->n == c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 64;
        struct cand *nv = realloc(c->v, nc * sizeof(*nv));
        if (!nv)
            return AISLE_ENOMEM;
        c->v = nv;
        c->cap = nc;
    }
    struct cand *x = &c->v[c->n];
    memset(x, 0, sizeof(*x));
    x->id = strdup(id);
    x->product_id = strdup(product_id);
    x->text = cut_text(text);
    x->source = source;
    x->rel = rel;
    x->g = group_of(source);
    x->nsh = -2; /* not computed */
    c->n++;
    if (!x->id || !x->product_id || !x->text)
        return AISLE_ENOMEM;
    return 0;
}

/* The one place evidence searches the store: the hybrid searcher (hybrid.h:
 * BM25 + dense + rerank) when the caller opened one, else BM25 (lexical.h);
 * both have the same contract. */
static int ev_search(struct store *s, struct hybrid *hy, const struct lex_query *q, struct lex_hit **hits, size_t *n,
                     char *err, size_t errlen)
{
    return hy ? hybrid_search(hy, q, hits, n, err, errlen) : lex_search(s, q, hits, n, err, errlen);
}

static int add_hits(const struct lex_hit *h, size_t n, struct cands *c, char *err, size_t errlen);

/* Search and add hits, their scores normalised by the best score of their group in this call. */
static int add_search(struct store *s, struct hybrid *hy, const char *question, int sources, const char *product_id,
                      size_t k, struct cands *c, char *err, size_t errlen)
{
    struct lex_query q = {.text = question, .sources = sources, .product_id = product_id, .k = k};
    struct lex_hit *h = NULL;
    size_t n = 0;
    int rc = ev_search(s, hy, &q, &h, &n, err, errlen);
    if (rc)
        return rc;
    rc = add_hits(h, n, c, err, errlen);
    lex_hits_free(h, n);
    return rc;
}

/* Add search hits (borrowed), their scores normalised by the best of their group. */
static int add_hits(const struct lex_hit *h, size_t n, struct cands *c, char *err, size_t errlen)
{
    int rc = 0;
    double best[G_N] = {0};
    for (size_t i = 0; i < n; i++) {
        enum group g = group_of(h[i].source);
        if (h[i].score > best[g])
            best[g] = h[i].score;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        enum group g = group_of(h[i].source);
        double rel = best[g] > 0 ? h[i].score / best[g] : 0.5;
        rc = cand_add(c, h[i].id, h[i].source, h[i].product_id, h[i].text, rel);
    }
    if (rc)
        retr_seterr(err, errlen, "out of memory");
    return rc;
}

/* The static name of a passages.source value. */
static const char *source_static(const char *src)
{
    static const char *const names[] = {"product", "bullet", "attribute", "description", "review", "qa"};
    for (size_t i = 0; src && i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(src, names[i]))
            return names[i];
    return "description";
}

/* The number of passages of one product, counted up to max + 1. */
static int product_count(struct store *s, const char *pid, long max, long *out, char *err, size_t errlen)
{
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM (SELECT 1 FROM passages WHERE product_id = ?1 LIMIT ?2)",
                           -1, &st, NULL) != SQLITE_OK) {
        retr_seterr(err, errlen, "passage count: %s", sqlite3_errmsg(db));
        return AISLE_EDB;
    }
    sqlite3_bind_text(st, 1, pid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, max + 1);
    int rc = sqlite3_step(st) == SQLITE_ROW ? 0 : AISLE_EDB;
    if (rc)
        retr_seterr(err, errlen, "passage count: %s", sqlite3_errmsg(db));
    else
        *out = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc;
}

/* A product with thousands of reviews (a best seller) is searched differently:
 * lex_search's product filter costs a lookup per passage of the product
 * (seconds at 45,000 reviews, whatever source is searched), so its catalog
 * passages and its latest PRODUCT_INDEX_MAX reviews or answers are
 * scored here with BM25's formula (k1 1.2, b 0.75; idf from the index's
 * vocabulary, average length within the sample; a passage's length counted up
 * to 4 x LEX_MAX_TERMS terms). Bounded: one index range read. */
static int scan_product(struct store *s, const char *question, const char *pid, enum group g, size_t k,
                        struct cands *c, char *err, size_t errlen)
{
    static const char *const vocab_sql[] = {"SELECT doc FROM catalog_vocab WHERE term = ?1",
                                            "SELECT doc FROM review_vocab WHERE term = ?1",
                                            "SELECT doc FROM qa_vocab WHERE term = ?1"};
    static const char *const rows_sql[] = {
        "SELECT ref_id, ord, text, aux, source FROM passages WHERE product_id = ?1 AND source IN "
        "('product', 'bullet', 'attribute', 'description') ORDER BY id DESC LIMIT ?2",
        "SELECT ref_id, ord, text, aux, source FROM passages WHERE product_id = ?1 AND source = 'review'"
        " ORDER BY id DESC LIMIT ?2",
        "SELECT ref_id, ord, text, aux, source FROM passages WHERE product_id = ?1 AND source = 'qa'"
        " ORDER BY id DESC LIMIT ?2"};
    static const char *const totals[] = {"passages", "reviews", "answers"};
    int gi = g == G_REVIEWS ? 1 : g == G_QA ? 2 : 0;
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st = NULL, *voc = NULL;
    char **qt = NULL;
    int nq = lex_terms(question, strnlen(question, LEX_MAX_QUERY), 1, &qt, LEX_MAX_TERMS);
    if (nq <= 0) {
        free(qt);
        return nq < 0 ? AISLE_ENOMEM : 0;
    }
    int rc = AISLE_EDB;
    struct scan {
        char *id, *text;
        const char *source;       /* static */
        double score;
        size_t len;               /* terms, capped at 4 x LEX_MAX_TERMS */
        double tf[LEX_MAX_TERMS]; /* (nq) occurrences of each question term */
    } *v = NULL;
    size_t n = 0;
    double idf[LEX_MAX_TERMS];
    int64_t total = 0;
    if (sqlite3_prepare_v2(db, vocab_sql[gi], -1, &voc, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, rows_sql[gi], -1, &st, NULL) != SQLITE_OK) {
        retr_seterr(err, errlen, "product scan: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (store_count(s, totals[gi], &total) || total < 1)
        total = 1;
    for (int t = 0; t < nq; t++) {
        sqlite3_reset(voc);
        sqlite3_bind_text(voc, 1, qt[t], -1, SQLITE_STATIC);
        int64_t df = sqlite3_step(voc) == SQLITE_ROW ? sqlite3_column_int64(voc, 0) : 0;
        idf[t] = log(1.0 + ((double)total - (double)df + 0.5) / ((double)df + 0.5));
    }
    if (!(v = calloc(PRODUCT_INDEX_MAX, sizeof(*v)))) {
        rc = AISLE_ENOMEM;
        goto out;
    }
    sqlite3_bind_text(st, 1, pid, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, PRODUCT_INDEX_MAX);
    double avglen = 0;
    int step = SQLITE_DONE;
    while (n < PRODUCT_INDEX_MAX && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *ref = (const char *)sqlite3_column_text(st, 0), *text = (const char *)sqlite3_column_text(st, 2),
                   *aux = (const char *)sqlite3_column_text(st, 3), *src = (const char *)sqlite3_column_text(st, 4);
        int ord = sqlite3_column_int(st, 1);
        v[n].source = source_static(src);
        struct buf b;
        buf_init(&b, 0);
        /* ids and texts exactly as lex_search makes them */
        int ok;
        if (gi == 1)
            ok = buf_printf(&b, "review:%s", ref ? ref : "") == 0;
        else if (gi == 2)
            ok = buf_printf(&b, "qa:%s:%d", ref ? ref : "", ord) == 0;
        else
            ok = buf_printf(&b, "%s:%s:%d", pid, v[n].source, ord) == 0;
        v[n].id = ok ? buf_detach(&b) : NULL;
        if (gi == 2)
            ok = buf_printf(&b, "Q: %s A: %s", aux ? aux : "", text ? text : "") == 0;
        else if (gi == 1 && aux && *aux)
            ok = buf_printf(&b, "%s. %s", aux, text ? text : "") == 0;
        else
            ok = buf_puts(&b, text ? text : "") == 0;
        v[n].text = ok ? buf_detach(&b) : NULL;
        buf_release(&b);
        if (!v[n].id || !v[n].text) {
            free(v[n].id);
            free(v[n].text);
            rc = AISLE_ENOMEM;
            goto out;
        }
        n++;
    }
    if (n < PRODUCT_INDEX_MAX && step != SQLITE_DONE) {
        retr_seterr(err, errlen, "product scan: %s", sqlite3_errmsg(db));
        rc = AISLE_EDB;
        goto out;
    }
    /* term frequencies: the passage's own terms against the question's */
    for (size_t i = 0; i < n; i++) {
        char **pt = NULL;
        int np = lex_terms(v[i].text, strlen(v[i].text), 0, &pt, 4 * LEX_MAX_TERMS);
        if (np < 0) {
            rc = AISLE_ENOMEM;
            goto out;
        }
        v[i].len = (size_t)np;
        avglen += np;
        for (int a = 0; a < np; a++)
            for (int t = 0; t < nq; t++)
                if (!strcmp(pt[a], qt[t]))
                    v[i].tf[t] += 1;
        free(pt);
    }
    avglen = n ? avglen / (double)n : 1.0;
    for (size_t i = 0; i < n; i++) {
        double norm = 1.2 * (0.25 + 0.75 * (double)v[i].len / (avglen > 0 ? avglen : 1.0));
        for (int t = 0; t < nq; t++)
            if (v[i].tf[t] > 0)
                v[i].score += idf[t] * v[i].tf[t] * 2.2 / (v[i].tf[t] + norm);
    }
    double best = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].score > best)
            best = v[i].score;
    /* the k best with a positive score */
    rc = 0;
    for (size_t taken = 0; taken < k && !rc; taken++) {
        size_t bi = n;
        for (size_t i = 0; i < n; i++)
            if (v[i].score > 0 && (bi == n || v[i].score > v[bi].score))
                bi = i;
        if (bi == n)
            break;
        rc = cand_add(c, v[bi].id, v[bi].source, pid, v[bi].text, v[bi].score / best);
        v[bi].score = 0;
    }
out:
    if (rc == AISLE_ENOMEM)
        retr_seterr(err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++) {
        free(v[i].id);
        free(v[i].text);
    }
    free(v);
    free(qt);
    sqlite3_finalize(st);
    sqlite3_finalize(voc);
    return rc;
}

/* One product's evidence: the index search (hybrid or BM25) for a product with
 * few passages, the direct scan (scan_product) for one with many. */
static int search_product(struct store *s, struct hybrid *hy, const char *question, int mask, const char *pid, size_t k,
                          struct cands *c, char *err, size_t errlen)
{
    long cnt = 0;
    int rc = product_count(s, pid, PRODUCT_INDEX_MAX, &cnt, err, errlen);
    if (rc || cnt <= PRODUCT_INDEX_MAX)
        return rc ? rc : add_search(s, hy, question, mask, pid, k, c, err, errlen);
    rc = scan_product(s, question, pid, G_CATALOG, k, c, err, errlen);
    if (!rc && (mask & LEX_REVIEWS))
        rc = scan_product(s, question, pid, G_REVIEWS, k, c, err, errlen);
    if (!rc && (mask & LEX_QA))
        rc = scan_product(s, question, pid, G_QA, k, c, err, errlen);
    return rc;
}

/* The product's title, and when the search found few of its catalog passages,
 * its first bullets and attributes (low relevance: context, not answers). */
static int add_product_context(struct store *s, const char *pid, int want_fallback, struct cands *c, char *err,
                               size_t errlen)
{
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st = NULL;
    int rc = AISLE_EDB;
    if (sqlite3_prepare_v2(db,
                           "SELECT source, ord, text FROM passages WHERE product_id = ?1 AND source IN "
                           "('product', 'bullet', 'attribute') ORDER BY source = 'product' DESC, source, ord LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK) {
        retr_seterr(err, errlen, "product passages: %s", sqlite3_errmsg(db));
        return rc;
    }
    sqlite3_bind_text(st, 1, pid, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, want_fallback ? 1 + FALLBACK_PASSAGES : 1);
    int r;
    rc = 0;
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *src = (const char *)sqlite3_column_text(st, 0);
        const char *text = (const char *)sqlite3_column_text(st, 2);
        static const char *const names[] = {"product", "bullet", "attribute"};
        const char *source = NULL;
        for (size_t i = 0; i < 3; i++)
            if (src && !strcmp(src, names[i]))
                source = names[i];
        if (!source || !text)
            continue;
        char id[RESOLVE_ID_MAX + 40];
        snprintf(id, sizeof(id), "%s:%s:%d", pid, source, sqlite3_column_int(st, 1));
        uint64_t at;
        int title = !strcmp(source, "product");
        if (hset_get(&c->ids, id, &at)) { /* found by the search too */
            c->v[at].pinned |= title;
            continue;
        }
        size_t before = c->n;
        rc = cand_add(c, id, source, pid, text, title ? 1.0 : 0.2);
        if (rc)
            retr_seterr(err, errlen, "out of memory");
        else if (c->n > before)
            c->v[before].pinned = title;
    }
    if (!rc && r != SQLITE_DONE) {
        rc = AISLE_EDB;
        retr_seterr(err, errlen, "product passages: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- live store facts ---- */

static void money(char out[64], int64_t minor, const char *currency)
{
    size_t n = 64;
    int64_t scale = store_currency_scale(currency);
    if (scale <= 1) {
        snprintf(out, n, "%s %lld", currency, (long long)minor);
        return;
    }
    char frac[24];
    snprintf(frac, sizeof(frac), "%lld", (long long)(minor % scale + scale)); /* "1" + zero-padded digits */
    snprintf(out, n, "%.3s %lld.%.18s", currency, (long long)(minor / scale), frac + 1);
}

static int add_live(struct cands *c, const char *id, const char *source, const char *pid, const char *text,
                    const struct shop_fresh *f)
{
    size_t before = c->n;
    int rc = cand_add(c, id, source, pid, text, 1.0);
    if (!rc && c->n > before) {
        struct cand *x = &c->v[c->n - 1];
        if (f) {
            snprintf(x->as_of, sizeof(x->as_of), "%s", f->as_of);
            x->stale = f->stale;
        } else {
            x->stale = 1; /* nothing known: the source is down */
        }
    }
    return rc;
}

static int live_offers(struct shop *sh, const char *pid, struct cands *c)
{
    struct shop_offers *o = malloc(sizeof(*o));
    if (!o)
        return AISLE_ENOMEM;
    char err[256], id[RESOLVE_ID_MAX + 8];
    struct buf b;
    buf_init(&b, 0);
    snprintf(id, sizeof(id), "offer:%s", pid);
    int rc = shop_offers(sh, pid, o, err, sizeof(err)), ret;
    if (rc == AISLE_EUNAVAIL) {
        ret = add_live(c, id, "offer", pid, "Price and stock are unavailable right now: the store's system did not answer.",
                       NULL);
    } else if (rc == AISLE_ENOTFOUND || (!rc && !o->n)) {
        ret = add_live(c, id, "offer", pid, "No seller offers this product right now.", rc ? NULL : &o->fresh);
    } else if (rc) {
        ret = 0; /* a bad argument (an id the shop refuses): no fact to state */
    } else {
        int ok = buf_puts(&b, "Offers:") == 0;
        for (size_t i = 0; i < o->n && i < 3; i++) {
            char price[64];
            money(price, o->v[i].price_minor, o->v[i].currency);
            ok = ok && buf_printf(&b, "%s %s from %s, %lld in stock", i ? ";" : "", price, o->v[i].seller,
                                  (long long)o->v[i].stock) == 0;
            if (o->v[i].delivery_days >= 0)
                ok = ok && buf_printf(&b, ", delivers in %d days", o->v[i].delivery_days) == 0;
        }
        ok = ok && buf_putc(&b, '.') == 0;
        ret = ok ? add_live(c, id, "offer", pid, b.data, &o->fresh) : AISLE_ENOMEM;
    }
    buf_release(&b);
    free(o);
    return ret;
}

static int live_delivery(struct shop *sh, const char *pid, const char *postcode, struct cands *c)
{
    struct shop_delivery d;
    char err[256], id[RESOLVE_ID_MAX + 40], text[512];
    snprintf(id, sizeof(id), "delivery:%s:%.16s", pid, postcode);
    int rc = shop_delivery(sh, pid, postcode, &d, err, sizeof(err));
    if (rc == AISLE_EUNAVAIL)
        return add_live(c, id, "delivery", pid, "A delivery estimate is unavailable right now: the store's system did not answer.", NULL);
    if (rc)
        return 0; /* a malformed postcode or unknown product: nothing to state */
    if (!d.available)
        snprintf(text, sizeof(text), "Delivery to %s: not available (no seller has it in stock).", d.postcode);
    else
        snprintf(text, sizeof(text), "Delivery to %s: %d to %d business days (%s to %s), from %s.", d.postcode,
                 d.days_min, d.days_max, d.earliest, d.latest, d.seller);
    return add_live(c, id, "delivery", pid, text, &d.fresh);
}

/* An order id in the question: a token of letters, digits and '-' with a digit,
 * right after the word "order" (or "order number"/"#"). */
static int order_id_in(const char *q, char *out, size_t n)
{
    const char *p = q;
    while ((p = strcasestr(p, "order"))) {
        p += 5;
        const char *s = p;
        while (*s == ' ' || *s == '#' || *s == ':')
            s++;
        if (!strncasecmp(s, "number", 6) || !strncasecmp(s, "no.", 3) || !strncasecmp(s, "id", 2)) {
            while (isalpha((unsigned char)*s) || *s == '.')
                s++;
            while (*s == ' ' || *s == '#' || *s == ':')
                s++;
        }
        size_t k = 0;
        int digit = 0;
        while ((isalnum((unsigned char)*s) || *s == '-') && k + 1 < n) {
            digit |= isdigit((unsigned char)*s);
            out[k++] = *s++;
        }
        out[k] = '\0';
        if (digit && k >= 3)
            return 1;
    }
    return 0;
}

static int live_order(struct shop *sh, const char *oid, struct cands *c)
{
    struct shop_order *o = malloc(sizeof(*o));
    if (!o)
        return AISLE_ENOMEM;
    char err[256], id[96], text[768];
    snprintf(id, sizeof(id), "order:%.64s", oid);
    int rc = shop_order(sh, oid, o, err, sizeof(err)), ret = 0;
    if (rc == AISLE_EUNAVAIL)
        ret = add_live(c, id, "order", "", "The order's status is unavailable right now: the store's system did not answer.", NULL);
    else if (rc == AISLE_ENOTFOUND)
        ret = add_live(c, id, "order", "", "No order with this number was found.", NULL);
    else if (!rc) {
        snprintf(text, sizeof(text), "Order %s: %s since %s; placed %s; %zu line%s.", o->id, o->status, o->status_at,
                 o->created_at, o->nlines, o->nlines == 1 ? "" : "s");
        ret = add_live(c, id, "order", o->nlines ? o->lines[0].product_id : "", text, &o->fresh);
    }
    /* a NOTFOUND answer is a fact of the live source, not stale */
    if (rc == AISLE_ENOTFOUND && c->n && !strcmp(c->v[c->n - 1].id, id))
        c->v[c->n - 1].stale = 0;
    free(o);
    return ret;
}

/* ---- selection ---- */

static int resolved(const struct resolution *r, const char *pid)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->products[i], pid))
            return 1;
    return 0;
}

static size_t count_tokens(const struct evidence_opts *o, const char *text)
{
    size_t len = strlen(text);
    if (o->count) {
        long n = o->count(text, len, o->count_ctx);
        if (n >= 0)
            return (size_t)n + EVIDENCE_LINE_OVERHEAD;
    }
    return (len + EVIDENCE_BYTES_PER_TOKEN - 1) / EVIDENCE_BYTES_PER_TOKEN + EVIDENCE_LINE_OVERHEAD;
}

static int cmp_score(const void *a, const void *b)
{
    const struct cand *x = *(const struct cand *const *)a, *y = *(const struct cand *const *)b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return strcmp(x->id, y->id);
}

static int cmp_cite(const void *a, const void *b)
{
    const struct evidence_passage *x = a, *y = b;
    enum group gx = group_of(x->source), gy = group_of(y->source);
    if (gx != gy)
        return (int)gx - (int)gy;
    return strcmp(x->id, y->id);
}

/* 1 when x is a near duplicate of a chosen candidate; <0 on allocation failure. */
static int near_dup(struct cand *x, struct cand **chosen, size_t n)
{
    if (x->nsh == -2 && (x->nsh = shingles(x->text, &x->sh)) < 0)
        return AISLE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        struct cand *y = chosen[i];
        if (y->nsh == -2 && (y->nsh = shingles(y->text, &y->sh)) < 0)
            return AISLE_ENOMEM;
        if (!strcmp(x->text, y->text) || jaccard(x->sh, x->nsh, y->sh, y->nsh) >= EVIDENCE_NEAR_DUP)
            return 1;
    }
    return 0;
}

int evidence_build(struct store *s, const char *question, const char *page_product, const struct resolve_conv *conv,
                   const struct evidence_opts *opts, struct evidence *out, char *err, size_t errlen)
{
    struct evidence_opts o = {0};
    if (opts)
        o = *opts;
    if (!o.budget)
        o.budget = EVIDENCE_DEFAULT_BUDGET;
    if (!o.max_passages)
        o.max_passages = EVIDENCE_DEFAULT_MAX;
    if (o.max_passages > EVIDENCE_MAX_PASSAGES || o.sources < 0 || o.sources >= 1 << ROUTE_NSRC) {
        retr_seterr(err, errlen, "evidence: max_passages over %d or a bad sources mask", EVIDENCE_MAX_PASSAGES);
        return AISLE_EINVAL;
    }
    if (!question)
        question = "";
    struct evidence e;
    memset(&e, 0, sizeof(e));
    e.budget = o.budget;
    struct cands c = {0};
    hset_init(&c.ids);
    struct cand **order = NULL, **chosen = NULL;
    struct lex_hit *rh = NULL; /* (nrh) the resolution's catalog search, reused for a broad question */
    size_t nrh = 0;
    int rc = resolve_product_hits(s, question, page_product, conv, &e.res, &rh, &nrh, err, errlen);
    if (rc)
        goto fail;
    if (o.sources) {
        for (int i = 0; i < ROUTE_NSRC; i++) {
            e.route.use[i] = (o.sources >> i) & 1;
            e.route.score[i] = e.route.use[i];
        }
    } else if ((rc = route_question(o.router, question, &e.route))) {
        retr_seterr(err, errlen, "out of memory");
        goto fail;
    }

    /* Search the sources worth a look: routed ones, and any whose score is
     * not negligible (the floor can still let their best passage in). */
    int mask = LEX_PRODUCTS;
    if (e.route.use[ROUTE_REVIEWS] || e.route.score[ROUTE_REVIEWS] >= 0.15)
        mask |= LEX_REVIEWS;
    if (e.route.use[ROUTE_QA] || e.route.score[ROUTE_QA] >= 0.15)
        mask |= LEX_QA;
    int one = e.res.why != RESOLVE_CATALOG && e.res.n > 0;
    if (one) {
        for (size_t i = 0; i < e.res.n && !rc; i++) {
            size_t before = c.n;
            rc = search_product(s, o.hybrid, question, mask, e.res.products[i], e.res.n > 1 ? SEARCH_K / 2 : SEARCH_K,
                                &c, err, errlen);
            if (!rc)
                rc = add_product_context(s, e.res.products[i], c.n - before < 3, &c, err, errlen);
        }
    } else {
        /* A broad question searches the whole catalog once. BM25 unless asked:
         * the dense half of a catalog-wide hybrid search scans every vector
         * (1.8M at 100k products: +13 ms CPU at the median, bench/retrieve),
         * while product-restricted hybrid searches above are cheap. */
        if (o.broad_hybrid && o.hybrid) {
            rc = add_search(s, o.hybrid, question, mask, NULL, CATALOG_K, &c, err, errlen);
        } else {
            /* the catalog was just searched to resolve the products: reuse it */
            rc = add_hits(rh, nrh, &c, err, errlen);
            if (!rc && (mask & ~LEX_PRODUCTS))
                rc = add_search(s, NULL, question, mask & ~LEX_PRODUCTS, NULL, CATALOG_K, &c, err, errlen);
        }
        for (size_t i = 0; i < e.res.n && !rc; i++)
            rc = add_product_context(s, e.res.products[i], 0, &c, err, errlen);
    }
    if (rc)
        goto fail;
    if (o.shop && e.route.use[ROUTE_API]) {
        char oid[80];
        if (order_id_in(question, oid, sizeof(oid)))
            rc = live_order(o.shop, oid, &c);
        for (size_t i = 0; one && !rc && i < e.res.n && i < MAX_LIVE_PRODUCTS; i++) {
            rc = live_offers(o.shop, e.res.products[i], &c);
            if (!rc && o.postcode)
                rc = live_delivery(o.shop, e.res.products[i], o.postcode, &c);
        }
        if (rc) {
            retr_seterr(err, errlen, "out of memory");
            goto fail;
        }
    }

    /* Scores and quotas. */
    double rsum = 0;
    for (int i = 0; i < ROUTE_NSRC; i++)
        rsum += e.route.use[i] ? e.route.score[i] : 0;
    size_t quota[G_N];
    for (int g = 0; g < G_N; g++) {
        int r = route_of((enum group)g);
        if (g == G_LIVE || g == G_TITLE)
            quota[g] = o.max_passages; /* live facts asked for; titles bounded by products */
        else if (e.route.use[r] && rsum > 0)
            quota[g] = (size_t)fmax(2.0, ceil((double)o.max_passages * e.route.score[r] / rsum));
        else
            quota[g] = 1;
    }
    size_t per_product = e.res.n > 1 ? (o.max_passages + e.res.n - 1) / e.res.n + 1 : o.max_passages;
    for (size_t i = 0; i < c.n; i++) {
        struct cand *x = &c.v[i];
        if (x->g == G_LIVE)
            x->score = 2.0; /* asked for and authoritative */
        else if (x->pinned)
            x->score = 1.5; /* which product the evidence is about */
        else {
            double r = e.route.score[route_of(x->g)];
            x->score = x->rel * (ROUTE_FLOOR + (1 - ROUTE_FLOOR) * (e.route.use[route_of(x->g)] ? r : r * 0.5));
        }
    }
    rc = AISLE_ENOMEM;
    if (!(order = malloc((c.n ? c.n : 1) * sizeof(*order))) || !(chosen = malloc((c.n ? c.n : 1) * sizeof(*chosen)))) {
        retr_seterr(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < c.n; i++)
        order[i] = &c.v[i];
    qsort(order, c.n, sizeof(*order), cmp_score);
    size_t used[G_N] = {0}, nchosen = 0, tokens = 0;
    for (size_t i = 0; i < c.n && nchosen < o.max_passages; i++) {
        struct cand *x = order[i];
        if (used[x->g] >= quota[x->g])
            continue;
        if (e.res.why == RESOLVE_CATALOG && x->g != G_LIVE && !resolved(&e.res, x->product_id))
            continue; /* a broad question's evidence is about the products it resolved to */
        if (per_product < o.max_passages && x->g != G_LIVE) {
            size_t same = 0;
            for (size_t k = 0; k < nchosen; k++)
                same += !strcmp(chosen[k]->product_id, x->product_id);
            if (same >= per_product)
                continue;
        }
        int d = near_dup(x, chosen, nchosen);
        if (d < 0) {
            retr_seterr(err, errlen, "out of memory");
            goto fail;
        }
        if (d) {
            e.dropped_dup++;
            continue;
        }
        size_t t = count_tokens(&o, x->text);
        if (tokens + t > o.budget)
            continue;
        tokens += t;
        used[x->g]++;
        chosen[nchosen++] = x;
    }

    e.v = calloc(nchosen ? nchosen : 1, sizeof(*e.v));
    if (!e.v) {
        retr_seterr(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nchosen; i++) {
        struct cand *x = chosen[i];
        struct evidence_passage *p = &e.v[i];
        /* move the strings over */
        p->id = x->id, x->id = NULL;
        p->product_id = x->product_id, x->product_id = NULL;
        p->text = x->text, x->text = NULL;
        p->source = x->source;
        p->score = x->score;
        p->tokens = count_tokens(&o, p->text);
        snprintf(p->as_of, sizeof(p->as_of), "%s", x->as_of);
        p->stale = x->stale;
    }
    e.n = nchosen;
    e.tokens = tokens;
    qsort(e.v, e.n, sizeof(*e.v), cmp_cite);
    for (size_t i = 0; i < e.n; i++)
        e.v[i].cite = (int)i + 1;
    free(order);
    free(chosen);
    cands_release(&c);
    lex_hits_free(rh, nrh);
    *out = e;
    return 0;
fail:
    free(order);
    free(chosen);
    cands_release(&c);
    lex_hits_free(rh, nrh);
    evidence_release(&e);
    return rc;
}

void evidence_release(struct evidence *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].id);
        free(e->v[i].product_id);
        free(e->v[i].text);
    }
    free(e->v);
    e->v = NULL;
    e->n = 0;
}
