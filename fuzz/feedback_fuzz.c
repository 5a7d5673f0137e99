/*
 * feedback_fuzz.c — libFuzzer target for the POST /api/feedback body
 * (chat_feedback_parse in src/assist/chat.c), a vote from any client.
 *
 * Invariants checked (abort on violation): the result is 0, AISLE_EINVAL
 * (with a code, a message, and a param that is "" or one of the fields) or
 * AISLE_ENOMEM; on success the answer id is exactly CHAT_ANSWER_ID_LEN
 * lowercase hex characters, the rating +1 or -1, and the comment NULL or
 * 1..CHAT_MAX_COMMENT bytes of valid UTF-8 without NUL.
 * ASan/UBSan and LeakSanitizer catch the rest.
 */
#include "assist/chat.h"
#include "core/error.h"
#include "core/utf8.h"

#include "fuzz.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chat_feedback f;
    struct chat_error e;
    int rc = chat_feedback_parse(&f, (const char *)data, size, &e);
    FUZZ_CHECK(rc == 0 || rc == AISLE_EINVAL || rc == AISLE_ENOMEM, "rc %d", rc);
    if (rc) {
        FUZZ_CHECK(e.code && e.message[0], "an error without code or message");
        return 0;
    }
    FUZZ_CHECK(strlen(f.answer_id) == CHAT_ANSWER_ID_LEN &&
                   strspn(f.answer_id, "0123456789abcdef") == CHAT_ANSWER_ID_LEN,
               "answer id '%s'", f.answer_id);
    FUZZ_CHECK(f.rating == 1 || f.rating == -1, "rating %d", f.rating);
    if (f.comment) {
        size_t n = strlen(f.comment);
        FUZZ_CHECK(n >= 1 && n <= CHAT_MAX_COMMENT && utf8_valid(f.comment, n), "comment of %zu bytes", n);
    }
    chat_feedback_release(&f);
    return 0;
}
