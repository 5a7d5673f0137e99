/*
 * eval_answers_test.c — `aisle eval answers` (cli/eval_answers.c):
 *   - the metrics on fixed strings, checked by hand: words, ROUGE-L F1,
 *     token F1, citation validity/precision/recall, markup and tag ids;
 *   - a dev record's prompt rebuilt byte for byte (as-of times and stale
 *     marks read back from the system message), and a tampered one refused;
 *   - the command end to end on SFT dev examples built here from
 *     tests/fixtures/sft with a random-weight model (tests/server/tinymodel.h):
 *     JSON lines whose summaries are the means of the examples, the same
 *     output for the same seed, other examples for another, samples in text
 *     mode, and bad input named.
 * The metrics and the record parser are included from the .c (above its
 * EVAL_ANSWERS_METRICS_ONLY guard).
 */
#include <criterion/criterion.h>

#include "../testutil.h"
#include "../server/tinymodel.h"
#include "train/shard.h"

#define EVAL_ANSWERS_METRICS_ONLY
#include "../../cli/eval_answers.c"

/* Words of s after markup removal (n_passages 3, known id "B1"). */
static size_t words_of(const char *s, struct ea_markup *m, const char **w, size_t *wl)
{
    static const char *const known[] = {"B1"};
    cr_assert_eq(ea_markup_parse(m, s, strlen(s), 3, known, 1), 0);
    return ea_words(m->text.data ? m->text.data : (char *)"", m->text.len, w, wl);
}

Test(lmeval_answers, words_rouge_f1_by_hand)
{
    const char *w[2][EA_MAX_WORDS];
    size_t wl[2][EA_MAX_WORDS];
    uint32_t row[EA_MAX_WORDS + 1];
    unsigned char used[EA_MAX_WORDS];
    struct ea_markup a, b;

    size_t n = words_of("Yes, it FITS [1]. <product id=\"B1\"/>", &a, w[0], wl[0]);
    cr_assert_eq(n, 3, "markup is not words");
    cr_assert(!strncmp(w[0][0], "yes", 3) && wl[0][0] == 3);
    cr_assert(!strncmp(w[0][2], "fits", 4) && wl[0][2] == 4, "lowercased");
    buf_release(&a.text);

    /* LCS of "the cat sat on the mat" / "the cat is on the mat" = 5 words:
     * P = R = 5/6, F = 5/6. Token F1: common = the, cat, on, the, mat = 5 -> 5/6. */
    size_t na = words_of("The cat sat on the mat.", &a, w[0], wl[0]);
    size_t nb = words_of("the cat is on the mat", &b, w[1], wl[1]);
    cr_assert_float_eq(ea_rouge_l(w[0], wl[0], na, w[1], wl[1], nb, row), 5.0 / 6, 1e-12);
    cr_assert_float_eq(ea_token_f1(w[0], wl[0], na, w[1], wl[1], nb, used), 5.0 / 6, 1e-12);
    buf_release(&a.text);
    buf_release(&b.text);

    /* "a b c d" vs "b d a": LCS "b d" = 2, P = 2/4, R = 2/3 -> F = 4/7;
     * token F1: all 3 of the reference match, P = 3/4, R = 1 -> 6/7. */
    na = words_of("a b c d", &a, w[0], wl[0]);
    nb = words_of("b d a", &b, w[1], wl[1]);
    cr_assert_float_eq(ea_rouge_l(w[0], wl[0], na, w[1], wl[1], nb, row), 4.0 / 7, 1e-12);
    cr_assert_float_eq(ea_token_f1(w[0], wl[0], na, w[1], wl[1], nb, used), 6.0 / 7, 1e-12);
    buf_release(&a.text);
    buf_release(&b.text);

    /* Repeated words count as a multiset: "a a b" vs "a b b": common 2 -> 2/3;
     * LCS "a b" = 2 -> 2/3 as well. */
    na = words_of("a a b", &a, w[0], wl[0]);
    nb = words_of("a b b", &b, w[1], wl[1]);
    cr_assert_float_eq(ea_token_f1(w[0], wl[0], na, w[1], wl[1], nb, used), 2.0 / 3, 1e-12);
    cr_assert_float_eq(ea_rouge_l(w[0], wl[0], na, w[1], wl[1], nb, row), 2.0 / 3, 1e-12);
    /* Empty against non-empty is 0, both empty 1; nothing in common is 0. */
    cr_assert_float_eq(ea_rouge_l(w[0], wl[0], 0, w[1], wl[1], nb, row), 0, 1e-12);
    cr_assert_float_eq(ea_token_f1(w[0], wl[0], 0, w[1], wl[1], 0, used), 1, 1e-12);
    buf_release(&a.text);
    buf_release(&b.text);
    na = words_of("x y", &a, w[0], wl[0]);
    nb = words_of("z", &b, w[1], wl[1]);
    cr_assert_float_eq(ea_rouge_l(w[0], wl[0], na, w[1], wl[1], nb, row), 0, 1e-12);
    cr_assert_float_eq(ea_token_f1(w[0], wl[0], na, w[1], wl[1], nb, used), 0, 1e-12);
    buf_release(&a.text);
    buf_release(&b.text);

    /* UTF-8 letters are word bytes; punctuation splits. */
    na = words_of("café-crème, naïve", &a, w[0], wl[0]);
    cr_assert_eq(na, 3);
    cr_assert_eq(wl[0][0], strlen("café"));
    buf_release(&a.text);
}

