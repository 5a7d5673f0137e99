/*
 * sft_data.c — SFT examples from real shopping data (contract in sft_data.h,
 * dataset mix and templates in docs/PROMPT.md).
 *
 * Each builder loads its records into a struct rows (strings copied), groups
 * them by product for same-product distractors, then emits one or more
 * examples per record through sft_out_add. Randomness (distractor choice,
 * passage order, templates, negatives) comes from a splitmix64 stream seeded by
 * (seed, dataset, record index), so one record's example does not depend on
 * how many random numbers another record used.
 */
#include "assist/sft_data.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/hset.h"
#include "core/lineio.h"
#include "core/utf8.h"
#include "train/shard.h"

#define MAX_FIELDS 32       /* columns of a table */
#define MAX_RECORD_LINES 4096 /* physical lines of one quoted record */
#define SFT_MAX_ANSWER 800    /* bytes of a copied answer: its passage is cut at 1,200 */

static const char *const dataset_names[SFT_N_DATASETS] = {
    "hetpqa", "semipqa", "mcauley-qa", "demo-qa", "coqasum", "fewsum", "subjqa", "live",
};

static const char *const dataset_files[SFT_N_DATASETS] = {
    "contextual-pqa/hetPQA/answer_generation/{train,dev}.csv.gz",
    "contextual-pqa/semiPQA/data-to-text/{train,dev}.csv.gz",
    "mcauley-amazon-qa/qa_{Appliances,Video_Games}.jsonl.gz",
    "demo-store/{qa,products}.jsonl.gz",
    "coqasum/coqasum_products.jsonl.gz",
    "fewsum-amazon/{train,val}.csv.gz",
    "subjqa/{electronics,grocery}/train.csv.gz, subjqa/{electronics,grocery,books,movies}/dev.csv.gz",
    "demo-store/{offers.generated,products}.jsonl.gz",
};

const char *sft_dataset_name(enum sft_dataset d)
{
    return (unsigned)d < SFT_N_DATASETS ? dataset_names[d] : NULL;
}

const char *sft_dataset_files(enum sft_dataset d)
{
    return (unsigned)d < SFT_N_DATASETS ? dataset_files[d] : NULL;
}

int sft_dataset_find(const char *name)
{
    for (int d = 0; d < SFT_N_DATASETS; d++)
        if (!strcmp(dataset_names[d], name))
            return d;
    return -1;
}

void sft_opts_default(struct sft_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->seed = 1;
    o->distractors = 3;
    o->max_tokens = 2048;
    o->dev_percent = 10;
    o->negative_percent = 10;
    o->max_passage_bytes = PROMPT_PASSAGE_BYTES_DEFAULT;
    o->multi_turn_percent = 15;
}

/* ---- tables (TSV/CSV with quoting) ---- */

struct sft_table {
    struct lineio in;
    char delim;
    struct buf rec;          /* field bytes, each NUL-terminated */
    size_t off[MAX_FIELDS];
    char *fields[MAX_FIELDS];
    size_t nfields;
    char **header;           /* (nheader) owned copies */
    size_t nheader;
    uint64_t line;           /* first line of the last record */
    char path[256];
    char err[1024];
};

const char *sft_table_error(const struct sft_table *t)
{
    return t->err;
}

uint64_t sft_table_line(const struct sft_table *t)
{
    return t->line;
}

/* Parse one record into t->fields. */
static int table_read(struct sft_table *t)
{
    const char *s;
    size_t n;
    int rc, quoted = 0, in_field_start = 1;
    size_t lines = 0;
    buf_reset(&t->rec);
    t->nfields = 0;
    do {
        rc = lineio_next(&t->in, &s, &n);
        if (rc == AISLE_EEOF && lines) {
            snprintf(t->err, sizeof(t->err), "%s:%llu: a quoted field is never closed", t->path,
                     (unsigned long long)t->line);
            return AISLE_EFORMAT;
        }
        if (rc == AISLE_EEOF)
            return rc;
        if (rc) {
            snprintf(t->err, sizeof(t->err), "%s:%llu: %s", t->path, (unsigned long long)t->in.lineno, t->in.err);
            return rc;
        }
        if (!lines) {
            t->line = t->in.lineno;
            if (!n)
                continue; /* blank line */
            t->off[0] = 0;
            t->nfields = 1;
        } else if ((rc = buf_putc(&t->rec, '\n'))) {
            goto toobig;
        }
        lines++;
        for (size_t i = 0; i < n; i++) {
            char c = s[i];
            if (quoted) {
                if (c != '"') {
                    if ((rc = buf_putc(&t->rec, c)))
                        goto toobig;
                } else if (i + 1 < n && s[i + 1] == '"') {
                    if ((rc = buf_putc(&t->rec, '"')))
                        goto toobig;
                    i++;
                } else {
                    quoted = 0;
                    if (i + 1 < n && s[i + 1] != t->delim) {
                        snprintf(t->err, sizeof(t->err), "%s:%llu: field %zu: text after a closing quote",
                                 t->path, (unsigned long long)t->line, t->nfields);
                        return AISLE_EFORMAT;
                    }
                }
                continue;
            }
            if (c == t->delim) {
                if ((rc = buf_putc(&t->rec, '\0')))
                    goto toobig;
                if (t->nfields == MAX_FIELDS) {
                    snprintf(t->err, sizeof(t->err), "%s:%llu: more than %d fields", t->path,
                             (unsigned long long)t->line, MAX_FIELDS);
                    return AISLE_ETOOBIG;
                }
                t->off[t->nfields++] = t->rec.len;
                in_field_start = 1;
                continue;
            }
            if (c == '"' && in_field_start) {
                quoted = 1;
                in_field_start = 0;
                continue;
            }
            in_field_start = 0;
            if ((rc = buf_putc(&t->rec, c)))
                goto toobig;
        }
        if (quoted && lines >= MAX_RECORD_LINES) {
            snprintf(t->err, sizeof(t->err), "%s:%llu: a quoted field runs over %d lines", t->path,
                     (unsigned long long)t->line, MAX_RECORD_LINES);
            return AISLE_ETOOBIG;
        }
    } while (quoted || !lines);
    if ((rc = buf_putc(&t->rec, '\0')))
        goto toobig;
    for (size_t i = 0; i < t->nfields; i++)
        t->fields[i] = t->rec.data + t->off[i];
    return 0;
toobig:
    snprintf(t->err, sizeof(t->err), "%s:%llu: record longer than %u bytes", t->path, (unsigned long long)t->line,
             SFT_MAX_RECORD);
    /* finish the record so that the next call starts after it */
    while (quoted) {
        if (lineio_next(&t->in, &s, &n))
            break;
        for (size_t i = 0; i < n; i++)
            if (s[i] == '"')
                quoted = !quoted;
    }
    return rc == AISLE_ENOMEM ? rc : AISLE_ETOOBIG;
}

int sft_table_open(struct sft_table **out, const char *path, char delim, char *err, size_t errlen)
{
    struct sft_table *t = calloc(1, sizeof(*t));
    int rc;
    if (!t)
        return AISLE_ENOMEM;
    t->delim = delim;
    snprintf(t->path, sizeof(t->path), "%s", path);
    buf_init(&t->rec, SFT_MAX_RECORD);
    if ((rc = lineio_open(&t->in, path, SFT_MAX_RECORD))) {
        snprintf(err, errlen, "%s: %s", path, t->in.err[0] ? t->in.err : aisle_strerror(rc));
        buf_release(&t->rec);
        free(t);
        return rc;
    }
    if ((rc = table_read(t))) {
        snprintf(err, errlen, "%s", rc == AISLE_EEOF ? "" : t->err);
        if (rc == AISLE_EEOF) {
            snprintf(err, errlen, "%s: empty file (no header)", path);
            rc = AISLE_EFORMAT;
        }
        goto fail;
    }
    t->header = calloc(t->nfields, sizeof(char *));
    if (!t->header) {
        rc = AISLE_ENOMEM;
        goto fail;
    }
    t->nheader = t->nfields;
    for (size_t i = 0; i < t->nfields; i++)
        if (!(t->header[i] = strdup(t->fields[i]))) {
            rc = AISLE_ENOMEM;
            goto fail;
        }
    *out = t;
    return 0;
fail:
    sft_table_close(t);
    return rc;
}

int sft_table_col(const struct sft_table *t, const char *name)
{
    for (size_t i = 0; i < t->nheader; i++)
        if (!strcmp(t->header[i], name))
            return (int)i;
    return -1;
}

int sft_table_next(struct sft_table *t, char ***fields, size_t *n)
{
    int rc = table_read(t);
    if (rc)
        return rc;
    *fields = t->fields;
    *n = t->nfields;
    return 0;
}

