/* feedback.c — `aisle feedback`: the shoppers' votes on chat answers (the
 * answers database that aisle serve writes, docs/CHAT.md "Feedback") as
 * JSON Lines for preference tuning (KTO rows, DPO pairs), their counts, and
 * deleting answers (a shopper's conversation, or everything before a time). */
#include "cli.h"
#include "cmds.h"
#include "engine.h"

#include "core/error.h"
#include "store/answers.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: aisle feedback export --db FILE [--format kto|dpo] [--out FILE]\n"
    "       aisle feedback stats  --db FILE\n"
    "       aisle feedback delete --db FILE [--answer ID] [--conversation ID]\n"
    "                             [--before TIME | --older-than DAYS] [--dry-run]\n"
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
    "delete removes the answers that match every criterion given (at least one),\n"
    "with their votes, in one transaction; the deleted bytes are overwritten and\n"
    "the write-ahead log emptied, so no copy stays in the files (a shopper's\n"
    "request to be forgotten, or a retention policy; aisle serve\n"
    "--answers-retention-days does the latter by itself). Safe while the server\n"
    "runs.\n"
    "\n"
    "  --db FILE            the answers database (read-only for export and stats)\n"
    "  --format F           kto or dpo (export; default kto)\n"
    "  --out FILE           write there instead of standard output (export)\n"
    "  --answer ID          delete: this answer (the answer_id of done)\n"
    "  --conversation ID    delete: every answer of this conversation_id\n"
    "  --before TIME        delete: answers created before this UTC time\n"
    "                       (YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.mmm]][Z])\n"
    "  --older-than DAYS    delete: answers older than DAYS days (may be fractional)\n"
    "  --dry-run            delete: count, delete nothing\n"
    "  -h, --help           this help\n"
    "\n"
    "Exit status: 0 done, 1 the database could not be read or written or the\n"
    "output written, 2 usage.\n";

static int feedback_delete(const char *db, const struct answers_filter *f, int dry_run)
{
    char err[512];
    struct answers *a;
    if (access(db, F_OK))
        cli_die("%s: no such answers database", db);
    if (answers_open(&a, db, 0, 0, err, sizeof(err)))
        cli_die("%s", err);
    long n = 0, nv = 0;
    int wal_kept = 0, rc = answers_delete(a, f, dry_run, &n, &nv, &wal_kept, err, sizeof(err));
    answers_close(a);
    if (rc == AISLE_EINVAL)
        cli_usage_error("feedback", "%s", err);
    if (rc)
        cli_die("%s", err);
    printf("%s %ld answers (%ld votes)\n", dry_run ? "would delete" : "deleted", n, nv);
    if (wal_kept)
        fprintf(stderr, "aisle feedback: %s-wal is in use by another connection (the server?): its copies of the "
                        "deleted answers go at its next checkpoint\n", db);
    return 0;
}

int cmd_feedback(int argc, char **argv)
{
    if (cli_wants_help(argc, argv) || argc < 2) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    int is_export = !strcmp(what, "export"), is_delete = !strcmp(what, "delete");
    if (!is_export && !is_delete && strcmp(what, "stats"))
        cli_usage_error("feedback", "unknown subcommand '%s' (export, stats or delete)", what);
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},           {"format", required_argument, NULL, 'f'},
        {"out", required_argument, NULL, 'o'},          {"answer", required_argument, NULL, 'a'},
        {"conversation", required_argument, NULL, 'c'}, {"before", required_argument, NULL, 'b'},
        {"older-than", required_argument, NULL, 'O'},   {"dry-run", no_argument, NULL, 'n'},
        {NULL, 0, NULL, 0}};
    const char *db = NULL, *out = NULL, *format = "kto";
    struct answers_filter flt = {0};
    double older = -1;
    int c, dry_run = 0, del_opts = 0;
    char cutoff[32];
    opterr = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'f': format = optarg; break;
        case 'o': out = optarg; break;
        case 'a': flt.answer_id = optarg, del_opts++; break;
        case 'c': flt.conversation_id = optarg, del_opts++; break;
        case 'b': flt.before = optarg, del_opts++; break;
        case 'O': older = eng_double("feedback", "--older-than", optarg, 0, 1e6), del_opts++; break;
        case 'n': dry_run = 1, del_opts++; break;
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
    if (!is_delete && del_opts)
        cli_usage_error("feedback", "--answer, --conversation, --before, --older-than and --dry-run are for delete");
    if (is_delete) {
        if (flt.before && older >= 0)
            cli_usage_error("feedback", "--before and --older-than: give one");
        if (older >= 0) {
            answers_days_ago(cutoff, older);
            flt.before = cutoff;
        }
        if (!flt.answer_id && !flt.conversation_id && !flt.before)
            cli_usage_error("feedback", "delete needs --answer, --conversation, --before or --older-than");
        return feedback_delete(db, &flt, dry_run);
    }
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
