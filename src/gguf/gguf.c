/*
 * gguf.c — the GGUF reader: map, parse, validate; getters over the map.
 *
 * Parsing is one forward pass with a bounds-checked cursor (struct rd): every
 * read first checks the bytes that remain, every count is checked against a
 * GGUF_MAX_* limit and against what the remaining bytes could possibly hold
 * before anything is allocated, and every failure names the key or tensor and
 * the byte offset. Only the index (kv entries, string-array offsets, tensor
 * infos, name copies) is allocated; values and tensor data are read in place.
 *
 * Invariants after a successful open: every kv value lies inside the file and
 * is well formed to its full depth; keys and tensor names are unique, non-empty
 * and free of control bytes; every tensor's data range lies inside the data
 * section, is aligned and overlaps no other.
 */
#include "gguf/gguf.h"

#include "core/error.h"
#include "core/hset.h"
#include "gguf/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

struct kv {
    char *key;           /* owned, NUL-terminated */
    enum gguf_type type;
    size_t val_off;      /* file offset of the value (after the u32 type) */
    size_t val_size;     /* serialized size of the value */
    /* arrays */
    enum gguf_type elem;
    uint64_t n;
    size_t *str_off;     /* (n) arrays of strings: file offset of each element; owned */
};

struct gguf {
    const uint8_t *base; /* the file's bytes */
    size_t size;
    void *map;           /* non-NULL when we own an mmap of map_len bytes */
    size_t map_len;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_off;   /* start of the data section */
    size_t n_kv;
    struct kv *kv;       /* (n_kv) */
    struct hset keys;    /* key -> index */
    size_t n_tensors;
    struct gguf_tensor *tensors; /* (n_tensors), names owned */
    struct hset names;   /* tensor name -> index */
};

/* ---- bounds-checked cursor ------------------------------------------------ */

struct rd {
    const uint8_t *p;
    size_t n;      /* total bytes */
    size_t off;    /* cursor */
    char *err;
    size_t errlen;
    const char *what; /* context for messages: "header", "key 'x'", "tensor 'y'" */
};

static size_t remain(const struct rd *r)
{
    return r->n - r->off;
}

