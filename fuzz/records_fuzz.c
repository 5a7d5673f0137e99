/*
 * records_fuzz.c — libFuzzer target for the merchant record reader: lineio
 * (plain and gzip), the RFC 4180 CSV parser and ingest_file's JSONL/CSV
 * validation and upserts, run into an in-memory store.
 *
 * Input: byte 0 selects what the rest is (the payload, written to a memfd and
 * read back through its /proc path as a merchant file would be):
 *   bits 0-2  target, value mod 6: 0 products JSONL, 1 products CSV, 2 reviews,
 *             3 Q&A, 4 offers, 5 orders (all but products CSV are JSON Lines)
 *   bit 3     gzip the payload first (a payload that is itself gzip, say a
 *             truncated one, is read as gzip either way)
 *   bit 4     a 128-byte line cap instead of the default, to reach the
 *             over-long-line paths with small inputs
 *   bit 5     products CSV only: a fixed --map ("title=name,category=dept>aisle")
 *   bits 6-7  unused
 * Every input starts from the same store: a fixed small catalog (ids P1, P2
 * and 7), so reviews, Q&A, offers and orders can name existing products (and
 * products can update existing ones). It is built once in a template store and
 * copied over the working store with SQLite's backup API after any input that
 * wrote to it (a failed load rolls back, so most inputs leave it as it was):
 * several times faster than opening and loading a fresh :memory: store per
 * input, while a run still does not depend on the inputs before it.
 *
 * Invariants checked (abort on violation, as a crash):
 *   - on error, the message is non-empty and starts with the file path, the
 *     stats out-parameter is untouched and every table has its old row count
 *     (one file is one transaction), with skip_bad off and on;
 *   - every error and skip message reads "path: what" or "path:N: what" with
 *     line N in the file, and a "line longer than the limit" complaint names
 *     a line over the cap (CSV: or the start of a multi-line record with one);
 *   - on success, loaded + skipped >= 1, <= the payload's line count, skipped
 *     is 0 with skip_bad off, on_skip was called once per skipped record, and
 *     progress never went back, stayed within the file's bytes and ended at
 *     loaded + skipped;
 *   - skip_bad only turns bad records into skips: when a file fails with it off
 *     and loads with it on, something was skipped;
 *   - loading the same file again (upsert by id) leaves every count unchanged.
 * ASan/UBSan and LeakSanitizer catch the rest.
 *
 * RECORDS_FUZZ_VERBOSE=1 prints each load's outcome to stderr, to see what a
 * corpus file exercises.
 */
#include "core/error.h"
#include "core/lineio.h"
#include "store/ingest.h"
#include "store/store.h"

#include "fuzz.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char catalog[] =
    "{\"id\":\"P1\",\"title\":\"Trail running shoe\",\"brand\":\"Acme\",\"category\":[\"Shoes\",\"Running\"],"
    "\"bullets\":[\"Waterproof upper\",\"Vibram sole\"],\"attributes\":{\"size\":\"42\",\"weight_g\":280}}\n"
    "{\"id\":\"P2\",\"title\":\"Espresso machine\",\"description\":\"15 bar pump, steam wand.\"}\n"
    "{\"id\":7,\"title\":\"USB-C cable 2 m\",\"attributes\":{\"length\":\"2 m\",\"braided\":true}}\n";

static const char *const tables[] = {"products", "reviews", "questions", "answers", "offers",
                                     "orders", "order_lines", "order_events", "passages"};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

/* The payload's lines as the reader sees them (gzip decoded), found once per
 * input: how many (newlines, plus one for a last line without a newline) and
 * for the first MAX_LENS, the byte length (up to the newline, "\r" included, as
 * lineio measures them against its cap) and whether the line has an odd number
 * of '"' (a CSV record that starts there goes on to the next line). Counts are
 * only meaningful when the file reads cleanly, which a successful ingest
 * implies. */
#define MAX_LENS 65536
static struct {
    uint64_t n;
    uint32_t len[MAX_LENS];
    unsigned char odd_quotes[MAX_LENS];
} lines;

static void end_line(uint64_t len, int odd)
{
    if (lines.n < MAX_LENS) {
        lines.len[lines.n] = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
        lines.odd_quotes[lines.n] = (unsigned char)odd;
    }
    lines.n++;
}

