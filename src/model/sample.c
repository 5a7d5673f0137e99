/*
 * sample.c — the sampling chain (see sample.h for its order and formulas) and
 * stop-string matching.
 *
 * Dims legend: V vocabulary, n candidates, H penalty history length.
 *
 * Invariants: cnt[t] is the number of times t occurs in the history ring;
 * the candidate arrays always hold n valid (id, logit) pairs with finite logits.
 */
#include "model/sample.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cand {
    float logit;
    int32_t id;
};

struct lm_sampler {
    struct lm_sample_params p;
    struct lm_logit_bias *bias; /* (n_bias) owned copy */
    int V;
    struct cand *c;   /* (V) candidates */
    int32_t *ids;     /* (V) result ids */
    float *probs;     /* (V) result probabilities */
    int *cnt;         /* (V) occurrences in the history */
    int32_t *hist;    /* (H) ring of accepted tokens */
    int H, hlen, hpos;
    uint64_t rng[4];  /* xoshiro256** state */
    double bmass[1024]; /* (TOPP_BUCKETS) top-p mass per logit bucket */
};

/* ---- PRNG: splitmix64 to seed xoshiro256** ------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- lifecycle ------------------------------------------------------------------ */

void lm_sample_params_default(struct lm_sample_params *p)
{
    memset(p, 0, sizeof(*p));
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->penalty_last_n = 64;
}

void lm_sampler_reset(struct lm_sampler *s)
{
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    if (s->cnt)
        memset(s->cnt, 0, (size_t)s->V * sizeof(int));
    s->hlen = s->hpos = 0;
}

int lm_sampler_new(struct lm_sampler **out, int V, const struct lm_sample_params *p)
{
    if (V <= 0 || !p || p->n_bias < 0)
        return AISLE_EINVAL;
    for (int i = 0; i < p->n_bias; i++)
        if (p->bias[i].token < 0 || p->bias[i].token >= V)
            return AISLE_EINVAL;
    struct lm_sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return AISLE_ENOMEM;
    s->p = *p;
    s->V = V;
    s->H = p->penalty_last_n > 0 ? p->penalty_last_n : 0;
    s->c = malloc((size_t)V * sizeof(*s->c));
    s->ids = malloc((size_t)V * sizeof(*s->ids));
    s->probs = malloc((size_t)V * sizeof(*s->probs));
    s->cnt = calloc((size_t)V, sizeof(*s->cnt));
    s->hist = malloc((size_t)(s->H ? s->H : 1) * sizeof(*s->hist));
    s->bias = malloc((size_t)(p->n_bias ? p->n_bias : 1) * sizeof(*s->bias));
    if (!s->c || !s->ids || !s->probs || !s->cnt || !s->hist || !s->bias) {
        lm_sampler_free(s);
        return AISLE_ENOMEM;
    }
    if (p->n_bias)
        memcpy(s->bias, p->bias, (size_t)p->n_bias * sizeof(*s->bias));
    s->p.bias = s->bias;
    lm_sampler_reset(s);
    *out = s;
    return 0;
}

void lm_sampler_free(struct lm_sampler *s)
{
    if (!s)
        return;
    free(s->c);
    free(s->ids);
    free(s->probs);
    free(s->cnt);
    free(s->hist);
    free(s->bias);
    free(s);
}

void lm_sampler_accept(struct lm_sampler *s, int32_t token)
{
    if (!s->H || token < 0 || token >= s->V)
        return;
    if (s->hlen == s->H)
        s->cnt[s->hist[s->hpos]]--; /* the oldest leaves the window */
    else
        s->hlen++;
    s->hist[s->hpos] = token;
    s->cnt[token]++;
    s->hpos = (s->hpos + 1) % s->H;
}

/* ---- the chain ------------------------------------------------------------------ */

static void apply_penalties(struct lm_sampler *s, float *logits)
{
    const struct lm_sample_params *p = &s->p;
    int rep = p->repeat_penalty > 0 && p->repeat_penalty != 1.0f;
    if (!s->hlen || (!rep && p->freq_penalty == 0 && p->presence_penalty == 0))
        return;
    /* Each distinct token once: cnt is negated while it is being visited and
     * restored in a second pass. */
    for (int i = 0; i < s->hlen; i++) {
        int32_t t = s->hist[i];
        int c = s->cnt[t];
        if (c <= 0)
            continue;
        float l = logits[t];
        if (rep)
            l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
        logits[t] = l - (float)c * p->freq_penalty - p->presence_penalty;
        s->cnt[t] = -c;
    }
    for (int i = 0; i < s->hlen; i++)
        if (s->cnt[s->hist[i]] < 0)
            s->cnt[s->hist[i]] = -s->cnt[s->hist[i]];
}

/* Descending logit, then ascending id: a total order, so results never depend
 * on the sort algorithm. */
