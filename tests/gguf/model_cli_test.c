/*
 * model_cli_test.c — `aisle model info` and `aisle model convert`, run as a
 * program (AISLE_BIN) on a small Llama-shaped model written here.
 */
#include <criterion/criterion.h>

#include "gguf/gguf.h"
#include "gguf/llama_names.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/aisle-model-cli-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(model_cli, .init = setup, .fini = teardown);

/* Run `aisle ARGS` and capture stdout+stderr; returns the exit status. */
static int run(const char *args, char *out, size_t outlen)
{
    const char *bin = getenv("AISLE_BIN");
    cr_assert_not_null(bin, "AISLE_BIN is not set");
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* C = 64, 1 layer, NH = 4, NKV = 2, F = 128, V = 48, F32 weights with
 * smooth values, plus metadata of several shapes (a long array, a nested one). */
static void write_model(const char *path)
{
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, LLAMA_KEY_ARCH, "llama");
    gguf_writer_set_str(w, LLAMA_KEY_NAME, "tiny \"quoted\"\nname");
    gguf_writer_set_u32(w, LLAMA_KEY_CONTEXT_LENGTH, 256);
    gguf_writer_set_u32(w, LLAMA_KEY_EMBEDDING_LENGTH, 64);
    gguf_writer_set_u32(w, LLAMA_KEY_BLOCK_COUNT, 1);
    gguf_writer_set_u32(w, LLAMA_KEY_FEED_FORWARD_LENGTH, 128);
    gguf_writer_set_u32(w, LLAMA_KEY_HEAD_COUNT, 4);
    gguf_writer_set_u32(w, LLAMA_KEY_HEAD_COUNT_KV, 2);
    gguf_writer_set_f32(w, LLAMA_KEY_RMS_EPS, 1e-5f);
    gguf_writer_set_u32(w, LLAMA_KEY_FILE_TYPE, LLAMA_FTYPE_ALL_F32);
    const char *toks[48];
    char tokbuf[48][16];
    for (int i = 0; i < 48; i++) {
        snprintf(tokbuf[i], sizeof(tokbuf[i]), "t%d", i);
        toks[i] = tokbuf[i];
    }
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 48);
    uint8_t nested[] = {GGUF_TYPE_UINT8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42}; /* [42] as one u8 array */
    struct { uint32_t t; uint64_t n; } __attribute__((packed)) hdr = {GGUF_TYPE_ARRAY, 1};
    uint8_t raw[12 + sizeof(nested)];
    memcpy(raw, &hdr, 12);
    memcpy(raw + 12, nested, sizeof(nested));
    cr_assert_eq(gguf_writer_set_raw(w, "aisle.test.nested", GGUF_TYPE_ARRAY, raw, sizeof(raw)), 0);
    static float buf[128 * 64];
    for (int i = 0; i < 128 * 64; i++)
        buf[i] = sinf((float)i * 0.01f);
    struct { const char *n; int nd; int64_t ne0, ne1; } ts[] = {
        {"token_embd.weight", 2, 64, 48},       {"output_norm.weight", 1, 64, 1},
        {"blk.0.attn_norm.weight", 1, 64, 1},   {"blk.0.attn_q.weight", 2, 64, 64},
        {"blk.0.attn_k.weight", 2, 64, 32},     {"blk.0.attn_v.weight", 2, 64, 32},
        {"blk.0.attn_output.weight", 2, 64, 64}, {"blk.0.ffn_norm.weight", 1, 64, 1},
        {"blk.0.ffn_gate.weight", 2, 64, 128},  {"blk.0.ffn_up.weight", 2, 64, 128},
        {"blk.0.ffn_down.weight", 2, 128, 64},
    };
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
        int64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        cr_assert_eq(gguf_writer_add_tensor(w, ts[i].n, GGML_TYPE_F32, ts[i].nd, ne, buf,
                                            (size_t)(ts[i].ne0 * ts[i].ne1) * 4),
                     0);
    }
    char err[256];
    cr_assert_eq(gguf_writer_write(w, path, err, sizeof(err)), 0, "%s", err);
    gguf_writer_free(w);
}

static char out[1 << 16];

