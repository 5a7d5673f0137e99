/*
 * train_test.c — the training Llama: a finite-difference gradient check for
 * every backward kernel and for the whole model, overfitting a fixed batch,
 * AdamW against a hand-computed step, the schedule's shape, gradient
 * accumulation, determinism, and a GGUF written by the trainer loaded by the
 * inference engine with the trainer's logits.
 *
 * Finite differences: central, f'(x) ~ (f(x+h) - f(x-h)) / 2h, with the
 * scalar loss sum(out * R) (R random) accumulated in double over a float
 * forward. Its error is the O(h^2 f''') truncation plus the forward's float
 * rounding, ~6e-8 * sum|terms| / h; for these sizes (|out| ~ 1, tens of
 * terms) and h = 1e-3 that is ~1e-4 absolute, so elements are compared with
 * |num - ana| <= 2e-3 + 2e-2 |ana|. A wrong backward (a missing term, a sign,
 * a transposed index) is off by O(|ana|) and fails.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tensor/tensor.h"
#include "train/llama_train.h"
#include "train/train_nn.h"

static uint64_t rs = 1;
static float frand(void) /* uniform in [-1, 1) */
{
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rs >> 40) / 8388608.0 - 1.0);
}
static void fill(float *x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++)
        x[i] = s * frand();
}

/* A kernel under test: run() recomputes out from the current inputs. */
struct fd {
    void (*run)(void *ctx);
    void *ctx;
    const float *out;
    const float *R;
    int nout;
};

static double fd_loss(const struct fd *f)
{
    f->run(f->ctx);
    double s = 0;
    for (int i = 0; i < f->nout; i++)
        s += (double)f->out[i] * f->R[i];
    return s;
}

/* Compare the analytic gradient ana (n) of input x with central differences. */
static void fd_check(const char *what, const struct fd *f, float *x, const float *ana, int n, float h, float atol,
                     float rtol)
{
    double worst = 0;
    for (int i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + h;
        double lp = fd_loss(f);
        x[i] = x0 - h;
        double lm = fd_loss(f);
        x[i] = x0;
        double num = (lp - lm) / (2.0 * h);
        double err = fabs(num - ana[i]);
        worst = err > worst ? err : worst;
        cr_assert(err <= atol + rtol * fabs(ana[i]), "%s[%d]: analytic %.6g, numeric %.6g", what, i, ana[i], num);
    }
    f->run(f->ctx);
    (void)worst;
}

/* ---- per-kernel checks ----------------------------------------------------------- */

struct k_ctx {
    int N, C, OC, V, B, T, NH, NKV, HD;
    float *out, *a, *b, *w, *att, *probs;
    int32_t *tok;
    int *pos;
    float eps;
};

static void run_encoder(void *p)
{
    struct k_ctx *k = p;
    nn_encoder_forward(k->out, k->tok, k->w, k->N, k->C);
}

Test(train_nn, encoder_grad)
{
    struct k_ctx k = {.N = 6, .C = 5, .V = 4};
    int32_t tok[6] = {0, 3, 3, 1, 0, 3}; /* repeats: the backward must add */
    k.tok = tok;
    k.w = malloc(sizeof(float) * 20), k.out = malloc(sizeof(float) * 30);
    float R[30], dw[20] = {0};
    fill(k.w, 20, 1), fill(R, 30, 1);
    nn_encoder_backward(dw, R, tok, 6, 5);
    struct fd f = {run_encoder, &k, k.out, R, 30};
    fd_check("dwte", &f, k.w, dw, 20, 1e-3f, 2e-3f, 2e-2f);
    free(k.w), free(k.out);
}

static void run_rmsnorm(void *p)
{
    struct k_ctx *k = p;
    nn_rmsnorm_forward(k->out, k->a, k->w, k->N, k->C, k->eps);
}

Test(train_nn, rmsnorm_grad)
{
    enum { N = 3, C = 12 };
    float x[N * C], w[C], out[N * C], R[N * C], dx[N * C], dw[C];
    fill(x, N * C, 1), fill(w, C, 1), fill(R, N * C, 1);
    for (int i = 0; i < N * C; i++)
        dx[i] = 0.5f; /* backward must add to what is there */
    for (int i = 0; i < C; i++)
        dw[i] = -0.25f;
    nn_rmsnorm_backward(dx, dw, R, x, w, N, C, 1e-5f);
    for (int i = 0; i < N * C; i++)
        dx[i] -= 0.5f;
    for (int i = 0; i < C; i++)
        dw[i] += 0.25f;
    struct k_ctx k = {.N = N, .C = C, .out = out, .a = x, .w = w, .eps = 1e-5f};
    struct fd f = {run_rmsnorm, &k, out, R, N * C};
    fd_check("rmsnorm dinp", &f, x, dx, N * C, 1e-3f, 2e-3f, 2e-2f);
    fd_check("rmsnorm dweight", &f, w, dw, C, 1e-3f, 2e-3f, 2e-2f);
}

