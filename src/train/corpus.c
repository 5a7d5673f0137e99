/*
 * corpus.c — documents to token shards with a per-source validation split,
 * the manifest, and JSON Lines text input (contract in corpus.h).
 *
 * The builder keeps a batch of documents (copies); when it holds
 * BATCH_DOCS documents or BATCH_BYTES bytes, the pool tokenizes them (items
 * taken through an atomic counter; each thread has its own tok_cache) and
 * the caller writes them to the shards in input order.
 */
#include "train/corpus.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/lineio.h"
#include "gguf/gguf.h"
#include "tensor/tensor.h"
#include "tok/tok.h"
#include "train/atomic.h"
#include "train/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH_DOCS 2048
#define BATCH_BYTES (8u << 20)
#define DOC_TOKENS_MAX ((size_t)CORPUS_MAX_DOC + 16) /* byte-level BPE: at most one token per byte */


int corpus_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= CORPUS_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define FNV_OFFSET 0xcbf29ce484222325ull

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ------------------------------------------------------------------ builder */

struct source {
    char name[CORPUS_MAX_NAME];
    uint64_t name_hash;
    uint64_t next; /* index of the next document of this source, over all ranks */
    struct shard_writer *w[2]; /* train, val */
};

struct doc {
    int src, val;
    char *text;
    size_t len;
    struct tok_ids ids;
    int rc;
};

struct corpus_builder {
    struct corpus_opts o;
    char *dir;
    const struct tok *t;
    struct tpool *pool;
    struct tok_cache **caches; /* (nthreads) */
    int nthreads;
    struct source src[CORPUS_MAX_SOURCES];
    int n_src;
    struct doc *batch; /* (BATCH_DOCS) */
    int n_batch;
    size_t batch_bytes;
    uint64_t docs;
    atomic_int next_item;
};

int corpus_builder_new(struct corpus_builder **out, const struct corpus_opts *o, const struct tok *t, char *err,
                       size_t errlen)
{
    if (!o->out_dir || !(o->val_frac >= 0 && o->val_frac < 1) || o->size < 1 || o->rank < 0 || o->rank >= o->size) {
        trn_seterr(err, errlen, "corpus: bad options (val_frac %g, rank %d of %d)", o->val_frac, o->rank, o->size);
        return AISLE_EINVAL;
    }
    struct corpus_builder *b = calloc(1, sizeof *b);
    if (!b)
        goto nomem;
    b->o = *o;
    b->t = t;
    b->dir = strdup(o->out_dir);
    b->batch = calloc(BATCH_DOCS, sizeof *b->batch);
    b->pool = tpool_new(o->nthreads);
    if (!b->dir || !b->batch || !b->pool)
        goto nomem;
    b->o.out_dir = b->dir;
    b->nthreads = tpool_nthreads(b->pool);
    b->caches = calloc((size_t)b->nthreads, sizeof *b->caches);
    if (!b->caches)
        goto nomem;
    for (int i = 0; i < b->nthreads; i++)
        if (!(b->caches[i] = tok_cache_new(t)))
            goto nomem;
    for (int i = 0; i < BATCH_DOCS; i++)
        tok_ids_init(&b->batch[i].ids, DOC_TOKENS_MAX);
    *out = b;
    return 0;
nomem:
    corpus_builder_free(b);
    trn_seterr(err, errlen, "corpus: out of memory");
    return AISLE_ENOMEM;
}

void corpus_builder_free(struct corpus_builder *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n_src; i++)
        for (int k = 0; k < 2; k++)
            shard_writer_free(b->src[i].w[k]);
    if (b->batch)
        for (int i = 0; i < BATCH_DOCS; i++) {
            free(b->batch[i].text);
            tok_ids_release(&b->batch[i].ids);
        }
    if (b->caches)
        for (int i = 0; i < b->nthreads; i++)
            tok_cache_free(b->caches[i]);
    free(b->caches);
    tpool_free(b->pool);
    free(b->batch);
    free(b->dir);
    free(b);
}

uint64_t corpus_builder_docs(const struct corpus_builder *b)
{
    return b->docs;
}

static void shard_name(char *out, size_t n, const char *dir, const char *src, int val, int rank, int size)
{
    if (size > 1)
        snprintf(out, n, "%s%s%s.%s.%d.tok", dir ? dir : "", dir ? "/" : "", src, val ? "val" : "train", rank);
    else
        snprintf(out, n, "%s%s%s.%s.tok", dir ? dir : "", dir ? "/" : "", src, val ? "val" : "train");
}

