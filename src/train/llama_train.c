/*
 * llama_train.c — the training Llama: memory plan, init, forward, backward,
 * AdamW, clipping, schedule, GGUF export (contract in llama_train.h).
 */
#include "train/llama_train.h"

#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/llama_names.h"
#include "gguf/quant.h"
#include "tensor/tensor.h"
#include "train/train_nn.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYER(base, l, n) ((base) + (size_t)(l) * (n))

/* The parameter layout, llm.c's fill_in_parameter_sizes; same order as struct ltr_params. */
static void param_sizes(const struct ltr_config *c, size_t *s)
{
    size_t C = c->C, L = c->L, QD = (size_t)c->NH * c->HD, KVD = (size_t)c->NKV * c->HD, F = c->F, V = c->V;
    s[0] = V * C;
    s[1] = L * C;
    s[2] = L * QD * C;
    s[3] = L * KVD * C;
    s[4] = L * KVD * C;
    s[5] = L * C * QD;
    s[6] = L * C;
    s[7] = L * F * C;
    s[8] = L * F * C;
    s[9] = L * C * F;
    s[10] = C;
    s[11] = c->tied ? 0 : V * C;
}

/* Norms and the embedding are not decayed. */
static const int decayed[LTR_N_TENSORS] = {0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1};

static void point_params(struct ltr_params *p, float *mem, const size_t *s)
{
    float **ptr[LTR_N_TENSORS] = {&p->wte,   &p->attn_norm, &p->wq,  &p->wk,    &p->wv,       &p->wo,
                                  &p->ffn_norm, &p->wgate,  &p->wup, &p->wdown, &p->out_norm, &p->wout};
    for (int i = 0; i < LTR_N_TENSORS; i++) {
        *ptr[i] = s[i] ? mem : NULL;
        mem += s[i];
    }
}

/* Activations: two passes over the same list, first counting, then pointing. */
static size_t point_acts(struct ltr_acts *a, float *mem, const struct ltr_config *c, int B, int T)
{
    size_t N = (size_t)B * T, C = c->C, L = c->L, QD = (size_t)c->NH * c->HD, KVD = (size_t)c->NKV * c->HD,
           F = c->F, V = c->V;
    struct {
        float **p;
        size_t n;
    } list[] = {
        {&a->resid, (L + 1) * N * C}, {&a->xn1, L * N * C},  {&a->q, L * N * QD},
        {&a->k, L * N * KVD},         {&a->v, L * N * KVD},  {&a->att, L * B * c->NH * (size_t)T * T},
        {&a->atty, L * N * QD},       {&a->res2, L * N * C}, {&a->xn2, L * N * C},
        {&a->gate, L * N * F},        {&a->up, L * N * F},   {&a->hsw, L * N * F},
        {&a->xnf, N * C},             {&a->logits, N * V},   {&a->losses, N},
        {&a->dlosses, N},             {&a->dres, N * C},     {&a->dres2, N * C},
        {&a->dxn, N * C},             {&a->dq, N * QD},      {&a->datty, N * QD},
        {&a->dk, N * KVD},            {&a->dv, N * KVD},     {&a->dgate, N * F},
        {&a->dup, N * F},             {&a->dh, N * F},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
        if (mem)
            *list[i].p = mem + total;
        total += list[i].n;
    }
    return total;
}

/* ---- pool jobs: static splits, so results do not depend on the thread count --- */

/* SwiGLU forward and backward on the pool: chunks of SWIGLU_CHUNK elements
 * taken dynamically (a descheduled thread's chunks go to the others); each
 * element is computed by one thread with the same arithmetic, so the bits do
 * not depend on the thread count. */
#define SWIGLU_CHUNK 16384
struct swiglu_job {
    float *out, *dgate, *dup;
    const float *gate, *up, *dout;
    long n;
    atomic_long next;
};

static void swiglu_run(void *ctx, int ith, int nth)
{
    struct swiglu_job *j = ctx;
    (void)ith;
    (void)nth;
    for (long i0; (i0 = atomic_fetch_add(&j->next, SWIGLU_CHUNK)) < j->n;) {
        int k = (int)(j->n - i0 < SWIGLU_CHUNK ? j->n - i0 : SWIGLU_CHUNK);
        if (j->out)
            nn_swiglu_forward(j->out + i0, j->gate + i0, j->up + i0, k);
        else
            nn_swiglu_backward(j->dgate + i0, j->dup + i0, j->dout + i0, j->gate + i0, j->up + i0, k);
    }
}

