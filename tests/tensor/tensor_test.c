/* tensor_test.c — thread pool, matrix products and the small kernels against
 * plain reference loops, on every kernel path this CPU can run.
 *
 * Tolerances (u = 2^-24, the float unit roundoff):
 *  - float activations (F32/F16/BF16 weights): the fast and the reference
 *    paths see the same weights exactly (F16/BF16 widen exactly), so the only
 *    difference is float summation, bounded by K*u*sum|x||w| for any order of
 *    summation; we allow 2*K*u*S (S = sum |x_i w_i|).
 *  - quantized weights (Q8_0/Q4_0/Q4_K/Q6_K): the activations are rounded to
 *    8 bits per block of 32, x_i = d_b q_i + e_i with |e_i| <= d_b/2 =
 *    amax_b/254, so the product moves by at most
 *    E = sum_b amax_b/254 * sum_{i in b} |w_i|; we allow E + 4*K*u*S (the
 *    float part also covers the per-block scale products).
 */
#include <criterion/criterion.h>

#include "core/error.h"
#include "gguf/quant.h"
#include "tensor/tensor.h"
#include "tensor/tensor_impl.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* uniform in [-1, 1) */
static float frand(void)
{
    return (float)((double)rnd() / 2147483648.0 - 1.0);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* N random rows of type t: random bits for the quants and the packed scales
 * (every code point, including Q8_0's -128), sane positive f16 scales. */
static void *random_weights(enum ggml_type t, int K, int N)
{
    size_t row = ggml_row_size(t, K), total = row * N;
    uint8_t *w = malloc(total + 1);
    cr_assert_not_null(w);
    for (size_t i = 0; i < total; i++)
        w[i] = (uint8_t)rnd();
    for (int n = 0; n < N; n++) {
        uint8_t *r = w + n * row;
        switch (t) {
        case GGML_TYPE_F32:
            for (int i = 0; i < K; i++) {
                float f = frand();
                memcpy(r + 4 * i, &f, 4);
            }
            break;
        case GGML_TYPE_F16:
            for (int i = 0; i < K; i++)
                put16(r + 2 * i, ggml_fp32_to_fp16(frand()));
            break;
        case GGML_TYPE_BF16:
            for (int i = 0; i < K; i++)
                put16(r + 2 * i, ggml_fp32_to_bf16(frand()));
            break;
        case GGML_TYPE_Q8_0:
            for (int b = 0; b < K / 32; b++)
                put16(r + 34 * b, ggml_fp32_to_fp16(0.001f + 0.01f * (frand() + 1)));
            break;
        case GGML_TYPE_Q4_0:
            for (int b = 0; b < K / 32; b++)
                put16(r + 18 * b, ggml_fp32_to_fp16(0.01f + 0.1f * (frand() + 1)));
            break;
        case GGML_TYPE_Q4_K:
            for (int b = 0; b < K / 256; b++) {
                put16(r + 144 * b, ggml_fp32_to_fp16(0.001f + 0.002f * (frand() + 1)));
                put16(r + 144 * b + 2, ggml_fp32_to_fp16(0.001f + 0.002f * (frand() + 1)));
            }
            break;
        case GGML_TYPE_Q6_K:
            for (int b = 0; b < K / 256; b++)
                put16(r + 210 * b + 208, ggml_fp32_to_fp16(0.0005f + 0.001f * (frand() + 1)));
            break;
        default: cr_assert_fail("type");
        }
    }
    return w;
}

static int is_quant(enum ggml_type t)
{
    return t == GGML_TYPE_Q8_0 || t == GGML_TYPE_Q4_0 || t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q6_K;
}

/* Check tensor_matmul against tensor_matmul_ref with the bound from the top comment. */
/* x as the quantized kernels see it: per 32-block d = amax/127, q = round(x/d). */
static void requantize(const float *x, float *xq, int n)
{
    for (int b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++)
            amax = fmaxf(amax, fabsf(x[32 * b + i]));
        float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
        for (int i = 0; i < 32; i++)
            xq[32 * b + i] = d * nearbyintf(x[32 * b + i] * id);
    }
}

/* Check tensor_matmul against tensor_matmul_ref with the bound from the top
 * comment; with `intdot` (the quantized row-dot path is the one taken) also
 * against the reference on the re-quantized activations, where only float
 * rounding may differ (4*K*u*S): this catches errors far below E. */
static void check_matmul_x(struct tpool *p, enum ggml_type t, int T, int K, int N, int intdot)
{
    float *x = malloc(sizeof(float) * T * K), *out = malloc(sizeof(float) * T * N),
          *ref = malloc(sizeof(float) * T * N), *wrow = malloc(sizeof(float) * K);
    for (int i = 0; i < T * K; i++)
        x[i] = frand() * (i % 7 == 0 ? 4.0f : 1.0f);
    void *w = random_weights(t, K, N);
    for (int i = 0; i < T * N; i++)
        out[i] = NAN;
    cr_assert_eq(tensor_matmul(p, out, x, w, t, T, K, N), 0);
    cr_assert_eq(tensor_matmul_ref(ref, x, w, t, T, K, N), 0);
    float *xq = malloc(sizeof(float) * T * K), *refq = malloc(sizeof(float) * T * N);
    requantize(x, xq, T * K);
    cr_assert_eq(tensor_matmul_ref(refq, xq, w, t, T, K, N), 0);
    const double u = 1.0 / (1 << 24);
    size_t row = ggml_row_size(t, K);
    for (int n = 0; n < N; n++) {
        cr_assert_eq(ggml_dequantize_row(t, (uint8_t *)w + n * row, wrow, K), 0);
        for (int tt = 0; tt < T; tt++) {
            const float *xr = x + (size_t)tt * K;
            double S = 0, E = 0;
            for (int b = 0; b < K / 32; b++) {
                double amax = 0, sw = 0;
                for (int i = 32 * b; i < 32 * b + 32; i++) {
                    S += fabs((double)xr[i] * wrow[i]);
                    amax = fmax(amax, fabs(xr[i]));
                    sw += fabs(wrow[i]);
                }
                E += amax / 254.0 * sw;
            }
            double tol = is_quant(t) ? E + 4.0 * K * u * S : 2.0 * K * u * S;
            double got = out[(size_t)tt * N + n], want = ref[(size_t)tt * N + n];
            cr_assert(fabs(got - want) <= tol, "%s path %s T=%d K=%d N=%d [%d,%d]: got %.9g want %.9g tol %.3g",
                      ggml_type_name(t), tensor_path_name(tensor_path()), T, K, N, tt, n, got, want, tol);
            if (is_quant(t) && intdot) {
                double wq = refq[(size_t)tt * N + n], tq = 4.0 * K * u * (S + E);
                cr_assert(fabs(got - wq) <= tq, "%s path %s T=%d K=%d N=%d [%d,%d]: got %.9g, on quantized x %.9g tol %.3g",
                          ggml_type_name(t), tensor_path_name(tensor_path()), T, K, N, tt, n, got, wq, tq);
            }
        }
    }
    free(x), free(out), free(ref), free(wrow), free(w), free(xq), free(refq);
}

static void check_matmul(struct tpool *p, enum ggml_type t, int T, int K, int N)
{
    check_matmul_x(p, t, T, K, N, 0);
}

static const enum ggml_type all_types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0,
                                           GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};

