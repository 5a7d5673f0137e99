/*
 * ngram.h — unigram and bigram language models counted from token streams:
 * the baselines that `aisle perplexity --corpus --baselines` scores next to a
 * model on exactly the same target tokens (docs/EVAL_LM.md).
 *
 * The models (V = vocab_size, N = tokens counted, c(.) counts):
 *   unigram   add-one (Laplace) over the whole vocabulary:
 *               P(b) = (c(b) + 1) / (N + V)
 *   bigram    interpolated Kneser-Ney with one absolute discount D:
 *               P(b | a) = max(c(a b) - D, 0) / c(a .)
 *                          + D * N1+(a .) / c(a .) * Pc(b)        when c(a .) > 0
 *               P(b | a) = Pc(b)                                  when a never starts a pair
 *             where c(a .) counts the pairs that start with a, N1+(a .) the
 *             distinct tokens that follow a, and the lower order Pc is the
 *             continuation unigram, add-one smoothed so that no token of the
 *             vocabulary has probability 0:
 *               Pc(b) = (N1+(. b) + 1) / (N1+(. .) + V)
 *             with N1+(. b) the distinct tokens that precede b and N1+(. .)
 *             the distinct pairs. D = n1 / (n1 + 2 n2) (Ney et al. 1994; n1,
 *             n2: pairs seen once, twice); 0.5 when no pair was seen once.
 * Both sum to exactly 1 over the vocabulary for every context (tested).
 *
 * Design: pairs are counted in an open-addressing hash table keyed by
 * (a << 32 | b) with 32-bit counts (saturating), grown by doubling at 5/8
 * load: ~12 bytes per slot, so 10M distinct pairs take ~400 MB at most;
 * NGRAM_MAX_PAIRS bounds it. Per-token arrays (V entries each) hold the
 * unigram counts and, after ngram_finish, c(a .), N1+(a .) and N1+(. b).
 * Pairs are counted inside each ngram_add call only: a call is one stream
 * (a shard), so no pair spans two files.
 *
 * Ownership: a struct ngram owns all its memory; ngram_add reads the caller's
 * ids during the call only.
 *
 * THREAD SAFETY: building (add, finish) belongs to one thread; a finished
 * model is read-only and the probability functions may be called from any
 * number of threads.
 */
#ifndef AISLE_TRAIN_NGRAM_H
#define AISLE_TRAIN_NGRAM_H

#include <stddef.h>
#include <stdint.h>

#define NGRAM_MAX_VOCAB (1u << 24)   /* as SHARD_MAX_VOCAB */
#define NGRAM_MAX_PAIRS (1u << 28)   /* distinct pairs (the table is at most 2^29 slots, 6 GiB) */

struct ngram;

/* A model over vocab_size (1..NGRAM_MAX_VOCAB) tokens with nothing counted.
 * 0, AISLE_EINVAL or AISLE_ENOMEM. */
int ngram_new(struct ngram **out, uint32_t vocab_size);
void ngram_free(struct ngram *g); /* NULL is a no-op */

/* Count the n tokens of one stream and its n - 1 consecutive pairs. Only
 * before ngram_finish. 0, AISLE_EINVAL (an id >= vocab_size: nothing of this
 * call is counted past it; or called after finish), AISLE_ETOOBIG (more than
 * NGRAM_MAX_PAIRS distinct pairs) or AISLE_ENOMEM. */
int ngram_add(struct ngram *g, const uint32_t *ids, size_t n);
/* The same for the next n tokens of the stream of the last add (its last
 * token and ids[0] make a pair), so a stream can be counted in pieces (for
 * progress) with the same counts as in one call. Same returns. */
int ngram_add_cont(struct ngram *g, const uint32_t *ids, size_t n);

/* Compute the bigram's derived counts and discount; no more adds after it.
 * 0 or AISLE_ENOMEM. Calling it twice is harmless. */
int ngram_finish(struct ngram *g);

/* Natural-log probabilities (finite for every id < vocab_size). The bigram
 * needs ngram_finish first. */
double ngram_unigram_logp(const struct ngram *g, uint32_t b);
double ngram_bigram_logp(const struct ngram *g, uint32_t a, uint32_t b);

/* What was counted: tokens (N), distinct pairs, the discount D (after finish). */
uint64_t ngram_tokens(const struct ngram *g);
uint64_t ngram_pairs(const struct ngram *g);
double ngram_discount(const struct ngram *g);
uint32_t ngram_vocab(const struct ngram *g);

#endif
