/*
 * cli_test.c — the trainer end to end through the aisle program: corpus
 * build on the demo store (deterministic for a seed, the same documents
 * under mpirun), training with falling loss, the CSV and PNG, exact resume,
 * GGUF export that the engine loads and generates from, SFT with its mask,
 * data-parallel training over two MPI ranks against one process, and bad
 * checkpoints and manifests refused with clear messages.
 *
 * Every test builds its own small world in a temp directory: the demo store
 * ingested (~0.3 s), a 512-token BPE (~0.2 s), a corpus (~0.2 s).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../testutil.h"
#include "core/error.h"
#include "train/ckpt.h"
#include "train/corpus.h"
#include "train/data.h"
#include "train/llama_train.h"
#include "train/shard.h"

/* mpirun with 2 ranks; under ASan the children get LSan suppressions for
 * OpenMPI's own libraries only (tests/train/mpi.supp says why). */
#define MPIRUN                                                                                               \
    "LSAN_OPTIONS=suppressions=%s/tests/train/mpi.supp:print_suppressions=0:fast_unwind_on_malloc=0 "        \
    "mpirun --allow-run-as-root --oversubscribe -np 2 -x LSAN_OPTIONS -x ASAN_OPTIONS "

/* A tiny model that trains in well under a second per step here. */
#define TINY "--dim 32 --layers 2 --heads 4 --kv-heads 2 --ctx 32 --batch 4 --lr 3e-3 --warmup 3 --threads 1 " \
             "--eval-tokens 1024"

struct world {
    char *dir, *db, *tok, *corpus;
};

static void world_make(struct world *w, int with_corpus)
{
    char *out = NULL;
    w->dir = tu_tmpdir();
    w->db = tu_path(w->dir, "store.db");
    w->tok = tu_path(w->dir, "tok.gguf");
    w->corpus = tu_path(w->dir, "corpus");
    const char *root = tu_root(), *bin = tu_aisle();
    int rc = tu_run(&out,
                    "%s ingest --db %s --products %s/data/demo-store/products.jsonl.gz --reviews "
                    "%s/data/demo-store/reviews.jsonl.gz --qa %s/data/demo-store/qa.jsonl.gz",
                    bin, w->db, root, root, root);
    cr_assert_eq(rc, 0, "ingest: %s", out);
    free(out);
    rc = tu_run(&out, "%s tokenizer train --vocab 512 --db %s --out %s", bin, w->db, w->tok);
    cr_assert_eq(rc, 0, "tokenizer: %s", out);
    free(out);
    if (with_corpus) {
        rc = tu_run(&out, "%s corpus build --db %s --tokenizer %s --out %s --val-frac 0.05 --seed 7", bin, w->db,
                    w->tok, w->corpus);
        cr_assert_eq(rc, 0, "corpus: %s", out);
        free(out);
    }
}

static void world_free(struct world *w)
{
    free(w->db);
    free(w->tok);
    free(w->corpus);
    tu_rmdir(w->dir);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s missing", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc((size_t)len + 1);
    cr_assert_eq(fread(d, 1, (size_t)len, f), (size_t)len);
    d[len] = 0;
    fclose(f);
    if (n)
        *n = (size_t)len;
    return d;
}

/* Column col (0-based) of every data row of a CSV log, as strings joined by ';'. */
static char *csv_column(const char *path, int col)
{
    char *d = slurp(path, NULL), *out = calloc(1, strlen(d) + 1);
    char *line = strchr(d, '\n');
    while (line && line[1]) {
        line++;
        char *e = strchr(line, '\n');
        char *p = line;
        for (int c = 0; c < col && p; c++) {
            p = strchr(p, ',');
            p = p ? p + 1 : NULL;
        }
        cr_assert_not_null(p);
        size_t n = strcspn(p, ",\n");
        strncat(out, p, n);
        strcat(out, ";");
        line = e;
    }
    free(d);
    return out;
}

static int files_equal(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int eq = na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return eq;
}

