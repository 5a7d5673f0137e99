/*
 * server_test.c — the serving stack: request parsing (openai.c), the
 * scheduler (batching policies give the same greedy tokens as one request at
 * a time; prefix caching; preemption by recompute; the bounded queue), and
 * the HTTP server in-process on an ephemeral port: streaming and
 * non-streaming answers, /health, /v1/models, /metrics, and every bad request
 * the issue lists, each answered with a clear 4xx (or dropped by a timeout)
 * while another client keeps streaming.
 *
 * The model is a tiny random Llama with a real byte-level tokenizer
 * (tinymodel.h), written fresh for each test.
 */
#include <criterion/criterion.h>

#include "core/buf.h"
#include "core/error.h"
#include "model/model.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/openai.h"
#include "server/sched.h"
#include "tok/tok.h"
#include "../testutil.h"
#include "tinymodel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

/* ---- fixture ------------------------------------------------------------------- */

static char *dir, *model_path;
static struct lm_model *model;
static struct tok *tk;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    dir = tu_tmpdir();
    model_path = tu_path(dir, "tiny.gguf");
    struct tiny_spec ts = {.dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ff = 128, .vocab = 512, .ctx = 512,
                           .wtype = GGML_TYPE_F32, .seed = 7, .printable = 1};
    cr_assert_eq(tiny_model_write(model_path, &ts), 0);
    char err[256];
    struct lm_model_opts mo = {.nthreads = 1, .max_batch = 64};
    cr_assert_eq(lm_model_load(&model, model_path, &mo, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tok_load_gguf(&tk, lm_model_gguf(model), err, sizeof(err)), 0, "%s", err);
}

/* Schedulers and servers a test still holds when an assertion ends it early:
 * stopped here, before the model they borrow is freed. */
static struct sched *held_scheds[8];
static struct srv *held_srv;

static void drop_sched(struct sched *s)
{
    for (int i = 0; i < 8; i++)
        if (held_scheds[i] == s)
            held_scheds[i] = NULL;
    sched_free(s);
}

static void teardown(void)
{
    if (held_srv)
        srv_stop(held_srv);
    held_srv = NULL;
    for (int i = 0; i < 8; i++)
        if (held_scheds[i])
            sched_free(held_scheds[i]);
    tok_free(tk);
    lm_model_free(model);
    free(model_path);
    tu_rmdir(dir);
}

static int test_ctx = 256; /* positions per sequence in mk_sched */

static struct sched *mk_sched(enum sched_policy pol, int par, int kv_blocks, int prefix, int queue)
{
    struct sched_opts o = {.policy = pol, .max_running = par, .step_tokens = 64, .queue_max = queue,
                           .kv_blocks = kv_blocks, .max_ctx = test_ctx, .prefix_cache = prefix};
    struct sched *s;
    char err[256];
    cr_assert_eq(sched_new(&s, model, &o, err, sizeof(err)), 0, "%s", err);
    for (int i = 0; i < 8; i++)
        if (!held_scheds[i]) {
            held_scheds[i] = s;
            break;
        }
    return s;
}

/* Random token ids below the tokenizer's specials. */
static void rand_prompt(int32_t *p, int n, unsigned seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (int32_t)((seed >> 8) % 256);
    }
}