static void run_matmul(void *p)
{
    struct k_ctx *k = p;
    nn_matmul_forward(k->out, k->a, k->w, k->N, k->C, k->OC);
}

Test(train_nn, matmul_grad_and_reference)
{
    enum { N = 5, C = 7, OC = 6 };
    float x[N * C], w[OC * C], out[N * OC], R[N * OC], dx[N * C] = {0}, dw[OC * C] = {0};
    fill(x, N * C, 1), fill(w, OC * C, 1), fill(R, N * OC, 1);
    nn_matmul_forward(out, x, w, N, C, OC);
    for (int i = 0; i < N; i++) /* against the plain loop: sgemm's rounding only */
        for (int o = 0; o < OC; o++) {
            double s = 0;
            for (int c = 0; c < C; c++)
                s += (double)x[i * C + c] * w[o * C + c];
            cr_assert(fabs(s - out[i * OC + o]) <= 1e-5, "out[%d,%d] %g vs %g", i, o, out[i * OC + o], s);
        }
    nn_matmul_backward(dx, dw, R, x, w, N, C, OC);
    struct k_ctx k = {.N = N, .C = C, .OC = OC, .out = out, .a = x, .w = w};
    struct fd f = {run_matmul, &k, out, R, N * OC};
    fd_check("matmul dinp", &f, x, dx, N * C, 1e-3f, 2e-3f, 2e-2f);
    fd_check("matmul dweight", &f, w, dw, OC * C, 1e-3f, 2e-3f, 2e-2f);
    /* accumulation: a second backward doubles the gradients */
    float dx2[N * C], dw2[OC * C];
    memcpy(dx2, dx, sizeof(dx)), memcpy(dw2, dw, sizeof(dw));
    nn_matmul_backward(dx2, dw2, R, x, w, N, C, OC);
    for (int i = 0; i < N * C; i++)
        cr_assert_float_eq(dx2[i], 2 * dx[i], 1e-5);
    for (int i = 0; i < OC * C; i++)
        cr_assert_float_eq(dw2[i], 2 * dw[i], 1e-5);
}

static void run_rope(void *p)
{
    struct k_ctx *k = p;
    memcpy(k->out, k->a, sizeof(float) * k->N * k->NH * k->HD);
    nn_rope_forward(k->out, k->pos, k->N, k->NH, k->HD, 10000.0f);
}

Test(train_nn, rope_grad)
{
    enum { N = 5, NH = 2, HD = 8 };
    float x[N * NH * HD], out[N * NH * HD], R[N * NH * HD], dx[N * NH * HD];
    int pos[N] = {0, 1, 2, 7, 40};
    fill(x, sizeof(x) / 4, 1), fill(R, sizeof(R) / 4, 1);
    memcpy(dx, R, sizeof(R));
    nn_rope_backward(dx, pos, N, NH, HD, 10000.0f);
    struct k_ctx k = {.N = N, .NH = NH, .HD = HD, .out = out, .a = x, .pos = pos};
    struct fd f = {run_rope, &k, out, R, N * NH * HD};
    fd_check("rope dx", &f, x, dx, N * NH * HD, 1e-3f, 2e-3f, 2e-2f);
}

static void run_attention(void *p)
{
    struct k_ctx *k = p;
    int QD = k->NH * k->HD, KVD = k->NKV * k->HD, N = k->B * k->T;
    nn_attention_forward(NULL, k->out, k->att, k->a, k->b, k->b + (size_t)N * KVD, k->B, k->T, k->NH, k->NKV, k->HD);
    (void)QD;
}