static int fail(struct rd *r, int code, size_t at, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(struct rd *r, int code, size_t at, const char *fmt, ...)
{
    if (r->err && r->errlen) {
        int k = snprintf(r->err, r->errlen, "%s at byte %zu: ", r->what, at);
        if (k >= 0 && (size_t)k < r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err + k, r->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}

static int need(struct rd *r, size_t n, const char *field)
{
    if (remain(r) < n)
        return fail(r, AISLE_EFORMAT, r->off, "file truncated: %s needs %zu bytes, %zu remain", field, n, remain(r));
    return 0;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *field)
{
    int rc = need(r, 4, field);
    if (rc)
        return rc;
    memcpy(v, r->p + r->off, 4);
    r->off += 4;
    return 0;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *field)
{
    int rc = need(r, 8, field);
    if (rc)
        return rc;
    memcpy(v, r->p + r->off, 8);
    r->off += 8;
    return 0;
}

/* A string: u64 length then bytes. *s points into the file. */
static int rd_str(struct rd *r, const uint8_t **s, uint64_t *len, uint64_t max, const char *field)
{
    size_t at = r->off;
    int rc = rd_u64(r, len, field);
    if (rc)
        return rc;
    if (*len > max)
        return fail(r, AISLE_ETOOBIG, at, "%s length %llu exceeds the limit of %llu", field,
                    (unsigned long long)*len, (unsigned long long)max);
    if (*len > remain(r))
        return fail(r, AISLE_EFORMAT, at, "%s length %llu runs past the end of the file (%zu bytes remain)", field,
                    (unsigned long long)*len, remain(r));
    *s = r->p + r->off;
    r->off += (size_t)*len;
    return 0;
}

/* ---- values ----------------------------------------------------------------- */

static size_t scalar_size(enum gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0; /* STRING, ARRAY, unknown */
    }
}

/* The fewest bytes one value of type t can occupy (for count plausibility). */
static size_t min_size(enum gguf_type t)
{
    if (t == GGUF_TYPE_STRING)
        return 8;
    if (t == GGUF_TYPE_ARRAY)
        return 12;
    return scalar_size(t);
}

const char *gguf_type_name(enum gguf_type t)
{
    static const char *const names[GGUF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "?";
}

/* Validate one value of type t at the cursor and step over it. For a
 * top-level array, *elem and *n receive its element type and count. */
static int parse_value(struct rd *r, enum gguf_type t, int depth, enum gguf_type *elem, uint64_t *n)
{
    size_t at = r->off;
    if ((unsigned)t >= GGUF_TYPE_COUNT)
        return fail(r, AISLE_EFORMAT, at, "unknown value type %u", (unsigned)t);
    if (t == GGUF_TYPE_STRING) {
        const uint8_t *s;
        uint64_t len;
        return rd_str(r, &s, &len, GGUF_MAX_STRING, "string");
    }
    if (t != GGUF_TYPE_ARRAY) {
        size_t sz = scalar_size(t);
        int rc = need(r, sz, gguf_type_name(t));
        if (rc)
            return rc;
        r->off += sz;
        return 0;
    }
    if (depth >= GGUF_MAX_DEPTH)
        return fail(r, AISLE_ETOOBIG, at, "arrays nested deeper than %d", GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t cnt;
    int rc = rd_u32(r, &et, "array element type");
    if (!rc)
        rc = rd_u64(r, &cnt, "array count");
    if (rc)
        return rc;
    if (et >= GGUF_TYPE_COUNT)
        return fail(r, AISLE_EFORMAT, at, "unknown array element type %u", (unsigned)et);
    if (cnt > GGUF_MAX_ARRAY)
        return fail(r, AISLE_ETOOBIG, at + 4, "array count %llu exceeds the limit of %llu", (unsigned long long)cnt,
                    (unsigned long long)GGUF_MAX_ARRAY);
    size_t esz = min_size((enum gguf_type)et);
    if (cnt > remain(r) / esz)
        return fail(r, AISLE_EFORMAT, at + 4, "array of %llu %s needs at least %llu bytes, %zu remain",
                    (unsigned long long)cnt, gguf_type_name((enum gguf_type)et),
                    (unsigned long long)cnt * esz, remain(r));
    if (scalar_size((enum gguf_type)et)) {
        r->off += (size_t)cnt * esz;
    } else {
        for (uint64_t i = 0; i < cnt; i++) {
            rc = parse_value(r, (enum gguf_type)et, depth + 1, NULL, NULL);
            if (rc)
                return rc;
        }
    }
    if (elem)
        *elem = (enum gguf_type)et;
    if (n)
        *n = cnt;
    return 0;
}

int gguf_value_check(enum gguf_type type, const void *p, size_t size, char *err, size_t errlen)
{
    struct rd r = {p, size, 0, err, errlen, "value"};
    int rc = parse_value(&r, type, 0, NULL, NULL);
    if (!rc && r.off != size)
        rc = fail(&r, AISLE_EFORMAT, r.off, "%zu trailing bytes after the value", size - r.off);
    return rc;
}

/* ---- open ------------------------------------------------------------------- */

/* Names (keys, tensor names) become C strings: no NUL or other control bytes. */
static int check_name(struct rd *r, size_t at, const uint8_t *s, uint64_t len, const char *field)
{
    if (len == 0)
        return fail(r, AISLE_EFORMAT, at, "empty %s", field);
    for (uint64_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] == 0x7f)
            return fail(r, AISLE_EFORMAT, at, "%s contains control byte 0x%02x", field, s[i]);
    return 0;
}

static char *dup_name(const uint8_t *s, uint64_t len)
{
    char *c = malloc((size_t)len + 1);
    if (c) {
        memcpy(c, s, (size_t)len);
        c[len] = 0;
    }
    return c;
}

/* For messages: a name as a C string; the caller's buffer bounds it. */
static const char *ctx(char *buf, size_t n, const char *kind, const char *name)
{
    snprintf(buf, n, "%s '%.80s%s'", kind, name, strlen(name) > 80 ? "..." : "");
    return buf;
}

static int parse_kvs(struct gguf *g, struct rd *r)
{
    char what[128];
    for (size_t i = 0; i < g->n_kv; i++) {
        struct kv *kv = &g->kv[i];
        size_t at = r->off;
        const uint8_t *ks;
        uint64_t klen;
        snprintf(what, sizeof(what), "metadata entry %zu", i);
        r->what = what;
        int rc = rd_str(r, &ks, &klen, GGUF_MAX_KEY, "key");
        if (!rc)
            rc = check_name(r, at, ks, klen, "key");
        if (rc)
            return rc;
        if (!(kv->key = dup_name(ks, klen)))
            return AISLE_ENOMEM;
        r->what = ctx(what, sizeof(what), "key", kv->key);
        rc = hset_put(&g->keys, kv->key, i);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return fail(r, AISLE_EFORMAT, at, "duplicate key");
        uint32_t t;
        if ((rc = rd_u32(r, &t, "value type")))
            return rc;
        if (t >= GGUF_TYPE_COUNT)
            return fail(r, AISLE_EFORMAT, r->off - 4, "unknown value type %u", t);
        kv->type = (enum gguf_type)t;
        kv->val_off = r->off;
        if ((rc = parse_value(r, kv->type, 0, &kv->elem, &kv->n)))
            return rc;
        kv->val_size = r->off - kv->val_off;
        if (kv->type != GGUF_TYPE_ARRAY)
            kv->n = 1;
        if (kv->type == GGUF_TYPE_ARRAY && kv->elem == GGUF_TYPE_STRING) {
            /* validated above: each element is a u64 length and its bytes, and
             * n <= bytes/8, so this table is bounded by the file size */
            kv->str_off = malloc(kv->n ? (size_t)kv->n * sizeof(size_t) : 1);
            if (!kv->str_off)
                return AISLE_ENOMEM;
            size_t o = kv->val_off + 12;
            for (uint64_t j = 0; j < kv->n; j++) {
                uint64_t len;
                kv->str_off[j] = o;
                memcpy(&len, g->base + o, 8);
                o += 8 + (size_t)len;
            }
        }
    }
    return 0;
}

static int read_alignment(struct gguf *g, struct rd *r)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    uint64_t i;
    if (!hset_get(&g->keys, "general.alignment", &i))
        return 0;
    const struct kv *kv = &g->kv[i];
    r->what = "key 'general.alignment'";
    if (kv->type != GGUF_TYPE_UINT32)
        return fail(r, AISLE_EFORMAT, kv->val_off, "type is %s, must be u32", gguf_type_name(kv->type));
    uint32_t a;
    memcpy(&a, g->base + kv->val_off, 4);
    if (a == 0 || (a & (a - 1)))
        return fail(r, AISLE_EFORMAT, kv->val_off, "alignment %u is not a power of two", a);
    if (a > GGUF_MAX_ALIGNMENT)
        return fail(r, AISLE_ETOOBIG, kv->val_off, "alignment %u exceeds the limit of %u", a, GGUF_MAX_ALIGNMENT);
    g->alignment = a;
    return 0;
}

static int parse_tensor_info(struct gguf *g, struct rd *r, size_t i, char *what, size_t whatlen)
{
    struct gguf_tensor *t = &g->tensors[i];
    size_t at = r->off;
    const uint8_t *ns;
    uint64_t nlen;
    snprintf(what, whatlen, "tensor info %zu", i);
    r->what = what;
    int rc = rd_str(r, &ns, &nlen, GGUF_MAX_NAME, "tensor name");
    if (!rc)
        rc = check_name(r, at, ns, nlen, "tensor name");
    if (rc)
        return rc;
    char *name = dup_name(ns, nlen);
    if (!name)
        return AISLE_ENOMEM;
    t->name = name;
    r->what = ctx(what, whatlen, "tensor", name);
    rc = hset_put(&g->names, name, i);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return fail(r, AISLE_EFORMAT, at, "duplicate tensor name");
    uint32_t nd;
    at = r->off;
    if ((rc = rd_u32(r, &nd, "n_dims")))
        return rc;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return fail(r, AISLE_EFORMAT, at, "n_dims %u is not in 1..%d", nd, GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t nel = 1;
    for (int d = 0; d < 4; d++) {
        uint64_t ne = 1;
        at = r->off;
        if (d < t->ndim && (rc = rd_u64(r, &ne, "dimension")))
            return rc;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return fail(r, AISLE_EFORMAT, at, "dimension %d is %llu", d, (unsigned long long)ne);
        if (nel > (uint64_t)INT64_MAX / ne)
            return fail(r, AISLE_EFORMAT, at, "element count overflows (dimension %d is %llu)", d,
                        (unsigned long long)ne);
        nel *= ne;
        t->ne[d] = (int64_t)ne;
    }
    uint32_t type;
    at = r->off;
    if ((rc = rd_u32(r, &type, "tensor type")))
        return rc;
    t->type = (enum ggml_type)type;
    if (!ggml_type_name(t->type))
        return fail(r, AISLE_EFORMAT, at, "unknown tensor type %u", type);
    size_t row = ggml_row_size(t->type, t->ne[0]);
    if (!row)
        return fail(r, AISLE_EFORMAT, at, "ne[0] = %lld is not a multiple of %s's block size %lld",
                    (long long)t->ne[0], ggml_type_name(t->type), (long long)ggml_blck_size(t->type));
    uint64_t rows = (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3]; /* <= nel, no overflow */
    if (rows > SIZE_MAX / row || rows * row > g->size)
        return fail(r, AISLE_EFORMAT, at, "data size (%llu rows of %zu bytes) exceeds the file size %zu",
                    (unsigned long long)rows, row, g->size);
    t->nbytes = (size_t)rows * row;
    at = r->off;
    if ((rc = rd_u64(r, &t->offset, "tensor offset")))
        return rc;
    if (t->offset % g->alignment)
        return fail(r, AISLE_EFORMAT, at, "offset %llu is not a multiple of the alignment %u",
                    (unsigned long long)t->offset, g->alignment);
    return 0;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a, *y = *(const struct gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every tensor inside the data section and none overlapping. Messages give
 * the absolute file offset where the offending data starts (or would). */
static int check_data(struct gguf *g, struct rd *r)
{
    char what[128];
    uint64_t avail = g->size - g->data_off;
    for (size_t i = 0; i < g->n_tensors; i++) {
        struct gguf_tensor *t = &g->tensors[i];
        r->what = ctx(what, sizeof(what), "tensor", t->name);
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return fail(r, AISLE_EFORMAT, t->offset > avail ? g->size : (size_t)(g->data_off + t->offset),
                        "data [%llu, +%zu) runs past the end of the data section (%llu bytes)",
                        (unsigned long long)t->offset, t->nbytes, (unsigned long long)avail);
        t->data = g->base + g->data_off + t->offset;
    }
    if (g->n_tensors < 2)
        return 0;
    const struct gguf_tensor **by = malloc(g->n_tensors * sizeof(*by));
    if (!by)
        return AISLE_ENOMEM;
    for (size_t i = 0; i < g->n_tensors; i++)
        by[i] = &g->tensors[i];
    qsort(by, g->n_tensors, sizeof(*by), cmp_by_offset);
    int rc = 0;
    for (size_t i = 0; i + 1 < g->n_tensors && !rc; i++) {
        if (by[i]->offset + by[i]->nbytes > by[i + 1]->offset) {
            r->what = ctx(what, sizeof(what), "tensor", by[i + 1]->name);
            rc = fail(r, AISLE_EFORMAT, (size_t)(g->data_off + by[i + 1]->offset),
                      "data at offset %llu overlaps tensor '%.80s' [%llu, +%zu)",
                      (unsigned long long)by[i + 1]->offset, by[i]->name, (unsigned long long)by[i]->offset,
                      by[i]->nbytes);
        }
    }
    free(by);
    return rc;
}

static int parse(struct gguf *g, char *err, size_t errlen)
{
    struct rd r = {g->base, g->size, 0, err, errlen, "header"};
    uint32_t magic;
    uint64_t nt, nkv;
    int rc = rd_u32(&r, &magic, "magic");
    if (rc)
        return rc;
    if (magic != GGUF_MAGIC)
        return fail(&r, AISLE_EFORMAT, 0, "bad magic 0x%08x (not a GGUF file)", magic);
    if ((rc = rd_u32(&r, &g->version, "version")))
        return rc;
    if (g->version == 1)
        return fail(&r, AISLE_EFORMAT, 4, "GGUF version 1 (32-bit counts) is not supported");
    if ((g->version & 0xffff) == 0 && g->version)
        return fail(&r, AISLE_EFORMAT, 4, "big-endian GGUF (version 0x%08x) is not supported", g->version);
    if (g->version != 2 && g->version != 3)
        return fail(&r, AISLE_EFORMAT, 4, "unsupported GGUF version %u", g->version);
    if ((rc = rd_u64(&r, &nt, "tensor count")) || (rc = rd_u64(&r, &nkv, "metadata count")))
        return rc;
    /* Smallest kv: 8-byte key length, 1 key byte, 4-byte type, 1 value byte. */
    if (nkv > GGUF_MAX_KV)
        return fail(&r, AISLE_ETOOBIG, 16, "metadata count %llu exceeds the limit of %u", (unsigned long long)nkv,
                    GGUF_MAX_KV);
    if (nkv > remain(&r) / 14)
        return fail(&r, AISLE_EFORMAT, 16, "metadata count %llu cannot fit in the %zu bytes that remain",
                    (unsigned long long)nkv, remain(&r));
    /* Smallest tensor info: name length + 1 byte, n_dims, one dim, type, offset. */
    if (nt > GGUF_MAX_TENSORS)
        return fail(&r, AISLE_ETOOBIG, 8, "tensor count %llu exceeds the limit of %u", (unsigned long long)nt,
                    GGUF_MAX_TENSORS);
    if (nt > remain(&r) / 33)
        return fail(&r, AISLE_EFORMAT, 8, "tensor count %llu cannot fit in the %zu bytes that remain",
                    (unsigned long long)nt, remain(&r));
    g->n_kv = (size_t)nkv;
    g->n_tensors = (size_t)nt;
    if ((g->n_kv && !(g->kv = calloc(g->n_kv, sizeof(*g->kv)))) ||
        (g->n_tensors && !(g->tensors = calloc(g->n_tensors, sizeof(*g->tensors)))))
        return AISLE_ENOMEM;
    if ((rc = parse_kvs(g, &r)) || (rc = read_alignment(g, &r)))
        return rc;
    char what[128];
    for (size_t i = 0; i < g->n_tensors; i++)
        if ((rc = parse_tensor_info(g, &r, i, what, sizeof(what))))
            return rc;
    uint64_t pad = (g->alignment - r.off % g->alignment) % g->alignment;
    g->data_off = (uint64_t)r.off + pad;
    if (g->n_tensors && g->data_off > g->size) {
        r.what = "data section";
        return fail(&r, AISLE_EFORMAT, r.off, "file truncated before the aligned data section start %llu",
                    (unsigned long long)g->data_off);
    }
    return g->n_tensors ? check_data(g, &r) : 0;
}

int gguf_open_mem(struct gguf **out, const void *data, size_t n, char *err, size_t errlen)
{
    struct gguf *g = calloc(1, sizeof(*g));
    if (!g)
        return AISLE_ENOMEM;
    g->base = data;
    g->size = n;
    hset_init(&g->keys);
    hset_init(&g->names);
    int rc = n ? parse(g, err, errlen) : AISLE_EFORMAT;
    if (!n && err && errlen)
        snprintf(err, errlen, "header at byte 0: empty file");
    if (rc) {
        if (rc == AISLE_ENOMEM && err && errlen)
            snprintf(err, errlen, "out of memory while indexing the file");
        gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int gguf_open(struct gguf **out, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return AISLE_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (err && errlen)
            snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return AISLE_EIO;
    }
    size_t n = (size_t)st.st_size;
    void *map = NULL;
    if (n) {
        map = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            if (err && errlen)
                snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno));
            close(fd);
            return AISLE_EIO;
        }
    }
    close(fd);
    struct gguf *g;
    int rc = gguf_open_mem(&g, map, n, err, errlen);
    if (rc) {
        if (map)
            munmap(map, n);
        return rc;
    }
    g->map = map;
    g->map_len = n;
    *out = g;
    return 0;
}

void gguf_close(struct gguf *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_kv && g->kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_off);
    }
    free(g->kv);
    for (size_t i = 0; i < g->n_tensors && g->tensors; i++)
        free((char *)g->tensors[i].name);
    free(g->tensors);
    hset_release(&g->keys);
    hset_release(&g->names);
    if (g->map)
        munmap(g->map, g->map_len);
    free(g);
}

/* ---- accessors -------------------------------------------------------------- */

uint32_t gguf_version(const struct gguf *g)
{
    return g->version;
}

uint32_t gguf_alignment(const struct gguf *g)
{
    return g->alignment;
}

uint64_t gguf_data_offset(const struct gguf *g)
{
    return g->data_off;
}

size_t gguf_n_kv(const struct gguf *g)
{
    return g->n_kv;
}

const char *gguf_kv_key(const struct gguf *g, size_t i)
{
    return i < g->n_kv ? g->kv[i].key : NULL;
}

enum gguf_type gguf_kv_type(const struct gguf *g, size_t i)
{
    return i < g->n_kv ? g->kv[i].type : GGUF_TYPE_COUNT;
}

int64_t gguf_find_key(const struct gguf *g, const char *key)
{
    uint64_t i;
    return key && hset_get(&g->keys, key, &i) ? (int64_t)i : -1;
}

static const struct kv *find(const struct gguf *g, const char *key)
{
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

int gguf_get_str(const struct gguf *g, const char *key, const char **s, size_t *len)
{
    const struct kv *kv = find(g, key);
    if (!kv)
        return AISLE_ENOTFOUND;
    if (kv->type != GGUF_TYPE_STRING)
        return AISLE_EFORMAT;
    *len = kv->val_size - 8;
    *s = (const char *)g->base + kv->val_off + 8;
    return 0;
}

/* An integer value as sign + magnitude-ish: signed types in *s (neg = 1 when
 * negative), unsigned in *u. AISLE_EFORMAT when not an integer type. */
static int int_val(const struct gguf *g, const struct kv *kv, int *neg, uint64_t *u, int64_t *s)
{
    const uint8_t *p = g->base + kv->val_off;
    *neg = 0;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: *u = p[0]; return 0;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *u = v; return 0; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *u = v; return 0; }
    case GGUF_TYPE_UINT64: memcpy(u, p, 8); return 0;
    case GGUF_TYPE_INT8: *s = (int8_t)p[0]; break;
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *s = v; break; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *s = v; break; }
    case GGUF_TYPE_INT64: memcpy(s, p, 8); break;
    default: return AISLE_EFORMAT;
    }
    if (*s < 0)
        *neg = 1;
    else
        *u = (uint64_t)*s;
    return 0;
}

