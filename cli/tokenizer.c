/* tokenizer.c — `aisle tokenizer train`: learn a byte-level BPE vocabulary from
 * text files, JSON Lines files and/or a store database, and write it as a
 * vocabulary-only GGUF file (tokenizer.ggml.* keys, see docs/TOKENIZER.md). */
#include "cli.h"
#include "cmds.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/lineio.h"
#include "gguf/gguf.h"
#include "store/store.h"
#include "tok/tok.h"
#include "tok/train.h"

#include <getopt.h>
#include <jansson.h>
#include <sqlite3.h>
#include <zlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEED_CHUNK (1u << 20)     /* text lines are fed to the trainer in chunks of this size */
#define MAX_JSON_FILE (256u << 20) /* a whole-file JSON document (not JSON Lines), decompressed */
#define MAX_FIELDS 64

static const char usage_text[] =
    "usage: aisle tokenizer train --vocab N --out FILE.gguf [--field NAME]... [--db PATH] [INPUT...]\n"
    "\n"
    "Learn a byte-level BPE vocabulary of N tokens (256 bytes + merges + 5 special\n"
    "tokens: <|endoftext|> <|system|> <|user|> <|assistant|> <|end|>) and write it\n"
    "as a GGUF file that llama.cpp and 'aisle tokenize' read.\n"
    "\n"
    "Inputs, plain or gzip: *.jsonl files are read as one JSON value per line,\n"
    "*.json files as one JSON document (or per line when that fails), taking every\n"
    "string value (or only those under the --field names); anything else is text,\n"
    "line by line. --db adds a store's evidence passages\n"
    "(product titles, bullets, attributes, descriptions, reviews and their titles,\n"
    "Q&A answers and questions).\n"
    "\n"
    "  --vocab N      vocabulary size (262 .. 4194304)\n"
    "  --out FILE     the GGUF file to write (replaced atomically)\n"
    "  --field NAME   a JSON key whose string values are text (repeatable)\n"
    "  --db PATH      a store database to read passages from\n"
    "  -h, --help     this help\n";

struct reader {
    struct tok_trainer *tr;
    const char *fields[MAX_FIELDS];
    int nfields;
    uint64_t docs, bad_lines;
    struct cli_progress prog;
};

static void feed(struct reader *r, const char *s, size_t n)
{
    int rc = tok_trainer_feed(r->tr, s, n);
    if (rc == AISLE_ETOOBIG)
        cli_die("more than %u distinct words: train on less text", TOK_TRAIN_MAX_WORDS);
    if (rc)
        cli_die("training: %s", aisle_strerror(rc));
    r->docs++;
}

static int wanted(const struct reader *r, const char *key)
{
    if (!r->nfields)
        return 1;
    for (int i = 0; key && i < r->nfields; i++)
        if (!strcmp(r->fields[i], key))
            return 1;
    return 0;
}

/* Feed every string under v whose nearest key is wanted. */
static void feed_json(struct reader *r, json_t *v, const char *key)
{
    if (json_is_string(v)) {
        if (wanted(r, key))
            feed(r, json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
            feed_json(r, e, key);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
            feed_json(r, e, k);
    }
}

static int is_json_name(const char *path)
{
    return strstr(path, ".jsonl") || strstr(path, ".json");
}

/* A *.json file may be one JSON document over many lines rather than JSON Lines:
 * try it whole first. 1 when it was read that way, 0 to read it line by line. */
static int read_json_document(struct reader *r, const char *path)
{
    size_t n = strlen(path);
    int json_not_lines = (n > 5 && !strcmp(path + n - 5, ".json")) || (n > 8 && !strcmp(path + n - 8, ".json.gz"));
    if (!json_not_lines)
        return 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return 0;
    struct buf doc;
    buf_init(&doc, MAX_JSON_FILE);
    char chunk[1 << 16];
    int got, ok = 1;
    while (ok && (got = gzread(f, chunk, sizeof(chunk))) > 0)
        ok = buf_append(&doc, chunk, (size_t)got) == 0;
    ok = ok && got == 0;
    gzclose(f);
    json_t *v = ok ? json_loadb(doc.data ? doc.data : "", doc.len, JSON_ALLOW_NUL, NULL) : NULL;
    buf_release(&doc);
    if (!v)
        return 0; /* too big, corrupt, or JSON Lines after all */
    feed_json(r, v, NULL);
    json_decref(v);
    return 1;
}

static void read_file(struct reader *r, const char *path)
{
    if (read_json_document(r, path))
        return;
    struct lineio in;
    if (lineio_open(&in, path, 0))
        cli_die("%s: %s", path, in.err);
    int json = is_json_name(path);
    struct buf chunk;
    buf_init(&chunk, 0);
    const char *line;
    size_t len;
    int rc;
    uint64_t lines = 0;
    while ((rc = lineio_next(&in, &line, &len)) != AISLE_EEOF) {
        if (rc == AISLE_ETOOBIG) {
            r->bad_lines++;
            continue;
        }
        if (rc)
            cli_die("%s:%llu: %s", path, (unsigned long long)in.lineno, in.err);
        if (json) {
            json_error_t jerr;
            json_t *v = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
            if (!v) {
                r->bad_lines++;
                continue;
            }
            feed_json(r, v, NULL);
            json_decref(v);
        } else {
            if (buf_append(&chunk, line, len) || buf_putc(&chunk, '\n'))
                cli_die("out of memory");
            if (chunk.len >= FEED_CHUNK) {
                feed(r, chunk.data, chunk.len);
                buf_reset(&chunk);
            }
        }
        if (++lines % 1024 == 0)
            cli_progress_update(&r->prog, lines, lineio_offset(&in), in.file_size);
    }
    if (chunk.len)
        feed(r, chunk.data, chunk.len);
    buf_release(&chunk);
    lineio_close(&in);
}

static void read_db(struct reader *r, const char *path)
{
    char err[512];
    struct store *s;
    if (store_open(&s, path, STORE_READONLY, err, sizeof(err)))
        cli_die("%s", err);
    int64_t total = 0;
    store_count(s, "passages", &total);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(store_db(s), "SELECT text, aux FROM passages", -1, &st, NULL) != SQLITE_OK)
        cli_die("%s: %s", path, sqlite3_errmsg(store_db(s)));
    int rc;
    uint64_t rows = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int col = 0; col < 2; col++) {
            const char *txt = (const char *)sqlite3_column_text(st, col);
            if (txt)
                feed(r, txt, (size_t)sqlite3_column_bytes(st, col));
        }
        if (++rows % 1024 == 0)
            cli_progress_update(&r->prog, rows, rows, (uint64_t)total);
    }
    if (rc != SQLITE_DONE)
        cli_die("%s: %s", path, sqlite3_errmsg(store_db(s)));
    sqlite3_finalize(st);
    store_close(s);
}