Test(train_cli, corpus_build_deterministic_per_seed, .timeout = 60)
{
    struct world w;
    world_make(&w, 1);
    char *out = NULL, *c2 = tu_path(w.dir, "corpus2"), *c3 = tu_path(w.dir, "corpus3");
    const char *bin = tu_aisle();
    cr_assert_eq(tu_run(&out, "%s corpus build --db %s --tokenizer %s --out %s --val-frac 0.05 --seed 7 --threads 1",
                        bin, w.db, w.tok, c2),
                 0, "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "%s corpus build --db %s --tokenizer %s --out %s --val-frac 0.05 --seed 8", bin, w.db,
                        w.tok, c3),
                 0, "%s", out);
    free(out);
    const char *files[] = {"catalog.train.tok", "catalog.val.tok", "reviews.train.tok", "reviews.val.tok",
                           "qa.train.tok",      "qa.val.tok",      "manifest.json"};
    int differs = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *a = tu_path(w.corpus, files[i]), *b = tu_path(c2, files[i]), *c = tu_path(c3, files[i]);
        cr_assert(files_equal(a, b), "%s differs between two builds with seed 7 (2 threads vs 1)", files[i]);
        differs |= !files_equal(a, c);
        free(a);
        free(b);
        free(c);
    }
    cr_assert(differs, "seed 8 gave the same split as seed 7");

    struct corpus_manifest *m;
    char err[512];
    cr_assert_eq(corpus_manifest_load(&m, w.corpus, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m->n_sources, 3);
    cr_assert_str_eq(m->sources[0].name, "catalog");
    cr_assert_eq(m->sources[0].train.docs + m->sources[0].val.docs, 888, "one document per product");
    cr_assert_eq(m->sources[1].train.docs + m->sources[1].val.docs, 4186, "one document per review");
    long long q = tu_count(w.db, "SELECT count(*) FROM questions");
    cr_assert_eq((long long)(m->sources[2].train.docs + m->sources[2].val.docs), q, "one document per question");
    for (int i = 0; i < 3; i++) {
        double f = (double)m->sources[i].val.docs / (double)(m->sources[i].train.docs + m->sources[i].val.docs);
        cr_assert(f > 0.02 && f < 0.09, "%s: held-out fraction %.3f for --val-frac 0.05", m->sources[i].name, f);
    }
    cr_assert_eq(m->seed, 7);
    cr_assert_eq(m->vocab_size, 512);

    /* The documents' text: a catalog shard decodes to product titles, bullets and attributes. */
    cr_assert_eq(tu_run(&out, "%s detokenize --model %s/tokenizer.gguf $(od -An -v -tu4 -j32 -N400 %s/catalog.train.tok)",
                        bin, w.corpus, w.corpus),
                 0, "%s", out);
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open_v2(w.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT title FROM products ORDER BY id LIMIT 1", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    char title[41];
    snprintf(title, sizeof title, "%s", (const char *)sqlite3_column_text(st, 0));
    cr_assert(!strncmp(out, title, strlen(title)), "first catalog document '%s' should start with the first product's "
                                                    "title '%s'", out, title);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(out);
    corpus_manifest_free(m);

    /* Text files: a bad line is named with its file and line. */
    char *txt = tu_path(w.dir, "t.jsonl");
    tu_write_str(txt, "{\"text\": \"one document\"}\n\n{\"text\": 3}\n");
    cr_assert_eq(tu_run(&out, "%s corpus build --tokenizer %s --out %s --text other=%s", bin, w.tok, c3, txt), 1);
    cr_assert_not_null(strstr(out, "t.jsonl:3: no string member \"text\""), "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "%s corpus build --tokenizer %s --out %s --text Bad=%s", bin, w.tok, c3, txt), 2);
    free(out);
    free(txt);
    free(c2);
    free(c3);
    world_free(&w);
}

Test(train_cli, corpus_under_mpirun_matches, .timeout = 60)
{
    char *out = NULL;
    if (tu_run(&out, "command -v mpirun") != 0) {
        free(out);
        cr_skip_test("mpirun is not installed (openmpi-bin): the MPI corpus test cannot run");
    }
    free(out);
    struct world w;
    world_make(&w, 1);
    char *c2 = tu_path(w.dir, "corpus-mpi");
    int rc = tu_run(&out, MPIRUN "%s corpus build --db %s --tokenizer %s --out %s --val-frac 0.05 --seed 7 --threads 1",
                    tu_root(), tu_aisle(), w.db, w.tok, c2);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    struct corpus_manifest *a, *b;
    char err[512];
    cr_assert_eq(corpus_manifest_load(&a, w.corpus, err, sizeof err), 0, "%s", err);
    cr_assert_eq(corpus_manifest_load(&b, c2, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b->ranks, 2);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(b->sources[i].train.n_files, 2);
        cr_assert_eq(a->sources[i].train.docs, b->sources[i].train.docs, "%s", a->sources[i].name);
        cr_assert_eq(a->sources[i].train.tokens, b->sources[i].train.tokens, "%s", a->sources[i].name);
        cr_assert_eq(a->sources[i].val.docs, b->sources[i].val.docs, "%s", a->sources[i].name);
        cr_assert_eq(a->sources[i].val.tokens, b->sources[i].val.tokens, "%s", a->sources[i].name);
    }
    /* And training reads a two-rank corpus. */
    char *run = tu_path(w.dir, "run");
    rc = tu_run(&out, "%s train --corpus %s --out %s " TINY " --steps 2 --export 0 --plot 0", tu_aisle(), c2, run);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    corpus_manifest_free(a);
    corpus_manifest_free(b);
    free(run);
    free(c2);
    world_free(&w);
}

Test(train_cli, trains_logs_plots_exports, .timeout = 60)
{
    struct world w;
    world_make(&w, 1);
    char *out = NULL, *run = tu_path(w.dir, "run");
    int rc = tu_run(&out,
                    "%s train --corpus %s --out %s " TINY
                    " --steps 40 --eval-every 20 --mix catalog=0.5,reviews=0.25,qa=0.25 --name tiny",
                    tu_aisle(), w.corpus, run);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "step 40/40 | loss "), "progress line: %s", out);
    cr_assert_not_null(strstr(out, "tok/s"), "%s", out);
    cr_assert_not_null(strstr(out, "ETA"), "%s", out);
    free(out);

    char *csv = tu_path(run, "log.csv");
    char *head = slurp(csv, NULL);
    static const char want_head[] =
        "step,tokens,loss,lr,grad_norm,tokens_per_s,elapsed_s,val_catalog,val_reviews,val_qa\n";
    cr_assert(!strncmp(head, want_head, strlen(want_head)), "%s", head);
    free(head);
    char *loss = csv_column(csv, 2), *val = csv_column(csv, 7);
    /* The first and last five steps' mean loss: falling by a clear margin. */
    double l[40];
    int n = 0;
    for (char *p = loss; *p && n < 40; n++) {
        l[n] = strtod(p, &p);
        p++;
    }
    cr_assert_eq(n, 40, "40 rows");
    double first = 0, last = 0;
    for (int i = 0; i < 5; i++) {
        first += l[i] / 5;
        last += l[35 + i] / 5;
    }
    cr_assert(fabs(first - log(512.0)) < 0.3, "initial loss %.3f should be near ln 512 = 6.24", first);
    cr_assert(last < first - 0.5, "loss fell from %.3f to only %.3f", first, last);
    /* Validation at steps 20 and 40 only. */
    int vals = 0;
    for (char *p = val; *p; p++)
        vals += *p != ';' && (p == val || p[-1] == ';');
    cr_assert_eq(vals, 2, "val_catalog column: %s", val);
    free(loss);
    free(val);

    char *png = tu_path(run, "loss.png");
    if (tu_run(NULL, "command -v gnuplot") == 0) {
        size_t pn;
        char *p = slurp(png, &pn);
        cr_assert(pn > 1000 && !memcmp(p, "\x89PNG", 4), "loss.png is not a PNG");
        free(p);
    } else {
        cr_log_warn("gnuplot is not installed: loss.png not checked");
    }
    free(png);

    /* Both exports load in the engine and generate. */
    const char *models[] = {"model.gguf", "model-q8_0.gguf"};
    for (int i = 0; i < 2; i++) {
        char *mp = tu_path(run, models[i]);
        rc = tu_run(&out, "%s model info %s", tu_aisle(), mp);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert_not_null(strstr(out, i ? "q8_0" : "f32"), "%s: %s", models[i], out);
        free(out);
        rc = tu_run(&out, "%s generate --model %s -n 8 --temp 0 --threads 1 'Question: does it fit'", tu_aisle(), mp);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert_not_null(strstr(out, "generated"), "%s", out);
        free(out);
        free(mp);
    }
    free(csv);
    free(run);
    world_free(&w);
}

