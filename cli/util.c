/* util.c — fatal errors, usage errors and the terminal progress line; see cli.h. */
#include "cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void cli_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("aisle: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "aisle %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'aisle %s --help'.\n", cmd);
    va_end(ap);
    exit(2);
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            return 0;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
    }
    return 0;
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_init(struct cli_progress *p, const char *label)
{
    p->label = label;
    p->start = p->last = cli_now();
    p->tty = isatty(STDERR_FILENO);
    p->drawn = 0;
}

/* 1234567 -> "1,234,567" */
static void group(char *out, size_t n, uint64_t v)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < n; i++) {
        out[o++] = tmp[i];
        int rest = len - i - 1;
        if (rest > 0 && rest % 3 == 0)
            out[o++] = ',';
    }
    out[o] = '\0';
}

void cli_progress_update(struct cli_progress *p, uint64_t records, uint64_t done, uint64_t total)
{
    if (!p->tty)
        return;
    double now = cli_now();
    if (p->drawn && now - p->last < 0.2)
        return;
    p->last = now;
    p->drawn = 1;
    double el = now - p->start;
    char n[32], rate[32];
    group(n, sizeof(n), records);
    group(rate, sizeof(rate), el > 0 ? (uint64_t)(records / el) : 0);
    fprintf(stderr, "\r\033[K%s: %s records  %s/s", p->label, n, rate);
    if (total > 0 && done > 0 && done <= total) {
        double frac = (double)done / (double)total;
        double eta = el / frac - el;
        fprintf(stderr, "  %3d%% ETA %d:%02d", (int)(frac * 100), (int)eta / 60, (int)eta % 60);
    }
    fflush(stderr);
}

void cli_progress_end(struct cli_progress *p)
{
    if (p->tty && p->drawn)
        fprintf(stderr, "\r\033[K");
    p->drawn = 0;
}

void cli_status_init(struct cli_status *st)
{
    st->last = cli_now();
    st->tty = isatty(STDERR_FILENO);
    st->drawn = 0;
}

void cli_status(struct cli_status *st, int final, const char *fmt, ...)
{
    double now = cli_now();
    if (!final && now - st->last < (st->tty ? 0.5 : 10.0))
        return;
    st->last = now;
    va_list ap;
    va_start(ap, fmt);
    if (st->tty)
        fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (!st->tty)
        fputc('\n', stderr);
    st->drawn = 1;
    fflush(stderr);
}

void cli_status_end(struct cli_status *st)
{
    if (st->tty && st->drawn)
        fputc('\n', stderr);
    st->drawn = 0;
}
