/*
 * encoder.c — the hashed embedding-bag dual encoder: features, embedding, the
 * model file reader/writer and contrastive training (see encoder.h).
 *
 * Training computes, per batch of B pairs, unit vectors Ua, Ub (B, D), the
 * similarity matrix S = Ua Ub^T / tau (B, B) and the symmetric InfoNCE loss
 * (cross-entropy of each row and each column against its diagonal). The
 * gradient flows back through the L2 normalization to the bag sums and from
 * there to the rows of E the batch touched; AdamW then updates all of E with
 * dense moments (2M parameters at the default size: a few ms per step).
 */
#include "retrieval/encoder.h"

#include "core/error.h"
#include "core/utf8.h"
#include "retrieval/lexical.h"
#include "tensor/tensor.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#define TRI_PER_TERM 32 /* character trigrams kept per term */

/* Initial weights are N(0, (init_scale^2)/D). Small, so that buckets no
 * training text touched (words first seen in a store) add little noise next
 * to trained ones, which AdamW moves by ~lr per step whatever their size. */
static float init_scale = 0.05f;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: fine for shuffles and initial weights */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s)
{
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

/* An encoder of D dims and nbuckets buckets with its arrays uninitialized
 * (enc_read fills them: drawing 2M Gaussians it would overwrite cost ~0.1 s
 * per load, and ingest loads the store's encoder after every file). */
static int enc_alloc(struct encoder **out, int D, uint32_t nbuckets)
{
    if (D < ENC_MIN_DIM || D > ENC_MAX_DIM || D % 8 || nbuckets < ENC_MIN_BUCKETS || nbuckets > ENC_MAX_BUCKETS ||
        (nbuckets & (nbuckets - 1)))
        return AISLE_EINVAL;
    struct encoder *e = calloc(1, sizeof(*e));
    if (!e)
        return AISLE_ENOMEM;
    e->D = D;
    e->nbuckets = nbuckets;
    e->idf = malloc(nbuckets * sizeof(float));
    e->E = malloc((size_t)nbuckets * (size_t)D * sizeof(float));
    if (!e->idf || !e->E) {
        enc_free(e);
        return AISLE_ENOMEM;
    }
    *out = e;
    return 0;
}

int enc_new(struct encoder **out, int D, uint32_t nbuckets, uint64_t seed)
{
    struct encoder *e;
    int rc = enc_alloc(&e, D, nbuckets);
    if (rc)
        return rc;
    uint64_t s = seed ? seed : 1;
    float sd = init_scale / sqrtf((float)D);
    for (uint32_t b = 0; b < nbuckets; b++) {
        e->idf[b] = 1.0f;
        for (int j = 0; j < D; j++) {
            double u1 = rng_unit(&s), u2 = rng_unit(&s);
            e->E[(size_t)b * D + j] = sd * (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        }
    }
    *out = e;
    return 0;
}

void enc_free(struct encoder *e)
{
    if (!e)
        return;
    free(e->idf);
    free(e->E);
    free(e->E16);
    free(e);
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int enc_read(struct encoder **out, const void *data, size_t len, char *err, size_t errlen)
{
    const unsigned char *p = data;
    struct encoder *e = NULL;
    uint16_t *half = NULL;
    int rc = AISLE_EFORMAT;
    if (len < ENC_HEADER) {
        snprintf(err, errlen, "encoder: %zu bytes, shorter than the %d-byte header", len, ENC_HEADER);
        goto fail;
    }
    if (memcmp(p, ENC_MAGIC, 8)) {
        snprintf(err, errlen, "encoder: bad magic at byte 0 (not an Aisle encoder file)");
        goto fail;
    }
    uint32_t version = rd32(p + 8), D = rd32(p + 12), nb = rd32(p + 16), reserved = rd32(p + 20);
    if (version != ENC_VERSION) {
        snprintf(err, errlen, "encoder: version %u at byte 8, this program reads version %d", version, ENC_VERSION);
        goto fail;
    }
    if (D < ENC_MIN_DIM || D > ENC_MAX_DIM || D % 8) {
        rc = AISLE_ETOOBIG;
        snprintf(err, errlen, "encoder: dimension %u at byte 12 is not a multiple of 8 in %d..%d", D, ENC_MIN_DIM,
                 ENC_MAX_DIM);
        goto fail;
    }
    if (nb < ENC_MIN_BUCKETS || nb > ENC_MAX_BUCKETS || (nb & (nb - 1))) {
        rc = AISLE_ETOOBIG;
        snprintf(err, errlen, "encoder: %u buckets at byte 16, expected a power of two in %d..%u", nb,
                 ENC_MIN_BUCKETS, ENC_MAX_BUCKETS);
        goto fail;
    }
    if (reserved) {
        snprintf(err, errlen, "encoder: reserved field at byte 20 is %u, expected 0", reserved);
        goto fail;
    }
    /* nb <= 2^22 and D <= 1024: the products below stay far under 2^63. */
    uint64_t want = ENC_HEADER + (uint64_t)nb * 4 + (uint64_t)nb * D * 2;
    if ((uint64_t)len != want) {
        snprintf(err, errlen, "encoder: %zu bytes, expected exactly %llu for %u buckets x %u dims", len,
                 (unsigned long long)want, nb, D);
        goto fail;
    }
    if ((rc = enc_alloc(&e, (int)D, nb))) {
        snprintf(err, errlen, "encoder: out of memory");
        goto fail;
    }
    rc = AISLE_EFORMAT;
    const unsigned char *q = p + ENC_HEADER;
    for (uint32_t b = 0; b < nb; b++, q += 4) {
        uint32_t u = rd32(q);
        float f;
        memcpy(&f, &u, 4);
        if (!(f >= 0.0f && f <= ENC_MAX_IDF)) { /* NaN fails too */
            snprintf(err, errlen, "encoder: idf of bucket %u (byte %zu) is %g, expected 0 to %g", b, (size_t)(q - p),
                     (double)f, (double)ENC_MAX_IDF);
            goto fail;
        }
        e->idf[b] = f;
    }
    size_t ne = (size_t)nb * D;
    half = malloc(ne * sizeof(uint16_t));
    if (!half) {
        rc = AISLE_ENOMEM;
        snprintf(err, errlen, "encoder: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < ne; i++) {
        half[i] = (uint16_t)(q[2 * i] | q[2 * i + 1] << 8);
        if ((half[i] & 0x7c00) == 0x7c00) {
            snprintf(err, errlen, "encoder: weight %zu (byte %zu) is not finite", i, (size_t)(q - p) + 2 * i);
            goto fail;
        }
    }
    for (size_t off = 0; off < ne; off += (size_t)1 << 20) {
        size_t n = ne - off < ((size_t)1 << 20) ? ne - off : (size_t)1 << 20;
        nn_f16_to_f32(e->E + off, half + off, (int)n);
    }
    e->E16 = half; /* f16 -> f32 is exact: E16 and E hold the same values */
    *out = e;
    return 0;
fail:
    free(half);
    enc_free(e);
    return rc;
}

int enc_load(struct encoder **out, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return AISLE_EIO;
    }
    struct buf b;
    buf_init(&b, (size_t)ENC_HEADER + (size_t)ENC_MAX_BUCKETS * 4 + (size_t)ENC_MAX_BUCKETS * ENC_MAX_DIM * 2);
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if ((rc = buf_append(&b, chunk, n))) {
            snprintf(err, errlen, "%s: too big for an encoder file", path);
            break;
        }
    if (!rc && ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = AISLE_EIO;
    }
    fclose(f);
    if (!rc) {
        char e2[256];
        rc = enc_read(out, b.data ? b.data : "", b.len, e2, sizeof(e2));
        if (rc)
            snprintf(err, errlen, "%s: %s", path, e2);
    }
    buf_release(&b);
    return rc;
}

static int put32(struct buf *b, uint32_t v)
{
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return buf_append(b, c, 4);
}

int enc_write(const struct encoder *e, struct buf *b)
{
    int rc = buf_append(b, ENC_MAGIC, 8);
    rc = rc ? rc : put32(b, ENC_VERSION);
    rc = rc ? rc : put32(b, (uint32_t)e->D);
    rc = rc ? rc : put32(b, e->nbuckets);
    rc = rc ? rc : put32(b, 0);
    for (uint32_t i = 0; !rc && i < e->nbuckets; i++) {
        uint32_t u;
        memcpy(&u, &e->idf[i], 4);
        rc = put32(b, u);
    }
    uint16_t row[ENC_MAX_DIM];
    for (uint32_t i = 0; !rc && i < e->nbuckets; i++) {
        nn_f32_to_f16(row, e->E + (size_t)i * e->D, e->D);
        for (int j = 0; !rc && j < e->D; j++) {
            unsigned char c[2] = {(unsigned char)row[j], (unsigned char)(row[j] >> 8)};
            rc = buf_append(b, c, 2);
        }
    }
    return rc;
}

/* ---- features ----
 *
 * Two paths give the same features in the same order (so the same float sums):
 * the reference (features_ref: lex_terms, then FNV-1a over each feature's
 * bytes), kept for tests and bench/dense, and the fast one (enc_features):
 * for ASCII text, which is most of a store, the terms are cut here with no
 * allocation (lex_terms on ASCII folds A-Z to a-z, and its token characters
 * are exactly [0-9A-Za-z]), duplicates are found with a small hash table
 * instead of lex_terms' quadratic strcmp, and the FNV states after each
 * feature's kind byte are constants. Other text goes through lex_terms. */

#define FNV_BASIS 14695981039346656037ull
#define FNV_PRIME 1099511628211ull
#define FNV_AFTER(c) ((FNV_BASIS ^ (uint64_t)(c)) * FNV_PRIME) /* fnv(FNV_BASIS, &c, 1) */

static void add_feat(const struct encoder *e, struct enc_feats *f, uint64_t h, float w)
{
    if (f->n >= ENC_MAX_FEATURES)
        return;
    f->bucket[f->n] = (uint32_t)(h & (e->nbuckets - 1));
    f->w[f->n] = w;
    f->n++;
}

/* The reference: the features exactly as the encoder was trained on them. */
static int features_ref(const struct encoder *e, const char *text, size_t len, struct enc_feats *f)
{
    char **t;
    int nt = lex_terms(text, len, 0, &t, ENC_MAX_TERMS);
    if (nt < 0)
        return nt;
    f->n = 0;
    for (int i = 0; i < nt; i++) {
        size_t tl = strlen(t[i]);
        add_feat(e, f, fnv(fnv(14695981039346656037ull, "u", 1), t[i], tl), 1.0f);
        if (i > 0) {
            uint64_t h = fnv(fnv(14695981039346656037ull, "b", 1), t[i - 1], strlen(t[i - 1]));
            add_feat(e, f, fnv(fnv(h, " ", 1), t[i], tl), 1.0f);
        }
        /* trigrams of "<term>": the word's share is 1, split between them */
        size_t ntri = tl < TRI_PER_TERM ? tl : TRI_PER_TERM;
        for (size_t k = 0; k < ntri; k++) {
            char g[3];
            for (int c = 0; c < 3; c++) {
                size_t at = k + (size_t)c; /* position in "<" term ">" */
                g[c] = at == 0 ? '<' : at == tl + 1 ? '>' : t[i][at - 1];
            }
            add_feat(e, f, fnv(fnv(14695981039346656037ull, "t", 1), g, 3), 1.0f / (float)ntri);
        }
    }
    free(t);
    return 0;
}

struct term {
    const char *p; /* folded bytes, not NUL-terminated */
    uint32_t len;
    uint64_t hu; /* the unigram feature's hash: fnv(FNV_AFTER('u'), p, len) */
};

#define TERM_SLOTS 512 /* open addressing over <= ENC_MAX_TERMS terms: load <= 1/2 */

/* Scratch of one fast feature extraction (about 14 KB, on the stack). */
struct term_ws {
    char fold[LEX_MAX_QUERY];
    struct term t[ENC_MAX_TERMS];
    uint16_t slot[TERM_SLOTS]; /* 1 + index into t, 0 = empty */
};

static int ascii_alnum(unsigned char c)
{
    return (unsigned)(c - '0') < 10u || (unsigned)(c - 'a') < 26u;
}

/* The distinct terms of text, as lex_terms(text, len, 0, .., ENC_MAX_TERMS)
 * gives them, into ws->t; the count, or -1 when the bytes lex_terms would
 * read are not all ASCII (the caller then uses lex_terms). */
static int ascii_terms(const char *text, size_t len, struct term_ws *ws)
{
    size_t L = utf8_trim(text, len, LEX_MAX_QUERY); /* lex_terms' cut, same bytes */
    const unsigned char *in = (const unsigned char *)text;
    unsigned char acc = 0;
    for (size_t i = 0; i < L; i++) {
        unsigned char c = in[i];
        acc |= c;
        ws->fold[i] = (char)((unsigned)(c - 'A') < 26u ? c + 32 : c);
    }
    if (acc & 0x80)
        return -1;
    memset(ws->slot, 0, sizeof(ws->slot));
    const unsigned char *fo = (const unsigned char *)ws->fold;
    int n = 0;
    size_t p = 0;
    while (p < L && n < ENC_MAX_TERMS) {
        if (!ascii_alnum(fo[p])) {
            p++;
            continue;
        }
        size_t s = p;
        uint64_t h = FNV_AFTER('u');
        while (p < L && ascii_alnum(fo[p]))
            h = (h ^ fo[p++]) * FNV_PRIME;
        uint32_t tl = (uint32_t)(p - s);
        size_t k = (size_t)(h ^ (h >> 29)) & (TERM_SLOTS - 1);
        int dup = 0;
        while (ws->slot[k]) {
            const struct term *o = &ws->t[ws->slot[k] - 1];
            if (o->hu == h && o->len == tl && !memcmp(o->p, fo + s, tl)) {
                dup = 1;
                break;
            }
            k = (k + 1) & (TERM_SLOTS - 1);
        }
        if (dup)
            continue;
        ws->t[n] = (struct term){ws->fold + s, tl, h};
        ws->slot[k] = (uint16_t)(n + 1);
        n++;
    }
    return n;
}

/* The features of terms t[0..nt) in the reference's order. */
static void terms_features(const struct encoder *e, const struct term *t, int nt, struct enc_feats *f)
{
    uint32_t mask = e->nbuckets - 1;
    size_t n = 0;
    uint64_t hb = 0; /* fnv(FNV_AFTER('b'), previous term) */
    for (int i = 0; i < nt && n < ENC_MAX_FEATURES; i++) {
        const unsigned char *w = (const unsigned char *)t[i].p;
        uint32_t tl = t[i].len;
        f->bucket[n] = (uint32_t)(t[i].hu & mask);
        f->w[n++] = 1.0f;
        if (i > 0 && n < ENC_MAX_FEATURES) {
            uint64_t h = (hb ^ ' ') * FNV_PRIME;
            for (uint32_t c = 0; c < tl; c++)
                h = (h ^ w[c]) * FNV_PRIME;
            f->bucket[n] = (uint32_t)(h & mask);
            f->w[n++] = 1.0f;
        }
        hb = FNV_AFTER('b');
        for (uint32_t c = 0; c < tl; c++)
            hb = (hb ^ w[c]) * FNV_PRIME;
        uint32_t ntri = tl < TRI_PER_TERM ? tl : TRI_PER_TERM;
        float tw = 1.0f / (float)ntri;
        for (uint32_t k = 0; k < ntri && n < ENC_MAX_FEATURES; k++) {
            /* bytes k, k+1, k+2 of "<" term ">" */
            unsigned g0 = k == 0 ? '<' : w[k - 1], g1 = w[k], g2 = k + 1 == tl ? '>' : w[k + 1];
            uint64_t h = ((((FNV_AFTER('t') ^ g0) * FNV_PRIME) ^ g1) * FNV_PRIME ^ g2) * FNV_PRIME;
            f->bucket[n] = (uint32_t)(h & mask);
            f->w[n++] = tw;
        }
    }
    f->n = n;
}

int enc_features(const struct encoder *e, const char *text, size_t len, struct enc_feats *f)
{
    struct term_ws ws;
    int nt = ascii_terms(text, len, &ws);
    if (nt >= 0) {
        terms_features(e, ws.t, nt, f);
        return 0;
    }
    char **t;
    nt = lex_terms(text, len, 0, &t, ENC_MAX_TERMS);
    if (nt < 0)
        return nt;
    for (int i = 0; i < nt; i++) {
        size_t tl = strlen(t[i]);
        ws.t[i] = (struct term){t[i], (uint32_t)tl, fnv(FNV_AFTER('u'), t[i], tl)};
    }
    terms_features(e, ws.t, nt, f);
    free(t);
    return 0;
}

/* v (D) = sum of w * idf * E rows; returns |v|. */
static float bag(const struct encoder *e, const struct enc_feats *f, float *v)
{
    memset(v, 0, (size_t)e->D * sizeof(float));
    for (size_t i = 0; i < f->n; i++)
        nn_axpy_f32(v, f->w[i] * e->idf[f->bucket[i]], e->E + (size_t)f->bucket[i] * e->D, e->D);
    return sqrtf(nn_dot_f32(v, v, e->D));
}

#if defined(__x86_64__) || defined(__i386__)
#define BAG_TARGET __attribute__((target("avx2,fma,f16c")))

/* Eight floats of E from element at: f32, or f16 widened (exactly). */
static inline BAG_TARGET __attribute__((always_inline)) __m256 row8(const void *E, int f16, size_t at)
{
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)E + at)))
               : _mm256_loadu_ps((const float *)E + at);
}

