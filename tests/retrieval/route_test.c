/*
 * route_test.c — the source router: training is deterministic, the trained
 * model beats the keyword baseline on held-out questions, the shipped model
 * routes store-API questions, and the model reader refuses damaged files with
 * a message that says what is wrong (issue 6, part 3).
 */
#include "../testutil.h"

#include "core/error.h"
#include "core/hset.h"
#include "retrieval/route.h"

#define HOLDOUT 25

static void read_fixtures(struct route_set *set, const char *const *names, size_t n)
{
    char err[1024];
    route_set_init(set);
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/tests/fixtures/route/%s", tu_root(), names[i]);
        cr_assert_eq(route_set_read(set, path, err, sizeof(err)), 0, "%s", err);
    }
}

static const char *const train_files[] = {"hetpqa_train.jsonl.gz", "semipqa_attr_dev.jsonl.gz", "api_questions.jsonl"};

static int keep_train(const char *q, void *ctx)
{
    (void)ctx;
    return !route_heldout(q, HOLDOUT);
}

static struct route_model *train(const struct route_set *set)
{
    char err[512];
    struct route_model *m;
    cr_assert_eq(route_train(&m, set, keep_train, NULL, NULL, err, sizeof(err)), 0, "%s", err);
    return m;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

Test(route, training_is_deterministic)
{
    struct route_set set;
    read_fixtures(&set, train_files, 3);
    cr_assert_gt(set.n, 4000, "%zu examples", set.n);
    char *dir = tu_tmpdir(), *a = tu_path(dir, "a.bin"), *b = tu_path(dir, "b.bin"), err[512];
    struct route_model *m1 = train(&set), *m2 = train(&set);
    cr_assert_eq(route_model_save(m1, a, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(route_model_save(m2, b, err, sizeof(err)), 0, "%s", err);
    size_t la, lb;
    unsigned char *da = slurp(a, &la), *db = slurp(b, &lb);
    cr_assert_eq(la, lb);
    cr_assert(!memcmp(da, db, la), "two trainings on the same data give the same bytes");
    /* and the file reads back to the same predictions */
    struct route_model *m3;
    cr_assert_eq(route_model_load(&m3, a, err, sizeof(err)), 0, "%s", err);
    struct route r1, r3;
    cr_assert_eq(route_question(m1, "is it in stock in white?", &r1), 0);
    cr_assert_eq(route_question(m3, "is it in stock in white?", &r3), 0);
    for (int s = 0; s < ROUTE_NSRC; s++)
        cr_assert_float_eq(r1.score[s], r3.score[s], 1e-6);
    free(da);
    free(db);
    route_model_free(m1);
    route_model_free(m2);
    route_model_free(m3);
    route_set_release(&set);
    free(a);
    free(b);
    tu_rmdir(dir);
}

static void evaluate(const struct route_model *m, const struct route_set *set, int heldout_only,
                     struct route_eval *em, struct route_eval *ek)
{
    memset(em, 0, sizeof(*em));
    memset(ek, 0, sizeof(*ek));
    for (size_t i = 0; i < set->n; i++) {
        if (heldout_only && !route_heldout(set->v[i].q, HOLDOUT))
            continue;
        struct route r;
        cr_assert_eq(route_question(m, set->v[i].q, &r), 0);
        route_eval_add(em, set->v[i].labels, &r);
        cr_assert_eq(route_keyword(set->v[i].q, &r), 0);
        route_eval_add(ek, set->v[i].labels, &r);
    }
}

Test(route, model_beats_keyword_baseline_on_held_out_questions)
{
    struct route_set set, er;
    read_fixtures(&set, train_files, 3);
    static const char *const er_files[] = {"hetpqa_er_dev.jsonl.gz"};
    read_fixtures(&er, er_files, 1);
    struct route_model *m = train(&set);
    struct route_eval em, ek;

    /* 25% of the training files, never trained on */
    evaluate(m, &set, 1, &em, &ek);
    cr_assert_gt(em.n, 800);
    cr_log_info("held out: model macro-F1 %.3f api-F1 %.3f; keyword %.3f %.3f", route_eval_macro_f1(&em),
                route_eval_f1(&em, ROUTE_API), route_eval_macro_f1(&ek), route_eval_f1(&ek, ROUTE_API));
    cr_assert_gt(route_eval_macro_f1(&em), route_eval_macro_f1(&ek) + 0.03, "model %.3f vs keywords %.3f",
                 route_eval_macro_f1(&em), route_eval_macro_f1(&ek));
    cr_assert_gt(route_eval_f1(&em, ROUTE_API), route_eval_f1(&ek, ROUTE_API), "store-API questions: %.3f vs %.3f",
                 route_eval_f1(&em, ROUTE_API), route_eval_f1(&ek, ROUTE_API));

    /* hetPQA evidence-ranking dev: another split, labelled by positive evidence */
    evaluate(m, &er, 0, &em, &ek);
    cr_assert_eq(em.n, er.n);
    cr_assert_gt(route_eval_macro_f1(&em), route_eval_macro_f1(&ek) + 0.03, "ER dev: model %.3f vs keywords %.3f",
                 route_eval_macro_f1(&em), route_eval_macro_f1(&ek));
    route_model_free(m);
    route_set_release(&set);
    route_set_release(&er);
}

Test(route, shipped_model_routes_store_questions)
{
    char path[1024], err[512];
    snprintf(path, sizeof(path), "%s/models/router.bin", tu_root());
    struct route_model *m;
    cr_assert_eq(route_model_load(&m, path, err, sizeof(err)), 0, "%s", err);
    const char *api[] = {"how much is it?", "when will my order arrive", "is this in stock?",
                         "how long does shipping take to 10115?"};
    for (size_t i = 0; i < sizeof(api) / sizeof(api[0]); i++) {
        struct route r;
        cr_assert_eq(route_question(m, api[i], &r), 0);
        cr_assert(r.use[ROUTE_API], "'%s' -> api (%.3f)", api[i], r.score[ROUTE_API]);
    }
    const char *not_api[] = {"does it come in white?", "what material is the handle made of?",
                             "will this fit my frigidaire?"};
    for (size_t i = 0; i < sizeof(not_api) / sizeof(not_api[0]); i++) {
        struct route r;
        cr_assert_eq(route_question(m, not_api[i], &r), 0);
        cr_assert_not(r.use[ROUTE_API], "'%s' is not a store-API question (%.3f)", not_api[i], r.score[ROUTE_API]);
        cr_assert(r.use[ROUTE_CATALOG] || r.use[ROUTE_QA] || r.use[ROUTE_REVIEWS]);
    }
    /* any bytes route */
    struct route r;
    cr_assert_eq(route_question(m, "", &r), 0);
    cr_assert_eq(route_question(m, "\xff\xfe \" NEAR( *", &r), 0);
    route_model_free(m);
}

/* Rewrite the trailing checksum after a deliberate edit, so the value checks
 * (not just the checksum) are what refuses the file. */
static void fix_sum(unsigned char *b, size_t len)
{
    uint64_t h = hset_hash(HSET_FNV_SEED, b, len - 8);
    for (int i = 0; i < 8; i++)
        b[len - 8 + i] = (unsigned char)(h >> (8 * i));
}

static void refused(const unsigned char *b, size_t len, int want, const char *needle)
{
    struct route_model *m = NULL;
    char err[512] = "";
    int rc = route_model_parse(&m, b, len, err, sizeof(err));
    cr_assert_eq(rc, want, "rc %d (%s), want %d", rc, err, want);
    cr_assert_null(m);
    cr_assert(strstr(err, needle) != NULL, "message '%s' names '%s'", err, needle);
}

Test(route, reader_refuses_damaged_models)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/models/router.bin", tu_root());
    size_t len;
    unsigned char *good = slurp(path, &len);
    unsigned char *b = malloc(len);

    refused(good, 7, AISLE_EFORMAT, "magic");
    refused(good, len - 1, AISLE_EFORMAT, "bytes, expected");
    memcpy(b, good, len);
    b[0] = 'X';
    refused(b, len, AISLE_EFORMAT, "magic");
    memcpy(b, good, len);
    b[8] = 9; /* version */
    refused(b, len, AISLE_EFORMAT, "version 9");
    memcpy(b, good, len);
    b[12] = 5; /* sources */
    refused(b, len, AISLE_EFORMAT, "5 sources");
    memcpy(b, good, len);
    b[16] = 3; /* nbuckets 16384 + 3: not a power of two */
    refused(b, len, AISLE_EFORMAT, "power of two");
    memcpy(b, good, len);
    b[19] = 0x7f; /* nbuckets huge */
    refused(b, len, AISLE_ETOOBIG, "nbuckets");
    memcpy(b, good, len);
    b[len / 2] ^= 0x40;
    refused(b, len, AISLE_EFORMAT, "checksum");
    /* a NaN weight with a valid checksum */
    memcpy(b, good, len);
    size_t off = 24 + 32 + 4 * 100;
    b[off] = 0x00, b[off + 1] = 0x00, b[off + 2] = 0xc0, b[off + 3] = 0x7f;
    fix_sum(b, len);
    refused(b, len, AISLE_EFORMAT, "weight 100 of catalog");
    /* a threshold of 1.5 */
    memcpy(b, good, len);
    b[24 + 4] = 0x00, b[25 + 4] = 0x00, b[26 + 4] = 0xc0, b[27 + 4] = 0x3f;
    fix_sum(b, len);
    refused(b, len, AISLE_EFORMAT, "threshold of reviews");

    /* the good bytes still parse */
    struct route_model *m;
    char err[256];
    cr_assert_eq(route_model_parse(&m, good, len, err, sizeof(err)), 0, "%s", err);
    route_model_free(m);
    cr_assert_eq(route_model_load(&m, "/nonexistent/router.bin", err, sizeof(err)), AISLE_EIO);
    cr_assert(strstr(err, "/nonexistent/router.bin") != NULL, "%s", err);
    free(b);
    free(good);
}

Test(route, labelled_data_errors_name_file_and_line)
{
    char *dir = tu_tmpdir(), *p = tu_path(dir, "bad.jsonl"), err[512];
    struct route_set set;
    route_set_init(&set);
    tu_write_str(p, "{\"_comment\": \"x\"}\n{\"q\": \"ok?\", \"sources\": [\"api\"]}\n\n"
                    "{\"q\": \"bad\", \"sources\": [\"shipping\"]}\n");
    cr_assert_eq(route_set_read(&set, p, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "bad.jsonl:4: sources[0]") != NULL, "%s", err);
    cr_assert_eq(set.n, 1);
    cr_assert_eq(set.v[0].labels, 1u << ROUTE_API);
    tu_write_str(p, "{\"q\": \"a\", \"sources\": []} trailing\n");
    cr_assert_eq(route_set_read(&set, p, err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, ":1: invalid JSON") != NULL, "%s", err);
    route_set_release(&set);
    free(p);
    tu_rmdir(dir);
}

Test(route_cli, train_eval_ask)
{
    char *dir = tu_tmpdir(), *out;
    const char *F = "tests/fixtures/route";
    int st = tu_run(&out, "cd '%s' && '%s' route train --out '%s/a.bin' --holdout 25 %s/api_questions.jsonl && "
                          "'%s' route train --out '%s/b.bin' --holdout 25 %s/api_questions.jsonl && cmp '%s/a.bin' '%s/b.bin'",
                    tu_root(), tu_aisle(), dir, F, tu_aisle(), dir, F, dir, dir);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "held out") != NULL, "%s", out);
    free(out);
    st = tu_run(&out, "cd '%s' && '%s' route eval --model '%s/a.bin' --holdout 25 %s/api_questions.jsonl", tu_root(),
                tu_aisle(), dir, F);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "model ") && strstr(out, "keyword ") && strstr(out, "majority "), "%s", out);
    free(out);
    st = tu_run(&out, "cd '%s' && '%s' route ask --model models/router.bin how much is it", tu_root(), tu_aisle());
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "api") && strstr(out, "*"), "%s", out);
    free(out);
    char *bad = tu_path(dir, "bad.jsonl");
    tu_write_str(bad, "{\"q\": 1, \"sources\": []}\n");
    cr_assert_eq(tu_run(&out, "'%s' route train --out '%s/c.bin' '%s'", tu_aisle(), dir, bad), 1);
    cr_assert(strstr(out, "bad.jsonl:1: q:") != NULL, "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "'%s' route ask --model '%s'/nope.bin hi", tu_aisle(), dir), 1);
    cr_assert(strstr(out, "nope.bin") != NULL, "%s", out);
    free(out);
    free(bad);
    tu_rmdir(dir);
}