Test(train_cli, resume_equals_uninterrupted, .timeout = 60)
{
    struct world w;
    world_make(&w, 1);
    char *out = NULL, *a = tu_path(w.dir, "a"), *b = tu_path(w.dir, "b");
    const char *bin = tu_aisle();
    int rc = tu_run(&out, "%s train --corpus %s --out %s " TINY " --steps 14 --eval-every 4 --export 0 --plot 0", bin,
                    w.corpus, a);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    /* Stopped at step 6 (a checkpoint), then resumed in a second process. */
    rc = tu_run(&out, "%s train --corpus %s --out %s " TINY " --steps 14 --eval-every 4 --stop-at 6 --export 0 --plot 0",
                bin, w.corpus, b);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "stopped at step 6 of 14"), "%s", out);
    free(out);
    char *ck = tu_path(b, "ckpt.bin");
    rc = tu_run(&out, "%s train --resume %s --plot 0 --export 0", bin, ck);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "from step 6"), "%s", out);
    free(out);
    /* A shape change is refused on resume. */
    rc = tu_run(&out, "%s train --resume %s --dim 64", bin, ck);
    cr_assert_eq(rc, 2, "%s", out);
    cr_assert_not_null(strstr(out, "--dim cannot change on --resume"), "%s", out);
    free(out);

    char *ca = tu_path(a, "log.csv"), *cb = tu_path(b, "log.csv");
    int cols[] = {0, 1, 2, 3, 4, 7, 8, 9}; /* all but tokens/s and elapsed */
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) {
        char *x = csv_column(ca, cols[i]), *y = csv_column(cb, cols[i]);
        cr_assert_str_eq(x, y, "column %d after resume differs:\n%s\n%s", cols[i], x, y);
        free(x);
        free(y);
    }
    /* And the final parameters and optimizer state are the same bits. */
    char *ka = tu_path(a, "ckpt.bin");
    struct ckpt *p, *q;
    char err[512];
    cr_assert_eq(ckpt_open(&p, ka, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ckpt_open(&q, ck, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p->st.step, 14);
    cr_assert_eq(q->st.step, 14);
    cr_assert_eq(p->st.rng, q->st.rng);
    cr_assert(!memcmp(p->params, q->params, 4 * p->n_params * 3), "parameters or AdamW state differ");
    ckpt_close(p);
    ckpt_close(q);
    free(ka);
    free(ca);
    free(cb);
    free(ck);
    free(a);
    free(b);
    world_free(&w);
}

Test(train_cli, mpirun_two_ranks_match_one_process, .timeout = 120)
{
    char *out = NULL;
    if (tu_run(&out, "command -v mpirun") != 0) {
        free(out);
        cr_skip_test("mpirun is not installed (openmpi-bin): the 2-rank training test cannot run");
    }
    free(out);
    struct world w;
    world_make(&w, 1);
    char *one = tu_path(w.dir, "one"), *two = tu_path(w.dir, "two");
    /* One process: micro-batches of 2 rows, so the same rows meet the same
     * kernels as on each rank; only the order of the gradient sums differs. */
    int rc = tu_run(&out, "%s train --corpus %s --out %s " TINY " --micro-batch 2 --steps 8 --eval-every 4 --plot 0",
                    tu_aisle(), w.corpus, one);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    rc = tu_run(&out, MPIRUN "%s train --corpus %s --out %s " TINY " --steps 8 --eval-every 4 --plot 0", tu_root(),
                tu_aisle(), w.corpus, two);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "2 processes x 1 micro-batches of 2"), "%s", out);
    free(out);
    char *ca = tu_path(one, "log.csv"), *cb = tu_path(two, "log.csv");
    /* Losses and validation losses: equal to a relative 1e-5 (float sums in
     * another order: the allreduce adds two partial gradients that one
     * process accumulates in place; after 8 AdamW steps the losses agree to
     * about 1e-7 here). */
    int cols[] = {2, 7, 8, 9};
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) {
        char *x = csv_column(ca, cols[i]), *y = csv_column(cb, cols[i]);
        char *p = x, *q = y;
        int n = 0;
        while (*p && *q) {
            if (*p == ';' || *q == ';') {
                cr_assert(*p == ';' && *q == ';', "column %d: %s vs %s", cols[i], x, y);
                p++, q++;
                continue;
            }
            double u = strtod(p, &p), v = strtod(q, &q);
            cr_assert(fabs(u - v) <= 1e-5 * fabs(u), "column %d row %d: one process %.9g, two ranks %.9g", cols[i],
                      n, u, v);
            n++;
        }
        cr_assert(n > 0);
        free(x);
        free(y);
    }
    /* The exported weights too: within 1e-4 of the largest weight. */
    char *ma = tu_path(one, "model.gguf"), *mb = tu_path(two, "model.gguf");
    size_t na, nb;
    char *x = slurp(ma, &na), *y = slurp(mb, &nb);
    cr_assert_eq(na, nb);
    /* Same header and layout; compare the tail as floats (the tensor data, 4-byte aligned at the end). */
    size_t nf = (na - na % 4) / 4 / 2;
    const float *fx = (const float *)(const void *)(x + na - nf * 4), *fy = (const float *)(const void *)(y + nb - nf * 4);
    float mx = 0, md = 0;
    for (size_t i = 0; i < nf; i++) {
        mx = fmaxf(mx, fabsf(fx[i]));
        md = fmaxf(md, fabsf(fx[i] - fy[i]));
    }
    cr_assert(md <= 1e-4f * mx, "weights differ by %g (largest %g)", md, mx);
    free(x);
    free(y);
    free(ma);
    free(mb);
    free(ca);
    free(cb);
    free(one);
    free(two);
    world_free(&w);
}