/* v (D) = sum_i a[i] E[bk[i]]: each 64-wide slice of v stays in eight
 * registers over all n rows (nn_axpy_f32 per row loads and stores v each
 * time). Every lane is the same chain of fmadds as the AVX2/AVX-512
 * nn_axpy_f32 (v = a * x + v, rows in order, from 0), so the sums are equal
 * bit for bit. E is f32, or with f16 the file's halves, which widen to the
 * same values from half the bytes (a row of 128 is 4 cache lines, not 8).
 * D a multiple of 8. Inlined into one function per type (f16 a constant). */
static inline BAG_TARGET __attribute__((always_inline)) void bag_avx2(const void *E, int f16, int D,
                                                                       const uint32_t *bk, const float *a, size_t n,
                                                                       float *v)
{
    int c = 0;
    for (; c + 64 <= D; c += 64) {
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        for (size_t i = 0; i < n; i++) {
            size_t r = (size_t)bk[i] * (size_t)D + (size_t)c;
            __m256 av = _mm256_set1_ps(a[i]);
            s0 = _mm256_fmadd_ps(av, row8(E, f16, r), s0);
            s1 = _mm256_fmadd_ps(av, row8(E, f16, r + 8), s1);
            s2 = _mm256_fmadd_ps(av, row8(E, f16, r + 16), s2);
            s3 = _mm256_fmadd_ps(av, row8(E, f16, r + 24), s3);
            s4 = _mm256_fmadd_ps(av, row8(E, f16, r + 32), s4);
            s5 = _mm256_fmadd_ps(av, row8(E, f16, r + 40), s5);
            s6 = _mm256_fmadd_ps(av, row8(E, f16, r + 48), s6);
            s7 = _mm256_fmadd_ps(av, row8(E, f16, r + 56), s7);
        }
        _mm256_storeu_ps(v + c, s0);
        _mm256_storeu_ps(v + c + 8, s1);
        _mm256_storeu_ps(v + c + 16, s2);
        _mm256_storeu_ps(v + c + 24, s3);
        _mm256_storeu_ps(v + c + 32, s4);
        _mm256_storeu_ps(v + c + 40, s5);
        _mm256_storeu_ps(v + c + 48, s6);
        _mm256_storeu_ps(v + c + 56, s7);
    }
    for (; c < D; c += 8) {
        __m256 s0 = _mm256_setzero_ps();
        for (size_t i = 0; i < n; i++)
            s0 = _mm256_fmadd_ps(_mm256_set1_ps(a[i]), row8(E, f16, (size_t)bk[i] * (size_t)D + (size_t)c), s0);
        _mm256_storeu_ps(v + c, s0);
    }
}

