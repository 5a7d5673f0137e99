/*
 * llama_test.c — Llama names, hyperparameters, the tensor-set check and the
 * Q/K row permutation (checked against RoPE itself: HF rotate-half on the HF
 * rows equals ggml's adjacent-pair RoPE on the permuted rows).
 */
#include <criterion/criterion.h>

#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/llama_names.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A tiny Llama: C = 8, 2 layers, NH = 2, NKV = 1 (HD = 4), F = 16, V = 10. */
struct tiny {
    int skip_tensor;        /* index into the list below to leave out, or -1 */
    int with_output;
    int extra_block;        /* add blk.2.attn_norm.weight */
    int64_t q_rows;         /* rows of attn_q (8 is right) */
    const char *arch;
    uint32_t head_count_kv; /* 0 = no key */
};

struct tspec {
    const char *name;
    int ndim;
    int64_t ne0, ne1;
};

static struct gguf *make_tiny(const struct tiny *o, char *err, size_t errlen, int *rc)
{
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, LLAMA_KEY_ARCH, o->arch);
    gguf_writer_set_u32(w, LLAMA_KEY_CONTEXT_LENGTH, 128);
    gguf_writer_set_u32(w, LLAMA_KEY_EMBEDDING_LENGTH, 8);
    gguf_writer_set_u32(w, LLAMA_KEY_BLOCK_COUNT, 2);
    gguf_writer_set_u32(w, LLAMA_KEY_FEED_FORWARD_LENGTH, 16);
    gguf_writer_set_u32(w, LLAMA_KEY_HEAD_COUNT, 2);
    if (o->head_count_kv)
        gguf_writer_set_u32(w, LLAMA_KEY_HEAD_COUNT_KV, o->head_count_kv);
    gguf_writer_set_f32(w, LLAMA_KEY_ROPE_FREQ_BASE, 500000.0f);
    gguf_writer_set_f32(w, LLAMA_KEY_RMS_EPS, 1e-5f);
    static float zeros[16 * 16];
    struct tspec ts[32];
    int n = 0;
    ts[n++] = (struct tspec){LLAMA_TENSOR_TOKEN_EMBD, 2, 8, 10};
    ts[n++] = (struct tspec){LLAMA_TENSOR_OUTPUT_NORM, 1, 8, 1};
    if (o->with_output)
        ts[n++] = (struct tspec){LLAMA_TENSOR_OUTPUT, 2, 8, 10};
    static char names[2][LLAMA_BLK_COUNT][64];
    const int64_t shape[LLAMA_BLK_COUNT][3] = {{1, 8, 1}, {2, 8, 8}, {2, 8, 4}, {2, 8, 4}, {2, 8, 8},
                                               {1, 8, 1}, {2, 8, 16}, {2, 8, 16}, {2, 16, 8}};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < LLAMA_BLK_COUNT; k++) {
            cr_assert_eq(llama_tensor_name(names[l][k], 64, l, (enum llama_blk_tensor)k), 0);
            ts[n++] = (struct tspec){names[l][k], (int)shape[k][0], shape[k][1],
                                      k == LLAMA_ATTN_Q ? o->q_rows : shape[k][2]};
        }
    if (o->extra_block)
        ts[n++] = (struct tspec){"blk.2.attn_norm.weight", 1, 8, 1};
    for (int i = 0; i < n; i++) {
        if (i == o->skip_tensor)
            continue;
        int64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        size_t nb = (size_t)(ts[i].ne0 * ts[i].ne1) * 2;
        cr_assert_eq(gguf_writer_add_tensor(w, ts[i].name, GGML_TYPE_F16, ts[i].ndim, ne, zeros, nb), 0, "%s",
                     ts[i].name);
    }
    char path[] = "/tmp/aisle-llama-test-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(gguf_writer_write(w, path, err, errlen), 0, "%s", err);
    gguf_writer_free(w);
    struct gguf *g = NULL;
    *rc = gguf_open(&g, path, err, errlen);
    unlink(path); /* the map stays valid */
    return g;
}

