/*
 * copyboost.h — nudging generation toward copying its evidence exactly.
 *
 * A small model that has started to quote a passage ("The RAM memory size
 * is ...") often garbles the value it copies. The copy boost looks at the
 * answer's last tokens: when they also occur in the source (the prompt's
 * evidence), it adds `boost` to the logit of each token that follows them
 * there, so the copy continues as written unless the model is sure of
 * something else. Only the longest suffix of the answer found in the source
 * counts (up to COPYBOOST_MAX_MATCH tokens, at least min_match), and each
 * following token is boosted once however often it occurs.
 *
 * Design: a plain scan of the source per step (n source tokens x match
 * length compares: a thousand-token prompt costs microseconds, nothing next
 * to a forward); the answer's history is kept in a ring of the last
 * COPYBOOST_MAX_MATCH tokens. It runs as the sampler's mask hook
 * (lm_mask_fn) and is told each accepted token by copyboost_accept.
 *
 * Ownership: a copyboost copies the source ids. THREAD SAFETY: one thread at
 * a time (the one that samples).
 */
#ifndef AISLE_MODEL_COPYBOOST_H
#define AISLE_MODEL_COPYBOOST_H

#include <stddef.h>
#include <stdint.h>

#define COPYBOOST_MAX_MATCH 8

struct copyboost;

/* A boost over src (n tokens, copied): boost > 0 added to the logits of the
 * continuations of the longest match of at least min_match (1..8) tokens.
 * 0, AISLE_EINVAL (boost <= 0 or not finite, min_match out of range) or
 * AISLE_ENOMEM. */
int copyboost_new(struct copyboost **out, const int32_t *src, size_t n, float boost, int min_match);
void copyboost_free(struct copyboost *c); /* NULL ok */
/* Replace the source and forget the answer so far (a new prompt). 0 or AISLE_ENOMEM. */
int copyboost_set_source(struct copyboost *c, const int32_t *src, size_t n);

/* lm_mask_fn (ctx: struct copyboost): add the boost to the continuations. */
void copyboost_apply(void *ctx, float *logits, int n_vocab);
/* The token just generated. */
void copyboost_accept(void *ctx, int32_t tok);

/* For tests: the length of the match the next apply would use (0: none). */
int copyboost_match(const struct copyboost *c);

#endif
