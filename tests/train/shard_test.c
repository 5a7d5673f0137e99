/*
 * shard_test.c — token and SFT shards: round trips through the writer and
 * the mmap reader, the exact bytes of the format, atomic writes, and every
 * kind of bad file (truncated, bad magic, version, reserved field, id >=
 * vocab, bad mask byte, trailing bytes) refused with the file name and the
 * byte offset in the message.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../testutil.h"
#include "core/error.h"
#include "train/shard.h"

static char errbuf[512];

/* The whole file at path, with its size. */
static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)len + 1);
    cr_assert_eq(fread(d, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return d;
}

static void write_token_shard(const char *path)
{
    struct shard_writer *w;
    cr_assert_eq(shard_writer_open(&w, path, SHARD_TOKENS, 100, 2, errbuf, sizeof errbuf), 0, "%s", errbuf);
    int32_t a[] = {5, 6, 7}, b[] = {99};
    cr_assert_eq(shard_writer_add_doc(w, a, 3), 0);
    cr_assert_eq(shard_writer_add_doc(w, b, 1), 0);
    cr_assert_eq(shard_writer_add_doc(w, NULL, 0), 0); /* an empty document is just EOS */
    int32_t bad[] = {100};
    cr_assert_eq(shard_writer_add_doc(w, bad, 1), AISLE_EINVAL);
    uint8_t m = 1;
    cr_assert_eq(shard_writer_add_example(w, a, &m, 1), AISLE_EINVAL, "wrong kind");
    cr_assert_eq(shard_writer_count(w), 3);
    cr_assert_eq(shard_writer_tokens(w), 7);
    cr_assert_eq(shard_writer_finish(w, errbuf, sizeof errbuf), 0, "%s", errbuf);
}

Test(train_shard, token_round_trip_and_bytes)
{
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "t.tok");
    write_token_shard(path);

    size_t n;
    uint8_t *d = slurp(path, &n);
    cr_assert_eq(n, 32 + 7 * 4);
    cr_assert(!memcmp(d, "AISLETOK", 8));
    uint32_t u;
    uint64_t q;
    memcpy(&u, d + 8, 4);
    cr_assert_eq(u, 1);
    memcpy(&u, d + 12, 4);
    cr_assert_eq(u, 100);
    memcpy(&q, d + 16, 8);
    cr_assert_eq(q, 7);
    memcpy(&u, d + 24, 4);
    cr_assert_eq(u, 3);
    memcpy(&u, d + 28, 4);
    cr_assert_eq(u, 0);
    free(d);

    struct shard *s;
    cr_assert_eq(shard_open(&s, path, errbuf, sizeof errbuf), 0, "%s", errbuf);
    cr_assert_eq(s->kind, SHARD_TOKENS);
    cr_assert_eq(s->vocab_size, 100);
    cr_assert_eq(s->n_tokens, 7);
    cr_assert_eq(s->n_docs, 3);
    uint32_t want[] = {5, 6, 7, 2, 99, 2, 2};
    for (int i = 0; i < 7; i++)
        cr_assert_eq(s->tokens[i], want[i], "token %d", i);
    shard_close(s);

    /* No temporary file is left beside it. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", dir);
    cr_assert_neq(system(cmd), 0, "a temporary file remained");
    free(path);
    tu_rmdir(dir);
}

Test(train_shard, sft_round_trip)
{
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "s.sft");
    struct shard_writer *w;
    cr_assert_eq(shard_writer_open(&w, path, SHARD_SFT, 50, -1, errbuf, sizeof errbuf), 0, "%s", errbuf);
    int32_t a[] = {1, 2, 3, 4, 5}, b[] = {49, 0, 7};
    uint8_t ma[] = {0, 0, 1, 1, 1}, mb[] = {0, 1, 1}, bad_mask[] = {0, 2, 1};
    cr_assert_eq(shard_writer_add_example(w, a, ma, 5), 0);
    cr_assert_eq(shard_writer_add_example(w, b, bad_mask, 3), AISLE_EINVAL, "mask byte 2");
    cr_assert_eq(shard_writer_add_example(w, b, mb, 0), AISLE_EINVAL, "empty example");
    cr_assert_eq(shard_writer_add_example(w, b, mb, 3), 0);
    cr_assert_eq(shard_writer_add_doc(w, a, 5), AISLE_EINVAL, "wrong kind");
    cr_assert_eq(shard_writer_finish(w, errbuf, sizeof errbuf), 0, "%s", errbuf);

    struct shard *s;
    cr_assert_eq(shard_open(&s, path, errbuf, sizeof errbuf), 0, "%s", errbuf);
    cr_assert_eq(s->kind, SHARD_SFT);
    cr_assert_eq(s->n_examples, 2);
    cr_assert_eq(s->n_tokens, 8);
    cr_assert_eq(s->max_example, 5);
    cr_assert_eq(shard_example_len(s, 0), 5);
    cr_assert_eq(shard_example_len(s, 1), 3);
    int32_t ids[5];
    uint8_t mk[5];
    shard_example_get(s, 0, ids, mk);
    cr_assert(!memcmp(ids, a, sizeof a) && !memcmp(mk, ma, sizeof ma));
    shard_example_get(s, 1, ids, mk); /* unaligned: 32 + 4 + 25 = offset 61 */
    cr_assert(!memcmp(ids, b, sizeof b) && !memcmp(mk, mb, sizeof mb));
    shard_close(s);
    free(path);
    tu_rmdir(dir);
}

