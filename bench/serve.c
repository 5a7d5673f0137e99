/*
 * bench/serve.c — the server under concurrent streaming clients, three
 * scheduling policies on the same model in one run, and a RAG-shaped run with
 * prefix caching on and off.
 *
 * Model: --model FILE (the default shopping model, models/aisle-shopping-small.gguf,
 * with its own BPE tokenizer), or without it random weights of about that size
 * (dim 384, 6 layers, 6 heads, 2 KV heads, FFN 1024, vocab 8192, Q8_0;
 * tests/server/tinymodel.h) with a byte-level tokenizer. Prompt lengths are
 * counted in the model's own tokens, and every request asks for "ignore_eos",
 * so the work is the same for any model (a trained model would otherwise end
 * most answers early).
 *
 * Part 1: for each client count (1, 8, 32, 128) and each policy (continuous,
 * static, serial) a fresh scheduler + HTTP server in this process (the model is
 * loaded once), and that many client threads, each sending its requests one
 * after another (closed loop: 8, 4, 3 and 1 requests per client) over real
 * HTTP (raw sockets, HTTP/1.0 so the SSE stream ends at close) with "stream":
 * true. Requests have mixed lengths: prompts of 16 to 256 tokens and max_tokens
 * 16 to 96, from a fixed seed, the same list for every policy (--decode-heavy:
 * prompts of 16 to 64 tokens, max_tokens 32 to 256). Reported: aggregate
 * tokens/s (completion tokens from each stream's usage chunk over the wall time
 * of the whole set; and per CPU-second of this process, which a shared
 * machine disturbs far less than wall time), TTFT p50/p99 (request sent to first content event) and
 * inter-token latency p50/p99 (between content events of one stream).
 *
 * Part 2 (RAG): 64 requests, 16 at a time, each = one shared 300-token system
 * prompt + one of 4 evidence blocks of 400 tokens (16 requests share each) + a
 * 30-token question; prefix caching on vs off. Reported: prompt tokens computed
 * and served from cache, TTFT p50/p99 and the ratio.
 *
 * Output: `name value unit` lines; `#` lines are context.
 * Usage: serve [--model FILE] [--threads N] [--clients 1,8,32,128]
 *              [--requests N] [--parallel N] [--policies continuous,static,serial] [--no-rag] [--rag-only]
 *              [--decode-heavy]
 */
#include "core/buf.h"
#include "core/error.h"
#include "model/model.h"
#include "server/http.h"
#include "server/sched.h"
#include "tok/tok.h"

#include "../tests/server/tinymodel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double cpu_s(void) /* this process, all threads */
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- results --------------------------------------------------------------------- */

struct samples {
    double *v;
    size_t n, cap;
};

