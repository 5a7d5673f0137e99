/*
 * kern_avx512.c — AVX-512 (F, BW, DQ, VL) kernels, chosen at runtime on CPUs
 * that have them (Intel Skylake-SP and later, AMD Zen 4 and later).
 *
 * Dims legend: K input channels, nx activation rows per weight row (1..4), n vector length.
 *
 * These mirror kern_avx2.c at twice the width and are kept deliberately
 * simple: float weights use 16-wide FMA; Q8_0 and Q4_0 take two 32-element
 * blocks per 512-bit register (AVX-512 has no vpsignb, so the activation is
 * negated under the mask of negative weights instead). Q4_K, Q6_K and the
 * activation quantization call the AVX2 kernels (identical integer results).
 * NOTE: the machine this was written on (AMD EPYC Zen 3) has no AVX-512, so
 * this file is compiled and linked everywhere but only runs, and is only
 * tested by tests/tensor, where the CPU has AVX-512.
 */
#include "tensor/tensor_impl.h"

#include "gguf/quant.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#define T512 "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#define AVX512 __attribute__((target(T512)))
#define AVX512_INLINE static inline __attribute__((always_inline, target(T512)))

AVX512_INLINE float f16(const uint8_t *p)
{
    return _cvtsh_ss(tensor_rd16(p));
}

enum { W_F32, W_F16, W_BF16 };

AVX512_INLINE __m512 load_w(int kind, const uint8_t *w, int k)
{
    if (kind == W_F32)
        return _mm512_loadu_ps(w + 4 * (size_t)k);
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(w + 2 * (size_t)k));
    if (kind == W_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AVX512_INLINE float load_w1(int kind, const uint8_t *w, int k)
{
    if (kind == W_F32) {
        float f;
        memcpy(&f, w + 4 * (size_t)k, 4);
        return f;
    }
    if (kind == W_F16)
        return f16(w + 2 * (size_t)k);
    /* inline, not ggml_bf16_to_fp32: a call in the tail made gcc spill the accumulators */
    uint32_t u = (uint32_t)tensor_rd16(w + 2 * (size_t)k) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

AVX512_INLINE void rowdot_float(int kind, int K, const void *wv, const void *x, size_t xs, const int nx, float *out,
                                size_t os)
{
    const uint8_t *w = wv;
    const float *xr[TENSOR_NX];
    __m512 acc[TENSOR_NX][2];
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++) {
        xr[j] = XROW(x, j, xs);
        acc[j][0] = acc[j][1] = _mm512_setzero_ps();
    }
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512 w0 = load_w(kind, w, k), w1 = load_w(kind, w, k + 16);
        _Pragma("GCC unroll 4")
        for (int j = 0; j < nx; j++) {
            acc[j][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xr[j] + k), acc[j][0]);
            acc[j][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xr[j] + k + 16), acc[j][1]);
        }
    }
    for (; k + 16 <= K; k += 16) {
        __m512 w0 = load_w(kind, w, k);
        _Pragma("GCC unroll 4")
        for (int j = 0; j < nx; j++)
            acc[j][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xr[j] + k), acc[j][0]);
    }
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++) {
        float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[j][0], acc[j][1]));
        for (int kk = k; kk < K; kk++)
            s += load_w1(kind, w, kk) * xr[j][kk];
        out[j * os] = s;
    }
}

#define FLOAT_BODY(kind, K, w, x, xs, out, os, NX) rowdot_float(kind, K, w, x, xs, NX, out, os)

static AVX512 void rowdot_f32(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(FLOAT_BODY, W_F32, K, w, x, xs, out, os);
}

static AVX512 void rowdot_f16(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(FLOAT_BODY, W_F16, K, w, x, xs, out, os);
}

static AVX512 void rowdot_bf16(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(FLOAT_BODY, W_BF16, K, w, x, xs, out, os);
}

/* Two 32-byte pieces into one register: a in the low half, b in the high. */
AVX512_INLINE __m512i join(__m256i a, __m256i b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

AVX512_INLINE __m256i ld32(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* int32x16 sums of w[i] * y[i] (both signed, |w| <= 128, |y| <= 127). */
AVX512_INLINE __m512i dot_ss(__m512i w, __m512i y)
{
    __mmask64 neg = _mm512_movepi8_mask(w);
    __m512i sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(w), sy), _mm512_set1_epi16(1));
}

/* Two scales: lanes 0-7 s0, lanes 8-15 s1. */
AVX512_INLINE __m512 scales2(float s0, float s1)
{
    return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(s0), _mm512_set1_ps(s1));
}

/* 16 packed Q4_0 bytes -> 32 signed values n - 8 in element order. */
AVX512_INLINE __m256i q4_0_values(const uint8_t *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p), m = _mm_set1_epi8(15);
    __m256i u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
    return _mm256_sub_epi8(u, _mm256_set1_epi8(8));
}

/* Q8_0 (bytes 34) or Q4_0 (bytes 18): block b's signed 32 values. */
AVX512_INLINE __m256i qvalues(int q4, const uint8_t *wb)
{
    return q4 ? q4_0_values(wb + 2) : ld32(wb + 2);
}

