/*
 * ingest.c — parse, validate and upsert merchant records; see ingest.h.
 *
 * Each kind has a parse_* function that turns one JSON object into the store's
 * record struct (a struct rec) or fails with "field: what" in ctx->msg. CSV
 * product rows are first mapped to the same JSON shape, so one validator serves
 * both formats.
 *
 * A file loads in two threads: a parser thread reads, splits, parses and
 * validates records into batches (struct batch) and the calling thread only
 * writes them to the store, in file order, so reports, counts and the database
 * are those of a one-thread load. A bounded set of batches circulates between
 * them (full ones to the writer, empty ones back); the parser frees its JSON
 * objects itself when a batch comes back. Item arrays (bullets, attributes,
 * answers...) live in each batch's pools, allocated once per file, so no record
 * allocates them. Invariants: only the parser touches the context (struct ctx)
 * and the input; only the writer touches the store.
 */
#include "store/ingest.h"
#include "core/buf.h"
#include "core/csv.h"
#include "core/error.h"
#include "core/hset.h"
#include "core/lineio.h"
#include "core/utf8.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REC_ID 24 /* a derived id: prefix, 16 hex digits, NUL */

/* What a record asks of the store; one per parse_* outcome. */
enum rec_op { OP_PRODUCT, OP_REVIEW, OP_QUESTION, OP_ANSWERS, OP_OFFER, OP_ORDER };

/* One record, parsed (or failed) by the parser thread, written by the writer.
 * Strings are borrowed from obj and the batch's pools. */
struct rec {
    int rc;          /* 0: write it; else why it is bad (AISLE_EFORMAT, AISLE_EIO...), in msg */
    int header;      /* rc is about a CSV header: never skipped */
    enum rec_op op;
    uint64_t line;   /* its line (AISLE_EIO: the last line read) */
    uint64_t offset; /* bytes of the file read after it, for progress */
    json_t *obj;     /* owned: freed by the parser when the batch comes back */
    union {
        struct store_product p;
        struct store_review r;
        struct store_question q; /* OP_QUESTION and OP_ANSWERS (answers to add to q.id) */
        struct store_offer o;
        struct store_order ord;
    } u;
    char id[REC_ID];  /* derived id */
    char msg[512];    /* "field: what" when rc != 0 */
};

struct ctx {
    enum ingest_kind kind;
    const struct ingest_opts *o;
    const char *path;
    uint64_t line;
    char msg[512];             /* "field: what" for the current record */
    struct hset seen;          /* ids (keys) of this file -> first line | DERIVED */
    struct hset seen_answers;  /* derived question id + answer -> line */
    /* per-record scratch, sized INGEST_MAX_ITEMS */
    const char **bullets;
    struct store_attr *attrs;
    struct store_answer *answers;
    struct store_order_line *lines;
    struct store_order_event *events;
    char *idbuf;               /* (REC_ID) derived id of the current record, in its struct rec */
    char nowbuf[32];
    /* CSV */
    struct csv csv;
    int is_csv;
    int *colmap;               /* (ncols) field index per column, -1 = attribute, -2 = skip */
    char **colnames;           /* (ncols) attribute names for unmapped columns */
    size_t ncols;
    int catcols[16];           /* columns joined into the category path, in order */
    size_t ncatcols;
};

#define DERIVED (1ULL << 63)

const char *ingest_kind_name(enum ingest_kind k)
{
    switch (k) {
    case INGEST_PRODUCTS: return "products";
    case INGEST_REVIEWS: return "reviews";
    case INGEST_QA: return "qa";
    case INGEST_OFFERS: return "offers";
    case INGEST_ORDERS: return "orders";
    }
    return "?";
}

static int bad(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct ctx *c, const char *fmt, ...)
{
    /* Format into a copy: callers prefix a field reader's message by passing
     * c->msg itself as an argument ("lines[%zu].%s"), and vsnprintf into the
     * buffer it reads from is undefined (it garbled the message). */
    char tmp[sizeof(c->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    memcpy(c->msg, tmp, sizeof(tmp));
    return AISLE_EFORMAT;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* ---- field readers: each returns 0 or AISLE_EFORMAT with c->msg set ---- */

static int check_text(struct ctx *c, const char *field, const char *v, size_t len, size_t max, int allow_nl)
{
    if (len > max)
        return bad(c, "%s: %zu bytes, over the %zu-byte limit", field, len, max);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 && !(allow_nl && (ch == '\n' || ch == '\t' || ch == '\r')))
            return bad(c, "%s: control character 0x%02x at byte %zu", field, ch, i);
    }
    return 0;
}

/* A string field. *out NULL when absent or null and not required. */
static int get_str(struct ctx *c, json_t *obj, const char *field, int required, size_t max, const char **out)
{
    json_t *v = json_object_get(obj, field);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return bad(c, "%s: missing (required)", field);
        return 0;
    }
    if (!json_is_string(v))
        return bad(c, "%s: expected a string, got %s", field, type_name(v));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    int rc = check_text(c, field, s, len, max, max > INGEST_MAX_SHORT);
    if (rc)
        return rc;
    size_t i = 0;
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    if (i == len) {
        if (required)
            return bad(c, "%s: must not be empty", field);
        return 0;
    }
    *out = s;
    return 0;
}

/* An id: a non-empty string or a non-negative integer (kept as its decimal text). */
static int get_id(struct ctx *c, json_t *obj, const char *field, int required, const char **out)
{
    json_t *v = json_object_get(obj, field);
    if (v && json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0)
            return bad(c, "%s: must not be negative", field);
        /* Store the decimal text in the object so it lives as long as the record. */
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "%lld", (long long)n);
        json_t *str = json_string(tmp);
        if (!str || json_object_set_new(obj, field, str))
            return bad(c, "%s: out of memory", field);
        v = json_object_get(obj, field);
    }
    int rc = get_str(c, obj, field, required, INGEST_MAX_ID, out);
    if (rc || !*out)
        return rc;
    const char *s = *out;
    if (isspace((unsigned char)s[0]) || isspace((unsigned char)s[strlen(s) - 1]))
        return bad(c, "%s: leading or trailing space in \"%s\"", field, s);
    return 0;
}

/* An integer in [lo, hi]; *out = dflt when absent/null and not required. */
static int get_int(struct ctx *c, json_t *obj, const char *field, int required, int64_t lo, int64_t hi,
                   int64_t dflt, int64_t *out)
{
    json_t *v = json_object_get(obj, field);
    *out = dflt;
    if (!v || json_is_null(v)) {
        if (required)
            return bad(c, "%s: missing (required)", field);
        return 0;
    }
    int64_t n;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        n = (int64_t)json_real_value(v);
    } else {
        return bad(c, "%s: expected an integer, got %s", field, type_name(v));
    }
    if (n < lo || n > hi)
        return bad(c, "%s: %lld is out of range [%lld, %lld]", field, (long long)n, (long long)lo, (long long)hi);
    *out = n;
    return 0;
}

