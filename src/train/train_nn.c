/*
 * train_nn.c — training kernels (see train_nn.h for the contract and dims).
 * Float arithmetic as in the engine, double where a long sum feeds a
 * normalisation (RMSNorm's statistics in the backward; cross-entropy's log of
 * its softmax sum); the softmaxes' exp is the engine's SIMD nn_exp_sum; the
 * big products are OpenBLAS sgemm, the reference attention loops' dots and
 * updates the engine's SIMD nn_dot_f32 / nn_axpy_f32.
 */
#include "train/train_nn.h"

#include "core/error.h"
#include "tensor/tensor.h"

#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void nn_encoder_forward(float *out, const int32_t *inp, const float *wte, int N, int C)
{
    for (int i = 0; i < N; i++)
        memcpy(out + (size_t)i * C, wte + (size_t)inp[i] * C, (size_t)C * sizeof(float));
}

void nn_encoder_backward(float *dwte, const float *dout, const int32_t *inp, int N, int C)
{
    for (int i = 0; i < N; i++) {
        float *d = dwte + (size_t)inp[i] * C;
        const float *g = dout + (size_t)i * C;
        for (int c = 0; c < C; c++)
            d[c] += g[c];
    }
}

void nn_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                         int N, int C, float eps)
{
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C, *dy = dout + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        double ss = 0, dot = 0;
        for (int c = 0; c < C; c++) {
            ss += (double)x[c] * x[c];
            dot += (double)weight[c] * dy[c] * x[c];
        }
        /* y = x r w with r = (mean(x^2) + eps)^-1/2; dr/dx_c = -r^3 x_c / C */
        double r = 1.0 / sqrt(ss / C + eps);
        float rf = (float)r, k = (float)(r * r * r * dot / C);
        for (int c = 0; c < C; c++) {
            dweight[c] += dy[c] * x[c] * rf;
            dx[c] += weight[c] * dy[c] * rf - k * x[c];
        }
    }
}

void nn_matmul_forward(float *out, const float *inp, const float *weight, int N, int C, int OC)
{
    tensor_sgemm(0, 1, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
}

void nn_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight, int N,
                        int C, int OC)
{
    if (dinp)
        tensor_sgemm(0, 0, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight)
        tensor_sgemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
}

void nn_rope_backward(float *dx, const int *pos, int N, int nheads, int head_dim, float freq_base)
{
    for (int t = 0; t < N; t++)
        for (int i = 0; i < head_dim / 2; i++) {
            /* the forward's angle, computed the forward's way, negated */
            double theta = pos[t] * pow(freq_base, -2.0 * i / head_dim), sn, cs;
            sincos(theta, &sn, &cs);
            float c = (float)cs, s = (float)sn;
            for (int h = 0; h < nheads; h++) {
                float *v = dx + ((size_t)t * nheads + h) * head_dim + 2 * i;
                float a = v[0], b = v[1];
                v[0] = a * c + b * s;
                v[1] = -a * s + b * c;
            }
        }
}

/* ---- attention --------------------------------------------------------------- */

struct att_args {
    float *out, *att, *dq, *dk, *dv;
    const float *q, *k, *v, *dout, *cout, *catt;
    int B, T, NH, NKV, HD;
    atomic_int next; /* the next unit to take: whichever thread comes first */
};

/* Units are (b, kvh): the G = NH/NKV query heads sharing one K/V head. In the
 * backward they all add into that head's dk/dv, so they belong to one unit.
 * Units are taken dynamically (tpool_run_dynamic): on a loaded machine a
 * descheduled thread's units go to the others instead of stalling the step.
 * A unit's outputs are computed by one thread in a fixed order, so the bits
 * do not depend on which thread takes it. */
