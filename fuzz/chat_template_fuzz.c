/*
 * chat_template_fuzz.c — libFuzzer target for the chat-template interpreter
 * (src/tok/jinja.c): the input is an untrusted tokenizer.chat_template as a
 * GGUF brings it, rendered for a fixed four-message conversation with and
 * without the generation prompt.
 *
 * Invariants checked (abort on violation):
 *   - a render returns 0 or a negative code, and a message whenever it fails;
 *   - the output never exceeds the cap given (4 KiB here, so the cap's own
 *     path is exercised often);
 *   - rendering is deterministic: the same template and conversation give
 *     the same bytes and code twice.
 * ASan/UBSan and LeakSanitizer catch the rest (the arena is freed on every
 * path, the error unwinding included).
 */
#include "core/buf.h"
#include "tok/jinja.h"

#include "fuzz.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct tok_chat_msg conv[] = {
    {"system", "You are a shopping assistant."},
    {"user", " Do you have running shoes?  "},
    {"assistant", "Yes: the \"Trail 5\"."},
    {"user", "In size 10?\nThanks"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int agp = 0; agp < 2; agp++) {
        struct tok_jinja_opts o = {.bos_token = "<s>", .eos_token = "</s>", .add_generation_prompt = agp,
                                   .max_output = 4096};
        struct buf a, b;
        buf_init(&a, 0);
        buf_init(&b, 0);
        char err[256] = "", err2[256] = "";
        int rc = tok_jinja_render((const char *)data, size, conv, 4, &o, &a, err, sizeof(err));
        int rc2 = tok_jinja_render((const char *)data, size, conv, 4, &o, &b, err2, sizeof(err2));
        FUZZ_CHECK(rc <= 0, "positive return %d", rc);
        FUZZ_CHECK(rc == 0 || err[0], "failed (%d) without a message", rc);
        FUZZ_CHECK(a.len <= 4096, "output of %zu bytes past the 4096 cap", a.len);
        FUZZ_CHECK(rc == rc2 && a.len == b.len && (a.len == 0 || !memcmp(a.data, b.data, a.len)) && !strcmp(err, err2),
                   "two renders differ (%d/%d)", rc, rc2);
        buf_release(&a);
        buf_release(&b);
    }
    return 0;
}