static int get_date(struct ctx *c, json_t *obj, const char *field, int required, int need_time, const char **out)
{
    int rc = get_str(c, obj, field, required, 64, out);
    if (rc || !*out)
        return rc;
    if (!ingest_iso8601_ok(*out, need_time))
        return bad(c, "%s: \"%s\" is not an ISO 8601 %s", field, *out,
                   need_time ? "date-time (2024-05-01T12:00:00Z)" : "date (2024-05-01)");
    return 0;
}

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

int ingest_iso8601_ok(const char *s, int need_time)
{
    size_t n = strlen(s);
    if (n < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2))
        return 0;
    int mo = atoi(s + 5), d = atoi(s + 8);
    if (mo < 1 || mo > 12 || d < 1 || d > 31)
        return 0;
    if (n == 10)
        return !need_time;
    const char *t = s + 10;
    if ((*t != 'T' && *t != ' ') || !digits(t + 1, 2) || t[3] != ':' || !digits(t + 4, 2))
        return 0;
    if (atoi(t + 1) > 23 || atoi(t + 4) > 59)
        return 0;
    t += 6;
    if (*t == ':') {
        if (!digits(t + 1, 2) || atoi(t + 1) > 60)
            return 0;
        t += 3;
        if (*t == '.') {
            t++;
            if (!isdigit((unsigned char)*t))
                return 0;
            while (isdigit((unsigned char)*t))
                t++;
        }
    }
    if (*t == 'Z')
        return t[1] == '\0';
    if (*t == '+' || *t == '-')
        return digits(t + 1, 2) && t[3] == ':' && digits(t + 4, 2) && t[6] == '\0';
    return *t == '\0';
}

/* A price: a JSON number or a decimal string, converted exactly to minor units. */
static int get_price(struct ctx *c, json_t *obj, const char *field, int required, const char *currency,
                     int64_t *out)
{
    json_t *v = json_object_get(obj, field);
    *out = -1;
    if (!v || json_is_null(v)) {
        if (required)
            return bad(c, "%s: missing (required)", field);
        return 0;
    }
    int64_t scale = store_currency_scale(currency);
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0 || n > INT64_MAX / scale)
            return bad(c, "%s: %lld is out of range", field, (long long)n);
        *out = n * scale;
        return 0;
    }
    double d;
    if (json_is_real(v)) {
        d = json_real_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        if (!*s || !(isdigit((unsigned char)s[0]) || s[0] == '.'))
            return bad(c, "%s: \"%.40s\" is not a price", field, s);
        d = strtod(s, &end);
        if (*end)
            return bad(c, "%s: \"%.40s\" is not a price", field, s);
    } else {
        return bad(c, "%s: expected a number, got %s", field, type_name(v));
    }
    if (!(d >= 0) || d > 1e12)
        return bad(c, "%s: %g is out of range [0, 1e12]", field, d);
    double minor = d * (double)scale;
    double r = nearbyint(minor);
    if (fabs(minor - r) > 1e-6 * (r > 1 ? r : 1))
        return bad(c, "%s: %g has more decimals than %s allows", field, d, currency);
    *out = (int64_t)r;
    return 0;
}

/* A derived id: prefix + 16 hex digits of a hash over NUL-separated parts. */
static const char *derive_id(struct ctx *c, char prefix, const char *a, const char *b, const char *d)
{
    uint64_t h = HSET_FNV_SEED;
    const char *parts[3] = {a, b, d};
    for (int i = 0; i < 3; i++) {
        const char *p = parts[i] ? parts[i] : "";
        h = hset_hash(h, p, strlen(p) + 1);
    }
    snprintf(c->idbuf, REC_ID, "%c%016llx", prefix, (unsigned long long)h);
    return c->idbuf;
}

/* Remember key for this file; a repeat is a bad record naming the first line. */
static int check_unique(struct ctx *c, const char *field, const char *key, const char *what)
{
    uint64_t first;
    if (hset_get(&c->seen, key, &first))
        return bad(c, "%s: duplicate %s \"%s\" (first at line %llu)", field, what, key,
                   (unsigned long long)(first & ~DERIVED));
    if (hset_put(&c->seen, key, c->line) < 0)
        return bad(c, "%s: out of memory", field);
    return 0;
}

/* ---- products ---- */

static int parse_product(struct ctx *c, json_t *obj, struct rec *out)
{
    struct store_product p = {0};
    int rc;
    if ((rc = get_id(c, obj, "id", 1, &p.id)) || (rc = get_str(c, obj, "title", 1, INGEST_MAX_TITLE, &p.title)) ||
        (rc = get_str(c, obj, "brand", 0, INGEST_MAX_SHORT, &p.brand)) ||
        (rc = get_str(c, obj, "description", 0, INGEST_MAX_TEXT, &p.description)))
        return rc;

    /* category: "A > B" or ["A", "B"] */
    json_t *cat = json_object_get(obj, "category");
    struct buf catbuf;
    buf_init(&catbuf, INGEST_MAX_SHORT);
    if (cat && json_is_array(cat)) {
        size_t i;
        json_t *e;
        json_array_foreach(cat, i, e) {
            if (!json_is_string(e)) {
                buf_release(&catbuf);
                return bad(c, "category[%zu]: expected a string, got %s", i, type_name(e));
            }
            if ((i && buf_puts(&catbuf, " > ")) || buf_puts(&catbuf, json_string_value(e))) {
                buf_release(&catbuf);
                return bad(c, "category: over the %d-byte limit", INGEST_MAX_SHORT);
            }
        }
        if (catbuf.len) {
            json_object_set_new(obj, "category", json_string(catbuf.data));
        } else {
            json_object_del(obj, "category");
        }
    }
    buf_release(&catbuf);
    if ((rc = get_str(c, obj, "category", 0, INGEST_MAX_SHORT, &p.category)))
        return rc;

    json_t *bl = json_object_get(obj, "bullets");
    if (bl && !json_is_null(bl)) {
        if (!json_is_array(bl))
            return bad(c, "bullets: expected an array of strings, got %s", type_name(bl));
        if (json_array_size(bl) > INGEST_MAX_ITEMS)
            return bad(c, "bullets: %zu items, over the limit of %d", json_array_size(bl), INGEST_MAX_ITEMS);
        size_t i;
        json_t *e;
        json_array_foreach(bl, i, e) {
            char field[32];
            snprintf(field, sizeof(field), "bullets[%zu]", i);
            if (!json_is_string(e))
                return bad(c, "%s: expected a string, got %s", field, type_name(e));
            if ((rc = check_text(c, field, json_string_value(e), json_string_length(e), INGEST_MAX_TEXT, 1)))
                return rc;
            c->bullets[p.nbullets++] = json_string_value(e);
        }
    }
    p.bullets = c->bullets;

    json_t *at = json_object_get(obj, "attributes");
    if (at && !json_is_null(at)) {
        if (!json_is_object(at))
            return bad(c, "attributes: expected an object, got %s", type_name(at));
        if (json_object_size(at) > INGEST_MAX_ITEMS)
            return bad(c, "attributes: %zu entries, over the limit of %d", json_object_size(at), INGEST_MAX_ITEMS);
        const char *k;
        json_t *v;
        json_object_foreach(at, k, v) {
            char field[96];
            snprintf(field, sizeof(field), "attributes.%.60s", k);
            if ((rc = check_text(c, field, k, strlen(k), INGEST_MAX_SHORT, 0)))
                return rc;
            if (!*k)
                return bad(c, "attributes: empty attribute name");
            if (json_is_null(v))
                continue;
            if (json_is_number(v) || json_is_boolean(v)) {
                /* Keep the value's JSON text: 2, 0.5, true. */
                char *txt = json_dumps(v, JSON_ENCODE_ANY);
                if (!txt)
                    return bad(c, "%s: out of memory", field);
                json_object_set_new(at, k, json_string(txt));
                free(txt);
                v = json_object_get(at, k);
            }
            if (!json_is_string(v))
                return bad(c, "%s: expected a string, number or boolean, got %s", field, type_name(v));
            if ((rc = check_text(c, field, json_string_value(v), json_string_length(v), INGEST_MAX_TEXT, 1)))
                return rc;
            if (!json_string_length(v))
                continue;
            c->attrs[p.nattrs].name = k;
            c->attrs[p.nattrs].value = json_string_value(v);
            p.nattrs++;
        }
    }
    p.attrs = c->attrs;
    if ((rc = check_unique(c, "id", p.id, "id")))
        return rc;
    out->op = OP_PRODUCT;
    out->u.p = p;
    return 0;
}

