/*
 * vocab.c — the vocabulary object shared by both models: token storage, the
 * text -> id map, special-token partitioning of input, decoding (whole and
 * streaming), the chat format, and the per-thread cache with its heap.
 *
 * Special tokens are found leftmost-longest: at each byte, the longest special
 * token (control/unknown only with TOK_PARSE_SPECIAL, user-defined always, as in
 * llama.cpp's tokenizer_st_partition) whose text starts there; a 256-bit table
 * of first bytes keeps the scan cheap. The text between special tokens is
 * encoded as independent fragments, as llama.cpp does.
 */
#include "tok/tok_impl.h"

#include "core/error.h"
#include "core/hset.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char tok_chat_template[] =
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

void tok_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

size_t tok_utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- u64 map ---- */

uint64_t tok_hash64(uint64_t x)
{
    /* splitmix64 finalizer: pair keys are small integers, so mix all bits */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

void tok_u64map_init(struct tok_u64map *m)
{
    memset(m, 0, sizeof(*m));
}

void tok_u64map_release(struct tok_u64map *m)
{
    free(m->keys);
    free(m->vals);
    tok_u64map_init(m);
}

uint64_t *tok_u64map_get(const struct tok_u64map *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)tok_hash64(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == key)
            return &m->vals[i];
        if (m->keys[i] == TOK_U64MAP_EMPTY)
            return NULL;
    }
}

static int u64map_resize(struct tok_u64map *m, size_t ncap)
{
    uint64_t *nk = malloc(ncap * sizeof(*nk));
    uint64_t *nv = malloc(ncap * sizeof(*nv));
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return AISLE_ENOMEM;
    }
    memset(nk, 0xff, ncap * sizeof(*nk));
    size_t mask = ncap - 1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == TOK_U64MAP_EMPTY)
            continue;
        size_t j = (size_t)tok_hash64(m->keys[i]) & mask;
        while (nk[j] != TOK_U64MAP_EMPTY)
            j = (j + 1) & mask;
        nk[j] = m->keys[i];
        nv[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = nk;
    m->vals = nv;
    m->cap = ncap;
    return 0;
}

int tok_u64map_reserve(struct tok_u64map *m, size_t n)
{
    size_t cap = m->cap ? m->cap : 16;
    while (cap / 2 < n) {
        if (cap > SIZE_MAX / 4 / sizeof(uint64_t))
            return AISLE_ENOMEM;
        cap *= 2;
    }
    return cap == m->cap ? 0 : u64map_resize(m, cap);
}

int tok_u64map_put(struct tok_u64map *m, uint64_t key, uint64_t val)
{
    uint64_t *v = tok_u64map_get(m, key);
    if (v) {
        *v = val;
        return 0;
    }
    if (tok_u64map_reserve(m, m->len + 1))
        return AISLE_ENOMEM;
    size_t mask = m->cap - 1;
    size_t i = (size_t)tok_hash64(key) & mask;
    while (m->keys[i] != TOK_U64MAP_EMPTY)
        i = (i + 1) & mask;
    m->keys[i] = key;
    m->vals[i] = val;
    m->len++;
    return 0;
}

/* ---- token ids ---- */

void tok_ids_init(struct tok_ids *v, size_t max)
{
    v->ids = NULL;
    v->len = v->cap = 0;
    v->max = max;
}

void tok_ids_release(struct tok_ids *v)
{
    free(v->ids);
    tok_ids_init(v, v->max);
}

int tok_ids_push(struct tok_ids *v, int32_t id)
{
    if (v->len == v->cap) {
        if (v->max && v->len >= v->max)
            return AISLE_ETOOBIG;
        size_t ncap = v->cap ? v->cap * 2 : 64;
        if (v->max && ncap > v->max)
            ncap = v->max;
        if (ncap > SIZE_MAX / sizeof(int32_t))
            return AISLE_ENOMEM;
        int32_t *n = realloc(v->ids, ncap * sizeof(*n));
        if (!n)
            return AISLE_ENOMEM;
        v->ids = n;
        v->cap = ncap;
    }
    v->ids[v->len++] = id;
    return 0;
}

