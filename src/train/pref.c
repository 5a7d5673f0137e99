/*
 * pref.c — DPO and KTO from exported votes (pref.h). Invariants: every
 * example has exactly two sequences (2i, 2i + 1), each with at least one
 * prompt token before its completion and at most max_len tokens.
 */
#include "train/pref.h"

#include "core/error.h"
#include "tok/tok.h"
#include "train/llama_train.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREF_MAX_LINE (16u << 20) /* bytes of one JSON line */

/* One example as read: its prompt and completions' token ranges in a scratch
 * vector (DPO: chosen then rejected; KTO: completion). */
struct raw {
    size_t p0, p1, c0, c1, r0, r1;
    signed char label;
};

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static const char *str_of(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int encode(const struct tok *t, struct tok_cache *c, const char *s, unsigned flags, struct tok_ids *v,
                  size_t *a, size_t *b)
{
    *a = v->len;
    int rc = tok_encode(t, c, s, strlen(s), flags, v);
    *b = v->len;
    return rc;
}

void pref_free(struct pref_set *s)
{
    free(s->ids);
    free(s->off);
    free(s->start);
    free(s->label);
    memset(s, 0, sizeof *s);
}

int pref_seq_len(const struct pref_set *s, size_t seq)
{
    return (int)(s->off[seq + 1] - s->off[seq]);
}

int pref_max_len(const struct pref_set *s)
{
    int m = 0;
    for (size_t i = 0; i < 2 * s->n; i++)
        if (pref_seq_len(s, i) > m)
            m = pref_seq_len(s, i);
    return m;
}

/* Append prompt [p0, p1) + completion [c0, c1) + end of v as one sequence,
 * cut to max_len tokens. */
static void put_seq(struct pref_set *s, size_t *n_ids, size_t seq, const struct tok_ids *v, size_t p0, size_t p1,
                    size_t c0, size_t c1, int32_t end, int max_len)
{
    size_t at = *n_ids;
    s->off[seq] = at;
    s->start[seq] = (int)(p1 - p0);
    memcpy(s->ids + at, v->ids + p0, (p1 - p0) * sizeof(int32_t));
    at += p1 - p0;
    memcpy(s->ids + at, v->ids + c0, (c1 - c0) * sizeof(int32_t));
    at += c1 - c0;
    s->ids[at++] = end;
    if (at - s->off[seq] > (size_t)max_len)
        at = s->off[seq] + (size_t)max_len;
    *n_ids = at;
    s->off[seq + 1] = at;
}

int pref_load(struct pref_set *s, const char *path, const struct tok *t, int max_len, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, errlen, AISLE_EIO, "%s: cannot open", path);
    int rc = pref_load_stream(s, f, path, t, max_len, err, errlen);
    fclose(f);
    return rc;
}