Test(lmeval_answers, citations_and_markup_by_hand)
{
    static const char *const known[] = {"B1", "B2"};
    struct ea_markup m;
    const char *s = "Fits [1] and [5], see [1]. <product id=\"B1\"/> <price id=\"ZZ\"/> <bogus id=\"B1\"/> [2]";
    cr_assert_eq(ea_markup_parse(&m, s, strlen(s), 3, known, 2), 0);
    cr_assert_eq(m.n_cites, 2, "distinct valid citations 1, 2");
    cr_assert_eq(m.cites[0], 1);
    cr_assert_eq(m.cites[1], 2);
    cr_assert_eq(m.bad_cites, 1, "[5] of 3 passages");
    cr_assert_eq(m.n_cite_refs, 4);
    cr_assert_eq(m.tags, 2);
    cr_assert_eq(m.tag_ids, 2);
    cr_assert_eq(m.unknown_ids, 1, "ZZ is no evidence product");
    cr_assert_eq(m.bad_markup, 1, "<bogus .../>");
    buf_release(&m.text);

    /* No passages: any citation is invalid. */
    cr_assert_eq(ea_markup_parse(&m, "so [1].", 7, 0, NULL, 0), 0);
    cr_assert_eq(m.bad_cites, 1);
    cr_assert_eq(m.n_cites, 0);
    buf_release(&m.text);

    /* An unterminated tag at the end is a markup error. */
    const char *open_tag = "ok <product id=\"B1";
    cr_assert_eq(ea_markup_parse(&m, open_tag, strlen(open_tag), 3, known, 2), 0);
    cr_assert_eq(m.bad_markup, 1);
    buf_release(&m.text);

    double p, r;
    const unsigned gen[] = {1, 2}, gold[] = {2}, gold2[] = {1, 3};
    cr_assert_eq(ea_cite_accuracy(gen, 2, gold, 1, &p, &r), 1);
    cr_assert_float_eq(p, 0.5, 1e-12);
    cr_assert_float_eq(r, 1.0, 1e-12);
    cr_assert_eq(ea_cite_accuracy(gen, 2, gold2, 2, &p, &r), 1);
    cr_assert_float_eq(p, 0.5, 1e-12);
    cr_assert_float_eq(r, 0.5, 1e-12);
    cr_assert_eq(ea_cite_accuracy(NULL, 0, gold, 1, &p, &r), 1);
    cr_assert_float_eq(p, 0, 1e-12, "no citation: precision 0");
    cr_assert_float_eq(r, 0, 1e-12);
    cr_assert_eq(ea_cite_accuracy(gen, 2, NULL, 0, &p, &r), 0, "no gold: not counted");
}

