/* eval.c — `aisle eval retrieval`: BM25, dense and hybrid ranking on the
 * shared candidate-ranking dev sets, with ablations, in one run. */
#include "cli.h"
#include "cmds.h"

#include "core/error.h"
#include "retrieval/encoder.h"
#include "retrieval/eval.h"
#include "retrieval/rerank.h"
#include "retrieval/route.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
    "usage: aisle eval retrieval [--data-dir DIR] [--encoder PATH] [--folds N] [--fit]\n"
    "       aisle eval answers --model FILE --examples DEV.jsonl [-n N] [--seed S] ...\n"
    "         (a model's answers to SFT dev examples: aisle eval answers --help)\n"
    "\n"
    "Rank each question's candidates in hetPQA evidence_ranking dev, semiPQA\n"
    "attribute_ranking dev and testseen, and report nDCG@1/5/10, MRR and\n"
    "Recall@1/5 with the number of questions for: BM25 alone (collection\n"
    "statistics of the whole file), dense alone (the encoder's cosine), hybrid\n"
    "(reciprocal-rank fusion of the two, then the learned reranker), and the\n"
    "ablations: RRF without rerank, learned fusion (BM25 + dense scores and\n"
    "ranks only), rerank without the dense features, rerank with a source\n"
    "prior, and the shipped reranker (rr_shipped, fitted on the two dev sets:\n"
    "testseen is held out from it).\n"
    "Learned models are scored by cross-validation: folds by question, each\n"
    "fold ranked by a model fitted on the others (docs/EVAL.md).\n"
    "\n"
    "  --data-dir DIR   the shared data (default ../shared/data)\n"
    "  --encoder PATH   the encoder (default models/encoder-v1.bin)\n"
    "  --folds N        cross-validation folds (default 5)\n"
    "  --router PATH    the source router for the routing ablation (default\n"
    "                   models/router.bin; the ablation is skipped without it)\n"
    "  --fit            also fit the reranker on hetPQA dev + semiPQA dev and\n"
    "                   print it as rerank.c's rr_shipped initializer\n"
    "  -h, --help       this help\n";

static const struct {
    const char *name, *rel;
} sets[] = {
    {"hetPQA evidence_ranking dev", "contextual-pqa/hetPQA/evidence_ranking/dev.csv.gz"},
    {"semiPQA attribute_ranking dev", "contextual-pqa/semiPQA/attribute_ranking/dev.csv.gz"},
    {"semiPQA attribute_ranking testseen", "contextual-pqa/semiPQA/attribute_ranking/testseen.csv.gz"},
};
#define NSETS (sizeof(sets) / sizeof(sets[0]))

/* Everything the rankers need about one set. */
struct scored {
    struct eval_set s;
    double *bm25, *dense, *rrf, *cov;
    size_t *nterms;
    int *rb, *rd;
    float *x; /* (nc, RR_NFEAT) */
};

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p)
        cli_die("out of memory");
    return p;
}

static void score_set(struct scored *d, const struct encoder *e)
{
    size_t nc = d->s.nc;
    d->bm25 = xcalloc(nc, sizeof(double));
    d->dense = xcalloc(nc, sizeof(double));
    d->rrf = xcalloc(nc, sizeof(double));
    d->cov = xcalloc(nc, sizeof(double));
    d->nterms = xcalloc(nc, sizeof(size_t));
    d->rb = xcalloc(nc, sizeof(int));
    d->rd = xcalloc(nc, sizeof(int));
    d->x = xcalloc(nc * RR_NFEAT, sizeof(float));
    if (eval_bm25(&d->s, d->bm25) || eval_dense(&d->s, e, d->dense) || eval_coverage(&d->s, d->cov, d->nterms) ||
        eval_ranks(&d->s, d->bm25, d->rb) || eval_ranks(&d->s, d->dense, d->rd))
        cli_die("out of memory");
    for (size_t q = 0; q < d->s.nq; q++) {
        double mx = 0;
        size_t f = d->s.q[q].first, n = d->s.q[q].n;
        for (size_t c = f; c < f + n; c++)
            mx = d->bm25[c] > mx ? d->bm25[c] : mx;
        for (size_t c = f; c < f + n; c++) {
            d->rrf[c] = 1.0 / (61.0 + d->rb[c]) + 1.0 / (61.0 + d->rd[c]);
            struct rr_input in = {.bm25 = d->bm25[c], .bm25_max = mx, .bm25_rank = d->rb[c], .cosine = d->dense[c],
                                  .dense_rank = d->rd[c], .coverage = d->cov[c], .nterms = d->nterms[c],
                                  .source = d->s.c[c].source};
            rr_features(&in, d->x + c * RR_NFEAT);
        }
    }
}