/* Paths to test: those this CPU can run. The AVX-512 path is opt-in
 * (AISLE_TEST_AVX512=1 on a CPU that has it) until it has been verified on
 * one; it is not chosen automatically either (cpu.c). */
static int paths(enum tensor_path *out)
{
    int n = 0;
    out[n++] = TENSOR_PATH_SCALAR;
    if (tensor_cpu_has_avx2())
        out[n++] = TENSOR_PATH_AVX2;
    if (tensor_cpu_has_avx512() && getenv("AISLE_TEST_AVX512"))
        out[n++] = TENSOR_PATH_AVX512;
    return n;
}

Test(tensor_matmul, every_type_path_and_odd_shape)
{
    struct tpool *p = tpool_new(3);
    cr_assert_not_null(p);
    enum tensor_path ps[3];
    int np = paths(ps);
    int prev_b = tensor_set_blas_min_t(0), prev_d = tensor_set_deq_min_t(0);
    for (int pi = 0; pi < np; pi++) {
        cr_assert_eq(tensor_set_path(ps[pi]), 0);
        for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
            enum ggml_type t = all_types[ti];
            int kb = ggml_blck_size(t) == 256 ? 256 : 32;
            static const int shapes[][3] = {{1, 1, 1}, {1, 2, 37}, {2, 16, 33}, {3, 3, 5}, {5, 8, 67}, {6, 9, 17}, {7, 24, 129}, {1, 64, 300}, {9, 40, 13}, {16, 8, 70}};
            for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
                int T = shapes[si][0], K = kb * shapes[si][1], N = shapes[si][2];
                if (K > 4096)
                    K = kb * (4096 / kb);
                /* Q8_0/Q4_0 at T >= 2: the integer tiles (default), then the
                 * row dots they replaced, which stay the T = 1 path */
                for (int tiles = 1; tiles >= 0; tiles--) {
                    tensor_set_tile(0, 0, tiles ? 2 : 0);
                    check_matmul_x(p, t, T, K, N, 1);
                    check_matmul_x(NULL, t, T, K, N, 1);
                }
            }
        }
    }
    tensor_set_path(TENSOR_PATH_AUTO);
    tensor_set_blas_min_t(prev_b);
    tensor_set_deq_min_t(prev_d);
    tensor_set_tile(0, 0, 2);
    tpool_free(p);
}

