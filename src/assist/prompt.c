/*
 * prompt.c — the assistant's prompt (system rules, evidence, turns) as text and
 * as tokens with a loss mask, and the streaming parser of the markup the model
 * writes. The format is specified in docs/PROMPT.md; prompt.h gives the design.
 *
 * Invariants: every text piece is appended to p->text and encoded into p->ids in
 * the same call, so the two never disagree; p->mask always has p->ids.len valid
 * entries after a piece is added.
 */
#include "assist/prompt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/utf8.h"

const char prompt_default_system[] =
    "You are Aisle, the shopping assistant of this store. Answer the shopper's question using only the "
    "evidence below, and cite each passage you use by its number in brackets, like [1]. When you name a "
    "product whose id you know, write <product id=\"ID\"/>; compare products with <compare ids=\"A,B\"/>; "
    "for the current price, stock or delivery of a product write <price id=\"ID\"/>, <stock id=\"ID\"/> or "
    "<delivery id=\"ID\"/>. If the evidence does not answer the question, say so plainly and do not guess.";

#define EVIDENCE_HEADER "\n\nEvidence:"
#define EVIDENCE_NONE " none"
#define ELLIPSIS "\xe2\x80\xa6" /* U+2026 */
#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/* ---- text sanitising ---- */

/* Bytes in the UTF-8 sequence that b leads (1 for ASCII and for bytes that
 * cannot lead one). */
static size_t seq_len(unsigned char b)
{
    if (b >= 0xc2 && b <= 0xdf)
        return 2;
    if (b >= 0xe0 && b <= 0xef)
        return 3;
    if (b >= 0xf0 && b <= 0xf4)
        return 4;
    return 1;
}

/* Append s[0..n) with invalid UTF-8 replaced by U+FFFD. one_line: C0 controls
 * and DEL become spaces, runs of spaces collapse to one, and leading and
 * trailing spaces go. Then, when max > 0 and the result is longer than max
 * bytes, it is cut at a character boundary so that with "…" it fits. */
static int sanitize(struct buf *out, const char *s, size_t n, int one_line, size_t max)
{
    size_t start = out->len;
    int space = 0, rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        unsigned char b = (unsigned char)s[i];
        size_t L = seq_len(b);
        if (b >= 0x80 && (L == 1 || i + L > n || !utf8_valid(s + i, L))) {
            L = 1;
            if (space && out->len > start)
                rc = buf_putc(out, ' ');
            space = 0;
            if (!rc)
                rc = buf_puts(out, REPLACEMENT);
        } else if (one_line && (b <= 0x20 || b == 0x7f)) {
            space = 1;
        } else {
            if (space && out->len > start)
                rc = buf_putc(out, ' ');
            space = 0;
            if (!rc)
                rc = buf_append(out, s + i, L);
        }
        i += L;
    }
    if (rc)
        return rc;
    size_t len = out->len - start;
    if (max && len > max) {
        size_t keep = max > 3 ? utf8_trim(out->data + start, len, max - 3) : 0;
        while (keep && out->data[start + keep - 1] == ' ')
            keep--;
        out->len = start + keep;
        out->data[out->len] = '\0';
        rc = buf_puts(out, ELLIPSIS);
    }
    return rc;
}

int prompt_clean_line(struct buf *out, const char *s, size_t n, size_t max)
{
    return sanitize(out, s, n, 1, max);
}