Test(train_nn, attention_grad_gqa)
{
    enum { B = 2, T = 5, NH = 4, NKV = 2, HD = 4, QD = NH * HD, KVD = NKV * HD, N = B * T };
    float q[N * QD], kv[2 * N * KVD], out[N * QD], att[B * NH * T * T], R[N * QD];
    float dq[N * QD] = {0}, dkv[2 * N * KVD] = {0};
    fill(q, N * QD, 1), fill(kv, 2 * N * KVD, 1), fill(R, N * QD, 1);
    struct tpool *pool = tpool_new(2);
    nn_attention_forward(pool, out, att, q, kv, kv + N * KVD, B, T, NH, NKV, HD);
    /* causal rows sum to 1 and are zero in the future */
    for (int r = 0; r < B * NH * T; r++) {
        int t = r % T;
        double s = 0;
        for (int j = 0; j < T; j++) {
            s += att[r * T + j];
            if (j > t)
                cr_assert_eq(att[r * T + j], 0.0f);
        }
        cr_assert(fabs(s - 1) < 1e-5);
    }
    nn_attention_backward(pool, dq, dkv, dkv + N * KVD, R, q, kv, kv + N * KVD, att, out, B, T, NH, NKV, HD);
    /* The sgemm path against the reference loops: the same sums in another
     * order, so within float rounding (values here are O(1)). */
    float out2[N * QD], att2[B * NH * T * T], dq2[N * QD] = {0}, dkv2[2 * N * KVD] = {0};
    nn_attention_forward_ref(pool, out2, att2, q, kv, kv + N * KVD, B, T, NH, NKV, HD);
    nn_attention_backward_ref(pool, dq2, dkv2, dkv2 + N * KVD, R, q, kv, kv + N * KVD, att2, out2, B, T, NH, NKV, HD);
    for (int i = 0; i < N * QD; i++) {
        cr_assert(fabsf(out[i] - out2[i]) <= 1e-5f + 1e-5f * fabsf(out2[i]), "out[%d] %g vs ref %g", i, out[i], out2[i]);
        cr_assert(fabsf(dq[i] - dq2[i]) <= 1e-5f + 1e-5f * fabsf(dq2[i]), "dq[%d] %g vs ref %g", i, dq[i], dq2[i]);
    }
    for (int i = 0; i < 2 * N * KVD; i++)
        cr_assert(fabsf(dkv[i] - dkv2[i]) <= 1e-5f + 1e-5f * fabsf(dkv2[i]), "dkv[%d] %g vs ref %g", i, dkv[i], dkv2[i]);
    for (int i = 0; i < B * NH * T * T; i++)
        cr_assert(fabsf(att[i] - att2[i]) <= 1e-6f, "att[%d] %g vs ref %g", i, att[i], att2[i]);
    tpool_free(pool);
    struct k_ctx k = {.B = B, .T = T, .NH = NH, .NKV = NKV, .HD = HD, .out = out, .att = att, .a = q, .b = kv};
    struct fd f = {run_attention, &k, out, R, N * QD};
    fd_check("attention dq", &f, q, dq, N * QD, 1e-3f, 2e-3f, 2e-2f);
    fd_check("attention dk,dv", &f, kv, dkv, 2 * N * KVD, 1e-3f, 2e-3f, 2e-2f);
}

/* Row blocks of every size (1, ones that do not divide T, T, more than T)
 * give the loops' result: the blocks skip only keys after their last row. */
