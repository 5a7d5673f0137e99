/*
 * pref_test.c — preference tuning (train/pref.h): the DPO and KTO losses and
 * their derivatives by hand and by finite differences, and a finite-difference
 * check of the whole model's gradient through pref_micro_batch (the
 * log-probabilities read from the cross-entropy, the dlosses handed to
 * ltr_backward) for both losses.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "train/llama_train.h"
#include "train/pref.h"

Test(pref, losses_by_hand)
{
    double gc, gr, g;
    /* m = (-10 + 12) - (-8 + 7) = 3, beta m = 0.3: -log sigmoid(0.3) = log(1 + e^-0.3) */
    double l = pref_dpo_loss(0.1, -10, -12, -8, -7, &gc, &gr);
    cr_assert(fabs(l - log1p(exp(-0.3))) < 1e-12, "%.15g", l);
    cr_assert(fabs(gc + 0.1 / (1 + exp(0.3))) < 1e-12 && fabs(gr - 0.1 / (1 + exp(0.3))) < 1e-12);
    /* policy = reference: log 2, and a huge margin either way stays finite */
    cr_assert(fabs(pref_dpo_loss(0.1, -5, -5, -9, -9, &gc, &gr) - log(2)) < 1e-12);
    cr_assert(isfinite(pref_dpo_loss(1, 1e4, 0, -1e4, 0, &gc, &gr)) && isfinite(pref_dpo_loss(1, -1e4, 0, 1e4, 0, &gc,
                                                                                                &gr)));
    cr_assert(fabs(pref_dpo_loss(1, -1e4, 0, 1e4, 0, &gc, &gr) - 2e4) < 1e-6);
    /* KTO: r = lp - ref = 2, z0 = 0.5, beta 0.1: up 1 - sigmoid(0.15), down 1 - sigmoid(-0.15) */
    double s = 1 / (1 + exp(-0.15));
    cr_assert(fabs(pref_kto_loss(0.1, 1, -3, -5, 0.5, 1, 1, &g) - (1 - s)) < 1e-12);
    cr_assert(fabs(g + 0.1 * s * (1 - s)) < 1e-12);
    cr_assert(fabs(pref_kto_loss(0.1, 0, -3, -5, 0.5, 1, 2, &g) - 2 * s) < 1e-12, "lambda_u scales the down rows");
    /* the derivatives are the functions' own, by central differences */
    const double h = 1e-6, lp[] = {-12, -3.5, 0.25, 7};
    for (size_t i = 0; i < sizeof lp / sizeof *lp; i++) {
        double d0 = pref_dpo_loss(0.3, lp[i], -4, -6, -5, &gc, &gr);
        double num = (pref_dpo_loss(0.3, lp[i] + h, -4, -6, -5, &g, &g) - pref_dpo_loss(0.3, lp[i] - h, -4, -6, -5, &g,
                                                                                          &g)) / (2 * h);
        cr_assert(fabs(num - gc) < 1e-7, "dDPO/dlp_c at %g: %g vs %g (loss %g)", lp[i], gc, num, d0);
        num = (pref_dpo_loss(0.3, -6, -4, lp[i] + h, -5, &g, &g) - pref_dpo_loss(0.3, -6, -4, lp[i] - h, -5, &g, &g)) /
              (2 * h);
        pref_dpo_loss(0.3, -6, -4, lp[i], -5, &gc, &gr);
        cr_assert(fabs(num - gr) < 1e-7, "dDPO/dlp_r at %g: %g vs %g", lp[i], gr, num);
        for (int up = 0; up < 2; up++) {
            double ga, gb;
            pref_kto_loss(0.7, up, lp[i], -2, 0.3, 1.5, 0.5, &ga);
            num = (pref_kto_loss(0.7, up, lp[i] + h, -2, 0.3, 1.5, 0.5, &gb) -
                   pref_kto_loss(0.7, up, lp[i] - h, -2, 0.3, 1.5, 0.5, &gb)) / (2 * h);
            cr_assert(fabs(num - ga) < 1e-7, "dKTO/dlp (up %d) at %g: %g vs %g", up, lp[i], ga, num);
        }
    }
}