static void swiglu_pool(struct tpool *pool, float *out, float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, long n)
{
    struct swiglu_job j = {out, dgate, dup, gate, up, dout, n, 0};
    atomic_init(&j.next, 0);
    tpool_run_dynamic(pool, swiglu_run, &j);
}

/* Softmax cross-entropy by rows: each row is independent. */
struct ce_job {
    struct ltr_model *m;
    int N, backward;
};

static void ce_run(void *ctx, int ith, int nth)
{
    const struct ce_job *j = ctx;
    struct ltr_acts *a = &j->m->acts;
    const int V = j->m->cfg.V, r0 = (int)((long)j->N * ith / nth), r1 = (int)((long)j->N * (ith + 1) / nth);
    float *lg = a->logits + (size_t)r0 * V;
    if (r1 <= r0)
        return;
    if (j->backward)
        nn_crossentropy_backward(lg, lg, j->m->targets + r0, a->dlosses + r0, r1 - r0, V);
    else
        nn_crossentropy_forward(lg, a->losses + r0, lg, j->m->targets + r0, r1 - r0, V);
}

/* AdamW over one tensor, elementwise. */
struct adamw_job {
    float *p, *g, *m, *v;
    long n;
    const struct ltr_adamw *o;
    float wd;
    int t;
};

static void adamw_run(void *ctx, int ith, int nth)
{
    const struct adamw_job *j = ctx;
    long i0 = j->n * ith / nth, i1 = j->n * (ith + 1) / nth;
    if (i1 > i0)
        nn_adamw_update(j->p + i0, j->g + i0, j->m + i0, j->v + i0, i1 - i0, j->o->lr, j->o->beta1, j->o->beta2,
                        j->o->eps, j->wd, j->t);
}

/* Sum of squares of the gradients in fixed chunks of NORM_CHUNK (partial[c]),
 * added in chunk order by the caller: the same bits for any thread count. */
#define NORM_CHUNK 65536
struct norm_job {
    const float *g;
    size_t n;
    double *partial;
    float scale; /* 0: sum of squares; else multiply */
};

static void norm_run(void *ctx, int ith, int nth)
{
    const struct norm_job *j = ctx;
    size_t nc = (j->n + NORM_CHUNK - 1) / NORM_CHUNK;
    for (size_t c = (size_t)ith; c < nc; c += (size_t)nth) {
        size_t i0 = c * NORM_CHUNK, i1 = i0 + NORM_CHUNK < j->n ? i0 + NORM_CHUNK : j->n;
        if (j->scale != 0.0f) {
            float *g = (float *)j->g;
            for (size_t i = i0; i < i1; i++)
                g[i] *= j->scale;
        } else {
            double ss = 0;
            for (size_t i = i0; i < i1; i++)
                ss += (double)j->g[i] * j->g[i];
            j->partial[c] = ss;
        }
    }
}

