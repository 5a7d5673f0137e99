/*
 * tok.h — tokenizers: byte-level BPE (GPT-2 style, Aisle's own models) and
 * SentencePiece-style vocabularies (Llama-2 family GGUF files), as llama.cpp
 * reads them from GGUF.
 *
 * Design: a struct tok is an immutable vocabulary (token texts, types, scores,
 * a text->id hash map, and for BPE the merge ranks in a (left,right)->rank hash
 * map plus the compiled pre-tokenizer regex). Encoding state (PCRE2 match data,
 * scratch arrays, a per-word cache) lives in a struct tok_cache that each thread
 * owns, so one vocabulary serves many threads. BPE encoding splits text with the
 * GPT-2 regex (or Llama 3's, by tokenizer.ggml.pre; PCRE2 JIT with
 * PCRE2_MATCH_INVALID_UTF; bytes the regex cannot match, i.e. invalid UTF-8,
 * become words of their own so nothing is lost; ASCII words that no later byte can
 * change are split by an equivalent hand-written matcher), then merges each word's
 * byte symbols by rank with a min-heap over a linked list: O(L log L) per word of
 * L bytes. SPM encoding is llama.cpp's greedy best-score bigram merge over UTF-8
 * characters with <0xNN> byte fallback.
 *
 * Invariants: token ids are 0..n-1; for a BPE vocabulary every byte value has a
 * single-byte token (checked at load), so any byte string encodes, and with
 * NORMAL-typed tokens (as Aisle writes them) tok_decode(tok_encode(x)) == x for
 * every x, valid UTF-8 or not. Special
 * (control) tokens are produced from text only when TOK_PARSE_SPECIAL is given.
 * docs/TOKENIZER.md describes the format, special tokens and chat template.
 *
 * Ownership: a struct tok owns copies of everything it was built from (nothing
 * points into a GGUF map after tok_load_gguf returns). Pointers returned by
 * tok_text/tok_piece are valid until tok_free. Output vectors belong to the caller.
 *
 * THREAD SAFETY: a struct tok is immutable after construction: any number of
 * threads may encode/decode with it concurrently, each with its own tok_cache
 * (or NULL). A tok_cache and a tok_stream belong to one thread at a time.
 */
#ifndef AISLE_TOK_TOK_H
#define AISLE_TOK_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct gguf;
struct gguf_writer;

/* Limits on untrusted vocabularies (GGUF files). */
#define TOK_MAX_VOCAB (1u << 22)    /* tokens (Llama-3 has 128k, Gemma 256k) */
#define TOK_MAX_MERGES (1u << 22)   /* BPE merges */
#define TOK_MAX_TOKEN_LEN 4096u     /* bytes in one token's text */
#define TOK_MAX_TEMPLATE (1u << 20) /* bytes in tokenizer.chat_template */

enum tok_model {
    TOK_MODEL_BPE = 1, /* tokenizer.ggml.model = "gpt2" */
    TOK_MODEL_SPM = 2, /* tokenizer.ggml.model = "llama" */
};

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

/* Aisle's special tokens, appended after the merged tokens in this order by the
 * trainer. The chat format is Phi-3's, which llama.cpp recognises by name. */
#define TOK_ENDOFTEXT "<|endoftext|>" /* BOS, EOS and padding: separates documents */
#define TOK_SYSTEM "<|system|>"
#define TOK_USER "<|user|>"
#define TOK_ASSISTANT "<|assistant|>"
#define TOK_END "<|end|>" /* ends a turn (llama.cpp's EOT) */
#define TOK_N_AISLE_SPECIALS 5

/* The Jinja chat template stored as tokenizer.chat_template; tok_chat_format
 * produces exactly what it renders. */
extern const char tok_chat_template[];

struct tok;

/* A growable array of token ids with an optional cap (like struct buf). */
struct tok_ids {
    int32_t *ids; /* (cap) owned */
    size_t len, cap;
    size_t max; /* 0: no cap */
};
void tok_ids_init(struct tok_ids *v, size_t max);
void tok_ids_release(struct tok_ids *v);
/* 0, AISLE_ENOMEM, or AISLE_ETOOBIG past the cap (contents unchanged). */
int tok_ids_push(struct tok_ids *v, int32_t id);

/* ---- building a vocabulary ---- */

/* A byte-level BPE vocabulary. tokens[i] (lens[i] bytes) is token i in the
 * byte-to-unicode visible form; types may be NULL (all NORMAL); merges[j] is
 * "left right" (mlens[j] bytes), rank j. Specials: bos/eos/eot/pad ids or -1.
 * Merges whose parts or result are not tokens are dropped (llama.cpp could apply
 * them only to later reach byte fallback); each byte must have its token.
 * 0 with *out set, AISLE_EFORMAT / AISLE_ETOOBIG / AISLE_ENOMEM with detail in err. */