int prompt_passage_line(struct buf *out, size_t n, const struct prompt_passage *ps, size_t max_passage_bytes)
{
    if (!max_passage_bytes)
        max_passage_bytes = PROMPT_PASSAGE_BYTES_DEFAULT;
    const char *src = ps->source && *ps->source ? ps->source : "text";
    int rc = buf_printf(out, "[%zu] (", n);
    if (!rc)
        rc = sanitize(out, src, strlen(src), 1, PROMPT_MAX_FIELD);
    if (!rc && ps->product_id && *ps->product_id) {
        rc = buf_puts(out, ", ");
        if (!rc)
            rc = sanitize(out, ps->product_id, strlen(ps->product_id), 1, PROMPT_MAX_FIELD);
    }
    if (!rc && ps->as_of && *ps->as_of) {
        rc = buf_puts(out, ", as of ");
        if (!rc)
            rc = sanitize(out, ps->as_of, strlen(ps->as_of), 1, PROMPT_MAX_FIELD);
    }
    if (!rc && ps->stale)
        rc = buf_puts(out, ", stale");
    if (!rc)
        rc = buf_putc(out, ')');
    if (!rc && ps->text) {
        size_t before = out->len;
        rc = buf_putc(out, ' ');
        if (!rc)
            rc = sanitize(out, ps->text, strlen(ps->text), 1, max_passage_bytes);
        if (!rc && out->len == before + 1) { /* no text: no trailing space */
            out->len = before;
            out->data[before] = '\0';
        }
    }
    return rc;
}

/* ---- building ---- */

void prompt_init(struct prompt *p)
{
    memset(p, 0, sizeof(*p));
    buf_init(&p->text, PROMPT_MAX_BYTES);
    tok_ids_init(&p->ids, PROMPT_MAX_TOKENS);
}

void prompt_release(struct prompt *p)
{
    buf_release(&p->text);
    tok_ids_release(&p->ids);
    free(p->mask);
    p->mask = NULL;
    p->mask_cap = 0;
}

/* Give the tokens from index from on mask value m. */
static int mask_fill(struct prompt *p, size_t from, uint8_t m)
{
    if (p->ids.len > p->mask_cap) {
        size_t cap = p->ids.cap > p->ids.len ? p->ids.cap : p->ids.len;
        uint8_t *nm = realloc(p->mask, cap);
        if (!nm)
            return AISLE_ENOMEM;
        p->mask = nm;
        p->mask_cap = cap;
    }
    if (p->ids.len > from)
        memset(p->mask + from, m, p->ids.len - from);
    return 0;
}

struct ctx {
    struct prompt *p;
    const struct tok *t;
    struct tok_cache *cache;
};

static int fail(struct prompt *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct prompt *p, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    return rc;
}

static int put_special(struct ctx *c, const char *name, uint8_t m)
{
    int rc = buf_puts(&c->p->text, name);
    if (rc || !c->t)
        return rc;
    int32_t id = tok_find(c->t, name, strlen(name));
    if (id < 0)
        return fail(c->p, AISLE_EFORMAT, "the tokenizer has no %s token (not a chat vocabulary)", name);
    size_t from = c->p->ids.len;
    if ((rc = tok_ids_push(&c->p->ids, id)))
        return rc;
    return mask_fill(c->p, from, m);
}

/* Append text s[0..n) and its tokens, encoded without special-token parsing. */
static int put_text(struct ctx *c, const char *s, size_t n, uint8_t m)
{
    int rc = buf_append(&c->p->text, s, n);
    if (rc || !c->t || !n)
        return rc;
    size_t from = c->p->ids.len;
    if ((rc = tok_encode(c->t, c->cache, s, n, 0, &c->p->ids)))
        return rc;
    return mask_fill(c->p, from, m);
}

static int put_message(struct ctx *c, const char *role_tok, const char *s, size_t n, uint8_t m)
{
    int rc = put_special(c, role_tok, 0);
    if (!rc)
        rc = put_text(c, "\n", 1, 0);
    if (!rc)
        rc = put_text(c, s, n, m);
    if (!rc)
        rc = put_special(c, TOK_END, m);
    if (!rc)
        rc = put_text(c, "\n", 1, 0);
    return rc;
}