int ltr_model_new(struct ltr_model **out, const struct ltr_config *cfg, int B, int T, int nthreads)
{
    struct ltr_config c = *cfg;
    if (c.HD == 0 && c.NH > 0)
        c.HD = c.C / c.NH;
    if (c.rms_eps == 0)
        c.rms_eps = 1e-5f;
    if (c.rope_base == 0)
        c.rope_base = 10000.0f;
    if (c.max_ctx <= 0)
        c.max_ctx = T;
    if (c.V <= 0 || c.C <= 0 || c.L <= 0 || c.NH <= 0 || c.NKV <= 0 || c.NH % c.NKV || c.HD <= 0 || c.HD % 2 ||
        c.F <= 0 || B <= 0 || T <= 0)
        return AISLE_EINVAL;
    /* The limits the GGUF reader applies, and sizes whose products fit size_t and int
     * (kernels take element counts such as N*F as int). */
    double N = (double)B * T, big = (double)INT32_MAX;
    if ((unsigned)c.C > LLAMA_MAX_EMBD || (unsigned)c.F > LLAMA_MAX_EMBD || (unsigned)c.L > LLAMA_MAX_LAYERS ||
        (unsigned)c.V > LLAMA_MAX_VOCAB || (double)c.NH * c.HD > LLAMA_MAX_EMBD || N * c.F > big || N * c.V > 1e12 ||
        N * c.NH * c.HD > big || (double)B * c.NH * T * T * c.L > 1e12)
        return AISLE_ETOOBIG;
    struct ltr_model *m = calloc(1, sizeof(*m));
    if (!m)
        return AISLE_ENOMEM;
    m->cfg = c;
    m->B = B;
    m->T = T;
    param_sizes(&c, m->sizes);
    for (int i = 0; i < LTR_N_TENSORS; i++)
        m->n_params += m->sizes[i];
    m->n_acts = point_acts(&m->acts, NULL, &c, B, T);
    m->params_mem = calloc(m->n_params, sizeof(float));
    m->grads_mem = calloc(m->n_params, sizeof(float));
    m->m_mem = calloc(m->n_params, sizeof(float));
    m->v_mem = calloc(m->n_params, sizeof(float));
    m->acts_mem = calloc(m->n_acts, sizeof(float));
    m->acts.pos = calloc((size_t)N, sizeof(int));
    m->tokens = calloc((size_t)N, sizeof(int32_t));
    m->targets = calloc((size_t)N, sizeof(int32_t));
    m->weights = calloc((size_t)N, sizeof(float));
    m->pool = tpool_new(nthreads);
    m->norm_partial = calloc((m->n_params + NORM_CHUNK - 1) / NORM_CHUNK, sizeof(double));
    if (!m->params_mem || !m->grads_mem || !m->m_mem || !m->v_mem || !m->acts_mem || !m->acts.pos || !m->tokens ||
        !m->targets || !m->weights || !m->pool ||
        !m->norm_partial) {
        ltr_model_free(m);
        return AISLE_ENOMEM;
    }
    point_params(&m->params, m->params_mem, m->sizes);
    point_params(&m->grads, m->grads_mem, m->sizes);
    point_acts(&m->acts, m->acts_mem, &c, B, T);
    *out = m;
    return 0;
}

void ltr_model_free(struct ltr_model *m)
{
    if (!m)
        return;
    free(m->params_mem);
    free(m->grads_mem);
    free(m->m_mem);
    free(m->v_mem);
    free(m->acts_mem);
    free(m->acts.pos);
    free(m->tokens);
    free(m->targets);
    free(m->weights);
    tpool_free(m->pool);
    free(m->norm_partial);
    free(m);
}

/* splitmix64 -> Box-Muller: the same numbers on every machine. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_normal(uint64_t *s)
{
    double u1 = ((rng_next(s) >> 11) + 1.0) / 9007199254740993.0; /* (0, 1] */
    double u2 = (rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void ltr_init(struct ltr_model *m, uint64_t seed, float std)
{
    uint64_t s = seed;
    float *p = m->params_mem;
    const float res_std = std / sqrtf(2.0f * m->cfg.L);
    for (int i = 0; i < LTR_N_TENSORS; i++) {
        int norm = i == 1 || i == 6 || i == 10;
        float sd = (i == 5 || i == 9) ? res_std : std;
        for (size_t j = 0; j < m->sizes[i]; j++)
            p[j] = norm ? 1.0f : (float)(sd * rng_normal(&s));
        p += m->sizes[i];
    }
    memset(m->grads_mem, 0, m->n_params * sizeof(float));
    memset(m->m_mem, 0, m->n_params * sizeof(float));
    memset(m->v_mem, 0, m->n_params * sizeof(float));
    m->step = 0;
    m->have_targets = 0;
}

static int check_inputs(const struct ltr_model *m, const int32_t *tokens, const int32_t *targets,
                        const float *weights, int B, int T)
{
    if (B < 1 || B > m->B || T < 1 || T > m->T || !tokens)
        return AISLE_EINVAL;
    double wsum = 0;
    for (int i = 0; i < B * T; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->cfg.V)
            return AISLE_EINVAL;
        if (targets && (targets[i] < 0 || targets[i] >= m->cfg.V))
            return AISLE_EINVAL;
        if (targets && weights) {
            if (!(weights[i] >= 0) || !isfinite(weights[i]))
                return AISLE_EINVAL;
            wsum += weights[i];
        }
    }
    return targets && weights && !(wsum > 0) ? AISLE_EINVAL : 0;
}

