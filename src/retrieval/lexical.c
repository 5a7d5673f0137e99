/*
 * lexical.c — query building and BM25 ranking over FTS5; see lexical.h.
 *
 * Latency: FTS5's bm25() costs time per matching row and, worse, counts each
 * term's document frequency by reading all its matches on every query, so an
 * OR over common words on a big store is slow (12-15 queries/s on 100k
 * products, LIBRARIES.md). Here each term's frequency is probed once (exact up
 * to TERM_PROBE matches, estimated above), terms are taken rarest first and
 * OR-ed while their documents fit SCORE_ROWS; when even the rarest is over that,
 * the rarest terms are AND-ed until few enough rows match, and at most
 * SCORE_ROWS of them are scored. Scoring is aisle_bm25(): FTS5's bm25 formula
 * with the probed frequencies passed in. Figures: docs/PERFORMANCE.md.
 */
#include "retrieval/lexical.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/utf8.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <utf8proc.h>

static const char *const stopwords[] = {
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "both", "but", "by", "can", "could", "did", "do", "does", "doing",
    "down", "during", "each", "else", "for", "from", "further", "get", "got", "had", "has", "have", "having",
    "he", "her", "here", "hers", "him", "his", "how", "i", "if", "im", "in", "into", "is", "it", "its", "just",
    "me", "mine", "more", "most", "my", "myself", "of", "off", "on", "once", "only", "or", "other", "our",
    "ours", "out", "over", "own", "please", "s", "same", "she", "should", "so", "some", "such", "t", "than",
    "that", "the", "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "through",
    "to", "too", "under", "until", "up", "us", "very", "was", "we", "were", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "would", "you", "your", "yours",
};

int lex_is_stopword(const char *w)
{
    size_t lo = 0, hi = sizeof(stopwords) / sizeof(stopwords[0]);
    while (lo < hi) { /* the list above is sorted */
        size_t mid = (lo + hi) / 2;
        int c = strcmp(w, stopwords[mid]);
        if (!c)
            return 1;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return 0;
}

static int is_token_char(utf8proc_int32_t cp)
{
    utf8proc_category_t cat = utf8proc_category(cp);
    switch (cat) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: case UTF8PROC_CATEGORY_CO:
        return 1;
    default:
        return 0;
    }
}

int lex_terms(const char *text, size_t len, int drop_stop, char ***out, size_t max)
{
    if (len > LEX_MAX_QUERY)
        len = utf8_trim(text, len, LEX_MAX_QUERY);
    /* Invalid bytes become spaces, so any input can be searched. */
    char *clean = malloc(len + 1);
    if (!clean)
        return AISLE_ENOMEM;
    size_t o = 0, i = 0;
    while (i < len) {
        size_t ok = utf8_valid_prefix(text + i, len - i);
        memcpy(clean + o, text + i, ok);
        o += ok;
        i += ok;
        if (i < len) {
            clean[o++] = ' ';
            i++;
        }
    }
    for (size_t j = 0; j < o; j++)
        if (clean[j] == '\0')
            clean[j] = ' ';
    clean[o] = '\0';

    utf8proc_uint8_t *folded = NULL;
    utf8proc_ssize_t fl = utf8proc_map((const utf8proc_uint8_t *)clean, (utf8proc_ssize_t)o, &folded,
                                       UTF8PROC_NULLTERM | UTF8PROC_STABLE |
                                           UTF8PROC_CASEFOLD | UTF8PROC_STRIPMARK | UTF8PROC_COMPOSE);
    free(clean);
    if (fl < 0)
        return AISLE_ENOMEM;

    /* One allocation: the pointer array followed by the term bytes. */
    size_t cap = max * sizeof(char *) + (size_t)fl + max + 1;
    char **terms = malloc(cap);
    if (!terms) {
        free(folded);
        return AISLE_ENOMEM;
    }
    char *store = (char *)(terms + max);
    size_t n = 0, p = 0, so = 0;
    while (p < (size_t)fl && n < max) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(folded + p, fl - (utf8proc_ssize_t)p, &cp);
        if (k <= 0)
            break;
        if (!is_token_char(cp)) {
            p += (size_t)k;
            continue;
        }
        size_t start = p;
        while (p < (size_t)fl) {
            k = utf8proc_iterate(folded + p, fl - (utf8proc_ssize_t)p, &cp);
            if (k <= 0 || !is_token_char(cp))
                break;
            p += (size_t)k;
        }
        size_t wl = p - start;
        memcpy(store + so, folded + start, wl);
        store[so + wl] = '\0';
        char *w = store + so;
        if (drop_stop && lex_is_stopword(w))
            continue;
        int dup = 0;
        for (size_t j = 0; j < n; j++)
            dup |= !strcmp(terms[j], w);
        if (dup)
            continue;
        terms[n++] = w;
        so += wl + 1;
    }
    free(folded);
    *out = terms;
    return (int)n;
}

