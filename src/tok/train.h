/*
 * train.h — byte-level BPE training (GPT-2 style) with incremental pair counts.
 *
 * Design: text is fed in pieces; each piece is split by the GPT-2 pre-tokenizer
 * and the distinct words counted once (a hash table of word -> count). Training
 * then works on the distinct words only: a pair -> (count, words containing it)
 * index and a max-heap of pairs. Each merge touches only the words that contain
 * the chosen pair, adjusting the counts of the pairs around each occurrence;
 * counts of older pairs only ever fall, so stale heap entries are detected and
 * re-pushed on pop (lazy deletion). Cost per merge is proportional to the
 * occurrences of the merged pair, not to the corpus.
 *
 * The chosen pair is the one with the highest count; ties go to the smaller
 * (left id, right id). Token ids: 0..255 are the bytes in byte order, then one
 * id per new token text in order of creation (a merge whose text already exists,
 * e.g. "a"+"bc" after "ab"+"c", reuses that token), then Aisle's special tokens
 * (tok.h) at the end. tok_trainer_train_naive recounts every pair on every merge
 * (the textbook algorithm) on the same counted words: tests and benchmarks
 * compare the two, which must produce identical merges.
 *
 * Ownership: the trainer owns its word table; the returned struct tok is the
 * caller's. THREAD SAFETY: one thread per trainer.
 */
#ifndef AISLE_TOK_TRAIN_H
#define AISLE_TOK_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "tok/tok.h"

#define TOK_TRAIN_MAX_WORD 1024u           /* longer pre-tokens are not counted */
#define TOK_TRAIN_MAX_WORDS (64u << 20)    /* distinct words */
#define TOK_TRAIN_MIN_VOCAB (256 + TOK_N_AISLE_SPECIALS + 1)

struct tok_trainer;

/* Progress of the merge phase: merges done of the most planned. Return nonzero
 * to stop early (the vocabulary built so far is returned). */
typedef int (*tok_train_progress_fn)(void *ctx, size_t done, size_t total);

int tok_trainer_new(struct tok_trainer **out, char *err, size_t errlen);
void tok_trainer_free(struct tok_trainer *tr);
/* Split text[0..n) into words and count them. 0, AISLE_ENOMEM, or AISLE_ETOOBIG
 * when the distinct-word limit is reached. */
int tok_trainer_feed(struct tok_trainer *tr, const char *text, size_t n);
struct tok_train_stats {
    uint64_t bytes;          /* text fed */
    uint64_t words;          /* pre-tokens counted (with repeats) */
    uint64_t distinct;       /* distinct words */
    uint64_t distinct_bytes; /* bytes of the distinct words: the symbols training works on */
    uint64_t skipped;        /* bytes in words over TOK_TRAIN_MAX_WORD, not counted */
};
/* Totals so far. */
void tok_trainer_stats(const struct tok_trainer *tr, struct tok_train_stats *st);
/* Learn merges until the vocabulary (bytes + merged tokens + specials) has
 * vocab_size tokens or no adjacent pair is left in any word; build the tokenizer.
 * The trainer can train again (with another size). 0, AISLE_EINVAL (vocab_size
 * below TOK_TRAIN_MIN_VOCAB or above TOK_MAX_VOCAB), AISLE_ENOMEM; detail in err. */
int tok_trainer_train(struct tok_trainer *tr, size_t vocab_size, tok_train_progress_fn progress, void *ctx,
                      struct tok **out, char *err, size_t errlen);
/* The same result by recounting all pairs before every merge: O(merges x
 * corpus symbols). A reference for tests and the benchmark baseline. */
int tok_trainer_train_naive(struct tok_trainer *tr, size_t vocab_size, struct tok **out, char *err, size_t errlen);

#endif
