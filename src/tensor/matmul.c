/*
 * matmul.c — out (T, N) = x (T, K) · W^T for weights in ggml block formats.
 *
 * Dims legend: T activation rows (tokens), K input channels, N output
 * channels (weight rows), nth threads, nx activation rows per row-dot call.
 *
 * Design: the N weight rows are cut into chunks that the pool's threads
 * claim from one atomic counter, so a thread slowed by a noisy neighbour
 * simply takes fewer chunks. Within a chunk each weight row is dotted with up
 * to TENSOR_NX activation rows per call (its loads and block unpacking are
 * shared), looping over all T so the chunk stays in cache while x streams.
 * Quantized weights take activations quantized once per call to q8x blocks
 * (integer dots, llama.cpp's scheme); large T goes to OpenBLAS sgemm, on F32
 * weights directly and on other types after dequantizing a chunk of rows to
 * F32 in the thread's tile (each thread runs a single-threaded sgemm on its
 * own chunks, so OpenBLAS's threads never fight the pool's).
 *
 * Invariants: every output element is written by exactly one thread; the
 * scratch (quantized x, then nth dequantize tiles) is owned by the pool and
 * only grows.
 */
#include "tensor/tensor.h"
#include "tensor/tensor_impl.h"

#include "core/error.h"
#include "gguf/quant.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Crossovers measured with bench/kernels on a 2-core EPYC (docs/TENSOR.md). */
static atomic_int blas_min_t = 32;
static atomic_int deq_min_t = 64;

/* Rows per dequantize-then-sgemm tile. */
#define DEQ_ROWS 64

int tensor_set_blas_min_t(int min_t)
{
    return atomic_exchange(&blas_min_t, min_t < 0 ? 0 : min_t);
}

int tensor_set_deq_min_t(int min_t)
{
    return atomic_exchange(&deq_min_t, min_t < 0 ? 0 : min_t);
}

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_init(void)
{
    /* our pool provides the parallelism; OpenBLAS's own threads would compete */
    openblas_set_num_threads(1);
}

struct mm_job {
    tensor_rowdot_fn rowdot;
    float *out;          /* (T, N) */
    const void *x;       /* (T, K) floats or (T, K/32) q8x blocks */
    size_t xstride;      /* bytes per activation row */
    const float *xf;     /* (T, K) the caller's floats (sgemm paths) */
    const uint8_t *w;    /* (N, wrow bytes) */
    size_t wrow;
    enum ggml_type wt;
    int T, K, N;
    int chunk, nchunks;
    int mode;            /* 0 row-dots, 1 sgemm on F32 W, 2 dequantize + sgemm */
    float *tiles;        /* (nth, DEQ_ROWS, K) for mode 2 */
    atomic_int next;
};

static void mm_worker(void *ctx, int ith, int nth)
{
    struct mm_job *j = ctx;
    (void)nth;
    int c;
    while ((c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->nchunks) {
        int n0 = c * j->chunk, n1 = n0 + j->chunk < j->N ? n0 + j->chunk : j->N;
        if (j->mode == 1) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, n1 - n0, j->K, 1.0f, j->xf, j->K,
                        (const float *)(j->w + (size_t)n0 * j->wrow), j->K, 0.0f, j->out + n0, j->N);
        } else if (j->mode == 2) {
            float *tile = j->tiles + (size_t)ith * DEQ_ROWS * j->K;
            for (int n = n0; n < n1; n++)
                ggml_dequantize_row(j->wt, j->w + (size_t)n * j->wrow, tile + (size_t)(n - n0) * j->K, j->K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, n1 - n0, j->K, 1.0f, j->xf, j->K, tile,
                        j->K, 0.0f, j->out + n0, j->N);
        } else {
            for (int t0 = 0; t0 < j->T; t0 += TENSOR_NX) {
                int nx = j->T - t0 < TENSOR_NX ? j->T - t0 : TENSOR_NX;
                const char *xr = (const char *)j->x + (size_t)t0 * j->xstride;
                float *o = j->out + (size_t)t0 * j->N;
                for (int n = n0; n < n1; n++)
                    j->rowdot(j->K, j->w + (size_t)n * j->wrow, xr, j->xstride, nx, o + n, (size_t)j->N);
            }
        }
    }
}

