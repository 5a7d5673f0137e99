/*
 * corpus.c — `aisle corpus build`: a store's catalog, reviews and Q&A plus
 * JSON Lines text files, tokenized into per-source token shards with a
 * held-out validation shard per source and a manifest (src/train/corpus.h).
 *
 * Under mpirun every rank reads every input, keeps the documents
 * i % size == rank of each source and writes its own shards; rank 0 writes
 * the manifest after a barrier. Alone it is one process (MPI untouched).
 */
#include "cli.h"
#include "cmds.h"

#include "core/error.h"
#include "gguf/gguf.h"
#include "store/doctext.h"
#include "store/store.h"
#include "tok/tok.h"
#include "train/corpus.h"
#include "train/dist.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
    "usage: aisle corpus build --tokenizer TOK.gguf --out DIR [--db STORE.db] [--text NAME=FILE]...\n"
    "                          [--val-frac F] [--seed N] [--threads N]\n"
    "\n"
    "Turn a store and text files into token shards for 'aisle train': one\n"
    "document per product (source 'catalog': title, brand, category, bullets,\n"
    "attributes, description), per review ('reviews') and per question with its\n"
    "answers ('qa'), plus every --text file as documents of source NAME (a new\n"
    "source, or one of the three to add to it). Each source gets DIR/NAME.train.tok\n"
    "and a held-out DIR/NAME.val.tok (documents chosen by a hash of seed, source\n"
    "and index, so the split is the same for a seed on any number of processes),\n"
    "DIR/tokenizer.gguf and DIR/manifest.json (sources, documents, tokens,\n"
    "tokenizer hash, seed). Documents end with the tokenizer's EOS.\n"
    "\n"
    "Text files are JSON Lines, plain or gzip: one object per line whose string\n"
    "member \"text\" is a document. scripts/corpus-text.py makes them from the\n"
    "sets in shared/data whose licenses allow training (docs/TRAIN.md).\n"
    "\n"
    "Under 'mpirun -np N aisle corpus build ...' each rank tokenizes every Nth\n"
    "document and writes NAME.{train,val}.RANK.tok; rank 0 writes the manifest.\n"
    "\n"
    "  --tokenizer FILE  a GGUF file with a tokenizer (aisle tokenizer train)\n"
    "  --out DIR         output directory (created if missing)\n"
    "  --db PATH         a store database (aisle ingest)\n"
    "  --text NAME=FILE  a JSON Lines text file for source NAME ([a-z0-9_-]; repeatable)\n"
    "  --val-frac F      fraction of each source's documents held out (default 0.01)\n"
    "  --seed N          seed of the held-out choice (default 1)\n"
    "  --threads N       tokenizing threads (default: all CPUs)\n"
    "  -h, --help        this help\n";

#define MAX_TEXT 64

struct run {
    struct corpus_builder *b;
    const char *source;
    struct cli_progress prog;
    uint64_t total; /* documents expected from the store, for the ETA */
    struct dist *d;
    char err[1024];
};

static int add_doc(void *ctx, const char *text, size_t len)
{
    struct run *r = ctx;
    int rc = corpus_builder_add(r->b, r->source, text, len, r->err, sizeof r->err);
    uint64_t n = corpus_builder_docs(r->b);
    if (r->d->rank == 0 && (n & 255) == 0)
        cli_progress_update(&r->prog, n, n, r->total);
    return rc;
}

static void die(struct run *r, const char *fmt, const char *what)
{
    fprintf(stderr, "aisle corpus: ");
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    dist_abort(r->d, 1);
    exit(1);
}