static BAG_TARGET void bag_avx2_f32(const float *E, int D, const uint32_t *bk, const float *a, size_t n, float *v)
{
    bag_avx2(E, 0, D, bk, a, n, v);
}

static BAG_TARGET void bag_avx2_f16(const uint16_t *E, int D, const uint32_t *bk, const float *a, size_t n,
                                    float *v)
{
    bag_avx2(E, 1, D, bk, a, n, v);
}
#endif
/* v (D) = the bag of f, the fast way where the CPU allows (the AVX2 kernel
 * above; the scalar tensor path, forced or not, keeps nn_axpy_f32). */
static void bag_fast(const struct encoder *e, const struct enc_feats *f, float *a, float *v)
{
#if defined(__x86_64__) || defined(__i386__)
    if (tensor_path() != TENSOR_PATH_SCALAR) {
        for (size_t i = 0; i < f->n; i++)
            a[i] = f->w[i] * e->idf[f->bucket[i]];
        if (e->E16)
            bag_avx2_f16(e->E16, e->D, f->bucket, a, f->n, v);
        else
            bag_avx2_f32(e->E, e->D, f->bucket, a, f->n, v);
        return;
    }
#endif
    (void)a;
    bag(e, f, v);
}

#if defined(__x86_64__) || defined(__i386__)
/* unit_ref() below with its divisions 8 (then 4) lanes at a time: IEEE division
 * and conversions round the same in a lane as in a scalar register, the
 * maximum does not depend on order, and the double sum of squares keeps the
 * scalar loop's order, so the result is the same bits. D a multiple of 8. */
