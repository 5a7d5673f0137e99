/*
 * tok_gguf.c — tokenizers to and from GGUF metadata, with llama.cpp's key names:
 *
 *   tokenizer.ggml.model           "gpt2" (byte-level BPE) or "llama" (SentencePiece)
 *   tokenizer.ggml.pre             BPE pre-tokenizer name; Aisle writes "gpt-2"
 *   tokenizer.ggml.tokens          string[n] (BPE: byte-to-unicode visible form)
 *   tokenizer.ggml.token_type      int32[n]  (1 normal .. 6 byte)
 *   tokenizer.ggml.scores          float32[n] (SPM merge priorities)
 *   tokenizer.ggml.merges          string[m] "left right", rank order (BPE)
 *   tokenizer.ggml.{bos,eos,eot,unknown,padding}_token_id   uint32
 *   tokenizer.ggml.add_bos_token / add_eos_token / add_space_prefix   bool
 *   tokenizer.chat_template        Jinja string
 *
 * Loading treats the file as untrusted: the array types and counts are checked
 * (the GGUF reader has already bounded them by the file size), the vocabulary
 * and merge counts against TOK_MAX_*, and out-of-range special ids are ignored
 * as llama.cpp ignores them (falling back to its defaults when those fit).
 */
#include "tok/tok_impl.h"

#include "core/error.h"
#include "gguf/gguf.h"

#include <stdlib.h>
#include <string.h>

#define KEY(k) "tokenizer.ggml." k

/* Read a string array into pointer/length arrays (pointing into g). */
static int get_str_arr(const struct gguf *g, const char *key, size_t limit, const char ***out, size_t **lens,
                       size_t *n, char *err, size_t errlen)
{
    enum gguf_type elem;
    const void *data;
    int rc = gguf_get_arr(g, key, &elem, n, &data);
    if (rc == AISLE_ENOTFOUND)
        return rc;
    if (rc || elem != GGUF_TYPE_STRING) {
        tok_seterr(err, errlen, "%s: expected an array of strings", key);
        return AISLE_EFORMAT;
    }
    if (*n > limit) {
        tok_seterr(err, errlen, "%s: %zu entries (limit %zu)", key, *n, limit);
        return AISLE_ETOOBIG;
    }
    *out = malloc((*n ? *n : 1) * sizeof(**out));
    *lens = malloc((*n ? *n : 1) * sizeof(**lens));
    if (!*out || !*lens) {
        free(*out);
        free(*lens);
        tok_seterr(err, errlen, "%s: out of memory for %zu entries", key, *n);
        return AISLE_ENOMEM;
    }
    for (size_t i = 0; i < *n; i++) {
        if (gguf_get_arr_str(g, key, i, &(*out)[i], &(*lens)[i])) {
            free(*out);
            free(*lens);
            tok_seterr(err, errlen, "%s: entry %zu unreadable", key, i);
            return AISLE_EFORMAT;
        }
    }
    return 0;
}

/* A numeric array of exactly n elements of type want, copied out (unaligned in the map). */
static int get_num_arr(const struct gguf *g, const char *key, enum gguf_type want, size_t n, void **out, char *err,
                       size_t errlen)
{
    enum gguf_type elem;
    const void *data;
    size_t m;
    int rc = gguf_get_arr(g, key, &elem, &m, &data);
    if (rc == AISLE_ENOTFOUND)
        return rc;
    /* token types are int32 in llama.cpp's files; accept uint32 too (same bytes for 0..6) */
    int ok = !rc && (elem == want || (want == GGUF_TYPE_INT32 && elem == GGUF_TYPE_UINT32));
    if (!ok || m != n) {
        tok_seterr(err, errlen, "%s: expected %s[%zu]", key, gguf_type_name(want), n);
        return AISLE_EFORMAT;
    }
    if (!(*out = malloc(n * 4 + 1))) {
        tok_seterr(err, errlen, "%s: out of memory", key);
        return AISLE_ENOMEM;
    }
    memcpy(*out, data, n * 4);
    return 0;
}

static int32_t get_id(const struct gguf *g, const char *key, int32_t dflt, size_t n)
{
    uint32_t v;
    if (gguf_get_u32(g, key, &v) == 0 && v < n)
        return (int32_t)v;
    return dflt >= 0 && (size_t)dflt < n ? dflt : -1;
}

static int get_flag(const struct gguf *g, const char *key, int dflt)
{
    int v;
    return gguf_get_bool(g, key, &v) == 0 ? v : dflt;
}

