/*
 * http.c — libmicrohttpd handlers for the OpenAI-compatible API (see http.h).
 *
 * A connection's request goes through phases: BODY (collecting the upload,
 * capped), then for a completion either STREAM (a 200 with an SSE callback
 * response is queued; the content reader pumps tokens) or WAIT (the handler
 * suspends until the answer is complete, then queues the whole response).
 * Every response is queued on a handler call after the first, so keep-alive
 * works (LIBRARIES.md pitfall 1).
 *
 * pump() is the one place that turns tokens into text: tok_stream releases
 * whole UTF-8 characters, lm_stop holds back possible stop-string starts, and
 * the result goes to the SSE buffer (one event per non-empty piece) or to the
 * gathered answer. A stop string cancels the request in the scheduler.
 */
#include "server/http.h"

#include "assist/chat.h"
#include "assist/tagmask.h"
#include "core/buf.h"
#include "core/error.h"
#include "model/sample.h"
#include "server/metrics.h"
#include "server/openai.h"
#include "store/answers.h"
#include "tok/tok.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum http_route { R_NONE, R_CHAT, R_COMPLETION, R_MODELS, R_HEALTH, R_METRICS, R_API_CHAT, R_PRODUCTS, R_PAGE, R_FEEDBACK };
/* P_PREP: /api/chat waits (suspended) for its retrieval worker; P_VOTE:
 * /api/feedback waits (suspended) for the answers writer's commit. */
enum phase { P_BODY, P_PREP, P_STREAM, P_WAIT, P_DONE, P_VOTE };
/* A chat answer's storage: not asked, being written (suspended), written. */
enum { A_NONE, A_WRITING, A_WRITTEN };

/* The web chat's files, read once at start. */
static const struct {
    const char *url, *file, *ctype;
} web_files[] = {{"/", "index.html", "text/html; charset=utf-8"},
                 {"/app.js", "app.js", "text/javascript; charset=utf-8"},
                 {"/style.css", "style.css", "text/css; charset=utf-8"}};
#define N_WEB (sizeof(web_files) / sizeof(web_files[0]))

struct srv {
    struct MHD_Daemon *d;
    struct sched *s;
    const struct tok *tk;
    struct srv_opts o;
    char *model_name;
    long created;
    int port;
    atomic_int stopping;
    atomic_ullong n_conn, r2xx, r4xx, r5xx, r429, gone, next_id;
    /* Live completion requests, for waking them at shutdown. */
    pthread_mutex_t mu;
    struct conn *live;
    int32_t tok_role[3], tok_end; /* <|system|> <|user|> <|assistant|>, <|end|> */
    atomic_ullong chat_n, chat_dropped;
    atomic_ullong a_stored, a_up, a_down, a_errors;
    atomic_int a_inflight; /* answers and votes handed to the writer, not yet reported */
    pthread_mutex_t jmu; /* orders a chat job's done (resume) after its suspend */
    char *web[N_WEB];    /* (web_len) the files, owned; NULL without web_dir */
    struct tagmask_vocab *tv; /* the tag-id constraint's token table; NULL: off */
    size_t web_len[N_WEB];
};