static tensor_rowdot_fn pick_rowdot(const struct tensor_kernels *k, enum ggml_type wt, int *quant_x)
{
    *quant_x = 1;
    switch (wt) {
    case GGML_TYPE_Q8_0: return k->rowdot_q8_0;
    case GGML_TYPE_Q4_0: return k->rowdot_q4_0;
    case GGML_TYPE_Q4_K: return k->rowdot_q4_k;
    case GGML_TYPE_Q6_K: return k->rowdot_q6_k;
    default: break;
    }
    *quant_x = 0;
    switch (wt) {
    case GGML_TYPE_F32: return k->rowdot_f32;
    case GGML_TYPE_F16: return k->rowdot_f16;
    case GGML_TYPE_BF16: return k->rowdot_bf16;
    default: return NULL;
    }
}

int tensor_matmul(struct tpool *p, float *out, const float *x, const void *w, enum ggml_type wt, int T, int K, int N)
{
    const struct tensor_kernels *k = tensor_kernels();
    int quant_x;
    tensor_rowdot_fn rowdot = pick_rowdot(k, wt, &quant_x);
    if (!rowdot || T <= 0 || K <= 0 || N <= 0 || K % ggml_blck_size(wt) != 0)
        return AISLE_EINVAL;
    int nth = tpool_nthreads(p);
    struct mm_job j = {
        .rowdot = rowdot, .out = out, .x = x, .xstride = (size_t)K * sizeof(float), .xf = x,
        .w = w, .wrow = ggml_row_size(wt, K), .wt = wt, .T = T, .K = K, .N = N,
    };
    int bmin = atomic_load(&blas_min_t), dmin = atomic_load(&deq_min_t);
    if (wt == GGML_TYPE_F32 && bmin > 0 && T >= bmin && ((uintptr_t)w & 3) == 0)
        j.mode = 1;
    else if (wt != GGML_TYPE_F32 && dmin > 0 && T >= dmin)
        j.mode = 2;

    size_t qbytes = quant_x && j.mode == 0 ? (size_t)T * (K / 32) * sizeof(struct q8x_block) : 0;
    size_t tbytes = j.mode == 2 ? (size_t)nth * DEQ_ROWS * K * sizeof(float) : 0;
    struct tensor_scratch local = {0}, *s = tpool_scratch(p);
    if (!s)
        s = &local;
    if (qbytes + tbytes > 0 && tensor_scratch_reserve(s, qbytes + tbytes) != 0)
        return AISLE_ENOMEM;
    if (qbytes) {
        struct q8x_block *qx = s->data;
        for (int t = 0; t < T; t++)
            k->quantize_x(x + (size_t)t * K, qx + (size_t)t * (K / 32), K);
        j.x = qx;
        j.xstride = (size_t)(K / 32) * sizeof(struct q8x_block);
    }
    if (tbytes)
        j.tiles = (float *)((char *)s->data + qbytes);
    if (j.mode)
        pthread_once(&blas_once, blas_init);

    /* Chunks: enough per thread (~8) to balance a noisy machine, few enough
     * that the counter is not contended; sgemm wants wide slices. */
    if (j.mode == 2)
        j.chunk = DEQ_ROWS;
    else if (j.mode == 1)
        j.chunk = N / nth < 256 ? (N + nth - 1) / nth : 256;
    else {
        j.chunk = N / (nth * 8);
        j.chunk = j.chunk < 4 ? 4 : j.chunk > 64 ? 64 : j.chunk;
    }
    j.nchunks = (N + j.chunk - 1) / j.chunk;
    atomic_init(&j.next, 0);
    tpool_run(p, mm_worker, &j);
    tensor_scratch_release(&local);
    return 0;
}

int tensor_matmul_ref(float *out, const float *x, const void *w, enum ggml_type wt, int T, int K, int N)
{
    if (T <= 0 || K <= 0 || N <= 0 || !ggml_can_dequantize(wt) || K % ggml_blck_size(wt) != 0)
        return AISLE_EINVAL;
    size_t wrow = ggml_row_size(wt, K);
    float *row = malloc((size_t)K * sizeof(float));
    if (!row)
        return AISLE_ENOMEM;
    for (int n = 0; n < N; n++) {
        if (ggml_dequantize_row(wt, (const uint8_t *)w + (size_t)n * wrow, row, K) != 0) {
            free(row);
            return AISLE_EINVAL;
        }
        for (int t = 0; t < T; t++) {
            double acc = 0.0;
            for (int i = 0; i < K; i++)
                acc += (double)x[(size_t)t * K + i] * row[i];
            out[(size_t)t * N + n] = (float)acc;
        }
    }
    free(row);
    return 0;
}
