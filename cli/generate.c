/* generate.c — `aisle generate`: sample a continuation of a prompt (or of a
 * chat turn with --chat) and stream it to stdout as it is produced. */
#include "cli.h"
#include "cmds.h"
#include "engine.h"

#include "core/buf.h"
#include "core/error.h"
#include "model/model.h"
#include "model/sample.h"
#include "tok/jinja.h"
#include "tok/tok.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: aisle generate --model FILE [options] PROMPT...\n"
    "\n"
    "Continue PROMPT with the model, streaming the text to stdout. Timings go\n"
    "to stderr.\n"
    "\n"
    "  --model FILE          a Llama-family GGUF model with its tokenizer\n"
    "  --chat                PROMPT is a user turn: apply the chat template\n"
    "  --system TEXT         with --chat: a system turn first\n"
    "  -n, --max-tokens N    tokens to generate at most (default 128)\n"
    "  --ctx N               context positions (default: the model's, at most 4096)\n"
    "  --temp T              temperature; 0 = greedy (default 0.8)\n"
    "  --top-k K             (default 40; 0 = off)\n"
    "  --top-p P             (default 0.95; 1 = off)\n"
    "  --min-p P             (default 0.05; 0 = off)\n"
    "  --repeat-penalty R    (default 1 = off)\n"
    "  --repeat-last-n N     history the penalties see (default 64)\n"
    "  --freq-penalty F      (default 0)\n"
    "  --presence-penalty F  (default 0)\n"
    "  --logit-bias ID=B     add B to token ID's logit (repeatable; B may be -inf)\n"
    "  --seed N              sampling seed (default 0)\n"
    "  --stop TEXT           stop before TEXT appears (repeatable)\n"
    "  --threads N           compute threads (default: all CPUs)\n"
    "  --kv-f16              keep K/V in F16 (default F32)\n"
    "  -h, --help            this help\n";

#define MAX_STOPS 16
#define MAX_BIAS 256

static void put(const char *p, size_t n)
{
    if (n && fwrite(p, 1, n, stdout) != n)
        cli_die("write error");
    fflush(stdout);
}

