/*
 * writer.c — builds a GGUF v3 file in memory and writes it atomically.
 *
 * Every metadata value is kept serialized (the bytes after its u32 type), so
 * typed setters, raw copies and nested arrays share one representation and the
 * output is those bytes verbatim. Tensors keep copies of their data. Writing
 * goes to a temporary file beside the target, is fsynced, then renamed over
 * it, so readers see the old file or the new one, never half of one.
 *
 * Invariants: keys are unique, non-empty, at most GGUF_MAX_KEY bytes, without
 * control bytes; tensor names likewise (GGUF_MAX_NAME); each tensor's nbytes
 * equals its shape's size; everything written is accepted by gguf_open.
 */
#include "gguf/gguf.h"

#include "core/error.h"
#include "core/hset.h"
#include "gguf/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct wkv {
    char *key;           /* owned */
    enum gguf_type type;
    uint8_t *val;        /* (size) owned serialized value */
    size_t size;
};

struct wtensor {
    char *name;          /* owned */
    enum ggml_type type;
    int ndim;
    int64_t ne[4];
    void *data;          /* (nbytes) owned copy */
    size_t nbytes;
};

struct gguf_writer {
    struct wkv *kv;      /* (n_kv) in insertion order */
    size_t n_kv, cap_kv;
    struct wtensor *t;   /* (n_t) in insertion order */
    size_t n_t, cap_t;
    struct hset names;   /* tensor name -> index */
};

struct gguf_writer *gguf_writer_new(void)
{
    struct gguf_writer *w = calloc(1, sizeof(*w));
    if (w)
        hset_init(&w->names);
    return w;
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    free(w->kv);
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    hset_release(&w->names);
    free(w);
}

static int valid_name(const char *s, size_t max)
{
    if (!s || !*s)
        return 0;
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f || n >= max)
            return 0;
    return 1;
}

/* Store (taking ownership of val) under key, replacing an existing value. */
static int put(struct gguf_writer *w, const char *key, enum gguf_type type, uint8_t *val, size_t size)
{
    if (!w || !valid_name(key, GGUF_MAX_KEY)) {
        free(val);
        return AISLE_EINVAL;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].size = size;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? 2 * w->cap_kv : 16;
        struct wkv *nk = realloc(w->kv, nc * sizeof(*nk));
        if (!nk) {
            free(val);
            return AISLE_ENOMEM;
        }
        w->kv = nk;
        w->cap_kv = nc;
    }
    char *k = strdup(key);
    if (!k) {
        free(val);
        return AISLE_ENOMEM;
    }
    w->kv[w->n_kv++] = (struct wkv){k, type, val, size};
    return 0;
}

static int put_copy(struct gguf_writer *w, const char *key, enum gguf_type type, const void *p, size_t size)
{
    uint8_t *v = malloc(size ? size : 1);
    if (!v)
        return AISLE_ENOMEM;
    memcpy(v, p, size);
    return put(w, key, type, v, size);
}

static size_t scalar_bytes(enum gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

int gguf_writer_set_scalar(struct gguf_writer *w, const char *key, enum gguf_type type, const void *v)
{
    size_t n = scalar_bytes(type);
    if (!n || !v)
        return AISLE_EINVAL;
    if (type == GGUF_TYPE_BOOL) {
        uint8_t b = *(const uint8_t *)v != 0;
        return put_copy(w, key, type, &b, 1);
    }
    return put_copy(w, key, type, v, n);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_UINT32, &v);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_INT32, &v);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_UINT64, &v);
}

int gguf_writer_set_i64(struct gguf_writer *w, const char *key, int64_t v)
{
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_INT64, &v);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_FLOAT32, &v);
}

int gguf_writer_set_f64(struct gguf_writer *w, const char *key, double v)
{
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_FLOAT64, &v);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, int v)
{
    uint8_t b = v != 0;
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_BOOL, &b);
}

int gguf_writer_set_strn(struct gguf_writer *w, const char *key, const char *val, size_t len)
{
    if ((!val && len) || len > GGUF_MAX_STRING)
        return AISLE_EINVAL;
    uint8_t *v = malloc(8 + len);
    if (!v)
        return AISLE_ENOMEM;
    uint64_t l = len;
    memcpy(v, &l, 8);
    if (len)
        memcpy(v + 8, val, len);
    return put(w, key, GGUF_TYPE_STRING, v, 8 + len);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *val)
{
    if (!val)
        return AISLE_EINVAL;
    return gguf_writer_set_strn(w, key, val, strlen(val));
}

