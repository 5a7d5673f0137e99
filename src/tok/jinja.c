/*
 * jinja.c — the chat-template subset of Jinja (see jinja.h for what is in).
 *
 * Design: one pass lexes the whole template into tokens (text runs with the
 * whitespace rules already applied, then the tokens inside each tag); a
 * recursive-descent parser builds a tree with Jinja's operator precedence;
 * a tree walker renders it against the conversation. Everything is allocated
 * from one arena freed when the render returns, so errors can unwind with
 * longjmp from any depth without leaking (the only non-local exit; the
 * arena is the sole owner of memory between setjmp and return).
 *
 * Invariants: the parser never recurses more than TOK_JINJA_MAX_DEPTH deep
 * (so the walker does not either); output and loop iterations are counted
 * against their caps before each write or iteration; values are immutable
 * except namespace maps.
 */
#include "tok/jinja.h"

#include "core/error.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ------------------------------------------------------------------------- */

struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

struct ctx {
    const char *src;
    size_t srclen;
    jmp_buf jb;
    int rc;
    char *err;
    size_t errlen;
    struct chunk *arena;
    /* tokens */
    struct token *tok;
    size_t ntok, captok, pos;
    int depth;
    /* rendering */
    struct buf *out;
    size_t out0, max_out;
    long iters;
    struct var *vars;
    size_t nvars, capvars, frame;
    const struct tok_chat_msg *msgs;
    size_t nmsgs;
};

static void fail_at(struct ctx *c, int rc, const char *at, const char *fmt, ...) __attribute__((format(printf, 4, 5), noreturn));
static void fail_at(struct ctx *c, int rc, const char *at, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        int line = 1;
        if (at && at >= c->src && at <= c->src + c->srclen)
            for (const char *p = c->src; p < at; p++)
                line += *p == '\n';
        int k = at ? snprintf(c->err, c->errlen, "chat template line %d: ", line) : 0;
        if (k < 0 || (size_t)k >= c->errlen)
            k = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    c->rc = rc;
    longjmp(c->jb, 1);
}

static void *alloc(struct ctx *c, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!c->arena || c->arena->cap - c->arena->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        struct chunk *k = malloc(sizeof(*k) + cap);
        if (!k)
            fail_at(c, AISLE_ENOMEM, NULL, "out of memory");
        k->next = c->arena;
        k->used = 0;
        k->cap = cap;
        c->arena = k;
    }
    void *p = c->arena->data + c->arena->used;
    c->arena->used += n;
    return p;
}

static void arena_free(struct ctx *c)
{
    while (c->arena) {
        struct chunk *k = c->arena->next;
        free(c->arena);
        c->arena = k;
    }
}

/* ---- lexer ------------------------------------------------------------------------- */

enum tk {
    TK_EOF, TK_TEXT, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END, TK_NAME, TK_STRING, TK_INT, TK_OP,
};

struct token {
    enum tk k;
    const char *p; /* in the source (for errors and names) */
    size_t n;
    const char *s; /* TK_TEXT: the text (p); TK_STRING: unescaped, in the arena */
    size_t sn;
    int64_t i;
};

