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
 * Every input starts from a fresh store holding a fixed small catalog (ids P1,
 * P2 and 7), so reviews, Q&A, offers and orders can name existing products and
 * a run does not depend on the inputs before it.
 *
 * Invariants checked (abort on violation, as a crash):
 *   - on error, the message is non-empty and starts with the file path, the
 *     stats out-parameter is untouched and every table has its old row count
 *     (one file is one transaction), with skip_bad off and on;
 *   - on success, loaded + skipped >= 1, <= the payload's line count, skipped
 *     is 0 with skip_bad off, and on_skip was called once per skipped record
 *     with a message that starts with "path:";
 *   - skip_bad only turns bad records into skips: when a file fails with it off
 *     and loads with it on, something was skipped;
 *   - loading the same file again (upsert by id) leaves every count unchanged.
 * ASan/UBSan and LeakSanitizer catch the rest.
 *
 * RECORDS_FUZZ_VERBOSE=1 prints each load's outcome to stderr, to see what a
 * corpus file exercises.
 */
#include "core/error.h"
#include "store/ingest.h"
#include "store/store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "records_fuzz: invariant failed: %s: ", #cond);                                  \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fprintf(stderr, "\n");                                                                           \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static const char catalog[] =
    "{\"id\":\"P1\",\"title\":\"Trail running shoe\",\"brand\":\"Acme\",\"category\":[\"Shoes\",\"Running\"],"
    "\"bullets\":[\"Waterproof upper\",\"Vibram sole\"],\"attributes\":{\"size\":\"42\",\"weight_g\":280}}\n"
    "{\"id\":\"P2\",\"title\":\"Espresso machine\",\"description\":\"15 bar pump, steam wand.\"}\n"
    "{\"id\":7,\"title\":\"USB-C cable 2 m\",\"attributes\":{\"length\":\"2 m\",\"braided\":true}}\n";

static const char *const tables[] = {"products", "reviews", "questions", "answers", "offers",
                                     "orders", "order_lines", "order_events", "passages"};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

static int verbose;

struct skips {
    const char *path;
    uint64_t calls;
};

static void on_skip(void *ctx, const char *msg)
{
    struct skips *sk = ctx;
    size_t n = strlen(sk->path);
    CHECK(!strncmp(msg, sk->path, n) && msg[n] == ':', "skip message \"%s\" does not start with \"%s:\"", msg,
          sk->path);
    if (verbose)
        fprintf(stderr, "    skipped: %s\n", msg);
    sk->calls++;
}

static void counts(struct store *s, int64_t out[NTABLES])
{
    for (size_t i = 0; i < NTABLES; i++)
        CHECK(store_count(s, tables[i], &out[i]) == 0, "store_count(%s): %s", tables[i], store_errmsg(s));
}

/* Replace the memfd's contents with n bytes. */
static void put_file(int fd, const void *p, size_t n)
{
    CHECK(ftruncate(fd, 0) == 0, "ftruncate");
    size_t off = 0;
    while (off < n) {
        ssize_t w = pwrite(fd, (const char *)p + off, n - off, (off_t)off);
        CHECK(w > 0, "pwrite");
        off += (size_t)w;
    }
}