static int find_source(struct corpus_builder *b, const char *name, char *err, size_t errlen)
{
    for (int i = 0; i < b->n_src; i++)
        if (!strcmp(b->src[i].name, name))
            return i;
    if (!corpus_name_ok(name)) {
        trn_seterr(err, errlen, "corpus: bad source name '%s' (want 1-%d of [a-z0-9_-])", name, CORPUS_MAX_NAME - 1);
        return AISLE_EINVAL;
    }
    if (b->n_src == CORPUS_MAX_SOURCES) {
        trn_seterr(err, errlen, "corpus: more than %d sources", CORPUS_MAX_SOURCES);
        return AISLE_EINVAL;
    }
    struct source *s = &b->src[b->n_src];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->name_hash = fnv1a(name, strlen(name), FNV_OFFSET);
    int32_t eos = tok_eos(b->t);
    for (int k = 0; k < 2; k++) {
        char path[4096];
        shard_name(path, sizeof path, b->dir, name, k, b->o.rank, b->o.size);
        int rc = shard_writer_open(&s->w[k], path, SHARD_TOKENS, (uint32_t)tok_n_vocab(b->t), eos, err, errlen);
        if (rc) {
            shard_writer_free(s->w[0]);
            s->w[0] = NULL;
            return rc;
        }
    }
    return b->n_src++;
}

static void tokenize_job(void *ctx, int ith, int nth)
{
    (void)nth;
    struct corpus_builder *b = ctx;
    for (;;) {
        int i = atomic_fetch_add(&b->next_item, 1);
        if (i >= b->n_batch)
            break;
        struct doc *d = &b->batch[i];
        d->ids.len = 0;
        d->rc = tok_encode(b->t, b->caches[ith], d->text, d->len, 0, &d->ids);
    }
}

static int flush(struct corpus_builder *b, char *err, size_t errlen)
{
    int rc = 0;
    if (!b->n_batch)
        return 0;
    atomic_store(&b->next_item, 0);
    tpool_run_dynamic(b->pool, tokenize_job, b);
    for (int i = 0; i < b->n_batch && !rc; i++) {
        struct doc *d = &b->batch[i];
        if (d->rc) {
            rc = d->rc;
            trn_seterr(err, errlen, "corpus: tokenizing a %s document: %s", b->src[d->src].name, aisle_strerror(rc));
            break;
        }
        rc = shard_writer_add_doc(b->src[d->src].w[d->val], d->ids.ids, d->ids.len);
        if (rc)
            trn_seterr(err, errlen, "corpus: writing a %s shard: %s", b->src[d->src].name, aisle_strerror(rc));
    }
    for (int i = 0; i < b->n_batch; i++) {
        free(b->batch[i].text);
        b->batch[i].text = NULL;
        b->batch[i].ids.len = 0;
    }
    b->n_batch = 0;
    b->batch_bytes = 0;
    return rc;
}

int corpus_builder_source(struct corpus_builder *b, const char *source, char *err, size_t errlen)
{
    int si = find_source(b, source, err, errlen);
    return si < 0 ? si : 0;
}

int corpus_builder_add(struct corpus_builder *b, const char *source, const char *text, size_t n, char *err,
                       size_t errlen)
{
    int si = find_source(b, source, err, errlen);
    if (si < 0)
        return si;
    struct source *s = &b->src[si];
    if (n > CORPUS_MAX_DOC) {
        trn_seterr(err, errlen, "corpus: a %s document of %zu bytes (limit %u)", source, n, CORPUS_MAX_DOC);
        return AISLE_EINVAL;
    }
    uint64_t i = s->next++;
    b->docs++;
    if (i % (uint64_t)b->o.size != (uint64_t)b->o.rank)
        return 0;
    /* Held out by document: a hash of (seed, source, index) below val_frac. */
    uint64_t h = splitmix64(b->o.seed ^ s->name_hash ^ splitmix64(i));
    int val = (double)(h >> 11) * 0x1.0p-53 < b->o.val_frac;
    struct doc *d = &b->batch[b->n_batch];
    if (!(d->text = malloc(n + 1))) {
        trn_seterr(err, errlen, "corpus: out of memory");
        return AISLE_ENOMEM;
    }
    memcpy(d->text, text, n);
    d->text[n] = 0;
    d->len = n;
    d->src = si;
    d->val = val;
    b->n_batch++;
    b->batch_bytes += n;
    if (b->n_batch == BATCH_DOCS || b->batch_bytes >= BATCH_BYTES)
        return flush(b, err, errlen);
    return 0;
}

