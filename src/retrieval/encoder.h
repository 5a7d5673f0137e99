/*
 * encoder.h — Aisle's own text encoder for dense retrieval: hashed word
 * unigrams, word bigrams and character trigrams -> IDF-weighted embedding bag
 * -> L2 norm, D = 128 by default. One encoder embeds both questions and
 * passages (a Siamese dual encoder), trained contrastively in C (InfoNCE over
 * in-batch negatives, AdamW) on question <-> evidence pairs.
 *
 * Design: text is cut into terms by lex_terms (case and diacritics folded,
 * stop words kept, at most ENC_MAX_TERMS); each term gives a unigram feature
 * and its character trigrams (of "<term>"), each adjacent pair a bigram
 * feature. A feature's bucket is a 64-bit FNV-1a hash of its kind and bytes
 * modulo nbuckets (a power of two). The embedding is sum_f w_f E[bucket_f]
 * normalized to length 1, where w_f = idf[bucket] (trigrams share one word's
 * weight between them). Embedding costs one pass over the features (ASCII
 * text is cut without lex_terms' allocations, the bag sums in AVX2 registers):
 * figures in docs/PERFORMANCE.md.
 *
 * File format (little-endian), checked in full by enc_read before use:
 *   0   char[8]  magic "AISLENC\0"
 *   8   u32      version (1)
 *   12  u32      D, the dimension (ENC_MIN_DIM..ENC_MAX_DIM, a multiple of 8)
 *   16  u32      nbuckets (a power of two, ENC_MIN_BUCKETS..ENC_MAX_BUCKETS)
 *   20  u32      reserved, 0
 *   24  f32      idf (nbuckets), 0 ..ENC_MAX_IDF (a real idf is under 30)
 *   ..  f16      E (nbuckets, D), finite
 * and nothing after: the size must be exactly 24 + 4 nbuckets + 2 nbuckets D.
 *
 * Ownership: struct encoder owns its arrays (enc_free). enc_read copies what
 * it needs from the caller's bytes.
 * THREAD SAFETY: an encoder is read-only after enc_read/enc_train: any number
 * of threads may call enc_embed on it at once (each with its own output).
 */
#ifndef AISLE_RETRIEVAL_ENCODER_H
#define AISLE_RETRIEVAL_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define ENC_MAGIC "AISLENC"
#define ENC_VERSION 1
#define ENC_MIN_DIM 8
#define ENC_MAX_DIM 1024
#define ENC_MIN_BUCKETS 16
#define ENC_MAX_BUCKETS (1u << 22)
#define ENC_MAX_TERMS 256   /* terms of a text that are embedded (the rest is cut) */
#define ENC_MAX_FEATURES 4096 /* features of one text, a cap that ENC_MAX_TERMS keeps under */
#define ENC_HEADER 24
#define ENC_MAX_IDF 1000.0f /* bounds a file's idf so sums of f16 weights stay finite */

struct encoder {
    int D;             /* embedding dimension */
    uint32_t nbuckets; /* hash buckets, a power of two */
    float *idf;        /* (nbuckets) feature weights */
    float *E;          /* (nbuckets, D) embeddings, f32 in memory */
    uint16_t *E16;     /* (nbuckets, D) the file's f16 weights, equal to E (enc_read; half the
                          bytes for enc_embed's kernel to read), or NULL (enc_new). Code that
                          changes E must drop it: enc_train does. */
};

/* Hashed features of a text: bucket ids and weights (before idf). */
struct enc_feats {
    uint32_t *bucket; /* (n) */
    float *w;         /* (n) */
    size_t n;
};

/* A new encoder with D dims and nbuckets buckets (power of two), weights drawn
 * from N(0, 1/D) with seed, idf all 1. 0, AISLE_EINVAL, AISLE_ENOMEM. */
int enc_new(struct encoder **out, int D, uint32_t nbuckets, uint64_t seed);
void enc_free(struct encoder *e);

/* Parse an encoder from len bytes (the file format above). 0 with *out set;
 * AISLE_EFORMAT / AISLE_ETOOBIG with the reason and byte offset in err. */
int enc_read(struct encoder **out, const void *data, size_t len, char *err, size_t errlen);
/* Read a file (enc_read on its bytes); AISLE_EIO naming the path. */
int enc_load(struct encoder **out, const char *path, char *err, size_t errlen);
/* Append the file bytes of e to b (E rounded to f16). 0 or AISLE_ENOMEM. */
int enc_write(const struct encoder *e, struct buf *b);

/* Features of len bytes of text (any bytes) into f (its arrays are the
 * caller's, each of ENC_MAX_FEATURES entries). 0 or AISLE_ENOMEM. */
int enc_features(const struct encoder *e, const char *text, size_t len, struct enc_feats *f);
/* out (D) = the unit-length embedding of text; all zeros for a text with no
 * terms. 0 or AISLE_ENOMEM. Allocates nothing for ASCII text (about 60 KB of
 * stack); sums with the AVX2 embedding-bag kernel unless the tensor path is
 * scalar. */
int enc_embed(const struct encoder *e, const char *text, size_t len, float *out);
/* The original path, kept as the reference that tests and bench/dense compare
 * enc_embed with: lex_terms, per-feature FNV-1a, one nn_axpy_f32 per feature.
 * On the AVX2 / AVX-512 tensor paths both give the same bits. */
int enc_embed_reference(const struct encoder *e, const char *text, size_t len, float *out);

/* Set idf from a corpus of texts: idf[b] = log(1 + N / (1 + df[b])), df the
 * number of texts holding a feature in bucket b. 0 or AISLE_ENOMEM. */
int enc_fit_idf(struct encoder *e, const char *const *texts, size_t n);

struct enc_train_opts {
    int epochs;        /* passes over the pairs (default 4) */
    int batch;         /* pairs per step, each other's negatives (default 128) */
    float lr;          /* AdamW peak learning rate (default 0.01), cosine decay */
    float weight_decay;/* AdamW decoupled decay (default 1e-4) */
    float tau;         /* InfoNCE temperature (default 0.05) */
    uint64_t seed;     /* shuffling */
    /* Called after each step with the running mean loss; may be NULL. */
    void (*progress)(void *ctx, int step, int nsteps, float loss);
    void *ctx;
};

/* Train e in place on n (a[i], b[i]) pairs: symmetric InfoNCE (a->b and b->a)
 * over in-batch negatives with AdamW on all of E (dense moments). *final_loss
 * gets the mean loss of the last epoch. 0, AISLE_EINVAL (n < 2), AISLE_ENOMEM. */
int enc_train(struct encoder *e, const char *const *a, const char *const *b, size_t n,
              const struct enc_train_opts *o, float *final_loss);

#endif
