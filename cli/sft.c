/* sft.c — `aisle sft build`: instruction-tuning examples from real shopping
 * data in the assistant's prompt format (src/assist/sft_data.h), written as
 * JSON Lines for inspection and SFT shards for `aisle train --sft`. */
#include "cli.h"
#include "cmds.h"

#include "assist/sft_data.h"
#include "core/error.h"
#include "gguf/gguf.h"
#include "tok/tok.h"
#include "train/shard.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
    "usage: aisle sft build --out DIR [--tokenizer TOK.gguf] [--data-dir DIR] [options]\n"
    "\n"
    "Build instruction-tuning (SFT) examples from real shopping data, in exactly\n"
    "the prompt format the assistant serves with (docs/PROMPT.md): rules, evidence\n"
    "passages \"[n] (source, product id) text\", the question, and an answer that\n"
    "cites [n] and writes product markup. Writes DIR/train.jsonl and DIR/dev.jsonl\n"
    "and, with --tokenizer, the shards DIR/train.sft and DIR/dev.sft (token ids and\n"
    "a loss mask on the answer). Train with:\n"
    "\n"
    "  aisle train --init MODEL.gguf --sft DIR/train.sft ...\n"
    "\n"
    "Dev splits go to the dev outputs, test splits are never read; datasets without\n"
    "splits are split by product (--dev-percent). Same data, options and seed give\n"
    "identical files.\n"
    "\n"
    "  --out DIR              output directory (created)\n"
    "  --tokenizer FILE       a GGUF tokenizer or model with the chat tokens\n"
    "                         (aisle tokenizer train); without it only JSONL\n"
    "  --data-dir DIR         the data (default ../shared/data when present, else\n"
    "                         data/; by default a dataset missing there is looked\n"
    "                         for in data/ too); layout below\n"
    "  --datasets A,B,...     build only these (default all found)\n"
    "  --seed N               random seed (default 1)\n"
    "  --distractors N        extra passages per question, 0..8 (default 3)\n"
    "  --negatives PCT        %% of question examples whose evidence lacks the answer,\n"
    "                         answered \"doesn't say\" (default 10)\n"
    "  --max-tokens N         drop longer examples (default 2048)\n"
    "  --max-per-dataset N    cap per dataset and split (default: no cap)\n"
    "  --dev-percent PCT      dev share of products where a dataset has no split (10)\n"
    "  --multi-turn PCT       community Q&A examples with an earlier turn (15)\n"
    "  -h, --help             this help\n"
    "\n"
    "Datasets and the files they read under --data-dir (see docs/PROMPT.md for\n"
    "where to download each and its license):\n";

static void usage(FILE *f)
{
    fputs(usage_text, f);
    for (int d = 0; d < SFT_N_DATASETS; d++)
        fprintf(f, "  %-11s %s\n", sft_dataset_name((enum sft_dataset)d), sft_dataset_files((enum sft_dataset)d));
}

struct prog {
    struct cli_progress bar;
    int d;
};

static void on_progress(void *ud, enum sft_dataset d, uint64_t done, uint64_t total)
{
    struct prog *p = ud;
    if (p->d != (int)d) {
        cli_progress_end(&p->bar);
        cli_progress_init(&p->bar, sft_dataset_name(d));
        p->d = (int)d;
    }
    cli_progress_update(&p->bar, done, done, total);
}

static unsigned long long num(const char *opt, const char *s, unsigned long long max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        cli_usage_error("sft", "%s wants a whole number up to %llu, not '%s'", opt, max, s);
    return v;
}