int pref_load_stream(struct pref_set *s, FILE *f, const char *path, const struct tok *t, int max_len, char *err,
                     size_t errlen)
{
    memset(s, 0, sizeof *s);
    int32_t end = tok_find(t, TOK_END, strlen(TOK_END));
    if (end < 0)
        return fail(err, errlen, AISLE_EINVAL, "%s: the tokenizer has no %s token (not a chat model's)", path, TOK_END);
    if (max_len < 3)
        return fail(err, errlen, AISLE_EINVAL, "%s: a context of %d tokens is too short", path, max_len);
    struct tok_cache *cache = tok_cache_new(t);
    struct tok_ids v;
    tok_ids_init(&v, 0);
    struct raw *raw = NULL;
    size_t n_raw = 0, cap_raw = 0, lineno = 0, lcap = 0;
    char *line = NULL;
    ssize_t len;
    int rc = 0;
    if (!cache) {
        rc = fail(err, errlen, AISLE_ENOMEM, "out of memory");
        goto done;
    }
    while ((len = getline(&line, &lcap, f)) > 0) {
        lineno++;
        if ((size_t)len > PREF_MAX_LINE) {
            rc = fail(err, errlen, AISLE_EFORMAT, "%s:%zu: line longer than %u bytes", path, lineno, PREF_MAX_LINE);
            goto done;
        }
        if (strspn(line, " \t\r\n") == (size_t)len)
            continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &je);
        if (!o || !json_is_object(o)) {
            rc = fail(err, errlen, AISLE_EFORMAT, "%s:%zu: %s", path, lineno, o ? "not a JSON object" : je.text);
            json_decref(o);
            goto done;
        }
        const char *prompt = str_of(o, "prompt"), *chosen = str_of(o, "chosen"), *rejected = str_of(o, "rejected"),
                   *completion = str_of(o, "completion");
        json_t *label = json_object_get(o, "label");
        enum pref_kind kind = json_object_get(o, "chosen") ? PREF_DPO : PREF_KTO;
        if (!s->kind)
            s->kind = kind;
        const char *why = NULL;
        if (kind != s->kind)
            why = s->kind == PREF_DPO ? "a KTO row in a file of DPO pairs" : "a DPO pair in a file of KTO rows";
        else if (!prompt)
            why = "no string \"prompt\"";
        else if (!*prompt)
            why = "an empty \"prompt\"";
        else if (kind == PREF_DPO && (!chosen || !rejected))
            why = "a DPO pair needs strings \"chosen\" and \"rejected\"";
        else if (kind == PREF_KTO && (!completion || !json_is_boolean(label)))
            why = "a KTO row needs a string \"completion\" and a boolean \"label\" (or a DPO pair: \"chosen\", "
                  "\"rejected\")";
        if (why) {
            rc = fail(err, errlen, AISLE_EFORMAT, "%s:%zu: %s", path, lineno, why);
            json_decref(o);
            goto done;
        }
        if (n_raw == cap_raw) {
            cap_raw = cap_raw ? 2 * cap_raw : 256;
            struct raw *nr = realloc(raw, cap_raw * sizeof *raw);
            if (!nr) {
                json_decref(o);
                rc = fail(err, errlen, AISLE_ENOMEM, "out of memory");
                goto done;
            }
            raw = nr;
        }
        struct raw *r = &raw[n_raw];
        memset(r, 0, sizeof *r);
        r->label = kind == PREF_DPO ? 1 : (signed char)json_is_true(label);
        rc = encode(t, cache, prompt, TOK_PARSE_SPECIAL, &v, &r->p0, &r->p1);
        if (!rc)
            rc = encode(t, cache, kind == PREF_DPO ? chosen : completion, 0, &v, &r->c0, &r->c1);
        if (!rc && kind == PREF_DPO)
            rc = encode(t, cache, rejected, 0, &v, &r->r0, &r->r1);
        json_decref(o);
        if (rc) {
            rc = fail(err, errlen, rc, "%s:%zu: cannot tokenize: %s", path, lineno, aisle_strerror(rc));
            goto done;
        }
        n_raw++;
    }
    if (ferror(f)) {
        rc = fail(err, errlen, AISLE_EIO, "%s: read error", path);
        goto done;
    }
    /* Keep the examples that fit; the sequences in order. */
    size_t *keep = malloc((n_raw ? n_raw : 1) * sizeof *keep), n_keep = 0, total = 0;
    if (!keep) {
        rc = fail(err, errlen, AISLE_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_raw; i++) {
        const struct raw *r = &raw[i];
        size_t p = r->p1 - r->p0, a = p + (r->c1 - r->c0) + 1, b = p + (r->r1 - r->r0) + 1;
        if (a > (size_t)max_len || (s->kind == PREF_DPO && b > (size_t)max_len)) {
            s->skipped++;
            continue;
        }
        keep[n_keep++] = i;
        total += a + (s->kind == PREF_DPO ? b : (size_t)max_len);
    }
    if (!n_keep) {
        free(keep);
        rc = fail(err, errlen, AISLE_EINVAL, "%s: no example fits a context of %d tokens (%zu read)", path, max_len,
                  n_raw);
        goto done;
    }
    s->n = n_keep;
    s->ids = malloc(total * sizeof *s->ids);
    s->off = malloc((2 * n_keep + 1) * sizeof *s->off);
    s->start = malloc(2 * n_keep * sizeof *s->start);
    s->label = malloc(n_keep);
    if (!s->ids || !s->off || !s->start || !s->label) {
        free(keep);
        rc = fail(err, errlen, AISLE_ENOMEM, "out of memory");
        goto done;
    }
    size_t n_ids = 0;
    for (size_t j = 0; j < n_keep; j++) {
        const struct raw *r = &raw[keep[j]], *next = &raw[keep[(j + 1) % n_keep]];
        s->label[j] = r->label;
        if (s->kind == PREF_KTO)
            r->label ? s->n_up++ : s->n_down++;
        put_seq(s, &n_ids, 2 * j, &v, r->p0, r->p1, r->c0, r->c1, end, max_len);
        if (s->kind == PREF_DPO)
            put_seq(s, &n_ids, 2 * j + 1, &v, r->p0, r->p1, r->r0, r->r1, end, max_len);
        else
            put_seq(s, &n_ids, 2 * j + 1, &v, r->p0, r->p1, next->c0, next->c1, end, max_len);
    }
    free(keep);
done:
    if (rc)
        pref_free(s);
    free(line);
    free(raw);
    tok_ids_release(&v);
    tok_cache_free(cache);
    return rc;
}

