/* llamacpp_test.c — tok_encode against token ids that llama.cpp itself gave
 * (scripts/conformance/llamacpp_tok.sh, libllama from the
 * @node-llama-cpp/linux-x64 npm package), replayed offline.
 *
 * Fixtures (tests/fixtures/tok/README.md): llamacpp-inputs.hex (327 texts,
 * hex: hand-picked hostile strings, random mixed-script strings, shopper text,
 * invalid UTF-8), the GGUF files llama.cpp read (llamacpp-bpe4096.gguf,
 * llamacpp-spm2000.gguf; the Llama-3 variant is the first with
 * tokenizer.ggml.pre "llama-bpe" and add_bos_token, made here as the script
 * made it), and for each vocabulary llamacpp-VOCAB.ids, one line per text:
 * llama.cpp's ids with parse_special off, a tab, with it on (add_special true).
 *
 * For the BPE vocabularies llama.cpp replaces each byte of invalid UTF-8 with
 * U+FFFD and reads overlong forms as the character they encode before
 * splitting (a documented difference: Aisle keeps the bytes), so those texts
 * are encoded here as llama.cpp reads them; SPM texts are encoded as they are. */
#include <criterion/criterion.h>

#include "core/error.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

#include "../testutil.h"

enum { N_INPUTS = 327 };

static FILE *open_fixture(const char *name)
{
    char *dir = tu_path(tu_root(), "tests/fixtures/tok"), *path = tu_path(dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "fixture %s (set AISLE_ROOT)", path);
    free(dir);
    free(path);
    return f;
}

static int hex_digit(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Hex digits s[0..n) into bytes in place; returns the byte count. */
static size_t unhex(char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
        cr_assert(hi >= 0 && lo >= 0, "bad hex in llamacpp-inputs.hex");
        s[k++] = (char)(hi * 16 + lo);
    }
    return k;
}

/* What llama.cpp's BPE tokenizers see of s[0..n) (unicode_cpts_from_utf8,
 * then each code point re-encoded): a byte that does not start a lead byte
 * followed by the continuation bytes it announces becomes U+FFFD; a complete
 * sequence is decoded without checks for overlong forms or surrogates (C0 89
 * reads as a tab). Writes out (3n bytes); returns the length, *changed set when
 * the bytes differ from s. */
static size_t as_llama_cpp_reads(const char *s, size_t n, char *out, int *changed)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : c < 0xc0 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf8 ? 4 : 0;
        int ok = k > 0 && i + k <= n;
        for (size_t j = 1; ok && j < k; j++)
            ok = ((unsigned char)s[i + j] & 0xc0) == 0x80;
        if (!ok) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            *changed = 1;
            continue;
        }
        static const unsigned char lead_bits[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
        uint32_t cp = c & lead_bits[k];
        for (size_t j = 1; j < k; j++)
            cp = cp << 6 | ((unsigned char)s[i + j] & 0x3f);
        cr_assert_leq(cp, 0x10ffff, "llama.cpp aborts on code points above U+10FFFF: no such input in the fixture");
        size_t start = o;
        if (cp < 0x80)
            out[o++] = (char)cp;
        else if (cp < 0x800) {
            out[o++] = (char)(0xc0 | cp >> 6);
            out[o++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out[o++] = (char)(0xe0 | cp >> 12);
            out[o++] = (char)(0x80 | (cp >> 6 & 0x3f));
            out[o++] = (char)(0x80 | (cp & 0x3f));
        } else {
            out[o++] = (char)(0xf0 | cp >> 18);
            out[o++] = (char)(0x80 | (cp >> 12 & 0x3f));
            out[o++] = (char)(0x80 | (cp >> 6 & 0x3f));
            out[o++] = (char)(0x80 | (cp & 0x3f));
        }
        if (o - start != k || memcmp(out + start, s + i, k))
            *changed = 1;
        i += k;
    }
    return o;
}