Test(model_cli, info_prints_metadata_tensors_and_totals)
{
    char path[256], args[512];
    snprintf(path, sizeof(path), "%s/tiny.gguf", dir);
    write_model(path);
    snprintf(args, sizeof(args), "model info '%s'", path);
    cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "GGUF v3, alignment 32, 12 metadata keys, 11 tensors"), "%s", out);
    cr_assert(strstr(out, "general.architecture"), "%s", out);
    cr_assert(strstr(out, "\"tiny \\\"quoted\\\"\\nname\""), "strings are escaped:\n%s", out);
    cr_assert(strstr(out, "string[48]"), "%s", out);
    cr_assert(strstr(out, "[\"t0\", \"t1\", \"t2\", \"t3\", \"t4\", \"t5\", \"t6\", \"t7\", ... 40 more]"),
              "long arrays summarised:\n%s", out);
    cr_assert(strstr(out, "[[42]]"), "nested arrays:\n%s", out);
    cr_assert(strstr(out, "blk.0.ffn_down.weight"), "%s", out);
    cr_assert(strstr(out, "128 x 64"), "%s", out);
    /* 64*48 + 64 + 64 + 64*64 + 2*64*32 + 64*64 + 64 + 3*64*128 = 40,128 */
    cr_assert(strstr(out, "total: 40128 parameters"), "%s", out);
    cr_assert(strstr(out, "160512 bytes of tensor data"), "%s", out);
    cr_assert(strstr(out, "llama: 1 layers, C 64, 4 heads (2 KV, head dim 16), FFN 128, vocab 48"), "%s", out);
    snprintf(args, sizeof(args), "model info --all '%s'", path);
    cr_assert_eq(run(args, out, sizeof(out)), 0);
    cr_assert(strstr(out, "\"t47\"]"), "--all prints everything");
}

Test(model_cli, info_reports_bad_files)
{
    char path[256], args[512];
    snprintf(path, sizeof(path), "%s/bad.gguf", dir);
    FILE *f = fopen(path, "wb");
    fputs("GGUF\x03", f);
    fclose(f);
    snprintf(args, sizeof(args), "model info '%s'", path);
    cr_assert_eq(run(args, out, sizeof(out)), 1);
    cr_assert(strstr(out, "bad.gguf: header at byte 4: file truncated"), "%s", out);
    cr_assert_eq(run("model info", out, sizeof(out)), 2);
    cr_assert_eq(run("model frobnicate", out, sizeof(out)), 2);
    cr_assert_eq(run("model info --help", out, sizeof(out)), 0);
    cr_assert(strstr(out, "usage: aisle model info"));
    cr_assert_eq(run("model convert --help", out, sizeof(out)), 0);
    cr_assert(strstr(out, "usage: aisle model convert"));
    cr_assert_eq(run("help model", out, sizeof(out)), 0);
}

/* Convert to each type and check every tensor against the F32 original:
 * type chosen as llama.cpp would, values within the format's error bound
 * (see quant_test.c: Q8_0 < 0.57 d, Q4_0 < 1.01 |d| per block; here checked
 * loosely as a fraction of the row's largest magnitude). */
