/*
 * eval_test.c — the evaluation's file reader (quoting, errors with line
 * numbers), metrics checked against hand-computed values, BM25 over a pool
 * with whole-file statistics, the fixture slices of the real dev sets, and
 * `aisle eval retrieval` on a directory laid out like the shared data.
 */
#include "../testutil.h"

#include "core/error.h"
#include "retrieval/eval.h"

#include <math.h>

Test(eval_tsv, quoting)
{
    struct buf out;
    buf_init(&out, 0);
    size_t offs[8], nf = 0, bad = 0;
    const char *s = "a\t\"b\tc\"\t\"say \"\"hi\"\"\"\t";
    cr_assert_eq(eval_tsv_split(s, strlen(s), &out, offs, 8, &nf, &bad), 0);
    cr_assert_eq(nf, 4);
    cr_assert_str_eq(out.data + offs[0], "a");
    cr_assert_str_eq(out.data + offs[1], "b\tc");
    cr_assert_str_eq(out.data + offs[2], "say \"hi\"");
    cr_assert_str_eq(out.data + offs[3], "");
    s = "x\t\"open";
    cr_assert_eq(eval_tsv_split(s, strlen(s), &out, offs, 8, &nf, &bad), 1, "a record that goes on");
    s = "x\tst\"ray";
    cr_assert_eq(eval_tsv_split(s, strlen(s), &out, offs, 8, &nf, &bad), AISLE_EFORMAT);
    cr_assert_eq(bad, 4);
    s = "\"closed\"junk";
    cr_assert_eq(eval_tsv_split(s, strlen(s), &out, offs, 8, &nf, &bad), AISLE_EFORMAT);
    s = "a\tb\tc";
    cr_assert_eq(eval_tsv_split(s, strlen(s), &out, offs, 2, &nf, &bad), AISLE_ETOOBIG);
    buf_release(&out);
}

