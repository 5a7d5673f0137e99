/* cli_test.c — `aisle tokenizer train`, `aisle tokenize`, `aisle detokenize`
 * end to end through the program (AISLE_BIN): inputs of each kind, --field,
 * a round trip through ids, special-token parsing, and usage errors. */
#include <criterion/criterion.h>

#include "../testutil.h"

/* Train a small vocabulary from a text file and a gzip'd JSON Lines file whose
 * "text" fields repeat "zzzz" and whose "other" fields repeat "qqqq". */
static char *train(const char *dir, const char *extra)
{
    char *txt = tu_path(dir, "a.txt"), *jsonl = tu_path(dir, "b.jsonl.gz"), *out = tu_path(dir, "t.gguf");
    tu_write_str(txt, "Will this crisper drawer fit my fridge?\nIt's 30\" wide; caf\xc3\xa9 cr\xc3\xa8me.\n");
    char rec[4096];
    size_t o = 0;
    for (int i = 0; i < 40; i++)
        o += (size_t)snprintf(rec + o, sizeof(rec) - o, "{\"text\":\"zzzz zzzz fits\",\"other\":\"qqqq qqqq\"}\n");
    tu_write(jsonl, rec, o);
    char *res;
    int rc = tu_run(&res, "'%s' tokenizer train --vocab 300 --out '%s' %s '%s' '%s'", tu_aisle(), out, extra, txt,
                    jsonl);
    cr_assert_eq(rc, 0, "%s", res);
    cr_assert(strstr(res, "wrote"), "%s", res);
    free(res);
    free(txt);
    free(jsonl);
    return out;
}

/* Number of tokens `aisle tokenize` prints for text. */
static int count_tokens(const char *model, const char *text)
{
    char *res;
    cr_assert_eq(tu_run(&res, "'%s' tokenize --ids --model '%s' '%s'", tu_aisle(), model, text), 0);
    int n = 0;
    for (char *p = strtok(res, " \n"); p; p = strtok(NULL, " \n"))
        n++;
    free(res);
    return n;
}

Test(tok_cli, train_tokenize_detokenize_round_trip)
{
    char *dir = tu_tmpdir();
    char *model = train(dir, "");
    char *ids, *text;
    cr_assert_eq(tu_run(&ids, "'%s' tokenize --ids --model '%s' 'Will it fit? caf\xc3\xa9 \\o/'", tu_aisle(), model), 0);
    ids[strcspn(ids, "\n")] = '\0';
    cr_assert_eq(tu_run(&text, "'%s' detokenize --model '%s' %s", tu_aisle(), model, ids), 0, "%s", text);
    cr_assert_str_eq(text, "Will it fit? caf\xc3\xa9 \\o/\n");
    free(ids);
    free(text);
    /* pieces, with the special token parsed by default and not with --no-parse-special */
    cr_assert_eq(tu_run(&text, "'%s' tokenize --model '%s' '<|user|>hi'", tu_aisle(), model), 0);
    cr_assert(strstr(text, "'<|user|>'"), "%s", text);
    free(text);
    cr_assert_eq(tu_run(&text, "'%s' tokenize --no-parse-special --model '%s' '<|user|>hi'", tu_aisle(), model), 0);
    cr_assert_null(strstr(text, "'<|user|>'"), "%s", text);
    free(text);
    /* detokenize renders control tokens only with --special; stdin input works */
    cr_assert_eq(tu_run(&text, "'%s' tokenize --ids --model '%s' '<|end|>' | '%s' detokenize --special --model '%s'",
                        tu_aisle(), model, tu_aisle(), model), 0);
    cr_assert_str_eq(text, "<|end|>\n");
    free(text);
    free(model);
    tu_rmdir(dir);
}

Test(tok_cli, lines_and_escapes)
{
    /* --lines: one line of ids per input line; --escape: \t \n \xHH \\ are bytes */
    char *dir = tu_tmpdir();
    char *model = train(dir, "");
    char *in = tu_path(dir, "in.txt"), *lines, *one, *two, *raw;
    tu_write_str(in, "fit\\tmy\\nfridge \\x41\\\\\n\ncaf\xc3\xa9\n");
    cr_assert_eq(tu_run(&lines, "'%s' tokenize --lines --escape --model '%s' < '%s'", tu_aisle(), model, in), 0);
    cr_assert_eq(tu_run(&one, "'%s' tokenize --ids --model '%s' \"$(printf 'fit\\tmy\\nfridge A\\\\')\"", tu_aisle(),
                        model),
                 0);
    cr_assert_eq(tu_run(&two, "'%s' tokenize --ids --model '%s' 'caf\xc3\xa9'", tu_aisle(), model), 0);
    char want[1024];
    snprintf(want, sizeof(want), "%s\n%s", one, two); /* the empty line gives an empty line */
    cr_assert_str_eq(lines, want);
    /* without --escape the backslashes are text */
    cr_assert_eq(tu_run(&raw, "'%s' tokenize --lines --model '%s' < '%s'", tu_aisle(), model, in), 0);
    cr_assert_str_neq(raw, lines);
    int nl = 0;
    for (const char *c = raw; *c; c++)
        nl += *c == '\n';
    cr_assert_eq(nl, 3, "%s", raw);
    free(lines);
    free(one);
    free(two);
    free(raw);
    free(in);
    free(model);
    tu_rmdir(dir);
}

