/* serve.c — `aisle serve`: the OpenAI-compatible HTTP server over one model,
 * with the continuous-batching scheduler (docs/SERVER.md), and with --db the
 * shopper chat (POST /api/chat) and its web page (GET /; docs/CHAT.md). */
#include "cli.h"
#include "cmds.h"
#include "engine.h"

#include "assist/chat.h"
#include "core/error.h"
#include "server/http.h"
#include "server/sched.h"
#include "store/answers.h"
#include "tok/tok.h"

#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: aisle serve --model FILE [--db STORE] [options]\n"
    "\n"
    "Serve the model over HTTP with OpenAI's API: POST /v1/chat/completions and\n"
    "/v1/completions (streaming with \"stream\": true), GET /v1/models, /health and\n"
    "/metrics (Prometheus). With --db, also the shopper chat: POST /api/chat\n"
    "(evidence from the store, the model's answer as events with product cards\n"
    "read from the store; docs/CHAT.md) and the web chat at GET /. Requests are\n"
    "batched continuously: new ones join the running batch after every token.\n"
    "Stops on SIGINT or SIGTERM.\n"
    "\n"
    "  --model FILE          a Llama-family GGUF model with its tokenizer\n"
    "  --db DB               the store: enables /api/chat and the web chat\n"
    "  --web DIR             the web chat's files (default: $AISLE_ROOT/web, else\n"
    "                        web/ or share/aisle/web/ beside the program's directory)\n"
    "  --router MODEL        the source router (default: $AISLE_ROUTER, else\n"
    "                        models/router.bin when present, else keywords)\n"
    "  --workers N           retrieval threads for /api/chat (default 2)\n"
    "  --feedback-db FILE    where answers and votes are stored (default: the store's\n"
    "                        name with -answers.db, e.g. var/demo-answers.db)\n"
    "  --no-store-answers    keep nothing: no answer_id in done, POST /api/feedback 503\n"
    "  --answers-retention-days N  delete stored answers and their votes after N\n"
    "                        days (checked at start and hourly; default: keep)\n"
    "  --shop-url URL        live offers, delivery and orders from the merchant's HTTP\n"
    "                        API (docs/STORE_API.md); default: the store's own tables\n"
    "  --shop-key KEY        the API's bearer key\n"
    "  --chat-tokens N       longest /api/chat answer in tokens (default 256)\n"
    "  --chat-temp T         /api/chat sampling temperature; 0 = greedy (default 0.3)\n"
    "  --chat-top-p P        /api/chat nucleus (default 0.9)\n"
    "  --chat-repeat-penalty R  /api/chat penalty on tokens already in the answer\n"
    "                        (last 64; default 1.1, 1 = off)\n"
    "  --evidence-tokens N   evidence budget (default: a third of the context, at most 1024)\n"
    "  --name NAME           the model id clients name (default: FILE's base name)\n"
    "  --host ADDR           address to listen on (default 127.0.0.1)\n"
    "  --port N              TCP port (default 8080; 0 = any free port)\n"
    "  --parallel N          sequences decoding at once (default 16)\n"
    "  --kv-blocks N         KV cache blocks of 16 tokens (default: N x context)\n"
    "  --ctx N               positions per sequence (default: the model's, at most 4096)\n"
    "  --step-tokens N       tokens per scheduler step, decode + prefill (default 256)\n"
    "  --queue N             waiting requests before 429 (default 256)\n"
    "  --policy P            continuous (default), static or serial\n"
    "  --no-prefix-cache     recompute shared prompt prefixes every time\n"
    "  --max-tokens N        max_tokens when a request gives none (default 512)\n"
    "  --max-body BYTES      largest request body (default 1048576)\n"
    "  --max-conns N         open connections at most (default 2048)\n"
    "  --conn-timeout S      idle connections close after S seconds (default 15)\n"
    "  --read-timeout S      a request must arrive within S seconds (default 10)\n"
    "  --request-timeout S   generation time limit per request (default 300)\n"
    "  --threads N           compute threads (default: all CPUs)\n"
    "  --http-threads N      HTTP threads (default 2)\n"
    "  --kv-f16              keep K/V in F16 (default F32)\n"
    "  -h, --help            this help\n";

