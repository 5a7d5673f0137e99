/*
 * sched.c — the scheduler thread: continuous batching over the paged KV cache
 * (see sched.h for the design).
 *
 * Each request carries toks = prompt followed by the tokens generated so far,
 * and n_done = how many of them are in its sequence's KV. Every step feeds
 * toks[n_done..n_toks) (all of it for a decode, a chunk for a prefill) with
 * logits on the last one; sampling appends one token. Preemption simply frees
 * the sequence and sets n_done = 0, so the recompute re-feeds prompt and
 * output alike (and picks up whatever prefix blocks are still cached).
 *
 * Locks: s->mu guards the queue, stop, wake and the stats; r->mu guards a
 * request's output, finish state, cancel flag and notify. The scheduler never
 * holds s->mu while taking r->mu; sched_req_cancel takes r->mu then s->mu.
 */
#include "server/sched.h"

#include "core/error.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double sched_hist_bounds[SCHED_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25, 0.5,
                                                      1.0,   2.0,  5.0,   10.0, 30.0, 60.0, 120.0};

struct sched_req {
    pthread_mutex_t mu;
    int refs; /* under mu */

    /* Set at submit, then the scheduler's alone. */
    int32_t *toks; /* (cap_toks) prompt, then generated tokens */
    int n_toks, cap_toks, n_prompt, max_tokens;
    int32_t *eog; /* (n_eog) */
    int n_eog;
    struct lm_sampler *smp;
    double t_submit, deadline, t_last;
    int seq;          /* KV sequence, -1 when not admitted */
    int n_done;       /* toks in the KV */
    int fresh;        /* admitted, nothing computed yet: may re-take cached prefix blocks */
    int admitted_once;
    uint64_t order; /* admission order: the largest is preempted first */

    /* Under mu. */
    struct sched *s; /* NULL once finished */
    int32_t *out;    /* (max_tokens) posted tokens */
    int n_out, n_taken, n_gen, n_cached, preempted;
    double ttft;
    enum sched_finish fin;
    int cancelled, armed;
    sched_notify_fn notify;
    void *notify_ctx;
    char err[160];
    void (*accept)(void *, int32_t); /* sched_params' hooks: the scheduler thread's alone */
    void (*release)(void *);
    void *hook_ctx;
};

struct sched {
    struct lm_model *m;
    struct lm_kv *kv;
    struct sched_opts o;
    int V, BS, max_ctx;

    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, wake;
    /* The queue: a ring of cap_q requests (queue_max plus room for the
     * preempted, which go back to its head). */
    struct sched_req **q;
    int cap_q, q_head, n_q;
    struct sched_stats st;

    /* The scheduler thread's own. */
    struct sched_req **run; /* (max_running) */
    int n_run;
    uint64_t next_order;
    struct sched_req **snap; /* (cap_q) heartbeat snapshot of the queue */
    struct lm_batch batch;
    float *logits;  /* (max_running, V) */
    int *chunk;     /* (max_running) tokens fed this step per running slot */
    int *row;       /* (max_running) logits row per running slot, or -1 */
    double last_hb, tps_t0;
    uint64_t tps_n0;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int sched_policy_parse(const char *s, enum sched_policy *p)
{
    static const char *const names[] = {"continuous", "static", "serial"};
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, names[i])) {
            *p = (enum sched_policy)i;
            return 0;
        }
    return AISLE_EINVAL;
}

const char *sched_policy_name(enum sched_policy p)
{
    return p == SCHED_STATIC ? "static" : p == SCHED_SERIAL ? "serial" : "continuous";
}

/* ---- requests ---------------------------------------------------------------- */

static void req_free(struct sched_req *r)
{
    lm_sampler_free(r->smp);
    free(r->toks);
    free(r->eog);
    free(r->out);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static void req_unref(struct sched_req *r)
{
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left == 0)
        req_free(r);
}

/* Call with r->mu held: wake the consumer if it waits. */
static void req_wake_locked(struct sched_req *r)
{
    if (r->armed && r->notify) {
        r->armed = 0;
        r->notify(r->notify_ctx);
    }
}

