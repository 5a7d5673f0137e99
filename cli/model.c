/*
 * model.c — `aisle model info FILE` and `aisle model convert --type T IN OUT`:
 * inspect a GGUF model and re-quantize its weight matrices.
 *
 * info prints every metadata key (long strings and arrays summarised), then a
 * tensor table and the totals. convert copies all metadata verbatim (nested
 * arrays included), sets general.file_type, and converts each tensor as
 * llama.cpp's quantize does for these types: 2-D and larger weight matrices to
 * the target type (F16 when a row is not a whole number of target blocks),
 * 1-D tensors (norms, biases) to F32; a tensor already of its target type is
 * copied byte for byte.
 */
#include "cli.h"
#include "cmds.h"

#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/llama_names.h"
#include "gguf/quant.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: aisle model info FILE\n"
    "       aisle model convert --type f32|f16|q8_0|q4_0 IN OUT\n"
    "\n"
    "Inspect and convert GGUF model files (the format of llama.cpp and Ollama).\n"
    "Run 'aisle model info --help' or 'aisle model convert --help' for details.\n";

static const char info_usage[] =
    "usage: aisle model info [--all] FILE\n"
    "\n"
    "Print a GGUF file's header, every metadata key with its type and value\n"
    "(strings over 120 bytes and arrays over 8 elements are summarised), a table\n"
    "of tensors (type, shape, bytes, offset) and the total parameter count and\n"
    "tensor bytes. For a Llama model, also checks the tensor set and shapes.\n"
    "\n"
    "  --all        print arrays and strings in full\n"
    "  -h, --help   this help\n";

static const char convert_usage[] =
    "usage: aisle model convert --type f32|f16|q8_0|q4_0 IN OUT\n"
    "\n"
    "Write a copy of the GGUF model IN to OUT with its weight matrices (tensors\n"
    "of 2 or more dimensions) converted to TYPE and its 1-D tensors (norms) as\n"
    "f32, as llama.cpp's quantize does. A matrix whose rows are not a whole\n"
    "number of TYPE blocks is written as f16. Metadata is copied verbatim except\n"
    "general.file_type. Input tensors may be f32, f16, bf16, q8_0, q4_0, q4_K or\n"
    "q6_K. OUT is replaced atomically.\n"
    "\n"
    "  --type T     f32 (dequantize: exactly the values the quantized file\n"
    "               holds), f16, q8_0 or q4_0\n"
    "  -h, --help   this help\n";

/* ---- info ------------------------------------------------------------------ */

struct show {
    size_t max_str; /* bytes of a string shown before "..." */
    uint64_t max_arr; /* elements of an array shown */
};

static void print_bytes(const char *s, size_t n, size_t max)
{
    putchar('"');
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (n > max)
        printf("... (%zu bytes)", n);
}

static void print_val(const struct gguf_val *v, const struct show *sh, int depth)
{
    const void *p = v->p;
    switch (v->type) {
    case GGUF_TYPE_UINT8: printf("%u", *(const uint8_t *)p); break;
    case GGUF_TYPE_INT8: printf("%d", *(const int8_t *)p); break;
    case GGUF_TYPE_BOOL: fputs(*(const uint8_t *)p ? "true" : "false", stdout); break;
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); printf("%u", x); break; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); printf("%d", x); break; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, p, 4); printf("%" PRIu32, x); break; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); printf("%" PRId32, x); break; }
    case GGUF_TYPE_UINT64: { uint64_t x; memcpy(&x, p, 8); printf("%" PRIu64, x); break; }
    case GGUF_TYPE_INT64: { int64_t x; memcpy(&x, p, 8); printf("%" PRId64, x); break; }
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); printf("%.9g", (double)x); break; }
    case GGUF_TYPE_FLOAT64: { double x; memcpy(&x, p, 8); printf("%.17g", x); break; }
    case GGUF_TYPE_STRING: print_bytes(p, (size_t)v->n, sh->max_str); break;
    case GGUF_TYPE_ARRAY: {
        putchar('[');
        uint64_t shown = v->n < sh->max_arr ? v->n : sh->max_arr;
        for (uint64_t i = 0; i < shown; i++) {
            struct gguf_val e;
            if (gguf_val_elem(v, i, &e))
                break;
            if (i)
                fputs(", ", stdout);
            print_val(&e, sh, depth + 1);
        }
        if (v->n > shown)
            printf(", ... %" PRIu64 " more", v->n - shown);
        putchar(']');
        break;
    }
    default: fputs("?", stdout); break;
    }
}

static void type_label(char *buf, size_t n, const struct gguf_val *v)
{
    if (v->type == GGUF_TYPE_ARRAY)
        snprintf(buf, n, "%s[%" PRIu64 "]", gguf_type_name(v->elem), v->n);
    else
        snprintf(buf, n, "%s", gguf_type_name(v->type));
}

