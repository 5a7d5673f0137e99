/*
 * pref.h — preference tuning from the shoppers' votes: DPO on chosen/rejected
 * pairs and KTO on single thumbs up/down, the rows `aisle feedback export`
 * writes, on the training-side Llama (llama_train.h).
 *
 * Dims legend: k examples in a micro-batch, R = 2k rows, T positions.
 *
 * Design: every example is two sequences, prompt tokens then completion
 * tokens then <|end|>: DPO (chosen, rejected); KTO (the rated completion,
 * and a mismatched one: the next example's completion after this prompt,
 * forward only, for KTO's reference point). A sequence's log-probability
 * log pi(y|x) is the sum over its completion tokens (and <|end|>) of the
 * model's log-probabilities, read from the per-position cross-entropy that
 * ltr_forward leaves in acts.losses with the completion as the weight mask.
 * The frozen reference is the starting model: its log-probabilities are
 * computed once (pref_reference) before any step. The gradient of the loss
 * in the log-probabilities becomes, per completion position, the dlosses
 * that ltr_backward turns into dlogits, so one forward and one backward per
 * micro-batch serve both losses.
 *
 *   DPO (Rafailov et al. 2023): m = (lp_c - ref_c) - (lp_r - ref_r),
 *       loss = -log sigmoid(beta m).
 *   KTO (Ethayarajh et al. 2024): r = lp - ref, z0 = max(0, mean over the
 *       micro-batch of the mismatched sequences' lp - ref), no gradient;
 *       loss = lambda_d (1 - sigmoid(beta (r - z0))) for a thumbs up,
 *              lambda_u (1 - sigmoid(beta (z0 - r))) for a thumbs down.
 *
 * Text: the prompt is the exact prompt text (special tokens as text, parsed
 * back into control tokens); the completion is plain text (its bytes never
 * become control tokens) followed by the <|end|> token. An example whose
 * sequence does not fit the context is skipped and counted; a KTO mismatched
 * sequence is cut to fit (it only estimates z0).
 *
 * Ownership: struct pref_set owns its arrays.
 */
#ifndef AISLE_TRAIN_PREF_H
#define AISLE_TRAIN_PREF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct tok;
struct ltr_model;

enum pref_kind { PREF_DPO = 1, PREF_KTO = 2 };

struct pref_set {
    enum pref_kind kind;
    size_t n;           /* examples: DPO pairs or KTO rows */
    int32_t *ids;       /* every sequence's tokens, concatenated */
    size_t *off;        /* (2n + 1) sequence s is ids[off[s] .. off[s+1]) */
    int *start;         /* (2n) index of the sequence's first completion token */
    signed char *label; /* (n) KTO: 1 thumbs up, 0 thumbs down; DPO: 1 */
    size_t skipped;     /* examples that did not fit the context */
    size_t n_up, n_down; /* KTO labels */
};

/* Read JSON Lines from path: DPO rows {"prompt","chosen","rejected"} or KTO
 * rows {"prompt","completion","label": true|false} (other members ignored;
 * the first row decides which, every row must be the same kind), tokenized
 * with t (which must have <|end|>); sequences longer than max_len tokens are
 * skipped. 0, or AISLE_EFORMAT / AISLE_EINVAL (no example fits) /
 * AISLE_ENOMEM / AISLE_EIO with err naming the file and line. */
int pref_load(struct pref_set *s, const char *path, const struct tok *t, int max_len, char *err, size_t errlen);
/* The same from an open stream; name is the file named in errors. */
int pref_load_stream(struct pref_set *s, FILE *f, const char *name, const struct tok *t, int max_len, char *err,
                     size_t errlen);
void pref_free(struct pref_set *s);

/* Tokens in sequence seq (its length); the longest over all sequences. */
int pref_seq_len(const struct pref_set *s, size_t seq);
int pref_max_len(const struct pref_set *s);

struct pref_params {
    double beta;           /* > 0 */
    double kto_desirable;  /* lambda_d (KTO) */
    double kto_undesirable; /* lambda_u (KTO) */
};

/* What a micro-batch measured (sums over its examples, add them up). */
struct pref_stats {
    double loss;    /* sum of the examples' losses */
    double correct; /* DPO: m > 0; KTO: sign(r - z0) agrees with the label */
    double margin;  /* DPO: beta m; KTO: beta (r - z0), signed by the label */
    double n;       /* examples */
    double tokens;  /* tokens in the sequences that ran (padding excluded) */
};

/* Run examples idx[0..k) through m (2k rows, T = the longest sequence - 1,
 * at most m's T; m's B >= 2k): their losses into *st. With backward != 0 also
 * add scale times the gradient of the sum of their losses into m's gradient
 * slab. ref: (2n) reference log-probabilities, or NULL while computing them
 * (then lp_out (2k) gets the sequences' log-probabilities and nothing else
 * is done). Scratch tokens/targets (2k * T) and weights are the caller's.
 * 0, or the error of ltr_forward / ltr_backward. */
int pref_micro_batch(struct ltr_model *m, const struct pref_set *s, const double *ref, const size_t *idx, int k,
                     const struct pref_params *p, float scale, int backward, int32_t *tokens, int32_t *targets,
                     float *weights, double *lp_out, struct pref_stats *st);

/* The reference log-probabilities of every sequence (2n) under m's current
 * weights, kb examples per forward. 0 or an error. */
int pref_reference(struct ltr_model *m, const struct pref_set *s, int kb, int32_t *tokens, int32_t *targets,
                   float *weights, double *ref);

/* The losses by hand (tests): DPO loss and dL/dlp for chosen and rejected. */
double pref_dpo_loss(double beta, double lp_c, double ref_c, double lp_r, double ref_r, double *g_c, double *g_r);
/* KTO loss of one example and dL/dlp. */
double pref_kto_loss(double beta, int up, double lp, double ref, double z0, double lam_d, double lam_u, double *g);

#endif