Test(lmeval_answers, record_prompt_rebuilt_exactly)
{
    /* A record as sft_data.c writes it: render the prompt, then its JSON. */
    struct prompt_passage ev[3] = {
        {.source = "review", .product_id = "B005AR75A6", .text = "fits my Kenmore (the 2010 one), perfectly."},
        {.source = "offer", .product_id = "B005AR75A6", .as_of = "2026-11-26 00:30 UTC", .stale = 1,
         .text = "Offers: USD 12.99, 3 in stock."},
        {.source = "qa", .product_id = NULL, .as_of = "2026-11-25 10:00 UTC", .text = "Q: big? A: yes, as of now"},
    };
    struct prompt_turn turns[2] = {{PROMPT_USER, "will it fit a kenmore?"}, {PROMPT_ASSISTANT, "Yes [1]."}};
    struct prompt_input in = {.system = "Rules.", .evidence = ev, .n_evidence = 3, .turns = turns, .n_turns = 2};
    struct prompt p;
    prompt_init(&p);
    cr_assert_eq(prompt_build(&p, &in, NULL, NULL, NULL), 0, "%s", p.err);
    size_t sys0 = strlen(TOK_SYSTEM) + 1, sys1 = p.prefix_bytes - strlen(TOK_END) - 1;
    json_t *rec = json_pack(
        "{s:s,s:s,s:[{s:s,s:s#},{s:s,s:s},{s:s,s:s}],s:[{s:i,s:s,s:s,s:s},{s:i,s:s,s:s,s:s},{s:i,s:s,s:s}]}",
        "dataset", "demo-qa", "id", "B005AR75A6#1", "messages", "role", "system", "content", p.text.data + sys0,
        (int)(sys1 - sys0), "role", "user", "content", "will it fit a kenmore?", "role", "assistant", "content",
        "Yes [1].", "evidence", "n", 1, "source", "review", "product_id", "B005AR75A6", "text", ev[0].text, "n", 2,
        "source", "offer", "product_id", "B005AR75A6", "text", ev[1].text, "n", 3, "source", "qa", "text",
        ev[2].text);
    cr_assert_not_null(rec);
    struct ea_example e;
    const char *why = example_from(&e, rec);
    cr_assert_null(why, "%s", why);
    cr_assert_str_eq(e.question, "will it fit a kenmore?");
    cr_assert_str_eq(e.reference, "Yes [1].");
    cr_assert_eq(e.n_turns, 1, "the answer is not a prompt turn");
    cr_assert_str_eq(e.ev[1].as_of, "2026-11-26 00:30 UTC");
    cr_assert_eq(e.ev[1].stale, 1);
    cr_assert_str_eq(e.ev[2].as_of, "2026-11-25 10:00 UTC");
    cr_assert_eq(e.ev[2].stale, 0);
    cr_assert_eq(e.ev[0].as_of, NULL, "a ')' inside the text is not a field");
    cr_assert_eq(e.n_known, 2);
    struct prompt q;
    prompt_init(&q);
    why = ea_rebuild(&q, &e, NULL);
    cr_assert_null(why, "%s", why);
    const char *tail = TOK_USER "\nwill it fit a kenmore?" TOK_END "\n" TOK_ASSISTANT "\n";
    cr_assert(q.text.len > strlen(tail) && !strcmp(q.text.data + q.text.len - strlen(tail), tail),
              "ends with the question and the generation prompt: %s", q.text.data);
    example_release(&e);

    /* A passage's text changed in the record but not in its system message. */
    json_object_set_new(json_array_get(json_object_get(rec, "evidence"), 0), "text", json_string("other text"));
    cr_assert_null(example_from(&e, rec));
    why = ea_rebuild(&q, &e, NULL);
    cr_assert_not_null(why);
    cr_assert_not_null(strstr(why, "differs from its system message"), "%s", why);
    example_release(&e);

    /* Not an example. */
    json_t *bad = json_pack("{s:s,s:s,s:[],s:[]}", "dataset", "x", "id", "1", "messages", "evidence");
    why = example_from(&e, bad);
    cr_assert_not_null(why);
    cr_assert_not_null(strstr(why, "messages must be"), "%s", why);
    example_release(&e);
    json_decref(bad);
    json_decref(rec);
    prompt_release(&p);
    prompt_release(&q);
}

/* ---- the command ---- */

struct aworld {
    char *dir, *model, *dev;
};

