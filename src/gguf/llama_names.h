/*
 * llama_names.h — the Llama architecture in GGUF, named exactly as llama.cpp
 * writes and reads it: metadata keys, tensor names, the hyperparameters read
 * into a struct, a check that a file holds a complete, shape-consistent Llama
 * tensor set, and the Q/K row permutation.
 *
 * Shapes are ggml's (ne[0] innermost; a weight matrix W applied as y = W x has
 * ne = {in, out}, one row of `in` elements per output). C = n_embd,
 * V = n_vocab, F = n_ff, NH = n_head, NKV = n_head_kv, HD = head_dim:
 *
 *   token_embd.weight          {C, V}
 *   blk.N.attn_norm.weight     {C}
 *   blk.N.attn_q.weight        {C, NH*HD}       rows permuted, see below
 *   blk.N.attn_k.weight        {C, NKV*HD}      rows permuted, see below
 *   blk.N.attn_v.weight        {C, NKV*HD}
 *   blk.N.attn_output.weight   {NH*HD, C}
 *   blk.N.ffn_norm.weight      {C}
 *   blk.N.ffn_gate.weight      {C, F}
 *   blk.N.ffn_up.weight        {C, F}
 *   blk.N.ffn_down.weight      {F, C}
 *   output_norm.weight         {C}
 *   output.weight              {C, V}           optional: absent = tied to token_embd
 *
 * THE Q/K ROW PERMUTATION. Hugging Face Llama checkpoints apply RoPE in the
 * "rotate half" form: within each head of HD rows, row i (i < HD/2) is paired
 * with row i + HD/2. ggml's normal RoPE (the mode llama.cpp uses for "llama")
 * pairs adjacent rows 2i and 2i+1. So llama.cpp's HF converter
 * (convert_hf_to_gguf.py, LlamaModel.permute) reorders the rows of attn_q
 * (per NH heads) and attn_k (per NKV heads) when writing GGUF:
 *
 *   gguf_row[h*HD + 2*i + j] = hf_row[h*HD + j*(HD/2) + i]   (i < HD/2, j in {0,1})
 *
 * GGUF files therefore hold the interleaved order, and an engine that reads
 * GGUF must apply RoPE to adjacent pairs (x[2i], x[2i+1]) with frequency
 * theta_i = base^(-2i/n_rot) to get the same logits as llama.cpp. A model
 * trained by Aisle in rotate-half form must be permuted (forward) before it
 * is written; importing HF weights is the same forward permutation; going
 * back to HF order is the inverse. attn_v, attn_output and everything else
 * are never permuted.
 *
 * THREAD SAFETY: all functions are reentrant; they only read the struct gguf.
 */
#ifndef AISLE_GGUF_LLAMA_NAMES_H
#define AISLE_GGUF_LLAMA_NAMES_H

#include "gguf/gguf.h"

#include <stddef.h>
#include <stdint.h>

#define LLAMA_ARCH "llama"
#define LLAMA_KEY_ARCH "general.architecture"
#define LLAMA_KEY_NAME "general.name"
#define LLAMA_KEY_FILE_TYPE "general.file_type"
#define LLAMA_KEY_CONTEXT_LENGTH "llama.context_length"
#define LLAMA_KEY_EMBEDDING_LENGTH "llama.embedding_length"
#define LLAMA_KEY_BLOCK_COUNT "llama.block_count"
#define LLAMA_KEY_FEED_FORWARD_LENGTH "llama.feed_forward_length"
#define LLAMA_KEY_HEAD_COUNT "llama.attention.head_count"
#define LLAMA_KEY_HEAD_COUNT_KV "llama.attention.head_count_kv"
#define LLAMA_KEY_KEY_LENGTH "llama.attention.key_length"
#define LLAMA_KEY_VALUE_LENGTH "llama.attention.value_length"
#define LLAMA_KEY_ROPE_FREQ_BASE "llama.rope.freq_base"
#define LLAMA_KEY_ROPE_DIMENSION_COUNT "llama.rope.dimension_count"
#define LLAMA_KEY_RMS_EPS "llama.attention.layer_norm_rms_epsilon"
#define LLAMA_KEY_VOCAB_SIZE "llama.vocab_size"

