/*
 * shard.c — token and SFT shard files (format and contract in shard.h).
 *
 * The writer streams records through stdio into a temporary file, with a
 * zero header first; finish seeks back, writes the real header and commits
 * atomically. The reader maps the file read-only and validates every byte the
 * header describes before handing anything out, so later accessors need no
 * checks.
 */
#include "train/shard.h"

#include "core/error.h"
#include "train/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MAGIC_TOK[8] = {'A', 'I', 'S', 'L', 'E', 'T', 'O', 'K'};
static const char MAGIC_SFT[8] = {'A', 'I', 'S', 'L', 'E', 'S', 'F', 'T'};

/* ------------------------------------------------------------------ writer */

struct shard_writer {
    struct trn_atomic a;
    enum shard_kind kind;
    uint32_t vocab, eos;
    uint64_t count, tokens;
    int bad; /* a write failed: finish refuses */
    uint32_t buf[4096];
};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

int shard_writer_open(struct shard_writer **out, const char *path, enum shard_kind kind, uint32_t vocab_size,
                      int32_t eos, char *err, size_t errlen)
{
    if ((kind != SHARD_TOKENS && kind != SHARD_SFT) || vocab_size == 0 || vocab_size > SHARD_MAX_VOCAB ||
        (kind == SHARD_TOKENS && (eos < 0 || (uint32_t)eos >= vocab_size))) {
        if (err && errlen)
            snprintf(err, errlen, "%s: bad shard parameters (kind %d, vocab %u, eos %d)", path, (int)kind,
                     vocab_size, (int)eos);
        return AISLE_EINVAL;
    }
    struct shard_writer *w = calloc(1, sizeof *w);
    if (!w)
        return AISLE_ENOMEM;
    int rc = trn_atomic_open(&w->a, path, err, errlen);
    if (rc) {
        free(w);
        return rc;
    }
    w->kind = kind;
    w->vocab = vocab_size;
    w->eos = kind == SHARD_TOKENS ? (uint32_t)eos : 0;
    uint8_t zero[SHARD_HEADER_SIZE] = {0};
    if (fwrite(zero, 1, sizeof zero, w->a.f) != sizeof zero)
        w->bad = 1;
    *out = w;
    return 0;
}

static int check_ids(const struct shard_writer *w, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= w->vocab)
            return AISLE_EINVAL;
    return 0;
}

/* Write n ids as little-endian u32 (the host is little-endian: a copy). */
static int write_ids(struct shard_writer *w, const int32_t *ids, size_t n)
{
    while (n) {
        size_t k = n < 4096 ? n : 4096;
        memcpy(w->buf, ids, k * sizeof *ids);
        if (fwrite(w->buf, sizeof *w->buf, k, w->a.f) != k) {
            w->bad = 1;
            return AISLE_EIO;
        }
        ids += k;
        n -= k;
    }
    return 0;
}

int shard_writer_add_doc(struct shard_writer *w, const int32_t *ids, size_t n)
{
    if (w->kind != SHARD_TOKENS || (n && !ids) || check_ids(w, ids, n) || w->count >= UINT32_MAX ||
        n >= (UINT64_MAX >> 3) - w->tokens)
        return AISLE_EINVAL;
    int32_t eos = (int32_t)w->eos;
    int rc = write_ids(w, ids, n);
    if (!rc)
        rc = write_ids(w, &eos, 1);
    if (rc)
        return rc;
    w->tokens += n + 1;
    w->count++;
    return 0;
}

int shard_writer_add_example(struct shard_writer *w, const int32_t *ids, const uint8_t *mask, size_t n)
{
    if (w->kind != SHARD_SFT || n == 0 || n > SHARD_MAX_EXAMPLE || !ids || !mask || check_ids(w, ids, n))
        return AISLE_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (mask[i] > 1)
            return AISLE_EINVAL;
    uint8_t len[4];
    put_u32(len, (uint32_t)n);
    if (fwrite(len, 1, 4, w->a.f) != 4) {
        w->bad = 1;
        return AISLE_EIO;
    }
    int rc = write_ids(w, ids, n);
    if (rc)
        return rc;
    if (fwrite(mask, 1, n, w->a.f) != n) {
        w->bad = 1;
        return AISLE_EIO;
    }
    w->tokens += n;
    w->count++;
    return 0;
}

uint64_t shard_writer_count(const struct shard_writer *w)
{
    return w->count;
}

uint64_t shard_writer_tokens(const struct shard_writer *w)
{
    return w->tokens;
}

