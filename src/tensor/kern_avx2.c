/*
 * kern_avx2.c — AVX2 + FMA + F16C kernels (Haswell/Zen and later).
 *
 * Dims legend: K input channels, nx activation rows per weight row (1..4),
 * n vector length.
 *
 * Every function carries a target attribute instead of the file being built
 * with -mavx2, so the library still builds and runs on any x86-64; cpu.c only
 * hands this table out when cpuid says the CPU and OS support it.
 *
 * Float weights (F32/F16/BF16): each 8-wide slice of the weight row is loaded
 * (and widened) once and FMA'd into one accumulator per activation row; one
 * row alone gets four accumulators so the FMA latency is hidden.
 * Quantized weights against quantized activation rows (tensor_impl.h):
 *   Q8_0: |w| (unsigned) x sign(w)*q with _mm256_maddubs_epi16 — pairs fit
 *         int16 since 128*127*2 < 32768 — then _mm256_madd_epi16 by ones to
 *         int32 and one float FMA per block with d_w*d_x.
 *   Q4_0: nibbles - 8, then the same sign trick.
 *   Q4_K, Q6_K: the unsigned quants (0..15 / 0..63) go straight into
 *         maddubs; the offsets (the K-quant mins, -32) are folded out with
 *         the activation block sums in a vector side accumulator.
 * All integer sums are exact, so the results equal the scalar path's up to
 * the order of the float additions.
 */
#include "tensor/tensor_impl.h"

#include "gguf/quant.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

AVX2_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2_INLINE float f16(const uint8_t *p)
{
    return _cvtsh_ss(tensor_rd16(p));
}

enum { W_F32, W_F16, W_BF16 };

/* 8 weights starting at element k, widened to float. */
AVX2_INLINE __m256 load_w(int kind, const uint8_t *w, int k)
{
    if (kind == W_F32)
        return _mm256_loadu_ps((const float *)(const void *)(w + 4 * (size_t)k));
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(w + 2 * (size_t)k));
    if (kind == W_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2_INLINE float load_w1(int kind, const uint8_t *w, int k)
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

/* nx is a literal at every call site (see NX_DISPATCH) and the loops over
 * the activation rows carry an unroll pragma (-O2 does not peel them), so
 * the accumulators stay in registers. */
AVX2_INLINE void rowdot_float(int kind, int K, const void *wv, const void *x, size_t xs, const int nx, float *out,
                              size_t os)
{
    const uint8_t *w = wv;
    int k = 0;
    if (nx == 1) {
        const float *x0 = x;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (; k + 32 <= K; k += 32) {
            a0 = _mm256_fmadd_ps(load_w(kind, w, k), _mm256_loadu_ps(x0 + k), a0);
            a1 = _mm256_fmadd_ps(load_w(kind, w, k + 8), _mm256_loadu_ps(x0 + k + 8), a1);
            a2 = _mm256_fmadd_ps(load_w(kind, w, k + 16), _mm256_loadu_ps(x0 + k + 16), a2);
            a3 = _mm256_fmadd_ps(load_w(kind, w, k + 24), _mm256_loadu_ps(x0 + k + 24), a3);
        }
        for (; k + 8 <= K; k += 8)
            a0 = _mm256_fmadd_ps(load_w(kind, w, k), _mm256_loadu_ps(x0 + k), a0);
        float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; k < K; k++)
            s += load_w1(kind, w, k) * x0[k];
        out[0] = s;
        return;
    }
    const float *xr[TENSOR_NX];
    __m256 acc[TENSOR_NX][2];
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++) {
        xr[j] = XROW(x, j, xs);
        acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    }
    for (; k + 16 <= K; k += 16) {
        __m256 w0 = load_w(kind, w, k), w1 = load_w(kind, w, k + 8);
        _Pragma("GCC unroll 4")
        for (int j = 0; j < nx; j++) {
            acc[j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[j] + k), acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr[j] + k + 8), acc[j][1]);
        }
    }
    for (; k + 8 <= K; k += 8) {
        __m256 w0 = load_w(kind, w, k);
        _Pragma("GCC unroll 4")
        for (int j = 0; j < nx; j++)
            acc[j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[j] + k), acc[j][0]);
    }
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++) {
        float s = hsum8(_mm256_add_ps(acc[j][0], acc[j][1]));
        for (int kk = k; kk < K; kk++)
            s += load_w1(kind, w, kk) * xr[j][kk];
        out[j * os] = s;
    }
}

