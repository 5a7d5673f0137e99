/*
 * model_test.c — the engine against a plain reference forward, weight types,
 * batched decode, the paged KV cache (prefix sharing, fork, truncate, block
 * accounting) and lm_decode's argument checks.
 *
 * The reference (ref_forward below) is the obviously-correct Llama forward:
 * F32, one token at a time, a flat per-layer KV array, naive attention with a
 * two-pass softmax, RoPE written out from its definition on adjacent pairs. It
 * shares no code with src/model/ or src/tensor/.
 *
 * Dims legend as in model.h: C, L, NH, NKV, HD, KVD, F, V, BS.
 */
#include <criterion/criterion.h>

#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/llama_names.h"
#include "gguf/quant.h"
#include "model/model.h"
#include "tensor/tensor.h"
#include "tok/tok.h"
#include "../testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A small model with grouped-query attention (NH 4, NKV 2) and dims that are
 * multiples of the 32-element quant blocks. */
enum { C = 64, L = 2, NH = 4, NKV = 2, HD = 16, KVD = NKV * HD, QD = NH * HD, F = 96 };
/* The vocabulary is a byte-level BPE tokenizer's: 256 byte tokens and Aisle's
 * 5 special tokens (no merges), so the CLI tests can tokenize text. */
enum { V = 256 + TOK_N_AISLE_SPECIALS, TOK_EOT = 256 };
#define EPS 1e-5f
#define BASE 10000.0f

struct weights {
    float *emb;                 /* (V, C) */
    float *an[L], *fn[L];       /* (C) */
    float *wq[L];               /* (QD, C) */
    float *wk[L], *wv[L];       /* (KVD, C) */
    float *wo[L];               /* (C, QD) */
    float *wg[L], *wu[L];       /* (F, C) */
    float *wd[L];               /* (C, F) */
    float *on;                  /* (C) */
    float *out;                 /* (V, C) or NULL when tied */
};

static uint64_t rng_state;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static float *rnd(size_t n, float scale, float offset)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = offset + scale * frand();
    return p;
}

/* Weights scaled like a trained model's (std ~ 1/sqrt(fan_in)) so the
 * activations stay O(1) and the logits spread over a few units. */
static void make_weights(struct weights *w, uint64_t seed, int tied)
{
    rng_state = seed;
    w->emb = rnd((size_t)V * C, 1.0f, 0);
    for (int l = 0; l < L; l++) {
        w->an[l] = rnd(C, 0.2f, 1.0f);
        w->fn[l] = rnd(C, 0.2f, 1.0f);
        w->wq[l] = rnd((size_t)QD * C, 0.25f, 0);
        w->wk[l] = rnd((size_t)KVD * C, 0.25f, 0);
        w->wv[l] = rnd((size_t)KVD * C, 0.25f, 0);
        w->wo[l] = rnd((size_t)C * QD, 0.25f, 0);
        w->wg[l] = rnd((size_t)F * C, 0.25f, 0);
        w->wu[l] = rnd((size_t)F * C, 0.25f, 0);
        w->wd[l] = rnd((size_t)C * F, 0.2f, 0);
    }
    w->on = rnd(C, 0.2f, 1.0f);
    w->out = tied ? NULL : rnd((size_t)V * C, 0.25f, 0);
}

static void free_weights(struct weights *w)
{
    free(w->emb);
    for (int l = 0; l < L; l++) {
        free(w->an[l]), free(w->fn[l]), free(w->wq[l]), free(w->wk[l]), free(w->wv[l]);
        free(w->wo[l]), free(w->wg[l]), free(w->wu[l]), free(w->wd[l]);
    }
    free(w->on);
    free(w->out);
}

/* The chat template make_tok stores (NULL: Aisle's). */
static const char *chat_template_kv;

/* The byte-level vocabulary above: byte b is its GPT-2 visible character;
 * <|endoftext|> is BOS and EOS, <|end|> ends a turn. */
static struct tok *make_tok(void)
{
    static const char *const sp[TOK_N_AISLE_SPECIALS] = {TOK_ENDOFTEXT, TOK_SYSTEM, TOK_USER, TOK_ASSISTANT, TOK_END};
    char text[V][16];
    const char *tokens[V];
    size_t lens[V];
    int32_t types[V];
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tok_byte_to_cp((unsigned char)b);
        size_t n = 0;
        if (cp < 0x80)
            text[b][n++] = (char)cp;
        else {
            text[b][n++] = (char)(0xc0 | (cp >> 6));
            text[b][n++] = (char)(0x80 | (cp & 63));
        }
        tokens[b] = text[b];
        lens[b] = n;
        types[b] = TOK_TYPE_NORMAL;
    }
    for (int k = 0; k < TOK_N_AISLE_SPECIALS; k++) {
        tokens[256 + k] = sp[k];
        lens[256 + k] = strlen(sp[k]);
        types[256 + k] = TOK_TYPE_CONTROL;
    }
    struct tok_bpe_spec spec = {
        .tokens = tokens, .lens = lens, .types = types, .n = V, .bos = TOK_EOT, .eos = TOK_EOT,
        .eot = TOK_EOT + 4, .pad = TOK_EOT, .add_bos = 1,
        .chat_template = chat_template_kv ? chat_template_kv : tok_chat_template,
    };
    struct tok *t;
    char err[256];
    cr_assert_eq(tok_new_bpe(&t, &spec, err, sizeof(err)), 0, "%s", err);
    return t;
}

/* Store a (rows, cols) matrix as type t; replace *m by what the file holds
 * (dequantized) so the reference can use exactly the stored weights. */
static void add_matrix(struct gguf_writer *g, const char *name, float *m, int rows, int cols, enum ggml_type t)
{
    size_t rb = ggml_row_size(t, cols);
    char *q = malloc(rb * rows);
    for (int r = 0; r < rows; r++) {
        cr_assert_eq(ggml_quantize_row(t, m + (size_t)r * cols, q + rb * r, cols), 0);
        cr_assert_eq(ggml_dequantize_row(t, q + rb * r, m + (size_t)r * cols, cols), 0);
    }
    int64_t ne[2] = {cols, rows};
    cr_assert_eq(gguf_writer_add_tensor(g, name, t, 2, ne, q, rb * rows), 0);
    free(q);
}

static void add_vec(struct gguf_writer *g, const char *name, const float *v)
{
    int64_t ne[1] = {C};
    cr_assert_eq(gguf_writer_add_tensor(g, name, GGML_TYPE_F32, 1, ne, v, C * sizeof(float)), 0);
}

/* 0: tensors in llama.cpp's order; 1: K before Q and up before gate. */
static int split_layout;

/* RoPE scaling metadata write_model adds when set: llama.rope.scaling.type,
 * llama.rope.scaling.factor (> 0) and rope_freqs.weight (rope_ff_n floats,
 * F32, as Llama 3.1 GGUFs carry it). */
static const char *rope_type_kv;
static float rope_factor_kv;
static const float *rope_ff_kv;
static int rope_ff_n = HD / 2;

/* Write w as a GGUF file of weight type t (norms stay F32, as llama.cpp's
 * quantizer keeps them); w is updated to the stored values. */