/* The integer at key if it lies in [lo, hi] (lo <= 0 <= hi), as the two's
 * complement bits of its value, which the callers narrow. */
static int get_int(const struct gguf *g, const char *key, int64_t lo, uint64_t hi, uint64_t *bits)
{
    const struct kv *kv = find(g, key);
    if (!kv)
        return AISLE_ENOTFOUND;
    int neg;
    uint64_t u = 0;
    int64_t s = 0;
    if (int_val(g, kv, &neg, &u, &s) || (neg ? s < lo : u > hi))
        return AISLE_EFORMAT;
    *bits = neg ? (uint64_t)s : u;
    return 0;
}

int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *v)
{
    uint64_t b;
    int rc = get_int(g, key, 0, UINT32_MAX, &b);
    return rc ? rc : (*v = (uint32_t)b, 0);
}

int gguf_get_i32(const struct gguf *g, const char *key, int32_t *v)
{
    uint64_t b;
    int rc = get_int(g, key, INT32_MIN, INT32_MAX, &b);
    return rc ? rc : (*v = (int32_t)b, 0);
}

int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *v)
{
    uint64_t b;
    int rc = get_int(g, key, 0, UINT64_MAX, &b);
    return rc ? rc : (*v = b, 0);
}

int gguf_get_i64(const struct gguf *g, const char *key, int64_t *v)
{
    uint64_t b;
    int rc = get_int(g, key, INT64_MIN, INT64_MAX, &b);
    return rc ? rc : (*v = (int64_t)b, 0);
}