/* Tokens of s[0..n) (0 when no tokenizer: the cost is then bytes). */
static int count_tokens(struct ctx *c, struct tok_ids *scratch, const char *s, size_t n, size_t *out)
{
    if (!c->t) {
        *out = n;
        return 0;
    }
    scratch->len = 0;
    int rc = tok_encode(c->t, c->cache, s, n, 0, scratch);
    if (!rc)
        *out = scratch->len;
    return rc;
}

/* Build the system message's content into sys: the rules, the evidence header
 * and as many passage lines (best first) as the budget allows. */
static int build_system(struct ctx *c, const struct prompt_input *in, const struct prompt_opts *o, struct buf *sys)
{
    struct prompt *p = c->p;
    const char *rules = in->system ? in->system : prompt_default_system;
    struct buf lines;
    struct tok_ids scratch;
    size_t *ends = NULL; /* (n_evidence + 1) end of line i in lines */
    int rc;
    buf_init(&lines, PROMPT_MAX_BYTES);
    tok_ids_init(&scratch, PROMPT_MAX_TOKENS);
    if ((rc = sanitize(sys, rules, strlen(rules), 0, 0)) || (rc = buf_puts(sys, EVIDENCE_HEADER)))
        goto fail;
    size_t header_len = sys->len;
    ends = calloc(in->n_evidence + 1, sizeof(*ends));
    if (!ends) {
        rc = AISLE_ENOMEM;
        goto fail;
    }
    /* Lines while they fit the budget, each costed alone. */
    size_t k = 0, cost = 0;
    for (; k < in->n_evidence; k++) {
        size_t start = lines.len, line_cost;
        if ((rc = buf_putc(&lines, '\n')) ||
            (rc = prompt_passage_line(&lines, k + 1, &in->evidence[k], o->max_passage_bytes)))
            goto fail;
        if (o->evidence_budget) {
            if ((rc = count_tokens(c, &scratch, lines.data + start, lines.len - start, &line_cost)))
                goto fail;
            if (cost + line_cost > o->evidence_budget)
                break;
            cost += line_cost;
        }
        ends[k + 1] = lines.len;
    }
    /* Tokens of a whole text may differ from the sum of its lines' (a vocabulary
     * whose pre-tokenizer joins across the newline): measure the joined text and
     * drop more lines while it is over the budget. */
    size_t header_cost = 0, total = 0;
    if ((rc = count_tokens(c, &scratch, sys->data, header_len, &header_cost)))
        goto fail;
    for (;;) {
        sys->len = header_len;
        if ((rc = buf_append(sys, lines.data, ends[k])))
            goto fail;
        if ((rc = count_tokens(c, &scratch, sys->data, sys->len, &total)))
            goto fail;
        cost = total >= header_cost ? total - header_cost : 0;
        if (k == 0 || !o->evidence_budget || cost <= o->evidence_budget)
            break;
        k--;
    }
    if (k == 0) {
        cost = 0;
        if ((rc = buf_puts(sys, EVIDENCE_NONE)))
            goto fail;
    }
    p->n_used = k;
    p->n_dropped = in->n_evidence - k;
    p->evidence_cost = cost;
fail:
    free(ends);
    buf_release(&lines);
    tok_ids_release(&scratch);
    return rc;
}

