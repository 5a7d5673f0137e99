/* tokenize.c — `aisle tokenize` and `aisle detokenize`: text <-> token ids with
 * the tokenizer stored in a GGUF file (a model or a vocabulary-only file). */
#include "cli.h"
#include "cmds.h"

#include "core/buf.h"
#include "core/error.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_MAX_STDIN (64u << 20) /* text read from standard input */

static const char tokenize_usage[] =
    "usage: aisle tokenize --model FILE [--ids] [--lines] [--escape] [--no-bos] [--no-parse-special] [TEXT...]\n"
    "\n"
    "Split TEXT (the arguments joined by spaces, else standard input) into the\n"
    "tokens of the tokenizer stored in FILE (GGUF: tokenizer.ggml.model gpt2 or\n"
    "llama), as llama.cpp would. Prints one token per line, \"ID 'piece'\", with\n"
    "bytes outside printable ASCII escaped as \\xNN.\n"
    "\n"
    "  --model FILE         GGUF file with a tokenizer\n"
    "  --ids                print only the ids, on one line (input for detokenize)\n"
    "  --lines              each input line (without its newline) is one text: print\n"
    "                       one line of ids per line\n"
    "  --escape             read \\n \\r \\t \\' \\\" \\\\ and \\xHH in the text as the bytes\n"
    "                       they stand for (llama-tokenize's escapes)\n"
    "  --no-bos             do not add the BOS/EOS tokens the vocabulary asks for\n"
    "  --no-parse-special   read \"<|user|>\" and the like as plain text\n"
    "  -h, --help           this help\n";

static const char detokenize_usage[] =
    "usage: aisle detokenize --model FILE [--special] [IDS...]\n"
    "\n"
    "Print the text of token ids (arguments separated by spaces or commas, else\n"
    "standard input), as llama.cpp's detokenize does.\n"
    "\n"
    "  --model FILE   GGUF file with a tokenizer\n"
    "  --special      render control tokens (\"<|end|>\", \"<s>\") as text\n"
    "  -h, --help     this help\n";

/* Open path and load its tokenizer; dies with the reason on failure. */
static struct tok *load_model(const char *cmd, const char *path)
{
    char err[512];
    struct gguf *g;
    if (gguf_open(&g, path, err, sizeof(err)))
        cli_die("%s", err); /* the reader's message names the file */
    struct tok *t;
    if (tok_load_gguf(&t, g, err, sizeof(err)))
        cli_die("%s: %s", path, err);
    gguf_close(g);
    if (!tok_pre_known(t))
        fprintf(stderr, "aisle %s: warning: pre-tokenizer '%s' is read as GPT-2's; splits may differ from llama.cpp\n",
                cmd, tok_pre(t));
    return t;
}

/* The arguments joined by spaces, or all of standard input. */
static void read_text(int argc, char **argv, struct buf *b)
{
    if (argc > 0) {
        for (int i = 0; i < argc; i++)
            if ((i && buf_putc(b, ' ')) || buf_puts(b, argv[i]))
                cli_die("out of memory");
        return;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        if (buf_append(b, chunk, n))
            cli_die("standard input is over %u MiB", CLI_MAX_STDIN >> 20);
    if (ferror(stdin))
        cli_die("reading standard input: %s", strerror(errno));
}

static int hex_digit(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decode llama-tokenize's escapes in s[0..n) in place (the result is never
 * longer); a backslash before anything else stays. Returns the new length. */
static size_t unescape(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 == n) {
            s[o++] = s[i];
            continue;
        }
        char c = s[++i];
        if (c == 'n' || c == 'r' || c == 't')
            s[o++] = c == 'n' ? '\n' : c == 'r' ? '\r' : '\t';
        else if (c == '\\' || c == '\'' || c == '"')
            s[o++] = c;
        else if (c == 'x' && i + 2 < n && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
            s[o++] = (char)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
            i += 2;
        } else {
            s[o++] = '\\';
            s[o++] = c;
        }
    }
    return o;
}

static void print_escaped(const char *p, size_t n)
{
    putchar('\'');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\\' || c == '\'')
            printf("\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            putchar(c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else
            printf("\\x%02x", c);
    }
    putchar('\'');
}

