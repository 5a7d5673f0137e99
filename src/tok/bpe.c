/*
 * bpe.c — byte-level BPE: the GPT-2 byte <-> visible-character mapping, the
 * GPT-2 pre-tokenizer (PCRE2), vocabulary construction and word encoding.
 *
 * Encoding a word of L bytes: symbols start as the L byte tokens in a doubly
 * linked list; every adjacent pair that has a merge goes into a min-heap keyed
 * (rank, left position); popping the best pair, checking it is still current
 * (both symbols alive, adjacent, same ids as when pushed), merging it and pushing
 * the two new neighbour pairs gives the same result as GPT-2's "apply the
 * lowest-rank pair everywhere, repeat" in O(L log L) instead of O(L^2) per
 * merge. Short words are memoised in the caller's tok_cache (word -> ids).
 */
#include "tok/tok_impl.h"

#include "core/error.h"
#include "core/hset.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdlib.h>
#include <string.h>

/* The GPT-2 pattern (OpenAI's encoder.py):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (the final \s+ catches a lone whitespace character before a non-space, which
 * \s+(?!\S) cannot). PCRE2 counts U+180E MONGOLIAN VOWEL SEPARATOR as \s (its \h
 * list predates Unicode 6.3); Python's regex and llama.cpp do not, so here it is
 * moved from "space" to "other": with that, splits equal Python regex's on a
 * differential test of 20,000 random mixed-script strings. */
const char tok_gpt2_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?(?:[^\\s\\p{L}\\p{N}]|\\x{180E})+"
                                "|[^\\S\\x{180E}]+(?![^\\s]|\\x{180E})|[^\\S\\x{180E}]+";

#define WC_MAX_WORD 64u          /* only words this short are cached */
#define WC_SLOTS (1u << 16)      /* cache table slots; cleared when half full */
#define WC_BYTES (1u << 20)      /* arena of cached words' bytes */
#define WC_IDS (1u << 18)        /* arena of cached words' ids */
#define BPE_MAX_WORD (1u << 24)  /* longer "words" are encoded in slices of this size */

/* ---- byte <-> visible character ---- */

uint32_t tok_byte_to_cp(unsigned char b)
{
    if (b <= 32)
        return 256u + b;
    if (b >= 127 && b <= 160)
        return 256u + 33u + (b - 127u);
    if (b == 173)
        return 256u + 67u;
    return b;
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return (cp <= 32 || (cp >= 127 && cp <= 160) || cp == 173) ? -1 : (int)cp;
    uint32_t i = cp - 256;
    if (i < 33)
        return (int)i;
    if (i < 67)
        return (int)(127 + i - 33);
    if (i == 67)
        return 173;
    return -1;
}

/* ---- the pre-tokenizer ---- */

/* Llama 3's pattern as llama.cpp spells it (case-insensitive contractions
 * written out, so U+017F and U+212A do not fold into them), with the same
 * U+180E adjustment as above. */
const char tok_llama3_pattern[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?(?:[^\\s\\p{L}\\p{N}]|\\x{180E})+[\\r\\n]*|[^\\S\\x{180E}]*[\\r\\n]+"
    "|[^\\S\\x{180E}]+(?![^\\s]|\\x{180E})|[^\\S\\x{180E}]+";

int tok_pre_info(const char *pre, const char **pattern, int *ignore_merges, int *add_bos)
{
    static const char *const gpt2[] = {"gpt-2", "phi-2"};
    static const char *const llama3[] = {"llama-bpe", "llama3", "llama-v3", "falcon3"};
    *pattern = tok_gpt2_pattern;
    *ignore_merges = 0;
    *add_bos = 0;
    for (size_t i = 0; pre && i < sizeof(llama3) / sizeof(llama3[0]); i++)
        if (!strcmp(pre, llama3[i])) {
            *pattern = tok_llama3_pattern;
            *ignore_merges = 1;
            *add_bos = 1;
            return 1;
        }
    for (size_t i = 0; pre && i < sizeof(gpt2) / sizeof(gpt2[0]); i++)
        if (!strcmp(pre, gpt2[i]))
            return 1;
    return 0;
}

int tok_regex_new(void **re, const char *pattern, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *r = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                  PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL);
    if (!r) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof(msg));
        tok_seterr(err, errlen, "pre-tokenizer regex at %zu: %s", (size_t)off, (const char *)msg);
        return code == PCRE2_ERROR_NOMEMORY ? AISLE_ENOMEM : AISLE_EINVAL;
    }
    /* JIT is an optimisation: without it (unsupported CPU) the interpreter gives the same matches */
    (void)pcre2_jit_compile(r, PCRE2_JIT_COMPLETE);
    *re = r;
    return 0;
}