int ltr_forward(struct ltr_model *m, const int32_t *tokens, const int32_t *targets, const float *weights, int B, int T,
                float *loss_out)
{
    int rc = check_inputs(m, tokens, targets, weights, B, T);
    if (rc)
        return rc;
    m->have_targets = 0;

    const struct ltr_config *c = &m->cfg;
    const int C = c->C, QD = c->NH * c->HD, KVD = c->NKV * c->HD, F = c->F, V = c->V, N = B * T;
    const struct ltr_params *p = &m->params;
    struct ltr_acts *a = &m->acts;
    /* per-layer strides use the planned N so layer l's block stays where the plan put it */
    const size_t NP = (size_t)m->B * m->T, attn = (size_t)m->B * c->NH * m->T * m->T;
    m->cur_B = B;
    m->cur_T = T;
    memcpy(m->tokens, tokens, (size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++)
        a->pos[i] = i % T;
    nn_encoder_forward(a->resid, tokens, p->wte, N, C);
    for (int l = 0; l < c->L; l++) {
        float *x = LAYER(a->resid, l, NP * C), *xo = LAYER(a->resid, l + 1, NP * C);
        float *xn1 = LAYER(a->xn1, l, NP * C), *q = LAYER(a->q, l, NP * QD), *k = LAYER(a->k, l, NP * KVD),
              *v = LAYER(a->v, l, NP * KVD), *att = LAYER(a->att, l, attn), *atty = LAYER(a->atty, l, NP * QD),
              *res2 = LAYER(a->res2, l, NP * C), *xn2 = LAYER(a->xn2, l, NP * C), *gate = LAYER(a->gate, l, NP * F),
              *up = LAYER(a->up, l, NP * F), *hsw = LAYER(a->hsw, l, NP * F);
        nn_rmsnorm_forward(xn1, x, LAYER(p->attn_norm, l, C), N, C, c->rms_eps);
        nn_matmul_forward(q, xn1, LAYER(p->wq, l, (size_t)QD * C), N, C, QD);
        nn_matmul_forward(k, xn1, LAYER(p->wk, l, (size_t)KVD * C), N, C, KVD);
        nn_matmul_forward(v, xn1, LAYER(p->wv, l, (size_t)KVD * C), N, C, KVD);
        nn_rope_forward(q, a->pos, N, c->NH, c->HD, c->rope_base);
        nn_rope_forward(k, a->pos, N, c->NKV, c->HD, c->rope_base);
        nn_attention_forward(m->pool, atty, att, q, k, v, B, T, c->NH, c->NKV, c->HD);
        nn_matmul_forward(res2, atty, LAYER(p->wo, l, (size_t)C * QD), N, QD, C);
        nn_residual_forward(res2, res2, x, N * C);
        nn_rmsnorm_forward(xn2, res2, LAYER(p->ffn_norm, l, C), N, C, c->rms_eps);
        nn_matmul_forward(gate, xn2, LAYER(p->wgate, l, (size_t)F * C), N, C, F);
        nn_matmul_forward(up, xn2, LAYER(p->wup, l, (size_t)F * C), N, C, F);
        swiglu_pool(m->pool, hsw, NULL, NULL, NULL, gate, up, (long)N * F);
        nn_matmul_forward(xo, hsw, LAYER(p->wdown, l, (size_t)C * F), N, F, C);
        nn_residual_forward(xo, xo, res2, N * C);
    }
    nn_rmsnorm_forward(a->xnf, LAYER(a->resid, c->L, NP * C), p->out_norm, N, C, c->rms_eps);
    nn_matmul_forward(a->logits, a->xnf, c->tied ? p->wte : p->wout, N, C, V);
    if (!targets) {
        if (loss_out)
            *loss_out = 0.0f;
        return 0;
    }
    memcpy(m->targets, targets, (size_t)N * sizeof(int32_t));
    double wsum = 0;
    for (int i = 0; i < N; i++) {
        m->weights[i] = weights ? weights[i] : 1.0f;
        wsum += m->weights[i];
    }
    struct ce_job cj = {m, N, 0};
    tpool_run(m->pool, ce_run, &cj);
    double loss = 0;
    for (int i = 0; i < N; i++) {
        loss += (double)m->weights[i] * a->losses[i];
        a->dlosses[i] = (float)(m->weights[i] / wsum);
    }
    m->have_targets = 1;
    m->loss = (float)(loss / wsum);
    if (loss_out)
        *loss_out = m->loss;
    return 0;
}

int ltr_backward(struct ltr_model *m, float grad_scale)
{
    if (!m->have_targets)
        return AISLE_EINVAL;
    m->have_targets = 0; /* the probabilities become dlogits below */
    const struct ltr_config *c = &m->cfg;
    const int B = m->cur_B, T = m->cur_T, C = c->C, QD = c->NH * c->HD, KVD = c->NKV * c->HD, F = c->F, V = c->V,
              N = B * T;
    const size_t NP = (size_t)m->B * m->T, attn = (size_t)m->B * c->NH * m->T * m->T;
    const struct ltr_params *p = &m->params, *g = &m->grads;
    struct ltr_acts *a = &m->acts;
    for (int i = 0; i < N; i++)
        a->dlosses[i] *= grad_scale;
    struct ce_job cj = {m, N, 1};
    tpool_run(m->pool, ce_run, &cj);
    memset(a->dxn, 0, (size_t)N * C * sizeof(float));
    nn_matmul_backward(a->dxn, c->tied ? g->wte : g->wout, a->logits, a->xnf, c->tied ? p->wte : p->wout, N, C, V);
    memset(a->dres, 0, (size_t)N * C * sizeof(float));
    nn_rmsnorm_backward(a->dres, g->out_norm, a->dxn, LAYER(a->resid, c->L, NP * C), p->out_norm, N, C, c->rms_eps);
    for (int l = c->L - 1; l >= 0; l--) {
        float *x = LAYER(a->resid, l, NP * C);
        float *xn1 = LAYER(a->xn1, l, NP * C), *q = LAYER(a->q, l, NP * QD), *k = LAYER(a->k, l, NP * KVD),
              *v = LAYER(a->v, l, NP * KVD), *att = LAYER(a->att, l, attn), *atty = LAYER(a->atty, l, NP * QD),
              *res2 = LAYER(a->res2, l, NP * C), *xn2 = LAYER(a->xn2, l, NP * C), *gate = LAYER(a->gate, l, NP * F),
              *up = LAYER(a->up, l, NP * F), *hsw = LAYER(a->hsw, l, NP * F);
        /* xo = hsw . Wdown^T + res2: dres holds d xo */
        memcpy(a->dres2, a->dres, (size_t)N * C * sizeof(float));
        memset(a->dh, 0, (size_t)N * F * sizeof(float));
        nn_matmul_backward(a->dh, LAYER(g->wdown, l, (size_t)C * F), a->dres, hsw, LAYER(p->wdown, l, (size_t)C * F),
                           N, F, C);
        memset(a->dgate, 0, (size_t)N * F * sizeof(float));
        memset(a->dup, 0, (size_t)N * F * sizeof(float));
        swiglu_pool(m->pool, NULL, a->dgate, a->dup, a->dh, gate, up, (long)N * F);
        memset(a->dxn, 0, (size_t)N * C * sizeof(float));
        nn_matmul_backward(a->dxn, LAYER(g->wgate, l, (size_t)F * C), a->dgate, xn2, LAYER(p->wgate, l, (size_t)F * C),
                           N, C, F);
        nn_matmul_backward(a->dxn, LAYER(g->wup, l, (size_t)F * C), a->dup, xn2, LAYER(p->wup, l, (size_t)F * C), N, C,
                           F);
        nn_rmsnorm_backward(a->dres2, LAYER(g->ffn_norm, l, C), a->dxn, res2, LAYER(p->ffn_norm, l, C), N, C,
                            c->rms_eps);
        /* res2 = atty . Wo^T + x */
        memcpy(a->dres, a->dres2, (size_t)N * C * sizeof(float));
        memset(a->datty, 0, (size_t)N * QD * sizeof(float));
        nn_matmul_backward(a->datty, LAYER(g->wo, l, (size_t)C * QD), a->dres2, atty, LAYER(p->wo, l, (size_t)C * QD),
                           N, QD, C);
        memset(a->dq, 0, (size_t)N * QD * sizeof(float));
        memset(a->dk, 0, (size_t)N * KVD * sizeof(float));
        memset(a->dv, 0, (size_t)N * KVD * sizeof(float));
        nn_attention_backward(m->pool, a->dq, a->dk, a->dv, a->datty, q, k, v, att, atty, B, T, c->NH, c->NKV, c->HD);
        nn_rope_backward(a->dq, a->pos, N, c->NH, c->HD, c->rope_base);
        nn_rope_backward(a->dk, a->pos, N, c->NKV, c->HD, c->rope_base);
        memset(a->dxn, 0, (size_t)N * C * sizeof(float));
        nn_matmul_backward(a->dxn, LAYER(g->wq, l, (size_t)QD * C), a->dq, xn1, LAYER(p->wq, l, (size_t)QD * C), N, C,
                           QD);
        nn_matmul_backward(a->dxn, LAYER(g->wk, l, (size_t)KVD * C), a->dk, xn1, LAYER(p->wk, l, (size_t)KVD * C), N,
                           C, KVD);
        nn_matmul_backward(a->dxn, LAYER(g->wv, l, (size_t)KVD * C), a->dv, xn1, LAYER(p->wv, l, (size_t)KVD * C), N,
                           C, KVD);
        nn_rmsnorm_backward(a->dres, LAYER(g->attn_norm, l, C), a->dxn, x, LAYER(p->attn_norm, l, C), N, C,
                            c->rms_eps);
    }
    nn_encoder_backward(g->wte, a->dres, m->tokens, N, C);
    return 0;
}

void ltr_zero_grad(struct ltr_model *m)
{
    memset(m->grads_mem, 0, m->n_params * sizeof(float));
}

float ltr_clip_grad_norm(struct ltr_model *m, float max_norm)
{
    struct norm_job j = {m->grads_mem, m->n_params, m->norm_partial, 0.0f};
    tpool_run(m->pool, norm_run, &j);
    double ss = 0;
    for (size_t c = 0; c < (m->n_params + NORM_CHUNK - 1) / NORM_CHUNK; c++)
        ss += m->norm_partial[c];
    float norm = (float)sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        j.scale = max_norm / norm;
        tpool_run(m->pool, norm_run, &j);
    }
    return norm;
}

