/*
 * bench/kernels.c — the tensor kernels against the memory roofline and
 * against baselines measured in the same run.
 *
 * Design: memory bandwidth is measured first (a streaming read of a buffer
 * far larger than the last-level cache, 1 and 2 threads); then each
 * matrix-vector product of the 110M Llama shapes is timed over a ring of
 * copies of the matrix that together exceed the cache, as in a real decode
 * where every weight comes from DRAM once per token, and reported as GB/s of
 * weight bytes and as a fraction of the measured bandwidth, next to the
 * portable scalar path. Matrix-matrix products are reported in GFLOP/s next
 * to the same work done as one matrix-vector call per row; the sgemm
 * crossovers and the pool's dispatch cost close the run. Times are the best
 * of several repetitions (the machine is shared; the best is the least
 * disturbed).
 *
 * Output: `name value unit` lines on stdout; `#` lines are context.
 * Usage: kernels [--threads N] [--quick] [--tiles]   (--tiles: only the
 * integer matrix-matrix tile comparison, about 20 s)
 */
#include "core/error.h"
#include "gguf/quant.h"
#include "tensor/tensor.h"
#include "tensor/tensor_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING_BYTES ((size_t)256 << 20) /* 8x the 32 MiB L3 of the reference machine */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "bench/kernels: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 40) / (double)(1 << 23) - 1.0);
}

/* ---- bandwidth ---- */

struct stream_ctx {
    const uint64_t *buf;
    size_t n; /* words */
    uint64_t sink[64];
};

static void stream_fn(void *ctx, int ith, int nth)
{
    struct stream_ctx *c = ctx;
    size_t per = c->n / nth, a = per * ith, b = ith == nth - 1 ? c->n : a + per;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (size_t i = a; i + 8 <= b; i += 8) {
        s0 += c->buf[i], s1 += c->buf[i + 1], s2 += c->buf[i + 2], s3 += c->buf[i + 3];
        s4 += c->buf[i + 4], s5 += c->buf[i + 5], s6 += c->buf[i + 6], s7 += c->buf[i + 7];
    }
    c->sink[ith] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

static double bandwidth(struct tpool *p, const uint64_t *buf, size_t bytes, int reps)
{
    struct stream_ctx c = {.buf = buf, .n = bytes / 8};
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        tpool_run(p, stream_fn, &c);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    return bytes / best / 1e9;
}

/* ---- helpers ---- */

/* A ring of copies of one random N x K matrix of type t, at least RING_BYTES. */
struct ring {
    uint8_t *data;
    size_t mat_bytes;
    int count;
};

static void ring_make(struct ring *r, enum ggml_type t, int K, int N, size_t min_bytes)
{
    size_t row = ggml_row_size(t, K);
    r->mat_bytes = (row * N + 63) & ~(size_t)63;
    r->count = (int)((min_bytes + r->mat_bytes - 1) / r->mat_bytes);
    if (r->count < 1)
        r->count = 1;
    r->data = xmalloc(r->mat_bytes * r->count);
    float *tmp = xmalloc(sizeof(float) * K);
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++)
            tmp[k] = frand() * 0.1f;
        if (ggml_quantize_row(t, tmp, r->data + n * row, K) != 0) {
            fprintf(stderr, "bench/kernels: quantize %s failed\n", ggml_type_name(t));
            exit(1);
        }
    }
    for (int i = 1; i < r->count; i++)
        memcpy(r->data + i * r->mat_bytes, r->data, r->mat_bytes);
    free(tmp);
}

/* Best seconds per tensor_matmul over the ring, at least min_s of calls per repetition. */
static double time_matmul(struct tpool *p, struct ring *r, float *out, const float *x, enum ggml_type t, int T, int K,
                          int N, double min_s, int reps)
{
    double best = 1e30;
    int idx = 0;
    for (int rep = 0; rep < reps; rep++) {
        int calls = 0;
        double t0 = now(), dt;
        do {
            if (tensor_matmul(p, out, x, r->data + (size_t)idx * r->mat_bytes, t, T, K, N) != 0) {
                fprintf(stderr, "bench/kernels: matmul failed\n");
                exit(1);
            }
            idx = (idx + 1) % r->count;
            calls++;
            dt = now() - t0;
        } while (dt < min_s);
        if (dt / calls < best)
            best = dt / calls;
    }
    return best;
}

