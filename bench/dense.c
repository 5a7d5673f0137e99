/*
 * bench/dense.c — exact dense search at store scale: 1M review vectors and
 * 500k catalog vectors (100k products x 5 passages), D = 128, int8.
 *
 * Design: the vectors are written straight into a fresh store's
 * passage_vectors table (random unit vectors: the scan's cost does not depend
 * on their values) with the shipped encoder installed, loaded with
 * dense_index_load exactly as hybrid search loads them, then queried with
 * real question embeddings. Each configuration is timed per query (p50, p99)
 * next to its baseline in the same run: the same search on the portable
 * scalar kernel (tensor_set_path(TENSOR_PATH_SCALAR)).
 *
 * With --store DB (a store with vectors, e.g. bench/retrieve's 100k-product /
 * 1M-review store), it times instead hybrid_search against lex_search (the
 * baseline) on the same questions in the same run: catalog-wide over all
 * sources, and restricted to one product.
 *
 * With --embed DB (a store with an encoder), it times passage embedding:
 * the reference path against the fast one, on one thread and on all cores,
 * on the same passages in the same run (--embed-n N passages, default 200k).
 *
 * Output: `name value unit` lines on stdout; `#` lines are context.
 * Usage: dense [--reviews N] [--catalog N] [--queries N] [--store DB]
 *              [--embed DB [--embed-n N]]
 */
#include "core/buf.h"
#include "core/error.h"
#include "retrieval/dense.h"
#include "retrieval/encoder.h"
#include "retrieval/hybrid.h"
#include "retrieval/lexical.h"
#include "store/store.h"
#include "tensor/tensor.h"

