/*
 * query_fuzz.c — libFuzzer target for the shopper's query text: lex_terms()
 * (bytes -> FTS5 terms) and lex_search() over a small in-memory store.
 *
 * The input is the query, any bytes. The store (a few products, reviews and
 * Q&A whose words overlap the seed queries) is built once, in
 * LLVMFuzzerInitialize, and only read afterwards, so runs stay independent.
 * The search options (sources, one product or the catalog, k) are taken from a
 * hash of the input, so the same input always runs the same search.
 *
 * Invariants checked (abort on violation, as a crash):
 *   - lex_terms returns 0..max terms for max = LEX_MAX_TERMS and a small max;
 *     each is non-empty, valid UTF-8, has no byte below 0x80 that is not a
 *     letter or digit (so no space and none of FTS5's " * ( ) : - ^ + { }),
 *     appears once, and is not a stop word when stop words are dropped;
 *   - lex_search never fails on any text (in particular never reports an FTS5
 *     syntax error), returns at most k hits, best first, each with its
 *     strings set and, when restricted, from the one product asked for.
 * ASan/UBSan and LeakSanitizer catch the rest.
 */
#include "core/error.h"
#include "core/utf8.h"
#include "retrieval/lexical.h"
#include "store/ingest.h"
#include "store/store.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char products[] =
    "{\"id\":\"P1\",\"title\":\"Trail running shoe\",\"brand\":\"Acme\",\"category\":\"Shoes > Running\","
    "\"bullets\":[\"Waterproof upper\",\"Vibram sole for wet rock\"],\"attributes\":{\"size\":\"42\"}}\n"
    "{\"id\":\"P2\",\"title\":\"Espresso machine\",\"description\":\"15 bar pump, steam wand, 1.8 l tank. "
    "Not dishwasher safe.\"}\n"
    "{\"id\":\"P3\",\"title\":\"USB-C cable 2 m\",\"attributes\":{\"length\":\"2 m\",\"braided\":true}}\n"
    "{\"id\":\"P4\",\"title\":\"Caf\xc3\xa9 cr\xc3\xa8me coffee beans 1 kg\",\"bullets\":[\"Arabica\","
    "\"Medium roast \xe2\x98\x95\"]}\n"
    "{\"id\":\"P5\",\"title\":\"Near-field speaker AND amp\",\"description\":\"NEAR and OR and NOT are "
    "ordinary words here.\"}\n";
static const char reviews[] =
    "{\"id\":\"R1\",\"product_id\":\"P1\",\"rating\":5,\"title\":\"Great grip\","
    "\"text\":\"Runs small, order half a size up. Great on wet rock.\"}\n"
    "{\"product_id\":\"P2\",\"rating\":2,\"text\":\"The steam wand broke after a month.\"}\n"
    "{\"product_id\":\"P3\",\"text\":\"Charges my laptop at 60 W, cable feels sturdy.\"}\n";
static const char qa[] =
    "{\"product_id\":\"P1\",\"question\":\"Is it waterproof?\",\"answer\":\"Yes, the upper is.\"}\n"
    "{\"product_id\":\"P2\",\"question\":\"Is the tank dishwasher safe?\",\"answers\":[\"No.\","
    "{\"text\":\"Hand wash only\",\"votes\":3}]}\n"
    "{\"product_id\":\"P4\",\"question\":\"Whole beans or ground?\",\"answer\":\"Whole beans.\"}\n";

static const char *const product_ids[] = {"P1", "P2", "P3", "P4", "P5", "NOPE"};

static struct store *st;

static void load(enum ingest_kind kind, const char *text)
{
    int fd = memfd_create("query-fixture", 0);
    FUZZ_CHECK(fd >= 0, "memfd_create");
    size_t n = strlen(text);
    FUZZ_CHECK(write(fd, text, n) == (ssize_t)n, "write");
    char path[64], err[512];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct ingest_opts o;
    struct ingest_stats stats;
    memset(&o, 0, sizeof(o));
    int rc = ingest_file(st, kind, path, &o, &stats, err, sizeof(err));
    FUZZ_CHECK(rc == 0, "loading the fixed %s: %s", ingest_kind_name(kind), err);
    close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char msg[256];
    FUZZ_CHECK(store_open(&st, ":memory:", 0, msg, sizeof(msg)) == 0, "store_open: %s", msg);
    load(INGEST_PRODUCTS, products);
    load(INGEST_REVIEWS, reviews);
    load(INGEST_QA, qa);
    return 0;
}

static void check_terms(const char *text, size_t len, int drop_stop, size_t max)
{
    char **terms = NULL;
    int n = lex_terms(text, len, drop_stop, &terms, max);
    FUZZ_CHECK(n >= 0 && (size_t)n <= max, "lex_terms returned %d for max %zu", n, max);
    FUZZ_CHECK(terms != NULL, "no term array");
    for (int i = 0; i < n; i++) {
        const char *w = terms[i];
        size_t wl = strlen(w);
        FUZZ_CHECK(wl > 0, "term %d is empty", i);
        FUZZ_CHECK(utf8_valid(w, wl), "term %d is not valid UTF-8", i);
        for (size_t j = 0; j < wl; j++) {
            unsigned char ch = (unsigned char)w[j];
            FUZZ_CHECK(ch >= 0x80 || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z'),
                       "term %d \"%s\" has byte 0x%02x (only folded letters and digits below 0x80)", i, w, ch);
        }
        FUZZ_CHECK(!drop_stop || !lex_is_stopword(w), "stop word \"%s\" kept", w);
        for (int j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(terms[j], w) != 0, "term \"%s\" twice", w);
    }
    free(terms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!st)
        LLVMFuzzerInitialize(NULL, NULL);
    const char *text = (const char *)data;
    check_terms(text, size, 1, LEX_MAX_TERMS);
    check_terms(text, size, 0, LEX_MAX_TERMS);
    check_terms(text, size, 1, size % 4);

    /* lex_search reads a C string: cut at the first NUL, as a caller would. */
    char *q = malloc(size + 1);
    FUZZ_CHECK(q != NULL, "malloc");
    memcpy(q, data, size);
    q[size] = '\0';
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    struct lex_query lq = {
        .text = q,
        .sources = (int)(h & 7),
        .product_id = (h >> 3) & 1 ? product_ids[(h >> 4) % 6] : NULL,
        .k = (h >> 8) & 1 ? 1 + (h >> 9) % 20 : LEX_MAX_K,
    };
    struct lex_hit *hits = NULL;
    size_t n = 0;
    char err[512] = "";
    int rc = lex_search(st, &lq, &hits, &n, err, sizeof(err));
    FUZZ_CHECK(rc == 0, "lex_search failed (%d): %s", rc, err);
    FUZZ_CHECK(n <= lq.k, "%zu hits for k %zu", n, lq.k);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(hits[i].id && hits[i].source && hits[i].product_id && hits[i].title && hits[i].text,
                   "hit %zu has a NULL string", i);
        FUZZ_CHECK(i == 0 || hits[i - 1].score >= hits[i].score, "hits not best first at %zu", i);
        FUZZ_CHECK(!lq.product_id || !strcmp(hits[i].product_id, lq.product_id), "hit from %s, asked for %s",
                   hits[i].product_id, lq.product_id);
    }
    lex_hits_free(hits, n);
    free(q);
    return 0;
}