/* Wait until r ends; its tokens into out (cap), count returned. */
static int drain(struct sched_req *r, int32_t *out, int cap, enum sched_finish *fin)
{
    int total = 0;
    for (int spins = 0; spins < 20000; spins++) {
        int n;
        sched_req_take(r, out + total, cap - total, &n, fin, NULL, NULL);
        total += n;
        if (*fin != SCHED_LIVE)
            return total;
        if (n == 0) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    cr_assert_fail("request did not end");
    return total;
}

static struct sched_params greedy(const int32_t *prompt, int n, int max_tokens)
{
    struct sched_params p = {.prompt = prompt, .n_prompt = n, .max_tokens = max_tokens};
    lm_sample_params_default(&p.sample);
    p.sample.temperature = 0;
    return p;
}

/* ---- openai.c ---------------------------------------------------------------------- */

static int parse(enum oai_kind k, const char *body, struct oai_request *req, struct oai_error *e)
{
    return oai_parse(req, k, body, strlen(body), e);
}

Test(openai, parses_a_chat_request)
{
    struct oai_request r;
    struct oai_error e;
    cr_assert_eq(parse(OAI_CHAT,
                       "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi \"},{\"type\":\"text\","
                       "\"text\":\"there\"}]}],\"stream\":true,\"max_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,"
                       "\"seed\":42,\"n\":1,\"stop\":[\"\\n\",\"END\"],\"stream_options\":{\"include_usage\":true},"
                       "\"user\":\"ignored\"}",
                       &r, &e),
                 0, "%s", e.message);
    cr_assert_str_eq(r.model, "m");
    cr_assert_eq(r.n_msgs, 2);
    cr_assert_str_eq(r.msgs[0].role, "system");
    cr_assert_str_eq(r.msgs[1].content, "hi there");
    cr_assert(r.stream && r.include_usage && r.has_seed && r.seed == 42);
    cr_assert_eq(r.max_tokens, 7);
    cr_assert_float_eq(r.temperature, 0.5, 1e-12);
    cr_assert_eq(r.n_stop, 2);
    cr_assert_str_eq(r.stop[1], "END");
    oai_request_release(&r);

    cr_assert_eq(parse(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"ignore_eos\":true}", &r, &e), 0, "%s",
                 e.message);
    cr_assert_eq(r.ignore_eos, 1);
    oai_request_release(&r);
    cr_assert_eq(parse(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"abc\"]}", &r, &e), 0, "%s", e.message);
    cr_assert_str_eq(r.prompt, "abc");
    cr_assert_eq(r.ignore_eos, 0);
    cr_assert_eq(r.max_tokens, -1);
    cr_assert_float_eq(r.temperature, 1.0, 1e-12);
    oai_request_release(&r);
}

Test(openai, names_the_bad_field)
{
    static const struct {
        enum oai_kind k;
        const char *body, *param, *in_msg;
    } cases[] = {
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}", "", "not valid JSON"},
        {OAI_CHAT, "[1,2]", "body", "expected a JSON object"},
        {OAI_CHAT, "{\"messages\":[]}", "model", "required"},
        {OAI_CHAT, "{\"model\":3,\"messages\":[]}", "model", "expected a string, got an integer"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":{}}", "messages", "expected an array"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", "messages", "0 messages"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content",
         "got an integer"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", "messages[0].role",
         "'robot'"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
         "messages[0].content[0]", "only \"text\""},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}",
         "temperature", "expected a number, got a string"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}",
         "temperature", "outside"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", "n", "outside"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}",
         "max_tokens", "outside"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1.5}",
         "max_tokens", "expected an integer"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":1}", "stream",
         "expected a boolean"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\","
                   "\"d\",\"e\"]}",
         "stop", "at most 4"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"\"]}", "stop[0]",
         "1 to"},
        {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"ignore_eos\":\"yes\"}",
         "ignore_eos", "expected a boolean"},
        {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,2,3]}", "prompt", "expected a string"},
        {OAI_COMPLETION, "{\"model\":\"m\"}", "prompt", "required"},
        {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"a\",\"model\":\"n\"}", "", "duplicate"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oai_request r;
        struct oai_error e;
        cr_assert_neq(parse(cases[i].k, cases[i].body, &r, &e), 0, "case %zu accepted", i);
        cr_assert_eq(e.status, 400, "case %zu", i);
        cr_assert_str_eq(e.param, cases[i].param, "case %zu: param '%s'", i, e.param);
        cr_assert_not_null(strstr(e.message, cases[i].in_msg), "case %zu: message '%s'", i, e.message);
        char *j = oai_error_json(&e);
        json_t *root = json_loads(j, 0, NULL);
        cr_assert_not_null(root);
        json_t *err = json_object_get(root, "error");
        cr_assert(json_is_string(json_object_get(err, "message")) && json_is_string(json_object_get(err, "type")));
        cr_assert(json_object_get(err, "param") && json_object_get(err, "code"), "case %zu: %s", i, j);
        json_decref(root);
        free(j);
    }
}

Test(openai, invalid_utf8_is_refused_and_output_is_cleaned)
{
    struct oai_request r;
    struct oai_error e;
    const char body[] = "{\"model\":\"m\",\"prompt\":\"caf\xc3\"}";
    cr_assert_eq(oai_parse(&r, OAI_COMPLETION, body, sizeof(body) - 1, &e), AISLE_EFORMAT);
    cr_assert_not_null(strstr(e.message, "not valid JSON"), "%s", e.message);
    struct buf b;
    buf_init(&b, 0);
    cr_assert_eq(oai_utf8_clean(&b, "a\xc3(\xe2\x82\xac\xff", 7), 0);
    cr_assert_str_eq(b.data, "a\xef\xbf\xbd(\xe2\x82\xac\xef\xbf\xbd");
    buf_release(&b);
    char *c = oai_chunk_json(OAI_CHAT, "id", 1, "m", "\xe2\x82", 2, 1, NULL);
    cr_assert_not_null(c);
    cr_assert_not_null(strstr(c, "\"role\":\"assistant\""));
    free(c);
}

/* ---- scheduler ------------------------------------------------------------------------ */

enum { NREQ = 6, MAXT = 12 };

static void gate_mask(void *ctx, float *logits, int n); /* below, with the HTTP tests */
static pthread_mutex_t gate_mu;
static pthread_cond_t gate_cv;
static int gate_closed, gate_entered;

/* Submit NREQ requests of different prompt lengths to s and drain them; out[i]
 * their tokens. */
static void run_set(struct sched *s, int32_t out[NREQ][MAXT], int *nout, int shared_prefix)
{
    int32_t prompts[NREQ][80];
    struct sched_req *r[NREQ];
    for (int i = 0; i < NREQ; i++) {
        int n = 10 + 11 * i;
        rand_prompt(prompts[i], n, shared_prefix ? 99 : 100 + (unsigned)i);
        if (shared_prefix)
            rand_prompt(prompts[i] + n - 3, 3, 200 + (unsigned)i);
        struct sched_params p = greedy(prompts[i], n, MAXT - i);
        cr_assert_eq(sched_submit(s, &p, &r[i]), 0);
    }
    for (int i = 0; i < NREQ; i++) {
        enum sched_finish fin;
        nout[i] = drain(r[i], out[i], MAXT, &fin);
        cr_assert_eq(fin, SCHED_FIN_LENGTH, "request %d ended with %d: %s", i, fin, sched_req_error(r[i]));
        cr_assert_eq(nout[i], MAXT - i);
        sched_req_release(r[i]);
    }
}