void ltr_adamw_step(struct ltr_model *m, const struct ltr_adamw *o)
{
    m->step++;
    size_t off = 0;
    for (int i = 0; i < LTR_N_TENSORS; i++) {
        struct adamw_job j = {m->params_mem + off, m->grads_mem + off, m->m_mem + off, m->v_mem + off,
                              (long)m->sizes[i], o, decayed[i] ? o->weight_decay : 0.0f, m->step};
        if (j.n > 0)
            tpool_run(m->pool, adamw_run, &j);
        off += m->sizes[i];
    }
}

float ltr_lr_schedule(int step, int warmup, int total, float max_lr, float min_lr)
{
    if (step < warmup)
        return max_lr * (float)(step + 1) / (float)warmup;
    if (step >= total - 1)
        return min_lr;
    double r = (double)(step - warmup) / (double)(total - 1 - warmup); /* 0 .. 1 */
    return (float)(min_lr + 0.5 * (max_lr - min_lr) * (1.0 + cos(M_PI * r)));
}

/* Every parameter tensor as GGUF holds it: name, data, rows, cols (0 for a
 * vector). One table for export and for loading (ltr_load_gguf). */
struct ltr_tensor_ref {
    char name[64];
    float *d;
    int rows, cols;
};

static int tensor_table(const struct ltr_model *m, struct ltr_tensor_ref *t, int cap)
{
    const struct ltr_config *c = &m->cfg;
    const struct ltr_params *p = &m->params;
    const int C = c->C, QD = c->NH * c->HD, KVD = c->NKV * c->HD, F = c->F;
    int n = 0;
    if (cap < 3 + LLAMA_BLK_COUNT * c->L)
        return AISLE_EINVAL;
#define REF(nm, ptr, r, cc)                                                                                  \
    do {                                                                                                     \
        snprintf(t[n].name, sizeof t[n].name, "%s", nm);                                                     \
        t[n].d = (ptr);                                                                                      \
        t[n].rows = (r);                                                                                     \
        t[n].cols = (cc);                                                                                    \
        n++;                                                                                                 \
    } while (0)
    REF(LLAMA_TENSOR_TOKEN_EMBD, p->wte, c->V, C);
    for (int l = 0; l < c->L; l++) {
        struct {
            enum llama_blk_tensor which;
            float *d;
            int rows, cols; /* cols 0: a vector */
        } b[LLAMA_BLK_COUNT] = {
            {LLAMA_ATTN_NORM, LAYER(p->attn_norm, l, C), C, 0},
            {LLAMA_ATTN_Q, LAYER(p->wq, l, (size_t)QD * C), QD, C},
            {LLAMA_ATTN_K, LAYER(p->wk, l, (size_t)KVD * C), KVD, C},
            {LLAMA_ATTN_V, LAYER(p->wv, l, (size_t)KVD * C), KVD, C},
            {LLAMA_ATTN_OUTPUT, LAYER(p->wo, l, (size_t)C * QD), C, QD},
            {LLAMA_FFN_NORM, LAYER(p->ffn_norm, l, C), C, 0},
            {LLAMA_FFN_GATE, LAYER(p->wgate, l, (size_t)F * C), F, C},
            {LLAMA_FFN_UP, LAYER(p->wup, l, (size_t)F * C), F, C},
            {LLAMA_FFN_DOWN, LAYER(p->wdown, l, (size_t)C * F), C, F},
        };
        for (int i = 0; i < LLAMA_BLK_COUNT; i++) {
            if (llama_tensor_name(t[n].name, sizeof t[n].name, l, b[i].which))
                return AISLE_EINVAL;
            t[n].d = b[i].d;
            t[n].rows = b[i].rows;
            t[n].cols = b[i].cols;
            n++;
        }
    }
    REF(LLAMA_TENSOR_OUTPUT_NORM, p->out_norm, C, 0);
    if (!c->tied)
        REF(LLAMA_TENSOR_OUTPUT, p->wout, c->V, C);
#undef REF
    return n;
}