/* llama.cpp guesses the end-of-turn token by its text when the file names none. */
static int32_t guess_eot(const struct tok *t)
{
    static const char *const names[] = {TOK_END, "<|eot_id|>", "<|im_end|>", "<end_of_turn>"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int32_t id = tok_find(t, names[i], strlen(names[i]));
        if (id >= 0 && (t->tokens[id].type == TOK_TYPE_CONTROL || t->tokens[id].type == TOK_TYPE_USER_DEFINED))
            return id;
    }
    return -1;
}

int tok_load_gguf(struct tok **out, const struct gguf *g, char *err, size_t errlen)
{
    const char *model, *s;
    size_t model_len, slen;
    int rc = gguf_get_str(g, KEY("model"), &model, &model_len);
    if (rc == AISLE_ENOTFOUND) {
        tok_seterr(err, errlen, "no tokenizer in this file (tokenizer.ggml.model is absent)");
        return rc;
    }
    if (rc) {
        tok_seterr(err, errlen, KEY("model") ": not a string");
        return AISLE_EFORMAT;
    }
    int bpe = model_len == 4 && !memcmp(model, "gpt2", 4);
    int spm = model_len == 5 && !memcmp(model, "llama", 5);
    if (!bpe && !spm) {
        tok_seterr(err, errlen, "tokenizer model \"%.*s\" is not supported (gpt2 and llama are)",
                   (int)(model_len > 32 ? 32 : model_len), model);
        return AISLE_EFORMAT;
    }
    const char **tokens = NULL, **merges = NULL;
    size_t *lens = NULL, *mlens = NULL, n = 0, nm = 0;
    int32_t *types = NULL;
    float *scores = NULL;
    char *tmpl = NULL, *pre = NULL;
    struct tok *t = NULL;

    if ((rc = get_str_arr(g, KEY("tokens"), TOK_MAX_VOCAB, &tokens, &lens, &n, err, errlen))) {
        if (rc == AISLE_ENOTFOUND) {
            tok_seterr(err, errlen, KEY("tokens") " is absent");
            rc = AISLE_EFORMAT;
        }
        goto done;
    }
    rc = get_num_arr(g, KEY("token_type"), GGUF_TYPE_INT32, n, (void **)&types, err, errlen);
    if (rc && rc != AISLE_ENOTFOUND)
        goto done;
    rc = get_num_arr(g, KEY("scores"), GGUF_TYPE_FLOAT32, n, (void **)&scores, err, errlen);
    if (rc && rc != AISLE_ENOTFOUND)
        goto done;
    rc = gguf_get_str(g, "tokenizer.chat_template", &s, &slen);
    if (rc == 0) {
        if (slen > TOK_MAX_TEMPLATE) {
            tok_seterr(err, errlen, "tokenizer.chat_template: %zu bytes (limit %u)", slen, TOK_MAX_TEMPLATE);
            rc = AISLE_ETOOBIG;
            goto done;
        }
        if (!(tmpl = strndup(s, slen))) {
            rc = AISLE_ENOMEM;
            goto done;
        }
    }
    if (bpe) {
        rc = get_str_arr(g, KEY("merges"), TOK_MAX_MERGES, &merges, &mlens, &nm, err, errlen);
        if (rc && rc != AISLE_ENOTFOUND)
            goto done;
        if (gguf_get_str(g, KEY("pre"), &s, &slen) == 0 && !(pre = strndup(s, slen < 64 ? slen : 64))) {
            rc = AISLE_ENOMEM;
            goto done;
        }
        /* llama.cpp's defaults for "gpt2" files that name no special tokens; the
         * Llama-3 pre-tokenizers default to adding BOS */
        const char *pattern;
        int ignore_merges, add_bos_default;
        tok_pre_info(pre, &pattern, &ignore_merges, &add_bos_default);
        struct tok_bpe_spec spec = {
            .tokens = tokens, .lens = lens, .types = types, .n = n, .merges = merges, .mlens = mlens,
            .n_merges = nm, .bos = get_id(g, KEY("bos_token_id"), 11, n), .eos = get_id(g, KEY("eos_token_id"), 11, n),
            .eot = get_id(g, KEY("eot_token_id"), -1, n), .pad = get_id(g, KEY("padding_token_id"), -1, n),
            .add_bos = get_flag(g, KEY("add_bos_token"), add_bos_default),
            .add_eos = get_flag(g, KEY("add_eos_token"), 0),
            .pre = pre ? pre : "default", .chat_template = tmpl,
        };
        rc = tok_new_bpe(&t, &spec, err, errlen);
    } else {
        struct tok_spm_spec spec = {
            .tokens = tokens, .lens = lens, .scores = scores, .types = types, .n = n,
            .bos = get_id(g, KEY("bos_token_id"), 1, n), .eos = get_id(g, KEY("eos_token_id"), 2, n),
            .eot = get_id(g, KEY("eot_token_id"), -1, n), .unk = get_id(g, KEY("unknown_token_id"), 0, n),
            .pad = get_id(g, KEY("padding_token_id"), -1, n), .add_bos = get_flag(g, KEY("add_bos_token"), 1),
            .add_eos = get_flag(g, KEY("add_eos_token"), 0),
            .add_space_prefix = get_flag(g, KEY("add_space_prefix"), 1), .chat_template = tmpl,
        };
        rc = tok_new_spm(&t, &spec, err, errlen);
    }
    if (rc)
        goto done;
    if (t->eot < 0)
        t->eot = guess_eot(t);
    *out = t;
done:
    if (rc == AISLE_ENOMEM)
        tok_seterr(err, errlen, "out of memory loading the tokenizer");
    free(tokens);
    free(lens);
    free(merges);
    free(mlens);
    free(types);
    free(scores);
    free(tmpl);
    free(pre);
    return rc;
}

