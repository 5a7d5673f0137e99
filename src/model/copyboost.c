/*
 * copyboost.c — see copyboost.h.
 */
#include "model/copyboost.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct copyboost {
    int32_t *src;
    size_t n, cap;
    float boost;
    int min_match;
    int32_t hist[COPYBOOST_MAX_MATCH]; /* the answer's last tokens, oldest first */
    int n_hist;
};

int copyboost_set_source(struct copyboost *c, const int32_t *src, size_t n)
{
    if (n > c->cap) {
        int32_t *s = realloc(c->src, sizeof *s * n);
        if (!s)
            return AISLE_ENOMEM;
        c->src = s;
        c->cap = n;
    }
    if (n)
        memcpy(c->src, src, sizeof *src * n);
    c->n = n;
    c->n_hist = 0;
    return 0;
}

int copyboost_new(struct copyboost **out, const int32_t *src, size_t n, float boost, int min_match)
{
    *out = NULL;
    if (!(boost > 0) || !isfinite(boost) || min_match < 1 || min_match > COPYBOOST_MAX_MATCH)
        return AISLE_EINVAL;
    struct copyboost *c = calloc(1, sizeof *c);
    if (!c)
        return AISLE_ENOMEM;
    c->boost = boost;
    c->min_match = min_match;
    if (copyboost_set_source(c, src, n)) {
        free(c);
        return AISLE_ENOMEM;
    }
    *out = c;
    return 0;
}

void copyboost_free(struct copyboost *c)
{
    if (!c)
        return;
    free(c->src);
    free(c);
}

/* How many of the answer's last tokens end at src[j] (j is the last). */
static int match_at(const struct copyboost *c, size_t j)
{
    int k = 0;
    while (k < c->n_hist && (size_t)k <= j && c->src[j - (size_t)k] == c->hist[c->n_hist - 1 - k])
        k++;
    return k;
}

/* Calls f for every continuation of the longest match (src[j + 1], j the
 * match's last position); returns that length (0: no match >= min_match). */
static int scan(const struct copyboost *c, float *logits, int n_vocab)
{
    if (c->n_hist < c->min_match || c->n < 2)
        return 0;
    int best = 0;
    for (size_t j = 0; j + 1 < c->n; j++)
        if (c->src[j] == c->hist[c->n_hist - 1]) {
            int k = match_at(c, j);
            best = k > best ? k : best;
        }
    if (best < c->min_match)
        return 0;
    if (!logits)
        return best;
    /* each continuation once: boosted ones are remembered (few per step) */
    int32_t done[64];
    int n_done = 0;
    for (size_t j = 0; j + 1 < c->n; j++) {
        if (c->src[j] != c->hist[c->n_hist - 1] || match_at(c, j) != best)
            continue;
        int32_t t = c->src[j + 1];
        if (t < 0 || t >= n_vocab)
            continue;
        int seen = 0;
        for (int i = 0; i < n_done && !seen; i++)
            seen = done[i] == t;
        if (seen)
            continue;
        if (n_done == (int)(sizeof done / sizeof *done))
            break;
        done[n_done++] = t;
        logits[t] += c->boost;
    }
    return best;
}

void copyboost_apply(void *ctx, float *logits, int n_vocab)
{
    scan(ctx, logits, n_vocab);
}

void copyboost_accept(void *ctx, int32_t tok)
{
    struct copyboost *c = ctx;
    if (c->n_hist == COPYBOOST_MAX_MATCH) {
        memmove(c->hist, c->hist + 1, sizeof *c->hist * (COPYBOOST_MAX_MATCH - 1));
        c->n_hist--;
    }
    c->hist[c->n_hist++] = tok;
}

int copyboost_match(const struct copyboost *c)
{
    return scan(c, NULL, 0);
}