static void att_fwd_job(void *ctx, int ith, int nth)
{
    struct att_args *a = ctx;
    const int T = a->T, NH = a->NH, NKV = a->NKV, HD = a->HD, G = NH / NKV;
    const int QD = NH * HD, KVD = NKV * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    (void)ith;
    (void)nth;
    for (int u; (u = atomic_fetch_add(&a->next, 1)) < a->B * NKV;) {
        int b = u / NKV, kvh = u % NKV;
        for (int g = 0; g < G; g++) {
            int h = kvh * G + g;
            for (int t = 0; t < T; t++) {
                const float *qt = a->q + ((size_t)b * T + t) * QD + (size_t)h * HD;
                float *p = a->att + (((size_t)b * NH + h) * T + t) * T;
                float mx = -INFINITY;
                for (int j = 0; j <= t; j++) {
                    const float *kj = a->k + ((size_t)b * T + j) * KVD + (size_t)kvh * HD;
                    p[j] = nn_dot_f32(qt, kj, HD) * scale;
                    mx = p[j] > mx ? p[j] : mx;
                }
                float sum = 0;
                for (int j = 0; j <= t; j++) {
                    p[j] = expf(p[j] - mx);
                    sum += p[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j <= t; j++)
                    p[j] *= inv;
                for (int j = t + 1; j < T; j++)
                    p[j] = 0.0f;
                float *o = a->out + ((size_t)b * T + t) * QD + (size_t)h * HD;
                memset(o, 0, (size_t)HD * sizeof(float));
                for (int j = 0; j <= t; j++)
                    nn_axpy_f32(o, p[j], a->v + ((size_t)b * T + j) * KVD + (size_t)kvh * HD, HD);
            }
        }
    }
}

void nn_attention_forward_ref(struct tpool *pool, float *out, float *att, const float *q, const float *k,
                              const float *v, int B, int T, int NH, int NKV, int HD)
{
    struct att_args a = {.out = out, .att = att, .q = q, .k = k, .v = v, .B = B, .T = T, .NH = NH, .NKV = NKV, .HD = HD};
    atomic_init(&a.next, 0);
    tpool_run_dynamic(pool, att_fwd_job, &a);
}

static void att_bwd_job(void *ctx, int ith, int nth)
{
    struct att_args *a = ctx;
    const int T = a->T, NH = a->NH, NKV = a->NKV, HD = a->HD, G = NH / NKV;
    const int QD = NH * HD, KVD = NKV * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    (void)ith;
    (void)nth;
    for (int u; (u = atomic_fetch_add(&a->next, 1)) < a->B * NKV;) {
        int b = u / NKV, kvh = u % NKV;
        for (int g = 0; g < G; g++) {
            int h = kvh * G + g;
            for (int t = 0; t < T; t++) {
                size_t qo = ((size_t)b * T + t) * QD + (size_t)h * HD;
                const float *qt = a->q + qo, *dot = a->dout + qo, *ot = a->cout + qo;
                float *dqt = a->dq + qo;
                const float *p = a->catt + (((size_t)b * NH + h) * T + t) * T;
                /* softmax backward: ds_j = p_j (dp_j - sum_i p_i dp_i), dp_j = dout . v_j,
                 * and sum_i p_i dp_i = dout . out */
                float base = nn_dot_f32(dot, ot, HD);
                for (int j = 0; j <= t; j++) {
                    size_t ko = ((size_t)b * T + j) * KVD + (size_t)kvh * HD;
                    float ds = p[j] * (nn_dot_f32(dot, a->v + ko, HD) - base) * scale;
                    nn_axpy_f32(a->dv + ko, p[j], dot, HD);
                    nn_axpy_f32(dqt, ds, a->k + ko, HD);
                    nn_axpy_f32(a->dk + ko, ds, qt, HD);
                }
            }
        }
    }
}

void nn_attention_backward_ref(struct tpool *pool, float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, const float *att, const float *out, int B, int T, int NH,
                               int NKV, int HD)
{
    struct att_args a = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .k = k, .v = v, .catt = att,
                         .cout = out, .B = B, .T = T, .NH = NH, .NKV = NKV, .HD = HD};
    atomic_init(&a.next, 0);
    tpool_run_dynamic(pool, att_bwd_job, &a);
}

