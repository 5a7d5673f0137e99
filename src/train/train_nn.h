/*
 * train_nn.h — the training-side kernels of the Llama forward and their backward
 * passes, in F32, llm.c style: nn_X_forward(out, inp, ..., dims) saves what
 * the backward needs; nn_X_backward(dinp, dweight, dout, ...) ACCUMULATES (+=)
 * into every gradient it is given.
 *
 * Dims legend: N rows of activations (N = B*T tokens, B batch, T time),
 * C channels, OC output channels of a matmul, V vocabulary, NH query heads,
 * NKV key/value heads, HD head_dim, QD = NH*HD, KVD = NKV*HD, n plain length.
 *
 * Design: the forwards that have no state to save are the inference engine's
 * own kernels (src/tensor: nn_rmsnorm_forward, nn_rope_forward,
 * nn_swiglu_forward), so training computes the engine's math; this file adds
 * the kernels the engine does not have (embedding lookup, a saving causal
 * attention over whole sequences, cross-entropy) and every backward. The big
 * products are OpenBLAS sgemm (tensor_sgemm, row-major), attention's too (per
 * batch row and head); the reference attention loops run on a thread
 * pool, one (batch row, KV head group) per job, so every output element is
 * written by exactly one thread in a fixed order: results do not depend on
 * the thread count.
 *
 * (Named train_nn, not nn: the static library is built with ar, which keys
 * members by file name, and src/tensor/nn.c exists.)
 *
 * Invariants: weight matrices are row-major (OC, C), one row per output
 * channel, exactly as GGUF stores them ({C, OC} in ggml's ne order);
 * attention's query head h reads key/value head h / (NH/NKV) (llama.cpp).
 *
 * Ownership: every pointer is borrowed for the call; nothing is retained.
 *
 * THREAD SAFETY: pure functions of their arguments; the ones taking a
 * struct tpool use it for the call (one call per pool at a time).
 */
#ifndef AISLE_TRAIN_TRAIN_NN_H
#define AISLE_TRAIN_TRAIN_NN_H

#include <stdint.h>

struct tpool;

/* out (N, C) = wte[inp[i]] rows; wte (V, C); every inp[i] in [0, V). */
void nn_encoder_forward(float *out, const int32_t *inp, const float *wte, int N, int C);
/* dwte (V, C) row inp[i] += dout (N, C) row i. */
void nn_encoder_backward(float *dwte, const float *dout, const int32_t *inp, int N, int C);

/* Backward of the engine's nn_rmsnorm_forward (y = x * r * w, r = 1/sqrt(mean(x^2) + eps)),
 * recomputing r from inp (N, C): dinp (N, C) += ..., dweight (C) += .... */
void nn_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                         int N, int C, float eps);

/* out (N, OC) = inp (N, C) · weight^T, weight (OC, C): tensor_sgemm. */
void nn_matmul_forward(float *out, const float *inp, const float *weight, int N, int C, int OC);
/* dinp (N, C) += dout (N, OC) · weight; dweight (OC, C) += dout^T · inp. Either
 * gradient may be NULL (not wanted). */
void nn_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight, int N,
                        int C, int OC);

/* Backward of the engine's nn_rope_forward on x (N, nheads, head_dim) at
 * positions pos (N): a rotation's transpose is the rotation by -theta, so
 * dx is rotated in place by -pos * base^(-2i/head_dim) on adjacent pairs. */
void nn_rope_backward(float *dx, const int *pos, int N, int nheads, int head_dim, float freq_base);

/* Causal grouped-query attention over B sequences of T positions each.
 * q (B, T, QD), k and v (B, T, KVD), already rotated; out (B, T, QD);
 * att (B, NH, T, T) receives the softmax probabilities (row t holds
 * positions 0..t, zero after). Scores scaled by 1/sqrt(HD). Per (batch row,
 * head): sgemm for the scores and the output, the softmax between, in
 * blocks of NN_ATTENTION_ROWS query rows that skip the keys after the
 * block; pool is unused (the signature matches the _ref loops below) and
 * may be NULL. */
void nn_attention_forward(struct tpool *pool, float *out, float *att, const float *q, const float *k, const float *v,
                          int B, int T, int NH, int NKV, int HD);
/* dq (B, T, QD), dk, dv (B, T, KVD) += gradients from dout (B, T, QD), given
 * the forward's q, k, v, att and out (the softmax backward needs
 * sum_j p_j (dout . v_j) = dout . out). Four sgemm per (batch row, head,
 * row block) with a NN_ATTENTION_ROWS x T scratch allocated per call (the
 * _ref loops when it cannot be). pool may be NULL. */
void nn_attention_backward(struct tpool *pool, float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *att, const float *out, int B, int T, int NH,
                           int NKV, int HD);

/* The two above with the row block as a parameter (rows < 1 or >= T: the
 * whole T x T square at once, as the trainer did before blocks): for the
 * tests, which check several block sizes against the loops, and for
 * bench/train, which times blocks against the square. The backward returns
 * AISLE_ENOMEM (nothing added) when its rows x T scratch cannot be had. */
enum { NN_ATTENTION_ROWS = 256 };
void nn_attention_forward_rows(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                               int NH, int NKV, int HD, int rows);
int nn_attention_backward_rows(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                               const float *v, const float *att, const float *out, int B, int T, int NH, int NKV,
                               int HD, int rows);

/* The same two as plain per-pair loops (SIMD dot/axpy) on the pool, one
 * (batch row, KV head) unit per job: the reference the sgemm versions above
 * are tested against, and the backward's fallback when its T x T scratch
 * cannot be allocated. */
void nn_attention_forward_ref(struct tpool *pool, float *out, float *att, const float *q, const float *k,
                              const float *v, int B, int T, int NH, int NKV, int HD);
void nn_attention_backward_ref(struct tpool *pool, float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, const float *att, const float *out, int B, int T, int NH,
                               int NKV, int HD);

/* Backward of the engine's nn_swiglu_forward (out = silu(gate) * up):
 * dgate (n) += ..., dup (n) += .... */
void nn_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int n);

/* out (n) = a + b (out may alias either); backward: da += dout, db += dout. */
void nn_residual_forward(float *out, const float *a, const float *b, int n);
void nn_residual_backward(float *da, float *db, const float *dout, int n);

/* Softmax and cross-entropy fused, per row: probs (N, V) = softmax(logits)
 * (probs may equal logits: in place), losses (N) = -log probs[targets[i]].
 * Every target in [0, V). */
void nn_crossentropy_forward(float *probs, float *losses, const float *logits, const int32_t *targets, int N, int V);
/* dlogits (N, V) += dlosses[i] * (probs[i] - onehot(targets[i])): the
 * gradient of sum_i dlosses[i] * losses[i]. dlosses carries the loss mask
 * and the mean's 1/sum of weights. dlogits may equal probs (then it is
 * overwritten, not accumulated: the in-place form the model uses). */
void nn_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, const float *dlosses, int N,
                              int V);

/* One AdamW update of n parameters (decoupled weight decay, bias correction):
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd p).
 * t is the 1-based step number. */
void nn_adamw_update(float *p, const float *g, float *m, float *v, long n, float lr, float b1, float b2, float eps,
                     float wd, int t);

#endif