int sched_req_take(struct sched_req *r, int32_t *toks, int cap, int *n, enum sched_finish *fin,
                   int (*arm)(void *), void *arm_ctx)
{
    int armed = 0;
    pthread_mutex_lock(&r->mu);
    int k = r->n_out - r->n_taken;
    if (k > cap)
        k = cap;
    if (k > 0)
        memcpy(toks, r->out + r->n_taken, (size_t)k * sizeof(*toks));
    r->n_taken += k;
    *n = k;
    *fin = r->n_taken == r->n_out ? r->fin : SCHED_LIVE;
    if (k == 0 && r->fin == SCHED_LIVE && !r->cancelled && arm && arm(arm_ctx))
        armed = r->armed = 1;
    pthread_mutex_unlock(&r->mu);
    return armed;
}

void sched_req_kick(struct sched_req *r)
{
    pthread_mutex_lock(&r->mu);
    req_wake_locked(r);
    pthread_mutex_unlock(&r->mu);
}

void sched_req_cancel(struct sched_req *r)
{
    pthread_mutex_lock(&r->mu);
    r->cancelled = 1;
    r->notify = NULL;
    r->armed = 0;
    struct sched *s = r->s;
    if (s) {
        pthread_mutex_lock(&s->mu);
        s->wake = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&r->mu);
}

void sched_req_release(struct sched_req *r)
{
    if (!r)
        return;
    sched_req_cancel(r);
    req_unref(r);
}

void sched_req_info(struct sched_req *r, struct sched_req_info *info)
{
    pthread_mutex_lock(&r->mu);
    info->n_prompt = r->n_prompt;
    info->n_cached = r->n_cached;
    info->n_generated = r->n_gen;
    info->ttft_s = r->ttft;
    info->preempted = r->preempted;
    pthread_mutex_unlock(&r->mu);
}

const char *sched_req_error(struct sched_req *r)
{
    return r->err;
}

int sched_max_ctx(const struct sched *s)
{
    return s->max_ctx;
}

int sched_submit(struct sched *s, const struct sched_params *p, struct sched_req **out)
{
    if (!p || !p->prompt || p->n_prompt < 1 || p->max_tokens < 1 || p->n_eog < 0 || (p->n_eog && !p->eog))
        return AISLE_EINVAL;
    for (int i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= s->V)
            return AISLE_EINVAL;
    if ((long)p->n_prompt + p->max_tokens > s->max_ctx)
        return AISLE_ETOOBIG;
    long need_blocks = ((long)p->n_prompt + p->max_tokens + s->BS - 1) / s->BS;
    if (need_blocks > lm_kv_n_blocks(s->kv))
        return AISLE_ETOOBIG;

    int rc = AISLE_ENOMEM;
    struct sched_req *r = calloc(1, sizeof(*r));
    if (!r)
        return AISLE_ENOMEM;
    pthread_mutex_init(&r->mu, NULL);
    r->cap_toks = p->n_prompt + p->max_tokens;
    r->toks = malloc((size_t)r->cap_toks * sizeof(int32_t));
    r->out = malloc((size_t)p->max_tokens * sizeof(int32_t));
    r->eog = malloc((size_t)(p->n_eog + 1) * sizeof(int32_t));
    if (!r->toks || !r->out || !r->eog)
        goto fail;
    if ((rc = lm_sampler_new(&r->smp, s->V, &p->sample)))
        goto fail;
    memcpy(r->toks, p->prompt, (size_t)p->n_prompt * sizeof(int32_t));
    if (p->n_eog)
        memcpy(r->eog, p->eog, (size_t)p->n_eog * sizeof(int32_t));
    r->n_eog = p->n_eog;
    r->accept = p->accept;
    r->release = p->release;
    r->hook_ctx = p->hook_ctx;
    r->n_toks = r->n_prompt = p->n_prompt;
    r->max_tokens = p->max_tokens;
    r->seq = -1;
    r->ttft = -1;
    r->t_submit = now_s();
    r->deadline = p->timeout_s > 0 ? r->t_submit + p->timeout_s : INFINITY;
    r->notify = p->notify;
    r->notify_ctx = p->notify_ctx;
    r->s = s;
    r->refs = 2;

    pthread_mutex_lock(&s->mu);
    if (s->stop || s->n_q >= s->o.queue_max) {
        s->st.rejected_total++;
        pthread_mutex_unlock(&s->mu);
        rc = AISLE_EBUSY;
        goto fail;
    }
    s->q[(s->q_head + s->n_q) % s->cap_q] = r;
    s->n_q++;
    s->st.requests_total++;
    s->st.prompt_tokens_total += (uint64_t)p->n_prompt;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    *out = r;
    return 0;
fail:
    req_free(r);
    return rc;
}