static int dir_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int build(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},        {"tokenizer", required_argument, 0, 't'},
        {"data-dir", required_argument, 0, 'd'},   {"datasets", required_argument, 0, 'D'},
        {"seed", required_argument, 0, 's'},       {"distractors", required_argument, 0, 'x'},
        {"negatives", required_argument, 0, 'n'},  {"max-tokens", required_argument, 0, 'm'},
        {"max-per-dataset", required_argument, 0, 'c'}, {"dev-percent", required_argument, 0, 'p'}, {"multi-turn", required_argument, 0, 'M'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0},
    };
    const char *out = NULL, *tok_path = NULL, *data_dir = NULL, *only = NULL;
    struct sft_opts o;
    sft_opts_default(&o);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 't': tok_path = optarg; break;
        case 'd': data_dir = optarg; break;
        case 'D': only = optarg; break;
        case 's': o.seed = num("--seed", optarg, ~0ull); break;
        case 'x': o.distractors = (unsigned)num("--distractors", optarg, 8); break;
        case 'n': o.negative_percent = (unsigned)num("--negatives", optarg, 100); break;
        case 'm': o.max_tokens = (size_t)num("--max-tokens", optarg, SHARD_MAX_EXAMPLE); break;
        case 'c': o.max_per_dataset = (size_t)num("--max-per-dataset", optarg, 1ull << 40); break;
        case 'p': o.dev_percent = (unsigned)num("--dev-percent", optarg, 100); break;
        case 'M': o.multi_turn_percent = (unsigned)num("--multi-turn", optarg, 100); break;
        case 'h': usage(stdout); return 0;
        default: cli_usage_error("sft", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        cli_usage_error("sft", "unexpected argument '%s'", argv[optind]);
    if (!out)
        cli_usage_error("sft", "--out is required");
    if (o.max_tokens < 16)
        cli_usage_error("sft", "--max-tokens must be at least 16");
    int default_dir = !data_dir;
    if (!data_dir) {
        data_dir = dir_exists("../shared/data") ? "../shared/data" : "data";
        if (!dir_exists(data_dir))
            cli_die("no data directory: give --data-dir (see 'aisle sft build --help' for the layout)");
    }
    int want[SFT_N_DATASETS];
    for (int d = 0; d < SFT_N_DATASETS; d++)
        want[d] = !only;
    if (only) {
        char *list = strdup(only);
        if (!list)
            cli_die("out of memory");
        for (char *save, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
            int d = sft_dataset_find(name);
            if (d < 0)
                cli_usage_error("sft", "unknown dataset '%s' (see --help)", name);
            want[d] = 1;
        }
        free(list);
    }
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        cli_die("%s: %s", out, strerror(errno));

    char err[2048];
    struct gguf *g = NULL;
    struct tok *t = NULL;
    if (tok_path && (gguf_open(&g, tok_path, err, sizeof err) || tok_load_gguf(&t, g, err, sizeof err)))
        cli_die("%s: %s", tok_path, err);
    struct sft_out *so;
    if (sft_out_open(&so, out, t, &o, err, sizeof err))
        cli_die("%s", err);
    struct prog prog = {.d = -1};
    cli_progress_init(&prog.bar, "sft");
    sft_out_set_progress(so, on_progress, &prog);

    double t0 = cli_now();
    int built = 0, found[SFT_N_DATASETS] = {0};
    for (int d = 0; d < SFT_N_DATASETS; d++) {
        if (!want[d])
            continue;
        int rc = sft_build(so, (enum sft_dataset)d, data_dir, err, sizeof err);
        /* by default, what the shared folder lacks may be in the repository's data/
         * (the demo store's generated offers) */
        if (rc == AISLE_ENOTFOUND && default_dir && strcmp(data_dir, "data") && dir_exists("data"))
            rc = sft_build(so, (enum sft_dataset)d, "data", err, sizeof err);
        if (rc == AISLE_ENOTFOUND) {
            cli_progress_end(&prog.bar);
            fprintf(stderr, "aisle sft: %s: skipped, not found under %s (%s)\n", sft_dataset_name((enum sft_dataset)d),
                    data_dir, sft_dataset_files((enum sft_dataset)d));
            if (only) {
                sft_out_free(so);
                cli_die("%s: %s", sft_dataset_name((enum sft_dataset)d), err);
            }
            continue;
        }
        if (rc) {
            sft_out_free(so);
            cli_die("%s: %s", sft_dataset_name((enum sft_dataset)d), err);
        }
        built++;
        found[d] = 1;
    }
    cli_progress_end(&prog.bar);
    if (!built) {
        sft_out_free(so);
        cli_die("no dataset found under %s", data_dir);
    }
    /* the table before finish frees the stats */
    struct sft_stats tot[2];
    memset(tot, 0, sizeof tot);
    printf("%-11s %8s %8s %7s %7s %7s %8s %7s %11s %11s %8s\n", "dataset", "records", "train", "dev", "neg", "2-turn",
           "rejected", "long", "tokens", "targets", "test-out");
    for (int d = 0; d < SFT_N_DATASETS; d++) {
        if (!found[d])
            continue;
        const struct sft_stats *tr = sft_out_stats(so, (enum sft_dataset)d, SFT_TRAIN);
        const struct sft_stats *dv = sft_out_stats(so, (enum sft_dataset)d, SFT_DEV);
        printf("%-11s %8llu %8llu %7llu %7llu %7llu %8llu %7llu %11llu %11llu %8llu\n",
               sft_dataset_name((enum sft_dataset)d), (unsigned long long)(tr->records + dv->records),
               (unsigned long long)tr->examples, (unsigned long long)dv->examples,
               (unsigned long long)(tr->negatives + dv->negatives), (unsigned long long)(tr->multi_turn + dv->multi_turn),
               (unsigned long long)(tr->rejected + dv->rejected), (unsigned long long)(tr->too_long + dv->too_long),
               (unsigned long long)(tr->tokens + dv->tokens), (unsigned long long)(tr->target_tokens + dv->target_tokens),
               (unsigned long long)(tr->held_out + dv->held_out));
        for (int s = 0; s < 2; s++) {
            const struct sft_stats *x = s ? dv : tr;
            tot[s].examples += x->examples;
            tot[s].tokens += x->tokens;
            tot[s].target_tokens += x->target_tokens;
        }
    }
    if (sft_out_finish(so, err, sizeof err))
        cli_die("%s", err);
    double dt = cli_now() - t0;
    printf("wrote %s: train %llu examples (%llu tokens, %llu in the loss), dev %llu examples (%llu tokens)%s in %.1f s\n",
           out, (unsigned long long)tot[0].examples, (unsigned long long)tot[0].tokens,
           (unsigned long long)tot[0].target_tokens, (unsigned long long)tot[1].examples,
           (unsigned long long)tot[1].tokens, t ? "" : " [JSONL only: no --tokenizer]", dt);
    tok_free(t);
    gguf_close(g);
    return 0;
}

int cmd_sft(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        fputs("\nTraining on the shards is 'aisle train --init MODEL.gguf --sft DIR/train.sft'.\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "build"))
        return build(argc - 1, argv + 1);
    cli_usage_error("sft", "unknown subcommand '%s' (want build; training is 'aisle train --sft')", argv[1]);
}
