/*
 * ckpt_fuzz.c — libFuzzer target for the training checkpoint reader
 * (ckpt_open_mem).
 *
 * The input is a whole checkpoint file. On rejection the error names the file
 * and a byte offset. On acceptance the file size is exactly the header, the
 * config text, the tokenizer bytes and 12 bytes per parameter; the config
 * holds no NUL; every region lies inside the input (touched here, so ASan
 * would catch a read past it).
 */
#include "core/error.h"
#include "train/ckpt.h"

#include "fuzz.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ckpt *c = NULL;
    char err[256] = "";
    int rc = ckpt_open_mem(&c, data, size, "in", err, sizeof err);
    if (rc) {
        FUZZ_CHECK(rc == AISLE_EFORMAT || rc == AISLE_ENOMEM, "rc %d", rc);
        FUZZ_CHECK(rc == AISLE_ENOMEM || !strncmp(err, "in: offset ", 11), "message '%s'", err);
        return 0;
    }
    size_t cl = strlen(c->config);
    FUZZ_CHECK(size == CKPT_HEADER_SIZE + cl + c->tok_len + 12 * c->n_params, "size %zu", size);
    FUZZ_CHECK(c->n_params > 0, "no parameters");
    FUZZ_CHECK(c->tok == data + CKPT_HEADER_SIZE + cl, "tokenizer offset");
    FUZZ_CHECK(c->v + 4 * c->n_params == data + size, "state ends at the file's end");
    volatile uint8_t x = 0;
    for (size_t i = 0; i < c->tok_len; i += 97)
        x ^= c->tok[i];
    x ^= c->params[0] ^ c->v[4 * c->n_params - 1];
    (void)x;
    ckpt_close(c);
    return 0;
}