static void write_model(const char *path, struct weights *w, enum ggml_type t)
{
    struct gguf_writer *g = gguf_writer_new();
    cr_assert_not_null(g);
    gguf_writer_set_str(g, LLAMA_KEY_ARCH, "llama");
    gguf_writer_set_u32(g, LLAMA_KEY_CONTEXT_LENGTH, 256);
    gguf_writer_set_u32(g, LLAMA_KEY_EMBEDDING_LENGTH, C);
    gguf_writer_set_u32(g, LLAMA_KEY_BLOCK_COUNT, L);
    gguf_writer_set_u32(g, LLAMA_KEY_FEED_FORWARD_LENGTH, F);
    gguf_writer_set_u32(g, LLAMA_KEY_HEAD_COUNT, NH);
    gguf_writer_set_u32(g, LLAMA_KEY_HEAD_COUNT_KV, NKV);
    gguf_writer_set_f32(g, LLAMA_KEY_ROPE_FREQ_BASE, BASE);
    gguf_writer_set_f32(g, LLAMA_KEY_RMS_EPS, EPS);
    if (rope_type_kv)
        gguf_writer_set_str(g, "llama.rope.scaling.type", rope_type_kv);
    if (rope_factor_kv != 0.0f)
        gguf_writer_set_f32(g, "llama.rope.scaling.factor", rope_factor_kv);
    if (rope_ff_kv) {
        int64_t ne[1] = {rope_ff_n};
        cr_assert_eq(gguf_writer_add_tensor(g, "rope_freqs.weight", GGML_TYPE_F32, 1, ne, rope_ff_kv,
                                            (size_t)rope_ff_n * sizeof(float)), 0);
    }
    add_matrix(g, LLAMA_TENSOR_TOKEN_EMBD, w->emb, V, C, t);
    char name[64];
    for (int l = 0; l < L; l++) {
        llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_NORM), add_vec(g, name, w->an[l]);
        if (split_layout)
            llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_K), add_matrix(g, name, w->wk[l], KVD, C, t);
        llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_Q), add_matrix(g, name, w->wq[l], QD, C, t);
        if (!split_layout)
            llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_K), add_matrix(g, name, w->wk[l], KVD, C, t);
        llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_V), add_matrix(g, name, w->wv[l], KVD, C, t);
        llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_OUTPUT), add_matrix(g, name, w->wo[l], C, QD, t);
        llama_tensor_name(name, sizeof(name), l, LLAMA_FFN_NORM), add_vec(g, name, w->fn[l]);
        if (split_layout)
            llama_tensor_name(name, sizeof(name), l, LLAMA_FFN_UP), add_matrix(g, name, w->wu[l], F, C, t);
        llama_tensor_name(name, sizeof(name), l, LLAMA_FFN_GATE), add_matrix(g, name, w->wg[l], F, C, t);
        if (!split_layout)
            llama_tensor_name(name, sizeof(name), l, LLAMA_FFN_UP), add_matrix(g, name, w->wu[l], F, C, t);
        llama_tensor_name(name, sizeof(name), l, LLAMA_FFN_DOWN), add_matrix(g, name, w->wd[l], C, F, t);
    }
    add_vec(g, LLAMA_TENSOR_OUTPUT_NORM, w->on);
    if (w->out)
        add_matrix(g, LLAMA_TENSOR_OUTPUT, w->out, V, C, t);
    struct tok *tk = make_tok();
    cr_assert_eq(tok_save_gguf(tk, g), 0);
    tok_free(tk);
    char err[256];
    cr_assert_eq(gguf_writer_write(g, path, err, sizeof(err)), 0, "%s", err);
    gguf_writer_free(g);
}

/* ---- the reference forward ------------------------------------------------------ */

/* y (rows) = W (rows, cols) x (cols) */
static void ref_matvec(float *y, const float *W, const float *x, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++)
            s += (double)W[(size_t)r * cols + c] * x[c];
        y[r] = (float)s;
    }
}

static void ref_rmsnorm(float *y, const float *x, const float *w)
{
    double ss = 0;
    for (int i = 0; i < C; i++)
        ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / C + EPS));
    for (int i = 0; i < C; i++)
        y[i] = x[i] * r * w[i];
}

/* The reference's RoPE scaling (llama.cpp's for LLM_ARCH_LLAMA without
 * YaRN): theta_i = ref_rope_scale * BASE^(-2i/HD) / ref_rope_ff[i]. */
static double ref_rope_scale = 1.0;
static const float *ref_rope_ff;

/* RoPE by its definition on adjacent pairs: (x0, x1) rotated by pos * theta_i,
 * theta_i = BASE^(-2i/HD) (scaled as above), in each of nh heads. */
static void ref_rope(float *x, int nh, int pos)
{
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < HD / 2; i++) {
            double th = pos * ref_rope_scale * pow(BASE, -2.0 * i / HD) / (ref_rope_ff ? ref_rope_ff[i] : 1.0);
            double c = cos(th), s = sin(th);
            float *p = x + h * HD + 2 * i;
            double x0 = p[0], x1 = p[1];
            p[0] = (float)(x0 * c - x1 * s);
            p[1] = (float)(x0 * s + x1 * c);
        }
}

struct ref {
    const struct weights *w;
    int n;                  /* positions held */
    float *kc[L], *vc[L];   /* (256, KVD) flat caches */
};

static void ref_init(struct ref *r, const struct weights *w)
{
    r->w = w;
    r->n = 0;
    for (int l = 0; l < L; l++) {
        r->kc[l] = calloc(256 * KVD, sizeof(float));
        r->vc[l] = calloc(256 * KVD, sizeof(float));
    }
}

static void ref_release(struct ref *r)
{
    for (int l = 0; l < L; l++)
        free(r->kc[l]), free(r->vc[l]);
}

/* Feed one token at position r->n; logits (V). */
static void ref_forward(struct ref *r, int token, float *logits)
{
    const struct weights *w = r->w;
    int pos = r->n++;
    float x[C], xb[C], q[QD], att[QD], o[C], g[F], u[F], sc[256];
    memcpy(x, w->emb + (size_t)token * C, sizeof(x));
    for (int l = 0; l < L; l++) {
        ref_rmsnorm(xb, x, w->an[l]);
        ref_matvec(q, w->wq[l], xb, QD, C);
        float *k = r->kc[l] + (size_t)pos * KVD, *v = r->vc[l] + (size_t)pos * KVD;
        ref_matvec(k, w->wk[l], xb, KVD, C);
        ref_matvec(v, w->wv[l], xb, KVD, C);
        ref_rope(q, NH, pos);
        ref_rope(k, NKV, pos);
        for (int h = 0; h < NH; h++) {
            int kvh = h / (NH / NKV);
            double mx = -1e30, z = 0;
            for (int p = 0; p <= pos; p++) {
                double s = 0;
                for (int i = 0; i < HD; i++)
                    s += (double)q[h * HD + i] * r->kc[l][(size_t)p * KVD + kvh * HD + i];
                sc[p] = (float)(s / sqrt((double)HD));
                if (sc[p] > mx)
                    mx = sc[p];
            }
            for (int p = 0; p <= pos; p++)
                z += exp(sc[p] - mx);
            for (int i = 0; i < HD; i++) {
                double a = 0;
                for (int p = 0; p <= pos; p++)
                    a += exp(sc[p] - mx) / z * r->vc[l][(size_t)p * KVD + kvh * HD + i];
                att[h * HD + i] = (float)a;
            }
        }
        ref_matvec(o, w->wo[l], att, C, QD);
        for (int i = 0; i < C; i++)
            x[i] += o[i];
        ref_rmsnorm(xb, x, w->fn[l]);
        ref_matvec(g, w->wg[l], xb, F, C);
        ref_matvec(u, w->wu[l], xb, F, C);
        for (int i = 0; i < F; i++)
            g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        ref_matvec(o, w->wd[l], g, C, F);
        for (int i = 0; i < C; i++)
            x[i] += o[i];
    }
    ref_rmsnorm(xb, x, w->on);
    ref_matvec(logits, w->out ? w->out : w->emb, xb, V, C);
}

/* ---- helpers ----------------------------------------------------------------------- */

static char *tmpdir;

static void setup(void)
{
    tmpdir = tu_tmpdir();
}

static void teardown(void)
{
    tu_rmdir(tmpdir);
}

/* Where attention runs: 0 the engine's default (small work on the caller),
 * -1 always on the pool; tests set it to cover both paths. */
static long att_pool_min;

static struct lm_model *load(const char *path, int nthreads, int max_batch)
{
    struct lm_model *m;
    char err[256];
    struct lm_model_opts o = {.nthreads = nthreads, .max_batch = max_batch, .att_pool_min = att_pool_min};
    cr_assert_eq(lm_model_load(&m, path, &o, err, sizeof(err)), 0, "%s", err);
    return m;
}

/* A random model written as type t and loaded: the weights (as stored), the
 * file and the engine. */
struct fx {
    struct weights w;
    char *path;
    struct lm_model *m;
};

static void fx_open(struct fx *f, uint64_t seed, int tied, enum ggml_type t, int nthreads)
{
    make_weights(&f->w, seed, tied);
    f->path = tu_path(tmpdir, "m.gguf");
    write_model(f->path, &f->w, t);
    f->m = load(f->path, nthreads, 64);
}

static void fx_close(struct fx *f)
{
    lm_model_free(f->m);
    free(f->path);
    free_weights(&f->w);
}

static struct lm_kv *kv_new(struct lm_model *m, int bs, int nblocks, int f16)
{
    struct lm_kv *kv;
    struct lm_kv_opts o = {.block_tokens = bs, .n_blocks = nblocks, .max_seqs = 8, .max_seq_len = 256, .f16 = f16};
    cr_assert_eq(lm_kv_new(&kv, m, &o), 0);
    return kv;
}

/* Evaluate tokens[0..n) on seq (appending from its current length) in one
 * batch; logits (n, V) for every position. */
static void eval(struct lm_model *m, struct lm_kv *kv, int seq, const int32_t *tokens, int n, float *logits)
{
    struct lm_batch b;
    cr_assert_eq(lm_batch_init(&b, n), 0);
    int pos = lm_kv_seq_len(kv, seq);
    for (int i = 0; i < n; i++)
        lm_batch_add(&b, seq, pos + i, tokens[i], logits != NULL);
    int rc = lm_decode(m, kv, &b, logits);
    cr_assert_eq(rc, 0, "lm_decode: %s: %s", aisle_strerror(rc), lm_model_errmsg(m));
    lm_batch_release(&b);
}

