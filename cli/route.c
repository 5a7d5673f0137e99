/* route.c — `aisle route`: train, evaluate, inspect and ask the source router. */
#include "cli.h"
#include "cmds.h"

#include "core/error.h"
#include "core/hset.h"
#include "retrieval/route.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: aisle route train --out MODEL [--holdout PCT] [--buckets N] [--epochs N] [--seed N] DATA...\n"
    "       aisle route eval [--model MODEL] [--holdout PCT] DATA...\n"
    "       aisle route top --model MODEL [-k N] DATA...\n"
    "       aisle route ask [--model MODEL] QUESTION...\n"
    "\n"
    "The source router decides which evidence sources a question needs: catalog,\n"
    "reviews, qa (community Q&A) or api (price, stock, delivery, orders). It is a\n"
    "multi-label logistic regression over hashed question features (docs/EVIDENCE.md).\n"
    "\n"
    "DATA are JSON Lines files, gzip or plain: {\"q\": TEXT, \"sources\": [NAMES]}\n"
    "(tests/fixtures/route/ has the labelled sets).\n"
    "\n"
    "  train        learn from DATA (minus the held-out part) and write MODEL;\n"
    "               deterministic: same data and options, same bytes\n"
    "  eval         precision, recall and F1 per source for the model (when given),\n"
    "               the keyword baseline and the majority class, on the held-out\n"
    "               part of DATA (--holdout) or on all of it\n"
    "  top          the features with the largest weights per source (features\n"
    "               seen 5 times or more in DATA)\n"
    "  ask          route one question (the keyword baseline without --model)\n"
    "\n"
    "  --holdout PCT  hold out questions whose FNV-1a hash mod 100 < PCT (default 0)\n"
    "  --buckets N    hashed feature buckets, a power of two (default 16384)\n"
    "  --epochs N     SGD epochs (default 12)\n"
    "  --seed N       example order (default 1)\n"
    "  -k N           features per source and sign for top (default 12)\n"
    "  -h, --help     this help\n";

struct ropts {
    const char *out, *model;
    int holdout, k;
    struct route_train_opts train;
};

static long num_arg(const char *opt, const char *v, long lo, long hi)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        cli_usage_error("route", "%s: expected a number from %ld to %ld, not '%s'", opt, lo, hi, v);
    return x;
}

static int keep_train(const char *q, void *ctx) { return !route_heldout(q, *(int *)ctx); }

static void read_sets(struct route_set *set, int argc, char **argv)
{
    char err[1024];
    route_set_init(set);
    if (optind >= argc)
        cli_usage_error("route", "no DATA files given");
    for (int i = optind; i < argc; i++)
        if (route_set_read(set, argv[i], err, sizeof(err)))
            cli_die("%s", err);
}

static struct route_model *load_model(const char *path)
{
    char err[1024];
    struct route_model *m;
    if (route_model_load(&m, path, err, sizeof(err)))
        cli_die("%s", err);
    return m;
}

static void print_eval(const char *name, const struct route_eval *e)
{
    printf("%-9s", name);
    for (int s = 0; s < ROUTE_NSRC; s++) {
        double p = e->tp[s] + e->fp[s] ? (double)e->tp[s] / (double)(e->tp[s] + e->fp[s]) : 0;
        double r = e->tp[s] + e->fn[s] ? (double)e->tp[s] / (double)(e->tp[s] + e->fn[s]) : 0;
        printf("  %s P %.3f R %.3f F1 %.3f", route_src_names[s], p, r, route_eval_f1(e, s));
    }
    printf("  | micro-F1 %.3f macro-F1 %.3f exact %.3f\n", route_eval_micro_f1(e), route_eval_macro_f1(e),
           e->n ? (double)e->exact / (double)e->n : 0);
}