/* SFT: the batch carries the mask as weights (shifted to the targets), padding
 * weighs 0, and the loss is the mean over the weighted positions only. */
Test(train_cli, sft_mask_respected, .timeout = 60)
{
    struct world w;
    world_make(&w, 1);
    char err[512];
    char *sft = tu_path(w.dir, "x.sft");
    struct shard_writer *sw;
    cr_assert_eq(shard_writer_open(&sw, sft, SHARD_SFT, 512, -1, err, sizeof err), 0, "%s", err);
    int32_t ids[40];
    uint8_t mask[40];
    for (int e = 0; e < 6; e++) {
        int n = 10 + 5 * e;
        for (int i = 0; i < n; i++) {
            ids[i] = (e * 37 + i * 11) % 500;
            mask[i] = i >= n / 2; /* the second half is the "assistant" */
        }
        cr_assert_eq(shard_writer_add_example(sw, ids, mask, (size_t)n), 0);
    }
    cr_assert_eq(shard_writer_finish(sw, err, sizeof err), 0, "%s", err);

    struct tdata d;
    memset(&d, 0, sizeof d);
    d.eos = 1;
    cr_assert_eq(tdata_add_sft(&d, sft, 1.0, err, sizeof err), 0, "%s", err);
    d.rng = 5;
    enum { B = 8, T = 24 };
    int32_t tok[B * T], tgt[B * T];
    float wt[B * T];
    tdata_next_batch(&d, B, T, 0, B, tok, tgt, wt);
    for (int b = 0; b < B; b++) {
        /* Find the example this row holds (by its first two tokens). */
        int e = -1;
        for (int k = 0; k < 6; k++)
            if (tok[b * T] == (k * 37) % 500 && tok[b * T + 1] == (k * 37 + 11) % 500)
                e = k;
        cr_assert_geq(e, 0, "row %d is no example", b);
        int n = 10 + 5 * e;
        for (int t = 0; t < T; t++) {
            float want = t + 1 < n ? (float)(t + 1 >= n / 2) : 0.0f;
            cr_assert_eq(wt[b * T + t], want, "row %d (example %d) position %d weight %g", b, e, t, wt[b * T + t]);
            if (t + 1 < n)
                cr_assert_eq(tgt[b * T + t], (e * 37 + (t + 1) * 11) % 500);
        }
    }
    /* The loss is the mean over weighted positions of the per-position losses. */
    struct ltr_config cfg = {.V = 512, .C = 16, .L = 1, .NH = 2, .NKV = 2, .F = 32, .max_ctx = T, .tied = 1};
    struct ltr_model *m;
    cr_assert_eq(ltr_model_new(&m, &cfg, B, T, 1), 0);
    ltr_init(m, 3, 0.5f);
    float loss;
    cr_assert_eq(ltr_forward(m, tok, tgt, wt, B, T, &loss), 0);
    double num = 0, den = 0;
    for (int i = 0; i < B * T; i++) {
        num += (double)wt[i] * m->acts.losses[i];
        den += wt[i];
    }
    cr_assert(fabs(loss - num / den) < 1e-5 * fabs(loss), "loss %g, masked mean %g", loss, num / den);
    float unmasked;
    cr_assert_eq(ltr_forward(m, tok, tgt, NULL, B, T, &unmasked), 0);
    cr_assert(fabs(unmasked - loss) > 1e-4, "the mask changed nothing");
    ltr_model_free(m);
    tdata_close(&d);

    /* And through the command: fine-tune the pretrained tiny model on it. */
    char *out = NULL, *run = tu_path(w.dir, "run"), *ft = tu_path(w.dir, "ft");
    int rc = tu_run(&out, "%s train --corpus %s --out %s " TINY " --steps 2 --plot 0", tu_aisle(), w.corpus, run);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    rc = tu_run(&out, "%s train --init %s/model.gguf --sft %s@2 --out %s --ctx 24 --batch 4 --steps 3 --threads 1 --plot 0",
                tu_aisle(), run, sft, ft);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "step 3/3"), "%s", out);
    free(out);
    char *mp = tu_path(ft, "model-q8_0.gguf");
    rc = tu_run(&out, "%s generate --model %s -n 4 --temp 0 --threads 1 hello", tu_aisle(), mp);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    free(mp);
    free(run);
    free(ft);
    free(sft);
    world_free(&w);
}

