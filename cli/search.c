/* search.c — `aisle search`: hybrid (BM25 + dense + rerank) or BM25 search over
 * a store, one-shot or interactive. */
#include "cli.h"
#include "cmds.h"

#include "core/buf.h"
#include "core/error.h"
#include "retrieval/hybrid.h"
#include "retrieval/lexical.h"
#include "store/store.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: aisle search --db PATH [--source products|reviews|qa|all] [--product ID]\n"
    "                    [-k N] [--json] [--hybrid | --bm25] [QUERY...]\n"
    "\n"
    "Search a store's evidence passages (product titles, bullets, attributes,\n"
    "description, reviews, Q&A answers). When the store has passage vectors\n"
    "(aisle ingest makes them; aisle embed index rebuilds), the search is hybrid:\n"
    "BM25 and dense candidates per source, fused by reciprocal rank, reranked\n"
    "(docs/RETRIEVAL.md); otherwise BM25 alone. Any text is a valid query:\n"
    "quotes, '-', '*' and AND are read as words. Without a QUERY, reads one\n"
    "query per line from standard input (an interactive prompt on a terminal).\n"
    "\n"
    "  --db PATH        the store database\n"
    "  --source S       products, reviews, qa or all (default all)\n"
    "  --product ID     only this product's passages\n"
    "  -k N             number of results (default 10, at most 1000)\n"
    "  --hybrid         hybrid search (the default when the store has vectors;\n"
    "                   an error when it has none)\n"
    "  --bm25           BM25 alone (the default for a store without vectors)\n"
    "  --json           one JSON object per line, best first:\n"
    "                   {\"id\",\"source\",\"product_id\",\"text\",\"score\"}\n"
    "  -h, --help       this help\n";

struct opts {
    struct lex_query q;
    int json;
    struct hybrid *hy; /* NULL: BM25 alone */
};

static int print_hits(struct store *s, struct opts *o, const char *text, int interactive)
{
    struct lex_hit *hits;
    size_t n;
    char err[512];
    o->q.text = text;
    if (o->hy ? hybrid_search(o->hy, &o->q, &hits, &n, err, sizeof(err))
              : lex_search(s, &o->q, &hits, &n, err, sizeof(err))) {
        fprintf(stderr, "aisle search: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        struct lex_hit *h = &hits[i];
        if (o->json) {
            json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:f}", "id", h->id, "source", h->source, "product_id",
                                    h->product_id, "text", h->text, "score", (double)((long long)(h->score * 1e4 + 0.5)) / 1e4);
            char *line = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
            if (!line) {
                json_decref(obj);
                lex_hits_free(hits, n);
                fprintf(stderr, "aisle search: out of memory\n");
                return 1;
            }
            puts(line);
            free(line);
            json_decref(obj);
        } else {
            printf("%2zu. %-11s %s  %.2f  %.70s\n", i + 1, h->source, h->product_id, h->score, h->title);
            printf("    %.300s%s\n", h->text, strlen(h->text) > 300 ? "..." : "");
        }
    }
    if (!n && !o->json)
        printf(interactive ? "no results\n" : "");
    lex_hits_free(hits, n);
    fflush(stdout);
    return 0;
}

int cmd_search(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},      {"source", required_argument, NULL, 's'},
        {"product", required_argument, NULL, 'p'}, {"json", no_argument, NULL, 'j'},
        {"hybrid", no_argument, NULL, 'H'},        {"bm25", no_argument, NULL, 'B'},
        {NULL, 0, NULL, 0},
    };
    struct opts o = {.q = {.k = 10}};
    const char *db = NULL;
    int c, mode = 0; /* 0 auto, 1 hybrid, 2 BM25 */
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+k:d:", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'p': o.q.product_id = optarg; break;
        case 'j': o.json = 1; break;
        case 'H': mode = 1; break;
        case 'B': mode = 2; break;
        case 's':
            if (!strcmp(optarg, "products"))
                o.q.sources = LEX_PRODUCTS;
            else if (!strcmp(optarg, "reviews"))
                o.q.sources = LEX_REVIEWS;
            else if (!strcmp(optarg, "qa"))
                o.q.sources = LEX_QA;
            else if (!strcmp(optarg, "all"))
                o.q.sources = LEX_ALL;
            else
                cli_usage_error("search", "--source: expected products, reviews, qa or all, not '%s'", optarg);
            break;
        case 'k': {
            char *end;
            long k = strtol(optarg, &end, 10);
            if (*end || k < 1 || k > LEX_MAX_K)
                cli_usage_error("search", "-k: expected a number from 1 to %d", LEX_MAX_K);
            o.q.k = (size_t)k;
            break;
        }
        default: cli_usage_error("search", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!db)
        cli_usage_error("search", "--db is required");
    char err[1024];
    struct store *s;
    if (store_open(&s, db, STORE_READONLY, err, sizeof(err)))
        cli_die("%s", err);
    if (mode != 2) {
        int rc = hybrid_open(&o.hy, s, NULL, err, sizeof(err));
        if (rc && (mode == 1 || rc != AISLE_ENOTFOUND))
            cli_die("%s", err);
    }

    int status = 0;
    if (optind < argc) {
        struct buf q;
        buf_init(&q, 0);
        for (int i = optind; i < argc; i++)
            if ((i > optind && buf_putc(&q, ' ')) || buf_puts(&q, argv[i]))
                cli_die("out of memory");
        status = print_hits(s, &o, q.data, 0);
        buf_release(&q);
    } else {
        int tty = isatty(STDIN_FILENO);
        if (tty) {
            int64_t np = 0, nr = 0, nq = 0;
            store_count(s, "products", &np);
            store_count(s, "reviews", &nr);
            store_count(s, "questions", &nq);
            printf("Aisle search over %s: %lld products, %lld reviews, %lld questions.\n"
                   "Type a question (e.g. \"will this crisper drawer fit my frigidaire\"); Ctrl-D to quit.\n",
                   db, (long long)np, (long long)nr, (long long)nq);
        }
        char *line = NULL;
        size_t cap = 0;
        for (;;) {
            if (tty) {
                printf("search> ");
                fflush(stdout);
            }
            ssize_t len = getline(&line, &cap, stdin);
            if (len < 0)
                break;
            while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                line[--len] = '\0';
            if (!len)
                continue;
            if (tty && (!strcmp(line, "quit") || !strcmp(line, "exit")))
                break;
            status |= print_hits(s, &o, line, tty);
        }
        free(line);
        if (tty)
            printf("\n");
    }
    hybrid_free(o.hy);
    store_close(s);
    return status;
}
