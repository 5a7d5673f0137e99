/*
 * hset.h — a set of strings mapping each to a 64-bit value (open addressing,
 * FNV-1a, linear probing). Used to catch duplicate ids within one input file and
 * remember where each was first seen.
 *
 * Ownership: the set copies keys into its own storage. THREAD SAFETY: none.
 */
#ifndef AISLE_CORE_HSET_H
#define AISLE_CORE_HSET_H

#include <stddef.h>
#include <stdint.h>

struct hset {
    char **keys;     /* (cap) owned copies, NULL for empty slots */
    uint64_t *vals;  /* (cap) */
    size_t cap, len;
};

void hset_init(struct hset *h);
void hset_release(struct hset *h);
/* Look key up; 1 with *val set when present, else 0. */
int hset_get(const struct hset *h, const char *key, uint64_t *val);
/* Insert key -> val. 1 if inserted, 0 if it was present (value unchanged), or
 * AISLE_ENOMEM. */
int hset_put(struct hset *h, const char *key, uint64_t val);
/* 64-bit FNV-1a of n bytes, continuing from seed (use HSET_FNV_SEED to start). */
#define HSET_FNV_SEED 0xcbf29ce484222325ULL
uint64_t hset_hash(uint64_t seed, const void *p, size_t n);

#endif