Test(sched, policies_give_the_same_greedy_tokens, .init = setup, .fini = teardown)
{
    int32_t ref[NREQ][MAXT], got[NREQ][MAXT];
    int nref[NREQ], ngot[NREQ];
    struct sched *s = mk_sched(SCHED_SERIAL, 4, 0, 0, 16);
    run_set(s, ref, nref, 0);
    drop_sched(s);
    for (int pol = SCHED_CONTINUOUS; pol <= SCHED_STATIC; pol++) {
        s = mk_sched((enum sched_policy)pol, 4, 0, 1, 16);
        run_set(s, got, ngot, 0);
        struct sched_stats st;
        sched_stats_get(s, &st);
        cr_assert_eq(st.finished_total, NREQ);
        cr_assert_geq(st.steps_total, (uint64_t)MAXT);
        cr_assert_lt(st.steps_total, (uint64_t)(NREQ * MAXT), "policy %d did not batch: %llu steps", pol,
                     (unsigned long long)st.steps_total);
        drop_sched(s);
        for (int i = 0; i < NREQ; i++)
            cr_assert_arr_eq(got[i], ref[i], (size_t)nref[i] * sizeof(int32_t), "policy %d request %d", pol, i);
    }
}

Test(sched, prefix_cache_reuses_blocks_and_changes_nothing, .init = setup, .fini = teardown)
{
    int32_t ref[NREQ][MAXT], got[NREQ][MAXT];
    int nref[NREQ], ngot[NREQ];
    struct sched *s = mk_sched(SCHED_SERIAL, 1, 0, 0, 16);
    run_set(s, ref, nref, 1);
    drop_sched(s);
    s = mk_sched(SCHED_SERIAL, 1, 0, 1, 16);
    run_set(s, got, ngot, 1);
    struct sched_stats st;
    sched_stats_get(s, &st);
    /* Later prompts extend the first's 10-token... each shares its first n-3
     * tokens with every longer one: at least a 16-token block per request after
     * the ones that reach 16 shared tokens. */
    cr_assert_geq(st.cached_tokens_total, 16 * 3, "cached %llu", (unsigned long long)st.cached_tokens_total);
    cr_assert_lt(st.prefill_tokens_total, st.prompt_tokens_total);
    drop_sched(s);
    for (int i = 0; i < NREQ; i++)
        cr_assert_arr_eq(got[i], ref[i], (size_t)nref[i] * sizeof(int32_t), "request %d", i);

    /* All at once: later requests wait for the running one that is computing
     * their shared prefix, then take its blocks from the cache. */
    s = mk_sched(SCHED_CONTINUOUS, NREQ, 0, 1, 16);
    run_set(s, got, ngot, 1);
    sched_stats_get(s, &st);
    cr_assert_geq(st.cached_tokens_total, 16 * 4, "concurrent: cached %llu",
                  (unsigned long long)st.cached_tokens_total);
    drop_sched(s);
    for (int i = 0; i < NREQ; i++)
        cr_assert_arr_eq(got[i], ref[i], (size_t)nref[i] * sizeof(int32_t), "concurrent request %d", i);
}

/* Three requests with 1-block prompts that each grow to 4 blocks (10 + 40
 * positions) on a 7-block pool. Request 0 waits at the gate in its first
 * sampling until the other two are queued, so all three run together and
 * grow in step: at position 32 they need 3 blocks with 1 free, whatever the
 * machine's speed, and the newest must be preempted and recomputed. */
Test(sched, preemption_recomputes_to_the_same_tokens, .init = setup, .fini = teardown)
{
    enum { NP = 3, PLEN = 10, GEN = 40 };
    int32_t prompts[NP][PLEN], ref[NP][GEN], got[NP][GEN];
    for (int i = 0; i < NP; i++)
        rand_prompt(prompts[i], PLEN, 300 + (unsigned)i);
    struct sched *s = mk_sched(SCHED_SERIAL, 1, 0, 0, 16);
    for (int i = 0; i < NP; i++) {
        struct sched_params p = greedy(prompts[i], PLEN, GEN);
        struct sched_req *r;
        enum sched_finish fin;
        cr_assert_eq(sched_submit(s, &p, &r), 0);
        cr_assert_eq(drain(r, ref[i], GEN, &fin), GEN);
        sched_req_release(r);
    }
    drop_sched(s);

    s = mk_sched(SCHED_CONTINUOUS, NP, 7, 0, 16);
    pthread_mutex_lock(&gate_mu);
    gate_closed = 1;
    gate_entered = 0;
    pthread_mutex_unlock(&gate_mu);
    struct sched_req *r[NP];
    for (int i = 0; i < NP; i++) {
        struct sched_params p = greedy(prompts[i], PLEN, GEN);
        if (i == 0)
            p.sample.mask = gate_mask;
        cr_assert_eq(sched_submit(s, &p, &r[i]), 0);
        if (i == 0) { /* the scheduler is held before the others exist */
            pthread_mutex_lock(&gate_mu);
            while (!gate_entered)
                pthread_cond_wait(&gate_cv, &gate_mu);
            pthread_mutex_unlock(&gate_mu);
        }
    }
    pthread_mutex_lock(&gate_mu);
    gate_closed = 0;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    for (int i = 0; i < NP; i++) {
        enum sched_finish fin;
        cr_assert_eq(drain(r[i], got[i], GEN, &fin), GEN, "request %d", i);
        cr_assert_eq(fin, SCHED_FIN_LENGTH, "request %d ended with %d: %s", i, fin, sched_req_error(r[i]));
        sched_req_release(r[i]);
    }
    struct sched_stats st;
    sched_stats_get(s, &st);
    cr_assert_gt(st.preempted_total, 0, "no preemption happened");
    drop_sched(s);
    for (int i = 0; i < NP; i++)
        cr_assert_arr_eq(got[i], ref[i], sizeof(ref[i]), "request %d", i);
}

