/* perplexity.c — `aisle perplexity`: the model's perplexity on a text file, or
 * per source on a corpus's held-out validation shards next to unigram and
 * bigram baselines counted on its training shards (docs/EVAL_LM.md); both over
 * non-overlapping windows each evaluated from an empty cache. */
#include "cli.h"
#include "cmds.h"
#include "engine.h"

#include "core/error.h"
#include "model/model.h"
#include "tok/tok.h"
#include "train/corpus.h"
#include "train/ngram.h"
#include "train/shard.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
    "usage: aisle perplexity --model FILE --ctx N [--threads N] [--kv-f16] TEXTFILE\n"
    "       aisle perplexity --corpus DIR [--model FILE] [--ctx N] [--max-tokens N]\n"
    "                        [--baselines] [--json] [--threads N] [--kv-f16]\n"
    "\n"
    "Tokenize TEXTFILE without BOS, cut the tokens into non-overlapping windows\n"
    "of N (a shorter tail is dropped), evaluate each window from an empty cache\n"
    "and score every token but the window's first. Prints 'ppl VALUE' on stdout\n"
    "and the counts on stderr.\n"
    "\n"
    "With --corpus (a directory of `aisle corpus build`): the same windows over\n"
    "each source's validation shard, one line per source and a pooled 'all'\n"
    "line: tokens scored, mean NLL (nats/token) and perplexity of the model and,\n"
    "with --baselines, of four n-gram models scored on exactly the same target\n"
    "tokens: unigram (add-one) and bigram (interpolated Kneser-Ney) counted on\n"
    "the training shards of all sources pooled, and the same two counted on the\n"
    "source's own training shards (docs/EVAL_LM.md).\n"
    "\n"
    "  --model FILE     a Llama-family GGUF model with its tokenizer (corpus\n"
    "                   mode: optional with --baselines; its vocabulary must be\n"
    "                   the corpus's)\n"
    "  --ctx N          window length in tokens (at least 2; corpus mode:\n"
    "                   default the model's context length)\n"
    "  --corpus DIR     score the corpus's validation shards per source\n"
    "  --max-tokens N   corpus mode: at most N validation tokens per source\n"
    "                   (the first whole windows; default all)\n"
    "  --baselines      corpus mode: also the unigram and bigram baselines\n"
    "  --json           corpus mode: one JSON object per line instead of a table\n"
    "  --threads N      compute threads (default: all CPUs)\n"
    "  --kv-f16         keep K/V in F16 (default F32)\n"
    "  -h, --help       this help\n";

#define MAX_TEXT (1L << 30) /* bytes of text read */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        cli_die("%s: cannot open", path);
    struct stat st;
    if (fstat(fileno(f), &st) || st.st_size > MAX_TEXT)
        cli_die("%s: unreadable or larger than %ld bytes", path, MAX_TEXT);
    char *p = malloc((size_t)st.st_size + 1);
    if (!p)
        cli_die("out of memory");
    size_t n = fread(p, 1, (size_t)st.st_size, f);
    if (ferror(f))
        cli_die("%s: read error", path);
    fclose(f);
    p[n] = '\0';
    *len = n;
    return p;
}

/* The model side of the windowing rule, shared by both modes. Logits of
 * positions 0..ctx-2 score tokens 1..ctx-1. A window goes to lm_decode in
 * pieces of at most PIECE entries (the sequence carries on from one to the
 * next), so the logits buffer stays PIECE x V. */
enum { PIECE = 512 };
struct scorer {
    struct lm_model *m;
    struct lm_kv *kv;
    struct lm_batch b;
    float *logits; /* (PIECE, V) */
    int V, ctx;
};

static void scorer_init(struct scorer *sc, struct lm_model *m, int ctx, int f16)
{
    sc->m = m;
    sc->V = lm_model_n_vocab(m);
    sc->ctx = ctx;
    sc->kv = eng_kv(m, ctx, 1, f16);
    sc->logits = malloc((size_t)PIECE * sc->V * sizeof(float));
    if (lm_batch_init(&sc->b, PIECE) || !sc->logits)
        cli_die("out of memory for %d x %d logits", PIECE, sc->V);
}

