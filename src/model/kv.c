/*
 * kv.c — the paged KV cache: a pool of fixed-size blocks with reference
 * counts, a block table per sequence, and the prefix cache that finds full
 * blocks by the hash of their tokens chained with the previous block's hash.
 *
 * Dims legend: NB blocks, BS tokens per block, L layers, NKV key/value heads,
 * HD head_dim, KVD = NKV*HD.
 *
 * Invariants: refs[b] == number of sequence tables listing b; b is on the free
 * list iff refs[b] == 0; reg[b] implies full[b] and b is in exactly one bucket
 * chain; a block with refs > 1 is full; only the last block of a sequence may
 * be partial, and it has refs == 1.
 */
#include "model/kv_impl.h"

#include "core/error.h"
#include "core/hset.h"

#include <stdlib.h>
#include <string.h>

/* ---- free list --------------------------------------------------------------- */

static void free_unlink(struct lm_kv *kv, int b)
{
    int p = kv->fprev[b], n = kv->fnext[b];
    if (p >= 0)
        kv->fnext[p] = n;
    else
        kv->fhead = n;
    if (n >= 0)
        kv->fprev[n] = p;
    else
        kv->ftail = p;
    kv->fprev[b] = kv->fnext[b] = -1;
    kv->nfree--;
}

static void free_push(struct lm_kv *kv, int b, int at_tail)
{
    if (at_tail) {
        kv->fprev[b] = kv->ftail;
        kv->fnext[b] = -1;
        if (kv->ftail >= 0)
            kv->fnext[kv->ftail] = b;
        else
            kv->fhead = b;
        kv->ftail = b;
    } else {
        kv->fnext[b] = kv->fhead;
        kv->fprev[b] = -1;
        if (kv->fhead >= 0)
            kv->fprev[kv->fhead] = b;
        else
            kv->ftail = b;
        kv->fhead = b;
    }
    kv->nfree++;
}

/* ---- prefix-cache hash table ---------------------------------------------------- */

static unsigned bucket_of(const struct lm_kv *kv, uint64_t h)
{
    return (unsigned)(h ^ (h >> 29)) & (kv->nbuckets - 1);
}

static void unregister(struct lm_kv *kv, int b)
{
    if (!kv->reg[b])
        return;
    int *pp = &kv->bucket[bucket_of(kv, kv->hash[b])];
    while (*pp != b)
        pp = &kv->bnext[*pp];
    *pp = kv->bnext[b];
    kv->bnext[b] = -1;
    kv->reg[b] = 0;
}

/* A registered block with chain hash h and these BS tokens, or -1. */
static int lookup(const struct lm_kv *kv, uint64_t h, const int32_t *tokens)
{
    for (int b = kv->bucket[bucket_of(kv, h)]; b >= 0; b = kv->bnext[b])
        if (kv->hash[b] == h && !memcmp(&kv->tokens[(size_t)b * kv->BS], tokens, (size_t)kv->BS * sizeof(int32_t)))
            return b;
    return -1;
}

static uint64_t chain_hash(uint64_t prev, const int32_t *tokens, int BS)
{
    return hset_hash(prev, tokens, (size_t)BS * sizeof(int32_t));
}

void kv_block_filled(struct lm_kv *kv, int seq, int idx)
{
    struct lm_seq *s = &kv->seqs[seq];
    int b = s->tab[idx];
    uint64_t prev = idx ? kv->hash[s->tab[idx - 1]] : HSET_FNV_SEED;
    const int32_t *toks = &kv->tokens[(size_t)b * kv->BS];
    kv->hash[b] = chain_hash(prev, toks, kv->BS);
    kv->full[b] = 1;
    if (kv->reg[b] || lookup(kv, kv->hash[b], toks) >= 0)
        return; /* an equal block is findable already */
    unsigned k = bucket_of(kv, kv->hash[b]);
    kv->bnext[b] = kv->bucket[k];
    kv->bucket[k] = b;
    kv->reg[b] = 1;
}

int kv_take_block(struct lm_kv *kv, int seq)
{
    int b = kv->fhead;
    free_unlink(kv, b);
    unregister(kv, b);
    kv->full[b] = 0;
    kv->refs[b] = 1;
    /* Attention multiplies all BS value columns, with zero weights past the
     * sequence's end: those columns must hold finite numbers, not garbage. */
    memset((char *)kv->v + (size_t)b * kv_block_elems(kv) * kv->elt, 0, kv_block_elems(kv) * kv->elt);
    struct lm_seq *s = &kv->seqs[seq];
    s->tab[s->nblk++] = b;
    return b;
}

/* ---- lifecycle ------------------------------------------------------------------ */

