/*
 * fuzz.h — shared by the fuzz targets in fuzz/<name>_fuzz.c.
 *
 * FUZZ_CHECK(cond, fmt, ...) states an invariant of the code under test: when
 * it does not hold, it names the target, the condition and the detail on stderr
 * and aborts, which libFuzzer and the replay driver (replay.c) both report as a
 * crash with the input that caused it. Targets are programs, not library code,
 * so printing and aborting are theirs to do.
 *
 * THREAD SAFETY: stderr only; targets run one input at a time.
 */
#ifndef AISLE_FUZZ_FUZZ_H
#define AISLE_FUZZ_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                                                                \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s: invariant failed: %s: ", __FILE__, #cond);                                  \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fprintf(stderr, "\n");                                                                           \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

#endif
