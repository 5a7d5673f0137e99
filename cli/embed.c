/* embed.c — `aisle embed train|index`: train Aisle's dense encoder; embed a
 * store's passages with it. */
#include "cli.h"
#include "cmds.h"
#include "embed.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/hset.h"
#include "core/lineio.h"
#include "retrieval/dense.h"
#include "retrieval/encoder.h"
#include "retrieval/eval.h"

#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: aisle embed index --db PATH [--encoder PATH]\n"
    "       aisle embed train [--data-dir DIR] [--out PATH] [--epochs N] [--dim D]\n"
    "                         [--buckets N] [--seed N] [--lr X]\n"
    "\n"
    "Train Aisle's dense retrieval encoder (hashed word/bigram/char-trigram\n"
    "embedding bag, docs/RETRIEVAL.md) contrastively on question <-> evidence\n"
    "pairs from the shared data: hetPQA answer_generation train (question,\n"
    "evidence candidate), semiPQA data-to-text train (attribute, sentence),\n"
    "mcauley-amazon-qa and the demo store's Q&A (question, answer). Pairs whose\n"
    "question is also an evaluation question (hetPQA evidence_ranking dev,\n"
    "semiPQA attribute_ranking dev/testseen) are removed and counted.\n"
    "\n"
    "  --data-dir DIR   the shared data (default ../shared/data)\n"
    "  --out PATH       the encoder file to write (default models/encoder-v1.bin)\n"
    "  --epochs N       passes over the pairs (default 4)\n"
    "  --dim D          embedding dimension (default 128)\n"
    "  --buckets N      hash buckets, a power of two (default 16384)\n"
    "  --seed N         initial weights and shuffling (default 1)\n"
    "  --lr X           AdamW learning rate (default 0.01)\n"
    "  -h, --help       this help\n"
    "\n"
    "index: embed every passage of the store that has no vector yet (aisle\n"
    "ingest does this after each file). With --encoder, that encoder is stored\n"
    "in the database first and, when it differs from the stored one, all\n"
    "vectors are rebuilt with it. Default encoder: $AISLE_ENCODER, else\n"
    "models/encoder-v1.bin (under $AISLE_ROOT, the working directory, or next\n"
    "to the program's directory).\n"
    "\n"
    "  --db PATH        the store database\n"
    "  --encoder PATH   the encoder file to install\n"
    "  -q, --quiet      no progress line or summary\n";

struct pairs {
    char **a, **b;
    size_t n, cap;
    size_t dropped; /* overlapping an evaluation question */
};

static void pairs_free(struct pairs *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->a[i]);
        free(p->b[i]);
    }
    free(p->a);
    free(p->b);
}

/* Lower-cased letters and digits, single spaces: how questions are compared. */
static char *norm_question(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *r = malloc(n + 1);
    if (!r)
        cli_die("out of memory");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c >= 0x80)
            r[o++] = (char)tolower(c);
        else if (o && r[o - 1] != ' ')
            r[o++] = ' ';
    }
    while (o && r[o - 1] == ' ')
        o--;
    r[o] = '\0';
    return r;
}

static void add_pair(struct pairs *p, const struct hset *eval_q, const char *a, const char *b)
{
    if (!*a || !*b)
        return;
    char *nq = norm_question(a);
    uint64_t v;
    int overlap = hset_get(eval_q, nq, &v);
    free(nq);
    if (overlap) {
        p->dropped++;
        return;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 1024;
        p->a = realloc(p->a, p->cap * sizeof(char *));
        p->b = realloc(p->b, p->cap * sizeof(char *));
        if (!p->a || !p->b)
            cli_die("out of memory");
    }
    p->a[p->n] = strdup(a);
    p->b[p->n] = strdup(b);
    if (!p->a[p->n] || !p->b[p->n])
        cli_die("out of memory");
    p->n++;
}

static char *join(const char *dir, const char *rel)
{
    struct buf b;
    buf_init(&b, 0);
    if (buf_printf(&b, "%s/%s", dir, rel))
        cli_die("out of memory");
    return buf_detach(&b);
}