#include <math.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rs = 88172645463325252ull;
static double gauss(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    double u1 = ((double)(rs >> 11) + 0.5) / 9007199254740992.0;
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    double u2 = ((double)(rs >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench/dense: %s: %s\n", what, err);
    exit(1);
}

static const char *const questions[] = {
    "will this crisper drawer fit my frigidaire", "is it waterproof", "how long is the cord",
    "does it work with ps4", "what is the age range", "is the tank dishwasher safe", "does it run small",
    "how loud is it", "what size should i order", "does it come with batteries",
};

static void run(const char *name, struct dense_index *ix, float *const *qv, size_t nq, unsigned mask, size_t k)
{
    double *t = malloc(nq * sizeof(double)), *c = malloc(nq * sizeof(double));
    struct dense_hit *hits = malloc(k * sizeof(*hits));
    size_t n;
    for (size_t i = 0; i < nq; i++) {
        double t0 = now(), c0 = cpu_now();
        if (dense_search(ix, qv[i % 10], mask, k, hits, &n))
            die("search", "failed");
        t[i] = (now() - t0) * 1e3;
        c[i] = (cpu_now() - c0) * 1e3;
    }
    qsort(t, nq, sizeof(double), cmp_d);
    qsort(c, nq, sizeof(double), cmp_d);
    /* wall time suffers from other processes on a shared machine; the
     * thread's CPU time much less so (cache and memory bandwidth still do) */
    printf("%s_p50 %.2f ms\n%s_p99 %.2f ms\n%s_cpu_p50 %.2f ms\n%s_cpu_p99 %.2f ms\n", name, t[nq / 2], name,
           t[(size_t)(nq * 0.99)], name, c[nq / 2], name, c[(size_t)(nq * 0.99)]);
    free(t);
    free(c);
    free(hits);
}

static void report(const char *name, double *t, size_t n)
{
    qsort(t, n, sizeof(double), cmp_d);
    printf("%s_p50 %.2f ms\n%s_p99 %.2f ms\n", name, t[n / 2], name, t[(size_t)((double)n * 0.99)]);
}

static int store_mode(const char *db, size_t nq)
{
    char err[1024];
    struct store *s;
    if (store_open(&s, db, STORE_READONLY, err, sizeof(err)))
        die("store", err);
    double t0 = now();
    struct hybrid *h;
    if (hybrid_open(&h, s, NULL, err, sizeof(err)))
        die("hybrid_open", err);
    printf("# store %s: %zu vectors; machine: %ld CPUs online, shared; kernel path %s\n", db, hybrid_nvectors(h),
           sysconf(_SC_NPROCESSORS_ONLN), tensor_path_name(tensor_path()));
    printf("hybrid_open %.2f s\n", now() - t0);
    /* products to filter by: spread over the table */
    char *pids[64];
    size_t np = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(store_db(s), "SELECT id FROM products WHERE rowid % 1500 = 7 LIMIT 64", -1, &st, NULL))
        die("products", sqlite3_errmsg(store_db(s)));
    while (np < 64 && sqlite3_step(st) == SQLITE_ROW)
        pids[np++] = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    /* variants: the full searcher, then without dense, without rerank */
    struct hybrid *hv[4] = {h, NULL, NULL, NULL};
    struct hybrid_opts vo[3] = {{.flags = HYBRID_NO_DENSE}, {.flags = HYBRID_NO_RERANK}, {.scan_max = SIZE_MAX}};
    for (int v = 0; v < 3; v++)
        if (hybrid_open(&hv[v + 1], s, &vo[v], err, sizeof(err)))
            die("hybrid_open", err);
    static const char *const vname[4] = {"hybrid", "hybrid_nodense", "hybrid_norerank", "hybrid_scanall"};
    double *tw[5], *tc[5];
    for (int v = 0; v < 5; v++) {
        tw[v] = malloc(nq * sizeof(double));
        tc[v] = malloc(nq * sizeof(double));
    }
    for (int filtered = 0; filtered < 2; filtered++) {
        for (size_t i = 0; i < nq; i++) {
            struct lex_query q = {.text = questions[i % 10], .k = 10,
                                  .product_id = filtered && np ? pids[i % np] : NULL};
            struct lex_hit *hits;
            size_t n;
            for (int v = 0; v < 5; v++) {
                double a = now(), c = cpu_now();
                int rc = v == 0 ? lex_search(s, &q, &hits, &n, err, sizeof(err))
                                : hybrid_search(hv[v - 1], &q, &hits, &n, err, sizeof(err));
                if (rc)
                    die("search", err);
                tw[v][i] = (now() - a) * 1e3;
                tc[v][i] = (cpu_now() - c) * 1e3;
                lex_hits_free(hits, n);
            }
        }
        for (int v = 0; v < 5; v++) {
            char name[96];
            snprintf(name, sizeof(name), "%s_%s", v ? vname[v - 1] : "bm25", filtered ? "product" : "all");
            report(name, tw[v], nq);
            snprintf(name, sizeof(name), "%s_%s_cpu", v ? vname[v - 1] : "bm25", filtered ? "product" : "all");
            report(name, tc[v], nq);
        }
    }
    for (int v = 0; v < 5; v++) {
        free(tw[v]);
        free(tc[v]);
    }
    for (int v = 1; v < 4; v++)
        hybrid_free(hv[v]);
    for (size_t i = 0; i < np; i++)
        free(pids[i]);
    hybrid_free(h);
    store_close(s);
    return 0;
}

/* ---- --embed DB: passage embedding throughput ---- */

struct embed_job {
    const struct encoder *e;
    char **texts;
    float *out; /* (n, D) */
    size_t n;
    atomic_size_t next;
};

static void embed_fn(void *ctx, int ith, int nth)
{
    (void)ith;
    (void)nth;
    struct embed_job *j = ctx;
    for (;;) {
        size_t i0 = atomic_fetch_add(&j->next, 64);
        if (i0 >= j->n)
            return;
        for (size_t i = i0; i < j->n && i < i0 + 64; i++)
            if (enc_embed(j->e, j->texts[i], strlen(j->texts[i]), j->out + i * (size_t)j->e->D))
                die("embed", "failed");
    }
}

/* Embed up to n passages of store db (their indexing text) three ways in the
 * same run: the reference path (enc_embed_reference: lex_terms, per-feature
 * FNV, nn_axpy_f32 per feature, one malloc pair per call) on one thread, the
 * fast path (enc_embed) on one thread, the same without the f16 copy of E
 * (the f32 bag kernel), and the fast path on every online CPU
 * through the thread pool, as dense_index_pending runs it. The vectors are
 * compared: bit-equal count and the largest difference. */
static int embed_mode(const char *db, size_t n)
{
    char err[1024];
    struct store *s;
    if (store_open(&s, db, STORE_READONLY, err, sizeof(err)))
        die("store", err);
    struct encoder *e;
    if (dense_get_encoder(s, &e, err, sizeof(err)))
        die("encoder", err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(store_db(s), "SELECT source, text, aux FROM passages ORDER BY id LIMIT ?1", -1, &st,
                           NULL))
        die("select", sqlite3_errmsg(store_db(s)));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)n);
    char **texts = malloc(n * sizeof(char *));
    size_t nt = 0, bytes = 0;
    struct buf b;
    buf_init(&b, 0);
    while (nt < n && sqlite3_step(st) == SQLITE_ROW) {
        const char *src = (const char *)sqlite3_column_text(st, 0), *t = (const char *)sqlite3_column_text(st, 1),
                   *aux = (const char *)sqlite3_column_text(st, 2);
        buf_reset(&b);
        if (dense_passage_text(&b, src ? src : "", t ? t : "", aux))
            die("text", "out of memory");
        texts[nt] = strdup(b.data ? b.data : "");
        bytes += b.len;
        nt++;
    }
    sqlite3_finalize(st);
    buf_release(&b);
    int D = e->D;
    float *ref = malloc(nt * (size_t)D * sizeof(float)), *fast = malloc(nt * (size_t)D * sizeof(float));
    float *par = malloc(nt * (size_t)D * sizeof(float));
    struct tpool *pool = tpool_new(0);
    printf("# embed: %zu passages (%.0f bytes mean) of %s; kernel path %s; %ld CPUs online, %d threads; the "
           "machine is shared\n",
           nt, nt ? (double)bytes / (double)nt : 0.0, db, tensor_path_name(tensor_path()),
           sysconf(_SC_NPROCESSORS_ONLN), tpool_nthreads(pool));
    double t0 = now(), c0 = cpu_now();
    for (size_t i = 0; i < nt; i++)
        if (enc_embed_reference(e, texts[i], strlen(texts[i]), ref + i * (size_t)D))
            die("embed", "failed");
    double tr = now() - t0, cr = cpu_now() - c0;
    t0 = now();
    c0 = cpu_now();
    for (size_t i = 0; i < nt; i++)
        if (enc_embed(e, texts[i], strlen(texts[i]), fast + i * (size_t)D))
            die("embed", "failed");
    double tf = now() - t0, cf = cpu_now() - c0;
    /* The fast path without the f16 copy of E (the f32 kernel, 8 cache lines
     * a row), into par: checked below, then overwritten by the threaded run. */
    uint16_t *e16 = e->E16;
    e->E16 = NULL;
    t0 = now();
    c0 = cpu_now();
    for (size_t i = 0; i < nt; i++)
        if (enc_embed(e, texts[i], strlen(texts[i]), par + i * (size_t)D))
            die("embed", "failed");
    double t32 = now() - t0, c32 = cpu_now() - c0;
    e->E16 = e16;
    if (memcmp(par, fast, nt * (size_t)D * sizeof(float)))
        die("embed", "the f32 and f16 kernels differ");
    struct embed_job job = {.e = e, .texts = texts, .out = par, .n = nt};
    atomic_init(&job.next, 0);
    t0 = now();
    tpool_run_dynamic(pool, embed_fn, &job);
    double tp = now() - t0;
    size_t same = 0;
    double maxd = 0;
    for (size_t i = 0; i < nt; i++) {
        const float *a = ref + i * (size_t)D, *f = fast + i * (size_t)D, *q = par + i * (size_t)D;
        same += !memcmp(a, f, (size_t)D * sizeof(float)) && !memcmp(a, q, (size_t)D * sizeof(float));
        for (int j = 0; j < D; j++) {
            double d = fabs((double)a[j] - f[j]), d2 = fabs((double)a[j] - q[j]);
            maxd = d > maxd ? d : maxd;
            maxd = d2 > maxd ? d2 : maxd;
        }
    }
    printf("embed_reference_1t %.0f passages/s\nembed_reference_1t_cpu %.2f us/passage\n", (double)nt / tr,
           cr * 1e6 / (double)nt);
    printf("embed_fast_1t %.0f passages/s\nembed_fast_1t_cpu %.2f us/passage\n", (double)nt / tf,
           cf * 1e6 / (double)nt);
    printf("embed_fast_f32_1t %.0f passages/s\nembed_fast_f32_1t_cpu %.2f us/passage\n", (double)nt / t32,
           c32 * 1e6 / (double)nt);
    printf("embed_fast_%dt %.0f passages/s\n", tpool_nthreads(pool), (double)nt / tp);
    printf("embed_speedup_1t %.2f x (cpu %.2f x)\nembed_speedup_%dt %.2f x\n", tr / tf, cr / cf,
           tpool_nthreads(pool), tr / tp);
    printf("embed_bit_equal %zu of %zu vectors\nembed_max_abs_diff %.3g\n", same, nt, maxd);
    tpool_free(pool);
    for (size_t i = 0; i < nt; i++)
        free(texts[i]);
    free(texts);
    free(ref);
    free(fast);
    free(par);
    enc_free(e);
    store_close(s);
    return 0;
}