static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cand_before(const struct cand *x, const struct cand *y)
{
    return cand_cmp(x, y) < 0;
}

/* Move the k first (in cand_cmp order) of c[0..n) to c[0..k), unordered. */
static void select_top(struct cand *c, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        struct cand pivot = c[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &pivot))
                i++;
            while (cand_before(&pivot, &c[j]))
                j--;
            if (i <= j) {
                struct cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

/* top-p without sorting the vocabulary: candidates are bucketed by how far
 * their logit lies below the max (TOPP_BUCKETS buckets over TOPP_RANGE nats;
 * the bucket index only grows as the logit falls). The buckets above the one
 * where the cumulative mass crosses the target are kept whole, unsorted; only
 * the boundary bucket is sorted and cut exactly. */
#define TOPP_BUCKETS 1024
#define TOPP_RANGE 40.0 /* nats; e^-40 is below a float's resolution of 1 */

static int bucket_of(float logit, float mx)
{
    double d = ((double)mx - logit) * (TOPP_BUCKETS / TOPP_RANGE);
    return d < TOPP_BUCKETS - 1 ? (int)d : TOPP_BUCKETS - 1;
}

/* Keep the shortest most-likely set of c[0..n) whose mass (unnormalised,
 * exp(l - mx)) reaches target, given s->bmass over every candidate that top-p
 * must count. Returns its size; the set is moved to c[0..). */
static int nucleus(struct lm_sampler *s, int n, float mx, double target)
{
    int bs = TOPP_BUCKETS - 1;
    double cum = 0;
    for (int b = 0; b < TOPP_BUCKETS; b++) {
        if (cum + s->bmass[b] >= target) {
            bs = b;
            break;
        }
        cum += s->bmass[b];
    }
    int nin = 0;
    for (int i = 0; i < n; i++)
        if (bucket_of(s->c[i].logit, mx) < bs) {
            struct cand t = s->c[nin];
            s->c[nin++] = s->c[i];
            s->c[i] = t;
        }
    int nb = nin;
    for (int i = nin; i < n; i++)
        if (bucket_of(s->c[i].logit, mx) == bs) {
            struct cand t = s->c[nb];
            s->c[nb++] = s->c[i];
            s->c[i] = t;
        }
    qsort(s->c + nin, (size_t)(nb - nin), sizeof(*s->c), cand_cmp);
    int m = nin;
    for (int i = nin; i < nb && cum < target; i++) {
        cum += expf(s->c[i].logit - mx);
        m = i + 1;
    }
    return m > 0 ? m : (n > 0 ? 1 : 0);
}

int lm_sampler_dist(struct lm_sampler *s, float *logits, const int32_t **ids, const float **probs, int *nout)
{
    const struct lm_sample_params *p = &s->p;
    const int V = s->V;
    if (p->mask)
        p->mask(p->mask_ctx, logits, V);
    for (int i = 0; i < p->n_bias; i++)
        logits[p->bias[i].token] += p->bias[i].bias;
    apply_penalties(s, logits);

    int n = 0;
    float mx = -INFINITY;
    int arg = -1;
    const int greedy = p->temperature <= 0; /* needs the argmax only */
    for (int i = 0; i < V; i++) {
        float l = logits[i];
        if (!(l > -INFINITY) || isnan(l))
            continue;
        if (!greedy)
            s->c[n] = (struct cand){l, i};
        n++;
        if (l > mx) {
            mx = l;
            arg = i;
        }
    }
    if (n == 0)
        return AISLE_ENOTFOUND;
    if (greedy) {
        s->ids[0] = arg;
        s->probs[0] = 1.0f;
        *ids = s->ids;
        *probs = s->probs;
        *nout = 1;
        return 0;
    }
    int sorted = 0;
    if (p->top_k > 0 && p->top_k < n) {
        select_top(s->c, n, p->top_k);
        n = p->top_k;
        qsort(s->c, (size_t)n, sizeof(*s->c), cand_cmp);
        sorted = 1;
    }
    /* Softmax denominator over every candidate left by top-k (untempered);
     * without top-k, top-p's bucketed masses come from the same pass. */
    int buckets = p->top_p < 1.0f && !sorted;
    if (buckets)
        memset(s->bmass, 0, sizeof(s->bmass));
    double z = 0;
    for (int i = 0; i < n; i++) {
        double e = expf(s->c[i].logit - mx); /* float exp: V of them per token */
        z += e;
        if (buckets)
            s->bmass[bucket_of(s->c[i].logit, mx)] += e;
    }
    if (p->min_p > 0) {
        /* p_i >= min_p * p_max  <=>  l_i >= max + log(min_p); a prefix in
         * sorted order, so it commutes with top-p and may run first. */
        float thr = mx + logf(p->min_p);
        int m = 0;
        for (int i = 0; i < n; i++)
            if (s->c[i].logit >= thr)
                s->c[m++] = s->c[i];
        n = m;
    }
    if (p->top_p < 1.0f) {
        double target = (double)p->top_p * z, cum = 0;
        if (sorted) {
            int m = n;
            for (int i = 0; i < n; i++) {
                cum += expf(s->c[i].logit - mx);
                if (cum >= target) {
                    m = i + 1;
                    break;
                }
            }
            n = m;
        } else {
            n = nucleus(s, n, mx, target);
        }
    }
    const float invt = 1.0f / p->temperature;
    double zt = 0;
    for (int i = 0; i < n; i++) {
        double e = expf((s->c[i].logit - mx) * invt);
        s->probs[i] = (float)e;
        s->ids[i] = s->c[i].id;
        zt += e;
    }
    for (int i = 0; i < n; i++)
        s->probs[i] = (float)(s->probs[i] / zt);
    *ids = s->ids;
    *probs = s->probs;
    *nout = n;
    return 0;
}

int lm_sampler_sample(struct lm_sampler *s, float *logits, int32_t *token)
{
    const int32_t *ids;
    const float *probs;
    int n;
    int rc = lm_sampler_dist(s, logits, &ids, &probs, &n);
    if (rc)
        return rc;
    double u = rng_uniform(s->rng), cum = 0;
    int pick = n - 1; /* rounding: the mass may sum to slightly under 1 */
    for (int i = 0; i < n; i++) {
        cum += probs[i];
        if (u < cum) {
            pick = i;
            break;
        }
    }
    *token = ids[pick];
    return 0;
}

/* ---- stop strings ------------------------------------------------------------- */

int lm_stop_init(struct lm_stop *st, const char *const *stops, size_t n)
{
    memset(st, 0, sizeof(*st));
    buf_init(&st->held, 0);
    buf_init(&st->out, 0);
    if (!n)
        return 0;
    st->stops = calloc(n, sizeof(char *));
    st->lens = calloc(n, sizeof(size_t));
    if (!st->stops || !st->lens)
        goto nomem;
    st->n = n;
    for (size_t i = 0; i < n; i++) {
        st->lens[i] = strlen(stops[i]);
        if (!st->lens[i]) {
            lm_stop_release(st);
            return AISLE_EINVAL;
        }
        if (!(st->stops[i] = strdup(stops[i])))
            goto nomem;
    }
    return 0;
nomem:
    lm_stop_release(st);
    return AISLE_ENOMEM;
}

void lm_stop_release(struct lm_stop *st)
{
    for (size_t i = 0; st->stops && i < st->n; i++)
        free(st->stops[i]);
    free(st->stops);
    free(st->lens);
    buf_release(&st->held);
    buf_release(&st->out);
    st->stops = NULL;
    st->lens = NULL;
    st->n = 0;
}

/* Release held[0..k) into out and keep the rest. */
static int release(struct lm_stop *st, size_t k)
{
    if (!st->held.len)
        return 0;
    int rc = buf_append(&st->out, st->held.data, k);
    if (rc)
        return rc;
    memmove(st->held.data, st->held.data + k, st->held.len - k);
    st->held.len -= k;
    st->held.data[st->held.len] = '\0';
    return 0;
}

int lm_stop_push(struct lm_stop *st, const char *text, size_t len, const char **emit, size_t *emit_len)
{
    buf_reset(&st->out);
    int rc = 0;
    if (!st->stopped && len && !(rc = buf_append(&st->held, text, len))) {
        const char *h = st->held.data;
        size_t hn = st->held.len, first = hn;
        for (size_t i = 0; i < st->n; i++) {
            const char *f = memmem(h, hn, st->stops[i], st->lens[i]);
            if (f && (size_t)(f - h) < first)
                first = (size_t)(f - h);
        }
        if (first < hn) {
            rc = release(st, first);
            st->stopped = 1;
            buf_reset(&st->held);
        } else {
            /* Hold back the longest tail that a stop string starts with. */
            size_t keep = 0;
            for (size_t i = 0; i < st->n; i++)
                for (size_t k = st->lens[i] - 1 < hn ? st->lens[i] - 1 : hn; k > keep; k--)
                    if (!memcmp(h + hn - k, st->stops[i], k)) {
                        keep = k;
                        break;
                    }
            rc = release(st, hn - keep);
        }
    }
    if (rc < 0)
        return rc;
    *emit = st->out.data ? st->out.data : "";
    *emit_len = st->out.len;
    return st->stopped;
}

int lm_stop_flush(struct lm_stop *st, const char **emit, size_t *emit_len)
{
    buf_reset(&st->out);
    int rc = st->stopped ? 0 : release(st, st->held.len);
    if (rc)
        return rc;
    *emit = st->out.data ? st->out.data : "";
    *emit_len = st->out.len;
    return 0;
}
