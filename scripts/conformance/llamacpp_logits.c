/*
 * llamacpp_logits.c — the last position's logits from llama.cpp itself (its
 * libllama, as prebuilt in the @node-llama-cpp/linux-x64 npm package) for a
 * list of token ids, printed like `aisle logits`: one 'id value' line each.
 *
 * Design: no llama.h is needed. Only the default model and context
 * parameters are used, so their structs are passed through as opaque bytes
 * (returned via a hidden pointer and passed on the stack by the x86-64 SysV
 * ABI, so a buffer at least as large as the real struct works); llama_batch
 * is declared with its stable 7-field layout. The context defaults are
 * llama.cpp's: 512 positions, F16 KV cache.
 *
 * Usage: llamacpp_logits BACKEND_DIR MODEL.gguf ID,ID,...  (REF_VERBOSE=1: logs)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct { _Alignas(16) unsigned char b[4096]; } opaque;
struct llama_batch { int32_t n_tokens; int32_t *token; float *embd; int32_t *pos; int32_t *n_seq_id; int32_t **seq_id; int8_t *logits; };
void llama_backend_init(void);
void ggml_backend_load_all_from_path(const char *dir);
opaque llama_model_default_params(void);
opaque llama_context_default_params(void);
void *llama_model_load_from_file(const char *path, opaque p);
void *llama_init_from_model(void *model, opaque p);
struct llama_batch llama_batch_get_one(int32_t *tokens, int32_t n);
int32_t llama_decode(void *ctx, struct llama_batch b);
float *llama_get_logits_ith(void *ctx, int32_t i);
const void *llama_model_get_vocab(const void *model);
int32_t llama_vocab_n_tokens(const void *vocab);
void llama_log_set(void *cb, void *ud);
static void quiet(int level, const char *text, void *ud) { (void)level; (void)text; (void)ud; }
int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: ref BACKEND_DIR MODEL ID,ID,...\n"); return 2; }
    if (!getenv("REF_VERBOSE")) llama_log_set((void *)quiet, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    void *model = llama_model_load_from_file(argv[2], llama_model_default_params());
    if (!model) { fprintf(stderr, "load failed\n"); return 1; }
    void *ctx = llama_init_from_model(model, llama_context_default_params());
    if (!ctx) { fprintf(stderr, "context failed\n"); return 1; }
    int32_t ids[4096]; int n = 0;
    for (char *t = strtok(argv[3], ","); t && n < 4096; t = strtok(NULL, ",")) ids[n++] = atoi(t);
    if (llama_decode(ctx, llama_batch_get_one(ids, n))) { fprintf(stderr, "decode failed\n"); return 1; }
    float *l = llama_get_logits_ith(ctx, -1);
    int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    for (int i = 0; i < V; i++) printf("%d %.9g\n", i, l[i]);
    return 0;
}
