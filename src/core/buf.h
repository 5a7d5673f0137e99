/*
 * buf.h — a growable byte buffer with a hard cap (git's strbuf, curl's dynbuf).
 *
 * The buffer owns `data`; it is always NUL-terminated when non-NULL so it can be
 * used as a C string, but may also hold arbitrary bytes (len excludes the NUL).
 * Buffers filled from untrusted input must be given a cap: growing past it fails
 * with AISLE_ETOOBIG and leaves the contents as they were.
 *
 * THREAD SAFETY: none; a buf belongs to one thread at a time.
 */
#ifndef AISLE_CORE_BUF_H
#define AISLE_CORE_BUF_H

#include <stddef.h>
#include <stdarg.h>

struct buf {
    char *data;  /* owned; NULL until the first append */
    size_t len;  /* bytes used, excluding the terminating NUL */
    size_t cap;  /* bytes allocated */
    size_t max;  /* largest len allowed; 0 means no cap */
};

/* Initialise an empty buffer on caller storage; max 0 = uncapped. */
void buf_init(struct buf *b, size_t max);
/* Free the storage; the buffer is empty and reusable afterwards. */
void buf_release(struct buf *b);
/* Drop the contents, keep the allocation. */
void buf_reset(struct buf *b);
/* Make room for `extra` more bytes. 0, AISLE_ENOMEM or AISLE_ETOOBIG. */
int buf_grow(struct buf *b, size_t extra);
/* Append bytes / a C string / one byte / formatted text. Same returns as buf_grow. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Hand the data to the caller (who frees it) and reset the buffer. Never NULL
 * unless allocation of an empty string fails. */
char *buf_detach(struct buf *b);

#endif
