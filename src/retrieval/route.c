/*
 * route.c — the source router: hashed question features, multi-label logistic
 * regression (one sigmoid per source), its file format, training and metrics.
 *
 * Design: features are strings hashed (FNV-1a 64) into nbuckets weights per
 * source, so the model never stores a vocabulary and any question maps to at
 * most ROUTE_MAX_FEATURES weights. Training is plain SGD over a seeded
 * permutation, single-threaded, so the same data gives the same bytes; positive
 * examples of a rare source are up-weighted by sqrt(neg/pos) and each source's
 * decision threshold is set to the one that maximises F1 on the training
 * examples (recall matters more than precision for routing: an extra source
 * costs a few passages, a missing one loses the answer).
 *
 * Invariants: a parsed model has nsrc == ROUTE_NSRC, a power-of-two nbuckets in
 * range, and only finite weights with |w| <= ROUTE_MAX_WEIGHT.
 */
#include "retrieval/route.h"

#include "core/buf.h"
#include "core/error.h"
#include "retrieval/errfmt.h"
#include "core/hset.h"
#include "core/lineio.h"
#include "retrieval/lexical.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_MAGIC "AISLERTR"
#define ROUTE_VERSION 1u
#define ROUTE_HEADER 24u /* magic, version, nsrc, nbuckets, reserved */
#define ROUTE_MAX_WEIGHT 1e4f

const char *const route_src_names[ROUTE_NSRC] = {"catalog", "reviews", "qa", "api"};

struct route_model {
    uint32_t nbuckets;
    float threshold[ROUTE_NSRC];
    float bias[ROUTE_NSRC];
    float *w; /* (ROUTE_NSRC, nbuckets) */
};

int route_src_parse(const char *name)
{
    for (int i = 0; i < ROUTE_NSRC; i++)
        if (!strcmp(name, route_src_names[i]))
            return i;
    return -1;
}

/* ---- features ---- */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int has_digit(const char *w)
{
    for (; *w; w++)
        if (is_digit(*w))
            return 1;
    return 0;
}

static int all_digits(const char *w)
{
    if (!*w)
        return 0;
    for (; *w; w++)
        if (!is_digit(*w))
            return 0;
    return 1;
}

/* Units shoppers write after a number ("220 v", "5 lbs") or glued to it ("220v"). */
static const char *const units[] = {"amp", "amps", "cm", "cup", "cups", "feet", "ft", "g", "gallon", "gallons",
                                    "gb", "hz", "in", "inch", "inches", "kg", "l", "lb", "lbs", "liter", "mah",
                                    "mm", "ml", "oz", "ounce", "ounces", "pound", "pounds", "qt", "quart", "tb",
                                    "v", "volt", "volts", "w", "watt", "watts", "x", "yard", "yards"};

static int is_unit(const char *w)
{
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (!strcmp(w, units[i]))
            return 1;
    return 0;
}

int route_each_feature(const char *text, void (*fn)(const char *feat, void *ctx), void *ctx)
{
    char **t = NULL;
    size_t len = strnlen(text, LEX_MAX_QUERY);
    int n = lex_terms(text, len, 0, &t, LEX_MAX_TERMS);
    if (n < 0)
        return n;
    char f[160];
    int emitted = 0;
#define EMIT(...)                                                                                                \
    do {                                                                                                         \
        if (emitted < ROUTE_MAX_FEATURES) {                                                                      \
            snprintf(f, sizeof(f), __VA_ARGS__);                                                                 \
            fn(f, ctx);                                                                                          \
            emitted++;                                                                                           \
        }                                                                                                        \
    } while (0)
    EMIT("len:%d", n <= 2 ? 2 : n <= 5 ? 5 : n <= 10 ? 10 : 99);
    if (n > 0)
        EMIT("q:%.60s", t[0]);
    if (n > 1)
        EMIT("q2:%.60s_%.60s", t[0], t[1]);
    int digits = 0;
    for (int i = 0; i < n; i++) {
        EMIT("w:%.120s", t[i]);
        if (strlen(t[i]) > 5) /* a crude stem: "delivered", "delivery" and "deliver" share "p:deliv" */
            EMIT("p:%.5s", t[i]);
        if (i + 1 < n)
            EMIT("b:%.70s_%.70s", t[i], t[i + 1]);
        if (has_digit(t[i])) {
            digits = 1;
            if (all_digits(t[i])) {
                if (i + 1 < n && is_unit(t[i + 1]))
                    EMIT("u:%s", t[i + 1]);
            } else {
                const char *p = t[i];
                while (is_digit(*p))
                    p++;
                if (p != t[i] && is_unit(p))
                    EMIT("u:%s", p);
                else
                    EMIT("d:code"); /* letters and digits mixed: a model or part number */
            }
        }
    }
    if (digits)
        EMIT("d:num");
    if (strchr(text, '$'))
        EMIT("d:dollar");
#undef EMIT
    free(t);
    return 0;
}

