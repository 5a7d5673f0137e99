/*
 * sched.h — the serving scheduler: one thread that owns the model and the
 * paged KV cache and runs iteration-level (continuous) batching over many
 * requests.
 *
 * Design: requests enter a bounded FIFO (sched_submit answers AISLE_EBUSY when
 * it is full, for a 429). Every step the thread drains cancellations and
 * timeouts, admits queued requests while sequence slots and KV blocks allow
 * (reusing cached prefix blocks through lm_kv_seq_prefix), then builds one
 * lm_batch under a token budget: one decode token for every running sequence
 * first, then prefill chunks of the admitted prompts in FIFO order with what is
 * left. One lm_decode, then each sequence with a logits row samples its next
 * token and posts it on its request's token queue, calling the request's
 * notify callback. When the batch needs more blocks than are free, the newest
 * sequence is preempted by recompute: its blocks are freed and it goes back to
 * the head of the queue with its generated tokens appended to its prompt.
 * Policies: CONTINUOUS (the above), STATIC (a batch is admitted only when
 * nothing runs and no one joins until its longest member ends) and SERIAL (one
 * request at a time), so benchmarks compare them on the same model.
 *
 * Invariants: a request is in exactly one of queue, running, finished; a
 * finished request's token queue only shrinks; notify is never called after
 * sched_req_cancel returns.
 *
 * Ownership: struct sched borrows the model (which must outlive it) and owns
 * its KV cache, samplers and batch. struct sched_req is reference-counted:
 * the submitter holds one reference (drop it with sched_req_release, after
 * which the request is cancelled if still live), the scheduler one while the
 * request is queued or running. The sampling parameters' bias list is copied;
 * the mask hook's context is borrowed until the request finishes.
 *
 * THREAD SAFETY: sched_submit, sched_req_* and sched_stats may be called from
 * any thread. notify runs on the scheduler thread with the request's lock held:
 * it must be quick and must not call sched_req_* (it typically resumes the
 * HTTP connection that the arm callback of sched_req_take suspended).
 */
#ifndef AISLE_SERVER_SCHED_H
#define AISLE_SERVER_SCHED_H

#include "model/model.h"
#include "model/sample.h"

#include <stddef.h>
#include <stdint.h>

enum sched_policy {
    SCHED_CONTINUOUS = 0,
    SCHED_STATIC = 1,
    SCHED_SERIAL = 2,
};

/* "continuous", "static", "serial" -> 0 with *p set, else AISLE_EINVAL. */
int sched_policy_parse(const char *s, enum sched_policy *p);
const char *sched_policy_name(enum sched_policy p);

struct sched_opts {
    enum sched_policy policy;
    int max_running;  /* sequences decoding at once (--parallel); <= 0: 16 */
    int step_tokens;  /* token budget of one step (decode + prefill); <= 0: 256 */
    int queue_max;    /* waiting requests before submit says AISLE_EBUSY; <= 0: 256 */
    int kv_blocks;    /* KV pool size in blocks; <= 0: enough for max_running full contexts */
    int block_tokens; /* <= 0: LM_KV_DEFAULT_BLOCK */
    int max_ctx;      /* positions per sequence; <= 0: the model's n_ctx, at most 4096 */
    int prefix_cache; /* 1: reuse cached prefix blocks (default in serve), 0: off */
    int kv_f16;
    double heartbeat_s; /* notify idle live requests this often so their consumers can
                           check their connections; <= 0: 0.25 */
};

/* Why a request ended. */
enum sched_finish {
    SCHED_LIVE = 0,      /* not ended */
    SCHED_FIN_EOG,       /* the model ended its turn (EOS/EOT) */
    SCHED_FIN_LENGTH,    /* max_tokens, or the context is full */
    SCHED_FIN_CANCELLED, /* sched_req_cancel (client left, a stop string) */
    SCHED_FIN_TIMEOUT,   /* the deadline passed */
    SCHED_FIN_ERROR,     /* the engine failed; detail in sched_req_error */
};

/* notify(ctx): new tokens or the end are available. See THREAD SAFETY. */
typedef void (*sched_notify_fn)(void *ctx);

