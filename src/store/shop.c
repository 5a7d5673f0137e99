/*
 * shop.c — live store data behind one interface; see shop.h.
 *
 * The merchant backend keeps, per question asked (offers of a product, a
 * delivery to a postcode, an order), the body of the last good answer and when
 * it came. A failed call (connection refused, timeout, HTTP 5xx or 429, a body
 * that is not valid JSON or fails the feed's validation) is retried with
 * exponential backoff; when all attempts fail, the last good body is parsed
 * again and returned marked stale with its age. A 404 is an answer, not a
 * failure: the thing does not exist, and the cached copy is dropped.
 */
#include "store/shop.h"
#include "core/buf.h"
#include "core/error.h"
#include "store/ingest.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE_SLOTS 1024

enum backend { LOCAL, MERCHANT };

struct cache_entry {
    char *key;
    char *body;
    int64_t fetched; /* epoch seconds */
};

struct shop {
    enum backend kind;
    /* local */
    sqlite3 *db;
    /* merchant */
    CURL *curl;
    struct shop_http_opts o;
    char *base;
    struct curl_slist *headers;
    struct buf body;
    struct cache_entry cache[CACHE_SLOTS];
    size_t cache_next; /* ring: the slot replaced next when the key is new */
    struct ingest_checker *check;
};

