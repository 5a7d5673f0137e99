/* sft_data_test.c — the SFT example builders on slices of the real data
 * (tests/fixtures/sft, same layout as the shared data folder): each builder's
 * output, the cited passage, the shards' masks, dev/test items never in
 * training, determinism, bad input, and `aisle sft` end to end. */
#include <criterion/criterion.h>

#include <jansson.h>

#include "../testutil.h"
#include "assist/prompt.h"
#include "assist/sft_data.h"
#include "core/error.h"
#include "gguf/gguf.h"
#include "tok/tok.h"
#include "train/shard.h"

static char *fixtures(void)
{
    return tu_path(tu_root(), "tests/fixtures/sft");
}

static struct tok *load_tok(void)
{
    char *path = tu_path(tu_root(), "tests/fixtures/tok/llamacpp-bpe4096.gguf");
    struct gguf *g;
    struct tok *t;
    char err[256];
    cr_assert_eq(gguf_open(&g, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tok_load_gguf(&t, g, err, sizeof(err)), 0, "%s", err);
    gguf_close(g);
    free(path);
    return t;
}

/* Build the datasets in mask (1 << d) from the fixtures into dir. */
static void build(const char *dir, const struct tok *t, unsigned mask, uint64_t seed,
                  struct sft_stats stats[SFT_N_DATASETS][2])
{
    struct sft_opts o;
    sft_opts_default(&o);
    o.seed = seed;
    char err[1024], *data = fixtures();
    struct sft_out *so;
    cr_assert_eq(sft_out_open(&so, dir, t, &o, err, sizeof(err)), 0, "%s", err);
    for (int d = 0; d < SFT_N_DATASETS; d++) {
        if (!(mask & (1u << d)))
            continue;
        cr_assert_eq(sft_build(so, (enum sft_dataset)d, data, err, sizeof(err)), 0, "%s: %s",
                     sft_dataset_name((enum sft_dataset)d), err);
        if (stats)
            for (int s = 0; s < 2; s++)
                stats[d][s] = *sft_out_stats(so, (enum sft_dataset)d, (enum sft_split)s);
    }
    cr_assert_eq(sft_out_finish(so, err, sizeof(err)), 0, "%s", err);
    free(data);
}

/* The JSON records of dir/name.jsonl (an array). */
static json_t *read_jsonl(const char *dir, const char *name)
{
    char *path = tu_path(dir, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    json_t *all = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t je;
        json_t *v = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, &je);
        cr_assert_not_null(v, "%s: %s", path, je.text);
        json_array_append_new(all, v);
    }
    free(line);
    fclose(f);
    free(path);
    return all;
}

static const char *msg(json_t *rec, size_t i)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(rec, "messages"), i), "content"));
}

/* The last question and the last answer (messages are system, then user /
 * assistant pairs). */
static const char *question(json_t *rec)
{
    return msg(rec, json_array_size(json_object_get(rec, "messages")) - 2);
}

static const char *answer(json_t *rec)
{
    return msg(rec, json_array_size(json_object_get(rec, "messages")) - 1);
}

/* The first citation [n] of an answer, 0 when none. */
static unsigned first_cite(const char *a)
{
    for (const char *p = strchr(a, '['); p; p = strchr(p + 1, '[')) {
        unsigned v;
        char close;
        if (sscanf(p, "[%u%c", &v, &close) == 2 && close == ']')
            return v;
    }
    return 0;
}

static const char *ev_text(json_t *rec, unsigned n)
{
    json_t *e = json_array_get(json_object_get(rec, "evidence"), n - 1);
    return json_string_value(json_object_get(e, "text"));
}

/* Every record: well-formed messages, the answer's markup valid for its
 * evidence, the system message holding exactly its evidence lines. */
