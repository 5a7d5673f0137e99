/* tok_test.c — the GPT-2 pre-tokenizer, BPE and SPM encoding against
 * hand-checked vocabularies, lossless round trips, special tokens, streaming
 * decode, the chat format, training against the reference trainer, and GGUF
 * save -> load. */
#include <criterion/criterion.h>

#include "core/error.h"
#include "gguf/gguf.h"
#include "tok/tok.h"
#include "tok/tok_impl.h"
#include "tok/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---- */

/* Visible form of raw bytes (GPT-2 byte-to-unicode). */
static size_t visible(const char *raw, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += tok_utf8_put(out + o, tok_byte_to_cp((unsigned char)raw[i]));
    out[o] = '\0';
    return o;
}

/* A byte-level vocabulary: ids 0..255 are the bytes, then one token per merge
 * (left+right, given raw, in rank order), then Aisle's specials when asked. */
static struct tok *mk_bpe(const char *const (*m)[2], size_t nm, int specials)
{
    static const char *const sp[] = {TOK_ENDOFTEXT, TOK_SYSTEM, TOK_USER, TOK_ASSISTANT, TOK_END};
    size_t n = 256 + nm + (specials ? 5 : 0);
    char **tok = calloc(n, sizeof(*tok));
    size_t *lens = calloc(n, sizeof(*lens));
    int32_t *types = calloc(n, sizeof(*types));
    char **mer = calloc(nm + 1, sizeof(*mer));
    size_t *mlens = calloc(nm + 1, sizeof(*mlens));
    for (size_t b = 0; b < 256; b++) {
        char c = (char)b;
        tok[b] = malloc(8);
        lens[b] = visible(&c, 1, tok[b]);
        types[b] = TOK_TYPE_NORMAL;
    }
    for (size_t j = 0; j < nm; j++) {
        char raw[256];
        snprintf(raw, sizeof(raw), "%s%s", m[j][0], m[j][1]);
        tok[256 + j] = malloc(1024);
        lens[256 + j] = visible(raw, strlen(raw), tok[256 + j]);
        types[256 + j] = TOK_TYPE_NORMAL;
        char a[512], b[512];
        visible(m[j][0], strlen(m[j][0]), a);
        visible(m[j][1], strlen(m[j][1]), b);
        mer[j] = malloc(1100);
        mlens[j] = (size_t)sprintf(mer[j], "%s %s", a, b);
    }
    if (specials)
        for (size_t k = 0; k < 5; k++) {
            tok[256 + nm + k] = strdup(sp[k]);
            lens[256 + nm + k] = strlen(sp[k]);
            types[256 + nm + k] = TOK_TYPE_CONTROL;
        }
    int32_t eot = specials ? (int32_t)(256 + nm) : -1;
    struct tok_bpe_spec spec = {
        .tokens = (const char *const *)tok, .lens = lens, .types = types, .n = n,
        .merges = (const char *const *)mer, .mlens = mlens, .n_merges = nm,
        .bos = eot, .eos = eot, .eot = specials ? eot + 4 : -1, .pad = eot,
        .chat_template = specials ? tok_chat_template : NULL,
    };
    struct tok *t = NULL;
    char err[256] = "";
    int rc = tok_new_bpe(&t, &spec, err, sizeof(err));
    cr_assert_eq(rc, 0, "tok_new_bpe: %s", err);
    for (size_t i = 0; i < n; i++)
        free(tok[i]);
    for (size_t j = 0; j < nm; j++)
        free(mer[j]);
    free(tok);
    free(lens);
    free(types);
    free(mer);
    free(mlens);
    return t;
}

static void encode(const struct tok *t, const char *s, size_t n, unsigned flags, struct tok_ids *out)
{
    out->len = 0;
    cr_assert_eq(tok_encode(t, NULL, s, n, flags, out), 0);
}

static void assert_ids(const struct tok_ids *v, const int32_t *want, size_t n, const char *what)
{
    char got[512] = "";
    size_t o = 0;
    for (size_t i = 0; i < v->len && o < sizeof(got) - 16; i++)
        o += (size_t)snprintf(got + o, sizeof(got) - o, "%d ", v->ids[i]);
    cr_assert_eq(v->len, n, "%s: %zu ids, want %zu (got %s)", what, v->len, n, got);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(v->ids[i], want[i], "%s: id %zu is %d, want %d (got %s)", what, i, v->ids[i], want[i], got);
}

/* ---- the GPT-2 pre-tokenizer ---- */

static uint32_t rnd(void);

static void check_split(const char *pattern, const char *s, size_t n, const char *const *want, size_t nwant)
{
    void *re, *md;
    char err[128];
    cr_assert_eq(tok_regex_new(&re, pattern, err, sizeof(err)), 0, "%s", err);
    md = tok_match_data_new(re);
    /* PCRE2 alone, then (GPT-2) with the ASCII fast path */
    for (int fast = 0; fast <= (pattern == tok_gpt2_pattern); fast++) {
        struct tok_pretok it;
        tok_pretok_init(&it, re, md, s, n);
        it.ascii_fast = fast;
        size_t start, len, k = 0, covered = 0;
        while (tok_pretok_next(&it, &start, &len)) {
            cr_assert_lt(k, nwant, "more words than expected for \"%s\" (fast %d)", s, fast);
            cr_assert_eq(start, covered, "words tile the input");
            cr_assert(len == strlen(want[k]) && !memcmp(s + start, want[k], len),
                      "word %zu of \"%s\" is \"%.*s\", want \"%s\" (fast %d)", k, s, (int)len, s + start, want[k], fast);
            covered += len;
            k++;
        }
        cr_assert_eq(k, nwant, "\"%s\": %zu words, want %zu (fast %d)", s, k, nwant, fast);
        cr_assert_eq(covered, n);
    }
    tok_match_data_free(md);
    tok_regex_free(re);
}

#define SPLIT(s, ...)                                                                                                  \
    do {                                                                                                               \
        static const char *const w_[] = {__VA_ARGS__};                                                                 \
        check_split(tok_gpt2_pattern, s, sizeof(s) - 1, w_, sizeof(w_) / sizeof(w_[0]));                               \
    } while (0)

Test(tok_pretok, gpt2_golden_splits)
{
    SPLIT("Hello world's 123 foo!!", "Hello", " world", "'s", " 123", " foo", "!!");
    SPLIT("I've  got\n\nit", "I", "'ve", " ", " got", "\n", "\n", "it"); /* \s+(?!\S) backs off one */
    SPLIT("  hello", " ", " hello");
    SPLIT("x   ", "x", "   ");                                        /* trailing run stays whole */
    SPLIT("3.14", "3", ".", "14");
    SPLIT("don't DON'T", "don", "'t", " DON", "'", "T"); /* contractions are lower-case only */
    SPLIT("h\xc3\xa9llo w\xc3\xb6rld", "h\xc3\xa9llo", " w\xc3\xb6rld");
    SPLIT("\xf0\x9f\x9b\x92\xf0\x9f\x9b\x92 ok", "\xf0\x9f\x9b\x92\xf0\x9f\x9b\x92", " ok");
    SPLIT("price: $12.99/mo", "price", ":", " $", "12", ".", "99", "/", "mo");
    SPLIT("a\tb", "a", "\t", "b");
    SPLIT("\xd9\xa3\xd9\xa4 x", "\xd9\xa3\xd9\xa4", " x"); /* Arabic-Indic digits are \p{N} */
}

