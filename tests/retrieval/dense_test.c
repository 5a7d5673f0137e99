/*
 * dense_test.c — the int8 dot kernel against its reference, the encoder
 * (features, file reader, embedding, a finite-difference check of the
 * training gradient, training that learns), and passage vectors in the store
 * (indexing after ingest, deletion with passages, search, refresh).
 */
#include "../testutil.h"

#include "core/error.h"
#include "retrieval/dense.h"
#include "store/ingest.h"
#include "store/store.h"
#include "tensor/tensor.h"

/* The training internals (batch_loss_grad, table_build) for the gradient check. */
#include "../../src/retrieval/encoder.c"

#include <math.h>
#include <sqlite3.h>

static uint64_t rs = 12345;

static int8_t rnd_i8(void)
{
    return (int8_t)(rng_next(&rs) % 255) - 127; /* -127..127 */
}

Test(dense_kernel, avx2_equals_reference_bit_for_bit)
{
    static const int dims[] = {1, 8, 31, 32, 33, 128, 200};
    for (size_t di = 0; di < sizeof(dims) / sizeof(dims[0]); di++) {
        int D = dims[di];
        size_t n = 37;
        int8_t *rows = malloc(n * (size_t)D), q[256];
        int32_t a[37], b[37];
        for (size_t i = 0; i < n * (size_t)D; i++)
            rows[i] = rnd_i8();
        for (int j = 0; j < D; j++)
            q[j] = rnd_i8();
        /* the extremes: every product at +-127*127 */
        for (int j = 0; j < D; j++) {
            rows[j] = 127;
            rows[D + j] = -127;
            q[j] = j % 2 ? 127 : -127;
        }
        nn_dot_i8_rows_ref(a, q, rows, n, D);
        nn_dot_i8_rows(b, q, rows, n, D);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(a[i], b[i], "D=%d row %zu: %d vs %d (integer sums must be exact)", D, i, a[i], b[i]);
        free(rows);
    }
}

Test(dense_kernel, quantize_bounds_and_error)
{
    float x[128], y[128];
    int8_t q[128];
    for (int j = 0; j < 128; j++)
        x[j] = (float)sin(j * 0.37) * (j % 5 + 1);
    float s = nn_quantize_i8(q, x, 128);
    float amax = 0;
    for (int j = 0; j < 128; j++) {
        cr_assert(q[j] >= -127 && q[j] <= 127);
        y[j] = q[j] * s;
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    }
    /* round to nearest: error at most half a step */
    for (int j = 0; j < 128; j++)
        cr_assert_leq(fabsf(x[j] - y[j]), s * 0.5f + 1e-6f);
    cr_assert_float_eq(s, amax / 127.0f, 1e-7);
    memset(x, 0, sizeof(x));
    cr_assert_float_eq(nn_quantize_i8(q, x, 128), 1.0f, 0, "an all-zero vector gets scale 1");
}

static struct encoder *small_encoder(void)
{
    struct encoder *e;
    cr_assert_eq(enc_new(&e, 16, 256, 7), 0);
    return e;
}

Test(encoder, features_and_unit_embeddings)
{
    struct encoder *e = small_encoder();
    float v[16], w[16];
    cr_assert_eq(enc_embed(e, "Waterproof hiking boots", 23, v), 0);
    double n = 0;
    for (int j = 0; j < 16; j++)
        n += (double)v[j] * v[j];
    cr_assert_float_eq(n, 1.0, 1e-5, "unit length");
    cr_assert_eq(enc_embed(e, "WATERPROOF   hiking, boots!", 27, w), 0);
    cr_assert_arr_eq(v, w, sizeof(v), "case and punctuation are folded away");
    cr_assert_eq(enc_embed(e, " ,;!", 4, w), 0);
    for (int j = 0; j < 16; j++)
        cr_assert_eq(w[j], 0.0f, "a text without terms embeds to zeros");
    /* features: 3 unigrams + 2 bigrams + trigrams of <ab>, <cd> (2 each) */
    uint32_t bk[ENC_MAX_FEATURES];
    float fw[ENC_MAX_FEATURES];
    struct enc_feats f = {bk, fw, 0};
    cr_assert_eq(enc_features(e, "ab cd", 5, &f), 0);
    cr_assert_eq(f.n, 2 + 1 + 2 + 2, "got %zu features", f.n);
    float tri = 0;
    for (size_t i = 0; i < f.n; i++)
        tri += fw[i] < 1.0f ? fw[i] : 0;
    cr_assert_float_eq(tri, 2.0f, 1e-6, "each word's trigrams share weight 1");
    /* any bytes: invalid UTF-8, NULs, a huge word */
    char junk[5000];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 7 + 3);
    cr_assert_eq(enc_features(e, junk, sizeof(junk), &f), 0);
    cr_assert_leq(f.n, ENC_MAX_FEATURES);
    enc_free(e);
}