int lm_kv_new(struct lm_kv **out, const struct lm_model *m, const struct lm_kv_opts *o)
{
    const struct llama_hparams *hp = lm_model_hparams(m);
    if (!o || o->n_blocks <= 0 || o->max_seqs <= 0 || o->block_tokens > LM_KV_MAX_BLOCK)
        return AISLE_EINVAL;
    struct lm_kv *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return AISLE_ENOMEM;
    kv->L = (int)hp->n_layer;
    kv->NKV = (int)hp->n_head_kv;
    kv->HD = (int)hp->head_dim;
    kv->KVD = kv->NKV * kv->HD;
    kv->BS = o->block_tokens > 0 ? o->block_tokens : LM_KV_DEFAULT_BLOCK;
    kv->NB = o->n_blocks;
    kv->f16 = o->f16 ? 1 : 0;
    kv->elt = kv->f16 ? 2 : 4;
    kv->max_seqs = o->max_seqs;
    long max_len = o->max_seq_len > 0 ? o->max_seq_len : (long)hp->n_ctx;
    if (max_len <= 0)
        max_len = 4096;
    kv->max_blocks = (int)((max_len + kv->BS - 1) / kv->BS);
    kv->nbuckets = 1;
    while (kv->nbuckets < 2u * (unsigned)kv->NB)
        kv->nbuckets <<= 1;

    size_t per_block = (size_t)kv->L * kv->BS * kv->KVD * kv->elt; /* K or V of one block */
    if (per_block && (size_t)kv->NB > SIZE_MAX / 2 / per_block)
        goto fail;
    kv->k = malloc(per_block * kv->NB);
    kv->v = malloc(per_block * kv->NB);
    kv->refs = calloc((size_t)kv->NB, sizeof(int));
    kv->tokens = calloc((size_t)kv->NB * kv->BS, sizeof(int32_t));
    kv->hash = calloc((size_t)kv->NB, sizeof(uint64_t));
    kv->full = calloc((size_t)kv->NB, 1);
    kv->reg = calloc((size_t)kv->NB, 1);
    kv->fprev = malloc((size_t)kv->NB * sizeof(int));
    kv->fnext = malloc((size_t)kv->NB * sizeof(int));
    kv->bucket = malloc(kv->nbuckets * sizeof(int));
    kv->bnext = malloc((size_t)kv->NB * sizeof(int));
    kv->seqs = calloc((size_t)kv->max_seqs, sizeof(struct lm_seq));
    kv->tabs = malloc((size_t)kv->max_seqs * kv->max_blocks * sizeof(int));
    kv->sim_len = malloc((size_t)kv->max_seqs * sizeof(int));
    if (!kv->k || !kv->v || !kv->refs || !kv->tokens || !kv->hash || !kv->full || !kv->reg || !kv->fprev ||
        !kv->fnext || !kv->bucket || !kv->bnext || !kv->seqs || !kv->tabs || !kv->sim_len)
        goto fail;
    kv->fhead = kv->ftail = -1;
    for (int b = 0; b < kv->NB; b++) {
        kv->bnext[b] = -1;
        free_push(kv, b, 1);
    }
    for (unsigned i = 0; i < kv->nbuckets; i++)
        kv->bucket[i] = -1;
    for (int s = 0; s < kv->max_seqs; s++)
        kv->seqs[s].tab = &kv->tabs[(size_t)s * kv->max_blocks];
    *out = kv;
    return 0;
fail:
    lm_kv_free(kv);
    return AISLE_ENOMEM;
}

void lm_kv_free(struct lm_kv *kv)
{
    if (!kv)
        return;
    free(kv->k);
    free(kv->v);
    free(kv->refs);
    free(kv->tokens);
    free(kv->hash);
    free(kv->full);
    free(kv->reg);
    free(kv->fprev);
    free(kv->fnext);
    free(kv->bucket);
    free(kv->bnext);
    free(kv->seqs);
    free(kv->tabs);
    free(kv->sim_len);
    free(kv);
}

size_t lm_kv_block_bytes(const struct lm_kv *kv)
{
    return 2 * (size_t)kv->L * kv->BS * kv->KVD * kv->elt;
}

int lm_kv_block_tokens(const struct lm_kv *kv)
{
    return kv->BS;
}

int lm_kv_n_blocks(const struct lm_kv *kv)
{
    return kv->NB;
}

int lm_kv_n_free_blocks(const struct lm_kv *kv)
{
    return kv->nfree;
}

int lm_kv_block_refs(const struct lm_kv *kv, int b)
{
    return b >= 0 && b < kv->NB ? kv->refs[b] : -1;
}

static struct lm_seq *seq_get(const struct lm_kv *kv, int seq)
{
    if (seq < 0 || seq >= kv->max_seqs || !kv->seqs[seq].used)
        return NULL;
    return &kv->seqs[seq];
}

int lm_kv_seq_len(const struct lm_kv *kv, int seq)
{
    const struct lm_seq *s = seq_get(kv, seq);
    return s ? s->len : -1;
}

