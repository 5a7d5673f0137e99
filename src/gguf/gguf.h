/*
 * gguf.h — GGUF v3 model files: a hostile-input-safe reader over a read-only
 * memory map, and a writer that produces a file atomically.
 *
 * The reader parses and validates only the header, the metadata and the tensor
 * infos at open (O(metadata), never O(file size)); tensor data stays in the map
 * and is paged in by whoever reads it. Every count, length, offset, dimension
 * product and alignment is checked against the bytes that remain and against the
 * GGUF_MAX_* limits below before anything is allocated; a rejected file gives an
 * error naming the key or tensor and the byte offset.
 *
 * THE FORMAT (ggml's docs/gguf.md, version 3; all integers little-endian):
 *
 *   header      u32 magic "GGUF" (bytes 47 47 55 46), u32 version (3),
 *               u64 tensor_count, u64 metadata_kv_count
 *   metadata    metadata_kv_count times: string key, u32 value_type, value
 *   tensor info tensor_count times: string name, u32 n_dims (1..4),
 *               u64 ne[n_dims] (ne[0] is the innermost, contiguous dimension),
 *               u32 ggml_type, u64 offset (from the data section start; a
 *               multiple of the alignment)
 *   padding     zeros up to a multiple of the alignment
 *   data        tensor bytes; each tensor is followed by padding to the alignment
 *
 *   string      u64 length, then that many bytes (UTF-8, no terminating NUL)
 *   value       by type: u8/i8/bool 1 byte, u16/i16 2, u32/i32/f32 4,
 *               u64/i64/f64 8, string as above, array = u32 element type,
 *               u64 count, then count values of that type (arrays may nest)
 *
 * `general.alignment` (a u32, a power of two) sets the alignment; it defaults
 * to GGUF_DEFAULT_ALIGNMENT. Keys are unique, non-empty and at most
 * GGUF_MAX_KEY bytes; tensor names are unique and at most GGUF_MAX_NAME bytes.
 * Tensor data ranges lie inside the data section and do not overlap. A tensor's
 * ne[0] is a multiple of its type's block size (quant.h); its size in bytes is
 * ne[1]*ne[2]*ne[3] rows of ggml_row_size(type, ne[0]).
 *
 * Versions 2 and 3 share this layout and both open; version 1 (32-bit counts)
 * and big-endian files are rejected. This code assumes a little-endian host.
 *
 * OWNERSHIP: a struct gguf owns its metadata index and NUL-terminated copies of
 * keys and tensor names; everything else (string values, array data, tensor
 * data) points into the map (gguf_open) or into the caller's bytes
 * (gguf_open_mem, which borrows them: they must outlive the struct gguf). All
 * pointers returned by getters are valid until gguf_close. A gguf_writer owns
 * copies of every key, value and tensor it is given.
 *
 * THREAD SAFETY: an open struct gguf is immutable: any number of threads may
 * read it concurrently. A gguf_writer belongs to one thread at a time.
 */
#ifndef AISLE_GGUF_GGUF_H
#define AISLE_GGUF_GGUF_H

#include <stddef.h>
#include <stdint.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_VERSION 3u
#define GGUF_DEFAULT_ALIGNMENT 32u

/* Limits on untrusted files. Counts are also bounded by the bytes that remain. */
#define GGUF_MAX_KV (1u << 20)             /* metadata entries */
#define GGUF_MAX_TENSORS (1u << 20)        /* tensor infos */
#define GGUF_MAX_KEY 65535u                /* bytes in a key */
#define GGUF_MAX_NAME 63u                  /* bytes in a tensor name (ggml's GGML_MAX_NAME 64, less its NUL) */
#define GGUF_MAX_STRING (64u << 20)        /* bytes in one string value */
#define GGUF_MAX_ARRAY ((uint64_t)1 << 30) /* elements in one array */
#define GGUF_MAX_DEPTH 8                   /* nesting of arrays of arrays */
#define GGUF_MAX_DIMS 4                    /* tensor dimensions */
#define GGUF_MAX_ALIGNMENT (1u << 20)      /* general.alignment */

enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/* ggml's tensor element types, numbered as in ggml.h. Block layouts and the
 * size helpers are in quant.h. Quantize and dequantize are supported for F32,
 * F16, BF16, Q8_0 and Q4_0, dequantize only for Q4_K and Q6_K; the other types
 * are known (sizes, names) so such files open and can be listed. */
enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_COUNT = 40
};

struct gguf; /* a read-only, memory-mapped GGUF file */

struct gguf_tensor {
    const char *name;    /* NUL-terminated, owned by the struct gguf */
    enum ggml_type type;
    int ndim;            /* 1..GGUF_MAX_DIMS */
    int64_t ne[4];       /* elements per dimension, ne[0] innermost; unused dims are 1 */
    uint64_t offset;     /* from the data section start */
    size_t nbytes;       /* ne[1]*ne[2]*ne[3] * ggml_row_size(type, ne[0]) */
    const void *data;    /* into the map (or the caller's bytes): read-only */
};

/* Map `path` read-only, parse and validate it. On success *out owns the map.
 * 0, AISLE_EIO (open/stat/mmap failed), AISLE_EFORMAT or AISLE_ETOOBIG (the
 * file breaks the format or a limit) or AISLE_ENOMEM; detail text in err. */
int gguf_open(struct gguf **out, const char *path, char *err, size_t errlen);
/* The same over n bytes at data, which are borrowed: they must stay valid and
 * unchanged until gguf_close. */
int gguf_open_mem(struct gguf **out, const void *data, size_t n, char *err, size_t errlen);
/* Unmap and free. NULL is a no-op. */
void gguf_close(struct gguf *g);

uint32_t gguf_version(const struct gguf *g);
/* The alignment in force (general.alignment or the default). */
uint32_t gguf_alignment(const struct gguf *g);
/* Byte offset of the data section from the start of the file. */
uint64_t gguf_data_offset(const struct gguf *g);

size_t gguf_n_kv(const struct gguf *g);
/* Key of entry i (< gguf_n_kv), NUL-terminated; NULL when i is out of range. */
const char *gguf_kv_key(const struct gguf *g, size_t i);
/* Type of entry i; GGUF_TYPE_COUNT when i is out of range. */
enum gguf_type gguf_kv_type(const struct gguf *g, size_t i);
/* Index of key or -1. */
int64_t gguf_find_key(const struct gguf *g, const char *key);

/* Typed getters: 0, AISLE_ENOTFOUND (absent) or AISLE_EFORMAT (wrong type;
 * integer getters accept any integer type whose value fits). Out-parameters
 * are written only on success. */
/* s points into the map, not NUL-terminated: len is authoritative. */
int gguf_get_str(const struct gguf *g, const char *key, const char **s, size_t *len);
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *v);
int gguf_get_i32(const struct gguf *g, const char *key, int32_t *v);
int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *v);
int gguf_get_i64(const struct gguf *g, const char *key, int64_t *v);
/* f32 accepts FLOAT32, and FLOAT64 whose value is finite in float or not finite. */
int gguf_get_f32(const struct gguf *g, const char *key, float *v);
int gguf_get_f64(const struct gguf *g, const char *key, double *v);
/* BOOL only; *v is 0 or 1 (any nonzero byte reads as 1). */
int gguf_get_bool(const struct gguf *g, const char *key, int *v);
/* Any array: its element type and count. For numeric and bool elements *data
 * points at the packed little-endian elements (possibly unaligned: copy them
 * out with memcpy). For STRING and ARRAY elements *data points at the
 * serialized elements; use gguf_get_arr_str / the gguf_val walkers. */
int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_type *elem, size_t *n, const void **data);
/* Element i of an array of strings, O(1). AISLE_ENOTFOUND also when i >= n. */
int gguf_get_arr_str(const struct gguf *g, const char *key, size_t i, const char **s, size_t *len);

/* A generic view of any value, for tools that walk all metadata (model info,
 * convert) and for nested arrays. The view points into the map. */