int prompt_build(struct prompt *p, const struct prompt_input *in, const struct prompt_opts *opts,
                 const struct tok *t, struct tok_cache *cache)
{
    static const struct prompt_opts defaults = {0};
    const struct prompt_opts *o = opts ? opts : &defaults;
    struct ctx c = {p, t, cache};
    struct buf sys, turn;
    int rc = 0;
    buf_reset(&p->text);
    p->ids.len = 0;
    p->err[0] = '\0';
    p->n_used = p->n_dropped = p->evidence_cost = p->prefix_bytes = p->prefix_tokens = 0;
    buf_init(&sys, PROMPT_MAX_BYTES);
    buf_init(&turn, PROMPT_MAX_BYTES);
    if (in->n_evidence > PROMPT_MAX_PASSAGES) {
        rc = fail(p, AISLE_EINVAL, "%zu evidence passages (at most %d)", in->n_evidence, PROMPT_MAX_PASSAGES);
        goto fail;
    }
    if (in->n_turns > PROMPT_MAX_TURNS) {
        rc = fail(p, AISLE_EINVAL, "%zu turns (at most %d)", in->n_turns, PROMPT_MAX_TURNS);
        goto fail;
    }
    if ((in->n_evidence && !in->evidence) || (in->n_turns && !in->turns)) {
        rc = fail(p, AISLE_EINVAL, "a count of passages or turns without the array");
        goto fail;
    }
    for (size_t i = 0; i < in->n_evidence; i++)
        if (!in->evidence[i].text) {
            rc = fail(p, AISLE_EINVAL, "evidence passage %zu has no text", i + 1);
            goto fail;
        }
    for (size_t i = 0; i < in->n_turns; i++)
        if (!in->turns[i].text ||
            (in->turns[i].role != PROMPT_USER && in->turns[i].role != PROMPT_ASSISTANT)) {
            rc = fail(p, AISLE_EINVAL, "turn %zu has no text or a role other than user/assistant", i + 1);
            goto fail;
        }

    if (t) {
        /* BOS exactly when the vocabulary's own encoding adds it. */
        struct tok_ids bos;
        tok_ids_init(&bos, 4);
        rc = tok_encode(t, cache, "", 0, TOK_ADD_SPECIAL, &bos);
        if (!rc && bos.len && bos.ids[0] == tok_bos(t) && tok_bos(t) >= 0 && !(rc = tok_ids_push(&p->ids, bos.ids[0])))
            rc = mask_fill(p, 0, 0);
        tok_ids_release(&bos);
        if (rc)
            goto fail;
    }
    if ((rc = build_system(&c, in, o, &sys)) || (rc = put_message(&c, TOK_SYSTEM, sys.data, sys.len, 0)))
        goto fail;
    p->prefix_bytes = p->text.len;
    p->prefix_tokens = p->ids.len;
    for (size_t i = 0; i < in->n_turns; i++) {
        const struct prompt_turn *tu = &in->turns[i];
        int asst = tu->role == PROMPT_ASSISTANT;
        buf_reset(&turn);
        if ((rc = sanitize(&turn, tu->text, strlen(tu->text), 0, 0)) ||
            (rc = put_message(&c, asst ? TOK_ASSISTANT : TOK_USER, turn.data ? turn.data : "", turn.len, (uint8_t)asst)))
            goto fail;
    }
    if (o->add_generation_prompt && ((rc = put_special(&c, TOK_ASSISTANT, 0)) || (rc = put_text(&c, "\n", 1, 0))))
        goto fail;
fail:
    if (rc && !p->err[0])
        snprintf(p->err, sizeof(p->err), "building the prompt: %s", aisle_strerror(rc));
    buf_release(&sys);
    buf_release(&turn);
    return rc;
}

/* ---- markup ---- */

enum { ST_TEXT, ST_CITE, ST_LT, ST_NAME, ST_LIT, ST_ID, ST_SKIP };

static const char *const tag_names[] = {NULL, "product", "compare", "price", "stock", "delivery"};
#define N_TAGS 5

const char *markup_tag_name(enum markup_tag tag)
{
    return tag >= 1 && tag <= N_TAGS ? tag_names[tag] : NULL;
}

void markup_init(struct markup *m, unsigned max_cite)
{
    memset(m, 0, sizeof(*m));
    m->state = ST_TEXT;
    m->max_cite = max_cite && max_cite < MARKUP_MAX_CITE ? max_cite : MARKUP_MAX_CITE;
}

static int is_id_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '_';
}

static int emit_text(const char *s, size_t n, uint64_t off, markup_cb cb, void *ud)
{
    if (!n)
        return 0;
    struct markup_piece pc = {.kind = MARKUP_TEXT, .raw = s, .len = n, .offset = off};
    return cb(ud, &pc);
}

