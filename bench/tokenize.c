/*
 * tokenize.c — tokenizer training time and encode speed, each against the
 * textbook algorithm measured in the same run.
 *
 * Corpus: the text of the gzip'd JSON Lines / CSV sets under the data directory
 * ($AISLE_BENCH_DATA, else /work/shared/data, else $AISLE_ROOT/data): every JSON
 * string value and every CSV line, in file-name order, repeated until it is
 * TOK_BENCH_MB megabytes (default 50, the target).
 *
 *   train_*      the incremental trainer: count words once, then 8k merges with
 *                pair counts updated in place (the target: < 120 s)
 *   *_naive      the textbook trainer that recounts every pair before each merge,
 *                on a smaller slice (it is O(merges x symbols)); both trainers run
 *                on the same slice and must agree merge for merge; the naive time
 *                for the full corpus is extrapolated from the slice (stated as such)
 *   pretok_*     the GPT-2 pre-tokenizer with PCRE2 for every word vs its ASCII
 *                fast path (same words checked), best of 3
 *   encode_*     tok_encode (heap merge, word cache) vs tok_encode_naive
 *                (encoder.py's rescan-per-merge), same text, same vocabulary, same
 *                output checked, best of 3; also on the corpus's letters run
 *                together into 2-4 KB words, where the rescan goes quadratic
 *
 * Prints `name value unit` lines; the machine is whatever runs it (noisy, shared:
 * read the ratios).
 */
#include "core/buf.h"
#include "core/error.h"
#include "core/lineio.h"
#include "tok/tok.h"
#include "tok/train.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench/tokenize: %s: %s\n", what, aisle_strerror(rc));
    exit(1);
}

static void json_text(json_t *v, struct buf *out)
{
    if (json_is_string(v)) {
        if (buf_append(out, json_string_value(v), json_string_length(v)) || buf_putc(out, '\n'))
            die("corpus", AISLE_ENOMEM);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
            json_text(e, out);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
            json_text(e, out);
    }
}

static void add_file(const char *path, struct buf *out, size_t target)
{
    struct lineio in;
    if (lineio_open(&in, path, 0))
        return;
    int json = strstr(path, ".json") != NULL;
    const char *line;
    size_t len;
    int rc;
    while (out->len < target && (rc = lineio_next(&in, &line, &len)) != AISLE_EEOF) {
        if (rc)
            continue;
        if (json) {
            json_t *v = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
            if (v)
                json_text(v, out);
            json_decref(v);
        } else if (buf_append(out, line, len) || buf_putc(out, '\n')) {
            die("corpus", AISLE_ENOMEM);
        }
    }
    lineio_close(&in);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* All *.gz files below dir, sorted. */
static void list_gz(const char *dir, char ***files, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st))
            continue;
        if (S_ISDIR(st.st_mode)) {
            list_gz(path, files, n);
        } else if (strlen(path) > 3 && !strcmp(path + strlen(path) - 3, ".gz")) {
            *files = realloc(*files, (*n + 1) * sizeof(**files));
            (*files)[(*n)++] = strdup(path);
        }
    }
    closedir(d);
    qsort(*files, *n, sizeof(**files), cmp_str);
}

static void corpus(struct buf *out, size_t target)
{
    const char *dir = getenv("AISLE_BENCH_DATA");
    char alt[4096];
    struct stat st;
    if (!dir)
        dir = stat("/work/shared/data", &st) == 0 ? "/work/shared/data" : NULL;
    if (!dir && getenv("AISLE_ROOT")) {
        snprintf(alt, sizeof(alt), "%s/data", getenv("AISLE_ROOT"));
        dir = alt;
    }
    char **files = NULL;
    size_t n = 0;
    if (dir)
        list_gz(dir, &files, &n);
    for (size_t i = 0; i < n; i++)
        add_file(files[i], out, target);
    if (!out->len) {
        fprintf(stderr, "bench/tokenize: no text under %s (set AISLE_BENCH_DATA)\n", dir ? dir : "(no data dir)");
        exit(1);
    }
    size_t unique = out->len;
    while (out->len < target) /* repeat what there is */
        if (buf_append(out, out->data, target - out->len < unique ? target - out->len : unique))
            die("corpus", AISLE_ENOMEM);
    printf("corpus_unique %.1f MB\n", (double)unique / 1e6);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
}