#define FLOAT_BODY(kind, K, w, x, xs, out, os, NX) rowdot_float(kind, K, w, x, xs, NX, out, os)

static AVX2 void rowdot_f32(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(FLOAT_BODY, W_F32, K, w, x, xs, out, os);
}

static AVX2 void rowdot_f16(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(FLOAT_BODY, W_F16, K, w, x, xs, out, os);
}

static AVX2 void rowdot_bf16(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(FLOAT_BODY, W_BF16, K, w, x, xs, out, os);
}

/* Float weights times float activation rows (T >= 2: batched decode, and
 * F16/BF16 prefill; matmul.c picks): R weight rows x C activation rows per
 * pass over K, so each 8-wide weight slice is loaded (and widened) once for
 * C rows and each activation slice once for R rows, with R*C accumulators in
 * registers. The row dots load C activation slices per weight slice and are
 * bound by loads (10 per 8 FMAs at C = 4); the 3 x 4 tile issues 7 per 12. */
AVX2_INLINE void tile_float(int kind, int K, const uint8_t *w, size_t wrow, const void *x, size_t xs, float *out,
                            size_t os, const int R, const int C)
{
    const float *xr[TENSOR_TILE_C];
    __m256 acc[TENSOR_TILE_R][TENSOR_TILE_C];
    _Pragma("GCC unroll 4")
    for (int c = 0; c < C; c++)
        xr[c] = XROW(x, c, xs);
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++) {
        _Pragma("GCC unroll 4")
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    }
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 wv[TENSOR_TILE_R];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++)
            wv[r] = load_w(kind, w + r * wrow, k);
        _Pragma("GCC unroll 4")
        for (int c = 0; c < C; c++) {
            __m256 xv = _mm256_loadu_ps(xr[c] + k);
            _Pragma("GCC unroll 4")
            for (int r = 0; r < R; r++)
                acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++) {
        _Pragma("GCC unroll 4")
        for (int c = 0; c < C; c++) {
            float s = hsum8(acc[r][c]);
            for (int kk = k; kk < K; kk++)
                s += load_w1(kind, w + r * wrow, kk) * xr[c][kk];
            out[c * os + r] = s;
        }
    }
}

/* A tile kernel fn(arg, K, w, wrow, x, xs, out, os, R, C) for nr in
 * 1..TENSOR_TILE_R and nx in 1..TENSOR_TILE_C, both literal inside. */
#define TILE_CASE(fn, arg, R, C) \
    case (R) * 8 + (C): fn(arg, K, w, wrow, x, xs, out, os, R, C); return;

#define TILE_SWITCH(fn, arg)                                                                               \
    switch (nr * 8 + nx) {                                                                                 \
        TILE_CASE(fn, arg, 1, 1) TILE_CASE(fn, arg, 1, 2) TILE_CASE(fn, arg, 1, 3) TILE_CASE(fn, arg, 1, 4) \
        TILE_CASE(fn, arg, 2, 1) TILE_CASE(fn, arg, 2, 2) TILE_CASE(fn, arg, 2, 3) TILE_CASE(fn, arg, 2, 4) \
        TILE_CASE(fn, arg, 3, 1) TILE_CASE(fn, arg, 3, 2) TILE_CASE(fn, arg, 3, 3) TILE_CASE(fn, arg, 3, 4) \
        TILE_CASE(fn, arg, 4, 1) TILE_CASE(fn, arg, 4, 2) TILE_CASE(fn, arg, 4, 3) TILE_CASE(fn, arg, 4, 4) \
    default: break;                                                                                        \
    }

static AVX2 void tile_f32(int K, const void *w, size_t wrow, int nr, const void *x, size_t xs, int nx, float *out,
                          size_t os)
{
    TILE_SWITCH(tile_float, W_F32)
}