void sft_table_close(struct sft_table *t)
{
    if (!t)
        return;
    lineio_close(&t->in);
    buf_release(&t->rec);
    for (size_t i = 0; i < t->nheader; i++)
        free(t->header[i]);
    free(t->header);
    free(t);
}

/* ---- randomness ---- */

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t rng_below(struct rng *r, size_t n)
{
    return n ? (size_t)(rng_next(r) % n) : 0;
}

static struct rng rng_for(uint64_t seed, enum sft_dataset d, uint64_t idx)
{
    struct rng r = {seed * 0x2545f4914f6cdd1dULL + (uint64_t)d * 0x9e3779b97f4a7c15ULL + idx};
    rng_next(&r);
    return r;
}

/* Datasets without splits: a product's split from its id alone (not the seed,
 * so dev stays the same products across seeds). */
static enum sft_split product_split(enum sft_dataset d, const char *product, unsigned dev_percent)
{
    uint64_t h = hset_hash(HSET_FNV_SEED, dataset_names[d], strlen(dataset_names[d]));
    h = hset_hash(h, product, strlen(product));
    return h % 100 < dev_percent ? SFT_DEV : SFT_TRAIN;
}

/* ---- records and groups ---- */

#define ROW_FIELDS 6

struct row {
    char *f[ROW_FIELDS]; /* owned, NUL-terminated (NULL when absent) */
    enum sft_split split;
    size_t group;
};

struct rows {
    struct row *v;
    size_t n, cap;
    struct hset keys;  /* group key -> group index */
    size_t n_groups;
    size_t *gstart;    /* (n_groups + 1) into order */
    size_t *order;     /* (n) rows sorted by group, stable */
};

static void rows_init(struct rows *r)
{
    memset(r, 0, sizeof(*r));
    hset_init(&r->keys);
}

static void rows_release(struct rows *r)
{
    for (size_t i = 0; i < r->n; i++)
        for (int k = 0; k < ROW_FIELDS; k++)
            free(r->v[i].f[k]);
    free(r->v);
    free(r->gstart);
    free(r->order);
    hset_release(&r->keys);
    memset(r, 0, sizeof(*r));
}

/* Make room for one more element in *v (n used of *cap, elem bytes each),
 * doubling from first. 0 or AISLE_ENOMEM (*v unchanged). */
static int grow(void *v, size_t n, size_t *cap, size_t elem, size_t first)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : first;
    void *p = realloc(*(void **)v, ncap * elem);
    if (!p)
        return AISLE_ENOMEM;
    *(void **)v = p;
    *cap = ncap;
    return 0;
}

/* Add a row of up to ROW_FIELDS strings (copied; NULL allowed), grouped by
 * key (copied into the set). */
static int rows_add(struct rows *r, const char *key, enum sft_split split, const char *const *f, size_t nf)
{
    if (grow(&r->v, r->n, &r->cap, sizeof(*r->v), 1024))
        return AISLE_ENOMEM;
    struct row *w = &r->v[r->n];
    memset(w, 0, sizeof(*w));
    w->split = split;
    for (size_t k = 0; k < nf && k < ROW_FIELDS; k++)
        if (f[k] && !(w->f[k] = strdup(f[k]))) {
            for (size_t j = 0; j < k; j++)
                free(w->f[j]);
            return AISLE_ENOMEM;
        }
    uint64_t g;
    if (!hset_get(&r->keys, key, &g)) {
        g = r->n_groups;
        int rc = hset_put(&r->keys, key, g);
        if (rc < 0) {
            for (int k = 0; k < ROW_FIELDS; k++)
                free(w->f[k]);
            return rc;
        }
        r->n_groups++;
    }
    w->group = (size_t)g;
    r->n++;
    return 0;
}

/* Build the group index (counting sort by group). */
static int rows_index(struct rows *r)
{
    free(r->gstart);
    free(r->order);
    r->gstart = calloc(r->n_groups + 1, sizeof(size_t));
    r->order = malloc((r->n ? r->n : 1) * sizeof(size_t));
    if (!r->gstart || !r->order)
        return AISLE_ENOMEM;
    for (size_t i = 0; i < r->n; i++)
        r->gstart[r->v[i].group + 1]++;
    for (size_t g = 0; g < r->n_groups; g++)
        r->gstart[g + 1] += r->gstart[g];
    size_t *fill = calloc(r->n_groups + 1, sizeof(size_t));
    if (!fill)
        return AISLE_ENOMEM;
    for (size_t i = 0; i < r->n; i++) {
        size_t g = r->v[i].group;
        r->order[r->gstart[g] + fill[g]++] = i;
    }
    free(fill);
    return 0;
}

/* Field k of row i equals field k of row j, ignoring ASCII case. */
static int same_field(const struct rows *r, size_t i, size_t j, int k)
{
    const char *a = r->v[i].f[k], *b = r->v[j].f[k];
    return a && b && !strcasecmp(a, b);
}

/* Up to want distractor rows for row i into out: first rows of the same group
 * whose field k (the question) differs from row i's (in a random order), then
 * when other_groups, random rows of other groups. Never row i, never a row
 * whose field text (field t) equals row i's. Returns the count. */
static size_t pick_distractors(const struct rows *r, size_t i, int k, int t, size_t want, int same_group,
                               int other_groups, struct rng *rng, size_t *out)
{
    size_t n = 0;
    if (same_group) {
        size_t g = r->v[i].group, a = r->gstart[g], cnt = r->gstart[g + 1] - a;
        size_t start = rng_below(rng, cnt);
        for (size_t s = 0; s < cnt && n < want; s++) {
            size_t j = r->order[a + (start + s) % cnt];
            if (j == i || (k >= 0 && same_field(r, i, j, k)) || same_field(r, i, j, t))
                continue;
            int dup = 0;
            for (size_t m = 0; m < n; m++)
                dup |= same_field(r, out[m], j, t);
            if (!dup)
                out[n++] = j;
        }
    }
    for (size_t tries = 0; other_groups && n < want && tries < 8 * want + 8 && r->n > 1; tries++) {
        size_t j = rng_below(rng, r->n);
        if (r->v[j].group == r->v[i].group || same_field(r, i, j, t))
            continue;
        int dup = 0;
        for (size_t m = 0; m < n; m++)
            dup |= out[m] == j || same_field(r, out[m], j, t);
        if (!dup)
            out[n++] = j;
    }
    return n;
}

/* Shuffle ev[0..n) and return where index gold went. */
static size_t shuffle_ev(struct prompt_passage *ev, size_t n, size_t gold, struct rng *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_below(rng, i);
        struct prompt_passage tmp = ev[i - 1];
        ev[i - 1] = ev[j];
        ev[j] = tmp;
        if (gold == i - 1)
            gold = j;
        else if (gold == j)
            gold = i - 1;
    }
    return gold;
}

/* ---- answers ---- */

static int valid_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (!n || n > MARKUP_MAX_ID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

int sft_cite(struct buf *out, const char *text, size_t n, unsigned cite, const char *product_id)
{
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\n' || text[n - 1] == '\t'))
        n--;
    size_t body = n;
    while (body && (text[body - 1] == '.' || text[body - 1] == '!' || text[body - 1] == '?'))
        body--;
    int rc = buf_append(out, text, body);
    if (!rc && cite)
        rc = buf_printf(out, "%s[%u]", body ? " " : "", cite);
    if (!rc)
        rc = buf_append(out, text + body, n - body);
    if (!rc && valid_id(product_id))
        rc = buf_printf(out, " <product id=\"%s\"/>", product_id);
    return rc;
}

/* ---- output ---- */

struct sft_out {
    const struct tok *t;
    struct tok_cache *cache;
    struct sft_opts o;
    FILE *jsonl[2];
    struct shard_writer *sw[2];
    struct prompt p;
    struct buf tmp;
    struct sft_stats stats[SFT_N_DATASETS][2];
    void (*progress)(void *ud, enum sft_dataset d, uint64_t done, uint64_t total);
    void *progress_ud;
    char err[512];
};

static const char *const split_names[2] = {"train", "dev"};

int sft_out_open(struct sft_out **out, const char *dir, const struct tok *t, const struct sft_opts *opts, char *err,
                 size_t errlen)
{
    struct sft_out *o = calloc(1, sizeof(*o));
    int rc = 0;
    char path[4096];
    if (!o)
        return AISLE_ENOMEM;
    if (opts)
        o->o = *opts;
    else
        sft_opts_default(&o->o);
    if (o->o.distractors > 8)
        o->o.distractors = 8;
    if (!o->o.max_tokens)
        o->o.max_tokens = 2048;
    o->t = t;
    prompt_init(&o->p);
    buf_init(&o->tmp, 0);
    if (t) {
        static const char *const specials[] = {TOK_SYSTEM, TOK_USER, TOK_ASSISTANT, TOK_END};
        for (size_t i = 0; i < 4; i++)
            if (tok_find(t, specials[i], strlen(specials[i])) < 0) {
                snprintf(err, errlen, "the tokenizer has no %s token: train one with aisle tokenizer train",
                         specials[i]);
                rc = AISLE_EINVAL;
                goto fail;
            }
        if (!(o->cache = tok_cache_new(t))) {
            rc = AISLE_ENOMEM;
            goto fail;
        }
    }
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof(path), "%s/%s.jsonl", dir, split_names[s]);
        if (!(o->jsonl[s] = fopen(path, "w"))) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            rc = AISLE_EIO;
            goto fail;
        }
        if (t) {
            snprintf(path, sizeof(path), "%s/%s.sft", dir, split_names[s]);
            if ((rc = shard_writer_open(&o->sw[s], path, SHARD_SFT, (uint32_t)tok_n_vocab(t), -1, err, errlen)))
                goto fail;
        }
    }
    *out = o;
    return 0;
