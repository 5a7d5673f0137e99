/*
 * corpus.h — a training corpus: documents from named sources (catalog,
 * reviews, qa, text, ...) tokenized into token shards (shard.h), with a
 * held-out validation shard per source and a manifest (manifest.json) that
 * the trainer reads.
 *
 * Design: the builder takes documents in order, source by source; document i
 * of a source (0-based, counted per source over ALL documents, whichever
 * process takes it) is held out for validation when a hash of (seed, source,
 * i) falls below val_frac, so the split is deterministic for a seed and the
 * same for any number of processes. With size > 1 processes (MPI ranks) this
 * process takes the documents with i % size == rank and writes its own
 * files (SOURCE.train.RANK.tok); one process writes SOURCE.train.tok.
 * Documents are tokenized in batches on a thread pool (one tok_cache per
 * worker) and written in input order, so the files do not depend on the
 * thread count.
 *
 * Layout of DIR:
 *   manifest.json          written by corpus_write_manifest (rank 0), see below
 *   tokenizer.gguf         a copy of the tokenizer (the trainer embeds it in its GGUF)
 *   SOURCE.{train,val}[.RANK].tok
 * manifest.json: {"format": "aisle-corpus", "version": 1, "seed": N,
 *   "val_frac": F, "ranks": R, "tokenizer": {"file": "tokenizer.gguf",
 *   "fnv1a64": "hex", "vocab_size": V, "eos": E},
 *   "sources": [{"name": S, "train": {"files": [...], "docs": n, "tokens": n},
 *                "val": {...}}]}
 *
 * Text files (corpus_read_text): JSON Lines, plain or gzip, one object per
 * line whose string member "text" is a document; blank lines are skipped;
 * anything else is an error naming file and line.
 *
 * Ownership: the builder borrows the tokenizer (it must outlive the builder)
 * and owns its pool, caches, writers and buffered documents. A manifest owns
 * all its strings.
 *
 * THREAD SAFETY: one thread drives a builder (it uses its own pool inside).
 * A loaded manifest is immutable.
 */
#ifndef AISLE_TRAIN_CORPUS_H
#define AISLE_TRAIN_CORPUS_H

#include <stddef.h>
#include <stdint.h>

struct tok;
struct corpus_builder;

#define CORPUS_MAX_SOURCES 32
#define CORPUS_MAX_NAME 32        /* bytes in a source name: [a-z0-9_-]+ */
#define CORPUS_MAX_FILES 4096     /* shard files per split of a source */
#define CORPUS_MAX_DOC (64u << 20) /* bytes in one document */

struct corpus_opts {
    const char *out_dir; /* must exist */
    double val_frac;     /* 0 <= val_frac < 1 */
    uint64_t seed;
    int nthreads;        /* tokenizing threads, <= 0: online CPUs */
    int rank, size;      /* this process takes documents i % size == rank; size 1: all */
};

/* 1 when name is a valid source name ([a-z0-9_-], 1..CORPUS_MAX_NAME-1 bytes). */
int corpus_name_ok(const char *name);

int corpus_builder_new(struct corpus_builder **out, const struct corpus_opts *o, const struct tok *t, char *err,
                       size_t errlen);
/* Declare a source so that its files exist on every rank even when it gets
 * no documents. 0 or AISLE_EINVAL / AISLE_EIO with detail in err. */
int corpus_builder_source(struct corpus_builder *b, const char *source, char *err, size_t errlen);
/* Add the next document of source (created on first use; at most
 * CORPUS_MAX_SOURCES). text is copied. 0, AISLE_EINVAL (bad name, too many
 * sources, document over CORPUS_MAX_DOC), AISLE_ENOMEM or AISLE_EIO, with
 * detail in err. */
int corpus_builder_add(struct corpus_builder *b, const char *source, const char *text, size_t n, char *err,
                       size_t errlen);
/* Documents seen so far (all sources, all ranks' shares counted). */
uint64_t corpus_builder_docs(const struct corpus_builder *b);
/* Tokenize what is buffered and write every shard. 0 or an error with detail. */
int corpus_builder_finish(struct corpus_builder *b, char *err, size_t errlen);
void corpus_builder_free(struct corpus_builder *b); /* NULL is a no-op; unfinished shards are abandoned */

/* After every rank has finished: read the shard headers in dir for the
 * sources named (size ranks), copy the tokenizer file there and write
 * manifest.json atomically. 0 or an error with detail. */
int corpus_write_manifest(const char *dir, const char *const *sources, int n_sources, int size, uint64_t seed,
                          double val_frac, const char *tokenizer_path, char *err, size_t errlen);

/* Call fn(ctx, text, len) for each document of a JSON Lines text file.
 * 0, fn's nonzero return, or AISLE_EIO / AISLE_EFORMAT with "path:line: what" in err. */
int corpus_read_text(const char *path, int (*fn)(void *ctx, const char *text, size_t len), void *ctx, char *err,
                     size_t errlen);

/* FNV-1a 64 of a file's bytes. 0 or AISLE_EIO. */
int corpus_file_hash(const char *path, uint64_t *out);

struct corpus_split {
    int n_files;
    char **files;   /* (n_files) paths relative to the corpus directory */
    uint64_t docs, tokens;
};
struct corpus_source {
    char name[CORPUS_MAX_NAME];
    struct corpus_split train, val;
};
struct corpus_manifest {
    uint64_t seed;
    double val_frac;
    int ranks;
    uint32_t vocab_size;
    int32_t eos;
    uint64_t tok_hash;
    char *tokenizer;  /* file name relative to the corpus directory */
    int n_sources;
    struct corpus_source sources[CORPUS_MAX_SOURCES];
};

/* Parse manifest bytes (untrusted): every field checked, file names must be
 * plain names inside the directory (no '/', no ".."). 0 with *out set, or
 * AISLE_EFORMAT / AISLE_ENOMEM with "name: what" in err. */
int corpus_manifest_parse(struct corpus_manifest **out, const char *data, size_t n, const char *name, char *err,
                          size_t errlen);
/* Read and parse DIR/manifest.json. */
int corpus_manifest_load(struct corpus_manifest **out, const char *dir, char *err, size_t errlen);
void corpus_manifest_free(struct corpus_manifest *m); /* NULL is a no-op */

#endif