/* ---- the whole model ------------------------------------------------------------ */

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 65535.0f * 2.0f - 1.0f;
}

/* n examples of two sequences each over vocabulary V, lengths 5..max_len,
 * prompts of 2..4 tokens; KTO labels alternate. */
static void make_set(struct pref_set *s, enum pref_kind kind, size_t n, int V, int max_len, unsigned seed)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->n = n;
    s->ids = malloc(2 * n * (size_t)max_len * sizeof *s->ids);
    s->off = malloc((2 * n + 1) * sizeof *s->off);
    s->start = malloc(2 * n * sizeof *s->start);
    s->label = malloc(n);
    size_t at = 0;
    for (size_t q = 0; q < 2 * n; q++) {
        int L = 5 + (int)((frand(&seed) + 1) * 0.5f * (float)(max_len - 5));
        s->off[q] = at;
        s->start[q] = 2 + (int)(q % 3);
        for (int t = 0; t < L; t++)
            s->ids[at++] = (int32_t)((unsigned)((frand(&seed) + 1) * 0.5f * (float)V) % (unsigned)V);
        if (q % 2 == 1 && kind == PREF_DPO) /* the same prompt as its chosen sequence */
            memcpy(s->ids + s->off[q], s->ids + s->off[q - 1], (size_t)s->start[q - 1] * sizeof *s->ids),
                s->start[q] = s->start[q - 1];
    }
    s->off[2 * n] = at;
    for (size_t i = 0; i < n; i++)
        s->label[i] = (signed char)(i % 2 == 0);
}

/* The sum of the examples' losses at the current weights. */
static double total_loss(struct ltr_model *m, const struct pref_set *s, const double *ref, const size_t *idx, int k,
                         const struct pref_params *p, int32_t *tok, int32_t *tg, float *w)
{
    struct pref_stats st = {0};
    cr_assert_eq(pref_micro_batch(m, s, ref, idx, k, p, 1.0f, 0, tok, tg, w, NULL, &st), 0);
    return st.loss;
}