int main(int argc, char **argv)
{
    size_t nrev = 1000000, ncat = 500000, nq = 200, nembed = 200000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--reviews"))
            nrev = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--catalog"))
            ncat = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--queries"))
            nq = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--embed-n"))
            nembed = (size_t)atol(argv[i + 1]);
    }
    for (int i = 1; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], "--store"))
            return store_mode(argv[i + 1], nq ? nq : 1);
        else if (!strcmp(argv[i], "--embed"))
            return embed_mode(argv[i + 1], nembed ? nembed : 1);
    char err[1024], path[] = "/tmp/aisle-bench-dense-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        die("mkstemp", "failed");
    close(fd);
    unlink(path);
    struct store *s;
    if (store_open(&s, path, 0, err, sizeof(err)))
        die("store", err);
    const char *root = getenv("AISLE_ROOT");
    char encp[1024];
    snprintf(encp, sizeof(encp), "%s/models/encoder-v1.bin", root ? root : ".");
    struct encoder *e;
    if (enc_load(&e, encp, err, sizeof(err)))
        die("encoder", err);
    struct buf eb;
    buf_init(&eb, 0);
    if (enc_write(e, &eb) || dense_set_encoder(s, eb.data, eb.len, err, sizeof(err)))
        die("install encoder", err);
    buf_release(&eb);
    int D = e->D;
    printf("# machine: %ld CPUs online, shared; kernel path %s; D=%d; %zu review + %zu catalog vectors\n",
           sysconf(_SC_NPROCESSORS_ONLN), tensor_path_name(tensor_path()), D, nrev, ncat);
    double t0 = now();
    sqlite3 *db = store_db(s);
    sqlite3_stmt *ins;
    if (store_begin(s) ||
        sqlite3_prepare_v2(db, "INSERT INTO passage_vectors(id, grp, vec) VALUES(?1, ?2, ?3)", -1, &ins, NULL))
        die("insert", sqlite3_errmsg(db));
    float *v = malloc((size_t)D * sizeof(float));
    unsigned char *blob = malloc(4 + (size_t)D);
    for (size_t i = 0; i < nrev + ncat; i++) {
        double n2 = 0;
        for (int j = 0; j < D; j++) {
            v[j] = (float)gauss();
            n2 += (double)v[j] * v[j];
        }
        for (int j = 0; j < D; j++)
            v[j] /= (float)sqrt(n2);
        float sc = nn_quantize_i8((int8_t *)blob + 4, v, D);
        memcpy(blob, &sc, 4);
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)i + 1);
        sqlite3_bind_int(ins, 2, i < nrev ? DENSE_REVIEWS : DENSE_CATALOG);
        sqlite3_bind_blob(ins, 3, blob, 4 + D, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            die("insert", sqlite3_errmsg(db));
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    if (store_commit(s))
        die("commit", store_errmsg(s));
    printf("write_vectors %.2f s\n", now() - t0);
    t0 = now();
    struct dense_index *ix;
    if (dense_index_load(&ix, s, err, sizeof(err)))
        die("load", err);
    printf("load_index %.2f s\n", now() - t0);
    printf("index_vectors %zu count\n", dense_index_size(ix));
    float *qv[10];
    for (int i = 0; i < 10; i++) {
        qv[i] = malloc((size_t)D * sizeof(float));
        enc_embed(e, questions[i], strlen(questions[i]), qv[i]);
    }
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && tensor_set_path(TENSOR_PATH_SCALAR))
            die("path", "scalar unavailable");
        const char *p = pass ? "scalar" : tensor_path_name(tensor_path());
        char name[128];
        snprintf(name, sizeof(name), "dense_reviews_k50_%s", p);
        run(name, ix, qv, nq, 1u << DENSE_REVIEWS, 50);
        snprintf(name, sizeof(name), "dense_catalog_k50_%s", p);
        run(name, ix, qv, nq, 1u << DENSE_CATALOG, 50);
        snprintf(name, sizeof(name), "dense_all_k50_%s", p);
        run(name, ix, qv, nq, (1u << DENSE_NGROUPS) - 1, 50);
    }
    dense_index_free(ix);
    enc_free(e);
    for (int i = 0; i < 10; i++)
        free(qv[i]);
    free(v);
    free(blob);
    store_close(s);
    char side[1100];
    unlink(path);
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
    return 0;
}
