/* eval_answers.c — `aisle eval answers`: generate greedy answers for SFT dev
 * examples (the dev.jsonl of `aisle sft build`) and score them per dataset:
 * citation validity and accuracy, markup validity, ROUGE-L F1 and token F1
 * against the reference answer, answer length; with sample answers printed for
 * the model card (docs/EVAL_LM.md).
 *
 * Design: a first pass over the file records each line's offset and dataset;
 * -n examples per dataset are drawn by a seeded shuffle and read again in file
 * order. Each prompt is rebuilt with the shared prompt module (prompt_build,
 * add_generation_prompt) from the record's rules, evidence and turns, and the
 * rebuilt system message is checked byte for byte against the record's, so the
 * model sees exactly what serving sends. Generation is greedy (the sampler at
 * temperature 0) and stops at an end-of-generation token or --max-tokens, so
 * a seed gives the same examples and the same answers.
 *
 * The metrics (the functions above the EVAL_ANSWERS_METRICS_ONLY guard, which
 * the tests include) work on words: the markup parser's text pieces only (tags
 * and citations removed), ASCII letters lowercased, split at every byte that is
 * not a letter, a digit or part of a multi-byte UTF-8 character.
 */
#include "assist/prompt.h"
#include "core/buf.h"
#include "core/error.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EA_MAX_WORDS 4096 /* words of one answer that the metrics look at */
#define EA_MAX_CITES 64   /* distinct citations of one answer that are kept */

/* What the markup parser finds in one answer. */
struct ea_markup {
    struct buf text;              /* the text pieces, joined */
    unsigned cites[EA_MAX_CITES]; /* distinct valid citations, in order */
    size_t n_cites;
    size_t n_cite_refs;   /* [n] pieces, valid or not */
    size_t bad_cites;     /* citations outside 1..n_passages */
    size_t tags;          /* well-formed tags */
    size_t tag_ids;       /* ids in those tags */
    size_t unknown_ids;   /* of which not a product id of the evidence */
    size_t bad_markup;    /* malformed or unknown tags */
    const char *const *known; /* (n_known) product ids of the evidence */
    size_t n_known;
};

static int ea_markup_cb(void *ud, const struct markup_piece *pc)
{
    struct ea_markup *m = ud;
    switch (pc->kind) {
    case MARKUP_TEXT:
        return buf_append(&m->text, pc->raw, pc->len);
    case MARKUP_CITE:
        m->n_cite_refs++;
        for (size_t i = 0; i < m->n_cites; i++)
            if (m->cites[i] == pc->cite)
                return buf_putc(&m->text, ' ');
        if (m->n_cites < EA_MAX_CITES)
            m->cites[m->n_cites++] = pc->cite;
        return buf_putc(&m->text, ' ');
    case MARKUP_TAG:
        m->tags++;
        for (size_t i = 0; i < pc->n_ids; i++) {
            int known = 0;
            for (size_t k = 0; k < m->n_known && !known; k++)
                known = strlen(m->known[k]) == pc->id_lens[i] && !memcmp(m->known[k], pc->ids[i], pc->id_lens[i]);
            m->tag_ids++;
            m->unknown_ids += !known;
        }
        return buf_putc(&m->text, ' ');
    case MARKUP_ERROR:
        /* A citation past the passages is a citation error, anything else a markup error. */
        if (pc->cite) {
            m->n_cite_refs++;
            m->bad_cites++;
        } else {
            m->bad_markup++;
        }
        return buf_putc(&m->text, ' ');
    }
    return 0;
}

/* Parse s as an answer over n_passages passages whose product ids are known.
 * m->text is (re)initialised; release it with buf_release. 0 or AISLE_ENOMEM. */
static int ea_markup_parse(struct ea_markup *m, const char *s, size_t n, unsigned n_passages,
                           const char *const *known, size_t n_known)
{
    memset(m, 0, sizeof(*m));
    buf_init(&m->text, 0);
    m->known = known;
    m->n_known = n_known;
    struct markup mk;
    /* max_cite 0 would allow [1..999]: a prompt without passages allows none,
     * so every citation is then checked by hand below. */
    markup_init(&mk, n_passages ? n_passages : MARKUP_MAX_CITE);
    int rc = markup_feed(&mk, s, n, ea_markup_cb, m);
    if (!rc)
        rc = markup_finish(&mk, ea_markup_cb, m);
    if (!rc && !n_passages) {
        m->bad_cites += m->n_cites;
        m->n_cites = 0;
    }
    return rc;
}

/* Words of text: offsets and lengths into it (lowercased in place). At most
 * EA_MAX_WORDS; returns the count. */