static void gradcheck(enum pref_kind kind)
{
    enum { K = 3, T = 9 };
    struct ltr_config c = {.V = 24, .C = 16, .L = 2, .NH = 4, .NKV = 2, .F = 32, .max_ctx = 16, .tied = 1};
    struct ltr_model *m;
    cr_assert_eq(ltr_model_new(&m, &c, 2 * K, T, 1), 0);
    ltr_init(m, 11, 0.3f);
    struct pref_set s;
    make_set(&s, kind, K, c.V, T + 1, 5);
    int32_t tok[2 * K * T], tg[2 * K * T];
    float w[2 * K * T];
    double ref[2 * K];
    cr_assert_eq(pref_reference(m, &s, 2, tok, tg, w, ref), 0);
    /* Move the policy away from the reference, so margins and sigmoids are not at 0. */
    unsigned seed = 9;
    for (size_t i = 0; i < m->n_params; i++)
        m->params_mem[i] += 0.05f * frand(&seed);
    if (kind == PREF_KTO) /* z0 carries no gradient by design: hold it at 0 for the check */
        for (int j = 0; j < K; j++)
            ref[2 * j + 1] = 1e6;
    struct pref_params p = {.beta = 2.0, .kto_desirable = 1.0, .kto_undesirable = 1.5};
    size_t idx[K] = {2, 0, 1};
    ltr_zero_grad(m);
    struct pref_stats st = {0};
    cr_assert_eq(pref_micro_batch(m, &s, ref, idx, K, &p, 1.0f, 1, tok, tg, w, NULL, &st), 0);
    cr_assert(st.loss > 0.01 && st.n == K, "loss %g over %g examples", st.loss, st.n);
    const float h = 5e-3f;
    double e2 = 0, a2 = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        float x0 = m->params_mem[i];
        m->params_mem[i] = x0 + h;
        double lp = total_loss(m, &s, ref, idx, K, &p, tok, tg, w);
        m->params_mem[i] = x0 - h;
        double lm = total_loss(m, &s, ref, idx, K, &p, tok, tg, w);
        m->params_mem[i] = x0;
        double num = (lp - lm) / (2.0 * h), ana = m->grads_mem[i];
        e2 += (num - ana) * (num - ana), a2 += ana * ana;
        cr_assert(fabs(num - ana) <= 1e-3 + 3e-2 * fabs(ana), "param %zu: analytic %.6g numeric %.6g", i, ana, num);
    }
    cr_assert(a2 > 0 && sqrt(e2 / a2) < 5e-3, "relative L2 error %g", sqrt(e2 / a2));
    cr_log_info("pref gradcheck (%s): relative L2 error %.2e over %zu parameters", kind == PREF_DPO ? "DPO" : "KTO",
                sqrt(e2 / a2), m->n_params);
    /* The scale multiplies the gradient: half the scale, half the slab. */
    float *g1 = malloc(m->n_params * sizeof *g1);
    memcpy(g1, m->grads_mem, m->n_params * sizeof *g1);
    ltr_zero_grad(m);
    cr_assert_eq(pref_micro_batch(m, &s, ref, idx, K, &p, 0.5f, 1, tok, tg, w, NULL, &st), 0);
    for (size_t i = 0; i < m->n_params; i++)
        cr_assert(fabs(m->grads_mem[i] - 0.5f * g1[i]) <= 1e-6f + 1e-5f * fabsf(g1[i]));
    free(g1);
    pref_free(&s);
    ltr_model_free(m);
}

Test(pref, gradcheck_dpo, .timeout = 120) { gradcheck(PREF_DPO); }
Test(pref, gradcheck_kto, .timeout = 120) { gradcheck(PREF_KTO); }

/* The reference is the policy at the start: every DPO loss is log 2 and
 * every KTO loss 1/2 times its lambda (r = 0, z0 = 0). */
Test(pref, starts_at_the_reference)
{
    enum { K = 4, T = 12 };
    struct ltr_config c = {.V = 24, .C = 16, .L = 1, .NH = 2, .NKV = 2, .F = 32, .max_ctx = 16, .tied = 1};
    struct ltr_model *m;
    cr_assert_eq(ltr_model_new(&m, &c, 2 * K, T, 1), 0);
    ltr_init(m, 3, 0.3f);
    int32_t tok[2 * K * T], tg[2 * K * T];
    float w[2 * K * T];
    for (int kind = PREF_DPO; kind <= PREF_KTO; kind++) {
        struct pref_set s;
        make_set(&s, (enum pref_kind)kind, K, c.V, T + 1, 17);
        double ref[2 * K];
        cr_assert_eq(pref_reference(m, &s, 3, tok, tg, w, ref), 0); /* 3 then 1 per forward: the same */
        for (int q = 0; q < 2 * K; q++)
            cr_assert(ref[q] < 0, "log-probabilities are negative: %g", ref[q]);
        struct pref_params p = {.beta = 0.1, .kto_desirable = 1, .kto_undesirable = 3};
        size_t idx[K] = {0, 1, 2, 3};
        struct pref_stats st = {0};
        cr_assert_eq(pref_micro_batch(m, &s, ref, idx, K, &p, 1, 0, tok, tg, w, NULL, &st), 0);
        double want = kind == PREF_DPO ? K * log(2) : 0.5 * (2 * 1 + 2 * 3);
        cr_assert(fabs(st.loss - want) < 1e-4, "%s: loss %g, want %g", kind == PREF_DPO ? "DPO" : "KTO", st.loss,
                  want);
        cr_assert(fabs(st.margin) < 1e-4);
        pref_free(&s);
    }
    ltr_model_free(m);
}