Test(tok_cli, field_picks_json_strings)
{
    char *dir = tu_tmpdir();
    char *all = train(dir, "");
    int z_all = count_tokens(all, "zzzz"), q_all = count_tokens(all, "qqqq");
    cr_assert_leq(z_all, 2, "zzzz is frequent in every field");
    cr_assert_leq(q_all, 2);
    free(all);
    char *only = train(dir, "--field text");
    cr_assert_leq(count_tokens(only, "zzzz"), 2);
    cr_assert_eq(count_tokens(only, "qqqq"), 4, "the other field was not read: q stays unmerged");
    free(only);
    tu_rmdir(dir);
}

Test(tok_cli, reads_a_whole_json_document)
{
    /* a pretty-printed document (not JSON Lines): its strings are the text */
    char *dir = tu_tmpdir();
    char *doc = tu_path(dir, "d.json.gz"), *model = tu_path(dir, "d.gguf"), *res;
    char json[8192];
    size_t o = (size_t)snprintf(json, sizeof(json), "{\n  \"items\": [\n");
    for (int i = 0; i < 60; i++)
        o += (size_t)snprintf(json + o, sizeof(json) - o, "    {\"text\": \"kkkk kkkk\", \"n\": %d}%s\n", i,
                              i < 59 ? "," : "");
    o += (size_t)snprintf(json + o, sizeof(json) - o, "  ]\n}\n");
    tu_write(doc, json, o);
    cr_assert_eq(tu_run(&res, "'%s' tokenizer train --vocab 300 --out '%s' '%s'", tu_aisle(), model, doc), 0, "%s", res);
    cr_assert_null(strstr(res, "skipped"), "%s", res);
    free(res);
    cr_assert_leq(count_tokens(model, "kkkk"), 2);
    free(doc);
    free(model);
    tu_rmdir(dir);
}

Test(tok_cli, trains_from_a_store)
{
    char *dir = tu_tmpdir();
    char *db = tu_path(dir, "s.db"), *model = tu_path(dir, "s.gguf"), *res;
    const char *root = tu_root();
    cr_assert_eq(tu_run(&res, "'%s' ingest --db '%s' --products '%s/data/demo-store/products.jsonl.gz' --qa "
                              "'%s/data/demo-store/qa.jsonl.gz'",
                        tu_aisle(), db, root, root),
                 0, "%s", res);
    free(res);
    cr_assert_eq(tu_run(&res, "'%s' tokenizer train --vocab 1000 --out '%s' --db '%s'", tu_aisle(), model, db), 0, "%s",
                 res);
    cr_assert(strstr(res, "1000 tokens"), "%s", res);
    free(res);
    /* words of the catalog became single tokens */
    cr_assert_eq(count_tokens(model, " the"), 1);
    free(db);
    free(model);
    tu_rmdir(dir);
}

Test(tok_cli, usage_errors)
{
    char *res;
    cr_assert_eq(tu_run(&res, "'%s' tokenizer train --vocab 100 --out /tmp/x.gguf x", tu_aisle()), 2);
    cr_assert(strstr(res, "--vocab"), "%s", res);
    free(res);
    cr_assert_eq(tu_run(&res, "'%s' tokenizer train --vocab 1000 x", tu_aisle()), 2);
    free(res);
    cr_assert_eq(tu_run(&res, "'%s' tokenize --model /nonexistent/m.gguf hi", tu_aisle()), 1);
    cr_assert(strstr(res, "/nonexistent/m.gguf"), "%s", res);
    free(res);
    cr_assert_eq(tu_run(&res, "'%s' tokenizer frobnicate", tu_aisle()), 2);
    free(res);
    cr_assert_eq(tu_run(&res, "'%s' tokenize --help", tu_aisle()), 0);
    cr_assert(strstr(res, "usage: aisle tokenize"), "%s", res);
    free(res);
    char *dir = tu_tmpdir();
    char *model = train(dir, "");
    cr_assert_eq(tu_run(&res, "'%s' detokenize --model '%s' 12 999999", tu_aisle(), model), 2);
    cr_assert(strstr(res, "not a token id"), "%s", res);
    free(res);
    free(model);
    tu_rmdir(dir);
}
