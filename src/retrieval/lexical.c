/*
 * lexical.c — query building and BM25 ranking over FTS5; see lexical.h.
 *
 * Latency: FTS5's bm25() costs time per matching row, so an OR over common
 * words on a big store is slow (12-15 queries/s on 100k products, measured in
 * LIBRARIES.md). We look up each term's document frequency in the fts5vocab
 * table and OR together the rarest terms whose documents fit LEX_ROW_BUDGET.
 * When even the rarest term is over budget (all words common), we AND all the
 * terms instead, whose intersection is small, and fall back to the rarest term
 * alone only if the AND finds nothing.
 */
#include "retrieval/lexical.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/utf8.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
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

struct source_def {
    int mask;
    const char *fts, *vocab, *weights;
};

static const struct source_def sources[] = {
    {LEX_PRODUCTS, "catalog_fts", "catalog_vocab", "4.0, 2.0, 1.5, 1.0, 1.5"},
    {LEX_REVIEWS, "review_fts", "review_vocab", "1.5, 1.0"},
    {LEX_QA, "qa_fts", "qa_vocab", "1.0, 1.0"},
};

struct term_df {
    const char *term;
    long long df;
};

static int cmp_df(const void *a, const void *b)
{
    const struct term_df *x = a, *y = b;
    return x->df < y->df ? -1 : x->df > y->df;
}

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

/* Run one MATCH expression against one source, appending up to k hits. */
static int run_match(sqlite3 *db, const struct source_def *src, const char *expr, const struct lex_query *q,
                     struct lex_hit **hits, size_t *n, size_t *cap, char *err, size_t errlen)
{
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT p.id, p.source, p.product_id, p.ref_id, p.ord, p.text, p.aux, f.r, pr.title"
             " FROM (SELECT rowid AS rid, bm25(%s, %s) AS r FROM %s WHERE %s MATCH ?1 %s ORDER BY r LIMIT ?2) f"
             " JOIN passages p ON p.id = f.rid LEFT JOIN products pr ON pr.id = p.product_id ORDER BY f.r, p.id",
             src->fts, src->weights, src->fts, src->fts,
             q->product_id ? "AND rowid IN (SELECT id FROM passages WHERE product_id = ?3)" : "");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "search: %s", sqlite3_errmsg(db));
        return AISLE_EDB;
    }
    sqlite3_bind_text(st, 1, expr, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)q->k);
    if (q->product_id)
        sqlite3_bind_text(st, 3, q->product_id, -1, SQLITE_STATIC);
    int rc, ret = 0;
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
    sqlite3_finalize(st);
    return ret;
}

static int search_source(sqlite3 *db, const struct source_def *src, char **terms, size_t nterms,
                         const struct lex_query *q, struct lex_hit **hits, size_t *n, size_t *cap, char *err,
                         size_t errlen)
{
    struct term_df td[LEX_MAX_TERMS];
    size_t nt = 0;
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT doc FROM %s WHERE term = ?1", src->vocab);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "search: %s", sqlite3_errmsg(db));
        return AISLE_EDB;
    }
    for (size_t i = 0; i < nterms; i++) {
        sqlite3_bind_text(st, 1, terms[i], -1, SQLITE_STATIC);
        long long df = 0;
        if (sqlite3_step(st) == SQLITE_ROW)
            df = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (df > 0) {
            td[nt].term = terms[i];
            td[nt].df = df;
            nt++;
        }
    }
    sqlite3_finalize(st);
    if (!nt)
        return 0;
    qsort(td, nt, sizeof(td[0]), cmp_df);

    struct buf expr;
    buf_init(&expr, 0);
    int rc = 0;
    size_t before = *n;
    /* With a product filter the candidate rows are that product's few passages,
     * so every term can take part. */
    long long budget = q->product_id ? -1 : LEX_ROW_BUDGET, sum = 0;
    size_t use = 0;
    while (use < nt && (budget < 0 || use == 0 || sum + td[use].df <= budget)) {
        sum += td[use].df;
        use++;
    }
    if (budget >= 0 && td[0].df > budget && nt > 1) {
        /* Every term is common: their intersection is the candidate set. */
        for (size_t i = 0; i < nt; i++)
            buf_printf(&expr, "%s\"%s\"", i ? " AND " : "", td[i].term);
        rc = run_match(db, src, expr.data, q, hits, n, cap, err, errlen);
        if (rc || *n > before)
            goto out;
        buf_reset(&expr);
        use = 1;
    }
    for (size_t i = 0; i < use; i++)
        buf_printf(&expr, "%s\"%s\"", i ? " OR " : "", td[i].term);
    rc = run_match(db, src, expr.data, q, hits, n, cap, err, errlen);
out:
    buf_release(&expr);
    return rc;
}

void lex_hits_free(struct lex_hit *hits, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(hits[i].id);
        free(hits[i].product_id);
        free(hits[i].title);
        free(hits[i].text);
    }
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
    int rc = 0;
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
        for (size_t i = q->k; i < n; i++) {
            free(hits[i].id);
            free(hits[i].product_id);
            free(hits[i].title);
            free(hits[i].text);
        }
        n = q->k;
    }
    *out = hits;
    *nout = n;
    return 0;
}