#define LLAMA_TENSOR_TOKEN_EMBD "token_embd.weight"
#define LLAMA_TENSOR_OUTPUT_NORM "output_norm.weight"
#define LLAMA_TENSOR_OUTPUT "output.weight"

/* general.file_type values (llama.cpp's llama_ftype) for what convert writes. */
#define LLAMA_FTYPE_ALL_F32 0
#define LLAMA_FTYPE_MOSTLY_F16 1
#define LLAMA_FTYPE_MOSTLY_Q4_0 2
#define LLAMA_FTYPE_MOSTLY_Q8_0 7
#define LLAMA_FTYPE_MOSTLY_BF16 32

/* Limits on hyperparameters read from untrusted files. */
#define LLAMA_MAX_LAYERS 1024
#define LLAMA_MAX_EMBD (1u << 20)
#define LLAMA_MAX_VOCAB (1u << 24)

/* The per-block tensors, in the order llama.cpp lists them. */
enum llama_blk_tensor {
    LLAMA_ATTN_NORM,
    LLAMA_ATTN_Q,
    LLAMA_ATTN_K,
    LLAMA_ATTN_V,
    LLAMA_ATTN_OUTPUT,
    LLAMA_FFN_NORM,
    LLAMA_FFN_GATE,
    LLAMA_FFN_UP,
    LLAMA_FFN_DOWN,
    LLAMA_BLK_COUNT
};

/* "attn_q" etc.: the part between "blk.N." and ".weight"; NULL when out of range. */
const char *llama_blk_suffix(enum llama_blk_tensor which);
/* Write "blk.<layer>.<suffix>.weight" into buf. 0 or AISLE_EINVAL (bad
 * arguments or buf too small). */
int llama_tensor_name(char *buf, size_t n, int layer, enum llama_blk_tensor which);

struct llama_hparams {
    uint32_t n_ctx;       /* llama.context_length */
    uint32_t n_embd;      /* llama.embedding_length (C) */
    uint32_t n_layer;     /* llama.block_count (L) */
    uint32_t n_ff;        /* llama.feed_forward_length (F) */
    uint32_t n_head;      /* llama.attention.head_count (NH) */
    uint32_t n_head_kv;   /* llama.attention.head_count_kv (NKV); default NH */
    uint32_t head_dim;    /* llama.attention.key_length (HD); default C / NH */
    uint32_t n_rot;       /* llama.rope.dimension_count; default HD */
    uint32_t n_vocab;     /* llama.vocab_size, else token_embd.weight's ne[1] (V) */
    float rope_freq_base; /* llama.rope.freq_base; default 10000 */
    float rms_eps;        /* llama.attention.layer_norm_rms_epsilon */
    int tied_output;      /* 1 when output.weight is absent (logits use token_embd) */
};

/* Read the hyperparameters of a "llama" file and check them for consistency
 * (positive, NH divisible by NKV, HD even, limits). 0, AISLE_ENOTFOUND (a
 * required key is missing), AISLE_EFORMAT (wrong architecture, type or
 * inconsistent values) with detail naming the key in err. */
int llama_hparams_read(const struct gguf *g, struct llama_hparams *hp, char *err, size_t errlen);

/* Check that g holds every tensor a Llama model of hp needs, with the shapes
 * above (output.weight may be absent only when hp->tied_output), and that
 * every tensor type can be dequantized. 0 or AISLE_EFORMAT / AISLE_ENOTFOUND
 * with detail naming the tensor in err. */
int llama_check_tensors(const struct gguf *g, const struct llama_hparams *hp, char *err, size_t errlen);

/* Reorder the rows of a Q or K weight ({in, n_rows}, each row row_bytes of
 * any type) from HF rotate-half order to GGUF's interleaved order
 * (inverse = 0), or back (inverse = 1). n_heads is NH for Q and NKV for K;
 * n_rows must be a multiple of 2*n_heads. dst and src must not overlap.
 * 0 or AISLE_EINVAL. */
int llama_permute_qk(void *dst, const void *src, int64_t n_rows, size_t row_bytes, uint32_t n_heads, int inverse);

#endif