/* Every tile shape the kernels have (rows 1..4 x activation rows 1..4, as
 * the bench compares them), with row and token tails, integer and float. */
Test(tensor_matmul, every_tile_shape)
{
    if (!tensor_cpu_has_avx2())
        return;
    struct tpool *p = tpool_new(2);
    cr_assert_not_null(p);
    cr_assert_eq(tensor_set_path(TENSOR_PATH_AVX2), 0);
    for (int r = 1; r <= 4; r++)
        for (int c = 1; c <= 4; c++) {
            tensor_set_tile(r, c, 2);
            check_matmul_x(p, GGML_TYPE_Q8_0, 11, 32 * 9, 23, 1);
            check_matmul_x(p, GGML_TYPE_Q4_0, 11, 32 * 17, 23, 1);
            /* float tiles: K not a multiple of 8 exercises the scalar tail */
            check_matmul_x(p, GGML_TYPE_F32, 11, 8 * 37 + 5, 23, 1);
            check_matmul_x(p, GGML_TYPE_F16, 11, 8 * 37 + 5, 23, 1);
            check_matmul_x(p, GGML_TYPE_BF16, 6, 8 * 9 + 3, 13, 1);
        }
    tensor_set_tile(0, 0, 2); /* the defaults */
    tensor_set_path(TENSOR_PATH_AUTO);
    tpool_free(p);
}

Test(tensor_matmul, sgemm_paths)
{
    struct tpool *p = tpool_new(2);
    int prev_b = tensor_set_blas_min_t(1), prev_d = tensor_set_deq_min_t(1);
    for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
        enum ggml_type t = all_types[ti];
        int kb = ggml_blck_size(t) == 256 ? 256 : 32;
        check_matmul(p, t, 1, kb * 3, 131);
        check_matmul(p, t, 33, kb * 2, 77);
        check_matmul(NULL, t, 9, kb, 200);
    }
    tensor_set_blas_min_t(prev_b);
    tensor_set_deq_min_t(prev_d);
    tpool_free(p);
}

Test(tensor_matmul, rejects_bad_arguments)
{
    float x[64] = {0}, out[64];
    uint8_t w[256] = {0};
    cr_assert_eq(tensor_matmul(NULL, out, x, w, GGML_TYPE_Q8_0, 1, 33, 1), AISLE_EINVAL);
    cr_assert_eq(tensor_matmul(NULL, out, x, w, GGML_TYPE_Q4_K, 1, 32, 1), AISLE_EINVAL);
    cr_assert_eq(tensor_matmul(NULL, out, x, w, GGML_TYPE_Q5_0, 1, 32, 1), AISLE_EINVAL);
    cr_assert_eq(tensor_matmul(NULL, out, x, w, GGML_TYPE_F32, 0, 4, 1), AISLE_EINVAL);
    cr_assert_eq(tensor_matmul_ref(out, x, w, GGML_TYPE_Q5_0, 1, 32, 1), AISLE_EINVAL);
}