int shard_writer_finish(struct shard_writer *w, char *err, size_t errlen)
{
    uint8_t h[SHARD_HEADER_SIZE] = {0};
    int rc = AISLE_EIO;
    if (w->bad || fflush(w->a.f) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s: write: %s", w->a.path, strerror(errno ? errno : EIO));
        goto fail;
    }
    memcpy(h, w->kind == SHARD_TOKENS ? MAGIC_TOK : MAGIC_SFT, 8);
    put_u32(h + 8, SHARD_VERSION);
    put_u32(h + 12, w->vocab);
    if (w->kind == SHARD_TOKENS) {
        put_u64(h + 16, w->tokens);
        put_u32(h + 24, (uint32_t)w->count);
    } else {
        put_u64(h + 16, w->count);
    }
    if (fseek(w->a.f, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof h, w->a.f) != sizeof h) {
        if (err && errlen)
            snprintf(err, errlen, "%s: header: %s", w->a.path, strerror(errno ? errno : EIO));
        goto fail;
    }
    rc = trn_atomic_commit(&w->a, err, errlen);
    free(w);
    return rc;
fail:
    shard_writer_free(w);
    return rc;
}

void shard_writer_free(struct shard_writer *w)
{
    if (!w)
        return;
    trn_atomic_abort(&w->a);
    free(w);
}

/* ------------------------------------------------------------------ reader */

#define BAD(off, ...)                                                                                        \
    do {                                                                                                     \
        if (err && errlen) {                                                                                 \
            int k_ = snprintf(err, errlen, "%s: offset %llu: ", name, (unsigned long long)(off));           \
            if (k_ >= 0 && (size_t)k_ < errlen)                                                              \
                snprintf(err + k_, errlen - (size_t)k_, __VA_ARGS__);                                        \
        }                                                                                                    \
        rc = AISLE_EFORMAT;                                                                                  \
        goto fail;                                                                                           \
    } while (0)

/* First id in [p, p + 4n) that is >= vocab, as an index; n when none. */
static uint64_t first_bad_id(const uint8_t *p, uint64_t n, uint32_t vocab)
{
    uint32_t mx = 0;
    /* Fast pass: the maximum in blocks; only a block that fails is searched. */
    for (uint64_t i = 0; i < n; i += 1024) {
        uint64_t e = n - i < 1024 ? n : i + 1024;
        mx = 0;
        for (uint64_t j = i; j < e; j++) {
            uint32_t v;
            memcpy(&v, p + 4 * j, 4);
            mx = v > mx ? v : mx;
        }
        if (mx >= vocab)
            for (uint64_t j = i; j < e; j++)
                if (get_u32(p + 4 * j) >= vocab)
                    return j;
    }
    return n;
}