struct conn {
    struct srv *v;
    struct MHD_Connection *c;
    struct conn *prev, *next; /* in v->live once a request is submitted */
    enum http_route route;
    enum phase phase;
    double t_start;
    int too_big;
    struct buf body;
    struct oai_request req;
    int parsed;
    struct sched_req *sr;
    int n_prompt, n_completion;
    struct tok_stream ts;
    struct lm_stop stop;
    int stop_init;
    struct buf text;  /* WAIT: the answer so far */
    struct buf out;   /* STREAM: SSE bytes not yet handed to MHD */
    size_t out_off;
    struct buf piece; /* scratch */
    int sent_role, ended;
    const char *finish; /* "stop" / "length" once known */
    int failed;         /* timeout or engine error */
    char fail_msg[200];
    char id[48];
    /* /api/chat */
    struct chat_request creq;
    int creq_parsed;
    struct chat_prep *prep;
    struct chat_job job;
    struct chat_stream cs;
    int cs_init, page;
    struct tagmask *tm; /* this answer's tag-id constraint (shared with the scheduler) */
    /* the answer's record for the answers database, and votes */
    struct buf raw;     /* the model's output as generated, markup included */
    struct buf evlog;   /* SSE bytes already handed to MHD */
    struct lm_sample_params sp;
    int max_tokens;
    struct chat_done dn;    /* the done event's numbers, kept for after the commit */
    struct answer_rec arec;
    char *a_json[5];        /* owned: messages, evidence, sampling, usage, events */
    struct answers_job ajob;
    atomic_int a_state;     /* A_NONE, A_WRITING, A_WRITTEN */
    struct chat_feedback fb;
    int fb_parsed;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- responses --------------------------------------------------------------- */

static void count_status(struct srv *v, unsigned status)
{
    if (status == 429)
        v->r429++;
    if (status < 300)
        v->r2xx++;
    else if (status < 500)
        v->r4xx++;
    else
        v->r5xx++;
}

/* Queue body (taken over, freed by MHD) with status. */
static enum MHD_Result respond(struct conn *k, unsigned status, char *body, const char *ctype, int retry_after)
{
    if (!body)
        return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    count_status(k->v, status);
    k->phase = P_DONE;
    enum MHD_Result rc = MHD_queue_response(k->c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result respond_error(struct conn *k, const struct oai_error *e, int retry_after)
{
    return respond(k, (unsigned)e->status, oai_error_json(e), "application/json", retry_after);
}

static enum MHD_Result fail(struct conn *k, int status, const char *type, const char *code, const char *param,
                            const char *msg)
{
    struct oai_error e;
    oai_error_set(&e, status, type, code, param, "%s", msg);
    return respond_error(k, &e, 0);
}

/* ---- connection state --------------------------------------------------------- */

static void live_add(struct conn *k)
{
    pthread_mutex_lock(&k->v->mu);
    k->next = k->v->live;
    if (k->next)
        k->next->prev = k;
    k->v->live = k;
    pthread_mutex_unlock(&k->v->mu);
}

static void conn_free(struct conn *k)
{
    if (k->sr) {
        pthread_mutex_lock(&k->v->mu);
        if (k->prev)
            k->prev->next = k->next;
        else
            k->v->live = k->next;
        if (k->next)
            k->next->prev = k->prev;
        pthread_mutex_unlock(&k->v->mu);
        /* After this, notify (which touches k) is never called again. */
        sched_req_release(k->sr);
    }
    if (k->parsed)
        oai_request_release(&k->req);
    if (k->stop_init)
        lm_stop_release(&k->stop);
    if (k->cs_init)
        chat_stream_release(&k->cs);
    if (k->prep) {
        chat_prep_release(k->prep);
        free(k->prep);
    }
    if (k->creq_parsed)
        chat_request_release(&k->creq);
    if (k->fb_parsed)
        chat_feedback_release(&k->fb);
    for (size_t i = 0; i < sizeof(k->a_json) / sizeof(k->a_json[0]); i++)
        free(k->a_json[i]);
    buf_release(&k->raw);
    buf_release(&k->evlog);
    tagmask_unref(k->tm);
    buf_release(&k->body);
    buf_release(&k->text);
    buf_release(&k->out);
    buf_release(&k->piece);
    free(k);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    struct conn *k = *con_cls;
    if (k)
        conn_free(k);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)c, (void)socket_ctx;
    struct srv *v = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        v->n_conn++;
    else
        v->n_conn--;
}

/* The scheduler's notify (its thread, the request's lock held): the
 * connection was suspended by arm(); resume it. */
static void conn_notify(void *ctx)
{
    struct conn *k = ctx;
    MHD_resume_connection(k->c);
}

/* sched_req_take's arm (the request's lock held): suspend, unless stopping. */
static int conn_arm(void *ctx)
{
    struct conn *k = ctx;
    if (atomic_load(&k->v->stopping))
        return 0;
    MHD_suspend_connection(k->c);
    return 1;
}

/* Has the client closed its end? (A suspended connection does not notice.) */
static int client_gone(struct conn *k)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(k->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return 0;
    char ch;
    ssize_t n = recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return 1;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

/* ---- turning tokens into output ---------------------------------------------- */

static long wall_now(void)
{
    return (long)time(NULL);
}

/* Append one SSE event with data json (freed). */
static int sse_data(struct conn *k, char *json)
{
    if (!json)
        return AISLE_ENOMEM;
    int rc = buf_printf(&k->out, "data: %s\n\n", json);
    free(json);
    return rc;
}

/* Text that is safe to show: to the SSE buffer or the gathered answer. */
static int emit_text(struct conn *k, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (k->phase != P_STREAM)
        return buf_append(&k->text, p, n);
    int rc = sse_data(k, oai_chunk_json(k->req.kind, k->id, k->v->created, k->v->model_name, p, n,
                                        k->req.kind == OAI_CHAT && !k->sent_role, NULL));
    k->sent_role = 1;
    return rc;
}

/* The end: flush held text, then (streaming) the final chunk, usage, [DONE]. */
static int finish_output(struct conn *k)
{
    const char *p;
    size_t n;
    int rc = 0;
    if (!k->failed && !k->stop.stopped) {
        buf_reset(&k->piece);
        tok_stream_flush(&k->ts, &k->piece);
        rc = lm_stop_push(&k->stop, k->piece.data ? k->piece.data : "", k->piece.len, &p, &n) < 0;
        rc = rc ? rc : emit_text(k, p, n);
        if (!rc && !k->stop.stopped && lm_stop_flush(&k->stop, &p, &n) == 0)
            rc = emit_text(k, p, n);
    }
    k->ended = 1;
    if (k->phase != P_STREAM || rc)
        return rc;
    if (k->failed) {
        struct oai_error e;
        oai_error_set(&e, 500, "server_error", NULL, NULL, "%s", k->fail_msg);
        rc = sse_data(k, oai_error_json(&e));
    } else {
        if (k->req.kind == OAI_CHAT && !k->sent_role) /* no text at all: still say who speaks */
            rc = sse_data(k, oai_chunk_json(k->req.kind, k->id, k->v->created, k->v->model_name, "", 0, 1, NULL));
        if (!rc)
            rc = sse_data(k, oai_chunk_json(k->req.kind, k->id, k->v->created, k->v->model_name, "", 0, 0,
                                            k->finish));
        if (!rc && k->req.include_usage)
            rc = sse_data(k, oai_usage_chunk_json(k->req.kind, k->id, k->v->created, k->v->model_name, k->n_prompt,
                                                  k->n_completion));
    }
    if (!rc)
        rc = buf_puts(&k->out, "data: [DONE]\n\n");
    return rc;
}

/* ---- /api/chat: tokens -> events ------------------------------------------------ */

/* The answers writer's report (its thread): count, mark the connection and
 * resume it, under the lock its handler held while suspending it. */
static void answer_job_done(void *ctx)
{
    struct conn *k = ctx;
    struct srv *v = k->v; /* once resumed, k may be freed by an MHD thread at any moment */
    if (k->ajob.rc) {
        if (k->ajob.rc != AISLE_ENOTFOUND) /* a vote on an unknown id is the client's 404, not ours */
            v->a_errors++;
    } else if (k->ajob.kind == ANSWERS_JOB_ANSWER)
        v->a_stored++;
    else if (k->ajob.rating > 0)
        v->a_up++;
    else
        v->a_down++;
    pthread_mutex_lock(&v->jmu);
    atomic_store(&k->a_state, A_WRITTEN);
    MHD_resume_connection(k->c);
    pthread_mutex_unlock(&v->jmu);
    v->a_inflight--;
}

/* Hand a job to the answers writer with the connection suspended: 1 when
 * queued (answer_job_done resumes it), 0 when not (the server is stopping or
 * the writer's queue is full). */
static int submit_answers_job(struct conn *k)
{
    struct srv *v = k->v;
    k->ajob.done = answer_job_done;
    k->ajob.ctx = k;
    v->a_inflight++; /* before `stopping` is read: srv_stop waits for it to reach 0 */
    if (atomic_load(&v->stopping)) {
        v->a_inflight--;
        return 0;
    }
    pthread_mutex_lock(&v->jmu);
    atomic_store(&k->a_state, A_WRITING);
    int rc = answers_submit(v->o.answers, &k->ajob);
    if (rc == 0)
        MHD_suspend_connection(k->c);
    else
        atomic_store(&k->a_state, A_NONE);
    pthread_mutex_unlock(&v->jmu);
    if (rc)
        v->a_inflight--;
    return rc == 0;
}

static char *dump_json(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    return s;
}

/* The answer with its context, as the answers database keeps it: the JSON
 * parts are made here (a few KiB, microseconds); the write is the writer's.
 * 0 or AISLE_ENOMEM. */
static int answer_record(struct conn *k)
{
    struct srv *v = k->v;
    const struct chat_prep *pp = k->prep;
    json_t *msgs = json_array(), *ev = json_array();
    for (size_t i = 0; msgs && i < k->creq.n_msgs; i++)
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role",
                                              k->creq.msgs[i].role == PROMPT_USER ? "user" : "assistant", "content",
                                              k->creq.msgs[i].content));
    for (size_t i = 0; ev && i < pp->ev.n; i++) {
        const struct evidence_passage *e = &pp->ev.v[i];
        json_array_append_new(ev, json_pack("{s:i, s:s, s:s, s:s, s:s, s:s?, s:b}", "n", e->cite, "id", e->id,
                                            "source", e->source, "product_id", e->product_id, "text", e->text,
                                            "as_of", e->as_of[0] ? e->as_of : NULL, "stale", e->stale));
    }
    k->a_json[0] = dump_json(msgs);
    k->a_json[1] = dump_json(ev);
    char seed[24]; /* the sampler's 64-bit seed, unsigned: as text (JSON integers are signed 64-bit here) */
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)k->sp.seed);
    k->a_json[2] = dump_json(json_pack("{s:f, s:f, s:f, s:i, s:s, s:i}", "temperature", (double)k->sp.temperature,
                                       "top_p", (double)k->sp.top_p, "repeat_penalty", (double)k->sp.repeat_penalty,
                                       "penalty_last_n", k->sp.penalty_last_n, "seed", seed, "max_tokens",
                                       k->max_tokens));
    k->a_json[3] = chat_done_json(&k->cs, &k->dn);
    if ((k->a_json[4] = malloc(k->evlog.len + k->out.len + 1))) { /* sent, then still to send */
        if (k->evlog.len)
            memcpy(k->a_json[4], k->evlog.data, k->evlog.len);
        if (k->out.len)
            memcpy(k->a_json[4] + k->evlog.len, k->out.data + k->out_off, k->out.len - k->out_off);
        k->a_json[4][k->evlog.len + k->out.len - k->out_off] = 0;
    }
    for (size_t i = 0; i < sizeof(k->a_json) / sizeof(k->a_json[0]); i++)
        if (!k->a_json[i])
            return AISLE_ENOMEM;
    struct answer_rec *r = &k->arec;
    answers_new_id(r->id);
    r->conversation_id = k->creq.conversation_id;
    r->product_id = k->creq.product_id;
    r->postcode = k->creq.postcode;
    r->model = v->model_name;
    r->model_meta = v->o.model_meta;
    r->messages = k->a_json[0];
    r->evidence = k->a_json[1];
    r->prompt = pp->prompt.text.data ? pp->prompt.text.data : "";
    r->prompt_tokens = k->n_prompt;
    r->output = k->raw.data ? k->raw.data : "";
    r->events = k->a_json[4];
    r->sampling = k->a_json[2];
    r->usage = k->a_json[3];
    k->ajob = (struct answers_job){.kind = ANSWERS_JOB_ANSWER, .rec = r};
    return 0;
}