static AVX2 void tile_f16(int K, const void *w, size_t wrow, int nr, const void *x, size_t xs, int nx, float *out,
                          size_t os)
{
    TILE_SWITCH(tile_float, W_F16)
}

static AVX2 void tile_bf16(int K, const void *w, size_t wrow, int nr, const void *x, size_t xs, int nx, float *out,
                           size_t os)
{
    TILE_SWITCH(tile_float, W_BF16)
}

/* int32x8 sums of u[i] * s[i] over 32 bytes (u unsigned, s signed, pairs must fit int16). */
AVX2_INLINE __m256i dot_us(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

AVX2_INLINE __m256i load_q(const int8_t *q)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)q);
}

/* 16 packed bytes -> 32 nibbles: low nibbles in bytes 0..15, high in 16..31. */
AVX2_INLINE __m256i unpack_nibbles16(const uint8_t *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

/* 16 bytes of Q4_0 quants -> 32 signed values n - 8 in -8..7, element order. */
AVX2_INLINE __m256i q4_0_values(const uint8_t *p)
{
    return _mm256_sub_epi8(unpack_nibbles16(p), _mm256_set1_epi8(8));
}

/* The f16 scales of 8 consecutive blocks (bs bytes apart), widened at once. */
AVX2_INLINE __m256 scales8(const uint8_t *wb, int bs)
{
    __m128i h = _mm_cvtsi32_si128(tensor_rd16(wb));
    h = _mm_insert_epi16(h, tensor_rd16(wb + bs), 1);
    h = _mm_insert_epi16(h, tensor_rd16(wb + 2 * bs), 2);
    h = _mm_insert_epi16(h, tensor_rd16(wb + 3 * bs), 3);
    h = _mm_insert_epi16(h, tensor_rd16(wb + 4 * bs), 4);
    h = _mm_insert_epi16(h, tensor_rd16(wb + 5 * bs), 5);
    h = _mm_insert_epi16(h, tensor_rd16(wb + 6 * bs), 6);
    h = _mm_insert_epi16(h, tensor_rd16(wb + 7 * bs), 7);
    return _mm256_cvtph_ps(h);
}

/* int32x8: the sums of the two halves of 8 consecutive activation blocks. */
AVX2_INLINE __m256i block_sums8(const int16_t *s)
{
    return _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)s), _mm256_set1_epi16(1));
}

/* 16 packed Q4_0 bytes -> the 32 unsigned nibbles in element order: the
 * bytes in both lanes, the high lane shifted right by 4, masked. */
AVX2_INLINE __m256i q4_0_nibbles(const uint8_t *p)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(15));
}

/* One weight block prepared for dots with any number of activation rows:
 * u is the unsigned maddubs operand (Q4_0: the raw nibbles; Q8_0: |w|), s
 * the Q8_0 weights whose signs move onto the activations. */
struct wblk {
    __m256i u, s;
};

AVX2_INLINE struct wblk wprep(int q4, const uint8_t *wb)
{
    struct wblk r;
    if (q4) {
        r.u = r.s = q4_0_nibbles(wb + 2);
    } else {
        r.s = _mm256_loadu_si256((const __m256i *)(const void *)(wb + 2));
        r.u = _mm256_sign_epi8(r.s, r.s);
    }
    return r;
}

/* int32x8 partial sums of one block's dot with 32 activations, as floats. */
AVX2_INLINE __m256 wdot(int q4, struct wblk w, const int8_t *y)
{
    __m256i yv = load_q(y);
    return _mm256_cvtepi32_ps(dot_us(w.u, q4 ? yv : _mm256_sign_epi8(yv, w.s)));
}