static void scored_free(struct scored *d)
{
    free(d->bm25);
    free(d->dense);
    free(d->rrf);
    free(d->cov);
    free(d->nterms);
    free(d->rb);
    free(d->rd);
    free(d->x);
    eval_set_release(&d->s);
}

/* Cross-validated scores of a logistic model on nfeat features; features in
 * drop[] (may be NULL) are zeroed (ablations). */
static void cv_scores_x(const struct scored *d, const float *x0, int nfeat, int folds, const int *drop, size_t ndrop,
                        double *out)
{
    size_t nc = d->s.nc;
    float *x = xcalloc(nc * RR_NFEAT, sizeof(float)), *tx = xcalloc(nc * RR_NFEAT, sizeof(float));
    int *y = xcalloc(nc, sizeof(int)), *ty = xcalloc(nc, sizeof(int));
    memcpy(x, x0, nc * RR_NFEAT * sizeof(float));
    for (size_t c = 0; c < nc; c++) {
        y[c] = d->s.c[c].label;
        for (size_t k = 0; k < ndrop; k++)
            x[c * RR_NFEAT + drop[k]] = 0.0f;
    }
    for (int f = 0; f < folds; f++) {
        size_t m = 0;
        for (size_t q = 0; q < d->s.nq; q++)
            if ((int)(q % (size_t)folds) != f)
                for (size_t c = d->s.q[q].first; c < d->s.q[q].first + d->s.q[q].n; c++) {
                    memcpy(tx + m * RR_NFEAT, x + c * RR_NFEAT, RR_NFEAT * sizeof(float));
                    ty[m++] = y[c];
                }
        struct rr_model mod;
        if (rr_fit(&mod, nfeat, tx, ty, m, 400, 1e-4))
            cli_die("reranker fit: no training rows (too few questions for %d folds)", folds);
        for (size_t q = 0; q < d->s.nq; q++)
            if ((int)(q % (size_t)folds) == f)
                for (size_t c = d->s.q[q].first; c < d->s.q[q].first + d->s.q[q].n; c++)
                    out[c] = rr_score(&mod, x + c * RR_NFEAT);
    }
    free(x);
    free(tx);
    free(y);
    free(ty);
}

static void cv_scores(const struct scored *d, int nfeat, int folds, const int *drop, size_t ndrop, double *out)
{
    cv_scores_x(d, d->x, nfeat, folds, drop, ndrop, out);
}

/* Routing as a rerank feature: the router's score for the candidate's source
 * (catalog for attributes, bullets and descriptions; reviews; Q&A) in the
 * first source slot, the other source slots zero. 0 when no router. */
static void routed_features(const struct scored *d, const struct route_model *rm, float *x)
{
    memcpy(x, d->x, d->s.nc * RR_NFEAT * sizeof(float));
    for (size_t q = 0; q < d->s.nq; q++) {
        struct route r;
        if (route_question(rm, d->s.q[q].question, &r))
            cli_die("out of memory");
        for (size_t c = d->s.q[q].first; c < d->s.q[q].first + d->s.q[q].n; c++) {
            enum rr_source src = d->s.c[c].source;
            int rs = src == RR_REVIEW ? ROUTE_REVIEWS : src == RR_QA ? ROUTE_QA : ROUTE_CATALOG;
            float *xc = x + c * RR_NFEAT;
            for (int k = RR_CORE_FEATS; k < RR_NFEAT; k++)
                xc[k] = 0.0f;
            xc[RR_CORE_FEATS] = (float)r.score[rs];
        }
    }
}