Test(train_nn, attention_row_blocks_match_the_loops)
{
    enum { B = 2, T = 11, NH = 4, NKV = 2, HD = 8, QD = NH * HD, KVD = NKV * HD, N = B * T };
    static float q[N * QD], kv[2 * N * KVD], R[N * QD], out[N * QD], att[B * NH * T * T], dq[N * QD],
        dkv[2 * N * KVD], out2[N * QD], att2[B * NH * T * T], dq2[N * QD], dkv2[2 * N * KVD];
    fill(q, N * QD, 1), fill(kv, 2 * N * KVD, 1), fill(R, N * QD, 1);
    struct tpool *pool = tpool_new(2);
    memset(dq2, 0, sizeof dq2), memset(dkv2, 0, sizeof dkv2);
    nn_attention_forward_ref(pool, out2, att2, q, kv, kv + N * KVD, B, T, NH, NKV, HD);
    nn_attention_backward_ref(pool, dq2, dkv2, dkv2 + N * KVD, R, q, kv, kv + N * KVD, att2, out2, B, T, NH, NKV, HD);
    tpool_free(pool);
    const int rows[] = {1, 3, 4, 10, T, T + 5, 0};
    for (size_t c = 0; c < sizeof rows / sizeof rows[0]; c++) {
        memset(dq, 0, sizeof dq), memset(dkv, 0, sizeof dkv);
        memset(att, 0x7f, sizeof att); /* garbage where nothing is written would show */
        nn_attention_forward_rows(out, att, q, kv, kv + N * KVD, B, T, NH, NKV, HD, rows[c]);
        cr_assert_eq(nn_attention_backward_rows(dq, dkv, dkv + N * KVD, R, q, kv, kv + N * KVD, att, out, B, T, NH, NKV,
                                                HD, rows[c]),
                     0);
        for (int i = 0; i < B * NH * T * T; i++)
            cr_assert(fabsf(att[i] - att2[i]) <= 1e-6f, "rows %d att[%d] %g vs ref %g", rows[c], i, att[i], att2[i]);
        for (int i = 0; i < N * QD; i++) {
            cr_assert(fabsf(out[i] - out2[i]) <= 1e-5f + 1e-5f * fabsf(out2[i]), "rows %d out[%d]", rows[c], i);
            cr_assert(fabsf(dq[i] - dq2[i]) <= 1e-5f + 1e-5f * fabsf(dq2[i]), "rows %d dq[%d] %g vs %g", rows[c], i,
                      dq[i], dq2[i]);
        }
        for (int i = 0; i < 2 * N * KVD; i++)
            cr_assert(fabsf(dkv[i] - dkv2[i]) <= 1e-5f + 1e-5f * fabsf(dkv2[i]), "rows %d dkv[%d] %g vs %g", rows[c],
                      i, dkv[i], dkv2[i]);
    }
}

static void run_swiglu(void *p)
{
    struct k_ctx *k = p;
    nn_swiglu_forward(k->out, k->a, k->b, k->N);
}

Test(train_nn, swiglu_and_residual_grad)
{
    enum { n = 24 };
    float g[n], u[n], out[n], R[n], dg[n] = {0}, du[n] = {0};
    fill(g, n, 4), fill(u, n, 2), fill(R, n, 1);
    nn_swiglu_backward(dg, du, R, g, u, n);
    struct k_ctx k = {.N = n, .out = out, .a = g, .b = u};
    struct fd f = {run_swiglu, &k, out, R, n};
    fd_check("swiglu dgate", &f, g, dg, n, 1e-3f, 2e-3f, 2e-2f);
    fd_check("swiglu dup", &f, u, du, n, 1e-3f, 2e-3f, 2e-2f);
    /* residual: exact */
    float a[n], b[n], da[n], db[n];
    fill(a, n, 1), fill(b, n, 1), fill(da, n, 1);
    memcpy(db, da, sizeof(da));
    nn_residual_forward(out, a, b, n);
    nn_residual_backward(da, db, R, n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(out[i], a[i] + b[i]);
        cr_assert_float_eq(da[i] - db[i], 0.0f, 1e-7);
    }
    float z[n] = {0}, z2[n] = {0};
    nn_residual_backward(z, z2, R, n);
    for (int i = 0; i < n; i++)
        cr_assert(z[i] == R[i] && z2[i] == R[i]);
}

static void run_ce(void *p)
{
    struct k_ctx *k = p;
    nn_crossentropy_forward(k->probs, k->out, k->a, k->tok, k->N, k->V);
}

Test(train_nn, crossentropy_grad)
{
    enum { N = 4, V = 9 };
    float logits[N * V], probs[N * V], losses[N], dl[N], dlog[N * V] = {0};
    int32_t tg[N] = {0, 8, 3, 3};
    fill(logits, N * V, 3);
    for (int i = 0; i < N; i++)
        dl[i] = 0.25f + 0.5f * (float)i; /* per-position weights, as a loss mask gives */
    dl[2] = 0.0f;                       /* a masked position */
    nn_crossentropy_forward(probs, losses, logits, tg, N, V);
    for (int i = 0; i < N; i++)
        cr_assert(fabs(losses[i] + log(probs[i * V + tg[i]])) < 1e-5);
    nn_crossentropy_backward(dlog, probs, tg, dl, N, V);
    struct k_ctx k = {.N = N, .V = V, .out = losses, .a = logits, .probs = probs, .tok = tg};
    struct fd f = {run_ce, &k, losses, dl, N};
    fd_check("crossentropy dlogits", &f, logits, dlog, N * V, 1e-3f, 2e-3f, 2e-2f);
    for (int j = 0; j < V; j++)
        cr_assert_eq(dlog[2 * V + j], 0.0f);
    /* in place (probs == logits, as the model calls it): the same numbers */
    float buf[N * V], l2[N];
    memcpy(buf, logits, sizeof(buf));
    nn_crossentropy_forward(buf, l2, buf, tg, N, V);
    for (int i = 0; i < N; i++)
        cr_assert_eq(l2[i], losses[i]);
    cr_assert_eq(memcmp(buf, probs, sizeof(buf)), 0);
    nn_crossentropy_backward(buf, buf, tg, dl, N, V);
    for (int i = 0; i < N * V; i++)
        cr_assert_float_eq(buf[i], dlog[i], 1e-7);
}