Test(encoder, file_round_trip_and_checked_reader)
{
    struct encoder *e = small_encoder(), *r;
    e->idf[3] = 2.5f;
    struct buf b;
    buf_init(&b, 0);
    cr_assert_eq(enc_write(e, &b), 0);
    cr_assert_eq(b.len, (size_t)ENC_HEADER + 256 * 4 + 256 * 16 * 2);
    char err[256];
    cr_assert_eq(enc_read(&r, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(r->D, 16);
    cr_assert_eq(r->nbuckets, 256u);
    cr_assert_eq(r->idf[3], 2.5f);
    for (size_t i = 0; i < 256 * 16; i++) /* f16: relative error 2^-11 */
        cr_assert_leq(fabsf(r->E[i] - e->E[i]), fabsf(e->E[i]) * 4.9e-4f + 1e-7f, "weight %zu", i);
    enc_free(r);

    struct {
        size_t off;
        unsigned char byte;
        int len_delta;
        int want;
        const char *msg;
    } bad[] = {
        {0, 'X', 0, AISLE_EFORMAT, "bad magic"},
        {8, 2, 0, AISLE_EFORMAT, "version 2"},
        {12, 7, 0, AISLE_ETOOBIG, "dimension 7"},
        {16, 255, 0, AISLE_ETOOBIG, "buckets"},
        {20, 1, 0, AISLE_EFORMAT, "reserved"},
        {0, 0, -1, AISLE_EFORMAT, "expected exactly"},
        {0, 0, +1, AISLE_EFORMAT, "expected exactly"},
        {ENC_HEADER + 3, 0xff, 0, AISLE_EFORMAT, "idf of bucket 0"},             /* NaN idf */
        {ENC_HEADER + 3, 0x4f, 0, AISLE_EFORMAT, "expected 0 to 1000"},          /* idf 4.3e9 */
        {ENC_HEADER + 256 * 4 + 1, 0x7c, 0, AISLE_EFORMAT, "weight 0"},          /* f16 inf */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = b.len + (size_t)bad[i].len_delta;
        unsigned char *c = calloc(1, len);
        memcpy(c, b.data, len < b.len ? len : b.len);
        if (!bad[i].len_delta)
            c[bad[i].off] = bad[i].byte;
        err[0] = 0;
        r = NULL;
        cr_assert_eq(enc_read(&r, c, len, err, sizeof(err)), bad[i].want, "case %zu: %s", i, err);
        cr_assert_null(r);
        cr_assert(strstr(err, bad[i].msg), "case %zu: '%s' lacks '%s'", i, err, bad[i].msg);
        free(c);
    }
    cr_assert_eq(enc_read(&r, b.data, 10, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "shorter than"));
    buf_release(&b);
    cr_assert_eq(enc_load(&r, "/nonexistent/enc.bin", err, sizeof(err)), AISLE_EIO);
    cr_assert(strstr(err, "/nonexistent/enc.bin"));
    enc_free(e);
}

Test(encoder, shipped_model_loads_and_ranks_its_kind_of_pairs)
{
    char path[1024], err[256];
    snprintf(path, sizeof(path), "%s/models/encoder-v1.bin", tu_root());
    struct encoder *e;
    cr_assert_eq(enc_load(&e, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(e->D, 128);
    float q[128], a[128], b[128];
    const char *question = "what's the age range for these shoes?";
    enc_embed(e, question, strlen(question), q);
    enc_embed(e, "age_range_description: { value:\"little kid\" }", 45, a);
    enc_embed(e, "batteries_included: { value:false }", 35, b);
    cr_assert_gt(nn_dot_f32(q, a, 128), nn_dot_f32(q, b, 128));
    enc_free(e);
}

/* Texts that walk every branch of the fast feature path: ASCII with case,
 * punctuation, NUL bytes and repeated words; long texts past ENC_MAX_TERMS
 * distinct terms, past ENC_MAX_FEATURES features and past lex_terms' 4,096
 * bytes (cut on an ASCII byte and at a continuation byte); non-ASCII text
 * (diacritics, ß, the Kelvin sign that folds to ASCII k, invalid UTF-8),
 * which takes lex_terms. */
static size_t fast_path_texts(char **t, size_t max)
{
    static const char *const fixed[] = {
        "",
        "   ,.;  ",
        "Will this CRISPER drawer fit my Frigidaire FFTR1821TW? It fits, it FITS.",
        "a a a b a b",
        "Café crème — naïve Straße ﬁne \xe2\x84\xaa" "elvin",
        "bad \xff\xfe bytes \xc3 here",
        "x",
        "0123456789 abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz42 end",
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) && n < max; i++)
        t[n++] = strdup(fixed[i]);
    /* NUL bytes inside: stored with an explicit length below */
    uint64_t r = 99;
    for (int kind = 0; kind < 6 && n < max; kind++) {
        size_t len = kind < 2 ? 300 : kind < 4 ? 5000 : 4200;
        char *b = malloc(len + 1);
        for (size_t i = 0; i < len; i++) {
            uint64_t x = rng_next(&r);
            if (kind < 2 ? x % 7 == 0 : i % 16 == 15) /* 256 15-letter words: 4,352 features */
                b[i] = ' ';
            else if (kind == 1 && x % 53 == 0)
                b[i] = '\0';
            else
                b[i] = (char)((x >> 8) % 3 == 0 ? 'A' + (x >> 16) % 26 : 'a' + (x >> 16) % 26);
        }
        if (kind == 4) /* a 2-byte character straddling byte 4,096: the cut moves to 4,095 */
            memcpy(b + 4095, "\xc3\xa9", 2);
        if (kind == 5) /* non-ASCII only after the cut: still the ASCII path */
            memcpy(b + 4100, "\xc3\xa9", 2);
        b[len] = '\0';
        t[n++] = b;
    }
    return n;
}

/* The fast path (enc_features, enc_embed) against the reference
 * (features_ref, enc_embed_reference): features equal exactly, in order;
 * embeddings equal bit for bit on the AVX2/AVX-512 tensor paths (the same
 * fmadd chain per lane), and within 1e-6 absolute on the scalar path (the
 * bag's sums then differ by FMA contraction only: ~700 terms of |w E| < 1
 * with relative rounding 6e-8, on a vector scaled to length 1). Four
 * encoders: the shipped one (D = 128, read from its file: the f16 kernel),
 * random ones with D = 8 and 136 (the f32 kernel and its 8-wide tail), and
 * the D = 136 one read back from its file bytes. */
Test(encoder, fast_path_equals_reference)
{
    char path[1024], err[256];
    snprintf(path, sizeof(path), "%s/models/encoder-v1.bin", tu_root());
    struct encoder *encs[4];
    cr_assert_eq(enc_load(&encs[0], path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(enc_new(&encs[1], 8, 64, 11), 0);
    cr_assert_eq(enc_new(&encs[2], 136, 4096, 12), 0);
    /* read from a file, so with the f16 copy of E (the f16 kernel, D with a tail) */
    struct buf fb;
    buf_init(&fb, 0);
    cr_assert_eq(enc_write(encs[2], &fb), 0);
    cr_assert_eq(enc_read(&encs[3], fb.data, fb.len, err, sizeof(err)), 0, "%s", err);
    buf_release(&fb);
    cr_assert(encs[0]->E16 && encs[3]->E16 && !encs[1]->E16);
    char *texts[32];
    size_t nt = fast_path_texts(texts, 32);
    size_t lens[32];
    for (size_t i = 0; i < nt; i++)
        lens[i] = i == 9 ? 300 : strlen(texts[i]); /* text 9 holds NUL bytes */
    cr_assert_gt(lens[11], 4096);
    uint32_t *b1 = malloc(ENC_MAX_FEATURES * sizeof(uint32_t)), *b2 = malloc(ENC_MAX_FEATURES * sizeof(uint32_t));
    float *w1 = malloc(ENC_MAX_FEATURES * sizeof(float)), *w2 = malloc(ENC_MAX_FEATURES * sizeof(float));
    float *v1 = malloc(ENC_MAX_DIM * sizeof(float)), *v2 = malloc(ENC_MAX_DIM * sizeof(float));
    int exact = tensor_path() != TENSOR_PATH_SCALAR, capped = 0;
    for (int k = 0; k < 4; k++) {
        struct encoder *e = encs[k];
        for (size_t i = 0; i < nt; i++) {
            struct enc_feats f1 = {b1, w1, 0}, f2 = {b2, w2, 0};
            cr_assert_eq(features_ref(e, texts[i], lens[i], &f1), 0);
            cr_assert_eq(enc_features(e, texts[i], lens[i], &f2), 0);
            cr_assert_eq(f1.n, f2.n, "encoder %d text %zu: %zu vs %zu features", k, i, f1.n, f2.n);
            capped += f1.n == ENC_MAX_FEATURES;
            for (size_t j = 0; j < f1.n; j++) {
                cr_assert_eq(b1[j], b2[j], "encoder %d text %zu feature %zu: bucket %u vs %u", k, i, j, b1[j], b2[j]);
                cr_assert_eq(w1[j], w2[j], "encoder %d text %zu feature %zu: weight", k, i, j);
            }
            cr_assert_eq(enc_embed_reference(e, texts[i], lens[i], v1), 0);
            cr_assert_eq(enc_embed(e, texts[i], lens[i], v2), 0);
            for (int j = 0; j < e->D; j++) {
                if (exact)
                    cr_assert_eq(v1[j], v2[j], "encoder %d text %zu dim %d: %.9g vs %.9g (%s path)", k, i, j,
                                 (double)v1[j], (double)v2[j], tensor_path_name(tensor_path()));
                else
                    cr_assert_leq(fabsf(v1[j] - v2[j]), 1e-6f, "encoder %d text %zu dim %d", k, i, j);
            }
        }
    }
    cr_assert_gt(capped, 0, "no text reached ENC_MAX_FEATURES");
    for (int k = 0; k < 4; k++)
        enc_free(encs[k]);
    for (size_t i = 0; i < nt; i++)
        free(texts[i]);
    free(b1);
    free(b2);
    free(w1);
    free(w2);
    free(v1);
    free(v2);
}

/* The scalar tensor path gives the reference within the tolerance above too. */
Test(encoder, fast_path_on_scalar_tensor_path)
{
    struct encoder *e;
    cr_assert_eq(enc_new(&e, 64, 1024, 13), 0);
    enum tensor_path was = tensor_path();
    cr_assert_eq(tensor_set_path(TENSOR_PATH_SCALAR), 0);
    const char *t = "Does the Bluetooth speaker pair with an iPhone 12? Yes, it pairs in seconds.";
    float v1[64], v2[64];
    cr_assert_eq(enc_embed_reference(e, t, strlen(t), v1), 0);
    cr_assert_eq(enc_embed(e, t, strlen(t), v2), 0);
    tensor_set_path(was);
    for (int j = 0; j < 64; j++)
        cr_assert_leq(fabsf(v1[j] - v2[j]), 1e-6f, "dim %d", j);
    enc_free(e);
}

/* Central differences of the InfoNCE loss against batch_loss_grad's
 * gradient, on a few weights the batch touches. Tolerance: the loss is
 * computed in float (S, norms) with double sums: rounding ~1e-7 of a loss of
 * ~1 over a step of 1e-3 gives ~1e-4 absolute error; the truncation error
 * with weights ~0.35 is ~1e-6. So 2e-2 relative plus 2e-4 absolute is safe
 * yet catches any missing term (a wrong term changes a gradient by ~100%). */
Test(encoder, training_gradient_matches_finite_differences)
{
    struct encoder *e;
    cr_assert_eq(enc_new(&e, 8, 64, 3), 0);
    const char *a[] = {"red running shoes", "steel water bottle", "usb c cable", "wool winter hat"};
    const char *b[] = {"shoes in red", "bottle made of steel", "a cable with usb c", "hat for winter"};
    struct feat_table ta, tb;
    cr_assert_eq(table_build(e, a, 4, &ta), 0);
    cr_assert_eq(table_build(e, b, 4, &tb), 0);
    int B = 4, D = 8;
    float Ua[32], Ub[32], dUa[32], dUb[32], S[16], Pr[16], na[4], nb[4];
    struct batch_ws w = {Ua, Ub, dUa, dUb, S, Pr, na, nb};
    size_t idx[4] = {0, 1, 2, 3};
    for (size_t i = 0; i < 64 * 8; i++) /* weights of size ~0.35, well above the step */
        e->E[i] *= 20.0f;
    float *G = calloc(64 * 8, sizeof(float));
    double loss = batch_loss_grad(e, &ta, &tb, idx, B, 0.5f, &w, G);
    cr_assert(loss > 0 && isfinite(loss));
    int checked = 0;
    for (size_t k = 0; k < ta.off[1] && checked < 12; k++) {
        uint32_t row = ta.bucket[k];
        for (int j = 0; j < D; j += 3) {
            float *p = &e->E[(size_t)row * D + j], keep = *p;
            const float h = 1e-3f;
            *p = keep + h;
            double lp = batch_loss_grad(e, &ta, &tb, idx, B, 0.5f, &w, NULL);
            *p = keep - h;
            double lm = batch_loss_grad(e, &ta, &tb, idx, B, 0.5f, &w, NULL);
            *p = keep;
            double fd = (lp - lm) / (2 * h), an = G[(size_t)row * D + j];
            cr_assert_leq(fabs(fd - an), 2e-2 * fabs(fd) + 2e-4, "E[%u][%d]: numeric %g, analytic %g", row, j, fd,
                          an);
            checked++;
        }
    }
    cr_assert_geq(checked, 12);
    free(G);
    table_free(&ta);
    table_free(&tb);
    enc_free(e);
}

/* Pairs a bag of words cannot match by shared words alone: the question names
 * a product kind, the answer its material, with a fixed mapping to learn. */
Test(encoder, training_learns_a_mapping)
{
    static const char *kinds[] = {"kettle", "jacket", "skillet", "mug", "bench", "scarf", "bucket", "ladle"};
    static const char *stuff[] = {"copper", "fleece", "castiron", "ceramic", "teak", "cashmere", "zinc", "bamboo"};
    enum { N = 8, R = 24 };
    char *a[N * R], *b[N * R];
    for (int i = 0; i < N * R; i++) {
        char t[128];
        snprintf(t, sizeof(t), "question %d about the %s", i, kinds[i % N]);
        a[i] = strdup(t);
        snprintf(t, sizeof(t), "answer %d it is %s", i + 1000, stuff[i % N]);
        b[i] = strdup(t);
    }
    struct encoder *e;
    cr_assert_eq(enc_new(&e, 32, 1024, 5), 0);
    /* accuracy: the right material ranks first among the 8 */
    float qv[32], cv[32];
    int before = 0, after = 0;
    for (int pass = 0; pass < 2; pass++) {
        int ok = 0;
        for (int k = 0; k < N; k++) {
            char t[64];
            snprintf(t, sizeof(t), "which %s", kinds[k]);
            enc_embed(e, t, strlen(t), qv);
            int best = -1;
            float bs = -2;
            for (int m = 0; m < N; m++) {
                snprintf(t, sizeof(t), "it is %s", stuff[m]);
                enc_embed(e, t, strlen(t), cv);
                float sc = nn_dot_f32(qv, cv, 32);
                if (sc > bs) {
                    bs = sc;
                    best = m;
                }
            }
            ok += best == k;
        }
        if (pass == 0) {
            before = ok;
            struct enc_train_opts o = {.epochs = 30, .batch = 8, .lr = 0.05f, .weight_decay = 0, .tau = 0.1f, .seed = 3};
            float loss;
            cr_assert_eq(enc_train(e, (const char *const *)a, (const char *const *)b, N * R, &o, &loss), 0);
            cr_assert_lt(loss, 0.5f, "final loss %g", (double)loss);
        } else {
            after = ok;
        }
    }
    cr_log_info("mapping accuracy before %d/8, after %d/8", before, after);
    cr_assert_geq(after, 6, "after training %d/8 (before %d/8)", after, before);
    cr_assert_geq(after, before + 4, "after %d/8, before %d/8", after, before);
    for (int i = 0; i < N * R; i++) {
        free(a[i]);
        free(b[i]);
    }
    enc_free(e);
}

/* ---- vectors in the store ------------------------------------------------ */

static void load_str(struct store *s, enum ingest_kind k, const char *dir, const char *name, const char *text)
{
    char *p = tu_path(dir, name), err[512];
    tu_write_str(p, text);
    struct ingest_opts o = {.format_csv = -1};
    struct ingest_stats st;
    cr_assert_eq(ingest_file(s, k, p, &o, &st, err, sizeof(err)), 0, "%s", err);
    free(p);
}

static const char products_v1[] =
    "{\"id\":\"P1\",\"title\":\"Trail running shoe\",\"bullets\":[\"Waterproof upper\",\"Vibram sole\"]}\n"
    "{\"id\":\"P2\",\"title\":\"Espresso machine\",\"bullets\":[\"15 bar pump\",\"Steam wand for milk\"]}\n";
static const char reviews_v1[] = "{\"id\":\"R1\",\"product_id\":\"P1\",\"text\":\"Great grip on wet rock.\"}\n"
                                 "{\"id\":\"R2\",\"product_id\":\"P2\",\"text\":\"The steam wand broke.\"}\n";

static void install_encoder(struct store *s)
{
    char path[1024], err[512];
    snprintf(path, sizeof(path), "%s/models/encoder-v1.bin", tu_root());
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    struct buf b;
    buf_init(&b, 0);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    cr_assert_eq(dense_set_encoder(s, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    buf_release(&b);
}

Test(dense_store, vectors_follow_passages)
{
    char *dir = tu_tmpdir(), *db = tu_path(dir, "s.db"), err[512];
    struct store *s;
    cr_assert_eq(store_open(&s, db, 0, err, sizeof(err)), 0, "%s", err);
    struct encoder *e;
    cr_assert_eq(dense_get_encoder(s, &e, err, sizeof(err)), AISLE_ENOTFOUND);
    cr_assert(strstr(err, "embed index"), "%s", err);
    load_str(s, INGEST_PRODUCTS, dir, "p.jsonl", products_v1);
    load_str(s, INGEST_REVIEWS, dir, "r.jsonl", reviews_v1);
    install_encoder(s);
    cr_assert_eq(dense_get_encoder(s, &e, err, sizeof(err)), 0, "%s", err);
    size_t added = 0;
    cr_assert_eq(dense_index_pending(s, e, NULL, NULL, &added, err, sizeof(err)), 0, "%s", err);
    long long np = tu_count(db, "SELECT count(*) FROM passages");
    cr_assert_eq((long long)added, np);
    cr_assert_eq(tu_count(db, "SELECT count(*) FROM passage_vectors"), np);
    cr_assert_eq(tu_count(db, "SELECT count(*) FROM passage_vectors WHERE length(vec) != 132"), 0);
    cr_assert_eq(dense_index_pending(s, e, NULL, NULL, &added, err, sizeof(err)), 0);
    cr_assert_eq(added, 0, "nothing left to embed");

    struct dense_index *ix;
    cr_assert_eq(dense_index_load(&ix, s, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(dense_index_size(ix), (size_t)np);
    /* a passage's own text finds it first, with cosine ~1 */
    float q[128];
    const char *t = "Steam wand for milk";
    enc_embed(e, t, strlen(t), q);
    struct dense_hit hits[5];
    size_t n;
    cr_assert_eq(dense_search(ix, q, 1u << DENSE_CATALOG, 5, hits, &n), 0);
    cr_assert_eq(n, 5);
    long long want = tu_count(db, "SELECT id FROM passages WHERE text='Steam wand for milk'");
    cr_assert_eq(hits[0].id, want);
    cr_assert_float_eq(hits[0].score, 1.0f, 2e-2, "int8 cosine of a vector with itself: %g", (double)hits[0].score);
    for (size_t i = 1; i < n; i++)
        cr_assert_geq(hits[i - 1].score, hits[i].score);
    /* per source: the reviews block only */
    cr_assert_eq(dense_search(ix, q, 1u << DENSE_REVIEWS, 10, hits, &n), 0);
    cr_assert_eq(n, 2);
    long long r2 = tu_count(db, "SELECT id FROM passages WHERE ref_id='R2'");
    cr_assert_eq(hits[0].id, r2, "the steam wand review");
    /* only listed ids */
    int64_t ids[2] = {r2, 999999};
    cr_assert_eq(dense_search_ids(ix, q, ids, 2, 5, hits, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(hits[0].id, r2);

    /* A product upserted again: its passages are replaced; the old vectors go
     * with them, the new passages get vectors at the next indexing. */
    load_str(s, INGEST_PRODUCTS, dir, "p2.jsonl",
             "{\"id\":\"P2\",\"title\":\"Espresso machine\",\"bullets\":[\"20 bar pump\"]}\n");
    cr_assert_eq(tu_count(db, "SELECT count(*) FROM passage_vectors WHERE id NOT IN (SELECT id FROM passages)"), 0);
    cr_assert_eq(dense_index_pending(s, e, NULL, NULL, &added, err, sizeof(err)), 0);
    cr_assert_eq(added, 2, "title and the new bullet");
    int reloaded = 0;
    cr_assert_eq(dense_index_refresh(ix, s, &reloaded, err, sizeof(err)), 0, "%s", err);
    cr_assert(reloaded);
    cr_assert_eq(dense_index_size(ix), (size_t)tu_count(db, "SELECT count(*) FROM passages"));
    cr_assert_eq(dense_index_refresh(ix, s, &reloaded, err, sizeof(err)), 0);
    cr_assert_not(reloaded, "no change, no reload");

    /* A different encoder drops every vector made by the old one. */
    struct encoder *other;
    cr_assert_eq(enc_new(&other, 16, 64, 9), 0);
    struct buf b;
    buf_init(&b, 0);
    cr_assert_eq(enc_write(other, &b), 0);
    cr_assert_eq(dense_set_encoder(s, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tu_count(db, "SELECT count(*) FROM passage_vectors"), 0);
    /* and a corrupt one is refused, leaving the store as it was */
    b.data[0] = 'X';
    cr_assert_eq(dense_set_encoder(s, b.data, b.len, err, sizeof(err)), AISLE_EFORMAT);
    buf_release(&b);
    enc_free(other);
    dense_index_free(ix);
    enc_free(e);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

Test(dense_store, corrupt_vector_is_reported_by_passage)
{
    char *dir = tu_tmpdir(), *db = tu_path(dir, "s.db"), err[512];
    struct store *s;
    cr_assert_eq(store_open(&s, db, 0, err, sizeof(err)), 0, "%s", err);
    load_str(s, INGEST_PRODUCTS, dir, "p.jsonl", products_v1);
    install_encoder(s);
    cr_assert_eq(sqlite3_exec(store_db(s), "INSERT INTO passage_vectors VALUES(1, 0, x'0102')", NULL, NULL, NULL),
                 SQLITE_OK);
    struct dense_index *ix = NULL;
    cr_assert_eq(dense_index_load(&ix, s, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "passage 1"), "%s", err);
    cr_assert_null(ix);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}
