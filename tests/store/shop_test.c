/*
 * shop_test.c — live store data: the local backend over a real store, and the
 * merchant HTTP backend against a real local HTTP server (libmicrohttpd) that
 * answers well, slowly, with garbage, with errors, or not at all.
 */
#include "../testutil.h"

#include "core/error.h"
#include "store/ingest.h"
#include "store/shop.h"
#include "store/store.h"

#include <microhttpd.h>
#include <stdatomic.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

Test(shop, business_days_skip_weekends)
{
    char d[11];
    cr_assert_eq(shop_add_business_days("2026-11-27", 1, d), 0); /* a Friday */
    cr_assert_str_eq(d, "2026-11-30");
    cr_assert_eq(shop_add_business_days("2026-11-25", 2, d), 0);
    cr_assert_str_eq(d, "2026-11-27");
    cr_assert_eq(shop_add_business_days("2026-11-25", 0, d), 0);
    cr_assert_str_eq(d, "2026-11-25");
    cr_assert_eq(shop_add_business_days("2026-12-31", 1, d), 0);
    cr_assert_str_eq(d, "2027-01-01");
    cr_assert_eq(shop_add_business_days("not a date", 1, d), AISLE_EINVAL);
}

/* ---- local backend ---- */

static char *local_store(char **dir_out)
{
    char *dir = tu_tmpdir();
    char *db = tu_path(dir, "s.db");
    char *p = tu_path(dir, "p.jsonl"), *o = tu_path(dir, "o.jsonl"), *r = tu_path(dir, "r.jsonl");
    tu_write_str(p, "{\"id\": \"P1\", \"title\": \"Crisper Pan\"}\n{\"id\": \"P2\", \"title\": \"Latch\"}\n"
                    "{\"id\": \"P3\", \"title\": \"Gasket\"}\n");
    tu_write_str(o, "{\"product_id\": \"P1\", \"seller\": \"Store\", \"price\": 56.99, \"currency\": \"USD\","
                    " \"stock\": 0, \"delivery_days\": 1, \"updated_at\": \"2026-11-01T09:00:00Z\"}\n"
                    "{\"product_id\": \"P1\", \"seller\": \"Partner\", \"price\": 59.95, \"currency\": \"USD\","
                    " \"stock\": 4, \"delivery_days\": 6, \"updated_at\": \"2026-11-02T09:00:00Z\"}\n"
                    "{\"product_id\": \"P1\", \"seller\": \"Cheap\", \"price\": 58.00, \"currency\": \"USD\","
                    " \"stock\": 9, \"delivery_days\": 3, \"updated_at\": \"2026-11-03T09:00:00Z\"}\n"
                    "{\"product_id\": \"P2\", \"price\": 9.99, \"currency\": \"USD\", \"stock\": 0}\n");
    tu_write_str(r, "{\"id\": \"O1\", \"customer\": \"c1\", \"currency\": \"USD\", \"lines\": [{\"product_id\":"
                    " \"P1\", \"quantity\": 2, \"unit_price\": 56.99}], \"status_history\": [{\"status\": \"placed\","
                    " \"at\": \"2026-10-01T09:00:00Z\"}, {\"status\": \"shipped\", \"at\": \"2026-10-02T09:00:00Z\"}]}\n");
    char *out;
    cr_assert_eq(tu_run(&out, "%s ingest -q --db %s --products %s --offers %s --orders %s", tu_aisle(), db, p, o, r),
                 0, "%s", out);
    free(out);
    free(p);
    free(o);
    free(r);
    *dir_out = dir;
    return db;
}