static size_t ea_words(char *text, size_t n, const char **w, size_t *wl)
{
    size_t k = 0, i = 0;
    while (i < n && k < EA_MAX_WORDS) {
        unsigned char c = (unsigned char)text[i];
        int word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
        if (!word) {
            i++;
            continue;
        }
        size_t s = i;
        while (i < n) {
            c = (unsigned char)text[i];
            if (c >= 'A' && c <= 'Z')
                text[i] = (char)(c + 32);
            else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80))
                break;
            i++;
        }
        w[k] = text + s;
        wl[k++] = i - s;
    }
    return k;
}

static int ea_word_eq(const char *a, size_t al, const char *b, size_t bl)
{
    return al == bl && !memcmp(a, b, al);
}

/* ROUGE-L F1 (beta 1) of word sequences: LCS / |a| and LCS / |b| as precision
 * and recall. Both empty: 1; one empty: 0. row: scratch of nb + 1 entries. */
static double ea_rouge_l(const char **a, const size_t *al, size_t na, const char **b, const size_t *bl, size_t nb,
                         uint32_t *row)
{
    if (!na || !nb)
        return na == nb;
    memset(row, 0, (nb + 1) * sizeof(*row));
    for (size_t i = 0; i < na; i++) {
        uint32_t diag = 0; /* row[j] of the previous i, before overwriting */
        for (size_t j = 1; j <= nb; j++) {
            uint32_t up = row[j];
            if (ea_word_eq(a[i], al[i], b[j - 1], bl[j - 1]))
                row[j] = diag + 1;
            else if (row[j - 1] > row[j])
                row[j] = row[j - 1];
            diag = up;
        }
    }
    double lcs = row[nb], p = lcs / (double)na, r = lcs / (double)nb;
    return lcs ? 2 * p * r / (p + r) : 0;
}

/* Token F1 (SQuAD): the multiset overlap of words. Both empty: 1; one empty: 0.
 * used: scratch of nb entries. */
static double ea_token_f1(const char **a, const size_t *al, size_t na, const char **b, const size_t *bl, size_t nb,
                          unsigned char *used)
{
    if (!na || !nb)
        return na == nb;
    memset(used, 0, nb);
    size_t common = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (!used[j] && ea_word_eq(a[i], al[i], b[j], bl[j])) {
                used[j] = 1;
                common++;
                break;
            }
    if (!common)
        return 0;
    double p = (double)common / (double)na, r = (double)common / (double)nb;
    return 2 * p * r / (p + r);
}

/* Citation precision and recall of gen against gold (distinct ids). Returns 0
 * when gold is empty (no accuracy defined), else 1 with *prec (0 when gen cites
 * nothing) and *rec. */
static int ea_cite_accuracy(const unsigned *gen, size_t ng, const unsigned *gold, size_t nd, double *prec,
                            double *rec)
{
    if (!nd)
        return 0;
    size_t hit = 0;
    for (size_t i = 0; i < ng; i++)
        for (size_t j = 0; j < nd; j++)
            hit += gen[i] == gold[j];
    *prec = ng ? (double)hit / (double)ng : 0;
    *rec = (double)hit / (double)nd;
    return 1;
}