Test(train_cli, bad_checkpoints_and_manifests, .timeout = 30)
{
    char err[512];
    struct ckpt *c;
    uint8_t h[CKPT_HEADER_SIZE + 16] = "AISLECKP";
    cr_assert_eq(ckpt_open_mem(&c, h, 10, "x.ckpt", err, sizeof err), AISLE_EFORMAT);
    cr_assert_not_null(strstr(err, "x.ckpt: offset 10: "), "%s", err);
    h[8] = 1;
    h[16] = 5; /* 5 params need 60 bytes; 16 remain */
    cr_assert_eq(ckpt_open_mem(&c, h, sizeof h, "x.ckpt", err, sizeof err), AISLE_EFORMAT);
    cr_assert_not_null(strstr(err, "offset 16: n_params 5"), "%s", err);
    memcpy(h, "AISLEXXX", 8);
    cr_assert_eq(ckpt_open_mem(&c, h, sizeof h, "x.ckpt", err, sizeof err), AISLE_EFORMAT);
    cr_assert_not_null(strstr(err, "bad magic"), "%s", err);

    struct corpus_manifest *m;
    const char *bad[] = {
        "[]",
        "{\"format\": \"aisle-corpus\", \"version\": 2}",
        "{\"format\": \"aisle-corpus\", \"version\": 1, \"seed\": 1, \"val_frac\": 0.1, \"ranks\": 1, \"tokenizer\": "
        "{\"file\": \"../t.gguf\"}}",
    };
    const char *want[] = {"top level", "version", "tokenizer"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(corpus_manifest_parse(&m, bad[i], strlen(bad[i]), "m.json", err, sizeof err), AISLE_EFORMAT);
        cr_assert_not_null(strstr(err, want[i]), "%s", err);
    }
    char *out = NULL;
    char *dir = tu_tmpdir();
    int rc = tu_run(&out, "%s train --corpus %s --out %s/run --steps 1", tu_aisle(), dir, dir);
    cr_assert_eq(rc, 1);
    cr_assert_not_null(strstr(out, "manifest.json"), "%s", out);
    free(out);
    rc = tu_run(&out, "%s train --corpus %s --out %s/run --steps 1 --bogus 3", tu_aisle(), dir, dir);
    cr_assert_eq(rc, 2, "%s", out);
    free(out);
    tu_rmdir(dir);
}