fail:
    sft_out_free(o);
    return rc;
}

void sft_out_set_progress(struct sft_out *o, void (*fn)(void *ud, enum sft_dataset d, uint64_t done, uint64_t total),
                          void *ud)
{
    o->progress = fn;
    o->progress_ud = ud;
}

const struct sft_stats *sft_out_stats(const struct sft_out *o, enum sft_dataset d, enum sft_split s)
{
    return &o->stats[d][s];
}

void sft_out_free(struct sft_out *o)
{
    if (!o)
        return;
    for (int s = 0; s < 2; s++) {
        if (o->jsonl[s])
            fclose(o->jsonl[s]);
        shard_writer_free(o->sw[s]);
    }
    tok_cache_free(o->cache);
    prompt_release(&o->p);
    buf_release(&o->tmp);
    free(o);
}

int sft_out_finish(struct sft_out *o, char *err, size_t errlen)
{
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        if (o->jsonl[s] && fclose(o->jsonl[s]) && !rc) {
            snprintf(err, errlen, "closing %s.jsonl: %s", split_names[s], strerror(errno));
            rc = AISLE_EIO;
        }
        o->jsonl[s] = NULL;
        if (o->sw[s]) {
            int r = rc ? (shard_writer_free(o->sw[s]), 0) : shard_writer_finish(o->sw[s], err, errlen);
            o->sw[s] = NULL;
            if (r)
                rc = r;
        }
    }
    sft_out_free(o);
    return rc;
}

static json_t *jstr(const char *s, size_t n)
{
    return json_stringn(s, n);
}

/* The JSON Lines record of an example. */
static int write_json(struct sft_out *o, const struct sft_example *ex, const struct prompt *p)
{
    size_t sys0 = strlen(TOK_SYSTEM) + 1, sys1 = p->prefix_bytes - strlen(TOK_END) - 1;
    json_t *rec = json_object(), *msgs = json_array(), *ev = json_array();
    int rc = AISLE_ENOMEM;
    if (!rec || !msgs || !ev)
        goto fail;
    json_t *m;
    m = json_pack("{s:s,s:o}", "role", "system", "content", jstr(p->text.data + sys0, sys1 - sys0));
    if (!m || json_array_append_new(msgs, m))
        goto fail;
    if (ex->prev_question && ex->prev_answer) {
        m = json_pack("{s:s,s:s}", "role", "user", "content", ex->prev_question);
        if (!m || json_array_append_new(msgs, m))
            goto fail;
        m = json_pack("{s:s,s:s}", "role", "assistant", "content", ex->prev_answer);
        if (!m || json_array_append_new(msgs, m))
            goto fail;
    }
    m = json_pack("{s:s,s:s}", "role", "user", "content", ex->question);
    if (!m || json_array_append_new(msgs, m))
        goto fail;
    m = json_pack("{s:s,s:s}", "role", "assistant", "content", ex->answer);
    if (!m || json_array_append_new(msgs, m))
        goto fail;
    for (size_t i = 0; i < p->n_used; i++) {
        buf_reset(&o->tmp);
        if (prompt_clean_line(&o->tmp, ex->ev[i].text, strlen(ex->ev[i].text), o->o.max_passage_bytes))
            goto fail;
        json_t *e = json_pack("{s:I,s:s,s:s?,s:o}", "n", (json_int_t)(i + 1), "source",
                              ex->ev[i].source ? ex->ev[i].source : "text", "product_id",
                              ex->ev[i].product_id && *ex->ev[i].product_id ? ex->ev[i].product_id : NULL, "text",
                              jstr(o->tmp.data ? o->tmp.data : "", o->tmp.len));
        if (!e || json_array_append_new(ev, e))
            goto fail;
    }
    int bad = json_object_set_new(rec, "dataset", json_string(dataset_names[ex->dataset])) |
              json_object_set_new(rec, "split", json_string(split_names[ex->split])) |
              json_object_set_new(rec, "id", json_string(ex->id)) |
              json_object_set_new(rec, "negative", json_boolean(ex->negative));
    bad |= json_object_set_new(rec, "messages", msgs); /* set_new takes the reference even when it fails */
    msgs = NULL;
    bad |= json_object_set_new(rec, "evidence", ev);
    ev = NULL;
    if (bad)
        goto fail;
    if (o->t && json_object_set_new(rec, "tokens", json_integer((json_int_t)p->ids.len)))
        goto fail;
    char *line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!line)
        goto fail;
    rc = fputs(line, o->jsonl[ex->split]) < 0 || fputc('\n', o->jsonl[ex->split]) < 0 ? AISLE_EIO : 0;
    free(line);
    if (rc)
        snprintf(o->err, sizeof(o->err), "writing %s.jsonl: %s", split_names[ex->split], strerror(errno));
fail:
    json_decref(rec);
    json_decref(msgs);
    json_decref(ev);
    if (rc == AISLE_ENOMEM && !o->err[0])
        snprintf(o->err, sizeof(o->err), "out of memory writing an example");
    return rc;
}

int sft_out_add(struct sft_out *o, const struct sft_example *ex)
{
    struct sft_stats *st = &o->stats[ex->dataset][ex->split];
    char err[256];
    o->err[0] = '\0';
    if (!ex->question || !ex->answer || !utf8_valid(ex->question, strlen(ex->question)) ||
        !utf8_valid(ex->answer, strlen(ex->answer)) || !*ex->question || !*ex->answer) {
        st->rejected++;
        return 0;
    }
    size_t cites = 0, prev_cites = 0;
    int two = ex->prev_question && ex->prev_answer;
    if (two && (!*ex->prev_question || !*ex->prev_answer || !utf8_valid(ex->prev_question, strlen(ex->prev_question)) ||
                !utf8_valid(ex->prev_answer, strlen(ex->prev_answer)))) {
        st->rejected++;
        return 0;
    }
    if (markup_check(ex->answer, strlen(ex->answer), ex->n_ev ? (unsigned)ex->n_ev : 1, NULL, &cites, err,
                     sizeof(err)) ||
        (two && markup_check(ex->prev_answer, strlen(ex->prev_answer), ex->n_ev ? (unsigned)ex->n_ev : 1, NULL,
                             &prev_cites, err, sizeof(err))) ||
        (!ex->n_ev && cites + prev_cites)) {
        st->rejected++;
        return 0;
    }
    if (o->o.max_per_dataset && st->examples >= o->o.max_per_dataset) {
        st->capped++;
        return 0;
    }
    struct prompt_turn turns[4] = {{PROMPT_USER, ex->question}, {PROMPT_ASSISTANT, ex->answer}};
    if (two) {
        turns[0] = (struct prompt_turn){PROMPT_USER, ex->prev_question};
        turns[1] = (struct prompt_turn){PROMPT_ASSISTANT, ex->prev_answer};
        turns[2] = (struct prompt_turn){PROMPT_USER, ex->question};
        turns[3] = (struct prompt_turn){PROMPT_ASSISTANT, ex->answer};
    }
    struct prompt_input in = {NULL, ex->ev, ex->n_ev, turns, two ? 4 : 2};
    struct prompt_opts po = {.max_passage_bytes = o->o.max_passage_bytes};
    int rc = prompt_build(&o->p, &in, &po, o->t, o->cache);
    if (rc) {
        snprintf(o->err, sizeof(o->err), "%s %s: %s", dataset_names[ex->dataset], ex->id, o->p.err);
        return rc;
    }
    if (o->t && o->p.ids.len > o->o.max_tokens) {
        st->too_long++;
        return 0;
    }
    if (o->sw[ex->split] &&
        (rc = shard_writer_add_example(o->sw[ex->split], o->p.ids.ids, o->p.mask, o->p.ids.len))) {
        snprintf(o->err, sizeof(o->err), "writing %s.sft: %s", split_names[ex->split], aisle_strerror(rc));
        return rc;
    }
    if ((rc = write_json(o, ex, &o->p)))
        return rc;
    st->examples++;
    st->negatives += ex->negative != 0;
    st->multi_turn += two;
    st->tokens += o->p.ids.len;
    for (size_t i = 0; i < o->p.ids.len; i++)
        st->target_tokens += o->p.mask[i];
    return 0;
}