Test(sched, bounded_queue_and_limits, .init = setup, .fini = teardown)
{
    struct sched *s = mk_sched(SCHED_SERIAL, 1, 0, 0, 2);
    int32_t p[40];
    rand_prompt(p, 40, 5);
    struct sched_req *r[8];
    int ok = 0, busy = 0;
    for (int i = 0; i < 8; i++) {
        struct sched_params sp = greedy(p, 40, 100);
        int rc = sched_submit(s, &sp, &r[ok]);
        if (rc == 0)
            ok++;
        else {
            cr_assert_eq(rc, AISLE_EBUSY);
            busy++;
        }
    }
    /* One running, two waiting; the rest refused. */
    cr_assert_geq(busy, 5);
    cr_assert_leq(ok, 3);
    struct sched_params big = greedy(p, 40, 250);
    struct sched_req *x;
    cr_assert_eq(sched_submit(s, &big, &x), AISLE_ETOOBIG);
    int32_t bad = 100000;
    struct sched_params bp = greedy(&bad, 1, 4);
    cr_assert_eq(sched_submit(s, &bp, &x), AISLE_EINVAL);
    /* Cancelling frees everything within a step or so. */
    for (int i = 0; i < ok; i++)
        sched_req_release(r[i]);
    struct sched_stats st;
    for (int spins = 0; spins < 2000; spins++) {
        sched_stats_get(s, &st);
        if (st.running == 0 && st.queued == 0 && st.kv_blocks_used == 0 && st.cancelled_total == (uint64_t)ok)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(st.cancelled_total, (uint64_t)ok);
    cr_assert_eq(st.kv_blocks_used, 0);
    cr_assert_eq(st.rejected_total, (uint64_t)busy);
    drop_sched(s);
}

Test(sched, timeout_ends_a_request, .init = setup, .fini = teardown)
{
    struct sched *s = mk_sched(SCHED_CONTINUOUS, 2, 0, 0, 4);
    int32_t p[8];
    rand_prompt(p, 8, 3);
    struct sched_params sp = greedy(p, 8, 240);
    sp.timeout_s = 0.001;
    struct sched_req *r;
    cr_assert_eq(sched_submit(s, &sp, &r), 0);
    int32_t out[240];
    enum sched_finish fin;
    int n = drain(r, out, 240, &fin);
    cr_assert_eq(fin, SCHED_FIN_TIMEOUT, "fin %d after %d tokens", fin, n);
    cr_assert_lt(n, 240);
    sched_req_release(r);
    drop_sched(s);
}

/* ---- HTTP ---------------------------------------------------------------------------- */

struct server {
    struct sched *s;
    struct srv *v;
    int port;
};

static void start_server(struct server *sv, int par, int queue, const struct srv_opts *o)
{
    sv->s = mk_sched(SCHED_CONTINUOUS, par, 0, 1, queue);
    struct srv_opts d = {.port = 0, .model_name = "tiny"};
    if (o)
        d = *o;
    char err[256];
    cr_assert_eq(srv_start(&sv->v, sv->s, tk, &d, err, sizeof(err)), 0, "%s", err);
    held_srv = sv->v;
    sv->port = srv_port(sv->v);
    cr_assert_gt(sv->port, 0);
}

static void stop_server(struct server *sv)
{
    held_srv = NULL;
    srv_stop(sv->v);
    drop_sched(sv->s);
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server may close early (413) */
        p = (const char *)p + w;
        n -= (size_t)w;
    }
}

/* Read until the server closes (or timeout_ms of silence); returns the bytes. */
static char *read_all(int fd, int timeout_ms, size_t *len)
{
    struct buf b;
    buf_init(&b, 0);
    char tmp[4096];
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, timeout_ms) <= 0)
            break;
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
            break;
        buf_append(&b, tmp, (size_t)n);
    }
    if (len)
        *len = b.len;
    return b.data ? buf_detach(&b) : strdup("");
}

/* One request with Connection: close; the whole response. */
static char *http(int port, const char *method, const char *path, const char *body, size_t blen)
{
    int fd = dial(port);
    char head[512];
    int hn = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      method, path, body ? blen : 0);
    send_all(fd, head, (size_t)hn);
    if (body)
        send_all(fd, body, blen);
    char *r = read_all(fd, 20000, NULL);
    close(fd);
    return r;
}

static char *post(int port, const char *path, const char *body)
{
    return http(port, "POST", path, body, strlen(body));
}

static int status_of(const char *resp)
{
    int st = 0;
    sscanf(resp, "HTTP/1.%*d %d", &st);
    return st;
}

