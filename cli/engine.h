/*
 * engine.h — what the engine subcommands (generate, perplexity, logits, bench
 * model) share: loading a model and a KV cache with fatal errors, and number
 * parsing for their options.
 *
 * THREAD SAFETY: CLI code runs on the main thread.
 */
#ifndef AISLE_CLI_ENGINE_H
#define AISLE_CLI_ENGINE_H

#include "model/model.h"

/* Load path with nthreads compute threads (<= 0: all CPUs) and activations for
 * max_batch entries; exits with the loader's message on failure. */
struct lm_model *eng_load(const char *path, int nthreads, int max_batch);
struct tok;
/* The tokenizer stored in m's file, checked to fit its vocabulary; exits on
 * failure (path names the file in the message). */
struct tok *eng_tokenizer(const struct lm_model *m, const char *path);
/* A KV cache of m for nseqs sequences of up to ctx positions each (blocks of
 * LM_KV_DEFAULT_BLOCK); exits on failure. */
struct lm_kv *eng_kv(struct lm_model *m, int ctx, int nseqs, int f16);
/* Parse a whole-string number in [lo, hi] or exit with a usage error naming
 * the command and option. */
long eng_long(const char *cmd, const char *opt, const char *s, long lo, long hi);
double eng_double(const char *cmd, const char *opt, const char *s, double lo, double hi);

#endif
