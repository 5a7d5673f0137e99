/*
 * resolve.h — which product(s) a shopper's question is about.
 *
 * In order of strength: a model or part number written in the question
 * ("w10130695", "B005AR75A6": tokens mixing letters and digits, looked up as
 * exact tokens in the catalog's FTS index over titles, bullets and attributes,
 * and as product ids); a product named by its title words (catalog BM25, then
 * a coverage score of the question's words over the best title, with a margin
 * over the runner-up and a confidence threshold); the product page the shopper
 * is on; the product of earlier turns, kept for follow-ups that point back at it
 * ("does it come in white?", "how much?"). A question that names nothing and
 * points at nothing searches the whole catalog and returns several distinct
 * products.
 *
 * A named product replaces the page's or the conversation's product only when
 * the question does not point back ("it", "this", "they" ...): "will it fit my
 * frigidaire?" on a crisper page stays on the page.
 *
 * Ownership: results are plain structs with fixed-size fields (caller storage).
 * THREAD SAFETY: uses the caller's store connection; one thread per store.
 */
#ifndef AISLE_RETRIEVAL_RESOLVE_H
#define AISLE_RETRIEVAL_RESOLVE_H

#include <stddef.h>

#include "store/store.h"

#define RESOLVE_MAX_PRODUCTS 6
#define RESOLVE_ID_MAX 257 /* INGEST_MAX_ID + NUL */
#define RESOLVE_MAX_TURNS 64
#define RESOLVE_TITLE_THRESHOLD 0.65 /* confidence a title match needs */

enum resolve_why {
    RESOLVE_NONE,        /* nothing found (empty store, no words) */
    RESOLVE_PAGE,        /* the product page the shopper is on */
    RESOLVE_PART_NUMBER, /* a model/part number or product id in the question */
    RESOLVE_TITLE,       /* title words in the question */
    RESOLVE_PREVIOUS,    /* the product of an earlier turn */
    RESOLVE_CATALOG,     /* a broad question: several products from a catalog search */
};

/* "none", "page", "part_number", "title", "previous_turn", "catalog". */
const char *resolve_why_name(enum resolve_why why);

struct resolution {
    enum resolve_why why;
    double confidence; /* 0..1 */
    size_t n;          /* products, best first */
    char products[RESOLVE_MAX_PRODUCTS][RESOLVE_ID_MAX];
    char detail[160];  /* why, in words: the part number, the matched title words ... */
};

/* Conversation state: each earlier user turn with what it resolved to. */
struct resolve_conv {
    size_t n;
    struct {
        enum resolve_why why;
        char product[RESOLVE_ID_MAX]; /* "" when the turn was broad or found nothing */
    } turns[RESOLVE_MAX_TURNS];       /* oldest first; older turns drop off the front */
};

/* Resolve one question. page_product may be NULL; conv may be NULL (first
 * turn). 0 with *out set; AISLE_EDB / AISLE_ENOMEM with the message in err. A
 * page product that does not exist is AISLE_ENOTFOUND ("no product 'X'"). */
int resolve_product(struct store *s, const char *question, const char *page_product, const struct resolve_conv *conv,
                    struct resolution *out, char *err, size_t errlen);

struct lex_hit;
/* The same, also handing over the catalog search (BM25 over catalog passages,
 * best first) it ran to match titles, for a caller that would search the
 * catalog again (evidence.c, for a broad question): *hits (free with
 * lex_hits_free) and *nhits, NULL and 0 when it ran none. Written only on
 * success. */
int resolve_product_hits(struct store *s, const char *question, const char *page_product,
                         const struct resolve_conv *conv, struct resolution *out, struct lex_hit **hits, size_t *nhits,
                         char *err, size_t errlen);

/* Record a resolved turn in the conversation (the oldest turn drops off when full). */
void resolve_conv_push(struct resolve_conv *c, const struct resolution *r);
/* The product follow-ups refer to: the latest turn that resolved to one
 * product; NULL when none. */
const char *resolve_conv_current(const struct resolve_conv *c);

#endif
