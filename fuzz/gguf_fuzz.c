/*
 * gguf_fuzz.c — libFuzzer target for the GGUF reader (gguf_open_mem) and
 * everything that reads what it returns: value views, typed getters, string
 * arrays, tensor infos and data, the Llama checks, the row dequantizers, and
 * the writer's validation of copied values.
 *
 * The input is a whole GGUF file. On rejection the error text must be
 * non-empty and name a byte offset. On acceptance everything is walked.
 *
 * Invariants checked (abort on violation, as a crash):
 *   - every key is non-empty, found again at its own index by gguf_find_key;
 *   - every value view, at any depth, and every string-array element lies
 *     inside the input; raw values pass gguf_value_check and are accepted by
 *     gguf_writer_set_raw;
 *   - every tensor: 1..4 dims of positive extents, nbytes = rows * row size,
 *     offset a multiple of the alignment, data inside the input, found again
 *     by name, and no two tensors overlap;
 *   - dequantizing a tensor's first row (supported types) succeeds.
 * ASan/UBSan catch reads outside the input (the input is exactly the bytes
 * libFuzzer gives, so one byte past is a heap overflow) and LeakSanitizer
 * any leak.
 */
#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/llama_names.h"
#include "gguf/quant.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t *lo, *hi; /* the input */

static void in_input(const void *p, size_t n, const char *what)
{
    const uint8_t *b = p;
    FUZZ_CHECK(b >= lo && b <= hi && n <= (size_t)(hi - b), "%s [%p, +%zu) outside the input", what, p, n);
}

/* Walk a value, visiting at most *budget elements in all. gguf_val_elem is
 * O(i) for strings and nested arrays, so only the first 64 elements and the
 * last are visited (the reader validated all of them at open). */
static void walk(const struct gguf_val *v, int depth, long *budget)
{
    FUZZ_CHECK(depth <= GGUF_MAX_DEPTH, "depth %d", depth);
    in_input(v->p, v->type == GGUF_TYPE_STRING ? (size_t)v->n : v->size, "value");
    if (v->type != GGUF_TYPE_ARRAY)
        return;
    for (uint64_t i = 0; i < v->n && --*budget > 0; i = (i == 63 && v->n > 65) ? v->n - 1 : i + 1) {
        struct gguf_val e;
        FUZZ_CHECK(gguf_val_elem(v, i, &e) == 0, "element %llu of %llu", (unsigned long long)i,
                   (unsigned long long)v->n);
        FUZZ_CHECK(e.type == v->elem, "element type");
        walk(&e, depth + 1, budget);
    }
}

static void check_kvs(const struct gguf *g, struct gguf_writer *w)
{
    long budget = 20000;
    for (size_t i = 0; i < gguf_n_kv(g); i++) {
        const char *key = gguf_kv_key(g, i);
        FUZZ_CHECK(key && *key, "key %zu empty", i);
        FUZZ_CHECK(gguf_find_key(g, key) == (int64_t)i, "key '%s' not found at its index %zu", key, i);
        struct gguf_val v;
        FUZZ_CHECK(gguf_kv_val(g, i, &v) == 0, "view of '%s'", key);
        FUZZ_CHECK(v.type == gguf_kv_type(g, i), "type of '%s'", key);
        walk(&v, 0, &budget);
        const void *raw;
        size_t n;
        FUZZ_CHECK(gguf_kv_raw(g, i, &raw, &n) == 0, "raw");
        in_input(raw, n, "raw value");
        FUZZ_CHECK(gguf_value_check(gguf_kv_type(g, i), raw, n, NULL, 0) == 0, "raw value of '%s' invalid", key);
        FUZZ_CHECK(gguf_writer_set_raw(w, key, gguf_kv_type(g, i), raw, n) == 0, "writer refused '%s'", key);
        /* the getters never fail in unexpected ways */
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f;
        double d;
        int b;
        const char *s;
        size_t len, an;
        enum gguf_type et;
        const void *ap;
        int rs[] = {gguf_get_u32(g, key, &u32), gguf_get_i32(g, key, &i32), gguf_get_u64(g, key, &u64),
                    gguf_get_i64(g, key, &i64), gguf_get_f32(g, key, &f), gguf_get_f64(g, key, &d),
                    gguf_get_bool(g, key, &b), gguf_get_str(g, key, &s, &len), gguf_get_arr(g, key, &et, &an, &ap)};
        for (size_t k = 0; k < sizeof(rs) / sizeof(rs[0]); k++)
            FUZZ_CHECK(rs[k] == 0 || rs[k] == AISLE_EFORMAT, "getter %zu on '%s' returned %d", k, key, rs[k]);
        if (rs[7] == 0)
            in_input(s, len, "string");
        if (rs[8] == 0 && et == GGUF_TYPE_STRING) {
            for (size_t k = 0; k < an && --budget > 0; k++) {
                FUZZ_CHECK(gguf_get_arr_str(g, key, k, &s, &len) == 0, "string %zu of '%s'", k, key);
                in_input(s, len, "array string");
            }
            FUZZ_CHECK(gguf_get_arr_str(g, key, an, &s, &len) == AISLE_ENOTFOUND, "past the end");
        }
    }
}