static void shape_str(char *buf, size_t n, const struct gguf_tensor *t)
{
    int k = snprintf(buf, n, "%" PRId64, t->ne[0]);
    for (int d = 1; d < t->ndim && k > 0 && (size_t)k < n; d++)
        k += snprintf(buf + k, n - (size_t)k, " x %" PRId64, t->ne[d]);
}

static void human(char *buf, size_t n, double bytes)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4)
        bytes /= 1024, i++;
    snprintf(buf, n, i ? "%.2f %s" : "%.0f %s", bytes, u[i]);
}

static int model_info(int argc, char **argv)
{
    static const struct option longopts[] = {{"all", no_argument, NULL, 'a'}, {"help", no_argument, NULL, 'h'}, {0}};
    struct show sh = {120, 8};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'a')
            sh = (struct show){SIZE_MAX, UINT64_MAX};
        else if (c == 'h') {
            fputs(info_usage, stdout);
            return 0;
        } else
            cli_usage_error("model info", "unknown option");
    }
    if (argc - optind != 1)
        cli_usage_error("model info", "expected one FILE");
    const char *path = argv[optind];
    struct gguf *g;
    char err[512];
    if (gguf_open(&g, path, err, sizeof(err)))
        cli_die("%s: %s", path, err);
    printf("%s: GGUF v%u, alignment %u, %zu metadata keys, %zu tensors, data at byte %" PRIu64 "\n\n", path,
           gguf_version(g), gguf_alignment(g), gguf_n_kv(g), gguf_n_tensors(g), gguf_data_offset(g));
    size_t kw = 10;
    for (size_t i = 0; i < gguf_n_kv(g); i++)
        if (strlen(gguf_kv_key(g, i)) > kw)
            kw = strlen(gguf_kv_key(g, i));
    if (kw > 48)
        kw = 48;
    puts("metadata:");
    for (size_t i = 0; i < gguf_n_kv(g); i++) {
        struct gguf_val v;
        char tl[64];
        if (gguf_kv_val(g, i, &v))
            continue;
        type_label(tl, sizeof(tl), &v);
        printf("  %-*s %-16s ", (int)kw, gguf_kv_key(g, i), tl);
        print_val(&v, &sh, 0);
        putchar('\n');
    }
    size_t nw = 4;
    for (size_t i = 0; i < gguf_n_tensors(g); i++)
        if (strlen(gguf_tensor(g, i)->name) > nw)
            nw = strlen(gguf_tensor(g, i)->name);
    printf("\ntensors:\n  %5s  %-*s %-7s %-24s %14s %14s\n", "#", (int)nw, "name", "type", "shape", "bytes", "offset");
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        char shape[96];
        shape_str(shape, sizeof(shape), t);
        printf("  %5zu  %-*s %-7s %-24s %14zu %14" PRIu64 "\n", i, (int)nw, t->name, ggml_type_name(t->type), shape,
               t->nbytes, t->offset);
        params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        bytes += t->nbytes;
    }
    char hb[32];
    human(hb, sizeof(hb), (double)bytes);
    printf("\ntotal: %" PRIu64 " parameters (%.3f M), %" PRIu64 " bytes of tensor data (%s), %.2f bits/parameter\n",
           params, (double)params / 1e6, bytes, hb, params ? 8.0 * (double)bytes / (double)params : 0.0);
    const char *arch;
    size_t alen;
    if (!gguf_get_str(g, LLAMA_KEY_ARCH, &arch, &alen) && alen == 5 && !memcmp(arch, LLAMA_ARCH, 5)) {
        struct llama_hparams hp;
        if (llama_hparams_read(g, &hp, err, sizeof(err)) || llama_check_tensors(g, &hp, err, sizeof(err)))
            printf("llama: NOT a complete Llama model: %s\n", err);
        else
            printf("llama: %u layers, C %u, %u heads (%u KV, head dim %u), FFN %u, vocab %u, context %u, "
                   "rope base %g, rms eps %g, %s output\n",
                   hp.n_layer, hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim, hp.n_ff, hp.n_vocab, hp.n_ctx,
                   (double)hp.rope_freq_base, (double)hp.rms_eps, hp.tied_output ? "tied" : "separate");
    }
    gguf_close(g);
    return 0;
}

/* ---- convert --------------------------------------------------------------- */

/* The type convert writes for tensor t when asked for `want`. */
static enum ggml_type target_type(const struct gguf_tensor *t, enum ggml_type want)
{
    if (t->ndim < 2)
        return GGML_TYPE_F32;
    if (t->ne[0] % ggml_blck_size(want))
        return GGML_TYPE_F16;
    return want;
}

