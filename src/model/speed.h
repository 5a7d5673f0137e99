/*
 * speed.h — timing the engine the same way everywhere: prefill tokens/s of one
 * long prompt and decode tokens/s of N sequences stepping together. Used by
 * `aisle bench model` and bench/model.c.
 *
 * Design: each measurement makes its own KV cache (F32 or F16), feeds
 * pseudo-random token ids (seeded, so runs are comparable), asks for logits
 * wherever a real run would (the last prompt token, every decode token) and
 * times only the lm_decode calls of the phase measured, after one untimed
 * warm-up call. No sampling: the engine alone.
 *
 * THREAD SAFETY: as lm_decode: one thread per model.
 */
#ifndef AISLE_MODEL_SPEED_H
#define AISLE_MODEL_SPEED_H

#include "model/model.h"

/* One sequence, a prompt of n tokens in one lm_decode call (chunked at the
 * model's max_batch), best of reps. 0 or lm_decode's errors / AISLE_ENOMEM. */
int lm_speed_prefill(struct lm_model *m, int n, int reps, int kv_f16, double *tokens_per_s);
/* nseq sequences each given a prompt of prompt tokens (untimed), then steps
 * decode calls of nseq entries (one token per sequence); tokens/s over the
 * timed steps = nseq * steps / seconds, best of reps such runs (on a shared
 * machine the best run is the one least disturbed by other processes). */
int lm_speed_decode(struct lm_model *m, int nseq, int prompt, int steps, int reps, int kv_f16,
                    double *tokens_per_s);

#endif
