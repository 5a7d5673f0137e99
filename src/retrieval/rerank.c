/*
 * rerank.c — reranker features, scoring and logistic-regression fitting (see
 * rerank.h). Features are standardized by construction (all within about
 * 0..1), so plain gradient descent with a fixed step converges.
 */
#include "retrieval/rerank.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fitted by `aisle eval retrieval --fit` (encoder-v1, 400 gradient steps,
 * L2 1e-4, classes balanced) on 15,973 candidates of hetPQA evidence_ranking
 * dev and semiPQA attribute_ranking dev; docs/RETRIEVAL.md. Refit and paste
 * here whenever the encoder or the features change. */
const struct rr_model rr_shipped = {
    .nfeat = RR_CORE_FEATS,
    .w = {2.024790f, 0.601487f, 1.506017f, 2.178990f, 1.169203f, -0.259842f, 0.000000f, 0.000000f, 0.000000f,
          0.000000f, 0.000000f, 0.000000f, -1.934561f},
};

void rr_features(const struct rr_input *in, float *x)
{
    x[0] = in->bm25_max > 0 && in->bm25 > 0 ? (float)(in->bm25 / in->bm25_max) : 0.0f;
    x[1] = in->bm25_rank >= 0 ? 1.0f / (1.0f + (float)in->bm25_rank) : 0.0f;
    x[2] = (float)in->cosine;
    x[3] = in->dense_rank >= 0 ? 1.0f / (1.0f + (float)in->dense_rank) : 0.0f;
    x[4] = (float)in->coverage;
    x[5] = (float)(log1p((double)in->nterms) / 5.0);
    for (int s = 0; s < RR_NSOURCES; s++)
        x[6 + s] = in->source == (enum rr_source)s ? 1.0f : 0.0f;
}

double rr_score(const struct rr_model *m, const float *x)
{
    double z = m->w[RR_NFEAT];
    for (int i = 0; i < m->nfeat && i < RR_NFEAT; i++)
        z += (double)m->w[i] * x[i];
    return z;
}

int rr_fit(struct rr_model *m, int nfeat, const float *x, const int *y, size_t n, int iters, double l2)
{
    if (!n || nfeat < 1 || nfeat > RR_NFEAT)
        return AISLE_EINVAL;
    double w[RR_NFEAT + 1] = {0}, g[RR_NFEAT + 1];
    /* Balance the classes: positives are rare (about 1 in 5 to 1 in 14). */
    size_t npos = 0;
    for (size_t i = 0; i < n; i++)
        npos += y[i] != 0;
    double wpos = npos ? (double)n / (2.0 * (double)npos) : 1.0;
    double wneg = npos < n ? (double)n / (2.0 * (double)(n - npos)) : 1.0;
    const double step = 0.5;
    for (int it = 0; it < iters; it++) {
        memset(g, 0, sizeof(g));
        for (size_t i = 0; i < n; i++) {
            const float *xi = x + i * RR_NFEAT;
            double z = w[RR_NFEAT];
            for (int k = 0; k < nfeat; k++)
                z += w[k] * xi[k];
            double p = 1.0 / (1.0 + exp(-z));
            double d = (p - (y[i] != 0)) * (y[i] ? wpos : wneg);
            for (int k = 0; k < nfeat; k++)
                g[k] += d * xi[k];
            g[RR_NFEAT] += d;
        }
        for (int k = 0; k < nfeat; k++)
            w[k] -= step * (g[k] / (double)n + l2 * w[k]);
        w[RR_NFEAT] -= step * g[RR_NFEAT] / (double)n;
    }
    memset(m, 0, sizeof(*m));
    m->nfeat = nfeat;
    for (int k = 0; k <= RR_NFEAT; k++)
        m->w[k] = (float)w[k];
    return 0;
}

enum rr_source rr_source_of(const char *name)
{
    static const char *const names[RR_NSOURCES] = {"product", "bullet", "attribute", "description", "review", "qa"};
    for (int i = 0; i < RR_NSOURCES; i++)
        if (!strcmp(name, names[i]))
            return (enum rr_source)i;
    return RR_DESCRIPTION;
}