int tok_save_gguf(const struct tok *t, struct gguf_writer *w)
{
    int rc = AISLE_ENOMEM;
    const char **texts = malloc(t->n * sizeof(*texts));
    size_t *lens = malloc(t->n * sizeof(*lens));
    int32_t *types = malloc(t->n * sizeof(*types));
    float *scores = malloc(t->n * sizeof(*scores));
    char **merges = NULL;
    size_t *mlens = NULL;
    if (!texts || !lens || !types || !scores)
        goto done;
    for (uint32_t i = 0; i < t->n; i++) {
        texts[i] = t->text + t->tokens[i].off;
        lens[i] = t->tokens[i].len;
        types[i] = t->tokens[i].type;
        scores[i] = t->tokens[i].score;
    }
    if ((rc = gguf_writer_set_str(w, KEY("model"), t->model == TOK_MODEL_BPE ? "gpt2" : "llama")) ||
        (rc = gguf_writer_set_arr_strn(w, KEY("tokens"), texts, lens, t->n)) ||
        (rc = gguf_writer_set_arr(w, KEY("token_type"), GGUF_TYPE_INT32, types, t->n)))
        goto done;
    if (t->model == TOK_MODEL_SPM) {
        if ((rc = gguf_writer_set_arr(w, KEY("scores"), GGUF_TYPE_FLOAT32, scores, t->n)) ||
            (rc = gguf_writer_set_bool(w, KEY("add_space_prefix"), t->add_space_prefix)))
            goto done;
    } else {
        rc = AISLE_ENOMEM;
        if (!(merges = calloc(t->n_merges ? t->n_merges : 1, sizeof(*merges))) ||
            !(mlens = malloc((t->n_merges ? t->n_merges : 1) * sizeof(*mlens))))
            goto done;
        for (uint32_t m = 0; m < t->n_merges; m++) {
            const struct tok_token *a = &t->tokens[t->merge_pairs[m][0]], *b = &t->tokens[t->merge_pairs[m][1]];
            if (!(merges[m] = malloc((size_t)a->len + b->len + 1)))
                goto done;
            memcpy(merges[m], t->text + a->off, a->len);
            merges[m][a->len] = ' ';
            memcpy(merges[m] + a->len + 1, t->text + b->off, b->len);
            mlens[m] = (size_t)a->len + b->len + 1;
        }
        if ((rc = gguf_writer_set_arr_strn(w, KEY("merges"), (const char *const *)merges, mlens, t->n_merges)) ||
            (rc = gguf_writer_set_str(w, KEY("pre"), t->pre ? t->pre : "gpt-2")))
            goto done;
    }
    struct {
        const char *key;
        int32_t id;
    } ids[] = {{KEY("bos_token_id"), t->bos}, {KEY("eos_token_id"), t->eos}, {KEY("eot_token_id"), t->eot},
               {KEY("unknown_token_id"), t->unk}, {KEY("padding_token_id"), t->pad}};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        if (ids[i].id >= 0 && (rc = gguf_writer_set_u32(w, ids[i].key, (uint32_t)ids[i].id)))
            goto done;
    if ((rc = gguf_writer_set_bool(w, KEY("add_bos_token"), t->add_bos)) ||
        (rc = gguf_writer_set_bool(w, KEY("add_eos_token"), t->add_eos)))
        goto done;
    if (t->chat_template && (rc = gguf_writer_set_str(w, "tokenizer.chat_template", t->chat_template)))
        goto done;
    rc = 0;
done:
    if (merges)
        for (uint32_t m = 0; m < t->n_merges; m++)
            free(merges[m]);
    free(merges);
    free(mlens);
    free(texts);
    free(lens);
    free(types);
    free(scores);
    return rc;
}
