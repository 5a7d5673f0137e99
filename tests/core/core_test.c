/* core_test.c — buf, utf8, hset, lineio and csv. */
#include <criterion/criterion.h>

#include "core/buf.h"
#include "core/csv.h"
#include "core/error.h"
#include "core/hset.h"
#include "core/lineio.h"
#include "core/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

Test(buf, grows_and_respects_cap)
{
    struct buf b;
    buf_init(&b, 10);
    cr_assert_eq(buf_puts(&b, "hello"), 0);
    cr_assert_eq(buf_printf(&b, "%d", 1234), 0);
    cr_assert_str_eq(b.data, "hello1234");
    cr_assert_eq(buf_puts(&b, "xy"), AISLE_ETOOBIG, "11 bytes is over the cap of 10");
    cr_assert_str_eq(b.data, "hello1234", "a failed append leaves the contents as they were");
    cr_assert_eq(buf_putc(&b, '!'), 0);
    char *d = buf_detach(&b);
    cr_assert_str_eq(d, "hello1234!");
    cr_assert_null(b.data);
    free(d);
    buf_release(&b);
}

Test(utf8, validates_strictly)
{
    cr_assert(utf8_valid("plain ascii", 11));
    cr_assert(utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9b\x92", 14));
    cr_assert_not(utf8_valid("\xc0\xaf", 2), "overlong '/'");
    cr_assert_not(utf8_valid("\xed\xa0\x80", 3), "UTF-16 surrogate");
    cr_assert_not(utf8_valid("\xf4\x90\x80\x80", 4), "above U+10FFFF");
    cr_assert_not(utf8_valid("\xe2\x82", 2), "truncated");
    cr_assert_not(utf8_valid("\x80", 1), "lone continuation byte");
    cr_assert_eq(utf8_valid_prefix("ab\xff" "cd", 5), 2);
    /* trimming never splits a character: the euro sign is 3 bytes at offset 1 */
    cr_assert_eq(utf8_trim("a\xe2\x82\xac" "b", 5, 2), 1);
    cr_assert_eq(utf8_trim("a\xe2\x82\xac" "b", 5, 4), 4);
}

Test(hset, finds_and_rejects_repeats)
{
    struct hset h;
    hset_init(&h);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "id-%d", i);
        cr_assert_eq(hset_put(&h, key, (uint64_t)i), 1);
    }
    cr_assert_eq(hset_put(&h, "id-42", 7), 0, "repeat is reported, value kept");
    uint64_t v;
    cr_assert(hset_get(&h, "id-42", &v));
    cr_assert_eq(v, 42);
    cr_assert_not(hset_get(&h, "id-5000", &v));
    cr_assert_eq(h.len, 5000);
    hset_release(&h);
}

static char *write_tmp(const char *content, size_t len, int gz)
{
    static int n;
    char *path = malloc(256);
    snprintf(path, 256, "/tmp/aisle-core-%d-%d%s", (int)getpid(), n++, gz ? ".gz" : "");
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, content, (unsigned)len);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(content, 1, len, f);
        fclose(f);
    }
    return path;
}

Test(lineio, reads_plain_and_gzip_alike)
{
    const char *text = "first\r\nsecond\n\nlast-without-newline";
    for (int gz = 0; gz <= 1; gz++) {
        char *p = write_tmp(text, strlen(text), gz);
        struct lineio r;
        cr_assert_eq(lineio_open(&r, p, 0), 0);
        const char *l;
        size_t n;
        cr_assert_eq(lineio_next(&r, &l, &n), 0);
        cr_assert_str_eq(l, "first", "CR before LF is dropped");
        cr_assert_eq(lineio_next(&r, &l, &n), 0);
        cr_assert_str_eq(l, "second");
        cr_assert_eq(lineio_next(&r, &l, &n), 0);
        cr_assert_eq(n, 0);
        cr_assert_eq(lineio_next(&r, &l, &n), 0);
        cr_assert_str_eq(l, "last-without-newline");
        cr_assert_eq(r.lineno, 4);
        cr_assert_eq(lineio_next(&r, &l, &n), AISLE_EEOF);
        lineio_close(&r);
        unlink(p);
        free(p);
    }
}