/* ---- AdamW, schedule ----------------------------------------------------------- */

Test(train_opt, adamw_hand_computed)
{
    /* lr 0.1, b1 0.9, b2 0.999, eps 1e-8, wd 0.1. Step 1: m = 0.1 g, v = 0.001 g^2,
     * bias-corrected m/sqrt(v) = sign(g) (0 for g = 0), so p -= 0.1 (sign(g) + 0.1 p):
     * 1 -> 0.89, -2 -> -1.88, 0.5 -> 0.495. Step 2 (g = -0.25, 3, 2), e.g. p0:
     * m = 0.02, mh = 0.02/0.19, v = 0.00031225, vh = v/0.001999, p = 0.89 - 0.1 (mh/sqrt(vh) + 0.089) = 0.8544663. */
    float p[3] = {1.0f, -2.0f, 0.5f}, m[3] = {0}, v[3] = {0};
    float g1[3] = {0.5f, -1.0f, 0.0f}, g2[3] = {-0.25f, 3.0f, 2.0f};
    nn_adamw_update(p, g1, m, v, 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f, 1);
    cr_assert_float_eq(p[0], 0.89f, 1e-6);
    cr_assert_float_eq(p[1], -1.88f, 1e-6);
    cr_assert_float_eq(p[2], 0.495f, 1e-6);
    nn_adamw_update(p, g2, m, v, 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f, 2);
    cr_assert_float_eq(p[0], 0.8544663f, 2e-6);
    cr_assert_float_eq(p[1], -1.9106190f, 2e-6);
    cr_assert_float_eq(p[2], 0.4156363f, 2e-6);
}

Test(train_opt, lr_schedule_shape)
{
    const float mx = 1e-3f, mn = 1e-4f;
    cr_assert_float_eq(ltr_lr_schedule(0, 10, 110, mx, mn), mx / 10, 1e-9);
    cr_assert_float_eq(ltr_lr_schedule(4, 10, 110, mx, mn), mx / 2, 1e-9);
    cr_assert_float_eq(ltr_lr_schedule(9, 10, 110, mx, mn), mx, 1e-9);
    cr_assert_float_eq(ltr_lr_schedule(10, 10, 110, mx, mn), mx, 1e-9);
    /* halfway through the decay (steps 10..109): the mean of max and min */
    cr_assert_float_eq(ltr_lr_schedule(60, 10, 111, mx, mn), (mx + mn) / 2, 1e-5 * mx + 1e-9);
    cr_assert_float_eq(ltr_lr_schedule(109, 10, 110, mx, mn), mn, 1e-9);
    cr_assert_float_eq(ltr_lr_schedule(500, 10, 110, mx, mn), mn, 1e-9);
    float prev = 1;
    for (int s = 10; s < 110; s++) {
        float lr = ltr_lr_schedule(s, 10, 110, mx, mn);
        cr_assert(lr <= prev && lr >= mn);
        prev = lr;
    }
    for (int s = 1; s < 10; s++)
        cr_assert(ltr_lr_schedule(s, 10, 110, mx, mn) > ltr_lr_schedule(s - 1, 10, 110, mx, mn));
}

/* ---- the whole model ----------------------------------------------------------- */

static const struct ltr_config tiny = {.V = 32, .C = 16, .L = 2, .NH = 4, .NKV = 2, .F = 32, .max_ctx = 64};

static void rand_tokens(int32_t *t, int n, int V)
{
    for (int i = 0; i < n; i++)
        t[i] = (int32_t)((frand() + 1.0f) * 0.5f * V) % V;
}

/* ltr_forward that must succeed; the loss. */
static float fwd(struct ltr_model *m, const int32_t *tok, const int32_t *tg, const float *w, int B, int T)
{
    float loss = -1;
    cr_assert_eq(ltr_forward(m, tok, tg, w, B, T, &loss), 0);
    return loss;
}

