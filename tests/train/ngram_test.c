/*
 * ngram_test.c — the n-gram baselines (src/train/ngram.c) and
 * `aisle perplexity --corpus`:
 *   - unigram and bigram probabilities equal hand-computed fractions on a
 *     six-token corpus; no pair spans two streams;
 *   - every context's distribution sums to 1 over the whole vocabulary;
 *   - the hash table's counts equal a dense count matrix through growth,
 *     also when the stream is counted in pieces (ngram_add_cont);
 *   - the command on a corpus built here (demo store -> tokenizer -> corpus)
 *     with a tiny trained model: per-source lines whose baselines equal the
 *     library recomputed here on the same windows, a model that beats the
 *     unigram, --max-tokens, the table, and bad input refused with the file named.
 * The file includes ngram.c to read pair counts directly.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../server/tinymodel.h"
#include "../testutil.h"
#include "core/error.h"
#include "train/corpus.h"
#include "train/shard.h"

#include "../../src/train/ngram.c"

/* Probabilities are computed in double from small integers: 1e-12 is far
 * below any difference a wrong count or formula would make (>= 1e-3 here). */
#define EPS 1e-12

Test(lmeval_ngram, hand_computed_probabilities)
{
    /* Stream 0 1 0 2 0 1 over V = 4:
     *   unigram c = (3, 2, 1, 0), N = 6: P = (c + 1) / 10 = .4 .3 .2 .1
     *   pairs 01 x2, 10, 02, 20: 4 distinct, n1 = 3, n2 = 1 -> D = 3/5
     *   c(0.) = 3 with 2 followers, c(1.) = 1, c(2.) = 1, c(3.) = 0
     *   preceders of 0,1,2,3: 2,1,1,0 -> Pc = (3, 2, 2, 1) / (4 + 4)
     *   P(1|0) = (2 - .6)/3 + .6*2/3 * 2/8 = 17/30   P(2|0) = .4/3 + .1 = 7/30
     *   P(0|0) = .4 * 3/8 = .15                      P(3|0) = .4 * 1/8 = .05
     *   P(0|1) = .4/1 + .6*1/1 * 3/8 = .625          P(b|3) = Pc(b) */
    struct ngram *g;
    const uint32_t s[] = {0, 1, 0, 2, 0, 1};
    cr_assert_eq(ngram_new(&g, 4), 0);
    cr_assert_eq(ngram_add(g, s, 6), 0);
    cr_assert_eq(ngram_finish(g), 0);
    cr_assert_eq(ngram_tokens(g), 6);
    cr_assert_eq(ngram_pairs(g), 4);
    cr_assert_float_eq(ngram_discount(g), 0.6, EPS);
    const double uni[4] = {.4, .3, .2, .1};
    for (uint32_t b = 0; b < 4; b++)
        cr_assert_float_eq(exp(ngram_unigram_logp(g, b)), uni[b], EPS, "P(%u)", b);
    const double p0[4] = {.15, 17.0 / 30, 7.0 / 30, .05};
    for (uint32_t b = 0; b < 4; b++)
        cr_assert_float_eq(exp(ngram_bigram_logp(g, 0, b)), p0[b], EPS, "P(%u|0)", b);
    cr_assert_float_eq(exp(ngram_bigram_logp(g, 1, 0)), .625, EPS);
    cr_assert_float_eq(exp(ngram_bigram_logp(g, 1, 3)), .6 * 1 / 8.0, EPS);
    const double pc[4] = {3 / 8.0, 2 / 8.0, 2 / 8.0, 1 / 8.0};
    for (uint32_t b = 0; b < 4; b++)
        cr_assert_float_eq(exp(ngram_bigram_logp(g, 3, b)), pc[b], EPS, "P(%u|3): unseen context", b);
    /* No adds after finish. */
    cr_assert_eq(ngram_add(g, s, 1), AISLE_EINVAL);
    ngram_free(g);

    /* Two streams: the pair across the boundary is not counted. */
    cr_assert_eq(ngram_new(&g, 4), 0);
    cr_assert_eq(ngram_add(g, s, 3), 0); /* 0 1 0 */
    cr_assert_eq(ngram_add(g, s + 3, 3), 0); /* 2 0 1: no (0, 2) */
    cr_assert_eq(ngram_finish(g), 0);
    cr_assert_eq(ngram_tokens(g), 6);
    cr_assert_eq(pair_count(g, 0, 2), 0);
    cr_assert_eq(pair_count(g, 0, 1), 2);
    cr_assert_eq(ngram_pairs(g), 3);
    ngram_free(g);
}

