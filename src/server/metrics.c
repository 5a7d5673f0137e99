/* metrics.c — Prometheus text rendering of the serving counters (see metrics.h). */
#include "server/metrics.h"

#include "core/error.h"

#include <inttypes.h>

static int gauge(struct buf *o, const char *name, const char *help, double v)
{
    return buf_printf(o, "# HELP %s %s\n# TYPE %s gauge\n%s %.6g\n", name, help, name, name, v);
}

static int counter(struct buf *o, const char *name, const char *help, uint64_t v)
{
    return buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name, v);
}

static int hist(struct buf *o, const char *name, const char *help, const struct sched_hist *h)
{
    int rc = buf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int b = 0; b < SCHED_HIST_BUCKETS && !rc; b++) {
        cum += h->count[b];
        rc = buf_printf(o, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, sched_hist_bounds[b], cum);
    }
    cum += h->count[SCHED_HIST_BUCKETS];
    if (!rc)
        rc = buf_printf(o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name, cum, name,
                        h->sum, name, h->n);
    return rc;
}

int metrics_render(struct buf *o, const struct sched_stats *st, const struct metrics_http *h)
{
    int rc = 0;
    rc = rc ? rc : gauge(o, "aisle_queue_depth", "Requests waiting to be admitted.", st->queued);
    rc = rc ? rc : gauge(o, "aisle_running_sequences", "Sequences in the running batch.", st->running);
    rc = rc ? rc : gauge(o, "aisle_kv_blocks_used", "KV cache blocks held by sequences.", st->kv_blocks_used);
    rc = rc ? rc : gauge(o, "aisle_kv_blocks_total", "KV cache blocks in the pool.", st->kv_blocks_total);
    rc = rc ? rc : gauge(o, "aisle_tokens_per_second", "Generated tokens per second over the last ~2 s.",
                         st->tokens_per_s);
    rc = rc ? rc : counter(o, "aisle_requests_total", "Requests accepted by the scheduler.", st->requests_total);
    rc = rc ? rc : counter(o, "aisle_requests_rejected_total", "Requests refused because the queue was full (429).",
                           st->rejected_total);
    rc = rc ? rc : counter(o, "aisle_requests_cancelled_total", "Requests cancelled (client gone, stop string).",
                           st->cancelled_total);
    rc = rc ? rc : counter(o, "aisle_requests_timeout_total", "Requests that ran past their deadline.",
                           st->timeout_total);
    rc = rc ? rc : counter(o, "aisle_prompt_tokens_total", "Prompt tokens submitted.", st->prompt_tokens_total);
    rc = rc ? rc : counter(o, "aisle_prefix_cached_tokens_total", "Prompt tokens served from the prefix cache.",
                           st->cached_tokens_total);
    rc = rc ? rc : counter(o, "aisle_prefill_tokens_total", "Prompt tokens computed.", st->prefill_tokens_total);
    rc = rc ? rc : counter(o, "aisle_generation_tokens_total", "Tokens generated.", st->generated_tokens_total);
    rc = rc ? rc : counter(o, "aisle_preemptions_total", "Sequences preempted (recomputed later).",
                           st->preempted_total);
    rc = rc ? rc : counter(o, "aisle_steps_total", "Scheduler steps (batched forwards).", st->steps_total);
    rc = rc ? rc : hist(o, "aisle_time_to_first_token_seconds", "Submission to first token.", &st->ttft);
    rc = rc ? rc : hist(o, "aisle_inter_token_seconds", "Time between a request's consecutive tokens.", &st->itl);
    if (h) {
        rc = rc ? rc : gauge(o, "aisle_http_connections", "Open HTTP connections.", (double)h->connections_open);
        rc = rc ? rc : buf_printf(o, "# HELP aisle_http_responses_total HTTP responses by status class.\n"
                                     "# TYPE aisle_http_responses_total counter\n"
                                     "aisle_http_responses_total{code=\"2xx\"} %" PRIu64 "\n"
                                     "aisle_http_responses_total{code=\"4xx\"} %" PRIu64 "\n"
                                     "aisle_http_responses_total{code=\"429\"} %" PRIu64 "\n"
                                     "aisle_http_responses_total{code=\"5xx\"} %" PRIu64 "\n",
                                  h->responses_2xx, h->responses_4xx, h->responses_429, h->responses_5xx);
        rc = rc ? rc : counter(o, "aisle_http_client_disconnects_total",
                               "Requests cancelled because the client went away.", h->client_gone);
        rc = rc ? rc : counter(o, "aisle_chat_requests_total", "Shopper chat answers started (/api/chat).",
                               h->chat_requests);
        rc = rc ? rc : counter(o, "aisle_chat_dropped_tags_total",
                               "Product ids in the model's tags that are not in the evidence (no card shown).",
                               h->chat_dropped_tags);
        rc = rc ? rc : counter(o, "aisle_answers_stored_total",
                               "Chat answers stored with their context for feedback (--feedback-db).",
                               h->answers_stored);
        rc = rc ? rc : buf_printf(o, "# HELP aisle_feedback_votes_total Votes stored (POST /api/feedback).\n"
                                     "# TYPE aisle_feedback_votes_total counter\n"
                                     "aisle_feedback_votes_total{rating=\"up\"} %" PRIu64 "\n"
                                     "aisle_feedback_votes_total{rating=\"down\"} %" PRIu64 "\n",
                                  h->votes_up, h->votes_down);
        rc = rc ? rc : counter(o, "aisle_answers_storage_errors_total",
                               "Answers or votes the answers database failed to store.", h->answers_errors);
    }
    return rc;
}