/* The pending bytes as an error piece with m->msg; the parser returns to text. */
static int emit_error(struct markup *m, markup_cb cb, void *ud)
{
    struct markup_piece pc = {.kind = MARKUP_ERROR, .raw = m->pend, .len = m->npend, .offset = m->pend_off,
                              .error = m->msg};
    m->state = ST_TEXT;
    m->npend = 0;
    return cb(ud, &pc);
}

static int emit_pend_text(struct markup *m, markup_cb cb, void *ud)
{
    m->state = ST_TEXT;
    size_t n = m->npend;
    m->npend = 0;
    return emit_text(m->pend, n, m->pend_off, cb, ud);
}

/* Enter the error state: the bytes so far and those up to the next '>' (or
 * before a newline or '<') make one ERROR piece. */
static void start_skip(struct markup *m, const char *fmt, const char *arg)
{
    snprintf(m->msg, sizeof(m->msg), fmt, arg);
    m->state = ST_SKIP;
}

static const char *cur_name(struct markup *m)
{
    return markup_tag_name((enum markup_tag)m->tag);
}

int markup_feed(struct markup *m, const char *s, size_t n, markup_cb cb, void *ud)
{
    uint64_t base = m->offset;
    size_t i = 0, run = 0;
    int rc;
    m->offset += n;
    /* Complete a character held from the last feed. */
    if (m->nhold) {
        size_t need = seq_len(m->hold[0]);
        while (i < n && m->nhold < need && ((unsigned char)s[i] & 0xc0) == 0x80)
            m->hold[m->nhold++] = (unsigned char)s[i++];
        if (m->nhold < need && i == n)
            return 0; /* still incomplete */
        size_t nh = m->nhold;
        m->nhold = 0;
        if ((rc = emit_text((const char *)m->hold, nh, m->pend_off, cb, ud)))
            return rc;
        run = i;
    }
    for (; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
    again:
        switch (m->state) {
        case ST_TEXT:
            if (ch == '<' || ch == '[') {
                if ((rc = emit_text(s + run, i - run, base + run, cb, ud)))
                    return rc;
                m->pend[0] = (char)ch;
                m->npend = 1;
                m->pend_off = base + i;
                m->state = ch == '<' ? ST_LT : ST_CITE;
            }
            continue;
        case ST_CITE:
            if (ch >= '0' && ch <= '9' && !(m->npend == 1 && ch == '0') && m->npend < 4) {
                m->pend[m->npend++] = (char)ch;
                continue;
            }
            if (ch == ']' && m->npend > 1) {
                m->pend[m->npend++] = (char)ch;
                unsigned v = (unsigned)strtoul(m->pend + 1, NULL, 10);
                run = i + 1;
                if (v > m->max_cite) {
                    snprintf(m->msg, sizeof(m->msg), "citation [%u] is not one of the %u evidence passages", v,
                             m->max_cite);
                    struct markup_piece pc = {.kind = MARKUP_ERROR, .raw = m->pend, .len = m->npend,
                                              .offset = m->pend_off, .cite = v, .error = m->msg};
                    m->state = ST_TEXT;
                    m->npend = 0;
                    if ((rc = cb(ud, &pc)))
                        return rc;
                    continue;
                }
                struct markup_piece pc = {.kind = MARKUP_CITE, .raw = m->pend, .len = m->npend,
                                          .offset = m->pend_off, .cite = v};
                m->state = ST_TEXT;
                m->npend = 0;
                if ((rc = cb(ud, &pc)))
                    return rc;
                continue;
            }
            if ((rc = emit_pend_text(m, cb, ud)))
                return rc;
            run = i;
            goto again;
        case ST_LT:
            if (ch >= 'a' && ch <= 'z') {
                m->pend[m->npend++] = (char)ch;
                m->state = ST_NAME;
                continue;
            }
            if (ch == '/') {
                m->pend[m->npend++] = (char)ch;
                start_skip(m, "%sclosing tags are not markup: every tag closes itself, as in <product id=\"ID\"/>",
                           "");
                continue;
            }
            if ((rc = emit_pend_text(m, cb, ud))) /* "<" before a space, digit...: text */
                return rc;
            run = i;
            goto again;
        case ST_NAME:
            if (ch >= 'a' && ch <= 'z' && m->npend < 24) {
                m->pend[m->npend++] = (char)ch;
                continue;
            }
            m->tag = 0;
            for (int k = 1; k <= N_TAGS; k++)
                if (strlen(tag_names[k]) == m->npend - 1 && !memcmp(tag_names[k], m->pend + 1, m->npend - 1))
                    m->tag = k;
            if (!m->tag) {
                char name[32];
                snprintf(name, sizeof(name), "%.*s", (int)(m->npend - 1), m->pend + 1);
                start_skip(m,
                           "unknown tag <%s>: the tags are product, compare, price, stock and delivery", name);
                goto again;
            }
            m->lit = m->tag == MARKUP_COMPARE ? " ids=\"" : " id=\"";
            m->li = 0;
            m->n_ids = 0;
            m->state = ST_LIT;
            goto again;
        case ST_LIT:
            if (ch == (unsigned char)m->lit[m->li]) {
                m->pend[m->npend++] = (char)ch;
                if (m->lit[++m->li])
                    continue;
                if (m->lit[0] == ' ') { /* the attribute is open: ids follow */
                    m->state = ST_ID;
                    m->id_start[0] = m->npend;
                    continue;
                }
                struct markup_piece pc = {.kind = MARKUP_TAG, .raw = m->pend, .len = m->npend,
                                          .offset = m->pend_off, .tag = (enum markup_tag)m->tag,
                                          .n_ids = m->n_ids};
                for (size_t k = 0; k < m->n_ids; k++) {
                    pc.ids[k] = m->pend + m->id_start[k];
                    pc.id_lens[k] = m->id_len[k];
                }
                m->state = ST_TEXT;
                m->npend = 0;
                run = i + 1;
                if ((rc = cb(ud, &pc)))
                    return rc;
                continue;
            }
            if (m->lit[0] == ' ')
                start_skip(m,
                           m->tag == MARKUP_COMPARE ? "malformed <%s> tag: expected ' ids=\"' after the name"
                                                    : "malformed <%s> tag: expected ' id=\"' after the name",
                           cur_name(m));
            else
                start_skip(m, "malformed <%s> tag: expected '/>' after the closing quote", cur_name(m));
            goto again;
        case ST_ID: {
            size_t cur = m->npend - m->id_start[m->n_ids];
            if (is_id_char(ch)) {
                if (cur >= MARKUP_MAX_ID_LEN) {
                    start_skip(m, "malformed <%s> tag: an id is longer than 64 bytes", cur_name(m));
                    goto again;
                }
                m->pend[m->npend++] = (char)ch;
                continue;
            }
            if (ch == ',' && m->tag == MARKUP_COMPARE && cur > 0 && m->n_ids + 1 < MARKUP_MAX_IDS) {
                m->id_len[m->n_ids++] = cur;
                m->pend[m->npend++] = (char)ch;
                m->id_start[m->n_ids] = m->npend;
                continue;
            }
            if (ch == '"' && cur > 0 && (m->tag != MARKUP_COMPARE || m->n_ids >= 1)) {
                m->id_len[m->n_ids++] = cur;
                m->pend[m->npend++] = (char)ch;
                m->lit = "/>";
                m->li = 0;
                m->state = ST_LIT;
                continue;
            }
            if (ch == ',' && m->tag != MARKUP_COMPARE)
                start_skip(m, "malformed <%s> tag: only <compare> takes several ids", cur_name(m));
            else if (ch == ',' && cur > 0)
                start_skip(m, "malformed <%s> tag: more than 4 ids", cur_name(m));
            else if ((ch == ',' || ch == '"') && cur == 0)
                start_skip(m, "malformed <%s> tag: an empty id", cur_name(m));
            else if (ch == '"')
                start_skip(m, "malformed <%s> tag: compare needs 2 to 4 ids", cur_name(m));
            else
                start_skip(m, "malformed <%s> tag: an id is letters, digits, '-' and '_' only", cur_name(m));
            goto again;
        }
        case ST_SKIP:
            if (ch == '\n' || ch == '<') {
                if ((rc = emit_error(m, cb, ud)))
                    return rc;
                run = i;
                goto again;
            }
            m->pend[m->npend++] = (char)ch;
            if (ch == '>' || m->npend >= MARKUP_MAX_PENDING) {
                run = i + 1;
                if ((rc = emit_error(m, cb, ud)))
                    return rc;
            }
            continue;
        }
    }
    if (m->state != ST_TEXT)
        return 0;
    /* Hold back a character that the next feed completes. */
    size_t end = n;
    for (size_t k = 1; k <= 3 && n >= run + k; k++) {
        unsigned char b = (unsigned char)s[n - k];
        if ((b & 0xc0) == 0x80)
            continue;
        if (seq_len(b) > k)
            end = n - k;
        break;
    }
    if ((rc = emit_text(s + run, end - run, base + run, cb, ud)))
        return rc;
    if (end < n) {
        m->nhold = n - end;
        memcpy(m->hold, s + end, m->nhold);
        m->pend_off = base + end;
    }
    return 0;
}