/* ---- reviews ---- */

static int parse_review(struct ctx *c, json_t *obj, struct rec *out)
{
    struct store_review r = {0};
    int rc;
    if ((rc = get_id(c, obj, "id", 0, &r.id)) || (rc = get_id(c, obj, "product_id", 1, &r.product_id)) ||
        (rc = get_str(c, obj, "text", 1, INGEST_MAX_TEXT, &r.text)) ||
        (rc = get_str(c, obj, "title", 0, INGEST_MAX_TITLE, &r.title)) ||
        (rc = get_str(c, obj, "author", 0, INGEST_MAX_SHORT, &r.author)) ||
        (rc = get_date(c, obj, "date", 0, 0, &r.date)) ||
        (rc = get_int(c, obj, "helpful_votes", 0, 0, INT32_MAX, -1, &r.helpful_votes)))
        return rc;
    json_t *rt = json_object_get(obj, "rating");
    if (rt && !json_is_null(rt)) {
        if (!json_is_number(rt))
            return bad(c, "rating: expected a number from 1 to 5, got %s", type_name(rt));
        r.rating = json_number_value(rt);
        if (!(r.rating >= 1 && r.rating <= 5))
            return bad(c, "rating: %g is out of range [1, 5]", r.rating);
        r.has_rating = 1;
    }
    if (r.id) {
        if ((rc = check_unique(c, "id", r.id, "id")))
            return rc;
    } else {
        r.id = derive_id(c, 'r', r.product_id, r.title, r.text);
        uint64_t first;
        if (hset_get(&c->seen, r.id, &first))
            return bad(c, "text: duplicate review (same product_id, title and text as line %llu); give reviews an "
                          "\"id\" to keep both",
                       (unsigned long long)(first & ~DERIVED));
        if (hset_put(&c->seen, r.id, c->line | DERIVED) < 0)
            return bad(c, "id: out of memory");
    }
    out->op = OP_REVIEW;
    out->u.r = r;
    return 0;
}

/* ---- community Q&A ---- */

static int parse_answer(struct ctx *c, json_t *v, const char *field, struct store_answer *a)
{
    a->votes = -1;
    if (json_is_string(v)) {
        a->text = json_string_value(v);
        return check_text(c, field, a->text, json_string_length(v), INGEST_MAX_TEXT, 1);
    }
    if (!json_is_object(v))
        return bad(c, "%s: expected a string or an object with \"text\", got %s", field, type_name(v));
    int rc;
    const char *t;
    char sub[64];
    snprintf(sub, sizeof(sub), "%s.text", field);
    json_t *tv = json_object_get(v, "text");
    if (!tv)
        return bad(c, "%s: missing (required)", sub);
    if (!json_is_string(tv))
        return bad(c, "%s: expected a string, got %s", sub, type_name(tv));
    t = json_string_value(tv);
    if ((rc = check_text(c, sub, t, json_string_length(tv), INGEST_MAX_TEXT, 1)))
        return rc;
    a->text = t;
    snprintf(sub, sizeof(sub), "%s.votes", field);
    json_t *vv = json_object_get(v, "votes");
    if (vv && !json_is_null(vv)) {
        if (!json_is_integer(vv) || json_integer_value(vv) < 0)
            return bad(c, "%s: expected a non-negative integer, got %s", sub, type_name(vv));
        a->votes = json_integer_value(vv);
    }
    return 0;
}

