/*
 * tensor.h — the compute kernels of Aisle: a persistent thread pool, matrix
 * products against weights stored in ggml block formats, and the small
 * per-token kernels of a Llama forward (RMSNorm, RoPE, softmax, SwiGLU, dot,
 * axpy).
 *
 * Dims legend: T rows of activations (tokens), K input channels, N output
 * channels, C channels of a norm, n plain vector length.
 *
 * Design: SIMD lives only in src/tensor/. Each fast kernel has a portable
 * scalar version and AVX2/FMA/F16C and AVX-512 versions compiled with
 * target attributes, so the library builds for any x86-64 and picks a path
 * once at runtime (tensor_set_path or AISLE_TENSOR_PATH=scalar|avx2|avx512
 * force one, for tests and benchmarks). tensor_matmul splits its N output
 * rows into chunks that the pool's threads claim from a shared counter; for
 * Q8_0/Q4_0/Q4_K/Q6_K weights the activations are first quantized to 8-bit
 * blocks (llama.cpp's scheme) and dotted with integer arithmetic; for large T
 * it uses OpenBLAS sgemm (single-threaded per pool thread: the first sgemm
 * calls openblas_set_num_threads(1), which is process-wide) on F32 weights
 * or on tiles of dequantized rows. docs/TENSOR.md has the details and numbers.
 *
 * Ownership: every pointer argument is borrowed for the duration of the call;
 * nothing is retained. The pool owns its threads and its scratch memory.
 *
 * THREAD SAFETY: the nn_* and *_ref functions are pure and thread-safe. A
 * struct tpool runs one tpool_run / tensor_matmul at a time: calls on the same
 * pool must be serialized by the caller (the scheduler thread owns it).
 * tensor_set_path must not race with running kernels.
 */
#ifndef AISLE_TENSOR_TENSOR_H
#define AISLE_TENSOR_TENSOR_H

#include "gguf/gguf.h"

#include <stddef.h>
#include <stdint.h>

/* ---- thread pool ---------------------------------------------------------- */

struct tpool; /* persistent worker threads, created once */

/* A pool of nthreads threads counting the caller (nthreads - 1 workers are
 * started). nthreads <= 0: the number of online CPUs. NULL when out of memory
 * or when a thread cannot be started. */
struct tpool *tpool_new(int nthreads);
/* Stops and joins the workers. tpool_free(NULL) is a no-op. */
void tpool_free(struct tpool *p);
/* Threads in the pool, counting the caller. */
int tpool_nthreads(const struct tpool *p);
/* Run fn(ctx, ith, nth) on every thread (the caller is thread 0, nth =
 * tpool_nthreads) and return when all are done. Workers spin briefly for the
 * next job, then sleep on a futex. No allocation. p may be NULL: fn runs once
 * on the caller with ith 0, nth 1. */
void tpool_run(struct tpool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx);
/* Like tpool_run for work that fn shares through its own counter (each item
 * taken by whichever thread comes first): fn runs on the caller and on each
 * worker that starts before the caller's own call returns; a worker that is
 * later (descheduled on a loaded machine) is skipped instead of waited for.
 * Every ith that runs is distinct; fn must not assume that all of them run. */
void tpool_run_dynamic(struct tpool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx);

/* ---- matrix products ------------------------------------------------------ */

/* out (T, N) = x (T, K) · W^T where W is N rows of K elements stored in ggml
 * type wt (row-major, each row ggml_row_size(wt, K) bytes, as in GGUF; any
 * alignment). Types: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K. Picks the best
 * path: row-dot kernels (up to 4 activation rows per pass over a weight row)
 * below the thresholds, OpenBLAS sgemm for F32 from tensor_set_blas_min_t
 * rows and dequantize+sgemm for the other types from tensor_set_deq_min_t.
 * Uses the pool through tpool_run_dynamic (p may be NULL: the calling
 * thread alone, e.g. inside a pool job, with a scratch buffer of its own kept
 * for the thread's life). out must not alias x.
 * 0 or AISLE_EINVAL (unsupported type, K not a multiple of the block size,
 * T, K or N <= 0) or AISLE_ENOMEM (scratch for the quantized activations or
 * the sgemm tiles could not grow; it is kept between calls, so a forward that
 * repeats its shapes allocates nothing). */
int tensor_matmul(struct tpool *p, float *out, const float *x, const void *w, enum ggml_type wt, int T, int K, int N);
/* Up to TENSOR_MULTI_MAX products that share one input, in one pool dispatch
 * and with x converted once: out[i] (T, N[i]) = x (T, K) · W_i^T, W_i of
 * type wt[i] (the Q/K/V or gate/up projections of a layer). Same results,
 * bit for bit, as separate tensor_matmul calls. out[i] must not alias x or
 * each other. 0, AISLE_EINVAL (n out of range or any part invalid; nothing
 * written) or AISLE_ENOMEM. */
#define TENSOR_MULTI_MAX 4
int tensor_matmul_multi(struct tpool *p, int n, float *const *out, const float *x, const void *const *w,
                        const enum ggml_type *wt, const int *N, int T, int K);
/* Plain-C reference of the same contract (dequantize each row, double
 * accumulation): the oracle for tests. 0, AISLE_EINVAL or AISLE_ENOMEM. */
int tensor_matmul_ref(float *out, const float *x, const void *w, enum ggml_type wt, int T, int K, int N);

/* ---- small kernels -------------------------------------------------------- */

