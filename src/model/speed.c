/* speed.c — prefill and batched-decode timing; see speed.h. */
#include "model/speed.h"

#include "core/error.h"

#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int32_t next_token(uint64_t *s, int V)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int32_t)((*s >> 33) % (uint64_t)V);
}

/* KV cache and buffers for nseq sequences of len positions. */
struct rig {
    struct lm_kv *kv;
    struct lm_batch b;
    float *logits; /* (nlogits, V) */
    int seq[256];
};

static int rig_init(struct rig *r, struct lm_model *m, int nseq, int len, int nbatch, int nlogits, int f16)
{
    r->kv = NULL;
    r->logits = NULL;
    r->b.e = NULL;
    if (nseq > 256)
        return AISLE_EINVAL;
    int per = (len + LM_KV_DEFAULT_BLOCK - 1) / LM_KV_DEFAULT_BLOCK;
    struct lm_kv_opts o = {.block_tokens = LM_KV_DEFAULT_BLOCK, .n_blocks = per * nseq, .max_seqs = nseq,
                           .max_seq_len = len, .f16 = f16};
    int rc = lm_kv_new(&r->kv, m, &o);
    if (rc || (rc = lm_batch_init(&r->b, nbatch)))
        return rc;
    r->logits = malloc((size_t)nlogits * lm_model_n_vocab(m) * sizeof(float));
    if (!r->logits)
        return AISLE_ENOMEM;
    for (int i = 0; i < nseq; i++)
        lm_kv_seq_new(r->kv, &r->seq[i]);
    return 0;
}

static void rig_release(struct rig *r)
{
    lm_kv_free(r->kv);
    lm_batch_release(&r->b);
    free(r->logits);
}

int lm_speed_prefill(struct lm_model *m, int n, int reps, int kv_f16, double *tps)
{
    if (n <= 0 || reps <= 0)
        return AISLE_EINVAL;
    struct rig r;
    int rc = rig_init(&r, m, 1, n, n, 1, kv_f16);
    uint64_t s = 1;
    double best = 0;
    for (int k = 0; !rc && k <= reps; k++) { /* k = 0: warm-up */
        lm_kv_seq_truncate(r.kv, r.seq[0], 0);
        r.b.n = 0;
        for (int i = 0; i < n; i++)
            lm_batch_add(&r.b, r.seq[0], i, next_token(&s, lm_model_n_vocab(m)), i == n - 1);
        double t0 = now();
        rc = lm_decode(m, r.kv, &r.b, r.logits);
        double t = n / (now() - t0);
        if (k && t > best)
            best = t;
    }
    rig_release(&r);
    if (!rc)
        *tps = best;
    return rc;
}

/* One run of lm_speed_decode. */
static int decode_once(struct lm_model *m, int nseq, int prompt, int steps, int kv_f16, uint64_t seed, double *tps)
{
    struct rig r;
    int V = lm_model_n_vocab(m);
    int rc = rig_init(&r, m, nseq, prompt + steps + 1, nseq * prompt, nseq, kv_f16);
    if (!rc) {
        for (int q = 0; q < nseq; q++)
            for (int i = 0; i < prompt; i++)
                lm_batch_add(&r.b, r.seq[q], i, next_token(&seed, V), i == prompt - 1);
        rc = lm_decode(m, r.kv, &r.b, r.logits);
    }
    double t0 = 0;
    for (int k = 0; !rc && k <= steps; k++) { /* k = 0: warm-up */
        if (k == 1)
            t0 = now();
        r.b.n = 0;
        for (int q = 0; q < nseq; q++)
            lm_batch_add(&r.b, r.seq[q], prompt + k, next_token(&seed, V), 1);
        rc = lm_decode(m, r.kv, &r.b, r.logits);
    }
    double dt = now() - t0;
    rig_release(&r);
    if (!rc)
        *tps = (double)nseq * steps / dt;
    return rc;
}

int lm_speed_decode(struct lm_model *m, int nseq, int prompt, int steps, int reps, int kv_f16, double *tps)
{
    if (nseq <= 0 || prompt <= 0 || steps <= 0 || reps <= 0)
        return AISLE_EINVAL;
    double best = 0;
    for (int k = 0; k < reps; k++) {
        double t;
        int rc = decode_once(m, nseq, prompt, steps, kv_f16, 2 + (uint64_t)k, &t);
        if (rc)
            return rc;
        best = t > best ? t : best;
    }
    *tps = best;
    return 0;
}
