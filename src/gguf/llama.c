/*
 * llama.c — Llama hyperparameters, tensor-set check and the Q/K permutation;
 * see llama_names.h for the names, shapes and the permutation's derivation.
 */
#include "gguf/llama_names.h"

#include "core/error.h"
#include "gguf/quant.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const blk_suffix[LLAMA_BLK_COUNT] = {
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
};

const char *llama_blk_suffix(enum llama_blk_tensor which)
{
    return (unsigned)which < LLAMA_BLK_COUNT ? blk_suffix[which] : NULL;
}

int llama_tensor_name(char *buf, size_t n, int layer, enum llama_blk_tensor which)
{
    if (layer < 0 || (unsigned)which >= LLAMA_BLK_COUNT)
        return AISLE_EINVAL;
    int k = snprintf(buf, n, "blk.%d.%s.weight", layer, blk_suffix[which]);
    return k < 0 || (size_t)k >= n ? AISLE_EINVAL : 0;
}

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A u32 hyperparameter in [1, max]; absent -> def (0 = required). */
static int get_dim(const struct gguf *g, const char *key, uint32_t def, uint32_t max, uint32_t *v, char *err,
                   size_t errlen)
{
    int rc = gguf_get_u32(g, key, v);
    if (rc == AISLE_ENOTFOUND && def) {
        *v = def;
        return 0;
    }
    if (rc == AISLE_ENOTFOUND)
        return fail(err, errlen, rc, "key '%s' is missing", key);
    if (rc)
        return fail(err, errlen, rc, "key '%s' must be a non-negative integer that fits in u32", key);
    if (*v == 0 || *v > max)
        return fail(err, errlen, AISLE_EFORMAT, "key '%s' = %u is not in 1..%u", key, *v, max);
    return 0;
}

static int get_float(const struct gguf *g, const char *key, float def, int required, float *v, char *err,
                     size_t errlen)
{
    int rc = gguf_get_f32(g, key, v);
    if (rc == AISLE_ENOTFOUND && !required) {
        *v = def;
        return 0;
    }
    if (rc == AISLE_ENOTFOUND)
        return fail(err, errlen, rc, "key '%s' is missing", key);
    if (rc)
        return fail(err, errlen, rc, "key '%s' must be a float", key);
    if (!(*v > 0.0f) || *v > 1e30f)
        return fail(err, errlen, AISLE_EFORMAT, "key '%s' = %g must be positive and finite", key, (double)*v);
    return 0;
}

int llama_hparams_read(const struct gguf *g, struct llama_hparams *out, char *err, size_t errlen)
{
    struct llama_hparams hp;
    memset(&hp, 0, sizeof(hp));
    const char *arch;
    size_t alen;
    int rc = gguf_get_str(g, LLAMA_KEY_ARCH, &arch, &alen);
    if (rc)
        return fail(err, errlen, rc, "key '%s' is %s", LLAMA_KEY_ARCH, rc == AISLE_ENOTFOUND ? "missing" : "not a string");
    if (alen != strlen(LLAMA_ARCH) || memcmp(arch, LLAMA_ARCH, alen))
        return fail(err, errlen, AISLE_EFORMAT, "architecture is '%.*s', not '%s'", (int)(alen < 64 ? alen : 64), arch,
                    LLAMA_ARCH);
    if ((rc = get_dim(g, LLAMA_KEY_CONTEXT_LENGTH, 0, UINT32_MAX, &hp.n_ctx, err, errlen)) ||
        (rc = get_dim(g, LLAMA_KEY_EMBEDDING_LENGTH, 0, LLAMA_MAX_EMBD, &hp.n_embd, err, errlen)) ||
        (rc = get_dim(g, LLAMA_KEY_BLOCK_COUNT, 0, LLAMA_MAX_LAYERS, &hp.n_layer, err, errlen)) ||
        (rc = get_dim(g, LLAMA_KEY_FEED_FORWARD_LENGTH, 0, 16 * LLAMA_MAX_EMBD, &hp.n_ff, err, errlen)) ||
        (rc = get_dim(g, LLAMA_KEY_HEAD_COUNT, 0, LLAMA_MAX_EMBD, &hp.n_head, err, errlen)) ||
        (rc = get_dim(g, LLAMA_KEY_HEAD_COUNT_KV, hp.n_head, hp.n_head, &hp.n_head_kv, err, errlen)))
        return rc;
    if (hp.n_head % hp.n_head_kv)
        return fail(err, errlen, AISLE_EFORMAT, "head_count %u is not a multiple of head_count_kv %u", hp.n_head,
                    hp.n_head_kv);
    uint32_t hd_default = hp.n_embd % hp.n_head ? 0 : hp.n_embd / hp.n_head;
    if ((rc = get_dim(g, LLAMA_KEY_KEY_LENGTH, hd_default, LLAMA_MAX_EMBD, &hp.head_dim, err, errlen)))
        return rc == AISLE_ENOTFOUND
                   ? fail(err, errlen, AISLE_EFORMAT, "embedding_length %u is not a multiple of head_count %u",
                          hp.n_embd, hp.n_head)
                   : rc;
    uint32_t vlen;
    if ((rc = get_dim(g, LLAMA_KEY_VALUE_LENGTH, hp.head_dim, LLAMA_MAX_EMBD, &vlen, err, errlen)))
        return rc;
    if (vlen != hp.head_dim)
        return fail(err, errlen, AISLE_EFORMAT, "value_length %u differs from key_length %u (unsupported)", vlen,
                    hp.head_dim);
    if (hp.head_dim % 2)
        return fail(err, errlen, AISLE_EFORMAT, "head dimension %u is odd (RoPE rotates pairs)", hp.head_dim);
    if ((rc = get_dim(g, LLAMA_KEY_ROPE_DIMENSION_COUNT, hp.head_dim, hp.head_dim, &hp.n_rot, err, errlen)))
        return rc;
    if ((rc = get_float(g, LLAMA_KEY_ROPE_FREQ_BASE, 10000.0f, 0, &hp.rope_freq_base, err, errlen)) ||
        (rc = get_float(g, LLAMA_KEY_RMS_EPS, 0.0f, 1, &hp.rms_eps, err, errlen)))
        return rc;
    const struct gguf_tensor *emb = gguf_find_tensor(g, LLAMA_TENSOR_TOKEN_EMBD);
    uint32_t v_def = emb && emb->ndim == 2 && emb->ne[1] <= (int64_t)LLAMA_MAX_VOCAB ? (uint32_t)emb->ne[1] : 0;
    if ((rc = get_dim(g, LLAMA_KEY_VOCAB_SIZE, v_def, LLAMA_MAX_VOCAB, &hp.n_vocab, err, errlen)))
        return rc == AISLE_ENOTFOUND ? fail(err, errlen, rc, "no '%s' and no 2-D '%s' to take it from",
                                            LLAMA_KEY_VOCAB_SIZE, LLAMA_TENSOR_TOKEN_EMBD)
                                     : rc;
    hp.tied_output = gguf_find_tensor(g, LLAMA_TENSOR_OUTPUT) == NULL;
    *out = hp;
    return 0;
}

