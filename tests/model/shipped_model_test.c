/*
 * shipped_model_test.c — the default shopping model in models/ (docs/MODEL.md)
 * is a trained Llama GGUF that the engine loads and runs: its metadata is the
 * card's, its perplexity on shopping text is far below the ~8,192 of an
 * untrained model of its vocabulary (56 when written; the bound 1,000 leaves
 * room for retraining, and a corrupt, truncated or placeholder file fails it),
 * and greedy chat generation is deterministic.
 */
#include <criterion/criterion.h>

#include "../testutil.h"

#include <stdlib.h>
#include <string.h>

#define MODEL "models/aisle-shopping-small.gguf"

static const char text[] =
    "Question: Will this fit my Frigidaire refrigerator? Answer: Yes, it fits the Frigidaire model I "
    "have and the crisper drawer slides in easily. Question: Does it come with batteries? Answer: No, "
    "you need to buy four AA batteries separately. I bought this for my daughter and she loves it. The "
    "quality is great for the price and it arrived quickly. The color is exactly as shown in the "
    "picture, and the size is perfect for a small kitchen. Easy to clean and works well.\n";

Test(shipped_model, metadata_matches_the_model_card)
{
    char *out = NULL;
    int st = tu_run(&out, "'%s' model info '%s/" MODEL "'", tu_aisle(), tu_root());
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_not_null(strstr(out, "\"llama\""), "%s", out);
    cr_assert_not_null(strstr(out, "\"aisle-shopping-small\""), "%s", out);
    cr_assert_not_null(strstr(out, "llama.context_length                   u32              1024"), "%s", out);
    cr_assert_not_null(strstr(out, "llama.vocab_size                       u32              8192"), "%s", out);
    /* the shape of scripts/default-model.conf and docs/MODEL.md (v2: C 192 x 6, 3 heads, FFN 512) */
    cr_assert_not_null(strstr(out, "llama.embedding_length                 u32              192"), "%s", out);
    cr_assert_not_null(strstr(out, "llama.block_count                      u32              6"), "%s", out);
    cr_assert_not_null(strstr(out, "llama.attention.head_count             u32              3"), "%s", out);
    cr_assert_not_null(strstr(out, "llama.feed_forward_length              u32              512"), "%s", out);
    cr_assert_not_null(strstr(out, "tokenizer.chat_template"), "%s", out);
    free(out);
}

Test(shipped_model, is_trained_perplexity_far_below_uniform)
{
    char *dir = tu_tmpdir(), *path = tu_path(dir, "text.txt"), *out = NULL;
    tu_write_str(path, text);
    int st = tu_run(&out, "'%s' perplexity --model '%s/" MODEL "' --ctx 64 '%s'", tu_aisle(), tu_root(), path);
    cr_assert_eq(st, 0, "%s", out);
    const char *p = strstr(out, "ppl ");
    cr_assert_not_null(p, "%s", out);
    double ppl = strtod(p + 4, NULL);
    cr_assert(ppl > 1.0 && ppl < 1000.0, "perplexity %g: %s", ppl, out);
    free(out);
    free(path);
    tu_rmdir(dir);
}

Test(shipped_model, greedy_chat_is_deterministic)
{
    char *a = NULL, *b = NULL;
    const char *fmt = "'%s' generate --model '%s/" MODEL "' --chat -n 24 --temp 0 'does this blender crush ice?' 2>/dev/null";
    cr_assert_eq(tu_run(&a, fmt, tu_aisle(), tu_root()), 0, "%s", a);
    cr_assert_eq(tu_run(&b, fmt, tu_aisle(), tu_root()), 0, "%s", b);
    cr_assert(strlen(a) > 0, "no output");
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
}