__attribute__((target("avx2,fma"))) static void unit_avx2(float *out, int D)
{
    __m256 sign = _mm256_set1_ps(-0.0f), m = _mm256_setzero_ps();
    for (int j = 0; j < D; j += 8)
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(out + j)));
    float lanes[8], mx = 0.0f;
    _mm256_storeu_ps(lanes, m);
    for (int j = 0; j < 8; j++)
        mx = lanes[j] > mx ? lanes[j] : mx;
    if (!(mx > 0.0f)) {
        memset(out, 0, (size_t)D * sizeof(float));
        return;
    }
    __m256 mv = _mm256_set1_ps(mx);
    for (int j = 0; j < D; j += 8)
        _mm256_storeu_ps(out + j, _mm256_div_ps(_mm256_loadu_ps(out + j), mv));
    double n2 = 0;
    for (int j = 0; j < D; j++)
        n2 += (double)out[j] * out[j];
    if (!(n2 > 0)) {
        memset(out, 0, (size_t)D * sizeof(float));
        return;
    }
    __m256d r = _mm256_set1_pd(sqrt(n2));
    for (int j = 0; j < D; j += 4)
        _mm_storeu_ps(out + j, _mm256_cvtpd_ps(_mm256_div_pd(_mm256_cvtps_pd(_mm_loadu_ps(out + j)), r)));
}
#endif

