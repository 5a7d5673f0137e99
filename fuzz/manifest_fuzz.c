/*
 * manifest_fuzz.c — libFuzzer target for the corpus manifest parser
 * (corpus_manifest_parse), the JSON that `aisle train` reads from a corpus
 * directory.
 *
 * On rejection the error text names the input. On acceptance: 1..32 sources
 * with valid, distinct names; every split has 1..CORPUS_MAX_FILES file names,
 * none with a '/' or equal to "." or "..", so no name can leave the corpus
 * directory; the tokenizer file name is plain too; eos < vocab_size.
 */
#include "core/error.h"
#include "train/corpus.h"

#include "fuzz.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void plain(const char *s)
{
    FUZZ_CHECK(s && *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, ".."), "file name '%s'", s ? s : "(null)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct corpus_manifest *m = NULL;
    char err[256] = "";
    int rc = corpus_manifest_parse(&m, (const char *)data, size, "in", err, sizeof err);
    if (rc) {
        FUZZ_CHECK(rc == AISLE_EFORMAT || rc == AISLE_ENOMEM, "rc %d", rc);
        FUZZ_CHECK(!strncmp(err, "in: ", 4), "message '%s'", err);
        return 0;
    }
    FUZZ_CHECK(m->n_sources >= 1 && m->n_sources <= CORPUS_MAX_SOURCES, "sources %d", m->n_sources);
    FUZZ_CHECK(m->eos >= 0 && (uint32_t)m->eos < m->vocab_size, "eos");
    plain(m->tokenizer);
    for (int i = 0; i < m->n_sources; i++) {
        FUZZ_CHECK(corpus_name_ok(m->sources[i].name), "name");
        for (int j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(m->sources[i].name, m->sources[j].name), "repeated name");
        const struct corpus_split *sp[2] = {&m->sources[i].train, &m->sources[i].val};
        for (int k = 0; k < 2; k++) {
            FUZZ_CHECK(sp[k]->n_files >= 1 && sp[k]->n_files <= CORPUS_MAX_FILES, "files");
            for (int f = 0; f < sp[k]->n_files; f++)
                plain(sp[k]->files[f]);
        }
    }
    corpus_manifest_free(m);
    return 0;
}