static void check_records(json_t *all, const char *split)
{
    size_t i;
    json_t *rec;
    json_array_foreach(all, i, rec)
    {
        cr_assert_str_eq(json_string_value(json_object_get(rec, "split")), split);
        const char *sys = msg(rec, 0), *q = question(rec), *a = answer(rec);
        cr_assert(sys && q && a && *q && *a);
        size_t nm = json_array_size(json_object_get(rec, "messages"));
        cr_assert(nm == 3 || nm == 5, "%zu messages", nm);
        if (nm == 5) { /* an earlier turn: its answer is valid markup too, and the roles alternate */
            const char *pa = msg(rec, 2);
            char perr[256];
            cr_assert_eq(markup_check(pa, strlen(pa), (unsigned)json_array_size(json_object_get(rec, "evidence")),
                                      NULL, NULL, perr, sizeof(perr)),
                         0, "%s", perr);
            cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(rec, "messages"), 3),
                                                               "role")),
                             "user");
        }
        cr_assert_eq(strncmp(sys, prompt_default_system, strlen(prompt_default_system)), 0);
        size_t n_ev = json_array_size(json_object_get(rec, "evidence")), cites = 0;
        char err[256];
        cr_assert_eq(markup_check(a, strlen(a), n_ev ? (unsigned)n_ev : 1, NULL, &cites, err, sizeof(err)), 0,
                     "%s: %s", err, a);
        for (size_t k = 0; k < n_ev; k++) {
            char head[32];
            snprintf(head, sizeof(head), "\n[%zu] (", k + 1);
            cr_assert(strstr(sys, head), "evidence line %zu missing", k + 1);
            cr_assert(strstr(sys, ev_text(rec, (unsigned)k + 1)));
        }
        int neg = json_is_true(json_object_get(rec, "negative"));
        const char *ds = json_string_value(json_object_get(rec, "dataset"));
        if (!neg && strcmp(ds, "coqasum") && strcmp(ds, "fewsum"))
            cr_assert_geq(cites, 1, "%s answer without a citation: %s", ds, a);
        if (neg)
            cr_assert_eq(cites, 0, "a 'doesn't say' answer cites: %s", a);
    }
}

static size_t count_ds(json_t *all, const char *ds)
{
    size_t i, n = 0;
    json_t *rec;
    json_array_foreach(all, i, rec) n += !strcmp(json_string_value(json_object_get(rec, "dataset")), ds);
    return n;
}