struct sched_params {
    const int32_t *prompt; /* (n_prompt) copied */
    int n_prompt;          /* >= 1 */
    int max_tokens;        /* >= 1 */
    struct lm_sample_params sample;
    const int32_t *eog; /* (n_eog) tokens that end generation (not posted); copied */
    int n_eog;
    double timeout_s; /* from submission; <= 0: none */
    sched_notify_fn notify;
    void *notify_ctx;
    /* Optional hooks for a stateful logit mask (constrained markup): accept
     * sees every token sampled for the request, in order (after the mask,
     * before the token is posted; not the EOG token that ends it); release
     * runs once when the scheduler drops the request (any finish), after
     * which neither the mask nor accept is called again, so hook_ctx and the
     * mask's context may be freed there. Both on the scheduler thread; release
     * runs only for a request that sched_submit accepted. */
    void (*accept)(void *hook_ctx, int32_t tok);
    void (*release)(void *hook_ctx);
    void *hook_ctx;
};

struct sched;
struct sched_req;

/* Create the scheduler (KV cache sized from opts) and start its thread. m is
 * borrowed. 0, AISLE_EINVAL (opts), AISLE_ENOMEM, AISLE_EIO (thread); detail
 * in err. */
int sched_new(struct sched **out, struct lm_model *m, const struct sched_opts *opts, char *err, size_t errlen);
/* Stop the thread (finishing live requests as CANCELLED, with a last notify)
 * and free everything. Requests still referenced by submitters stay valid
 * until released. NULL is a no-op. */
void sched_free(struct sched *s);

/* The positions one sequence may hold. */
int sched_max_ctx(const struct sched *s);

/* Queue a request. 0 with *out (one reference for the caller); AISLE_EBUSY
 * (queue full: answer 429), AISLE_ETOOBIG (n_prompt + max_tokens exceeds the
 * context or the whole KV pool), AISLE_EINVAL (bad params, e.g. a token out
 * of the vocabulary), AISLE_ENOMEM. */
int sched_submit(struct sched *s, const struct sched_params *p, struct sched_req **out);

/* Take up to cap posted tokens (in order). *n gets how many; *fin the finish
 * reason once every token has been taken (SCHED_LIVE before). When none are
 * available and the request is live, arm(arm_ctx) is called with the
 * request's lock held, so a notify cannot slip between the check and the arm
 * (the HTTP layer suspends its connection there); when arm returns 1 the
 * request is armed and the next notify (which disarms it) is the consumer's
 * cue to take again; arm returning 0 (or NULL) leaves it unarmed. Returns 1
 * when armed, else 0. */
int sched_req_take(struct sched_req *r, int32_t *toks, int cap, int *n, enum sched_finish *fin,
                   int (*arm)(void *), void *arm_ctx);
/* Call notify now if the request is armed (disarming it): for shutdown. */
void sched_req_kick(struct sched_req *r);
/* Ask the scheduler to drop the request (it frees the sequence and its blocks
 * within one step). After this returns notify is not called again. Idempotent. */
void sched_req_cancel(struct sched_req *r);
/* Drop the caller's reference (cancelling first). NULL is a no-op. */
void sched_req_release(struct sched_req *r);

struct sched_req_info {
    int n_prompt;    /* prompt tokens as submitted */
    int n_cached;    /* prompt tokens served from the prefix cache (first admission) */
    int n_generated; /* tokens sampled so far (posted or not) */
    double ttft_s;   /* submission to first token; < 0 before it */
    int preempted;   /* times it was preempted */
};
void sched_req_info(struct sched_req *r, struct sched_req_info *info);
/* Detail of a SCHED_FIN_ERROR (never NULL). Borrowed while referenced. */
const char *sched_req_error(struct sched_req *r);

/* ---- metrics ---- */

#define SCHED_HIST_BUCKETS 14
/* Upper bounds in seconds of the latency histograms' buckets (then +Inf). */
extern const double sched_hist_bounds[SCHED_HIST_BUCKETS];

struct sched_hist {
    uint64_t count[SCHED_HIST_BUCKETS + 1]; /* per bucket (not cumulative); last: +Inf */
    uint64_t n;
    double sum;
};

struct sched_stats {
    int queued, running;
    int kv_blocks_used, kv_blocks_total;
    uint64_t requests_total, rejected_total, finished_total, cancelled_total, timeout_total;
    uint64_t prompt_tokens_total, cached_tokens_total, prefill_tokens_total, generated_tokens_total;
    uint64_t preempted_total, steps_total;
    double forward_s_total; /* seconds inside lm_decode */
    double tokens_per_s; /* generated tokens over the last few seconds */
    struct sched_hist ttft, itl;
};
/* A consistent copy of the counters. */
void sched_stats_get(struct sched *s, struct sched_stats *st);

#endif