void tok_regex_free(void *re)
{
    pcre2_code_free(re);
}

void *tok_match_data_new(const void *re)
{
    return pcre2_match_data_create_from_pattern(re, NULL);
}

void tok_match_data_free(void *md)
{
    pcre2_match_data_free(md);
}

void tok_pretok_init(struct tok_pretok *it, const void *re, void *md, const char *s, size_t n)
{
    it->re = re;
    it->md = md;
    it->s = s;
    it->n = n;
    it->pos = 0;
    it->have_match = 0;
    it->ascii_fast = 0;
    /* pcre2_jit_match skips pcre2_match's per-call checks (~20% of the regex time) */
    size_t jit_size = 0;
    it->jit = pcre2_pattern_info(re, PCRE2_INFO_JITSIZE, &jit_size) == 0 && jit_size > 0;
}

/* ASCII classes as the GPT-2 pattern sees them (PCRE2 with UCP agrees: a test
 * checks all 128): letters \p{L}, digits \p{N}, \s = HT LF VT FF CR and space;
 * everything else (punctuation, other controls) is "other". */
enum { A_OTHER, A_LETTER, A_DIGIT, A_SPACE };

static int ascii_class(unsigned char c)
{
    if ((c | 32) >= 'a' && (c | 32) <= 'z')
        return A_LETTER;
    if (c >= '0' && c <= '9')
        return A_DIGIT;
    if (c == ' ' || (c >= 9 && c <= 13))
        return A_SPACE;
    return A_OTHER;
}

/* Length of the GPT-2 pattern's match at s[p] when ASCII bytes alone decide it;
 * 0 when a byte >= 0x80 could change it (PCRE2 then decides). The alternatives,
 * in the pattern's order: a contraction; an optional space and a run of letters,
 * digits or "other"; whitespace not followed by a non-space; whitespace. */
static size_t ascii_match(const unsigned char *s, size_t p, size_t n)
{
    unsigned char c = s[p];
    if (c >= 0x80)
        return 0;
    if (c == '\'' && p + 1 < n) {
        unsigned char d = s[p + 1], e = p + 2 < n ? s[p + 2] : 0;
        if (d == 's' || d == 't' || d == 'm' || d == 'd')
            return 2;
        if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
            return 3;
    }
    size_t q = p;
    int k = ascii_class(c);
    if (c == ' ' && p + 1 < n) {
        if (s[p + 1] >= 0x80)
            return 0;
        if (ascii_class(s[p + 1]) != A_SPACE) {
            q = p + 1; /* " ?" then the run */
            k = ascii_class(s[q]);
        }
    }
    if (k != A_SPACE) {
        while (q < n && s[q] < 0x80 && ascii_class(s[q]) == k)
            q++;
        return q < n && s[q] >= 0x80 ? 0 : q - p; /* a non-ASCII letter/digit/symbol may continue it */
    }
    while (q < n && s[q] < 0x80 && ascii_class(s[q]) == A_SPACE)
        q++;
    if (q == n)
        return q - p;
    if (s[q] >= 0x80)
        return 0; /* U+00A0 and friends are whitespace too */
    /* a non-space follows: \s+(?!\S) leaves it the last whitespace; a single one is \s+ */
    return q - p >= 2 ? q - 1 - p : 1;
}

