/*
 * kv_impl.h — the paged KV cache's insides, shared by kv.c (block pool, block
 * tables, prefix cache) and model.c (the forward writes and reads blocks).
 * Not a public header: only src/model/ and its tests include it.
 *
 * Free blocks (refcount 0) sit on one doubly-linked list: allocation takes the
 * head; a freed block that is registered in the prefix cache goes to the tail
 * (kept findable as long as possible), an unregistered one to the head.
 *
 * THREAD SAFETY: as model.h: one thread at a time.
 */
#ifndef AISLE_MODEL_KV_IMPL_H
#define AISLE_MODEL_KV_IMPL_H

#include "model/model.h"

#include <stdint.h>

struct lm_seq {
    int used;  /* slot taken */
    int len;   /* positions held */
    int nblk;  /* blocks in tab */
    int *tab;  /* (max_blocks) block ids, borrowed from lm_kv.tabs */
};

struct lm_kv {
    int L, NKV, HD;  /* layers, key/value heads, head_dim */
    int KVD;         /* NKV*HD */
    int BS, NB;      /* tokens per block, blocks */
    int f16;         /* element type of k/v: 1 uint16_t half, 0 float */
    int max_seqs;    /* sequence slots */
    int max_blocks;  /* blocks per sequence */
    size_t elt;      /* bytes per element (2 or 4) */
    void *k;         /* (NB, L, NKV, BS, HD): a head's keys of a block, row per position */
    void *v;         /* (NB, L, NKV, HD, BS): a head's values of a block, transposed */
    int *refs;       /* (NB) sequences holding the block */
    int32_t *tokens; /* (NB, BS) token written at each row */
    uint64_t *hash;  /* (NB) chain hash, valid when full[b] */
    uint8_t *full;   /* (NB) all BS rows written and hash computed */
    uint8_t *reg;    /* (NB) in the prefix-cache hash table */
    int *fprev, *fnext; /* (NB) free-list links, -1 ends */
    int fhead, ftail, nfree;
    int *bucket;     /* (nbuckets) first block of a hash chain, -1 none */
    int *bnext;      /* (NB) next block in the same bucket */
    unsigned nbuckets; /* power of two */
    struct lm_seq *seqs; /* (max_seqs) */
    int *tabs;       /* (max_seqs, max_blocks) */
    int *sim_len;    /* (max_seqs) scratch for lm_decode's checks */
};

/* Element offset of head h's (BS, HD) keys, or (HD, BS) values, of layer l
 * in block b. Both layouts make a block's keys and values of one head a
 * matrix that tensor_matmul reads in place: scores (G, BS) = q (G, HD) · K^T
 * and out (G, HD) = w (G, BS) · (V^T)^T. */
static inline size_t kv_off(const struct lm_kv *kv, int b, int l, int h)
{
    return ((((size_t)b * kv->L + l) * kv->NKV + h) * kv->BS) * kv->HD;
}

/* Elements of K (or V) in one block: all layers and heads. */
static inline size_t kv_block_elems(const struct lm_kv *kv)
{
    return (size_t)kv->L * kv->BS * kv->KVD;
}

/* Take a free block for seq (appended to its table, refcount 1, unregistered).
 * The caller has checked one is free and the table has room. Returns the id. */
int kv_take_block(struct lm_kv *kv, int seq);
/* Block b of seq just got its last row: compute its chain hash and register it
 * in the prefix cache (unless an equal block is registered already). */
void kv_block_filled(struct lm_kv *kv, int seq, int idx);

#endif