/* The JSON body after the headers (chunked encoding not expected here). */
static json_t *body_json(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    cr_assert_not_null(b, "no body in: %s", resp);
    json_error_t je;
    json_t *j = json_loads(b + 4, 0, &je);
    cr_assert_not_null(j, "not JSON (%s): %s", je.text, b + 4);
    return j;
}

static void expect_error(const char *resp, int status, const char *needle)
{
    cr_assert_eq(status_of(resp), status, "expected %d: %s", status, resp);
    json_t *j = body_json(resp);
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    cr_assert(msg && json_is_string(json_object_get(e, "type")) && json_object_get(e, "param") &&
                  json_object_get(e, "code"),
              "not an OpenAI error object: %s", resp);
    cr_assert_not_null(strstr(msg, needle), "'%s' not in '%s'", needle, msg);
    json_decref(j);
}

/* Concatenate the content deltas of an SSE response; checks the framing. */
static char *sse_text(const char *resp, int *events, int *saw_done, json_t **usage)
{
    struct buf t;
    buf_init(&t, 0);
    buf_puts(&t, "");
    *events = 0;
    *saw_done = 0;
    for (const char *p = strstr(resp, "data: "); p; p = strstr(p + 1, "data: ")) {
        if (!strncmp(p, "data: [DONE]", 12)) {
            *saw_done = 1;
            continue;
        }
        const char *end = strstr(p, "\n\n");
        cr_assert_not_null(end);
        json_t *j = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
        cr_assert_not_null(j, "bad event: %.*s", (int)(end - p), p);
        (*events)++;
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        json_t *c = json_object_get(json_object_get(ch, "delta"), "content");
        if (!c)
            c = json_object_get(ch, "text");
        if (json_is_string(c))
            buf_puts(&t, json_string_value(c));
        if (usage && json_object_get(j, "usage"))
            *usage = json_incref(json_object_get(j, "usage"));
        json_decref(j);
    }
    return buf_detach(&t);
}

static const char chat_body[] = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"You help "
                                "shoppers.\"},{\"role\":\"user\",\"content\":\"Is it waterproof?\"}],"
                                "\"temperature\":0,\"max_tokens\":%d%s}";

Test(http, chat_stream_and_non_stream_agree, .init = setup, .fini = teardown)
{
    struct server sv;
    start_server(&sv, 4, 16, NULL);
    char body[1024];
    snprintf(body, sizeof(body), chat_body, 20, "");
    char *r = post(sv.port, "/v1/chat/completions", body);
    cr_assert_eq(status_of(r), 200, "%s", r);
    json_t *j = body_json(r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "object")), "chat.completion");
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    const char *text = json_string_value(json_object_get(json_object_get(ch, "message"), "content"));
    cr_assert_not_null(text);
    json_t *u = json_object_get(j, "usage");
    int pt = (int)json_integer_value(json_object_get(u, "prompt_tokens"));
    int ct = (int)json_integer_value(json_object_get(u, "completion_tokens"));
    cr_assert_gt(pt, 20);
    cr_assert_leq(ct, 20);
    cr_assert_eq(json_integer_value(json_object_get(u, "total_tokens")), pt + ct);
    const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
    cr_assert(!strcmp(fr, "length") || !strcmp(fr, "stop"), "%s", fr);

    snprintf(body, sizeof(body), chat_body, 20, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    char *rs = post(sv.port, "/v1/chat/completions", body);
    cr_assert_eq(status_of(rs), 200, "%s", rs);
    cr_assert_not_null(strstr(rs, "text/event-stream"));
    int events, done;
    json_t *su = NULL;
    char *st = sse_text(rs, &events, &done, &su);
    cr_assert(done, "no [DONE]: %s", rs);
    cr_assert_str_eq(st, text, "streamed '%s' vs whole '%s'", st, text);
    cr_assert_not_null(su);
    cr_assert_eq(json_integer_value(json_object_get(su, "completion_tokens")), ct);
    cr_assert_geq(events, 3);
    json_decref(su);
    free(st);
    free(rs);
    json_decref(j);
    free(r);

    /* /v1/completions, both ways. */
    char *c = post(sv.port, "/v1/completions",
                   "{\"model\":\"tiny\",\"prompt\":\"The tent\",\"max_tokens\":8,\"temperature\":0}");
    cr_assert_eq(status_of(c), 200, "%s", c);
    j = body_json(c);
    cr_assert_str_eq(json_string_value(json_object_get(j, "object")), "text_completion");
    const char *ctext = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    cr_assert_not_null(ctext);
    char *cs = post(sv.port, "/v1/completions",
                    "{\"model\":\"tiny\",\"prompt\":\"The tent\",\"max_tokens\":8,\"temperature\":0,\"stream\":true}");
    st = sse_text(cs, &events, &done, NULL);
    cr_assert(done);
    cr_assert_str_eq(st, ctext);
    free(st);
    free(cs);
    json_decref(j);
    free(c);
    stop_server(&sv);
}