static void row(const char *method, const struct eval_metrics *m)
{
    printf("  %-34s %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f\n", method, m->ndcg1, m->ndcg5, m->ndcg10, m->mrr,
           m->recall1, m->recall5);
}

static void print_fit(struct scored *d, size_t nd)
{
    size_t total = 0;
    for (size_t i = 0; i < nd; i++)
        total += d[i].s.nc;
    float *x = xcalloc(total * RR_NFEAT, sizeof(float));
    int *y = xcalloc(total, sizeof(int));
    size_t m = 0;
    for (size_t i = 0; i < nd; i++)
        for (size_t c = 0; c < d[i].s.nc; c++, m++) {
            memcpy(x + m * RR_NFEAT, d[i].x + c * RR_NFEAT, RR_NFEAT * sizeof(float));
            y[m] = d[i].s.c[c].label;
        }
    struct rr_model mod;
    if (rr_fit(&mod, RR_CORE_FEATS, x, y, m, 400, 1e-4))
        cli_die("reranker fit: no rows");
    printf("\nreranker fitted on %zu candidates of %s and %s:\n", m, sets[0].name, sets[1].name);
    printf("const struct rr_model rr_shipped = {\n    .nfeat = RR_CORE_FEATS,\n    .w = {");
    for (int k = 0; k <= RR_NFEAT; k++)
        printf("%s%.6ff", k ? ", " : "", (double)mod.w[k]);
    printf("},\n};\n");
    free(x);
    free(y);
}

