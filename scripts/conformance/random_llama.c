/*
 * random_llama.c — write a small random Llama GGUF for the llama.cpp
 * conformance check: grouped-query attention (8 heads, 4 KV heads), untied
 * output, a non-default RoPE base (500000) and RMS epsilon (1e-6), a
 * byte-level BPE tokenizer (llama.cpp refuses a file without one).
 *
 * Usage: random_llama OUT.gguf TYPE   (TYPE: f32, f16, bf16, q8_0, q4_0, q4_K, q6_K;
 * the K-quants as random blocks, every weight matrix including the embedding) 
 */
#include "gguf/gguf.h"
#include "gguf/llama_names.h"
#include "gguf/quant.h"
#include "tok/tok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
enum { C = 256, L = 2, NH = 8, NKV = 4, HD = 32, F = 512, V = 256 + TOK_N_AISLE_SPECIALS };
static uint64_t rng = 99;
static float frand(void) { rng = rng * 6364136223846793005ULL + 1442695040888963407ULL; return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f; }
/* Q4_K and Q6_K have no quantizer here: their blocks are random bytes with
 * the f16 scales set so that the weights come out around +-0.1. */
static void random_kquant(enum ggml_type t, unsigned char *q, size_t nbytes)
{
    size_t bs = ggml_type_size(t);
    for (size_t i = 0; i < nbytes; i++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        q[i] = (unsigned char)(rng >> 56);
    }
    for (size_t b = 0; b < nbytes; b += bs) {
        uint16_t d;
        if (t == GGML_TYPE_Q4_K) { /* d, dmin first: x = d*sc*q - dmin*m, sc, m < 64, q < 16 */
            d = ggml_fp32_to_fp16(1.5e-4f);
            memcpy(q + b, &d, 2);
            d = ggml_fp32_to_fp16(1e-4f);
            memcpy(q + b + 2, &d, 2);
        } else { /* Q6_K: d last; x = d*sc*(q - 32), |sc| <= 128 */
            d = ggml_fp32_to_fp16(3e-5f);
            memcpy(q + b + bs - 2, &d, 2);
        }
    }
}

static void add(struct gguf_writer *g, const char *name, int rows, int cols, float scale, float off, enum ggml_type t)
{
    size_t rb = ggml_row_size(t, cols); float *row = malloc(cols * 4); char *q = malloc(rb * rows);
    if (t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q6_K)
        random_kquant(t, (unsigned char *)q, rb * rows);
    else
        for (int r = 0; r < rows; r++) { for (int c = 0; c < cols; c++) row[c] = off + scale * frand(); ggml_quantize_row(t, row, q + rb * r, cols); }
    int64_t ne[2] = {cols, rows};
    if (gguf_writer_add_tensor(g, name, t, rows == 1 ? 1 : 2, ne, q, rb * rows)) { fprintf(stderr, "add %s\n", name); exit(1); }
    free(row); free(q);
}
int main(int argc, char **argv)
{
    enum ggml_type t;
    if (argc != 3 || ggml_type_from_name(argv[2], &t) ||
        !(ggml_can_quantize(t) || t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q6_K)) {
        fprintf(stderr, "usage: random_llama OUT.gguf f32|f16|bf16|q8_0|q4_0|q4_K|q6_K\n");
        return 2;
    }
    struct gguf_writer *g = gguf_writer_new();
    gguf_writer_set_str(g, LLAMA_KEY_ARCH, "llama");
    gguf_writer_set_u32(g, LLAMA_KEY_CONTEXT_LENGTH, 512);
    gguf_writer_set_u32(g, LLAMA_KEY_EMBEDDING_LENGTH, C);
    gguf_writer_set_u32(g, LLAMA_KEY_BLOCK_COUNT, L);
    gguf_writer_set_u32(g, LLAMA_KEY_FEED_FORWARD_LENGTH, F);
    gguf_writer_set_u32(g, LLAMA_KEY_HEAD_COUNT, NH);
    gguf_writer_set_u32(g, LLAMA_KEY_HEAD_COUNT_KV, NKV);
    gguf_writer_set_f32(g, LLAMA_KEY_ROPE_FREQ_BASE, 500000.0f);
    gguf_writer_set_f32(g, LLAMA_KEY_RMS_EPS, 1e-6f);
    gguf_writer_set_u32(g, LLAMA_KEY_FILE_TYPE, t == GGML_TYPE_F32 ? 0 : t == GGML_TYPE_F16 ? 1 : t == GGML_TYPE_Q8_0 ? 7 : t == GGML_TYPE_Q4_K ? 15 : t == GGML_TYPE_Q6_K ? 18 : 2);
    add(g, LLAMA_TENSOR_TOKEN_EMBD, V, C, 1.0f, 0, t);
    char name[64]; const float s = 0.0625f;
    for (int l = 0; l < L; l++) {
        llama_tensor_name(name, 64, l, LLAMA_ATTN_NORM); add(g, name, 1, C, 0.2f, 1, GGML_TYPE_F32);
        llama_tensor_name(name, 64, l, LLAMA_ATTN_Q); add(g, name, NH * HD, C, s, 0, t);
        llama_tensor_name(name, 64, l, LLAMA_ATTN_K); add(g, name, NKV * HD, C, s, 0, t);
        llama_tensor_name(name, 64, l, LLAMA_ATTN_V); add(g, name, NKV * HD, C, s, 0, t);
        llama_tensor_name(name, 64, l, LLAMA_ATTN_OUTPUT); add(g, name, C, NH * HD, s, 0, t);
        llama_tensor_name(name, 64, l, LLAMA_FFN_NORM); add(g, name, 1, C, 0.2f, 1, GGML_TYPE_F32);
        llama_tensor_name(name, 64, l, LLAMA_FFN_GATE); add(g, name, F, C, s, 0, t);
        llama_tensor_name(name, 64, l, LLAMA_FFN_UP); add(g, name, F, C, s, 0, t);
        llama_tensor_name(name, 64, l, LLAMA_FFN_DOWN); add(g, name, C, F, 0.044f, 0, t);
    }
    add(g, LLAMA_TENSOR_OUTPUT_NORM, 1, C, 0.2f, 1, GGML_TYPE_F32);
    add(g, LLAMA_TENSOR_OUTPUT, V, C, s, 0, t);
    static const char *const sp[5] = {TOK_ENDOFTEXT, TOK_SYSTEM, TOK_USER, TOK_ASSISTANT, TOK_END};
    char text[V][16]; const char *tokens[V]; size_t lens[V]; int32_t types[V];
    for (int b = 0; b < 256; b++) { uint32_t cp = tok_byte_to_cp(b); size_t n = 0;
        if (cp < 0x80) text[b][n++] = cp; else { text[b][n++] = 0xc0 | (cp >> 6); text[b][n++] = 0x80 | (cp & 63); }
        tokens[b] = text[b]; lens[b] = n; types[b] = TOK_TYPE_NORMAL; }
    for (int k = 0; k < 5; k++) { tokens[256 + k] = sp[k]; lens[256 + k] = strlen(sp[k]); types[256 + k] = TOK_TYPE_CONTROL; }
    struct tok_bpe_spec spec = {.tokens = tokens, .lens = lens, .types = types, .n = V, .bos = 256, .eos = 256, .eot = 260, .pad = 256};
    struct tok *tk; char err[256];
    if (tok_new_bpe(&tk, &spec, err, sizeof err)) { puts(err); return 1; }
    tok_save_gguf(tk, g);
    if (gguf_writer_write(g, argv[1], err, sizeof err)) { puts(err); return 1; }
    return 0;
}
