/*
 * resolve.c — product resolution: part numbers, title words, the product page,
 * earlier turns, or a catalog search (see resolve.h for the order and rules).
 *
 * Part numbers need no index of their own: the catalog's FTS5 index already
 * holds every title, bullet and attribute token, and a model number is one
 * token there ("w10130695") or a phrase of adjacent tokens ("frt18-drh" ->
 * "frt18" "drh"). A candidate that matches more than PART_MAX_PRODUCTS products
 * ("64gb") identifies nothing and is ignored.
 *
 * Title confidence = 0.6 x (share of the question's content words found in the
 * title) + 0.4 when the title's first word (the brand, in practice) is among
 * them, times 0.7 when the runner-up's title matches as many words: a product
 * is named when the question says most of what its title says and no other
 * product's title says as much.
 */
#include "retrieval/resolve.h"

#include "core/error.h"
#include "retrieval/errfmt.h"
#include "retrieval/lexical.h"

#include <ctype.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PART_MAX_PRODUCTS 3 /* a "part number" shared by more products names none */
#define PART_MAX_CANDIDATES 8
#define TITLE_HITS 40       /* catalog passages read for title matching */

const char *resolve_why_name(enum resolve_why why)
{
    switch (why) {
    case RESOLVE_PAGE: return "page";
    case RESOLVE_PART_NUMBER: return "part_number";
    case RESOLVE_TITLE: return "title";
    case RESOLVE_PREVIOUS: return "previous_turn";
    case RESOLVE_CATALOG: return "catalog";
    case RESOLVE_NONE: break;
    }
    return "none";
}

void resolve_conv_push(struct resolve_conv *c, const struct resolution *r)
{
    if (c->n == RESOLVE_MAX_TURNS) {
        memmove(&c->turns[0], &c->turns[1], sizeof(c->turns[0]) * (RESOLVE_MAX_TURNS - 1));
        c->n--;
    }
    c->turns[c->n].why = r->why;
    snprintf(c->turns[c->n].product, RESOLVE_ID_MAX, "%s", r->n == 1 ? r->products[0] : "");
    c->n++;
}

const char *resolve_conv_current(const struct resolve_conv *c)
{
    if (!c)
        return NULL;
    for (size_t i = c->n; i-- > 0;)
        if (c->turns[i].product[0])
            return c->turns[i].product;
    return NULL;
}

static int add_product(struct resolution *r, const char *id)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->products[i], id))
            return 0;
    if (r->n == RESOLVE_MAX_PRODUCTS || strlen(id) >= RESOLVE_ID_MAX)
        return 0;
    snprintf(r->products[r->n++], RESOLVE_ID_MAX, "%s", id);
    return 1;
}

/* ---- part numbers ---- */

static int is_sep(char c) { return c == '-' || c == '/' || c == '.'; }

/* Model/part-number candidates: ASCII runs of letters, digits and - / . with
 * at least one digit and either a letter and 4+ alphanumerics, or 6+ digits.
 * Each is written as an FTS5 phrase of its lower-cased pieces ("frt18 drh")
 * into phr and as its upper-cased alphanumerics (a product id) into id. */
static size_t part_candidates(const char *q, char phr[][72], char id[][72], size_t max)
{
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)q;
    while (*p && n < max) {
        while (*p && !(isalnum(*p) && *p < 0x80))
            p++;
        const unsigned char *s = p;
        while (*p && *p < 0x80 && (isalnum(*p) || is_sep((char)*p)))
            p++;
        size_t len = (size_t)(p - s), letters = 0, digits = 0, k = 0, m = 0;
        if (!len || len > 64)
            continue;
        while (len && is_sep((char)s[len - 1]))
            len--;
        for (size_t i = 0; i < len; i++) {
            if (isdigit(s[i]))
                digits++;
            else if (isalpha(s[i]))
                letters++;
        }
        if (!digits || !((letters && letters + digits >= 4) || digits >= 6))
            continue;
        int in_sep = 0;
        for (size_t i = 0; i < len; i++) {
            if (is_sep((char)s[i])) {
                in_sep = 1;
                continue;
            }
            if (in_sep && k)
                phr[n][k++] = ' ';
            in_sep = 0;
            phr[n][k++] = (char)tolower(s[i]);
            id[n][m++] = (char)toupper(s[i]);
        }
        phr[n][k] = '\0';
        id[n][m] = '\0';
        n++;
    }
    return n;
}