static void scorer_release(struct scorer *sc)
{
    free(sc->logits);
    lm_batch_release(&sc->b);
    lm_kv_free(sc->kv);
}

/* The summed NLL (nats) of t[1..ctx-1] given the tokens before each, from an
 * empty cache. */
static double score_window(struct scorer *sc, const int32_t *t)
{
    int ctx = sc->ctx, V = sc->V, seq;
    double nll = 0;
    lm_kv_seq_new(sc->kv, &seq);
    for (int i0 = 0; i0 < ctx; i0 += PIECE) {
        int n = ctx - i0 < PIECE ? ctx - i0 : PIECE;
        sc->b.n = 0;
        for (int i = i0; i < i0 + n; i++)
            lm_batch_add(&sc->b, seq, i, t[i], i < ctx - 1);
        int rc = lm_decode(sc->m, sc->kv, &sc->b, sc->logits);
        if (rc)
            cli_die("decode: %s: %s", aisle_strerror(rc), lm_model_errmsg(sc->m));
        for (int i = i0; i < i0 + n && i < ctx - 1; i++) {
            const float *l = sc->logits + (size_t)(i - i0) * V;
            double mx = l[0], z = 0;
            for (int v = 1; v < V; v++)
                mx = l[v] > mx ? l[v] : mx;
            for (int v = 0; v < V; v++)
                z += exp(l[v] - mx);
            nll += log(z) + mx - l[t[i + 1]];
        }
    }
    lm_kv_seq_free(sc->kv, seq);
    return nll;
}

/* ---- corpus mode ---- */

enum { M_MODEL, M_UNI, M_BI, M_UNI_SRC, M_BI_SRC, N_SCORERS };
static const char *const scorer_names[N_SCORERS] = {"model", "unigram", "bigram", "unigram_src", "bigram_src"};

struct src_result {
    const char *name;
    uint64_t val_tokens, windows, scored;
    double nll[N_SCORERS]; /* summed nats over the scored tokens */
};

/* Count every training shard of the sources [first, first + n) into a new
 * n-gram model, in pieces of 1M tokens with progress (rate, ETA) on stderr. */
static struct ngram *count_train(const char *dir, const struct corpus_manifest *man, int first, int n,
                                 const char *label)
{
    enum { CHUNK = 1 << 20 };
    struct ngram *g;
    char err[512], path[4096];
    uint64_t total = 0, done = 0;
    double t0 = cli_now();
    struct cli_status st;
    cli_status_init(&st);
    if (ngram_new(&g, man->vocab_size))
        cli_die("out of memory for the n-gram counts");
    for (int s = first; s < first + n; s++)
        total += man->sources[s].train.tokens;
    for (int s = first; s < first + n; s++) {
        const struct corpus_split *sp = &man->sources[s].train;
        for (int f = 0; f < sp->n_files; f++) {
            struct shard *sh;
            snprintf(path, sizeof path, "%s/%s", dir, sp->files[f]);
            int rc = shard_open(&sh, path, err, sizeof err);
            if (rc)
                cli_die("%s", err);
            if (sh->kind != SHARD_TOKENS || sh->vocab_size != man->vocab_size)
                cli_die("%s: not a token shard of the manifest's vocabulary (%u)", path, man->vocab_size);
            rc = 0;
            for (uint64_t i = 0; i < sh->n_tokens && !rc; i += CHUNK) {
                size_t k = sh->n_tokens - i < CHUNK ? (size_t)(sh->n_tokens - i) : CHUNK;
                rc = i ? ngram_add_cont(g, sh->tokens + i, k) : ngram_add(g, sh->tokens, k);
                done += k;
                double dt = cli_now() - t0, rate = (double)done / (dt > 0 ? dt : 1e-9);
                double eta = (double)(total > done ? total - done : 0) / rate;
                cli_status(&st, done >= total, "n-grams (%s): %llu/%llu tokens  %.2fM tok/s  ETA %d:%02d", label,
                           (unsigned long long)done, (unsigned long long)total, rate / 1e6, (int)(eta / 60),
                           (int)eta % 60);
            }
            shard_close(sh);
            if (rc)
                cli_die("%s: counting n-grams: %s", path, aisle_strerror(rc));
        }
    }
    cli_status_end(&st);
    if (ngram_finish(g))
        cli_die("out of memory for the n-gram counts");
    return g;
}