/* Cases from llama.cpp's models/ggml-vocab-gpt-2.gguf.inp and others, with the
 * splits Python's regex module gives for the GPT-2 pattern (checked by hand
 * with regex 2026.5.9; a 20,000-string differential run agreed everywhere). */
Test(tok_pretok, agrees_with_python_regex)
{
    SPLIT("\n =", "\n", " =");
    SPLIT("' era", "'", " era");
    SPLIT("3..3 333", "3", "..", "3", " 333");
    SPLIT("We'Ve a'lL", "We", "'", "Ve", " a", "'", "lL");
    SPLIT("   Hello\n    Hello", "  ", " Hello", "\n   ", " Hello");
    SPLIT("Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", "Hello", ",", " y", "'", "all", "!", " How", " are",
          " you", " 😁", " ?", "我想在apple工作", "1314151", "天", "～");
    SPLIT("\u00a0\u3000x\u2028", "\u00a0", "\u3000", "x", "\u2028"); /* Unicode spaces are \s */
    /* U+180E is not White_Space since Unicode 6.3 (PCRE2 still counts it: see bpe.c) */
    SPLIT("a\u180e b", "a", "\u180e", " b");
    SPLIT("x \u180e\u180e y", "x", " \u180e\u180e", " y");
}

#define SPLIT3(s, ...)                                                                                                 \
    do {                                                                                                               \
        static const char *const w_[] = {__VA_ARGS__};                                                                 \
        check_split(tok_llama3_pattern, s, sizeof(s) - 1, w_, sizeof(w_) / sizeof(w_[0]));                             \
    } while (0)

Test(tok_pretok, llama3_golden_splits)
{
    SPLIT3("3333333 x", "333", "333", "3", " x");       /* digits in threes */
    SPLIT3("Hello\n\nworld", "Hello", "\n\n", "world"); /* newlines stay together */
    SPLIT3("I'M here  \n\n  now", "I", "'M", " here", "  \n\n", " ", " now");
    SPLIT3("$12.99/mo", "$", "12", ".", "99", "/mo"); /* one non-letter may lead a word */
}

Test(tok_pretok, invalid_utf8_bytes_become_words)
{
    SPLIT("a\xff" "b", "a", "\xff", "b");
    SPLIT("ab\xc3(cd", "ab", "\xc3", "(", "cd");      /* truncated 2-byte sequence */
    SPLIT("\xed\xa0\x80x", "\xed\xa0\x80", "x");     /* a surrogate: three invalid bytes */
    SPLIT("x\xe2\x82", "x", "\xe2\x82");              /* cut off at the end */
    static const char nul[] = {'a', 0, 'b'};
    static const char *const w[] = {"a", "", "b"};
    (void)w;
    /* NUL is a valid character matched by [^\s\p{L}\p{N}] */
    void *re, *md;
    cr_assert_eq(tok_regex_new(&re, tok_gpt2_pattern, NULL, 0), 0);
    md = tok_match_data_new(re);
    struct tok_pretok it;
    tok_pretok_init(&it, re, md, nul, 3);
    size_t s, l, k = 0;
    while (tok_pretok_next(&it, &s, &l))
        k++;
    cr_assert_eq(k, 3);
    tok_match_data_free(md);
    tok_regex_free(re);
}

/* The ASCII fast path must split exactly as PCRE2 does: all 128 ASCII classes,
 * then random text that mixes ASCII with the non-ASCII bytes that stop it. */
Test(tok_pretok, ascii_fast_path_equals_pcre2)
{
    void *re;
    cr_assert_eq(tok_regex_new(&re, tok_gpt2_pattern, NULL, 0), 0);
    void *md_a = tok_match_data_new(re), *md_b = tok_match_data_new(re);
    static const char *const pieces[] = {"a", "Z", "q", "7", "0", " ", " ", "  ", "\n", "\t", "\r\n", "\v", "\f", "'",
                                         "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'l", "!", "?!", ".", "$",
                                         "\x01", "\x1c", "\x1f", "\x7f", "_", "-", "\xc3\xa9", "\xc2\xa0", "\xc2\xb2",
                                         "\xe2\x80\x94", "\xe1\xa0\x8e", "\xff", "\xc3", "\xf0\x9f\x9b\x92", "\xe3\x80\x80"};
    size_t np = sizeof(pieces) / sizeof(pieces[0]);
    char s[512];
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = 0;
        int parts = iter < 128 ? 0 : 1 + (int)(rnd() % 12);
        if (iter < 128) { /* every ASCII byte alone, then between letters */
            s[n++] = (char)iter;
            if (iter % 2) {
                s[n++] = 'x';
                s[n++] = (char)iter;
                s[n++] = ' ';
            }
        }
        for (int k = 0; k < parts; k++) {
            /* mostly ASCII pieces, sometimes a non-ASCII one */
            const char *p = pieces[rnd() % (rnd() % 4 ? 33 : np)];
            size_t l = strlen(p);
            memcpy(s + n, p, l);
            n += l;
        }
        struct tok_pretok a, b;
        tok_pretok_init(&a, re, md_a, s, n);
        tok_pretok_init(&b, re, md_b, s, n);
        b.ascii_fast = 1;
        size_t sa, la, sb, lb;
        int ra, rb;
        do {
            ra = tok_pretok_next(&a, &sa, &la);
            rb = tok_pretok_next(&b, &sb, &lb);
            cr_assert(ra == rb && (!ra || (sa == sb && la == lb)),
                      "iteration %d \"%.*s\": PCRE2 word [%zu+%zu], fast path [%zu+%zu]", iter, (int)n, s, sa, la, sb, lb);
        } while (ra);
    }
    tok_match_data_free(md_a);
    tok_match_data_free(md_b);
    tok_regex_free(re);
}

Test(tok_pretok, byte_map_is_a_bijection)
{
    int seen[324] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tok_byte_to_cp((unsigned char)b);
        cr_assert_lt(cp, 324u);
        cr_assert_eq(seen[cp]++, 0);
        cr_assert_eq(tok_cp_to_byte(cp), b);
    }
    cr_assert_eq(tok_byte_to_cp(' '), 0x120, "space is U+0120 'G with dot'");
    cr_assert_eq(tok_byte_to_cp('\n'), 0x10A);
    cr_assert_eq(tok_byte_to_cp('A'), 'A');
    cr_assert_eq(tok_cp_to_byte(0x2581), -1);
}

/* ---- BPE with hand-checked vocabularies ---- */