static double sigmoid(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

/* log(1 + e^x) without overflow. */
static double softplus(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

double pref_dpo_loss(double beta, double lp_c, double ref_c, double lp_r, double ref_r, double *g_c, double *g_r)
{
    double m = (lp_c - ref_c) - (lp_r - ref_r), z = beta * m;
    double s = sigmoid(-z); /* d softplus(-z) / d(-z) */
    *g_c = -beta * s;
    *g_r = beta * s;
    return softplus(-z);
}

double pref_kto_loss(double beta, int up, double lp, double ref, double z0, double lam_d, double lam_u, double *g)
{
    double r = lp - ref;
    if (up) {
        double s = sigmoid(beta * (r - z0));
        *g = -lam_d * beta * s * (1 - s);
        return lam_d * (1 - s);
    }
    double s = sigmoid(beta * (z0 - r));
    *g = lam_u * beta * s * (1 - s);
    return lam_u * (1 - s);
}

/* Rows for sequences seqs[0..R) at row stride T: inputs, next-token targets,
 * weight 1 where the target is a completion token; padding weighs 0. */
static void fill_rows(const struct pref_set *s, const size_t *seqs, int R, int T, int32_t *tokens, int32_t *targets,
                      float *weights)
{
    for (int r = 0; r < R; r++) {
        const int32_t *x = s->ids + s->off[seqs[r]];
        int L = pref_seq_len(s, seqs[r]), st = s->start[seqs[r]];
        int32_t *tk = tokens + (size_t)r * T, *tg = targets + (size_t)r * T;
        float *w = weights + (size_t)r * T;
        for (int t = 0; t < T; t++) {
            if (t < L - 1) {
                tk[t] = x[t];
                tg[t] = x[t + 1];
                w[t] = t + 1 >= st ? 1.0f : 0.0f;
            } else {
                tk[t] = x[L - 1];
                tg[t] = x[L - 1];
                w[t] = 0.0f;
            }
        }
    }
}

/* log pi of row r's completion: minus its weighted cross-entropy. */
static double row_logp(const struct ltr_model *m, const float *weights, int r, int T)
{
    const float *l = m->acts.losses + (size_t)r * T, *w = weights + (size_t)r * T;
    double s = 0;
    for (int t = 0; t < T; t++)
        s -= (double)w[t] * l[t];
    return s;
}

int pref_micro_batch(struct ltr_model *m, const struct pref_set *s, const double *ref, const size_t *idx, int k,
                     const struct pref_params *p, float scale, int backward, int32_t *tokens, int32_t *targets,
                     float *weights, double *lp_out, struct pref_stats *st)
{
    enum { MAXK = 512 };
    size_t seqs[2 * MAXK];
    double lp[2 * MAXK], g[2 * MAXK];
    if (k < 1 || k > MAXK || 2 * k > m->B)
        return AISLE_EINVAL;
    int T = 1;
    for (int j = 0; j < k; j++)
        for (int h = 0; h < 2; h++) {
            seqs[2 * j + h] = 2 * idx[j] + (size_t)h;
            int L = pref_seq_len(s, seqs[2 * j + h]);
            if (L - 1 > T)
                T = L - 1;
        }
    if (T > m->T)
        return AISLE_EINVAL;
    fill_rows(s, seqs, 2 * k, T, tokens, targets, weights);
    int rc = ltr_forward(m, tokens, targets, weights, 2 * k, T, NULL);
    if (rc)
        return rc;
    for (int r = 0; r < 2 * k; r++) {
        lp[r] = row_logp(m, weights, r, T);
        st->tokens += pref_seq_len(s, seqs[r]) - 1;
    }
    if (!ref) {
        memcpy(lp_out, lp, (size_t)2 * k * sizeof *lp);
        return 0;
    }
    double z0 = 0;
    if (s->kind == PREF_KTO) {
        for (int j = 0; j < k; j++)
            z0 += lp[2 * j + 1] - ref[seqs[2 * j + 1]];
        z0 = z0 / k > 0 ? z0 / k : 0;
    }
    for (int j = 0; j < k; j++) {
        const size_t a = seqs[2 * j], b = seqs[2 * j + 1];
        if (s->kind == PREF_DPO) {
            st->loss += pref_dpo_loss(p->beta, lp[2 * j], ref[a], lp[2 * j + 1], ref[b], &g[2 * j], &g[2 * j + 1]);
            double mg = (lp[2 * j] - ref[a]) - (lp[2 * j + 1] - ref[b]);
            st->correct += mg > 0;
            st->margin += p->beta * mg;
        } else {
            int up = s->label[idx[j]];
            st->loss += pref_kto_loss(p->beta, up, lp[2 * j], ref[a], z0, p->kto_desirable, p->kto_undesirable,
                                      &g[2 * j]);
            g[2 * j + 1] = 0; /* the reference point carries no gradient */
            double d = lp[2 * j] - ref[a] - z0;
            st->correct += up ? d > 0 : d < 0;
            st->margin += p->beta * (up ? d : -d);
        }
        st->n += 1;
    }
    if (!backward)
        return 0;
    /* lp = -sum_t w_t loss_t, so dL/dloss_t = -w_t dL/dlp. */
    float *dl = m->acts.dlosses;
    for (int r = 0; r < 2 * k; r++)
        for (int t = 0; t < T; t++)
            dl[(size_t)r * T + t] = (float)(-g[r] * weights[(size_t)r * T + t]) * scale;
    return ltr_backward(m, 1.0f);
}

int pref_reference(struct ltr_model *m, const struct pref_set *s, int kb, int32_t *tokens, int32_t *targets,
                   float *weights, double *ref)
{
    size_t idx[512];
    if (kb > 512)
        kb = 512;
    struct pref_stats st = {0};
    for (size_t i = 0; i < s->n; i += (size_t)kb) {
        int k = (int)(s->n - i < (size_t)kb ? s->n - i : (size_t)kb);
        for (int j = 0; j < k; j++)
            idx[j] = i + (size_t)j;
        int rc = pref_micro_batch(m, s, NULL, idx, k, NULL, 0, 0, tokens, targets, weights, ref + 2 * i, &st);
        if (rc)
            return rc;
    }
    return 0;
}