/* out (T, C) = inp (T, C) / sqrt(mean(inp^2) + eps) * weight (C). out may equal inp. */
void nn_rmsnorm_forward(float *out, const float *inp, const float *weight, int T, int C, float eps);
/* In place on x (T, nheads, head_dim): llama.cpp's "normal" rope for
 * LLM_ARCH_LLAMA: rotates pairs (x[2i], x[2i+1]) of each head by
 * pos[t] * base^(-2i/head_dim). head_dim even. */
void nn_rope_forward(float *x, const int *pos, int T, int nheads, int head_dim, float freq_base);
/* The same with llama.cpp's scalings for LLM_ARCH_LLAMA (ggml_rope_ext
 * without YaRN): pair i turns by pos[t] * freq_scale * base^(-2i/head_dim)
 * / freq_factors[i]. freq_scale = 1 / llama.rope.scaling.factor for linear
 * scaling (1: none); freq_factors (head_dim/2, positive) is a Llama-3.1
 * rope_freqs tensor or NULL (all 1). Borrowed, not kept. */
void nn_rope_forward_ext(float *x, const int *pos, int T, int nheads, int head_dim, float freq_base, float freq_scale,
                         const float *freq_factors);
/* In place, max-subtracted: x (n) = exp(x - max) / sum. n >= 1. */
void nn_softmax_forward(float *x, int n);
/* x[i] = exp(x[i] - shift) in place, returns the sum: the core of a softmax
 * (attention rows). SIMD exp, relative error ~1e-7 (libm expf on the scalar
 * path); arguments below -87 give ~1.6e-38 rather than a smaller number. */
float nn_exp_sum(float *x, float shift, int n);
/* out (n) = silu(gate) * up, silu(g) = g / (1 + exp(-g)). out may equal gate or up. */
void nn_swiglu_forward(float *out, const float *gate, const float *up, int n);
/* sum a[i] b[i], SIMD. */
float nn_dot_f32(const float *a, const float *b, int n);
/* y (n) += a x (n), SIMD. */
void nn_axpy_f32(float *y, float a, const float *x, int n);
/* For an F16 KV cache: sum a[i] * half(b[i]); y += a * half(x). */
float nn_dot_f16(const float *a, const uint16_t *b, int n);
void nn_axpy_f16(float *y, float a, const uint16_t *x, int n);
/* Conversions of n values (round to nearest even), SIMD. */
void nn_f32_to_f16(uint16_t *out, const float *in, int n);
void nn_f16_to_f32(float *out, const uint16_t *in, int n);

/* ---- CPU features and path selection -------------------------------------- */

/* Detected once at runtime (cpuid + OS support for the wide registers). */
int tensor_cpu_has_avx2(void);   /* AVX2 + FMA + F16C */
int tensor_cpu_has_avx512(void); /* AVX-512 F, BW, VL, DQ */

enum tensor_path {
    TENSOR_PATH_AUTO = 0, /* the best the CPU supports */
    TENSOR_PATH_SCALAR,   /* portable C */
    TENSOR_PATH_AVX2,
    TENSOR_PATH_AVX512,
};
/* Force a kernel path (AUTO: the default; env AISLE_TENSOR_PATH, read once,
 * sets the initial value). AISLE_EINVAL when the CPU lacks it (unchanged). */
int tensor_set_path(enum tensor_path path);
/* The path kernels run now (never AUTO). */
enum tensor_path tensor_path(void);
/* "scalar", "avx2", "avx512". */
const char *tensor_path_name(enum tensor_path path);
/* Smallest T for which tensor_matmul uses OpenBLAS sgemm on F32 weights
 * (measured default; 0 = never; tests and benchmarks change it). Returns the
 * previous value. */
int tensor_set_blas_min_t(int min_t);
/* Smallest T for which other weight types are dequantized by tiles and
 * multiplied with sgemm (0 = never). Returns the previous value. */
int tensor_set_deq_min_t(int min_t);

/* ---- int8 dots for dense retrieval (dot_i8.c) ----------------------------- */

/* out[i] (n) = sum_j q[j] * rows[i*D + j], exact int32; q must avoid -128
 * (nn_quantize_i8's output does). AVX2 unless the path is scalar. */
void nn_dot_i8_rows(int32_t *out, const int8_t *q, const int8_t *rows, size_t n, int D);
/* The plain loop, the reference the fast path is tested against. */
void nn_dot_i8_rows_ref(int32_t *out, const int8_t *q, const int8_t *rows, size_t n, int D);
/* Symmetric per-vector quantization: out[j] = round(x[j] / scale) in
 * [-127, 127], scale = max|x| / 127 (1 for an all-zero x); returns scale. */
float nn_quantize_i8(int8_t *out, const float *x, int D);

/* ---- BLAS for training (blas.c) ------------------------------------------- */

/* Row-major C (M, N) = alpha * op(A) · op(B) + beta * C with OpenBLAS's
 * cblas_sgemm; trans_a / trans_b 1 use A or B transposed (op(A) is (M, K),
 * op(B) is (K, N)). Threads: OpenBLAS's own (tensor_blas_set_threads). */
void tensor_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                  int ldb, float beta, float *C, int ldc);
/* OpenBLAS's thread count, process-wide (n <= 0: all online CPUs). Note
 * that tensor_matmul sets it to 1 on its first sgemm. */
void tensor_blas_set_threads(int n);
int tensor_blas_threads(void);

#endif
