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
 * shared), looping over all T so the chunk stays in cache while x streams;
 * from T = 2 a tile of weight rows x activation rows (register-blocked, so
 * each load serves several products) takes over where the path has one.
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

/* Crossovers (docs/TENSOR.md), K=768 N=2048 on a 2-core Zen 3 EPYC, 2
 * threads, weights from DRAM (bench/kernels crossover_*): the F32 row dots
 * match sgemm from T~32 to 64 and lose at 128; the Q8_0/Q4_0 integer dots
 * beat dequantize+sgemm through T=64 and tie or lose at 128 (F16 alike). */
static atomic_int blas_min_t = 64;
static atomic_int deq_min_t = 128;

/* Tile shapes (weight rows x activation rows; [0] Q8_0, [1] Q4_0, [2] the
 * float types) and the smallest T that takes them. From bench/kernels
 * --tiles (one core, in cache, K=768 N=2048, T=4..256): Q8_0 2x4 72-75
 * GFLOP/s, 4x4 75-80, against 40-73 for the row dots and 20-77 for
 * dequantize+sgemm; Q4_0 2x4 85 against 58-75 and 19-72. In the 110M model
 * (weights from DRAM, loaded machine, alternating runs) Q8_0 2x4 beat 4x4
 * (prefill 206 vs 187 tok/s, 16-sequence decode 153 vs 135 and 119 vs 108),
 * 4x4 spilling registers, so both types take 2x4 at every T >= 2, which also
 * replaces dequantize+sgemm for them. Float tiles, 3x4 (one core, in cache,
 * quiet, GFLOP/s at T = 4 / 16 / 64 / 256): F32 76 / 84 / 71 / 72 against
 * row dots 66 / 67 / 63 / 66 and sgemm 26 / 52 / 67 / 75, so F32 takes them
 * from T = 2 up to its sgemm crossover (blas_min_t); F16 86 / 86 / 87 / 89
 * against row dots 68-71 and dequantize+sgemm 20 / 44 / 69 / 78, so F16 and
 * BF16 take them at every T >= 2. tensor_set_tile lets the benchmarks
 * compare shapes. */
enum { TILE_Q8, TILE_Q4, TILE_FLOAT, TILE_KINDS };
static const int tile_r_def[TILE_KINDS] = {2, 2, 3}, tile_c_def[TILE_KINDS] = {4, 4, 4};
static atomic_int tile_r[TILE_KINDS] = {2, 2, 3}, tile_c[TILE_KINDS] = {4, 4, 4}, tile_min_t = 2;

void tensor_set_tile(int r, int c, int min_t)
{
    for (int i = 0; i < TILE_KINDS; i++) {
        atomic_store(&tile_r[i], r >= 1 && r <= TENSOR_TILE_R ? r : tile_r_def[i]);
        atomic_store(&tile_c[i], c >= 1 && c <= TENSOR_TILE_C ? c : tile_c_def[i]);
    }
    atomic_store(&tile_min_t, min_t < 0 ? 0 : min_t);
}

static int tile_kind(enum ggml_type wt)
{
    return wt == GGML_TYPE_Q8_0 ? TILE_Q8 : wt == GGML_TYPE_Q4_0 ? TILE_Q4 : TILE_FLOAT;
}

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

/* One weight matrix of a job. */
struct mm_part {
    tensor_rowdot_fn rowdot;
    tensor_tile_fn tile; /* mode 3 */
    float *out;          /* (T, N) */
    const void *x;       /* (T, K) floats or T quantized rows (TENSOR_Q8X_ROW) */
    size_t xstride;      /* bytes per activation row */
    const uint8_t *w;    /* (N, wrow bytes) */
    size_t wrow;
    enum ggml_type wt;
    int N;
    int mode;            /* 0 row-dots, 1 sgemm on F32 W, 2 dequantize + sgemm, 3 tiles */
    int chunk, first, nchunks; /* rows per chunk; this part's chunks are first .. first+nchunks-1 */
};

struct mm_job {
    const struct tensor_kernels *k;
    struct mm_part part[TENSOR_MULTI_MAX];
    int nparts;
    const float *xf;     /* (T, K) the caller's floats (sgemm paths) */
    int T, K;
    int nchunks;         /* over all parts */
    float *tiles;        /* (nth, DEQ_ROWS, K) for mode 2 */
    atomic_int next;
};