Test(model_cli, convert_quantizes_matrices_and_keeps_norms_f32)
{
    char in[256], outp[256], args[768];
    snprintf(in, sizeof(in), "%s/tiny.gguf", dir);
    write_model(in);
    const char *types[] = {"f16", "q8_0", "q4_0"};
    const enum ggml_type want[] = {GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
    const double tol[] = {1e-3, 0.57 / 127, 1.01 / 8}; /* of the block's amax */
    const uint32_t ftype[] = {LLAMA_FTYPE_MOSTLY_F16, LLAMA_FTYPE_MOSTLY_Q8_0, LLAMA_FTYPE_MOSTLY_Q4_0};
    struct gguf *a, *b;
    char err[256];
    cr_assert_eq(gguf_open(&a, in, err, sizeof(err)), 0, "%s", err);
    for (int k = 0; k < 3; k++) {
        snprintf(outp, sizeof(outp), "%s/tiny-%s.gguf", dir, types[k]);
        snprintf(args, sizeof(args), "model convert --type %s '%s' '%s'", types[k], in, outp);
        cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
        cr_assert(strstr(out, "11 tensors"), "%s", out);
        cr_assert_eq(gguf_open(&b, outp, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(gguf_n_kv(b), gguf_n_kv(a), "metadata copied");
        uint32_t ft;
        cr_assert_eq(gguf_get_u32(b, LLAMA_KEY_FILE_TYPE, &ft), 0);
        cr_assert_eq(ft, ftype[k]);
        const char *s;
        size_t len;
        cr_assert_eq(gguf_get_arr_str(b, "tokenizer.ggml.tokens", 47, &s, &len), 0);
        cr_assert_eq(len, 3);
        cr_assert_eq(memcmp(s, "t47", 3), 0);
        struct llama_hparams hp;
        cr_assert_eq(llama_hparams_read(b, &hp, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(llama_check_tensors(b, &hp, err, sizeof(err)), 0, "%s", err);
        for (size_t i = 0; i < gguf_n_tensors(a); i++) {
            const struct gguf_tensor *ta = gguf_tensor(a, i), *tb = gguf_find_tensor(b, ta->name);
            cr_assert_not_null(tb);
            cr_assert_eq(tb->type, ta->ndim == 1 ? GGML_TYPE_F32 : want[k], "%s", ta->name);
            cr_assert_eq(memcmp(ta->ne, tb->ne, sizeof(ta->ne)), 0);
            int64_t ne0 = ta->ne[0], rows = ta->ne[1];
            size_t rb = ggml_row_size(tb->type, ne0);
            float y[128];
            for (int64_t r = 0; r < rows; r++) {
                const float *x = (const float *)ta->data + r * ne0;
                cr_assert_eq(ggml_dequantize_row(tb->type, (const uint8_t *)tb->data + r * (int64_t)rb, y, ne0), 0);
                for (int64_t j0 = 0; j0 < ne0; j0 += 32) {
                    float amax = 0;
                    for (int j = 0; j < 32; j++)
                        amax = fmaxf(amax, fabsf(x[j0 + j]));
                    for (int j = 0; j < 32; j++)
                        cr_assert_leq(fabs((double)x[j0 + j] - y[j0 + j]), tol[k] * amax + 1e-6, "%s row %lld",
                                      ta->name, (long long)r);
                }
            }
        }
        gguf_close(b);
    }
    gguf_close(a);
    /* converting a converted file again keeps the type byte for byte */
    snprintf(in, sizeof(in), "%s/tiny-q8_0.gguf", dir);
    snprintf(outp, sizeof(outp), "%s/again.gguf", dir);
    snprintf(args, sizeof(args), "model convert --type q8_0 '%s' '%s'", in, outp);
    cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert_eq(gguf_open(&a, in, err, sizeof(err)), 0);
    cr_assert_eq(gguf_open(&b, outp, err, sizeof(err)), 0);
    for (size_t i = 0; i < gguf_n_tensors(a); i++)
        cr_assert_eq(memcmp(gguf_tensor(a, i)->data, gguf_tensor(b, i)->data, gguf_tensor(a, i)->nbytes), 0);
    gguf_close(a);
    gguf_close(b);
    /* --type f32 dequantizes: exactly the values the Q8_0 file holds */
    snprintf(outp, sizeof(outp), "%s/deq.gguf", dir);
    snprintf(args, sizeof(args), "model convert --type f32 '%s' '%s'", in, outp);
    cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert_eq(gguf_open(&a, in, err, sizeof(err)), 0);
    cr_assert_eq(gguf_open(&b, outp, err, sizeof(err)), 0);
    uint32_t ft;
    cr_assert_eq(gguf_get_u32(b, LLAMA_KEY_FILE_TYPE, &ft), 0);
    cr_assert_eq(ft, LLAMA_FTYPE_ALL_F32);
    for (size_t i = 0; i < gguf_n_tensors(a); i++) {
        const struct gguf_tensor *ta = gguf_tensor(a, i), *tb = gguf_find_tensor(b, ta->name);
        cr_assert_eq(tb->type, GGML_TYPE_F32, "%s", ta->name);
        int64_t ne0 = ta->ne[0], rows = ta->ne[1] * ta->ne[2] * ta->ne[3];
        float y[128];
        for (int64_t r = 0; r < rows; r++) {
            cr_assert_eq(ggml_dequantize_row(ta->type, (const uint8_t *)ta->data + r * (int64_t)ggml_row_size(ta->type, ne0),
                                             y, ne0),
                         0);
            cr_assert_eq(memcmp(y, (const float *)tb->data + r * ne0, (size_t)ne0 * sizeof(float)), 0, "%s row %lld",
                         ta->name, (long long)r);
        }
    }
    gguf_close(a);
    gguf_close(b);
    cr_assert_eq(run("model convert --type q5_1 a b", out, sizeof(out)), 2);
    cr_assert(strstr(out, "--type must be f32, f16, q8_0 or q4_0"), "%s", out);
}