/* ---- builders ---- */

struct builder {
    struct sft_out *o;
    enum sft_dataset d;
    const char *dir;
    char *err;
    size_t errlen;
    struct rows rows;
    struct buf ans, id, q;
    uint64_t done, total;
    void *ud; /* the builder's own state */
};

static void progress(struct builder *b)
{
    b->done++;
    if (b->o->progress && (b->done % 64 == 0 || b->done == b->total))
        b->o->progress(b->o->progress_ud, b->d, b->done, b->total);
}

static void path_of(const struct builder *b, const char *rel, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", b->dir, rel);
}

static int file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

static int add(struct builder *b, struct sft_example *ex)
{
    int rc = sft_out_add(b->o, ex);
    if (rc)
        snprintf(b->err, b->errlen, "%s", b->o->err);
    return rc;
}

static const char *const not_answered[] = {
    "The evidence I have doesn't answer that.",
    "I can't tell from the information here: it doesn't say.",
    "The product information and reviews here don't say.",
};

/* Question datasets share this shape: row fields are question (0), evidence
 * text (1), answer (2), product id (3), source (4), product title (5, or NULL). Emit an answer example
 * (the row's evidence among distractors) or, for negative_percent of the
 * rows, a negative one (only other products' passages). */
static int emit_qa(struct builder *b, size_t i, int product_tag, int same_group)
{
    const struct rows *r = &b->rows;
    const struct row *w = &r->v[i];
    struct rng rng = rng_for(b->o->o.seed, b->d, i);
    struct sft_example ex = {.dataset = b->d, .split = w->split, .question = w->f[0]};
    size_t dis[SFT_MAX_EVIDENCE];
    if (strlen(w->f[2]) > SFT_MAX_ANSWER) { /* longer than the passage it is cut from */
        b->o->stats[b->d][w->split].too_long++;
        return 0;
    }
    int negative = rng_below(&rng, 100) < b->o->o.negative_percent;
    size_t want = b->o->o.distractors;
    size_t nd = negative ? pick_distractors(r, i, 0, 1, want + 1, 0, 1, &rng, dis)
                         : pick_distractors(r, i, 0, 1, want, same_group, 1, &rng, dis);
    buf_reset(&b->id);
    buf_reset(&b->ans);
    buf_printf(&b->id, "%s#%zu", w->f[3] ? w->f[3] : "row", i);
    ex.id = b->id.data;
    if (!negative) {
        ex.ev[ex.n_ev++] = (struct prompt_passage){.source = w->f[4], .product_id = w->f[3], .text = w->f[1]};
    }
    for (size_t k = 0; k < nd && ex.n_ev < SFT_MAX_EVIDENCE; k++) {
        const struct row *x = &r->v[dis[k]];
        ex.ev[ex.n_ev++] = (struct prompt_passage){.source = x->f[4], .product_id = x->f[3], .text = x->f[1]};
    }
    if (w->f[5] && ex.n_ev < SFT_MAX_EVIDENCE) /* the product's title, when known */
        ex.ev[ex.n_ev++] = (struct prompt_passage){.source = "product", .product_id = w->f[3], .text = w->f[5]};
    int rc;
    /* a conversation: the first same-product distractor was asked and answered before */
    const struct row *prev = !negative && nd && w->f[3] && r->v[dis[0]].group == w->group &&
                                     strlen(r->v[dis[0]].f[2]) <= SFT_MAX_ANSWER &&
                                     rng_below(&rng, 100) < b->o->o.multi_turn_percent
                                 ? &r->v[dis[0]]
                                 : NULL;
    if (negative) {
        ex.negative = 1;
        rc = buf_puts(&b->ans, not_answered[rng_below(&rng, 3)]);
    } else {
        size_t gold = shuffle_ev(ex.ev, ex.n_ev, 0, &rng);
        rc = sft_cite(&b->ans, w->f[2], strlen(w->f[2]), (unsigned)gold + 1, product_tag ? w->f[3] : NULL);
        for (size_t k = 0; !rc && prev && k < ex.n_ev; k++)
            if (ex.ev[k].text == prev->f[1]) {
                buf_reset(&b->q);
                rc = sft_cite(&b->q, prev->f[2], strlen(prev->f[2]), (unsigned)k + 1, product_tag ? w->f[3] : NULL);
                ex.prev_question = prev->f[0];
                ex.prev_answer = b->q.data;
            }
    }
    if (rc)
        return rc;
    ex.answer = b->ans.data;
    return add(b, &ex);
}

/* Read a table's rows: cols names the columns wanted (NULL-terminated, at
 * most MAX_FIELDS); fn gets one record's fields in cols order. */
typedef int (*table_row_fn)(struct builder *b, char **f, enum sft_split split);

static int read_table(struct builder *b, const char *rel, char delim, const char *const *cols, enum sft_split split,
                      table_row_fn fn)
{
    char path[4096];
    struct sft_table *t = NULL;
    int idx[MAX_FIELDS], rc;
    size_t nc = 0;
    path_of(b, rel, path, sizeof(path));
    if ((rc = sft_table_open(&t, path, delim, b->err, b->errlen)))
        return rc == AISLE_EIO && !file_exists(path) ? AISLE_ENOTFOUND : rc;
    for (; cols[nc]; nc++)
        if ((idx[nc] = sft_table_col(t, cols[nc])) < 0) {
            snprintf(b->err, b->errlen, "%s: no column '%s' in the header", path, cols[nc]);
            rc = AISLE_EFORMAT;
            goto done;
        }
    for (;;) {
        char **f, *pick[MAX_FIELDS];
        size_t n;
        rc = sft_table_next(t, &f, &n);
        if (rc == AISLE_EEOF) {
            rc = 0;
            break;
        }
        b->o->stats[b->d][split].records++;
        if (rc == AISLE_EFORMAT || rc == AISLE_ETOOBIG) {
            b->o->stats[b->d][split].rejected++;
            continue;
        }
        if (rc) {
            snprintf(b->err, b->errlen, "%s", sft_table_error(t));
            break;
        }
        int ok = 1;
        for (size_t k = 0; k < nc; k++) {
            if ((size_t)idx[k] >= n || strlen(f[idx[k]]) > SFT_MAX_FIELD ||
                !utf8_valid(f[idx[k]], strlen(f[idx[k]]))) {
                ok = 0;
                break;
            }
            pick[k] = f[idx[k]];
        }
        if (!ok) {
            b->o->stats[b->d][split].rejected++;
            continue;
        }
        if ((rc = fn(b, pick, split)))
            break;
    }
done:
    sft_table_close(t);
    return rc;
}

/* A second file of a dataset whose first file was found may be absent. */
static int optional(int rc)
{
    return rc == AISLE_ENOTFOUND ? 0 : rc;
}