/* FNV-1a, then murmur3's 64-bit finalizer: FNV's low bits alone collide far
 * more often than chance on short strings ("w:price" and "b:s_own" shared a
 * bucket of 16384), and the bucket is taken from the low bits. */
static uint32_t bucket_of(const char *feat, uint32_t nbuckets)
{
    uint64_t h = hset_hash(HSET_FNV_SEED, feat, strlen(feat));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (uint32_t)(h & (nbuckets - 1));
}

struct featvec {
    uint32_t idx[ROUTE_MAX_FEATURES];
    size_t n;
    uint32_t nbuckets;
};

static void featvec_add(const char *feat, void *ctx)
{
    struct featvec *v = ctx;
    if (v->n < ROUTE_MAX_FEATURES)
        v->idx[v->n++] = bucket_of(feat, v->nbuckets);
}

static double sigmoid(double z)
{
    if (z >= 0)
        return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

int route_question(const struct route_model *m, const char *text, struct route *out)
{
    if (!m)
        return route_keyword(text, out);
    struct featvec v = {.nbuckets = m->nbuckets};
    int rc = route_each_feature(text, featvec_add, &v);
    if (rc)
        return rc;
    struct route r;
    for (int s = 0; s < ROUTE_NSRC; s++) {
        double z = m->bias[s];
        const float *w = m->w + (size_t)s * m->nbuckets;
        for (size_t i = 0; i < v.n; i++)
            z += w[v.idx[i]];
        r.score[s] = sigmoid(z);
        r.use[s] = r.score[s] >= m->threshold[s];
    }
    *out = r;
    return 0;
}

double route_feature_weight(const struct route_model *m, int src, const char *feat)
{
    if (src < 0 || src >= ROUTE_NSRC)
        return 0;
    return m->w[(size_t)src * m->nbuckets + bucket_of(feat, m->nbuckets)];
}

uint32_t route_model_buckets(const struct route_model *m) { return m->nbuckets; }

/* ---- keyword baseline ---- */

static const char *const kw_api[] = {"price", "cost", "costs", "much", "cheap", "cheaper", "cheapest", "sale",
                                     "discount", "deal", "deals", "coupon", "stock", "available", "availability",
                                     "ship", "shipping", "ships", "shipped", "deliver", "delivery", "delivered",
                                     "arrive", "arrival", "order", "ordered", "tracking", "track", "refund",
                                     "return", "sold", "seller", "restock", "expensive"};
static const char *const kw_reviews[] = {"good", "quality", "worth", "recommend", "like", "love", "durable",
                                         "comfortable", "easy", "hard", "loud", "noisy", "break", "broke",
                                         "last", "reliable", "happy", "experience", "anyone", "review"};
static const char *const kw_qa[] = {"fit", "fits", "work", "works", "compatible", "use", "using", "install",
                                    "replace", "replacement", "with", "can", "how"};
static const char *const kw_catalog[] = {"size", "dimensions", "weight", "material", "color", "colors", "made",
                                         "include", "included", "includes", "come", "comes", "long", "wide",
                                         "tall", "big", "many", "what", "battery", "batteries", "warranty",
                                         "capacity", "waterproof", "watts", "voltage"};

static int kw_hit(char **t, int n, const char *const *list, size_t nl)
{
    for (int i = 0; i < n; i++)
        for (size_t k = 0; k < nl; k++)
            if (!strcmp(t[i], list[k]))
                return 1;
    return 0;
}

int route_keyword(const char *text, struct route *out)
{
    char **t = NULL;
    int n = lex_terms(text, strnlen(text, LEX_MAX_QUERY), 0, &t, LEX_MAX_TERMS);
    if (n < 0)
        return n;
    struct route r;
#define KW(list) kw_hit(t, n, list, sizeof(list) / sizeof(list[0]))
    r.use[ROUTE_API] = KW(kw_api);
    r.use[ROUTE_REVIEWS] = KW(kw_reviews);
    r.use[ROUTE_QA] = KW(kw_qa);
    r.use[ROUTE_CATALOG] = KW(kw_catalog);
#undef KW
    if (!r.use[ROUTE_API] && !r.use[ROUTE_REVIEWS] && !r.use[ROUTE_QA])
        r.use[ROUTE_CATALOG] = 1;
    for (int s = 0; s < ROUTE_NSRC; s++)
        r.score[s] = r.use[s] ? 1.0 : 0.0;
    free(t);
    *out = r;
    return 0;
}

/* ---- file format ---- */

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float get_f32(const unsigned char *p)
{
    uint32_t u = get_u32(p);
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void put_u32(struct buf *b, uint32_t u, int *ok)
{
    unsigned char p[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                          (unsigned char)(u >> 24)};
    *ok = *ok && buf_append(b, p, 4) == 0;
}

static void put_f32(struct buf *b, float f, int *ok)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    put_u32(b, u, ok);
}

static size_t model_bytes(uint32_t nbuckets)
{
    return ROUTE_HEADER + 2u * 4u * ROUTE_NSRC + (size_t)4u * ROUTE_NSRC * nbuckets + 8u;
}

static int good_weight(float f) { return isfinite(f) && fabsf(f) <= ROUTE_MAX_WEIGHT; }

int route_model_parse(struct route_model **out, const void *data, size_t len, char *err, size_t errlen)
{
    const unsigned char *p = data;
    struct route_model *m = NULL;
    int rc = AISLE_EFORMAT;
    if (len < ROUTE_HEADER || memcmp(p, ROUTE_MAGIC, 8)) {
        retr_seterr(err, errlen, "not a router model (no \"" ROUTE_MAGIC "\" magic)");
        goto fail;
    }
    uint32_t version = get_u32(p + 8), nsrc = get_u32(p + 12), nb = get_u32(p + 16), reserved = get_u32(p + 20);
    if (version != ROUTE_VERSION) {
        retr_seterr(err, errlen, "router model version %u (this build reads %u)", version, ROUTE_VERSION);
        goto fail;
    }
    if (nsrc != ROUTE_NSRC) {
        retr_seterr(err, errlen, "router model has %u sources, expected %d", nsrc, ROUTE_NSRC);
        goto fail;
    }
    if (nb < ROUTE_MIN_BUCKETS || nb > ROUTE_MAX_BUCKETS || (nb & (nb - 1))) {
        rc = nb > ROUTE_MAX_BUCKETS ? AISLE_ETOOBIG : AISLE_EFORMAT;
        retr_seterr(err, errlen, "router model: nbuckets %u is not a power of two in %u..%u", nb, ROUTE_MIN_BUCKETS,
               ROUTE_MAX_BUCKETS);
        goto fail;
    }
    if (reserved) {
        retr_seterr(err, errlen, "router model: reserved header field is %u, expected 0", reserved);
        goto fail;
    }
    if (len != model_bytes(nb)) {
        retr_seterr(err, errlen, "router model: %zu bytes, expected %zu for %u buckets", len, model_bytes(nb), nb);
        goto fail;
    }
    uint64_t sum = hset_hash(HSET_FNV_SEED, p, len - 8);
    if (sum != get_u64(p + len - 8)) {
        retr_seterr(err, errlen, "router model: checksum mismatch (corrupt file)");
        goto fail;
    }
    rc = AISLE_ENOMEM;
    m = calloc(1, sizeof(*m));
    if (!m || !(m->w = malloc((size_t)4 * ROUTE_NSRC * nb))) {
        retr_seterr(err, errlen, "out of memory");
        goto fail;
    }
    rc = AISLE_EFORMAT;
    m->nbuckets = nb;
    const unsigned char *q = p + ROUTE_HEADER;
    for (int s = 0; s < ROUTE_NSRC; s++, q += 4) {
        m->threshold[s] = get_f32(q);
        if (!(m->threshold[s] > 0.0f && m->threshold[s] < 1.0f)) {
            retr_seterr(err, errlen, "router model: threshold of %s is not in (0, 1)", route_src_names[s]);
            goto fail;
        }
    }
    for (int s = 0; s < ROUTE_NSRC; s++, q += 4) {
        m->bias[s] = get_f32(q);
        if (!good_weight(m->bias[s])) {
            retr_seterr(err, errlen, "router model: bias of %s is not a finite value within +-%g", route_src_names[s],
                   (double)ROUTE_MAX_WEIGHT);
            goto fail;
        }
    }
    for (size_t i = 0; i < (size_t)ROUTE_NSRC * nb; i++, q += 4) {
        m->w[i] = get_f32(q);
        if (!good_weight(m->w[i])) {
            retr_seterr(err, errlen, "router model: weight %zu of %s is not a finite value within +-%g", i % nb,
                   route_src_names[i / nb], (double)ROUTE_MAX_WEIGHT);
            goto fail;
        }
    }
    *out = m;
    return 0;
fail:
    route_model_free(m);
    return rc;
}

int route_model_load(struct route_model **out, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    int rc = AISLE_EIO;
    char sub[256];
    if (!f) {
        retr_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return AISLE_EIO;
    }
    size_t cap = model_bytes(ROUTE_MAX_BUCKETS) + 1, n = 0;
    /* Read at most one byte past the largest valid model: a bigger file is refused without reading it all. */
    data = malloc(cap);
    if (!data) {
        rc = AISLE_ENOMEM;
        retr_seterr(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    n = fread(data, 1, cap, f);
    if (ferror(f)) {
        retr_seterr(err, errlen, "%s: read error", path);
        goto fail;
    }
    if (n == cap) {
        rc = AISLE_ETOOBIG;
        retr_seterr(err, errlen, "%s: larger than the largest router model (%zu bytes)", path, cap - 1);
        goto fail;
    }
    rc = route_model_parse(out, data, n, sub, sizeof(sub));
    if (rc)
        retr_seterr(err, errlen, "%s: %s", path, sub);
fail:
    free(data);
    fclose(f);
    return rc;
}

int route_model_save(const struct route_model *m, const char *path, char *err, size_t errlen)
{
    struct buf b;
    buf_init(&b, 0);
    int ok = buf_append(&b, ROUTE_MAGIC, 8) == 0;
    put_u32(&b, ROUTE_VERSION, &ok);
    put_u32(&b, ROUTE_NSRC, &ok);
    put_u32(&b, m->nbuckets, &ok);
    put_u32(&b, 0, &ok);
    for (int s = 0; s < ROUTE_NSRC; s++)
        put_f32(&b, m->threshold[s], &ok);
    for (int s = 0; s < ROUTE_NSRC; s++)
        put_f32(&b, m->bias[s], &ok);
    for (size_t i = 0; i < (size_t)ROUTE_NSRC * m->nbuckets; i++)
        put_f32(&b, m->w[i], &ok);
    if (ok) {
        uint64_t sum = hset_hash(HSET_FNV_SEED, b.data, b.len);
        put_u32(&b, (uint32_t)sum, &ok);
        put_u32(&b, (uint32_t)(sum >> 32), &ok);
    }
    if (!ok) {
        buf_release(&b);
        retr_seterr(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int rc = AISLE_EIO;
    if (!f) {
        retr_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    size_t wrote = fwrite(b.data, 1, b.len, f);
    if (fclose(f) || wrote != b.len) {
        retr_seterr(err, errlen, "%s: write failed", tmp);
        remove(tmp);
        goto out;
    }
    if (rename(tmp, path)) {
        retr_seterr(err, errlen, "%s: %s", path, strerror(errno));
        remove(tmp);
        goto out;
    }
    rc = 0;
out:
    buf_release(&b);
    return rc;
}

void route_model_free(struct route_model *m)
{
    if (!m)
        return;
    free(m->w);
    free(m);
}

/* ---- labelled data ---- */

void route_set_init(struct route_set *s) { memset(s, 0, sizeof(*s)); }

void route_set_release(struct route_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].q);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static int parse_example(const char *line, size_t len, struct route_example *ex, char *why, size_t whylen)
{
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    int rc = AISLE_EFORMAT;
    if (!o) {
        snprintf(why, whylen, "invalid JSON at column %d: %s", je.column, je.text);
        return AISLE_EFORMAT;
    }
    if (!json_is_object(o)) {
        snprintf(why, whylen, "expected a JSON object");
        goto out;
    }
    if (json_object_get(o, "_comment")) {
        rc = 1; /* skip */
        goto out;
    }
    json_t *q = json_object_get(o, "q"), *srcs = json_object_get(o, "sources");
    if (!json_is_string(q) || !json_string_length(q)) {
        snprintf(why, whylen, "q: expected a non-empty string");
        goto out;
    }
    if (json_string_length(q) > LEX_MAX_QUERY) {
        snprintf(why, whylen, "q: longer than %d bytes", LEX_MAX_QUERY);
        goto out;
    }
    if (!json_is_array(srcs)) {
        snprintf(why, whylen, "sources: expected an array of source names");
        goto out;
    }
    unsigned labels = 0;
    for (size_t i = 0; i < json_array_size(srcs); i++) {
        json_t *e = json_array_get(srcs, i);
        int s = json_is_string(e) ? route_src_parse(json_string_value(e)) : -1;
        if (s < 0) {
            snprintf(why, whylen, "sources[%zu]: expected catalog, reviews, qa or api", i);
            goto out;
        }
        labels |= 1u << s;
    }
    ex->q = strdup(json_string_value(q));
    if (!ex->q) {
        rc = AISLE_ENOMEM;
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    ex->labels = labels;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int route_set_read(struct route_set *s, const char *path, char *err, size_t errlen)
{
    struct lineio r;
    int rc = lineio_open(&r, path, ROUTE_MAX_LINE);
    if (rc) {
        retr_seterr(err, errlen, "%s: %s", path, r.err);
        return rc;
    }
    for (;;) {
        const char *line;
        size_t len;
        rc = lineio_next(&r, &line, &len);
        if (rc == AISLE_EEOF) {
            rc = 0;
            break;
        }
        if (rc == AISLE_ETOOBIG) {
            retr_seterr(err, errlen, "%s:%llu: line longer than %d bytes", path, (unsigned long long)r.lineno,
                   ROUTE_MAX_LINE);
            break;
        }
        if (rc) {
            retr_seterr(err, errlen, "%s: %s", path, r.err);
            break;
        }
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t'))
            k++;
        if (k == len)
            continue;
        struct route_example ex;
        char why[200];
        rc = parse_example(line, len, &ex, why, sizeof(why));
        if (rc == 1) {
            rc = 0;
            continue;
        }
        if (rc) {
            retr_seterr(err, errlen, "%s:%llu: %s", path, (unsigned long long)r.lineno, why);
            break;
        }
        if (s->n >= ROUTE_MAX_EXAMPLES) {
            free(ex.q);
            rc = AISLE_ETOOBIG;
            retr_seterr(err, errlen, "%s:%llu: more than %d examples", path, (unsigned long long)r.lineno,
                   ROUTE_MAX_EXAMPLES);
            break;
        }
        if (s->n == s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 256;
            struct route_example *nv = realloc(s->v, nc * sizeof(*nv));
            if (!nv) {
                free(ex.q);
                rc = AISLE_ENOMEM;
                retr_seterr(err, errlen, "out of memory");
                break;
            }
            s->v = nv;
            s->cap = nc;
        }
        s->v[s->n++] = ex;
    }
    lineio_close(&r);
    return rc;
}

int route_heldout(const char *q, int pct)
{
    return (int)(hset_hash(HSET_FNV_SEED, q, strlen(q)) % 100) < pct;
}

/* ---- training ---- */

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* The threshold in (0,1) that maximises F1 of scores p against gold y, over the
 * observed scores (ties: the lower threshold, i.e. more recall). */
struct scored {
    double p;
    int y;
};

static int cmp_scored_desc(const void *a, const void *b)
{
    const struct scored *x = a, *y = b;
    return x->p < y->p ? 1 : x->p > y->p ? -1 : (x->y - y->y);
}

static float best_threshold(struct scored *sc, size_t n)
{
    qsort(sc, n, sizeof(*sc), cmp_scored_desc);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++)
        pos += (size_t)sc[i].y;
    if (!pos)
        return 0.5f;
    double best = -1, thr = 0.5;
    size_t tp = 0;
    for (size_t i = 0; i < n; i++) {
        tp += (size_t)sc[i].y;
        if (i + 1 < n && sc[i + 1].p == sc[i].p)
            continue;
        double f1 = 2.0 * (double)tp / (double)(i + 1 + pos);
        if (f1 > best) {
            best = f1;
            /* halfway to the next score, so the cut is robust to rounding */
            thr = i + 1 < n ? (sc[i].p + sc[i + 1].p) / 2 : sc[i].p * 0.999;
        }
    }
    if (thr < 0.01)
        thr = 0.01;
    if (thr > 0.99)
        thr = 0.99;
    return (float)thr;
}

#define ROUTE_FOLDS 4

static double score_of(const struct route_model *m, const struct featvec *v, int s)
{
    const float *w = m->w + (size_t)s * m->nbuckets;
    double z = m->bias[s];
    for (size_t f = 0; f < v->n; f++)
        z += w[v->idx[f]];
    return sigmoid(z);
}

static float clampw(double x)
{
    return (float)(x > ROUTE_MAX_WEIGHT ? ROUTE_MAX_WEIGHT : x < -ROUTE_MAX_WEIGHT ? -ROUTE_MAX_WEIGHT : x);
}

/* SGD from zero weights (bias at the prior) on the examples not in fold
 * `skip` (example i is in fold i % ROUTE_FOLDS; -1 skips none). */
static void sgd(struct route_model *m, const struct featvec *fv, const unsigned *lab, size_t n, int skip,
                size_t *order, const struct route_train_opts *o, const double *posw, const float *prior)
{
    memset(m->w, 0, (size_t)ROUTE_NSRC * o->nbuckets * sizeof(float));
    memcpy(m->bias, prior, sizeof(m->bias));
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    uint64_t rs = o->seed * 0x9e3779b97f4a7c15ULL | 1;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates with a seeded generator */
            size_t j = (size_t)(xorshift(&rs) % (i + 1));
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double lr = o->lr / (1.0 + ep);
        for (size_t k = 0; k < n; k++) {
            if (skip >= 0 && order[k] % ROUTE_FOLDS == (size_t)skip)
                continue;
            const struct featvec *v = &fv[order[k]];
            unsigned y = lab[order[k]];
            for (int s = 0; s < ROUTE_NSRC; s++) {
                float *w = m->w + (size_t)s * o->nbuckets;
                int ys = (y >> s) & 1;
                double g = (score_of(m, v, s) - ys) * (ys ? posw[s] : 1.0);
                for (size_t f = 0; f < v->n; f++) {
                    float *wf = &w[v->idx[f]];
                    *wf = clampw(*wf - lr * (g + o->l2 * *wf));
                }
                m->bias[s] = clampw(m->bias[s] - lr * g * 0.1);
            }
        }
    }
}

int route_train(struct route_model **out, const struct route_set *set, int (*keep)(const char *q, void *ctx),
                void *ctx, const struct route_train_opts *opts, char *err, size_t errlen)
{
    struct route_train_opts o = {.nbuckets = 16384, .epochs = 12, .lr = 0.3, .l2 = 1e-4, .seed = 1};
    if (opts) {
        if (opts->nbuckets)
            o.nbuckets = opts->nbuckets;
        if (opts->epochs)
            o.epochs = opts->epochs;
        if (opts->lr > 0)
            o.lr = opts->lr;
        if (opts->l2 > 0)
            o.l2 = opts->l2;
        if (opts->seed)
            o.seed = opts->seed;
    }
    if (o.nbuckets < ROUTE_MIN_BUCKETS || o.nbuckets > ROUTE_MAX_BUCKETS || (o.nbuckets & (o.nbuckets - 1)) ||
        o.epochs < 1 || o.epochs > 1000 || !(o.lr < 10) || !(o.l2 < 1)) {
        retr_seterr(err, errlen, "bad training options (nbuckets a power of two in %u..%u, epochs 1..1000)",
               ROUTE_MIN_BUCKETS, ROUTE_MAX_BUCKETS);
        return AISLE_EINVAL;
    }
    int rc = AISLE_ENOMEM;
    struct route_model *m = calloc(1, sizeof(*m));
    struct featvec *fv = NULL;
    unsigned *lab = NULL;
    size_t *order = NULL;
    struct scored *sc = NULL;
    double *oof = NULL; /* (ROUTE_NSRC, n) out-of-fold scores */
    size_t n = 0;
    if (!m || !(m->w = calloc((size_t)ROUTE_NSRC * o.nbuckets, sizeof(float))))
        goto nomem;
    m->nbuckets = o.nbuckets;
    if (!(fv = malloc((set->n ? set->n : 1) * sizeof(*fv))) || !(lab = malloc((set->n ? set->n : 1) * sizeof(*lab))))
        goto nomem;
    for (size_t i = 0; i < set->n; i++) {
        if (keep && !keep(set->v[i].q, ctx))
            continue;
        fv[n].n = 0;
        fv[n].nbuckets = o.nbuckets;
        if ((rc = route_each_feature(set->v[i].q, featvec_add, &fv[n])))
            goto fail;
        lab[n++] = set->v[i].labels;
    }
    if (!n) {
        rc = AISLE_EINVAL;
        retr_seterr(err, errlen, "no training examples");
        goto fail;
    }
    rc = AISLE_ENOMEM;
    if (!(order = malloc(n * sizeof(*order))) || !(sc = malloc(n * sizeof(*sc))))
        goto nomem;
    double posw[ROUTE_NSRC];
    float prior[ROUTE_NSRC];
    if (!(oof = malloc((size_t)ROUTE_NSRC * n * sizeof(*oof))))
        goto nomem;
    for (int s = 0; s < ROUTE_NSRC; s++) {
        size_t pos = 0;
        for (size_t i = 0; i < n; i++)
            pos += (lab[i] >> s) & 1;
        posw[s] = pos && pos < n ? sqrt((double)(n - pos) / (double)pos) : 1.0;
        if (posw[s] < 1.0)
            posw[s] = 1.0;
        /* start from the prior: bias = log odds of the class */
        double pr = ((double)pos + 0.5) / ((double)n + 1.0);
        prior[s] = (float)log(pr / (1 - pr));
    }
    /* Thresholds from out-of-fold scores (ROUTE_FOLDS-fold cross-validation
     * over the training examples): scores of examples a model was trained on
     * are overconfident and would put every threshold too high. */
    if (n >= 4 * ROUTE_FOLDS) {
        struct route_model fm = {.nbuckets = o.nbuckets};
        if (!(fm.w = malloc((size_t)ROUTE_NSRC * o.nbuckets * sizeof(float))))
            goto nomem;
        for (int f = 0; f < ROUTE_FOLDS; f++) {
            sgd(&fm, fv, lab, n, f, order, &o, posw, prior);
            for (size_t i = (size_t)f; i < n; i += ROUTE_FOLDS)
                for (int s = 0; s < ROUTE_NSRC; s++)
                    oof[(size_t)s * n + i] = score_of(&fm, &fv[i], s);
        }
        free(fm.w);
    }
    sgd(m, fv, lab, n, -1, order, &o, posw, prior);
    for (int s = 0; s < ROUTE_NSRC; s++) {
        for (size_t i = 0; i < n; i++) {
            sc[i].p = n >= 4 * ROUTE_FOLDS ? oof[(size_t)s * n + i] : score_of(m, &fv[i], s);
            sc[i].y = (int)((lab[i] >> s) & 1);
        }
        m->threshold[s] = best_threshold(sc, n);
    }
    free(oof);
    free(fv);
    free(lab);
    free(order);
    free(sc);
    *out = m;
    return 0;
nomem:
    retr_seterr(err, errlen, "out of memory");
    rc = AISLE_ENOMEM;
fail:
    free(oof);
    free(fv);
    free(lab);
    free(order);
    free(sc);
    route_model_free(m);
    return rc;
}

/* ---- metrics ---- */

void route_eval_add(struct route_eval *e, unsigned gold, const struct route *pred)
{
    int all = 1;
    e->n++;
    for (int s = 0; s < ROUTE_NSRC; s++) {
        int y = (gold >> s) & 1, p = pred->use[s] != 0;
        e->tp[s] += (size_t)(y && p);
        e->fp[s] += (size_t)(!y && p);
        e->fn[s] += (size_t)(y && !p);
        e->tn[s] += (size_t)(!y && !p);
        all &= y == p;
    }
    e->exact += (size_t)all;
}

static double f1_of(size_t tp, size_t fp, size_t fn)
{
    return tp ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0.0;
}

double route_eval_f1(const struct route_eval *e, int src) { return f1_of(e->tp[src], e->fp[src], e->fn[src]); }

double route_eval_micro_f1(const struct route_eval *e)
{
    size_t tp = 0, fp = 0, fn = 0;
    for (int s = 0; s < ROUTE_NSRC; s++) {
        tp += e->tp[s];
        fp += e->fp[s];
        fn += e->fn[s];
    }
    return f1_of(tp, fp, fn);
}

double route_eval_macro_f1(const struct route_eval *e)
{
    double sum = 0;
    int k = 0;
    for (int s = 0; s < ROUTE_NSRC; s++)
        if (e->tp[s] + e->fn[s]) {
            sum += route_eval_f1(e, s);
            k++;
        }
    return k ? sum / k : 0.0;
}