/* A --config file gives the options (command line wins), and its errors name file and line. */
Test(train_cli, config_file, .timeout = 60)
{
    struct world w;
    world_make(&w, 1);
    char *conf = tu_path(w.dir, "run.conf"), *bad = tu_path(w.dir, "bad.conf"), *run = tu_path(w.dir, "run");
    tu_write_str(conf, "# tiny\ndim = 32\nlayers = 1\nheads = 2\nctx = 16\nbatch = 2\nsteps = 50   # overridden\n"
                       "threads = 1\neval-tokens = 256\nplot = 0\nexport = 0\n");
    tu_write_str(bad, "dim = 32\n\nlayres = 2\n");
    char *out = NULL;
    int rc = tu_run(&out, "%s train --config %s --corpus %s --out %s --steps 3", tu_aisle(), conf, w.corpus, run);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "C 32, L 1, NH 2"), "%s", out);
    cr_assert_not_null(strstr(out, "step 3/3"), "the command line's --steps 3 wins: %s", out);
    free(out);
    rc = tu_run(&out, "%s train --config %s --corpus %s --out %s --steps 3", tu_aisle(), bad, w.corpus, run);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "bad.conf:3: unknown option 'layres'"), "%s", out);
    free(out);
    free(conf);
    free(bad);
    free(run);
    world_free(&w);
}

/* SIGTERM mid-run: the step finishes, a checkpoint is written, exit 0; the run resumes from it. */
Test(train_cli, sigterm_checkpoints_and_resumes, .timeout = 90)
{
    struct world w;
    world_make(&w, 1);
    char *run = tu_path(w.dir, "run"), *out = NULL;
    int rc = tu_run(&out,
                    "%s train --corpus %s --out %s " TINY " --steps 100000 --eval-every 0 --plot 0 --export 0 & pid=$!; "
                    "n=0; while [ \"$(cat %s/log.csv 2>/dev/null | wc -l)\" -lt 4 ] && [ $n -lt 600 ]; do "
                    "sleep 0.1; n=$((n+1)); done; kill -TERM $pid; wait $pid",
                    tu_aisle(), w.corpus, run, run);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "stopped at step"), "%s", out);
    free(out);
    char *ck = tu_path(run, "ckpt.bin");
    struct ckpt *c;
    char err[512];
    cr_assert_eq(ckpt_open(&c, ck, err, sizeof err), 0, "%s", err);
    uint64_t step = c->st.step;
    cr_assert_geq(step, 3);
    ckpt_close(c);
    rc = tu_run(&out, "%s train --resume %s --steps %llu --plot 0 --export 0", tu_aisle(), ck,
                (unsigned long long)step + 2);
    cr_assert_eq(rc, 0, "%s", out);
    char want[64];
    snprintf(want, sizeof want, "from step %llu", (unsigned long long)step);
    cr_assert_not_null(strstr(out, want), "%s", out);
    free(out);
    free(ck);
    free(run);
    world_free(&w);
}

/* ---- preference tuning (--prefs) ------------------------------------------------ */

static const char *const pref_questions[] = {"does it fit a frigidaire", "is it waterproof", "how long is the cable",
                                             "is it good for kids",      "does it need batteries", "what colour is it",
                                             "is it dishwasher safe",    "how heavy is it",   "is the lid glass",
                                             "does it come with a case", "is it loud",        "can it go outside"};
#define N_PREF_Q (sizeof pref_questions / sizeof *pref_questions)

/* DPO pairs (and the same as KTO rows: chosen up, rejected down) in the
 * chat's prompt format, plus one pair too long for --ctx 48. */