Test(tok_bpe, merges_apply_by_rank)
{
    /* ids: 256 "he", 257 "ll", 258 "hell", 259 "hello", 260 " w", 261 "or", 262 " wor", 263 "ld" */
    static const char *const m[][2] = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"},
                                       {" ", "w"}, {"o", "r"}, {" w", "or"}, {"l", "d"}};
    struct tok *t = mk_bpe(m, 8, 0);
    struct tok_ids v;
    tok_ids_init(&v, 0);
    encode(t, "hello world", 11, 0, &v);
    assert_ids(&v, (int32_t[]){259, 262, 263}, 3, "hello world");
    encode(t, "hellhole", 8, 0, &v);
    assert_ids(&v, (int32_t[]){258, 'h', 'o', 'l', 'e'}, 5, "hellhole");
    encode(t, "Hello", 5, 0, &v);
    assert_ids(&v, (int32_t[]){'H', 'e', 257, 'o'}, 4, "no merge for capital H");
    encode(t, "", 0, 0, &v);
    cr_assert_eq(v.len, 0);
    tok_ids_release(&v);
    tok_free(t);

    /* rank, not position, decides: "llo" with (l,o) ranked first gives l + lo */
    static const char *const m2[][2] = {{"l", "o"}, {"l", "l"}};
    t = mk_bpe(m2, 2, 0);
    tok_ids_init(&v, 0);
    encode(t, "llo", 3, 0, &v);
    assert_ids(&v, (int32_t[]){'l', 256}, 2, "llo with lo first");
    tok_ids_release(&v);
    tok_free(t);
    static const char *const m3[][2] = {{"l", "l"}, {"l", "o"}};
    t = mk_bpe(m3, 2, 0);
    tok_ids_init(&v, 0);
    encode(t, "llo", 3, 0, &v);
    assert_ids(&v, (int32_t[]){256, 'o'}, 2, "llo with ll first");
    tok_ids_release(&v);
    tok_free(t);
}