/* The done event, with the answer's id once it is stored. */
static int emit_done(struct conn *k)
{
    k->ended = 1;
    k->dn.total_ms = (now_s() - k->t_start) * 1e3;
    k->dn.answer_id = atomic_load(&k->a_state) == A_WRITTEN && k->ajob.rc == 0 ? k->arec.id : NULL;
    return chat_sse(&k->out, "done", chat_done_json(&k->cs, &k->dn));
}

/* The end of a chat answer: the rest of the markup, suggestions, then done
 * (or an error event) — after the answer is stored, when it is. */
static int finish_chat(struct conn *k)
{
    buf_reset(&k->piece);
    int rc = tok_stream_flush(&k->ts, &k->piece);
    rc = rc ? rc : buf_append(&k->raw, k->piece.data ? k->piece.data : "", k->piece.len);
    rc = rc ? rc : chat_stream_feed(&k->cs, k->piece.data ? k->piece.data : "", k->piece.len);
    rc = rc ? rc : chat_stream_finish(&k->cs);
    k->ended = 1;
    k->v->chat_dropped += (unsigned long long)k->cs.st.dropped_tags;
    if (rc)
        return rc;
    if (k->failed) {
        struct oai_error e;
        oai_error_set(&e, 500, "server_error", NULL, NULL, "%s", k->fail_msg);
        return chat_sse(&k->out, "error", oai_error_json(&e));
    }
    struct sched_req_info in;
    sched_req_info(k->sr, &in);
    k->dn = (struct chat_done){.finish = k->finish ? k->finish : "stop", .prompt_tokens = k->n_prompt,
                               .completion_tokens = k->n_completion, .cached_tokens = in.n_cached,
                               .retrieval_ms = k->prep->retrieval_s * 1e3, .hydrate_ms = k->prep->hydrate_s * 1e3,
                               .ttft_ms = in.ttft_s >= 0 ? in.ttft_s * 1e3 : -1.0,
                               .total_ms = (now_s() - k->t_start) * 1e3, .conversation_id = k->creq.conversation_id};
    if (k->v->o.answers) {
        if (answer_record(k)) {
            k->v->a_errors++;
        } else if (submit_answers_job(k)) {
            k->ended = 0; /* done follows the commit (sse_reader) */
            return 0;
        } else if (!atomic_load(&k->v->stopping))
            k->v->a_errors++; /* the writer's queue is full: this answer is not kept */
    }
    return emit_done(k);
}

/* Move what the scheduler posted into output: text through stop strings
 * (OpenAI routes) or through the markup parser into events (/api/chat).
 * Returns 1 when the request has ended (output complete), 0 when it waits
 * (the connection was suspended), or a negative error (memory, or the server
 * stopping). */
