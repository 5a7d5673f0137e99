/*
 * model.c — loading a Llama-family GGUF model and the batched forward pass
 * (lm_decode) over the paged KV cache.
 *
 * Dims legend: T batch entries (a chunk of at most max_batch), C n_embd,
 * L layers, NH heads, NKV key/value heads, HD head_dim, KVD = NKV*HD,
 * QD = NH*HD, F n_ff, V vocabulary, BS tokens per KV block.
 *
 * Design: every matrix product runs once for all T entries of a chunk
 * (tensor_matmul with T rows), so prompt chunks and the decode tokens of many
 * sequences share one pass over the weights; Q/K/V and gate/up go to the pool
 * as one dispatch each (tensor_matmul_multi), 4 pool wake-ups per layer.
 * Attention works on runs (consecutive entries of one sequence) and KV heads:
 * their queries against positions 0..pos of their own sequence, read block by
 * block from the cache as two small matrix products per block, with a
 * one-pass (online) softmax, so no score buffer grows with the context. All
 * K/V rows of a chunk are written before any attention of that layer, so an
 * entry sees the earlier entries of its sequence in the same chunk.
 */
#include "model/model.h"

#include "core/error.h"
#include "gguf/quant.h"
#include "model/kv_impl.h"
#include "tensor/tensor.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Default lm_model_opts.att_pool_min: below ~65k multiply-adds (tens of
 * microseconds) waking the pool costs more than it saves. */
#define ATT_POOL_MIN (1L << 16)

/* Entries of a chunk that extend one sequence at consecutive positions (a
 * prompt chunk) form a run; attention processes a run's queries together,
 * at most ATT_RUN_ROWS query rows (entries x heads per KV head) at a time
 * (and at least one entry): small enough that tensor_matmul multiplies
 * F16 K/V directly rather than through a dequantize tile it would allocate. */
#define ATT_RUN_ROWS 32

struct lm_w {
    const void *p; /* rows in the map, ggml type t */
    enum ggml_type t;
    size_t nbytes;
};

struct lm_layer {
    const float *attn_norm; /* (C) */
    struct lm_w wq;         /* (QD, C) */
    struct lm_w wk, wv;     /* (KVD, C) */
    struct lm_w wo;         /* (C, QD) */
    const float *ffn_norm;  /* (C) */
    struct lm_w wgate, wup; /* (F, C) */
    struct lm_w wdown;      /* (C, F) */
};

struct lm_model {
    struct gguf *g;
    struct llama_hparams hp;
    int C, L, NH, NKV, HD, KVD, QD, F, V;
    struct lm_layer *layers; /* (L) */
    struct lm_w tok_embd;    /* (V, C) */
    struct lm_w output;      /* (V, C); tok_embd when tied */
    const float *output_norm; /* (C) */
    float *norms;             /* (2L + 1, C) owned F32 copies of the norm weights */
    float rope_scale;         /* 1 / llama.rope.scaling.factor (linear), else 1 */
    float *rope_ff;           /* (HD/2) owned copy of rope_freqs.weight, or NULL */
    struct tpool *pool;
    int nth;

    /* Activations for cap entries, one slab. */
    int cap;
    long att_pool_min;
    float *slab;
    float *x;    /* (cap, C) residual stream */
    float *xb;   /* (cap, C) normed input / projection output */
    float *q;    /* (cap, QD) */
    float *k;    /* (cap, KVD) */
    float *v;    /* (cap, KVD) */
    float *att;  /* (cap, QD) attention output */
    float *hb;   /* (cap, F) gate, then swiglu */
    float *hb2;  /* (cap, F) up */
    float *attw; /* (nth, attw_per_thread) attention scratch, see attend() */
    size_t attw_per_thread;
    int *pos;    /* (cap) positions of the chunk's entries */
    int *eblk;   /* (cap) KV block of each entry */
    int *erow;   /* (cap) row in that block */
    int *run0;   /* (cap + 1) first entry of each attention run, see attention() */
    int run_len; /* entries per run at most */
    char err[256];
};

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int kernel_type(enum ggml_type t)
{
    switch (t) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

static int get_w(const struct gguf *g, const char *name, struct lm_w *w, char *err, size_t errlen)
{
    const struct gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t)
        return fail(err, errlen, AISLE_ENOTFOUND, "tensor '%s' is missing", name);
    if (!kernel_type(t->type))
        return fail(err, errlen, AISLE_EFORMAT, "tensor '%s' has type %s, which the kernels do not support", name,
                    ggml_type_name(t->type) ? ggml_type_name(t->type) : "?");
    w->p = t->data;
    w->t = t->type;
    w->nbytes = t->nbytes;
    return 0;
}