/* Convert one tensor into w. 0 or an error with text in err. */
static int convert_tensor(struct gguf_writer *w, const struct gguf_tensor *t, enum ggml_type to, char *err,
                          size_t errlen)
{
    if (to == t->type)
        return gguf_writer_add_tensor(w, t->name, t->type, t->ndim, t->ne, t->data, t->nbytes);
    if (!ggml_can_dequantize(t->type)) {
        snprintf(err, errlen, "tensor '%s': cannot convert from %s", t->name, ggml_type_name(t->type));
        return AISLE_EINVAL;
    }
    const int64_t ne0 = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    const size_t in_row = ggml_row_size(t->type, ne0), out_row = ggml_row_size(to, ne0);
    float *row = malloc((size_t)ne0 * sizeof(float));
    uint8_t *out = malloc(out_row * (size_t)rows);
    int rc = row && out ? 0 : AISLE_ENOMEM;
    for (int64_t r = 0; r < rows && !rc; r++) {
        rc = ggml_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)r * in_row, row, ne0);
        if (!rc)
            rc = ggml_quantize_row(to, row, out + (size_t)r * out_row, ne0);
    }
    if (!rc)
        rc = gguf_writer_add_tensor(w, t->name, to, t->ndim, t->ne, out, out_row * (size_t)rows);
    if (rc)
        snprintf(err, errlen, "tensor '%s': %s", t->name, aisle_strerror(rc));
    free(row);
    free(out);
    return rc;
}

static int model_convert(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"type", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'}, {0}};
    const char *type_name = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 't')
            type_name = optarg;
        else if (c == 'h') {
            fputs(convert_usage, stdout);
            return 0;
        } else
            cli_usage_error("model convert", "unknown option");
    }
    if (!type_name)
        cli_usage_error("model convert", "--type is required");
    enum ggml_type want;
    uint32_t ftype;
    if (!strcmp(type_name, "f32"))
        want = GGML_TYPE_F32, ftype = LLAMA_FTYPE_ALL_F32;
    else if (!strcmp(type_name, "f16"))
        want = GGML_TYPE_F16, ftype = LLAMA_FTYPE_MOSTLY_F16;
    else if (!strcmp(type_name, "q8_0"))
        want = GGML_TYPE_Q8_0, ftype = LLAMA_FTYPE_MOSTLY_Q8_0;
    else if (!strcmp(type_name, "q4_0"))
        want = GGML_TYPE_Q4_0, ftype = LLAMA_FTYPE_MOSTLY_Q4_0;
    else
        cli_usage_error("model convert", "--type must be f32, f16, q8_0 or q4_0, not '%s'", type_name);
    if (argc - optind != 2)
        cli_usage_error("model convert", "expected IN and OUT");
    const char *in = argv[optind], *outp = argv[optind + 1];
    struct gguf *g;
    char err[512];
    if (gguf_open(&g, in, err, sizeof(err)))
        cli_die("%s: %s", in, err);
    struct gguf_writer *w = gguf_writer_new();
    if (!w)
        cli_die("out of memory");
    int rc = 0;
    for (size_t i = 0; i < gguf_n_kv(g) && !rc; i++) {
        const void *p;
        size_t n;
        if (!strcmp(gguf_kv_key(g, i), LLAMA_KEY_FILE_TYPE))
            continue;
        rc = gguf_kv_raw(g, i, &p, &n);
        if (!rc)
            rc = gguf_writer_set_raw(w, gguf_kv_key(g, i), gguf_kv_type(g, i), p, n);
        if (rc)
            snprintf(err, sizeof(err), "key '%s': %s", gguf_kv_key(g, i), aisle_strerror(rc));
    }
    if (!rc && (rc = gguf_writer_set_u32(w, LLAMA_KEY_FILE_TYPE, ftype)))
        snprintf(err, sizeof(err), "%s", aisle_strerror(rc));
    size_t counts[GGML_TYPE_COUNT] = {0};
    uint64_t in_bytes = 0, out_bytes = 0;
    struct cli_progress prog;
    cli_progress_init(&prog, "converting");
    for (size_t i = 0; i < gguf_n_tensors(g) && !rc; i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        enum ggml_type to = target_type(t, want);
        rc = convert_tensor(w, t, to, err, sizeof(err));
        counts[to]++;
        in_bytes += t->nbytes;
        out_bytes += ggml_row_size(to, t->ne[0]) * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        cli_progress_update(&prog, i + 1, in_bytes, 0);
    }
    cli_progress_end(&prog);
    if (!rc)
        rc = gguf_writer_write(w, outp, err, sizeof(err));
    size_t n_written = gguf_n_tensors(g);
    gguf_writer_free(w);
    gguf_close(g);
    if (rc)
        cli_die("convert %s: %s", in, err);
    char hi[32], ho[32];
    human(hi, sizeof(hi), (double)in_bytes);
    human(ho, sizeof(ho), (double)out_bytes);
    printf("%s: %zu tensors", outp, n_written);
    for (int k = 0; k < GGML_TYPE_COUNT; k++)
        if (counts[k])
            printf(", %zu %s", counts[k], ggml_type_name((enum ggml_type)k));
    printf("; tensor data %s -> %s\n", hi, ho);
    return 0;
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "info"))
        return model_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "convert"))
        return model_convert(argc - 1, argv + 1);
    cli_usage_error("model", "unknown subcommand '%s' (info or convert)", argv[1]);
}