int gguf_get_f64(const struct gguf *g, const char *key, double *v)
{
    const struct kv *kv = find(g, key);
    if (!kv)
        return AISLE_ENOTFOUND;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        float f;
        memcpy(&f, g->base + kv->val_off, 4);
        *v = f;
    } else if (kv->type == GGUF_TYPE_FLOAT64) {
        memcpy(v, g->base + kv->val_off, 8);
    } else {
        return AISLE_EFORMAT;
    }
    return 0;
}

int gguf_get_f32(const struct gguf *g, const char *key, float *v)
{
    double d;
    int rc = gguf_get_f64(g, key, &d);
    if (rc)
        return rc;
    if (isfinite(d) && fabs(d) > FLT_MAX)
        return AISLE_EFORMAT; /* finite double beyond float's range */
    *v = (float)d;
    return 0;
}

int gguf_get_bool(const struct gguf *g, const char *key, int *v)
{
    const struct kv *kv = find(g, key);
    if (!kv)
        return AISLE_ENOTFOUND;
    if (kv->type != GGUF_TYPE_BOOL)
        return AISLE_EFORMAT;
    *v = g->base[kv->val_off] != 0;
    return 0;
}

int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_type *elem, size_t *n, const void **data)
{
    const struct kv *kv = find(g, key);
    if (!kv)
        return AISLE_ENOTFOUND;
    if (kv->type != GGUF_TYPE_ARRAY)
        return AISLE_EFORMAT;
    *elem = kv->elem;
    *n = (size_t)kv->n;
    *data = g->base + kv->val_off + 12;
    return 0;
}

