/*
 * eval.c — candidate-ranking evaluation sets, their reader and metrics (see
 * eval.h).
 */
#include "retrieval/eval.h"

#include "core/error.h"
#include "core/hset.h"
#include "core/lineio.h"
#include "retrieval/lexical.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int eval_tsv_split(const char *s, size_t len, struct buf *out, size_t *offs, size_t max, size_t *nf,
                   size_t *bad)
{
    size_t n = 0, i = 0;
    buf_reset(out);
    for (;;) {
        if (n == max)
            return AISLE_ETOOBIG;
        offs[n] = out->len;
        if (i < len && s[i] == '"') {
            i++;
            for (;;) {
                if (i >= len) {
                    *nf = n;
                    return 1; /* the quoted field goes on on the next line */
                }
                if (s[i] == '"') {
                    if (i + 1 < len && s[i + 1] == '"') {
                        if (buf_putc(out, '"'))
                            return AISLE_ENOMEM;
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (buf_putc(out, s[i++]))
                    return AISLE_ENOMEM;
            }
            if (i < len && s[i] != '\t') {
                *bad = i;
                return AISLE_EFORMAT;
            }
        } else {
            while (i < len && s[i] != '\t') {
                if (s[i] == '"') {
                    *bad = i;
                    return AISLE_EFORMAT;
                }
                if (buf_putc(out, s[i++]))
                    return AISLE_ENOMEM;
            }
        }
        if (buf_putc(out, '\0'))
            return AISLE_ENOMEM;
        n++;
        if (i >= len)
            break;
        i++; /* the tab */
    }
    *nf = n;
    return 0;
}

void eval_table_release(struct eval_table *t)
{
    if (t->cells)
        for (size_t i = 0; i < t->nrows * t->ncols; i++)
            free(t->cells[i]);
    if (t->cols)
        for (size_t i = 0; i < t->ncols; i++)
            free(t->cols[i]);
    free(t->cells);
    free(t->cols);
    free(t->line);
    memset(t, 0, sizeof(*t));
}

int eval_table_col(const struct eval_table *t, const char *name)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (!strcmp(t->cols[i], name))
            return (int)i;
    return -1;
}

/* Line source: a lineio or bytes in memory. */
struct src {
    struct lineio *io;
    const char *data;
    size_t len, pos;
    size_t lineno;
};

static int src_next(struct src *r, const char **line, size_t *len, char *err, size_t errlen, const char *name)
{
    if (r->io) {
        int rc = lineio_next(r->io, line, len);
        r->lineno = (size_t)r->io->lineno;
        if (rc && rc != AISLE_EEOF)
            snprintf(err, errlen, "%s:%zu: %s", name, r->lineno, r->io->err[0] ? r->io->err : aisle_strerror(rc));
        return rc;
    }
    if (r->pos >= r->len)
        return AISLE_EEOF;
    const char *s = r->data + r->pos, *nl = memchr(s, '\n', r->len - r->pos);
    size_t n = nl ? (size_t)(nl - s) : r->len - r->pos;
    r->pos += n + (nl != NULL);
    r->lineno++;
    if (n > EVAL_MAX_RECORD) {
        snprintf(err, errlen, "%s:%zu: line longer than %u bytes", name, r->lineno, EVAL_MAX_RECORD);
        return AISLE_ETOOBIG;
    }
    *line = s;
    *len = n;
    return 0;
}

static int read_table(struct eval_table *t, struct src *r, const char *name, char *err, size_t errlen)
{
    struct buf rec, fields;
    buf_init(&rec, EVAL_MAX_RECORD);
    buf_init(&fields, EVAL_MAX_RECORD + EVAL_MAX_FIELDS);
    size_t offs[EVAL_MAX_FIELDS], nf = 0, cap = 0;
    memset(t, 0, sizeof(*t));
    int rc;
    for (;;) {
        const char *line;
        size_t len, bad = 0;
        buf_reset(&rec);
        if ((rc = src_next(r, &line, &len, err, errlen, name))) {
            if (rc == AISLE_EEOF) {
                rc = 0;
                if (!t->cols) {
                    snprintf(err, errlen, "%s: empty file (expected a header line)", name);
                    rc = AISLE_EFORMAT;
                }
            }
            break;
        }
        size_t first = r->lineno;
        if (len && line[len - 1] == '\r')
            len--;
        if (!len && t->cols)
            continue;
        if (buf_append(&rec, line, len)) {
            rc = AISLE_ETOOBIG;
            snprintf(err, errlen, "%s:%zu: record longer than %u bytes", name, first, EVAL_MAX_RECORD);
            break;
        }
        while ((rc = eval_tsv_split(rec.data ? rec.data : "", rec.len, &fields, offs, EVAL_MAX_FIELDS, &nf, &bad)) ==
               1) {
            rc = src_next(r, &line, &len, err, errlen, name);
            if (rc == AISLE_EEOF) {
                snprintf(err, errlen, "%s:%zu: quoted field never closed", name, first);
                rc = AISLE_EFORMAT;
            }
            if (rc)
                goto out;
            if (buf_putc(&rec, '\n') || buf_append(&rec, line, len)) {
                rc = AISLE_ETOOBIG;
                snprintf(err, errlen, "%s:%zu: record longer than %u bytes", name, first, EVAL_MAX_RECORD);
                goto out;
            }
        }
        if (rc == AISLE_EFORMAT) {
            snprintf(err, errlen, "%s:%zu: stray quote at byte %zu of the record", name, first, bad);
            break;
        }
        if (rc) {
            snprintf(err, errlen, "%s:%zu: %s", name, first,
                     rc == AISLE_ETOOBIG ? "more than 64 fields" : aisle_strerror(rc));
            break;
        }
        if (!t->cols) {
            t->cols = calloc(nf, sizeof(char *));
            if (!t->cols) {
                rc = AISLE_ENOMEM;
                break;
            }
            t->ncols = nf;
            for (size_t i = 0; i < nf; i++)
                if (!(t->cols[i] = strdup(fields.data + offs[i]))) {
                    rc = AISLE_ENOMEM;
                    goto out;
                }
            continue;
        }
        if (nf != t->ncols) {
            snprintf(err, errlen, "%s:%zu: %zu fields, the header has %zu", name, first, nf, t->ncols);
            rc = AISLE_EFORMAT;
            break;
        }
        if (t->nrows == EVAL_MAX_ROWS) {
            snprintf(err, errlen, "%s:%zu: more than %d rows", name, first, EVAL_MAX_ROWS);
            rc = AISLE_ETOOBIG;
            break;
        }
        if (t->nrows == cap) {
            size_t nc = cap ? cap * 2 : 256;
            char **ncells = realloc(t->cells, nc * t->ncols * sizeof(char *));
            if (ncells)
                t->cells = ncells;
            size_t *nl = realloc(t->line, nc * sizeof(size_t));
            if (nl)
                t->line = nl;
            if (!ncells || !nl) {
                rc = AISLE_ENOMEM;
                break;
            }
            cap = nc;
        }
        char **row = t->cells + t->nrows * t->ncols;
        for (size_t i = 0; i < nf; i++)
            row[i] = NULL;
        t->line[t->nrows] = first;
        t->nrows++;
        for (size_t i = 0; i < nf; i++)
            if (!(row[i] = strdup(fields.data + offs[i]))) {
                rc = AISLE_ENOMEM;
                goto out;
            }
    }
out:
    if (rc == AISLE_ENOMEM)
        snprintf(err, errlen, "%s: out of memory", name);
    buf_release(&rec);
    buf_release(&fields);
    if (rc)
        eval_table_release(t);
    return rc;
}

int eval_table_parse(struct eval_table *t, const char *name, const char *data, size_t len, char *err,
                     size_t errlen)
{
    struct src r = {.data = data, .len = len};
    return read_table(t, &r, name, err, errlen);
}

int eval_table_read(struct eval_table *t, const char *path, char *err, size_t errlen)
{
    struct lineio io;
    int rc = lineio_open(&io, path, EVAL_MAX_RECORD);
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, io.err[0] ? io.err : aisle_strerror(rc));
        return rc;
    }
    struct src r = {.io = &io};
    rc = read_table(t, &r, path, err, errlen);
    lineio_close(&io);
    return rc;
}