int tok_pretok_next(struct tok_pretok *it, size_t *start, size_t *len)
{
    if (it->pos >= it->n)
        return 0;
    if (it->ascii_fast && it->have_match == 0) {
        size_t m = ascii_match((const unsigned char *)it->s, it->pos, it->n);
        if (m) {
            *start = it->pos;
            *len = m;
            it->pos += m;
            return 1;
        }
    }
    if (it->have_match == 0) {
        /* With PCRE2_MATCH_INVALID_UTF the subject is not re-validated per call
         * and invalid sequences simply never match: they end up in the gap. */
        int rc = it->jit ? pcre2_jit_match(it->re, (PCRE2_SPTR)it->s, it->n, it->pos, 0, it->md, NULL)
                         : pcre2_match(it->re, (PCRE2_SPTR)it->s, it->n, it->pos, 0, it->md, NULL);
        if (rc > 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(it->md);
            it->mstart = ov[0];
            it->mend = ov[1] > ov[0] ? ov[1] : ov[0] + 1; /* never loop on an empty match */
            it->have_match = 1;
        } else {
            it->have_match = -1; /* no match or a matching error: the rest is one gap */
        }
    }
    if (it->have_match == 1) {
        if (it->mstart > it->pos) {
            *start = it->pos;
            *len = it->mstart - it->pos;
            it->pos = it->mstart;
            return 1;
        }
        *start = it->mstart;
        *len = it->mend - it->mstart;
        it->pos = it->mend;
        it->have_match = 0;
        return 1;
    }
    *start = it->pos;
    *len = it->n - it->pos;
    it->pos = it->n;
    return 1;
}

/* ---- construction ---- */

int tok_bpe_pieces(struct tok *t, char *err, size_t errlen)
{
    int rc = tok_pieces_alloc(t, err, errlen);
    if (rc)
        return rc;
    size_t off = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        struct tok_token *k = &t->tokens[i];
        k->poff = (uint32_t)off;
        k->plen = 0;
        if (k->type != TOK_TYPE_NORMAL)
            continue;
        const unsigned char *s = (const unsigned char *)t->text + k->off;
        size_t n = k->len, o = off, j = 0;
        int ok = 1;
        while (j < n && ok) {
            uint32_t cp;
            size_t need = s[j] < 0x80 ? 1 : (s[j] & 0xE0) == 0xC0 ? 2 : (s[j] & 0xF0) == 0xE0 ? 3 : 4;
            if (j + need > n) {
                ok = 0;
                break;
            }
            cp = need == 1 ? s[j] : need == 2 ? (s[j] & 0x1Fu) : need == 3 ? (s[j] & 0x0Fu) : (s[j] & 0x07u);
            for (size_t q = 1; q < need; q++)
                cp = (cp << 6) | (s[j + q] & 0x3Fu);
            int b = tok_cp_to_byte(cp);
            if (b < 0)
                ok = 0;
            else
                t->pieces[o++] = (char)b;
            j += need;
        }
        if (!ok) {
            /* not in the visible form (a hand-made vocabulary): the text stands for itself */
            memcpy(t->pieces + off, s, n);
            o = off + n;
        }
        k->plen = (uint32_t)(o - off);
        off = o;
    }
    t->pieces[off] = '\0';
    return 0;
}