/* Rows that one source may score per query: scoring costs about 2 us a row on
 * a 1M-review store (bench/ingest), so this bounds a query to a few ms per
 * source. */
#define SCORE_ROWS 2000
/* Matches a term's document-frequency probe reads at most: below it the count
 * is exact, at it the frequency is estimated from how far back in rowid order
 * the newest TERM_PROBE matches reach (sampling error about 1/sqrt(TERM_PROBE)). */
#define TERM_PROBE 256

struct source_def {
    int mask;
    const char *fts, *docsize, *weights;
};

static const struct source_def sources[] = {
    {LEX_PRODUCTS, "catalog_fts", "catalog_fts_docsize", "4.0, 2.0, 1.5, 1.0, 1.5"},
    {LEX_REVIEWS, "review_fts", "review_fts_docsize", "1.5, 1.0"},
    {LEX_QA, "qa_fts", "qa_fts_docsize", "1.0, 1.0"},
};

struct term_df {
    const char *term;
    long long df; /* documents with the term: exact below TERM_PROBE, else estimated */
};

static int cmp_df(const void *a, const void *b)
{
    const struct term_df *x = a, *y = b;
    return x->df < y->df ? -1 : x->df > y->df;
}

/* ---- ranking: FTS5's BM25 with document frequencies given ----
 *
 * aisle_bm25(fts, df_1..df_P, w_1..w_C) is FTS5's bm25() (k1 1.2, b 0.75, the
 * same IDF and length normalisation) except that the document frequency of each
 * phrase comes as an argument. bm25() counts it itself by reading every match
 * of every phrase on each query, which costs as much as the rows it ranks: for
 * a word in 100k reviews, 10 ms before scoring one row. We know the counts
 * already (exactly for rare terms, estimated for common ones; see term_probe),
 * so scoring costs only the rows scored. With exact counts the scores equal
 * bm25()'s. */

#define RANK_K1 1.2
#define RANK_B 0.75

struct rank_data {
    int nphrase, ncol;
    double avgdl;
    double *idf; /* (nphrase) */
    double *w;   /* (ncol) */
};

static void rank_fn(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int nval,
                    sqlite3_value **val)
{
    struct rank_data *d = api->xGetAuxdata(fts, 0);
    if (!d) {
        int np = api->xPhraseCount(fts), nc = api->xColumnCount(fts);
        if (np > LEX_MAX_TERMS || nval != np + nc) {
            sqlite3_result_error(ctx, "aisle_bm25: wrong number of arguments", -1);
            return;
        }
        sqlite3_int64 nrow = 0, ntok = 0;
        if (api->xRowCount(fts, &nrow) != SQLITE_OK || api->xColumnTotalSize(fts, -1, &ntok) != SQLITE_OK) {
            sqlite3_result_error(ctx, "aisle_bm25: no index statistics", -1);
            return;
        }
        d = sqlite3_malloc64(sizeof(*d) + (size_t)(np + nc) * sizeof(double));
        if (!d) {
            sqlite3_result_error_nomem(ctx);
            return;
        }
        d->nphrase = np;
        d->ncol = nc;
        d->idf = (double *)(d + 1);
        d->w = d->idf + np;
        if (nrow < 1)
            nrow = 1;
        d->avgdl = ntok > 0 ? (double)ntok / (double)nrow : 1.0;
        for (int i = 0; i < np; i++) {
            double df = sqlite3_value_double(val[i]);
            double idf = log(((double)nrow - df + 0.5) / (df + 0.5));
            d->idf[i] = idf > 0 ? idf : 1e-6;
        }
        for (int i = 0; i < nc; i++)
            d->w[i] = sqlite3_value_double(val[np + i]);
        if (api->xSetAuxdata(fts, d, sqlite3_free) != SQLITE_OK) {
            sqlite3_result_error_nomem(ctx);
            return;
        }
    }
    double freq[LEX_MAX_TERMS] = {0};
    int ninst = 0, ntok = 0;
    if (api->xInstCount(fts, &ninst) != SQLITE_OK || api->xColumnSize(fts, -1, &ntok) != SQLITE_OK) {
        sqlite3_result_error(ctx, "aisle_bm25: cannot read the row", -1);
        return;
    }
    for (int i = 0; i < ninst; i++) {
        int ip, ic, io;
        if (api->xInst(fts, i, &ip, &ic, &io) == SQLITE_OK && ip >= 0 && ip < d->nphrase && ic >= 0 &&
            ic < d->ncol)
            freq[ip] += d->w[ic];
    }
    double score = 0, norm = RANK_K1 * (1 - RANK_B + RANK_B * (double)ntok / d->avgdl);
    for (int i = 0; i < d->nphrase; i++)
        score += d->idf[i] * (freq[i] * (RANK_K1 + 1.0)) / (freq[i] + norm);
    sqlite3_result_double(ctx, -score);
}