Test(http, stop_string_cuts_the_answer, .init = setup, .fini = teardown)
{
    struct server sv;
    start_server(&sv, 2, 16, NULL);
    char *r = post(sv.port, "/v1/completions",
                   "{\"model\":\"tiny\",\"prompt\":\"ab\",\"max_tokens\":40,\"temperature\":0,\"seed\":1}");
    json_t *j = body_json(r);
    const char *full = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    cr_assert_gt(strlen(full), 4, "%s", full);
    /* Stop at the 3rd..4th bytes of what the model says. */
    char stop[8] = {0}, body[512];
    memcpy(stop, full + 2, 2);
    json_t *sj = json_stringn(stop, 2);
    char *sjs = json_dumps(sj, JSON_ENCODE_ANY);
    snprintf(body, sizeof(body),
             "{\"model\":\"tiny\",\"prompt\":\"ab\",\"max_tokens\":40,\"temperature\":0,\"stop\":%s,\"stream\":true}",
             sjs);
    char *rs = post(sv.port, "/v1/completions", body);
    int events, done;
    char *st = sse_text(rs, &events, &done, NULL);
    const char *at = strstr(full, stop);
    cr_assert_not_null(at);
    cr_assert_eq(strlen(st), (size_t)(at - full), "'%s' vs '%s' stop '%s'", st, full, stop);
    cr_assert(!strncmp(st, full, strlen(st)));
    cr_assert_not_null(strstr(rs, "\"finish_reason\":\"stop\""));
    free(st);
    free(rs);
    free(sjs);
    json_decref(sj);
    json_decref(j);
    free(r);
    stop_server(&sv);
}

