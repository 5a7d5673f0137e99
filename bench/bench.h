/*
 * bench.h — small helpers shared by the benchmark programs (each bench program is
 * one program; this header holds what more than one of them prints).
 */
#ifndef AISLE_BENCH_BENCH_H
#define AISLE_BENCH_BENCH_H

#include <stdio.h>
#include <string.h>

/* The CPU's "model name" from /proc/cpuinfo into out ("?" when unknown). */
static inline void bench_cpu_model(char *out, size_t n)
{
    char line[512];
    snprintf(out, n, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            snprintf(out, n, "%.200s", p ? p + 2 : line);
            out[strcspn(out, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
}

#endif