struct gguf_val {
    enum gguf_type type;
    enum gguf_type elem; /* arrays: element type */
    uint64_t n;          /* strings: bytes; arrays: elements; scalars: 1 */
    const void *p;       /* strings: bytes; arrays: first serialized element; scalars: the value */
    size_t size;         /* serialized size of the whole value (for arrays: elements only) */
};
/* View of entry i. 0 or AISLE_ENOTFOUND. */
int gguf_kv_val(const struct gguf *g, size_t i, struct gguf_val *out);
/* Element i of an array view (strings and nested arrays walk from the start:
 * O(i); the file was validated at open so this cannot fail on a valid array).
 * 0, AISLE_EINVAL (not an array) or AISLE_ENOTFOUND (i >= n). */
int gguf_val_elem(const struct gguf_val *arr, uint64_t i, struct gguf_val *out);
/* Bytes 0..size of the serialized value of entry i (what follows the u32 type),
 * for copying a value verbatim to a writer (gguf_writer_set_raw). */
int gguf_kv_raw(const struct gguf *g, size_t i, const void **p, size_t *size);

size_t gguf_n_tensors(const struct gguf *g);
/* Tensor i in file order; NULL when out of range. */
const struct gguf_tensor *gguf_tensor(const struct gguf *g, size_t i);
/* Tensor by name, O(1); NULL when absent. */
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/* Validate a serialized value of `type` (size bytes at p, exactly one value):
 * 0, AISLE_EFORMAT or AISLE_ETOOBIG with detail in err. */
int gguf_value_check(enum gguf_type type, const void *p, size_t size, char *err, size_t errlen);

/* Human name of a metadata type ("u32", "string", ...); "?" when unknown. */
const char *gguf_type_name(enum gguf_type t);

/*
 * The writer collects metadata and tensors in memory, in insertion order, then
 * writes a GGUF v3 file atomically: a temporary file in the target's directory,
 * fsync, rename over path. Setting an existing key replaces its value in place.
 * Setters return 0, AISLE_EINVAL (NULL/empty/oversized key or name, bad type or
 * shape, nbytes not matching the shape) or AISLE_ENOMEM; add_tensor also
 * AISLE_EEXIST for a repeated name. The writer uses `general.alignment` when it
 * has been set as a u32 power of two, else the default.
 */
struct gguf_writer; /* builds a GGUF v3 file */

struct gguf_writer *gguf_writer_new(void);
/* NULL is a no-op. */
void gguf_writer_free(struct gguf_writer *w);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *val);
/* val is len bytes, not NUL-terminated. */
int gguf_writer_set_strn(struct gguf_writer *w, const char *key, const char *val, size_t len);
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_i64(struct gguf_writer *w, const char *key, int64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_f64(struct gguf_writer *w, const char *key, double v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, int v);
/* A scalar of any numeric/bool type, value given as its LE bytes. */
int gguf_writer_set_scalar(struct gguf_writer *w, const char *key, enum gguf_type type, const void *v);
/* n packed elements of a numeric or bool type (not STRING/ARRAY). */
int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem, const void *data, size_t n);
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *v, size_t n);
/* Strings given with lengths (may contain any bytes). */
int gguf_writer_set_arr_strn(struct gguf_writer *w, const char *key, const char *const *v, const size_t *lens, size_t n);
/* A serialized value of `type` (the bytes after the u32 type, as gguf_kv_raw
 * returns them), validated before it is accepted: AISLE_EFORMAT if malformed.
 * This is how nested arrays are written and how metadata is copied verbatim. */
int gguf_writer_set_raw(struct gguf_writer *w, const char *key, enum gguf_type type, const void *p, size_t size);
/* Remove a key; AISLE_ENOTFOUND when absent. */
int gguf_writer_remove(struct gguf_writer *w, const char *key);
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type, int ndim, const int64_t *ne, const void *data, size_t nbytes); /* data copied */
/* Write the file. 0, AISLE_EIO, AISLE_EINVAL (bad general.alignment) or
 * AISLE_ENOMEM; detail text in err. The writer is unchanged and reusable. */
int gguf_writer_write(struct gguf_writer *w, const char *path, char *err, size_t errlen);

#endif
