/*
 * demo.c — `aisle demo generate`: the demo store's offers and orders.
 *
 * The demo store's products, reviews and Q&A are real; it has no prices, stock
 * or orders, so this command makes them up, deterministically from a seed, into
 * files whose names say "generated". Offers carry no updated_at, so they are
 * as fresh as the load that brings them in. Prices are log-uniform between $4 and $400
 * ending in .99 or .49; about 1 in 12 products is out of stock; about 1 in 5
 * also has a marketplace seller with a different price and slower delivery.
 */
#include "cli.h"
#include "cmds.h"

#include "core/error.h"
#include "core/lineio.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const char usage_text[] =
    "usage: aisle demo generate [--products F] [--out DIR] [--seed N]\n"
    "\n"
    "Generate the demo store's offers and orders from its products, the same\n"
    "bytes for the same seed: DIR/offers.generated.jsonl.gz and\n"
    "DIR/orders.generated.jsonl.gz.\n"
    "\n"
    "  --products F   products JSONL (default data/demo-store/products.jsonl.gz)\n"
    "  --out DIR      output folder (default data/demo-store)\n"
    "  --seed N       random seed (default 20261125)\n"
    "  -h, --help     this help\n";

static uint64_t rng_state;

static uint64_t next_u64(void)
{
    /* splitmix64: tiny, fast and fully determined by the seed */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double uniform(void)
{
    return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0);
}

static int range(int lo, int hi)
{
    return lo + (int)(next_u64() % (uint64_t)(hi - lo + 1));
}

static void write_line(gzFile f, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (!s || gzputs(f, s) < 0 || gzputc(f, '\n') < 0)
        cli_die("write failed");
    free(s);
    json_decref(obj);
}

static gzFile open_out(const char *dir, const char *name, char *path, size_t n)
{
    snprintf(path, n, "%s/%s", dir, name);
    gzFile f = gzopen(path, "wb9");
    if (!f)
        cli_die("%s: cannot create", path);
    return f;
}

int cmd_demo(int argc, char **argv)
{
    if (cli_wants_help(argc, argv) || argc < 2) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "generate") != 0)
        cli_usage_error("demo", "unknown action '%s' (expected 'generate')", argv[1]);
    static const struct option longopts[] = {
        {"products", required_argument, NULL, 'p'},
        {"out", required_argument, NULL, 'o'},
        {"seed", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    const char *products = "data/demo-store/products.jsonl.gz", *out = "data/demo-store";
    uint64_t seed = 20261125;
    int c;
    opterr = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': products = optarg; break;
        case 'o': out = optarg; break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        default: cli_usage_error("demo", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    rng_state = seed;

    /* Product ids in file order. */
    struct lineio in;
    if (lineio_open(&in, products, 0))
        cli_die("%s: %s", products, in.err);
    char **ids = NULL;
    size_t nids = 0, cap = 0;
    const char *line;
    size_t len;
    int rc;
    while ((rc = lineio_next(&in, &line, &len)) == 0) {
        json_error_t je;
        json_t *o = json_loadb(line, len, 0, &je);
        const char *id = o ? json_string_value(json_object_get(o, "id")) : NULL;
        if (!id)
            cli_die("%s:%llu: no product id", products, (unsigned long long)in.lineno);
        if (nids == cap) {
            cap = cap ? cap * 2 : 1024;
            ids = realloc(ids, cap * sizeof(*ids));
            if (!ids)
                cli_die("out of memory");
        }
        ids[nids++] = strdup(id);
        json_decref(o);
    }
    if (rc != AISLE_EEOF)
        cli_die("%s: %s", products, in.err);
    lineio_close(&in);

    char path[1024];
    gzFile f = open_out(out, "offers.generated.jsonl.gz", path, sizeof(path));
    size_t noffers = 0;
    for (size_t i = 0; i < nids; i++) {
        double price = exp(log(4.0) + uniform() * (log(400.0) - log(4.0)));
        double cents = uniform() < 0.7 ? 0.99 : 0.49;
        price = floor(price) + cents;
        int stock = uniform() < 1.0 / 12 ? 0 : range(1, 250);
        int days = range(1, 5);
        write_line(f, json_pack("{s:s, s:s, s:f, s:s, s:i, s:i}", "product_id", ids[i], "seller",
                                "Aisle Demo Store", "price", price, "currency", "USD", "stock", stock,
                                "delivery_days", days));
        noffers++;
        if (uniform() < 0.2) {
            double mp = floor(price * (0.85 + uniform() * 0.3)) + 0.95;
            write_line(f, json_pack("{s:s, s:s, s:f, s:s, s:i, s:i}", "product_id", ids[i], "seller",
                                    "Marketplace Partner", "price", mp, "currency", "USD", "stock",
                                    range(0, 40), "delivery_days", range(4, 12)));
            noffers++;
        }
    }
    if (gzclose(f) != Z_OK)
        cli_die("%s: write failed", path);
    fprintf(stderr, "%s: %zu offers\n", path, noffers);

    static const char *const flow[] = {"placed", "paid", "packed", "shipped", "out_for_delivery", "delivered"};
    f = open_out(out, "orders.generated.jsonl.gz", path, sizeof(path));
    const int norders = 12;
    for (int k = 0; k < norders; k++) {
        char oid[32], cust[32], at[32];
        snprintf(oid, sizeof(oid), "DEMO-%05d", 10001 + k);
        snprintf(cust, sizeof(cust), "demo-customer-%d", 1 + k % 5);
        json_t *lines = json_array();
        int nl = range(1, 3);
        for (int l = 0; l < nl; l++) {
            double price = floor(exp(log(4.0) + uniform() * (log(200.0) - log(4.0)))) + 0.99;
            json_array_append_new(lines, json_pack("{s:s, s:i, s:f}", "product_id", ids[next_u64() % nids],
                                                   "quantity", range(1, 3), "unit_price", price));
        }
        /* Orders at different stages, one cancelled. */
        json_t *hist = json_array();
        int day = 1 + k * 2, hour = 9 + k % 8;
        int stages = k == 7 ? 2 : 1 + k % 6;
        for (int st = 0; st < stages; st++) {
            snprintf(at, sizeof(at), "2026-10-%02dT%02d:%02d:00Z", day + st, hour, (st * 17) % 60);
            json_array_append_new(hist, json_pack("{s:s, s:s}", "status", flow[st], "at", at));
        }
        if (k == 7) {
            snprintf(at, sizeof(at), "2026-10-%02dT%02d:30:00Z", day + 2, hour);
            json_array_append_new(hist, json_pack("{s:s, s:s}", "status", "cancelled", "at", at));
        }
        snprintf(at, sizeof(at), "2026-10-%02dT%02d:00:00Z", day, hour);
        write_line(f, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "id", oid, "customer", cust, "currency", "USD",
                                "created_at", at, "lines", lines, "status_history", hist));
    }
    if (gzclose(f) != Z_OK)
        cli_die("%s: write failed", path);
    fprintf(stderr, "%s: %d orders\n", path, norders);
    for (size_t i = 0; i < nids; i++)
        free(ids[i]);
    free(ids);
    return 0;
}