static enum rr_source pqa_source(const char *s)
{
    if (!strcmp(s, "CQA"))
        return RR_QA;
    if (!strcmp(s, "bullet"))
        return RR_BULLET;
    if (!strcmp(s, "review"))
        return RR_REVIEW;
    if (!strcmp(s, "attribute"))
        return RR_ATTRIBUTE;
    return RR_DESCRIPTION; /* Desc, OSP (on-site publication) */
}

void eval_set_release(struct eval_set *s)
{
    eval_table_release(&s->t);
    free(s->q);
    free(s->c);
    memset(s, 0, sizeof(*s));
}

int eval_set_from_table(struct eval_set *s, struct eval_table *t, const char *name, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->t = *t;
    memset(t, 0, sizeof(*t));
    int cq = eval_table_col(&s->t, "qid"), cques = eval_table_col(&s->t, "question");
    int ccand = eval_table_col(&s->t, "candidate"), clab = eval_table_col(&s->t, "label");
    int csrc = eval_table_col(&s->t, "source");
    struct hset ids;
    hset_init(&ids);
    size_t *count = NULL, *next = NULL;
    int rc = AISLE_EFORMAT;
    if (cq < 0 || cques < 0 || ccand < 0 || clab < 0) {
        snprintf(err, errlen, "%s:1: header lacks %s (expected qid, question, candidate, label)", name,
                 cq < 0 ? "qid" : cques < 0 ? "question" : ccand < 0 ? "candidate" : "label");
        goto fail;
    }
    size_t n = s->t.nrows;
    s->q = calloc(n ? n : 1, sizeof(*s->q));
    s->c = calloc(n ? n : 1, sizeof(*s->c));
    count = calloc(n ? n : 1, sizeof(size_t));
    next = calloc(n ? n : 1, sizeof(size_t));
    uint64_t *qof = calloc(n ? n : 1, sizeof(uint64_t));
    if (!s->q || !s->c || !count || !next || !qof) {
        free(qof);
        rc = AISLE_ENOMEM;
        snprintf(err, errlen, "%s: out of memory", name);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        char **row = s->t.cells + i * s->t.ncols;
        const char *lab = row[clab];
        if (strcmp(lab, "0") && strcmp(lab, "1")) {
            snprintf(err, errlen, "%s:%zu: label: expected 0 or 1, not '%.20s'", name, s->t.line[i], lab);
            free(qof);
            goto fail;
        }
        uint64_t qi;
        int put = hset_get(&ids, row[cq], &qi) ? 0 : hset_put(&ids, row[cq], (uint64_t)s->nq);
        if (put < 0) {
            free(qof);
            rc = AISLE_ENOMEM;
            goto fail;
        }
        if (put == 1) {
            qi = s->nq++;
            s->q[qi].qid = row[cq];
            s->q[qi].question = row[cques];
        }
        qof[i] = qi;
        count[qi]++;
    }
    size_t at = 0;
    for (size_t q = 0; q < s->nq; q++) {
        s->q[q].first = next[q] = at;
        s->q[q].n = count[q];
        at += count[q];
    }
    for (size_t i = 0; i < n; i++) {
        char **row = s->t.cells + i * s->t.ncols;
        struct eval_cand *c = &s->c[next[qof[i]]++];
        c->text = row[ccand];
        c->label = row[clab][0] == '1';
        c->source = csrc >= 0 ? pqa_source(row[csrc]) : RR_ATTRIBUTE;
    }
    s->nc = n;
    free(qof);
    free(count);
    free(next);
    hset_release(&ids);
    return 0;
fail:
    free(count);
    free(next);
    hset_release(&ids);
    eval_set_release(s);
    return rc;
}