/* out (D) = v / |v|, computed after scaling by the largest magnitude so a bag
 * of tiny weights (squares below FLT_MIN) still gets a unit vector. */
static void unit_ref(float *out, int D)
{
    float mx = 0.0f;
    for (int j = 0; j < D; j++)
        mx = fabsf(out[j]) > mx ? fabsf(out[j]) : mx;
    double n2 = 0;
    for (int j = 0; j < D; j++) {
        out[j] = mx > 0.0f ? out[j] / mx : 0.0f;
        n2 += (double)out[j] * out[j];
    }
    for (int j = 0; j < D; j++)
        out[j] = n2 > 0 ? (float)(out[j] / sqrt(n2)) : 0.0f;
}

/* unit_ref, the fast way where the CPU allows. */
static void unit(float *out, int D)
{
#if defined(__x86_64__) || defined(__i386__)
    if (tensor_path() != TENSOR_PATH_SCALAR) {
        unit_avx2(out, D);
        return;
    }
#endif
    unit_ref(out, D);
}

int enc_embed(const struct encoder *e, const char *text, size_t len, float *out)
{
    uint32_t bk[ENC_MAX_FEATURES];
    float w[ENC_MAX_FEATURES], a[ENC_MAX_FEATURES];
    struct enc_feats f = {bk, w, 0};
    int rc = enc_features(e, text, len, &f);
    if (rc)
        return rc;
    bag_fast(e, &f, a, out);
    unit(out, e->D);
    return 0;
}