static void push_tok(struct ctx *c, struct token t)
{
    if (c->ntok == c->captok) {
        size_t cap = c->captok ? 2 * c->captok : 256;
        struct token *nt = alloc(c, cap * sizeof(*nt));
        if (c->ntok)
            memcpy(nt, c->tok, c->ntok * sizeof(*nt));
        c->tok = nt;
        c->captok = cap;
    }
    c->tok[c->ntok++] = t;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static int is_name0(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static int is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* The tokens of one tag's inside, from *pp up to its closing delimiter
 * (close: "}}" or "%}"); returns the position of the delimiter (with a
 * leading '-' when it has one). */
static const char *lex_inside(struct ctx *c, const char *p, const char *end, char close)
{
    for (;;) {
        while (p < end && is_space(*p))
            p++;
        if (p >= end)
            fail_at(c, AISLE_EFORMAT, p, "unclosed tag");
        if ((*p == close && p + 1 < end && p[1] == '}') ||
            (*p == '-' && p + 2 < end && p[1] == close && p[2] == '}'))
            return p;
        struct token t = {.p = p};
        if (is_name0(*p)) {
            const char *q = p;
            while (q < end && (is_name0(*q) || is_digit(*q)))
                q++;
            t.k = TK_NAME, t.n = (size_t)(q - p);
            p = q;
        } else if (is_digit(*p)) {
            int64_t v = 0;
            const char *q = p;
            while (q < end && is_digit(*q)) {
                int d = *q++ - '0';
                if (v > (INT64_MAX - d) / 10)
                    fail_at(c, AISLE_EFORMAT, p, "integer literal too large");
                v = v * 10 + d;
            }
            if (q < end && (*q == '.' || is_name0(*q)))
                fail_at(c, AISLE_EFORMAT, p, "only integer numbers are supported");
            t.k = TK_INT, t.n = (size_t)(q - p), t.i = v;
            p = q;
        } else if (*p == '\'' || *p == '"') {
            char qch = *p;
            const char *q = p + 1;
            char *s = alloc(c, (size_t)(end - q) + 1);
            size_t sn = 0;
            for (;;) {
                if (q >= end)
                    fail_at(c, AISLE_EFORMAT, p, "unterminated string");
                if (*q == qch)
                    break;
                if (*q == '\\' && q + 1 < end) {
                    q++;
                    switch (*q) {
                    case 'n': s[sn++] = '\n'; break;
                    case 't': s[sn++] = '\t'; break;
                    case 'r': s[sn++] = '\r'; break;
                    case '\\': s[sn++] = '\\'; break;
                    case '\'': s[sn++] = '\''; break;
                    case '"': s[sn++] = '"'; break;
                    default: s[sn++] = '\\', s[sn++] = *q; break; /* Python keeps unknown escapes */
                    }
                    q++;
                } else
                    s[sn++] = *q++;
            }
            t.k = TK_STRING, t.n = (size_t)(q + 1 - p), t.s = s, t.sn = sn;
            p = q + 1;
        } else {
            static const char *const two[] = {"==", "!=", "<=", ">=", "//", "**"};
            t.k = TK_OP, t.n = 1;
            for (size_t i = 0; i < sizeof(two) / sizeof(two[0]); i++)
                if (p + 1 < end && p[0] == two[i][0] && p[1] == two[i][1])
                    t.n = 2;
            if (t.n == 1 && !strchr("+-*/%~<>()[]{}.,:|=", *p))
                fail_at(c, AISLE_EFORMAT, p, "unexpected character '%c'", *p);
            p += t.n;
        }
        push_tok(c, t);
    }
}

/* Whitespace as HF renders chat templates: Jinja's defaults plus trim_blocks
 * (the newline right after a block or comment tag goes) and lstrip_blocks
 * (spaces and tabs from the line's start up to a block or comment tag go);
 * a '-' inside a delimiter strips all whitespace on that side. */
static void lex(struct ctx *c)
{
    const char *p = c->src, *end = c->src + c->srclen;
    int strip_next = 0; /* after "-%}" / "-}}": drop leading whitespace */
    int trim_nl = 0;    /* after "%}" / "#}": drop one newline */
    while (p < end) {
        const char *q = p;
        while (q < end && !(q[0] == '{' && q + 1 < end && (q[1] == '{' || q[1] == '%' || q[1] == '#')))
            q++;
        /* text p..q */
        const char *ts = p, *te = q;
        if (strip_next)
            while (ts < te && is_space(*ts))
                ts++;
        else if (trim_nl) {
            if (ts < te && *ts == '\n')
                ts++;
            else if (te - ts >= 2 && ts[0] == '\r' && ts[1] == '\n')
                ts += 2;
        }
        strip_next = trim_nl = 0;
        if (q < end) {
            char kind = q[1];
            int minus = q + 2 < end && q[2] == '-', plus = q + 2 < end && q[2] == '+';
            if (minus)
                while (te > ts && is_space(te[-1]))
                    te--;
            else if (kind != '{' && !plus) { /* lstrip_blocks */
                const char *b = te;
                while (b > ts && (b[-1] == ' ' || b[-1] == '\t'))
                    b--;
                /* a line start in the source, even inside a run already trimmed */
                if (b == c->src || b[-1] == '\n')
                    te = b;
            }
        }
        if (te > ts)
            push_tok(c, (struct token){.k = TK_TEXT, .p = ts, .n = (size_t)(te - ts), .s = ts, .sn = (size_t)(te - ts)});
        if (q >= end)
            break;
        char kind = q[1];
        const char *in = q + 2 + (q + 2 < end && (q[2] == '-' || q[2] == '+'));
        if (kind == '#') {
            const char *e = in;
            while (e + 1 < end && !(e[0] == '#' && e[1] == '}'))
                e++;
            if (e + 1 >= end)
                fail_at(c, AISLE_EFORMAT, q, "unclosed comment");
            strip_next = e > in && e[-1] == '-';
            trim_nl = !strip_next;
            p = e + 2;
            continue;
        }
        push_tok(c, (struct token){.k = kind == '{' ? TK_VAR_BEGIN : TK_BLOCK_BEGIN, .p = q, .n = 2});
        const char *d = lex_inside(c, in, end, kind == '{' ? '}' : '%');
        push_tok(c, (struct token){.k = kind == '{' ? TK_VAR_END : TK_BLOCK_END, .p = d, .n = 2});
        strip_next = *d == '-';
        trim_nl = !strip_next && kind == '%';
        p = d + (*d == '-' ? 3 : 2);
    }
    push_tok(c, (struct token){.k = TK_EOF, .p = end});
}

/* ---- tree -------------------------------------------------------------------------- */

enum nk {
    /* expressions */
    N_STR, N_INT, N_BOOL, N_NONE, N_LIST, N_DICT, N_NAME, N_ATTR, N_INDEX, N_SLICE, N_BIN, N_NOT, N_NEG, N_AND, N_OR, N_COND,
    N_TEST, N_FILTER, N_CALL,
    /* statements */
    N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SEQ,
};

struct node {
    enum nk k;
    const char *at;      /* source position for errors */
    const char *s;       /* string value, name, operator, attribute, filter or test name */
    size_t sn;
    int64_t i;           /* integer / bool value; N_TEST: negated */
    struct node *a, *b, *c; /* operands, bodies */
    struct node *d;         /* N_FOR: the loop filter (for x in xs if d), or NULL */
    struct node **kids;  /* N_LIST items, call/filter args, N_SEQ statements */
    const char **kw;     /* keyword-argument names (NULL for positional), parallel to kids */
    size_t nkids;
};

static struct node *mk(struct ctx *c, enum nk k, const char *at)
{
    struct node *n = alloc(c, sizeof(*n));
    memset(n, 0, sizeof(*n));
    n->k = k;
    n->at = at;
    return n;
}

static struct token *peek(struct ctx *c)
{
    return &c->tok[c->pos];
}

static struct token *next(struct ctx *c)
{
    struct token *t = &c->tok[c->pos];
    if (t->k != TK_EOF)
        c->pos++;
    return t;
}

static int tok_is(const struct token *t, enum tk k, const char *s)
{
    return t->k == k && (!s || (t->n == strlen(s) && !memcmp(t->p, s, t->n)));
}

static int accept(struct ctx *c, enum tk k, const char *s)
{
    if (tok_is(peek(c), k, s)) {
        next(c);
        return 1;
    }
    return 0;
}

static struct token *expect(struct ctx *c, enum tk k, const char *s, const char *what)
{
    struct token *t = peek(c);
    if (!tok_is(t, k, s))
        fail_at(c, AISLE_EFORMAT, t->p, "expected %s", what);
    return next(c);
}

static void enter(struct ctx *c, const char *at)
{
    if (++c->depth > TOK_JINJA_MAX_DEPTH)
        fail_at(c, AISLE_ETOOBIG, at, "nested more than %d deep", TOK_JINJA_MAX_DEPTH);
}

/* Grow a node list by one (arena, doubling). */
static void add_kid(struct ctx *c, struct node *n, struct node *kid, const char *kw, size_t *cap)
{
    if (n->nkids == *cap) {
        size_t nc = *cap ? 2 * *cap : 4;
        struct node **k = alloc(c, nc * sizeof(*k));
        const char **w = alloc(c, nc * sizeof(*w));
        if (n->nkids) {
            memcpy(k, n->kids, n->nkids * sizeof(*k));
            memcpy(w, n->kw, n->nkids * sizeof(*w));
        }
        n->kids = k, n->kw = w, *cap = nc;
    }
    n->kw[n->nkids] = kw;
    n->kids[n->nkids++] = kid;
}

static struct node *p_expr(struct ctx *c);

/* "(" args ")" after a callee or filter name; name=value arguments keep the name. */
static void p_args(struct ctx *c, struct node *n)
{
    size_t cap = 0;
    if (accept(c, TK_OP, ")"))
        return;
    for (;;) {
        const char *kw = NULL;
        if (peek(c)->k == TK_NAME && tok_is(&c->tok[c->pos + 1], TK_OP, "=")) {
            struct token *t = next(c);
            char *s = alloc(c, t->n + 1);
            memcpy(s, t->p, t->n);
            s[t->n] = '\0';
            kw = s;
            next(c);
        }
        add_kid(c, n, p_expr(c), kw, &cap);
        if (accept(c, TK_OP, ")"))
            return;
        expect(c, TK_OP, ",", "',' or ')' in the arguments");
    }
}

static struct node *p_primary(struct ctx *c)
{
    struct token *t = next(c);
    struct node *n;
    if (t->k == TK_STRING) {
        n = mk(c, N_STR, t->p);
        n->s = t->s, n->sn = t->sn;
        while (peek(c)->k == TK_STRING) { /* adjacent literals concatenate */
            struct token *u = next(c);
            char *s = alloc(c, n->sn + u->sn + 1);
            memcpy(s, n->s, n->sn);
            memcpy(s + n->sn, u->s, u->sn);
            n->s = s, n->sn += u->sn;
        }
    } else if (t->k == TK_INT) {
        n = mk(c, N_INT, t->p);
        n->i = t->i;
    } else if (t->k == TK_NAME) {
        if (tok_is(t, TK_NAME, "true") || tok_is(t, TK_NAME, "True") || tok_is(t, TK_NAME, "false") ||
            tok_is(t, TK_NAME, "False")) {
            n = mk(c, N_BOOL, t->p);
            n->i = t->p[0] == 't' || t->p[0] == 'T';
        } else if (tok_is(t, TK_NAME, "none") || tok_is(t, TK_NAME, "None"))
            n = mk(c, N_NONE, t->p);
        else {
            n = mk(c, N_NAME, t->p);
            n->s = t->p, n->sn = t->n;
        }
    } else if (tok_is(t, TK_OP, "(")) {
        n = p_expr(c);
        expect(c, TK_OP, ")", "')'");
    } else if (tok_is(t, TK_OP, "{")) { /* {k: v, ...}: kids alternate key, value */
        n = mk(c, N_DICT, t->p);
        size_t cap = 0;
        if (!accept(c, TK_OP, "}"))
            for (;;) {
                add_kid(c, n, p_expr(c), NULL, &cap);
                expect(c, TK_OP, ":", "':' in the map");
                add_kid(c, n, p_expr(c), NULL, &cap);
                if (accept(c, TK_OP, "}"))
                    break;
                expect(c, TK_OP, ",", "',' or '}' in the map");
            }
    } else if (tok_is(t, TK_OP, "[")) {
        n = mk(c, N_LIST, t->p);
        size_t cap = 0;
        if (!accept(c, TK_OP, "]"))
            for (;;) {
                add_kid(c, n, p_expr(c), NULL, &cap);
                if (accept(c, TK_OP, "]"))
                    break;
                expect(c, TK_OP, ",", "',' or ']' in the list");
            }
    } else
        fail_at(c, AISLE_EFORMAT, t->p, "expected a value");
    /* postfix: .name, [index], [a:b], (args) */
    for (;;) {
        struct token *u = peek(c);
        if (tok_is(u, TK_OP, ".")) {
            next(c);
            struct token *name = expect(c, TK_NAME, NULL, "an attribute name after '.'");
            struct node *a = mk(c, N_ATTR, name->p);
            a->a = n, a->s = name->p, a->sn = name->n;
            n = a;
        } else if (tok_is(u, TK_OP, "[")) {
            next(c);
            struct node *lo = NULL, *hi = NULL;
            if (!tok_is(peek(c), TK_OP, ":"))
                lo = p_expr(c);
            if (accept(c, TK_OP, ":")) {
                if (!tok_is(peek(c), TK_OP, "]"))
                    hi = p_expr(c);
                struct node *s = mk(c, N_SLICE, u->p);
                s->a = n, s->b = lo, s->c = hi;
                n = s;
            } else {
                struct node *ix = mk(c, N_INDEX, u->p);
                ix->a = n, ix->b = lo;
                n = ix;
            }
            expect(c, TK_OP, "]", "']'");
        } else if (tok_is(u, TK_OP, "(")) {
            next(c);
            struct node *call = mk(c, N_CALL, u->p);
            call->a = n;
            p_args(c, call);
            n = call;
        } else
            return n;
    }
}

/* unary minus, then a primary with its filters (filters bind tightest) */
static struct node *p_unary(struct ctx *c)
{
    struct token *t = peek(c);
    enter(c, t->p);
    struct node *n;
    if (accept(c, TK_OP, "-")) {
        n = mk(c, N_NEG, t->p);
        n->a = p_unary(c);
    } else if (accept(c, TK_OP, "+"))
        n = p_unary(c);
    else {
        n = p_primary(c);
        while (accept(c, TK_OP, "|")) {
            struct token *name = expect(c, TK_NAME, NULL, "a filter name after '|'");
            struct node *f = mk(c, N_FILTER, name->p);
            f->a = n, f->s = name->p, f->sn = name->n;
            if (accept(c, TK_OP, "("))
                p_args(c, f);
            n = f;
        }
    }
    c->depth--;
    return n;
}

static struct node *bin(struct ctx *c, enum nk k, const struct token *op, struct node *l, struct node *r)
{
    struct node *n = mk(c, k, op->p);
    n->s = op->p, n->sn = op->n, n->a = l, n->b = r;
    return n;
}

/* Left-associative binary levels, tightest last: + -, then ~, then * / // %
 * (Jinja's math1, concat, math2); "or" and "and" below use the same loop. */
struct level {
    enum nk node;
    const char *ops[5]; /* NULL-terminated; words are names, the rest operators */
};

static const struct level arith[] = {
    {N_BIN, {"+", "-", NULL}}, {N_BIN, {"~", NULL}}, {N_BIN, {"*", "/", "//", "%", NULL}}};
static const struct level lv_or = {N_OR, {"or", NULL}}, lv_and = {N_AND, {"and", NULL}};

static const struct token *level_op(struct ctx *c, const struct level *lv)
{
    const struct token *t = peek(c);
    for (const char *const *op = lv->ops; *op; op++)
        if (tok_is(t, is_name0(**op) ? TK_NAME : TK_OP, *op))
            return t;
    return NULL;
}

static struct node *p_left(struct ctx *c, const struct level *lv, struct node *(*operand)(struct ctx *, int), int arg)
{
    struct node *n = operand(c, arg);
    while (level_op(c, lv)) {
        struct token *t = next(c);
        n = bin(c, lv->node, t, n, operand(c, arg));
    }
    return n;
}

/* level i of arith, its operands the next level's (unary after the last) */
static struct node *p_arith(struct ctx *c, int i)
{
    if (i == (int)(sizeof(arith) / sizeof(arith[0])))
        return p_unary(c);
    return p_left(c, &arith[i], p_arith, i + 1);
}

static struct node *p_math1(struct ctx *c)
{
    return p_arith(c, 0);
}

static struct node *p_compare(struct ctx *c)
{
    struct node *n = p_math1(c);
    for (;;) {
        struct token *t = peek(c);
        if (tok_is(t, TK_OP, "==") || tok_is(t, TK_OP, "!=") || tok_is(t, TK_OP, "<") || tok_is(t, TK_OP, ">") ||
            tok_is(t, TK_OP, "<=") || tok_is(t, TK_OP, ">=") || tok_is(t, TK_NAME, "in")) {
            next(c);
            n = bin(c, N_BIN, t, n, p_math1(c));
        } else if (tok_is(t, TK_NAME, "not") && tok_is(&c->tok[c->pos + 1], TK_NAME, "in")) {
            next(c);
            struct token *in_tok = next(c);
            struct node *in = bin(c, N_BIN, in_tok, n, p_math1(c));
            n = mk(c, N_NOT, t->p);
            n->a = in;
        } else if (tok_is(t, TK_NAME, "is")) {
            next(c);
            struct node *tn = mk(c, N_TEST, t->p);
            tn->i = accept(c, TK_NAME, "not");
            struct token *name = next(c);
            if (name->k != TK_NAME)
                fail_at(c, AISLE_EFORMAT, name->p, "expected a test name after 'is'");
            tn->a = n, tn->s = name->p, tn->sn = name->n;
            n = tn;
        } else
            return n;
    }
}

static struct node *p_not(struct ctx *c)
{
    struct token *t = peek(c);
    if (accept(c, TK_NAME, "not")) {
        enter(c, t->p);
        struct node *n = mk(c, N_NOT, t->p);
        n->a = p_not(c);
        c->depth--;
        return n;
    }
    return p_compare(c);
}

static struct node *p_not_arg(struct ctx *c, int unused)
{
    (void)unused;
    return p_not(c);
}

static struct node *p_and_arg(struct ctx *c, int unused)
{
    (void)unused;
    return p_left(c, &lv_and, p_not_arg, 0);
}

static struct node *p_or(struct ctx *c)
{
    return p_left(c, &lv_or, p_and_arg, 0);
}

static struct node *p_expr(struct ctx *c)
{
    struct token *t0 = peek(c);
    enter(c, t0->p);
    struct node *n = p_or(c);
    if (tok_is(peek(c), TK_NAME, "if")) {
        struct token *t = next(c);
        struct node *cn = mk(c, N_COND, t->p);
        cn->a = p_or(c); /* the condition */
        cn->b = n;
        cn->c = accept(c, TK_NAME, "else") ? p_expr(c) : NULL;
        n = cn;
    }
    c->depth--;
    return n;
}

/* Statements up to one of the block keywords in `stops` (a {% kw %} left unread). */
static struct node *p_body(struct ctx *c, const char *const *stops);

static int at_keyword(struct ctx *c, const char *const *stops)
{
    if (peek(c)->k != TK_BLOCK_BEGIN)
        return 0;
    struct token *kw = &c->tok[c->pos + 1];
    for (; stops && *stops; stops++)
        if (tok_is(kw, TK_NAME, *stops))
            return 1;
    return 0;
}

static void end_tag(struct ctx *c)
{
    expect(c, TK_BLOCK_END, NULL, "'%}'");
}

static struct node *p_if(struct ctx *c, const char *at)
{
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    struct node *n = mk(c, N_IF, at);
    n->a = p_expr(c);
    end_tag(c);
    n->b = p_body(c, stops);
    if (peek(c)->k == TK_EOF)
        fail_at(c, AISLE_EFORMAT, at, "{%% if %%} without {%% endif %%}");
    next(c); /* {% */
    struct token *kw = next(c);
    if (tok_is(kw, TK_NAME, "elif")) {
        enter(c, kw->p);
        n->c = p_if(c, kw->p); /* the rest of the chain, which consumes endif */
        c->depth--;
        return n;
    }
    if (tok_is(kw, TK_NAME, "else")) {
        static const char *const endif[] = {"endif", NULL};
        end_tag(c);
        n->c = p_body(c, endif);
        if (peek(c)->k == TK_EOF)
            fail_at(c, AISLE_EFORMAT, at, "{%% if %%} without {%% endif %%}");
        next(c), next(c);
    }
    end_tag(c);
    return n;
}

static struct node *p_stmt(struct ctx *c)
{
    struct token *t = peek(c);
    if (t->k == TK_TEXT) {
        next(c);
        struct node *n = mk(c, N_TEXT, t->p);
        n->s = t->s, n->sn = t->sn;
        return n;
    }
    if (t->k == TK_VAR_BEGIN) {
        next(c);
        struct node *n = mk(c, N_OUT, t->p);
        n->a = p_expr(c);
        expect(c, TK_VAR_END, NULL, "'}}'");
        return n;
    }
    if (t->k != TK_BLOCK_BEGIN)
        fail_at(c, AISLE_EFORMAT, t->p, "unexpected token");
    next(c);
    struct token *kw = next(c);
    enter(c, kw->p);
    struct node *n;
    if (tok_is(kw, TK_NAME, "if"))
        n = p_if(c, kw->p);
    else if (tok_is(kw, TK_NAME, "for")) {
        static const char *const stops[] = {"endfor", "else", NULL};
        n = mk(c, N_FOR, kw->p);
        struct token *var = expect(c, TK_NAME, NULL, "a loop variable");
        n->s = var->p, n->sn = var->n;
        if (tok_is(peek(c), TK_OP, ",")) { /* for a, b in pairs: the names as N_NAME kids */
            size_t cap = 0;
            struct node *first = mk(c, N_NAME, var->p);
            first->s = var->p, first->sn = var->n;
            add_kid(c, n, first, NULL, &cap);
            while (accept(c, TK_OP, ",")) {
                struct token *v2 = expect(c, TK_NAME, NULL, "a loop variable after ','");
                struct node *nm = mk(c, N_NAME, v2->p);
                nm->s = v2->p, nm->sn = v2->n;
                add_kid(c, n, nm, NULL, &cap);
            }
        }
        expect(c, TK_NAME, "in", "'in'");
        n->a = p_or(c); /* no conditional expression here: 'if' would be a loop filter */
        if (accept(c, TK_NAME, "if"))
            n->d = p_or(c);
        if (tok_is(peek(c), TK_NAME, "recursive"))
            fail_at(c, AISLE_EFORMAT, peek(c)->p, "recursive loops are not supported");
        end_tag(c);
        n->b = p_body(c, stops);
        if (peek(c)->k == TK_EOF)
            fail_at(c, AISLE_EFORMAT, kw->p, "{%% for %%} without {%% endfor %%}");
        next(c);
        if (tok_is(next(c), TK_NAME, "else")) {
            static const char *const endfor[] = {"endfor", NULL};
            end_tag(c);
            n->c = p_body(c, endfor);
            if (peek(c)->k == TK_EOF)
                fail_at(c, AISLE_EFORMAT, kw->p, "{%% for %%} without {%% endfor %%}");
            next(c), next(c);
        }
        end_tag(c);
    } else if (tok_is(kw, TK_NAME, "set")) {
        n = mk(c, N_SET, kw->p);
        struct token *name = expect(c, TK_NAME, NULL, "a variable name");
        n->s = name->p, n->sn = name->n;
        if (accept(c, TK_OP, ".")) {
            struct node *attr = mk(c, N_STR, peek(c)->p);
            struct token *an = expect(c, TK_NAME, NULL, "an attribute name");
            attr->s = an->p, attr->sn = an->n;
            n->c = attr;
        }
        if (!accept(c, TK_OP, "="))
            fail_at(c, AISLE_EFORMAT, peek(c)->p, "expected '=' ({%% set %%} blocks are not supported)");
        n->a = p_expr(c);
        end_tag(c);
    } else if (kw->k == TK_NAME)
        fail_at(c, AISLE_EFORMAT, kw->p, "unsupported tag '%.*s'", (int)(kw->n < 32 ? kw->n : 32), kw->p);
    else
        fail_at(c, AISLE_EFORMAT, kw->p, "expected a tag name after '{%%'");
    c->depth--;
    return n;
}

static struct node *p_body(struct ctx *c, const char *const *stops)
{
    struct node *seq = mk(c, N_SEQ, peek(c)->p);
    size_t cap = 0;
    while (peek(c)->k != TK_EOF && !at_keyword(c, stops)) {
        if (!stops && peek(c)->k == TK_BLOCK_BEGIN) {
            struct token *kw = &c->tok[c->pos + 1];
            static const char *const closers[] = {"endif", "endfor", "elif", "else", NULL};
            for (const char *const *s = closers; *s; s++)
                if (tok_is(kw, TK_NAME, *s))
                    fail_at(c, AISLE_EFORMAT, kw->p, "'%s' without its opening tag", *s);
        }
        add_kid(c, seq, p_stmt(c), NULL, &cap);
    }
    return seq;
}

/* ---- values ------------------------------------------------------------------------ */

enum vt { V_UNDEF, V_NONE, V_BOOL, V_INT, V_STR, V_LIST, V_MAP, V_FUNC, V_LOOP, V_METHOD };

struct map;
struct loopstate {
    size_t i, n;
};

struct val {
    enum vt t;
    int64_t i;            /* bool, int, V_FUNC id, V_METHOD id */
    const char *s;        /* V_STR bytes; V_METHOD: the receiver string */
    size_t n;             /* V_STR length, V_LIST count */
    const struct val *a;  /* V_LIST items */
    struct map *m;        /* V_MAP; V_METHOD on a map: the receiver */
    const struct loopstate *loop;
};

struct map {
    size_t n, cap;
    struct val *k, *v; /* keys are strings */
};

enum { F_RAISE = 1, F_RANGE, F_NAMESPACE };
enum { M_STRIP = 1, M_LSTRIP, M_RSTRIP, M_UPPER, M_LOWER, M_STARTSWITH, M_ENDSWITH, M_GET, M_ITEMS, M_KEYS, M_VALUES };

static struct val vstr(const char *s, size_t n)
{
    return (struct val){.t = V_STR, .s = s, .n = n};
}

static struct val vint(int64_t i)
{
    return (struct val){.t = V_INT, .i = i};
}

static struct val vbool(int b)
{
    return (struct val){.t = V_BOOL, .i = b != 0};
}

static int str_eq(const char *a, size_t an, const char *b)
{
    return an == strlen(b) && !memcmp(a, b, an);
}

static struct map *map_new(struct ctx *c)
{
    struct map *m = alloc(c, sizeof(*m));
    memset(m, 0, sizeof(*m));
    return m;
}

static struct val *map_find(const struct map *m, const char *k, size_t kn)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->k[i].n == kn && !memcmp(m->k[i].s, k, kn))
            return &m->v[i];
    return NULL;
}

