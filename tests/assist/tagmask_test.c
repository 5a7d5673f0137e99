/*
 * tagmask_test.c — the tag-id constraint (assist/tagmask.h) on a real
 * byte-level tokenizer (tests/server/tinymodel.h's): which tokens it allows
 * in text, in a tag's opening, inside an id, at its end and in a compare.
 */
#include <criterion/criterion.h>

#include "assist/tagmask.h"
#include "core/error.h"
#include "model/model.h"
#include "../testutil.h"
#include "../server/tinymodel.h"

#include <math.h>

static char *dir;
static struct tok *tk;
static struct tagmask_vocab *tv;
static float logits[512];

static void setup(void)
{
    dir = tu_tmpdir();
    char *mp = tu_path(dir, "tiny.gguf");
    struct tiny_spec ts = {.dim = 32, .layers = 1, .heads = 2, .kv_heads = 2, .ff = 64, .vocab = 512, .ctx = 64,
                           .wtype = GGML_TYPE_F32, .seed = 3};
    cr_assert_eq(tiny_model_write(mp, &ts), 0);
    struct gguf *g;
    char err[256];
    cr_assert_eq(gguf_open(&g, mp, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tok_load_gguf(&tk, g, err, sizeof(err)), 0, "%s", err);
    gguf_close(g);
    free(mp);
    cr_assert_eq(tagmask_vocab_new(&tv, tk), 0);
}

static void teardown(void)
{
    tagmask_vocab_free(tv);
    tok_free(tk);
    tu_rmdir(dir);
}

static int32_t byte_tok(char c)
{
    struct tok_ids ids;
    tok_ids_init(&ids, 0);
    cr_assert_eq(tok_encode(tk, NULL, &c, 1, 0, &ids), 0);
    cr_assert_eq(ids.len, 1);
    int32_t t = ids.ids[0];
    tok_ids_release(&ids);
    return t;
}

static void feed(struct tagmask *m, const char *s)
{
    for (; *s; s++)
        tagmask_accept(m, byte_tok(*s));
}

/* Is the token of byte c allowed now? */
static int allowed(struct tagmask *m, char c)
{
    for (int i = 0; i < 512; i++)
        logits[i] = 0;
    tagmask_apply(m, logits, 512);
    return logits[byte_tok(c)] == 0;
}

static int n_allowed(struct tagmask *m)
{
    for (int i = 0; i < 512; i++)
        logits[i] = 0;
    tagmask_apply(m, logits, 512);
    int n = 0;
    for (int i = 0; i < 512; i++)
        n += logits[i] == 0;
    return n;
}

Test(tagmask, ids_only_from_the_evidence, .init = setup, .fini = teardown)
{
    const char *ids[] = {"B000AAA111", "B000ABC222"};
    struct tagmask *m;
    cr_assert_eq(tagmask_new(&m, tv, ids, 2), 0);
    cr_assert_eq(n_allowed(m), 512, "text: nothing masked");
    feed(m, "Try <product id=\"B000A");
    cr_assert(tagmask_in_tag(m));
    cr_assert(allowed(m, 'A') && allowed(m, 'B'), "both ids continue");
    cr_assert(!allowed(m, 'X') && !allowed(m, '"') && !allowed(m, ' '), "nothing else");
    cr_assert_eq(n_allowed(m), 2, "exactly the two continuing bytes (no control token, no EOG)");
    feed(m, "BC222");
    cr_assert(allowed(m, '"'));
    cr_assert_eq(n_allowed(m), 1, "a whole id: only the closing quote");
    feed(m, "\"");
    cr_assert(allowed(m, '/') && !allowed(m, '>'));
    feed(m, "/>");
    cr_assert(!tagmask_in_tag(m));
    cr_assert_eq(n_allowed(m), 512, "back in text");
    tagmask_unref(m);
}

Test(tagmask, compare_needs_two_known_ids_and_text_tags_are_free, .init = setup, .fini = teardown)
{
    const char *ids[] = {"P1", "P2"};
    struct tagmask *m;
    cr_assert_eq(tagmask_new(&m, tv, ids, 2), 0);
    feed(m, "a < b and <compare ids=\"P1");
    cr_assert(!allowed(m, '"'), "one id is not a comparison");
    cr_assert(allowed(m, ','));
    feed(m, ",P2");
    cr_assert(allowed(m, '"') && allowed(m, ','));
    feed(m, "\"/>");
    cr_assert(!tagmask_in_tag(m));
    feed(m, "<pr");
    cr_assert(allowed(m, 'o') && allowed(m, 'i'), "product or price");
    feed(m, "ice id=\"");
    cr_assert(allowed(m, 'P') && !allowed(m, 'Q'));
    tagmask_unref(m);

    struct tagmask *none;
    cr_assert_eq(tagmask_new(&none, tv, NULL, 0), 0);
    feed(none, "<product id=");
    cr_assert(!allowed(none, '"'), "no products: a tag cannot be opened");
    cr_assert(allowed(none, 'x'), "but the text can go on");
    tagmask_unref(none);
}
