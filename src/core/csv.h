/*
 * csv.h — RFC 4180 CSV records on top of lineio (plain or gzip files).
 *
 * A record is one or more physical lines: a quoted field may contain commas,
 * doubled quotes ("") and newlines. Fields are returned unquoted and
 * NUL-terminated. A quote that is never closed, or a stray quote inside an
 * unquoted field, is AISLE_EFORMAT naming the record's first line. Records are
 * capped at the lineio's line cap (joined lines included) and CSV_MAX_FIELDS;
 * a record over a cap is still parsed to its end before AISLE_ETOOBIG, so the
 * next call starts at the next record, not inside this one.
 *
 * Ownership: fields point into the parser's buffer and are valid until the next
 * csv_next. THREAD SAFETY: one parser per thread.
 */
#ifndef AISLE_CORE_CSV_H
#define AISLE_CORE_CSV_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/lineio.h"

#define CSV_MAX_FIELDS 4096

struct csv {
    struct lineio *in;     /* borrowed */
    struct buf rec;        /* unquoted field bytes, each NUL-terminated */
    size_t *offs;          /* (CSV_MAX_FIELDS) start of each field in rec */
    size_t *lens;          /* (CSV_MAX_FIELDS) length of each field */
    char **fields;         /* (CSV_MAX_FIELDS) pointers into rec, valid after csv_next */
    size_t nfields;
    uint64_t lineno;       /* first physical line of the last record */
    int io_err;            /* the last error came from reading the file, not from a record */
    char err[256];
};

int csv_init(struct csv *c, struct lineio *in);
void csv_release(struct csv *c);
/* Parse the next record. 0 with c->fields/c->lens/c->nfields set; AISLE_EEOF;
 * AISLE_EFORMAT (unbalanced quotes, message in c->err); AISLE_ETOOBIG (record or
 * field count over its cap); lineio errors pass through with c->err set. Blank
 * lines are skipped. */
int csv_next(struct csv *c);

#endif