static void from_table(struct pairs *p, const struct hset *eval_q, const char *dir, const char *rel,
                       const char *ca, const char *cb)
{
    char *path = join(dir, rel), err[512];
    struct eval_table t;
    if (eval_table_read(&t, path, err, sizeof(err)))
        cli_die("%s", err);
    int ia = eval_table_col(&t, ca), ib = eval_table_col(&t, cb);
    if (ia < 0 || ib < 0)
        cli_die("%s: no column '%s'", path, ia < 0 ? ca : cb);
    size_t before = p->n;
    for (size_t i = 0; i < t.nrows; i++)
        add_pair(p, eval_q, t.cells[i * t.ncols + ia], t.cells[i * t.ncols + ib]);
    fprintf(stderr, "  %-52s %6zu pairs\n", rel, p->n - before);
    eval_table_release(&t);
    free(path);
}

static void from_jsonl(struct pairs *p, const struct hset *eval_q, const char *dir, const char *rel)
{
    char *path = join(dir, rel);
    struct lineio io;
    if (lineio_open(&io, path, 0))
        cli_die("%s: %s", path, io.err);
    const char *line;
    size_t len, before = p->n;
    int rc;
    while ((rc = lineio_next(&io, &line, &len)) == 0) {
        json_t *o = json_loadb(line, len, 0, NULL);
        const char *q = json_string_value(json_object_get(o, "question"));
        const char *a = json_string_value(json_object_get(o, "answer"));
        if (q && a)
            add_pair(p, eval_q, q, a);
        json_decref(o);
    }
    if (rc != AISLE_EEOF)
        cli_die("%s:%llu: %s", path, (unsigned long long)io.lineno, io.err);
    lineio_close(&io);
    fprintf(stderr, "  %-52s %6zu pairs\n", rel, p->n - before);
    free(path);
}

static const char *const eval_files[] = {
    "contextual-pqa/hetPQA/evidence_ranking/dev.csv.gz",
    "contextual-pqa/semiPQA/attribute_ranking/dev.csv.gz",
    "contextual-pqa/semiPQA/attribute_ranking/testseen.csv.gz",
};

static void eval_questions(struct hset *h, const char *dir)
{
    for (size_t f = 0; f < sizeof(eval_files) / sizeof(eval_files[0]); f++) {
        char *path = join(dir, eval_files[f]), err[512];
        struct eval_set s;
        if (eval_set_read(&s, path, err, sizeof(err)))
            cli_die("%s", err);
        for (size_t q = 0; q < s.nq; q++) {
            char *nq = norm_question(s.q[q].question);
            if (hset_put(h, nq, 1) < 0)
                cli_die("out of memory");
            free(nq);
        }
        eval_set_release(&s);
        free(path);
    }
}

struct train_progress {
    struct cli_progress bar;
    int last_report;
};

static void on_step(void *ctx, int step, int nsteps, float loss)
{
    struct train_progress *tp = ctx;
    cli_progress_update(&tp->bar, (uint64_t)step, (uint64_t)step, (uint64_t)nsteps);
    if (step * 10 / nsteps != tp->last_report) {
        tp->last_report = step * 10 / nsteps;
        cli_progress_end(&tp->bar);
        fprintf(stderr, "  step %5d/%d  loss %.4f\n", step, nsteps, (double)loss);
    }
}

static long num_arg(const char *opt, const char *v, long lo, long hi)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < lo || x > hi)
        cli_usage_error("embed", "%s: expected a number from %ld to %ld", opt, lo, hi);
    return x;
}