int cmd_generate(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    enum { O_CHAT = 256, O_SYSTEM, O_CTX, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_REP, O_REPN, O_FREQ, O_PRES, O_BIAS,
           O_SEED, O_STOP, O_THREADS, O_KVF16, O_MODEL };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, O_MODEL},
        {"chat", no_argument, NULL, O_CHAT},
        {"system", required_argument, NULL, O_SYSTEM},
        {"max-tokens", required_argument, NULL, 'n'},
        {"ctx", required_argument, NULL, O_CTX},
        {"temp", required_argument, NULL, O_TEMP},
        {"top-k", required_argument, NULL, O_TOPK},
        {"top-p", required_argument, NULL, O_TOPP},
        {"min-p", required_argument, NULL, O_MINP},
        {"repeat-penalty", required_argument, NULL, O_REP},
        {"repeat-last-n", required_argument, NULL, O_REPN},
        {"freq-penalty", required_argument, NULL, O_FREQ},
        {"presence-penalty", required_argument, NULL, O_PRES},
        {"logit-bias", required_argument, NULL, O_BIAS},
        {"seed", required_argument, NULL, O_SEED},
        {"stop", required_argument, NULL, O_STOP},
        {"threads", required_argument, NULL, O_THREADS},
        {"kv-f16", no_argument, NULL, O_KVF16},
        {NULL, 0, NULL, 0},
    };
    struct lm_sample_params sp;
    lm_sample_params_default(&sp);
    const char *path = NULL, *system = NULL, *stops[MAX_STOPS];
    struct lm_logit_bias bias[MAX_BIAS];
    int nstops = 0, nbias = 0, chat = 0, threads = 0, f16 = 0, c;
    long max_tokens = 128, ctx = 0;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+n:", longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: path = optarg; break;
        case O_CHAT: chat = 1; break;
        case O_SYSTEM: system = optarg; break;
        case 'n': max_tokens = eng_long("generate", "--max-tokens", optarg, 0, 1 << 20); break;
        case O_CTX: ctx = eng_long("generate", "--ctx", optarg, 1, 1 << 20); break;
        case O_TEMP: sp.temperature = (float)eng_double("generate", "--temp", optarg, 0, 100); break;
        case O_TOPK: sp.top_k = (int)eng_long("generate", "--top-k", optarg, 0, 1 << 24); break;
        case O_TOPP: sp.top_p = (float)eng_double("generate", "--top-p", optarg, 0, 1); break;
        case O_MINP: sp.min_p = (float)eng_double("generate", "--min-p", optarg, 0, 1); break;
        case O_REP: sp.repeat_penalty = (float)eng_double("generate", "--repeat-penalty", optarg, 0.01, 100); break;
        case O_REPN: sp.penalty_last_n = (int)eng_long("generate", "--repeat-last-n", optarg, 0, 1 << 20); break;
        case O_FREQ: sp.freq_penalty = (float)eng_double("generate", "--freq-penalty", optarg, -100, 100); break;
        case O_PRES: sp.presence_penalty = (float)eng_double("generate", "--presence-penalty", optarg, -100, 100); break;
        case O_SEED: sp.seed = (uint64_t)eng_long("generate", "--seed", optarg, 0, 0x7fffffffL); break;
        case O_THREADS: threads = (int)eng_long("generate", "--threads", optarg, 1, 1024); break;
        case O_KVF16: f16 = 1; break;
        case O_STOP:
            if (nstops == MAX_STOPS || !*optarg)
                cli_usage_error("generate", "--stop: at most %d non-empty strings", MAX_STOPS);
            stops[nstops++] = optarg;
            break;
        case O_BIAS: {
            char *eq = strchr(optarg, '=');
            if (!eq || nbias == MAX_BIAS)
                cli_usage_error("generate", "--logit-bias: expected ID=BIAS (at most %d)", MAX_BIAS);
            *eq = '\0';
            bias[nbias].token = (int32_t)eng_long("generate", "--logit-bias", optarg, 0, 1 << 24);
            bias[nbias].bias = !strcmp(eq + 1, "-inf") ? -INFINITY
                                                       : (float)eng_double("generate", "--logit-bias", eq + 1, -1e6, 1e6);
            nbias++;
            break;
        }
        default: cli_usage_error("generate", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!path)
        cli_usage_error("generate", "--model is required");
    if (optind >= argc)
        cli_usage_error("generate", "a PROMPT is required");
    struct buf text;
    buf_init(&text, 0);
    for (int i = optind; i < argc; i++)
        if ((i > optind && buf_putc(&text, ' ')) || buf_puts(&text, argv[i]))
            cli_die("out of memory");

    struct lm_model *m = eng_load(path, threads, 512);
    int V = lm_model_n_vocab(m);
    struct tok *tk = eng_tokenizer(m, path);
    for (int i = 0; i < nbias; i++)
        if (bias[i].token >= V)
            cli_usage_error("generate", "--logit-bias: token %d is outside the vocabulary (%d)", bias[i].token, V);
    sp.bias = bias;
    sp.n_bias = nbias;

    /* The prompt's tokens. */
    unsigned flags = TOK_ADD_SPECIAL;
    if (chat) {
        struct tok_chat_msg msgs[2];
        size_t nm = 0;
        if (system)
            msgs[nm++] = (struct tok_chat_msg){"system", system};
        msgs[nm++] = (struct tok_chat_msg){"user", text.data};
        struct buf ct;
        buf_init(&ct, 0);
        /* The model's own template (a GGUF's tokenizer.chat_template, Jinja)
         * when it carries one other than Aisle's; Aisle's renders exactly what
         * tok_chat_format writes. */
        const char *tmpl = tok_chat_template_of(tk);
        if (tmpl && strcmp(tmpl, tok_chat_template)) {
            char bos[64] = "", eos[64] = "", err[256];
            size_t bl = 0, el = 0;
            const char *bp = tok_bos(tk) >= 0 ? tok_text(tk, tok_bos(tk), &bl) : NULL;
            const char *ep = tok_eos(tk) >= 0 ? tok_text(tk, tok_eos(tk), &el) : NULL;
            if (bp && bl < sizeof(bos))
                memcpy(bos, bp, bl), bos[bl] = '\0';
            if (ep && el < sizeof(eos))
                memcpy(eos, ep, el), eos[el] = '\0';
            struct tok_jinja_opts jo = {.bos_token = bos, .eos_token = eos, .add_generation_prompt = 1};
            if (tok_jinja_render(tmpl, strlen(tmpl), msgs, nm, &jo, &ct, err, sizeof(err)))
                cli_die("the model's chat template: %s", err);
            /* a template that writes BOS itself must not get a second one */
            if (bos[0] && ct.len >= strlen(bos) && !memcmp(ct.data, bos, strlen(bos)))
                flags &= ~(unsigned)TOK_ADD_SPECIAL;
        } else if (tok_chat_format(msgs, nm, 1, &ct))
            cli_die("chat template failed");
        buf_release(&text);
        text = ct;
        flags |= TOK_PARSE_SPECIAL;
    }
    struct tok_ids ids;
    tok_ids_init(&ids, 0);
    if (tok_encode(tk, NULL, text.data, text.len, flags, &ids))
        cli_die("cannot tokenize the prompt");
    if (ids.len == 0)
        cli_die("the prompt has no tokens");

    if (!ctx) {
        ctx = (long)lm_model_hparams(m)->n_ctx;
        if (ctx <= 0 || ctx > 4096)
            ctx = 4096;
    }
    if ((long)ids.len >= ctx)
        cli_die("the prompt has %zu tokens; the context holds %ld", ids.len, ctx);
    struct lm_kv *kv = eng_kv(m, (int)ctx, 1, f16);
    struct lm_sampler *smp;
    if (lm_sampler_new(&smp, V, &sp))
        cli_die("bad sampling parameters");
    struct lm_stop stop;
    if (lm_stop_init(&stop, stops, (size_t)nstops))
        cli_die("out of memory");
    struct lm_batch b;
    float *logits = malloc((size_t)V * sizeof(float));
    if (lm_batch_init(&b, (int)ids.len) || !logits)
        cli_die("out of memory");
    int seq;
    lm_kv_seq_new(kv, &seq);
    for (size_t i = 0; i < ids.len; i++) {
        lm_batch_add(&b, seq, (int)i, ids.ids[i], i + 1 == ids.len);
        lm_sampler_accept(smp, ids.ids[i]);
    }
    double t0 = cli_now();
    int rc = lm_decode(m, kv, &b, logits);
    if (rc)
        cli_die("decode: %s: %s", aisle_strerror(rc), lm_model_errmsg(m));
    double t1 = cli_now();

    struct tok_stream ts;
    tok_stream_init(&ts, 0);
    struct buf piece;
    buf_init(&piece, 0);
    const char *emit;
    size_t elen;
    long n = 0;
    int stopped = 0;
    while (n < max_tokens && (long)ids.len + n < ctx) {
        int32_t t;
        if ((rc = lm_sampler_sample(smp, logits, &t)))
            cli_die("sampling: %s", aisle_strerror(rc));
        n++;
        if (tok_is_eog(tk, t))
            break;
        lm_sampler_accept(smp, t);
        buf_reset(&piece);
        if (tok_stream_push(tk, &ts, t, &piece))
            cli_die("detokenize failed");
        if ((rc = lm_stop_push(&stop, piece.data ? piece.data : "", piece.len, &emit, &elen)) < 0)
            cli_die("out of memory");
        put(emit, elen);
        if (rc == 1) {
            stopped = 1;
            break;
        }
        b.n = 0;
        lm_batch_add(&b, seq, (int)ids.len + (int)n - 1, t, 1);
        if ((rc = lm_decode(m, kv, &b, logits)))
            cli_die("decode: %s: %s", aisle_strerror(rc), lm_model_errmsg(m));
    }
    if (!stopped) {
        buf_reset(&piece);
        tok_stream_flush(&ts, &piece);
        if (lm_stop_push(&stop, piece.data ? piece.data : "", piece.len, &emit, &elen) >= 0)
            put(emit, elen);
        if (lm_stop_flush(&stop, &emit, &elen) == 0)
            put(emit, elen);
    }
    put("\n", 1);
    double t2 = cli_now();
    fprintf(stderr, "prompt %zu tokens %.1f tok/s, generated %ld tokens %.1f tok/s\n", ids.len,
            (double)ids.len / (t1 - t0), n, n > 0 ? (double)n / (t2 - t1) : 0.0);

    buf_release(&piece);
    buf_release(&text);
    tok_ids_release(&ids);
    lm_stop_release(&stop);
    lm_sampler_free(smp);
    lm_batch_release(&b);
    free(logits);
    lm_kv_free(kv);
    tok_free(tk);
    lm_model_free(m);
    return 0;
}