int tok_new_bpe(struct tok **out, const struct tok_bpe_spec *spec, char *err, size_t errlen)
{
    struct tok *t;
    int rc = tok_create(&t, TOK_MODEL_BPE, spec->tokens, spec->lens, spec->types, NULL, spec->n, err, errlen);
    if (rc)
        return rc;
    for (int b = 0; b < 256; b++) {
        char vis[4];
        size_t vn = tok_utf8_put(vis, tok_byte_to_cp((unsigned char)b));
        if ((t->byte_tok[b] = tok_find(t, vis, vn)) < 0) {
            tok_seterr(err, errlen, "no token for byte 0x%02x (text \"%.*s\"): BPE needs all 256", b, (int)vn, vis);
            rc = AISLE_EFORMAT;
            goto fail;
        }
    }
    if (spec->n_merges > TOK_MAX_MERGES) {
        tok_seterr(err, errlen, "%zu merges (limit %u)", spec->n_merges, TOK_MAX_MERGES);
        rc = AISLE_ETOOBIG;
        goto fail;
    }
    rc = AISLE_ENOMEM;
    if (spec->n_merges && (!(t->merge_pairs = malloc(spec->n_merges * sizeof(*t->merge_pairs))) ||
                           tok_u64map_reserve(&t->merges, spec->n_merges))) {
        tok_seterr(err, errlen, "out of memory for %zu merges", spec->n_merges);
        goto fail;
    }
    char tmp[2 * TOK_MAX_TOKEN_LEN];
    for (size_t j = 0; j < spec->n_merges; j++) {
        const char *m = spec->merges[j];
        size_t ml = spec->mlens[j];
        const char *sp = ml > 1 ? memchr(m + 1, ' ', ml - 1) : NULL; /* as llama.cpp: find(' ', 1) */
        if (!sp) {
            tok_seterr(err, errlen, "merge %zu \"%.*s\" has no space separating two tokens", j,
                       (int)(ml > 64 ? 64 : ml), m);
            rc = AISLE_EFORMAT;
            goto fail;
        }
        size_t la = (size_t)(sp - m), lb = ml - la - 1;
        int32_t a = tok_find(t, m, la), b = tok_find(t, sp + 1, lb);
        if (a < 0 || b < 0 || la + lb > sizeof(tmp))
            continue;
        memcpy(tmp, m, la);
        memcpy(tmp + la, sp + 1, lb);
        int32_t r = tok_find(t, tmp, la + lb);
        uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        if (r < 0 || tok_u64map_get(&t->merges, key))
            continue; /* unusable, or a repeat: the lowest rank wins */
        if (tok_u64map_put(&t->merges, key, (uint64_t)t->n_merges << 32 | (uint32_t)r))
            goto fail;
        t->merge_pairs[t->n_merges][0] = (uint32_t)a;
        t->merge_pairs[t->n_merges][1] = (uint32_t)b;
        t->n_merges++;
    }
    t->bos = spec->bos;
    t->eos = spec->eos;
    t->eot = spec->eot;
    t->pad = spec->pad;
    t->unk = -1;
    t->add_bos = spec->add_bos;
    t->add_eos = spec->add_eos;
    if ((rc = tok_check_ids(t, err, errlen)))
        goto fail;
    t->pre = strdup(spec->pre ? spec->pre : "gpt-2");
    if (!t->pre || (spec->chat_template && !(t->chat_template = strdup(spec->chat_template))))
        goto fail;
    const char *pattern;
    int add_bos_default;
    t->pre_known = tok_pre_info(t->pre, &pattern, &t->ignore_merges, &add_bos_default);
    t->ascii_fast = pattern == tok_gpt2_pattern;
    if ((rc = tok_regex_new(&t->re, pattern, err, errlen)))
        goto fail;
    *out = t;
    return 0;
fail:
    if (rc == AISLE_ENOMEM && err && !err[0])
        tok_seterr(err, errlen, "out of memory");
    tok_free(t);
    return rc;
}

/* ---- encoding ---- */

