/* bench.c — `aisle bench model`: prefill and decode speed of a GGUF model on
 * this machine, single sequence and batches of 1/4/8/16/32 sequences. Prints
 * `name value unit` lines like the programs in bench/. */
#include "cli.h"
#include "cmds.h"
#include "engine.h"

#include "core/error.h"
#include "gguf/quant.h"
#include "model/model.h"
#include "model/speed.h"
#include "tensor/tensor.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
    "usage: aisle bench model --model FILE [--threads N] [--prompt N] [--steps N] [--kv-f16]\n"
    "\n"
    "Measure the engine on a model with random token ids: prefill tokens/s of\n"
    "one prompt, then decode tokens/s of 1, 4, 8, 16 and 32 sequences stepping\n"
    "together (each after a prompt of 16 tokens); best of 3 runs each.\n"
    "Output: 'name value unit' lines.\n"
    "\n"
    "  --model FILE   a Llama-family GGUF model\n"
    "  --threads N    compute threads (default: all CPUs)\n"
    "  --prompt N     prefill prompt length (default 128)\n"
    "  --steps N      timed decode steps per batch size (default 32)\n"
    "  --kv-f16       keep K/V in F16 (default F32)\n"
    "  -h, --help     this help\n";

static int bench_model(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"threads", required_argument, NULL, 't'},
        {"prompt", required_argument, NULL, 'p'}, {"steps", required_argument, NULL, 's'},
        {"kv-f16", no_argument, NULL, 'f'}, {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int threads = 0, prompt = 128, steps = 32, f16 = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': path = optarg; break;
        case 't': threads = (int)eng_long("bench", "--threads", optarg, 1, 1024); break;
        case 'p': prompt = (int)eng_long("bench", "--prompt", optarg, 1, 1 << 16); break;
        case 's': steps = (int)eng_long("bench", "--steps", optarg, 1, 1 << 16); break;
        case 'f': f16 = 1; break;
        default: cli_usage_error("bench", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!path)
        cli_usage_error("bench", "--model is required");
    struct lm_model *m = eng_load(path, threads, 512);
    printf("model_threads %d threads\n", tpool_nthreads(lm_model_pool(m)));
    printf("model_weights_mb %.1f MB\n", (double)lm_model_bytes_per_token(m) / 1e6);
    printf("# weight type %s, kernels %s, KV %s\n", ggml_type_name(lm_model_wtype(m)), tensor_path_name(tensor_path()),
           f16 ? "f16" : "f32");
    double tps;
    int rc = lm_speed_prefill(m, prompt, 2, f16, &tps);
    if (rc)
        cli_die("prefill: %s: %s", aisle_strerror(rc), lm_model_errmsg(m));
    printf("prefill_%d %.1f tok/s\n", prompt, tps);
    static const int batches[] = {1, 4, 8, 16, 32};
    double one = 0;
    for (size_t i = 0; i < sizeof(batches) / sizeof(batches[0]); i++) {
        if ((rc = lm_speed_decode(m, batches[i], 16, steps, 3, f16, &tps)))
            cli_die("decode: %s: %s", aisle_strerror(rc), lm_model_errmsg(m));
        if (i == 0)
            one = tps;
        printf("decode_batch%d %.1f tok/s\n", batches[i], tps);
        if (i)
            printf("decode_batch%d_vs_1 %.2f x\n", batches[i], tps / one);
        fflush(stdout);
    }
    lm_model_free(m);
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "model"))
        cli_usage_error("bench", "unknown benchmark '%s' (known: model)", argv[1]);
    if (cli_wants_help(argc - 1, argv + 1)) {
        fputs(usage_text, stdout);
        return 0;
    }
    return bench_model(argc - 1, argv + 1);
}