static void map_set(struct ctx *c, struct map *m, const char *k, size_t kn, struct val v)
{
    struct val *old = map_find(m, k, kn);
    if (old) {
        *old = v;
        return;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 4;
        struct val *nk = alloc(c, cap * sizeof(*nk)), *nv = alloc(c, cap * sizeof(*nv));
        if (m->n) {
            memcpy(nk, m->k, m->n * sizeof(*nk));
            memcpy(nv, m->v, m->n * sizeof(*nv));
        }
        m->k = nk, m->v = nv, m->cap = cap;
    }
    m->k[m->n] = vstr(k, kn);
    m->v[m->n++] = v;
}

/* A map's items (pairs), keys or values as a list (which: M_ITEMS, M_KEYS, M_VALUES). */
static struct val map_list(struct ctx *c, const struct map *m, int which)
{
    struct val *items = alloc(c, (m->n ? m->n : 1) * sizeof(*items));
    for (size_t i = 0; i < m->n; i++) {
        if (which == M_ITEMS) {
            struct val *pair = alloc(c, 2 * sizeof(*pair));
            pair[0] = m->k[i], pair[1] = m->v[i];
            items[i] = (struct val){.t = V_LIST, .a = pair, .n = 2};
        } else
            items[i] = which == M_KEYS ? m->k[i] : m->v[i];
    }
    return (struct val){.t = V_LIST, .a = items, .n = m->n};
}