struct tok_bpe_spec {
    const char *const *tokens;
    const size_t *lens;
    const int32_t *types; /* (n) or NULL */
    size_t n;
    const char *const *merges;
    const size_t *mlens;
    size_t n_merges;
    int32_t bos, eos, eot, pad;
    int add_bos, add_eos;
    const char *pre;           /* tokenizer.ggml.pre; NULL = "gpt-2" */
    const char *chat_template; /* NULL = none */
};
int tok_new_bpe(struct tok **out, const struct tok_bpe_spec *spec, char *err, size_t errlen);

/* A SentencePiece vocabulary (llama.cpp "llama"): tokens in their stored form
 * (spaces as U+2581, bytes as <0xNN> of type BYTE), scores and types. */
struct tok_spm_spec {
    const char *const *tokens;
    const size_t *lens;
    const float *scores;  /* (n) or NULL: all 0 */
    const int32_t *types; /* (n) or NULL: all NORMAL */
    size_t n;
    int32_t bos, eos, eot, unk, pad;
    int add_bos, add_eos, add_space_prefix;
    const char *chat_template;
};
int tok_new_spm(struct tok **out, const struct tok_spm_spec *spec, char *err, size_t errlen);

/* NULL is a no-op. */
void tok_free(struct tok *t);

/* Read tokenizer.ggml.* (model "gpt2" or "llama") and tokenizer.chat_template
 * from an open GGUF file. Every count and length is checked against the TOK_MAX_*
 * limits; *out owns copies. 0, AISLE_ENOTFOUND (no tokenizer), AISLE_EFORMAT
 * (malformed or unsupported model), AISLE_ETOOBIG, AISLE_ENOMEM; detail in err. */
int tok_load_gguf(struct tok **out, const struct gguf *g, char *err, size_t errlen);
/* Write the vocabulary as tokenizer.ggml.* keys (and tokenizer.chat_template when
 * the vocabulary has one) into w. 0 or AISLE_ENOMEM / AISLE_EINVAL. */
int tok_save_gguf(const struct tok *t, struct gguf_writer *w);

/* ---- queries ---- */

enum tok_model tok_model_of(const struct tok *t);
size_t tok_n_vocab(const struct tok *t);
size_t tok_n_merges(const struct tok *t);
/* Stored text of token id (GGUF form), its length in *len; NULL when out of range. */
const char *tok_text(const struct tok *t, int32_t id, size_t *len);
enum tok_type tok_type_of(const struct tok *t, int32_t id);
/* Token with exactly this stored text, or -1. */
int32_t tok_find(const struct tok *t, const char *text, size_t len);
int32_t tok_bos(const struct tok *t);
int32_t tok_eos(const struct tok *t);
int32_t tok_eot(const struct tok *t); /* -1 when none */
/* 1 when id ends generation (EOS or EOT). */
int tok_is_eog(const struct tok *t, int32_t id);
const char *tok_chat_template_of(const struct tok *t); /* NULL when none */
/* BPE: tokenizer.ggml.pre. The GPT-2 family ("gpt-2", "phi-2") and the Llama-3
 * family ("llama-bpe", "llama3", "llama-v3", "falcon3") split as in llama.cpp;
 * others load with the GPT-2 pattern and tok_pre_known() is 0. NULL for SPM. */
const char *tok_pre(const struct tok *t);
int tok_pre_known(const struct tok *t);

/* ---- encoding ---- */

enum tok_encode_flags {
    TOK_ADD_SPECIAL = 1 << 0,   /* add BOS/EOS as the vocabulary asks (add_bos/add_eos) */
    TOK_PARSE_SPECIAL = 1 << 1, /* text like "<|user|>" becomes the control token */
};

/* Per-thread encoding state: match data, scratch, and a cache of word -> ids. */
struct tok_cache;
struct tok_cache *tok_cache_new(const struct tok *t);
void tok_cache_free(struct tok_cache *c);

/* Append the tokens of text[0..n) (any bytes) to out. cache must have been made
 * for t; it may be NULL for one-off calls (a temporary one is made, with the word
 * cache only for texts of 64 KiB or more: pass a long-lived cache where many
 * texts are encoded). 0, AISLE_ENOMEM, or
 * AISLE_ETOOBIG when out's cap is reached (out then holds a prefix). */
int tok_encode(const struct tok *t, struct tok_cache *cache, const char *text, size_t n, unsigned flags,
               struct tok_ids *out);

/* The textbook BPE encoder (GPT-2's encoder.py: find the lowest-rank pair in a
 * word, merge it everywhere, repeat; O(L^2) per word, no cache, no special
 * tokens): the reference that tests and bench/tokenize compare tok_encode with.
 * AISLE_EINVAL for an SPM vocabulary. */