/* ---- the scheduler thread ---------------------------------------------------- */

static void hist_add(struct sched_hist *h, double v)
{
    int b = 0;
    while (b < SCHED_HIST_BUCKETS && v > sched_hist_bounds[b])
        b++;
    h->count[b]++;
    h->n++;
    h->sum += v;
}

/* End r (scheduler thread): free its sequence, publish the reason, drop the
 * scheduler's reference. */
static void finish(struct sched *s, struct sched_req *r, enum sched_finish fin, const char *err)
{
    if (r->seq >= 0)
        lm_kv_seq_free(s->kv, r->seq);
    r->seq = -1;
    /* Counters first: whoever sees the end sees it counted. */
    pthread_mutex_lock(&s->mu);
    s->st.finished_total++;
    if (fin == SCHED_FIN_CANCELLED)
        s->st.cancelled_total++;
    if (fin == SCHED_FIN_TIMEOUT)
        s->st.timeout_total++;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&r->mu);
    r->fin = fin;
    r->s = NULL;
    if (err)
        snprintf(r->err, sizeof(r->err), "%s", err);
    req_wake_locked(r);
    pthread_mutex_unlock(&r->mu);
    if (r->release) /* the mask and accept never run for r again */
        r->release(r->hook_ctx);
    req_unref(r);
}

/* Remove run[i], keeping the order (and this step's chunk/row per slot). */
static void run_remove(struct sched *s, int i)
{
    size_t tail = (size_t)(s->n_run - i - 1);
    memmove(s->run + i, s->run + i + 1, tail * sizeof(*s->run));
    memmove(s->chunk + i, s->chunk + i + 1, tail * sizeof(*s->chunk));
    memmove(s->row + i, s->row + i + 1, tail * sizeof(*s->row));
    s->n_run--;
}

/* Is r cancelled (or past its deadline)? Returns the finish reason or LIVE. */
static enum sched_finish req_gone(struct sched_req *r, double now)
{
    pthread_mutex_lock(&r->mu);
    int c = r->cancelled;
    pthread_mutex_unlock(&r->mu);
    if (c)
        return SCHED_FIN_CANCELLED;
    if (now > r->deadline)
        return SCHED_FIN_TIMEOUT;
    return SCHED_LIVE;
}

/* Drop cancelled and timed-out requests, running or queued; wake idle
 * consumers every heartbeat so they can check their connections. */
static void sweep(struct sched *s, double now)
{
    for (int i = 0; i < s->n_run;) {
        struct sched_req *r = s->run[i];
        enum sched_finish f = req_gone(r, now);
        if (f != SCHED_LIVE) {
            run_remove(s, i);
            finish(s, r, f, NULL);
        } else
            i++;
    }
    pthread_mutex_lock(&s->mu);
    int n = s->n_q;
    for (int i = 0; i < n; i++)
        s->snap[i] = s->q[(s->q_head + i) % s->cap_q];
    pthread_mutex_unlock(&s->mu);
    /* Only this thread removes from the queue, so the snapshot stays alive. */
    int hb = now - s->last_hb >= s->o.heartbeat_s;
    if (hb)
        s->last_hb = now;
    for (int i = 0; i < n; i++) {
        struct sched_req *r = s->snap[i];
        enum sched_finish f = req_gone(r, now);
        if (f != SCHED_LIVE) {
            pthread_mutex_lock(&s->mu);
            for (int j = 0; j < s->n_q; j++) {
                int at = (s->q_head + j) % s->cap_q;
                if (s->q[at] == r) {
                    for (int k = j; k + 1 < s->n_q; k++)
                        s->q[(s->q_head + k) % s->cap_q] = s->q[(s->q_head + k + 1) % s->cap_q];
                    s->n_q--;
                    break;
                }
            }
            pthread_mutex_unlock(&s->mu);
            finish(s, r, f, NULL);
        } else if (hb) {
            pthread_mutex_lock(&r->mu);
            req_wake_locked(r);
            pthread_mutex_unlock(&r->mu);
        }
    }
    if (hb)
        for (int i = 0; i < s->n_run; i++) {
            pthread_mutex_lock(&s->run[i]->mu);
            req_wake_locked(s->run[i]);
            pthread_mutex_unlock(&s->run[i]->mu);
        }
}

