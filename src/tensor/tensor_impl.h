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

/* A row of K activations quantized for the integer dot products
 * (llama.cpp's Q8_0 idea, with a float scale and per-16 sums), in blocks of
 * 32: x[32b+i] ~= d[b] * q[32b+i], q in [-127, 127], d[b] = max|x| / 127 over
 * the block; s[2b+h] = sum of q[32b+16h .. 32b+16h+15] (the sums let
 * Q4_K/Q6_K fold their offsets out of the integer loop). The three arrays
 * lie one after the other in TENSOR_Q8X_ROW(K) bytes — d first, so the SIMD
 * kernels load eight block scales with one instruction:
 *   float d[K/32]; int16_t s[K/16]; int8_t q[K]; */
#define TENSOR_Q8X_ROW(K) ((size_t)(K) / 32 * (4 + 4 + 32))

struct q8x_view {
    const float *d;
    const int16_t *s;
    const int8_t *q;
};

static inline struct q8x_view q8x_view(const void *row, int K)
{
    const char *r = row;
    struct q8x_view v = {(const float *)(const void *)r, (const int16_t *)(const void *)(r + (size_t)K / 32 * 4),
                         (const int8_t *)(r + (size_t)K / 32 * 8)};
    return v;
}

/* Dot one weight row (K elements of the table's type) with nx activation
 * rows; x row j starts at (const char *)x + j * xstride and is either K
 * floats or a quantized row (TENSOR_Q8X_ROW); writes out[j * ostride]. */
typedef void (*tensor_rowdot_fn)(int K, const void *wrow, const void *x, size_t xstride, int nx, float *out,
                                 size_t ostride);

/* Activation row j of a row-dot call. */
#define XROW(x, j, stride) ((const void *)((const char *)(x) + (size_t)(j) * (stride)))

/* For the SIMD row dots: calls body(..., nx) with nx as a literal
 * 1..TENSOR_NX, so loops over the rows unroll and accumulators stay in
 * registers. */
#define NX_DISPATCH(body, ...)               \
    do {                                     \
        switch (nx) {                        \
        case 1: body(__VA_ARGS__, 1); break; \
        case 2: body(__VA_ARGS__, 2); break; \
        case 3: body(__VA_ARGS__, 3); break; \
        default: body(__VA_ARGS__, 4); break; \
        }                                    \
    } while (0)

/* Matrix-matrix tile: nr weight rows (wrow bytes apart, starting at w) times
 * nx activation rows (x, xstride as above: quantized rows for Q8_0/Q4_0,
 * K floats for the float weight types); writes
 * out[j * ostride + r] for r < nr, j < nx. nr <= TENSOR_TILE_R, nx <=
 * TENSOR_TILE_C. */
typedef void (*tensor_tile_fn)(int K, const void *w, size_t wrow, int nr, const void *x, size_t xstride, int nx,
                               float *out, size_t ostride);
#define TENSOR_TILE_R 4
#define TENSOR_TILE_C 4

struct tensor_kernels {
    const char *name;
    tensor_rowdot_fn rowdot_f32, rowdot_f16, rowdot_bf16;     /* float activations */
    tensor_rowdot_fn rowdot_q8_0, rowdot_q4_0, rowdot_q4_k, rowdot_q6_k; /* q8x activations */
    /* Q8_0 / Q4_0 tiles for T > 1, and float-weight tiles (float
     * activation rows) below the sgemm crossovers; NULL where a path has
     * none (the row dots then serve). */
    tensor_tile_fn tile_q8_0, tile_q4_0;
    tensor_tile_fn tile_f32, tile_f16, tile_bf16;
    /* One weight row (K elements of type t) widened to floats, exactly as
     * ggml_dequantize_row does it (the sgemm tiles). */
    void (*dequant_row)(enum ggml_type t, const void *w, float *y, int K);
    /* x (K) -> one quantized row of TENSOR_Q8X_ROW(K) bytes at y, K a multiple of 32. */
    void (*quantize_x)(const float *x, void *y, int K);
    /* x[i] = exp(x[i] - shift) in place; returns the sum (float). */
    float (*exp_sum)(float *x, float shift, int n);
    /* out = g / (1 + exp(-g)) * u. */
    void (*swiglu)(float *out, const float *g, const float *u, int n);
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

/* Integer tile shape for Q8_0/Q4_0 products (rows 1..TENSOR_TILE_R, columns
 * 1..TENSOR_TILE_C, both types alike; 0 or out of range: each type's default
 * shape) and the smallest T that takes the tiles (0: never; default 2). For
 * the benchmarks and tests; not to be called while a product runs. */
void tensor_set_tile(int r, int c, int min_t);

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