/* Register aisle_bm25 on this connection unless it is there already. */
static int rank_register(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT aisle_bm25(qa_fts) FROM qa_fts WHERE 0", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_finalize(st);
        return 0;
    }
    fts5_api *api = NULL;
    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (!api || api->iVersion < 2 || api->xCreateFunction(api, "aisle_bm25", NULL, rank_fn, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "search: cannot register the ranking function (FTS5 missing?)");
        return AISLE_EDB;
    }
    return 0;
}

/* ---- query planning ---- */

static int cmp_hit(const void *a, const void *b)
{
    const struct lex_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return strcmp(x->id, y->id); /* deterministic order for ties */
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return strdup(t ? (const char *)t : "");
}

static const char *source_name(const char *s)
{
    static const char *const names[] = {"product", "bullet", "description", "attribute", "review", "qa"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(s, names[i]))
            return names[i];
    return "product";
}

/* Run one MATCH expression over the terms td[0..nt) (joined by op) against one
 * source, scoring only rows with rowid >= min_rowid, appending up to k hits. */
static int run_match(sqlite3 *db, const struct source_def *src, const struct term_df *td, size_t nt,
                     const char *op, long long min_rowid, const struct lex_query *q, struct lex_hit **hits,
                     size_t *n, size_t *cap, char *err, size_t errlen)
{
    struct buf expr, dfs;
    buf_init(&expr, 0);
    buf_init(&dfs, 0);
    for (size_t i = 0; i < nt; i++) {
        buf_printf(&expr, "%s\"%s\"", i ? op : "", td[i].term);
        buf_printf(&dfs, "%lld, ", td[i].df);
    }
    char *sql = sqlite3_mprintf(
        "SELECT p.id, p.source, p.product_id, p.ref_id, p.ord, p.text, p.aux, f.r, pr.title"
        " FROM (SELECT rowid AS rid, aisle_bm25(%s, %s%s) AS r FROM %s WHERE %s MATCH ?1 AND rowid >= ?4 %s"
        " ORDER BY r LIMIT ?2) f"
        " JOIN passages p ON p.id = f.rid LEFT JOIN products pr ON pr.id = p.product_id ORDER BY f.r, p.id",
        src->fts, dfs.data ? dfs.data : "", src->weights, src->fts, src->fts,
        q->product_id ? "AND rowid IN (SELECT id FROM passages WHERE product_id = ?3)" : "");
    buf_release(&dfs);
    sqlite3_stmt *st = NULL;
    int rc, ret = 0;
    if (!sql || !expr.data) {
        snprintf(err, errlen, "out of memory");
        ret = AISLE_ENOMEM;
        goto out;
    }
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "search: %s", sqlite3_errmsg(db));
        ret = AISLE_EDB;
        goto out;
    }
    sqlite3_bind_text(st, 1, expr.data, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)q->k);
    if (q->product_id)
        sqlite3_bind_text(st, 3, q->product_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, min_rowid);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 32;
            struct lex_hit *nh = realloc(*hits, nc * sizeof(**hits));
            if (!nh) {
                ret = AISLE_ENOMEM;
                break;
            }
            *hits = nh;
            *cap = nc;
        }
        struct lex_hit *h = &(*hits)[*n];
        memset(h, 0, sizeof(*h));
        h->source = source_name((const char *)sqlite3_column_text(st, 1));
        const char *pid = (const char *)sqlite3_column_text(st, 2);
        const char *ref = (const char *)sqlite3_column_text(st, 3);
        int ord = sqlite3_column_int(st, 4);
        const char *text = (const char *)sqlite3_column_text(st, 5);
        const char *aux = (const char *)sqlite3_column_text(st, 6);
        struct buf b;
        buf_init(&b, 0);
        if (!strcmp(h->source, "review"))
            buf_printf(&b, "review:%s", ref);
        else if (!strcmp(h->source, "qa"))
            buf_printf(&b, "qa:%s:%d", ref, ord);
        else
            buf_printf(&b, "%s:%s:%d", pid, h->source, ord);
        h->id = buf_detach(&b);
        if (!strcmp(h->source, "qa"))
            buf_printf(&b, "Q: %s A: %s", aux ? aux : "", text ? text : "");
        else if (!strcmp(h->source, "review") && aux && *aux)
            buf_printf(&b, "%s. %s", aux, text ? text : "");
        else
            buf_puts(&b, text ? text : "");
        h->text = buf_detach(&b);
        h->product_id = strdup(pid ? pid : "");
        h->title = dup_col(st, 8);
        h->score = -sqlite3_column_double(st, 7);
        (*n)++;
        if (!h->id || !h->text || !h->product_id || !h->title) {
            ret = AISLE_ENOMEM;
            break;
        }
    }
    if (!ret && rc != SQLITE_DONE) {
        snprintf(err, errlen, "search: %s", sqlite3_errmsg(db));
        ret = AISLE_EDB;
    }