int tok_encode_naive(const struct tok *t, const char *text, size_t n, struct tok_ids *out);

/* ---- decoding ---- */

enum tok_decode_flags {
    TOK_DECODE_SPECIAL = 1 << 0, /* render control/unknown tokens as their text */
    TOK_DECODE_STRIP = 1 << 1,   /* drop a leading BOS / trailing EOS the vocabulary adds */
};

/* Bytes token id stands for (BPE: the raw bytes; SPM: U+2581 as space, <0xNN>
 * as the byte). Control and unknown tokens give their text only with
 * TOK_DECODE_SPECIAL, else nothing. AISLE_EINVAL for an id out of range. */
int tok_piece(const struct tok *t, int32_t id, unsigned flags, const char **p, size_t *len);
/* Append the text of ids to out as llama.cpp's detokenize does (for SPM with
 * add_space_prefix, the first piece loses one leading space). 0, AISLE_EINVAL
 * (bad id), AISLE_ENOMEM / AISLE_ETOOBIG from out. */
int tok_decode(const struct tok *t, const int32_t *ids, size_t n, unsigned flags, struct buf *out);

/* Streaming decode for token-by-token output: bytes are released only as whole
 * UTF-8 characters; bytes that cannot start or continue a valid character are
 * released as they are, so the total output equals tok_decode's (except that
 * TOK_DECODE_STRIP drops only a leading BOS: a stream cannot know its last token;
 * stop at EOS/EOT with tok_is_eog instead). */
struct tok_stream {
    unsigned char pend[4]; /* an incomplete character's first bytes */
    size_t npend;
    unsigned flags; /* tok_decode_flags */
    int first;      /* no token seen yet (leading-space rule) */
};
void tok_stream_init(struct tok_stream *s, unsigned flags);
/* Append what token id completes to out. Same returns as tok_decode. */
int tok_stream_push(const struct tok *t, struct tok_stream *s, int32_t id, struct buf *out);
/* Release any held bytes (end of stream). */
int tok_stream_flush(struct tok_stream *s, struct buf *out);

/* ---- chat format ---- */

struct tok_chat_msg {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
};
/* Append the conversation in Aisle's chat format (what tok_chat_template
 * renders): "<|role|>\n" content "<|end|>\n" per message, then "<|assistant|>\n"
 * when add_generation_prompt. AISLE_EINVAL for another role. */
int tok_chat_format(const struct tok_chat_msg *msgs, size_t n, int add_generation_prompt, struct buf *out);

/* ---- the GPT-2 pre-tokenizer, shared with the trainer ---- */

/* The GPT-2 pattern as PCRE2 source (what Aisle's vocabularies use). */
extern const char tok_gpt2_pattern[];
/* The Llama-3 pattern (tokenizer.ggml.pre "llama-bpe" and kin). */
extern const char tok_llama3_pattern[];
/* Iterates over the pre-tokens ("words") of a byte string. Words tile the input:
 * regex matches plus the runs of bytes between them (invalid UTF-8). */
struct tok_pretok {
    const void *re;  /* pcre2_code_8 */
    void *md;        /* pcre2_match_data_8 */
    const char *s;
    size_t n, pos;
    size_t mstart, mend; /* the next regex match, once found (mend > mstart) */
    int have_match;      /* 1 match pending, 0 none searched yet, -1 no more */
    int jit;             /* the pattern was JIT-compiled */
    int ascii_fast;      /* set to 1 after init when re is tok_gpt2_pattern: words that ASCII
                          * bytes alone decide are split without PCRE2 (same result, ~3x faster) */
};
/* Compile a pre-tokenizer pattern (tok_gpt2_pattern, tok_llama3_pattern) with
 * JIT. *re must be released with tok_regex_free. 0 or AISLE_ENOMEM /
 * AISLE_EINVAL (with PCRE2's message in err). */
int tok_regex_new(void **re, const char *pattern, char *err, size_t errlen);
void tok_regex_free(void *re);
void *tok_match_data_new(const void *re);
void tok_match_data_free(void *md);
void tok_pretok_init(struct tok_pretok *it, const void *re, void *md, const char *s, size_t n);
/* Next word as [*start, *start + *len). 1 when a word was returned, 0 at the end. */
int tok_pretok_next(struct tok_pretok *it, size_t *start, size_t *len);

/* The GPT-2 byte <-> visible character mapping: bytes 33..126, 161..172 and
 * 174..255 map to themselves, the other 68 to U+0100 onwards in byte order. */
uint32_t tok_byte_to_cp(unsigned char b);
/* Byte for code point cp, or -1 when cp is not in the mapping. */
int tok_cp_to_byte(uint32_t cp);

#endif
