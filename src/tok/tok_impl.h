/*
 * tok_impl.h — the inside of struct tok, shared by the files of src/tok/ only.
 *
 * Two open-addressing hash maps: token text -> id (slots hold id+1, texts live
 * in one arena) and a 64-bit key -> 64-bit value map (BPE merges: (left<<32 |
 * right) -> (rank<<32 | result); the trainer's pair index). Both grow at 1/2 load.
 *
 * THREAD SAFETY: as tok.h; the maps are read-only after construction.
 */
#ifndef AISLE_TOK_TOK_IMPL_H
#define AISLE_TOK_TOK_IMPL_H

#include "tok/tok.h"

#include <stddef.h>
#include <stdint.h>

struct tok_token {
    uint32_t off, len;   /* stored text: t->text[off .. off+len) */
    uint32_t poff, plen; /* decoded piece: t->pieces[poff .. poff+plen) */
    float score;
    int32_t type; /* enum tok_type */
};

/* u64 -> u64, open addressing; key UINT64_MAX is the empty marker. */
struct tok_u64map {
    uint64_t *keys; /* (cap) */
    uint64_t *vals; /* (cap) */
    size_t cap, len;
};
#define TOK_U64MAP_EMPTY UINT64_MAX
void tok_u64map_init(struct tok_u64map *m);
void tok_u64map_release(struct tok_u64map *m);
/* Pointer to the value of key, or NULL. */
uint64_t *tok_u64map_get(const struct tok_u64map *m, uint64_t key);
/* Insert or overwrite. 0 or AISLE_ENOMEM. key must not be TOK_U64MAP_EMPTY. */
int tok_u64map_put(struct tok_u64map *m, uint64_t key, uint64_t val);
/* Reserve room for n entries in total. 0 or AISLE_ENOMEM. */
int tok_u64map_reserve(struct tok_u64map *m, size_t n);
uint64_t tok_hash64(uint64_t x);

struct tok {
    enum tok_model model;
    uint32_t n;                /* vocabulary size */
    struct tok_token *tokens;  /* (n) */
    char *text;                /* all stored texts, owned */
    char *pieces;              /* all decoded pieces, owned */
    uint32_t *map;             /* (map_cap) text -> id+1, 0 empty */
    size_t map_cap;
    int32_t byte_tok[256];     /* token of each single byte (BPE: visible char; SPM: <0xNN>), -1 none */
    struct tok_u64map merges;  /* BPE: (l<<32|r) -> (rank<<32|result) */
    uint32_t n_merges;
    uint32_t (*merge_pairs)[2]; /* (n_merges) BPE: left, right ids by rank (for saving) */
    void *re;                  /* BPE: pcre2_code_8 */
    int32_t bos, eos, eot, unk, pad;
    int add_bos, add_eos, add_space_prefix;
    int ignore_merges;         /* BPE (Llama 3): a word that is a token is not merged */
    int ascii_fast;            /* BPE: the pattern is GPT-2's, which tok_pretok can split ASCII for */
    int pre_known;             /* BPE: the pre-tokenizer name is one we split like llama.cpp */
    int32_t *specials;         /* ids matched in text (control, unknown, user-defined), longest first */
    size_t n_specials;
    char *pre;                 /* tokenizer.ggml.pre, owned, may be NULL */
    char *chat_template;       /* owned, may be NULL */
};

/* Shared constructor: copies n texts into t (types, scores may be NULL), builds
 * the text map and the special-token list. 0 / AISLE_E* with err. */
int tok_init_tokens(struct tok *t, const char *const *tokens, const size_t *lens, const int32_t *types,
                    const float *scores, size_t n, char *err, size_t errlen);
/* calloc a struct tok, tok_init_tokens, write the model's pieces. 0 / AISLE_E* with err. */
int tok_create(struct tok **out, enum tok_model model, const char *const *tokens, const size_t *lens,
               const int32_t *types, const float *scores, size_t n, char *err, size_t errlen);
/* AISLE_EFORMAT when a special id (bos, eos, eot, unk, pad) is neither -1 nor a token. */
int tok_check_ids(const struct tok *t, char *err, size_t errlen);
/* What a BPE pre-tokenizer name means, as llama.cpp reads it: the pattern, whether
 * whole-word tokens skip merging, and the add_bos default. 1 when the name is
 * known; 0 (and the GPT-2 settings) otherwise. */
int tok_pre_info(const char *pre, const char **pattern, int *ignore_merges, int *add_bos);
/* Allocate t->pieces for the piece writers below. */
int tok_pieces_alloc(struct tok *t, char *err, size_t errlen);
/* Write piece bytes of every token (model-specific), called by constructors. */
int tok_bpe_pieces(struct tok *t, char *err, size_t errlen);
int tok_spm_pieces(struct tok *t, char *err, size_t errlen);

/* Encoders of one raw-text fragment (no special tokens inside), appending to out. */
int tok_bpe_encode_fragment(const struct tok *t, struct tok_cache *c, const char *s, size_t n, struct tok_ids *out);
int tok_spm_encode_fragment(const struct tok *t, struct tok_cache *c, const char *s, size_t n, struct tok_ids *out);

/* Per-thread state. */
struct tok_cache {
    const struct tok *t;
    void *md; /* pcre2 match data (BPE) */
    /* scratch for one word / fragment, grown as needed */
    int32_t *sym_id;
    int32_t *sym_prev, *sym_next;
    uint32_t *sym_len;
    size_t sym_cap;
    struct tok_heap_ent *heap;
    size_t heap_len, heap_cap;
    struct buf esc; /* SPM: the escaped fragment; BPE: a word's visible form */
    int one_shot;   /* made for one short tok_encode call: skip the word cache (4 MiB to set up) */
    /* BPE word cache: open addressing over entries in arenas */
    struct tok_wc_ent *wc; /* (wc_cap) */
    size_t wc_cap, wc_len;
    char *wc_bytes;        /* word bytes arena */
    size_t wc_bytes_len, wc_bytes_cap;
    int32_t *wc_ids;       /* ids arena */
    size_t wc_ids_len, wc_ids_cap;
};

struct tok_heap_ent {
    uint64_t key; /* BPE: rank<<32 | left; SPM: ordering key, see spm.c */
    int32_t left, right;
    int32_t lid, rid; /* BPE: ids at creation; SPM: rid unused, lid = size */
};

struct tok_wc_ent {
    uint64_t hash;
    uint32_t off, len;   /* into wc_bytes */
    uint32_t ioff, ilen; /* into wc_ids */
    int used;
};

/* Scratch for a word of n symbols. 0 or AISLE_ENOMEM. */
int tok_cache_reserve(struct tok_cache *c, size_t n);
/* Heap of tok_heap_ent ordered by key ascending. */
int tok_heap_push(struct tok_cache *c, const struct tok_heap_ent *e);
void tok_heap_pop(struct tok_cache *c, struct tok_heap_ent *out);

/* Set err to a formatted message (snprintf into err/errlen; NULL err is fine). */
void tok_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* UTF-8 encode cp into out (at most 4 bytes); returns the length. */
size_t tok_utf8_put(char *out, uint32_t cp);

#endif