static void model_gradcheck(int tied)
{
    enum { B = 2, T = 8, N = B * T };
    struct ltr_config c = tiny;
    c.tied = tied;
    struct ltr_model *m;
    /* one thread: ~11k tiny forwards, where waking a pool costs more than it saves */
    cr_assert_eq(ltr_model_new(&m, &c, B, T, 1), 0);
    ltr_init(m, 7, 0.3f);
    int32_t tok[N], tg[N];
    float w[N];
    rand_tokens(tok, N, c.V), rand_tokens(tg, N, c.V);
    for (int i = 0; i < N; i++)
        w[i] = i % 5 == 0 ? 0.0f : 0.5f + 0.5f * (float)(i % 3); /* a loss mask with zeros */
    fwd(m, tok, tg, w, B, T);
    cr_assert_eq(ltr_backward(m, 1.0f), 0);
    /* central differences of the mean loss (float, ~3.5): rounding ~3.5 * 6e-8 / h = 4e-5 at h = 5e-3;
     * truncation h^2 f''' ~ 1e-4 with these weights: atol 5e-4, rtol 3e-2, and the whole vector
     * within 1% in L2 */
    const float h = 5e-3f;
    double e2 = 0, a2 = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        float x0 = m->params_mem[i];
        m->params_mem[i] = x0 + h;
        double lp = fwd(m, tok, tg, w, B, T);
        m->params_mem[i] = x0 - h;
        double lm = fwd(m, tok, tg, w, B, T);
        m->params_mem[i] = x0;
        double num = (lp - lm) / (2.0 * h), ana = m->grads_mem[i];
        e2 += (num - ana) * (num - ana), a2 += ana * ana;
        cr_assert(fabs(num - ana) <= 5e-4 + 3e-2 * fabs(ana), "param %zu: analytic %.6g numeric %.6g", i, ana, num);
    }
    cr_assert(a2 > 0 && sqrt(e2 / a2) < 3e-3, "relative L2 error %g", sqrt(e2 / a2)); /* seen: ~4e-4 */
    ltr_model_free(m);
}

Test(train_model, gradcheck_untied) { model_gradcheck(0); }
Test(train_model, gradcheck_tied) { model_gradcheck(1); }

Test(train_model, overfits_a_fixed_batch)
{
    enum { B = 2, T = 16, N = B * T };
    struct ltr_config c = {.V = 32, .C = 32, .L = 2, .NH = 4, .NKV = 2, .F = 64};
    struct ltr_model *m;
    cr_assert_eq(ltr_model_new(&m, &c, B, T, 2), 0);
    ltr_init(m, 42, 0.02f);
    int32_t seq[B * (T + 1)], tok[N], tg[N];
    rand_tokens(seq, B * (T + 1), c.V);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            tok[b * T + t] = seq[b * (T + 1) + t], tg[b * T + t] = seq[b * (T + 1) + t + 1];
    struct ltr_adamw opt = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.0f};
    float first = 0, loss = 0;
    for (int s = 0; s < 300; s++) {
        loss = fwd(m, tok, tg, NULL, B, T);
        if (s == 0)
            first = loss;
        ltr_zero_grad(m);
        ltr_backward(m, 1.0f);
        ltr_clip_grad_norm(m, 1.0f);
        opt.lr = ltr_lr_schedule(s, 10, 300, 1e-2f, 1e-3f);
        ltr_adamw_step(m, &opt);
    }
    loss = fwd(m, tok, tg, NULL, B, T);
    cr_log_info("overfit: loss %g -> %g after 300 steps", first, loss);
    cr_assert(fabs(first - logf(32)) < 0.1f, "initial loss %g, expected ~ln 32", first);
    cr_assert(loss < 1e-3f, "loss after 300 steps %g (from %g)", loss, first);
    ltr_model_free(m);
}