static int by_part_number(struct store *s, const char *q, struct resolution *r, char *err, size_t errlen)
{
    char phr[PART_MAX_CANDIDATES][72], ids[PART_MAX_CANDIDATES][72];
    size_t nc = part_candidates(q, phr, ids, PART_MAX_CANDIDATES);
    if (!nc)
        return 0;
    sqlite3 *db = store_db(s);
    sqlite3_stmt *byid = NULL, *fts = NULL;
    int rc = AISLE_EDB;
    if (sqlite3_prepare_v2(db, "SELECT id FROM products WHERE id = ?1", -1, &byid, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT DISTINCT p.product_id FROM catalog_fts JOIN passages p ON p.id = catalog_fts.rowid"
                           " WHERE catalog_fts MATCH ?1 LIMIT " /* one more than we accept */ "4",
                           -1, &fts, NULL) != SQLITE_OK) {
        retr_seterr(err, errlen, "part-number lookup: %s", sqlite3_errmsg(db));
        goto out;
    }
    int ambiguous = 0;
    char used[160] = "";
    for (size_t c = 0; c < nc; c++) {
        sqlite3_reset(byid);
        sqlite3_bind_text(byid, 1, ids[c], -1, SQLITE_TRANSIENT);
        int st = sqlite3_step(byid);
        if (st == SQLITE_ROW) {
            add_product(r, (const char *)sqlite3_column_text(byid, 0));
            snprintf(used + strlen(used), sizeof(used) - strlen(used), "%s%.70s", *used ? ", " : "", ids[c]);
            continue;
        }
        if (st != SQLITE_DONE) {
            retr_seterr(err, errlen, "part-number lookup: %s", sqlite3_errmsg(db));
            goto out;
        }
        char match[128];
        snprintf(match, sizeof(match), "{title bullet attribute} : \"%.70s\"", phr[c]);
        sqlite3_reset(fts);
        sqlite3_bind_text(fts, 1, match, -1, SQLITE_TRANSIENT);
        char found[PART_MAX_PRODUCTS + 1][RESOLVE_ID_MAX];
        size_t nf = 0;
        while ((st = sqlite3_step(fts)) == SQLITE_ROW)
            if (nf <= PART_MAX_PRODUCTS)
                snprintf(found[nf++], RESOLVE_ID_MAX, "%s", (const char *)sqlite3_column_text(fts, 0));
        if (st != SQLITE_DONE) {
            retr_seterr(err, errlen, "part-number lookup: %s", sqlite3_errmsg(db));
            goto out;
        }
        if (!nf)
            continue;
        if (nf > PART_MAX_PRODUCTS)
            continue; /* a common token, not an identifier */
        ambiguous |= nf > 1;
        for (size_t i = 0; i < nf; i++)
            add_product(r, found[i]);
        snprintf(used + strlen(used), sizeof(used) - strlen(used), "%s%.70s", *used ? ", " : "", phr[c]);
    }
    if (r->n) {
        r->why = RESOLVE_PART_NUMBER;
        r->confidence = ambiguous ? 0.75 : 0.95;
        snprintf(r->detail, sizeof(r->detail), "part number %.140s", used);
    }
    rc = 0;
out:
    sqlite3_finalize(byid);
    sqlite3_finalize(fts);
    return rc;
}

/* ---- title words ---- */

/* Words that say what the shopper wants to know or do, not which product. */
static const char *const generic[] = {"available", "best", "buy", "come", "comes", "cost", "deliver", "delivery",
                                      "fit", "fits", "get", "good", "know", "like", "look", "looking", "much",
                                      "need", "order", "price", "recommend", "ship", "shipping", "stock", "use",
                                      "want", "work", "works"};