static int parse_qa(struct ctx *c, json_t *obj, struct rec *out)
{
    struct store_question q = {0};
    int rc;
    if ((rc = get_id(c, obj, "id", 0, &q.id)) || (rc = get_id(c, obj, "product_id", 1, &q.product_id)) ||
        (rc = get_str(c, obj, "question", 1, INGEST_MAX_TEXT, &q.question)) ||
        (rc = get_date(c, obj, "date", 0, 0, &q.date)) ||
        (rc = get_int(c, obj, "votes", 0, 0, INT32_MAX, -1, &q.votes)))
        return rc;
    json_t *one = json_object_get(obj, "answer");
    json_t *many = json_object_get(obj, "answers");
    if (one && many)
        return bad(c, "answers: give either \"answer\" or \"answers\", not both");
    q.answers = c->answers;
    if (one && !json_is_null(one)) {
        if ((rc = parse_answer(c, one, "answer", &c->answers[0])))
            return rc;
        if (c->answers[0].text[0])
            q.nanswers = 1;
    } else if (many && !json_is_null(many)) {
        if (!json_is_array(many))
            return bad(c, "answers: expected an array, got %s", type_name(many));
        if (json_array_size(many) > INGEST_MAX_ITEMS)
            return bad(c, "answers: %zu items, over the limit of %d", json_array_size(many), INGEST_MAX_ITEMS);
        size_t i;
        json_t *e;
        json_array_foreach(many, i, e) {
            char field[32];
            snprintf(field, sizeof(field), "answers[%zu]", i);
            if ((rc = parse_answer(c, e, field, &c->answers[q.nanswers])))
                return rc;
            if (c->answers[q.nanswers].text[0])
                q.nanswers++;
        }
    }
    out->op = OP_QUESTION;
    if (q.id) {
        if ((rc = check_unique(c, "id", q.id, "id")))
            return rc;
        out->u.q = q;
        return 0;
    }

    /* No id: the question is identified by product and text. Files with one line
     * per answer repeat the question; later lines add their answer to it. */
    q.id = derive_id(c, 'q', q.product_id, q.question, NULL);
    uint64_t first;
    if (!hset_get(&c->seen, q.id, &first)) {
        if (hset_put(&c->seen, q.id, c->line | DERIVED) < 0)
            return bad(c, "id: out of memory");
        for (size_t i = 0; i < q.nanswers; i++) {
            char key[96];
            snprintf(key, sizeof(key), "%s/%016llx", q.id,
                     (unsigned long long)hset_hash(HSET_FNV_SEED, q.answers[i].text, strlen(q.answers[i].text)));
            hset_put(&c->seen_answers, key, c->line);
        }
        out->u.q = q;
        return 0;
    }
    if (!(first & DERIVED))
        return bad(c, "id: question matches the one with id given at line %llu", (unsigned long long)first);
    for (size_t i = 0; i < q.nanswers; i++) {
        char key[96];
        uint64_t at;
        snprintf(key, sizeof(key), "%s/%016llx", q.id,
                 (unsigned long long)hset_hash(HSET_FNV_SEED, q.answers[i].text, strlen(q.answers[i].text)));
        if (hset_get(&c->seen_answers, key, &at))
            return bad(c, "answer: duplicate record (same product_id, question and answer as line %llu)",
                       (unsigned long long)at);
    }
    for (size_t i = 0; i < q.nanswers; i++) {
        char key[96];
        snprintf(key, sizeof(key), "%s/%016llx", q.id,
                 (unsigned long long)hset_hash(HSET_FNV_SEED, q.answers[i].text, strlen(q.answers[i].text)));
        hset_put(&c->seen_answers, key, c->line);
    }
    /* The question was upserted by its first line: these answers join it. */
    out->op = OP_ANSWERS;
    out->u.q = q;
    return 0;
}

/* ---- offers (the live feed) ---- */

static int get_currency(struct ctx *c, json_t *obj, const char *field, int required, const char **out)
{
    int rc = get_str(c, obj, field, required, 8, out);
    if (rc || !*out)
        return rc;
    const char *cur = *out;
    if (strlen(cur) != 3 || !isupper((unsigned char)cur[0]) || !isupper((unsigned char)cur[1]) ||
        !isupper((unsigned char)cur[2]))
        return bad(c, "%s: \"%s\" is not an ISO 4217 code (three capital letters, e.g. USD)", field, cur);
    return 0;
}

/* Validate an offer into *o (strings borrowed from obj); writes nothing. */
static int check_offer(struct ctx *c, json_t *obj, struct store_offer *out)
{
    struct store_offer o = {0};
    int rc;
    if ((rc = get_id(c, obj, "product_id", 1, &o.product_id)) ||
        (rc = get_str(c, obj, "seller", 0, INGEST_MAX_SHORT, &o.seller)) ||
        (rc = get_currency(c, obj, "currency", 1, &o.currency)) ||
        (rc = get_price(c, obj, "price", 1, o.currency, &o.price_minor)) ||
        (rc = get_int(c, obj, "stock", 1, 0, INT32_MAX, 0, &o.stock)) ||
        (rc = get_int(c, obj, "delivery_days", 0, 0, 365, -1, &o.delivery_days)) ||
        (rc = get_date(c, obj, "updated_at", 0, 1, &o.updated_at)))
        return rc;
    if (!o.seller)
        o.seller = "default";
    if (!o.updated_at)
        o.updated_at = c->nowbuf;
    *out = o;
    return 0;
}

static int parse_offer(struct ctx *c, json_t *obj, struct rec *out)
{
    struct store_offer o;
    int rc = check_offer(c, obj, &o);
    if (rc)
        return rc;
    char key[INGEST_MAX_ID + INGEST_MAX_SHORT + 2];
    snprintf(key, sizeof(key), "%s\x1f%s", o.product_id, o.seller);
    uint64_t first;
    if (hset_get(&c->seen, key, &first))
        return bad(c, "product_id: duplicate offer for product \"%s\" from seller \"%s\" (first at line %llu)",
                   o.product_id, o.seller, (unsigned long long)first);
    if (hset_put(&c->seen, key, c->line) < 0)
        return bad(c, "product_id: out of memory");
    out->op = OP_OFFER;
    out->u.o = o;
    return 0;
}

/* ---- orders ---- */

/* Validate an order into *out (strings borrowed from obj, lines and events in
 * the context's scratch); writes nothing. */
static int check_order(struct ctx *c, json_t *obj, struct store_order *out)
{
    struct store_order o = {0};
    int rc;
    if ((rc = get_id(c, obj, "id", 1, &o.id)) || (rc = get_id(c, obj, "customer", 1, &o.customer)) ||
        (rc = get_currency(c, obj, "currency", 0, &o.currency)) ||
        (rc = get_date(c, obj, "created_at", 0, 1, &o.created_at)))
        return rc;
    json_t *lines = json_object_get(obj, "lines");
    if (!lines)
        return bad(c, "lines: missing (required)");
    if (!json_is_array(lines) || json_array_size(lines) == 0)
        return bad(c, "lines: expected a non-empty array, got %s", json_is_array(lines) ? "[]" : type_name(lines));
    if (json_array_size(lines) > INGEST_MAX_ITEMS)
        return bad(c, "lines: %zu items, over the limit of %d", json_array_size(lines), INGEST_MAX_ITEMS);
    size_t i;
    json_t *e;
    json_array_foreach(lines, i, e) {
        struct store_order_line *l = &c->lines[i];
        if (!json_is_object(e))
            return bad(c, "lines[%zu]: expected an object, got %s", i, type_name(e));
        const char *pid;
        if ((rc = get_id(c, e, "product_id", 1, &pid)))
            return bad(c, "lines[%zu].%s", i, c->msg);
        l->product_id = pid;
        if ((rc = get_int(c, e, "quantity", 1, 1, 1000000, 1, &l->quantity)) ||
            (rc = get_price(c, e, "unit_price", 0, o.currency ? o.currency : "USD", &l->unit_price_minor)))
            return bad(c, "lines[%zu].%s", i, c->msg); /* bad() formats into a copy */
    }
    o.lines = c->lines;
    o.nlines = json_array_size(lines);

    json_t *hist = json_object_get(obj, "status_history");
    if (!hist)
        return bad(c, "status_history: missing (required)");
    if (!json_is_array(hist) || json_array_size(hist) == 0)
        return bad(c, "status_history: expected a non-empty array of {\"status\", \"at\"}");
    if (json_array_size(hist) > INGEST_MAX_ITEMS)
        return bad(c, "status_history: %zu items, over the limit of %d", json_array_size(hist), INGEST_MAX_ITEMS);
    json_array_foreach(hist, i, e) {
        struct store_order_event *ev = &c->events[i];
        if (!json_is_object(e))
            return bad(c, "status_history[%zu]: expected an object, got %s", i, type_name(e));
        if ((rc = get_str(c, e, "status", 1, 64, &ev->status)) || (rc = get_date(c, e, "at", 1, 1, &ev->at)))
            return bad(c, "status_history[%zu].%s", i, c->msg);
        if (i && strcmp(ev->at, c->events[i - 1].at) < 0)
            return bad(c, "status_history[%zu].at: %s is before the previous event (%s); list events oldest first",
                       i, ev->at, c->events[i - 1].at);
    }
    o.events = c->events;
    o.nevents = json_array_size(hist);
    if (!o.created_at)
        o.created_at = c->events[0].at;
    *out = o;
    return 0;
}

