/*
 * evalset_fuzz.c — libFuzzer target for the retrieval evaluation's readers
 * (src/retrieval/eval.h): tab-separated records with RFC 4180 quoting,
 * grouped into questions and candidate pools, then scored.
 *
 * Invariants checked (abort on violation, as a crash):
 *   - eval_table_parse fails with a "name:line: ..." or "name: ..." message
 *     and no table, or returns rows with exactly the header's field count,
 *     line numbers increasing, every cell a C string;
 *   - a table with the set's columns becomes a set whose pools partition the
 *     rows, labels 0/1; BM25 scores are finite and >= 0; metrics lie in [0, 1]
 *     and questions + skipped = the number of questions.
 * ASan/UBSan and LeakSanitizer catch the rest.
 */
#include "core/error.h"
#include "retrieval/eval.h"

#include "fuzz.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void in01(double x, const char *what)
{
    FUZZ_CHECK(x >= 0.0 && x <= 1.0 + 1e-9, "%s = %g", what, x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct eval_table t;
    char err[512] = "";
    int rc = eval_table_parse(&t, "in", (const char *)data, size, err, sizeof(err));
    if (rc) {
        FUZZ_CHECK(!strncmp(err, "in:", 3) || !strncmp(err, "in ", 3), "message '%s' does not name the input", err);
        FUZZ_CHECK(t.cells == NULL && t.nrows == 0, "table left on failure");
        return 0;
    }
    FUZZ_CHECK(t.ncols >= 1, "no header columns");
    for (size_t r = 0; r < t.nrows; r++) {
        FUZZ_CHECK(r == 0 || t.line[r] > t.line[r - 1], "line numbers not increasing at row %zu", r);
        for (size_t c = 0; c < t.ncols; c++)
            FUZZ_CHECK(t.cells[r * t.ncols + c] != NULL, "NULL cell");
    }
    struct eval_set s;
    size_t nrows = t.nrows;
    if (eval_set_from_table(&s, &t, "in", err, sizeof(err)))
        return 0; /* the set took over the table and released it */
    FUZZ_CHECK(s.nc == nrows, "%zu candidates for %zu rows", s.nc, nrows);
    size_t covered = 0;
    for (size_t q = 0; q < s.nq; q++) {
        FUZZ_CHECK(s.q[q].first == covered && s.q[q].n > 0, "pools do not partition the rows");
        covered += s.q[q].n;
    }
    FUZZ_CHECK(covered == s.nc, "pools cover %zu of %zu", covered, s.nc);
    double *sc = calloc(s.nc ? s.nc : 1, sizeof(double));
    FUZZ_CHECK(sc != NULL, "calloc");
    FUZZ_CHECK(eval_bm25(&s, sc) == 0, "bm25 failed");
    for (size_t c = 0; c < s.nc; c++) {
        FUZZ_CHECK(s.c[c].label == 0 || s.c[c].label == 1, "label %d", s.c[c].label);
        FUZZ_CHECK(isfinite(sc[c]) && sc[c] >= 0, "bm25 %g", sc[c]);
    }
    struct eval_metrics m;
    eval_metrics(&s, sc, &m);
    FUZZ_CHECK(m.questions + m.skipped == s.nq, "%zu + %zu != %zu questions", m.questions, m.skipped, s.nq);
    in01(m.ndcg1, "nDCG@1");
    in01(m.ndcg5, "nDCG@5");
    in01(m.ndcg10, "nDCG@10");
    in01(m.mrr, "MRR");
    in01(m.recall1, "R@1");
    in01(m.recall5, "R@5");
    free(sc);
    eval_set_release(&s);
    return 0;
}