Test(lmeval_ngram, bad_input)
{
    struct ngram *g;
    cr_assert_eq(ngram_new(&g, 0), AISLE_EINVAL);
    cr_assert_eq(ngram_new(&g, NGRAM_MAX_VOCAB + 1), AISLE_EINVAL);
    cr_assert_eq(ngram_new(&g, 3), 0);
    const uint32_t bad[] = {0, 1, 3};
    cr_assert_eq(ngram_add(g, bad, 3), AISLE_EINVAL, "id 3 of a 3-token vocabulary");
    ngram_free(g);
    ngram_free(NULL);
}

/* A skewed random stream (small ids common) of n tokens below V. */
static void fill(uint32_t *t, size_t n, uint32_t V, uint64_t seed)
{
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(x >> 11) / 9007199254740992.0;
        t[i] = (uint32_t)(u * u * u * V);
    }
}

Test(lmeval_ngram, distributions_sum_to_one)
{
    enum { V = 97, N = 5000 };
    uint32_t *t = malloc(N * sizeof(*t));
    fill(t, N, V - 5, 3); /* ids V-5..V-1 never seen: unseen contexts too */
    struct ngram *g;
    cr_assert_eq(ngram_new(&g, V), 0);
    cr_assert_eq(ngram_add(g, t, N / 2), 0);
    cr_assert_eq(ngram_add(g, t + N / 2, N - N / 2), 0);
    cr_assert_eq(ngram_finish(g), 0);
    double d = ngram_discount(g);
    cr_assert(d > 0 && d < 1, "discount %g", d);
    double su = 0;
    for (uint32_t b = 0; b < V; b++)
        su += exp(ngram_unigram_logp(g, b));
    cr_assert_float_eq(su, 1.0, 1e-12);
    int unseen_ctx = 0;
    for (uint32_t a = 0; a < V; a++) {
        double sb = 0;
        for (uint32_t b = 0; b < V; b++) {
            double lp = ngram_bigram_logp(g, a, b);
            cr_assert(isfinite(lp), "log P(%u|%u) = %g", b, a, lp);
            sb += exp(lp);
        }
        cr_assert_float_eq(sb, 1.0, 1e-12, "context %u sums to %.15f", a, sb);
        unseen_ctx += !g->ctx[a];
    }
    cr_assert(unseen_ctx > 0 && unseen_ctx < V, "some but not all contexts unseen (%d): both branches summed",
              unseen_ctx);
    ngram_free(g);
    free(t);
}

Test(lmeval_ngram, hash_counts_equal_dense_counts)
{
    enum { V = 300, N = 200000 };
    uint32_t *t = malloc(N * sizeof(*t));
    fill(t, N, V, 11);
    uint32_t *dense = calloc((size_t)V * V, sizeof(*dense));
    for (size_t i = 1; i < N; i++)
        dense[(size_t)t[i - 1] * V + t[i]]++;
    struct ngram *g;
    cr_assert_eq(ngram_new(&g, V), 0);
    cr_assert_eq(ngram_add(g, t, N), 0);
    cr_assert_eq(ngram_finish(g), 0);
    cr_assert(g->cap > (1u << 16), "the table grew (%zu slots)", g->cap);
    uint64_t distinct = 0;
    for (uint32_t a = 0; a < V; a++)
        for (uint32_t b = 0; b < V; b++) {
            cr_assert_eq(pair_count(g, a, b), dense[(size_t)a * V + b], "c(%u %u)", a, b);
            distinct += dense[(size_t)a * V + b] > 0;
        }
    cr_assert_eq(ngram_pairs(g), distinct);
    /* The same stream counted in pieces with ngram_add_cont: the same counts. */
    struct ngram *h;
    cr_assert_eq(ngram_new(&h, V), 0);
    cr_assert_eq(ngram_add(h, t, 1000), 0);
    cr_assert_eq(ngram_add_cont(h, t + 1000, 0), 0);
    cr_assert_eq(ngram_add_cont(h, t + 1000, 77777), 0);
    cr_assert_eq(ngram_add_cont(h, t + 78777, N - 78777), 0);
    cr_assert_eq(ngram_finish(h), 0);
    cr_assert_eq(ngram_pairs(h), distinct);
    cr_assert_eq(ngram_tokens(h), N);
    for (uint32_t a = 0; a < V; a++) {
        cr_assert_eq(h->uni[a], g->uni[a]);
        for (uint32_t b = 0; b < V; b++)
            cr_assert_eq(pair_count(h, a, b), dense[(size_t)a * V + b], "pieces: c(%u %u)", a, b);
    }
    ngram_free(h);
    ngram_free(g);
    free(dense);
    free(t);
}