int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem, const void *data, size_t n)
{
    size_t esz = scalar_bytes(elem);
    if (!esz || (!data && n) || n > GGUF_MAX_ARRAY || n > (SIZE_MAX - 12) / esz)
        return AISLE_EINVAL;
    uint8_t *v = malloc(12 + n * esz);
    if (!v)
        return AISLE_ENOMEM;
    uint32_t t = elem;
    uint64_t cnt = n;
    memcpy(v, &t, 4);
    memcpy(v + 4, &cnt, 8);
    if (n)
        memcpy(v + 12, data, n * esz);
    if (elem == GGUF_TYPE_BOOL)
        for (size_t i = 0; i < n; i++)
            v[12 + i] = v[12 + i] != 0;
    return put(w, key, GGUF_TYPE_ARRAY, v, 12 + n * esz);
}

int gguf_writer_set_arr_strn(struct gguf_writer *w, const char *key, const char *const *s, const size_t *lens,
                             size_t n)
{
    if ((!s && n) || n > GGUF_MAX_ARRAY)
        return AISLE_EINVAL;
    size_t total = 12;
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : (s[i] ? strlen(s[i]) : 0);
        if ((!s[i] && len) || len > GGUF_MAX_STRING || total > SIZE_MAX - 8 - len)
            return AISLE_EINVAL;
        total += 8 + len;
    }
    uint8_t *v = malloc(total), *o = v + 12;
    if (!v)
        return AISLE_ENOMEM;
    uint32_t t = GGUF_TYPE_STRING;
    uint64_t cnt = n;
    memcpy(v, &t, 4);
    memcpy(v + 4, &cnt, 8);
    for (size_t i = 0; i < n; i++) {
        uint64_t len = lens ? lens[i] : (s[i] ? strlen(s[i]) : 0);
        memcpy(o, &len, 8);
        if (len)
            memcpy(o + 8, s[i], (size_t)len);
        o += 8 + len;
    }
    return put(w, key, GGUF_TYPE_ARRAY, v, total);
}

int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *v, size_t n)
{
    return gguf_writer_set_arr_strn(w, key, v, NULL, n);
}

int gguf_writer_set_raw(struct gguf_writer *w, const char *key, enum gguf_type type, const void *p, size_t size)
{
    if (!p && size)
        return AISLE_EINVAL;
    if (gguf_value_check(type, p, size, NULL, 0))
        return AISLE_EFORMAT;
    return put_copy(w, key, type, p, size);
}

int gguf_writer_remove(struct gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].key);
            free(w->kv[i].val);
            memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof(*w->kv));
            w->n_kv--;
            return 0;
        }
    }
    return AISLE_ENOTFOUND;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type, int ndim, const int64_t *ne,
                           const void *data, size_t nbytes)
{
    if (!w || !valid_name(name, GGUF_MAX_NAME) || ndim < 1 || ndim > GGUF_MAX_DIMS || !ne || (!data && nbytes))
        return AISLE_EINVAL;
    struct wtensor t = {NULL, type, ndim, {1, 1, 1, 1}, NULL, nbytes};
    uint64_t nel = 1;
    for (int d = 0; d < ndim; d++) {
        if (ne[d] <= 0 || nel > (uint64_t)INT64_MAX / (uint64_t)ne[d])
            return AISLE_EINVAL;
        nel *= (uint64_t)ne[d];
        t.ne[d] = ne[d];
    }
    size_t row = ggml_row_size(type, t.ne[0]);
    uint64_t rows = (uint64_t)t.ne[1] * (uint64_t)t.ne[2] * (uint64_t)t.ne[3];
    if (!row || rows > SIZE_MAX / row || rows * row != nbytes)
        return AISLE_EINVAL;
    uint64_t dummy;
    if (hset_get(&w->names, name, &dummy))
        return AISLE_EEXIST;
    if (w->n_t == w->cap_t) {
        size_t nc = w->cap_t ? 2 * w->cap_t : 16;
        struct wtensor *nt = realloc(w->t, nc * sizeof(*nt));
        if (!nt)
            return AISLE_ENOMEM;
        w->t = nt;
        w->cap_t = nc;
    }
    t.name = strdup(name);
    t.data = malloc(nbytes ? nbytes : 1);
    int rc = t.name && t.data ? hset_put(&w->names, name, w->n_t) : AISLE_ENOMEM;
    if (rc < 0) {
        free(t.name);
        free(t.data);
        return rc;
    }
    if (nbytes)
        memcpy(t.data, data, nbytes);
    w->t[w->n_t++] = t;
    return 0;
}