static void mm_chunk(const struct mm_job *j, const struct mm_part *pt, int c, int ith)
{
    int n0 = c * pt->chunk, n1 = n0 + pt->chunk < pt->N ? n0 + pt->chunk : pt->N;
    if (pt->mode == 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, n1 - n0, j->K, 1.0f, j->xf, j->K,
                    (const float *)(const void *)(pt->w + (size_t)n0 * pt->wrow), j->K, 0.0f, pt->out + n0, pt->N);
    } else if (pt->mode == 2) {
        float *tile = j->tiles + (size_t)ith * DEQ_ROWS * j->K;
        for (int n = n0; n < n1; n++) {
            const uint8_t *wr = pt->w + (size_t)n * pt->wrow;
            float *dst = tile + (size_t)(n - n0) * j->K;
            j->k->dequant_row(pt->wt, wr, dst, j->K);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, n1 - n0, j->K, 1.0f, j->xf, j->K, tile, j->K, 0.0f,
                    pt->out + n0, pt->N);
    } else if (pt->mode == 3) {
        int kind = tile_kind(pt->wt);
        int tr = atomic_load_explicit(&tile_r[kind], memory_order_relaxed);
        int tc = atomic_load_explicit(&tile_c[kind], memory_order_relaxed);
        for (int t0 = 0; t0 < j->T; t0 += tc) {
            int nx = j->T - t0 < tc ? j->T - t0 : tc;
            const char *xr = (const char *)pt->x + (size_t)t0 * pt->xstride;
            float *o = pt->out + (size_t)t0 * pt->N;
            for (int n = n0; n < n1; n += tr) {
                int nr = n1 - n < tr ? n1 - n : tr;
                pt->tile(j->K, pt->w + (size_t)n * pt->wrow, pt->wrow, nr, xr, pt->xstride, nx, o + n, (size_t)pt->N);
            }
        }
    } else {
        for (int t0 = 0; t0 < j->T; t0 += TENSOR_NX) {
            int nx = j->T - t0 < TENSOR_NX ? j->T - t0 : TENSOR_NX;
            const char *xr = (const char *)pt->x + (size_t)t0 * pt->xstride;
            float *o = pt->out + (size_t)t0 * pt->N;
            for (int n = n0; n < n1; n++)
                pt->rowdot(j->K, pt->w + (size_t)n * pt->wrow, xr, pt->xstride, nx, o + n, (size_t)pt->N);
        }
    }
}