static void aworld_make(struct aworld *w)
{
    w->dir = tu_tmpdir();
    w->model = tu_path(w->dir, "model.gguf");
    w->dev = tu_path(w->dir, "sft/dev.jsonl");
    struct tiny_spec s = {.dim = 32, .layers = 1, .heads = 2, .kv_heads = 1, .ff = 64, .vocab = 320, .ctx = 2048,
                          .wtype = GGML_TYPE_F32, .seed = 5, .printable = 1};
    cr_assert_eq(tiny_model_write(w->model, &s), 0);
    char *out, *data = tu_path(tu_root(), "tests/fixtures/sft");
    int rc = tu_run(&out, "%s sft build --data-dir %s --tokenizer %s --out %s/sft --seed 2 --datasets hetpqa,live,subjqa",
                    tu_aisle(), data, w->model, w->dir);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    free(data);
}

static void aworld_free(struct aworld *w)
{
    free(w->model);
    free(w->dev);
    tu_rmdir(w->dir);
}

/* Example lines and summary lines of a --json run. */
static void check_run(const char *out, int per_ds, int max_tokens, double *rouge_sum)
{
    const char *p = out;
    double ex_rouge[3] = {0}, ex_f1[3] = {0};
    int ex_n[3] = {0}, summaries = 0;
    const char *names[8];
    int n_names = 0;
    *rouge_sum = 0;
    while (*p) {
        const char *e = strchr(p, '\n');
        cr_assert_not_null(e);
        json_error_t je;
        json_t *o = json_loadb(p, (size_t)(e - p), 0, &je);
        cr_assert_not_null(o, "not JSON: %.*s", (int)(e - p), p);
        const char *d = json_string_value(json_object_get(o, "dataset"));
        if (d) {
            int k = 0;
            while (k < n_names && strcmp(names[k], d))
                k++;
            if (k == n_names) {
                cr_assert_lt(n_names, 3, "at most 3 datasets: %s", d);
                names[n_names++] = strdup(d);
            }
            cr_assert_eq(json_integer_value(json_object_get(o, "tokens")), max_tokens,
                         "a random model never ends its turn: cut at --max-tokens");
            cr_assert(json_is_true(json_object_get(o, "cut")));
            const char *gen = json_string_value(json_object_get(o, "generated"));
            cr_assert_not_null(gen);
            cr_assert(strlen(gen) > 0);
            cr_assert_not_null(json_string_value(json_object_get(o, "reference")));
            ex_rouge[k] += json_real_value(json_object_get(o, "rouge_l"));
            ex_f1[k] += json_real_value(json_object_get(o, "token_f1"));
            *rouge_sum += json_real_value(json_object_get(o, "rouge_l"));
            ex_n[k]++;
        } else {
            const char *sname = json_string_value(json_object_get(o, "summary"));
            cr_assert_not_null(sname, "neither an example nor a summary: %.*s", (int)(e - p), p);
            summaries++;
            int n = (int)json_integer_value(json_object_get(o, "examples"));
            if (strcmp(sname, "all")) {
                int k = 0;
                while (k < n_names && strcmp(names[k], sname))
                    k++;
                cr_assert_lt(k, n_names, "summary of %s without examples", sname);
                cr_assert_eq(n, ex_n[k]);
                if (per_ds)
                    cr_assert_eq(n, per_ds, "%s: -n %d", sname, per_ds);
                cr_assert_float_eq(json_real_value(json_object_get(o, "rouge_l")), ex_rouge[k] / n, 1e-9);
                cr_assert_float_eq(json_real_value(json_object_get(o, "token_f1")), ex_f1[k] / n, 1e-9);
                cr_assert_float_eq(json_real_value(json_object_get(o, "cut")), 1.0, 1e-12);
            } else {
                cr_assert_eq(n, ex_n[0] + ex_n[1] + ex_n[2]);
            }
        }
        json_decref(o);
        p = e + 1;
    }
    cr_assert_eq(n_names, 3);
    cr_assert_eq(summaries, 4, "three datasets and all");
    for (int k = 0; k < n_names; k++)
        free((char *)names[k]);
}

/* The ids of the example lines, joined. */
static char *ids_of(const char *out)
{
    char *ids = calloc(1, strlen(out) + 1);
    for (const char *p = strstr(out, "\"id\":\""); p; p = strstr(p + 1, "\"id\":\"")) {
        const char *s = p + 6, *e = strchr(s, '"');
        strncat(ids, s, (size_t)(e - s));
        strcat(ids, ";");
    }
    return ids;
}