/* Bytes ahead of the weights being read that the Q8_0 row dots prefetch. The
 * weight rows of a matrix lie one after another, so this runs ahead into
 * the next rows. Decode (T = 1) streams every weight from DRAM once per
 * token, and the hardware prefetcher alone left the Q8_0 matrix-vector
 * product short of memory bandwidth: in the 110M model (2 threads,
 * alternating runs, best of 8) 1,024 / 2,048 / 3,072 / 4,096 / 6,144 bytes
 * gave 1.10 / 1.17 / 1.10 / 1.12 / 1.05x the tokens/s of none. The same
 * prefetch in the F32 row dots (already at the roofline) and in the
 * integer tiles (compute-bound) measured no gain, so they have none. */
#define Q_PREFETCH 2048

/* Q8_0 (sign trick) and Q4_0 (unsigned nibbles; the -8 is folded out with
 * the activation block sums, eight blocks per vector instruction). Blocks go
 * in groups of 8: their weight scales are widened together and multiplied
 * by 8 activation scales in one instruction, so each block only broadcasts
 * its product from a small table. With nx <= 2 two blocks are in flight per
 * row (two accumulator sets) to cover the FMA latency. */
AVX2_INLINE void body_q(int q4, int K, const void *w, const void *x, size_t xs, float *out, size_t os, const int nx)
{
    const int nb = K / 32, bs = q4 ? 18 : 34;
    struct q8x_view v[TENSOR_NX];
    __m256 acc[TENSOR_NX], acc2[TENSOR_NX], offs[TENSOR_NX];
    float offs_tail[TENSOR_NX];
    _Alignas(32) float sc[TENSOR_NX][8];
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++) {
        v[j] = q8x_view(XROW(x, j, xs), K);
        acc[j] = acc2[j] = offs[j] = _mm256_setzero_ps();
        offs_tail[j] = 0.0f;
    }
    const uint8_t *wb = w;
    int b = 0;
    for (; b + 8 <= nb; b += 8, wb += 8 * bs) {
        if (!q4) /* Q4_0 (half the bytes per weight, more work per byte) was not measured faster */
            for (int pf = 0; pf < 8 * bs; pf += 64)
                _mm_prefetch((const char *)wb + Q_PREFETCH + pf, _MM_HINT_T0);
        __m256 dw = scales8(wb, bs);
        _Pragma("GCC unroll 4")
        for (int j = 0; j < nx; j++) {
            __m256 s8 = _mm256_mul_ps(dw, _mm256_loadu_ps(v[j].d + b));
            _mm256_store_ps(sc[j], s8);
            if (q4)
                offs[j] = _mm256_fmadd_ps(s8, _mm256_cvtepi32_ps(block_sums8(v[j].s + 2 * b)), offs[j]);
        }
        if (nx <= 2) {
            for (int i = 0; i < 8; i += 2) {
                struct wblk w0 = wprep(q4, wb + i * bs), w1 = wprep(q4, wb + (i + 1) * bs);
                _Pragma("GCC unroll 4")
                for (int j = 0; j < nx; j++) {
                    const int8_t *y = v[j].q + 32 * (b + i);
                    acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&sc[j][i]), wdot(q4, w0, y), acc[j]);
                    acc2[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&sc[j][i + 1]), wdot(q4, w1, y + 32), acc2[j]);
                }
            }
        } else {
            for (int i = 0; i < 8; i++) {
                struct wblk wq = wprep(q4, wb + i * bs);
                _Pragma("GCC unroll 4")
                for (int j = 0; j < nx; j++)
                    acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&sc[j][i]), wdot(q4, wq, v[j].q + 32 * (b + i)), acc[j]);
            }
        }
    }
    for (; b < nb; b++, wb += bs) {
        float dw = f16(wb);
        struct wblk wq = wprep(q4, wb);
        _Pragma("GCC unroll 4")
        for (int j = 0; j < nx; j++) {
            float s1 = dw * v[j].d[b];
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(s1), wdot(q4, wq, v[j].q + 32 * b), acc[j]);
            if (q4)
                offs_tail[j] += s1 * (float)(v[j].s[2 * b] + v[j].s[2 * b + 1]);
        }
    }
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++) {
        __m256 a = _mm256_add_ps(acc[j], acc2[j]);
        if (q4)
            a = _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), offs[j], a);
        out[j * os] = hsum8(a) - (q4 ? 8.0f * offs_tail[j] : 0.0f);
    }
}