static struct tiny good(void)
{
    return (struct tiny){-1, 1, 0, 8, "llama", 1};
}

static int check(const struct tiny *o, char *err, size_t errlen)
{
    int rc;
    struct gguf *g = make_tiny(o, err, errlen, &rc);
    cr_assert_eq(rc, 0, "%s", err);
    struct llama_hparams hp;
    rc = llama_hparams_read(g, &hp, err, errlen);
    if (!rc)
        rc = llama_check_tensors(g, &hp, err, errlen);
    gguf_close(g);
    return rc;
}

Test(llama, names_are_llama_cpp_names)
{
    char b[64];
    cr_assert_eq(llama_tensor_name(b, sizeof(b), 0, LLAMA_ATTN_Q), 0);
    cr_assert_str_eq(b, "blk.0.attn_q.weight");
    cr_assert_eq(llama_tensor_name(b, sizeof(b), 31, LLAMA_FFN_DOWN), 0);
    cr_assert_str_eq(b, "blk.31.ffn_down.weight");
    cr_assert_eq(llama_tensor_name(b, sizeof(b), 3, LLAMA_ATTN_OUTPUT), 0);
    cr_assert_str_eq(b, "blk.3.attn_output.weight");
    cr_assert_eq(llama_tensor_name(b, 10, 3, LLAMA_ATTN_OUTPUT), AISLE_EINVAL, "too small");
    cr_assert_eq(llama_tensor_name(b, sizeof(b), 0, LLAMA_BLK_COUNT), AISLE_EINVAL);
    cr_assert_str_eq(llama_blk_suffix(LLAMA_FFN_GATE), "ffn_gate");
    cr_assert_str_eq(LLAMA_KEY_RMS_EPS, "llama.attention.layer_norm_rms_epsilon");
}