Test(sft_data, every_builder_on_real_slices)
{
    char *dir = tu_tmpdir();
    struct tok *t = load_tok();
    struct sft_stats st[SFT_N_DATASETS][2];
    memset(st, 0, sizeof(st));
    build(dir, t, (1u << SFT_N_DATASETS) - 1, 1, st);
    json_t *train = read_jsonl(dir, "train.jsonl"), *dev = read_jsonl(dir, "dev.jsonl");
    check_records(train, "train");
    check_records(dev, "dev");
    /* counts per dataset: what the fixtures hold (README.md) */
    cr_assert_eq(st[SFT_HETPQA][SFT_TRAIN].records, 40);
    cr_assert_eq(st[SFT_HETPQA][SFT_TRAIN].examples, 40);
    cr_assert_eq(st[SFT_HETPQA][SFT_DEV].examples, 12);
    cr_assert_eq(st[SFT_SEMIPQA][SFT_TRAIN].examples, 24);
    cr_assert_eq(st[SFT_SEMIPQA][SFT_DEV].examples, 8);
    cr_assert_eq(st[SFT_MCAULEY_QA][SFT_TRAIN].records + st[SFT_MCAULEY_QA][SFT_DEV].records, 90);
    cr_assert_gt(st[SFT_MCAULEY_QA][SFT_TRAIN].examples, 40);
    cr_assert_gt(st[SFT_DEMO_QA][SFT_TRAIN].examples, 20);
    cr_assert_eq(st[SFT_COQASUM][SFT_TRAIN].records, 2);
    cr_assert_eq(st[SFT_COQASUM][SFT_DEV].records, 1);
    cr_assert_eq(st[SFT_COQASUM][SFT_DEV].held_out, 1, "the test product is held out");
    cr_assert_eq(st[SFT_COQASUM][SFT_TRAIN].examples, 2);
    cr_assert_eq(st[SFT_FEWSUM][SFT_TRAIN].examples, 6, "2 products x 3 summaries");
    cr_assert_eq(st[SFT_FEWSUM][SFT_DEV].examples, 3);
    cr_assert_gt(st[SFT_SUBJQA][SFT_TRAIN].examples, 5);
    cr_assert_gt(st[SFT_SUBJQA][SFT_TRAIN].negatives, 0, "unanswerable SubjQA rows");
    cr_assert_eq(st[SFT_LIVE][SFT_TRAIN].records + st[SFT_LIVE][SFT_DEV].records, 16, "one offer per product");
    cr_assert_geq(st[SFT_LIVE][SFT_TRAIN].examples + st[SFT_LIVE][SFT_DEV].examples, 12);
    cr_assert_gt(st[SFT_MCAULEY_QA][SFT_TRAIN].multi_turn, 0, "some two-turn conversations");
    for (int d = 0; d < SFT_N_DATASETS; d++) {
        const char *name = sft_dataset_name((enum sft_dataset)d);
        cr_assert_eq(count_ds(train, name), st[d][SFT_TRAIN].examples, "%s", name);
        cr_assert_eq(count_ds(dev, name), st[d][SFT_DEV].examples, "%s", name);
        cr_assert_gt(st[d][SFT_TRAIN].tokens, st[d][SFT_TRAIN].target_tokens);
        cr_assert_gt(st[d][SFT_TRAIN].target_tokens, 0, "%s", name);
    }

    /* the shard holds the same examples, the mask exactly each answer and its <|end|> */
    char *shard_path = tu_path(dir, "train.sft"), err[512];
    struct shard *sh;
    cr_assert_eq(shard_open(&sh, shard_path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sh->kind, SHARD_SFT);
    cr_assert_eq(sh->n_examples, json_array_size(train));
    cr_assert_eq(sh->vocab_size, tok_n_vocab(t));
    struct buf ans;
    buf_init(&ans, 0);
    for (uint64_t i = 0; i < sh->n_examples; i++) {
        uint32_t n = shard_example_len(sh, i);
        int32_t *ids = malloc(n * sizeof(int32_t));
        uint8_t *mask = malloc(n);
        shard_example_get(sh, i, ids, mask);
        buf_reset(&ans);
        for (uint32_t k = 0; k < n; k++)
            if (mask[k])
                cr_assert_eq(tok_decode(t, &ids[k], 1, TOK_DECODE_SPECIAL, &ans), 0);
        json_t *rec = json_array_get(train, i);
        char want[16384];
        size_t wo = 0;
        for (size_t k = 2; k < json_array_size(json_object_get(rec, "messages")); k += 2)
            wo += (size_t)snprintf(want + wo, sizeof(want) - wo, "%s<|end|>", msg(rec, k));
        cr_assert_str_eq(ans.data, want, "example %llu", (unsigned long long)i);
        cr_assert_eq(json_integer_value(json_object_get(rec, "tokens")), n);
        free(ids);
        free(mask);
    }
    buf_release(&ans);
    shard_close(sh);
    free(shard_path);
    json_decref(train);
    json_decref(dev);
    tok_free(t);
    tu_rmdir(dir);
}

/* Lower-case letters and digits of s[0..n) into out (at most cap - 1). */
static void alnum(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            out[o++] = c;
    }
    out[o] = '\0';
}

/* The cited passage is the one that answers: for Q&A it is that question's
 * own Q&A; for hetPQA the row's candidate; for SubjQA the review with the span. */
