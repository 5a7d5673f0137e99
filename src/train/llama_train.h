/*
 * llama_train.h — the training-side Llama in F32: one memory plan (llm.c):
 * a slab of parameters, one of gradients, one each for AdamW's m and v, and
 * one of activations sized for (B, T); forward to the mean loss, backward,
 * AdamW, gradient clipping, the learning-rate schedule, and export to GGUF
 * that the inference engine (src/model) and llama.cpp load.
 *
 * Dims legend: B batch rows, T time, N = B*T, C n_embd, L layers, NH query
 * heads, NKV key/value heads, HD head_dim, QD = NH*HD, KVD = NKV*HD, F n_ff,
 * V vocabulary.
 *
 * Design: the architecture and math are the engine's LLM_ARCH_LLAMA forward:
 * RMSNorm, Q/K/V, llama.cpp "normal" RoPE on adjacent pairs, causal GQA with
 * scale 1/sqrt(HD), output projection, residual, RMSNorm, SwiGLU FFN,
 * residual; final RMSNorm; output projection (token_embd when tied);
 * softmax cross-entropy with a per-position weight (loss mask). Parameters
 * are stored exactly as GGUF holds them (row-major (out, in) matrices, Q/K
 * rows in the interleaved order the adjacent-pair RoPE uses), so export is a
 * plain copy. Gradient accumulation: backward adds into the gradient slab;
 * call it for N micro-batches with grad_scale 1/N, then step.
 *
 * Invariants: the four parameter-shaped slabs share one layout (struct
 * ltr_params' pointers at the same offsets). Forward/backward positions are
 * 0..T-1 in every batch row. Results for a fixed seed and thread count are
 * deterministic (sgemm with a fixed thread count; attention units written by
 * one thread each).
 *
 * Ownership: struct ltr_model owns its slabs and its thread pool. Inputs
 * (tokens, targets, weights) are borrowed for the call.
 *
 * THREAD SAFETY: one thread at a time per model.
 */
#ifndef AISLE_TRAIN_LLAMA_TRAIN_H
#define AISLE_TRAIN_LLAMA_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h" /* enum ggml_type */

struct gguf;
struct gguf_writer;
struct tpool;

struct ltr_config {
    int V, C, L, NH, NKV, HD, F; /* HD 0: C / NH */
    int max_ctx;                 /* llama.context_length written on export */
    float rms_eps;               /* 0: 1e-5 */
    float rope_base;             /* 0: 10000 */
    int tied;                    /* 1: logits use token_embd, no output matrix */
};

#define LTR_N_TENSORS 12
/* Pointers into one slab, llm.c style; stacked per layer. */
struct ltr_params {
    float *wte;      /* (V, C) */
    float *attn_norm; /* (L, C) */
    float *wq;       /* (L, QD, C) */
    float *wk;       /* (L, KVD, C) */
    float *wv;       /* (L, KVD, C) */
    float *wo;       /* (L, C, QD) */
    float *ffn_norm; /* (L, C) */
    float *wgate;    /* (L, F, C) */
    float *wup;      /* (L, F, C) */
    float *wdown;    /* (L, C, F) */
    float *out_norm; /* (C) */
    float *wout;     /* (V, C); NULL when tied */
};

struct ltr_acts {
    float *resid;  /* (L+1, N, C) residual stream: [0] embeddings, [l+1] after layer l */
    float *xn1;    /* (L, N, C) attention-norm output */
    float *q;      /* (L, N, QD) after RoPE */
    float *k;      /* (L, N, KVD) after RoPE */
    float *v;      /* (L, N, KVD) */
    float *att;    /* (L, B, NH, T, T) probabilities */
    float *atty;   /* (L, N, QD) attention output */
    float *res2;   /* (L, N, C) after the attention residual */
    float *xn2;    /* (L, N, C) ffn-norm output */
    float *gate;   /* (L, N, F) */
    float *up;     /* (L, N, F) */
    float *hsw;    /* (L, N, F) swiglu output */
    float *xnf;    /* (N, C) final-norm output */
    float *logits; /* (N, V) logits; probabilities after a forward with targets; dlogits in backward */
    float *losses; /* (N) */
    float *dlosses; /* (N) */
    /* backward scratch */
    float *dres, *dres2, *dxn; /* (N, C) */
    float *dq, *datty;         /* (N, QD) */
    float *dk, *dv;            /* (N, KVD) */
    float *dgate, *dup, *dh;   /* (N, F) */
    int *pos;                  /* (N) */
};

