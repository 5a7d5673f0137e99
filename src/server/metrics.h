/*
 * metrics.h — the /metrics page in Prometheus' text exposition format (0.0.4).
 *
 * Design: the scheduler keeps counters and latency histograms (sched_stats);
 * the HTTP layer adds its own counters; this renders both. Histograms are
 * cumulative over the server's life, as Prometheus expects.
 *
 * THREAD SAFETY: pure function over caller-owned data.
 */
#ifndef AISLE_SERVER_METRICS_H
#define AISLE_SERVER_METRICS_H

#include "core/buf.h"
#include "server/sched.h"

#include <stdint.h>

struct metrics_http {
    uint64_t connections_open; /* connections MHD holds now */
    uint64_t responses_2xx, responses_4xx, responses_5xx, responses_429;
    uint64_t client_gone; /* requests cancelled because the client disconnected */
    uint64_t chat_requests;     /* /api/chat answers started */
    uint64_t chat_dropped_tags; /* tags naming a product that is not in the evidence */
    uint64_t answers_stored;    /* chat answers committed to the answers database */
    uint64_t votes_up, votes_down; /* votes committed (POST /api/feedback) */
    uint64_t answers_errors;    /* answers or votes the answers database failed to store */
};

/* Append the page. 0 or AISLE_ENOMEM / AISLE_ETOOBIG (from out). */
int metrics_render(struct buf *out, const struct sched_stats *st, const struct metrics_http *h);

#endif