static int pump(struct conn *k)
{
    int32_t toks[64];
    int chat = k->route == R_API_CHAT;
    for (;;) {
        int n;
        enum sched_finish fin;
        int armed = sched_req_take(k->sr, toks, 64, &n, &fin, conn_arm, k);
        for (int i = 0; i < n && !k->stop.stopped; i++) {
            k->n_completion++;
            buf_reset(&k->piece);
            if (tok_stream_push(k->v->tk, &k->ts, toks[i], &k->piece))
                continue; /* an id the tokenizer lacks (a larger model vocabulary): nothing to show */
            if (chat) {
                if (buf_append(&k->raw, k->piece.data ? k->piece.data : "", k->piece.len) ||
                    chat_stream_feed(&k->cs, k->piece.data ? k->piece.data : "", k->piece.len))
                    return AISLE_ENOMEM;
                continue;
            }
            const char *p;
            size_t pl;
            int hit = lm_stop_push(&k->stop, k->piece.data ? k->piece.data : "", k->piece.len, &p, &pl);
            if (hit < 0 || emit_text(k, p, pl))
                return AISLE_ENOMEM;
            if (hit == 1) {
                k->finish = "stop";
                sched_req_cancel(k->sr);
                return finish_output(k) ? AISLE_ENOMEM : 1;
            }
        }
        if (n > 0) {
            if (chat && chat_stream_flush(&k->cs)) /* one text event per batch of tokens */
                return AISLE_ENOMEM;
            continue;
        }
        if (fin != SCHED_LIVE) {
            switch (fin) {
            case SCHED_FIN_LENGTH: k->finish = "length"; break;
            case SCHED_FIN_TIMEOUT:
                k->failed = 1;
                snprintf(k->fail_msg, sizeof(k->fail_msg), "the request ran past its %.0f s time limit",
                         k->v->o.request_timeout_s);
                break;
            case SCHED_FIN_ERROR:
                k->failed = 1;
                snprintf(k->fail_msg, sizeof(k->fail_msg), "generation failed: %s", sched_req_error(k->sr));
                break;
            default: k->finish = "stop"; break;
            }
            return (chat ? finish_chat(k) : finish_output(k)) ? AISLE_ENOMEM : 1;
        }
        return armed ? 0 : AISLE_EBUSY;
    }
}