/* A string's bytes as a list of one-byte strings (Python iterates characters;
 * bytes are what chat templates meet in practice: ASCII tags). */
static struct val str_chars(struct ctx *c, struct val s)
{
    struct val *items = alloc(c, (s.n ? s.n : 1) * sizeof(*items));
    for (size_t i = 0; i < s.n; i++)
        items[i] = vstr(s.s + i, 1);
    return (struct val){.t = V_LIST, .a = items, .n = s.n};
}

static int truthy(struct val v)
{
    switch (v.t) {
    case V_UNDEF:
    case V_NONE: return 0;
    case V_BOOL:
    case V_INT: return v.i != 0;
    case V_STR:
    case V_LIST: return v.n != 0;
    case V_MAP: return v.m->n != 0;
    default: return 1;
    }
}

static const char *type_name(struct val v)
{
    static const char *const names[] = {"undefined", "none", "boolean", "integer", "string",
                                        "list", "map", "function", "loop", "method"};
    return names[v.t];
}

static int equal(struct val a, struct val b)
{
    if ((a.t == V_INT || a.t == V_BOOL) && (b.t == V_INT || b.t == V_BOOL))
        return a.i == b.i; /* Python: True == 1 */
    if (a.t != b.t)
        return 0;
    switch (a.t) {
    case V_UNDEF:
    case V_NONE: return 1;
    case V_STR: return a.n == b.n && !memcmp(a.s, b.s, a.n);
    case V_LIST:
        if (a.n != b.n)
            return 0;
        for (size_t i = 0; i < a.n; i++)
            if (!equal(a.a[i], b.a[i]))
                return 0;
        return 1;
    case V_MAP: return a.m == b.m;
    default: return 0;
    }
}

/* A growable string in the arena. */
struct sb {
    char *p;
    size_t n, cap;
};

