/* hset.c — string set with values; see hset.h. */
#include "core/hset.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

uint64_t hset_hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void hset_init(struct hset *h)
{
    memset(h, 0, sizeof(*h));
}

void hset_release(struct hset *h)
{
    for (size_t i = 0; i < h->cap; i++)
        free(h->keys[i]);
    free(h->keys);
    free(h->vals);
    hset_init(h);
}

static size_t slot(char *const *keys, size_t cap, const char *key)
{
    size_t i = (size_t)hset_hash(HSET_FNV_SEED, key, strlen(key)) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

int hset_get(const struct hset *h, const char *key, uint64_t *val)
{
    if (!h->cap)
        return 0;
    size_t i = slot(h->keys, h->cap, key);
    if (!h->keys[i])
        return 0;
    *val = h->vals[i];
    return 1;
}

static int grow(struct hset *h)
{
    size_t ncap = h->cap ? h->cap * 2 : 64;
    char **nk = calloc(ncap, sizeof(*nk));
    uint64_t *nv = calloc(ncap, sizeof(*nv));
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return AISLE_ENOMEM;
    }
    for (size_t i = 0; i < h->cap; i++) {
        if (!h->keys[i])
            continue;
        size_t j = slot(nk, ncap, h->keys[i]);
        nk[j] = h->keys[i];
        nv[j] = h->vals[i];
    }
    free(h->keys);
    free(h->vals);
    h->keys = nk;
    h->vals = nv;
    h->cap = ncap;
    return 0;
}

int hset_put(struct hset *h, const char *key, uint64_t val)
{
    if ((h->len + 1) * 4 > h->cap * 3) { /* keep load under 3/4 */
        int rc = grow(h);
        if (rc)
            return rc;
    }
    size_t i = slot(h->keys, h->cap, key);
    if (h->keys[i])
        return 0;
    h->keys[i] = strdup(key);
    if (!h->keys[i])
        return AISLE_ENOMEM;
    h->vals[i] = val;
    h->len++;
    return 1;
}
