/*
 * nn.c — the per-token kernels of a Llama forward: RMSNorm, RoPE, softmax,
 * SwiGLU, and the dot/axpy/conversion entry points that dispatch to the
 * current SIMD path.
 *
 * Dims legend: T rows (tokens), C channels, NH heads, HD head dimension, n vector length.
 *
 * RMSNorm and RoPE are plain C (a small share of a forward). Softmax and
 * SwiGLU go through the current path's exp: libm's expf on the scalar path,
 * a polynomial (relative error ~1e-7) on the SIMD paths.
 */
#include "tensor/tensor.h"
#include "tensor/tensor_impl.h"

#include <math.h>

void nn_rmsnorm_forward(float *out, const float *inp, const float *weight, int T, int C, float eps)
{
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C;
        float *o = out + (size_t)t * C;
        /* double sum: C up to ~16k squares without drift, negligible cost */
        double ss = 0.0;
        for (int i = 0; i < C; i++)
            ss += (double)x[i] * x[i];
        float scale = (float)(1.0 / sqrt(ss / C + eps));
        for (int i = 0; i < C; i++)
            o[i] = x[i] * scale * weight[i];
    }
}

void nn_rope_forward(float *x, const int *pos, int T, int nheads, int head_dim, float freq_base)
{
    nn_rope_forward_ext(x, pos, T, nheads, head_dim, freq_base, 1.0f, NULL);
}

/* theta_i of pair i per unit position, as ggml_rope_ext computes it without
 * YaRN (ext_factor 0): freq_scale * base^(-2i/head_dim) / freq_factors[i]. */
static double rope_freq(int i, int head_dim, float freq_base, float freq_scale, const float *ff)
{
    double f = (double)freq_scale * pow(freq_base, -2.0 * i / head_dim);
    return ff ? f / ff[i] : f;
}

void nn_rope_forward_ext(float *x, const int *pos, int T, int nheads, int head_dim, float freq_base, float freq_scale,
                         const float *freq_factors)
{
    /* frequencies once per call (head_dim/2 pow calls, not T times that);
     * heads beyond the table's size, never seen in practice, recompute */
    double freq[256];
    const int nf = head_dim / 2 < 256 ? head_dim / 2 : 256;
    for (int i = 0; i < nf; i++)
        freq[i] = rope_freq(i, head_dim, freq_base, freq_scale, freq_factors);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < head_dim / 2; i++) {
            /* theta computed in double: positions up to ~1e6 keep full float accuracy */
            double theta = pos[t] * (i < nf ? freq[i] : rope_freq(i, head_dim, freq_base, freq_scale, freq_factors)),
                   sn, cs;
            sincos(theta, &sn, &cs);
            float c = (float)cs, s = (float)sn;
            for (int h = 0; h < nheads; h++) {
                float *v = x + ((size_t)t * nheads + h) * head_dim + 2 * i;
                float a = v[0], b = v[1];
                v[0] = a * c - b * s;
                v[1] = a * s + b * c;
            }
        }
    }
}

void nn_softmax_forward(float *x, int n)
{
    float m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    float inv = 1.0f / tensor_kernels()->exp_sum(x, m, n);
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

float nn_exp_sum(float *x, float shift, int n)
{
    return tensor_kernels()->exp_sum(x, shift, n);
}

void nn_swiglu_forward(float *out, const float *gate, const float *up, int n)
{
    tensor_kernels()->swiglu(out, gate, up, n);
}

float nn_dot_f32(const float *a, const float *b, int n)
{
    return tensor_kernels()->dot_f32(a, b, n);
}

void nn_axpy_f32(float *y, float a, const float *x, int n)
{
    tensor_kernels()->axpy_f32(y, a, x, n);
}

float nn_dot_f16(const float *a, const uint16_t *b, int n)
{
    return tensor_kernels()->dot_f16(a, b, n);
}

void nn_axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    tensor_kernels()->axpy_f16(y, a, x, n);
}

void nn_f32_to_f16(uint16_t *out, const float *in, int n)
{
    tensor_kernels()->f32_to_f16(out, in, n);
}

void nn_f16_to_f32(float *out, const uint16_t *in, int n)
{
    tensor_kernels()->f16_to_f32(out, in, n);
}
