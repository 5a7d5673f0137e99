/*
 * dense.c — passage vectors: indexing into the store, loading, exact int8
 * search (see dense.h).
 *
 * Invariant: passage_vectors holds only vectors made by the encoder stored in
 * dense_meta (dense_set_encoder deletes them all when it changes), each blob
 * exactly 4 + D bytes; a blob of another size is reported as corrupt with its
 * passage id.
 */
#include "retrieval/dense.h"

#include "core/buf.h"
#include "core/error.h"
#include "tensor/tensor.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMMIT_EVERY 16384 /* passages embedded per transaction */
#define EMBED_THREADS 0     /* threads that embed: 0 = every online CPU */
#define SCAN_CHUNK 4096 /* rows dotted per kernel call */

struct group {
    int64_t *ids;  /* (n) ascending */
    int8_t *vec;   /* (n, D) */
    float *scale;  /* (n) */
    size_t n, cap;
};

struct dense_index {
    int D;
    struct group g[DENSE_NGROUPS];
    int64_t data_version, changes;
    int32_t *dots; /* (SCAN_CHUNK) scratch */
};

enum dense_group dense_group_of(const char *source)
{
    if (!strcmp(source, "review"))
        return DENSE_REVIEWS;
    if (!strcmp(source, "qa"))
        return DENSE_QA;
    return DENSE_CATALOG;
}

static int dberr(sqlite3 *db, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(db));
    return AISLE_EDB;
}

int dense_passage_text(struct buf *b, const char *source, const char *text, const char *aux)
{
    /* appends, not buf_printf: this runs once per passage indexed */
    int rc = 0;
    if (aux && *aux && !strcmp(source, "product"))
        rc = buf_puts(b, text) || buf_putc(b, ' ') || buf_puts(b, aux);
    else if (aux && *aux && (!strcmp(source, "qa") || !strcmp(source, "review")))
        rc = buf_puts(b, aux) || buf_append(b, ". ", 2) || buf_puts(b, text);
    else
        rc = buf_puts(b, text);
    return rc ? AISLE_ENOMEM : 0;
}

int dense_set_encoder(struct store *s, const void *bytes, size_t len, char *err, size_t errlen)
{
    struct encoder *e;
    int rc = enc_read(&e, bytes, len, err, errlen);
    if (rc)
        return rc;
    enc_free(e);
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st = NULL;
    if ((rc = store_begin(s))) {
        snprintf(err, errlen, "%s", store_errmsg(s));
        return rc;
    }
    int same = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM dense_meta WHERE key='encoder'", -1, &st, NULL) != SQLITE_OK) {
        rc = dberr(db, "read encoder", err, errlen);
        goto fail;
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        same = (size_t)sqlite3_column_bytes(st, 0) == len && !memcmp(sqlite3_column_blob(st, 0), bytes, len);
    sqlite3_finalize(st);
    st = NULL;
    if (!same) {
        if (sqlite3_exec(db, "DELETE FROM passage_vectors", NULL, NULL, NULL) != SQLITE_OK) {
            rc = dberr(db, "clear vectors", err, errlen);
            goto fail;
        }
        if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO dense_meta(key, value) VALUES('encoder', ?1)", -1, &st,
                               NULL) != SQLITE_OK) {
            rc = dberr(db, "store encoder", err, errlen);
            goto fail;
        }
        sqlite3_bind_blob64(st, 1, bytes, len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = dberr(db, "store encoder", err, errlen);
            goto fail;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if ((rc = store_commit(s))) {
        snprintf(err, errlen, "%s", store_errmsg(s));
        goto fail;
    }
    return 0;
fail:
    sqlite3_finalize(st);
    store_rollback(s);
    return rc;
}

