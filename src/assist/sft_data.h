/*
 * sft_data.h — instruction-tuning (SFT) examples built from real shopping data,
 * in exactly the prompt format the assistant serves with (assist/prompt.h).
 *
 * Design: one builder per dataset reads its files (the layout of the shared
 * data folder, docs/PROMPT.md "SFT data"), turns each record into a question,
 * evidence passages (the one that answers plus distractors, in a seeded random
 * order) and an answer that cites the passage by its number and ends with a
 * product tag when the product id is known; sft_out renders each example with
 * prompt_build and writes it twice: a JSON Lines record for inspection and an
 * SFT shard record (train/shard.h: ids + loss mask) through the shard writer.
 * Datasets with their own dev split go to the dev outputs; their test splits
 * are never read; datasets without splits are split by product (a hash of the
 * product id and the seed), so no product is in both.
 *
 * Invariants: the same files, options and seed give byte-identical outputs
 * (the random stream of each record is derived from the seed, the dataset and
 * the record's position). Every answer written passes markup_check with the
 * example's passage count; an example that does not (markup-like text in the
 * source answer) is counted as rejected and skipped.
 *
 * Untrusted input: the data files. Every record is checked (fields present,
 * valid UTF-8, within SFT_MAX_FIELD bytes); a bad record is counted and skipped,
 * a bad file (no header column, corrupt gzip) fails with "file:line: what".
 *
 * Ownership: struct sft_out owns its files until sft_out_finish/sft_out_free;
 * the tokenizer is borrowed and must outlive it.
 *
 * THREAD SAFETY: one struct sft_out per thread; builders keep no global state.
 */
#ifndef AISLE_ASSIST_SFT_DATA_H
#define AISLE_ASSIST_SFT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "assist/prompt.h"
#include "tok/tok.h"

#define SFT_MAX_EVIDENCE 16          /* passages in one example */
#define SFT_MAX_FIELD (256u << 10)   /* bytes of one field of a record */
#define SFT_MAX_RECORD (4u << 20)    /* bytes of one record (lines joined) */

enum sft_dataset {
    SFT_HETPQA = 0,  /* contextual-pqa hetPQA answer generation: question + evidence -> answer */
    SFT_SEMIPQA,     /* contextual-pqa semiPQA data-to-text: attribute -> sentence */
    SFT_MCAULEY_QA,  /* mcauley-amazon-qa community Q&A */
    SFT_DEMO_QA,     /* the demo store's community Q&A (with product titles) */
    SFT_COQASUM,     /* CoQASUM: Q&A of a product -> summary ("what do customers say") */
    SFT_FEWSUM,      /* FewSum: 8 reviews -> summary */
    SFT_SUBJQA,      /* SubjQA: a review -> answer span, or "the reviews don't say" */
    SFT_LIVE,        /* live store facts: the demo store's real titles with its GENERATED offers
                      * -> price/stock/delivery/compare answers with their tags, stale marked */
    SFT_N_DATASETS
};

enum sft_split { SFT_TRAIN = 0, SFT_DEV = 1 };

struct sft_opts {
    uint64_t seed;
    unsigned distractors;     /* extra passages per question example (default 3, at most 8) */
    size_t max_tokens;        /* longer examples are dropped (default 2048) */
    size_t max_per_dataset;   /* examples per dataset and split; 0 = all */
    unsigned dev_percent;     /* datasets without splits: % of products in dev (default 10) */
    unsigned negative_percent; /* question datasets: % of examples whose evidence lacks the
                                * answer, answered "doesn't say" (default 10) */
    size_t max_passage_bytes; /* default PROMPT_PASSAGE_BYTES_DEFAULT */
    unsigned multi_turn_percent; /* community Q&A: % of answered examples that carry an earlier
                                  * question and answer about the same product as a first turn
                                  * (default 15) */
};
/* Fill in the defaults above. */
void sft_opts_default(struct sft_opts *o);

struct sft_stats {
    uint64_t records;       /* source records read (train and dev together) */
    uint64_t examples;      /* written */
    uint64_t negatives;     /* of which "doesn't say" */
    uint64_t multi_turn;    /* of which two user turns */
    uint64_t tokens;        /* in the shard */
    uint64_t target_tokens; /* mask = 1 */
    uint64_t rejected;      /* bad records, or answers that fail markup_check */
    uint64_t too_long;      /* over max_tokens */
    uint64_t capped;        /* over max_per_dataset */
    uint64_t held_out;      /* records of a test split, read past and never written */
};

