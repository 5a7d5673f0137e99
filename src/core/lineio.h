/*
 * lineio.h — read a file line by line, plain or gzip, with a cap on line length.
 *
 * zlib's gzread reads both gzip and plain files, so callers never care which.
 * Lines are returned without their "\n" (and without a "\r" before it). A line
 * longer than the cap is reported as AISLE_ETOOBIG once and skipped, so a caller
 * that tolerates bad records can go on. A gzip stream that ends early or is
 * corrupt is AISLE_EFORMAT with the zlib message.
 *
 * Ownership: the reader owns its line buffer; a returned line is valid until the
 * next call. Errors leave a message in r->err.
 *
 * THREAD SAFETY: one reader per thread.
 */
#ifndef AISLE_CORE_LINEIO_H
#define AISLE_CORE_LINEIO_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "core/buf.h"

#define LINEIO_MAX_LINE_DEFAULT (1u << 20) /* 1 MiB: far above any real catalog record */

struct lineio {
    gzFile gz;
    int is_gzip;          /* file starts with the gzip magic */
    uint64_t file_size;   /* bytes on disk, for progress */
    uint64_t lineno;      /* 1-based number of the line last returned */
    size_t max_line;
    struct buf line;      /* current line, capped at max_line */
    unsigned char *chunk; /* read-ahead, owned */
    size_t chunk_len, chunk_pos;
    int eof;
    char err[256];
};

/* Open path for reading. max_line 0 selects LINEIO_MAX_LINE_DEFAULT.
 * 0, AISLE_EIO (message in r->err) or AISLE_ENOMEM. */
int lineio_open(struct lineio *r, const char *path, size_t max_line);
/* Next line into *line and *len (NUL-terminated, owned by r).
 * 0, AISLE_EEOF at the end, AISLE_ETOOBIG for an over-long line (skipped; r->lineno
 * is that line's number), AISLE_EFORMAT for corrupt/truncated gzip, AISLE_EIO. */
int lineio_next(struct lineio *r, const char **line, size_t *len);
/* Bytes of the file consumed so far (compressed bytes for gzip), for progress. */
uint64_t lineio_offset(struct lineio *r);
void lineio_close(struct lineio *r);

#endif