static float max_abs_diff(const float *a, const float *b, size_t n)
{
    float d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

static float rms(const float *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return (float)sqrt(s / n);
}

static float rms_diff(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)(a[i] - b[i]) * (a[i] - b[i]);
    return (float)sqrt(s / n);
}

static void prompt(int32_t *t, int n, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        t[i] = (int32_t)((seed >> 33) % V);
    }
}

enum { NP = 41 }; /* prompt length: several blocks of 4 and 16, plus a partial one */

/* Engine logits for all NP positions vs the reference's; returns the max abs
 * difference, and the logits' RMS in *scale. */
static float engine_vs_ref(enum ggml_type t, int tied, int f16kv, int bs, int one_by_one, float *scale,
                           float *relrms)
{
    struct fx fx;
    fx_open(&fx, 7, tied, t, 2);
    struct lm_model *m = fx.m;
    struct lm_kv *kv = kv_new(m, bs, 64, f16kv);
    int32_t toks[NP];
    prompt(toks, NP, 3);
    float *got = malloc(sizeof(float) * NP * V), *want = malloc(sizeof(float) * NP * V);
    int seq;
    cr_assert_eq(lm_kv_seq_new(kv, &seq), 0);
    if (one_by_one)
        for (int i = 0; i < NP; i++)
            eval(m, kv, seq, toks + i, 1, got + (size_t)i * V);
    else
        eval(m, kv, seq, toks, NP, got);
    struct ref r;
    ref_init(&r, &fx.w);
    for (int i = 0; i < NP; i++)
        ref_forward(&r, toks[i], want + (size_t)i * V);
    float d = max_abs_diff(got, want, (size_t)NP * V);
    *scale = rms(want, (size_t)NP * V);
    if (relrms)
        *relrms = rms_diff(got, want, (size_t)NP * V) / *scale;
    ref_release(&r);
    free(got), free(want);
    lm_kv_free(kv);
    fx_close(&fx);
    return d;
}

TestSuite(model, .init = setup, .fini = teardown, .timeout = 120);

/* F32 weights and F32 KV: the engine and the reference differ only in the
 * order of float additions (and exp/sqrt rounding). With logits of RMS ~1-3 over
 * two layers of K <= 96 sums, float rounding is ~1e-6 relative per op; 2e-4
 * absolute leaves a wide margin yet fails on any wrong index, scale or rope. */
Test(model, f32_matches_reference_prompt_batch)
{
    float scale;
    att_pool_min = -1;
    float d = engine_vs_ref(GGML_TYPE_F32, 0, 0, 4, 0, &scale, NULL);
    cr_assert(scale > 0.5f, "logits too flat to test (rms %g)", scale);
    cr_assert_leq(d, 2e-4f, "max |engine - reference| = %g (logit rms %g)", d, scale);
}

Test(model, f32_matches_reference_token_by_token)
{
    float scale;
    float d = engine_vs_ref(GGML_TYPE_F32, 0, 0, 16, 1, &scale, NULL);
    cr_assert_leq(d, 2e-4f, "max diff %g", d);
}

/* The order of the tensors in the file does not change the result (the
 * engine looks tensors up by name; Q/K/V and gate/up go through one
 * tensor_matmul_multi call however they are stored). */
Test(model, tensor_order_in_file_does_not_matter)
{
    int32_t toks[NP];
    prompt(toks, NP, 3);
    float *lg[2];
    for (int pass = 0; pass < 2; pass++) {
        split_layout = pass;
        struct fx fx;
        fx_open(&fx, 3, 0, GGML_TYPE_Q8_0, 2);
        struct lm_kv *kv = kv_new(fx.m, 16, 8, 0);
        int s;
        lm_kv_seq_new(kv, &s);
        lg[pass] = malloc(sizeof(float) * NP * V);
        eval(fx.m, kv, s, toks, NP, lg[pass]);
        lm_kv_free(kv);
        fx_close(&fx);
    }
    cr_assert_eq(memcmp(lg[0], lg[1], sizeof(float) * NP * V), 0);
    free(lg[0]), free(lg[1]);
    float scale;
    float d = engine_vs_ref(GGML_TYPE_F32, 0, 0, 4, 0, &scale, NULL);
    cr_assert_leq(d, 2e-4f, "max diff %g", d);
}

Test(model, tied_output_matches_reference)
{
    float scale;
    float d = engine_vs_ref(GGML_TYPE_F32, 1, 0, 16, 0, &scale, NULL);
    cr_assert_leq(d, 2e-4f, "max diff %g", d);
}

/* F16 KV: K and V rounded to 11 significant bits (relative 2^-11 = 4.9e-4)
 * before attention; through two layers that moves logits by ~1e-3 of their
 * scale. Bound: 1e-2 absolute at logit RMS ~2. */
Test(model, f16_kv_matches_reference)
{
    float scale;
    att_pool_min = -1;
    float d = engine_vs_ref(GGML_TYPE_F32, 0, 1, 4, 0, &scale, NULL);
    cr_assert_leq(d, 1e-2f, "max diff %g", d);
    cr_assert_gt(d, 0.0f, "F16 KV gave bit-identical logits: is it really F16?");
}

/* Each weight type against the reference run on the same (dequantized) stored
 * weights: what remains is the kernels' own arithmetic, measured as the RMS of
 * the logit difference over the logits' RMS. F16/BF16 dot products are exact
 * products summed in float: bound 1e-5 (measured ~1e-7). Q8_0/Q4_0 kernels
 * quantize the activations to 8-bit blocks (llama.cpp's scheme): 0.37 % per
 * matmul on random data, compounded through 15 matmuls of a random
 * (unnormalised, hence error-amplifying) network to ~2 %; bound 5 %. */
static void type_vs_reference(enum ggml_type t, float bound)
{
    float scale, rel;
    engine_vs_ref(t, 0, 0, 16, 0, &scale, &rel);
    cr_log_info("%s vs reference on its own weights: relative rms %.6f", ggml_type_name(t), rel);
    cr_assert_leq(rel, bound, "%s: relative rms error %g at logit rms %g", ggml_type_name(t), rel, scale);
}

Test(model, f16_weights_match_reference) { type_vs_reference(GGML_TYPE_F16, 1e-5f); }
Test(model, bf16_weights_match_reference) { type_vs_reference(GGML_TYPE_BF16, 1e-5f); }
Test(model, q8_0_weights_match_reference) { type_vs_reference(GGML_TYPE_Q8_0, 0.05f); }
Test(model, q4_0_weights_match_reference) { type_vs_reference(GGML_TYPE_Q4_0, 0.05f); }

/* Each type against the F32 model from the same random weights: the cost of
 * quantization itself, as RMS of the logit difference over the logits' RMS.
 * Per-weight relative RMS error on these uniform weights: F16 2^-11/sqrt(3),
 * BF16 2^-8/sqrt(3), Q8_0 ~0.5 %, Q4_0 ~7.7 % (a step of max/7.5); the
 * activations' 8-bit quantization adds ~0.4 % per matmul for Q8_0/Q4_0. Through
 * the 15 matmuls of this random, error-amplifying network the measured values
 * are F16 0.08 %, BF16 0.7 %, Q8_0 2.2 %, Q4_0 26 %; bounds are 2-3x those. A
 * wrong kernel gives uncorrelated logits: relative error ~1.4. */
static void type_vs_f32(enum ggml_type t, float bound)
{
    struct weights w;
    int32_t toks[NP];
    prompt(toks, NP, 11);
    float *lf = malloc(sizeof(float) * NP * V), *lq = malloc(sizeof(float) * NP * V);
    char *path = tu_path(tmpdir, "t.gguf");
    for (int pass = 0; pass < 2; pass++) {
        make_weights(&w, 21, 0);
        write_model(path, &w, pass ? t : GGML_TYPE_F32);
        struct lm_model *m = load(path, 2, 64);
        struct lm_kv *kv = kv_new(m, 16, 16, 0);
        int seq;
        lm_kv_seq_new(kv, &seq);
        eval(m, kv, seq, toks, NP, pass ? lq : lf);
        lm_kv_free(kv);
        lm_model_free(m);
        free_weights(&w);
    }
    float rel = rms_diff(lq, lf, (size_t)NP * V) / rms(lf, (size_t)NP * V);
    cr_log_info("%s vs F32: relative rms logit error %.5f", ggml_type_name(t), rel);
    cr_assert_leq(rel, bound, "%s: relative rms error %g", ggml_type_name(t), rel);
    cr_assert_gt(rel, 0.0f);
    free(lf), free(lq), free(path);
}

