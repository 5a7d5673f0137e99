/*
 * bench/model.c — the engine on a 110M-parameter Llama (dim 768, 12 layers,
 * 12 heads, FFN 2048, vocab 32000, tied output, random weights) on 2 threads:
 * single-sequence decode for F32, F16, Q8_0 and Q4_0 as a fraction of the
 * memory-bandwidth roofline, prefill for each type, and 16 sequences
 * decoding together against one. Prefill (F16/Q8_0/Q4_0) and 16-sequence
 * decode are also timed without the tiles (row dots, dequantize+sgemm),
 * alternating, so each run carries its own A/B.
 *
 * Design: each weight type is written to a temporary GGUF (the same seeded
 * random weights, quantized by the gguf writer's reference quantizers) and
 * loaded like any model. The baseline is measured in the same run, right
 * alternating with each decode measurement: a streaming read of a 512 MiB
 * buffer by the model's own pool threads, so the roofline is bandwidth / bytes
 * of weights one token reads (every matrix plus one embedding row). Decode
 * and batch figures come from model/speed.h, the code `aisle bench model` runs,
 * best of 3 runs each; single-sequence decode and the bandwidth baseline
 * alternate (3 rounds, best of each). On a shared machine the best run is the
 * least disturbed one.
 *
 * Last, the sampler's cost per token over 32000 logits (default chain, top-p
 * alone) next to greedy, the one-pass baseline. The program counts its own
 * mallocs to report allocations per decode step (16 sequences, F32 KV for
 * f32/q8_0, F16 KV for f16/q4_0): the engine promises none.
 *
 * Output: `name value unit` lines on stdout; `#` lines are context.
 * Then the same figures (decode against the roofline, prefill, 16 and 32
 * sequences against one) for a real model file: --model FILE, by default the
 * default shopping model (AISLE_ROOT/models/aisle-shopping-small.gguf) when
 * it exists; lines named *_file.
 *
 * Usage: model [--threads N] [--steps N] [--dir DIR] [--types f32,f16,q8_0,q4_0] [--keep]
 *              [--model FILE | --no-model]
 * (--keep leaves DIR/aisle-bench-model-TYPE.gguf for `aisle bench model`.)
 */
#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/llama_names.h"
#include "gguf/quant.h"
#include "model/model.h"
#include "model/sample.h"
#include "model/speed.h"
#include "tensor/tensor.h"
#include "tensor/tensor_impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { C = 768, L = 12, NH = 12, F = 2048, V = 32000 };
#define BW_BYTES ((size_t)512 << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc, const char *detail)
{
    fprintf(stderr, "bench/model: %s: %s%s%s\n", what, aisle_strerror(rc), detail ? ": " : "", detail ? detail : "");
    exit(1);
}

/* ---- the model file ---------------------------------------------------------------- */

static uint64_t rng;
static float frand(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* A (rows, cols) tensor of random values scale*U(-1,1) + offset, stored as t. */
static void add(struct gguf_writer *g, const char *name, int rows, int cols, float scale, float offset,
                enum ggml_type t)
{
    size_t rb = ggml_row_size(t, cols);
    float *row = malloc((size_t)cols * sizeof(float));
    char *q = malloc(rb * (size_t)rows);
    if (!row || !q)
        die("weights", AISLE_ENOMEM, NULL);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++)
            row[c] = offset + scale * frand();
        if (ggml_quantize_row(t, row, q + rb * (size_t)r, cols))
            die("quantize", AISLE_EINVAL, name);
    }
    int64_t ne[2] = {cols, rows};
    int rc = gguf_writer_add_tensor(g, name, t, rows == 1 ? 1 : 2, ne, q, rb * (size_t)rows);
    if (rc)
        die("add tensor", rc, name);
    free(row);
    free(q);
}

