/*
 * shard.h — the trainer's data files: token shards (pretraining text) and
 * SFT shards (chat examples with a loss mask). A writer that produces a file
 * atomically and a hostile-input-safe reader over a read-only memory map.
 *
 * THE FORMATS (all integers little-endian; this code assumes a little-endian host):
 *
 *   token shard   32-byte header:
 *                   8 bytes magic "AISLETOK", u32 version (1), u32 vocab_size,
 *                   u64 n_tokens, u32 n_docs, u32 reserved (0)
 *                 then n_tokens u32 token ids, each < vocab_size. Every
 *                 document is followed by the tokenizer's EOS id, so the
 *                 stream is doc EOS doc EOS ... and n_docs counts documents.
 *
 *   SFT shard     32-byte header:
 *                   8 bytes magic "AISLESFT", u32 version (1), u32 vocab_size,
 *                   u64 n_examples, u64 reserved (0)
 *                 then n_examples times: u32 n_tokens (1..SHARD_MAX_EXAMPLE),
 *                 n_tokens u32 ids (< vocab_size), n_tokens u8 mask (0 or 1).
 *                 mask[i] = 1 when token i is a target whose prediction counts
 *                 in the loss: the assistant's tokens, its end token included.
 *                 (For training on the pair (ids[i-1] -> ids[i]), the weight
 *                 of predicting ids[i] is mask[i].)
 *
 * Either file ends exactly where its last record ends: trailing bytes are an
 * error, as is anything the counts say that the file does not hold.
 *
 * The reader validates everything at open: magic, version, reserved fields,
 * vocab_size in 1..SHARD_MAX_VOCAB, every count against the bytes that remain,
 * every id against vocab_size, every mask byte; an error names the file and
 * the byte offset. Token ids are then read in place from the map; SFT
 * examples (whose ids may be unaligned) through shard_example_get.
 *
 * Ownership: a struct shard_writer owns its temporary file until finish or
 * free. A struct shard owns its map (shard_open) or borrows the caller's
 * bytes (shard_open_mem: they must outlive it) plus its example index.
 *
 * THREAD SAFETY: an open struct shard is immutable and may be read by any
 * number of threads. A writer belongs to one thread at a time.
 */
#ifndef AISLE_TRAIN_SHARD_H
#define AISLE_TRAIN_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define SHARD_HEADER_SIZE 32
#define SHARD_VERSION 1u
#define SHARD_MAX_VOCAB (1u << 24)      /* vocab_size limit */
#define SHARD_MAX_EXAMPLE (1u << 20)    /* tokens in one SFT example */

enum shard_kind { SHARD_TOKENS = 1, SHARD_SFT = 2 };

struct shard_writer;

/* Start writing a shard of kind to path (through PATH.tmp.XXXXXX). eos is
 * the id appended after each document of a token shard (ignored for SFT).
 * 0, AISLE_EINVAL (vocab_size out of range, eos >= vocab_size for tokens),
 * AISLE_EIO or AISLE_ENOMEM, with detail in err. */
int shard_writer_open(struct shard_writer **out, const char *path, enum shard_kind kind, uint32_t vocab_size,
                      int32_t eos, char *err, size_t errlen);
/* Token shard: append a document (n ids, then EOS). 0, AISLE_EINVAL (wrong
 * kind, an id outside [0, vocab_size), too many tokens or documents) or AISLE_EIO. */
int shard_writer_add_doc(struct shard_writer *w, const int32_t *ids, size_t n);
/* SFT shard: append one example of n (1..SHARD_MAX_EXAMPLE) ids with its
 * mask (each 0 or 1). 0, AISLE_EINVAL or AISLE_EIO. */
int shard_writer_add_example(struct shard_writer *w, const int32_t *ids, const uint8_t *mask, size_t n);
/* Counts so far: documents or examples, and tokens. */
uint64_t shard_writer_count(const struct shard_writer *w);
uint64_t shard_writer_tokens(const struct shard_writer *w);
/* Write the header, fsync, rename over the target; frees w either way.
 * 0 or AISLE_EIO with detail in err. */
int shard_writer_finish(struct shard_writer *w, char *err, size_t errlen);
/* Abandon the file (the temporary file is removed). NULL is a no-op. */
void shard_writer_free(struct shard_writer *w);

struct shard {
    enum shard_kind kind;
    uint32_t vocab_size;
    uint32_t n_docs;           /* token shard */
    uint64_t n_tokens;         /* token shard: ids; SFT: sum of example lengths */
    uint64_t n_examples;       /* SFT */
    uint32_t max_example;      /* SFT: longest example */
    const uint32_t *tokens;    /* token shard: (n_tokens) in the map */
    /* private */
    const uint8_t *data;
    size_t size;
    uint64_t *ex_off;          /* SFT: (n_examples) byte offset of each example's length field */
    void *map;
    size_t map_len;
};

/* Open and validate the file at path. 0, AISLE_EIO (cannot read) or
 * AISLE_EFORMAT / AISLE_ETOOBIG with "path: offset N: what" in err. */
int shard_open(struct shard **out, const char *path, char *err, size_t errlen);
/* The same over bytes the caller keeps alive; name is used in messages. */
int shard_open_mem(struct shard **out, const void *data, size_t size, const char *name, char *err, size_t errlen);
void shard_close(struct shard *s); /* NULL is a no-op */

/* SFT: the length of example i (< n_examples). */
uint32_t shard_example_len(const struct shard *s, uint64_t i);
/* SFT: copy example i's ids and mask into caller arrays of at least
 * shard_example_len(s, i) elements (either may be NULL). */
void shard_example_get(const struct shard *s, uint64_t i, int32_t *ids, uint8_t *mask);

#endif