int enc_embed_reference(const struct encoder *e, const char *text, size_t len, float *out)
{
    uint32_t *bk = malloc(ENC_MAX_FEATURES * sizeof(uint32_t));
    float *w = malloc(ENC_MAX_FEATURES * sizeof(float));
    int rc = AISLE_ENOMEM;
    if (!bk || !w)
        goto out;
    struct enc_feats f = {bk, w, 0};
    if ((rc = features_ref(e, text, len, &f)))
        goto out;
    bag(e, &f, out);
    unit_ref(out, e->D);
out:
    free(bk);
    free(w);
    return rc;
}

/* All texts' features in one CSR table (weights already times 1, idf applied
 * at use). */
struct feat_table {
    size_t *off; /* (n + 1) */
    uint32_t *bucket;
    float *w;
    size_t n, cap;
};

static void table_free(struct feat_table *t)
{
    free(t->off);
    free(t->bucket);
    free(t->w);
}

static int table_build(const struct encoder *e, const char *const *texts, size_t n, struct feat_table *t)
{
    memset(t, 0, sizeof(*t));
    uint32_t *bk = malloc(ENC_MAX_FEATURES * sizeof(uint32_t));
    float *w = malloc(ENC_MAX_FEATURES * sizeof(float));
    t->off = malloc((n + 1) * sizeof(size_t));
    int rc = AISLE_ENOMEM;
    if (!bk || !w || !t->off)
        goto out;
    t->off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        struct enc_feats f = {bk, w, 0};
        if ((rc = enc_features(e, texts[i], strlen(texts[i]), &f)))
            goto out;
        if (t->off[i] + f.n > t->cap) {
            size_t nc = (t->cap + f.n) * 2;
            uint32_t *nb = realloc(t->bucket, nc * sizeof(uint32_t));
            if (nb)
                t->bucket = nb;
            float *nw = realloc(t->w, nc * sizeof(float));
            if (nw)
                t->w = nw;
            rc = AISLE_ENOMEM;
            if (!nb || !nw)
                goto out;
            t->cap = nc;
        }
        memcpy(t->bucket + t->off[i], bk, f.n * sizeof(uint32_t));
        memcpy(t->w + t->off[i], w, f.n * sizeof(float));
        t->off[i + 1] = t->off[i] + f.n;
    }
    t->n = n;
    rc = 0;
out:
    free(bk);
    free(w);
    return rc;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int enc_fit_idf(struct encoder *e, const char *const *texts, size_t n)
{
    struct feat_table t;
    uint32_t *df = calloc(e->nbuckets, sizeof(uint32_t));
    uint32_t *tmp = malloc(ENC_MAX_FEATURES * sizeof(uint32_t));
    int rc = AISLE_ENOMEM;
    if (!df || !tmp || (rc = table_build(e, texts, n, &t)))
        goto out;
    for (size_t i = 0; i < n; i++) {
        size_t m = t.off[i + 1] - t.off[i];
        memcpy(tmp, t.bucket + t.off[i], m * sizeof(uint32_t));
        qsort(tmp, m, sizeof(uint32_t), cmp_u32);
        for (size_t k = 0; k < m; k++)
            if (!k || tmp[k] != tmp[k - 1])
                df[tmp[k]]++;
    }
    for (uint32_t b = 0; b < e->nbuckets; b++)
        e->idf[b] = (float)log(1.0 + (double)n / (1.0 + df[b]));
    table_free(&t);
out:
    free(df);
    free(tmp);
    return rc;
}