static void push(struct samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->v = realloc(s->v, s->cap * sizeof(double));
        if (!s->v) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    s->v[s->n++] = x;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(struct samples *s, double p)
{
    if (!s->n)
        return 0;
    qsort(s->v, s->n, sizeof(double), cmp_d);
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

struct run {
    pthread_mutex_t mu;
    struct samples ttft, itl;
    long tokens, failed;
};

/* ---- one streaming request over HTTP/1.0 ------------------------------------------ */

struct job {
    char *body; /* owned */
};

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Send one request, read its SSE stream, record TTFT, gaps and tokens. */
static void one_request(int port, const char *body, struct run *R)
{
    int fd = dial(port);
    if (fd < 0) {
        pthread_mutex_lock(&R->mu);
        R->failed++;
        pthread_mutex_unlock(&R->mu);
        return;
    }
    char head[256];
    size_t blen = strlen(body);
    int hn = snprintf(head, sizeof(head),
                      "POST /v1/chat/completions HTTP/1.0\r\nHost: bench\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      blen);
    double t0 = now_s(), last = 0;
    int ok = send(fd, head, (size_t)hn, MSG_NOSIGNAL) == hn && send(fd, body, blen, MSG_NOSIGNAL) == (ssize_t)blen;
    struct buf in;
    buf_init(&in, 0);
    size_t scan = 0;
    int first = 1, tokens = -1, status = 0;
    double ttft = -1;
    struct samples gaps = {0};
    char tmp[8192];
    while (ok) {
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
            break;
        double t = now_s();
        buf_append(&in, tmp, (size_t)n);
        if (!status)
            sscanf(in.data, "HTTP/1.%*d %d", &status);
        /* Complete events since the last scan. */
        for (;;) {
            char *ev = strstr(in.data + scan, "data: ");
            if (!ev)
                break;
            char *end = strstr(ev, "\n\n");
            if (!end)
                break;
            scan = (size_t)(end + 2 - in.data);
            if (strstr(ev, "\"content\":\"") && strstr(ev, "\"content\":\"") < end &&
                !(strstr(ev, "\"content\":\"\"") && strstr(ev, "\"content\":\"\"") < end)) {
                if (first) {
                    ttft = t - t0;
                    first = 0;
                } else
                    push(&gaps, t - last);
                last = t;
            }
            char *u = strstr(ev, "\"completion_tokens\":");
            if (u && u < end)
                tokens = atoi(u + 20);
        }
    }
    close(fd);
    pthread_mutex_lock(&R->mu);
    if (status == 200 && tokens >= 0 && ttft >= 0) {
        push(&R->ttft, ttft);
        for (size_t i = 0; i < gaps.n; i++)
            push(&R->itl, gaps.v[i]);
        R->tokens += tokens;
    } else
        R->failed++;
    pthread_mutex_unlock(&R->mu);
    free(gaps.v);
    buf_release(&in);
}

struct client {
    int port;
    struct job *jobs;
    int first, count, stride;
    struct run *R;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    for (int k = 0; k < c->count; k++)
        one_request(c->port, c->jobs[c->first + k * c->stride].body, c->R);
    return NULL;
}

/* ---- workloads ---------------------------------------------------------------------- */

static uint64_t wl_rng = 12345;
static unsigned wl_next(void)
{
    wl_rng = wl_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)(wl_rng >> 33);
}

/* Append shopping words to b until they make ntok tokens in the model's
 * tokenizer (a byte-level one: about ntok bytes; a trained BPE: about ntok
 * words), so a workload has the same token lengths whatever the model. */
static const struct tok *wl_tok;

static size_t count_tokens(const char *s, size_t n)
{
    struct tok_ids ids;
    tok_ids_init(&ids, 0);
    if (tok_encode(wl_tok, NULL, s, n, 0, &ids)) {
        fprintf(stderr, "tokenizer failed on the workload text\n");
        exit(1);
    }
    size_t k = ids.len;
    tok_ids_release(&ids);
    return k;
}

static void words(struct buf *b, int ntok)
{
    static const char *const w[] = {"tent", "waterproof", "zip", "rain", "fly", "pole", "light", "two", "person",
                                    "pack", "size", "camp", "warm", "sleeping", "bag", "review", "seller", "price",
                                    "fits", "drawer", "filter", "battery", "charger", "replacement", "stainless",
                                    "cordless", "inch", "golf", "gloves", "winter", "kitchen", "blender"};
    size_t start = b->len;
    for (;;) {
        size_t have = count_tokens(b->data + start, b->len - start);
        if ((int)have >= ntok)
            break;
        for (int i = 0; i < ntok - (int)have; i++) { /* at least one token a word: add the shortfall, recount */
            buf_puts(b, w[wl_next() % (sizeof(w) / sizeof(w[0]))]);
            buf_putc(b, ' ');
        }
    }
}

static char *chat_body(const char *system, const char *user, int max_tokens)
{
    /* Only letters and spaces: no JSON escaping needed. */
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b,
               "{\"model\":\"bench\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":%d,"
               "\"ignore_eos\":true,\"temperature\":0.8,\"seed\":%u,\"messages\":[",
               max_tokens, wl_next() % 1000);
    if (system)
        buf_printf(&b, "{\"role\":\"system\",\"content\":\"%s\"},", system);
    buf_printf(&b, "{\"role\":\"user\",\"content\":\"%s\"}]}", user);
    return buf_detach(&b);
}

/* ---- a server instance ----------------------------------------------------------------- */

struct inst {
    struct sched *s;
    struct srv *v;
    int port;
};

static void inst_start(struct inst *in, struct lm_model *m, const struct tok *tk, enum sched_policy pol, int par,
                       int prefix)
{
    struct sched_opts so = {.policy = pol, .max_running = par, .step_tokens = 256, .queue_max = 1024,
                            .max_ctx = 1024, .prefix_cache = prefix};
    char err[256];
    if (sched_new(&in->s, m, &so, err, sizeof(err))) {
        fprintf(stderr, "sched: %s\n", err);
        exit(1);
    }
    struct srv_opts o = {.port = 0, .model_name = "bench", .max_conns = 4096, .conn_timeout_s = 120,
                         .request_timeout_s = 600};
    if (srv_start(&in->v, in->s, tk, &o, err, sizeof(err))) {
        fprintf(stderr, "srv: %s\n", err);
        exit(1);
    }
    in->port = srv_port(in->v);
}

static void inst_stop(struct inst *in)
{
    srv_stop(in->v);
    sched_free(in->s);
}

/* Run jobs[0..n) with `clients` concurrent clients; fill R; returns wall seconds. */
static double drive(int port, struct job *jobs, int n, int clients, struct run *R)
{
    pthread_t *th = calloc((size_t)clients, sizeof(pthread_t));
    struct client *cs = calloc((size_t)clients, sizeof(struct client));
    double t0 = now_s();
    for (int i = 0; i < clients; i++) {
        cs[i] = (struct client){.port = port, .jobs = jobs, .first = i, .count = (n - i + clients - 1) / clients,
                                .stride = clients, .R = R};
        pthread_create(&th[i], NULL, client_main, &cs[i]);
    }
    for (int i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    double wall = now_s() - t0;
    free(th);
    free(cs);
    return wall;
}

static void run_init(struct run *R)
{
    memset(R, 0, sizeof(*R));
    pthread_mutex_init(&R->mu, NULL);
}

static void run_release(struct run *R)
{
    free(R->ttft.v);
    free(R->itl.v);
    pthread_mutex_destroy(&R->mu);
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *clients_list = "1,8,32,128", *policies = "continuous,static,serial";
    int threads = 2, per_client = 0, par = 32, rag = 1, mixed = 1, decode_mix = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model_path = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--clients") && i + 1 < argc)
            clients_list = argv[++i];
        else if (!strcmp(argv[i], "--requests") && i + 1 < argc)
            per_client = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--parallel") && i + 1 < argc)
            par = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--policies") && i + 1 < argc)
            policies = argv[++i];
        else if (!strcmp(argv[i], "--no-rag"))
            rag = 0;
        else if (!strcmp(argv[i], "--rag-only"))
            mixed = 0;
        else if (!strcmp(argv[i], "--decode-heavy"))
            decode_mix = 1;
        else {
            fprintf(stderr,
                    "usage: serve [--model FILE] [--threads N] [--clients LIST] [--requests N] [--parallel N] "
                    "[--policies LIST] [--no-rag] [--rag-only] [--decode-heavy]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/aisle-bench-serve-XXXXXX";
    char path[256];
    int made = 0;
    if (!model_path) {
        if (!mkdtemp(tmpl)) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(path, sizeof(path), "%s/model.gguf", tmpl);
        struct tiny_spec ts = {.dim = 384, .layers = 6, .heads = 6, .kv_heads = 2, .ff = 1024, .vocab = 8192,
                               .ctx = 1024, .wtype = GGML_TYPE_Q8_0, .seed = 42};
        double t = now_s();
        if (tiny_model_write(path, &ts)) {
            fprintf(stderr, "cannot write the model\n");
            return 1;
        }
        printf("# model: random dim 384, 6 layers, 6 heads (2 KV), FFN 1024, vocab 8192, Q8_0 (written in %.1f s)\n",
               now_s() - t);
        model_path = path;
        made = 1;
    }
    char err[512];
    struct lm_model *m;
    struct lm_model_opts mo = {.nthreads = threads, .max_batch = 256};
    if (lm_model_load(&m, model_path, &mo, err, sizeof(err))) {
        fprintf(stderr, "%s: %s\n", model_path, err);
        return 1;
    }
    struct tok *tk;
    if (tok_load_gguf(&tk, lm_model_gguf(m), err, sizeof(err))) {
        fprintf(stderr, "%s: tokenizer: %s\n", model_path, err);
        return 1;
    }
    wl_tok = tk;
    printf("# %d compute threads, --parallel %d, step budget 256 tokens, blocks of 16; machine shared\n", threads, par);

    if (mixed) {
        int cl[16], ncl = 0;
        for (const char *p = clients_list; *p && ncl < 16;) {
            cl[ncl++] = atoi(p);
            p = strchr(p, ',');
            if (!p)
                break;
            p++;
        }
        for (int ci = 0; ci < ncl; ci++) {
            int clients = cl[ci];
            int per = per_client > 0 ? per_client : clients >= 128 ? 1 : clients >= 32 ? 3 : clients >= 8 ? 4 : 8;
            int n = clients * per;
            wl_rng = 777 + (uint64_t)clients;
            struct job *jobs = calloc((size_t)n, sizeof(*jobs));
            for (int i = 0; i < n; i++) {
                struct buf u;
                buf_init(&u, 0);
                if (decode_mix) {
                    words(&u, 16 + (int)(wl_next() % 49));
                    jobs[i].body = chat_body(NULL, u.data, 32 + (int)(wl_next() % 225));
                } else {
                    words(&u, 16 + (int)(wl_next() % 241));
                    jobs[i].body = chat_body(NULL, u.data, 16 + (int)(wl_next() % 81));
                }
                buf_release(&u);
            }
            double tps[3] = {0}, cps[3] = {0};
            for (int pol = 0; pol < 3; pol++) {
                if (!strstr(policies, sched_policy_name((enum sched_policy)pol)))
                    continue;
                struct inst in;
                inst_start(&in, m, tk, (enum sched_policy)pol, par, 1);
                struct run R;
                run_init(&R);
                double c0 = cpu_s();
                double wall = drive(in.port, jobs, n, clients, &R);
                double cpu = cpu_s() - c0;
                struct sched_stats st;
                sched_stats_get(in.s, &st);
                inst_stop(&in);
                const char *pn = sched_policy_name((enum sched_policy)pol);
                tps[pol] = (double)R.tokens / wall;
                printf("# %s, %d clients, %d requests: %.1f s, %ld tokens, %ld failed, %llu steps (%.1f s in the "
                       "forward), %llu prefill tokens, %llu preempted\n",
                       pn, clients, n, wall, R.tokens, R.failed, (unsigned long long)st.steps_total,
                       st.forward_s_total, (unsigned long long)st.prefill_tokens_total,
                       (unsigned long long)st.preempted_total);
                printf("serve_%s_c%d_tokens_per_s %.1f tok/s\n", pn, clients, tps[pol]);
                printf("serve_%s_c%d_tokens_per_cpu_s %.1f tok/cpu-s\n", pn, clients, (double)R.tokens / cpu);
                cps[pol] = (double)R.tokens / cpu;
                printf("serve_%s_c%d_ttft_p50 %.1f ms\n", pn, clients, 1e3 * pct(&R.ttft, 0.5));
                printf("serve_%s_c%d_ttft_p99 %.1f ms\n", pn, clients, 1e3 * pct(&R.ttft, 0.99));
                printf("serve_%s_c%d_itl_p50 %.1f ms\n", pn, clients, 1e3 * pct(&R.itl, 0.5));
                printf("serve_%s_c%d_itl_p99 %.1f ms\n", pn, clients, 1e3 * pct(&R.itl, 0.99));
                fflush(stdout);
                run_release(&R);
            }
            if (tps[0] > 0 && tps[1] > 0)
                printf("serve_c%d_continuous_over_static %.2f x\n", clients, tps[0] / tps[1]);
            if (tps[0] > 0 && tps[2] > 0)
                printf("serve_c%d_continuous_over_serial %.2f x\n", clients, tps[0] / tps[2]);
            if (cps[0] > 0 && cps[1] > 0)
                printf("serve_c%d_continuous_over_static_per_cpu_s %.2f x\n", clients, cps[0] / cps[1]);
            for (int i = 0; i < n; i++)
                free(jobs[i].body);
            free(jobs);
        }
    }

    if (rag) {
        enum { NREQ = 64, CONC = 16, GROUPS = 4 };
        wl_rng = 4242;
        struct buf sys, ev[GROUPS];
        buf_init(&sys, 0);
        words(&sys, 300);
        for (int g = 0; g < GROUPS; g++) {
            buf_init(&ev[g], 0);
            words(&ev[g], 400);
        }
        struct job jobs[NREQ];
        for (int i = 0; i < NREQ; i++) {
            struct buf u;
            buf_init(&u, 0);
            buf_printf(&u, "Evidence: %s Question: ", ev[i % GROUPS].data);
            words(&u, 30);
            jobs[i].body = chat_body(sys.data, u.data, 16);
            buf_release(&u);
        }
        double p50[2] = {0}, p99[2] = {0};
        for (int cache = 1; cache >= 0; cache--) {
            struct inst in;
            inst_start(&in, m, tk, SCHED_CONTINUOUS, par, cache);
            struct run R;
            run_init(&R);
            double wall = drive(in.port, jobs, NREQ, CONC, &R);
            struct sched_stats st;
            sched_stats_get(in.s, &st);
            inst_stop(&in);
            const char *nm = cache ? "on" : "off";
            p50[cache] = pct(&R.ttft, 0.5);
            p99[cache] = pct(&R.ttft, 0.99);
            printf("# rag, prefix cache %s: %d requests, %d at a time, %.1f s, %ld failed\n", nm, NREQ, CONC, wall,
                   R.failed);
            printf("serve_rag_cache_%s_prompt_tokens %llu tokens\n", nm, (unsigned long long)st.prompt_tokens_total);
            printf("serve_rag_cache_%s_prefill_tokens %llu tokens\n", nm, (unsigned long long)st.prefill_tokens_total);
            printf("serve_rag_cache_%s_cached_tokens %llu tokens\n", nm, (unsigned long long)st.cached_tokens_total);
            printf("serve_rag_cache_%s_ttft_p50 %.1f ms\n", nm, 1e3 * p50[cache]);
            printf("serve_rag_cache_%s_ttft_p99 %.1f ms\n", nm, 1e3 * p99[cache]);
            printf("serve_rag_cache_%s_tokens_per_s %.1f tok/s\n", nm, (double)R.tokens / wall);
            fflush(stdout);
            run_release(&R);
        }
        if (p50[1] > 0)
            printf("serve_rag_ttft_p50_off_over_on %.2f x\n", p50[0] / p50[1]);
        if (p99[1] > 0)
            printf("serve_rag_ttft_p99_off_over_on %.2f x\n", p99[0] / p99[1]);
        for (int i = 0; i < NREQ; i++)
            free(jobs[i].body);
        buf_release(&sys);
        for (int g = 0; g < GROUPS; g++)
            buf_release(&ev[g]);
    }
    tok_free(tk);
    lm_model_free(m);
    if (made) {
        unlink(path);
        rmdir(tmpl);
    }
    return 0;
}
