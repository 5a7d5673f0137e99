/*
 * tok_encode_fuzz.c — libFuzzer target for tokenizer encoding and decoding of
 * arbitrary bytes, with a byte-level BPE vocabulary trained once at start-up
 * (LLVMFuzzerInitialize) on a built-in text and a small SentencePiece one.
 *
 * Invariants checked (abort on violation):
 *   - the pre-tokenizer's ASCII fast path splits exactly as PCRE2 alone does;
 *   - BPE: decode(encode(x)) == x for every x, without and with special-token
 *     parsing (then decoded with TOK_DECODE_SPECIAL); plain encoding never
 *     yields a control token and equals the textbook encoder's output;
 *     streaming decode, token by token, releases the same bytes in total and
 *     never stops inside a valid UTF-8 character once flushed;
 *   - SPM: encoding never fails (byte fallback covers every byte) and decodes
 *     back to x when x is valid UTF-8 without U+2581 (which SPM reads as a space).
 * ASan/UBSan and LeakSanitizer catch the rest.
 */
#include "core/buf.h"
#include "core/error.h"
#include "core/utf8.h"
#include "tok/tok.h"
#include "tok/tok_impl.h"
#include "tok/train.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct tok *bpe, *spm;
static struct tok_cache *bpe_cache;
static void *md_a, *md_b; /* PCRE2 match data for the pre-tokenizer comparison */

static const char training_text[] =
    "Will this crisper drawer fit my Frigidaire FFHS2622MS? It's 30\" wide and I've measured twice.\n"
    "Yes - it fits. The lid cracked after 2 weeks, though; the handle's fine. 5 stars \xe2\x98\x85\xe2\x98\x85.\n"
    "Caf\xc3\xa9 cr\xc3\xa8me: 12 cups in 10 minutes!! Don't buy the cheap one...   \n\n\tok\n";

static void build_spm(void)
{
    /* <unk> <s> </s>, the 256 byte tokens, a few pieces with scores */
    static const char *const pieces[] = {"\xe2\x96\x81", "e", "t", "a", "\xe2\x96\x81t", "he", "\xe2\x96\x81the",
                                         "in", "\xe2\x96\x81" "fit", "it", "fi", "\xe2\x96\x81" "f"};
    size_t np = sizeof(pieces) / sizeof(pieces[0]), n = 3 + 256 + np;
    const char **texts = calloc(n, sizeof(*texts));
    size_t *lens = calloc(n, sizeof(*lens));
    float *scores = calloc(n, sizeof(*scores));
    int32_t *types = calloc(n, sizeof(*types));
    static char bytes[256][8];
    texts[0] = "<unk>";
    types[0] = TOK_TYPE_UNKNOWN;
    texts[1] = "<s>";
    types[1] = TOK_TYPE_CONTROL;
    texts[2] = "</s>";
    types[2] = TOK_TYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
        texts[3 + b] = bytes[b];
        types[3 + b] = TOK_TYPE_BYTE;
    }
    for (size_t i = 0; i < np; i++) {
        texts[259 + i] = pieces[i];
        scores[259 + i] = -(float)i;
        types[259 + i] = TOK_TYPE_NORMAL;
    }
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(texts[i]);
    struct tok_spm_spec spec = {.tokens = texts, .lens = lens, .scores = scores, .types = types, .n = n, .bos = 1,
                                .eos = 2, .eot = -1, .unk = 0, .pad = -1, .add_bos = 1, .add_space_prefix = 1};
    char err[256];
    FUZZ_CHECK(tok_new_spm(&spm, &spec, err, sizeof(err)) == 0, "%s", err);
    free(texts);
    free(lens);
    free(scores);
    free(types);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    struct tok_trainer *tr;
    char err[256];
    FUZZ_CHECK(tok_trainer_new(&tr, err, sizeof(err)) == 0, "%s", err);
    for (int i = 0; i < 8; i++)
        FUZZ_CHECK(tok_trainer_feed(tr, training_text, sizeof(training_text) - 1) == 0, "feed");
    FUZZ_CHECK(tok_trainer_train(tr, 420, NULL, NULL, &bpe, err, sizeof(err)) == 0, "%s", err);
    tok_trainer_free(tr);
    bpe_cache = tok_cache_new(bpe);
    md_a = tok_match_data_new(bpe->re);
    md_b = tok_match_data_new(bpe->re);
    FUZZ_CHECK(bpe_cache && md_a && md_b, "cache");
    build_spm();
    return 0;
}