static void sb_add(struct ctx *c, struct sb *b, const char *s, size_t n)
{
    if (n == 0)
        return; /* b->p may still be NULL */
    if (b->cap - b->n < n) {
        if (n > TOK_JINJA_MAX_OUTPUT || b->n > TOK_JINJA_MAX_OUTPUT)
            fail_at(c, AISLE_ETOOBIG, NULL, "a string grows past %u bytes", TOK_JINJA_MAX_OUTPUT);
        size_t cap = 2 * (b->n + n) + 16;
        char *p = alloc(c, cap);
        if (b->n)
            memcpy(p, b->p, b->n);
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_str(struct ctx *c, struct sb *b, const char *s)
{
    sb_add(c, b, s, strlen(s));
}

enum dump_mode { D_TEXT, D_REPR, D_JSON };

static void json_str(struct ctx *c, struct sb *b, const char *s, size_t n)
{
    sb_add(c, b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char tmp[8];
        if (ch == '"' || ch == '\\') {
            tmp[0] = '\\', tmp[1] = (char)ch;
            sb_add(c, b, tmp, 2);
        } else if (ch == '\n')
            sb_add(c, b, "\\n", 2);
        else if (ch == '\t')
            sb_add(c, b, "\\t", 2);
        else if (ch == '\r')
            sb_add(c, b, "\\r", 2);
        else if (ch < 0x20) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
            sb_add(c, b, tmp, 6);
        } else
            sb_add(c, b, (const char *)&ch, 1);
    }
    sb_add(c, b, "\"", 1);
}

/* One writer for the three ways a value prints: D_TEXT is Python's str()
 * (what {{ }} prints: none as "None", undefined as nothing), D_REPR its
 * repr() inside containers (strings quoted), D_JSON tojson as HF's
 * (json.dumps with ensure_ascii=False: ", " and ": " separators). */
static void dump(struct ctx *c, struct sb *b, struct val v, enum dump_mode mode, int depth)
{
    if (depth > TOK_JINJA_MAX_DEPTH)
        fail_at(c, AISLE_ETOOBIG, NULL, "a value nested too deep to print");
    enum dump_mode inner = mode == D_JSON ? D_JSON : D_REPR;
    char tmp[32];
    switch (v.t) {
    case V_UNDEF:
        if (mode == D_JSON)
            sb_str(c, b, "null");
        break;
    case V_NONE: sb_str(c, b, mode == D_JSON ? "null" : "None"); break;
    case V_BOOL: sb_str(c, b, mode == D_JSON ? (v.i ? "true" : "false") : (v.i ? "True" : "False")); break;
    case V_INT: snprintf(tmp, sizeof(tmp), "%" PRId64, v.i), sb_str(c, b, tmp); break;
    case V_STR:
        if (mode == D_JSON)
            json_str(c, b, v.s, v.n);
        else if (mode == D_REPR) { /* Python repr of a plain string: single quotes */
            sb_add(c, b, "'", 1);
            sb_add(c, b, v.s, v.n);
            sb_add(c, b, "'", 1);
        } else
            sb_add(c, b, v.s, v.n);
        break;
    case V_LIST:
    case V_MAP: {
        size_t n = v.t == V_LIST ? v.n : v.m->n;
        sb_add(c, b, v.t == V_LIST ? "[" : "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i)
                sb_add(c, b, ", ", 2);
            if (v.t == V_MAP) {
                dump(c, b, v.m->k[i], inner, depth + 1);
                sb_add(c, b, ": ", 2);
            }
            dump(c, b, v.t == V_LIST ? v.a[i] : v.m->v[i], inner, depth + 1);
        }
        sb_add(c, b, v.t == V_LIST ? "]" : "}", 1);
        break;
    }
    default:
        if (mode == D_JSON)
            fail_at(c, AISLE_EINVAL, NULL, "tojson: cannot serialise a %s", type_name(v));
        sb_str(c, b, "<function>");
        break;
    }
}

static struct val stringify(struct ctx *c, struct val v)
{
    if (v.t == V_STR)
        return v;
    struct sb b = {0};
    dump(c, &b, v, D_TEXT, 0);
    return vstr(b.p ? b.p : "", b.n);
}

/* ---- evaluation -------------------------------------------------------------------- */

struct var {
    const char *name;
    size_t n;
    struct val v;
};

static struct val eval(struct ctx *c, const struct node *n);
static int run_test(struct ctx *c, const struct node *at, struct val x, const char *t, size_t tn, const struct val *arg);

static struct val lookup(struct ctx *c, const char *name, size_t n)
{
    for (size_t i = c->nvars; i-- > 0;)
        if (c->vars[i].n == n && !memcmp(c->vars[i].name, name, n))
            return c->vars[i].v;
    if (str_eq(name, n, "raise_exception"))
        return (struct val){.t = V_FUNC, .i = F_RAISE};
    if (str_eq(name, n, "range"))
        return (struct val){.t = V_FUNC, .i = F_RANGE};
    if (str_eq(name, n, "namespace"))
        return (struct val){.t = V_FUNC, .i = F_NAMESPACE};
    return (struct val){.t = V_UNDEF};
}

static void set_var(struct ctx *c, const char *name, size_t n, struct val v)
{
    for (size_t i = c->frame; i < c->nvars; i++)
        if (c->vars[i].n == n && !memcmp(c->vars[i].name, name, n)) {
            c->vars[i].v = v;
            return;
        }
    if (c->nvars == c->capvars) {
        if (c->capvars >= 4096)
            fail_at(c, AISLE_ETOOBIG, name, "more than 4096 variables");
        size_t cap = c->capvars ? 2 * c->capvars : 32;
        struct var *nv = alloc(c, cap * sizeof(*nv));
        if (c->nvars)
            memcpy(nv, c->vars, c->nvars * sizeof(*nv));
        c->vars = nv, c->capvars = cap;
    }
    c->vars[c->nvars++] = (struct var){name, n, v};
}

static int64_t need_int(struct ctx *c, const struct node *at, struct val v, const char *what)
{
    if (v.t != V_INT && v.t != V_BOOL)
        fail_at(c, AISLE_EINVAL, at->at, "%s must be an integer, not a %s", what, type_name(v));
    return v.i;
}

/* Python's index rules: negative counts from the end; slices clamp. */
static struct val getitem(struct ctx *c, const struct node *at, struct val o, struct val k)
{
    if (o.t == V_MAP) {
        if (k.t != V_STR)
            return (struct val){.t = V_UNDEF};
        struct val *v = map_find(o.m, k.s, k.n);
        return v ? *v : (struct val){.t = V_UNDEF};
    }
    if (o.t == V_LIST || o.t == V_STR) {
        int64_t i = need_int(c, at, k, "an index");
        if (i < 0)
            i += (int64_t)o.n;
        if (i < 0 || i >= (int64_t)o.n)
            fail_at(c, AISLE_EINVAL, at->at, "index %" PRId64 " out of range (length %zu)", k.i, o.n);
        return o.t == V_LIST ? o.a[i] : vstr(o.s + i, 1);
    }
    if (o.t == V_UNDEF)
        return o;
    fail_at(c, AISLE_EINVAL, at->at, "cannot index a %s", type_name(o));
}

static struct val getattr(struct ctx *c, const struct node *at, struct val o, const char *name, size_t n)
{
    if (o.t == V_LOOP) {
        size_t i = o.loop->i, len = o.loop->n;
        if (str_eq(name, n, "index0"))
            return vint((int64_t)i);
        if (str_eq(name, n, "index"))
            return vint((int64_t)i + 1);
        if (str_eq(name, n, "revindex0"))
            return vint((int64_t)(len - i - 1));
        if (str_eq(name, n, "revindex"))
            return vint((int64_t)(len - i));
        if (str_eq(name, n, "first"))
            return vbool(i == 0);
        if (str_eq(name, n, "last"))
            return vbool(i + 1 == len);
        if (str_eq(name, n, "length"))
            return vint((int64_t)len);
        fail_at(c, AISLE_EFORMAT, at->at, "loop.%.*s is not supported", (int)(n < 32 ? n : 32), name);
    }
    if (o.t == V_STR || o.t == V_MAP) {
        static const char *const methods[] = {"", "strip", "lstrip", "rstrip", "upper", "lower", "startswith",
                                              "endswith", "get", "items", "keys", "values"};
        if (o.t == V_MAP) {
            struct val *v = map_find(o.m, name, n);
            if (v)
                return *v;
        }
        for (int mi = 1; mi < (int)(sizeof(methods) / sizeof(methods[0])); mi++)
            if (str_eq(name, n, methods[mi]) && ((o.t == V_MAP) == (mi >= M_GET)))
                return (struct val){.t = V_METHOD, .i = mi, .s = o.s, .n = o.n, .m = o.m};
        return (struct val){.t = V_UNDEF};
    }
    if (o.t == V_UNDEF || o.t == V_NONE)
        return (struct val){.t = V_UNDEF};
    return (struct val){.t = V_UNDEF};
}

static int is_ws(char ch)
{
    return is_space(ch);
}

static struct val strip(struct val s, int left, int right)
{
    size_t a = 0, b = s.n;
    while (left && a < b && is_ws(s.s[a]))
        a++;
    while (right && b > a && is_ws(s.s[b - 1]))
        b--;
    return vstr(s.s + a, b - a);
}

static struct val change_case(struct ctx *c, struct val s, int upper, int capitalize)
{
    char *p = alloc(c, s.n + 1);
    for (size_t i = 0; i < s.n; i++) {
        char ch = s.s[i];
        int up = capitalize ? i == 0 : upper;
        if (up && ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 32);
        else if (!up && ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        p[i] = ch;
    }
    return vstr(p, s.n);
}

static int64_t length(struct ctx *c, const struct node *at, struct val v)
{
    if (v.t == V_STR || v.t == V_LIST)
        return (int64_t)v.n;
    if (v.t == V_MAP)
        return (int64_t)v.m->n;
    fail_at(c, AISLE_EINVAL, at->at, "a %s has no length", type_name(v));
}

static struct val need_str(struct ctx *c, const struct node *at, struct val v, const char *what)
{
    if (v.t != V_STR)
        fail_at(c, AISLE_EINVAL, at->at, "%s needs a string, not a %s", what, type_name(v));
    return v;
}

/* The positional arguments of a call or filter, evaluated (at most 4). */
static size_t eval_args(struct ctx *c, const struct node *n, struct val *args, size_t max)
{
    if (n->nkids > max)
        fail_at(c, AISLE_EINVAL, n->at, "too many arguments");
    for (size_t i = 0; i < n->nkids; i++) {
        if (n->kw[i])
            fail_at(c, AISLE_EFORMAT, n->at, "keyword arguments are only supported for namespace()");
        args[i] = eval(c, n->kids[i]);
    }
    return n->nkids;
}

static struct val filter(struct ctx *c, const struct node *n)
{
    struct val x = eval(c, n->a), args[4];
    size_t na = eval_args(c, n, args, 4);
    const char *f = n->s;
    size_t fn = n->sn;
    if (str_eq(f, fn, "trim"))
        return strip(need_str(c, n, x, "trim"), 1, 1);
    if (str_eq(f, fn, "length") || str_eq(f, fn, "count"))
        return vint(length(c, n, x));
    if (str_eq(f, fn, "upper") || str_eq(f, fn, "lower"))
        return change_case(c, need_str(c, n, x, "upper/lower"), f[0] == 'u', 0);
    if (str_eq(f, fn, "capitalize"))
        return change_case(c, need_str(c, n, x, "capitalize"), 0, 1);
    if (str_eq(f, fn, "string"))
        return stringify(c, x);
    if (str_eq(f, fn, "default") || str_eq(f, fn, "d"))
        return x.t == V_UNDEF || (na > 1 && truthy(args[1]) && !truthy(x)) ? (na ? args[0] : vstr("", 0)) : x;
    if (str_eq(f, fn, "first") || str_eq(f, fn, "last")) {
        if (x.t != V_LIST && x.t != V_STR)
            fail_at(c, AISLE_EINVAL, n->at, "first/last needs a list or string");
        if (!x.n)
            return (struct val){.t = V_UNDEF};
        size_t i = f[0] == 'f' ? 0 : x.n - 1;
        return x.t == V_LIST ? x.a[i] : vstr(x.s + i, 1);
    }
    if (str_eq(f, fn, "safe"))
        return x;
    if (str_eq(f, fn, "items") || str_eq(f, fn, "list")) {
        if (x.t == V_LIST)
            return x;
        if (x.t == V_MAP)
            return map_list(c, x.m, f[0] == 'i' ? M_ITEMS : M_KEYS);
        if (x.t == V_STR && f[0] == 'l')
            return str_chars(c, x);
        fail_at(c, AISLE_EINVAL, n->at, "'%.*s' of a %s", (int)fn, f, type_name(x));
    }
    if (str_eq(f, fn, "join")) {
        if (x.t != V_LIST)
            fail_at(c, AISLE_EINVAL, n->at, "join needs a list, not a %s", type_name(x));
        struct val sep = na ? stringify(c, args[0]) : vstr("", 0);
        struct sb b = {0};
        for (size_t i = 0; i < x.n; i++) {
            struct val e = stringify(c, x.a[i]);
            if (i)
                sb_add(c, &b, sep.s, sep.n);
            sb_add(c, &b, e.s, e.n);
        }
        return vstr(b.p ? b.p : "", b.n);
    }
    if (str_eq(f, fn, "select") || str_eq(f, fn, "reject")) {
        if (x.t != V_LIST || na < 1 || args[0].t != V_STR)
            fail_at(c, AISLE_EINVAL, n->at, "select/reject take a list and a test name");
        struct val *items = alloc(c, (x.n ? x.n : 1) * sizeof(*items));
        size_t cnt = 0;
        for (size_t i = 0; i < x.n; i++)
            if (run_test(c, n, x.a[i], args[0].s, args[0].n, na > 1 ? &args[1] : NULL) == (f[0] == 's'))
                items[cnt++] = x.a[i];
        return (struct val){.t = V_LIST, .a = items, .n = cnt};
    }
    if (str_eq(f, fn, "selectattr") || str_eq(f, fn, "rejectattr")) {
        if (x.t != V_LIST || na < 1 || args[0].t != V_STR || (na > 1 && args[1].t != V_STR))
            fail_at(c, AISLE_EINVAL, n->at, "selectattr/rejectattr take a list, an attribute and a test name");
        struct val *items = alloc(c, (x.n ? x.n : 1) * sizeof(*items));
        size_t cnt = 0;
        for (size_t i = 0; i < x.n; i++) {
            struct val a = getattr(c, n, x.a[i], args[0].s, args[0].n);
            int r = na > 1 ? run_test(c, n, a, args[1].s, args[1].n, na > 2 ? &args[2] : NULL) : truthy(a);
            if (r == (f[0] == 's'))
                items[cnt++] = x.a[i];
        }
        return (struct val){.t = V_LIST, .a = items, .n = cnt};
    }
    if (str_eq(f, fn, "replace")) {
        struct val str = need_str(c, n, x, "replace");
        if (na != 2 || args[0].t != V_STR || args[1].t != V_STR)
            fail_at(c, AISLE_EINVAL, n->at, "replace takes two strings");
        struct val from = args[0], to = args[1];
        struct sb b = {0};
        for (size_t i = 0; i < str.n;) {
            if (from.n && i + from.n <= str.n && !memcmp(str.s + i, from.s, from.n)) {
                sb_add(c, &b, to.s, to.n);
                i += from.n;
            } else
                sb_add(c, &b, str.s + i++, 1);
        }
        return vstr(b.p ? b.p : "", b.n);
    }
    if (str_eq(f, fn, "tojson")) {
        struct sb b = {0};
        dump(c, &b, x, D_JSON, 0);
        return vstr(b.p ? b.p : "", b.n);
    }
    fail_at(c, AISLE_EFORMAT, n->at, "unsupported filter '%.*s'", (int)(fn < 32 ? fn : 32), f);
}

static struct val call(struct ctx *c, const struct node *n)
{
    struct val f = eval(c, n->a);
    if (f.t == V_FUNC && f.i == F_NAMESPACE) {
        struct map *m = map_new(c);
        for (size_t i = 0; i < n->nkids; i++) {
            if (!n->kw[i])
                fail_at(c, AISLE_EFORMAT, n->at, "namespace() takes name=value arguments");
            map_set(c, m, n->kw[i], strlen(n->kw[i]), eval(c, n->kids[i]));
        }
        return (struct val){.t = V_MAP, .m = m};
    }
    struct val args[4];
    size_t na = eval_args(c, n, args, 4);
    if (f.t == V_FUNC && f.i == F_RAISE) {
        struct val msg = na ? stringify(c, args[0]) : vstr("", 0);
        fail_at(c, AISLE_EINVAL, n->at, "raise_exception: %.*s", (int)(msg.n < 200 ? msg.n : 200), msg.s);
    }
    if (f.t == V_FUNC && f.i == F_RANGE) {
        int64_t lo = 0, hi, step = 1;
        if (na == 1)
            hi = need_int(c, n, args[0], "range()");
        else if (na == 2 || na == 3) {
            lo = need_int(c, n, args[0], "range()"), hi = need_int(c, n, args[1], "range()");
            if (na == 3 && !(step = need_int(c, n, args[2], "range()")))
                fail_at(c, AISLE_EINVAL, n->at, "range() step is 0");
        } else
            fail_at(c, AISLE_EINVAL, n->at, "range() takes 1 to 3 arguments");
        int64_t cnt = step > 0 ? (hi > lo ? (hi - lo + step - 1) / step : 0) : (lo > hi ? (lo - hi - step - 1) / -step : 0);
        if (cnt > TOK_JINJA_MAX_ITERS)
            fail_at(c, AISLE_ETOOBIG, n->at, "range() of more than %d items", TOK_JINJA_MAX_ITERS);
        struct val *items = alloc(c, (size_t)(cnt ? cnt : 1) * sizeof(*items));
        for (int64_t i = 0; i < cnt; i++)
            items[i] = vint(lo + i * step);
        return (struct val){.t = V_LIST, .a = items, .n = (size_t)cnt};
    }
    if (f.t == V_METHOD) {
        struct val s = vstr(f.s, f.n);
        switch (f.i) {
        case M_STRIP: return strip(s, 1, 1);
        case M_LSTRIP: return strip(s, 1, 0);
        case M_RSTRIP: return strip(s, 0, 1);
        case M_UPPER: return change_case(c, s, 1, 0);
        case M_LOWER: return change_case(c, s, 0, 0);
        case M_STARTSWITH:
        case M_ENDSWITH: {
            if (na != 1)
                fail_at(c, AISLE_EINVAL, n->at, "startswith/endswith take one argument");
            struct val p = need_str(c, n, args[0], "startswith/endswith");
            if (p.n > s.n)
                return vbool(0);
            return vbool(!memcmp(f.i == M_STARTSWITH ? s.s : s.s + s.n - p.n, p.s, p.n));
        }
        case M_GET: {
            if (na < 1 || na > 2 || args[0].t != V_STR)
                fail_at(c, AISLE_EINVAL, n->at, "get() takes a key and an optional default");
            struct val *v = map_find(f.m, args[0].s, args[0].n);
            return v ? *v : na == 2 ? args[1] : (struct val){.t = V_NONE};
        }
        case M_ITEMS:
        case M_KEYS:
        case M_VALUES: return map_list(c, f.m, (int)f.i);
        default: break;
        }
    }
    fail_at(c, AISLE_EINVAL, n->at, "cannot call a %s", type_name(f));
}

static int compare(struct ctx *c, const struct node *n, struct val a, struct val b)
{
    if ((a.t == V_INT || a.t == V_BOOL) && (b.t == V_INT || b.t == V_BOOL))
        return (a.i > b.i) - (a.i < b.i);
    if (a.t == V_STR && b.t == V_STR) {
        size_t m = a.n < b.n ? a.n : b.n;
        int r = memcmp(a.s, b.s, m);
        return r ? (r > 0) - (r < 0) : (a.n > b.n) - (a.n < b.n);
    }
    fail_at(c, AISLE_EINVAL, n->at, "cannot order a %s and a %s", type_name(a), type_name(b));
}

static int contains(struct ctx *c, const struct node *n, struct val hay, struct val needle)
{
    if (hay.t == V_STR) {
        struct val s = need_str(c, n, needle, "'in' on a string");
        if (s.n == 0)
            return 1;
        for (size_t i = 0; i + s.n <= hay.n; i++)
            if (!memcmp(hay.s + i, s.s, s.n))
                return 1;
        return 0;
    }
    if (hay.t == V_LIST) {
        for (size_t i = 0; i < hay.n; i++)
            if (equal(hay.a[i], needle))
                return 1;
        return 0;
    }
    if (hay.t == V_MAP)
        return needle.t == V_STR && map_find(hay.m, needle.s, needle.n) != NULL;
    if (hay.t == V_UNDEF)
        return 0;
    fail_at(c, AISLE_EINVAL, n->at, "'in' needs a string, list or map, not a %s", type_name(hay));
}

static struct val binop(struct ctx *c, const struct node *n)
{
    struct val a = eval(c, n->a), b = eval(c, n->b);
    const char *op = n->s;
    size_t on = n->sn;
    if (str_eq(op, on, "=="))
        return vbool(equal(a, b));
    if (str_eq(op, on, "!="))
        return vbool(!equal(a, b));
    if (str_eq(op, on, "<"))
        return vbool(compare(c, n, a, b) < 0);
    if (str_eq(op, on, ">"))
        return vbool(compare(c, n, a, b) > 0);
    if (str_eq(op, on, "<="))
        return vbool(compare(c, n, a, b) <= 0);
    if (str_eq(op, on, ">="))
        return vbool(compare(c, n, a, b) >= 0);
    if (str_eq(op, on, "in"))
        return vbool(contains(c, n, b, a));
    if (str_eq(op, on, "~")) {
        struct val x = stringify(c, a), y = stringify(c, b);
        struct sb s = {0};
        sb_add(c, &s, x.s, x.n);
        sb_add(c, &s, y.s, y.n);
        return vstr(s.p ? s.p : "", s.n);
    }
    if (str_eq(op, on, "+")) {
        if (a.t == V_STR && b.t == V_STR) {
            struct sb s = {0};
            sb_add(c, &s, a.s, a.n);
            sb_add(c, &s, b.s, b.n);
            return vstr(s.p ? s.p : "", s.n);
        }
        if (a.t == V_LIST && b.t == V_LIST) {
            if (a.n + b.n > TOK_JINJA_MAX_ITERS)
                fail_at(c, AISLE_ETOOBIG, n->at, "a list of more than %d items", TOK_JINJA_MAX_ITERS);
            struct val *items = alloc(c, (a.n + b.n + 1) * sizeof(*items));
            if (a.n)
                memcpy(items, a.a, a.n * sizeof(*items));
            if (b.n)
                memcpy(items + a.n, b.a, b.n * sizeof(*items));
            return (struct val){.t = V_LIST, .a = items, .n = a.n + b.n};
        }
    }
    if (str_eq(op, on, "*") && ((a.t == V_STR && b.t == V_INT) || (a.t == V_INT && b.t == V_STR))) {
        struct val str = a.t == V_STR ? a : b;
        int64_t times = a.t == V_INT ? a.i : b.i;
        struct sb s = {0};
        if (times > 0 && str.n && (uint64_t)times > TOK_JINJA_MAX_OUTPUT / str.n)
            fail_at(c, AISLE_ETOOBIG, n->at, "a string repeated past %u bytes", TOK_JINJA_MAX_OUTPUT);
        for (int64_t i = 0; i < times; i++)
            sb_add(c, &s, str.s, str.n);
        return vstr(s.p ? s.p : "", s.n);
    }
    if ((a.t != V_INT && a.t != V_BOOL) || (b.t != V_INT && b.t != V_BOOL))
        fail_at(c, AISLE_EINVAL, n->at, "'%.*s' of a %s and a %s is not supported", (int)on, op, type_name(a),
                type_name(b));
    int64_t x = a.i, y = b.i, r;
    int ovf = 0;
    if (str_eq(op, on, "+"))
        ovf = __builtin_add_overflow(x, y, &r);
    else if (str_eq(op, on, "-"))
        ovf = __builtin_sub_overflow(x, y, &r);
    else if (str_eq(op, on, "*"))
        ovf = __builtin_mul_overflow(x, y, &r);
    else {
        if (y == 0)
            fail_at(c, AISLE_EINVAL, n->at, "division by zero");
        if (x == INT64_MIN && y == -1)
            fail_at(c, AISLE_EINVAL, n->at, "integer overflow");
        if (str_eq(op, on, "/") && x % y != 0)
            fail_at(c, AISLE_EFORMAT, n->at, "'/' with a fractional result (floats are not supported)");
        /* Python floors: // and % round toward minus infinity */
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0)))
            q--, m += y;
        r = str_eq(op, on, "%") ? m : q;
    }
    if (ovf)
        fail_at(c, AISLE_EINVAL, n->at, "integer overflow");
    return vint(r);
}