static int on_progress(void *ctx, size_t done, size_t total)
{
    cli_progress_update(ctx, done, done, total);
    return 0;
}

static int train(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"vocab", required_argument, NULL, 'v'}, {"out", required_argument, NULL, 'o'},
        {"field", required_argument, NULL, 'f'}, {"db", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    struct reader r = {0};
    const char *out = NULL, *db = NULL;
    long vocab = 0;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'v': {
            char *end;
            vocab = strtol(optarg, &end, 10);
            if (*end || vocab < TOK_TRAIN_MIN_VOCAB || vocab > (long)TOK_MAX_VOCAB)
                cli_usage_error("tokenizer", "--vocab: expected a number from %d to %u", TOK_TRAIN_MIN_VOCAB,
                                TOK_MAX_VOCAB);
            break;
        }
        case 'o': out = optarg; break;
        case 'd': db = optarg; break;
        case 'f':
            if (r.nfields == MAX_FIELDS)
                cli_usage_error("tokenizer", "at most %d --field options", MAX_FIELDS);
            r.fields[r.nfields++] = optarg;
            break;
        default: cli_usage_error("tokenizer", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!vocab)
        cli_usage_error("tokenizer", "--vocab is required");
    if (!out)
        cli_usage_error("tokenizer", "--out is required");
    if (optind >= argc && !db)
        cli_usage_error("tokenizer", "no input: give files and/or --db");
    char err[512];
    if (tok_trainer_new(&r.tr, err, sizeof(err)))
        cli_die("%s", err);

    double t0 = cli_now();
    for (int i = optind; i < argc; i++) {
        cli_progress_init(&r.prog, argv[i]);
        read_file(&r, argv[i]);
        cli_progress_end(&r.prog);
    }
    if (db) {
        cli_progress_init(&r.prog, db);
        read_db(&r, db);
        cli_progress_end(&r.prog);
    }
    struct tok_train_stats st;
    tok_trainer_stats(r.tr, &st);
    double t1 = cli_now();
    fprintf(stderr, "read %llu documents, %.1f MB, %llu words (%llu distinct) in %.1f s",
            (unsigned long long)r.docs, (double)st.bytes / 1e6, (unsigned long long)st.words,
            (unsigned long long)st.distinct, t1 - t0);
    if (st.skipped)
        fprintf(stderr, "; %llu bytes in words over %u bytes not counted", (unsigned long long)st.skipped,
                TOK_TRAIN_MAX_WORD);
    if (r.bad_lines)
        fprintf(stderr, "; skipped %llu unreadable or over-long lines", (unsigned long long)r.bad_lines);
    fputc('\n', stderr);

    struct tok *t;
    cli_progress_init(&r.prog, "merges");
    int rc = tok_trainer_train(r.tr, (size_t)vocab, on_progress, &r.prog, &t, err, sizeof(err));
    cli_progress_end(&r.prog);
    if (rc)
        cli_die("training: %s", err);
    double t2 = cli_now();

    struct gguf_writer *w = gguf_writer_new();
    if (!w || gguf_writer_set_str(w, "general.architecture", "llama") ||
        gguf_writer_set_str(w, "general.name", "aisle-bpe") || tok_save_gguf(t, w))
        cli_die("out of memory");
    if (gguf_writer_write(w, out, err, sizeof(err)))
        cli_die("%s: %s", out, err);
    printf("wrote %s: %zu tokens (%zu merges) in %.1f s (%.1f s reading, %.1f s merging)\n", out, tok_n_vocab(t),
           tok_n_merges(t), t2 - t0, t1 - t0, t2 - t1);
    if (tok_n_vocab(t) < (size_t)vocab)
        printf("note: the input has no more pairs to merge; the vocabulary is smaller than --vocab %ld\n", vocab);
    gguf_writer_free(w);
    tok_free(t);
    tok_trainer_free(r.tr);
    return 0;
}

int cmd_tokenizer(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) {
        if (cli_wants_help(argc - 1, argv + 1)) {
            fputs(usage_text, stdout);
            return 0;
        }
        return train(argc - 1, argv + 1);
    }
    cli_usage_error("tokenizer", "unknown subcommand '%s' (try 'train')", argv[1]);
}