int dense_get_encoder(struct store *s, struct encoder **out, char *err, size_t errlen)
{
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st;
    /* A read-only store of schema 1 has no vector tables (not migrated). */
    if (sqlite3_table_column_metadata(db, NULL, "dense_meta", "value", NULL, NULL, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "the store has no vector tables (schema 1; open it writable or run `aisle embed "
                              "index --db PATH`)");
        return AISLE_ENOTFOUND;
    }
    if (sqlite3_prepare_v2(db, "SELECT value FROM dense_meta WHERE key='encoder'", -1, &st, NULL) != SQLITE_OK)
        return dberr(db, "read encoder", err, errlen);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return dberr(db, "read encoder", err, errlen);
        snprintf(err, errlen, "the store has no encoder (run `aisle embed index --db PATH`)");
        return AISLE_ENOTFOUND;
    }
    char e2[256];
    const void *blob = sqlite3_column_blob(st, 0);
    rc = enc_read(out, blob ? blob : "", (size_t)sqlite3_column_bytes(st, 0), e2, sizeof(e2));
    if (rc)
        snprintf(err, errlen, "the store's encoder is corrupt: %s", e2);
    sqlite3_finalize(st);
    return rc;
}

/* One batch of pending passages: their texts back to back in text, each
 * row's vector (4-byte scale, then D int8) into vecs. */
struct embed_batch {
    const struct encoder *e;
    struct pend_row {
        int64_t id;
        int grp;
        size_t off, len; /* the passage text, in text */
    } *rows;             /* (n) */
    const char *text;
    int8_t *vecs; /* (n, 4 + D) */
    size_t n;
    atomic_size_t next; /* the next row to claim */
    atomic_int rc;      /* the first error, 0 if none */
};

#define EMBED_CLAIM 32 /* rows a thread claims at a time */

/* A thread's share of a batch: rows taken EMBED_CLAIM at a time from the
 * shared counter, so a descheduled thread holds up nobody. */
static void embed_rows_fn(void *ctx, int ith, int nth)
{
    (void)ith;
    (void)nth;
    struct embed_batch *b = ctx;
    int D = b->e->D;
    float v[ENC_MAX_DIM];
    for (;;) {
        size_t i0 = atomic_fetch_add(&b->next, EMBED_CLAIM);
        if (i0 >= b->n)
            return;
        size_t i1 = i0 + EMBED_CLAIM < b->n ? i0 + EMBED_CLAIM : b->n;
        for (size_t i = i0; i < i1; i++) {
            int rc = enc_embed(b->e, b->text + b->rows[i].off, b->rows[i].len, v);
            if (rc) {
                int zero = 0;
                atomic_compare_exchange_strong(&b->rc, &zero, rc);
                return;
            }
            int8_t *q = b->vecs + i * (size_t)(4 + D);
            float scale = nn_quantize_i8(q + 4, v, D);
            memcpy(q, &scale, 4);
        }
    }
}