Test(train_model, accumulation_equals_one_batch)
{
    enum { B = 4, T = 8, N = B * T };
    struct ltr_model *m;
    cr_assert_eq(ltr_model_new(&m, &tiny, B, T, 2), 0);
    ltr_init(m, 3, 0.2f);
    int32_t tok[N], tg[N];
    rand_tokens(tok, N, tiny.V), rand_tokens(tg, N, tiny.V);
    float full = fwd(m, tok, tg, NULL, B, T);
    ltr_backward(m, 1.0f);
    float *g1 = malloc(m->n_params * sizeof(float));
    memcpy(g1, m->grads_mem, m->n_params * sizeof(float));
    ltr_zero_grad(m);
    float l1 = fwd(m, tok, tg, NULL, B / 2, T);
    ltr_backward(m, 0.5f);
    float l2 = fwd(m, tok + N / 2, tg + N / 2, NULL, B / 2, T);
    ltr_backward(m, 0.5f);
    /* the same products summed in another order: float rounding only */
    cr_assert_float_eq((l1 + l2) / 2, full, 1e-5);
    double gmax = 0;
    for (size_t i = 0; i < m->n_params; i++)
        gmax = fabs(g1[i]) > gmax ? fabs(g1[i]) : gmax;
    for (size_t i = 0; i < m->n_params; i++)
        cr_assert(fabs(g1[i] - m->grads_mem[i]) <= 1e-5 * gmax, "grad %zu: %g vs %g", i, g1[i], m->grads_mem[i]);
    free(g1);
    ltr_model_free(m);
}

Test(train_model, weight_decay_clipping_determinism)
{
    enum { B = 2, T = 8, N = B * T };
    struct ltr_model *m, *m2;
    cr_assert_eq(ltr_model_new(&m, &tiny, B, T, 1), 0);
    cr_assert_eq(ltr_model_new(&m2, &tiny, B, T, 2), 0);
    ltr_init(m, 11, 0.1f);
    ltr_init(m2, 11, 0.1f);
    cr_assert_eq(memcmp(m->params_mem, m2->params_mem, m->n_params * sizeof(float)), 0);
    /* zero gradients: AdamW's update is decay alone, on matrices only */
    float *before = malloc(m->n_params * sizeof(float));
    memcpy(before, m->params_mem, m->n_params * sizeof(float));
    struct ltr_adamw opt = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.5f};
    ltr_adamw_step(m, &opt);
    size_t off = 0;
    for (int t = 0; t < LTR_N_TENSORS; t++) {
        int decays = !(t == 0 || t == 1 || t == 6 || t == 10);
        for (size_t i = 0; i < m->sizes[t]; i++)
            cr_assert_float_eq(m->params_mem[off + i], before[off + i] * (decays ? 0.95f : 1.0f), 1e-7,
                               "tensor %d", t);
        off += m->sizes[t];
    }
    /* clipping */
    for (size_t i = 0; i < m->n_params; i++)
        m->grads_mem[i] = (i % 2) ? 0.5f : -0.5f;
    float norm = ltr_clip_grad_norm(m, 1.0f);
    cr_assert_float_eq(norm, 0.5f * sqrtf((float)m->n_params), 1e-3);
    cr_assert_float_eq(ltr_clip_grad_norm(m, 0.0f), 1.0f, 1e-5);
    /* three training steps with 1 and 2 pool threads: the same bits */
    ltr_init(m, 11, 0.1f);
    int32_t tok[N], tg[N];
    rand_tokens(tok, N, tiny.V), rand_tokens(tg, N, tiny.V);
    opt.weight_decay = 0.1f, opt.lr = 1e-2f;
    for (int s = 0; s < 3; s++) {
        struct ltr_model *mm[2] = {m, m2};
        for (int j = 0; j < 2; j++) {
            ltr_zero_grad(mm[j]);
            fwd(mm[j], tok, tg, NULL, B, T);
            ltr_backward(mm[j], 1.0f);
            ltr_clip_grad_norm(mm[j], 1.0f);
            ltr_adamw_step(mm[j], &opt);
        }
    }
    cr_assert_eq(memcmp(m->params_mem, m2->params_mem, m->n_params * sizeof(float)), 0);
    cr_assert_eq(ltr_backward(m, 1.0f), AISLE_EINVAL); /* no forward with targets since the last backward */
    /* inputs out of range are refused before anything is computed */
    float w[N] = {0}, loss;
    cr_assert_eq(ltr_forward(m, tok, tg, w, B, T, &loss), AISLE_EINVAL); /* weights sum to 0 */
    w[3] = -1.0f, w[4] = 2.0f;
    cr_assert_eq(ltr_forward(m, tok, tg, w, B, T, &loss), AISLE_EINVAL); /* negative weight */
    cr_assert_eq(ltr_forward(m, tok, tg, NULL, B + 1, T, &loss), AISLE_EINVAL);
    cr_assert_eq(ltr_forward(m, tok, tg, NULL, B, T + 1, &loss), AISLE_EINVAL);
    tok[5] = tiny.V;
    cr_assert_eq(ltr_forward(m, tok, tg, NULL, B, T, &loss), AISLE_EINVAL);
    tok[5] = 0, tg[7] = -1;
    cr_assert_eq(ltr_forward(m, tok, tg, NULL, B, T, &loss), AISLE_EINVAL);
    cr_assert_eq(ltr_backward(m, 1.0f), AISLE_EINVAL);
    struct ltr_model *bad = NULL;
    struct ltr_config c = tiny;
    c.NKV = 3; /* NH not a multiple */
    cr_assert_eq(ltr_model_new(&bad, &c, B, T, 1), AISLE_EINVAL);
    c = tiny, c.V = 1 << 25;
    cr_assert_eq(ltr_model_new(&bad, &c, B, T, 1), AISLE_ETOOBIG);
    c = tiny;
    cr_assert_eq(ltr_model_new(&bad, &c, 1 << 16, 1 << 16, 1), AISLE_ETOOBIG);
    cr_assert_null(bad);
    free(before);
    ltr_model_free(m);
    ltr_model_free(m2);
}

