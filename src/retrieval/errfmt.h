/*
 * errfmt.h — the message helper shared by the evidence modules (route.c,
 * resolve.c, evidence.c): format into the caller's err buffer, if it gave one.
 * Library code never prints; detail text goes to the caller (CONVENTIONS.md).
 *
 * THREAD SAFETY: writes only the caller's buffer.
 */
#ifndef AISLE_RETRIEVAL_ERRFMT_H
#define AISLE_RETRIEVAL_ERRFMT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline void retr_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline void retr_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

#endif
