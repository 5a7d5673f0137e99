/* shop.c — `aisle shop`: ask the store's live data (offers, delivery, orders),
 * from the local store or the merchant's HTTP API, as the assistant will. */
#include "cli.h"
#include "cmds.h"

#include "core/error.h"
#include "store/shop.h"
#include "store/store.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: aisle shop offers   (--db PATH | --api URL) PRODUCT_ID\n"
    "       aisle shop delivery (--db PATH | --api URL) PRODUCT_ID POSTCODE\n"
    "       aisle shop order    (--db PATH | --api URL) ORDER_ID\n"
    "\n"
    "Ask the store's live data the way the assistant does, and print the answer as\n"
    "one JSON object: offers (price, stock, seller, delivery promise), a delivery\n"
    "estimate to a postcode, or an order's status. With --api, the merchant's HTTP\n"
    "API (docs/STORE_API.md) is called with a timeout and retries; its key is read\n"
    "from the environment variable AISLE_MERCHANT_API_KEY.\n"
    "\n"
    "  --db PATH         the local store database\n"
    "  --api URL         the merchant API's base URL\n"
    "  --timeout MS      per attempt (default 1500)\n"
    "  --retries N       further attempts after a failure (default 2)\n"
    "  -h, --help        this help\n"
    "\n"
    "Exit status: 0 answered (possibly a stale last-known value, marked so),\n"
    "1 not found or unavailable, 2 usage.\n";

static json_t *fresh_json(const struct shop_fresh *f)
{
    return json_pack("{s:s, s:s, s:I, s:b}", "source", f->source, "as_of", f->as_of, "age_s", (json_int_t)f->age_s,
                     "stale", f->stale);
}

static void print(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    if (!s)
        cli_die("out of memory");
    puts(s);
    free(s);
    json_decref(o);
}

int cmd_shop(int argc, char **argv)
{
    if (cli_wants_help(argc, argv) || argc < 2) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},      {"api", required_argument, NULL, 'a'},
        {"timeout", required_argument, NULL, 't'}, {"retries", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL;
    struct shop_http_opts ho = {.retries = 2};
    int c;
    opterr = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'a': ho.base_url = optarg; break;
        case 't': ho.timeout_ms = atol(optarg); break;
        case 'r': ho.retries = atoi(optarg); break;
        default: cli_usage_error("shop", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    int nargs = argc - optind;
    int want = !strcmp(what, "delivery") ? 2 : 1;
    if (strcmp(what, "offers") && strcmp(what, "delivery") && strcmp(what, "order"))
        cli_usage_error("shop", "unknown question '%s' (offers, delivery or order)", what);
    if (nargs != want)
        cli_usage_error("shop", "%s takes %d argument%s", what, want, want > 1 ? "s" : "");
    if (!db == !ho.base_url)
        cli_usage_error("shop", "give exactly one of --db and --api");

    char err[1024] = "";
    struct shop *s;
    int rc;
    if (db) {
        rc = shop_open_local(&s, db, err, sizeof(err));
    } else {
        ho.api_key = getenv("AISLE_MERCHANT_API_KEY");
        rc = shop_open_http(&s, &ho, err, sizeof(err));
    }
    if (rc)
        cli_die("%s", err);

    const char *a1 = argv[optind];
    if (!strcmp(what, "offers")) {
        struct shop_offers of;
        rc = shop_offers(s, a1, &of, err, sizeof(err));
        if (!rc) {
            json_t *arr = json_array();
            for (size_t i = 0; i < of.n; i++) {
                const struct shop_offer *o = &of.v[i];
                int64_t scale = store_currency_scale(o->currency);
                json_array_append_new(arr, json_pack("{s:s, s:f, s:I, s:s, s:I, s:o, s:s}", "seller", o->seller,
                                                     "price", (double)o->price_minor / (double)scale, "price_minor",
                                                     (json_int_t)o->price_minor, "currency", o->currency, "stock",
                                                     (json_int_t)o->stock, "delivery_days",
                                                     o->delivery_days >= 0 ? json_integer(o->delivery_days) : json_null(),
                                                     "updated_at", o->updated_at));
            }
            print(json_pack("{s:s, s:o, s:o}", "product_id", of.product_id, "offers", arr, "fresh",
                            fresh_json(&of.fresh)));
        }
    } else if (!strcmp(what, "delivery")) {
        struct shop_delivery d;
        rc = shop_delivery(s, a1, argv[optind + 1], &d, err, sizeof(err));
        if (!rc)
            print(json_pack("{s:s, s:s, s:b, s:i, s:i, s:s, s:s, s:s, s:o}", "product_id", d.product_id, "postcode",
                            d.postcode, "available", d.available, "days_min", d.days_min, "days_max", d.days_max,
                            "earliest", d.earliest, "latest", d.latest, "seller", d.seller, "fresh",
                            fresh_json(&d.fresh)));
    } else {
        struct shop_order *o = malloc(sizeof(*o));
        if (!o)
            cli_die("out of memory");
        rc = shop_order(s, a1, o, err, sizeof(err));
        if (!rc) {
            json_t *lines = json_array(), *events = json_array();
            for (size_t i = 0; i < o->nlines; i++)
                json_array_append_new(lines, json_pack("{s:s, s:I}", "product_id", o->lines[i].product_id,
                                                       "quantity", (json_int_t)o->lines[i].quantity));
            for (size_t i = 0; i < o->nevents; i++)
                json_array_append_new(events, json_pack("{s:s, s:s}", "status", o->events[i].status, "at",
                                                        o->events[i].at));
            print(json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "id", o->id, "customer", o->customer, "status",
                            o->status, "status_at", o->status_at, "lines", lines, "status_history", events, "fresh",
                            fresh_json(&o->fresh)));
        }
        free(o);
    }
    if (err[0])
        fprintf(stderr, "aisle shop: %s\n", err); /* also for stale answers: say why */
    shop_close(s);
    return rc ? 1 : 0;
}