static void mm_worker(void *ctx, int ith, int nth)
{
    struct mm_job *j = ctx;
    (void)nth;
    int c;
    while ((c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->nchunks) {
        const struct mm_part *pt = j->part;
        while (c >= pt->first + pt->nchunks)
            pt++;
        mm_chunk(j, pt, c - pt->first, ith);
    }
}

/* Scratch for calls without a pool (e.g. from inside a pool job): one per
 * thread, kept for the thread's life and freed when it exits, so repeated
 * calls allocate nothing once the largest shape has been seen. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_free(void *v)
{
    tensor_scratch_release(v);
    free(v);
}

static void scratch_key_init(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

static struct tensor_scratch *thread_scratch(void)
{
    pthread_once(&scratch_once, scratch_key_init);
    if (!scratch_key_ok)
        return NULL;
    struct tensor_scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (s && pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            s = NULL;
        }
    }
    return s;
}

static tensor_tile_fn pick_tile(const struct tensor_kernels *k, enum ggml_type wt)
{
    switch (wt) {
    case GGML_TYPE_Q8_0: return k->tile_q8_0;
    case GGML_TYPE_Q4_0: return k->tile_q4_0;
    case GGML_TYPE_F32: return k->tile_f32;
    case GGML_TYPE_F16: return k->tile_f16;
    case GGML_TYPE_BF16: return k->tile_bf16;
    default: return NULL;
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

int tensor_matmul_multi(struct tpool *p, int n, float *const *out, const float *x, const void *const *w,
                        const enum ggml_type *wt, const int *N, int T, int K)
{
    const struct tensor_kernels *k = tensor_kernels();
    if (n < 1 || n > TENSOR_MULTI_MAX || T <= 0 || K <= 0)
        return AISLE_EINVAL;
    int nth = tpool_nthreads(p);
    int bmin = atomic_load(&blas_min_t), dmin = atomic_load(&deq_min_t), tmin = atomic_load(&tile_min_t);
    struct mm_job j = {.k = k, .nparts = n, .xf = x, .T = T, .K = K};
    int need_qx = 0, need_tiles = 0, need_blas = 0;
    for (int i = 0; i < n; i++) {
        struct mm_part *pt = &j.part[i];
        int quant_x;
        pt->rowdot = pick_rowdot(k, wt[i], &quant_x);
        if (!pt->rowdot || N[i] <= 0 || K % ggml_blck_size(wt[i]) != 0)
            return AISLE_EINVAL;
        pt->out = out[i];
        pt->x = x;
        pt->xstride = (size_t)K * sizeof(float);
        pt->w = w[i];
        pt->wrow = ggml_row_size(wt[i], K);
        pt->wt = wt[i];
        pt->N = N[i];
        /* F32 keeps sgemm from its crossover up; the other tiles beat
         * dequantize+sgemm at every T */
        if (wt[i] == GGML_TYPE_F32 && bmin > 0 && T >= bmin && ((uintptr_t)w[i] & 3) == 0)
            pt->mode = 1;
        else if ((pt->tile = pick_tile(k, wt[i])) && tmin > 0 && T >= tmin)
            pt->mode = 3;
        else if (wt[i] != GGML_TYPE_F32 && dmin > 0 && T >= dmin)
            pt->mode = 2;
        need_qx |= quant_x && (pt->mode == 0 || pt->mode == 3);
        need_tiles |= pt->mode == 2;
        need_blas |= pt->mode != 0;
        /* Chunks: enough per thread (~8) to balance a noisy machine, few
         * enough that the counter is not contended; sgemm wants wide slices. */
        if (pt->mode == 2)
            pt->chunk = DEQ_ROWS;
        else if (pt->mode == 1)
            pt->chunk = N[i] / nth < 256 ? (N[i] + nth - 1) / nth : 256;
        else {
            pt->chunk = N[i] / (nth * 8);
            pt->chunk = pt->chunk < 4 ? 4 : pt->chunk > 64 ? 64 : pt->chunk;
            if (pt->mode == 3) { /* whole tiles */
                int tr = atomic_load_explicit(&tile_r[tile_kind(wt[i])], memory_order_relaxed);
                pt->chunk = (pt->chunk + tr - 1) / tr * tr;
            }
        }
        pt->first = j.nchunks;
        pt->nchunks = (N[i] + pt->chunk - 1) / pt->chunk;
        j.nchunks += pt->nchunks;
    }

    size_t qbytes = need_qx ? (size_t)T * TENSOR_Q8X_ROW(K) : 0;
    size_t tbytes = need_tiles ? (size_t)nth * DEQ_ROWS * K * sizeof(float) : 0;
    struct tensor_scratch *s = p ? tpool_scratch(p) : thread_scratch();
    if (!s)
        return AISLE_ENOMEM;
    if (qbytes + tbytes > 0 && tensor_scratch_reserve(s, qbytes + tbytes) != 0)
        return AISLE_ENOMEM;
    if (qbytes) {
        /* one quantization of x serves every quantized part */
        char *qx = s->data;
        for (int t = 0; t < T; t++)
            k->quantize_x(x + (size_t)t * K, qx + (size_t)t * TENSOR_Q8X_ROW(K), K);
        for (int i = 0; i < n; i++) {
            int quant_x;
            pick_rowdot(k, wt[i], &quant_x);
            if (quant_x && (j.part[i].mode == 0 || j.part[i].mode == 3)) {
                j.part[i].x = qx;
                j.part[i].xstride = TENSOR_Q8X_ROW(K);
            }
        }
    }
    if (tbytes)
        j.tiles = (float *)(void *)((char *)s->data + qbytes);
    if (need_blas)
        pthread_once(&blas_once, blas_init);
    atomic_init(&j.next, 0);
    tpool_run_dynamic(p, mm_worker, &j);
    return 0;
}

int tensor_matmul(struct tpool *p, float *out, const float *x, const void *w, enum ggml_type wt, int T, int K, int N)
{
    return tensor_matmul_multi(p, 1, &out, x, &w, &wt, &N, T, K);
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