/* Every dev record's rebuilt prompt is, token for token, the dev.sft example
 * (what SFT trained on) up to the reference answer: its unmasked prefix. */
Test(lmeval_answers, rebuilt_prompts_are_the_trained_tokens, .timeout = 60)
{
    struct aworld w;
    aworld_make(&w);
    char err[512], *sft = tu_path(w.dir, "sft/dev.sft");
    struct gguf *g;
    struct tok *t;
    struct shard *sh;
    cr_assert_eq(gguf_open(&g, w.model, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tok_load_gguf(&t, g, err, sizeof err), 0, "%s", err);
    gguf_close(g);
    cr_assert_eq(shard_open(&sh, sft, err, sizeof err), 0, "%s", err);
    FILE *f = fopen(w.dev, "r");
    cr_assert_not_null(f);
    char *line = NULL;
    size_t cap = 0;
    uint64_t i = 0;
    struct prompt p;
    prompt_init(&p);
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *rec = json_loads(line, 0, &je);
        cr_assert_not_null(rec, "%s", je.text);
        struct ea_example e;
        const char *why = example_from(&e, rec);
        cr_assert_null(why, "record %llu: %s", (unsigned long long)i, why);
        why = ea_rebuild(&p, &e, t);
        cr_assert_null(why, "record %llu: %s", (unsigned long long)i, why);
        cr_assert_lt(i, sh->n_examples);
        uint32_t n = shard_example_len(sh, i);
        int32_t *ids = malloc(n * sizeof(*ids));
        uint8_t *mask = malloc(n);
        shard_example_get(sh, i, ids, mask);
        /* The prompt ends where the final answer's loss mask begins (the
         * answer's <|end|> is followed by an unmasked "\n"). */
        size_t first = n;
        while (first > 0 && !mask[first - 1])
            first--;
        cr_assert_lt(first, n, "%s %s: a trailing newline after <|end|>", e.dataset, e.id);
        while (first > 0 && mask[first - 1])
            first--;
        cr_assert_eq(p.ids.len, first, "%s %s: %zu prompt tokens, the trained example's answer starts at %zu",
                     e.dataset, e.id, p.ids.len, first);
        cr_assert(!memcmp(p.ids.ids, ids, first * sizeof(*ids)), "%s %s: tokens differ", e.dataset, e.id);
        free(ids);
        free(mask);
        example_release(&e);
        json_decref(rec);
        i++;
    }
    cr_assert_eq(i, sh->n_examples, "one shard example per record");
    cr_assert_gt(i, 10);
    free(line);
    fclose(f);
    prompt_release(&p);
    shard_close(sh);
    tok_free(t);
    free(sft);
    aworld_free(&w);
}