/* Copy a norm vector (any dequantizable type) into dst (C floats). */
static int get_norm(const struct gguf *g, const char *name, float *dst, int C, char *err, size_t errlen)
{
    const struct gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t)
        return fail(err, errlen, AISLE_ENOTFOUND, "tensor '%s' is missing", name);
    if (ggml_dequantize_row(t->type, t->data, dst, C))
        return fail(err, errlen, AISLE_EFORMAT, "tensor '%s': cannot read its type", name);
    return 0;
}

/* RoPE scaling as llama.cpp reads it for LLM_ARCH_LLAMA: the factor from
 * llama.rope.scaling.factor (or the older llama.rope.scale_linear), applied
 * as freq_scale = 1/factor unless the type is "none"; the type may be absent,
 * "none" or "linear" (YaRN and LongRoPE change the formula itself and are
 * refused rather than run wrong); and the optional per-pair frequency
 * factors of Llama 3.1 in the F32 tensor rope_freqs.weight (HD/2 positive
 * values). */
static int load_rope_scaling(struct lm_model *m, char *err, size_t errlen)
{
    const char *type = "linear";
    size_t tlen = strlen(type);
    int rc = gguf_get_str(m->g, "llama.rope.scaling.type", &type, &tlen);
    if (rc && rc != AISLE_ENOTFOUND)
        return fail(err, errlen, AISLE_EFORMAT, "key 'llama.rope.scaling.type' must be a string");
    int none = tlen == 4 && !memcmp(type, "none", 4);
    if (!none && !(tlen == 6 && !memcmp(type, "linear", 6)))
        return fail(err, errlen, AISLE_EFORMAT, "rope scaling type '%.*s' is not supported (none and linear are)",
                    (int)(tlen < 32 ? tlen : 32), type);
    float factor = 0.0f;
    const char *fkey = "llama.rope.scaling.factor";
    rc = gguf_get_f32(m->g, fkey, &factor);
    if (rc == AISLE_ENOTFOUND) {
        fkey = "llama.rope.scale_linear";
        rc = gguf_get_f32(m->g, fkey, &factor);
    }
    if (rc && rc != AISLE_ENOTFOUND)
        return fail(err, errlen, AISLE_EFORMAT, "key '%s' must be a float", fkey);
    if (!rc && !(factor >= 0.0f && factor <= 1e6f)) /* also NaN */
        return fail(err, errlen, AISLE_EFORMAT, "key '%s' = %g is not a factor in [0, 1e6]", fkey, (double)factor);
    m->rope_scale = none || factor == 0.0f ? 1.0f : 1.0f / factor;

    const struct gguf_tensor *t = gguf_find_tensor(m->g, "rope_freqs.weight");
    if (!t)
        return 0;
    if (t->type != GGML_TYPE_F32 || t->ndim != 1 || t->ne[0] != m->HD / 2)
        return fail(err, errlen, AISLE_EFORMAT, "tensor 'rope_freqs.weight' must be F32 of %d elements (head_dim/2)",
                    m->HD / 2);
    m->rope_ff = malloc((size_t)m->HD / 2 * sizeof(float));
    if (!m->rope_ff)
        return fail(err, errlen, AISLE_ENOMEM, "out of memory");
    memcpy(m->rope_ff, t->data, (size_t)m->HD / 2 * sizeof(float));
    for (int i = 0; i < m->HD / 2; i++)
        if (!(m->rope_ff[i] > 0.0f && m->rope_ff[i] < 1e30f))
            return fail(err, errlen, AISLE_EFORMAT, "tensor 'rope_freqs.weight': element %d = %g is not positive and finite",
                        i, (double)m->rope_ff[i]);
    return 0;
}