/* ---- thread pool ---- */

struct count_ctx {
    atomic_int hits[64];
    atomic_int calls;
    int nth_seen;
};

static void count_fn(void *ctx, int ith, int nth)
{
    struct count_ctx *c = ctx;
    atomic_fetch_add(&c->hits[ith], 1);
    atomic_fetch_add(&c->calls, 1);
    c->nth_seen = nth;
}

Test(tpool, every_index_exactly_once)
{
    static const int sizes[] = {1, 2, 3, 8};
    for (size_t s = 0; s < 4; s++) {
        struct tpool *p = tpool_new(sizes[s]);
        cr_assert_not_null(p);
        cr_assert_eq(tpool_nthreads(p), sizes[s]);
        for (int round = 0; round < 2000; round++) {
            struct count_ctx c;
            memset(&c, 0, sizeof(c));
            tpool_run(p, count_fn, &c);
            cr_assert_eq(atomic_load(&c.calls), sizes[s]);
            cr_assert_eq(c.nth_seen, sizes[s]);
            for (int i = 0; i < sizes[s]; i++)
                cr_assert_eq(atomic_load(&c.hits[i]), 1, "thread %d of %d ran %d times", i, sizes[s],
                             atomic_load(&c.hits[i]));
            if (round % 500 == 499)
                usleep(200000); /* let workers fall asleep on the futex, then wake them */
        }
        tpool_free(p);
    }
    tpool_free(NULL);
    struct count_ctx c;
    memset(&c, 0, sizeof(c));
    tpool_run(NULL, count_fn, &c);
    cr_assert_eq(atomic_load(&c.calls), 1);
}

Test(tpool, default_size_is_cpu_count)
{
    struct tpool *p = tpool_new(0);
    cr_assert_eq(tpool_nthreads(p), (int)sysconf(_SC_NPROCESSORS_ONLN));
    tpool_free(p);
}

/* ---- small kernels ---- */

Test(nn, rmsnorm_matches_formula)
{
    enum { T = 3, C = 37 };
    float x[T * C], wt[C], out[T * C];
    for (int i = 0; i < T * C; i++)
        x[i] = frand() * 3;
    for (int i = 0; i < C; i++)
        wt[i] = frand();
    nn_rmsnorm_forward(out, x, wt, T, C, 1e-5f);
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < C; i++)
            ss += (double)x[t * C + i] * x[t * C + i];
        double r = 1.0 / sqrt(ss / C + 1e-5);
        /* three float roundings per element (scale, two products): 4 ulps */
        for (int i = 0; i < C; i++) {
            double want = x[t * C + i] * r * wt[i];
            cr_assert(fabs(out[t * C + i] - want) <= 4.0 / (1 << 24) * fabs(want) + 1e-30);
        }
    }
    nn_rmsnorm_forward(x, x, wt, T, C, 1e-5f); /* in place gives the same */
    cr_assert(memcmp(x, out, sizeof(out)) == 0);
}

static void check_rope(int T, int NH, int HD, const int *pos)
{
    float *x = malloc(sizeof(float) * T * NH * HD), *y = malloc(sizeof(float) * T * NH * HD);
    for (int i = 0; i < T * NH * HD; i++)
        x[i] = y[i] = frand();
    nn_rope_forward(y, pos, T, NH, HD, 10000.0f);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < HD / 2; i++) {
                /* (a + ib) e^{i theta}, theta = pos * base^(-2i/HD), computed independently via exp/log */
                double theta = pos[t] * exp(-2.0 * i / HD * log(10000.0));
                const float *v = x + (t * NH + h) * HD + 2 * i;
                double re = v[0] * cos(theta) - v[1] * sin(theta), im = v[0] * sin(theta) + v[1] * cos(theta);
                const float *g = y + (t * NH + h) * HD + 2 * i;
                /* |v| <= 1.5; cos/sin rounded to float and 2 products + 1 sum: ~4 ulp of 1.5 */
                cr_assert(fabs(g[0] - re) < 1e-6 && fabs(g[1] - im) < 1e-6, "HD=%d t=%d h=%d i=%d", HD, t, h, i);
            }
    if (pos[0] == 0)
        cr_assert(memcmp(x, y, sizeof(float) * NH * HD) == 0, "position 0 is the identity");
    free(x), free(y);
}

