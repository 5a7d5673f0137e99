/* ingest.c — `aisle ingest`: load merchant files into a store. */
#include "cli.h"
#include "cmds.h"
#include "embed.h"

#include "core/error.h"
#include "store/ingest.h"
#include "store/store.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: aisle ingest --db PATH [--products F]... [--reviews F]... [--qa F]...\n"
    "                    [--offers F]... [--orders F]... [--skip-bad] [--map FIELD=COL,...]\n"
    "\n"
    "Load a store's records into the database at PATH (created if missing).\n"
    "Files are JSON Lines, plain or gzip (.gz); products may also be CSV (.csv, .csv.gz).\n"
    "Each file loads in one transaction: a bad record stops the load with\n"
    "'file:line: field: what is wrong' and leaves the database as it was.\n"
    "Records are upserted by id, so loading a file again is harmless; offers can\n"
    "be refreshed on their own (the live price/stock feed). Files load in the\n"
    "order products, reviews, Q&A, offers, orders. Formats: docs/DATA.md.\n"
    "\n"
    "  --db PATH          the store database (SQLite)\n"
    "  --products F       products (JSONL or CSV)\n"
    "  --reviews F        reviews\n"
    "  --qa F             community questions and answers\n"
    "  --offers F         offers: price, currency, stock, delivery days, seller\n"
    "  --orders F         orders with lines and status history\n"
    "  --skip-bad         skip bad records (each reported on stderr) and load the rest\n"
    "  --map SPEC         CSV header mapping, e.g. 'id=index,title=product,\n"
    "                     category=category>sub_category>type,skip=rating';\n"
    "                     unmapped columns become attributes\n"
    "  --max-record N     largest record in bytes (default 1048576)\n"
    "  --encoder PATH     embed new passages with this encoder (default: the\n"
    "                     store's own, else models/encoder-v1.bin); after each\n"
    "                     file, passages without a vector are embedded (hybrid\n"
    "                     search, docs/RETRIEVAL.md)\n"
    "  --no-vectors       do not embed passages\n"
    "  -q, --quiet        no progress line or summary\n"
    "  -h, --help         this help\n";

struct job {
    enum ingest_kind kind;
    const char *path;
};

static void on_progress(void *ctx, uint64_t records, uint64_t done, uint64_t total)
{
    cli_progress_update(ctx, records, done, total);
}

static void on_skip(void *ctx, const char *msg)
{
    cli_progress_end(ctx);
    fprintf(stderr, "aisle ingest: skipped: %s\n", msg);
}

int cmd_ingest(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},       {"products", required_argument, NULL, 'P'},
        {"reviews", required_argument, NULL, 'R'},  {"qa", required_argument, NULL, 'Q'},
        {"offers", required_argument, NULL, 'O'},   {"orders", required_argument, NULL, 'X'},
        {"skip-bad", no_argument, NULL, 's'},       {"map", required_argument, NULL, 'm'},
        {"max-record", required_argument, NULL, 'M'}, {"quiet", no_argument, NULL, 'q'},
        {"encoder", required_argument, NULL, 'E'},  {"no-vectors", no_argument, NULL, 'N'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *encoder = NULL;
    int vectors = 1;
    struct job jobs[64];
    size_t njobs = 0;
    struct ingest_opts o = {.format_csv = -1};
    int quiet = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "qd:", longopts, NULL)) != -1) {
        enum ingest_kind k;
        switch (c) {
        case 'd': db = optarg; continue;
        case 's': o.skip_bad = 1; continue;
        case 'm': o.csv_map = optarg; continue;
        case 'q': quiet = 1; continue;
        case 'E': encoder = optarg; continue;
        case 'N': vectors = 0; continue;
        case 'M': {
            char *end;
            long long n = strtoll(optarg, &end, 10);
            if (*end || n < 1024 || n > (1LL << 30))
                cli_usage_error("ingest", "--max-record: expected bytes from 1024 to 1073741824");
            o.max_line = (size_t)n;
            continue;
        }
        case 'P': k = INGEST_PRODUCTS; break;
        case 'R': k = INGEST_REVIEWS; break;
        case 'Q': k = INGEST_QA; break;
        case 'O': k = INGEST_OFFERS; break;
        case 'X': k = INGEST_ORDERS; break;
        default: cli_usage_error("ingest", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (njobs == sizeof(jobs) / sizeof(jobs[0]))
            cli_usage_error("ingest", "too many files");
        jobs[njobs].kind = k;
        jobs[njobs].path = optarg;
        njobs++;
    }
    if (optind < argc)
        cli_usage_error("ingest", "unexpected argument '%s'", argv[optind]);
    if (!db)
        cli_usage_error("ingest", "--db is required");
    if (!njobs)
        cli_usage_error("ingest", "nothing to load: give --products, --reviews, --qa, --offers or --orders");

    char err[1024];
    struct store *s;
    if (store_open(&s, db, 0, err, sizeof(err)))
        cli_die("%s", err);

    int status = 0;
    /* Dependencies first: reviews, Q&A, offers and orders name products. */
    for (int kind = INGEST_PRODUCTS; kind <= INGEST_ORDERS && !status; kind++) {
        for (size_t i = 0; i < njobs && !status; i++) {
            if ((int)jobs[i].kind != kind)
                continue;
            struct cli_progress prog;
            char label[256];
            snprintf(label, sizeof(label), "%s", jobs[i].path);
            cli_progress_init(&prog, label);
            if (quiet)
                prog.tty = 0;
            o.progress = on_progress;
            o.on_skip = on_skip;
            o.ctx = &prog;
            struct ingest_stats st;
            double t0 = cli_now();
            int rc = ingest_file(s, jobs[i].kind, jobs[i].path, &o, &st, err, sizeof(err));
            cli_progress_end(&prog);
            if (rc) {
                fprintf(stderr, "aisle ingest: %s\n", err);
                fprintf(stderr, "aisle ingest: %s not loaded; the database is unchanged by it\n", jobs[i].path);
                status = 1;
                break;
            }
            double el = cli_now() - t0;
            if (!quiet)
                fprintf(stderr, "%s: %llu %s loaded%s%llu skipped, %.1fs (%.0f records/s)\n", jobs[i].path,
                        (unsigned long long)st.loaded, ingest_kind_name(jobs[i].kind), st.skipped ? ", " : ", ",
                        (unsigned long long)st.skipped, el, el > 0 ? (double)st.loaded / el : 0.0);
            if (st.loaded == 0 && st.skipped > 0) {
                fprintf(stderr, "aisle ingest: %s: every record was bad\n", jobs[i].path);
                status = 1;
            }
            /* The file's new passages get their vectors (the encoder is
             * installed by the first file; later files reuse it). */
            if (vectors && kind <= INGEST_QA && embed_store_vectors(s, encoder, 0, quiet) == 1)
                vectors = 0;
            encoder = NULL;
        }
    }
    store_close(s);
    return status;
}