/* Unit vectors U (B, D) of the texts idx[0..B) of table t; norms to nrm. */
static void embed_rows(const struct encoder *e, const struct feat_table *t, const size_t *idx, int B, float *U,
                       float *nrm)
{
    for (int i = 0; i < B; i++) {
        struct enc_feats f = {t->bucket + t->off[idx[i]], t->w + t->off[idx[i]], t->off[idx[i] + 1] - t->off[idx[i]]};
        float *u = U + (size_t)i * e->D;
        float n = bag(e, &f, u);
        nrm[i] = n > 1e-12f ? n : 1e-12f;
        for (int j = 0; j < e->D; j++)
            u[j] /= nrm[i];
    }
}

/* dU (B, D) -> dE rows: through u = v / |v| and v = sum w idf E. */
static void backprop_rows(const struct encoder *e, const struct feat_table *t, const size_t *idx, int B,
                          const float *U, const float *nrm, float *dU, float *G)
{
    for (int i = 0; i < B; i++) {
        float *g = dU + (size_t)i * e->D;
        const float *u = U + (size_t)i * e->D;
        float proj = nn_dot_f32(u, g, e->D);
        for (int j = 0; j < e->D; j++)
            g[j] = (g[j] - u[j] * proj) / nrm[i];
        for (size_t k = t->off[idx[i]]; k < t->off[idx[i] + 1]; k++)
            nn_axpy_f32(G + (size_t)t->bucket[k] * e->D, t->w[k] * e->idf[t->bucket[k]], g, e->D);
    }
}

/* Scratch of one training step: Ua, Ub, dUa, dUb (B, D); S, Pr (B, B); na, nb (B). */
struct batch_ws {
    float *Ua, *Ub, *dUa, *dUb, *S, *Pr, *na, *nb;
};

/* The symmetric InfoNCE loss of pairs idx[0..B) (a from ta, b from tb) and,
 * when G is not NULL, its gradient added into G (nbuckets, D). */
static double batch_loss_grad(const struct encoder *e, const struct feat_table *ta, const struct feat_table *tb,
                              const size_t *idx, int B, float tau, struct batch_ws *w, float *G)
{
    int D = e->D;
    float *Ua = w->Ua, *Ub = w->Ub, *dUa = w->dUa, *dUb = w->dUb, *S = w->S, *Pr = w->Pr, *na = w->na, *nb = w->nb;
    embed_rows(e, ta, idx, B, Ua, na);
    embed_rows(e, tb, idx, B, Ub, nb);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++)
            S[i * B + j] = nn_dot_f32(Ua + (size_t)i * D, Ub + (size_t)j * D, D) / tau;
    /* row softmax (a->b) into Pr, column softmax (b->a) added: dS */
    double loss = 0;
    for (int i = 0; i < B; i++) {
        float mx = S[i * B];
        for (int j = 1; j < B; j++)
            mx = S[i * B + j] > mx ? S[i * B + j] : mx;
        double z = 0;
        for (int j = 0; j < B; j++)
            z += exp((double)(S[i * B + j] - mx));
        loss += (double)mx + log(z) - S[i * B + i];
        for (int j = 0; j < B; j++)
            Pr[i * B + j] = (float)(exp((double)(S[i * B + j] - mx)) / z) - (i == j);
    }
    for (int j = 0; j < B; j++) {
        float mx = S[j];
        for (int i = 1; i < B; i++)
            mx = S[i * B + j] > mx ? S[i * B + j] : mx;
        double z = 0;
        for (int i = 0; i < B; i++)
            z += exp((double)(S[i * B + j] - mx));
        loss += (double)mx + log(z) - S[j * B + j];
        for (int i = 0; i < B; i++)
            Pr[i * B + j] += (float)(exp((double)(S[i * B + j] - mx)) / z) - (i == j);
    }
    loss /= 2.0 * B;
    if (!G)
        return loss;
    /* dS = Pr / (2B); dUa = dS Ub / tau; dUb = dS^T Ua / tau */
    float sc = 1.0f / (2.0f * (float)B * tau);
    memset(dUa, 0, (size_t)B * D * sizeof(float));
    memset(dUb, 0, (size_t)B * D * sizeof(float));
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            float g = Pr[i * B + j] * sc;
            nn_axpy_f32(dUa + (size_t)i * D, g, Ub + (size_t)j * D, D);
            nn_axpy_f32(dUb + (size_t)j * D, g, Ua + (size_t)i * D, D);
        }
    backprop_rows(e, ta, idx, B, Ua, na, dUa, G);
    backprop_rows(e, tb, idx, B, Ub, nb, dUb, G);
    return loss;
}