/* Scaled RoPE against ggml_rope_ext's arithmetic written out (no YaRN:
 * theta = freq_scale * pos * base^(-2i/HD) / ff[i], cos/sin unscaled), with
 * the frequency factors Llama 3.1's rope_freqs holds (factor 8, low/high
 * frequency factors 1 and 4, original context 8192: long wavelengths divided
 * by 8, short ones kept, a smooth blend between) and a linear factor. */
static void check_rope_ext(int HD, float base, float scale, int llama31)
{
    enum { T = 3, NHH = 2 };
    int pos[T] = {0, 7, 130000};
    float *x = malloc(sizeof(float) * T * NHH * HD), *y = malloc(sizeof(float) * T * NHH * HD);
    float *ff = malloc(sizeof(float) * HD / 2);
    for (int i = 0; i < HD / 2; i++) {
        double freq = exp(-2.0 * i / HD * log(base)), wavelen = 2 * M_PI / freq;
        double lo_wl = 8192.0 / 1.0, hi_wl = 8192.0 / 4.0;
        if (wavelen < hi_wl)
            ff[i] = 1.0f;
        else if (wavelen > lo_wl)
            ff[i] = 8.0f;
        else {
            double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
            ff[i] = (float)(1.0 / ((1 - smooth) / 8.0 + smooth));
        }
    }
    for (int i = 0; i < T * NHH * HD; i++)
        x[i] = y[i] = frand();
    nn_rope_forward_ext(y, pos, T, NHH, HD, base, scale, llama31 ? ff : NULL);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NHH; h++)
            for (int i = 0; i < HD / 2; i++) {
                double theta = scale * (double)pos[t] * exp(-2.0 * i / HD * log(base)) / (llama31 ? ff[i] : 1.0);
                const float *v = x + (t * NHH + h) * HD + 2 * i, *g = y + (t * NHH + h) * HD + 2 * i;
                double re = v[0] * cos(theta) - v[1] * sin(theta), im = v[0] * sin(theta) + v[1] * cos(theta);
                /* as check_rope, plus the angle: at pos 130000 theta ~ 1.3e5 carries a
                 * double rounding error ~1e-11, far below float */
                cr_assert(fabs(g[0] - re) < 1e-6 && fabs(g[1] - im) < 1e-6, "HD=%d scale=%g ff=%d t=%d i=%d", HD,
                          (double)scale, llama31, t, i);
            }
    /* scale 1 and no factors is the plain rope, bit for bit */
    float *z = malloc(sizeof(float) * T * NHH * HD);
    memcpy(y, x, sizeof(float) * T * NHH * HD);
    memcpy(z, x, sizeof(float) * T * NHH * HD);
    nn_rope_forward_ext(y, pos, T, NHH, HD, base, 1.0f, NULL);
    nn_rope_forward(z, pos, T, NHH, HD, base);
    cr_assert(memcmp(y, z, sizeof(float) * T * NHH * HD) == 0);
    free(x), free(y), free(z), free(ff);
}

Test(nn, rope_scaling_matches_ggml_formula)
{
    check_rope_ext(128, 500000.0f, 1.0f, 1); /* Llama 3.1 */
    check_rope_ext(64, 10000.0f, 0.25f, 0);  /* linear, factor 4 */
    check_rope_ext(64, 10000.0f, 0.5f, 1);   /* both */
}

Test(nn, rope_matches_direct_formula)
{
    int pos[4] = {0, 1, 17, 4095};
    check_rope(4, 3, 16, pos);
    check_rope(2, 1, 520, pos); /* past the kernel's 256-entry frequency table */
}

