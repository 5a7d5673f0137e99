/*
 * bench/train.c — training throughput and model FLOPs utilisation (MFU) of
 * src/train for a 124M-parameter Llama (dim 768, 12 layers, 12 heads, FFN
 * 3072, vocab 32000, tied output, ctx 256) and for the default model's
 * shape as scripts/default-model.conf gives it (--config), with the sgemm
 * peak measured in the same run with the same thread count as the baseline.
 *
 * Model FLOPs per token (the PaLM accounting, with the causal mask halving
 * attention): 6 x (non-embedding parameters + V x C for the output
 * projection, a real matmul also when tied) + 6 x L x T x C for attention
 * (QK^T and PV, forward 2 x T/2 x C each, backward twice the forward).
 * MFU = model FLOPs per second / sgemm peak.
 *
 * The baseline: row-major sgemm of (N x C) by (C x F) shapes the model runs
 * (N = B x T), best of 5, measured before and after the training steps (the
 * machine is shared: both are printed, the larger is used), and a square
 * 1536^3 sgemm, the machine's best case, for the stricter `mfu_square` (the
 * default model's small K = 256 products cannot reach it). One step = zero
 * grad, forward, backward, clip, AdamW; after one warm-up step, the best of
 * --steps steps, and the time split into forward, backward and optimizer.
 * Then one layer's attention forward + backward in the model's sgemm form
 * (row blocks of NN_ATTENTION_ROWS that skip the keys after them) against
 * the whole T x T square per head it replaced and the per-pair loops
 * (nn_attention_*_ref), alternating. `sft` is the default shape at the
 * instruction tuning's 4 x 1,024 tokens, where attention weighs most.
 *
 * Output: `name value unit` lines on stdout; `#` lines are context.
 * Usage: train [--threads N] [--steps N] [--only default|sft|124m] [--config FILE]
 *              [--attention-only]
 */
#include "core/error.h"
#include "tensor/tensor.h"
#include "train/llama_train.h"
#include "train/train_nn.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The strict baseline: the machine's best sgemm, a square product this size. */
#define SQUARE 1536