static void scan_lines(const char *path)
{
    /* Read exactly as lineio does (same buffer and read sizes): on a corrupt
     * or truncated gzip stream, how much zlib hands out before the error
     * depends on them. */
    static unsigned char b[1u << 16];
    gzFile g = gzopen(path, "rb");
    FUZZ_CHECK(g != NULL, "gzopen %s", path);
    gzbuffer(g, sizeof(b));
    uint64_t cur = 0;
    int n, last = '\n', odd = 0;
    lines.n = 0;
    while ((n = gzread(g, b, sizeof(b))) > 0) {
        for (int i = 0; i < n; i++) {
            if (b[i] != '\n') {
                cur++;
                odd ^= b[i] == '"';
                continue;
            }
            end_line(cur, odd);
            cur = 0;
            odd = 0;
        }
        last = b[n - 1];
    }
    gzclose(g);
    if (last != '\n')
        end_line(cur, odd);
}

/* An error or skip message: "path: what" or "path:N: what", where line N
 * exists and, when the complaint is an over-long line, is one, or (CSV) starts
 * a record that spans lines and has one. */
static void check_msg(const char *msg, const char *path, size_t max_line, int csv)
{
    size_t plen = strlen(path);
    FUZZ_CHECK(!strncmp(msg, path, plen), "\"%s\" does not start with the path", msg);
    const char *p = msg + plen;
    FUZZ_CHECK(*p == ':', "\"%s\": no ':' after the path", msg);
    if (p[1] < '0' || p[1] > '9')
        return;
    char *end;
    unsigned long long ln = strtoull(p + 1, &end, 10);
    FUZZ_CHECK(*end == ':', "\"%s\": no ':' after the line number", msg);
    FUZZ_CHECK(ln >= 1 && ln <= lines.n, "\"%s\": line %llu of a %llu-line file", msg, ln,
               (unsigned long long)lines.n);
    /* Only the reader's own complaint: a field's text may say anything. */
    if (strncmp(end, ": record: line longer than the ", 31) != 0 &&
        strncmp(end, ": header: line longer than the ", 31) != 0)
        return;
    size_t cap = max_line ? max_line : LINEIO_MAX_LINE_DEFAULT;
    if (ln > MAX_LENS)
        return;
    int found = lines.len[ln - 1] > cap;
    if (csv && lines.odd_quotes[ln - 1]) {
        uint64_t i;
        for (i = ln; i < lines.n && i < MAX_LENS && !found; i++)
            found = lines.len[i] > cap;
        found |= i == MAX_LENS && lines.n > MAX_LENS; /* the record goes on past what was kept */
    }
    FUZZ_CHECK(found, "\"%s\": line %llu is %u bytes, not over the %zu-byte cap%s", msg, ln, lines.len[ln - 1],
               cap, csv && lines.odd_quotes[ln - 1] ? ", nor is a line of the record it starts" : "");
}

static int verbose;

static uint64_t file_size(const char *path)
{
    struct stat st;
    FUZZ_CHECK(stat(path, &st) == 0, "stat %s", path);
    return (uint64_t)st.st_size;
}

/* What the callbacks of one ingest_file call saw. */
struct watch {
    const char *path;
    size_t max_line;
    int csv;
    uint64_t file_size;
    uint64_t skips;                /* on_skip calls */
    uint64_t progress_calls, last_records;
};

static void on_skip(void *ctx, const char *msg)
{
    struct watch *w = ctx;
    if (verbose)
        fprintf(stderr, "    skipped: %s\n", msg);
    check_msg(msg, w->path, w->max_line, w->csv);
    FUZZ_CHECK(msg[strlen(w->path) + 1] >= '0' && msg[strlen(w->path) + 1] <= '9',
               "skip message \"%s\" has no line number", msg);
    w->skips++;
}

/* Progress: records never go back, bytes stay within the file. */
static void on_progress(void *ctx, uint64_t records, uint64_t done_bytes, uint64_t total_bytes)
{
    struct watch *w = ctx;
    FUZZ_CHECK(records >= w->last_records, "progress went back from %llu to %llu records",
               (unsigned long long)w->last_records, (unsigned long long)records);
    FUZZ_CHECK(total_bytes == w->file_size && done_bytes <= total_bytes,
               "progress %llu of %llu bytes for a %llu-byte file", (unsigned long long)done_bytes,
               (unsigned long long)total_bytes, (unsigned long long)w->file_size);
    w->last_records = records;
    w->progress_calls++;
}

/* Row counts of every table, in one statement prepared once per store (nine
 * store_count calls would prepare nine: half the run time). setup() checks it
 * against store_count. */