int markup_finish(struct markup *m, markup_cb cb, void *ud)
{
    int rc = 0;
    if (m->nhold) {
        size_t nh = m->nhold;
        m->nhold = 0;
        rc = emit_text((const char *)m->hold, nh, m->pend_off, cb, ud);
    }
    if (!rc) {
        switch (m->state) {
        case ST_CITE:
        case ST_LT:
            rc = emit_pend_text(m, cb, ud);
            break;
        case ST_NAME:
        case ST_LIT:
        case ST_ID:
            if (m->state == ST_NAME)
                snprintf(m->msg, sizeof(m->msg), "unterminated tag at the end of the answer");
            else
                snprintf(m->msg, sizeof(m->msg), "unterminated <%s> tag at the end of the answer", cur_name(m));
            rc = emit_error(m, cb, ud);
            break;
        case ST_SKIP:
            rc = emit_error(m, cb, ud);
            break;
        default:
            break;
        }
    }
    unsigned max = m->max_cite;
    markup_init(m, max);
    return rc;
}

struct check {
    size_t tags, cites;
    int bad;
    char *err;
    size_t errlen;
};

static int check_cb(void *ud, const struct markup_piece *pc)
{
    struct check *c = ud;
    if (pc->kind == MARKUP_TAG)
        c->tags++;
    else if (pc->kind == MARKUP_CITE)
        c->cites++;
    else if (pc->kind == MARKUP_ERROR && !c->bad) {
        c->bad = 1;
        if (c->err && c->errlen)
            snprintf(c->err, c->errlen, "offset %llu: %s: '%.*s'", (unsigned long long)pc->offset, pc->error,
                     (int)(pc->len > 80 ? 80 : pc->len), pc->raw);
    }
    return 0;
}

int markup_check(const char *s, size_t n, unsigned max_cite, size_t *n_tags, size_t *n_cites, char *err,
                 size_t errlen)
{
    struct markup m;
    struct check c = {0, 0, 0, err, errlen};
    markup_init(&m, max_cite);
    markup_feed(&m, s, n, check_cb, &c);
    markup_finish(&m, check_cb, &c);
    if (n_tags)
        *n_tags = c.tags;
    if (n_cites)
        *n_cites = c.cites;
    return c.bad ? AISLE_EFORMAT : 0;
}
