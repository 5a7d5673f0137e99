/*
 * tok_vocab_fuzz.c — libFuzzer target for loading a tokenizer from untrusted
 * GGUF bytes: gguf_open_mem, then tok_load_gguf (counts, types, lengths, special
 * ids, merges of a hostile file).
 *
 * When a vocabulary loads, it is used: a few texts are encoded (with special
 * parsing) and decoded, every token's piece is read, and it is written back
 * into a GGUF writer. Invariants checked (abort on violation):
 *   - loading either succeeds or returns a negative code with an error message;
 *   - every id encode returns is < the vocabulary size;
 *   - a BPE vocabulary round-trips text plainly encoded (no BOS/EOS, no special
 *     parsing) to NORMAL tokens only (load insists
 *     on all 256 byte tokens; other types decode as llama.cpp decodes them);
 *   - tok_save_gguf of a loaded vocabulary succeeds.
 * ASan/UBSan and LeakSanitizer catch the rest.
 */
#include "core/buf.h"
#include "core/error.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const texts[] = {
    "Hello world's 123 foo!!",
    "<|user|>\nDoes it fit?<|end|>\n<|assistant|>\n<s></s>",
    "caf\xc3\xa9 \xff\xfe\xe2\x82 \xf0\x9f\x9b\x92   \n\n",
    "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf *g;
    char err[512] = "";
    if (gguf_open_mem(&g, data, size, err, sizeof(err)))
        return 0;
    struct tok *t;
    err[0] = '\0';
    int rc = tok_load_gguf(&t, g, err, sizeof(err));
    if (rc) {
        FUZZ_CHECK(rc < 0 && err[0], "load failed (%d) without a message", rc);
        gguf_close(g);
        return 0;
    }
    gguf_close(g); /* the tokenizer owns copies: nothing may point into the file now */
    size_t n = tok_n_vocab(t);
    struct tok_ids v;
    tok_ids_init(&v, 1u << 16);
    struct buf out;
    buf_init(&out, 0);
    for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
        size_t len = strlen(texts[k]);
        for (unsigned flags = 0; flags < 4; flags++) {
            v.len = 0;
            rc = tok_encode(t, NULL, texts[k], len, flags, &v);
            /* an SPM vocabulary with neither byte tokens nor <unk> cannot encode some text */
            FUZZ_CHECK(rc == 0 || (tok_model_of(t) == TOK_MODEL_SPM && rc == AISLE_EFORMAT), "encode: %d", rc);
            int all_normal = 1;
            for (size_t i = 0; i < v.len; i++) {
                FUZZ_CHECK(v.ids[i] >= 0 && (size_t)v.ids[i] < n, "id %d of %zu", v.ids[i], n);
                all_normal &= tok_type_of(t, v.ids[i]) == TOK_TYPE_NORMAL;
            }
            buf_reset(&out);
            FUZZ_CHECK(tok_decode(t, v.ids, v.len, TOK_DECODE_SPECIAL, &out) == 0, "decode");
            /* a hostile file may type byte tokens BYTE or UNUSED, which decode to nothing (as in
             * llama.cpp); with NORMAL tokens only, BPE must give the text back */
            if (tok_model_of(t) == TOK_MODEL_BPE && rc == 0 && all_normal && flags == 0)
                FUZZ_CHECK(out.len == len && memcmp(out.data ? out.data : "", texts[k], len) == 0,
                           "BPE round trip of text %zu", k);
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        FUZZ_CHECK(tok_piece(t, (int32_t)i, TOK_DECODE_SPECIAL, &p, &len) == 0, "piece %zu", i);
        FUZZ_CHECK(len <= TOK_MAX_TOKEN_LEN, "piece %zu is %zu bytes", i, len);
    }
    struct gguf_writer *w = gguf_writer_new();
    FUZZ_CHECK(w && tok_save_gguf(t, w) == 0, "save");
    gguf_writer_free(w);
    buf_release(&out);
    tok_ids_release(&v);
    tok_free(t);
    return 0;
}
