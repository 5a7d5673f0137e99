/*
 * model.h — the Llama-family inference engine: a model loaded from GGUF, a
 * paged KV cache shared by many sequences, and one batched forward call.
 *
 * Dims legend: T batch entries in one lm_decode call, C n_embd, L layers,
 * NH query heads, NKV key/value heads, HD head_dim, KVD = NKV*HD, F n_ff,
 * V vocabulary, BS tokens per KV block, NB blocks in the pool.
 *
 * Design: weights stay in the read-only GGUF map and are multiplied in place
 * by tensor_matmul in their stored type; only the norm vectors are copied (to
 * F32). The forward is LLM_ARCH_LLAMA as llama.cpp computes it: RMSNorm, Q/K/V
 * projections, "normal" RoPE on adjacent pairs of the stored (converter-
 * permuted) Q/K rows, grouped-query attention, output projection, residual,
 * RMSNorm, SwiGLU FFN, residual; final RMSNorm and the output projection (the
 * embedding matrix when output.weight is absent). One lm_decode call runs the
 * matmuls for all T entries together and attention per entry over its own
 * sequence's KV blocks, read in place.
 *
 * The KV cache is a pool of NB fixed-size blocks of BS token positions. Block
 * b holds, for every layer l and KV head h, the keys (BS, HD) and the values
 * transposed (HD, BS) at element ((b*L + l)*NKV + h)*BS*HD of k and v (F32 or
 * F16; kv_impl.h). A sequence is a block table: position p lives in block
 * table[p / BS] at row p % BS. Blocks are reference-counted; a full block may be
 * registered in the prefix cache under hash(hash of previous block, its BS
 * tokens), so a new sequence whose tokens start the same way shares the blocks
 * instead of recomputing them (vLLM's automatic prefix caching). Freed blocks
 * that are registered stay findable until the pool reuses them, least recently
 * freed last.
 *
 * Invariants: a sequence's positions are 0..len-1, appended in order (an entry
 * for sequence s must have pos == its current length; entries of one call may
 * append several positions to the same sequence, in order). A block with
 * refcount > 1 is full and never written: only a sequence's last, partial
 * block is written, and it is owned by that sequence alone (fork copies it).
 *
 * Ownership: struct lm_model owns the GGUF map, the norm copies, the thread
 * pool and its activations (sized once at load for max_batch entries: no
 * allocation in lm_decode). struct lm_kv owns its block pool and tables. The
 * caller owns lm_batch entries and the logits buffer.
 *
 * THREAD SAFETY: one thread at a time per model (lm_decode uses the model's
 * activations and pool) and per KV cache; the scheduler thread owns both. The
 * loaded weights are read-only.
 */
#ifndef AISLE_MODEL_MODEL_H
#define AISLE_MODEL_MODEL_H

#include "gguf/gguf.h"
#include "gguf/llama_names.h"

#include <stddef.h>
#include <stdint.h>

struct lm_model;
struct lm_kv;
struct tpool;

struct lm_model_opts {
    int nthreads;  /* compute threads counting the caller; <= 0: online CPUs */
    int max_batch; /* activations are sized for this many entries; larger batches run in
                      chunks of it. <= 0: 512 */
    long att_pool_min; /* a layer's attention runs on the pool from this many multiply-adds
                          (positions x NH*HD, summed over the chunk), on the caller below;
                          0: default (65536); < 0: always on the pool */
};

/* Open path, check it is a complete Llama model whose tensor types the kernels
 * support, map the weights and allocate activations. opts may be NULL. 0 with
 * *out set, or AISLE_EIO / AISLE_EFORMAT / AISLE_ENOTFOUND / AISLE_ENOMEM with
 * detail in err. */
int lm_model_load(struct lm_model **out, const char *path, const struct lm_model_opts *opts, char *err,
                  size_t errlen);
/* NULL is a no-op. */
void lm_model_free(struct lm_model *m);

const struct llama_hparams *lm_model_hparams(const struct lm_model *m);
/* The open GGUF file (for the tokenizer and metadata); owned by the model. */
const struct gguf *lm_model_gguf(const struct lm_model *m);
int lm_model_n_vocab(const struct lm_model *m);
/* Type of the attn_q weight of layer 0: what the file is "mostly". */
enum ggml_type lm_model_wtype(const struct lm_model *m);
/* Bytes of weights one forward token reads (all matrices incl. the output
 * projection, one embedding row): the memory-bandwidth roofline's denominator. */
size_t lm_model_bytes_per_token(const struct lm_model *m);
/* The model's thread pool (borrowed). */
struct tpool *lm_model_pool(struct lm_model *m);
/* Detail of the last lm_decode failure (never NULL). */
const char *lm_model_errmsg(const struct lm_model *m);