Test(http, health_models_metrics_and_unknown_paths, .init = setup, .fini = teardown)
{
    struct server sv;
    start_server(&sv, 2, 16, NULL);
    char *r = http(sv.port, "GET", "/health", NULL, 0);
    cr_assert_eq(status_of(r), 200);
    free(r);
    r = http(sv.port, "GET", "/v1/models", NULL, 0);
    json_t *j = body_json(r);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id")), "tiny");
    json_decref(j);
    free(r);
    free(post(sv.port, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":3,\"temperature\":0}"));
    r = http(sv.port, "GET", "/metrics", NULL, 0);
    cr_assert_eq(status_of(r), 200);
    static const char *const names[] = {"aisle_queue_depth ", "aisle_running_sequences ", "aisle_kv_blocks_used ",
                                        "aisle_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1",
                                        "aisle_inter_token_seconds_count 2", "aisle_tokens_per_second ",
                                        "aisle_generation_tokens_total 3"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        cr_assert_not_null(strstr(r, names[i]), "no '%s' in %s", names[i], r);
    free(r);
    r = http(sv.port, "GET", "/v1/nothing", NULL, 0);
    expect_error(r, 404, "no such endpoint");
    free(r);
    r = http(sv.port, "GET", "/v1/chat/completions", NULL, 0);
    expect_error(r, 405, "method");
    free(r);
    stop_server(&sv);
}

/* A client streaming a long answer in a thread while bad requests arrive. */
struct streamer {
    int port;
    int ok, events;
    struct timespec t_end; /* when the stream ended */
};

/* Mask hook that only sleeps: 10 ms when ctx is set, else 5 ms. */
static void slow_mask(void *ctx, float *logits, int n)
{
    (void)logits, (void)n;
    struct timespec t = {0, ctx ? 10000000 : 5000000};
    nanosleep(&t, NULL);
}

static void *stream_thread(void *arg)
{
    struct streamer *st = arg;
    char body[1024];
    snprintf(body, sizeof(body), chat_body, 200, ",\"stream\":true");
    int fd = dial(st->port);
    char head[256];
    int hn = snprintf(head, sizeof(head),
                      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n",
                      strlen(body));
    send_all(fd, head, (size_t)hn);
    send_all(fd, body, strlen(body));
    char *r = read_all(fd, 30000, NULL);
    close(fd);
    int done = 0;
    st->events = 0;
    for (const char *p = strstr(r, "data: "); p; p = strstr(p + 1, "data: "))
        st->events++;
    done = strstr(r, "data: [DONE]") != NULL;
    st->ok = status_of(r) == 200 && done;
    clock_gettime(CLOCK_MONOTONIC, &st->t_end);
    free(r);
    return NULL;
}

Test(http, bad_requests_get_clear_errors_while_others_stream, .init = setup, .fini = teardown, .timeout = 120)
{
    struct server sv;
    struct srv_opts o = {.port = 0, .model_name = "tiny", .max_body = 4096, .read_timeout_s = 1.0,
                         .conn_timeout_s = 2};
    start_server(&sv, 4, 16, &o);
    /* Pace the scheduler (10 ms a step) so the stream lasts through the bad requests. */
    int32_t pp[8];
    rand_prompt(pp, 8, 4);
    struct sched_params pace = greedy(pp, 8, 200);
    pace.sample.mask = slow_mask;
    pace.sample.mask_ctx = &pace;
    struct sched_req *pacer;
    cr_assert_eq(sched_submit(sv.s, &pace, &pacer), 0);
    struct streamer st = {.port = sv.port};
    pthread_t th;
    pthread_create(&th, NULL, stream_thread, &st);

    char *r = post(sv.port, "/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[");
    expect_error(r, 400, "not valid JSON");
    free(r);
    r = post(sv.port, "/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":1}]}");
    expect_error(r, 400, "messages[0].content");
    free(r);
    r = post(sv.port, "/v1/chat/completions",
             "{\"model\":\"gpt-9\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    expect_error(r, 404, "gpt-9");
    free(r);
    r = post(sv.port, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":100000}");
    expect_error(r, 400, "maximum context length");
    free(r);
    {
        /* A prompt longer than the context (256) but inside the body limit. */
        char big[2048];
        int n = snprintf(big, sizeof(big), "{\"model\":\"tiny\",\"prompt\":\"");
        for (int i = 0; i < 600; i++)
            big[n++] = (char)('a' + i % 26);
        snprintf(big + n, sizeof(big) - (size_t)n, "\"}");
        r = post(sv.port, "/v1/completions", big);
        expect_error(r, 400, "maximum context length");
        free(r);
    }
    {
        const char bad[] = "{\"model\":\"tiny\",\"prompt\":\"\xff\xfe\"}";
        r = http(sv.port, "POST", "/v1/completions", bad, sizeof(bad) - 1);
        expect_error(r, 400, "not valid JSON");
        free(r);
    }
    {
        /* A huge body: announced (refused before reading) and unannounced (chunked). */
        size_t n = 1 << 20;
        char *huge = malloc(n);
        memset(huge, ' ', n);
        r = http(sv.port, "POST", "/v1/completions", huge, n);
        expect_error(r, 413, "larger than 4096");
        free(r);
        int fd = dial(sv.port);
        const char head[] = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n";
        send_all(fd, head, sizeof(head) - 1);
        for (int i = 0; i < 4; i++) {
            char ch[32];
            int hn = snprintf(ch, sizeof(ch), "%x\r\n", 4096);
            send_all(fd, ch, (size_t)hn);
            send_all(fd, huge, 4096);
            send_all(fd, "\r\n", 2);
        }
        send_all(fd, "0\r\n\r\n", 5);
        r = read_all(fd, 10000, NULL);
        close(fd);
        expect_error(r, 413, "larger than 4096");
        free(r);
        free(huge);
    }
    {
        /* A slow client trickling its body is dropped after the read timeout. */
        int fd = dial(sv.port);
        const char head[] = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{";
        send_all(fd, head, sizeof(head) - 1);
        int closed = 0;
        for (int i = 0; i < 40 && !closed; i++) {
            struct timespec ts = {0, 100000000};
            nanosleep(&ts, NULL);
            if (send(fd, " ", 1, MSG_NOSIGNAL) < 0)
                closed = 1;
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            char c;
            if (poll(&pf, 1, 0) == 1 && recv(fd, &c, 1, MSG_DONTWAIT) <= 0)
                closed = 1;
        }
        cr_assert(closed, "a trickling client was not dropped within 4 s");
        close(fd);
    }
    struct timespec t_bad;
    clock_gettime(CLOCK_MONOTONIC, &t_bad);
    pthread_join(th, NULL);
    cr_assert(st.ok, "the streaming client failed (%d events)", st.events);
    cr_assert_gt(st.events, 30);
    cr_assert(st.t_end.tv_sec > t_bad.tv_sec || (st.t_end.tv_sec == t_bad.tv_sec && st.t_end.tv_nsec >= t_bad.tv_nsec),
              "the stream ended before the bad requests did: nothing was shown");
    sched_req_release(pacer);
    stop_server(&sv);
}

Test(http, thousand_idle_connections_and_a_disconnect, .init = setup, .fini = teardown, .timeout = 120)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2600 && rl.rlim_max >= 2600) {
        rl.rlim_cur = 2600;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    cr_assert_geq(rl.rlim_cur, 2600, "need 2,600 descriptors for 1,000 idle connections (both ends)");
    struct server sv;
    struct srv_opts o = {.port = 0, .model_name = "tiny", .conn_timeout_s = 30, .max_conns = 1100};
    test_ctx = 512; /* a long answer, so the client leaves well before its end even on a loaded machine */
    start_server(&sv, 4, 16, &o);
    int idle[1000];
    for (int i = 0; i < 1000; i++)
        idle[i] = dial(sv.port);
    /* Still serving: a stream completes. */
    struct streamer st = {.port = sv.port};
    stream_thread(&st);
    cr_assert(st.ok, "stream failed beside 1,000 idle connections");

    /* A client that leaves mid-stream frees its sequence and blocks. A
     * pacing request whose mask hook sleeps 5 ms makes every step last that
     * long, so the stream cannot end on its own before the client leaves. */
    int32_t pp[8];
    rand_prompt(pp, 8, 4);
    struct sched_params pace = greedy(pp, 8, 400);
    pace.sample.mask = slow_mask;
    struct sched_req *pacer;
    cr_assert_eq(sched_submit(sv.s, &pace, &pacer), 0);
    char body[1024];
    snprintf(body, sizeof(body), chat_body, 450, ",\"stream\":true");
    int fd = dial(sv.port);
    char head[256];
    int hn = snprintf(head, sizeof(head), "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                      strlen(body));
    send_all(fd, head, (size_t)hn);
    send_all(fd, body, strlen(body));
    char buf[256];
    cr_assert_gt(recv(fd, buf, sizeof(buf), 0), 0);
    struct sched_stats s0;
    sched_stats_get(sv.s, &s0);
    close(fd);
    struct sched_stats s1;
    int freed = 0;
    for (int i = 0; i < 300 && !freed; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        sched_stats_get(sv.s, &s1);
        freed = s1.cancelled_total > s0.cancelled_total && s1.running == 1;
    }
    cr_assert(s1.cancelled_total > s0.cancelled_total, "the departed client's request was not cancelled");
    /* Only the pacer still runs: one sequence, its blocks alone. */
    int pacer_blocks = (8 + 400 + 15) / 16;
    cr_assert(freed, "the sequence of a departed client was not freed (running %d, blocks %d)", s1.running,
              s1.kv_blocks_used);
    cr_assert_leq(s1.kv_blocks_used, pacer_blocks);
    sched_req_release(pacer);
    for (int i = 0; i < 300; i++) {
        sched_stats_get(sv.s, &s1);
        if (s1.running == 0 && s1.kv_blocks_used == 0)
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    cr_assert(s1.running == 0 && s1.kv_blocks_used == 0, "blocks still held: %d", s1.kv_blocks_used);
    for (int i = 0; i < 1000; i++)
        close(idle[i]);
    stop_server(&sv);
}

/* A gate in the sampler's mask hook: the scheduler thread stops inside it
 * until released, so the test decides what is running and what waits (the
 * tiny model would otherwise finish any request in milliseconds). */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;

static void gate_mask(void *ctx, float *logits, int n)
{
    (void)ctx, (void)logits, (void)n;
    pthread_mutex_lock(&gate_mu);
    gate_entered = 1;
    pthread_cond_broadcast(&gate_cv);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20; /* never hang the suite */
    while (gate_closed && pthread_cond_timedwait(&gate_cv, &gate_mu, &until) == 0)
        ;
    pthread_mutex_unlock(&gate_mu);
}

Test(http, full_queue_answers_429, .init = setup, .fini = teardown, .timeout = 60)
{
    struct server sv;
    sv.s = mk_sched(SCHED_SERIAL, 1, 0, 0, 1);
    struct srv_opts d = {.port = 0, .model_name = "tiny", .retry_after_s = 3};
    char err[256];
    cr_assert_eq(srv_start(&sv.v, sv.s, tk, &d, err, sizeof(err)), 0, "%s", err);
    held_srv = sv.v;
    sv.port = srv_port(sv.v);
    /* The one slot: a request held at the gate. */
    gate_closed = 1;
    gate_entered = 0;
    int32_t p[8];
    rand_prompt(p, 8, 9);
    struct sched_params gp = greedy(p, 8, 4);
    gp.sample.mask = gate_mask;
    struct sched_req *held;
    cr_assert_eq(sched_submit(sv.s, &gp, &held), 0);
    pthread_mutex_lock(&gate_mu);
    while (!gate_entered)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    /* The one queue place: a streaming request (its headers prove it was accepted). */
    char body[1024];
    snprintf(body, sizeof(body), chat_body, 8, ",\"stream\":true");
    int fd = dial(sv.port);
    char head[256];
    int hn = snprintf(head, sizeof(head), "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      strlen(body));
    send_all(fd, head, (size_t)hn);
    send_all(fd, body, strlen(body));
    char b[64];
    cr_assert_gt(recv(fd, b, sizeof(b), 0), 0);
    cr_assert_eq(strncmp(b, "HTTP/1.1 200", 12), 0);
    /* Full: the next one is refused. */
    char *r = post(sv.port, "/v1/chat/completions", body);
    expect_error(r, 429, "busy");
    cr_assert_not_null(strstr(r, "Retry-After: 3"), "%s", r);
    free(r);
    pthread_mutex_lock(&gate_mu);
    gate_closed = 0;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    /* Once the gate opens both complete. */
    enum sched_finish fin;
    int32_t out[4];
    drain(held, out, 4, &fin);
    cr_assert_eq(fin, SCHED_FIN_LENGTH);
    sched_req_release(held);
    char *rest = read_all(fd, 20000, NULL);
    cr_assert_not_null(strstr(rest, "data: [DONE]"), "%s", rest);
    free(rest);
    close(fd);
    stop_server(&sv);
}

Test(http, request_timeout_ends_streams_with_an_error_event, .init = setup, .fini = teardown, .timeout = 60)
{
    struct server sv;
    struct srv_opts o = {.port = 0, .model_name = "tiny", .request_timeout_s = 0.3};
    start_server(&sv, 4, 16, &o);
    int32_t pp[8];
    rand_prompt(pp, 8, 4);
    struct sched_params pace = greedy(pp, 8, 200);
    pace.sample.mask = slow_mask;
    pace.sample.mask_ctx = &pace; /* 10 ms a step: 200 tokens would take 2 s */
    struct sched_req *pacer;
    cr_assert_eq(sched_submit(sv.s, &pace, &pacer), 0);
    char body[1024];
    snprintf(body, sizeof(body), chat_body, 150, ",\"stream\":true");
    char *r = post(sv.port, "/v1/chat/completions", body);
    cr_assert_eq(status_of(r), 200, "%s", r);
    cr_assert_not_null(strstr(r, "\"error\":{"), "no error event: %s", r);
    cr_assert_not_null(strstr(r, "time limit"), "%s", r);
    cr_assert_not_null(strstr(r, "data: [DONE]"), "%s", r);
    free(r);
    snprintf(body, sizeof(body), chat_body, 150, "");
    r = post(sv.port, "/v1/chat/completions", body);
    expect_error(r, 500, "time limit");
    free(r);
    struct sched_stats st;
    sched_stats_get(sv.s, &st);
    cr_assert_geq(st.timeout_total, 2);
    sched_req_release(pacer);
    stop_server(&sv);
}