/* The source's validation tokens (all its files in manifest order), at most
 * max of them (0: all). */
static int32_t *read_val(const char *dir, const struct corpus_manifest *man, int s, uint64_t max, size_t *n_out)
{
    const struct corpus_split *sp = &man->sources[s].val;
    char err[512], path[4096];
    uint64_t want = sp->tokens, n = 0;
    if (max && want > max)
        want = max;
    int32_t *t = malloc((want ? want : 1) * sizeof(*t));
    if (!t)
        cli_die("out of memory for %llu validation tokens of %s", (unsigned long long)want, man->sources[s].name);
    for (int f = 0; f < sp->n_files && n < want; f++) {
        struct shard *sh;
        snprintf(path, sizeof path, "%s/%s", dir, sp->files[f]);
        if (shard_open(&sh, path, err, sizeof err))
            cli_die("%s", err);
        if (sh->kind != SHARD_TOKENS || sh->vocab_size != man->vocab_size)
            cli_die("%s: not a token shard of the manifest's vocabulary (%u)", path, man->vocab_size);
        for (uint64_t i = 0; i < sh->n_tokens && n < want; i++)
            t[n++] = (int32_t)sh->tokens[i];
        shard_close(sh);
    }
    *n_out = (size_t)n;
    return t;
}

static void print_line(const struct src_result *r, const int *on, int json)
{
    if (json) {
        printf("{\"source\": \"%s\", \"val_tokens\": %llu, \"windows\": %llu, \"tokens\": %llu", r->name,
               (unsigned long long)r->val_tokens, (unsigned long long)r->windows, (unsigned long long)r->scored);
        for (int k = 0; k < N_SCORERS; k++) {
            if (!on[k])
                continue;
            if (r->scored)
                printf(", \"%s\": {\"nll\": %.6f, \"ppl\": %.4f}", scorer_names[k], r->nll[k] / (double)r->scored,
                       exp(r->nll[k] / (double)r->scored));
            else
                printf(", \"%s\": null", scorer_names[k]);
        }
        printf("}\n");
        return;
    }
    printf("%-12s %10llu", r->name, (unsigned long long)r->scored);
    for (int k = 0; k < N_SCORERS; k++) {
        if (!on[k])
            continue;
        if (r->scored)
            printf("  %15.4f %15.2f", r->nll[k] / (double)r->scored, exp(r->nll[k] / (double)r->scored));
        else
            printf("  %15s %15s", "-", "-");
    }
    printf("\n");
}