Test(lmeval_answers, command_end_to_end, .timeout = 120)
{
    struct aworld w;
    aworld_make(&w);
    char *a, *b, *c;
    const char *bin = tu_aisle();
    int rc = tu_run(&a, "%s eval answers --model %s --examples %s -n 2 --max-tokens 6 --json --threads 1 2>/dev/null",
                    bin, w.model, w.dev);
    cr_assert_eq(rc, 0, "%s", a);
    double r1;
    check_run(a, 2, 6, &r1);
    rc = tu_run(&b, "%s eval answers --model %s --examples %s -n 2 --max-tokens 6 --json --threads 1 2>/dev/null",
                bin, w.model, w.dev);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(a, b, "the same seed gives the same output");
    free(b);
    rc = tu_run(&c, "%s eval answers --model %s --examples %s -n 2 --max-tokens 6 --json --seed 9 --threads 1 "
                    "2>/dev/null",
                bin, w.model, w.dev);
    cr_assert_eq(rc, 0);
    char *ia = ids_of(a), *ic = ids_of(c);
    cr_assert_str_neq(ia, ic, "another seed draws other examples");
    free(ia);
    free(ic);
    free(c);
    free(a);

    /* -n 0: every example of the file once. */
    rc = tu_run(&a, "%s eval answers --model %s --examples %s -n 0 --max-tokens 3 --json --threads 1 2>/dev/null", bin,
                w.model, w.dev);
    cr_assert_eq(rc, 0, "%s", a);
    check_run(a, 0, 3, &r1);
    char *cmd_out;
    cr_assert_eq(tu_run(&cmd_out, "wc -l < %s", w.dev), 0);
    long lines = strtol(cmd_out, NULL, 10), examples = 0;
    for (const char *p = strstr(a, "\"dataset\":"); p; p = strstr(p + 1, "\"dataset\":"))
        examples++;
    cr_assert_eq(examples, lines, "%ld examples answered of %ld", examples, lines);
    free(cmd_out);
    free(a);

    /* Text mode: samples for the model card, the table, progress. */
    rc = tu_run(&a, "%s eval answers --model %s --examples %s -n 2 --max-tokens 6 --samples 1 --threads 1", bin,
                w.model, w.dev);
    cr_assert_eq(rc, 0, "%s", a);
    cr_assert_not_null(strstr(a, "\n### hetpqa "), "%s", a);
    cr_assert_not_null(strstr(a, "\nQuestion:  "), "%s", a);
    cr_assert_not_null(strstr(a, "\nReference: "), "%s", a);
    cr_assert_not_null(strstr(a, "\nGenerated: "), "%s", a);
    cr_assert_not_null(strstr(a, "dataset          n  gold valid_cite cite_p cite_r markup_ok known_ids"), "%s", a);
    cr_assert_not_null(strstr(a, "\nall              6 "), "%s", a);
    cr_assert_not_null(strstr(a, "answers/s"), "%s", a);
    cr_assert_not_null(strstr(a, "ETA"), "%s", a);
    size_t samples = 0;
    for (const char *p = strstr(a, "\n### "); p; p = strstr(p + 1, "\n### "))
        samples++;
    cr_assert_eq(samples, 3, "one sample per dataset");
    free(a);

    /* Prompts that cannot fit with the answer are skipped and counted. */
    rc = tu_run(&a, "%s eval answers --model %s --examples %s -n 1 --max-tokens 2040 --threads 1 2>/dev/null", bin,
                w.model, w.dev);
    cr_assert_eq(rc, 0, "%s", a);
    cr_assert_not_null(strstr(a, "hetpqa           0  (no example answered)"), "%s", a);
    cr_assert_not_null(strstr(a, "# live: 1 examples skipped (prompt + --max-tokens over the model's 2048 positions)"),
                       "%s", a);
    free(a);
    aworld_free(&w);
}

/* --repeat-penalty sees the answer's tokens (a random model's greedy answers
 * repeat tokens; a huge penalty changes them), --temp samples reproducibly for
 * a seed, and the table's header names how the answers were drawn. */
Test(lmeval_answers, sampling_options, .timeout = 120)
{
    struct aworld w;
    aworld_make(&w);
    const char *bin = tu_aisle();
    char *g, *r, *t1, *t2;
    const char *common = "-n 2 --max-tokens 24 --json --threads 1 2>/dev/null";
    cr_assert_eq(tu_run(&g, "%s eval answers --model %s --examples %s %s", bin, w.model, w.dev, common), 0);
    cr_assert_eq(tu_run(&r, "%s eval answers --model %s --examples %s --repeat-penalty 100 %s", bin, w.model, w.dev,
                        common),
                 0, "%s", r);
    cr_assert_str_neq(g, r, "the penalty changes no answer: the answers' tokens never reach it");
    char *ig = ids_of(g), *ir = ids_of(r);
    cr_assert_str_eq(ig, ir, "the same examples");
    free(ig);
    free(ir);
    cr_assert_eq(tu_run(&t1, "%s eval answers --model %s --examples %s --temp 1 --top-p 0.9 %s", bin, w.model, w.dev,
                        common),
                 0, "%s", t1);
    cr_assert_eq(tu_run(&t2, "%s eval answers --model %s --examples %s --temp 1 --top-p 0.9 %s", bin, w.model, w.dev,
                        common),
                 0);
    cr_assert_str_eq(t1, t2, "a seed replays the sampled answers");
    cr_assert_str_neq(t1, g, "sampling at temperature 1 gives other answers than greedy");
    char *cb;
    cr_assert_eq(tu_run(&cb, "%s eval answers --model %s --examples %s --copy-boost 100 --copy-min 1 %s", bin,
                        w.model, w.dev, common),
                 0, "%s", cb);
    cr_assert_str_neq(cb, g, "a boost of 100 changes no answer: the copy hook never ran");
    free(cb);
    free(g);
    free(r);
    free(t1);
    free(t2);
    /* the table's header names how the answers were drawn */
    static const struct {
        const char *args, *header;
    } how[] = {
        {"--temp 0.5 --top-p 0.8 --repeat-penalty 1.5 --penalty-last-n 32",
         "temperature 0.5, top-p 0.8, repeat penalty 1.5 over 32, at most 4 tokens"},
        {"", "), greedy, at most 4 tokens"},
        {"--copy-boost 3", "), greedy, copy boost 3 from 2, at most 4 tokens"},
    };
    for (size_t i = 0; i < sizeof how / sizeof *how; i++) {
        char *a;
        cr_assert_eq(tu_run(&a, "%s eval answers --model %s --examples %s -n 1 --max-tokens 4 --samples 0 --threads 1 "
                                "%s 2>/dev/null",
                            bin, w.model, w.dev, how[i].args),
                     0, "%s", a);
        cr_assert_not_null(strstr(a, how[i].header), "%s: %s", how[i].args, a);
        free(a);
    }
    aworld_free(&w);
}