static void noop_fn(void *ctx, int ith, int nth)
{
    (void)ctx, (void)ith, (void)nth;
}

/* CPU time of one call on the calling thread, best of reps runs of at least min_s. */
static double cpu_time_matmul(struct tpool *p, float *out, const float *x, const void *w, enum ggml_type t, int T,
                              int K, int N, double min_s, int reps)
{
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        struct timespec a, b;
        int calls = 0;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        do {
            tensor_matmul(p, out, x, w, t, T, K, N);
            calls++;
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        } while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9 < min_s);
        double dt = ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9) / calls;
        best = dt < best ? dt : best;
    }
    return best;
}

/* Matrix-matrix tiles (integer for Q8_0 and Q4_0, float for F32 and F16)
 * against the row dots (4 activation rows per weight row) and sgemm (F32
 * directly, the others dequantized first), all on one thread in
 * CPU time (robust to the other processes), K=768 N=2048 (weights in L2/L3),
 * then the chosen shape on the pool in wall time against the same baselines. */
static void bench_tiles(struct tpool *p1, struct tpool *p, double min_s, int reps)
{
    static const int Ts[] = {1, 4, 16, 64, 256}; /* T = 1: decode's matrix-vector product */
    static const int shapes[][2] = {{1, 4}, {2, 4}, {4, 2}, {3, 4}, {4, 3}, {4, 4}, {2, 2}};
    static const enum ggml_type ct[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_F32, GGML_TYPE_F16};
    int K = 768, N = 2048;
    float *x = xmalloc(sizeof(float) * 256 * K), *out = xmalloc(sizeof(float) * 256 * N), *tmp = xmalloc(sizeof(float) * K);
    for (int i = 0; i < 256 * K; i++)
        x[i] = frand();
    int ob = tensor_set_blas_min_t(0), od = tensor_set_deq_min_t(0);
    for (size_t ti = 0; ti < sizeof(ct) / sizeof(ct[0]); ti++) {
        size_t row = ggml_row_size(ct[ti], K);
        uint8_t *w = xmalloc(row * N);
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++)
                tmp[k] = frand() * 0.1f;
            ggml_quantize_row(ct[ti], tmp, w + n * row, K);
        }
        for (size_t i = 0; i < sizeof(Ts) / sizeof(Ts[0]); i++) {
            int T = Ts[i];
            double fl = 2.0 * T * K * N;
            tensor_set_deq_min_t(0), tensor_set_tile(2, 4, 0);
            double s_dot = cpu_time_matmul(p1, out, x, w, ct[ti], T, K, N, min_s, reps);
            if (ct[ti] == GGML_TYPE_F32)
                tensor_set_blas_min_t(1);
            else
                tensor_set_deq_min_t(1);
            double s_deq = cpu_time_matmul(p1, out, x, w, ct[ti], T, K, N, min_s, reps);
            tensor_set_blas_min_t(0), tensor_set_deq_min_t(0);
            printf("tile1_%s_t%d_rowdot %.1f GFLOP/s\n", ggml_type_name(ct[ti]), T, fl / s_dot / 1e9);
            printf("tile1_%s_t%d_%s %.1f GFLOP/s\n", ggml_type_name(ct[ti]), T,
                   ct[ti] == GGML_TYPE_F32 ? "sgemm" : "deq_sgemm", fl / s_deq / 1e9);
            for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
                tensor_set_tile(shapes[si][0], shapes[si][1], 1);
                double s_t = cpu_time_matmul(p1, out, x, w, ct[ti], T, K, N, min_s, reps);
                printf("tile1_%s_t%d_%dx%d %.1f GFLOP/s (%.2fx rowdot)\n", ggml_type_name(ct[ti]), T, shapes[si][0],
                       shapes[si][1], fl / s_t / 1e9, s_dot / s_t);
            }
        }
        free(w);
    }
    tensor_set_tile(0, 0, 2);
    tensor_set_blas_min_t(ob), tensor_set_deq_min_t(od);
    (void)p;
    free(x), free(out), free(tmp);
}