int corpus_builder_finish(struct corpus_builder *b, char *err, size_t errlen)
{
    int rc = flush(b, err, errlen);
    for (int i = 0; i < b->n_src; i++)
        for (int k = 0; k < 2; k++) {
            struct shard_writer *w = b->src[i].w[k];
            b->src[i].w[k] = NULL;
            if (!rc)
                rc = shard_writer_finish(w, err, errlen);
            else
                shard_writer_free(w);
        }
    return rc;
}

/* ----------------------------------------------------------------- manifest */

int corpus_file_hash(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return AISLE_EIO;
    unsigned char buf[65536];
    uint64_t h = FNV_OFFSET;
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        h = fnv1a(buf, k, h);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return AISLE_EIO;
    *out = h;
    return 0;
}

static int copy_file(const char *from, const char *to, char *err, size_t errlen)
{
    FILE *f = fopen(from, "rb");
    if (!f) {
        trn_seterr(err, errlen, "%s: %s", from, strerror(errno));
        return AISLE_EIO;
    }
    struct trn_atomic a;
    int rc = trn_atomic_open(&a, to, err, errlen);
    if (rc) {
        fclose(f);
        return rc;
    }
    unsigned char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        if (fwrite(buf, 1, k, a.f) != k)
            break;
    if (ferror(f) || ferror(a.f)) {
        trn_seterr(err, errlen, "copying %s to %s failed", from, to);
        fclose(f);
        trn_atomic_abort(&a);
        return AISLE_EIO;
    }
    fclose(f);
    return trn_atomic_commit(&a, err, errlen);
}

int corpus_write_manifest(const char *dir, const char *const *sources, int n_sources, int size, uint64_t seed,
                          double val_frac, const char *tokenizer_path, char *err, size_t errlen)
{
    int rc = AISLE_ENOMEM;
    json_t *root = json_object(), *arr = json_array(), *tj = json_object();
    char *text = NULL;
    struct gguf *g = NULL;
    struct tok *t = NULL;
    char path[4096];
    if (!root || !arr || !tj)
        goto fail;
    rc = gguf_open(&g, tokenizer_path, err, errlen);
    rc = rc ? rc : tok_load_gguf(&t, g, err, errlen);
    if (rc)
        goto fail;
    snprintf(path, sizeof path, "%s/tokenizer.gguf", dir);
    if ((rc = copy_file(tokenizer_path, path, err, errlen)))
        goto fail;
    uint64_t h;
    if ((rc = corpus_file_hash(path, &h))) {
        trn_seterr(err, errlen, "%s: cannot read back", path);
        goto fail;
    }
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    json_object_set_new(tj, "file", json_string("tokenizer.gguf"));
    json_object_set_new(tj, "fnv1a64", json_string(hex));
    json_object_set_new(tj, "vocab_size", json_integer((json_int_t)tok_n_vocab(t)));
    json_object_set_new(tj, "eos", json_integer(tok_eos(t)));
    for (int i = 0; i < n_sources; i++) {
        json_t *sj = json_object();
        json_object_set_new(sj, "name", json_string(sources[i]));
        for (int k = 0; k < 2; k++) {
            json_t *split = json_object(), *files = json_array();
            uint64_t docs = 0, tokens = 0;
            for (int r = 0; r < size; r++) {
                char name[256];
                shard_name(name, sizeof name, NULL, sources[i], k, r, size);
                snprintf(path, sizeof path, "%s/%s", dir, name);
                struct shard *s;
                if ((rc = shard_open(&s, path, err, errlen))) {
                    json_decref(split);
                    json_decref(files);
                    json_decref(sj);
                    goto fail;
                }
                docs += s->n_docs;
                tokens += s->n_tokens;
                shard_close(s);
                json_array_append_new(files, json_string(name));
            }
            json_object_set_new(split, "files", files);
            json_object_set_new(split, "docs", json_integer((json_int_t)docs));
            json_object_set_new(split, "tokens", json_integer((json_int_t)tokens));
            json_object_set_new(sj, k ? "val" : "train", split);
        }
        json_array_append_new(arr, sj);
    }
    json_object_set_new(root, "format", json_string("aisle-corpus"));
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "seed", json_integer((json_int_t)seed));
    json_object_set_new(root, "val_frac", json_real(val_frac));
    json_object_set_new(root, "ranks", json_integer(size));
    json_object_set_new(root, "tokenizer", tj);
    tj = NULL;
    json_object_set_new(root, "sources", arr);
    arr = NULL;
    rc = AISLE_ENOMEM;
    if (!(text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER)))
        goto fail;
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    size_t tl = strlen(text);
    text[tl] = '\n'; /* json_dumps leaves room for its NUL: write a newline instead */
    rc = trn_atomic_write(path, text, tl + 1, err, errlen);
