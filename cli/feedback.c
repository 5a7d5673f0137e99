/* feedback.c — `aisle feedback`: the shoppers' votes on chat answers (the
 * answers database that aisle serve writes, docs/CHAT.md "Feedback") as
 * JSON Lines for preference tuning (KTO rows, DPO pairs), and their counts. */
#include "cli.h"
#include "cmds.h"

#include "store/answers.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: aisle feedback export --db FILE [--format kto|dpo] [--out FILE]\n"
    "       aisle feedback stats  --db FILE\n"
    "\n"
    "Read the answers database that aisle serve writes (--feedback-db; by default\n"
    "the store's name with -answers.db): every chat answer with its exact prompt\n"
    "and raw output, and the shoppers' thumbs up/down on them.\n"
    "\n"
    "export writes JSON Lines for preference tuning:\n"
    "  kto (default)  one row per voted answer: {\"prompt\", \"completion\",\n"
    "                 \"label\": true|false, \"answer_id\", \"created_at\", \"model\"}\n"
    "  dpo            for each prompt text (same conversation, question and\n"
    "                 evidence) with both an up and a down answer, every up/down\n"
    "                 pair: {\"prompt\", \"chosen\", \"rejected\", \"chosen_id\",\n"
    "                 \"rejected_id\", \"model\"}\n"
    "stats prints one JSON object: answers, voted, up, down, up_share, by_model.\n"
    "\n"
    "  --db FILE       the answers database (opened read-only)\n"
    "  --format F      kto or dpo (export; default kto)\n"
    "  --out FILE      write there instead of standard output (export)\n"
    "  -h, --help      this help\n"
    "\n"
    "Exit status: 0 done, 1 the database could not be read or the output written,\n"
    "2 usage.\n";

int cmd_feedback(int argc, char **argv)
{
    if (cli_wants_help(argc, argv) || argc < 2) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    int is_export = !strcmp(what, "export");
    if (!is_export && strcmp(what, "stats"))
        cli_usage_error("feedback", "unknown subcommand '%s' (export or stats)", what);
    static const struct option longopts[] = {{"db", required_argument, NULL, 'd'},
                                             {"format", required_argument, NULL, 'f'},
                                             {"out", required_argument, NULL, 'o'},
                                             {NULL, 0, NULL, 0}};
    const char *db = NULL, *out = NULL, *format = "kto";
    int c;
    opterr = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'f': format = optarg; break;
        case 'o': out = optarg; break;
        default: cli_usage_error("feedback", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        cli_usage_error("feedback", "unexpected argument '%s'", argv[optind]);
    if (!db)
        cli_usage_error("feedback", "--db is required");
    if (strcmp(format, "kto") && strcmp(format, "dpo"))
        cli_usage_error("feedback", "--format: expected kto or dpo, not '%s'", format);
    if (!is_export && (out || strcmp(format, "kto")))
        cli_usage_error("feedback", "--format and --out are for export");
    char err[512];
    struct answers *a;
    if (answers_open(&a, db, 0, 1, err, sizeof(err)))
        cli_die("%s", err);
    if (!is_export) {
        char *s = answers_stats(a, err, sizeof(err));
        answers_close(a);
        if (!s)
            cli_die("%s", err);
        puts(s);
        free(s);
        return 0;
    }
    FILE *f = out ? fopen(out, "w") : stdout;
    if (!f) {
        answers_close(a);
        cli_die("%s: cannot write", out);
    }
    long n = 0;
    int rc = answers_export(a, !strcmp(format, "dpo"), f, &n, err, sizeof(err));
    answers_close(a);
    if (out && fclose(f) && !rc) {
        snprintf(err, sizeof(err), "%s: cannot write", out);
        rc = -1;
    }
    if (rc)
        cli_die("%s", err);
    fprintf(stderr, "aisle feedback: %ld %s rows%s%s\n", n, format, out ? " to " : "", out ? out : "");
    return 0;
}