static int corpus_mode(const char *dir, const char *model_path, int ctx, uint64_t max_tokens, int baselines,
                       int json, int threads, int f16)
{
    struct corpus_manifest *man;
    char err[1024];
    int rc = corpus_manifest_load(&man, dir, err, sizeof err);
    if (rc)
        cli_die("%s", err);
    struct lm_model *m = NULL;
    struct scorer sc;
    if (model_path) {
        m = eng_load(model_path, threads, PIECE);
        int mv = lm_model_n_vocab(m), mctx = (int)lm_model_hparams(m)->n_ctx;
        if (!ctx)
            ctx = mctx;
        /* The model holds threads and maps: freed before exiting on an error. */
        if ((uint32_t)mv != man->vocab_size || ctx < 2 || ctx > mctx) {
            lm_model_free(m);
            if ((uint32_t)mv != man->vocab_size)
                snprintf(err, sizeof err, "%s has %d tokens in its vocabulary but the corpus %s has %u: not the "
                         "same tokenizer", model_path, mv, dir, man->vocab_size);
            else
                snprintf(err, sizeof err, "--ctx %d: the model %s takes 2 to %d positions", ctx, model_path, mctx);
            corpus_manifest_free(man);
            cli_die("%s", err);
        }
        scorer_init(&sc, m, ctx, f16);
    }
    int on[N_SCORERS] = {m != NULL, baselines, baselines, baselines, baselines};

    struct ngram *pooled = NULL;
    if (baselines) {
        double t0 = cli_now();
        pooled = count_train(dir, man, 0, man->n_sources, "all sources");
        fprintf(stderr, "n-grams: %llu training tokens, %llu distinct pairs, discount %.4f, %.1f s\n",
                (unsigned long long)ngram_tokens(pooled), (unsigned long long)ngram_pairs(pooled),
                ngram_discount(pooled), cli_now() - t0);
    }

    /* Every source's windows first, so the progress line has a total. */
    struct src_result *res = calloc((size_t)man->n_sources + 1, sizeof(*res));
    int32_t **val = calloc((size_t)man->n_sources, sizeof(*val));
    if (!res || !val)
        cli_die("out of memory");
    uint64_t total_windows = 0, done_windows = 0;
    for (int s = 0; s < man->n_sources; s++) {
        size_t n;
        val[s] = read_val(dir, man, s, max_tokens, &n);
        res[s].name = man->sources[s].name;
        res[s].val_tokens = n;
        res[s].windows = n / (size_t)ctx;
        res[s].scored = res[s].windows * (uint64_t)(ctx - 1);
        total_windows += res[s].windows;
        if (!res[s].windows)
            fprintf(stderr, "warning: source %s has %zu validation tokens, fewer than one window of %d: not scored\n",
                    res[s].name, n, ctx);
    }

    double t0 = cli_now();
    struct cli_status st;
    cli_status_init(&st);
    for (int s = 0; s < man->n_sources; s++) {
        struct src_result *r = &res[s];
        struct ngram *own = NULL;
        if (baselines && r->windows)
            own = count_train(dir, man, s, 1, r->name);
        for (uint64_t w = 0; w < r->windows; w++) {
            const int32_t *t = val[s] + w * (uint64_t)ctx;
            if (m) {
                r->nll[M_MODEL] += score_window(&sc, t);
                done_windows++;
                double dt = cli_now() - t0, rate = (double)done_windows * ctx / (dt > 0 ? dt : 1e-9);
                double eta = (double)(total_windows - done_windows) * ctx / rate;
                cli_status(&st, done_windows == total_windows, "%s window %llu/%llu  ppl %.4f  %.0f tok/s  ETA %d:%02d",
                           r->name, (unsigned long long)w + 1, (unsigned long long)r->windows,
                           exp(r->nll[M_MODEL] / (double)((w + 1) * (uint64_t)(ctx - 1))), rate, (int)(eta / 60),
                           (int)eta % 60);
            }
            for (int i = 1; own && i < ctx; i++) {
                uint32_t a = (uint32_t)t[i - 1], b = (uint32_t)t[i];
                r->nll[M_UNI] -= ngram_unigram_logp(pooled, b);
                r->nll[M_BI] -= ngram_bigram_logp(pooled, a, b);
                r->nll[M_UNI_SRC] -= ngram_unigram_logp(own, b);
                r->nll[M_BI_SRC] -= ngram_bigram_logp(own, a, b);
            }
        }
        ngram_free(own);
    }
    cli_status_end(&st);

    struct src_result *all = &res[man->n_sources];
    all->name = "all";
    for (int s = 0; s < man->n_sources; s++) {
        all->val_tokens += res[s].val_tokens;
        all->windows += res[s].windows;
        all->scored += res[s].scored;
        for (int k = 0; k < N_SCORERS; k++)
            all->nll[k] += res[s].nll[k];
    }
    if (!json) {
        printf("# %s: windows of %d tokens, scored on all but each window's first; nll in nats/token\n", dir, ctx);
        printf("%-12s %10s", "source", "tokens");
        for (int k = 0; k < N_SCORERS; k++) {
            char a[32], b[32];
            snprintf(a, sizeof a, "%s_nll", scorer_names[k]);
            snprintf(b, sizeof b, "%s_ppl", scorer_names[k]);
            if (on[k])
                printf("  %15s %15s", a, b);
        }
        printf("\n");
    }
    for (int s = 0; s <= man->n_sources; s++)
        print_line(&res[s], on, json);

    for (int s = 0; s < man->n_sources; s++)
        free(val[s]);
    free(val);
    free(res);
    ngram_free(pooled);
    if (m) {
        scorer_release(&sc);
        lm_model_free(m);
    }
    corpus_manifest_free(man);
    return 0;
}