/* One example before rendering. Strings are borrowed. */
struct sft_example {
    enum sft_dataset dataset;
    enum sft_split split;
    const char *id; /* the source record, e.g. "B00GZ1GUSY#17" */
    struct prompt_passage ev[SFT_MAX_EVIDENCE];
    size_t n_ev;
    const char *question;
    const char *answer;
    const char *prev_question; /* NULL, or an earlier turn of the same conversation */
    const char *prev_answer;
    int negative;
};

struct sft_out;

/* Open OUT_DIR/train.jsonl and dev.jsonl and, when t is given, train.sft and
 * dev.sft (shards of t's vocabulary). The directory must exist. 0, AISLE_EIO,
 * AISLE_EINVAL (t lacks the chat tokens) or AISLE_ENOMEM with detail in err. */
int sft_out_open(struct sft_out **out, const char *dir, const struct tok *t, const struct sft_opts *opts, char *err,
                 size_t errlen);
/* Progress: called after each source record with the records done and the
 * dataset's total (0 when unknown). */
void sft_out_set_progress(struct sft_out *o, void (*fn)(void *ud, enum sft_dataset d, uint64_t done, uint64_t total),
                          void *ud);
/* Render and write one example (the builders call this). 0 when written or
 * counted as rejected/too long/capped; AISLE_EIO / AISLE_ENOMEM with detail. */
int sft_out_add(struct sft_out *o, const struct sft_example *ex);
const struct sft_stats *sft_out_stats(const struct sft_out *o, enum sft_dataset d, enum sft_split s);
/* Close the JSONL files and commit the shards. 0 or AISLE_EIO; frees o either way. */
int sft_out_finish(struct sft_out *o, char *err, size_t errlen);
/* Abandon (shards are not committed). NULL is a no-op. */
void sft_out_free(struct sft_out *o);

/* "hetpqa", "semipqa", "mcauley-qa", "demo-qa", "coqasum", "fewsum", "subjqa", "live". */
const char *sft_dataset_name(enum sft_dataset d);
/* The dataset with that name, or -1. */
int sft_dataset_find(const char *name);
/* The files the dataset reads, relative to the data directory, as one
 * human-readable line (for help text and "not found" messages). */
const char *sft_dataset_files(enum sft_dataset d);

/* Build dataset d from its files under data_dir into o. AISLE_ENOTFOUND when
 * its first file is absent (err names it); AISLE_EFORMAT / AISLE_EIO for a bad
 * file ("path:line: what" in err); 0 otherwise (bad records are counted). */
int sft_build(struct sft_out *o, enum sft_dataset d, const char *data_dir, char *err, size_t errlen);

/* ---- pieces the builders share, public for tests ---- */

/* A tab- or comma-separated file with a header row and RFC 4180 quoting (a
 * quoted field may hold the delimiter, doubled quotes and newlines), plain or
 * gzip. */
struct sft_table;
/* Open path and read its header. 0, AISLE_EIO, AISLE_EFORMAT, AISLE_ENOMEM; err. */
int sft_table_open(struct sft_table **out, const char *path, char delim, char *err, size_t errlen);
/* Column index of name in the header, or -1. */
int sft_table_col(const struct sft_table *t, const char *name);
/* Next record: its fields in *fields (valid until the next call), *n of them.
 * 0, AISLE_EEOF, AISLE_EFORMAT (a malformed record, skipped: the next call goes
 * on after it; message in the table's error), AISLE_ETOOBIG, AISLE_EIO. */
int sft_table_next(struct sft_table *t, char ***fields, size_t *n);
const char *sft_table_error(const struct sft_table *t);
uint64_t sft_table_line(const struct sft_table *t);
void sft_table_close(struct sft_table *t);

/* Append text, a citation of passage n before its final punctuation (". [1]"
 * is written "[1]."), and " <product id=\"ID\"/>" when product_id is a valid id. */
int sft_cite(struct buf *out, const char *text, size_t n, unsigned cite, const char *product_id);

#endif