out:
    sqlite3_finalize(st);
    sqlite3_free(sql);
    buf_release(&expr);
    return ret;
}

/* Count the matches of expr, reading at most the statement's LIMIT of them,
 * newest first: *count = min(matches, LIMIT) and *newest = the rowid of the
 * oldest match read. Costs at most LIMIT rowids. */
static int probe(sqlite3_stmt *st, const char *expr, long long *count, long long *newest)
{
    sqlite3_bind_text(st, 1, expr, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *count = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    *newest = rc == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : AISLE_EDB;
}

static int search_source(sqlite3 *db, const struct source_def *src, char **terms, size_t nterms,
                         const struct lex_query *q, struct lex_hit **hits, size_t *n, size_t *cap, char *err,
                         size_t errlen)
{
    struct term_df td[LEX_MAX_TERMS];
    size_t nt = 0;
    char sql[384];
    sqlite3_stmt *tprobe = NULL, *xprobe = NULL, *span = NULL;
    struct buf expr;
    buf_init(&expr, 0);
    int rc = 0;
    const char *fmt = "SELECT count(*), min(rowid) FROM (SELECT rowid FROM %s WHERE %s MATCH ?1 ORDER BY rowid DESC"
                      " LIMIT %d)";
    snprintf(sql, sizeof(sql), fmt, src->fts, src->fts, TERM_PROBE);
    if (sqlite3_prepare_v2(db, sql, -1, &tprobe, NULL) != SQLITE_OK)
        goto dberr;
    snprintf(sql, sizeof(sql), fmt, src->fts, src->fts, SCORE_ROWS);
    if (sqlite3_prepare_v2(db, sql, -1, &xprobe, NULL) != SQLITE_OK)
        goto dberr;
    /* The source's rowid span, for the estimate of common terms' frequency. */
    long long lo = 0, hi = 0;
    snprintf(sql, sizeof(sql), "SELECT (SELECT min(id) FROM %s), (SELECT max(id) FROM %s)", src->docsize,
             src->docsize); /* two subqueries: min() and max() together would scan the table */
    if (sqlite3_prepare_v2(db, sql, -1, &span, NULL) != SQLITE_OK)
        goto dberr;
    if (sqlite3_step(span) == SQLITE_ROW) {
        lo = sqlite3_column_int64(span, 0);
        hi = sqlite3_column_int64(span, 1);
    }
    for (size_t i = 0; i < nterms; i++) {
        long long df, newest;
        buf_reset(&expr);
        buf_printf(&expr, "\"%s\"", terms[i]);
        if (probe(tprobe, expr.data, &df, &newest))
            goto dberr;
        if (df == 0)
            continue;
        if (df >= TERM_PROBE && hi > newest)
            df = (long long)((double)TERM_PROBE * (double)(hi - lo + 1) / (double)(hi - newest + 1));
        td[nt].term = terms[i];
        td[nt].df = df;
        nt++;
    }
    if (!nt)
        goto out;
    qsort(td, nt, sizeof(td[0]), cmp_df);

    if (q->product_id) {
        /* The candidate rows are one product's few passages: every term counts. */
        rc = run_match(db, src, td, nt, " OR ", 0, q, hits, n, cap, err, errlen);
        goto out;
    }
    /* The rarest terms whose documents fit the budget, OR-ed: BM25's best rows
     * are nearly always among them, and scoring them is cheap. */
    long long sum = 0;
    size_t use = 0;
    while (use < nt && sum + td[use].df <= SCORE_ROWS)
        sum += td[use++].df;
    if (use) {
        rc = run_match(db, src, td, use, " OR ", 0, q, hits, n, cap, err, errlen);
        goto out;
    }
    /* Every term is common: AND the rarest ones, adding the next while more
     * than SCORE_ROWS rows match and the AND still matches something; score
     * at most the SCORE_ROWS newest matches of the result. */
    long long count = SCORE_ROWS, newest = 0;
    size_t m = 1;
    buf_reset(&expr);
    buf_printf(&expr, "\"%s\"", td[0].term);
    if (probe(xprobe, expr.data, &count, &newest))
        goto dberr;
    while (m < nt && count >= SCORE_ROWS) {
        long long c2, n2;
        buf_printf(&expr, " AND \"%s\"", td[m].term);
        if (probe(xprobe, expr.data, &c2, &n2))
            goto dberr;
        if (c2 == 0)
            break;
        count = c2;
        newest = n2;
        m++;
    }
    rc = run_match(db, src, td, m, " AND ", count >= SCORE_ROWS ? newest : 0, q, hits, n, cap, err, errlen);
    goto out;
dberr:
    snprintf(err, errlen, "search: %s", sqlite3_errmsg(db));
    rc = AISLE_EDB;
out:
    sqlite3_finalize(tprobe);
    sqlite3_finalize(xprobe);
    sqlite3_finalize(span);
    buf_release(&expr);
    return rc;
}

/* Free the strings of hits[0..n), not the array. */
static void free_hit_strings(struct lex_hit *hits, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(hits[i].id);
        free(hits[i].product_id);
        free(hits[i].title);
        free(hits[i].text);
    }
}