/* Jinja test `name` on x (arg: the argument of equalto/ne, or NULL). */
static int run_test(struct ctx *c, const struct node *at, struct val x, const char *t, size_t tn, const struct val *arg)
{
    if (str_eq(t, tn, "defined"))
        return x.t != V_UNDEF;
    if (str_eq(t, tn, "undefined"))
        return x.t == V_UNDEF;
    if (str_eq(t, tn, "none"))
        return x.t == V_NONE;
    if (str_eq(t, tn, "string"))
        return x.t == V_STR;
    if (str_eq(t, tn, "number") || str_eq(t, tn, "integer"))
        return x.t == V_INT;
    if (str_eq(t, tn, "boolean"))
        return x.t == V_BOOL;
    if (str_eq(t, tn, "true") || str_eq(t, tn, "false"))
        return x.t == V_BOOL && x.i == (t[0] == 't');
    if (str_eq(t, tn, "mapping"))
        return x.t == V_MAP;
    if (str_eq(t, tn, "sequence") || str_eq(t, tn, "iterable"))
        return x.t == V_LIST || x.t == V_STR || x.t == V_MAP;
    if (str_eq(t, tn, "equalto") || str_eq(t, tn, "eq") || str_eq(t, tn, "==") || str_eq(t, tn, "ne") ||
        str_eq(t, tn, "!=")) {
        if (!arg)
            fail_at(c, AISLE_EINVAL, at->at, "test '%.*s' needs an argument", (int)tn, t);
        return equal(x, *arg) == (t[0] == 'e' || t[0] == '=');
    }
    fail_at(c, AISLE_EFORMAT, at->at, "unsupported test '%.*s'", (int)(tn < 32 ? tn : 32), t);
}