const int *lm_kv_seq_blocks(const struct lm_kv *kv, int seq, int *n)
{
    const struct lm_seq *s = seq_get(kv, seq);
    *n = s ? s->nblk : 0;
    return s ? s->tab : NULL;
}

/* ---- sequences ------------------------------------------------------------------ */

int lm_kv_seq_new(struct lm_kv *kv, int *seq)
{
    for (int i = 0; i < kv->max_seqs; i++)
        if (!kv->seqs[i].used) {
            kv->seqs[i].used = 1;
            kv->seqs[i].len = 0;
            kv->seqs[i].nblk = 0;
            *seq = i;
            return 0;
        }
    return AISLE_EBUSY;
}

static void block_release(struct lm_kv *kv, int b)
{
    if (--kv->refs[b] == 0)
        free_push(kv, b, kv->reg[b]);
}

void lm_kv_seq_free(struct lm_kv *kv, int seq)
{
    struct lm_seq *s = seq_get(kv, seq);
    if (!s)
        return;
    /* Release from the last block back, so that a prefix's first blocks are
     * the last to be reused (they are the likeliest to be asked for again). */
    for (int i = s->nblk - 1; i >= 0; i--)
        block_release(kv, s->tab[i]);
    s->used = 0;
    s->len = s->nblk = 0;
}

/* Copy block src into block dst: K and V whole (rows past `rows` are stale
 * but finite, which the attention's zero weights need), tokens [0, rows). */
static void block_copy(struct lm_kv *kv, int dst, int src, int rows)
{
    size_t n = kv_block_elems(kv) * kv->elt;
    memcpy((char *)kv->k + (size_t)dst * n, (char *)kv->k + (size_t)src * n, n);
    memcpy((char *)kv->v + (size_t)dst * n, (char *)kv->v + (size_t)src * n, n);
    memcpy(&kv->tokens[(size_t)dst * kv->BS], &kv->tokens[(size_t)src * kv->BS], (size_t)rows * sizeof(int32_t));
}

int lm_kv_seq_fork(struct lm_kv *kv, int src, int *dst)
{
    struct lm_seq *s = seq_get(kv, src);
    if (!s)
        return AISLE_EINVAL;
    int partial = s->len % kv->BS != 0;
    if (partial && kv->nfree == 0)
        return AISLE_ETOOBIG;
    int d;
    int rc = lm_kv_seq_new(kv, &d);
    if (rc)
        return rc;
    struct lm_seq *t = &kv->seqs[d];
    int shared = s->nblk - partial;
    for (int i = 0; i < shared; i++) {
        t->tab[i] = s->tab[i];
        kv->refs[s->tab[i]]++;
    }
    t->nblk = shared;
    if (partial) {
        int b = kv_take_block(kv, d);
        block_copy(kv, b, s->tab[s->nblk - 1], s->len % kv->BS);
    }
    t->len = s->len;
    *dst = d;
    return 0;
}

int lm_kv_seq_truncate(struct lm_kv *kv, int seq, int n)
{
    struct lm_seq *s = seq_get(kv, seq);
    if (!s || n < 0 || n > s->len)
        return AISLE_EINVAL;
    int keep = (n + kv->BS - 1) / kv->BS; /* blocks still needed */
    int rows = n % kv->BS;                /* rows of the new last block, 0 = full */
    if (rows && kv->refs[s->tab[keep - 1]] > 1 && kv->nfree == 0)
        return AISLE_ETOOBIG;
    for (int i = s->nblk - 1; i >= keep; i--)
        block_release(kv, s->tab[i]);
    s->nblk = keep;
    if (rows) {
        int b = s->tab[keep - 1];
        if (kv->refs[b] > 1) {
            /* Shared full block: this sequence gets a private partial copy. */
            kv->refs[b]--;
            s->nblk--;
            int c = kv_take_block(kv, seq);
            block_copy(kv, c, b, rows);
        } else {
            /* Its rows past n will be overwritten with other tokens. */
            unregister(kv, b);
            kv->full[b] = 0;
        }
    }
    s->len = n;
    return 0;
}

int lm_kv_seq_prefix(struct lm_kv *kv, int seq, const int32_t *tokens, int n, int *n_cached)
{
    struct lm_seq *s = seq_get(kv, seq);
    if (!s || s->len != 0 || n < 0 || (n > 0 && !tokens))
        return AISLE_EINVAL;
    uint64_t h = HSET_FNV_SEED;
    int k = 0;
    while ((k + 1) * kv->BS <= n - 1 && k < kv->max_blocks) {
        const int32_t *t = tokens + (size_t)k * kv->BS;
        h = chain_hash(h, t, kv->BS);
        int b = lookup(kv, h, t);
        if (b < 0)
            break;
        if (kv->refs[b]++ == 0)
            free_unlink(kv, b);
        s->tab[s->nblk++] = b;
        k++;
    }
    s->len = k * kv->BS;
    *n_cached = s->len;
    return 0;
}