Test(lineio, caps_long_lines_and_goes_on)
{
    size_t big = 5000;
    char *text = malloc(big + 16);
    memset(text, 'x', big);
    strcpy(text + big, "\nok\n");
    char *p = write_tmp(text, strlen(text), 0);
    struct lineio r;
    cr_assert_eq(lineio_open(&r, p, 1024), 0);
    const char *l;
    size_t n;
    cr_assert_eq(lineio_next(&r, &l, &n), AISLE_ETOOBIG);
    cr_assert_eq(r.lineno, 1);
    cr_assert_eq(lineio_next(&r, &l, &n), 0);
    cr_assert_str_eq(l, "ok");
    cr_assert_eq(r.lineno, 2);
    lineio_close(&r);
    unlink(p);
    free(p);
    free(text);
}

Test(lineio, truncated_gzip_is_a_format_error)
{
    char text[20000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (i % 61 == 60) ? '\n' : (char)('a' + (i * 7919) % 26);
    char *p = write_tmp(text, sizeof(text), 1);
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert_eq(truncate(p, size / 2), 0);
    struct lineio r;
    cr_assert_eq(lineio_open(&r, p, 0), 0);
    const char *l;
    size_t n;
    int rc;
    while ((rc = lineio_next(&r, &l, &n)) == 0)
        ;
    cr_assert_eq(rc, AISLE_EFORMAT, "got %d (%s)", rc, r.err);
    cr_assert(strstr(r.err, "gzip") != NULL, "message names the cause: %s", r.err);
    lineio_close(&r);
    unlink(p);
    free(p);
}

Test(csv, parses_rfc4180)
{
    const char *text = "id,title,notes\n"
                       "1,\"Mug, blue\",\"says \"\"hi\"\"\"\n"
                       "\n"
                       "2,Plate,\"two\nlines\"\n"
                       "3,,\n";
    char *p = write_tmp(text, strlen(text), 0);
    struct lineio r;
    struct csv c;
    cr_assert_eq(lineio_open(&r, p, 0), 0);
    cr_assert_eq(csv_init(&c, &r), 0);
    cr_assert_eq(csv_next(&c), 0);
    cr_assert_eq(c.nfields, 3);
    cr_assert_eq(csv_next(&c), 0);
    cr_assert_str_eq(c.fields[1], "Mug, blue");
    cr_assert_str_eq(c.fields[2], "says \"hi\"");
    cr_assert_eq(c.lineno, 2);
    cr_assert_eq(csv_next(&c), 0);
    cr_assert_str_eq(c.fields[2], "two\nlines");
    cr_assert_eq(c.lineno, 4, "a record is numbered by its first line");
    cr_assert_eq(csv_next(&c), 0);
    cr_assert_eq(c.nfields, 3);
    cr_assert_str_eq(c.fields[1], "");
    cr_assert_eq(csv_next(&c), AISLE_EEOF);
    csv_release(&c);
    lineio_close(&r);
    unlink(p);
    free(p);
}

Test(csv, unbalanced_quotes_are_reported)
{
    const char *cases[] = {
        "a,\"open field\nnever closed\n",
        "a,b\"c\n",
        "a,\"x\"y\n",
    };
    for (size_t i = 0; i < 3; i++) {
        char *p = write_tmp(cases[i], strlen(cases[i]), 0);
        struct lineio r;
        struct csv c;
        cr_assert_eq(lineio_open(&r, p, 0), 0);
        cr_assert_eq(csv_init(&c, &r), 0);
        cr_assert_eq(csv_next(&c), AISLE_EFORMAT, "case %zu", i);
        cr_assert(strstr(c.err, "quote") != NULL, "case %zu: %s", i, c.err);
        csv_release(&c);
        lineio_close(&r);
        unlink(p);
        free(p);
    }
}
