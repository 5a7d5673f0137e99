/*
 * ckpt.c — checkpoints (format and contract in ckpt.h).
 */
#include "train/ckpt.h"

#include "core/error.h"
#include "train/atomic.h"
#include "train/llama_train.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MAGIC[8] = {'A', 'I', 'S', 'L', 'E', 'C', 'K', 'P'};

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int ckpt_save(const char *path, const struct ltr_model *m, const struct ckpt_state *st, const char *config,
              const void *tok, size_t tok_len, char *err, size_t errlen)
{
    size_t cl = strlen(config);
    if (cl > CKPT_MAX_CONFIG || tok_len > CKPT_MAX_TOKENIZER) {
        if (err && errlen)
            snprintf(err, errlen, "%s: config or tokenizer over the checkpoint's limits", path);
        return AISLE_EINVAL;
    }
    uint8_t h[CKPT_HEADER_SIZE] = {0};
    uint64_t el;
    memcpy(h, MAGIC, 8);
    h[8] = 1;
    put64(h + 16, m->n_params);
    put64(h + 24, st->step);
    put64(h + 32, st->tokens);
    put64(h + 40, st->rng);
    memcpy(&el, &st->elapsed, 8);
    put64(h + 48, el);
    put64(h + 56, cl);
    put64(h + 64, tok_len);
    struct trn_atomic a;
    int rc = trn_atomic_open(&a, path, err, errlen);
    if (rc)
        return rc;
    int ok = fwrite(h, 1, sizeof h, a.f) == sizeof h && fwrite(config, 1, cl, a.f) == cl &&
             (!tok_len || fwrite(tok, 1, tok_len, a.f) == tok_len) &&
             fwrite(m->params_mem, sizeof(float), m->n_params, a.f) == m->n_params &&
             fwrite(m->m_mem, sizeof(float), m->n_params, a.f) == m->n_params &&
             fwrite(m->v_mem, sizeof(float), m->n_params, a.f) == m->n_params;
    if (!ok) {
        if (err && errlen)
            snprintf(err, errlen, "%s: write: %s", path, strerror(errno ? errno : EIO));
        trn_atomic_abort(&a);
        return AISLE_EIO;
    }
    return trn_atomic_commit(&a, err, errlen);
}

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

int ckpt_open_mem(struct ckpt **out, const void *data, size_t size, const char *name, char *err, size_t errlen)
{
    const uint8_t *d = data;
    int rc = 0;
    struct ckpt *c = calloc(1, sizeof *c);
    if (!c)
        return AISLE_ENOMEM;
    if (size < CKPT_HEADER_SIZE)
        BAD(size, "file of %zu bytes is shorter than the %d-byte checkpoint header", size, CKPT_HEADER_SIZE);
    if (memcmp(d, MAGIC, 8))
        BAD(0, "bad magic (want \"AISLECKP\")");
    if (get64(d + 8) != 1)
        BAD(8, "unsupported version/reserved fields (want version 1, reserved 0)");
    uint64_t np = get64(d + 16), cl = get64(d + 56), tl = get64(d + 64), el = get64(d + 48);
    if (cl > CKPT_MAX_CONFIG)
        BAD(56, "config_len %llu over the limit %u", (unsigned long long)cl, CKPT_MAX_CONFIG);
    if (tl > CKPT_MAX_TOKENIZER)
        BAD(64, "tokenizer_len %llu over the limit %u", (unsigned long long)tl, CKPT_MAX_TOKENIZER);
    uint64_t left = size - CKPT_HEADER_SIZE - cl - (cl + tl <= size - CKPT_HEADER_SIZE ? tl : 0);
    if (cl + tl > size - CKPT_HEADER_SIZE)
        BAD(56, "config and tokenizer need %llu bytes but %llu remain", (unsigned long long)(cl + tl),
            (unsigned long long)(size - CKPT_HEADER_SIZE));
    if (np == 0 || np > left / 12 || np * 12 != left)
        BAD(16, "n_params %llu needs %llu bytes of parameters and optimizer state; %llu remain",
            (unsigned long long)np, np <= UINT64_MAX / 12 ? (unsigned long long)np * 12 : 0ull,
            (unsigned long long)left);
    c->n_params = np;
    c->st.step = get64(d + 24);
    c->st.tokens = get64(d + 32);
    c->st.rng = get64(d + 40);
    memcpy(&c->st.elapsed, &el, 8);
    if (!(c->config = malloc(cl + 1))) {
        rc = AISLE_ENOMEM;
        goto fail;
    }
    memcpy(c->config, d + CKPT_HEADER_SIZE, cl);
    c->config[cl] = 0;
    if (strlen(c->config) != cl)
        BAD(CKPT_HEADER_SIZE + strlen(c->config), "NUL byte inside the config text");
    c->tok = d + CKPT_HEADER_SIZE + cl;
    c->tok_len = tl;
    c->params = c->tok + tl;
    c->m = c->params + 4 * np;
    c->v = c->m + 4 * np;
    *out = c;
    return 0;
fail:
    free(c->config);
    free(c);
    return rc;
}

int ckpt_open(struct ckpt **out, const char *path, char *err, size_t errlen)
{
    const void *data;
    void *map;
    size_t len;
    struct ckpt *c;
    int rc = trn_map_file(path, &data, &map, &len, err, errlen);
    if (rc)
        return rc;
    if ((rc = ckpt_open_mem(&c, data, len, path, err, errlen))) {
        trn_unmap(map, len);
        return rc;
    }
    c->map = map;
    c->map_len = len;
    *out = c;
    return 0;
}

void ckpt_close(struct ckpt *c)
{
    if (!c)
        return;
    trn_unmap(c->map, c->map_len);
    free(c->config);
    free(c);
}

int ckpt_restore(const struct ckpt *c, struct ltr_model *m)
{
    if (c->n_params != m->n_params || c->st.step > (uint64_t)INT32_MAX)
        return AISLE_EINVAL;
    size_t n = m->n_params * sizeof(float);
    memcpy(m->params_mem, c->params, n);
    memcpy(m->m_mem, c->m, n);
    memcpy(m->v_mem, c->v, n);
    m->step = (int)c->st.step;
    return 0;
}