Test(sft_data, citation_points_at_the_answering_passage)
{
    char *dir = tu_tmpdir();
    build(dir, NULL,
          (1u << SFT_MCAULEY_QA) | (1u << SFT_DEMO_QA) | (1u << SFT_HETPQA) | (1u << SFT_SUBJQA) | (1u << SFT_SEMIPQA),
          7, NULL);
    json_t *train = read_jsonl(dir, "train.jsonl");
    size_t i, checked = 0, gold_positions[SFT_MAX_EVIDENCE + 1] = {0}, subj_total = 0, subj_found = 0;
    json_t *rec;
    json_array_foreach(train, i, rec)
    {
        if (json_is_true(json_object_get(rec, "negative")))
            continue;
        const char *ds = json_string_value(json_object_get(rec, "dataset")), *q = question(rec), *a = answer(rec);
        unsigned n = first_cite(a);
        cr_assert(n >= 1, "%s", a);
        const char *ev = ev_text(rec, n);
        if (!strcmp(ds, "mcauley-qa") || !strcmp(ds, "demo-qa")) {
            struct buf want;
            buf_init(&want, 0);
            buf_puts(&want, "Q: ");
            prompt_clean_line(&want, q, strlen(q), 0);
            cr_assert_eq(strncmp(ev, want.data, want.len), 0, "cited [%u] %s for %s", n, ev, q);
            buf_release(&want);
            /* and the answer is that passage's answer */
            struct buf ab;
            buf_init(&ab, 0);
            prompt_clean_line(&ab, a, strcspn(a, "[") > 30 ? 30 : strcspn(a, "["), 0);
            cr_assert(strstr(ev, ab.data), "answer '%s' not in cited '%s'", ab.data, ev);
            buf_release(&ab);
        } else if (!strcmp(ds, "subjqa")) {
            /* spans are re-tokenized ("anti - glare"): compare letters and digits only */
            const char *open = strchr(a, '"'), *close = open ? strstr(open + 1, "\" [") : NULL;
            cr_assert(open && close > open);
            char span[32], hay[4096];
            alnum(span, sizeof(span), open + 1, (size_t)(close - open - 1));
            alnum(hay, sizeof(hay), ev, strlen(ev));
            subj_total++;
            subj_found += strstr(hay, span) != NULL;
        } else if (!strcmp(ds, "semipqa")) {
            cr_assert(strstr(q, "What is the "));
            /* the attribute named in the question is the cited one */
            char name[64];
            cr_assert_eq(sscanf(q, "What is the %63[a-z ]", name), 1);
            name[strcspn(name, " ")] = '\0';
            cr_assert(strstr(ev, name), "'%s' cited for '%s'", ev, q);
        }
        gold_positions[n]++;
        checked++;
    }
    cr_assert_gt(checked, 100);
    cr_assert_gt(subj_total, 3);
    cr_assert_geq(subj_found * 10, subj_total * 8, "span found in the cited review %zu of %zu", subj_found, subj_total);
    /* the right passage is not always first: the model must pick it */
    size_t at_one = gold_positions[1];
    cr_assert_lt(at_one, checked * 6 / 10, "[1] cited %zu of %zu times", at_one, checked);
    json_decref(train);
    tu_rmdir(dir);
}

struct pieces {
    size_t n_tags, n_cites;
    char tag[16];
    char ids[2][80];
    size_t n_ids;
    unsigned cites[8];
};

static int pieces_cb(void *ud, const struct markup_piece *pc)
{
    struct pieces *p = ud;
    if (pc->kind == MARKUP_TAG) {
        p->n_tags++;
        snprintf(p->tag, sizeof(p->tag), "%s", markup_tag_name(pc->tag));
        p->n_ids = pc->n_ids < 2 ? pc->n_ids : 2;
        for (size_t i = 0; i < p->n_ids; i++)
            snprintf(p->ids[i], sizeof(p->ids[i]), "%.*s", (int)pc->id_lens[i], pc->ids[i]);
    } else if (pc->kind == MARKUP_CITE && p->n_cites < 8) {
        p->cites[p->n_cites++] = pc->cite;
    }
    return 0;
}

/* Live facts: one price/stock/delivery/compare tag whose ids are the
 * products of the cited offer passages; stale facts are said to be. */