#define Q8_BODY(K, w, x, xs, out, os, NX) body_q(0, K, w, x, xs, out, os, NX)
#define Q4_BODY(K, w, x, xs, out, os, NX) body_q(1, K, w, x, xs, out, os, NX)

/* The 8 six-bit scales and mins of a Q4_K super-block as floats, unpacked
 * four bytes at a time (layout in gguf/quant.h): scales j < 4 are the low 6
 * bits of bytes 0..3, j >= 4 take their low nibble from bytes 8..11 and two
 * high bits from the top of bytes 0..3; mins likewise from bytes 4..7 and the
 * high nibbles of 8..11. A store of eight ints re-read as a vector stalled on
 * store forwarding. */
AVX2_INLINE void q4k_scales(const uint8_t *s, __m256 *sc, __m256 *m)
{
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    uint64_t scb = (uint64_t)(u0 & 0x3f3f3f3f) | (uint64_t)((u2 & 0x0f0f0f0f) | ((u0 >> 2) & 0x30303030)) << 32;
    uint64_t mb = (uint64_t)(u1 & 0x3f3f3f3f) | (uint64_t)(((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 2) & 0x30303030)) << 32;
    *sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)scb)));
    *m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mb)));
}

/* Q4_K: a super-block is 8 sub-blocks of 32, each one activation block. Per
 * super-block and row, the 8 scale products d*sc_j*dx_j go into a small
 * table with three vector instructions, and the min terms
 * dmin*m_j*dx_j*sum(q_j) accumulate in a vector, subtracted at the end. */
AVX2_INLINE void body_q4_k(int K, const void *w, const void *x, size_t xs, float *out, size_t os, const int nx)
{
    const int nb = K / 256;
    struct q8x_view v[TENSOR_NX];
    __m256 acc[TENSOR_NX], mins[TENSOR_NX];
    _Alignas(32) float st[TENSOR_NX][8];
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++) {
        v[j] = q8x_view(XROW(x, j, xs), K);
        acc[j] = mins[j] = _mm256_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(15);
    const uint8_t *wb = w;
    for (int b = 0; b < nb; b++, wb += 144) {
        __m256 scf, mf;
        q4k_scales(wb + 4, &scf, &mf);
        __m256 dsc = _mm256_mul_ps(_mm256_set1_ps(f16(wb)), scf), dm = _mm256_mul_ps(_mm256_set1_ps(f16(wb + 2)), mf);
        _Pragma("GCC unroll 4")
        for (int j = 0; j < nx; j++) {
            __m256 dx = _mm256_loadu_ps(v[j].d + 8 * b);
            _mm256_store_ps(st[j], _mm256_mul_ps(dsc, dx));
            mins[j] = _mm256_fmadd_ps(_mm256_mul_ps(dm, dx), _mm256_cvtepi32_ps(block_sums8(v[j].s + 16 * b)), mins[j]);
        }
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(wb + 16 + 32 * c));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            _Pragma("GCC unroll 4")
            for (int j = 0; j < nx; j++) {
                const int8_t *y = v[j].q + 32 * (8 * b + 2 * c); /* blocks for sub-blocks 2c and 2c+1 */
                acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&st[j][2 * c]), _mm256_cvtepi32_ps(dot_us(lo, load_q(y))),
                                         acc[j]);
                acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&st[j][2 * c + 1]),
                                         _mm256_cvtepi32_ps(dot_us(hi, load_q(y + 32))), acc[j]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++)
        out[j * os] = hsum8(_mm256_sub_ps(acc[j], mins[j]));
}

/* Q6_K: chunk c of half h (activation block xb = 8b + 4h + c) has 16-element
 * scales sc[2xb], sc[2xb+1], applied in the integer domain by
 * _mm256_madd_epi16; the -32 offset is folded out per super-block with one
 * madd of the 16 scales by the 16 activation half-block sums. */
