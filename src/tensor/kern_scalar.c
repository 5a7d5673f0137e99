/*
 * kern_scalar.c — the portable C kernels: the fallback on any CPU, the
 * baseline of the benchmarks, and the integer-exact twin of the SIMD
 * quantized dots (same activation quantization, same integer sums).
 *
 * Dims legend: K input channels, nx activation rows per weight row, n vector length.
 *
 * Block layouts are in gguf/quant.h's top comment; the quantized activation
 * row in tensor_impl.h.
 */
#include "tensor/tensor_impl.h"

#include "gguf/quant.h"

#include <math.h>
#include <string.h>

static void rowdot_f32(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    const float *wr = w; /* GGUF data is aligned; memcpy keeps odd alignment defined */
    for (int j = 0; j < nx; j++) {
        const float *xr = XROW(x, j, xs);
        float acc = 0.0f;
        for (int k = 0; k < K; k++) {
            float wk;
            memcpy(&wk, wr + k, 4);
            acc += wk * xr[k];
        }
        out[j * os] = acc;
    }
}

static void rowdot_f16(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    const uint8_t *wr = w;
    for (int j = 0; j < nx; j++) {
        const float *xr = XROW(x, j, xs);
        float acc = 0.0f;
        for (int k = 0; k < K; k++)
            acc += ggml_fp16_to_fp32(tensor_rd16(wr + 2 * k)) * xr[k];
        out[j * os] = acc;
    }
}

static void rowdot_bf16(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    const uint8_t *wr = w;
    for (int j = 0; j < nx; j++) {
        const float *xr = XROW(x, j, xs);
        float acc = 0.0f;
        for (int k = 0; k < K; k++)
            acc += ggml_bf16_to_fp32(tensor_rd16(wr + 2 * k)) * xr[k];
        out[j * os] = acc;
    }
}

static void rowdot_q8_0(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    const int nb = K / 32;
    for (int j = 0; j < nx; j++) {
        struct q8x_view v = q8x_view(XROW(x, j, xs), K);
        const uint8_t *wb = w;
        float acc = 0.0f;
        for (int b = 0; b < nb; b++, wb += 34) {
            const int8_t *q = (const int8_t *)(wb + 2);
            int isum = 0;
            for (int i = 0; i < 32; i++)
                isum += q[i] * v.q[32 * b + i];
            acc += ggml_fp16_to_fp32(tensor_rd16(wb)) * v.d[b] * (float)isum;
        }
        out[j * os] = acc;
    }
}

/* Nibbles are used unsigned (0..15); the -8 offset is folded out with the
 * activation block sums: sum (n-8) q = sum n q - 8 (s0 + s1). */
static void rowdot_q4_0(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    const int nb = K / 32;
    for (int j = 0; j < nx; j++) {
        struct q8x_view v = q8x_view(XROW(x, j, xs), K);
        const uint8_t *wb = w;
        float acc = 0.0f;
        for (int b = 0; b < nb; b++, wb += 18) {
            const uint8_t *q = wb + 2;
            const int8_t *y = v.q + 32 * b;
            int isum = 0;
            for (int i = 0; i < 16; i++)
                isum += (q[i] & 15) * y[i] + (q[i] >> 4) * y[i + 16];
            isum -= 8 * (v.s[2 * b] + v.s[2 * b + 1]);
            acc += ggml_fp16_to_fp32(tensor_rd16(wb)) * v.d[b] * (float)isum;
        }
        out[j * os] = acc;
    }
}

/* Q4_K: sub-block j of 32 elements has x = d*sc_j*n - dmin*m_j, so its dot
 * with one activation block is dx * (d*sc_j*sum n q - dmin*m_j*sum q). */