int dense_index_pending(struct store *s, const struct encoder *e,
                        void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx, size_t *added,
                        char *err, size_t errlen)
{
    sqlite3 *db = store_db(s);
    sqlite3_stmt *cnt = NULL, *sel = NULL, *ins = NULL;
    struct pend_row *rows = malloc(COMMIT_EVERY * sizeof(*rows));
    int8_t *vecs = malloc((size_t)COMMIT_EVERY * (size_t)(4 + e->D));
    /* Embedding is nearly all the work: every core takes rows of each batch
     * (the caller too) between this thread's SQLite reads and writes. A pool
     * that cannot start leaves the caller to do it alone (p NULL). */
    struct tpool *pool = tpool_new(EMBED_THREADS);
    struct buf text;
    buf_init(&text, 0);
    int rc = 0, in_tx = 0;
    uint64_t total = 0, done = 0;
    if (!rows || !vecs) {
        rc = AISLE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    const char *pending = " FROM passages p WHERE p.id > ?1 AND NOT EXISTS"
                          " (SELECT 1 FROM passage_vectors v WHERE v.id = p.id)";
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT count(*)%s", pending);
    if (sqlite3_prepare_v2(db, sql, -1, &cnt, NULL) != SQLITE_OK)
        goto dbfail;
    sqlite3_bind_int64(cnt, 1, 0);
    if (sqlite3_step(cnt) == SQLITE_ROW)
        total = (uint64_t)sqlite3_column_int64(cnt, 0);
    snprintf(sql, sizeof(sql), "SELECT p.id, p.source, p.text, p.aux%s ORDER BY p.id LIMIT %d", pending,
             COMMIT_EVERY);
    if (sqlite3_prepare_v2(db, sql, -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO passage_vectors(id, grp, vec) VALUES(?1, ?2, ?3)", -1, &ins,
                           NULL) != SQLITE_OK)
        goto dbfail;
    if (progress)
        progress(ctx, 0, total);
    int64_t last = 0;
    for (;;) {
        /* Read a batch first, then embed it, then write it: the SELECT's
         * cursor is not held open across writes to the table it filters on. */
        size_t nb = 0;
        if ((rc = store_begin(s))) {
            snprintf(err, errlen, "%s", store_errmsg(s));
            goto out;
        }
        in_tx = 1;
        sqlite3_bind_int64(sel, 1, last);
        buf_reset(&text);
        int src;
        while ((src = sqlite3_step(sel)) == SQLITE_ROW) {
            const char *source = (const char *)sqlite3_column_text(sel, 1);
            const char *t = (const char *)sqlite3_column_text(sel, 2);
            const char *aux = (const char *)sqlite3_column_text(sel, 3);
            size_t off = text.len;
            if ((rc = dense_passage_text(&text, source ? source : "", t ? t : "", aux)))
                break;
            rows[nb].id = sqlite3_column_int64(sel, 0);
            rows[nb].grp = (int)dense_group_of(source ? source : "");
            rows[nb].off = off;
            rows[nb].len = text.len - off;
            nb++;
        }
        sqlite3_reset(sel);
        if (!rc && src != SQLITE_DONE && src != SQLITE_ROW)
            rc = AISLE_EDB;
        if (!rc && nb) {
            struct embed_batch eb = {.e = e, .rows = rows, .text = text.data, .vecs = vecs, .n = nb};
            atomic_init(&eb.next, 0);
            atomic_init(&eb.rc, 0);
            tpool_run_dynamic(pool, embed_rows_fn, &eb);
            rc = atomic_load(&eb.rc);
        }
        for (size_t i = 0; !rc && i < nb; i++) {
            sqlite3_bind_int64(ins, 1, rows[i].id);
            sqlite3_bind_int(ins, 2, rows[i].grp);
            sqlite3_bind_blob(ins, 3, vecs + i * (size_t)(4 + e->D), 4 + e->D, SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE)
                rc = AISLE_EDB;
            sqlite3_reset(ins);
            last = rows[i].id;
        }
        if (rc) {
            if (rc == AISLE_EDB)
                dberr(db, "store vectors", err, errlen);
            else
                snprintf(err, errlen, "out of memory");
            goto out;
        }
        if ((rc = store_commit(s))) {
            snprintf(err, errlen, "%s", store_errmsg(s));
            goto out;
        }
        in_tx = 0;
        done += nb;
        if (progress)
            progress(ctx, done, total);
        if (nb < COMMIT_EVERY)
            break;
    }
    if (added)
        *added = (size_t)done;
    goto out;
dbfail:
    rc = dberr(db, "index vectors", err, errlen);
out:
    if (in_tx)
        store_rollback(s);
    sqlite3_finalize(cnt);
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    buf_release(&text);
    tpool_free(pool);
    free(rows);
    free(vecs);
    return rc;
}

static int64_t pragma_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void groups_free(struct dense_index *ix)
{
    for (int g = 0; g < DENSE_NGROUPS; g++) {
        free(ix->g[g].ids);
        free(ix->g[g].vec);
        free(ix->g[g].scale);
        memset(&ix->g[g], 0, sizeof(ix->g[g]));
    }
}

static int load(struct dense_index *ix, struct store *s, char *err, size_t errlen)
{
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st = NULL;
    struct encoder *e = NULL;
    int rc = dense_get_encoder(s, &e, err, errlen);
    if (rc == AISLE_ENOTFOUND) {
        ix->D = 0; /* no encoder: no vectors either */
        rc = 0;
    }
    if (rc)
        return rc;
    groups_free(ix);
    ix->data_version = pragma_int(db, "PRAGMA data_version");
    ix->changes = sqlite3_total_changes64(db);
    if (!e)
        return 0;
    ix->D = e->D;
    enc_free(e);
    size_t D = (size_t)ix->D;
    if (sqlite3_prepare_v2(db, "SELECT id, grp, vec FROM passage_vectors ORDER BY id", -1, &st, NULL) != SQLITE_OK)
        return dberr(db, "load vectors", err, errlen);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int grp = sqlite3_column_int(st, 1);
        const unsigned char *b = sqlite3_column_blob(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        if (grp < 0 || grp >= DENSE_NGROUPS || len != 4 + D || !b) {
            snprintf(err, errlen, "corrupt vector for passage %lld (%zu bytes, group %d; expected %zu bytes)",
                     (long long)sqlite3_column_int64(st, 0), len, grp, 4 + D);
            rc = AISLE_EFORMAT;
            goto fail;
        }
        struct group *g = &ix->g[grp];
        if (g->n == g->cap) {
            size_t nc = g->cap ? g->cap * 2 : 1024;
            int64_t *ni = realloc(g->ids, nc * sizeof(int64_t));
            if (ni)
                g->ids = ni;
            float *ns = realloc(g->scale, nc * sizeof(float));
            if (ns)
                g->scale = ns;
            int8_t *nv = realloc(g->vec, nc * D);
            if (nv)
                g->vec = nv;
            if (!ni || !ns || !nv) {
                rc = AISLE_ENOMEM;
                snprintf(err, errlen, "out of memory loading vectors");
                goto fail;
            }
            g->cap = nc;
        }
        g->ids[g->n] = sqlite3_column_int64(st, 0);
        memcpy(&g->scale[g->n], b, 4);
        int8_t *dst = g->vec + g->n * D;
        memcpy(dst, b + 4, D);
        for (size_t j = 0; j < D; j++) /* the AVX2 dot needs rows without -128 */
            if (dst[j] == -128)
                dst[j] = -127;
        if (!(g->scale[g->n] >= 0.0f && g->scale[g->n] < 1.0f))
            g->scale[g->n] = 0.0f; /* not a unit vector's scale: never ranks */
        g->n++;
    }
    if (rc != SQLITE_DONE) {
        rc = dberr(db, "load vectors", err, errlen);
        goto fail;
    }
    sqlite3_finalize(st);
    return 0;
fail:
    sqlite3_finalize(st);
    groups_free(ix);
    return rc;
}

int dense_index_load(struct dense_index **out, struct store *s, char *err, size_t errlen)
{
    struct dense_index *ix = calloc(1, sizeof(*ix));
    if (!ix || !(ix->dots = malloc(SCAN_CHUNK * sizeof(int32_t)))) {
        free(ix);
        snprintf(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    int rc = load(ix, s, err, errlen);
    if (rc) {
        dense_index_free(ix);
        return rc;
    }
    *out = ix;
    return 0;
}

void dense_index_free(struct dense_index *ix)
{
    if (!ix)
        return;
    groups_free(ix);
    free(ix->dots);
    free(ix);
}

int dense_index_refresh(struct dense_index *ix, struct store *s, int *reloaded, char *err, size_t errlen)
{
    sqlite3 *db = store_db(s);
    int stale = pragma_int(db, "PRAGMA data_version") != ix->data_version || sqlite3_total_changes64(db) != ix->changes;
    if (reloaded)
        *reloaded = stale;
    return stale ? load(ix, s, err, errlen) : 0;
}

size_t dense_index_size(const struct dense_index *ix)
{
    size_t n = 0;
    for (int g = 0; g < DENSE_NGROUPS; g++)
        n += ix->g[g].n;
    return n;
}

size_t dense_index_group_size(const struct dense_index *ix, enum dense_group g)
{
    return (int)g >= 0 && g < DENSE_NGROUPS ? ix->g[g].n : 0;
}

int dense_index_dim(const struct dense_index *ix)
{
    return ix->D;
}

/* A min-heap of the best k hits so far (worst at the root). */
static int hit_worse(const struct dense_hit *a, const struct dense_hit *b)
{
    return a->score < b->score || (a->score == b->score && a->id > b->id);
}

static void heap_push(struct dense_hit *h, size_t *n, size_t k, struct dense_hit x)
{
    if (*n < k) {
        size_t i = (*n)++;
        h[i] = x;
        while (i && hit_worse(&h[i], &h[(i - 1) / 2])) {
            struct dense_hit t = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (!hit_worse(&h[0], &x))
        return;
    h[0] = x;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && hit_worse(&h[l], &h[m]))
            m = l;
        if (r < *n && hit_worse(&h[r], &h[m]))
            m = r;
        if (m == i)
            break;
        struct dense_hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cmp_best(const void *a, const void *b)
{
    const struct dense_hit *x = a, *y = b;
    return hit_worse(y, x) ? -1 : hit_worse(x, y) ? 1 : 0;
}

/* Common start of a search: *n = 0, k checked, the query quantized into qi
 * with scale *qs. 0: go on; 1: nothing to search (k 0 or no vectors);
 * AISLE_EINVAL. */
static int search_start(const struct dense_index *ix, const float *q, size_t k, size_t *n, int8_t *qi, float *qs)
{
    *n = 0;
    if (k > 1000)
        return AISLE_EINVAL;
    if (!k || !ix->D)
        return 1;
    *qs = nn_quantize_i8(qi, q, ix->D);
    return 0;
}

int dense_search(const struct dense_index *ix, const float *q, unsigned mask, size_t k, struct dense_hit *hits,
                 size_t *n)
{
    int8_t qi[ENC_MAX_DIM];
    float qs;
    int rc = search_start(ix, q, k, n, qi, &qs);
    if (rc)
        return rc > 0 ? 0 : rc;
    size_t D = (size_t)ix->D;
    for (int gi = 0; gi < DENSE_NGROUPS; gi++) {
        if (!(mask & (1u << gi)))
            continue;
        const struct group *g = &ix->g[gi];
        for (size_t off = 0; off < g->n; off += SCAN_CHUNK) {
            size_t m = g->n - off < SCAN_CHUNK ? g->n - off : SCAN_CHUNK;
            nn_dot_i8_rows(ix->dots, qi, g->vec + off * D, m, ix->D);
            for (size_t i = 0; i < m; i++) {
                struct dense_hit h = {g->ids[off + i], (float)ix->dots[i] * qs * g->scale[off + i]};
                heap_push(hits, n, k, h);
            }
        }
    }
    qsort(hits, *n, sizeof(*hits), cmp_best);
    return 0;
}

int dense_search_ids(const struct dense_index *ix, const float *q, const int64_t *ids, size_t nids, size_t k,
                     struct dense_hit *hits, size_t *n)
{
    int8_t qi[ENC_MAX_DIM];
    float qs;
    int rc = search_start(ix, q, k, n, qi, &qs);
    if (rc)
        return rc > 0 ? 0 : rc;
    size_t D = (size_t)ix->D;
    for (size_t i = 0; i < nids; i++)
        for (int gi = 0; gi < DENSE_NGROUPS; gi++) {
            const struct group *g = &ix->g[gi];
            size_t lo = 0, hi = g->n;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (g->ids[mid] < ids[i])
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < g->n && g->ids[lo] == ids[i]) {
                int32_t dot;
                nn_dot_i8_rows(&dot, qi, g->vec + lo * D, 1, ix->D);
                heap_push(hits, n, k, (struct dense_hit){ids[i], (float)dot * qs * g->scale[lo]});
                break;
            }
        }
    qsort(hits, *n, sizeof(*hits), cmp_best);
    return 0;
}
