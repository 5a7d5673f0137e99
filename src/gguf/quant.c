/*
 * quant.c — ggml block formats: the type table and reference row conversions.
 *
 * Quantizers follow ggml's reference ("_ref") routines exactly, so a file
 * quantized here is bit-identical to one quantized by ggml's reference code
 * from the same floats. Blocks are read byte by byte (no struct overlays), so
 * rows may sit at any alignment inside a memory map. Layouts are documented in
 * quant.h.
 */
#include "gguf/quant.h"

#include "core/error.h"

#include <math.h>
#include <string.h>
#include <strings.h>

struct type_info {
    const char *name; /* NULL: no such type */
    int64_t blck;     /* elements per block */
    size_t size;      /* bytes per block */
};

/* ggml.h numbering; numbers ggml retired (4, 5, 31-33, 36-38) stay empty. */
static const struct type_info types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"f32", 1, 4},
    [GGML_TYPE_F16] = {"f16", 1, 2},
    [GGML_TYPE_Q4_0] = {"q4_0", 32, 18},
    [GGML_TYPE_Q4_1] = {"q4_1", 32, 20},
    [GGML_TYPE_Q5_0] = {"q5_0", 32, 22},
    [GGML_TYPE_Q5_1] = {"q5_1", 32, 24},
    [GGML_TYPE_Q8_0] = {"q8_0", 32, 34},
    [GGML_TYPE_Q8_1] = {"q8_1", 32, 36},
    [GGML_TYPE_Q2_K] = {"q2_K", 256, 84},
    [GGML_TYPE_Q3_K] = {"q3_K", 256, 110},
    [GGML_TYPE_Q4_K] = {"q4_K", 256, 144},
    [GGML_TYPE_Q5_K] = {"q5_K", 256, 176},
    [GGML_TYPE_Q6_K] = {"q6_K", 256, 210},
    [GGML_TYPE_Q8_K] = {"q8_K", 256, 292},
    [GGML_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66},
    [GGML_TYPE_IQ2_XS] = {"iq2_xs", 256, 74},
    [GGML_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98},
    [GGML_TYPE_IQ1_S] = {"iq1_s", 256, 50},
    [GGML_TYPE_IQ4_NL] = {"iq4_nl", 32, 18},
    [GGML_TYPE_IQ3_S] = {"iq3_s", 256, 110},
    [GGML_TYPE_IQ2_S] = {"iq2_s", 256, 82},
    [GGML_TYPE_IQ4_XS] = {"iq4_xs", 256, 136},
    [GGML_TYPE_I8] = {"i8", 1, 1},
    [GGML_TYPE_I16] = {"i16", 1, 2},
    [GGML_TYPE_I32] = {"i32", 1, 4},
    [GGML_TYPE_I64] = {"i64", 1, 8},
    [GGML_TYPE_F64] = {"f64", 1, 8},
    [GGML_TYPE_IQ1_M] = {"iq1_m", 256, 56},
    [GGML_TYPE_BF16] = {"bf16", 1, 2},
    [GGML_TYPE_TQ1_0] = {"tq1_0", 256, 54},
    [GGML_TYPE_TQ2_0] = {"tq2_0", 256, 66},
    [39] = {"mxfp4", 32, 17},
};

static const struct type_info *info(enum ggml_type t)
{
    if ((unsigned)t >= GGML_TYPE_COUNT || !types[t].name)
        return NULL;
    return &types[t];
}

size_t ggml_type_size(enum ggml_type t)
{
    const struct type_info *ti = info(t);
    return ti ? ti->size : 0;
}

int64_t ggml_blck_size(enum ggml_type t)
{
    const struct type_info *ti = info(t);
    return ti ? ti->blck : 0;
}

size_t ggml_row_size(enum ggml_type t, int64_t ne0)
{
    const struct type_info *ti = info(t);
    if (!ti || ne0 <= 0 || ne0 % ti->blck)
        return 0;
    uint64_t blocks = (uint64_t)(ne0 / ti->blck);
    if (blocks > SIZE_MAX / ti->size)
        return 0;
    return (size_t)blocks * ti->size;
}

const char *ggml_type_name(enum ggml_type t)
{
    const struct type_info *ti = info(t);
    return ti ? ti->name : NULL;
}

int ggml_type_from_name(const char *name, enum ggml_type *t)
{
    for (int i = 0; i < GGML_TYPE_COUNT; i++) {
        if (types[i].name && !strcasecmp(types[i].name, name)) {
            *t = (enum ggml_type)i;
            return 0;
        }
    }
    return AISLE_ENOTFOUND;
}

int ggml_can_quantize(enum ggml_type t)
{
    return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16 || t == GGML_TYPE_Q8_0 ||
           t == GGML_TYPE_Q4_0;
}

int ggml_can_dequantize(enum ggml_type t)
{
    return ggml_can_quantize(t) || t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q6_K;
}

/* ---- scalar conversions ------------------------------------------------- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t ggml_fp32_to_fp16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    u &= 0x7fffffff;
    if (u > 0x7f800000) /* NaN: keep it a quiet NaN */
        return sign | 0x7e00 | (uint16_t)((u >> 13) & 0x3ff);
    if (u >= 0x477ff000) /* >= 65520 rounds (to even) past the largest half, 65504 */
        return sign | 0x7c00;
    if (u < 0x38800000) {
        /* Below 2^-14 the half is subnormal, with a fixed ulp of 2^-24. Adding
         * 0.5 (whose float ulp is 2^-24) makes the FPU round to that ulp, to
         * nearest even; the low mantissa bits are then the half's bits. */
        float v = bits_f32(u) + 0.5f;
        return sign | (uint16_t)(f32_bits(v) - 0x3f000000u);
    }
    /* Normal: rebias the exponent (127 -> 15) and round away 13 mantissa bits
     * to nearest even; a carry correctly bumps the exponent. */
    uint32_t odd = (u >> 13) & 1;
    u += ((uint32_t)(15 - 127) << 23) + 0xfff + odd;
    return sign | (uint16_t)(u >> 13);
}