int enc_train(struct encoder *e, const char *const *a, const char *const *b, size_t n,
              const struct enc_train_opts *o, float *final_loss)
{
    if (n < 2)
        return AISLE_EINVAL;
    int epochs = o->epochs > 0 ? o->epochs : 4;
    int B = o->batch > 1 ? o->batch : 128;
    if ((size_t)B > n)
        B = (int)n;
    float lr = o->lr > 0 ? o->lr : 0.01f, wd = o->weight_decay >= 0 ? o->weight_decay : 1e-4f;
    float tau = o->tau > 0 ? o->tau : 0.05f;
    int D = e->D;
    size_t P = (size_t)e->nbuckets * D;
    struct feat_table ta = {0}, tb = {0};
    free(e->E16); /* E changes: its f16 copy would be stale */
    e->E16 = NULL;
    float *G = calloc(P, sizeof(float)), *M = calloc(P, sizeof(float)), *V = calloc(P, sizeof(float));
    float *Ua = malloc((size_t)B * D * sizeof(float)), *Ub = malloc((size_t)B * D * sizeof(float));
    float *dUa = malloc((size_t)B * D * sizeof(float)), *dUb = malloc((size_t)B * D * sizeof(float));
    float *S = malloc((size_t)B * B * sizeof(float)), *Pr = malloc((size_t)B * B * sizeof(float));
    float *na = malloc((size_t)B * sizeof(float)), *nb = malloc((size_t)B * sizeof(float));
    size_t *perm = malloc(n * sizeof(size_t));
    int rc = AISLE_ENOMEM;
    if (!G || !M || !V || !Ua || !Ub || !dUa || !dUb || !S || !Pr || !na || !nb || !perm)
        goto out;
    if ((rc = table_build(e, a, n, &ta)) || (rc = table_build(e, b, n, &tb)))
        goto out;
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    uint64_t rs = o->seed ? o->seed : 7;
    size_t per_epoch = n / (size_t)B;
    int nsteps = (int)(per_epoch * (size_t)epochs), step = 0, warm = nsteps / 20 + 1;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    double epoch_loss = 0;
    for (int ep = 0; ep < epochs; ep++) {
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)(rng_next(&rs) % (i + 1)), x = perm[i];
            perm[i] = perm[j];
            perm[j] = x;
        }
        epoch_loss = 0;
        for (size_t bi = 0; bi < per_epoch; bi++, step++) {
            const size_t *idx = perm + bi * (size_t)B;
            struct batch_ws ws = {Ua, Ub, dUa, dUb, S, Pr, na, nb};
            double loss = batch_loss_grad(e, &ta, &tb, idx, B, tau, &ws, G);
            epoch_loss += loss;
            /* AdamW: warmup, then cosine decay to a tenth */
            float lrt = step < warm ? lr * (float)(step + 1) / (float)warm
                                    : lr * (0.1f + 0.9f * 0.5f * (1.0f + cosf(3.14159265f * (float)(step - warm) /
                                                                              (float)(nsteps - warm + 1))));
            float c1 = 1.0f - powf(b1, (float)(step + 1)), c2 = 1.0f - powf(b2, (float)(step + 1));
            for (size_t k = 0; k < P; k++) {
                float g = G[k];
                M[k] = b1 * M[k] + (1 - b1) * g;
                V[k] = b2 * V[k] + (1 - b2) * g * g;
                e->E[k] -= lrt * ((M[k] / c1) / (sqrtf(V[k] / c2) + eps) + wd * e->E[k]);
                G[k] = 0.0f;
            }
            if (o->progress)
                o->progress(o->ctx, step + 1, nsteps, (float)(epoch_loss / (double)(bi + 1)));
        }
    }
    if (final_loss)
        *final_loss = per_epoch ? (float)(epoch_loss / (double)per_epoch) : 0.0f;
    rc = 0;
out:
    table_free(&ta);
    table_free(&tb);
    free(G);
    free(M);
    free(V);
    free(Ua);
    free(Ub);
    free(dUa);
    free(dUb);
    free(S);
    free(Pr);
    free(na);
    free(nb);
    free(perm);
    return rc;
}