Test(tok_bpe, llama3_whole_word_tokens_skip_merges)
{
    /* "abc" is a token no merge reaches: Llama 3 (ignore_merges) takes it whole */
    const char *texts[259];
    size_t lens[259];
    char bytes[256][4];
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        lens[b] = visible(&c, 1, bytes[b]);
        texts[b] = bytes[b];
    }
    texts[256] = "ab";
    texts[257] = "abc";
    texts[258] = "<|begin_of_text|>";
    for (int i = 256; i < 259; i++)
        lens[i] = strlen(texts[i]);
    int32_t types[259];
    for (int i = 0; i < 259; i++)
        types[i] = i == 258 ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
    const char *merges[] = {"a b"};
    size_t mlens[] = {3};
    struct tok_bpe_spec spec = {.tokens = texts, .lens = lens, .types = types, .n = 259, .merges = merges,
                                .mlens = mlens, .n_merges = 1, .bos = 258, .eos = -1, .eot = -1, .pad = -1,
                                .add_bos = 1, .pre = "llama-bpe"};
    struct tok *t;
    char err[256];
    cr_assert_eq(tok_new_bpe(&t, &spec, err, sizeof(err)), 0, "%s", err);
    cr_assert(tok_pre_known(t));
    struct tok_ids v, ref;
    tok_ids_init(&v, 0);
    tok_ids_init(&ref, 0);
    encode(t, "abc abcd", 8, TOK_ADD_SPECIAL, &v);
    assert_ids(&v, (int32_t[]){258, 257, ' ', 256, 'c', 'd'}, 6, "llama-bpe");
    cr_assert_eq(tok_encode_naive(t, "abc abcd", 8, &ref), 0);
    assert_ids(&ref, (int32_t[]){257, ' ', 256, 'c', 'd'}, 5, "the reference encoder agrees");
    tok_free(t);
    spec.pre = "gpt-2";
    cr_assert_eq(tok_new_bpe(&t, &spec, err, sizeof(err)), 0, "%s", err);
    encode(t, "abc", 3, 0, &v);
    assert_ids(&v, (int32_t[]){256, 'c'}, 2, "gpt-2 merges");
    tok_free(t);
    spec.pre = "qwen2";
    cr_assert_eq(tok_new_bpe(&t, &spec, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(tok_pre_known(t), "an unknown pre-tokenizer is reported");
    tok_free(t);
    tok_ids_release(&v);
    tok_ids_release(&ref);
}

Test(tok_bpe, overlapping_pairs_merge_left_to_right)
{
    static const char *const m[][2] = {{"a", "a"}, {"aa", "aa"}};
    struct tok *t = mk_bpe(m, 2, 0);
    struct tok_ids v;
    tok_ids_init(&v, 0);
    encode(t, "aaa", 3, 0, &v);
    assert_ids(&v, (int32_t[]){256, 'a'}, 2, "aaa");
    encode(t, "aaaaa", 5, 0, &v);
    assert_ids(&v, (int32_t[]){257, 'a'}, 2, "aaaaa");
    encode(t, "aaaaaa", 6, 0, &v);
    assert_ids(&v, (int32_t[]){257, 256}, 2, "aaaaaa");
    tok_ids_release(&v);
    tok_free(t);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* A vocabulary trained on a small English+bytes corpus, for property tests. */
static struct tok *trained(size_t vocab)
{
    static const char corpus[] =
        "The crisper drawer fits most Frigidaire refrigerators. It's sturdy, and the price was right!\n"
        "Will this fit my fridge? Yes, it fits the FFHS2622MS model; I've had mine for 3 years.\n"
        "Great coffee maker \xe2\x80\x94 brews 12 cups in 10 minutes. Caf\xc3\xa9 quality, 5 stars \xe2\x98\x85\xe2\x98\x85.\n"
        "Don't buy the cheap one: the lid cracked after 2 weeks and the handle broke.\n";
    struct tok_trainer *tr;
    cr_assert_eq(tok_trainer_new(&tr, NULL, 0), 0);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(tok_trainer_feed(tr, corpus, sizeof(corpus) - 1), 0);
    struct tok *t;
    char err[256];
    cr_assert_eq(tok_trainer_train(tr, vocab, NULL, NULL, &t, err, sizeof(err)), 0, "%s", err);
    tok_trainer_free(tr);
    return t;
}

Test(tok_bpe, random_bytes_round_trip_and_match_the_reference_encoder)
{
    struct tok *t = trained(400);
    struct tok_cache *c = tok_cache_new(t);
    struct tok_ids v, ref;
    tok_ids_init(&v, 0);
    tok_ids_init(&ref, 0);
    struct buf out;
    buf_init(&out, 0);
    static const char alphabet[] = "the fits crisper drawer \xc3\xa9\xe2\x80\x94'sS 0123\n\t!?";
    char s[600];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = rnd() % 500;
        int mode = iter % 3;
        for (size_t i = 0; i < n; i++)
            s[i] = mode == 0 ? (char)rnd() : mode == 1 ? alphabet[rnd() % (sizeof(alphabet) - 1)]
                                                       : (rnd() % 8 ? alphabet[rnd() % (sizeof(alphabet) - 1)] : (char)rnd());
        v.len = ref.len = 0;
        cr_assert_eq(tok_encode(t, c, s, n, 0, &v), 0);
        cr_assert_eq(tok_encode_naive(t, s, n, &ref), 0);
        cr_assert_eq(v.len, ref.len, "iteration %d: heap encoder and encoder.py-style reference differ", iter);
        cr_assert_eq(memcmp(v.ids, ref.ids, v.len * sizeof(int32_t)), 0, "iteration %d", iter);
        buf_reset(&out);
        cr_assert_eq(tok_decode(t, v.ids, v.len, 0, &out), 0);
        cr_assert_eq(out.len, n, "iteration %d: decode(encode(x)) has %zu bytes, x has %zu", iter, out.len, n);
        cr_assert_eq(memcmp(out.data ? out.data : "", s, n), 0, "iteration %d: bytes differ", iter);
        for (size_t i = 0; i < v.len; i++)
            cr_assert(tok_type_of(t, v.ids[i]) == TOK_TYPE_NORMAL, "ordinary text never yields a special token");
    }
    buf_release(&out);
    tok_ids_release(&v);
    tok_ids_release(&ref);
    tok_cache_free(c);
    tok_free(t);
}

Test(tok_bpe, long_words_and_cache_agree)
{
    struct tok *t = trained(350);
    size_t n = 200000;
    char *s = malloc(n);
    for (size_t i = 0; i < n; i++)
        s[i] = i % 1000 == 999 ? 'x' : ' '; /* long whitespace words */
    struct tok_ids a, b;
    tok_ids_init(&a, 0);
    tok_ids_init(&b, 0);
    struct tok_cache *c = tok_cache_new(t);
    cr_assert_eq(tok_encode(t, c, s, n, 0, &a), 0);
    cr_assert_eq(tok_encode_naive(t, s, n, &b), 0);
    cr_assert_eq(a.len, b.len);
    cr_assert_eq(memcmp(a.ids, b.ids, a.len * 4), 0);
    /* the same text again through the warm cache */
    a.len = 0;
    cr_assert_eq(tok_encode(t, c, s, n, 0, &a), 0);
    cr_assert_eq(memcmp(a.ids, b.ids, a.len * 4), 0);
    /* more distinct words than the cache holds: it starts over and stays right */
    struct buf many;
    buf_init(&many, 0);
    for (int i = 0; i < 60000; i++)
        buf_printf(&many, " fit%dx%c", i * 7, "abcdefgh"[i % 8]);
    a.len = b.len = 0;
    cr_assert_eq(tok_encode(t, c, many.data, many.len, 0, &a), 0);
    cr_assert_eq(tok_encode(t, c, many.data, many.len, 0, &a), 0);
    cr_assert_eq(tok_encode_naive(t, many.data, many.len, &b), 0);
    cr_assert_eq(tok_encode_naive(t, many.data, many.len, &b), 0);
    cr_assert_eq(a.len, b.len);
    cr_assert_eq(memcmp(a.ids, b.ids, a.len * 4), 0);
    buf_release(&many);
    /* a capped output vector stops with ETOOBIG */
    struct tok_ids capped;
    tok_ids_init(&capped, 10);
    cr_assert_eq(tok_encode(t, c, s, n, 0, &capped), AISLE_ETOOBIG);
    cr_assert_eq(capped.len, 10);
    tok_ids_release(&capped);
    tok_cache_free(c);
    tok_ids_release(&a);
    tok_ids_release(&b);
    free(s);
    tok_free(t);
}

/* ---- special tokens, chat format, streaming ---- */

Test(tok_special, only_parsed_when_asked)
{
    struct tok *t = trained(300);
    int32_t user = tok_find(t, TOK_USER, strlen(TOK_USER)), end = tok_find(t, TOK_END, strlen(TOK_END));
    cr_assert_geq(user, 0);
    cr_assert_eq(tok_type_of(t, user), TOK_TYPE_CONTROL);
    cr_assert_eq(tok_eot(t), end);
    cr_assert(tok_is_eog(t, end));
    cr_assert(tok_is_eog(t, tok_eos(t)));
    const char *s = "<|user|>\nhi<|end|>\n";
    struct tok_ids v;
    tok_ids_init(&v, 0);
    encode(t, s, strlen(s), 0, &v);
    for (size_t i = 0; i < v.len; i++)
        cr_assert_eq(tok_type_of(t, v.ids[i]), TOK_TYPE_NORMAL, "no control token from plain text");
    struct buf out;
    buf_init(&out, 0);
    cr_assert_eq(tok_decode(t, v.ids, v.len, 0, &out), 0);
    cr_assert_str_eq(out.data, s);

    encode(t, s, strlen(s), TOK_PARSE_SPECIAL, &v);
    cr_assert_eq(v.ids[0], user);
    cr_assert_eq(v.ids[v.len - 2], end);
    buf_reset(&out);
    cr_assert_eq(tok_decode(t, v.ids, v.len, 0, &out), 0);
    cr_assert_str_eq(out.data, "\nhi\n", "control tokens render as nothing by default");
    buf_reset(&out);
    cr_assert_eq(tok_decode(t, v.ids, v.len, TOK_DECODE_SPECIAL, &out), 0);
    cr_assert_str_eq(out.data, s);

    /* a partial special token is ordinary text */
    encode(t, "<|use", 5, TOK_PARSE_SPECIAL, &v);
    for (size_t i = 0; i < v.len; i++)
        cr_assert_eq(tok_type_of(t, v.ids[i]), TOK_TYPE_NORMAL);
    buf_release(&out);
    tok_ids_release(&v);
    tok_free(t);
}

Test(tok_special, chat_format_matches_the_template_and_tokenizes)
{
    struct tok_chat_msg msgs[] = {{"system", "You help shoppers."}, {"user", "Does it fit?"}, {"assistant", "Yes."},
                                  {"user", "Thanks"}};
    struct buf b;
    buf_init(&b, 0);
    cr_assert_eq(tok_chat_format(msgs, 4, 1, &b), 0);
    cr_assert_str_eq(b.data, "<|system|>\nYou help shoppers.<|end|>\n<|user|>\nDoes it fit?<|end|>\n"
                             "<|assistant|>\nYes.<|end|>\n<|user|>\nThanks<|end|>\n<|assistant|>\n");
    struct tok_chat_msg bad = {"tool", "x"};
    cr_assert_eq(tok_chat_format(&bad, 1, 0, &b), AISLE_EINVAL);
    /* llama.cpp picks its Phi-3 formatter for a template with these markers */
    cr_assert(strstr(tok_chat_template, "<|assistant|>") && strstr(tok_chat_template, "<|end|>"));
    cr_assert_null(strstr(tok_chat_template, "<|im_start|>"));
    cr_assert_null(strstr(tok_chat_template, "[INST]"));

    struct tok *t = trained(300);
    struct tok_ids v;
    tok_ids_init(&v, 0);
    encode(t, b.data, b.len, TOK_PARSE_SPECIAL, &v);
    size_t ncontrol = 0;
    for (size_t i = 0; i < v.len; i++)
        ncontrol += tok_type_of(t, v.ids[i]) == TOK_TYPE_CONTROL;
    cr_assert_eq(ncontrol, 9, "4 role markers + 4 ends + the generation prompt");
    cr_assert_eq(v.ids[v.len - 2], tok_find(t, TOK_ASSISTANT, strlen(TOK_ASSISTANT)));
    tok_ids_release(&v);
    buf_release(&b);
    tok_free(t);
}

Test(tok_special, stream_releases_whole_characters)
{
    static const char *const none[][2] = {{"", ""}};
    struct tok *t = mk_bpe(none, 0, 1); /* bytes only: every multi-byte character spans tokens */
    const char s[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x9b\x92 \xff\xc3(\xe2\x82";
    struct tok_ids v;
    tok_ids_init(&v, 0);
    encode(t, s, sizeof(s) - 1, 0, &v);
    cr_assert_eq(v.len, sizeof(s) - 1);
    struct tok_stream st;
    tok_stream_init(&st, 0);
    struct buf out;
    buf_init(&out, 0);
    size_t sizes[32];
    for (size_t i = 0; i < v.len; i++) {
        cr_assert_eq(tok_stream_push(t, &st, v.ids[i], &out), 0);
        sizes[i] = out.len;
    }
    /* 'a' at once; é after its 2nd byte; € after its 3rd; the cart after its 4th */
    cr_assert_eq(sizes[0], 1);
    cr_assert_eq(sizes[1], 1);
    cr_assert_eq(sizes[2], 3);
    cr_assert_eq(sizes[4], 3);
    cr_assert_eq(sizes[5], 6);
    cr_assert_eq(sizes[8], 6);
    cr_assert_eq(sizes[9], 10);
    cr_assert_eq(sizes[11], 12, "an invalid byte is released at once");
    cr_assert_eq(sizes[12], 12, "a lead byte is held");
    cr_assert_eq(sizes[13], 14, "... and released with '(' when it cannot complete");
    cr_assert_eq(sizes[15], 14, "a truncated character at the end is held");
    cr_assert_eq(tok_stream_flush(&st, &out), 0);
    cr_assert_eq(out.len, sizeof(s) - 1);
    cr_assert_eq(memcmp(out.data, s, out.len), 0);
    buf_release(&out);
    tok_ids_release(&v);
    tok_free(t);
}

/* ---- training ---- */

Test(tok_train, textbook_example)
{
    /* Wikipedia's BPE example: aaabdaaabac. (a,a) occurs 4 times; then (a,b)
     * and (aa,a) tie at 2 and the smaller ids (97,98) win; then (aa,ab). */
    struct tok_trainer *tr;
    cr_assert_eq(tok_trainer_new(&tr, NULL, 0), 0);
    cr_assert_eq(tok_trainer_feed(tr, "aaabdaaabac", 11), 0);
    struct tok *t;
    char err[256];
    cr_assert_eq(tok_trainer_train(tr, 256 + 3 + TOK_N_AISLE_SPECIALS, NULL, NULL, &t, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tok_n_merges(t), 3);
    cr_assert_eq(tok_n_vocab(t), 264);
    size_t len;
    const char *s = tok_text(t, 256, &len);
    cr_assert(len == 2 && !memcmp(s, "aa", 2));
    s = tok_text(t, 257, &len);
    cr_assert(len == 2 && !memcmp(s, "ab", 2));
    s = tok_text(t, 258, &len);
    cr_assert(len == 4 && !memcmp(s, "aaab", 4));
    s = tok_text(t, 259, &len);
    cr_assert(len == strlen(TOK_ENDOFTEXT) && !memcmp(s, TOK_ENDOFTEXT, len));
    cr_assert_eq(tok_bos(t), 259);
    struct tok_ids v;
    tok_ids_init(&v, 0);
    encode(t, "aaabdaaabac", 11, 0, &v);
    assert_ids(&v, (int32_t[]){258, 'd', 258, 'a', 'c'}, 5, "the training word");
    /* bytes are visible-form tokens: token for ' ' is U+0120 */
    s = tok_text(t, ' ', &len);
    cr_assert(len == 2 && !memcmp(s, "\xc4\xa0", 2));
    /* no more pairs: training stops early with a smaller vocabulary */
    struct tok *t2;
    cr_assert_eq(tok_trainer_train(tr, 1000, NULL, NULL, &t2, err, sizeof(err)), 0);
    cr_assert_lt(tok_n_vocab(t2), 1000);
    cr_assert_eq(tok_trainer_train(tr, 100, NULL, NULL, &t2, err, sizeof(err)), AISLE_EINVAL);
    tok_free(t2);
    tok_ids_release(&v);
    tok_free(t);
    tok_trainer_free(tr);
}

static void assert_same_vocab(const struct tok *a, const struct tok *b)
{
    cr_assert_eq(tok_n_vocab(a), tok_n_vocab(b));
    cr_assert_eq(tok_n_merges(a), tok_n_merges(b));
    for (size_t i = 0; i < tok_n_vocab(a); i++) {
        size_t la, lb;
        const char *sa = tok_text(a, (int32_t)i, &la), *sb = tok_text(b, (int32_t)i, &lb);
        cr_assert(la == lb && !memcmp(sa, sb, la), "token %zu: \"%.*s\" vs \"%.*s\"", i, (int)la, sa, (int)lb, sb);
        cr_assert_eq(tok_type_of(a, (int32_t)i), tok_type_of(b, (int32_t)i));
        cr_assert_eq(a->tokens[i].score, b->tokens[i].score);
    }
    for (size_t m = 0; m < tok_n_merges(a); m++) {
        cr_assert_eq(a->merge_pairs[m][0], b->merge_pairs[m][0], "merge %zu", m);
        cr_assert_eq(a->merge_pairs[m][1], b->merge_pairs[m][1], "merge %zu", m);
    }
}

Test(tok_train, incremental_equals_naive_recount)
{
    /* text with repeats, ties, runs ("aaaa", "    ") and invalid bytes */
    struct tok_trainer *tr;
    cr_assert_eq(tok_trainer_new(&tr, NULL, 0), 0);
    static const char *const words[] = {"the", "fridge", "drawer", "fits", "aaaa", "aaa", "banana", "bandana",
                                        "caf\xc3\xa9", "\xff\xfe", "12", "345", "!!", "    ", "'s", "x"};
    char line[4096];
    for (int i = 0; i < 400; i++) {
        size_t o = 0;
        for (int k = 0; k < 30; k++)
            o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s", rnd() % 3 ? " " : "",
                                  words[rnd() % (sizeof(words) / sizeof(words[0]))]);
        cr_assert_eq(tok_trainer_feed(tr, line, o), 0);
    }
    for (size_t vocab = 270; vocab <= 420; vocab += 75) {
        struct tok *fast, *naive;
        char err[256];
        cr_assert_eq(tok_trainer_train(tr, vocab, NULL, NULL, &fast, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(tok_trainer_train_naive(tr, vocab, &naive, err, sizeof(err)), 0, "%s", err);
        assert_same_vocab(fast, naive);
        tok_free(fast);
        tok_free(naive);
    }
    tok_trainer_free(tr);
}

Test(tok_train, special_texts_in_the_corpus_stay_special)
{
    /* the GPT-2 pre-tokenizer splits "<|user|>" into "<|", "user", "|>", so no merge
     * can make a normal token with a special token's text (which llama.cpp's
     * text->id map would resolve to the control token) */
    struct tok_trainer *tr;
    cr_assert_eq(tok_trainer_new(&tr, NULL, 0), 0);
    const char *chat = "<|system|>\nBe brief.<|end|>\n<|user|>\nDoes it fit?<|end|>\n<|assistant|>\nYes.<|end|>\n"
                       "<|endoftext|>";
    for (int i = 0; i < 500; i++)
        cr_assert_eq(tok_trainer_feed(tr, chat, strlen(chat)), 0);
    struct tok *t;
    cr_assert_eq(tok_trainer_train(tr, 2000, NULL, NULL, &t, NULL, 0), 0);
    for (size_t i = 0; i < tok_n_vocab(t); i++) {
        size_t len;
        const char *s = tok_text(t, (int32_t)i, &len);
        cr_assert_eq(tok_find(t, s, len), (int32_t)i, "token %zu \"%.*s\" has a twin", i, (int)len, s);
    }
    struct tok_ids v;
    tok_ids_init(&v, 0);
    encode(t, chat, strlen(chat), 0, &v);
    for (size_t i = 0; i < v.len; i++)
        cr_assert_eq(tok_type_of(t, v.ids[i]), TOK_TYPE_NORMAL);
    tok_ids_release(&v);
    tok_free(t);
    tok_trainer_free(tr);
}

Test(tok_bpe, duplicate_texts_resolve_to_the_last_as_in_llama_cpp)
{
    static const char *const m[][2] = {{"a", "b"}};
    struct tok *t = mk_bpe(m, 1, 0);
    cr_assert_eq(tok_find(t, "ab", 2), 256);
    tok_free(t);
    const char *texts[258];
    size_t lens[258];
    char bytes[256][4];
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        lens[b] = visible(&c, 1, bytes[b]);
        texts[b] = bytes[b];
    }
    texts[256] = texts[257] = "ab";
    lens[256] = lens[257] = 2;
    struct tok_bpe_spec spec = {.tokens = texts, .lens = lens, .n = 258, .bos = -1, .eos = -1, .eot = -1, .pad = -1};
    char err[128];
    cr_assert_eq(tok_new_bpe(&t, &spec, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tok_find(t, "ab", 2), 257);
    tok_free(t);
}

static int count_progress(void *ctx, size_t done, size_t total)
{
    size_t *calls = ctx;
    cr_assert_leq(done, total);
    (*calls)++;
    return 0;
}

Test(tok_train, reports_progress)
{
    struct tok_trainer *tr;
    cr_assert_eq(tok_trainer_new(&tr, NULL, 0), 0);
    for (int i = 0; i < 300; i++) {
        char w[64];
        int n = snprintf(w, sizeof(w), "word%d thing%d ", i * 7919 % 1000, i % 37);
        cr_assert_eq(tok_trainer_feed(tr, w, (size_t)n), 0);
    }
    struct tok *t;
    size_t calls = 0;
    cr_assert_eq(tok_trainer_train(tr, 400, count_progress, &calls, &t, NULL, 0), 0);
    cr_assert_geq(calls, 2);
    struct tok_train_stats st;
    tok_trainer_stats(tr, &st);
    cr_assert_gt(st.bytes, 0);
    cr_assert_leq(st.distinct, st.words);
    cr_assert_leq(st.distinct_bytes, st.bytes);
    tok_free(t);
    tok_trainer_free(tr);
}

/* ---- GGUF ---- */

static char *tmp_path(const char *name)
{
    char *p = malloc(256);
    snprintf(p, 256, "/tmp/aisle-tok-%d-%s", (int)getpid(), name);
    return p;
}

/* Save t to a GGUF file, open it (*g, caller closes) and load it back. */
static struct tok *reload(const struct tok *t, struct gguf **g)
{
    struct gguf_writer *w = gguf_writer_new();
    cr_assert_eq(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    cr_assert_eq(tok_save_gguf(t, w), 0);
    char *path = tmp_path("rt.gguf"), err[256];
    cr_assert_eq(gguf_writer_write(w, path, err, sizeof(err)), 0, "%s", err);
    gguf_writer_free(w);
    cr_assert_eq(gguf_open(g, path, err, sizeof(err)), 0, "%s", err);
    unlink(path); /* the map stays valid */
    free(path);
    struct tok *u;
    cr_assert_eq(tok_load_gguf(&u, *g, err, sizeof(err)), 0, "%s", err);
    return u;
}

static void assert_same_encoding(const struct tok *t, const struct tok *u, const char *s, unsigned flags)
{
    struct tok_ids a, b;
    tok_ids_init(&a, 0);
    tok_ids_init(&b, 0);
    encode(t, s, strlen(s), flags, &a);
    encode(u, s, strlen(s), flags, &b);
    cr_assert_eq(a.len, b.len, "\"%s\"", s);
    cr_assert(a.len == 0 || memcmp(a.ids, b.ids, a.len * 4) == 0, "\"%s\"", s);
    tok_ids_release(&a);
    tok_ids_release(&b);
}

Test(tok_gguf, save_load_tokenizes_identically)
{
    struct tok *t = trained(420);
    struct gguf *g;
    struct tok *u = reload(t, &g);
    const char *s;
    size_t len;
    cr_assert_eq(gguf_get_str(g, "tokenizer.ggml.model", &s, &len), 0);
    cr_assert(len == 4 && !memcmp(s, "gpt2", 4));
    cr_assert_eq(gguf_get_str(g, "tokenizer.ggml.pre", &s, &len), 0);
    cr_assert(len == 5 && !memcmp(s, "gpt-2", 5));
    cr_assert_eq(gguf_get_str(g, "tokenizer.chat_template", &s, &len), 0);
    cr_assert(len == strlen(tok_chat_template) && !memcmp(s, tok_chat_template, len));
    cr_assert_eq(gguf_get_arr_str(g, "tokenizer.ggml.merges", 0, &s, &len), 0);
    cr_assert_not_null(memchr(s, ' ', len), "merges are \"left right\"");
    uint32_t bos;
    cr_assert_eq(gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos), 0);
    cr_assert_eq((int32_t)bos, tok_bos(t));
    assert_same_vocab(t, u);
    cr_assert_eq(tok_eot(u), tok_eot(t));
    cr_assert_str_eq(tok_chat_template_of(u), tok_chat_template);
    static const char *const texts[] = {"Will this fit my Frigidaire? It's 30\" wide.", "caf\xc3\xa9 \xff\xfe bytes",
                                        "<|user|>\nhi<|end|>\n", ""};
    for (size_t i = 0; i < 4; i++)
        assert_same_encoding(t, u, texts[i], TOK_PARSE_SPECIAL);
    tok_free(u);
    gguf_close(g);
    tok_free(t);
}

Test(tok_gguf, llama3_files_default_to_bos)
{
    /* a Llama-3 style file that names no add_bos_token: llama.cpp adds BOS */
    char bytes[256][4];
    const char *texts[257];
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        visible(&c, 1, bytes[b]);
        texts[b] = bytes[b];
    }
    texts[256] = "<|begin_of_text|>";
    int32_t types[257];
    for (int i = 0; i < 257; i++)
        types[i] = i == 256 ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, 257);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 257);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 256);
    char *path = tmp_path("l3.gguf"), err[256];
    cr_assert_eq(gguf_writer_write(w, path, err, sizeof(err)), 0, "%s", err);
    gguf_writer_free(w);
    struct gguf *g;
    cr_assert_eq(gguf_open(&g, path, err, sizeof(err)), 0, "%s", err);
    struct tok *t;
    cr_assert_eq(tok_load_gguf(&t, g, err, sizeof(err)), 0, "%s", err);
    struct tok_ids v;
    tok_ids_init(&v, 0);
    encode(t, "hi", 2, TOK_ADD_SPECIAL, &v);
    assert_ids(&v, (int32_t[]){256, 'h', 'i'}, 3, "BOS first");
    tok_ids_release(&v);
    tok_free(t);
    gguf_close(g);
    unlink(path);
    free(path);
}

Test(tok_gguf, rejects_bad_vocabularies)
{
    char *path = tmp_path("bad.gguf"), err[256];
    struct gguf *g;
    struct tok *t;
    /* no tokenizer at all */
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    cr_assert_eq(gguf_writer_write(w, path, err, sizeof(err)), 0);
    cr_assert_eq(gguf_open(&g, path, err, sizeof(err)), 0);
    cr_assert_eq(tok_load_gguf(&t, g, err, sizeof(err)), AISLE_ENOTFOUND);
    gguf_close(g);
    /* an unsupported model */
    gguf_writer_set_str(w, "tokenizer.ggml.model", "bert");
    cr_assert_eq(gguf_writer_write(w, path, err, sizeof(err)), 0);
    cr_assert_eq(gguf_open(&g, path, err, sizeof(err)), 0);
    cr_assert_eq(tok_load_gguf(&t, g, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "bert"), "%s", err);
    gguf_close(g);
    /* gpt2 without the byte tokens */
    const char *toks[] = {"a", "b", "ab"};
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    cr_assert_eq(gguf_writer_write(w, path, err, sizeof(err)), 0);
    cr_assert_eq(gguf_open(&g, path, err, sizeof(err)), 0);
    cr_assert_eq(tok_load_gguf(&t, g, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "byte"), "%s", err);
    gguf_close(g);
    /* token_type of the wrong length */
    int32_t types[2] = {1, 1};
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 2);
    cr_assert_eq(gguf_writer_write(w, path, err, sizeof(err)), 0);
    cr_assert_eq(gguf_open(&g, path, err, sizeof(err)), 0);
    cr_assert_eq(tok_load_gguf(&t, g, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "token_type"), "%s", err);
    gguf_close(g);
    /* tokens of the wrong type */
    gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_INT32, types, 2);
    cr_assert_eq(gguf_writer_write(w, path, err, sizeof(err)), 0);
    cr_assert_eq(gguf_open(&g, path, err, sizeof(err)), 0);
    cr_assert_eq(tok_load_gguf(&t, g, err, sizeof(err)), AISLE_EFORMAT);
    gguf_close(g);
    gguf_writer_free(w);
    unlink(path);
    free(path);
}