AVX2_INLINE void body_q6_k(int K, const void *w, const void *x, size_t xs, float *out, size_t os, const int nx)
{
    const int nb = K / 256;
    struct q8x_view v[TENSOR_NX];
    __m256 acc[TENSOR_NX], offs[TENSOR_NX];
    _Alignas(32) float st[TENSOR_NX][8];
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++) {
        v[j] = q8x_view(XROW(x, j, xs), K);
        acc[j] = offs[j] = _mm256_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    const uint8_t *wb = w;
    for (int b = 0; b < nb; b++, wb += 210) {
        const int8_t *sc = (const int8_t *)(wb + 192);
        __m256 d = _mm256_set1_ps(f16(wb + 208));
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)sc));
        _Pragma("GCC unroll 4")
        for (int j = 0; j < nx; j++) {
            __m256 ddx = _mm256_mul_ps(d, _mm256_loadu_ps(v[j].d + 8 * b));
            _mm256_store_ps(st[j], ddx);
            __m256i so = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)(const void *)(v[j].s + 16 * b)));
            offs[j] = _mm256_fmadd_ps(ddx, _mm256_cvtepi32_ps(so), offs[j]);
        }
        for (int h = 0; h < 2; h++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)(wb + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(wb + 64 * h + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)(const void *)(wb + 128 + 32 * h));
            __m256i u[4];
            u[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
            u[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
            u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
            u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
            for (int c = 0; c < 4; c++) {
                const int xc = 4 * h + c; /* chunk within the super-block */
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * xc + 1]), _mm_set1_epi16(sc[2 * xc]));
                _Pragma("GCC unroll 4")
                for (int j = 0; j < nx; j++) {
                    __m256i p16 = _mm256_maddubs_epi16(u[c], load_q(v[j].q + 32 * (8 * b + xc)));
                    __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, scv));
                    acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&st[j][xc]), f, acc[j]);
                }
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int j = 0; j < nx; j++)
        out[j * os] = hsum8(_mm256_fnmadd_ps(_mm256_set1_ps(32.0f), offs[j], acc[j]));
}

/* Matrix-matrix tiles for Q8_0 / Q4_0 (prefill, batched decode): R weight
 * rows times C activation rows per pass over K, so each weight block is
 * loaded and prepared (|w| or nibbles) once for C rows and each activation
 * block once for R rows; R*C float accumulators stay in registers. Scale
 * products for a group of 8 blocks are formed with R*C vector multiplies
 * into a table and broadcast from it. Per block pair the work is sign (Q8_0
 * only), maddubs, madd, convert and FMA. Same integer sums as body_q, so the
 * results equal the row dots' up to the order of the float additions. */