AVX512_INLINE void body_q(int q4, int K, const void *w, const void *x, size_t xs, float *out, size_t os, const int nx)
{
    const int nb = K / 32, bs = q4 ? 18 : 34;
    struct q8x_view v[TENSOR_NX];
    __m512 acc[TENSOR_NX];
    float tail[TENSOR_NX];
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++) {
        v[j] = q8x_view(XROW(x, j, xs), K);
        acc[j] = _mm512_setzero_ps();
        tail[j] = 0.0f;
    }
    const uint8_t *wb = w;
    int b = 0;
    for (; b + 2 <= nb; b += 2, wb += 2 * bs) {
        float dw0 = f16(wb), dw1 = f16(wb + bs);
        __m512i q = join(qvalues(q4, wb), qvalues(q4, wb + bs));
        _Pragma("GCC unroll 4")
        for (int j = 0; j < nx; j++) {
            /* blocks b and b+1 of a row are adjacent: one 64-byte load */
            __m512i y = _mm512_loadu_si512((const void *)(v[j].q + 32 * b));
            __m512 f = _mm512_cvtepi32_ps(dot_ss(q, y));
            acc[j] = _mm512_fmadd_ps(scales2(dw0 * v[j].d[b], dw1 * v[j].d[b + 1]), f, acc[j]);
        }
    }
    if (b < nb) { /* odd block count: the last block alone, high half zero */
        float dw = f16(wb);
        __m512i q = join(qvalues(q4, wb), _mm256_setzero_si256());
        _Pragma("GCC unroll 4")
        for (int j = 0; j < nx; j++) {
            __m512i y = join(ld32(v[j].q + 32 * b), _mm256_setzero_si256());
            tail[j] = dw * v[j].d[b] * (float)_mm512_reduce_add_epi32(dot_ss(q, y));
        }
    }
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++)
        out[j * os] = _mm512_reduce_add_ps(acc[j]) + tail[j];
}

#define Q8_BODY(K, w, x, xs, out, os, NX) body_q(0, K, w, x, xs, out, os, NX)
#define Q4_BODY(K, w, x, xs, out, os, NX) body_q(1, K, w, x, xs, out, os, NX)

static AVX512 void rowdot_q8_0(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(Q8_BODY, K, w, x, xs, out, os);
}

static AVX512 void rowdot_q4_0(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(Q4_BODY, K, w, x, xs, out, os);
}

static void rowdot_q4_k(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    tensor_kernels_avx2.rowdot_q4_k(K, w, x, xs, nx, out, os);
}

static void rowdot_q6_k(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    tensor_kernels_avx2.rowdot_q6_k(K, w, x, xs, nx, out, os);
}

static void dequant_row(enum ggml_type t, const void *w, float *y, int K)
{
    tensor_kernels_avx2.dequant_row(t, w, y, K);
}

static void quantize_x(const float *x, void *y, int K)
{
    tensor_kernels_avx2.quantize_x(x, y, K);
}

static float exp_sum(float *x, float shift, int n)
{
    return tensor_kernels_avx2.exp_sum(x, shift, n);
}

static void swiglu(float *out, const float *g, const float *u, int n)
{
    tensor_kernels_avx2.swiglu(out, g, u, n);
}

static AVX512 float dot_f32(const float *a, const float *b, int n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static AVX512 void axpy_f32(float *y, float a, const float *x, int n)
{
    __m512 av = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

static AVX512 float dot_f16(const float *a, const uint16_t *b, int n)
{
    __m512 a0 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_cvtph_ps(ld32(b + i)), a0);
    float s = _mm512_reduce_add_ps(a0);
    for (; i < n; i++)
        s += a[i] * _cvtsh_ss(b[i]);
    return s;
}

static AVX512 void axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    __m512 av = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_cvtph_ps(ld32(x + i)), _mm512_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * _cvtsh_ss(x[i]);
}

static AVX512 void f32_to_f16(uint16_t *out, const float *in, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtps_ph(_mm512_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        out[i] = ggml_fp32_to_fp16(in[i]);
}

static AVX512 void f16_to_f32(float *out, const uint16_t *in, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_cvtph_ps(ld32(in + i)));
    for (; i < n; i++)
        out[i] = _cvtsh_ss(in[i]);
}

const struct tensor_kernels tensor_kernels_avx512 = {
    .name = "avx512",
    .rowdot_f32 = rowdot_f32,
    .rowdot_f16 = rowdot_f16,
    .rowdot_bf16 = rowdot_bf16,
    .rowdot_q8_0 = rowdot_q8_0,
    .rowdot_q4_0 = rowdot_q4_0,
    .rowdot_q4_k = rowdot_q4_k,
    .rowdot_q6_k = rowdot_q6_k,
    .dequant_row = dequant_row,
    .quantize_x = quantize_x,
    .exp_sum = exp_sum,
    .swiglu = swiglu,
    .dot_f32 = dot_f32,
    .axpy_f32 = axpy_f32,
    .dot_f16 = dot_f16,
    .axpy_f16 = axpy_f16,
    .f32_to_f16 = f32_to_f16,
    .f16_to_f32 = f16_to_f32,
};

#else
const struct tensor_kernels tensor_kernels_avx512 = {.name = "avx512 (unavailable)"};
#endif