/* ---- aisle perplexity --corpus ---- */

struct pworld {
    char *dir, *corpus, *model;
};

static void pworld_make(struct pworld *w)
{
    char *out = NULL, *db, *tok, *run;
    const char *root = tu_root(), *bin = tu_aisle();
    w->dir = tu_tmpdir();
    db = tu_path(w->dir, "store.db");
    tok = tu_path(w->dir, "tok.gguf");
    run = tu_path(w->dir, "run");
    w->corpus = tu_path(w->dir, "corpus");
    w->model = tu_path(run, "model.gguf");
    int rc = tu_run(&out,
                    "%s ingest --db %s --products %s/data/demo-store/products.jsonl.gz --reviews "
                    "%s/data/demo-store/reviews.jsonl.gz --qa %s/data/demo-store/qa.jsonl.gz",
                    bin, db, root, root, root);
    cr_assert_eq(rc, 0, "ingest: %s", out);
    free(out);
    rc = tu_run(&out, "%s tokenizer train --vocab 512 --db %s --out %s", bin, db, tok);
    cr_assert_eq(rc, 0, "tokenizer: %s", out);
    free(out);
    rc = tu_run(&out, "%s corpus build --db %s --tokenizer %s --out %s --val-frac 0.05 --seed 7", bin, db, tok,
                w->corpus);
    cr_assert_eq(rc, 0, "corpus: %s", out);
    free(out);
    /* ~2 s here: enough steps for the model to pass the unigram clearly. */
    rc = tu_run(&out,
                "%s train --corpus %s --out %s --dim 32 --layers 2 --heads 4 --kv-heads 2 --ctx 32 --batch 4 "
                "--lr 3e-3 --warmup 3 --threads 1 --eval-tokens 1024 --steps 300 --eval-every 300 --plot 0",
                bin, w->corpus, run);
    cr_assert_eq(rc, 0, "train: %s", out);
    free(out);
    free(db);
    free(tok);
    free(run);
}

static void pworld_free(struct pworld *w)
{
    free(w->corpus);
    free(w->model);
    tu_rmdir(w->dir);
}

/* The NLL sums of the four baselines over the source's windows, computed
 * here from the shards with the library. */