void lex_hits_free(struct lex_hit *hits, size_t n)
{
    free_hit_strings(hits, n);
    free(hits);
}

int lex_search(struct store *s, const struct lex_query *q, struct lex_hit **out, size_t *nout, char *err,
               size_t errlen)
{
    if (!q->k || q->k > LEX_MAX_K) {
        snprintf(err, errlen, "k must be from 1 to %d", LEX_MAX_K);
        return AISLE_EINVAL;
    }
    char **terms = NULL;
    int nt = lex_terms(q->text, strlen(q->text), 1, &terms, LEX_MAX_TERMS);
    if (nt == 0) {
        /* Only stop words ("what is it?"): search them rather than nothing. */
        free(terms);
        terms = NULL;
        nt = lex_terms(q->text, strlen(q->text), 0, &terms, LEX_MAX_TERMS);
    }
    if (nt < 0) {
        snprintf(err, errlen, "out of memory");
        return nt;
    }
    struct lex_hit *hits = NULL;
    size_t n = 0, cap = 0;
    int rc = nt > 0 ? rank_register(store_db(s), err, errlen) : 0;
    int mask = q->sources ? q->sources : LEX_ALL;
    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]) && !rc && nt > 0; i++)
        if (mask & sources[i].mask)
            rc = search_source(store_db(s), &sources[i], terms, (size_t)nt, q, &hits, &n, &cap, err, errlen);
    free(terms);
    if (rc) {
        lex_hits_free(hits, n);
        return rc;
    }
    if (n > 1) /* qsort(NULL, 0, ...) is undefined behaviour (found by fuzz/query_fuzz.c) */
        qsort(hits, n, sizeof(*hits), cmp_hit);
    if (n > q->k) {
        free_hit_strings(hits + q->k, n - q->k);
        n = q->k;
    }
    *out = hits;
    *nout = n;
    return 0;
}