static int eval_retrieval(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data-dir", required_argument, NULL, 'd'}, {"encoder", required_argument, NULL, 'e'},
        {"folds", required_argument, NULL, 'f'},    {"fit", no_argument, NULL, 'F'},
        {"router", required_argument, NULL, 'r'},   {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *encp = "models/encoder-v1.bin", *routerp = NULL;
    int folds = 5, fit = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'e': encp = optarg; break;
        case 'F': fit = 1; break;
        case 'r': routerp = optarg; break;
        case 'f': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 2 || v > 20)
                cli_usage_error("eval", "--folds: expected a number from 2 to 20");
            folds = (int)v;
            break;
        }
        default: cli_usage_error("eval", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    struct stat sb;
    if (!dir) {
        dir = "../shared/data";
        if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
            cli_die("no data directory: ../shared/data is missing; give --data-dir DIR (the shared data with "
                    "contextual-pqa/)");
    } else if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
        cli_die("--data-dir %s: not a directory", dir);
    char err[1024];
    struct encoder *e;
    if (enc_load(&e, encp, err, sizeof(err)))
        cli_die("%s (train one with `aisle embed train` or give --encoder)", err);
    struct route_model *rm = NULL;
    struct stat rsb;
    if (routerp || !stat("models/router.bin", &rsb)) {
        if (route_model_load(&rm, routerp ? routerp : "models/router.bin", err, sizeof(err)))
            cli_die("%s", err);
    }
    double t0 = cli_now();
    struct scored d[NSETS];
    memset(d, 0, sizeof(d));
    printf("aisle eval retrieval: data %s, encoder %s (D=%d), %d-fold cross-validation by question\n", dir, encp,
           e->D, folds);
    for (size_t i = 0; i < NSETS; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, sets[i].rel);
        if (eval_set_read(&d[i].s, path, err, sizeof(err)))
            cli_die("%s", err);
        score_set(&d[i], e);
        size_t nc = d[i].s.nc;
        double *lf = xcalloc(nc, sizeof(double)), *rr = xcalloc(nc, sizeof(double));
        double *rnd = xcalloc(nc, sizeof(double)), *shp = xcalloc(nc, sizeof(double));
        double *rsp = xcalloc(nc, sizeof(double)), *rte = xcalloc(nc, sizeof(double));
        cv_scores(&d[i], RR_FUSION_FEATS, folds, NULL, 0, lf);
        cv_scores(&d[i], RR_CORE_FEATS, folds, NULL, 0, rr);
        static const int dense_feats[] = {2, 3};
        cv_scores(&d[i], RR_CORE_FEATS, folds, dense_feats, 2, rnd);
        cv_scores(&d[i], RR_NFEAT, folds, NULL, 0, rsp);
        if (rm) {
            float *xr = xcalloc(nc * RR_NFEAT, sizeof(float));
            routed_features(&d[i], rm, xr);
            cv_scores_x(&d[i], xr, RR_CORE_FEATS + 1, folds, NULL, 0, rte);
            free(xr);
        }
        for (size_t k = 0; k < nc; k++)
            shp[k] = rr_score(&rr_shipped, d[i].x + k * RR_NFEAT);
        struct eval_metrics mb, md, mr, mlf, mh, mrnd, mshp, mrsp, mrte;
        eval_metrics(&d[i].s, d[i].bm25, &mb);
        eval_metrics(&d[i].s, d[i].dense, &md);
        eval_metrics(&d[i].s, d[i].rrf, &mr);
        eval_metrics(&d[i].s, lf, &mlf);
        eval_metrics(&d[i].s, rr, &mh);
        eval_metrics(&d[i].s, rnd, &mrnd);
        eval_metrics(&d[i].s, shp, &mshp);
        eval_metrics(&d[i].s, rsp, &mrsp);
        eval_metrics(&d[i].s, rte, &mrte);
        printf("\n%s: %zu questions with a relevant candidate (%zu without, skipped), %zu candidates\n",
               sets[i].name, mb.questions, mb.skipped, nc);
        printf("  %-34s %7s %7s %7s %7s %7s %7s\n", "method", "nDCG@1", "nDCG@5", "nDCG@10", "MRR", "R@1", "R@5");
        row("BM25", &mb);
        row("dense", &md);
        row("hybrid (RRF + rerank, CV)", &mh);
        row("  ablation: RRF, no rerank", &mr);
        row("  ablation: learned fusion (CV)", &mlf);
        row("  ablation: rerank without dense", &mrnd);
        row("  ablation: rerank + source prior", &mrsp);
        if (rm)
            row("  ablation: rerank + routing", &mrte);
        row(i < 2 ? "  shipped reranker (fit incl. this)" : "  shipped reranker (held out)", &mshp);
        printf("  hybrid - BM25: nDCG@1 %+.4f  nDCG@5 %+.4f  nDCG@10 %+.4f  MRR %+.4f  R@1 %+.4f  R@5 %+.4f  "
               "(%zu questions)\n",
               mh.ndcg1 - mb.ndcg1, mh.ndcg5 - mb.ndcg5, mh.ndcg10 - mb.ndcg10, mh.mrr - mb.mrr,
               mh.recall1 - mb.recall1, mh.recall5 - mb.recall5, mb.questions);
        free(lf);
        free(rr);
        free(rnd);
        free(shp);
        free(rsp);
        free(rte);
        fflush(stdout);
    }
    if (rm)
        printf("\nrouting: the router's score for a candidate's source is a rerank feature (catalog for\n"
               "attributes, bullets, descriptions); semiPQA pools are all attributes, so it cannot reorder them\n");
    else
        printf("\nrouting ablation: skipped (no models/router.bin; give --router PATH)\n");
    route_model_free(rm);
    if (fit)
        print_fit(d, 2);
    printf("\n%.1f s\n", cli_now() - t0);
    for (size_t i = 0; i < NSETS; i++)
        scored_free(&d[i]);
    enc_free(e);
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "retrieval")) {
        if (cli_wants_help(argc - 1, argv + 1)) {
            fputs(usage_text, stdout);
            return 0;
        }
        return eval_retrieval(argc - 1, argv + 1);
    }
    if (!strcmp(argv[1], "answers"))
        return eval_answers(argc - 1, argv + 1); /* cli/eval_answers.c */
    cli_usage_error("eval", "unknown evaluation '%s' (expected retrieval or answers)", argv[1]);
}
