/*
 * spm.c — SentencePiece-style (llama.cpp "llama") vocabularies: construction
 * and llama.cpp's greedy bigram encoder.
 *
 * The fragment has its spaces already replaced by U+2581 (vocab.c). Symbols start
 * as UTF-8 characters (by lead byte, as llama.cpp counts them, so invalid bytes
 * are single symbols); every adjacent pair whose concatenation is a token goes
 * into a heap ordered by (score descending, left position ascending); the best
 * still-valid pair (neither side merged away, sizes still adding up) is merged
 * and its new neighbour pairs pushed. A final symbol that is not a token is
 * emitted byte by byte as <0xNN> tokens (byte fallback), else as the unknown token.
 */
#include "tok/tok_impl.h"

#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int tok_spm_pieces(struct tok *t, char *err, size_t errlen)
{
    int rc = tok_pieces_alloc(t, err, errlen);
    if (rc)
        return rc;
    size_t off = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        struct tok_token *k = &t->tokens[i];
        const char *s = t->text + k->off;
        k->poff = (uint32_t)off;
        k->plen = 0;
        if (k->type == TOK_TYPE_NORMAL) {
            for (size_t j = 0; j < k->len;) {
                if (j + 3 <= k->len && memcmp(s + j, "\xe2\x96\x81", 3) == 0) {
                    t->pieces[off++] = ' ';
                    j += 3;
                } else {
                    t->pieces[off++] = s[j++];
                }
            }
        } else if (k->type == TOK_TYPE_BYTE) {
            /* llama.cpp's token_to_byte: the two hex digits of "<0xNN>" */
            int hi = k->len == 6 ? hexval(s[3]) : -1, lo = k->len == 6 ? hexval(s[4]) : -1;
            if (hi >= 0 && lo >= 0)
                t->pieces[off++] = (char)(hi * 16 + lo);
        }
        k->plen = (uint32_t)(off - k->poff);
    }
    t->pieces[off] = '\0';
    return 0;
}

int tok_new_spm(struct tok **out, const struct tok_spm_spec *spec, char *err, size_t errlen)
{
    struct tok *t;
    int rc = tok_create(&t, TOK_MODEL_SPM, spec->tokens, spec->lens, spec->types, spec->scores, spec->n, err, errlen);
    if (rc)
        return rc;
    for (int b = 0; b < 256; b++) {
        /* llama.cpp's byte_to_token: "<0xNN>" (upper-case hex), else the byte itself */
        char hex[8];
        snprintf(hex, sizeof(hex), "<0x%02X>", b);
        t->byte_tok[b] = tok_find(t, hex, 6);
        if (t->byte_tok[b] < 0) {
            char one = (char)b;
            t->byte_tok[b] = tok_find(t, &one, 1);
        }
    }
    t->bos = spec->bos;
    t->eos = spec->eos;
    t->eot = spec->eot;
    t->unk = spec->unk;
    t->pad = spec->pad;
    t->add_bos = spec->add_bos;
    t->add_eos = spec->add_eos;
    t->add_space_prefix = spec->add_space_prefix;
    if ((rc = tok_check_ids(t, err, errlen)))
        goto fail;
    rc = AISLE_ENOMEM;
    if (spec->chat_template && !(t->chat_template = strdup(spec->chat_template)))
        goto fail;
    *out = t;
    return 0;
fail:
    if (rc == AISLE_ENOMEM && err && !err[0])
        tok_seterr(err, errlen, "out of memory");
    tok_free(t);
    return rc;
}

/* Sort key: higher score first, then lower left position (llama.cpp's comparator). */
static uint64_t bigram_key(float score, int32_t left)
{
    if (score == 0.0f)
        score = 0.0f; /* -0 and +0 compare equal in llama.cpp: give them one key */
    uint32_t u;
    memcpy(&u, &score, sizeof(u));
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending with the float */
    return (uint64_t)(~u) << 32 | (uint32_t)left;
}

static int try_bigram(const struct tok *t, struct tok_cache *c, const char *s, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    uint32_t size = c->sym_len[left] + c->sym_len[right];
    int32_t id = tok_find(t, s + c->sym_id[left], size);
    if (id < 0)
        return 0;
    struct tok_heap_ent e = {.key = bigram_key(t->tokens[id].score, left), .left = left, .right = right,
                             .lid = (int32_t)size};
    return tok_heap_push(c, &e);
}

int tok_spm_encode_fragment(const struct tok *t, struct tok_cache *c, const char *s, size_t n, struct tok_ids *out)
{
    static const unsigned char utf8_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    if (!n)
        return 0;
    if (n > INT32_MAX / 2)
        return AISLE_ETOOBIG;
    int rc;
    if ((rc = tok_cache_reserve(c, n)))
        return rc;
    /* sym_id holds each symbol's byte offset in s */
    size_t nsym = 0;
    for (size_t off = 0; off < n; nsym++) {
        size_t len = utf8_len[(unsigned char)s[off] >> 4];
        if (len > n - off)
            len = n - off;
        c->sym_id[nsym] = (int32_t)off;
        c->sym_len[nsym] = (uint32_t)len;
        c->sym_prev[nsym] = (int32_t)nsym - 1;
        off += len;
        c->sym_next[nsym] = off == n ? -1 : (int32_t)nsym + 1;
    }
    c->heap_len = 0;
    for (size_t i = 1; i < nsym; i++)
        if ((rc = try_bigram(t, c, s, (int32_t)i - 1, (int32_t)i)))
            return rc;
    while (c->heap_len) {
        struct tok_heap_ent e;
        tok_heap_pop(c, &e);
        uint32_t *ln = c->sym_len;
        if (ln[e.left] == 0 || ln[e.right] == 0 || ln[e.left] + ln[e.right] != (uint32_t)e.lid)
            continue;
        ln[e.left] += ln[e.right];
        ln[e.right] = 0;
        int32_t nx = c->sym_next[e.right];
        c->sym_next[e.left] = nx;
        if (nx >= 0)
            c->sym_prev[nx] = e.left;
        if ((rc = try_bigram(t, c, s, c->sym_prev[e.left], e.left)) || (rc = try_bigram(t, c, s, e.left, nx)))
            return rc;
    }
    for (int32_t i = 0; i >= 0; i = c->sym_next[i]) {
        const char *p = s + c->sym_id[i];
        int32_t id = tok_find(t, p, c->sym_len[i]);
        if (id >= 0) {
            if ((rc = tok_ids_push(out, id)))
                return rc;
            continue;
        }
        for (uint32_t j = 0; j < c->sym_len[i]; j++) {
            int32_t b = t->byte_tok[(unsigned char)p[j]];
            if (b < 0)
                b = t->unk;
            if (b < 0)
                return AISLE_EFORMAT; /* neither byte fallback nor an unknown token */
            if ((rc = tok_ids_push(out, b)))
                return rc;
        }
    }
    return 0;
}