/* Feed text in 1 MB pieces cut at newlines, as the CLI does. */
static void feed_all(struct tok_trainer *tr, const char *s, size_t n)
{
    size_t off = 0;
    while (off < n) {
        size_t end = off + (1u << 20) < n ? off + (1u << 20) : n;
        while (end < n && s[end - 1] != '\n')
            end++;
        int rc = tok_trainer_feed(tr, s + off, end - off);
        if (rc)
            die("feed", rc);
        off = end;
    }
}

static int same_vocab(const struct tok *a, const struct tok *b)
{
    if (tok_n_vocab(a) != tok_n_vocab(b) || tok_n_merges(a) != tok_n_merges(b))
        return 0;
    for (size_t i = 0; i < tok_n_vocab(a); i++) {
        size_t la, lb;
        const char *sa = tok_text(a, (int32_t)i, &la), *sb = tok_text(b, (int32_t)i, &lb);
        if (la != lb || memcmp(sa, sb, la))
            return 0;
    }
    return 1;
}

/* Encode text with both encoders, best of 3 interleaved runs each (the machine
 * is shared: the minimum is the least disturbed); check they agree; print MB/s
 * and the ratio. */
static void bench_encode(const char *name, const struct tok *t, const char *s, size_t n)
{
    struct tok_ids a, b;
    tok_ids_init(&a, 0);
    tok_ids_init(&b, 0);
    double best_fast = 1e30, best_slow = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        a.len = b.len = 0;
        struct tok_cache *c = tok_cache_new(t); /* cold cache every run: no unfair warm-up */
        double t0 = now();
        int rc = tok_encode(t, c, s, n, 0, &a);
        double t1 = now();
        if (rc || (rc = tok_encode_naive(t, s, n, &b)))
            die("encode", rc);
        double t2 = now();
        tok_cache_free(c);
        if (a.len != b.len || memcmp(a.ids, b.ids, a.len * sizeof(int32_t))) {
            fprintf(stderr, "bench/tokenize: %s: the encoders disagree\n", name);
            exit(1);
        }
        best_fast = t1 - t0 < best_fast ? t1 - t0 : best_fast;
        best_slow = t2 - t1 < best_slow ? t2 - t1 : best_slow;
    }
    double fast = (double)n / 1e6 / best_fast, slow = (double)n / 1e6 / best_slow;
    printf("%s_mb_s %.2f MB/s\n", name, fast);
    printf("%s_naive_mb_s %.2f MB/s\n", name, slow);
    printf("%s_speedup %.2f x\n", name, fast / slow);
    printf("%s_bytes_per_token %.2f bytes\n", name, (double)n / (double)a.len);
    tok_ids_release(&a);
    tok_ids_release(&b);
}

/* The pre-tokenizer alone: PCRE2 for every word vs the ASCII fast path, best of 3. */
static void bench_pretok(const char *s, size_t n)
{
    void *re;
    char err[256];
    if (tok_regex_new(&re, tok_gpt2_pattern, err, sizeof(err)))
        die(err, AISLE_EINVAL);
    void *md = tok_match_data_new(re);
    double best[2] = {1e30, 1e30};
    size_t words[2] = {0, 0};
    for (int rep = 0; rep < 3; rep++)
        for (int fast = 0; fast < 2; fast++) {
            struct tok_pretok it;
            tok_pretok_init(&it, re, md, s, n);
            it.ascii_fast = fast;
            size_t start, len, w = 0;
            double t0 = now();
            while (tok_pretok_next(&it, &start, &len))
                w++;
            double t = now() - t0;
            best[fast] = t < best[fast] ? t : best[fast];
            words[fast] = w;
        }
    if (words[0] != words[1]) {
        fprintf(stderr, "bench/tokenize: the pre-tokenizer paths disagree\n");
        exit(1);
    }
    printf("pretok_pcre2_mb_s %.1f MB/s\n", (double)n / 1e6 / best[0]);
    printf("pretok_ascii_fast_mb_s %.1f MB/s\n", (double)n / 1e6 / best[1]);
    printf("pretok_speedup %.2f x\n", best[0] / best[1]);
    tok_match_data_free(md);
    tok_regex_free(re);
}