static const char *hetpqa_source(const char *s)
{
    static const char *const map[][2] = {{"CQA", "qa"},        {"Desc", "description"}, {"bullet", "bullet"},
                                         {"review", "review"}, {"OSP", "description"},  {"attribute", "attribute"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(s, map[i][0]))
            return map[i][1];
    return "text";
}

static int hetpqa_row(struct builder *b, char **f, enum sft_split split)
{
    /* ASIN, question, candidate, answer, source */
    if (!*f[0] || !*f[1] || !*f[2] || !*f[3]) {
        b->o->stats[b->d][split].rejected++;
        return 0;
    }
    const char *row[5] = {f[1], f[2], f[3], f[0], hetpqa_source(f[4])};
    return rows_add(&b->rows, f[0], split, row, 5);
}

static int emit_all_qa(struct builder *b, int product_tag, int same_group)
{
    int rc = rows_index(&b->rows);
    b->total = b->rows.n;
    b->done = 0;
    for (size_t i = 0; !rc && i < b->rows.n; i++) {
        rc = emit_qa(b, i, product_tag, same_group);
        progress(b);
    }
    return rc;
}

static int build_hetpqa(struct builder *b)
{
    static const char *const cols[] = {"ASIN", "question", "candidate", "answer", "source", NULL};
    int rc = read_table(b, "contextual-pqa/hetPQA/answer_generation/train.csv.gz", '\t', cols, SFT_TRAIN, hetpqa_row);
    if (!rc) /* the dev file is optional once train is there */
        rc = optional(read_table(b, "contextual-pqa/hetPQA/answer_generation/dev.csv.gz", '\t', cols, SFT_DEV,
                                 hetpqa_row));
    return rc ? rc : emit_all_qa(b, 1, 1);
}

/* semiPQA data: 'name: { value:"X" }' -> name "name", text "name: X"; other
 * shapes keep their text. */
static int semipqa_row(struct builder *b, char **f, enum sft_split split)
{
    const char *data = f[0], *colon = strchr(data, ':');
    if (!colon || colon == data || !*f[1]) {
        b->o->stats[b->d][split].rejected++;
        return 0;
    }
    char name[128];
    size_t nn = (size_t)(colon - data) < sizeof(name) - 1 ? (size_t)(colon - data) : sizeof(name) - 1;
    memcpy(name, data, nn);
    name[nn] = '\0';
    buf_reset(&b->q);
    const char *v = strstr(colon, "{ value:");
    size_t vl = v ? strlen(v) : 0;
    if (v && vl >= 10 && !strcmp(v + vl - 2, " }") && !strstr(v + 8, "value:")) {
        const char *a = v + 8, *e = v + vl - 2;
        if (e - a >= 2 && *a == '"' && e[-1] == '"') {
            a++;
            e--;
        }
        buf_printf(&b->q, "%s: %.*s", name, (int)(e - a), a);
    } else {
        buf_puts(&b->q, data);
    }
    /* the question names the attribute in words */
    char words[128];
    size_t wn = 0;
    for (size_t i = 0; name[i] && wn < sizeof(words) - 1; i++)
        words[wn++] = name[i] == '_' ? ' ' : name[i];
    words[wn] = '\0';
    char *suffix = strstr(words, " description");
    if (suffix && suffix[12] == '\0' && suffix != words)
        *suffix = '\0';
    char question[256];
    snprintf(question, sizeof(question), "What is the %s of this product?", words);
    const char *row[5] = {question, b->q.data, f[1], NULL, "attribute"};
    return rows_add(&b->rows, name, split, row, 5);
}

static int build_semipqa(struct builder *b)
{
    static const char *const cols[] = {"data", "text", NULL};
    int rc = read_table(b, "contextual-pqa/semiPQA/data-to-text/train.csv.gz", '\t', cols, SFT_TRAIN, semipqa_row);
    if (!rc)
        rc = optional(
            read_table(b, "contextual-pqa/semiPQA/data-to-text/dev.csv.gz", '\t', cols, SFT_DEV, semipqa_row));
    /* distractors are other attributes: another product's value of the same
     * attribute would answer the question too (no product ids here) */
    return rc ? rc : emit_all_qa(b, 0, 0);
}

/* JSON Lines: fn gets each parsed object. */
typedef int (*json_row_fn)(struct builder *b, json_t *obj, void *ud);

static int read_jsonl(struct builder *b, const char *rel, json_row_fn fn, void *ud)
{
    char path[4096];
    struct lineio in;
    int rc;
    path_of(b, rel, path, sizeof(path));
    if ((rc = lineio_open(&in, path, SFT_MAX_RECORD))) {
        snprintf(b->err, b->errlen, "%s: %s", path, in.err);
        return rc == AISLE_EIO && !file_exists(path) ? AISLE_ENOTFOUND : rc;
    }
    for (;;) {
        const char *line;
        size_t n;
        rc = lineio_next(&in, &line, &n);
        if (rc == AISLE_EEOF) {
            rc = 0;
            break;
        }
        if (rc == AISLE_ETOOBIG) {
            b->o->stats[b->d][SFT_TRAIN].rejected++;
            continue;
        }
        if (rc) {
            snprintf(b->err, b->errlen, "%s:%llu: %s", path, (unsigned long long)in.lineno, in.err);
            break;
        }
        if (!n)
            continue;
        json_error_t je;
        json_t *obj = json_loadb(line, n, JSON_REJECT_DUPLICATES, &je);
        if (!obj || !json_is_object(obj)) {
            json_decref(obj);
            b->o->stats[b->d][SFT_TRAIN].rejected++;
            continue;
        }
        rc = fn(b, obj, ud);
        json_decref(obj);
        if (rc)
            break;
    }
    lineio_close(&in);
    return rc;
}

static const char *jget(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && strlen(s) <= SFT_MAX_FIELD ? s : NULL;
}

/* "Q: question A: answer", the text of a community Q&A passage. */
static int qa_text(struct buf *out, const char *q, const char *a)
{
    buf_reset(out);
    return buf_printf(out, "Q: %s A: %s", q, a);
}

struct dedup {
    struct hset seen;
};

/* A community Q&A record (product, question, answer) into b->rows, split by
 * product, exact repeats dropped; title (or NULL) rides along as field 5. */
static int add_qa_row(struct builder *b, struct dedup *dd, const char *pid, const char *q, const char *a,
                      const char *title)
{
    if (!pid || !q || !a || !*pid || !*q || !*a) {
        b->o->stats[b->d][SFT_TRAIN].rejected++;
        return 0;
    }
    enum sft_split split = product_split(b->d, pid, b->o->o.dev_percent);
    b->o->stats[b->d][split].records++;
    uint64_t h = hset_hash(hset_hash(hset_hash(HSET_FNV_SEED, pid, strlen(pid) + 1), q, strlen(q) + 1), a, strlen(a));
    char key[32];
    snprintf(key, sizeof(key), "%016llx", (unsigned long long)h);
    int rc = hset_put(&dd->seen, key, 0);
    if (rc <= 0)
        return rc; /* 0: a repeated record */
    if ((rc = qa_text(&b->q, q, a)))
        return rc;
    const char *row[6] = {q, b->q.data, a, pid, "qa", title};
    return rows_add(&b->rows, pid, split, row, 6);
}

static int mcauley_row(struct builder *b, json_t *obj, void *ud)
{
    return add_qa_row(b, ud, jget(obj, "asin"), jget(obj, "question"), jget(obj, "answer"), NULL);
}

static int build_mcauley(struct builder *b)
{
    struct dedup dd;
    hset_init(&dd.seen);
    int rc = read_jsonl(b, "mcauley-amazon-qa/qa_Appliances.jsonl.gz", mcauley_row, &dd);
    if (!rc)
        rc = optional(read_jsonl(b, "mcauley-amazon-qa/qa_Video_Games.jsonl.gz", mcauley_row, &dd));
    hset_release(&dd.seen);
    return rc ? rc : emit_all_qa(b, 1, 1);
}

struct demo {
    struct dedup dd;
    struct hset title_of; /* product id -> index in titles */
    char **titles;
    size_t n_titles, cap_titles;
};

static int title_row(struct builder *b, json_t *obj, void *ud)
{
    struct demo *dm = ud;
    const char *id = jget(obj, "id"), *title = jget(obj, "title");
    (void)b;
    if (!id || !title || !*title)
        return 0;
    if (grow(&dm->titles, dm->n_titles, &dm->cap_titles, sizeof(*dm->titles), 256))
        return AISLE_ENOMEM;
    int rc = hset_put(&dm->title_of, id, dm->n_titles);
    if (rc <= 0)
        return rc; /* a repeated id keeps its first title */
    if (!(dm->titles[dm->n_titles] = strdup(title)))
        return AISLE_ENOMEM;
    dm->n_titles++;
    return 0;
}

/* Demo store: like mcauley, plus the product's title as one more passage. */
static int demo_row(struct builder *b, json_t *obj, void *ud)
{
    struct demo *dm = ud;
    const char *pid = jget(obj, "product_id");
    uint64_t t;
    const char *title = pid && hset_get(&dm->title_of, pid, &t) ? dm->titles[t] : NULL;
    return add_qa_row(b, &dm->dd, pid, jget(obj, "question"), jget(obj, "answer"), title);
}

static int build_demo(struct builder *b)
{
    struct demo dm;
    memset(&dm, 0, sizeof(dm));
    hset_init(&dm.dd.seen);
    hset_init(&dm.title_of);
    /* titles are optional: without products.jsonl.gz the examples have none */
    int rc = read_jsonl(b, "demo-store/products.jsonl.gz", title_row, &dm);
    if (rc == AISLE_ENOTFOUND)
        rc = 0;
    if (!rc)
        rc = read_jsonl(b, "demo-store/qa.jsonl.gz", demo_row, &dm);
    if (!rc)
        rc = emit_all_qa(b, 1, 1);
    for (size_t i = 0; i < dm.n_titles; i++)
        free(dm.titles[i]);
    free(dm.titles);
    hset_release(&dm.title_of);
    hset_release(&dm.dd.seen);
    return rc;
}

/* ---- summaries: CoQASUM and FewSum ---- */

#define SUM_MAX_PASSAGES 10

static const char *const sum_questions[] = {
    "What do customers say about this product?",
    "What do people who bought it say?",
    "Can you sum up what buyers say about this?",
    "What should I know about this product from other customers?",
};

/* Lower-case ASCII words of 3+ letters/digits of s, as FNV hashes, into w
 * (at most cap); returns the count. */
static size_t words_of(const char *s, uint64_t *w, size_t cap)
{
    static const char *const stop[] = {"the", "and", "for", "this", "that", "with", "are", "was", "you", "not",
                                       "but", "have", "has", "its", "can", "will", "they", "them", "product", "one",
                                       "very", "from", "your", "all", "also", "use", "yes"};
    size_t n = 0;
    while (*s && n < cap) {
        while (*s && !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            s++;
        char word[32];
        size_t len = 0;
        while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')) {
            if (len < sizeof(word) - 1)
                word[len++] = (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
            s++;
        }
        word[len] = '\0';
        if (len < 3)
            continue;
        int is_stop = 0;
        for (size_t k = 0; k < sizeof(stop) / sizeof(stop[0]); k++)
            is_stop |= !strcmp(word, stop[k]);
        if (!is_stop)
            w[n++] = hset_hash(HSET_FNV_SEED, word, len);
    }
    return n;
}

static size_t overlap(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
    size_t n = 0;
    for (size_t i = 0; i < na; i++) {
        int dup = 0;
        for (size_t k = 0; k < i && !dup; k++)
            dup = a[k] == a[i];
        if (dup)
            continue;
        for (size_t j = 0; j < nb; j++)
            if (a[i] == b[j]) {
                n++;
                break;
            }
    }
    return n;
}

#define SUM_MAX_WORDS 256
#define SUM_MIN_OVERLAP 2

/* Write summary as the answer: each sentence followed by the citation of the
 * passage in ev[0..n) that shares the most words with it (when >= 2). */
static int cite_summary(struct buf *out, const char *summary, const struct prompt_passage *ev, size_t n,
                        const char *product_id)
{
    uint64_t pw[SFT_MAX_EVIDENCE][SUM_MAX_WORDS], sw[SUM_MAX_WORDS];
    size_t pn[SFT_MAX_EVIDENCE];
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        pn[i] = words_of(ev[i].text, pw[i], SUM_MAX_WORDS);
    const char *s = summary;
    while (*s == ' ')
        s++;
    while (*s && !rc) {
        /* a sentence ends at ". ", "! ", "? " or the end */
        const char *e = s;
        while (*e && !((*e == '.' || *e == '!' || *e == '?') && (e[1] == ' ' || e[1] == '\0')))
            e++;
        if (*e)
            e++;
        char sent[2048];
        size_t len = (size_t)(e - s) < sizeof(sent) - 1 ? (size_t)(e - s) : sizeof(sent) - 1;
        memcpy(sent, s, len);
        sent[len] = '\0';
        size_t nw = words_of(sent, sw, SUM_MAX_WORDS), best = 0, best_i = 0;
        for (size_t i = 0; i < n; i++) {
            size_t ov = overlap(sw, nw, pw[i], pn[i]);
            if (ov > best) {
                best = ov;
                best_i = i;
            }
        }
        if (out->len)
            rc = buf_putc(out, ' ');
        if (!rc)
            rc = sft_cite(out, s, (size_t)(e - s), best >= SUM_MIN_OVERLAP ? (unsigned)best_i + 1 : 0, NULL);
        s = e;
        while (*s == ' ')
            s++;
    }
    if (!rc && valid_id(product_id))
        rc = buf_printf(out, " <product id=\"%s\"/>", product_id);
    return rc;
}

/* One summary example: passages texts[0..nt) (a product's Q&A or reviews),
 * the SUM_MAX_PASSAGES that best cover the summary chosen first, then filled at
 * random, shuffled. */
static int emit_summary(struct builder *b, enum sft_split split, const char *product, const char *source,
                        const char *const *texts, size_t nt, const char *summary, size_t idx, size_t k)
{
    struct rng rng = rng_for(b->o->o.seed, b->d, idx * 8 + k);
    struct sft_example ex = {.dataset = b->d, .split = split, .question = sum_questions[rng_below(&rng, 4)]};
    size_t cap = SUM_MAX_PASSAGES < SFT_MAX_EVIDENCE ? SUM_MAX_PASSAGES : SFT_MAX_EVIDENCE;
    unsigned char *used = calloc(nt ? nt : 1, 1);
    uint64_t *sw = malloc(SUM_MAX_WORDS * sizeof(uint64_t)), *tw = malloc(SUM_MAX_WORDS * sizeof(uint64_t));
    int rc = 0;
    if (!used || !sw || !tw) {
        rc = AISLE_ENOMEM;
        goto done;
    }
    /* best-covering passages for the whole summary first */
    size_t nsw = words_of(summary, sw, SUM_MAX_WORDS);
    while (ex.n_ev < cap) {
        size_t best = 0, best_i = 0;
        for (size_t i = 0; i < nt; i++) {
            if (used[i])
                continue;
            size_t ov = overlap(sw, nsw, tw, words_of(texts[i], tw, SUM_MAX_WORDS));
            if (ov > best) {
                best = ov;
                best_i = i;
            }
        }
        if (best < SUM_MIN_OVERLAP || ex.n_ev >= cap / 2 + 1)
            break;
        used[best_i] = 1;
        ex.ev[ex.n_ev++] = (struct prompt_passage){.source = source, .product_id = product, .text = texts[best_i]};
    }
    for (size_t tries = 0; ex.n_ev < cap && ex.n_ev < nt && tries < 4 * nt; tries++) {
        size_t i = rng_below(&rng, nt);
        if (used[i])
            continue;
        used[i] = 1;
        ex.ev[ex.n_ev++] = (struct prompt_passage){.source = source, .product_id = product, .text = texts[i]};
    }
    shuffle_ev(ex.ev, ex.n_ev, 0, &rng);
    buf_reset(&b->ans);
    buf_reset(&b->id);
    if ((rc = cite_summary(&b->ans, summary, ex.ev, ex.n_ev, product)) ||
        (rc = buf_printf(&b->id, "%s#%zu.%zu", product, idx, k)))
        goto done;
    ex.answer = b->ans.data;
    ex.id = b->id.data;
    rc = add(b, &ex);
done:
    free(used);
    free(sw);
    free(tw);
    return rc;
}

static int coqasum_row(struct builder *b, json_t *obj, void *ud)
{
    (void)ud;
    const char *asin = jget(obj, "asin"), *split_s = jget(obj, "split");
    json_t *sums = json_object_get(obj, "summary"), *qa = json_object_get(obj, "qa");
    if (!asin || !split_s || !json_is_array(sums) || !json_is_array(qa)) {
        b->o->stats[b->d][SFT_TRAIN].rejected++;
        return 0;
    }
    enum sft_split split = !strcmp(split_s, "train") ? SFT_TRAIN : SFT_DEV;
    int rc = 0;
    if (strcmp(split_s, "train") && strcmp(split_s, "dev")) {
        b->o->stats[b->d][SFT_DEV].held_out++; /* test: never in any output */
        goto out;
    }
    b->o->stats[b->d][split].records++;
    size_t nq = json_array_size(qa), nt = 0;
    char **texts = calloc(nq ? nq : 1, sizeof(char *));
    if (!texts)
        return AISLE_ENOMEM;
    for (size_t i = 0; i < nq && !rc; i++) {
        json_t *p = json_array_get(qa, i);
        const char *q = jget(p, "question"), *a = jget(p, "answer");
        if (!q || !a || !utf8_valid(q, strlen(q)) || !utf8_valid(a, strlen(a)))
            continue;
        if (!(rc = qa_text(&b->q, q, a)) && !(texts[nt++] = strdup(b->q.data)))
            rc = AISLE_ENOMEM;
    }
    for (size_t k = 0; k < json_array_size(sums) && !rc; k++) {
        const char *s = json_string_value(json_array_get(sums, k));
        if (!s || !*s || !utf8_valid(s, strlen(s))) {
            b->o->stats[b->d][split].rejected++;
            continue;
        }
        rc = emit_summary(b, split, asin, "qa", (const char *const *)texts, nt, s, b->done, k);
    }
    for (size_t i = 0; i < nt; i++)
        free(texts[i]);
    free(texts);
out:
    progress(b);
    return rc;
}

static int build_coqasum(struct builder *b)
{
    return read_jsonl(b, "coqasum/coqasum_products.jsonl.gz", coqasum_row, NULL);
}

/* group_id, rev1..rev8, summ1..summ3: one example per summary. */
static int fewsum_row(struct builder *b, char **f, enum sft_split split)
{
    const char *texts[8];
    size_t nt = 0;
    int rc = 0;
    for (int k = 0; k < 8; k++)
        if (*f[1 + k])
            texts[nt++] = f[1 + k];
    if (!nt || !*f[0]) {
        b->o->stats[b->d][split].rejected++;
        return 0;
    }
    for (int k = 0; k < 3 && !rc; k++)
        if (*f[9 + k])
            rc = emit_summary(b, split, f[0], "review", texts, nt, f[9 + k], (size_t)b->done, (size_t)k);
    progress(b);
    return rc;
}

static const char *const fewsum_cols[] = {"group_id", "rev1", "rev2", "rev3", "rev4", "rev5", "rev6",
                                          "rev7", "rev8", "summ1", "summ2", "summ3", NULL};

static int build_fewsum(struct builder *b)
{
    int rc = read_table(b, "fewsum-amazon/train.csv.gz", '\t', fewsum_cols, SFT_TRAIN, fewsum_row);
    return rc ? rc : optional(read_table(b, "fewsum-amazon/val.csv.gz", '\t', fewsum_cols, SFT_DEV, fewsum_row));
}

/* ---- SubjQA ---- */

#define SUBJ_NOT_FOUND "ANSWERNOTFOUND"

struct subj {
    struct hset seen; /* q_review_id */
};

static int subjqa_row(struct builder *b, char **f, enum sft_split split, struct subj *sj)
{
    /* item_id, question, review, human_ans_spans, q_review_id */
    if (!*f[0] || !*f[1] || !*f[2] || !*f[3]) {
        b->o->stats[b->d][split].rejected++;
        return 0;
    }
    int rc = hset_put(&sj->seen, f[4], 0);
    if (rc <= 0)
        return rc;
    /* the review without the dataset's " ANSWERNOTFOUND" marker */
    size_t rl = strlen(f[2]), ml = strlen(SUBJ_NOT_FOUND);
    if (rl >= ml && !strcmp(f[2] + rl - ml, SUBJ_NOT_FOUND)) {
        rl -= ml;
        while (rl && f[2][rl - 1] == ' ')
            rl--;
        f[2][rl] = '\0';
    }
    const char *span = strcmp(f[3], SUBJ_NOT_FOUND) ? f[3] : NULL;
    /* a long review is cut around the span, so the answer stays in the evidence */
    const char *text = f[2];
    size_t max = b->o->o.max_passage_bytes ? b->o->o.max_passage_bytes : PROMPT_PASSAGE_BYTES_DEFAULT;
    const char *at = span ? strstr(f[2], span) : NULL;
    buf_reset(&b->q);
    if (at && (size_t)(at - f[2]) + strlen(span) + 16 > max) {
        size_t start = (size_t)(at - f[2]) > max / 3 ? (size_t)(at - f[2]) - max / 3 : 0;
        while (start && (f[2][start] & 0xc0) == 0x80)
            start--;
        if ((rc = buf_puts(&b->q, "\xe2\x80\xa6")) || (rc = buf_puts(&b->q, f[2] + start)))
            return rc;
        text = b->q.data;
    }
    const char *row[5] = {f[1], text, span ? span : "", f[0], "review"};
    return rows_add(&b->rows, f[0], split, row, 5);
}

static int subj_row(struct builder *b, char **f, enum sft_split split)
{
    return subjqa_row(b, f, split, b->ud);
}

static int build_subjqa(struct builder *b)
{
    static const char *const cols[] = {"item_id", "question", "review", "human_ans_spans", "q_review_id", NULL};
    static const char *const train_files[] = {"subjqa/electronics/train.csv.gz", "subjqa/grocery/train.csv.gz"};
    static const char *const dev_files[] = {"subjqa/electronics/dev.csv.gz", "subjqa/grocery/dev.csv.gz",
                                            "subjqa/books/dev.csv.gz", "subjqa/movies/dev.csv.gz"};
    struct subj sj;
    int rc = 0, found = 0;
    hset_init(&sj.seen);
    b->ud = &sj;
    for (size_t i = 0; i < 2 && (!rc || rc == AISLE_ENOTFOUND); i++) {
        rc = read_table(b, train_files[i], ',', cols, SFT_TRAIN, subj_row);
        found += rc != AISLE_ENOTFOUND;
    }
    for (size_t i = 0; i < 4 && (!rc || rc == AISLE_ENOTFOUND); i++) {
        rc = read_table(b, dev_files[i], ',', cols, SFT_DEV, subj_row);
        found += rc != AISLE_ENOTFOUND;
    }
    b->ud = NULL;
    hset_release(&sj.seen);
    if (rc == AISLE_ENOTFOUND && found)
        rc = 0;
    if (rc)
        return rc;
    rc = rows_index(&b->rows);
    b->total = b->rows.n;
    for (size_t i = 0; !rc && i < b->rows.n; i++) {
        const struct row *w = &b->rows.v[i];
        struct rng rng = rng_for(b->o->o.seed, b->d, i);
        struct sft_example ex = {.dataset = b->d, .split = w->split, .question = w->f[0]};
        size_t dis[SFT_MAX_EVIDENCE];
        size_t nd = pick_distractors(&b->rows, i, 0, 1, b->o->o.distractors, 1, 0, &rng, dis);
        ex.ev[ex.n_ev++] = (struct prompt_passage){.source = "review", .product_id = w->f[3], .text = w->f[1]};
        for (size_t k = 0; k < nd; k++)
            ex.ev[ex.n_ev++] =
                (struct prompt_passage){.source = "review", .product_id = w->f[3], .text = b->rows.v[dis[k]].f[1]};
        size_t gold = shuffle_ev(ex.ev, ex.n_ev, 0, &rng);
        buf_reset(&b->ans);
        buf_reset(&b->id);
        buf_printf(&b->id, "%s#%zu", w->f[3], i);
        if (*w->f[2]) {
            rc = buf_puts(&b->ans, "A reviewer says: \"");
            if (!rc)
                rc = buf_puts(&b->ans, w->f[2]);
            if (!rc)
                rc = buf_printf(&b->ans, "\" [%zu]. <product id=\"%s\"/>", gold + 1, w->f[3]);
            if (!rc && !valid_id(w->f[3])) { /* no tag for an id outside the grammar */
                char *tag = strstr(b->ans.data, " <product id=");
                if (tag) {
                    b->ans.len = (size_t)(tag - b->ans.data);
                    b->ans.data[b->ans.len] = '\0';
                }
            }
        } else {
            ex.negative = 1;
            rc = buf_puts(&b->ans, "The reviews here don't say.");
        }
        ex.answer = b->ans.data;
        ex.id = b->id.data;
        if (!rc)
            rc = add(b, &ex);
        progress(b);
    }
    return rc;
}

/* ---- live store facts (generated offers, real titles) ---- */

struct offer {
    char pid[MARKUP_MAX_ID_LEN + 1];
    char seller[64];
    char currency[8];
    double price;
    long long stock;
    int days;
};

struct live {
    struct demo titles; /* reuses the demo store's title map */
    struct offer *v;
    size_t n, cap;
};

static int offer_row(struct builder *b, json_t *obj, void *ud)
{
    struct live *lv = ud;
    const char *pid = jget(obj, "product_id"), *seller = jget(obj, "seller"), *cur = jget(obj, "currency");
    json_t *price = json_object_get(obj, "price"), *stock = json_object_get(obj, "stock");
    if (!valid_id(pid) || !seller || !cur || strlen(cur) != 3 || !json_is_number(price) || !json_is_integer(stock) ||
        json_number_value(price) < 0 || json_integer_value(stock) < 0) {
        b->o->stats[b->d][SFT_TRAIN].rejected++;
        return 0;
    }
    if (lv->n && !strcmp(lv->v[lv->n - 1].pid, pid))
        return 0; /* the first offer of a product (its own store's) speaks for it */
    if (grow(&lv->v, lv->n, &lv->cap, sizeof(*lv->v), 256))
        return AISLE_ENOMEM;
    struct offer *o = &lv->v[lv->n++];
    memset(o, 0, sizeof(*o));
    snprintf(o->pid, sizeof(o->pid), "%s", pid);
    snprintf(o->seller, sizeof(o->seller), "%s", seller);
    snprintf(o->currency, sizeof(o->currency), "%s", cur);
    o->price = json_number_value(price);
    o->stock = (long long)json_integer_value(stock);
    json_t *dd = json_object_get(obj, "delivery_days");
    o->days = json_is_integer(dd) && json_integer_value(dd) >= 0 && json_integer_value(dd) < 365
                  ? (int)json_integer_value(dd)
                  : -1;
    enum sft_split split = product_split(b->d, pid, b->o->o.dev_percent);
    b->o->stats[b->d][split].records++;
    return 0;
}

/* The offer passage as src/retrieval/evidence.c writes it. */
static int offer_text(struct buf *out, const struct offer *o)
{
    buf_reset(out);
    int rc = buf_printf(out, "Offers: %s %.2f from %s, %lld in stock", o->currency, o->price, o->seller, o->stock);
    if (!rc && o->days >= 0)
        rc = buf_printf(out, ", delivers in %d days", o->days);
    return rc ? rc : buf_putc(out, '.');
}

/* The first words of a title, for naming a product in an answer. */
static void short_title(char *out, size_t n, const char *title)
{
    size_t words = 0, i = 0;
    for (; title[i] && i + 1 < n; i++) {
        if (title[i] == ' ' && ++words == 6)
            break;
        out[i] = title[i];
    }
    out[i] = '\0';
    while (i && (out[i - 1] == ',' || out[i - 1] == ' ' || out[i - 1] == '-'))
        out[--i] = '\0';
}

static const char *const price_q[] = {"How much is it?", "What does this cost?", "What's the price?"};
static const char *const stock_q[] = {"Is it in stock?", "Can I buy it now?", "Do you have any left?"};
static const char *const delivery_q[] = {"How fast can I get it?", "When would it arrive?", "How long is delivery?"};

/* One live-fact example. The answer's prose never restates a price, a stock
 * count or a delivery time: those reach the shopper only through the tag,
 * which the server fills from the store when the answer streams (a small
 * model copying "189 in stock" from its evidence writes "83"; a tag cannot
 * be wrong that way). */
static int emit_live(struct builder *b, struct live *lv, size_t i)
{
    const struct offer *o = &lv->v[i];
    struct rng rng = rng_for(b->o->o.seed, b->d, i);
    enum sft_split split = product_split(b->d, o->pid, b->o->o.dev_percent);
    struct sft_example ex = {.dataset = b->d, .split = split};
    char as_of[40], t1[128], t2[128], other_text[512];
    struct buf offer_buf;
    uint64_t ti;
    int rc = 0, kind = (int)rng_below(&rng, 4), stale = rng_below(&rng, 100) < 15, down = rng_below(&rng, 100) < 6;
    const char *title = hset_get(&lv->titles.title_of, o->pid, &ti) ? lv->titles.titles[ti] : NULL;
    if (!title)
        return 0;
    buf_init(&offer_buf, 0);
    snprintf(as_of, sizeof(as_of), "2026-%02u-%02u %02u:%02u UTC", (unsigned)(1 + rng_below(&rng, 12)),
             (unsigned)(1 + rng_below(&rng, 28)), (unsigned)rng_below(&rng, 24), (unsigned)rng_below(&rng, 60));
    if ((rc = offer_text(&offer_buf, o)))
        goto done;
    buf_reset(&b->ans);
    buf_reset(&b->id);
    buf_printf(&b->id, "%s#%zu", o->pid, i);
    ex.id = b->id.data;
    short_title(t1, sizeof(t1), title);
    /* evidence: the product's title and its offer (or the failure), in a random order */
    struct prompt_passage off = {.source = "offer", .product_id = o->pid, .as_of = as_of, .stale = stale,
                                 .text = offer_buf.data};
    if (down && kind != 3) {
        off.as_of = NULL;
        off.stale = 1;
        off.text = "Price and stock are unavailable right now: the store's system did not answer.";
    }
    ex.ev[ex.n_ev++] = (struct prompt_passage){.source = "product", .product_id = o->pid, .text = title};
    ex.ev[ex.n_ev++] = off;
    size_t at = shuffle_ev(ex.ev, ex.n_ev, 1, &rng) + 1; /* the offer's citation */
    if (kind == 3) { /* compare with another product */
        const struct offer *p2 = &lv->v[(i + 1 + rng_below(&rng, lv->n - 1)) % lv->n];
        const char *title2 = hset_get(&lv->titles.title_of, p2->pid, &ti) ? lv->titles.titles[ti] : NULL;
        if (!title2 || p2 == o || !strcmp(p2->pid, o->pid))
            goto done;
        short_title(t2, sizeof(t2), title2);
        struct buf ob2;
        buf_init(&ob2, 0);
        if ((rc = offer_text(&ob2, p2))) {
            buf_release(&ob2);
            goto done;
        }
        snprintf(other_text, sizeof(other_text), "%s", ob2.data);
        buf_release(&ob2);
        ex.ev[ex.n_ev++] = (struct prompt_passage){.source = "product", .product_id = p2->pid, .text = title2};
        ex.ev[ex.n_ev++] = (struct prompt_passage){.source = "offer", .product_id = p2->pid, .as_of = as_of,
                                                   .text = other_text};
        /* shuffle all four, then find the offers' numbers */
        shuffle_ev(ex.ev, ex.n_ev, 0, &rng);
        size_t a1 = 0, a2 = 0;
        for (size_t k = 0; k < ex.n_ev; k++)
            if (!strcmp(ex.ev[k].source, "offer"))
                *(!strcmp(ex.ev[k].product_id, o->pid) ? &a1 : &a2) = k + 1;
        ex.question = "Which of these two is cheaper?";
        const struct offer *lo = o->price <= p2->price ? o : p2, *hi = lo == o ? p2 : o;
        rc = buf_printf(&b->ans, "The %s is the cheaper of the two [%zu]; the %s costs more [%zu]. <compare ids=\"%s,%s\"/>",
                        lo == o ? t1 : t2, lo == o ? a1 : a2, hi == o ? t1 : t2, hi == o ? a1 : a2, o->pid, p2->pid);
    } else if (down) {
        ex.question = kind == 0 ? price_q[rng_below(&rng, 3)]
                                : kind == 1 ? stock_q[rng_below(&rng, 3)] : delivery_q[rng_below(&rng, 3)];
        rc = buf_printf(&b->ans,
                        "I can't see the current %s of the %s right now: the store's system didn't answer [%zu]. "
                        "Please try again in a moment.",
                        kind == 0 ? "price" : kind == 1 ? "stock" : "delivery time", t1, at);
    } else if (kind == 0) {
        ex.question = price_q[rng_below(&rng, 3)];
        rc = stale ? buf_printf(&b->ans,
                                "Here is the price of the %s from %s [%zu]; it is from %s and may have changed. "
                                "<price id=\"%s\"/>",
                                t1, o->seller, at, as_of, o->pid)
                   : buf_printf(&b->ans, "Here is the current price of the %s from %s [%zu]. <price id=\"%s\"/>", t1,
                                o->seller, at, o->pid);
    } else if (kind == 1) {
        ex.question = stock_q[rng_below(&rng, 3)];
        if (o->stock > 0)
            rc = buf_printf(&b->ans, "Yes, %s has it in stock [%zu]%s. <stock id=\"%s\"/>", o->seller, at,
                            stale ? ", though that count may be out of date" : "", o->pid);
        else
            rc = buf_printf(&b->ans, "No, the %s is out of stock right now [%zu]. <stock id=\"%s\"/>", t1, at,
                            o->pid);
    } else {
        ex.question = delivery_q[rng_below(&rng, 3)];
        if (o->days < 0 || o->stock == 0)
            rc = buf_printf(&b->ans, "The evidence doesn't give a delivery time for the %s [%zu]. <delivery id=\"%s\"/>",
                            t1, at, o->pid);
        else
            rc = buf_printf(&b->ans, "Here is the delivery estimate for the %s [%zu]%s. <delivery id=\"%s\"/>", t1,
                            at, stale ? ", as of the last update" : "", o->pid);
    }
    if (!rc) {
        ex.answer = b->ans.data;
        rc = add(b, &ex);
    }
done:
    buf_release(&offer_buf);
    progress(b);
    return rc;
}

static int build_live(struct builder *b)
{
    struct live lv;
    memset(&lv, 0, sizeof(lv));
    hset_init(&lv.titles.dd.seen);
    hset_init(&lv.titles.title_of);
    int rc = read_jsonl(b, "demo-store/offers.generated.jsonl.gz", offer_row, &lv);
    if (!rc)
        rc = read_jsonl(b, "demo-store/products.jsonl.gz", title_row, &lv.titles);
    b->total = lv.n;
    for (size_t i = 0; !rc && i < lv.n; i++)
        rc = emit_live(b, &lv, i);
    for (size_t i = 0; i < lv.titles.n_titles; i++)
        free(lv.titles.titles[i]);
    free(lv.titles.titles);
    hset_release(&lv.titles.title_of);
    hset_release(&lv.titles.dd.seen);
    free(lv.v);
    return rc;
}

int sft_build(struct sft_out *o, enum sft_dataset d, const char *data_dir, char *err, size_t errlen)
{
    static int (*const fns[SFT_N_DATASETS])(struct builder *) = {
        build_hetpqa, build_semipqa, build_mcauley, build_demo, build_coqasum, build_fewsum, build_subjqa, build_live,
    };
    if ((unsigned)d >= SFT_N_DATASETS)
        return AISLE_EINVAL;
    struct builder b = {.o = o, .d = d, .dir = data_dir, .err = err, .errlen = errlen};
    rows_init(&b.rows);
    buf_init(&b.ans, SFT_MAX_RECORD);
    buf_init(&b.id, 0);
    buf_init(&b.q, SFT_MAX_RECORD);
    if (errlen)
        err[0] = '\0';
    int rc = fns[d](&b);
    if (rc == AISLE_ENOMEM && errlen && !err[0])
        snprintf(err, errlen, "%s: out of memory", dataset_names[d]);
    rows_release(&b.rows);
    buf_release(&b.ans);
    buf_release(&b.id);
    buf_release(&b.q);
    return rc;
}