/* ---- SentencePiece (llama) ---- */

/* <unk> <s> </s>, 256 byte tokens, then pieces with scores; "▁" is U+2581. */
#define SP "\xe2\x96\x81"
static struct tok *mk_spm(int add_space_prefix)
{
    static const char *const pieces[] = {SP, "h", "e", "l", "o", "w", "r", "d", "ll", SP "h", SP "he", "llo",
                                         SP "hello", "or", SP "w", "ld", SP "wor"};
    static const float pscores[] = {-10, -10, -10, -10, -10, -10, -10, -10, -1, -2, -3, -4, -5, -6, -7, -8, -9};
    size_t np = sizeof(pieces) / sizeof(pieces[0]), n = 3 + 256 + np;
    char **texts = calloc(n, sizeof(*texts));
    size_t *lens = calloc(n, sizeof(*lens));
    float *scores = calloc(n, sizeof(*scores));
    int32_t *types = calloc(n, sizeof(*types));
    texts[0] = strdup("<unk>");
    types[0] = TOK_TYPE_UNKNOWN;
    texts[1] = strdup("<s>");
    types[1] = TOK_TYPE_CONTROL;
    texts[2] = strdup("</s>");
    types[2] = TOK_TYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        texts[3 + b] = malloc(8);
        snprintf(texts[3 + b], 8, "<0x%02X>", b);
        types[3 + b] = TOK_TYPE_BYTE;
    }
    for (size_t i = 0; i < np; i++) {
        texts[259 + i] = strdup(pieces[i]);
        scores[259 + i] = pscores[i];
        types[259 + i] = TOK_TYPE_NORMAL;
    }
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(texts[i]);
    struct tok_spm_spec spec = {.tokens = (const char *const *)texts, .lens = lens, .scores = scores, .types = types,
                                .n = n, .bos = 1, .eos = 2, .eot = -1, .unk = 0, .pad = -1, .add_bos = 1,
                                .add_space_prefix = add_space_prefix};
    struct tok *t;
    char err[256];
    cr_assert_eq(tok_new_spm(&t, &spec, err, sizeof(err)), 0, "%s", err);
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    free(scores);
    free(types);
    return t;
}