fail:
    if (rc == AISLE_ENOMEM && err && errlen && !err[0])
        trn_seterr(err, errlen, "manifest: out of memory");
    free(text);
    json_decref(root);
    json_decref(arr);
    json_decref(tj);
    tok_free(t);
    gguf_close(g);
    return rc;
}

/* ------------------------------------------------------------------- text */

int corpus_read_text(const char *path, int (*fn)(void *ctx, const char *text, size_t len), void *ctx, char *err,
                     size_t errlen)
{
    struct lineio r;
    int rc = lineio_open(&r, path, CORPUS_MAX_DOC * 2);
    if (rc) {
        trn_seterr(err, errlen, "%s", r.err);
        return rc;
    }
    const char *line;
    size_t len;
    while ((rc = lineio_next(&r, &line, &len)) == 0) {
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
            k++;
        if (k == len)
            continue;
        json_error_t je;
        json_t *v = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
        json_t *tx = v && json_is_object(v) ? json_object_get(v, "text") : NULL;
        if (!v || !tx || !json_is_string(tx)) {
            trn_seterr(err, errlen, "%s:%llu: %s", path, (unsigned long long)r.lineno,
                   !v ? je.text : !json_is_object(v) ? "not a JSON object" : "no string member \"text\"");
            json_decref(v);
            rc = AISLE_EFORMAT;
            goto out;
        }
        rc = fn(ctx, json_string_value(tx), json_string_length(tx));
        json_decref(v);
        if (rc)
            goto out;
    }
    if (rc == AISLE_EEOF)
        rc = 0;
    else if (rc == AISLE_ETOOBIG)
        trn_seterr(err, errlen, "%s:%llu: line longer than %u bytes", path, (unsigned long long)r.lineno,
               CORPUS_MAX_DOC * 2);
    else
        trn_seterr(err, errlen, "%s: %s", path, r.err);
out:
    lineio_close(&r);
    return rc;
}

/* ------------------------------------------------------------ manifest read */

static int plain_name(const char *s)
{
    return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..") && strlen(s) < 256;
}