/* ---- construction ---- */

static uint64_t text_hash(const char *s, size_t n)
{
    return hset_hash(HSET_FNV_SEED, s, n);
}

/* The map slot holding text s, or the empty slot where it would go. */
static size_t map_slot(const struct tok *t, const char *s, size_t n)
{
    size_t mask = t->map_cap - 1;
    for (size_t i = (size_t)text_hash(s, n) & mask;; i = (i + 1) & mask) {
        uint32_t v = t->map[i];
        if (!v)
            return i;
        const struct tok_token *k = &t->tokens[v - 1];
        if (k->len == n && memcmp(t->text + k->off, s, n) == 0)
            return i;
    }
}

int32_t tok_find(const struct tok *t, const char *s, size_t n)
{
    if (!t->map_cap)
        return -1;
    uint32_t v = t->map[map_slot(t, s, n)];
    return v ? (int32_t)(v - 1) : -1;
}

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const struct tok *t = ctx;
    uint32_t la = t->tokens[*(const int32_t *)a].len, lb = t->tokens[*(const int32_t *)b].len;
    if (la != lb)
        return la > lb ? -1 : 1;
    int32_t ia = *(const int32_t *)a, ib = *(const int32_t *)b;
    return ia < ib ? -1 : ia > ib;
}

int tok_init_tokens(struct tok *t, const char *const *tokens, const size_t *lens, const int32_t *types,
                    const float *scores, size_t n, char *err, size_t errlen)
{
    if (n == 0 || n > TOK_MAX_VOCAB) {
        tok_seterr(err, errlen, "vocabulary of %zu tokens (must be 1..%u)", n, TOK_MAX_VOCAB);
        return n ? AISLE_ETOOBIG : AISLE_EFORMAT;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] > TOK_MAX_TOKEN_LEN) {
            tok_seterr(err, errlen, "token %zu is %zu bytes (limit %u)", i, lens[i], TOK_MAX_TOKEN_LEN);
            return AISLE_ETOOBIG;
        }
        total += lens[i]; /* <= 2^22 * 4096 = 2^34: no overflow on 64-bit size_t */
    }
    if (total > UINT32_MAX) {
        tok_seterr(err, errlen, "token texts total %zu bytes (limit 4 GiB)", total);
        return AISLE_ETOOBIG;
    }
    t->n = (uint32_t)n;
    t->tokens = calloc(n, sizeof(*t->tokens));
    t->text = malloc(total + 1);
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    t->map = calloc(cap, sizeof(*t->map));
    t->map_cap = cap;
    if (!t->tokens || !t->text || !t->map) {
        tok_seterr(err, errlen, "out of memory for %zu tokens", n);
        return AISLE_ENOMEM;
    }
    size_t off = 0, nspecial = 0;
    for (size_t i = 0; i < n; i++) {
        struct tok_token *k = &t->tokens[i];
        memcpy(t->text + off, tokens[i], lens[i]);
        k->off = (uint32_t)off;
        k->len = (uint32_t)lens[i];
        off += lens[i];
        k->type = types ? types[i] : TOK_TYPE_NORMAL;
        if (k->type < TOK_TYPE_UNDEFINED || k->type > TOK_TYPE_BYTE)
            k->type = TOK_TYPE_UNDEFINED; /* llama.cpp: unknown types decode to nothing */
        k->score = scores ? scores[i] : 0.0f;
        /* of tokens with the same text the last wins the map, as in llama.cpp's token_to_id */
        t->map[map_slot(t, t->text + k->off, k->len)] = (uint32_t)i + 1;
        if (k->len && (k->type == TOK_TYPE_CONTROL || k->type == TOK_TYPE_UNKNOWN || k->type == TOK_TYPE_USER_DEFINED))
            nspecial++;
    }
    t->text[off] = '\0';
    if (nspecial) {
        t->specials = malloc(nspecial * sizeof(*t->specials));
        if (!t->specials) {
            tok_seterr(err, errlen, "out of memory");
            return AISLE_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            const struct tok_token *k = &t->tokens[i];
            if (k->len && (k->type == TOK_TYPE_CONTROL || k->type == TOK_TYPE_UNKNOWN || k->type == TOK_TYPE_USER_DEFINED))
                t->specials[t->n_specials++] = (int32_t)i;
        }
        qsort_r(t->specials, t->n_specials, sizeof(*t->specials), cmp_special, t);
    }
    for (int b = 0; b < 256; b++)
        t->byte_tok[b] = -1;
    return 0;
}