static void counts(struct store *s, int64_t out[NTABLES])
{
    static struct store *prepared_for;
    static sqlite3_stmt *st;
    if (prepared_for != s) {
        char sql[1024];
        size_t n = 0;
        for (size_t i = 0; i < NTABLES; i++)
            n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s(SELECT count(*) FROM %s)", i ? ", " : "SELECT ",
                                  tables[i]);
        sqlite3_finalize(st);
        FUZZ_CHECK(sqlite3_prepare_v3(store_db(s), sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) == SQLITE_OK,
                   "prepare counts: %s", sqlite3_errmsg(store_db(s)));
        prepared_for = s;
    }
    FUZZ_CHECK(sqlite3_step(st) == SQLITE_ROW, "counts: %s", sqlite3_errmsg(store_db(s)));
    for (size_t i = 0; i < NTABLES; i++)
        out[i] = sqlite3_column_int64(st, (int)i);
    sqlite3_reset(st);
}

/* Replace the memfd's contents with n bytes. */
static void put_file(int fd, const void *p, size_t n)
{
    FUZZ_CHECK(ftruncate(fd, 0) == 0, "ftruncate");
    size_t off = 0;
    while (off < n) {
        ssize_t w = pwrite(fd, (const char *)p + off, n - off, (off_t)off);
        FUZZ_CHECK(w > 0, "pwrite");
        off += (size_t)w;
    }
}