static int embed_train(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data-dir", required_argument, NULL, 'd'}, {"out", required_argument, NULL, 'o'},
        {"epochs", required_argument, NULL, 'e'},   {"dim", required_argument, NULL, 'D'},
        {"buckets", required_argument, NULL, 'b'},  {"seed", required_argument, NULL, 's'},
        {"lr", required_argument, NULL, 'l'},       {NULL, 0, NULL, 0},
    };
    const char *dir = "../shared/data", *out = "models/encoder-v1.bin";
    struct enc_train_opts to = {.epochs = 4, .batch = 128, .lr = 0.01f, .weight_decay = 1e-4f, .tau = 0.05f, .seed = 1};
    int D = 128;
    long nb = 16384;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'o': out = optarg; break;
        case 'e': to.epochs = (int)num_arg("--epochs", optarg, 1, 1000); break;
        case 'D': D = (int)num_arg("--dim", optarg, ENC_MIN_DIM, ENC_MAX_DIM); break;
        case 'b': nb = num_arg("--buckets", optarg, ENC_MIN_BUCKETS, ENC_MAX_BUCKETS); break;
        case 's': to.seed = (uint64_t)num_arg("--seed", optarg, 1, 1L << 40); break;
        case 'l': {
            char *end;
            to.lr = strtof(optarg, &end);
            if (*end || !(to.lr > 0 && to.lr < 1))
                cli_usage_error("embed", "--lr: expected a number in (0, 1)");
            break;
        }
        default: cli_usage_error("embed", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        cli_usage_error("embed", "unexpected argument '%s'", argv[optind]);
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
        cli_die("data directory %s not found (give --data-dir: the shared data with contextual-pqa/, "
                "mcauley-amazon-qa/, demo-store/)",
                dir);
    double t0 = cli_now();
    struct hset eval_q;
    hset_init(&eval_q);
    eval_questions(&eval_q, dir);
    fprintf(stderr, "aisle embed train: %zu distinct evaluation questions held out\n", eval_q.len);
    struct pairs p = {0};
    from_table(&p, &eval_q, dir, "contextual-pqa/hetPQA/answer_generation/train.csv.gz", "question", "candidate");
    from_table(&p, &eval_q, dir, "contextual-pqa/semiPQA/data-to-text/train.csv.gz", "data", "text");
    from_jsonl(&p, &eval_q, dir, "mcauley-amazon-qa/qa_Appliances.jsonl.gz");
    from_jsonl(&p, &eval_q, dir, "mcauley-amazon-qa/qa_Video_Games.jsonl.gz");
    from_jsonl(&p, &eval_q, dir, "demo-store/qa.jsonl.gz");
    fprintf(stderr, "aisle embed train: %zu pairs; %zu dropped (question also in an evaluation set)\n", p.n,
            p.dropped);

    struct encoder *e;
    if (enc_new(&e, D, (uint32_t)nb, to.seed))
        cli_usage_error("embed", "--buckets must be a power of two, --dim a multiple of 8");
    /* idf over every text the encoder will see: both sides of the pairs */
    const char **all = malloc(2 * p.n * sizeof(char *));
    if (!all)
        cli_die("out of memory");
    for (size_t i = 0; i < p.n; i++) {
        all[2 * i] = p.a[i];
        all[2 * i + 1] = p.b[i];
    }
    if (enc_fit_idf(e, all, 2 * p.n))
        cli_die("out of memory");
    free(all);
    struct train_progress tp = {.last_report = 0};
    cli_progress_init(&tp.bar, "train");
    to.progress = on_step;
    to.ctx = &tp;
    float loss;
    if (enc_train(e, (const char *const *)p.a, (const char *const *)p.b, p.n, &to, &loss))
        cli_die("training failed: out of memory");
    cli_progress_end(&tp.bar);
    struct buf b;
    buf_init(&b, 0);
    if (enc_write(e, &b))
        cli_die("out of memory");
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f))
        cli_die("%s: cannot write", out);
    fprintf(stderr, "aisle embed train: wrote %s (%zu bytes, D=%d, %ld buckets); last-epoch loss %.4f; %.1f s\n",
            out, b.len, D, nb, (double)loss, cli_now() - t0);
    buf_release(&b);
    enc_free(e);
    pairs_free(&p);
    hset_release(&eval_q);
    return 0;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return !stat(p, &sb) && S_ISREG(sb.st_mode);
}