int lm_model_load(struct lm_model **out, const char *path, const struct lm_model_opts *opts, char *err,
                  size_t errlen)
{
    struct lm_model *m = calloc(1, sizeof(*m));
    if (!m)
        return fail(err, errlen, AISLE_ENOMEM, "out of memory");
    int rc = gguf_open(&m->g, path, err, errlen);
    if (rc)
        goto fail;
    if ((rc = llama_hparams_read(m->g, &m->hp, err, errlen)) || (rc = llama_check_tensors(m->g, &m->hp, err, errlen)))
        goto fail;
    const struct llama_hparams *hp = &m->hp;
    if (hp->n_rot != hp->head_dim) {
        rc = fail(err, errlen, AISLE_EFORMAT, "rope dimension count %u differs from head_dim %u (unsupported)",
                  hp->n_rot, hp->head_dim);
        goto fail;
    }
    m->C = (int)hp->n_embd;
    m->L = (int)hp->n_layer;
    m->NH = (int)hp->n_head;
    m->NKV = (int)hp->n_head_kv;
    m->HD = (int)hp->head_dim;
    m->KVD = m->NKV * m->HD;
    m->QD = m->NH * m->HD;
    m->F = (int)hp->n_ff;
    m->V = (int)hp->n_vocab;
    if ((rc = load_rope_scaling(m, err, errlen)))
        goto fail;

    m->layers = calloc((size_t)m->L, sizeof(*m->layers));
    m->norms = malloc((size_t)(2 * m->L + 1) * m->C * sizeof(float));
    if (!m->layers || !m->norms) {
        rc = fail(err, errlen, AISLE_ENOMEM, "out of memory");
        goto fail;
    }
    char name[96];
    for (int l = 0; l < m->L; l++) {
        struct lm_layer *ly = &m->layers[l];
        float *an = m->norms + (size_t)(2 * l) * m->C, *fn = an + m->C;
        struct lm_w *ws[LLAMA_BLK_COUNT] = {NULL, &ly->wq, &ly->wk, &ly->wv, &ly->wo, NULL, &ly->wgate, &ly->wup, &ly->wdown};
        for (int which = 0; which < LLAMA_BLK_COUNT; which++) {
            llama_tensor_name(name, sizeof(name), l, (enum llama_blk_tensor)which);
            if (which == LLAMA_ATTN_NORM)
                rc = get_norm(m->g, name, an, m->C, err, errlen);
            else if (which == LLAMA_FFN_NORM)
                rc = get_norm(m->g, name, fn, m->C, err, errlen);
            else
                rc = get_w(m->g, name, ws[which], err, errlen);
            if (rc)
                goto fail;
        }
        ly->attn_norm = an;
        ly->ffn_norm = fn;
    }
    float *on = m->norms + (size_t)(2 * m->L) * m->C;
    if ((rc = get_norm(m->g, LLAMA_TENSOR_OUTPUT_NORM, on, m->C, err, errlen)) ||
        (rc = get_w(m->g, LLAMA_TENSOR_TOKEN_EMBD, &m->tok_embd, err, errlen)))
        goto fail;
    m->output_norm = on;
    if (hp->tied_output)
        m->output = m->tok_embd;
    else if ((rc = get_w(m->g, LLAMA_TENSOR_OUTPUT, &m->output, err, errlen)))
        goto fail;

    m->pool = tpool_new(opts ? opts->nthreads : 0);
    if (!m->pool) {
        rc = fail(err, errlen, AISLE_ENOMEM, "cannot start the thread pool");
        goto fail;
    }
    m->nth = tpool_nthreads(m->pool);
    m->cap = opts && opts->max_batch > 0 ? opts->max_batch : 512;
    m->att_pool_min = opts && opts->att_pool_min ? opts->att_pool_min : ATT_POOL_MIN;
    int G = m->NH / m->NKV;
    m->run_len = G < ATT_RUN_ROWS ? ATT_RUN_ROWS / G : 1;
    m->attw_per_thread = (size_t)m->run_len * G * (LM_KV_MAX_BLOCK + 3 * (size_t)m->HD + 2);
    size_t cap = (size_t)m->cap;
    size_t nf = cap * (2 * (size_t)m->C + 2 * (size_t)m->QD + 2 * (size_t)m->KVD + 2 * (size_t)m->F) +
                (size_t)m->nth * m->attw_per_thread;
    m->slab = malloc(nf * sizeof(float));
    m->pos = malloc((4 * cap + 1) * sizeof(int));
    if (!m->slab || !m->pos) {
        rc = fail(err, errlen, AISLE_ENOMEM, "out of memory for activations (%zu entries)", cap);
        goto fail;
    }
    float *p = m->slab;
    m->x = p, p += cap * m->C;
    m->xb = p, p += cap * m->C;
    m->q = p, p += cap * m->QD;
    m->att = p, p += cap * m->QD;
    m->k = p, p += cap * m->KVD;
    m->v = p, p += cap * m->KVD;
    m->hb = p, p += cap * m->F;
    m->hb2 = p, p += cap * m->F;
    m->attw = p;
    m->eblk = m->pos + cap;
    m->erow = m->eblk + cap;
    m->run0 = m->erow + cap;
    *out = m;
    return 0;
fail:
    lm_model_free(m);
    return rc;
}

