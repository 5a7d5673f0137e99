/*
 * quant_test.c — ggml block formats: type table, half/bfloat conversions
 * against an exhaustive reference, hand-built blocks with known values, and
 * quantize -> dequantize error within each format's stated bound.
 */
#include <criterion/criterion.h>

#include "core/error.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void)
{
    return (float)rnd() / 2147483648.0f - 1.0f;
}
static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

Test(quant, type_table)
{
    cr_assert_eq(ggml_type_size(GGML_TYPE_F32), 4);
    cr_assert_eq(ggml_type_size(GGML_TYPE_F16), 2);
    cr_assert_eq(ggml_type_size(GGML_TYPE_BF16), 2);
    cr_assert_eq(ggml_type_size(GGML_TYPE_Q8_0), 34);
    cr_assert_eq(ggml_type_size(GGML_TYPE_Q4_0), 18);
    cr_assert_eq(ggml_type_size(GGML_TYPE_Q4_K), 144);
    cr_assert_eq(ggml_type_size(GGML_TYPE_Q6_K), 210);
    cr_assert_eq(ggml_blck_size(GGML_TYPE_Q8_0), 32);
    cr_assert_eq(ggml_blck_size(GGML_TYPE_Q6_K), 256);
    cr_assert_eq(ggml_blck_size(GGML_TYPE_F16), 1);
    cr_assert_eq(ggml_type_size((enum ggml_type)4), 0, "retired Q4_2");
    cr_assert_eq(ggml_type_size((enum ggml_type)1000), 0);
    cr_assert_eq(ggml_row_size(GGML_TYPE_Q4_K, 4096), 16 * 144);
    cr_assert_eq(ggml_row_size(GGML_TYPE_Q4_0, 4096), 128 * 18);
    cr_assert_eq(ggml_row_size(GGML_TYPE_F16, 7), 14);
    cr_assert_eq(ggml_row_size(GGML_TYPE_Q8_0, 33), 0, "not a whole number of blocks");
    cr_assert_eq(ggml_row_size(GGML_TYPE_F32, 0), 0);
    cr_assert_eq(ggml_row_size(GGML_TYPE_F32, INT64_MAX), 0, "overflow");
    cr_assert_str_eq(ggml_type_name(GGML_TYPE_Q4_K), "q4_K");
    cr_assert_str_eq(ggml_type_name(GGML_TYPE_BF16), "bf16");
    cr_assert_null(ggml_type_name((enum ggml_type)5));
    enum ggml_type t;
    cr_assert_eq(ggml_type_from_name("Q8_0", &t), 0);
    cr_assert_eq(t, GGML_TYPE_Q8_0);
    cr_assert_eq(ggml_type_from_name("q4_k", &t), 0);
    cr_assert_eq(t, GGML_TYPE_Q4_K);
    cr_assert_eq(ggml_type_from_name("q9_9", &t), AISLE_ENOTFOUND);
    float x[32] = {0};
    uint8_t y[256];
    cr_assert_eq(ggml_quantize_row(GGML_TYPE_Q4_K, x, y, 256), AISLE_EINVAL, "no Q4_K quantizer");
    cr_assert_eq(ggml_quantize_row(GGML_TYPE_Q8_0, x, y, 31), AISLE_EINVAL);
    cr_assert_eq(ggml_dequantize_row(GGML_TYPE_Q5_K, y, x, 256), AISLE_EINVAL);
}

/* Reference: the nearest finite half to x by search over all of them, ties to
 * the even bit pattern; inf when |x| >= 65520 (half of the way to 2^16). */
static float halves[0x7c00]; /* positive finite halves in increasing order */

