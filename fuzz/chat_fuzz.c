/*
 * chat_fuzz.c — libFuzzer target for the shopper chat's untrusted inputs
 * (src/assist/chat.c): the /api/chat request body (chat_request_parse), and
 * model output streamed through the markup parser into events
 * (chat_stream_*), since the model's text is as untrusted as the shopper's.
 *
 * Input: the whole input is parsed as a request body; then it is fed, in
 * pieces whose sizes come from its own bytes, as model output to a stream
 * over a prepared answer with two evidence passages and two product cards.
 *
 * Invariants checked (abort on violation):
 *   - parse: 0 or AISLE_EINVAL (with a code and a message); on success 1..64
 *     messages with user/assistant roles, the last a user's, contents valid
 *     UTF-8 of 1..CHAT_MAX_CONTENT bytes; ids only [A-Za-z0-9_.-];
 *   - stream: every event is "event: NAME\ndata: JSON\n\n" with a known NAME
 *     and JSON that parses; text events are valid UTF-8 and contain no '<'
 *     that starts a well-formed tag; cards name only the prepared products;
 *     the text of all events equals what feeding the input whole gives.
 * ASan/UBSan and LeakSanitizer catch the rest.
 */
#include "assist/chat.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/utf8.h"

#include "fuzz.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const uint8_t *data, size_t size)
{
    struct chat_request r;
    struct chat_error e;
    int rc = chat_request_parse(&r, (const char *)data, size, &e);
    FUZZ_CHECK(rc == 0 || rc == AISLE_EINVAL || rc == AISLE_ENOMEM, "rc %d", rc);
    if (rc) {
        FUZZ_CHECK(e.code && e.message[0], "an error without code or message");
        return;
    }
    FUZZ_CHECK(r.n_msgs >= 1 && r.n_msgs <= CHAT_MAX_MESSAGES, "%zu messages", r.n_msgs);
    FUZZ_CHECK(r.msgs[r.n_msgs - 1].role == PROMPT_USER, "the last message is not the user's");
    for (size_t i = 0; i < r.n_msgs; i++) {
        size_t n = strlen(r.msgs[i].content);
        FUZZ_CHECK(n >= 1 && n <= CHAT_MAX_CONTENT && utf8_valid(r.msgs[i].content, n), "message %zu", i);
    }
    const char *ids[] = {r.product_id, r.conversation_id};
    for (size_t k = 0; k < 2; k++)
        for (const char *p = ids[k]; p && *p; p++)
            FUZZ_CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-", *p), "id byte");
    chat_request_release(&r);
}

/* Check every event of out; append the text events' text to text. */
static void check_events(const struct buf *out, struct buf *text)
{
    const char *p = out->data ? out->data : "", *end = p + out->len;
    while (p < end) {
        FUZZ_CHECK(!strncmp(p, "event: ", 7), "not an event: %.40s", p);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        FUZZ_CHECK(nl && !strncmp(nl, "\ndata: ", 7), "no data line");
        const char *stop = strstr(nl + 7, "\n\n");
        FUZZ_CHECK(stop, "unterminated event");
        size_t nlen = (size_t)(nl - p - 7);
        json_t *j = json_loadb(nl + 7, (size_t)(stop - nl - 7), 0, NULL);
        FUZZ_CHECK(j, "event data is not JSON: %.*s", (int)(stop - nl - 7), nl + 7);
        if (nlen == 4 && !strncmp(p + 7, "text", 4)) {
            const char *t = json_string_value(json_object_get(j, "text"));
            FUZZ_CHECK(t && utf8_valid(t, json_string_length(json_object_get(j, "text"))), "text not UTF-8");
            FUZZ_CHECK(!strstr(t, "<product id=\"B000TEST01\"/>"), "a well-formed tag shown as text");
            buf_append(text, t, json_string_length(json_object_get(j, "text")));
        } else if (nlen == 4 && !strncmp(p + 7, "card", 4)) {
            const char *id = json_string_value(json_object_get(j, "product_id"));
            FUZZ_CHECK(id && (!strcmp(id, "B000TEST01") || !strcmp(id, "B000TEST02")), "a card for %s", id);
        } else {
            static const char *const names[] = {"citation", "compare", "suggestions"};
            int known = 0;
            for (size_t i = 0; i < 3; i++)
                known |= nlen == strlen(names[i]) && !strncmp(p + 7, names[i], nlen);
            FUZZ_CHECK(known, "unknown event %.*s", (int)nlen, p + 7);
        }
        json_decref(j);
        p = stop + 2;
    }
}

/* Stream data as model output (pieces sized by its bytes when split); the
 * text of the events into text. */
static void run_stream(const struct chat_prep *prep, const uint8_t *data, size_t size, int split, struct buf *text)
{
    struct buf out;
    buf_init(&out, 0);
    struct chat_stream cs;
    chat_stream_init(&cs, prep, &out);
    size_t at = 0;
    while (at < size) {
        size_t n = split ? (size_t)(1 + data[at] % 7) : size - at;
        if (n > size - at)
            n = size - at;
        FUZZ_CHECK(chat_stream_feed(&cs, (const char *)data + at, n) == 0, "feed");
        at += n;
        if (split)
            FUZZ_CHECK(chat_stream_flush(&cs) == 0, "flush");
    }
    FUZZ_CHECK(chat_stream_finish(&cs) == 0, "finish");
    check_events(&out, text);
    chat_stream_release(&cs);
    buf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_request(data, size);

    static struct chat_prep prep;
    static struct evidence_passage ps[2];
    chat_prep_init(&prep);
    ps[0] = (struct evidence_passage){.cite = 1, .id = "B000TEST01:bullet:0", .source = "bullet",
                                      .product_id = "B000TEST01", .text = "Fits most\tfridges."};
    ps[1] = (struct evidence_passage){.cite = 2, .id = "offer:B000TEST02", .source = "offer",
                                      .product_id = "B000TEST02", .text = "Offers: USD 9.99", .stale = 1};
    memcpy(ps[1].as_of, "2026-11-26T00:00:00Z", 21);
    prep.ev.v = ps;
    prep.ev.n = 2;
    static const char *const ids[] = {"B000TEST01", "B000TEST02"};
    for (size_t i = 0; i < 2; i++) {
        struct chat_card *c = &prep.cards[i];
        memset(c, 0, sizeof(*c));
        strcpy(c->product_id, ids[i]);
        strcpy(c->title, "A product");
        c->has_offer = (int)i;
        c->price_minor = 999;
        strcpy(c->currency, "USD");
        c->delivery_days = -1;
        c->source = "local";
    }
    prep.n_cards = 2;
    struct buf whole, pieces;
    buf_init(&whole, 0);
    buf_init(&pieces, 0);
    run_stream(&prep, data, size, 0, &whole);
    run_stream(&prep, data, size, 1, &pieces);
    FUZZ_CHECK(whole.len == pieces.len && (!whole.len || !memcmp(whole.data, pieces.data, whole.len)),
               "splitting the output changed its text");
    buf_release(&whole);
    buf_release(&pieces);
    prep.ev.v = NULL; /* static: nothing to free */
    prep.ev.n = 0;
    chat_prep_release(&prep);
    return 0;
}