int gguf_get_arr_str(const struct gguf *g, const char *key, size_t i, const char **s, size_t *len)
{
    const struct kv *kv = find(g, key);
    if (!kv)
        return AISLE_ENOTFOUND;
    if (kv->type != GGUF_TYPE_ARRAY || kv->elem != GGUF_TYPE_STRING)
        return AISLE_EFORMAT;
    if (i >= kv->n)
        return AISLE_ENOTFOUND;
    uint64_t l;
    memcpy(&l, g->base + kv->str_off[i], 8);
    *len = (size_t)l;
    *s = (const char *)g->base + kv->str_off[i] + 8;
    return 0;
}

/* A view of the already-validated value of type t at p (end bounds it). */
static int view(enum gguf_type t, const uint8_t *p, size_t avail, struct gguf_val *out)
{
    struct rd r = {p, avail, 0, NULL, 0, "value"};
    struct gguf_val v = {t, GGUF_TYPE_COUNT, 1, p, 0};
    int rc = parse_value(&r, t, 0, &v.elem, &v.n);
    if (rc)
        return rc;
    v.size = r.off;
    if (t == GGUF_TYPE_STRING) {
        v.n = v.size - 8;
        v.p = p + 8;
    } else if (t == GGUF_TYPE_ARRAY) {
        v.p = p + 12;
        v.size -= 12;
    }
    *out = v;
    return 0;
}