static int do_eval(struct ropts *o, int argc, char **argv)
{
    struct route_set set;
    read_sets(&set, argc, argv);
    struct route_model *m = o->model ? load_model(o->model) : NULL;
    /* The majority class per source, from the examples not evaluated (all of
     * them when nothing is held out). */
    size_t pos[ROUTE_NSRC] = {0}, nm = 0;
    for (size_t i = 0; i < set.n; i++) {
        if (o->holdout && route_heldout(set.v[i].q, o->holdout))
            continue;
        nm++;
        for (int s = 0; s < ROUTE_NSRC; s++)
            pos[s] += (set.v[i].labels >> s) & 1;
    }
    struct route maj = {{0}, {0}};
    for (int s = 0; s < ROUTE_NSRC; s++)
        maj.use[s] = 2 * pos[s] > nm;
    struct route_eval em = {0}, ek = {0}, ej = {0};
    for (size_t i = 0; i < set.n; i++) {
        if (o->holdout && !route_heldout(set.v[i].q, o->holdout))
            continue;
        struct route r;
        if (m) {
            if (route_question(m, set.v[i].q, &r))
                cli_die("out of memory");
            route_eval_add(&em, set.v[i].labels, &r);
        }
        if (route_keyword(set.v[i].q, &r))
            cli_die("out of memory");
        route_eval_add(&ek, set.v[i].labels, &r);
        route_eval_add(&ej, set.v[i].labels, &maj);
    }
    printf("# %zu questions evaluated (%s)\n", ej.n, o->holdout ? "held out" : "all");
    if (m)
        print_eval("model", &em);
    print_eval("keyword", &ek);
    print_eval("majority", &ej);
    route_model_free(m);
    route_set_release(&set);
    return 0;
}

#define TOP_MIN_COUNT 5

struct featlist {
    char **v;
    size_t *count; /* (n) occurrences of each feature in DATA */
    size_t n, cap;
    struct hset seen; /* feature -> index in v */
};

static void collect(const char *feat, void *ctx)
{
    struct featlist *l = ctx;
    uint64_t seen;
    if (hset_get(&l->seen, feat, &seen)) {
        /* count occurrences (hset_put keeps the first value: bump a side array) */
        l->count[seen]++;
        return;
    }
    if (hset_put(&l->seen, feat, l->n) < 0)
        cli_die("out of memory");
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        l->count = realloc(l->count, l->cap * sizeof(*l->count));
        if (!l->v || !l->count)
            cli_die("out of memory");
    }
    l->count[l->n] = 1;
    if (!(l->v[l->n++] = strdup(feat)))
        cli_die("out of memory");
}

static const struct route_model *sort_model;
static int sort_src;

static int cmp_weight(const void *a, const void *b)
{
    double x = route_feature_weight(sort_model, sort_src, *(char *const *)a);
    double y = route_feature_weight(sort_model, sort_src, *(char *const *)b);
    return x < y ? 1 : x > y ? -1 : strcmp(*(char *const *)a, *(char *const *)b);
}

static int do_top(struct ropts *o, int argc, char **argv)
{
    if (!o->model)
        cli_usage_error("route", "top: --model is required");
    struct route_set set;
    read_sets(&set, argc, argv);
    struct route_model *m = load_model(o->model);
    struct featlist all = {0};
    hset_init(&all.seen);
    for (size_t i = 0; i < set.n; i++)
        if (route_each_feature(set.v[i].q, collect, &all))
            cli_die("out of memory");
    /* Only features seen MIN_COUNT times: a rare feature's weight is mostly
     * the weight of whatever shares its hash bucket. */
    size_t kept = 0;
    for (size_t i = 0; i < all.n; i++) {
        if (all.count[i] >= TOP_MIN_COUNT)
            all.v[kept++] = all.v[i];
        else
            free(all.v[i]);
    }
    all.n = kept;
    sort_model = m;
    for (int s = 0; s < ROUTE_NSRC; s++) {
        sort_src = s;
        qsort(all.v, all.n, sizeof(*all.v), cmp_weight);
        printf("%s +:", route_src_names[s]);
        for (size_t i = 0; i < all.n && i < (size_t)o->k; i++)
            printf(" %s(%.2f)", all.v[i], route_feature_weight(m, s, all.v[i]));
        printf("\n%s -:", route_src_names[s]);
        for (size_t i = 0; i < all.n && i < (size_t)o->k; i++)
            printf(" %s(%.2f)", all.v[all.n - 1 - i], route_feature_weight(m, s, all.v[all.n - 1 - i]));
        printf("\n");
    }
    for (size_t i = 0; i < all.n; i++)
        free(all.v[i]);
    free(all.v);
    free(all.count);
    hset_release(&all.seen);
    route_model_free(m);
    route_set_release(&set);
    return 0;
}

