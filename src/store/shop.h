/*
 * shop.h — the store's live data as tools: offers (price, stock, seller,
 * delivery promise), a delivery estimate to a postcode, and order status,
 * behind one interface with two backends.
 *
 *   local     the store database (offers and orders loaded by `aisle ingest`);
 *   merchant  the merchant's own HTTP JSON API (docs/STORE_API.md), through
 *             libcurl with a timeout per attempt, retries with backoff, and the
 *             last good answer kept in memory: when the API is slow, down or
 *             answers garbage, the caller gets that last-known value marked
 *             stale with its age, or AISLE_EUNAVAIL — never a hang.
 *
 * Every answer says where it came from and how fresh it is (struct shop_fresh),
 * so a product card can show "as of" and mark a stale price as stale.
 * Answers are validated with exactly the checks of the offers/orders feeds
 * (ingest_check_offer/order).
 *
 * Ownership: results are plain structs with fixed-size fields, written into
 * caller storage only on success. THREAD SAFETY: one struct shop per thread (it
 * owns a SQLite connection or a curl handle and its cache).
 */
#ifndef AISLE_STORE_SHOP_H
#define AISLE_STORE_SHOP_H

#include <stddef.h>
#include <stdint.h>

#define SHOP_MAX_OFFERS 16
#define SHOP_MAX_LINES 100
#define SHOP_MAX_EVENTS 32
#define SHOP_ID_MAX 257   /* INGEST_MAX_ID + NUL */
#define SHOP_TEXT_MAX 129 /* sellers, customers: longer values are cut */

struct shop_fresh {
    const char *source; /* static: "local" or "merchant" */
    char as_of[40];     /* when the source said this was true (ISO 8601) */
    int64_t age_s;      /* seconds since as_of (or since fetched, for a stale copy) */
    int stale;          /* 1: the live source failed; this is the last-known value */
};

struct shop_offer {
    char seller[SHOP_TEXT_MAX];
    int64_t price_minor; /* in the currency's minor unit */
    char currency[4];
    int64_t stock;
    int delivery_days; /* -1 when unknown */
    char updated_at[40];
};

struct shop_offers {
    char product_id[SHOP_ID_MAX];
    size_t n;                         /* offers, cheapest in-stock first */
    struct shop_offer v[SHOP_MAX_OFFERS];
    struct shop_fresh fresh;
};

struct shop_delivery {
    char product_id[SHOP_ID_MAX];
    char postcode[16];
    int available;      /* 0: no seller has it in stock */
    int days_min, days_max;
    char earliest[11], latest[11]; /* YYYY-MM-DD, from today */
    char seller[SHOP_TEXT_MAX];
    struct shop_fresh fresh;
};

struct shop_order {
    char id[SHOP_ID_MAX];
    char customer[SHOP_TEXT_MAX];
    char currency[4];
    char created_at[40];
    char status[65]; /* the latest event's status */
    char status_at[40];
    size_t nlines;
    struct {
        char product_id[SHOP_ID_MAX];
        int64_t quantity;
        int64_t unit_price_minor; /* -1 when unknown */
    } lines[SHOP_MAX_LINES];
    size_t nevents;
    struct {
        char status[65];
        char at[40];
    } events[SHOP_MAX_EVENTS];
    int truncated; /* more lines or events than fit */
    struct shop_fresh fresh;
};

struct shop_http_opts {
    const char *base_url;  /* e.g. "https://shop.example/aisle/v1" (no trailing slash needed) */
    const char *api_key;   /* sent as "Authorization: Bearer KEY"; may be NULL */
    long timeout_ms;       /* per attempt, whole request; default 1500 */
    long connect_timeout_ms; /* default 500 */
    int retries;           /* further attempts after a failure; default 2 */
    long backoff_ms;       /* wait before retry k is backoff_ms * 2^(k-1); default 100 */
    size_t max_body;       /* response cap in bytes; default 1 MiB */
};

struct shop;

/* The local backend over the store database at path (opened read-only). */
int shop_open_local(struct shop **out, const char *dbpath, char *err, size_t errlen);
/* The merchant HTTP backend. */
int shop_open_http(struct shop **out, const struct shop_http_opts *opts, char *err, size_t errlen);
void shop_close(struct shop *s); /* NULL ok */

/* Each returns 0 with *out filled; AISLE_ENOTFOUND (no such product/offer/order:
 * the source said so); AISLE_EUNAVAIL (the source failed and nothing is known);
 * AISLE_EINVAL (bad argument, e.g. a malformed postcode); detail in err. */
int shop_offers(struct shop *s, const char *product_id, struct shop_offers *out, char *err, size_t errlen);
int shop_delivery(struct shop *s, const char *product_id, const char *postcode, struct shop_delivery *out,
                  char *err, size_t errlen);
int shop_order(struct shop *s, const char *order_id, struct shop_order *out, char *err, size_t errlen);

/* Add business days (Mon-Fri) to a date: "2026-11-27" + 1 -> "2026-11-30". 0 or AISLE_EINVAL. */
int shop_add_business_days(const char *ymd, int days, char out[11]);

#endif