/* The fast path: per (batch row, head) the products are sgemm — scores
 * S = scale Q_h K_g^T, then the causal softmax row by row, then O_h = P V_g;
 * backward dV_g += P^T dO_h, dP = dO_h V_g^T, dS = P (dP - dO.O) scale (zero
 * above the diagonal), dQ_h += dS K_g, dK_g += dS^T Q_h. sgemm runs these at
 * several times the speed of the per-pair dot/axpy loops (the _ref
 * functions, kept as the reference the tests compare with). Rows are taken
 * in blocks of `rows` query positions: block [r0, r1) only meets keys
 * [0, r1), so the products skip the tiles above the diagonal — at T = 1024
 * and 256-row blocks they do 62.5 % of the full square's work (rows >= T is
 * the full square; at T = 256 blocks did not pay: bench/train). The
 * softmax's exp is the engine's SIMD one (it was most of the forward at
 * T = 1024 with libm's). Heads run one after another on the caller;
 * OpenBLAS's own threads split each product. */
static void softmax_causal(float *p, int t0, int t1, int T)
{
    for (int t = t0; t < t1; t++) {
        float *r = p + (size_t)t * T, mx = -INFINITY;
        for (int j = 0; j <= t; j++)
            mx = r[j] > mx ? r[j] : mx;
        float inv = 1.0f / nn_exp_sum(r, mx, t + 1); /* the engine's SIMD exp */
        for (int j = 0; j <= t; j++)
            r[j] *= inv;
        memset(r + t + 1, 0, sizeof *r * (size_t)(T - t - 1));
    }
}

void nn_attention_forward_rows(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                               int NH, int NKV, int HD, int rows)
{
    const int G = NH / NKV, QD = NH * HD, KVD = NKV * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    if (rows < 1 || rows > T)
        rows = T;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const size_t qo = (size_t)b * T * QD + (size_t)h * HD, ko = (size_t)b * T * KVD + (size_t)(h / G) * HD;
            float *p = att + ((size_t)b * NH + h) * T * T;
            for (int r0 = 0; r0 < T; r0 += rows) {
                int r1 = r0 + rows < T ? r0 + rows : T, m = r1 - r0;
                float *pr = p + (size_t)r0 * T;
                tensor_sgemm(0, 1, m, r1, HD, scale, q + qo + (size_t)r0 * QD, QD, k + ko, KVD, 0.0f, pr, T);
                softmax_causal(p, r0, r1, T);
                tensor_sgemm(0, 0, m, HD, r1, 1.0f, pr, T, v + ko, KVD, 0.0f, out + qo + (size_t)r0 * QD, QD);
            }
        }
}

int nn_attention_backward_rows(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                               const float *v, const float *att, const float *out, int B, int T, int NH, int NKV,
                               int HD, int rows)
{
    if (rows < 1 || rows > T)
        rows = T;
    float *ds = malloc(sizeof *ds * (size_t)rows * T);
    if (!ds)
        return AISLE_ENOMEM;
    const int G = NH / NKV, QD = NH * HD, KVD = NKV * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const size_t qo = (size_t)b * T * QD + (size_t)h * HD, ko = (size_t)b * T * KVD + (size_t)(h / G) * HD;
            const float *p = att + ((size_t)b * NH + h) * T * T;
            for (int r0 = 0; r0 < T; r0 += rows) {
                int r1 = r0 + rows < T ? r0 + rows : T, m = r1 - r0;
                const float *pb = p + (size_t)r0 * T, *dob = dout + qo + (size_t)r0 * QD;
                tensor_sgemm(1, 0, r1, HD, m, 1.0f, pb, T, dob, QD, 1.0f, dv + ko, KVD);
                tensor_sgemm(0, 1, m, r1, HD, 1.0f, dob, QD, v + ko, KVD, 0.0f, ds, T);
                for (int t = r0; t < r1; t++) {
                    const float *pr = p + (size_t)t * T;
                    float *r = ds + (size_t)(t - r0) * T;
                    /* sum_j p_j dp_j = dout . out (the softmax backward's baseline) */
                    float base = nn_dot_f32(dout + qo + (size_t)t * QD, out + qo + (size_t)t * QD, HD);
                    for (int j = 0; j <= t; j++)
                        r[j] = pr[j] * (r[j] - base) * scale;
                    for (int j = t + 1; j < r1; j++)
                        r[j] = 0.0f;
                }
                tensor_sgemm(0, 0, m, HD, r1, 1.0f, ds, T, k + ko, KVD, 1.0f, dq + qo + (size_t)r0 * QD, QD);
                tensor_sgemm(1, 0, r1, HD, m, 1.0f, ds, T, q + qo + (size_t)r0 * QD, QD, 1.0f, dk + ko, KVD);
            }
        }
    free(ds);
    return 0;
}