int cmd_route(int argc, char **argv)
{
    if (cli_wants_help(argc, argv) || argc < 2) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 'o'},    {"model", required_argument, NULL, 'm'},
        {"holdout", required_argument, NULL, 'H'}, {"buckets", required_argument, NULL, 'b'},
        {"epochs", required_argument, NULL, 'e'}, {"seed", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    struct ropts o = {.k = 12};
    int c;
    opterr = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, "+k:", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o.out = optarg; break;
        case 'm': o.model = optarg; break;
        case 'H': o.holdout = (int)num_arg("--holdout", optarg, 0, 99); break;
        case 'b': o.train.nbuckets = (uint32_t)num_arg("--buckets", optarg, ROUTE_MIN_BUCKETS, ROUTE_MAX_BUCKETS); break;
        case 'e': o.train.epochs = (int)num_arg("--epochs", optarg, 1, 1000); break;
        case 's': o.train.seed = (uint64_t)num_arg("--seed", optarg, 1, 1L << 30); break;
        case 'k': o.k = (int)num_arg("-k", optarg, 1, 1000); break;
        default: cli_usage_error("route", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!strcmp(sub, "train")) {
        if (!o.out)
            cli_usage_error("route", "train: --out is required");
        if (o.train.nbuckets & (o.train.nbuckets - 1))
            cli_usage_error("route", "--buckets: expected a power of two");
        struct route_set set;
        read_sets(&set, argc, argv);
        char err[1024];
        struct route_model *m;
        if (route_train(&m, &set, o.holdout ? keep_train : NULL, &o.holdout, &o.train, err, sizeof(err)))
            cli_die("%s", err);
        if (route_model_save(m, o.out, err, sizeof(err)))
            cli_die("%s", err);
        size_t ntrain = 0;
        for (size_t i = 0; i < set.n; i++)
            ntrain += !o.holdout || !route_heldout(set.v[i].q, o.holdout);
        printf("trained on %zu of %zu questions (%d%% held out), %u buckets -> %s\n", ntrain, set.n, o.holdout,
               route_model_buckets(m), o.out);
        route_model_free(m);
        route_set_release(&set);
        return 0;
    }
    if (!strcmp(sub, "eval"))
        return do_eval(&o, argc, argv);
    if (!strcmp(sub, "top"))
        return do_top(&o, argc, argv);
    if (!strcmp(sub, "ask")) {
        if (optind >= argc)
            cli_usage_error("route", "ask: no QUESTION given");
        char q[4096] = "";
        size_t len = 0;
        for (int i = optind; i < argc; i++)
            len += (size_t)snprintf(q + len, len < sizeof(q) ? sizeof(q) - len : 0, "%s%s", i > optind ? " " : "",
                                    argv[i]);
        struct route_model *m = o.model ? load_model(o.model) : NULL;
        struct route r;
        if (route_question(m, q, &r))
            cli_die("out of memory");
        for (int s = 0; s < ROUTE_NSRC; s++)
            printf("%-8s %.3f%s\n", route_src_names[s], r.score[s], r.use[s] ? "  *" : "");
        route_model_free(m);
        return 0;
    }
    cli_usage_error("route", "unknown subcommand '%s' (train, eval, top or ask)", sub);
}