int cmd_perplexity(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},     {"ctx", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},   {"kv-f16", no_argument, NULL, 'f'},
        {"corpus", required_argument, NULL, 'C'},    {"max-tokens", required_argument, NULL, 'x'},
        {"baselines", no_argument, NULL, 'b'},       {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *corpus = NULL;
    int threads = 0, f16 = 0, ctx = 0, baselines = 0, json = 0, c;
    long long max_tokens = 0;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': path = optarg; break;
        case 'c': ctx = (int)eng_long("perplexity", "--ctx", optarg, 2, 1 << 16); break;
        case 't': threads = (int)eng_long("perplexity", "--threads", optarg, 1, 1024); break;
        case 'f': f16 = 1; break;
        case 'C': corpus = optarg; break;
        case 'x': max_tokens = eng_long("perplexity", "--max-tokens", optarg, 2, 1L << 40); break;
        case 'b': baselines = 1; break;
        case 'j': json = 1; break;
        default: cli_usage_error("perplexity", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (corpus) {
        if (optind != argc)
            cli_usage_error("perplexity", "--corpus takes no TEXTFILE");
        if (!path && !baselines)
            cli_usage_error("perplexity", "--corpus needs --model, --baselines or both");
        if (!path && !ctx)
            cli_usage_error("perplexity", "--baselines without --model needs --ctx");
        return corpus_mode(corpus, path, ctx, (uint64_t)max_tokens, baselines, json, threads, f16);
    }
    if (max_tokens || baselines || json)
        cli_usage_error("perplexity", "--max-tokens, --baselines and --json need --corpus");
    if (!path || !ctx)
        cli_usage_error("perplexity", "--model and --ctx are required");
    if (optind + 1 != argc)
        cli_usage_error("perplexity", "expected one TEXTFILE");

    size_t tlen;
    char *text = read_file(argv[optind], &tlen);
    struct lm_model *m = eng_load(path, threads, PIECE);
    struct tok *tk = eng_tokenizer(m, path);
    struct tok_ids ids;
    tok_ids_init(&ids, 0);
    if (tok_encode(tk, NULL, text, tlen, 0, &ids))
        cli_die("cannot tokenize %s", argv[optind]);
    free(text);
    size_t nwin = ids.len / (size_t)ctx;
    if (nwin == 0)
        cli_die("%s has %zu tokens, fewer than one window of %d", argv[optind], ids.len, ctx);

    struct scorer sc;
    scorer_init(&sc, m, ctx, f16);
    double nll = 0, t0 = cli_now();
    size_t scored = 0;
    struct cli_status st;
    cli_status_init(&st);
    for (size_t w = 0; w < nwin; w++) {
        nll += score_window(&sc, ids.ids + w * (size_t)ctx);
        scored += (size_t)ctx - 1;
        double el = cli_now() - t0, rate = (double)(w + 1) * ctx / (el > 0 ? el : 1e-9);
        double eta = (double)(nwin - w - 1) * ctx / rate;
        cli_status(&st, w + 1 == nwin, "window %zu/%zu  ppl %.4f  %.0f tok/s  ETA %d:%02d", w + 1, nwin,
                   exp(nll / (double)scored), rate, (int)(eta / 60), (int)eta % 60);
    }
    cli_status_end(&st);
    double dt = cli_now() - t0;
    fprintf(stderr, "%zu tokens, %zu windows of %d, %zu scored, %.1f tok/s\n", ids.len, nwin, ctx, scored,
            (double)(nwin * (size_t)ctx) / dt);
    printf("ppl %.4f\n", exp(nll / (double)scored));
    scorer_release(&sc);
    tok_ids_release(&ids);
    tok_free(tk);
    lm_model_free(m);
    return 0;
}