Test(sft_data, live_facts_tag_what_they_cite)
{
    char *dir = tu_tmpdir();
    build(dir, NULL, 1u << SFT_LIVE, 11, NULL);
    json_t *all = read_jsonl(dir, "train.jsonl"), *dev = read_jsonl(dir, "dev.jsonl");
    json_array_extend(all, dev);
    size_t i, kinds[4] = {0}, stale_said = 0, stale_total = 0;
    json_t *rec;
    json_array_foreach(all, i, rec)
    {
        const char *a = answer(rec);
        struct pieces p;
        memset(&p, 0, sizeof(p));
        struct markup m;
        markup_init(&m, (unsigned)json_array_size(json_object_get(rec, "evidence")));
        markup_feed(&m, a, strlen(a), pieces_cb, &p);
        markup_finish(&m, pieces_cb, &p);
        cr_assert_geq(p.n_cites, 1, "%s", a);
        if (strstr(a, "didn't answer")) { /* the shop was down: no card */
            cr_assert_eq(p.n_tags, 0, "%s", a);
            continue;
        }
        cr_assert_eq(p.n_tags, 1, "%s", a);
        static const char *const names[] = {"price", "stock", "delivery", "compare"};
        int k = -1;
        for (int j = 0; j < 4; j++)
            if (!strcmp(p.tag, names[j]))
                k = j;
        cr_assert_geq(k, 0, "tag %s", p.tag);
        kinds[k]++;
        cr_assert_eq(p.n_ids, k == 3 ? 2 : 1);
        for (size_t c = 0; c < p.n_cites; c++) {
            json_t *e = json_array_get(json_object_get(rec, "evidence"), p.cites[c] - 1);
            cr_assert_str_eq(json_string_value(json_object_get(e, "source")), "offer", "%s", a);
            const char *pid = json_string_value(json_object_get(e, "product_id"));
            cr_assert(!strcmp(pid, p.ids[0]) || (p.n_ids == 2 && !strcmp(pid, p.ids[1])), "%s cites %s", a, pid);
        }
        /* no figure of a cited offer in the prose: price, stock count and
         * delivery time come only from the tag the server fills */
        for (size_t c = 0; c < p.n_cites; c++) {
            json_t *e = json_array_get(json_object_get(rec, "evidence"), p.cites[c] - 1);
            const char *t = json_string_value(json_object_get(e, "text")), *q;
            char cur[8], fig[64];
            double pr;
            long long st;
            int days;
            if (sscanf(t, "Offers: %3s %lf", cur, &pr) == 2) {
                snprintf(fig, sizeof(fig), "%.2f", pr);
                cr_assert_null(strstr(a, fig), "price %s in the prose: %s", fig, a);
            }
            if ((q = strstr(t, " in stock")) != NULL) {
                while (q > t && q[-1] >= '0' && q[-1] <= '9')
                    q--;
                if (sscanf(q, "%lld in stock", &st) == 1) {
                    snprintf(fig, sizeof(fig), "%lld in stock", st);
                    cr_assert_null(strstr(a, fig), "stock count in the prose: %s", a);
                }
            }
            if ((q = strstr(t, "delivers in ")) != NULL && sscanf(q, "delivers in %d day", &days) == 1) {
                snprintf(fig, sizeof(fig), "%d day", days);
                cr_assert_null(strstr(a, fig), "delivery time in the prose: %s", a);
            }
        }
        /* a stale offer line in the prompt: the answer says the fact may be old */
        const char *sys = msg(rec, 0);
        if (k != 3 && strstr(sys, ", stale)") && strstr(a, "out of stock") == NULL &&
            strstr(a, "doesn't give") == NULL) {
            stale_total++;
            stale_said += strstr(a, "may have changed") || strstr(a, "out of date") || strstr(a, "last update");
        }
    }
    cr_assert_gt(stale_total, 0, "the fixture's seed gives stale offers");
    cr_assert_eq(stale_said, stale_total, "%zu of %zu stale answers say so", stale_said, stale_total);
    cr_assert_gt(kinds[0] + kinds[1] + kinds[2] + kinds[3], 8);
    json_decref(all);
    json_decref(dev);
    tu_rmdir(dir);
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
    char *path = tu_path(dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc((size_t)n + 1);
    cr_assert_eq(fread(d, 1, (size_t)n, f), (size_t)n);
    d[n] = '\0';
    fclose(f);
    free(path);
    *len = (size_t)n;
    return d;
}

Test(sft_data, dev_and_test_items_never_in_training)
{
    char *dir = tu_tmpdir();
    build(dir, NULL, (1u << SFT_N_DATASETS) - 1, 3, NULL);
    size_t tn, dn;
    char *train = slurp(dir, "train.jsonl", &tn), *dev = slurp(dir, "dev.jsonl", &dn);
    /* CoQASUM: the dev product only in dev, the test product nowhere */
    cr_assert_null(strstr(train, "B00F3IYJZ6"));
    cr_assert_not_null(strstr(dev, "B00F3IYJZ6"));
    cr_assert_null(strstr(train, "B009OULPE2"));
    cr_assert_null(strstr(dev, "B009OULPE2"));
    /* every question of a dev file is absent from training (read from the fixture files) */
    static const struct {
        const char *file, *col;
        char delim;
    } devs[] = {
        {"contextual-pqa/hetPQA/answer_generation/dev.csv.gz", "question", '\t'},
        {"subjqa/electronics/dev.csv.gz", "question", ','},
        {"fewsum-amazon/val.csv.gz", "summ1", '\t'},
        {"contextual-pqa/semiPQA/data-to-text/dev.csv.gz", "text", '\t'},
    };
    char *data = fixtures(), err[1024];
    size_t n_dev_items = 0;
    for (size_t k = 0; k < sizeof(devs) / sizeof(devs[0]); k++) {
        char *path = tu_path(data, devs[k].file);
        struct sft_table *t;
        cr_assert_eq(sft_table_open(&t, path, devs[k].delim, err, sizeof(err)), 0, "%s", err);
        int col = sft_table_col(t, devs[k].col);
        cr_assert_geq(col, 0);
        char **f;
        size_t n;
        while (sft_table_next(t, &f, &n) == 0) {
            /* compare as JSON would write it: the first 40 bytes, escaped */
            json_t *s = json_stringn(f[col], strlen(f[col]) < 40 ? strlen(f[col]) : 40);
            char *enc = json_dumps(s, JSON_ENCODE_ANY);
            enc[strlen(enc) - 1] = '\0'; /* drop the closing quote: a prefix */
            /* generic questions ("How is the product?") repeat across splits by design of SubjQA */
            if (strlen(f[col]) > 30) {
                cr_assert_null(strstr(train, enc + 1), "%s: dev item in training: %s", devs[k].file, f[col]);
                n_dev_items++;
            }
            free(enc);
            json_decref(s);
        }
        sft_table_close(t);
        free(path);
    }
    cr_assert_gt(n_dev_items, 10);
    /* datasets split by product: no product id in both */
    json_t *tr = read_jsonl(dir, "train.jsonl"), *dv = read_jsonl(dir, "dev.jsonl");
    struct hset ids;
    hset_init(&ids);
    size_t i;
    json_t *rec;
    json_array_foreach(tr, i, rec)
    {
        const char *ds = json_string_value(json_object_get(rec, "dataset"));
        if (!strcmp(ds, "mcauley-qa") || !strcmp(ds, "demo-qa")) {
            char id[128];
            snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(rec, "id")));
            id[strcspn(id, "#")] = '\0';
            hset_put(&ids, id, 0);
        }
    }
    size_t dev_qa = 0;
    json_array_foreach(dv, i, rec)
    {
        const char *ds = json_string_value(json_object_get(rec, "dataset"));
        if (!strcmp(ds, "mcauley-qa") || !strcmp(ds, "demo-qa")) {
            char id[128];
            uint64_t v;
            snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(rec, "id")));
            id[strcspn(id, "#")] = '\0';
            cr_assert_eq(hset_get(&ids, id, &v), 0, "product %s in train and dev", id);
            dev_qa++;
        }
    }
    cr_assert_gt(dev_qa, 0, "some product falls in dev");
    hset_release(&ids);
    json_decref(tr);
    json_decref(dv);
    free(data);
    free(train);
    free(dev);
    tu_rmdir(dir);
}