/* ---- paged KV cache ------------------------------------------------------- */

#define LM_KV_DEFAULT_BLOCK 16
#define LM_KV_MAX_BLOCK 256 /* tokens per block at most */

struct lm_kv_opts {
    int block_tokens; /* BS, at most LM_KV_MAX_BLOCK; <= 0: LM_KV_DEFAULT_BLOCK */
    int n_blocks;     /* NB, the pool size */
    int max_seqs;     /* sequence slots */
    int max_seq_len;  /* positions per sequence (rounded up to whole blocks); <= 0: n_ctx */
    int f16;          /* 1: store K/V as F16, 0: F32 */
};

/* A cache for m's shapes. 0, AISLE_EINVAL (bad opts) or AISLE_ENOMEM. */
int lm_kv_new(struct lm_kv **out, const struct lm_model *m, const struct lm_kv_opts *opts);
void lm_kv_free(struct lm_kv *kv); /* NULL is a no-op */
/* Bytes one block takes (K and V, all layers). */
size_t lm_kv_block_bytes(const struct lm_kv *kv);
int lm_kv_block_tokens(const struct lm_kv *kv);
int lm_kv_n_blocks(const struct lm_kv *kv);
/* Blocks a new sequence could take now: refcount 0, cached or not. */
int lm_kv_n_free_blocks(const struct lm_kv *kv);

/* Take a free sequence slot; its length is 0. 0 or AISLE_EBUSY (all slots used). */
int lm_kv_seq_new(struct lm_kv *kv, int *seq);
/* Release the sequence's blocks (each loses one reference) and its slot.
 * Unknown or free seq: no-op. */
void lm_kv_seq_free(struct lm_kv *kv, int seq);
/* New sequence *dst sharing all of src's full blocks (refcount + 1) and a
 * private copy of src's partial last block. 0, AISLE_EINVAL, AISLE_EBUSY (no
 * slot) or AISLE_ETOOBIG (no block for the copy). */
int lm_kv_seq_fork(struct lm_kv *kv, int src, int *dst);
/* Positions the sequence holds (-1 for a free or unknown slot). */
int lm_kv_seq_len(const struct lm_kv *kv, int seq);
/* Drop positions >= n (0 <= n <= len). A shared block that becomes the
 * partial last block is copied first. 0, AISLE_EINVAL or AISLE_ETOOBIG. */
int lm_kv_seq_truncate(struct lm_kv *kv, int seq, int n);
/* Prefix caching. seq must be empty. Finds the longest run of registered full
 * blocks whose tokens equal tokens[0..k*BS) with k*BS <= n - 1 (the last token
 * is always left to evaluate, for its logits), attaches them to seq and sets
 * its length to k*BS. *n_cached = k*BS. 0 or AISLE_EINVAL. */
int lm_kv_seq_prefix(struct lm_kv *kv, int seq, const int32_t *tokens, int n, int *n_cached);
/* Block table of seq: *n blocks, table borrowed until the next call. */
const int *lm_kv_seq_blocks(const struct lm_kv *kv, int seq, int *n);
/* References held on block b (tests). */
int lm_kv_block_refs(const struct lm_kv *kv, int b);

/* ---- batched decode -------------------------------------------------------- */

struct lm_batch_entry {
    int seq;         /* a sequence of the KV cache */
    int pos;         /* must equal the sequence's length when the entry runs */
    int32_t token;   /* 0 <= token < V */
    int want_logits; /* 1: a row of logits_out for this entry */
};

struct lm_batch {
    struct lm_batch_entry *e; /* (cap) owned by whoever set it up */
    int n, cap;
};
/* Heap storage for cap entries. 0 or AISLE_ENOMEM. */
int lm_batch_init(struct lm_batch *b, int cap);
void lm_batch_release(struct lm_batch *b);
/* Append an entry; AISLE_ETOOBIG when full. */
int lm_batch_add(struct lm_batch *b, int seq, int pos, int32_t token, int want_logits);

/* Run the forward for every entry of batch, in order, writing each entry's K/V
 * into its sequence (appending a block when the position starts one) and the
 * logits of each entry with want_logits into logits_out (n_want, V), in entry
 * order. Blocks that become full are registered in the prefix cache. The call
 * checks everything (sequences, positions, tokens, free blocks) before writing,
 * and a kernel failure rolls the sequences back: on error no sequence has
 * changed (logits_out may have been partly written). 0, AISLE_EINVAL (bad entry, detail in
 * lm_model_errmsg), AISLE_ETOOBIG (not enough free blocks or a sequence would
 * pass max_seq_len) or AISLE_ENOMEM. */
int lm_decode(struct lm_model *m, struct lm_kv *kv, const struct lm_batch *batch, float *logits_out);

#endif