static int parse(struct shard *s, const char *name, char *err, size_t errlen)
{
    const uint8_t *d = s->data;
    size_t size = s->size;
    int rc = 0;
    if (size < SHARD_HEADER_SIZE)
        BAD(size, "file of %zu bytes is shorter than the %d-byte shard header", size, SHARD_HEADER_SIZE);
    if (!memcmp(d, MAGIC_TOK, 8))
        s->kind = SHARD_TOKENS;
    else if (!memcmp(d, MAGIC_SFT, 8))
        s->kind = SHARD_SFT;
    else
        BAD(0, "bad magic (want \"AISLETOK\" or \"AISLESFT\")");
    uint32_t version = get_u32(d + 8);
    if (version != SHARD_VERSION)
        BAD(8, "unsupported version %u (want %u)", version, SHARD_VERSION);
    s->vocab_size = get_u32(d + 12);
    if (s->vocab_size == 0 || s->vocab_size > SHARD_MAX_VOCAB)
        BAD(12, "vocab_size %u outside 1..%u", s->vocab_size, SHARD_MAX_VOCAB);
    uint64_t left = size - SHARD_HEADER_SIZE;
    if (s->kind == SHARD_TOKENS) {
        uint64_t n = get_u64(d + 16);
        uint32_t docs = get_u32(d + 24);
        if (get_u32(d + 28) != 0)
            BAD(28, "reserved field is %u, not 0", get_u32(d + 28));
        if (n > left / 4)
            BAD(16, "n_tokens %llu needs %llu bytes but %llu remain", (unsigned long long)n,
                (unsigned long long)n * 4, (unsigned long long)left);
        if (n * 4 != left)
            BAD(SHARD_HEADER_SIZE + n * 4, "%llu trailing bytes after %llu tokens",
                (unsigned long long)(left - n * 4), (unsigned long long)n);
        if (docs > n)
            BAD(24, "n_docs %u exceeds n_tokens %llu (each document ends with EOS)", docs, (unsigned long long)n);
        uint64_t bad = first_bad_id(d + SHARD_HEADER_SIZE, n, s->vocab_size);
        if (bad < n)
            BAD(SHARD_HEADER_SIZE + 4 * bad, "token %llu has id %u >= vocab_size %u", (unsigned long long)bad,
                get_u32(d + SHARD_HEADER_SIZE + 4 * bad), s->vocab_size);
        s->n_tokens = n;
        s->n_docs = docs;
        s->tokens = (const uint32_t *)(const void *)(d + SHARD_HEADER_SIZE);
        return 0;
    }
    uint64_t n_ex = get_u64(d + 16);
    if (get_u64(d + 24) != 0)
        BAD(24, "reserved field is not 0");
    /* Each example takes at least 4 + 4 + 1 bytes. */
    if (n_ex > left / 9)
        BAD(16, "n_examples %llu cannot fit in the %llu bytes that remain", (unsigned long long)n_ex,
            (unsigned long long)left);
    if (n_ex && !(s->ex_off = malloc(n_ex * sizeof *s->ex_off))) {
        rc = AISLE_ENOMEM;
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory for %llu examples", name, (unsigned long long)n_ex);
        goto fail;
    }
    uint64_t off = SHARD_HEADER_SIZE;
    for (uint64_t i = 0; i < n_ex; i++) {
        if (size - off < 4)
            BAD(off, "example %llu: length field past the end of the file", (unsigned long long)i);
        uint32_t n = get_u32(d + off);
        if (n == 0 || n > SHARD_MAX_EXAMPLE)
            BAD(off, "example %llu: length %u outside 1..%u", (unsigned long long)i, n, SHARD_MAX_EXAMPLE);
        if ((uint64_t)n * 5 > size - off - 4)
            BAD(off, "example %llu: %u tokens need %llu bytes but %llu remain", (unsigned long long)i, n,
                (unsigned long long)n * 5, (unsigned long long)(size - off - 4));
        s->ex_off[i] = off;
        const uint8_t *ids = d + off + 4, *mask = ids + 4 * (size_t)n;
        uint64_t bad = first_bad_id(ids, n, s->vocab_size);
        if (bad < n)
            BAD(off + 4 + 4 * bad, "example %llu: token %llu has id %u >= vocab_size %u", (unsigned long long)i,
                (unsigned long long)bad, get_u32(ids + 4 * bad), s->vocab_size);
        for (uint32_t j = 0; j < n; j++)
            if (mask[j] > 1)
                BAD(off + 4 + 4 * (uint64_t)n + j, "example %llu: mask byte %u is %u (want 0 or 1)",
                    (unsigned long long)i, j, mask[j]);
        s->n_tokens += n;
        if (n > s->max_example)
            s->max_example = n;
        off += 4 + 5 * (uint64_t)n;
    }
    if (off != size)
        BAD(off, "%llu trailing bytes after %llu examples", (unsigned long long)(size - off),
            (unsigned long long)n_ex);
    s->n_examples = n_ex;
    return 0;
fail:
    free(s->ex_off);
    s->ex_off = NULL;
    return rc;
}

int shard_open_mem(struct shard **out, const void *data, size_t size, const char *name, char *err, size_t errlen)
{
    struct shard *s = calloc(1, sizeof *s);
    if (!s)
        return AISLE_ENOMEM;
    s->data = data;
    s->size = size;
    int rc = parse(s, name, err, errlen);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int shard_open(struct shard **out, const char *path, char *err, size_t errlen)
{
    const void *data;
    void *map;
    size_t len;
    struct shard *s;
    int rc = trn_map_file(path, &data, &map, &len, err, errlen);
    if (rc)
        return rc;
    if ((rc = shard_open_mem(&s, data, len, path, err, errlen))) {
        trn_unmap(map, len);
        return rc;
    }
    s->map = map;
    s->map_len = len;
    *out = s;
    return 0;
}

void shard_close(struct shard *s)
{
    if (!s)
        return;
    trn_unmap(s->map, s->map_len);
    free(s->ex_off);
    free(s);
}

uint32_t shard_example_len(const struct shard *s, uint64_t i)
{
    return get_u32(s->data + s->ex_off[i]);
}

void shard_example_get(const struct shard *s, uint64_t i, int32_t *ids, uint8_t *mask)
{
    const uint8_t *p = s->data + s->ex_off[i];
    uint32_t n = get_u32(p);
    if (ids)
        memcpy(ids, p + 4, (size_t)n * 4);
    if (mask)
        memcpy(mask, p + 4 + (size_t)n * 4, n);
}