/* ---- output ---------------------------------------------------------------- */

struct out {
    FILE *f;
    uint64_t off;
    int bad;
};

static void emit(struct out *o, const void *p, size_t n)
{
    if (!o->bad && n && fwrite(p, 1, n, o->f) != n)
        o->bad = 1;
    o->off += n;
}

static void emit_u32(struct out *o, uint32_t v)
{
    emit(o, &v, 4);
}

static void emit_u64(struct out *o, uint64_t v)
{
    emit(o, &v, 8);
}

static void emit_str(struct out *o, const char *s)
{
    size_t n = strlen(s);
    emit_u64(o, n);
    emit(o, s, n);
}

static void emit_pad(struct out *o, uint32_t align)
{
    static const uint8_t zeros[256];
    uint64_t pad = (align - o->off % align) % align;
    while (pad) {
        size_t k = pad < sizeof(zeros) ? (size_t)pad : sizeof(zeros);
        emit(o, zeros, k);
        pad -= k;
    }
}

static int writer_alignment(const struct gguf_writer *w, uint32_t *align)
{
    *align = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment"))
            continue;
        uint32_t a;
        if (w->kv[i].type != GGUF_TYPE_UINT32)
            return AISLE_EINVAL;
        memcpy(&a, w->kv[i].val, 4);
        if (a == 0 || (a & (a - 1)) || a > GGUF_MAX_ALIGNMENT)
            return AISLE_EINVAL;
        *align = a;
    }
    return 0;
}

static void emit_all(const struct gguf_writer *w, struct out *o, uint32_t align)
{
    emit_u32(o, GGUF_MAGIC);
    emit_u32(o, GGUF_VERSION);
    emit_u64(o, w->n_t);
    emit_u64(o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        emit_str(o, w->kv[i].key);
        emit_u32(o, w->kv[i].type);
        emit(o, w->kv[i].val, w->kv[i].size);
    }
    uint64_t data_off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        emit_str(o, t->name);
        emit_u32(o, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++)
            emit_u64(o, (uint64_t)t->ne[d]);
        emit_u32(o, t->type);
        emit_u64(o, data_off);
        data_off += t->nbytes;
        data_off += (align - data_off % align) % align;
    }
    emit_pad(o, align);
    for (size_t i = 0; i < w->n_t; i++) {
        emit(o, w->t[i].data, w->t[i].nbytes);
        emit_pad(o, align);
    }
}

/* Make the rename durable: fsync the directory holding path (best effort). */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

int gguf_writer_write(struct gguf_writer *w, const char *path, char *err, size_t errlen)
{
    uint32_t align;
    if (writer_alignment(w, &align)) {
        if (err && errlen)
            snprintf(err, errlen, "general.alignment must be a u32 power of two <= %u", GGUF_MAX_ALIGNMENT);
        return AISLE_EINVAL;
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return AISLE_ENOMEM;
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int rc = AISLE_EIO, saved;
    const char *step = "create";
    FILE *f = NULL;
    int fd = mkstemp(tmp);
    if (fd < 0)
        goto fail;
    step = "open";
    if (!(f = fdopen(fd, "wb"))) {
        close(fd);
        goto fail_unlink;
    }
    struct out o = {f, 0, 0};
    emit_all(w, &o, align);
    step = "write";
    if (o.bad || fflush(f) != 0)
        goto fail_unlink;
    step = "fsync";
    if (fsync(fileno(f)) != 0)
        goto fail_unlink;
    /* mkstemp makes the file 0600; a model file is ordinary data. */
    (void)fchmod(fileno(f), 0644);
    step = "close";
    int cr = fclose(f);
    f = NULL;
    if (cr != 0)
        goto fail_unlink;
    step = "rename";
    if (rename(tmp, path) != 0)
        goto fail_unlink;
    free(tmp);
    sync_dir(path);
    return 0;
fail_unlink:
    saved = errno;
    if (f)
        fclose(f);
    unlink(tmp);
    errno = saved;
fail:
    if (err && errlen)
        snprintf(err, errlen, "%s: %s: %s", path, step, strerror(errno));
    free(tmp);
    return rc;
}