/* gzip n bytes into a fresh allocation. */
static unsigned char *gzip_bytes(const uint8_t *p, size_t n, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    CHECK(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
    size_t cap = deflateBound(&z, (uLong)n);
    unsigned char *out = malloc(cap);
    CHECK(out != NULL, "malloc");
    z.next_in = (Bytef *)(uintptr_t)p;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
    *outlen = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

/* Lines in the file as the reader sees it (gzip decoded): newlines, plus one
 * for a last line without a newline. Only meaningful when the file reads
 * cleanly, which a successful ingest implies. */
static uint64_t count_lines(const char *path)
{
    gzFile g = gzopen(path, "rb");
    CHECK(g != NULL, "gzopen %s", path);
    unsigned char b[8192];
    uint64_t lines = 0;
    int n, last = '\n';
    while ((n = gzread(g, b, sizeof(b))) > 0) {
        for (int i = 0; i < n; i++)
            lines += b[i] == '\n';
        last = b[n - 1];
    }
    gzclose(g);
    return lines + (last != '\n');
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
    struct skips sk = {path, 0};
    int64_t before[NTABLES], after[NTABLES];
    const struct ingest_stats sentinel = {0xdeadbeef, 0xfeedface};

    o.skip_bad = skip_bad;
    o.on_skip = on_skip;
    o.ctx = &sk;
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
        CHECK(r->rc < 0, "rc %d", r->rc);
        CHECK(r->err[0] != '\0', "empty error text (rc %d)", r->rc);
        CHECK(!strncmp(r->err, path, strlen(path)), "error \"%s\" does not start with the path", r->err);
        CHECK(r->st.loaded == sentinel.loaded && r->st.skipped == sentinel.skipped,
              "stats written on failure (%s)", r->err);
        counts(s, after);
        for (size_t i = 0; i < NTABLES; i++)
            CHECK(before[i] == after[i], "%s: %lld rows before, %lld after a failed load (skip_bad %d): %s",
                  tables[i], (long long)before[i], (long long)after[i], skip_bad, r->err);
        return;
    }
    uint64_t total = r->st.loaded + r->st.skipped, lines = count_lines(path);
    CHECK(total >= 1, "success with no records");
    CHECK(total <= lines, "%llu loaded + %llu skipped > %llu lines", (unsigned long long)r->st.loaded,
          (unsigned long long)r->st.skipped, (unsigned long long)lines);
    CHECK(skip_bad || r->st.skipped == 0, "%llu skipped with skip_bad off", (unsigned long long)r->st.skipped);
    CHECK(sk.calls == r->st.skipped, "on_skip called %llu times for %llu skipped", (unsigned long long)sk.calls,
          (unsigned long long)r->st.skipped);
}

static int fd_data = -1, fd_catalog = -1;
static char path_data[64], path_catalog[64];

static void setup(void)
{
    fd_data = memfd_create("records", 0);
    fd_catalog = memfd_create("catalog", 0);
    CHECK(fd_data >= 0 && fd_catalog >= 0, "memfd_create");
    snprintf(path_data, sizeof(path_data), "/proc/self/fd/%d", fd_data);
    snprintf(path_catalog, sizeof(path_catalog), "/proc/self/fd/%d", fd_catalog);
    put_file(fd_catalog, catalog, sizeof(catalog) - 1);
    const char *v = getenv("RECORDS_FUZZ_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;
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

    char msg[256];
    struct store *s;
    CHECK(store_open(&s, ":memory:", 0, msg, sizeof(msg)) == 0, "store_open: %s", msg);
    if (kind != INGEST_PRODUCTS) {
        struct ingest_opts co;
        struct run cr;
        memset(&co, 0, sizeof(co));
        run_ingest(s, INGEST_PRODUCTS, path_catalog, &co, 0, &cr);
        CHECK(cr.rc == 0 && cr.st.loaded == 3, "fixed catalog: %s", cr.err);
    }

    struct run strict, lenient, again;
    run_ingest(s, kind, path_data, &o, 0, &strict);
    if (strict.rc == 0) {
        /* Loaded: the same file again changes no count (upsert by id). */
        int64_t before[NTABLES], after[NTABLES];
        counts(s, before);
        run_ingest(s, kind, path_data, &o, 1, &again);
        CHECK(again.rc == 0, "second load of a file that loaded failed: %s", again.err);
        CHECK(again.st.loaded == strict.st.loaded && again.st.skipped == 0,
              "second load: %llu loaded, %llu skipped; first %llu loaded", (unsigned long long)again.st.loaded,
              (unsigned long long)again.st.skipped, (unsigned long long)strict.st.loaded);
        counts(s, after);
        for (size_t i = 0; i < NTABLES; i++)
            CHECK(before[i] == after[i], "%s: %lld rows, %lld after loading the same file again", tables[i],
                  (long long)before[i], (long long)after[i]);
    } else {
        run_ingest(s, kind, path_data, &o, 1, &lenient);
        CHECK(lenient.rc != 0 || lenient.st.skipped > 0,
              "failed with skip_bad off (%s) but loaded with it on without skipping anything", strict.err);
    }
    store_close(s);
    return 0;
}
