/*
 * tinymodel.h — write a random-weight Llama GGUF with a real byte-level BPE
 * tokenizer inside, for the server tests and bench/serve (header-only, plain
 * C: no Criterion, so the benchmark can include it too).
 *
 * The vocabulary: the 256 byte tokens (GPT-2's visible form), Aisle's five
 * special tokens (<|endoftext|> is BOS/EOS, <|end|> ends a turn), then filler
 * NORMAL tokens "t<hex>" up to n_vocab, so every id the model can sample
 * decodes to text and any text round-trips through tokenize/detokenize. The
 * output rows of the special tokens are zero (logit exactly 0), so a random
 * model rarely ends its turn early (never when greedy) and output lengths
 * follow max_tokens.
 * Weights are scaled like a trained model's (std ~ 1/sqrt(fan_in)).
 *
 * THREAD SAFETY: one call at a time (a static PRNG).
 */
#ifndef AISLE_TESTS_TINYMODEL_H
#define AISLE_TESTS_TINYMODEL_H

#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/llama_names.h"
#include "gguf/quant.h"
#include "tok/tok.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tiny_spec {
    int dim, layers, heads, kv_heads, ff, vocab, ctx; /* vocab >= 261 */
    enum ggml_type wtype;                              /* matrices; norms stay F32 */
    uint64_t seed;
    int printable; /* 1: the output rows of bytes outside 0x20..0x7e are zero too, so greedy
                      decoding only says printable ASCII and filler tokens */
};

