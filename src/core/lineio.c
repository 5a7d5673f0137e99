/* lineio.c — capped line reader over plain or gzip files; see lineio.h. */
#include "core/lineio.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CHUNK (1u << 16)

int lineio_open(struct lineio *r, const char *path, size_t max_line)
{
    memset(r, 0, sizeof(*r));
    r->max_line = max_line ? max_line : LINEIO_MAX_LINE_DEFAULT;
    buf_init(&r->line, r->max_line);

    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(r->err, sizeof(r->err), "cannot open: %s", strerror(errno));
        return AISLE_EIO;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0)
        r->file_size = (uint64_t)st.st_size;
    unsigned char magic[2] = {0, 0};
    r->is_gzip = fread(magic, 1, 2, f) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    fclose(f);

    r->gz = gzopen(path, "rb");
    if (!r->gz) {
        snprintf(r->err, sizeof(r->err), "cannot open: %s", errno ? strerror(errno) : "out of memory");
        return errno ? AISLE_EIO : AISLE_ENOMEM;
    }
    gzbuffer(r->gz, CHUNK);
    r->chunk = malloc(CHUNK);
    if (!r->chunk) {
        gzclose(r->gz);
        r->gz = NULL;
        return AISLE_ENOMEM;
    }
    return 0;
}

/* Refill the read-ahead. 0 (possibly with chunk_len 0 at EOF) or an error. */
static int fill(struct lineio *r)
{
    r->chunk_pos = 0;
    r->chunk_len = 0;
    int n = gzread(r->gz, r->chunk, CHUNK);
    if (n < 0) {
        int zerr;
        const char *msg = gzerror(r->gz, &zerr);
        snprintf(r->err, sizeof(r->err), "%s: %s", r->is_gzip ? "corrupt gzip data" : "read error",
                 msg ? msg : "unknown");
        return zerr == Z_ERRNO ? AISLE_EIO : AISLE_EFORMAT;
    }
    if (n == 0) {
        /* gzread returns 0 both at a clean end and at a truncated stream; the
         * latter leaves Z_BUF_ERROR ("unexpected end of file"). */
        int zerr;
        const char *msg = gzerror(r->gz, &zerr);
        if (zerr != Z_OK && zerr != Z_STREAM_END) {
            snprintf(r->err, sizeof(r->err), "truncated or corrupt gzip file: %s",
                     msg ? msg : "unexpected end of file");
            return AISLE_EFORMAT;
        }
        r->eof = 1;
    }
    r->chunk_len = (size_t)n;
    return 0;
}

int lineio_next(struct lineio *r, const char **line, size_t *len)
{
    int toolong = 0;
    int have_any = 0;
    buf_reset(&r->line);
    for (;;) {
        if (r->chunk_pos == r->chunk_len) {
            if (r->eof)
                break;
            int rc = fill(r);
            if (rc)
                return rc;
            if (r->chunk_len == 0)
                break;
        }
        have_any = 1;
        unsigned char *start = r->chunk + r->chunk_pos;
        size_t avail = r->chunk_len - r->chunk_pos;
        unsigned char *nl = memchr(start, '\n', avail);
        size_t take = nl ? (size_t)(nl - start) : avail;
        if (!toolong && buf_append(&r->line, start, take) != 0)
            toolong = 1; /* keep consuming to the end of this line */
        r->chunk_pos += take;
        if (nl) {
            r->chunk_pos++; /* the newline */
            goto got_line;
        }
    }
    if (!have_any && r->line.len == 0)
        return AISLE_EEOF;
got_line:
    r->lineno++;
    if (toolong) {
        snprintf(r->err, sizeof(r->err), "line longer than the %zu-byte limit", r->max_line);
        buf_reset(&r->line);
        return AISLE_ETOOBIG;
    }
    if (r->line.len && r->line.data[r->line.len - 1] == '\r')
        r->line.data[--r->line.len] = '\0';
    if (!r->line.data && buf_grow(&r->line, 0) != 0)
        return AISLE_ENOMEM;
    *line = r->line.data;
    *len = r->line.len;
    return 0;
}

uint64_t lineio_offset(struct lineio *r)
{
    if (!r->gz)
        return 0;
    if (!r->is_gzip) {
        z_off_t o = gztell(r->gz);
        return o < 0 ? 0 : (uint64_t)o;
    }
    z_off_t o = gzoffset(r->gz);
    return o < 0 ? 0 : (uint64_t)o;
}

void lineio_close(struct lineio *r)
{
    if (r->gz)
        gzclose(r->gz);
    r->gz = NULL;
    free(r->chunk);
    r->chunk = NULL;
    buf_release(&r->line);
}