AVX2_INLINE void tile_q(int q4, int K, const uint8_t *w, size_t wrow, const void *x, size_t xs, float *out, size_t os,
                        const int R, const int C)
{
    const int nb = K / 32, bs = q4 ? 18 : 34;
    struct q8x_view v[TENSOR_TILE_C];
    __m256 acc[TENSOR_TILE_R][TENSOR_TILE_C];
    __m256 offs[TENSOR_TILE_R][TENSOR_TILE_C];
    float offs_tail[TENSOR_TILE_R][TENSOR_TILE_C];
    _Alignas(32) float sc[TENSOR_TILE_R][TENSOR_TILE_C][8];
    _Pragma("GCC unroll 4")
    for (int c = 0; c < C; c++)
        v[c] = q8x_view(XROW(x, c, xs), K);
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++) {
        _Pragma("GCC unroll 4")
        for (int c = 0; c < C; c++) {
            acc[r][c] = offs[r][c] = _mm256_setzero_ps();
            offs_tail[r][c] = 0.0f;
        }
    }
    int b = 0;
    for (; b + 8 <= nb; b += 8) {
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            __m256 dw = scales8(w + r * wrow + (size_t)b * bs, bs);
            _Pragma("GCC unroll 4")
            for (int c = 0; c < C; c++) {
                __m256 s8 = _mm256_mul_ps(dw, _mm256_loadu_ps(v[c].d + b));
                _mm256_store_ps(sc[r][c], s8);
                if (q4)
                    offs[r][c] = _mm256_fmadd_ps(s8, _mm256_cvtepi32_ps(block_sums8(v[c].s + 2 * b)), offs[r][c]);
            }
        }
        for (int i = 0; i < 8; i++) {
            struct wblk wq[TENSOR_TILE_R];
            _Pragma("GCC unroll 4")
            for (int r = 0; r < R; r++)
                wq[r] = wprep(q4, w + r * wrow + (size_t)(b + i) * bs);
            _Pragma("GCC unroll 4")
            for (int c = 0; c < C; c++) {
                __m256i y = load_q(v[c].q + 32 * (b + i));
                _Pragma("GCC unroll 4")
                for (int r = 0; r < R; r++) {
                    __m256 p = _mm256_cvtepi32_ps(dot_us(wq[r].u, q4 ? y : _mm256_sign_epi8(y, wq[r].s)));
                    acc[r][c] = _mm256_fmadd_ps(_mm256_broadcast_ss(&sc[r][c][i]), p, acc[r][c]);
                }
            }
        }
    }
    for (; b < nb; b++) {
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + r * wrow + (size_t)b * bs;
            float dw = f16(wb);
            struct wblk wq = wprep(q4, wb);
            _Pragma("GCC unroll 4")
            for (int c = 0; c < C; c++) {
                float s1 = dw * v[c].d[b];
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(s1), wdot(q4, wq, v[c].q + 32 * b), acc[r][c]);
                if (q4)
                    offs_tail[r][c] += s1 * (float)(v[c].s[2 * b] + v[c].s[2 * b + 1]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++) {
        _Pragma("GCC unroll 4")
        for (int c = 0; c < C; c++) {
            __m256 a = acc[r][c];
            if (q4)
                a = _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), offs[r][c], a);
            out[c * os + r] = hsum8(a) - (q4 ? 8.0f * offs_tail[r][c] : 0.0f);
        }
    }
}

static AVX2 void tile_q8_0(int K, const void *w, size_t wrow, int nr, const void *x, size_t xs, int nx, float *out,
                           size_t os)
{
    TILE_SWITCH(tile_q, 0)
}

static AVX2 void tile_q4_0(int K, const void *w, size_t wrow, int nr, const void *x, size_t xs, int nx, float *out,
                           size_t os)
{
    TILE_SWITCH(tile_q, 1)
}

static AVX2 void rowdot_q8_0(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(Q8_BODY, K, w, x, xs, out, os);
}

static AVX2 void rowdot_q4_0(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(Q4_BODY, K, w, x, xs, out, os);
}

static AVX2 void rowdot_q4_k(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(body_q4_k, K, w, x, xs, out, os);
}

static AVX2 void rowdot_q6_k(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    NX_DISPATCH(body_q6_k, K, w, x, xs, out, os);
}

/* Widening for the sgemm tiles: d * q in float, the same products as
 * gguf/quant.c, so the tiles are bit-identical to ggml_dequantize_row. */
static AVX2 void dequant_row(enum ggml_type t, const void *wv, float *y, int K)
{
    const uint8_t *w = wv;
    switch (t) {
    case GGML_TYPE_F32: memcpy(y, w, (size_t)K * 4); return;
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16: {
        int kind = t == GGML_TYPE_F16 ? W_F16 : W_BF16, k = 0;
        for (; k + 8 <= K; k += 8)
            _mm256_storeu_ps(y + k, load_w(kind, w, k));
        for (; k < K; k++)
            y[k] = load_w1(kind, w, k);
        return;
    }
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0: {
        int q4 = t == GGML_TYPE_Q4_0, bs = q4 ? 18 : 34;
        for (int b = 0; b < K / 32; b++, w += bs, y += 32) {
            __m256 d = _mm256_set1_ps(f16(w));
            __m256i q = q4 ? q4_0_values(w + 2) : _mm256_loadu_si256((const __m256i *)(const void *)(w + 2));
            __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
            _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
            _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
            _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
            _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
        }
        return;
    }
    default: ggml_dequantize_row(t, w, y, K); return;
    }
}

/* Same arithmetic as the scalar quantize_x (d = amax/127, q = round-to-even
 * of x * 127/amax), so both paths produce identical rows. */