int main(void)
{
    size_t mb = getenv("TOK_BENCH_MB") ? (size_t)atol(getenv("TOK_BENCH_MB")) : 50;
    size_t vocab = getenv("TOK_BENCH_VOCAB") ? (size_t)atol(getenv("TOK_BENCH_VOCAB")) : 8000;
    if (mb < 1)
        mb = 1;
    struct buf text;
    buf_init(&text, 0);
    double c0 = now();
    corpus(&text, mb << 20);
    printf("corpus %.1f MB (read in %.1f s)\n", (double)text.len / 1e6, now() - c0);

    /* the full run: the target */
    char err[256];
    struct tok_trainer *tr;
    if (tok_trainer_new(&tr, err, sizeof(err)))
        die(err, AISLE_EINVAL);
    double t0 = now();
    feed_all(tr, text.data, text.len);
    double t1 = now();
    struct tok *big;
    int rc = tok_trainer_train(tr, vocab, NULL, NULL, &big, err, sizeof(err));
    if (rc)
        die(err, rc);
    double t2 = now();
    struct tok_train_stats big_st;
    tok_trainer_stats(tr, &big_st);
    tok_trainer_free(tr);
    printf("train_count_s %.2f s\n", t1 - t0);
    printf("train_merge_s %.2f s\n", t2 - t1);
    printf("train_total_s %.2f s\n", t2 - t0);
    printf("train_vocab %zu tokens\n", tok_n_vocab(big));
    printf("train_distinct_words %llu words\n", (unsigned long long)big_st.distinct);

    /* both trainers on the same slice */
    size_t slice = text.len < (2u << 20) ? text.len : (2u << 20), small_vocab = 2000;
    struct tok *fast, *naive;
    if ((rc = tok_trainer_new(&tr, err, sizeof(err))))
        die(err, rc);
    feed_all(tr, text.data, slice);
    double s0 = now();
    if ((rc = tok_trainer_train(tr, small_vocab, NULL, NULL, &fast, err, sizeof(err))))
        die(err, rc);
    double s1 = now();
    if ((rc = tok_trainer_train_naive(tr, small_vocab, &naive, err, sizeof(err))))
        die(err, rc);
    double s2 = now();
    struct tok_train_stats small_st;
    tok_trainer_stats(tr, &small_st);
    tok_trainer_free(tr);
    if (!same_vocab(fast, naive)) {
        fprintf(stderr, "bench/tokenize: incremental and naive trainers disagree\n");
        return 1;
    }
    printf("train_slice %.1f MB\n", (double)slice / 1e6);
    printf("train_slice_merge_s %.3f s\n", s1 - s0);
    printf("train_slice_merge_naive_s %.3f s\n", s2 - s1);
    printf("train_slice_speedup %.1f x\n", (s2 - s1) / (s1 - s0));
    /* naive cost ~ merges x distinct symbols (each merge rescans every distinct word) */
    double est = (s2 - s1) * ((double)tok_n_merges(big) / (double)tok_n_merges(naive)) *
                 ((double)big_st.distinct_bytes / (double)small_st.distinct_bytes);
    printf("train_merge_naive_estimate_s %.0f s\n", est);
    printf("train_merge_speedup_estimate %.0f x\n", est / (t2 - t1));

    /* encoding: the trained vocabulary on real text, then on long unbroken words */
    size_t enc = text.len < (8u << 20) ? text.len : (8u << 20);
    bench_pretok(text.data, enc);
    bench_encode("encode", big, text.data, enc);
    struct buf longw;
    buf_init(&longw, 0);
    /* the corpus's letters with everything else removed, cut into 2-4 KB words:
     * text without spaces (URLs, run-together words) where many different merges
     * apply inside one word and the rescan-per-merge encoder goes quadratic */
    size_t wl = 0, want = 2000;
    for (size_t i = 0; i < text.len && longw.len < (256u << 10); i++) {
        char ch = text.data[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
            continue;
        buf_putc(&longw, ch);
        if (++wl == want) {
            buf_putc(&longw, '\n');
            wl = 0;
            want = 2000 + (longw.len * 7919) % 2000;
        }
    }
    bench_encode("encode_longwords", big, longw.data, longw.len);
    buf_release(&longw);

    tok_free(fast);
    tok_free(naive);
    tok_free(big);
    buf_release(&text);
    return 0;
}