static int blocks_for(int bs, int from, int to) /* new blocks to grow a sequence from `from` to `to` positions */
{
    return (to + bs - 1) / bs - (from + bs - 1) / bs;
}

/* Admit queued requests as the policy, slots and free blocks allow. */
static void admit(struct sched *s)
{
    int limit = s->o.policy == SCHED_SERIAL ? 1 : s->o.max_running;
    if (s->o.policy != SCHED_CONTINUOUS && s->n_run > 0)
        return;
    while (s->n_run < limit) {
        pthread_mutex_lock(&s->mu);
        struct sched_req *r = s->n_q ? s->q[s->q_head] : NULL;
        pthread_mutex_unlock(&s->mu);
        if (!r)
            return;
        int seq, nc = 0;
        if (lm_kv_seq_new(s->kv, &seq))
            return;
        if (s->o.prefix_cache && lm_kv_seq_prefix(s->kv, seq, r->toks, r->n_toks, &nc))
            nc = 0;
        /* FIFO: the head waits for blocks rather than being overtaken. Its
         * prompt must fit with one block to spare per running sequence. */
        int need = blocks_for(s->BS, nc, r->n_toks) + s->n_run;
        if (s->n_run > 0 && need > lm_kv_n_free_blocks(s->kv)) {
            lm_kv_seq_free(s->kv, seq);
            return;
        }
        pthread_mutex_lock(&s->mu);
        s->q_head = (s->q_head + 1) % s->cap_q;
        s->n_q--;
        s->st.cached_tokens_total += (uint64_t)nc;
        pthread_mutex_unlock(&s->mu);
        r->seq = seq;
        r->n_done = nc;
        r->fresh = 1;
        r->order = s->next_order++;
        if (!r->admitted_once) {
            pthread_mutex_lock(&r->mu);
            r->n_cached = nc;
            pthread_mutex_unlock(&r->mu);
            r->admitted_once = 1;
        }
        s->run[s->n_run++] = r;
    }
}

/* Preempt the most recently admitted running request: free its blocks and put
 * it back at the head of the queue to be recomputed. */
static void preempt_newest(struct sched *s)
{
    int v = 0;
    for (int i = 1; i < s->n_run; i++)
        if (s->run[i]->order > s->run[v]->order)
            v = i;
    struct sched_req *r = s->run[v];
    run_remove(s, v);
    lm_kv_seq_free(s->kv, r->seq);
    r->seq = -1;
    r->n_done = 0;
    pthread_mutex_lock(&r->mu);
    r->preempted++;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&s->mu);
    s->q_head = (s->q_head + s->cap_q - 1) % s->cap_q;
    s->q[s->q_head] = r;
    s->n_q++;
    s->st.preempted_total++;
    pthread_mutex_unlock(&s->mu);
}

/* Should fresh request r wait a step because a running request that shares a
 * longer prompt prefix with it is still computing that prefix? Then r picks
 * the shared blocks up from the prefix cache once they are full, instead of
 * computing them again (many requests with the same system prompt and
 * evidence arrive together). */