void lm_model_free(struct lm_model *m)
{
    if (!m)
        return;
    tpool_free(m->pool);
    free(m->slab);
    free(m->pos);
    free(m->layers);
    free(m->norms);
    free(m->rope_ff);
    gguf_close(m->g);
    free(m);
}

const struct llama_hparams *lm_model_hparams(const struct lm_model *m)
{
    return &m->hp;
}

const struct gguf *lm_model_gguf(const struct lm_model *m)
{
    return m->g;
}

int lm_model_n_vocab(const struct lm_model *m)
{
    return m->V;
}

enum ggml_type lm_model_wtype(const struct lm_model *m)
{
    return m->layers[0].wq.t;
}

struct tpool *lm_model_pool(struct lm_model *m)
{
    return m->pool;
}

const char *lm_model_errmsg(const struct lm_model *m)
{
    return m->err;
}

size_t lm_model_bytes_per_token(const struct lm_model *m)
{
    size_t n = m->output.nbytes + ggml_row_size(m->tok_embd.t, m->C);
    for (int l = 0; l < m->L; l++) {
        const struct lm_layer *ly = &m->layers[l];
        n += ly->wq.nbytes + ly->wk.nbytes + ly->wv.nbytes + ly->wo.nbytes + ly->wgate.nbytes + ly->wup.nbytes +
             ly->wdown.nbytes;
    }
    return n;
}

/* ---- batches ------------------------------------------------------------------- */

int lm_batch_init(struct lm_batch *b, int cap)
{
    b->n = 0;
    b->cap = 0;
    b->e = malloc((size_t)(cap > 0 ? cap : 1) * sizeof(*b->e));
    if (!b->e)
        return AISLE_ENOMEM;
    b->cap = cap > 0 ? cap : 0;
    return 0;
}

void lm_batch_release(struct lm_batch *b)
{
    free(b->e);
    b->e = NULL;
    b->n = b->cap = 0;
}

int lm_batch_add(struct lm_batch *b, int seq, int pos, int32_t token, int want_logits)
{
    if (b->n >= b->cap)
        return AISLE_ETOOBIG;
    b->e[b->n++] = (struct lm_batch_entry){seq, pos, token, want_logits ? 1 : 0};
    return 0;
}

/* ---- attention ------------------------------------------------------------------ */

struct att_job {
    struct lm_model *m;
    struct lm_kv *kv;
    const struct lm_batch_entry *e; /* (T) */
    int nruns, l;
    atomic_int next; /* next (run, kv head) unit to claim */
};

/* Attention of R consecutive entries t0.. of sequence s (positions pos[t0]..
 * pos[t0] + R - 1) for the G = NH/NKV query heads sharing K/V head kvh, layer
 * l. Rows i = r*G + g: queries Q (R*G, HD) gathered from m->q; per block, two
 * small matrix products read in place from the cache (kv_impl.h's layouts):
 * scores (R*G, n) = Q · K_blk^T, then after a rescale of the running max and
 * sum (once per block: "online" softmax, no buffer growing with the context)
 * acc (R*G, HD) += W (R*G, BS) · (V_blk^T)^T, where W is zero past each row's
 * own position (causal) and past the block's n positions. The results go to
 * m->att. Scratch w: Q, acc, tmp (R*G, HD), sc (R*G, BS), mx, sum (R*G). */