static void write_model(const char *path, enum ggml_type t)
{
    struct gguf_writer *g = gguf_writer_new();
    if (!g)
        die("writer", AISLE_ENOMEM, NULL);
    rng = 42;
    gguf_writer_set_str(g, LLAMA_KEY_ARCH, "llama");
    gguf_writer_set_u32(g, LLAMA_KEY_CONTEXT_LENGTH, 1024);
    gguf_writer_set_u32(g, LLAMA_KEY_EMBEDDING_LENGTH, C);
    gguf_writer_set_u32(g, LLAMA_KEY_BLOCK_COUNT, L);
    gguf_writer_set_u32(g, LLAMA_KEY_FEED_FORWARD_LENGTH, F);
    gguf_writer_set_u32(g, LLAMA_KEY_HEAD_COUNT, NH);
    gguf_writer_set_u32(g, LLAMA_KEY_HEAD_COUNT_KV, NH);
    gguf_writer_set_f32(g, LLAMA_KEY_RMS_EPS, 1e-5f);
    add(g, LLAMA_TENSOR_TOKEN_EMBD, V, C, 1.0f, 0, t);
    const float s = 0.036f; /* ~1/sqrt(768): activations stay O(1) */
    char name[64];
    for (int l = 0; l < L; l++) {
        static const struct { int which, rows, cols; } m[] = {
            {LLAMA_ATTN_Q, C, C}, {LLAMA_ATTN_K, C, C}, {LLAMA_ATTN_V, C, C}, {LLAMA_ATTN_OUTPUT, C, C},
            {LLAMA_FFN_GATE, F, C}, {LLAMA_FFN_UP, F, C}, {LLAMA_FFN_DOWN, C, F},
        };
        llama_tensor_name(name, sizeof(name), l, LLAMA_ATTN_NORM);
        add(g, name, 1, C, 0.1f, 1.0f, GGML_TYPE_F32);
        llama_tensor_name(name, sizeof(name), l, LLAMA_FFN_NORM);
        add(g, name, 1, C, 0.1f, 1.0f, GGML_TYPE_F32);
        for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
            llama_tensor_name(name, sizeof(name), l, (enum llama_blk_tensor)m[i].which);
            add(g, name, m[i].rows, m[i].cols, s, 0, t);
        }
    }
    add(g, LLAMA_TENSOR_OUTPUT_NORM, 1, C, 0.1f, 1.0f, GGML_TYPE_F32);
    char err[256];
    int rc = gguf_writer_write(g, path, err, sizeof(err));
    if (rc)
        die("write", rc, err);
    gguf_writer_free(g);
}

/* ---- the baseline: streaming read bandwidth ------------------------------------------ */

struct bw_job {
    const float *buf; /* (n) */
    size_t n;
    float sink[64];
};

static void bw_worker(void *ctx, int ith, int nth)
{
    struct bw_job *j = ctx;
    size_t per = j->n / (size_t)nth, lo = per * (size_t)ith;
    float s = 0;
    /* A dot of the slice with itself: one pass over each cache line. */
    for (size_t o = 0; o < per; o += 1 << 20)
        s += nn_dot_f32(j->buf + lo + o, j->buf + lo + o, (int)(per - o < (1 << 20) ? per - o : (1 << 20)));
    j->sink[ith % 64] = s;
}

static double bandwidth(struct tpool *p, const float *buf)
{
    struct bw_job j = {.buf = buf, .n = BW_BYTES / sizeof(float)};
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        tpool_run(p, bw_worker, &j);
        double bw = (double)BW_BYTES / (now() - t0);
        best = bw > best ? bw : best;
    }
    return best;
}

/* ---- sampling cost per token ------------------------------------------------------- */

/* Microseconds per lm_sampler_sample over V = 32000 logits shaped like a
 * language model's (a few likely tokens, a long tail), best of 3 x 200. */
static double sample_us(const struct lm_sample_params *p, const float *logits, float *work)
{
    struct lm_sampler *s;
    if (lm_sampler_new(&s, V, p))
        die("sampler", AISLE_ENOMEM, NULL);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        for (int k = 0; k < 200; k++) {
            memcpy(work, logits, V * sizeof(float));
            int32_t t;
            lm_sampler_sample(s, work, &t);
            lm_sampler_accept(s, t);
        }
        double us = (now() - t0) / 200 * 1e6;
        best = us < best ? us : best;
    }
    lm_sampler_free(s);
    return best;
}