Test(nn, softmax_swiglu_exp_every_path)
{
    enum tensor_path ps[3];
    int np = paths(ps);
    for (int pi = 0; pi < np; pi++) {
        cr_assert_eq(tensor_set_path(ps[pi]), 0);
        const char *pn = tensor_path_name(ps[pi]);
        float x[19], y[19], g[37], u[37], o[37];
        for (int i = 0; i < 19; i++)
            x[i] = y[i] = frand() * 50 + (i == 3 ? 1000.0f : 0.0f); /* large values: max subtraction needed */
        nn_softmax_forward(y, 19);
        double m = -INFINITY, sum = 0;
        for (int i = 0; i < 19; i++)
            m = fmax(m, x[i]);
        for (int i = 0; i < 19; i++)
            sum += exp(x[i] - m);
        for (int i = 0; i < 19; i++)
            cr_assert(fabs(y[i] - exp(x[i] - m) / sum) <= 1e-6 * (exp(x[i] - m) / sum) + 1e-30, "%s softmax[%d]",
                      pn, i);
        for (int i = 0; i < 37; i++) {
            g[i] = frand() * 10 + (i == 5 ? 95.0f : 0.0f) - (i == 6 ? 95.0f : 0.0f); /* beyond the exp clamp */
            u[i] = frand();
        }
        nn_swiglu_forward(o, g, u, 37);
        for (int i = 0; i < 37; i++) {
            double want = g[i] / (1 + exp(-(double)g[i])) * u[i];
            cr_assert(fabs(o[i] - want) <= 1e-6 * fabs(want) + 1e-30, "%s swiglu[%d] %g vs %g", pn, i, o[i], want);
        }
        /* exp over its whole range, including the tails of the clamp */
        enum { NE = 203 };
        float e[NE], e0[NE];
        double esum = 0;
        for (int i = 0; i < NE; i++)
            e[i] = e0[i] = -100.0f + 188.0f * i / (NE - 1) + frand() * 0.1f;
        float got = nn_exp_sum(e, 0.5f, NE);
        for (int i = 0; i < NE; i++) {
            double want = exp((double)(e0[i] - 0.5f)); /* the kernels subtract in float */
            esum += want;
            if (e0[i] - 0.5f >= -87.0f && e0[i] - 0.5f <= 88.0f)
                cr_assert(fabs(e[i] - want) <= 1e-6 * want, "%s exp(%.6g) = %.9g, want %.9g", pn, e0[i] - 0.5, e[i],
                          want);
            else if (e0[i] - 0.5f < -87.0f)
                cr_assert(e[i] >= 0 && e[i] <= 2e-38, "%s exp(%.6g) = %g", pn, e0[i] - 0.5, e[i]);
        }
        cr_assert(isfinite(got) && fabs(got - esum) <= 1e-5 * esum, "%s sum %g vs %g", pn, got, esum);
    }
    tensor_set_path(TENSOR_PATH_AUTO);
}

Test(nn, dot_axpy_f16_every_path)
{
    enum { N = 203 };
    float a[N], b[N], y[N], y0[N], bf[N];
    uint16_t h[N], h2[N];
    for (int i = 0; i < N; i++) {
        a[i] = frand(), b[i] = frand(), y0[i] = frand();
        h[i] = ggml_fp32_to_fp16(b[i]);
        bf[i] = ggml_fp16_to_fp32(h[i]);
    }
    double S = 0, d = 0, dh = 0;
    for (int i = 0; i < N; i++) {
        S += fabs(a[i] * b[i]);
        d += (double)a[i] * b[i];
        dh += (double)a[i] * bf[i];
    }
    const double u = 1.0 / (1 << 24);
    enum tensor_path ps[3];
    int np = paths(ps);
    for (int pi = 0; pi < np; pi++) {
        cr_assert_eq(tensor_set_path(ps[pi]), 0);
        cr_assert_eq(tensor_path(), ps[pi]);
        /* any summation order: N*u*S */
        cr_assert(fabs(nn_dot_f32(a, b, N) - d) <= N * u * S, "%s", tensor_path_name(ps[pi]));
        cr_assert(fabs(nn_dot_f16(a, h, N) - dh) <= N * u * S * 1.01, "%s", tensor_path_name(ps[pi]));
        memcpy(y, y0, sizeof(y));
        nn_axpy_f32(y, 0.37f, a, N);
        for (int i = 0; i < N; i++) /* one fma or a product and a sum: 2 ulps of the terms */
            cr_assert(fabs(y[i] - (y0[i] + 0.37 * a[i])) <= 2 * u * (fabs(y0[i]) + fabs(0.37 * a[i])));
        memcpy(y, y0, sizeof(y));
        nn_axpy_f16(y, -1.5f, h, N);
        for (int i = 0; i < N; i++)
            cr_assert(fabs(y[i] - (y0[i] - 1.5 * bf[i])) <= 2 * u * (fabs(y0[i]) + fabs(1.5 * bf[i])));
        /* conversions are exact roundings: identical to the scalar reference */
        nn_f32_to_f16(h2, b, N);
        cr_assert(memcmp(h2, h, sizeof(h)) == 0, "%s", tensor_path_name(ps[pi]));
        float back[N];
        nn_f16_to_f32(back, h, N);
        cr_assert(memcmp(back, bf, sizeof(bf)) == 0);
    }
    tensor_set_path(TENSOR_PATH_AUTO);
    cr_assert_eq(tensor_set_path(TENSOR_PATH_AVX512), tensor_cpu_has_avx512() ? 0 : AISLE_EINVAL);
    tensor_set_path(TENSOR_PATH_AUTO);
}