Test(sft_data, deterministic_for_a_seed)
{
    char *a = tu_tmpdir(), *b = tu_tmpdir(), *c = tu_tmpdir();
    struct tok *t = load_tok();
    build(a, t, (1u << SFT_N_DATASETS) - 1, 5, NULL);
    build(b, t, (1u << SFT_N_DATASETS) - 1, 5, NULL);
    build(c, t, (1u << SFT_N_DATASETS) - 1, 6, NULL);
    static const char *const files[] = {"train.jsonl", "dev.jsonl", "train.sft", "dev.sft"};
    for (size_t k = 0; k < 4; k++) {
        size_t na, nb, nc;
        char *da = slurp(a, files[k], &na), *db = slurp(b, files[k], &nb), *dc = slurp(c, files[k], &nc);
        cr_assert_eq(na, nb, "%s", files[k]);
        cr_assert_eq(memcmp(da, db, na), 0, "%s differs for the same seed", files[k]);
        cr_assert(na != nc || memcmp(da, dc, na), "%s is the same for another seed", files[k]);
        free(da);
        free(db);
        free(dc);
    }
    tok_free(t);
    tu_rmdir(a);
    tu_rmdir(b);
    tu_rmdir(c);
}

Test(sft_data, table_reader)
{
    char *dir = tu_tmpdir(), *path = tu_path(dir, "t.tsv.gz"), err[1024];
    tu_write_str(path, "a\tb\tc\n"
                       "1\t\"two\ttabs \"\"q\"\"\"\t3\n"
                       "\n"
                       "x\t\"multi\nline\"\ty\n"
                       "bad\t\"closed\"junk\tz\n"
                       "4\t5\t6\n");
    struct sft_table *t;
    cr_assert_eq(sft_table_open(&t, path, '\t', err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sft_table_col(t, "c"), 2);
    cr_assert_eq(sft_table_col(t, "d"), -1);
    char **f;
    size_t n;
    cr_assert_eq(sft_table_next(t, &f, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(f[1], "two\ttabs \"q\"");
    cr_assert_eq(sft_table_next(t, &f, &n), 0);
    cr_assert_str_eq(f[1], "multi\nline");
    cr_assert_eq(sft_table_line(t), 4);
    cr_assert_eq(sft_table_next(t, &f, &n), AISLE_EFORMAT);
    cr_assert(strstr(sft_table_error(t), "t.tsv.gz:6: field 2: text after a closing quote"), "%s",
              sft_table_error(t));
    cr_assert_eq(sft_table_next(t, &f, &n), 0, "the next record after a bad one");
    cr_assert_str_eq(f[0], "4");
    cr_assert_eq(sft_table_next(t, &f, &n), AISLE_EEOF);
    sft_table_close(t);
    /* an unclosed quote at the end */
    tu_write_str(path, "a\tb\n1\t\"open\n");
    cr_assert_eq(sft_table_open(&t, path, '\t', err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sft_table_next(t, &f, &n), AISLE_EFORMAT);
    cr_assert(strstr(sft_table_error(t), ":2: a quoted field is never closed"), "%s", sft_table_error(t));
    sft_table_close(t);
    /* a corrupt gzip file names itself */
    char *bad = tu_path(dir, "corrupt.tsv");
    tu_write(bad, "\x1f\x8b\x08\x00garbage-garbage", 19); /* a gzip header, then garbage */
    int rc = sft_table_open(&t, bad, '\t', err, sizeof(err));
    cr_assert(rc == AISLE_EFORMAT || rc == AISLE_EIO, "%d", rc);
    cr_assert(strstr(err, "corrupt.tsv"), "%s", err);
    free(bad);
    free(path);
    tu_rmdir(dir);
}

Test(sft_data, cite_and_bad_files)
{
    struct buf b;
    buf_init(&b, 0);
    sft_cite(&b, "It fits.  ", 10, 2, "B005AR75A6");
    cr_assert_str_eq(b.data, "It fits [2]. <product id=\"B005AR75A6\"/>");
    buf_reset(&b);
    sft_cite(&b, "yes", 3, 1, "not an id!");
    cr_assert_str_eq(b.data, "yes [1]");
    buf_reset(&b);
    sft_cite(&b, "Really?!", 8, 3, NULL);
    cr_assert_str_eq(b.data, "Really [3]?!");
    buf_release(&b);

    /* a hetPQA file without its answer column, and one with a bad record */
    char *dir = tu_tmpdir(), *out = tu_path(dir, "out"), *sub = tu_path(dir, "contextual-pqa/hetPQA/answer_generation");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s' '%s'", out, sub);
    cr_assert_eq(system(cmd), 0);
    char *f = tu_path(sub, "train.csv.gz");
    tu_write_str(f, "ASIN\tquestion\tcandidate\tsource\nB1\tq?\tc\tCQA\n");
    struct sft_out *so;
    char err[1024];
    cr_assert_eq(sft_out_open(&so, out, NULL, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sft_build(so, SFT_HETPQA, dir, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "train.csv.gz: no column 'answer'"), "%s", err);
    /* invalid UTF-8 and an empty answer are counted, the rest built */
    const char good[] = "ASIN\tquestion\tcandidate\tanswer\tsource\n"
                        "B1\tdoes it fit?\tit fits a kenmore\tIt fits.\tCQA\n"
                        "B1\tbad \xff bytes?\tc\ta\tCQA\n"
                        "B2\tempty?\tc\t\tCQA\n";
    tu_write_str(f, good);
    cr_assert_eq(sft_build(so, SFT_HETPQA, dir, err, sizeof(err)), 0, "no dev file is fine: %s", err);
    const struct sft_stats *st = sft_out_stats(so, SFT_HETPQA, SFT_TRAIN);
    cr_assert_eq(st->rejected, 2);
    cr_assert_eq(st->records, 3, "the first file failed at its header");
    /* a dataset whose files are absent */
    cr_assert_eq(sft_build(so, SFT_COQASUM, dir, err, sizeof(err)), AISLE_ENOTFOUND);
    cr_assert(strstr(err, "coqasum_products.jsonl.gz"), "%s", err);
    sft_out_free(so);
    free(f);
    free(sub);
    free(out);
    tu_rmdir(dir);
}

Test(sft_cli, build_and_usage)
{
    char *dir = tu_tmpdir(), *res, *data = fixtures();
    char *tokp = tu_path(tu_root(), "tests/fixtures/tok/llamacpp-bpe4096.gguf");
    int rc = tu_run(&res, "'%s' sft build --data-dir '%s' --tokenizer '%s' --out '%s/o' --seed 2", tu_aisle(), data,
                    tokp, dir);
    cr_assert_eq(rc, 0, "%s", res);
    cr_assert(strstr(res, "hetpqa"), "%s", res);
    cr_assert(strstr(res, "wrote"), "%s", res);
    free(res);
    /* one dataset, JSONL only */
    rc = tu_run(&res, "'%s' sft build --data-dir '%s' --datasets fewsum --out '%s/j'", tu_aisle(), data, dir);
    cr_assert_eq(rc, 0, "%s", res);
    cr_assert(strstr(res, "train 6 examples"), "%s", res);
    cr_assert(strstr(res, "JSONL only"), "%s", res);
    free(res);
    rc = tu_run(&res, "'%s' sft", tu_aisle());
    cr_assert_eq(rc, 2);
    cr_assert(strstr(res, "aisle train --init MODEL.gguf --sft"), "%s", res);
    free(res);
    rc = tu_run(&res, "'%s' sft build --help", tu_aisle());
    cr_assert_eq(rc, 0);
    cr_assert(strstr(res, "--tokenizer"), "%s", res);
    free(res);
    rc = tu_run(&res, "'%s' sft build --data-dir '%s'", tu_aisle(), data);
    cr_assert_eq(rc, 2, "%s", res);
    cr_assert(strstr(res, "--out is required"), "%s", res);
    free(res);
    rc = tu_run(&res, "'%s' sft build --out '%s/x' --datasets nope", tu_aisle(), dir);
    cr_assert_eq(rc, 2, "%s", res);
    cr_assert(strstr(res, "unknown dataset 'nope'"), "%s", res);
    free(res);
    rc = tu_run(&res, "'%s' sft build --out '%s/y' --data-dir '%s' --datasets coqasum", tu_aisle(), dir, dir);
    cr_assert_eq(rc, 1, "%s", res);
    cr_assert(strstr(res, "coqasum_products.jsonl.gz"), "%s", res);
    free(res);
    rc = tu_run(&res, "'%s' sft build --out '%s/z' --data-dir '%s' --tokenizer '%s/none.gguf'", tu_aisle(), dir, data,
                dir);
    cr_assert_eq(rc, 1, "%s", res);
    cr_assert(strstr(res, "none.gguf"), "%s", res);
    free(res);
    free(tokp);
    free(data);
    tu_rmdir(dir);
}