/* A matrix in wtype (F32, or Q8_0 when its rows are whole blocks, as
 * llama.cpp's quantize falls back otherwise); vectors stay F32. */
static int add_tensor(struct gguf_writer *w, const struct ltr_tensor_ref *t, enum ggml_type wtype)
{
    if (!t->cols) {
        int64_t ne[1] = {t->rows};
        return gguf_writer_add_tensor(w, t->name, GGML_TYPE_F32, 1, ne, t->d, (size_t)t->rows * sizeof(float));
    }
    int64_t ne[2] = {t->cols, t->rows};
    if (wtype == GGML_TYPE_F32 || t->cols % ggml_blck_size(wtype) != 0)
        return gguf_writer_add_tensor(w, t->name, GGML_TYPE_F32, 2, ne, t->d,
                                      (size_t)t->rows * t->cols * sizeof(float));
    size_t row = ggml_row_size(wtype, t->cols);
    uint8_t *q = malloc(row * (size_t)t->rows);
    if (!q)
        return AISLE_ENOMEM;
    int rc = 0;
    for (int r = 0; r < t->rows && !rc; r++)
        rc = ggml_quantize_row(wtype, t->d + (size_t)r * t->cols, q + (size_t)r * row, t->cols);
    if (!rc)
        rc = gguf_writer_add_tensor(w, t->name, wtype, 2, ne, q, row * (size_t)t->rows);
    free(q);
    return rc;
}