/* Opening d (n bytes) fails with AISLE_EFORMAT and a message naming "name"
 * and "offset off" and containing what. */
static void expect_bad(const uint8_t *d, size_t n, unsigned long long off, const char *what)
{
    struct shard *s = NULL;
    errbuf[0] = 0;
    int rc = shard_open_mem(&s, d, n, "x.shard", errbuf, sizeof errbuf);
    cr_assert_eq(rc, AISLE_EFORMAT, "accepted (%s): %s", what, errbuf);
    char want[64];
    snprintf(want, sizeof want, "x.shard: offset %llu: ", off);
    cr_assert(!strncmp(errbuf, want, strlen(want)), "message '%s' lacks '%s'", errbuf, want);
    cr_assert_not_null(strstr(errbuf, what), "message '%s' lacks '%s'", errbuf, what);
}

Test(train_shard, bad_token_shards)
{
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "t.tok");
    write_token_shard(path);
    size_t n;
    uint8_t *good = slurp(path, &n), *d = malloc(n + 8);

    for (size_t cut = 0; cut < 32; cut++) /* truncated header */
        expect_bad(good, cut, cut, "shorter than");
    memcpy(d, good, n); /* truncated data */
    expect_bad(d, n - 1, 16, "remain");
    memcpy(d, good, n);
    d[3] = 'X';
    expect_bad(d, n, 0, "bad magic");
    memcpy(d, good, n);
    d[8] = 2;
    expect_bad(d, n, 8, "version");
    memcpy(d, good, n);
    memset(d + 12, 0, 4);
    expect_bad(d, n, 12, "vocab_size");
    memcpy(d, good, n);
    d[28] = 1;
    expect_bad(d, n, 28, "reserved");
    memcpy(d, good, n);
    d[24] = 200;
    expect_bad(d, n, 24, "n_docs");
    memcpy(d, good, n);
    uint32_t big = 100; /* = vocab_size: out of range */
    memcpy(d + 32 + 4 * 5, &big, 4);
    expect_bad(d, n, 32 + 4 * 5, "id 100 >= vocab_size 100");
    memcpy(d, good, n);
    memset(d + n, 0, 4);
    expect_bad(d, n + 4, n, "trailing");
    memcpy(d, good, n);
    memset(d + 16, 0xff, 8); /* n_tokens huge: no overflow in the size check */
    expect_bad(d, n, 16, "remain");

    /* Through the file path: the message names the file. */
    FILE *f = fopen(path, "r+b");
    fseek(f, 32 + 4, SEEK_SET);
    fwrite(&big, 4, 1, f);
    fclose(f);
    struct shard *s;
    cr_assert_eq(shard_open(&s, path, errbuf, sizeof errbuf), AISLE_EFORMAT);
    cr_assert_not_null(strstr(errbuf, path), "%s", errbuf);
    cr_assert_not_null(strstr(errbuf, "offset 36"), "%s", errbuf);
    char *missing = tu_path(dir, "none.tok");
    cr_assert_eq(shard_open(&s, missing, errbuf, sizeof errbuf), AISLE_EIO);
    cr_assert_not_null(strstr(errbuf, missing), "%s", errbuf);
    free(missing);
    free(good);
    free(d);
    free(path);
    tu_rmdir(dir);
}

