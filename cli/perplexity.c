/* perplexity.c — `aisle perplexity`: the model's perplexity on a text file,
 * over non-overlapping windows each evaluated from an empty cache. */
#include "cli.h"
#include "cmds.h"
#include "engine.h"

#include "core/error.h"
#include "model/model.h"
#include "tok/tok.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
    "usage: aisle perplexity --model FILE --ctx N [--threads N] [--kv-f16] TEXTFILE\n"
    "\n"
    "Tokenize TEXTFILE without BOS, cut the tokens into non-overlapping windows\n"
    "of N (a shorter tail is dropped), evaluate each window from an empty cache\n"
    "and score every token but the window's first. Prints 'ppl VALUE' on stdout\n"
    "and the counts on stderr.\n"
    "\n"
    "  --model FILE   a Llama-family GGUF model with its tokenizer\n"
    "  --ctx N        window length in tokens (at least 2)\n"
    "  --threads N    compute threads (default: all CPUs)\n"
    "  --kv-f16       keep K/V in F16 (default F32)\n"
    "  -h, --help     this help\n";

#define MAX_TEXT (1L << 30) /* bytes of text read */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        cli_die("%s: cannot open", path);
    struct stat st;
    if (fstat(fileno(f), &st) || st.st_size > MAX_TEXT)
        cli_die("%s: unreadable or larger than %ld bytes", path, MAX_TEXT);
    char *p = malloc((size_t)st.st_size + 1);
    if (!p)
        cli_die("out of memory");
    size_t n = fread(p, 1, (size_t)st.st_size, f);
    if (ferror(f))
        cli_die("%s: read error", path);
    fclose(f);
    p[n] = '\0';
    *len = n;
    return p;
}

int cmd_perplexity(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"ctx", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'}, {"kv-f16", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int threads = 0, f16 = 0, ctx = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': path = optarg; break;
        case 'c': ctx = (int)eng_long("perplexity", "--ctx", optarg, 2, 1 << 16); break;
        case 't': threads = (int)eng_long("perplexity", "--threads", optarg, 1, 1024); break;
        case 'f': f16 = 1; break;
        default: cli_usage_error("perplexity", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!path || !ctx)
        cli_usage_error("perplexity", "--model and --ctx are required");
    if (optind + 1 != argc)
        cli_usage_error("perplexity", "expected one TEXTFILE");

    size_t tlen;
    char *text = read_file(argv[optind], &tlen);
    struct lm_model *m = eng_load(path, threads, 512);
    int V = lm_model_n_vocab(m);
    struct tok *tk = eng_tokenizer(m, path);
    struct tok_ids ids;
    tok_ids_init(&ids, 0);
    if (tok_encode(tk, NULL, text, tlen, 0, &ids))
        cli_die("cannot tokenize %s", argv[optind]);
    free(text);
    size_t nwin = ids.len / (size_t)ctx;
    if (nwin == 0)
        cli_die("%s has %zu tokens, fewer than one window of %d", argv[optind], ids.len, ctx);

    struct lm_kv *kv = eng_kv(m, ctx, 1, f16);
    struct lm_batch b;
    /* Logits of positions 0..ctx-2 score tokens 1..ctx-1. A window goes to
     * lm_decode in pieces of at most PIECE entries (the sequence carries on
     * from one to the next), so the logits buffer stays PIECE x V. */
    enum { PIECE = 512 };
    float *logits = malloc((size_t)PIECE * V * sizeof(float));
    if (lm_batch_init(&b, PIECE) || !logits)
        cli_die("out of memory for %d x %d logits", PIECE, V);
    double nll = 0, t0 = cli_now();
    size_t scored = 0;
    for (size_t w = 0; w < nwin; w++) {
        const int32_t *t = ids.ids + w * (size_t)ctx;
        int seq;
        lm_kv_seq_new(kv, &seq);
        for (int i0 = 0; i0 < ctx; i0 += PIECE) {
            int n = ctx - i0 < PIECE ? ctx - i0 : PIECE;
            b.n = 0;
            for (int i = i0; i < i0 + n; i++)
                lm_batch_add(&b, seq, i, t[i], i < ctx - 1);
            int rc = lm_decode(m, kv, &b, logits);
            if (rc)
                cli_die("decode: %s: %s", aisle_strerror(rc), lm_model_errmsg(m));
            for (int i = i0; i < i0 + n && i < ctx - 1; i++) {
                const float *l = logits + (size_t)(i - i0) * V;
                double mx = l[0], z = 0;
                for (int v = 1; v < V; v++)
                    mx = l[v] > mx ? l[v] : mx;
                for (int v = 0; v < V; v++)
                    z += exp(l[v] - mx);
                nll += log(z) + mx - l[t[i + 1]];
                scored++;
            }
        }
        lm_kv_seq_free(kv, seq);
        fprintf(stderr, "\rwindow %zu/%zu  ppl %.4f", w + 1, nwin, exp(nll / (double)scored));
    }
    double dt = cli_now() - t0;
    fprintf(stderr, "\n%zu tokens, %zu windows of %d, %zu scored, %.1f tok/s\n", ids.len, nwin, ctx, scored,
            (double)(nwin * (size_t)ctx) / dt);
    printf("ppl %.4f\n", exp(nll / (double)scored));
    free(logits);
    lm_batch_release(&b);
    tok_ids_release(&ids);
    lm_kv_free(kv);
    tok_free(tk);
    lm_model_free(m);
    return 0;
}