int cmd_tokenize(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(tokenize_usage, stdout);
        return 0;
    }
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"ids", no_argument, NULL, 'i'},
        {"no-bos", no_argument, NULL, 'b'},      {"no-parse-special", no_argument, NULL, 's'},
        {"lines", no_argument, NULL, 'l'},       {"escape", no_argument, NULL, 'e'},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL;
    int ids_only = 0, lines = 0, escape = 0;
    unsigned flags = TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'i': ids_only = 1; break;
        case 'l': lines = ids_only = 1; break;
        case 'e': escape = 1; break;
        case 'b': flags &= ~(unsigned)TOK_ADD_SPECIAL; break;
        case 's': flags &= ~(unsigned)TOK_PARSE_SPECIAL; break;
        default: cli_usage_error("tokenize", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!model)
        cli_usage_error("tokenize", "--model is required");
    struct tok *t = load_model("tokenize", model);
    struct buf text;
    buf_init(&text, CLI_MAX_STDIN);
    read_text(argc - optind, argv + optind, &text);
    struct tok_ids v;
    tok_ids_init(&v, 0);
    if (lines) {
        struct tok_cache *cache = tok_cache_new(t);
        if (!cache)
            cli_die("out of memory");
        for (size_t at = 0; at < text.len;) {
            char *s = text.data + at, *nl = memchr(s, '\n', text.len - at);
            size_t n = nl ? (size_t)(nl - s) : text.len - at;
            at += n + 1;
            v.len = 0;
            int rc = tok_encode(t, cache, s, escape ? unescape(s, n) : n, flags, &v);
            if (rc)
                cli_die("tokenize: %s", aisle_strerror(rc));
            for (size_t i = 0; i < v.len; i++)
                printf(i ? " %d" : "%d", v.ids[i]);
            putchar('\n');
        }
        tok_cache_free(cache);
        goto done;
    }
    if (escape)
        text.len = unescape(text.data, text.len);
    int rc = tok_encode(t, NULL, text.data ? text.data : "", text.len, flags, &v);
    if (rc)
        cli_die("tokenize: %s", aisle_strerror(rc));
    for (size_t i = 0; i < v.len; i++) {
        if (ids_only) {
            printf(i ? " %d" : "%d", v.ids[i]);
            continue;
        }
        const char *p;
        size_t n;
        tok_piece(t, v.ids[i], TOK_DECODE_SPECIAL, &p, &n);
        printf("%6d ", v.ids[i]);
        print_escaped(p, n);
        putchar('\n');
    }
    if (ids_only)
        putchar('\n');
done:
    tok_ids_release(&v);
    buf_release(&text);
    tok_free(t);
    return 0;
}

/* Parse ids separated by spaces/commas from s into v; dies on a bad one. */
static void parse_ids(const char *s, size_t n_vocab, struct tok_ids *v)
{
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '\r' || *p == '[' || *p == ']')
            p++;
        if (!*p)
            return;
        char *end;
        errno = 0;
        long id = strtol(p, &end, 10);
        if (end == p || errno || id < 0 || (size_t)id >= n_vocab)
            cli_usage_error("detokenize", "'%.20s' is not a token id (0..%zu)", p, n_vocab - 1);
        if (tok_ids_push(v, (int32_t)id))
            cli_die("out of memory");
        p = end;
    }
}

int cmd_detokenize(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(detokenize_usage, stdout);
        return 0;
    }
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"special", no_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL;
    unsigned flags = 0;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 's': flags |= TOK_DECODE_SPECIAL; break;
        default: cli_usage_error("detokenize", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!model)
        cli_usage_error("detokenize", "--model is required");
    struct tok *t = load_model("detokenize", model);
    struct buf text, out;
    buf_init(&text, CLI_MAX_STDIN);
    buf_init(&out, 0);
    read_text(argc - optind, argv + optind, &text);
    struct tok_ids v;
    tok_ids_init(&v, 0);
    parse_ids(text.data ? text.data : "", tok_n_vocab(t), &v);
    int rc = tok_decode(t, v.ids, v.len, flags, &out);
    if (rc)
        cli_die("detokenize: %s", aisle_strerror(rc));
    fwrite(out.data ? out.data : "", 1, out.len, stdout);
    putchar('\n');
    tok_ids_release(&v);
    buf_release(&text);
    buf_release(&out);
    tok_free(t);
    return 0;
}