Test(train_shard, bad_sft_shards)
{
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "s.sft");
    struct shard_writer *w;
    cr_assert_eq(shard_writer_open(&w, path, SHARD_SFT, 50, -1, errbuf, sizeof errbuf), 0, "%s", errbuf);
    int32_t a[] = {1, 2, 3}, b[] = {4, 5};
    uint8_t ma[] = {0, 1, 1}, mb[] = {1, 1};
    cr_assert_eq(shard_writer_add_example(w, a, ma, 3), 0);
    cr_assert_eq(shard_writer_add_example(w, b, mb, 2), 0);
    cr_assert_eq(shard_writer_finish(w, errbuf, sizeof errbuf), 0, "%s", errbuf);
    size_t n;
    uint8_t *good = slurp(path, &n), *d = malloc(n + 8);
    cr_assert_eq(n, 32 + 4 + 15 + 4 + 10);

    memcpy(d, good, n);
    expect_bad(d, n - 1, 51, "remain"); /* the second example is cut short */
    expect_bad(d, 53, 51, "length field past the end");
    memcpy(d, good, n);
    memset(d + 24, 1, 1);
    expect_bad(d, n, 24, "reserved");
    memcpy(d, good, n);
    memset(d + 32, 0, 4);
    expect_bad(d, n, 32, "length 0");
    memcpy(d, good, n);
    uint32_t big = 50;
    memcpy(d + 32 + 4 + 8, &big, 4);
    expect_bad(d, n, 44, "id 50 >= vocab_size 50");
    memcpy(d, good, n);
    d[32 + 4 + 12 + 1] = 7;
    expect_bad(d, n, 49, "mask byte 1 is 7");
    memcpy(d, good, n);
    d[16] = 4; /* 4 examples need at least 36 bytes; 33 remain */
    expect_bad(d, n, 16, "cannot fit");
    memcpy(d, good, n);
    memset(d + n, 0, 4);
    expect_bad(d, n + 4, n, "trailing");
    memcpy(d, good, n);
    memcpy(d, "AISLEXXX", 8);
    expect_bad(d, n, 0, "bad magic");
    free(good);
    free(d);
    free(path);
    tu_rmdir(dir);
}

Test(train_shard, abandoned_writer_leaves_nothing)
{
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "a.tok");
    tu_write_str(path, "old");
    struct shard_writer *w;
    cr_assert_eq(shard_writer_open(&w, path, SHARD_TOKENS, 10, 0, errbuf, sizeof errbuf), 0, "%s", errbuf);
    int32_t a[] = {1, 2};
    cr_assert_eq(shard_writer_add_doc(w, a, 2), 0);
    shard_writer_free(w);
    size_t n;
    uint8_t *d = slurp(path, &n);
    cr_assert(n == 3 && !memcmp(d, "old", 3), "the target changed before finish");
    free(d);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 1", dir);
    cr_assert_eq(system(cmd), 0, "a temporary file remained");
    cr_assert_eq(shard_writer_open(&w, path, SHARD_TOKENS, 10, 10, errbuf, sizeof errbuf), AISLE_EINVAL,
                 "eos >= vocab");
    cr_assert_eq(shard_writer_open(&w, "/nonexistent-dir/x.tok", SHARD_TOKENS, 10, 0, errbuf, sizeof errbuf),
                 AISLE_EIO);
    cr_assert_not_null(strstr(errbuf, "/nonexistent-dir/x.tok"), "%s", errbuf);
    free(path);
    tu_rmdir(dir);
}