static void attend_run(struct lm_model *m, const struct lm_kv *kv, const struct lm_seq *s, int l, int kvh, int t0,
                       int R, float *w)
{
    const int HD = m->HD, BS = kv->BS, G = m->NH / m->NKV, RG = R * G;
    const int first = m->pos[t0], last = first + R - 1;
    const float scale = 1.0f / sqrtf((float)HD);
    const enum ggml_type kt = kv->f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    float *Q = w, *acc = Q + (size_t)RG * HD, *tmp = acc + (size_t)RG * HD, *sc = tmp + (size_t)RG * HD,
          *mx = sc + (size_t)RG * BS, *sum = mx + RG;
    for (int r = 0; r < R; r++)
        memcpy(Q + (size_t)r * G * HD, m->q + (size_t)(t0 + r) * m->QD + (size_t)kvh * G * HD,
               (size_t)G * HD * sizeof(float));
    for (int i = 0; i < RG; i++) {
        mx[i] = -INFINITY;
        sum[i] = 0.0f;
    }
    memset(acc, 0, (size_t)RG * HD * sizeof(float));
    for (int p0 = 0; p0 <= last; p0 += BS) {
        int n = last - p0 + 1 < BS ? last - p0 + 1 : BS;
        size_t off = kv_off(kv, s->tab[p0 / BS], l, kvh) * kv->elt;
        /* The shapes are valid by construction: these products cannot fail. */
        (void)tensor_matmul(NULL, sc, Q, (const char *)kv->k + off, kt, RG, HD, n);
        for (int i = RG - 1; i >= 0; i--) { /* rows of n -> rows of BS, last first */
            float *row = sc + (size_t)i * BS, bm = -INFINITY;
            memmove(row, sc + (size_t)i * n, (size_t)n * sizeof(float));
            int own = first + i / G, valid = own - p0 + 1 < n ? own - p0 + 1 : n;
            for (int j = 0; j < valid; j++) {
                row[j] *= scale;
                bm = row[j] > bm ? row[j] : bm;
            }
            if (valid > 0 && bm > mx[i]) {
                float c = expf(mx[i] - bm); /* 0 on the first block */
                sum[i] *= c;
                for (int d = 0; d < HD; d++)
                    acc[(size_t)i * HD + d] *= c;
                mx[i] = bm;
            }
            for (int j = 0; j < valid; j++) {
                row[j] = expf(row[j] - mx[i]);
                sum[i] += row[j];
            }
            for (int j = valid > 0 ? valid : 0; j < BS; j++)
                row[j] = 0.0f;
        }
        (void)tensor_matmul(NULL, tmp, sc, (const char *)kv->v + off, kt, RG, BS, HD);
        nn_axpy_f32(acc, 1.0f, tmp, RG * HD);
    }
    for (int i = 0; i < RG; i++) {
        int r = i / G, g = i % G;
        float inv = 1.0f / sum[i], *out = m->att + (size_t)(t0 + r) * m->QD + (size_t)(kvh * G + g) * HD;
        for (int d = 0; d < HD; d++)
            out[d] = acc[(size_t)i * HD + d] * inv;
    }
}

static void att_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    struct att_job *j = ctx;
    struct lm_model *m = j->m;
    const int NKV = m->NKV;
    float *w = m->attw + (size_t)ith * m->attw_per_thread;
    for (;;) {
        int u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (u >= j->nruns * NKV)
            break;
        int run = u / NKV, kvh = u % NKV, t0 = m->run0[run];
        attend_run(m, j->kv, &j->kv->seqs[j->e[t0].seq], j->l, kvh, t0, m->run0[run + 1] - t0, w);
    }
}

/* Attention of one layer for the chunk. Small work (short contexts, few
 * entries) runs on the calling thread: waking the pool would cost more. */
static void attention(struct lm_model *m, struct lm_kv *kv, const struct lm_batch_entry *e, int T, int l)
{
    /* Runs: a new one where the sequence changes, the position does not
     * follow on, or run_len entries are reached. run0 (nruns + 1) bounds them. */
    int nruns = 0;
    for (int t = 0; t < T; t++)
        if (t == 0 || e[t].seq != e[t - 1].seq || e[t].pos != e[t - 1].pos + 1 || t - m->run0[nruns - 1] == m->run_len)
            m->run0[nruns++] = t;
    m->run0[nruns] = T;
    struct att_job job = {.m = m, .kv = kv, .e = e, .nruns = nruns, .l = l};
    atomic_init(&job.next, 0);
    long work = 0;
    for (int t = 0; t < T; t++)
        work += (long)(m->pos[t] + 1) * m->QD;
    if (m->att_pool_min > 0 && work < m->att_pool_min)
        att_worker(&job, 0, 1);
    else
        tpool_run(m->pool, att_worker, &job);
}

