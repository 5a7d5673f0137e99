/*
 * product.h — small catalog reads for the shopper-facing assistant: a
 * product's title and brand for a card, and a list of products for the web
 * chat's product-page selector.
 *
 * Design: prepared on the caller's store connection for each call (the
 * statements are tiny and run once per card or once at start-up), so the store
 * module's statement table stays the ingest's.
 *
 * Ownership: results are written into caller storage (fixed-size fields, cut
 * at a UTF-8 character boundary) or handed to a callback whose strings are
 * valid only during the call. THREAD SAFETY: as the store connection: one
 * thread at a time.
 */
#ifndef AISLE_STORE_PRODUCT_H
#define AISLE_STORE_PRODUCT_H

#include <stddef.h>

#include "store/store.h"

struct store_brief {
    char title[256]; /* cut to fit */
    char brand[96];  /* "" when the catalog has none */
};

/* The title and brand of product id. 0 with *out; AISLE_ENOTFOUND; AISLE_EDB
 * (message: store_errmsg). */
int store_product_brief(struct store *s, const char *id, struct store_brief *out);

/* Call cb(ud, id, title) for up to limit products that some seller has in
 * stock, in id order. A nonzero return from cb stops and is returned; else 0
 * or AISLE_EDB. */
int store_products_in_stock(struct store *s, size_t limit, int (*cb)(void *ud, const char *id, const char *title),
                            void *ud);

#endif