static int32_t P(const struct tok *t, const char *s)
{
    int32_t id = tok_find(t, s, strlen(s));
    cr_assert_geq(id, 0, "piece %s", s);
    return id;
}

Test(tok_spm, greedy_best_score_merges_with_byte_fallback)
{
    struct tok *t = mk_spm(1);
    struct tok_ids v;
    tok_ids_init(&v, 0);
    /* ll(-1), ▁h(-2), ▁he(-3), llo(-4), ▁hello(-5), or(-6), ▁w(-7), ld(-8), ▁wor(-9); no "▁world" */
    encode(t, "hello world", 11, TOK_ADD_SPECIAL, &v);
    assert_ids(&v, (int32_t[]){1, P(t, SP "hello"), P(t, SP "wor"), P(t, "ld")}, 4, "hello world");
    /* é is no piece: its two bytes fall back to <0xC3> <0xA9> */
    encode(t, "h\xc3\xa9", 3, 0, &v);
    assert_ids(&v, (int32_t[]){P(t, SP "h"), 3 + 0xC3, 3 + 0xA9}, 3, "byte fallback");
    /* equal scores: the leftmost pair first: "lll" = ll + l */
    encode(t, "lll", 3, 0, &v);
    assert_ids(&v, (int32_t[]){P(t, SP), P(t, "ll"), P(t, "l")}, 3, "lll");
    /* after a special token the fragment gets the space prefix again */
    encode(t, "<s>he", 5, TOK_PARSE_SPECIAL, &v);
    assert_ids(&v, (int32_t[]){1, P(t, SP "he")}, 2, "<s>he");
    encode(t, "<s>he", 5, 0, &v);
    assert_ids(&v, (int32_t[]){P(t, SP), 3 + '<', 3 + 's', 3 + '>', P(t, "h"), P(t, "e")}, 6, "<s> as text");

    /* decoding as llama.cpp: the first piece loses its leading space */
    struct buf out;
    buf_init(&out, 0);
    encode(t, "hello world", 11, 0, &v);
    cr_assert_eq(tok_decode(t, v.ids, v.len, 0, &out), 0);
    cr_assert_str_eq(out.data, "hello world");
    encode(t, "h\xc3\xa9 lll", 7, TOK_ADD_SPECIAL, &v);
    buf_reset(&out);
    cr_assert_eq(tok_decode(t, v.ids, v.len, TOK_DECODE_STRIP, &out), 0);
    cr_assert_str_eq(out.data, " h\xc3\xa9 lll", "llama.cpp keeps the space after a stripped BOS");
    buf_reset(&out);
    cr_assert_eq(tok_decode(t, v.ids, v.len, TOK_DECODE_SPECIAL, &out), 0);
    cr_assert_str_eq(out.data, "<s> h\xc3\xa9 lll");
    /* streaming gives what tok_decode gives, whatever the flags and whether BOS is there */
    for (int with_bos = 0; with_bos < 2; with_bos++) {
        encode(t, "h\xc3\xa9 lll", 6, with_bos ? TOK_ADD_SPECIAL : 0, &v);
        for (unsigned f = 0; f < 4; f++) {
            struct buf whole, streamed;
            buf_init(&whole, 0);
            buf_init(&streamed, 0);
            cr_assert_eq(tok_decode(t, v.ids, v.len, f, &whole), 0);
            struct tok_stream st;
            tok_stream_init(&st, f);
            for (size_t i = 0; i < v.len; i++)
                cr_assert_eq(tok_stream_push(t, &st, v.ids[i], &streamed), 0);
            cr_assert_eq(tok_stream_flush(&st, &streamed), 0);
            cr_assert_str_eq(streamed.data ? streamed.data : "", whole.data ? whole.data : "", "flags %u, bos %d", f,
                             with_bos);
            buf_release(&whole);
            buf_release(&streamed);
        }
    }
    buf_release(&out);
    tok_ids_release(&v);
    tok_free(t);

    t = mk_spm(0);
    tok_ids_init(&v, 0);
    encode(t, "hello", 5, 0, &v);
    assert_ids(&v, (int32_t[]){P(t, "h"), P(t, "e"), P(t, "llo")}, 3, "no space prefix");
    tok_ids_release(&v);
    tok_free(t);
}

