/*
 * encoder_fuzz.c — libFuzzer target for the dense encoder's model file reader
 * (enc_read, src/retrieval/encoder.h): any bytes are a candidate file.
 *
 * Invariants checked (abort on violation, as a crash):
 *   - enc_read either fails with AISLE_EFORMAT/AISLE_ETOOBIG/AISLE_ENOMEM,
 *     a message, and no encoder, or succeeds on exactly the size the header
 *     implies, with D and nbuckets in their ranges and every weight finite;
 *   - an encoder that was read embeds text to a unit vector (or zeros),
 *     all finite, and writes back to the very same bytes it was read from
 *     (idf is stored as f32 and E as f16, both exact on a round trip).
 * ASan/UBSan and LeakSanitizer catch the rest.
 */
#include "core/buf.h"
#include "core/error.h"
#include "retrieval/encoder.h"

#include "fuzz.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct encoder *e = NULL;
    char err[256] = "";
    int rc = enc_read(&e, data, size, err, sizeof(err));
    if (rc) {
        FUZZ_CHECK(rc == AISLE_EFORMAT || rc == AISLE_ETOOBIG || rc == AISLE_ENOMEM, "unexpected code %d", rc);
        FUZZ_CHECK(err[0] != '\0', "failure without a message");
        FUZZ_CHECK(e == NULL, "encoder set on failure");
        return 0;
    }
    FUZZ_CHECK(e->D >= ENC_MIN_DIM && e->D <= ENC_MAX_DIM && e->D % 8 == 0, "D %d", e->D);
    FUZZ_CHECK(e->nbuckets >= ENC_MIN_BUCKETS && !(e->nbuckets & (e->nbuckets - 1)), "nbuckets %u", e->nbuckets);
    FUZZ_CHECK(size == ENC_HEADER + (size_t)e->nbuckets * 4 + (size_t)e->nbuckets * e->D * 2, "size %zu", size);
    float v[ENC_MAX_DIM];
    static const char *texts[] = {"what is the age range", "", "\xff\xfe", "a b c d e f g h i j k l m n o p"};
    for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
        FUZZ_CHECK(enc_embed(e, texts[t], strlen(texts[t]), v) == 0, "embed failed");
        double n = 0;
        for (int j = 0; j < e->D; j++) {
            FUZZ_CHECK(isfinite(v[j]), "non-finite embedding");
            n += (double)v[j] * v[j];
        }
        FUZZ_CHECK(n == 0 || fabs(n - 1.0) < 1e-3, "norm^2 %g", n);
    }
    struct buf b;
    buf_init(&b, 0);
    FUZZ_CHECK(enc_write(e, &b) == 0, "write failed");
    /* -0 and subnormal f16 values survive a round trip through f32 too */
    FUZZ_CHECK(b.len == size && !memcmp(b.data, data, size), "re-written bytes differ");
    buf_release(&b);
    enc_free(e);
    return 0;
}