static const char *str_member(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* One record made into a prompt input; strings borrowed from the JSON. */
struct ea_example {
    const char *dataset, *id, *question, *reference;
    struct prompt_passage ev[PROMPT_MAX_PASSAGES];
    const char *known[PROMPT_MAX_PASSAGES];
    size_t n_ev, n_known;
    struct prompt_turn turns[PROMPT_MAX_TURNS];
    size_t n_turns;
    char *rules;        /* owned */
    char *as_of[PROMPT_MAX_PASSAGES]; /* owned */
    const char *system; /* the record's system message */
};

static void example_release(struct ea_example *e)
{
    free(e->rules);
    for (size_t i = 0; i < e->n_ev; i++)
        free(e->as_of[i]);
}

#define EVIDENCE_HEADER "\n\nEvidence:"

/* Fill e from rec; NULL or the reason it cannot. The as-of time and the
 * stale mark are not fields of the record: they are read from the passage's
 * line in the system message ("[n] (source, id, as of T, stale) text"). */
static const char *example_from(struct ea_example *e, json_t *rec)
{
    memset(e, 0, sizeof(*e));
    e->dataset = str_member(rec, "dataset");
    e->id = str_member(rec, "id");
    json_t *msgs = json_object_get(rec, "messages"), *ev = json_object_get(rec, "evidence");
    if (!e->dataset || !e->id || !json_is_array(msgs) || !json_is_array(ev))
        return "not an SFT example (needs dataset, id, messages, evidence)";
    size_t nm = json_array_size(msgs);
    if (nm < 3 || nm - 2 > PROMPT_MAX_TURNS)
        return "messages must be system, user turns and a final assistant answer";
    const char *role0 = str_member(json_array_get(msgs, 0), "role");
    e->system = str_member(json_array_get(msgs, 0), "content");
    if (!e->system || !role0 || strcmp(role0, "system"))
        return "the first message is not a system message with content";
    for (size_t i = 1; i < nm; i++) {
        json_t *m = json_array_get(msgs, i);
        const char *role = str_member(m, "role"), *content = str_member(m, "content");
        if (!role || !content)
            return "a message without role or content";
        int user = !strcmp(role, "user");
        if (!user && strcmp(role, "assistant"))
            return "a message role other than system/user/assistant";
        if (i + 1 == nm) {
            if (user)
                return "the last message is not the assistant's answer";
            e->reference = content;
        } else {
            e->turns[e->n_turns].role = user ? PROMPT_USER : PROMPT_ASSISTANT;
            e->turns[e->n_turns++].text = content;
            if (user)
                e->question = content;
        }
    }
    const char *h = strstr(e->system, EVIDENCE_HEADER);
    if (!h)
        return "the system message has no evidence header";
    if (!(e->rules = strndup(e->system, (size_t)(h - e->system))))
        return "out of memory";
    if (json_array_size(ev) > PROMPT_MAX_PASSAGES)
        return "too many evidence passages";
    for (size_t i = 0; i < json_array_size(ev); i++) {
        json_t *p = json_array_get(ev, i);
        struct prompt_passage *ps = &e->ev[e->n_ev];
        ps->source = str_member(p, "source");
        ps->product_id = str_member(p, "product_id");
        ps->text = str_member(p, "text");
        if (!ps->source || !ps->text || json_integer_value(json_object_get(p, "n")) != (json_int_t)i + 1)
            return "an evidence passage without n (in order), source or text";
        e->n_ev++;
        if (ps->product_id && *ps->product_id)
            e->known[e->n_known++] = ps->product_id;
        char head[32];
        snprintf(head, sizeof head, "\n[%zu] (", i + 1);
        const char *l = strstr(h, head);
        if (!l)
            return "an evidence passage missing from the system message";
        l += strlen(head);
        const char *close = strchr(l, ')');
        if (!close)
            return "an evidence line without its closing parenthesis";
        /* Fields after the source: ", id", ", as of T", ", stale". */
        for (const char *f = strstr(l, ", "); f && f < close; f = strstr(f + 2, ", ")) {
            const char *end = strstr(f + 2, ", ");
            if (!end || end > close)
                end = close;
            if (!strncmp(f + 2, "as of ", 6) && !e->as_of[i]) {
                if (!(e->as_of[i] = strndup(f + 8, (size_t)(end - f - 8))))
                    return "out of memory";
                ps->as_of = e->as_of[i];
            } else if ((size_t)(end - f - 2) == 5 && !strncmp(f + 2, "stale", 5)) {
                ps->stale = 1;
            }
        }
    }
    if (!e->question)
        return "no user question";
    return NULL;
}

/* Render e's prompt up to the assistant turn into p (with t: its tokens) and
 * check that its system message is the record's, byte for byte. NULL or what
 * went wrong. */
static const char *ea_rebuild(struct prompt *p, const struct ea_example *e, const struct tok *t)
{
    struct prompt_input in = {.system = e->rules, .evidence = e->ev, .n_evidence = e->n_ev, .turns = e->turns,
                              .n_turns = e->n_turns};
    /* Passages are already cut (and cleaned): no second cut. */
    struct prompt_opts po = {.max_passage_bytes = PROMPT_MAX_BYTES, .add_generation_prompt = 1};
    if (prompt_build(p, &in, &po, t, NULL))
        return p->err;
    size_t sys0 = strlen(TOK_SYSTEM) + 1, sys1 = p->prefix_bytes - strlen(TOK_END) - 1;
    if (sys1 - sys0 != strlen(e->system) || memcmp(p->text.data + sys0, e->system, sys1 - sys0))
        return "the prompt rebuilt from the record's evidence differs from its system message (a file of "
               "another prompt format?)";
    return NULL;
}

#ifndef EVAL_ANSWERS_METRICS_ONLY
#include "cli.h"
#include "cmds.h"
#include "engine.h"

#include "model/copyboost.h"
#include "model/model.h"
#include "model/sample.h"
#include "tok/tok.h"

#include <getopt.h>
#include <math.h>

static const char usage_text[] =
    "usage: aisle eval answers --model FILE --examples DEV.jsonl [-n N] [--seed S]\n"
    "                          [--max-tokens N] [--samples K] [--json] [--threads N]\n"
    "                          [--temp T] [--top-p P] [--repeat-penalty R] [--penalty-last-n N]\n"
    "                          [--copy-boost B] [--copy-min N]\n"
    "\n"
    "Answer SFT dev examples (the dev.jsonl of `aisle sft build`) with the model:\n"
    "each prompt is rebuilt with the shared prompt module up to the assistant\n"
    "turn and answered (greedily unless --temp) until <|end|>. Reports per\n"
    "dataset and overall:\n"
    "  valid_cite   answers whose every [n] names one of the passages\n"
    "  cite_p/r     citation precision/recall against the reference's citations\n"
    "               (examples whose reference cites)\n"
    "  markup_ok    answers the markup parser accepts (tags well formed)\n"
    "  known_ids    tag ids that are product ids of the evidence\n"
    "  rougeL, f1   ROUGE-L F1 and token F1 against the reference (words of\n"
    "               the text, markup removed)\n"
    "  words        mean words of the answer (reference in parentheses)\n"
    "  cut          answers stopped by --max-tokens\n"
    "and prints K sample answers per dataset (question, reference, generated).\n"
    "The same file, model and seed give the same output (docs/EVAL_LM.md).\n"
    "\n"
    "  --model FILE       a GGUF model with its tokenizer (the SFT tokenizer)\n"
    "  --examples FILE    the dev.jsonl of `aisle sft build`\n"
    "  -n N               examples per dataset, drawn with the seed (default 50;\n"
    "                     0 = all)\n"
    "  --seed S           which examples (default 1)\n"
    "  --max-tokens N     answer tokens at most (default 160)\n"
    "  --samples K        sample answers printed per dataset (default 2)\n"
    "  --json             one JSON object per example, then one per dataset\n"
    "  --threads N        compute threads (default: all CPUs)\n"
    "  --temp T           sample at temperature T, seeded per example with --seed\n"
    "                     (default 0: greedy)\n"
    "  --top-p P          nucleus with --temp (default 0.95; top-k 40 and min-p\n"
    "                     0.05 as in the chat)\n"
    "  --repeat-penalty R divide positive logits of tokens already in the answer by\n"
    "                     R, multiply negative ones (default 1: off; the chat's\n"
    "                     default is in docs/CHAT.md)\n"
    "  --penalty-last-n N answer tokens the penalty looks back over (default 64)\n"
    "  --copy-boost B     when the answer's last tokens also occur in the prompt,\n"
    "                     add B to the logits of the tokens that follow them there\n"
    "                     (copy the evidence as written; default 0: off)\n"
    "  --copy-min N       tokens that must match before the boost applies\n"
    "                     (1..8, default 2)\n"
    "  -h, --help         this help\n";

#define EA_MAX_DATASETS 32
#define EA_MAX_LINE (16u << 20) /* bytes of one dev.jsonl line */
#define EA_PIECE 512            /* prefill batch */

struct ea_stats {
    char name[64];
    uint64_t total;      /* examples of the dataset in the file */
    uint64_t n, skipped; /* answered; skipped (prompt too long) */
    uint64_t valid_cite, markup_ok, cut, gold;
    uint64_t tag_ids, unknown_ids;
    double cite_p, cite_r, rouge, f1, words, ref_words;
    int samples;
};

struct ea_line {
    long off;
    int ds;
};

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_line(const void *a, const void *b)
{
    long x = ((const struct ea_line *)a)->off, y = ((const struct ea_line *)b)->off;
    return (x > y) - (x < y);
}

static void add_json_metrics(json_t *o, const struct ea_stats *s)
{
    double n = (double)s->n;
    json_object_set_new(o, "examples", json_integer((json_int_t)s->n));
    json_object_set_new(o, "skipped", json_integer((json_int_t)s->skipped));
    if (!s->n) /* nothing answered: no rates */
        return;
    json_object_set_new(o, "valid_cite", json_real((double)s->valid_cite / n));
    json_object_set_new(o, "with_gold", json_integer((json_int_t)s->gold));
    json_object_set_new(o, "cite_precision", s->gold ? json_real(s->cite_p / (double)s->gold) : json_null());
    json_object_set_new(o, "cite_recall", s->gold ? json_real(s->cite_r / (double)s->gold) : json_null());
    json_object_set_new(o, "markup_ok", json_real((double)s->markup_ok / n));
    json_object_set_new(o, "known_ids", s->tag_ids ? json_real(1 - (double)s->unknown_ids / (double)s->tag_ids)
                                                   : json_null());
    json_object_set_new(o, "rouge_l", json_real(s->rouge / n));
    json_object_set_new(o, "token_f1", json_real(s->f1 / n));
    json_object_set_new(o, "words", json_real(s->words / n));
    json_object_set_new(o, "ref_words", json_real(s->ref_words / n));
    json_object_set_new(o, "cut", json_real((double)s->cut / n));
}

static void print_row(const struct ea_stats *s)
{
    if (!s->n) {
        printf("%-12s %5s  (no example answered)\n", s->name, "0");
        return;
    }
    double n = (double)s->n;
    char cp[16] = "-", cr[16] = "-", ki[16] = "-";
    if (s->gold) {
        snprintf(cp, sizeof cp, "%.3f", s->cite_p / (double)s->gold);
        snprintf(cr, sizeof cr, "%.3f", s->cite_r / (double)s->gold);
    }
    if (s->tag_ids)
        snprintf(ki, sizeof ki, "%.3f", 1 - (double)s->unknown_ids / (double)s->tag_ids);
    printf("%-12s %5llu %5llu %10.3f %6s %6s %9.3f %9s %6.3f %6.3f %6.1f (%5.1f) %5.3f\n", s->name,
           (unsigned long long)s->n, (unsigned long long)s->gold, (double)s->valid_cite / n, cp, cr,
           (double)s->markup_ok / n, ki, s->rouge / n, s->f1 / n, s->words / n, s->ref_words / n,
           (double)s->cut / n);
}

static void stats_add(struct ea_stats *to, const struct ea_stats *from)
{
    to->n += from->n;
    to->skipped += from->skipped;
    to->valid_cite += from->valid_cite;
    to->markup_ok += from->markup_ok;
    to->cut += from->cut;
    to->gold += from->gold;
    to->tag_ids += from->tag_ids;
    to->unknown_ids += from->unknown_ids;
    to->cite_p += from->cite_p;
    to->cite_r += from->cite_r;
    to->rouge += from->rouge;
    to->f1 += from->f1;
    to->words += from->words;
    to->ref_words += from->ref_words;
}

/* The answer to the prompt ids with the sampler (greedy unless --temp; text
 * into out); 1 when cut by max. Generated tokens feed the penalties. */
static int generate(struct lm_model *m, struct lm_kv *kv, struct lm_sampler *smp, struct copyboost *cb,
                    const struct tok *tk, const struct tok_ids *ids, int max_tokens, struct lm_batch *b, float *logits,
                    struct buf *out, int *n_gen)
{
    int seq, rc;
    lm_kv_seq_new(kv, &seq);
    for (size_t i0 = 0; i0 < ids->len; i0 += EA_PIECE) {
        size_t n = ids->len - i0 < EA_PIECE ? ids->len - i0 : EA_PIECE;
        b->n = 0;
        for (size_t i = i0; i < i0 + n; i++)
            lm_batch_add(b, seq, (int)i, ids->ids[i], i + 1 == ids->len);
        if ((rc = lm_decode(m, kv, b, logits)))
            cli_die("decode: %s: %s", aisle_strerror(rc), lm_model_errmsg(m));
    }
    lm_sampler_reset(smp);
    if (cb && copyboost_set_source(cb, ids->ids, ids->len))
        cli_die("out of memory");
    struct tok_stream ts;
    tok_stream_init(&ts, 0);
    buf_reset(out);
    int n = 0, cut = 1;
    while (n < max_tokens) {
        int32_t t;
        if ((rc = lm_sampler_sample(smp, logits, &t)))
            cli_die("sampling: %s", aisle_strerror(rc));
        n++;
        if (tok_is_eog(tk, t)) {
            cut = 0;
            break;
        }
        lm_sampler_accept(smp, t);
        if (cb)
            copyboost_accept(cb, t);
        if (tok_stream_push(tk, &ts, t, out))
            cli_die("detokenize failed");
        if (n == max_tokens)
            break;
        b->n = 0;
        lm_batch_add(b, seq, (int)ids->len + n - 1, t, 1);
        if ((rc = lm_decode(m, kv, b, logits)))
            cli_die("decode: %s: %s", aisle_strerror(rc), lm_model_errmsg(m));
    }
    tok_stream_flush(&ts, out);
    lm_kv_seq_free(kv, seq);
    *n_gen = n;
    return cut;
}

static void print_sample(const struct ea_example *e, const char *gen, double rouge)
{
    printf("\n### %s %s (ROUGE-L %.3f)\n", e->dataset, e->id, rouge);
    if (e->n_turns > 1)
        printf("(turn %zu of a conversation)\n", e->n_turns / 2 + 1);
    printf("Question:  %s\nReference: %s\nGenerated: %s\n", e->question, e->reference, gen);
}

int eval_answers(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},      {"examples", required_argument, NULL, 'e'},
        {"seed", required_argument, NULL, 's'},       {"max-tokens", required_argument, NULL, 'x'},
        {"samples", required_argument, NULL, 'k'},    {"json", no_argument, NULL, 'j'},
        {"threads", required_argument, NULL, 't'},    {"temp", required_argument, NULL, 'T'},
        {"top-p", required_argument, NULL, 'P'},      {"repeat-penalty", required_argument, NULL, 'R'},
        {"penalty-last-n", required_argument, NULL, 'L'}, {"copy-boost", required_argument, NULL, 'B'},
        {"copy-min", required_argument, NULL, 'M'},       {NULL, 0, NULL, 0},
    };
    double temp = 0, top_p = 0, rep = 1, copy_boost = 0;
    long last_n = 64, copy_min = 2;
    const char *model_path = NULL, *path = NULL;
    long per_ds = 50, max_tokens = 160, n_samples = 2;
    uint64_t seed = 1;
    int json = 0, threads = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+n:", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'e': path = optarg; break;
        case 'n': per_ds = eng_long("eval answers", "-n", optarg, 0, 1L << 30); break;
        case 's': seed = (uint64_t)eng_long("eval answers", "--seed", optarg, 0, INT64_MAX); break;
        case 'x': max_tokens = eng_long("eval answers", "--max-tokens", optarg, 1, 1 << 16); break;
        case 'k': n_samples = eng_long("eval answers", "--samples", optarg, 0, 1000); break;
        case 'j': json = 1; break;
        case 't': threads = (int)eng_long("eval answers", "--threads", optarg, 1, 1024); break;
        case 'T': temp = eng_double("eval answers", "--temp", optarg, 0, 100); break;
        case 'P': top_p = eng_double("eval answers", "--top-p", optarg, 0.01, 1); break;
        case 'R': rep = eng_double("eval answers", "--repeat-penalty", optarg, 0.01, 100); break;
        case 'L': last_n = eng_long("eval answers", "--penalty-last-n", optarg, 0, 1 << 16); break;
        case 'B': copy_boost = eng_double("eval answers", "--copy-boost", optarg, 0, 100); break;
        case 'M': copy_min = eng_long("eval answers", "--copy-min", optarg, 1, COPYBOOST_MAX_MATCH); break;
        default: cli_usage_error("eval answers", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!model_path || !path)
        cli_usage_error("eval answers", "--model and --examples are required");
    if (optind != argc)
        cli_usage_error("eval answers", "unexpected argument '%s'", argv[optind]);

    /* Pass 1: every line's offset and dataset. */
    FILE *f = fopen(path, "rb");
    if (!f)
        cli_die("%s: cannot open", path);
    struct ea_stats *st = calloc(EA_MAX_DATASETS + 1, sizeof(*st));
    struct ea_line *lines = NULL;
    size_t n_lines = 0, cap_lines = 0, n_ds = 0, lineno = 0, lcap = 0;
    char *line = NULL;
    ssize_t len;
    long off = 0;
    if (!st)
        cli_die("out of memory");
    while ((len = getline(&line, &lcap, f)) > 0) {
        long this_off = off;
        off += len;
        lineno++;
        if ((size_t)len > EA_MAX_LINE)
            cli_die("%s:%zu: line longer than %u bytes", path, lineno, EA_MAX_LINE);
        if (len == 1 && line[0] == '\n')
            continue;
        json_error_t je;
        json_t *rec = json_loadb(line, (size_t)len, 0, &je);
        const char *ds = rec ? str_member(rec, "dataset") : NULL;
        if (!ds)
            cli_die("%s:%zu: %s", path, lineno, rec ? "no string member \"dataset\"" : je.text);
        size_t d = 0;
        while (d < n_ds && strcmp(st[d].name, ds))
            d++;
        if (d == n_ds) {
            if (n_ds == EA_MAX_DATASETS)
                cli_die("%s:%zu: more than %d datasets", path, lineno, EA_MAX_DATASETS);
            snprintf(st[n_ds++].name, sizeof st[0].name, "%s", ds);
        }
        json_decref(rec);
        st[d].total++;
        if (n_lines == cap_lines) {
            cap_lines = cap_lines ? 2 * cap_lines : 1024;
            if (!(lines = realloc(lines, cap_lines * sizeof(*lines))))
                cli_die("out of memory");
        }
        lines[n_lines].off = this_off;
        lines[n_lines++].ds = (int)d;
    }
    if (ferror(f))
        cli_die("%s: read error", path);
    if (!n_lines)
        cli_die("%s: no examples", path);

    /* Draw per dataset with the seed: a Fisher-Yates shuffle of each
     * dataset's lines, the first -n kept, then file order again. */
    struct ea_line *pick = malloc(n_lines * sizeof(*pick));
    size_t n_pick = 0;
    if (!pick)
        cli_die("out of memory");
    for (size_t d = 0; d < n_ds; d++) {
        size_t first = n_pick;
        for (size_t i = 0; i < n_lines; i++)
            if (lines[i].ds == (int)d)
                pick[n_pick++] = lines[i];
        size_t k = n_pick - first;
        uint64_t x = seed * 0x100000001B3ull + d;
        for (size_t i = k; i > 1; i--) {
            size_t j = (size_t)(splitmix(&x) % i);
            struct ea_line t = pick[first + i - 1];
            pick[first + i - 1] = pick[first + j];
            pick[first + j] = t;
        }
        if (per_ds && k > (size_t)per_ds)
            n_pick = first + (size_t)per_ds;
    }
    qsort(pick, n_pick, sizeof(*pick), cmp_line);

    struct lm_model *m = eng_load(model_path, threads, EA_PIECE);
    struct tok *tk = eng_tokenizer(m, model_path);
    int V = lm_model_n_vocab(m), ctx = (int)lm_model_hparams(m)->n_ctx;
    struct lm_kv *kv = eng_kv(m, ctx, 1, 0);
    struct lm_sample_params sp;
    lm_sample_params_default(&sp);
    sp.temperature = (float)temp;
    if (top_p > 0)
        sp.top_p = (float)top_p; /* else the sampler's default, as the chat's (top-k 40, min-p 0.05) */
    sp.repeat_penalty = (float)rep;
    sp.penalty_last_n = (int)last_n;
    sp.seed = seed;
    struct copyboost *cb = NULL;
    if (copy_boost > 0) {
        if (copyboost_new(&cb, NULL, 0, (float)copy_boost, (int)copy_min))
            cli_die("out of memory");
        sp.mask = copyboost_apply;
        sp.mask_ctx = cb;
    }
    struct lm_sampler *smp;
    struct lm_batch b;
    float *logits = malloc((size_t)EA_PIECE * V * sizeof(float));
    if (lm_sampler_new(&smp, V, &sp) || lm_batch_init(&b, EA_PIECE) || !logits)
        cli_die("out of memory");
    struct prompt p;
    prompt_init(&p);
    struct buf gen;
    buf_init(&gen, 0);
    const char **wa = malloc(2 * EA_MAX_WORDS * sizeof(*wa));
    size_t *wl = malloc(2 * EA_MAX_WORDS * sizeof(*wl));
    uint32_t *row = malloc((EA_MAX_WORDS + 1) * sizeof(*row));
    unsigned char *used = malloc(EA_MAX_WORDS);
    if (!wa || !wl || !row || !used)
        cli_die("out of memory");

    double t0 = cli_now(), last = 0;
    uint64_t gen_tokens = 0;
    for (size_t i = 0; i < n_pick; i++) {
        if (fseek(f, pick[i].off, SEEK_SET) || (len = getline(&line, &lcap, f)) <= 0)
            cli_die("%s: cannot read again at byte %ld", path, pick[i].off);
        json_error_t je;
        json_t *rec = json_loadb(line, (size_t)len, 0, &je);
        struct ea_example e;
        const char *why = rec ? example_from(&e, rec) : je.text;
        if (why)
            cli_die("%s: record at byte %ld: %s", path, pick[i].off, why);
        struct ea_stats *s = &st[pick[i].ds];
        const char *bad = ea_rebuild(&p, &e, tk);
        if (bad)
            cli_die("%s: record at byte %ld (%s %s): %s", path, pick[i].off, e.dataset, e.id, bad);
        if (p.ids.len + (size_t)max_tokens > (size_t)ctx) {
            s->skipped++;
            json_decref(rec);
            example_release(&e);
            continue;
        }
        int n_gen;
        int cut = generate(m, kv, smp, cb, tk, &p.ids, (int)max_tokens, &b, logits, &gen, &n_gen);
        gen_tokens += (uint64_t)n_gen;

        struct ea_markup mg, mr;
        if (ea_markup_parse(&mg, gen.data ? gen.data : "", gen.len, (unsigned)e.n_ev, e.known, e.n_known) ||
            ea_markup_parse(&mr, e.reference, strlen(e.reference), (unsigned)e.n_ev, e.known, e.n_known))
            cli_die("out of memory");
        size_t ng = ea_words(mg.text.data, mg.text.len, wa, wl);
        size_t nr = ea_words(mr.text.data, mr.text.len, wa + EA_MAX_WORDS, wl + EA_MAX_WORDS);
        double rouge = ea_rouge_l(wa, wl, ng, wa + EA_MAX_WORDS, wl + EA_MAX_WORDS, nr, row);
        double f1 = ea_token_f1(wa, wl, ng, wa + EA_MAX_WORDS, wl + EA_MAX_WORDS, nr, used);
        double cp = 0, cr = 0;
        int has_gold = ea_cite_accuracy(mg.cites, mg.n_cites, mr.cites, mr.n_cites, &cp, &cr);
        int valid_cite = mg.bad_cites == 0, markup_ok = mg.bad_markup == 0;
        s->n++;
        s->valid_cite += (uint64_t)valid_cite;
        s->markup_ok += (uint64_t)markup_ok;
        s->cut += (uint64_t)cut;
        s->gold += (uint64_t)has_gold;
        s->cite_p += cp;
        s->cite_r += cr;
        s->tag_ids += mg.tag_ids;
        s->unknown_ids += mg.unknown_ids;
        s->rouge += rouge;
        s->f1 += f1;
        s->words += (double)ng;
        s->ref_words += (double)nr;
        if (json) {
            json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s#,s:b,s:b,s:o,s:o,s:b,s:f,s:f,s:i,s:i}", "dataset", e.dataset,
                                  "id", e.id, "question", e.question, "reference", e.reference, "generated",
                                  gen.data ? gen.data : "", (int)gen.len, "valid_cite", valid_cite, "markup_ok",
                                  markup_ok, "cite_precision", has_gold ? json_real(cp) : json_null(),
                                  "cite_recall", has_gold ? json_real(cr) : json_null(), "cut", cut, "rouge_l",
                                  rouge, "token_f1", f1, "words", (int)ng, "tokens", n_gen);
            char *s_json = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            if (!s_json)
                cli_die("out of memory");
            printf("%s\n", s_json);
            free(s_json);
            json_decref(o);
        } else if (s->samples < n_samples) {
            s->samples++;
            print_sample(&e, gen.data ? gen.data : "", rouge);
        }
        buf_release(&mg.text);
        buf_release(&mr.text);
        json_decref(rec);
        example_release(&e);

        double now = cli_now();
        if (now - last >= 0.5 || i + 1 == n_pick) {
            last = now;
            double rate = (double)(i + 1) / (now - t0 > 0 ? now - t0 : 1e-9), eta = (double)(n_pick - i - 1) / rate;
            fprintf(stderr, "\ranswered %zu/%zu  %.2f answers/s  %.0f tok/s  ETA %d:%02d   ", i + 1, n_pick, rate,
                    (double)gen_tokens / (now - t0 > 0 ? now - t0 : 1e-9), (int)(eta / 60), (int)eta % 60);
        }
    }
    fprintf(stderr, "\n");

    struct ea_stats *all = &st[n_ds];
    snprintf(all->name, sizeof all->name, "all");
    for (size_t d = 0; d < n_ds; d++)
        stats_add(all, &st[d]);
    if (json) {
        for (size_t d = 0; d <= n_ds; d++) {
            json_t *o = json_pack("{s:s}", "summary", st[d].name);
            if (!o)
                cli_die("out of memory");
            add_json_metrics(o, &st[d]);
            char *s_json = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (!s_json)
                cli_die("out of memory");
            printf("%s\n", s_json);
            free(s_json);
            json_decref(o);
        }
    } else {
        char how[160];
        if (temp > 0)
            snprintf(how, sizeof how, "temperature %g, top-p %g", temp, (double)sp.top_p);
        else
            snprintf(how, sizeof how, "greedy");
        if (rep != 1)
            snprintf(how + strlen(how), sizeof how - strlen(how), ", repeat penalty %g over %ld", rep, last_n);
        if (cb)
            snprintf(how + strlen(how), sizeof how - strlen(how), ", copy boost %g from %ld", copy_boost, copy_min);
        printf("\n# %s: %zu examples (-n %ld per dataset, seed %llu), %s, at most %ld tokens\n", path, n_pick,
               per_ds, (unsigned long long)seed, how, max_tokens);
        printf("%-12s %5s %5s %10s %6s %6s %9s %9s %6s %6s %14s %5s\n", "dataset", "n", "gold", "valid_cite",
               "cite_p", "cite_r", "markup_ok", "known_ids", "rougeL", "f1", "words (ref)", "cut");
        for (size_t d = 0; d <= n_ds; d++)
            print_row(&st[d]);
        for (size_t d = 0; d < n_ds; d++)
            if (st[d].skipped)
                printf("# %s: %llu examples skipped (prompt + --max-tokens over the model's %d positions)\n",
                       st[d].name, (unsigned long long)st[d].skipped, ctx);
    }
    free(wa);
    free(wl);
    free(row);
    free(used);
    buf_release(&gen);
    prompt_release(&p);
    free(logits);
    lm_batch_release(&b);
    lm_sampler_free(smp);
    copyboost_free(cb);
    lm_kv_free(kv);
    tok_free(tk);
    lm_model_free(m);
    free(pick);
    free(lines);
    free(line);
    free(st);
    fclose(f);
    return 0;
}
#endif