/* Store one position's keys and values, k and v (NKV, HD), at row `row` of
 * block b, layer l: each head's key as a row, its value as a column. */
static void kv_write(struct lm_kv *kv, int b, int l, int row, const float *k, const float *v)
{
    const int HD = kv->HD, BS = kv->BS;
    for (int h = 0; h < kv->NKV; h++) {
        size_t off = kv_off(kv, b, l, h);
        const float *kh = k + (size_t)h * HD, *vh = v + (size_t)h * HD;
        if (kv->f16) {
            uint16_t *kd = (uint16_t *)kv->k + off + (size_t)row * HD, *vd = (uint16_t *)kv->v + off + row;
            nn_f32_to_f16(kd, kh, HD);
            for (int i = 0; i < HD; i++)
                vd[(size_t)i * BS] = ggml_fp32_to_fp16(vh[i]);
        } else {
            float *kd = (float *)kv->k + off + (size_t)row * HD, *vd = (float *)kv->v + off + row;
            memcpy(kd, kh, (size_t)HD * sizeof(float));
            for (int i = 0; i < HD; i++)
                vd[(size_t)i * BS] = vh[i];
        }
    }
}

/* ---- forward --------------------------------------------------------------------- */

/* The forward of T entries whose KV slots (eblk/erow) are assigned; logits of
 * the entries marked want go to logits (nw, V). */
static int forward_chunk(struct lm_model *m, struct lm_kv *kv, const struct lm_batch_entry *e, int T, float *logits)
{
    const int C = m->C, QD = m->QD, KVD = m->KVD, F = m->F;
    const float eps = m->hp.rms_eps, base = m->hp.rope_freq_base;
    int rc;
    for (int t = 0; t < T; t++) {
        size_t rb = ggml_row_size(m->tok_embd.t, C);
        if ((rc = ggml_dequantize_row(m->tok_embd.t, (const char *)m->tok_embd.p + rb * (size_t)e[t].token,
                                      m->x + (size_t)t * C, C)))
            return rc;
        m->pos[t] = e[t].pos;
    }
    for (int l = 0; l < m->L; l++) {
        const struct lm_layer *ly = &m->layers[l];
        nn_rmsnorm_forward(m->xb, m->x, ly->attn_norm, T, C, eps);
        /* Q, K and V in one pool dispatch, the input converted once. */
        float *qkv_out[3] = {m->q, m->k, m->v};
        const void *qkv_w[3] = {ly->wq.p, ly->wk.p, ly->wv.p};
        const enum ggml_type qkv_t[3] = {ly->wq.t, ly->wk.t, ly->wv.t};
        const int qkv_n[3] = {QD, KVD, KVD};
        if ((rc = tensor_matmul_multi(m->pool, 3, qkv_out, m->xb, qkv_w, qkv_t, qkv_n, T, C)))
            return rc;
        nn_rope_forward_ext(m->q, m->pos, T, m->NH, m->HD, base, m->rope_scale, m->rope_ff);
        nn_rope_forward_ext(m->k, m->pos, T, m->NKV, m->HD, base, m->rope_scale, m->rope_ff);
        for (int t = 0; t < T; t++)
            kv_write(kv, m->eblk[t], l, m->erow[t], m->k + (size_t)t * KVD, m->v + (size_t)t * KVD);
        attention(m, kv, e, T, l);
        if ((rc = tensor_matmul(m->pool, m->xb, m->att, ly->wo.p, ly->wo.t, T, QD, C)))
            return rc;
        nn_axpy_f32(m->x, 1.0f, m->xb, T * C);
        nn_rmsnorm_forward(m->xb, m->x, ly->ffn_norm, T, C, eps);
        float *gu_out[2] = {m->hb, m->hb2};
        const void *gu_w[2] = {ly->wgate.p, ly->wup.p};
        const enum ggml_type gu_t[2] = {ly->wgate.t, ly->wup.t};
        const int gu_n[2] = {F, F};
        if ((rc = tensor_matmul_multi(m->pool, 2, gu_out, m->xb, gu_w, gu_t, gu_n, T, C)))
            return rc;
        nn_swiglu_forward(m->hb, m->hb, m->hb2, T * F);
        if ((rc = tensor_matmul(m->pool, m->xb, m->hb, ly->wdown.p, ly->wdown.t, T, F, C)))
            return rc;
        nn_axpy_f32(m->x, 1.0f, m->xb, T * C);
    }
    /* Only the rows that want logits go through the final norm and the
     * (largest) output projection. */
    int nw = 0;
    for (int t = 0; t < T; t++)
        if (e[t].want_logits)
            memcpy(m->xb + (size_t)(nw++) * C, m->x + (size_t)t * C, (size_t)C * sizeof(float));
    if (nw == 0)
        return 0;
    nn_rmsnorm_forward(m->xb, m->xb, m->output_norm, nw, C, eps);
    return tensor_matmul(m->pool, logits, m->xb, m->output.p, m->output.t, nw, C, m->V);
}