/* sgemm GFLOP/s for out (M, N) = A (M, K) B^T, best of reps. */
static double sgemm_peak(int M, int N, int K, int reps)
{
    float *a = malloc(sizeof(float) * (size_t)M * K), *b = malloc(sizeof(float) * (size_t)N * K),
          *c = malloc(sizeof(float) * (size_t)M * N);
    if (!a || !b || !c) {
        fprintf(stderr, "bench/train: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        b[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
    double best = 1e30;
    tensor_sgemm(0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N); /* warm */
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        tensor_sgemm(0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * M * N * K / best / 1e9;
}

/* Attention forward + backward of one layer at (B, T, NH, NKV, HD): the
 * sgemm path the model uses against the per-pair loops, best of reps each,
 * alternating. */
static void attention_ab(const char *name, int B, int T, int NH, int NKV, int HD, int threads)
{
    size_t QD = (size_t)NH * HD, KVD = (size_t)NKV * HD, N = (size_t)B * T;
    float *q = calloc(N * QD, sizeof(float)), *k = calloc(N * KVD, sizeof(float)), *v = calloc(N * KVD, sizeof(float)),
          *o = calloc(N * QD, sizeof(float)), *att = calloc((size_t)B * NH * T * T, sizeof(float)),
          *dq = calloc(N * QD, sizeof(float)), *dk = calloc(N * KVD, sizeof(float)),
          *dv = calloc(N * KVD, sizeof(float)), *dout = calloc(N * QD, sizeof(float));
    if (!q || !k || !v || !o || !att || !dq || !dk || !dv || !dout) {
        fprintf(stderr, "bench/train: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < N * QD; i++)
        q[i] = dout[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < N * KVD; i++)
        k[i] = v[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
    struct tpool *pool = tpool_new(threads);
    double best[3] = {1e30, 1e30, 1e30};
    for (int r = 0; r < 4; r++)
        for (int w = 0; w < 3; w++) {
            double t0 = now();
            if (w == 0) { /* the model's: row blocks that skip the keys after them */
                nn_attention_forward(pool, o, att, q, k, v, B, T, NH, NKV, HD);
                nn_attention_backward(pool, dq, dk, dv, dout, q, k, v, att, o, B, T, NH, NKV, HD);
            } else if (w == 1) { /* the whole T x T square per head, as before the blocks */
                nn_attention_forward_rows(o, att, q, k, v, B, T, NH, NKV, HD, T);
                if (nn_attention_backward_rows(dq, dk, dv, dout, q, k, v, att, o, B, T, NH, NKV, HD, T)) {
                    fprintf(stderr, "bench/train: out of memory\n");
                    exit(1);
                }
            } else {
                nn_attention_forward_ref(pool, o, att, q, k, v, B, T, NH, NKV, HD);
                nn_attention_backward_ref(pool, dq, dk, dv, dout, q, k, v, att, o, B, T, NH, NKV, HD);
            }
            double dt = now() - t0;
            best[w] = dt < best[w] ? dt : best[w];
        }
    printf("train_%s_attention_layer_sgemm_rows%d %.2f ms\n", name, NN_ATTENTION_ROWS, best[0] * 1e3);
    printf("train_%s_attention_layer_sgemm_square %.2f ms\n", name, best[1] * 1e3);
    printf("train_%s_attention_layer_loops %.2f ms\n", name, best[2] * 1e3);
    printf("train_%s_attention_rows_vs_square %.2f x\n", name, best[1] / best[0]);
    printf("train_%s_attention_speedup %.2f x\n", name, best[2] / best[0]);
    tpool_free(pool);
    free(q), free(k), free(v), free(o), free(att), free(dq), free(dk), free(dv), free(dout);
}

struct cfgrun {
    const char *name;
    struct ltr_config cfg;
    int B, T;
};

static int attention_only;

static void run(const struct cfgrun *cr, int threads, int steps)
{
    const struct ltr_config *c = &cr->cfg;
    if (attention_only) {
        attention_ab(cr->name, cr->B, cr->T, c->NH, c->NKV, c->C / c->NH, threads);
        return;
    }
    int N = cr->B * cr->T;
    double peak0 = sgemm_peak(N, c->F, c->C, 5), sq0 = sgemm_peak(SQUARE, SQUARE, SQUARE, 3);
    struct ltr_model *m;
    int rc = ltr_model_new(&m, c, cr->B, cr->T, threads);
    if (rc) {
        fprintf(stderr, "bench/train: %s: %s\n", cr->name, aisle_strerror(rc));
        exit(1);
    }
    ltr_init(m, 1, 0.02f);
    int32_t *tok = malloc(sizeof *tok * (size_t)N), *tgt = malloc(sizeof *tgt * (size_t)N);
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)c->V);
    }
    for (int i = 0; i < N; i++)
        tgt[i] = tok[(i + 1) % N];
    struct ltr_adamw opt = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
    double best = 1e30, bf = 0, bb = 0, bo = 0;
    for (int k = 0; k < steps + 1; k++) {
        double t0 = now();
        float loss;
        ltr_zero_grad(m);
        if (ltr_forward(m, tok, tgt, NULL, cr->B, cr->T, &loss)) {
            fprintf(stderr, "bench/train: forward failed\n");
            exit(1);
        }
        double t1 = now();
        ltr_backward(m, 1.0f);
        double t2 = now();
        ltr_clip_grad_norm(m, 1.0f);
        ltr_adamw_step(m, &opt);
        double t3 = now();
        if (k > 0 && t3 - t0 < best) {
            best = t3 - t0;
            bf = t1 - t0;
            bb = t2 - t1;
            bo = t3 - t2;
        }
    }
    double peak1 = sgemm_peak(N, c->F, c->C, 5), peak = peak0 > peak1 ? peak0 : peak1;
    double sq1 = sgemm_peak(SQUARE, SQUARE, SQUARE, 3), sq = sq0 > sq1 ? sq0 : sq1;
    size_t nonemb = m->n_params - (size_t)c->V * c->C * (c->tied ? 1 : 2);
    double fpt = 6.0 * ((double)nonemb + (double)c->V * c->C) + 6.0 * c->L * (double)cr->T * c->C;
    double tps = N / best, achieved = fpt * tps / 1e9;
    printf("# %s: C %d, L %d, NH %d, NKV %d, F %d, V %d, %s; B %d x T %d; %zu parameters (%zu non-embedding); "
           "%.3g model FLOPs/token; %d threads\n",
           cr->name, c->C, c->L, c->NH, c->NKV, c->F, c->V, c->tied ? "tied" : "untied", cr->B, cr->T, m->n_params,
           nonemb, fpt, threads);
    printf("train_%s_sgemm_peak_before %.1f GFLOP/s\n", cr->name, peak0);
    printf("train_%s_sgemm_peak_after %.1f GFLOP/s\n", cr->name, peak1);
    printf("train_%s_step %.3f s\n", cr->name, best);
    printf("train_%s_forward %.3f s\n", cr->name, bf);
    printf("train_%s_backward %.3f s\n", cr->name, bb);
    printf("train_%s_optimizer %.3f s\n", cr->name, bo);
    printf("train_%s_tokens_per_s %.0f tokens/s\n", cr->name, tps);
    printf("train_%s_model_gflops %.1f GFLOP/s\n", cr->name, achieved);
    printf("train_%s_sgemm_square_peak %.1f GFLOP/s\n", cr->name, sq);
    printf("train_%s_mfu %.1f %%\n", cr->name, 100.0 * achieved / peak);
    printf("train_%s_mfu_square %.1f %%\n", cr->name, 100.0 * achieved / sq);
    fflush(stdout);
    attention_ab(cr->name, cr->B, cr->T, c->NH, c->NKV, c->HD ? c->HD : c->C / c->NH, threads);
    fflush(stdout);
    free(tok);
    free(tgt);
    ltr_model_free(m);
}

/* The default model's shape from scripts/default-model.conf (`key = value`
 * lines; dim, layers, heads, kv-heads, ffn, ctx, micro-batch, tied), so the
 * bench follows the config: 0, or -1 when the file cannot be read. */
static int read_conf(const char *path, struct cfgrun *cr)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256], key[64];
    long v;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, " %63[a-z-] = %ld", key, &v) != 2)
            continue;
        if (!strcmp(key, "dim"))
            cr->cfg.C = (int)v;
        else if (!strcmp(key, "layers"))
            cr->cfg.L = (int)v;
        else if (!strcmp(key, "heads"))
            cr->cfg.NH = (int)v;
        else if (!strcmp(key, "kv-heads"))
            cr->cfg.NKV = (int)v;
        else if (!strcmp(key, "ffn"))
            cr->cfg.F = (int)v;
        else if (!strcmp(key, "ctx"))
            cr->cfg.max_ctx = cr->T = (int)v;
        else if (!strcmp(key, "micro-batch"))
            cr->B = (int)v;
        else if (!strcmp(key, "tied"))
            cr->cfg.tied = (int)v;
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = nc > 0 ? (int)nc : 1, steps = 2;
    const char *only = NULL, *conf = "scripts/default-model.conf";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            conf = argv[++i];
        else if (!strcmp(argv[i], "--attention-only"))
            attention_only = 1;
        else {
            fprintf(stderr, "usage: train [--threads N] [--steps N] [--only default|sft|124m] [--config FILE] "
                            "[--attention-only]\n");
            return 2;
        }
    }
    if (threads < 1 || steps < 1) {
        fprintf(stderr, "bench/train: --threads and --steps must be >= 1\n");
        return 2;
    }
    tensor_blas_set_threads(threads);
    /* default: the default model's pretraining shape and micro-batch, read
     * from its config (v1's C 256 shape if the file is not there); sft: that
     * shape at the instruction tuning's 4 x 1,024; and the 124M Llama. */
    struct cfgrun runs[] = {
        {"default", {.V = 8192, .C = 256, .L = 6, .NH = 4, .NKV = 4, .F = 704, .max_ctx = 512, .tied = 1}, 8, 512},
        {"sft", {0}, 4, 1024},
        {"124m", {.V = 32000, .C = 768, .L = 12, .NH = 12, .NKV = 12, .F = 3072, .max_ctx = 256, .tied = 1}, 4, 256},
    };
    if (read_conf(conf, &runs[0]))
        printf("# %s not readable: the built-in C 256 x 6 shape\n", conf);
    else
        printf("# default shape from %s\n", conf);
    if (runs[0].cfg.C < 1 || runs[0].cfg.L < 1 || runs[0].cfg.NH < 1 || runs[0].cfg.NKV < 1 ||
        runs[0].cfg.C % runs[0].cfg.NH || runs[0].cfg.NH % runs[0].cfg.NKV || runs[0].cfg.F < 1 || runs[0].B < 1 ||
        runs[0].T < 1) {
        fprintf(stderr, "bench/train: %s: the shape does not make a model\n", conf);
        return 2;
    }
    runs[1].cfg = runs[0].cfg;
    runs[1].cfg.max_ctx = 1024;
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++)
        if (!only || !strcmp(only, runs[i].name))
            run(&runs[i], threads, steps);
    return 0;
}
