/*
 * ngram.c — unigram (add-one) and bigram (interpolated Kneser-Ney) counts and
 * probabilities; the formulas are in ngram.h.
 *
 * Invariants: keys[i] == 0 marks an empty slot (a stored key has bit 63 set);
 * n_pairs < 5/8 of the slots; after finish, ctx[a] == sum over b of c(a b) as
 * stored (saturated counts included), so the discounted masses add up exactly.
 */
#include "train/ngram.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define USED (1ull << 63)

struct ngram {
    uint32_t V;
    int finished;
    uint64_t n_tokens;
    uint64_t *uni;      /* (V) c(b) */
    uint64_t *keys;     /* (cap) USED | a << 32 | b, or 0 */
    uint32_t *counts;   /* (cap) c(a b), saturating */
    size_t cap, n_pairs;
    int64_t last;       /* the last token counted, -1 before any (ngram_add_cont) */
    /* after finish */
    uint64_t *ctx;      /* (V) c(a .) */
    uint32_t *follow;   /* (V) N1+(a .) */
    uint32_t *precede;  /* (V) N1+(. b) */
    double D;
};

static size_t slot_of(uint64_t key, size_t cap)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

int ngram_new(struct ngram **out, uint32_t vocab_size)
{
    if (vocab_size < 1 || vocab_size > NGRAM_MAX_VOCAB)
        return AISLE_EINVAL;
    struct ngram *g = calloc(1, sizeof(*g));
    if (!g)
        return AISLE_ENOMEM;
    g->V = vocab_size;
    g->last = -1;
    g->cap = 1u << 16;
    g->uni = calloc(vocab_size, sizeof(*g->uni));
    g->keys = calloc(g->cap, sizeof(*g->keys));
    g->counts = calloc(g->cap, sizeof(*g->counts));
    if (!g->uni || !g->keys || !g->counts) {
        ngram_free(g);
        return AISLE_ENOMEM;
    }
    *out = g;
    return 0;
}

void ngram_free(struct ngram *g)
{
    if (!g)
        return;
    free(g->uni);
    free(g->keys);
    free(g->counts);
    free(g->ctx);
    free(g->follow);
    free(g->precede);
    free(g);
}

static int grow(struct ngram *g)
{
    size_t cap = g->cap * 2;
    uint64_t *keys = calloc(cap, sizeof(*keys));
    uint32_t *counts = calloc(cap, sizeof(*counts));
    if (!keys || !counts) {
        free(keys);
        free(counts);
        return AISLE_ENOMEM;
    }
    for (size_t i = 0; i < g->cap; i++) {
        if (!g->keys[i])
            continue;
        size_t s = slot_of(g->keys[i], cap);
        while (keys[s])
            s = (s + 1) & (cap - 1);
        keys[s] = g->keys[i];
        counts[s] = g->counts[i];
    }
    free(g->keys);
    free(g->counts);
    g->keys = keys;
    g->counts = counts;
    g->cap = cap;
    return 0;
}

/* Count ids[0..n) after prev (the stream's previous token, or -1 at its start). */
static int add_stream(struct ngram *g, const uint32_t *ids, size_t n, int64_t prev)
{
    if (g->finished)
        return AISLE_EINVAL;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = ids[i];
        if (b >= g->V)
            return AISLE_EINVAL;
        g->uni[b]++;
        g->n_tokens++;
        int64_t a = i ? (int64_t)ids[i - 1] : prev;
        g->last = (int64_t)b;
        if (a < 0)
            continue;
        uint64_t key = USED | (uint64_t)a << 32 | b;
        size_t s = slot_of(key, g->cap);
        while (g->keys[s] && g->keys[s] != key)
            s = (s + 1) & (g->cap - 1);
        if (g->keys[s]) {
            g->counts[s] += g->counts[s] != UINT32_MAX;
            continue;
        }
        if (g->n_pairs >= NGRAM_MAX_PAIRS)
            return AISLE_ETOOBIG;
        g->keys[s] = key;
        g->counts[s] = 1;
        g->n_pairs++;
        if (g->n_pairs * 8 > g->cap * 5) {
            int rc = grow(g);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int ngram_add(struct ngram *g, const uint32_t *ids, size_t n)
{
    if (!g->finished)
        g->last = -1;
    return add_stream(g, ids, n, -1);
}

int ngram_add_cont(struct ngram *g, const uint32_t *ids, size_t n)
{
    return add_stream(g, ids, n, g->last);
}

int ngram_finish(struct ngram *g)
{
    if (g->finished)
        return 0;
    g->ctx = calloc(g->V, sizeof(*g->ctx));
    g->follow = calloc(g->V, sizeof(*g->follow));
    g->precede = calloc(g->V, sizeof(*g->precede));
    if (!g->ctx || !g->follow || !g->precede) {
        free(g->ctx);
        free(g->follow);
        free(g->precede);
        g->ctx = NULL;
        g->follow = g->precede = NULL;
        return AISLE_ENOMEM;
    }
    uint64_t n1 = 0, n2 = 0;
    for (size_t i = 0; i < g->cap; i++) {
        if (!g->keys[i])
            continue;
        uint32_t a = (uint32_t)(g->keys[i] >> 32 & 0x7fffffffu), b = (uint32_t)g->keys[i];
        g->ctx[a] += g->counts[i];
        g->follow[a]++;
        g->precede[b]++;
        n1 += g->counts[i] == 1;
        n2 += g->counts[i] == 2;
    }
    g->D = n1 ? (double)n1 / (double)(n1 + 2 * n2) : 0.5;
    g->finished = 1;
    return 0;
}

double ngram_unigram_logp(const struct ngram *g, uint32_t b)
{
    return log((double)(g->uni[b] + 1)) - log((double)g->n_tokens + (double)g->V);
}

static uint32_t pair_count(const struct ngram *g, uint32_t a, uint32_t b)
{
    uint64_t key = USED | (uint64_t)a << 32 | b;
    size_t s = slot_of(key, g->cap);
    while (g->keys[s]) {
        if (g->keys[s] == key)
            return g->counts[s];
        s = (s + 1) & (g->cap - 1);
    }
    return 0;
}

double ngram_bigram_logp(const struct ngram *g, uint32_t a, uint32_t b)
{
    double pc = ((double)g->precede[b] + 1) / ((double)g->n_pairs + (double)g->V);
    if (!g->ctx[a])
        return log(pc);
    double ca = (double)g->ctx[a], c = pair_count(g, a, b);
    double p = (c > g->D ? c - g->D : 0) / ca + g->D * (double)g->follow[a] / ca * pc;
    return log(p);
}

uint64_t ngram_tokens(const struct ngram *g)
{
    return g->n_tokens;
}

uint64_t ngram_pairs(const struct ngram *g)
{
    return g->n_pairs;
}

double ngram_discount(const struct ngram *g)
{
    return g->D;
}

uint32_t ngram_vocab(const struct ngram *g)
{
    return g->V;
}