Test(model, f16_vs_f32) { type_vs_f32(GGML_TYPE_F16, 0.002f); }
Test(model, bf16_vs_f32) { type_vs_f32(GGML_TYPE_BF16, 0.02f); }
Test(model, q8_0_vs_f32) { type_vs_f32(GGML_TYPE_Q8_0, 0.05f); }
Test(model, q4_0_vs_f32) { type_vs_f32(GGML_TYPE_Q4_0, 0.5f); }

/* ---- batching and the paged cache ---------------------------------------------------- */

static int argmax(const float *x, int n)
{
    int a = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[a])
            a = i;
    return a;
}

enum { NS = 4, GEN = 12 };

/* Greedy continuation of N sequences with different prompt lengths: each run
 * alone, then all together (prompts mixed into one batch, then one decode
 * batch per step); the tokens must be the same. */
static void batched_equals_separate(enum ggml_type t, int f16kv)
{
    struct fx fx;
    fx_open(&fx, 5, 0, t, 2);
    struct lm_model *m = fx.m;
    static const int plen[NS] = {5, 17, 1, 33};
    int32_t prompts[NS][40], alone[NS][GEN], together[NS][GEN];
    float *lg = malloc(sizeof(float) * 64 * V);
    for (int s = 0; s < NS; s++)
        prompt(prompts[s], plen[s], 100 + s);
    for (int s = 0; s < NS; s++) {
        struct lm_kv *kv = kv_new(m, 4, 64, f16kv);
        int seq;
        lm_kv_seq_new(kv, &seq);
        eval(m, kv, seq, prompts[s], plen[s], lg);
        int32_t tok = argmax(lg + (size_t)(plen[s] - 1) * V, V);
        for (int g = 0; g < GEN; g++) {
            alone[s][g] = tok;
            eval(m, kv, seq, &tok, 1, lg);
            tok = argmax(lg, V);
        }
        lm_kv_free(kv);
    }
    struct lm_kv *kv = kv_new(m, 4, 64, f16kv);
    int seqs[NS];
    struct lm_batch b;
    lm_batch_init(&b, 64);
    for (int s = 0; s < NS; s++)
        lm_kv_seq_new(kv, &seqs[s]);
    /* Interleave the prompts entry by entry, logits only for each last token. */
    for (int i = 0; i < 33; i++)
        for (int s = 0; s < NS; s++)
            if (i < plen[s])
                lm_batch_add(&b, seqs[s], i, prompts[s][i], i == plen[s] - 1);
    cr_assert_eq(lm_decode(m, kv, &b, lg), 0, "%s", lm_model_errmsg(m));
    /* Logit rows come in entry order: sequence 2 (length 1) finishes first. */
    static const int order[NS] = {2, 0, 1, 3};
    int32_t next[NS];
    for (int r = 0; r < NS; r++)
        next[order[r]] = argmax(lg + (size_t)r * V, V);
    for (int g = 0; g < GEN; g++) {
        b.n = 0;
        for (int s = 0; s < NS; s++) {
            together[s][g] = next[s];
            lm_batch_add(&b, seqs[s], lm_kv_seq_len(kv, seqs[s]), next[s], 1);
        }
        cr_assert_eq(lm_decode(m, kv, &b, lg), 0, "%s", lm_model_errmsg(m));
        for (int s = 0; s < NS; s++)
            next[s] = argmax(lg + (size_t)s * V, V);
    }
    for (int s = 0; s < NS; s++)
        for (int g = 0; g < GEN; g++)
            cr_assert_eq(together[s][g], alone[s][g], "%s seq %d token %d: batched %d, alone %d",
                         ggml_type_name(t), s, g, together[s][g], alone[s][g]);
    lm_batch_release(&b);
    lm_kv_free(kv);
    free(lg);
    fx_close(&fx);
}

Test(model, batched_greedy_equals_separate_f32) { batched_equals_separate(GGML_TYPE_F32, 0); }
Test(model, batched_greedy_equals_separate_q8_0_f16kv) { batched_equals_separate(GGML_TYPE_Q8_0, 1); }
Test(model, batched_greedy_equals_separate_pooled_attention)
{
    att_pool_min = -1;
    batched_equals_separate(GGML_TYPE_F16, 0);
}

/* A second sequence whose prompt starts with a cached prefix reuses its
 * blocks; its logits equal recomputing everything in a fresh cache with the
 * same batch split (same kernel calls, so bit-identical). */
Test(model, prefix_sharing_gives_identical_logits)
{
    struct fx fx;
    fx_open(&fx, 9, 0, GGML_TYPE_F32, 2);
    struct lm_model *m = fx.m;
    const struct weights *w = &fx.w;
    struct lm_kv *kv = kv_new(m, 4, 64, 0);
    int32_t a[30], bt[26];
    prompt(a, 30, 1);
    memcpy(bt, a, 22 * sizeof(int32_t)); /* shares 5 full blocks of 4, then differs */
    prompt(bt + 22, 4, 2);
    float *lg = malloc(sizeof(float) * 30 * V), *lb = malloc(sizeof(float) * 30 * V);
    int sa, sb;
    lm_kv_seq_new(kv, &sa);
    /* Split 20 + 10 so that positions 0..19 come from the same kernel calls
     * (T = 20) as in the fresh cache below. */
    eval(m, kv, sa, a, 20, NULL);
    eval(m, kv, sa, a + 20, 10, lg);
    int free_before = lm_kv_n_free_blocks(kv);
    lm_kv_seq_new(kv, &sb);
    int cached = -1;
    cr_assert_eq(lm_kv_seq_prefix(kv, sb, bt, 26, &cached), 0);
    cr_assert_eq(cached, 20, "cached %d", cached);
    cr_assert_eq(lm_kv_seq_len(kv, sb), 20);
    cr_assert_eq(lm_kv_n_free_blocks(kv), free_before, "sharing took free blocks");
    int na, nb;
    const int *ta = lm_kv_seq_blocks(kv, sa, &na);
    const int *tb = lm_kv_seq_blocks(kv, sb, &nb);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(ta[i], tb[i]);
        cr_assert_eq(lm_kv_block_refs(kv, ta[i]), 2);
    }
    eval(m, kv, sb, bt + 20, 6, lb);

    struct lm_kv *fresh = kv_new(m, 4, 64, 0);
    int sf;
    lm_kv_seq_new(fresh, &sf);
    eval(m, fresh, sf, bt, 20, NULL);
    eval(m, fresh, sf, bt + 20, 6, lg);
    cr_assert_eq(memcmp(lg, lb, sizeof(float) * 6 * V), 0, "shared-prefix logits differ (max %g)",
                 max_abs_diff(lg, lb, 6 * V));
    /* And against the reference, to be sure both are right. */
    struct ref r;
    ref_init(&r, w);
    for (int i = 0; i < 26; i++)
        ref_forward(&r, bt[i], lg);
    cr_assert_leq(max_abs_diff(lg, lb + 5 * V, V), 2e-4f);
    ref_release(&r);

    /* A prompt equal to a cached one still leaves its last token to evaluate. */
    int sc;
    lm_kv_seq_new(kv, &sc);
    cr_assert_eq(lm_kv_seq_prefix(kv, sc, a, 24, &cached), 0);
    cr_assert_eq(cached, 20);
    lm_kv_seq_free(kv, sc);

    /* Freed sequences' blocks all come back; the cached prefix survives the
     * free and is found again. */
    lm_kv_seq_free(kv, sa);
    lm_kv_seq_free(kv, sb);
    cr_assert_eq(lm_kv_n_free_blocks(kv), 64);
    lm_kv_seq_new(kv, &sc);
    cr_assert_eq(lm_kv_seq_prefix(kv, sc, a, 30, &cached), 0);
    cr_assert_eq(cached, 28);
    lm_kv_seq_free(kv, sc);
    cr_assert_eq(lm_kv_n_free_blocks(kv), 64);
    lm_kv_free(fresh);
    lm_kv_free(kv);
    free(lg), free(lb);
    fx_close(&fx);
}

/* Fork shares full blocks and copies the partial one; both branches then
 * continue as if computed alone. Truncate rewinds, copying a shared block. */
