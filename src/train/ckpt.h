/*
 * ckpt.h — training checkpoints: everything needed to continue a run
 * exactly — parameters, AdamW's m and v, the step, tokens seen, the data
 * sampler's RNG state, the run's configuration (text in the config-file
 * format of `aisle train`) and the tokenizer (its GGUF file bytes).
 *
 * THE FORMAT (little-endian):
 *   0  8  magic "AISLECKP"        32  8  u64 tokens seen
 *   8  4  u32 version (1)         40  8  u64 sampler RNG state
 *  12  4  u32 reserved (0)        48  8  f64 elapsed seconds
 *  16  8  u64 n_params            56  8  u64 config_len (<= CKPT_MAX_CONFIG)
 *  24  8  u64 step                64  8  u64 tokenizer_len (<= CKPT_MAX_TOKENIZER)
 *  72     config text, tokenizer bytes, then params, m, v: n_params f32 each.
 * The file size is exactly 72 + config_len + tokenizer_len + 12 n_params.
 * Written atomically (tmp + fsync + rename): a crash leaves the previous
 * checkpoint.
 *
 * Ownership: struct ckpt owns its map; config (NUL-terminated copy) and the
 * pointers into the map live until ckpt_close.
 *
 * THREAD SAFETY: an open ckpt is immutable.
 */
#ifndef AISLE_TRAIN_CKPT_H
#define AISLE_TRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

struct ltr_model;

#define CKPT_HEADER_SIZE 72
#define CKPT_MAX_CONFIG (1u << 20)
#define CKPT_MAX_TOKENIZER (256u << 20)

struct ckpt_state {
    uint64_t step, tokens, rng;
    double elapsed;
};

/* Write m's parameters and AdamW state with st, config and tokenizer bytes
 * to path atomically. 0 or AISLE_EIO / AISLE_EINVAL (over a limit) with detail. */
int ckpt_save(const char *path, const struct ltr_model *m, const struct ckpt_state *st, const char *config,
              const void *tok, size_t tok_len, char *err, size_t errlen);

struct ckpt {
    struct ckpt_state st;
    uint64_t n_params;
    char *config;            /* NUL-terminated copy */
    const uint8_t *tok;      /* tokenizer GGUF bytes (tok_len) */
    size_t tok_len;
    const uint8_t *params, *m, *v; /* n_params f32 each, possibly unaligned */
    /* private */
    void *map;
    size_t map_len;
};

/* Open and validate (magic, version, every length against the file size).
 * 0 or AISLE_EIO / AISLE_EFORMAT / AISLE_ENOMEM with "path: offset N: what" in err. */
int ckpt_open(struct ckpt **out, const char *path, char *err, size_t errlen);
/* The same over caller bytes that outlive the ckpt (name for messages). */
int ckpt_open_mem(struct ckpt **out, const void *data, size_t size, const char *name, char *err, size_t errlen);
void ckpt_close(struct ckpt *c); /* NULL is a no-op */
/* Copy parameters, m and v into m and set its AdamW step. AISLE_EINVAL when
 * the parameter counts differ. */
int ckpt_restore(const struct ckpt *c, struct ltr_model *m);

#endif