static void write_prefs(const char *dpo, const char *kto)
{
    FILE *f = fopen(dpo, "w"), *g = fopen(kto, "w");
    cr_assert(f && g);
    for (size_t i = 0; i < N_PREF_Q; i++) {
        char p[256];
        snprintf(p, sizeof p, "<|user|>\\n%s?<|end|>\\n<|assistant|>\\n", pref_questions[i]);
        fprintf(f, "{\"prompt\": \"%s\", \"chosen\": \"Yes, reviewers say so [1].\", \"rejected\": \"The "
                   "weather is cold today.\", \"chosen_id\": \"a%zu\"}\n",
                p, i);
        fprintf(g, "{\"prompt\": \"%s\", \"completion\": \"Yes, reviewers say so [1].\", \"label\": true}\n", p);
        fprintf(g, "{\"prompt\": \"%s\", \"completion\": \"The weather is cold today.\", \"label\": false}\n", p);
    }
    fputs("{\"prompt\": \"<|user|>\\n", f);
    for (int i = 0; i < 60; i++)
        fputs("a very long question ", f);
    fputs("<|end|>\\n<|assistant|>\\n\", \"chosen\": \"Yes.\", \"rejected\": \"No.\"}\n", f);
    fclose(f);
    fclose(g);
}

/* The numbers of a CSV column ("" for an empty cell: NAN). */
static int csv_numbers(const char *path, int col, double *v, int max)
{
    char *c = csv_column(path, col), *p = c;
    int n = 0;
    while (*p && n < max) {
        v[n++] = *p == ';' ? NAN : strtod(p, &p);
        p = strchr(p, ';');
        if (!p)
            break;
        p++;
    }
    free(c);
    return n;
}

#define PREF_ARGS "--ctx 48 --batch 4 --lr 3e-3 --warmup 2 --threads 1 --plot 0"

/* The demo-store world, a tiny model pretrained for steps (run/model.gguf),
 * and the preference files. */
static void pref_world(struct world *w, int steps, char **run, char **dpo, char **kto)
{
    world_make(w, 1);
    char *out = NULL;
    *run = tu_path(w->dir, "run");
    *dpo = tu_path(w->dir, "dpo.jsonl");
    *kto = tu_path(w->dir, "kto.jsonl");
    int rc = tu_run(&out, "%s train --corpus %s --out %s " TINY " --steps %d --plot 0", tu_aisle(), w->corpus, *run,
                    steps);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    write_prefs(*dpo, *kto);
}

Test(train_cli, prefs_dpo_and_kto_learn_resume_and_export, .timeout = 120)
{
    struct world w;
    char *run, *dpo, *kto, *out = NULL;
    pref_world(&w, 2, &run, &dpo, &kto);
    const char *bin = tu_aisle();
    char *a = tu_path(w.dir, "pa"), *b = tu_path(w.dir, "pb"), *k = tu_path(w.dir, "pk");
    int rc = tu_run(&out, "%s train --init %s/model.gguf --prefs %s --pref-val %s --out %s " PREF_ARGS
                      " --steps 16 --eval-every 8",
                bin, run, dpo, dpo, a);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "12 DPO pairs, 1 skipped (over 49 tokens); 12 held out; the reference scored in"),
                       "%s", out);
    cr_assert_not_null(strstr(out, "step 16/16 | loss "), "%s", out);
    cr_assert_not_null(strstr(out, "| val loss "), "%s", out);
    free(out);
    char *ca = tu_path(a, "log.csv"), *head = slurp(ca, NULL);
    static const char want[] =
        "step,tokens,loss,lr,grad_norm,tokens_per_s,elapsed_s,acc,margin,val_loss,val_acc,val_margin\n";
    cr_assert(!strncmp(head, want, strlen(want)), "%s", head);
    free(head);
    double loss[16], vloss[16], vacc[16];
    cr_assert_eq(csv_numbers(ca, 2, loss, 16), 16);
    csv_numbers(ca, 9, vloss, 16);
    csv_numbers(ca, 10, vacc, 16);
    cr_assert(fabs(loss[0] - log(2.0)) < 1e-4, "step 1 is at the reference: loss %g, want ln 2", loss[0]);
    cr_assert(isnan(vloss[0]) && !isnan(vloss[7]) && !isnan(vloss[15]), "held-out at steps 8 and 16");
    cr_assert(vloss[15] < 0.5 && vacc[15] == 1.0, "held-out loss %g (from ln 2), accuracy %g", vloss[15], vacc[15]);
    cr_log_info("DPO: loss %g -> %g, held-out %g, accuracy %g", loss[0], loss[15], vloss[15], vacc[15]);

    /* Stopped at step 6, resumed: the same run. */
    rc = tu_run(&out, "%s train --init %s/model.gguf --prefs %s --pref-val %s --out %s " PREF_ARGS
                      " --steps 16 --eval-every 8 --stop-at 6",
                bin, run, dpo, dpo, b);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    char *ck = tu_path(b, "ckpt.bin");
    rc = tu_run(&out, "%s train --resume %s", bin, ck);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "from step 6"), "%s", out);
    cr_assert_not_null(strstr(out, "the reference's scores from "), "a resume reads the kept scores: %s", out);
    free(out);
    char *cb = tu_path(b, "log.csv");
    int cols[] = {0, 1, 2, 3, 4, 7, 8, 9, 10, 11};
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) {
        char *x = csv_column(ca, cols[i]), *y = csv_column(cb, cols[i]);
        cr_assert_str_eq(x, y, "column %d after resume differs:\n%s\n%s", cols[i], x, y);
        free(x);
        free(y);
    }
    /* The tuned model loads and generates. */
    rc = tu_run(&out, "%s generate --model %s/model-q8_0.gguf -n 4 --temp 0 --threads 1 hello", bin, a);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);

    /* KTO on the same votes as single thumbs. */
    rc = tu_run(&out, "%s train --init %s/model.gguf --prefs %s --pref-val %s --out %s " PREF_ARGS
                      " --steps 16 --eval-every 16 --export 0",
                bin, run, kto, kto, k);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "24 KTO rows (12 up, 12 down); 24 held out"), "%s", out);
    free(out);
    char *ck2 = tu_path(k, "log.csv");
    cr_assert_eq(csv_numbers(ck2, 2, loss, 16), 16);
    csv_numbers(ck2, 9, vloss, 16);
    csv_numbers(ck2, 10, vacc, 16);
    cr_assert(fabs(loss[0] - 0.5) < 1e-4, "KTO at the reference: loss %g, want 0.5", loss[0]);
    cr_assert(vloss[15] < 0.4 && vacc[15] >= 0.9, "KTO held-out loss %g, accuracy %g", vloss[15], vacc[15]);
    cr_log_info("KTO: loss %g -> %g, held-out %g, accuracy %g", loss[0], loss[15], vloss[15], vacc[15]);
    free(ck2);
    free(ck);
    free(ca);
    free(cb);
    free(run);
    free(dpo);
    free(kto);
    free(a);
    free(b);
    free(k);
    world_free(&w);
}