struct ltr_model {
    struct ltr_config cfg;
    int B, T;                   /* activations sized for these */
    size_t sizes[LTR_N_TENSORS]; /* floats per parameter tensor (0 for an absent wout) */
    size_t n_params;
    float *params_mem, *grads_mem, *m_mem, *v_mem, *acts_mem;
    size_t n_acts;              /* floats in acts_mem */
    struct ltr_params params, grads;
    struct ltr_acts acts;
    int32_t *tokens, *targets;  /* (B, T) copies of the last forward's inputs */
    float *weights;             /* (B, T) */
    int cur_B, cur_T, have_targets;
    float loss;                 /* mean loss of the last forward with targets */
    int step;                   /* AdamW steps taken */
    struct tpool *pool;
    double *norm_partial;       /* (ceil(n_params / 65536)) per-chunk sums of squares */
};

/* Allocate a model for cfg with activations for B x T, nthreads for the
 * pool (<= 0: online CPUs). Parameters are zero until ltr_init. 0 with *out
 * set, AISLE_EINVAL (bad config), AISLE_ETOOBIG (past the GGUF reader's limits
 * or element counts that overflow) or AISLE_ENOMEM. */
int ltr_model_new(struct ltr_model **out, const struct ltr_config *cfg, int B, int T, int nthreads);
void ltr_model_free(struct ltr_model *m); /* NULL is a no-op */

/* Deterministic init from seed: norms 1, matrices N(0, std^2), the residual
 * projections (attn_output, ffn_down) N(0, (std/sqrt(2L))^2) (GPT-2). Clears
 * grads, optimizer state and the step count. */
void ltr_init(struct ltr_model *m, uint64_t seed, float std);

/* Forward on tokens (B, T), 1 <= B <= the model's B, 1 <= T <= its T. With
 * targets (B, T) it writes to *loss (may be NULL) the weighted mean loss
 * sum_i w_i loss_i / sum_i w_i (weights NULL: all 1) and keeps the
 * probabilities for the backward; without targets acts.logits holds the
 * logits (B, T, V) and *loss is 0. 0, or AISLE_EINVAL (nothing computed)
 * when a size is out of range, a token or target is outside [0, V), a weight
 * is negative or not finite, or the weights sum to 0. */
int ltr_forward(struct ltr_model *m, const int32_t *tokens, const int32_t *targets, const float *weights, int B, int T,
                float *loss);
/* Backward of the last forward with targets, adding grad_scale times the
 * gradient of its mean loss into the gradient slab. 0 or AISLE_EINVAL (no
 * forward with targets before it). */
int ltr_backward(struct ltr_model *m, float grad_scale);
void ltr_zero_grad(struct ltr_model *m);

/* Global L2 norm of the gradients (double accumulation); when max_norm > 0
 * and the norm exceeds it, the gradients are scaled to max_norm. Returns the
 * norm before clipping. */
float ltr_clip_grad_norm(struct ltr_model *m, float max_norm);

struct ltr_adamw {
    float lr, beta1, beta2, eps, weight_decay;
};
/* One AdamW step with the current gradients (step count + 1). Weight decay
 * applies to the matrices only: not to the norms nor the token embedding
 * (the tied output is the embedding and is not decayed). */
void ltr_adamw_step(struct ltr_model *m, const struct ltr_adamw *opt);

/* Learning rate at 0-based step: linear warmup max_lr*(step+1)/warmup for
 * step < warmup, then cosine from max_lr down to min_lr at step total-1 and
 * min_lr after. */
float ltr_lr_schedule(int step, int warmup, int total, float max_lr, float min_lr);

/* Add the llama.* hyperparameters and the F32 tensors with llama.cpp's names
 * to w (the caller may add a tokenizer and write it). 0 or a writer error. */
int ltr_export_gguf(const struct ltr_model *m, struct gguf_writer *w, const char *name);
/* The same with the weight matrices in wtype: GGML_TYPE_F32 or
 * GGML_TYPE_Q8_0 (a matrix whose rows are not whole 32-element blocks stays
 * F32, as llama.cpp's quantize does; norms are F32). AISLE_EINVAL for other types. */
int ltr_export_gguf_as(const struct ltr_model *m, struct gguf_writer *w, const char *name, enum ggml_type wtype);

/* The training config of a Llama GGUF (llama.* hyperparameters; tied when
 * output.weight is absent). 0 or an error with detail in err. */
int ltr_config_from_gguf(const struct gguf *g, struct ltr_config *cfg, char *err, size_t errlen);
/* Copy (dequantizing) every weight of g into m's parameters; m's config
 * must be g's (ltr_config_from_gguf). Optimizer state is untouched. 0 or
 * AISLE_EFORMAT / AISLE_ENOMEM with the tensor named in err. */
int ltr_load_gguf(struct ltr_model *m, const struct gguf *g, char *err, size_t errlen);

/* Export and write to path (no tokenizer). 0 or an error with detail in err. */
int ltr_save_gguf(const struct ltr_model *m, const char *path, char *err, size_t errlen);

#endif
