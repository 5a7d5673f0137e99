/*
 * sample.h — choosing the next token from a row of logits, and stop strings.
 *
 * Dims legend: V vocabulary, n candidates left after the filters.
 *
 * Design: a sampler owns scratch sized to V once (candidate ids, logits,
 * probabilities, penalty counts) and its own PRNG (xoshiro256** seeded by
 * splitmix64), so sampling allocates nothing and a fixed seed replays exactly.
 * The chain, in llama.cpp's order: mask hook -> logit bias -> repetition /
 * frequency / presence penalties over the last penalty_last_n accepted tokens
 * -> (temperature <= 0: greedy) -> top-k -> top-p -> min-p -> temperature ->
 * draw. top-p and min-p look at the untempered distribution, as llama.cpp's
 * do; temperature then reshapes what is left.
 *
 * Penalties (llama.cpp): for a token seen c > 0 times, a logit l becomes
 * l / repeat_penalty when l > 0, l * repeat_penalty otherwise, then
 * l - c * freq_penalty - presence_penalty.
 *
 * Ownership: the sampler copies the logit-bias list; the mask context is
 * borrowed. Logits passed in are modified in place (mask, bias, penalties).
 *
 * THREAD SAFETY: a sampler belongs to one thread at a time (the scheduler's);
 * samplers are independent of each other.
 */
#ifndef AISLE_MODEL_SAMPLE_H
#define AISLE_MODEL_SAMPLE_H

#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>

struct lm_logit_bias {
    int32_t token;
    float bias; /* added to the logit; -INFINITY forbids the token */
};

/* Constrained decoding: set logits[i] = -INFINITY for every token not allowed
 * next. Runs first, on the raw logits (n_vocab of them). */
typedef void (*lm_mask_fn)(void *ctx, float *logits, int n_vocab);

struct lm_sample_params {
    float temperature;      /* <= 0: greedy (argmax, lowest id on ties) */
    int top_k;              /* keep the k most likely; <= 0: off */
    float top_p;            /* keep the smallest most-likely set with mass >= top_p; >= 1: off */
    float min_p;            /* keep p >= min_p * p_max; <= 0: off */
    float repeat_penalty;   /* 1 (or <= 0): off */
    float freq_penalty;     /* 0: off */
    float presence_penalty; /* 0: off */
    int penalty_last_n;     /* history the penalties see; 0: none */
    uint64_t seed;
    const struct lm_logit_bias *bias; /* (n_bias), copied */
    int n_bias;
    lm_mask_fn mask; /* NULL: none */
    void *mask_ctx;
};

/* Defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no penalties
 * (repeat 1, last 64), seed 0, no bias, no mask. */
void lm_sample_params_default(struct lm_sample_params *p);

struct lm_sampler;

/* 0, AISLE_EINVAL (V <= 0, a bias token outside the vocabulary) or AISLE_ENOMEM. */
int lm_sampler_new(struct lm_sampler **out, int n_vocab, const struct lm_sample_params *p);
void lm_sampler_free(struct lm_sampler *s); /* NULL is a no-op */
/* Forget the penalty history and reseed the PRNG with p->seed. */
void lm_sampler_reset(struct lm_sampler *s);
/* Record a token for the penalties (generated tokens and, if wanted, the prompt). */
void lm_sampler_accept(struct lm_sampler *s, int32_t token);

/* Apply the chain to logits (V, modified in place) and draw a token. Does not
 * accept it. 0, or AISLE_ENOTFOUND when every token is masked out. */
int lm_sampler_sample(struct lm_sampler *s, float *logits, int32_t *token);
/* The chain without the draw: the n candidates left and their probabilities
 * (summing to 1), in descending probability order when a filter sorted them.
 * ids/probs point into the sampler, valid until its next call. Same returns. */
int lm_sampler_dist(struct lm_sampler *s, float *logits, const int32_t **ids, const float **probs, int *n);

/* ---- stop strings --------------------------------------------------------- */

/* Watches generated text for any of a set of stop strings, holding back bytes
 * that may be the start of one, so a stop string never reaches the user even
 * when it arrives split over several tokens. */
struct lm_stop {
    char **stops; /* (n) owned copies */
    size_t *lens; /* (n) */
    size_t n;
    struct buf held; /* text not yet released */
    struct buf out;  /* what the last push released */
    int stopped;
};
/* 0 or AISLE_ENOMEM / AISLE_EINVAL (an empty stop string). n may be 0. */
int lm_stop_init(struct lm_stop *st, const char *const *stops, size_t n);
void lm_stop_release(struct lm_stop *st);
/* Feed len bytes of text. emit and emit_len: the bytes now safe to show (valid
 * until the next call). Returns 1 when a stop string was found (emit then ends
 * just before it; later pushes emit nothing), 0 when not, or AISLE_ENOMEM. */
int lm_stop_push(struct lm_stop *st, const char *text, size_t len, const char **emit, size_t *emit_len);
/* End of generation: release what is held (nothing after a stop). */
int lm_stop_flush(struct lm_stop *st, const char **emit, size_t *emit_len);

#endif