Test(model, fork_and_truncate_match_fresh_runs)
{
    struct fx fx;
    fx_open(&fx, 13, 0, GGML_TYPE_F32, 1);
    struct lm_model *m = fx.m;
    struct lm_kv *kv = kv_new(m, 4, 32, 0);
    int32_t p[10], x[3] = {1, 2, 3}, y[3] = {4, 5, 6};
    prompt(p, 10, 4);
    float *l1 = malloc(sizeof(float) * 3 * V), *l2 = malloc(sizeof(float) * 3 * V);
    int s, f;
    lm_kv_seq_new(kv, &s);
    eval(m, kv, s, p, 10, NULL);
    cr_assert_eq(lm_kv_seq_fork(kv, s, &f), 0);
    int n;
    const int *ts = lm_kv_seq_blocks(kv, s, &n);
    const int *tf = lm_kv_seq_blocks(kv, f, &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(ts[0], tf[0]);
    cr_assert_eq(ts[1], tf[1]);
    cr_assert_neq(ts[2], tf[2], "the partial block must be copied");
    eval(m, kv, s, x, 3, l1);
    eval(m, kv, f, y, 3, l2);

    struct lm_kv *k2 = kv_new(m, 4, 32, 0);
    int r;
    float *lr = malloc(sizeof(float) * 3 * V);
    lm_kv_seq_new(k2, &r);
    eval(m, k2, r, p, 10, NULL);
    eval(m, k2, r, y, 3, lr);
    cr_assert_eq(memcmp(lr, l2, sizeof(float) * 3 * V), 0);
    /* Truncate the fork back to 7 (inside block 1, shared with s and full):
     * then continue with other tokens; equals a fresh run of p[0..7) + x. */
    cr_assert_eq(lm_kv_seq_truncate(kv, f, 7), 0);
    cr_assert_eq(lm_kv_seq_len(kv, f), 7);
    eval(m, kv, f, x, 3, l2);
    lm_kv_seq_truncate(k2, r, 7);
    eval(m, k2, r, x, 3, lr);
    cr_assert_eq(memcmp(lr, l2, sizeof(float) * 3 * V), 0);
    /* s is untouched by its fork's truncation. */
    float *l3 = malloc(sizeof(float) * V);
    int32_t z = 9;
    eval(m, kv, s, &z, 1, l3);
    lm_kv_seq_free(k2, r);
    lm_kv_seq_new(k2, &r);
    eval(m, k2, r, p, 10, NULL);
    eval(m, k2, r, x, 3, NULL);
    eval(m, k2, r, &z, 1, lr);
    cr_assert_eq(memcmp(lr, l3, sizeof(float) * V), 0);
    lm_kv_seq_free(kv, s);
    lm_kv_seq_free(kv, f);
    cr_assert_eq(lm_kv_n_free_blocks(kv), 32);
    free(l1), free(l2), free(l3), free(lr);
    lm_kv_free(k2);
    lm_kv_free(kv);
    fx_close(&fx);
}

/* Bad entries and exhaustion are refused before anything changes. */
Test(model, decode_rejects_bad_batches_unchanged)
{
    struct fx fx;
    fx_open(&fx, 17, 1, GGML_TYPE_Q8_0, 1);
    struct lm_model *m = fx.m;
    struct lm_kv *kv = kv_new(m, 4, 3, 0);
    int s;
    lm_kv_seq_new(kv, &s);
    struct lm_batch b;
    lm_batch_init(&b, 16);
    float *lg = malloc(sizeof(float) * 16 * V);
    lm_batch_add(&b, s, 1, 5, 1); /* position 1 of an empty sequence */
    cr_assert_eq(lm_decode(m, kv, &b, lg), AISLE_EINVAL);
    b.n = 0;
    lm_batch_add(&b, s, 0, V, 1); /* token outside the vocabulary */
    cr_assert_eq(lm_decode(m, kv, &b, lg), AISLE_EINVAL);
    b.n = 0;
    lm_batch_add(&b, 5, 0, 1, 1); /* sequence not in use */
    cr_assert_eq(lm_decode(m, kv, &b, lg), AISLE_EINVAL);
    b.n = 0;
    for (int i = 0; i < 13; i++) /* 13 tokens need 4 blocks of 4; 3 exist */
        lm_batch_add(&b, s, i, i, 0);
    cr_assert_eq(lm_decode(m, kv, &b, lg), AISLE_ETOOBIG);
    cr_assert_eq(lm_kv_seq_len(kv, s), 0);
    cr_assert_eq(lm_kv_n_free_blocks(kv), 3);
    b.n = 12; /* exactly fits */
    cr_assert_eq(lm_decode(m, kv, &b, NULL), 0, "%s", lm_model_errmsg(m));
    cr_assert_eq(lm_kv_n_free_blocks(kv), 0);
    lm_kv_seq_free(kv, s);
    cr_assert_eq(lm_kv_n_free_blocks(kv), 3);
    lm_batch_release(&b);
    free(lg);
    lm_kv_free(kv);
    fx_close(&fx);
}

/* A batch longer than max_batch runs in chunks, with the same results. */
Test(model, long_batch_runs_in_chunks)
{
    struct fx fx;
    fx_open(&fx, 23, 0, GGML_TYPE_F32, 2);
    lm_model_free(fx.m);
    struct lm_model *m = fx.m = load(fx.path, 2, 7);
    struct lm_kv *kv = kv_new(m, 16, 16, 0);
    int32_t toks[NP];
    prompt(toks, NP, 3);
    float *got = malloc(sizeof(float) * NP * V), *want = malloc(sizeof(float) * V);
    int s;
    lm_kv_seq_new(kv, &s);
    eval(m, kv, s, toks, NP, got);
    struct ref r;
    ref_init(&r, &fx.w);
    for (int i = 0; i < NP; i++) {
        ref_forward(&r, toks[i], want);
        cr_assert_leq(max_abs_diff(got + (size_t)i * V, want, V), 2e-4f, "position %d", i);
    }
    ref_release(&r);
    free(got), free(want);
    lm_kv_free(kv);
    fx_close(&fx);
}

/* Linear RoPE scaling and Llama-3.1 frequency factors: the engine matches
 * the reference computing theta = pos * scale * BASE^(-2i/HD) / ff[i] within
 * the F32 bound above, and differs from the unscaled reference by far more
 * (so the test sees the scaling at all); type "none" ignores the factor, as
 * llama.cpp does. */
Test(model, rope_scaling_matches_reference)
{
    static const float ff[HD / 2] = {1.0f, 1.0f, 1.5f, 2.0f, 3.0f, 5.0f, 8.0f, 8.0f};
    float scale, d;
    rope_type_kv = "linear", rope_factor_kv = 4.0f, rope_ff_kv = ff;
    ref_rope_scale = 0.25, ref_rope_ff = ff;
    d = engine_vs_ref(GGML_TYPE_F32, 0, 0, 4, 0, &scale, NULL);
    cr_assert_leq(d, 2e-4f, "scaled: max |engine - reference| = %g (logit rms %g)", d, scale);
    ref_rope_scale = 1.0, ref_rope_ff = NULL;
    d = engine_vs_ref(GGML_TYPE_F32, 0, 0, 4, 0, &scale, NULL);
    cr_assert_gt(d, 1e-2f, "the scaling changes nothing the test can see (%g)", d);
    /* factors alone (Llama 3.1 has no scaling type or factor keys) */
    rope_type_kv = NULL, rope_factor_kv = 0.0f;
    ref_rope_ff = ff;
    d = engine_vs_ref(GGML_TYPE_F32, 0, 0, 4, 1, &scale, NULL);
    cr_assert_leq(d, 2e-4f, "freq factors: max |engine - reference| = %g", d);
    /* type none: the factor is not applied */
    rope_type_kv = "none", rope_factor_kv = 4.0f, rope_ff_kv = NULL;
    ref_rope_ff = NULL;
    d = engine_vs_ref(GGML_TYPE_F32, 0, 0, 4, 0, &scale, NULL);
    cr_assert_leq(d, 2e-4f, "type none: max |engine - reference| = %g", d);
    rope_type_kv = NULL, rope_factor_kv = 0.0f;
}

/* Bad RoPE scaling metadata is refused at load with a message naming it. */
Test(model, rope_scaling_rejects_bad_metadata)
{
    static const float ok[HD / 2] = {1, 1, 1, 1, 2, 2, 2, 2};
    static const float zero[HD / 2] = {1, 1, 1, 0, 2, 2, 2, 2};
    float nanv[HD / 2] = {1, 1, 1, 1, 2, 2, 2, 2};
    nanv[5] = NAN;
    struct {
        const char *type;
        float factor;
        const float *ff;
        int ffn;
        const char *msg;
    } cases[] = {
        {"yarn", 0, NULL, HD / 2, "yarn"},
        {"longrope", 2, NULL, HD / 2, "longrope"},
        {NULL, -2.0f, NULL, HD / 2, "scaling.factor"},
        {NULL, NAN, NULL, HD / 2, "scaling.factor"},
        {NULL, 0, zero, HD / 2, "rope_freqs"},
        {NULL, 0, nanv, HD / 2, "rope_freqs"},
        {NULL, 0, ok, HD / 2 - 1, "rope_freqs"},
    };
    struct weights w;
    make_weights(&w, 5, 1);
    char *path = tu_path(tmpdir, "rope.gguf");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rope_type_kv = cases[i].type, rope_factor_kv = cases[i].factor, rope_ff_kv = cases[i].ff;
        rope_ff_n = cases[i].ffn;
        write_model(path, &w, GGML_TYPE_F32);
        struct lm_model *m = NULL;
        char err[256] = "";
        cr_assert_eq(lm_model_load(&m, path, NULL, err, sizeof(err)), AISLE_EFORMAT, "case %zu: %s", i, err);
        cr_assert_null(m);
        cr_assert(strstr(err, cases[i].msg), "case %zu: '%s' does not name %s", i, err, cases[i].msg);
    }
    rope_type_kv = NULL, rope_factor_kv = 0.0f, rope_ff_kv = NULL, rope_ff_n = HD / 2;
    free(path);
    free_weights(&w);
}

