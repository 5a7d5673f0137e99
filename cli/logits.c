/* logits.c — `aisle logits`: the last position's logits for a list of token
 * ids evaluated from an empty cache (the conformance check against other
 * engines, e.g. llama.cpp on the same GGUF file). */
#include "cli.h"
#include "cmds.h"
#include "engine.h"

#include "core/error.h"
#include "model/model.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: aisle logits --model FILE --ids ID,ID,... [--threads N] [--kv-f16]\n"
    "\n"
    "Evaluate the token ids from an empty KV cache in one batch and print the\n"
    "logits of the last position: one 'id value' line per vocabulary entry.\n"
    "\n"
    "  --model FILE   a Llama-family GGUF model\n"
    "  --ids LIST     comma-separated token ids (at least one)\n"
    "  --threads N    compute threads (default: all CPUs)\n"
    "  --kv-f16       keep K/V in F16 (default F32)\n"
    "  -h, --help     this help\n";

int cmd_logits(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"ids", required_argument, NULL, 'i'},
        {"threads", required_argument, NULL, 't'}, {"kv-f16", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *ids = NULL;
    int threads = 0, f16 = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': path = optarg; break;
        case 'i': ids = optarg; break;
        case 't': threads = (int)eng_long("logits", "--threads", optarg, 1, 1024); break;
        case 'f': f16 = 1; break;
        default: cli_usage_error("logits", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!path || !ids)
        cli_usage_error("logits", "--model and --ids are required");
    if (optind < argc)
        cli_usage_error("logits", "unexpected argument '%s'", argv[optind]);

    struct lm_model *m = eng_load(path, threads, 512);
    int V = lm_model_n_vocab(m);
    /* The list: at most one id per two characters. */
    size_t cap = strlen(ids) / 2 + 1;
    struct lm_batch b;
    if (lm_batch_init(&b, (int)cap))
        cli_die("out of memory");
    char *list = strdup(ids), *save = NULL;
    if (!list)
        cli_die("out of memory");
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (lm_batch_add(&b, 0, b.n, (int32_t)eng_long("logits", "--ids", tok, 0, V - 1), 0))
            cli_die("too many ids");
    free(list);
    if (b.n == 0)
        cli_usage_error("logits", "--ids: no ids");
    b.e[b.n - 1].want_logits = 1;

    struct lm_kv *kv = eng_kv(m, b.n, 1, f16);
    int seq;
    if (lm_kv_seq_new(kv, &seq))
        cli_die("no sequence slot");
    float *logits = malloc((size_t)V * sizeof(float));
    if (!logits)
        cli_die("out of memory");
    int rc = lm_decode(m, kv, &b, logits);
    if (rc)
        cli_die("decode: %s: %s", aisle_strerror(rc), lm_model_errmsg(m));
    for (int i = 0; i < V; i++)
        printf("%d %.9g\n", i, logits[i]);
    if (fflush(stdout) || ferror(stdout))
        cli_die("write error");
    free(logits);
    lm_batch_release(&b);
    lm_kv_free(kv);
    lm_model_free(m);
    return 0;
}
