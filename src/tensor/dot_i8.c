/*
 * dot_i8.c — int8 vector dots for exact dense retrieval: one int8 query
 * against many int8 rows (passage vectors).
 *
 * Dims legend: n rows, D elements per row (any D >= 1).
 *
 * Design: the AVX2 path uses the sign trick of kern_avx2.c's Q8_0 dot:
 * |q| (unsigned) x sign(q)*row with _mm256_maddubs_epi16 — pairs stay below
 * 2*127*128 < 32768 as long as q avoids -128, which nn_quantize_i8 guarantees
 * — then _mm256_madd_epi16 by ones into int32 lanes; for D a multiple of 32
 * (up to 256) |q| stays in registers and four rows share one horizontal
 * reduction (hadd), the rest go one row at a time. Integer sums are exact,
 * so both paths return identical results (the test compares them bit for
 * bit). Rows are read once, in order: the scan is memory-bound (132 bytes a
 * passage at D = 128).
 */
#include "tensor/tensor.h"

#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2")))

/* Sum of the 8 int32 lanes of each of a, b, c, d, as 4 int32 lanes. */
AVX2 static inline __m128i hsum4(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i ab = _mm256_hadd_epi32(a, b), cd = _mm256_hadd_epi32(c, d);
    __m256i abcd = _mm256_hadd_epi32(ab, cd); /* (a01+a23, b.., c.., d..) per 128-bit half */
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

AVX2 static inline __m256i dot32(__m256i qa, __m256i qv, const int8_t *r, __m256i ones)
{
    __m256i rv = _mm256_loadu_si256((const __m256i *)r);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(rv, qv)), ones);
}

/* Four rows per pass share one horizontal reduction; |q| is taken once. */
AVX2 static void dot_i8_rows_avx2(int32_t *out, const int8_t *q, const int8_t *rows, size_t n, int D)
{
    int D32 = D & ~31;
    const __m256i ones = _mm256_set1_epi16(1);
    size_t i = 0;
    if (D32 == D && D <= 256) {
        __m256i qv[8], qa[8];
        int nb = D / 32;
        for (int b = 0; b < nb; b++) {
            qv[b] = _mm256_loadu_si256((const __m256i *)(q + 32 * b));
            qa[b] = _mm256_sign_epi8(qv[b], qv[b]);
        }
        for (; i + 4 <= n; i += 4) {
            const int8_t *r = rows + i * (size_t)D;
            __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
            for (int b = 0; b < nb; b++) {
                a0 = _mm256_add_epi32(a0, dot32(qa[b], qv[b], r + 32 * b, ones));
                a1 = _mm256_add_epi32(a1, dot32(qa[b], qv[b], r + D + 32 * b, ones));
                a2 = _mm256_add_epi32(a2, dot32(qa[b], qv[b], r + 2 * D + 32 * b, ones));
                a3 = _mm256_add_epi32(a3, dot32(qa[b], qv[b], r + 3 * D + 32 * b, ones));
            }
            _mm_storeu_si128((__m128i *)(out + i), hsum4(a0, a1, a2, a3));
        }
    }
    for (; i < n; i++) {
        const int8_t *r = rows + i * (size_t)D;
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < D32; j += 32) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(q + j));
            acc = _mm256_add_epi32(acc, dot32(_mm256_sign_epi8(qv, qv), qv, r + j, ones));
        }
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        int32_t sum = _mm_cvtsi128_si32(s);
        for (int j = D32; j < D; j++)
            sum += (int32_t)q[j] * r[j];
        out[i] = sum;
    }
}
#endif

void nn_dot_i8_rows_ref(int32_t *out, const int8_t *q, const int8_t *rows, size_t n, int D)
{
    for (size_t i = 0; i < n; i++) {
        int32_t s = 0;
        for (int j = 0; j < D; j++)
            s += (int32_t)q[j] * rows[i * (size_t)D + j];
        out[i] = s;
    }
}

void nn_dot_i8_rows(int32_t *out, const int8_t *q, const int8_t *rows, size_t n, int D)
{
#if defined(__x86_64__) || defined(__i386__)
    if (tensor_path() != TENSOR_PATH_SCALAR) {
        dot_i8_rows_avx2(out, q, rows, n, D);
        return;
    }
#endif
    nn_dot_i8_rows_ref(out, q, rows, n, D);
}

float nn_quantize_i8(int8_t *out, const float *x, int D)
{
    float amax = 0.0f;
    for (int j = 0; j < D; j++)
        if (fabsf(x[j]) > amax)
            amax = fabsf(x[j]);
    float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    for (int j = 0; j < D; j++) {
        float v = x[j] / scale;
        long r = lrintf(v);
        out[j] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
    }
    return scale;
}