/* gzip n bytes into a fresh allocation. */
static unsigned char *gzip_bytes(const uint8_t *p, size_t n, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    FUZZ_CHECK(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
    size_t cap = deflateBound(&z, (uLong)n);
    unsigned char *out = malloc(cap);
    FUZZ_CHECK(out != NULL, "malloc");
    z.next_in = (Bytef *)(uintptr_t)p;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
    *outlen = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

struct run {
    int rc;
    struct ingest_stats st;
    char err[1024];
};

static void run_ingest(struct store *s, enum ingest_kind kind, const char *path, const struct ingest_opts *base,
                       int skip_bad, struct run *r)
{
    struct ingest_opts o = *base;
    struct watch w = {path, base->max_line, base->format_csv > 0, file_size(path), 0, 0, 0};
    int64_t before[NTABLES], after[NTABLES];
    const struct ingest_stats sentinel = {0xdeadbeef, 0xfeedface};

    o.skip_bad = skip_bad;
    o.on_skip = on_skip;
    o.progress = on_progress;
    o.ctx = &w;
    r->st = sentinel;
    r->err[0] = '\0';
    counts(s, before);
    r->rc = ingest_file(s, kind, path, &o, &r->st, r->err, sizeof(r->err));
    if (verbose)
        fprintf(stderr, "  %s skip_bad=%d: rc %d, %s\n", ingest_kind_name(kind), skip_bad, r->rc,
                r->rc ? r->err : "loaded");
    if (verbose && !r->rc)
        fprintf(stderr, "    %llu loaded, %llu skipped\n", (unsigned long long)r->st.loaded,
                (unsigned long long)r->st.skipped);
    if (r->rc) {
        FUZZ_CHECK(r->rc < 0, "rc %d", r->rc);
        FUZZ_CHECK(r->err[0] != '\0', "empty error text (rc %d)", r->rc);
        check_msg(r->err, path, o.max_line, o.format_csv > 0);
        FUZZ_CHECK(r->st.loaded == sentinel.loaded && r->st.skipped == sentinel.skipped,
                   "stats written on failure (%s)", r->err);
        counts(s, after);
        for (size_t i = 0; i < NTABLES; i++)
            FUZZ_CHECK(before[i] == after[i], "%s: %lld rows before, %lld after a failed load (skip_bad %d): %s",
                       tables[i], (long long)before[i], (long long)after[i], skip_bad, r->err);
        return;
    }
    uint64_t total = r->st.loaded + r->st.skipped;
    FUZZ_CHECK(total >= 1, "success with no records");
    FUZZ_CHECK(total <= lines.n, "%llu loaded + %llu skipped > %llu lines", (unsigned long long)r->st.loaded,
               (unsigned long long)r->st.skipped, (unsigned long long)lines.n);
    FUZZ_CHECK(skip_bad || r->st.skipped == 0, "%llu skipped with skip_bad off", (unsigned long long)r->st.skipped);
    FUZZ_CHECK(w.skips == r->st.skipped, "on_skip called %llu times for %llu skipped", (unsigned long long)w.skips,
               (unsigned long long)r->st.skipped);
    FUZZ_CHECK(w.progress_calls >= 1 && w.last_records == total, "progress ended at %llu records of %llu",
               (unsigned long long)w.last_records, (unsigned long long)total);
}

static int fd_data = -1, fd_catalog = -1;
static char path_data[64], path_catalog[64];
static struct store *tmpl, *work; /* the catalog alone; the store each input runs on */

static void setup(void)
{
    fd_data = memfd_create("records", 0);
    fd_catalog = memfd_create("catalog", 0);
    FUZZ_CHECK(fd_data >= 0 && fd_catalog >= 0, "memfd_create");
    snprintf(path_data, sizeof(path_data), "/proc/self/fd/%d", fd_data);
    snprintf(path_catalog, sizeof(path_catalog), "/proc/self/fd/%d", fd_catalog);
    put_file(fd_catalog, catalog, sizeof(catalog) - 1);
    scan_lines(path_catalog);
    const char *v = getenv("RECORDS_FUZZ_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;

    char msg[256];
    FUZZ_CHECK(store_open(&tmpl, ":memory:", 0, msg, sizeof(msg)) == 0, "store_open: %s", msg);
    FUZZ_CHECK(store_open(&work, ":memory:", 0, msg, sizeof(msg)) == 0, "store_open: %s", msg);
    struct ingest_opts co;
    struct run cr;
    memset(&co, 0, sizeof(co));
    run_ingest(tmpl, INGEST_PRODUCTS, path_catalog, &co, 0, &cr);
    FUZZ_CHECK(cr.rc == 0 && cr.st.loaded == 3, "fixed catalog: %s", cr.err);
    int64_t n[NTABLES], one;
    counts(tmpl, n);
    for (size_t i = 0; i < NTABLES; i++) {
        FUZZ_CHECK(store_count(tmpl, tables[i], &one) == 0, "store_count(%s): %s", tables[i], store_errmsg(tmpl));
        FUZZ_CHECK(one == n[i], "%s: store_count %lld, counts() %lld", tables[i], (long long)one, (long long)n[i]);
    }
}

/* Make the working store a page-for-page copy of the template. */
static void reset_work(void)
{
    sqlite3_backup *b = sqlite3_backup_init(store_db(work), "main", store_db(tmpl), "main");
    FUZZ_CHECK(b != NULL, "sqlite3_backup_init: %s", sqlite3_errmsg(store_db(work)));
    int rc = sqlite3_backup_step(b, -1);
    FUZZ_CHECK(rc == SQLITE_DONE, "sqlite3_backup_step: %s", sqlite3_errstr(rc));
    FUZZ_CHECK(sqlite3_backup_finish(b) == SQLITE_OK, "sqlite3_backup_finish: %s",
               sqlite3_errmsg(store_db(work)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (fd_data < 0)
        setup();

    static const enum ingest_kind kinds[6] = {INGEST_PRODUCTS, INGEST_PRODUCTS, INGEST_REVIEWS,
                                              INGEST_QA, INGEST_OFFERS, INGEST_ORDERS};
    unsigned sel = data[0], target = (sel & 7) % 6;
    enum ingest_kind kind = kinds[target];
    struct ingest_opts o;
    memset(&o, 0, sizeof(o));
    o.format_csv = target == 1;
    o.max_line = (sel & 0x10) ? 128 : 0;
    o.csv_map = target == 1 && (sel & 0x20) ? "title=name,category=dept>aisle" : NULL;

    if (sel & 8) {
        size_t zn;
        unsigned char *z = gzip_bytes(data + 1, size - 1, &zn);
        put_file(fd_data, z, zn);
        free(z);
    } else {
        put_file(fd_data, data + 1, size - 1);
    }
    scan_lines(path_data);

    /* A failed load rolls back and a load of no record commits nothing, so
     * the store is still the template's unless a load wrote something. */
    static int dirty = 1;
    if (dirty)
        reset_work();
    dirty = 0;
    struct store *s = work;
    struct run strict, lenient, again;
    run_ingest(s, kind, path_data, &o, 0, &strict);
    if (strict.rc == 0) {
        dirty = 1;
        /* Loaded: the same file again changes no count (upsert by id). */
        int64_t before[NTABLES], after[NTABLES];
        counts(s, before);
        run_ingest(s, kind, path_data, &o, 1, &again);
        FUZZ_CHECK(again.rc == 0, "second load of a file that loaded failed: %s", again.err);
        FUZZ_CHECK(again.st.loaded == strict.st.loaded && again.st.skipped == 0,
                   "second load: %llu loaded, %llu skipped; first %llu loaded", (unsigned long long)again.st.loaded,
                   (unsigned long long)again.st.skipped, (unsigned long long)strict.st.loaded);
        counts(s, after);
        for (size_t i = 0; i < NTABLES; i++)
            FUZZ_CHECK(before[i] == after[i], "%s: %lld rows, %lld after loading the same file again", tables[i],
                       (long long)before[i], (long long)after[i]);
    } else {
        run_ingest(s, kind, path_data, &o, 1, &lenient);
        dirty = lenient.rc == 0 && lenient.st.loaded > 0;
        FUZZ_CHECK(lenient.rc != 0 || lenient.st.skipped > 0,
                   "failed with skip_bad off (%s) but loaded with it on without skipping anything", strict.err);
    }
    return 0;
}