static int wait_for_shared_prefix(const struct sched *s, const struct sched_req *r)
{
    for (int j = 0; j < s->n_run; j++) {
        const struct sched_req *q = s->run[j];
        if (q == r || q->fresh || q->n_done >= q->n_toks - 1)
            continue;
        int n = r->n_toks < q->n_toks ? r->n_toks : q->n_toks, c = 0;
        if (n < s->BS || memcmp(r->toks, q->toks, (size_t)s->BS * sizeof(int32_t)))
            continue;
        while (c < n && r->toks[c] == q->toks[c])
            c++;
        int shared = (c < r->n_toks ? c : r->n_toks - 1) / s->BS * s->BS; /* whole blocks r could reuse */
        if (shared > r->n_done && q->n_done < shared)
            return 1;
    }
    return 0;
}

/* Fill s->batch: a decode token for each sequence that has one, then prefill
 * chunks in admission order, under the step budget and the free blocks.
 * Returns 0, or 1 when a decode could not get a block (preempt and retry). */
static int build_batch(struct sched *s)
{
    int budget = s->o.step_tokens, free_blocks = lm_kv_n_free_blocks(s->kv);
    s->batch.n = 0;
    for (int i = 0; i < s->n_run; i++) {
        struct sched_req *r = s->run[i];
        s->chunk[i] = 0;
        s->row[i] = -1;
        if (r->n_toks - r->n_done != 1)
            continue;
        int nb = blocks_for(s->BS, r->n_done, r->n_done + 1);
        if (nb > free_blocks)
            return 1;
        free_blocks -= nb;
        s->chunk[i] = 1;
        budget--;
    }
    /* Prefill in admission order (run[] is kept in that order except after a
     * preemption, which removes the newest). */
    for (int i = 0; i < s->n_run && budget > 0; i++) {
        struct sched_req *r = s->run[i];
        if (r->n_toks - r->n_done <= 1)
            continue;
        if (r->fresh && s->o.prefix_cache && wait_for_shared_prefix(s, r))
            continue;
        if (r->fresh && s->o.prefix_cache) {
            /* Blocks other sequences completed since admission may now be cached. */
            int nc = 0;
            if (lm_kv_seq_truncate(s->kv, r->seq, 0) == 0 &&
                lm_kv_seq_prefix(s->kv, r->seq, r->toks, r->n_toks, &nc) == 0 && nc > r->n_done) {
                pthread_mutex_lock(&s->mu);
                s->st.cached_tokens_total += (uint64_t)(nc - r->n_done);
                pthread_mutex_unlock(&s->mu);
                if (r->preempted == 0) {
                    pthread_mutex_lock(&r->mu);
                    r->n_cached = nc;
                    pthread_mutex_unlock(&r->mu);
                }
            }
            r->n_done = lm_kv_seq_len(s->kv, r->seq);
            free_blocks = lm_kv_n_free_blocks(s->kv);
            for (int j = 0; j < s->n_run; j++)
                free_blocks -= blocks_for(s->BS, s->run[j]->n_done, s->run[j]->n_done + s->chunk[j]);
            if (free_blocks < 0)
                free_blocks = 0;
        }
        int k = r->n_toks - r->n_done;
        if (k > budget)
            k = budget;
        while (k > 0 && blocks_for(s->BS, r->n_done, r->n_done + k) > free_blocks)
            k = (k > s->BS) ? k - s->BS : k - 1;
        if (k <= 0)
            break; /* FIFO: later prompts wait for blocks too */
        free_blocks -= blocks_for(s->BS, r->n_done, r->n_done + k);
        s->chunk[i] = k;
        budget -= k;
    }
    int rows = 0;
    for (int i = 0; i < s->n_run; i++) {
        struct sched_req *r = s->run[i];
        for (int j = 0; j < s->chunk[i]; j++) {
            int pos = r->n_done + j, last = pos == r->n_toks - 1;
            lm_batch_add(&s->batch, r->seq, pos, r->toks[pos], last);
            if (last)
                s->row[i] = rows++;
        }
    }
    return 0;
}

static int is_eog(const struct sched_req *r, int32_t t)
{
    for (int i = 0; i < r->n_eog; i++)
        if (r->eog[i] == t)
            return 1;
    return 0;
}