int ltr_export_gguf_as(const struct ltr_model *m, struct gguf_writer *w, const char *name, enum ggml_type wtype)
{
    const struct ltr_config *c = &m->cfg;
    const int C = c->C, F = c->F;
    int rc = 0;
    uint32_t ftype = wtype == GGML_TYPE_Q8_0 ? LLAMA_FTYPE_MOSTLY_Q8_0 : LLAMA_FTYPE_ALL_F32;
    if (wtype != GGML_TYPE_F32 && wtype != GGML_TYPE_Q8_0)
        return AISLE_EINVAL;
    rc = rc ? rc : gguf_writer_set_str(w, LLAMA_KEY_ARCH, LLAMA_ARCH);
    if (name)
        rc = rc ? rc : gguf_writer_set_str(w, LLAMA_KEY_NAME, name);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_FILE_TYPE, ftype);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_CONTEXT_LENGTH, (uint32_t)c->max_ctx);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_EMBEDDING_LENGTH, (uint32_t)C);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_BLOCK_COUNT, (uint32_t)c->L);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_FEED_FORWARD_LENGTH, (uint32_t)F);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_HEAD_COUNT, (uint32_t)c->NH);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_HEAD_COUNT_KV, (uint32_t)c->NKV);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_KEY_LENGTH, (uint32_t)c->HD);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_VALUE_LENGTH, (uint32_t)c->HD);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_ROPE_DIMENSION_COUNT, (uint32_t)c->HD);
    rc = rc ? rc : gguf_writer_set_f32(w, LLAMA_KEY_ROPE_FREQ_BASE, c->rope_base);
    rc = rc ? rc : gguf_writer_set_f32(w, LLAMA_KEY_RMS_EPS, c->rms_eps);
    rc = rc ? rc : gguf_writer_set_u32(w, LLAMA_KEY_VOCAB_SIZE, (uint32_t)c->V);
    /* Q/K rows go out as they are: the trainer applies the engine's (llama.cpp
     * "normal") RoPE to adjacent pairs of these very rows, which is GGUF's
     * interleaved order, so no llama_permute_qk is needed (it is for models
     * trained in HF's rotate-half form). */
    struct ltr_tensor_ref *t = malloc(sizeof *t * (size_t)(3 + LLAMA_BLK_COUNT * c->L));
    if (!t)
        return AISLE_ENOMEM;
    int n = tensor_table(m, t, 3 + LLAMA_BLK_COUNT * c->L);
    if (n < 0)
        rc = n;
    for (int i = 0; i < n && !rc; i++)
        rc = add_tensor(w, &t[i], wtype);
    free(t);
    return rc;
}