const char *embed_default_encoder(void)
{
    static char path[4096];
    const char *env = getenv("AISLE_ENCODER");
    if (env && *env)
        return env;
    const char *root = getenv("AISLE_ROOT");
    if (root && *root) {
        snprintf(path, sizeof(path), "%s/models/encoder-v1.bin", root);
        if (file_exists(path))
            return path;
    }
    if (file_exists("models/encoder-v1.bin"))
        return "models/encoder-v1.bin";
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(path, sizeof(path), "%s/../models/encoder-v1.bin", exe);
            if (file_exists(path))
                return path;
        }
    }
    return NULL;
}

static void on_embed(void *ctx, uint64_t done, uint64_t total)
{
    cli_progress_update(ctx, done, done, total);
}

int embed_store_vectors(struct store *s, const char *encoder_path, int required, int quiet)
{
    char err[1024];
    struct encoder *e = NULL;
    int rc = encoder_path ? AISLE_ENOTFOUND : dense_get_encoder(s, &e, err, sizeof(err));
    if (rc == AISLE_ENOTFOUND) {
        const char *path = encoder_path ? encoder_path : embed_default_encoder();
        if (!path) {
            if (required)
                cli_die("no encoder: give --encoder PATH (models/encoder-v1.bin, made by `aisle embed train`)");
            if (!quiet)
                fprintf(stderr, "aisle: no encoder found (models/encoder-v1.bin): passages get no vectors; "
                                "run `aisle embed index --db PATH --encoder FILE` for hybrid search\n");
            return 1;
        }
        struct buf b;
        buf_init(&b, 0);
        FILE *f = fopen(path, "rb");
        if (!f)
            cli_die("%s: cannot open the encoder", path);
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            if (buf_append(&b, chunk, n))
                cli_die("out of memory");
        fclose(f);
        if (dense_set_encoder(s, b.data ? b.data : "", b.len, err, sizeof(err)))
            cli_die("%s: %s", path, err);
        buf_release(&b);
        rc = dense_get_encoder(s, &e, err, sizeof(err));
    }
    if (rc)
        cli_die("%s", err);
    struct cli_progress prog;
    cli_progress_init(&prog, "embedding passages");
    if (quiet)
        prog.tty = 0;
    size_t added = 0;
    double t0 = cli_now();
    if (dense_index_pending(s, e, on_embed, &prog, &added, err, sizeof(err)))
        cli_die("embedding passages: %s", err);
    cli_progress_end(&prog);
    double el = cli_now() - t0;
    if (!quiet && added)
        fprintf(stderr, "vectors: %zu passages embedded, %.1fs (%.0f passages/s)\n", added, el,
                el > 0 ? (double)added / el : 0.0);
    enc_free(e);
    return 0;
}

static int embed_index(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},
        {"encoder", required_argument, NULL, 'e'},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *encp = NULL;
    int quiet = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+q", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'e': encp = optarg; break;
        case 'q': quiet = 1; break;
        default: cli_usage_error("embed", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        cli_usage_error("embed", "unexpected argument '%s'", argv[optind]);
    if (!db)
        cli_usage_error("embed", "--db is required");
    char err[1024];
    struct store *s;
    if (store_open(&s, db, 0, err, sizeof(err)))
        cli_die("%s", err);
    embed_store_vectors(s, encp, 1, quiet);
    store_close(s);
    return 0;
}

int cmd_embed(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) {
        if (cli_wants_help(argc - 1, argv + 1)) {
            fputs(usage_text, stdout);
            return 0;
        }
        return embed_train(argc - 1, argv + 1);
    }
    if (!strcmp(argv[1], "index")) {
        if (cli_wants_help(argc - 1, argv + 1)) {
            fputs(usage_text, stdout);
            return 0;
        }
        return embed_index(argc - 1, argv + 1);
    }
    cli_usage_error("embed", "unknown subcommand '%s' (expected train or index)", argv[1]);
}
