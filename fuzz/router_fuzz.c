/*
 * router_fuzz.c — libFuzzer target for the source router's model reader
 * (route_model_parse) and for routing any question text.
 *
 * Input: the whole input is read as a model file. When it parses, a few fixed
 * questions are routed through it; independently, the input (cut at its first
 * NUL) is routed as a question by the keyword baseline.
 *
 * Invariants checked (abort on violation, as a crash):
 *   - the reader returns 0 or one of EFORMAT/ETOOBIG/ENOMEM, with a message
 *     on failure and no model;
 *   - an accepted model has a power-of-two bucket count in range, and gives
 *     scores in [0, 1] with use[] set exactly when score >= the threshold
 *     (checked through the 0/1 flags being consistent across calls);
 *   - route_keyword never fails and gives 0/1 scores.
 * ASan/UBSan and LeakSanitizer catch the rest.
 */
#include "core/error.h"
#include "retrieval/route.h"

#include "fuzz.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const questions[] = {"how much is it?", "does it come in white?", "", "220v 5 lbs w10130695",
                                        "is it easy to clean"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct route_model *m = NULL;
    char err[256] = "";
    int rc = route_model_parse(&m, data, size, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == AISLE_EFORMAT || rc == AISLE_ETOOBIG || rc == AISLE_ENOMEM, "rc %d", rc);
    if (rc) {
        FUZZ_CHECK(m == NULL, "a model on failure");
        FUZZ_CHECK(err[0] != '\0', "no message for rc %d", rc);
    } else {
        uint32_t nb = route_model_buckets(m);
        FUZZ_CHECK(nb >= ROUTE_MIN_BUCKETS && nb <= ROUTE_MAX_BUCKETS && !(nb & (nb - 1)), "nbuckets %u", nb);
        for (size_t i = 0; i < sizeof(questions) / sizeof(questions[0]); i++) {
            struct route r, r2;
            FUZZ_CHECK(route_question(m, questions[i], &r) == 0, "route_question");
            FUZZ_CHECK(route_question(m, questions[i], &r2) == 0, "route_question");
            for (int s = 0; s < ROUTE_NSRC; s++) {
                FUZZ_CHECK(r.score[s] >= 0.0 && r.score[s] <= 1.0, "score %g", r.score[s]);
                FUZZ_CHECK(r.use[s] == r2.use[s] && r.score[s] == r2.score[s], "not deterministic");
            }
        }
        route_model_free(m);
    }
    char *q = malloc(size + 1);
    FUZZ_CHECK(q != NULL, "malloc");
    memcpy(q, data, size);
    q[size] = '\0';
    struct route r;
    FUZZ_CHECK(route_keyword(q, &r) == 0, "route_keyword");
    for (int s = 0; s < ROUTE_NSRC; s++)
        FUZZ_CHECK((r.score[s] == 0.0 || r.score[s] == 1.0) && r.use[s] == (r.score[s] == 1.0), "keyword score");
    free(q);
    return 0;
}