Test(model, load_rejects_missing_tensor)
{
    char *path = tu_path(tmpdir, "bad.gguf");
    struct gguf_writer *g = gguf_writer_new();
    gguf_writer_set_str(g, LLAMA_KEY_ARCH, "llama");
    gguf_writer_set_u32(g, LLAMA_KEY_EMBEDDING_LENGTH, C);
    char err[256];
    cr_assert_eq(gguf_writer_write(g, path, err, sizeof(err)), 0);
    gguf_writer_free(g);
    struct lm_model *m = NULL;
    cr_assert_neq(lm_model_load(&m, path, NULL, err, sizeof(err)), 0);
    cr_assert_null(m);
    cr_assert_neq(strlen(err), 0);
    free(path);
}

/* ---- the CLI: logits, generate, perplexity, bench model ---------------------------- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char *p = malloc(1 << 20);
    *len = fread(p, 1, (1 << 20) - 1, f);
    p[*len] = '\0';
    fclose(f);
    return p;
}

/* `aisle logits` prints exactly the library's logits for the last id. */
Test(model, cli_logits_match_library)
{
    struct fx fx;
    fx_open(&fx, 31, 0, GGML_TYPE_Q8_0, 2);
    int32_t ids[3] = {1, 200, 3};
    struct lm_kv *kv = kv_new(fx.m, 16, 4, 0);
    int s;
    lm_kv_seq_new(kv, &s);
    /* Logits for the last entry only, as the CLI asks: the same kernel calls. */
    float *want = malloc(sizeof(float) * V);
    struct lm_batch b;
    lm_batch_init(&b, 3);
    for (int i = 0; i < 3; i++)
        lm_batch_add(&b, s, i, ids[i], i == 2);
    cr_assert_eq(lm_decode(fx.m, kv, &b, want), 0);
    lm_batch_release(&b);
    char *out;
    int rc = tu_run(&out, "%s logits --model %s --ids 1,200,3 --threads 2", tu_aisle(), fx.path);
    cr_assert_eq(rc, 0, "%s", out);
    char *p = out;
    for (int i = 0; i < V; i++) {
        int id;
        float v;
        int used;
        cr_assert_eq(sscanf(p, "%d %g\n%n", &id, &v, &used), 2, "line %d: %.40s", i, p);
        cr_assert_eq(id, i);
        /* %.9g round-trips a float exactly. */
        cr_assert_eq(v, want[i], "logit %d: cli %.9g library %.9g", i, v, want[i]);
        p += used;
    }
    cr_assert_eq(*p, '\0', "extra output: %.40s", p);
    free(out);
    cr_assert_neq(tu_run(NULL, "%s logits --model %s --ids 1,%d", tu_aisle(), fx.path, V), 0);
    free(want);
    lm_kv_free(kv);
    fx_close(&fx);
}

/* Greedy `aisle generate` streams the same text as a greedy loop over the
 * library, and --stop cuts it just before the stop string. */
Test(model, cli_generate_greedy_and_stop)
{
    struct fx fx;
    fx_open(&fx, 37, 0, GGML_TYPE_F32, 2);
    struct tok *tk = make_tok();
    struct tok_ids ids;
    tok_ids_init(&ids, 0);
    cr_assert_eq(tok_encode(tk, NULL, "hello", 5, TOK_ADD_SPECIAL, &ids), 0);
    cr_assert_eq(ids.len, 6);
    struct lm_kv *kv = kv_new(fx.m, 16, 8, 0);
    int s;
    lm_kv_seq_new(kv, &s);
    float *lg = malloc(sizeof(float) * 8 * V);
    eval(fx.m, kv, s, ids.ids, (int)ids.len, lg);
    int32_t t = argmax(lg + (ids.len - 1) * V, V), gen[12];
    int ng = 0;
    while (ng < 12 && !tok_is_eog(tk, t)) {
        gen[ng++] = t;
        eval(fx.m, kv, s, &t, 1, lg);
        t = argmax(lg, V);
    }
    struct buf want;
    buf_init(&want, 0);
    cr_assert_eq(tok_decode(tk, gen, (size_t)ng, 0, &want), 0);
    char *outp = tu_path(tmpdir, "out.bin");
    int rc = tu_run(NULL, "%s generate --model %s --temp 0 -n 12 --threads 2 hello > %s 2>/dev/null", tu_aisle(),
                    fx.path, outp);
    cr_assert_eq(rc, 0);
    size_t n;
    char *got = slurp(outp, &n);
    cr_assert_eq(n, want.len + 1, "got %zu bytes, want %zu + newline", n, want.len);
    cr_assert_eq(memcmp(got, want.data ? want.data : "", want.len), 0);
    free(got);
    /* A stop string from the middle of the text (when the model produced
     * enough printable text to pick one). */
    if (want.len >= 6 && want.data[3] && want.data[4]) {
        char stop[3] = {want.data[3], want.data[4], 0};
        size_t cut = (size_t)((char *)memmem(want.data, want.len, stop, 2) - want.data);
        char q[16]; /* octal escapes: /bin/sh's printf has no \x */
        snprintf(q, sizeof(q), "\\%03o\\%03o", (unsigned char)stop[0], (unsigned char)stop[1]);
        rc = tu_run(NULL, "%s generate --model %s --temp 0 -n 12 --stop \"$(printf '%s')\" hello > %s 2>/dev/null",
                    tu_aisle(), fx.path, q, outp);
        cr_assert_eq(rc, 0);
        got = slurp(outp, &n);
        cr_assert_eq(n, cut + 1, "with --stop: %zu bytes, want %zu + newline", n, cut);
        cr_assert_eq(memcmp(got, want.data, cut), 0);
        free(got);
    }
    /* Sampling with a seed is reproducible; --chat runs the template. */
    char *a, *b;
    cr_assert_eq(tu_run(&a, "%s generate --model %s --seed 5 -n 10 hi 2>/dev/null", tu_aisle(), fx.path), 0);
    cr_assert_eq(tu_run(&b, "%s generate --model %s --seed 5 -n 10 hi 2>/dev/null", tu_aisle(), fx.path), 0);
    cr_assert_str_eq(a, b);
    free(a), free(b);
    cr_assert_eq(tu_run(NULL, "%s generate --model %s --chat --system 'be brief' -n 4 hi >/dev/null 2>&1", tu_aisle(),
                        fx.path), 0);
    buf_release(&want);
    tok_ids_release(&ids);
    tok_free(tk);
    free(lg), free(outp);
    lm_kv_free(kv);
    fx_close(&fx);
}

/* `aisle generate --chat` renders a model's own Jinja template: the
 * vocabulary is bytes without merges, so the prompt's token count is the
 * rendered text's bytes (+1 for BOS unless the template writes BOS itself);
 * a template that raises stops the command with its message. */