static uint64_t tiny_rng;
static float tiny_rand(void) /* uniform in [-1, 1) */
{
    tiny_rng = tiny_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((tiny_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static int tiny_matrix(struct gguf_writer *g, const char *name, int rows, int cols, float scale, enum ggml_type t)
{
    size_t rb = ggml_row_size(t, cols);
    char *q = malloc(rb * (size_t)rows);
    float *row = malloc((size_t)cols * sizeof(float));
    int rc = q && row ? 0 : AISLE_ENOMEM;
    for (int r = 0; r < rows && !rc; r++) {
        for (int c = 0; c < cols; c++)
            row[c] = scale * tiny_rand();
        rc = ggml_quantize_row(t, row, q + rb * (size_t)r, cols);
    }
    int64_t ne[2] = {cols, rows};
    if (!rc)
        rc = gguf_writer_add_tensor(g, name, t, 2, ne, q, rb * (size_t)rows);
    free(q);
    free(row);
    return rc;
}

static int tiny_vec(struct gguf_writer *g, const char *name, int n)
{
    float *v = malloc((size_t)n * sizeof(float));
    if (!v)
        return AISLE_ENOMEM;
    for (int i = 0; i < n; i++)
        v[i] = 1.0f + 0.2f * tiny_rand();
    int64_t ne[1] = {n};
    int rc = gguf_writer_add_tensor(g, name, GGML_TYPE_F32, 1, ne, v, (size_t)n * sizeof(float));
    free(v);
    return rc;
}

/* The tokenizer described above, with n_vocab tokens. */
static int tiny_tok(struct tok **out, int n_vocab)
{
    static const char *const sp[TOK_N_AISLE_SPECIALS] = {TOK_ENDOFTEXT, TOK_SYSTEM, TOK_USER, TOK_ASSISTANT, TOK_END};
    int n = n_vocab;
    char(*text)[16] = malloc((size_t)n * sizeof(*text));
    const char **tokens = malloc((size_t)n * sizeof(*tokens));
    size_t *lens = malloc((size_t)n * sizeof(*lens));
    int32_t *types = malloc((size_t)n * sizeof(*types));
    int rc = AISLE_ENOMEM;
    if (!text || !tokens || !lens || !types || n < 256 + TOK_N_AISLE_SPECIALS)
        goto done;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tok_byte_to_cp((unsigned char)b);
        size_t k = 0;
        if (cp < 0x80)
            text[b][k++] = (char)cp;
        else {
            text[b][k++] = (char)(0xc0 | (cp >> 6));
            text[b][k++] = (char)(0x80 | (cp & 63));
        }
        tokens[b] = text[b];
        lens[b] = k;
        types[b] = TOK_TYPE_NORMAL;
    }
    for (int k = 0; k < TOK_N_AISLE_SPECIALS; k++) {
        tokens[256 + k] = sp[k];
        lens[256 + k] = strlen(sp[k]);
        types[256 + k] = TOK_TYPE_CONTROL;
    }
    for (int i = 256 + TOK_N_AISLE_SPECIALS; i < n; i++) {
        lens[i] = (size_t)snprintf(text[i], sizeof(text[i]), "t%x", i);
        tokens[i] = text[i];
        types[i] = TOK_TYPE_NORMAL;
    }
    struct tok_bpe_spec spec = {
        .tokens = tokens, .lens = lens, .types = types, .n = (size_t)n, .bos = 256, .eos = 256, .eot = 260,
        .pad = 256, .add_bos = 1, .chat_template = tok_chat_template,
    };
    char err[256];
    rc = tok_new_bpe(out, &spec, err, sizeof(err));
done:
    free(text);
    free(tokens);
    free(lens);
    free(types);
    return rc;
}

/* Write the model to path. 0 or an AISLE_* code. */
static int tiny_model_write(const char *path, const struct tiny_spec *s)
{
    struct gguf_writer *g = gguf_writer_new();
    if (!g)
        return AISLE_ENOMEM;
    tiny_rng = s->seed ? s->seed : 1;
    int C = s->dim, HD = s->dim / s->heads, KVD = HD * s->kv_heads, F = s->ff, V = s->vocab, rc = 0;
    float sc = 1.7f / sqrtf((float)C), sf = 1.7f / sqrtf((float)F);
    gguf_writer_set_str(g, LLAMA_KEY_ARCH, "llama");
    gguf_writer_set_u32(g, LLAMA_KEY_CONTEXT_LENGTH, (uint32_t)s->ctx);
    gguf_writer_set_u32(g, LLAMA_KEY_EMBEDDING_LENGTH, (uint32_t)C);
    gguf_writer_set_u32(g, LLAMA_KEY_BLOCK_COUNT, (uint32_t)s->layers);
    gguf_writer_set_u32(g, LLAMA_KEY_FEED_FORWARD_LENGTH, (uint32_t)F);
    gguf_writer_set_u32(g, LLAMA_KEY_HEAD_COUNT, (uint32_t)s->heads);
    gguf_writer_set_u32(g, LLAMA_KEY_HEAD_COUNT_KV, (uint32_t)s->kv_heads);
    gguf_writer_set_f32(g, LLAMA_KEY_ROPE_FREQ_BASE, 10000.0f);
    gguf_writer_set_f32(g, LLAMA_KEY_RMS_EPS, 1e-5f);
    rc = tiny_matrix(g, LLAMA_TENSOR_TOKEN_EMBD, V, C, 1.0f, s->wtype);
    char name[64];
    for (int l = 0; l < s->layers && !rc; l++) {
        llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_NORM), rc = rc ? rc : tiny_vec(g, name, C);
        llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_Q), rc = rc ? rc : tiny_matrix(g, name, C, C, sc, s->wtype);
        llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_K), rc = rc ? rc : tiny_matrix(g, name, KVD, C, sc, s->wtype);
        llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_V), rc = rc ? rc : tiny_matrix(g, name, KVD, C, sc, s->wtype);
        llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_OUTPUT), rc = rc ? rc : tiny_matrix(g, name, C, C, sc, s->wtype);
        llama_tensor_name(name, sizeof(name), l, LLAMA_FFN_NORM), rc = rc ? rc : tiny_vec(g, name, C);
        llama_tensor_name(name, sizeof(name), l, LLAMA_FFN_GATE), rc = rc ? rc : tiny_matrix(g, name, F, C, sc, s->wtype);
        llama_tensor_name(name, sizeof(name), l, LLAMA_FFN_UP), rc = rc ? rc : tiny_matrix(g, name, F, C, sc, s->wtype);
        llama_tensor_name(name, sizeof(name), l, LLAMA_FFN_DOWN), rc = rc ? rc : tiny_matrix(g, name, C, F, sf, s->wtype);
    }
    rc = rc ? rc : tiny_vec(g, LLAMA_TENSOR_OUTPUT_NORM, C);
    /* Output rows: the byte and filler tokens random, the specials zero. */
    if (!rc) {
        size_t rb = ggml_row_size(s->wtype, C);
        char *q = malloc(rb * (size_t)V);
        float *row = malloc((size_t)C * sizeof(float));
        rc = q && row ? 0 : AISLE_ENOMEM;
        for (int r = 0; r < V && !rc; r++) {
            int special = (r >= 256 && r < 256 + TOK_N_AISLE_SPECIALS) || (s->printable && r < 256 && (r < 0x20 || r > 0x7e));
            for (int c = 0; c < C; c++)
                row[c] = special ? 0.0f : 2.0f * sc * tiny_rand();
            rc = ggml_quantize_row(s->wtype, row, q + rb * (size_t)r, C);
        }
        int64_t ne[2] = {C, V};
        if (!rc)
            rc = gguf_writer_add_tensor(g, LLAMA_TENSOR_OUTPUT, s->wtype, 2, ne, q, rb * (size_t)V);
        free(q);
        free(row);
    }
    struct tok *tk = NULL;
    rc = rc ? rc : tiny_tok(&tk, V);
    rc = rc ? rc : tok_save_gguf(tk, g);
    tok_free(tk);
    char err[256];
    rc = rc ? rc : gguf_writer_write(g, path, err, sizeof(err));
    gguf_writer_free(g);
    return rc;
}

#endif
