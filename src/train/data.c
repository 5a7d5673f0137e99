/*
 * data.c — batches from token and SFT shards, validation windows (contract
 * in data.h).
 */
#include "train/data.h"

#include "core/error.h"
#include "train/atomic.h"
#include "train/shard.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static uint64_t next_u64(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static double next_unit(uint64_t *s) /* [0, 1) */
{
    return (double)(next_u64(s) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n), n > 0 (the modulo bias is below 2^-40 for n < 2^24 ... and negligible for any corpus). */
static uint64_t next_below(uint64_t *s, uint64_t n)
{
    return next_u64(s) % n;
}

static int open_stream(struct tdata_stream *st, const char *dir, const struct corpus_split *sp, uint32_t vocab,
                       char *err, size_t errlen)
{
    st->n = 0;
    st->shards = calloc((size_t)sp->n_files, sizeof *st->shards);
    st->start = calloc((size_t)sp->n_files + 1, sizeof *st->start);
    if (!st->shards || !st->start) {
        trn_seterr(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    for (int i = 0; i < sp->n_files; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, sp->files[i]);
        int rc = shard_open(&st->shards[i], path, err, errlen);
        if (rc)
            return rc;
        st->n++;
        if (st->shards[i]->kind != SHARD_TOKENS || st->shards[i]->vocab_size != vocab) {
            trn_seterr(err, errlen, "%s: not a token shard of vocab_size %u (the manifest's)", path, vocab);
            return AISLE_EFORMAT;
        }
        st->start[i + 1] = st->start[i] + st->shards[i]->n_tokens;
    }
    st->tokens = st->start[st->n];
    return 0;
}

static void close_stream(struct tdata_stream *st)
{
    for (int i = 0; i < st->n; i++)
        shard_close(st->shards[i]);
    free(st->shards);
    free(st->start);
    memset(st, 0, sizeof *st);
}

/* Tokens [off, off + n) of a stream (inside it). */
static void gather(const struct tdata_stream *st, uint64_t off, int n, int32_t *out)
{
    int k = 0;
    while (k + 1 < st->n && st->start[k + 1] <= off) /* few shards: linear */
        k++;
    for (int i = 0; i < n; i++, off++) {
        while (off >= st->start[k + 1])
            k++;
        out[i] = (int32_t)st->shards[k]->tokens[off - st->start[k]];
    }
}

static int parse_mix(struct tdata *d, const char *mix, char *err, size_t errlen)
{
    if (!mix || !*mix) {
        for (int i = 0; i < d->n_src; i++)
            d->weight[i] = (double)d->train[i].tokens;
        return 0;
    }
    const char *p = mix;
    while (*p) {
        const char *eq = strchr(p, '='), *comma = strchr(p, ',');
        if (!comma)
            comma = p + strlen(p);
        if (!eq || eq > comma) {
            trn_seterr(err, errlen, "--mix: expected name=weight at '%s'", p);
            return AISLE_EINVAL;
        }
        int s = -1;
        for (int i = 0; i < d->n_src; i++)
            if ((size_t)(eq - p) == strlen(d->names[i]) && !strncmp(p, d->names[i], (size_t)(eq - p)))
                s = i;
        if (s < 0) {
            trn_seterr(err, errlen, "--mix: the corpus has no source '%.*s'", (int)(eq - p), p);
            return AISLE_EINVAL;
        }
        char *end;
        double w = strtod(eq + 1, &end);
        if (end != comma || !(w >= 0 && w < 1e9)) {
            trn_seterr(err, errlen, "--mix: bad weight for '%s'", d->names[s]);
            return AISLE_EINVAL;
        }
        d->weight[s] = w;
        p = *comma ? comma + 1 : comma;
    }
    return 0;
}

int tdata_open(struct tdata *d, const char *dir, const char *mix, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    int rc = corpus_manifest_load(&d->manifest, dir, err, errlen);
    if (rc)
        return rc;
    if (!(d->dir = strdup(dir))) {
        rc = AISLE_ENOMEM;
        goto fail;
    }
    d->vocab_size = d->manifest->vocab_size;
    d->eos = d->manifest->eos;
    d->n_src = d->manifest->n_sources;
    for (int i = 0; i < d->n_src; i++) {
        const struct corpus_source *s = &d->manifest->sources[i];
        snprintf(d->names[i], sizeof d->names[i], "%s", s->name);
        if ((rc = open_stream(&d->train[i], dir, &s->train, d->vocab_size, err, errlen)) ||
            (rc = open_stream(&d->val[i], dir, &s->val, d->vocab_size, err, errlen)))
            goto fail;
    }
    if ((rc = parse_mix(d, mix, err, errlen)))
        goto fail;
    double sum = 0;
    for (int i = 0; i < d->n_src; i++) {
        if (d->weight[i] > 0 && d->train[i].tokens < 2) {
            trn_seterr(err, errlen, "source '%s' has weight %g but %llu train tokens", d->names[i], d->weight[i],
                   (unsigned long long)d->train[i].tokens);
            rc = AISLE_EINVAL;
            goto fail;
        }
        sum += d->weight[i];
    }
    if (!(sum > 0)) {
        trn_seterr(err, errlen, "%s: every source has weight 0 (or no tokens)", dir);
        rc = AISLE_EINVAL;
        goto fail;
    }
    for (int i = 0; i < d->n_src; i++)
        d->weight[i] /= sum;
    return 0;
fail:
    tdata_close(d);
    return rc;
}

int tdata_add_sft(struct tdata *d, const char *path, double weight, char *err, size_t errlen)
{
    if (d->n_sft == TDATA_MAX_SFT || !(weight > 0)) {
        trn_seterr(err, errlen, "%s: %s", path, weight > 0 ? "too many SFT shards" : "weight must be > 0");
        return AISLE_EINVAL;
    }
    struct shard *s;
    int rc = shard_open(&s, path, err, errlen);
    if (rc)
        return rc;
    if (s->kind != SHARD_SFT || s->n_examples == 0 || (d->vocab_size && s->vocab_size != d->vocab_size)) {
        trn_seterr(err, errlen, "%s: %s", path,
               s->kind != SHARD_SFT ? "not an SFT shard" : s->n_examples == 0 ? "no examples" : "vocab_size differs");
        shard_close(s);
        return AISLE_EINVAL;
    }
    for (int i = 0; i < d->n_sft; i++)
        if (d->sft[i]->vocab_size != s->vocab_size) {
            trn_seterr(err, errlen, "%s: vocab_size differs from the other SFT shards", path);
            shard_close(s);
            return AISLE_EINVAL;
        }
    uint32_t mx = s->max_example;
    for (int i = 0; i < d->n_sft; i++)
        mx = d->sft[i]->max_example > mx ? d->sft[i]->max_example : mx;
    int32_t *ids = realloc(d->ex_ids, sizeof *ids * mx);
    if (ids)
        d->ex_ids = ids;
    uint8_t *mask = realloc(d->ex_mask, mx);
    if (mask)
        d->ex_mask = mask;
    if (!ids || !mask) {
        shard_close(s);
        trn_seterr(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    if (!d->vocab_size)
        d->vocab_size = s->vocab_size;
    d->sft[d->n_sft] = s;
    d->sft_weight[d->n_sft++] = weight;
    return 0;
}

void tdata_close(struct tdata *d)
{
    for (int i = 0; i < d->n_src; i++) {
        close_stream(&d->train[i]);
        close_stream(&d->val[i]);
    }
    for (int i = 0; i < d->n_sft; i++)
        shard_close(d->sft[i]);
    corpus_manifest_free(d->manifest);
    free(d->dir);
    free(d->ex_ids);
    free(d->ex_mask);
    memset(d, 0, sizeof *d);
}

static int pick(uint64_t *rng, const double *w, int n)
{
    double sum = 0, u;
    for (int i = 0; i < n; i++)
        sum += w[i];
    u = next_unit(rng) * sum;
    for (int i = 0; i < n; i++) {
        if (u < w[i])
            return i;
        u -= w[i];
    }
    for (int i = n - 1; i > 0; i--) /* rounding: the last with weight */
        if (w[i] > 0)
            return i;
    return 0;
}

/* One SFT row: an example (redrawn while it has no weighted target in reach). */
static void sft_row(struct tdata *d, int T, int32_t *tok, int32_t *tgt, float *w, int keep)
{
    for (int attempt = 0;; attempt++) {
        int k = pick(&d->rng, d->sft_weight, d->n_sft);
        const struct shard *s = d->sft[k];
        uint64_t e = next_below(&d->rng, s->n_examples);
        uint32_t n = shard_example_len(s, e);
        shard_example_get(s, e, d->ex_ids, d->ex_mask);
        int used = (int)n - 1 < T ? (int)n - 1 : T, any = 0;
        for (int t = 0; t < used; t++)
            any |= d->ex_mask[t + 1];
        if (!any && attempt < 1000)
            continue;
        if (!keep)
            return;
        for (int t = 0; t < T; t++) {
            if (t < used) {
                tok[t] = d->ex_ids[t];
                tgt[t] = d->ex_ids[t + 1];
                w[t] = d->ex_mask[t + 1];
            } else {
                tok[t] = t == 0 ? d->ex_ids[0] : d->eos >= 0 ? d->eos : 0;
                tgt[t] = d->eos >= 0 ? d->eos : 0;
                w[t] = 0;
            }
        }
        return;
    }
}

void tdata_next_batch(struct tdata *d, int B, int T, int row0, int nrows, int32_t *tokens, int32_t *targets,
                      float *weights)
{
    for (int b = 0; b < B; b++) {
        int keep = b >= row0 && b < row0 + nrows;
        size_t at = keep ? (size_t)(b - row0) * (size_t)T : 0;
        int32_t *tok = keep ? tokens + at : NULL, *tgt = keep ? targets + at : NULL;
        float *w = keep ? weights + at : NULL;
        if (d->n_sft) {
            sft_row(d, T, tok, tgt, w, keep);
            continue;
        }
        int s = pick(&d->rng, d->weight, d->n_src);
        const struct tdata_stream *st = &d->train[s];
        uint64_t span = st->tokens > (uint64_t)T + 1 ? st->tokens - (uint64_t)T - 1 : 0;
        uint64_t off = span ? next_below(&d->rng, span + 1) : 0;
        if (!keep)
            continue;
        /* tdata_fits checked that every weighted source holds T+1 tokens. */
        gather(st, off, T, tok);
        gather(st, off + 1, T, tgt);
        for (int t = 0; t < T; t++)
            w[t] = 1;
    }
}

int tdata_fits(const struct tdata *d, int T, char *err, size_t errlen)
{
    for (int i = 0; i < d->n_src && !d->n_sft; i++)
        if (d->weight[i] > 0 && d->train[i].tokens < (uint64_t)T + 1) {
            trn_seterr(err, errlen, "source '%s' has %llu train tokens, fewer than a sequence of %d + 1", d->names[i],
                   (unsigned long long)d->train[i].tokens, T);
            return AISLE_EINVAL;
        }
    return 0;
}

uint64_t tdata_val_windows(const struct tdata *d, int s, int T, uint64_t max)
{
    uint64_t n = d->val[s].tokens;
    if (n < (uint64_t)T + 1)
        return 0;
    uint64_t w = (n - 1) / (uint64_t)T;
    return w < max ? w : max;
}

void tdata_val_window(const struct tdata *d, int s, uint64_t i, int T, int32_t *tokens, int32_t *targets)
{
    gather(&d->val[s], i * (uint64_t)T, T, tokens);
    gather(&d->val[s], i * (uint64_t)T + 1, T, targets);
}