Test(tok_spm, gguf_round_trip)
{
    struct tok *t = mk_spm(1);
    struct gguf *g;
    struct tok *u = reload(t, &g);
    cr_assert_eq(tok_model_of(u), TOK_MODEL_SPM);
    assert_same_vocab(t, u);
    assert_same_encoding(t, u, "hello wor\xc3\xa9ld", TOK_ADD_SPECIAL);
    assert_same_encoding(t, u, "<s>lll</s>", TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL);
    tok_free(u);
    gguf_close(g);
    tok_free(t);
}

/* ---- external references (tests/fixtures/tok/README.md) ---- */

static FILE *fixture(const char *name)
{
    const char *root = getenv("AISLE_ROOT");
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/fixtures/tok/%s", root ? root : ".", name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "fixture %s (set AISLE_ROOT)", path);
    return f;
}

/* Hex text -> bytes in out (NUL-terminated); returns the length. */
static size_t unhex(const char *hex, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        unsigned v;
        cr_assert_eq(sscanf(hex + i, "%2x", &v), 1);
        out[k++] = (char)v;
    }
    out[k] = '\0';
    return k;
}

static void check_split_fixture(const char *name, const char *pattern)
{
    FILE *f = fixture(name);
    void *re;
    cr_assert_eq(tok_regex_new(&re, pattern, NULL, 0), 0);
    void *md = tok_match_data_new(re);
    char line[4096], text[2048];
    int cases = 0;
    while (fgets(line, sizeof(line), f)) {
        char *tab = strchr(line, '\t');
        cr_assert_not_null(tab);
        size_t n = unhex(line, (size_t)(tab - line), text);
        struct tok_pretok it;
        tok_pretok_init(&it, re, md, text, n);
        char *p = tab + 1, *end;
        size_t start, len;
        while (tok_pretok_next(&it, &start, &len)) {
            long want = strtol(p, &end, 10);
            cr_assert_neq(end, p, "%s case %d: more words than Python's regex finds", name, cases);
            cr_assert_eq((long)len, want, "%s case %d: word at %zu is %zu bytes, Python's regex says %ld", name, cases,
                         start, len, want);
            p = end;
        }
        strtol(p, &end, 10);
        cr_assert_eq(end, p, "%s case %d: fewer words than Python's regex finds", name, cases);
        cases++;
    }
    cr_assert_eq(cases, 400);
    fclose(f);
    tok_match_data_free(md);
    tok_regex_free(re);
}