static int by_offset(const void *a, const void *b)
{
    const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a, *y = *(const struct gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void check_tensors(const struct gguf *g)
{
    size_t n = gguf_n_tensors(g);
    const struct gguf_tensor **by = malloc((n ? n : 1) * sizeof(*by));
    FUZZ_CHECK(by != NULL, "malloc");
    for (size_t i = 0; i < n; i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        by[i] = t;
        FUZZ_CHECK(t->ndim >= 1 && t->ndim <= 4, "'%s' ndim %d", t->name, t->ndim);
        for (int d = 0; d < 4; d++)
            FUZZ_CHECK(t->ne[d] >= 1 && (d < t->ndim || t->ne[d] == 1), "'%s' ne[%d]", t->name, d);
        size_t row = ggml_row_size(t->type, t->ne[0]);
        FUZZ_CHECK(row > 0, "'%s' row size", t->name);
        FUZZ_CHECK(t->nbytes == row * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]), "'%s' nbytes", t->name);
        FUZZ_CHECK(t->offset % gguf_alignment(g) == 0, "'%s' misaligned", t->name);
        in_input(t->data, t->nbytes, t->name);
        FUZZ_CHECK((const uint8_t *)t->data == lo + gguf_data_offset(g) + t->offset, "'%s' data pointer", t->name);
        FUZZ_CHECK(gguf_find_tensor(g, t->name) == t, "'%s' not found by name", t->name);
        if (ggml_can_dequantize(t->type) && t->ne[0] <= 4096) {
            float y[4096];
            FUZZ_CHECK(ggml_dequantize_row(t->type, t->data, y, t->ne[0]) == 0, "'%s' dequantize", t->name);
        }
    }
    qsort(by, n, sizeof(*by), by_offset);
    for (size_t i = 0; i + 1 < n; i++)
        FUZZ_CHECK(by[i]->offset + by[i]->nbytes <= by[i + 1]->offset, "'%s' overlaps '%s'", by[i]->name,
                   by[i + 1]->name);
    free(by);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lo = data;
    hi = data + size;
    struct gguf *g = NULL;
    char err[512] = "";
    int rc = gguf_open_mem(&g, data, size, err, sizeof(err));
    if (rc) {
        FUZZ_CHECK(rc == AISLE_EFORMAT || rc == AISLE_ETOOBIG || rc == AISLE_ENOMEM, "open returned %d", rc);
        FUZZ_CHECK(rc == AISLE_ENOMEM || strstr(err, " at byte ") != NULL, "error without an offset: '%s'", err);
        return 0;
    }
    FUZZ_CHECK(gguf_version(g) == 2 || gguf_version(g) == 3, "version");
    uint32_t a = gguf_alignment(g);
    FUZZ_CHECK(a && !(a & (a - 1)) && a <= GGUF_MAX_ALIGNMENT, "alignment %u", a);
    struct gguf_writer *w = gguf_writer_new();
    FUZZ_CHECK(w != NULL, "writer");
    check_kvs(g, w);
    check_tensors(g);
    struct llama_hparams hp;
    char lerr[256];
    if (llama_hparams_read(g, &hp, lerr, sizeof(lerr)) == 0)
        (void)llama_check_tensors(g, &hp, lerr, sizeof(lerr));
    gguf_writer_free(w);
    gguf_close(g);
    return 0;
}