static void bench_sampling(void)
{
    float *logits = malloc(V * sizeof(float)), *work = malloc(V * sizeof(float));
    if (!logits || !work)
        die("sampling", AISLE_ENOMEM, NULL);
    rng = 7;
    for (int i = 0; i < V; i++) /* Gumbel-like tail: most mass on a few hundred tokens */
        logits[i] = 4.0f * frand() - (float)(i % 997) * 0.01f;
    struct lm_sample_params greedy, dflt, topp;
    lm_sample_params_default(&dflt);
    dflt.repeat_penalty = 1.1f;
    greedy = dflt;
    greedy.temperature = 0;
    topp = dflt;
    topp.top_k = 0;
    topp.min_p = 0;
    topp.top_p = 0.9f;
    double g = sample_us(&greedy, logits, work);
    printf("sample_greedy %.1f us\n", g);
    printf("sample_default %.1f us\n", sample_us(&dflt, logits, work));
    printf("sample_top_p_only %.1f us\n", sample_us(&topp, logits, work));
    printf("# sampling baseline: greedy (one pass over the logits) %.1f us\n", g);
    free(logits);
    free(work);
}

/* ---- allocations per token ---------------------------------------------------------- */

/* Every malloc/calloc/realloc of this program is counted (glibc's own
 * allocator does the work), so the run can check that decoding allocates
 * nothing once the model, the cache and the pool's scratch exist. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
static long nallocs;
void *malloc(size_t n);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t n);
void *malloc(size_t n)
{
    __atomic_add_fetch(&nallocs, 1, __ATOMIC_RELAXED);
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size)
{
    __atomic_add_fetch(&nallocs, 1, __ATOMIC_RELAXED);
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n)
{
    __atomic_add_fetch(&nallocs, 1, __ATOMIC_RELAXED);
    return __libc_realloc(p, n);
}

/* Allocations during 24 decode steps of 16 sequences (crossing KV block
 * boundaries), after one warm-up step. */
static long decode_allocs(struct lm_model *m, int f16)
{
    struct lm_kv *kv;
    struct lm_kv_opts ko = {.block_tokens = 16, .n_blocks = 16 * 5, .max_seqs = 16, .max_seq_len = 80, .f16 = f16};
    struct lm_batch b;
    float *lg = malloc(sizeof(float) * 16 * V);
    if (lm_kv_new(&kv, m, &ko) || lm_batch_init(&b, 16 * 40) || !lg)
        die("alloc check", AISLE_ENOMEM, NULL);
    int seq[16], rc = 0;
    for (int s = 0; s < 16; s++) {
        lm_kv_seq_new(kv, &seq[s]);
        for (int i = 0; i < 40; i++)
            lm_batch_add(&b, seq[s], i, (i * 7 + s) % V, i == 39);
    }
    long n0 = 0;
    for (int k = -1; k < 24 && !rc; k++) {
        if (k == 0)
            n0 = __atomic_load_n(&nallocs, __ATOMIC_RELAXED);
        if (k >= 0) {
            b.n = 0;
            for (int s = 0; s < 16; s++)
                lm_batch_add(&b, seq[s], 40 + k, (k * 13 + s) % V, 1);
        }
        rc = lm_decode(m, kv, &b, lg);
    }
    long n = __atomic_load_n(&nallocs, __ATOMIC_RELAXED) - n0;
    if (rc)
        die("alloc check", rc, lm_model_errmsg(m));
    lm_batch_release(&b);
    lm_kv_free(kv);
    free(lg);
    return n;
}

