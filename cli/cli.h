/*
 * cli.h — what the subcommand files share: the command table entry type,
 * fatal-error helpers and terminal progress.
 *
 * cli/ is the only place with main() and exit(). Each subcommand lives in its own
 * file as `int cmd_NAME(int argc, char **argv)`; argv[0] is the subcommand name.
 * A subcommand returns the process exit status: 0 success, 1 failure, 2 usage.
 *
 * THREAD SAFETY: CLI code runs on the main thread.
 */
#ifndef AISLE_CLI_H
#define AISLE_CLI_H

#include <stdint.h>
#include <stdio.h>

struct cli_cmd {
    const char *name;
    const char *summary; /* one line for `aisle help` */
    int (*run)(int argc, char **argv);
};

/* Print "aisle: <msg>\n" to stderr and exit(1). */
void cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Print "aisle CMD: <msg>\nTry 'aisle CMD --help'.\n" and exit(2). */
void cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
/* 1 when argv has -h or --help before a "--". */
int cli_wants_help(int argc, char **argv);

/* A progress line on stderr, redrawn at most every 200 ms, only when stderr is a
 * terminal: "label: 12,345 records  8,100/s  43% ETA 0:12". */
struct cli_progress {
    const char *label;
    double start, last;
    int tty;
    int drawn;
};
void cli_progress_init(struct cli_progress *p, const char *label);
/* done_bytes/total_bytes give the ETA; total 0 means unknown. */
void cli_progress_update(struct cli_progress *p, uint64_t records, uint64_t done_bytes, uint64_t total_bytes);
/* Clear the line (the caller prints its own summary). */
void cli_progress_end(struct cli_progress *p);
double cli_now(void);

/* A status line of a long computation (rate, ETA) on stderr: on a terminal it
 * rewrites itself at most every 0.5 s; into a file or pipe it is printed as a
 * whole line at most every 10 s, so a log gets a readable trace and no
 * carriage returns. final = 1 prints regardless (the last state). */
struct cli_status {
    double last;
    int tty, drawn;
};
void cli_status_init(struct cli_status *st);
void cli_status(struct cli_status *st, int final, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* End the line on a terminal (after the last cli_status). */
void cli_status_end(struct cli_status *st);

#endif