static uint16_t ref_fp16(float x)
{
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    float a = fabsf(x);
    if (a >= 65520.0f)
        return sign | 0x7c00;
    size_t lo = 0, hi = 0x7bff; /* halves[lo] <= a < halves[hi] or hi = last */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (halves[mid] <= a)
            lo = mid;
        else
            hi = mid;
    }
    double dl = (double)a - halves[lo], dh = (double)halves[hi] - a;
    size_t pick = dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi);
    if (a >= halves[0x7bff])
        pick = 0x7bff;
    return sign | (uint16_t)pick;
}

Test(quant, fp16_matches_exhaustive_reference)
{
    for (uint32_t h = 0; h < 0x7c00; h++)
        halves[h] = ggml_fp16_to_fp32((uint16_t)h);
    for (uint32_t h = 1; h < 0x7c00; h++)
        cr_assert_lt(halves[h - 1], halves[h], "half %u out of order", h);
    cr_assert_eq(halves[0x3c00], 1.0f);
    cr_assert_eq(halves[1], 0x1p-24f);
    cr_assert_eq(halves[0x7bff], 65504.0f);
    /* every half survives half -> float -> half, with sign */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = ggml_fp16_to_fp32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            cr_assert(isnan(f));
            cr_assert(isnan(ggml_fp16_to_fp32(ggml_fp32_to_fp16(f))));
            continue;
        }
        cr_assert_eq(ggml_fp32_to_fp16(f), h, "half 0x%04x", h);
    }
    /* known roundings */
    cr_assert_eq(ggml_fp32_to_fp16(0.1f), 0x2e66);
    cr_assert_eq(ggml_fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00, "tie to even (down)");
    cr_assert_eq(ggml_fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02, "tie to even (up)");
    cr_assert_eq(ggml_fp32_to_fp16(65519.0f), 0x7bff);
    cr_assert_eq(ggml_fp32_to_fp16(65520.0f), 0x7c00);
    cr_assert_eq(ggml_fp32_to_fp16(0x1p-25f), 0x0000, "subnormal tie to even (zero)");
    cr_assert_eq(ggml_fp32_to_fp16(3 * 0x1p-25f), 0x0002, "subnormal tie to even (up)");
    cr_assert_eq(ggml_fp32_to_fp16(-INFINITY), 0xfc00);
    /* random floats of every magnitude against the reference search */
    for (int i = 0; i < 400000; i++) {
        uint32_t u = rnd();
        /* bias the exponent towards the half range [2^-26, 2^17] */
        if (i % 2)
            u = (u & 0x807fffff) | ((uint32_t)(101 + rnd() % 43) << 23);
        float x = bits_f32(u);
        if (isnan(x))
            continue;
        cr_assert_eq(ggml_fp32_to_fp16(x), ref_fp16(x), "x = %a", (double)x);
    }
}