/* ---- the SSE content reader ---------------------------------------------------- */

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct conn *k = cls;
    for (;;) {
        if (k->out_off < k->out.len) {
            size_t n = k->out.len - k->out_off;
            if (n > max)
                n = max;
            memcpy(buf, k->out.data + k->out_off, n);
            k->out_off += n;
            return (ssize_t)n;
        }
        if (k->route == R_API_CHAT && k->v->o.answers && atomic_load(&k->a_state) == A_NONE && k->out.len &&
            buf_append(&k->evlog, k->out.data, k->out.len)) /* the events shown, for the answer's record */
            return MHD_CONTENT_READER_END_WITH_ERROR;
        buf_reset(&k->out);
        k->out_off = 0;
        if (k->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        int as = atomic_load(&k->a_state);
        if (as == A_WRITING)
            return 0; /* suspended until the answers writer reports */
        if (as == A_WRITTEN) {
            if (emit_done(k))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        if (atomic_load(&k->v->stopping))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (client_gone(k)) {
            k->v->gone++;
            sched_req_cancel(k->sr);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        int rc = pump(k);
        if (rc < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc == 0 && k->out.len == 0)
            return 0; /* suspended; the scheduler's notify resumes us */
    }
}

/* ---- completion requests --------------------------------------------------------- */

static int push_ids(struct conn *k, struct tok_ids *ids, const char *text, size_t n, unsigned flags)
{
    return tok_encode(k->v->tk, NULL, text, n, flags, ids);
}

/* The prompt's tokens: for chat, Aisle's template with the role and end
 * tokens as ids and the contents encoded as plain text (a user cannot write a
 * control token); exactly what encoding tok_chat_format's text with
 * TOK_PARSE_SPECIAL gives when no content spells a special token. */
static int encode_prompt(struct conn *k, struct tok_ids *ids, struct oai_error *e)
{
    struct srv *v = k->v;
    int rc = push_ids(k, ids, "", 0, TOK_ADD_SPECIAL); /* BOS when the vocabulary asks */
    if (k->req.kind == OAI_COMPLETION)
        return rc ? rc : push_ids(k, ids, k->req.prompt, strlen(k->req.prompt), 0);
    if (v->tok_end < 0 || v->tok_role[0] < 0 || v->tok_role[1] < 0 || v->tok_role[2] < 0) {
        oai_error_set(e, 400, NULL, "unsupported", "messages",
                      "the model's tokenizer has no chat tokens; use /v1/completions");
        return AISLE_EINVAL;
    }
    struct buf t;
    buf_init(&t, 0);
    for (size_t i = 0; i < k->req.n_msgs && !rc; i++) {
        const char *r = k->req.msgs[i].role;
        int ri = !strcmp(r, "system") ? 0 : !strcmp(r, "user") ? 1 : 2;
        buf_reset(&t);
        rc = tok_ids_push(ids, v->tok_role[ri]);
        rc = rc ? rc : buf_putc(&t, '\n');
        rc = rc ? rc : buf_puts(&t, k->req.msgs[i].content);
        rc = rc ? rc : push_ids(k, ids, t.data, t.len, 0);
        rc = rc ? rc : tok_ids_push(ids, v->tok_end);
        rc = rc ? rc : push_ids(k, ids, "\n", 1, 0);
    }
    rc = rc ? rc : tok_ids_push(ids, v->tok_role[2]);
    rc = rc ? rc : push_ids(k, ids, "\n", 1, 0);
    buf_release(&t);
    return rc;
}

static uint64_t seed_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The tokens that end an answer: EOS, EOT, <|end|> (those the vocabulary has). */
static int eog_list(const struct srv *v, int32_t eog[3])
{
    int n = 0;
    if (tok_eos(v->tk) >= 0)
        eog[n++] = tok_eos(v->tk);
    if (tok_eot(v->tk) >= 0)
        eog[n++] = tok_eot(v->tk);
    if (v->tok_end >= 0)
        eog[n++] = v->tok_end;
    return n;
}

/* Queue the 200 with the SSE reader. */
static enum MHD_Result queue_sse(struct conn *k)
{
    k->phase = P_STREAM;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_reader, k, NULL);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    count_status(k->v, 200);
    enum MHD_Result q = MHD_queue_response(k->c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return q;
}

/* 413 for a body that passed --max-body while it was read. */
static enum MHD_Result respond_too_big(struct conn *k)
{
    struct oai_error e;
    oai_error_set(&e, 413, NULL, "request_too_large", NULL, "the request body is larger than %zu bytes",
                  k->v->o.max_body);
    return respond_error(k, &e, 0);
}

/* Parse, tokenize, check limits, submit; queue the SSE response or suspend. */
static enum MHD_Result start_completion(struct conn *k)
{
    struct srv *v = k->v;
    struct oai_error e;
    if (k->too_big)
        return respond_too_big(k);
    if (oai_parse(&k->req, k->route == R_CHAT ? OAI_CHAT : OAI_COMPLETION, k->body.data ? k->body.data : "",
                  k->body.len, &e))
        return respond_error(k, &e, 0);
    k->parsed = 1;
    if (strcmp(k->req.model, v->model_name)) {
        oai_error_set(&e, 404, NULL, "model_not_found", "model",
                      "The model '%.100s' does not exist; this server has '%.100s' (GET /v1/models)", k->req.model,
                      v->model_name);
        return respond_error(k, &e, 0);
    }
    struct tok_ids ids;
    tok_ids_init(&ids, (size_t)sched_max_ctx(v->s) + 1);
    int rc = encode_prompt(k, &ids, &e);
    int ctx = sched_max_ctx(v->s);
    if (rc == AISLE_ETOOBIG || (rc == 0 && (long)ids.len >= ctx)) {
        tok_ids_release(&ids);
        oai_error_set(&e, 400, NULL, "context_length_exceeded", k->route == R_CHAT ? "messages" : "prompt",
                      "This model's maximum context length is %d tokens; the %s is longer than that", ctx,
                      k->route == R_CHAT ? "messages' text" : "prompt");
        return respond_error(k, &e, 0);
    }
    if (rc) {
        tok_ids_release(&ids);
        if (rc != AISLE_EINVAL)
            oai_error_set(&e, 500, "server_error", NULL, NULL, "cannot tokenize the prompt: %s", aisle_strerror(rc));
        return respond_error(k, &e, 0);
    }
    long room = ctx - (long)ids.len, mt = k->req.max_tokens;
    if (mt > room) {
        tok_ids_release(&ids);
        oai_error_set(&e, 400, NULL, "context_length_exceeded", "max_tokens",
                      "This model's maximum context length is %d tokens. However, you requested %ld tokens (%zu in "
                      "the prompt, %ld for the completion)",
                      ctx, (long)ids.len + mt, ids.len, mt);
        return respond_error(k, &e, 0);
    }
    if (mt < 0)
        mt = room < v->o.default_max_tokens ? room : v->o.default_max_tokens;

    struct lm_sample_params sp;
    lm_sample_params_default(&sp);
    sp.temperature = (float)k->req.temperature;
    sp.top_k = 0;
    sp.top_p = (float)k->req.top_p;
    sp.min_p = 0;
    sp.freq_penalty = (float)k->req.frequency_penalty;
    sp.presence_penalty = (float)k->req.presence_penalty;
    sp.seed = k->req.has_seed ? k->req.seed : seed_mix((uint64_t)time(NULL) ^ (v->next_id << 20));
    int32_t eog[3];
    int n_eog = k->req.ignore_eos ? 0 : eog_list(v, eog);
    struct sched_params p = {.prompt = ids.ids, .n_prompt = (int)ids.len, .max_tokens = (int)mt, .sample = sp,
                             .eog = eog, .n_eog = n_eog, .timeout_s = v->o.request_timeout_s,
                             .notify = conn_notify, .notify_ctx = k};
    k->n_prompt = (int)ids.len;
    rc = lm_stop_init(&k->stop, (const char *const *)k->req.stop, (size_t)k->req.n_stop);
    if (rc == 0)
        k->stop_init = 1;
    rc = rc ? rc : sched_submit(v->s, &p, &k->sr);
    tok_ids_release(&ids);
    if (rc == AISLE_EBUSY) {
        oai_error_set(&e, 429, "rate_limit_exceeded", "queue_full", NULL,
                      "the server is busy (its queue is full); retry after %d s", v->o.retry_after_s);
        return respond_error(k, &e, v->o.retry_after_s);
    }
    if (rc == AISLE_ETOOBIG) {
        oai_error_set(&e, 400, NULL, "context_length_exceeded", "max_tokens",
                      "the prompt (%d tokens) and max_tokens (%ld) do not fit the KV cache", k->n_prompt, mt);
        return respond_error(k, &e, 0);
    }
    if (rc) {
        oai_error_set(&e, 500, "server_error", NULL, NULL, "cannot start the request: %s", aisle_strerror(rc));
        return respond_error(k, &e, 0);
    }
    live_add(k);
    tok_stream_init(&k->ts, 0);
    snprintf(k->id, sizeof(k->id), "%s-%llu", k->route == R_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)++v->next_id);
    if (!k->req.stream) {
        k->phase = P_WAIT;
        return MHD_YES; /* the caller pumps */
    }
    return queue_sse(k);
}

/* ---- /api/chat ------------------------------------------------------------------- */

/* The retrieval worker's done (its thread): resume the connection, which
 * start_chat suspended under the same lock, so the resume cannot come first. */
static void chat_job_done(void *ctx)
{
    struct conn *k = ctx;
    struct srv *v = k->v; /* once resumed, k may be freed by an MHD thread at any moment */
    pthread_mutex_lock(&v->jmu);
    MHD_resume_connection(k->c);
    pthread_mutex_unlock(&v->jmu);
}

/* A request the chat parser refused (rc from chat_request_parse or
 * chat_feedback_parse): 400 naming the field, or 500 when memory ran out. */
static enum MHD_Result respond_chat_error(struct conn *k, int rc, const struct chat_error *ce)
{
    struct oai_error e;
    oai_error_set(&e, rc == AISLE_ENOMEM ? 500 : 400, rc == AISLE_ENOMEM ? "server_error" : NULL, ce->code,
                  ce->param[0] ? ce->param : NULL, "%s", ce->message);
    return respond_error(k, &e, 0);
}

/* Validate the body and hand it to a retrieval worker, suspended meanwhile. */
static enum MHD_Result start_chat(struct conn *k)
{
    struct srv *v = k->v;
    struct oai_error e;
    if (k->too_big)
        return respond_too_big(k);
    if (!v->o.chat)
        return fail(k, 503, "server_error", "no_store", NULL,
                    "this server has no store: start it with aisle serve --db STORE");
    struct chat_error ce;
    int rc = chat_request_parse(&k->creq, k->body.data ? k->body.data : "", k->body.len, &ce);
    if (rc)
        return respond_chat_error(k, rc, &ce);
    k->creq_parsed = 1;
    if (!(k->prep = malloc(sizeof(*k->prep))))
        return fail(k, 500, "server_error", NULL, NULL, "out of memory");
    chat_prep_init(k->prep);
    k->job = (struct chat_job){.req = &k->creq, .out = k->prep, .done = chat_job_done, .ctx = k};
    pthread_mutex_lock(&v->jmu);
    rc = chat_pool_submit(v->o.chat, &k->job);
    if (rc == 0) {
        k->phase = P_PREP;
        MHD_suspend_connection(k->c);
    }
    pthread_mutex_unlock(&v->jmu);
    if (rc && atomic_load(&v->stopping)) /* the pool is closed */
        return fail(k, 503, "server_error", NULL, NULL, "the server is shutting down");
    if (rc) {
        oai_error_set(&e, 429, "rate_limit_exceeded", "queue_full", NULL,
                      "the server is busy (its retrieval queue is full); retry after %d s", v->o.retry_after_s);
        return respond_error(k, &e, v->o.retry_after_s);
    }
    return MHD_YES;
}

/* The worker is done: submit the prepared prompt and start the event stream. */
static enum MHD_Result start_chat_stream(struct conn *k)
{
    struct srv *v = k->v;
    struct chat_prep *pp = k->prep;
    struct oai_error e;
    if (atomic_load(&v->stopping))
        return fail(k, 503, "server_error", NULL, NULL, "the server is shutting down");
    if (pp->rc == AISLE_ENOTFOUND && pp->err_param) {
        oai_error_set(&e, 400, NULL, "invalid_value", pp->err_param, "%s: %s", pp->err_param, pp->err);
        return respond_error(k, &e, 0);
    }
    if (pp->rc)
        return fail(k, 500, "server_error", NULL, NULL, pp->err);
    int ctx = sched_max_ctx(v->s), n = (int)pp->prompt.ids.len;
    if (n + 8 > ctx) {
        oai_error_set(&e, 400, NULL, "context_length_exceeded", "messages",
                      "the conversation and its evidence take %d tokens; this model's context is %d", n, ctx);
        return respond_error(k, &e, 0);
    }
    int mt = ctx - n < v->o.chat_max_tokens ? ctx - n : v->o.chat_max_tokens;
    struct lm_sample_params sp;
    lm_sample_params_default(&sp);
    /* docs/CHAT.md: a low temperature and a mild repetition penalty scored best
     * on the dev answers; some variety stays, so votes on two answers to one
     * prompt can become preference pairs. */
    float temp = v->o.chat_temperature;
    sp.temperature = temp < 0 ? 0 : temp > 0 ? temp : 0.3f;
    sp.top_p = v->o.chat_top_p > 0 ? v->o.chat_top_p : 0.9f;
    sp.repeat_penalty = v->o.chat_repeat_penalty > 0 ? v->o.chat_repeat_penalty : 1.1f;
    sp.seed = seed_mix((uint64_t)time(NULL) ^ (++v->next_id << 20)); /* a new draw per answer */
    sp.mask = v->o.chat_mask;
    sp.mask_ctx = v->o.chat_mask_ctx;
    k->sp = sp;
    k->max_tokens = mt;
    int32_t eog[3];
    int n_eog = eog_list(v, eog);
    struct sched_params p = {.prompt = pp->prompt.ids.ids, .n_prompt = n, .max_tokens = mt, .sample = sp,
                             .eog = eog, .n_eog = n_eog, .timeout_s = v->o.request_timeout_s,
                             .notify = conn_notify, .notify_ctx = k};
    if (v->tv) { /* tag ids limited to the products whose cards were prepared */
        const char *ids[CHAT_MAX_CARDS];
        for (size_t i = 0; i < pp->n_cards; i++)
            ids[i] = pp->cards[i].product_id;
        if (tagmask_new(&k->tm, v->tv, ids, pp->n_cards))
            return fail(k, 500, "server_error", NULL, NULL, "out of memory");
        tagmask_set_pre(k->tm, v->o.chat_mask, v->o.chat_mask_ctx);
        p.sample.mask = tagmask_apply;
        p.sample.mask_ctx = k->tm;
        p.accept = tagmask_accept;
        p.release = tagmask_release;
        p.hook_ctx = k->tm;
        tagmask_ref(k->tm); /* the scheduler's, dropped by release */
    }
    k->n_prompt = n;
    int rc = sched_submit(v->s, &p, &k->sr);
    if (rc && k->tm)
        tagmask_unref(k->tm); /* never submitted: release will not run */
    if (rc == AISLE_EBUSY) {
        oai_error_set(&e, 429, "rate_limit_exceeded", "queue_full", NULL,
                      "the server is busy (its queue is full); retry after %d s", v->o.retry_after_s);
        return respond_error(k, &e, v->o.retry_after_s);
    }
    if (rc) {
        oai_error_set(&e, rc == AISLE_ETOOBIG ? 400 : 500, rc == AISLE_ETOOBIG ? NULL : "server_error",
                      rc == AISLE_ETOOBIG ? "context_length_exceeded" : NULL, NULL, "cannot start the answer: %s",
                      aisle_strerror(rc));
        return respond_error(k, &e, 0);
    }
    live_add(k);
    v->chat_n++;
    tok_stream_init(&k->ts, 0);
    chat_stream_init(&k->cs, pp, &k->out);
    k->cs_init = 1;
    return queue_sse(k);
}

/* WAIT phase: gather; answer when complete. */
static enum MHD_Result wait_completion(struct conn *k)
{
    if (client_gone(k)) {
        k->v->gone++;
        sched_req_cancel(k->sr);
        return MHD_NO;
    }
    int rc = pump(k);
    if (rc == 0)
        return MHD_YES; /* suspended */
    if (rc < 0)
        return fail(k, 503, "server_error", NULL, NULL, "the server is shutting down");
    if (k->failed)
        return fail(k, 500, "server_error", NULL, NULL, k->fail_msg);
    return respond(k, 200,
                   oai_response_json(k->req.kind, k->id, k->v->created, k->v->model_name, k->text.data, k->text.len,
                                     k->finish, k->n_prompt, k->n_completion),
                   "application/json", 0);
}

/* ---- /api/feedback ------------------------------------------------------------- */

/* Validate a vote and hand it to the answers writer, suspended meanwhile. */
static enum MHD_Result start_feedback(struct conn *k)
{
    struct srv *v = k->v;
    struct oai_error e;
    if (k->too_big)
        return respond_too_big(k);
    if (!v->o.answers)
        return fail(k, 503, "server_error", "answers_not_stored", NULL,
                    "this server does not store answers (started with --no-store-answers, or without --db)");
    struct chat_error ce;
    int rc = chat_feedback_parse(&k->fb, k->body.data ? k->body.data : "", k->body.len, &ce);
    if (rc)
        return respond_chat_error(k, rc, &ce);
    k->fb_parsed = 1;
    k->ajob = (struct answers_job){.kind = ANSWERS_JOB_VOTE, .answer_id = k->fb.answer_id, .rating = k->fb.rating,
                                   .comment = k->fb.comment};
    if (submit_answers_job(k)) {
        k->phase = P_VOTE;
        return MHD_YES;
    }
    if (atomic_load(&v->stopping))
        return fail(k, 503, "server_error", NULL, NULL, "the server is shutting down");
    oai_error_set(&e, 429, "rate_limit_exceeded", "queue_full", NULL,
                  "the server is busy (its answers queue is full); retry after %d s", v->o.retry_after_s);
    return respond_error(k, &e, v->o.retry_after_s);
}

/* The writer reported the vote: 200 after the commit, 404 for an unknown answer. */
static enum MHD_Result finish_feedback(struct conn *k)
{
    if (atomic_load(&k->a_state) != A_WRITTEN)
        return MHD_YES;
    if (k->ajob.rc == AISLE_ENOTFOUND)
        return fail(k, 404, NULL, "not_found", "answer_id", k->ajob.err);
    if (k->ajob.rc)
        return fail(k, 500, "server_error", NULL, NULL, k->ajob.err);
    char body[128];
    snprintf(body, sizeof(body), "{\"ok\":true,\"answer_id\":\"%s\",\"rating\":\"%s\"}", k->fb.answer_id,
             k->fb.rating > 0 ? "up" : "down");
    return respond(k, 200, strdup(body), "application/json", 0);
}

/* ---- the access handler ----------------------------------------------------------- */

static enum http_route route_of(const char *url, const char *method, int *bad_method, int *page)
{
    static const struct {
        const char *url, *method;
        enum http_route r;
    } t[] = {{"/v1/chat/completions", "POST", R_CHAT}, {"/v1/completions", "POST", R_COMPLETION},
             {"/v1/models", "GET", R_MODELS},          {"/health", "GET", R_HEALTH},
             {"/metrics", "GET", R_METRICS},           {"/api/chat", "POST", R_API_CHAT},
             {"/api/products", "GET", R_PRODUCTS},     {"/api/feedback", "POST", R_FEEDBACK}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (!strcmp(url, t[i].url)) {
            *bad_method = strcmp(method, t[i].method) != 0;
            return t[i].r;
        }
    for (size_t i = 0; i < N_WEB; i++)
        if (!strcmp(url, web_files[i].url)) {
            *bad_method = strcmp(method, "GET") != 0;
            *page = (int)i;
            return R_PAGE;
        }
    *bad_method = 0;
    return R_NONE;
}

static enum MHD_Result handle_get(struct conn *k)
{
    struct srv *v = k->v;
    if (k->route == R_HEALTH)
        return respond(k, 200, strdup("{\"status\":\"ok\"}"), "application/json", 0);
    if (k->route == R_MODELS)
        return respond(k, 200, oai_models_json(v->model_name, v->created), "application/json", 0);
    if (k->route == R_PRODUCTS)
        return respond(k, 200, strdup(v->o.chat ? chat_pool_products_json(v->o.chat) : "[]"), "application/json",
                       0);
    if (k->route == R_PAGE) {
        if (!v->web[k->page])
            return fail(k, 404, NULL, "not_found", NULL,
                        "this server has no web chat: start it with aisle serve --db STORE");
        char *copy = malloc(v->web_len[k->page] + 1);
        if (copy)
            memcpy(copy, v->web[k->page], v->web_len[k->page] + 1);
        return respond(k, 200, copy, web_files[k->page].ctype, 0);
    }
    struct sched_stats st;
    sched_stats_get(v->s, &st);
    struct metrics_http h = {.connections_open = v->n_conn, .responses_2xx = v->r2xx, .responses_4xx = v->r4xx,
                             .responses_5xx = v->r5xx, .responses_429 = v->r429, .client_gone = v->gone,
                             .chat_requests = v->chat_n, .chat_dropped_tags = v->chat_dropped,
                             .answers_stored = v->a_stored, .votes_up = v->a_up, .votes_down = v->a_down,
                             .answers_errors = v->a_errors};
    struct buf b;
    buf_init(&b, 0);
    if (metrics_render(&b, &st, &h)) {
        buf_release(&b);
        return fail(k, 500, "server_error", NULL, NULL, "out of memory");
    }
    return respond(k, 200, buf_detach(&b), "text/plain; version=0.0.4", 0);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    struct srv *v = cls;
    struct conn *k = *con_cls;
    if (!k) {
        if (!(k = calloc(1, sizeof(*k))))
            return MHD_NO;
        k->v = v;
        k->c = c;
        k->t_start = now_s();
        buf_init(&k->body, v->o.max_body);
        buf_init(&k->text, 0);
        buf_init(&k->out, 0);
        buf_init(&k->piece, 0);
        buf_init(&k->raw, 0);
        buf_init(&k->evlog, 0);
        *con_cls = k;
        int bad_method;
        k->route = route_of(url, method, &bad_method, &k->page);
        if (bad_method)
            k->route = R_NONE, k->too_big = -1; /* answered 405 below */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > v->o.max_body && k->route != R_NONE) {
            /* Refuse before reading a byte of it; MHD closes the connection after. */
            struct oai_error e;
            oai_error_set(&e, 413, NULL, "request_too_large", NULL,
                          "the request body (Content-Length %.20s) is larger than %zu bytes", cl, v->o.max_body);
            return respond_error(k, &e, 0);
        }
        return MHD_YES;
    }
    if (k->phase == P_BODY && *upload_size) {
        if (now_s() - k->t_start > v->o.read_timeout_s)
            return MHD_NO; /* a client trickling its body: drop it */
        if (!k->too_big && buf_append(&k->body, upload_data, *upload_size))
            k->too_big = 1; /* keep reading (and dropping) so the 413 can be sent */
        *upload_size = 0;
        return MHD_YES;
    }
    if (k->phase == P_BODY) {
        if (k->too_big == -1)
            return fail(k, 405, NULL, "method_not_allowed", NULL, "this endpoint does not accept that method");
        if (k->route == R_NONE) {
            char msg[200];
            snprintf(msg, sizeof(msg), "no such endpoint: %.100s %.60s", method, url);
            return fail(k, 404, NULL, "not_found", NULL, msg);
        }
        if (k->route == R_API_CHAT)
            return start_chat(k);
        if (k->route == R_FEEDBACK)
            return start_feedback(k);
        if (k->route == R_CHAT || k->route == R_COMPLETION) {
            enum MHD_Result r = start_completion(k);
            if (k->phase != P_WAIT)
                return r;
        } else
            return handle_get(k);
    }
    if (k->phase == P_PREP)
        return start_chat_stream(k);
    if (k->phase == P_VOTE)
        return finish_feedback(k);
    if (k->phase == P_WAIT)
        return wait_completion(k);
    return MHD_YES;
}

static void quiet_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls, (void)fmt, (void)ap; /* library code never prints */
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void free_web(struct srv *v)
{
    for (size_t i = 0; i < N_WEB; i++)
        free(v->web[i]);
}

/* Read the web chat's files (each at most 1 MiB) into memory. */
static int load_web(struct srv *v, const char *dir, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_WEB; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, web_files[i].file);
        FILE *f = fopen(path, "rb");
        struct buf b;
        buf_init(&b, 1 << 20);
        char chunk[8192];
        size_t n;
        int rc = f ? 0 : AISLE_EIO;
        while (!rc && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            rc = buf_append(&b, chunk, n);
        if (!rc && f && ferror(f))
            rc = AISLE_EIO;
        rc = rc ? rc : buf_putc(&b, '\0');
        if (f)
            fclose(f);
        if (rc) {
            buf_release(&b);
            snprintf(err, errlen, "%s: cannot read the web chat file (%s)", path, aisle_strerror(rc));
            return AISLE_EIO;
        }
        v->web_len[i] = b.len - 1;
        v->web[i] = buf_detach(&b);
    }
    return 0;
}