static void check_round_trip(const struct tok *t, const char *x, size_t n, const struct tok_ids *v, unsigned dflags,
                             const char *what)
{
    struct buf out;
    buf_init(&out, 0);
    FUZZ_CHECK(tok_decode(t, v->ids, v->len, dflags, &out) == 0, "%s: decode", what);
    FUZZ_CHECK(out.len == n && (n == 0 || memcmp(out.data, x, n) == 0), "%s: %zu bytes in, %zu out", what, n, out.len);
    buf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!bpe)
        LLVMFuzzerInitialize(NULL, NULL);
    const char *x = (const char *)data;
    struct tok_ids v, ref;
    tok_ids_init(&v, 0);
    tok_ids_init(&ref, 0);

    /* the ASCII fast path of the pre-tokenizer splits exactly as PCRE2 does */
    struct tok_pretok pa, pb;
    tok_pretok_init(&pa, bpe->re, md_a, x, size);
    tok_pretok_init(&pb, bpe->re, md_b, x, size);
    pb.ascii_fast = 1;
    size_t sa, la, sb, lb;
    int ra, rb;
    do {
        ra = tok_pretok_next(&pa, &sa, &la);
        rb = tok_pretok_next(&pb, &sb, &lb);
        FUZZ_CHECK(ra == rb && (!ra || (sa == sb && la == lb)), "PCRE2 word [%zu+%zu], fast path [%zu+%zu]", sa, la, sb,
                   lb);
    } while (ra);

    /* BPE, plain text */
    FUZZ_CHECK(tok_encode(bpe, bpe_cache, x, size, 0, &v) == 0, "bpe encode");
    FUZZ_CHECK(tok_encode_naive(bpe, x, size, &ref) == 0, "bpe naive encode");
    FUZZ_CHECK(v.len == ref.len && (v.len == 0 || memcmp(v.ids, ref.ids, v.len * sizeof(int32_t)) == 0),
               "heap and naive encoders differ (%zu vs %zu ids)", v.len, ref.len);
    for (size_t i = 0; i < v.len; i++)
        FUZZ_CHECK(tok_type_of(bpe, v.ids[i]) == TOK_TYPE_NORMAL, "control token %d from plain text", v.ids[i]);
    check_round_trip(bpe, x, size, &v, 0, "bpe");

    /* streaming decode gives the same bytes */
    struct tok_stream st;
    tok_stream_init(&st, 0);
    struct buf out;
    buf_init(&out, 0);
    for (size_t i = 0; i < v.len; i++)
        FUZZ_CHECK(tok_stream_push(bpe, &st, v.ids[i], &out) == 0, "stream push");
    FUZZ_CHECK(st.npend < 4, "held %zu bytes", st.npend);
    FUZZ_CHECK(tok_stream_flush(&st, &out) == 0, "stream flush");
    FUZZ_CHECK(out.len == size && (size == 0 || memcmp(out.data, x, size) == 0), "stream output differs");
    buf_release(&out);

    /* BPE with special tokens parsed: still lossless when they are rendered */
    v.len = 0;
    FUZZ_CHECK(tok_encode(bpe, bpe_cache, x, size, TOK_PARSE_SPECIAL, &v) == 0, "bpe encode special");
    check_round_trip(bpe, x, size, &v, TOK_DECODE_SPECIAL, "bpe special");

    /* SPM: never fails; lossless for valid UTF-8 without U+2581 */
    v.len = 0;
    FUZZ_CHECK(tok_encode(spm, NULL, x, size, 0, &v) == 0, "spm encode");
    if (utf8_valid(x, size) && !memmem(x, size, "\xe2\x96\x81", 3)) {
        /* invalid UTF-8 is not lossless in SPM, as in llama.cpp: a lead byte takes the next bytes
         * (even half of an escaped space) into one symbol, which falls back to raw bytes */
        struct buf sp;
        buf_init(&sp, 0);
        FUZZ_CHECK(tok_decode(spm, v.ids, v.len, 0, &sp) == 0, "spm decode");
        FUZZ_CHECK(sp.len == size && (size == 0 || memcmp(sp.data, x, size) == 0), "spm: %zu bytes in, %zu out", size,
                   sp.len);
        buf_release(&sp);
    }
    tok_ids_release(&v);
    tok_ids_release(&ref);
    return 0;
}