static struct val test(struct ctx *c, const struct node *n)
{
    struct val x = eval(c, n->a);
    int r = run_test(c, n, x, n->s, n->sn, NULL);
    return vbool(n->i ? !r : r);
}

static struct val eval(struct ctx *c, const struct node *n)
{
    switch (n->k) {
    case N_STR: return vstr(n->s, n->sn);
    case N_INT: return vint(n->i);
    case N_BOOL: return vbool((int)n->i);
    case N_NONE: return (struct val){.t = V_NONE};
    case N_LIST: {
        struct val *items = alloc(c, (n->nkids ? n->nkids : 1) * sizeof(*items));
        for (size_t i = 0; i < n->nkids; i++)
            items[i] = eval(c, n->kids[i]);
        return (struct val){.t = V_LIST, .a = items, .n = n->nkids};
    }
    case N_DICT: {
        struct map *m = map_new(c);
        for (size_t i = 0; i + 1 < n->nkids; i += 2) {
            struct val k = eval(c, n->kids[i]);
            if (k.t != V_STR)
                fail_at(c, AISLE_EINVAL, n->kids[i]->at, "map keys must be strings, not a %s", type_name(k));
            map_set(c, m, k.s, k.n, eval(c, n->kids[i + 1]));
        }
        return (struct val){.t = V_MAP, .m = m};
    }
    case N_NAME: return lookup(c, n->s, n->sn);
    case N_ATTR: return getattr(c, n, eval(c, n->a), n->s, n->sn);
    case N_INDEX: {
        struct val o = eval(c, n->a), k = eval(c, n->b);
        if (o.t == V_LOOP && k.t == V_STR)
            return getattr(c, n, o, k.s, k.n);
        return getitem(c, n, o, k);
    }
    case N_SLICE: {
        struct val o = eval(c, n->a);
        if (o.t != V_LIST && o.t != V_STR)
            fail_at(c, AISLE_EINVAL, n->at, "cannot slice a %s", type_name(o));
        int64_t len = (int64_t)o.n, lo = 0, hi = len;
        if (n->b)
            lo = need_int(c, n, eval(c, n->b), "a slice bound");
        if (n->c)
            hi = need_int(c, n, eval(c, n->c), "a slice bound");
        if (lo < 0)
            lo = lo + len < 0 ? 0 : lo + len;
        if (hi < 0)
            hi = hi + len < 0 ? 0 : hi + len;
        lo = lo > len ? len : lo;
        hi = hi > len ? len : hi < lo ? lo : hi;
        if (o.t == V_STR)
            return vstr(o.s + lo, (size_t)(hi - lo));
        return (struct val){.t = V_LIST, .a = o.a + lo, .n = (size_t)(hi - lo)};
    }
    case N_BIN: return binop(c, n);
    case N_NOT: return vbool(!truthy(eval(c, n->a)));
    case N_NEG: return vint(-need_int(c, n, eval(c, n->a), "unary minus") * 1);
    case N_AND: {
        struct val a = eval(c, n->a);
        return truthy(a) ? eval(c, n->b) : a;
    }
    case N_OR: {
        struct val a = eval(c, n->a);
        return truthy(a) ? a : eval(c, n->b);
    }
    case N_COND:
        return truthy(eval(c, n->a)) ? eval(c, n->b) : n->c ? eval(c, n->c) : (struct val){.t = V_UNDEF};
    case N_TEST: return test(c, n);
    case N_FILTER: return filter(c, n);
    case N_CALL: return call(c, n);
    default: fail_at(c, AISLE_EFORMAT, n->at, "not an expression");
    }
}