int ltr_export_gguf(const struct ltr_model *m, struct gguf_writer *w, const char *name)
{
    return ltr_export_gguf_as(m, w, name, GGML_TYPE_F32);
}

int ltr_config_from_gguf(const struct gguf *g, struct ltr_config *cfg, char *err, size_t errlen)
{
    struct llama_hparams hp;
    int rc = llama_hparams_read(g, &hp, err, errlen);
    if (rc)
        return rc;
    if (hp.n_rot != hp.head_dim) {
        snprintf(err, errlen, "partial RoPE (rope.dimension_count %u of head_dim %u) is not trainable here", hp.n_rot,
                 hp.head_dim);
        return AISLE_EINVAL;
    }
    memset(cfg, 0, sizeof *cfg);
    cfg->V = (int)hp.n_vocab;
    cfg->C = (int)hp.n_embd;
    cfg->L = (int)hp.n_layer;
    cfg->NH = (int)hp.n_head;
    cfg->NKV = (int)hp.n_head_kv;
    cfg->HD = (int)hp.head_dim;
    cfg->F = (int)hp.n_ff;
    cfg->max_ctx = (int)hp.n_ctx;
    cfg->rms_eps = hp.rms_eps;
    cfg->rope_base = hp.rope_freq_base;
    cfg->tied = hp.tied_output;
    return 0;
}

int ltr_load_gguf(struct ltr_model *m, const struct gguf *g, char *err, size_t errlen)
{
    const struct ltr_config *c = &m->cfg;
    int cap = 3 + LLAMA_BLK_COUNT * c->L, rc = 0;
    struct ltr_tensor_ref *t = malloc(sizeof *t * (size_t)cap);
    if (!t) {
        rc = AISLE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    int n = tensor_table(m, t, cap);
    for (int i = 0; i < n && !rc; i++) {
        const struct gguf_tensor *gt = gguf_find_tensor(g, t[i].name);
        int64_t cols = t[i].cols ? t[i].cols : t[i].rows, rows = t[i].cols ? t[i].rows : 1;
        if (!gt || gt->ne[0] != cols || gt->ne[1] * gt->ne[2] * gt->ne[3] != rows || !ggml_can_dequantize(gt->type)) {
            snprintf(err, errlen, "tensor %s: %s", t[i].name,
                     !gt ? "missing" : !ggml_can_dequantize(gt->type) ? "type cannot be read" : "shape differs from the model's");
            rc = AISLE_EFORMAT;
            break;
        }
        size_t rb = ggml_row_size(gt->type, cols);
        for (int64_t r = 0; r < rows && !rc; r++)
            rc = ggml_dequantize_row(gt->type, (const uint8_t *)gt->data + (size_t)r * rb, t[i].d + (size_t)r * cols,
                                     cols);
        if (rc)
            snprintf(err, errlen, "tensor %s: cannot dequantize", t[i].name);
    }
out:
    free(t);
    return rc;
}

int ltr_save_gguf(const struct ltr_model *m, const char *path, char *err, size_t errlen)
{
    struct gguf_writer *w = gguf_writer_new();
    if (!w)
        return AISLE_ENOMEM;
    int rc = ltr_export_gguf(m, w, "aisle-train");
    if (rc && errlen)
        snprintf(err, errlen, "building the GGUF: %s", aisle_strerror(rc));
    if (!rc)
        rc = gguf_writer_write(w, path, err, errlen);
    gguf_writer_free(w);
    return rc;
}