Test(train_cli, prefs_bad_input_named, .timeout = 60)
{
    struct world w;
    char *run, *dpo, *kto, *out = NULL;
    pref_world(&w, 1, &run, &dpo, &kto);
    const char *bin = tu_aisle();
    char *bad = tu_path(w.dir, "bad.jsonl"), *o = tu_path(w.dir, "o");
    int rc;
    struct {
        const char *text, *msg;
    } files[] = {
        {"{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{oops\n", "bad.jsonl:2: "},
        {"{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"prompt\": \"p\", \"completion\": \"a\", "
         "\"label\": true}\n",
         "bad.jsonl:2: a KTO row in a file of DPO pairs"},
        {"{\"prompt\": \"p\", \"completion\": \"a\", \"label\": 1}\n", "bad.jsonl:1: a KTO row needs a string"},
        {"{\"prompt\": \"\", \"chosen\": \"a\", \"rejected\": \"b\"}\n", "bad.jsonl:1: an empty \"prompt\""},
        {"{\"prompt\": \"p\", \"chosen\": \"a\"}\n", "bad.jsonl:1: a DPO pair needs strings"},
        {"[1, 2]\n", "bad.jsonl:1: not a JSON object"},
        {"{\"prompt\": \"p\", \"chosen\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n", "bad.jsonl:1: "},
        {"\n\n", "no example fits"},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        tu_write_str(bad, files[i].text);
        rc = tu_run(&out, "%s train --init %s/model.gguf --prefs %s --out %s " PREF_ARGS " --steps 1", bin, run, bad,
                    o);
        cr_assert_eq(rc, 1, "case %zu: %s", i, out);
        cr_assert_not_null(strstr(out, files[i].msg), "case %zu: %s", i, out);
        free(out);
    }
    rc = tu_run(&out, "%s train --init %s/model.gguf --prefs %s --out %s --ctx 4 --steps 1", bin, run, dpo, o);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "no example fits a context of 5 tokens (13 read)"), "%s", out);
    free(out);
    rc = tu_run(&out, "%s train --init %s/model.gguf --prefs %s --pref-val %s --out %s " PREF_ARGS " --steps 1", bin,
                run, dpo, kto, o);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "holds KTO rows, --prefs DPO"), "%s", out);
    free(out);
    struct {
        const char *args, *msg;
    } use[] = {
        {"--prefs x.jsonl --out o --steps 1", "--prefs needs --init"},
        {"--init m.gguf --prefs x.jsonl --corpus c --out o --steps 1", "no --corpus or --sft with it"},
        {"--init m.gguf --prefs x.jsonl --out o --tokens 100", "--prefs counts --steps"},
        {"--corpus c --pref-val x.jsonl --out o --steps 1", "--pref-val goes with --prefs"},
        {"--init m.gguf --prefs x.jsonl --out o --steps 1 --beta 0", "--beta: bad value '0'"},
    };
    for (size_t i = 0; i < sizeof use / sizeof *use; i++) {
        rc = tu_run(&out, "%s train %s", bin, use[i].args);
        cr_assert_eq(rc, 2, "%s: %s", use[i].args, out);
        cr_assert_not_null(strstr(out, use[i].msg), "%s: %s", use[i].args, out);
        free(out);
    }
    free(run);
    free(dpo);
    free(kto);
    free(bad);
    free(o);
    world_free(&w);
}
