/*
 * csv.c — RFC 4180 record parser; see csv.h.
 *
 * The parser is a three-state machine (field start, unquoted, quoted) run over
 * each physical line; ending a line inside a quoted field pulls the next line in
 * with the newline kept, so one record may span many lines.
 */
#include "core/csv.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_START, ST_UNQUOTED, ST_QUOTED, ST_QUOTE_IN_QUOTED };

int csv_init(struct csv *c, struct lineio *in)
{
    memset(c, 0, sizeof(*c));
    c->in = in;
    buf_init(&c->rec, in->max_line + CSV_MAX_FIELDS);
    c->offs = calloc(CSV_MAX_FIELDS, sizeof(*c->offs));
    c->lens = calloc(CSV_MAX_FIELDS, sizeof(*c->lens));
    c->fields = calloc(CSV_MAX_FIELDS, sizeof(*c->fields));
    if (!c->offs || !c->lens || !c->fields) {
        csv_release(c);
        return AISLE_ENOMEM;
    }
    return 0;
}

void csv_release(struct csv *c)
{
    buf_release(&c->rec);
    free(c->offs);
    free(c->lens);
    free(c->fields);
    c->offs = NULL;
    c->lens = NULL;
    c->fields = NULL;
}

static void set_overflow(struct csv *c, int rc)
{
    if (rc == AISLE_ETOOBIG)
        snprintf(c->err, sizeof(c->err), "record longer than the %zu-byte limit", c->in->max_line);
    else
        snprintf(c->err, sizeof(c->err), "%s", aisle_strerror(rc));
}

/* Append one byte of the record. Past a cap *over is set (and c->err) and the
 * rest of the record is parsed but not kept, so the next record starts where
 * it should instead of in the middle of this one. */
static void put(struct csv *c, char ch, int *over)
{
    int rc;
    if (!*over && (rc = buf_putc(&c->rec, ch)) != 0) {
        set_overflow(c, rc);
        *over = rc;
    }
}

static void end_field(struct csv *c, int *over)
{
    if (*over)
        return;
    if (c->nfields >= CSV_MAX_FIELDS) {
        snprintf(c->err, sizeof(c->err), "more than %d fields", CSV_MAX_FIELDS);
        *over = AISLE_ETOOBIG;
        return;
    }
    size_t start = c->offs[c->nfields];
    c->lens[c->nfields] = c->rec.len - start;
    int rc = buf_putc(&c->rec, '\0');
    if (rc) {
        set_overflow(c, rc);
        *over = rc;
        return;
    }
    c->nfields++;
    if (c->nfields < CSV_MAX_FIELDS)
        c->offs[c->nfields] = c->rec.len;
}

int csv_next(struct csv *c)
{
    const char *line;
    size_t len;
    int rc;
    int state = ST_START;
    int over = 0; /* a cap was passed: AISLE_ETOOBIG (or AISLE_ENOMEM) once the record ends */

    buf_reset(&c->rec);
    c->nfields = 0;
    c->io_err = 0;
    c->offs[0] = 0;

    /* Skip blank lines between records. */
    do {
        rc = lineio_next(c->in, &line, &len);
        if (rc) {
            if (rc == AISLE_ETOOBIG)
                c->lineno = c->in->lineno; /* the over-long line is where this record was */
            if (rc != AISLE_EEOF)
                snprintf(c->err, sizeof(c->err), "%s", c->in->err);
            c->io_err = rc != AISLE_EEOF && rc != AISLE_ETOOBIG;
            return rc;
        }
    } while (len == 0);
    c->lineno = c->in->lineno;

    for (;;) {
        for (size_t i = 0; i < len; i++) {
            char ch = line[i];
            switch (state) {
            case ST_START:
                if (ch == '"') {
                    state = ST_QUOTED;
                } else if (ch == ',') {
                    end_field(c, &over);
                } else {
                    put(c, ch, &over);
                    state = ST_UNQUOTED;
                }
                break;
            case ST_UNQUOTED:
                if (ch == ',') {
                    end_field(c, &over);
                    state = ST_START;
                } else if (ch == '"') {
                    snprintf(c->err, sizeof(c->err),
                             "field %zu: quote inside an unquoted field (column %zu)", c->nfields + 1, i + 1);
                    return AISLE_EFORMAT;
                } else {
                    put(c, ch, &over);
                }
                break;
            case ST_QUOTED:
                if (ch == '"')
                    state = ST_QUOTE_IN_QUOTED;
                else
                    put(c, ch, &over);
                break;
            case ST_QUOTE_IN_QUOTED:
                if (ch == '"') {
                    put(c, '"', &over);
                    state = ST_QUOTED;
                } else if (ch == ',') {
                    end_field(c, &over);
                    state = ST_START;
                } else {
                    snprintf(c->err, sizeof(c->err),
                             "field %zu: text after a closing quote (column %zu)", c->nfields + 1, i + 1);
                    return AISLE_EFORMAT;
                }
                break;
            }
        }
        if (state != ST_QUOTED)
            break;
        /* The line ended inside quotes: the newline is part of the field. */
        put(c, '\n', &over);
        rc = lineio_next(c->in, &line, &len);
        if (rc == AISLE_EEOF) {
            snprintf(c->err, sizeof(c->err),
                     "field %zu: unbalanced quotes: quoted field never closed before end of file",
                     c->nfields + 1);
            return AISLE_EFORMAT;
        }
        if (rc) {
            snprintf(c->err, sizeof(c->err), "%s", c->in->err);
            c->io_err = rc != AISLE_ETOOBIG;
            return rc;
        }
    }
    end_field(c, &over);
    if (over)
        return over; /* c->err says which cap; the whole record has been read */
    for (size_t f = 0; f < c->nfields; f++)
        c->fields[f] = c->rec.data + c->offs[f];
    return 0;
}