int eval_set_read(struct eval_set *s, const char *path, char *err, size_t errlen)
{
    struct eval_table t;
    int rc = eval_table_read(&t, path, err, errlen);
    if (rc)
        return rc;
    return eval_set_from_table(s, &t, path, err, errlen);
}

/* Terms of each candidate (stop words dropped) as hashes, sorted and unique
 * per document for df, plus term frequencies for scoring. */
struct bag {
    uint64_t *h; /* (n) term hashes in text order */
    size_t n;
};

static int bag_of(const char *text, struct bag *b)
{
    char **t;
    int n = lex_terms(text, strlen(text), 1, &t, ENC_MAX_TERMS);
    if (n < 0)
        return n;
    b->h = malloc(((size_t)n + 1) * sizeof(uint64_t));
    if (!b->h) {
        free(t);
        return AISLE_ENOMEM;
    }
    for (int i = 0; i < n; i++)
        b->h[i] = hset_hash(HSET_FNV_SEED, t[i], strlen(t[i]));
    b->n = (size_t)n;
    free(t);
    return 0;
}

/* lex_terms returns each term once, so a bag is a set: tf is 1 for every term
 * present. That is BM25 with binary tf, which is what short passages have
 * anyway; document length is the number of distinct terms. */
static int bag_has(const struct bag *b, uint64_t h)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->h[i] == h)
            return 1;
    return 0;
}

