/*
 * llamacpp_tok.c — token ids from llama.cpp itself (its libllama, as prebuilt
 * in the @node-llama-cpp/linux-x64 npm package) for each line of a file,
 * printed like `aisle tokenize --lines --escape --ids`: one line of ids per
 * input line.
 *
 * Design: no llama.h is needed (the package ships none). The model is loaded
 * vocab-only (no weights: a tokenizer-only GGUF is enough), tokenized with
 * llama_tokenize(vocab, text, len, out, max, add_special = true,
 * parse_special) — add_special adds BOS/EOS as the vocabulary's
 * add_bos_token/add_eos_token say. llama_model_params is taken from
 * llama_model_default_params() as opaque bytes (returned via a hidden pointer
 * and passed on the stack by the x86-64 SysV ABI, so a larger buffer works)
 * and vocab_only is set at its offset in the llama.h of that build
 * (llama.cpp 0ad4a86, which added load_mode and lazy_mode after split_mode):
 * two pointers, five int32 and four more pointers, then the bools vocab_only,
 * check_tensors, use_extra_bufts, no_host, no_alloc, load_mtp at offset 72.
 * The defaults there (n_gpu_layers -1, split_mode 1, load_mode -1, lazy_mode
 * 1; bools 0 0 1 0 0 0, as the disassembly of llama_model_default_params
 * shows) are checked first, so another layout stops the run instead of
 * setting the wrong field.
 *
 * Input lines use the escapes of llama.cpp's llama-tokenize (common.cpp's
 * string_process_escapes): \n \r \t \' \" \\ and \xHH stand for those bytes;
 * any other backslash stays as it is.
 *
 * Usage: llamacpp_tok BACKEND_DIR MODEL.gguf INPUT PARSE_SPECIAL(0|1)
 *        (REF_VERBOSE=1: llama.cpp's log)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct { _Alignas(16) unsigned char b[4096]; } opaque;
enum { VOCAB_ONLY_OFFSET = 72 };
void llama_backend_init(void);
void ggml_backend_load_all_from_path(const char *dir);
opaque llama_model_default_params(void);
void *llama_model_load_from_file(const char *path, opaque p);
void llama_model_free(void *model);
const void *llama_model_get_vocab(const void *model);
int32_t llama_vocab_n_tokens(const void *vocab);
int llama_vocab_type(const void *vocab);
bool llama_vocab_get_add_bos(const void *vocab);
bool llama_vocab_get_add_eos(const void *vocab);
int32_t llama_tokenize(const void *vocab, const char *text, int32_t text_len, int32_t *tokens, int32_t n_tokens_max,
                       bool add_special, bool parse_special);
void llama_log_set(void *cb, void *ud);
static void quiet(int level, const char *text, void *ud) { (void)level; (void)text; (void)ud; }

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decode s[0..n) in place; returns the new length. */
static size_t unescape(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 == n) { s[o++] = s[i]; continue; }
        char c = s[++i];
        switch (c) {
        case 'n': s[o++] = '\n'; break;
        case 'r': s[o++] = '\r'; break;
        case 't': s[o++] = '\t'; break;
        case '\'': case '"': case '\\': s[o++] = c; break;
        case 'x':
            if (i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
                s[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
                i += 2;
                break;
            }
            s[o++] = '\\'; s[o++] = c; /* not an escape */
            break;
        default: s[o++] = '\\'; s[o++] = c;
        }
    }
    return o;
}

int main(int argc, char **argv)
{
    if (argc != 5) { fprintf(stderr, "usage: llamacpp_tok BACKEND_DIR MODEL.gguf INPUT 0|1\n"); return 2; }
    if (!getenv("REF_VERBOSE")) llama_log_set((void *)quiet, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    opaque mp = llama_model_default_params();
    static const int32_t ints[4] = {-1, 1, -1, 1}; /* n_gpu_layers, split_mode, load_mode, lazy_mode */
    static const unsigned char bools[6] = {0, 0, 1, 0, 0, 0};
    if (memcmp(mp.b + 16, ints, sizeof ints) || memcmp(mp.b + VOCAB_ONLY_OFFSET, bools, sizeof bools)) {
        fprintf(stderr, "llama_model_default_params() is not laid out as this program expects (llama.cpp 0ad4a86)\n");
        return 1;
    }
    mp.b[VOCAB_ONLY_OFFSET] = 1;
    void *model = llama_model_load_from_file(argv[2], mp);
    if (!model) { fprintf(stderr, "%s: llama.cpp could not load it (REF_VERBOSE=1 shows why)\n", argv[2]); return 1; }
    const void *vocab = llama_model_get_vocab(model);
    bool parse_special = atoi(argv[4]) != 0;
    fprintf(stderr, "llama.cpp: %s: vocab type %d, %d tokens, add_bos %d, add_eos %d, parse_special %d\n", argv[2],
            llama_vocab_type(vocab), llama_vocab_n_tokens(vocab), llama_vocab_get_add_bos(vocab),
            llama_vocab_get_add_eos(vocab), parse_special);
    FILE *f = fopen(argv[3], "rb");
    if (!f) { perror(argv[3]); return 1; }
    char *line = NULL; size_t cap = 0; ssize_t got;
    int32_t *ids = NULL; int32_t idcap = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        size_t n = (size_t)got;
        if (n && line[n - 1] == '\n') n--;
        n = unescape(line, n);
        int32_t need = (int32_t)n + 8;
        for (;;) {
            if (need > idcap) { idcap = need; ids = realloc(ids, (size_t)idcap * sizeof *ids); if (!ids) return 1; }
            int32_t k = llama_tokenize(vocab, line, (int32_t)n, ids, idcap, true, parse_special);
            if (k >= 0) {
                for (int32_t i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
                putchar('\n');
                break;
            }
            if (k == INT32_MIN) { fprintf(stderr, "llama_tokenize overflow\n"); return 1; }
            need = -k;
        }
    }
    free(line); free(ids); fclose(f);
    llama_model_free(model);
    return 0;
}
