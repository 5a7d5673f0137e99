/*
 * sample_test.c — each sampling filter against distributions computed by
 * hand, penalties, bias, the mask hook, determinism for a fixed seed, the
 * empirical frequencies of the draw, and stop strings split across tokens.
 */
#include <criterion/criterion.h>

#include "core/error.h"
#include "model/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Sampling arithmetic is float over a handful of values: 1e-6 is a few ulps. */
#define TOL 1e-6f

static struct lm_sample_params plain(void)
{
    struct lm_sample_params p;
    lm_sample_params_default(&p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

static struct lm_sampler *mk(int V, const struct lm_sample_params *p)
{
    struct lm_sampler *s;
    cr_assert_eq(lm_sampler_new(&s, V, p), 0);
    return s;
}

/* Probability of id in the result, 0 when it was filtered out. */
static float prob_of(const int32_t *ids, const float *probs, int n, int32_t id)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == id)
            return probs[i];
    return 0.0f;
}

/* Run the chain of p on a copy of logits (V of them); pv[id] = the final
 * probability of id (0 when filtered out). Returns the number of candidates. */
static int dist(const struct lm_sample_params *p, const float *logits, int V, float *pv)
{
    struct lm_sampler *s = mk(V, p);
    float *l = malloc(sizeof(float) * V);
    memcpy(l, logits, sizeof(float) * V);
    const int32_t *ids;
    const float *probs;
    int n;
    cr_assert_eq(lm_sampler_dist(s, l, &ids, &probs, &n), 0);
    for (int i = 0; i < V; i++)
        pv[i] = prob_of(ids, probs, n, i);
    free(l);
    lm_sampler_free(s);
    return n;
}

Test(sample, greedy_is_argmax_lowest_id_on_ties)
{
    struct lm_sample_params p = plain();
    p.temperature = 0;
    struct lm_sampler *s = mk(5, &p);
    float l[5] = {0.1f, 3.0f, -2.0f, 3.0f, 1.0f};
    int32_t t;
    cr_assert_eq(lm_sampler_sample(s, l, &t), 0);
    cr_assert_eq(t, 1);
    lm_sampler_free(s);
}

/* Logits log(1), log(2), log(4), log(8): at temperature 1 the probabilities
 * are 1/15, 2/15, 4/15, 8/15; at temperature 2 they are proportional to
 * sqrt: 1, 1.414, 2, 2.828. */
Test(sample, temperature_reshapes)
{
    float l[4] = {0, logf(2), logf(4), logf(8)}, pv[4];
    struct lm_sample_params p = plain();
    cr_assert_eq(dist(&p, l, 4, pv), 4);
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(pv[i], (float)(1 << i) / 15.0f, TOL);
    p.temperature = 2.0f;
    dist(&p, l, 4, pv);
    double z = 1 + sqrt(2) + 2 + sqrt(8);
    cr_assert_float_eq(pv[0], (float)(1 / z), TOL);
    cr_assert_float_eq(pv[3], (float)(sqrt(8) / z), TOL);
}

/* top-k 2 of logits 1..5: ids 4 and 3 with e^5, e^4 renormalised. */
Test(sample, top_k)
{
    float l[5] = {1, 2, 3, 4, 5}, pv[5];
    struct lm_sample_params p = plain();
    p.top_k = 2;
    cr_assert_eq(dist(&p, l, 5, pv), 2);
    float e = expf(1.0f);
    cr_assert_float_eq(pv[4], e / (e + 1), TOL);
    cr_assert_float_eq(pv[3], 1 / (e + 1), TOL);
}

/* Probabilities 0.5, 0.3, 0.15, 0.05 (shuffled ids). top-p 0.75: the
 * smallest head reaching 0.75 is {0.5, 0.3} -> 0.625, 0.375. min-p 0.2:
 * keep p >= 0.1 -> {0.5, 0.3, 0.15} / 0.95. Both: the shorter head. */
static const float P4[4] = {0.15f, 0.5f, 0.05f, 0.3f};

static void logp(float *l)
{
    for (int i = 0; i < 4; i++)
        l[i] = logf(P4[i]) + 3.0f; /* any offset: softmax is shift-invariant */
}

Test(sample, top_p)
{
    float l[4], pv[4];
    logp(l);
    struct lm_sample_params p = plain();
    p.top_p = 0.75f;
    cr_assert_eq(dist(&p, l, 4, pv), 2);
    cr_assert_float_eq(pv[1], 0.625f, TOL);
    cr_assert_float_eq(pv[3], 0.375f, TOL);
}

/* top-p over a large vocabulary (the partial-sort path) equals the
 * definition: sort everything, keep the shortest head with mass >= p. */
static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

