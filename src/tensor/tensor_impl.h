/*
 * tensor_impl.h — internals shared by the files of src/tensor/ (not a public
 * API): the per-path kernel tables, the 8-bit activation block used for the
 * quantized dot products, and the pool's scratch buffer.
 *
 * Dims legend: K input channels (a multiple of 32 for quantized types), nx
 * activation rows handled by one row-dot call (1..TENSOR_NX).
 *
 * THREAD SAFETY: kernel tables are immutable; a scratch belongs to one pool.
 */
#ifndef AISLE_TENSOR_TENSOR_IMPL_H
#define AISLE_TENSOR_TENSOR_IMPL_H

#include "tensor/tensor.h"

#include <stddef.h>
#include <stdint.h>

/* Activation rows dotted against one weight row per call (shares the weight
 * row's loads and unpacking across them). */
#define TENSOR_NX 4

/* 32 activations quantized for the integer dot products (llama.cpp's Q8_0
 * idea with a float scale and per-16 sums): x[i] ~= d * q[i], q in
 * [-127, 127], d = max|x| / 127; s[h] = sum of q[16h .. 16h+15] (the sums let
 * Q4_0/Q4_K/Q6_K fold their offsets out of the integer loop). */
struct q8x_block {
    float d;
    int16_t s[2];
    int8_t q[32];
};

/* Dot one weight row (K elements of the table's type) with nx activation
 * rows; x row j starts at (const char *)x + j * xstride and is either K
 * floats or K/32 q8x blocks; writes out[j * ostride]. */
typedef void (*tensor_rowdot_fn)(int K, const void *wrow, const void *x, size_t xstride, int nx, float *out,
                                 size_t ostride);

struct tensor_kernels {
    const char *name;
    tensor_rowdot_fn rowdot_f32, rowdot_f16, rowdot_bf16;     /* float activations */
    tensor_rowdot_fn rowdot_q8_0, rowdot_q4_0, rowdot_q4_k, rowdot_q6_k; /* q8x activations */
    /* One weight row (K elements of type t) widened to floats, exactly as
     * ggml_dequantize_row does it (the sgemm tiles). */
    void (*dequant_row)(enum ggml_type t, const void *w, float *y, int K);
    /* x (K) -> K/32 blocks, K a multiple of 32. */
    void (*quantize_x)(const float *x, struct q8x_block *y, int K);
    float (*dot_f32)(const float *a, const float *b, int n);
    void (*axpy_f32)(float *y, float a, const float *x, int n);
    float (*dot_f16)(const float *a, const uint16_t *b, int n);
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int n);
    void (*f32_to_f16)(uint16_t *out, const float *in, int n);
    void (*f16_to_f32)(float *out, const uint16_t *in, int n);
};

extern const struct tensor_kernels tensor_kernels_scalar;
extern const struct tensor_kernels tensor_kernels_avx2;
extern const struct tensor_kernels tensor_kernels_avx512;

/* The table of the current path (tensor_set_path / AISLE_TENSOR_PATH). */
const struct tensor_kernels *tensor_kernels(void);

/* A growable buffer owned by a pool: grows only when a larger matmul comes,
 * so a forward that repeats the same shapes allocates nothing. */
struct tensor_scratch {
    void *data;
    size_t cap;
};
/* 0 or AISLE_ENOMEM (the old contents are kept either way, not preserved on growth). */
int tensor_scratch_reserve(struct tensor_scratch *s, size_t n);
void tensor_scratch_release(struct tensor_scratch *s);
/* The pool's scratch; NULL for a NULL pool. */
struct tensor_scratch *tpool_scratch(struct tpool *p);

/* Scalar helpers shared by the paths (little-endian block fields). */
static inline uint16_t tensor_rd16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] | b[1] << 8);
}

#endif