void nn_attention_forward(struct tpool *pool, float *out, float *att, const float *q, const float *k, const float *v,
                          int B, int T, int NH, int NKV, int HD)
{
    (void)pool;
    nn_attention_forward_rows(out, att, q, k, v, B, T, NH, NKV, HD, NN_ATTENTION_ROWS);
}

void nn_attention_backward(struct tpool *pool, float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *att, const float *out, int B, int T, int NH,
                           int NKV, int HD)
{
    /* out of memory for the scratch: the loops need none */
    if (nn_attention_backward_rows(dq, dk, dv, dout, q, k, v, att, out, B, T, NH, NKV, HD, NN_ATTENTION_ROWS))
        nn_attention_backward_ref(pool, dq, dk, dv, dout, q, k, v, att, out, B, T, NH, NKV, HD);
}

/* ---- elementwise ------------------------------------------------------------- */

void nn_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int n)
{
    for (int i = 0; i < n; i++) {
        float g = gate[i], sig = 1.0f / (1.0f + expf(-g)), silu = g * sig;
        /* silu'(g) = sig (1 + g (1 - sig)) */
        dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        dup[i] += dout[i] * silu;
    }
}

void nn_residual_forward(float *out, const float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void nn_residual_backward(float *da, float *db, const float *dout, int n)
{
    for (int i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

void nn_crossentropy_forward(float *probs, float *losses, const float *logits, const int32_t *targets, int N, int V)
{
    for (int i = 0; i < N; i++) {
        const float *l = logits + (size_t)i * V;
        float *p = probs + (size_t)i * V, mx = l[0], lt = l[targets[i]]; /* read before p overwrites l */
        for (int j = 1; j < V; j++)
            mx = l[j] > mx ? l[j] : mx;
        if (p != l)
            memcpy(p, l, sizeof *p * (size_t)V);
        /* the engine's SIMD exp (libm's expf was ~5 % of a small model's step) */
        double sum = nn_exp_sum(p, mx, V);
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < V; j++)
            p[j] *= inv;
        /* -log p_t from the logits (exact for tiny p, where p_t itself underflows) */
        losses[i] = (float)(log(sum) - ((double)lt - mx));
    }
}

void nn_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, const float *dlosses, int N,
                              int V)
{
    for (int i = 0; i < N; i++) {
        const float *p = probs + (size_t)i * V;
        float *d = dlogits + (size_t)i * V, dl = dlosses[i];
        if (d == p)
            for (int j = 0; j < V; j++)
                d[j] = dl * p[j];
        else
            for (int j = 0; j < V; j++)
                d[j] += dl * p[j];
        d[targets[i]] -= dl;
    }
}

void nn_adamw_update(float *p, const float *g, float *m, float *v, long n, float lr, float b1, float b2, float eps,
                     float wd, int t)
{
    const float c1 = (float)(1.0 - pow(b1, t)), c2 = (float)(1.0 - pow(b2, t));
    for (long i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float mh = m[i] / c1, vh = v[i] / c2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}