float ggml_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f; /* subnormal or zero, exact */
        return sign ? -v : v;
    }
    if (exp == 31)
        return bits_f32(sign | 0x7f800000u | mant << 13);
    return bits_f32(sign | (exp + 112) << 23 | mant << 13);
}

uint16_t ggml_fp32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 64); /* force quiet NaN */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

float ggml_bf16_to_fp32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

static float rd_f16(const uint8_t *p)
{
    return ggml_fp16_to_fp32((uint16_t)(p[0] | p[1] << 8));
}

static void wr_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Float to int for a value expected in [lo, hi]: truncating (ggml's casts);
 * out-of-range and NaN (from inf or NaN inputs) clamp instead of being
 * undefined behaviour. */
static int to_int_clamped(float v, int lo, int hi)
{
    if (!(v > (float)lo))
        return lo;
    if (!(v < (float)hi))
        return hi;
    return (int)v;
}

/* ---- Q8_0 ----------------------------------------------------------------- */

static void quantize_q8_0(const float *x, uint8_t *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += QK8_0, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        wr_u16(y, ggml_fp32_to_fp16(d));
        for (int j = 0; j < QK8_0; j++)
            y[2 + j] = (uint8_t)(int8_t)to_int_clamped(roundf(x[j] * id), -127, 127);
    }
}

static void dequantize_q8_0(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 34, y += QK8_0) {
        const float d = rd_f16(x);
        for (int j = 0; j < QK8_0; j++)
            y[j] = (float)(int8_t)x[2 + j] * d;
    }
}

/* ---- Q4_0 ----------------------------------------------------------------- */

static void quantize_q4_0(const float *x, uint8_t *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += QK4_0, y += 18) {
        /* The value of largest magnitude, with its sign, maps exactly to -8;
         * that uses the asymmetric end of [-8, 7] for the extreme. */
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d ? 1.0f / d : 0.0f;
        wr_u16(y, ggml_fp32_to_fp16(d));
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = to_int_clamped(x[j] * id + 8.5f, 0, 15);
            int q1 = to_int_clamped(x[j + QK4_0 / 2] * id + 8.5f, 0, 15);
            y[2 + j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

static void dequantize_q4_0(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 18, y += QK4_0) {
        const float d = rd_f16(x);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((x[2 + j] & 15) - 8) * d;
            y[j + QK4_0 / 2] = (float)((x[2 + j] >> 4) - 8) * d;
        }
    }
}

/* ---- Q4_K ----------------------------------------------------------------- */

/* The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes. */
static void q4k_scale_min(int j, const uint8_t *s, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

static void dequantize_q4_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 144) {
        const float d = rd_f16(x), dmin = rd_f16(x + 2);
        const uint8_t *scales = x + 4, *q = x + 16;
        for (int c = 0; c < 4; c++, q += 32) {
            int sc, m;
            q4k_scale_min(2 * c, scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            q4k_scale_min(2 * c + 1, scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] & 15) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* ---- Q6_K ----------------------------------------------------------------- */

static void dequantize_q6_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += 210) {
        const float d = rd_f16(x + 208);
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

/* ---- row entry points ----------------------------------------------------- */

int ggml_quantize_row(enum ggml_type t, const float *x, void *vy, int64_t n)
{
    if (!ggml_can_quantize(t) || !ggml_row_size(t, n))
        return AISLE_EINVAL;
    uint8_t *y = vy;
    switch (t) {
    case GGML_TYPE_F32:
        memcpy(y, x, (size_t)n * 4);
        break;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            wr_u16(y + 2 * i, ggml_fp32_to_fp16(x[i]));
        break;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            wr_u16(y + 2 * i, ggml_fp32_to_bf16(x[i]));
        break;
    case GGML_TYPE_Q8_0:
        quantize_q8_0(x, y, n / QK8_0);
        break;
    case GGML_TYPE_Q4_0:
        quantize_q4_0(x, y, n / QK4_0);
        break;
    default:
        return AISLE_EINVAL;
    }
    return 0;
}

int ggml_dequantize_row(enum ggml_type t, const void *vx, float *y, int64_t n)
{
    if (!ggml_can_dequantize(t) || !ggml_row_size(t, n))
        return AISLE_EINVAL;
    const uint8_t *x = vx;
    switch (t) {
    case GGML_TYPE_F32:
        memcpy(y, x, (size_t)n * 4);
        break;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            y[i] = rd_f16(x + 2 * i);
        break;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            y[i] = ggml_bf16_to_fp32((uint16_t)(x[2 * i] | x[2 * i + 1] << 8));
        break;
    case GGML_TYPE_Q8_0:
        dequantize_q8_0(x, y, n / QK8_0);
        break;
    case GGML_TYPE_Q4_0:
        dequantize_q4_0(x, y, n / QK4_0);
        break;
    case GGML_TYPE_Q4_K:
        dequantize_q4_k(x, y, n / QK_K);
        break;
    case GGML_TYPE_Q6_K:
        dequantize_q6_k(x, y, n / QK_K);
        break;
    default:
        return AISLE_EINVAL;
    }
    return 0;
}