static int parse_order(struct ctx *c, json_t *obj, struct rec *out)
{
    struct store_order o;
    int rc = check_order(c, obj, &o);
    if (rc)
        return rc;
    if ((rc = check_unique(c, "id", o.id, "id")))
        return rc;
    out->op = OP_ORDER;
    out->u.ord = o;
    return 0;
}

/* ---- CSV products: header mapping ---- */

enum { F_ID, F_TITLE, F_BRAND, F_CATEGORY, F_DESCRIPTION, F_BULLETS, F_ATTRIBUTES, F_COUNT_ };
static const char *const field_names[F_COUNT_] = {"id", "title", "brand", "category", "description", "bullets",
                                                  "attributes"};
#define COL_ATTR (-1)
#define COL_SKIP (-2)

/* Header names recognised without a --map (compared lower-case). */
static int default_field(const char *h)
{
    static const struct {
        const char *name;
        int field;
    } aliases[] = {
        {"id", F_ID}, {"sku", F_ID}, {"asin", F_ID}, {"product_id", F_ID}, {"item_id", F_ID},
        {"title", F_TITLE}, {"name", F_TITLE}, {"product_name", F_TITLE}, {"product", F_TITLE},
        {"brand", F_BRAND}, {"category", F_CATEGORY}, {"category_path", F_CATEGORY},
        {"description", F_DESCRIPTION}, {"bullets", F_BULLETS}, {"bullet_points", F_BULLETS},
        {"features", F_BULLETS}, {"attributes", F_ATTRIBUTES},
    };
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (!strcmp(h, aliases[i].name))
            return aliases[i].field;
    return COL_ATTR;
}

static void norm_name(char *s)
{
    /* trim, lower-case, spaces to underscores: "Sub Category " -> "sub_category" */
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    size_t i = 0;
    while (s[i] && isspace((unsigned char)s[i]))
        i++;
    memmove(s, s + i, n - i + 1);
    for (char *p = s; *p; p++)
        *p = *p == ' ' ? '_' : (char)tolower((unsigned char)*p);
}

static int find_col(struct ctx *c, const char *name)
{
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s", name);
    norm_name(tmp);
    for (size_t i = 0; i < c->ncols; i++)
        if (!strcmp(c->colnames[i], tmp))
            return (int)i;
    return -1;
}

static int csv_header(struct ctx *c)
{
    int rc = csv_next(&c->csv);
    c->line = c->csv.lineno;
    if (rc == AISLE_EEOF)
        return bad(c, "header: empty file (no header row)");
    if (rc)
        return bad(c, "header: %s", c->csv.err);
    c->ncols = c->csv.nfields;
    c->colmap = calloc(c->ncols, sizeof(*c->colmap));
    c->colnames = calloc(c->ncols, sizeof(*c->colnames));
    if (!c->colmap || !c->colnames)
        return bad(c, "header: out of memory");
    for (size_t i = 0; i < c->ncols; i++) {
        const char *h = c->csv.fields[i];
        if (i == 0 && !strncmp(h, "\xEF\xBB\xBF", 3))
            h += 3; /* UTF-8 byte order mark from spreadsheet exports */
        if (!utf8_valid(h, strlen(h)))
            return bad(c, "header: column %zu: invalid UTF-8", i + 1);
        c->colnames[i] = strdup(h);
        if (!c->colnames[i])
            return bad(c, "header: out of memory");
        norm_name(c->colnames[i]);
        c->colmap[i] = default_field(c->colnames[i]);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->colnames[j], c->colnames[i]))
                return bad(c, "header: column \"%s\" appears twice (columns %zu and %zu)", c->colnames[i], j + 1,
                           i + 1);
    }
    if (c->o->csv_map) {
        char *map = strdup(c->o->csv_map), *save = NULL;
        if (!map)
            return bad(c, "header: out of memory");
        for (char *pair = strtok_r(map, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(pair, '=');
            if (!eq) {
                rc = bad(c, "--map: \"%s\" is not FIELD=COLUMN", pair);
                break;
            }
            *eq = '\0';
            char *field = pair, *cols = eq + 1;
            norm_name(field);
            int f = -1;
            for (int k = 0; k < F_COUNT_; k++)
                if (!strcmp(field, field_names[k]))
                    f = k;
            if (f < 0 && strcmp(field, "skip") != 0) {
                rc = bad(c, "--map: unknown field \"%s\" (id, title, brand, category, description, bullets, "
                            "attributes, skip)", field);
                break;
            }
            /* Whatever mapped to this field by default no longer does. */
            if (f >= 0)
                for (size_t i = 0; i < c->ncols; i++)
                    if (c->colmap[i] == f)
                        c->colmap[i] = COL_ATTR;
            char *save2 = NULL;
            for (char *col = strtok_r(cols, ">", &save2); col; col = strtok_r(NULL, ">", &save2)) {
                int ci = find_col(c, col);
                if (ci < 0) {
                    rc = bad(c, "--map: no column \"%s\" in the header", col);
                    break;
                }
                c->colmap[ci] = f < 0 ? COL_SKIP : f;
                if (f == F_CATEGORY && c->ncatcols < sizeof(c->catcols) / sizeof(c->catcols[0]))
                    c->catcols[c->ncatcols++] = ci;
            }
            if (rc)
                break;
        }
        free(map);
        if (rc)
            return rc;
    }
    if (!c->ncatcols)
        for (size_t i = 0; i < c->ncols; i++)
            if (c->colmap[i] == F_CATEGORY && c->ncatcols < 16)
                c->catcols[c->ncatcols++] = (int)i;
    for (int f = F_ID; f <= F_TITLE; f++) {
        int found = 0;
        for (size_t i = 0; i < c->ncols; i++)
            found |= c->colmap[i] == f;
        if (!found)
            return bad(c, "header: no column for \"%s\" (name one with --map %s=COLUMN)", field_names[f],
                       field_names[f]);
    }
    return 0;
}

