/*
 * shard_fuzz.c — libFuzzer target for the token/SFT shard reader
 * (shard_open_mem) and its accessors.
 *
 * The input is a whole shard file. On rejection the error text must name the
 * file and a byte offset. On acceptance: a token shard's ids all lie inside
 * the input and below vocab_size, n_docs <= n_tokens and the file size is
 * exactly the header plus the ids; an SFT shard's examples are all read back
 * with shard_example_get, their ids below vocab_size, masks 0/1, lengths
 * summing to n_tokens and the longest equal to max_example. ASan catches any
 * read outside the input.
 */
#include "core/error.h"
#include "train/shard.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct shard *s = NULL;
    char err[256] = "";
    int rc = shard_open_mem(&s, data, size, "in", err, sizeof err);
    if (rc) {
        FUZZ_CHECK(rc == AISLE_EFORMAT || rc == AISLE_ENOMEM, "rc %d", rc);
        FUZZ_CHECK(!strncmp(err, "in: offset ", 11) || rc == AISLE_ENOMEM, "message '%s'", err);
        return 0;
    }
    if (s->kind == SHARD_TOKENS) {
        FUZZ_CHECK(size == SHARD_HEADER_SIZE + 4 * s->n_tokens, "size %zu, %llu tokens", size,
                   (unsigned long long)s->n_tokens);
        FUZZ_CHECK(s->n_docs <= s->n_tokens, "docs");
        for (uint64_t i = 0; i < s->n_tokens; i++) {
            uint32_t v;
            memcpy(&v, (const uint8_t *)s->tokens + 4 * i, 4);
            FUZZ_CHECK(v < s->vocab_size, "token %llu = %u", (unsigned long long)i, v);
        }
    } else {
        FUZZ_CHECK(s->kind == SHARD_SFT, "kind %d", (int)s->kind);
        uint64_t total = 0;
        uint32_t mx = 0;
        int32_t *ids = malloc(((size_t)s->max_example + 1) * sizeof *ids);
        uint8_t *mask = malloc((size_t)s->max_example + 1);
        FUZZ_CHECK(ids && mask, "alloc");
        for (uint64_t i = 0; i < s->n_examples; i++) {
            uint32_t n = shard_example_len(s, i);
            FUZZ_CHECK(n >= 1 && n <= s->max_example, "example %llu length %u", (unsigned long long)i, n);
            shard_example_get(s, i, ids, mask);
            for (uint32_t j = 0; j < n; j++) {
                FUZZ_CHECK(ids[j] >= 0 && (uint32_t)ids[j] < s->vocab_size, "id");
                FUZZ_CHECK(mask[j] <= 1, "mask");
            }
            total += n;
            mx = n > mx ? n : mx;
        }
        FUZZ_CHECK(total == s->n_tokens && mx == s->max_example, "totals");
        free(ids);
        free(mask);
    }
    shard_close(s);
    return 0;
}