static const char *const pointers[] = {"it", "its", "itself", "one", "ones", "that", "them", "these", "they",
                                       "this", "those"};

static int in_list(const char *w, const char *const *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(w, l[i]))
            return 1;
    return 0;
}

struct qwords {
    char **all; /* every term, stop words kept (for pointers) */
    int nall;
    char **content; /* stop words and generic words dropped */
    int ncontent;
    char *pointer;  /* the first pointer word, or NULL */
};

static int qwords_init(struct qwords *w, const char *q)
{
    memset(w, 0, sizeof(*w));
    size_t len = strnlen(q, LEX_MAX_QUERY);
    int n = lex_terms(q, len, 0, &w->all, LEX_MAX_TERMS);
    if (n < 0)
        return n;
    w->nall = n;
    int m = lex_terms(q, len, 1, &w->content, LEX_MAX_TERMS);
    if (m < 0) {
        free(w->all);
        return m;
    }
    int k = 0;
    for (int i = 0; i < m; i++)
        if (!in_list(w->content[i], generic, sizeof(generic) / sizeof(generic[0])))
            w->content[k++] = w->content[i];
    w->ncontent = k;
    for (int i = 0; i < n && !w->pointer; i++)
        if (in_list(w->all[i], pointers, sizeof(pointers) / sizeof(pointers[0])))
            w->pointer = w->all[i];
    return 0;
}

static void qwords_release(struct qwords *w)
{
    free(w->all);
    free(w->content);
}

/* Question content words found in a title; *brand set when the title's first
 * word is one of them. Negative on error. */
static int title_overlap(const struct qwords *w, const char *title, int *brand)
{
    char **t;
    int nt = lex_terms(title, strlen(title), 1, &t, LEX_MAX_TERMS);
    if (nt < 0)
        return nt;
    int m = 0;
    *brand = 0;
    for (int i = 0; i < w->ncontent; i++)
        for (int j = 0; j < nt; j++)
            if (!strcmp(w->content[i], t[j])) {
                m++;
                *brand |= j == 0;
                break;
            }
    free(t);
    return m;
}

struct title_result {
    double confidence;
    char product[RESOLVE_ID_MAX];
    char words[120];
    size_t nlist; /* distinct products of the catalog search, best first */
    char list[RESOLVE_MAX_PRODUCTS][RESOLVE_ID_MAX];
    struct lex_hit *hits; /* (nhits) the catalog search itself, owned */
    size_t nhits;
};

static int by_title(struct store *s, const char *q, const struct qwords *w, struct title_result *tr, char *err,
                    size_t errlen)
{
    memset(tr, 0, sizeof(*tr));
    struct lex_query lq = {.text = q, .sources = LEX_PRODUCTS, .k = TITLE_HITS};
    struct lex_hit *h = NULL;
    size_t nh = 0;
    int rc = lex_search(s, &lq, &h, &nh, err, errlen);
    if (rc)
        return rc;
    int best = -1, second = -1;
    size_t best_i = 0;
    int best_brand = 0;
    for (size_t i = 0; i < nh; i++) {
        int seen = 0;
        for (size_t k = 0; k < tr->nlist; k++)
            seen |= !strcmp(tr->list[k], h[i].product_id);
        if (seen || strlen(h[i].product_id) >= RESOLVE_ID_MAX)
            continue;
        if (tr->nlist < RESOLVE_MAX_PRODUCTS)
            snprintf(tr->list[tr->nlist++], RESOLVE_ID_MAX, "%s", h[i].product_id);
        int brand;
        int m = title_overlap(w, h[i].title, &brand);
        if (m < 0) {
            rc = m;
            retr_seterr(err, errlen, "out of memory");
            goto out;
        }
        if (m > best) {
            second = best;
            best = m;
            best_i = i;
            best_brand = brand;
        } else if (m > second) {
            second = m;
        }
    }
    tr->hits = h, tr->nhits = nh;
    h = NULL, nh = 0;
    if (best >= 2 && w->ncontent > 0) {
        double conf = 0.6 * best / w->ncontent + (best_brand ? 0.4 : 0.0);
        if (second >= best)
            conf *= 0.7;
        tr->confidence = conf > 1 ? 1 : conf;
        snprintf(tr->product, RESOLVE_ID_MAX, "%s", tr->hits[best_i].product_id);
        snprintf(tr->words, sizeof(tr->words), "%d of %d question words in the title%s", best, w->ncontent,
                 best_brand ? ", brand included" : "");
    }
out:
    lex_hits_free(h, nh);
    return rc;
}