static AVX2 void quantize_x(const float *x, void *row, int K)
{
    const int nb = K / 32;
    float *dv = row;
    int16_t *sv = (int16_t *)(void *)((char *)row + (size_t)nb * 4);
    int8_t *qv = (int8_t *)row + (size_t)nb * 8;
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    for (int b = 0; b < nb; b++, x += 32) {
        __m256 v[4];
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(signbit, v[i]));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float amax = _mm_cvtss_f32(m);
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        dv[b] = amax / 127.0f;
        __m256 idv = _mm256_set1_ps(id);
        __m256i qi[4];
        for (int i = 0; i < 4; i++)
            qi[i] = _mm256_cvtps_epi32(
                _mm256_round_ps(_mm256_mul_ps(v[i], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i s0 = _mm256_add_epi32(qi[0], qi[1]), s1 = _mm256_add_epi32(qi[2], qi[3]);
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)(qv + 32 * b), p);
        __m256i hs = _mm256_hadd_epi32(s0, s1); /* lane: s0 pairs, s1 pairs per 128-bit half */
        hs = _mm256_hadd_epi32(hs, hs);
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(hs), _mm256_extracti128_si256(hs, 1));
        sv[2 * b] = (int16_t)_mm_cvtsi128_si32(t);
        sv[2 * b + 1] = (int16_t)_mm_extract_epi32(t, 1);
    }
}

/* exp(x) for 8 floats: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two
 * parts so r is exact to float precision), e^r by Cephes' degree-6
 * polynomial (relative error about 1e-7 on that interval), times 2^n built in
 * the exponent field. x is clamped to [-87, 88] so 2^n stays a normal float:
 * below -87 the result is ~1.6e-38 instead of smaller or 0, above 88 it is
 * e^88 instead of larger or inf (both harmless for softmax and SiLU). */
AVX2_INLINE __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static AVX2 float exp_sum(float *x, float shift, int n)
{
    __m256 sv = _mm256_set1_ps(shift), acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), sv));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum8(acc);
    for (; i < n; i++) {
        x[i] = expf(x[i] - shift);
        sum += x[i];
    }
    return sum;
}

static AVX2 void swiglu(float *out, const float *g, const float *u, int n)
{
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 den = _mm256_add_ps(one, exp8(_mm256_xor_ps(gv, neg)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(gv, den), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++)
        out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static AVX2 float dot_f32(const float *a, const float *b, int n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    float s = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static AVX2 void axpy_f32(float *y, float a, const float *x, int n)
{
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

static AVX2 float dot_f16(const float *a, const uint16_t *b, int n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8))),
                             a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), a0);
    float s = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += a[i] * _cvtsh_ss(b[i]);
    return s;
}

static AVX2 void axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))),
                                                _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * _cvtsh_ss(x[i]);
}

static AVX2 void f32_to_f16(uint16_t *out, const float *in, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        out[i] = ggml_fp32_to_fp16(in[i]);
}

static AVX2 void f16_to_f32(float *out, const uint16_t *in, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    for (; i < n; i++)
        out[i] = _cvtsh_ss(in[i]);
}

const struct tensor_kernels tensor_kernels_avx2 = {
    .name = "avx2",
    .rowdot_f32 = rowdot_f32,
    .rowdot_f16 = rowdot_f16,
    .rowdot_bf16 = rowdot_bf16,
    .rowdot_q8_0 = rowdot_q8_0,
    .rowdot_q4_0 = rowdot_q4_0,
    .rowdot_q4_k = rowdot_q4_k,
    .rowdot_q6_k = rowdot_q6_k,
    .tile_q8_0 = tile_q8_0,
    .tile_q4_0 = tile_q4_0,
    .tile_f32 = tile_f32,
    .tile_f16 = tile_f16,
    .tile_bf16 = tile_bf16,
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
/* Not x86: cpu.c never selects this table; keep the symbol so it links. */
const struct tensor_kernels tensor_kernels_avx2 = {.name = "avx2 (unavailable)"};
#endif