int tok_pieces_alloc(struct tok *t, char *err, size_t errlen)
{
    size_t total = 0;
    for (uint32_t i = 0; i < t->n; i++)
        total += t->tokens[i].len;
    /* a piece is never longer than its stored text (visible chars and U+2581 shrink) */
    if (!(t->pieces = malloc(total + 1))) {
        tok_seterr(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    return 0;
}

int tok_create(struct tok **out, enum tok_model model, const char *const *tokens, const size_t *lens,
               const int32_t *types, const float *scores, size_t n, char *err, size_t errlen)
{
    struct tok *t = calloc(1, sizeof(*t));
    if (!t) {
        tok_seterr(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    t->model = model;
    int rc = tok_init_tokens(t, tokens, lens, types, scores, n, err, errlen);
    if (!rc)
        rc = model == TOK_MODEL_BPE ? tok_bpe_pieces(t, err, errlen) : tok_spm_pieces(t, err, errlen);
    if (rc) {
        tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tok_check_ids(const struct tok *t, char *err, size_t errlen)
{
    int32_t ids[5] = {t->bos, t->eos, t->eot, t->unk, t->pad};
    for (int i = 0; i < 5; i++)
        if (ids[i] < -1 || ids[i] >= (int32_t)t->n) {
            tok_seterr(err, errlen, "special token id %d out of range (vocabulary of %u)", ids[i], t->n);
            return AISLE_EFORMAT;
        }
    return 0;
}

void tok_free(struct tok *t)
{
    if (!t)
        return;
    free(t->tokens);
    free(t->text);
    free(t->pieces);
    free(t->map);
    tok_u64map_release(&t->merges);
    free(t->merge_pairs);
    tok_regex_free(t->re);
    free(t->specials);
    free(t->pre);
    free(t->chat_template);
    free(t);
}

/* ---- queries ---- */

enum tok_model tok_model_of(const struct tok *t) { return t->model; }
size_t tok_n_vocab(const struct tok *t) { return t->n; }
size_t tok_n_merges(const struct tok *t) { return t->n_merges; }
int32_t tok_bos(const struct tok *t) { return t->bos; }
int32_t tok_eos(const struct tok *t) { return t->eos; }
int32_t tok_eot(const struct tok *t) { return t->eot; }
const char *tok_chat_template_of(const struct tok *t) { return t->chat_template; }
const char *tok_pre(const struct tok *t) { return t->pre; }
int tok_pre_known(const struct tok *t) { return t->model == TOK_MODEL_SPM || t->pre_known; }

int tok_is_eog(const struct tok *t, int32_t id)
{
    return id >= 0 && (id == t->eos || id == t->eot);
}

const char *tok_text(const struct tok *t, int32_t id, size_t *len)
{
    if (id < 0 || (uint32_t)id >= t->n)
        return NULL;
    *len = t->tokens[id].len;
    return t->text + t->tokens[id].off;
}

enum tok_type tok_type_of(const struct tok *t, int32_t id)
{
    if (id < 0 || (uint32_t)id >= t->n)
        return TOK_TYPE_UNDEFINED;
    return (enum tok_type)t->tokens[id].type;
}

/* ---- per-thread cache and heap ---- */

struct tok_cache *tok_cache_new(const struct tok *t)
{
    struct tok_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->t = t;
    buf_init(&c->esc, 0);
    if (t->re && !(c->md = tok_match_data_new(t->re))) {
        free(c);
        return NULL;
    }
    return c;
}

void tok_cache_free(struct tok_cache *c)
{
    if (!c)
        return;
    tok_match_data_free(c->md);
    free(c->sym_id);
    free(c->sym_prev);
    free(c->sym_next);
    free(c->sym_len);
    free(c->heap);
    buf_release(&c->esc);
    free(c->wc);
    free(c->wc_bytes);
    free(c->wc_ids);
    free(c);
}

int tok_cache_reserve(struct tok_cache *c, size_t n)
{
    if (n <= c->sym_cap)
        return 0;
    size_t cap = c->sym_cap ? c->sym_cap : 64;
    while (cap < n)
        cap *= 2;
    if (cap > SIZE_MAX / 2 / sizeof(int32_t))
        return AISLE_ENOMEM;
    int32_t *a = realloc(c->sym_id, cap * sizeof(*a));
    if (a)
        c->sym_id = a;
    int32_t *b = realloc(c->sym_prev, cap * sizeof(*b));
    if (b)
        c->sym_prev = b;
    int32_t *d = realloc(c->sym_next, cap * sizeof(*d));
    if (d)
        c->sym_next = d;
    uint32_t *e = realloc(c->sym_len, cap * sizeof(*e));
    if (e)
        c->sym_len = e;
    if (!a || !b || !d || !e)
        return AISLE_ENOMEM;
    c->sym_cap = cap;
    return 0;
}

int tok_heap_push(struct tok_cache *c, const struct tok_heap_ent *e)
{
    if (c->heap_len == c->heap_cap) {
        size_t ncap = c->heap_cap ? c->heap_cap * 2 : 64;
        struct tok_heap_ent *h = realloc(c->heap, ncap * sizeof(*h));
        if (!h)
            return AISLE_ENOMEM;
        c->heap = h;
        c->heap_cap = ncap;
    }
    size_t i = c->heap_len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (c->heap[p].key <= e->key)
            break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = *e;
    return 0;
}

void tok_heap_pop(struct tok_cache *c, struct tok_heap_ent *out)
{
    *out = c->heap[0];
    struct tok_heap_ent last = c->heap[--c->heap_len];
    size_t i = 0, n = c->heap_len;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        if (l + 1 < n && c->heap[l + 1].key < c->heap[l].key)
            l++;
        if (last.key <= c->heap[l].key)
            break;
        c->heap[i] = c->heap[l];
        i = l;
    }
    if (n)
        c->heap[i] = last;
}

/* ---- encoding: special-token partition ---- */

static int encode_fragment(const struct tok *t, struct tok_cache *c, const char *s, size_t n, int prev_special,
                           struct tok_ids *out)
{
    if (t->model == TOK_MODEL_BPE)
        return n ? tok_bpe_encode_fragment(t, c, s, n, out) : 0;
    /* SPM: llama.cpp prefixes a space to a fragment that starts the text or follows a special token */
    buf_reset(&c->esc);
    if (t->add_space_prefix && prev_special && buf_puts(&c->esc, "\xe2\x96\x81"))
        return AISLE_ENOMEM;
    for (size_t i = 0, run = 0; i <= n; i++) {
        /* copy runs between spaces; each space becomes U+2581 */
        if (i < n && s[i] != ' ')
            continue;
        if (buf_append(&c->esc, s + run, i - run) || (i < n && buf_puts(&c->esc, "\xe2\x96\x81")))
            return AISLE_ENOMEM;
        run = i + 1;
    }
    return tok_spm_encode_fragment(t, c, c->esc.data, c->esc.len, out);
}

/* Special token starting at s[0..n), longest first, or -1. */
static int32_t special_at(const struct tok *t, const char *s, size_t n, unsigned flags)
{
    for (size_t k = 0; k < t->n_specials; k++) {
        const struct tok_token *tk = &t->tokens[t->specials[k]];
        if (tk->len > n || t->text[tk->off] != s[0])
            continue;
        if (!(flags & TOK_PARSE_SPECIAL) && tk->type != TOK_TYPE_USER_DEFINED)
            continue;
        if (memcmp(t->text + tk->off, s, tk->len) == 0)
            return t->specials[k];
    }
    return -1;
}

int tok_encode(const struct tok *t, struct tok_cache *cache, const char *text, size_t n, unsigned flags,
               struct tok_ids *out)
{
    struct tok_cache *c = cache ? cache : tok_cache_new(t);
    if (!c)
        return AISLE_ENOMEM;
    if (!cache)
        c->one_shot = n < (1u << 16); /* the word cache pays for its set-up on long texts only */
    int rc = 0;
    if ((flags & TOK_ADD_SPECIAL) && t->add_bos && t->bos >= 0 && (rc = tok_ids_push(out, t->bos)))
        goto done;

    unsigned char first[256 / 8] = {0};
    int any = 0;
    for (size_t k = 0; k < t->n_specials; k++) {
        const struct tok_token *tk = &t->tokens[t->specials[k]];
        if ((flags & TOK_PARSE_SPECIAL) || tk->type == TOK_TYPE_USER_DEFINED) {
            unsigned char b = (unsigned char)t->text[tk->off];
            first[b / 8] |= (unsigned char)(1u << (b % 8));
            any = 1;
        }
    }
    size_t start = 0;
    int prev_special = 1;
    for (size_t i = 0; any && i < n; i++) {
        unsigned char b = (unsigned char)text[i];
        if (!(first[b / 8] & (1u << (b % 8))))
            continue;
        int32_t id = special_at(t, text + i, n - i, flags);
        if (id < 0)
            continue;
        if (i > start) {
            if ((rc = encode_fragment(t, c, text + start, i - start, prev_special, out)))
                goto done;
        }
        if ((rc = tok_ids_push(out, id)))
            goto done;
        prev_special = 1;
        start = i + t->tokens[id].len;
        i = start - 1;
    }
    if (n > start && (rc = encode_fragment(t, c, text + start, n - start, prev_special, out)))
        goto done;
    if ((flags & TOK_ADD_SPECIAL) && t->add_eos && t->eos >= 0)
        rc = tok_ids_push(out, t->eos);
done:
    if (!cache)
        tok_cache_free(c);
    return rc;
}

/* ---- decoding ---- */

int tok_piece(const struct tok *t, int32_t id, unsigned flags, const char **p, size_t *len)
{
    if (id < 0 || (uint32_t)id >= t->n)
        return AISLE_EINVAL;
    const struct tok_token *k = &t->tokens[id];
    switch (k->type) {
    case TOK_TYPE_CONTROL:
    case TOK_TYPE_UNKNOWN:
        if (!(flags & TOK_DECODE_SPECIAL))
            break;
        /* fall through */
    case TOK_TYPE_USER_DEFINED:
        *p = t->text + k->off;
        *len = k->len;
        return 0;
    case TOK_TYPE_NORMAL:
    case TOK_TYPE_BYTE: /* pieces hold the byte for SPM, nothing for BPE (as llama.cpp) */
        *p = t->pieces + k->poff;
        *len = k->plen;
        return 0;
    default: break;
    }
    *p = "";
    *len = 0;
    return 0;
}

int tok_decode(const struct tok *t, const int32_t *ids, size_t n, unsigned flags, struct buf *out)
{
    int remove_space = t->add_space_prefix;
    if ((flags & TOK_DECODE_STRIP) && t->add_bos && n > 0 && ids[0] == t->bos) {
        remove_space = 0; /* as llama.cpp: the space after a stripped BOS stays */
        ids++;
        n--;
    }
    if ((flags & TOK_DECODE_STRIP) && t->add_eos && n > 0 && ids[n - 1] == t->eos)
        n--;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        int rc = tok_piece(t, ids[i], flags, &p, &len);
        if (rc)
            return rc;
        if (remove_space && len && p[0] == ' ') {
            p++;
            len--;
        }
        remove_space = 0;
        if ((rc = buf_append(out, p, len)))
            return rc;
    }
    return 0;
}

void tok_stream_init(struct tok_stream *s, unsigned flags)
{
    s->npend = 0;
    s->flags = flags;
    s->first = 1;
}

/* Bytes a character starting with lead byte b takes, 0 if b cannot start one. */
static size_t utf8_need(unsigned char b)
{
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        return 2;
    if (b >= 0xE0 && b <= 0xEF)
        return 3;
    if (b >= 0xF0 && b <= 0xF4)
        return 4;
    return 0;
}

/* 1 when c (after lead byte lead, at position pos >= 1) may continue a valid character. */
static int utf8_cont_ok(unsigned char lead, size_t pos, unsigned char c)
{
    if ((c & 0xC0) != 0x80)
        return 0;
    if (pos != 1)
        return 1;
    /* second byte ranges that exclude overlongs, surrogates and > U+10FFFF */
    if (lead == 0xE0)
        return c >= 0xA0;
    if (lead == 0xED)
        return c <= 0x9F;
    if (lead == 0xF0)
        return c >= 0x90;
    if (lead == 0xF4)
        return c <= 0x8F;
    return 1;
}

/* Release the bytes of p[0..n) (after any pending ones) that form whole
 * characters or can never be completed; hold an incomplete valid prefix. */
static int stream_feed(struct tok_stream *s, const char *p, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)p[i];
        if (s->npend) {
            if (utf8_cont_ok(s->pend[0], s->npend, b)) {
                s->pend[s->npend++] = b;
                if (s->npend == utf8_need(s->pend[0])) {
                    if (buf_append(out, s->pend, s->npend))
                        return AISLE_ENOMEM;
                    s->npend = 0;
                }
                continue;
            }
            /* the held prefix can never complete: release it as it is */
            if (buf_append(out, s->pend, s->npend))
                return AISLE_ENOMEM;
            s->npend = 0;
        }
        size_t need = utf8_need(b);
        if (need <= 1) {
            if (buf_putc(out, (char)b))
                return AISLE_ENOMEM;
        } else {
            s->pend[0] = b;
            s->npend = 1;
        }
    }
    return 0;
}

int tok_stream_push(const struct tok *t, struct tok_stream *s, int32_t id, struct buf *out)
{
    const char *p;
    size_t len;
    int rc = tok_piece(t, id, s->flags, &p, &len);
    if (rc)
        return rc;
    if (s->first) {
        s->first = 0;
        if ((s->flags & TOK_DECODE_STRIP) && t->add_bos && id == t->bos)
            return 0;
        if (t->add_space_prefix && len && p[0] == ' ') {
            p++;
            len--;
        }
    }
    return stream_feed(s, p, len, out);
}

int tok_stream_flush(struct tok_stream *s, struct buf *out)
{
    if (!s->npend)
        return 0;
    int rc = buf_append(out, s->pend, s->npend);
    s->npend = 0;
    return rc;
}

/* ---- chat format ---- */

int tok_chat_format(const struct tok_chat_msg *msgs, size_t n, int add_generation_prompt, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")))
            return AISLE_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = buf_printf(out, "<|%s|>\n", msgs[i].role);
        if (!rc)
            rc = buf_puts(out, msgs[i].content);
        if (!rc)
            rc = buf_puts(out, TOK_END "\n");
        if (rc)
            return rc;
    }
    return add_generation_prompt ? buf_puts(out, TOK_ASSISTANT "\n") : 0;
}
