/*
 * csv_fuzz_test.c — CSV regressions found with fuzz/records_fuzz.c and its
 * corpus (fuzz/corpus/records/csv-gzip-*.csv replay the same inputs gzip'd).
 */
#include <criterion/criterion.h>

#include "core/csv.h"
#include "core/error.h"
#include "core/lineio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Write content to a fresh temporary file; caller unlinks and frees the path. */
static char *write_tmp(const char *content)
{
    static int n;
    char *path = malloc(256);
    cr_assert_not_null(path);
    snprintf(path, 256, "/tmp/aisle-csvfuzz-%d-%d.csv", (int)getpid(), n++);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(content, 1, strlen(content), f);
    fclose(f);
    return path;
}

/* Parse path with a line cap of max_line; expect the records' first fields
 * (or "!" for a record that fails with AISLE_ETOOBIG) to be want, in order. */
static void expect_records(const char *content, size_t max_line, const char *const *want, size_t nwant)
{
    char *path = write_tmp(content);
    struct lineio in;
    struct csv c;
    cr_assert_eq(lineio_open(&in, path, max_line), 0);
    cr_assert_eq(csv_init(&c, &in), 0);
    size_t k = 0;
    int rc;
    while ((rc = csv_next(&c)) != AISLE_EEOF) {
        cr_assert(k < nwant, "more records than expected (rc %d, %s)", rc, c.err);
        if (!strcmp(want[k], "!"))
            cr_assert_eq(rc, AISLE_ETOOBIG, "record %zu: rc %d, %s", k + 1, rc, c.err);
        else
            cr_assert(rc == 0 && !strcmp(c.fields[0], want[k]), "record %zu: rc %d (%s), want %s", k + 1, rc,
                      c.err, want[k]);
        k++;
    }
    cr_assert_eq(k, nwant, "%zu records, want %zu", k, nwant);
    csv_release(&c);
    lineio_close(&in);
    unlink(path);
    free(path);
}

/* A quoted field of many short lines that joins past the cap used to stop
 * mid-record: the rest of its lines came back as bogus records (each a row
 * the caller might accept), and its closing quote swallowed the next record. */
Test(csv_fuzz, record_over_cap_is_read_to_its_end)
{
    char content[8192] = "id,title\nA,\"";
    /* 100 lines of 50 bytes: each under the 128-byte line cap, together over
     * the record cap (line cap + CSV_MAX_FIELDS bytes of field terminators) */
    for (int i = 0; i < 100; i++)
        strcat(content, "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy, zz\n");
    strcat(content, "\"\nB,after\n");
    static const char *const want[] = {"id", "!", "B"};
    expect_records(content, 128, want, 3);
}

/* The same for a record over CSV_MAX_FIELDS inside a multi-line quoted field. */
Test(csv_fuzz, too_many_fields_is_read_to_its_end)
{
    size_t n = 3 * (CSV_MAX_FIELDS + 10) + 64;
    char *content = malloc(n);
    cr_assert_not_null(content);
    strcpy(content, "id,title\nA");
    for (int i = 0; i < CSV_MAX_FIELDS + 5; i++)
        strcat(content, ",x");
    strcat(content, ",\"multi\nline\"\nB,after\n");
    static const char *const want[] = {"id", "!", "B"};
    expect_records(content, 0, want, 3);
    free(content);
}
