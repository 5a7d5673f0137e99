/* engine.c — model and KV-cache setup shared by the engine subcommands; see engine.h. */
#include "engine.h"

#include "cli.h"
#include "core/error.h"
#include "tok/tok.h"

#include <errno.h>
#include <stdlib.h>

struct lm_model *eng_load(const char *path, int nthreads, int max_batch)
{
    struct lm_model *m;
    char err[512];
    struct lm_model_opts o = {.nthreads = nthreads, .max_batch = max_batch};
    if (lm_model_load(&m, path, &o, err, sizeof(err)))
        cli_die("%s: %s", path, err);
    return m;
}

struct tok *eng_tokenizer(const struct lm_model *m, const char *path)
{
    char err[512];
    struct tok *tk;
    if (tok_load_gguf(&tk, lm_model_gguf(m), err, sizeof(err)))
        cli_die("%s: tokenizer: %s", path, err);
    if ((size_t)lm_model_n_vocab(m) < tok_n_vocab(tk))
        cli_die("%s: the tokenizer has %zu tokens, the model %d", path, tok_n_vocab(tk), lm_model_n_vocab(m));
    return tk;
}

struct lm_kv *eng_kv(struct lm_model *m, int ctx, int nseqs, int f16)
{
    struct lm_kv *kv;
    int bs = LM_KV_DEFAULT_BLOCK;
    int per_seq = (ctx + bs - 1) / bs;
    struct lm_kv_opts o = {.block_tokens = bs, .n_blocks = per_seq * nseqs, .max_seqs = nseqs,
                           .max_seq_len = ctx, .f16 = f16};
    int rc = lm_kv_new(&kv, m, &o);
    if (rc)
        cli_die("KV cache for %d x %d positions: %s", nseqs, ctx, aisle_strerror(rc));
    return kv;
}

long eng_long(const char *cmd, const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        cli_usage_error(cmd, "%s: expected a whole number from %ld to %ld, not '%s'", opt, lo, hi, s);
    return v;
}

double eng_double(const char *cmd, const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        cli_usage_error(cmd, "%s: expected a number from %g to %g, not '%s'", opt, lo, hi, s);
    return v;
}