/* ---- the decision ---- */

int resolve_product(struct store *s, const char *question, const char *page_product, const struct resolve_conv *conv,
                    struct resolution *out, char *err, size_t errlen)
{
    return resolve_product_hits(s, question, page_product, conv, out, NULL, NULL, err, errlen);
}

int resolve_product_hits(struct store *s, const char *question, const char *page_product,
                         const struct resolve_conv *conv, struct resolution *out, struct lex_hit **hits, size_t *nhits,
                         char *err, size_t errlen)
{
    struct resolution r;
    memset(&r, 0, sizeof(r));
    struct qwords w;
    int rc;
    if (!question)
        question = "";
    if (page_product && *page_product) {
        rc = store_product_exists(s, page_product);
        if (rc < 0) {
            retr_seterr(err, errlen, "%s", store_errmsg(s));
            return rc;
        }
        if (!rc) {
            retr_seterr(err, errlen, "no product '%.200s' in the store", page_product);
            return AISLE_ENOTFOUND;
        }
    } else {
        page_product = NULL;
    }
    if ((rc = by_part_number(s, question, &r, err, errlen)))
        return rc;
    if (r.n) {
        *out = r;
        if (hits)
            *hits = NULL, *nhits = 0;
        return 0;
    }
    if ((rc = qwords_init(&w, question))) {
        retr_seterr(err, errlen, "out of memory");
        return rc;
    }
    struct title_result tr;
    memset(&tr, 0, sizeof(tr));
    const char *prev = resolve_conv_current(conv);
    /* A question that points back at a current product keeps it whatever
     * title it names (below), so it needs no catalog search. */
    if ((page_product || prev) && w.pointer)
        memset(&tr, 0, sizeof(tr));
    else if ((rc = by_title(s, question, &w, &tr, err, errlen)))
        goto out;
    int named = tr.confidence >= RESOLVE_TITLE_THRESHOLD;
    if (named && (!w.pointer || (!page_product && !prev))) {
        r.why = RESOLVE_TITLE;
        r.confidence = tr.confidence;
        add_product(&r, tr.product);
        snprintf(r.detail, sizeof(r.detail), "%s", tr.words);
    } else if (page_product) {
        r.why = RESOLVE_PAGE;
        r.confidence = 1.0;
        add_product(&r, page_product);
        snprintf(r.detail, sizeof(r.detail), "the product page");
    } else if (prev && (w.pointer || w.ncontent <= 2)) {
        r.why = RESOLVE_PREVIOUS;
        r.confidence = w.pointer ? 0.85 : 0.6;
        add_product(&r, prev);
        if (w.pointer)
            snprintf(r.detail, sizeof(r.detail), "the product of an earlier turn ('%.40s' points back)", w.pointer);
        else
            snprintf(r.detail, sizeof(r.detail), "the product of an earlier turn (a short follow-up)");
    } else if (tr.nlist) {
        r.why = RESOLVE_CATALOG;
        r.confidence = 0.3;
        for (size_t i = 0; i < tr.nlist; i++)
            add_product(&r, tr.list[i]);
        snprintf(r.detail, sizeof(r.detail), "catalog search: %zu products", r.n);
    } else {
        r.why = RESOLVE_NONE;
        snprintf(r.detail, sizeof(r.detail), "no product found");
    }
    *out = r;
    if (hits) {
        *hits = tr.hits, *nhits = tr.nhits;
        tr.hits = NULL, tr.nhits = 0;
    }
out:
    lex_hits_free(tr.hits, tr.nhits);
    qwords_release(&w);
    return rc;
}