static struct tok *load(const char *path)
{
    struct gguf *g;
    struct tok *t;
    char err[256];
    cr_assert_eq(gguf_open(&g, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tok_load_gguf(&t, g, err, sizeof(err)), 0, "%s", err);
    gguf_close(g);
    return t;
}

static struct tok *load_fixture(const char *name)
{
    char *dir = tu_path(tu_root(), "tests/fixtures/tok"), *path = tu_path(dir, name);
    struct tok *t = load(path);
    free(path);
    free(dir);
    return t;
}

/* t with tokenizer.ggml.pre = "llama-bpe" and add_bos_token, through a GGUF
 * file as llamacpp_tok.sh (tok_gguf llama3) writes it. Frees t. */
static struct tok *as_llama3(struct tok *t)
{
    char *dir = tu_tmpdir(), *path = tu_path(dir, "v.gguf"), err[256];
    struct gguf_writer *w = gguf_writer_new();
    cr_assert_not_null(w);
    cr_assert_eq(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    cr_assert_eq(tok_save_gguf(t, w), 0);
    cr_assert_eq(gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe"), 0);
    cr_assert_eq(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1), 0);
    cr_assert_eq(gguf_writer_write(w, path, err, sizeof(err)), 0, "%s", err);
    gguf_writer_free(w);
    tok_free(t);
    struct tok *out = load(path);
    free(path);
    tu_rmdir(dir);
    return out;
}

/* Compare tok_encode with llama.cpp's ids on every fixture line; returns the
 * number of texts that needed the U+FFFD replacement. */
static int check(const struct tok *t, const char *ids_name)
{
    FILE *in = open_fixture("llamacpp-inputs.hex"), *want = open_fixture(ids_name);
    struct tok_cache *cache = tok_cache_new(t);
    cr_assert_not_null(cache);
    struct tok_ids v;
    tok_ids_init(&v, 0);
    char *text = NULL, *ids = NULL;
    size_t tcap = 0, icap = 0;
    ssize_t tn;
    int lines = 0, replaced = 0;
    while ((tn = getline(&text, &tcap, in)) >= 0) {
        cr_assert_geq(getline(&ids, &icap, want), 0, "%s: fewer lines than the inputs", ids_name);
        size_t n = unhex(text, (size_t)tn - (tn && text[tn - 1] == '\n'));
        char *s = text, *fixed = NULL;
        if (tok_model_of(t) == TOK_MODEL_BPE) {
            int changed = 0;
            fixed = malloc(3 * n + 1);
            size_t m = as_llama_cpp_reads(text, n, fixed, &changed);
            if (changed) {
                s = fixed;
                n = m;
                replaced++;
            }
        }
        char *p = ids;
        for (int ps = 0; ps < 2; ps++) {
            v.len = 0;
            cr_assert_eq(tok_encode(t, cache, s, n, TOK_ADD_SPECIAL | (ps ? TOK_PARSE_SPECIAL : 0), &v), 0);
            for (size_t i = 0; i < v.len; i++) {
                char *end;
                long id = strtol(p, &end, 10);
                cr_assert_neq(end, p, "%s line %d parse_special=%d: Aisle gives more ids than llama.cpp (%zu+)",
                              ids_name, lines + 1, ps, v.len);
                cr_assert_eq(v.ids[i], id, "%s line %d parse_special=%d: id %zu is %d, llama.cpp says %ld", ids_name,
                             lines + 1, ps, i, v.ids[i], id);
                p = end;
            }
            while (*p == ' ')
                p++;
            cr_assert(*p == (ps ? '\n' : '\t'), "%s line %d parse_special=%d: Aisle gives fewer ids (%zu) than llama.cpp",
                      ids_name, lines + 1, ps, v.len);
            p++;
        }
        free(fixed);
        lines++;
    }
    cr_assert_eq(getline(&ids, &icap, want), -1, "%s: more lines than the inputs", ids_name);
    cr_assert_eq(lines, N_INPUTS);
    free(text);
    free(ids);
    fclose(in);
    fclose(want);
    tok_ids_release(&v);
    tok_cache_free(cache);
    return replaced;
}

Test(tok_llamacpp, aisle_bpe_vocabulary_tokenizes_as_llama_cpp)
{
    struct tok *t = load_fixture("llamacpp-bpe4096.gguf");
    cr_assert_eq(tok_n_vocab(t), 4096);
    cr_assert_str_eq(tok_pre(t), "gpt-2");
    cr_assert_eq(check(t, "llamacpp-bpe.ids"), 37, "the 37 texts that llama.cpp reads differently were replayed");
    tok_free(t);
}

Test(tok_llamacpp, llama3_pre_tokenizer_tokenizes_as_llama_cpp)
{
    struct tok *t = as_llama3(load_fixture("llamacpp-bpe4096.gguf"));
    cr_assert_str_eq(tok_pre(t), "llama-bpe");
    cr_assert(tok_pre_known(t));
    check(t, "llamacpp-llama3.ids");
    tok_free(t);
}

Test(tok_llamacpp, sentencepiece_vocabulary_tokenizes_as_llama_cpp)
{
    struct tok *t = load_fixture("llamacpp-spm2000.gguf");
    cr_assert_eq(tok_model_of(t), TOK_MODEL_SPM);
    cr_assert_eq(tok_n_vocab(t), 2000);
    check(t, "llamacpp-spm.ids");
    tok_free(t);
}