/* ---- the engine loads what the trainer writes ------------------------------------ */

static void engine_matches(int tied)
{
    enum { B = 2, T = 12, N = B * T };
    struct ltr_config c = {.V = 64, .C = 32, .L = 2, .NH = 4, .NKV = 2, .F = 64, .max_ctx = 64, .tied = tied};
    struct ltr_model *m;
    cr_assert_eq(ltr_model_new(&m, &c, B, T, 2), 0);
    ltr_init(m, 5, 0.2f);
    int32_t tok[N];
    rand_tokens(tok, N, c.V);
    fwd(m, tok, NULL, NULL, B, T);
    char path[] = "/tmp/aisle-train-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    char err[256];
    cr_assert_eq(ltr_save_gguf(m, path, err, sizeof(err)), 0, "%s", err);
    struct lm_model *lm;
    struct lm_model_opts mo = {.nthreads = 1};
    cr_assert_eq(lm_model_load(&lm, path, &mo, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(lm_model_hparams(lm)->tied_output, tied);
    struct lm_kv *kv;
    struct lm_kv_opts ko = {.block_tokens = 4, .n_blocks = 16, .max_seqs = 2};
    cr_assert_eq(lm_kv_new(&kv, lm, &ko), 0);
    struct lm_batch bt;
    cr_assert_eq(lm_batch_init(&bt, N), 0);
    int seq[B];
    for (int b = 0; b < B; b++) {
        cr_assert_eq(lm_kv_seq_new(kv, &seq[b]), 0);
        for (int t = 0; t < T; t++)
            lm_batch_add(&bt, seq[b], t, tok[b * T + t], 1);
    }
    float *lg = malloc(sizeof(float) * N * c.V);
    cr_assert_eq(lm_decode(lm, kv, &bt, lg), 0, "%s", lm_model_errmsg(lm));
    /* Same math in another summation order (engine row-dots / online softmax vs
     * sgemm / two-pass softmax): float rounding, ~1e-6 relative per op through
     * 2 layers; 1e-4 of the logits' scale leaves 10-100x margin, and a wrong
     * name, shape, RoPE pairing or head mapping moves logits by O(scale). */
    double scale = 0, worst = 0;
    for (int i = 0; i < N * c.V; i++)
        scale = fabs(m->acts.logits[i]) > scale ? fabs(m->acts.logits[i]) : scale;
    cr_assert(scale > 0.1, "logits too small to compare (%g)", scale);
    for (int i = 0; i < N * c.V; i++) {
        double d = fabs(lg[i] - m->acts.logits[i]);
        worst = d > worst ? d : worst;
    }
    cr_log_info("tied %d: max |engine - trainer| %g, logit scale %g", tied, worst, scale);
    cr_assert(worst <= 1e-4 * scale, "max |engine - trainer| %g, logit scale %g", worst, scale);
    free(lg);
    lm_batch_release(&bt);
    lm_kv_free(kv);
    lm_model_free(lm);
    unlink(path);
    ltr_model_free(m);
}

Test(train_export, engine_logits_match_untied) { engine_matches(0); }
Test(train_export, engine_logits_match_tied) { engine_matches(1); }