static void seterr(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t n, const char *fmt, ...)
{
    if (!err || !n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ISO 8601 date or date-time to epoch seconds; -1 when unparsable. */
static int64_t iso_epoch(const char *s)
{
    struct tm tm = {0};
    int y, mo, d, h = 0, mi = 0, sec = 0;
    if (!s || sscanf(s, "%4d-%2d-%2d", &y, &mo, &d) != 3)
        return -1;
    const char *t = s + 10;
    long off = 0;
    if (*t == 'T' || *t == ' ') {
        if (sscanf(t + 1, "%2d:%2d", &h, &mi) != 2)
            return -1;
        t += 6;
        if (*t == ':') {
            sec = atoi(t + 1);
            t += 3;
            while (*t == '.' || isdigit((unsigned char)*t))
                t++;
        }
        if (*t == '+' || *t == '-') {
            int oh = atoi(t + 1), om = atoi(t + 4);
            off = (*t == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
        }
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm) - off;
}

static void iso_now(char out[40])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void set_fresh(struct shop_fresh *f, const char *source, const char *as_of)
{
    f->source = source;
    copy(f->as_of, sizeof(f->as_of), as_of);
    int64_t e = iso_epoch(as_of);
    f->age_s = e < 0 ? 0 : now_s() - e;
    if (f->age_s < 0)
        f->age_s = 0;
    f->stale = 0;
}

int shop_add_business_days(const char *ymd, int days, char out[11])
{
    int64_t e = iso_epoch(ymd);
    if (e < 0 || days < 0 || days > 3650)
        return AISLE_EINVAL;
    time_t t = (time_t)e;
    struct tm tm;
    gmtime_r(&t, &tm);
    while (days > 0) {
        t += 86400;
        gmtime_r(&t, &tm);
        if (tm.tm_wday != 0 && tm.tm_wday != 6)
            days--;
    }
    strftime(out, 11, "%Y-%m-%d", &tm);
    return 0;
}

static int postcode_ok(const char *p)
{
    size_t n = strlen(p);
    if (n < 2 || n > 10 || !isalnum((unsigned char)p[0]) || !isalnum((unsigned char)p[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != ' ' && p[i] != '-')
            return 0;
    return 1;
}

/* Order offers: in stock first, then cheapest, then seller name. */
static int cmp_offer(const void *a, const void *b)
{
    const struct shop_offer *x = a, *y = b;
    if ((x->stock == 0) != (y->stock == 0))
        return x->stock == 0 ? 1 : -1;
    if (x->price_minor != y->price_minor)
        return x->price_minor < y->price_minor ? -1 : 1;
    return strcmp(x->seller, y->seller);
}

/* The delivery promise from a product's offers: the fastest seller with stock. */
static void delivery_from_offers(const struct shop_offers *of, const char *postcode, struct shop_delivery *d)
{
    memset(d, 0, sizeof(*d));
    copy(d->product_id, sizeof(d->product_id), of->product_id);
    copy(d->postcode, sizeof(d->postcode), postcode);
    d->days_min = d->days_max = -1;
    int best = -1;
    for (size_t i = 0; i < of->n; i++) {
        const struct shop_offer *o = &of->v[i];
        if (o->stock > 0 && o->delivery_days >= 0 && (best < 0 || o->delivery_days < of->v[best].delivery_days))
            best = (int)i;
    }
    d->fresh = of->fresh;
    if (best < 0)
        return;
    d->available = 1;
    d->days_min = d->days_max = of->v[best].delivery_days;
    copy(d->seller, sizeof(d->seller), of->v[best].seller);
    char today[40];
    iso_now(today);
    today[10] = '\0';
    shop_add_business_days(today, d->days_min, d->earliest);
    shop_add_business_days(today, d->days_max, d->latest);
}

/* ---- local backend ---- */

int shop_open_local(struct shop **out, const char *dbpath, char *err, size_t errlen)
{
    struct shop *s = calloc(1, sizeof(*s));
    if (!s)
        return AISLE_ENOMEM;
    s->kind = LOCAL;
    if (sqlite3_open_v2(dbpath, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        seterr(err, errlen, "%s: %s", dbpath, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        shop_close(s);
        return AISLE_ENOTFOUND;
    }
    sqlite3_busy_timeout(s->db, 5000);
    *out = s;
    return 0;
}

static int local_product_exists(struct shop *s, const char *id)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM products WHERE id=?1", -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

static int local_offers(struct shop *s, const char *pid, struct shop_offers *out, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT seller, price_minor, currency, stock, coalesce(delivery_days, -1), updated_at"
                           " FROM offers WHERE product_id=?1 ORDER BY stock = 0, price_minor, seller LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK) {
        seterr(err, errlen, "offers: %s", sqlite3_errmsg(s->db));
        return AISLE_EDB;
    }
    sqlite3_bind_text(st, 1, pid, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, SHOP_MAX_OFFERS);
    struct shop_offers *r = calloc(1, sizeof(*r));
    if (!r) {
        sqlite3_finalize(st);
        return AISLE_ENOMEM;
    }
    copy(r->product_id, sizeof(r->product_id), pid);
    const char *oldest = NULL;
    char oldest_buf[40] = "";
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct shop_offer *o = &r->v[r->n++];
        copy(o->seller, sizeof(o->seller), (const char *)sqlite3_column_text(st, 0));
        o->price_minor = sqlite3_column_int64(st, 1);
        copy(o->currency, sizeof(o->currency), (const char *)sqlite3_column_text(st, 2));
        o->stock = sqlite3_column_int64(st, 3);
        o->delivery_days = sqlite3_column_int(st, 4);
        copy(o->updated_at, sizeof(o->updated_at), (const char *)sqlite3_column_text(st, 5));
        if (!oldest || iso_epoch(o->updated_at) < iso_epoch(oldest)) {
            copy(oldest_buf, sizeof(oldest_buf), o->updated_at);
            oldest = oldest_buf;
        }
    }
    sqlite3_finalize(st);
    if (!r->n) {
        int exists = local_product_exists(s, pid);
        seterr(err, errlen, exists ? "product \"%s\" has no offers" : "no product \"%s\"", pid);
        free(r);
        return AISLE_ENOTFOUND;
    }
    /* The price is only as fresh as its oldest offer. */
    set_fresh(&r->fresh, "local", oldest);
    *out = *r;
    free(r);
    return 0;
}

static int local_order(struct shop *s, const char *id, struct shop_order *out, char *err, size_t errlen)
{
    struct shop_order *r = calloc(1, sizeof(*r));
    if (!r)
        return AISLE_ENOMEM;
    sqlite3_stmt *st;
    int rc = AISLE_EDB;
    if (sqlite3_prepare_v2(s->db, "SELECT customer, coalesce(currency,''), created_at FROM orders WHERE id=?1", -1,
                           &st, NULL) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        seterr(err, errlen, "no order \"%s\"", id);
        free(r);
        return AISLE_ENOTFOUND;
    }
    copy(r->id, sizeof(r->id), id);
    copy(r->customer, sizeof(r->customer), (const char *)sqlite3_column_text(st, 0));
    copy(r->currency, sizeof(r->currency), (const char *)sqlite3_column_text(st, 1));
    copy(r->created_at, sizeof(r->created_at), (const char *)sqlite3_column_text(st, 2));
    sqlite3_finalize(st);

    if (sqlite3_prepare_v2(s->db,
                           "SELECT product_id, quantity, coalesce(unit_price_minor, -1) FROM order_lines"
                           " WHERE order_id=?1 ORDER BY line_no", -1, &st, NULL) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (r->nlines == SHOP_MAX_LINES) {
            r->truncated = 1;
            break;
        }
        copy(r->lines[r->nlines].product_id, SHOP_ID_MAX, (const char *)sqlite3_column_text(st, 0));
        r->lines[r->nlines].quantity = sqlite3_column_int64(st, 1);
        r->lines[r->nlines].unit_price_minor = sqlite3_column_int64(st, 2);
        r->nlines++;
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(s->db, "SELECT status, at FROM order_events WHERE order_id=?1 ORDER BY seq", -1, &st,
                           NULL) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        /* Keep the newest events when there are too many: the last is the status. */
        if (r->nevents == SHOP_MAX_EVENTS) {
            memmove(&r->events[0], &r->events[1], sizeof(r->events[0]) * (SHOP_MAX_EVENTS - 1));
            r->nevents--;
            r->truncated = 1;
        }
        copy(r->events[r->nevents].status, 65, (const char *)sqlite3_column_text(st, 0));
        copy(r->events[r->nevents].at, 40, (const char *)sqlite3_column_text(st, 1));
        r->nevents++;
    }
    sqlite3_finalize(st);
    if (r->nevents) {
        copy(r->status, sizeof(r->status), r->events[r->nevents - 1].status);
        copy(r->status_at, sizeof(r->status_at), r->events[r->nevents - 1].at);
    }
    set_fresh(&r->fresh, "local", r->nevents ? r->status_at : r->created_at);
    *out = *r;
    free(r);
    return 0;
dberr:
    seterr(err, errlen, "order: %s", sqlite3_errmsg(s->db));
    free(r);
    return rc;
}

/* ---- merchant HTTP backend ---- */

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct shop *s = ud;
    size_t n = size * nmemb;
    if (buf_append(&s->body, p, n) != 0)
        return 0; /* over the cap: curl aborts with CURLE_WRITE_ERROR */
    return n;
}

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int shop_open_http(struct shop **out, const struct shop_http_opts *opts, char *err, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_init_once);
    if (!opts->base_url || strncmp(opts->base_url, "http", 4) != 0) {
        seterr(err, errlen, "merchant API: base URL must start with http:// or https://");
        return AISLE_EINVAL;
    }
    struct shop *s = calloc(1, sizeof(*s));
    if (!s)
        return AISLE_ENOMEM;
    s->kind = MERCHANT;
    s->o = *opts;
    if (s->o.timeout_ms <= 0)
        s->o.timeout_ms = 1500;
    if (s->o.connect_timeout_ms <= 0)
        s->o.connect_timeout_ms = 500;
    if (s->o.retries < 0)
        s->o.retries = 0;
    if (s->o.retries > 5)
        s->o.retries = 5;
    if (s->o.backoff_ms <= 0)
        s->o.backoff_ms = 100;
    if (!s->o.max_body)
        s->o.max_body = 1u << 20;
    buf_init(&s->body, s->o.max_body);
    s->base = strdup(opts->base_url);
    s->curl = curl_easy_init();
    if (!s->base || !s->curl || ingest_checker_new(&s->check)) {
        shop_close(s);
        return AISLE_ENOMEM;
    }
    size_t bl = strlen(s->base);
    while (bl && s->base[bl - 1] == '/')
        s->base[--bl] = '\0';
    s->o.base_url = s->base;
    s->headers = curl_slist_append(NULL, "Accept: application/json");
    if (opts->api_key) {
        char h[512];
        snprintf(h, sizeof(h), "Authorization: Bearer %s", opts->api_key);
        s->headers = curl_slist_append(s->headers, h);
    }
    s->o.api_key = NULL; /* not kept beyond the header */
    *out = s;
    return 0;
}

void shop_close(struct shop *s)
{
    if (!s)
        return;
    if (s->db)
        sqlite3_close(s->db);
    if (s->curl)
        curl_easy_cleanup(s->curl);
    curl_slist_free_all(s->headers);
    free(s->base);
    buf_release(&s->body);
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        free(s->cache[i].key);
        free(s->cache[i].body);
    }
    ingest_checker_free(s->check);
    free(s);
}

static struct cache_entry *cache_find(struct shop *s, const char *key)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        if (s->cache[i].key && !strcmp(s->cache[i].key, key))
            return &s->cache[i];
    return NULL;
}

static void cache_put(struct shop *s, const char *key, const char *body)
{
    struct cache_entry *e = cache_find(s, key);
    if (!e) {
        e = &s->cache[s->cache_next];
        s->cache_next = (s->cache_next + 1) % CACHE_SLOTS;
        free(e->key);
        e->key = strdup(key);
    }
    free(e->body);
    e->body = strdup(body);
    e->fetched = now_s();
    if (!e->key || !e->body) { /* out of memory: forget the entry */
        free(e->key);
        free(e->body);
        e->key = e->body = NULL;
    }
}

static void cache_drop(struct shop *s, const char *key)
{
    struct cache_entry *e = cache_find(s, key);
    if (e) {
        free(e->key);
        free(e->body);
        e->key = e->body = NULL;
    }
}

/* A body parser: validates and fills the caller's result; 0 or AISLE_EFORMAT with err. */
typedef int (*parse_fn)(struct shop *s, json_t *doc, const void *arg, void *out, char *err, size_t errlen);

static int parse_offers(struct shop *s, json_t *doc, const void *arg, void *outp, char *err, size_t errlen)
{
    const char *pid = arg;
    struct shop_offers *r = outp;
    json_t *arr = json_object_get(doc, "offers");
    if (!json_is_array(arr)) {
        seterr(err, errlen, "offers: expected an object with an \"offers\" array");
        return AISLE_EFORMAT;
    }
    memset(r, 0, sizeof(*r));
    copy(r->product_id, sizeof(r->product_id), pid);
    size_t i;
    json_t *e;
    int64_t oldest = -1;
    char oldest_s[40] = "";
    struct shop_offer all[SHOP_MAX_OFFERS * 4];
    size_t n = 0;
    json_array_foreach(arr, i, e) {
        struct store_offer so;
        if (ingest_check_offer(s->check, e, &so)) {
            seterr(err, errlen, "offers[%zu].%s", i, ingest_checker_msg(s->check));
            return AISLE_EFORMAT;
        }
        if (strcmp(so.product_id, pid) != 0) {
            seterr(err, errlen, "offers[%zu].product_id: \"%s\" is not the product asked for", i, so.product_id);
            return AISLE_EFORMAT;
        }
        if (n == sizeof(all) / sizeof(all[0]))
            continue;
        struct shop_offer *o = &all[n++];
        copy(o->seller, sizeof(o->seller), so.seller);
        o->price_minor = so.price_minor;
        copy(o->currency, sizeof(o->currency), so.currency);
        o->stock = so.stock;
        o->delivery_days = (int)so.delivery_days;
        copy(o->updated_at, sizeof(o->updated_at), so.updated_at);
        int64_t t = iso_epoch(so.updated_at);
        if (oldest < 0 || t < oldest) {
            oldest = t;
            copy(oldest_s, sizeof(oldest_s), so.updated_at);
        }
    }
    if (!n) {
        seterr(err, errlen, "product \"%s\" has no offers", pid);
        return AISLE_ENOTFOUND;
    }
    qsort(all, n, sizeof(all[0]), cmp_offer);
    r->n = n < SHOP_MAX_OFFERS ? n : SHOP_MAX_OFFERS;
    memcpy(r->v, all, r->n * sizeof(all[0]));
    set_fresh(&r->fresh, "merchant", oldest_s);
    return 0;
}

static int json_int_in(json_t *o, const char *k, int lo, int hi, int *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        seterr(err, errlen, "%s: expected an integer from %d to %d", k, lo, hi);
        return AISLE_EFORMAT;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

struct delivery_arg {
    const char *pid, *postcode;
};

static int parse_delivery(struct shop *s, json_t *doc, const void *arg, void *outp, char *err, size_t errlen)
{
    (void)s;
    const struct delivery_arg *a = arg;
    struct shop_delivery *d = outp;
    memset(d, 0, sizeof(*d));
    copy(d->product_id, sizeof(d->product_id), a->pid);
    copy(d->postcode, sizeof(d->postcode), a->postcode);
    json_t *av = json_object_get(doc, "available");
    if (!json_is_boolean(av)) {
        seterr(err, errlen, "available: expected a boolean");
        return AISLE_EFORMAT;
    }
    d->available = json_is_true(av);
    d->days_min = d->days_max = -1;
    if (d->available) {
        if (json_int_in(doc, "days_min", 0, 365, &d->days_min, err, errlen) ||
            json_int_in(doc, "days_max", 0, 365, &d->days_max, err, errlen))
            return AISLE_EFORMAT;
        if (d->days_max < d->days_min) {
            seterr(err, errlen, "days_max: %d is less than days_min %d", d->days_max, d->days_min);
            return AISLE_EFORMAT;
        }
        char today[40];
        iso_now(today);
        today[10] = '\0';
        shop_add_business_days(today, d->days_min, d->earliest);
        shop_add_business_days(today, d->days_max, d->latest);
    }
    json_t *sel = json_object_get(doc, "seller");
    if (json_is_string(sel))
        copy(d->seller, sizeof(d->seller), json_string_value(sel));
    char now[40];
    iso_now(now);
    set_fresh(&d->fresh, "merchant", now);
    return 0;
}

static int parse_order(struct shop *s, json_t *doc, const void *arg, void *outp, char *err, size_t errlen)
{
    const char *oid = arg;
    struct shop_order *r = outp;
    struct store_order so;
    if (ingest_check_order(s->check, doc, &so)) {
        seterr(err, errlen, "order.%s", ingest_checker_msg(s->check));
        return AISLE_EFORMAT;
    }
    if (strcmp(so.id, oid) != 0) {
        seterr(err, errlen, "order.id: \"%s\" is not the order asked for", so.id);
        return AISLE_EFORMAT;
    }
    memset(r, 0, sizeof(*r));
    copy(r->id, sizeof(r->id), so.id);
    copy(r->customer, sizeof(r->customer), so.customer);
    copy(r->currency, sizeof(r->currency), so.currency);
    copy(r->created_at, sizeof(r->created_at), so.created_at);
    for (size_t i = 0; i < so.nlines && i < SHOP_MAX_LINES; i++) {
        copy(r->lines[i].product_id, SHOP_ID_MAX, so.lines[i].product_id);
        r->lines[i].quantity = so.lines[i].quantity;
        r->lines[i].unit_price_minor = so.lines[i].unit_price_minor;
        r->nlines++;
    }
    size_t first = so.nevents > SHOP_MAX_EVENTS ? so.nevents - SHOP_MAX_EVENTS : 0;
    for (size_t i = first; i < so.nevents; i++) {
        copy(r->events[r->nevents].status, 65, so.events[i].status);
        copy(r->events[r->nevents].at, 40, so.events[i].at);
        r->nevents++;
    }
    r->truncated = so.nlines > SHOP_MAX_LINES || first > 0;
    copy(r->status, sizeof(r->status), r->events[r->nevents - 1].status);
    copy(r->status_at, sizeof(r->status_at), r->events[r->nevents - 1].at);
    char now[40];
    iso_now(now);
    set_fresh(&r->fresh, "merchant", now);
    return 0;
}

static int parse_body(struct shop *s, const char *body, parse_fn parse, const void *arg, void *out, char *err,
                      size_t errlen)
{
    json_error_t je;
    json_t *doc = json_loads(body, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        seterr(err, errlen, "not JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return AISLE_EFORMAT;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        seterr(err, errlen, "expected a JSON object");
        return AISLE_EFORMAT;
    }
    int rc = parse(s, doc, arg, out, err, errlen);
    json_decref(doc);
    return rc;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* GET base+path with retries; parse the answer, or fall back to the last good
 * one (stale). *fresh points at the result's freshness so it can be marked. */
static int http_get(struct shop *s, const char *path, const char *key, parse_fn parse, const void *arg, void *out,
                    struct shop_fresh *fresh, char *err, size_t errlen)
{
    char url[2048], why[512] = "";
    snprintf(url, sizeof(url), "%s%s", s->base, path);
    for (int attempt = 0; attempt <= s->o.retries; attempt++) {
        if (attempt)
            sleep_ms(s->o.backoff_ms << (attempt - 1));
        buf_reset(&s->body);
        curl_easy_reset(s->curl);
        curl_easy_setopt(s->curl, CURLOPT_URL, url);
        curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, s->headers);
        curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, s->o.timeout_ms);
        curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS, s->o.connect_timeout_ms);
        curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(s->curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(s->curl, CURLOPT_USERAGENT, "aisle/" AISLE_VERSION);
        CURLcode cc = curl_easy_perform(s->curl);
        if (cc != CURLE_OK) {
            seterr(why, sizeof(why), "%s", cc == CURLE_WRITE_ERROR ? "response over the size limit"
                                                                   : curl_easy_strerror(cc));
            continue;
        }
        long status = 0;
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status == 404) {
            cache_drop(s, key);
            seterr(err, errlen, "merchant API: %s: not found", path);
            return AISLE_ENOTFOUND;
        }
        if (status != 200) {
            seterr(why, sizeof(why), "HTTP %ld", status);
            if (status >= 400 && status < 500 && status != 408 && status != 429)
                break; /* our request is wrong: retrying will not help */
            continue;
        }
        if (buf_putc(&s->body, '\0') != 0 || s->body.len == 0) {
            seterr(why, sizeof(why), "response over the size limit");
            continue;
        }
        char perr[512];
        int rc = parse_body(s, s->body.data, parse, arg, out, perr, sizeof(perr));
        if (rc == 0) {
            cache_put(s, key, s->body.data);
            return 0;
        }
        if (rc == AISLE_ENOTFOUND) {
            seterr(err, errlen, "merchant API: %s", perr);
            return rc;
        }
        seterr(why, sizeof(why), "bad answer: %s", perr);
    }
    struct cache_entry *e = cache_find(s, key);
    if (e) {
        char perr[512];
        if (parse_body(s, e->body, parse, arg, out, perr, sizeof(perr)) == 0) {
            fresh->stale = 1;
            fresh->age_s = now_s() - e->fetched;
            time_t t = (time_t)e->fetched;
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(fresh->as_of, sizeof(fresh->as_of), "%Y-%m-%dT%H:%M:%SZ", &tm);
            seterr(err, errlen, "merchant API %s (%s): last-known value from %llds ago", path, why,
                   (long long)fresh->age_s);
            return 0;
        }
    }
    seterr(err, errlen, "merchant API unavailable: %s: %s", path, why);
    return AISLE_EUNAVAIL;
}

static int escape(struct shop *s, const char *in, char *out, size_t n)
{
    char *e = curl_easy_escape(s->curl, in, 0);
    if (!e)
        return AISLE_ENOMEM;
    int ok = strlen(e) < n;
    if (ok)
        strcpy(out, e);
    curl_free(e);
    return ok ? 0 : AISLE_EINVAL;
}

/* ---- the interface ---- */

static int check_id(const char *what, const char *id, char *err, size_t errlen)
{
    if (!id || !*id || strlen(id) >= SHOP_ID_MAX) {
        seterr(err, errlen, "%s: expected an id of 1 to %d bytes", what, SHOP_ID_MAX - 1);
        return AISLE_EINVAL;
    }
    return 0;
}

int shop_offers(struct shop *s, const char *pid, struct shop_offers *out, char *err, size_t errlen)
{
    int rc = check_id("product id", pid, err, errlen);
    if (rc)
        return rc;
    if (s->kind == LOCAL)
        return local_offers(s, pid, out, err, errlen);
    char esc[1024], path[1100], key[1100];
    if ((rc = escape(s, pid, esc, sizeof(esc))))
        return rc;
    snprintf(path, sizeof(path), "/products/%s/offers", esc);
    snprintf(key, sizeof(key), "offers %s", pid);
    struct shop_offers *tmp = malloc(sizeof(*tmp));
    if (!tmp)
        return AISLE_ENOMEM;
    rc = http_get(s, path, key, parse_offers, pid, tmp, &tmp->fresh, err, errlen);
    if (!rc)
        *out = *tmp;
    free(tmp);
    return rc;
}

int shop_delivery(struct shop *s, const char *pid, const char *postcode, struct shop_delivery *out, char *err,
                  size_t errlen)
{
    int rc = check_id("product id", pid, err, errlen);
    if (rc)
        return rc;
    if (!postcode || !postcode_ok(postcode)) {
        seterr(err, errlen, "postcode: \"%.20s\" is not a postcode (2-10 letters, digits, spaces or dashes)",
               postcode ? postcode : "");
        return AISLE_EINVAL;
    }
    if (s->kind == LOCAL) {
        struct shop_offers *of = malloc(sizeof(*of));
        if (!of)
            return AISLE_ENOMEM;
        rc = local_offers(s, pid, of, err, errlen);
        if (!rc)
            delivery_from_offers(of, postcode, out);
        free(of);
        return rc;
    }
    char esc[1024], pc[64], path[1200], key[1200];
    if ((rc = escape(s, pid, esc, sizeof(esc))) || (rc = escape(s, postcode, pc, sizeof(pc))))
        return rc;
    snprintf(path, sizeof(path), "/products/%s/delivery?postcode=%s", esc, pc);
    snprintf(key, sizeof(key), "delivery %s %s", pid, postcode);
    struct delivery_arg a = {pid, postcode};
    struct shop_delivery tmp;
    rc = http_get(s, path, key, parse_delivery, &a, &tmp, &tmp.fresh, err, errlen);
    if (!rc)
        *out = tmp;
    return rc;
}

int shop_order(struct shop *s, const char *oid, struct shop_order *out, char *err, size_t errlen)
{
    int rc = check_id("order id", oid, err, errlen);
    if (rc)
        return rc;
    if (s->kind == LOCAL)
        return local_order(s, oid, out, err, errlen);
    char esc[1024], path[1100], key[1100];
    if ((rc = escape(s, oid, esc, sizeof(esc))))
        return rc;
    snprintf(path, sizeof(path), "/orders/%s", esc);
    snprintf(key, sizeof(key), "order %s", oid);
    struct shop_order *tmp = malloc(sizeof(*tmp));
    if (!tmp)
        return AISLE_ENOMEM;
    rc = http_get(s, path, key, parse_order, oid, tmp, &tmp->fresh, err, errlen);
    if (!rc)
        *out = *tmp;
    free(tmp);
    return rc;
}