static int build(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"tokenizer", required_argument, NULL, 'k'}, {"out", required_argument, NULL, 'o'},
        {"db", required_argument, NULL, 'd'},        {"text", required_argument, NULL, 'x'},
        {"val-frac", required_argument, NULL, 'v'},  {"seed", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'},   {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *tok_path = NULL, *out = NULL, *db = NULL;
    char *text_name[MAX_TEXT], *text_file[MAX_TEXT];
    int n_text = 0, c, threads = 0;
    double val_frac = 0.01;
    unsigned long long seed = 1;
    char *end;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k': tok_path = optarg; break;
        case 'o': out = optarg; break;
        case 'd': db = optarg; break;
        case 'x': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1])
                cli_usage_error("corpus", "--text: expected NAME=FILE, not '%s'", optarg);
            if (n_text == MAX_TEXT)
                cli_usage_error("corpus", "at most %d --text files", MAX_TEXT);
            *eq = 0;
            if (!corpus_name_ok(optarg))
                cli_usage_error("corpus", "--text: source name '%s' must be 1-%d of [a-z0-9_-]", optarg,
                                CORPUS_MAX_NAME - 1);
            text_name[n_text] = optarg;
            text_file[n_text++] = eq + 1;
            break;
        }
        case 'v':
            val_frac = strtod(optarg, &end);
            if (*end || !(val_frac >= 0 && val_frac < 1))
                cli_usage_error("corpus", "--val-frac: expected a number in [0, 1), not '%s'", optarg);
            break;
        case 's':
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (*end || errno || optarg[0] == '-')
                cli_usage_error("corpus", "--seed: expected a non-negative integer, not '%s'", optarg);
            break;
        case 't':
            threads = (int)strtol(optarg, &end, 10);
            if (*end || threads < 1 || threads > 1024)
                cli_usage_error("corpus", "--threads: expected 1..1024, not '%s'", optarg);
            break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: cli_usage_error("corpus", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        cli_usage_error("corpus", "unexpected argument '%s'", argv[optind]);
    if (!tok_path)
        cli_usage_error("corpus", "--tokenizer is required");
    if (!out)
        cli_usage_error("corpus", "--out is required");
    if (!db && !n_text)
        cli_usage_error("corpus", "no input: give --db and/or --text");

    struct dist d;
    struct run r = {.d = &d};
    if (dist_init(&d, r.err, sizeof r.err))
        cli_die("%s", r.err);
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        die(&r, "%s", out);

    struct gguf *g;
    struct tok *t;
    if (gguf_open(&g, tok_path, r.err, sizeof r.err) || tok_load_gguf(&t, g, r.err, sizeof r.err))
        die(&r, "%s", r.err);
    struct corpus_opts o = {out, val_frac, seed, threads, d.rank, d.size};
    if (corpus_builder_new(&r.b, &o, t, r.err, sizeof r.err))
        die(&r, "%s", r.err);

    /* Declare every source first, so every rank has every file. */
    const char *names[CORPUS_MAX_SOURCES];
    int n_names = 0;
    static const char *const store_src[3] = {"catalog", "reviews", "qa"};
    for (int i = 0; i < 3 && db; i++)
        names[n_names++] = store_src[i];
    for (int i = 0; i < n_text; i++) {
        int seen = 0;
        for (int j = 0; j < n_names; j++)
            seen |= !strcmp(names[j], text_name[i]);
        if (!seen) {
            if (n_names == CORPUS_MAX_SOURCES)
                die(&r, "more than %s sources", "32");
            names[n_names++] = text_name[i];
        }
    }
    for (int i = 0; i < n_names; i++)
        if (corpus_builder_source(r.b, names[i], r.err, sizeof r.err))
            die(&r, "%s", r.err);

    double t0 = cli_now();
    cli_progress_init(&r.prog, "documents");
    if (d.rank != 0)
        r.prog.tty = 0;
    if (db) {
        struct store *s;
        char serr[512];
        if (store_open(&s, db, STORE_READONLY, serr, sizeof serr))
            die(&r, "%s", serr);
        for (int k = 0; k < 3; k++) {
            int64_t n;
            if (store_docs_count(s, (enum store_doc_kind)k, &n, r.err, sizeof r.err))
                die(&r, "%s", r.err);
            r.total += (uint64_t)n;
        }
        for (int k = 0; k < 3; k++) {
            r.source = store_src[k];
            int rc = store_docs_each(s, (enum store_doc_kind)k, add_doc, &r, r.err, sizeof r.err);
            if (rc)
                die(&r, "%s", r.err);
        }
        store_close(s);
    }
    for (int i = 0; i < n_text; i++) {
        r.source = text_name[i];
        r.total = 0; /* unknown from here on */
        if (corpus_read_text(text_file[i], add_doc, &r, r.err, sizeof r.err))
            die(&r, "%s", r.err);
    }
    if (corpus_builder_finish(r.b, r.err, sizeof r.err))
        die(&r, "%s", r.err);
    cli_progress_end(&r.prog);
    uint64_t docs = corpus_builder_docs(r.b);
    corpus_builder_free(r.b);
    if (dist_barrier(&d))
        die(&r, "%s", "MPI barrier failed");
    if (d.rank == 0) {
        if (corpus_write_manifest(out, names, n_names, d.size, seed, val_frac, tok_path, r.err, sizeof r.err))
            die(&r, "%s", r.err);
        struct corpus_manifest *m;
        if (corpus_manifest_load(&m, out, r.err, sizeof r.err))
            die(&r, "%s", r.err);
        double dt = cli_now() - t0;
        uint64_t tokens = 0;
        for (int i = 0; i < m->n_sources; i++) {
            const struct corpus_source *s = &m->sources[i];
            printf("%-10s train %8llu docs %11llu tokens   val %6llu docs %9llu tokens\n", s->name,
                   (unsigned long long)s->train.docs, (unsigned long long)s->train.tokens,
                   (unsigned long long)s->val.docs, (unsigned long long)s->val.tokens);
            tokens += s->train.tokens + s->val.tokens;
        }
        printf("wrote %s: %llu documents, %llu tokens in %.1f s (%.0f tokens/s, %d process%s)\n", out,
               (unsigned long long)docs, (unsigned long long)tokens, dt, dt > 0 ? (double)tokens / dt : 0.0,
               d.size, d.size == 1 ? "" : "es");
        corpus_manifest_free(m);
    }
    tok_free(t);
    gguf_close(g);
    dist_finalize(&d);
    return 0;
}

int cmd_corpus(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "build"))
        return build(argc - 1, argv + 1);
    cli_usage_error("corpus", "unknown subcommand '%s' (want build)", argv[1]);
}
