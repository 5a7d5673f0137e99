/*
 * tagmask.h — constrained decoding for the answer markup: once the model has
 * opened a tag (<product id=", <price id=", <stock id=", <delivery id=",
 * <compare ids="), only tokens that keep the id a prefix of one of the given
 * product ids (the evidence's products) can be sampled, then the closing
 * quote (or a comma and the next id, in compare), then "/>". Outside tags
 * nothing is masked. So the model cannot invent an id: every tag it finishes
 * names a product whose card the server can hydrate.
 *
 * Design: a byte-level automaton over the tag grammar of docs/PROMPT.md,
 * driven by the text of each accepted token (sched_params.accept); the mask
 * runs every candidate token's bytes through a copy of the automaton and
 * forbids those that would break it. Outside a tag only tokens containing
 * '<' are checked (a table built once per vocabulary), so the cost is a few
 * thousand byte steps per step in text and one pass over the vocabulary
 * inside a tag. Control tokens (EOG included) are forbidden inside a tag.
 * Tags the automaton does not recognise are left to the markup parser.
 *
 * Ownership: a tagmask_vocab copies every token's bytes from the tokenizer
 * (which it then no longer needs). A tagmask holds a reference on its vocab
 * (so tagmask_vocab_free may come first), copies its ids, and is
 * reference-counted (one reference for the HTTP side, one for the scheduler,
 * dropped by its release hook).
 *
 * THREAD SAFETY: a tagmask_vocab is read-only once built and may be shared;
 * a tagmask is used by the scheduler thread (apply/accept) and released from
 * any thread (tagmask_unref is atomic).
 */
#ifndef AISLE_ASSIST_TAGMASK_H
#define AISLE_ASSIST_TAGMASK_H

#include <stddef.h>
#include <stdint.h>

#include "model/sample.h"
#include "tok/tok.h"

#define TAGMASK_MAX_IDS 32

struct tagmask_vocab;
struct tagmask;

/* 0, AISLE_ENOMEM. */
int tagmask_vocab_new(struct tagmask_vocab **out, const struct tok *t);
/* Drop the creator's reference (masks keep theirs). NULL ok. */
void tagmask_vocab_free(struct tagmask_vocab *v);

/* A mask for one answer allowing ids[0..n) (each 1..64 bytes; at most
 * TAGMASK_MAX_IDS, the rest ignored). One reference. 0 or AISLE_ENOMEM. */
int tagmask_new(struct tagmask **out, const struct tagmask_vocab *v, const char *const *ids, size_t n);
/* Another mask hook to run first on every call (tests script the model with
 * it); NULL: none. */
void tagmask_set_pre(struct tagmask *m, lm_mask_fn pre, void *pre_ctx);
void tagmask_ref(struct tagmask *m);
void tagmask_unref(struct tagmask *m); /* frees at zero; NULL ok */

/* lm_mask_fn: forbid the tokens that would break a tag (ctx: struct tagmask). */
void tagmask_apply(void *ctx, float *logits, int n_vocab);
/* sched_params.accept: advance over the sampled token's bytes. */
void tagmask_accept(void *ctx, int32_t tok);
/* sched_params.release: drop the scheduler's reference. */
void tagmask_release(void *ctx);

/* 1 while the automaton is inside a tag (for tests). */
int tagmask_in_tag(const struct tagmask *m);

#endif