int gguf_kv_val(const struct gguf *g, size_t i, struct gguf_val *out)
{
    if (i >= g->n_kv)
        return AISLE_ENOTFOUND;
    const struct kv *kv = &g->kv[i];
    return view(kv->type, g->base + kv->val_off, kv->val_size, out);
}

int gguf_kv_raw(const struct gguf *g, size_t i, const void **p, size_t *size)
{
    if (i >= g->n_kv)
        return AISLE_ENOTFOUND;
    *p = g->base + g->kv[i].val_off;
    *size = g->kv[i].val_size;
    return 0;
}

int gguf_val_elem(const struct gguf_val *arr, uint64_t i, struct gguf_val *out)
{
    if (arr->type != GGUF_TYPE_ARRAY)
        return AISLE_EINVAL;
    if (i >= arr->n)
        return AISLE_ENOTFOUND;
    const uint8_t *p = arr->p;
    size_t avail = arr->size, esz = scalar_size(arr->elem);
    if (esz)
        return view(arr->elem, p + i * esz, esz, out);
    struct rd r = {p, avail, 0, NULL, 0, "value"};
    for (uint64_t k = 0; k < i; k++)
        if (parse_value(&r, arr->elem, 0, NULL, NULL))
            return AISLE_EFORMAT; /* only for a hand-made view */
    return view(arr->elem, p + r.off, avail - r.off, out);
}

size_t gguf_n_tensors(const struct gguf *g)
{
    return g->n_tensors;
}

const struct gguf_tensor *gguf_tensor(const struct gguf *g, size_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name)
{
    uint64_t i;
    return name && hset_get(&g->names, name, &i) ? &g->tensors[i] : NULL;
}