Test(sample, top_p_large_vocab_matches_full_sort)
{
    enum { V = 5000 };
    static float l[V], pv[V], sorted[V];
    uint64_t r = 12345;
    for (int i = 0; i < V; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        l[i] = (float)((r >> 40) & 0xffffff) / 8388608.0f * 4.0f; /* spread 0..8: a wide nucleus */
    }
    static const float ps[3] = {0.3f, 0.9f, 0.999f};
    for (int k = 0; k < 3; k++) {
        struct lm_sample_params p = plain();
        p.top_p = ps[k];
        int n = dist(&p, l, V, pv);
        memcpy(sorted, l, sizeof(l));
        qsort(sorted, V, sizeof(float), cmp_desc);
        double z = 0, cum = 0;
        for (int i = 0; i < V; i++)
            z += exp((double)sorted[i] - sorted[0]);
        int want = V;
        for (int i = 0; i < V; i++) {
            cum += exp((double)sorted[i] - sorted[0]) / z;
            if (cum >= ps[k]) {
                want = i + 1;
                break;
            }
        }
        cr_assert_eq(n, want, "top_p %g: %d candidates, want %d", ps[k], n, want);
        cr_assert_gt(n, 64, "the test must reach past the first partial sort");
        /* kept exactly the n largest logits */
        int kept = 0;
        for (int i = 0; i < V; i++)
            if (pv[i] > 0) {
                kept++;
                cr_assert_geq(l[i], sorted[n - 1]);
            }
        cr_assert_eq(kept, n);
    }
}

Test(sample, min_p)
{
    float l[4], pv[4];
    logp(l);
    struct lm_sample_params p = plain();
    p.min_p = 0.2f;
    cr_assert_eq(dist(&p, l, 4, pv), 3);
    cr_assert_float_eq(pv[1], 0.5f / 0.95f, TOL);
    cr_assert_float_eq(pv[3], 0.3f / 0.95f, TOL);
    cr_assert_float_eq(pv[0], 0.15f / 0.95f, TOL);
    cr_assert_eq(pv[2], 0.0f);
}

/* top-p and min-p see the untempered distribution; temperature then applies
 * to what is left: top-p 0.75 keeps {0.5, 0.3}; at temperature 0.5 the
 * weights are squared: 0.25, 0.09 -> 0.735, 0.265. */
Test(sample, filters_then_temperature)
{
    float l[4], pv[4];
    logp(l);
    struct lm_sample_params p = plain();
    p.top_p = 0.75f;
    p.min_p = 0.01f;
    p.temperature = 0.5f;
    cr_assert_eq(dist(&p, l, 4, pv), 2);
    cr_assert_float_eq(pv[1], 0.25f / 0.34f, 1e-5f);
    cr_assert_float_eq(pv[3], 0.09f / 0.34f, 1e-5f);
}

/* History 2, 2, 3 (token 2 twice, 3 once); repeat 2, frequency 0.5, presence
 * 0.25. Token 2 (logit 1.0 > 0): 1.0/2 - 2*0.5 - 0.25 = -0.75. Token 3
 * (logit -1.0): -1.0*2 - 0.5 - 0.25 = -2.75. Others unchanged. Only the last
 * penalty_last_n = 3 tokens count: an older 4 does not. */
Test(sample, penalties)
{
    struct lm_sample_params p = plain();
    p.repeat_penalty = 2.0f;
    p.freq_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.penalty_last_n = 3;
    p.temperature = 0; /* greedy: dist only applies the logit stages */
    struct lm_sampler *s = mk(6, &p);
    lm_sampler_accept(s, 4);
    lm_sampler_accept(s, 2);
    lm_sampler_accept(s, 2);
    lm_sampler_accept(s, 3);
    float l[6] = {0.5f, 0.0f, 1.0f, -1.0f, 2.0f, -3.0f};
    int32_t t;
    cr_assert_eq(lm_sampler_sample(s, l, &t), 0);
    cr_assert_float_eq(l[2], -0.75f, TOL);
    cr_assert_float_eq(l[3], -2.75f, TOL);
    cr_assert_float_eq(l[4], 2.0f, TOL);
    cr_assert_float_eq(l[0], 0.5f, TOL);
    cr_assert_eq(t, 4);
    lm_sampler_reset(s);
    float l2[6] = {0.5f, 0.0f, 1.0f, -1.0f, 2.0f, -3.0f};
    lm_sampler_sample(s, l2, &t);
    cr_assert_float_eq(l2[2], 1.0f, TOL, "reset must clear the history");
    lm_sampler_free(s);
}

Test(sample, logit_bias)
{
    struct lm_logit_bias b[2] = {{0, -INFINITY}, {2, 1.5f}};
    struct lm_sample_params p = plain();
    p.bias = b;
    p.n_bias = 2;
    float l[3] = {5.0f, 0.0f, 0.0f}, pv[3];
    cr_assert_eq(dist(&p, l, 3, pv), 2);
    cr_assert_eq(pv[0], 0.0f);
    float e = expf(1.5f);
    cr_assert_float_eq(pv[2], e / (e + 1), TOL);
    struct lm_logit_bias bad = {3, 1.0f};
    p.bias = &bad;
    p.n_bias = 1;
    struct lm_sampler *s;
    cr_assert_eq(lm_sampler_new(&s, 3, &p), AISLE_EINVAL);
}

static int mask_calls;
static void even_only(void *ctx, float *logits, int n)
{
    (void)ctx;
    mask_calls++;
    for (int i = 1; i < n; i += 2)
        logits[i] = -INFINITY;
}