Test(model, cli_generate_chat_uses_the_model_template)
{
    static const struct {
        const char *tmpl;
        const char *want; /* on stderr */
        int ok;
    } cases[] = {
        /* "<|system|>:be brief\n" (<|system|> one special token + 10 bytes) + "<|user|>:hi\n" (1 + 4)
         * + "x" + BOS: 18 */
        {"{% for m in messages %}{{ '<|' + m.role + '|>:' + m.content + '\n' }}{% if loop.last %}x{% endif %}{% endfor %}",
         "prompt 18 tokens", 1},
        /* the template's own BOS (<|endoftext|>, one token) and no second one */
        {"{{ bos_token }}{{ messages[-1].content | upper }}", "prompt 3 tokens", 1},
        {"{{ raise_exception('no chat for you') }}", "no chat for you", 0},
        {"{% if %}", "chat template line 1", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        chat_template_kv = cases[i].tmpl;
        struct fx fx;
        fx_open(&fx, 7, 0, GGML_TYPE_F32, 1);
        chat_template_kv = NULL;
        char *out = NULL;
        int rc = tu_run(&out, "%s generate --model %s --chat --system 'be brief' -n 1 hi 2>&1 >/dev/null", tu_aisle(),
                        fx.path);
        cr_assert_eq(rc == 0, cases[i].ok, "case %zu: exit %d: %s", i, rc, out);
        cr_assert(strstr(out, cases[i].want), "case %zu: '%s' lacks '%s'", i, out, cases[i].want);
        free(out);
        fx_close(&fx);
    }
}

/* `aisle perplexity` equals the windowed NLL computed here (no BOS, windows
 * from an empty cache, the first token of each unscored, the tail dropped). */
static void perplexity_check(struct fx *fx, const char *text, int W)
{
    char *tp = tu_path(tmpdir, "text.txt");
    tu_write_str(tp, text);
    int nwin = (int)strlen(text) / W; /* one token per byte: no merges */
    float *lg = malloc(sizeof(float) * W * V);
    int32_t *t = malloc(sizeof(int32_t) * W);
    double nll = 0;
    for (int w = 0; w < nwin; w++) {
        struct lm_kv *kv;
        struct lm_kv_opts o = {.block_tokens = 16, .n_blocks = W / 16 + 1, .max_seqs = 1, .max_seq_len = W};
        cr_assert_eq(lm_kv_new(&kv, fx->m, &o), 0);
        int s;
        lm_kv_seq_new(kv, &s);
        for (int i = 0; i < W; i++)
            t[i] = (unsigned char)text[w * W + i];
        eval(fx->m, kv, s, t, W, lg);
        for (int i = 0; i < W - 1; i++) {
            const float *l = lg + (size_t)i * V;
            double mx = l[argmax(l, V)], z = 0;
            for (int v = 0; v < V; v++)
                z += exp(l[v] - mx);
            nll += log(z) + mx - l[t[i + 1]];
        }
        lm_kv_free(kv);
    }
    double want = exp(nll / (nwin * (W - 1)));
    char *out;
    cr_assert_eq(tu_run(&out, "%s perplexity --model %s --ctx %d %s 2>/dev/null", tu_aisle(), fx->path, W, tp), 0);
    double got;
    cr_assert_eq(sscanf(out, "ppl %lf", &got), 1, "%s", out);
    /* printed with 4 decimals; the CLI's pieces of 512 entries may run other
     * kernel paths than the test's single batch (float rounding only) */
    cr_assert_float_eq(got, want, 1e-4 * want + 1e-4, "window %d: cli %g, library %g", W, got, want);
    free(out);
    cr_assert_neq(tu_run(NULL, "%s perplexity --model %s --ctx %d %s", tu_aisle(), fx->path, (int)strlen(text) + 1,
                         tp),
                  0, "a text shorter than one window must fail");
    free(lg), free(t), free(tp);
}

Test(model, cli_perplexity_matches_library)
{
    struct fx fx;
    fx_open(&fx, 41, 0, GGML_TYPE_F32, 2);
    perplexity_check(&fx, "the quick brown fox jumps over the lazy dog. the five boxing wizards jump quickly.", 16);
    /* Windows longer than the CLI's 512-entry pieces: 2 windows of 520. */
    char *long_text = malloc(1200);
    long_text[0] = '\0';
    while (strlen(long_text) < 1100)
        strcat(long_text, "pack my box with five dozen liquor jugs; ");
    perplexity_check(&fx, long_text, 520);
    free(long_text);
    fx_close(&fx);
}

Test(model, cli_bench_model_prints_every_batch)
{
    struct fx fx;
    fx_open(&fx, 43, 1, GGML_TYPE_Q4_0, 2);
    char *out;
    cr_assert_eq(tu_run(&out, "%s bench model --model %s --prompt 8 --steps 2 --threads 2", tu_aisle(), fx.path), 0);
    static const char *const want[] = {"prefill_8 ", "decode_batch1 ", "decode_batch4 ", "decode_batch8 ",
                                       "decode_batch16 ", "decode_batch32 ", "decode_batch32_vs_1 "};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert_not_null(strstr(out, want[i]), "missing %s in:\n%s", want[i], out);
    free(out);
    fx_close(&fx);
}

/* ---- randomized cache operations against invariants and fresh recomputation ---- */

#include "model/kv_impl.h"

/* The cache's bookkeeping agrees with its sequences' tables. */
static void check_invariants(const struct lm_kv *kv)
{
    int *count = calloc((size_t)kv->NB, sizeof(int));
    for (int s = 0; s < kv->max_seqs; s++) {
        const struct lm_seq *q = &kv->seqs[s];
        if (!q->used)
            continue;
        cr_assert_eq(q->nblk, (q->len + kv->BS - 1) / kv->BS, "seq %d: %d blocks for %d positions", s, q->nblk, q->len);
        for (int i = 0; i < q->nblk; i++)
            count[q->tab[i]]++;
    }
    int zero = 0;
    for (int b = 0; b < kv->NB; b++) {
        cr_assert_eq(kv->refs[b], count[b], "block %d: refs %d, held by %d tables", b, kv->refs[b], count[b]);
        zero += count[b] == 0;
    }
    cr_assert_eq(kv->nfree, zero);
    int walked = 0;
    for (int b = kv->fhead; b >= 0; b = kv->fnext[b]) {
        cr_assert_eq(kv->refs[b], 0);
        walked++;
    }
    cr_assert_eq(walked, zero);
    /* A shared block is full in every sequence that holds it. */
    for (int s = 0; s < kv->max_seqs; s++) {
        const struct lm_seq *q = &kv->seqs[s];
        for (int i = 0; q->used && i < q->nblk; i++)
            if (kv->refs[q->tab[i]] > 1)
                cr_assert_geq(q->len, (i + 1) * kv->BS, "seq %d holds shared block %d partially", s, q->tab[i]);
    }
    free(count);
}

/* 300 random operations (new with prefix lookup, append, fork, truncate,
 * free) on a small pool that keeps running out and reusing cached blocks;
 * invariants after each, and at the end every live sequence's next logits
 * equal a fresh cache's for the same tokens. */
Test(model, random_cache_operations_keep_invariants_and_logits)
{
    struct fx fx;
    fx_open(&fx, 51, 0, GGML_TYPE_F32, 1);
    enum { NSEQ = 6, MAXLEN = 40 };
    struct lm_kv *kv;
    struct lm_kv_opts o = {.block_tokens = 4, .n_blocks = 24, .max_seqs = NSEQ, .max_seq_len = MAXLEN + 8};
    cr_assert_eq(lm_kv_new(&kv, fx.m, &o), 0);
    int32_t hist[NSEQ][MAXLEN + 8];
    int live[NSEQ] = {0};
    uint64_t r = 77;
#define RND(n) (r = r * 6364136223846793005ULL + 1442695040888963407ULL, (int)((r >> 33) % (uint64_t)(n)))
    /* A few shared "system prompts" so the prefix cache gets hits. */
    int32_t base[3][16];
    for (int k = 0; k < 3; k++)
        prompt(base[k], 16, 900 + k);
    int hits = 0;
    for (int step = 0; step < 300; step++) {
        int s = RND(NSEQ), op = RND(5);
        if (!live[s] && op != 0)
            op = 0;
        if (op == 0 && !live[s]) { /* new sequence: a base prompt plus a tail, prefix reused */
            int32_t toks[24];
            memcpy(toks, base[RND(3)], sizeof(base[0]));
            prompt(toks + 16, 8, (uint64_t)step);
            int n = 17 + RND(8), seq, cached;
            if (lm_kv_seq_new(kv, &seq))
                continue;
            cr_assert_eq(lm_kv_seq_prefix(kv, seq, toks, n, &cached), 0);
            hits += cached > 0;
            struct lm_batch b;
            lm_batch_init(&b, n);
            for (int i = cached; i < n; i++)
                lm_batch_add(&b, seq, i, toks[i], 0);
            if (lm_decode(fx.m, kv, &b, NULL) == 0) {
                memcpy(hist[seq], toks, sizeof(int32_t) * n);
                live[seq] = 1;
            } else
                lm_kv_seq_free(kv, seq); /* out of blocks: refused whole */
            lm_batch_release(&b);
        } else if (op == 1) { /* append 1-5 tokens */
            int len = lm_kv_seq_len(kv, s), n = 1 + RND(5);
            if (len + n > MAXLEN)
                continue;
            int32_t t[5];
            prompt(t, n, (uint64_t)step * 31);
            struct lm_batch b;
            lm_batch_init(&b, n);
            for (int i = 0; i < n; i++)
                lm_batch_add(&b, s, len + i, t[i], 0);
            if (lm_decode(fx.m, kv, &b, NULL) == 0)
                memcpy(hist[s] + len, t, sizeof(int32_t) * n);
            else
                cr_assert_eq(lm_kv_seq_len(kv, s), len, "a refused batch changed the sequence");
            lm_batch_release(&b);
        } else if (op == 2) { /* fork */
            int d;
            if (lm_kv_seq_fork(kv, s, &d) == 0) {
                memcpy(hist[d], hist[s], sizeof(hist[0]));
                live[d] = 1;
            }
        } else if (op == 3) { /* truncate */
            int len = lm_kv_seq_len(kv, s);
            lm_kv_seq_truncate(kv, s, RND(len + 1));
        } else { /* free */
            lm_kv_seq_free(kv, s);
            live[s] = 0;
        }
        check_invariants(kv);
    }
    cr_assert_gt(hits, 5, "the prefix cache was hardly exercised (%d hits)", hits);
    /* Every live sequence continues exactly like a fresh computation. */
    float *got = malloc(sizeof(float) * V), *want = malloc(sizeof(float) * V);
    for (int s = 0; s < NSEQ; s++) {
        int len = lm_kv_seq_len(kv, s);
        if (!live[s] || len == 0 || len >= MAXLEN + 8)
            continue;
        int32_t z = 42;
        eval(fx.m, kv, s, &z, 1, got);
        struct ref rf;
        ref_init(&rf, &fx.w);
        for (int i = 0; i < len; i++)
            ref_forward(&rf, hist[s][i], want);
        ref_forward(&rf, z, want);
        ref_release(&rf);
        cr_assert_leq(max_abs_diff(got, want, V), 2e-4f, "seq %d (len %d) differs from the reference", s, len);
    }
#undef RND
    free(got), free(want);
    for (int s = 0; s < NSEQ; s++)
        lm_kv_seq_free(kv, s);
    cr_assert_eq(lm_kv_n_free_blocks(kv), 24);
    check_invariants(kv);
    lm_kv_free(kv);
    fx_close(&fx);
}

/* ---- K-quant weights (Q4_K, Q6_K): no quantizer, so random blocks ------------------- */

enum { KC = 256, KF = 512, KNH = 4, KNKV = 2, KHD = 64 }; /* K dims: multiples of 256 */

/* Random `rows` x KC-or-KF blocks of type t with sane f16 scales (weights
 * ~+-0.1), and the same weights dequantized into *f32 (rows, cols). */
static void *kquant_matrix(enum ggml_type t, int rows, int cols, float **f32)
{
    size_t rb = ggml_row_size(t, cols), bs = ggml_type_size(t);
    unsigned char *q = malloc(rb * rows);
    for (size_t i = 0; i < rb * rows; i++) {
        rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
        q[i] = (unsigned char)(rng_state >> 56);
    }
    for (size_t b = 0; b < rb * rows; b += bs) {
        uint16_t d = ggml_fp32_to_fp16(t == GGML_TYPE_Q4_K ? 1.5e-4f : 3e-5f);
        memcpy(q + (t == GGML_TYPE_Q4_K ? b : b + bs - 2), &d, 2);
        if (t == GGML_TYPE_Q4_K) {
            uint16_t dmin = ggml_fp32_to_fp16(1e-4f);
            memcpy(q + b + 2, &dmin, 2);
        }
    }
    *f32 = malloc(sizeof(float) * rows * cols);
    for (int r = 0; r < rows; r++)
        cr_assert_eq(ggml_dequantize_row(t, q + rb * r, *f32 + (size_t)r * cols, cols), 0);
    return q;
}

/* Write the same random K-quant model twice: as type t, and as F32 holding
 * exactly the dequantized weights. Tied output (the embedding, in t). */
static void write_kquant_pair(const char *qpath, const char *fpath, enum ggml_type t)
{
    struct gguf_writer *g[2] = {gguf_writer_new(), gguf_writer_new()};
    for (int k = 0; k < 2; k++) {
        gguf_writer_set_str(g[k], LLAMA_KEY_ARCH, "llama");
        gguf_writer_set_u32(g[k], LLAMA_KEY_CONTEXT_LENGTH, 256);
        gguf_writer_set_u32(g[k], LLAMA_KEY_EMBEDDING_LENGTH, KC);
        gguf_writer_set_u32(g[k], LLAMA_KEY_BLOCK_COUNT, 1);
        gguf_writer_set_u32(g[k], LLAMA_KEY_FEED_FORWARD_LENGTH, KF);
        gguf_writer_set_u32(g[k], LLAMA_KEY_HEAD_COUNT, KNH);
        gguf_writer_set_u32(g[k], LLAMA_KEY_HEAD_COUNT_KV, KNKV);
        gguf_writer_set_f32(g[k], LLAMA_KEY_RMS_EPS, EPS);
    }
    static const struct { const char *name; int rows, cols; } mats[] = {
        {"token_embd.weight", V, KC},          {"blk.0.attn_q.weight", KNH * KHD, KC},
        {"blk.0.attn_k.weight", KNKV * KHD, KC}, {"blk.0.attn_v.weight", KNKV * KHD, KC},
        {"blk.0.attn_output.weight", KC, KNH * KHD}, {"blk.0.ffn_gate.weight", KF, KC},
        {"blk.0.ffn_up.weight", KF, KC},       {"blk.0.ffn_down.weight", KC, KF},
    };
    rng_state = 1234;
    for (size_t i = 0; i < sizeof(mats) / sizeof(mats[0]); i++) {
        float *f;
        void *q = kquant_matrix(t, mats[i].rows, mats[i].cols, &f);
        int64_t ne[2] = {mats[i].cols, mats[i].rows};
        cr_assert_eq(gguf_writer_add_tensor(g[0], mats[i].name, t, 2, ne, q, ggml_row_size(t, mats[i].cols) * mats[i].rows), 0);
        cr_assert_eq(gguf_writer_add_tensor(g[1], mats[i].name, GGML_TYPE_F32, 2, ne, f,
                                            sizeof(float) * mats[i].rows * mats[i].cols), 0);
        free(q), free(f);
    }
    float ones[KC];
    for (int i = 0; i < KC; i++)
        ones[i] = 1.0f;
    int64_t ne1[1] = {KC};
    static const char *const norms[] = {"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "output_norm.weight"};
    char err[256];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 3; i++)
            cr_assert_eq(gguf_writer_add_tensor(g[k], norms[i], GGML_TYPE_F32, 1, ne1, ones, sizeof(ones)), 0);
        cr_assert_eq(gguf_writer_write(g[k], k ? fpath : qpath, err, sizeof(err)), 0, "%s", err);
        gguf_writer_free(g[k]);
    }
}