/* One iteration. */
static void step(struct sched *s)
{
    double now = now_s();
    sweep(s, now);
    admit(s);
    if (s->n_run == 0)
        return;
    while (build_batch(s)) {
        if (s->n_run == 1)
            break; /* cannot happen: submit checked the pool holds its whole context */
        preempt_newest(s);
    }
    if (s->batch.n == 0) {
        /* Every running sequence waits for blocks held by the others. */
        if (s->n_run > 1)
            preempt_newest(s);
        return;
    }
    double tf = now_s();
    int rc = lm_decode(s->m, s->kv, &s->batch, s->logits);
    tf = now_s() - tf;
    if (rc) {
        char msg[160];
        snprintf(msg, sizeof(msg), "decode: %s: %s", aisle_strerror(rc), lm_model_errmsg(s->m));
        while (s->n_run > 0) {
            struct sched_req *r = s->run[s->n_run - 1];
            s->n_run--;
            finish(s, r, SCHED_FIN_ERROR, msg);
        }
        return;
    }
    double t = now_s();
    uint64_t prefill = 0;
    for (int i = 0; i < s->n_run;) {
        struct sched_req *r = s->run[i];
        if (s->chunk[i] > 1 || r->n_done < r->n_prompt)
            prefill += (uint64_t)s->chunk[i];
        r->n_done += s->chunk[i];
        if (s->chunk[i])
            r->fresh = 0;
        if (s->row[i] < 0) {
            i++;
            continue;
        }
        int32_t tok;
        const float *row = s->logits + (size_t)s->row[i] * s->V;
        if ((rc = lm_sampler_sample(r->smp, (float *)row, &tok))) {
            run_remove(s, i);
            finish(s, r, SCHED_FIN_ERROR, "sampling: every token is masked out");
            continue;
        }
        if (is_eog(r, tok)) {
            run_remove(s, i);
            finish(s, r, SCHED_FIN_EOG, NULL);
            continue;
        }
        lm_sampler_accept(r->smp, tok);
        if (r->accept)
            r->accept(r->hook_ctx, tok);
        r->toks[r->n_toks++] = tok;
        pthread_mutex_lock(&r->mu);
        int first = r->n_gen == 0;
        r->out[r->n_out++] = tok;
        r->n_gen++;
        if (first)
            r->ttft = t - r->t_submit;
        req_wake_locked(r);
        int n_gen = r->n_gen;
        double ttft = r->ttft;
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_lock(&s->mu);
        s->st.generated_tokens_total++; /* before the request can end: /metrics never lags an answer */
        if (first)
            hist_add(&s->st.ttft, ttft);
        else
            hist_add(&s->st.itl, t - r->t_last);
        pthread_mutex_unlock(&s->mu);
        r->t_last = t;
        if (n_gen >= r->max_tokens || r->n_toks >= s->max_ctx) {
            run_remove(s, i);
            finish(s, r, SCHED_FIN_LENGTH, NULL);
            continue;
        }
        i++;
    }
    pthread_mutex_lock(&s->mu);
    s->st.prefill_tokens_total += prefill;
    s->st.steps_total++;
    s->st.forward_s_total += tf;
    if (t - s->tps_t0 >= 2.0) {
        s->st.tokens_per_s = (double)(s->st.generated_tokens_total - s->tps_n0) / (t - s->tps_t0);
        s->tps_t0 = t;
        s->tps_n0 = s->st.generated_tokens_total;
    }
    pthread_mutex_unlock(&s->mu);
}

static void *sched_main(void *arg)
{
    struct sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        s->st.running = s->n_run;
        s->st.queued = s->n_q;
        s->st.kv_blocks_used = lm_kv_n_blocks(s->kv) - lm_kv_n_free_blocks(s->kv);
        while (!s->stop && s->n_q == 0 && s->n_run == 0 && !s->wake)
            pthread_cond_wait(&s->cv, &s->mu);
        s->wake = 0;
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        step(s);
    }
    while (s->n_run > 0) {
        struct sched_req *r = s->run[--s->n_run];
        finish(s, r, SCHED_FIN_CANCELLED, NULL);
    }
    for (;;) {
        pthread_mutex_lock(&s->mu);
        struct sched_req *r = NULL;
        if (s->n_q) {
            r = s->q[s->q_head];
            s->q_head = (s->q_head + 1) % s->cap_q;
            s->n_q--;
        }
        pthread_mutex_unlock(&s->mu);
        if (!r)
            break;
        finish(s, r, SCHED_FIN_CANCELLED, NULL);
    }
    return NULL;
}