static void q4k_scales(const uint8_t *s, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

static void rowdot_q4_k(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    const int nb = K / 256;
    for (int jx = 0; jx < nx; jx++) {
        struct q8x_view v = q8x_view(XROW(x, jx, xs), K);
        const uint8_t *wb = w;
        float acc = 0.0f;
        for (int b = 0; b < nb; b++, wb += 144) {
            float d = ggml_fp16_to_fp32(tensor_rd16(wb)), dmin = ggml_fp16_to_fp32(tensor_rd16(wb + 2));
            const uint8_t *sc6 = wb + 4, *q = wb + 16;
            for (int j = 0; j < 8; j++) {
                int sc, m, xb = 8 * b + j;
                q4k_scales(sc6, j, &sc, &m);
                const uint8_t *qq = q + 32 * (j / 2);
                const int8_t *y = v.q + 32 * xb;
                int isum = 0;
                for (int i = 0; i < 32; i++)
                    isum += ((j & 1) ? qq[i] >> 4 : qq[i] & 15) * y[i];
                acc += v.d[xb] * (d * (float)(sc * isum) - dmin * (float)(m * (v.s[2 * xb] + v.s[2 * xb + 1])));
            }
        }
        out[jx * os] = acc;
    }
}

/* Q6_K: chunk c (0..3) of half h holds 32 consecutive elements whose two
 * 16-element groups have scales sc[8h+2c] and sc[8h+2c+1]; values are
 * u - 32 with u in 0..63, folded out with the activation sums. */
static void rowdot_q6_k(int K, const void *w, const void *x, size_t xs, int nx, float *out, size_t os)
{
    const int nb = K / 256;
    for (int jx = 0; jx < nx; jx++) {
        struct q8x_view v = q8x_view(XROW(x, jx, xs), K);
        const uint8_t *wb = w;
        float acc = 0.0f;
        int xb = 0;
        for (int b = 0; b < nb; b++, wb += 210) {
            const uint8_t *ql = wb, *qh = wb + 128;
            const int8_t *sc = (const int8_t *)(wb + 192);
            float d = ggml_fp16_to_fp32(tensor_rd16(wb + 208));
            for (int h = 0; h < 2; h++) {
                for (int c = 0; c < 4; c++, xb++) {
                    const uint8_t *l = ql + 64 * h + 32 * (c & 1);
                    const uint8_t *hb = qh + 32 * h;
                    const int8_t *y = v.q + 32 * xb;
                    int is[2] = {0, 0};
                    for (int i = 0; i < 32; i++) {
                        int u = ((c < 2 ? l[i] & 15 : l[i] >> 4) | ((hb[i] >> (2 * c)) & 3) << 4);
                        is[i / 16] += u * y[i];
                    }
                    int t = sc[8 * h + 2 * c] * (is[0] - 32 * v.s[2 * xb]) +
                            sc[8 * h + 2 * c + 1] * (is[1] - 32 * v.s[2 * xb + 1]);
                    acc += d * v.d[xb] * (float)t;
                }
            }
        }
        out[jx * os] = acc;
    }
}

static void dequant_row(enum ggml_type t, const void *w, float *y, int K)
{
    ggml_dequantize_row(t, w, y, K);
}

static void quantize_x(const float *x, void *row, int K)
{
    const int nb = K / 32;
    float *d = row;
    int16_t *s = (int16_t *)(void *)((char *)row + (size_t)nb * 4);
    int8_t *q = (int8_t *)row + (size_t)nb * 8;
    for (int b = 0; b < nb; b++, x += 32, q += 32) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 32; i++) {
            int v = (int)nearbyintf(x[i] * id);
            q[i] = (int8_t)v;
            if (i < 16)
                s0 += v;
            else
                s1 += v;
        }
        s[2 * b] = (int16_t)s0;
        s[2 * b + 1] = (int16_t)s1;
    }
}

static float exp_sum(float *x, float shift, int n)
{
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - shift);
        sum += x[i];
    }
    return sum;
}

static void swiglu(float *out, const float *g, const float *u, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static float dot_f32(const float *a, const float *b, int n)
{
    float acc = 0.0f;
    for (int i = 0; i < n; i++)
        acc += a[i] * b[i];
    return acc;
}

static void axpy_f32(float *y, float a, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

static float dot_f16(const float *a, const uint16_t *b, int n)
{
    float acc = 0.0f;
    for (int i = 0; i < n; i++)
        acc += a[i] * ggml_fp16_to_fp32(b[i]);
    return acc;
}

static void axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += a * ggml_fp16_to_fp32(x[i]);
}

static void f32_to_f16(uint16_t *out, const float *in, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = ggml_fp32_to_fp16(in[i]);
}

static void f16_to_f32(float *out, const uint16_t *in, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = ggml_fp16_to_fp32(in[i]);
}

const struct tensor_kernels tensor_kernels_scalar = {
    .name = "scalar",
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