/* The engine on K-quant weights (embedding rows, projections, tied output)
 * against the engine on the same weights in F32 (itself checked against the
 * reference above): what remains is the kernels' 8-bit activation
 * quantization, measured 0.02 % (Q4_K: its positive-mean weights make large
 * logits) and 1.5 % (Q6_K: heavy-tailed random scales) of the logits' RMS;
 * scripts/conformance measures llama.cpp at the same level. Bound 5 %; a
 * wrong kernel or block layout gives ~100 %. */
static void kquant_vs_f32(enum ggml_type t)
{
    char *qp = tu_path(tmpdir, "k.gguf"), *fp = tu_path(tmpdir, "kf.gguf");
    write_kquant_pair(qp, fp, t);
    enum { N = 20 };
    int32_t toks[N];
    prompt(toks, N, 5);
    float *lg[2];
    const char *paths[2] = {qp, fp};
    for (int k = 0; k < 2; k++) {
        struct lm_model *m = load(paths[k], 2, 64);
        cr_assert_eq(lm_model_wtype(m), k ? GGML_TYPE_F32 : t);
        struct lm_kv *kv = kv_new(m, 16, 4, 0);
        int s;
        lm_kv_seq_new(kv, &s);
        lg[k] = malloc(sizeof(float) * N * V);
        eval(m, kv, s, toks, N, lg[k]);
        lm_kv_free(kv);
        lm_model_free(m);
    }
    float rel = rms_diff(lg[0], lg[1], (size_t)N * V) / rms(lg[1], (size_t)N * V);
    cr_log_info("%s vs the same weights in F32: relative rms %.5f", ggml_type_name(t), rel);
    cr_assert_leq(rel, 0.05f, "%s: relative rms %g", ggml_type_name(t), rel);
    cr_assert_gt(rel, 0.0f);
    free(lg[0]), free(lg[1]), free(qp), free(fp);
}

Test(model, q4_k_weights_match_f32) { kquant_vs_f32(GGML_TYPE_Q4_K); }
Test(model, q6_k_weights_match_f32) { kquant_vs_f32(GGML_TYPE_Q6_K); }