Test(llama, reads_hparams_and_accepts_a_complete_model)
{
    char err[256] = "";
    struct tiny o = good();
    int rc;
    struct gguf *g = make_tiny(&o, err, sizeof(err), &rc);
    cr_assert_eq(rc, 0, "%s", err);
    struct llama_hparams hp;
    cr_assert_eq(llama_hparams_read(g, &hp, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(hp.n_ctx, 128);
    cr_assert_eq(hp.n_embd, 8);
    cr_assert_eq(hp.n_layer, 2);
    cr_assert_eq(hp.n_ff, 16);
    cr_assert_eq(hp.n_head, 2);
    cr_assert_eq(hp.n_head_kv, 1);
    cr_assert_eq(hp.head_dim, 4);
    cr_assert_eq(hp.n_rot, 4);
    cr_assert_eq(hp.n_vocab, 10, "from token_embd when llama.vocab_size is absent");
    cr_assert_eq(hp.rope_freq_base, 500000.0f);
    cr_assert_eq(hp.rms_eps, 1e-5f);
    cr_assert_eq(hp.tied_output, 0);
    cr_assert_eq(llama_check_tensors(g, &hp, err, sizeof(err)), 0, "%s", err);
    gguf_close(g);
    o.with_output = 0;
    cr_assert_eq(check(&o, err, sizeof(err)), 0, "tied output is fine: %s", err);
}

Test(llama, rejects_incomplete_or_inconsistent_models)
{
    char err[256];
    struct tiny o = good();
    o.skip_tensor = 3 + LLAMA_BLK_COUNT + LLAMA_FFN_UP; /* blk.1.ffn_up.weight */
    cr_assert_eq(check(&o, err, sizeof(err)), AISLE_ENOTFOUND);
    cr_assert_str_eq(err, "tensor 'blk.1.ffn_up.weight' is missing");
    o = good();
    o.skip_tensor = 0;
    cr_assert_neq(check(&o, err, sizeof(err)), 0, "no embedding: %s", err);
    o = good();
    o.q_rows = 4;
    cr_assert_eq(check(&o, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "tensor 'blk.0.attn_q.weight' has shape {8, 4, 1, 1} (2-D), expected {8, 8}"), "%s", err);
    o = good();
    o.extra_block = 1;
    cr_assert_eq(check(&o, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "blk.2.attn_norm.weight' exists but block_count is 2"), "%s", err);
    o = good();
    o.arch = "gpt2";
    cr_assert_eq(check(&o, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert_str_eq(err, "architecture is 'gpt2', not 'llama'");
    o = good();
    o.head_count_kv = 3; /* more KV heads than heads */
    cr_assert_eq(check(&o, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "llama.attention.head_count_kv"), "%s", err);
}

Test(llama, permutation_of_rows)
{
    /* 2 heads of 4 rows: HF rows 0..7, halves (0,1|2,3) (4,5|6,7) become
     * adjacent pairs: (0,2),(1,3) and (4,6),(5,7) */
    uint8_t hf[8] = {0, 1, 2, 3, 4, 5, 6, 7}, gg[8], back[8];
    cr_assert_eq(llama_permute_qk(gg, hf, 8, 1, 2, 0), 0);
    const uint8_t want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    cr_assert_eq(memcmp(gg, want, 8), 0);
    cr_assert_eq(llama_permute_qk(back, gg, 8, 1, 2, 1), 0);
    cr_assert_eq(memcmp(back, hf, 8), 0, "the inverse undoes it");
    cr_assert_eq(llama_permute_qk(gg, hf, 6, 1, 4, 0), AISLE_EINVAL, "rows not a multiple of 2 * heads");
    /* larger rows of several bytes, round trip */
    enum { NR = 64, RB = 12 };
    static uint8_t a[NR * RB], b[NR * RB], c[NR * RB];
    for (int i = 0; i < NR * RB; i++)
        a[i] = (uint8_t)(i * 31 + 7);
    cr_assert_eq(llama_permute_qk(b, a, NR, RB, 4, 0), 0);
    cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
    cr_assert_eq(llama_permute_qk(c, b, NR, RB, 4, 1), 0);
    cr_assert_eq(memcmp(a, c, sizeof(a)), 0);
}

Test(llama, permutation_matches_rope_conventions)
{
    /* W_hf (NH*HD rows of C) applied to x then rotated the HF way (pairs i,
     * i+HD/2) must equal W_gguf = permute(W_hf) applied to x then rotated the
     * ggml way (pairs 2i, 2i+1), up to the same row order permutation. */
    enum { C = 6, NH = 3, HD = 8, R = NH * HD };
    float w_hf[R][C], w_gg[R][C], x[C], q_hf[R], q_gg[R];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            w_hf[r][c] = sinf((float)(r * C + c) * 0.37f);
    for (int c = 0; c < C; c++)
        x[c] = cosf((float)c);
    cr_assert_eq(llama_permute_qk(w_gg, w_hf, R, sizeof(w_hf[0]), NH, 0), 0);
    for (int r = 0; r < R; r++) {
        q_hf[r] = q_gg[r] = 0;
        for (int c = 0; c < C; c++) {
            q_hf[r] += w_hf[r][c] * x[c];
            q_gg[r] += w_gg[r][c] * x[c];
        }
    }
    const int pos = 5;
    const float base = 10000.0f;
    for (int h = 0; h < NH; h++) {
        float *a = q_hf + h * HD, *b = q_gg + h * HD;
        for (int i = 0; i < HD / 2; i++) {
            float th = (float)pos * powf(base, -2.0f * (float)i / HD), cs = cosf(th), sn = sinf(th);
            float a0 = a[i], a1 = a[i + HD / 2]; /* HF: rotate_half */
            a[i] = a0 * cs - a1 * sn;
            a[i + HD / 2] = a0 * sn + a1 * cs;
            float b0 = b[2 * i], b1 = b[2 * i + 1]; /* ggml: adjacent pairs */
            b[2 * i] = b0 * cs - b1 * sn;
            b[2 * i + 1] = b0 * sn + b1 * cs;
        }
        for (int i = 0; i < HD / 2; i++)
            for (int j = 0; j < 2; j++)
                cr_assert_float_eq(b[2 * i + j], a[j * HD / 2 + i], 1e-6, "head %d pair %d", h, i);
    }
}