Test(tok_pretok, splits_like_python_regex_on_400_random_strings)
{
    check_split_fixture("gpt2-splits.tsv", tok_gpt2_pattern);
    check_split_fixture("llama3-splits.tsv", tok_llama3_pattern);
}

Test(tok_spm, matches_sentencepiece_on_a_trained_model)
{
    FILE *f = fixture("spm-bpe2000.vocab.tsv");
    char line[8192];
    size_t n = 0;
    char **texts = calloc(2000, sizeof(*texts));
    size_t *lens = calloc(2000, sizeof(*lens));
    float *scores = calloc(2000, sizeof(*scores));
    int32_t *types = calloc(2000, sizeof(*types));
    while (fgets(line, sizeof(line), f)) {
        cr_assert_lt(n, 2000);
        char *tab = strchr(line, '\t');
        texts[n] = malloc((size_t)(tab - line) / 2 + 1);
        lens[n] = unhex(line, (size_t)(tab - line), texts[n]);
        cr_assert_eq(sscanf(tab + 1, "%f\t%d", &scores[n], &types[n]), 2);
        n++;
    }
    fclose(f);
    struct tok_spm_spec spec = {.tokens = (const char *const *)texts, .lens = lens, .scores = scores, .types = types,
                                .n = n, .bos = 1, .eos = 2, .eot = -1, .unk = 0, .pad = -1, .add_bos = 1,
                                .add_space_prefix = 1};
    struct tok *t;
    char err[256];
    cr_assert_eq(tok_new_spm(&t, &spec, err, sizeof(err)), 0, "%s", err);
    f = fixture("spm-bpe2000.expected.tsv");
    char text[4096];
    struct tok_ids v;
    tok_ids_init(&v, 0);
    struct buf out;
    buf_init(&out, 0);
    int cases = 0;
    while (fgets(line, sizeof(line), f)) {
        char *tab = strchr(line, '\t');
        size_t len = unhex(line, (size_t)(tab - line), text);
        encode(t, text, len, 0, &v);
        char *p = tab + 1, *end;
        for (size_t i = 0; i < v.len; i++) {
            long want = strtol(p, &end, 10);
            cr_assert_neq(end, p, "line %d (%s): more ids than sentencepiece", cases, text);
            cr_assert_eq(v.ids[i], want, "line %d (%s): id %zu is %d, sentencepiece says %ld", cases, text, i, v.ids[i],
                         want);
            p = end;
        }
        strtol(p, &end, 10);
        cr_assert_eq(end, p, "line %d (%s): fewer ids than sentencepiece", cases, text);
        buf_reset(&out);
        cr_assert_eq(tok_decode(t, v.ids, v.len, 0, &out), 0);
        cr_assert(out.len == len && !memcmp(out.data, text, len), "line %d decodes to \"%s\"", cases, out.data);
        cases++;
    }
    cr_assert_eq(cases, 67);
    fclose(f);
    buf_release(&out);
    tok_ids_release(&v);
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    free(scores);
    free(types);
    tok_free(t);
}