/* ---- the runs ---------------------------------------------------------------------------- */

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One timed call: a 256-token prefill (nseq 0; warm-up and 2 runs) or nseq
 * sequences decoding steps/2 steps after a 16-token prompt (2 runs); keeps
 * the best tok/s in *best and, for prefill, the best tokens per second of
 * process CPU time (both threads, the pool's spinning included: a figure the
 * other processes' load does not move much) in *cpu. */
static void timed(struct lm_model *m, int nseq, int steps, double *best, double *cpu)
{
    double c0 = cpu_now(), t;
    int rc = nseq ? lm_speed_decode(m, nseq, 16, steps / 2 > 0 ? steps / 2 : 1, 2, 0, &t)
                  : lm_speed_prefill(m, 256, 2, 0, &t);
    if (rc)
        die(nseq ? "batch decode" : "prefill", rc, lm_model_errmsg(m));
    double per_cpu = 3.0 * 256 / (cpu_now() - c0);
    *best = t > *best ? t : *best;
    if (!nseq)
        *cpu = per_cpu > *cpu ? per_cpu : *cpu;
}

/* rounds of the current kernels and (when tiled) the kernels before the
 * integer tiles, alternating so a burst of load hits both: r = {tok/s now,
 * tok/s before, per CPU-second now, per CPU-second before}. */
static void ab_runs(struct lm_model *m, int nseq, int steps, int tiled, int rounds, double r[4])
{
    r[0] = r[1] = r[2] = r[3] = 0;
    for (int i = 0; i < rounds; i++) {
        tensor_set_tile(0, 0, 2);
        timed(m, nseq, steps, &r[0], &r[2]);
        if (!tiled)
            continue;
        tensor_set_tile(0, 0, 0);
        timed(m, nseq, steps, &r[1], &r[3]);
        tensor_set_tile(0, 0, 2);
    }
}

/* Single-sequence decode (16-position context) against the roofline:
 * baseline and decode alternate, 3 rounds, best of each, so a burst of load
 * from other processes hits both sides alike. Prints the NAME_ lines and
 * returns the decode tok/s. */
static double decode_vs_roofline(struct lm_model *m, float *bwbuf, int steps, const char *name)
{
    double bw = 0, one = 0;
    size_t bpt = lm_model_bytes_per_token(m);
    for (int r = 0; r < 3; r++) {
        double b = bandwidth(lm_model_pool(m), bwbuf), d;
        int rc = lm_speed_decode(m, 1, 16, steps, 1, 0, &d);
        if (rc)
            die("decode", rc, lm_model_errmsg(m));
        bw = b > bw ? b : bw;
        one = d > one ? d : one;
    }
    double roof = bw / (double)bpt;
    printf("bandwidth_read_%s %.2f GB/s\n", name, bw / 1e9);
    printf("weights_per_token_%s %.1f MB\n", name, (double)bpt / 1e6);
    printf("decode_%s %.1f tok/s\n", name, one);
    printf("decode_%s_roofline %.1f tok/s\n", name, roof);
    printf("decode_%s_of_roofline %.3f ratio\n", name, one / roof);
    fflush(stdout);
    return one;
}

/* The default shopping model (or any GGUF): the same figures on a trained
 * model, whose weights (7.3 MB at Q8_0) fit in the L3 cache, so its decode
 * is bound by compute and dispatch rather than DRAM: the "roofline" here is
 * DRAM's and a ratio above 1 is expected. */
static void bench_file(const char *path, int threads, int steps, float *bwbuf)
{
    struct lm_model *m;
    char err[256];
    struct lm_model_opts o = {.nthreads = threads, .max_batch = 512};
    int rc = lm_model_load(&m, path, &o, err, sizeof(err));
    if (rc)
        die(path, rc, err);
    const struct llama_hparams *h = lm_model_hparams(m);
    printf("# %s: dim %u, %u layers, %u heads (%u KV), FFN %u, vocab %u, %s\n", path, h->n_embd, h->n_layer,
           h->n_head, h->n_head_kv, h->n_ff, h->n_vocab, ggml_type_name(lm_model_wtype(m)));
    double w;
    if ((rc = lm_speed_decode(m, 1, 1, 2, 1, 0, &w)))
        die("warm-up", rc, lm_model_errmsg(m));
    double one = decode_vs_roofline(m, bwbuf, steps, "file");
    double r[4];
    ab_runs(m, 0, steps, 0, 3, r);
    printf("prefill_256_file %.1f tok/s\n", r[0]);
    printf("prefill_256_file_per_cpu_s %.1f tok\n", r[2]);
    for (int n = 16; n <= 32; n += 16) {
        ab_runs(m, n, steps, 0, 2, r);
        printf("decode_batch%d_file %.1f tok/s\n", n, r[0]);
        printf("decode_batch%d_vs_1_file %.2f x\n", n, r[0] / one);
    }
    fflush(stdout);
    lm_model_free(m);
}

int main(int argc, char **argv)
{
    int threads = 2, steps = 32;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    const char *types = "f32,f16,q8_0,q4_0";
    int keep = 0, no_file = 0;
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--types") && i + 1 < argc)
            types = argv[++i];
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--no-model"))
            no_file = 1;
        else {
            fprintf(stderr, "usage: model [--threads N] [--steps N] [--dir DIR] [--types f32,f16,q8_0,q4_0] [--keep] "
                            "[--model FILE | --no-model]\n");
            return 2;
        }
    }
    float *bwbuf = malloc(BW_BYTES);
    if (!bwbuf)
        die("bandwidth buffer", AISLE_ENOMEM, NULL);
    for (size_t i = 0; i < BW_BYTES / sizeof(float); i++)
        bwbuf[i] = (float)(i & 1023) * 1e-3f;
    char path[4096];
    printf("# 110M Llama: dim %d, %d layers, %d heads, FFN %d, vocab %d, tied output; %d threads; kernels %s\n", C, L,
           NH, F, V, threads, tensor_path_name(tensor_path()));

    static const char *const names[] = {"f32", "f16", "q8_0", "q4_0"};
    static const enum ggml_type tps[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
    double one[4] = {0};
    for (int k = 0; k < 4; k++) {
        if (!strstr(types, names[k]))
            continue;
        if (keep)
            snprintf(path, sizeof(path), "%s/aisle-bench-model-%s.gguf", dir, names[k]);
        else
            snprintf(path, sizeof(path), "%s/aisle-bench-model-%d.gguf", dir, (int)getpid());
        double t0 = now();
        write_model(path, tps[k]);
        struct lm_model *m;
        char err[256];
        struct lm_model_opts o = {.nthreads = threads, .max_batch = 512};
        int rc = lm_model_load(&m, path, &o, err, sizeof(err));
        if (rc)
            die("load", rc, err);
        printf("# %s: file written and loaded in %.1f s\n", names[k], now() - t0);
        /* Page the weights in (the map is lazy) before anything is timed. */
        double warm;
        if ((rc = lm_speed_decode(m, 1, 1, 2, 1, 0, &warm)))
            die("warm-up", rc, lm_model_errmsg(m));
        one[k] = decode_vs_roofline(m, bwbuf, steps, names[k]);
        if (tps[k] == GGML_TYPE_Q8_0) {
            /* Long context: the KV cache read per token (73 MB at 1,000
             * positions, F32) rivals the weights; baseline: the 16-position
             * decode above. */
            double lc;
            if ((rc = lm_speed_decode(m, 1, 1000, steps, 3, 0, &lc)))
                die("long decode", rc, lm_model_errmsg(m));
            printf("decode_ctx1000_%s %.1f tok/s\n", names[k], lc);
            printf("decode_ctx1000_vs_ctx16_%s %.2f ratio\n", names[k], lc / one[k]);
        }
        int tiled = tps[k] != GGML_TYPE_F32;
        double r[4];
        /* Prefill of 256 tokens; F16/Q8_0/Q4_0 against the path before the
         * tiles (row dots, dequantize+sgemm from T = 128); F32 is sgemm */
        ab_runs(m, 0, steps, tiled, tiled ? 3 : 1, r);
        printf("prefill_256_%s %.1f tok/s\n", names[k], r[0]);
        printf("prefill_256_%s_per_cpu_s %.1f tok\n", names[k], r[2]);
        if (tiled) {
            printf("prefill_256_%s_before_tiles %.1f tok/s\n", names[k], r[1]);
            printf("prefill_256_%s_before_tiles_per_cpu_s %.1f tok\n", names[k], r[3]);
            printf("prefill_256_%s_vs_before %.2f x\n", names[k], r[0] / r[1]);
        }
        printf("decode_allocs_per_step_%s %.2f count\n", names[k], (double)decode_allocs(m, k % 2) / 24);
        if (tps[k] != GGML_TYPE_F16) {
            /* 16 sequences stepping together, also without the tiles (F32:
             * the float tiles against the row dots; Q8_0/Q4_0: the integer
             * tiles against the row dots) */
            ab_runs(m, 16, steps, 1, 2, r);
            printf("decode_batch16_%s %.1f tok/s\n", names[k], r[0]);
            printf("decode_batch16_vs_1_%s %.2f x\n", names[k], r[0] / one[k]);
            printf("decode_batch16_%s_before_tiles %.1f tok/s\n", names[k], r[1]);
            printf("decode_batch16_vs_1_%s_before_tiles %.2f x\n", names[k], r[1] / one[k]);
        }
        fflush(stdout);
        lm_model_free(m);
        if (!keep)
            unlink(path);
    }
    /* The default shopping model, found through AISLE_ROOT (make bench sets it)
     * or the current directory, unless --model names another or --no-model. */
    char dflt[4096];
    if (!file && !no_file) {
        snprintf(dflt, sizeof(dflt), "%s/models/aisle-shopping-small.gguf",
                 getenv("AISLE_ROOT") ? getenv("AISLE_ROOT") : ".");
        if (access(dflt, R_OK) == 0)
            file = dflt;
    }
    if (file && !no_file)
        bench_file(file, threads, steps, bwbuf);
    free(bwbuf);
    bench_sampling();
    return 0;
}