/* Split bullets on newlines or " | ". */
static int csv_bullets(json_t *arr, const char *v)
{
    const char *p = v;
    while (*p) {
        const char *nl = strchr(p, '\n'), *bar = strstr(p, " | ");
        const char *end = nl && (!bar || nl < bar) ? nl : bar;
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        while (len && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        if (len && json_array_append_new(arr, json_stringn(p, len)))
            return -1;
        if (!end)
            break;
        p = end + (end == nl ? 1 : 3);
    }
    return 0;
}

/* One CSV row -> the product JSON object parse_product expects. */
static int csv_row(struct ctx *c, json_t **out)
{
    if (c->csv.nfields != c->ncols)
        return bad(c, "record: %zu fields, but the header has %zu", c->csv.nfields, c->ncols);
    json_t *obj = json_object(), *attrs = json_object(), *bullets = json_array();
    struct buf cat;
    buf_init(&cat, INGEST_MAX_SHORT);
    int rc = 0;
    if (!obj || !attrs || !bullets) {
        rc = bad(c, "record: out of memory");
        goto out;
    }
    for (size_t i = 0; i < c->ncols; i++) {
        const char *v = c->csv.fields[i];
        if (!utf8_valid(v, c->csv.lens[i])) {
            rc = bad(c, "%s: invalid UTF-8 at byte %zu", c->colnames[i], utf8_valid_prefix(v, c->csv.lens[i]));
            goto out;
        }
        if (memchr(v, '\0', c->csv.lens[i])) {
            rc = bad(c, "%s: NUL byte in field", c->colnames[i]);
            goto out;
        }
        int f = c->colmap[i];
        if (f == COL_SKIP || f == F_CATEGORY)
            continue;
        /* Trim: spreadsheets leave trailing spaces ("Sri Sri Ayurveda "). */
        size_t len = c->csv.lens[i];
        while (len && isspace((unsigned char)v[len - 1]))
            len--;
        while (len && isspace((unsigned char)*v)) {
            v++;
            len--;
        }
        if (!len)
            continue;
        if (f == COL_ATTR) {
            json_object_set_new(attrs, c->colnames[i], json_stringn(v, len));
        } else if (f == F_BULLETS) {
            if (csv_bullets(bullets, v)) {
                rc = bad(c, "bullets: out of memory");
                goto out;
            }
        } else if (f == F_ATTRIBUTES) {
            json_error_t je;
            json_t *a = json_loadb(v, len, JSON_REJECT_DUPLICATES, &je);
            if (!a || !json_is_object(a)) {
                json_decref(a);
                rc = bad(c, "attributes: expected a JSON object in the column (%s)", a ? "not an object" : je.text);
                goto out;
            }
            json_object_update(attrs, a);
            json_decref(a);
        } else {
            json_object_set_new(obj, field_names[f], json_stringn(v, len));
        }
    }
    for (size_t k = 0; k < c->ncatcols; k++) {
        const char *v = c->csv.fields[c->catcols[k]];
        size_t len = strlen(v);
        while (len && isspace((unsigned char)v[len - 1]))
            len--;
        while (len && isspace((unsigned char)*v)) {
            v++;
            len--;
        }
        if (!len)
            continue;
        if ((cat.len && buf_puts(&cat, " > ")) || buf_append(&cat, v, len)) {
            rc = bad(c, "category: over the %d-byte limit", INGEST_MAX_SHORT);
            goto out;
        }
    }
    if (cat.len)
        json_object_set_new(obj, "category", json_string(cat.data));
    json_object_set(obj, "attributes", attrs);
    json_object_set(obj, "bullets", bullets);
    *out = obj;
    obj = NULL;
out:
    json_decref(obj);
    json_decref(attrs);
    json_decref(bullets);
    buf_release(&cat);
    return rc;
}

/* ---- the load loop ---- */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Read the next record as a JSON object. 0, AISLE_EEOF, AISLE_EFORMAT (bad
 * record, c->msg set, can continue), or a fatal error (c->msg set). */
static int next_record(struct ctx *c, struct lineio *in, json_t **out)
{
    *out = NULL;
    if (c->is_csv) {
        int rc = csv_next(&c->csv);
        c->line = c->csv.lineno ? c->csv.lineno : in->lineno;
        if (rc == AISLE_EEOF)
            return rc;
        if (rc && c->csv.io_err) {
            bad(c, "%s", c->csv.err);
            c->line = in->lineno;
            return AISLE_EIO;
        }
        if (rc) {
            bad(c, "record: %s", c->csv.err);
            return AISLE_EFORMAT;
        }
        return csv_row(c, out);
    }
    const char *line;
    size_t len;
    for (;;) {
        int rc = lineio_next(in, &line, &len);
        c->line = in->lineno;
        if (rc == AISLE_EEOF)
            return rc;
        if (rc == AISLE_ETOOBIG) {
            bad(c, "record: %s", in->err);
            return AISLE_EFORMAT;
        }
        if (rc) {
            bad(c, "%s", in->err);
            return AISLE_EIO;
        }
        size_t i = 0;
        while (i < len && isspace((unsigned char)line[i]))
            i++;
        if (i < len)
            break; /* blank lines between records are allowed */
    }
    size_t ok = utf8_valid_prefix(line, len);
    if (ok != len)
        return bad(c, "record: invalid UTF-8 at byte %zu (column %zu)", ok, ok + 1);
    json_error_t je;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!obj)
        return bad(c, "json: %s (column %d)", je.text, je.column);
    if (!json_is_object(obj)) {
        int rc = bad(c, "record: expected a JSON object, got %s", type_name(obj));
        json_decref(obj);
        return rc;
    }
    *out = obj;
    return 0;
}

static int parse_record(struct ctx *c, json_t *obj, struct rec *out)
{
    switch (c->kind) {
    case INGEST_PRODUCTS: return parse_product(c, obj, out);
    case INGEST_REVIEWS: return parse_review(c, obj, out);
    case INGEST_QA: return parse_qa(c, obj, out);
    case INGEST_OFFERS: return parse_offer(c, obj, out);
    case INGEST_ORDERS: return parse_order(c, obj, out);
    }
    return AISLE_EINVAL;
}

/* Write one parsed record (the writer thread). */
static int write_record(struct store *s, const struct rec *r)
{
    switch (r->op) {
    case OP_PRODUCT: return store_upsert_product(s, &r->u.p);
    case OP_REVIEW: return store_upsert_review(s, &r->u.r);
    case OP_QUESTION: return store_upsert_question(s, &r->u.q);
    case OP_ANSWERS:
        for (size_t i = 0; i < r->u.q.nanswers; i++) {
            int rc = store_append_answer(s, r->u.q.id, r->u.q.product_id, r->u.q.question, &r->u.q.answers[i]);
            if (rc)
                return rc;
        }
        return 0;
    case OP_OFFER: return store_upsert_offer(s, &r->u.o);
    case OP_ORDER: return store_upsert_order(s, &r->u.ord);
    }
    return AISLE_EINVAL;
}

/* ---- validation without a file: records that arrive from a merchant's API ---- */

