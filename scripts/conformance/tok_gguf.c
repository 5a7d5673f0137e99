/*
 * tok_gguf.c — tokenizer-only GGUF files for the llama.cpp tokenizer check
 * (llamacpp_tok.sh), written by Aisle's own tok_save_gguf plus the two
 * general.* keys llama.cpp needs to load a file vocab-only
 * (general.architecture, a known one; general.name, shown in its log).
 *
 *   tok_gguf spm VOCAB.tsv OUT.gguf   a SentencePiece ("llama") vocabulary from
 *       tests/fixtures/tok/spm-bpe2000.vocab.tsv (hex piece, score, type per
 *       line): <unk> 0, <s> 1, </s> 2, add_bos_token true, add_space_prefix
 *       true, as in Llama 2 and TinyLlama files
 *   tok_gguf llama3 IN.gguf OUT.gguf  the BPE vocabulary of IN with
 *       tokenizer.ggml.pre = "llama-bpe" (Llama 3's pre-tokenizer and
 *       ignore_merges) and add_bos_token true
 */
#include "core/error.h"
#include "gguf/gguf.h"
#include "tok/tok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what, const char *detail)
{
    fprintf(stderr, "tok_gguf: %s: %s\n", what, detail);
    return 1;
}

static struct tok *spm_from_tsv(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    enum { MAX = 1 << 16 };
    static char *texts[MAX];
    static size_t lens[MAX];
    static float scores[MAX];
    static int32_t types[MAX];
    char line[8192];
    size_t n = 0;
    while (n < MAX && fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t');
        if (!tab || sscanf(tab + 1, "%f\t%d", &scores[n], &types[n]) != 2)
            return NULL;
        size_t hex = (size_t)(tab - line);
        texts[n] = malloc(hex / 2 + 1);
        for (size_t i = 0; i + 1 < hex; i += 2) {
            unsigned v;
            if (sscanf(line + i, "%2x", &v) != 1)
                return NULL;
            texts[n][i / 2] = (char)v;
        }
        lens[n++] = hex / 2;
    }
    fclose(f);
    struct tok_spm_spec spec = {.tokens = (const char *const *)texts, .lens = lens, .scores = scores, .types = types,
                                .n = n, .bos = 1, .eos = 2, .eot = -1, .unk = 0, .pad = -1, .add_bos = 1,
                                .add_space_prefix = 1};
    struct tok *t;
    char err[256];
    if (tok_new_spm(&t, &spec, err, sizeof err)) {
        fprintf(stderr, "tok_gguf: %s: %s\n", path, err);
        return NULL;
    }
    return t;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "spm") && strcmp(argv[1], "llama3"))) {
        fprintf(stderr, "usage: tok_gguf spm VOCAB.tsv OUT.gguf | tok_gguf llama3 IN.gguf OUT.gguf\n");
        return 2;
    }
    char err[512];
    struct tok *t = NULL;
    if (!strcmp(argv[1], "spm")) {
        if (!(t = spm_from_tsv(argv[2])))
            return die(argv[2], "not a vocabulary TSV");
    } else {
        struct gguf *g;
        if (gguf_open(&g, argv[2], err, sizeof err) || tok_load_gguf(&t, g, err, sizeof err))
            return die(argv[2], err);
        gguf_close(g);
    }
    struct gguf_writer *w = gguf_writer_new();
    int llama3 = !strcmp(argv[1], "llama3");
    if (!w || gguf_writer_set_str(w, "general.architecture", "llama") ||
        gguf_writer_set_str(w, "general.name", llama3 ? "aisle-bpe-llama3" : "aisle-spm") || tok_save_gguf(t, w) ||
        (llama3 && (gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe") ||
                    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1))))
        return die(argv[3], "out of memory");
    if (gguf_writer_write(w, argv[3], err, sizeof err))
        return die(argv[3], err);
    gguf_writer_free(w);
    tok_free(t);
    return 0;
}
