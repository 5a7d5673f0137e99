/*
 * aisle.c — the `aisle` program: dispatches to one subcommand per file in cli/.
 *
 * `aisle help` lists the commands, `aisle help CMD` and `aisle CMD --help` show
 * one command's usage, `aisle --version` prints the version.
 */
#include "cli.h"
#include "cmds.h"

#include <stdio.h>
#include <string.h>

static const struct cli_cmd commands[] = {
#define X(name, fn, summary) {name, summary, fn},
    AISLE_COMMANDS
#undef X
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    fprintf(out,
            "usage: aisle [--version] [--help] COMMAND [ARGS...]\n"
            "\n"
            "Aisle, a conversational shopping assistant that runs on the store's own machines.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'aisle COMMAND --help' for a command's options.\n");
}

static const struct cli_cmd *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("aisle %s\n", AISLE_VERSION);
        return 0;
    }
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        if (argc >= 3 && strcmp(name, "help") == 0) {
            const struct cli_cmd *c = find(argv[2]);
            if (!c) {
                fprintf(stderr, "aisle: unknown command '%s'\n", argv[2]);
                return 2;
            }
            char *hargv[] = {argv[2], "--help", NULL};
            return c->run(2, hargv);
        }
        usage(stdout);
        return 0;
    }
    const struct cli_cmd *c = find(name);
    if (!c) {
        fprintf(stderr, "aisle: unknown command '%s'\n\n", name);
        usage(stderr);
        return 2;
    }
    return c->run(argc - 1, argv + 1);
}