struct ingest_checker {
    struct ctx c;
};

int ingest_checker_new(struct ingest_checker **out)
{
    struct ingest_checker *k = calloc(1, sizeof(*k));
    if (!k)
        return AISLE_ENOMEM;
    k->c.lines = calloc(INGEST_MAX_ITEMS, sizeof(*k->c.lines));
    k->c.events = calloc(INGEST_MAX_ITEMS, sizeof(*k->c.events));
    if (!k->c.lines || !k->c.events) {
        ingest_checker_free(k);
        return AISLE_ENOMEM;
    }
    *out = k;
    return 0;
}

void ingest_checker_free(struct ingest_checker *k)
{
    if (!k)
        return;
    free(k->c.lines);
    free(k->c.events);
    free(k);
}

const char *ingest_checker_msg(const struct ingest_checker *k)
{
    return k->c.msg;
}

static void checker_now(struct ingest_checker *k)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(k->c.nowbuf, sizeof(k->c.nowbuf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    k->c.msg[0] = '\0';
}

int ingest_check_offer(struct ingest_checker *k, json_t *obj, struct store_offer *out)
{
    checker_now(k);
    if (!json_is_object(obj))
        return bad(&k->c, "offer: expected a JSON object, got %s", type_name(obj));
    return check_offer(&k->c, obj, out);
}

int ingest_check_order(struct ingest_checker *k, json_t *obj, struct store_order *out)
{
    checker_now(k);
    if (!json_is_object(obj))
        return bad(&k->c, "order: expected a JSON object, got %s", type_name(obj));
    return check_order(&k->c, obj, out);
}

/* ---- the two-thread load ---- */

#define BATCH_RECS 128                    /* records per batch */
#define BATCH_POOL (4 * INGEST_MAX_ITEMS) /* entries per item pool; a record may use INGEST_MAX_ITEMS */
#define NBATCHES 8                        /* batches in flight: the queue's bound */

struct batch {
    struct batch *next; /* queue link */
    size_t n;           /* records in recs */
    int last;           /* the parser's final batch: end of file or a record that stops the load */
    struct rec recs[BATCH_RECS];
    /* item pools, each (BATCH_POOL); a record's arrays point into them */
    const char **bullets;
    struct store_attr *attrs;
    struct store_answer *answers;
    struct store_order_line *lines;
    struct store_order_event *events;
    size_t nbullets, nattrs, nanswers, nlines, nevents; /* used */
};

struct pipe {
    struct ctx *c;
    struct lineio *in;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct batch *full, *full_tail; /* parser -> writer, in file order */
    struct batch *empty;            /* writer -> parser */
    int stop;                       /* the writer gave up: the parser ends */
};

/* Free the batch's JSON objects and empty it. */
static void batch_reset(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        json_decref(b->recs[i].obj);
    b->n = 0;
    b->last = 0;
    b->next = NULL;
    b->nbullets = b->nattrs = b->nanswers = b->nlines = b->nevents = 0;
}

static void batch_free(struct batch *b)
{
    if (!b)
        return;
    batch_reset(b);
    free(b->bullets);
    free(b->attrs);
    free(b->answers);
    free(b->lines);
    free(b->events);
    free(b);
}

static struct batch *batch_new(void)
{
    struct batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->bullets = calloc(BATCH_POOL, sizeof(*b->bullets));
    b->attrs = calloc(BATCH_POOL, sizeof(*b->attrs));
    b->answers = calloc(BATCH_POOL, sizeof(*b->answers));
    b->lines = calloc(BATCH_POOL, sizeof(*b->lines));
    b->events = calloc(BATCH_POOL, sizeof(*b->events));
    if (!b->bullets || !b->attrs || !b->answers || !b->lines || !b->events) {
        batch_free(b);
        return NULL;
    }
    return b;
}

/* 1 when the next record may not fit: a record uses up to INGEST_MAX_ITEMS of a pool. */
static int batch_full(const struct batch *b)
{
    size_t room = BATCH_POOL - INGEST_MAX_ITEMS;
    return b->n == BATCH_RECS || b->nbullets > room || b->nattrs > room || b->nanswers > room ||
           b->nlines > room || b->nevents > room;
}

/* Parser side: hand b to the writer, then wait for an empty batch (NULL when
 * the writer has stopped, or b was the last). */
static struct batch *pipe_send(struct pipe *pp, struct batch *b)
{
    pthread_mutex_lock(&pp->mu);
    if (pp->full_tail)
        pp->full_tail->next = b;
    else
        pp->full = b;
    pp->full_tail = b;
    int last = b->last;
    pthread_cond_broadcast(&pp->cv);
    struct batch *e = NULL;
    while (!last && !pp->stop && !pp->empty)
        pthread_cond_wait(&pp->cv, &pp->mu);
    if (!last && !pp->stop) {
        e = pp->empty;
        pp->empty = e->next;
    }
    pthread_mutex_unlock(&pp->mu);
    if (e)
        batch_reset(e); /* its JSON was allocated here: free it here too */
    return e;
}

/* Writer side: the next full batch, in file order. */
static struct batch *pipe_recv(struct pipe *pp)
{
    pthread_mutex_lock(&pp->mu);
    while (!pp->full)
        pthread_cond_wait(&pp->cv, &pp->mu);
    struct batch *b = pp->full;
    pp->full = b->next;
    if (!pp->full)
        pp->full_tail = NULL;
    pthread_mutex_unlock(&pp->mu);
    return b;
}

/* Writer side: give a written batch back; with stop, tell the parser to end. */
static void pipe_return(struct pipe *pp, struct batch *b, int stop)
{
    pthread_mutex_lock(&pp->mu);
    if (b) {
        b->next = pp->empty;
        pp->empty = b;
    }
    pp->stop |= stop;
    pthread_cond_broadcast(&pp->cv);
    pthread_mutex_unlock(&pp->mu);
}

/* A record that stops the load (the writer reports it and rolls back). */
static int rec_fatal(const struct ctx *c, const struct rec *r)
{
    return r->rc && (r->header || r->rc != AISLE_EFORMAT || !c->o->skip_bad || (c->is_csv && r->line == 0));
}

/* The parser thread: read, parse and validate every record into batches. */
static void *parser_main(void *arg)
{
    struct pipe *pp = arg;
    struct ctx *c = pp->c;
    struct batch *b;
    pthread_mutex_lock(&pp->mu);
    b = pp->empty;
    pp->empty = b->next;
    pthread_mutex_unlock(&pp->mu);
    b->next = NULL;
    if (c->is_csv) {
        struct rec *r = &b->recs[0];
        int rc = csv_header(c);
        if (rc) {
            memset(r, 0, offsetof(struct rec, msg));
            r->rc = rc;
            r->header = 1;
            r->line = c->line;
            memcpy(r->msg, c->msg, sizeof(r->msg));
            b->n = 1;
            b->last = 1;
            pipe_send(pp, b);
            return NULL;
        }
    }
    for (;;) {
        if (batch_full(b) && !(b = pipe_send(pp, b)))
            return NULL;
        struct rec *r = &b->recs[b->n];
        memset(r, 0, offsetof(struct rec, msg));
        c->bullets = b->bullets + b->nbullets;
        c->attrs = b->attrs + b->nattrs;
        c->answers = b->answers + b->nanswers;
        c->lines = b->lines + b->nlines;
        c->events = b->events + b->nevents;
        c->idbuf = r->id;
        c->msg[0] = '\0';
        json_t *obj;
        int rc = next_record(c, pp->in, &obj);
        if (rc == AISLE_EEOF) {
            b->last = 1;
            pipe_send(pp, b);
            return NULL;
        }
        b->n++;
        r->line = c->line;
        r->offset = lineio_offset(pp->in);
        if (rc == 0) {
            r->obj = obj;
            rc = parse_record(c, obj, r);
        }
        r->rc = rc;
        if (rc) {
            memcpy(r->msg, c->msg, sizeof(r->msg));
            if (rec_fatal(c, r)) {
                b->last = 1;
                pipe_send(pp, b);
                return NULL;
            }
            continue;
        }
        switch (r->op) {
        case OP_PRODUCT:
            b->nbullets += r->u.p.nbullets;
            b->nattrs += r->u.p.nattrs;
            break;
        case OP_QUESTION:
        case OP_ANSWERS: b->nanswers += r->u.q.nanswers; break;
        case OP_ORDER:
            b->nlines += r->u.ord.nlines;
            b->nevents += r->u.ord.nevents;
            break;
        default: break;
        }
    }
}

int ingest_file(struct store *s, enum ingest_kind kind, const char *path, const struct ingest_opts *opts,
                struct ingest_stats *stats, char *err, size_t errlen)
{
    struct ctx c;
    struct lineio in;
    struct pipe pp;
    struct ingest_stats st = {0, 0};
    int rc, in_tx = 0, in_open = 0, started = 0;

    memset(&c, 0, sizeof(c));
    memset(&pp, 0, sizeof(pp));
    c.kind = kind;
    c.o = opts;
    c.path = path;
    hset_init(&c.seen);
    hset_init(&c.seen_answers);
    pthread_mutex_init(&pp.mu, NULL);
    pthread_cond_init(&pp.cv, NULL);
    pp.c = &c;
    pp.in = &in;
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(c.nowbuf, sizeof(c.nowbuf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    c.is_csv = opts->format_csv > 0 || (opts->format_csv < 0 && (ends_with(path, ".csv") || ends_with(path, ".csv.gz")));

    for (int i = 0; i < NBATCHES; i++) {
        struct batch *b = batch_new();
        if (!b) {
            snprintf(err, errlen, "%s: out of memory", path);
            rc = AISLE_ENOMEM;
            goto done;
        }
        b->next = pp.empty;
        pp.empty = b;
    }
    if (c.is_csv && kind != INGEST_PRODUCTS) {
        snprintf(err, errlen, "%s: CSV is read for products only; give %s as JSON Lines", path,
                 ingest_kind_name(kind));
        rc = AISLE_EINVAL;
        goto done;
    }
    if ((rc = lineio_open(&in, path, opts->max_line))) {
        snprintf(err, errlen, "%s: %s", path, in.err);
        lineio_close(&in);
        goto done;
    }
    in_open = 1;
    uint64_t file_size = in.file_size;
    if (c.is_csv && (rc = csv_init(&c.csv, &in))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    if ((rc = store_begin(s))) {
        snprintf(err, errlen, "%s: %s", path, store_errmsg(s));
        goto done;
    }
    in_tx = 1;
    pthread_t parser;
    if (pthread_create(&parser, NULL, parser_main, &pp)) {
        snprintf(err, errlen, "%s: cannot start the parser thread", path);
        rc = AISLE_ENOMEM;
        goto done;
    }
    started = 1;

    for (int last = 0; !last;) {
        struct batch *b = pipe_recv(&pp);
        last = b->last;
        for (size_t i = 0; i < b->n; i++) {
            struct rec *r = &b->recs[i];
            const char *msg = r->msg;
            rc = r->rc;
            if (rc == 0 && (rc = write_record(s, r)))
                msg = store_errmsg(s); /* the store failed: its message, and the field is the record */
            if (rc == 0) {
                st.loaded++;
            } else if ((rc == AISLE_EFORMAT || rc == AISLE_ENOTFOUND) && opts->skip_bad && !r->header &&
                       !(c.is_csv && r->line == 0)) {
                st.skipped++;
                if (opts->on_skip) {
                    char m[sizeof(r->msg) + 512];
                    snprintf(m, sizeof(m), "%s:%llu: %s", path, (unsigned long long)r->line, msg);
                    opts->on_skip(opts->ctx, m);
                }
            } else {
                if (r->header && !r->line) /* line 0: the file has no line at all */
                    snprintf(err, errlen, "%s: %s", path, msg);
                else if (rc == AISLE_EIO) /* the file itself: truncated gzip, read error */
                    snprintf(err, errlen, "%s: %s (after line %llu)", path, msg, (unsigned long long)r->line);
                else
                    snprintf(err, errlen, "%s:%llu: %s", path, (unsigned long long)r->line, msg);
                pipe_return(&pp, b, 1);
                goto done;
            }
            if (opts->progress && ((st.loaded + st.skipped) & 255) == 0)
                opts->progress(opts->ctx, st.loaded + st.skipped, r->offset, file_size);
        }
        pipe_return(&pp, b, 0);
    }
    rc = 0;
    if (st.loaded == 0 && st.skipped == 0) {
        snprintf(err, errlen, "%s: empty file: no records", path);
        rc = AISLE_EFORMAT;
        goto done;
    }
    if ((rc = store_commit(s))) {
        snprintf(err, errlen, "%s: %s", path, store_errmsg(s));
        goto done;
    }
    in_tx = 0;
    if (opts->progress)
        opts->progress(opts->ctx, st.loaded + st.skipped, file_size, file_size);
    *stats = st;
done:
    if (started)
        pthread_join(parser, NULL);
    if (in_tx)
        store_rollback(s);
    if (c.is_csv && in_open)
        csv_release(&c.csv);
    if (in_open)
        lineio_close(&in);
    for (size_t i = 0; i < c.ncols; i++)
        if (c.colnames)
            free(c.colnames[i]);
    free(c.colnames);
    free(c.colmap);
    while (pp.full) {
        struct batch *b = pp.full;
        pp.full = b->next;
        batch_free(b);
    }
    while (pp.empty) {
        struct batch *b = pp.empty;
        pp.empty = b->next;
        batch_free(b);
    }
    pthread_mutex_destroy(&pp.mu);
    pthread_cond_destroy(&pp.cv);
    hset_release(&c.seen);
    hset_release(&c.seen_answers);
    return rc;
}