Test(lmeval_answers, bad_input_named, .timeout = 60)
{
    struct aworld w;
    aworld_make(&w);
    char *out, *bad = tu_path(w.dir, "bad.jsonl");
    const char *bin = tu_aisle();
    /* A line that is not JSON: file and line named. */
    cr_assert_eq(tu_run(&out, "head -1 %s > %s && echo '{oops' >> %s", w.dev, bad, bad), 0);
    free(out);
    int rc = tu_run(&out, "%s eval answers --model %s --examples %s", bin, w.model, bad);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "bad.jsonl:2: "), "%s", out);
    free(out);
    /* A record whose evidence does not match its system message. */
    cr_assert_eq(tu_run(&out, "head -1 %s | sed 's/\"text\":\"/\"text\":\"X/' > %s", w.dev, bad), 0);
    free(out);
    rc = tu_run(&out, "%s eval answers --model %s --examples %s", bin, w.model, bad);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "bad.jsonl: record at byte 0 ("), "%s", out);
    cr_assert_not_null(strstr(out, "differs from its system message"), "%s", out);
    free(out);
    /* Not an SFT example. */
    tu_write_str(bad, "{\"dataset\": \"x\", \"id\": \"1\"}\n");
    rc = tu_run(&out, "%s eval answers --model %s --examples %s", bin, w.model, bad);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "not an SFT example"), "%s", out);
    free(out);
    /* Empty file, missing file. */
    tu_write_str(bad, "\n");
    rc = tu_run(&out, "%s eval answers --model %s --examples %s", bin, w.model, bad);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "no examples"), "%s", out);
    free(out);
    rc = tu_run(&out, "%s eval answers --model %s --examples %s/none.jsonl", bin, w.model, w.dir);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "none.jsonl: cannot open"), "%s", out);
    free(out);
    /* Usage. */
    struct {
        const char *args, *msg;
    } use[] = {
        {"--model m.gguf", "--model and --examples are required"},
        {"--model m.gguf --examples x -n -1", "-n: expected a whole number from 0"},
        {"--model m.gguf --examples x --max-tokens 0", "--max-tokens: expected a whole number from 1"},
        {"--model m.gguf --examples x extra", "unexpected argument 'extra'"},
        {"--model m.gguf --examples x --temp -1", "--temp"},
        {"--model m.gguf --examples x --repeat-penalty 0", "--repeat-penalty"},
        {"--model m.gguf --examples x --top-p 2", "--top-p"},
        {"--model m.gguf --examples x --copy-boost -1", "--copy-boost"},
        {"--model m.gguf --examples x --copy-min 0", "--copy-min"},
    };
    for (size_t i = 0; i < sizeof use / sizeof *use; i++) {
        rc = tu_run(&out, "%s eval answers %s", bin, use[i].args);
        cr_assert_eq(rc, 2, "%s: %s", use[i].args, out);
        cr_assert_not_null(strstr(out, use[i].msg), "%s: %s", use[i].args, out);
        free(out);
    }
    rc = tu_run(&out, "%s eval answers --help", bin);
    cr_assert_eq(rc, 0);
    cr_assert_not_null(strstr(out, "ROUGE-L"), "%s", out);
    free(out);
    free(bad);
    aworld_free(&w);
}