/* One tensor: present (unless optional), exactly the expected shape, a type
 * we can dequantize. */
static int check_one(const struct gguf *g, const char *name, int ndim, int64_t ne0, int64_t ne1, int optional,
                     char *err, size_t errlen)
{
    const struct gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t)
        return optional ? 0 : fail(err, errlen, AISLE_ENOTFOUND, "tensor '%s' is missing", name);
    int64_t want[4] = {ne0, ndim == 2 ? ne1 : 1, 1, 1};
    if (t->ndim != ndim || memcmp(t->ne, want, sizeof(want)))
        return fail(err, errlen, AISLE_EFORMAT,
                    "tensor '%s' has shape {%lld, %lld, %lld, %lld} (%d-D), expected {%lld, %lld} (%d-D)", name,
                    (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], t->ndim,
                    (long long)want[0], (long long)want[1], ndim);
    if (!ggml_can_dequantize(t->type))
        return fail(err, errlen, AISLE_EFORMAT, "tensor '%s' has type %s, which Aisle cannot read", name,
                    ggml_type_name(t->type));
    return 0;
}

int llama_check_tensors(const struct gguf *g, const struct llama_hparams *hp, char *err, size_t errlen)
{
    const int64_t C = hp->n_embd, V = hp->n_vocab, F = hp->n_ff;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    int rc;
    if ((rc = check_one(g, LLAMA_TENSOR_TOKEN_EMBD, 2, C, V, 0, err, errlen)) ||
        (rc = check_one(g, LLAMA_TENSOR_OUTPUT_NORM, 1, C, 1, 0, err, errlen)) ||
        (rc = check_one(g, LLAMA_TENSOR_OUTPUT, 2, C, V, hp->tied_output, err, errlen)))
        return rc;
    /* per block: ndim, ne0, ne1 in enum order */
    const int64_t shape[LLAMA_BLK_COUNT][3] = {
        {1, C, 1}, {2, C, Q}, {2, C, KV}, {2, C, KV}, {2, Q, C}, {1, C, 1}, {2, C, F}, {2, C, F}, {2, F, C},
    };
    char name[GGUF_MAX_NAME + 1];
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        for (int k = 0; k < LLAMA_BLK_COUNT; k++) {
            if (llama_tensor_name(name, sizeof(name), (int)l, (enum llama_blk_tensor)k))
                return AISLE_EINVAL;
            if ((rc = check_one(g, name, (int)shape[k][0], shape[k][1], shape[k][2], 0, err, errlen)))
                return rc;
        }
    }
    /* A block past n_layer means block_count disagrees with the tensors. */
    if (llama_tensor_name(name, sizeof(name), (int)hp->n_layer, LLAMA_ATTN_NORM) == 0 && gguf_find_tensor(g, name))
        return fail(err, errlen, AISLE_EFORMAT, "tensor '%s' exists but block_count is %u", name, hp->n_layer);
    return 0;
}

int llama_permute_qk(void *dst, const void *src, int64_t n_rows, size_t row_bytes, uint32_t n_heads, int inverse)
{
    if (!dst || !src || n_heads == 0 || n_rows <= 0 || n_rows % (2 * (int64_t)n_heads) || row_bytes == 0)
        return AISLE_EINVAL;
    const int64_t hd = n_rows / n_heads, half = hd / 2;
    uint8_t *d = dst;
    const uint8_t *s = src;
    for (int64_t h = 0; h < n_heads; h++) {
        for (int64_t i = 0; i < half; i++) {
            for (int64_t j = 0; j < 2; j++) {
                const int64_t gguf_row = h * hd + 2 * i + j, hf_row = h * hd + j * half + i;
                const int64_t to = inverse ? hf_row : gguf_row, from = inverse ? gguf_row : hf_row;
                memcpy(d + (size_t)to * row_bytes, s + (size_t)from * row_bytes, row_bytes);
            }
        }
    }
    return 0;
}