int main(int argc, char **argv)
{
    int nthreads = 2, quick = 0, tiles_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            nthreads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--tiles"))
            tiles_only = 1;
        else {
            fprintf(stderr, "usage: kernels [--threads N] [--quick] [--tiles]\n");
            return 2;
        }
    }
    /* many short repetitions: on a shared machine the best one is the least disturbed */
    double min_s = quick ? 0.02 : 0.03;
    int reps = quick ? 4 : 10;
    struct tpool *p1 = tpool_new(1), *p = tpool_new(nthreads);
    if (!p1 || !p) {
        fprintf(stderr, "bench/kernels: no thread pool\n");
        return 1;
    }
    printf("# kernel path %s (avx2 %d, avx512 %d), %d threads\n", tensor_path_name(tensor_path()),
           tensor_cpu_has_avx2(), tensor_cpu_has_avx512(), nthreads);
    FILE *la = fopen("/proc/loadavg", "r");
    char lbuf[128];
    if (la && fgets(lbuf, sizeof(lbuf), la))
        printf("# load average at start: %s", lbuf); /* other processes share the cores and the memory bus */
    if (la)
        fclose(la);

    if (tiles_only) {
        bench_tiles(p1, p, 0.1, 5);
        tpool_free(p1), tpool_free(p);
        return 0;
    }

    /* Bandwidth. */
    size_t bw_bytes = (size_t)512 << 20;
    uint64_t *buf = xmalloc(bw_bytes);
    for (size_t i = 0; i < bw_bytes / 8; i++)
        buf[i] = i;
    double bw1 = bandwidth(p1, buf, bw_bytes, reps + 1), bw = bandwidth(p, buf, bw_bytes, reps + 1);
    printf("bandwidth_1t %.1f GB/s\n", bw1);
    printf("bandwidth_%dt %.1f GB/s\n", nthreads, bw);

    /* Matrix-vector: weight GB/s and fraction of bandwidth, fast path vs scalar. */
    static const int shapes[][2] = {{768, 768}, {768, 2048}, {2048, 768}, {768, 32000}}; /* K, N */
    static const enum ggml_type types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
    float *x = xmalloc(sizeof(float) * 512 * 2048), *out = xmalloc(sizeof(float) * 512 * 32000);
    for (int i = 0; i < 512 * 2048; i++)
        x[i] = frand();
    enum tensor_path fast = tensor_path();
    for (size_t ti = 0; ti < 4; ti++) {
        enum ggml_type t = types[ti];
        double fast_bytes = 0, fast_time = 0, scalar_bytes = 0, scalar_time = 0;
        /* the other processes' load drifts: each type's fractions use the bandwidth
         * measured right before it */
        bw = bandwidth(p, buf, bw_bytes, 3);
        printf("bandwidth_%dt_before_%s %.1f GB/s\n", nthreads, ggml_type_name(t), bw);
        for (size_t si = 0; si < 4; si++) {
            int K = shapes[si][0], N = shapes[si][1];
            struct ring r;
            ring_make(&r, t, K, N, RING_BYTES);
            double wbytes = (double)ggml_row_size(t, K) * N;
            double s = time_matmul(p, &r, out, x, t, 1, K, N, min_s, reps);
            tensor_set_path(TENSOR_PATH_SCALAR);
            double s0 = time_matmul(p, &r, out, x, t, 1, K, N, min_s / 2, 2);
            tensor_set_path(fast);
            printf("matvec_%s_k%d_n%d %.1f GB/s\n", ggml_type_name(t), K, N, wbytes / s / 1e9);
            printf("matvec_%s_k%d_n%d_roofline %.2f fraction\n", ggml_type_name(t), K, N, wbytes / s / 1e9 / bw);
            printf("matvec_%s_k%d_n%d_scalar %.1f GB/s\n", ggml_type_name(t), K, N, wbytes / s0 / 1e9);
            fast_bytes += wbytes, fast_time += s, scalar_bytes += wbytes, scalar_time += s0;
            free(r.data);
        }
        /* One decode step of the layer shapes, weighted by bytes (what a token reads). */
        printf("matvec_%s_all %.1f GB/s\n", ggml_type_name(t), fast_bytes / fast_time / 1e9);
        printf("matvec_%s_all_roofline %.2f fraction\n", ggml_type_name(t), fast_bytes / fast_time / 1e9 / bw);
        printf("matvec_%s_all_speedup_vs_scalar %.1f x\n", ggml_type_name(t), scalar_time / fast_time);
    }

    free(buf);

    /* Matrix-matrix at K=768, N=2048 (the FFN up projection): GFLOP/s vs one matvec per row. */
    {
        int K = 768, N = 2048;
        static const int Ts[] = {16, 64, 512};
        for (size_t ti = 0; ti < 4; ti++) {
            enum ggml_type t = types[ti];
            struct ring r;
            ring_make(&r, t, K, N, RING_BYTES);
            for (size_t i = 0; i < 3; i++) {
                int T = Ts[i];
                double flops = 2.0 * T * K * N;
                double s = time_matmul(p, &r, out, x, t, T, K, N, min_s, reps);
                /* baseline: the same T rows as T separate matrix-vector calls, each
                 * on the next copy in the ring (from DRAM, as T sequences decoded one
                 * by one would read the layer), timed like time_matmul */
                double best = 1e30;
                int idx = 0;
                for (int rep = 0; rep < reps; rep++) {
                    int rounds = 0;
                    double t0 = now(), dt;
                    do {
                        for (int row = 0; row < T; row++) {
                            tensor_matmul(p, out + (size_t)row * N, x + (size_t)row * K,
                                          r.data + (size_t)idx * r.mat_bytes, t, 1, K, N);
                            idx = (idx + 1) % r.count;
                        }
                        rounds++;
                        dt = now() - t0;
                    } while (dt < min_s);
                    best = dt / rounds < best ? dt / rounds : best;
                }
                printf("matmul_%s_t%d %.1f GFLOP/s\n", ggml_type_name(t), T, flops / s / 1e9);
                printf("matmul_%s_t%d_rowwise %.1f GFLOP/s\n", ggml_type_name(t), T, flops / best / 1e9);
            }
            free(r.data);
        }
    }

    /* Crossovers: row-dot kernels vs sgemm (F32) and dequantize+sgemm (others). */
    {
        int K = 768, N = 2048;
        static const int Ts[] = {4, 8, 16, 32, 64, 128};
        static const enum ggml_type ct[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
        int ob = tensor_set_blas_min_t(0), od = tensor_set_deq_min_t(0);
        for (size_t ti = 0; ti < 4; ti++) {
            struct ring r;
            ring_make(&r, ct[ti], K, N, RING_BYTES / 4);
            for (size_t i = 0; i < 6; i++) {
                int T = Ts[i];
                double flops = 2.0 * T * K * N;
                tensor_set_blas_min_t(0), tensor_set_deq_min_t(0);
                double s_dot = time_matmul(p, &r, out, x, ct[ti], T, K, N, min_s / 2, reps);
                tensor_set_blas_min_t(1), tensor_set_deq_min_t(1);
                double s_blas = time_matmul(p, &r, out, x, ct[ti], T, K, N, min_s / 2, reps);
                printf("crossover_%s_t%d_rowdot %.1f GFLOP/s\n", ggml_type_name(ct[ti]), T, flops / s_dot / 1e9);
                printf("crossover_%s_t%d_sgemm %.1f GFLOP/s\n", ggml_type_name(ct[ti]), T, flops / s_blas / 1e9);
            }
            free(r.data);
        }
        tensor_set_blas_min_t(ob), tensor_set_deq_min_t(od);
    }

    /* Compute rate of one thread on an in-cache matrix (K=768, N=768), in
     * CPU time: what the kernels can do when memory is not the limit, robust
     * to other processes taking the core. */
    {
        int K = 768, N = 768;
        static const enum ggml_type ct[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0,
                                            GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
        static const int Ts[] = {1, 16};
        int ob = tensor_set_blas_min_t(0), od = tensor_set_deq_min_t(0);
        for (size_t ti = 0; ti < sizeof(ct) / sizeof(ct[0]); ti++) {
            size_t row = ggml_row_size(ct[ti], K);
            uint8_t *w = xmalloc(row * N);
            float *tmp = xmalloc(sizeof(float) * K);
            for (int n = 0; n < N; n++) {
                for (int k = 0; k < K; k++)
                    tmp[k] = frand() * 0.1f;
                if (ggml_can_quantize(ct[ti]))
                    ggml_quantize_row(ct[ti], tmp, w + n * row, K);
                else /* K-quants have no quantizer: random bits with small f16 scales */
                    for (size_t b = 0; b < row; b++)
                        w[n * row + b] = (uint8_t)(frand() * 127 + 128) & (ct[ti] == GGML_TYPE_Q4_K && b % 144 < 4 ? 0x13 : 0xff);
            }
            if (ct[ti] == GGML_TYPE_Q6_K)
                for (size_t b = 0; b < row * N / 210; b++)
                    w[b * 210 + 209] = 0x13;
            for (size_t i = 0; i < 2; i++) {
                for (int path = 0; path < 2; path++) {
                    tensor_set_path(path ? fast : TENSOR_PATH_SCALAR);
                    double best = 1e30;
                    for (int rep = 0; rep < 5; rep++) {
                        struct timespec a, b;
                        int calls = 0;
                        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
                        do {
                            tensor_matmul(p1, out, x, w, ct[ti], Ts[i], K, N);
                            calls++;
                            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
                        } while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9 < min_s);
                        double dt = ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9) / calls;
                        best = dt < best ? dt : best;
                    }
                    printf("cpu1_%s_t%d%s %.1f GFLOP/s\n", ggml_type_name(ct[ti]), Ts[i], path ? "" : "_scalar",
                           2.0 * Ts[i] * K * N / best / 1e9);
                }
            }
            tensor_set_path(fast);
            free(w), free(tmp);
        }
        tensor_set_blas_min_t(ob), tensor_set_deq_min_t(od);
    }

    /* Elementwise kernels (one thread, CPU time): SwiGLU over one FFN row of
     * 16 tokens and the exp of an attention row, fast path vs scalar. */
    {
        int n = 2048 * 16;
        float *g = xmalloc(sizeof(float) * n), *u = xmalloc(sizeof(float) * n), *o = xmalloc(sizeof(float) * n);
        for (int i = 0; i < n; i++)
            g[i] = frand() * 8, u[i] = frand();
        for (int path = 0; path < 2; path++) {
            tensor_set_path(path ? fast : TENSOR_PATH_SCALAR);
            double bs = 1e30, be = 1e30;
            for (int rep = 0; rep < 20; rep++) {
                struct timespec a, b, c;
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
                nn_swiglu_forward(o, g, u, n);
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
                nn_exp_sum(o, 1.0f, n);
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c);
                double ds = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
                double de = (c.tv_sec - b.tv_sec) + (c.tv_nsec - b.tv_nsec) * 1e-9;
                bs = ds < bs ? ds : bs;
                be = de < be ? de : be;
            }
            printf("swiglu%s %.2f ns/elem\n", path ? "" : "_scalar", bs / n * 1e9);
            printf("exp_sum%s %.2f ns/elem\n", path ? "" : "_scalar", be / n * 1e9);
        }
        tensor_set_path(fast);
        free(g), free(u), free(o);
    }

    /* Pool dispatch: an empty job, back to back (workers spinning) and after idling (asleep). */
    {
        int n = quick ? 20000 : 100000;
        double t0 = now();
        for (int i = 0; i < n; i++)
            tpool_run(p, noop_fn, NULL);
        printf("tpool_dispatch_hot %.2f us\n", (now() - t0) / n * 1e6);
        /* the fastest single dispatch: the pool's own cost when no other process holds a core */
        double best = 1e30;
        for (int i = 0; i < n / 10; i++) {
            double c0 = now();
            tpool_run(p, noop_fn, NULL);
            double dt = now() - c0;
            best = dt < best ? dt : best;
        }
        printf("tpool_dispatch_hot_min %.2f us\n", best * 1e6);
        t0 = now();
        for (int i = 0; i < n; i++)
            tpool_run_dynamic(p, noop_fn, NULL);
        printf("tpool_dispatch_dynamic_hot %.2f us\n", (now() - t0) / n * 1e6);
        double cold = 0;
        int m = 20;
        for (int i = 0; i < m; i++) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
            double c0 = now();
            tpool_run(p, noop_fn, NULL);
            cold += now() - c0;
        }
        printf("tpool_dispatch_cold %.2f us\n", cold / m * 1e6);
    }
    free(x), free(out);
    tpool_free(p);
    tpool_free(p1);
    return 0;
}