static void baseline_nll(const char *dir, const struct corpus_manifest *m, int src, int ctx, uint64_t max,
                         double nll[4], uint64_t *scored)
{
    char path[4096], err[512];
    struct ngram *pooled, *own;
    cr_assert_eq(ngram_new(&pooled, m->vocab_size), 0);
    cr_assert_eq(ngram_new(&own, m->vocab_size), 0);
    for (int s = 0; s < m->n_sources; s++)
        for (int f = 0; f < m->sources[s].train.n_files; f++) {
            struct shard *sh;
            snprintf(path, sizeof path, "%s/%s", dir, m->sources[s].train.files[f]);
            cr_assert_eq(shard_open(&sh, path, err, sizeof err), 0, "%s", err);
            cr_assert_eq(ngram_add(pooled, sh->tokens, sh->n_tokens), 0);
            if (s == src)
                cr_assert_eq(ngram_add(own, sh->tokens, sh->n_tokens), 0);
            shard_close(sh);
        }
    cr_assert_eq(ngram_finish(pooled), 0);
    cr_assert_eq(ngram_finish(own), 0);
    cr_assert_eq(m->sources[src].val.n_files, 1);
    struct shard *v;
    snprintf(path, sizeof path, "%s/%s", dir, m->sources[src].val.files[0]);
    cr_assert_eq(shard_open(&v, path, err, sizeof err), 0, "%s", err);
    uint64_t n = v->n_tokens < max ? v->n_tokens : max, windows = n / (uint64_t)ctx;
    memset(nll, 0, 4 * sizeof(double));
    for (uint64_t w = 0; w < windows; w++) {
        const uint32_t *t = v->tokens + w * (uint64_t)ctx;
        for (int i = 1; i < ctx; i++) {
            nll[0] -= ngram_unigram_logp(pooled, t[i]);
            nll[1] -= ngram_bigram_logp(pooled, t[i - 1], t[i]);
            nll[2] -= ngram_unigram_logp(own, t[i]);
            nll[3] -= ngram_bigram_logp(own, t[i - 1], t[i]);
        }
    }
    *scored = windows * (uint64_t)(ctx - 1);
    shard_close(v);
    ngram_free(pooled);
    ngram_free(own);
}

static double member_nll(json_t *line, const char *name)
{
    json_t *o = json_object_get(line, name);
    cr_assert(json_is_object(o), "no %s in %s", name, json_dumps(line, 0));
    return json_real_value(json_object_get(o, "nll"));
}

static void check_json(const char *out, const struct pworld *w, const struct corpus_manifest *m, int ctx,
                       uint64_t max, int with_model)
{
    static const char *const names[] = {"unigram", "bigram", "unigram_src", "bigram_src"};
    const char *p = out;
    double sum[5] = {0};
    uint64_t sum_tokens = 0;
    for (int s = 0; s <= m->n_sources; s++) {
        json_error_t je;
        const char *e = strchr(p, '\n');
        cr_assert_not_null(e, "line %d missing in:\n%s", s + 1, out);
        json_t *line = json_loadb(p, (size_t)(e - p), 0, &je);
        cr_assert_not_null(line, "line %d is not JSON (%s):\n%s", s + 1, je.text, out);
        const char *name = json_string_value(json_object_get(line, "source"));
        uint64_t tokens = (uint64_t)json_integer_value(json_object_get(line, "tokens"));
        if (s == m->n_sources) {
            cr_assert_str_eq(name, "all");
            cr_assert_eq(tokens, sum_tokens);
            for (int k = 0; k < 4; k++)
                cr_assert_float_eq(member_nll(line, names[k]), sum[k] / (double)sum_tokens, 1e-5, "all %s",
                                   names[k]);
            if (with_model)
                cr_assert_float_eq(member_nll(line, "model"), sum[4] / (double)sum_tokens, 1e-5);
            json_decref(line);
            break;
        }
        cr_assert_str_eq(name, m->sources[s].name);
        double want[4];
        uint64_t scored;
        baseline_nll(w->corpus, m, s, ctx, max, want, &scored);
        cr_assert_eq(tokens, scored, "%s: %llu tokens scored, want %llu", name, (unsigned long long)tokens,
                     (unsigned long long)scored);
        cr_assert(scored > 0);
        for (int k = 0; k < 4; k++) {
            double got = member_nll(line, names[k]);
            cr_assert_float_eq(got, want[k] / (double)scored, 1e-5, "%s %s: %f vs %f", name, names[k], got,
                               want[k] / (double)scored);
            sum[k] += got * (double)scored;
        }
        double uni = member_nll(line, "unigram"), bi = member_nll(line, "bigram");
        cr_assert(bi < uni - 0.5, "%s: bigram %.3f should beat unigram %.3f", name, bi, uni);
        cr_assert(uni < log(512.0), "%s: unigram %.3f beats uniform", name, uni);
        if (with_model) {
            double mo = member_nll(line, "model");
            cr_assert(mo < uni - 0.15, "%s: the trained model %.3f should beat the unigram %.3f", name, mo, uni);
            cr_assert_float_eq(json_real_value(json_object_get(json_object_get(line, "model"), "ppl")), exp(mo),
                               1e-3 * exp(mo));
            sum[4] += mo * (double)scored;
        } else {
            cr_assert_null(json_object_get(line, "model"));
        }
        sum_tokens += scored;
        json_decref(line);
        p = e + 1;
    }
}