struct df_ent {
    uint64_t h;
    size_t df;
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int eval_bm25(const struct eval_set *s, double *score)
{
    struct bag *cb = calloc(s->nc ? s->nc : 1, sizeof(*cb));
    uint64_t *all = NULL;
    int rc = AISLE_ENOMEM;
    if (!cb)
        return rc;
    size_t total = 0;
    for (size_t i = 0; i < s->nc; i++) {
        if ((rc = bag_of(s->c[i].text, &cb[i])))
            goto out;
        total += cb[i].n;
    }
    rc = AISLE_ENOMEM;
    all = malloc((total ? total : 1) * sizeof(uint64_t));
    if (!all)
        goto out;
    size_t k = 0;
    for (size_t i = 0; i < s->nc; i++)
        for (size_t j = 0; j < cb[i].n; j++)
            all[k++] = cb[i].h[j];
    qsort(all, total, sizeof(uint64_t), cmp_u64);
    double avgdl = s->nc ? (double)total / (double)s->nc : 1.0, N = (double)s->nc;
    if (avgdl <= 0)
        avgdl = 1;
    for (size_t q = 0; q < s->nq; q++) {
        struct bag qb = {0};
        if ((rc = bag_of(s->q[q].question, &qb)))
            goto out;
        for (size_t c = s->q[q].first; c < s->q[q].first + s->q[q].n; c++) {
            double sc = 0, dl = (double)cb[c].n;
            for (size_t t = 0; t < qb.n; t++) {
                if (!bag_has(&cb[c], qb.h[t]))
                    continue;
                /* df by binary search in the sorted list of all terms */
                size_t lo = 0, hi = total;
                while (lo < hi) {
                    size_t mid = (lo + hi) / 2;
                    if (all[mid] < qb.h[t])
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                size_t end = lo;
                while (end < total && all[end] == qb.h[t])
                    end++;
                double df = (double)(end - lo);
                double idf = log(1.0 + (N - df + 0.5) / (df + 0.5));
                const double k1 = 1.2, bb = 0.75;
                sc += idf * (k1 + 1.0) / (1.0 + k1 * (1.0 - bb + bb * dl / avgdl));
            }
            score[c] = sc;
        }
        free(qb.h);
    }
    rc = 0;
out:
    for (size_t i = 0; i < s->nc; i++)
        free(cb[i].h);
    free(cb);
    free(all);
    return rc;
}

int eval_dense(const struct eval_set *s, const struct encoder *e, double *score)
{
    float *qv = malloc((size_t)e->D * sizeof(float)), *cv = malloc((size_t)e->D * sizeof(float));
    int rc = AISLE_ENOMEM;
    if (!qv || !cv)
        goto out;
    for (size_t q = 0; q < s->nq; q++) {
        if ((rc = enc_embed(e, s->q[q].question, strlen(s->q[q].question), qv)))
            goto out;
        for (size_t c = s->q[q].first; c < s->q[q].first + s->q[q].n; c++) {
            if ((rc = enc_embed(e, s->c[c].text, strlen(s->c[c].text), cv)))
                goto out;
            double d = 0;
            for (int j = 0; j < e->D; j++)
                d += (double)qv[j] * cv[j];
            score[c] = d;
        }
    }
    rc = 0;
out:
    free(qv);
    free(cv);
    return rc;
}

int eval_coverage(const struct eval_set *s, double *coverage, size_t *nterms)
{
    for (size_t q = 0; q < s->nq; q++) {
        struct bag qb = {0};
        int rc = bag_of(s->q[q].question, &qb);
        if (rc)
            return rc;
        for (size_t c = s->q[q].first; c < s->q[q].first + s->q[q].n; c++) {
            struct bag cb = {0};
            if ((rc = bag_of(s->c[c].text, &cb))) {
                free(qb.h);
                return rc;
            }
            size_t hit = 0;
            for (size_t t = 0; t < qb.n; t++)
                hit += (size_t)bag_has(&cb, qb.h[t]);
            coverage[c] = qb.n ? (double)hit / (double)qb.n : 0.0;
            nterms[c] = cb.n;
            free(cb.h);
        }
        free(qb.h);
    }
    return 0;
}

struct ranked {
    double score;
    size_t idx;
};

static int cmp_ranked(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sort pool q by score into r (n entries). */
static void rank_pool(const struct eval_set *s, size_t q, const double *score, struct ranked *r)
{
    for (size_t i = 0; i < s->q[q].n; i++) {
        r[i].idx = s->q[q].first + i;
        r[i].score = score[r[i].idx];
    }
    qsort(r, s->q[q].n, sizeof(*r), cmp_ranked);
}

int eval_ranks(const struct eval_set *s, const double *score, int *rank)
{
    size_t maxn = 1;
    for (size_t q = 0; q < s->nq; q++)
        maxn = s->q[q].n > maxn ? s->q[q].n : maxn;
    struct ranked *r = malloc(maxn * sizeof(*r));
    if (!r)
        return AISLE_ENOMEM;
    for (size_t q = 0; q < s->nq; q++) {
        rank_pool(s, q, score, r);
        for (size_t i = 0; i < s->q[q].n; i++)
            rank[r[i].idx] = (int)i;
    }
    free(r);
    return 0;
}

static double dcg(const int *labels, size_t n, size_t k)
{
    double d = 0;
    for (size_t i = 0; i < n && i < k; i++)
        if (labels[i])
            d += 1.0 / log2((double)i + 2.0);
    return d;
}

static double idcg(size_t npos, size_t k)
{
    double d = 0;
    for (size_t i = 0; i < npos && i < k; i++)
        d += 1.0 / log2((double)i + 2.0);
    return d;
}

void eval_metrics_add(const int *labels, size_t n, size_t npos, struct eval_metrics *m)
{
    if (!npos) {
        m->skipped++;
        return;
    }
    m->questions++;
    m->ndcg1 += dcg(labels, n, 1) / idcg(npos, 1);
    m->ndcg5 += dcg(labels, n, 5) / idcg(npos, 5);
    m->ndcg10 += dcg(labels, n, 10) / idcg(npos, 10);
    for (size_t i = 0; i < n; i++)
        if (labels[i]) {
            m->mrr += 1.0 / (double)(i + 1);
            break;
        }
    size_t h1 = 0, h5 = 0;
    for (size_t i = 0; i < n && i < 5; i++) {
        h5 += labels[i] != 0;
        h1 += i < 1 && labels[i];
    }
    m->recall1 += (double)h1 / (double)npos;
    m->recall5 += (double)h5 / (double)npos;
}

void eval_metrics_finish(struct eval_metrics *m)
{
    if (!m->questions)
        return;
    double n = (double)m->questions;
    m->ndcg1 /= n;
    m->ndcg5 /= n;
    m->ndcg10 /= n;
    m->mrr /= n;
    m->recall1 /= n;
    m->recall5 /= n;
}

void eval_metrics(const struct eval_set *s, const double *score, struct eval_metrics *m)
{
    memset(m, 0, sizeof(*m));
    size_t maxn = 1;
    for (size_t q = 0; q < s->nq; q++)
        maxn = s->q[q].n > maxn ? s->q[q].n : maxn;
    struct ranked *r = malloc(maxn * sizeof(*r));
    int *lab = malloc(maxn * sizeof(int));
    if (r && lab)
        for (size_t q = 0; q < s->nq; q++) {
            rank_pool(s, q, score, r);
            size_t npos = 0;
            for (size_t i = 0; i < s->q[q].n; i++) {
                lab[i] = s->c[r[i].idx].label;
                npos += (size_t)lab[i];
            }
            eval_metrics_add(lab, s->q[q].n, npos, m);
        }
    free(r);
    free(lab);
    eval_metrics_finish(m);
}