static int try_pair(const struct tok *t, struct tok_cache *c, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    int32_t a = c->sym_id[left], b = c->sym_id[right];
    const uint64_t *v = tok_u64map_get(&t->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    if (!v)
        return 0;
    struct tok_heap_ent e = {.key = (*v >> 32) << 32 | (uint32_t)left, .left = left, .right = right, .lid = a, .rid = b};
    return tok_heap_push(c, &e);
}

/* Encode one word of n bytes (n <= BPE_MAX_WORD) by rank-ordered merges. */
static int bpe_word(const struct tok *t, struct tok_cache *c, const unsigned char *w, size_t n, struct tok_ids *out)
{
    int rc;
    if ((rc = tok_cache_reserve(c, n)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        c->sym_id[i] = t->byte_tok[w[i]];
        c->sym_prev[i] = (int32_t)i - 1;
        c->sym_next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    c->heap_len = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if ((rc = try_pair(t, c, (int32_t)i, (int32_t)i + 1)))
            return rc;
    while (c->heap_len) {
        struct tok_heap_ent e;
        tok_heap_pop(c, &e);
        if (c->sym_id[e.left] != e.lid || c->sym_next[e.left] != e.right || c->sym_id[e.right] != e.rid)
            continue; /* stale: a neighbour merged since this pair was pushed */
        const uint64_t *v = tok_u64map_get(&t->merges, (uint64_t)(uint32_t)e.lid << 32 | (uint32_t)e.rid);
        c->sym_id[e.left] = (int32_t)(uint32_t)*v;
        c->sym_id[e.right] = -1;
        int32_t nx = c->sym_next[e.right];
        c->sym_next[e.left] = nx;
        if (nx >= 0)
            c->sym_prev[nx] = e.left;
        if ((rc = try_pair(t, c, c->sym_prev[e.left], e.left)) || (rc = try_pair(t, c, e.left, nx)))
            return rc;
    }
    for (int32_t i = 0; i >= 0; i = c->sym_next[i])
        if ((rc = tok_ids_push(out, c->sym_id[i])))
            return rc;
    return 0;
}

static void wc_clear(struct tok_cache *c)
{
    memset(c->wc, 0, c->wc_cap * sizeof(*c->wc));
    c->wc_len = c->wc_bytes_len = c->wc_ids_len = 0;
}

/* Cached encoding of a short word: look up, else encode and remember. */
static int bpe_word_cached(const struct tok *t, struct tok_cache *c, const unsigned char *w, size_t n,
                           struct tok_ids *out)
{
    if (!c->wc) {
        if (!(c->wc = calloc(WC_SLOTS, sizeof(*c->wc))))
            return bpe_word(t, c, w, n, out);
        c->wc_cap = WC_SLOTS;
    }
    uint64_t h = hset_hash(HSET_FNV_SEED, w, n);
    size_t mask = c->wc_cap - 1, i = (size_t)h & mask;
    for (; c->wc[i].used; i = (i + 1) & mask) {
        struct tok_wc_ent *e = &c->wc[i];
        if (e->hash == h && e->len == n && memcmp(c->wc_bytes + e->off, w, n) == 0) {
            for (uint32_t k = 0; k < e->ilen; k++) {
                int rc = tok_ids_push(out, c->wc_ids[e->ioff + k]);
                if (rc)
                    return rc;
            }
            return 0;
        }
    }
    size_t before = out->len;
    int rc = bpe_word(t, c, w, n, out);
    if (rc)
        return rc;
    size_t nids = out->len - before;
    if (!c->wc_bytes) {
        c->wc_bytes = malloc(WC_BYTES);
        c->wc_ids = malloc(WC_IDS * sizeof(*c->wc_ids));
        if (!c->wc_bytes || !c->wc_ids) {
            free(c->wc_bytes);
            free(c->wc_ids);
            c->wc_bytes = NULL;
            c->wc_ids = NULL;
            return 0; /* caching is optional */
        }
        c->wc_bytes_cap = WC_BYTES;
        c->wc_ids_cap = WC_IDS;
    }
    /* full (half the slots, or an arena): start over rather than evict one by one */
    if (c->wc_len + 1 > c->wc_cap / 2 || c->wc_bytes_len + n > c->wc_bytes_cap ||
        c->wc_ids_len + nids > c->wc_ids_cap) {
        wc_clear(c);
        for (i = (size_t)h & mask; c->wc[i].used; i = (i + 1) & mask)
            ;
    }
    struct tok_wc_ent *e = &c->wc[i];
    e->used = 1;
    e->hash = h;
    e->off = (uint32_t)c->wc_bytes_len;
    e->len = (uint32_t)n;
    e->ioff = (uint32_t)c->wc_ids_len;
    e->ilen = (uint32_t)nids;
    memcpy(c->wc_bytes + c->wc_bytes_len, w, n);
    c->wc_bytes_len += n;
    memcpy(c->wc_ids + c->wc_ids_len, out->ids + before, nids * sizeof(int32_t));
    c->wc_ids_len += nids;
    c->wc_len++;
    return 0;
}

/* Llama 3 (ignore_merges): the token whose text is the whole word's visible
 * form, or -1. scratch holds the visible form. */
static int32_t whole_word(const struct tok *t, struct buf *scratch, const unsigned char *w, size_t n)
{
    if (n < 2 || n > TOK_MAX_TOKEN_LEN)
        return -1;
    buf_reset(scratch);
    for (size_t i = 0; i < n; i++) {
        char vis[4];
        if (buf_append(scratch, vis, tok_utf8_put(vis, tok_byte_to_cp(w[i]))))
            return -1; /* out of memory: merging gives the same answer, only slower */
    }
    return tok_find(t, scratch->data, scratch->len);
}

int tok_bpe_encode_fragment(const struct tok *t, struct tok_cache *c, const char *s, size_t n, struct tok_ids *out)
{
    struct tok_pretok it;
    tok_pretok_init(&it, t->re, c->md, s, n);
    it.ascii_fast = t->ascii_fast;
    size_t start, len;
    while (tok_pretok_next(&it, &start, &len)) {
        const unsigned char *w = (const unsigned char *)s + start;
        int rc;
        int32_t whole = t->ignore_merges ? whole_word(t, &c->esc, w, len) : -1;
        if (whole >= 0)
            rc = tok_ids_push(out, whole);
        else if (len == 1)
            rc = tok_ids_push(out, t->byte_tok[w[0]]);
        else if (len <= WC_MAX_WORD && !c->one_shot)
            rc = bpe_word_cached(t, c, w, len, out);
        else {
            rc = 0;
            for (size_t o = 0; o < len && !rc; o += BPE_MAX_WORD)
                rc = bpe_word(t, c, w + o, len - o < BPE_MAX_WORD ? len - o : BPE_MAX_WORD, out);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- the reference encoder ---- */

int tok_encode_naive(const struct tok *t, const char *text, size_t n, struct tok_ids *out)
{
    if (t->model != TOK_MODEL_BPE)
        return AISLE_EINVAL;
    void *md = tok_match_data_new(t->re);
    int32_t *sym = NULL;
    size_t cap = 0;
    struct buf scratch;
    buf_init(&scratch, 0);
    int rc = md ? 0 : AISLE_ENOMEM;
    struct tok_pretok it;
    tok_pretok_init(&it, t->re, md, text, n);
    it.ascii_fast = t->ascii_fast;
    size_t start, len;
    while (!rc && tok_pretok_next(&it, &start, &len)) {
        if (len > cap) {
            int32_t *ns = realloc(sym, len * sizeof(*ns));
            if (!ns) {
                rc = AISLE_ENOMEM;
                break;
            }
            sym = ns;
            cap = len;
        }
        int32_t whole = t->ignore_merges ? whole_word(t, &scratch, (const unsigned char *)text + start, len) : -1;
        if (whole >= 0) {
            rc = tok_ids_push(out, whole);
            continue;
        }
        size_t k = len;
        for (size_t i = 0; i < len; i++)
            sym[i] = t->byte_tok[(unsigned char)text[start + i]];
        /* GPT-2's encoder.py: find the lowest-rank pair, merge it everywhere, repeat */
        for (;;) {
            uint64_t best = UINT64_MAX;
            for (size_t i = 0; i + 1 < k; i++) {
                const uint64_t *v = tok_u64map_get(&t->merges, (uint64_t)(uint32_t)sym[i] << 32 | (uint32_t)sym[i + 1]);
                if (v && *v < best)
                    best = *v;
            }
            if (best == UINT64_MAX)
                break;
            size_t o = 0;
            for (size_t i = 0; i < k; i++) {
                const uint64_t *v = i + 1 < k ? tok_u64map_get(&t->merges, (uint64_t)(uint32_t)sym[i] << 32 |
                                                                                  (uint32_t)sym[i + 1])
                                              : NULL;
                if (v && *v == best) {
                    sym[o++] = (int32_t)(uint32_t)best;
                    i++;
                } else {
                    sym[o++] = sym[i];
                }
            }
            k = o;
        }
        for (size_t i = 0; i < k && !rc; i++)
            rc = tok_ids_push(out, sym[i]);
    }
    free(sym);
    buf_release(&scratch);
    tok_match_data_free(md);
    return rc;
}