Test(tensor_matmul, multi_equals_separate_calls)
{
    struct tpool *p = tpool_new(2);
    enum { T = 5, K = 256 };
    static const enum ggml_type wt[4] = {GGML_TYPE_Q8_0, GGML_TYPE_F16, GGML_TYPE_Q4_K, GGML_TYPE_Q4_0};
    static const int N[4] = {67, 13, 130, 1};
    float x[T * K], *outs[4], *sep[4];
    const void *ws[4];
    for (int i = 0; i < T * K; i++)
        x[i] = frand();
    for (int i = 0; i < 4; i++) {
        ws[i] = random_weights(wt[i], K, N[i]);
        outs[i] = malloc(sizeof(float) * T * N[i]);
        sep[i] = malloc(sizeof(float) * T * N[i]);
        cr_assert_eq(tensor_matmul(p, sep[i], x, ws[i], wt[i], T, K, N[i]), 0);
    }
    cr_assert_eq(tensor_matmul_multi(p, 4, outs, x, ws, wt, N, T, K), 0);
    for (int i = 0; i < 4; i++) /* same kernels on the same data: identical bits */
        cr_assert(memcmp(outs[i], sep[i], sizeof(float) * T * N[i]) == 0, "part %d", i);
    cr_assert_eq(tensor_matmul_multi(p, 0, outs, x, ws, wt, N, T, K), AISLE_EINVAL);
    cr_assert_eq(tensor_matmul_multi(p, 5, outs, x, ws, wt, N, T, K), AISLE_EINVAL);
    for (int i = 0; i < 4; i++) {
        free((void *)ws[i]);
        free(outs[i]);
        free(sep[i]);
    }
    tpool_free(p);
}

Test(tensor_matmul, sgemm_tiles_widen_exactly)
{
    enum { K = 512, N = 3 };
    float *a = malloc(sizeof(float) * K), *b = malloc(sizeof(float) * K);
    enum tensor_path ps[3];
    int np = paths(ps);
    for (int pi = 0; pi < np; pi++) {
        cr_assert_eq(tensor_set_path(ps[pi]), 0);
        for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
            void *w = random_weights(all_types[ti], K, N);
            size_t row = ggml_row_size(all_types[ti], K);
            for (int n = 0; n < N; n++) {
                cr_assert_eq(ggml_dequantize_row(all_types[ti], (uint8_t *)w + n * row, a, K), 0);
                tensor_kernels()->dequant_row(all_types[ti], (uint8_t *)w + n * row, b, K);
                cr_assert(memcmp(a, b, sizeof(float) * K) == 0, "%s on %s", ggml_type_name(all_types[ti]),
                          tensor_path_name(ps[pi]));
            }
            free(w);
        }
    }
    tensor_set_path(TENSOR_PATH_AUTO);
    free(a), free(b);
}

/* Each Criterion test runs in a fresh process, so the path is chosen here
 * for the first time and AISLE_TENSOR_PATH must decide it. */