static int get_u64(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_split(json_t *sj, const char *key, struct corpus_split *sp, const char **what)
{
    json_t *o = json_object_get(sj, key), *files;
    *what = key;
    if (!json_is_object(o) || !json_is_array(files = json_object_get(o, "files")) ||
        get_u64(o, "docs", &sp->docs) || get_u64(o, "tokens", &sp->tokens))
        return AISLE_EFORMAT;
    size_t n = json_array_size(files);
    if (n == 0 || n > CORPUS_MAX_FILES)
        return AISLE_EFORMAT;
    if (!(sp->files = calloc(n, sizeof *sp->files)))
        return AISLE_ENOMEM;
    sp->n_files = (int)n;
    for (size_t i = 0; i < n; i++) {
        json_t *f = json_array_get(files, i);
        if (!json_is_string(f) || !plain_name(json_string_value(f))) {
            *what = "a file name (plain names inside the corpus directory only)";
            return AISLE_EFORMAT;
        }
        if (!(sp->files[i] = strdup(json_string_value(f))))
            return AISLE_ENOMEM;
    }
    return 0;
}

int corpus_manifest_parse(struct corpus_manifest **out, const char *data, size_t n, const char *name, char *err,
                          size_t errlen)
{
    json_error_t je;
    const char *what = "the top level";
    int rc = AISLE_EFORMAT;
    struct corpus_manifest *m = calloc(1, sizeof *m);
    json_t *root = json_loadb(data, n, JSON_REJECT_DUPLICATES, &je), *tj, *srcs, *v;
    uint64_t u;
    if (!m) {
        json_decref(root);
        trn_seterr(err, errlen, "%s: out of memory", name);
        return AISLE_ENOMEM;
    }
    if (!root) {
        trn_seterr(err, errlen, "%s: line %d: %s", name, je.line, je.text);
        corpus_manifest_free(m);
        return AISLE_EFORMAT;
    }
    if (!json_is_object(root))
        goto bad;
    what = "format (want \"aisle-corpus\")";
    v = json_object_get(root, "format");
    if (!json_is_string(v) || strcmp(json_string_value(v), "aisle-corpus"))
        goto bad;
    what = "version (want 1)";
    if (get_u64(root, "version", &u) || u != 1)
        goto bad;
    what = "seed";
    if (get_u64(root, "seed", &m->seed))
        goto bad;
    what = "val_frac";
    v = json_object_get(root, "val_frac");
    if (!json_is_number(v) || !(json_number_value(v) >= 0 && json_number_value(v) < 1))
        goto bad;
    m->val_frac = json_number_value(v);
    what = "ranks";
    if (get_u64(root, "ranks", &u) || u < 1 || u > CORPUS_MAX_FILES)
        goto bad;
    m->ranks = (int)u;
    what = "tokenizer";
    tj = json_object_get(root, "tokenizer");
    if (!json_is_object(tj))
        goto bad;
    v = json_object_get(tj, "file");
    if (!json_is_string(v) || !plain_name(json_string_value(v)))
        goto bad;
    if (!(m->tokenizer = strdup(json_string_value(v))))
        goto nomem;
    what = "tokenizer.vocab_size";
    if (get_u64(tj, "vocab_size", &u) || u < 1 || u > SHARD_MAX_VOCAB)
        goto bad;
    m->vocab_size = (uint32_t)u;
    what = "tokenizer.eos";
    if (get_u64(tj, "eos", &u) || u >= m->vocab_size)
        goto bad;
    m->eos = (int32_t)u;
    what = "tokenizer.fnv1a64";
    v = json_object_get(tj, "fnv1a64");
    if (!json_is_string(v) || json_string_length(v) != 16)
        goto bad;
    {
        char *end;
        errno = 0;
        m->tok_hash = strtoull(json_string_value(v), &end, 16);
        if (errno || *end)
            goto bad;
    }
    what = "sources";
    srcs = json_object_get(root, "sources");
    if (!json_is_array(srcs) || json_array_size(srcs) == 0 || json_array_size(srcs) > CORPUS_MAX_SOURCES)
        goto bad;
    for (size_t i = 0; i < json_array_size(srcs); i++) {
        json_t *sj = json_array_get(srcs, i);
        struct corpus_source *s = &m->sources[m->n_sources++];
        what = "a source's name";
        v = json_is_object(sj) ? json_object_get(sj, "name") : NULL;
        if (!json_is_string(v) || !corpus_name_ok(json_string_value(v)))
            goto bad;
        snprintf(s->name, sizeof s->name, "%s", json_string_value(v));
        for (size_t j = 0; j < i; j++)
            if (!strcmp(m->sources[j].name, s->name)) {
                what = "sources (a name repeats)";
                goto bad;
            }
        if ((rc = parse_split(sj, "train", &s->train, &what)) || (rc = parse_split(sj, "val", &s->val, &what))) {
            if (rc == AISLE_ENOMEM)
                goto nomem;
            goto bad;
        }
    }
    json_decref(root);
    *out = m;
    return 0;
nomem:
    json_decref(root);
    corpus_manifest_free(m);
    trn_seterr(err, errlen, "%s: out of memory", name);
    return AISLE_ENOMEM;
bad:
    json_decref(root);
    corpus_manifest_free(m);
    trn_seterr(err, errlen, "%s: bad or missing %s", name, what);
    return AISLE_EFORMAT;
}

int corpus_manifest_load(struct corpus_manifest **out, const char *dir, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        trn_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return AISLE_EIO;
    }
    struct buf b;
    buf_init(&b, 64u << 20);
    char chunk[65536];
    size_t k;
    int rc = 0;
    while (!rc && (k = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = buf_append(&b, chunk, k);
    int bad = ferror(f);
    fclose(f);
    if (rc || bad) {
        trn_seterr(err, errlen, "%s: %s", path, bad ? "read error" : "larger than 64 MiB or out of memory");
        buf_release(&b);
        return bad ? AISLE_EIO : AISLE_ETOOBIG;
    }
    rc = corpus_manifest_parse(out, b.data ? b.data : "", b.len, path, err, errlen);
    buf_release(&b);
    return rc;
}

void corpus_manifest_free(struct corpus_manifest *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_sources; i++) {
        struct corpus_split *sp[2] = {&m->sources[i].train, &m->sources[i].val};
        for (int k = 0; k < 2; k++) {
            for (int j = 0; j < sp[k]->n_files; j++)
                free(sp[k]->files[j]);
            free(sp[k]->files);
        }
    }
    free(m->tokenizer);
    free(m);
}