Test(eval_tsv, tables_and_their_errors)
{
    struct eval_table t;
    char err[512];
    const char *ok = "qid\tquestion\tcandidate\tlabel\n1\tq one\t\"two\nlines\"\t1\n\n2\tq two\tc\t0\n";
    cr_assert_eq(eval_table_parse(&t, "mem", ok, strlen(ok), err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(t.ncols, 4);
    cr_assert_eq(t.nrows, 2);
    cr_assert_str_eq(t.cells[2], "two\nlines");
    cr_assert_eq(t.line[1], 5, "rows remember their first line");
    cr_assert_eq(eval_table_col(&t, "label"), 3);
    cr_assert_eq(eval_table_col(&t, "nope"), -1);
    eval_table_release(&t);
    struct {
        const char *in, *msg;
    } bad[] = {
        {"", "empty file"},
        {"a\tb\n1\n", "mem:2: 1 fields, the header has 2"},
        {"a\tb\n1\t\"unclosed\n", "mem:2: quoted field never closed"},
        {"a\tb\n1\tx\"y\n", "mem:2: stray quote"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        cr_assert_neq(eval_table_parse(&t, "mem", bad[i].in, strlen(bad[i].in), err, sizeof(err)), 0);
        cr_assert(strstr(err, bad[i].msg), "case %zu: '%s' lacks '%s'", i, err, bad[i].msg);
    }
    struct eval_set s;
    const char *badlab = "qid\tquestion\tcandidate\tlabel\n1\tq\tc\tyes\n";
    cr_assert_eq(eval_table_parse(&t, "mem", badlab, strlen(badlab), err, sizeof(err)), 0);
    cr_assert_eq(eval_set_from_table(&s, &t, "mem", err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "mem:2: label: expected 0 or 1"), "%s", err);
    const char *nocol = "qid\tquestion\tlabel\n1\tq\t1\n";
    cr_assert_eq(eval_table_parse(&t, "mem", nocol, strlen(nocol), err, sizeof(err)), 0);
    cr_assert_eq(eval_set_from_table(&s, &t, "mem", err, sizeof(err)), AISLE_EFORMAT);
    cr_assert(strstr(err, "lacks candidate"), "%s", err);
    cr_assert_eq(eval_table_read(&t, "/nonexistent.tsv", err, sizeof(err)), AISLE_EIO);
    cr_assert(strstr(err, "/nonexistent.tsv"), "%s", err);
}

/* Hand-computed: ranked labels 0,1,0,1 with 2 positives.
 *   DCG@5 = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606
 *   IDCG  = 1 + 1/log2(3) = 1.630930 -> nDCG@5 = nDCG@10 = 0.650921
 *   nDCG@1 = 0, MRR = 1/2, R@1 = 0, R@5 = 2/2. */
Test(eval_metrics, hand_computed)
{
    struct eval_metrics m = {0};
    int l1[] = {0, 1, 0, 1};
    eval_metrics_add(l1, 4, 2, &m);
    eval_metrics_finish(&m);
    cr_assert_float_eq(m.ndcg1, 0.0, 1e-9);
    cr_assert_float_eq(m.ndcg5, 0.650921, 1e-6);
    cr_assert_float_eq(m.ndcg10, 0.650921, 1e-6);
    cr_assert_float_eq(m.mrr, 0.5, 1e-9);
    cr_assert_float_eq(m.recall1, 0.0, 1e-9);
    cr_assert_float_eq(m.recall5, 1.0, 1e-9);
    /* two questions average; a pool without positives is skipped */
    memset(&m, 0, sizeof(m));
    int l2[] = {1, 0, 0}, l3[] = {0, 0};
    int l4[] = {0, 0, 0, 0, 0, 1}; /* the positive at rank 6: MRR 1/6, nothing in the top 5 */
    eval_metrics_add(l2, 3, 1, &m);
    eval_metrics_add(l3, 2, 0, &m);
    eval_metrics_add(l4, 6, 1, &m);
    eval_metrics_finish(&m);
    cr_assert_eq(m.questions, 2);
    cr_assert_eq(m.skipped, 1);
    cr_assert_float_eq(m.ndcg1, 0.5, 1e-9);
    cr_assert_float_eq(m.ndcg5, 0.5, 1e-9);
    cr_assert_float_eq(m.ndcg10, (1.0 + 1.0 / log2(7.0)) / 2, 1e-9);
    cr_assert_float_eq(m.mrr, (1.0 + 1.0 / 6) / 2, 1e-9);
    cr_assert_float_eq(m.recall5, 0.5, 1e-9);
}

/* BM25 with whole-file statistics, by hand. Documents (stop words dropped):
 * d1 {red, shoe, size}, d2 {blue, hat}; N = 2, avgdl = 2.5, k1 1.2, b 0.75.
 * Query {red, shoe}: idf = ln(1 + (2 - 1 + .5)/(1 + .5)) = ln 2 for each;
 * tf part = 2.2 / (1 + 1.2 (0.25 + 0.75 * 3 / 2.5)) = 2.2 / 2.38 = 0.924370;
 * score(d1) = 2 * 0.693147 * 0.924370 = 1.281449, score(d2) = 0. */
Test(eval_rank, bm25_by_hand_and_ranking)
{
    const char *tsv = "qid\tquestion\tcandidate\tlabel\n7\tred shoe?\tthe red shoe size\t1\n7\tred shoe?\tblue hat\t0\n";
    struct eval_table t;
    struct eval_set s;
    char err[256];
    cr_assert_eq(eval_table_parse(&t, "mem", tsv, strlen(tsv), err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(eval_set_from_table(&s, &t, "mem", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(s.nq, 1);
    cr_assert_eq(s.nc, 2);
    double sc[2];
    cr_assert_eq(eval_bm25(&s, sc), 0);
    cr_assert_float_eq(sc[0], 1.281449, 1e-6, "got %.6f", sc[0]);
    cr_assert_float_eq(sc[1], 0.0, 1e-12);
    int rank[2];
    cr_assert_eq(eval_ranks(&s, sc, rank), 0);
    cr_assert_eq(rank[0], 0);
    cr_assert_eq(rank[1], 1);
    double cov[2];
    size_t nt[2];
    cr_assert_eq(eval_coverage(&s, cov, nt), 0);
    cr_assert_float_eq(cov[0], 1.0, 1e-12);
    cr_assert_eq(nt[0], 3);
    struct eval_metrics m;
    eval_metrics(&s, sc, &m);
    cr_assert_float_eq(m.ndcg1, 1.0, 1e-12);
    double rev[2] = {0.0, 1.0};
    eval_metrics(&s, rev, &m);
    cr_assert_float_eq(m.mrr, 0.5, 1e-12, "the positive second");
    eval_set_release(&s);
}

static void read_fixture(struct eval_set *s, const char *name)
{
    char path[1024], err[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/retrieval/%s", tu_root(), name);
    cr_assert_eq(eval_set_read(s, path, err, sizeof(err)), 0, "%s", err);
}

Test(eval_sets, fixture_slices_of_the_dev_sets)
{
    struct eval_set s;
    read_fixture(&s, "hetpqa_evidence_dev_head.tsv");
    cr_assert_eq(s.nq, 8);
    cr_assert_eq(s.nc, 40);
    for (size_t q = 0; q < s.nq; q++)
        cr_assert_eq(s.q[q].n, 5);
    cr_assert_str_eq(s.q[0].qid, "28492");
    cr_assert_str_eq(s.q[0].question, "it works with ipad air?");
    cr_assert_str_eq(s.c[1].text, "size:  { value:\"ipad case\" }", "quotes undone: %s", s.c[1].text);
    cr_assert_eq(s.c[0].source, RR_ATTRIBUTE);
    eval_set_release(&s);
    read_fixture(&s, "semipqa_attribute_dev_head.tsv");
    cr_assert_eq(s.nq, 6);
    cr_assert_eq(s.nc, 60);
    int pos = 0;
    for (size_t c = 0; c < s.nc; c++)
        pos += s.c[c].label;
    cr_assert_gt(pos, 0);
    /* BM25 and the shipped encoder both beat a random order here */
    double *bm = calloc(s.nc, sizeof(double)), *dn = calloc(s.nc, sizeof(double));
    char path[1024], err[256];
    snprintf(path, sizeof(path), "%s/models/encoder-v1.bin", tu_root());
    struct encoder *e;
    cr_assert_eq(enc_load(&e, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(eval_bm25(&s, bm), 0);
    cr_assert_eq(eval_dense(&s, e, dn), 0);
    struct eval_metrics mb, md;
    eval_metrics(&s, bm, &mb);
    eval_metrics(&s, dn, &md);
    cr_log_info("fixture semiPQA dev slice: BM25 MRR %.3f, dense MRR %.3f", mb.mrr, md.mrr);
    cr_assert_gt(mb.mrr, 0.3);
    cr_assert_gt(md.mrr, 0.3);
    free(bm);
    free(dn);
    enc_free(e);
    eval_set_release(&s);
    read_fixture(&s, "semipqa_attribute_testseen_head.tsv");
    cr_assert_gt(s.nq, 0);
    eval_set_release(&s);
}

/* The command on a directory laid out like the shared data, holding the
 * fixture slices: one run, three sets, every method, question counts. */
Test(eval_cli, retrieval_on_the_fixture_slices)
{
    char *dir = tu_tmpdir(), *out;
    const char *r = tu_root();
    int st = tu_run(&out,
                    "d=%s/contextual-pqa && mkdir -p $d/hetPQA/evidence_ranking $d/semiPQA/attribute_ranking &&"
                    " f=%s/tests/fixtures/retrieval &&"
                    " gzip -c $f/hetpqa_evidence_dev_head.tsv > $d/hetPQA/evidence_ranking/dev.csv.gz &&"
                    " gzip -c $f/semipqa_attribute_dev_head.tsv > $d/semiPQA/attribute_ranking/dev.csv.gz &&"
                    " gzip -c $f/semipqa_attribute_testseen_head.tsv > $d/semiPQA/attribute_ranking/testseen.csv.gz &&"
                    " %s eval retrieval --data-dir %s --encoder %s/models/encoder-v1.bin --folds 2",
                    dir, r, tu_aisle(), dir, r);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "hetPQA evidence_ranking dev: "), "%s", out);
    cr_assert(strstr(out, "semiPQA attribute_ranking testseen: "), "%s", out);
    const char *rows[] = {"  BM25  ", "  dense  ", "hybrid (RRF + rerank, CV)", "RRF, no rerank", "learned fusion",
                          "rerank without dense", "hybrid - BM25"};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int count = 0;
        for (const char *p = out; (p = strstr(p, rows[i])); p++)
            count++;
        cr_assert_eq(count, 3, "'%s' once per set:\n%s", rows[i], out);
    }
    free(out);
    st = tu_run(&out, "%s eval retrieval --data-dir %s/none", tu_aisle(), dir);
    cr_assert_eq(st, 1);
    cr_assert(strstr(out, "not a directory"), "%s", out);
    free(out);
    st = tu_run(&out, "%s eval retrieval --data-dir %s --encoder %s/nope.bin", tu_aisle(), dir, dir);
    cr_assert_eq(st, 1);
    cr_assert(strstr(out, "nope.bin"), "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "%s eval retrieval --help", tu_aisle()), 0);
    cr_assert(strstr(out, "usage: aisle eval retrieval"));
    free(out);
    tu_rmdir(dir);
}