Test(lmeval_ppl, corpus_per_source_with_baselines, .timeout = 180)
{
    struct pworld w;
    pworld_make(&w);
    struct corpus_manifest *m;
    char err[512], *out = NULL;
    cr_assert_eq(corpus_manifest_load(&m, w.corpus, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m->n_sources, 3);

    int rc = tu_run(&out, "%s perplexity --corpus %s --model %s --baselines --json --threads 1 2>/dev/null",
                    tu_aisle(), w.corpus, w.model);
    cr_assert_eq(rc, 0, "%s", out);
    check_json(out, &w, m, 32, UINT64_MAX, 1); /* --ctx defaults to the model's 32 */
    free(out);

    /* Baselines alone, other windows, the first 200 tokens of each source. */
    rc = tu_run(&out, "%s perplexity --corpus %s --baselines --ctx 16 --max-tokens 200 --json 2>/dev/null",
                tu_aisle(), w.corpus);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "\"windows\": 12, \"tokens\": 180"), "200 tokens = 12 windows of 16:\n%s", out);
    check_json(out, &w, m, 16, 200, 0);
    free(out);

    /* The table, with progress (rate, ETA) on stderr. */
    rc = tu_run(&out, "%s perplexity --corpus %s --model %s --baselines --threads 1 --max-tokens 640", tu_aisle(),
                w.corpus, w.model);
    cr_assert_eq(rc, 0, "%s", out);
    char want[128];
    snprintf(want, sizeof want, "%-12s %10s  %15s %15s  %15s", "source", "tokens", "model_nll", "model_ppl",
             "unigram_nll");
    cr_assert_not_null(strstr(out, want), "%s", out);
    snprintf(want, sizeof want, "\n%-12s %10d ", "reviews", 620); /* 20 windows of 31 targets */
    cr_assert_not_null(strstr(out, want), "%s", out);
    snprintf(want, sizeof want, "\n%-12s %10d ", "all", 1860);
    cr_assert_not_null(strstr(out, want), "%s", out);
    cr_assert_not_null(strstr(out, "tok/s  ETA"), "%s", out);
    cr_assert_not_null(strstr(out, "distinct pairs, discount"), "%s", out);
    /* Into a pipe: whole lines (the final state at least), no carriage returns. */
    cr_assert_null(strchr(out, '\r'), "%s", out);
    cr_assert_not_null(strstr(out, "all sources): "), "%s", out);
    free(out);

    /* Windows longer than the model's context, and a model of another vocabulary. */
    rc = tu_run(&out, "%s perplexity --corpus %s --model %s --ctx 64", tu_aisle(), w.corpus, w.model);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "--ctx 64: the model"), "%s", out);
    cr_assert_not_null(strstr(out, "takes 2 to 32 positions"), "%s", out);
    free(out);
    char *other = tu_path(w.dir, "other.gguf");
    struct tiny_spec ts = {.dim = 16, .layers = 1, .heads = 2, .kv_heads = 1, .ff = 32, .vocab = 300, .ctx = 64,
                           .wtype = GGML_TYPE_F32, .seed = 3};
    cr_assert_eq(tiny_model_write(other, &ts), 0);
    rc = tu_run(&out, "%s perplexity --corpus %s --model %s", tu_aisle(), w.corpus, other);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "has 300 tokens in its vocabulary but the corpus"), "%s", out);
    cr_assert_not_null(strstr(out, "has 512: not the same tokenizer"), "%s", out);
    free(out);
    free(other);
    corpus_manifest_free(m);
    pworld_free(&w);
}