Test(shop_local, offers_delivery_and_orders)
{
    char *dir, *db = local_store(&dir), err[512];
    struct shop *s;
    cr_assert_eq(shop_open_local(&s, db, err, sizeof(err)), 0, "%s", err);
    struct shop_offers of;
    cr_assert_eq(shop_offers(s, "P1", &of, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(of.n, 3);
    cr_assert_str_eq(of.v[0].seller, "Cheap", "in stock and cheapest first");
    cr_assert_eq(of.v[0].price_minor, 5800);
    cr_assert_str_eq(of.v[1].seller, "Partner");
    cr_assert_str_eq(of.v[2].seller, "Store", "out of stock last, though cheapest");
    cr_assert_str_eq(of.fresh.source, "local");
    cr_assert_str_eq(of.fresh.as_of, "2026-11-01T09:00:00Z", "as fresh as the oldest offer");
    cr_assert_gt(of.fresh.age_s, 0);
    cr_assert_eq(of.fresh.stale, 0);

    struct shop_delivery d;
    cr_assert_eq(shop_delivery(s, "P1", "10115", &d, err, sizeof(err)), 0, "%s", err);
    cr_assert(d.available);
    cr_assert_eq(d.days_min, 3, "the fastest seller that has stock (not the out-of-stock 1-day one)");
    cr_assert_str_eq(d.seller, "Cheap");
    cr_assert_eq(strlen(d.earliest), 10);
    cr_assert_eq(shop_delivery(s, "P2", "10115", &d, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(d.available, "nothing in stock");
    cr_assert_eq(shop_delivery(s, "P1", "<script>", &d, err, sizeof(err)), AISLE_EINVAL);
    cr_assert(strstr(err, "postcode") != NULL);

    cr_assert_eq(shop_offers(s, "P3", &of, err, sizeof(err)), AISLE_ENOTFOUND);
    cr_assert(strstr(err, "has no offers") != NULL, "%s", err);
    cr_assert_eq(shop_offers(s, "NOPE", &of, err, sizeof(err)), AISLE_ENOTFOUND);
    cr_assert(strstr(err, "no product") != NULL, "%s", err);

    struct shop_order *o = malloc(sizeof(*o));
    cr_assert_eq(shop_order(s, "O1", o, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(o->status, "shipped");
    cr_assert_str_eq(o->status_at, "2026-10-02T09:00:00Z");
    cr_assert_eq(o->nlines, 1);
    cr_assert_eq(o->lines[0].unit_price_minor, 5699);
    cr_assert_eq(o->nevents, 2);
    cr_assert_eq(shop_order(s, "O404", o, err, sizeof(err)), AISLE_ENOTFOUND);
    free(o);
    shop_close(s);
    free(db);
    tu_rmdir(dir);
}

/* ---- merchant backend against a real HTTP server ---- */

enum mode { M_OK, M_SLOW, M_GARBAGE, M_BADDATA, M_500, M_HUGE, M_FLAKY };
static atomic_int mode;
static atomic_int requests;
static atomic_int stopping;
static atomic_int saw_auth;

static const char *OFFERS_OK =
    "{\"product_id\": \"P1\", \"offers\": ["
    "{\"product_id\": \"P1\", \"seller\": \"Partner\", \"price\": 59.95, \"currency\": \"USD\", \"stock\": 4,"
    " \"delivery_days\": 6, \"updated_at\": \"2026-11-20T09:00:00Z\"},"
    "{\"product_id\": \"P1\", \"seller\": \"Store\", \"price\": \"56.99\", \"currency\": \"USD\", \"stock\": 7,"
    " \"delivery_days\": 2, \"updated_at\": \"2026-11-21T09:00:00Z\"}]}";
static const char *DELIVERY_OK = "{\"product_id\": \"P1\", \"postcode\": \"10115\", \"available\": true,"
                                 " \"days_min\": 1, \"days_max\": 3, \"seller\": \"Store\"}";
static const char *ORDER_OK =
    "{\"id\": \"O 1/x\", \"customer\": \"c1\", \"currency\": \"USD\", \"lines\": [{\"product_id\": \"P1\","
    " \"quantity\": 1}], \"status_history\": [{\"status\": \"placed\", \"at\": \"2026-10-01T09:00:00Z\"},"
    " {\"status\": \"out_for_delivery\", \"at\": \"2026-10-03T07:00:00Z\"}]}";

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **state)
{
    (void)cls, (void)method, (void)version, (void)upload, (void)upload_size;
    if (!*state) { /* first call: headers only */
        *state = (void *)1;
        return MHD_YES;
    }
    int n = atomic_fetch_add(&requests, 1);
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (auth && !strcmp(auth, "Bearer s3cret"))
        atomic_store(&saw_auth, 1);
    int m = atomic_load(&mode);
    const char *body = NULL;
    unsigned status = 200;
    char *huge = NULL;
    if (m == M_SLOW) {
        for (int i = 0; i < 300 && !atomic_load(&stopping); i++)
            usleep(10000); /* 3 s, far over the client's timeout */
    }
    if (m == M_GARBAGE) {
        body = "<html>we are down for maintenance</html>";
    } else if (m == M_BADDATA) {
        body = "{\"product_id\": \"P1\", \"offers\": [{\"product_id\": \"P1\", \"price\": \"abc\", \"currency\": "
               "\"USD\", \"stock\": 1}]}";
    } else if (m == M_500 || (m == M_FLAKY && n == 0)) {
        status = 500;
        body = "{\"error\": \"boom\"}";
    } else if (m == M_HUGE) {
        huge = malloc(5u << 20);
        memset(huge, ' ', 5u << 20);
        huge[0] = '{';
        huge[(5u << 20) - 1] = '}';
    } else if (!strcmp(url, "/api/products/P1/offers")) {
        body = OFFERS_OK;
    } else if (!strcmp(url, "/api/products/P1/delivery")) {
        const char *pc = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "postcode");
        body = pc && !strcmp(pc, "10115") ? DELIVERY_OK : "{\"available\": false}";
    } else if (!strcmp(url, "/api/orders/O 1/x")) { /* the id arrives URL-decoded */
        body = ORDER_OK;
    } else {
        status = 404;
        body = "{\"error\": \"not found\"}";
    }
    struct MHD_Response *r = huge ? MHD_create_response_from_buffer(5u << 20, huge, MHD_RESPMEM_MUST_FREE)
                                  : MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static struct MHD_Daemon *start_server(int *port)
{
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                                            NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    cr_assert_not_null(d, "could not start the test HTTP server");
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *port = info->port;
    return d;
}

static struct shop *merchant(int port)
{
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/", port);
    struct shop_http_opts o = {.base_url = url, .api_key = "s3cret", .timeout_ms = 300, .connect_timeout_ms = 200,
                               .retries = 2, .backoff_ms = 20};
    struct shop *s;
    cr_assert_eq(shop_open_http(&s, &o, err, sizeof(err)), 0, "%s", err);
    return s;
}

Test(shop_http, answers_validated_and_fresh)
{
    int port;
    atomic_store(&mode, M_OK);
    atomic_store(&saw_auth, 0);
    struct MHD_Daemon *d = start_server(&port);
    struct shop *s = merchant(port);
    char err[512];
    struct shop_offers of;
    cr_assert_eq(shop_offers(s, "P1", &of, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(of.n, 2);
    cr_assert_str_eq(of.v[0].seller, "Store", "cheapest in stock first");
    cr_assert_eq(of.v[0].price_minor, 5699, "decimal strings are exact");
    cr_assert_str_eq(of.fresh.source, "merchant");
    cr_assert_eq(of.fresh.stale, 0);
    cr_assert(atomic_load(&saw_auth), "the API key is sent as a bearer token");

    struct shop_delivery dl;
    cr_assert_eq(shop_delivery(s, "P1", "10115", &dl, err, sizeof(err)), 0, "%s", err);
    cr_assert(dl.available);
    cr_assert_eq(dl.days_min, 1);
    cr_assert_eq(dl.days_max, 3);
    struct shop_order *o = malloc(sizeof(*o));
    cr_assert_eq(shop_order(s, "O 1/x", o, err, sizeof(err)), 0, "ids are URL-escaped: %s", err);
    cr_assert_str_eq(o->status, "out_for_delivery");
    cr_assert_eq(shop_order(s, "O2", o, err, sizeof(err)), AISLE_ENOTFOUND, "404 is an answer: %s", err);
    cr_assert_eq(shop_offers(s, "P9", &of, err, sizeof(err)), AISLE_ENOTFOUND);
    free(o);
    shop_close(s);
    MHD_stop_daemon(d);
}

Test(shop_http, failures_give_stale_values_or_unavailable_never_a_hang, .timeout = 60)
{
    int port;
    atomic_store(&mode, M_OK);
    atomic_store(&stopping, 0);
    struct MHD_Daemon *d = start_server(&port);
    struct shop *s = merchant(port);
    char err[512];
    struct shop_offers of;
    cr_assert_eq(shop_offers(s, "P1", &of, err, sizeof(err)), 0, "%s", err); /* remembered */

    const int modes[] = {M_GARBAGE, M_BADDATA, M_500, M_SLOW, M_HUGE};
    const char *names[] = {"garbage", "bad data", "HTTP 500", "slow", "huge"};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        atomic_store(&mode, modes[i]);
        atomic_store(&requests, 0);
        memset(&of, 0, sizeof(of));
        double t0 = now_ms();
        int rc = shop_offers(s, "P1", &of, err, sizeof(err));
        double el = now_ms() - t0;
        cr_assert_eq(rc, 0, "%s: a last-known value: %s", names[i], err);
        cr_assert_eq(of.fresh.stale, 1, "%s: marked stale", names[i]);
        cr_assert_geq(of.fresh.age_s, 0);
        cr_assert_eq(of.v[0].price_minor, 5699, "%s: the last good price", names[i]);
        cr_assert_eq(atomic_load(&requests), 3, "%s: 1 try + 2 retries (got %d)", names[i], atomic_load(&requests));
        cr_assert_lt(el, 2500, "%s: bounded by timeout x attempts, took %.0f ms", names[i], el);
        /* Never asked before: nothing to fall back on. */
        struct shop_delivery dl;
        rc = shop_delivery(s, "P1", "10115", &dl, err, sizeof(err));
        cr_assert_eq(rc, AISLE_EUNAVAIL, "%s: unavailable, got %d (%s)", names[i], rc, err);
        cr_assert(strstr(err, "unavailable") != NULL, "%s", err);
    }

    /* A retry recovers from one failure. */
    atomic_store(&mode, M_FLAKY);
    atomic_store(&requests, 0);
    cr_assert_eq(shop_offers(s, "P1", &of, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(of.fresh.stale, 0, "the second attempt answered");
    cr_assert_eq(atomic_load(&requests), 2);

    /* The server goes away entirely: connection refused. */
    atomic_store(&stopping, 1);
    MHD_stop_daemon(d);
    double t0 = now_ms();
    cr_assert_eq(shop_offers(s, "P1", &of, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(of.fresh.stale, 1);
    cr_assert(strstr(err, "last-known") != NULL, "the message says so: %s", err);
    struct shop_order *o = malloc(sizeof(*o));
    cr_assert_eq(shop_order(s, "O 1/x", o, err, sizeof(err)), AISLE_EUNAVAIL);
    free(o);
    cr_assert_lt(now_ms() - t0, 2500);
    shop_close(s);
}

Test(shop_http, rejects_bad_configuration)
{
    struct shop *s;
    char err[256];
    struct shop_http_opts o = {.base_url = "ftp://example"};
    cr_assert_eq(shop_open_http(&s, &o, err, sizeof(err)), AISLE_EINVAL);
    o.base_url = NULL;
    cr_assert_eq(shop_open_http(&s, &o, err, sizeof(err)), AISLE_EINVAL);
}
