/*
 * pref_fuzz.c — libFuzzer target for the preference rows that aisle train
 * --prefs reads (pref_load_stream in src/train/pref.c): `aisle feedback
 * export` JSON Lines, whose prompts and completions hold whatever shoppers
 * typed and the model wrote, tokenized with a byte-level BPE trained once at
 * start-up (it has the chat's special tokens).
 *
 * Invariants checked (abort on violation): the result is 0, AISLE_EFORMAT or
 * AISLE_EINVAL with a message, or AISLE_ENOMEM; on success at least one
 * example, every example two sequences of 2..max_len tokens inside the
 * vocabulary, each with a prompt token before its first completion token and
 * at least one completion token, offsets increasing, KTO labels counted.
 * ASan/UBSan and LeakSanitizer catch the rest.
 */
#include "core/error.h"
#include "tok/tok.h"
#include "tok/train.h"
#include "train/pref.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct tok *bpe;

static const char training_text[] =
    "<|user|>\nWill this crisper drawer fit my Frigidaire? It's 30\" wide.<|end|>\n<|assistant|>\n"
    "Yes, reviewers say it fits [1]. <product id=\"B00000JBNX\"/>\n{\"prompt\": \"p\", \"chosen\": \"a\", "
    "\"rejected\": \"b\", \"completion\": \"c\", \"label\": true}\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char err[256];
    struct tok_trainer *tr;
    FUZZ_CHECK(tok_trainer_new(&tr, err, sizeof(err)) == 0, "%s", err);
    for (int i = 0; i < 4; i++)
        FUZZ_CHECK(tok_trainer_feed(tr, training_text, sizeof(training_text) - 1) == 0, "feed");
    FUZZ_CHECK(tok_trainer_train(tr, 300, NULL, NULL, &bpe, err, sizeof(err)) == 0, "%s", err);
    tok_trainer_free(tr);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!bpe)
        LLVMFuzzerInitialize(NULL, NULL);
    static char nl[] = "\n"; /* fmemopen needs a size of at least 1 */
    FILE *f = size ? fmemopen((void *)data, size, "rb") : fmemopen(nl, 1, "rb");
    if (!f)
        return 0;
    enum { MAX_LEN = 48 };
    struct pref_set s;
    char err[512] = "";
    int rc = pref_load_stream(&s, f, "fuzz.jsonl", bpe, MAX_LEN, err, sizeof err);
    fclose(f);
    FUZZ_CHECK(rc == 0 || rc == AISLE_EFORMAT || rc == AISLE_EINVAL || rc == AISLE_ENOMEM, "rc %d", rc);
    if (rc) {
        FUZZ_CHECK(err[0], "an error without a message");
        return 0;
    }
    FUZZ_CHECK(s.n >= 1 && (s.kind == PREF_DPO || s.kind == PREF_KTO), "n %zu kind %d", s.n, (int)s.kind);
    FUZZ_CHECK(s.off[0] == 0, "first offset %zu", s.off[0]);
    size_t up = 0;
    for (size_t i = 0; i < 2 * s.n; i++) {
        int L = pref_seq_len(&s, i);
        FUZZ_CHECK(L >= 2 && L <= MAX_LEN, "sequence %zu of %d tokens", i, L);
        FUZZ_CHECK(s.start[i] >= 1 && s.start[i] < L, "sequence %zu: completion at %d of %d", i, s.start[i], L);
        for (int t = 0; t < L; t++)
            FUZZ_CHECK(s.ids[s.off[i] + (size_t)t] >= 0 && (size_t)s.ids[s.off[i] + (size_t)t] < tok_n_vocab(bpe),
                       "token %d", s.ids[s.off[i] + (size_t)t]);
    }
    for (size_t i = 0; i < s.n; i++)
        up += s.label[i] == 1;
    if (s.kind == PREF_KTO)
        FUZZ_CHECK(s.n_up == up && s.n_up + s.n_down == s.n, "labels %zu + %zu of %zu", s.n_up, s.n_down, s.n);
    pref_free(&s);
    return 0;
}
