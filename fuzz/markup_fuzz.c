/*
 * markup_fuzz.c — libFuzzer target for the assistant's markup parser (the
 * model's output, untrusted: markup_feed/markup_finish) and for the evidence
 * sanitiser of the prompt builder (passage text from store data).
 *
 * The input is the model output, any bytes. It is parsed whole, then again fed
 * in chunks whose sizes come from a hash of the input (so a run is
 * deterministic). The same bytes are also used as an evidence passage and a
 * question for prompt_build without a tokenizer.
 *
 * Invariants checked (abort on violation, as a crash):
 *   - pieces tile the input: offsets are contiguous and the pieces' bytes,
 *     concatenated, equal the input;
 *   - the chunked parse gives the same sequence of non-text pieces and the same
 *     text bytes between them as the whole parse;
 *   - a TAG piece's raw bytes are exactly the canonical form rebuilt from its
 *     name and ids; a CITE is in 1..max_cite; an ERROR has a message;
 *   - a TEXT piece that is valid UTF-8 in the input is never split inside a
 *     character (checked: text pieces of valid input are valid UTF-8);
 *   - prompt_build succeeds, its text is valid UTF-8, and the evidence line is
 *     a single line.
 */
#include "assist/prompt.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/hset.h"
#include "core/utf8.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rec {
    struct buf sig;  /* non-text pieces and text, in a comparable form */
    struct buf cat;  /* pieces' bytes concatenated */
    uint64_t next;
    int valid_input;
    unsigned max_cite;
};

static int rec_cb(void *ud, const struct markup_piece *pc)
{
    struct rec *r = ud;
    FUZZ_CHECK(pc->offset == r->next, "piece at %llu, expected %llu", (unsigned long long)pc->offset,
               (unsigned long long)r->next);
    FUZZ_CHECK(pc->len > 0, "empty piece");
    r->next += pc->len;
    FUZZ_CHECK(buf_append(&r->cat, pc->raw, pc->len) == 0, "oom");
    switch (pc->kind) {
    case MARKUP_TEXT:
        FUZZ_CHECK(!r->valid_input || utf8_valid(pc->raw, pc->len), "text piece splits a character");
        FUZZ_CHECK(buf_append(&r->sig, pc->raw, pc->len) == 0, "oom");
        break;
    case MARKUP_TAG: {
        struct buf canon;
        buf_init(&canon, 0);
        const char *name = markup_tag_name(pc->tag);
        FUZZ_CHECK(name, "tag %d has no name", (int)pc->tag);
        FUZZ_CHECK(pc->n_ids >= 1 && pc->n_ids <= MARKUP_MAX_IDS, "%zu ids", pc->n_ids);
        FUZZ_CHECK(pc->tag == MARKUP_COMPARE ? pc->n_ids >= 2 : pc->n_ids == 1, "%zu ids for %s", pc->n_ids, name);
        buf_printf(&canon, "<%s %s=\"", name, pc->tag == MARKUP_COMPARE ? "ids" : "id");
        for (size_t i = 0; i < pc->n_ids; i++) {
            FUZZ_CHECK(pc->id_lens[i] >= 1 && pc->id_lens[i] <= MARKUP_MAX_ID_LEN, "id length %zu", pc->id_lens[i]);
            buf_printf(&canon, "%s%.*s", i ? "," : "", (int)pc->id_lens[i], pc->ids[i]);
        }
        buf_puts(&canon, "\"/>");
        FUZZ_CHECK(canon.len == pc->len && !memcmp(canon.data, pc->raw, pc->len), "tag not canonical");
        buf_release(&canon);
        buf_printf(&r->sig, "\x01T%zu", pc->len);
        break;
    }
    case MARKUP_CITE:
        FUZZ_CHECK(pc->cite >= 1 && pc->cite <= r->max_cite, "citation %u", pc->cite);
        buf_printf(&r->sig, "\x01" "C%u", pc->cite);
        break;
    case MARKUP_ERROR:
        FUZZ_CHECK(pc->error && pc->error[0], "error without a message");
        FUZZ_CHECK(pc->len <= MARKUP_MAX_PENDING + 1, "error piece of %zu bytes", pc->len);
        buf_printf(&r->sig, "\x01" "E%zu", pc->len);
        break;
    default:
        FUZZ_CHECK(0, "piece kind %d", (int)pc->kind);
    }
    return 0;
}

static void run(const uint8_t *data, size_t size, unsigned max_cite, uint64_t h, struct rec *r)
{
    struct markup m;
    buf_init(&r->sig, 0);
    buf_init(&r->cat, 0);
    r->next = 0;
    r->max_cite = max_cite ? max_cite : MARKUP_MAX_CITE;
    r->valid_input = utf8_valid((const char *)data, size);
    markup_init(&m, max_cite);
    size_t o = 0;
    while (o < size) {
        size_t k = h ? 1 + (size_t)(h % 17) : size - o;
        if (k > size - o)
            k = size - o;
        FUZZ_CHECK(markup_feed(&m, (const char *)data + o, k, rec_cb, r) == 0, "feed failed");
        o += k;
        if (h)
            h = h * 6364136223846793005ull + 1442695040888963407ull + 1;
    }
    FUZZ_CHECK(markup_finish(&m, rec_cb, r) == 0, "finish failed");
    FUZZ_CHECK(r->next == size, "pieces cover %llu of %zu bytes", (unsigned long long)r->next, size);
    FUZZ_CHECK(r->cat.len == size && (!size || !memcmp(r->cat.data, data, size)), "pieces do not tile the input");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    unsigned max_cite = size ? data[0] % 8 : 0;
    uint64_t h = hset_hash(HSET_FNV_SEED, data, size) | 1;
    struct rec whole, chunked;
    run(data, size, max_cite, 0, &whole);
    run(data, size, max_cite, h, &chunked);
    FUZZ_CHECK(whole.sig.len == chunked.sig.len && (!whole.sig.len || !memcmp(whole.sig.data, chunked.sig.data,
                                                                              whole.sig.len)),
               "chunked parse differs from the whole parse");
    buf_release(&whole.sig);
    buf_release(&whole.cat);
    buf_release(&chunked.sig);
    buf_release(&chunked.cat);

    /* the same bytes as passage text, product id and question */
    char *s = malloc(size + 1);
    FUZZ_CHECK(s, "oom");
    memcpy(s, data, size);
    s[size] = '\0';
    struct prompt_passage ev[] = {{.source = s, .product_id = s, .as_of = s, .stale = 1, .text = s}};
    struct prompt_turn turns[] = {{PROMPT_USER, s}, {PROMPT_ASSISTANT, s}};
    struct prompt_input in = {NULL, ev, 1, turns, 2};
    struct prompt_opts o = {.max_passage_bytes = 1 + size % 300};
    struct prompt p;
    prompt_init(&p);
    int rc = prompt_build(&p, &in, &o, NULL, NULL);
    FUZZ_CHECK(rc == 0, "prompt_build: %s", p.err);
    FUZZ_CHECK(utf8_valid(p.text.data, p.text.len), "prompt text is not valid UTF-8");
    const char *line = strstr(p.text.data, "\n[1] (");
    FUZZ_CHECK(line, "no evidence line");
    const char *end = strstr(line, "<|end|>\n<|user|>\n");
    FUZZ_CHECK(end, "no end of the system message");
    FUZZ_CHECK(!memchr(line + 1, '\n', (size_t)(end - line - 1)), "evidence line spans lines");
    prompt_release(&p);
    free(s);
    return 0;
}