/* The web chat's directory: $AISLE_ROOT/web, else web/ or share/aisle/web/
 * beside the directory of the program (build/aisle, /usr/bin/aisle). */
static const char *find_web(char *out, size_t cap)
{
    const char *root = getenv("AISLE_ROOT");
    if (root) {
        snprintf(out, cap, "%s/web", root);
        char f[4200];
        snprintf(f, sizeof(f), "%s/index.html", out);
        return access(f, R_OK) == 0 ? out : NULL;
    }
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *dir = dirname(exe);
    static const char *const rel[] = {"../web", "../share/aisle/web"};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        char f[4200];
        snprintf(out, cap, "%s/%s", dir, rel[i]);
        snprintf(f, sizeof(f), "%s/index.html", out);
        if (access(f, R_OK) == 0)
            return out;
    }
    return NULL;
}

int cmd_serve(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    enum { O_MODEL = 256, O_DB, O_NAME, O_HOST, O_PORT, O_PAR, O_KVB, O_CTX, O_STEP, O_QUEUE, O_POLICY, O_NOPC,
           O_MAXTOK, O_BODY, O_CONNS, O_CTO, O_RTO, O_REQTO, O_THREADS, O_HTHREADS, O_KVF16, O_WEB, O_ROUTER,
           O_WORKERS, O_CHATTOK, O_EVTOK, O_SHOPURL, O_SHOPKEY, O_FBDB, O_NOSTORE,
           O_CTEMP, O_CTOPP, O_CREP, O_RETAIN };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, O_MODEL},     {"db", required_argument, NULL, O_DB},
        {"name", required_argument, NULL, O_NAME},       {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},       {"parallel", required_argument, NULL, O_PAR},
        {"kv-blocks", required_argument, NULL, O_KVB},   {"ctx", required_argument, NULL, O_CTX},
        {"step-tokens", required_argument, NULL, O_STEP}, {"queue", required_argument, NULL, O_QUEUE},
        {"policy", required_argument, NULL, O_POLICY},   {"no-prefix-cache", no_argument, NULL, O_NOPC},
        {"max-tokens", required_argument, NULL, O_MAXTOK}, {"max-body", required_argument, NULL, O_BODY},
        {"max-conns", required_argument, NULL, O_CONNS}, {"conn-timeout", required_argument, NULL, O_CTO},
        {"read-timeout", required_argument, NULL, O_RTO}, {"request-timeout", required_argument, NULL, O_REQTO},
        {"threads", required_argument, NULL, O_THREADS}, {"http-threads", required_argument, NULL, O_HTHREADS},
        {"kv-f16", no_argument, NULL, O_KVF16},          {"web", required_argument, NULL, O_WEB},
        {"router", required_argument, NULL, O_ROUTER},   {"workers", required_argument, NULL, O_WORKERS},
        {"chat-tokens", required_argument, NULL, O_CHATTOK}, {"evidence-tokens", required_argument, NULL, O_EVTOK},
        {"shop-url", required_argument, NULL, O_SHOPURL}, {"shop-key", required_argument, NULL, O_SHOPKEY},
        {"feedback-db", required_argument, NULL, O_FBDB}, {"no-store-answers", no_argument, NULL, O_NOSTORE},
        {"chat-temp", required_argument, NULL, O_CTEMP}, {"chat-top-p", required_argument, NULL, O_CTOPP},
        {"chat-repeat-penalty", required_argument, NULL, O_CREP},
        {"answers-retention-days", required_argument, NULL, O_RETAIN},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *db = NULL, *name = NULL, *web = NULL, *router = getenv("AISLE_ROUTER");
    const char *fbdb = NULL;
    int retain_days = 0;
    int workers = 2, no_store = 0;
    struct shop_http_opts shop = {0};
    long ev_tokens = 0;
    struct sched_opts so = {.policy = SCHED_CONTINUOUS, .prefix_cache = 1};
    struct srv_opts ho = {.port = 8080};
    int threads = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: path = optarg; break;
        case O_DB: db = optarg; break;
        case O_NAME: name = optarg; break;
        case O_HOST: ho.host = optarg; break;
        case O_PORT: ho.port = (int)eng_long("serve", "--port", optarg, 0, 65535); break;
        case O_PAR: so.max_running = (int)eng_long("serve", "--parallel", optarg, 1, 4096); break;
        case O_KVB: so.kv_blocks = (int)eng_long("serve", "--kv-blocks", optarg, 1, 1 << 24); break;
        case O_CTX: so.max_ctx = (int)eng_long("serve", "--ctx", optarg, 2, 1 << 20); break;
        case O_STEP: so.step_tokens = (int)eng_long("serve", "--step-tokens", optarg, 1, 1 << 16); break;
        case O_QUEUE: so.queue_max = (int)eng_long("serve", "--queue", optarg, 1, 1 << 20); break;
        case O_POLICY:
            if (sched_policy_parse(optarg, &so.policy))
                cli_usage_error("serve", "--policy: expected continuous, static or serial, not '%s'", optarg);
            break;
        case O_NOPC: so.prefix_cache = 0; break;
        case O_MAXTOK: ho.default_max_tokens = (int)eng_long("serve", "--max-tokens", optarg, 1, 1 << 20); break;
        case O_BODY: ho.max_body = (size_t)eng_long("serve", "--max-body", optarg, 64, 1L << 30); break;
        case O_CONNS: ho.max_conns = (int)eng_long("serve", "--max-conns", optarg, 1, 1 << 20); break;
        case O_CTO: ho.conn_timeout_s = (int)eng_long("serve", "--conn-timeout", optarg, 1, 86400); break;
        case O_RTO: ho.read_timeout_s = eng_double("serve", "--read-timeout", optarg, 0.01, 86400); break;
        case O_REQTO: ho.request_timeout_s = eng_double("serve", "--request-timeout", optarg, 0.01, 86400); break;
        case O_THREADS: threads = (int)eng_long("serve", "--threads", optarg, 1, 1024); break;
        case O_HTHREADS: ho.threads = (int)eng_long("serve", "--http-threads", optarg, 1, 64); break;
        case O_KVF16: so.kv_f16 = 1; break;
        case O_WEB: web = optarg; break;
        case O_ROUTER: router = optarg; break;
        case O_WORKERS: workers = (int)eng_long("serve", "--workers", optarg, 1, 64); break;
        case O_CHATTOK: ho.chat_max_tokens = (int)eng_long("serve", "--chat-tokens", optarg, 1, 1 << 20); break;
        case O_CTEMP: { /* 0 means greedy here; in srv_opts a negative value does */
            double t = eng_double("serve", "--chat-temp", optarg, 0, 10);
            ho.chat_temperature = t > 0 ? (float)t : -1.0f;
            break;
        }
        case O_CTOPP: ho.chat_top_p = (float)eng_double("serve", "--chat-top-p", optarg, 0.01, 1); break;
        case O_CREP: ho.chat_repeat_penalty = (float)eng_double("serve", "--chat-repeat-penalty", optarg, 1, 10); break;
        case O_EVTOK: ev_tokens = eng_long("serve", "--evidence-tokens", optarg, 16, 1 << 20); break;
        case O_SHOPURL: shop.base_url = optarg; break;
        case O_SHOPKEY: shop.api_key = optarg; break;
        case O_FBDB: fbdb = optarg; break;
        case O_RETAIN: retain_days = (int)eng_long("serve", "--answers-retention-days", optarg, 1, 100000); break;
        case O_NOSTORE: no_store = 1; break;
        default: cli_usage_error("serve", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!path)
        cli_usage_error("serve", "--model is required");
    if (optind < argc)
        cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (db && access(db, R_OK) != 0)
        cli_die("%s: cannot read the store", db);
    char webbuf[4096];
    if (db && !web && !(web = find_web(webbuf, sizeof(webbuf))))
        cli_die("cannot find the web chat's files (web/index.html): give --web DIR or set AISLE_ROOT");
    if (!router && access("models/router.bin", R_OK) == 0)
        router = "models/router.bin";
    int par = so.max_running > 0 ? so.max_running : 16;
    if (so.step_tokens && so.step_tokens < par)
        cli_usage_error("serve", "--step-tokens (%d) must be at least --parallel (%d)", so.step_tokens, par);
    if (!so.step_tokens && par > 256)
        so.step_tokens = par;

    /* Many idle connections each hold a descriptor: raise the soft limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Signals go to this thread's sigwait only: block them before threads start. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct lm_model *m = eng_load(path, threads, so.step_tokens > 0 ? so.step_tokens : 256);
    struct tok *tk = eng_tokenizer(m, path);
    char err[512];
    struct sched *s;
    if (sched_new(&s, m, &so, err, sizeof(err)))
        cli_die("scheduler: %s", err);
    char *pcopy = strdup(path);
    if (!pcopy)
        cli_die("out of memory");
    char *base = basename(pcopy);
    char *dot = strrchr(base, '.');
    if (dot && !strcmp(dot, ".gguf"))
        *dot = '\0';
    ho.model_name = name ? name : base;
    struct chat_pool *pool = NULL;
    if (db) {
        long ctx = sched_max_ctx(s);
        struct chat_pool_opts co = {.db = db, .router = router, .workers = workers, .tk = tk,
                                    .evidence_budget = (size_t)(ev_tokens ? ev_tokens
                                                                           : ctx / 3 < 1024 ? ctx / 3 : 1024),
                                    .shop_http = shop.base_url ? &shop : NULL};
        if (chat_pool_new(&pool, &co, err, sizeof(err)))
            cli_die("%s", err);
        ho.chat = pool;
        ho.web_dir = web;
    }
    struct answers *answers = NULL;
    char fbbuf[4096], *meta = NULL;
    if (db && !no_store) {
        if (!fbdb) { /* var/demo.db -> var/demo-answers.db */
            size_t n = strlen(db);
            if (n > 3 && !strcmp(db + n - 3, ".db"))
                n -= 3;
            if ((size_t)snprintf(fbbuf, sizeof(fbbuf), "%.*s-answers.db", (int)n, db) >= sizeof(fbbuf))
                cli_die("%s: path too long", db);
            fbdb = fbbuf;
        }
        if (answers_open(&answers, fbdb, 1, 0, err, sizeof(err)))
            cli_die("%s", err);
        if (retain_days)
            answers_set_retention(answers, retain_days);
        struct stat stm;
        json_t *mo = json_pack("{s:s, s:I, s:I, s:i, s:i}", "file", path, "bytes",
                               (json_int_t)(stat(path, &stm) == 0 ? stm.st_size : -1), "mtime",
                               (json_int_t)(stat(path, &stm) == 0 ? stm.st_mtime : -1), "ctx", (int)sched_max_ctx(s),
                               "vocab", (int)tok_n_vocab(tk));
        meta = mo ? json_dumps(mo, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(mo);
        ho.answers = answers;
        ho.model_meta = meta;
    }
    struct srv *v;
    if (srv_start(&v, s, tk, &ho, err, sizeof(err)))
        cli_die("%s", err);
    fprintf(stderr, "aisle serve: model '%s' on http://%s:%d (policy %s, parallel %d, prefix cache %s)\n",
            ho.model_name, ho.host ? ho.host : "127.0.0.1", srv_port(v), sched_policy_name(so.policy), par,
            so.prefix_cache ? "on" : "off");
    if (db)
        fprintf(stderr, "aisle serve: shopper chat over %s (router %s, %d retrieval workers): open http://%s:%d/\n",
                db, router ? router : "keywords", workers, ho.host ? ho.host : "127.0.0.1", srv_port(v));
    if (answers)
        fprintf(stderr, "aisle serve: answers and votes stored in %s, %s (--no-store-answers: off)\n", fbdb,
                retain_days ? "deleted after --answers-retention-days" : "kept until deleted");
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "aisle serve: signal %d, stopping\n", sig);
    srv_stop(v);
    sched_free(s);
    chat_pool_free(pool);
    answers_close(answers);
    free(meta);
    free(pcopy);
    tok_free(tk);
    lm_model_free(m);
    return 0;
}
