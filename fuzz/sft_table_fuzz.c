/*
 * sft_table_fuzz.c — libFuzzer target for the SFT data readers' table parser
 * (sft_table_*: tab- or comma-separated, RFC 4180 quoting, plain or gzip),
 * which reads the downloaded dataset files: untrusted bytes.
 *
 * The input is a file's bytes; the first byte picks the delimiter (tab or
 * comma). It is written to a memfd and read through the same lineio path as a
 * real file, every record until the end or an I/O error.
 *
 * Invariants checked (abort on violation, as a crash):
 *   - open either succeeds or fails with an error code and a message naming
 *     the file;
 *   - every record has 1..32 fields, each NUL-terminated within the record
 *     cap; a malformed record's error names the file;
 *   - record line numbers never go backwards; the reader always terminates
 *     (each call consumes at least one line or reports the end).
 */
#include "assist/sft_data.h"
#include "core/error.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    char delim = data[0] & 1 ? ',' : '\t';
    int fd = memfd_create("sft-table", 0);
    FUZZ_CHECK(fd >= 0, "memfd_create");
    FUZZ_CHECK(write(fd, data + 1, size - 1) == (ssize_t)(size - 1), "write");
    char path[64], err[1024];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct sft_table *t;
    int rc = sft_table_open(&t, path, delim, err, sizeof(err));
    if (rc) {
        FUZZ_CHECK(rc < 0 && strstr(err, path), "open failed (%d) without naming the file: %s", rc, err);
        close(fd);
        return 0;
    }
    uint64_t last_line = 0;
    for (size_t calls = 0;; calls++) {
        FUZZ_CHECK(calls <= size + 1, "more records than lines");
        char **f;
        size_t n;
        rc = sft_table_next(t, &f, &n);
        if (rc == AISLE_EEOF || rc == AISLE_EIO)
            break;
        FUZZ_CHECK(sft_table_line(t) >= last_line, "line %llu after %llu", (unsigned long long)sft_table_line(t),
                   (unsigned long long)last_line);
        last_line = sft_table_line(t);
        if (rc == AISLE_EFORMAT || rc == AISLE_ETOOBIG) {
            FUZZ_CHECK(strstr(sft_table_error(t), path), "error without the file: %s", sft_table_error(t));
            if (rc == AISLE_EFORMAT && strstr(sft_table_error(t), "gzip"))
                break; /* a corrupt stream ends the file */
            continue;
        }
        FUZZ_CHECK(rc == 0, "unexpected %d", rc);
        FUZZ_CHECK(n >= 1 && n <= 32, "%zu fields", n);
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(f[i]);
            FUZZ_CHECK(len <= SFT_MAX_RECORD, "field of %zu bytes", len);
        }
    }
    sft_table_close(t);
    close(fd);
    return 0;
}