static void emit(struct ctx *c, const char *at, const char *s, size_t n)
{
    if (c->out->len - c->out0 + n > c->max_out)
        fail_at(c, AISLE_ETOOBIG, at, "output exceeds %zu bytes", c->max_out);
    int rc = buf_append(c->out, s, n);
    if (rc)
        fail_at(c, rc, at, "output buffer: %s", aisle_strerror(rc));
}

/* The loop variable(s) of for-node n set to item (unpacked for `for a, b`). */
static void bind_loop_vars(struct ctx *c, const struct node *n, struct val item)
{
    if (!n->nkids) {
        set_var(c, n->s, n->sn, item);
        return;
    }
    if (item.t != V_LIST || item.n != n->nkids)
        fail_at(c, AISLE_EINVAL, n->at, "cannot unpack a %s into %zu loop variables", type_name(item), n->nkids);
    for (size_t k = 0; k < n->nkids; k++)
        set_var(c, n->kids[k]->s, n->kids[k]->sn, item.a[k]);
}

/* The items of list `it` for which the loop filter n->d holds, evaluated with
 * the loop variables bound (and no `loop`), as Jinja does before the loop:
 * loop.length and loop.last then count only these. */
static struct val loop_filter(struct ctx *c, const struct node *n, struct val it)
{
    struct val *kept = alloc(c, (it.n ? it.n : 1) * sizeof(*kept));
    size_t cnt = 0, saved_frame = c->frame, saved_n = c->nvars;
    c->frame = c->nvars;
    for (size_t i = 0; i < it.n; i++) {
        if (++c->iters > TOK_JINJA_MAX_ITERS)
            fail_at(c, AISLE_ETOOBIG, n->at, "more than %d loop iterations", TOK_JINJA_MAX_ITERS);
        c->nvars = c->frame;
        bind_loop_vars(c, n, it.a[i]);
        if (truthy(eval(c, n->d)))
            kept[cnt++] = it.a[i];
    }
    c->frame = saved_frame;
    c->nvars = saved_n;
    return (struct val){.t = V_LIST, .a = kept, .n = cnt};
}

static void exec(struct ctx *c, const struct node *n)
{
    switch (n->k) {
    case N_TEXT: emit(c, n->at, n->s, n->sn); return;
    case N_OUT: {
        struct val v = eval(c, n->a);
        if (v.t == V_STR)
            emit(c, n->at, v.s, v.n);
        else {
            v = stringify(c, v);
            emit(c, n->at, v.s, v.n);
        }
        return;
    }
    case N_SEQ:
        for (size_t i = 0; i < n->nkids; i++)
            exec(c, n->kids[i]);
        return;
    case N_IF:
        if (truthy(eval(c, n->a)))
            exec(c, n->b);
        else if (n->c)
            exec(c, n->c);
        return;
    case N_SET: {
        struct val v = eval(c, n->a);
        if (n->c) { /* ns.attr = v */
            struct val ns = lookup(c, n->s, n->sn);
            if (ns.t != V_MAP)
                fail_at(c, AISLE_EINVAL, n->at, "'%.*s' is not a namespace", (int)(n->sn < 32 ? n->sn : 32), n->s);
            map_set(c, ns.m, n->c->s, n->c->sn, v);
        } else
            set_var(c, n->s, n->sn, v);
        return;
    }
    case N_FOR: {
        struct val it = eval(c, n->a);
        /* a map loops over its keys, a string over its bytes */
        if (it.t == V_MAP)
            it = map_list(c, it.m, M_KEYS);
        else if (it.t == V_STR)
            it = str_chars(c, it);
        else if (it.t == V_UNDEF || it.t == V_NONE)
            it = (struct val){.t = V_LIST};
        else if (it.t != V_LIST)
            fail_at(c, AISLE_EINVAL, n->at, "cannot loop over a %s", type_name(it));
        if (n->d)
            it = loop_filter(c, n, it);
        const struct val *items = it.a;
        size_t cnt = it.n;
        if (cnt == 0) {
            if (n->c)
                exec(c, n->c);
            return;
        }
        struct loopstate *ls = alloc(c, sizeof(*ls));
        ls->n = cnt;
        size_t saved_frame = c->frame, saved_n = c->nvars;
        c->frame = c->nvars;
        for (size_t i = 0; i < cnt; i++) {
            if (++c->iters > TOK_JINJA_MAX_ITERS)
                fail_at(c, AISLE_ETOOBIG, n->at, "more than %d loop iterations", TOK_JINJA_MAX_ITERS);
            ls->i = i;
            c->nvars = c->frame; /* a fresh scope per iteration, as in Jinja */
            bind_loop_vars(c, n, items[i]);
            set_var(c, "loop", 4, (struct val){.t = V_LOOP, .loop = ls});
            exec(c, n->b);
        }
        c->frame = saved_frame;
        c->nvars = saved_n;
        return;
    }
    default: fail_at(c, AISLE_EFORMAT, n->at, "not a statement");
    }
}

int tok_jinja_render(const char *tmpl, size_t tlen, const struct tok_chat_msg *msgs, size_t n,
                     const struct tok_jinja_opts *opts, struct buf *out, char *err, size_t errlen)
{
    struct ctx c;
    memset(&c, 0, sizeof(c));
    c.src = tmpl ? tmpl : "";
    c.srclen = tmpl ? tlen : 0;
    c.err = err;
    c.errlen = errlen;
    c.out = out;
    c.out0 = out->len;
    c.max_out = opts && opts->max_output ? opts->max_output : TOK_JINJA_MAX_OUTPUT;
    c.msgs = msgs;
    c.nmsgs = n;
    if (err && errlen)
        err[0] = '\0';
    if (setjmp(c.jb)) {
        arena_free(&c);
        return c.rc;
    }
    if (tlen > TOK_MAX_TEMPLATE)
        fail_at(&c, AISLE_ETOOBIG, NULL, "chat template of %zu bytes (limit %u)", tlen, TOK_MAX_TEMPLATE);
    if (n > TOK_JINJA_MAX_ITERS)
        fail_at(&c, AISLE_ETOOBIG, NULL, "more than %d messages", TOK_JINJA_MAX_ITERS);
    /* Jinja drops one trailing newline of the source (keep_trailing_newline off) */
    if (c.srclen && c.src[c.srclen - 1] == '\n')
        c.srclen -= 1 + (c.srclen >= 2 && c.src[c.srclen - 2] == '\r');
    lex(&c);
    struct node *root = p_body(&c, NULL);
    if (peek(&c)->k != TK_EOF)
        fail_at(&c, AISLE_EFORMAT, peek(&c)->p, "unexpected tag");

    /* globals */
    struct val *items = alloc(&c, (n ? n : 1) * sizeof(*items));
    for (size_t i = 0; i < n; i++) {
        struct map *m = map_new(&c);
        const char *role = msgs[i].role ? msgs[i].role : "", *content = msgs[i].content ? msgs[i].content : "";
        map_set(&c, m, "role", 4, vstr(role, strlen(role)));
        map_set(&c, m, "content", 7, vstr(content, strlen(content)));
        items[i] = (struct val){.t = V_MAP, .m = m};
    }
    const char *bos = opts && opts->bos_token ? opts->bos_token : "";
    const char *eos = opts && opts->eos_token ? opts->eos_token : "";
    set_var(&c, "messages", 8, (struct val){.t = V_LIST, .a = items, .n = n});
    set_var(&c, "bos_token", 9, vstr(bos, strlen(bos)));
    set_var(&c, "eos_token", 9, vstr(eos, strlen(eos)));
    set_var(&c, "add_generation_prompt", 21, vbool(opts && opts->add_generation_prompt));
    c.frame = c.nvars; /* template-level sets go above the globals */
    exec(&c, root);
    arena_free(&c);
    return 0;
}