Test(lmeval_ppl, bad_corpus_and_usage, .timeout = 60)
{
    char *out = NULL, *dir = tu_tmpdir();
    const char *bin = tu_aisle();
    /* No manifest. */
    int rc = tu_run(&out, "%s perplexity --corpus %s --baselines --ctx 8", bin, dir);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "manifest.json"), "%s", out);
    free(out);
    /* A manifest that is not one. */
    char *man = tu_path(dir, "manifest.json");
    tu_write_str(man, "{\"format\": \"aisle-corpus\", \"version\": 1}");
    rc = tu_run(&out, "%s perplexity --corpus %s --baselines --ctx 8", bin, dir);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "manifest.json"), "%s", out);
    free(out);
    /* A valid manifest whose validation shard is truncated. */
    char *tr = tu_path(dir, "a.train.tok"), *va = tu_path(dir, "a.val.tok");
    /* Shards written by hand: header + ids (shard.h). */
    uint32_t ids[8] = {1, 2, 3, 1, 2, 3, 1, 0};
    unsigned char hdr[32] = "AISLETOK";
    uint32_t ver = 1, V = 4, nd = 1, z = 0;
    uint64_t nt = 8;
    memcpy(hdr + 8, &ver, 4);
    memcpy(hdr + 12, &V, 4);
    memcpy(hdr + 16, &nt, 8);
    memcpy(hdr + 24, &nd, 4);
    memcpy(hdr + 28, &z, 4);
    unsigned char file[64];
    memcpy(file, hdr, 32);
    memcpy(file + 32, ids, 32);
    tu_write(tr, file, 64);
    tu_write(va, file, 60); /* 4 bytes short */
    FILE *f = fopen(man, "w");
    fprintf(f,
            "{\"format\": \"aisle-corpus\", \"version\": 1, \"seed\": 1, \"val_frac\": 0.1, \"ranks\": 1, "
            "\"tokenizer\": {\"file\": \"tokenizer.gguf\", \"fnv1a64\": \"0000000000000000\", \"vocab_size\": 4, "
            "\"eos\": 0}, \"sources\": [{\"name\": \"a\", \"train\": {\"files\": [\"a.train.tok\"], \"docs\": 1, "
            "\"tokens\": 8}, \"val\": {\"files\": [\"a.val.tok\"], \"docs\": 1, \"tokens\": 8}}]}");
    fclose(f);
    rc = tu_run(&out, "%s perplexity --corpus %s --baselines --ctx 4", bin, dir);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "a.val.tok: offset"), "the truncated shard is named: %s", out);
    free(out);
    /* Whole: 2 windows of 4, 6 targets. */
    tu_write(va, file, 64);
    rc = tu_run(&out, "%s perplexity --corpus %s --baselines --ctx 4 --json 2>/dev/null", bin, dir);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "{\"source\": \"a\", \"val_tokens\": 8, \"windows\": 2, \"tokens\": 6"), "%s", out);
    free(out);
    /* A source with fewer tokens than a window: warned about and shown empty. */
    rc = tu_run(&out, "%s perplexity --corpus %s --baselines --ctx 16", bin, dir);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "source a has 8 validation tokens, fewer than one window of 16"), "%s", out);
    free(out);

    /* Usage errors exit 2 and name the problem. */
    struct {
        const char *args, *msg;
    } bad[] = {
        {"--corpus X", "--corpus needs --model, --baselines or both"},
        {"--corpus X --baselines", "--baselines without --model needs --ctx"},
        {"--corpus X --baselines --ctx 8 file.txt", "--corpus takes no TEXTFILE"},
        {"--model m.gguf --ctx 8 --json file.txt", "need --corpus"},
        {"--corpus X --baselines --ctx 1", "--ctx: expected a whole number from 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rc = tu_run(&out, "%s perplexity %s", bin, bad[i].args);
        cr_assert_eq(rc, 2, "%s: %s", bad[i].args, out);
        cr_assert_not_null(strstr(out, bad[i].msg), "%s: %s", bad[i].args, out);
        free(out);
    }
    rc = tu_run(&out, "%s perplexity --help", bin);
    cr_assert_eq(rc, 0);
    cr_assert_not_null(strstr(out, "--baselines"), "%s", out);
    free(out);
    free(man);
    free(tr);
    free(va);
    tu_rmdir(dir);
}
