/*
 * resolve_test.c — which product a question is about, on the demo store: the
 * product page, a part number, title words, a multi-turn conversation whose
 * follow-ups keep the product and whose newly named product replaces it, and a
 * broad question that returns several products (issue 6, part 2).
 */
#include "demo_store.h"

#include "core/error.h"
#include "retrieval/resolve.h"

static void resolve(struct store *s, const char *q, const char *page, const struct resolve_conv *conv,
                    struct resolution *r)
{
    char err[512];
    cr_assert_eq(resolve_product(s, q, page, conv, r, err, sizeof(err)), 0, "'%s': %s", q, err);
}

static void expect(const struct resolution *r, enum resolve_why why, const char *pid, const char *q)
{
    cr_assert_eq(r->why, why, "'%s': resolved by %s (%s), expected %s", q, resolve_why_name(r->why), r->detail,
                 resolve_why_name(why));
    cr_assert_eq(r->n, 1, "'%s': %zu products", q, r->n);
    cr_assert_str_eq(r->products[0], pid, "'%s' (%s)", q, r->detail);
}

Test(resolve, page_part_number_and_title)
{
    char *dir, *db;
    struct store *s = demo_store_open(&dir, &db);
    struct resolution r;

    resolve(s, "is it dishwasher safe?", "B00545ATZW", NULL, &r);
    expect(&r, RESOLVE_PAGE, "B00545ATZW", "page");
    cr_assert_float_eq(r.confidence, 1.0, 1e-9);

    /* Part numbers: in the title, only in a bullet, as a product id, in any case. */
    resolve(s, "is the w10130695 latch easy to install", NULL, NULL, &r);
    expect(&r, RESOLVE_PART_NUMBER, "B005AR75A6", "title part number");
    cr_assert(strstr(r.detail, "w10130695") != NULL, "%s", r.detail);
    resolve(s, "does this replace WPW10130694?", NULL, NULL, &r);
    expect(&r, RESOLVE_PART_NUMBER, "B005AR75A6", "bullet part number");
    resolve(s, "tell me about b005ar75a6", NULL, NULL, &r);
    expect(&r, RESOLVE_PART_NUMBER, "B005AR75A6", "product id");
    cr_assert_geq(r.confidence, 0.9);
    /* A hyphenated model number is a phrase of two index tokens. */
    resolve(s, "will the AB-ICE26S make clear ice?", NULL, NULL, &r);
    expect(&r, RESOLVE_PART_NUMBER, "B00IY7BNUW", "hyphenated model");
    /* A part number named on another product's page wins over the page. */
    resolve(s, "is this the same as w10130695?", "B00545ATZW", NULL, &r);
    expect(&r, RESOLVE_PART_NUMBER, "B005AR75A6", "part number over page");

    /* Title words, brand included. */
    resolve(s, "does the whirlpool dishwasher latch come in black?", NULL, NULL, &r);
    expect(&r, RESOLVE_TITLE, "B005AR75A6", "title words");
    cr_assert_geq(r.confidence, RESOLVE_TITLE_THRESHOLD);
    resolve(s, "how long does the nokia lumia 1520 battery last", NULL, NULL, &r);
    expect(&r, RESOLVE_TITLE, "B00H2BJ7WC", "nokia");

    /* Words a shopper might write, but no product named: not resolved to one. */
    resolve(s, "is it waterproof", NULL, NULL, &r);
    cr_assert_neq(r.why, RESOLVE_TITLE, "%s", r.detail);

    /* An unknown page is an error naming it. */
    char err[512];
    cr_assert_eq(resolve_product(s, "hi", "NOPE123", NULL, &r, err, sizeof(err)), AISLE_ENOTFOUND);
    cr_assert(strstr(err, "NOPE123") != NULL, "%s", err);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

Test(resolve, follow_ups_in_a_conversation)
{
    char *dir, *db;
    struct store *s = demo_store_open(&dir, &db);
    struct resolve_conv conv = {0};
    static const struct {
        const char *q;
        enum resolve_why why;
        const char *pid;
    } turns[] = {
        {"does the whirlpool dishwasher latch come in black?", RESOLVE_TITLE, "B005AR75A6"},
        {"how much is it?", RESOLVE_PREVIOUS, "B005AR75A6"},
        {"does it come in white?", RESOLVE_PREVIOUS, "B005AR75A6"},
        {"shipping?", RESOLVE_PREVIOUS, "B005AR75A6"},               /* ellipsis, no pronoun */
        {"what about the frigidaire crisper pan for my refrigerator?", RESOLVE_TITLE, "B00545ATZW"}, /* a switch */
        {"is it in stock?", RESOLVE_PREVIOUS, "B00545ATZW"},
        {"will it fit a whirlpool refrigerator?", RESOLVE_PREVIOUS, "B00545ATZW"}, /* names a brand, points back */
        {"and the w10130695?", RESOLVE_PART_NUMBER, "B005AR75A6"},  /* a switch by part number */
        {"how long is its warranty?", RESOLVE_PREVIOUS, "B005AR75A6"},
    };
    for (size_t i = 0; i < sizeof(turns) / sizeof(turns[0]); i++) {
        struct resolution r;
        resolve(s, turns[i].q, NULL, &conv, &r);
        expect(&r, turns[i].why, turns[i].pid, turns[i].q);
        resolve_conv_push(&conv, &r);
        cr_assert_str_eq(resolve_conv_current(&conv), turns[i].pid);
    }
    cr_assert_eq(conv.n, sizeof(turns) / sizeof(turns[0]));

    /* A broad question after all that searches the catalog. */
    struct resolution r;
    resolve(s, "what tactical pants are good for hiking", NULL, &conv, &r);
    cr_assert_eq(r.why, RESOLVE_CATALOG, "%s: %s", resolve_why_name(r.why), r.detail);
    /* ... and a broad turn does not replace the product follow-ups refer to. */
    resolve_conv_push(&conv, &r);
    cr_assert_str_eq(resolve_conv_current(&conv), "B005AR75A6");

    /* The state keeps the latest RESOLVE_MAX_TURNS turns. */
    struct resolution one = {.why = RESOLVE_PAGE, .n = 1, .products = {"P1"}};
    for (int i = 0; i < RESOLVE_MAX_TURNS + 5; i++)
        resolve_conv_push(&conv, &one);
    cr_assert_eq(conv.n, RESOLVE_MAX_TURNS);
    cr_assert_str_eq(resolve_conv_current(&conv), "P1");
    store_close(s);
    free(db);
    tu_rmdir(dir);
}

Test(resolve, broad_questions_return_several_products)
{
    char *dir, *db;
    struct store *s = demo_store_open(&dir, &db);
    struct resolution r;
    const char *qs[] = {"what do i need for cold weather golf?", "lightweight tactical pants for men",
                        "a good sewing machine for a beginner"};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        resolve(s, qs[i], NULL, NULL, &r);
        cr_assert_eq(r.why, RESOLVE_CATALOG, "'%s': %s (%s)", qs[i], resolve_why_name(r.why), r.detail);
        cr_assert_geq(r.n, 3, "'%s': %zu products", qs[i], r.n);
        for (size_t a = 0; a < r.n; a++)
            for (size_t b = a + 1; b < r.n; b++)
                cr_assert_str_neq(r.products[a], r.products[b], "distinct products");
    }
    /* and they are about the question: some golf product for golf */
    resolve(s, qs[0], NULL, NULL, &r);
    int golf = 0;
    for (size_t i = 0; i < r.n; i++)
        golf |= !strcmp(r.products[i], "B0047YQ2MK") || !strcmp(r.products[i], "B007XV7W46") ||
                !strcmp(r.products[i], "B00HQE9DA6");
    cr_assert(golf, "a golf product among the results");
    /* Any bytes resolve without error. */
    resolve(s, "\xff\xfe\" NEAR( * -- ", NULL, NULL, &r);
    resolve(s, "", NULL, NULL, &r);
    cr_assert_eq(r.why, RESOLVE_NONE);
    store_close(s);
    free(db);
    tu_rmdir(dir);
}