/* ---- lifecycle --------------------------------------------------------------- */

int sched_new(struct sched **out, struct lm_model *m, const struct sched_opts *opts, char *err, size_t errlen)
{
    struct sched *s = calloc(1, sizeof(*s));
    int rc = AISLE_ENOMEM;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->m = m;
    s->o = *opts;
    s->V = lm_model_n_vocab(m);
    if (s->o.max_running <= 0)
        s->o.max_running = 16;
    if (s->o.step_tokens <= 0)
        s->o.step_tokens = 256;
    if (s->o.queue_max <= 0)
        s->o.queue_max = 256;
    if (s->o.heartbeat_s <= 0)
        s->o.heartbeat_s = 0.25;
    s->BS = s->o.block_tokens > 0 ? s->o.block_tokens : LM_KV_DEFAULT_BLOCK;
    s->max_ctx = s->o.max_ctx;
    if (s->max_ctx <= 0) {
        s->max_ctx = (int)lm_model_hparams(m)->n_ctx;
        if (s->max_ctx <= 0 || s->max_ctx > 4096)
            s->max_ctx = 4096;
    }
    if (s->o.step_tokens < s->o.max_running || s->o.max_running > 4096 || s->o.queue_max > (1 << 20) ||
        s->BS > LM_KV_MAX_BLOCK || s->max_ctx > (1 << 20)) {
        snprintf(err, errlen, "bad scheduler options: the step budget (%d) must be at least --parallel (%d)",
                 s->o.step_tokens, s->o.max_running);
        rc = AISLE_EINVAL;
        goto fail;
    }
    int per_seq = (s->max_ctx + s->BS - 1) / s->BS;
    int nb = s->o.kv_blocks > 0 ? s->o.kv_blocks : per_seq * s->o.max_running;
    struct lm_kv_opts ko = {.block_tokens = s->BS, .n_blocks = nb, .max_seqs = s->o.max_running,
                            .max_seq_len = s->max_ctx, .f16 = s->o.kv_f16};
    if ((rc = lm_kv_new(&s->kv, m, &ko))) {
        snprintf(err, errlen, "KV cache of %d blocks of %d tokens: %s", nb, s->BS, aisle_strerror(rc));
        goto fail;
    }
    rc = AISLE_ENOMEM;
    s->cap_q = s->o.queue_max + s->o.max_running;
    s->q = calloc((size_t)s->cap_q, sizeof(*s->q));
    s->snap = calloc((size_t)s->cap_q, sizeof(*s->snap));
    s->run = calloc((size_t)s->o.max_running, sizeof(*s->run));
    s->chunk = calloc((size_t)s->o.max_running, sizeof(int));
    s->row = calloc((size_t)s->o.max_running, sizeof(int));
    s->logits = malloc((size_t)s->o.max_running * (size_t)s->V * sizeof(float));
    if (!s->q || !s->snap || !s->run || !s->chunk || !s->row || !s->logits ||
        lm_batch_init(&s->batch, s->o.step_tokens)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->st.kv_blocks_total = nb;
    s->last_hb = s->tps_t0 = now_s();
    if (pthread_create(&s->th, NULL, sched_main, s)) {
        snprintf(err, errlen, "cannot start the scheduler thread: %s", strerror(errno));
        rc = AISLE_EIO;
        goto fail;
    }
    s->started = 1;
    *out = s;
    return 0;
fail:
    sched_free(s);
    return rc;
}

void sched_free(struct sched *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
    }
    lm_batch_release(&s->batch);
    free(s->logits);
    free(s->row);
    free(s->chunk);
    free(s->run);
    free(s->snap);
    free(s->q);
    lm_kv_free(s->kv);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void sched_stats_get(struct sched *s, struct sched_stats *st)
{
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    st->queued = s->n_q;
    pthread_mutex_unlock(&s->mu);
}
