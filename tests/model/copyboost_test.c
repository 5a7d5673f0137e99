/*
 * copyboost_test.c — the copy boost: which tokens it raises (the
 * continuations of the longest match only, each once), its minimum match,
 * the bounded history, a new source forgetting the answer, bad parameters,
 * and that a greedy sampler then copies what the model would have garbled.
 */
#include <criterion/criterion.h>

#include "core/error.h"
#include "model/copyboost.h"
#include "model/sample.h"

#include <math.h>

enum { V = 16 };

static void zero(float *l)
{
    for (int i = 0; i < V; i++)
        l[i] = 0;
}

Test(copyboost, bad_parameters_refused)
{
    struct copyboost *c = (void *)1;
    int32_t s[] = {1, 2};
    cr_assert_eq(copyboost_new(&c, s, 2, 0, 2), AISLE_EINVAL);
    cr_assert_null(c);
    cr_assert_eq(copyboost_new(&c, s, 2, -1, 2), AISLE_EINVAL);
    cr_assert_eq(copyboost_new(&c, s, 2, NAN, 2), AISLE_EINVAL);
    cr_assert_eq(copyboost_new(&c, s, 2, INFINITY, 2), AISLE_EINVAL);
    cr_assert_eq(copyboost_new(&c, s, 2, 1, 0), AISLE_EINVAL);
    cr_assert_eq(copyboost_new(&c, s, 2, 1, COPYBOOST_MAX_MATCH + 1), AISLE_EINVAL);
    cr_assert_eq(copyboost_new(&c, NULL, 0, 1, 1), 0, "an empty source is fine");
    float l[V];
    zero(l);
    copyboost_accept(c, 3);
    copyboost_apply(c, l, V);
    for (int i = 0; i < V; i++)
        cr_assert_eq(l[i], 0.0f);
    copyboost_free(c);
    copyboost_free(NULL);
}

Test(copyboost, longest_match_continuations_only)
{
    /*                0  1  2  3  4  5  6  7 */
    int32_t src[] = {1, 2, 3, 4, 5, 2, 3, 9};
    struct copyboost *c;
    cr_assert_eq(copyboost_new(&c, src, 8, 2.5f, 2), 0);
    float l[V];
    copyboost_accept(c, 2);
    cr_assert_eq(copyboost_match(c), 0, "one token is under --copy-min 2");
    copyboost_accept(c, 3);
    cr_assert_eq(copyboost_match(c), 2);
    zero(l);
    copyboost_apply(c, l, V);
    for (int i = 0; i < V; i++)
        cr_assert_eq(l[i], (i == 4 || i == 9) ? 2.5f : 0.0f, "token %d: %g", i, l[i]);

    /* 1 2 3 matches only at the start: 4 alone, not 9 */
    cr_assert_eq(copyboost_set_source(c, src, 8), 0);
    copyboost_accept(c, 1), copyboost_accept(c, 2), copyboost_accept(c, 3);
    cr_assert_eq(copyboost_match(c), 3);
    zero(l);
    copyboost_apply(c, l, V);
    for (int i = 0; i < V; i++)
        cr_assert_eq(l[i], i == 4 ? 2.5f : 0.0f, "token %d: %g", i, l[i]);

    /* the source's last token has no continuation */
    cr_assert_eq(copyboost_set_source(c, src, 8), 0);
    copyboost_accept(c, 3), copyboost_accept(c, 9);
    cr_assert_eq(copyboost_match(c), 0);
    /* a new source forgets the answer */
    cr_assert_eq(copyboost_set_source(c, src, 8), 0);
    copyboost_accept(c, 3);
    cr_assert_eq(copyboost_match(c), 0);
    copyboost_free(c);
}

Test(copyboost, each_continuation_once_and_in_vocabulary)
{
    int32_t src[] = {7, 8, 7, 8, 7, 40};
    struct copyboost *c;
    cr_assert_eq(copyboost_new(&c, src, 6, 1.0f, 1), 0);
    copyboost_accept(c, 7);
    float l[V];
    zero(l);
    copyboost_apply(c, l, V);
    for (int i = 0; i < V; i++)
        cr_assert_eq(l[i], i == 8 ? 1.0f : 0.0f, "token %d: %g (40 is outside the vocabulary)", i, l[i]);
    copyboost_free(c);
}

Test(copyboost, history_bounded)
{
    int32_t src[20];
    for (int i = 0; i < 20; i++)
        src[i] = i % 10;
    struct copyboost *c;
    cr_assert_eq(copyboost_new(&c, src, 20, 1.0f, 1), 0);
    for (int i = 0; i < 15; i++) /* 0..9 0..4: 15 matching tokens, 8 remembered */
        copyboost_accept(c, i % 10);
    cr_assert_eq(copyboost_match(c), COPYBOOST_MAX_MATCH);
    float l[V];
    zero(l);
    copyboost_apply(c, l, V);
    for (int i = 0; i < V; i++)
        cr_assert_eq(l[i], i == 5 ? 1.0f : 0.0f);
    copyboost_free(c);
}

/* Through the sampler's mask hook: the model slightly prefers 6 after "2 3"
 * but the evidence says 4; greedy with the boost copies 4, without it 6. */
Test(copyboost, greedy_sampler_copies)
{
    int32_t src[] = {1, 2, 3, 4};
    struct copyboost *c;
    cr_assert_eq(copyboost_new(&c, src, 4, 1.0f, 2), 0);
    struct lm_sample_params p;
    lm_sample_params_default(&p);
    p.temperature = 0;
    struct lm_sampler *plain, *boosted;
    cr_assert_eq(lm_sampler_new(&plain, V, &p), 0);
    p.mask = copyboost_apply;
    p.mask_ctx = c;
    cr_assert_eq(lm_sampler_new(&boosted, V, &p), 0);
    copyboost_accept(c, 2), copyboost_accept(c, 3);
    float l[V];
    int32_t t;
    zero(l), l[6] = 0.6f, l[4] = 0.2f;
    cr_assert_eq(lm_sampler_sample(plain, l, &t), 0);
    cr_assert_eq(t, 6);
    zero(l), l[6] = 0.6f, l[4] = 0.2f;
    cr_assert_eq(lm_sampler_sample(boosted, l, &t), 0);
    cr_assert_eq(t, 4);
    /* a model sure of something else keeps it */
    zero(l), l[6] = 3.0f, l[4] = 0.2f;
    cr_assert_eq(lm_sampler_sample(boosted, l, &t), 0);
    cr_assert_eq(t, 6);
    lm_sampler_free(plain);
    lm_sampler_free(boosted);
    copyboost_free(c);
}
