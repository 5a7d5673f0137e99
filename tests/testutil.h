/*
 * testutil.h — helpers shared by the Criterion tests: temp files, running the
 * aisle program, and a digest of a whole store for "database unchanged" checks.
 * Header-only (static functions) so each test file stays self-contained.
 */
#ifndef AISLE_TESTUTIL_H
#define AISLE_TESTUTIL_H

#include <criterion/criterion.h>

#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "core/hset.h"

/* A fresh directory under /tmp for one test; removed by tu_rmdir. */
static inline char *tu_tmpdir(void)
{
    char *d = strdup("/tmp/aisle-test-XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static inline void tu_rmdir(char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
    free(d);
}

/* dir/name as a new string. */
static inline char *tu_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Write len bytes (gzip when the name ends in .gz). */
static inline void tu_write(const char *path, const void *data, size_t len)
{
    size_t n = strlen(path);
    if (n > 3 && !strcmp(path + n - 3, ".gz")) {
        gzFile f = gzopen(path, "wb");
        cr_assert_not_null(f);
        if (len)
            cr_assert_eq(gzwrite(f, data, (unsigned)len), (int)len);
        cr_assert_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        cr_assert_not_null(f);
        if (len)
            cr_assert_eq(fwrite(data, 1, len, f), len);
        cr_assert_eq(fclose(f), 0);
    }
}

static inline void tu_write_str(const char *path, const char *s)
{
    tu_write(path, s, strlen(s));
}

/* An FNV digest of every row of every table of the store (content, not just
 * counts), plus the FTS indexes' own integrity: equal digests mean equal data. */
static inline uint64_t tu_db_digest(const char *dbpath)
{
    static const char *const tables[] = {"products", "reviews", "questions", "answers", "offers",
                                         "orders", "order_lines", "order_events", "passages"};
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    uint64_t h = HSET_FNV_SEED;
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        char sql[128];
        /* passages.id is an internal rowid that a re-load may renumber; the
         * passage's public identity is (ref_id, source, ord). */
        int is_passages = !strcmp(tables[t], "passages");
        snprintf(sql, sizeof(sql), "SELECT * FROM %s ORDER BY %s", tables[t], is_passages ? "4, 3, 5, 2" : "1, 2");
        sqlite3_stmt *st;
        cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
        int rows = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            rows++;
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                if (!strcmp(tables[t], "products") && !strcmp(sqlite3_column_name(st, c), "updated_at"))
                    continue; /* the load time, not data */
                if (is_passages && c == 0)
                    continue;
                const unsigned char *v = sqlite3_column_text(st, c);
                h = hset_hash(h, v ? (const char *)v : "\x01NULL", v ? strlen((const char *)v) + 1 : 6);
            }
        }
        h = hset_hash(h, &rows, sizeof(rows));
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return h;
}

static inline long long tu_count(const char *dbpath, const char *sql)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    long long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Run a shell command line; captures stdout+stderr into *out (caller frees).
 * Returns the exit status. */
static inline int tu_run(char **out, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof(full), "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert_not_null(p);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    buf[len] = '\0';
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The aisle program under test and the repository root (set by make test). */
static inline const char *tu_aisle(void)
{
    const char *b = getenv("AISLE_BIN");
    cr_assert_not_null(b, "AISLE_BIN is not set: run through make test");
    return b;
}

static inline const char *tu_root(void)
{
    const char *r = getenv("AISLE_ROOT");
    return r ? r : ".";
}

#endif