static int bad(struct lm_model *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(struct lm_model *m, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof(m->err), fmt, ap);
    va_end(ap);
    return code;
}

int lm_decode(struct lm_model *m, struct lm_kv *kv, const struct lm_batch *batch, float *logits_out)
{
    m->err[0] = '\0';
    if (!batch || batch->n < 0 || (batch->n > 0 && !batch->e))
        return bad(m, AISLE_EINVAL, "no batch");
    if (kv->L != m->L || kv->KVD != m->KVD)
        return bad(m, AISLE_EINVAL, "the KV cache was made for another model shape");
    const struct lm_batch_entry *e = batch->e;
    int n = batch->n, need = 0, nwant = 0;
    /* Check everything before writing anything. */
    for (int i = 0; i < n; i++) {
        if (e[i].seq < 0 || e[i].seq >= kv->max_seqs || !kv->seqs[e[i].seq].used)
            return bad(m, AISLE_EINVAL, "entry %d: sequence %d is not in use", i, e[i].seq);
        kv->sim_len[e[i].seq] = kv->seqs[e[i].seq].len;
    }
    for (int i = 0; i < n; i++) {
        int s = e[i].seq;
        if (e[i].token < 0 || e[i].token >= m->V)
            return bad(m, AISLE_EINVAL, "entry %d: token %d is outside the vocabulary (%d)", i, (int)e[i].token, m->V);
        if (e[i].pos != kv->sim_len[s])
            return bad(m, AISLE_EINVAL, "entry %d: position %d, but sequence %d is at %d", i, e[i].pos, s,
                       kv->sim_len[s]);
        if (e[i].pos >= kv->max_blocks * kv->BS)
            return bad(m, AISLE_ETOOBIG, "entry %d: position %d passes the sequence limit %d", i, e[i].pos,
                       kv->max_blocks * kv->BS);
        if (e[i].pos % kv->BS == 0)
            need++;
        kv->sim_len[s]++;
        nwant += e[i].want_logits != 0;
    }
    if (need > kv->nfree)
        return bad(m, AISLE_ETOOBIG, "the batch needs %d new KV blocks, %d are free", need, kv->nfree);
    if (nwant && !logits_out)
        return bad(m, AISLE_EINVAL, "logits asked for but no output buffer");

    float *lo = logits_out;
    for (int c0 = 0; c0 < n; c0 += m->cap) {
        int T = n - c0 < m->cap ? n - c0 : m->cap;
        const struct lm_batch_entry *ce = e + c0;
        for (int t = 0; t < T; t++) {
            struct lm_seq *s = &kv->seqs[ce[t].seq];
            int row = ce[t].pos % kv->BS;
            int b = row == 0 ? kv_take_block(kv, ce[t].seq) : s->tab[ce[t].pos / kv->BS];
            kv->tokens[(size_t)b * kv->BS + row] = ce[t].token;
            m->eblk[t] = b;
            m->erow[t] = row;
            s->len++;
        }
        int rc = forward_chunk(m, kv, ce, T, lo);
        if (rc) {
            /* Undo the whole call: each sequence back to its length before it
             * (entries in reverse, so each ends at its first entry's pos). The
             * blocks of this chunk are private and unregistered; those filled
             * by earlier chunks hold valid K/V and stay findable. */
            for (int i = c0 + T - 1; i >= 0; i--)
                lm_kv_seq_truncate(kv, e[i].seq, e[i].pos);
            return bad(m, rc, "kernel failed: %s", aisle_strerror(rc));
        }
        for (int t = 0; t < T; t++) {
            if (m->erow[t] == kv->BS - 1)
                kv_block_filled(kv, ce[t].seq, ce[t].pos / kv->BS);
            if (ce[t].want_logits)
                lo += m->V;
        }
    }
    return 0;
}