Test(tensor_path, env_var_forces_scalar)
{
    setenv("AISLE_TENSOR_PATH", "scalar", 1);
    cr_assert_eq(tensor_path(), TENSOR_PATH_SCALAR);
    cr_assert_str_eq(tensor_path_name(tensor_path()), "scalar");
    cr_assert_eq(tensor_set_path(TENSOR_PATH_AUTO), 0);
    cr_assert_eq(tensor_path(), tensor_cpu_has_avx2() ? TENSOR_PATH_AVX2 : TENSOR_PATH_SCALAR,
                 "automatic choice stops at AVX2 until AVX-512 is verified");
}

/* tpool_run_dynamic: work shared through a counter is done exactly once
 * whether or not the workers make it in time; the caller always runs, no
 * thread index runs twice. With 8 threads on this 2-core machine most
 * workers arrive late and are skipped. */
struct items_ctx {
    atomic_int next;
    atomic_int done[257];
    atomic_int ran[64];
    int n;
};

static void items_fn(void *ctx, int ith, int nth)
{
    struct items_ctx *c = ctx;
    cr_assert(ith >= 0 && ith < nth);
    atomic_fetch_add(&c->ran[ith], 1);
    int i;
    while ((i = atomic_fetch_add(&c->next, 1)) < c->n)
        atomic_fetch_add(&c->done[i], 1);
}

Test(tpool, dynamic_does_every_item_once)
{
    static const int sizes[] = {1, 2, 3, 8};
    for (size_t s = 0; s < 4; s++) {
        struct tpool *p = tpool_new(sizes[s]);
        for (int round = 0; round < 3000; round++) {
            struct items_ctx c;
            memset(&c, 0, sizeof(c));
            c.n = 1 + round % 257;
            tpool_run_dynamic(p, items_fn, &c);
            for (int i = 0; i < c.n; i++)
                cr_assert_eq(atomic_load(&c.done[i]), 1, "item %d of %d done %d times", i, c.n, atomic_load(&c.done[i]));
            cr_assert_eq(atomic_load(&c.ran[0]), 1, "the caller runs");
            for (int t = 1; t < sizes[s]; t++)
                cr_assert_leq(atomic_load(&c.ran[t]), 1);
            if (round % 1000 == 999)
                usleep(100000);
            if (round % 3 == 0) { /* interleave the static kind on the same pool */
                struct count_ctx cc;
                memset(&cc, 0, sizeof(cc));
                tpool_run(p, count_fn, &cc);
                cr_assert_eq(atomic_load(&cc.calls), sizes[s]);
            }
        }
        tpool_free(p);
    }
}

/* tensor_matmul without a pool from inside pool jobs (as the model's
 * attention does): each thread uses its own scratch, results match the
 * reference, and the pool's end frees them (ASan checks for leaks). */
struct inner_ctx {
    const float *x;
    const void *w;
    float *out[3]; /* per thread */
    atomic_int fails;
};

static void inner_fn(void *ctx, int ith, int nth)
{
    struct inner_ctx *c = ctx;
    (void)nth;
    if (tensor_matmul(NULL, c->out[ith], c->x, c->w, GGML_TYPE_Q8_0, 3, 64, 29) != 0)
        atomic_fetch_add(&c->fails, 1);
}

Test(tensor_matmul, no_pool_inside_pool_jobs)
{
    float x[3 * 64], ref[3 * 29], outs[3][3 * 29];
    for (int i = 0; i < 3 * 64; i++)
        x[i] = frand();
    void *w = random_weights(GGML_TYPE_Q8_0, 64, 29);
    cr_assert_eq(tensor_matmul(NULL, ref, x, w, GGML_TYPE_Q8_0, 3, 64, 29), 0);
    struct tpool *p = tpool_new(3);
    for (int round = 0; round < 50; round++) {
        struct inner_ctx c = {.x = x, .w = w, .out = {outs[0], outs[1], outs[2]}};
        atomic_init(&c.fails, 0);
        tpool_run(p, inner_fn, &c);
        cr_assert_eq(atomic_load(&c.fails), 0);
        for (int t = 0; t < 3; t++) /* same kernels, same data: identical bits */
            cr_assert(memcmp(outs[t], ref, sizeof(ref)) == 0, "thread %d", t);
    }
    tpool_free(p);
    free(w);
}
