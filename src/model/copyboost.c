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

/* One pass over the source: the length of the longest match of at least
 * min_match tokens (0: none) and, when logits is given, the boost added once
 * to each token that follows such a match (at most 64 of them per step). */
static int scan(const struct copyboost *c, float *logits, int n_vocab)
{
    if (c->n_hist < c->min_match || c->n < 2)
        return 0;
    int best = 0, n_next = 0;
    int32_t next[64]; /* distinct continuations of the longest match so far */
    for (size_t j = 0; j + 1 < c->n; j++) {
        if (c->src[j] != c->hist[c->n_hist - 1])
            continue;
        int k = match_at(c, j);
        if (k < best)
            continue;
        if (k > best)
            best = k, n_next = 0;
        int32_t t = c->src[j + 1];
        int seen = 0;
        for (int i = 0; i < n_next && !seen; i++)
            seen = next[i] == t;
        if (!seen && n_next < (int)(sizeof next / sizeof *next))
            next[n_next++] = t;
    }
    if (best < c->min_match)
        return 0;
    for (int i = 0; logits && i < n_next; i++)
        if (next[i] >= 0 && next[i] < n_vocab)
            logits[next[i]] += c->boost;
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
