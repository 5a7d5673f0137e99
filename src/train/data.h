/*
 * data.h — what the trainer feeds the model: batches drawn from a corpus's
 * token shards with per-source mixing weights, or from SFT shards with their
 * loss masks, and fixed validation windows per source.
 *
 * Design: every draw comes from one 64-bit RNG state (splitmix64 over a
 * counter) that a checkpoint saves, so a resumed run draws the same batches.
 * A global batch of B rows is drawn whole on every process (cheap: indices
 * only) and each process takes its own rows, so N processes see exactly the
 * rows one process would. Pretraining row: pick a source with probability
 * weight / sum of weights, then a uniform offset in its train stream (its
 * shards concatenated) and take T+1 tokens: inputs x[0..T), targets
 * x[1..T], all weights 1. SFT row: pick a shard by weight, a uniform
 * example; inputs ids[0..T), targets ids[1..T], weight mask[t+1]; an example
 * longer than T+1 is cut, a shorter one padded with EOS at weight 0; an
 * example with no weighted target in its first T+1 tokens is drawn again.
 * Validation: source s's val stream cut into consecutive windows of T+1
 * tokens (overlapping by one), the first n of them.
 *
 * Ownership: struct tdata owns its open shards and manifest.
 *
 * THREAD SAFETY: one thread at a time (the RNG state is mutable).
 */
#ifndef AISLE_TRAIN_DATA_H
#define AISLE_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "train/corpus.h"

struct shard;

#define TDATA_MAX_SFT 32

struct tdata_stream {
    int n;                 /* shards */
    struct shard **shards; /* (n) */
    uint64_t *start;       /* (n + 1) cumulative token offsets */
    uint64_t tokens;
};

struct tdata {
    uint32_t vocab_size;
    int32_t eos;
    int n_src;
    char names[CORPUS_MAX_SOURCES][CORPUS_MAX_NAME];
    double weight[CORPUS_MAX_SOURCES];
    struct tdata_stream train[CORPUS_MAX_SOURCES], val[CORPUS_MAX_SOURCES];
    struct corpus_manifest *manifest;
    char *dir;
    /* SFT */
    int n_sft;
    struct shard *sft[TDATA_MAX_SFT];
    double sft_weight[TDATA_MAX_SFT];
    int32_t *ex_ids;   /* (max example) scratch */
    uint8_t *ex_mask;
    uint64_t rng;
};

/* Open the corpus in dir (manifest.json) with mixing weights from mix:
 * "name=w,name=w,..." (weights >= 0, not all 0; a source left out gets 0;
 * NULL or "": proportional to each source's train tokens). 0 or an error
 * naming what (unknown source, bad weight, a source with weight > 0 and no
 * tokens, a shard that fails validation). */
int tdata_open(struct tdata *d, const char *dir, const char *mix, char *err, size_t errlen);
/* Add an SFT shard with a weight > 0 (the first one switches batches to
 * SFT). Its vocab_size must match the corpus's when one is open. */
int tdata_add_sft(struct tdata *d, const char *path, double weight, char *err, size_t errlen);
void tdata_close(struct tdata *d);

/* The next global batch's rows [row0, row0 + nrows) of B, each T long, into
 * tokens, targets, weights (nrows, T). Draws all B rows from the RNG. */
void tdata_next_batch(struct tdata *d, int B, int T, int row0, int nrows, int32_t *tokens, int32_t *targets,
                      float *weights);

/* 0 when every source with weight > 0 holds a sequence of T + 1 tokens,
 * else AISLE_EINVAL naming it. */
int tdata_fits(const struct tdata *d, int T, char *err, size_t errlen);

/* Validation windows of source s for length T (at most max). */
uint64_t tdata_val_windows(const struct tdata *d, int s, int T, uint64_t max);
/* Window i of source s: tokens and targets (T). */
void tdata_val_window(const struct tdata *d, int s, uint64_t i, int T, int32_t *tokens, int32_t *targets);

#endif
