/*
 * dense.h — passage vectors in the store and exact dense search over them.
 *
 * Design: the store keeps one int8 vector per passage (table passage_vectors,
 * schema migration 2: a 4-byte f32 scale then D int8 values, about 132 bytes
 * a passage at D = 128) and the encoder that made them (table dense_meta, key
 * 'encoder': the encoder file's bytes), so a query is always encoded by the
 * passages' own model. Vectors are deleted with their passages (a trigger);
 * dense_index_pending embeds every passage that has none (new or changed
 * passages get new rowids), which `aisle ingest` runs after each file and
 * `aisle embed index` runs on demand. A searcher loads all vectors into
 * memory, grouped by source (catalog, reviews, Q&A) so a per-source search
 * scans one contiguous block, and scores by exact int8 dot (nn_dot_i8_rows,
 * AVX2) times the two scales: the cosine up to quantization error (about
 * 1e-3). It reloads when the store changed (PRAGMA data_version and this
 * connection's change count).
 *
 * Ownership: struct dense_index owns its arrays; the store is borrowed per
 * call. THREAD SAFETY: one index per thread (it refreshes in place); the
 * indexing functions write through the caller's connection, from the calling
 * thread only (dense_index_pending's worker threads only embed, touching
 * neither SQLite nor the store).
 */
#ifndef AISLE_RETRIEVAL_DENSE_H
#define AISLE_RETRIEVAL_DENSE_H

#include <stddef.h>
#include <stdint.h>

#include "retrieval/encoder.h"
#include "store/store.h"

enum dense_group { DENSE_CATALOG, DENSE_REVIEWS, DENSE_QA, DENSE_NGROUPS };

/* Store the encoder's file bytes in the store (validated with enc_read). When
 * they differ from the stored ones, every passage vector is deleted (they were
 * made by another model). Own transaction. 0, or a negative code with err. */
int dense_set_encoder(struct store *s, const void *bytes, size_t len, char *err, size_t errlen);
/* The store's encoder. AISLE_ENOTFOUND when it has none. */
int dense_get_encoder(struct store *s, struct encoder **out, char *err, size_t errlen);

/* Embed every passage without a vector: batches of 16,384 passages are read,
 * embedded on every online CPU (a thread pool of this call's own, the caller
 * included; alone if no thread can start), written and committed.
 * progress (may be NULL) gets (done, total) now and then. *added (may be NULL)
 * gets the count. 0 or a negative code with err. Must not run inside the
 * caller's transaction. */
int dense_index_pending(struct store *s, const struct encoder *e,
                        void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx, size_t *added,
                        char *err, size_t errlen);
/* The text a passage is embedded as (shared by indexing and by hybrid's
 * reranker): "question answer" for Q&A, "title. text" for a review with a
 * title, "title brand category" for a product title, the text otherwise.
 * Appends to b; 0 or AISLE_ENOMEM. */
int dense_passage_text(struct buf *b, const char *source, const char *text, const char *aux);

struct dense_hit {
    int64_t id;  /* passages.id */
    float score; /* cosine, -1..1 */
};

struct dense_index;

/* Load the vectors of store s. 0 with *out; AISLE_ENOTFOUND when the store has
 * no vectors table (an old schema) — an empty index is fine otherwise. */
int dense_index_load(struct dense_index **out, struct store *s, char *err, size_t errlen);
void dense_index_free(struct dense_index *ix);
/* Reload when the store changed since the last load. *reloaded (may be NULL)
 * tells whether it did. */
int dense_index_refresh(struct dense_index *ix, struct store *s, int *reloaded, char *err, size_t errlen);
size_t dense_index_size(const struct dense_index *ix);
/* Vectors in one source group. */
size_t dense_index_group_size(const struct dense_index *ix, enum dense_group g);
int dense_index_dim(const struct dense_index *ix);

/* The best k (<= n given) vectors of the groups in mask (1 << DENSE_*) for the
 * unit query q (D): hits[0..*n) best first (ties by id). k at most 1000.
 * 0 or AISLE_ENOMEM / AISLE_EINVAL. */
int dense_search(const struct dense_index *ix, const float *q, unsigned mask, size_t k, struct dense_hit *hits,
                 size_t *n);
/* Score only the passages ids[0..nids) (any order, missing ones skipped),
 * best k first. */
int dense_search_ids(const struct dense_index *ix, const float *q, const int64_t *ids, size_t nids, size_t k,
                     struct dense_hit *hits, size_t *n);

/* The group of a passage source name. */
enum dense_group dense_group_of(const char *source);

#endif