static void none_allowed(void *ctx, float *logits, int n)
{
    (void)ctx;
    for (int i = 0; i < n; i++)
        logits[i] = -INFINITY;
}

Test(sample, mask_hook_is_respected)
{
    enum { V = 50 };
    struct lm_sample_params p = plain();
    p.mask = even_only;
    p.seed = 3;
    struct lm_sampler *s = mk(V, &p);
    mask_calls = 0;
    for (int k = 0; k < 500; k++) {
        float l[V];
        for (int i = 0; i < V; i++)
            l[i] = (i % 2) ? 5.0f : 0.0f; /* the odd ids would win without the mask */
        int32_t t;
        cr_assert_eq(lm_sampler_sample(s, l, &t), 0);
        cr_assert_eq(t % 2, 0, "masked token %d sampled", t);
    }
    cr_assert_eq(mask_calls, 500);
    lm_sampler_free(s);
    p.mask = none_allowed;
    s = mk(V, &p);
    float l[V] = {0};
    int32_t t;
    cr_assert_eq(lm_sampler_sample(s, l, &t), AISLE_ENOTFOUND);
    lm_sampler_free(s);
}

/* Same seed, same tokens; another seed, another sequence. */
Test(sample, fixed_seed_is_deterministic)
{
    enum { V = 100, N = 200 };
    int32_t a[N], b[N], c[N];
    int32_t *outs[3] = {a, b, c};
    uint64_t seeds[3] = {42, 42, 43};
    for (int r = 0; r < 3; r++) {
        struct lm_sample_params p;
        lm_sample_params_default(&p);
        p.seed = seeds[r];
        p.repeat_penalty = 1.1f;
        struct lm_sampler *s = mk(V, &p);
        for (int k = 0; k < N; k++) {
            float l[V];
            for (int i = 0; i < V; i++)
                l[i] = sinf((float)(i * 7 + k)) * 2.0f;
            cr_assert_eq(lm_sampler_sample(s, l, &outs[r][k]), 0);
            lm_sampler_accept(s, outs[r][k]);
        }
        lm_sampler_free(s);
    }
    cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
    cr_assert_neq(memcmp(a, c, sizeof(a)), 0);
}

/* 40,000 draws from 0.5 / 0.3 / 0.2: each frequency within 0.015 of its
 * probability (binomial sigma <= 0.0025, so 6 sigma). */
Test(sample, draws_follow_the_distribution)
{
    enum { N = 40000 };
    struct lm_sample_params p = plain();
    p.seed = 7;
    struct lm_sampler *s = mk(3, &p);
    int cnt[3] = {0};
    for (int k = 0; k < N; k++) {
        float l[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
        int32_t t;
        lm_sampler_sample(s, l, &t);
        cnt[t]++;
    }
    cr_assert_float_eq(cnt[0] / (float)N, 0.5f, 0.015f);
    cr_assert_float_eq(cnt[1] / (float)N, 0.3f, 0.015f);
    cr_assert_float_eq(cnt[2] / (float)N, 0.2f, 0.015f);
    lm_sampler_free(s);
}

/* ---- stop strings ------------------------------------------------------------ */

static void push_all(struct lm_stop *st, const char *const *pieces, int n, char *out, int *stopped)
{
    out[0] = '\0';
    *stopped = 0;
    for (int i = 0; i < n; i++) {
        const char *e;
        size_t len;
        int rc = lm_stop_push(st, pieces[i], strlen(pieces[i]), &e, &len);
        cr_assert_geq(rc, 0);
        strncat(out, e, len);
        if (rc == 1)
            *stopped = 1;
    }
    const char *e;
    size_t len;
    cr_assert_eq(lm_stop_flush(st, &e, &len), 0);
    strncat(out, e, len);
}

Test(sample, stop_string_split_over_tokens)
{
    const char *stops[2] = {"<|end|>", "\n\nUser:"};
    struct lm_stop st;
    cr_assert_eq(lm_stop_init(&st, stops, 2), 0);
    const char *pieces[] = {"Hel", "lo <", " wor", "ld<|e", "nd|>more", " text"};
    char out[256];
    int stopped;
    push_all(&st, pieces, 6, out, &stopped);
    cr_assert(stopped);
    cr_assert_str_eq(out, "Hello < world");
    lm_stop_release(&st);

    /* A held-back partial match that turns out not to be a stop is released. */
    cr_assert_eq(lm_stop_init(&st, stops, 2), 0);
    const char *p2[] = {"a\n", "\nUse", "d it"};
    push_all(&st, p2, 3, out, &stopped);
    cr_assert(!stopped);
    cr_assert_str_eq(out, "a\n\nUsed it");
    lm_stop_release(&st);

    /* No stop strings: everything passes straight through. */
    cr_assert_eq(lm_stop_init(&st, NULL, 0), 0);
    push_all(&st, p2, 3, out, &stopped);
    cr_assert_str_eq(out, "a\n\nUsed it");
    lm_stop_release(&st);
}