Test(quant, bf16_rounds_to_nearest_even)
{
    cr_assert_eq(ggml_fp32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(ggml_fp32_to_bf16(1.0f + 0x1p-8f), 0x3f80, "tie to even (down)");
    cr_assert_eq(ggml_fp32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82, "tie to even (up)");
    cr_assert_eq(ggml_fp32_to_bf16(-2.0f), 0xc000);
    cr_assert(isnan(ggml_bf16_to_fp32(ggml_fp32_to_bf16(NAN))));
    cr_assert_eq(ggml_bf16_to_fp32(0x4049), 3.140625f);
    for (int i = 0; i < 100000; i++) {
        float x = bits_f32(rnd() & 0xbfffffff); /* exponent < 128: finite */
        uint16_t h = ggml_fp32_to_bf16(x);
        /* reference: the two neighbours by truncation, pick the nearer, tie even */
        uint32_t u;
        memcpy(&u, &x, 4);
        uint16_t lo = (uint16_t)(u >> 16), hi = lo + 1;
        double dl = fabs((double)x - ggml_bf16_to_fp32(lo)), dh = fabs((double)ggml_bf16_to_fp32(hi) - x);
        uint16_t want = dl < dh ? lo : dh < dl ? hi : (lo % 2 ? hi : lo);
        cr_assert_eq(h, want, "x = %a", (double)x);
    }
}

Test(quant, q8_0_known_block)
{
    uint8_t blk[34];
    blk[0] = 0x00, blk[1] = 0x38; /* d = 0.5 */
    for (int j = 0; j < 32; j++)
        blk[2 + j] = (uint8_t)(int8_t)(j * 8 - 128); /* -128, -120, ..., 120 */
    float y[32];
    cr_assert_eq(ggml_dequantize_row(GGML_TYPE_Q8_0, blk, y, 32), 0);
    cr_assert_eq(y[0], -64.0f);
    cr_assert_eq(y[16], 0.0f);
    cr_assert_eq(y[31], 60.0f);
    /* quantize x = j - 16: amax 16, d = 16/127, q = round(x * 127/16) */
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    cr_assert_eq(ggml_quantize_row(GGML_TYPE_Q8_0, x, blk, 32), 0);
    cr_assert_eq(blk[0] | blk[1] << 8, ggml_fp32_to_fp16(16.0f / 127.0f));
    cr_assert_eq((int8_t)blk[2], -127);
    cr_assert_eq((int8_t)blk[2 + 17], 8, "1 * 127/16 = 7.94 -> 8");
    cr_assert_eq((int8_t)blk[2 + 31], 119, "15 * 127/16 = 119.06 -> 119");
}

Test(quant, q4_0_known_block)
{
    uint8_t blk[18];
    blk[0] = 0x00, blk[1] = 0x40; /* d = 2 */
    for (int j = 0; j < 16; j++)
        blk[2 + j] = (uint8_t)(j | (15 - j) << 4);
    float y[32];
    cr_assert_eq(ggml_dequantize_row(GGML_TYPE_Q4_0, blk, y, 32), 0);
    for (int j = 0; j < 16; j++) {
        cr_assert_eq(y[j], (float)((j - 8) * 2), "low nibbles are the first half");
        cr_assert_eq(y[j + 16], (float)((7 - j) * 2), "high nibbles are the second half");
    }
    /* x = (j mod 16 - 8) / 2: the largest magnitude, -4, maps to -8 exactly
     * (d = -4 / -8 = 0.5) and every value is a multiple of d: exact */
    float x[32], back[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j % 16 - 8) * 0.5f;
    cr_assert_eq(ggml_quantize_row(GGML_TYPE_Q4_0, x, blk, 32), 0);
    cr_assert_eq(blk[0] | blk[1] << 8, 0x3800, "d = 0.5");
    cr_assert_eq(blk[2], 0x00, "q = 0 for -4 in both halves");
    cr_assert_eq(ggml_dequantize_row(GGML_TYPE_Q4_0, blk, back, 32), 0);
    cr_assert_eq(memcmp(x, back, sizeof(x)), 0);
}

Test(quant, q4_k_known_block)
{
    /* d = 1, dmin = 0.5; sub-block scales 1,2,3,4,17,18,19,20 and mins
     * 0,1,2,3,36,37,38,39 packed by hand:
     *   s[0..3]  = scale j (6 bits) | high 2 bits of scale j+4 << 6  = 0x41..0x44
     *   s[4..7]  = min j (6 bits)   | high 2 bits of min j+4 << 6    = 0x80..0x83
     *   s[8..11] = low 4 bits of scale j+4 | low 4 bits of min j+4 << 4 */
    static const uint8_t scales[12] = {0x41, 0x42, 0x43, 0x44, 0x80, 0x81, 0x82, 0x83, 0x41, 0x52, 0x63, 0x74};
    static const float sc[8] = {1, 2, 3, 4, 17, 18, 19, 20}, mn[8] = {0, 1, 2, 3, 36, 37, 38, 39};
    uint8_t blk[144];
    blk[0] = 0x00, blk[1] = 0x3c, blk[2] = 0x00, blk[3] = 0x38;
    memcpy(blk + 4, scales, 12);
    for (int i = 0; i < 128; i++)
        blk[16 + i] = (uint8_t)((i & 15) | (15 - (i & 15)) << 4);
    float y[256];
    cr_assert_eq(ggml_dequantize_row(GGML_TYPE_Q4_K, blk, y, 256), 0);
    /* by hand: element 32 is sub-block 1, high nibble of q[0] = 15: 2*15 - 0.5*1 */
    cr_assert_eq(y[0], 0.0f);
    cr_assert_eq(y[32], 29.5f);
    cr_assert_eq(y[200], 133.0f, "sub-block 6, low nibble 8: 19*8 - 0.5*38");
    cr_assert_eq(y[255], -19.5f, "sub-block 7, high nibble 0: -0.5*39");
    for (int e = 0; e < 256; e++) {
        int c = e / 64, w = e % 64, j = 2 * c + (w >= 32), l = w % 32;
        int nib = w < 32 ? (l & 15) : 15 - (l & 15);
        cr_assert_eq(y[e], sc[j] * (float)nib - 0.5f * mn[j], "element %d", e);
    }
}

Test(quant, q6_k_known_block)
{
    /* d = 0.5, scales sc[k] = +-(k+1), 6-bit values q(e) = (e * 7) mod 64, laid
     * out by the documented rule: in half h, element 128h + 32k + l (k < 4,
     * l < 32) keeps its low 4 bits in ql[64h + l + 32*(k%2)] (low nibble for
     * k < 2, high for k >= 2), its high 2 bits in qh[32h + l] bits 2k..2k+1,
     * and uses scale sc[8h + l/16 + 2k]. */
    uint8_t blk[210];
    memset(blk, 0, sizeof(blk));
    int8_t sc[16];
    for (int k = 0; k < 16; k++)
        sc[k] = (int8_t)(k % 2 ? -(k + 1) : k + 1);
    memcpy(blk + 192, sc, 16);
    blk[208] = 0x00, blk[209] = 0x38;
    for (int e = 0; e < 256; e++) {
        int q = (e * 7) % 64, h = e / 128, k = (e % 128) / 32, l = e % 32;
        uint8_t *ql = blk + 64 * h + l + 32 * (k % 2);
        *ql |= (uint8_t)(k < 2 ? (q & 15) : (q & 15) << 4);
        blk[128 + 32 * h + l] |= (uint8_t)((q >> 4) << (2 * k));
    }
    float y[256];
    cr_assert_eq(ggml_dequantize_row(GGML_TYPE_Q6_K, blk, y, 256), 0);
    cr_assert_eq(y[0], 0.5f * 1 * (0 - 32), "q = 0, scale 1");
    cr_assert_eq(y[33], 0.5f * 3 * ((33 * 7) % 64 - 32), "k = 1, l = 1: scale sc[2] = 3");
    cr_assert_eq(y[255], 0.5f * -16 * ((255 * 7) % 64 - 32), "h = 1, k = 3, l = 31: sc[15] = -16");
    for (int e = 0; e < 256; e++) {
        int q = (e * 7) % 64, h = e / 128, k = (e % 128) / 32, l = e % 32;
        cr_assert_eq(y[e], 0.5f * (float)sc[8 * h + l / 16 + 2 * k] * (float)(q - 32), "element %d", e);
    }
}

/*
 * Error bounds, per element, for x quantized and dequantized to y, where
 * amax is the largest |x| in the element's block:
 *
 *  F16   |x - y| <= 2^-11 |x| for |x| in the normal range [2^-14, 65504]:
 *        11 significant bits, round to nearest: half an ulp. Below 2^-14 the
 *        ulp is fixed at 2^-24, so the bound is 2^-11 |x| + 2^-25.
 *  BF16  |x - y| <= 2^-8 |x|: 8 significant bits, half an ulp.
 *  Q8_0  d = amax/127, stored as f16 d' with |d' - d| <= 2^-11 d. q = round(x/d)
 *        is within 1/2 of x/d, and |q| <= 127, so
 *        |x - q d'| <= d/2 + 127 * 2^-11 d  <  0.5621 d.
 *  Q4_0  d = -m/8 for m the signed value of largest magnitude (|d| = amax/8);
 *        q = min(15, trunc(x/d + 8.5)) - 8 rounds x/d to nearest, except that
 *        x/d = +8 (the opposite extreme) clamps to 7: an error of up to 1 |d|.
 *        With the f16 rounding of d (|q| <= 8): |x - y| <= |d| (1 + 8 * 2^-11).
 *
 * Each bound gets 2^-20 amax of slack for float rounding in x * (1/d). The
 * tests also check that the worst observed error reaches a good part of the
 * bound, so a format that rounded too coarsely would fail.
 */
static void check_bound(enum ggml_type t, float scale)
{
    enum { N = 32 * 256 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    for (int i = 0; i < N; i++)
        x[i] = frand() * scale * (i % 97 == 0 ? 4.0f : 1.0f); /* a few outliers */
    cr_assert_eq(ggml_quantize_row(t, x, q, N), 0);
    cr_assert_eq(ggml_dequantize_row(t, q, y, N), 0);
    double worst = 0; /* largest error as a fraction of the bound */
    for (int b = 0; b < N / 32; b++) {
        float amax = 0, m = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[32 * b + j]) > amax)
                amax = fabsf(x[32 * b + j]), m = x[32 * b + j];
        for (int j = 0; j < 32; j++) {
            int i = 32 * b + j;
            double err = fabs((double)x[i] - y[i]), bound;
            switch (t) {
            case GGML_TYPE_F16: bound = 0x1p-11 * fabs(x[i]) + 0x1p-25; break; /* + half a subnormal ulp */
            case GGML_TYPE_BF16: bound = 0x1p-8 * fabs(x[i]); break;
            case GGML_TYPE_Q8_0: bound = (amax / 127.0) * (0.5 + 127 * 0x1p-11); break;
            case GGML_TYPE_Q4_0: bound = fabs(m / 8.0) * (1 + 8 * 0x1p-11); break;
            default: bound = 0; break;
            }
            bound += 0x1p-20 * amax;
            cr_assert_leq(err, bound, "%s element %d: x %g y %g err %g bound %g", ggml_type_name(t), i, (double)x[i],
                          (double)y[i], err, bound);
            if (bound > 0 && err / bound > worst)
                worst = err / bound;
        }
    }
    cr_assert_gt(worst, 0.5, "%s: worst error only %.2f of the bound: the bound is loose or the data trivial",
                 ggml_type_name(t), worst);
}

Test(quant, error_within_bounds)
{
    const enum ggml_type types[] = {GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
    const float scales[] = {1e-2f, 1.0f, 300.0f};
    for (size_t t = 0; t < 4; t++)
        for (size_t s = 0; s < 3; s++)
            check_bound(types[t], scales[s]);
}

Test(quant, non_finite_inputs_do_not_crash)
{
    float x[32];
    uint8_t q[64];
    for (int j = 0; j < 32; j++)
        x[j] = (float)j;
    x[3] = INFINITY;
    x[7] = NAN;
    cr_assert_eq(ggml_quantize_row(GGML_TYPE_Q8_0, x, q, 32), 0);
    cr_assert_eq(ggml_quantize_row(GGML_TYPE_Q4_0, x, q, 32), 0);
    for (int j = 0; j < 32; j++)
        x[j] = 0.0f;
    cr_assert_eq(ggml_quantize_row(GGML_TYPE_Q4_0, x, q, 32), 0);
    float y[32];
    cr_assert_eq(ggml_dequantize_row(GGML_TYPE_Q4_0, q, y, 32), 0);
    for (int j = 0; j < 32; j++)
        cr_assert_eq(y[j], 0.0f, "an all-zero block stays zero");
}