int srv_start(struct srv **out, struct sched *s, const struct tok *tk, const struct srv_opts *o, char *err,
              size_t errlen)
{
    struct srv *v = calloc(1, sizeof(*v));
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    pthread_mutex_init(&v->mu, NULL);
    pthread_mutex_init(&v->jmu, NULL);
    v->s = s;
    v->tk = tk;
    v->o = *o;
    if (!v->o.host)
        v->o.host = "127.0.0.1";
    if (!v->o.max_body)
        v->o.max_body = 1 << 20;
    if (v->o.max_conns <= 0)
        v->o.max_conns = 2048;
    if (v->o.conn_timeout_s <= 0)
        v->o.conn_timeout_s = 15;
    if (v->o.read_timeout_s <= 0)
        v->o.read_timeout_s = 10;
    if (v->o.request_timeout_s <= 0)
        v->o.request_timeout_s = 300;
    if (v->o.default_max_tokens <= 0)
        v->o.default_max_tokens = 512;
    if (v->o.threads <= 0)
        v->o.threads = 2;
    if (v->o.retry_after_s <= 0)
        v->o.retry_after_s = 1;
    if (v->o.chat_max_tokens <= 0)
        v->o.chat_max_tokens = 256;
    v->created = wall_now();
    v->model_name = strdup(o->model_name ? o->model_name : "aisle");
    static const char *const roles[3] = {TOK_SYSTEM, TOK_USER, TOK_ASSISTANT};
    for (int i = 0; i < 3; i++)
        v->tok_role[i] = tok_find(tk, roles[i], strlen(roles[i]));
    v->tok_end = tok_find(tk, TOK_END, strlen(TOK_END));

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    int rc = AISLE_ENOMEM;
    if (!v->model_name) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (o->web_dir && (rc = load_web(v, o->web_dir, err, errlen)))
        goto fail;
    if (o->chat && !o->chat_free_ids && (rc = tagmask_vocab_new(&v->tv, tk))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (inet_pton(AF_INET, v->o.host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)v->o.port);
    } else if (inet_pton(AF_INET6, v->o.host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)v->o.port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "--host: '%s' is not an IPv4 or IPv6 address", v->o.host);
        rc = AISLE_EINVAL;
        goto fail;
    }
    v->d = MHD_start_daemon(flags, (uint16_t)v->o.port, NULL, NULL, handler, v, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)v->o.threads,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)v->o.max_conns, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)v->o.conn_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, v, MHD_OPTION_NOTIFY_CONNECTION,
                            on_connection, v, MHD_OPTION_EXTERNAL_LOGGER, quiet_logger, v,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    if (!v->d) {
        snprintf(err, errlen, "cannot listen on %s port %d (in use, or not an address of this machine?)", v->o.host,
                 v->o.port);
        rc = AISLE_EIO;
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(v->d, MHD_DAEMON_INFO_BIND_PORT);
    v->port = di ? di->port : v->o.port;
    *out = v;
    return 0;
fail:
    tagmask_vocab_free(v->tv);
    free_web(v);
    free(v->model_name);
    pthread_mutex_destroy(&v->mu);
    pthread_mutex_destroy(&v->jmu);
    free(v);
    return rc;
}

int srv_port(const struct srv *v)
{
    return v->port;
}

void srv_stop(struct srv *v)
{
    if (!v)
        return;
    atomic_store(&v->stopping, 1);
    /* Chats waiting for retrieval are resumed by their workers' done; after
     * this no new one starts. */
    if (v->o.chat)
        chat_pool_close(v->o.chat);
    /* Answers and votes being written are resumed by the writer's report
     * (milliseconds: one small transaction each); after this none starts. */
    while (atomic_load(&v->a_inflight) > 0)
        usleep(1000);
    /* Resume every suspended connection (MHD_stop_daemon refuses to run with
     * suspended ones): each then sees `stopping` and ends. */
    pthread_mutex_lock(&v->mu);
    for (struct conn *k = v->live; k; k = k->next)
        sched_req_kick(k->sr);
    pthread_mutex_unlock(&v->mu);
    MHD_stop_daemon(v->d);
    tagmask_vocab_free(v->tv); /* masks the scheduler still holds keep it */
    free_web(v);
    free(v->model_name);
    pthread_mutex_destroy(&v->mu);
    pthread_mutex_destroy(&v->jmu);
    free(v);
}
